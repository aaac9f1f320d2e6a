//! Schema changes through the queue (`provider execute`), TRUNCATE, sequences, `provider
//! remove` and `refresh-trigger`, with one provider feeding two subscribers that progress on
//! their own.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::replay::{Pair, SEED_TABLES, pgbench, stop};
use crate::util::{skyrep, wait_until};

const WAIT: Duration = Duration::from_secs(120);

/// A second subscriber: database `sub2` on the pair's subscriber server, its own job and
/// consumer on the same queue.
struct Second {
    conf: PathBuf,
    log: PathBuf,
}

impl Second {
    /// Creates database `sub2` with `schema` and a config for it; installs the subscriber.
    fn new(pair: &Pair, schema: &str) -> Second {
        pair.subscriber.create_database("sub2");
        pair.subscriber
            .connect("sub2")
            .batch_execute(schema)
            .unwrap();
        let conf = pair.dir.write(
            "sub2.ini",
            &format!(
                "[skyrep]\njob_name = sub2\nprovider_db = {}\nsubscriber_db = {}\n\
                 pgq_queue_name = login\nexception_sleep = 1\nmaint_period = 1\n",
                pair.provider.connstr("postgres"),
                pair.subscriber.connstr("sub2")
            ),
        );
        let second = Second {
            log: pair.dir.path().join("sub2.log"),
            conf,
        };
        second.ok(&["subscriber", "install"]);
        second
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = skyrep().arg(&self.conf).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "sub2 {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start_replay(&self) -> Child {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        skyrep()
            .arg(&self.conf)
            .arg("replay")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Row count and digest of `table` in `db` of `cluster`, rows ordered by `key`.
fn digest(cluster: &Cluster, db: &str, table: &str, key: &str) -> String {
    let sql = format!(
        "select count(*) || ':' || coalesce(md5(string_agg(whole_row::text, '|' order by {key})), '') from {table} whole_row"
    );
    cluster.value(db, &sql).unwrap()
}

/// Waits until each `(provider table, subscriber table, key)` is equal in `db`.
fn wait_equal_in(pair: &Pair, db: &str, tables: &[(&str, &str, &str)], log: &dyn Fn() -> String) {
    let equal = || {
        tables.iter().all(|(p, s, k)| {
            digest(&pair.provider, "postgres", p, k) == digest(&pair.subscriber, db, s, k)
        })
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !equal() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if !equal() {
        let detail: Vec<String> = tables
            .iter()
            .map(|(p, s, k)| {
                format!(
                    "{p}: {} / {s}: {}",
                    digest(&pair.provider, "postgres", p, k),
                    digest(&pair.subscriber, db, s, k)
                )
            })
            .collect();
        panic!(
            "{db} did not become equal: {detail:?}\n--- log ---\n{}",
            log()
        );
    }
}

fn registered(cluster: &Cluster, db: &str) -> Vec<String> {
    cluster
        .query_strings(
            db,
            "select table_name from londiste.subscriber_tables order by 1",
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

fn write_script(pair: &Pair, name: &str, sql: &str) -> String {
    pair.dir.write(name, sql).to_str().unwrap().to_string()
}

#[test]
fn execute_truncate_and_remove_reach_two_subscribers_under_load() {
    let pair = Pair::new(include_str!("fixtures/seed.sql"));
    // The second subscriber keeps user_session under another schema and name.
    let second = Second::new(
        &pair,
        &format!(
            "{}\ncreate schema other; alter table user_session set schema other; \
             alter table other.user_session rename to session2;",
            include_str!("fixtures/seed.sql")
        ),
    );
    pair.provider.execute(
        "insert into user_info (userid, engname) select g, 'user' || g from generate_series(1, 2000) g; \
         insert into user_session (userid) select g from generate_series(1, 2000) g;",
    );
    // Event tables are due to rotate every second.
    pair.provider
        .execute("select pgq.set_queue_config('login', 'rotation_period', '1 second')");
    let conf = std::fs::read_to_string(&pair.conf).unwrap() + "maint_period = 1\n";
    std::fs::write(&pair.conf, conf).unwrap();
    let rotations = || {
        pair.provider.value(
            "postgres",
            "select queue_switch_time::text from pgq.queue where queue_name = 'login'",
        )
    };
    pair.ok(&["provider", "add", "--all"]);
    pair.ok(&["subscriber", "add", "--all"]);
    let seq = "user_login_rec_id_seq";
    pair.ok(&["provider", "add-seq", seq]);
    pair.ok(&["subscriber", "add-seq", seq]);
    second.ok(&["add-seq", seq]);
    second.ok(&[
        "subscriber",
        "add",
        "user_info",
        "user_login_rec",
        "user_logout_rec",
    ]);
    second.ok(&[
        "subscriber",
        "add",
        "user_session",
        "--dest-table=other.session2",
    ]);
    let mut first_replay = pair.start_replay();
    let mut second_replay = second.start_replay();
    let second_tables = [
        ("user_info", "user_info", "userid"),
        ("user_session", "other.session2", "userid"),
        ("user_login_rec", "user_login_rec", "id"),
    ];
    pair.wait_equal(&SEED_TABLES);
    wait_equal_in(&pair, "sub2", &second_tables, &|| second.log());

    // The second subscriber is down for a while: the first never waits for it.
    assert_eq!(
        stop(&mut second_replay, libc::SIGINT),
        Some(0),
        "{}",
        second.log()
    );
    let rotated_at = rotations();
    let mut load = pgbench(&pair.provider, 300);
    let script = write_script(
        &pair,
        "add_column.sql",
        "begin;\nalter table public.user_info add column c1 int;\n\
         alter table public.user_session add column c1 int default 7;\nend;\n",
    );
    pair.ok(&["provider", "execute", &script]);
    // Later changes of the new column replicate; so does a TRUNCATE (a transaction of its
    // own: one that holds rows pgbench waits for would deadlock with pgbench's inserts).
    pair.provider.execute(
        "update user_info set c1 = userid % 5 where userid <= 500; \
         update user_session set c1 = 1 where userid between 100 and 200;",
    );
    pair.provider.execute("truncate user_login_rec");
    assert!(load.wait().unwrap().success(), "pgbench failed");
    pair.ok(&["provider", "remove", "user_logout_rec"]);
    let mut load = pgbench(&pair.provider, 100);
    assert!(load.wait().unwrap().success(), "pgbench failed");
    wait_until(
        WAIT,
        "the first subscriber unregisters user_logout_rec",
        || {
            !registered(&pair.subscriber, "postgres")
                .contains(&"public.user_logout_rec".to_string())
        },
    );
    pair.wait_equal(&SEED_TABLES[..3]);
    let c1 = pair
        .subscriber
        .value("postgres", "select count(c1) from user_info");
    assert_eq!(c1.as_deref(), Some("500"), "{}", pair.replay_log());

    // The second subscriber catches up: the script runs on its own table names.
    let mut second_replay = second.start_replay();
    wait_until(
        WAIT,
        "the second subscriber unregisters user_logout_rec",
        || !registered(&pair.subscriber, "sub2").contains(&"public.user_logout_rec".to_string()),
    );
    wait_equal_in(&pair, "sub2", &second_tables, &|| second.log());
    // Rotation waits for the slowest consumer (no event it needs is dropped); once the second
    // has passed, it goes on.
    wait_until(WAIT, "the event tables rotate", || {
        rotations() != rotated_at
    });
    let log = second.log();
    assert!(
        log.contains("add_column.sql: public.user_session is other.session2 here"),
        "{log}"
    );
    let defaults = pair
        .subscriber
        .value("sub2", "select count(*) from other.session2 where c1 = 7");
    assert!(defaults.as_deref() != Some("0"), "{defaults:?}");
    // Both subscribers' sequence is where the provider's is.
    let last = format!("select last_value from {seq}");
    let provider_seq = pair.provider.query_strings("postgres", &last);
    for db in ["postgres", "sub2"] {
        assert_eq!(
            pair.subscriber.query_strings(db, &last),
            provider_seq,
            "{db}: {}\n{}",
            pair.replay_log(),
            second.log()
        );
    }
    // The removed table is the subscriber's own again: its rows stay and it takes writes.
    pair.subscriber
        .connect("sub2")
        .batch_execute("insert into user_logout_rec (userid, id) values (1, -1)")
        .unwrap();
    for db in ["postgres", "sub2"] {
        let done = pair.subscriber.query_strings(
            db,
            "select file_name, status from londiste.executed_scripts",
        );
        assert_eq!(
            done,
            vec![vec![Some("add_column.sql".into()), Some("done".into())]],
            "{db}"
        );
    }
    assert_eq!(
        stop(&mut first_replay, libc::SIGINT),
        Some(0),
        "{}",
        pair.replay_log()
    );
    assert_eq!(
        stop(&mut second_replay, libc::SIGINT),
        Some(0),
        "{}",
        second.log()
    );
}

#[test]
fn a_failing_script_stops_only_that_subscriber_until_fixed_or_skipped() {
    let schema = "create table ledger (id int primary key, note text);";
    let pair = Pair::new(schema);
    // The second subscriber has a column the script adds already.
    let second = Second::new(
        &pair,
        &format!("{schema} alter table ledger add column c1 int;"),
    );
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger"]);
    second.ok(&["subscriber", "add", "ledger", "--force"]);
    let mut first_replay = pair.start_replay();
    let mut second_replay = second.start_replay();
    pair.provider
        .execute("insert into ledger select g, 'n' || g from generate_series(1, 100) g");
    pair.wait_equal(&[("ledger", "id")]);
    wait_until(WAIT, "the second subscriber has copied ledger", || {
        pair.subscriber.query_strings(
            "sub2",
            "select merge_state, (select count(*) from ledger) from londiste.subscriber_tables",
        ) == vec![vec![Some("ok".to_string()), Some("100".to_string())]]
    });
    let script = write_script(&pair, "c1.sql", "alter table ledger add column c1 int;");
    pair.ok(&["provider", "execute", &script]);
    pair.provider
        .execute("insert into ledger select g, 'n' || g, g from generate_series(101, 200) g");
    pair.wait_equal(&[("ledger", "id")]);
    // The second stops at the script, says why and how to go on; nothing after it is applied.
    wait_until(
        WAIT,
        "the second subscriber reports the failed script",
        || second.log().contains("c1.sql failed on the subscriber"),
    );
    let status = second.ok(&["status"]);
    assert!(
        status.contains("ERR: replay: c1.sql failed on the subscriber")
            && status.contains("subscriber skip-execute c1.sql")
            && status.contains("already exists"),
        "{status}"
    );
    let rows = pair.subscriber.value("sub2", "select count(*) from ledger");
    assert_eq!(rows.as_deref(), Some("100"));
    // Fixed by hand: the script runs and the rows after it follow, none lost.
    pair.subscriber
        .connect("sub2")
        .batch_execute("alter table ledger drop column c1")
        .unwrap();
    wait_equal_in(&pair, "sub2", &[("ledger", "ledger", "id")], &|| {
        second.log()
    });

    // A second script fails there too; this time the operator skips it.
    pair.subscriber
        .connect("sub2")
        .batch_execute("create table side (id int)")
        .unwrap();
    let script = write_script(&pair, "side.sql", "create table side (id int);");
    pair.ok(&["provider", "execute", &script]);
    pair.provider
        .execute("insert into ledger select g, 'n' || g, g from generate_series(201, 300) g");
    wait_until(WAIT, "the second subscriber fails on side.sql", || {
        second.log().contains("side.sql failed on the subscriber")
    });
    second.ok(&["subscriber", "skip-execute", "side.sql"]);
    wait_equal_in(&pair, "sub2", &[("ledger", "ledger", "id")], &|| {
        second.log()
    });
    let done = pair.subscriber.query_strings(
        "sub2",
        "select file_name, status from londiste.executed_scripts order by 1",
    );
    assert_eq!(
        done,
        vec![
            vec![Some("c1.sql".into()), Some("done".into())],
            vec![Some("side.sql".into()), Some("skipped".into())],
        ]
    );
    pair.wait_equal(&[("ledger", "id")]);
    assert_eq!(stop(&mut first_replay, libc::SIGINT), Some(0));
    assert_eq!(stop(&mut second_replay, libc::SIGINT), Some(0));
}

#[test]
fn execute_refuses_bad_scripts_and_changes_nothing() {
    let pair = Pair::new("create table ledger (id int primary key, note text);");
    pair.ok(&["provider", "add", "ledger"]);
    let events = || {
        pair.provider
            .value(
                "postgres",
                "select count(*) from pgq.event_template where ev_type = 'EXECUTE'",
            )
            .unwrap()
    };
    let columns = || {
        pair.provider
            .value(
                "postgres",
                "select string_agg(attname, ',' order by attnum) from pg_attribute \
                 where attrelid = 'ledger'::regclass and attnum > 0 and not attisdropped",
            )
            .unwrap()
    };
    for (name, sql, error) in [
        (
            "fails.sql",
            "alter table ledger add column c1 int;\nalter table nowhere add column c2 int;",
            "fails.sql failed on the provider; nothing was changed",
        ),
        (
            "rollback.sql",
            "alter table ledger add column c1 int;\nrollback;",
            "line 2: ROLLBACK is not allowed",
        ),
        (
            "drop.sql",
            "alter table ledger add column c1 int;\ndrop table ledger;",
            "drop.sql drops or renames public.ledger, which is replicated",
        ),
        (
            "open.sql",
            "alter table ledger add column c1 int default 'x;",
            "line 1: a string is not terminated",
        ),
        (
            "empty.sql",
            "-- nothing\n;\n",
            "empty.sql has no statements",
        ),
    ] {
        let path = write_script(&pair, name, sql);
        let (code, err) = pair.fails(&["provider", "execute", &path]);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(err.contains(error), "{name}: {err}");
        assert_eq!(columns(), "id,note", "{name}");
        assert_eq!(events(), "0", "{name}");
    }
    let (code, err) = pair.fails(&["provider", "execute"]);
    assert_eq!(code, Some(2), "{err}");
    // Every file is read and checked first: a bad one after a good one runs neither.
    let good = write_script(&pair, "good.sql", "alter table ledger add column g int;");
    let missing = pair.dir.path().join("missing.sql").display().to_string();
    let empty = write_script(&pair, "blank.sql", "-- nothing\n");
    for bad in [&missing, &empty] {
        let (code, err) = pair.fails(&["provider", "execute", &good, bad]);
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("no script was run"), "{err}");
        assert_eq!(columns(), "id,note", "{err}");
        assert_eq!(events(), "0", "{err}");
    }

    // The same script twice runs once; another script under that name is refused.
    let path = write_script(&pair, "c1.sql", "alter table ledger add column c1 int;");
    pair.ok(&["execute", &path]);
    pair.ok(&["provider", "execute", &path]);
    assert_eq!(columns(), "id,note,c1");
    assert_eq!(events(), "1");
    let path = write_script(&pair, "c1.sql", "alter table ledger add column c2 int;");
    let (code, err) = pair.fails(&["provider", "execute", &path]);
    assert_eq!(code, Some(1));
    assert!(err.contains("a different script named c1.sql"), "{err}");

    // The script's change of ledger regenerated its capture trigger: c1 is in the events.
    pair.provider
        .execute("insert into ledger values (1, 'one', 11)");
    let data = pair.provider.value(
        "postgres",
        "select ev_data from pgq.event_template where ev_type like 'I:%'",
    );
    assert_eq!(data.as_deref(), Some("id=1&note=one&c1=11"));

    // A column added outside execute is in the events at once (the trigger's generic path),
    // and still after refresh-trigger (the generated path again).
    pair.provider
        .execute("alter table ledger add column c3 int");
    pair.provider
        .execute("insert into ledger values (2, 'two', 22, 33)");
    pair.ok(&["provider", "refresh-trigger", "ledger"]);
    pair.provider
        .execute("insert into ledger values (3, 'three', 22, 33)");
    let data = pair.provider.query_strings(
        "postgres",
        "select ev_data from pgq.event_template where ev_type like 'I:%' order by ev_id",
    );
    assert_eq!(data[1][0].as_deref(), Some("id=2&note=two&c1=22&c3=33"));
    assert_eq!(data[2][0].as_deref(), Some("id=3&note=three&c1=22&c3=33"));
    let (code, err) = pair.fails(&["provider", "refresh-trigger", "nowhere"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("public.nowhere is not added on the provider"),
        "{err}"
    );
}

#[test]
fn a_script_killed_halfway_runs_once_after_the_restart() {
    let schema = "create table ledger (id int primary key, note text); create table runs (n int);";
    let pair = Pair::new(schema);
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id")]);
    let script = write_script(
        &pair,
        "slow.sql",
        "insert into runs values (1);\nselect pg_sleep(2);\nalter table ledger add column c1 int;\n\
         set application_name = 'by_script';",
    );
    pair.ok(&["provider", "execute", &script]);
    wait_until(WAIT, "the subscriber runs the script", || {
        !pair
            .subscriber
            .query_strings(
                "postgres",
                "select 1 from pg_stat_activity where query like '%pg_sleep(2)%' and pid <> pg_backend_pid()",
            )
            .is_empty()
    });
    assert_eq!(stop(&mut replay, libc::SIGKILL), None);
    pair.provider
        .execute("insert into ledger values (1, 'one', 1)");
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id")]);
    let runs = pair
        .subscriber
        .value("postgres", "select count(*) from runs");
    assert_eq!(runs.as_deref(), Some("1"));
    // What the script set does not stay in replay's session.
    let named = pair.subscriber.value(
        "postgres",
        "select count(*) from pg_stat_activity where application_name = 'by_script'",
    );
    assert_eq!(named.as_deref(), Some("0"));
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn truncate_with_a_copy_condition_deletes_only_the_matching_rows() {
    let pair = Pair::new("create table ledger (id int primary key, note text);");
    pair.provider
        .execute("insert into ledger select g, 'n' || g from generate_series(1, 50) g");
    // Rows of the subscriber's own, which the condition leaves out.
    pair.subscriber
        .execute("insert into ledger select -g, 'local' from generate_series(1, 5) g");
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&[
        "subscriber",
        "add",
        "ledger",
        "--skip-truncate",
        "--copy-condition=id > 0",
    ]);
    let mut replay = pair.start_replay();
    let count = |sql: &str| pair.subscriber.value("postgres", sql).unwrap();
    wait_until(WAIT, "ledger is copied", || {
        count("select count(*) from ledger") == "55"
    });
    pair.provider
        .execute("truncate ledger; insert into ledger values (7, 'seven')");
    wait_until(WAIT, "the truncate is applied", || {
        count("select string_agg(id::text, ',' order by id) from ledger") == "-5,-4,-3,-2,-1,7"
    });
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_table_removed_mid_copy_leaves_no_copy_consumer_behind() {
    let pair = Pair::new("create table ledger (id int primary key, v text);");
    pair.provider
        .execute("insert into ledger select g, 'v' || g from generate_series(1, 100) g");
    // The copy keeps failing on the subscriber, so the table stays in-copy.
    pair.subscriber
        .execute("alter table ledger add constraint no_v7 check (v <> 'v7')");
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger"]);
    let mut replay = pair.start_replay();
    let copy_consumers = || {
        pair.provider
            .query_strings(
                "postgres",
                "select consumer_name from pgq.get_consumer_info('login') \
                 where consumer_name like '%.copy.%'",
            )
            .len()
    };
    wait_until(WAIT, "the copy fails", || {
        pair.replay_log().contains("no_v7")
    });
    assert_eq!(copy_consumers(), 1);
    pair.ok(&["provider", "remove", "ledger"]);
    wait_until(
        WAIT,
        "ledger is unregistered and its copy consumer gone",
        || pair.states().is_empty() && copy_consumers() == 0,
    );
    assert!(
        pair.replay_log()
            .contains("unregistered copy consumer login_sub.copy.public.ledger"),
        "{}",
        pair.replay_log()
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
