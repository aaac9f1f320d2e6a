//! Provider side commands: `provider add`, `remove`, `tables`, `refresh-trigger` and
//! `execute`.
//!
//! Adding a table checks it (exists, is a table, has a primary key), creates skyrep's
//! generated capture trigger on it (`_londiste_QUEUE`, plus `_londiste_QUEUE_truncate`) and
//! records it in `londiste.provider_tables`, all in one transaction: a bad table anywhere in
//! the list changes nothing. Removing one queues a `londiste.remove-table` event in the same
//! transaction, so that subscribers unregister it when their replay gets there.
//!
//! `execute` runs a script and queues it as an `EXECUTE` event (`ev_data` the script,
//! `ev_extra1` its file name) in one transaction, after regenerating the capture triggers of
//! the registered tables whose columns the script changed. The sequence commands are in
//! [`crate::capture::seqs`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::error::SqlState;
use postgres::{GenericClient, Transaction};

use crate::base::error::usage;
use crate::base::names::TableName;
use crate::base::output;
use crate::capture::script::Script;
use crate::capture::script::script_record;
use crate::config::Config;
use crate::db;

/// `ev_type` of the event that carries a script of `provider execute`.
pub const EXECUTE_EVENT: &str = "EXECUTE";

/// `ev_type` of the event that tells subscribers a table was removed (`ev_data` its name).
pub const REMOVE_TABLE_EVENT: &str = "londiste.remove-table";

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
        let resolved = config
            .require_connstr("provider_db")?
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
    /// their capture triggers: row triggers, or with `bulk` set-based statement triggers
    /// where they give the same events (`pgq.skyrep_capture_bulk_refusal` says where not).
    /// Adding a table again replaces its triggers, in the mode asked for.
    pub fn add(&mut self, tables: &[String], all: bool, bulk: bool) -> Result<()> {
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
        // keymove: an update of the key reaches the subscriber as delete + insert
        let args: &[&str] = if bulk {
            &["keymove", "bulk"]
        } else {
            &["keymove"]
        };
        for table in &names {
            let known: bool = tx
                .query_one(
                    "select exists (select 1 from londiste.provider_tables where queue_name = $1 and table_name = $2)",
                    &[&self.queue, &table.qualified()],
                )?
                .get(0);
            let refusal: Option<String> = if bulk {
                tx.query_one(
                    "select pgq.skyrep_capture_bulk_refusal($1::text::regclass, $2)",
                    &[&table.quoted(), &args],
                )?
                .get(0)
            } else {
                None
            };
            if let Some(why) = refusal {
                log::warn!("{}: {table} is captured per row: {why}", self.dbname);
            }
            tx.query_one(
                "select pgq.skyrep_capture_create($1::text::regclass, $2, $3, $4)",
                &[&table.quoted(), &self.queue, &trigger, &args],
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
            tx.query_one(
                "select pgq.insert_event($1, $2, $3)",
                &[&self.queue, &REMOVE_TABLE_EVENT, &table.qualified()],
            )
            .with_context(|| format!("queueing the removal of {table}"))?;
            // The record that vouches for the event on the subscribers.
            tx.execute(
                "insert into londiste.removed_tables (queue_name, table_name, ev_txid) \
                 values ($1, $2, pg_catalog.txid_current())",
                &[&self.queue, &table.qualified()],
            )
            .with_context(|| {
                format!("recording the removal of {table} (run `provider install` to upgrade)")
            })?;
            log::info!("{}: removed {table}", self.dbname);
        }
        tx.commit().context("committing provider remove")
    }

    /// `provider refresh-trigger`: regenerates the capture triggers of registered `tables`
    /// from their current columns.
    pub fn refresh_triggers(&mut self, tables: &[String]) -> Result<()> {
        let names = parse_names(tables)?;
        let mut tx = self.client.transaction()?;
        check_installed(&mut tx, &self.queue)?;
        for table in &names {
            let trigger = registered_trigger(&mut tx, &self.queue, table)?.with_context(|| {
                format!(
                    "{table} is not added on the provider for queue {}",
                    self.queue
                )
            })?;
            check_table(&mut tx, table)?;
            refresh_trigger(&mut tx, table, &trigger)?;
            log::info!("{}: refreshed the capture trigger of {table}", self.dbname);
        }
        tx.commit().context("committing provider refresh-trigger")
    }

    /// `provider execute`: runs each script in a transaction of its own and queues it for the
    /// subscribers in the same transaction. A script run before under the same file name is
    /// not run again; a different one under that name is refused. Every file is read and
    /// checked before the first runs, so a bad one anywhere in the list runs none.
    pub fn execute(&mut self, files: &[String]) -> Result<()> {
        let mut scripts = Vec::new();
        for file in files {
            let path = Path::new(file);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .with_context(|| format!("{file}: not a file name"))?
                .to_string();
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {file}; no script was run"))?;
            let script = Script::parse(&text)
                .and_then(Script::without_transaction_control)
                .with_context(|| format!("{file} (no script was run)"))?;
            if script.is_empty() {
                bail!("{file} has no statements; no script was run");
            }
            scripts.push((name, script));
        }
        for (name, script) in &scripts {
            self.execute_one(name, script)?;
        }
        Ok(())
    }

    fn execute_one(&mut self, name: &str, script: &Script) -> Result<()> {
        let sql = script.sql();
        let mut tx = self.client.transaction()?;
        check_installed(&mut tx, &self.queue)?;
        let md5: String = tx.query_one("select md5($1)", &[&sql])?.get(0);
        if let Some(record) = script_record(&mut tx, &self.queue, name, "provider install")? {
            let at = record.at;
            if record.md5 == Some(md5) {
                log::info!(
                    "{}: {name} was executed at {at}; not run again",
                    self.dbname
                );
                return Ok(());
            }
            bail!(
                "a different script named {name} was executed at {at}; give this one a name of its own"
            );
        }
        let registered = registered_tables(&mut tx, &self.queue)?;
        let mut columns_before = Vec::new();
        for (table, _) in &registered {
            columns_before.push((
                column_signature(&mut tx, table)?,
                last_attnum(&mut tx, table)?,
            ));
        }
        let local = run_locally(&mut tx)?;
        take_tables(&mut tx, &registered)?;
        log::info!(
            "{}: executing {name} ({} statements)",
            self.dbname,
            script.len()
        );
        tx.batch_execute(&sql)
            .with_context(|| format!("{name} failed on the provider; nothing was changed"))?;
        if !local {
            refuse_captured_rows(&mut tx, &self.queue, name)?;
        }
        for ((table, trigger), (before, last)) in registered.iter().zip(columns_before) {
            let after = column_signature(&mut tx, table)?;
            if after.is_none() {
                bail!(
                    "{name} drops or renames {table}, which is replicated: `provider remove` it first; nothing was changed"
                );
            }
            refuse_filled_where_run(&mut tx, name, table, last)?;
            if after != before {
                refresh_trigger(&mut tx, table, trigger)?;
                log::info!(
                    "{}: {name} changed {table}; its capture trigger is refreshed",
                    self.dbname
                );
            }
        }
        tx.query_one(
            "select pgq.insert_event($1, $2, $3, $4, null, null, null)",
            &[&self.queue, &EXECUTE_EVENT, &sql, &name],
        )
        .with_context(|| format!("queueing {name}"))?;
        tx.execute(
            "insert into londiste.executed_scripts (queue_name, file_name, sql_md5, status) \
             values ($1, $2, $3, 'done')",
            &[&self.queue, &name, &md5],
        )?;
        tx.commit().with_context(|| format!("committing {name}"))?;
        log::info!(
            "{}: executed {name}; queued for the subscribers",
            self.dbname
        );
        Ok(())
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

/// The capture trigger of `table` if it is registered for `queue`.
fn registered_trigger(
    client: &mut impl GenericClient,
    queue: &str,
    table: &TableName,
) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "select trigger_name from londiste.provider_tables where queue_name = $1 and table_name = $2",
            &[&queue, &table.qualified()],
        )?
        .map(|r| r.get(0)))
}

