//! Tests of the capture triggers: event formats, trigger arguments, and agreement with PgQ's
//! own C triggers.
//!
//! PgQ 3 (Debian's postgresql-NN-pgq3, `create extension pgq`) is the reference: every test
//! runs the same statements against a table captured by PgQ's C trigger and against the same
//! table captured by skyrep's triggers, each in its own database of one cluster, and compares
//! the queued events field by field (ev_type, ev_data, ev_extra1..4) and the statements'
//! outcomes (errors included).
//!
//! Databases:
//! - `c`: the extension with its C triggers (the reference);
//! - `pl`: the extension with `pgq_triggers.sql` loaded over it, so pgq.logutriga,
//!   pgq.sqltriga and pgq.jsontriga are skyrep's generic PL/pgSQL versions;
//! - `gen`: the extension plus `skyrep_capture.sql`; tables get generated triggers;
//! - `bulk`: the same with the `bulk` argument added: set-based statement triggers, or the
//!   generated row trigger where set-based capture would not give the same events;
//! - `core` (one test): skyrep's own queue (`pgq_core.sql`) with both kinds of skyrep triggers.

use postgres::Client;

use crate::cluster::Cluster;
use crate::util::{error_chain, exec, strings};

const PGQ_CORE: &str = include_str!("../src/queue/sql/pgq_core.sql");
const PGQ_TRIGGERS: &str = include_str!("../src/queue/sql/pgq_triggers.sql");
const CAPTURE: &str = include_str!("../src/queue/sql/skyrep_capture.sql");

/// The queue every test writes to.
const QUEUE: &str = "q";

/// One queued event: ev_type, ev_data, ev_extra1 .. ev_extra4.
type Event = [Option<String>; 6];

/// How a database captures its tables.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Capture {
    /// `CREATE TRIGGER ... EXECUTE PROCEDURE pgq.<function>(queue, args...)`: PgQ's C
    /// function in database `c`, skyrep's generic PL/pgSQL one in database `pl`.
    Function(&'static str),
    /// `pgq.skyrep_capture_create(table, queue, trigger, args)` (logutriga format).
    Generated,
    /// The same with `bulk` added to the arguments (set-based capture).
    Bulk,
}

/// A database of the test cluster and how its tables are captured.
struct Db {
    client: Client,
    capture: Capture,
}

impl Db {
    /// Whether the table gets skyrep's generated triggers (row or set-based).
    fn generated(&self) -> bool {
        matches!(self.capture, Capture::Generated | Capture::Bulk)
    }

    /// Creates database `name` with PgQ 3 (the extension) and the queue.
    fn with_extension(cluster: &Cluster, name: &str, capture: Capture, extra_sql: &[&str]) -> Db {
        cluster.create_database(name);
        let mut client = cluster.connect(name);
        exec(&mut client, "create extension pgq");
        for sql in extra_sql {
            exec(&mut client, sql);
        }
        exec(&mut client, &format!("select pgq.create_queue('{QUEUE}')"));
        Db { client, capture }
    }

