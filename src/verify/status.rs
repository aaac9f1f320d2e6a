//! `status [--json]`: the queue, its ticker, every consumer of the queue as a tree under the
//! provider, and for this subscriber its tables by state and the last error of its threads.
//!
//! The provider's `pgq.get_queue_info` and `pgq.get_consumer_info` give the ticker and the
//! consumers (lag, last tick, pending events); the subscriber's `londiste.subscriber_tables`,
//! `londiste.applied_ticks`, `londiste.replay_status` and `londiste.copy_progress` give the
//! rest. A copy thread's
//! temporary consumer (`CONSUMER.copy.SCHEMA.TABLE`) is shown under the node it works for.
//! When one side cannot be read, the other is still shown, that side is marked with its error,
//! and the command fails (exit code 1) after printing.
//!
//! Whether replay runs is the job's lock in the subscriber ([`lock::holder_pid`]): held exactly
//! while a process runs the job, and let go by the server when that process dies, whatever
//! killed it. Its heartbeat row (`londiste.replay_daemons`) says which process, and when it
//! was last seen. `status` fails after printing while replay does not run, and, with
//! `--max-lag`, while this subscriber's lag is over the limit with events waiting, so that
//! monitoring can use the exit code alone. Events not yet ticked count as pending, and a
//! consumer that has not read for an hour is marked stale: the queue keeps every event for it.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use postgres::Client;
use serde_json::{Value, json};

use crate::base::error::one_line;
use crate::base::output::{self, number, rounded, seconds};
use crate::config::Config;
use crate::db;
use crate::queue::consumer::{ConsumerInfo, consumer_info};
use crate::replay::apply::{fire_on_replay, may_set_replica_role};
use crate::replay::job::Job;
use crate::replay::lock;
use crate::replay::progress::Progress;
use crate::replay::session::Thread;
use crate::replay::state::{MergeState, load_tables};

/// A consumer that has not read for this long is stale.
const STALE_AFTER: f64 = 3600.0;

/// A heartbeat older than this while the lock is held: the replay thread has been busy with
/// one batch for that long, or is stuck.
const STALE_BEAT: f64 = 60.0;

/// No tick for this long past the queue's `ticker_max_lag` while events wait: the ticker does
/// not seem to run.
const TICKER_SLACK: f64 = 10.0;

