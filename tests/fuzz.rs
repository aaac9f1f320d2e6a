//! A seeded randomized replay test: concurrent random transactions over tables joined by
//! foreign keys with every action, deferrable keys, key moves, unique swaps, truncates,
//! savepoints and two-phase commits, with odd values written from sessions with varied
//! settings, replayed in batches of one commit, of random sizes and of a whole round; the
//! tables must end row by row equal. Besides the writers, from the same seed:
//!
//! - an inheritance tree (`parent_i` and its child `child_i`, both replicated), written with
//!   and without `ONLY`;
//! - triggers and rules made on the subscriber only (a BEFORE trigger that overwrites a
//!   column, AFTER triggers and `DO ALSO` rules that write to other replicated tables), which
//!   must not act on replayed rows;
//! - `provider execute` scripts run while the writers write: columns added with constant
//!   defaults (to the inheritance parent too) and filled later, row changes that are the same
//!   wherever they run, and one column with a volatile default, which is refused and changes
//!   nothing;
//! - tables added on the subscriber in the middle of the first round, so that writes and
//!   scripts reach them while they are copied and catch up;
//! - databases (and, in the role variant, the replay role) with odd default settings;
//! - a variant where replay connects to the subscriber as an ordinary role that owns the
//!   tables and may set `session_replication_role`, with row-level security on some tables.
//!
//! `SKYREP_SEED=N` reruns a seed (each writer's statements follow from it; how concurrent
//! writers interleave does not, so also try `SKYREP_FUZZ_WRITERS=1`), `SKYREP_LONG=1` runs
//! more transactions and rounds, `SKYREP_FUZZ_SETTINGS=0` keeps the writers' sessions and the
//! databases at the server's settings, `SKYREP_FUZZ_SCRIPTS=N` runs N scripts a round (6, long 25). A failing run writes the committed transactions and
//! scripts to `$TMPDIR/skyrep-fuzz-SEED-MODE.sql`.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use postgres::Client;

use crate::cluster::Cluster;
use crate::replay::{Pair, stop};
use crate::util::{Rng, error_chain};

/// The fuzz test's own draws.
impl Rng {
    /// A parent key in play: mostly an original one, sometimes a moved one.
    fn parent(&mut self) -> u64 {
        1 + self.below(PARENTS) + if self.chance(20) { 100 } else { 0 }
    }

    /// A key of the other tables.
    fn id(&mut self) -> u64 {
        1 + self.below(IDS)
    }

    /// A parent code, in either case (`citext`: equal either way).
    fn code(&mut self) -> String {
        let n = 1 + self.below(PARENTS);
        format!("'{}{n}'", if self.chance(50) { "c" } else { "C" })
    }
}

/// The queue of [`Pair`]'s config.
const QUEUE: &str = "login";

/// How long replay may take to apply a round.
const WAIT: Duration = Duration::from_secs(180);

/// The replicated tables.
const TABLES: [&str; 11] = [
    "parent",
    "kid_cascade",
    "kid_null",
    "kid_default",
    "shift",
    "tree",
    "odd",
    "at_key",
    "parent_i",
    "child_i",
    "counter",
];

/// The same on both sides: every foreign-key action, deferrable keys, citext keys, keys equal
/// by type with different text, columns of many types, an inheritance tree and a counter
/// only scripts change.
const SCHEMA: &str = "
    create extension if not exists citext;
    create table parent (id int primary key, code citext not null unique, note text);
    create table kid_cascade (
        id int primary key,
        pid int references parent on delete cascade on update cascade,
        note text);
    create table kid_null (
        id int primary key,
        pid int references parent on delete set null on update set null,
        code citext references parent (code) on delete set null on update cascade,
        note text);
    create table kid_default (
        id int primary key,
        pid int not null default 0
            references parent on delete set default on update set default,
        note text);
    create table shift (
        id int primary key deferrable initially deferred,
        u int unique deferrable initially deferred,
        pid int references parent on delete cascade on update cascade,
        note text);
    create table tree (
        id int primary key,
        up int references tree on delete cascade on update cascade deferrable initially deferred,
        note text);
    create table odd (
        k citext primary key,
        pid int references parent on delete set null on update cascade,
        t text, b bytea, a text[], ia int[], j json, jb jsonb, n numeric, ts timestamptz,
        d date, iv interval, f float8, m money);
    create table at_key (at timestamptz primary key, n numeric unique, iv interval, note text);
    insert into parent select g, 'c' || g, 'p' || g from generate_series(0, 20) g;
    insert into kid_cascade select g, g % 20 + 1, 'k' from generate_series(1, 20) g;
    insert into kid_null select g, g % 20 + 1, 'c' || (g % 7 + 1), 'k' from generate_series(1, 20) g;
    insert into kid_default select g, g % 20 + 1, 'k' from generate_series(1, 20) g;
    insert into shift select g, g, g % 20 + 1, 's' from generate_series(1, 20) g;
    insert into tree select g, nullif(g / 2, 0), 't' from generate_series(1, 20) g;
    insert into odd (k, pid, t) select 'k' || g, g, 't' || g from generate_series(1, 10) g;
    insert into at_key select timestamptz '2024-01-01 00:00+00' + g * interval '1 hour', g,
                              g * interval '1 day', 'a' from generate_series(1, 10) g;
    create table parent_i (id int primary key, note text, n int);
    create table child_i (primary key (id), c text) inherits (parent_i);
    create table counter (id int primary key, n int not null);
    insert into parent_i (id, note, n) select g, 'pi', g from generate_series(1, 12) g;
    insert into child_i (id, note, n, c) select g, 'ci', g, 'c' from generate_series(6, 18) g;
    insert into counter values (1, 0);
";

/// Made on the subscriber only: triggers and rules that would change replayed rows or write
/// rows of other replicated tables if they acted on replayed rows.
const SUBSCRIBER_EXTRAS: &str = "
    create function fuzz_overwrite() returns trigger language plpgsql as
        $$begin new.note := 'trigger'; return new; end$$;
    create trigger fuzz_overwrite before insert or update on kid_cascade
        for each row execute function fuzz_overwrite();
    create trigger fuzz_overwrite before insert or update on child_i
        for each row execute function fuzz_overwrite();
    create function fuzz_echo() returns trigger language plpgsql as $$begin
        insert into at_key (at, n, note)
        values (timestamptz '1970-01-01 00:00+00' + new.id * interval '1 second', 1000 + new.id,
                'trigger')
        on conflict do nothing;
        return null; end$$;
    create trigger fuzz_echo after insert or update on parent
        for each row execute function fuzz_echo();
    create function fuzz_count() returns trigger language plpgsql as $$begin
        update counter set n = n + 1000 where id = 1; return null; end$$;
    create trigger fuzz_count after delete on tree
        for each row execute function fuzz_count();
    create trigger fuzz_count after truncate on kid_null
        for each statement execute function fuzz_count();
    create rule fuzz_insert as on insert to shift
        do also insert into counter (id, n) values (2000 + new.id, 1) on conflict do nothing;
    create rule fuzz_update as on update to odd
        do also update counter set n = n + 1 where id = 1;
    create rule fuzz_delete as on delete to child_i
        do also insert into odd (k, t) values ('rule ' || old.id, 'rule') on conflict do nothing;
