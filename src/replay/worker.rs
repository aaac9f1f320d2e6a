//! `replay` (alias `worker`): the replication daemon.
//!
//! One process, one thread per role (SPEC §6): the ticker thread (unless `ticker = off`) ticks
//! the provider queue and wakes the replay thread after each tick; the replay thread (this
//! module) takes each batch and applies its events for tables in state `ok` to the
//! subscriber in one transaction, together with the record of the applied tick, and hands
//! new tables to the `parallel_copies` copy threads ([`crate::replay::copy`]), which copy them and
//! hand them back. They share no memory: the
//! merge states in the subscriber database are the truth, channels only carry wake-ups.
//! Each batch is applied exactly once ([`crate::replay::batch`]); an error ends a thread's session
//! and is recorded for `status` ([`crate::replay::session`]). The replay thread works only
//! while it holds the job's lock in the subscriber ([`crate::replay::lock`]).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use postgres::Client;

use crate::base::names::TableName;
use crate::capture::provider::{EXECUTE_EVENT, REMOVE_TABLE_EVENT};
use crate::config::Config;
use crate::db;
use crate::queue::consumer::{Consumer, Event};
use crate::queue::ticker;
use crate::replay::apply::{may_set_replica_role, warn_fire_on_replay};
use crate::replay::batch::{Route, apply_batch};
use crate::replay::control;
use crate::replay::copy::{self, copy_consumer_name, copy_consumer_prefix};
use crate::replay::job::{Connections, Job};
use crate::replay::lock::ReplayLock;
use crate::replay::seqs::Follower;
use crate::replay::session::{LastError, Thread, sessions, stopped_within};
use crate::replay::state::{MergeState, SubscriberTable, applied_tick, load_tables, set_state};
use crate::replay::subscriber::check_installed;

/// Copy threads started, so that a reload can raise `parallel_copies` up to this (or to its
/// value at the start, if that is higher).
const MAX_COPY_THREADS: u32 = 16;

/// Runs the daemon, holding the job's `lock`, until `stop` disconnects.
pub fn run(job: &Job, config: &Config, stop: Receiver<()>, mut lock: ReplayLock) -> Result<()> {
    let ticker_settings = ticker::Settings::from_config(config)?;
    let run_ticker = config.flag("ticker")?;
    let (wake, woken) = bounded::<()>(1);
    // Threads for as many copies as a reload may ask for; those past parallel_copies wait,
    // without connections, until it grows.
    let threads = job.parallel_copies.get().max(MAX_COPY_THREADS);
    let (copy_wake, copy_woken) = bounded::<()>(threads as usize);
    let pool = copy::Pool::new(copy_woken, wake.clone());
    lock.beat(job)?;
    log::info!(
        "replaying queue {} from {} to {} as {}",
        job.queue,
        job.provider.describe(),
        job.subscriber.describe(),
        job.consumer
    );
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
        replay_loop(job, &stop, &woken, &copy_wake, &mut lock);
        Ok(())
    })
}

/// What `replay` checks before it counts as started (before `-d` reports a start, and
/// before [`run`]): the subscriber is set up (where replay may not set the replica role, the
/// triggers and rules that fire on replayed rows are named), and then the job's consumer is
/// registered on the provider's queue (before the ticker thread starts, so that no tick
/// passes events by unseen). A consumer is only registered once the subscriber is known to
/// be usable: one that nothing reads would keep every event in the queue.
pub fn prepare(job: &Job) -> Result<()> {
    let mut subscriber = db::connect("subscriber_db", &job.subscriber)?;
    check_installed(&mut subscriber)?;
    if !may_set_replica_role(&mut subscriber)? {
        for table in load_tables(&mut subscriber, &job.queue)? {
            warn_fire_on_replay(&mut subscriber, &table.dest)?;
        }
    }
    drop(subscriber);
    register(job)
}

/// Registers the job's consumer on the queue unless it is registered; fails saying what to
/// run if the provider has no pgq or no such queue.
fn register(job: &Job) -> Result<()> {
    let mut provider = db::connect("provider_db", &job.provider)?;
    let queue: Option<bool> = provider
        .query_one(
            "select case when pg_catalog.to_regclass('pgq.queue') is not null then \
                    pg_catalog.to_regprocedure('pgq.get_queue_info(text)') is not null end",
            &[],
        )
        .context("looking for pgq on the provider")?
        .get(0);
    if queue.is_none() {
        bail!("the provider database has no pgq: run `provider install` first");
    }
    let exists = provider
        .query_opt("select 1 from pgq.get_queue_info($1)", &[&job.queue])
        .context("looking for the queue on the provider")?
        .is_some();
    if !exists {
        bail!(
            "queue {} does not exist on the provider: run `provider install` first",
            job.queue
        );
    }
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
fn replay_loop(
    job: &Job,
    stop: &Receiver<()>,
    woken: &Receiver<()>,
    copy_wake: &Sender<()>,
    lock: &mut ReplayLock,
) {
    sessions(job, Thread::Replay, stop, |last_error| {
        replay_session(job, stop, woken, copy_wake, lock, last_error)
    });
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
    lock: &mut ReplayLock,
    last_error: &mut LastError,
) -> Result<()> {
    lock.keep(job)?;
    let mut conns = Connections::open(job)?;
    let consumer = Consumer::new(&job.queue, &job.consumer);
    let mut seqs = Follower::new(&job.queue);
    // A provider connection of its own for vouching for control events, opened at the first.
    let mut checker: Option<Client> = None;
    let mut next_cleanup = Instant::now();
    loop {
        if stopped_within(stop, Duration::ZERO) {
            return Ok(());
        }
        lock.keep(job)?;
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
        let Some(batch) = consumer.next_batch_of(provider, job.batch_events)? else {
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
                Some(dest) => Route::Apply(dest),
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
            &mut |ev| {
                let checker = match &mut checker {
                    Some(client) => client,
                    None => checker.insert(db::connect("provider_db", &job.provider)?),
                };
                control::vouch(checker, &job.queue, ev)
            },
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
        let name: String = row.try_get(0).context("listing copy consumers")?;
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
