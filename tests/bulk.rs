//! Set-based capture (the `bulk` argument, `provider add --bulk`): the same events as the
//! row triggers for the same statements, and what it must refuse.
//!
//! The randomized test runs random transactions (bulk and one-row statements of every kind,
//! odd values and session settings, key moves, cascades, ON CONFLICT, errors) on tables
//! captured twice, by row triggers into one queue and set-based into another, and compares
//! the two queues' events. `SKYREP_SEED=N` reruns a seed.

use std::collections::BTreeMap;
use std::time::SystemTime;

use postgres::Client;

use crate::cluster::Cluster;
use crate::replay::{Pair, stop};
use crate::util::{Rng, error_chain, exec, strings};

const CAPTURE: &str = include_str!("../src/queue/sql/skyrep_capture.sql");

/// The tables of the randomized test, and the capture arguments of each.
const SCHEMA: &str = r#"
create schema "Bulk Sch";
create type mood as enum ('sad', 'ok', 'happy ☺');
create table "Bulk Sch"."Main ""T"" é" (
    id int, "Key Two" text, i8 bigint, num numeric, f8 float8, t text, vc varchar(12),
    "by" bytea, ia int[], j json, ts timestamp, tstz timestamptz, d date, iv interval,
    b bool, m mood, ip inet, mon money, pt point, ig int, "Wé ""c"" =1&2" text,
    primary key (id, "Key Two"));
create table plain (id int primary key, v text, n int);
create table parent (id int primary key, v text);
create table child (id int primary key,
    pid int references parent on delete cascade on update cascade, v text);
create table pk (a int, b text, v int);
"#;

const MAIN: &str = r#""Bulk Sch"."Main ""T"" é""#;

const TABLES: [(&str, &str); 5] = [
    (MAIN, "array['keymove', 'backup', 'ignore=ig']"),
    ("plain", "array[]::text[]"),
    ("parent", "array['keymove']"),
    ("child", "array['keymove', 'backup']"),
    ("pk", "array['pkey=a']"),
];

/// Text values: plain, empty, odd characters, NULL.
fn text_value(rng: &mut Rng) -> String {
    rng.pick(&[
        "'plain'",
        "''",
        "null",
        "'sp ace+plus/slash:colon@at'",
        "E'tab\\tnl\\ncr\\r%&=?#é中€\\\\'",
        "'quote''s \"dq\"'",
    ])
    .to_string()
}

/// The values of a row of MAIN for key `id` (`g` may be a column of generate_series).
fn main_values(rng: &mut Rng, id: &str) -> String {
    let key = rng.pick(&["'a'", "''", "'k é'"]);
    format!(
        "{id}, {key}, {id}::bigint * 1000000007, ({id} || '.50')::numeric, {f8}, {t}, {vc}, \
         {by}, array[{id}, null], {j}, timestamp '2009-09-19 11:59:48.599' + {id} * interval '1 hour', \
         timestamptz '2009-09-19 11:59:48.599+03', date '2000-02-29' + {id}, \
         interval '1 day 02:03:04' * {id}, {id} % 2 = 0, {m}, '10.0.0.1', {id} * 1.25, \
         point({id}, -1.5), {id}, {t2}",
        f8 = rng.pick(&["0.1::float8 + 0.2", "'NaN'", "1e100", "null"]),
        t = text_value(rng),
        vc = rng.pick(&["'v c'", "null", "''"]),
        by = rng.pick(&["'\\x00ff5c27'::bytea", "null", "''::bytea"]),
        j = rng.pick(&["'{\"k\": [1, 2]}'", "null"]),
        m = rng.pick(&["'happy ☺'", "'ok'", "null"]),
        t2 = text_value(rng),
    )
}

/// A random range of keys `lo and hi` with up to `width` keys.
fn range(rng: &mut Rng, width: u64) -> (u64, u64) {
    let lo = 1 + rng.below(120);
    (lo, lo + rng.below(width))
}

