//! Tests of the test harness itself.

use std::fs;
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use postgres::NoTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::cluster::Cluster;
use crate::util::{error_chain, process_alive, wait_until};

fn strings(rows: &[&[&str]]) -> Vec<Vec<Option<String>>> {
    rows.iter()
        .map(|row| row.iter().map(|v| Some(v.to_string())).collect())
        .collect()
}

#[test]
fn two_clusters_run_side_by_side() {
    let a = Cluster::start();
    let b = Cluster::start();
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());

    a.execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('a')");
    b.create_database("other db");
    b.connect("other db")
        .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('b1'), ('b2')")
        .unwrap();

    let query = "SELECT v FROM t ORDER BY v";
    assert_eq!(a.query_strings("postgres", query), strings(&[&["a"]]));
    assert_eq!(
        b.query_strings("other db", query),
        strings(&[&["b1"], &["b2"]])
    );

    // The TCP connection strings reach the right servers.
    let mut client = postgres::Client::connect(&b.connstr("other db"), NoTls).unwrap();
    assert_eq!(client.query(query, &[]).unwrap().len(), 2);
    let mut client = postgres::Client::connect(&a.socket_connstr("postgres"), NoTls).unwrap();
    assert_eq!(client.query(query, &[]).unwrap().len(), 1);
}

#[test]
fn cluster_is_removed_when_a_test_panics() {
    let (tx, rx) = mpsc::channel();
    let result = thread::Builder::new()
        .name("deliberately-panicking".into())
        .spawn(move || {
            let cluster = Cluster::start();
            let pid_file = fs::read_to_string(cluster.data_dir().join("postmaster.pid")).unwrap();
            let pid: i32 = pid_file.lines().next().unwrap().parse().unwrap();
            tx.send((cluster.dir().to_owned(), pid)).unwrap();
            panic!("deliberate panic while a cluster is running");
        })
        .unwrap()
        .join();
    assert!(result.is_err(), "the thread should have panicked");

    let (dir, pid) = rx.recv().unwrap();
    assert!(!dir.exists(), "{} still exists", dir.display());
    wait_until(Duration::from_secs(10), "the postmaster has exited", || {
        !process_alive(pid)
    });
}

#[test]
fn ssl_cluster_accepts_tls() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "skyrep test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let server_cert = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();

    let cluster = Cluster::builder()
        .ssl(&server_cert.pem(), &server_key.serialize_pem())
        .start();
    assert_eq!(
        cluster.query_strings("postgres", "SHOW ssl"),
        strings(&[&["on"]])
    );

    // A TLS connection over TCP that verifies the server certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let connstr = format!("{} sslmode=require", cluster.connstr("postgres"));
    let mut client = postgres::Client::connect(&connstr, tls)
        .unwrap_or_else(|e| panic!("TLS connection failed: {}", error_chain(&e)));
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap();
    assert!(row.get::<_, bool>(0), "the connection does not use TLS");
}

#[test]
fn password_auth_requires_a_password() {
    let cluster = Cluster::builder().password_auth().start();
    cluster.execute("CREATE ROLE app LOGIN PASSWORD 'secret'");
    let connstr = format!(
        "host={} port={} user=app dbname=postgres",
        cluster.host(),
        cluster.port()
    );

    let err = postgres::Client::connect(&connstr, NoTls)
        .err()
        .expect("connecting without a password should fail");
    assert!(
        error_chain(&err).contains("password"),
        "{}",
        error_chain(&err)
    );

    let err = postgres::Client::connect(&format!("{connstr} password=wrong"), NoTls)
        .err()
        .expect("connecting with a wrong password should fail");
    let code = err.as_db_error().map(|e| e.code().code());
    assert_eq!(code, Some("28P01"), "{}", error_chain(&err)); // invalid_password

    let mut client = postgres::Client::connect(&format!("{connstr} password=secret"), NoTls)
        .unwrap_or_else(|e| panic!("{}", error_chain(&e)));
    let user: String = client.query_one("SELECT current_user", &[]).unwrap().get(0);
    assert_eq!(user, "app");
}
