//! Odd identifiers and every common column type, replicated exactly through the copy and
//! through events: quotes, spaces, capitals, unicode and reserved words in schema, table and
//! column names; a composite key that is updated; NULLs, escapes, float specials, big
//! numerics, time zones, enums, domains, ranges, xml, geometry and a 5 MB TOASTed value.

use crate::replay::{Pair, stop};
use std::time::Duration;

use crate::util::{skyrep, wait_until};

const TABLE: &str = r#""Odd Schema ☺"."Tab ""Le"" Ünï""#;
const KEY: &str = r#""Id", "select""#;

const SCHEMA: &str = r#"
create schema "Odd Schema ☺";
create type "Mood ""x""" as enum ('sad', 'ok', 'happy ''very'' ☺');
create domain posint as int check (value > 0);
create table "Odd Schema ☺"."Tab ""Le"" Ünï" (
    "Id" int, "select" text, "a b" int, "Ünï ""q""" text,
    txt text, b bytea, arr int[], tarr text[], j json, jb jsonb, n numeric, f float8,
    r real, d date, ts timestamp, tstz timestamptz, tm time, tmtz timetz, iv interval,
    u uuid, ip inet, net cidr, mac macaddr, mood "Mood ""x""", dom posint, rng int4range,
    tsr tstzrange, x xml, pt point, bx box, bits bit varying(16), big text,
    primary key ("Id", "select")
);"#;

/// Rows `from..=to` of nasty values: row `g % 13 == 0` is all NULL but the key.
fn rows(from: i32, to: i32) -> String {
    format!(
        r#"insert into {TABLE}
           select g, 'k&=%+ ' || g || E'\n\t\\''"',
             case when g % 13 <> 0 then g end,
             case when g % 13 <> 0 then 'ü ☺ 日本 ' || g end,
             case when g % 13 <> 0 then E'line\nbreak\ttab \\ back ''quote'' "dq" & = % + ' || g end,
             case when g % 13 <> 0 then decode('00ff5c27' || lpad(to_hex(g), 8, '0'), 'hex') end,
             case when g % 13 <> 0 then array[g, null, -g] end,
             case when g % 13 <> 0 then array['a"b', null, E'c\\d', 'e,f', '{{}}', 'NULL'] end,
             case when g % 13 <> 0 then ('{{"s": "\u00fc\\n", "g": ' || g || '}}')::json end,
             case when g % 13 <> 0 then jsonb_build_object('k', g, 'nested', jsonb_build_array(1, 'x', null)) end,
             case when g % 13 <> 0 then 123456789012345678901234567890.123456789012345678901234567890 * g end,
             case when g % 13 <> 0 then (array['NaN', 'Infinity', '-Infinity', '-0', '1e-300', '0.1'])[g % 6 + 1]::float8 end,
             case when g % 13 <> 0 then 3.4e38::real / g end,
             case when g % 13 <> 0 then (array['infinity', '-infinity', '2024-02-29', '0001-01-01 BC'])[g % 4 + 1]::date end,
             case when g % 13 <> 0 then timestamp '2024-03-31 02:30:00.123456' + g * interval '1 day' end,
             case when g % 13 <> 0 then timestamptz '2024-10-27 01:30:00+02' + g * interval '37 minutes' end,
             case when g % 13 <> 0 then time '23:59:59.999999' end,
             case when g % 13 <> 0 then timetz '12:00:00-03:30' end,
             case when g % 13 <> 0 then interval '1 year 2 mons -3 days 04:05:06.7' * g end,
             case when g % 13 <> 0 then md5(g::text)::uuid end,
             case when g % 13 <> 0 then ('2001:db8::' || to_hex(g))::inet end,
             case when g % 13 <> 0 then '10.0.0.0/8'::cidr end,
             case when g % 13 <> 0 then '08:00:2b:01:02:03'::macaddr end,
             case when g % 13 <> 0 then (array['sad', 'ok', 'happy ''very'' ☺'])[g % 3 + 1]::"Mood ""x""" end,
             case when g % 13 <> 0 then g end,
             case when g % 13 <> 0 then int4range(g, g + 10, '(]') end,
             case when g % 13 <> 0 then tstzrange('2024-01-01', null) end,
             case when g % 13 <> 0 then xmlparse(content '<a x="1">t &amp; ü</a>') end,
             case when g % 13 <> 0 then point(g, -g) end,
             case when g % 13 <> 0 then box(point(0, 0), point(g, g)) end,
             case when g % 13 <> 0 then (g::bit(16))::bit varying(16) end,
             null
           from generate_series({from}, {to}) g"#
    )
}