/// Every table registered for `queue`, with its capture trigger.
fn registered_tables(
    client: &mut impl GenericClient,
    queue: &str,
) -> Result<Vec<(TableName, String)>> {
    client
        .query(
            "select table_name, trigger_name from londiste.provider_tables where queue_name = $1 order by 1",
            &[&queue],
        )?
        .iter()
        .map(|r| Ok((TableName::from_qualified(r.get(0))?, r.get(1))))
        .collect()
}

/// How long the script's transaction waits at a time for the writers of the replicated tables
/// before it lets them go on and tries again ...
const TAKE_WAIT: Duration = Duration::from_millis(200);
/// ... and for how long in all.
const TAKE_GIVE_UP: Duration = Duration::from_secs(120);

/// Takes the replicated `tables` to the script's transaction (EXCLUSIVE: others may read
/// them, not write): it waits for the transactions writing them to end, and keeps new ones
/// waiting until it commits. So no transaction's events straddle the script's in the queue:
/// each subscriber applies every other transaction wholly before or wholly after the
/// script, as the provider ordered them, and the script's statements see the same rows
/// there as here. Each attempt waits at most [`TAKE_WAIT`] (less than PostgreSQL's
/// deadlock_timeout, so a writer is never chosen as a deadlock's victim), then gives back
/// what it took and tries again.
fn take_tables(tx: &mut Transaction<'_>, tables: &[(TableName, String)]) -> Result<()> {
    let mut names = Vec::new();
    for (table, _) in tables {
        if db::to_regclass(tx, &table.quoted())? {
            names.push(table.quoted());
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "set local lock_timeout = {}; lock table {} in exclusive mode; \
         set local lock_timeout to default",
        TAKE_WAIT.as_millis(),
        names.join(", ")
    );
    let start = Instant::now();
    loop {
        let mut attempt = tx.transaction()?;
        match attempt.batch_execute(&sql) {
            Ok(()) => {
                attempt.commit()?;
                return Ok(());
            }
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                attempt.rollback()?;
                if start.elapsed() > TAKE_GIVE_UP {
                    bail!(
                        "the replicated tables were being written all the time for {} s: the \
                         script needs them to itself for a moment; nothing was changed",
                        TAKE_GIVE_UP.as_secs()
                    );
                }
                log::debug!("waiting for the writers of the replicated tables");
                std::thread::sleep(TAKE_WAIT / 2);
            }
            Err(e) => return Err(e).context("taking the replicated tables for the script"),
        }
    }
}

