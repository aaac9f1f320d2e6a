//! Faults under load: connections cut in the middle of a COPY and of a batch, and provider
//! transactions that span many ticks or roll back. Every case ends with both sides equal;
//! `ledger`'s increasing keys make a change applied twice fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::cluster::Cluster;
use crate::replay::{Pair, ledger_writer, stop};
use crate::util::wait_until;

const WAIT: Duration = Duration::from_secs(120);

const SCHEMA: &str = "create table ledger (id bigint primary key, note text); \
                      create table big (id int primary key, pad text);";

/// Terminates the sessions of skyrep on `cluster` for which the SQL condition `which` over
/// `pg_stat_activity` holds; returns how many.
fn cut(cluster: &Cluster, which: &str) -> usize {
    cluster
        .query_strings(
            "postgres",
            &format!(
                "select pg_terminate_backend(pid) from pg_stat_activity \
                 where application_name like 'skyrep/%' and ({which}) and pid <> pg_backend_pid()"
            ),
        )
        .len()
}

/// Holds an exclusive lock on `table` of `cluster` until dropped.
fn lock(cluster: &Cluster, table: &str) -> postgres::Client {
    let mut client = cluster.connect("postgres");
    client
        .batch_execute(&format!(
            "begin; lock table {table} in access exclusive mode"
        ))
        .unwrap();
    client
}

