//! One batch applied exactly once: its events read from the provider, routed, applied in one
//! subscriber transaction with the record of its tick, then finished on the provider.
//!
//! Exactly once: the subscriber stores the last applied tick of the consumer in
//! `londiste.applied_ticks`, in the same transaction as the batch's changes. The batch is
//! finished on the provider only after that commit. After a crash between the two the queue
//! hands out the same batch again, and the stored tick shows it is applied already.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossbeam_channel::bounded;
use postgres::{Client, Transaction};

use crate::base::names::TableName;
use crate::queue::consumer::{Batch, Consumer, Event};
use crate::replay::apply::{Applier, Decoded, decode};
use crate::replay::control;
use crate::replay::state::{applied_tick, record_tick};

/// Events fetched from the batch cursor at a time.
const FETCH: i32 = 250;
/// The reader hands events to the applier in chunks of at most this many events ...
const CHUNK_EVENTS: usize = 128;
/// ... or of about this many bytes (a wider event makes a chunk of its own).
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks the reader may have read ahead of the applier.
const READ_AHEAD: usize = 4;

/// What to do with one event of a batch.
pub enum Route {
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
pub struct BatchStats {
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
/// finishes the batch on the provider. A control event (a script, a table removal) is acted
/// on only if `vouch` accepts it ([`control::vouch`]).
#[allow(clippy::too_many_arguments)]
pub fn apply_batch(
    provider: &mut Client,
    subscriber: &mut Client,
    consumer: &Consumer,
    batch: &Batch,
    applier: &mut Applier,
    route: &dyn Fn(&Event) -> Route,
    vouch: &mut dyn FnMut(&Event) -> Result<()>,
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
        Some(done) if done < batch.prev_tick_id => {
            // The subscriber lost batches the provider had finished (restored from a backup,
            // or commits lost in a crash): take the consumer back to where the subscriber is,
            // while the queue still holds the events from there.
            drop(stx);
            rewind(&mut ptx, consumer, done, batch)?;
            ptx.commit()
                .context("moving the consumer back on the provider")?;
            stats.duration = start.elapsed();
            return Ok(stats);
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
                let (send, chunks) = bounded::<Vec<Event>>(READ_AHEAD);
                let ptx = &mut ptx;
                let reader = scope.spawn(move || {
                    let stopped = |_| anyhow::anyhow!("the applying side stopped");
                    let (mut chunk, mut bytes) = (Vec::new(), 0);
                    consumer.for_each_event(ptx, batch, FETCH, |ev| {
                        bytes += ev.size();
                        chunk.push(ev);
                        if chunk.len() >= CHUNK_EVENTS || bytes >= CHUNK_BYTES {
                            send.send(std::mem::take(&mut chunk)).map_err(stopped)?;
                            bytes = 0;
                        }
                        Ok(())
                    })?;
                    send.send(chunk).map_err(stopped)
                });
                for ev in chunks.iter().flatten() {
                    let dest = match route(&ev) {
                        Route::Apply(dest) => dest,
                        Route::Execute(dests) => {
                            applier.flush(&mut stx)?;
                            control::run_script(&mut stx, queue, &ev, &dests, vouch)?;
                            // The script may have changed any table's columns, and it reset
                            // the session's settings.
                            applier.reset();
                            applier.begin(&mut stx)?;
                            stats.applied += 1;
                            continue;
                        }
                        Route::RemoveTable => {
                            applier.flush(&mut stx)?;
                            if control::remove_table(&mut stx, queue, &ev, vouch)? {
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

/// Moves `consumer` back to tick `done` (where the subscriber is), dropping `batch`; fails
/// with what to do when the queue no longer holds that tick, and so not every event after it.
fn rewind(ptx: &mut Transaction<'_>, consumer: &Consumer, done: i64, batch: &Batch) -> Result<()> {
    let name = consumer.name();
    ptx.query_one(
        "select pgq.register_consumer_at($1, $2, $3)",
        &[&consumer.queue(), &name, &done],
    )
    .with_context(|| {
        format!(
            "{name}: the subscriber has applied up to tick {done}, behind the queue's position \
             (ticks {} to {}), and the consumer cannot be moved back there: if the queue no \
             longer holds that tick, resync the tables (`subscriber resync`)",
            batch.prev_tick_id, batch.tick_id
        )
    })?;
    log::warn!(
        "{name}: the subscriber has applied up to tick {done} but the provider had finished up \
         to tick {}: the subscriber lost batches it had committed (restored from a backup, or \
         a crash with synchronous_commit off); moved the consumer back to tick {done} to \
         apply them again",
        batch.prev_tick_id
    );
    Ok(())
}