";

/// The triggers and rules of [`SUBSCRIBER_EXTRAS`].
const EXTRAS: usize = 8;

/// Parent keys in play: 1..=PARENTS, and the same plus 100 for moved ones (0 stays, as the
/// default of `kid_default`).
const PARENTS: u64 = 30;
/// Keys in play of the other tables.
const IDS: u64 = 40;

const TEXTS: &[&str] = &[
    "null",
    "''",
    "' '",
    "'plain'",
    "'it''s'",
    r"'back\slash'",
    r"'\\'",
    "'ünïcødé ✓ 😀'",
    r"E'tab\there\nnew line'",
    "'%41+&=?#'",
    "'NULL'",
    r#"'"quoted"'"#,
    "'{a,b}'",
    "'  trailing  '",
];
const BYTEAS: &[&str] = &[
    "null",
    "''::bytea",
    r"'\x00ff7f80'::bytea",
    r"'\x'::bytea",
    r"'a\000b\\c'::bytea",
    "convert_to('ünï', 'UTF8')",
    "decode(repeat('ff00', 40), 'hex')",
];
const TEXT_ARRAYS: &[&str] = &[
    "null",
    "'{}'",
    r#"'{a,"b c",NULL,"\"q\"","back\\slash",""}'"#,
    "array['ü', null, '', 'NULL']",
    "'{{1,2},{3,4}}'",
    r"array[E'new\nline', ',', '{', ' ']",
];
const INT_ARRAYS: &[&str] = &[
    "null",
    "'{}'",
    "'{1,NULL,-3}'",
    "'[0:1]={7,8}'",
    "array[2147483647]",
];
const JSONS: &[&str] = &[
    "null",
    r#"'{"b": 1,  "a": [1, 2.50, null]}'"#,
    r#"'"str"'"#,
    "'null'",
    "'[]'",
    r#"'{"k": "ü\u00e9 \"q\""}'"#,
    r#"' { "dup": 1, "dup": 2 } '"#,
];
const NUMERICS: &[&str] = &[
    "null",
    "1.10",
    "0.000",
    "-12.3400",
    "'NaN'",
    "1e-5",
    "123456789012345678901234567890.1230",
    "'Infinity'",
];
const TIMESTAMPTZS: &[&str] = &[
    "null",
    "'2024-02-29 23:59:59.123456+05:30'",
    "'1999-12-31 23:00:00-08'",
    "'infinity'",
    "'-infinity'",
    "'0044-03-15 12:00:00+00 BC'",
    "'2038-01-19 03:14:07.5Z'",
    "'2024-07-01 12:00:00'",
    "'1900-01-01 00:00:00 Europe/Amsterdam'",
];
const DATES: &[&str] = &[
    "null",
    "'2024-01-31'",
    "'infinity'",
    "'0001-01-01 BC'",
    "'2000-02-29'",
];
const INTERVALS: &[&str] = &[
    "null",
    "'1 year 2 mons 3 days 04:05:06.5'",
    "'-1 day +02:00:00'",
    "'0'",
    "'1 mon -1 day'",
    "'P1Y2M3DT4H5M6S'",
    "'-3 years -0.000001 seconds'",
    "'100 hours'",
    "'-1 mon +1 day -00:00:01'",
];
const FLOATS: &[&str] = &[
    "null",
    "0.1",
    "1e-300",
    "'NaN'",
    "'-Infinity'",
    "1.7976931348623157e308",
    "1.0 / 3",
    "'-0'",
    "123456789.125",
];
const MONEYS: &[&str] = &[
    "null",
    "1234.56::numeric::money",
    "(-0.01)::numeric::money",
    "0::money",
    "92233720368547758.07::numeric::money",
];
/// `odd`'s citext keys; some equal but for case.
const ODD_KEYS: &[&str] = &[
    "'a'",
    "'A'",
    "'b'",
    "'Ab'",
    "'aB'",
    "'ü'",
    "'x y'",
    "'Q''s'",
    r"'back\slash'",
    "''",
];
const DATESTYLES: &[&str] = &[
    "ISO, MDY",
    "ISO, DMY",
    "SQL, DMY",
    "SQL, MDY",
    "German",
    "Postgres, MDY",
    "Postgres, DMY",
];
const INTERVALSTYLES: &[&str] = &["postgres", "postgres_verbose", "sql_standard", "iso_8601"];
const TIMEZONES: &[&str] = &[
    "UTC",
    "Asia/Kolkata",
    "America/St_Johns",
    "Pacific/Chatham",
    "Europe/Berlin",
    "America/Los_Angeles",
];
/// A locale other than C for `lc_monetary`, used where the server has it.
const MONETARY: &str = "de_DE.utf8";

/// When the provider's queue is ticked, which makes the batches replay sees.
#[derive(Clone, Copy, Debug)]
enum Ticks {
    /// After every commit: a batch holds one commit's events (a few where commits overlap).
    EveryCommit,
    /// After a random fifth of the commits: batches of random sizes.
    Random,
    /// Only at the end of a round: the whole round is one batch.
    End,
}

/// What a run does, from the environment.
struct Plan {
    seed: u64,
    /// Rounds of writing, each followed by a tick and a check that the tables are equal.
    rounds: usize,
    /// Concurrent writers per round.
    writers: usize,
    /// Transactions of each writer per round.
    transactions: usize,
    /// Scripts of `provider execute` per round, run while the writers write.
    scripts: usize,
    /// Whether writers vary their sessions' settings, and the databases have odd defaults.
    settings: bool,
}

impl Plan {
    fn from_env() -> Plan {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let seed = env("SKYREP_SEED").map_or_else(
            || {
                let nanos = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .expect("clock after 1970")
                    .as_nanos() as u64;
                Rng(nanos ^ u64::from(std::process::id()) << 32).next()
            },
            |s| s.parse().expect("SKYREP_SEED is a number"),
        );
        let long = env("SKYREP_LONG").is_some_and(|v| v != "0");
        Plan {
            seed,
            rounds: if long { 8 } else { 2 },
            writers: env("SKYREP_FUZZ_WRITERS")
                .map_or(3, |v| v.parse().expect("SKYREP_FUZZ_WRITERS is a number")),
            transactions: if long { 300 } else { 30 },
            scripts: env("SKYREP_FUZZ_SCRIPTS").map_or(if long { 25 } else { 6 }, |v| {
                v.parse().expect("SKYREP_FUZZ_SCRIPTS is a number")
            }),
            settings: env("SKYREP_FUZZ_SETTINGS").is_none_or(|v| v != "0"),
        }
    }
}

/// `replay` that is killed when the test ends early.
struct Replay(Child);

impl Drop for Replay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the writers share: the provider, the connection that ticks, and the transcript of
/// committed transactions and ticks.
struct Shared<'a> {
    provider: &'a Cluster,
    ticker: Mutex<Client>,
    transcript: Mutex<String>,
    ticks: Ticks,
    settings: bool,
    monetary: bool,
}

