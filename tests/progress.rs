//! How far a running copy is, where people look: `subscriber tables`, `status` and
//! `status --json` while a large copy is held mid-way, against the provider's estimate (exact,
//! an upper bound under a copy condition, or none for a table never analyzed), and nothing
//! left once the copy is done, stopped or restarted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::replay::{Pair, stop};
use crate::util::skyrep;

const WAIT: Duration = Duration::from_secs(120);

/// A subscriber row of `subscriber tables`: its state and its attributes.
#[derive(Debug)]
struct Row {
    state: String,
    attrs: BTreeMap<String, String>,
}

impl Row {
    /// The attribute `key` as a number, if there.
    fn number(&self, key: &str) -> Option<f64> {
        self.attrs.get(key).map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{key}={v} is not a number"))
        })
    }
}

/// `subscriber tables` read by its columns (the dashes under the titles give their widths,
/// so names with spaces stay whole), by table name.
fn tables(pair: &Pair) -> BTreeMap<String, Row> {
    let out = pair.ok(&["subscriber", "tables"]);
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("table_name  "), "{out}");
    let widths: Vec<usize> = lines
        .next()
        .unwrap()
        .split("  ")
        .map(|d| d.chars().count())
        .collect();
    let (w0, w1) = (widths[0], widths[1]);
    lines
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            let field = |from: usize, to: usize| -> String {
                chars[from.min(chars.len())..to.min(chars.len())]
                    .iter()
                    .collect::<String>()
                    .trim_end()
                    .to_string()
            };
            let name = field(0, w0);
            let state = field(w0 + 2, w0 + 2 + w1);
            let attrs = parse_attrs(&field(w0 + 2 + w1 + 2, chars.len()));
            (name, Row { state, attrs })
        })
        .collect()
}

/// `key=value key="quoted \" value"` words.
fn parse_attrs(text: &str) -> BTreeMap<String, String> {
    let mut attrs = BTreeMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ').is_some() {}
        if chars.peek().is_none() {
            return attrs;
        }
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        assert_eq!(chars.next(), Some('='), "no value for {key} in {text}");
        let mut value = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('\\') => value.push(chars.next().expect("escaped char")),
                    Some('"') => break,
                    Some(c) => value.push(c),
                    None => panic!("unterminated value of {key} in {text}"),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| *c != ' ')));
        }
        assert!(
            attrs.insert(key.clone(), value).is_none(),
            "{key} twice in {text}"
        );
    }
}

