//! Subscriber side commands: `subscriber install | add | remove | tables | register |
//! unregister` (the last with only the provider reachable, see [`unregister`]).
//!
//! `subscriber add` checks each table against the provider (registered there, present here
//! with a primary key and the same columns) and records it in `londiste.subscriber_tables`
//! with merge state NULL (waiting for its copy) or `ok` (`--expect-sync`), and puts the
//! statement trigger on it that refuses ordinary writes. Everything in one transaction: a
//! bad table anywhere in the list changes nothing. The sequence commands are in
//! [`crate::replay::seqs`].

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use postgres::{Client, GenericClient};

use crate::base::error::{one_line, usage};
use crate::base::names::{TableName, quote_ident};
use crate::base::output;
use crate::capture::provider::{check_table, parse_names};
use crate::capture::script::script_record;
use crate::config::Config;
use crate::db::connstr::Resolved;
use crate::db::{self, to_regclass};
use crate::queue::install;
use crate::replay::aside;
use crate::replay::job::Job;
use crate::replay::lock;
use crate::replay::progress::Progress;
use crate::replay::protect;
use crate::replay::state::{SubscriberTable, load_tables};

/// The options of `subscriber add`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AddOptions {
    /// `--all`: every provider table not added yet.
    pub all: bool,
    /// `--expect-sync`: equal already, no copy.
    pub expect_sync: bool,
    /// `--skip-truncate`: copy into the table without emptying it first.
    pub skip_truncate: bool,
    /// `--force`: add even if the columns differ from the provider's.
    pub force: bool,
    /// `--create`: create the table from the provider's definition if it is missing.
    pub create: bool,
    /// `--dest-table=NAME`: apply to this local table instead of the same name.
    pub dest_table: Option<String>,
    /// `--copy-condition=SQL`: replicate only the rows for which this is true.
    pub copy_condition: Option<String>,
}

/// Which lists `subscriber fkeys` and `subscriber triggers` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lists {
    /// No argument: both, each under a title line.
    Both,
    /// `pending`: those set aside for a copy and not back yet.
    Pending,
    /// `active`: those in place.
    Active,
}

/// A subscriber command's two databases, queue and consumer name.
pub struct Subscriber {
    /// The connection to `subscriber_db`.
    pub(crate) subscriber: Client,
    provider_conn: Resolved,
    provider: Option<Client>,
    /// `pgq_queue_name`.
    pub(crate) queue: String,
    consumer: String,
    /// The subscriber database's name, for log lines.
    pub(crate) dbname: String,
}

impl Subscriber {
    /// Connects to `subscriber_db` (and, when a command needs it, to `provider_db`).
    pub fn connect(config: &Config) -> Result<Subscriber> {
        let queue = config.require_text("pgq_queue_name")?;
        let consumer = config.job_name()?;
        let app = format!("skyrep/{consumer}");
        let resolve = |key: &str| -> Result<Resolved> {
            config
                .require_connstr(key)?
                .resolve_from_env(&app)
                .with_context(|| format!("{key}: bad connection string"))
        };
        let sub = resolve("subscriber_db")?;
        let provider_conn = resolve("provider_db")?;
        let subscriber = db::connect("subscriber_db", &sub)?;
        Ok(Subscriber {
            subscriber,
            provider_conn,
            provider: None,
            queue,
            consumer,
            dbname: sub.dbname,
        })
    }

    /// The provider connection, opened on first use (not every command needs it).
    pub(crate) fn provider(&mut self) -> Result<&mut Client> {
        if self.provider.is_none() {
            self.provider = Some(db::connect("provider_db", &self.provider_conn)?);
        }
        Ok(self.provider.as_mut().expect("just connected"))
    }

