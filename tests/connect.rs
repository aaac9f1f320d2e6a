//! Connecting as users configure it: TCP and sockets, passwords from every source, the `PG*`
//! environment, TLS modes, application_name, and the log file.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::cli::one_error_line;
use crate::cluster::Cluster;
use crate::util::{TempDir, skyrep};

const PASSWORD: &str = "s3cr:et 'pw'";

/// Runs `skyrep CONFIG check` with extra environment variables; returns (code, stdout, stderr).
fn check(conf: &PathBuf, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = skyrep();
    cmd.arg(conf).arg("check");
    for var in [
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGDATABASE",
        "PGPASSWORD",
        "PGPASSFILE",
        "PGSSLMODE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("skyrep runs");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn password_cluster() -> Cluster {
    let cluster = Cluster::builder().password_auth().start();
    cluster.execute("create role app login password 's3cr:et ''pw'''");
    cluster.execute("create database shop owner app");
    cluster
}

/// A `[skyrep]` config whose provider_db is `connstr`.
fn config(dir: &TempDir, connstr: &str) -> PathBuf {
    dir.write("shop.ini", &format!("[skyrep]\nprovider_db = {connstr}\n"))
}

#[test]
fn check_reports_each_database_over_tcp_and_socket() {
    let provider = Cluster::start();
    let subscriber = Cluster::start();
    subscriber.create_database("report");
    let dir = TempDir::new("check");
    let conf = dir.write(
        "shop.ini",
        &format!(
            "[skyrep]\nprovider_db = {}\nsubscriber_db = {}\n",
            provider.connstr("postgres"),
            subscriber.socket_connstr("report")
        ),
    );
    let (code, out, err) = check(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!(
            "provider_db: ok, host=127.0.0.1 port={} dbname=postgres user=postgres, PostgreSQL ",
            provider.port()
        )),
        "{out}"
    );
    assert!(lines[0].ends_with(", tls off"), "{out}");
    assert!(
        lines[1].starts_with(&format!(
            "subscriber_db: ok, host={} port={} dbname=report",
            subscriber.socket_dir().display(),
            subscriber.port()
        )),
        "{out}"
    );
}

#[test]
fn password_from_connstr_uri_environment_and_passfile() {
    let cluster = password_cluster();
    let dir = TempDir::new("passwords");
    let port = cluster.port();
    let base = format!("host=127.0.0.1 port={port} dbname=shop user=app");

    // In the key=value string, quoted with escapes.
    let conf = config(&dir, &format!(r"{base} password='s3cr:et \'pw\''"));
    let (code, out, err) = check(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));

    // In a URI, percent-encoded.
    let conf = config(
        &dir,
        &format!("postgresql://app:s3cr%3Aet%20%27pw%27@127.0.0.1:{port}/shop"),
    );
    let (code, _, err) = check(&conf, &[]);
    assert_eq!(code, 0, "{err}");

    // From PGPASSWORD.
    let conf = config(&dir, &base);
    let (code, _, err) = check(&conf, &[("PGPASSWORD", PASSWORD)]);
    assert_eq!(code, 0, "{err}");

    // From a password file named by passfile=, with escaped colons.
    let passfile = dir.write(
        "pgpass",
        &format!("127.0.0.1:{port}:shop:app:s3cr\\:et 'pw'\n"),
    );
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let conf = config(&dir, &format!("{base} passfile={}", passfile.display()));
    let (code, _, err) = check(&conf, &[]);
    assert_eq!(code, 0, "{err}");

    // From PGPASSFILE.
    let conf = config(&dir, &base);
    let (code, _, err) = check(&conf, &[("PGPASSFILE", passfile.to_str().unwrap())]);
    assert_eq!(code, 0, "{err}");

    // A password file others may read is ignored, with a warning.
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = check(&conf, &[("PGPASSFILE", passfile.to_str().unwrap())]);
    assert_eq!(code, 1);
    assert!(
        err.contains("may be read by group or others; ignored"),
        "{err}"
    );
}

#[test]
fn wrong_password_fails_without_showing_it() {
    let cluster = password_cluster();
    let dir = TempDir::new("wrongpw");
    let conf = config(
        &dir,
        &format!(
            "host=127.0.0.1 port={} dbname=shop user=app password=Not-The-Password",
            cluster.port()
        ),
    );
    let (code, out, err) = check(&conf, &[]);
    assert_eq!((code, out.as_str()), (1, ""));
    let line = one_error_line(&err);
    assert!(line.contains(&format!("port={}", cluster.port())), "{line}");
    assert!(line.contains("password authentication failed"), "{line}");
    assert!(!err.contains("Not-The-Password"), "{err}");
}

#[test]
fn environment_fills_in_an_empty_connection_string() {
    let cluster = Cluster::start();
    cluster.create_database("fromenv");
    let dir = TempDir::new("envdefaults");
    let conf = config(&dir, "");
    let port = cluster.port().to_string();
    let (code, out, err) = check(
        &conf,
        &[
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", &port),
            ("PGUSER", "postgres"),
            ("PGDATABASE", "fromenv"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "host=127.0.0.1 port={port} dbname=fromenv user=postgres"
        )),
        "{out}"
    );
}

