//! pgqadm's commands on a ticker config (SPEC §9): `status`, `create`, `drop`, `register`,
//! `unregister` and `config`, for Londiste 2 users who ran `pgqadm.py ticker.ini COMMAND`.
//!
//! A ticker config names `db` (or `base_connstr`) and no `provider_db`, `subscriber_db` or
//! queue ([`is_ticker_config`]). Every command acts on the one database `db` names, through
//! PgQ 3's SQL API only (`pgq.create_queue`, `pgq.drop_queue`, `pgq.register_consumer`,
//! `pgq.unregister_consumer`, `pgq.set_queue_config`, `pgq.get_queue_info`,
//! `pgq.get_consumer_info`), so they work the same where real PgQ is installed. Queue and
//! consumer names travel as bind parameters, never inside SQL text.
//!
//! Where pgqadm stays silent, these say what happened: `create` of a queue that exists and
//! `register` of a consumer that is registered change nothing and say so; `unregister` of a
//! consumer that is not registered, and any command on a queue that does not exist, fail
//! naming what is there. `drop` refuses while the queue has consumers, as PgQ does, unless
//! `--force` unregisters them first. `config QUEUE KEY=VALUE...` checks every value before it
//! changes anything, then sets them all in one transaction.
//!
//! Looking (`status`, `config` without settings) needs only what PgQ grants PUBLIC; `create`,
//! `drop` and setting need `pgq_admin`, `register` and `unregister` `pgq_reader` (or the roles
//! the config names), and a refusal says which.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use postgres::error::SqlState;
use postgres::{Client, GenericClient, IsolationLevel};
use serde_json::{Value, json};

use super::privileges::Roles;
use crate::base::error::usage;
use crate::base::output::{self, number, rounded, seconds};
use crate::config::Config;
use crate::db;
use crate::db::connstr::Resolved;
use crate::queue::consumer::{ConsumerInfo, consumer_info};

/// What kind of value a queue setting takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A whole number of at least 1.
    Count,
    /// A duration: seconds (`0.5`) or a PostgreSQL interval (`2 hours`).
    Seconds,
    /// On or off.
    Switch,
}

/// A queue setting `config` shows and sets, named as `pgq.set_queue_config` takes it (the
/// `pgq.queue` column without its `queue_` prefix).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The name without `queue_`.
    pub name: &'static str,
    /// Its kind of value.
    pub kind: Kind,
}

/// Every queue setting, in the order `config` shows them.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "ticker_max_count",
        kind: Kind::Count,
    },
    Setting {
        name: "ticker_max_lag",
        kind: Kind::Seconds,
    },
    Setting {
        name: "ticker_idle_period",
        kind: Kind::Seconds,
    },
    Setting {
        name: "rotation_period",
        kind: Kind::Seconds,
    },
    Setting {
        name: "ticker_paused",
        kind: Kind::Switch,
    },
    Setting {
        name: "external_ticker",
        kind: Kind::Switch,
    },
];

/// The setting `key` names, with or without the `queue_` prefix, in any case.
pub fn setting(key: &str) -> Option<&'static Setting> {
    let key = key.to_ascii_lowercase();
    let key = key.strip_prefix("queue_").unwrap_or(&key);
    SETTINGS.iter().find(|s| s.name == key)
}

