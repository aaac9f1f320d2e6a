//! Control events that skyrep did not queue itself are never acted on: a script or a table
//! removal inserted into the queue by hand (by anyone who may insert events) holds replay
//! with an error naming the event, and changes nothing on the subscriber.

use std::time::{Duration, Instant};

use crate::replay::{Pair, stop};

const WAIT: Duration = Duration::from_secs(60);

fn exists(pair: &Pair, table: &str) -> bool {
    pair.subscriber
        .value(
            "postgres",
            &format!("select to_regclass('{table}') is not null"),
        )
        .as_deref()
        == Some("t")
}

#[test]
fn a_script_queued_by_hand_is_never_run_on_the_subscriber() {
    let pair = Pair::new("create table t (id int primary key, v text);");
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "t"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("t", "id")]);
    let legit = pair
        .dir
        .write("legit.sql", "alter table t add column c int;\n");
    pair.ok(&["provider", "execute", legit.to_str().unwrap()]);
    pair.wait_equal(&[("t", "id")]);

    // A script nobody executed, and another text under the name of one that was.
    for (name, text, why) in [
        (
            "evil.sql",
            "create table pwned (i int);",
            "the provider's record of executed scripts does not hold it",
        ),
        (
            "legit.sql",
            "create table pwned (i int);",
            "the provider ran a different text under that name",
        ),
    ] {
        pair.provider.execute(&format!(
            "select pgq.insert_event('login', 'EXECUTE', '{text}', '{name}', null, null, null); \
             insert into t values ({}, 'after')",
            name.len()
        ));
        pair.wait_for_log(&format!(
            "script {name} was not run by `provider execute` ({why})"
        ));
        assert!(!exists(&pair, "pwned"));
        let status = pair.ok(&["status"]);
        assert!(
            status.contains(&format!("script {name} was not run")),
            "{status}"
        );
        // Passed over on purpose, replay goes on (the row after it arrives); the script is
        // never run.
        if name == "evil.sql" {
            pair.ok(&["subscriber", "skip-execute", name]);
            pair.wait_equal(&[("t", "id")]);
            assert!(!exists(&pair, "pwned"));
        }
    }
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_table_removal_queued_by_hand_is_never_applied() {
    let pair = Pair::new(
        "create table t (id int primary key, v text); create table u (id int primary key);",
    );
    pair.ok(&["provider", "add", "t", "u"]);
    pair.ok(&["subscriber", "add", "t", "u"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("t", "id"), ("u", "id")]);
    pair.provider.execute(
        "select pgq.insert_event('login', 'londiste.remove-table', 'public.t'); \
         insert into t values (1, 'after')",
    );
    pair.wait_for_log(
        "a removal of public.t, which the provider still replicates and did not remove in that transaction: not applied",
    );
    assert_eq!(pair.states().len(), 2, "{:?}", pair.states());
    // A removal the provider made is applied, also while a forged one waits before it... once
    // the provider no longer has the table, the forged one agrees with it too.
    pair.ok(&["provider", "remove", "u"]);
    pair.ok(&["provider", "remove", "t"]);
    let deadline = Instant::now() + WAIT;
    while !pair.states().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the removals did not arrive: {:?}\n{}",
            pair.states(),
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