/// Runs `status`: prints the report as text or, with `json`, as one JSON object; fails after
/// printing when a database could not be read, replay does not run, or (with `max_lag`,
/// seconds) this subscriber's lag is over `max_lag` while events wait for it.
pub fn run(config: &Config, json: bool, max_lag: Option<Duration>) -> Result<()> {
    let job = Job::from_config(config)?;
    let report = Report {
        provider: read_side("provider_db", &job.provider, |c| read_provider(c, &job)),
        subscriber: read_side("subscriber_db", &job.subscriber, |c| {
            read_subscriber(c, &job)
        }),
        job,
        max_lag: max_lag.map(|d| d.as_secs_f64()),
    };
    if json {
        let text = serde_json::to_string_pretty(&report.json()).context("writing JSON")?;
        output::line(&text)?;
    } else {
        output::text(&report.text())?;
    }
    let mut failed: Vec<String> = [report.provider.error(), report.subscriber.error()]
        .into_iter()
        .flatten()
        .map(str::to_string)
        .collect();
    failed.extend(report.problems());
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// What could be learnt from one database.
enum Side<T> {
    /// Read.
    Read(T),
    /// No connection (the error, one line).
    Unreachable(String),
    /// Connected, but reading failed (the error, one line).
    Failed(String),
}

impl<T> Side<T> {
    fn read(&self) -> Option<&T> {
        match self {
            Side::Read(info) => Some(info),
            _ => None,
        }
    }

    fn error(&self) -> Option<&str> {
        match self {
            Side::Read(_) => None,
            Side::Unreachable(e) | Side::Failed(e) => Some(e),
        }
    }

    /// The side's own line when it could not be read.
    fn error_line(&self) -> Option<String> {
        match self {
            Side::Read(_) => None,
            Side::Unreachable(e) => Some(format!("UNREACHABLE: {e}")),
            Side::Failed(e) => Some(format!("ERROR: {e}")),
        }
    }
}

/// Connects to `conn` (called `name`) and reads it with `read`.
fn read_side<T>(
    name: &str,
    conn: &crate::db::connstr::Resolved,
    read: impl FnOnce(&mut Client) -> Result<T>,
) -> Side<T> {
    match db::connect(name, conn) {
        Err(e) => Side::Unreachable(one_line(&e)),
        Ok(mut client) => match read(&mut client) {
            Ok(info) => Side::Read(info),
            Err(e) => Side::Failed(one_line(&e.context(format!("reading {name}")))),
        },
    }
}

/// The provider's view: its tables, the ticker and every consumer of the queue.
struct ProviderInfo {
    /// Tables registered for the queue (unknown without skyrep's `londiste` schema there).
    tables: Option<i64>,
    ticker: Ticker,
    consumers: Vec<ConsumerInfo>,
}

/// `pgq.get_queue_info`.
struct Ticker {
    last_tick: Option<i64>,
    lag: Option<f64>,
    events_per_sec: Option<f64>,
    /// Events not yet ticked.
    new_events: Option<i64>,
    paused: Option<bool>,
    /// The queue's `ticker_max_lag`, seconds.
    max_lag: Option<f64>,
}

impl Ticker {
    /// Seconds without a tick while events wait, where that is past what the queue allows:
    /// the ticker does not seem to run.
    fn stalled(&self) -> Option<f64> {
        let (lag, new) = (self.lag?, self.new_events?);
        (new > 0 && self.paused != Some(true) && lag > self.max_lag? + TICKER_SLACK).then_some(lag)
    }
}

fn read_provider(client: &mut Client, job: &Job) -> Result<ProviderInfo> {
    let row = client.query_one(
        "select pg_catalog.to_regprocedure('pgq.get_queue_info(text)') is not null, \
                pg_catalog.to_regclass('londiste.provider_tables') is not null",
        &[],
    )?;
    let (has_pgq, has_londiste): (bool, bool) = (row.get(0), row.get(1));
    if !has_pgq {
        bail!("pgq is not installed: run `provider install`");
    }
    let queue = &job.queue;
    let row = client
        .query_opt(
            "select last_tick_id, extract(epoch from ticker_lag)::float8, ev_per_sec, ev_new, \
                    queue_ticker_paused, extract(epoch from queue_ticker_max_lag)::float8 \
             from pgq.get_queue_info($1)",
            &[queue],
        )
        .with_context(|| format!("reading queue {queue}"))?
        .with_context(|| format!("queue {queue} does not exist: run `provider install`"))?;
    let ticker = Ticker {
        last_tick: row.get(0),
        lag: row.get(1),
        events_per_sec: row.get(2),
        new_events: row.get(3),
        paused: row.get(4),
        max_lag: row.get(5),
    };
    let consumers = consumer_info(client, Some(queue))?;
    let tables = if has_londiste {
        Some(
            client
                .query_one(
                    "select count(*) from londiste.provider_tables where queue_name = $1",
                    &[queue],
                )
                .context("counting the provider's tables")?
                .get(0),
        )
    } else {
        None
    };
    Ok(ProviderInfo {
        tables,
        ticker,
        consumers,
    })
}

/// This subscriber's view: whether replay runs, its tables, how far it has applied, its
/// threads' last errors.
struct SubscriberInfo {
    /// The backend pid of the session that holds the job's lock: Some while replay runs.
    lock_holder: Option<i32>,
    /// `londiste.replay_daemons` is there (a subscriber set up by an older version lacks it).
    heartbeats: bool,
    /// The job's heartbeat row, where one was written.
    daemon: Option<Daemon>,
    counts: Counts,
    applied_tick: Option<i64>,
    /// Seconds since the last batch was applied.
    applied_age: Option<f64>,
    /// None where `londiste.replay_status` is not installed yet.
    errors: Option<Vec<RecordedError>>,
    /// Where replay may not set the replica role: the triggers and rules that fire on its
    /// rows, as `TABLE: trigger NAME`.
    fire_on_replay: Vec<String>,
    /// How far each running copy is.
    copies: Vec<Progress>,
}

impl SubscriberInfo {
    /// Whether the heartbeat row is the lock holder's own (written by the process that runs
    /// the job now, not by an earlier run).
    fn current(&self) -> bool {
        self.lock_holder.is_some()
            && self.daemon.as_ref().and_then(|d| d.backend_pid) == self.lock_holder
    }
}

/// A row of `londiste.replay_daemons`: the process that runs, or last ran, the job.
struct Daemon {
    host: String,
    pid: i32,
    version: String,
    /// ISO 8601.
    started_at: String,
    /// Seconds since the last heartbeat.
    beat_age: f64,
    /// The server's pid of the connection that wrote it (and held the job's lock).
    backend_pid: Option<i32>,
}

impl Daemon {
    /// `pid N on HOST`.
    fn process(&self) -> String {
        format!("pid {} on {}", self.pid, self.host)
    }
}

/// Tables by merge state, as `ok/copying/other`.
#[derive(Default)]
struct Counts {
    ok: u32,
    copying: u32,
    other: u32,
}

/// A row of `londiste.replay_status`.
struct RecordedError {
    thread: Thread,
    message: String,
    /// ISO 8601.
    at: String,
    /// Seconds since.
    age: f64,
    failures: i32,
}

fn read_subscriber(client: &mut Client, job: &Job) -> Result<SubscriberInfo> {
    let row = client.query_one(
        "select pg_catalog.to_regclass('londiste.subscriber_tables') is not null, \
                pg_catalog.to_regclass('londiste.replay_status') is not null, \
                pg_catalog.to_regclass('londiste.replay_daemons') is not null",
        &[],
    )?;
    let (has_londiste, has_status, heartbeats): (bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    if !has_londiste {
        bail!("londiste is not installed: run `subscriber install`");
    }
    let lock_holder = lock::holder_pid(client, job)?;
    let daemon = if heartbeats {
        client
            .query_opt(
                "select host, pid, version, to_json(started_at) #>> '{}', \
                        extract(epoch from now() - beat_at)::float8, \
                        (pg_catalog.to_jsonb(d) ->> 'backend_pid')::int4 \
                 from londiste.replay_daemons d \
                 where queue_name = $1 and consumer_name = $2",
                &[&job.queue, &job.consumer],
            )
            .context("reading the heartbeat")?
            .map(|r| Daemon {
                host: r.get(0),
                pid: r.get(1),
                version: r.get(2),
                started_at: r.get(3),
                beat_age: r.get::<_, f64>(4).max(0.0),
                backend_pid: r.get(5),
            })
    } else {
        None
    };
    let mut counts = Counts::default();
    let tables = load_tables(client, &job.queue)?;
    let mut fire = Vec::new();
    if !may_set_replica_role(client)? {
        for table in &tables {
            for object in fire_on_replay(client, &table.dest)? {
                fire.push(format!("{}: {object}", table.dest));
            }
        }
    }
    for table in tables {
        match table.state {
            MergeState::Ok => counts.ok += 1,
            MergeState::InCopy
            | MergeState::CatchingUp
            | MergeState::WannaSync(_)
            | MergeState::DoSync(_) => counts.copying += 1,
            MergeState::New => counts.other += 1,
        }
    }
    let applied = client
        .query_opt(
            "select last_tick_id, extract(epoch from now() - applied_at)::float8 \
             from londiste.applied_ticks where queue_name = $1 and consumer_name = $2",
            &[&job.queue, &job.consumer],
        )
        .context("reading the applied tick")?;
    let errors = if has_status {
        let rows = client
            .query(
                "select consumer_name, last_error, to_json(error_at) #>> '{}', \
                        extract(epoch from now() - error_at)::float8, failures \
                 from londiste.replay_status where queue_name = $1 \
                 order by error_at, consumer_name",
                &[&job.queue],
            )
            .context("reading the recorded errors")?;
        Some(
            rows.iter()
                .filter_map(|r| {
                    let key: String = r.get(0);
                    let thread = Thread::from_key(&job.consumer, &key)?;
                    Some(RecordedError {
                        thread,
                        message: r.get(1),
                        at: r.get(2),
                        age: r.get(3),
                        failures: r.get(4),
                    })
                })
                .collect(),
        )
    } else {
        None
    };
    Ok(SubscriberInfo {
        lock_holder,
        heartbeats,
        daemon,
        counts,
        applied_tick: applied.as_ref().map(|r| r.get(0)),
        applied_age: applied.as_ref().map(|r| r.get(1)),
        errors,
        fire_on_replay: fire,
        copies: Progress::load(client, &job.queue)?,
    })
}

/// A node of the tree: a consumer with the copy consumers working for it.
struct Node<'a> {
    name: &'a str,
    local: bool,
    /// Its row, where the provider was read and it is registered.
    consumer: Option<&'a ConsumerInfo>,
    /// `(table, copy consumer)`.
    copies: Vec<(&'a str, &'a ConsumerInfo)>,
}

/// Everything `status` found.
struct Report {
    job: Job,
    provider: Side<ProviderInfo>,
    subscriber: Side<SubscriberInfo>,
    /// `--max-lag`, seconds.
    max_lag: Option<f64>,
}

impl Report {
    /// What makes `status` fail besides a side it could not read: replay not running, the
    /// lag over `--max-lag`.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(s) = self.subscriber.read()
            && s.lock_holder.is_none()
        {
            problems.push(format!(
                "replay of job {} is not running ({}): start it with `replay` (or its service)",
                self.job.consumer,
                last_seen(s.daemon.as_ref())
            ));
        }
        if let Some(limit) = self.max_lag {
            match self.behind() {
                Some(lag) if lag > limit => problems.push(format!(
                    "lag {} is over --max-lag {}",
                    seconds(Some(lag)),
                    seconds(Some(limit))
                )),
                Some(_) => {}
                None if self.provider.read().is_some() => problems.push(format!(
                    "lag unknown: consumer {} is not registered on queue {}",
                    self.job.consumer, self.job.queue
                )),
                // The provider's own error says why.
                None => {}
            }
        }
        problems
    }

    /// This subscriber's lag, seconds, from the provider.
    fn lag(&self) -> Option<f64> {
        self.local()?.lag
    }

    /// How far behind this subscriber is, for `--max-lag`: its lag, unless nothing waits
    /// for it ([`ConsumerInfo::behind`]).
    fn behind(&self) -> Option<f64> {
        let local = self.local()?;
        local.behind(self.pending(local))
    }

    /// This subscriber's consumer, from the provider.
    fn local(&self) -> Option<&ConsumerInfo> {
        let provider = self.provider.read()?;
        provider
            .consumers
            .iter()
            .find(|c| c.name == self.job.consumer)
    }

    /// Events `c` has yet to read, those not yet ticked included.
    fn pending(&self, c: &ConsumerInfo) -> Option<i64> {
        let new = self.provider.read().and_then(|p| p.ticker.new_events);
        Some(c.pending_events? + new.unwrap_or(0))
    }

    /// The `Pending: ...` part of a consumer's line.
    fn pending_text(&self, c: &ConsumerInfo) -> String {
        let new = self.provider.read().and_then(|p| p.ticker.new_events);
        match new {
            Some(new) if new > 0 => format!(
                "Pending: {} events ({new} not yet ticked)",
                number(self.pending(c))
            ),
            _ => format!("Pending: {} events", number(self.pending(c))),
        }
    }

    /// This subscriber's node first, then the queue's other consumers by name; each copy
    /// consumer under the consumer whose name it starts with.
    fn nodes(&self) -> Vec<Node<'_>> {
        let local = self.job.consumer.as_str();
        let consumers: &[ConsumerInfo] =
            self.provider.read().map_or(&[], |p| p.consumers.as_slice());
        let mut nodes = vec![Node {
            name: local,
            local: true,
            consumer: consumers.iter().find(|c| c.name == local),
            copies: Vec::new(),
        }];
        for consumer in consumers {
            if consumer.name != local && copy_owner(&consumer.name, local, consumers).is_none() {
                nodes.push(Node {
                    name: &consumer.name,
                    local: false,
                    consumer: Some(consumer),
                    copies: Vec::new(),
                });
            }
        }
        for consumer in consumers {
            if let Some((owner, table)) = copy_owner(&consumer.name, local, consumers)
                && let Some(node) = nodes.iter_mut().find(|n| n.name == owner)
            {
                node.copies.push((table, consumer));
            }
        }
        nodes
    }

    fn text(&self) -> String {
        let mut out = String::new();
        let ticker = match self.provider.read() {
            Some(p) => ticker_text(&p.ticker),
            None => "unknown".to_string(),
        };
        let _ = writeln!(out, "Queue: {}   Ticker: {ticker}", self.job.queue);
        if let Some(p) = self.provider.read()
            && let Some(lag) = p.ticker.stalled()
        {
            let _ = writeln!(
                out,
                "WARN: no tick for {} while {} events wait: is a ticker running (`replay` with \
                 ticker = on, `ticker`, or pgqd)?",
                seconds(Some(lag)),
                number(p.ticker.new_events)
            );
        }
        let _ = writeln!(out, "Local node: {}\n", self.job.consumer);
        let _ = writeln!(out, "provider: {}", self.job.provider.describe());
        let provider_lines = match &self.provider {
            Side::Read(p) => vec![format!(
                "Tables: {}",
                p.tables.map_or("?".to_string(), |n| n.to_string())
            )],
            other => other.error_line().into_iter().collect(),
        };
        for line in provider_lines {
            let _ = writeln!(out, "  |      {line}");
        }
        let nodes = self.nodes();
        for (i, node) in nodes.iter().enumerate() {
            let last = i + 1 == nodes.len();
            let title = if node.local {
                format!(
                    "{} (this subscriber): {}",
                    node.name,
                    self.job.subscriber.describe()
                )
            } else {
                node.name.to_string()
            };
            let _ = writeln!(out, "  +--{title}");
            let indent = if last { "         " } else { "  |      " };
            for line in self.node_lines(node) {
                let _ = writeln!(out, "{indent}{line}");
            }
        }
        out
    }

    /// The detail lines under a node.
    fn node_lines(&self, node: &Node<'_>) -> Vec<String> {
        let mut lines = Vec::new();
        let subscriber = if node.local {
            match &self.subscriber {
                Side::Read(s) => {
                    lines.push(self.replay_line(s));
                    let c = &s.counts;
                    lines.push(format!(
                        "Tables: {}/{}/{} ok/copying/other",
                        c.ok, c.copying, c.other
                    ));
                    Some(s)
                }
                other => {
                    lines.extend(other.error_line());
                    None
                }
            }
        } else {
            None
        };
        match (node.consumer, self.provider.read(), subscriber) {
            (Some(c), _, _) => {
                lines.push(format!(
                    "Lag: {}, Tick: {}, {}",
                    seconds(c.lag),
                    number(c.last_tick),
                    self.pending_text(c)
                ));
                if is_stale(c) {
                    lines.push(format!(
                        "STALE: not read for {}, and the queue keeps every event for it: if it \
                         is gone, unregister it (`subscriber unregister` with its config)",
                        seconds(c.last_seen)
                    ));
                }
            }
            (None, Some(_), _) => lines.push(
                "Not registered on the queue (`replay` or `subscriber register` registers it)"
                    .to_string(),
            ),
            (None, None, Some(s)) => {
                if let Some(tick) = s.applied_tick {
                    lines.push(format!(
                        "Tick: {tick}, applied here {} ago",
                        seconds(s.applied_age)
                    ));
                }
            }
            (None, None, None) => {}
        }
        for (table, c) in &node.copies {
            lines.push(format!(
                "Copy {table}: Lag: {}, Tick: {}, {}",
                seconds(c.lag),
                number(c.last_tick),
                self.pending_text(c)
            ));
        }
        if let Some(s) = subscriber {
            for p in &s.copies {
                lines.push(format!("Copying {}: {}", p.table, p.text()));
            }
            match &s.errors {
                Some(errors) => {
                    for e in errors {
                        lines.push(format!(
                            "ERR: {}: {} ({} in a row, last {} ago)",
                            e.thread.name(),
                            e.message,
                            if e.failures == 1 {
                                "1 failure".to_string()
                            } else {
                                format!("{} failures", e.failures)
                            },
                            seconds(Some(e.age))
                        ));
                    }
                }
                None => lines.push(
                    "Errors: not recorded here (run `subscriber install` to upgrade)".to_string(),
                ),
            }
            if !s.fire_on_replay.is_empty() {
                lines.push(format!(
                    "WARN: replay may not set session_replication_role = replica, so these fire \
                     on replayed rows: {}",
                    s.fire_on_replay.join(", ")
                ));
            }
        }
        lines
    }

    /// `Replay: running, pid N on HOST, last batch 0.3s ago` or `Replay: not running (...)`.
    fn replay_line(&self, s: &SubscriberInfo) -> String {
        if s.lock_holder.is_none() {
            return format!("Replay: not running ({})", last_seen(s.daemon.as_ref()));
        }
        if s.heartbeats && !s.current() {
            return format!(
                "Replay: starting (backend pid {} holds the job's lock; no heartbeat from it yet)",
                s.lock_holder.unwrap_or_default()
            );
        }
        let process = match &s.daemon {
            Some(d) if d.beat_age > STALE_BEAT => format!(
                "{}, no heartbeat for {}: busy with a long batch, or stuck",
                d.process(),
                seconds(Some(d.beat_age))
            ),
            Some(d) => d.process(),
            None => "process unknown (run `subscriber install` to upgrade)".to_string(),
        };
        let batch = match s.applied_age {
            Some(age) => format!("last batch {} ago", seconds(Some(age))),
            None => "no batch applied yet".to_string(),
        };
        format!("Replay: running, {process}, {batch}")
    }

    fn json(&self) -> Value {
        let provider = self.provider.read();
        let subscriber = self.subscriber.read();
        let consumer_json = |c: Option<&ConsumerInfo>| {
            json!({
                "lag": c.and_then(|c| c.lag).map(rounded),
                "last_seen": c.and_then(|c| c.last_seen).map(rounded),
                "last_tick": c.and_then(|c| c.last_tick),
                "current_batch": c.and_then(|c| c.current_batch),
                "next_tick": c.and_then(|c| c.next_tick),
                "pending_events": c.and_then(|c| self.pending(c)),
                "stale": c.map(is_stale),
            })
        };
        let consumers: Vec<Value> = self
            .nodes()
            .iter()
            .map(|node| {
                let mut value = json!({
                    "name": node.name,
                    "local": node.local,
                    "registered": provider.map(|_| node.consumer.is_some()),
                    "errors": if node.local {
                        subscriber.and_then(|s| s.errors.as_ref()).map(|errors| {
                            errors
                                .iter()
                                .map(|e| {
                                    json!({
                                        "thread": e.thread.name(),
                                        "message": e.message,
                                        "at": e.at,
                                        "age": rounded(e.age),
                                        "failures": e.failures,
                                    })
                                })
                                .collect::<Vec<_>>()
                        })
                    } else {
                        None
                    },
                    "copies": node.copies.iter().map(|(table, c)| {
                        let mut copy = json!({"table": table, "consumer": c.name});
                        merge(&mut copy, consumer_json(Some(c)));
                        copy
                    }).collect::<Vec<_>>(),
                });
                merge(&mut value, consumer_json(node.consumer));
                value
            })
            .collect();
        let replay = subscriber.map(|s| {
            json!({
                "running": s.lock_holder.is_some(),
                "starting": s.lock_holder.is_some() && s.heartbeats && !s.current(),
                "host": s.daemon.as_ref().map(|d| &d.host),
                "pid": s.daemon.as_ref().map(|d| d.pid),
                "version": s.daemon.as_ref().map(|d| &d.version),
                "started_at": s.daemon.as_ref().map(|d| &d.started_at),
                "heartbeat_age": s.daemon.as_ref().map(|d| rounded(d.beat_age)),
                "last_batch_age": s.applied_age.map(rounded),
            })
        });
        json!({
            "queue": self.job.queue,
            "node": self.job.consumer,
            "complete": provider.is_some() && subscriber.is_some(),
            "lag": self.lag().map(rounded),
            "max_lag": self.max_lag,
            "problems": self.problems(),
            "provider": {
                "db": self.job.provider.describe(),
                "reachable": !matches!(self.provider, Side::Unreachable(_)),
                "error": self.provider.error(),
                "tables": provider.and_then(|p| p.tables),
                "ticker": provider.map(|p| json!({
                    "last_tick": p.ticker.last_tick,
                    "lag": p.ticker.lag.map(rounded),
                    "events_per_sec": p.ticker.events_per_sec.map(rounded),
                    "new_events": p.ticker.new_events,
                    "paused": p.ticker.paused,
                    "stalled": p.ticker.stalled().is_some(),
                })),
            },
            "subscriber": {
                "db": self.job.subscriber.describe(),
                "reachable": !matches!(self.subscriber, Side::Unreachable(_)),
                "error": self.subscriber.error(),
                "tables": subscriber.map(|s| json!({
                    "ok": s.counts.ok,
                    "copying": s.counts.copying,
                    "other": s.counts.other,
                })),
                "applied_tick": subscriber.and_then(|s| s.applied_tick),
                "applied_age": subscriber.and_then(|s| s.applied_age).map(rounded),
                "replay": replay,
                "fire_on_replay": subscriber.map(|s| &s.fire_on_replay),
                "copy_progress": subscriber
                    .map(|s| s.copies.iter().map(Progress::json).collect::<Vec<_>>()),
            },
            "consumers": consumers,
        })
    }
}

