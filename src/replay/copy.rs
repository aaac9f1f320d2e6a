//! The copy threads: the initial copy of a newly added table and its hand-over to replay.
//!
//! `parallel_copies` threads work side by side, each on one table at a time; a lock held by
//! the thread's subscriber session (`claim`) keeps two threads off one table.
//!
//! For a table in state `in-copy` it registers a copy consumer on the queue, opens a
//! REPEATABLE READ transaction on the provider, records its snapshot and the queue's last
//! tick, empties the subscriber table and streams `COPY ... TO STDOUT` straight into
//! `COPY ... FROM STDIN`, then commits the copy together with state `catching-up` and the
//! snapshot. The copy consumer, positioned at that tick, then applies this table's events
//! that the snapshot did not see, batch by batch and exactly once (like replay), until the
//! queue has no more batches: state `wanna-sync:TICK`. Replay answers `do-sync:POS` once it
//! has applied up to POS (at least TICK) and waits; the copy catches up to exactly POS and
//! sets `ok` in the transaction of its last batch. A crash anywhere leaves a state this
//! thread or replay continues from: a half-done copy is rolled back and done again.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crossbeam_channel::{Receiver, Sender, bounded, select};
use postgres::error::SqlState;
use postgres::{CancelToken, Client, IsolationLevel};

use crate::base::error::one_line;
use crate::base::names::{TableName, quote_ident};
use crate::db;
use crate::db::connstr::Resolved;
use crate::queue::consumer::{Consumer, Snapshot};
use crate::replay::apply::Applier;
use crate::replay::aside;
use crate::replay::batch::{Route, apply_batch};
use crate::replay::job::{Connections, Job};
use crate::replay::progress::{self, Counters, Estimate};
use crate::replay::session::{LastError, Thread, sessions, stopped_within};
use crate::replay::state::{
    MergeState, SubscriberTable, applied_tick, check_state, forget_tick, load_tables, set_state,
};

/// How often a running COPY logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How long setting aside a table's indexes, keys and triggers waits for a lock at a time.
const ASIDE_WAIT: Duration = Duration::from_millis(200);

/// How long a copy thread sleeps when it has nothing to do and nobody wakes it.
const IDLE: Duration = Duration::from_secs(1);

/// What the copy threads share with each other and with the replay thread.
pub struct Pool {
    /// Woken by the replay thread when it hands a table to the copy threads.
    woken: Receiver<()>,
    /// Wakes the replay thread after each step of a copy, since the next step is often its.
    wake_replay: Sender<()>,
    /// When work on a table last failed (by qualified name), so that the threads try other
    /// tables first and one that keeps failing does not hold up the rest.
    failed: Mutex<HashMap<String, Instant>>,
}

impl Pool {
    /// A pool woken through `woken` that wakes the replay thread through `wake_replay`.
    pub fn new(woken: Receiver<()>, wake_replay: Sender<()>) -> Pool {
        Pool {
            woken,
            wake_replay,
            failed: Mutex::new(HashMap::new()),
        }
    }

    fn failed(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A copy thread: works on tables in copy-owned states until asked to stop.
/// Thread `n` works while `n` is within `parallel_copies`; past it, it waits without
/// connections until a reload raises the setting.
pub fn run(job: &Job, n: u32, stop: &Receiver<()>, pool: &Pool) {
    loop {
        while n > job.parallel_copies.get() {
            if stopped_within(stop, IDLE) {
                return;
            }
        }
        sessions(job, Thread::Copy(n), stop, |last_error| {
            session(job, n, stop, pool, last_error)
        });
        if stopped_within(stop, Duration::ZERO) {
            return;
        }
    }
}

/// Takes (`take`) or gives back the right of this copy thread to work on `table`: a lock
/// held by its subscriber session, so that the pool's threads never work on one table at
/// once and a thread that dies gives the table back with its connection. Taking returns
/// false if another thread holds it.
fn claim(subscriber: &mut Client, queue: &str, table: &TableName, take: bool) -> Result<bool> {
    let sql = if take {
        "select pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext('skyrep copy'), \
                pg_catalog.hashtext($1 || ' ' || $2))"
    } else {
        "select pg_catalog.pg_advisory_unlock(pg_catalog.hashtext('skyrep copy'), \
                pg_catalog.hashtext($1 || ' ' || $2))"
    };
    subscriber
        .query_one(sql, &[&queue, &table.qualified()])
        .and_then(|row| row.try_get(0))
        .with_context(|| format!("claiming {table} for a copy thread"))
}

/// Runs `work`; if `stop` disconnects meanwhile, cancels the statement running in the
/// provider session of `token` so that `work` ends with an error instead of running on.
fn until_stopped<T>(
    stop: &Receiver<()>,
    token: &CancelToken,
    provider: &Resolved,
    work: impl FnOnce() -> T,
) -> T {
    let (done, finished) = bounded::<()>(0);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            select! {
                recv(stop) -> _ => {
                    if let Err(e) = db::cancel(token, provider) {
                        log::warn!("{}", one_line(&e));
                    }
                }
                recv(finished) -> _ => {}
            }
        });
        let result = work();
        drop(done);
        result
    })
}

