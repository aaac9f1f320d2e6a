//! The ticker: cuts each queue's event stream into batches and keeps the queue healthy.
//!
//! For one database, [`tick_database`] does what pgqd does: every `ticker_period` it calls
//! `pgq.ticker()` (which decides per queue whether a tick is due), every `retry_period` it
//! moves due retry events back into their queues, and every `maint_period` it runs the
//! maintenance operations the database lists (`pgq.maint_operations()`: event table
//! rotation in two transactions, vacuum where autovacuum is off). It logs one statistics
//! line per maintenance period. A lost connection is logged and retried after
//! `exception_sleep`; a database without `pgq` is checked again every `check_period`. The
//! `ticker` command checks its config and its server before it reports a start
//! ([`prepare`]).
//!
//! The standalone `ticker` command ([`run`]) ticks `db`, or every database under
//! `base_connstr` (re-listed every `check_period`), one thread per database. The same loop
//! runs as the ticker thread inside `replay`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};
use postgres::Client;

use crate::base::error::{Failures, one_line, usage};
use crate::base::names::quote_ident;
use crate::config::Config;
use crate::db;
use crate::db::connstr::{ConnStr, Resolved};

/// How often the ticker does each of its jobs.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Between `pgq.ticker()` calls.
    pub ticker_period: Duration,
    /// Between maintenance runs.
    pub maint_period: Duration,
    /// Between moves of due retry events.
    pub retry_period: Duration,
    /// After an error, before connecting again.
    pub exception_sleep: Duration,
    /// Between checks for `pgq` (and, standalone, for new databases).
    pub check_period: Duration,
    /// Age at which the connection is replaced.
    pub connection_lifetime: Duration,
}

impl Settings {
    /// The ticker settings of a config file.
    pub fn from_config(config: &Config) -> Result<Settings> {
        Ok(Settings {
            ticker_period: config.seconds("ticker_period")?,
            maint_period: config.seconds("maint_period")?,
            retry_period: config.seconds("retry_period")?,
            exception_sleep: config.seconds("exception_sleep")?,
            check_period: config.seconds("check_period")?,
            connection_lifetime: config.seconds("connection_lifetime")?,
        })
    }
}

/// Counts since the last statistics line.
#[derive(Debug, Default)]
struct Stats {
    ticks: i64,
    maint: i64,
    retry: i64,
}

/// How a ticking session ended without an error.
enum SessionEnd {
    /// Asked to stop.
    Stopped,
    /// The database has no usable pgq; look again later.
    NoPgq,
    /// The connection is `connection_lifetime` old; open a new one now.
    Renew,
}

/// Ticks the database `conn` (called `name` in log lines) until `stop` disconnects. After
/// each call that made a tick, `wake` (if given) gets a message, so that a consumer waiting
/// for the next batch can start at once. Errors are logged and retried; this only returns
/// when asked to stop.
pub fn tick_database(
    name: &str,
    conn: &Resolved,
    settings: &Settings,
    stop: &Receiver<()>,
    wake: Option<&Sender<()>>,
) {
    let mut said_no_pgq = false;
    let mut failures = Failures::default();
    loop {
        let pause = match session(
            name,
            conn,
            settings,
            stop,
            wake,
            &mut said_no_pgq,
            &mut failures,
        ) {
            Ok(SessionEnd::Stopped) => return,
            Ok(SessionEnd::NoPgq) => settings.check_period,
            Ok(SessionEnd::Renew) => Duration::ZERO,
            // The error's context names the database.
            Err(err) => failures.failed(one_line(&err), settings.exception_sleep),
        };
        if stopped_within(stop, pause) {
            return;
        }
    }
}

/// Waits up to `pause` for a stop; true if asked to stop.
fn stopped_within(stop: &Receiver<()>, pause: Duration) -> bool {
    !matches!(stop.recv_timeout(pause), Err(RecvTimeoutError::Timeout))
}