    /// Creates the capture triggers on `table` (an SQL name) with trigger arguments `args`.
    /// A row trigger `_cap` (BEFORE with SKIP, else AFTER) and a TRUNCATE trigger
    /// `_cap_truncate` that gets the queue name and `deny` if given.
    fn capture(&mut self, table: &str, args: &[&str]) {
        let sql = match self.capture {
            Capture::Function(function) => {
                let all: Vec<String> = std::iter::once(QUEUE)
                    .chain(args.iter().copied())
                    .map(literal)
                    .collect();
                let mut truncate = vec![literal(QUEUE)];
                if args.contains(&"deny") {
                    truncate.push(literal("deny"));
                }
                let timing = if args.contains(&"SKIP") {
                    "before"
                } else {
                    "after"
                };
                format!(
                    "create trigger _cap {timing} insert or update or delete on {table} \
                     for each row execute procedure pgq.{function}({}); \
                     create trigger _cap_truncate after truncate on {table} \
                     for each statement execute procedure pgq.{function}({})",
                    all.join(", "),
                    truncate.join(", ")
                )
            }
            Capture::Generated | Capture::Bulk => format!(
                "select pgq.skyrep_capture_create({}, {}, '_cap', array[{}]::text[])",
                literal(table),
                literal(QUEUE),
                args.iter()
                    .copied()
                    .chain((self.capture == Capture::Bulk).then_some("bulk"))
                    .map(literal)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        exec(&mut self.client, &sql);
    }

    /// Runs each statement on its own (autocommit); returns Ok or the error message of each.
    fn run(&mut self, statements: &[&str]) -> Vec<Result<(), String>> {
        statements
            .iter()
            .map(|sql| {
                self.client
                    .batch_execute(sql)
                    .map_err(|e| match e.as_db_error() {
                        Some(db) => db.message().to_owned(),
                        None => error_chain(&e),
                    })
            })
            .collect()
    }

    /// The queued events, oldest first.
    fn events(&mut self) -> Vec<Event> {
        let table = strings(
            &mut self.client,
            &format!("select queue_data_pfx from pgq.queue where queue_name = '{QUEUE}'"),
        )[0][0]
            .clone()
            .expect("queue_data_pfx");
        strings(
            &mut self.client,
            &format!(
                "select ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 \
                 from {table} order by ev_id"
            ),
        )
        .into_iter()
        .map(|row| row.try_into().expect("six columns"))
        .collect()
    }

    /// The rows of `sql` as text.
    fn query(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        strings(&mut self.client, sql)
    }
}

/// `value` as an SQL string literal.
fn literal(value: &str) -> String {
    if value.contains('\\') {
        format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

/// A cluster with the reference database `c` (PgQ's C `function`) and the databases of
/// skyrep's triggers to compare: `pl` (the generic PL/pgSQL `function`) and, for
/// logutriga, `gen` (generated triggers) and `bulk` (set-based capture).
fn databases(function: &'static str) -> (Cluster, Db, Vec<Db>) {
    let cluster = Cluster::start();
    let reference = Db::with_extension(&cluster, "c", Capture::Function(function), &[]);
    let mut ours = vec![Db::with_extension(
        &cluster,
        "pl",
        Capture::Function(function),
        &[PGQ_TRIGGERS],
    )];
    if function == "logutriga" {
        ours.push(Db::with_extension(
            &cluster,
            "gen",
            Capture::Generated,
            &[CAPTURE],
        ));
        ours.push(Db::with_extension(
            &cluster,
            "bulk",
            Capture::Bulk,
            &[CAPTURE],
        ));
    }
    (cluster, reference, ours)
}

/// Runs `setup`, captures `table` with `args`, runs `statements` in every database, and
/// checks that skyrep's triggers queue exactly the events PgQ's C trigger queues, and that
/// every statement succeeds or fails alike (with the same message).
fn assert_same_events(
    function: &'static str,
    setup: &str,
    table: &str,
    args: &[&str],
    statements: &[&str],
) -> Vec<Event> {
    let (_cluster, mut reference, mut ours) = databases(function);
    compare(&mut reference, &mut ours, setup, table, args, statements)
}

fn compare(
    reference: &mut Db,
    ours: &mut [Db],
    setup: &str,
    table: &str,
    args: &[&str],
    statements: &[&str],
) -> Vec<Event> {
    compare_with(reference, ours, setup, table, args, statements, statements)
}

/// Like [`compare`], with the reference running `reference_statements` (one for each of
/// `statements`) instead.
fn compare_with(
    reference: &mut Db,
    ours: &mut [Db],
    setup: &str,
    table: &str,
    args: &[&str],
    reference_statements: &[&str],
    statements: &[&str],
) -> Vec<Event> {
    exec(&mut reference.client, setup);
    reference.capture(table, args);
    let expected_outcomes = reference.run(reference_statements);
    let expected = reference.events();
    for db in ours.iter_mut() {
        exec(&mut db.client, setup);
        db.capture(table, args);
        let outcomes = db.run(statements);
        for ((sql, want), got) in statements.iter().zip(&expected_outcomes).zip(&outcomes) {
            assert_eq!(
                got, want,
                "{:?}: outcome of {sql:?} differs from PgQ's C trigger",
                db.capture
            );
        }
        let events = db.events();
        for (i, (got, want)) in events.iter().zip(&expected).enumerate() {
            assert_eq!(
                got, want,
                "{:?}: event {i} differs from PgQ's C trigger (ev_type, ev_data, ev_extra1..4)",
                db.capture
            );
        }
        assert_eq!(
            events.len(),
            expected.len(),
            "{:?}: number of events differs from PgQ's C trigger",
            db.capture
        );
    }
    expected
}

/// A table with many column types, an odd name in an odd schema, odd column names and a
/// composite primary key.
const MANY_TYPES: &str = r#"
create schema "My Schema";
create type mood as enum ('sad', 'ok', 'happy ☺');
create table "My Schema"."Odd ""Tab"" é" (
    id int,
    "Key Two" text,
    i2 smallint, i8 bigint, num numeric, f4 real, f8 double precision,
    t text, vc varchar(20), bpc char(5), "by" bytea, ia int[], ta text[],
    j json, jb jsonb, ts timestamp, tstz timestamptz, d date, tm time, tmtz timetz,
    iv interval, u uuid, b bool, m mood, ip inet, cid cidr, mac macaddr, mon money,
    pt point, x xml, "Wé ""col"" = 1&2" text, "UPPER" int,
    primary key (id, "Key Two"));
"#;

const MANY_TYPES_TABLE: &str = r#""My Schema"."Odd ""Tab"" é""#;

/// Statements over MANY_TYPES: values of every kind, NULLs, empty strings, odd characters,
/// updates (one of them changing nothing), a delete and a truncate, under several
/// DateStyle, IntervalStyle, bytea_output, extra_float_digits, lc_monetary and TimeZone
/// settings.
fn many_types_statements() -> Vec<String> {
    let table = MANY_TYPES_TABLE;
    let typical = "(1, 'a', 2, 3, 4.5, 1.5, 2.25, 'plain', 'v c', 'ab', '\\x00ff01', '{1,2,NULL}', \
         '{\"a b\",\"c,d\"}', '{\"k\": [1, 2]}', '{\"k\": [1, 2]}', '2009-09-19 11:59:48.599', \
         '2009-09-19 11:59:48.599+03', '2009-09-19', '11:59:48', '11:59:48+05:30', \
         '1 day 02:03:04', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, 'ok', '127.0.0.1', \
         '10.0.0.0/8', '08:00:2b:01:02:03', 1234.5, '(1.5,-2)', '<a b=\"c\">&amp;</a>', 'w', 7)";
    let nulls = "(2, 'b', null, null, null, null, null, null, null, null, null, null, null, null, \
         null, null, null, null, null, null, null, null, null, null, null, null, null, null, \
         null, null, null, null)";
    let empty = "(3, '', 0, 0, 0, 0, 0, '', '', '', '', '{}', '{\"\"}', '\"\"', '\"\"', \
         '2000-01-01', '2000-01-01 00:00+00', '2000-01-01', '00:00', '00:00+00', '0', \
         '00000000-0000-0000-0000-000000000000', false, 'sad', '::1', '::/0', \
         '00:00:00:00:00:00', 0, '(0,0)', '', '', 0)";
    let odd_text = "sp ace\ttab\nnl\rcr\\back\"dq'sq%&=+?#/:;@<>[]{}|^~`!$*(),é中€\u{1}\u{7f}";
    let odd = format!(
        "(4, {k}, -32768, -9223372036854775808, 'NaN', 'Infinity', '-Infinity', {t}, 'é €', \
         'x y', {by}, '{{-1,0}}', {ta}, {j}, {j}, 'infinity', '-infinity', '0044-03-15 BC', \
         '24:00', '23:59:59.999999-15:59', '-1 days +02:03:04.5', \
         'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', false, 'happy ☺', '::ffff:1.2.3.4/120', \
         '2001:db8::/32', '08:00:2b:01:02:03', -12.5, '(-1e+30,1e-30)', {x}, {t}, -1)",
        k = literal(odd_text),
        t = literal(odd_text),
        by = literal("\\x5c27225c"),
        ta = literal("{\"a\\\\b\",\"c\\\"d\",\"e f\",NULL}"),
        j = literal("{\"k\": \"v\\u0001 ☺\", \"n\": [1e100, -0.5]}"),
        x = literal("<a>é &lt; ☺</a>"),
    );
    let mut statements = vec![
        format!("insert into {table} values {typical}"),
        format!("insert into {table} values {nulls}"),
        format!("insert into {table} values {empty}"),
        format!("insert into {table} values {odd}"),
        format!("update {table} set t = 'changed', iv = '-1 day', f8 = 'NaN' where id = 1"),
        format!("update {table} set t = null, bpc = null where id = 4"),
        format!("update {table} set t = t where id = 2"),
        format!("update {table} set ts = '1999-12-31 23:59:59' where id = 3"),
        // text holding only the few specials that replace() escapes (not the full encoder)
        format!("update {table} set t = 'mail: a.b+c@d-e.f/g_h 1', vc = '+:/@ ' where id = 1"),
    ];
    let settings = [
        "set datestyle = 'SQL, DMY'; set intervalstyle = 'postgres_verbose'; \
         set bytea_output = 'escape'; set extra_float_digits = 0; \
         set timezone = 'America/St_Johns'",
        "set datestyle = 'Postgres, MDY'; set intervalstyle = 'sql_standard'; \
         set timezone = 'Asia/Kathmandu'",
        "set datestyle = 'German'; set intervalstyle = 'iso_8601'; \
         set timezone = 'Europe/Amsterdam'; set extra_float_digits = 3; \
         set lc_monetary = 'de_DE.utf8'",
        "reset all",
    ];
    for (n, setting) in settings.iter().enumerate() {
        let id = 10 * (n + 1);
        statements.push(setting.to_string());
        statements.push(format!(
            "insert into {table} select {id} + id, \"Key Two\", i2, i8, num, f4, f8, t, vc, \
             bpc, \"by\", ia, ta, j, jb, ts, tstz, d, tm, tmtz, iv, u, b, m, ip, cid, mac, \
             mon, pt, x, \"Wé \"\"col\"\" = 1&2\", \"UPPER\" from {table} where id < 10 order by id"
        ));
        statements.push(format!(
            "insert into {table} (id, \"Key Two\", ts, tstz, d, iv) values \
             ({id} + 9, 'old', '1900-01-01 12:00', '1900-01-01 12:00+00', '1900-01-01', \
             '1 year 2 mons -3 days 04:05:06.7')"
        ));
        statements.push(format!(
            "update {table} set iv = iv * 2, f4 = 1e30 where id = {id} + 1"
        ));
    }
    statements.push(format!("delete from {table} where id in (3, 4)"));
    statements.push(format!("truncate {table}"));
    statements
}

/// `sql`, if it only changes settings, without those that skyrep's generated triggers print
/// values in whatever the session's (DateStyle, IntervalStyle, extra_float_digits, bytea_output, lc_monetary):
/// what PgQ's trigger runs to queue the events the generated trigger queues for `sql`.
fn without_fixed_settings(sql: &str) -> String {
    if !sql.starts_with("set ") {
        return sql.to_string();
    }
    let fixed = [
        "set datestyle",
        "set intervalstyle",
        "set extra_float_digits",
        "set bytea_output",
        "set lc_monetary",
    ];
    let kept: Vec<&str> = sql
        .split(';')
        .map(str::trim)
        .filter(|part| !fixed.iter().any(|f| part.starts_with(f)))
        .collect();
    match kept.join("; ").trim() {
        "" => "select 1".to_string(),
        rest => rest.to_string(),
    }
}

/// Compares the generated triggers of `ours` with PgQ's C trigger in a new database
/// `name` of `cluster`: the reference runs `statements` without the settings the generated
/// triggers fix, ours run them as they are.
fn compare_generated(
    cluster: &Cluster,
    name: &str,
    ours: &mut [Db],
    args: &[&str],
    statements: &[&str],
) -> Vec<Event> {
    let mut reference = Db::with_extension(cluster, name, Capture::Function("logutriga"), &[]);
    let fixed: Vec<String> = statements
        .iter()
        .map(|s| without_fixed_settings(s))
        .collect();
    let fixed: Vec<&str> = fixed.iter().map(String::as_str).collect();
    compare_with(
        &mut reference,
        ours,
        MANY_TYPES,
        MANY_TYPES_TABLE,
        args,
        &fixed,
        statements,
    )
}

fn assert_many_types(function: &'static str) {
    let statements = many_types_statements();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    let (cluster, mut reference, ours) = databases(function);
    let (mut generated, mut generic): (Vec<Db>, Vec<Db>) =
        ours.into_iter().partition(|db| db.generated());
    let events = compare(
        &mut reference,
        &mut generic,
        MANY_TYPES,
        MANY_TYPES_TABLE,
        &[],
        &statements,
    );
    assert!(events.len() > 20, "only {} events", events.len());
    if !generated.is_empty() {
        compare_generated(&cluster, "c_fixed", &mut generated, &[], &statements);
    }
}

#[test]
fn generic_logutriga_matches_pgq_c_trigger_for_many_types() {
    // Also the generated trigger: `databases` adds it for logutriga.
    assert_many_types("logutriga");
}

#[test]
fn generic_sqltriga_matches_pgq_c_trigger_for_many_types() {
    assert_many_types("sqltriga");
}

#[test]
fn generic_jsontriga_matches_pgq_c_trigger_for_many_types() {
    assert_many_types("jsontriga");
}

#[test]
fn logutriga_events_have_pgq_format() {
    // The format itself, independently of the C trigger (ours only).
    let cluster = Cluster::start();
    for (name, capture, sql) in [
        ("pl", Capture::Function("logutriga"), PGQ_TRIGGERS),
        ("gen", Capture::Generated, CAPTURE),
    ] {
        let mut db = Db::with_extension(&cluster, name, capture, &[sql]);
        exec(
            &mut db.client,
            "create table udata (id serial primary key, txt text, bin bytea, stamp timestamptz)",
        );
        db.capture("udata", &[]);
        let outcomes = db.run(&[
            "set timezone = 'UTC'",
            "insert into udata (txt, bin, stamp) values ('text1', null, null)",
            "insert into udata (txt, bin, stamp) \
             values ('', E'bi\\tn\\\\000bin', '2009-09-19 11:59:48.599+00')",
            "update udata set txt = 'a b+c&d=e%f' where id = 1",
            "delete from udata where id = 2",
            "truncate udata",
        ]);
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        let s = |v: &str| Some(v.to_owned());
        let table = s("public.udata");
        assert_eq!(
            db.events(),
            vec![
                [
                    s("I:id"),
                    s("id=1&txt=text1&bin&stamp"),
                    table.clone(),
                    None,
                    None,
                    None
                ],
                [
                    s("I:id"),
                    s("id=2&txt=&bin=%5cx6269096e0062696e&stamp=2009-09-19+11%3a59%3a48.599%2b00"),
                    table.clone(),
                    None,
                    None,
                    None
                ],
                [
                    s("U:id"),
                    s("id=1&txt=a+b%2bc%26d%3de%25f&bin&stamp"),
                    table.clone(),
                    None,
                    None,
                    None
                ],
                [
                    s("D:id"),
                    s("id=2&txt=&bin=%5cx6269096e0062696e&stamp=2009-09-19+11%3a59%3a48.599%2b00"),
                    table.clone(),
                    None,
                    None,
                    None
                ],
                [s("R"), s(""), table, None, None, None],
            ],
            "{name}"
        );
    }
}

#[test]
fn every_character_is_urlencoded_like_pgq() {
    // Each of the code points 1..=400 and a few multibyte ones, alone and between letters.
    let mut statements = Vec::new();
    let chars: Vec<char> = (1u32..=400)
        .chain([0x7ff, 0x800, 0xffff, 0x10000, 0x1f600, 0x10ffff])
        .filter_map(char::from_u32)
        .collect();
    for (i, c) in chars.iter().enumerate() {
        let text = format!("a{c}b");
        statements.push(format!(
            "insert into t values ({i}, {}, {})",
            literal(&c.to_string()),
            literal(&text)
        ));
    }
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        assert_same_events(
            function,
            "create table t (id int primary key, c text, \"x\u{1}y\" text)",
            "t",
            &[],
            &statements,
        );
    }
}

const ARGS_TABLE: &str = "create table t (id int primary key, v int, txt text, ig int, \
     stamp timestamp)";

fn args_statements() -> Vec<&'static str> {
    vec![
        "insert into t values (1, 1, 'one', 0, '2020-01-01 10:00')",
        "insert into t values (2, 2, 'two', 0, null)",
        "insert into t values (3, 3, null, 0, '2020-01-01 10:00')",
        "update t set ig = ig + 1 where id = 1",
        "update t set ig = ig + 1, txt = 'uno' where id = 1",
        "update t set v = v where id = 2",
        "update t set stamp = '2021-02-03 04:05:06', v = 5 where id = 3",
        "delete from t where id = 2",
        "truncate t",
        "insert into t values (4, 4, 'four', 0, null)",
    ]
}

fn assert_args(args: &[&str]) {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        assert_same_events(function, ARGS_TABLE, "t", args, &args_statements());
    }
}

#[test]
fn no_arguments_match_pgq() {
    assert_args(&[]);
}

#[test]
fn ignore_leaves_columns_out_and_drops_updates_of_only_them() {
    let events = assert_same_events(
        "logutriga",
        ARGS_TABLE,
        "t",
        &["ignore=ig"],
        &args_statements(),
    );
    // The update of only "ig" queued nothing: 3 inserts, 2 updates of id 1/3 and id 2's
    // no-op update, a delete, a truncate, an insert.
    assert_eq!(events.len(), 9);
    assert!(
        events
            .iter()
            .all(|e| !e[1].as_deref().unwrap_or("").contains("ig="))
    );
    assert_args(&["ignore=ig"]);
    assert_args(&["ignore= ig ,txt"]);
}

#[test]
fn pkey_argument_sets_the_key_columns() {
    assert_args(&["pkey=id,v"]);
    assert_args(&["pkey= v "]);
}

#[test]
fn backup_puts_the_old_row_into_extra2() {
    let events = assert_same_events(
        "logutriga",
        ARGS_TABLE,
        "t",
        &["backup"],
        &args_statements(),
    );
    assert!(
        events
            .iter()
            .any(|e| e[0].as_deref() == Some("U:id") && e[3].is_some())
    );
    assert!(
        events
            .iter()
            .all(|e| e[0].as_deref() == Some("U:id") || e[3].is_none())
    );
    assert_args(&["backup"]);
    assert_args(&["backup", "ignore=ig"]);
}

#[test]
fn deny_refuses_every_change() {
    let cluster_statements = args_statements();
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        let (_cluster, mut reference, mut ours) = databases(function);
        // The same statements, all refused: compare the outcomes (no events anywhere).
        for db in std::iter::once(&mut reference).chain(ours.iter_mut()) {
            exec(&mut db.client, ARGS_TABLE);
            db.capture("t", &["deny"]);
        }
        let expected = reference.run(&cluster_statements);
        assert_eq!(
            expected[0],
            Err("Table 'public.t' to queue 'q': change not allowed (INSERT)".to_owned())
        );
        assert_eq!(
            expected[8],
            Err("Table 'public.t' to queue 'q': change not allowed (TRUNCATE)".to_owned())
        );
        for db in &mut ours {
            assert_eq!(db.run(&cluster_statements), expected, "{:?}", db.capture);
            assert!(db.events().is_empty());
        }
    }
}

