//! Bringing a table to one point of the stream on both sides, for `compare` and `repair`.
//!
//! The provider table is locked against writes (SHARE mode, readers go on) for at most
//! `lock_timeout`. A tick taken under the lock covers every change made to it; once the
//! subscriber has applied that tick, both sides hold the same rows. Then a repeatable-read
//! snapshot is opened on each side (the subscriber's optionally under an EXCLUSIVE lock that
//! keeps replay off the table, for `repair --apply`), and the provider lock is released: the
//! two snapshots stay at that point for as long as the comparison takes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::base::error::usage;
use crate::capture::provider::parse_names;
use crate::config::Config;
use crate::db;
use crate::replay::job::Job;
use crate::replay::lock;
use crate::replay::state::{MergeState, SubscriberTable, load_tables};

/// How often the provider is polled for the new tick and the subscriber for its apply.
const POLL: Duration = Duration::from_millis(50);

/// Session settings that make both servers print values alike.
const SAME_OUTPUT: &str = "set datestyle = 'ISO, YMD'; set intervalstyle = 'postgres'; \
     set timezone = 'UTC'; set extra_float_digits = 3; set bytea_output = 'hex'";

/// Connections for synchronising tables of one job: a provider session that locks, one that
/// reads, and the subscriber's.
pub struct Syncer {
    job: Job,
    lock_timeout: Duration,
    locker: Client,
    /// The provider session whose snapshot the comparison reads.
    pub provider: Client,
    /// The subscriber session whose snapshot the comparison reads (and, with a held table,
    /// that writes the fix).
    pub subscriber: Client,
}

impl Syncer {
    /// Connects to both databases of the config.
    pub fn connect(config: &Config) -> Result<Syncer> {
        let job = Job::from_config(config)?;
        let locker = db::connect("provider_db", &job.provider)?;
        let mut provider = db::connect("provider_db", &job.provider)?;
        let mut subscriber = db::connect("subscriber_db", &job.subscriber)?;
        provider.batch_execute(SAME_OUTPUT)?;
        subscriber.batch_execute(SAME_OUTPUT)?;
        Ok(Syncer {
            lock_timeout: config.seconds("lock_timeout")?,
            job,
            locker,
            provider,
            subscriber,
        })
    }

    /// The tables to work on: those named (each must be registered here and `ok`), or with
    /// no names every registered table in state `ok` (others are skipped with a warning).
    pub fn tables(&mut self, names: &[String]) -> Result<Vec<SubscriberTable>> {
        let registered = load_tables(&mut self.subscriber, &self.job.queue)?;
        if names.is_empty() {
            let mut ok = Vec::new();
            for table in registered {
                if table.state == MergeState::Ok {
                    ok.push(table);
                } else {
                    log::warn!("{}: skipped, it is {}", table.table, table.state);
                }
            }
            if ok.is_empty() {
                bail!(
                    "no table of queue {} is in sync on the subscriber",
                    self.job.queue
                );
            }
            return Ok(ok);
        }
        let mut chosen = Vec::new();
        for name in parse_names(names)? {
            let Some(table) = registered.iter().find(|t| t.table == name) else {
                return Err(usage(format!(
                    "{name} is not registered on the subscriber for queue {}",
                    self.job.queue
                )));
            };
            if table.state != MergeState::Ok {
                bail!("{name} is {}, not in sync yet: wait for `ok`", table.state);
            }
            chosen.push(table.clone());
        }
        Ok(chosen)
    }

    /// Brings `table` to one point on both sides and leaves [`Syncer::provider`] and
    /// [`Syncer::subscriber`] in repeatable-read transactions at that point; with
    /// `hold_subscriber` the subscriber table is also locked against replay until
    /// [`Syncer::finish`]. Fails (locking nothing) when replay lags more than `lock_timeout`,
    /// and (after releasing the lock) when it does not catch up within it.
    pub fn sync(&mut self, table: &SubscriberTable, hold_subscriber: bool) -> Result<()> {
        self.check_lag()?;
        log::info!("Locking {}", table.table);
        self.locker
            .batch_execute(&format!(
                "begin; set local lock_timeout = '{}ms'; lock table {} in share mode",
                self.lock_timeout.as_millis(),
                table.table.quoted()
            ))
            .with_context(|| format!("locking {} on the provider", table.table))?;
        let result = self.sync_locked(table, hold_subscriber);
        let unlock = self.locker.batch_execute("rollback");
        if result.is_err() {
            // Leave no snapshot or subscriber lock behind.
            self.rollback();
        }
        result?;
        unlock.context("releasing the provider lock")
    }

