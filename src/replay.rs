//! `replay` (alias `worker`): the replication daemon.
//!
//! One process, one thread per role (SPEC §6): the ticker thread (unless `ticker = off`) ticks
//! the provider queue and wakes the replay thread after each tick; the replay thread (this
//! module) takes each batch and applies its events for tables in state `ok` to the
//! subscriber in one transaction, together with the record of the applied tick, and hands
//! new tables to the `parallel_copies` copy threads ([`crate::copy`]), which copy them and
//! hand them back. They share no memory: the
//! merge states in the subscriber database are the truth, channels only carry wake-ups.
//!
//! Exactly once: the subscriber stores the last applied tick of the consumer in
//! `londiste.applied_ticks`, in the same transaction as the batch's changes. The batch is
//! finished on the provider only after that commit. After a crash between the two the queue
//! hands out the same batch again, and the stored tick shows it is applied already.
//!
//! An error ends a thread's session: it is logged, recorded in the subscriber's
//! `londiste.replay_status` for `status` ([`LastError`]), and the session starts again after
//! `exception_sleep`. The record is deleted once the thread gets work done again.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, select};
use postgres::{Client, GenericClient, Transaction};

use crate::apply::{Applier, Decoded, decode};
use crate::config::{Config, Live, LiveKey};
use crate::connstr::Resolved;
use crate::copy::{self, copy_consumer_name, copy_consumer_prefix};
use crate::db;
use crate::ddl;
use crate::error::{Failures, one_line};
use crate::names::TableName;
use crate::pgq::{Batch, Consumer, Event};
use crate::provider::{EXECUTE_EVENT, REMOVE_TABLE_EVENT};
use crate::seqs::Follower;
use crate::state::{
    MergeState, SubscriberTable, applied_tick, load_tables, record_tick, set_state,
};
use crate::status::{self, Thread};
use crate::ticker;

/// Events fetched from the batch cursor at a time.
const FETCH: i32 = 250;
/// Events the reader may fetch ahead of the applier.
const READ_AHEAD: usize = 2 * FETCH as usize;

/// Copy threads started, so that a reload can raise `parallel_copies` up to this (or to its
/// value at the start, if that is higher).
const MAX_COPY_THREADS: u32 = 16;

/// The settings a reload (SIGHUP) changes while `replay` runs.
impl Job {
    /// `loop_delay` and `parallel_copies`, for [`crate::signals::stop_on_signal`].
    pub fn live_settings(&self) -> Vec<LiveKey> {
        vec![
            LiveKey::Seconds("loop_delay", self.loop_delay.clone()),
            LiveKey::Count("parallel_copies", self.parallel_copies.clone()),
        ]
    }
}

/// Everything the replay threads need to know about the job.
#[derive(Clone, Debug)]
pub struct Job {
    /// The queue on the provider.
    pub queue: String,
    /// The consumer name (`job_name`).
    pub consumer: String,
    /// Where the queue is.
    pub provider: Resolved,
    /// Where the tables are applied.
    pub subscriber: Resolved,
    /// Seconds to wait for a batch when no tick wakes the thread (changes on reload).
    pub loop_delay: Live<Duration>,
    /// Seconds to wait after an error.
    pub exception_sleep: Duration,
    /// Age at which the threads replace their database connections.
    pub connection_lifetime: Duration,
    /// Copy threads at work: tables copied at the same time (changes on reload).
    pub parallel_copies: Live<u32>,
}

impl Job {
    /// The job of a config file.
    pub fn from_config(config: &Config) -> Result<Job> {
        let consumer = config.job_name()?;
        let app = format!("skyrep/{consumer}");
        let resolve = |key: &str| -> Result<Resolved> {
            let conn = config.connstr(key)?.ok_or_else(|| {
                crate::error::usage(format!("{}: missing key `{key}`", config.path().display()))
            })?;
            conn.resolve_from_env(&app)
                .with_context(|| format!("{key}: bad connection string"))
        };
        Ok(Job {
            queue: config.require_text("pgq_queue_name")?,
            provider: resolve("provider_db")?,
            subscriber: resolve("subscriber_db")?,
            consumer,
            loop_delay: Live::new(config.seconds("loop_delay")?),
            exception_sleep: config.seconds("exception_sleep")?,
            connection_lifetime: config.seconds("connection_lifetime")?,
            parallel_copies: Live::new(config.count("parallel_copies")?),
        })
    }
}