#[test]
fn skip_queues_the_event_and_skips_the_row_in_a_before_trigger() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        let (_cluster, mut reference, mut ours) = databases(function);
        let statements = [
            "insert into t values (1, 1, 'one', 0, null)",
            "update t set v = 2",
            "delete from t",
        ];
        compare(
            &mut reference,
            &mut ours,
            ARGS_TABLE,
            "t",
            &["SKIP"],
            &statements,
        );
        for db in std::iter::once(&mut reference).chain(ours.iter_mut()) {
            assert_eq!(
                db.query("select count(*) from t"),
                vec![vec![Some("0".to_owned())]]
            );
        }
    }
}

#[test]
fn skip_in_an_after_trigger_is_an_error() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        let (_cluster, mut reference, mut ours) = databases(function);
        for db in std::iter::once(&mut reference).chain(ours.iter_mut()) {
            if db.generated() {
                continue; // SKIP makes the generated trigger a BEFORE trigger
            }
            exec(&mut db.client, ARGS_TABLE);
            exec(
                &mut db.client,
                &format!(
                    "create trigger x after insert on t for each row \
                     execute procedure pgq.{function}('q', 'SKIP')"
                ),
            );
            assert_eq!(
                db.run(&["insert into t values (1, 1, 'one', 0, null)"]),
                vec![Err("SKIP does not work in AFTER trigger.".to_owned())]
            );
        }
    }
}

