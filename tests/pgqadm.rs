//! pgqadm's commands on a ticker config, as Londiste 2 users ran `pgqadm.py ticker.ini
//! COMMAND`: status (text and JSON), create, drop, register, unregister and config, their
//! errors, odd names, and the usage errors on configs they do not fit.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::one_error_line;
use crate::cluster::Cluster;
use crate::util::{TempDir, skyrep};

/// A Londiste 2 ticker.ini for database `postgres` of `cluster`.
fn ticker_ini(dir: &TempDir, cluster: &Cluster) -> PathBuf {
    dir.write(
        "ticker.ini",
        &format!(
            "[pgqadm]\njob_name = myticker\ndb = {}\nmaint_delay = 1\nloop_delay = 0.1\n",
            cluster.connstr("postgres")
        ),
    )
}

/// Runs skyrep with `conf` and `args`; returns (exit code, stdout, stderr).
fn run(conf: &Path, args: &[&str]) -> (i32, String, String) {
    let out = skyrep().arg(conf).args(args).output().expect("skyrep runs");
    (
        out.status.code().expect("skyrep exits normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; returns (stdout, stderr).
fn ok(conf: &Path, args: &[&str]) -> (String, String) {
    let (code, out, err) = run(conf, args);
    assert_eq!(code, 0, "skyrep {args:?}: {out}{err}");
    (out, err)
}

/// Runs a command that must fail with `code`; returns its one error line.
fn fails(conf: &Path, args: &[&str], code: i32) -> String {
    let (got, out, err) = run(conf, args);
    assert_eq!(got, code, "skyrep {args:?}: {out}{err}");
    one_error_line(&err).to_string()
}

fn status_json(conf: &Path) -> Value {
    let (out, _) = ok(conf, &["status", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The queue called `name` in `status --json`.
fn queue<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .unwrap_or_else(|| panic!("no queue {name} in {status}"))
}

/// The consumer called `name` of `queue` in `status --json`.
fn consumer<'a>(queue: &'a Value, name: &str) -> &'a Value {
    queue["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no consumer {name} in {queue}"))
}

/// The text line of `out` that starts (after indentation) with `start`.
fn line<'a>(out: &'a str, start: &str) -> &'a str {
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in:\n{out}"))
}

/// Ticks `queue`, which must be due (`ticker_max_count` events wait).
fn tick(cluster: &Cluster, queue: &str) {
    assert!(
        cluster
            .value("postgres", &format!("select pgq.ticker('{queue}')"))
            .is_some(),
        "no tick was due"
    );
}

/// Reads and finishes every batch `consumer` can get now.
fn consume(cluster: &Cluster, queue: &str, consumer: &str) {
    let mut client = cluster.connect("postgres");
    loop {
        let batch: Option<i64> = client
            .query_one("select pgq.next_batch($1, $2)", &[&queue, &consumer])
            .unwrap()
            .get(0);
        let Some(batch) = batch else { return };
        client
            .execute("select pgq.finish_batch($1)", &[&batch])
            .unwrap();
    }
}

/// `queue_ticker_max_lag` and `queue_ticker_max_count` of `queue`, as text.
fn max_lag_and_count(cluster: &Cluster, queue: &str) -> Vec<Option<String>> {
    cluster.query_strings(
        "postgres",
        &format!(
            "select extract(epoch from queue_ticker_max_lag)::float8::text, \
                    queue_ticker_max_count::text \
             from pgq.queue where queue_name = '{queue}'"
        ),
    )[0]
    .clone()
}