/// How long a copy thread waits before it looks again for the tick a hand-over needs: short,
/// since it is a single query and the table (and with one copy thread, the tables after it)
/// waits meanwhile.
fn handover_poll(job: &Job) -> Duration {
    job.loop_delay.get().min(Duration::from_millis(100))
}

/// The snapshot of tick `tick` of `queue`.
fn tick_snapshot(provider: &mut Client, queue: &str, tick: i64) -> Result<Snapshot> {
    let text: String = provider
        .query_one(
            "select t.tick_snapshot::text from pgq.tick t \
             join pgq.queue q on q.queue_id = t.tick_queue \
             where q.queue_name = $1 and t.tick_id = $2",
            &[&queue, &tick],
        )
        .and_then(|row| row.try_get(0))
        .with_context(|| format!("reading tick {tick} of queue {queue}"))?;
    Snapshot::parse(&text)
}

/// The copy consumer's name for a table.
fn copy_consumer(job: &Job, table: &TableName) -> Consumer {
    Consumer::new(&job.queue, &copy_consumer_name(&job.consumer, table))
}

/// The name of the consumer that catches `table` up after its copy, for replay's `consumer`.
pub fn copy_consumer_name(consumer: &str, table: &TableName) -> String {
    format!("{}{}", copy_consumer_prefix(consumer), table.qualified())
}

/// How the names of replay's `consumer`'s copy consumers begin.
pub fn copy_consumer_prefix(consumer: &str) -> String {
    format!("{consumer}.copy.")
}

/// Works until asked to stop, or until thread `n` is past `parallel_copies`.
fn session(
    job: &Job,
    n: u32,
    stop: &Receiver<()>,
    pool: &Pool,
    last_error: &mut LastError,
) -> Result<()> {
    let mut conns = Connections::open(job)?;
    loop {
        if stopped_within(stop, Duration::ZERO) || n > job.parallel_copies.get() {
            return Ok(());
        }
        let (provider, subscriber, applier) = conns.next_round(job)?;
        let tables = load_tables(subscriber, &job.queue)?;
        // The first copy-owned table that no other copy thread works on; tables whose work
        // failed last, the least recently failed first.
        let mut candidates: Vec<(Option<Instant>, &SubscriberTable)> = {
            let failed = pool.failed();
            tables
                .iter()
                .filter(|t| copy_owned(t.state))
                .map(|t| (failed.get(&t.table.qualified()).copied(), t))
                .collect()
        };
        candidates.sort_by_key(|(failed_at, _)| *failed_at);
        let mut work = None;
        for (_, table) in candidates {
            if !claim(subscriber, &job.queue, &table.table, true)? {
                continue;
            }
            // The list was read before the claim: the thread that held the table until now
            // may have moved it on (to `ok`, say), so work from its state as it is now.
            let now = load_tables(subscriber, &job.queue)?
                .into_iter()
                .find(|t| t.table == table.table);
            match now {
                Some(now) if copy_owned(now.state) => {
                    work = Some(now);
                    break;
                }
                _ => {
                    claim(subscriber, &job.queue, &table.table, false)?;
                }
            }
        }
        let Some(table) = work else {
            // Also what a crash left between a table's `ok` and putting its objects back.
            aside::restore_ready(subscriber, &job.queue)?;
            last_error.succeeded(subscriber)?;
            select! {
                recv(stop) -> _ => return Ok(()),
                recv(pool.woken) -> _ => {},
                default(IDLE) => {},
            }
            continue;
        };
        let worked = work_on(job, stop, provider, subscriber, applier, &table);
        if worked.is_err() {
            pool.failed()
                .insert(table.table.qualified(), Instant::now());
        } else {
            pool.failed().remove(&table.table.qualified());
        }
        worked?;
        claim(subscriber, &job.queue, &table.table, false)?;
        let _ = pool.wake_replay.try_send(());
        aside::restore_ready(subscriber, &job.queue)?;
        last_error.succeeded(subscriber)?;
    }
}

