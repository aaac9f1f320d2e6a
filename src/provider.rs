//! Provider side commands: `provider add`, `provider remove`, `provider tables`.
//!
//! Adding a table checks it (exists, is a table, has a primary key), creates skyrep's
//! generated capture trigger on it (`_londiste_QUEUE`, plus `_londiste_QUEUE_truncate`) and
//! records it in `londiste.provider_tables`, all in one transaction: a bad table anywhere in
//! the list changes nothing. The sequence commands are in [`crate::seqs`].

use anyhow::{Context, Result, bail};
use postgres::GenericClient;

use crate::config::Config;
use crate::db;
use crate::error::usage;
use crate::names::TableName;
use crate::output;

/// A provider command's database, queue and job.
pub struct Provider {
    /// The connection to `provider_db`.
    pub(crate) client: postgres::Client,
    /// `pgq_queue_name`.
    pub(crate) queue: String,
    /// The database's name, for log lines.
    pub(crate) dbname: String,
}

impl Provider {
    /// Connects to `provider_db` of the config.
    pub fn connect(config: &Config) -> Result<Provider> {
        let queue = config.require_text("pgq_queue_name")?;
        let conn = config.connstr("provider_db")?.ok_or_else(|| {
            usage(format!(
                "{}: missing key `provider_db`",
                config.path().display()
            ))
        })?;
        let resolved = conn
            .resolve_from_env(&format!("skyrep/{}", config.job_name()?))
            .context("provider_db: bad connection string")?;
        let client = db::connect("provider_db", &resolved)?;
        Ok(Provider {
            client,
            queue,
            dbname: resolved.dbname,
        })
    }

    /// The capture trigger's name for this queue, as Londiste names it.
    pub fn trigger_name(&self) -> String {
        format!("_londiste_{}", self.queue)
    }

    /// `provider add`: registers `tables` (or, with `all`, every user table) and creates
    /// their capture triggers.
    pub fn add(&mut self, tables: &[String], all: bool) -> Result<()> {
        let trigger = self.trigger_name();
        let mut tx = self.client.transaction()?;
        check_installed(&mut tx, &self.queue)?;
        let names = if all {
            user_tables(&mut tx)?
        } else {
            parse_names(tables)?
        };
        if names.is_empty() {
            bail!("no tables to add");
        }
        for table in &names {
            check_table(&mut tx, table)?;
        }
        for table in &names {
            let known: bool = tx
                .query_one(
                    "select exists (select 1 from londiste.provider_tables where queue_name = $1 and table_name = $2)",
                    &[&self.queue, &table.qualified()],
                )?
                .get(0);
            tx.query_one(
                // keymove: an update of the key reaches the subscriber as delete + insert
                "select pgq.skyrep_capture_create($1::text::regclass, $2, $3, array['keymove'])",
                &[&table.quoted(), &self.queue, &trigger],
            )
            .with_context(|| format!("creating the capture trigger on {table}"))?;
            tx.execute(
                "insert into londiste.provider_tables (queue_name, table_name, trigger_name) values ($1, $2, $3) \
                 on conflict (queue_name, table_name) do update set trigger_name = excluded.trigger_name",
                &[&self.queue, &table.qualified(), &trigger],
            )?;
            if known {
                log::info!(
                    "{}: {table} was already added; its trigger is refreshed",
                    self.dbname
                );
            } else {
                log::info!("{}: added {table}", self.dbname);
            }
        }
        tx.commit().context("committing provider add")
    }