/// Whether consumer `c` has not read for [`STALE_AFTER`].
fn is_stale(c: &ConsumerInfo) -> bool {
    c.last_seen.is_some_and(|s| s > STALE_AFTER)
}

/// `last seen 5m3s ago, pid N on HOST` or `never seen here`, for a replay that does not run.
fn last_seen(daemon: Option<&Daemon>) -> String {
    match daemon {
        Some(d) => format!(
            "last seen {} ago, {}",
            seconds(Some(d.beat_age)),
            d.process()
        ),
        None => "never seen here".to_string(),
    }
}

/// `(owner, table)` if `name` is a copy consumer (`OWNER.copy.TABLE`) of `local` or of another
/// of the `consumers`.
fn copy_owner<'n>(
    name: &'n str,
    local: &str,
    consumers: &[ConsumerInfo],
) -> Option<(&'n str, &'n str)> {
    let (owner, table) = name.split_once(".copy.")?;
    (owner == local || consumers.iter().any(|c| c.name == owner)).then_some((owner, table))
}

/// Adds the keys of object `from` to object `into`.
fn merge(into: &mut Value, from: Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        into.extend(from);
    }
}

/// The ticker's part of the header line.
fn ticker_text(t: &Ticker) -> String {
    let mut text = format!(
        "tick {}, lag {}, {} events/s, {} new events",
        number(t.last_tick),
        seconds(t.lag),
        t.events_per_sec
            .map_or("?".to_string(), |r| format!("{r:.1}")),
        number(t.new_events)
    );
    if t.paused == Some(true) {
        text.push_str(", paused");
    }
    text
}