/// Whether a table in `state` is the copy threads' to work on.
fn copy_owned(state: MergeState) -> bool {
    matches!(
        state,
        MergeState::InCopy | MergeState::CatchingUp | MergeState::DoSync(_)
    )
}

/// Does the next step of the copy of `table`, by its state.
fn work_on(
    job: &Job,
    stop: &Receiver<()>,
    provider: &mut Client,
    subscriber: &mut Client,
    applier: &mut Applier,
    table: &SubscriberTable,
) -> Result<()> {
    match table.state {
        MergeState::InCopy => copy_table(job, stop, provider, subscriber, table)?,
        MergeState::CatchingUp => {
            if !catch_up(job, provider, subscriber, applier, table, None)? {
                // Caught up with the queue: ask replay to take over.
                let position = position(provider, &copy_consumer(job, &table.table))?;
                set_state(
                    subscriber,
                    &job.queue,
                    &table.table,
                    MergeState::CatchingUp,
                    MergeState::WannaSync(position),
                    table.snapshot.as_deref(),
                )?;
            }
        }
        MergeState::DoSync(target) => {
            catch_up(job, provider, subscriber, applier, table, Some(target))?;
        }
        _ => unreachable!("filtered above"),
    }
    Ok(())
}

/// Where the consumer is: the tick its next batch starts after.
fn position(provider: &mut Client, consumer: &Consumer) -> Result<i64> {
    let row = provider
        .query_opt(
            "select last_tick from pgq.get_consumer_info($1, $2)",
            &[&consumer.queue(), &consumer.name()],
        )?
        .with_context(|| format!("copy consumer {} is not registered", consumer.name()))?;
    row.try_get(0)
        .with_context(|| format!("reading the position of copy consumer {}", consumer.name()))
}