/// Sets the script's transaction to `session_replication_role = local`, where capture
/// triggers queue nothing: the script's own row changes reach each subscriber by the script
/// running there, once. Returns false, changing nothing, if this role may not set it.
fn run_locally(tx: &mut Transaction<'_>) -> Result<bool> {
    let mut attempt = tx.transaction()?;
    match attempt.batch_execute("set local session_replication_role = local") {
        Ok(()) => {
            attempt.commit()?;
            Ok(true)
        }
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            attempt.rollback()?;
            log::info!(
                "this role may not set session_replication_role: the script runs with capture on, \
                 and is refused if it changes rows of replicated tables"
            );
            Ok(false)
        }
        Err(e) => Err(e).context("setting session_replication_role = local for the script"),
    }
}

/// Fails if the script, run with capture on, queued row changes: they would reach every
/// subscriber twice, as events and by the script running there.
fn refuse_captured_rows(tx: &mut Transaction<'_>, queue: &str, name: &str) -> Result<()> {
    let prefix: String = tx
        .query_one(
            "select queue_data_pfx from pgq.queue where queue_name = $1",
            &[&queue],
        )
        .with_context(|| format!("reading the event tables of queue {queue}"))?
        .get(0);
    let sql = format!(
        "select coalesce(pg_catalog.string_agg(distinct ev_extra1, ', '), '') from {prefix} \
         where ev_txid = pg_catalog.txid_current()"
    );
    let tables: String = tx
        .query_one(&sql, &[])
        .context("looking for row changes the script queued")?
        .get(0);
    if !tables.is_empty() {
        let role: String = tx.query_one("select current_user::text", &[])?.get(0);
        bail!(
            "{name} changes rows of replicated tables ({tables}), and role {role} may not set \
             session_replication_role = local, with which capture leaves the script's own rows to \
             the script running on each subscriber: run as is, they would be applied there twice. \
             Grant it (GRANT SET ON PARAMETER session_replication_role TO {role}, PostgreSQL 15 \
             and later), execute as a superuser, or keep the script to DDL and make the row \
             changes in an ordinary transaction, which replicates; nothing was changed"
        );
    }
    Ok(())
}

