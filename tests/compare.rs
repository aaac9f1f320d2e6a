//! `compare` and `repair`: both sides at one point of the stream, differences found, shown
//! as SQL and fixed.

use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::replay::{Pair, ledger_writer, stop};
use crate::util::skyrep;

/// A table with an odd name, a text key and values of many types.
const ODD: &str = r#""Odd ""Tab"" é""#;

const SCHEMA: &str = r#"
create table ledger (id bigint primary key, note text);
create type mood as enum ('sad', 'happy ☺');
create table "Odd ""Tab"" é" (
    "Key" text primary key, n numeric, b bytea, arr int[], j jsonb, ts timestamptz,
    m mood, "Note Text" text
);"#;

/// Runs `skyrep CONFIG args...` in the pair's scratch dir.
fn run(pair: &Pair, args: &[&str]) -> Output {
    skyrep()
        .current_dir(pair.dir.path())
        .arg(&pair.conf)
        .args(args)
        .output()
        .expect("skyrep runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A pair replicating `ledger` (written to all along) and the odd table, both `ok`.
fn replicating() -> (Pair, std::process::Child) {
    let pair = Pair::new(SCHEMA);
    pair.provider.execute(&format!(
        r#"insert into {ODD} select 'k' || g || case when g % 7 = 0 then E' \'\\\n"' else '' end,
               g / 3.0, decode(md5(g::text), 'hex'), array[g, null, -g],
               jsonb_build_object('g', g, 's', 'ü'), '2026-01-01 00:00+00'::timestamptz + g * interval '1 hour',
               case when g % 2 = 0 then 'happy ☺' end::mood,
               case when g % 5 = 0 then null else 'line' || E'\n\t' || g end
             from generate_series(1, 500) g"#
    ));
    pair.ok(&["provider", "add", "ledger", ODD]);
    pair.ok(&["subscriber", "add", "ledger", ODD]);
    let replay = pair.start_replay();
    pair.wait_equal(&[("ledger", "id"), (ODD, r#""Key""#)]);
    (pair, replay)
}

#[test]
fn compare_waits_for_replay_and_repair_makes_changed_tables_equal() {
    let (pair, mut replay) = replicating();
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = ledger_writer(&pair.provider, stop_writer.clone());
    // Right after a change on the provider, compare waits for replay and finds both equal.
    pair.provider.execute(&format!(
        r#"update {ODD} set n = n + 1 where "Key" like 'k1%'"#
    ));
    let out = run(&pair, &["compare"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("public.ledger\n  srcdb: "), "{stdout}");
    let odd_lines: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("Odd"))
        .take(3)
        .collect();
    assert!(
        odd_lines[1].contains("srcdb: 500 rows, checksum=")
            && odd_lines[1][9..] == odd_lines[2][9..],
        "{stdout}"
    );

    // Rows changed behind replay's back: one deleted, one updated, one inserted.
    pair.subscriber.execute(&format!(
        r#"set skyrep.replay = on;
           delete from {ODD} where "Key" = 'k7 ''\' || E'\n"';
           update {ODD} set "Note Text" = E'changed\\here', arr = null where "Key" = 'k10';
           insert into {ODD} ("Key", n) values ('stray', 1);
           delete from ledger where id = 3;"#
    ));
    let out = run(&pair, &["compare", ODD]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("DIFFERENT"), "{}", text(&out));

    let out = run(&pair, &["repair", ODD, "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let fix_name = r#"fix.login_sub.public.Odd "Tab" é.sql"#;
    let fix = std::fs::read_to_string(pair.dir.path().join(fix_name)).expect("fix file");
    let statements: Vec<&str> = fix
        .lines()
        .filter(|l| {
            ["insert", "update", "delete"]
                .iter()
                .any(|s| l.starts_with(s))
        })
        .collect();
    assert_eq!(statements.len(), 3, "{fix}");
    assert!(
        text(&out).contains("3 rows differ (1 missing on the subscriber, 1 changed, 1 extra)"),
        "{}",
        text(&out)
    );
    let ledger_path = pair.dir.path().join("fix.login_sub.public.ledger.sql");
    let ledger_fix = std::fs::read_to_string(&ledger_path).unwrap();
    assert!(
        ledger_fix.contains(r#"insert into "public"."ledger" ("id", "note") values ('3'"#),
        "{ledger_fix}"
    );
    // The rows are the table's data: for this user only.
    assert_eq!(
        std::fs::metadata(&ledger_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // A --dir that is not there is refused before any table is synced or compared.
    let fixes = pair.dir.path().join("fixes");
    let fixes_arg = fixes.display().to_string();
    let out = run(&pair, &["repair", "--dir", &fixes_arg, "ledger"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("--dir {fixes_arg}: no such directory"))
            && !text(&out).contains("Comparing"),
        "{}",
        text(&out)
    );

    // In --dir; a symbolic link planted at the fix file's name is not followed.
    std::fs::create_dir(&fixes).unwrap();
    let victim = pair.dir.write("victim", "precious\n");
    std::os::unix::fs::symlink(&victim, fixes.join("fix.login_sub.public.ledger.sql")).unwrap();
    let out = run(&pair, &["repair", "--dir", &fixes_arg, "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "creating {}/fix.login_sub.public.ledger.sql: a symbolic link is in its place",
            fixes.display()
        )),
        "{}",
        text(&out)
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    std::fs::remove_file(fixes.join("fix.login_sub.public.ledger.sql")).unwrap();
    let out = run(&pair, &["repair", "--dir", &fixes_arg, "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(fixes.join("fix.login_sub.public.ledger.sql")).unwrap(),
        ledger_fix
    );
    // The file is what a user would run with psql; here it is the tables that prove it.
    let out = run(&pair, &["repair", "--apply"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("fix applied"), "{}", text(&out));

    // Equal again while the writer goes on, and a second repair finds nothing.
    let out = run(&pair, &["compare"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = run(&pair, &["repair"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(": equal"), "{}", text(&out));
    stop_writer.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    pair.wait_equal(&[("ledger", "id"), (ODD, r#""Key""#)]);
    assert_eq!(stop(&mut replay, libc::SIGTERM), Some(0));
}

#[test]
fn compare_refuses_at_once_when_replay_is_down_or_behind_and_for_unknown_tables() {
    let (pair, mut replay) = replicating();
    stop(&mut replay, libc::SIGTERM);
    std::fs::write(
        &pair.conf,
        std::fs::read_to_string(&pair.conf).unwrap() + "lock_timeout = 3\n",
    )
    .unwrap();
    // Replay is down: compare says so without locking the provider or waiting for a tick.
    let out = run(&pair, &["compare", "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("replay of job login_sub is not running"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("Locking"), "{}", text(&out));
    // Replay runs but is held up by a lock on the subscriber. A backlog younger than
    // lock_timeout: compare locks and waits, and gives up saying replay runs; no server
    // warning (a rollback outside a transaction) reaches the terminal.
    let mut holder = pair.subscriber.connect("postgres");
    holder
        .batch_execute("begin; lock table ledger in exclusive mode")
        .unwrap();
    let mut replay = pair.start_replay();
    pair.provider
        .execute("insert into ledger values (1, 'x'); select pgq.ticker('login');");
    let out = run(&pair, &["compare", "ledger"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("within lock_timeout (3 s), though it runs"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("WARNING"), "{}", text(&out));
    // A backlog older than lock_timeout: compare does not even lock, and says that replay
    // runs and how far behind it is.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let out = run(&pair, &["compare"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("replay runs but is") && text(&out).contains("s behind"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("Locking"), "{}", text(&out));
    holder.batch_execute("rollback").unwrap();
    // Unknown tables are usage errors.
    let out = run(&pair, &["compare", "nosuch"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("public.nosuch is not registered on the subscriber"),
        "{}",
        text(&out)
    );
    // Once replay has caught up, compare passes.
    pair.wait_equal(&[("ledger", "id")]);
    let out = run(&pair, &["compare"]);
    assert!(out.status.success(), "{}", text(&out));
    stop(&mut replay, libc::SIGTERM);
}

#[test]
fn compare_sql_works_as_written_on_tables_with_and_without_a_copy_condition() {
    let odd = r#""Part ""Tab"" é""#;
    let pair = Pair::new(&format!(
        "create table {odd} (id int primary key, v text);
         create table whole (id int primary key, v text);"
    ));
    pair.provider.execute(&format!(
        "insert into {odd} select g, 'v' || g from generate_series(1, 100) g;
         insert into whole select g, 'w' || g from generate_series(1, 30) g;"
    ));
    pair.ok(&["provider", "add", odd, "whole"]);
    pair.ok(&["subscriber", "add", odd, "--copy-condition=id > 60"]);
    pair.ok(&["subscriber", "add", "whole"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("whole", "id")]);
    let original = std::fs::read_to_string(&pair.conf).unwrap();
    // Londiste's own form, no ONLY, no alias, the table's name in an expression, the
    // query's own WHERE and WITH, and several lines ending in a semicolon.
    for sql in [
        "select count(*) as cnt, sum(hashtext(t::text)) as chksum from only _TABLE_ t",
        "select count(*), sum(hashtext(t::text)) from _TABLE_ t",
        "select count(*), sum(id) from _TABLE_",
        "select count(*), sum(hashtext(x.v)) from only _TABLE_ as x where x.id > 0",
        "with n as (select count(*) c, max(id) m from _TABLE_) select c, m from n",
        "select count(*),\n  sum(id)\n  from _TABLE_ t -- the whole table\n  ;",
    ] {
        let value = sql.replace('\n', "\n    ");
        std::fs::write(&pair.conf, format!("{original}compare_sql = {value}\n")).unwrap();
        let out = run(&pair, &["compare"]);
        let shown = text(&out);
        assert!(out.status.success(), "{sql}: {shown}");
        assert!(
            shown.contains("Part \"Tab\" é\n  srcdb: 40 rows")
                && shown.contains("public.whole\n  srcdb: 30 rows"),
            "{sql}: {shown}"
        );
    }
    // A difference is still found through the condition's rows.
    pair.subscriber.execute(&format!(
        "set skyrep.replay = on; delete from {odd} where id = 99"
    ));
    let out = run(&pair, &["compare", odd]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("srcdb: 40 rows") && text(&out).contains("dstdb: 39 rows"),
        "{}",
        text(&out)
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
