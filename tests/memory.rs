//! Replay's memory follows bytes, not the batch: a batch of wide rows and a batch of many
//! events are applied within a fixed peak RSS of the daemon, the same for both.

use std::time::{Duration, Instant};

use crate::replay::{Pair, stop};

/// The most a batch may add to the daemon's peak resident set, in MB: what it held idle
/// (the test build's code and threads take more than the release build's) is left out. The
/// release build's whole peak is in bench/drain.sh (SCENARIO=wide and bulk).
const GROWTH_MB: u64 = 12;

/// The daemon's peak resident set so far, in kB (`VmHWM` of /proc/PID/status).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Starts replay and lets it apply one row, then runs `insert` (one provider transaction,
/// so one batch, of rows with ids from 1) and returns how much the batch raised the
/// daemon's peak RSS, in MB, once the subscriber has its `rows` rows.
fn growth_mb_replaying(insert: &str, rows: u64) -> u64 {
    let pair = Pair::new("create table t (id int primary key, v text);");
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "--expect-sync", "t"]);
    let mut replay = pair.start_replay();
    let wait_for = |count: u64| {
        let deadline = Instant::now() + Duration::from_secs(600);
        while pair.subscriber.value("postgres", "select count(*) from t") != Some(count.to_string())
        {
            assert!(
                Instant::now() < deadline,
                "the rows were not applied\n{}",
                pair.replay_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    pair.provider.execute("insert into t values (0, 'idle')");
    wait_for(1);
    let idle = peak_rss_kb(replay.id()) / 1024;
    pair.provider.execute(insert);
    wait_for(rows + 1);
    let peak = peak_rss_kb(replay.id()) / 1024;
    stop(&mut replay, libc::SIGINT);
    let (p, s) = pair.digests("t", "id");
    assert_eq!(p, s, "the tables differ\n{}", pair.replay_log());
    eprintln!("peak RSS {idle} MB idle, {peak} MB after the batch");
    peak - idle
}

#[test]
fn a_batch_of_600_rows_of_1_mb_adds_at_most_12_mb() {
    let growth = growth_mb_replaying(
        "insert into t select g, repeat(md5(g::text), 32768) from generate_series(1, 600) g",
        600,
    );
    assert!(growth <= GROWTH_MB, "600 rows of 1 MB took {growth} MB");
}

#[test]
fn a_batch_of_many_events_adds_at_most_12_mb() {
    // 300,000 events here; the 3,000,000 of a daemon stopped for a while under load with
    // SKYREP_LONG=1.
    let events: u64 = if std::env::var_os("SKYREP_LONG").is_some() {
        3_000_000
    } else {
        300_000
    };
    let growth = growth_mb_replaying(
        &format!("insert into t select g, md5(g::text) from generate_series(1, {events}) g"),
        events,
    );
    assert!(growth <= GROWTH_MB, "{events} events took {growth} MB");
}
