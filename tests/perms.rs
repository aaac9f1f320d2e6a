//! Who may use the queue on the provider: PgQ 3's roles and grants, function by function;
//! a role with only LOGIN can neither forge events nor touch skyrep's consumer; application
//! roles without any pgq role are captured; least-privilege daemons; upgrades take back the
//! old wide grants.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::cluster::Cluster;
use crate::replay::{Pair, stop};
use crate::util::{error_chain, skyrep};

/// PgQ 3's grants (pgq's structure/grants.ini), as function signatures in PgQ's spelling.
const PUBLIC_FNS: &[&str] = &[
    "pgq.seq_getval(text)",
    "pgq.get_queue_info()",
    "pgq.get_queue_info(text)",
    "pgq.get_consumer_info()",
    "pgq.get_consumer_info(text)",
    "pgq.get_consumer_info(text, text)",
    "pgq.quote_fqname(text)",
    "pgq.version()",
];
const READER_FNS: &[&str] = &[
    "pgq.batch_event_sql(bigint)",
    "pgq.batch_event_tables(bigint)",
    "pgq.find_tick_helper(int4, int8, timestamptz, int8, int8, interval)",
    "pgq.register_consumer(text, text)",
    "pgq.register_consumer_at(text, text, bigint)",
    "pgq.unregister_consumer(text, text)",
    "pgq.next_batch_info(text, text)",
    "pgq.next_batch(text, text)",
    "pgq.next_batch_custom(text, text, interval, int4, interval)",
    "pgq.get_batch_events(bigint)",
    "pgq.get_batch_info(bigint)",
    "pgq.get_batch_cursor(bigint, text, int4, text)",
    "pgq.get_batch_cursor(bigint, text, int4)",
    "pgq.event_retry(bigint, bigint, timestamptz)",
    "pgq.event_retry(bigint, bigint, integer)",
    "pgq.batch_retry(bigint, integer)",
    "pgq.force_tick(text)",
    "pgq.finish_batch(bigint)",
];
const WRITER_FNS: &[&str] = &[
    "pgq.insert_event(text, text, text)",
    "pgq.insert_event(text, text, text, text, text, text, text)",
    "pgq.current_event_table(text)",
    "pgq.jsontriga()",
    "pgq.sqltriga()",
    "pgq.logutriga()",
];
const ADMIN_FNS: &[&str] = &[
    "pgq.ticker(text, bigint, timestamptz, bigint)",
    "pgq.ticker(text)",
    "pgq.ticker()",
    "pgq.maint_retry_events()",
    "pgq.maint_rotate_tables_step1(text)",
    "pgq.maint_rotate_tables_step2()",
    "pgq.maint_tables_to_vacuum()",
    "pgq.maint_operations()",
    "pgq.upgrade_schema()",
    "pgq.grant_perms(text)",
    "pgq._grant_perms_from(text,text,text,text)",
    "pgq.tune_storage(text)",
    "pgq.seq_setval(text, int8)",
    "pgq.create_queue(text)",
    "pgq.drop_queue(text, bool)",
    "pgq.drop_queue(text)",
    "pgq.set_queue_config(text, text, text)",
    "pgq.insert_event_raw(text, bigint, timestamptz, integer, integer, text, text, text, text, text, text)",
    "pgq.event_retry_raw(text, text, timestamptz, bigint, timestamptz, integer, text, text, text, text, text, text)",
];
/// skyrep's internal helpers that a role's own calls reach (PgQ has no such functions).
const ADMIN_HELPERS: &[&str] = &[
    "pgq._insert_check(text, text, bigint, boolean, integer)",
    "pgq._use_event_id(text)",
];

/// Function signature (as PostgreSQL prints it) -> roles with EXECUTE besides the owner.
type Grants = BTreeMap<String, BTreeSet<String>>;

fn connect_as(cluster: &Cluster, user: &str) -> Client {
    postgres::Config::new()
        .host_path(cluster.socket_dir())
        .port(cluster.port())
        .user(user)
        .dbname("postgres")
        .connect(NoTls)
        .unwrap_or_else(|e| panic!("cannot connect as {user}: {}", error_chain(&e)))
}