#[test]
fn connections_cut_mid_copy_and_mid_batch_lose_nothing() {
    let pair = Pair::new(SCHEMA);
    pair.provider.execute(
        "insert into big select g, repeat('x', 200) || g from generate_series(1, 20000) g",
    );
    pair.ok(&["provider", "add", "ledger", "big"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    let mut replay = pair.start_replay();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = ledger_writer(&pair.provider, stop_writer.clone());

    // The copy's session is cut while its COPY runs (held up by a lock so that it is caught
    // running), first on the provider, then on the subscriber.
    let waiting = "wait_event_type = 'Lock'";
    let held = lock(&pair.provider, "big");
    pair.ok(&["subscriber", "add", "big"]);
    wait_until(WAIT, "the COPY on the provider to cut", || {
        cut(
            &pair.provider,
            &format!("{waiting} and query ilike 'copy%'"),
        ) > 0
    });
    let held_too = lock(&pair.subscriber, "big");
    drop(held);
    wait_until(WAIT, "the copy on the subscriber to cut", || {
        cut(&pair.subscriber, waiting) > 0
    });
    drop(held_too);
    // Then the replay thread's sessions, in the middle of applying and of reading a batch.
    for (cluster, which) in [
        (
            &pair.subscriber,
            "query ilike 'insert%' or query ilike 'update%'",
        ),
        (&pair.provider, "query ilike '%batch%'"),
    ] {
        wait_until(WAIT, "a batch to cut", || cut(cluster, which) > 0);
    }
    stop_writer.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(written > 0);
    pair.wait_equal(&[("ledger", "id"), ("big", "id")]);
    let log = pair.replay_log();
    assert!(log.contains("copy-1: working again"), "{log}");
    assert!(log.contains("replay: working again"), "{log}");
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_provider_transaction_spanning_many_ticks_is_not_lost() {
    let pair = Pair::new(SCHEMA);
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    let mut replay = pair.start_replay();
    // A transaction that takes an early key, and one that rolls back, both left open.
    let mut long = pair.provider.connect("postgres");
    long.batch_execute("begin; insert into ledger values (-1, 'long')")
        .unwrap();
    let mut undone = pair.provider.connect("postgres");
    undone
        .batch_execute("begin; insert into ledger values (-2, 'rolled back')")
        .unwrap();
    // Many ticks pass with other, later keys committed and applied meanwhile.
    let ticks = || {
        pair.provider
            .value("postgres", "select max(tick_id) from pgq.tick")
            .unwrap()
            .parse::<i64>()
            .unwrap()
    };
    let before = ticks();
    let mut next = 1;
    wait_until(WAIT, "ten more ticks", || {
        pair.provider
            .execute(&format!("insert into ledger values ({next}, 'short')"));
        next += 1;
        std::thread::sleep(Duration::from_millis(50));
        ticks() >= before + 10
    });
    pair.wait_equal(&[("ledger", "id")]);
    long.batch_execute("commit").unwrap();
    undone.batch_execute("rollback").unwrap();
    pair.provider
        .execute(&format!("insert into ledger values ({next}, 'after')"));
    pair.wait_equal(&[("ledger", "id")]);
    let keys = pair
        .subscriber
        .query_strings("postgres", "select min(id), count(*) from ledger");
    assert_eq!(
        keys,
        [[Some("-1".to_string()), Some((next + 1).to_string())]]
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_statement_that_fails_on_the_subscriber_holds_replay_until_cleared() {
    let pair = Pair::new(SCHEMA);
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    // A subscriber trigger that refuses one value, as a full disk or a bad constraint would
    // (ENABLE ALWAYS: ordinary triggers do not fire in replay).
    pair.subscriber.execute(
        "create function poison() returns trigger language plpgsql as $$ \
         begin if new.note = 'poison' then raise exception 'no room for poison'; end if; \
         return new; end $$; \
         create trigger poison before insert on ledger for each row execute function poison(); \
         alter table ledger enable always trigger poison;",
    );
    let mut replay = pair.start_replay();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = ledger_writer(&pair.provider, stop_writer.clone());
    pair.provider
        .execute("insert into ledger values (-1, 'poison')");
    let status = || {
        let out = crate::util::skyrep()
            .arg(&pair.conf)
            .arg("status")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    wait_until(WAIT, "status shows the failure", || {
        status().contains("no room for poison")
    });
    // Nothing after the failing batch is applied meanwhile; once cleared, all of it is.
    let applied = || {
        pair.subscriber
            .query_strings("postgres", "select count(*) from ledger")
    };
    let before = applied();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(applied(), before, "replay went past the failing batch");
    pair.subscriber.execute("drop trigger poison on ledger");
    stop_writer.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    pair.wait_equal(&[("ledger", "id")]);
    wait_until(WAIT, "the error is cleared", || !status().contains("ERR: "));
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn replay_rides_out_an_outside_caller_of_its_batches_and_odd_answers() {
    let pair = Pair::new(SCHEMA);
    pair.ok(&["provider", "add", "ledger"]);
    pair.ok(&["subscriber", "add", "ledger"]);
    let mut replay = pair.start_replay();
    pair.provider
        .execute("insert into ledger values (1, 'before')");
    pair.wait_equal(&[("ledger", "id")]);

    // Another client holds next_batch on replay's consumer while a tick is pending: replay
    // waits for it, then goes on.
    let mut outsider = pair.provider.connect("postgres");
    let mut tx = outsider.transaction().unwrap();
    let next = "select batch_id, cur_tick_id from pgq.next_batch_info('login', 'login_sub')";
    tx.query(next, &[]).unwrap();
    pair.provider
        .execute("insert into ledger values (2, 'raced for')");
    wait_until(WAIT, "replay waits for the outside caller", || {
        pair.provider
            .value(
                "postgres",
                "select count(*) from pg_stat_activity \
                 where application_name = 'skyrep/login_sub' and wait_event_type = 'Lock'",
            )
            .as_deref()
            != Some("0")
    });
    wait_until(WAIT, "the outside caller took the batch", || {
        let row = tx.query_one(next, &[]).unwrap();
        row.get::<_, Option<i64>>(0).is_some() && row.get::<_, Option<i64>>(1).is_some()
    });
    tx.commit().unwrap();
    pair.wait_equal(&[("ledger", "id")]);

    // A queue that answers with NULLs is an error that replay retries.
    pair.provider.execute(
        "alter function pgq.next_batch_info(text, text) rename to next_batch_info_saved; \
         create function pgq.next_batch_info(text, text, out batch_id int8, \
             out cur_tick_id int8, out prev_tick_id int8, out cur_tick_time timestamptz, \
             out prev_tick_time timestamptz, out cur_tick_event_seq int8, \
             out prev_tick_event_seq int8) \
         language sql as $$ select 1::int8, null::int8, null::int8, null::timestamptz, \
             null::timestamptz, null::int8, null::int8 $$",
    );
    wait_until(WAIT, "replay reported the answer", || {
        pair.replay_log().contains(
            "ERROR replay: queue login answered the next batch of login_sub with a NULL \
             or bad value: batch 1: ",
        )
    });
    pair.provider.execute(
        "drop function pgq.next_batch_info(text, text); \
         alter function pgq.next_batch_info_saved(text, text) rename to next_batch_info",
    );
    pair.provider
        .execute("insert into ledger values (3, 'after')");
    pair.wait_equal(&[("ledger", "id")]);
    assert!(
        !pair.replay_log().contains("panicked"),
        "{}",
        pair.replay_log()
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
