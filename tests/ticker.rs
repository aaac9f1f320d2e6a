//! pgq installed by skyrep, ticked by skyrep's ticker (command and thread) and by pgqd, read
//! by skyrep's consumer; and skyrep on a database where real PgQ is installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crossbeam_channel::bounded;
use skyrep::db::connstr::ConnStr;
use skyrep::queue::consumer::Consumer;
use skyrep::queue::install::{PgqState, install_pgq, pgq_state};
use skyrep::queue::privileges::Roles;
use skyrep::queue::ticker::{Settings, tick_database};

use crate::cluster::Cluster;
use crate::util::{TempDir, skyrep, wait_until};

const WAIT: Duration = Duration::from_secs(30);

/// Whether Debian's PgQ 3 extension and pgqd are installed. Outside CI a missing package
/// skips the test with a note; in CI (where tests/run.sh installs them) it fails.
pub fn real_pgq_available(cluster: &Cluster) -> bool {
    let extension = !cluster
        .query_strings(
            "postgres",
            "select 1 from pg_available_extensions where name = 'pgq'",
        )
        .is_empty();
    let pgqd = Command::new("pgqd").arg("-V").output().is_ok();
    if extension && pgqd {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must have PgQ 3 and pgqd installed (tests/run.sh does)"
    );
    eprintln!(
        "PgQ 3 extension or pgqd not installed: test skipped (tests/run.sh installs them as root)"
    );
    false
}

fn ticker_config(dir: &TempDir, cluster: &Cluster, extra: &str) -> PathBuf {
    dir.write(
        "ticker.ini",
        &format!(
            "[pgqadm]\njob_name = t\ndb = {}\nticker_period = 0.1\n{extra}",
            cluster.connstr("postgres")
        ),
    )
}

fn run_ok(conf: &Path, command: &str) -> String {
    let out = skyrep()
        .arg(conf)
        .args(command.split(" "))
        .output()
        .expect("skyrep runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "skyrep {command} failed: {stderr}");
    stderr
}

fn last_tick(cluster: &Cluster, queue: &str) -> i64 {
    let rows = cluster.query_strings(
        "postgres",
        &format!("select last_tick_id from pgq.get_queue_info('{queue}')"),
    );
    rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
}

/// Reads every batch the consumer can get now and returns the ev_data of their events.
fn drain(client: &mut postgres::Client, consumer: &Consumer, fetch: i32) -> Vec<String> {
    drain_by(client, consumer, [fetch, fetch], usize::MAX)
}

/// [`drain`], with the first fetch's rows, the most rows of a fetch and its bytes.
fn drain_by(
    client: &mut postgres::Client,
    consumer: &Consumer,
    fetch: [i32; 2],
    fetch_bytes: usize,
) -> Vec<String> {
    let mut seen = Vec::new();
    while let Some(batch) = consumer.next_batch(client).unwrap() {
        let mut tx = client.transaction().unwrap();
        consumer
            .for_each_event(&mut tx, &batch, fetch, fetch_bytes, |ev| {
                seen.push(ev.data.unwrap_or_default());
                Ok(())
            })
            .unwrap();
        consumer.finish_batch(&mut tx, &batch).unwrap();
        tx.commit().unwrap();
    }
    seen
}

fn insert_events(cluster: &Cluster, queue: &str, from: i32, to: i32) {
    cluster.execute(&format!(
        "select pgq.insert_event('{queue}', 'test', i::text) from generate_series({from}, {to}) i"
    ));
}

fn expected(from: i32, to: i32) -> Vec<String> {
    (from..=to).map(|i| i.to_string()).collect()
}

#[test]
fn install_creates_pgq_and_upgrades_in_place_keeping_events() {
    let cluster = Cluster::start();
    let dir = TempDir::new("install");
    let conf = ticker_config(&dir, &cluster, "");
    let log = run_ok(&conf, "install");
    assert!(log.contains("installing pgq (schema 1)"), "{log}");
    assert_eq!(
        cluster.query_strings(
            "postgres",
            "select pgq.skyrep_schema_version(), pgq.version()"
        ),
        [[Some("1".to_string()), Some("3.5.1".to_string())]]
    );
    cluster.execute("select pgq.create_queue('q'); select pgq.register_consumer('q', 'c')");
    insert_events(&cluster, "q", 1, 50);
    let log = run_ok(&conf, "install");
    assert!(log.contains("upgrading pgq (schema 1 to 1)"), "{log}");
    cluster.execute("select pgq.force_tick('q'); select pgq.ticker('q')");
    let mut client = cluster.connect("postgres");
    assert_eq!(
        drain(&mut client, &Consumer::new("q", "c"), 100),
        expected(1, 50)
    );
}

#[test]
fn install_needs_db_and_reports_an_unreachable_one() {
    let dir = TempDir::new("install-bad");
    let conf = dir.write("t.ini", "[pgqadm]\nlogfile = \n");
    let out = skyrep().arg(&conf).arg("install").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`install` needs `db`"));
    let conf = dir.write(
        "u.ini",
        "[pgqadm]\ndb = host=127.0.0.1 port=1 dbname=x password=Sw0rdfish\n",
    );
    let out = skyrep().arg(&conf).arg("install").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("host=127.0.0.1 port=1") && !err.contains("Sw0rdfish"),
        "{err}"
    );
}

