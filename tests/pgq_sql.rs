//! Tests of the embedded pgq core SQL (queues, ticks, batches, retry, rotation) on real clusters.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use postgres::types::{FromSqlOwned, ToSql};
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Row};

use crate::cluster::Cluster;
use crate::util::error_chain;

const PGQ_CORE: &str = include_str!("../src/queue/sql/pgq_core.sql");
const PGQ_GRANTS: &str = include_str!("../src/queue/sql/pgq_grants.sql");
const CAPTURE: &str = include_str!("../src/queue/sql/skyrep_capture.sql");

/// Upper bound for every loop that waits for other threads.
const DEADLINE: Duration = Duration::from_secs(60);

/// Installs pgq_core.sql with its privileges (pgq_grants.sql), as `skyrep install` does.
fn install(client: &mut impl GenericClient) {
    client
        .batch_execute(PGQ_CORE)
        .unwrap_or_else(|e| panic!("installing pgq_core.sql failed: {}", error_chain(&e)));
    client
        .batch_execute(PGQ_GRANTS)
        .unwrap_or_else(|e| panic!("installing pgq_grants.sql failed: {}", error_chain(&e)));
}

/// A cluster with pgq installed by the superuser, and a connection to it.
fn start() -> (Cluster, Client) {
    let cluster = Cluster::start();
    let mut client = cluster.connect("postgres");
    install(&mut client);
    (cluster, client)
}

fn connect_as(cluster: &Cluster, user: &str) -> Client {
    postgres::Config::new()
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user(user)
        .dbname("postgres")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("cannot connect as {user}: {}", error_chain(&e)))
}