#[test]
fn when_queues_only_matching_rows() {
    let events = assert_same_events(
        "logutriga",
        ARGS_TABLE,
        "t",
        &["when=v > 1"],
        &args_statements(),
    );
    assert!(
        events
            .iter()
            .all(|e| !e[1].as_deref().unwrap_or("").starts_with("id=1&"))
    );
    assert_args(&["when=v > 1"]);
    assert_args(&["when=txt is not null and v <> 2"]);
}

#[test]
fn when_must_be_boolean_and_not_null() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        let (_cluster, mut reference, mut ours) = databases(function);
        for db in std::iter::once(&mut reference).chain(ours.iter_mut()) {
            exec(&mut db.client, ARGS_TABLE);
            exec(
                &mut db.client,
                "insert into t values (1, 1, 'one', 0, null)",
            );
            if db.generated() {
                // Checked when the trigger is created.
                let err = db
                    .client
                    .batch_execute(
                        "select pgq.skyrep_capture_create('t', 'q', 'x', array['when=v'])",
                    )
                    .unwrap_err();
                assert_eq!(
                    err.as_db_error().map(|e| e.message()),
                    Some("when= query result must be boolean, got=23")
                );
                db.capture("t", &["when=null::boolean"]);
            } else {
                exec(
                    &mut db.client,
                    &format!(
                        "create trigger x after insert on t for each row \
                         execute procedure pgq.{function}('q', 'when=v'); \
                         create trigger y after update on t for each row \
                         execute procedure pgq.{function}('q', 'when=null::boolean')"
                    ),
                );
                assert_eq!(
                    db.run(&["insert into t values (2, 2, 'two', 0, null)"]),
                    vec![Err("when= query result must be boolean, got=23".to_owned())]
                );
            }
            assert_eq!(
                db.run(&["update t set v = 3 where id = 1"]),
                vec![Err("when= should not be NULL".to_owned())],
                "{:?}",
                db.capture
            );
        }
    }
}

#[test]
fn expressions_override_event_fields() {
    assert_args(&[
        "ev_type='T:' || id",
        "ev_extra3=v::text || '!'",
        "ev_extra4=stamp",
    ]);
    assert_args(&["ev_data=txt", "ev_extra1=null", "ev_extra2=v + 0.5"]);
    assert_args(&[
        "ev_type=upper(txt)",
        "ev_type='second is ignored'",
        "backup",
    ]);
}

#[test]
fn override_expressions_must_give_one_row() {
    assert_args(&["ev_extra4=v from generate_series(1, 2)"]);
    assert_args(&["ev_extra4=v from generate_series(1, 0)"]);
}

#[test]
fn magic_columns_set_event_fields() {
    assert_same_events(
        "logutriga",
        "create table m (id int primary key, v text, _pgq_ev_type text, _pgq_ev_extra3 int, \
         _pgq_ev_data text)",
        "m",
        &[],
        &[
            "insert into m values (1, 'a', 'custom', 42, null)",
            "insert into m values (2, 'b', null, null, 'data!')",
            "update m set v = 'c', _pgq_ev_type = 'other'",
            "delete from m where id = 1",
        ],
    );
}

