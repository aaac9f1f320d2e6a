//! Installing and upgrading what skyrep keeps in the database.
//!
//! The `pgq` schema is skyrep's own implementation of PgQ 3's SQL API (plain SQL and
//! PL/pgSQL, `sql/pgq_core.sql` and `sql/pgq_triggers.sql`), embedded in the binary. Every
//! script is idempotent and runs in one transaction, so installing again upgrades in place
//! without losing queued events. Where real PgQ is installed already (the extension or
//! Skytools' SQL), it is kept and used; only skyrep's fast capture-trigger generator
//! (`sql/skyrep_capture.sql`) is added beside it. Privileges follow PgQ 3's roles
//! ([`privileges`](super::privileges)); a real PgQ keeps its own.

use anyhow::{Context, Result, bail};
use postgres::GenericClient;

use super::privileges::Roles;
use crate::base::error::usage;
use crate::config::Config;
use crate::db;

const PGQ_CORE: &str = include_str!("sql/pgq_core.sql");
const PGQ_TRIGGERS: &str = include_str!("sql/pgq_triggers.sql");
const CAPTURE: &str = include_str!("sql/skyrep_capture.sql");
const LONDISTE: &str = include_str!("sql/londiste.sql");

/// The schema version `pgq_core.sql` installs (`pgq.skyrep_schema_version()`).
pub const PGQ_SCHEMA_VERSION: i32 = 1;

/// What a database holds in its `pgq` schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PgqState {
    /// No `pgq` schema.
    Absent,
    /// skyrep's implementation, at this schema version.
    Skyrep {
        /// `pgq.skyrep_schema_version()`.
        schema_version: i32,
    },
    /// PgQ from Skytools or the `pgq` extension.
    Foreign {
        /// `pgq.version()` or the extension's version, when known.
        version: Option<String>,
        /// Installed with `CREATE EXTENSION`.
        extension: bool,
    },
}