/// The first column of the only row of `sql`.
fn one<T: FromSqlOwned>(
    client: &mut impl GenericClient,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> T {
    client
        .query_one(sql, params)
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {}", error_chain(&e)))
        .get(0)
}

fn exec(client: &mut impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) {
    client
        .execute(sql, params)
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {}", error_chain(&e)));
}

/// The message of the error `sql` fails with.
fn error_of(client: &mut impl GenericClient, sql: &str, params: &[&(dyn ToSql + Sync)]) -> String {
    match client.query(sql, params) {
        Ok(rows) => panic!(
            "{sql}\nsucceeded with {} rows, expected an error",
            rows.len()
        ),
        Err(e) => e
            .as_db_error()
            .map_or_else(|| error_chain(&e), |db| db.message().to_owned()),
    }
}

/// Creates `name` ticking on every ticker call (no max_lag wait, no idle back-off).
fn create_eager_queue(client: &mut impl GenericClient, name: &str) {
    let created: i32 = one(client, "select pgq.create_queue($1)", &[&name]);
    assert_eq!(created, 1);
    for (param, value) in [("ticker_max_lag", "0"), ("ticker_idle_period", "0")] {
        let set: i32 = one(
            client,
            "select pgq.set_queue_config($1, $2, $3)",
            &[&name, &param, &value],
        );
        assert_eq!(set, 1);
    }
}

fn register(client: &mut impl GenericClient, queue: &str, consumer: &str) -> i32 {
    one(
        client,
        "select pgq.register_consumer($1, $2)",
        &[&queue, &consumer],
    )
}

fn tick(client: &mut impl GenericClient, queue: &str) -> Option<i64> {
    one(client, "select pgq.ticker($1)", &[&queue])
}

fn insert(client: &mut impl GenericClient, queue: &str, ev_type: &str, data: &str) -> i64 {
    one(
        client,
        "select pgq.insert_event($1, $2, $3)",
        &[&queue, &ev_type, &data],
    )
}

fn next_batch(client: &mut impl GenericClient, queue: &str, consumer: &str) -> Option<i64> {
    one(
        client,
        "select pgq.next_batch($1, $2)",
        &[&queue, &consumer],
    )
}

fn finish(client: &mut impl GenericClient, batch: i64) {
    let done: i32 = one(client, "select pgq.finish_batch($1)", &[&batch]);
    assert_eq!(done, 1, "finish_batch({batch})");
}

#[derive(Clone, Debug, PartialEq)]
struct Event {
    id: i64,
    txid: i64,
    retry: Option<i32>,
    ev_type: Option<String>,
    data: Option<String>,
    extra: [Option<String>; 4],
}

impl Event {
    fn from_row(row: &Row) -> Event {
        Event {
            id: row.get("ev_id"),
            txid: row.get("ev_txid"),
            retry: row.get("ev_retry"),
            ev_type: row.get("ev_type"),
            data: row.get("ev_data"),
            extra: [
                row.get("ev_extra1"),
                row.get("ev_extra2"),
                row.get("ev_extra3"),
                row.get("ev_extra4"),
            ],
        }
    }

    fn data(&self) -> &str {
        self.data.as_deref().unwrap_or("")
    }
}

fn batch_events(client: &mut impl GenericClient, batch: i64) -> Vec<Event> {
    client
        .query("select * from pgq.get_batch_events($1)", &[&batch])
        .unwrap_or_else(|e| panic!("get_batch_events({batch}): {}", error_chain(&e)))
        .iter()
        .map(Event::from_row)
        .collect()
}

/// Reads and finishes every batch the consumer can get now; returns the batches' events.
fn drain(client: &mut Client, queue: &str, consumer: &str) -> Vec<Vec<Event>> {
    let mut batches = Vec::new();
    for _ in 0..10_000 {
        let mut tx = client.transaction().unwrap();
        let Some(batch) = next_batch(&mut tx, queue, consumer) else {
            return batches;
        };
        batches.push(batch_events(&mut tx, batch));
        finish(&mut tx, batch);
        tx.commit().unwrap();
    }
    panic!("{consumer} never ran out of batches");
}

fn datas(events: &[Event]) -> Vec<&str> {
    events.iter().map(Event::data).collect()
}

fn last_tick_of(client: &mut impl GenericClient, queue: &str, consumer: &str) -> i64 {
    one(
        client,
        "select last_tick from pgq.get_consumer_info($1, $2)",
        &[&queue, &consumer],
    )
}

#[test]
fn install_is_idempotent_and_keeps_events() {
    let cluster = Cluster::start();
    let mut admin = cluster.connect("postgres");
    admin
        .batch_execute(
            "create role pgq_owner login; grant create on database postgres to pgq_owner; \
             create role pgq_writer; create role app login in role pgq_writer",
        )
        .unwrap();

    // A plain role that may create schemas installs it.
    let mut owner = connect_as(&cluster, "pgq_owner");
    install(&mut owner);
    assert_eq!(
        one::<i32>(&mut owner, "select pgq.skyrep_schema_version()", &[]),
        1
    );
    assert_eq!(
        one::<String>(&mut owner, "select pgq.version()", &[]),
        "3.5.1"
    );
    create_eager_queue(&mut owner, "q");
    exec(
        &mut owner,
        "select pgq.set_queue_config('q', 'ticker_max_count', '77')",
        &[],
    );
    assert_eq!(register(&mut owner, "q", "c"), 1);
    insert(&mut owner, "q", "t", "before");
    tick(&mut owner, "q").unwrap();
    insert(&mut owner, "q", "t", "queued");

    // A producer in pgq_writer (which a role without CREATEROLE cannot create, but uses when
    // it exists) writes through the SECURITY DEFINER function, and may not use the
    // administrative functions or read the event tables.
    let mut app = connect_as(&cluster, "app");
    assert!(error_of(&mut app, "select pgq.create_queue('x')", &[]).contains("permission denied"));
    assert!(error_of(&mut app, "select * from pgq.event_1_0", &[]).contains("permission denied"));
    let mut producer = app.transaction().unwrap();
    insert(&mut producer, "q", "t", "during");

    // Installing again, twice (once inside a transaction, as skyrep does), does not wait for
    // the open producer transaction and keeps everything.
    exec(&mut owner, "set lock_timeout = '5s'", &[]);
    install(&mut owner);
    let mut tx = owner.transaction().unwrap();
    install(&mut tx);
    tx.commit().unwrap();
    producer.commit().unwrap();
    insert(&mut app, "q", "t", "after");

    let max_count: i32 = one(
        &mut owner,
        "select queue_ticker_max_count from pgq.get_queue_info('q')",
        &[],
    );
    assert_eq!(max_count, 77);
    assert_eq!(register(&mut owner, "q", "c"), 0);
    tick(&mut owner, "q").unwrap();
    let events: Vec<Event> = drain(&mut owner, "q", "c").concat();
    assert_eq!(datas(&events), ["before", "queued", "during", "after"]);
    let ticks: i64 = one(&mut owner, "select count(*) from pgq.tick", &[]);
    assert_eq!(ticks, 3, "tick 1 from create_queue and two more");

    // New queues' event tables get the privileges granted on pgq.event_template.
    exec(&mut owner, "grant select on pgq.event_template to app", &[]);
    one::<i32>(&mut owner, "select pgq.create_queue('q2')", &[]);
    let readable: i64 = one(&mut app, "select count(*) from pgq.event_2_0", &[]);
    assert_eq!(readable, 0);
    assert_eq!(
        error_of(&mut owner, "select pgq.grant_perms('nope')", &[]),
        "Queue not found"
    );
}

#[test]
fn create_drop_and_config() {
    let (_cluster, mut client) = start();
    let c = &mut client;
    assert_eq!(one::<i32>(c, "select pgq.create_queue('q')", &[]), 1);
    assert_eq!(one::<i32>(c, "select pgq.create_queue('q')", &[]), 0);
    assert_eq!(
        error_of(c, "select pgq.create_queue(null)", &[]),
        "Invalid NULL value"
    );

    // PgQ's defaults, storage and table layout.
    let row = c
        .query_one(
            "select queue_ntables, queue_cur_table, queue_rotation_period::text, \
                    queue_ticker_max_count, queue_ticker_max_lag::text, \
                    queue_ticker_idle_period::text, queue_external_ticker, queue_ticker_paused, \
                    queue_data_pfx, queue_event_seq, queue_tick_seq, queue_per_tx_limit \
               from pgq.queue where queue_name = 'q'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 3);
    assert_eq!(row.get::<_, i32>(1), 0);
    assert_eq!(row.get::<_, String>(2), "02:00:00");
    assert_eq!(row.get::<_, i32>(3), 500);
    assert_eq!(row.get::<_, String>(4), "00:00:03");
    assert_eq!(row.get::<_, String>(5), "00:01:00");
    assert!(!row.get::<_, bool>(6));
    assert!(!row.get::<_, bool>(7));
    let pfx: String = row.get(8);
    assert_eq!(pfx, "pgq.event_1");
    assert_eq!(row.get::<_, String>(9), "pgq.event_1_id_seq");
    assert_eq!(row.get::<_, String>(10), "pgq.event_1_tick_seq");
    assert_eq!(row.get::<_, Option<i32>>(11), None);
    for i in 0..3 {
        let table = format!("pgq.event_1_{i}");
        let row = c
            .query_one(
                "select c.reloptions::text, \
                        (select t.reloptions::text from pg_class t where t.oid = c.reltoastrelid), \
                        (select i.inhparent::regclass::text from pg_inherits i \
                          where i.inhrelid = c.oid), \
                        (select pg_get_indexdef(x.indexrelid) from pg_index x \
                          where x.indrelid = c.oid) \
                   from pg_class c where c.oid = $1::text::regclass",
                &[&table],
            )
            .unwrap();
        assert_eq!(
            row.get::<_, String>(0),
            "{fillfactor=100,autovacuum_enabled=off}"
        );
        assert_eq!(row.get::<_, String>(1), "{autovacuum_enabled=off}");
        assert_eq!(row.get::<_, String>(2), "pgq.event_1");
        assert_eq!(
            row.get::<_, String>(3),
            format!("CREATE INDEX event_1_{i}_txid_idx ON {table} USING btree (ev_txid)")
        );
    }
    let parent: String = one(
        c,
        "select inhparent::regclass::text from pg_inherits where inhrelid = 'pgq.event_1'::regclass",
        &[],
    );
    assert_eq!(parent, "pgq.event_template");
    assert_eq!(
        one::<Option<i64>>(c, "select last_tick_id from pgq.get_queue_info('q')", &[]),
        Some(1),
        "create_queue ticks once"
    );

    // Every settable parameter, named without its queue_ prefix.
    for (param, value, shown) in [
        ("ticker_max_count", "7", "7"),
        ("ticker_max_lag", "2 seconds", "00:00:02"),
        ("ticker_idle_period", "5 minutes", "00:05:00"),
        ("ticker_paused", "true", "true"),
        ("rotation_period", "1 hour", "01:00:00"),
        ("external_ticker", "true", "true"),
    ] {
        let set: i32 = one(
            c,
            "select pgq.set_queue_config('q', $1, $2)",
            &[&param, &value],
        );
        assert_eq!(set, 1);
        let sql = format!("select queue_{param}::text from pgq.queue where queue_name = 'q'");
        assert_eq!(one::<String>(c, &sql, &[]), shown, "{param}");
    }
    assert_eq!(
        error_of(c, "select pgq.set_queue_config('q', 'bogus', '1')", &[]),
        "cannot change parameter \"boguss\""
    );
    assert_eq!(
        error_of(
            c,
            "select pgq.set_queue_config('q', 'data_pfx', 'public.x')",
            &[]
        ),
        "cannot change parameter \"data_pfxs\""
    );
    assert_eq!(
        error_of(
            c,
            "select pgq.set_queue_config('nope', 'ticker_max_count', '1')",
            &[]
        ),
        "No such event queue"
    );
    assert_eq!(
        error_of(c, "select pgq.set_queue_config('q', null, '1')", &[]),
        "Invalid NULL value"
    );

    // A hostile queue name is only data.
    let weird = "we'ird\"; drop table pgq.tick; --";
    create_eager_queue(c, weird);
    register(c, weird, "c");
    insert(c, weird, "t", "x");
    tick(c, weird).unwrap();
    assert_eq!(datas(&drain(c, weird, "c").concat()), ["x"]);

    // Dropping: not while consumers are attached, unless forced.
    assert_eq!(
        error_of(c, "select pgq.drop_queue($1)", &[&weird]),
        "cannot drop queue, consumers still attached"
    );
    let dropped: i32 = one(c, "select pgq.drop_queue($1, true)", &[&weird]);
    assert_eq!(dropped, 1);
    let dropped: i32 = one(c, "select pgq.drop_queue('q')", &[]);
    assert_eq!(dropped, 1);
    let left: i64 = one(
        c,
        "select (select count(*) from pgq.queue) + (select count(*) from pgq.tick) \
              + (select count(*) from pgq.subscription) + (select count(*) from pgq.consumer) \
              + (select count(*) from pg_class where relnamespace = 'pgq'::regnamespace \
                    and relname like 'event\\_%' and relname <> 'event_template')",
        &[],
    );
    assert_eq!(
        left, 0,
        "no rows, event tables or sequences are left behind"
    );
    assert_eq!(
        error_of(c, "select pgq.drop_queue('q')", &[]),
        "No such event queue"
    );
    assert_eq!(
        one::<Option<i32>>(c, "select pgq.drop_queue(null)", &[]),
        None
    );
    assert_eq!(
        error_of(c, "select pgq.insert_event('q', 't', 'd')", &[]),
        "No such queue"
    );
    // Utilities.
    let quoted: Vec<String> = c
        .query(
            "select pgq.quote_fqname(n) from unnest(array['t', 'a.B c', 'x.y.z']) n",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(quoted, ["public.t", "a.\"B c\"", "x.\"y.z\""]);
    c.batch_execute("create sequence s").unwrap();
    let moved: Vec<i64> = [
        "select pgq.seq_getval('s')",
        "select pgq.seq_setval('public.s', 10)",
        "select pgq.seq_setval('s', 5)",
        "select pgq.seq_setval('s', 15)",
        "select pgq.seq_getval('public.s')",
    ]
    .iter()
    .map(|sql| one::<i64>(c, sql, &[]))
    .collect();
    assert_eq!(moved, [1, 10, 10, 15, 15], "sequences only move forward");
    assert_eq!(one::<i32>(c, "select pgq.tune_storage('nope')", &[]), 0);
    let to_vacuum: i64 = one(c, "select count(*) from pgq.maint_tables_to_vacuum()", &[]);
    assert_eq!(to_vacuum, 0, "autovacuum is on");

    // A queue created after the others were dropped works from the first event.
    create_eager_queue(c, "again");
    register(c, "again", "c");
    insert(c, "again", "t", "y");
    tick(c, "again").unwrap();
    assert_eq!(datas(&drain(c, "again", "c").concat()), ["y"]);
}

#[test]
fn ticker_rules() {
    let (_cluster, mut client) = start();
    let c = &mut client;
    one::<i32>(c, "select pgq.create_queue('q')", &[]);
    c.batch_execute(
        "select pgq.set_queue_config('q', 'ticker_max_lag', '1 hour'); \
         select pgq.set_queue_config('q', 'ticker_idle_period', '1 hour'); \
         select pgq.set_queue_config('q', 'ticker_max_count', '3')",
    )
    .unwrap();

    // A queue with a single tick gets a second one; then, idle and recently ticked, none.
    assert_eq!(tick(c, "q"), Some(2));
    assert_eq!(tick(c, "q"), None);
    // max_count: a fresh event sequence reads 1, so 4 events count as 3 new ones.
    for _ in 0..4 {
        insert(c, "q", "t", "d");
    }
    assert_eq!(tick(c, "q"), Some(3));
    insert(c, "q", "t", "d");
    insert(c, "q", "t", "d");
    assert_eq!(
        tick(c, "q"),
        None,
        "2 new events, max_count 3, max_lag 1 hour"
    );
    insert(c, "q", "t", "d");
    assert_eq!(tick(c, "q"), Some(4));
    // max_lag: waiting events tick once they are older than it.
    insert(c, "q", "t", "d");
    assert_eq!(tick(c, "q"), None);
    exec(
        c,
        "select pgq.set_queue_config('q', 'ticker_max_lag', '0')",
        &[],
    );
    assert_eq!(tick(c, "q"), Some(5));
    // Idle: with max_lag 0 and idle_period 0 every call ticks; with a long max_lag none.
    exec(
        c,
        "select pgq.set_queue_config('q', 'ticker_idle_period', '0')",
        &[],
    );
    assert_eq!(tick(c, "q"), Some(6));
    exec(
        c,
        "select pgq.set_queue_config('q', 'ticker_max_lag', '1 hour')",
        &[],
    );
    assert_eq!(tick(c, "q"), None);

    // force_tick returns the current last tick and makes the next ticker call tick.
    assert_eq!(
        one::<Option<i64>>(c, "select pgq.force_tick('q')", &[]),
        Some(6)
    );
    assert_eq!(tick(c, "q"), Some(7));
    assert_eq!(tick(c, "q"), None);

    // ticker() ticks every due queue and counts them; paused and external queues are skipped.
    create_eager_queue(c, "p");
    create_eager_queue(c, "x");
    assert_eq!(one::<i64>(c, "select pgq.ticker()", &[]), 2, "p and x");
    exec(
        c,
        "select pgq.set_queue_config('p', 'ticker_paused', 'true')",
        &[],
    );
    exec(
        c,
        "select pgq.set_queue_config('x', 'external_ticker', 'true')",
        &[],
    );
    assert_eq!(one::<i64>(c, "select pgq.ticker()", &[]), 0);
    assert_eq!(
        error_of(c, "select pgq.ticker('p')", &[]),
        "Ticker has been paused for this queue"
    );
    assert_eq!(
        error_of(c, "select pgq.ticker('x')", &[]),
        "This queue has external tick source."
    );
    assert_eq!(
        error_of(c, "select pgq.ticker('nope')", &[]),
        "no such queue"
    );
    assert_eq!(
        one::<Option<i64>>(c, "select pgq.force_tick('p')", &[]),
        None
    );

    // The external ticker inserts the given tick and moves both sequences forward.
    let id: i64 = one(
        c,
        "select pgq.ticker('x', 100, now() - interval '1 minute', 5000)",
        &[],
    );
    assert_eq!(id, 100);
    let row = c
        .query_one(
            "select pgq.seq_getval(queue_tick_seq), pgq.seq_getval(queue_event_seq) \
               from pgq.queue where queue_name = 'x'",
            &[],
        )
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (100, 5000));
    assert_eq!(
        error_of(c, "select pgq.ticker('q', 200, now(), 1)", &[]),
        "queue not found or ticker disabled: q"
    );
    assert_eq!(
        error_of(c, "select pgq.ticker('p', 200, now(), 1)", &[]),
        "queue not found or ticker disabled: p"
    );
}

#[test]
fn ticker_in_an_old_snapshot_cannot_add_an_older_tick() {
    let (cluster, mut client) = start();
    create_eager_queue(&mut client, "q");
    let mut other = cluster.connect("postgres");
    let mut old = other
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    one::<i32>(&mut old, "select 1", &[]);
    // Another ticker ticks after the snapshot was taken...
    tick(&mut client, "q").unwrap();
    // ... so a tick from the old snapshot would come after it with an older snapshot.
    let err = error_of(&mut old, "select pgq.ticker('q')", &[]);
    assert!(err.contains("could not serialize access"), "{err}");
}

#[test]
fn long_transaction_lands_in_exactly_one_batch() {
    let (cluster, mut client) = start();
    let c = &mut client;
    create_eager_queue(c, "q");
    register(c, "q", "c");

    // A transaction that writes far below the later ticks' xmax (read by id list) and one
    // that writes just below it (read by the range scan); both stay open over many ticks.
    let mut far = cluster.connect("postgres");
    let mut far_tx = far.transaction().unwrap();
    insert(&mut far_tx, "q", "t", "far");
    for i in 0..150 {
        insert(c, "q", "t", &format!("short{i}"));
    }
    let mut near = cluster.connect("postgres");
    let mut near_tx = near.transaction().unwrap();
    insert(&mut near_tx, "q", "t", "near");
    insert(c, "q", "t", "short150");

    let mut seen: Vec<Vec<Event>> = Vec::new();
    for _ in 0..3 {
        tick(c, "q").unwrap();
        seen.extend(drain(c, "q", "c"));
    }
    far_tx.commit().unwrap();
    insert(c, "q", "t", "after1");
    tick(c, "q").unwrap();
    seen.extend(drain(c, "q", "c"));
    near_tx.commit().unwrap();
    insert(c, "q", "t", "after2");
    for _ in 0..3 {
        tick(c, "q").unwrap();
        seen.extend(drain(c, "q", "c"));
    }

    let all: Vec<&str> = seen.iter().flat_map(|b| datas(b)).collect();
    let mut expected: Vec<String> = (0..=150).map(|i| format!("short{i}")).collect();
    expected.extend(["far", "near", "after1", "after2"].map(String::from));
    let mut sorted = all.clone();
    sorted.sort_unstable();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "every event exactly once");
    let batch_of = |name: &str| {
        seen.iter()
            .position(|b| b.iter().any(|e| e.data() == name))
            .unwrap()
    };
    assert_eq!(batch_of("far"), batch_of("after1"));
    assert_eq!(batch_of("near"), batch_of("after2"));
    assert!(batch_of("short150") < batch_of("far"));
    // Within a batch, events come in ev_id order.
    for batch in &seen {
        assert!(batch.windows(2).all(|w| w[0].id < w[1].id));
    }
}

#[test]
fn concurrent_producers_exactly_once_for_two_consumers() {
    const PRODUCERS: usize = 4;
    const TXS: usize = 40;
    const PER_TX: usize = 25;
    let (cluster, mut admin) = start();
    let cluster = Arc::new(cluster);
    create_eager_queue(&mut admin, "q");
    register(&mut admin, "q", "c1");
    register(&mut admin, "q", "c2");

    let producing = Arc::new(AtomicBool::new(true));
    let final_tick = Arc::new(AtomicI64::new(i64::MAX));

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let cluster = Arc::clone(&cluster);
            thread::spawn(move || {
                let mut client = cluster.connect("postgres");
                let mut committed = Vec::new();
                for t in 0..TXS {
                    let rollback = t % 4 == 3;
                    let kind = if rollback { "rolled-back" } else { "committed" };
                    let data: Vec<String> =
                        (0..PER_TX).map(|i| format!("p{p}-t{t}-e{i}")).collect();
                    let mut tx = client.transaction().unwrap();
                    exec(
                        &mut tx,
                        "select pgq.insert_event('q', $1, d) from unnest($2::text[]) d",
                        &[&kind, &data],
                    );
                    if rollback {
                        tx.rollback().unwrap();
                    } else {
                        tx.commit().unwrap();
                        committed.extend(data);
                    }
                }
                committed
            })
        })
        .collect();

    // Two tickers at once must not interleave their ticks.
    let tickers: Vec<_> = (0..2)
        .map(|_| {
            let cluster = Arc::clone(&cluster);
            let producing = Arc::clone(&producing);
            thread::spawn(move || {
                let mut client = cluster.connect("postgres");
                let mut ticks = 0;
                while producing.load(Ordering::SeqCst) {
                    ticks += one::<i64>(&mut client, "select pgq.ticker()", &[]);
                    thread::sleep(Duration::from_millis(3));
                }
                ticks
            })
        })
        .collect();

    let consumers: Vec<_> = ["c1", "c2"]
        .into_iter()
        .map(|name| {
            let cluster = Arc::clone(&cluster);
            let final_tick = Arc::clone(&final_tick);
            thread::spawn(move || {
                let mut client = cluster.connect("postgres");
                let mut seen = Vec::new();
                let start = Instant::now();
                loop {
                    assert!(start.elapsed() < DEADLINE, "{name} did not catch up");
                    let mut tx = client.transaction().unwrap();
                    match next_batch(&mut tx, "q", name) {
                        Some(batch) => {
                            seen.extend(batch_events(&mut tx, batch));
                            finish(&mut tx, batch);
                            tx.commit().unwrap();
                        }
                        None => {
                            tx.commit().unwrap();
                            let target = final_tick.load(Ordering::SeqCst);
                            if last_tick_of(&mut client, "q", name) >= target {
                                return seen;
                            }
                            thread::sleep(Duration::from_millis(2));
                        }
                    }
                }
            })
        })
        .collect();

    let mut expected: Vec<String> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    producing.store(false, Ordering::SeqCst);
    let ticks: i64 = tickers.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(
        ticks > 2,
        "the tickers ticked while producers wrote ({ticks})"
    );
    final_tick.store(tick(&mut admin, "q").unwrap(), Ordering::SeqCst);

    expected.sort_unstable();
    assert_eq!(expected.len(), PRODUCERS * TXS * PER_TX * 3 / 4);
    for (name, consumer) in ["c1", "c2"].into_iter().zip(consumers) {
        let seen = consumer.join().unwrap();
        assert!(
            seen.iter()
                .all(|e| e.ev_type.as_deref() == Some("committed"))
        );
        let mut got: Vec<String> = seen.iter().map(|e| e.data().to_owned()).collect();
        got.sort_unstable();
        assert_eq!(got.len(), expected.len(), "{name} saw each event once");
        assert!(got == expected, "{name} saw exactly the committed events");
    }

    // Later tick ids always have later snapshots.
    let bad: i64 = one(
        &mut admin,
        "select count(*) from (select tick_snapshot, \
                lag(tick_snapshot) over (order by tick_id) as prev from pgq.tick) t \
          where txid_snapshot_xmax(tick_snapshot) < txid_snapshot_xmax(prev) \
             or txid_snapshot_xmin(tick_snapshot) < txid_snapshot_xmin(prev)",
        &[],
    );
    assert_eq!(bad, 0);
}

