//! The demo, and the throwaway local PostgreSQL servers it shares with the test suite
//! ([`cluster`]). Uses every other folder except `cli`.
//!
//! `skyrep demo`: a guided replication between two throwaway local servers.
//!
//! From nothing, the demo starts two PostgreSQL servers ([`crate::demo::cluster`]) in a new
//! temporary directory, creates the login service's tables (the seed of the field test) on
//! both, writes a config and goes through the commands a user runs: `provider install`,
//! `subscriber install`, `provider add`, `replay` (here a thread of this process) and
//! `subscriber add`, which copies the tables while a thread writes logins, logouts and
//! sign-ups. Once every table is `ok` it shows `status` and `compare`. Each step prints the
//! command that does the same with one's own config. Whatever happens (an error, Ctrl-C), the servers are
//! stopped and the directory is removed.

pub mod cluster;

use std::collections::BTreeMap;
use std::fs;
use std::hash::{BuildHasher, RandomState};
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError, bounded};
use postgres::Client;

use crate::base::error::one_line;
use crate::base::output;
use crate::capture::provider::Provider;
use crate::config::Config;
use crate::db;
use crate::db::connstr::ConnStr;
use crate::queue::install;
use crate::replay::lock::ReplayLock;
use crate::replay::state::{MergeState, load_tables};
use crate::replay::subscriber::{AddOptions, Subscriber};
use crate::replay::{job, worker};
use crate::service::signals::{self, OnTerm};
use crate::verify::{compare, status};
use cluster::Server;

/// The login service's tables (`tests/fixtures/seed.sql`).
const SCHEMA: &str = include_str!("../../tests/fixtures/seed.sql");
/// The tables with rows before the writes start: the subscriber copies them.
const COPIED: [&str; 2] = ["public.user_info", "public.user_session"];
/// The login and logout records, empty until the writes start: added as in sync.
const IN_SYNC: [&str; 2] = ["public.user_login_rec", "public.user_logout_rec"];
/// The database created on both servers.
const DBNAME: &str = "login";
/// The queue, and the consumer that replays it.
const QUEUE: &str = "login";
const JOB: &str = "login_demo";
/// The config file's name in the demo's directory.
const CONFIG_FILE: &str = "demo.ini";
/// Users on the provider before the copy.
const USERS: i32 = 20_000;
/// How long the writes go on.
const LOAD_TIME: Duration = Duration::from_secs(3);
/// Pause between two write transactions.
const LOAD_PAUSE: Duration = Duration::from_millis(1);
/// How long the copies may take before the demo gives up.
const COPY_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the demo looks at the tables' states.
const POLL: Duration = Duration::from_millis(50);
/// Lines of a server's log shown when it does not start.
const LOG_TAIL_LINES: usize = 5;

/// Runs the demo; fails if a step fails, the two sides differ, or on Ctrl-C, always after
/// stopping the servers and removing the directory.
pub fn run() -> Result<()> {
    cluster::bindir()?;
    let scratch = Scratch::create()?;
    let config_path = scratch.path.join(CONFIG_FILE);
    let mut tour = Tour {
        steps: 0,
        interrupted: signals::stop_on_signal(&config_path, &[], OnTerm::Stop)?,
    };
    output::line(
        "skyrep demo: a login service replicated between two throwaway PostgreSQL servers.\n\
         Each step shows the skyrep command that does the same with your own config.\n",
    )?;
    // Declared after `scratch`, so dropped (servers stopped) before it is removed.
    let mut servers = Vec::new();
    let result = start_servers(&mut tour, &scratch.path, &mut servers)
        .and_then(|()| tour_servers(&mut tour, &servers[0], &servers[1], &config_path));
    // Ctrl-C in a terminal also stops a server program that runs at that moment: what
    // failed then is the interruption.
    let result = match (result, tour.check()) {
        (Err(_), Err(interrupted)) => Err(interrupted),
        (result, _) => result,
    };
    let cleaned = clean_up(&mut tour, servers, scratch);
    match (result, cleaned) {
        (Err(e), Err(also)) => {
            log::error!("{}", one_line(&also));
            Err(e)
        }
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => output::line("Done: both sides are equal."),
    }
}