#[test]
fn bad_arguments_are_refused_like_pgq() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        let (_cluster, mut reference, mut ours) = databases(function);
        for db in std::iter::once(&mut reference).chain(ours.iter_mut()) {
            exec(&mut db.client, ARGS_TABLE);
            for arg in ["Deny", "BACKUP", "skip", "IGNORE=v", "nonsense"] {
                let message = if db.generated() {
                    let sql = format!(
                        "select pgq.skyrep_capture_create('t', 'q', 'x', array[{}])",
                        literal(arg)
                    );
                    db.client
                        .batch_execute(&sql)
                        .unwrap_err()
                        .as_db_error()
                        .map(|e| e.message().to_owned())
                } else {
                    exec(
                        &mut db.client,
                        &format!(
                            "create trigger x after insert on t for each row \
                             execute procedure pgq.{function}('q', {})",
                            literal(arg)
                        ),
                    );
                    let result = db.run(&["insert into t values (1, 1, 'one', 0, null)"]);
                    exec(&mut db.client, "drop trigger x on t");
                    result[0].clone().err()
                };
                assert_eq!(
                    message.as_deref(),
                    Some("bad param to pgq trigger"),
                    "{:?} {arg}",
                    db.capture
                );
            }
        }
    }
}

#[test]
fn truncate_trigger_arguments_are_checked_like_pgq() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        let (_cluster, mut reference, mut ours) = databases(function);
        let mut dbs: Vec<&mut Db> = std::iter::once(&mut reference)
            .chain(ours.iter_mut().filter(|db| !db.generated()))
            .collect();
        let mut results = Vec::new();
        for db in dbs.iter_mut() {
            exec(&mut db.client, ARGS_TABLE);
            let mut outcome = Vec::new();
            for arg in [
                "ignore=v",
                "pkey=v",
                "backup",
                "when=true",
                "ev_type='x'",
                "SKIP",
            ] {
                exec(
                    &mut db.client,
                    &format!(
                        "create trigger x after truncate on t for each statement \
                         execute procedure pgq.{function}('q', {})",
                        literal(arg)
                    ),
                );
                outcome.extend(db.run(&["truncate t"]));
                exec(&mut db.client, "drop trigger x on t");
            }
            exec(
                &mut db.client,
                &format!(
                    "create trigger x before truncate on t for each statement \
                     execute procedure pgq.{function}('q', 'SKIP')"
                ),
            );
            outcome.extend(db.run(&["truncate t"]));
            results.push((outcome, db.events()));
        }
        assert_eq!(
            results[0].0[0],
            Err("Column ignore does not make sense for truncate trigger".to_owned())
        );
        assert_eq!(
            results[0].1.len(),
            1,
            "BEFORE TRUNCATE with SKIP queues the event"
        );
        assert_eq!(results[1], results[0], "{function}");
    }
}

#[test]
fn primary_key_update_is_refused_like_pgq() {
    // PgQ's C triggers refuse an UPDATE that changes a key column, also one that is ignored;
    // a key column set to the same value (or an equal one) is no change.
    assert_args(&[]);
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        let events = assert_same_events(
            function,
            "create table k (a numeric, b text, v int, primary key (b, a))",
            "k",
            &[],
            &[
                "insert into k values (1.0, 'x', 1)",
                "update k set a = 2 where b = 'x'",
                "update k set a = 1.00, v = 2 where b = 'x'",
                "update k set b = 'y'",
                "update k set b = b, v = 3",
                "delete from k",
            ],
        );
        assert_eq!(events.len(), 4, "{function}");
    }
    assert_same_events(
        "logutriga",
        "create table k (id int primary key, v int)",
        "k",
        &["ignore=id"],
        &[
            "insert into k values (1, 1)",
            "update k set id = 2",
            "update k set v = 2",
        ],
    );
}

#[test]
fn keymove_queues_a_key_update_as_delete_and_insert() {
    // With keymove, a key update queues exactly what PgQ's C trigger queues for deleting the
    // old row and inserting the new one; when= is judged on the old row for the delete and
    // on the new row for the insert.
    let cluster = Cluster::start();
    let mut reference = Db::with_extension(&cluster, "c", Capture::Function("logutriga"), &[]);
    let mut ours = Db::with_extension(&cluster, "gen", Capture::Generated, &[CAPTURE]);
    let setup = "create table k (a int, b text, v int, primary key (b, a))";
    let cases: [(&[&str], &[&str], &[&str]); 2] = [
        (
            &["keymove", "backup"],
            &[
                "insert into k values (1, 'x', 1), (2, 'y', 2)",
                "update k set a = a + 10, v = 5",
                "update k set v = 6 where a = 11",
            ],
            &[
                "insert into k values (1, 'x', 1), (2, 'y', 2)",
                "delete from k where a = 1",
                "insert into k values (11, 'x', 5)",
                "delete from k where a = 2",
                "insert into k values (12, 'y', 5)",
                "update k set v = 6 where a = 11",
            ],
        ),
        (
            &["keymove", "when=v > 0"],
            &[
                "insert into k values (1, 'x', 1)",
                "update k set a = 2, v = 0",
                "update k set a = 3, v = 3",
            ],
            &[
                "insert into k values (1, 'x', 1)",
                "delete from k where a = 1",
                "insert into k values (2, 'x', 0)",
                "delete from k where a = 2",
                "insert into k values (3, 'x', 3)",
            ],
        ),
    ];
    for (args, updates, equivalent) in cases {
        for db in [&mut reference, &mut ours] {
            exec(&mut db.client, &format!("drop table if exists k; {setup}"));
            exec(&mut db.client, "delete from pgq.event_template");
        }
        let mut reference_args: Vec<&str> = args.to_vec();
        reference_args.retain(|a| *a != "keymove");
        reference.capture("k", &reference_args);
        ours.capture("k", args);
        assert_eq!(
            reference.run(equivalent),
            vec![Ok(()); equivalent.len()],
            "{args:?}"
        );
        assert_eq!(ours.run(updates), vec![Ok(()); updates.len()], "{args:?}");
        assert_eq!(ours.events(), reference.events(), "{args:?}");
        assert_eq!(
            ours.query("select * from k order by a"),
            reference.query("select * from k order by a"),
            "{args:?}"
        );
    }
}

#[test]
fn tables_without_key_queue_inserts_only() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        assert_same_events(
            function,
            "create table nk (a int, b text)",
            "nk",
            &[],
            &[
                "insert into nk values (1, 'x')",
                "update nk set b = 'y'",
                "delete from nk",
                "truncate nk",
            ],
        );
    }
}

#[test]
fn sqltriga_refuses_null_key_values_like_pgq() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        assert_same_events(
            function,
            "create table nk (id int, c text, v int)",
            "nk",
            &["pkey=id,c"],
            &[
                "insert into nk values (1, null, 2)",
                "update nk set v = 3",
                "delete from nk",
                "insert into nk values (2, 'c', 2)",
                "update nk set v = 3",
            ],
        );
    }
}

