//! The command line as a user meets it: help, version, the sample config, and every exit
//! code path. None of these need a database.

use crate::util::{TempDir, skyrep};

/// Runs skyrep with `args` and returns (exit code, stdout, stderr).
pub fn run(args: &[&str]) -> (i32, String, String) {
    let out = skyrep().args(args).output().expect("skyrep runs");
    (
        out.status.code().expect("skyrep exits normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that stderr is exactly one `skyrep: ` line and returns it.
pub fn one_error_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got: {stderr}");
    assert!(lines[0].starts_with("skyrep: "), "{stderr}");
    lines[0]
}

#[test]
fn help_and_version_exit_0() {
    let (code, out, err) = run(&["--help"]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert!(out.starts_with("skyrep: "), "{out}");
    assert!(out.contains("Usage:") && out.contains("check"), "{out}");
    let (code, out, _) = run(&["-h"]);
    assert_eq!(code, 0);
    assert!(out.contains("Usage:"));
    // `help` as a word, alone or after a config file (which need not exist), the same.
    let (_, help, _) = run(&["--help"]);
    for args in [&["help"][..], &["no/such.ini", "help"]] {
        let (code, out, err) = run(args);
        assert_eq!((code, err.as_str()), (0, ""), "{args:?}");
        assert_eq!(out, help, "{args:?}");
    }
    let (code, out, _) = run(&["-V"]);
    assert_eq!(
        (code, out.as_str()),
        (0, concat!("skyrep ", env!("CARGO_PKG_VERSION"), "\n"))
    );
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("skyrep "));
}

#[test]
fn ini_prints_every_key_and_loads_back() {
    let (code, sample, err) = run(&["--ini"]);
    assert_eq!((code, err.as_str()), (0, ""));
    for key in [
        "job_name",
        "provider_db",
        "subscriber_db",
        "db",
        "pgq_queue_name",
        "logfile",
        "pidfile",
        "loop_delay",
        "ticker",
        "ticker_period",
        "maint_period",
        "retry_period",
        "parallel_copies",
        "lock_timeout",
        "compare_sql",
        "exception_sleep",
        "connection_lifetime",
        "syslog",
        "syslog_ident",
        "base_connstr",
        "initial_database",
        "database_list",
        "check_period",
    ] {
        assert!(sample.contains(&format!("\n#{key} =")), "--ini lacks {key}");
    }
    assert!(sample.contains("#loop_delay = 0.2\n") && sample.contains("#ticker_period = 0.2\n"));
    // The sample is a valid config: it loads, and only `check` complains that it names no database.
    let dir = TempDir::new("ini");
    let path = dir.write("sample.ini", &sample);
    let (code, out, err) = run(&[path.to_str().unwrap(), "check"]);
    assert_eq!((code, out.as_str()), (2, ""));
    assert!(one_error_line(&err).contains("nothing to check"), "{err}");
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    for (args, expected) in [
        (
            &[][..],
            "skyrep: missing CONFIG.ini argument (see skyrep --help)",
        ),
        (
            &["a.ini"][..],
            "skyrep: missing COMMAND after a.ini (see skyrep --help)",
        ),
        (
            &["--frobnicate"][..],
            "skyrep: invalid option '--frobnicate' (see skyrep --help)",
        ),
        (
            &["a.ini", "check", "-x"][..],
            "skyrep: invalid option '-x' (see skyrep --help)",
        ),
        (
            &["a.ini", "fly"][..],
            "skyrep: unknown command `fly` (see skyrep --help)",
        ),
        (
            &["a.ini", "check", "extra"][..],
            "skyrep: `check` takes no arguments, found `extra`",
        ),
        (
            &["a.ini", "status", "--max-lag", "-1"][..],
            "skyrep: --max-lag \"-1\": want a number of seconds, e.g. --max-lag 30",
        ),
        (
            &["a.ini", "status", "--max-lag", "1e20"][..],
            "skyrep: --max-lag \"1e20\": want a number of seconds, e.g. --max-lag 30",
        ),
    ] {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
        assert_eq!(one_error_line(&err), expected, "{args:?}");
    }
}

#[test]
fn missing_or_broken_config_exits_2_naming_file_and_line() {
    let dir = TempDir::new("badconf");
    let missing = dir.path().join("missing.ini");
    let (code, _, err) = run(&[missing.to_str().unwrap(), "check"]);
    assert_eq!(code, 2);
    let line = one_error_line(&err);
    assert!(
        line.contains("cannot read config file") && line.contains("missing.ini"),
        "{line}"
    );

    let bad = dir.write(
        "bad.ini",
        "[skyrep]\nprovider_db = host=x\nloop_delay = fast\n",
    );
    let (code, _, err) = run(&[bad.to_str().unwrap(), "check"]);
    assert_eq!(code, 2);
    assert_eq!(
        one_error_line(&err),
        format!(
            "skyrep: {}:3: loop_delay: expected a number of seconds, found `fast`",
            bad.display()
        )
    );

    let huge = dir.write(
        "huge.ini",
        "[skyrep]\nprovider_db = host=x\nloop_delay = 1e30\n",
    );
    let (code, _, err) = run(&[huge.to_str().unwrap(), "check"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(
        one_error_line(&err),
        format!(
            "skyrep: {}:3: loop_delay: expected a number of seconds, found `1e30`",
            huge.display()
        )
    );

    let cycle = dir.write(
        "cycle.ini",
        "[skyrep]\nlogfile = %(pidfile)s\npidfile = %(logfile)s\n",
    );
    let (code, _, err) = run(&[cycle.to_str().unwrap(), "check"]);
    assert_eq!(code, 2);
    assert!(
        one_error_line(&err).contains("cycle: logfile -> pidfile -> logfile"),
        "{err}"
    );
}

#[test]
fn unreachable_server_exits_1_naming_host_and_port_without_the_password() {
    let dir = TempDir::new("unreachable");
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    let conf = dir.write(
        "shop.ini",
        "[skyrep]\nprovider_db = host=127.0.0.1 port=1 dbname=shop user=app password=Sw0rdfish connect_timeout=5\n",
    );
    let (code, out, err) = run(&[conf.to_str().unwrap(), "check"]);
    assert_eq!((code, out.as_str()), (1, ""));
    let line = one_error_line(&err);
    assert!(
        line.contains("provider_db") && line.contains("host=127.0.0.1 port=1"),
        "{line}"
    );
    assert!(line.contains("Connection refused"), "{line}");
    assert!(!err.contains("Sw0rdfish"), "{err}");

    let uri = dir.write(
        "uri.ini",
        "[skyrep]\nsubscriber_db = postgresql://app:Sw0rdfish@127.0.0.1:1/shop\n",
    );
    let (code, _, err) = run(&[uri.to_str().unwrap(), "check"]);
    assert_eq!(code, 1);
    assert!(
        one_error_line(&err).contains("subscriber_db (host=127.0.0.1 port=1 dbname=shop user=app)")
    );
    assert!(!err.contains("Sw0rdfish"), "{err}");
}

#[test]
fn bad_connection_string_exits_2_without_the_password() {
    let dir = TempDir::new("badconn");
    let conf = dir.write(
        "c.ini",
        "[skyrep]\nprovider_db = host=h password='Sw0rdfish\n",
    );
    let (code, _, err) = run(&[conf.to_str().unwrap(), "check"]);
    assert_eq!(code, 2);
    assert!(
        one_error_line(&err).contains(":2: provider_db: unterminated quoted value"),
        "{err}"
    );
    assert!(!err.contains("Sw0rdfish"));
    let conf = dir.write("d.ini", "[skyrep]\nprovider_db = host=h sslcert=/x\n");
    let (code, _, err) = run(&[conf.to_str().unwrap(), "check"]);
    assert_eq!(code, 2);
    assert!(
        one_error_line(&err).contains("`sslcert` is not supported"),
        "{err}"
    );
}