/// The names of every setting, for messages.
pub fn setting_names() -> String {
    SETTINGS
        .iter()
        .map(|s| s.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `config` is a ticker config: it names no `provider_db`, `subscriber_db` or queue,
/// and names `db` or `base_connstr`, or is a `[pgqadm]` or `[pgqd]` file.
pub fn is_ticker_config(config: &Config) -> Result<bool> {
    let set = |key: &str| -> Result<bool> { Ok(config.text(key)?.is_some_and(|v| !v.is_empty())) };
    if set("provider_db")? || set("subscriber_db")? || set("pgq_queue_name")? {
        return Ok(false);
    }
    Ok(set("db")?
        || set("base_connstr")?
        || ["pgqadm", "pgqd"]
            .iter()
            .any(|s| config.section().eq_ignore_ascii_case(s)))
}

/// The database of a ticker config, connected.
struct Db {
    client: Client,
    conn: Resolved,
    /// PgQ's roles, as the config names them, for messages.
    roles: Roles,
}

impl Db {
    /// Connects to `db` of `config` for `command`; a usage error when `config` is not a
    /// ticker config with `db`.
    fn open(config: &Config, command: &str) -> Result<Db> {
        let path = config.path().display();
        if !is_ticker_config(config)? {
            let register = if command.contains("register") {
                " (`subscriber register` and `subscriber unregister` manage this job's own consumer)"
            } else {
                ""
            };
            return Err(usage(format!(
                "{path}: `{command}` is a pgqadm command for a ticker config (`db`, without \
                 provider_db, subscriber_db or pgq_queue_name); to run it on the provider's \
                 queues, write one whose `db` is the provider database{register}"
            )));
        }
        let conn = config.connstr("db")?.ok_or_else(|| {
            usage(format!(
                "{path}: `{command}` acts on one database: set `db` (base_connstr only names \
                 the server whose databases the ticker ticks)"
            ))
        })?;
        let conn = conn
            .resolve_from_env(&format!("skyrep/{}", config.job_name()?))
            .context("db: bad connection string")?;
        let mut client = db::connect("db", &conn)?;
        // What PUBLIC may call is enough to look.
        let installed: bool = client
            .query_one(
                "select pg_catalog.to_regprocedure('pgq.get_queue_info()') is not null",
                &[],
            )
            .context("looking for pgq")?
            .get(0);
        if !installed {
            bail!("{}: pgq is not installed: run `install` first", conn.dbname);
        }
        Ok(Db {
            client,
            conn,
            roles: Roles::from_config(config)?,
        })
    }

    /// The database's name, for messages.
    fn name(&self) -> &str {
        &self.conn.dbname
    }
}

/// `err`, saying that the role lacks `role` when the server refused it the privilege.
fn needs(role: &str) -> impl FnOnce(postgres::Error) -> anyhow::Error + '_ {
    move |err| {
        let denied = err.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE);
        let err = anyhow::Error::new(err);
        if denied {
            err.context(format!("this role needs {role}"))
        } else {
            err
        }
    }
}

