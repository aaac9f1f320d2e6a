//! Replay's memory follows bytes, not the batch: a batch of wide rows and a batch of many
//! events are applied within a fixed peak RSS of the daemon, the same for both.

use std::time::{Duration, Instant};

use crate::replay::{Pair, stop};

/// The most the daemon may take while it replays (VmHWM, whole MB).
const PEAK_MB: u64 = 16;

/// The daemon's peak resident set so far, in kB (`VmHWM` of /proc/PID/status).
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Queues `insert` (one provider transaction, so one batch) with replay stopped, then
/// replays it and returns the daemon's peak RSS in MB once the subscriber has `rows` rows.
fn peak_mb_replaying(insert: &str, rows: u64) -> u64 {
    let pair = Pair::new("create table t (id int primary key, v text);");
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "--expect-sync", "t"]);
    pair.provider.execute(insert);
    let mut replay = pair.start_replay();
    let deadline = Instant::now() + Duration::from_secs(600);
    while pair.subscriber.value("postgres", "select count(*) from t") != Some(rows.to_string()) {
        assert!(
            Instant::now() < deadline,
            "the batch was not applied\n{}",
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let peak = peak_rss_kb(replay.id()) / 1024;
    stop(&mut replay, libc::SIGINT);
    let (p, s) = pair.digests("t", "id");
    assert_eq!(p, s, "the tables differ\n{}", pair.replay_log());
    peak
}

#[test]
fn a_batch_of_600_rows_of_1_mb_replays_in_16_mb() {
    let peak = peak_mb_replaying(
        "insert into t select g, repeat(md5(g::text), 32768) from generate_series(1, 600) g",
        600,
    );
    eprintln!("peak RSS replaying 600 rows of 1 MB: {peak} MB");
    assert!(peak <= PEAK_MB, "peak RSS {peak} MB");
}

#[test]
fn a_batch_of_many_events_replays_in_16_mb() {
    // 300,000 events here; the 3,000,000 of a daemon stopped for a while under load with
    // SKYREP_LONG=1.
    let events: u64 = if std::env::var_os("SKYREP_LONG").is_some() {
        3_000_000
    } else {
        300_000
    };
    let peak = peak_mb_replaying(
        &format!("insert into t select g, md5(g::text) from generate_series(1, {events}) g"),
        events,
    );
    eprintln!("peak RSS replaying {events} events: {peak} MB");
    assert!(peak <= PEAK_MB, "peak RSS {peak} MB");
}
