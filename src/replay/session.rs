//! A thread's sessions and its last error: a session is a thread's work between two errors.
//!
//! An error ends a thread's session: it is logged, recorded in the subscriber's
//! `londiste.replay_status` for `status` ([`LastError`]), and the session starts again after
//! `exception_sleep`. The record is deleted once the thread gets work done again.

use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use postgres::GenericClient;

use crate::base::error::{Failures, one_line};
use crate::db;
use crate::replay::job::Job;

/// A thread of `replay` whose last error `status` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thread {
    /// The replay thread.
    Replay,
    /// Copy thread number N (from 1).
    Copy(u32),
}

impl Thread {
    /// Its name in log lines and in `status`.
    pub fn name(self) -> String {
        match self {
            Thread::Replay => "replay".to_string(),
            Thread::Copy(n) => format!("copy-{n}"),
        }
    }

    /// The `consumer_name` its errors are recorded under for the job's `consumer`.
    pub fn key(self, consumer: &str) -> String {
        match self {
            Thread::Replay => consumer.to_string(),
            Thread::Copy(n) => format!("{consumer}.copy-{n}"),
        }
    }

    /// The thread whose errors `key` records for `consumer`, if any.
    pub fn from_key(consumer: &str, key: &str) -> Option<Thread> {
        if key == consumer {
            return Some(Thread::Replay);
        }
        let n = key.strip_prefix(consumer)?.strip_prefix(".copy-")?;
        n.parse().ok().map(Thread::Copy)
    }
}

/// Records `message` (one line, passwords masked) as the last error of `thread`.
fn record_error(
    client: &mut impl GenericClient,
    queue: &str,
    consumer: &str,
    thread: Thread,
    message: &str,
) -> Result<()> {
    client
        .execute(
            "insert into londiste.replay_status (queue_name, consumer_name, last_error) \
             values ($1, $2, $3) \
             on conflict (queue_name, consumer_name) do update \
             set last_error = excluded.last_error, error_at = now(), \
                 failures = londiste.replay_status.failures + 1",
            &[&queue, &thread.key(consumer), &message],
        )
        .context("recording the error for `status` (run `subscriber install` to upgrade)")?;
    Ok(())
}

/// Forgets the last error of `thread` (nothing to do where the table is not installed yet).
fn clear_error(
    client: &mut impl GenericClient,
    queue: &str,
    consumer: &str,
    thread: Thread,
) -> Result<()> {
    let installed: bool = client
        .query_one(
            "select pg_catalog.to_regclass('londiste.replay_status') is not null",
            &[],
        )
        .context("looking for londiste.replay_status")?
        .get(0);
    if installed {
        client
            .execute(
                "delete from londiste.replay_status where queue_name = $1 and consumer_name = $2",
                &[&queue, &thread.key(consumer)],
            )
            .context("clearing the error shown by `status`")?;
    }
    Ok(())
}

/// Runs `session` of `thread` until it returns without error (asked to stop); after each
/// error, logs and records it and pauses: briefly after the first failure in a row (a
/// dropped connection is often back at once), then for `exception_sleep`.
pub fn sessions(
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
pub struct LastError<'a> {
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
                if let Err(e) = record_error(
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
    pub fn succeeded(&mut self, subscriber: &mut impl GenericClient) -> Result<()> {
        self.failures.recovered(&self.thread.name());
        if self.recorded {
            clear_error(subscriber, &self.job.queue, &self.job.consumer, self.thread)?;
            self.recorded = false;
        }
        Ok(())
    }
}

/// Waits up to `pause` for a stop; true if asked to stop.
pub fn stopped_within(stop: &Receiver<()>, pause: Duration) -> bool {
    !matches!(stop.recv_timeout(pause), Err(RecvTimeoutError::Timeout))
}
