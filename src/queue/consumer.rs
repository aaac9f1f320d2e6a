//! A PgQ consumer: take the next batch, stream its events, finish it.
//!
//! A batch is the set of events between two ticks of the queue (defined by the two tick
//! snapshots, never by event ids), handed out by `pgq.next_batch_info` and kept by the queue
//! until `pgq.finish_batch`: asking again before finishing returns the same batch, so a
//! consumer that dies mid-batch gets it again. Events are read through a cursor
//! (`pgq.get_batch_cursor`) in fetches of a fixed size, so a batch of millions of events
//! never sits in memory.

use std::time::SystemTime;

use anyhow::{Context, Result};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{ToSql, Type};
use postgres::{GenericClient, Row, RowIter, Transaction};

/// How far one consumer of a queue is: a row of `pgq.get_consumer_info`, durations in
/// seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct ConsumerInfo {
    /// The queue.
    pub queue: String,
    /// The consumer.
    pub name: String,
    /// The age of the last tick it finished.
    pub lag: Option<f64>,
    /// Since it last asked for or finished a batch.
    pub last_seen: Option<f64>,
    /// The last tick it finished.
    pub last_tick: Option<i64>,
    /// Its open batch.
    pub current_batch: Option<i64>,
    /// The tick its open batch ends at.
    pub next_tick: Option<i64>,
    /// Events ticked since its last tick (not those not yet ticked).
    pub pending_events: Option<i64>,
}

impl ConsumerInfo {
    /// How far behind it is, for `--max-lag`: its lag, or none at all where `pending` (its
    /// pending events, those not yet ticked included) is 0. An idle queue ticks only every
    /// `ticker_idle_period`, so the last tick ages while nothing waits for the consumer.
    pub fn behind(&self, pending: Option<i64>) -> Option<f64> {
        if pending == Some(0) {
            Some(0.0)
        } else {
            self.lag
        }
    }
}

/// The consumers of `queue` (of every queue: None), by queue and name.
pub fn consumer_info(
    client: &mut impl GenericClient,
    queue: Option<&str>,
) -> Result<Vec<ConsumerInfo>> {
    let columns = "select queue_name, consumer_name, extract(epoch from lag)::float8, \
                          extract(epoch from last_seen)::float8, last_tick, current_batch, \
                          next_tick, pending_events";
    let rows = match queue {
        Some(queue) => client.query(
            &format!("{columns} from pgq.get_consumer_info($1) order by 1, 2"),
            &[&queue],
        ),
        None => client.query(
            &format!("{columns} from pgq.get_consumer_info() order by 1, 2"),
            &[],
        ),
    }
    .with_context(|| match queue {
        Some(queue) => format!("reading the consumers of queue {queue}"),
        None => "reading the consumers".to_string(),
    })?;
    rows.iter()
        .map(|r| {
            Ok(ConsumerInfo {
                queue: r.try_get(0)?,
                name: r.try_get(1)?,
                lag: r.try_get(2)?,
                last_seen: r.try_get(3)?,
                last_tick: r.try_get(4)?,
                current_batch: r.try_get(5)?,
                next_tick: r.try_get(6)?,
                pending_events: r.try_get(7)?,
            })
        })
        .collect::<Result<_, postgres::Error>>()
        .context("reading pgq.get_consumer_info")
}

/// Name of the cursor that streams a batch's events.
const CURSOR: &str = "skyrep_batch_events";

/// One batch: the events between ticks `prev_tick_id` and `tick_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Batch id, valid until the batch is finished.
    pub id: i64,
    /// Tick the batch starts after.
    pub prev_tick_id: i64,
    /// Tick the batch ends at.
    pub tick_id: i64,
    /// Time of the ending tick (the batch's events were committed before it).
    pub tick_time: SystemTime,
}