#[test]
fn application_name_defaults_to_the_job() {
    let cluster = Cluster::builder().setting("log_connections", "on").start();
    let dir = TempDir::new("appname");
    let conf = dir.write(
        "nightly.ini",
        &format!(
            "[londiste3]\njob_name = shop_%(config_name)s\nprovider_db = {}\n",
            cluster.connstr("postgres")
        ),
    );
    let (code, _, err) = check(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    crate::util::wait_until(
        std::time::Duration::from_secs(10),
        "connection logged",
        || {
            cluster
                .server_log()
                .contains("application_name=skyrep/shop_nightly")
        },
    );
}

#[test]
fn log_file_gets_warnings_in_londiste_format_and_refuses_symlinks() {
    let cluster = Cluster::start();
    let dir = TempDir::new("logfile");
    let log = dir.path().join("shop.log");
    let conf = dir.write(
        "shop.ini",
        &format!(
            "[skyrep]\nprovider_db = {}\nlogfile = {}\nuse_skylog = 0\n",
            cluster.connstr("postgres"),
            log.display()
        ),
    );
    let (code, _, err) = check(&conf, &[]);
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&log).unwrap();
    let line = text.lines().next().expect("a warning line");
    let pid_level_msg = &line[24..];
    assert!(
        pid_level_msg.contains(" WARNING ") && line.ends_with("unknown key `use_skylog` ignored"),
        "{line}"
    );
    assert_eq!(&line[4..5], "-");
    assert_eq!(&line[19..20], ",");
    assert!(err.contains("WARNING"), "{err}");
    assert_eq!(
        std::fs::metadata(&log).unwrap().permissions().mode() & 0o777,
        0o640
    );

    // A symlink planted where the log file should be is not followed.
    std::fs::remove_file(&log).unwrap();
    let target = dir.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, &log).unwrap();
    let (code, _, err) = check(&conf, &[]);
    assert_eq!(code, 2);
    assert!(
        one_error_line(&err).contains("cannot open log file"),
        "{err}"
    );
    assert!(!target.exists());
}

/// A CA, and a server certificate it signed for the name `localhost` only.
struct Certs {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

fn make_certs() -> Certs {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "skyrep test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&server_key, &issuer)
        .unwrap();
    Certs {
        ca_pem: ca_cert.pem(),
        server_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

#[test]
fn tls_modes_behave_as_in_libpq() {
    let certs = make_certs();
    let other = make_certs();
    let cluster = Cluster::builder()
        .ssl(&certs.server_pem, &certs.server_key_pem)
        .start();
    let dir = TempDir::new("tls");
    let ca = dir.write("ca.pem", &certs.ca_pem);
    let wrong_ca = dir.write("wrong-ca.pem", &other.ca_pem);
    let port = cluster.port();
    let run = |connstr: String| {
        check(
            &config(&dir, &connstr),
            &[("HOME", dir.path().to_str().unwrap())],
        )
    };

    for (mode, tls) in [("disable", "off"), ("prefer", "on"), ("require", "on")] {
        let (code, out, err) = run(format!(
            "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode={mode}"
        ));
        assert_eq!(code, 0, "{mode}: {err}");
        assert!(
            out.trim_end().ends_with(&format!("tls {tls}")),
            "{mode}: {out}"
        );
    }
    // verify-full: the CA must sign it and the name must match.
    let (code, out, err) = run(format!(
        "host=localhost port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        ca.display()
    ));
    assert_eq!(code, 0, "{err}");
    assert!(out.trim_end().ends_with("tls on"), "{out}");
    let (code, _, err) = run(format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
        ca.display()
    ));
    assert_eq!(code, 1, "the certificate does not name 127.0.0.1: {err}");
    assert!(one_error_line(&err).contains("TLS"), "{err}");
    // verify-ca: the name does not matter, the CA does.
    let (code, _, err) = run(format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=verify-ca sslrootcert={}",
        ca.display()
    ));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(format!(
        "postgresql://postgres@127.0.0.1:{port}/postgres?sslmode=verify-ca&sslrootcert={}",
        wrong_ca.display()
    ));
    assert_eq!(code, 1, "signed by another CA: {err}");
    // require with a root certificate checks the chain, as libpq does.
    let (code, _, _) = run(format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres sslmode=require sslrootcert={}",
        wrong_ca.display()
    ));
    assert_eq!(code, 1);
    // ~/.postgresql/root.crt is the default root certificate.
    std::fs::create_dir_all(dir.path().join(".postgresql")).unwrap();
    std::fs::copy(&ca, dir.path().join(".postgresql/root.crt")).unwrap();
    let (code, _, err) = run(format!(
        "host=localhost port={port} user=postgres dbname=postgres sslmode=verify-full"
    ));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn require_fails_against_a_server_without_tls() {
    let cluster = Cluster::start();
    let dir = TempDir::new("notls");
    let conf = config(
        &dir,
        &format!("{} sslmode=require", cluster.connstr("postgres")),
    );
    let (code, _, err) = check(&conf, &[]);
    assert_eq!(code, 1);
    one_error_line(&err);
}

#[test]
fn channel_binding_require_works_with_scram_over_tls() {
    let certs = make_certs();
    let cluster = Cluster::builder()
        .ssl(&certs.server_pem, &certs.server_key_pem)
        .password_auth()
        .start();
    cluster.execute("create role app login password 'pw'");
    let dir = TempDir::new("binding");
    let base = format!(
        "host=127.0.0.1 port={} dbname=postgres user=app password=pw channel_binding=require",
        cluster.port()
    );
    let (code, out, err) = check(&config(&dir, &format!("{base} sslmode=require")), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.trim_end().ends_with("tls on"), "{out}");
    // Without TLS there is nothing to bind to.
    let (code, _, err) = check(&config(&dir, &format!("{base} sslmode=disable")), &[]);
    assert_eq!(code, 1, "{err}");
    assert!(one_error_line(&err).contains("channel binding"), "{err}");
}