/// Every function of schema pgq with the roles that may execute it.
fn function_grants(client: &mut Client) -> Grants {
    client
        .query(
            "select p.oid::regprocedure::text, \
                    array_remove(array_agg(case when a.grantee = 0 then 'public' \
                                                else pg_get_userbyid(a.grantee) end), null) \
               from pg_proc p \
               left join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a \
                 on a.privilege_type = 'EXECUTE' and a.grantee <> p.proowner \
              where p.pronamespace = 'pgq'::regnamespace \
              group by 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let roles: Vec<String> = r.get(1);
            (r.get(0), roles.into_iter().collect())
        })
        .collect()
}

/// The grants PgQ 3 makes, for every function `client`'s schema pgq has: PgQ's four lists,
/// the generic triggers' helpers for the writer, the insert checks for the admin, nothing
/// for anything else (skyrep's own functions and the generated capture triggers).
fn expected_grants(client: &mut Client) -> Grants {
    let mut expected: Grants = function_grants(client)
        .into_keys()
        .map(|f| {
            let roles = if f.starts_with("pgq._skyrep_trg_") {
                BTreeSet::from(["pgq_writer".to_string()])
            } else {
                BTreeSet::new()
            };
            (f, roles)
        })
        .collect();
    for (role, list) in [
        ("public", PUBLIC_FNS),
        ("pgq_reader", READER_FNS),
        ("pgq_writer", WRITER_FNS),
        ("pgq_admin", ADMIN_FNS),
        ("pgq_admin", ADMIN_HELPERS),
    ] {
        for f in list {
            let sig: String = client
                .query_one("select $1::text::regprocedure::text", &[f])
                .unwrap_or_else(|e| panic!("{f}: {}", error_chain(&e)))
                .get(0);
            expected
                .get_mut(&sig)
                .unwrap_or_else(|| panic!("{sig} is missing"))
                .insert(role.to_string());
        }
    }
    expected
}

/// Table -> (grantee, privilege) pairs besides the owner's, for pgq's tables.
fn table_grants(client: &mut Client) -> BTreeMap<String, BTreeSet<String>> {
    client
        .query(
            "select c.oid::regclass::text, \
                    array_remove(array_agg(case when a.grantee = 0 then 'public' \
                                                else pg_get_userbyid(a.grantee) end \
                                           || ':' || a.privilege_type), null) \
               from pg_class c \
               left join lateral aclexplode(c.relacl) a on a.grantee <> c.relowner \
              where c.relnamespace = 'pgq'::regnamespace and c.relkind in ('r', 'S') \
              group by 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| {
            let grants: Vec<String> = r.get(1);
            (r.get(0), grants.into_iter().collect())
        })
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Checks every grant on schema pgq against PgQ 3's model.
fn assert_pgq_grants(client: &mut Client) {
    let expected = expected_grants(client);
    let actual = function_grants(client);
    let differences: Vec<String> = expected
        .iter()
        .filter(|(f, roles)| actual.get(*f) != Some(roles))
        .map(|(f, roles)| format!("{f}: expected {roles:?}, got {:?}", actual.get(f)))
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));

    let tables = table_grants(client);
    let meta = set(&[
        "public:SELECT",
        "pgq_reader:SELECT",
        "pgq_admin:SELECT",
        "pgq_admin:INSERT",
        "pgq_admin:UPDATE",
        "pgq_admin:DELETE",
    ]);
    for t in ["pgq.consumer", "pgq.queue", "pgq.tick", "pgq.subscription"] {
        assert_eq!(tables[t], meta, "{t}");
    }
    let events = set(&[
        "pgq_reader:SELECT",
        "pgq_admin:SELECT",
        "pgq_admin:INSERT",
        "pgq_admin:TRUNCATE",
    ]);
    for t in [
        "pgq.event_template",
        "pgq.event_1",
        "pgq.event_1_0",
        "pgq.event_1_2",
    ] {
        assert_eq!(tables[t], events, "{t}");
    }
    assert_eq!(
        tables["pgq.retry_queue"],
        set(&[
            "pgq_admin:SELECT",
            "pgq_admin:INSERT",
            "pgq_admin:UPDATE",
            "pgq_admin:DELETE"
        ])
    );
    assert_eq!(tables["pgq.event_1_tick_seq"], set(&["public:SELECT"]));
    assert_eq!(
        tables["pgq.event_1_id_seq"],
        set(&["public:SELECT", "pgq_admin:USAGE"])
    );
    let member: bool = client
        .query_one(
            "select pg_has_role('pgq_admin', 'pgq_reader', 'member') \
                and pg_has_role('pgq_admin', 'pgq_writer', 'member')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(member, "pgq_admin is a member of pgq_reader and pgq_writer");
}