/// The names of every queue, by name.
fn queue_names(client: &mut impl GenericClient) -> Result<Vec<String>> {
    let rows = client
        .query(
            "select queue_name from pgq.get_queue_info() order by 1",
            &[],
        )
        .context("listing the queues")?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The consumers of `queue`, by name.
fn consumer_names(client: &mut impl GenericClient, queue: &str) -> Result<Vec<String>> {
    let rows = client
        .query(
            "select consumer_name from pgq.get_consumer_info($1) order by 1",
            &[&queue],
        )
        .with_context(|| format!("listing the consumers of queue `{queue}`"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// `a`, `b`, `c` for a message.
fn listed(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Fails unless `queue` exists in the database called `db`, naming those that do.
fn require_queue(client: &mut impl GenericClient, db: &str, queue: &str) -> Result<()> {
    let names = queue_names(client)?;
    if names.iter().any(|n| n == queue) {
        return Ok(());
    }
    if names.is_empty() {
        bail!("{db}: no queue `{queue}`: there are no queues (`create QUEUE` makes one)");
    }
    bail!("{db}: no queue `{queue}` (queues: {})", listed(&names));
}

/// `create QUEUE`: creates the queue with PgQ's default settings.
pub fn create(config: &Config, queue: &str) -> Result<()> {
    let mut db = Db::open(config, "create")?;
    let created: i32 = db
        .client
        .query_one("select pgq.create_queue($1)", &[&queue])
        .map_err(needs(&db.roles.admin))
        .with_context(|| format!("{}: creating queue `{queue}`", db.name()))?
        .get(0);
    if created == 1 {
        log::info!("{}: queue `{queue}` created", db.name());
    } else {
        log::info!(
            "{}: queue `{queue}` exists already; nothing changed",
            db.name()
        );
    }
    Ok(())
}

/// `drop QUEUE [--force]`: drops the queue with its events. Refuses while consumers are
/// registered, unless `force`, which unregisters them first.
pub fn drop_queue(config: &Config, queue: &str, force: bool) -> Result<()> {
    let mut db = Db::open(config, "drop")?;
    let name = db.name().to_string();
    let mut tx = db.client.transaction().context("starting a transaction")?;
    require_queue(&mut tx, &name, queue)?;
    let consumers = consumer_names(&mut tx, queue)?;
    if !consumers.is_empty() && !force {
        bail!(
            "{name}: queue `{queue}` still has consumers {}: unregister them first \
             (`unregister QUEUE CONSUMER`), or drop with --force",
            listed(&consumers)
        );
    }
    tx.query_one("select pgq.drop_queue($1, $2)", &[&queue, &force])
        .map_err(needs(&db.roles.admin))
        .with_context(|| format!("{name}: dropping queue `{queue}`"))?;
    tx.commit()
        .with_context(|| format!("{name}: committing the drop of queue `{queue}`"))?;
    if consumers.is_empty() {
        log::info!("{name}: queue `{queue}` dropped");
    } else {
        log::info!(
            "{name}: queue `{queue}` dropped with its consumers {}",
            listed(&consumers)
        );
    }
    Ok(())
}

/// `register QUEUE CONSUMER`: registers the consumer at the queue's latest tick.
pub fn register(config: &Config, queue: &str, consumer: &str) -> Result<()> {
    let mut db = Db::open(config, "register")?;
    let name = db.name().to_string();
    require_queue(&mut db.client, &name, queue)?;
    let registered: i32 = db
        .client
        .query_one("select pgq.register_consumer($1, $2)", &[&queue, &consumer])
        .map_err(needs(&db.roles.reader))
        .with_context(|| format!("{name}: registering consumer `{consumer}` on queue `{queue}`"))?
        .get(0);
    if registered == 1 {
        log::info!("{name}: consumer `{consumer}` registered on queue `{queue}`");
    } else {
        log::info!(
            "{name}: consumer `{consumer}` was registered on queue `{queue}` already; its position is kept"
        );
    }
    Ok(())
}

/// `unregister QUEUE CONSUMER`: removes the consumer from the queue, with its retry events.
pub fn unregister(config: &Config, queue: &str, consumer: &str) -> Result<()> {
    let mut db = Db::open(config, "unregister")?;
    let name = db.name().to_string();
    let mut tx = db.client.transaction().context("starting a transaction")?;
    require_queue(&mut tx, &name, queue)?;
    let removed: i32 = tx
        .query_one(
            "select pgq.unregister_consumer($1, $2)",
            &[&queue, &consumer],
        )
        .map_err(needs(&db.roles.reader))
        .with_context(|| {
            format!("{name}: unregistering consumer `{consumer}` from queue `{queue}`")
        })?
        .get(0);
    if removed == 0 {
        let consumers = consumer_names(&mut tx, queue)?;
        let there = if consumers.is_empty() {
            "it has no consumers".to_string()
        } else {
            format!("its consumers: {}", listed(&consumers))
        };
        bail!("{name}: consumer `{consumer}` is not registered on queue `{queue}` ({there})");
    }
    tx.commit()
        .with_context(|| format!("{name}: committing the unregistration"))?;
    log::info!("{name}: consumer `{consumer}` unregistered from queue `{queue}`");
    Ok(())
}

/// One queue's settings as `config` shows them.
struct QueueSettings {
    name: String,
    /// In the order of [`SETTINGS`], as `config QUEUE KEY=VALUE` takes them back.
    values: Vec<String>,
}

/// The settings of `queue`, or of every queue.
fn read_settings(
    client: &mut impl GenericClient,
    queue: Option<&str>,
) -> Result<Vec<QueueSettings>> {
    let rows = client
        .query(
            "select queue_name, queue_ticker_max_count::int8, \
                    extract(epoch from queue_ticker_max_lag)::float8, \
                    extract(epoch from queue_ticker_idle_period)::float8, \
                    extract(epoch from queue_rotation_period)::float8, \
                    queue_ticker_paused, queue_external_ticker \
             from pgq.get_queue_info() \
             where $1::text is null or queue_name = $1 \
             order by queue_name",
            &[&queue],
        )
        .context("reading the queue settings")?;
    let switch = |on: bool| if on { "on" } else { "off" }.to_string();
    rows.iter()
        .map(|r| {
            Ok(QueueSettings {
                name: r.try_get(0)?,
                values: vec![
                    r.try_get::<_, i64>(1)?.to_string(),
                    r.try_get::<_, f64>(2)?.to_string(),
                    r.try_get::<_, f64>(3)?.to_string(),
                    r.try_get::<_, f64>(4)?.to_string(),
                    switch(r.try_get(5)?),
                    switch(r.try_get(6)?),
                ],
            })
        })
        .collect()
}

/// The text of `config`: each queue's name, then one `KEY = VALUE` line per setting.
fn settings_text(queues: &[QueueSettings]) -> String {
    let mut out = String::new();
    for (i, queue) in queues.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let _ = writeln!(out, "Queue {}", queue.name);
        for (setting, value) in SETTINGS.iter().zip(&queue.values) {
            let _ = writeln!(out, "  {} = {value}", setting.name);
        }
    }
    out
}

/// `config [QUEUE]`: shows the settings of `queue`, or of every queue.
pub fn show_config(config: &Config, queue: Option<&str>) -> Result<()> {
    let mut db = Db::open(config, "config")?;
    let name = db.name().to_string();
    if let Some(queue) = queue {
        require_queue(&mut db.client, &name, queue)?;
    }
    let queues = read_settings(&mut db.client, queue)?;
    if queues.is_empty() {
        log::info!("{name}: there are no queues (`create QUEUE` makes one)");
    }
    output::text(&settings_text(&queues))
}

/// `config QUEUE KEY=VALUE...`: checks every value, then sets them all in one transaction
/// through `pgq.set_queue_config`, and shows the queue's settings as they are now. A bad
/// value is a usage error and nothing changes.
pub fn set_config(config: &Config, queue: &str, changes: &[(&Setting, String)]) -> Result<()> {
    let mut db = Db::open(config, "config")?;
    let name = db.name().to_string();
    let mut tx = db.client.transaction().context("starting a transaction")?;
    require_queue(&mut tx, &name, queue)?;
    for (setting, value) in changes {
        check_value(&mut tx, setting, value).with_context(|| format!("{name}: queue `{queue}`"))?;
    }
    for (setting, value) in changes {
        tx.query_one(
            "select pgq.set_queue_config($1, $2, $3)",
            &[&queue, &setting.name, value],
        )
        .map_err(needs(&db.roles.admin))
        .with_context(|| {
            format!(
                "{name}: setting {} of queue `{queue}` to `{value}`",
                setting.name
            )
        })?;
    }
    let now = read_settings(&mut tx, Some(queue))?;
    tx.commit()
        .with_context(|| format!("{name}: committing the settings of queue `{queue}`"))?;
    log::info!(
        "{name}: queue `{queue}`: set {}",
        changes
            .iter()
            .map(|(s, v)| format!("{}={v}", s.name))
            .collect::<Vec<_>>()
            .join(" ")
    );
    output::text(&settings_text(&now))
}

/// Asks the server whether `value` is good for `setting`; a usage error naming both when it
/// is not.
fn check_value(client: &mut impl GenericClient, setting: &Setting, value: &str) -> Result<()> {
    let (sql, wanted) = match setting.kind {
        Kind::Count => ("select $1::text::int4 >= 1", "a whole number of at least 1"),
        Kind::Seconds => (
            "select $1::text::interval >= interval '0'",
            "seconds (e.g. 0.5) or an interval (e.g. 2 hours), not negative",
        ),
        Kind::Switch => ("select $1::text::bool is not null", "on or off"),
    };
    let bad = || {
        usage(format!(
            "bad value `{value}` for {}: expected {wanted}",
            setting.name
        ))
    };
    let ok: bool = match client.query_one(sql, &[&value]) {
        Ok(row) => row.get(0),
        // Class 22: the server could not read the text as that type.
        Err(e) if e.code().is_some_and(|c| c.code().starts_with("22")) => return Err(bad()),
        Err(e) => return Err(e).context("checking the value"),
    };
    if ok { Ok(()) } else { Err(bad()) }
}

/// A queue as `status` shows it (`pgq.get_queue_info`).
struct QueueStatus {
    name: String,
    last_tick: Option<i64>,
    ticker_lag: Option<f64>,
    events_per_sec: Option<f64>,
    /// Events not yet ticked.
    new_events: Option<i64>,
    paused: bool,
    external: bool,
    consumers: Vec<ConsumerInfo>,
}

impl QueueStatus {
    /// What `consumer` has yet to read: the events ticked since its position and those not
    /// yet ticked.
    fn pending(&self, consumer: &ConsumerInfo) -> Option<i64> {
        Some(consumer.pending_events? + self.new_events?)
    }

    /// What the consumer furthest behind has yet to read (without consumers: the events
    /// not yet ticked).
    fn pending_most(&self) -> Option<i64> {
        let ticked = self
            .consumers
            .iter()
            .map(|c| c.pending_events)
            .try_fold(0, |most, t| t.map(|t| most.max(t)))?;
        Some(ticked + self.new_events?)
    }
}

/// Everything `status` shows.
struct Status {
    db: String,
    server_version: String,
    pgq: String,
    queues: Vec<QueueStatus>,
}

/// `status [--json] [--max-lag SECONDS]` on a ticker config: every queue of `db` with its
/// ticker and its consumers, with lag and pending events; with `max_lag`, fails after
/// printing when a consumer's lag is over it while events wait for it.
pub fn status(config: &Config, json: bool, max_lag: Option<Duration>) -> Result<()> {
    let mut db = Db::open(config, "status")?;
    let status = read_status(&mut db)?;
    if json {
        let text = serde_json::to_string_pretty(&status.json()).context("writing JSON")?;
        output::line(&text)?;
    } else {
        output::text(&status.text())?;
    }
    let Some(limit) = max_lag.map(|d| d.as_secs_f64()) else {
        return Ok(());
    };
    let behind: Vec<String> = status
        .queues
        .iter()
        .flat_map(|q| q.consumers.iter().map(move |c| (q, c)))
        .filter(|(q, c)| c.behind(q.pending(c)).is_none_or(|lag| lag > limit))
        .map(|(q, c)| format!("{} on {} ({})", c.name, q.name, seconds(c.lag)))
        .collect();
    if !behind.is_empty() {
        bail!(
            "lag over --max-lag {}: {}",
            seconds(Some(limit)),
            behind.join(", ")
        );
    }
    Ok(())
}

fn read_status(db: &mut Db) -> Result<Status> {
    let name = db.name().to_string();
    let describe = db.conn.describe();
    // One snapshot, so that queues and consumers agree.
    let mut tx = db
        .client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .context("starting a transaction")?;
    let row = tx
        .query_one(
            "select pg_catalog.current_setting('server_version'), \
                    pg_catalog.to_regprocedure('pgq.version()') is not null, \
                    pg_catalog.to_regprocedure('pgq.skyrep_schema_version()') is not null, \
                    (select extversion from pg_catalog.pg_extension where extname = 'pgq')",
            &[],
        )
        .context("reading the versions")?;
    let (server_version, has_version, ours, extension): (String, bool, bool, Option<String>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let version: Option<String> = match extension {
        Some(v) => Some(v),
        None if has_version => tx
            .query_one("select pgq.version()", &[])
            .context("reading pgq.version()")?
            .get(0),
        None => None,
    };
    let version = version.unwrap_or_else(|| "3".to_string());
    let pgq = if ours {
        format!("pgq {version} (skyrep's)")
    } else {
        format!("PgQ {version}")
    };
    let mut queues: Vec<QueueStatus> = tx
        .query(
            "select queue_name, last_tick_id, extract(epoch from ticker_lag)::float8, \
                    ev_per_sec, ev_new, queue_ticker_paused, queue_external_ticker \
             from pgq.get_queue_info() order by queue_name",
            &[],
        )
        .with_context(|| format!("{name}: reading the queues"))?
        .iter()
        .map(|r| QueueStatus {
            name: r.get(0),
            last_tick: r.get(1),
            ticker_lag: r.get(2),
            events_per_sec: r.get(3),
            new_events: r.get(4),
            paused: r.get(5),
            external: r.get(6),
            consumers: Vec::new(),
        })
        .collect();
    for consumer in
        consumer_info(&mut tx, None).with_context(|| format!("{name}: reading the consumers"))?
    {
        if let Some(q) = queues.iter_mut().find(|q| q.name == consumer.queue) {
            q.consumers.push(consumer);
        }
    }
    tx.commit().context("ending the read")?;
    Ok(Status {
        db: describe,
        server_version,
        pgq,
        queues,
    })
}

impl Status {
    fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Database: {}", self.db);
        let _ = writeln!(out, "PostgreSQL {}, {}", self.server_version, self.pgq);
        if self.queues.is_empty() {
            let _ = writeln!(out, "\nNo queues (`create QUEUE` makes one)");
        }
        for q in &self.queues {
            let mut ticker = format!(
                "Tick: {}, Ticker lag: {}, {} events/s, Pending: {} events ({} not yet ticked)",
                number(q.last_tick),
                seconds(q.ticker_lag),
                q.events_per_sec
                    .map_or("?".to_string(), |r| format!("{r:.1}")),
                number(q.pending_most()),
                number(q.new_events)
            );
            if q.paused {
                ticker.push_str(", ticker paused");
            }
            if q.external {
                ticker.push_str(", external ticker");
            }
            let _ = writeln!(out, "\nQueue {}: {ticker}", q.name);
            if q.consumers.is_empty() {
                let _ = writeln!(out, "  No consumers (`register QUEUE CONSUMER` adds one)");
            }
            for c in &q.consumers {
                let mut line = format!(
                    "  Consumer {}: Lag: {}, Last seen: {} ago, Tick: {}, Pending: {} events",
                    c.name,
                    seconds(c.lag),
                    seconds(c.last_seen),
                    number(c.last_tick),
                    number(q.pending(c))
                );
                if let Some(batch) = c.current_batch {
                    let _ = write!(line, ", in batch {batch}");
                }
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }

    fn json(&self) -> Value {
        let queues: Vec<Value> = self
            .queues
            .iter()
            .map(|q| {
                let consumers: Vec<Value> = q
                    .consumers
                    .iter()
                    .map(|c| {
                        json!({
                            "name": c.name,
                            "lag": c.lag.map(rounded),
                            "last_seen": c.last_seen.map(rounded),
                            "last_tick": c.last_tick,
                            "current_batch": c.current_batch,
                            "next_tick": c.next_tick,
                            "pending_events": q.pending(c),
                        })
                    })
                    .collect();
                json!({
                    "name": q.name,
                    "last_tick": q.last_tick,
                    "ticker_lag": q.ticker_lag.map(rounded),
                    "events_per_sec": q.events_per_sec.map(rounded),
                    "new_events": q.new_events,
                    "pending_events": q.pending_most(),
                    "ticker_paused": q.paused,
                    "external_ticker": q.external,
                    "consumers": consumers,
                })
            })
            .collect();
        json!({
            "db": self.db,
            "server_version": self.server_version,
            "pgq": self.pgq,
            "queues": queues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(Path::new("/etc/skyrep/t.ini"), text).unwrap()
    }

    #[test]
    fn settings_are_named_with_or_without_the_queue_prefix() {
        assert_eq!(setting("ticker_max_lag").unwrap().kind, Kind::Seconds);
        assert_eq!(
            setting("queue_ticker_max_count").unwrap().name,
            "ticker_max_count"
        );
        assert_eq!(setting("Queue_Ticker_Paused").unwrap().kind, Kind::Switch);
        assert_eq!(setting("queue_name"), None);
        assert_eq!(setting("queue_queue_ticker_max_lag"), None);
        assert_eq!(setting(""), None);
    }

    #[test]
    fn ticker_configs_are_told_from_replication_configs() {
        for text in [
            "[pgqadm]\ndb = dbname=x\n",
            "[skyrep]\ndb = dbname=x\n",
            "[pgqd]\n",
            "[pgqadm]\n",
            "[skyrep]\nbase_connstr = host=h\n",
        ] {
            assert!(is_ticker_config(&config(text)).unwrap(), "{text}");
        }
        for text in [
            "[skyrep]\n",
            "[londiste]\nprovider_db = dbname=a\nsubscriber_db = dbname=b\npgq_queue_name = q\n",
            "[londiste3]\ndb = dbname=x\nqueue_name = q\n",
            "[pgqadm]\ndb = dbname=x\nsubscriber_db = dbname=y\n",
        ] {
            assert!(!is_ticker_config(&config(text)).unwrap(), "{text}");
        }
    }

    #[test]
    fn a_queue_is_as_far_behind_as_its_slowest_consumer() {
        let consumer = |pending_events| ConsumerInfo {
            queue: "q".into(),
            name: "c".into(),
            lag: None,
            last_seen: None,
            last_tick: None,
            current_batch: None,
            next_tick: None,
            pending_events,
        };
        let mut q = QueueStatus {
            name: "q".into(),
            last_tick: Some(3),
            ticker_lag: None,
            events_per_sec: None,
            new_events: Some(2),
            paused: false,
            external: false,
            consumers: Vec::new(),
        };
        assert_eq!(q.pending_most(), Some(2), "no consumers: not yet ticked");
        q.consumers = vec![consumer(Some(5)), consumer(Some(1))];
        assert_eq!(q.pending(&q.consumers[1]), Some(3));
        assert_eq!(q.pending_most(), Some(7));
        q.consumers.push(consumer(None));
        assert_eq!(q.pending_most(), None);
    }

    #[test]
    fn settings_read_back_as_config_takes_them() {
        let text = settings_text(&[
            QueueSettings {
                name: "a b".into(),
                values: ["500", "0.5", "60", "7200", "off", "on"]
                    .map(String::from)
                    .to_vec(),
            },
            QueueSettings {
                name: "c".into(),
                values: ["1", "3", "60", "7200", "off", "off"]
                    .map(String::from)
                    .to_vec(),
            },
        ]);
        assert!(
            text.starts_with(
                "Queue a b\n  ticker_max_count = 500\n  ticker_max_lag = 0.5\n  \
                 ticker_idle_period = 60\n  rotation_period = 7200\n  ticker_paused = off\n  \
                 external_ticker = on\n\nQueue c\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn durations_read_like_londiste() {
        assert_eq!(seconds(None), "?");
        assert_eq!(seconds(Some(0.04)), "0.0s");
        assert_eq!(seconds(Some(303.0)), "5m3s");
        assert_eq!(seconds(Some(7842.4)), "2h10m42s");
    }
}