#[test]
fn consumer_streams_a_large_batch_in_small_fetches() {
    let cluster = Cluster::start();
    let mut client = cluster.connect("postgres");
    install_pgq(&mut client, "postgres", &Roles::default()).unwrap();
    cluster.execute("select pgq.create_queue('q')");
    let consumer = Consumer::new("q", "reader");
    assert!(consumer.register(&mut client).unwrap());
    assert!(!consumer.register(&mut client).unwrap());
    insert_events(&cluster, "q", 1, 1000);
    cluster.execute("select pgq.force_tick('q'); select pgq.ticker('q')");
    assert_eq!(drain(&mut client, &consumer, 7), expected(1, 1000));
    // Nothing is left, and an unfinished batch comes back whole.
    insert_events(&cluster, "q", 1001, 1010);
    cluster.execute("select pgq.force_tick('q'); select pgq.ticker('q')");
    let first = consumer.next_batch(&mut client).unwrap().unwrap();
    let again = consumer.next_batch(&mut client).unwrap().unwrap();
    assert_eq!(first, again);
    assert_eq!(drain(&mut client, &consumer, 3), expected(1001, 1010));
    assert!(consumer.unregister(&mut client).unwrap());
    assert!(!consumer.unregister(&mut client).unwrap());
}

#[test]
fn consumer_fetches_wide_events_fewer_at_a_time_and_misses_none() {
    let cluster = Cluster::start();
    let mut client = cluster.connect("postgres");
    install_pgq(&mut client, "postgres", &Roles::default()).unwrap();
    cluster.execute("select pgq.create_queue('q')");
    let consumer = Consumer::new("q", "reader");
    consumer.register(&mut client).unwrap();
    // Every seventh event is 20 kB wide, the others a few bytes; a fetch of about 50 kB then
    // asks for anything from 2 to 100 rows, by the widest of the fetch before.
    let data = |i: i32| {
        if i % 7 == 0 {
            format!("{i}{}", "w".repeat(20_000))
        } else {
            i.to_string()
        }
    };
    cluster.execute(
        "select pgq.insert_event('q', 'test', \
                case when i % 7 = 0 then i || repeat('w', 20000) else i::text end) \
           from generate_series(1, 1000) i",
    );
    cluster.execute("select pgq.force_tick('q'); select pgq.ticker('q')");
    let want: Vec<String> = (1..=1000).map(data).collect();
    assert!(drain_by(&mut client, &consumer, [1, 100], 50_000) == want);
}

#[test]
fn ticker_command_ticks_and_stops_cleanly_on_sigint() {
    let cluster = Cluster::start();
    let dir = TempDir::new("ticker-cmd");
    let conf = ticker_config(&dir, &cluster, "");
    run_ok(&conf, "install");
    cluster.execute(
        "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_lag', '0')",
    );
    let before = last_tick(&cluster, "q");
    let mut ticker = skyrep()
        .arg(&conf)
        .arg("ticker")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    insert_events(&cluster, "q", 1, 10);
    wait_until(WAIT, "the ticker ticked", || {
        last_tick(&cluster, "q") > before
    });
    stop_child(&mut ticker, libc::SIGINT);
    let out = ticker.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("pgq version 3.5.1 ok")
            && log.contains("got SIGINT")
            && log.contains("ticker stopped"),
        "{log}"
    );
    assert!(log.contains("{ticks: "), "a statistics line: {log}");
}