/// A replicated pair with table t added on both sides and the consumer registered.
fn replicated() -> Pair {
    let pair = Pair::new("create table t (id int primary key, v text);");
    pair.ok(&["provider", "add", "t"]);
    pair.ok(&["subscriber", "add", "t"]);
    pair.ok(&["subscriber", "register"]);
    pair
}

#[test]
fn function_grants_are_pgq_3s() {
    let pair = replicated();
    let mut client = pair.provider.connect("postgres");
    // The generated capture trigger function is there, and nobody else may execute it.
    let generated: i64 = client
        .query_one(
            "select count(*) from pg_proc where proname like 'skyrep\\_cap\\_%' \
                and prosecdef and proconfig = '{\"search_path=pg_catalog, pg_temp\"}'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(generated, 1);
    assert_pgq_grants(&mut client);
}

/// The state of the queue that a forger would change: consumers, positions, open batches,
/// events, retries, queues.
fn queue_state(client: &mut Client) -> String {
    client
        .query_one(
            "select concat_ws(' | ', \
                (select string_agg(concat_ws(',', s.sub_id, c.co_name, s.sub_last_tick, \
                                             s.sub_batch, s.sub_next_tick), ';' order by s.sub_id) \
                   from pgq.subscription s join pgq.consumer c on c.co_id = s.sub_consumer), \
                (select string_agg(concat_ws(',', ev_id, ev_type, ev_data), ';' order by ev_id) \
                   from pgq.event_1), \
                (select count(*) from pgq.retry_queue), \
                (select string_agg(queue_name, ',') from pgq.queue), \
                (select count(*) from pgq.tick))",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn a_role_with_only_login_cannot_forge_events_or_touch_the_consumer() {
    let pair = replicated();
    pair.provider.execute(
        "create role nobody login; insert into t values (1, 'real'); \
         select pgq.force_tick('login'); select pgq.ticker()",
    );
    let mut owner = pair.provider.connect("postgres");
    // skyrep's consumer has a batch open, as replay has between its next_batch and finish.
    let batch: i64 = owner
        .query_one("select pgq.next_batch('login', 'login_sub')", &[])
        .unwrap()
        .get(0);
    let event: i64 = owner
        .query_one("select max(ev_id) from pgq.event_1", &[])
        .unwrap()
        .get(0);
    let before = queue_state(&mut owner);

    let mut nobody = connect_as(&pair.provider, "nobody");
    let b = batch.to_string();
    let e = event.to_string();
    for (call, function) in [
        (
            "pgq.insert_event('login', 'I:id', 'id=2&v=forged')",
            "insert_event",
        ),
        (
            "pgq.insert_event('login', 'I:id', 'id=2&v=forged', 'public.t', null, null, null)",
            "insert_event",
        ),
        ("pgq.next_batch('login', 'login_sub')", "next_batch"),
        (
            "pgq.next_batch_info('login', 'login_sub')",
            "next_batch_info",
        ),
        (
            "pgq.next_batch_custom('login', 'login_sub', null, null, null)",
            "next_batch_custom",
        ),
        (&format!("pgq.get_batch_events({b})"), "get_batch_events"),
        (&format!("pgq.finish_batch({b})"), "finish_batch"),
        (&format!("pgq.batch_retry({b}, 0)"), "batch_retry"),
        (&format!("pgq.event_retry({b}, {e}, 0)"), "event_retry"),
        (&format!("pgq.event_retry({b}, {e}, now())"), "event_retry"),
        (
            "pgq.register_consumer('login', 'intruder')",
            "register_consumer",
        ),
        (
            "pgq.register_consumer('login', 'login_sub')",
            "register_consumer",
        ),
        (
            "pgq.register_consumer_at('login', 'login_sub', 1)",
            "register_consumer_at",
        ),
        (
            "pgq.unregister_consumer('login', 'login_sub')",
            "unregister_consumer",
        ),
        ("pgq.create_queue('other')", "create_queue"),
        ("pgq.drop_queue('login', true)", "drop_queue"),
        ("pgq.ticker()", "ticker"),
        ("pgq.force_tick('login')", "force_tick"),
        (
            "pgq.insert_event_raw('login', null, now(), null, null, 'I:id', 'id=2', 'public.t', \
             null, null, null)",
            "insert_event_raw",
        ),
        (
            "pgq.event_retry_raw('login', 'login_sub', now(), null, now(), 0, 'I:id', 'id=2', \
             'public.t', null, null, null)",
            "event_retry_raw",
        ),
    ] {
        let sql = format!("select * from {call}");
        let err = nobody
            .query(&sql, &[])
            .map(|_| ())
            .expect_err(&format!("{sql} was allowed"));
        let message = err.as_db_error().map(|e| e.message().to_string());
        assert_eq!(
            message.as_deref(),
            Some(format!("permission denied for function {function}").as_str()),
            "{sql}: {}",
            error_chain(&err)
        );
    }
    let err = nobody.query("select * from pgq.event_1", &[]).unwrap_err();
    assert!(error_chain(&err).contains("permission denied for table event_1"));
    // Nor through the event tables the capture triggers write into, nor by attaching a
    // capture trigger's function (which runs as its owner) to a table of its own.
    let function: String = owner
        .query_one(
            "select p.proname::text from pg_trigger g join pg_proc p on p.oid = g.tgfoid \
              where g.tgrelid = 't'::regclass and not g.tgisinternal limit 1",
            &[],
        )
        .unwrap()
        .get(0);
    pair.provider
        .execute("create schema own; grant usage, create on schema own to nobody");
    nobody
        .batch_execute("create table own.mine (id int primary key)")
        .unwrap();
    for (sql, denied) in [
        (
            "insert into pgq.event_1_0 (ev_time, ev_type, ev_data) values (now(), 'I:id', 'id=2')"
                .to_string(),
            "permission denied for table event_1_0".to_string(),
        ),
        (
            format!(
                "create trigger x after insert on own.mine for each row \
                 execute function pgq.{function}('login')"
            ),
            format!("permission denied for function pgq.{function}"),
        ),
        (
            "select pgq.skyrep_capture_create('own.mine', 'login', 'x')".to_string(),
            "permission denied for function skyrep_capture_create".to_string(),
        ),
    ] {
        let err = nobody.batch_execute(&sql).expect_err(&sql);
        assert_eq!(
            err.as_db_error().map(|e| e.message()),
            Some(denied.as_str()),
            "{sql}: {}",
            error_chain(&err)
        );
    }
    nobody
        .batch_execute("insert into own.mine values (1)")
        .unwrap();
    // What PgQ leaves to everyone still works.
    nobody
        .query("select * from pgq.get_queue_info('login')", &[])
        .unwrap();
    nobody
        .query("select * from pgq.get_consumer_info()", &[])
        .unwrap();
    assert_eq!(
        queue_state(&mut owner),
        before,
        "a refused call changed the queue"
    );
}

#[test]
fn writes_of_a_role_without_pgq_roles_are_captured_and_replayed() {
    let pair = replicated();
    pair.provider
        .execute("create role app login; grant select, insert, update, delete on t to app");
    let mut app = connect_as(&pair.provider, "app");
    let roles: i64 = app
        .query_one(
            "select count(*) from pg_roles where pg_has_role('app', oid, 'member') \
                and rolname <> 'app'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(roles, 0, "app is in no role");
    let mut replay = pair.start_replay();
    // Even with a search_path that puts its own schema first.
    app.batch_execute(
        "set search_path = public, pg_catalog; \
         insert into t select g, 'v' || g from generate_series(1, 20) g; \
         update t set v = 'changed' where id <= 5; delete from t where id > 15",
    )
    .unwrap();
    pair.wait_equal(&[("t", "id")]);
    assert_eq!(
        pair.subscriber.query_strings(
            "postgres",
            "select count(*), count(*) filter (where v = 'changed') from t"
        ),
        [[Some("15".to_string()), Some("5".to_string())]]
    );
    stop(&mut replay, libc::SIGINT);
}

/// The source of the capture function of table `table`.
fn capture_source(client: &mut Client, table: &str) -> String {
    client
        .query_one(
            "select p.prosrc from pg_trigger g join pg_proc p on p.oid = g.tgfoid \
              where g.tgrelid = $1::text::regclass and not g.tgisinternal \
                and (g.tgtype & 32) = 0",
            &[&table],
        )
        .unwrap()
        .get(0)
}

#[test]
fn capture_functions_write_into_event_tables_only_where_their_owner_may() {
    // A capture function writes its events into the event tables itself only when its
    // owner may insert there (pgq_admin, the schema's owner); otherwise through
    // pgq.insert_event (pgq_writer). It is decided for the function's owner, also when
    // another role regenerates it, and `provider install` regenerates it for the
    // privileges of the time. Either way an application role without pgq roles is captured.
    let pair = Pair::new(
        "create table t (id int primary key, v text); create table w (id int primary key, v text);",
    );
    pair.ok(&["provider", "add", "t", "w"]);
    pair.provider.execute(
        // (x may run the capture helpers the generated code calls, which are the
        // schema owner's alone otherwise)
        "create role x nologin in role pgq_writer; \
         grant execute on all functions in schema pgq to x; \
         create role app login; grant insert on t, w to app; \
         do $$ begin execute format('alter function pgq.%I() owner to x', \
             (select p.proname from pg_trigger g join pg_proc p on p.oid = g.tgfoid \
               where g.tgrelid = 'w'::regclass and not g.tgisinternal limit 1)); end $$; \
         select pgq.skyrep_capture_refresh('w')",
    );
    let mut owner = pair.provider.connect("postgres");
    let direct = |source: &str| source.contains("INSERT INTO pgq.event_1_0 ");
    assert!(direct(&capture_source(&mut owner, "t")), "the superuser's");
    let source = capture_source(&mut owner, "w");
    assert!(
        !direct(&source),
        "x may not insert into the event tables:\n{source}"
    );
    assert!(source.contains("pgq.insert_event('login', "), "{source}");

    let mut app = connect_as(&pair.provider, "app");
    let captured = |owner: &mut Client, app: &mut Client, id: i32| {
        app.execute("insert into t values ($1, 'a')", &[&id])
            .unwrap();
        app.execute("insert into w values ($1, 'b')", &[&id])
            .unwrap();
        let events: Vec<String> = owner
            .query(
                "select ev_extra1 || ' ' || ev_data from pgq.event_1 \
                  where ev_data like $1 order by ev_id",
                &[&format!("id={id}&%")],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(
            events,
            [
                format!("public.t id={id}&v=a"),
                format!("public.w id={id}&v=b")
            ]
        );
    };
    captured(&mut owner, &mut app, 1);

    // x becomes an admin: install regenerates its function, which now writes directly.
    pair.provider.execute("grant pgq_admin to x");
    pair.ok(&["provider", "install"]);
    assert!(direct(&capture_source(&mut owner, "w")));
    captured(&mut owner, &mut app, 2);
    let owner_of_w: String = owner
        .query_one(
            "select p.proowner::regrole::text from pg_trigger g join pg_proc p on p.oid = g.tgfoid \
              where g.tgrelid = 'w'::regclass and not g.tgisinternal limit 1",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(owner_of_w, "x", "regenerating keeps the owner");
}

#[test]
fn pgq_roles_consume_produce_and_administer() {
    let pair = replicated();
    pair.provider.execute(
        "create role reader login in role pgq_reader; \
         create role writer login in role pgq_writer; \
         create role admin login in role pgq_admin",
    );
    let mut writer = connect_as(&pair.provider, "writer");
    let mut reader = connect_as(&pair.provider, "reader");
    let mut admin = connect_as(&pair.provider, "admin");

    writer
        .execute("select pgq.insert_event('login', 'x', 'from writer')", &[])
        .unwrap();
    let err = writer
        .execute("select pgq.register_consumer('login', 'w')", &[])
        .unwrap_err();
    assert!(error_chain(&err).contains("permission denied for function register_consumer"));

    reader
        .execute("select pgq.register_consumer('login', 'r')", &[])
        .unwrap();
    admin
        .execute("select pgq.force_tick('login')", &[])
        .unwrap();
    admin.execute("select pgq.ticker()", &[]).unwrap();
    let batch: i64 = reader
        .query_one("select pgq.next_batch('login', 'login_sub')", &[])
        .unwrap()
        .get(0);
    let data: Vec<String> = reader
        .query("select ev_data from pgq.get_batch_events($1)", &[&batch])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(data, ["from writer"]);
    reader
        .execute(
            "select pgq.event_retry($1, (select max(ev_id) from pgq.get_batch_events($1)), 0)",
            &[&batch],
        )
        .unwrap();
    reader
        .execute("select pgq.finish_batch($1)", &[&batch])
        .unwrap();
    let err = reader
        .execute("select pgq.insert_event('login', 'x', 'y')", &[])
        .unwrap_err();
    assert!(error_chain(&err).contains("permission denied for function insert_event"));

    // The admin runs the maintenance a ticker runs: the retry queue, a rotation, and each
    // operation maint_operations lists, as the ticker calls them; and creates queues.
    admin
        .batch_execute(
            "select pgq.set_queue_config('login', 'rotation_period', '0'); \
             select pgq.maint_retry_events(); \
             select pgq.create_queue('spare'); select pgq.drop_queue('spare')",
        )
        .unwrap();
    let ops: Vec<(String, Option<String>)> = admin
        .query(
            "select func_name, func_arg from pgq.maint_operations()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        ops.iter()
            .any(|(f, _)| f == "pgq.maint_rotate_tables_step1"),
        "{ops:?}"
    );
    for (f, arg) in ops.iter().filter(|(f, _)| f != "vacuum") {
        let result = match arg {
            Some(arg) => admin.execute(&format!("select {f}($1)"), &[arg]),
            None => admin.execute(&format!("select {f}()"), &[]),
        };
        result.unwrap_or_else(|e| panic!("{f}({arg:?}): {}", error_chain(&e)));
    }
}

/// Replay with `provider_db` as a login role in `pgq_role` with the grants README's
/// Security section lists. With `ticker = off` when `external_ticker`, and the queue ticked
/// by the owner meanwhile.
fn replay_as_least_privileged(pgq_role: &str, external_ticker: bool) {
    let pair = Pair::new("create table t (id int primary key, v text);");
    pair.provider.execute(&format!(
        "insert into t select g, 'before' from generate_series(1, 50) g; \
         create role replicator login in role {pgq_role}; \
         grant select on t to replicator; \
         grant usage on schema londiste to replicator; \
         grant select on all tables in schema londiste to replicator"
    ));
    pair.ok(&["provider", "add", "t"]);
    let conf = std::fs::read_to_string(&pair.conf).unwrap();
    let provider = pair.provider.connstr("postgres");
    let mut least = conf.replace(
        &format!("provider_db = {provider}"),
        &format!("provider_db = {provider} user=replicator"),
    );
    assert_ne!(conf, least, "the provider_db line was not found");
    if external_ticker {
        least.push_str("ticker = off\n");
    }
    std::fs::write(&pair.conf, least).unwrap();
    let ticking = Arc::new(AtomicBool::new(external_ticker));
    let ticker = std::thread::spawn({
        let ticking = ticking.clone();
        let mut owner = pair.provider.connect("postgres");
        move || {
            while ticking.load(Ordering::Relaxed) {
                owner.batch_execute("select pgq.ticker()").unwrap();
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    pair.ok(&["subscriber", "add", "t"]);
    let mut replay = pair.start_replay();
    pair.provider
        .execute("insert into t values (51, 'during'); update t set v = 'changed' where id < 10");
    pair.wait_equal(&[("t", "id")]);
    stop(&mut replay, libc::SIGINT);
    ticking.store(false, Ordering::Relaxed);
    ticker.join().unwrap();
}

#[test]
fn replay_runs_as_a_member_of_pgq_admin() {
    replay_as_least_privileged("pgq_admin", false);
}

#[test]
fn replay_without_its_ticker_runs_as_a_member_of_pgq_reader() {
    replay_as_least_privileged("pgq_reader", true);
}

#[test]
fn install_again_takes_back_the_old_wide_grants() {
    let pair = replicated();
    // An install from before the roles: no roles, every function executable by PUBLIC
    // (CREATE FUNCTION's default), the capture trigger running as the writer.
    pair.provider.execute(
        "drop owned by pgq_admin, pgq_writer, pgq_reader; \
         drop role pgq_admin, pgq_writer, pgq_reader; \
         grant usage on schema pgq to public; \
         grant execute on all functions in schema pgq to public; \
         grant select on all tables in schema pgq to public; \
         grant all on all sequences in schema pgq to public",
    );
    pair.provider.execute(
        "do $$ declare f regprocedure; begin \
           select oid into f from pg_proc where proname like 'skyrep\\_cap\\_%'; \
           execute format('alter function %s security invoker reset all', f); \
         end $$",
    );
    pair.ok(&["provider", "install"]);
    let mut client = pair.provider.connect("postgres");
    assert_pgq_grants(&mut client);
    let definer: bool = client
        .query_one(
            "select prosecdef and proconfig is not null from pg_proc \
              where proname like 'skyrep\\_cap\\_%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(definer, "the capture function runs as its owner again");
}

#[test]
fn install_without_createrole_says_what_to_create() {
    let cluster = Cluster::start();
    cluster.execute(
        "create role installer login; grant create on database postgres to installer; \
         create role readers",
    );
    let dir = crate::util::TempDir::new("perms");
    let conf = dir.write(
        "q.ini",
        &format!(
            "[pgqd]\ndb = {} user=installer\n",
            cluster.connstr("postgres")
        ),
    );
    let run = || {
        let out = skyrep().arg(&conf).arg("install").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let log = run();
    assert!(
        log.contains(
            "roles pgq_reader, pgq_writer, pgq_admin are missing and this role may not create \
             roles, so only the owner of schema pgq can use the queue; as a role with \
             CREATEROLE run `CREATE ROLE pgq_reader NOLOGIN; CREATE ROLE pgq_writer NOLOGIN; \
             CREATE ROLE pgq_admin NOLOGIN IN ROLE pgq_reader, pgq_writer;` and install again, \
             or name existing roles with pgq_reader_role, pgq_writer_role and pgq_admin_role"
        ),
        "{log}"
    );
    // Even so, PUBLIC may not write or consume.
    let mut client = cluster.connect("postgres");
    let grants = function_grants(&mut client);
    assert_eq!(grants["pgq.next_batch(text,text)"], BTreeSet::new());
    assert_eq!(grants["pgq.version()"], set(&["public"]));

    // An existing role named in the config gets the reader's grants; the other two are
    // created by the DBA and granted to when install runs again.
    std::fs::write(
        &conf,
        format!(
            "[pgqd]\ndb = {} user=installer\npgq_reader_role = readers\n",
            cluster.connstr("postgres")
        ),
    )
    .unwrap();
    cluster.execute("create role pgq_writer; create role pgq_admin in role readers, pgq_writer");
    let log = run();
    assert!(!log.contains("missing"), "{log}");
    let grants = function_grants(&mut client);
    assert_eq!(grants["pgq.next_batch(text,text)"], set(&["readers"]));
    assert_eq!(
        grants["pgq.insert_event(text,text,text)"],
        set(&["pgq_writer"])
    );
    assert_eq!(grants["pgq.ticker()"], set(&["pgq_admin"]));
}
