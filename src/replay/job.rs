//! The job every replay thread works for (queue, consumer, both databases, settings), and a
//! thread's pair of connections.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use postgres::Client;

use crate::config::{Config, Live, LiveKey};
use crate::db;
use crate::db::connstr::Resolved;
use crate::replay::apply::Applier;

/// The settings a reload (SIGHUP) changes while `replay` runs.
impl Job {
    /// `loop_delay` and `parallel_copies`, for [`crate::service::signals::stop_on_signal`].
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
    /// With at least this many events waiting, a batch spans several ticks
    /// ([`crate::queue::consumer::Consumer::next_batch_of`]).
    pub batch_events: u32,
}

impl Job {
    /// The job of a config file.
    pub fn from_config(config: &Config) -> Result<Job> {
        let consumer = config.job_name()?;
        let app = format!("skyrep/{consumer}");
        let resolve = |key: &str| -> Result<Resolved> {
            config
                .require_connstr(key)?
                .resolve_from_env(&app)
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
            batch_events: config.count("batch_events")?,
        })
    }
}

/// A thread's provider and subscriber connections with the applier that serves them,
/// replaced once they are `connection_lifetime` old (a server-side session that lives for
/// months collects memory and pins settings; a new one starts clean).
pub struct Connections {
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
