//! `install`, `ticker` and `replay`: the long-running services and the install a ticker
//! config needs.

use anyhow::Result;

use super::args::{check_flags, no_args};
use crate::config::Config;
use crate::queue::{install, ticker};
use crate::replay::job::Job;
use crate::replay::lock::ReplayLock;
use crate::replay::worker;
use crate::service::signals;

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

impl Command {
    /// What the command holds while it runs, taken before `-d` (or systemd) is told of a
    /// start: for `replay`, the job's lock in the subscriber, so that a second daemon of the
    /// job stops with an error on the terminal; and then the start-up checks
    /// ([`worker::prepare`], [`ticker::prepare`]), so that a daemon that cannot work says why
    /// there too.
    pub(super) fn lock(&self, config: &Config) -> Result<Option<ReplayLock>> {
        match self {
            Command::Replay => {
                let job = Job::from_config(config)?;
                let lock = ReplayLock::take(&job)?;
                worker::prepare(&job)?;
                Ok(Some(lock))
            }
            Command::Ticker => {
                ticker::prepare(config)?;
                Ok(None)
            }
            Command::Install => Ok(None),
        }
    }

    /// Runs the command with `config` (and the lock [`Command::lock`] took); the daemons
    /// until a signal stops them.
    pub(super) fn run(self, config: &Config, lock: Option<ReplayLock>) -> Result<()> {
        match self {
            Command::Install => install::run(config),
            Command::Ticker => ticker::run(config, signals::stop_on_signal(config.path(), &[])?),
            Command::Replay => {
                let job = Job::from_config(config)?;
                let lock = match lock {
                    Some(lock) => lock,
                    None => {
                        let lock = ReplayLock::take(&job)?;
                        worker::prepare(&job)?;
                        lock
                    }
                };
                let live = job.live_settings();
                let stop = signals::stop_on_signal(config.path(), &live)?;
                worker::run(&job, config, stop, lock)
            }
        }
    }
}