impl Shared<'_> {
    /// Makes a tick now; returns its id.
    fn tick(&self) -> i64 {
        let mut ticker = self.ticker.lock().unwrap();
        ticker
            .batch_execute(&format!("select pgq.force_tick('{QUEUE}')"))
            .unwrap_or_else(|e| panic!("force_tick: {}", error_chain(&e)));
        let id: Option<i64> = ticker
            .query_one("select pgq.ticker($1)", &[&QUEUE])
            .unwrap_or_else(|e| panic!("ticker: {}", error_chain(&e)))
            .get(0);
        let id = id.expect("a forced tick is made");
        writeln!(self.transcript.lock().unwrap(), "-- tick {id}").unwrap();
        id
    }

    /// `SET` statements for a session (`local` ones for a transaction) with random settings.
    fn session_settings(&self, rng: &mut Rng, local: bool) -> String {
        let set = if local { "set local" } else { "set" };
        let mut sql = format!(
            "{set} datestyle = '{}'; {set} intervalstyle = '{}'; {set} extra_float_digits = {}; \
             {set} bytea_output = '{}'; {set} timezone = '{}';",
            rng.pick(DATESTYLES),
            rng.pick(INTERVALSTYLES),
            rng.pick(&["0", "1", "3", "-2"]),
            rng.pick(&["hex", "escape"]),
            rng.pick(TIMEZONES),
        );
        if self.monetary {
            write!(
                sql,
                " {set} lc_monetary = '{}';",
                rng.pick(&["C", MONETARY])
            )
            .unwrap();
        }
        sql
    }

    /// Runs `transactions` random transactions; returns how many committed.
    fn writer(&self, mut rng: Rng, name: &str, transactions: usize) -> usize {
        let mut client = self.provider.connect("postgres");
        client
            .batch_execute("set lock_timeout = '20s'")
            .expect("lock_timeout");
        if self.settings {
            let sql = self.session_settings(&mut rng, false);
            client
                .batch_execute(&sql)
                .unwrap_or_else(|e| panic!("{sql}: {}", error_chain(&e)));
        }
        let mut committed = 0;
        for n in 0..transactions {
            let gid = format!("{name}-{n}");
            let Some(statements) = transaction(&mut client, &mut rng, &gid, self) else {
                continue;
            };
            committed += 1;
            let mut transcript = self.transcript.lock().unwrap();
            writeln!(transcript, "-- {gid}").unwrap();
            for statement in statements {
                writeln!(transcript, "{statement};").unwrap();
            }
            drop(transcript);
            self.maybe_tick(&mut rng);
        }
        committed
    }

    /// Ticks after a commit as [`Ticks`] says.
    fn maybe_tick(&self, rng: &mut Rng) {
        let tick = match self.ticks {
            Ticks::EveryCommit => true,
            Ticks::Random => rng.chance(20),
            Ticks::End => false,
        };
        if tick {
            self.tick();
        }
    }
}

/// A writer's connection in a transaction, and the statements that ran in it.
struct Session<'c> {
    client: &'c mut Client,
    done: Vec<String>,
}

impl Session<'_> {
    fn run(&mut self, sql: String) -> Result<(), postgres::Error> {
        self.client.batch_execute(&sql)?;
        self.done.push(sql);
        Ok(())
    }

    /// A random transaction: random statements, some in savepoints released or rolled back
    /// to, then a commit, a rollback or a two-phase commit or rollback. Whether it committed.
    fn transaction(
        &mut self,
        rng: &mut Rng,
        gid: &str,
        shared: &Shared<'_>,
    ) -> Result<bool, postgres::Error> {
        self.run("begin".into())?;
        if shared.settings && rng.chance(20) {
            self.run(shared.session_settings(rng, true))?;
        }
        for savepoint in 0..1 + rng.below(4) {
            if !rng.chance(40) {
                self.run(operation(rng))?;
                continue;
            }
            self.run(format!("savepoint s{savepoint}"))?;
            for _ in 0..1 + rng.below(3) {
                if self.run(operation(rng)).is_err() {
                    break;
                }
            }
            // After an error only the rollback works.
            if !(rng.chance(50) && self.run(format!("release s{savepoint}")).is_ok()) {
                self.run(format!("rollback to s{savepoint}"))?;
            }
        }
        match rng.below(20) {
            0 => {
                self.run("rollback".into())?;
                Ok(false)
            }
            1..=2 => {
                self.run(format!("prepare transaction '{gid}'"))?;
                let commit = rng.chance(75);
                let finish = format!(
                    "{} prepared '{gid}'",
                    if commit { "commit" } else { "rollback" }
                );
                // A prepared transaction left behind would hold its locks for good.
                self.run(finish.clone())
                    .unwrap_or_else(|e| panic!("{finish}: {}", error_chain(&e)));
                Ok(commit)
            }
            _ => {
                self.run("commit".into())?;
                Ok(true)
            }
        }
    }
}

/// Runs one random transaction; its statements if it committed, `None` if it failed (unique
/// and foreign-key violations, deadlocks, lock timeouts) or was rolled back.
fn transaction(
    client: &mut Client,
    rng: &mut Rng,
    gid: &str,
    shared: &Shared<'_>,
) -> Option<Vec<String>> {
    let mut session = Session {
        client,
        done: Vec::new(),
    };
    match session.transaction(rng, gid, shared) {
        Ok(true) => Some(session.done),
        Ok(false) => None,
        Err(_) => {
            let _ = session.client.batch_execute("rollback");
            None
        }
    }
}