/// Waits until `subscriber tables` shows rows copied for `table`; returns its row.
fn wait_for_progress(pair: &Pair, table: &str) -> Row {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut rows = tables(pair);
        if let Some(row) = rows.remove(table)
            && row.number("copied_rows").is_some_and(|n| n > 0.0)
        {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "no progress for {table}: {rows:?}\n{}",
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `status` could read everything: it succeeded, or failed only because replay
/// does not run (before it starts, or once it is killed).
fn read_all(out: &std::process::Output) -> bool {
    let err = String::from_utf8_lossy(&out.stderr);
    out.status.success()
        || (out.status.code() == Some(1)
            && err.lines().count() == 1
            && err.contains("replay of job login_sub is not running"))
}

/// `status` text, which must have read everything.
fn status_text(pair: &Pair) -> String {
    let out = skyrep()
        .arg(&pair.conf)
        .arg("status")
        .output()
        .expect("skyrep runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        read_all(&out),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// `status --json`'s `subscriber.copy_progress`.
fn json_progress(pair: &Pair) -> Vec<Value> {
    let out = skyrep()
        .arg(&pair.conf)
        .args(["status", "--json"])
        .output()
        .expect("skyrep runs");
    assert!(read_all(&out), "{out:?}");
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    value["subscriber"]["copy_progress"]
        .as_array()
        .unwrap_or_else(|| panic!("no copy_progress array: {value}"))
        .clone()
}

/// The `status` line about the copy of `table`.
fn status_line(text: &str, table: &str) -> Option<String> {
    let head = format!("Copying {table}: ");
    text.lines()
        .map(|l| l.trim_start_matches([' ', '|']))
        .find(|l| l.starts_with(&head))
        .map(|l| l[head.len()..].to_string())
}

/// Asserts that nothing shows a copy in progress any more.
fn no_progress_left(pair: &Pair) {
    for (name, row) in tables(pair) {
        assert!(
            !row.attrs.keys().any(|k| k.starts_with("copied_")),
            "{name}: {row:?}"
        );
    }
    let text = status_text(pair);
    assert!(!text.contains("Copying "), "{text}");
    assert_eq!(json_progress(pair), Vec::<Value>::new());
    assert_eq!(
        pair.subscriber
            .query_strings("postgres", "select count(*) from londiste.copy_progress")[0][0]
            .as_deref(),
        Some("0")
    );
}

#[test]
fn a_held_copy_shows_rows_percent_and_eta_and_nothing_once_done() {
    // big is analyzed: its estimate is exact. raw never was (and autovacuum may not): it
    // has none.
    let pair = Pair::new(
        "create table big (id int primary key, pad text); \
         create table raw (id int primary key, pad text) with (autovacuum_enabled = off);",
    );
    pair.provider.execute(
        "insert into big select g, repeat('x', 200) from generate_series(1, 100000) g; \
         insert into raw select g, repeat('y', 200) from generate_series(1, 50000) g; \
         analyze big;",
    );
    // The subscriber's rows pass a check that waits, at row 1000, for a lock the test holds:
    // the COPY stops there until the test lets go.
    pair.subscriber.execute(
        "create function held(id int) returns boolean language plpgsql as $$ \
         begin \
             if id = 1000 then perform pg_catalog.pg_advisory_xact_lock_shared(4242); end if; \
             return true; \
         end $$; \
         alter table big add constraint held check (held(id)); \
         alter table raw add constraint held check (held(id));",
    );
    let conf = std::fs::read_to_string(&pair.conf).unwrap();
    std::fs::write(&pair.conf, format!("{conf}parallel_copies = 2\n")).unwrap();
    // An install from before copy progress: `tables` and `status` work, install upgrades it.
    pair.subscriber.execute("drop table londiste.copy_progress");
    pair.ok(&["provider", "add", "big", "raw"]);
    pair.ok(&["subscriber", "add", "big", "raw"]);
    assert_eq!(tables(&pair)["public.big"].state, "new");
    assert_eq!(json_progress(&pair), Vec::<Value>::new());
    pair.ok(&["subscriber", "install"]);

    let mut holder = pair.subscriber.connect("postgres");
    holder
        .batch_execute("select pg_catalog.pg_advisory_lock(4242)")
        .unwrap();
    let mut replay = pair.start_replay();

    let big = wait_for_progress(&pair, "public.big");
    let raw = wait_for_progress(&pair, "public.raw");
    assert_eq!(big.state, "in-copy");
    let rows = big.number("copied_rows").unwrap();
    assert!(
        big.number("copied_bytes").unwrap() > rows * 200.0,
        "{big:?}"
    );
    assert_eq!(big.number("estimated_rows"), Some(100000.0), "{big:?}");
    let percent = big.number("percent").expect("a percentage");
    assert!(percent > 0.0 && percent < 100.0, "{big:?}");
    assert!(big.attrs.contains_key("eta"), "{big:?}");
    for key in ["estimated_rows", "percent", "eta"] {
        assert!(!raw.attrs.contains_key(key), "{key}: {raw:?}");
    }
    assert!(raw.number("copied_bytes").unwrap() > 0.0, "{raw:?}");

    let text = status_text(&pair);
    let line = status_line(&text, "public.big").unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(" of about 100000 rows (")
            && line.contains("%), ")
            && line.contains(" MB, ETA "),
        "{line}"
    );
    let line = status_line(&text, "public.raw").unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(" rows (no estimate: the provider's table is not analyzed), ")
            && !line.contains("ETA"),
        "{line}"
    );

    let json = json_progress(&pair);
    assert_eq!(json.len(), 2, "{json:?}");
    let (big, raw) = (&json[0], &json[1]);
    assert_eq!(big["table"], "public.big");
    assert!(big["rows"].as_i64().unwrap() > 0, "{big}");
    assert!(big["bytes"].as_i64().unwrap() > 0, "{big}");
    assert_eq!(big["estimate_rows"], 100000);
    assert!(
        big["estimate_bytes"].as_i64().unwrap() > 100000 * 200,
        "{big}"
    );
    assert_eq!(big["estimate_is_upper_bound"], false);
    let percent = big["percent"].as_f64().expect("percent");
    assert!(percent > 0.0 && percent < 100.0, "{big}");
    assert!(big["eta"].as_f64().unwrap() >= 0.0, "{big}");
    assert_eq!(raw["table"], "public.raw");
    assert!(raw["rows"].as_i64().unwrap() > 0, "{raw}");
    assert_eq!(raw["estimate_rows"], Value::Null);
    assert_eq!(raw["percent"], Value::Null);
    assert_eq!(raw["eta"], Value::Null);

    holder
        .batch_execute("select pg_catalog.pg_advisory_unlock(4242)")
        .unwrap();
    pair.wait_equal(&[("big", "id"), ("raw", "id")]);
    no_progress_left(&pair);
    let log = pair.replay_log();
    assert!(log.contains("public.big: copied 100000 rows"), "{log}");
    assert!(
        !log.contains("copy progress not shown"),
        "progress was recorded: {log}"
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn progress_under_a_copy_condition_is_a_bound_and_starts_afresh_after_a_crash_or_stop() {
    // The condition waits on the provider, at row 2000, for a lock the test holds.
    let pair = Pair::new(
        r#"create table "Cond ""Tbl"" Ü" (id int primary key, pad text);
           create function hold(id int) returns boolean language plpgsql as $$
           begin
               if id = 2000 then perform pg_catalog.pg_advisory_xact_lock_shared(77); end if;
               return true;
           end $$;"#,
    );
    let table = r#"public.Cond "Tbl" Ü"#;
    pair.provider.execute(
        r#"insert into "Cond ""Tbl"" Ü" select g, repeat('z', 100)
             from generate_series(1, 20000) g;
           analyze "Cond ""Tbl"" Ü";"#,
    );
    let condition = r#"id % 2 = 0 and pad <> '"\' and hold(id)"#;
    pair.ok(&["provider", "add", r#""Cond ""Tbl"" Ü""#]);
    pair.ok(&[
        "subscriber",
        "add",
        r#""Cond ""Tbl"" Ü""#,
        &format!("--copy-condition={condition}"),
    ]);
    let row = &tables(&pair)[table];
    assert_eq!(
        row.attrs.get("copy_condition").map(String::as_str),
        Some(condition)
    );
    let mut holder = pair.provider.connect("postgres");
    holder
        .batch_execute("select pg_catalog.pg_advisory_lock(77)")
        .unwrap();
    let mut replay = pair.start_replay();

    let row = wait_for_progress(&pair, table);
    assert_eq!(
        row.attrs.get("copy_condition").map(String::as_str),
        Some(condition)
    );
    // Every other row up to the one that waits: at most 999, less what the provider's
    // output buffer holds back.
    let rows = row.number("copied_rows").unwrap();
    assert!(rows <= 999.0, "{row:?}");
    assert_eq!(
        row.number("estimated_rows_at_most"),
        Some(20000.0),
        "{row:?}"
    );
    let percent = row.number("percent_at_least").expect("a percentage");
    assert!(percent > 0.0 && percent <= 5.0, "{row:?}");
    assert!(row.attrs.contains_key("eta_at_most"), "{row:?}");
    for key in ["estimated_rows", "percent", "eta", "not_updated_for"] {
        assert!(!row.attrs.contains_key(key), "{key}: {row:?}");
    }
    let text = status_text(&pair);
    let line = status_line(&text, table).unwrap_or_else(|| panic!("{text}"));
    assert!(
        line.contains(" of at most 20000 rows (at least ") && line.contains(", ETA at most "),
        "{line}"
    );
    let json = json_progress(&pair);
    assert_eq!(json[0]["table"], table);
    assert_eq!(json[0]["estimate_is_upper_bound"], true);
    let started = |pair: &Pair| {
        pair.subscriber
            .query_strings(
                "postgres",
                "select started::text from londiste.copy_progress",
            )
            .into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>()
    };
    let first = started(&pair);
    assert_eq!(first.len(), 1);

    // A crash leaves the record; it shows its age once nobody updates it.
    assert_eq!(stop(&mut replay, libc::SIGKILL), None);
    pair.subscriber
        .execute("update londiste.copy_progress set updated = updated - interval '1 minute'");
    let row = &tables(&pair)[table];
    assert_eq!(row.state, "in-copy");
    assert!(row.attrs.contains_key("not_updated_for"), "{row:?}");
    let text = status_text(&pair);
    let line = status_line(&text, table).unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("; not updated for 1m"), "{line}");

    // The next attempt starts its own record.
    let mut replay = pair.start_replay();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = started(&pair);
        if now.len() == 1 && now != first {
            break;
        }
        assert!(Instant::now() < deadline, "{now:?}\n{}", pair.replay_log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let row = wait_for_progress(&pair, table);
    assert!(!row.attrs.contains_key("not_updated_for"), "{row:?}");

    // A stop rolls the copy back and takes its record with it.
    assert_eq!(
        stop(&mut replay, libc::SIGINT),
        Some(0),
        "{}",
        pair.replay_log()
    );
    assert_eq!(tables(&pair)[table].state, "in-copy");
    no_progress_left(&pair);

    let mut replay = pair.start_replay();
    wait_for_progress(&pair, table);
    holder
        .batch_execute("select pg_catalog.pg_advisory_unlock(77)")
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while pair.states() != [(table.to_string(), "ok".to_string())] {
        assert!(
            Instant::now() < deadline,
            "{:?}\n{}",
            pair.states(),
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    no_progress_left(&pair);
    assert_eq!(
        pair.subscriber
            .query_strings("postgres", r#"select count(*) from "Cond ""Tbl"" Ü""#)[0][0]
            .as_deref(),
        Some("10000")
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
