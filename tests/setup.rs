//! Setting up replication as a user does: `provider install/add/remove/tables` and
//! `subscriber install/add/remove/tables/register/unregister`, with their errors.

use std::path::PathBuf;

use crate::cli::one_error_line;
use crate::cluster::Cluster;
use crate::util::{TempDir, skyrep};

/// A provider and a subscriber cluster, a config for them, and the seed's tables on both.
struct Setup {
    provider: Cluster,
    subscriber: Cluster,
    _dir: TempDir,
    conf: PathBuf,
}

const TABLES: &str = "
    create table user_info (userid int primary key, engname text, cnname text, occupation text,
                            birthday date, signname text, email text, qq numeric, crt_time timestamp,
                            mod_time timestamp);
    create table user_session (userid int primary key, logintime timestamp, login_count bigint,
                               logouttime timestamp, online_interval interval);
    create table \"Odd \"\"Name\"\"\" (\"Key Col\" int primary key, \"välue\" text);
    create table no_pk (a int);
    create view a_view as select 1 as x;
    create table parted (id int primary key) partition by range (id);
    create table parted_low partition of parted for values from (0) to (100);
";

impl Setup {
    fn new() -> Setup {
        let provider = Cluster::start();
        let subscriber = Cluster::start();
        provider.execute(TABLES);
        subscriber.execute(TABLES);
        let dir = TempDir::new("setup");
        let conf = dir.write(
            "shop.ini",
            &format!(
                "[skyrep]\njob_name = shop_sub\nprovider_db = {}\nsubscriber_db = {}\npgq_queue_name = shop\n",
                provider.connstr("postgres"),
                subscriber.connstr("postgres")
            ),
        );
        Setup {
            provider,
            subscriber,
            _dir: dir,
            conf,
        }
    }

    /// Runs skyrep with the config; returns (code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = skyrep()
            .arg(&self.conf)
            .args(args)
            .output()
            .expect("skyrep runs");
        (
            out.status.code().expect("exit code"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "skyrep {args:?}: {err}");
        out
    }

    fn fails(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!((code, out.as_str()), (1, ""), "skyrep {args:?}: {err}");
        one_error_line(&err).to_string()
    }
}

#[test]
fn provider_add_refuses_bad_tables_and_changes_nothing() {
    let s = Setup::new();
    assert!(
        s.fails(&["provider", "add", "user_info"])
            .contains("run `provider install` first")
    );
    s.ok(&["provider", "install"]);
    for (table, expected) in [
        ("no_pk", "table public.no_pk has no primary key"),
        ("missing", "table public.missing does not exist"),
        ("a_view", "public.a_view is a view, not a table"),
        (
            "parted",
            "public.parted is partitioned: add its partitions instead",
        ),
    ] {
        let err = s.fails(&["provider", "add", "user_info", table]);
        assert!(err.contains(expected), "{err}");
    }
    assert_eq!(s.ok(&["provider", "tables"]), "");
    let triggers = "select count(*) from pg_trigger where tgname like '\\_londiste%'";
    assert_eq!(
        s.provider.query_strings("postgres", triggers),
        [[Some("0".to_string())]]
    );
}

