//! Tests of applying row events on the subscriber: real events from PgQ's own `logutriga`
//! replayed into an identical table of another database must leave both tables equal; and
//! hand-written events for group semantics and errors.

use std::time::{Duration, Instant};

use postgres::Client;
use skyrep::base::names::TableName;
use skyrep::replay::apply::{Applier, Decoded, decode};

use crate::cluster::Cluster;
use crate::util::error_chain;

/// Whether Debian's PgQ 3 extension is installed. Outside CI a missing package skips the test
/// with a note; in CI (where tests/run.sh installs it) it fails.
fn real_pgq_available(cluster: &Cluster) -> bool {
    let available = !cluster
        .query_strings(
            "postgres",
            "select 1 from pg_available_extensions where name = 'pgq'",
        )
        .is_empty();
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have PgQ 3 installed (tests/run.sh does)"
        );
        eprintln!("PgQ 3 extension not installed: test skipped (tests/run.sh installs it as root)");
    }
    available
}

/// One queued event: `ev_type`, `ev_data`, `ev_extra1`.
type Event = (String, Option<String>, String);

/// A database `src` whose tables are captured by PgQ's `logutriga` into queue `q`, and a
/// database `dst` with the same tables, filled only by an [`Applier`].
struct Replica {
    _cluster: Cluster,
    src: Client,
    dst: Client,
    applier: Applier,
    last_event: i64,
}

impl Replica {
    /// Runs `ddl` in both databases and captures `tables` (quoted names) in `src`; `None`
    /// when PgQ is not installed.
    fn start(ddl: &str, tables: &[&str]) -> Option<Replica> {
        let cluster = Cluster::start();
        if !real_pgq_available(&cluster) {
            return None;
        }
        cluster.create_database("src");
        cluster.create_database("dst");
        let mut src = cluster.connect("src");
        let mut dst = cluster.connect("dst");
        run(
            &mut src,
            "create extension pgq; select pgq.create_queue('q')",
        );
        run(&mut src, ddl);
        run(&mut dst, ddl);
        for table in tables {
            run(
                &mut src,
                &format!(
                    "create trigger capture after insert or update or delete on {table} \
                     for each row execute function pgq.logutriga('q');
                     create trigger capture_truncate after truncate on {table} \
                     for each statement execute function pgq.logutriga('q')"
                ),
            );
        }
        Some(Replica {
            _cluster: cluster,
            src,
            dst,
            applier: Applier::new(),
            last_event: 0,
        })
    }

    /// The events queued since the last call, in order.
    fn take_events(&mut self) -> Vec<Event> {
        let rows = self
            .src
            .query(
                "select ev_id, ev_type, ev_data, ev_extra1 from pgq.event_1 \
                 where ev_id > $1 order by ev_id",
                &[&self.last_event],
            )
            .unwrap_or_else(|e| panic!("reading events failed: {}", error_chain(&e)));
        if let Some(last) = rows.last() {
            self.last_event = last.get(0);
        }
        rows.iter()
            .map(|row| (row.get(1), row.get(2), row.get(3)))
            .collect()
    }

    /// Applies the new events in one transaction on `dst`; returns how many and how long it
    /// took (decoding, applying and committing).
    fn replay(&mut self) -> (usize, Duration) {
        let events = self.take_events();
        let started = Instant::now();
        let n = events.len();
        if let Err(e) = apply(&mut self.dst, &mut self.applier, events) {
            panic!("replaying failed: {e}");
        }
        (n, started.elapsed())
    }

    /// Asserts that `table` has the same rows in both databases; returns how many.
    fn assert_same(&mut self, table: &str) -> i64 {
        let sql = format!(
            "select count(*), md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) \
             from {table} t"
        );
        let fingerprint = |client: &mut Client| -> (i64, String) {
            let row = client
                .query_one(&sql, &[])
                .unwrap_or_else(|e| panic!("{sql}\nfailed: {}", error_chain(&e)));
            (row.get(0), row.get(1))
        };
        let (src, dst) = (fingerprint(&mut self.src), fingerprint(&mut self.dst));
        if src != dst {
            let rows_sql = format!("select left(t::text, 300) from {table} t order by t::text");
            let rows = |client: &mut Client| -> Vec<String> {
                client
                    .query(&rows_sql, &[])
                    .unwrap()
                    .iter()
                    .map(|r| r.get(0))
                    .collect()
            };
            let (a, b) = (rows(&mut self.src), rows(&mut self.dst));
            let only_src: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
            let only_dst: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
            panic!(
                "{table} differs: {} rows on src, {} on dst\nonly on src: {only_src:#?}\n\
                 only on dst: {only_dst:#?}",
                src.0, dst.0
            );
        }
        src.0
    }
}