/// One random statement.
fn operation(rng: &mut Rng) -> String {
    let kid = rng.pick(&["kid_cascade", "kid_null", "kid_default"]);
    let note = rng.pick(TEXTS);
    if rng.chance(12) {
        return inherited(rng, note);
    }
    match rng.below(100) {
        0..=7 => {
            let (id, code) = (rng.parent(), rng.code());
            let conflict = rng.pick(&[
                "",
                " on conflict do nothing",
                " on conflict do nothing",
                " on conflict (id) do update set note = excluded.note, code = excluded.code",
            ]);
            format!("insert into parent values ({id}, {code}, {note}){conflict}")
        }
        8..=10 => format!(
            "update parent set note = {note} where id = {}",
            rng.parent()
        ),
        11..=14 => format!(
            "update parent set id = {} where id = {}",
            rng.parent(),
            rng.parent()
        ),
        15..=16 => {
            let from = 1 + rng.below(PARENTS);
            if rng.chance(50) {
                format!(
                    "update parent set id = id + 100 where id between {from} and {}",
                    from + 3
                )
            } else {
                format!(
                    "update parent set id = id - 100 where id between {} and {}",
                    from + 100,
                    from + 103
                )
            }
        }
        17..=19 => {
            let (a, b) = (rng.parent(), rng.parent());
            format!(
                "do $$ declare a citext; b citext; begin \
                   select code into a from parent where id = {a}; \
                   select code into b from parent where id = {b}; \
                   if a is not null and b is not null and {a} <> {b} then \
                     update parent set code = 'swap' where id = {a}; \
                     update parent set code = a where id = {b}; \
                     update parent set code = b where id = {a}; \
                   end if; end $$"
            )
        }
        20..=21 => format!(
            "update parent set code = {}(code) where id = {}",
            rng.pick(&["upper", "lower"]),
            rng.parent()
        ),
        22..=24 => format!("delete from parent where id = {}", rng.parent()),
        25 => {
            let from = rng.parent();
            format!(
                "delete from parent where id between {from} and {}",
                from + 2
            )
        }
        26..=31 => {
            let id = rng.id();
            let pid = if rng.chance(30) {
                rng.parent().to_string()
            } else {
                existing_parent(rng)
            };
            if kid == "kid_null" {
                let code = if rng.chance(30) {
                    "null".into()
                } else {
                    rng.code()
                };
                format!("insert into kid_null values ({id}, {pid}, {code}, {note})")
            } else {
                format!("insert into {kid} values ({id}, {pid}, {note})")
            }
        }
        32..=35 => format!(
            "update {kid} set pid = {}, note = {note} where id = {}",
            rng.parent(),
            rng.id()
        ),
        36 => format!(
            "update kid_null set code = {} where id = {}",
            rng.code(),
            rng.id()
        ),
        37 => format!("update {kid} set id = {} where id = {}", rng.id(), rng.id()),
        38..=39 => format!("delete from {kid} where id = {}", rng.id()),
        40 => format!("delete from {kid} where pid = {}", rng.parent()),
        41..=44 => {
            let (id, u) = (rng.id(), rng.id());
            // Mostly keys that are free (a taken one fails at commit, the keys are deferred).
            let free = if rng.chance(80) {
                format!(" where not exists (select from shift where id = {id} or u = {u})")
            } else {
                String::new()
            };
            format!(
                "insert into shift select {id}, {u}, {}, {note}{free}",
                existing_parent(rng)
            )
        }
        45..=48 => {
            let (a, b) = (rng.id(), rng.id());
            match rng.below(7) {
                0 => "update shift set id = id + 1".into(),
                1 => "update shift set id = id - 1".into(),
                2 => format!("update shift set id = {} - id", IDS + 1),
                3 => format!("update shift set u = {} - u", IDS + 1),
                4 => format!(
                    "update shift set id = case id when {a} then {b} else {a} end \
                     where id in ({a}, {b})"
                ),
                5 => format!(
                    "update shift set u = case id when {a} then (select u from shift where id = {b}) \
                     else (select u from shift where id = {a}) end where id in ({a}, {b})"
                ),
                // A new row holds key `a` with the row from before through several updates
                // (each might, by its events alone, have changed either), then the row from
                // before goes.
                _ => {
                    let mut sql = format!(
                        "insert into shift select id, u, pid, 'held0' from shift where id = {a};"
                    );
                    for step in 1..=1 + rng.below(10) {
                        sql.push_str(&format!(
                            " update shift set note = 'held{step}' \
                             where id = {a} and note = 'held{}';",
                            step - 1
                        ));
                    }
                    sql.push_str(&format!(
                        " delete from shift where id = {a} and (note like 'held%') is not true"
                    ));
                    sql
                }
            }
        }
        49..=50 => format!("delete from shift where id = {}", rng.id()),
        51..=55 => {
            let up = match rng.below(5) {
                0 => "null".to_string(),
                1 => rng.id().to_string(),
                _ => format!("(select min(id) from tree where id >= {})", rng.id()),
            };
            format!("insert into tree values ({}, {up}, {note})", rng.id())
        }
        56..=57 => format!("update tree set up = {} where id = {}", rng.id(), rng.id()),
        58 => format!("update tree set id = {} where id = {}", rng.id(), rng.id()),
        59..=60 => format!("delete from tree where id = {}", rng.id()),
        61..=70 => {
            let row = format!(
                "({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})",
                rng.pick(ODD_KEYS),
                existing_parent(rng),
                rng.pick(TEXTS),
                rng.pick(BYTEAS),
                rng.pick(TEXT_ARRAYS),
                rng.pick(INT_ARRAYS),
                rng.pick(JSONS),
                rng.pick(JSONS),
                rng.pick(NUMERICS),
                rng.pick(TIMESTAMPTZS),
                rng.pick(DATES),
                rng.pick(INTERVALS),
                rng.pick(FLOATS),
                rng.pick(MONEYS),
            );
            let conflict = rng.pick(&[
                "",
                " on conflict do nothing",
                " on conflict (k) do update set t = excluded.t, b = excluded.b, a = excluded.a, \
                 j = excluded.j, jb = excluded.jb, n = excluded.n, ts = excluded.ts, \
                 iv = excluded.iv, f = excluded.f, m = excluded.m",
            ]);
            format!("insert into odd values {row}{conflict}")
        }
        71..=75 => {
            let (column, value) = match rng.below(11) {
                0 => ("t", rng.pick(TEXTS)),
                1 => ("b", rng.pick(BYTEAS)),
                2 => ("a", rng.pick(TEXT_ARRAYS)),
                3 => ("ia", rng.pick(INT_ARRAYS)),
                4 => ("j", rng.pick(JSONS)),
                5 => ("jb", rng.pick(JSONS)),
                6 => ("n", rng.pick(NUMERICS)),
                7 => ("ts", rng.pick(TIMESTAMPTZS)),
                8 => ("d", rng.pick(DATES)),
                9 => ("iv", rng.pick(INTERVALS)),
                _ => ("f", rng.pick(FLOATS)),
            };
            format!(
                "update odd set {column} = {value} where k = {}",
                rng.pick(ODD_KEYS)
            )
        }
        76..=78 => {
            let to = if rng.chance(50) {
                format!("{}(k)", rng.pick(&["upper", "lower"]))
            } else {
                rng.pick(ODD_KEYS).to_string()
            };
            format!("update odd set k = {to} where k = {}", rng.pick(ODD_KEYS))
        }
        79..=80 => format!("delete from odd where k = {}", rng.pick(ODD_KEYS)),
        81..=86 => {
            let conflict = rng.pick(&[
                "",
                " on conflict do nothing",
                " on conflict (at) do update set n = excluded.n, note = excluded.note",
            ]);
            format!(
                "insert into at_key values ({}, {}, {}, {note}){conflict}",
                instant(rng),
                amount(rng),
                rng.pick(INTERVALS)
            )
        }
        87..=89 => format!(
            "update at_key set n = {}, iv = {}, note = {note} where at = {}",
            amount(rng),
            rng.pick(INTERVALS),
            instant(rng)
        ),
        90 => format!(
            "update at_key set at = {} where at = {}",
            instant(rng),
            instant(rng)
        ),
        91..=92 => format!("delete from at_key where n = {}", amount(rng)),
        93..=97 => format!(
            "update {kid} set note = coalesce(note, '') || {note} where pid between {} and {}",
            rng.parent(),
            rng.parent() + 5
        ),
        _ if rng.chance(70) => format!(
            "insert into parent values ({}, {}, {note}) on conflict do nothing",
            rng.parent(),
            rng.code()
        ),
        _ => {
            let truncate = rng.pick(&[
                "truncate kid_null",
                "truncate parent cascade",
                "truncate kid_cascade, kid_null, kid_default, shift, odd, parent",
                "truncate tree",
                "truncate at_key, kid_cascade",
                "truncate shift, tree, kid_default",
            ]);
            format!(
                "{truncate}; insert into parent values (0, 'c0', 'zero') on conflict do nothing"
            )
        }
    }
}