/// The demo's directory, `$TMPDIR/skyrep-demo.XXXXXX`; removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates the directory (mode 0700, owned by the server user).
    fn create() -> Result<Scratch> {
        let random = RandomState::new();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let suffix = random.hash_one(attempt) & 0xff_ffff;
            let path = std::env::temp_dir().join(format!("skyrep-demo.{suffix:06x}"));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let scratch = Scratch { path };
                    cluster::give_to_server_user(&scratch.path)?;
                    return Ok(scratch);
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists && attempt < 100 => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()));
                }
            }
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The numbered steps on stdout, and Ctrl-C.
struct Tour {
    steps: usize,
    /// Disconnects on SIGINT or SIGTERM.
    interrupted: Receiver<()>,
}

impl Tour {
    /// Starts the next step: fails if interrupted, else prints `N. what`.
    fn step(&mut self, what: &str) -> Result<()> {
        self.check()?;
        self.announce(what)
    }

    /// Prints `N. what` whatever happened before.
    fn announce(&mut self, what: &str) -> Result<()> {
        self.steps += 1;
        output::line(&format!("{}. {what}", self.steps))
    }

    /// Prints an indented line under the step.
    fn say(&self, text: &str) -> Result<()> {
        output::line(&format!("   {text}"))
    }

    /// Prints the skyrep command that does the step.
    fn command(&self, args: &str) -> Result<()> {
        self.say(&format!("skyrep {CONFIG_FILE} {args}"))
    }

    /// Fails once Ctrl-C (SIGINT) or SIGTERM came.
    fn check(&self) -> Result<()> {
        self.pause(Duration::ZERO)
    }

    /// Waits for `time`; fails at once on Ctrl-C.
    fn pause(&self, time: Duration) -> Result<()> {
        match self.interrupted.recv_timeout(time) {
            Err(RecvTimeoutError::Disconnected) => bail!("interrupted"),
            _ => Ok(()),
        }
    }
}

