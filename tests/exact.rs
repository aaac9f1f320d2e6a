//! Replay applies exactly what the provider did: foreign-key actions of the subscriber do not
//! act on replicated rows a second time, TRUNCATE of tables joined by foreign keys replays,
//! keys moved through each other under deferrable constraints net right (also where the rows'
//! values were written in sessions with other settings), and keys equal by their type are one
//! row whatever their text.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::replay::{Pair, stop};

/// How long replay may take to make the tables equal.
const WAIT: Duration = Duration::from_secs(60);

/// Every row of `table` as text, in a fixed order and with fixed settings.
fn rows(cluster: &Cluster, table: &str) -> Vec<String> {
    cluster
        .query_strings(
            "postgres",
            &format!(
                "set timezone = 'UTC'; set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres'; \
                 set extra_float_digits = 3; \
                 select t::text from {table} t order by t::text collate \"C\""
            ),
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// Waits until every table has the same rows on both sides; panics with the difference and
/// replay's log if they do not within [`WAIT`].
fn wait_same(pair: &Pair, tables: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let differing: Vec<&str> = tables
            .iter()
            .copied()
            .filter(|t| rows(&pair.provider, t) != rows(&pair.subscriber, t))
            .collect();
        if differing.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let detail: Vec<String> = differing
                .iter()
                .map(|t| {
                    format!(
                        "{t}:\n  provider:   {:?}\n  subscriber: {:?}",
                        rows(&pair.provider, t),
                        rows(&pair.subscriber, t)
                    )
                })
                .collect();
            panic!(
                "tables differ:\n{}\n--- replay log ---\n{}",
                detail.join("\n"),
                pair.replay_log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A pair with `schema` on both sides, `tables` added on both and replay running.
fn replicate(schema: &str, tables: &[&str]) -> (Pair, Child) {
    let pair = Pair::new(schema);
    for table in tables {
        pair.ok(&["provider", "add", table]);
    }
    for table in tables {
        pair.ok(&["subscriber", "add", table]);
    }
    let replay = pair.start_replay();
    let deadline = Instant::now() + WAIT;
    while !pair.states().iter().all(|(_, s)| s == "ok") {
        assert!(
            Instant::now() < deadline,
            "tables not ok: {:?}\n{}",
            pair.states(),
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (pair, replay)
}

const FK_SCHEMA: &str = "
    create table parent (id int primary key, v text);
    create table child (id int primary key,
                        parent_id int references parent on delete cascade on update cascade,
                        v text);
    create table orphanable (id int primary key,
                             parent_id int references parent on delete set null on update set null);
    create table tree (id int primary key,
                       up int references tree on delete cascade deferrable initially deferred);
    insert into parent select g, 'p' || g from generate_series(1, 10) g;
    insert into child select g, g, 'c' || g from generate_series(1, 10) g;
    insert into orphanable select g, g from generate_series(1, 10) g;
    insert into tree values (1, null), (2, 1), (3, 2), (4, 1);
";

#[test]
fn exact_foreign_key_actions_of_the_subscriber_do_not_act_on_replicated_rows() {
    let tables = ["parent", "child", "orphanable", "tree"];
    let (pair, mut replay) = replicate(FK_SCHEMA, &tables);
    pair.provider.execute(
        "begin;
         update child set parent_id = 2 where id = 1;
         update orphanable set parent_id = 2 where id = 1;
         delete from parent where id = 1;
         commit;
         begin;
         update tree set up = 4 where id = 2;
         delete from tree where id = 1;
         commit;
         update parent set id = 100 where id = 3;
         update parent set id = 200 where id = 4;
         delete from parent where id = 5;",
    );
    wait_same(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

#[test]
fn exact_truncate_of_tables_joined_by_foreign_keys_replays() {
    let tables = ["parent", "child", "orphanable", "tree"];
    let (pair, mut replay) = replicate(FK_SCHEMA, &tables);
    pair.provider.execute(
        "truncate child, orphanable, parent;
         insert into parent values (1, 'again');
         insert into child values (1, 1, 'again');
         truncate parent cascade;
         truncate tree;
         insert into parent values (2, 'last');
         insert into child values (2, 2, 'last');",
    );
    wait_same(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

#[test]
fn exact_keys_moved_through_each_other_under_deferrable_constraints_net_right() {
    let schema = "
        create table shift (id int primary key deferrable, v text);
        create table swap (id int primary key, u int unique deferrable initially deferred,
                           v text);
        insert into shift select g, 'v' || g from generate_series(1, 20) g;
        insert into swap select g, g, 'v' || g from generate_series(1, 20) g;
    ";
    let tables = ["shift", "swap"];
    let (pair, mut replay) = replicate(schema, &tables);
    pair.provider.execute(
        "update shift set id = id + 1;
         update shift set id = id - 1;
         update shift set id = 21 - id;
         begin;
         update shift set id = 100 + id where id <= 5;
         update shift set id = id - 100 where id > 100;
         delete from shift where id = 7;
         insert into shift values (7, 'new seven');
         commit;
         update swap set u = 21 - u;
         begin;
         update swap set u = 19 where id = 1;
         update swap set u = 20 where id = 2;
         commit;",
    );
    wait_same(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

#[test]
fn exact_keys_equal_by_type_are_one_row_whatever_their_text() {
    let schema = "
        create extension if not exists citext;
        create table at_time (at timestamptz primary key, v text);
        create table span (d interval primary key, v text);
        create table amount (n numeric primary key, v text);
        create table name_ci (name citext primary key, v text);
        insert into at_time values ('2024-01-01 10:00+00', 'a');
        insert into span values ('1 day', 'a');
    ";
    let tables = ["at_time", "span", "amount", "name_ci"];
    let (pair, mut replay) = replicate(schema, &tables);
    pair.provider.execute(
        "begin;
         set local timezone = 'Asia/Tokyo';
         insert into at_time values ('2024-01-02 10:00+00', 'b');
         set local timezone = 'America/New_York';
         update at_time set v = 'b2' where at = '2024-01-02 10:00+00';
         update at_time set v = 'a2' where at = '2024-01-01 10:00+00';
         set local timezone = 'UTC';
         delete from at_time where at = '2024-01-01 10:00+00';
         commit;
         begin;
         set local intervalstyle = 'iso_8601';
         insert into span values ('2 days', 'b');
         set local intervalstyle = 'sql_standard';
         update span set v = 'b2' where d = '2 days';
         delete from span where d = '1 day';
         commit;
         begin;
         insert into amount values (1.0, 'a');
         delete from amount where n = 1;
         insert into amount values (1.00, 'b');
         insert into name_ci values ('Abc', 'a');
         update name_ci set name = 'ABC' where name = 'abc';
         update name_ci set v = 'b' where name = 'aBc';
         commit;",
    );
    wait_same(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

/// Under a deferrable key a delete tells which of the rows holding the key it removed by the
/// row's values; a value written in one session's time zone and deleted in another's has
/// another text in the two events, and is the same value.
#[test]
fn exact_a_delete_under_a_deferrable_key_finds_its_row_whatever_the_text_of_its_values() {
    let schema = "
        create table held (id int primary key deferrable initially deferred,
                           at timestamptz, v text);
        insert into held select g, timestamptz '2024-03-01 12:00+00' + g * interval '1 hour',
                                'v' || g from generate_series(1, 6) g;
    ";
    let tables = ["held"];
    let (pair, mut replay) = replicate(schema, &tables);
    // Each transaction's events are in one batch. In the first a new row holds key 2 with the
    // row from before, and goes; in the second the rows move through each other after their
    // values were written in another time zone.
    pair.provider.execute(
        "begin;
         set local timezone = 'Asia/Tokyo';
         insert into held values (2, '2024-03-01 12:00+00', 'new');
         set local timezone = 'America/New_York';
         delete from held where id = 2 and v = 'new';
         commit;
         begin;
         set local timezone = 'Pacific/Chatham';
         update held set at = at + interval '1 minute' where id >= 4;
         set local timezone = 'UTC';
         update held set id = id + 1 where id >= 4;
         commit;",
    );
    wait_same(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

/// A TRUNCATE of one table is queued while another transaction holds a key of another table
/// with two rows (a deferrable key): the truncate's event falls among that transaction's,
/// and the key settles after it. Replay once applied every queued event at the TRUNCATE as if
/// the provider's transactions so far had ended: the lone insert of key 5 went in beside the
/// row from before, and the later delete of that row by its key removed both, silently.
#[test]
fn exact_a_truncate_amid_keys_moving_through_each_other_elsewhere_replays() {
    key_held_twice_around("truncate emptied; insert into emptied values (7)");
}

/// The same with more events between than replay keeps before it applies what it holds
/// (5,000): the held key waits for the rest of its transaction.
#[test]
fn exact_a_key_held_twice_across_a_long_run_of_other_events_replays() {
    key_held_twice_around("insert into emptied select generate_series(10, 7009)");
}

/// A transaction leaves key 5 of `moving` to two rows, `between` runs in another session, then
/// the transaction deletes the row from before; all in one batch. Both sides end equal.
fn key_held_twice_around(between: &str) {
    use std::io::Write as _;
    let schema = "
        create table moving (id int primary key deferrable initially deferred, v text);
        create table emptied (id int primary key);
        insert into moving select g, 'v' || g from generate_series(1, 10) g;
        insert into emptied select generate_series(1, 3);
    ";
    let tables = ["moving", "emptied"];
    let pair = Pair::new(schema);
    for table in tables {
        pair.ok(&["provider", "add", table]);
    }
    for table in tables {
        pair.ok(&["subscriber", "add", table]);
    }
    std::fs::OpenOptions::new()
        .append(true)
        .open(&pair.conf)
        .and_then(|mut conf| conf.write_all(b"ticker = off\nloop_delay = 0.05\n"))
        .expect("config written");
    let mut ticker = pair.provider.connect("postgres");
    let mut tick = || {
        ticker
            .batch_execute("select pgq.force_tick('login'); select pgq.ticker('login')")
            .expect("tick");
    };
    let mut replay = pair.start_replay();
    let deadline = Instant::now() + WAIT;
    while !pair.states().iter().all(|(_, s)| s == "ok") {
        assert!(Instant::now() < deadline, "{}", pair.replay_log());
        tick();
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut mover = pair.provider.connect("postgres");
    mover
        .batch_execute("begin; insert into moving values (5, 'new')")
        .expect("key 5 held twice");
    pair.provider.execute(between);
    mover
        .batch_execute("delete from moving where id = 5 and v = 'v5'; commit")
        .expect("key 5 held once");
    tick();
    wait_same(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

#[test]
fn exact_a_change_the_subscriber_refuses_stops_replay_naming_table_key_and_event() {
    let pair = Pair::new("create table t (id int primary key, v text);");
    // A constraint only the subscriber has.
    pair.subscriber
        .execute("alter table t add constraint no_bad check (v <> 'bad')");
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "t"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("t", "id")]);
    pair.provider.execute(
        "insert into t select g, 'fine' from generate_series(1, 20) g; \
         update t set v = 'bad' where id = 7",
    );
    let expected = ": update of public.t with key id=7";
    pair.wait_for_log(expected);
    let status = pair.ok(&["status"]);
    assert!(
        status.contains(expected) && status.contains("no_bad"),
        "status does not show the error:\n{status}"
    );
    let log = pair.replay_log();
    let before = &log[..log.find(expected).unwrap()];
    let id = before.rsplit("event ").next().unwrap();
    assert!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "no event id before `{expected}` in:\n{log}"
    );
    // Nothing of the batch was applied, and nothing is skipped: fixed, it goes on.
    assert_eq!(
        pair.subscriber
            .value("postgres", "select count(*) from t where v = 'fine'"),
        Some("0".into())
    );
    pair.subscriber
        .execute("alter table t drop constraint no_bad");
    wait_same(&pair, &["t"]);
    stop(&mut replay, libc::SIGINT);
}

#[test]
fn exact_each_table_of_a_batch_is_applied_on_its_own_terms() {
    // A swap of a unique column in one table can be applied only in the events' order; keys
    // moved through each other under a deferrable key in another only as net changes. One
    // batch holding both must do each its own way.
    let pair = Pair::new(
        "create table parent (id int primary key, code text unique not null); \
         create table shift (id int primary key deferrable initially deferred, v text);",
    );
    pair.provider.execute(
        "insert into parent values (1, 'a'), (2, 'b'); \
         insert into shift values (1, 'one'), (2, 'two'), (3, 'three')",
    );
    pair.ok(&["provider", "add", "parent", "shift"]);
    pair.ok(&["subscriber", "add", "parent", "shift"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("parent", "id"), ("shift", "id")]);
    stop(&mut replay, libc::SIGINT);
    // With replay stopped, each round becomes one batch: a swap of parent codes, and keys
    // of shift moved through each other.
    for (a, b, moves) in [
        (
            "b",
            "a",
            "update shift set id = id + 1; update shift set id = id - 1;",
        ),
        (
            "a",
            "b",
            "delete from shift where id = 3; update shift set id = 3 - id;",
        ),
    ] {
        pair.provider.execute(&format!(
            "begin; update parent set code = 'swap' where id = 1; \
             update parent set code = '{b}' where id = 2; \
             update parent set code = '{a}' where id = 1; commit; {moves}"
        ));
        let mut replay = pair.start_replay();
        wait_same(&pair, &["parent", "shift"]);
        stop(&mut replay, libc::SIGINT);
    }
    assert!(
        !pair.replay_log().contains("ERROR"),
        "replay failed on the way:\n{}",
        pair.replay_log()
    );
}

/// One batch holds both the events of a key that rows held together on the way (only their
/// net change is right) and those of another key that only apply in their order. The latter
/// were once passed over without a word: here, where the subscriber has a row the provider
/// never had, the other key's events cannot apply (they would leave two rows), and replay
/// stops naming the key and its events instead of dropping the provider's insert; mended,
/// the batch replays.
#[test]
fn exact_events_that_apply_only_in_their_order_are_not_dropped_beside_net_changes() {
    let pair = Pair::new(
        "create table held (id int primary key deferrable initially deferred, v text); \
         insert into held values (1, 'old');",
    );
    pair.subscriber
        .execute("alter table held drop constraint held_pkey, add primary key (id)");
    pair.ok(&["provider", "add", "held"]);
    pair.ok(&["subscriber", "add", "held"]);
    let mut replay = pair.start_replay();
    let deadline = Instant::now() + WAIT;
    while pair.states() != [("public.held".to_string(), "ok".to_string())] {
        assert!(Instant::now() < deadline, "{}", pair.replay_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    pair.subscriber.execute(
        "begin; set local skyrep.replay = on; insert into held values (2, 'stray'); commit",
    );
    // Key 1 is held by two rows for a while; key 2 gets two rows and keeps one, which the
    // subscriber's stray row contradicts.
    pair.provider.execute(
        "begin;
         insert into held values (1, 'a');
         delete from held where v = 'a';
         update held set v = 'c' where id = 1;
         insert into held values (2, 'a'), (2, 'b');
         delete from held where id = 2 and v = 'a';
         commit;",
    );
    pair.wait_for_log("do not fit the subscriber, which has the row");
    let log = pair.replay_log();
    assert!(
        log.contains("the events of public.held key ('2'), events "),
        "{log}"
    );
    assert_eq!(
        pair.subscriber
            .value("postgres", "select v from held where id = 1")
            .as_deref(),
        Some("old"),
        "part of the batch was applied"
    );
    pair.subscriber
        .execute("begin; set local skyrep.replay = on; delete from held where id = 2; commit");
    wait_same(&pair, &["held"]);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

/// Under a deferrable key a new row holds the key with the row from before through many
/// updates, each of which, by its events alone, might have changed either row; then the row
/// from before goes. Replay once lost count of the ways the updates might have gone and
/// replayed the events in their order, where each update and the delete match both rows by
/// the key: the subscriber ended without the row, silently.
#[test]
fn exact_a_key_held_by_two_rows_through_many_updates_nets_to_the_provider_end() {
    let schema = "
        create table held (id int primary key deferrable initially deferred, v text);
        insert into held values (1, 'old'), (2, 'two');
    ";
    let tables = ["held"];
    let (pair, mut replay) = replicate(schema, &tables);
    let mut change = "begin; insert into held values (1, 'a');".to_string();
    let mut value = "a".to_string();
    for step in 1..=7 {
        change.push_str(&format!(
            " update held set v = 'v{step}' where id = 1 and v = '{value}';"
        ));
        value = format!("v{step}");
    }
    change.push_str(" delete from held where id = 1 and v = 'old'; commit;");
    pair.provider.execute(&change);
    wait_same(&pair, &tables);
    assert_eq!(rows(&pair.subscriber, "held"), ["(1,v7)", "(2,two)"]);
    // A row the provider never had: the provider's key 5 ends with one row of two, and on the
    // subscriber would end with two (replayed in order, the delete removed both). Replay
    // stops naming the key and its events; mended, the batch replays.
    pair.subscriber.execute(
        "begin; set local skyrep.replay = on; insert into held values (5, 'stray'); commit",
    );
    pair.provider.execute(
        "begin;
         insert into held values (5, 'a'), (5, 'b');
         delete from held where id = 5 and v = 'a';
         commit;",
    );
    pair.wait_for_log("do not fit the subscriber, which has the row");
    let log = pair.replay_log();
    assert!(
        log.contains("the events of public.held key ('5'), events "),
        "{log}"
    );
    assert_eq!(
        rows(&pair.subscriber, "held"),
        ["(1,v7)", "(2,two)", "(5,stray)"]
    );
    pair.subscriber
        .execute("begin; set local skyrep.replay = on; delete from held where id = 5; commit");
    wait_same(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

#[test]
fn exact_an_update_or_delete_that_finds_no_row_stops_replay_naming_table_key_and_event() {
    let pair = Pair::new("create table t (id int primary key, v text);");
    pair.provider
        .execute("insert into t select g, 'v' || g from generate_series(1, 20) g");
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "t"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("t", "id")]);
    for (round, (change, expected, mend)) in [
        (
            "update t set v = 'new' where id = 5",
            ": update of public.t with key id=5",
            "insert into t values (5, 'v5')",
        ),
        (
            "delete from t where id = 6",
            ": delete of public.t with key id=6",
            "insert into t values (6, 'v6')",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        // The row is gone from the subscriber behind replay's back.
        let id = 5 + round;
        pair.subscriber.execute(&format!(
            "begin; set local skyrep.replay = on; delete from t where id = {id}; commit"
        ));
        let marker = format!("round {round}");
        pair.provider.execute(&format!(
            "update t set v = '{marker}' where id = 1; {change}"
        ));
        pair.wait_for_log(expected);
        let status = pair.ok(&["status"]);
        assert!(
            status.contains(expected) && status.contains("found no row here"),
            "status does not show the error:\n{status}"
        );
        // Nothing of the batch was applied; mended, replay goes on.
        assert_ne!(
            pair.subscriber
                .value("postgres", "select v from t where id = 1"),
            Some(marker)
        );
        pair.subscriber.execute(&format!(
            "begin; set local skyrep.replay = on; {mend}; commit"
        ));
        wait_same(&pair, &["t"]);
    }
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

#[test]
fn exact_without_the_replica_role_the_triggers_and_rules_that_fire_are_named() {
    let pair = Pair::new(
        "create table t (id int primary key, v text, at timestamptz); \
         create table audit (n int);",
    );
    pair.subscriber.execute(
        "create function stamp() returns trigger language plpgsql as \
           $$begin new.at := now(); return new; end$$; \
         create trigger stamp before insert or update on t for each row execute function stamp(); \
         create trigger quiet before insert on t for each row execute function stamp(); \
         alter table t disable trigger quiet; \
         create rule log_it as on update to t do also insert into audit values (1); \
         create role owner login; alter table t owner to owner; alter table audit owner to owner; \
         grant usage on schema londiste to owner; \
         grant select, insert, update, delete on all tables in schema londiste to owner",
    );
    pair.ok(&["provider", "add", "t"]);
    pair.subscriber_as("owner");
    let named = "public.t: rule log_it, trigger stamp fire on every replayed row";
    let out = crate::util::skyrep()
        .arg(&pair.conf)
        .args(["subscriber", "add", "t"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.contains(named), "{err}");
    assert!(!err.contains("quiet"), "{err}");
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("t", "id")]);
    // Replay meets the table (the copy had its triggers set aside).
    pair.provider
        .execute("insert into t values (1, 'one', null)");
    pair.wait_for_log(named);
    let status = pair.ok(&["status"]);
    assert!(
        status.contains(
            "so these fire on replayed rows: public.t: rule log_it, public.t: trigger stamp"
        ),
        "{status}"
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
