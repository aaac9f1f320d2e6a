//! Running as a service: `-d`, the pidfile, `-s`/`-k`/`-r`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cli::one_error_line;
use crate::replay::{Pair, stop};
use crate::util::{process_alive, skyrep, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// Runs `skyrep [options] CONFIG [command]`.
fn run(options: &[&str], conf: &Path, command: &[&str]) -> Output {
    skyrep()
        .args(options)
        .arg(conf)
        .args(command)
        .output()
        .expect("skyrep runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A replicating pair whose config has a pidfile and a logfile in its scratch dir.
fn service() -> (Pair, PathBuf, PathBuf) {
    let pair = Pair::new("create table ledger (id bigint primary key, note text);");
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger"]);
    let pidfile = pair.dir.path().join("login.pid");
    let logfile = pair.dir.path().join("login.log");
    let conf = std::fs::read_to_string(&pair.conf).unwrap()
        + &format!(
            "pidfile = {}\nlogfile = {}\n",
            pidfile.display(),
            logfile.display()
        );
    std::fs::write(&pair.conf, conf).unwrap();
    (pair, pidfile, logfile)
}

/// Kills a daemon the test started if the test ends early, so that it does not linger.
struct Reaper(i32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if process_alive(self.0) {
            // SAFETY: sending a signal to a pid.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
}

/// `skyrep -d CONF replay`, which must start: its output, the daemon's pid from `pidfile`,
/// and what kills it when the test ends.
fn detach(conf: &Path, pidfile: &Path) -> (Output, i32, Reaper) {
    let out = run(&["-d"], conf, &["replay"]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = pid_in(pidfile);
    (out, pid, Reaper(pid))
}

fn pid_in(pidfile: &Path) -> i32 {
    std::fs::read_to_string(pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn daemon_starts_refuses_a_second_reloads_and_stops() {
    let (pair, pidfile, logfile) = service();
    let (out, pid, _reaper) = detach(&pair.conf, &pidfile);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("started, pid {pid}")
    );
    assert!(process_alive(pid));
    pair.provider
        .execute("insert into ledger values (1, 'while detached')");
    pair.wait_equal(&[("ledger", "id")]);

    // A second daemon of the same config, or the same job in the foreground, is refused.
    for options in [&["-d"][..], &[]] {
        let out = run(options, &pair.conf, &["replay"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("already running as pid {pid}")),
            "{}",
            text(&out)
        );
    }
    assert_eq!(pid_in(&pidfile), pid, "the pidfile is left alone");

    // -r after logrotate moved the log away and the config changed: the daemon writes a
    // new file, applies loop_delay at once and says what waits for a restart.
    let rotated = logfile.with_extension("log.1");
    std::fs::rename(&logfile, &rotated).unwrap();
    let conf = std::fs::read_to_string(&pair.conf).unwrap()
        + "loop_delay = 0.5
maint_period = 60
";
    std::fs::write(&pair.conf, conf).unwrap();
    let out = run(&["-r"], &pair.conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("sent SIGHUP to pid {pid}")));
    wait_until(WAIT, "a new log file after SIGHUP", || {
        read(&logfile).contains(
            "got SIGHUP: reopened the log file; in force now: loop_delay = 500ms, \
             parallel_copies = 1; changed settings that take effect at the next start: \
             maint_period",
        )
    });
    pair.provider
        .execute("insert into ledger values (2, 'after reload')");
    pair.wait_equal(&[("ledger", "id")]);
    assert!(read(&rotated).contains("replaying queue login"));

    // -s stops it safely and waits; the pidfile goes with it.
    let out = run(&["-s"], &pair.conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(&format!("stopped pid {pid}")));
    assert!(!process_alive(pid));
    assert!(!pidfile.exists());
    assert!(read(&logfile).contains("got SIGINT, shutting down"));

    // Nothing to signal now.
    let out = run(&["-k"], &pair.conf, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no daemon running"), "{}", text(&out));
}

#[test]
fn a_second_daemon_of_the_job_is_refused_whatever_its_pidfile() {
    let (pair, pidfile, logfile) = service();
    let (_, pid, _reaper) = detach(&pair.conf, &pidfile);
    pair.provider
        .execute("insert into ledger values (1, 'first')");
    pair.wait_equal(&[("ledger", "id")]);

    // The same job with a pidfile and a log of its own, as a copy of the config would have.
    let other_pidfile = pair.dir.path().join("other.pid");
    let other = pair.dir.write(
        "other.ini",
        &read(&pair.conf)
            .replace(
                &pidfile.display().to_string(),
                &other_pidfile.display().to_string(),
            )
            .replace(
                &logfile.display().to_string(),
                &pair.dir.path().join("other.log").display().to_string(),
            ),
    );
    for options in [&["-d"][..], &[]] {
        let out = run(options, &other, &["replay"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("skyrep: job login_sub (queue login) is replaying into host=127.0.0.1")
                && stderr.contains("already, held by backend pid")
                && stderr.contains("one replay per job"),
            "{}",
            text(&out)
        );
        assert!(!other_pidfile.exists(), "{}", text(&out));
    }

    // The first goes on.
    assert!(process_alive(pid));
    pair.provider
        .execute("insert into ledger values (2, 'still replayed')");
    pair.wait_equal(&[("ledger", "id")]);
    let out = run(&["-s"], &pair.conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn only_skyrep_running_the_config_is_signalled() {
    let (pair, pidfile, logfile) = service();
    // A pidfile planted with the pid of another program.
    let mut sleep = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let _sleep_reaper = Reaper(sleep.id() as i32);
    std::fs::write(&pidfile, format!("{}\n", sleep.id())).unwrap();
    let program = std::fs::read_link(format!("/proc/{}/exe", sleep.id())).unwrap();
    for option in ["-s", "-k", "-r"] {
        let out = run(&[option], &pair.conf, &[]);
        assert_eq!(out.status.code(), Some(1), "{option}: {}", text(&out));
        let expected = format!(
            "skyrep: pid {} from {} is {}, not skyrep running {}; not signalled",
            sleep.id(),
            pidfile.display(),
            program.display(),
            pair.conf.display()
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(&expected),
            "{option}: {}",
            text(&out)
        );
        assert!(
            sleep.try_wait().unwrap().is_none(),
            "{option}: sleep was signalled"
        );
    }

    // A daemon takes such a pidfile over; skyrep running another config is not signalled.
    let (_, pid, _reaper) = detach(&pair.conf, &pidfile);
    assert!(
        read(&logfile).contains(&format!("which is {}", program.display())),
        "{}",
        read(&logfile)
    );
    let other = pair.dir.write("other.ini", &read(&pair.conf));
    let out = run(&["-s"], &other, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "pid {pid} from {} is skyrep running another config",
            pidfile.display()
        )),
        "{}",
        text(&out)
    );
    assert!(process_alive(pid));
    let out = run(&["-s"], &pair.conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!process_alive(pid));
    assert!(sleep.try_wait().unwrap().is_none());
}

#[test]
fn a_stale_pidfile_is_taken_over_and_k_stops_at_once() {
    let (pair, pidfile, logfile) = service();
    // The pid of a process that has exited.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let gone_pid = gone.id();
    gone.wait().unwrap();
    std::fs::write(&pidfile, format!("{gone_pid}\n")).unwrap();
    let (_, pid, _reaper) = detach(&pair.conf, &pidfile);
    assert_ne!(pid, gone_pid as i32);
    assert!(
        read(&logfile).contains(&format!("taking over pidfile {}", pidfile.display())),
        "{}",
        read(&logfile)
    );
    let out = run(&["-k"], &pair.conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!process_alive(pid));
    assert!(!pidfile.exists());
    assert!(read(&logfile).contains("got SIGTERM, stopping at once"));
}

#[test]
fn k_stops_at_once_and_the_batch_it_abandoned_is_applied_once_at_the_next_start() {
    let (pair, pidfile, logfile) = service();
    let (_, pid, _reaper) = detach(&pair.conf, &pidfile);
    pair.provider
        .execute("insert into ledger values (1, 'before')");
    pair.wait_equal(&[("ledger", "id")]);
    // The subscriber's table is locked: the next batch waits for it, as a long one runs.
    let mut locker = pair.subscriber.connect("postgres");
    locker
        .batch_execute("begin; lock table ledger in access exclusive mode")
        .unwrap();
    pair.provider
        .execute("insert into ledger select g, 'held' from generate_series(2, 100) g");
    wait_until(WAIT, "a batch waits for the locked table", || {
        pair.subscriber.value(
            "postgres",
            "select count(*) from pg_locks where not granted and relation = 'ledger'::regclass",
        ) == Some("1".to_string())
    });
    // -s would wait for that batch; -k does not.
    let out = run(&["-k"], &pair.conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!process_alive(pid));
    assert!(!pidfile.exists());
    let log = read(&logfile);
    assert!(log.contains("got SIGTERM, stopping at once"), "{log}");
    locker.batch_execute("rollback").unwrap();
    assert_eq!(
        pair.subscriber
            .value("postgres", "select count(*) from ledger"),
        Some("1".to_string()),
        "the abandoned batch was rolled back"
    );
    pair.provider
        .execute("insert into ledger values (101, 'after')");
    let (_, _, _reaper) = detach(&pair.conf, &pidfile);
    pair.wait_equal(&[("ledger", "id")]);
    assert_eq!(
        pair.subscriber
            .value("postgres", "select count(*) from ledger"),
        Some("101".to_string())
    );
    let log = read(&logfile);
    assert!(!log.contains(" ERROR "), "{log}");
    let out = run(&["-s"], &pair.conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn daemon_options_are_checked_before_anything_starts() {
    let pair = Pair::new("create table ledger (id bigint primary key, note text);");
    let out = run(&["-d"], &pair.conf, &["replay"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("-d needs `logfile`"), "{}", text(&out));
    let out = run(&["-d"], &pair.conf, &["status"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("not `status`"), "{}", text(&out));
    let out = run(&["-s"], &pair.conf, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("has no `pidfile`"), "{}", text(&out));
    let out = run(&["-s", "-k"], &pair.conf, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = run(&["-s"], &pair.conf, &["replay"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("take only the config file"),
        "{}",
        text(&out)
    );
}

/// Inserts ledger rows on the provider until stopped, riding out provider restarts:
/// reconnects after an error and goes on with the next id (a row whose commit was cut off
/// may or may not be there; either way both sides must agree).
fn resilient_writer(connstr: String, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<i64> {
    std::thread::spawn(move || {
        let mut next: i64 = 1;
        let mut client: Option<postgres::Client> = None;
        while !stop.load(Ordering::Relaxed) {
            let c = match client.as_mut() {
                Some(c) => c,
                None => match postgres::Client::connect(&connstr, postgres::NoTls) {
                    Ok(c) => client.insert(c),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                },
            };
            let inserted = c.execute(
                "insert into ledger (id, note) values ($1, 'row') on conflict do nothing",
                &[&next],
            );
            match inserted {
                Ok(_) => next += 1,
                Err(_) => client = None,
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        next - 1
    })
}

#[test]
fn replay_rides_out_a_restart_of_either_server_under_load() {
    let mut pair = Pair::new("create table ledger (id bigint primary key, note text);");
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger"]);
    let mut replay = pair.start_replay();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = resilient_writer(pair.provider.connstr("postgres"), stop_writer.clone());
    let rows_on_provider = |pair: &Pair| -> i64 {
        pair.provider
            .query_strings("postgres", "select count(*) from ledger")[0][0]
            .as_deref()
            .unwrap()
            .parse()
            .unwrap()
    };
    wait_until(WAIT, "the copy is done", || {
        pair.states().iter().all(|(_, state)| state == "ok")
    });
    let recoveries = |pair: &Pair| pair.replay_log().matches("replay: working again").count();
    wait_until(WAIT, "some rows", || rows_on_provider(&pair) > 100);
    pair.subscriber.restart();
    wait_until(WAIT, "replay back after the subscriber restart", || {
        recoveries(&pair) >= 1
    });
    let before = rows_on_provider(&pair);
    wait_until(WAIT, "more rows", || rows_on_provider(&pair) > before + 100);
    let recovered = recoveries(&pair);
    pair.provider.restart();
    wait_until(WAIT, "replay back after the provider restart", || {
        recoveries(&pair) > recovered
    });
    let before = rows_on_provider(&pair);
    wait_until(WAIT, "writes after the provider restart", || {
        rows_on_provider(&pair) > before + 100
    });
    stop_writer.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    pair.wait_equal(&[("ledger", "id")]);
    assert!(written > 300, "{written}");
    let log = pair.replay_log();
    assert!(
        log.contains("replay: "),
        "the lost connection is logged: {log}"
    );
    assert!(log.contains("working again after"), "{log}");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn connections_are_renewed_after_connection_lifetime() {
    let pair = Pair::new("create table ledger (id bigint primary key, note text);");
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger"]);
    let conf = std::fs::read_to_string(&pair.conf).unwrap() + "connection_lifetime = 1\n";
    std::fs::write(&pair.conf, conf).unwrap();
    let mut replay = pair.start_replay();
    // skyrep's sessions on each server, by backend pid.
    let sessions = |cluster: &crate::cluster::Cluster| -> Vec<String> {
        cluster
            .query_strings(
                "postgres",
                "select pid::text from pg_stat_activity \
                 where application_name = 'skyrep/login_sub' order by pid",
            )
            .into_iter()
            .map(|row| row[0].clone().unwrap())
            .collect()
    };
    wait_until(WAIT, "replay connected", || {
        pair.states().iter().all(|(_, s)| s == "ok") && !sessions(&pair.subscriber).is_empty()
    });
    let (provider_before, subscriber_before) =
        (sessions(&pair.provider), sessions(&pair.subscriber));
    wait_until(WAIT, "every session replaced", || {
        let (p, s) = (sessions(&pair.provider), sessions(&pair.subscriber));
        !p.is_empty()
            && !s.is_empty()
            && p.iter().all(|pid| !provider_before.contains(pid))
            && s.iter().all(|pid| !subscriber_before.contains(pid))
    });
    pair.provider
        .execute("insert into ledger values (1, 'after renewal')");
    pair.wait_equal(&[("ledger", "id")]);
    assert!(
        !pair.replay_log().contains("ERROR"),
        "{}",
        pair.replay_log()
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_stop_cancels_a_running_copy_and_the_next_start_copies_again() {
    let pair = Pair::new("create table big (id int primary key, pad text);");
    pair.provider
        .execute("insert into big select g, 'row ' || g from generate_series(1, 1000) g");
    pair.ok(&["provider", "add", "big"]);
    let mut replay = pair.start_replay();
    // The provider table is locked, so the copy's COPY waits, as a long one would run.
    let mut locker = pair.provider.connect("postgres");
    locker
        .batch_execute("begin; lock table big in access exclusive mode")
        .unwrap();
    pair.ok(&["subscriber", "add", "big"]);
    wait_until(WAIT, "the copy is running", || {
        pair.replay_log()
            .contains("public.big: copying from the provider")
    });
    assert_eq!(
        stop(&mut replay, libc::SIGINT),
        Some(0),
        "{}",
        pair.replay_log()
    );
    let log = pair.replay_log();
    assert!(log.contains("INFO copy-1: stopped: "), "{log}");
    assert!(!log.contains(" ERROR "), "a stop is no failure: {log}");
    assert_eq!(
        pair.states(),
        [("public.big".to_string(), "in-copy".to_string())]
    );
    locker.batch_execute("rollback").unwrap();
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("big", "id")]);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_daemon_that_cannot_work_fails_its_start_saying_why() {
    let dir = crate::util::TempDir::new("daemon");
    let pidfile = dir.path().join("gone.pid");
    let logfile = dir.path().join("gone.log");
    let provider = crate::cluster::Cluster::start();
    let subscriber = crate::cluster::Cluster::start();
    let write = |provider_db: &str, subscriber_db: &str| {
        dir.write(
            "gone.ini",
            &format!(
                "[skyrep]\njob_name = gone\nprovider_db = {provider_db}\n\
                 subscriber_db = {subscriber_db}\npgq_queue_name = q\npidfile = {}\n\
                 logfile = {}\n",
                pidfile.display(),
                logfile.display()
            ),
        )
    };
    let (p, s) = (provider.connstr("postgres"), subscriber.connstr("postgres"));
    let consumers = || {
        provider.value(
            "postgres",
            "select count(*) from pgq.consumer where co_name = 'gone'",
        )
    };
    let conf = write(&p, &s);
    let ok = |args: &[&str]| {
        let out = run(&[], &conf, args);
        assert!(out.status.success(), "{}", text(&out));
    };
    let refused = |conf: &Path, expected: &str| {
        let out = run(&["-d"], conf, &["replay"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
        assert!(!text(&out).contains("started"), "{}", text(&out));
        assert!(!pidfile.exists());
    };
    // Nothing listens on port 1.
    refused(
        &write(&p, "host=127.0.0.1 port=1"),
        "skyrep: cannot connect to subscriber_db",
    );
    // Reachable, but not set up.
    refused(
        &write(&p, &s),
        "skyrep: the subscriber database is not set up: run `subscriber install` first",
    );
    ok(&["subscriber", "install"]);
    refused(
        &write("host=127.0.0.1 port=1 dbname=x user=x", &s),
        "skyrep: cannot connect to provider_db",
    );
    // The subscriber set up but not the provider: no consumer is registered anywhere.
    refused(
        &write(&p, &s),
        "skyrep: the provider database has no pgq: run `provider install` first",
    );
    ok(&["provider", "install"]);
    assert_eq!(consumers().as_deref(), Some("0"));
    // Set up, it starts, and registers its consumer.
    let out = run(&["-d"], &conf, &["replay"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(consumers().as_deref(), Some("1"));
    // `status` names the detached process, not the one that started it.
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let out = run(&[], &conf, &["status"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("Replay: running, pid {} on ", pid.trim())),
        "{}",
        text(&out)
    );
    let out = run(&["-s"], &conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
    wait_until(WAIT, "the daemon stopped", || !pidfile.exists());
}

#[test]
fn a_consumer_is_registered_only_where_it_is_read_and_unregistered_without_its_subscriber() {
    let pair = Pair::new("create table t (id int primary key)");
    let consumers = || {
        pair.provider.query_strings(
            "postgres",
            "select co_name from pgq.consumer join pgq.subscription on sub_consumer = co_id \
             order by 1",
        )
    };
    let good = std::fs::read_to_string(&pair.conf).unwrap();
    let line = format!("subscriber_db = {}", pair.subscriber.connstr("postgres"));
    let with_subscriber = |connstr: &str| {
        std::fs::write(
            &pair.conf,
            good.replace(&line, &format!("subscriber_db = {connstr}")),
        )
        .unwrap();
    };
    // A typo in the database name: neither `subscriber register` nor replay registers.
    with_subscriber(&pair.subscriber.connstr("postgrse"));
    for command in [&["subscriber", "register"][..], &["replay"]] {
        let out = run(&[], &pair.conf, command);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("postgrse"), "{}", text(&out));
    }
    assert!(consumers().is_empty(), "{:?}", consumers());
    // A database without londiste: the same.
    pair.subscriber.execute("create database bare");
    with_subscriber(&pair.subscriber.connstr("bare"));
    let out = run(&[], &pair.conf, &["subscriber", "register"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not set up: run `subscriber install` first"),
        "{}",
        text(&out)
    );
    assert!(consumers().is_empty(), "{:?}", consumers());
    // A typo in the queue's name: said so, as replay says it.
    std::fs::write(
        &pair.conf,
        good.replace("pgq_queue_name = login", "pgq_queue_name = lgoin"),
    )
    .unwrap();
    let (code, err) = pair.fails(&["subscriber", "register"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        one_error_line(&err),
        "skyrep: queue lgoin does not exist on the provider: run `provider install` first"
    );
    assert!(consumers().is_empty(), "{:?}", consumers());

    // Registered; replay applies a batch.
    std::fs::write(&pair.conf, &good).unwrap();
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "t", "--expect-sync"]);
    pair.provider.execute("insert into t values (1)");
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("t", "id")]);
    // Not while replay runs.
    let (code, err) = pair.fails(&["subscriber", "unregister"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("replay of job login_sub is running") && err.contains("stop it first"),
        "{err}"
    );
    assert_eq!(consumers().len(), 1);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
    // A copy consumer left working for it (by a crash mid-copy) goes with it.
    pair.provider
        .execute("select pgq.register_consumer('login', 'login_sub.copy.public.t')");

    // The subscriber gone: unregistering still frees the queue, and says what is left.
    with_subscriber("host=127.0.0.1 port=1 dbname=postgres");
    let out = run(&[], &pair.conf, &["subscriber", "unregister"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("run `subscriber unregister` again once it can be reached"),
        "{}",
        text(&out)
    );
    assert!(consumers().is_empty(), "{:?}", consumers());
    let applied = || {
        pair.subscriber
            .value("postgres", "select count(*) from londiste.applied_ticks")
    };
    assert_eq!(applied().as_deref(), Some("1"));
    // Once it is back, the same command clears its record too.
    std::fs::write(&pair.conf, &good).unwrap();
    pair.ok(&["subscriber", "unregister"]);
    assert_eq!(applied().as_deref(), Some("0"));
}

/// A replay started while `subscriber unregister` works finds the job's lock taken and
/// stops at once, instead of going on with the job removed under it.
#[test]
fn replay_does_not_start_while_the_job_is_unregistered() {
    let pair = Pair::new("create table t (id int primary key)");
    pair.ok(&["subscriber", "register"]);
    // The provider holds `subscriber unregister` up in the middle of its work.
    let mut blocker = pair.provider.connect("postgres");
    blocker
        .batch_execute("begin; lock table pgq.retry_queue in share mode")
        .unwrap();
    let unregister = skyrep()
        .arg(&pair.conf)
        .args(["subscriber", "unregister"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let waiting = || {
        pair.provider
            .value(
                "postgres",
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock'",
            )
            .unwrap()
            .parse::<i32>()
            .unwrap()
    };
    wait_until(WAIT, "unregister waits for the provider", || waiting() == 1);
    let mut replay = pair.start_replay();
    // Either replay stops at once, or it waits behind the unregister too.
    wait_until(WAIT, "replay stops or waits", || {
        replay.try_wait().unwrap().is_some() || waiting() == 2
    });
    let exited = replay.try_wait().unwrap();
    if exited.is_none() {
        stop(&mut replay, libc::SIGKILL);
    }
    blocker.batch_execute("rollback").unwrap();
    let out = unregister.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        exited.and_then(|e| e.code()),
        Some(1),
        "{}",
        pair.replay_log()
    );
    assert!(
        pair.replay_log().contains("is replaying into"),
        "{}",
        pair.replay_log()
    );
    let registered = pair.provider.query_strings(
        "postgres",
        "select co_name from pgq.consumer join pgq.subscription on sub_consumer = co_id",
    );
    assert!(registered.is_empty(), "{registered:?}");
}

#[test]
fn both_daemons_fail_their_start_with_the_reason_and_the_exit_code_of_the_foreground() {
    let dir = crate::util::TempDir::new("daemon-start");
    let pidfile = dir.path().join("job.pid");
    let logfile = dir.path().join("job.log");
    let cluster = crate::cluster::Cluster::start();
    // `body` with the service keys, pointed at the paths given.
    let config = |body: &str, log: &Path, pid: &Path| {
        dir.write(
            "job.ini",
            &format!(
                "{body}logfile = {}\npidfile = {}\n",
                log.display(),
                pid.display()
            ),
        )
    };
    let fails = |conf: &Path, command: &str, code: i32, expected: &str| {
        let out = run(&["-d"], conf, &[command]);
        assert_eq!(out.status.code(), Some(code), "{command}: {}", text(&out));
        assert!(text(&out).contains(expected), "{command}: {}", text(&out));
        assert!(!text(&out).contains("started"), "{command}: {}", text(&out));
        assert!(!pidfile.exists(), "{command}: {}", text(&out));
    };
    let unreachable = "host=127.0.0.1 port=1 dbname=x user=x";
    let replay = format!(
        "[skyrep]\njob_name = job\nprovider_db = {unreachable}\nsubscriber_db = {unreachable}\n\
         pgq_queue_name = q\n"
    );
    let ticker = format!(
        "[pgqadm]\njob_name = job\ndb = {}\n",
        cluster.connstr("postgres")
    );

    // A config missing a key: exit 2, as in the foreground.
    let conf = config(
        "[skyrep]\nsubscriber_db = host=127.0.0.1 port=1\npgq_queue_name = q\n",
        &logfile,
        &pidfile,
    );
    fails(&conf, "replay", 2, "job.ini: missing key `provider_db`");
    let conf = config("[pgqadm]\njob_name = job\n", &logfile, &pidfile);
    fails(
        &conf,
        "ticker",
        2,
        "the ticker needs `db`, or `base_connstr`",
    );

    // A log file that cannot be opened (a directory is in its place).
    let not_a_file = dir.path().join("dir.log");
    std::fs::create_dir(&not_a_file).unwrap();
    for (body, command) in [(&replay, "replay"), (&ticker, "ticker")] {
        let conf = config(body, &not_a_file, &pidfile);
        fails(&conf, command, 2, "cannot open log file");
        // A pidfile in a directory that is not there.
        let gone = dir.path().join("gone").join("job.pid");
        let conf = config(body, &logfile, &gone);
        fails(
            &conf,
            command,
            2,
            &format!("skyrep: cannot write pidfile {}", gone.display()),
        );
    }

    // A server that cannot be reached.
    let conf = config(
        &format!("[pgqadm]\njob_name = job\ndb = {unreachable}\n"),
        &logfile,
        &pidfile,
    );
    fails(&conf, "ticker", 1, "skyrep: cannot connect to x");
    let conf = config(
        "[pgqd]\nbase_connstr = host=127.0.0.1 port=1 user=x\n",
        &logfile,
        &pidfile,
    );
    fails(
        &conf,
        "ticker",
        1,
        "skyrep: cannot connect to initial_database",
    );

    // The ticker's database without pgq; once installed, the ticker starts.
    let conf = config(&ticker, &logfile, &pidfile);
    fails(
        &conf,
        "ticker",
        1,
        &format!(
            "skyrep: database postgres has no pgq 3: run `skyrep {} install` first",
            conf.display()
        ),
    );
    let out = run(&[], &conf, &["install"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&["-d"], &conf, &["ticker"]);
    assert!(out.status.success(), "{}", text(&out));
    let pid = pid_in(&pidfile);
    let _reaper = Reaper(pid);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("started, pid {pid}")
    );
    let out = run(&["-s"], &conf, &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!pidfile.exists());
}

#[test]
fn a_log_file_root_creates_stays_writable_by_the_owner_of_its_directory() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: only root gives files away");
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt, chown};
    use std::os::unix::process::CommandExt;
    // The service's user (nobody) owns the log directory, as skyrep owns /var/log/skyrep.
    let (service_uid, service_gid) = (65534, 65534);
    let dir = crate::util::TempDir::new("log-owner");
    let logs = dir.path().join("log dir");
    std::fs::create_dir(&logs).unwrap();
    chown(&logs, Some(service_uid), Some(service_gid)).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o750)).unwrap();
    let log = logs.join("job.log");
    let unreachable = "host=127.0.0.1 port=1 dbname=x user=x";
    let conf = dir.write(
        "job.ini",
        &format!(
            "[skyrep]\nprovider_db = {unreachable}\nsubscriber_db = {unreachable}\n\
             logfile = {}\n",
            log.display()
        ),
    );
    // `check` opens the log and writes its error there.
    let check = |uid: u32| {
        let out = skyrep()
            .uid(uid)
            .gid(if uid == 0 { 0 } else { service_gid })
            // Root's home is not the service user's to read (~/.pgpass).
            .env("HOME", dir.path())
            .arg(&conf)
            .arg("check")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("cannot connect to"), "{}", text(&out));
    };
    // A setup command run as root first creates the log file...
    check(0);
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o777),
        (service_uid, service_gid, 0o640)
    );
    // ... which the service's user can still write.
    check(service_uid);
    let errors = read(&log).matches(" ERROR cannot connect to").count();
    assert_eq!(errors, 2, "{}", read(&log));
    // A log file that is there already keeps its owner.
    chown(&log, Some(1), Some(1)).unwrap();
    check(0);
    let meta = std::fs::metadata(&log).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1, 1));
}

#[test]
fn under_systemd_replay_reports_ready_only_after_its_start_up_checks() {
    use std::os::unix::net::UnixDatagram;
    let (pair, _, _) = service();
    let socket_path = pair.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let consumers = || {
        pair.provider.value(
            "postgres",
            "select count(*) from pgq.consumer where co_name = 'login_sub'",
        )
    };
    pair.ok(&["subscriber", "unregister"]);
    assert_eq!(consumers().as_deref(), Some("0"));
    let mut child = skyrep()
        .env("NOTIFY_SOCKET", &socket_path)
        .arg(&pair.conf)
        .arg("replay")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id() as i32);
    let mut buf = [0u8; 64];
    let n = socket.recv(&mut buf).expect("READY=1 within the wait");
    assert_eq!(&buf[..n], b"READY=1\n");
    // By then the consumer is registered: the start-up checks came first.
    assert_eq!(consumers().as_deref(), Some("1"));
    assert_eq!(stop(&mut child, libc::SIGINT), Some(0));

    // A start that fails sends nothing and exits with the reason.
    let ticker = pair.dir.write(
        "ticker.ini",
        "[pgqadm]\njob_name = t\ndb = host=127.0.0.1 port=1 dbname=x user=x\n",
    );
    let out = skyrep()
        .env("NOTIFY_SOCKET", &socket_path)
        .arg(&ticker)
        .arg("ticker")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("cannot connect to x"), "{}", text(&out));
    socket.set_nonblocking(true).unwrap();
    assert!(
        socket.recv(&mut buf).is_err(),
        "no READY after a failed start"
    );

    // The ticker, told through an abstract socket (`@name`, as systemd may give it).
    use std::os::linux::net::SocketAddrExt;
    let name = format!("skyrep-notify-{}", std::process::id());
    let address = std::os::unix::net::SocketAddr::from_abstract_name(&name).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let ticker = pair.dir.write(
        "ticker.ini",
        &format!(
            "[pgqadm]\njob_name = t\ndb = {}\n",
            pair.provider.connstr("postgres")
        ),
    );
    let mut child = skyrep()
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .arg(&ticker)
        .arg("ticker")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _reaper = Reaper(child.id() as i32);
    let n = socket.recv(&mut buf).expect("READY=1 within the wait");
    assert_eq!(&buf[..n], b"READY=1\n");
    assert_eq!(stop(&mut child, libc::SIGINT), Some(0));
}