#[test]
fn a_busy_queue_ticks_when_its_max_lag_runs_out_not_a_ticker_period_later() {
    let cluster = Cluster::start();
    let dir = TempDir::new("ticker-due");
    // Attempts a minute apart: only the queue's max_lag (2 s) can bring a tick sooner.
    let conf = dir.write(
        "ticker.ini",
        &format!(
            "[pgqadm]\njob_name = t\ndb = {}\nticker_period = 60\n",
            cluster.connstr("postgres")
        ),
    );
    run_ok(&conf, "install");
    // Beside it, an idle queue whose max lag has run out already: it must not hide q's.
    cluster.execute(
        "select pgq.create_queue('q'); \
         select pgq.set_queue_config('q', 'ticker_max_lag', '2 seconds'); \
         select pgq.create_queue('idle'); \
         select pgq.set_queue_config('idle', 'ticker_max_lag', '0')",
    );
    insert_events(&cluster, "q", 1, 10);
    let before = last_tick(&cluster, "q");
    let mut ticker = skyrep().arg(&conf).arg("ticker").spawn().unwrap();
    wait_until(WAIT, "the first attempt ticked", || {
        last_tick(&cluster, "q") > before
    });
    let first = last_tick(&cluster, "q");
    insert_events(&cluster, "q", 11, 20);
    wait_until(WAIT, "a tick when max_lag ran out", || {
        last_tick(&cluster, "q") > first
    });
    stop_child(&mut ticker, libc::SIGINT);
}

/// Sends `signal` to the child and waits (bounded) for it to exit.
fn stop_child(child: &mut Child, signal: i32) {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    wait_until(WAIT, "the process exited", || {
        child.try_wait().unwrap().is_some()
    });
}

#[test]
fn ticker_command_ticks_every_database_with_pgq_including_new_ones() {
    let cluster = Cluster::start();
    for db in ["alpha", "beta", "plain"] {
        cluster.create_database(db);
    }
    for db in ["alpha", "beta"] {
        let mut client = cluster.connect(db);
        install_pgq(&mut client, db, &Roles::default()).unwrap();
        client.batch_execute("select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_lag', '0')").unwrap();
    }
    let dir = TempDir::new("ticker-all");
    let conf = dir.write(
        "pgqd.ini",
        &format!(
            "[pgqd]\nbase_connstr = host=127.0.0.1 port={} user=postgres\nticker_period = 0.1\ncheck_period = 0.3\n",
            cluster.port()
        ),
    );
    let mut ticker = skyrep()
        .arg(&conf)
        .arg("ticker")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ticks = |db: &str| -> i64 {
        let rows = cluster.query_strings(db, "select last_tick_id from pgq.get_queue_info('q')");
        rows[0][0].as_deref().unwrap().parse().unwrap()
    };
    for db in ["alpha", "beta"] {
        let before = ticks(db);
        let mut c = cluster.connect(db);
        c.batch_execute("select pgq.insert_event('q', 'x', 'y')")
            .unwrap();
        wait_until(WAIT, "each database was ticked", || ticks(db) > before);
    }
    // A database that gets pgq later is picked up.
    cluster.create_database("gamma");
    let mut gamma = cluster.connect("gamma");
    install_pgq(&mut gamma, "gamma", &Roles::default()).unwrap();
    gamma
        .batch_execute(
            "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_lag', '0')",
        )
        .unwrap();
    let before = ticks("gamma");
    gamma
        .batch_execute("select pgq.insert_event('q', 'x', 'y')")
        .unwrap();
    wait_until(WAIT, "the new database was ticked", || {
        ticks("gamma") > before
    });
    stop_child(&mut ticker, libc::SIGTERM);
    let out = ticker.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("plain: no pgq 3 here"), "{log}");
}

