//! Replication end to end: copy while writes go on, replay exactly once, and survive being
//! killed anywhere.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli::one_error_line;
use crate::cluster::{Cluster, bindir};
use crate::util::{TempDir, skyrep};

const WAIT: Duration = Duration::from_secs(120);

/// A provider, a subscriber, a config for replicating between them, and a scratch dir.
pub struct Pair {
    pub provider: Cluster,
    pub subscriber: Cluster,
    pub dir: TempDir,
    pub conf: PathBuf,
}

impl Pair {
    /// Two clusters with `schema` on both, installed and ready for `provider add`.
    pub fn new(schema: &str) -> Pair {
        Pair::on(Cluster::start(), Cluster::start(), schema)
    }

    /// [`Pair::new`] on clusters of the caller's choosing.
    pub fn on(provider: Cluster, subscriber: Cluster, schema: &str) -> Pair {
        provider.execute(schema);
        subscriber.execute(schema);
        let dir = TempDir::new("replay");
        let conf = dir.write(
            "login.ini",
            &format!(
                "[skyrep]\njob_name = login_sub\nprovider_db = {}\nsubscriber_db = {}\n\
                 pgq_queue_name = login\nexception_sleep = 1\n",
                provider.connstr("postgres"),
                subscriber.connstr("postgres")
            ),
        );
        let pair = Pair {
            provider,
            subscriber,
            dir,
            conf,
        };
        pair.ok(&["provider", "install"]);
        pair.ok(&["subscriber", "install"]);
        pair
    }

    /// Runs a skyrep command with the config; panics unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = skyrep()
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("skyrep runs");
        assert!(
            out.status.success(),
            "skyrep {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a skyrep command with the config that is expected to fail: its exit code and
    /// standard error.
    pub fn fails(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = skyrep()
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("skyrep runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts `skyrep CONFIG replay`, logging to `replay.log` in the scratch dir.
    pub fn start_replay(&self) -> Child {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("replay.log"))
            .unwrap();
        skyrep()
            .arg(&self.conf)
            .arg("replay")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("replay starts")
    }

    /// What replay has logged so far.
    pub fn replay_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("replay.log")).unwrap_or_default()
    }