fn some(values: &[&str]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

#[test]
fn a_ticker_config_administers_queues_and_consumers() {
    let cluster = Cluster::start();
    let dir = TempDir::new("pgqadm");
    let conf = ticker_ini(&dir, &cluster);

    assert_eq!(
        fails(&conf, &["status"], 1),
        "skyrep: postgres: pgq is not installed: run `install` first"
    );
    ok(&conf, &["install"]);
    let (out, _) = ok(&conf, &["status"]);
    assert!(out.starts_with("Database: host="), "{out}");
    assert!(
        out.contains("No queues (`create QUEUE` makes one)"),
        "{out}"
    );
    assert_eq!(status_json(&conf)["queues"], serde_json::json!([]));

    let (_, err) = ok(&conf, &["create", "orders"]);
    assert!(err.contains("queue `orders` created"), "{err}");
    let (_, err) = ok(&conf, &["create", "orders"]);
    assert!(err.contains("queue `orders` exists already"), "{err}");
    ok(&conf, &["create", "audit"]);
    // A tick whose event count is exact: the first one, made by create, is one off (PgQ's
    // as well as ours: it reads the event sequence before its first use).
    cluster.execute("select pgq.force_tick('orders'); select pgq.ticker('orders')");
    for consumer in ["fast", "slow"] {
        let (_, err) = ok(&conf, &["register", "orders", consumer]);
        assert!(
            err.contains(&format!(
                "consumer `{consumer}` registered on queue `orders`"
            )),
            "{err}"
        );
    }
    let (_, err) = ok(&conf, &["register", "orders", "fast"]);
    assert!(
        err.contains("was registered on queue `orders` already"),
        "{err}"
    );
    // Five events make a tick due.
    ok(&conf, &["config", "orders", "ticker_max_count=5"]);

    // Events not yet ticked are pending too.
    cluster.execute("select pgq.insert_event('orders', 'o', i::text) from generate_series(1, 5) i");
    let status = status_json(&conf);
    let orders = queue(&status, "orders");
    assert_eq!(orders["new_events"], 5, "{orders}");
    assert_eq!(orders["pending_events"], 5, "{orders}");
    assert_eq!(consumer(orders, "fast")["pending_events"], 5, "{orders}");
    let first_tick = orders["last_tick"].as_i64().unwrap();

    tick(&cluster, "orders");
    consume(&cluster, "orders", "fast");
    let status = status_json(&conf);
    let orders = queue(&status, "orders");
    assert_eq!(orders["new_events"], 0, "{orders}");
    assert!(
        orders["last_tick"].as_i64().unwrap() > first_tick,
        "{orders}"
    );
    assert!(orders["ticker_lag"].as_f64().unwrap() >= 0.0, "{orders}");
    assert_eq!(
        orders["pending_events"], 5,
        "the slowest consumer: {orders}"
    );
    let (fast, slow) = (consumer(orders, "fast"), consumer(orders, "slow"));
    assert_eq!(fast["pending_events"], 0, "{orders}");
    assert_eq!(slow["pending_events"], 5, "{orders}");
    assert_eq!(fast["last_tick"], orders["last_tick"], "{orders}");
    assert_eq!(slow["last_tick"], first_tick, "{orders}");
    assert!(slow["lag"].as_f64().unwrap() >= 0.0, "{orders}");
    assert!(fast["last_seen"].as_f64().unwrap() >= 0.0, "{orders}");
    assert_eq!(queue(&status, "audit")["consumers"], serde_json::json!([]));

    // Monitoring: the exit code says whether any consumer is further behind than allowed.
    ok(&conf, &["status", "--max-lag", "3600"]);
    let err = fails(&conf, &["status", "--max-lag", "0"], 1);
    assert!(
        err.starts_with("skyrep: lag over --max-lag 0.0s: ") && err.contains("slow on orders ("),
        "{err}"
    );
    // A consumer with nothing pending is not behind, however old the last tick (an idle
    // queue ticks once a minute).
    assert!(!err.contains("fast on orders"), "{err}");
    cluster.execute("update pgq.tick set tick_time = tick_time - interval '1 hour'");
    let err = fails(&conf, &["status", "--max-lag", "60"], 1);
    assert!(
        err.contains("slow on orders (1h0m") && !err.contains("fast"),
        "{err}"
    );
    let (out, _) = ok(&conf, &["status"]);
    let orders_line = line(&out, "Queue orders: ");
    assert!(
        orders_line.contains("Pending: 5 events (0 not yet ticked)"),
        "{out}"
    );
    assert!(
        line(&out, "Consumer fast: Lag: ").ends_with("Pending: 0 events"),
        "{out}"
    );
    assert!(
        line(&out, "Consumer slow: Lag: ")
            .contains(&format!("Tick: {first_tick}, Pending: 5 events")),
        "{out}"
    );
    assert!(
        out.contains("Queue audit: ")
            && out.contains("No consumers (`register QUEUE CONSUMER` adds one)"),
        "{out}"
    );

    // config: show, set (with and without the queue_ prefix), refuse bad input.
    let (out, _) = ok(&conf, &["config"]);
    assert!(out.starts_with("Queue audit\n"), "{out}");
    assert!(out.contains("\nQueue orders\n  ticker_max_count = 5\n  ticker_max_lag = 3\n  ticker_idle_period = 60\n  rotation_period = 7200\n  ticker_paused = off\n  external_ticker = off\n"), "{out}");
    let (out, _) = ok(&conf, &["config", "orders"]);
    assert!(
        out.starts_with("Queue orders\n") && !out.contains("audit"),
        "{out}"
    );
    let (out, _) = ok(
        &conf,
        &[
            "config",
            "orders",
            "ticker_max_lag=0.5",
            "queue_ticker_max_count=10",
            "ticker_paused=on",
        ],
    );
    assert!(
        out.contains("  ticker_max_count = 10\n  ticker_max_lag = 0.5\n")
            && out.contains("  ticker_paused = on\n"),
        "{out}"
    );
    assert_eq!(max_lag_and_count(&cluster, "orders"), some(&["0.5", "10"]));
    assert!(
        line(&ok(&conf, &["status"]).0, "Queue orders: ").ends_with(", ticker paused"),
        "paused shows"
    );
    ok(&conf, &["config", "orders", "ticker_paused=off"]);

    assert_eq!(
        fails(&conf, &["config", "orders", "ticker_max_lag=1", "lag=2"], 2),
        "skyrep: unknown queue setting `lag` (known: ticker_max_count, ticker_max_lag, \
         ticker_idle_period, rotation_period, ticker_paused, external_ticker)"
    );
    assert_eq!(
        fails(
            &conf,
            &[
                "config",
                "orders",
                "ticker_max_lag=1",
                "ticker_max_count=many"
            ],
            2
        ),
        "skyrep: postgres: queue `orders`: bad value `many` for ticker_max_count: expected a whole number of at least 1"
    );
    for bad in [
        "ticker_max_count=0",
        "ticker_idle_period=-1",
        "ticker_paused=maybe",
        "rotation_period=",
    ] {
        let err = fails(&conf, &["config", "orders", "ticker_max_lag=1", bad], 2);
        assert!(err.contains("bad value"), "{bad}: {err}");
    }
    assert_eq!(
        max_lag_and_count(&cluster, "orders"),
        some(&["0.5", "10"]),
        "nothing changed"
    );

    // Missing queues and consumers are errors that name what is there.
    let missing = "skyrep: postgres: no queue `nope` (queues: `audit`, `orders`)";
    assert_eq!(fails(&conf, &["register", "nope", "fast"], 1), missing);
    assert_eq!(fails(&conf, &["unregister", "nope", "fast"], 1), missing);
    assert_eq!(fails(&conf, &["drop", "nope"], 1), missing);
    assert_eq!(fails(&conf, &["config", "nope"], 1), missing);
    assert_eq!(
        fails(&conf, &["config", "nope", "ticker_max_lag=1"], 1),
        missing
    );

    // drop refuses while consumers are registered.
    assert_eq!(
        fails(&conf, &["drop", "orders"], 1),
        "skyrep: postgres: queue `orders` still has consumers `fast`, `slow`: unregister them \
         first (`unregister QUEUE CONSUMER`), or drop with --force"
    );
    let (_, err) = ok(&conf, &["unregister", "orders", "slow"]);
    assert!(
        err.contains("consumer `slow` unregistered from queue `orders`"),
        "{err}"
    );
    assert_eq!(
        fails(&conf, &["unregister", "orders", "slow"], 1),
        "skyrep: postgres: consumer `slow` is not registered on queue `orders` (its consumers: `fast`)"
    );
    ok(&conf, &["unregister", "orders", "fast"]);
    assert_eq!(
        fails(&conf, &["unregister", "orders", "fast"], 1),
        "skyrep: postgres: consumer `fast` is not registered on queue `orders` (it has no consumers)"
    );
    let (_, err) = ok(&conf, &["drop", "orders"]);
    assert!(err.contains("queue `orders` dropped"), "{err}");
    ok(&conf, &["drop", "audit"]);
    assert_eq!(
        fails(&conf, &["drop", "audit"], 1),
        "skyrep: postgres: no queue `audit`: there are no queues (`create QUEUE` makes one)"
    );
    assert_eq!(
        cluster.value("postgres", "select count(*) from pgq.queue"),
        Some("0".into())
    );
}

#[test]
fn odd_names_are_data_and_drop_force_unregisters() {
    let cluster = Cluster::start();
    let dir = TempDir::new("pgqadm-odd");
    let conf = ticker_ini(&dir, &cluster);
    ok(&conf, &["install"]);
    let queue_name = "Ünï \"q\" 'x'); drop table pgq.queue; --";
    let consumers = ["a b\\c", "Ça'\"", "-lead"];
    ok(&conf, &["create", queue_name]);
    for c in &consumers[..2] {
        ok(&conf, &["register", queue_name, c]);
    }
    // A name that looks like an option comes after `--`.
    ok(&conf, &["register", queue_name, "--", consumers[2]]);
    ok(&conf, &["config", queue_name, "ticker_max_lag=2 seconds"]);
    assert_eq!(
        cluster.value(
            "postgres",
            "select queue_name || ' ' || extract(epoch from queue_ticker_max_lag)::int from pgq.queue"
        ),
        Some(format!("{queue_name} 2"))
    );

    let status = status_json(&conf);
    let q = queue(&status, queue_name);
    let mut names: Vec<&str> = q["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    let mut expected = consumers.to_vec();
    expected.sort();
    assert_eq!(names, expected);
    let (out, _) = ok(&conf, &["config", queue_name]);
    assert!(out.starts_with(&format!("Queue {queue_name}\n")), "{out}");

    ok(&conf, &["unregister", queue_name, "Ça'\""]);
    let (_, err) = ok(&conf, &["drop", "--force", queue_name]);
    assert!(
        err.contains("dropped with its consumers `-lead`, `a b\\c`"),
        "{err}"
    );
    assert_eq!(
        cluster.value(
            "postgres",
            "select count(*)::text || ' ' || (select count(*) from pgq.consumer)::text from pgq.queue"
        ),
        Some("0 0".into())
    );
}

#[test]
fn the_commands_refuse_configs_they_do_not_fit() {
    let dir = TempDir::new("pgqadm-usage");
    let replication = dir.write(
        "conf.ini",
        "[londiste]\nprovider_db = dbname=a host=127.0.0.1 port=1\n\
         subscriber_db = dbname=b host=127.0.0.1 port=1\npgq_queue_name = q\n",
    );
    let err = fails(&replication, &["create", "q"], 2);
    assert!(
        err.contains("`create` is a pgqadm command for a ticker config")
            && err.contains("whose `db` is the provider database"),
        "{err}"
    );
    let err = fails(&replication, &["register", "q", "c"], 2);
    assert!(err.contains("`subscriber register`"), "{err}");
    // status stays the replication job's: it reports the provider unreachable.
    let (code, out, err) = run(&replication, &["status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot connect to provider_db"), "{err}");

    let pgqd = dir.write("pgqd.ini", "[pgqd]\nbase_connstr = host=127.0.0.1 port=1\n");
    for args in [&["status"][..], &["config"], &["drop", "q"]] {
        let err = fails(&pgqd, args, 2);
        assert!(err.ends_with("acts on one database: set `db` (base_connstr only names the server whose databases the ticker ticks)"), "{err}");
    }

    let unreachable = dir.write(
        "ticker.ini",
        "[pgqadm]\ndb = dbname=x host=127.0.0.1 port=1 password=hunter2 connect_timeout=5\n",
    );
    let err = fails(&unreachable, &["status", "--json"], 1);
    assert!(
        err.contains("cannot connect to db") && !err.contains("hunter2"),
        "{err}"
    );
}

#[test]
fn a_role_without_pgq_roles_may_look_and_is_told_what_it_needs() {
    let cluster = Cluster::start();
    let dir = TempDir::new("pgqadm-role");
    let conf = ticker_ini(&dir, &cluster);
    ok(&conf, &["install"]);
    ok(&conf, &["create", "q"]);
    cluster.execute("create role watcher login");
    let watcher = dir.write(
        "watcher.ini",
        &format!(
            "[pgqadm]\ndb = {} user=watcher\n",
            cluster.connstr("postgres")
        ),
    );

    let status = status_json(&watcher);
    assert_eq!(queue(&status, "q")["consumers"], serde_json::json!([]));
    assert!(
        status["pgq"].as_str().unwrap().starts_with("pgq 3"),
        "{status}"
    );
    ok(&watcher, &["config", "q"]);
    for (args, role) in [
        (&["create", "mine"][..], "pgq_admin"),
        (&["register", "q", "c"], "pgq_reader"),
        (&["config", "q", "ticker_max_lag=1"], "pgq_admin"),
        (&["drop", "q"], "pgq_admin"),
    ] {
        let err = fails(&watcher, args, 1);
        assert!(
            err.contains(&format!("this role needs {role}: ")) && err.contains("permission denied"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        max_lag_and_count(&cluster, "q"),
        some(&["3", "500"]),
        "nothing changed"
    );

    cluster.execute("grant pgq_admin to watcher");
    ok(&watcher, &["create", "mine"]);
    ok(&watcher, &["register", "mine", "c"]);
    ok(&watcher, &["drop", "--force", "mine"]);
}

#[test]
fn the_commands_work_where_real_pgq_is_installed() {
    let cluster = Cluster::start();
    if !crate::ticker::real_pgq_available(&cluster) {
        return;
    }
    cluster.execute("create extension pgq");
    let dir = TempDir::new("pgqadm-real");
    let conf = ticker_ini(&dir, &cluster);
    ok(&conf, &["create", "q"]);
    ok(&conf, &["register", "q", "c"]);
    let (out, _) = ok(
        &conf,
        &[
            "config",
            "q",
            "queue_ticker_max_lag=0.5",
            "ticker_max_count=5",
        ],
    );
    assert!(
        out.contains("  ticker_max_count = 5\n  ticker_max_lag = 0.5\n"),
        "{out}"
    );
    cluster.execute("select pgq.insert_event('q', 'x', i::text) from generate_series(1, 5) i");
    let status = status_json(&conf);
    assert!(
        status["pgq"].as_str().unwrap().starts_with("PgQ 3"),
        "{status}"
    );
    let q = queue(&status, "q");
    assert!(q["new_events"].as_i64().unwrap() >= 4, "{q}");
    assert_eq!(consumer(q, "c")["pending_events"], q["new_events"], "{q}");
    assert!(
        fails(&conf, &["drop", "q"], 1).contains("still has consumers `c`"),
        "refused"
    );
    ok(&conf, &["drop", "--force", "q"]);
    assert_eq!(status_json(&conf)["queues"], serde_json::json!([]));
}