fn session(
    name: &str,
    conn: &Resolved,
    settings: &Settings,
    stop: &Receiver<()>,
    wake: Option<&Sender<()>>,
    said_no_pgq: &mut bool,
    failures: &mut Failures,
) -> Result<SessionEnd> {
    let mut client = db::connect(name, conn)?;
    let Some(version) = usable_pgq(&mut client).with_context(|| format!("{name}: checking pgq"))?
    else {
        if !*said_no_pgq {
            log::info!(
                "{name}: no pgq 3 here; checking again every {:?}",
                settings.check_period
            );
            *said_no_pgq = true;
        }
        return Ok(SessionEnd::NoPgq);
    };
    *said_no_pgq = false;
    log::info!(
        "{name}: pgq version {version} ok, ticking every {:?}",
        settings.ticker_period
    );
    failures.recovered(name);
    let mut stats = Stats::default();
    let start = Instant::now();
    let mut next_retry = start;
    let mut next_maint = start;
    loop {
        let ticked: i64 = client
            .query_one("select coalesce(pgq.ticker(), 0)::bigint", &[])
            .and_then(|row| row.try_get(0))
            .with_context(|| format!("{name}: ticking"))?;
        stats.ticks += ticked;
        if ticked > 0
            && let Some(wake) = wake
        {
            // A full channel means a wake-up is pending already.
            let _ = wake.try_send(());
        }
        let now = Instant::now();
        if now >= next_retry {
            stats.retry += move_retry_events(&mut client)
                .with_context(|| format!("{name}: moving retry events"))?;
            next_retry = now + settings.retry_period;
        }
        if now >= next_maint {
            stats.maint += run_maintenance(name, &mut client)?;
            next_maint = now + settings.maint_period;
            log::info!(
                "{name}: {{ticks: {}, maint: {}, retry: {}}}",
                stats.ticks,
                stats.maint,
                stats.retry
            );
            stats = Stats::default();
        }
        let pause = until_next_attempt(&mut client, settings.ticker_period)
            .with_context(|| format!("{name}: reading when a tick is due"))?;
        if stopped_within(stop, pause) {
            log::info!("{name}: ticker stopped");
            return Ok(SessionEnd::Stopped);
        }
        if start.elapsed() >= settings.connection_lifetime {
            log::debug!("{name}: renewing the connection");
            return Ok(SessionEnd::Renew);
        }
    }
}

/// How long to wait before the next `pgq.ticker()`: `period`, or less when a queue's
/// `ticker_max_lag` runs out sooner, so that waiting events get their tick when it runs out
/// rather than up to a period later. (A queue without events then just does not tick.)
/// Queues whose max lag ran out already are left to the next period.
fn until_next_attempt(client: &mut Client, period: Duration) -> Result<Duration> {
    let due: Option<f64> = client
        .query_one(
            "select extract(epoch from min(d.due - pg_catalog.clock_timestamp()))::float8 \
               from (select t.tick_time + q.queue_ticker_max_lag as due \
                       from pgq.queue q \
                       join pgq.tick t on t.tick_queue = q.queue_id \
                        and t.tick_id = (select max(l.tick_id) from pgq.tick l \
                                          where l.tick_queue = q.queue_id) \
                      where not q.queue_ticker_paused and not q.queue_external_ticker) d \
              where d.due > pg_catalog.clock_timestamp()",
            &[],
        )?
        .get(0);
    Ok(attempt_pause(due, period))
}

/// The pause before the next tick attempt, given the seconds until the soonest queue's
/// `ticker_max_lag` runs out (`None`: none runs out ahead).
fn attempt_pause(due: Option<f64>, period: Duration) -> Duration {
    // A little after the moment, so that the tick's own clock has passed it too.
    const AFTER: Duration = Duration::from_millis(5);
    match due {
        Some(due) if due > 0.0 && due < period.as_secs_f64() => {
            Duration::from_secs_f64(due) + AFTER
        }
        _ => period,
    }
}

/// The pgq version if the database has a pgq that can be ticked (version 3).
fn usable_pgq(client: &mut Client) -> Result<Option<String>> {
    let row = client.query_one(
        "select pg_catalog.to_regprocedure('pgq.ticker()') is not null, \
                pg_catalog.to_regprocedure('pgq.version()') is not null",
        &[],
    )?;
    let (has_ticker, has_version): (bool, bool) = (row.get(0), row.get(1));
    if !has_ticker {
        return Ok(None);
    }
    let version: Option<String> = if has_version {
        client.query_one("select pgq.version()", &[])?.get(0)
    } else {
        None
    };
    // PgQ 3.4 and later report NULL when installed without CREATE EXTENSION.
    let version = version.unwrap_or_else(|| "3".to_string());
    Ok(version.starts_with('3').then_some(version))
}

