//! One replay per job: a lock in the subscriber database, held for the life of the process.
//!
//! Two daemons of one job (one queue and consumer) applying into one subscriber would apply
//! batches side by side; the pidfile stops a second daemon only where it names the same file
//! on the same machine. [`ReplayLock`] holds a session-level advisory lock keyed by the queue
//! and the consumer (the two-int form: a fixed namespace, then the job) on a connection of
//! its own, so a second daemon of the job finds it taken and stops with an error naming the
//! job. A lost connection loses the lock: the replay thread takes it again before it goes on
//! ([`ReplayLock::keep`]). The connection idles and lives as long as the process (renewing it
//! would let the lock go for a moment); it is `application_name` plus ` lock` on the server.
//!
//! The same connection keeps the job's heartbeat, a row of `londiste.replay_daemons` with the
//! daemon's host and pid ([`ReplayLock::beat`]). `status` asks whether the lock is held
//! ([`holder_pid`]) to know whether replay runs, and reads the row to say which process it is,
//! or when it was last seen.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::db;
use crate::replay::job::Job;

/// The first key of the lock: skyrep's replay jobs, apart from other users of advisory locks.
const NAMESPACE: &str = "skyrep replay";

/// The second key of the lock, from the queue (`$2`) and the consumer (`$3`). The queue's
/// length goes first, so that names with spaces cannot run together: job `b c` of queue `a`
/// and job `c` of queue `a b` have keys of their own.
const JOB_KEY: &str = "pg_catalog.hashtext(pg_catalog.length($2) || ' ' || $2 || ' ' || $3)";

/// How long the connection is trusted before [`ReplayLock::keep`] asks the server again (and
/// writes the heartbeat).
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The job's lock in the subscriber database (see the module docs); released with its
/// connection when dropped.
pub struct ReplayLock {
    client: Client,
    checked: Instant,
    /// Since when this process runs the job, once [`ReplayLock::beat`] started the heartbeat.
    started: Option<SystemTime>,
}

impl ReplayLock {
    /// Takes the lock of `job`; fails, naming the job and the session that holds it, while
    /// another process holds it.
    pub fn take(job: &Job) -> Result<ReplayLock> {
        let mut conn = job.subscriber.clone();
        conn.application_name.push_str(" lock");
        let mut client = db::connect("subscriber_db", &conn)?;
        if !try_hold(&mut client, job)? {
            bail!(
                "job {} (queue {}) is replaying into {} already{}: one replay per job; stop \
                 the other process first",
                job.consumer,
                job.queue,
                job.subscriber.describe(),
                holder(&mut client, job)
            );
        }
        Ok(ReplayLock {
            client,
            checked: Instant::now(),
            started: None,
        })
    }

    /// Starts the job's heartbeat: records this process (host, pid, version, start time) in
    /// `londiste.replay_daemons`, which [`ReplayLock::keep`] then updates. Called by the
    /// process that runs the job (after `-d` detached). Where the table is missing (a
    /// subscriber set up by an older version) it says what to run, and replay goes on.
    pub fn beat(&mut self, job: &Job) -> Result<()> {
        let installed: bool = self
            .client
            .query_one(
                "select pg_catalog.to_regclass('londiste.replay_daemons') is not null",
                &[],
            )
            .context("looking for londiste.replay_daemons")?
            .get(0);
        if !installed {
            log::warn!(
                "the subscriber has no londiste.replay_daemons, so `status` cannot see which \
                 process runs replay: run `subscriber install` to upgrade it"
            );
            return Ok(());
        }
        self.started = Some(SystemTime::now());
        self.write_beat(job)
    }

