//! A seeded randomized replay test: concurrent random transactions over tables joined by
//! foreign keys with every action, deferrable keys, key moves, unique swaps, truncates,
//! savepoints and two-phase commits, with odd values written from sessions with varied
//! settings, replayed in batches of one commit, of random sizes and of a whole round; the
//! tables must end row by row equal.
//!
//! `SKYREP_SEED=N` reruns a seed (each writer's statements follow from it; how concurrent
//! writers interleave does not, so also try `SKYREP_FUZZ_WRITERS=1`), `SKYREP_LONG=1` runs
//! more transactions and rounds, `SKYREP_FUZZ_SETTINGS=0` keeps the writers' sessions at the
//! server's settings. A failing run writes the committed transactions to
//! `$TMPDIR/skyrep-fuzz-SEED-MODE.sql`.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::process::Child;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use postgres::Client;

use crate::cluster::Cluster;
use crate::replay::{Pair, stop};
use crate::util::error_chain;

/// The queue of [`Pair`]'s config.
const QUEUE: &str = "login";

/// How long replay may take to apply a round.
const WAIT: Duration = Duration::from_secs(180);

/// The replicated tables.
const TABLES: [&str; 8] = [
    "parent",
    "kid_cascade",
    "kid_null",
    "kid_default",
    "shift",
    "tree",
    "odd",
    "at_key",
];

/// The same on both sides: every foreign-key action, deferrable keys, citext keys, keys equal
/// by type with different text, and columns of many types.
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
";

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

/// SplitMix64: small, and the same numbers for a seed everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }

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
    /// Whether writers vary their sessions' settings.
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
            let tick = match self.ticks {
                Ticks::EveryCommit => true,
                Ticks::Random => rng.chance(20),
                Ticks::End => false,
            };
            if tick {
                self.tick();
            }
        }
        committed
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
            match rng.below(6) {
                0 => "update shift set id = id + 1".into(),
                1 => "update shift set id = id - 1".into(),
                2 => format!("update shift set id = {} - id", IDS + 1),
                3 => format!("update shift set u = {} - u", IDS + 1),
                4 => format!(
                    "update shift set id = case id when {a} then {b} else {a} end \
                     where id in ({a}, {b})"
                ),
                _ => format!(
                    "update shift set u = case id when {a} then (select u from shift where id = {b}) \
                     else (select u from shift where id = {a}) end where id in ({a}, {b})"
                ),
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

/// Every row of `table` as text, in fixed settings and a fixed order.
fn rows(cluster: &Cluster, table: &str) -> Vec<String> {
    cluster
        .query_strings(
            "postgres",
            &format!(
                "set timezone = 'UTC'; set datestyle = 'ISO'; set intervalstyle = 'postgres'; \
                 set extra_float_digits = 3; set bytea_output = 'hex'; set lc_monetary = 'C'; \
                 select t::text from {table} t order by t::text collate \"C\""
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
        let only = |a: &[String], b: &[String]| -> Vec<String> {
            a.iter()
                .filter(|row| b.binary_search(row).is_err())
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

/// Runs the plan from the environment with ticks as `ticks`; panics with the seed, the
/// differing rows and replay's log when the tables do not end equal.
fn fuzz(ticks: Ticks) {
    let plan = Plan::from_env();
    let seed = plan.seed;
    let rerun = format!("rerun with SKYREP_SEED={seed}");
    eprintln!("fuzz {ticks:?}: seed {seed} ({rerun})");
    let provider = Cluster::builder()
        .setting("max_prepared_transactions", "10")
        .start();
    let pair = Pair::on(provider, Cluster::start(), SCHEMA);
    OpenOptions::new()
        .append(true)
        .open(&pair.conf)
        .and_then(|mut conf| conf.write_all(b"ticker = off\nloop_delay = 0.05\n"))
        .expect("config written");
    pair.ok(&[&["provider", "add"], &TABLES[..]].concat());
    pair.ok(&[&["subscriber", "add", "--expect-sync"], &TABLES[..]].concat());
    let monetary = plan.settings
        && pair
            .provider
            .connect("postgres")
            .batch_execute(&format!("set lc_monetary = '{MONETARY}'"))
            .is_ok();
    let shared = Shared {
        provider: &pair.provider,
        ticker: Mutex::new(pair.provider.connect("postgres")),
        transcript: Mutex::new(String::new()),
        ticks,
        settings: plan.settings,
        monetary,
    };
    let mut replay = Replay(pair.start_replay());
    let failed = |what: String| {
        let file = std::env::temp_dir().join(format!("skyrep-fuzz-{seed}-{ticks:?}.sql"));
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
        committed += std::thread::scope(|scope| {
            let writers: Vec<_> = (0..plan.writers)
                .map(|w| {
                    let shared = &shared;
                    let rng = Rng(seed
                        ^ (round as u64 * 1000 + w as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                    let name = format!("w{round}-{w}");
                    scope.spawn(move || shared.writer(rng, &name, plan.transactions))
                })
                .collect();
            writers
                .into_iter()
                .map(|w| w.join().expect("writer"))
                .sum::<usize>()
        });
        let last = shared.tick();
        let deadline = Instant::now() + WAIT;
        while applied_tick(&pair) < last {
            if let Some(status) = replay.0.try_wait().unwrap() {
                failed(format!("round {round}: replay exited ({status})"));
            }
            // Nothing here may fail: an error is a bug even where a retry gets past it.
            if pair.replay_log().contains(" ERROR ") {
                failed(format!("round {round}: replay failed"));
            }
            if Instant::now() > deadline {
                failed(format!(
                    "round {round}: replay did not apply tick {last} within {WAIT:?} (applied {})",
                    applied_tick(&pair)
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
    let counts: Vec<String> = TABLES
        .iter()
        .map(|t| format!("{t} {}", rows(&pair.provider, t).len()))
        .collect();
    eprintln!(
        "fuzz {ticks:?}: {committed} of {total} transactions committed, rows: {}",
        counts.join(", ")
    );
    assert_eq!(
        stop(&mut replay.0, libc::SIGTERM),
        Some(0),
        "{}\n{rerun}",
        pair.replay_log()
    );
}

#[test]
fn fuzz_batches_of_one_commit_replay_exactly() {
    fuzz(Ticks::EveryCommit);
}

#[test]
fn fuzz_batches_of_random_sizes_replay_exactly() {
    fuzz(Ticks::Random);
}

#[test]
fn fuzz_a_whole_round_in_one_batch_replays_exactly() {
    fuzz(Ticks::End);
}