/// Moves due retry events back into their queues; returns how many moved.
fn move_retry_events(client: &mut Client) -> Result<i64> {
    let mut moved = 0;
    loop {
        let n: i64 = client
            .query_one("select coalesce(pgq.maint_retry_events(), 0)::bigint", &[])?
            .try_get(0)?;
        if n <= 0 {
            return Ok(moved);
        }
        moved += n;
    }
}

/// Runs the operations `pgq.maint_operations()` lists, each in its own transaction, an
/// operation again while it reports more work. Returns the number of operations run. A
/// failing operation is logged and skipped so that it cannot stop the ticking.
fn run_maintenance(name: &str, client: &mut Client) -> Result<i64> {
    let ops: Vec<(String, Option<String>)> = client
        .query(
            "select func_name, func_arg from pgq.maint_operations()",
            &[],
        )
        .and_then(|rows| {
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
        .with_context(|| format!("{name}: listing maintenance operations"))?;
    let mut done = 0;
    for (func, arg) in ops {
        match run_maintenance_op(client, &func, arg.as_deref()) {
            Ok(()) => done += 1,
            Err(err) => log::warn!(
                "{name}: maintenance {func}({}) failed: {}",
                arg.as_deref().unwrap_or(""),
                crate::base::error::one_line(&err)
            ),
        }
    }
    Ok(done)
}

/// A maintenance operation may ask to be called again; never more often than this.
const MAX_OP_REPEATS: usize = 1000;

fn run_maintenance_op(client: &mut Client, func: &str, arg: Option<&str>) -> Result<()> {
    if func.eq_ignore_ascii_case("vacuum") || func.eq_ignore_ascii_case("vacuum analyze") {
        let table = arg.context("vacuum without a table")?;
        client.batch_execute(&format!("{func} {}", quote_qualified(table)))?;
        return Ok(());
    }
    let call = match arg {
        Some(_) => format!(
            "select coalesce({}($1::text)::bigint, 0)",
            quote_qualified(func)
        ),
        None => format!("select coalesce({}()::bigint, 0)", quote_qualified(func)),
    };
    for _ in 0..MAX_OP_REPEATS {
        let more: i64 = match arg {
            Some(arg) => client.query_one(call.as_str(), &[&arg])?.get(0),
            None => client.query_one(call.as_str(), &[])?.get(0),
        };
        if more == 0 {
            break;
        }
    }
    Ok(())
}

/// `schema.name` with each part quoted as an identifier.
fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}

/// What the `ticker` command ticks: one database, or every database under `base_connstr`.
enum Target {
    /// `db`: this database, called by its name.
    One(String, Box<Resolved>),
    /// `base_connstr`: the databases of this server, from `initial_database` or
    /// `database_list`.
    All(ConnStr),
}

/// The ticker's settings, the name its connections carry, and what it ticks, from `config`.
fn plan(config: &Config) -> Result<(Settings, String, Target)> {
    let settings = Settings::from_config(config)?;
    let app = format!("skyrep/{}", config.job_name()?);
    if let Some(conn) = config.connstr("db")? {
        let resolved = conn
            .resolve_from_env(&app)
            .context("db: bad connection string")?;
        let name = resolved.dbname.clone();
        return Ok((settings, app, Target::One(name, Box::new(resolved))));
    }
    let base = config.connstr("base_connstr")?.unwrap_or_default();
    if base == ConnStr::default() && config.section() != "pgqd" {
        return Err(usage(format!(
            "{}: the ticker needs `db`, or `base_connstr` to tick every database",
            config.path().display()
        )));
    }
    Ok((settings, app, Target::All(base)))
}

/// The `ticker` command's start-up checks, made before it reports a start (`-d`, systemd):
/// the config is complete, and the server answers; with `db`, that database has pgq, and with
/// `base_connstr`, its databases can be listed (each is then ticked once it has pgq).
pub fn prepare(config: &Config) -> Result<()> {
    let (_, app, target) = plan(config)?;
    match target {
        Target::One(name, resolved) => {
            let mut client = db::connect(&name, &resolved)?;
            if usable_pgq(&mut client)
                .with_context(|| format!("{name}: checking pgq"))?
                .is_none()
            {
                bail!(
                    "database {name} has no pgq 3: run `skyrep {} install` first",
                    config.path().display()
                );
            }
        }
        Target::All(base) => {
            let initial = config.require_text("initial_database")?;
            match list(config)? {
                Some(fixed) => {
                    for db in fixed {
                        base.with("dbname", &db)
                            .resolve_from_env(&app)
                            .context("base_connstr: bad connection string")?;
                    }
                }
                None => {
                    list_databases(&base, &initial, &app)?;
                }
            }
        }
    }
    Ok(())
}

/// `database_list`, if it names any database.
fn list(config: &Config) -> Result<Option<Vec<String>>> {
    let fixed: Vec<String> = config
        .text("database_list")?
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .collect();
    Ok((!fixed.is_empty()).then_some(fixed))
}

/// The `ticker` command: tick `db`, or every database under `base_connstr`, until `stop`.
pub fn run(config: &Config, stop: Receiver<()>) -> Result<()> {
    let (settings, app, target) = plan(config)?;
    match target {
        Target::One(name, resolved) => {
            tick_database(&name, &resolved, &settings, &stop, None);
            Ok(())
        }
        Target::All(base) => tick_all_databases(config, &base, &app, &settings, &stop),
    }
}

/// pgqd's mode: one ticking thread per database, the list refreshed every `check_period`.
fn tick_all_databases(
    config: &Config,
    base: &ConnStr,
    app: &str,
    settings: &Settings,
    stop: &Receiver<()>,
) -> Result<()> {
    let initial = config.require_text("initial_database")?;
    let fixed = list(config)?;
    std::thread::scope(|scope| -> Result<()> {
        // Dropping a database's sender stops its thread; on a global stop all are dropped.
        let mut running: BTreeMap<String, Sender<()>> = BTreeMap::new();
        loop {
            let wanted = match &fixed {
                Some(fixed) => Some(fixed.clone()),
                None => match list_databases(base, &initial, app) {
                    Ok(list) => Some(list),
                    Err(err) => {
                        log::error!("{}", crate::base::error::one_line(&err));
                        None
                    }
                },
            };
            if let Some(wanted) = wanted {
                running.retain(|db, _| {
                    let keep = wanted.contains(db);
                    if !keep {
                        log::info!("{db}: database gone, no longer ticked");
                    }
                    keep
                });
                for db in wanted {
                    if running.contains_key(&db) {
                        continue;
                    }
                    let resolved = base
                        .with("dbname", &db)
                        .resolve_from_env(app)
                        .context("base_connstr: bad connection string")?;
                    let (db_stop, db_stopped) = bounded::<()>(0);
                    let name = db.clone();
                    std::thread::Builder::new()
                        .name(format!("ticker-{db}"))
                        .spawn_scoped(scope, move || {
                            tick_database(&name, &resolved, settings, &db_stopped, None)
                        })
                        .context("starting a ticker thread")?;
                    running.insert(db, db_stop);
                }
            }
            if stopped_within(stop, settings.check_period) {
                running.clear();
                return Ok(());
            }
        }
    })
}

/// Databases that accept connections, from `initial_database`.
fn list_databases(base: &ConnStr, initial: &str, app: &str) -> Result<Vec<String>> {
    let resolved = base.with("dbname", initial).resolve_from_env(app)?;
    let mut client = db::connect("initial_database", &resolved)?;
    let rows = client
        .query(
            "select datname::text from pg_catalog.pg_database \
             where not datistemplate and datallowconn order by 1",
            &[],
        )
        .context("listing databases")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_waits_for_the_soonest_max_lag_within_the_period() {
        let period = Duration::from_millis(200);
        let after = Duration::from_millis(5);
        assert_eq!(attempt_pause(None, period), period, "no queue");
        assert_eq!(attempt_pause(Some(-1.0), period), period, "ran out already");
        assert_eq!(attempt_pause(Some(0.0), period), period, "runs out now");
        assert_eq!(attempt_pause(Some(0.5), period), period, "after the period");
        assert_eq!(
            attempt_pause(Some(0.05), period),
            Duration::from_millis(50) + after
        );
    }

    #[test]
    fn identifiers_are_quoted_part_by_part() {
        assert_eq!(
            quote_qualified("pgq.maint_rotate_tables_step1"),
            "\"pgq\".\"maint_rotate_tables_step1\""
        );
    }
}
