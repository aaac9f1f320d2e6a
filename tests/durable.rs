//! The applied position survives the subscriber: a batch is on the subscriber's disk before
//! the provider forgets it, whatever `synchronous_commit` says, and a subscriber found
//! behind the provider's position (restored from a backup) takes the consumer back and
//! applies what it lost.

use std::time::{Duration, Instant};

use crate::replay::{Pair, stop};

const TABLES: [(&str, &str); 1] = [("t", "id")];

/// A pair replicating table `t`, in state ok, with replay running.
fn replicating() -> (Pair, std::process::Child) {
    let pair = Pair::new("create table t (id int primary key, v text);");
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "t"]);
    let replay = pair.start_replay();
    pair.wait_equal(&TABLES);
    (pair, replay)
}

/// Waits until the subscriber has `rows` rows in `t`.
fn wait_rows(pair: &Pair, rows: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while pair.subscriber.value("postgres", "select count(*) from t") != Some(rows.to_string()) {
        assert!(
            Instant::now() < deadline,
            "the subscriber did not reach {rows} rows\n{}",
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_subscriber_crash_with_synchronous_commit_off_loses_no_batch() {
    let (mut pair, mut replay) = replicating();
    // Commits wait for nothing, and the WAL writer flushes only every 10 s: a crash loses
    // every commit of the last seconds that was not flushed by something else.
    pair.subscriber
        .execute("alter database postgres set synchronous_commit = off");
    pair.subscriber
        .execute("alter system set wal_writer_delay = '10s'");
    pair.subscriber.execute("select pg_reload_conf()");
    // Replay's sessions pick up the database default when they reconnect.
    stop(&mut replay, libc::SIGINT);
    let mut replay = pair.start_replay();
    let mut rows = 0;
    for round in 0..3 {
        pair.provider.execute(&format!(
            "insert into t select g, 'round {round}' from generate_series({}, {}) g",
            rows + 1,
            rows + 100
        ));
        rows += 100;
        wait_rows(&pair, rows);
        pair.subscriber.crash_and_restart();
        wait_rows(&pair, rows);
    }
    pair.wait_equal(&TABLES);
    stop(&mut replay, libc::SIGINT);
    assert!(
        !pair.replay_log().contains("moved the consumer back"),
        "a batch was lost and applied again:\n{}",
        pair.replay_log()
    );
}

#[test]
fn a_subscriber_restored_from_a_backup_takes_the_consumer_back_and_catches_up() {
    let (pair, mut replay) = replicating();
    pair.provider
        .execute("insert into t select g, 'before' from generate_series(1, 50) g");
    wait_rows(&pair, 50);
    stop(&mut replay, libc::SIGINT);
    // The backup: a copy of the subscriber database as it is now.
    pair.subscriber
        .execute("create database backup template postgres");
    let mut replay = pair.start_replay();
    pair.provider.execute(
        "insert into t select g, 'after' from generate_series(51, 120) g; \
         update t set v = 'changed' where id % 7 = 0; delete from t where id % 11 = 0",
    );
    pair.wait_equal(&TABLES);
    stop(&mut replay, libc::SIGINT);
    // Restore it: the subscriber is back at the earlier tick, the provider is past it.
    let mut admin = pair.subscriber.connect("template1");
    admin
        .batch_execute("alter database postgres rename to lost")
        .unwrap();
    admin
        .batch_execute("alter database backup rename to postgres")
        .unwrap();
    let mut replay = pair.start_replay();
    pair.wait_equal(&TABLES);
    stop(&mut replay, libc::SIGINT);
    let log = pair.replay_log();
    assert!(
        log.contains("moved the consumer back"),
        "replay did not say it moved the consumer back:\n{log}"
    );
}