    /// `subscriber install`: installs or upgrades the `londiste` schema here.
    pub fn install(&mut self) -> Result<()> {
        install::install_londiste(&mut self.subscriber, &self.dbname)?;
        // Guards put there by an older version let any session that sets skyrep.replay
        // through: put them again, bound to this role.
        let mut tx = self.subscriber.transaction()?;
        let dests: Vec<String> = tx
            .query(
                "select dest_table from londiste.subscriber_tables where queue_name = $1 \
                 order by 1",
                &[&self.queue],
            )
            .context("reading the replicated tables")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for dest in dests {
            let dest = TableName::from_qualified(&dest)?;
            if to_regclass(&mut tx, &dest.quoted())? {
                let queue = self.queue.clone();
                protect::guard(&mut tx, &dest, &queue)?;
            }
        }
        tx.commit().context("putting the write guards on again")
    }

    /// `subscriber add`: registers `tables` (or, with `--all`, every provider table not yet
    /// here) with the options of [`AddOptions`]. Checks everything before it changes
    /// anything: all tables are added, or none.
    pub fn add(&mut self, tables: &[String], options: &AddOptions) -> Result<()> {
        let AddOptions {
            all,
            expect_sync,
            skip_truncate,
            force,
            create,
            ref dest_table,
            ref copy_condition,
        } = *options;
        let queue = self.queue.clone();
        let provider_tables = provider_tables(self.provider()?, &queue)?;
        let mut tx = self.subscriber.transaction()?;
        check_installed(&mut tx)?;
        let here: Vec<String> = registered(&mut tx, &queue)?.into_keys().collect();
        let names: Vec<TableName> = if all {
            provider_tables
                .iter()
                .filter(|t| !here.contains(&t.qualified()))
                .cloned()
                .collect()
        } else {
            parse_names(tables)?
        };
        if names.is_empty() {
            bail!("no tables to add");
        }
        let dest_of: Vec<(TableName, TableName)> = match dest_table {
            Some(dest) if names.len() == 1 && !all => {
                let dest =
                    TableName::parse(dest).map_err(|e| usage(format!("--dest-table: {e:#}")))?;
                vec![(names[0].clone(), dest)]
            }
            Some(_) => {
                return Err(usage("--dest-table names the local table of one table"));
            }
            None => names.iter().map(|t| (t.clone(), t.clone())).collect(),
        };
        let provider = self.provider.as_mut().expect("connected above");
        for (table, dest) in &dest_of {
            if !provider_tables.contains(table) {
                bail!(
                    "{table} is not added on the provider for queue {queue}: run `provider add {table}` first"
                );
            }
            let theirs = columns(provider, table).context("reading the provider's columns")?;
            if let Some(condition) = copy_condition {
                crate::capture::script::check_single(condition)
                    .map_err(|e| usage(format!("--copy-condition `{condition}`: {e}")))?;
                // Tried on the provider, where the copy runs it: a bad one stops here. As one
                // prepared statement, which cannot hold a second one.
                provider
                    .query(
                        &format!(
                            "select 1 from only {} where ({condition}) limit 0",
                            table.quoted()
                        ),
                        &[],
                    )
                    .map_err(|e| {
                        usage(format!(
                            "--copy-condition `{condition}` does not work on {table}: {}",
                            crate::base::error::one_line(&e.into())
                        ))
                    })?;
            }
            if !exists(&mut tx, dest)? {
                if !create {
                    bail!(
                        "table {dest} does not exist on the subscriber: create it, or add it \
                         with --create to create it like the provider's {table}"
                    );
                }
                create_like(&mut tx, provider, table, dest)?;
                log::info!(
                    "{}: created {dest} like the provider's {table}",
                    self.dbname
                );
            }
            check_table(&mut tx, dest).map_err(|e| anyhow::anyhow!("on the subscriber: {e:#}"))?;
            if !expect_sync {
                crate::replay::aside::check_privileges(&mut tx, dest, skip_truncate)?;
            }
            let ours = columns(&mut tx, dest)?;
            let differences = compare_columns(&theirs, &ours);
            if !differences.is_empty() {
                let text = format!(
                    "{table} differs between provider and subscriber{}: {}",
                    if dest != table {
                        format!(" ({dest})")
                    } else {
                        String::new()
                    },
                    differences.join("; ")
                );
                if !force {
                    bail!("{text} (--force adds it anyway)");
                }
                log::warn!("{text}; added anyway (--force)");
            }
        }
        let state: Option<&str> = expect_sync.then_some("ok");
        for (table, dest) in &dest_of {
            if here.contains(&table.qualified()) {
                log::info!("{}: {table} is already added", self.dbname);
                continue;
            }
            tx.execute(
                "insert into londiste.subscriber_tables \
                     (queue_name, table_name, dest_table, merge_state, skip_truncate, \
                      copy_condition) \
                 values ($1, $2, $3, $4, $5, $6)",
                &[
                    &queue,
                    &table.qualified(),
                    &dest.qualified(),
                    &state,
                    &skip_truncate,
                    copy_condition,
                ],
            )?;
            protect::guard(&mut tx, dest, &queue)?;
            log::info!(
                "{}: added {table}{}",
                self.dbname,
                if expect_sync { " (in sync)" } else { "" }
            );
        }
        if !crate::replay::apply::may_set_replica_role(&mut tx)? {
            for (_, dest) in &dest_of {
                crate::replay::apply::check_fk_actions(&mut tx, dest)?;
                crate::replay::apply::warn_fire_on_replay(&mut tx, dest)?;
            }
        }
        tx.commit().context("committing subscriber add")?;
        // From now on the queue keeps every change for this subscriber: events of tables
        // added `--expect-sync` are applied from this point, and copies start from here.
        self.register()
    }