    /// Writes the heartbeat row (see [`ReplayLock::beat`]).
    fn write_beat(&mut self, job: &Job) -> Result<()> {
        let Some(started) = self.started else {
            return Ok(());
        };
        let host = whoami::hostname().unwrap_or_else(|_| "?".to_string());
        let pid = i32::try_from(std::process::id()).unwrap_or(-1);
        self.client
            .execute(
                "insert into londiste.replay_daemons as d \
                        (queue_name, consumer_name, host, pid, version, started_at, beat_at, \
                         backend_pid) \
                 values ($1, $2, $3, $4, $5, $6, pg_catalog.clock_timestamp(), \
                         pg_catalog.pg_backend_pid()) \
                 on conflict (queue_name, consumer_name) do update \
                 set host = excluded.host, pid = excluded.pid, version = excluded.version, \
                     started_at = excluded.started_at, beat_at = excluded.beat_at, \
                     backend_pid = excluded.backend_pid",
                &[
                    &job.queue,
                    &job.consumer,
                    &host,
                    &pid,
                    &env!("CARGO_PKG_VERSION"),
                    &started,
                ],
            )
            .with_context(|| format!("writing the heartbeat of job {}", job.consumer))?;
        Ok(())
    }

    /// Makes sure the lock is still held: after its connection was lost, takes it again on
    /// a new one (and fails while another process holds it). Asks the server, and writes the
    /// heartbeat, at most once a second.
    pub fn keep(&mut self, job: &Job) -> Result<()> {
        if self.checked.elapsed() < CHECK_EVERY && !self.client.is_closed() {
            return Ok(());
        }
        if self.client.is_valid(CHECK_EVERY).is_err() {
            log::info!(
                "the connection that held the lock of job {} was lost; taking the lock again",
                job.consumer
            );
            let started = self.started;
            *self = ReplayLock::take(job)?;
            self.started = started;
        }
        if let Err(e) = self.write_beat(job) {
            if self.client.is_closed() {
                // Lost just now: the next call takes the lock again.
                return Err(e);
            }
            // Connected, but the row cannot be written (say, a privilege was taken back):
            // say so once and hold the lock without a heartbeat.
            log::warn!("{e:#}; `status` will not tell which process runs replay");
            self.started = None;
        }
        self.checked = Instant::now();
        Ok(())
    }
}

/// Takes the lock of `job` on `client`'s session, for as long as that session lives; false
/// while another session holds it.
pub fn try_hold(client: &mut Client, job: &Job) -> Result<bool> {
    let what = || {
        format!(
            "taking the lock of job {} (queue {}) in the subscriber",
            job.consumer, job.queue
        )
    };
    client
        .query_one(
            &format!("select pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext($1), {JOB_KEY})"),
            &[&NAMESPACE, &job.queue, &job.consumer],
        )
        .with_context(what)?
        .try_get(0)
        .with_context(what)
}

/// The backend pid of the session that holds the lock of `job` in the database `client` is
/// connected to (the job's subscriber), None while no process runs its replay.
pub fn holder_pid(client: &mut Client, job: &Job) -> Result<Option<i32>> {
    let row = client
        .query_opt(
            &format!(
                "select l.pid from pg_catalog.pg_locks l \
                 where l.locktype = 'advisory' and l.granted and l.objsubid = 2 \
                   and l.database = (select oid from pg_catalog.pg_database \
                                     where datname = pg_catalog.current_database()) \
                   and l.classid = pg_catalog.hashtext($1)::oid \
                   and l.objid = {JOB_KEY}::oid \
                 limit 1"
            ),
            &[&NAMESPACE, &job.queue, &job.consumer],
        )
        .with_context(|| format!("looking for the lock of job {}", job.consumer))?;
    Ok(row.map(|r| r.get(0)))
}

/// `, held by backend pid N (application_name X)` for the session that holds the lock of
/// `job`, where the server tells; empty otherwise.
fn holder(client: &mut Client, job: &Job) -> String {
    let Ok(Some(pid)) = holder_pid(client, job) else {
        return String::new();
    };
    let app: Option<String> = client
        .query_opt(
            "select application_name from pg_catalog.pg_stat_activity where pid = $1",
            &[&pid],
        )
        .ok()
        .flatten()
        .and_then(|r| r.get(0));
    match app {
        Some(app) if !app.is_empty() => format!(", held by backend pid {pid} ({app})"),
        _ => format!(", held by backend pid {pid}"),
    }
}