/// One random statement on the inheritance tree: on the parent with and without `ONLY`
/// (without, it reaches the child's rows, which capture queues as the child's), on the child.
fn inherited(rng: &mut Rng, note: &str) -> String {
    // Keys 1..=20, and the same plus 50 for moved ones.
    let mut key = || 1 + rng.below(20) + if rng.chance(20) { 50 } else { 0 };
    let (a, b) = (key(), key());
    let only = if rng.chance(50) { "only " } else { "" };
    match rng.below(24) {
        0..=2 => format!(
            "insert into parent_i (id, note, n) values ({a}, {note}, {b}){}",
            rng.pick(&[
                "",
                " on conflict do nothing",
                " on conflict (id) do update set note = excluded.note, n = excluded.n",
            ])
        ),
        3..=5 => format!(
            "insert into child_i (id, note, n, c) values ({a}, {note}, {b}, {}){}",
            rng.pick(TEXTS),
            rng.pick(&[
                "",
                " on conflict do nothing",
                " on conflict (id) do update set c = excluded.c, n = child_i.n + 1",
            ])
        ),
        6..=8 => format!("update {only}parent_i set note = {note} where id = {a}"),
        9..=10 => format!(
            "update {only}parent_i set n = coalesce(n, 0) + 1 where id between {a} and {}",
            a + 5
        ),
        11 => format!("update {only}parent_i set id = {b} where id = {a}"),
        12 => {
            let from = 1 + rng.below(20);
            if rng.chance(50) {
                format!(
                    "update {only}parent_i set id = id + 50 where id between {from} and {}",
                    from + 2
                )
            } else {
                format!(
                    "update {only}parent_i set id = id - 50 where id between {} and {}",
                    from + 50,
                    from + 52
                )
            }
        }
        13..=14 => format!(
            "update child_i set c = {}, note = {note} where id = {a}",
            rng.pick(TEXTS)
        ),
        15 => format!("update child_i set id = {b} where id = {a}"),
        16..=17 => format!("delete from {only}parent_i where id = {a}"),
        18 => format!(
            "delete from {only}parent_i where id between {a} and {}",
            a + 3
        ),
        19..=20 => format!("delete from child_i where id = {a}"),
        21 => format!("delete from {only}parent_i where n > {b}"),
        _ => rng
            .pick(&[
                "truncate only parent_i",
                "truncate only parent_i",
                "truncate parent_i",
                "truncate child_i",
            ])
            .to_string(),
    }
}

/// An existing parent's key, where there is one (else 0, which is the default of
/// `kid_default`).
fn existing_parent(rng: &mut Rng) -> String {
    format!(
        "coalesce((select min(id) from parent where id >= {}), 0)",
        rng.parent()
    )
}

/// One of a few instants, in one of several spellings (one in the session's time zone).
fn instant(rng: &mut Rng) -> String {
    let day = 1 + rng.below(8);
    let spelling = rng.pick(&["10:00:00+00", "12:00:00+02", "05:30:00-04:30", "10:00:00"]);
    format!("'2024-01-0{day} {spelling}'")
}

/// One of a few numbers, with or without trailing zeros.
fn amount(rng: &mut Rng) -> String {
    format!("{}.5{}", 1 + rng.below(8), rng.pick(&["", "0", "00"]))
}

/// Columns scripts add: the type, a constant default (some spelled so that they would
/// differ in other session settings) and a value computed from an integer `{k}`, the same
/// wherever the script runs.
const COLUMN_KINDS: &[(&str, &str, &str)] = &[
    ("int", "7", "{k} * 2"),
    ("int", "null", "{k}"),
    ("text", "'it''s'", "'s' || {k}"),
    ("numeric", "1.50", "{k} / 4.0"),
    (
        "timestamptz",
        "'2024-03-01 12:00'",
        "timestamptz '2024-01-01 00:00+00' + {k} * interval '1 hour'",
    ),
    ("date", "'01/02/2024'", "date '2024-01-01' + {k}"),
    ("interval", "'1 day 02:00'", "{k} * interval '1 min'"),
    ("float8", "0.1", "{k} / 3.0::float8"),
    ("bool", "true", "{k} % 2 = 0"),
    (
        "jsonb",
        r#"'{"a": [1, 2.50]}'"#,
        "jsonb_build_object('k', {k})",
    ),
    ("text[]", "'{a,NULL}'", "array[{k}::text, null]"),
    ("money", "'12.34'", "{k}::numeric::money"),
];

/// An integer of a row of `table` for scripts' values.
fn script_key(table: &str) -> &'static str {
    match table {
        "odd" => "length(k)",
        "at_key" => "length(coalesce(note, ''))",
        _ => "id",
    }
}

/// The scripts of `provider execute` a run makes, from its own [`Rng`].
struct Scripts {
    rng: Rng,
    /// Scripts made so far: names scripts, columns and fresh keys.
    made: usize,
    /// Columns scripts added: table and column, and the column's index in [`COLUMN_KINDS`].
    added: Vec<(&'static str, String, usize)>,
    /// Scripts that added 1 to `counter`'s row 1.
    counted: i64,
    /// Tables added on the subscriber in the first round, and the step at which they are.
    late: Vec<&'static str>,
    late_at: usize,
    /// Whether the late tables are added yet: until then scripts add no columns to them
    /// (`subscriber add` would find the provider's columns differ from the subscriber's).
    late_added: bool,
    /// The step of the first round that tries a script that is refused.
    refused_at: usize,
}

impl Scripts {
    fn new(mut rng: Rng, steps: usize) -> Scripts {
        let mut late = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let table = rng.pick(&TABLES);
            if !late.contains(&table) {
                late.push(table);
            }
        }
        let late_at = rng.below(steps.max(1) as u64) as usize;
        let refused_at = rng.below(steps.max(1) as u64) as usize;
        Scripts {
            rng,
            made: 0,
            added: Vec::new(),
            counted: 0,
            late,
            late_at,
            late_added: false,
            refused_at,
        }
    }