/// `in-copy` → `catching-up`: copies the table in one subscriber transaction.
fn copy_table(
    job: &Job,
    stop: &Receiver<()>,
    provider: &mut Client,
    subscriber: &mut Client,
    table: &SubscriberTable,
) -> Result<()> {
    let consumer = copy_consumer(job, &table.table);
    let cancel = provider.cancel_token();
    // Register first, at the queue's newest tick, so that no event table the copy will need
    // is rotated away while the COPY runs; it is moved to the copy's own tick below.
    consumer.unregister(provider)?;
    consumer.register(provider)?;
    let columns = provider_columns(provider, &table.table)?;
    // Generated columns can be neither read nor written by COPY: the subscriber computes
    // its own, and one generated only on the provider is read through a query.
    let computed = generated_columns(subscriber, &table.dest)?;
    let columns: Vec<String> = columns
        .into_iter()
        .filter(|c| !computed.contains(c))
        .collect();
    let by_query = generated_columns(provider, &table.table)?
        .iter()
        .any(|c| columns.contains(c));
    let aside = set_aside(stop, subscriber, &job.queue, table)?;
    if aside != aside::SetAside::default() {
        log::info!(
            "{}: set aside {} indexes, {} foreign keys, {} triggers until the copy is done",
            table.dest,
            aside.indexes,
            aside.fkeys,
            aside.triggers
        );
    }
    let mut ptx = provider
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .context("starting the copy transaction")?;
    // The first statement fixes the snapshot that the COPY below reads.
    let row = ptx.query_one(
        "select pg_catalog.txid_current_snapshot()::text, (select last_tick_id from pgq.get_queue_info($1))",
        &[&job.queue],
    )?;
    let (snapshot, tick): (String, Option<i64>) = (
        row.try_get(0).context("reading the copy's snapshot")?,
        row.try_get(1).context("reading the queue's last tick")?,
    );
    let tick = tick.with_context(|| format!("queue {} has no tick", job.queue))?;
    let mut stx = subscriber.transaction()?;
    stx.batch_execute("set local skyrep.replay = on")?;
    forget_tick(&mut stx, &job.queue, consumer.name())?;
    if !table.skip_truncate {
        stx.batch_execute(&format!("truncate only {}", table.dest.quoted()))
            .with_context(|| format!("emptying {}", table.dest))?;
    }
    let column_list = columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    log::info!(
        "{}: copying from the provider (snapshot {snapshot}, tick {tick})",
        table.table
    );
    let estimate = Estimate::read(&mut ptx, &table.table, table.condition.is_some())?;
    // Until the indexes are built again, `status` shows how far the copy is.
    let (bytes, rows) = progress::reporting(job, &table.table, &estimate, |counters| {
        // A stop cancels the COPY (also while it waits for a lock): it is rolled back and
        // starts again at the next run.
        let moved = until_stopped(stop, &cancel, &job.provider, || -> Result<(u64, u64)> {
            let mut reader = ptx
                .copy_out(&copy_out_sql(
                    &table.table,
                    &column_list,
                    table.condition.as_deref().or(by_query.then_some("true")),
                ))
                .with_context(|| format!("reading {} from the provider", table.table))?;
            let mut writer = stx
                .copy_in(&format!(
                    "copy {} ({column_list}) from stdin",
                    table.dest.quoted()
                ))
                .with_context(|| format!("writing {}", table.dest))?;
            let bytes = pipe(&table.table, &estimate, counters, &mut reader, &mut writer)
                .with_context(|| format!("copying {}", table.table))?;
            drop(reader);
            let rows = writer
                .finish()
                .with_context(|| format!("finishing the copy of {}", table.dest))?;
            Ok((bytes, rows))
        })?;
        ptx.commit()?;
        let indexes = aside::rebuild_indexes(&mut stx, &job.queue, &table.table)?;
        if indexes > 0 {
            log::info!("{}: built {indexes} indexes again", table.dest);
        }
        Ok::<_, anyhow::Error>(moved)
    })?;
    // The copy consumer starts at the last tick the snapshot saw: later batches hold every
    // event the snapshot missed (and some it saw, which catching up skips).
    provider
        .query_one(
            "select pgq.register_consumer_at($1, $2, $3)",
            &[&job.queue, &consumer.name(), &tick],
        )
        .context("positioning the copy consumer")?;
    set_state(
        &mut stx,
        &job.queue,
        &table.table,
        MergeState::InCopy,
        MergeState::CatchingUp,
        Some(&snapshot),
    )?;
    stx.commit()
        .with_context(|| format!("committing the copy of {}", table.dest))?;
    log::info!(
        "{}: copied {rows} rows, {:.1} MB",
        table.table,
        bytes as f64 / 1e6
    );
    Ok(())
}

