//! One batch applied exactly once: its events read from the provider, routed, applied in one
//! subscriber transaction with the record of its tick, then finished on the provider.
//!
//! Exactly once: the subscriber stores the last applied tick of the consumer in
//! `londiste.applied_ticks`, in the same transaction as the batch's changes. The batch is
//! finished on the provider only after that commit. After a crash between the two the queue
//! hands out the same batch again, and the stored tick shows it is applied already.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossbeam_channel::bounded;
use postgres::{Client, Transaction};

use crate::base::names::TableName;
use crate::queue::consumer::{Batch, Consumer, Event};
use crate::replay::apply::{Applier, Decoded, Decoder};
use crate::replay::control;
use crate::replay::state::{applied_tick, record_tick};

/// Events of the first fetch from the batch cursor: one, as nothing tells yet how wide they
/// are (a batch of up to [`FETCH`] events takes two fetches all the same) ...
const FETCH_FIRST: i32 = 1;
/// ... then at most this many at a time ...
const FETCH: i32 = 1000;
/// ... and about this many bytes of them, by the widest event of the fetch before.
const FETCH_BYTES: usize = 256 << 10;
/// The reader hands events to the applier in chunks of at most this many events ...
const CHUNK_EVENTS: usize = 128;
/// ... or of about this many bytes (a wider event makes a chunk of its own).
const CHUNK_BYTES: usize = 256 << 10;
/// Chunks the reader may have read ahead of the applier: more events than the applier
/// holds before it applies them (its 2,500), so that the provider is read while the
/// subscriber applies; for small events the bytes below bound it first ...
const READ_AHEAD: usize = 32;
/// ... and the bytes of events it may hold, counting the chunk being applied (one chunk
/// goes ahead whatever its size).
const READ_AHEAD_BYTES: usize = 1 << 20;
/// What an event takes besides its text, for [`READ_AHEAD_BYTES`].
const EVENT_OVERHEAD: usize = 128;

/// What to do with one event of a batch.
pub enum Route<'t> {
    /// Apply it to this table.
    Apply(&'t TableName),
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
pub fn apply_batch<'t>(
    provider: &mut Client,
    subscriber: &mut Client,
    consumer: &Consumer,
    batch: &Batch,
    applier: &mut Applier,
    route: &dyn Fn(&Event) -> Route<'t>,
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
            // queues those already read, within a budget of bytes read ahead.
            let budget = Budget::default();
            let mut decoder = Decoder::new();
            std::thread::scope(|scope| -> Result<()> {
                let (send, chunks) = bounded::<(Vec<Event>, usize)>(READ_AHEAD);
                let ptx = &mut ptx;
                let budget = &budget;
                // Ends the reader's wait for room when this side stops, by an error too.
                let _closing = Closing(budget);
                let reader = scope.spawn(move || {
                    let stopped = || anyhow::anyhow!("the applying side stopped");
                    let (mut chunk, mut bytes) = (Vec::new(), 0);
                    let hand_over = |chunk: Vec<Event>, bytes: usize| {
                        if !budget.take(bytes) {
                            return Err(stopped());
                        }
                        send.send((chunk, bytes)).map_err(|_| stopped())
                    };
                    consumer.for_each_event(
                        ptx,
                        batch,
                        [FETCH_FIRST, FETCH],
                        FETCH_BYTES,
                        |ev| {
                            bytes += ev.size() + EVENT_OVERHEAD;
                            chunk.push(ev);
                            if chunk.len() >= CHUNK_EVENTS || bytes >= CHUNK_BYTES {
                                hand_over(std::mem::take(&mut chunk), std::mem::take(&mut bytes))?;
                            }
                            Ok(())
                        },
                    )?;
                    hand_over(chunk, bytes)
                });
                for (chunk, bytes) in chunks.iter() {
                    for ev in chunk {
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
                        let decoded = decoder
                            .decode(ev.ev_type.as_deref().unwrap_or(""), ev.data.as_deref())
                            .with_context(|| format!("event {} of batch {}", ev.id, batch.id))?;
                        let id = ev.id;
                        // Its text is decoded: not held while the rows are applied.
                        drop(ev);
                        match decoded {
                            Decoded::Row(row) => applier.push(&mut stx, dest, row, id)?,
                            Decoded::Truncate => applier.truncate(&mut stx, dest)?,
                            Decoded::Other => {
                                stats.ignored += 1;
                                continue;
                            }
                        }
                        stats.applied += 1;
                    }
                    budget.give(bytes);
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

/// Bytes of events the reader holds or has handed over, not yet applied: it waits while
/// another chunk would take them past [`READ_AHEAD_BYTES`].
#[derive(Default)]
struct Budget {
    /// Bytes out, and whether the applying side has stopped.
    state: Mutex<(usize, bool)>,
    freed: Condvar,
}

impl Budget {
    /// Waits until `bytes` more fit (or nothing is out) and counts them; false if the
    /// applying side stopped.
    fn take(&self, bytes: usize) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.1 && state.0 > 0 && state.0 + bytes > READ_AHEAD_BYTES {
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.0 += bytes;
        !state.1
    }

    /// `bytes` have been applied.
    fn give(&self, bytes: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = state.0.saturating_sub(bytes);
        self.freed.notify_all();
    }
}

/// Tells the reader, when dropped, that the applying side has stopped.
struct Closing<'a>(&'a Budget);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock().unwrap_or_else(|e| e.into_inner());
        state.1 = true;
        self.0.freed.notify_all();
    }
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