/// Finds out what the database holds in its `pgq` schema.
pub fn pgq_state(client: &mut impl GenericClient) -> Result<PgqState> {
    let row = client
        .query_one(
            "select exists (select 1 from pg_catalog.pg_namespace where nspname = 'pgq'), \
                    pg_catalog.to_regprocedure('pgq.skyrep_schema_version()') is not null, \
                    (select extversion from pg_catalog.pg_extension where extname = 'pgq'), \
                    pg_catalog.to_regprocedure('pgq.version()') is not null",
            &[],
        )
        .context("looking for the pgq schema")?;
    let (schema, ours, extversion, has_version): (bool, bool, Option<String>, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    if !schema {
        return Ok(PgqState::Absent);
    }
    if ours {
        let schema_version: i32 = client
            .query_one("select pgq.skyrep_schema_version()", &[])
            .context("reading pgq.skyrep_schema_version()")?
            .get(0);
        return Ok(PgqState::Skyrep { schema_version });
    }
    let extension = extversion.is_some();
    let version = match extversion {
        Some(v) => Some(v),
        None if has_version => client
            .query_one("select pgq.version()", &[])
            .context("reading pgq.version()")?
            .get(0),
        None => None,
    };
    Ok(PgqState::Foreign { version, extension })
}

/// Installs or upgrades the `pgq` schema in the database of `client`, called `name` in log
/// lines, with PgQ 3's privileges for `roles`, and returns what is there afterwards. Safe to
/// run again at any time, also while producers, consumers and tickers are busy.
pub fn install_pgq(client: &mut postgres::Client, name: &str, roles: &Roles) -> Result<PgqState> {
    let mut tx = client
        .transaction()
        .context("starting the install transaction")?;
    // Two installers at once would otherwise race on CREATE ... IF NOT EXISTS.
    tx.batch_execute(
        "select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('skyrep install'))",
    )
    .context("waiting for other installers")?;
    let before = pgq_state(&mut tx)?;
    match &before {
        PgqState::Foreign { version, extension } => {
            if let Some(v) = version
                && !v.starts_with('3')
            {
                bail!("{name}: PgQ {v} is installed; skyrep works with PgQ 3");
            }
            let how = if *extension { "extension" } else { "schema" };
            log::info!(
                "{name}: keeping the installed PgQ {} {how}; adding skyrep's capture triggers",
                version.as_deref().unwrap_or("3")
            );
        }
        PgqState::Skyrep { schema_version } if *schema_version > PGQ_SCHEMA_VERSION => bail!(
            "{name}: pgq was installed by a newer skyrep (schema {schema_version}, this one knows {PGQ_SCHEMA_VERSION}); \
             use that skyrep or a newer one"
        ),
        PgqState::Skyrep { schema_version } => {
            log::info!("{name}: upgrading pgq (schema {schema_version} to {PGQ_SCHEMA_VERSION})");
        }
        PgqState::Absent => log::info!("{name}: installing pgq (schema {PGQ_SCHEMA_VERSION})"),
    }
    if !matches!(before, PgqState::Foreign { .. }) {
        tx.batch_execute(PGQ_CORE)
            .with_context(|| format!("{name}: installing pgq"))?;
        tx.batch_execute(PGQ_TRIGGERS)
            .with_context(|| format!("{name}: installing the pgq trigger functions"))?;
    }
    tx.batch_execute(CAPTURE)
        .with_context(|| format!("{name}: installing skyrep's capture triggers"))?;
    if !matches!(before, PgqState::Foreign { .. }) {
        let missing = roles
            .grant(&mut tx)
            .with_context(|| format!("{name}: setting the pgq privileges"))?;
        if !missing.is_empty() {
            log::warn!("{name}: {}", roles.missing_advice(&missing));
        }
    }
    // Existing capture triggers get the code this skyrep generates, for the privileges
    // just set (the functions only: the triggers and their tables are not touched).
    tx.batch_execute("select pgq.skyrep_capture_regenerate()")
        .with_context(|| format!("{name}: regenerating the capture trigger functions"))?;
    let after = pgq_state(&mut tx)?;
    tx.commit()
        .with_context(|| format!("{name}: committing the install"))?;
    Ok(after)
}

/// Installs or upgrades skyrep's `londiste` schema (table registry, merge states, applied
/// ticks) in the database of `client`, called `name` in log lines.
pub fn install_londiste(client: &mut postgres::Client, name: &str) -> Result<()> {
    let mut tx = client
        .transaction()
        .context("starting the install transaction")?;
    tx.batch_execute(
        "select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('skyrep install'))",
    )
    .context("waiting for other installers")?;
    tx.batch_execute(LONDISTE)
        .with_context(|| format!("{name}: installing the londiste schema"))?;
    tx.commit()
        .with_context(|| format!("{name}: committing the install"))?;
    log::info!("{name}: londiste schema installed");
    Ok(())
}

/// How soon a queue created by skyrep ticks once events wait (PgQ's default is 3 s; low lag
/// is the point here).
pub const NEW_QUEUE_MAX_LAG: &str = "0.5 seconds";

/// The `install` command of a ticker config: install or upgrade pgq in `db`.
pub fn run(config: &Config) -> Result<()> {
    let roles = Roles::from_config(config)?;
    let (mut client, dbname) = connect_key(config, "db", "install")?;
    report(install_pgq(&mut client, &dbname, &roles)?, &dbname)
}

/// `provider install`: install or upgrade pgq and the londiste schema in `provider_db` and
/// create the queue `pgq_queue_name` if it does not exist (ticking after at most 0.5 s of
/// pending events).
pub fn run_provider(config: &Config) -> Result<()> {
    let queue = config.require_text("pgq_queue_name")?;
    let roles = Roles::from_config(config)?;
    let (mut client, dbname) = connect_key(config, "provider_db", "provider install")?;
    report(install_pgq(&mut client, &dbname, &roles)?, &dbname)?;
    install_londiste(&mut client, &dbname)?;
    let mut tx = client
        .transaction()
        .context("starting the queue transaction")?;
    let created: i32 = tx
        .query_one("select pgq.create_queue($1)", &[&queue])
        .with_context(|| format!("{dbname}: creating queue {queue}"))?
        .get(0);
    if created == 1 {
        tx.query_one(
            "select pgq.set_queue_config($1, 'ticker_max_lag', $2)",
            &[&queue, &NEW_QUEUE_MAX_LAG],
        )
        .with_context(|| format!("{dbname}: configuring queue {queue}"))?;
        log::info!("{dbname}: queue {queue} created");
    } else {
        log::info!("{dbname}: queue {queue} exists; its settings are kept");
    }
    tx.commit()
        .with_context(|| format!("{dbname}: committing queue {queue}"))
}

/// Connects to the database of config key `key`, for `command`; returns it and its name.
fn connect_key(config: &Config, key: &str, command: &str) -> Result<(postgres::Client, String)> {
    let conn = config.connstr(key)?.ok_or_else(|| {
        usage(format!(
            "{}: `{command}` needs `{key}`, the database to install pgq into",
            config.path().display()
        ))
    })?;
    let resolved = conn
        .resolve_from_env(&format!("skyrep/{}", config.job_name()?))
        .with_context(|| format!("{key}: bad connection string"))?;
    Ok((db::connect(key, &resolved)?, resolved.dbname))
}

fn report(state: PgqState, dbname: &str) -> Result<()> {
    match state {
        PgqState::Skyrep { schema_version } => {
            log::info!("{dbname}: pgq installed (schema {schema_version})");
        }
        PgqState::Foreign { version, .. } => {
            log::info!(
                "{dbname}: using the installed PgQ {}",
                version.as_deref().unwrap_or("3")
            );
        }
        PgqState::Absent => bail!("{dbname}: pgq is missing after installing it"),
    }
    Ok(())
}