/// Fails if the script added a column to `table` (past column number `last`) whose value in
/// the existing rows depends on where and when it is computed: an identity or serial column
/// (numbered in each database's physical order) or a default that is not immutable
/// (`random()`, `now()`, `gen_random_uuid()`, `current_user`, ...). Each subscriber would
/// fill its rows with values of its own.
fn refuse_filled_where_run(
    tx: &mut Transaction<'_>,
    name: &str,
    table: &TableName,
    last: i16,
) -> Result<()> {
    let rows = tx
        .query(
            "select a.attname::text, \
                    case when a.attidentity <> '' then 'an identity column' \
                         else 'default ' || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), \
                                                     'of its domain') end \
             from pg_catalog.pg_attribute a \
             left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum \
             left join pg_catalog.pg_type t on t.oid = a.atttypid \
             cross join lateral (select coalesce(d.adbin::text, t.typdefaultbin::text, '') as tree) e \
             where a.attrelid = $1::text::regclass and a.attnum > $2 and not a.attisdropped \
               and a.attgenerated = '' \
               and (a.attidentity <> '' \
                    or e.tree like '%{SQLVALUEFUNCTION%' \
                    or exists (select 1 from pg_catalog.regexp_matches(e.tree, \
                                   ':(?:op)?funcid (\\d+)', 'g') m \
                               join pg_catalog.pg_proc p on p.oid = m[1]::oid \
                               where p.provolatile <> 'i')) \
             order by a.attnum",
            &[&table.quoted(), &last],
        )
        .with_context(|| format!("reading the columns {name} added to {table}"))?;
    if let Some(row) = rows.first() {
        let (column, how): (String, String) = (row.get(0), row.get(1));
        bail!(
            "{name} adds column {column} to {table} with {how}: the rows there now would get \
             values that depend on where the script runs, different on each subscriber. Add the \
             column without it (or with a constant default), fill it with an UPDATE in an \
             ordinary transaction (it replicates), then set the default or identity in a script \
             of its own; nothing was changed"
        );
    }
    Ok(())
}

/// The highest column number `table` has used (dropped columns included): columns added
/// later have higher ones.
fn last_attnum(client: &mut impl GenericClient, table: &TableName) -> Result<i16> {
    Ok(client
        .query_one(
            "select coalesce(max(attnum), 0)::int2 from pg_catalog.pg_attribute \
             where attrelid = $1::text::regclass and attnum > 0",
            &[&table.quoted()],
        )
        .with_context(|| format!("reading the columns of {table}"))?
        .get(0))
}

/// The names and types of `table`'s columns in one string, or None if there is no such table.
fn column_signature(client: &mut impl GenericClient, table: &TableName) -> Result<Option<String>> {
    Ok(client
        .query_one(
            "select case when c.oid is not null then coalesce( \
                    (select pg_catalog.string_agg(a.attname || ' ' || \
                         pg_catalog.format_type(a.atttypid, a.atttypmod), ', ' order by a.attnum) \
                     from pg_catalog.pg_attribute a \
                     where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped), '') end \
             from (select pg_catalog.to_regclass($1) as oid) c",
            &[&table.quoted()],
        )
        .with_context(|| format!("reading the columns of {table}"))?
        .get(0))
}

/// Regenerates the capture trigger `trigger` of `table` from its current columns.
fn refresh_trigger(
    client: &mut impl GenericClient,
    table: &TableName,
    trigger: &str,
) -> Result<()> {
    client
        .query_one(
            "select pgq.skyrep_capture_refresh($1::text::regclass, $2)",
            &[&table.quoted(), &trigger],
        )
        .with_context(|| format!("refreshing the capture trigger on {table}"))?;
    Ok(())
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
         where c.relkind = 'r' \
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
        "r" => {}
        "p" => bail!(
            "{table} is partitioned: add its partitions instead (they hold the rows, and each \
             is replicated as a table of its own)"
        ),
        "v" | "m" => bail!("{table} is a view, not a table"),
        _ => bail!("{table} is not a table"),
    }
    if !has_pk {
        bail!("table {table} has no primary key; skyrep replicates only tables with one");
    }
    Ok(())
}