    /// `subscriber resync`: copies `tables` again (their state goes back to new).
    pub fn resync(&mut self, tables: &[String]) -> Result<()> {
        let names = parse_names(tables)?;
        let mut tx = self.subscriber.transaction()?;
        check_installed(&mut tx)?;
        for table in &names {
            let found = tx.execute(
                "update londiste.subscriber_tables set merge_state = null, custom_snapshot = null \
                 where queue_name = $1 and table_name = $2",
                &[&self.queue, &table.qualified()],
            )?;
            if found == 0 {
                return Err(usage(format!(
                    "{table} is not added on the subscriber for queue {}",
                    self.queue
                )));
            }
            log::info!("{}: {table} will be copied again", self.dbname);
        }
        tx.commit().context("committing subscriber resync")
    }

    /// `subscriber missing`: the provider's tables of the queue not added here, one per line.
    pub fn missing(&mut self) -> Result<()> {
        let queue = self.queue.clone();
        let provider_tables = provider_tables(self.provider()?, &queue)?;
        check_installed(&mut self.subscriber)?;
        let here = registered(&mut self.subscriber, &queue)?;
        for table in provider_tables {
            if !here.contains_key(&table.qualified()) {
                output::line(&table.qualified())?;
            }
        }
        Ok(())
    }

    /// `subscriber remove`: stops applying events to `tables`; their data is left alone.
    pub fn remove(&mut self, tables: &[String]) -> Result<()> {
        let names = parse_names(tables)?;
        if names.is_empty() {
            return Err(usage("`subscriber remove` needs at least one table"));
        }
        let mut tx = self.subscriber.transaction()?;
        check_installed(&mut tx)?;
        for table in &names {
            if unregister_table(&mut tx, &self.queue, table)?.is_none() {
                bail!(
                    "{table} is not added on the subscriber for queue {}",
                    self.queue
                );
            }
            log::info!("{}: removed {table}", self.dbname);
        }
        tx.commit().context("committing subscriber remove")
    }