#[test]
fn changes_are_detected_by_each_types_equality_like_pgq() {
    // numeric 1.0 -> 1.00 and interval '1 day' -> '24 hours' are no change by equality;
    // arrays, json and box compare as text.
    for function in ["logutriga", "sqltriga"] {
        assert_same_events(
            function,
            "create table e (id int primary key, n numeric, na numeric[], j json, jb jsonb, \
             bx box, iv interval, f float8, ig int)",
            "e",
            &["ignore=ig"],
            &[
                "insert into e values (1, 1.0, '{1.0}', '{\"a\": 1}', '{\"a\": 1}', \
                 '(0,0),(1,1)', '1 day', 0, 0)",
                "update e set n = 1.00, ig = ig + 1",
                "update e set na = '{1.00}', ig = ig + 1",
                "update e set j = '{\"a\":1}', ig = ig + 1",
                "update e set jb = '{\"a\":1}', ig = ig + 1",
                "update e set bx = '(1,1),(2,2)', ig = ig + 1",
                "update e set iv = '24 hours', ig = ig + 1",
                "update e set f = '-0', ig = ig + 1",
                "update e set ig = ig + 1",
            ],
        );
    }
}

#[test]
fn local_replication_role_queues_nothing() {
    for function in ["logutriga", "sqltriga", "jsontriga"] {
        assert_same_events(
            function,
            ARGS_TABLE,
            "t",
            &[],
            &[
                "insert into t values (1, 1, 'one', 0, null)",
                "set session_replication_role = 'local'",
                "insert into t values (2, 2, 'two', 0, null)",
                "update t set v = 5",
                "delete from t where id = 1",
                "truncate t",
                "reset session_replication_role",
                "insert into t values (3, 3, 'three', 0, null)",
            ],
        );
        assert_same_events(
            function,
            ARGS_TABLE,
            "t",
            &["deny"],
            &[
                "set session_replication_role = 'local'",
                "insert into t values (1, 1, 'one', 0, null)",
                "reset session_replication_role",
                "insert into t values (2, 2, 'two', 0, null)",
            ],
        )
        .len();
    }
}

#[test]
fn generated_trigger_is_refreshed_after_columns_change() {
    // PgQ's C trigger reads the columns on every row; the generated one is refreshed in the
    // transaction of each ALTER TABLE and then queues the same events.
    let (_cluster, mut reference, mut ours) = databases("logutriga");
    let mut dbs: Vec<&mut Db> = std::iter::once(&mut reference)
        .chain(ours.iter_mut())
        .collect();
    for db in dbs.iter_mut() {
        exec(
            &mut db.client,
            "create table r (id int primary key, a text, b int)",
        );
        db.capture("r", &["backup"]);
        let generated = db.generated();
        let refresh = |table: &str| {
            if generated {
                format!("select pgq.skyrep_capture_refresh({})", literal(table))
            } else {
                "select 1".to_owned()
            }
        };
        let statements = [
            "insert into r values (1, 'x', 1)".to_owned(),
            format!(
                "begin; alter table r add column \"New Col\" timestamptz \
                 default '2020-01-01 00:00+00'; {}; commit",
                refresh("r")
            ),
            "insert into r values (2, 'y', 2)".to_owned(),
            format!(
                "begin; alter table r drop column a; {}; commit",
                refresh("r")
            ),
            "update r set b = 3".to_owned(),
            format!(
                "begin; alter table r rename column b to \"bé\"; {}; commit",
                refresh("r")
            ),
            format!(
                "begin; alter table r rename to \"R 2\"; {}; commit",
                refresh("\"R 2\"")
            ),
            "delete from \"R 2\" where id = 1".to_owned(),
        ];
        let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
        let outcomes = db.run(&statements);
        assert!(
            outcomes.iter().all(Result::is_ok),
            "{:?}: {outcomes:?}",
            db.capture
        );
    }
    let expected = dbs[0].events();
    assert_eq!(expected.len(), 5);
    assert_eq!(expected[4][2].as_deref(), Some("public.R 2"));
    for db in dbs.iter_mut().skip(1) {
        assert_eq!(db.events(), expected, "{:?}", db.capture);
    }
}

#[test]
fn generated_trigger_is_listed_and_dropped() {
    let cluster = Cluster::start();
    let mut db = Db::with_extension(&cluster, "gen", Capture::Generated, &[CAPTURE]);
    exec(
        &mut db.client,
        "create table \"Odd Tab\" (id int primary key, v text); \
         create table other (id int primary key)",
    );
    exec(
        &mut db.client,
        "select pgq.skyrep_capture_create('\"Odd Tab\"', 'q', '_londiste_q', array['backup']); \
         select pgq.skyrep_capture_create('other', 'q', 'cap')",
    );
    assert_eq!(
        db.query(
            "select table_name, trigger_name, queue_name, args::text from pgq.skyrep_capture_list()"
        ),
        vec![
            vec![
                Some("\"Odd Tab\"".to_owned()),
                Some("_londiste_q".to_owned()),
                Some("q".to_owned()),
                Some("{backup}".to_owned())
            ],
            vec![
                Some("other".to_owned()),
                Some("cap".to_owned()),
                Some("q".to_owned()),
                Some("{}".to_owned())
            ],
        ]
    );
    let triggers = "select tgname::text from pg_trigger where tgrelid = '\"Odd Tab\"'::regclass \
                    and not tgisinternal order by 1";
    assert_eq!(
        db.query(triggers),
        vec![
            vec![Some("_londiste_q".to_owned())],
            vec![Some("_londiste_q_truncate".to_owned())]
        ]
    );
    // Creating again replaces; refresh keeps the arguments.
    exec(
        &mut db.client,
        "select pgq.skyrep_capture_create('\"Odd Tab\"', 'q', '_londiste_q', array['backup']); \
         select pgq.skyrep_capture_refresh('\"Odd Tab\"', '_londiste_q')",
    );
    assert_eq!(db.query(triggers).len(), 2);
    assert_eq!(
        db.query("select pgq.skyrep_capture_drop('\"Odd Tab\"', '_londiste_q')"),
        vec![vec![Some("t".to_owned())]]
    );
    assert!(db.query(triggers).is_empty());
    assert_eq!(
        db.query("select pgq.skyrep_capture_drop('\"Odd Tab\"', '_londiste_q')"),
        vec![vec![Some("f".to_owned())]]
    );
    // Only the other table's function is left.
    assert_eq!(
        db.query("select count(*) from pg_proc where proname like 'skyrep\\_cap\\_%'"),
        vec![vec![Some("1".to_owned())]]
    );
}

#[test]
fn generated_trigger_registration_checks_its_arguments() {
    let cluster = Cluster::start();
    let mut db = Db::with_extension(&cluster, "gen", Capture::Generated, &[CAPTURE]);
    exec(&mut db.client, ARGS_TABLE);
    for (args, message) in [
        (
            "array['pkey=nosuch']",
            "pkey= column \"nosuch\" is not a column of table t",
        ),
        (
            "array['when=v']",
            "when= query result must be boolean, got=23",
        ),
        (
            "array['when=nosuch > 1']",
            "column \"nosuch\" does not exist",
        ),
        ("array['ignore=v', 'bogus']", "bad param to pgq trigger"),
    ] {
        let err = db
            .client
            .batch_execute(&format!(
                "select pgq.skyrep_capture_create('t', 'q', 'x', {args})"
            ))
            .unwrap_err();
        assert_eq!(
            err.as_db_error().map(|e| e.message()),
            Some(message),
            "{args}"
        );
    }
    let err = db
        .client
        .batch_execute("select pgq.skyrep_capture_create('t', '', 'x')")
        .unwrap_err();
    assert_eq!(
        err.as_db_error().map(|e| e.message()),
        Some("pgq trigger must have destination queue as argument")
    );
}