/// One random statement.
fn statement(rng: &mut Rng) -> String {
    match rng.below(17) {
        0 => {
            let id = (1 + rng.below(150)).to_string();
            format!("insert into {MAIN} values ({})", main_values(rng, &id))
        }
        1 => {
            let (lo, hi) = range(rng, 60);
            format!(
                "insert into {MAIN} select {} from generate_series({lo}, {hi}) g \
                 on conflict do nothing",
                main_values(rng, "g")
            )
        }
        2 => {
            let (lo, hi) = range(rng, 80);
            format!(
                "update {MAIN} set t = {}, f8 = f8 + 1, iv = iv * 2 where id between {lo} and {hi}",
                text_value(rng)
            )
        }
        // ignored column only: no event
        3 => format!(
            "update {MAIN} set ig = ig + 1 where id % 3 = {}",
            rng.below(3)
        ),
        // no change at all: an event each (the row trigger's rule)
        4 => format!(
            "update {MAIN} set t = t, num = num * 1.0 where id % 4 = {}",
            rng.below(4)
        ),
        // key moves (keymove): delete + insert per row; may collide (an error both ways)
        5 => {
            let (lo, hi) = range(rng, 20);
            format!(
                "update {MAIN} set id = id + {}, ig = 0 where id between {lo} and {hi}",
                rng.pick(&["200", "1", "-1"])
            )
        }
        6 => {
            let (lo, hi) = range(rng, 50);
            format!("delete from {MAIN} where id between {lo} and {hi}")
        }
        7 => format!("delete from {MAIN} where id = {}", 1 + rng.below(150)),
        8 => {
            let (lo, hi) = range(rng, 40);
            format!(
                "insert into plain select g, {}, g from generate_series({lo}, {hi}) g \
                 on conflict (id) do update set v = excluded.v || 'u', n = plain.n + 1",
                text_value(rng)
            )
        }
        // a key change without keymove: 'primary key update not allowed'
        9 => format!(
            "update plain set id = id + 1 where id = {}",
            1 + rng.below(120)
        ),
        10 => {
            let (lo, hi) = range(rng, 30);
            format!(
                "insert into parent select g, 'p' || g from generate_series({lo}, {hi}) g \
                 on conflict do nothing; \
                 insert into child select g * 10 + k, g, {} from generate_series({lo}, {hi}) g, \
                 generate_series(0, {}) k on conflict do nothing",
                text_value(rng),
                rng.below(3)
            )
        }
        // cascades: the child's events come from the foreign key's actions
        11 => {
            let (lo, hi) = range(rng, 10);
            format!("delete from parent where id between {lo} and {hi}")
        }
        12 => {
            let (lo, hi) = range(rng, 10);
            format!("update parent set id = id + 1000, v = v || 'm' where id between {lo} and {hi}")
        }
        13 => format!(
            "insert into pk select g % 7, {}, g from generate_series(1, {}) g",
            text_value(rng),
            1 + rng.below(30)
        ),
        14 => format!(
            "update pk set v = v + 1, b = {} where a = {}",
            text_value(rng),
            rng.below(7)
        ),
        15 => format!("update pk set a = a + 1 where v = {}", rng.below(30)),
        _ => rng
            .pick(&[
                "truncate child",
                "delete from pk where a = 3",
                "update plain set n = null",
            ])
            .to_string(),
    }
}

/// Settings of a writing session that the capture must not let change the events.
fn session_settings(rng: &mut Rng) -> String {
    if !rng.chance(30) {
        return String::new();
    }
    format!(
        "set local datestyle = '{}'; set local intervalstyle = '{}'; \
         set local extra_float_digits = {}; set local bytea_output = '{}'; \
         set local timezone = '{}'; ",
        rng.pick(&["SQL, DMY", "German", "Postgres, MDY", "ISO, YMD"]),
        rng.pick(&["sql_standard", "iso_8601", "postgres_verbose", "postgres"]),
        rng.pick(&["0", "-3", "1", "3"]),
        rng.pick(&["escape", "hex"]),
        rng.pick(&["Pacific/Chatham", "UTC", "America/St_Johns"]),
    )
}