#[test]
fn provider_add_captures_changes_and_remove_stops_it() {
    let s = Setup::new();
    s.ok(&["provider", "install"]);
    s.ok(&["provider", "add", "user_info", r#""Odd ""Name""""#]);
    assert_eq!(
        s.ok(&["provider", "tables"]),
        "public.Odd \"Name\"\npublic.user_info\n"
    );
    s.provider.execute(
        "insert into user_info (userid, engname) values (1, 'a b'); \
         insert into \"Odd \"\"Name\"\"\" values (7, 'ü&=');",
    );
    let events = s.provider.query_strings(
        "postgres",
        "select ev_type, ev_data, ev_extra1 from pgq.event_1 order by ev_id",
    );
    assert_eq!(
        events,
        [
            [
                Some("I:userid".to_string()),
                Some("userid=1&engname=a+b&cnname&occupation&birthday&signname&email&qq&crt_time&mod_time".to_string()),
                Some("public.user_info".to_string())
            ],
            [
                Some("I:Key Col".to_string()),
                Some("Key+Col=7&v%c3%a4lue=%c3%bc%26%3d".to_string()),
                Some("public.Odd \"Name\"".to_string())
            ],
        ]
    );
    // Adding again is harmless; --all adds every table with a key... and refuses the one without.
    s.ok(&["provider", "add", "user_info"]);
    let err = s.fails(&["provider", "add", "--all"]);
    assert!(err.contains("no_pk has no primary key"), "{err}");
    s.provider.execute("drop table no_pk");
    // Partitions are tables of their own; their partitioned parent is left out.
    s.ok(&["provider", "add", "--all"]);
    assert_eq!(
        s.ok(&["provider", "tables"]),
        "public.Odd \"Name\"\npublic.parted_low\npublic.user_info\npublic.user_session\n"
    );
    s.ok(&["provider", "remove", "user_info"]);
    assert_eq!(
        s.ok(&["provider", "tables"]),
        "public.Odd \"Name\"\npublic.parted_low\npublic.user_session\n"
    );
    s.provider
        .execute("insert into user_info (userid) values (2)");
    // The removal itself is queued for the subscribers; after it, no event of the table.
    let events = s.provider.query_strings(
        "postgres",
        "select ev_type, ev_data from pgq.event_1 order by ev_id",
    );
    assert_eq!(events.len(), 3, "no event after remove: {events:?}");
    assert_eq!(
        events[2],
        [
            Some("londiste.remove-table".to_string()),
            Some("public.user_info".to_string())
        ]
    );
    assert!(
        s.fails(&["provider", "remove", "user_info"])
            .contains("is not added on the provider")
    );
}

#[test]
fn subscriber_add_checks_both_sides_and_protects_the_table() {
    let s = Setup::new();
    s.ok(&["provider", "install"]);
    assert!(
        s.fails(&["subscriber", "add", "user_info"])
            .contains("run `subscriber install` first")
    );
    s.ok(&["subscriber", "install"]);
    assert!(
        s.fails(&["subscriber", "add", "user_info"])
            .contains("run `provider add public.user_info` first")
    );
    s.ok(&[
        "provider",
        "add",
        "user_info",
        "user_session",
        r#""Odd ""Name""""#,
    ]);
    // A table missing here, or with other columns, is refused and nothing is added.
    s.subscriber.execute("drop table user_session");
    let err = s.fails(&["subscriber", "add", "user_info", "user_session"]);
    assert!(
        err.contains("table public.user_session does not exist on the subscriber: create it, or add it with --create"),
        "{err}"
    );
    s.subscriber
        .execute("create table user_session (userid bigint primary key, logintime timestamp)");
    let err = s.fails(&["subscriber", "add", "user_session"]);
    assert!(
        err.contains("column userid is integer on the provider but bigint on the subscriber")
            && err.contains("column login_count is missing on the subscriber"),
        "{err}"
    );
    assert_eq!(
        s.ok(&["subscriber", "tables"]),
        "table_name  merge_state  table_attrs\n----------  -----------  -----------\n"
    );
    s.ok(&["subscriber", "add", "user_info"]);
    s.ok(&["add-table", r#""Odd ""Name""""#, "--expect-sync"]);
    assert_eq!(
        s.ok(&["tables"]),
        "table_name         merge_state  table_attrs\n\
         -----------------  -----------  -----------\n\
         public.Odd \"Name\"  ok\n\
         public.user_info   new\n"
    );
    // Ordinary writes are refused; skyrep's replay session passes.
    let mut client = s.subscriber.connect("postgres");
    let err = client
        .batch_execute("insert into user_info (userid) values (1)")
        .unwrap_err();
    let err = crate::util::error_chain(&err);
    assert!(
        err.contains("public.user_info is replicated from queue shop by skyrep"),
        "{err}"
    );
    client
        .batch_execute("begin; set local skyrep.replay = on; insert into user_info (userid) values (1); commit")
        .unwrap();
    // Removing leaves the data and lifts the protection.
    s.ok(&["remove-table", "user_info"]);
    client.batch_execute("delete from user_info").unwrap();
    assert!(
        s.fails(&["subscriber", "remove", "user_info"])
            .contains("is not added on the subscriber")
    );
}

#[test]
fn register_and_unregister_the_consumer() {
    let s = Setup::new();
    s.ok(&["provider", "install"]);
    s.ok(&["subscriber", "install"]);
    let consumers = "select consumer_name from pgq.get_consumer_info('shop')";
    let (_, _, log) = s.run(&["subscriber", "register"]);
    assert!(
        log.contains("consumer shop_sub registered on queue shop"),
        "{log}"
    );
    assert_eq!(
        s.provider.query_strings("postgres", consumers),
        [[Some("shop_sub".to_string())]]
    );
    let (_, _, log) = s.run(&["subscriber", "register"]);
    assert!(log.contains("was already registered"), "{log}");
    s.ok(&["subscriber", "unregister"]);
    assert!(s.provider.query_strings("postgres", consumers).is_empty());
}

#[test]
fn a_role_that_may_only_write_cannot_switch_the_write_guard_off() {
    let s = Setup::new();
    s.ok(&["provider", "install"]);
    s.ok(&["subscriber", "install"]);
    s.ok(&["provider", "add", "user_info"]);
    s.ok(&["subscriber", "add", "user_info", "--expect-sync"]);
    s.subscriber.execute(
        "create role clerk login; grant insert, update, delete, truncate on user_info to clerk",
    );
    let connect = |options: &str| {
        postgres::Config::new()
            .host_path(s.subscriber.socket_dir())
            .port(s.subscriber.port())
            .user("clerk")
            .dbname("postgres")
            .options(options)
            .connect(postgres::NoTls)
            .unwrap()
    };
    let refused = |client: &mut postgres::Client, sql: &str| {
        let err = client.batch_execute(sql).unwrap_err();
        let err = crate::util::error_chain(&err);
        assert!(
            err.contains("public.user_info is replicated from queue shop by skyrep"),
            "{sql}: {err}"
        );
    };
    let mut clerk = connect("");
    for sql in [
        "set skyrep.replay = on; insert into user_info (userid) values (1)",
        "begin; set local skyrep.replay = on; delete from user_info; commit",
        "set skyrep.replay = on; truncate user_info",
    ] {
        refused(&mut clerk, sql);
        clerk.batch_execute("rollback; reset all").unwrap();
    }
    refused(
        &mut connect("-c skyrep.replay=on"),
        "insert into user_info (userid) values (1)",
    );
    // skyrep's own role passes (here a superuser, as are repair's fix files run by one).
    s.subscriber.execute(
        "begin; set local skyrep.replay = on; insert into user_info (userid) values (1); commit",
    );
    // A guard put there by an older version, not bound to a role, is bound by `subscriber
    // install`.
    s.subscriber.execute(
        "drop trigger _skyrep_deny on user_info; \
         create trigger _skyrep_deny before insert or update or delete or truncate on user_info \
         for each statement execute function londiste.deny_write('shop')",
    );
    s.ok(&["subscriber", "install"]);
    assert_eq!(
        s.subscriber.value(
            "postgres",
            "select tgnargs from pg_trigger where tgname = '_skyrep_deny'"
        ),
        Some("2".into())
    );
    refused(&mut connect("-c skyrep.replay=on"), "delete from user_info");
}
