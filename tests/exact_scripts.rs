//! Scripts of `provider execute` change each database exactly once and the same way: their
//! own row changes are not queued as well (they run with session_replication_role = local,
//! or are refused where that cannot be set), a column whose existing values would depend on
//! where the script runs is refused, and a table being copied when a script arrives is never
//! caught up across it.

use std::time::Duration;

use crate::replay::{Pair, stop};
use crate::util::wait_until;

const WAIT: Duration = Duration::from_secs(120);

fn write_script(pair: &Pair, name: &str, sql: &str) -> String {
    pair.dir.write(name, sql).to_str().unwrap().to_string()
}

/// The names of `table`'s columns on the provider, in order.
fn columns(pair: &Pair, table: &str) -> String {
    pair.provider
        .value(
            "postgres",
            &format!(
                "select string_agg(attname, ',' order by attnum) from pg_attribute \
                 where attrelid = '{table}'::regclass and attnum > 0 and not attisdropped"
            ),
        )
        .unwrap()
}

fn execute_events(pair: &Pair) -> String {
    pair.provider
        .value(
            "postgres",
            "select count(*) from pgq.event_template where ev_type = 'EXECUTE'",
        )
        .unwrap()
}

#[test]
fn a_scripts_own_row_changes_reach_the_subscriber_once() {
    let schema = "create table counter (id int primary key, n int not null); \
                  create table ledger (id int primary key, note text);";
    let pair = Pair::new(schema);
    pair.provider
        .execute("insert into counter values (1, 1); insert into ledger values (1, 'one')");
    pair.ok(&["provider", "add", "counter", "ledger"]);
    pair.ok(&["subscriber", "add", "counter", "ledger"]);
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("counter", "id"), ("ledger", "id")]);

    let path = write_script(
        &pair,
        "bump.sql",
        "update counter set n = n + 1;\n\
         insert into ledger values (2, 'two');\n\
         alter table ledger add column c int default 5;\n\
         update ledger set c = 6 where id = 1;\n",
    );
    pair.ok(&["provider", "execute", &path]);
    // Rows written after the script replicate as usual, with the new column.
    pair.provider
        .execute("insert into ledger values (3, 'three', 7); update counter set n = n + 10");
    pair.wait_equal(&[("counter", "id"), ("ledger", "id")]);
    assert_eq!(
        pair.subscriber
            .value("postgres", "select n from counter")
            .as_deref(),
        Some("12"),
        "{}",
        pair.replay_log()
    );
    assert!(
        !pair.replay_log().contains("ERROR"),
        "{}",
        pair.replay_log()
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn execute_refuses_columns_whose_values_would_differ_on_each_side() {
    let pair = Pair::new(
        "create table ledger (id int primary key, note text); \
         create domain lucky as float8 default random(); \
         create function double_it(int) returns int immutable language sql as 'select $1 * 2';",
    );
    pair.provider
        .execute("insert into ledger select g, 'n' || g from generate_series(1, 20) g");
    pair.ok(&["provider", "add", "ledger"]);
    for (name, column, how) in [
        (
            "random.sql",
            "r float8 default random()",
            "default random()",
        ),
        ("now.sql", "t timestamptz default now()", "default now()"),
        (
            "current.sql",
            "t timestamptz default current_timestamp",
            "default CURRENT_TIMESTAMP",
        ),
        (
            "user.sql",
            "u text default current_user",
            "default CURRENT_USER",
        ),
        ("serial.sql", "s serial", "default nextval("),
        (
            "identity.sql",
            "i int generated always as identity",
            "an identity column",
        ),
        ("domain.sql", "d lucky", "default of its domain"),
        (
            "cast.sql",
            "v text default (clock_timestamp()::text || 'x')",
            "default",
        ),
    ] {
        let path = write_script(
            &pair,
            name,
            &format!(
                "alter table ledger add column ok1 int default 7;\nalter table ledger add column {column};\n"
            ),
        );
        let (code, err) = pair.fails(&["provider", "execute", &path]);
        assert_eq!(code, Some(1), "{name}: {err}");
        assert!(
            err.contains(&format!(
                "adds column {}",
                column.split(' ').next().unwrap()
            )) && err.contains(how)
                && err.contains("nothing was changed"),
            "{name}: {err}"
        );
        assert_eq!(columns(&pair, "ledger"), "id,note", "{name}");
        assert_eq!(execute_events(&pair), "0", "{name}");
    }
    // Defaults that are the same wherever they are computed are fine, and so is a volatile
    // default set on a column that existed before (it only applies to rows inserted later,
    // whose values the events carry).
    let path = write_script(
        &pair,
        "fine.sql",
        "alter table ledger add column k int default 7;\n\
         alter table ledger add column g int default double_it(21);\n\
         alter table ledger add column h text default lower('X');\n\
         alter table ledger alter column note set default random()::text;\n",
    );
    pair.ok(&["provider", "execute", &path]);
    assert_eq!(columns(&pair, "ledger"), "id,note,k,g,h");
    assert_eq!(execute_events(&pair), "1");
}

#[test]
fn without_the_right_to_run_it_locally_a_script_that_changes_rows_is_refused() {
    let pair = Pair::new("create table ledger (id int primary key, note text);");
    pair.provider
        .execute("insert into ledger select g, 'n' || g from generate_series(1, 5) g");
    // An ordinary role that owns the table and may use skyrep's schemas, but may not set
    // session_replication_role.
    pair.provider.execute(
        "create role deployer login; alter table ledger owner to deployer; \
         grant usage, create on schema pgq, londiste to deployer; \
         grant all on all tables in schema pgq, londiste to deployer; \
         grant all on all sequences in schema pgq, londiste to deployer; \
         grant execute on all functions in schema pgq to deployer",
    );
    let conf = std::fs::read_to_string(&pair.conf).unwrap();
    let provider = format!("provider_db = {}", pair.provider.connstr("postgres"));
    let deployer_conf = conf.replace(&provider, &format!("{provider} user=deployer"));
    assert_ne!(conf, deployer_conf);
    std::fs::write(&pair.conf, deployer_conf).unwrap();
    pair.ok(&["provider", "add", "ledger"]);

    let path = write_script(
        &pair,
        "rows.sql",
        "alter table ledger add column c int;\nupdate ledger set c = id;\n",
    );
    let (code, err) = pair.fails(&["provider", "execute", &path]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("rows.sql changes rows of replicated tables (public.ledger)")
            && err.contains("GRANT SET ON PARAMETER session_replication_role TO deployer")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(columns(&pair, "ledger"), "id,note");
    assert_eq!(
        pair.provider
            .value("postgres", "select count(*) from pgq.event_template")
            .as_deref(),
        Some("0")
    );
    // DDL alone needs no such right.
    let path = write_script(&pair, "ddl.sql", "alter table ledger add column c int;\n");
    pair.ok(&["provider", "execute", &path]);
    assert_eq!(columns(&pair, "ledger"), "id,note,c");
    // With the right granted (PostgreSQL 15 and later), the script runs locally.
    pair.provider
        .execute("grant set on parameter session_replication_role to deployer");
    let path = write_script(&pair, "fill.sql", "update ledger set c = id;\n");
    pair.ok(&["provider", "execute", &path]);
    assert_eq!(
        pair.provider
            .value("postgres", "select count(*) from ledger where c = id")
            .as_deref(),
        Some("5")
    );
    assert_eq!(
        pair.provider
            .value(
                "postgres",
                "select count(*) from pgq.event_template where ev_type <> 'EXECUTE'"
            )
            .as_deref(),
        Some("0")
    );
}

#[test]
fn a_script_that_arrives_while_a_table_is_copied_is_never_crossed_by_its_catch_up() {
    let pair = Pair::new("create table ledger (id int primary key, v text);");
    pair.provider
        .execute("insert into ledger select g, 'old' || g from generate_series(1, 1000) g");
    pair.ok(&["provider", "add", "ledger"]);
    // A session on the subscriber holds the table, so the copy, its snapshot taken, waits
    // to empty it.
    let mut holder = pair.subscriber.connect("postgres");
    let mut hold = holder.transaction().unwrap();
    hold.batch_execute("lock table ledger in access share mode")
        .unwrap();
    pair.ok(&["subscriber", "add", "ledger"]);
    let mut replay = pair.start_replay();
    let waiting = || {
        pair.subscriber
            .value(
                "postgres",
                "select count(*) from pg_locks where relation = 'ledger'::regclass and not granted",
            )
            .unwrap()
    };
    wait_until(WAIT, "the copy waits for the table", || waiting() == "1");
    // Changes the copy's snapshot did not see, then a script that renames v and adds a new
    // column of that name, then changes in the new shape.
    pair.provider
        .execute("update ledger set v = 'before' || id where id <= 500");
    let path = write_script(
        &pair,
        "rename.sql",
        "alter table ledger rename column v to w;\nalter table ledger add column v text;\n",
    );
    pair.ok(&["provider", "execute", &path]);
    pair.provider
        .execute("update ledger set v = 'after' || id where id > 900");
    // Replay reaches the script, which waits behind the copy.
    wait_until(WAIT, "the script waits behind the copy", || {
        waiting() == "2"
    });
    hold.commit().unwrap();
    pair.wait_equal(&[("ledger", "id")]);
    assert!(
        pair.replay_log()
            .contains("rename.sql ran while it was being copied; it is copied again"),
        "{}",
        pair.replay_log()
    );
    assert_eq!(
        pair.subscriber
            .value(
                "postgres",
                "select count(*) from ledger where w like 'before%'"
            )
            .as_deref(),
        Some("500")
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_script_replayed_after_a_copy_that_already_holds_its_rows_does_not_meet_them() {
    let pair = Pair::new(
        "create table ledger (id int primary key, v text); \
         insert into ledger select g, 'old' from generate_series(1, 100) g; \
         create table entry (id int primary key, ledger_id int references ledger); \
         insert into entry values (1, 1);",
    );
    pair.ok(&["provider", "add", "ledger", "entry"]);
    // A table in sync whose foreign key refers to the one emptied.
    pair.ok(&["subscriber", "add", "--expect-sync", "entry"]);
    let mut replay = pair.start_replay();
    // No tick while the script runs and the table is copied: replay reaches the script only
    // after the copy, whose snapshot saw the script's row.
    pair.provider
        .execute("select pgq.set_queue_config('login', 'ticker_paused', 'true')");
    let path = write_script(
        &pair,
        "insert.sql",
        "insert into ledger values (1001, 'script');\n",
    );
    pair.ok(&["provider", "execute", &path]);
    pair.ok(&["subscriber", "add", "ledger"]);
    wait_until(WAIT, "the copy holds the script's row", || {
        pair.subscriber
            .value(
                "postgres",
                "select (select merge_state from londiste.subscriber_tables \
                         where table_name = 'public.ledger') || ' ' || \
                        (select count(*) from ledger where id = 1001)",
            )
            .as_deref()
            == Some("catching-up 1")
    });
    pair.provider
        .execute("select pgq.set_queue_config('login', 'ticker_paused', 'false')");
    pair.wait_equal(&[("ledger", "id"), ("entry", "id")]);
    assert!(
        pair.replay_log()
            .contains("public.ledger: emptied before insert.sql"),
        "{}",
        pair.replay_log()
    );
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}

#[test]
fn a_script_never_lands_inside_another_transaction_s_changes() {
    // Equal on both sides: added without a copy, so that everything below reaches the
    // subscriber in one batch, when replay starts.
    let schema = "create table t (id int primary key deferrable initially deferred, note text); \
                  insert into t select g, 'n' || g from generate_series(1, 5) g; \
                  create table s (id int primary key, n int); insert into s values (1, 0);";
    let pair = Pair::new(schema);
    pair.ok(&["provider", "add", "t", "s"]);
    pair.ok(&["subscriber", "add", "--expect-sync", "t", "s"]);
    // Each row's update takes a while on the provider, so the script comes while it runs.
    pair.provider.execute(
        "create function slow() returns trigger language plpgsql as \
           $$begin perform pg_sleep(0.3); return null; end$$; \
         create trigger zz_slow after update on t for each row execute function slow()",
    );
    let mover = {
        let mut client = pair.provider.connect("postgres");
        std::thread::spawn(move || client.batch_execute("update t set id = id + 1").unwrap())
    };
    std::thread::sleep(Duration::from_millis(400));
    let path = write_script(&pair, "bump.sql", "update s set n = n + 1;\n");
    pair.ok(&["provider", "execute", &path]);
    mover.join().unwrap();
    // The script waited for the writer: none of its events come after the script's.
    let order = pair.provider.query_strings(
        "postgres",
        "select ev_type from pgq.event_template order by ev_id",
    );
    assert_eq!(
        order.last().and_then(|r| r[0].as_deref()),
        Some("EXECUTE"),
        "{order:?}"
    );
    let mut replay = pair.start_replay();
    pair.wait_equal(&[("t", "id"), ("s", "id")]);
    assert_eq!(stop(&mut replay, libc::SIGINT), Some(0));
}