/// One queued event, as PgQ stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event id, unique in its queue.
    pub id: i64,
    /// When the event was inserted.
    pub time: SystemTime,
    /// Transaction that inserted it.
    pub txid: i64,
    /// How often it was retried (`None` for a first delivery).
    pub retry: Option<i32>,
    /// `ev_type`, e.g. `I:id` for a row insert.
    pub ev_type: Option<String>,
    /// `ev_data`, e.g. the url-encoded row.
    pub data: Option<String>,
    /// `ev_extra1`, e.g. the table name.
    pub extra1: Option<String>,
    /// `ev_extra2`.
    pub extra2: Option<String>,
    /// `ev_extra3`.
    pub extra3: Option<String>,
    /// `ev_extra4`.
    pub extra4: Option<String>,
}

impl Event {
    /// Bytes of text the event holds, about what it takes in memory.
    pub fn size(&self) -> usize {
        [
            &self.ev_type,
            &self.data,
            &self.extra1,
            &self.extra2,
            &self.extra3,
            &self.extra4,
        ]
        .iter()
        .map(|field| field.as_ref().map_or(0, String::len))
        .sum()
    }

    /// The event in a row of `pgq.get_batch_cursor` or a fetch from its cursor, whose
    /// columns come in this order (by position: no name is looked up for every event).
    fn from_row(row: &Row) -> Result<Event> {
        Ok(Event {
            id: row.try_get(0)?,
            time: row.try_get(1)?,
            txid: row.try_get(2)?,
            retry: row.try_get(3)?,
            ev_type: row.try_get(4)?,
            data: row.try_get(5)?,
            extra1: row.try_get(6)?,
            extra2: row.try_get(7)?,
            extra3: row.try_get(8)?,
            extra4: row.try_get(9)?,
        })
    }
}

/// A transaction snapshot as `txid_current_snapshot()` prints it: `xmin:xmax:xip,...`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    xmin: i64,
    xmax: i64,
    xip: Vec<i64>,
}

impl Snapshot {
    /// Parses `xmin:xmax:xip1,xip2`.
    pub fn parse(text: &str) -> Result<Snapshot> {
        let bad = || anyhow::anyhow!("bad snapshot `{text}`");
        let mut parts = text.trim().splitn(3, ':');
        let xmin = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let xmax = parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
        let xip = match parts.next() {
            Some("") | None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().map_err(|_| bad()))
                .collect::<Result<Vec<i64>>>()?,
        };
        Ok(Snapshot { xmin, xmax, xip })
    }

    /// Whether transaction `txid` had committed when the snapshot was taken (its changes are
    /// in what the snapshot sees).
    pub fn sees(&self, txid: i64) -> bool {
        txid < self.xmin || (txid < self.xmax && !self.xip.contains(&txid))
    }

    /// Whether this snapshot sees every transaction that `other` sees.
    pub fn covers(&self, other: &Snapshot) -> bool {
        // What `other` sees lies below its xmax; below our xmax we miss only our xip.
        other.xmax <= self.xmax && self.xip.iter().all(|&txid| !other.sees(txid))
    }
}

/// A named consumer of one queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    queue: String,
    name: String,
}