/// Sets aside what is on `table`'s destination ([`aside::set_aside`]) in a transaction of its
/// own, so that the locks it takes on tables joined by a foreign key are not held through the
/// COPY (replay goes on with those tables). Replay's batch may hold one of those tables while
/// it waits for one this holds (a script that writes the copied table), so each attempt waits
/// at most [`ASIDE_WAIT`] for a lock, less than PostgreSQL's deadlock_timeout: the copy gives
/// way and tries again, and neither is made a deadlock's victim.
fn set_aside(
    stop: &Receiver<()>,
    subscriber: &mut Client,
    queue: &str,
    table: &SubscriberTable,
) -> Result<aside::SetAside> {
    let what = || format!("setting aside what is on {}", table.dest);
    loop {
        let mut tx = subscriber.transaction().with_context(what)?;
        tx.batch_execute(&format!(
            "set local lock_timeout = {}",
            ASIDE_WAIT.as_millis()
        ))
        .with_context(what)?;
        match aside::set_aside(&mut tx, queue, &table.table, &table.dest) {
            Ok(aside) => {
                tx.commit().with_context(what)?;
                return Ok(aside);
            }
            Err(e) if db::sql_state(&e) == Some(&SqlState::LOCK_NOT_AVAILABLE) => {
                tx.rollback().with_context(what)?;
                log::debug!("{}: waiting for the tables it joins", table.dest);
                if stopped_within(stop, ASIDE_WAIT) {
                    bail!(
                        "{}: stopped while waiting to set aside what is on it",
                        table.dest
                    );
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The COPY that reads a table from the provider. Without a condition it reads the table
/// itself, which is faster than through a query; either way no rows of inheriting tables.
fn copy_out_sql(table: &TableName, column_list: &str, condition: Option<&str>) -> String {
    match condition {
        None => format!("copy {} ({column_list}) to stdout", table.quoted()),
        Some(c) => format!(
            "copy (select {column_list} from only {} where ({c})) to stdout",
            table.quoted()
        ),
    }
}

/// Streams the COPY data from the provider to the subscriber, counting rows and bytes into
/// `counters` and logging how far it is against the provider's `estimate` now and then;
/// returns the bytes moved.
fn pipe(
    table: &TableName,
    estimate: &Estimate,
    counters: &Counters,
    reader: &mut impl BufRead,
    writer: &mut impl Write,
) -> Result<u64> {
    let start = Instant::now();
    let mut next_report = start + PROGRESS_EVERY;
    let (mut bytes, mut chunks) = (0u64, 0u64);
    loop {
        // The reader's own buffer (one message of the COPY stream), written without a copy.
        let chunk = match reader.fill_buf() {
            Ok([]) => return Ok(bytes),
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        writer.write_all(chunk)?;
        let n = chunk.len();
        bytes += n as u64;
        // COPY's text format writes one row per line (newlines in values are escaped).
        let rows = chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        counters.add(rows, n as u64);
        reader.consume(n);
        chunks += 1;
        // The clock only now and then: a chunk is often a single row.
        if chunks % 1024 == 0 {
            let now = Instant::now();
            if now >= next_report {
                let elapsed = (now - start).as_secs_f64();
                let (rows, bytes) = counters.get();
                log::info!(
                    "{table}: copying at {:.1} MB/s, {}",
                    bytes as f64 / 1e6 / elapsed,
                    estimate.summary(rows, bytes, elapsed)
                );
                next_report = now + PROGRESS_EVERY;
            }
        }
    }
}

/// The names of `table`'s generated columns.
fn generated_columns(client: &mut Client, table: &TableName) -> Result<Vec<String>> {
    let rows = client
        .query(
            "select a.attname::text from pg_catalog.pg_attribute a \
             join pg_catalog.pg_class c on c.oid = a.attrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2 and a.attnum > 0 \
               and not a.attisdropped and a.attgenerated <> ''",
            &[&table.schema, &table.name],
        )
        .with_context(|| format!("reading the generated columns of {table}"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The provider table's column names, in order.
fn provider_columns(provider: &mut Client, table: &TableName) -> Result<Vec<String>> {
    let columns = crate::replay::subscriber::columns(provider, table)?;
    if columns.is_empty() {
        bail!("table {table} does not exist on the provider");
    }
    Ok(columns.into_iter().map(|(name, _)| name).collect())
}

/// Applies the table's events the copy did not see, batch by batch. With `target`, stops at
/// that tick and hands the table to replay (`ok`) in the same transaction as the last batch;
/// without, stops when the queue has no more batches. Returns true if it stopped at the
/// target, false if the queue ran out of batches.
fn catch_up(
    job: &Job,
    provider: &mut Client,
    subscriber: &mut Client,
    applier: &mut Applier,
    table: &SubscriberTable,
    target: Option<i64>,
) -> Result<bool> {
    let consumer = copy_consumer(job, &table.table);
    let snapshot = Snapshot::parse(
        table
            .snapshot
            .as_deref()
            .context("no copy snapshot recorded")?,
    )?;
    let name = table.table.qualified();
    let dest = table.dest.clone();
    applier.set_condition(&dest, table.condition.as_deref());
    let route = |ev: &crate::queue::consumer::Event| -> Route {
        if ev.extra1.as_deref() == Some(name.as_str()) && !snapshot.sees(ev.txid) {
            Route::Apply(&dest)
        } else {
            Route::Later
        }
    };
    let mut applied_total = 0;
    let mut tick_asked = false;
    loop {
        let at = {
            let mut tx = subscriber.transaction()?;
            let at = applied_tick(&mut tx, &job.queue, consumer.name())?;
            tx.commit()?;
            match at {
                Some(at) => at,
                None => position(provider, &consumer)?,
            }
        };
        if let Some(target) = target {
            if at == target {
                hand_to_replay(job, provider, subscriber, table, &consumer, target)?;
                return Ok(true);
            }
            if at > target {
                bail!(
                    "{}: the copy is at tick {at}, past replay's {target}",
                    table.table
                );
            }
        }
        let Some(batch) = consumer.next_batch(provider)? else {
            if target.is_some() {
                // The tick replay waits at is not there yet for this consumer: look again soon.
                std::thread::sleep(handover_poll(job));
                continue;
            }
            if !tick_snapshot(provider, &job.queue, at)?.covers(&snapshot) {
                // The copy saw transactions that committed after tick `at`: their events come
                // in a batch still to be ticked, which this copy must take (and skip) itself,
                // or replay would apply them again. An idle queue ticks seldom: ask for one.
                if !tick_asked {
                    provider
                        .query_one("select pgq.force_tick($1)", &[&job.queue])
                        .context("asking for a tick")?;
                    tick_asked = true;
                }
                std::thread::sleep(handover_poll(job));
                continue;
            }
            log::info!(
                "{}: caught up ({applied_total} events applied)",
                table.table
            );
            return Ok(false);
        };
        let last = target == Some(batch.tick_id);
        let expected = table.state;
        let (queue, table_name, consumer_name) = (
            job.queue.clone(),
            table.table.clone(),
            consumer.name().to_string(),
        );
        let applied = apply_batch(
            provider,
            subscriber,
            &consumer,
            &batch,
            applier,
            &route,
            // The route sends no control event here: replay acts on those.
            &mut |ev| bail!("event {}: a control event in a copy's catch-up", ev.id),
            &mut |tx| {
                // Replay sends the table back to be copied again if a script runs meanwhile:
                // this batch must not be committed then.
                check_state(tx, &queue, &table_name, expected)?;
                if last {
                    set_state(
                        tx,
                        &queue,
                        &table_name,
                        MergeState::DoSync(batch.tick_id),
                        MergeState::Ok,
                        None,
                    )?;
                    forget_tick(tx, &queue, &consumer_name)?;
                }
                Ok(())
            },
        );
        let stats = match applied {
            Ok(stats) => stats,
            Err(e) => {
                // Replay may have emptied the table and sent it back to be copied again (a
                // script) while this batch waited for it: say that, not what applying to the
                // emptied table met.
                check_state(subscriber, &job.queue, &table.table, expected)?;
                return Err(e);
            }
        };
        applied_total += stats.applied;
        if last {
            consumer.unregister(provider)?;
            log::info!(
                "{}: in sync at tick {}; replay takes over",
                table.table,
                batch.tick_id
            );
            return Ok(true);
        }
    }
}

/// The copy is already at replay's tick: `ok`, and the copy consumer goes away.
fn hand_to_replay(
    job: &Job,
    provider: &mut Client,
    subscriber: &mut Client,
    table: &SubscriberTable,
    consumer: &Consumer,
    target: i64,
) -> Result<()> {
    let mut tx = subscriber.transaction()?;
    set_state(
        &mut tx,
        &job.queue,
        &table.table,
        MergeState::DoSync(target),
        MergeState::Ok,
        None,
    )?;
    forget_tick(&mut tx, &job.queue, consumer.name())?;
    tx.commit()?;
    consumer.unregister(provider)?;
    log::info!(
        "{}: in sync at tick {target}; replay takes over",
        table.table
    );
    Ok(())
}