fn run(client: &mut Client, sql: &str) {
    if let Err(e) = client.batch_execute(sql) {
        panic!("{sql}\nfailed: {}", error_chain(&e));
    }
}

/// Applies `events` in one transaction and commits; on error rolls back and returns the
/// error's whole chain.
fn apply(client: &mut Client, applier: &mut Applier, events: Vec<Event>) -> Result<(), String> {
    let mut tx = client.transaction().map_err(|e| error_chain(&e))?;
    let result = (|| {
        for (id, (ev_type, ev_data, extra1)) in (1..).zip(events) {
            let dest = TableName::from_qualified(&extra1)?;
            match decode(&ev_type, ev_data.as_deref())? {
                Decoded::Row(event) => applier.push(&mut tx, &dest, event, id)?,
                Decoded::Truncate => applier.truncate(&mut tx, &dest)?,
                Decoded::Other => panic!("unexpected event type {ev_type}"),
            }
        }
        applier.flush(&mut tx)
    })();
    match result {
        Ok(()) => tx.commit().map_err(|e| error_chain(&e)),
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Hand-written events for `public.t`: (`ev_type`, `ev_data`).
fn events(list: &[(&str, &str)]) -> Vec<Event> {
    list.iter()
        .map(|(t, d)| (t.to_string(), Some(d.to_string()), "public.t".to_string()))
        .collect()
}

fn rows(client: &mut Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {}", error_chain(&e)))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

const ODD: &str = r#""Odd ""Schema"" ü"."Table ""T"" Ä""#;

const ODD_DDL: &str = r#"
    create schema "Odd ""Schema"" ü";
    create type "Odd ""Schema"" ü"."Mood" as enum ('sad', 'ok', 'happy ''yes''');
    create domain "Odd ""Schema"" ü".positive as integer check (value > 0);
    create domain "Odd ""Schema"" ü".short_text as varchar(10) check (value <> 'bad');
    create table "Odd ""Schema"" ü"."Table ""T"" Ä" (
        "Key A" integer,
        "Key ""b"" ü" text,
        seq bigint generated by default as identity,
        i integer,
        big bigint,
        num numeric(30,10),
        f float8,
        t text,
        b bytea,
        ia integer[],
        ta text[],
        j json,
        jb jsonb,
        ts timestamp,
        tstz timestamptz,
        d date,
        iv interval,
        u uuid,
        ok boolean,
        mood "Odd ""Schema"" ü"."Mood",
        pos "Odd ""Schema"" ü".positive,
        short "Odd ""Schema"" ü".short_text,
        ip inet,
        ch char(5),
        nums numeric(5,2)[],
        "Mixed Case" text,
        "a&b=c+d%e ""q""" text,
        primary key ("Key A", "Key ""b"" ü")
    );
    create table plain (id integer primary key, v text default 'dflt');
"#;

/// A row of every type with awkward values, for key (`a`, `b`).
fn odd_insert(a: i32, b: &str) -> String {
    format!(
        r#"insert into {ODD} ("Key A", "Key ""b"" ü", i, big, num, f, t, b, ia, ta, j, jb, ts,
                             tstz, d, iv, u, ok, mood, pos, short, ip, ch, nums, "Mixed Case",
                             "a&b=c+d%e ""q""")
           values ({a}, '{b}', -2147483648, 9223372036854775807,
                   '-12345678901234567890.0123456789', -0.0,
                   E'line1\nline2\ttab ''single'' "double" \\back %25 & = + ü€😀 \r',
                   '\x00ff10', '{{1,NULL,-3}}', '{{"a\"b",NULL,"NULL","",",","{{}}"}}',
                   '{{"k": [1, 2.50, "x"], "k": null}}', '{{"z": 1, "a": [true, null]}}',
                   '2024-02-29 23:59:59.999999', '1999-12-31 23:59:59.5+05:30', '0001-01-01',
                   '1 year 2 mons -3 days 04:05:06.789', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
                   true, 'happy ''yes''', 7, 'short', '2001:db8::1/64', 'ab', '{{1.5,NULL}}',
                   'Mixed', '&=+%')"#
    )
}

#[test]
fn every_type_and_odd_names_replay_exactly() {
    let Some(mut r) = Replica::start(ODD_DDL, &[ODD, "plain"]) else {
        return;
    };
    // The provider's session settings must not matter: timestamptz carries its offset.
    run(&mut r.src, "set timezone = 'America/New_York'");
    run(&mut r.dst, "set timezone = 'Asia/Kathmandu'");

    run(&mut r.src, &odd_insert(1, "one"));
    // NULL in every nullable column.
    run(
        &mut r.src,
        &format!(r#"insert into {ODD} ("Key A", "Key ""b"" ü") values (2, '')"#),
    );
    // Special floats, each in a row of its own.
    for (k, f) in [
        (3, "NaN"),
        (4, "Infinity"),
        (5, "-Infinity"),
        (6, "-0"),
        (7, "1e-300"),
    ] {
        run(
            &mut r.src,
            &format!(r#"insert into {ODD} ("Key A", "Key ""b"" ü", f) values ({k}, 'f', '{f}')"#),
        );
    }
    // A TOASTed value of 5 MB with characters that need escaping.
    run(
        &mut r.src,
        &format!(
            r#"insert into {ODD} ("Key A", "Key ""b"" ü", t)
               select 8, 'toast', string_agg(md5(i::text) ||
                   case when i % 7 = 0 then E'\n&=%+ ü' else '' end, '')
               from generate_series(1, 160000) i"#
        ),
    );
    // Two updates of one row: set values, then back to NULL, then values again.
    run(
        &mut r.src,
        &format!(
            r#"update {ODD} set t = 'second', ia = '{{}}', mood = 'sad', f = 'NaN'
               where "Key A" = 1;
               update {ODD} set t = null, ia = null, mood = null where "Key A" = 1;
               update {ODD} set t = '', num = 0.5, ta = '{{NULL}}' where "Key A" = 1"#
        ),
    );
    // Insert, update, update, delete, insert of one key in one batch.
    run(
        &mut r.src,
        &format!(
            r#"insert into {ODD} ("Key A", "Key ""b"" ü", t) values (10, 'k', 'first');
               update {ODD} set t = 'second' where "Key A" = 10;
               update {ODD} set t = 'third', i = 3 where "Key A" = 10;
               delete from {ODD} where "Key A" = 10;
               {};
               update {ODD} set t = t || '!' where "Key A" = 10"#,
            odd_insert(10, "k")
        ),
    );
    // Another table in between, with a column left to its default.
    run(
        &mut r.src,
        "insert into plain (id) values (1); insert into plain values (2, null), (3, 'x')",
    );
    run(
        &mut r.src,
        &format!(r#"update {ODD} set big = big - 1 where "Key A" in (2, 3)"#),
    );
    let (n, _) = r.replay();
    assert_eq!(n, 22);
    assert_eq!(r.assert_same(ODD), 9);
    assert_eq!(r.assert_same("plain"), 3);
    assert_eq!(r.applier.counts(), (13, 8, 1));

    // A second batch with a TRUNCATE in the middle, through the same cached statements.
    run(
        &mut r.src,
        &format!(
            r#"delete from {ODD} where "Key A" = 2;
               insert into {ODD} ("Key A", "Key ""b"" ü", t) values (11, 'gone', 'x');
               update plain set v = 'y' where id = 1;
               truncate {ODD};
               {};
               update {ODD} set "Mixed Case" = null where "Key A" = 1;
               insert into {ODD} ("Key A", "Key ""b"" ü", t) values (12, 'after', 'z');
               delete from plain where id = 3"#,
            odd_insert(1, "one")
        ),
    );
    let (n, _) = r.replay();
    assert_eq!(n, 8);
    assert_eq!(r.assert_same(ODD), 2);
    assert_eq!(r.assert_same("plain"), 2);
    assert_eq!(
        rows(
            &mut r.dst,
            &format!(r#"select "Key A"::text from {ODD} order by 1"#)
        ),
        ["1", "12"]
    );
}

#[test]
fn large_groups_apply_fast() {
    let ddl = "create table big (id integer primary key, g integer, v text, n numeric,
                                 at timestamptz default now())";
    let Some(mut r) = Replica::start(ddl, &["big"]) else {
        return;
    };
    let rate = |(n, took): (usize, Duration)| n as f64 / took.as_secs_f64();

    run(
        &mut r.src,
        "insert into big (id, g, v, n) select i, i % 10, 'row ' || i, i * 1.5 \
         from generate_series(1, 20000) i",
    );
    let inserts = r.replay();
    assert_eq!(inserts.0, 20000);
    assert_eq!(r.assert_same("big"), 20000);

    run(&mut r.src, "update big set v = v || ' changed', n = -n");
    let updates = r.replay();
    assert_eq!(updates.0, 20000);
    r.assert_same("big");

    // Repeated updates of the same keys inside one group keep the last one.
    run(
        &mut r.src,
        "update big set g = g + 1 where id <= 3000; update big set g = g * 2 where id <= 3000;
         update big set v = 'last' where id <= 3000",
    );
    r.replay();
    r.assert_same("big");

    run(&mut r.src, "delete from big");
    let deletes = r.replay();
    assert_eq!(deletes.0, 20000);
    assert_eq!(r.assert_same("big"), 0);
    assert_eq!(r.applier.counts(), (20000, 29000, 20000));

    eprintln!(
        "applied 20000 inserts at {:.0} rows/s, 20000 updates at {:.0} rows/s, \
         20000 deletes at {:.0} rows/s",
        rate(inserts),
        rate(updates),
        rate(deletes)
    );
}

/// A database with table `public.t` and an applier for it.
fn hand_written(ddl: &str) -> (Cluster, Client, Applier) {
    let cluster = Cluster::start();
    let mut client = cluster.connect("postgres");
    run(&mut client, ddl);
    (cluster, client, Applier::new())
}

#[test]
fn groups_keep_the_order_of_events() {
    let (_cluster, mut client, mut applier) = hand_written(
        "create table t (id integer generated always as identity primary key,
                             v text default 'dflt', w integer,
                             g integer generated always as (w * 2) stored)",
    );
    apply(
        &mut client,
        &mut applier,
        events(&[
            ("I:id", "id=1&v=a&w=1"),
            ("I:id", "id=2&w=2&g=1"),
            ("I:id", "id=3&v&w"),
            ("U:id", "id=1&v=b&w=1"),
            ("U:id", "id=1&v=c&w=10"),
            ("U:id", "id=2&v=d&w=2"),
            ("U:id", "id=1&v=e&w=11"),
            // Only key columns: nothing to set.
            ("U:id", "id=3"),
            // Columns left out are left alone.
            ("U:id", "id=2&w=20&g=1"),
            ("D:id", "id=1&v=e&w=11"),
            ("I:id", "id=1&v=again&w"),
        ]),
    )
    .unwrap();
    assert_eq!(
        rows(&mut client, "select t::text from t order by id"),
        ["(1,again,,)", "(2,d,20,40)", "(3,,,)"]
    );
    assert_eq!(applier.counts(), (4, 6, 1));
    // A row to update or delete that is not here is an error, not a change skipped.
    for (op, data) in [("U:id", "id=9&v=nothing+here"), ("D:id", "id=8")] {
        let err = apply(&mut client, &mut applier, events(&[(op, data)])).unwrap_err();
        assert!(err.contains("found no row here"), "{op} {data}: {err}");
    }

    // TRUNCATE applies what is pending first.
    let mut tx = client.transaction().unwrap();
    let t = TableName::parse("t").unwrap();
    let Decoded::Row(event) = decode("I:id", Some("id=5")).unwrap() else {
        panic!("not a row event");
    };
    applier.push(&mut tx, &t, event.clone(), 1).unwrap();
    applier.truncate(&mut tx, &t).unwrap();
    applier.push(&mut tx, &t, event, 2).unwrap();
    applier.flush(&mut tx).unwrap();
    tx.commit().unwrap();
    assert_eq!(rows(&mut client, "select t::text from t"), ["(5,dflt,,)"]);

    // After DDL, reset() picks up the new column.
    run(&mut client, "alter table t add column x text");
    applier.reset();
    apply(
        &mut client,
        &mut applier,
        events(&[("U:id", "id=5&v=new&w=5&x=%78")]),
    )
    .unwrap();
    assert_eq!(
        rows(&mut client, "select t::text from t"),
        ["(5,new,5,10,x)"]
    );
}

#[test]
fn errors_name_the_problem() {
    let (_cluster, mut client, mut applier) = hand_written(
        "create table t (id integer primary key, v varchar(3));
         create table nopk (id integer, v text);
         create table ck (a integer, b integer, v text, primary key (a, b));",
    );
    let mut fails = |table: &str, ev_type: &str, ev_data: &str| -> String {
        let event = (ev_type.into(), Some(ev_data.into()), table.into());
        apply(&mut client, &mut applier, vec![event]).expect_err("must fail")
    };
    let err = fails("public.t", "I:id", "id=1&v=a&w=2");
    assert!(
        err.contains("table public.t on the subscriber has no column `w`, which the events carry"),
        "{err}"
    );
    let err = fails("public.nopk", "I:id", "id=1");
    assert!(
        err.contains("table public.nopk has no primary key on the subscriber"),
        "{err}"
    );
    let err = fails("public.ck", "U:a", "a=1&b=2&v=x");
    assert!(
        err.contains("the key of public.ck differs: events carry (a) but the subscriber's primary key is (a, b)"),
        "{err}"
    );
    let err = fails("public.ck", "D:b,a,b", "a=1&b=2");
    assert!(err.contains("events carry (b, a, b)"), "{err}");
    let err = fails("public.t", "U:id", "v=x");
    assert!(
        err.contains("update event for public.t lacks key column `id`"),
        "{err}"
    );
    let err = fails("public.missing", "I:id", "id=1");
    assert!(
        err.contains("table public.missing does not exist on the subscriber"),
        "{err}"
    );
    // A narrower column on the subscriber fails instead of truncating silently.
    let err = fails("public.t", "I:id", "id=1&v=abcd");
    assert!(
        err.contains("applying 1 inserts to public.t")
            && err.contains("value too long for type character varying(3)"),
        "{err}"
    );
    let err = fails("public.t", "I:id", "id=1&v=a&v=b");
    assert!(err.contains("carries column `v` twice"), "{err}");
    let err = fails("public.t", "I:id", "id=x");
    assert!(
        err.contains("invalid input syntax for type integer"),
        "{err}"
    );

    // A statement prepared before a failed transaction still works afterwards.
    let err = fails("public.t", "I:id", "id=1&v=abc&id=2");
    assert!(err.contains("carries column `id` twice"), "{err}");
    apply(
        &mut client,
        &mut applier,
        events(&[("I:id", "id=1&v=abc"), ("I:id", "id=2&v=abc")]),
    )
    .unwrap();
    assert_eq!(applier.counts(), (2, 0, 0));
    let err = apply(&mut client, &mut applier, events(&[("I:id", "id=1&v=abc")])).unwrap_err();
    assert!(err.contains("duplicate key value"), "{err}");
    assert_eq!(applier.counts(), (2, 0, 0));
}

#[test]
fn constraints_that_need_the_event_order_still_hold() {
    let (_cluster, mut client, mut applier) = hand_written(
        "create table parent (id integer primary key);
         create table child (id integer primary key, parent integer references parent);
         create table u (id integer primary key, email text unique);
         insert into parent values (1);
         insert into child values (1, 1);
         insert into u values (1, 'a'), (2, 'b');",
    );
    let ev = |table: &str, ev_type: &str, ev_data: &str| -> Event {
        (
            ev_type.to_string(),
            Some(ev_data.to_string()),
            format!("public.{table}"),
        )
    };
    // A child moves to a new parent before the old parent goes: deleting first, as the net
    // changes do, trips the foreign key; the events in order do not.
    apply(
        &mut client,
        &mut applier,
        vec![
            ev("parent", "I:id", "id=2"),
            ev("child", "U:id", "id=1&parent=2"),
            ev("parent", "D:id", "id=1"),
        ],
    )
    .unwrap();
    // Two rows swap a unique value by way of a third: one statement for the run of updates
    // trips the unique index, one event at a time does not.
    apply(
        &mut client,
        &mut applier,
        vec![
            ev("u", "U:id", "id=1&email=tmp"),
            ev("u", "U:id", "id=2&email=a"),
            ev("u", "U:id", "id=1&email=b"),
        ],
    )
    .unwrap();
    // Children deleted before their parent, a parent inserted before its children.
    apply(
        &mut client,
        &mut applier,
        vec![
            ev("child", "D:id", "id=1&parent=2"),
            ev("parent", "D:id", "id=2"),
            ev("parent", "I:id", "id=3"),
            ev("child", "I:id", "id=3&parent=3"),
            ev("u", "D:id", "id=2&email=a"),
            ev("child", "I:id", "id=4&parent=3"),
            ev("u", "I:id", "id=3&email=a"),
        ],
    )
    .unwrap();
    assert_eq!(
        rows(
            &mut client,
            "select string_agg(t::text, ' ' order by t::text) from (
                 select 'parent' || p from parent p union all
                 select 'child' || c from child c union all
                 select 'u' || u from u u) t(t)"
        ),
        ["child(3,3) child(4,3) parent(3) u(1,b) u(3,a)"]
    );
    assert_eq!(applier.counts(), (5, 4, 4));
}

#[test]
fn random_changes_across_foreign_keys_and_unique_columns_replay_exactly() {
    let ddl = "create table parent (id integer primary key, name text);
               create table child (id integer primary key,
                                   parent integer not null references parent, v integer);
               create table u (id integer primary key, email text unique);";
    let Some(mut r) = Replica::start(ddl, &["parent", "child", "u"]) else {
        return;
    };
    run(
        &mut r.src,
        "create sequence ids;
         select setseed(0.25);
         insert into parent select nextval('ids'), 'p' from generate_series(1, 10);
         insert into u select nextval('ids'), 'e' || currval('ids') from generate_series(1, 10);",
    );
    r.replay();
    // Each round: 25 random changes in one transaction, then one replay of them. Children move
    // between parents, parents go with their children, unique values swap between rows or
    // pass from a deleted row to a new one.
    let round = "do $$
        declare r float; p integer; c integer; a integer; b integer; ea text; eb text;
        begin
          for i in 1..25 loop
            r := random();
            if r < 0.15 then
              insert into parent values (nextval('ids'), 'p');
            elsif r < 0.35 then
              select id into p from parent order by random() limit 1;
              if p is not null then insert into child values (nextval('ids'), p, 0); end if;
            elsif r < 0.5 then
              select id into c from child order by random() limit 1;
              select id into p from parent order by random() limit 1;
              if c is not null and p is not null then
                update child set parent = p, v = v + 1 where id = c;
              end if;
            elsif r < 0.6 then
              select id into p from parent order by random() limit 1;
              delete from child where parent = p;
              delete from parent where id = p;
            elsif r < 0.75 then
              select id, email into a, ea from u order by random() limit 1;
              select id, email into b, eb from u where id <> a order by random() limit 1;
              if b is not null then
                update u set email = 'tmp' where id = a;
                update u set email = ea where id = b;
                update u set email = eb where id = a;
              end if;
            elsif r < 0.85 then
              select id, email into a, ea from u order by random() limit 1;
              delete from u where id = a;
              insert into u values (nextval('ids'), ea);
            elsif r < 0.95 then
              insert into u values (nextval('ids'), 'e' || currval('ids'));
            else
              update parent set name = name || 'x'
              where id in (select id from parent order by random() limit 3);
            end if;
          end loop;
        end $$";
    let mut events = 0;
    for _ in 0..80 {
        run(&mut r.src, round);
        events += r.replay().0;
    }
    assert!(events > 2000, "only {events} events");
    r.assert_same("parent");
    r.assert_same("child");
    r.assert_same("u");
}
