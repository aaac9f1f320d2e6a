//! `status`: the queue, the consumers as a tree, this subscriber's tables and last errors, as
//! text and as JSON, also when one side is down.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::cli::one_error_line;
use crate::replay::{Pair, stop};
use crate::util::{skyrep, wait_until};

const WAIT: Duration = Duration::from_secs(120);

const SCHEMA: &str = "create table ledger (id bigint primary key, note text); \
                      create table big (id int primary key, pad text);";

/// Runs `status` (with `--json` when asked); returns (exit code, stdout, stderr).
fn status(pair: &Pair, json: bool) -> (i32, String, String) {
    status_with(pair, if json { &["--json"] } else { &[] })
}

/// Runs `status` with `options`; returns (exit code, stdout, stderr).
fn status_with(pair: &Pair, options: &[&str]) -> (i32, String, String) {
    let out = skyrep()
        .arg(&pair.conf)
        .arg("status")
        .args(options)
        .output()
        .expect("skyrep runs");
    (
        out.status.code().expect("skyrep exits normally"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `status` text of a run that could read everything.
fn status_ok(pair: &Pair) -> String {
    let (code, out, err) = status(pair, false);
    assert_eq!(code, 0, "{out}{err}");
    out
}

/// `status --json` parsed, with the exit code.
fn status_json(pair: &Pair) -> (i32, Value) {
    let (code, out, err) = status(pair, true);
    let value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, value)
}

/// The lines under the node whose title line starts with `+--NAME`.
fn node_lines<'a>(out: &'a str, name: &str) -> Vec<&'a str> {
    out.lines()
        .skip_while(|l| !l.trim_start().starts_with(&format!("+--{name}")))
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with("+--"))
        .map(str::trim)
        .map(|l| l.trim_start_matches('|').trim())
        .collect()
}

/// Asserts that `value` is a number of seconds that fits in how long the test has run.
fn sane_seconds(value: &Value, started: Instant, what: &str) {
    let seconds = value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"));
    assert!(
        seconds >= 0.0 && seconds <= started.elapsed().as_secs_f64(),
        "{what}: {seconds}"
    );
}