    /// One of `tables` a script may add a column to now, if there is one.
    fn ddl_table(&mut self, tables: &[&'static str]) -> Option<&'static str> {
        let allowed = |t: &&str| {
            self.late_added
                || !(self.late.contains(t) || *t == "parent_i" && self.late.contains(&"child_i"))
        };
        let tables: Vec<&'static str> = tables.iter().copied().filter(allowed).collect();
        (!tables.is_empty()).then(|| tables[self.rng.below(tables.len() as u64) as usize])
    }

    /// The next script: its file name and text.
    fn next(&mut self) -> (String, String) {
        self.made += 1;
        let n = self.made;
        let ddl = self.ddl_table(&TABLES);
        let mixed = self.ddl_table(&["parent_i", "child_i", "counter", "parent"]);
        let rng = &mut self.rng;
        let sql = match rng.below(10) {
            0..=3 if ddl.is_some() => {
                let table = ddl.unwrap();
                let kind = rng.below(COLUMN_KINDS.len() as u64) as usize;
                let (ty, default, value) = COLUMN_KINDS[kind];
                let column = format!("x{n}");
                let mut sql =
                    format!("alter table {table} add column {column} {ty} default {default};\n");
                // The ALTER's lock keeps the writers out until the script commits.
                if rng.chance(40) {
                    let value = value.replace("{k}", script_key(table));
                    writeln!(sql, "update {table} set {column} = {value};").unwrap();
                }
                self.added.push((table, column, kind));
                sql
            }
            4..=5 if !self.added.is_empty() => {
                let (table, column, kind) =
                    &self.added[rng.below(self.added.len() as u64) as usize];
                let value = COLUMN_KINDS[*kind].2.replace("{k}", script_key(table));
                let only = if rng.chance(30) { "only " } else { "" };
                // Locked first: a writer's rows the script does not see must not come before
                // it in the stream.
                format!(
                    "lock table {table} in exclusive mode;\n\
                     update {only}{table} set {column} = {value} where {} % {} = {};\n",
                    script_key(table),
                    2 + rng.below(3),
                    rng.below(2),
                )
            }
            6 | 0..=3 => {
                self.counted += 1;
                "update counter set n = n + 1 where id = 1;\n".into()
            }
            7 => {
                // Keys of their own: no writer writes them.
                let key = 1000 + n;
                match rng.below(4) {
                    0 => format!(
                        "insert into parent (id, code, note) values ({key}, 'script{n}', 'script');\n"
                    ),
                    1 => format!(
                        "insert into parent_i (id, note, n) values ({key}, 'script', {n});\n"
                    ),
                    2 => format!(
                        "insert into child_i (id, note, n, c) values ({key}, 'script', {n}, 'c');\n"
                    ),
                    _ => format!(
                        "insert into shift (id, u, pid, note) values ({key}, {key}, null, 'script');\n\
                         insert into tree (id, up, note) values ({key}, null, 'script');\n"
                    ),
                }
            }
            8 => {
                let only = if rng.chance(50) { "only " } else { "" };
                match rng.below(3) {
                    0 => format!(
                        "lock table parent_i in exclusive mode;\n\
                         update {only}parent_i set n = coalesce(n, 0) * 2 where id % 3 = 0;\n"
                    ),
                    1 => format!(
                        "lock table parent_i in exclusive mode;\n\
                         delete from {only}parent_i where id >= 1000;\n"
                    ),
                    _ => "lock table child_i in exclusive mode;\n\
                          update child_i set c = 'script', n = id where id % 2 = 1;\n"
                        .into(),
                }
            }
            _ if mixed.is_some() => {
                // DDL and rows together.
                self.counted += 1;
                let table = mixed.unwrap();
                let kind = rng.below(COLUMN_KINDS.len() as u64) as usize;
                let (ty, default, value) = COLUMN_KINDS[kind];
                let column = format!("x{n}");
                self.added.push((table, column.clone(), kind));
                let value = value.replace("{k}", script_key(table));
                format!(
                    "update counter set n = n + 1 where id = 1;\n\
                     alter table {table} add column {column} {ty} default {default};\n\
                     update {table} set {column} = {value} where id % 2 = 0;\n"
                )
            }
            _ => {
                self.counted += 1;
                "update counter set n = n + 1 where id = 1;\n".into()
            }
        };
        (format!("s{n:03}.sql"), sql)
    }

    /// A round's scripts, run one by one at random moments while the writers write; in the
    /// first round also the late tables' `subscriber add` and the refused script.
    fn round(
        &mut self,
        pair: &Pair,
        shared: &Shared<'_>,
        round: usize,
        steps: usize,
    ) -> Result<(), String> {
        for step in 0..steps {
            std::thread::sleep(Duration::from_millis(self.rng.below(400)));
            if round == 0 && step == self.late_at {
                self.add_late(pair, shared)?;
            }
            if round == 0 && step == self.refused_at {
                self.refused(pair)?;
            }
            let (name, sql) = self.next();
            execute(pair, &name, &sql)?;
            writeln!(shared.transcript.lock().unwrap(), "-- script {name}\n{sql}").unwrap();
            shared.maybe_tick(&mut self.rng);
        }
        if !self.late_added {
            // No scripts at all (SKYREP_FUZZ_SCRIPTS=0).
            self.add_late(pair, shared)?;
        }
        Ok(())
    }

    /// `subscriber add` of the late tables.
    fn add_late(&mut self, pair: &Pair, shared: &Shared<'_>) -> Result<(), String> {
        let (code, err) = pair.fails(&[&["subscriber", "add"], &self.late[..]].concat());
        if code != Some(0) {
            return Err(format!("subscriber add {:?}: {err}", self.late));
        }
        writeln!(
            shared.transcript.lock().unwrap(),
            "-- subscriber add {:?}",
            self.late
        )
        .unwrap();
        self.late_added = true;
        Ok(())
    }

    /// A script that adds a column with a volatile default: refused, and nothing changed.
    fn refused(&mut self, pair: &Pair) -> Result<(), String> {
        let table = self.rng.pick(&TABLES);
        let sql = format!(
            "update counter set n = n + 100 where id = 1;\n\
             alter table {table} add column refused float8 default random();\n"
        );
        let path = pair.dir.write("refused.sql", &sql);
        for _ in 0..10 {
            let (code, err) = pair.fails(&["provider", "execute", path.to_str().unwrap()]);
            if busy(&err) {
                continue;
            }
            if code != Some(1)
                || !err.contains("adds column refused")
                || !err.contains("nothing was changed")
            {
                return Err(format!(
                    "refused.sql on {table} was not refused ({code:?}): {err}"
                ));
            }
            let left = pair.provider.value(
                "postgres",
                "select count(*) from pg_attribute where attname = 'refused' \
                 union all select count(*) from pgq.event_template where ev_extra1 = 'refused.sql'",
            );
            if left.as_deref() != Some("0") {
                return Err(format!("refused.sql on {table} left a column {left:?}"));
            }
            return Ok(());
        }
        Err("refused.sql: always deadlocked or timed out".into())
    }
}

/// Whether a failed script failed on the writers' locks only (it changed nothing).
fn busy(err: &str) -> bool {
    err.contains("deadlock detected") || err.contains("lock timeout")
}

/// `provider execute` of a script named `name`, tried again where it deadlocks with the
/// writers.
fn execute(pair: &Pair, name: &str, sql: &str) -> Result<(), String> {
    let path = pair.dir.write(name, sql);
    for _ in 0..10 {
        let (code, err) = pair.fails(&["provider", "execute", path.to_str().unwrap()]);
        if code == Some(0) {
            return Ok(());
        }
        if !busy(&err) {
            return Err(format!(
                "provider execute {name} failed ({code:?}):\n{sql}\n{err}"
            ));
        }
    }
    Err(format!(
        "provider execute {name}: always deadlocked or timed out"
    ))
}

/// `ALTER DATABASE` (or `ALTER ROLE`) statements that give new sessions odd settings, which
/// skyrep's own sessions must not take.
fn odd_defaults(rng: &mut Rng, target: &str, monetary: bool, strings: bool) -> String {
    let mut sql = format!(
        "alter {target} set datestyle = '{}'; alter {target} set intervalstyle = '{}'; \
         alter {target} set extra_float_digits = {}; alter {target} set timezone = '{}'; \
         alter {target} set bytea_output = '{}';",
        rng.pick(&["SQL, DMY", "German", "Postgres, DMY", "SQL, MDY"]),
        rng.pick(&["postgres_verbose", "sql_standard", "iso_8601"]),
        rng.pick(&["0", "-2", "1"]),
        rng.pick(TIMEZONES),
        rng.pick(&["hex", "escape"]),
    );
    if monetary {
        write!(sql, " alter {target} set lc_monetary = '{MONETARY}';").unwrap();
    }
    if strings {
        write!(
            sql,
            " alter {target} set standard_conforming_strings = off;"
        )
        .unwrap();
    }
    sql
}

/// The role replay connects to the subscriber as in the role variant.
const ROLE: &str = "replayer";

/// Makes the subscriber's replicated tables [`ROLE`]'s, an ordinary role that may set
/// `session_replication_role`, gives it odd default settings and row-level security on some
/// tables (forced, with a policy that shows it every row, where it has `BYPASSRLS`; else
/// enabled, with a policy that hides every row from others), and has replay connect as it.
fn ordinary_role(pair: &Pair, rng: &mut Rng, settings: bool, monetary: bool) -> String {
    let bypass = rng.chance(50);
    let mut sql = format!(
        "create role {ROLE} login {}; \
         grant set on parameter session_replication_role to {ROLE}; \
         grant usage on schema londiste to {ROLE}; \
         grant all on all tables in schema londiste to {ROLE}; \
         grant all on all sequences in schema londiste to {ROLE}; \
         grant execute on all functions in schema londiste to {ROLE};",
        if bypass { "bypassrls" } else { "nobypassrls" }
    );
    for table in TABLES {
        write!(sql, " alter table {table} owner to {ROLE};").unwrap();
    }
    let mut secured = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let table = rng.pick(&TABLES);
        if secured.contains(&table) {
            continue;
        }
        secured.push(table);
        if bypass {
            write!(
                sql,
                " alter table {table} enable row level security; \
                 alter table {table} force row level security; \
                 create policy fuzz_all on {table} using (true) with check (true);"
            )
            .unwrap();
        } else {
            write!(
                sql,
                " alter table {table} enable row level security; \
                 create policy fuzz_none on {table} using (false) with check (false);"
            )
            .unwrap();
        }
    }
    if settings {
        sql += &odd_defaults(rng, &format!("role {ROLE}"), monetary, true);
    }
    pair.subscriber.execute(&sql);
    let conf = std::fs::read_to_string(&pair.conf).unwrap();
    let line = format!("subscriber_db = {}", pair.subscriber.connstr("postgres"));
    let role_conf = conf.replace(&line, &format!("{line} user={ROLE}"));
    assert_ne!(conf, role_conf, "the subscriber_db line was not found");
    std::fs::write(&pair.conf, role_conf).unwrap();
    format!(
        "replay as {ROLE} ({}), row-level security on {secured:?}",
        if bypass {
            "bypassrls, forced"
        } else {
            "owner, not forced"
        }
    )
}

/// Every row of `table` as text, in fixed settings and a fixed order.
fn rows(cluster: &Cluster, table: &str) -> Vec<String> {
    cluster
        .query_strings(
            "postgres",
            &format!(
                "set timezone = 'UTC'; set datestyle = 'ISO'; set intervalstyle = 'postgres'; \
                 set extra_float_digits = 3; set bytea_output = 'hex'; set lc_monetary = 'C'; \
                 select t::text from only {table} t order by t::text collate \"C\""
            ),
        )
        .into_iter()
        .map(|r| r[0].clone().unwrap_or_default())
        .collect()
}

/// The tables whose rows differ, each with its first rows only on one side.
fn differences(pair: &Pair) -> String {
    let mut report = String::new();
    for table in TABLES {
        let (provider, subscriber) = (rows(&pair.provider, table), rows(&pair.subscriber, table));
        if provider == subscriber {
            continue;
        }
        // As multisets: a row twice on one side (a deferrable key replay left doubled) shows.
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            let mut left: std::collections::HashMap<&String, usize> =
                std::collections::HashMap::new();
            for row in b {
                *left.entry(row).or_default() += 1;
            }
            a.iter()
                .filter(|row| match left.get_mut(row) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                })
                .take(5)
                .cloned()
                .collect()
        };
        writeln!(
            report,
            "{table}: {} rows on the provider, {} on the subscriber\n  only on the provider:   \
             {:?}\n  only on the subscriber: {:?}",
            provider.len(),
            subscriber.len(),
            only(&provider, &subscriber),
            only(&subscriber, &provider)
        )
        .unwrap();
    }
    report
}

