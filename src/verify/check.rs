//! `check`: load the config and connect to every database it names.
//!
//! The first thing to run after writing a config (and what packaging scripts run after
//! installing one): it proves the file parses and that each connection string reaches its
//! server, and says which server and whether the connection is encrypted.

use anyhow::{Context, Result};

use crate::base::error::usage;
use crate::base::output;
use crate::config::Config;
use crate::db;
use crate::db::connstr::ConnStr;

/// Connects to `provider_db`, `subscriber_db`, `db` and `base_connstr` (with
/// `initial_database`), whichever are set, and prints one line per database. Stops at the first
/// database it cannot reach.
pub fn run(config: &Config) -> Result<()> {
    let app = format!("skyrep/{}", config.job_name()?);
    let mut targets: Vec<(&str, ConnStr)> = Vec::new();
    for key in ["provider_db", "subscriber_db", "db"] {
        if let Some(conn) = config.connstr(key)? {
            targets.push((key, conn));
        }
    }
    if let Some(base) = config
        .connstr("base_connstr")?
        .filter(|c| *c != ConnStr::default())
    {
        let dbname = config.require_text("initial_database")?;
        targets.push(("base_connstr", base.with("dbname", &dbname)));
    }
    if targets.is_empty() {
        return Err(usage(format!(
            "{}: nothing to check: set provider_db, subscriber_db, db or base_connstr",
            config.path().display()
        )));
    }
    for (name, conn) in targets {
        let resolved = conn
            .resolve_from_env(&app)
            .with_context(|| format!("{name}: bad connection string"))?;
        let mut client = db::connect(name, &resolved)?;
        let row = client
            .query_one(
                "select current_setting('server_version'), \
                 coalesce((select ssl from pg_catalog.pg_stat_ssl where pid = pg_catalog.pg_backend_pid()), false)",
                &[],
            )
            .with_context(|| format!("{name}: asking the server for its version"))?;
        let version: String = row.get(0);
        let tls: bool = row.get(1);
        output::line(&format!(
            "{name}: ok, {}, PostgreSQL {version}, tls {}",
            resolved.describe(),
            if tls { "on" } else { "off" }
        ))?;
    }
    Ok(())
}