/// Step 1: initdb and start the provider and the subscriber, side by side.
fn start_servers(tour: &mut Tour, dir: &Path, servers: &mut Vec<Server>) -> Result<()> {
    tour.check()?;
    let (provider, subscriber) = thread::scope(|scope| {
        let provider = scope.spawn(|| start_server(&dir.join("provider")));
        let subscriber = start_server(&dir.join("subscriber"));
        let provider = provider
            .join()
            .unwrap_or_else(|_| Err(anyhow!("starting the provider panicked")));
        (provider, subscriber)
    });
    // Each one that started is kept, so that the clean-up stops it.
    let mut failed = None;
    for started in [
        provider.context("starting the provider"),
        subscriber.context("starting the subscriber"),
    ] {
        match started {
            Ok(server) => servers.push(server),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    if let Some(e) = failed {
        return Err(e);
    }
    tour.step(&format!(
        "Starting two PostgreSQL servers in {} (provider on port {}, subscriber on port {})",
        dir.display(),
        servers[0].port(),
        servers[1].port()
    ))
}

/// Creates and starts one server in `dir`.
fn start_server(dir: &Path) -> Result<Server> {
    fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut server = Server::init(dir)?;
    if let Err(e) = server.start(&[]) {
        let tail = server.log_tail(LOG_TAIL_LINES);
        return Err(e.context(tail));
    }
    Ok(server)
}

/// Steps 2 to the end, with both servers running.
fn tour_servers(
    tour: &mut Tour,
    provider: &Server,
    subscriber: &Server,
    config_path: &Path,
) -> Result<()> {
    tour.step(&format!(
        "Creating database {DBNAME} with the login service's tables on both servers: \
         user_info, user_session, user_login_rec, user_logout_rec"
    ))?;
    let mut source = create_database(provider)?;
    create_database(subscriber)?;
    fill(&mut source)?;
    tour.say(&format!(
        "{USERS} users on the provider; the subscriber's tables are empty"
    ))?;
    tour.say(
        "with your own tables: create them on the subscriber, e.g. pg_dump --schema-only | psql",
    )?;

    tour.step(&format!("Writing the config {}", config_path.display()))?;
    let text = format!(
        "[skyrep]\njob_name = {JOB}\nprovider_db = {}\nsubscriber_db = {}\npgq_queue_name = {QUEUE}\n",
        provider.connstr(DBNAME),
        subscriber.connstr(DBNAME)
    );
    fs::write(config_path, &text)
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    for line in text.lines() {
        tour.say(line)?;
    }
    let config = Config::load(config_path)?;

    tour.step("Installing the queue on the provider (the pgq schema, no extension needed)")?;
    tour.command("provider install")?;
    install::run_provider(&config)?;

    tour.step("Installing the replication schema on the subscriber")?;
    tour.command("subscriber install")?;
    Subscriber::connect(&config)?.install()?;

    let tables: Vec<String> = COPIED
        .iter()
        .chain(&IN_SYNC)
        .map(|t| t.to_string())
        .collect();
    tour.step(
        "Adding the tables on the provider: a trigger on each puts every change into the queue",
    )?;
    tour.command(&format!("provider add {}", tables.join(" ")))?;
    Provider::connect(&config)?.add(&tables, false, false)?;

    tour.step(
        "Adding the login and logout records on the subscriber as in sync, without a copy: \
         both sides are empty and nothing writes yet",
    )?;
    tour.command(&format!(
        "subscriber add --expect-sync {}",
        IN_SYNC.join(" ")
    ))?;
    let in_sync = AddOptions {
        expect_sync: true,
        ..AddOptions::default()
    };
    Subscriber::connect(&config)?.add(&IN_SYNC.map(String::from), &in_sync)?;

    tour.step("Starting the replay daemon: ticker, replay and copy threads in one process")?;
    tour.command("replay")?;
    let job = job::Job::from_config(&config)?;
    let lock = ReplayLock::take(&job)?;
    worker::prepare(&job)?;
    thread::scope(|scope| {
        // Dropped on every way out of this closure, which stops replay and the writes.
        let (stop, stopped) = bounded::<()>(0);
        let replay = thread::Builder::new()
            .name("replay".into())
            .spawn_scoped(scope, {
                let (job, config, stopped) = (&job, &config, stopped.clone());
                move || worker::run(job, config, stopped, lock)
            })
            .context("starting the replay daemon")?;
        let result =
            while_replaying(tour, scope, &config, source, &replay, &stopped).and_then(|()| {
                tour.step("Stopping the replay daemon")?;
                tour.say(&format!(
                    "Ctrl-C, or skyrep -s {CONFIG_FILE} for one started with -d"
                ))
            });
        drop(stop);
        let replayed = replay
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the replay daemon panicked")));
        match (result, replayed) {
            (_, Err(e)) => Err(e.context("the replay daemon failed")),
            (result, Ok(())) => result,
        }
    })
}

/// The steps while replay runs: writes during the copies, then `status` and `compare`.
fn while_replaying<'scope>(
    tour: &mut Tour,
    scope: &'scope Scope<'scope, '_>,
    config: &Config,
    source: Client,
    replay: &ScopedJoinHandle<'scope, Result<()>>,
    stopped: &Receiver<()>,
) -> Result<()> {
    tour.step(&format!(
        "Starting logins, logouts and sign-ups on the provider for {} seconds",
        LOAD_TIME.as_secs()
    ))?;
    let load = thread::Builder::new()
        .name("load".into())
        .spawn_scoped(scope, {
            let stopped = stopped.clone();
            move || write_load(source, &stopped)
        })
        .context("starting the writes")?;

    tour.step(
        "Adding the users and their sessions on the subscriber: replay copies them one at a \
         time while the writes go on",
    )?;
    tour.command(&format!("subscriber add {}", COPIED.join(" ")))?;
    Subscriber::connect(config)?.add(&COPIED.map(String::from), &AddOptions::default())?;
    tour.say(&format!(
        "watch them with: skyrep {CONFIG_FILE} subscriber tables"
    ))?;
    watch_copies(tour, config, replay)?;

    while !load.is_finished() {
        tour.pause(POLL)?;
    }
    let written = load
        .join()
        .unwrap_or_else(|_| Err(anyhow!("the writes panicked")))
        .context("writing logins, logouts and sign-ups")?;
    tour.step(&format!("The writes are done: {written}"))?;

    tour.step("Status: the queue and its ticker, the consumers, the subscriber's tables")?;
    tour.command("status")?;
    status::run(config, false, None)?;

    tour.step(
        "Comparing both sides: row count and checksum of each table at the same point of the stream",
    )?;
    tour.command("compare")?;
    compare::compare(config, &[])
}

/// Waits until every table is `ok`, printing the states each one went through.
fn watch_copies(
    tour: &Tour,
    config: &Config,
    replay: &ScopedJoinHandle<'_, Result<()>>,
) -> Result<()> {
    let conn = config
        .connstr("subscriber_db")?
        .context("subscriber_db missing")?
        .resolve_from_env(&format!("skyrep/{JOB}"))?;
    let mut client = db::connect("subscriber_db", &conn)?;
    let deadline = Instant::now() + COPY_TIMEOUT;
    // The copied tables were just added, so they start as new even if replay moved them on
    // before the first look.
    let mut seen: BTreeMap<String, Vec<MergeState>> = COPIED
        .iter()
        .map(|table| (table.to_string(), vec![MergeState::New]))
        .collect();
    loop {
        let tables = load_tables(&mut client, QUEUE)?;
        for table in &tables {
            let states = seen.entry(table.table.qualified()).or_default();
            if states.last() == Some(&table.state) {
                continue;
            }
            states.push(table.state);
            // Tables added in sync were never copied.
            if table.state == MergeState::Ok && states.len() > 1 {
                let path: Vec<String> = states.iter().map(ToString::to_string).collect();
                tour.say(&format!("{}: {}", table.table, path.join(" -> ")))?;
            }
        }
        if tables.iter().all(|t| t.state == MergeState::Ok) {
            return Ok(());
        }
        if replay.is_finished() {
            bail!("the replay daemon stopped before the tables were copied");
        }
        if Instant::now() > deadline {
            let states: Vec<String> = tables
                .iter()
                .map(|t| format!("{} {}", t.table, t.state))
                .collect();
            bail!(
                "the tables are not all ok after {} s: {}",
                COPY_TIMEOUT.as_secs(),
                states.join(", ")
            );
        }
        tour.pause(POLL)?;
    }
}

/// Creates database `login` with the tables on `server` and returns a connection to it.
fn create_database(server: &Server) -> Result<Client> {
    let what = format!("the server on port {}", server.port());
    connect(server, "postgres")?
        .batch_execute(&format!("create database \"{DBNAME}\""))
        .with_context(|| format!("creating database {DBNAME} on {what}"))?;
    let mut client = connect(server, DBNAME)?;
    client
        .batch_execute(SCHEMA)
        .with_context(|| format!("creating the tables on {what}"))?;
    Ok(client)
}

/// Connects to `dbname` on `server`.
fn connect(server: &Server, dbname: &str) -> Result<Client> {
    let conn = ConnStr::parse(&server.connstr(dbname))?.resolve_from_env("skyrep demo")?;
    db::connect(&format!("database {dbname}"), &conn)
}

/// The provider's users and their sessions.
fn fill(client: &mut Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute(
        "insert into user_info \
         select g, 'user' || g, '用户' || g, 'engineer', date '1980-01-01' + g % 10000, \
                'hello world', 'user' || g || '@example.com', 10000000 + g, now(), now() \
         from generate_series(1, $1) g",
        &[&USERS],
    )
    .context("adding the users")?;
    tx.execute(
        "insert into user_session (userid) select g from generate_series(1, $1) g",
        &[&USERS],
    )
    .context("adding the sessions")?;
    tx.commit().context("committing the users")
}

/// What the writes did.
#[derive(Default)]
struct Written {
    logins: u64,
    logouts: u64,
    signups: u64,
    closed: u64,
    time: Duration,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} logins, {} logouts, {} sign-ups, {} closed accounts in {:.1} s",
            self.logins,
            self.logouts,
            self.signups,
            self.closed,
            self.time.as_secs_f64()
        )
    }
}