#[test]
fn generated_and_generic_triggers_work_on_skyreps_own_queue() {
    // The same events as PgQ's C trigger, with skyrep's pgq_core.sql as the queue.
    let (cluster, mut reference, _) = databases("logutriga");
    cluster.create_database("core");
    let mut core = cluster.connect("core");
    exec(&mut core, PGQ_CORE);
    exec(&mut core, PGQ_TRIGGERS);
    exec(&mut core, CAPTURE);
    exec(&mut core, &format!("select pgq.create_queue('{QUEUE}')"));
    cluster.create_database("core2");
    let mut core2 = cluster.connect("core2");
    exec(&mut core2, PGQ_CORE);
    exec(&mut core2, PGQ_TRIGGERS);
    exec(&mut core2, CAPTURE);
    exec(&mut core2, &format!("select pgq.create_queue('{QUEUE}')"));
    let statements = many_types_statements();
    let statements: Vec<&str> = statements.iter().map(String::as_str).collect();
    compare(
        &mut reference,
        &mut [Db {
            client: core2,
            capture: Capture::Function("logutriga"),
        }],
        MANY_TYPES,
        MANY_TYPES_TABLE,
        &["backup"],
        &statements,
    );
    compare_generated(
        &cluster,
        "c_fixed",
        &mut [Db {
            client: core,
            capture: Capture::Generated,
        }],
        &["backup"],
        &statements,
    );
}

#[test]
fn wide_tables_are_captured_like_pgq() {
    // More columns than one format() call takes (100 arguments).
    let columns: Vec<String> = (1..=205)
        .map(|i| match i % 3 {
            0 => format!("c{i} text"),
            1 => format!("c{i} int"),
            _ => format!("c{i} timestamp"),
        })
        .collect();
    let setup = format!(
        "create table w (id int primary key, {})",
        columns.join(", ")
    );
    let values: Vec<String> = (1..=205)
        .map(|i| match i % 3 {
            0 if i % 2 == 0 => "null".to_owned(),
            0 => format!("'v {i}'"),
            1 => i.to_string(),
            _ => "'2020-01-01 00:00'".to_owned(),
        })
        .collect();
    let insert = format!("insert into w values (1, {})", values.join(", "));
    assert_same_events(
        "logutriga",
        &setup,
        "w",
        &["backup"],
        &[
            &insert,
            "update w set c3 = '', c205 = null",
            "delete from w",
        ],
    );
}

/// A database of `cluster` with skyrep's own queue (pgq_core.sql, the capture triggers and
/// the privileges, as `provider install` puts them) and the queue.
fn core_db(cluster: &Cluster, name: &str) -> Db {
    const PGQ_GRANTS: &str = include_str!("../src/queue/sql/pgq_grants.sql");
    cluster.create_database(name);
    let mut client = cluster.connect(name);
    let mut tx = client.transaction().unwrap();
    for sql in [PGQ_CORE, PGQ_TRIGGERS, CAPTURE, PGQ_GRANTS] {
        tx.batch_execute(sql)
            .unwrap_or_else(|e| panic!("installing: {}", error_chain(&e)));
    }
    tx.commit().unwrap();
    exec(&mut client, &format!("select pgq.create_queue('{QUEUE}')"));
    Db {
        client,
        capture: Capture::Generated,
    }
}

/// Every event of queue `q` (all its tables) with every field, ev_time and ev_txid as
/// whether they are the writing transaction's (`tx` and `now` of the events' transaction
/// are looked up by `ev_txid` in `txs`, a table of (txid, now) rows).
const ALL_FIELDS: &str = "select e.ev_id, e.ev_type, e.ev_data, e.ev_extra1, e.ev_extra2, \
     e.ev_extra3, e.ev_extra4, e.ev_owner, e.ev_retry, e.ev_time = x.now as at_tx_time, \
     x.txid is not null as known_tx, e.tableoid::regclass \
     from pgq.event_1 e left join txs x on x.txid = e.ev_txid order by e.ev_id";

/// The PL/pgSQL functions the current transaction called, with their number of calls (and
/// those of earlier transactions of the session whose counts were not flushed yet).
const CALLS: &str = "select funcname, calls from pg_stat_xact_user_functions order by 1";

#[test]
fn generated_trigger_on_skyreps_queue_is_the_only_plpgsql_call_and_queues_the_same_events() {
    // On skyrep's own queue a captured row costs one PL/pgSQL call, the generated function,
    // which writes the event itself. A queue with a per-transaction limit takes the path
    // through pgq.insert_event (the one every row took before): the events are the same,
    // field for field.
    let cluster = Cluster::start();
    let setup = "create table txs (txid bigint, now timestamptz); \
         create table a (id int primary key, n numeric, ts timestamp, t text); \
         create table b (id int primary key, t text)";
    let statements = "begin; set local track_functions = 'pl'; \
         insert into txs values (txid_current(), now()); \
         insert into a values (1, 1.5, '2020-01-02 03:04:05', 'one'), (2, null, null, 'two'), \
                              (3, -2, '1999-12-31 23:59:59', 'three x'); \
         update a set n = 7, t = 'seven' where id = 2; delete from a where id = 3; \
         insert into b values (1, 'skipped row'), (2, 'another'); \
         update a set id = 10 where id = 1; truncate a";
    let mut results = Vec::new();
    for (name, limit) in [("direct", false), ("through_insert_event", true)] {
        let mut db = core_db(&cluster, name);
        exec(&mut db.client, setup);
        exec(
            &mut db.client,
            &format!(
                "select pgq.skyrep_capture_create('a', '{QUEUE}', '_cap', array['backup', 'keymove']); \
                 select pgq.skyrep_capture_create('b', '{QUEUE}', '_cap', array['SKIP'])"
            ),
        );
        if limit {
            exec(
                &mut db.client,
                "update pgq.queue set queue_per_tx_limit = 1000",
            );
        }
        exec(&mut db.client, statements);
        let calls = db.query(CALLS);
        exec(&mut db.client, "commit");
        let functions: Vec<&str> = calls.iter().map(|row| row[0].as_deref().unwrap()).collect();
        let total: usize = calls
            .iter()
            .map(|row| row[1].as_deref().unwrap().parse::<usize>().unwrap())
            .sum();
        if limit {
            assert!(functions.contains(&"insert_event"), "{calls:?}");
        } else {
            // 3 inserts, 1 update, 1 delete, 2 skipped inserts, 1 key update, 1 truncate
            assert!(
                functions.iter().all(|f| f.starts_with("skyrep_cap_")),
                "only the generated functions run: {calls:?}"
            );
            assert_eq!(total, 9, "one call per row and one for TRUNCATE: {calls:?}");
        }
        results.push(db.query(ALL_FIELDS));
    }
    assert_eq!(results[0].len(), 10, "{:?}", results[0]);
    for row in &results[0] {
        assert_eq!(row[9].as_deref(), Some("t"), "ev_time is now(): {row:?}");
        assert_eq!(
            row[10].as_deref(),
            Some("t"),
            "ev_txid is the writer's: {row:?}"
        );
    }
    assert_eq!(
        results[0], results[1],
        "the events differ from those pgq.insert_event queues"
    );
}