fn replicating(pair: &Pair) -> Child {
    pair.provider
        .execute("insert into big select g, 'x' || g from generate_series(1, 1000) g");
    pair.ok(&["provider", "add", "ledger", "big"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    pair.ok(&["subscriber", "add", "big"]);
    let replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id"), ("big", "id")]);
    wait_until(WAIT, "the copy consumer is unregistered", || {
        pair.provider
            .query_strings(
                "postgres",
                "select 1 from pgq.get_consumer_info('login') where consumer_name like '%.copy.%'",
            )
            .is_empty()
    });
    replay
}

/// `status` text of a run that could read everything while replay does not run: it fails
/// saying so.
fn status_without_replay(pair: &Pair) -> String {
    let (code, out, err) = status(pair, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        one_error_line(&err).contains("replay of job login_sub is not running"),
        "{err}"
    );
    out
}

#[test]
fn status_of_a_fresh_setup() {
    let pair = Pair::new(SCHEMA);
    let out = status_without_replay(&pair);
    assert!(out.starts_with("Queue: login   Ticker: tick "), "{out}");
    assert!(out.contains("\nLocal node: login_sub\n"), "{out}");
    assert!(out.contains("\nprovider: host=127.0.0.1 port="), "{out}");
    assert!(out.contains("  |      Tables: 0\n"), "{out}");
    let local = node_lines(&out, "login_sub (this subscriber): host=127.0.0.1");
    assert_eq!(
        local,
        [
            "Replay: not running (never seen here)",
            "Tables: 0/0/0 ok/copying/other",
            "Not registered on the queue (`replay` or `subscriber register` registers it)"
        ],
        "{out}"
    );

    pair.ok(&["provider", "add", "ledger", "big"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    pair.ok(&["subscriber", "add", "big"]);
    let out = status_without_replay(&pair);
    assert!(out.contains("  |      Tables: 2\n"), "{out}");
    let local = node_lines(&out, "login_sub (this subscriber)");
    assert_eq!(local.len(), 3, "{out}");
    assert_eq!(local[1], "Tables: 1/0/1 ok/copying/other", "{out}");
    assert!(
        local[2].starts_with("Lag: ") && local[2].ends_with(", Pending: 0 events"),
        "{out}"
    );

    let (code, json) = status_json(&pair);
    assert_eq!(code, 1, "{json}");
    assert_eq!(
        json["problems"],
        serde_json::json!([
            "replay of job login_sub is not running (never seen here): start it with `replay` \
             (or its service)"
        ])
    );
    assert_eq!(json["subscriber"]["replay"]["running"], false);
    assert_eq!(json["subscriber"]["replay"]["pid"], Value::Null);
    assert_eq!(json["queue"], "login");
    assert_eq!(json["node"], "login_sub");
    assert_eq!(json["complete"], true);
    assert_eq!(json["provider"]["tables"], 2);
    assert_eq!(json["provider"]["error"], Value::Null);
    assert!(json["provider"]["ticker"]["last_tick"].is_i64(), "{json}");
    assert_eq!(
        json["subscriber"]["tables"],
        serde_json::json!({"ok": 1, "copying": 0, "other": 1})
    );
    assert_eq!(json["subscriber"]["applied_tick"], Value::Null);
    let consumers = json["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 1, "{json}");
    assert_eq!(consumers[0]["name"], "login_sub");
    assert_eq!(consumers[0]["local"], true);
    assert_eq!(consumers[0]["registered"], true);
    assert_eq!(consumers[0]["pending_events"], 0);
    assert_eq!(consumers[0]["errors"], serde_json::json!([]));
}

#[test]
fn status_while_replaying_shows_every_consumer_with_its_lag() {
    let started = Instant::now();
    let pair = Pair::new(SCHEMA);
    let mut replay = replicating(&pair);
    pair.provider.execute(
        "insert into ledger values (1, 'one'); \
         select pgq.register_consumer('login', 'other_sub'); \
         select pgq.register_consumer('login', 'login_sub.copy.public.parked'); \
         select pgq.register_consumer('login', 'other_sub.copy.public.big');",
    );
    pair.wait_equal(&[("ledger", "id")]);
    let out = status_ok(&pair);
    let local = node_lines(&out, "login_sub (this subscriber)");
    assert!(
        local[0].starts_with(&format!("Replay: running, pid {} on ", replay.id())),
        "{out}"
    );
    assert_eq!(local[1], "Tables: 2/0/0 ok/copying/other", "{out}");
    assert!(local[2].starts_with("Lag: "), "{out}");
    assert!(
        local[3].starts_with("Copy public.parked: Lag: "),
        "the copy consumer is shown under its node: {out}"
    );
    assert_eq!(local.len(), 4, "no error is shown: {out}");
    let other = node_lines(&out, "other_sub");
    assert_eq!(other.len(), 2, "{out}");
    assert!(other[0].starts_with("Lag: "), "{out}");
    assert!(other[1].starts_with("Copy public.big: "), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("+--")).count(),
        2,
        "copy consumers are no nodes of their own: {out}"
    );

    let (code, json) = status_json(&pair);
    assert_eq!(code, 0, "{json}");
    let ticker = &json["provider"]["ticker"];
    sane_seconds(&ticker["lag"], started, "ticker lag");
    assert!(ticker["last_tick"].as_i64().unwrap() > 1, "{json}");
    assert!(ticker["new_events"].is_i64(), "{json}");
    assert!(
        ticker["events_per_sec"].is_f64() || ticker["events_per_sec"].is_null(),
        "{json}"
    );
    assert_eq!(ticker["paused"], false);
    let consumers = json["consumers"].as_array().unwrap();
    let names: Vec<&str> = consumers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["login_sub", "other_sub"], "{json}");
    let local = &consumers[0];
    for key in ["lag", "last_seen"] {
        sane_seconds(&local[key], started, key);
    }
    assert!(local["last_tick"].as_i64().unwrap() > 1, "{json}");
    assert!(local["pending_events"].is_i64(), "{json}");
    assert!(local.get("current_batch").is_some() && local.get("next_tick").is_some());
    assert_eq!(local["errors"], serde_json::json!([]));
    assert_eq!(local["copies"][0]["table"], "public.parked");
    assert_eq!(
        local["copies"][0]["consumer"],
        "login_sub.copy.public.parked"
    );
    assert!(local["copies"][0]["last_tick"].is_i64(), "{json}");
    assert_eq!(consumers[1]["local"], false);
    assert_eq!(consumers[1]["errors"], Value::Null, "unknown for others");
    assert_eq!(consumers[1]["copies"][0]["table"], "public.big");
    let subscriber = &json["subscriber"];
    assert_eq!(
        subscriber["tables"],
        serde_json::json!({"ok": 2, "copying": 0, "other": 0})
    );
    assert!(subscriber["applied_tick"].as_i64().unwrap() > 1, "{json}");
    sane_seconds(&subscriber["applied_age"], started, "applied_age");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_replay_error_shows_until_replay_recovers() {
    let pair = Pair::new(SCHEMA);
    // Two copy threads: one fails below while the other copies.
    let conf = std::fs::read_to_string(&pair.conf).unwrap() + "parallel_copies = 2\n";
    std::fs::write(&pair.conf, conf).unwrap();
    let mut replay = replicating(&pair);
    // Applying to the subscriber fails while its table lacks a column.
    pair.subscriber
        .execute("alter table ledger drop column note");
    pair.provider
        .execute("insert into ledger values (1, 'one')");
    let mut out = String::new();
    wait_until(WAIT, "status shows the replay error", || {
        out = status_ok(&pair);
        out.contains("ERR: replay: ")
    });
    let local = node_lines(&out, "login_sub (this subscriber)");
    let err = local.iter().find(|l| l.starts_with("ERR: ")).unwrap();
    assert!(
        err.contains("column `note`") && err.contains("in a row, last "),
        "{out}"
    );
    assert!(pair.replay_log().contains("column `note`"));
    let (code, json) = status_json(&pair);
    assert_eq!(
        code, 0,
        "recorded errors do not change the exit code: {json}"
    );
    let errors = json["consumers"][0]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{json}");
    assert_eq!(errors[0]["thread"], "replay");
    assert!(
        errors[0]["message"].as_str().unwrap().contains("note"),
        "{json}"
    );
    assert!(errors[0]["failures"].as_i64().unwrap() >= 1, "{json}");
    assert!(errors[0]["age"].as_f64().unwrap() >= 0.0, "{json}");
    assert!(
        errors[0]["at"].as_str().unwrap().contains('T'),
        "ISO 8601: {json}"
    );
    // The batch that failed is applied once the column is back, and the error goes away.
    wait_until(WAIT, "replay retries and fails again", || {
        status_json(&pair).1["consumers"][0]["errors"][0]["failures"]
            .as_i64()
            .unwrap_or(0)
            >= 2
    });
    pair.subscriber
        .execute("alter table ledger add column note text");
    pair.wait_equal(&[("ledger", "id")]);
    wait_until(WAIT, "the error is cleared", || {
        !status_ok(&pair).contains("ERR: ")
    });
    let (_, json) = status_json(&pair);
    assert_eq!(json["consumers"][0]["errors"], serde_json::json!([]));
    let left = pair
        .subscriber
        .query_strings("postgres", "select count(*) from londiste.replay_status");
    assert_eq!(left[0][0].as_deref(), Some("0"));

    // The copy thread's errors show the same way: a row the subscriber refuses stops the copy.
    let extra = "create table extra (id int primary key, v text)";
    pair.provider.execute(&format!(
        "{extra}; insert into extra select g, 'v' || g from generate_series(1, 100) g"
    ));
    pair.subscriber.execute(&format!(
        "{extra}; alter table extra add constraint no_v7 check (v <> 'v7')"
    ));
    pair.ok(&["provider", "add", "extra"]);
    pair.ok(&["subscriber", "add", "extra"]);
    wait_until(WAIT, "status shows the copy error", || {
        out = status_ok(&pair);
        out.contains("ERR: copy-")
    });
    assert!(out.contains("no_v7"), "{out}");
    assert!(out.contains("Tables: 2/1/0 ok/copying/other"), "{out}");
    // Each copy thread has its own record: another thread copying another table meanwhile
    // does not hide this one's error.
    let fine = "create table fine (id int primary key)";
    pair.provider.execute(&format!(
        "{fine}; insert into fine select generate_series(1, 10)"
    ));
    pair.subscriber.execute(fine);
    pair.ok(&["provider", "add", "fine"]);
    pair.ok(&["subscriber", "add", "fine"]);
    wait_until(WAIT, "fine is copied", || {
        pair.states()
            .contains(&("public.fine".to_string(), "ok".to_string()))
    });
    let (p, s) = pair.digests("fine", "id");
    assert_eq!(p, s);
    let out = status_ok(&pair);
    assert!(out.contains("ERR: copy-") && out.contains("no_v7"), "{out}");
    assert!(out.contains("Tables: 3/1/0 ok/copying/other"), "{out}");
    pair.subscriber
        .execute("alter table extra drop constraint no_v7");
    pair.wait_equal(&[("extra", "id")]);
    wait_until(WAIT, "the copy error is cleared", || {
        !status_ok(&pair).contains("ERR: ")
    });
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn status_shows_the_side_it_can_reach_and_exits_1() {
    let mut pair = Pair::new(SCHEMA);
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);

    pair.subscriber.stop();
    let (code, out, err) = status(&pair, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("Queue: login   Ticker: tick "), "{out}");
    assert!(out.contains("  |      Tables: 1\n"), "{out}");
    let local = node_lines(&out, "login_sub (this subscriber)");
    assert!(
        local[0].starts_with("UNREACHABLE: cannot connect to subscriber_db (host=127.0.0.1"),
        "{out}"
    );
    assert!(local[1].starts_with("Lag: "), "the provider's view: {out}");
    let line = one_error_line(&err);
    assert!(line.contains("cannot connect to subscriber_db"), "{err}");
    let (code, json) = status_json(&pair);
    assert_eq!(code, 1);
    assert_eq!(json["complete"], false);
    assert_eq!(json["subscriber"]["reachable"], false);
    assert!(
        json["subscriber"]["error"]
            .as_str()
            .unwrap()
            .contains("subscriber_db")
    );
    assert_eq!(json["subscriber"]["tables"], Value::Null);
    assert_eq!(json["provider"]["error"], Value::Null);
    assert_eq!(json["provider"]["tables"], 1);
    assert_eq!(json["consumers"][0]["registered"], true);
    assert_eq!(json["consumers"][0]["errors"], Value::Null);

    pair.subscriber.restart();
    pair.provider.stop();
    let (code, out, err) = status(&pair, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("Queue: login   Ticker: unknown\n"), "{out}");
    assert!(
        out.contains("  |      UNREACHABLE: cannot connect to provider_db (host=127.0.0.1"),
        "{out}"
    );
    assert_eq!(
        node_lines(&out, "login_sub (this subscriber)"),
        [
            "Replay: not running (never seen here)",
            "Tables: 1/0/0 ok/copying/other"
        ],
        "{out}"
    );
    assert!(one_error_line(&err).contains("provider_db"), "{err}");
    let (_, json) = status_json(&pair);
    assert_eq!(json["provider"]["reachable"], false);
    assert_eq!(json["provider"]["ticker"], Value::Null);
    assert_eq!(json["consumers"][0]["registered"], Value::Null);
    assert_eq!(json["consumers"][0]["lag"], Value::Null);
    assert_eq!(json["consumers"][0]["errors"], serde_json::json!([]));
}

#[test]
fn status_knows_whether_replay_runs_counts_unticked_events_and_checks_the_lag() {
    let pair = Pair::new(SCHEMA);
    let mut replay = replicating(&pair);
    let pid = replay.id();
    let out = status_ok(&pair);
    let local = node_lines(&out, "login_sub (this subscriber)");
    assert!(
        local[0].starts_with(&format!("Replay: running, pid {pid} on "))
            && local[0].contains(", last batch "),
        "{out}"
    );
    let (code, json) = status_json(&pair);
    assert_eq!(code, 0, "{json}");
    let running = &json["subscriber"]["replay"];
    assert_eq!(running["running"], true, "{json}");
    assert_eq!(running["pid"], pid, "{json}");
    assert_eq!(running["version"], env!("CARGO_PKG_VERSION"), "{json}");
    assert!(running["heartbeat_age"].as_f64().unwrap() >= 0.0, "{json}");
    assert!(running["last_batch_age"].is_f64(), "{json}");
    assert_eq!(json["problems"], serde_json::json!([]));
    let (code, out, err) = status_with(&pair, &["--max-lag", "3600"]);
    assert_eq!(code, 0, "{out}{err}");

    // Killed: the server lets its lock go with its connection, and status fails at once.
    stop(&mut replay, libc::SIGKILL);
    wait_until(WAIT, "status sees replay gone", || {
        status(&pair, false).0 == 1
    });
    let (_, out, err) = status(&pair, false);
    let local = node_lines(&out, "login_sub (this subscriber)");
    assert!(
        local[0].starts_with("Replay: not running (last seen ")
            && local[0].ends_with(&format!(" ago, pid {pid} on {})", hostname())),
        "{out}"
    );
    let line = one_error_line(&err);
    assert!(
        line.contains("replay of job login_sub is not running (last seen "),
        "{err}"
    );
    let (code, json) = status_json(&pair);
    assert_eq!(code, 1, "{json}");
    assert_eq!(json["subscriber"]["replay"]["running"], false, "{json}");
    assert_eq!(json["subscriber"]["replay"]["pid"], pid, "{json}");

    // The job's lock taken by a process that has written no heartbeat yet (a daemon starting):
    // the heartbeat left by the killed one is not taken for it.
    let mut starting = pair.subscriber.connect("postgres");
    starting
        .batch_execute(
            "select pg_advisory_lock(hashtext('skyrep replay'), \
                    hashtext(length('login') || ' login login_sub'))",
        )
        .unwrap();
    let backend: i32 = starting
        .query_one("select pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let out = status_ok(&pair);
    let local = node_lines(&out, "login_sub (this subscriber)");
    assert_eq!(
        local[0],
        format!(
            "Replay: starting (backend pid {backend} holds the job's lock; no heartbeat from it yet)"
        ),
        "{out}"
    );
    let json = status_json(&pair).1;
    assert_eq!(json["subscriber"]["replay"]["starting"], true, "{json}");
    drop(starting);

    // Events written since are pending, though no ticker runs to tick them.
    pair.provider
        .execute("insert into ledger values (2, 'two'), (3, 'three')");
    let (_, out, _) = status(&pair, false);
    let local = node_lines(&out, "login_sub (this subscriber)");
    assert!(
        local.iter().any(
            |l| l.starts_with("Lag: ") && l.ends_with(", Pending: 2 events (2 not yet ticked)")
        ),
        "{out}"
    );
    assert_eq!(status_json(&pair).1["consumers"][0]["pending_events"], 2);

    // No tick for long while events wait: the ticker is named, and the lag is over the limit.
    pair.provider
        .execute("update pgq.tick set tick_time = tick_time - interval '1 hour'");
    let (code, out, err) = status_with(&pair, &["--max-lag", "60"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines().any(|l| l.starts_with("WARN: no tick for 1h")
            && l.contains(" while 2 events wait: is a ticker running")),
        "{out}"
    );
    let line = one_error_line(&err);
    assert!(
        line.contains("is not running") && line.contains("is over --max-lag 1m0s"),
        "{err}"
    );
    let (code, out, _) = status_with(&pair, &["--json", "--max-lag", "60"]);
    assert_eq!(code, 1);
    let json: Value = serde_json::from_str(&out).unwrap();
    assert!(json["lag"].as_f64().unwrap() > 3600.0, "{json}");
    assert_eq!(json["max_lag"], 60.0, "{json}");
    assert_eq!(json["problems"].as_array().unwrap().len(), 2, "{json}");
    assert_eq!(json["provider"]["ticker"]["stalled"], true, "{json}");

    // A consumer that has not read for two hours is marked: the queue keeps every event for it.
    pair.provider.execute(
        "select pgq.register_consumer('login', 'gone_sub'); \
         update pgq.subscription set sub_active = now() - interval '2 hours' \
          where sub_consumer = (select co_id from pgq.consumer where co_name = 'gone_sub')",
    );
    let (_, out, _) = status(&pair, false);
    let gone = node_lines(&out, "gone_sub");
    assert!(
        gone.iter()
            .any(|l| l.starts_with("STALE: not read for 2h0m")),
        "{out}"
    );
    let json = status_json(&pair).1;
    assert_eq!(json["consumers"][0]["stale"], false, "{json}");
    assert_eq!(json["consumers"][1]["name"], "gone_sub", "{json}");
    assert_eq!(json["consumers"][1]["stale"], true, "{json}");

    // Started again: it catches up, and status passes (a stale consumer of another job does
    // not fail it).
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id")]);
    wait_until(WAIT, "status passes again", || {
        status_with(&pair, &["--max-lag", "60"]).0 == 0
    });
    let json = status_json(&pair).1;
    assert_eq!(json["subscriber"]["replay"]["pid"], replay.id(), "{json}");
    assert_eq!(json["provider"]["ticker"]["stalled"], false, "{json}");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

/// An idle queue ticks only once a minute, so the last tick ages while nothing waits: a
/// subscriber with nothing pending passes `--max-lag` however old that tick, and fails it as
/// soon as events wait.
#[test]
fn max_lag_counts_only_while_events_wait() {
    let pair = Pair::new(SCHEMA);
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    // No ticker: the test makes the ticks itself.
    let conf = std::fs::read_to_string(&pair.conf).unwrap();
    std::fs::write(&pair.conf, conf + "ticker = off\nloop_delay = 0.05\n").unwrap();
    pair.provider
        .execute("select pgq.set_queue_config('login', 'ticker_max_count', '1')");
    let mut replay = pair.start_replay();
    pair.provider
        .execute("insert into ledger values (1, 'one')");
    pair.provider.execute("select pgq.ticker('login')");
    pair.wait_equal(&[("ledger", "id")]);
    wait_until(WAIT, "replay has read the last tick", || {
        status_json(&pair).1["consumers"][0]["pending_events"] == 0
    });

    // The queue idle for an hour.
    pair.provider
        .execute("update pgq.tick set tick_time = tick_time - interval '1 hour'");
    let (code, out, err) = status_with(&pair, &["--max-lag", "60"]);
    assert_eq!(code, 0, "{out}{err}");
    let json = status_json(&pair).1;
    assert!(json["lag"].as_f64().unwrap() > 3600.0, "{json}");

    // An event waits (not yet ticked): now the subscriber is an hour behind.
    pair.provider
        .execute("insert into ledger values (2, 'two')");
    let (code, out, err) = status_with(&pair, &["--max-lag", "60"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        one_error_line(&err).starts_with("skyrep: lag 1h0m")
            && err.contains(" is over --max-lag 1m0s"),
        "{err}"
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

/// This machine's name, as the daemon records it.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Job `sub one` of queue `login` and job `one` of queue `login sub` are two jobs: replay of
/// one does not count as replay of the other, and both run at once.
#[test]
fn jobs_whose_names_run_together_have_locks_of_their_own() {
    let pair = Pair::new(SCHEMA);
    let conf = std::fs::read_to_string(&pair.conf).unwrap();
    std::fs::write(
        &pair.conf,
        conf.replace("job_name = login_sub", "job_name = sub one"),
    )
    .unwrap();
    let other = pair.dir.write(
        "other.ini",
        &conf
            .replace("job_name = login_sub", "job_name = one")
            .replace("pgq_queue_name = login", "pgq_queue_name = login sub"),
    );
    let run = |args: &[&str]| {
        let out = skyrep().arg(&other).args(args).output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for side in ["provider", "subscriber"] {
        let (code, _, err) = run(&[side, "install"]);
        assert_eq!(code, 0, "{err}");
    }
    let mut replay = pair.start_replay();
    wait_until(WAIT, "status sees replay of `sub one`", || {
        let (code, json) = status_json(&pair);
        code == 0 && json["subscriber"]["replay"]["pid"] == replay.id()
    });
    let (code, out, err) = run(&["status"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        one_error_line(&err).contains("replay of job one is not running"),
        "{err}"
    );
    let mut other_replay = skyrep()
        .arg(&other)
        .arg("replay")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(WAIT, "status sees replay of `one`", || {
        let (code, out, _) = run(&["status", "--json"]);
        code == 0
            && serde_json::from_str::<Value>(&out).unwrap()["subscriber"]["replay"]["pid"]
                == other_replay.id()
    });
    assert_eq!(stop(&mut other_replay, libc::SIGINT), Some(0));
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

/// A subscriber set up before the heartbeat table: replay runs and says what to run, status
/// sees it run without knowing the process, and `subscriber install` adds the table.
#[test]
fn replay_on_a_subscriber_without_the_heartbeat_table_says_to_upgrade() {
    let pair = Pair::new(SCHEMA);
    pair.subscriber
        .execute("drop table londiste.replay_daemons");
    let mut replay = pair.start_replay();
    pair.wait_for_log(
        "the subscriber has no londiste.replay_daemons, so `status` cannot see which process \
         runs replay: run `subscriber install` to upgrade it",
    );
    let out = status_ok(&pair);
    assert!(
        node_lines(&out, "login_sub (this subscriber)")[0]
            .starts_with("Replay: running, process unknown (run `subscriber install` to upgrade)"),
        "{out}"
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
    pair.ok(&["subscriber", "install"]);
    let replay_daemons = pair.subscriber.value(
        "postgres",
        "select to_regclass('londiste.replay_daemons')::text",
    );
    assert_eq!(replay_daemons.as_deref(), Some("londiste.replay_daemons"));
}