/// Writes for [`LOAD_TIME`] (or until `stop` disconnects), one transaction at a time: logins
/// and logouts (an insert and an update each, as the seed's workload), now and then a new
/// user (inserts) and a closed account (deletes).
fn write_load(mut client: Client, stop: &Receiver<()>) -> Result<Written> {
    let start = Instant::now();
    let mut written = Written::default();
    let mut round: i64 = 0;
    while start.elapsed() < LOAD_TIME && stop.try_recv() != Err(TryRecvError::Disconnected) {
        round += 1;
        // Spread over all users, the same every run.
        let user = 1 + (round * 7919 % i64::from(USERS)) as i32;
        let mut tx = client.transaction()?;
        if round % 20 == 0 {
            let new_user = USERS + 1 + written.signups as i32;
            let name = format!("user{new_user}");
            tx.execute(
                "insert into user_info (userid, engname, email, crt_time, mod_time) \
                 values ($1, $2, $3, now(), now())",
                &[&new_user, &name, &format!("{name}@example.com")],
            )?;
            tx.execute(
                "insert into user_session (userid) values ($1)",
                &[&new_user],
            )?;
            written.signups += 1;
        } else if round % 50 == 0 {
            tx.execute("delete from user_session where userid = $1", &[&user])?;
            tx.execute("delete from user_info where userid = $1", &[&user])?;
            written.closed += 1;
        } else if round % 2 == 0 {
            tx.execute(
                "insert into user_login_rec (userid, login_time, ip) \
                 values ($1, now(), inet_client_addr())",
                &[&user],
            )?;
            tx.execute(
                "update user_session set logintime = now(), login_count = login_count + 1 \
                 where userid = $1",
                &[&user],
            )?;
            written.logins += 1;
        } else {
            tx.execute(
                "insert into user_logout_rec (userid, logout_time, ip) \
                 values ($1, now(), inet_client_addr())",
                &[&user],
            )?;
            tx.execute(
                "update user_session set logouttime = now(), \
                 online_interval = online_interval + coalesce(now() - logintime, interval '0') \
                 where userid = $1",
                &[&user],
            )?;
            written.logouts += 1;
        }
        tx.commit().context("committing a write")?;
        thread::sleep(LOAD_PAUSE);
    }
    written.time = start.elapsed();
    Ok(written)
}

/// The last step, also after an error or Ctrl-C: stops the servers (pg_ctl stop) and
/// removes the directory.
fn clean_up(tour: &mut Tour, servers: Vec<Server>, scratch: Scratch) -> Result<()> {
    let mut done = tour.announce(&format!(
        "Stopping both servers and removing {}",
        scratch.path.display()
    ));
    for mut server in servers {
        done = done.and(server.stop());
    }
    done.and(
        fs::remove_dir_all(&scratch.path)
            .with_context(|| format!("cannot remove {}", scratch.path.display())),
    )
}