    /// Waits until replay's log has `text`; panics with the log if it does not in time.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + WAIT;
        while !self.replay_log().contains(text) {
            assert!(
                Instant::now() < deadline,
                "replay did not log `{text}`:\n{}",
                self.replay_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Makes the config connect to the subscriber as `role`.
    pub fn subscriber_as(&self, role: &str) {
        let conf = std::fs::read_to_string(&self.conf).unwrap();
        let line = format!("subscriber_db = {}", self.subscriber.connstr("postgres"));
        assert!(conf.contains(&line), "no `{line}` in the config");
        std::fs::write(
            &self.conf,
            conf.replace(&line, &format!("{line} user={role}")),
        )
        .unwrap();
    }

    /// The merge state of each subscriber table.
    pub fn states(&self) -> Vec<(String, String)> {
        self.subscriber
            .query_strings(
                "postgres",
                "select table_name, coalesce(merge_state, 'new') from londiste.subscriber_tables order by 1",
            )
            .into_iter()
            .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
            .collect()
    }

    /// Row count and a digest of every row of `table` (ordered by `key`), on both sides.
    pub fn digests(&self, table: &str, key: &str) -> (String, String) {
        let sql = format!(
            "select count(*) || ':' || coalesce(md5(string_agg(whole_row::text, '|' order by {key})), '') from {table} whole_row"
        );
        let one = |c: &Cluster| c.query_strings("postgres", &sql)[0][0].clone().unwrap();
        (one(&self.provider), one(&self.subscriber))
    }

    /// Waits until every table is `ok` and equal on both sides; panics with the log if not.
    pub fn wait_equal(&self, tables: &[(&str, &str)]) {
        let deadline = Instant::now() + WAIT;
        loop {
            let all_ok = self.states().iter().all(|(_, s)| s == "ok");
            let equal = tables.iter().all(|(t, k)| {
                let (p, s) = self.digests(t, k);
                p == s
            });
            if all_ok && equal {
                return;
            }
            if Instant::now() > deadline {
                let detail: Vec<String> = tables
                    .iter()
                    .map(|(t, k)| format!("{t}: {:?}", self.digests(t, k)))
                    .collect();
                panic!(
                    "tables did not become equal: states {:?}, {}\n--- replay log ---\n{}",
                    self.states(),
                    detail.join(", "),
                    self.replay_log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Sends `signal` and waits for the process to end; returns its exit code (None if killed).
pub fn stop(child: &mut Child, signal: i32) -> Option<i32> {
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, signal) };
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < deadline,
            "replay did not stop on signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub const SEED_TABLES: [(&str, &str); 4] = [
    ("user_info", "userid"),
    ("user_session", "userid"),
    ("user_login_rec", "id"),
    ("user_logout_rec", "id"),
];

/// Runs the seed's login/logout pgbench workload against the provider.
pub fn pgbench(provider: &Cluster, transactions: u32) -> std::process::Child {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    Command::new(bindir().join("pgbench"))
        .args(["-n", "-c", "2", "-j", "2", "-t", &transactions.to_string()])
        .arg("-f")
        .arg(fixtures.join("login.sql"))
        .arg("-f")
        .arg(fixtures.join("logout.sql"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &provider.port().to_string(),
            "-U",
            "postgres",
            "postgres",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgbench starts")
}

#[test]
fn seed_workload_copies_two_tables_under_load_and_replays_two() {
    let pair = Pair::new(include_str!("fixtures/seed.sql"));
    pair.provider.execute(
        "insert into user_info select g, 'user' || g, '用户' || g, 'engineer', date '1980-01-01' + g % 10000, \
         'hello world', 'user' || g || '@example.com', 10000000 + g, now(), now() from generate_series(1, 20000) g; \
         insert into user_session (userid) select g from generate_series(1, 20000) g;",
    );
    pair.ok(&["provider", "add", "--all"]);
    pair.ok(&[
        "subscriber",
        "add",
        "user_login_rec",
        "user_logout_rec",
        "--expect-sync",
    ]);
    let mut replay = pair.start_replay();
    // Writes go on while the two big tables are copied.
    let load = pgbench(&pair.provider, 400);
    pair.ok(&["subscriber", "add", "user_info", "user_session"]);
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "pgbench: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut load = pgbench(&pair.provider, 200);
    assert!(load.wait().unwrap().success());
    pair.wait_equal(&SEED_TABLES);
    assert_eq!(
        stop(&mut replay, libc::SIGINT),
        Some(0),
        "{}",
        pair.replay_log()
    );
    let log = pair.replay_log();
    assert!(
        log.contains("{count: ") && log.contains("user_info: copied 20000 rows"),
        "{log}"
    );
    assert!(
        pair.ok(&["subscriber", "tables"])
            .lines()
            .skip(2)
            .all(|l| l.contains("  ok"))
    );
}

/// A provider writer that inserts rows with increasing keys into `ledger` until stopped; a
/// row applied twice would violate the key.
pub fn ledger_writer(provider: &Cluster, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<i64> {
    let mut client = provider.connect("postgres");
    std::thread::spawn(move || {
        let mut next: i64 = 1;
        let mut round = 0;
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            let rows = 1 + round % 7;
            let mut tx = client.transaction().unwrap();
            for _ in 0..rows {
                tx.execute(
                    "insert into ledger (id, note) values ($1, $2)",
                    &[&next, &format!("row {next}")],
                )
                .unwrap();
                next += 1;
            }
            if round % 5 == 0 {
                tx.execute(
                    "update ledger set note = note || '+' where id = $1",
                    &[&(next - 1)],
                )
                .unwrap();
            }
            if round % 11 == 0 {
                tx.rollback().unwrap();
                next -= rows;
            } else {
                tx.commit().unwrap();
            }
            std::thread::sleep(Duration::from_millis(3));
        }
        next - 1
    })
}

#[test]
fn replay_killed_at_random_moments_applies_every_change_exactly_once() {
    let pair = Pair::new(
        "create table ledger (id bigint primary key, note text); \
         create table big (id int primary key, pad text);",
    );
    pair.provider
        .execute("insert into big select g, repeat('x', 200) from generate_series(1, 30000) g");
    pair.ok(&["provider", "add", "ledger", "big"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    pair.ok(&["subscriber", "add", "big"]);
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = ledger_writer(&pair.provider, stop_writer.clone());
    let mut seen_states = std::collections::BTreeSet::new();
    // Kill replay with SIGKILL at varying moments, during the copy and during plain replay.
    for round in 0..10u64 {
        let mut replay = pair.start_replay();
        let until = Instant::now() + Duration::from_millis(150 + (round * 137) % 700);
        while Instant::now() < until {
            for (_, state) in pair.states() {
                seen_states.insert(state.split(':').next().unwrap().to_string());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        stop(&mut replay, libc::SIGKILL);
    }
    stop_writer.store(true, Ordering::Relaxed);
    let last = writer.join().unwrap();
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id"), ("big", "id")]);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
    let count = pair
        .subscriber
        .query_strings("postgres", "select count(*), max(id) from ledger");
    assert_eq!(count[0][0].as_deref(), Some(last.to_string().as_str()));
    assert!(
        !pair.replay_log().contains("duplicate key"),
        "{}",
        pair.replay_log()
    );
    eprintln!("merge states seen while killing: {seen_states:?}");
}

/// Waits until `table` is in a state starting with `prefix` and holds that state by locking
/// its registry row in an open transaction of `client` (its owner cannot move it on; end it
/// with `rollback`). Returns false if the table went past that state first.
fn catch_state(client: &mut postgres::Client, table: &str, prefix: &str) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        client.batch_execute("begin").unwrap();
        let row = client
            .query_opt(
                "select coalesce(merge_state, 'new') from londiste.subscriber_tables \
                 where table_name = $1 for update",
                &[&table],
            )
            .unwrap();
        let state: String = row.map(|r| r.get(0)).unwrap_or_default();
        if state.starts_with(prefix) {
            return true;
        }
        client.batch_execute("rollback").unwrap();
        if state == "ok" {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("{table} never reached {prefix}");
}

#[test]
fn replay_killed_in_each_merge_state_resumes_and_ends_equal() {
    // Tries per state, each with a table of its own; a busy machine can hide a short state.
    const TRIES: usize = 5;
    let mut schema = String::from("create table ledger (id bigint primary key, note text);");
    let targets = ["in-copy", "catching-up", "wanna-sync", "do-sync"];
    for i in 0..targets.len() * TRIES {
        schema.push_str(&format!(
            "create table big{i:02} (id int primary key, n int, pad text);"
        ));
    }
    let pair = Pair::new(&schema);
    for i in 0..targets.len() * TRIES {
        pair.provider.execute(&format!(
            "insert into big{i:02} select g, 0, repeat('x', 100) from generate_series(1, 20000) g"
        ));
    }
    pair.ok(&["provider", "add", "--all"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = ledger_writer(&pair.provider, stop_writer.clone());
    // Another writer keeps changing the big tables, so that catching up has work to do.
    let stop_updates = stop_writer.clone();
    let mut updater = pair.provider.connect("postgres");
    let tables = targets.len() * TRIES;
    let updates = std::thread::spawn(move || {
        let mut round: i32 = 0;
        while !stop_updates.load(Ordering::Relaxed) {
            round += 1;
            let table = format!("big{:02}", round as usize % tables);
            updater
                .execute(
                    &format!("update {table} set n = n + 1 where id % 97 = $1"),
                    &[&(round % 97)],
                )
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let mut locker = pair.subscriber.connect("postgres");
    let mut caught = Vec::new();
    let mut next_table = 0;
    for target in targets {
        // A few tries per state: a state can pass between two looks.
        for _ in 0..TRIES {
            let table = format!("big{next_table:02}");
            next_table += 1;
            pair.ok(&["subscriber", "add", &table]);
            let mut replay = pair.start_replay();
            let held = catch_state(&mut locker, &format!("public.{table}"), target);
            stop(&mut replay, libc::SIGKILL);
            if held {
                locker.batch_execute("rollback").unwrap();
                caught.push(target);
                break;
            }
        }
    }
    stop_writer.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    updates.join().unwrap();
    let mut replay = pair.start_replay();
    let mut all: Vec<(String, &str)> = (0..next_table)
        .map(|i| (format!("big{i:02}"), "id"))
        .collect();
    all.push(("ledger".to_string(), "id"));
    let all: Vec<(&str, &str)> = all.iter().map(|(t, k)| (t.as_str(), *k)).collect();
    pair.wait_equal(&all);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
    assert_eq!(caught, targets, "killed in these states");
}

/// Polls `sql` (one boolean) on `client` until it is true.
fn wait_until(client: &mut postgres::Client, sql: &str) {
    let deadline = Instant::now() + WAIT;
    while !client.query_one(sql, &[]).unwrap().get::<_, bool>(0) {
        assert!(Instant::now() < deadline, "never true: {sql}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when another session of the database waits for a lock.
const SOMEONE_WAITS: &str = "select exists (select 1 from pg_stat_activity \
     where wait_event_type = 'Lock' and pid <> pg_backend_pid())";

#[test]
fn replay_killed_mid_batch_and_between_apply_and_finish_applies_each_batch_once() {
    // On the provider every ledger insert also bumps a counter in `side`, so a batch holds
    // ledger events followed by side events.
    let pair = Pair::new(
        "create table ledger (id bigint primary key, note text); \
         create table side (id int primary key, n bigint); insert into side values (1, 0);",
    );
    pair.provider.execute(
        "create function bump() returns trigger language plpgsql as \
         $$ begin update side set n = n + 1 where id = 1; return null; end $$; \
         create trigger bump after insert on ledger for each row execute function bump();",
    );
    pair.ok(&["provider", "add", "ledger", "side"]);
    pair.ok(&["subscriber", "add", "ledger", "side", "--expect-sync"]);
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = ledger_writer(&pair.provider, stop_writer.clone());
    let mut sub_locker = pair.subscriber.connect("postgres");
    let mut prov_locker = pair.provider.connect("postgres");

    // Mid-batch: ledger rows of the batch are applied in the open transaction when the apply
    // of `side` waits for our lock; kill it there.
    let mut replay = pair.start_replay();
    wait_until(&mut sub_locker, "select count(*) > 20 from ledger");
    sub_locker
        .batch_execute("begin; lock table side in exclusive mode")
        .unwrap();
    wait_until(
        &mut prov_locker,
        "select count(*) > 0 from pgq.subscription where sub_batch is not null",
    );
    let mut watcher = pair.subscriber.connect("postgres");
    wait_until(&mut watcher, SOMEONE_WAITS);
    stop(&mut replay, libc::SIGKILL);
    sub_locker.batch_execute("rollback").unwrap();

    // Between apply and finish: the batch is committed on the subscriber, and finishing it
    // on the provider waits for our lock on the consumer's subscription row; kill it there.
    let mut replay = pair.start_replay();
    // (first it registers and finishes the batch left open, which our lock would block)
    let applied: i64 = watcher
        .query_one("select max(last_tick_id) from londiste.applied_ticks", &[])
        .unwrap()
        .get(0);
    wait_until(
        &mut watcher,
        &format!("select max(last_tick_id) > {applied} + 1 from londiste.applied_ticks"),
    );
    loop {
        prov_locker.batch_execute("begin").unwrap();
        let open: Option<i64> = prov_locker
            .query_one(
                "select s.sub_next_tick from pgq.subscription s \
                 join pgq.consumer c on c.co_id = s.sub_consumer \
                 where c.co_name = 'login_sub' for update of s",
                &[],
            )
            .unwrap()
            .get(0);
        if let Some(tick) = open {
            wait_until(
                &mut watcher,
                &format!(
                    "select coalesce(max(last_tick_id), 0) = {tick} from londiste.applied_ticks"
                ),
            );
            break;
        }
        prov_locker.batch_execute("rollback").unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut provider_watcher = pair.provider.connect("postgres");
    wait_until(&mut provider_watcher, SOMEONE_WAITS);
    stop(&mut replay, libc::SIGKILL);
    prov_locker.batch_execute("rollback").unwrap();

    stop_writer.store(true, Ordering::Relaxed);
    let last = writer.join().unwrap();
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id"), ("side", "id")]);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
    let log = pair.replay_log();
    assert!(log.contains("was applied before; finishing it"), "{log}");
    assert!(!log.contains("duplicate key"), "{log}");
    let counts = pair.subscriber.query_strings(
        "postgres",
        "select count(*), (select n from side) from ledger",
    );
    assert_eq!(counts[0][0].as_deref(), Some(last.to_string().as_str()));
    assert_eq!(counts[0][1].as_deref(), Some(last.to_string().as_str()));
}

/// A backlog of many small ticks is drained in batches of several ticks (`batch_events`),
/// each applied once: killed mid-way and started again, replay ends with every row once, and
/// its statistics show batches of more events than any one tick holds.
#[test]
fn a_backlog_drains_in_batches_of_several_ticks_exactly_once() {
    let pair = Pair::new("create table ledger (id bigint primary key, note text);");
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    let conf = std::fs::read_to_string(&pair.conf).unwrap();
    std::fs::write(
        &pair.conf,
        conf + "ticker = off\nloop_delay = 0.05\nbatch_events = 100\n",
    )
    .unwrap();
    // Registered, then stopped: what follows waits in the queue.
    let mut replay = pair.start_replay();
    pair.wait_for_log("replaying queue login");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
    let mut provider = pair.provider.connect("postgres");
    // A tick whenever an event waits (force_tick would make the queue's event counter leap).
    provider
        .batch_execute("select pgq.set_queue_config('login', 'ticker_max_count', '1')")
        .unwrap();
    // 60 ticks of 11 or 12 events each: inserts, an update and a delete among them.
    for t in 0..60 {
        provider
            .batch_execute(&format!(
                "begin; \
                 insert into ledger select g, 'v' || g from generate_series({0} * 10, {0} * 10 + 9) g; \
                 update ledger set note = note || '+' where id = {0} * 10; \
                 delete from ledger where id = {0} * 10 + 9 and {0} % 2 = 0; \
                 commit; \
                 select pgq.ticker('login')",
                t
            ))
            .unwrap();
    }
    // Killed while draining, then started again: each batch once all the same.
    let mut replay = pair.start_replay();
    pair.wait_for_log("{count: ");
    assert_eq!(stop(&mut replay, libc::SIGKILL), None);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id")]);
    // The killed daemon may have applied everything: stop this one only once it has started
    // (a SIGINT before it listens for signals ends it as SIGINT ends any program).
    let deadline = Instant::now() + WAIT;
    while pair.replay_log().matches("replaying queue login").count() < 3 {
        assert!(Instant::now() < deadline, "{}", pair.replay_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
    let counts: Vec<u64> = pair
        .replay_log()
        .lines()
        .filter_map(|l| l.split("{count: ").nth(1))
        .filter_map(|rest| rest.split(',').next()?.parse().ok())
        .collect();
    assert!(
        counts.iter().any(|&n| n >= 100),
        "no batch spanned several ticks: {counts:?}"
    );
    let rows = pair
        .subscriber
        .value("postgres", "select count(*) from ledger")
        .unwrap();
    assert_eq!(rows, "570");
}

#[test]
fn primary_key_updates_move_rows_on_the_subscriber() {
    let pair =
        Pair::new(r#"create table "Moves" (a int, "B k" text, v text, primary key (a, "B k"));"#);
    pair.provider.execute(
        r#"insert into "Moves" select g, 'k' || g, 'v' || g from generate_series(1, 200) g"#,
    );
    pair.ok(&["provider", "add", r#""Moves""#]);
    pair.ok(&["subscriber", "add", r#""Moves""#]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[(r#""Moves""#, "a")]);
    // Key changes in one statement, chained within a transaction, back to an old key, and
    // mixed with plain updates and deletes in one batch.
    pair.provider.execute(
        r#"update "Moves" set a = a + 1000 where a % 2 = 0;
           begin;
           update "Moves" set "B k" = "B k" || '!', v = 'moved' where a = 1;
           update "Moves" set a = 5000 where a = 1;
           update "Moves" set v = 'after move' where a = 5000;
           commit;
           update "Moves" set a = 3 - 2, "B k" = 'k1' where a = 5000;
           update "Moves" set a = -a where a between 3 and 50;
           delete from "Moves" where a = -3;
           insert into "Moves" values (3, 'k3', 'reborn');"#,
    );
    pair.wait_equal(&[(r#""Moves""#, "a")]);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
    let rows = pair.subscriber.query_strings(
        "postgres",
        r#"select count(*), count(*) filter (where a > 1000), max(v) filter (where a = 1) from "Moves""#,
    );
    assert_eq!(
        rows[0],
        vec![
            Some("200".into()),
            Some("100".into()),
            Some("after move".into())
        ]
    );
}

#[test]
fn quick_copies_of_tables_under_inserts_apply_nothing_twice() {
    // A copy faster than a tick interval ends before the queue has a tick past its snapshot:
    // the hand-over must still not let replay apply what the copy saw.
    const TABLES: usize = 6;
    let schema: String = (0..TABLES)
        .map(|i| format!("create table quick{i} (id bigint primary key, note text);"))
        .collect();
    let pair = Pair::new(&schema);
    pair.ok(&["provider", "add", "--all"]);
    let mut replay = pair.start_replay();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let mut client = pair.provider.connect("postgres");
    let stopping = stop_writer.clone();
    let writer = std::thread::spawn(move || {
        let mut next: i64 = 0;
        while !stopping.load(Ordering::Relaxed) {
            let table = next as usize % TABLES;
            client
                .execute(
                    &format!("insert into quick{table} values ($1, 'row')"),
                    &[&next],
                )
                .unwrap();
            next += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    for i in 0..TABLES {
        pair.ok(&["subscriber", "add", &format!("quick{i}")]);
        std::thread::sleep(Duration::from_millis(300));
    }
    let wait_ok = Instant::now() + WAIT;
    while !pair.states().iter().all(|(_, state)| state == "ok") {
        assert!(
            Instant::now() < wait_ok,
            "{:?}\n{}",
            pair.states(),
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop_writer.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let tables: Vec<String> = (0..TABLES).map(|i| format!("quick{i}")).collect();
    let tables: Vec<(&str, &str)> = tables.iter().map(|t| (t.as_str(), "id")).collect();
    pair.wait_equal(&tables);
    let log = pair.replay_log();
    assert!(!log.contains("ERROR"), "{log}");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn parallel_copies_copy_tables_side_by_side() {
    let pair = Pair::new(
        "create table a (id int primary key, v text); create table b (id int primary key, v text);
         create table c (id int primary key, v text);",
    );
    for table in ["a", "b", "c"] {
        pair.provider.execute(&format!(
            "insert into {table} select g, 'v' || g from generate_series(1, 20000) g"
        ));
    }
    pair.ok(&["provider", "add", "--all"]);
    // The COPYs of a and b wait for this lock, as long copies would run.
    let mut locker = pair.provider.connect("postgres");
    locker
        .batch_execute("begin; lock table a, b in access exclusive mode")
        .unwrap();
    let copying = |table: &str| {
        pair.replay_log()
            .matches(&format!("public.{table}: copying from the provider"))
            .count()
    };
    let state = |table: &str| -> String {
        let states = pair.states();
        let found = states.iter().find(|(t, _)| t == &format!("public.{table}"));
        found.map(|(_, s)| s.clone()).unwrap_or_default()
    };
    let wait = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + WAIT;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "never {what}:\n{}",
                pair.replay_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // One copy thread (the default): while a is copied, b and c wait their turn.
    let mut replay = pair.start_replay();
    pair.ok(&["subscriber", "add", "a", "b", "c"]);
    wait("a copying", &|| copying("a") == 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!((state("b"), state("c")), ("new".into(), "new".into()));

    // Three, by a reload (SIGHUP): a and b are copied at the same time, and c gets done
    // meanwhile.
    let conf = std::fs::read_to_string(&pair.conf).unwrap() + "parallel_copies = 3\n";
    std::fs::write(&pair.conf, conf).unwrap();
    // SAFETY: sending a signal to our child.
    unsafe { libc::kill(replay.id() as i32, libc::SIGHUP) };
    wait("a and b copying together, c done", &|| {
        copying("a") == 1 && copying("b") == 1 && state("c") == "ok"
    });
    assert!(
        pair.replay_log()
            .contains("in force now: loop_delay = 200ms, parallel_copies = 3"),
        "{}",
        pair.replay_log()
    );
    assert_eq!(
        (state("a"), state("b")),
        ("in-copy".into(), "in-copy".into())
    );
    locker.batch_execute("rollback").unwrap();
    pair.wait_equal(&[("a", "id"), ("b", "id"), ("c", "id")]);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn indexes_foreign_keys_and_triggers_step_aside_during_a_copy_and_survive_a_kill() {
    let pair = Pair::new(
        "create table parent (id int primary key, name text);
         create table child (id int primary key, parent_id int references parent, v text);",
    );
    // Subscriber-only extras: an index, and a trigger that counts the rows it sees.
    pair.subscriber.execute(
        "create index child_v on child (v);
         create table hits (n int);
         create function count_hit() returns trigger language plpgsql as
             $$ begin insert into hits values (new.id); return new; end $$;
         create trigger count_hit after insert on child for each row execute function count_hit();
         -- Replay runs as replica: only triggers enabled always (or replica) fire there.
         alter table child enable always trigger count_hit;",
    );
    pair.provider.execute(
        "insert into parent select g, 'p' || g from generate_series(1, 100) g;
         insert into child select g, 1 + g % 100, 'v' || g from generate_series(1, 5000) g;",
    );
    pair.ok(&["provider", "add", "--all"]);
    let extras = |pair: &Pair| -> Vec<String> {
        pair.subscriber
            .query_strings(
                "postgres",
                "select 'index ' || indexname from pg_indexes where tablename = 'child' \
                   and indexname = 'child_v' \
                 union all select 'fkey ' || conname from pg_constraint where contype = 'f' \
                 union all select 'trigger ' || tgname from pg_trigger \
                   where tgrelid = 'child'::regclass and tgname = 'count_hit' \
                 union all select 'pending ' || kind || ' ' || object_name \
                   from londiste.pending_objects \
                 order by 1",
            )
            .into_iter()
            .map(|row| row[0].clone().unwrap())
            .collect()
    };
    let before = extras(&pair);
    assert_eq!(
        before,
        [
            "fkey child_parent_id_fkey",
            "index child_v",
            "trigger count_hit"
        ]
    );
    // The child's COPY waits for this lock; meanwhile the parent is copied and in sync.
    let mut locker = pair.provider.connect("postgres");
    locker
        .batch_execute("begin; lock table child in access exclusive mode")
        .unwrap();
    let mut replay = pair.start_replay();
    pair.ok(&["subscriber", "add", "child", "parent"]);
    pair.wait_for_log("public.child: copying from the provider");
    assert_eq!(
        extras(&pair),
        [
            r#"pending fkey child_parent_id_fkey"#,
            r#"pending index "public"."child_v""#,
            r#"pending trigger count_hit"#,
        ],
        "set aside while the copy runs"
    );
    let fkey = r#""public"."child"  "child_parent_id_fkey"  alter table "public"."child" add constraint "child_parent_id_fkey" FOREIGN KEY (parent_id) REFERENCES"#;
    let fkeys = pair.ok(&["subscriber", "fkeys", "pending"]);
    assert!(fkeys.starts_with(fkey), "{fkeys}");
    assert_eq!(pair.ok(&["subscriber", "fkeys", "active"]), "");
    // Without an argument both lists, each under its title, as in Londiste 2.
    let both = pair.ok(&["subscriber", "fkeys"]);
    assert!(
        both.starts_with(&format!("pending fkeys:\n  {fkey}"))
            && both.ends_with("\nactive fkeys:\n  (none)\n"),
        "{both}"
    );
    assert!(
        pair.ok(&["subscriber", "triggers", "pending"])
            .contains("count_hit")
    );
    // Killed in the middle of the copy: the definitions are safe in the database.
    stop(&mut replay, libc::SIGKILL);
    // A trigger can be put back by hand, whatever the copy does.
    let out = skyrep()
        .arg(&pair.conf)
        .args(["subscriber", "restore-triggers", "child", "nosuch"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no trigger nosuch of public.child is set aside")
    );
    pair.ok(&["subscriber", "restore-triggers", "child", "count_hit"]);
    assert_eq!(pair.ok(&["subscriber", "triggers", "pending"]), "");
    assert!(
        pair.ok(&["subscriber", "triggers", "active"])
            .contains(r#""public"."child"  "count_hit"  CREATE TRIGGER count_hit"#)
    );
    let both = pair.ok(&["subscriber", "triggers"]);
    assert!(
        both.starts_with(
            "pending triggers:\n  (none)\nactive triggers:\n  \"public\".\"child\"  \"count_hit\"  CREATE TRIGGER count_hit"
        ),
        "{both}"
    );
    locker.batch_execute("rollback").unwrap();
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("parent", "id"), ("child", "id")]);
    let deadline = Instant::now() + WAIT;
    while extras(&pair) != before {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            extras(&pair),
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let hits = |pair: &Pair| {
        pair.subscriber
            .query_strings("postgres", "select count(*) from hits")[0][0]
            .clone()
    };
    assert_eq!(
        hits(&pair).as_deref(),
        Some("0"),
        "no trigger fired for copied rows"
    );
    pair.provider
        .execute("insert into child values (9001, 7, 'after')");
    pair.wait_equal(&[("child", "id")]);
    assert_eq!(hits(&pair).as_deref(), Some("1"), "the trigger is back");
    assert!(
        pair.ok(&["subscriber", "fkeys", "active"])
            .contains("child_parent_id_fkey")
    );
    assert_eq!(pair.ok(&["subscriber", "fkeys", "pending"]), "");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_foreign_key_to_a_table_being_copied_stays_aside_until_that_table_is_in_sync() {
    let pair = Pair::new(
        "create table parent (id int primary key, name text);
         insert into parent select g, 'p' || g from generate_series(1, 100) g;
         create table kid (id int primary key, parent_id int references parent);
         insert into kid select g, g from generate_series(1, 50) g;
         create table gate (id int primary key, n int); insert into gate values (1, 0);",
    );
    pair.ok(&["provider", "add", "--all"]);
    pair.ok(&["subscriber", "add", "--expect-sync", "kid", "gate"]);
    let mut replay = pair.start_replay();
    let fkey_here = || {
        pair.subscriber
            .value(
                "postgres",
                "select count(*) from pg_constraint where conname = 'kid_parent_id_fkey'",
            )
            .unwrap()
    };
    assert_eq!(fkey_here(), "1");
    // The parent's COPY waits for this lock; meanwhile replay is held at a change of gate, so
    // the copy, once done, waits for replay to reach its tick.
    let mut table_lock = pair.provider.connect("postgres");
    table_lock
        .batch_execute("begin; lock table parent in access exclusive mode")
        .unwrap();
    pair.ok(&["subscriber", "add", "parent"]);
    pair.wait_for_log("public.parent: copying from the provider");
    let mut row_lock = pair.subscriber.connect("postgres");
    row_lock
        .batch_execute("begin; select * from gate for update")
        .unwrap();
    pair.provider.execute("update gate set n = 1");
    let mut watcher = pair.subscriber.connect("postgres");
    wait_until(
        &mut watcher,
        "select exists (select 1 from pg_stat_activity \
         where wait_event_type = 'Lock' and query like '%\"gate\"%')",
    );
    table_lock.batch_execute("rollback").unwrap();
    pair.wait_for_log("public.parent: caught up");
    // The copy thread puts back what is ready right after catching up: the key from kid is
    // not, since parent waits to hand over.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pair.subscriber
            .value(
                "postgres",
                "select merge_state like 'wanna-sync:%' from londiste.subscriber_tables \
                 where table_name = 'public.parent'",
            )
            .as_deref(),
        Some("t")
    );
    assert_eq!(fkey_here(), "0", "{}", pair.replay_log());
    assert!(
        pair.ok(&["subscriber", "fkeys", "pending"])
            .contains("kid_parent_id_fkey")
    );
    row_lock.batch_execute("rollback").unwrap();
    pair.wait_equal(&[("parent", "id"), ("kid", "id"), ("gate", "id")]);
    wait_until(
        &mut watcher,
        "select count(*) = 1 from pg_constraint where conname = 'kid_parent_id_fkey'",
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn subscriber_add_options_dest_table_create_force_skip_truncate_resync_missing() {
    let pair = Pair::new(
        "create table orders (id int primary key, item text);
         create table extra (id int primary key, v text);
         create table kept (id int primary key, v text);
         create table later (id int primary key);",
    );
    pair.provider.execute(
        r#"create type mood as enum ('ok', 'sad');
           create table made (a int, "B c" text not null, m mood, primary key (a, "B c"));
           create table "no Key" (id int primary key);
           insert into orders select g, 'item ' || g from generate_series(1, 500) g;
           insert into extra select g, 'v' || g from generate_series(1, 100) g;
           insert into kept select g, 'v' || g from generate_series(1, 100) g;
           insert into made select g, 'b' || g, 'ok' from generate_series(1, 50) g;"#,
    );
    pair.subscriber.execute(
        r#"create type mood as enum ('ok', 'sad');
           create schema "Archive";
           create table "Archive"."Old Orders" (id int primary key, item text);
           alter table extra add column note text;
           create table "no Key" (id int);
           set skyrep.replay = on;
           insert into kept values (1000, 'only here');"#,
    );
    pair.ok(&["provider", "add", "--all"]);
    // Errors change nothing.
    let (code, err) = pair.fails(&["subscriber", "add", "extra"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("public.extra differs between provider and subscriber")
            && err.contains("--force"),
        "{err}"
    );
    let (code, err) = pair.fails(&["subscriber", "add", "orders", "kept", "--dest-table=x.y"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = pair.fails(&["subscriber", "add", "orders", "--dest-table=x.\"y"]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        one_error_line(&err),
        "skyrep: --dest-table: bad table name `x.\"y`: unterminated double quote"
    );
    let (code, err) = pair.fails(&["subscriber", "add", "orders", "--dest-table=nowhere.t"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nowhere.t does not exist"), "{err}");
    let (code, err) = pair.fails(&["subscriber", "add", "made"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "table public.made does not exist on the subscriber: create it, or add it with \
             --create to create it like the provider's public.made"
        ),
        "{err}"
    );
    // --create makes only missing tables: one that is there without a primary key is
    // named as such, and a table created for a list that fails further on is gone again.
    let (code, err) = pair.fails(&["subscriber", "add", r#""no Key""#, "--create"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("table public.no Key has no primary key"),
        "{err}"
    );
    let (code, err) = pair.fails(&["subscriber", "add", "made", "extra", "--create"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("public.extra differs"), "{err}");
    assert_eq!(
        pair.subscriber
            .query_strings("postgres", "select to_regclass('public.made')::text")[0][0],
        None
    );
    assert!(
        pair.states().is_empty(),
        "nothing was added: {:?}",
        pair.states()
    );

    pair.ok(&[
        "subscriber",
        "add",
        "orders",
        r#"--dest-table="Archive"."Old Orders""#,
    ]);
    pair.ok(&["subscriber", "add", "extra", "--force"]);
    pair.ok(&["subscriber", "add", "kept", "--skip-truncate"]);
    pair.ok(&["subscriber", "add", "made", "--create"]);
    assert_eq!(pair.ok(&["missing"]), "public.later\npublic.no Key\n");
    let mut replay = pair.start_replay();
    pair.provider
        .execute("update orders set item = 'changed' where id = 7");
    pair.wait_equal(&[("made", "a")]);
    let count = |sql: &str| {
        pair.subscriber.query_strings("postgres", sql)[0][0]
            .clone()
            .unwrap()
    };
    let wait = |sql: &str, want: &str| {
        let deadline = Instant::now() + WAIT;
        while count(sql) != want {
            assert!(
                Instant::now() < deadline,
                "{sql}: {}\n{}",
                count(sql),
                pair.replay_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(
        r#"select count(*) || ' ' || max(item) from "Archive"."Old Orders""#,
        "500 item 99",
    );
    wait(
        r#"select item from "Archive"."Old Orders" where id = 7"#,
        "changed",
    );
    wait("select count(*) from extra where note is null", "100");
    wait("select count(*) from kept", "101");
    // resync copies a table again: rows lost behind replay's back are back.
    pair.subscriber
        .execute("set skyrep.replay = on; delete from extra where id <= 40");
    wait("select count(*) from extra", "60");
    pair.ok(&["subscriber", "resync", "extra"]);
    // (extra's own column makes its rows differ from the provider's: count them instead.)
    wait(
        "select count(*) || ' ' || coalesce(min(merge_state), 'new') from extra, \
         londiste.subscriber_tables where table_name = 'public.extra'",
        "100 ok",
    );
    let out = pair.ok(&["compare", "made", "orders"]);
    assert!(!out.contains("DIFFERENT"), "{out}");
    // kept holds the row the copy left alone, and compare says so.
    assert_eq!(pair.fails(&["compare", "kept"]).0, Some(1));
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn copy_condition_filters_the_copy_the_stream_and_compare() {
    let pair = Pair::new("create table part (id int primary key, v text);");
    pair.provider
        .execute("insert into part select g, 'v' || g from generate_series(1, 100) g");
    pair.ok(&["provider", "add", "part"]);
    let (code, err) = pair.fails(&["subscriber", "add", "part", "--copy-condition=nosuch > 1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--copy-condition `nosuch > 1` does not work on public.part"),
        "{err}"
    );
    assert!(pair.states().is_empty());
    pair.ok(&[
        "subscriber",
        "add",
        "part",
        "--copy-condition=id % 2 = 0 and v <> 'hidden'",
    ]);
    let mut replay = pair.start_replay();
    let rows = |sql: &str| {
        pair.subscriber.query_strings("postgres", sql)[0][0]
            .clone()
            .unwrap()
    };
    let wait = |sql: &str, want: &str| {
        let deadline = Instant::now() + WAIT;
        while rows(sql) != want {
            assert!(
                Instant::now() < deadline,
                "{sql}: {}\n{}",
                rows(sql),
                pair.replay_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let summary = "select count(*) || ' ' || coalesce(string_agg(id::text || v, ',' order by id) \
                   filter (where id > 100 or v not like 'v%' or id in (2, 4)), '') from part";
    wait(summary, "50 2v2,4v4");
    // Inserts that match arrive, others do not; an update that stops matching deletes the
    // row here, one that starts matching again brings it back.
    pair.provider.execute(
        "insert into part values (101, 'odd'), (102, 'even');
         update part set v = 'hidden' where id = 2;
         update part set v = 'seen' where id = 4;",
    );
    wait(summary, "50 4seen,102even");
    pair.provider
        .execute("update part set v = 'back' where id = 2");
    wait(summary, "51 2back,4seen,102even");
    let out = pair.ok(&["compare", "part"]);
    assert!(
        out.contains("srcdb: 51 rows") && !out.contains("DIFFERENT"),
        "{out}"
    );
    pair.subscriber
        .execute("set skyrep.replay = on; delete from part where id = 102");
    let repair = skyrep()
        .current_dir(pair.dir.path())
        .arg(&pair.conf)
        .args(["repair", "part"])
        .output()
        .unwrap();
    assert_eq!(
        repair.status.code(),
        Some(1),
        "the row deleted here is missing"
    );
    let fix =
        std::fs::read_to_string(pair.dir.path().join("fix.login_sub.public.part.sql")).unwrap();
    assert!(fix.contains("102") && !fix.contains("101"), "{fix}");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

/// The copies of the log as (table, start, end) in milliseconds of the day, from each
/// table's "copying from the provider" and "in-copy -> catching-up" lines.
fn copy_spans(log: &str) -> Vec<(String, u64, u64)> {
    let millis = |line: &str| -> u64 {
        // 2026-11-23 09:13:41,442 ...
        let time = &line[11..23];
        let (hms, ms) = time.split_once(',').unwrap();
        let parts: Vec<u64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
        ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + ms.parse::<u64>().unwrap()
    };
    let mut spans = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split(" INFO ").nth(1)
            && let Some(table) = rest.strip_suffix(": in-copy -> catching-up")
        {
            let start = log
                .lines()
                .filter(|l| l.contains(&format!(" INFO {table}: copying from the provider")))
                .map(millis)
                .filter(|&s| s <= millis(line))
                .max()
                .unwrap();
            spans.push((table.to_string(), start, millis(line)));
        }
    }
    spans
}

#[test]
fn four_big_tables_copy_side_by_side_under_load_with_indexes_and_a_foreign_key() {
    let pair = Pair::new(include_str!("fixtures/seed.sql"));
    const ROWS: u32 = 150_000;
    pair.provider.execute(&format!(
        "insert into user_info select g, 'user' || g, '用户' || g, 'engineer', \
             date '1980-01-01' + g % 10000, 'hello', 'user' || g || '@example.com', g, now(), now() \
         from generate_series(1, {ROWS}) g;
         insert into user_session (userid) select g from generate_series(1, {ROWS}) g;
         insert into user_login_rec (userid, login_time) select g % 2000 + 1, now() \
         from generate_series(1, {ROWS}) g;
         insert into user_logout_rec (userid, logout_time) select g % 2000 + 1, now() \
         from generate_series(1, {ROWS}) g;"
    ));
    pair.subscriber.execute(
        "create index user_info_email on user_info (email);
         create index login_user on user_login_rec (userid);
         alter table user_session add constraint session_of_user
             foreign key (userid) references user_info (userid);",
    );
    pair.ok(&["provider", "add", "--all"]);
    let conf = std::fs::read_to_string(&pair.conf).unwrap() + "parallel_copies = 4\n";
    std::fs::write(&pair.conf, conf).unwrap();
    let mut replay = pair.start_replay();
    let load = pgbench(&pair.provider, 300);
    pair.ok(&["subscriber", "add", "--all"]);
    let out = load.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pair.wait_equal(&SEED_TABLES);
    let spans = copy_spans(&pair.replay_log());
    assert_eq!(spans.len(), 4, "{spans:?}");
    let overlapping = spans
        .iter()
        .flat_map(|a| spans.iter().map(move |b| (a, b)))
        .filter(|(a, b)| a.0 < b.0 && a.1 < b.2 && b.1 < a.2)
        .count();
    assert!(overlapping >= 1, "no two copies overlapped: {spans:?}");
    // Everything set aside is back.
    let back = || {
        pair.subscriber.query_strings(
            "postgres",
            "select (select count(*) from pg_indexes \
                     where indexname in ('user_info_email', 'login_user')) \
                 || ' ' || (select count(*) from pg_constraint where conname = 'session_of_user') \
                 || ' ' || (select count(*) from londiste.pending_objects)",
        )[0][0]
            .clone()
            .unwrap()
    };
    let deadline = Instant::now() + WAIT;
    while back() != "2 1 0" {
        assert!(
            Instant::now() < deadline,
            "{}\n{}",
            back(),
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_subscriber_role_that_does_not_own_the_tables_copies_with_their_indexes_in_place() {
    let pair = Pair::new(
        "create table acct (id int primary key, v text); create index acct_v on acct (v); \
         create table audit (n int); \
         create function audit_row() returns trigger language plpgsql as \
             $$ begin insert into audit values (new.id); return new; end $$; \
         create trigger acct_audit after insert on acct for each row \
             execute function audit_row(); \
         create table parent (id int primary key); \
         create table child (id int primary key, p int references parent); \
         insert into acct select g, 'v' || g from generate_series(1, 100) g;",
    );
    pair.ok(&["provider", "add", "acct", "parent", "child"]);
    // The subscriber's role has DML, TRUNCATE and TRIGGER on the tables, owned by another,
    // and its own londiste schema.
    pair.subscriber.execute(
        "truncate audit; drop schema londiste cascade; create role app login; \
         grant create on database postgres to app; \
         grant select, insert, update, delete, truncate, trigger \
             on all tables in schema public to app",
    );
    let conf = std::fs::read_to_string(&pair.conf).unwrap().replace(
        &format!("subscriber_db = {}", pair.subscriber.connstr("postgres")),
        &format!(
            "subscriber_db = {}",
            pair.subscriber
                .connstr("postgres")
                .replace("user=postgres", "user=app")
        ),
    );
    std::fs::write(&pair.conf, conf).unwrap();
    pair.ok(&["subscriber", "install"]);

    // A foreign key it could not set aside is refused up front, naming what is missing.
    let (code, err) = pair.fails(&["subscriber", "add", "child"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(
            "role app does not own \"public\".\"child\", so it cannot set aside its foreign \
             key \"child_p_fkey\" (from or to public.child)"
        ),
        "{err}"
    );
    assert!(pair.states().is_empty(), "{:?}", pair.states());

    // A table without one copies with its index and trigger in place.
    pair.ok(&["subscriber", "add", "acct"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("acct", "id")]);
    pair.provider
        .execute("insert into acct values (101, 'later')");
    pair.wait_equal(&[("acct", "id")]);
    assert_eq!(
        pair.subscriber
            .value(
                "postgres",
                "select count(*) from pg_indexes where indexname = 'acct_v'"
            )
            .as_deref(),
        Some("1")
    );
    assert!(
        pair.replay_log()
            .contains("indexes and triggers stay in place")
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