/// Runs what pgq.maint_operations() lists, each call in its own transaction, as pgqd does.
fn run_maintenance(client: &mut Client) {
    let ops: Vec<(String, Option<String>)> = client
        .query(
            "select func_name, func_arg from pgq.maint_operations()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (func, arg) in ops {
        match (func.as_str(), arg) {
            ("pgq.maint_rotate_tables_step1", Some(queue)) => {
                exec(
                    client,
                    "select pgq.maint_rotate_tables_step1($1)",
                    &[&queue],
                );
            }
            ("pgq.maint_rotate_tables_step2", None) => {
                exec(client, "select pgq.maint_rotate_tables_step2()", &[]);
            }
            other => panic!("unexpected maintenance operation {other:?}"),
        }
    }
}

/// How the producers of [`rotation_loses_nothing`] queue their events.
#[derive(Clone, Copy)]
enum Producer {
    /// `pgq.insert_event`.
    InsertEvent,
    /// Rows of tables captured by skyrep's generated triggers, which write the events into
    /// the event tables themselves: `after_t` (AFTER trigger) and `skip_t` (SKIP, a BEFORE
    /// trigger that queues the event and drops the row, so nothing has taken a transaction
    /// id yet when it looks up the queue), alternately.
    Captured,
}

#[test]
fn rotation_under_inserts_loses_nothing() {
    rotation_loses_nothing(Producer::InsertEvent);
}