#[test]
fn generated_trigger_on_skyreps_queue_matches_insert_event_for_many_types() {
    // Every type and odd name of MANY_TYPES, in odd session settings: the same events
    // (ev_id and every field) as through pgq.insert_event.
    let cluster = Cluster::start();
    let statements = many_types_statements();
    let mut results = Vec::new();
    for (name, limit) in [("direct", false), ("through_insert_event", true)] {
        let mut db = core_db(&cluster, name);
        exec(
            &mut db.client,
            &format!("{MANY_TYPES}; create table txs (txid bigint, now timestamptz)"),
        );
        db.capture(MANY_TYPES_TABLE, &["backup"]);
        if limit {
            exec(
                &mut db.client,
                "update pgq.queue set queue_per_tx_limit = 1000",
            );
        }
        for sql in &statements {
            exec(&mut db.client, sql);
        }
        let rows = db.query(ALL_FIELDS);
        assert!(rows.len() > 20, "only {} events", rows.len());
        // (ev_time and ev_txid are the writers', checked above; here the rest)
        results.push(
            rows.into_iter()
                .map(|row| row[..9].to_vec())
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(results[0], results[1]);
}

#[test]
fn generated_trigger_on_skyreps_queue_keeps_disabled_queue_and_per_tx_limit() {
    let cluster = Cluster::start();
    let mut db = core_db(&cluster, "limits");
    exec(&mut db.client, "create table t (id int primary key)");
    db.capture("t", &[]);
    exec(
        &mut db.client,
        "update pgq.queue set queue_disable_insert = true",
    );
    assert_eq!(
        db.run(&["insert into t values (1)"]),
        [Err("Insert into queue disallowed".to_string())]
    );
    exec(
        &mut db.client,
        "update pgq.queue set queue_disable_insert = false, queue_per_tx_limit = 2",
    );
    assert_eq!(
        db.run(&[
            "insert into t values (1), (2)",
            "insert into t values (3), (4), (5)",
            "begin; insert into t values (6); insert into t values (7); \
             insert into t values (8); commit",
        ]),
        [
            Ok(()),
            Err("Queue 'q' allows max 2 events from one TX".to_string()),
            Err("Queue 'q' allows max 2 events from one TX".to_string()),
        ]
    );
    exec(&mut db.client, "rollback");
    exec(
        &mut db.client,
        "update pgq.queue set queue_per_tx_limit = null; insert into t values (9)",
    );
    let datas: Vec<String> = db
        .events()
        .into_iter()
        .map(|e| e[1].clone().unwrap())
        .collect();
    assert_eq!(datas, ["id=1", "id=2", "id=9"]);
}

#[test]
fn generated_trigger_follows_its_queue_dropped_and_created_again() {
    // The compiled event tables are those of the queue as it was; a queue created again
    // (another id and tables) is written through pgq.insert_event until a refresh.
    let cluster = Cluster::start();
    let mut db = core_db(&cluster, "recreated");
    exec(
        &mut db.client,
        "create table t (id int primary key, v int); insert into t values (0, 0)",
    );
    db.capture("t", &[]);
    exec(&mut db.client, &format!("select pgq.drop_queue('{QUEUE}')"));
    assert_eq!(
        db.run(&["insert into t values (1)"]),
        [Err("No such queue".to_string())]
    );
    exec(
        &mut db.client,
        &format!("select pgq.create_queue('{QUEUE}')"),
    );
    // (in a new session each time: the counts of earlier transactions may not be flushed)
    let calls_of = |sql: &str| -> Vec<String> {
        let mut client = cluster.connect("recreated");
        exec(
            &mut client,
            &format!("begin; set local track_functions = 'pl'; {sql}"),
        );
        let calls = strings(&mut client, CALLS);
        exec(&mut client, "commit");
        calls
            .into_iter()
            .map(|row| row[0].clone().unwrap())
            .filter(|f| !f.starts_with("skyrep_cap_"))
            .collect()
    };
    assert_eq!(
        calls_of("insert into t values (2); update t set v = 3 where id = 0"),
        ["_insert_event_static", "insert_event"]
    );
    exec(&mut db.client, "select pgq.skyrep_capture_refresh('t')");
    assert_eq!(calls_of("insert into t values (4)"), Vec::<String>::new());
    let events: Vec<String> = db
        .query(
            "select tableoid::regclass || ' ' || ev_type || ' ' || ev_data \
             from pgq.event_2 order by ev_id",
        )
        .into_iter()
        .map(|row| row[0].clone().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "pgq.event_2_0 I:id id=2&v",
            "pgq.event_2_0 U:id id=0&v=3",
            "pgq.event_2_0 I:id id=4&v"
        ]
    );
}

#[test]
fn generated_trigger_on_skyreps_queue_takes_the_sessions_table_for_a_guess_only() {
    // The session remembers the current event table (skyrep.capture_table_<queue id>);
    // whatever that setting says, stale after a rotation or set by hand, every event lands
    // in the table that is current.
    let cluster = Cluster::start();
    let mut db = core_db(&cluster, "guess");
    exec(
        &mut db.client,
        "create table t (id int primary key, v int); \
         select pgq.set_queue_config('q', 'rotation_period', '0')",
    );
    db.capture("t", &[]);
    let mut id = 0;
    for rotation in 0..4 {
        let before = db.query("select coalesce(max(ev_id), 0) from pgq.event_1")[0][0]
            .clone()
            .unwrap();
        for guess in [
            None,
            Some("0"),
            Some("1"),
            Some("2"),
            Some("junk"),
            Some(""),
        ] {
            id += 1;
            if let Some(guess) = guess {
                exec(
                    &mut db.client,
                    &format!("set skyrep.capture_table_1 = {}", literal(guess)),
                );
            }
            exec(
                &mut db.client,
                &format!("insert into t values ({id}, 0); update t set v = 1 where id = {id}"),
            );
        }
        let placed = db.query(&format!(
            "select count(*), count(*) filter (where e.tableoid = \
                    format('pgq.event_1_%s', q.queue_cur_table)::regclass) \
               from pgq.event_1 e, pgq.queue q where e.ev_id > {before}"
        ));
        assert_eq!(
            placed,
            [[Some("12".to_string()), Some("12".to_string())]],
            "rotation {rotation}: events, in the current table"
        );
        exec(&mut db.client, "select pgq.maint_rotate_tables_step1('q')");
        exec(&mut db.client, "select pgq.maint_rotate_tables_step2()");
        assert_eq!(
            db.query("select queue_cur_table from pgq.queue"),
            [[Some(((rotation + 1) % 3).to_string())]]
        );
        exec(&mut db.client, "truncate t");
    }
}