    /// `provider remove`: drops the capture triggers and unregisters `tables`.
    pub fn remove(&mut self, tables: &[String]) -> Result<()> {
        let names = parse_names(tables)?;
        if names.is_empty() {
            return Err(usage("`provider remove` needs at least one table"));
        }
        let mut tx = self.client.transaction()?;
        check_installed(&mut tx, &self.queue)?;
        for table in &names {
            let trigger: Option<String> = tx
                .query_opt(
                    "delete from londiste.provider_tables where queue_name = $1 and table_name = $2 returning trigger_name",
                    &[&self.queue, &table.qualified()],
                )?
                .map(|row| row.get(0));
            let Some(trigger) = trigger else {
                bail!(
                    "{table} is not added on the provider for queue {}",
                    self.queue
                );
            };
            let exists: bool = tx
                .query_one("select to_regclass($1) is not null", &[&table.quoted()])?
                .get(0);
            if exists {
                tx.query_one(
                    "select pgq.skyrep_capture_drop($1::text::regclass, $2)",
                    &[&table.quoted(), &trigger],
                )
                .with_context(|| format!("dropping the capture trigger on {table}"))?;
            }
            log::info!("{}: removed {table}", self.dbname);
        }
        tx.commit().context("committing provider remove")
    }

    /// `provider tables`: the registered tables, one per line.
    pub fn tables(&mut self) -> Result<()> {
        check_installed(&mut self.client, &self.queue)?;
        let rows = self.client.query(
            "select table_name from londiste.provider_tables where queue_name = $1 order by 1",
            &[&self.queue],
        )?;
        for row in rows {
            output::line(row.get(0))?;
        }
        Ok(())
    }
}

/// Fails unless `provider install` has been run for `queue`.
pub(crate) fn check_installed(client: &mut impl GenericClient, queue: &str) -> Result<()> {
    let row = client.query_one(
        "select to_regclass('londiste.provider_tables') is not null, \
                to_regprocedure('pgq.skyrep_capture_create(regclass, text, text, text[])') is not null",
        &[],
    )?;
    if !(row.get::<_, bool>(0) && row.get::<_, bool>(1)) {
        bail!("the provider database is not set up: run `provider install` first");
    }
    let queue_exists: bool = client
        .query_one(
            "select exists (select 1 from pgq.get_queue_info($1))",
            &[&queue],
        )?
        .get(0);
    if !queue_exists {
        bail!("queue {queue} does not exist on the provider: run `provider install` first");
    }
    Ok(())
}

/// Parses table names as typed, dropping repeats; a bad name is a usage error.
pub fn parse_names(tables: &[String]) -> Result<Vec<TableName>> {
    let mut names = Vec::new();
    for text in tables {
        let name = TableName::parse(text).map_err(|e| usage(format!("{e:#}")))?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Every ordinary or partitioned table outside pgq, londiste, information_schema and pg_*.
fn user_tables(client: &mut impl GenericClient) -> Result<Vec<TableName>> {
    let rows = client.query(
        "select n.nspname::text, c.relname::text from pg_catalog.pg_class c \
         join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
         where c.relkind in ('r', 'p') and not c.relispartition \
           and n.nspname not in ('pgq', 'londiste', 'information_schema') \
           and n.nspname not like 'pg\\_%' \
         order by 1, 2",
        &[],
    )?;
    rows.iter()
        .map(|r| TableName::new(r.get(0), r.get(1)))
        .collect()
}

/// Fails with a message naming the table unless it is a table with a primary key.
pub fn check_table(client: &mut impl GenericClient, table: &TableName) -> Result<()> {
    let row = client.query_opt(
        "select c.relkind::text, exists (select 1 from pg_catalog.pg_index i \
                                          where i.indrelid = c.oid and i.indisprimary) \
         from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = $1 and c.relname = $2",
        &[&table.schema, &table.name],
    )?;
    let Some(row) = row else {
        bail!("table {table} does not exist");
    };
    let (kind, has_pk): (String, bool) = (row.get(0), row.get(1));
    match kind.as_str() {
        "r" | "p" => {}
        "v" | "m" => bail!("{table} is a view, not a table"),
        _ => bail!("{table} is not a table"),
    }
    if !has_pk {
        bail!("table {table} has no primary key; skyrep replicates only tables with one");
    }
    Ok(())
}