/// Errors replay logs that are known and reported, and that it gets past: tolerated here so
/// that the rest of the test still runs. A copy thread catching a table up while a script
/// of `provider execute` sends the table back to be copied again fails its catch-up with
/// "TABLE is in state new now, no longer catching-up" or "TABLE was not in state
/// catching-up when moving it to wanna-sync:N" (then copies again, and the tables end equal);
/// it is a race replay itself makes, not a failure. Also reported, and retried by the copy
/// thread: a copy that starts after a script added a column on the provider but before the
/// script reached the subscriber fails writing the column ("column xN of relation T does not
/// exist"), and a foreign key set aside for a copy can fail to be put back ("putting fkey K
/// back on T: ... violates foreign key constraint").
const KNOWN_ERRORS: &[&str] = &[
    "now, no longer catching-up",
    "now, no longer in-copy",
    "was not in state catching-up when moving it to",
    "was not in state in-copy when moving it to",
    "\" of relation \"",
    "violates foreign key constraint",
];

/// The lines of replay's log that say ERROR, apart from [`KNOWN_ERRORS`] if `known` is false.
fn errors(pair: &Pair, known: bool) -> Vec<String> {
    pair.replay_log()
        .lines()
        .filter(|l| l.contains(" ERROR ") && known == KNOWN_ERRORS.iter().any(|k| l.contains(k)))
        .map(str::to_string)
        .collect()
}

/// The last tick the subscriber has applied.
fn applied_tick(pair: &Pair) -> i64 {
    pair.subscriber
        .value(
            "postgres",
            "select coalesce(max(last_tick_id), 0) from londiste.applied_ticks",
        )
        .unwrap()
        .parse()
        .unwrap()
}