/// Runs the daemon until `stop` disconnects.
pub fn run(job: &Job, config: &Config, stop: Receiver<()>) -> Result<()> {
    let ticker_settings = ticker::Settings::from_config(config)?;
    let run_ticker = config.flag("ticker")?;
    let (wake, woken) = bounded::<()>(1);
    // Threads for as many copies as a reload may ask for; those past parallel_copies wait,
    // without connections, until it grows.
    let threads = job.parallel_copies.get().max(MAX_COPY_THREADS);
    let (copy_wake, copy_woken) = bounded::<()>(threads as usize);
    let pool = copy::Pool::new(copy_woken, wake.clone());
    log::info!(
        "replaying queue {} from {} to {} as {}",
        job.queue,
        job.provider.describe(),
        job.subscriber.describe(),
        job.consumer
    );
    // Register before the ticker thread starts, so that no tick passes events by unseen.
    register(job)?;
    std::thread::scope(|scope| -> Result<()> {
        if run_ticker {
            let (stop, wake) = (&stop, &wake);
            std::thread::Builder::new()
                .name("ticker".into())
                .spawn_scoped(scope, move || {
                    ticker::tick_database(
                        "provider_db",
                        &job.provider,
                        &ticker_settings,
                        stop,
                        Some(wake),
                    )
                })
                .context("starting the ticker thread")?;
        }
        for n in 1..=threads {
            let (stop, pool) = (&stop, &pool);
            std::thread::Builder::new()
                .name(format!("copy-{n}"))
                .spawn_scoped(scope, move || copy::run(job, n, stop, pool))
                .context("starting a copy thread")?;
        }
        replay_loop(job, &stop, &woken, &copy_wake);
        Ok(())
    })
}

/// Registers the job's consumer on the queue unless it is registered.
fn register(job: &Job) -> Result<()> {
    let mut provider = db::connect("provider_db", &job.provider)?;
    if Consumer::new(&job.queue, &job.consumer).register(&mut provider)? {
        log::info!(
            "consumer {} registered on queue {}",
            job.consumer,
            job.queue
        );
    }
    Ok(())
}

/// The replay thread: sessions until asked to stop.
fn replay_loop(job: &Job, stop: &Receiver<()>, woken: &Receiver<()>, copy_wake: &Sender<()>) {
    sessions(job, Thread::Replay, stop, |last_error| {
        replay_session(job, stop, woken, copy_wake, last_error)
    });
}

/// Runs `session` of `thread` until it returns without error (asked to stop); after each
/// error, logs and records it and pauses: briefly after the first failure in a row (a
/// dropped connection is often back at once), then for `exception_sleep`.
pub(crate) fn sessions(
    job: &Job,
    thread: Thread,
    stop: &Receiver<()>,
    mut session: impl FnMut(&mut LastError) -> Result<()>,
) {
    let mut last_error = LastError {
        job,
        thread,
        // A record may be left from an earlier run: clear it at the first success.
        recorded: true,
        failures: Failures::default(),
    };
    loop {
        let pause = match session(&mut last_error) {
            Ok(()) => return,
            // Stopping may cut a statement short (a cancelled COPY): not a failure.
            Err(err) if stopped_within(stop, Duration::ZERO) => {
                log::info!("{}: stopped: {}", thread.name(), one_line(&err));
                return;
            }
            Err(err) => last_error.record(&err),
        };
        if stopped_within(stop, pause) {
            return;
        }
    }
}

/// A thread's last error as `status` shows it: written to the subscriber when a session
/// fails, deleted by the first success after it. Only the first success after an error
/// writes, so a healthy thread costs nothing.
pub(crate) struct LastError<'a> {
    job: &'a Job,
    thread: Thread,
    /// An error may be recorded.
    recorded: bool,
    /// Sessions failed since the thread last got work done.
    failures: Failures,
}

