//! `install`, `ticker` and `replay`: the long-running services and the install a ticker
//! config needs.

use anyhow::Result;
use crossbeam_channel::Receiver;

use super::args::{check_flags, no_args};
use crate::config::Config;
use crate::queue::{install, ticker};
use crate::replay::job::Job;
use crate::replay::lock::ReplayLock;
use crate::replay::worker;
use crate::service::signals::{self, OnTerm};

/// A service command.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Install or upgrade pgq in the ticker config's `db`.
    Install,
    /// Run the standalone ticker.
    Ticker,
    /// Run the replication daemon.
    Replay,
}

/// The command `name` from its arguments and flags (it takes none).
pub(super) fn build(name: &str, args: Vec<String>, flags: &[&str]) -> Result<Command> {
    check_flags(name, flags, &[])?;
    let command = match name {
        "install" => Command::Install,
        "ticker" => Command::Ticker,
        "replay" => Command::Replay,
        other => unreachable!("`{other}` is listed in COMMANDS but not built"),
    };
    no_args(name, &args, command)
}

/// A daemon that has passed its start-up checks and handles its signals: what `-d` (or
/// systemd) is told has started.
pub enum Started {
    /// The ticker, and the receiver that says when to stop.
    Ticker(Receiver<()>),
    /// Replay: the job, its lock in the subscriber, and the receiver that says when to stop.
    Replay {
        /// The job, whose live settings the signal thread changes on SIGHUP.
        job: Box<Job>,
        /// The job's lock, held for the life of the process.
        lock: Box<ReplayLock>,
        /// Disconnects on SIGINT or SIGTERM.
        stop: Receiver<()>,
    },
}

impl Command {
    /// Starts a daemon up to the moment `-d` (or systemd) is told of a start: for `replay`,
    /// the job's lock in the subscriber, so that a second daemon of the job stops with an
    /// error on the terminal; the start-up checks ([`worker::prepare`], [`ticker::prepare`]),
    /// so that a daemon that cannot work says why there too; then the signal handlers, so
    /// that a `-s` right after the start stops it cleanly. `None` for `install`.
    pub(super) fn start(&self, config: &Config) -> Result<Option<Started>> {
        match self {
            Command::Replay => {
                let job = Job::from_config(config)?;
                let lock = ReplayLock::take(&job)?;
                worker::prepare(&job)?;
                let stop =
                    signals::stop_on_signal(config.path(), &job.live_settings(), OnTerm::Exit)?;
                Ok(Some(Started::Replay {
                    job: Box::new(job),
                    lock: Box::new(lock),
                    stop,
                }))
            }
            Command::Ticker => {
                ticker::prepare(config)?;
                let stop = signals::stop_on_signal(config.path(), &[], OnTerm::Exit)?;
                Ok(Some(Started::Ticker(stop)))
            }
            Command::Install => Ok(None),
        }
    }

    /// Runs the command with `config`, a daemon from what [`Command::start`] returned (started
    /// here if not yet); the daemons until a signal stops them.
    pub(super) fn run(self, config: &Config, started: Option<Started>) -> Result<()> {
        let started = match started {
            Some(started) => Some(started),
            None => self.start(config)?,
        };
        match started {
            Some(Started::Ticker(stop)) => ticker::run(config, stop),
            Some(Started::Replay { job, lock, stop }) => worker::run(&job, config, stop, *lock),
            None => install::run(config),
        }
    }
}