#[test]
fn odd_names_and_every_type_replicate_exactly_through_copy_and_events() {
    let pair = Pair::new(SCHEMA);
    pair.provider.execute(&rows(1, 60));
    pair.ok(&["provider", "add", TABLE]);
    pair.ok(&["subscriber", "add", TABLE]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[(TABLE, KEY)]);

    // The same values as events, then updates (also of the key) and deletes.
    pair.provider.execute(&rows(61, 120));
    pair.provider.execute(&format!(
        r#" update {TABLE} set txt = txt || ' changed', jb = jb || '{{"u": true}}', f = 'NaN'
            where "Id" % 4 = 0;
           update {TABLE} set "Id" = "Id" + 1000, "select" = "select" || ' moved' where "Id" % 10 = 1;
           update {TABLE} set "a b" = null, arr = '{{}}', tarr = '{{}}' where "Id" % 9 = 2;
           delete from {TABLE} where "Id" % 7 = 3;"#
    ));
    // A 5 MB value, then an update of another column of that row (the value stays TOASTed).
    pair.provider.execute(&format!(
        r#"update {TABLE} set big = (select string_agg(md5(g::text), '') from generate_series(1, 160000) g)
           where "Id" = 5;"#
    ));
    pair.provider
        .execute(&format!(r#"update {TABLE} set "a b" = -5 where "Id" = 5"#));
    pair.wait_equal(&[(TABLE, KEY)]);
    let size = pair.subscriber.query_strings(
        "postgres",
        &format!(r#"select length(big), "a b" from {TABLE} where "Id" = 5"#),
    );
    let on_provider = pair.provider.query_strings(
        "postgres",
        &format!(r#"select length(big), "a b" from {TABLE} where "Id" = 5"#),
    );
    assert_eq!(size, on_provider);
    assert_eq!(
        size,
        [[Some("5120000".to_string()), Some("-5".to_string())]]
    );
    let out = skyrep()
        .arg(&pair.conf)
        .args(["compare", TABLE])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn hostile_names_conditions_and_events_run_nothing_but_what_they_mean() {
    let pair = Pair::new(
        "create table ledger (id int primary key, note text); create table canary (id int);",
    );
    let canary_alive = || {
        for cluster in [&pair.provider, &pair.subscriber] {
            let found =
                cluster.query_strings("postgres", "select to_regclass('canary') is not null");
            assert_eq!(found, [[Some("t".to_string())]], "canary was dropped");
        }
    };
    let (code, err) = pair.fails(&["provider", "add", "ledger; drop table canary"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    canary_alive();
    pair.ok(&["provider", "add", "ledger"]);
    for (option, error) in [
        (
            "--copy-condition=true); drop table canary; --",
            "one SQL expression only",
        ),
        (
            "--copy-condition=id > 0; drop table canary",
            "one SQL expression only",
        ),
        (
            "--dest-table=canary\"; drop table canary; --",
            "bad table name",
        ),
        (
            "--dest-table=\"canary; drop table canary\"",
            "does not exist",
        ),
    ] {
        let (code, err) = pair.fails(&["subscriber", "add", "ledger", option]);
        assert!(matches!(code, Some(1 | 2)), "{option}: {err}");
        assert!(err.contains(error), "{option}: {err}");
        canary_alive();
    }
    assert!(pair.states().is_empty());

    // Crafted events: a column name that is SQL, and a table name that is SQL.
    pair.ok(&["subscriber", "add", "ledger", "--expect-sync"]);
    let mut replay = pair.start_replay();
    pair.provider.execute(
        "select pgq.insert_event('login', 'I:id', 'id=1&note=x', 'public.ledger\"; drop table canary; --', null, null, null); \
         select pgq.insert_event('login', 'I:id', 'id=2&note=y&%22%29%3B+drop+table+canary%3B+--=1', 'public.ledger', null, null, null);",
    );
    wait_until(
        Duration::from_secs(120),
        "replay refuses the crafted column",
        || pair.replay_log().contains("drop table canary; --`"),
    );
    canary_alive();
    let rows = pair
        .subscriber
        .query_strings("postgres", "select count(*) from ledger");
    assert_eq!(rows, [[Some("0".to_string())]]);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn the_password_shows_nowhere() {
    const SECRET: &str = "S3cret-Pw-7f3a";
    let cluster = crate::cluster::Cluster::builder().password_auth().start();
    cluster.execute(&format!("create role app login password '{SECRET}'"));
    for db in ["shop", "shop2"] {
        cluster.execute(&format!("create database {db} owner app"));
        cluster.query_strings(
            db,
            "create table ledger (id int primary key, note text); alter table ledger owner to app",
        );
    }
    let dir = crate::util::TempDir::new("secret");
    let conn = |db: &str| {
        format!(
            "host=127.0.0.1 port={} dbname={db} user=app password={SECRET}",
            cluster.port()
        )
    };
    let conf = dir.write(
        "shop.ini",
        &format!(
            "[skyrep]\njob_name = shop\nprovider_db = {}\nsubscriber_db = {}\n\
             pgq_queue_name = shop\nlogfile = {}\n",
            conn("shop"),
            conn("shop2"),
            dir.path().join("shop.log").display()
        ),
    );
    let run = |args: &[&str]| {
        let out = skyrep().arg(&conf).args(args).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    let mut seen = String::new();
    for args in [
        &["provider", "install"][..],
        &["subscriber", "install"],
        &["provider", "add", "ledger"],
        &["subscriber", "add", "ledger"],
        &["check"],
    ] {
        seen += &run(args);
    }
    let mut replay = skyrep()
        .arg(&conf)
        .arg("replay")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cluster.query_strings("shop", "insert into ledger values (1, 'one')");
    wait_until(Duration::from_secs(120), "the row is replicated", || {
        cluster.query_strings("shop2", "select count(*) from ledger") == [[Some("1".to_string())]]
    });
    seen += &run(&["status"]);
    seen += &run(&["status", "--json"]);
    seen += &run(&["compare"]);
    // Every thread of the daemon, as `ps` shows it.
    for task in std::fs::read_dir(format!("/proc/{}/task", replay.id())).unwrap() {
        let task = task.unwrap().path();
        seen += &std::fs::read_to_string(task.join("cmdline")).unwrap_or_default();
        seen += &std::fs::read_to_string(task.join("comm")).unwrap_or_default();
    }
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut replay.stderr.take().unwrap(), &mut stderr).unwrap();
    seen += &stderr;
    seen += &std::fs::read_to_string(dir.path().join("shop.log")).unwrap();
    assert!(seen.contains("user=app"), "{seen}");
    assert!(!seen.contains(SECRET), "{seen}");
}