impl LastError<'_> {
    /// Logs `err` (an error that repeats the last one only at debug level) and records it
    /// on a connection of its own (the session's may be broken or inside a failed
    /// transaction); where the subscriber cannot be reached it is only logged. Returns the
    /// pause before the next session.
    fn record(&mut self, err: &anyhow::Error) -> Duration {
        let (thread, message) = (self.thread.name(), one_line(err));
        let pause = self
            .failures
            .failed(format!("{thread}: {message}"), self.job.exception_sleep);
        self.recorded = true;
        let job = self.job;
        match db::connect("subscriber_db", &job.subscriber) {
            Err(e) => log::debug!("{thread}: error not recorded: {}", one_line(&e)),
            Ok(mut client) => {
                if let Err(e) = status::record_error(
                    &mut client,
                    &job.queue,
                    &job.consumer,
                    self.thread,
                    &message,
                ) {
                    log::warn!("{thread}: {}", one_line(&e));
                }
            }
        }
        pause
    }

    /// The thread got work done: clears a recorded error.
    pub(crate) fn succeeded(&mut self, subscriber: &mut impl GenericClient) -> Result<()> {
        self.failures.recovered(&self.thread.name());
        if self.recorded {
            status::clear_error(subscriber, &self.job.queue, &self.job.consumer, self.thread)?;
            self.recorded = false;
        }
        Ok(())
    }
}

/// A thread's provider and subscriber connections with the applier that serves them,
/// replaced once they are `connection_lifetime` old (a server-side session that lives for
/// months collects memory and pins settings; a new one starts clean).
pub(crate) struct Connections {
    provider: Client,
    subscriber: Client,
    /// With statements prepared on `subscriber`.
    applier: Applier,
    opened: Instant,
}

impl Connections {
    /// Connects to both databases.
    pub fn open(job: &Job) -> Result<Connections> {
        Ok(Connections {
            provider: db::connect("provider_db", &job.provider)?,
            subscriber: db::connect("subscriber_db", &job.subscriber)?,
            applier: Applier::new(),
            opened: Instant::now(),
        })
    }

    /// The provider, subscriber and applier for the next unit of work, replaced first if they
    /// are `connection_lifetime` old. Call between units of work, with no transaction open.
    pub fn next_round(&mut self, job: &Job) -> Result<(&mut Client, &mut Client, &mut Applier)> {
        if self.opened.elapsed() >= job.connection_lifetime {
            log::debug!(
                "renewing the database connections after {:?}",
                job.connection_lifetime
            );
            *self = Connections::open(job)?;
        }
        Ok((&mut self.provider, &mut self.subscriber, &mut self.applier))
    }
}

/// Waits up to `pause` for a stop; true if asked to stop.
pub(crate) fn stopped_within(stop: &Receiver<()>, pause: Duration) -> bool {
    !matches!(stop.recv_timeout(pause), Err(RecvTimeoutError::Timeout))
}

/// Waits up to `pause` for a wake-up or a stop; true if asked to stop.
fn wait_for_tick(stop: &Receiver<()>, woken: &Receiver<()>, pause: Duration) -> bool {
    select! {
        recv(stop) -> _ => true,
        recv(woken) -> _ => false,
        default(pause) => false,
    }
}

fn replay_session(
    job: &Job,
    stop: &Receiver<()>,
    woken: &Receiver<()>,
    copy_wake: &Sender<()>,
    last_error: &mut LastError,
) -> Result<()> {
    let mut conns = Connections::open(job)?;
    let consumer = Consumer::new(&job.queue, &job.consumer);
    let mut seqs = Follower::new(&job.queue);
    let mut next_cleanup = Instant::now();
    loop {
        if stopped_within(stop, Duration::ZERO) {
            return Ok(());
        }
        let (provider, subscriber, applier) = conns.next_round(job)?;
        let tables = load_tables(subscriber, &job.queue)?;
        if Instant::now() >= next_cleanup {
            drop_stale_copy_consumers(job, provider, &tables)?;
            next_cleanup = Instant::now() + CLEANUP_EVERY;
        }
        if hand_over(job, subscriber, &tables, copy_wake)? {
            // A copy is finishing at our position: wait for it to say ok.
            if wait_for_tick(stop, woken, job.loop_delay.get()) {
                return Ok(());
            }
            continue;
        }
        let Some(batch) = consumer.next_batch(provider)? else {
            // Caught up with the queue.
            last_error.succeeded(subscriber)?;
            if wait_for_tick(stop, woken, job.loop_delay.get()) {
                return Ok(());
            }
            continue;
        };
        // After the batch's tick was taken: the provider's sequences are at least there.
        let seq_targets = seqs.read(provider, subscriber)?;
        let ok: HashMap<String, TableName> = tables
            .iter()
            .filter(|t| t.state == MergeState::Ok)
            .map(|t| {
                applier.set_condition(&t.dest, t.condition.as_deref());
                (t.table.qualified(), t.dest.clone())
            })
            .collect();
        let route = |ev: &Event| -> Route {
            match ev.ev_type.as_deref() {
                Some(EXECUTE_EVENT) => {
                    return Route::Execute(
                        tables
                            .iter()
                            .filter(|t| t.dest != t.table)
                            .map(|t| (t.table.qualified(), t.dest.clone()))
                            .collect(),
                    );
                }
                Some(REMOVE_TABLE_EVENT) => return Route::RemoveTable,
                _ => {}
            }
            let table = ev.extra1.as_deref().unwrap_or("");
            match ok.get(table) {
                Some(dest) => Route::Apply(dest.clone()),
                None if tables.iter().any(|t| t.table.qualified() == table) => Route::Later,
                None => Route::Ignore,
            }
        };
        let stats = apply_batch(
            provider,
            subscriber,
            &consumer,
            &batch,
            applier,
            &route,
            &mut |tx| seq_targets.apply(tx),
        )?;
        last_error.succeeded(subscriber)?;
        if stats.removed > 0 {
            // A table removed mid-copy leaves its copy consumer: drop it now.
            next_cleanup = Instant::now();
        }
        log::info!(
            "{{count: {}, ignored: {}, duration: {:.3}, lag: {:.1}}}",
            stats.applied,
            stats.ignored,
            stats.duration.as_secs_f64(),
            SystemTime::now()
                .duration_since(batch.tick_time)
                .unwrap_or_default()
                .as_secs_f64()
        );
    }
}