#[test]
fn rotation_under_captured_writes_loses_nothing() {
    rotation_loses_nothing(Producer::Captured);
}

/// Producers write (short transactions, and transactions held open over rotations) while
/// the queue rotates as fast as it can; two consumers each see every committed event once.
fn rotation_loses_nothing(producer: Producer) {
    const MIN_ROTATIONS: usize = 12;
    let (cluster, mut admin) = start();
    let cluster = Arc::new(cluster);
    create_eager_queue(&mut admin, "q");
    if let Producer::Captured = producer {
        admin
            .batch_execute(CAPTURE)
            .unwrap_or_else(|e| panic!("installing skyrep_capture.sql: {}", error_chain(&e)));
        admin
            .batch_execute(
                "create table after_t (v text primary key); create table skip_t (v text); \
                 select pgq.skyrep_capture_create('after_t', 'q', 'cap'); \
                 select pgq.skyrep_capture_create('skip_t', 'q', 'cap', array['SKIP'])",
            )
            .unwrap();
        let direct: i64 = one(
            &mut admin,
            "select count(*) from pg_proc where proname like 'skyrep\\_cap\\_%' \
                and prosrc like '%INSERT INTO pgq.event\\_1\\_2 %'",
            &[],
        );
        assert_eq!(
            direct, 2,
            "the triggers write into the event tables themselves"
        );
    }
    exec(
        &mut admin,
        "select pgq.set_queue_config('q', 'rotation_period', '0')",
        &[],
    );
    register(&mut admin, "q", "c1");
    register(&mut admin, "q", "c2");

    let rotations = Arc::new(AtomicUsize::new(0));
    let producing = Arc::new(AtomicBool::new(true));
    let final_tick = Arc::new(AtomicI64::new(i64::MAX));

    // Short transactions, and transactions kept open for a while so that rotations happen
    // while they still write to the table they looked up.
    let producers: Vec<_> = [(0u64, 20usize), (3, 3), (0, 5), (1, 4)]
        .into_iter()
        .enumerate()
        .map(|(p, (hold_ms, per_tx))| {
            let cluster = Arc::clone(&cluster);
            let rotations = Arc::clone(&rotations);
            thread::spawn(move || {
                let mut client = cluster.connect("postgres");
                let mut committed = Vec::new();
                let start = Instant::now();
                for t in 0.. {
                    if rotations.load(Ordering::SeqCst) >= MIN_ROTATIONS && t >= 30 {
                        break;
                    }
                    assert!(start.elapsed() < DEADLINE, "too few rotations");
                    let mut tx = client.transaction().unwrap();
                    let data: Vec<String> =
                        (0..per_tx).map(|i| format!("p{p}-t{t}-e{i}")).collect();
                    let table = if t % 2 == 0 { "after_t" } else { "skip_t" };
                    let statement = match producer {
                        Producer::InsertEvent => {
                            "select pgq.insert_event('q', 't', d) from unnest($1::text[]) d"
                                .to_string()
                        }
                        Producer::Captured => {
                            format!("insert into {table} select unnest($1::text[])")
                        }
                    };
                    if hold_ms == 0 {
                        exec(&mut tx, &statement, &[&data]);
                    } else {
                        for d in &data {
                            exec(&mut tx, &statement, &[&vec![d.clone()]]);
                            thread::sleep(Duration::from_millis(hold_ms));
                        }
                    }
                    tx.commit().unwrap();
                    committed.extend(data);
                }
                committed
            })
        })
        .collect();

    let background = {
        let cluster = Arc::clone(&cluster);
        let rotations = Arc::clone(&rotations);
        let producing = Arc::clone(&producing);
        thread::spawn(move || {
            let mut client = cluster.connect("postgres");
            let mut last_table = 0;
            while producing.load(Ordering::SeqCst) {
                one::<i64>(&mut client, "select pgq.ticker()", &[]);
                run_maintenance(&mut client);
                let table: i32 = one(
                    &mut client,
                    "select queue_cur_table from pgq.queue where queue_name = 'q'",
                    &[],
                );
                if table != last_table {
                    rotations.fetch_add(1, Ordering::SeqCst);
                    last_table = table;
                }
                thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let consumers: Vec<_> = ["c1", "c2"]
        .into_iter()
        .map(|name| {
            let cluster = Arc::clone(&cluster);
            let final_tick = Arc::clone(&final_tick);
            thread::spawn(move || {
                let mut client = cluster.connect("postgres");
                let mut seen = Vec::new();
                let start = Instant::now();
                loop {
                    assert!(start.elapsed() < DEADLINE, "{name} did not catch up");
                    let batches = drain(&mut client, "q", name);
                    if batches.is_empty() {
                        if last_tick_of(&mut client, "q", name) >= final_tick.load(Ordering::SeqCst)
                        {
                            return seen;
                        }
                        thread::sleep(Duration::from_millis(1));
                    }
                    seen.extend(batches.into_iter().flatten());
                }
            })
        })
        .collect();

    let mut expected: Vec<String> = producers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    producing.store(false, Ordering::SeqCst);
    background.join().unwrap();
    final_tick.store(tick(&mut admin, "q").unwrap(), Ordering::SeqCst);
    assert!(rotations.load(Ordering::SeqCst) >= MIN_ROTATIONS);

    expected.sort_unstable();
    for (name, consumer) in ["c1", "c2"].into_iter().zip(consumers) {
        let mut got: Vec<String> = consumer
            .join()
            .unwrap()
            .iter()
            .map(|e| match producer {
                Producer::InsertEvent => e.data().to_owned(),
                Producer::Captured => e.data().strip_prefix("v=").unwrap().to_owned(),
            })
            .collect();
        got.sort_unstable();
        assert_eq!(got.len(), expected.len(), "{name} saw each event once");
        assert!(got == expected, "{name} saw exactly the committed events");
    }
}

#[test]
fn rotation_keeps_events_of_a_stale_repeatable_read_writer() {
    let (cluster, mut client) = start();
    let c = &mut client;
    create_eager_queue(c, "q");
    exec(
        c,
        "select pgq.set_queue_config('q', 'rotation_period', '0')",
        &[],
    );
    register(c, "q", "c");
    let cur_table = |c: &mut Client| -> i32 {
        one(
            c,
            "select queue_cur_table from pgq.queue where queue_name = 'q'",
            &[],
        )
    };

    // The consumer moves past the queue's creation, so rotation is allowed.
    insert(c, "q", "t", "first");
    tick(c, "q").unwrap();
    assert_eq!(datas(&drain(c, "q", "c").concat()), ["first"]);

    // A REPEATABLE READ writer takes its snapshot while table 0 is current...
    let mut other = cluster.connect("postgres");
    let mut stale = other
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    one::<i32>(&mut stale, "select 1", &[]);

    // ... a rotation completes (both steps) and the consumer moves past it ...
    run_maintenance(c);
    run_maintenance(c);
    assert_eq!(cur_table(c), 1);
    insert(c, "q", "t", "second");
    tick(c, "q").unwrap();
    assert_eq!(datas(&drain(c, "q", "c").concat()), ["second"]);

    // ... and only then it writes, still into table 0, with a transaction id above step2.
    insert(&mut stale, "q", "t", "stale");
    stale.commit().unwrap();
    let in_old_table: i64 = one(c, "select count(*) from pgq.event_1_0", &[]);
    assert_eq!(in_old_table, 2, "first and stale");
    insert(c, "q", "t", "third");
    tick(c, "q").unwrap();
    let mut got = datas(&drain(c, "q", "c").concat())
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    got.sort_unstable();
    assert_eq!(got, ["stale", "third"]);
}

#[test]
fn retry_comes_back_with_ev_retry_incremented() {
    let (_cluster, mut client) = start();
    let c = &mut client;
    create_eager_queue(c, "q");
    register(c, "q", "c1");
    register(c, "q", "c2");
    let flaky = insert(c, "q", "t", "flaky");
    let fine = insert(c, "q", "t", "fine");
    tick(c, "q").unwrap();

    let b1 = next_batch(c, "q", "c1").unwrap();
    let b2 = next_batch(c, "q", "c2").unwrap();
    let retry = |c: &mut Client, batch: i64, ev: i64| -> i32 {
        one(c, "select pgq.event_retry($1, $2, 0)", &[&batch, &ev])
    };
    assert_eq!(retry(c, b1, flaky), 1);
    assert_eq!(retry(c, b1, flaky), 0, "already queued for retry");
    assert_eq!(
        error_of(c, "select pgq.event_retry($1, 999999, 0)", &[&b1]),
        "event not found"
    );
    // batch_retry adds the rest of the batch, skipping what is queued already.
    assert_eq!(one::<i32>(c, "select pgq.batch_retry($1, 0)", &[&b1]), 1);
    assert_eq!(one::<i32>(c, "select pgq.batch_retry($1, 0)", &[&b1]), 0);
    finish(c, b1);
    finish(c, b2);
    assert_eq!(
        error_of(c, "select pgq.event_retry($1, $2, 0)", &[&b1, &flaky]),
        "batch not found",
        "retries need an open batch"
    );
    assert_eq!(
        error_of(c, "select pgq.batch_retry(424242, 0)", &[]),
        "batch_retry: batch 424242 not found"
    );

    // Due retries go back into the queue, 10 per call, only for the consumer that asked,
    // with their ids and ev_retry counted up.
    assert_eq!(one::<i32>(c, "select pgq.maint_retry_events()", &[]), 2);
    assert_eq!(one::<i32>(c, "select pgq.maint_retry_events()", &[]), 0);
    tick(c, "q").unwrap();
    let back = drain(c, "q", "c1").concat();
    let got: Vec<_> = back.iter().map(|e| (e.id, e.retry, e.data())).collect();
    assert_eq!(got, [(flaky, Some(1), "flaky"), (fine, Some(1), "fine")]);
    assert!(drain(c, "q", "c2").concat().is_empty(), "only for c1");

    // Again, with the timestamptz form, then the integer form.
    let filler = insert(c, "q", "t", "filler");
    tick(c, "q").unwrap();
    let b = next_batch(c, "q", "c1").unwrap();
    let retried: i32 = one(
        c,
        "select pgq.event_retry($1, $2, now() - interval '1 second')",
        &[&b, &filler],
    );
    assert_eq!(retried, 1);
    finish(c, b);
    for expected_retry in [1, 2] {
        assert_eq!(one::<i32>(c, "select pgq.maint_retry_events()", &[]), 1);
        tick(c, "q").unwrap();
        let b = next_batch(c, "q", "c1").unwrap();
        let events = batch_events(c, b);
        assert_eq!(datas(&events), ["filler"]);
        assert_eq!(
            (events[0].id, events[0].retry),
            (filler, Some(expected_retry))
        );
        assert_eq!(retry(c, b, filler), 1);
        finish(c, b);
    }

    // A retry that is not due yet stays; raw retries; unregistering drops the consumer's.
    let raw: i64 = one(
        c,
        "select pgq.event_retry_raw('q', 'c2', now() + interval '1 hour', 666, now(), 3, \
                'rt', 'rd', 'x1', null, null, 'x4')",
        &[],
    );
    assert_eq!(raw, 666);
    let auto_id: i64 = one(
        c,
        "select pgq.event_retry_raw('q', 'c2', now() + interval '1 hour', null, now(), 0, \
                'rt', 'rd', null, null, null, null)",
        &[],
    );
    assert!(auto_id > filler);
    let row = c
        .query_one(
            "select ev_retry, ev_txid from pgq.retry_queue where ev_id = 666",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, Option<i32>>(0), row.get::<_, Option<i64>>(1)),
        (Some(3), None)
    );
    assert_eq!(
        error_of(
            c,
            "select pgq.event_retry_raw('q', 'nobody', now(), 1, now(), 0, 't', 'd', \
                    null, null, null, null)",
            &[]
        ),
        "consumer not registered"
    );
    // The last retry of filler (0 s, c1's) is due; the two raw ones wait.
    assert_eq!(one::<i32>(c, "select pgq.maint_retry_events()", &[]), 1);
    assert_eq!(
        one::<i64>(c, "select count(*) from pgq.retry_queue", &[]),
        2
    );
    let removed: i32 = one(c, "select pgq.unregister_consumer('q', 'c2')", &[]);
    assert_eq!(removed, 1);
    assert_eq!(
        one::<i64>(c, "select count(*) from pgq.retry_queue", &[]),
        0
    );

    // The retry mover takes at most 10 events per call.
    c.batch_execute("select pgq.insert_event('q', 't', 'm' || i) from generate_series(1, 12) i")
        .unwrap();
    tick(c, "q").unwrap();
    let b = next_batch(c, "q", "c1").unwrap();
    // These 12 and filler, moved back by the last call above.
    assert_eq!(one::<i32>(c, "select pgq.batch_retry($1, 0)", &[&b]), 13);
    finish(c, b);
    let moved: Vec<i32> = (0..3)
        .map(|_| one::<i32>(c, "select pgq.maint_retry_events()", &[]))
        .collect();
    assert_eq!(moved, [10, 3, 0]);
}

#[test]
fn unregister_and_register_at() {
    let (_cluster, mut client) = start();
    let c = &mut client;
    create_eager_queue(c, "q");
    assert_eq!(
        error_of(c, "select pgq.register_consumer('nope', 'c')", &[]),
        "Event queue not created yet"
    );
    assert_eq!(register(c, "q", "c"), 1);
    assert_eq!(register(c, "q", "c"), 0);
    insert(c, "q", "t", "a");
    let t2 = tick(c, "q").unwrap();
    insert(c, "q", "t", "b");
    tick(c, "q").unwrap();
    assert_eq!(datas(&drain(c, "q", "c").concat()), ["a", "b"]);

    // Back to tick 2: "b" again. An open batch is dropped by the move.
    let b = {
        insert(c, "q", "t", "c");
        tick(c, "q").unwrap();
        next_batch(c, "q", "c").unwrap()
    };
    let moved: i32 = one(c, "select pgq.register_consumer_at('q', 'c', $1)", &[&t2]);
    assert_eq!(moved, 0);
    assert_eq!(one::<i32>(c, "select pgq.finish_batch($1)", &[&b]), 0);
    assert_eq!(datas(&drain(c, "q", "c").concat()), ["b", "c"]);
    assert_eq!(
        error_of(c, "select pgq.register_consumer_at('q', 'c', 999)", &[]),
        "cannot reposition, tick not found: 999"
    );
    // A new consumer starts where it is told to.
    let new: i32 = one(
        c,
        "select pgq.register_consumer_at('q', 'late', $1)",
        &[&t2],
    );
    assert_eq!(new, 1);
    assert_eq!(datas(&drain(c, "q", "late").concat()), ["b", "c"]);

    // Unregistering: 1, then 0; the consumer name goes once nothing uses it.
    create_eager_queue(c, "q2");
    register(c, "q2", "late");
    let unregistered: i32 = one(c, "select pgq.unregister_consumer('q', 'c')", &[]);
    assert_eq!(unregistered, 1);
    let unregistered: i32 = one(c, "select pgq.unregister_consumer('q', 'c')", &[]);
    assert_eq!(unregistered, 0);
    let unregistered: i32 = one(c, "select pgq.unregister_consumer('q', 'late')", &[]);
    assert_eq!(unregistered, 1);
    let names: Vec<String> = c
        .query("select co_name from pgq.consumer order by 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, ["late"], "still registered on q2");
    assert_eq!(
        error_of(c, "select pgq.next_batch('q', 'c')", &[]),
        "Not subscriber to queue: q/c"
    );
    assert_eq!(
        error_of(c, "select * from pgq.next_batch_info('q', null)", &[]),
        "Not subscriber to queue: q/NULL"
    );
}

#[test]
fn info_functions_report_positions_and_pending() {
    let (_cluster, mut client) = start();
    let c = &mut client;
    create_eager_queue(c, "q");
    register(c, "q", "c");
    let columns = |c: &mut Client, sql: &str| -> Vec<String> {
        c.prepare(sql)
            .unwrap()
            .columns()
            .iter()
            .map(|col| col.name().to_owned())
            .collect()
    };
    assert_eq!(
        columns(c, "select * from pgq.get_queue_info()"),
        [
            "queue_name",
            "queue_ntables",
            "queue_cur_table",
            "queue_rotation_period",
            "queue_switch_time",
            "queue_external_ticker",
            "queue_ticker_paused",
            "queue_ticker_max_count",
            "queue_ticker_max_lag",
            "queue_ticker_idle_period",
            "ticker_lag",
            "ev_per_sec",
            "ev_new",
            "last_tick_id"
        ]
    );
    assert_eq!(
        columns(c, "select * from pgq.get_consumer_info()"),
        [
            "queue_name",
            "consumer_name",
            "lag",
            "last_seen",
            "last_tick",
            "current_batch",
            "next_tick",
            "pending_events"
        ]
    );
    assert_eq!(
        columns(c, "select * from pgq.get_batch_info(1)"),
        [
            "queue_name",
            "consumer_name",
            "batch_start",
            "batch_end",
            "prev_tick_id",
            "tick_id",
            "lag",
            "seq_start",
            "seq_end"
        ]
    );
    let batch_columns = [
        "batch_id",
        "cur_tick_id",
        "prev_tick_id",
        "cur_tick_time",
        "prev_tick_time",
        "cur_tick_event_seq",
        "prev_tick_event_seq",
    ];
    assert_eq!(
        columns(c, "select * from pgq.next_batch_info('q', 'c')"),
        batch_columns
    );
    assert_eq!(
        columns(
            c,
            "select * from pgq.next_batch_custom('q', 'c', null, null, null)"
        ),
        batch_columns
    );
    let event_columns = [
        "ev_id",
        "ev_time",
        "ev_txid",
        "ev_retry",
        "ev_type",
        "ev_data",
        "ev_extra1",
        "ev_extra2",
        "ev_extra3",
        "ev_extra4",
    ];
    assert_eq!(
        columns(c, "select * from pgq.get_batch_events(1)"),
        event_columns
    );
    assert_eq!(
        columns(c, "select * from pgq.get_batch_cursor(1, 'c', 1)"),
        event_columns
    );

    // Event ids 1..5 ticked (the sequence read 1 at the first tick), 6..8 waiting.
    for i in 1..=5 {
        insert(c, "q", "t", &format!("e{i}"));
    }
    tick(c, "q").unwrap();
    for i in 6..=8 {
        insert(c, "q", "t", &format!("e{i}"));
    }
    let row = c
        .query_one(
            "select queue_name, last_tick_id, ev_new, ev_per_sec, ticker_lag >= '0' \
               from pgq.get_queue_info('q')",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "q");
    assert_eq!(row.get::<_, i64>(1), 2);
    assert_eq!(row.get::<_, i64>(2), 3);
    assert!(row.get::<_, Option<f64>>(3).unwrap() > 0.0);
    assert!(row.get::<_, bool>(4));
    let rows = |c: &mut Client, sql: &str| c.query(sql, &[]).unwrap().len();
    assert_eq!(rows(c, "select * from pgq.get_queue_info('nope')"), 0);
    assert_eq!(rows(c, "select * from pgq.get_queue_info(null)"), 1);

    let consumer = |c: &mut Client| -> (i64, Option<i64>, Option<i64>, i64, bool) {
        let row = c
            .query_one(
                "select last_tick, current_batch, next_tick, pending_events, \
                        lag >= '0' and last_seen >= '0' \
                   from pgq.get_consumer_info('q', 'c')",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
    };
    assert_eq!(consumer(c), (1, None, None, 4, true));
    assert_eq!(rows(c, "select * from pgq.get_consumer_info('q')"), 1);
    assert_eq!(rows(c, "select * from pgq.get_consumer_info('x')"), 0);

    let row = c
        .query_one("select * from pgq.next_batch_info('q', 'c')", &[])
        .unwrap();
    let batch: i64 = row.get("batch_id");
    let ids: (i64, i64, i64, i64) = (
        row.get("prev_tick_id"),
        row.get("cur_tick_id"),
        row.get("prev_tick_event_seq"),
        row.get("cur_tick_event_seq"),
    );
    assert_eq!(ids, (1, 2, 1, 5));
    assert_eq!(consumer(c), (1, Some(batch), Some(2), 4, true));
    // Asking again returns the same open batch.
    assert_eq!(next_batch(c, "q", "c"), Some(batch));
    let row = c
        .query_one(
            "select queue_name, consumer_name, prev_tick_id, tick_id, seq_start, seq_end, \
                    batch_start < batch_end, lag >= '0' \
               from pgq.get_batch_info($1)",
            &[&batch],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "q");
    assert_eq!(row.get::<_, String>(1), "c");
    let ticks: (i64, i64, i64, i64) = (row.get(2), row.get(3), row.get(4), row.get(5));
    assert_eq!(ticks, (1, 2, 1, 5));
    assert!(row.get::<_, bool>(6) && row.get::<_, bool>(7));
    let nulls: i32 = one(
        c,
        "select num_nulls(queue_name, consumer_name, batch_start, batch_end, prev_tick_id, \
                tick_id, lag, seq_start, seq_end) from pgq.get_batch_info(424242)",
        &[],
    );
    assert_eq!(nulls, 9, "an unknown batch gives one row of NULLs");
    let ids: Vec<i64> = batch_events(c, batch).iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    finish(c, batch);
    assert_eq!(
        one::<i32>(c, "select pgq.finish_batch($1)", &[&batch]),
        0,
        "a finished batch is gone"
    );
    assert_eq!(consumer(c).0, 2);

    // next_batch_custom: with a wanted size or age, the batch ends at the queue's head when
    // that is within twice the threshold, else at the first tick that reaches it.
    tick(c, "q").unwrap(); // tick 3: seq 8
    for _ in 0..10 {
        insert(c, "q", "t", "x");
    }
    tick(c, "q").unwrap(); // tick 4: seq 18
    for _ in 0..10 {
        insert(c, "q", "t", "x");
    }
    tick(c, "q").unwrap(); // tick 5: seq 28; the consumer is at tick 2, seq 5
    let custom = |c: &mut Client, lag: Option<&str>, count: Option<i32>, age: Option<&str>| {
        let row = c
            .query_one(
                "select batch_id, cur_tick_id, prev_tick_id from pgq.next_batch_custom( \
                        'q', 'c', $1::text::interval, $2, $3::text::interval)",
                &[&lag, &count, &age],
            )
            .unwrap();
        let batch: Option<i64> = row.get(0);
        let ticks: (Option<i64>, Option<i64>) = (row.get(2), row.get(1));
        if let Some(batch) = batch {
            finish(c, batch);
            one::<i32>(c, "select pgq.register_consumer_at('q', 'c', 2)", &[]);
        }
        ticks
    };
    assert_eq!(custom(c, Some("1 hour"), None, None), (None, None));
    assert_eq!(custom(c, None, Some(1000), None), (None, None));
    assert_eq!(custom(c, None, None, Some("1 hour")), (None, None));
    assert_eq!(custom(c, None, Some(15), None), (Some(2), Some(5)));
    assert_eq!(custom(c, None, Some(10), None), (Some(2), Some(4)));
    assert_eq!(custom(c, None, Some(2), None), (Some(2), Some(3)));
    assert_eq!(custom(c, None, None, Some("0")), (Some(2), Some(3)));
    assert_eq!(custom(c, Some("0"), None, None), (Some(2), Some(3)));
}

#[test]
fn get_batch_cursor_streams_a_batch() {
    let (_cluster, mut client) = start();
    let c = &mut client;
    create_eager_queue(c, "q");
    register(c, "q", "c");
    c.batch_execute("select pgq.insert_event('q', 't', 'e' || i) from generate_series(1, 1000) i")
        .unwrap();
    tick(c, "q").unwrap();
    let batch = next_batch(c, "q", "c").unwrap();
    let all: Vec<i64> = batch_events(c, batch).iter().map(|e| e.id).collect();
    assert_eq!(all, (1..=1000).collect::<Vec<i64>>());

    let ids = |rows: Vec<Row>| -> Vec<i64> { rows.iter().map(|r| r.get("ev_id")).collect() };
    let mut tx = c.transaction().unwrap();
    let mut got = ids(tx
        .query(
            "select * from pgq.get_batch_cursor($1, 'walker', 300)",
            &[&batch],
        )
        .unwrap());
    assert_eq!(got.len(), 300);
    for _ in 0..10 {
        let more = ids(tx.query("fetch 300 from walker", &[]).unwrap());
        let last = more.len() < 300;
        got.extend(more);
        if last {
            break;
        }
    }
    tx.batch_execute("close walker").unwrap();
    assert_eq!(got, all);

    // A filter, a name that needs quoting, and a first fetch of nothing.
    let first = tx
        .query(
            "select * from pgq.get_batch_cursor($1, 'Odd Name', 0, 'ev_data like ''e1%''')",
            &[&batch],
        )
        .unwrap();
    assert!(first.is_empty());
    let rest = ids(tx.query("fetch all from \"Odd Name\"", &[]).unwrap());
    assert_eq!(
        rest.len(),
        1 + 10 + 100 + 1,
        "e1, e10-e19, e100-e199, e1000"
    );
    assert!(rest.windows(2).all(|w| w[0] < w[1]));
    let none = |tx: &mut postgres::Transaction, sql: &str| tx.query(sql, &[]).unwrap().is_empty();
    assert!(none(
        &mut tx,
        "select * from pgq.get_batch_cursor(1, null, 10)"
    ));
    assert!(none(
        &mut tx,
        "select * from pgq.get_batch_cursor(null, 'x', 10, null)"
    ));
    assert!(none(
        &mut tx,
        "select * from pgq.get_batch_cursor(1, 'x', null, null)"
    ));
    let open: Vec<String> = tx
        .query(
            "select name from pg_cursors where name <> '' order by 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(open, ["Odd Name"], "only the cursors that were asked for");
    tx.commit().unwrap();
}

#[test]
fn maint_operations_list() {
    // With autovacuum off, the queue tables are listed for VACUUM.
    let cluster = Cluster::builder().setting("autovacuum", "off").start();
    let mut client = cluster.connect("postgres");
    install(&mut client);
    let c = &mut client;
    let ops = |c: &mut Client| -> Vec<(String, Option<String>)> {
        c.query(
            "select func_name, func_arg from pgq.maint_operations()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
    };
    let op = |f: &str, a: Option<&str>| (f.to_owned(), a.map(str::to_owned));
    let vacuum: Vec<_> = [
        "pgq.subscription",
        "pgq.consumer",
        "pgq.queue",
        "pgq.tick",
        "pgq.retry_queue",
    ]
    .map(|t| op("vacuum", Some(t)))
    .into();
    one::<i32>(c, "select pgq.create_queue('b')", &[]);
    one::<i32>(c, "select pgq.create_queue('a')", &[]);
    assert_eq!(ops(c), vacuum, "no rotation due within 2 hours");

    for q in ["a", "b"] {
        exec(
            c,
            "select pgq.set_queue_config($1, 'rotation_period', '0')",
            &[&q],
        );
    }
    let mut expected = vec![
        op("pgq.maint_rotate_tables_step1", Some("a")),
        op("pgq.maint_rotate_tables_step1", Some("b")),
        op("pgq.maint_rotate_tables_step2", None),
    ];
    expected.extend(vacuum.clone());
    assert_eq!(ops(c), expected);

    // Step 2 in the same transaction as step 1 does not complete the rotation.
    let mut tx = c.transaction().unwrap();
    one::<i32>(&mut tx, "select pgq.maint_rotate_tables_step1('a')", &[]);
    one::<i32>(&mut tx, "select pgq.maint_rotate_tables_step2()", &[]);
    tx.commit().unwrap();
    let state = |c: &mut Client| -> (i32, bool) {
        let row = c
            .query_one(
                "select queue_cur_table, queue_switch_step2 is null from pgq.queue \
                  where queue_name = 'a'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(state(c), (1, true));
    let mut expected = vec![
        op("pgq.maint_rotate_tables_step1", Some("b")),
        op("pgq.maint_rotate_tables_step2", None),
    ];
    expected.extend(vacuum.clone());
    assert_eq!(ops(c), expected, "a waits for step 2");
    one::<i32>(c, "select pgq.maint_rotate_tables_step2()", &[]);
    assert_eq!(state(c), (1, false));

    // Extra per-queue maintenance and Londiste's hook.
    c.batch_execute(
        "select pgq.set_queue_config('a', 'rotation_period', '1 hour'); \
         select pgq.set_queue_config('b', 'rotation_period', '1 hour'); \
         update pgq.queue set queue_extra_maint = '{x.one,two}' where queue_name = 'b'; \
         create schema londiste; \
         create table londiste.completed (x int); \
         create function londiste.periodic_maintenance() returns integer \
             language sql as 'select 0'",
    )
    .unwrap();
    let mut expected = vec![op("x.one", Some("b")), op("two", Some("b"))];
    expected.extend(vacuum);
    expected.push(op("vacuum", Some("londiste.completed")));
    expected.push(op("londiste.periodic_maintenance", None));
    assert_eq!(ops(c), expected);
    // Installing again keeps the queues' extra maintenance, and adds the column to a schema
    // from before PgQ 3.2, which had none.
    install(c);
    assert_eq!(ops(c), expected);
    exec(
        c,
        "alter table pgq.queue drop column queue_extra_maint",
        &[],
    );
    install(c);
    expected.drain(..2);
    assert_eq!(ops(c), expected);
}

/// The batch `next_batch_info` hands out: (batch_id, prev_tick_id, cur_tick_id).
fn batch_info(
    client: &mut impl GenericClient,
    queue: &str,
    consumer: &str,
) -> (Option<i64>, Option<i64>, Option<i64>) {
    let row = client
        .query_one(
            "select batch_id, prev_tick_id, cur_tick_id from pgq.next_batch_info($1, $2)",
            &[&queue, &consumer],
        )
        .unwrap_or_else(|e| panic!("next_batch_info failed: {}", error_chain(&e)));
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn callers_racing_for_one_consumers_batch_get_the_same_batch() {
    let (cluster, mut client) = start();
    create_eager_queue(&mut client, "q");
    register(&mut client, "q", "c");
    insert(&mut client, "q", "e", "one");
    tick(&mut client, "q").unwrap();
    // The first caller takes the batch and holds the subscription row.
    let mut first = cluster.connect("postgres");
    let mut tx = first.transaction().unwrap();
    let taken = batch_info(&mut tx, "q", "c");
    assert!(taken.0.is_some() && taken.2.is_some(), "{taken:?}");
    // The second waits for it, and gets the same batch once the first commits.
    let second = thread::spawn({
        let mut client = cluster.connect("postgres");
        move || batch_info(&mut client, "q", "c")
    });
    let deadline = Instant::now() + DEADLINE;
    loop {
        let waiting: bool = one(
            &mut client,
            "select exists (select 1 from pg_stat_activity \
             where wait_event_type = 'Lock' and query like '%next_batch_info%')",
            &[],
        );
        if waiting {
            break;
        }
        assert!(Instant::now() < deadline, "the second caller never waited");
        thread::sleep(Duration::from_millis(20));
    }
    tx.commit().unwrap();
    assert_eq!(second.join().unwrap(), taken);
}