impl Consumer {
    /// The consumer `name` of queue `queue`.
    pub fn new(queue: &str, name: &str) -> Consumer {
        Consumer {
            queue: queue.to_string(),
            name: name.to_string(),
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Registers the consumer at the queue's latest tick; `false` if it was registered.
    pub fn register(&self, client: &mut impl GenericClient) -> Result<bool> {
        let n: i32 = client
            .query_one(
                "select pgq.register_consumer($1, $2)",
                &[&self.queue, &self.name],
            )
            .and_then(|row| row.try_get(0))
            .with_context(|| {
                format!("registering consumer {} on queue {}", self.name, self.queue)
            })?;
        Ok(n == 1)
    }

    /// Removes the consumer (and its retry events); `false` if it was not registered.
    pub fn unregister(&self, client: &mut impl GenericClient) -> Result<bool> {
        let n: i32 = client
            .query_one(
                "select pgq.unregister_consumer($1, $2)",
                &[&self.queue, &self.name],
            )
            .and_then(|row| row.try_get(0))
            .with_context(|| {
                format!(
                    "unregistering consumer {} from queue {}",
                    self.name, self.queue
                )
            })?;
        Ok(n > 0)
    }

    /// The next batch, or the unfinished one handed out before; `None` when no tick is
    /// waiting.
    pub fn next_batch(&self, client: &mut impl GenericClient) -> Result<Option<Batch>> {
        self.batch_row(
            client,
            "select batch_id, prev_tick_id, cur_tick_id, cur_tick_time \
             from pgq.next_batch_info($1, $2)",
            &[(&self.queue, Type::TEXT), (&self.name, Type::TEXT)],
        )
    }

    /// Like [`Consumer::next_batch`], but when at least `events` events wait past the
    /// consumer's position, the batch spans several ticks: up to the first tick with that
    /// many events after the position (the newest tick where that is at most twice as
    /// many), PgQ's `next_batch_custom` with a minimum count. Behind, one batch then does
    /// the work of many, each with its fixed cost; caught up, a batch is one tick as before.
    /// Exactly once all the same: a batch is still the events between two ticks' snapshots,
    /// handed out again until finished.
    pub fn next_batch_of(
        &self,
        client: &mut impl GenericClient,
        events: u32,
    ) -> Result<Option<Batch>> {
        let at_least = i32::try_from(events).unwrap_or(i32::MAX);
        let merged = self.batch_row(
            client,
            "select batch_id, prev_tick_id, cur_tick_id, cur_tick_time \
             from pgq.next_batch_custom($1, $2, null, $3, null)",
            &[
                (&self.queue, Type::TEXT),
                (&self.name, Type::TEXT),
                (&at_least, Type::INT4),
            ],
        )?;
        match merged {
            Some(batch) => Ok(Some(batch)),
            None => self.next_batch(client),
        }
    }

    /// Runs `sql`, a query for one batch row (id, previous tick, tick, tick time), with
    /// `params`; `None` when it answers no batch.
    fn batch_row(
        &self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Option<Batch>> {
        let row = client
            // Typed: one round trip instead of two (a prepare, then the query). The same for
            // the other queries made for every batch.
            .query_typed_one(sql, params)
            .with_context(|| {
                format!(
                    "asking queue {} for the next batch of {}",
                    self.queue, self.name
                )
            })?;
        // Every column is checked: a NULL here (say, from a pgq of another make, or a
        // session taking this consumer's batches at the same time) is an error to retry.
        let unexpected = || {
            format!(
                "queue {} answered the next batch of {} with a NULL or bad value",
                self.queue, self.name
            )
        };
        let Some(id) = row.try_get::<_, Option<i64>>(0).with_context(unexpected)? else {
            return Ok(None);
        };
        let batch = (|| -> Result<Batch> {
            Ok(Batch {
                id,
                prev_tick_id: row.try_get(1)?,
                tick_id: row.try_get(2)?,
                tick_time: row.try_get(3)?,
            })
        })()
        .with_context(|| format!("batch {id}"))
        .with_context(unexpected)?;
        Ok(Some(batch))
    }

    /// Streams the batch's events, in event id order, to `each`, inside transaction `tx` (the
    /// cursor lives as long as the transaction). `[first, fetch]`: the first fetch asks for
    /// `first` rows, each next one for at most `fetch`, and for fewer when the widest event of
    /// the fetch before was wide: about `fetch_bytes` of them (at least one), so a batch of
    /// megabyte rows is not fetched hundreds at a time. Returns the number of events.
    pub fn for_each_event(
        &self,
        tx: &mut Transaction<'_>,
        batch: &Batch,
        [first, fetch]: [i32; 2],
        fetch_bytes: usize,
        mut each: impl FnMut(Event) -> Result<()>,
    ) -> Result<u64> {
        let context = || format!("reading batch {} of queue {}", batch.id, self.queue);
        let mut asked = first.max(1);
        // Rows are taken from the server as they arrive, never a whole fetch at once: wide
        // rows then take no more memory than those `each` holds on to.
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&batch.id, Type::INT8),
            (&CURSOR, Type::TEXT),
            (&asked, Type::INT4),
        ];
        let first = tx
            .query_typed_raw("select * from pgq.get_batch_cursor($1, $2, $3)", params)
            .with_context(context)?;
        let (mut got, mut widest) = each_row(first, &mut each).with_context(context)?;
        let mut count = got;
        while got == asked as u64 {
            let rows_fitting = fetch_bytes / widest.max(1);
            asked = i32::try_from(rows_fitting)
                .unwrap_or(i32::MAX)
                .clamp(1, fetch.max(1));
            // Typed with no parameters: one round trip (parse, bind and execute together).
            let rows = tx
                .query_typed_raw(
                    &format!("fetch {asked} from {CURSOR}"),
                    std::iter::empty::<(&(dyn ToSql + Sync), Type)>(),
                )
                .with_context(context)?;
            (got, widest) = each_row(rows, &mut each).with_context(context)?;
            count += got;
        }
        tx.batch_execute(&format!("close {CURSOR}"))
            .with_context(context)?;
        Ok(count)
    }

    /// Puts event `event_id` of the batch back into the queue for this consumer, to come
    /// again after `seconds`.
    pub fn retry_event(
        &self,
        client: &mut impl GenericClient,
        batch: &Batch,
        event_id: i64,
        seconds: i32,
    ) -> Result<()> {
        client
            .query_one(
                "select pgq.event_retry($1, $2, $3)",
                &[&batch.id, &event_id, &seconds],
            )
            .with_context(|| format!("retrying event {event_id} of batch {}", batch.id))?;
        Ok(())
    }

    /// Marks the batch done: the next call of [`Consumer::next_batch`] moves on.
    pub fn finish_batch(&self, client: &mut impl GenericClient, batch: &Batch) -> Result<()> {
        let n: i32 = client
            .query_typed_one("select pgq.finish_batch($1)", &[(&batch.id, Type::INT8)])
            .and_then(|row| row.try_get(0))
            .with_context(|| format!("finishing batch {} of queue {}", batch.id, self.queue))?;
        anyhow::ensure!(
            n == 1,
            "batch {} of queue {} was not open",
            batch.id,
            self.queue
        );
        Ok(())
    }
}

/// The columns of a batch's events, in the order [`Event::from_row`] reads them.
const EVENT_COLUMNS: [&str; 10] = [
    "ev_id",
    "ev_time",
    "ev_txid",
    "ev_retry",
    "ev_type",
    "ev_data",
    "ev_extra1",
    "ev_extra2",
    "ev_extra3",
    "ev_extra4",
];

/// Passes each row of `rows` as an event to `each`, as it arrives; returns how many, and the
/// size of the widest ([`Event::size`]).
fn each_row(
    mut rows: RowIter<'_>,
    each: &mut impl FnMut(Event) -> Result<()>,
) -> Result<(u64, usize)> {
    let (mut n, mut widest) = (0, 0);
    while let Some(row) = rows.next()? {
        if n == 0 {
            let names = row.columns().iter().map(|c| c.name());
            anyhow::ensure!(
                names.eq(EVENT_COLUMNS),
                "the batch's events come with columns ({}), not ({})",
                row.columns()
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", "),
                EVENT_COLUMNS.join(", ")
            );
        }
        let event = Event::from_row(&row)?;
        widest = widest.max(event.size());
        each(event)?;
        n += 1;
    }
    Ok((n, widest))
}

#[cfg(test)]
mod tests {
    use super::Snapshot;

    #[test]
    fn snapshot_visibility() {
        let s = Snapshot::parse("100:110:102,105").unwrap();
        assert!(s.sees(99) && s.sees(101) && s.sees(109));
        assert!(!s.sees(102) && !s.sees(105) && !s.sees(110) && !s.sees(200));
        assert!(Snapshot::parse("5:5:").unwrap().sees(4));
        let copy = Snapshot::parse("100:110:102,105").unwrap();
        let covers = |tick: &str| Snapshot::parse(tick).unwrap().covers(&copy);
        assert!(covers("100:110:102,105") && covers("102:112:102,105,111") && covers("120:120:"));
        // Misses 101, which the copy saw; or sees nothing from 100 up.
        assert!(!covers("101:110:101") && !covers("100:100:") && !covers("99:109:"));
        assert!(Snapshot::parse("x:1:").is_err());
    }
}