/// How often replay looks for copy consumers that no copy needs any more.
const CLEANUP_EVERY: Duration = Duration::from_secs(60);

/// Unregisters this job's copy consumers whose table is not being copied: left behind by a
/// crash between a table's `ok` and the copy's unregistering, or by a table removed or
/// unregistered mid-copy. Such a consumer would hold up the rotation of event tables.
fn drop_stale_copy_consumers(
    job: &Job,
    provider: &mut Client,
    tables: &[SubscriberTable],
) -> Result<()> {
    let prefix = copy_consumer_prefix(&job.consumer);
    let rows = provider
        .query(
            "select consumer_name from pgq.get_consumer_info($1) \
             where left(consumer_name, length($2)) = $2",
            &[&job.queue, &prefix],
        )
        .context("listing copy consumers")?;
    for row in rows {
        let name: String = row.get(0);
        let copying = tables.iter().any(|t| {
            !matches!(t.state, MergeState::New | MergeState::Ok)
                && copy_consumer_name(&job.consumer, &t.table) == name
        });
        if !copying && Consumer::new(&job.queue, &name).unregister(provider)? {
            log::info!("unregistered copy consumer {name}, which no copy needs any more");
        }
    }
    Ok(())
}

/// Does the replay thread's part of the copy protocol; true if replay must wait.
fn hand_over(
    job: &Job,
    subscriber: &mut Client,
    tables: &[SubscriberTable],
    copy_wake: &Sender<()>,
) -> Result<bool> {
    if tables
        .iter()
        .any(|t| matches!(t.state, MergeState::DoSync(_)))
    {
        return Ok(true);
    }
    // New tables go to the copy threads, as many at a time as there are threads.
    let copying = tables
        .iter()
        .filter(|t| {
            matches!(
                t.state,
                MergeState::InCopy | MergeState::CatchingUp | MergeState::WannaSync(_)
            )
        })
        .count();
    let free = (job.parallel_copies.get() as usize).saturating_sub(copying);
    let new = tables.iter().filter(|t| t.state == MergeState::New);
    for next in new.take(free) {
        set_state(
            subscriber,
            &job.queue,
            &next.table,
            MergeState::New,
            MergeState::InCopy,
            None,
        )?;
        let _ = copy_wake.try_send(());
    }
    for table in tables {
        if let MergeState::WannaSync(tick) = table.state {
            let mut tx = subscriber.transaction()?;
            let position = applied_tick(&mut tx, &job.queue, &job.consumer)?;
            if let Some(position) = position.filter(|p| *p >= tick) {
                set_state(
                    &mut tx,
                    &job.queue,
                    &table.table,
                    table.state,
                    MergeState::DoSync(position),
                    None,
                )?;
                tx.commit()?;
                let _ = copy_wake.try_send(());
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// What to do with one event of a batch.
pub(crate) enum Route {
    /// Apply it to this table.
    Apply(TableName),
    /// A script of `provider execute`: run it, with these tables' names (the provider's
    /// `schema.table`) mapped to their local names.
    Execute(HashMap<String, TableName>),
    /// A table removed on the provider: unregister it.
    RemoveTable,
    /// A registered table that is not replicated by this consumer yet: not counted.
    Later,
    /// Not a table of this subscriber: counted as ignored.
    Ignore,
}

/// What a batch did.
pub(crate) struct BatchStats {
    /// Events applied.
    pub applied: u64,
    /// Events for tables this subscriber does not replicate.
    pub ignored: u64,
    /// Time taken.
    pub duration: Duration,
    /// Tables unregistered because the provider removed them.
    pub removed: u32,
}

/// Applies the events of `batch` that `route` sends somewhere, exactly once, in one
/// subscriber transaction that also records the tick (and runs `before_commit`), then
/// finishes the batch on the provider.
pub(crate) fn apply_batch(
    provider: &mut Client,
    subscriber: &mut Client,
    consumer: &Consumer,
    batch: &Batch,
    applier: &mut Applier,
    route: &dyn Fn(&Event) -> Route,
    before_commit: &mut dyn FnMut(&mut Transaction<'_>) -> Result<()>,
) -> Result<BatchStats> {
    let start = Instant::now();
    let (queue, name) = (consumer.queue(), consumer.name());
    let mut stats = BatchStats {
        applied: 0,
        ignored: 0,
        duration: Duration::ZERO,
        removed: 0,
    };
    let mut ptx = provider
        .transaction()
        .context("starting the provider transaction")?;
    let mut stx = subscriber
        .transaction()
        .context("starting the subscriber transaction")?;
    applier.begin(&mut stx)?;
    match applied_tick(&mut stx, queue, name)? {
        Some(done) if done == batch.tick_id => {
            log::info!("{name}: batch up to tick {done} was applied before; finishing it");
            drop(stx);
        }
        Some(done) if done != batch.prev_tick_id => bail!(
            "{name}: the subscriber has applied up to tick {done}, but the queue hands out ticks {} to {}: \
             the consumer was moved on the provider; unregister and resync",
            batch.prev_tick_id,
            batch.tick_id
        ),
        _ => {
            // A reader thread fetches the events from the provider while this one decodes and
            // queues those already read.
            std::thread::scope(|scope| -> Result<()> {
                let (send, events) = bounded::<Event>(READ_AHEAD);
                let ptx = &mut ptx;
                let reader = scope.spawn(move || {
                    consumer.for_each_event(ptx, batch, FETCH, |ev| {
                        send.send(ev)
                            .map_err(|_| anyhow::anyhow!("the applying side stopped"))
                    })
                });
                for ev in &events {
                    let dest = match route(&ev) {
                        Route::Apply(dest) => dest,
                        Route::Execute(dests) => {
                            applier.flush(&mut stx)?;
                            ddl::run_script(&mut stx, queue, &ev, &dests)?;
                            // The script may have changed any table's columns, and it reset
                            // the session's settings.
                            applier.reset();
                            applier.begin(&mut stx)?;
                            stats.applied += 1;
                            continue;
                        }
                        Route::RemoveTable => {
                            applier.flush(&mut stx)?;
                            if ddl::remove_table(&mut stx, queue, &ev)? {
                                stats.removed += 1;
                            }
                            stats.applied += 1;
                            continue;
                        }
                        Route::Later => continue,
                        Route::Ignore => {
                            stats.ignored += 1;
                            continue;
                        }
                    };
                    match decode(ev.ev_type.as_deref().unwrap_or(""), ev.data.as_deref())
                        .with_context(|| format!("event {} of batch {}", ev.id, batch.id))?
                    {
                        Decoded::Row(row) => applier.push(&mut stx, &dest, row, ev.id)?,
                        Decoded::Truncate => applier.truncate(&mut stx, &dest)?,
                        Decoded::Other => {
                            stats.ignored += 1;
                            continue;
                        }
                    }
                    stats.applied += 1;
                }
                reader.join().map_err(|_| {
                    anyhow::anyhow!("the thread reading batch {} panicked", batch.id)
                })??;
                Ok(())
            })?;
            applier.flush(&mut stx)?;
            record_tick(&mut stx, queue, name, batch.tick_id)?;
            before_commit(&mut stx)?;
            stx.commit()
                .context("committing the batch on the subscriber")?;
        }
    }
    consumer.finish_batch(&mut ptx, batch)?;
    ptx.commit()
        .context("finishing the batch on the provider")?;
    stats.duration = start.elapsed();
    Ok(stats)
}