    /// `subscriber skip-execute`: marks the script of that file name so that replay passes
    /// over it when it gets there instead of running it.
    pub fn skip_execute(&mut self, script: &str) -> Result<()> {
        check_installed(&mut self.subscriber)?;
        let mut tx = self.subscriber.transaction()?;
        let before = script_record(&mut tx, &self.queue, script, "subscriber install")?
            .map(|r| (r.status, r.at));
        match before {
            Some((status, at)) if status == "done" => {
                bail!("{script} was executed here at {at}; there is nothing to skip")
            }
            Some((status, at)) if status == "skipped" => {
                log::info!("{}: {script} was skipped here at {at} already", self.dbname);
            }
            Some(_) => log::info!("{}: {script} is marked to be skipped already", self.dbname),
            None => {
                tx.execute(
                    "insert into londiste.executed_scripts (queue_name, file_name, status) \
                     values ($1, $2, 'skip')",
                    &[&self.queue, &script],
                )?;
                log::info!(
                    "{}: replay will pass over {script} when it reaches it",
                    self.dbname
                );
            }
        }
        tx.commit().context("committing subscriber skip-execute")
    }

    /// `subscriber tables`: one row per table, `table_name  merge_state  table_attrs`; the
    /// attributes are `key=value` words: the local table where it differs, the copy
    /// condition, and how far a running copy is ([`Progress::attrs`]).
    pub fn tables(&mut self) -> Result<()> {
        check_installed(&mut self.subscriber)?;
        let progress = Progress::load(&mut self.subscriber, &self.queue)?;
        let rows = self.subscriber.query(
            "select table_name, coalesce(merge_state, 'new'), \
                    case when dest_table <> table_name then dest_table end, copy_condition \
             from londiste.subscriber_tables where queue_name = $1 order by 1",
            &[&self.queue],
        )?;
        let rows: Vec<[String; 3]> = rows
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                let dest: Option<String> = r.get(2);
                let condition: Option<String> = r.get(3);
                let mut attrs: Vec<String> = [("dest_table", dest), ("copy_condition", condition)]
                    .into_iter()
                    .filter_map(|(key, value)| Some(attr(key, &value?)))
                    .collect();
                if let Some(p) = progress.iter().find(|p| p.table == name) {
                    attrs.extend(p.attrs());
                }
                [name, r.get(1), attrs.join(" ")]
            })
            .collect();
        let width = |i: usize, title: &str| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([title.len()])
                .max()
                .unwrap_or(0)
        };
        let (w0, w1) = (width(0, "table_name"), width(1, "merge_state"));
        output::line(&format!(
            "{:w0$}  {:w1$}  table_attrs",
            "table_name", "merge_state"
        ))?;
        output::line(&format!(
            "{}  {}  {}",
            "-".repeat(w0),
            "-".repeat(w1),
            "-".repeat(11)
        ))?;
        for [name, state, attrs] in rows {
            output::line(format!("{name:w0$}  {state:w1$}  {attrs}").trim_end())?;
        }
        Ok(())
    }

    /// `subscriber fkeys` (`kind` `fkey`) and `subscriber triggers` (`trigger`): those set
    /// aside for a copy and not back yet, those in place, or both lists under a title line
    /// each (as Londiste 2 shows them without an argument, read in one snapshot); one per
    /// line, `TABLE  NAME  DEFINITION`.
    pub fn objects(&mut self, kind: &str, lists: Lists) -> Result<()> {
        check_installed(&mut self.subscriber)?;
        let mut tx = self
            .subscriber
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let line = |object: &aside::Object| {
            format!(
                "{}  {}  {}",
                object.table,
                quote_ident(&object.name),
                object.definition
            )
        };
        match lists {
            Lists::Pending | Lists::Active => {
                let objects = if lists == Lists::Active {
                    aside::active(&mut tx, &self.queue, kind)?
                } else {
                    aside::pending(&mut tx, &self.queue, kind)?
                };
                for object in &objects {
                    output::line(&line(object))?;
                }
            }
            Lists::Both => {
                let pending = aside::pending(&mut tx, &self.queue, kind)?;
                let active = aside::active(&mut tx, &self.queue, kind)?;
                for (title, objects) in [("pending", pending), ("active", active)] {
                    output::line(&format!("{title} {kind}s:"))?;
                    if objects.is_empty() {
                        output::line("  (none)")?;
                    }
                    for object in &objects {
                        output::line(&format!("  {}", line(object)))?;
                    }
                }
            }
        }
        tx.commit().context("ending the read of the lists")
    }

    /// `subscriber restore-triggers TABLE [TRIGGER]`: puts the triggers set aside on `table`
    /// (or only `trigger`) back now, whatever the table's state.
    pub fn restore_triggers(&mut self, table: &str, trigger: Option<&str>) -> Result<()> {
        check_installed(&mut self.subscriber)?;
        let names = parse_names(&[table.to_string()])?;
        let dest: Option<String> = self
            .subscriber
            .query_opt(
                "select dest_table from londiste.subscriber_tables \
                 where queue_name = $1 and table_name = $2",
                &[&self.queue, &names[0].qualified()],
            )?
            .map(|row| row.get(0));
        let Some(dest) = dest else {
            return Err(usage(format!(
                "{} is not added on the subscriber for queue {}",
                names[0], self.queue
            )));
        };
        let owner = TableName::from_qualified(&dest)?.quoted();
        let pending: Vec<String> = aside::pending(&mut self.subscriber, &self.queue, "trigger")?
            .into_iter()
            .filter(|o| o.table == owner && trigger.is_none_or(|t| t == o.name))
            .map(|o| o.name)
            .collect();
        if pending.is_empty() {
            bail!(
                "no trigger{} of {dest} is set aside",
                trigger.map(|t| format!(" {t}")).unwrap_or_default()
            );
        }
        for name in pending {
            aside::restore(&mut self.subscriber, &self.queue, "trigger", &owner, &name)?;
        }
        Ok(())
    }

    /// `subscriber register`: registers this job's consumer on the provider queue, once the
    /// subscriber is known to be set up (a consumer nothing reads keeps every event).
    pub fn register(&mut self) -> Result<()> {
        check_installed(&mut self.subscriber)?;
        let (queue, consumer) = (self.queue.clone(), self.consumer.clone());
        crate::capture::provider::check_installed(self.provider()?, &queue)?;
        let n: i32 = self
            .provider()?
            .query_one("select pgq.register_consumer($1, $2)", &[&queue, &consumer])
            .with_context(|| format!("registering consumer {consumer} on queue {queue}"))?
            .get(0);
        log::info!(
            "consumer {consumer} {} on queue {queue}",
            if n == 1 {
                "registered"
            } else {
                "was already registered"
            }
        );
        Ok(())
    }
}