#[test]
fn pgqd_ticks_a_skyrep_queue_that_skyrep_consumes() {
    let cluster = Cluster::start();
    if !real_pgq_available(&cluster) {
        return;
    }
    let mut client = cluster.connect("postgres");
    install_pgq(&mut client, "postgres", &Roles::default()).unwrap();
    cluster.execute(
        "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_lag', '0')",
    );
    let consumer = Consumer::new("q", "reader");
    consumer.register(&mut client).unwrap();
    let dir = TempDir::new("pgqd");
    let conf = dir.write(
        "pgqd.ini",
        &format!(
            "[pgqd]\nlogfile = {}\nbase_connstr = host=127.0.0.1 port={} user=postgres\n\
             database_list = postgres\nticker_period = 0.1\nsyslog = 0\n",
            dir.path().join("pgqd.log").display(),
            cluster.port()
        ),
    );
    let mut pgqd = Command::new("pgqd")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    insert_events(&cluster, "q", 1, 300);
    let mut seen = Vec::new();
    wait_until(WAIT, "pgqd ticked all events into batches", || {
        seen.extend(drain(&mut client, &consumer, 50));
        seen.len() >= 300
    });
    stop_child(&mut pgqd, libc::SIGTERM);
    assert_eq!(seen, expected(1, 300));
}

#[test]
fn skyrep_ticks_and_consumes_real_pgq() {
    let cluster = Cluster::start();
    if !real_pgq_available(&cluster) {
        return;
    }
    cluster.execute("create extension pgq");
    let mut client = cluster.connect("postgres");
    assert!(matches!(
        pgq_state(&mut client).unwrap(),
        PgqState::Foreign {
            extension: true,
            ..
        }
    ));
    // Installing keeps the extension and its C functions.
    let state = install_pgq(&mut client, "postgres", &Roles::default()).unwrap();
    assert!(
        matches!(
            state,
            PgqState::Foreign {
                extension: true,
                ..
            }
        ),
        "{state:?}"
    );
    assert_eq!(
        cluster.query_strings("postgres", "select l.lanname from pg_proc p join pg_language l on l.oid = p.prolang where p.oid = 'pgq.insert_event_raw'::regproc"),
        [[Some("c".to_string())]]
    );
    cluster.execute(
        "select pgq.create_queue('q'); select pgq.set_queue_config('q', 'ticker_max_lag', '0')",
    );
    let consumer = Consumer::new("q", "reader");
    consumer.register(&mut client).unwrap();
    let settings = Settings {
        ticker_period: Duration::from_millis(100),
        maint_period: Duration::from_secs(1),
        retry_period: Duration::from_secs(1),
        exception_sleep: Duration::from_secs(1),
        check_period: Duration::from_secs(1),
        connection_lifetime: Duration::from_secs(1200),
    };
    let conn = ConnStr::parse(&cluster.connstr("postgres"))
        .unwrap()
        .resolve_from_env("skyrep/test")
        .unwrap();
    let (stop, stopped) = bounded::<()>(0);
    let ticker =
        std::thread::spawn(move || tick_database("postgres", &conn, &settings, &stopped, None));
    insert_events(&cluster, "q", 1, 300);
    let mut seen = Vec::new();
    wait_until(
        WAIT,
        "skyrep's ticker thread ticked all events into batches",
        || {
            seen.extend(drain(&mut client, &consumer, 64));
            seen.len() >= 300
        },
    );
    drop(stop);
    ticker.join().expect("the ticker thread stops when told");
    assert_eq!(seen, expected(1, 300));
}

#[test]
fn provider_install_creates_the_queue_once_with_low_lag() {
    let cluster = Cluster::start();
    let dir = TempDir::new("provider-install");
    let conf = dir.write(
        "shop.ini",
        &format!(
            "[skyrep]\nprovider_db = {}\npgq_queue_name = shop_q\n",
            cluster.connstr("postgres")
        ),
    );
    let log = run_ok(&conf, "provider install");
    assert!(log.contains("queue shop_q created"), "{log}");
    let lag = "select queue_ticker_max_lag::text from pgq.get_queue_info('shop_q')";
    assert_eq!(
        cluster.query_strings("postgres", lag),
        [[Some("00:00:00.5".to_string())]]
    );
    // A second install keeps the queue and what the user configured.
    cluster.execute("select pgq.set_queue_config('shop_q', 'ticker_max_lag', '2 seconds')");
    let log = run_ok(&conf, "provider install");
    assert!(
        log.contains("queue shop_q exists; its settings are kept"),
        "{log}"
    );
    assert_eq!(
        cluster.query_strings("postgres", lag),
        [[Some("00:00:02".to_string())]]
    );
    // Without a queue name it is a config error.
    let bare = dir.write(
        "bare.ini",
        &format!("[skyrep]\nprovider_db = {}\n", cluster.connstr("postgres")),
    );
    let out = skyrep()
        .arg(&bare)
        .args(["provider", "install"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing key `pgq_queue_name`"));
}