/// A database with the tables, each captured twice: by row triggers `_row` into queue `qr`
/// and set-based by `_set` into queue `qs`, so that both see the same rows in the same
/// order.
fn database(cluster: &Cluster, name: &str) -> Client {
    cluster.create_database(name);
    let mut client = cluster.connect(name);
    exec(&mut client, "create extension pgq");
    exec(&mut client, CAPTURE);
    exec(
        &mut client,
        "select pgq.create_queue('qr'); select pgq.create_queue('qs')",
    );
    exec(&mut client, SCHEMA);
    for (table, args) in TABLES {
        exec(
            &mut client,
            &format!(
                "select pgq.skyrep_capture_create({t}, 'qr', '_row', {args}); \
                 select pgq.skyrep_capture_create({t}, 'qs', '_set', {args} || array['bulk'])",
                t = quote_literal(table)
            ),
        );
    }
    client
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The events of `queue` by transaction (in commit order) and table: ev_type, ev_data,
/// ev_extra1..4.
type Events = Vec<BTreeMap<String, Vec<Vec<Option<String>>>>>;

fn events(client: &mut Client, queue: &str) -> Events {
    let mut out: Events = Vec::new();
    let mut last_txid = None;
    let id = strings(
        client,
        &format!("select queue_id from pgq.queue where queue_name = '{queue}'"),
    )[0][0]
        .clone()
        .unwrap();
    for row in strings(
        client,
        &format!(
            "select ev_txid::text, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ev_extra4 \
             from pgq.event_{id} order by ev_id"
        ),
    ) {
        if last_txid != Some(row[0].clone()) {
            out.push(BTreeMap::new());
            last_txid = Some(row[0].clone());
        }
        out.last_mut()
            .unwrap()
            .entry(row[3].clone().unwrap_or_default())
            .or_default()
            .push(row[1..].to_vec());
    }
    out
}

/// Runs `sql` (a whole transaction); its outcome as Ok or the error message.
fn run(client: &mut Client, sql: &str) -> Result<(), String> {
    let outcome = client
        .batch_execute(sql)
        .map_err(|e| match e.as_db_error() {
            Some(db) => db.message().to_owned(),
            None => error_chain(&e),
        });
    if outcome.is_err() {
        exec(client, "rollback");
    }
    outcome
}

#[test]
fn random_statements_queue_the_same_events_set_based_as_row_wise() {
    let seed = std::env::var("SKYREP_SEED").ok().map_or_else(
        || {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |s| s.parse().expect("SKYREP_SEED is a number"),
    );
    let rerun = format!("seed {seed} (rerun with SKYREP_SEED={seed})");
    let mut rng = Rng(seed);
    let cluster = Cluster::start();
    let mut db = database(&cluster, "both");
    // Set-based really is set-based (and the row triggers are not).
    let statement_triggers = |client: &mut Client, name: &str| {
        strings(
            client,
            &format!(
                "select count(*) from pg_trigger where tgname like '\\{name}%' \
                 and tgtype & 1 = 0 and tgtype & 32 = 0"
            ),
        )[0][0]
            .clone()
    };
    assert_eq!(statement_triggers(&mut db, "_row"), Some("0".into()));
    assert_eq!(statement_triggers(&mut db, "_set"), Some("15".into()));

    let mut committed_transactions = 0;
    for i in 0..150 {
        // Columns added without a refresh: both take the generic path from then on.
        if i == 75 {
            exec(
                &mut db,
                "alter table plain add column added text default 'a b'",
            );
        }
        if i == 100 {
            exec(&mut db, "alter table child drop column v");
        }
        let mut sql = format!("begin; {}", session_settings(&mut rng));
        for _ in 0..1 + rng.below(3) {
            let statement = statement(&mut rng);
            if rng.chance(5) {
                // the 'local' role captures nothing, row-wise or set-based
                sql += &format!(
                    "set local session_replication_role = local; {statement}; \
                     set local session_replication_role = origin; "
                );
            } else {
                sql += &format!("{statement}; ");
            }
        }
        sql += "commit";
        committed_transactions += usize::from(run(&mut db, &sql).is_ok());
    }
    assert!(
        committed_transactions > 75,
        "{rerun}: only {committed_transactions} of 150 transactions committed"
    );
    let (want, got) = (events(&mut db, "qr"), events(&mut db, "qs"));
    let queued: usize = want
        .iter()
        .map(|t| t.values().map(Vec::len).sum::<usize>())
        .sum();
    eprintln!("{rerun}: {committed_transactions} transactions committed, {queued} events");
    assert!(queued > 1000, "{rerun}: only {queued} events");
    assert_eq!(got.len(), want.len(), "{rerun}: transactions with events");
    for (i, (mut w, mut g)) in want.into_iter().zip(got).enumerate() {
        // INSERT ... ON CONFLICT DO UPDATE (on plain): the set-based updates come before the
        // inserts (PostgreSQL fires the UPDATE statement triggers first), the row trigger's
        // events are in row order; the same events otherwise, and one per key.
        for events in [w.get_mut("public.plain"), g.get_mut("public.plain")]
            .into_iter()
            .flatten()
        {
            events.sort();
        }
        assert_eq!(
            g, w,
            "{rerun}: the events of transaction {i} (of those with events) differ"
        );
    }
}

/// The triggers of `table` in database postgres, as `name row` or `name statement`.
fn triggers(cluster: &Cluster, table: &str) -> Vec<String> {
    triggers_of(&mut cluster.connect("postgres"), table)
}

#[test]
fn bulk_statements_replicate_exactly() {
    let pair = Pair::new(
        "create table acct (id int primary key, owner text, balance numeric, note text, \
             at timestamptz default now()); \
         create table entry (id bigint primary key, acct int references acct on delete cascade \
             on update cascade, amount numeric, memo text)",
    );
    pair.provider
        .execute("insert into acct select g, 'o' || g, g from generate_series(1, 500) g");
    pair.ok(&["provider", "add", "--bulk", "acct", "entry"]);
    assert_eq!(
        triggers(&pair.provider, "acct"),
        [
            "_londiste_login statement",
            "_londiste_login_delete statement",
            "_londiste_login_guard row",
            "_londiste_login_insert statement",
            "_londiste_login_truncate statement",
        ]
    );
    pair.ok(&["subscriber", "add", "acct", "entry"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("acct", "id"), ("entry", "id")]);
    // A role without any pgq role writes too: the capture runs as its owner.
    pair.provider.execute(
        "create role app login; grant select, insert, update, delete on acct, entry to app",
    );
    let mut app = postgres::Config::new()
        .host_path(pair.provider.socket_dir())
        .port(pair.provider.port())
        .user("app")
        .dbname("postgres")
        .connect(postgres::NoTls)
        .unwrap();
    for round in 0..3 {
        pair.provider.execute(&format!(
            "insert into entry select g + {round} * 100000, a.id, g * 0.01, \
                 case g % 3 when 0 then null when 1 then '' else 'm é&=' || g end \
               from generate_series(1, 20000) g join acct a on a.id = 1 + g % 500; \
             update acct set balance = balance + e.s, note = 'round {round}' \
               from (select acct, sum(amount) s from entry group by acct) e where e.acct = acct.id; \
             update entry set amount = -amount where id % 7 = {round}; \
             update acct set id = id + 1000 where id % 50 = {round}; \
             delete from acct where id % 97 = {round}; \
             insert into acct select g, 'new', 0 from generate_series(600 + {round} * 10, 605 + {round} * 10) g \
               on conflict (id) do update set owner = 'upserted'"
        ));
        app.batch_execute(&format!(
            "set search_path = public, pg_catalog; set datestyle = 'SQL, DMY'; \
             update acct set at = timestamptz '2001-02-03 04:05:06+07' + {round} * interval '1 day' \
               where id < 200; \
             delete from entry where id % 11 = {round}; \
             update acct set owner = owner where id = 2; \
             insert into acct values ({}, 'one row', 1, null, null)",
            2000 + round
        ))
        .unwrap();
    }
    pair.wait_equal(&[("acct", "id"), ("entry", "id")]);
    stop(&mut replay, libc::SIGINT);
}

/// A cluster's database `db` with PgQ 3, skyrep's capture functions and queue `q`.
fn capture_db(cluster: &Cluster, db: &str) -> Client {
    cluster.create_database(db);
    let mut client = cluster.connect(db);
    exec(&mut client, "create extension pgq");
    exec(&mut client, CAPTURE);
    exec(&mut client, "select pgq.create_queue('q')");
    client
}

fn error(client: &mut Client, sql: &str) -> String {
    let err = client.batch_execute(sql).expect_err(sql);
    err.as_db_error()
        .map_or_else(|| error_chain(&err), |d| d.message().to_owned())
}

#[test]
fn inheritance_and_partitions_never_get_wrong_events() {
    let cluster = Cluster::start();
    let mut db = capture_db(&cluster, "cap");
    exec(
        &mut db,
        "create table t (id int primary key, v text); \
         insert into t values (1, 'a'); \
         select pgq.skyrep_capture_create('t', 'q', '_cap', array['bulk']); \
         create table other (id int primary key); \
         select pgq.skyrep_capture_create('other', 'q', '_cap', array['bulk'])",
    );
    // The table cannot become a child or a partition: a statement on the parent would
    // change its rows without firing its statement triggers.
    exec(
        &mut db,
        "create table p (id int primary key, v text); \
         create table pp (id int primary key) partition by range (id)",
    );
    assert_eq!(
        error(&mut db, "alter table other inherit p"),
        "trigger \"_cap_guard\" prevents table \"other\" from becoming an inheritance child"
    );
    assert_eq!(
        error(
            &mut db,
            "alter table pp attach partition other for values from (0) to (9)"
        ),
        "trigger \"_cap_guard\" prevents table \"other\" from becoming a partition"
    );
    // A child added later: an UPDATE or DELETE of the parent could change the child's rows
    // too, which its transition tables would show as the parent's: it fails, loudly.
    exec(
        &mut db,
        "create table c () inherits (t); insert into c values (2, 'child')",
    );
    exec(&mut db, "insert into t values (3, 'parent')");
    for sql in ["update t set v = 'x'", "delete from t where id = 3"] {
        assert!(
            error(&mut db, sql).contains("cannot tell the rows of inheritance children"),
            "{sql}"
        );
    }
    // After a refresh the parent is captured per row again, as PgQ does: its own rows only.
    exec(&mut db, "select pgq.skyrep_capture_refresh('t')");
    assert_eq!(
        triggers_of(&mut db, "t"),
        ["_cap row", "_cap_truncate statement"]
    );
    exec(&mut db, "update t set v = 'x'");
    let events = strings(
        &mut db,
        "select ev_type, ev_data, ev_extra1 from pgq.event_1 order by ev_id",
    );
    let e = |t: &str, d: &str| {
        vec![
            Some(t.to_owned()),
            Some(d.to_owned()),
            Some("public.t".to_owned()),
        ]
    };
    assert_eq!(
        events,
        [
            e("I:id", "id=3&v=parent"),
            e("U:id", "id=1&v=x"),
            e("U:id", "id=3&v=x")
        ]
    );
    // A partitioned table keeps the row trigger (events name the partitioned table).
    exec(
        &mut db,
        "create table part (id int primary key, v text) partition by range (id); \
         create table part1 partition of part for values from (0) to (100); \
         select pgq.skyrep_capture_create('part', 'q', '_cap', array['bulk']); \
         truncate pgq.event_1_0, pgq.event_1_1, pgq.event_1_2; \
         insert into part select g, 'v' from generate_series(1, 3) g",
    );
    assert_eq!(
        triggers_of(&mut db, "part"),
        ["_cap row", "_cap_truncate statement"]
    );
    assert_eq!(
        strings(
            &mut db,
            "select ev_extra1, count(*) from pgq.event_1 group by 1"
        ),
        [[Some("public.part".to_owned()), Some("3".to_owned())]]
    );
    // An AFTER trigger of the table may write to it in between the row trigger's events:
    // the table keeps the row trigger, and one added later makes its writes fail until a
    // refresh. BEFORE triggers and other capture triggers do not matter.
    exec(
        &mut db,
        "create function touch() returns trigger language plpgsql as \
             $$ begin update a set v = v || '+' where id = new.id; return null; end $$; \
         create table a (id int primary key, v text); \
         create trigger zz after insert on a for each row execute function touch(); \
         select pgq.skyrep_capture_create('a', 'q', '_cap', array['bulk']); \
         create table bf (id int primary key, v text); \
         create trigger b4 before insert on bf for each row execute function touch(); \
         select pgq.skyrep_capture_create('bf', 'q', 'other', array['bulk']); \
         select pgq.skyrep_capture_create('bf', 'q', '_cap', array['bulk'])",
    );
    assert_eq!(
        triggers_of(&mut db, "a"),
        ["_cap row", "_cap_truncate statement", "zz row"]
    );
    assert!(triggers_of(&mut db, "bf").contains(&"_cap_insert statement".to_owned()));
    exec(
        &mut db,
        "create trigger zz after delete on other for each statement execute function touch()",
    );
    assert_eq!(
        error(&mut db, "insert into other values (1)"),
        "skyrep capture: public.other: set-based capture cannot keep its events in order with \
         the writes of the table's other AFTER triggers; run \
         pgq.skyrep_capture_refresh('public.other') to capture it per row"
    );
    exec(
        &mut db,
        "select pgq.skyrep_capture_refresh('other'); insert into other values (1)",
    );
    // So do tables with arguments evaluated per row.
    exec(
        &mut db,
        "create table w (id int primary key, v text); \
         select pgq.skyrep_capture_create('w', 'q', '_cap', array['bulk', 'when=v is not null'])",
    );
    assert_eq!(
        triggers_of(&mut db, "w"),
        ["_cap row", "_cap_truncate statement"]
    );
}

/// The triggers of `table`, as `name row` or `name statement`.
fn triggers_of(client: &mut Client, table: &str) -> Vec<String> {
    strings(
        client,
        &format!(
            "select tgname || case when tgtype & 1 = 1 then ' row' else ' statement' end \
             from pg_trigger where tgrelid = {}::regclass and not tgisinternal order by 1",
            quote_literal(table)
        ),
    )
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

#[test]
fn adding_again_switches_modes_and_refresh_keeps_the_mode() {
    let pair = Pair::new("create table t (id int primary key, v text)");
    let bulk = [
        "_londiste_login statement",
        "_londiste_login_delete statement",
        "_londiste_login_guard row",
        "_londiste_login_insert statement",
        "_londiste_login_truncate statement",
    ];
    let rows = ["_londiste_login row", "_londiste_login_truncate statement"];
    let functions = || {
        pair.provider.value(
            "postgres",
            "select count(*) from pg_proc where proname like 'skyrep\\_cap\\_%'",
        )
    };
    pair.ok(&["provider", "add", "t"]);
    assert_eq!(triggers(&pair.provider, "t"), rows);
    pair.ok(&["provider", "add", "t", "--bulk"]);
    assert_eq!(triggers(&pair.provider, "t"), bulk);
    let listed = "select count(*) || ' ' || string_agg(array_to_string(args, ','), ';') \
                  from pgq.skyrep_capture_list()";
    assert_eq!(
        pair.provider.value("postgres", listed),
        Some("1 keymove,bulk".into())
    );
    // Refreshing (after a column change, or by provider execute) keeps the mode.
    pair.provider.execute("alter table t add column n int");
    pair.ok(&["provider", "refresh-trigger", "t"]);
    assert_eq!(triggers(&pair.provider, "t"), bulk);
    pair.provider.execute("insert into t values (1, 'a', 2)");
    assert_eq!(
        pair.provider.value(
            "postgres",
            "select ev_data from pgq.event_1 where ev_type = 'I:id'"
        ),
        Some("id=1&v=a&n=2".into())
    );
    // Installing again regenerates every capture function in its own mode.
    pair.ok(&["provider", "install"]);
    assert_eq!(triggers(&pair.provider, "t"), bulk);
    pair.provider.execute("insert into t values (2, 'b', 3)");
    assert_eq!(
        pair.provider.value(
            "postgres",
            "select string_agg(ev_data, ' ' order by ev_id) from pgq.event_1 \
             where ev_type = 'I:id'"
        ),
        Some("id=1&v=a&n=2 id=2&v=b&n=3".into())
    );
    pair.ok(&["provider", "add", "t"]);
    assert_eq!(triggers(&pair.provider, "t"), rows);
    assert_eq!(
        pair.provider.value("postgres", listed),
        Some("1 keymove".into())
    );
    assert_eq!(functions(), Some("1".into()));
    pair.ok(&["provider", "add", "t", "--bulk"]);
    pair.ok(&["provider", "remove", "t"]);
    assert_eq!(triggers(&pair.provider, "t"), Vec::<String>::new());
    assert_eq!(functions(), Some("0".into()));
}

#[test]
fn set_based_inserts_follow_the_queue() {
    let cluster = Cluster::start();
    let mut db = capture_db(&cluster, "cap");
    exec(
        &mut db,
        "create table r (id int primary key, v text); \
         create table b (id int primary key, v text); \
         select pgq.skyrep_capture_create('r', 'q', '_cap'); \
         select pgq.skyrep_capture_create('b', 'q', '_cap', array['bulk'])",
    );
    let count = |db: &mut Client, table: &str| {
        strings(db, &format!("select count(*) from {table}"))[0][0]
            .clone()
            .unwrap()
    };
    // Checked inserts (a per-transaction limit, inserts disabled) go per event, and fail
    // as the row trigger's do.
    exec(&mut db, "update pgq.queue set queue_per_tx_limit = 5");
    for table in ["r", "b"] {
        assert_eq!(
            error(
                &mut db,
                &format!("insert into {table} select g from generate_series(1, 8) g")
            ),
            "Queue 'q' allows max 5 events from one TX",
            "{table}"
        );
        exec(
            &mut db,
            &format!("insert into {table} select g from generate_series(1, 4) g"),
        );
    }
    exec(
        &mut db,
        "update pgq.queue set queue_per_tx_limit = null, queue_disable_insert = true",
    );
    for table in ["r", "b"] {
        assert_eq!(
            error(&mut db, &format!("delete from {table}")),
            "Insert into queue disallowed",
            "{table}"
        );
    }
    exec(&mut db, "update pgq.queue set queue_disable_insert = false");
    assert_eq!(count(&mut db, "pgq.event_1_0"), "8");
    // After a rotation the events go to the queue's next table.
    exec(
        &mut db,
        "update pgq.queue set queue_rotation_period = '0'; \
         select pgq.maint_rotate_tables_step1('q'); select pgq.maint_rotate_tables_step2()",
    );
    exec(&mut db, "update b set v = 'x'");
    assert_eq!(count(&mut db, "pgq.event_1_1"), "4");
    // A queue made again (other table names than when the trigger was generated) too.
    exec(
        &mut db,
        "select pgq.drop_queue('q'); select pgq.create_queue('q')",
    );
    exec(&mut db, "delete from b where id < 3");
    assert_eq!(
        strings(
            &mut db,
            "select ev_type, ev_data from pgq.event_2_0 order by ev_id"
        ),
        [
            [Some("D:id".to_owned()), Some("id=1&v=x".to_owned())],
            [Some("D:id".to_owned()), Some("id=2&v=x".to_owned())]
        ]
    );
}