/// Runs the plan from the environment with ticks as `ticks`, replay connecting to the
/// subscriber as an ordinary role if `role`; panics with the seed, the differing rows and
/// replay's log when the tables do not end equal.
fn fuzz(ticks: Ticks, role: bool) {
    let plan = Plan::from_env();
    let seed = plan.seed;
    let mode = format!("{ticks:?}{}", if role { "-role" } else { "" });
    let rerun = format!("rerun with SKYREP_SEED={seed}");
    eprintln!("fuzz {mode}: seed {seed} ({rerun})");
    // The setup's choices and the scripts follow from the seed too.
    let mut setup = Rng(seed ^ 0x5e70_5e70_5e70_5e70);
    let mut scripts = Scripts::new(Rng(seed ^ 0x5c41_7975_5c41_7975), plan.scripts);
    let provider = Cluster::builder()
        .setting("max_prepared_transactions", "10")
        .start();
    let pair = Pair::on(provider, Cluster::start(), SCHEMA);
    pair.subscriber.execute(SUBSCRIBER_EXTRAS);
    OpenOptions::new()
        .append(true)
        .open(&pair.conf)
        .and_then(|mut conf| conf.write_all(b"ticker = off\nloop_delay = 0.05\n"))
        .expect("config written");
    // Batches of one tick, or of several (a forced tick counts for some 2,000 events).
    let batch_events = setup.pick(&["1", "2500", "6000", "20000"]);
    OpenOptions::new()
        .append(true)
        .open(&pair.conf)
        .and_then(|mut conf| writeln!(conf, "batch_events = {batch_events}"))
        .expect("config written");
    let monetary = plan.settings
        && pair
            .provider
            .connect("postgres")
            .batch_execute(&format!("set lc_monetary = '{MONETARY}'"))
            .is_ok();
    let mut setting = String::new();
    if plan.settings {
        // Odd defaults for every new session, skyrep's included.
        let provider = odd_defaults(&mut setup, "database postgres", monetary, false);
        let subscriber = odd_defaults(&mut setup, "database postgres", monetary, true);
        pair.provider.execute(&provider);
        pair.subscriber.execute(&subscriber);
        setting = format!("provider: {provider}\nsubscriber: {subscriber}\n");
    }
    writeln!(setting, "batch_events = {batch_events}").unwrap();
    if role {
        let how = ordinary_role(&pair, &mut setup, plan.settings, monetary);
        writeln!(setting, "{how}").unwrap();
    }
    let early: Vec<&str> = TABLES
        .into_iter()
        .filter(|t| !scripts.late.contains(t))
        .collect();
    writeln!(setting, "added in the first round: {:?}", scripts.late).unwrap();
    eprint!("{setting}");
    pair.ok(&[&["provider", "add"], &TABLES[..]].concat());
    pair.ok(&[&["subscriber", "add", "--expect-sync"], &early[..]].concat());
    let shared = Shared {
        provider: &pair.provider,
        ticker: Mutex::new(pair.provider.connect("postgres")),
        transcript: Mutex::new(format!("-- seed {seed}, {mode}\n-- {setting}")),
        ticks,
        settings: plan.settings,
        monetary,
    };
    let mut replay = Replay(pair.start_replay());
    let failed = |what: String| {
        let file = std::env::temp_dir().join(format!("skyrep-fuzz-{seed}-{mode}.sql"));
        let _ = std::fs::write(&file, &*shared.transcript.lock().unwrap());
        panic!(
            "{what}\n{}--- replay log ---\n{}\ncommitted transactions: {}\n{rerun}",
            differences(&pair),
            pair.replay_log(),
            file.display()
        )
    };
    let mut committed = 0;
    for round in 0..plan.rounds {
        let (written, scripted) = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..plan.writers)
                .map(|w| {
                    let shared = &shared;
                    let rng = Rng(seed
                        ^ (round as u64 * 1000 + w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                    let name = format!("w{round}-{w}");
                    scope.spawn(move || shared.writer(rng, &name, plan.transactions))
                })
                .collect();
            let scripted = scripts.round(&pair, &shared, round, plan.scripts);
            let written = writers
                .into_iter()
                .map(|w| w.join().expect("writer"))
                .sum::<usize>();
            (written, scripted)
        });
        committed += written;
        if let Err(e) = scripted {
            failed(format!("round {round}: {e}"));
        }
        let mut last = shared.tick();
        let deadline = Instant::now() + WAIT;
        let mut ticked = Instant::now();
        while applied_tick(&pair) < last || pair.states().iter().any(|(_, s)| s != "ok") {
            // Tables being copied catch up only with ticks past their copy's.
            if ticked.elapsed() > Duration::from_millis(300) {
                last = shared.tick();
                ticked = Instant::now();
            }
            if let Some(status) = replay.0.try_wait().unwrap() {
                failed(format!("round {round}: replay exited ({status})"));
            }
            // Nothing here may fail: an error is a bug even where a retry gets past it.
            if !errors(&pair, false).is_empty() {
                failed(format!("round {round}: replay failed"));
            }
            if Instant::now() > deadline {
                failed(format!(
                    "round {round}: replay did not apply tick {last} within {WAIT:?} (applied {}, \
                     tables {:?})",
                    applied_tick(&pair),
                    pair.states()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let differing = differences(&pair);
        if !differing.is_empty() {
            failed(format!("round {round}: tables differ after tick {last}"));
        }
    }
    let total = plan.rounds * plan.writers * plan.transactions;
    assert!(
        committed * 3 >= total,
        "only {committed} of {total} transactions committed; {rerun}"
    );
    // The scripts ran once on each side; the subscriber's triggers and rules, set aside for
    // the late tables' copies, are all back.
    let counter = pair
        .provider
        .value("postgres", "select n from counter where id = 1");
    if counter != Some(scripts.counted.to_string()) {
        failed(format!(
            "counter is {counter:?} on the provider after {} scripts that count",
            scripts.counted
        ));
    }
    let deadline = Instant::now() + WAIT;
    let extras = || {
        pair.subscriber.value(
            "postgres",
            "select (select count(*) from londiste.pending_objects) || ' ' || \
                    ((select count(*) from pg_trigger where tgname like 'fuzz%') + \
                     (select count(*) from pg_rules where rulename like 'fuzz%'))",
        )
    };
    while extras() != Some(format!("0 {EXTRAS}")) {
        if Instant::now() > deadline {
            failed(format!(
                "pending objects and the subscriber's triggers and rules: {:?}",
                extras()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let counts: Vec<String> = TABLES
        .iter()
        .map(|t| format!("{t} {}", rows(&pair.provider, t).len()))
        .collect();
    eprintln!(
        "fuzz {mode}: {committed} of {total} transactions committed, {} scripts, rows: {}",
        scripts.made,
        counts.join(", ")
    );
    let known = errors(&pair, true);
    if !known.is_empty() {
        eprintln!(
            "fuzz {mode}: {} known errors tolerated (KNOWN_ERRORS):\n{}",
            known.len(),
            known.join("\n")
        );
    }
    assert_eq!(
        stop(&mut replay.0, libc::SIGTERM),
        Some(0),
        "{}\n{rerun}",
        pair.replay_log()
    );
}

#[test]
fn fuzz_batches_of_one_commit_replay_exactly() {
    fuzz(Ticks::EveryCommit, false);
}

#[test]
fn fuzz_batches_of_random_sizes_replay_exactly() {
    fuzz(Ticks::Random, false);
}

#[test]
fn fuzz_a_whole_round_in_one_batch_replays_exactly() {
    fuzz(Ticks::End, false);
}

#[test]
fn fuzz_as_an_ordinary_role_with_row_security_replays_exactly() {
    fuzz(Ticks::Random, true);
}
