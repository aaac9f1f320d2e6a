//! `skyrep demo`: the guided replication runs from nothing to equal tables and leaves nothing
//! behind, also when interrupted.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::util::{skyrep, wait_until};

/// The demo's directory, from its first step's line.
fn demo_dir(out: &str) -> PathBuf {
    let line = out
        .lines()
        .find(|l| l.starts_with("1. Starting two PostgreSQL servers in "))
        .unwrap_or_else(|| panic!("no first step in:\n{out}"));
    let rest = &line["1. Starting two PostgreSQL servers in ".len()..];
    let (dir, _) = rest
        .split_once(" (provider on port ")
        .unwrap_or_else(|| panic!("no ports in: {line}"));
    PathBuf::from(dir)
}

/// Asserts that `dir` is gone and no process mentions it (the servers' postmasters do).
fn assert_cleaned_up(dir: &Path) {
    assert!(!dir.exists(), "{} still exists", dir.display());
    let needle = dir.to_string_lossy().into_owned();
    let mentioning = || -> Vec<String> {
        fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let cmdline = fs::read(entry.path().join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                cmdline
                    .contains(&needle)
                    .then(|| format!("{}: {cmdline}", entry.file_name().to_string_lossy()))
            })
            .collect()
    };
    // pg_ctl stop returns once the postmaster removed its pid file, just before it exits.
    wait_until(
        Duration::from_secs(10),
        "no process mentions the demo's directory",
        || mentioning().is_empty(),
    );
}

#[test]
fn demo_replicates_and_leaves_nothing_behind() {
    let out = skyrep().arg("demo").output().expect("skyrep runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut at = 0;
    for step in [
        "1. Starting two PostgreSQL servers in ",
        "skyrep demo.ini provider install",
        "skyrep demo.ini subscriber install",
        "skyrep demo.ini provider add public.user_info public.user_session",
        "skyrep demo.ini subscriber add --expect-sync public.user_login_rec",
        "skyrep demo.ini replay",
        "Starting logins, logouts and sign-ups",
        "skyrep demo.ini subscriber add public.user_info public.user_session",
        "public.user_info: new -> ",
        "public.user_session: new -> ",
        "The writes are done: ",
        "skyrep demo.ini status",
        "Tables: 4/0/0 ok/copying/other",
        "skyrep demo.ini compare",
        "Stopping both servers and removing ",
        "Done: both sides are equal.",
    ] {
        match stdout[at..].find(step) {
            Some(i) => at += i + step.len(),
            None => panic!("`{step}` missing or out of order in:\n{stdout}"),
        }
    }
    // compare's report: both sides of every table, equal.
    let lines: Vec<&str> = stdout.lines().collect();
    let compared: Vec<&[&str]> = lines
        .windows(3)
        .filter(|w| w[1].starts_with("  srcdb: ") && w[2].starts_with("  dstdb: "))
        .collect();
    let tables: Vec<&str> = compared.iter().map(|w| w[0]).collect();
    assert_eq!(
        tables,
        [
            "public.user_info",
            "public.user_login_rec",
            "public.user_logout_rec",
            "public.user_session"
        ],
        "{stdout}"
    );
    for w in &compared {
        assert_eq!(
            w[1]["  srcdb: ".len()..],
            w[2]["  dstdb: ".len()..],
            "{stdout}"
        );
    }
    assert!(!stdout.contains("DIFFERENT"), "{stdout}");
    assert_cleaned_up(&demo_dir(&stdout));
}

#[test]
fn interrupted_demo_stops_the_servers_and_removes_its_directory() {
    let mut child = skyrep()
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("skyrep runs");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    // Ctrl-C while the writes go on and the tables are being copied.
    while !out.contains("Starting logins, logouts and sign-ups") {
        let mut line = String::new();
        if stdout.read_line(&mut line).unwrap() == 0 {
            let status = child.wait().unwrap();
            panic!("the demo ended ({status}) before the writes started:\n{out}");
        }
        out.push_str(&line);
    }
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    stdout.read_to_string(&mut out).unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "stdout:\n{out}\nstderr:\n{stderr}");
    assert!(
        stderr.ends_with("skyrep: interrupted\n"),
        "stdout:\n{out}\nstderr:\n{stderr}"
    );
    let dir = demo_dir(&out);
    assert!(
        out.contains(&format!(
            "Stopping both servers and removing {}",
            dir.display()
        )),
        "{out}"
    );
    assert!(!out.contains("Done:"), "{out}");
    assert_cleaned_up(&dir);
}
