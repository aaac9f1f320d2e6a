//! Replay applies exactly what the provider committed: whatever the settings of the sessions
//! that write, and the defaults of either database; with generated and identity columns
//! and odd key column names; and while the provider's tables are altered outside `provider
//! execute`.
//!
//! Both sides are compared row by row as text read in fixed settings, so a date, an
//! interval, a float or a money value that changed on the way shows as a difference.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::replay::{Pair, stop};
use crate::util::error_chain;

const WAIT: Duration = Duration::from_secs(120);

/// The settings the tests read values in (those of skyrep's own sessions).
const FIXED: &str = "set datestyle = 'ISO, MDY'; set intervalstyle = 'postgres'; \
     set extra_float_digits = 3; set bytea_output = 'hex'; set timezone = 'UTC'; \
     set lc_monetary = 'C'";

/// The rows of `table` in `key` order, as text in skyrep's fixed settings.
fn fixed_rows(cluster: &Cluster, table: &str, key: &str) -> Vec<String> {
    cluster
        .query_strings(
            "postgres",
            &format!("{FIXED}; select r::text from {table} r order by {key}"),
        )
        .into_iter()
        .map(|row| row[0].clone().unwrap_or_default())
        .collect()
}

/// Waits until every table is `ok` and has the same rows on both sides; panics with the
/// differences and replay's log if that does not happen in time.
fn wait_same_rows(pair: &Pair, tables: &[(&str, &str)]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let all_ok = pair.states().iter().all(|(_, s)| s == "ok");
        let differing: Vec<String> = tables
            .iter()
            .filter_map(|(table, key)| {
                let (p, s) = (
                    fixed_rows(&pair.provider, table, key),
                    fixed_rows(&pair.subscriber, table, key),
                );
                (p != s).then(|| format!("{table}:\n  provider   {p:?}\n  subscriber {s:?}"))
            })
            .collect();
        if all_ok && differing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tables did not become equal: states {:?}\n{}\n--- replay log ---\n{}",
            pair.states(),
            differing.join("\n"),
            pair.replay_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether the server knows locale `name` (for lc_monetary).
fn has_locale(cluster: &Cluster, name: &str) -> bool {
    cluster
        .connect("postgres")
        .batch_execute(&format!("set lc_monetary = '{name}'"))
        .is_ok()
}

const VALUES_TABLE: &str = "create table vals (id int primary key, d date, ts timestamp, \
     tstz timestamptz, tm time, iv interval, f8 float8, f4 real, b bytea, m money, n numeric, \
     ds date[], r tsrange)";

/// Values given by expressions whose result does not depend on the session's settings.
fn insert_vals(id: i32) -> String {
    format!(
        "insert into vals values ({id}, make_date(2024, 2, {day}), \
         make_timestamp(2024, 2, 13, 10, 30, 0.5), \
         make_timestamptz(1900, 2, 13, 10, 30, 0.25, 'Europe/Amsterdam'), make_time(23, 59, 59.5), \
         make_interval(years => 1, months => 2, days => -3, hours => 4, mins => 5, secs => 6.5), \
         0.1::float8 + 0.2::float8 + {id}, 1.1::real / 3, '\\x00ff5c27'::bytea, \
         (1234.56 + {id})::numeric::money, 1.50, array[make_date(2024, 2, 13)], \
         tsrange(make_timestamp(2024, 2, 13, 0, 0, 0), make_timestamp(2024, 3, 1, 0, 0, 0)))",
        day = 1 + id % 28
    )
}

#[test]
fn odd_session_settings_and_database_defaults_replicate_exactly() {
    let pair = Pair::new(VALUES_TABLE);
    let monetary = if has_locale(&pair.provider, "de_DE.utf8") {
        "de_DE.utf8"
    } else {
        eprintln!("locale de_DE.utf8 is missing (tests/run.sh makes it): lc_monetary stays C");
        "C"
    };
    // Odd defaults on both sides: they apply to every session that does not set its own,
    // skyrep's copy and replay sessions included.
    pair.provider.execute(&format!(
        "alter database postgres set datestyle = 'SQL, DMY'; \
         alter database postgres set extra_float_digits = 0; \
         alter database postgres set intervalstyle = 'sql_standard'; \
         alter database postgres set bytea_output = 'escape'; \
         alter database postgres set timezone = 'Pacific/Chatham'; \
         alter database postgres set lc_monetary = '{monetary}'"
    ));
    pair.subscriber.execute(&format!(
        "alter database postgres set datestyle = 'Postgres, MDY'; \
         alter database postgres set extra_float_digits = -2; \
         alter database postgres set intervalstyle = 'iso_8601'; \
         alter database postgres set bytea_output = 'escape'; \
         alter database postgres set timezone = 'America/St_Johns'; \
         alter database postgres set lc_monetary = '{monetary}'"
    ));
    // Rows for the initial copy.
    for id in 1..=3 {
        pair.provider.execute(&insert_vals(id));
    }
    pair.ok(&["provider", "add", "vals"]);
    pair.ok(&["subscriber", "add", "vals"]);
    let mut replay = pair.start_replay();
    wait_same_rows(&pair, &[("vals", "id")]);

    // Writers with each odd setting: inserts, updates and deletes.
    let sessions = [
        "set datestyle = 'SQL, DMY'".to_string(),
        "set datestyle = 'German'".to_string(),
        "set datestyle = 'Postgres, DMY'; set timezone = 'Asia/Kathmandu'".to_string(),
        "set intervalstyle = 'sql_standard'".to_string(),
        "set intervalstyle = 'iso_8601'".to_string(),
        "set extra_float_digits = 0".to_string(),
        "set extra_float_digits = -3".to_string(),
        "set bytea_output = 'escape'".to_string(),
        "set timezone = 'America/St_Johns'".to_string(),
        format!("set lc_monetary = '{monetary}'"),
        format!(
            "set datestyle = 'German'; set intervalstyle = 'postgres_verbose'; \
             set extra_float_digits = 0; set bytea_output = 'escape'; \
             set lc_monetary = '{monetary}'"
        ),
    ];
    for (n, settings) in sessions.iter().enumerate() {
        let id = 100 * (n as i32 + 1);
        let mut client = pair.provider.connect("postgres");
        let sql = format!(
            "{settings}; {}; {}; \
             update vals set d = d + 1, iv = iv * 2, f8 = f8 * 3, m = m * 2, \
                    b = b || '\\x01'::bytea, ts = ts + iv where id = {id}; \
             update vals set f4 = f4 / 7 where id = 1; \
             delete from vals where id = {id} + 1",
            insert_vals(id),
            insert_vals(id + 1)
        );
        if let Err(e) = client.batch_execute(&sql) {
            panic!("{settings}: {}", error_chain(&e));
        }
    }
    wait_same_rows(&pair, &[("vals", "id")]);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
    // What the provider holds is what was written: the settings changed no value there
    // either (the capture trigger left each session's settings as they were).
    assert_eq!(
        pair.provider.value(
            "postgres",
            &format!("{FIXED}; select d::text || ' ' || f8::text from vals where id = 1")
        ),
        Some("2024-02-02 1.3".to_string())
    );
}

#[test]
fn generated_identity_and_comma_key_columns_replicate() {
    let schema = "create table gen (id int primary key, a int, \
                      twice int generated always as (a * 2) stored); \
                  create table ident (id int primary key, \
                      n bigint generated always as identity (start with 7), v text); \
                  create table \"odd keys\" (\"k,1\" int, \"k 2\" text, v text, \
                      primary key (\"k,1\", \"k 2\"));";
    let pair = Pair::new(schema);
    // The subscriber's identity counts from elsewhere: only the provider's values count.
    pair.subscriber
        .execute("alter table ident alter column n restart with 1000");
    pair.provider.execute(
        "insert into gen (id, a) values (1, 1), (2, 2); \
         insert into ident (id, v) values (1, 'one'), (2, 'two'); \
         insert into \"odd keys\" values (1, 'a', 'x'), (2, 'b', 'y');",
    );
    pair.ok(&["provider", "add", "gen", "ident", "\"odd keys\""]);
    pair.ok(&["subscriber", "add", "gen", "ident", "\"odd keys\""]);
    let mut replay = pair.start_replay();
    let tables = [
        ("gen", "id"),
        ("ident", "id"),
        ("\"odd keys\"", "\"k,1\", \"k 2\""),
    ];
    wait_same_rows(&pair, &tables);
    pair.provider.execute(
        "insert into gen (id, a) values (3, 3); update gen set a = 10 where id = 1; \
         delete from gen where id = 2; \
         insert into ident (id, v) values (3, 'three'); update ident set v = 'uno' where id = 1; \
         update ident set n = default, v = 'dos' where id = 2; delete from ident where id = 3; \
         insert into \"odd keys\" values (3, 'c', 'z'); \
         update \"odd keys\" set v = 'w' where \"k,1\" = 1; \
         delete from \"odd keys\" where \"k,1\" = 2;",
    );
    pair.provider
        .execute("update ident set v = v || '!'; update ident set n = default where id = 1");
    wait_same_rows(&pair, &tables);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn alter_table_outside_execute_keeps_writes_working_and_events_whole() {
    let pair = Pair::new("create table app (id int primary key, a text, b text, c int)");
    pair.provider
        .execute("insert into app select g, 'a' || g, 'b' || g, g from generate_series(1, 50) g");
    pair.ok(&["provider", "add", "app"]);
    pair.ok(&["subscriber", "add", "app"]);
    let mut replay = pair.start_replay();
    wait_same_rows(&pair, &[("app", "id")]);

    // The application writes all along, in its own sessions (statements that name only the
    // columns that stay), and must never fail.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut client = pair.provider.connect("postgres");
        let stop_writing = stop_writing.clone();
        std::thread::spawn(move || {
            let mut id = 1000;
            let mut written = 0;
            while !stop_writing.load(Ordering::Relaxed) {
                id += 1;
                let sql = format!(
                    "insert into app (id, a, c) values ({id}, 'w{id}', {id}); \
                     update app set a = a || '+', c = c + 1 where id = {id} - 7 or id = {}; \
                     delete from app where id = {id} - 5",
                    id % 50 + 1
                );
                if let Err(e) = client.batch_execute(&sql) {
                    return Err(format!("write {written} failed: {}", error_chain(&e)));
                }
                written += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(written)
        })
    };
    let pause = || std::thread::sleep(Duration::from_millis(300));
    pause();
    // A column dropped: on the provider first, then here once replay is past the events
    // that still carry it.
    pair.provider.execute("alter table app drop column b");
    pause();
    let last = pair
        .provider
        .value("postgres", "select max(id) from app")
        .unwrap();
    crate::util::wait_until(WAIT, "replay is past the drop", || {
        pair.subscriber
            .value(
                "postgres",
                &format!("select count(*) from app where id >= {last}"),
            )
            .as_deref()
            != Some("0")
    });
    pair.subscriber.execute("alter table app drop column b");
    // A column added: here first, then on the provider, where it gets values.
    pair.subscriber.execute("alter table app add column d text");
    pause();
    pair.provider.execute(
        "alter table app add column d text; update app set d = 'd' || id where id % 3 = 0",
    );
    pause();
    // A column retyped, and one renamed, on both sides.
    pair.subscriber
        .execute("alter table app alter column c type bigint");
    pair.provider
        .execute("alter table app alter column c type bigint; update app set c = c * 3000000000");
    pause();
    stop_writing.store(true, Ordering::Relaxed);
    let written = writer.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
    assert!(written > 10, "only {written} writes");
    wait_same_rows(&pair, &[("app", "id")]);

    // Refreshed, the generated function takes the fast path again, with the new columns.
    pair.ok(&["provider", "refresh-trigger", "app"]);
    pair.provider
        .execute("update app set d = 'e' || id, c = c + 1 where id % 2 = 0");
    wait_same_rows(&pair, &[("app", "id")]);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn settings_stay_fixed_after_an_execute_script() {
    let pair = Pair::new("create table m (id int primary key, amount money, d date);");
    let monetary = if has_locale(&pair.subscriber, "de_DE.utf8") {
        "de_DE.utf8"
    } else {
        eprintln!("locale de_DE.utf8 is missing (tests/run.sh makes it): test skipped");
        return;
    };
    // The subscriber's own defaults would read the provider's values differently.
    pair.subscriber.execute(&format!(
        "alter database postgres set lc_monetary = '{monetary}'; \
         alter database postgres set datestyle = 'SQL, DMY'"
    ));
    pair.ok(&["provider", "add", "m"]);
    pair.ok(&["subscriber", "add", "m"]);
    let mut replay = pair.start_replay();
    wait_same_rows(&pair, &[("m", "id")]);
    let script = pair
        .dir
        .write("note.sql", "alter table m add column note text;");
    pair.ok(&["provider", "execute", script.to_str().unwrap()]);
    // Batches after the script's are read in the fixed settings too.
    for id in 1..=3 {
        pair.provider.execute(&format!(
            "insert into m values ({id}, 1234.56 * {id}, date '2024-02-0{id}', 'n')"
        ));
        std::thread::sleep(Duration::from_millis(600));
    }
    wait_same_rows(&pair, &[("m", "id")]);
    stop(&mut replay, libc::SIGINT);
}