    fn sync_locked(&mut self, table: &SubscriberTable, hold_subscriber: bool) -> Result<()> {
        let locked_at = Instant::now();
        // None: a lock_timeout too long to count to, so never.
        let deadline = locked_at.checked_add(self.lock_timeout);
        log::info!("Syncing {}", table.table);
        let queue = &self.job.queue;
        let before: Option<i64> = self
            .locker
            .query_one("select pgq.force_tick($1)", &[queue])
            .context("asking for a tick")?
            .get(0);
        let Some(before) = before else {
            bail!("queue {queue} is paused or has no tick yet: cannot sync");
        };
        let tick = loop {
            let last: Option<i64> = self
                .locker
                .query_one("select last_tick_id from pgq.get_queue_info($1)", &[queue])?
                .get(0);
            if let Some(last) = last.filter(|&l| l > before) {
                break last;
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                bail!(
                    "no new tick on queue {queue} within lock_timeout ({} s): is the ticker \
                     running (replay with ticker = on, or pgqd)?",
                    self.lock_timeout.as_secs_f64()
                );
            }
            std::thread::sleep(POLL);
        };
        loop {
            let applied: Option<i64> = self
                .subscriber
                .query_opt(
                    "select last_tick_id from londiste.applied_ticks \
                     where queue_name = $1 and consumer_name = $2",
                    &[queue, &self.job.consumer],
                )?
                .map(|r| r.get(0));
            if applied.is_some_and(|a| a >= tick) {
                break;
            }
            if lock::holder_pid(&mut self.subscriber, &self.job)?.is_none() {
                bail!(
                    "replay of job {} stopped while waiting for it to apply tick {tick}; lock \
                     released",
                    self.job.consumer
                );
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                bail!(
                    "replay did not apply tick {tick} within lock_timeout ({} s), though it \
                     runs; lock released: `status` shows its lag and errors",
                    self.lock_timeout.as_secs_f64()
                );
            }
            std::thread::sleep(POLL);
        }
        self.subscriber
            .batch_execute("begin isolation level repeatable read")?;
        if hold_subscriber {
            self.subscriber
                .batch_execute(&format!(
                    "set local lock_timeout = '{}ms'; lock table {} in exclusive mode",
                    self.lock_timeout.as_millis(),
                    table.dest.quoted()
                ))
                .with_context(|| format!("locking {} on the subscriber", table.dest))?;
        }
        self.subscriber.batch_execute("select 1")?;
        self.provider
            .batch_execute("begin isolation level repeatable read; select 1")?;
        log::debug!(
            "{}: in sync at tick {tick}, provider locked for {:.3} s",
            table.table,
            locked_at.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Fails without locking anything when replay does not run, or when the consumer's
    /// oldest unapplied tick is older than `lock_timeout`: replay could not catch up while
    /// the table is locked.
    fn check_lag(&mut self) -> Result<()> {
        if lock::holder_pid(&mut self.subscriber, &self.job)?.is_none() {
            bail!(
                "replay of job {} is not running, and both sides are compared at a point it \
                 applies: start it (`replay`, or its service) first",
                self.job.consumer
            );
        }
        let row = self
            .locker
            .query_opt(
                "select (select extract(epoch from now() - min(t.tick_time))::float8 \
                         from pgq.tick t \
                         where t.tick_queue = s.sub_queue and t.tick_id > s.sub_last_tick) \
                 from pgq.subscription s \
                 join pgq.queue q on q.queue_id = s.sub_queue \
                 join pgq.consumer c on c.co_id = s.sub_consumer \
                 where q.queue_name = $1 and c.co_name = $2",
                &[&self.job.queue, &self.job.consumer],
            )
            .context("reading the consumer's position")?;
        let Some(row) = row else {
            bail!(
                "consumer {} is not registered on queue {}: start replay or run `subscriber register`",
                self.job.consumer,
                self.job.queue
            );
        };
        let behind: Option<f64> = row.get(0);
        match behind {
            Some(lag) if lag > self.lock_timeout.as_secs_f64() => bail!(
                "replay runs but is {lag:.1} s behind, more than lock_timeout ({} s) would let \
                 it catch up with the table locked: wait until `status` shows a smaller lag",
                self.lock_timeout.as_secs_f64()
            ),
            _ => Ok(()),
        }
    }

    /// Ends the snapshot transactions, committing the subscriber's (which holds the fix, if
    /// one was written there).
    pub fn finish(&mut self) -> Result<()> {
        self.provider.batch_execute("rollback")?;
        self.subscriber
            .batch_execute("commit")
            .context("committing on the subscriber")
    }

    /// Ends the snapshot transactions, discarding everything.
    pub fn rollback(&mut self) {
        // Best effort: after an error a session may already be outside a transaction.
        let _ = self.provider.batch_execute("rollback");
        let _ = self.subscriber.batch_execute("rollback");
    }
}
