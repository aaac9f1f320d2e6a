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

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::db;
use crate::replay::job::Job;

/// The first key of the lock: skyrep's replay jobs, apart from other users of advisory locks.
const NAMESPACE: &str = "skyrep replay";

/// How long the connection is trusted before [`ReplayLock::keep`] asks the server again.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The job's lock in the subscriber database (see the module docs); released with its
/// connection when dropped.
pub struct ReplayLock {
    client: Client,
    checked: Instant,
}

impl ReplayLock {
    /// Takes the lock of `job`; fails, naming the job and the session that holds it, while
    /// another process holds it.
    pub fn take(job: &Job) -> Result<ReplayLock> {
        let mut conn = job.subscriber.clone();
        conn.application_name.push_str(" lock");
        let mut client = db::connect("subscriber_db", &conn)?;
        let what = || {
            format!(
                "taking the lock of job {} (queue {}) in the subscriber",
                job.consumer, job.queue
            )
        };
        let taken: bool = client
            .query_one(
                "select pg_catalog.pg_try_advisory_lock(pg_catalog.hashtext($1), \
                        pg_catalog.hashtext($2 || ' ' || $3))",
                &[&NAMESPACE, &job.queue, &job.consumer],
            )
            .with_context(what)?
            .try_get(0)
            .with_context(what)?;
        if !taken {
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
        })
    }

    /// Makes sure the lock is still held: after its connection was lost, takes it again on
    /// a new one (and fails while another process holds it). Asks the server at most once a
    /// second.
    pub fn keep(&mut self, job: &Job) -> Result<()> {
        if self.checked.elapsed() < CHECK_EVERY && !self.client.is_closed() {
            return Ok(());
        }
        if self.client.is_valid(CHECK_EVERY).is_err() {
            log::info!(
                "the connection that held the lock of job {} was lost; taking the lock again",
                job.consumer
            );
            *self = ReplayLock::take(job)?;
        }
        self.checked = Instant::now();
        Ok(())
    }
}

/// `, held by backend pid N (application_name X)` for the session that holds the lock of
/// `job`, where the server tells; empty otherwise.
fn holder(client: &mut Client, job: &Job) -> String {
    let row = client.query_opt(
        "select l.pid, coalesce(a.application_name, '') from pg_catalog.pg_locks l \
         left join pg_catalog.pg_stat_activity a on a.pid = l.pid \
         where l.locktype = 'advisory' and l.granted and l.objsubid = 2 \
           and l.database = (select oid from pg_catalog.pg_database \
                             where datname = pg_catalog.current_database()) \
           and l.classid = pg_catalog.hashtext($1)::oid \
           and l.objid = pg_catalog.hashtext($2 || ' ' || $3)::oid \
         limit 1",
        &[&NAMESPACE, &job.queue, &job.consumer],
    );
    match row {
        Ok(Some(row)) => match (row.try_get::<_, i32>(0), row.try_get::<_, String>(1)) {
            (Ok(pid), Ok(app)) if !app.is_empty() => {
                format!(", held by backend pid {pid} ({app})")
            }
            (Ok(pid), _) => format!(", held by backend pid {pid}"),
            _ => String::new(),
        },
        _ => String::new(),
    }
}