/// `subscriber unregister`: removes the job's consumer, and the copy consumers working for it,
/// from the provider's queue, and then forgets the position applied up to in the subscriber,
/// so that a later registration starts afresh. Refuses while the job's replay runs, and holds
/// the job's lock while it works, so that replay cannot start meanwhile. Works
/// with the subscriber unreachable (a consumer registered by mistake, or whose subscriber is
/// gone, would make the queue keep every event): the subscriber's record is then left, with
/// a warning saying to run this again once it is reachable.
pub fn unregister(job: &Job) -> Result<()> {
    let (queue, consumer) = (&job.queue, &job.consumer);
    let mut subscriber = match db::connect("subscriber_db", &job.subscriber) {
        Ok(client) => Some(client),
        Err(e) => {
            log::warn!("{}", one_line(&e));
            None
        }
    };
    // The job's lock, held by this session until the end, keeps replay from starting (and
    // registering the consumer again) while the job is unregistered.
    if let Some(client) = &mut subscriber
        && !lock::try_hold(client, job)?
    {
        let pid = lock::holder_pid(client, job)?.map_or(String::new(), |pid| {
            format!(" (the subscriber's backend pid {pid} holds its lock)")
        });
        bail!(
            "replay of job {consumer} is running{pid}: stop it first (`skyrep -s CONFIG`, or \
             stop its service)"
        );
    }
    let mut provider = db::connect("provider_db", &job.provider)?;
    let mut tx = provider.transaction()?;
    let copies: Vec<String> = tx
        .query(
            "select consumer_name from pgq.get_consumer_info($1) \
             where pg_catalog.starts_with(consumer_name, $2 || '.copy.')",
            &[queue, consumer],
        )
        .with_context(|| format!("reading the consumers of queue {queue}"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut unregistered = 0;
    for name in copies.iter().chain(std::iter::once(consumer)) {
        let n: i32 = tx
            .query_one("select pgq.unregister_consumer($1, $2)", &[queue, name])
            .with_context(|| format!("unregistering consumer {name} from queue {queue}"))?
            .get(0);
        unregistered += n;
    }
    tx.commit()
        .with_context(|| format!("unregistering consumer {consumer} from queue {queue}"))?;
    log::info!(
        "consumer {consumer} {} queue {queue}{}",
        if unregistered > 0 {
            "unregistered from"
        } else {
            "was not registered on"
        },
        match copies.len() {
            0 => String::new(),
            n => format!(", with its {n} copy consumer(s)"),
        }
    );
    match &mut subscriber {
        Some(client) => {
            if to_regclass(client, "londiste.applied_ticks")? {
                client
                    .execute(
                        "delete from londiste.applied_ticks \
                         where queue_name = $1 and consumer_name = $2",
                        &[queue, consumer],
                    )
                    .context("forgetting the applied position in the subscriber")?;
            }
        }
        None => log::warn!(
            "the subscriber still records the position it applied up to: run `subscriber \
             unregister` again once it can be reached, before registering the job again"
        ),
    }
    Ok(())
}

/// `key=value` for `subscriber tables`; a value that is empty or holds white space, a double
/// quote or a backslash is written in double quotes, with `\"` and `\\` inside.
fn attr(key: &str, value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        return format!("{key}={value}");
    }
    let escaped = value.replace('\\', r"\\").replace('"', r#"\""#);
    format!("{key}=\"{escaped}\"")
}

/// Unregisters `table` (the provider's name) for `queue` and drops the write guard from its
/// destination, whose data stays; returns what the registration was, None if there was none.
pub fn unregister_table(
    tx: &mut impl GenericClient,
    queue: &str,
    table: &TableName,
) -> Result<Option<SubscriberTable>> {
    let Some(registered) = load_tables(tx, queue)?
        .into_iter()
        .find(|t| t.table == *table)
    else {
        return Ok(None);
    };
    tx.execute(
        "delete from londiste.subscriber_tables where queue_name = $1 and table_name = $2",
        &[&queue, &table.qualified()],
    )?;
    let dest = &registered.dest;
    if to_regclass(tx, &dest.quoted())? {
        protect::unguard(tx, dest)?;
    }
    Ok(Some(registered))
}

/// Fails unless `subscriber install` has been run.
pub(crate) fn check_installed(client: &mut impl GenericClient) -> Result<()> {
    if !to_regclass(client, "londiste.subscriber_tables")? {
        bail!("the subscriber database is not set up: run `subscriber install` first");
    }
    Ok(())
}

/// Tables registered on the provider for `queue`.
fn provider_tables(provider: &mut Client, queue: &str) -> Result<Vec<TableName>> {
    if !to_regclass(provider, "londiste.provider_tables")? {
        bail!("the provider database is not set up: run `provider install` first");
    }
    let rows = provider.query(
        "select table_name from londiste.provider_tables where queue_name = $1 order by 1",
        &[&queue],
    )?;
    rows.iter()
        .map(|r| TableName::from_qualified(r.get(0)))
        .collect()
}

/// Tables registered here for `queue`, with their merge state.
fn registered(
    client: &mut impl GenericClient,
    queue: &str,
) -> Result<BTreeMap<String, Option<String>>> {
    let rows = client.query(
        "select table_name, merge_state from londiste.subscriber_tables where queue_name = $1",
        &[&queue],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Whether a relation named `table` exists (of any kind: [`check_table`] says what is wrong
/// with one that is not a table with a primary key).
fn exists(client: &mut impl GenericClient, table: &TableName) -> Result<bool> {
    Ok(client
        .query_opt(
            "select 1 from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2",
            &[&table.schema, &table.name],
        )?
        .is_some())
}

/// `--create`: creates `dest` on the subscriber with the columns (names, types, NOT NULL) and
/// primary key of the provider's `table`. Types of the user's own (enums, domains) must exist
/// on the subscriber already; defaults, other constraints and indexes are not copied.
fn create_like(
    tx: &mut impl GenericClient,
    provider: &mut impl GenericClient,
    table: &TableName,
    dest: &TableName,
) -> Result<()> {
    let rows = provider
        .query(
            "select a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod), \
                    a.attnotnull, \
                    coalesce(a.attnum = any(i.indkey::int2[]), false) \
             from pg_catalog.pg_attribute a \
             join pg_catalog.pg_class c on c.oid = a.attrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             left join pg_catalog.pg_index i on i.indrelid = c.oid and i.indisprimary \
             where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped \
             order by a.attnum",
            &[&table.schema, &table.name],
        )
        .with_context(|| format!("reading the definition of {table} on the provider"))?;
    let mut columns = Vec::new();
    let mut key = Vec::new();
    for row in &rows {
        let (name, kind, not_null, in_key): (String, String, bool, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let null = if not_null { " not null" } else { "" };
        columns.push(format!("{} {kind}{null}", quote_ident(&name)));
        if in_key {
            key.push(quote_ident(&name));
        }
    }
    tx.batch_execute(&format!(
        "create schema if not exists {}; create table {} ({}, primary key ({}))",
        quote_ident(&dest.schema),
        dest.quoted(),
        columns.join(", "),
        key.join(", ")
    ))
    .with_context(|| format!("creating {dest} like the provider's {table}"))
}

/// Column name → type, in column order (empty if the table does not exist).
pub fn columns(
    client: &mut impl GenericClient,
    table: &TableName,
) -> Result<Vec<(String, String)>> {
    let rows = client.query(
        "select a.attname::text, pg_catalog.format_type(a.atttypid, a.atttypmod) \
         from pg_catalog.pg_attribute a \
         join pg_catalog.pg_class c on c.oid = a.attrelid \
         join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = $1 and c.relname = $2 and a.attnum > 0 and not a.attisdropped \
         order by a.attnum",
        &[&table.schema, &table.name],
    )?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// What differs between the provider's and the subscriber's columns, for an error.
fn compare_columns(provider: &[(String, String)], subscriber: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, ty) in provider {
        match subscriber.iter().find(|(n, _)| n == name) {
            None => out.push(format!("column {name} is missing on the subscriber")),
            Some((_, theirs)) if theirs != ty => {
                out.push(format!(
                    "column {name} is {ty} on the provider but {theirs} on the subscriber"
                ));
            }
            Some(_) => {}
        }
    }
    for (name, _) in subscriber {
        if !provider.iter().any(|(n, _)| n == name) {
            out.push(format!("column {name} exists only on the subscriber"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{attr, compare_columns};

    #[test]
    fn attributes_quote_what_would_split_them() {
        assert_eq!(attr("dest_table", "other.t"), "dest_table=other.t");
        assert_eq!(
            attr("copy_condition", r#"id > 0 and v <> '"x\'"#),
            r#"copy_condition="id > 0 and v <> '\"x\\'""#
        );
        assert_eq!(attr("copy_condition", ""), r#"copy_condition="""#);
        assert_eq!(attr("dest_table", "a.Tab\tle"), "dest_table=\"a.Tab\tle\"");
    }

    #[test]
    fn column_differences_are_listed() {
        let p = vec![
            ("id".to_string(), "integer".to_string()),
            ("a".to_string(), "text".to_string()),
        ];
        let s = vec![
            ("id".to_string(), "bigint".to_string()),
            ("b".to_string(), "text".to_string()),
        ];
        assert_eq!(
            compare_columns(&p, &s),
            [
                "column id is integer on the provider but bigint on the subscriber",
                "column a is missing on the subscriber",
                "column b exists only on the subscriber",
            ]
        );
        assert!(compare_columns(&p, &p).is_empty());
    }
}
