//! Signals of the long-running commands: SIGINT stops safely, SIGTERM at once, SIGHUP reloads.
//!
//! A dedicated thread waits for the signals. On the first SIGINT it drops the only sender of
//! a channel: every clone of the returned receiver then reports "disconnected", which the
//! role loops treat as "stop now" (they wait on it instead of sleeping, so they stop at once;
//! a batch being applied is finished, a COPY cancelled). SIGTERM (`-k`) ends the daemons at
//! once, abandoning a batch in progress to the servers' rollback ([`OnTerm::Exit`]); the
//! demo, which has servers of its own to stop, treats it as SIGINT. On SIGHUP it reads the config file again, reopens the log file (under its new name
//! if `logfile` changed) so that logrotate can move the file away, and sets the settings that
//! change live (such as `loop_delay`); a config that no longer loads is logged and the
//! running one kept. signal-hook rather than ctrlc: ctrlc runs one
//! handler for all three signals and cannot tell a reload from a stop.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, bounded};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::base::error::one_line;
use crate::config::{Config, LiveKey};
use crate::service::{daemon, logging};

/// What SIGTERM does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum OnTerm {
    /// The same as SIGINT: the receiver disconnects.
    Stop,
    /// The process ends at once ([`daemon::exit_at_once`]).
    Exit,
}

/// A receiver that disconnects when the process gets SIGINT (and SIGTERM, as `on_term`
/// says); SIGHUP reloads the config at `config_path` and sets each `live` value from its key
/// (see the module docs).
pub fn stop_on_signal(
    config_path: &Path,
    live: &[LiveKey],
    on_term: OnTerm,
) -> Result<Receiver<()>> {
    let live = live.to_vec();
    let (stop, stopped) = bounded::<()>(0);
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("installing signal handlers")?;
    let config_path = config_path.to_path_buf();
    let mut settings = Config::load(&config_path).map(|c| settings(&c)).ok();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if signal == SIGHUP {
                    settings = reload(&config_path, &live, settings.take());
                    continue;
                }
                if signal == SIGTERM && on_term == OnTerm::Exit {
                    log::info!(
                        "got SIGTERM, stopping at once (work in progress is rolled back and \
                         done again at the next start)"
                    );
                    daemon::exit_at_once();
                }
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                log::info!("got {name}, shutting down");
                drop(stop);
                return;
            }
        })
        .context("starting the signal thread")?;
    Ok(stopped)
}

/// The config's keys and values, to tell what a reload changed.
fn settings(config: &Config) -> BTreeMap<String, String> {
    config
        .keys()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

/// SIGHUP: loads the config again, reopens the log file; returns the settings now in force.
fn reload(
    path: &Path,
    live: &[LiveKey],
    before: Option<BTreeMap<String, String>>,
) -> Option<BTreeMap<String, String>> {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            log::error!(
                "got SIGHUP, but {} does not load, keeping the running config: {}",
                path.display(),
                one_line(&e)
            );
            return before;
        }
    };
    let reopened = config
        .path_value("logfile")
        .and_then(|logfile| logging::set_file(logfile.as_deref()));
    if let Err(e) = reopened {
        log::error!(
            "got SIGHUP, but the log file does not open: {}",
            one_line(&e)
        );
    }
    let mut applied = vec!["logfile"];
    let mut now = Vec::new();
    for value in live {
        match value.reload(&config) {
            Ok((key, value)) => {
                applied.push(key);
                now.push(format!("{key} = {value}"));
            }
            Err(e) => log::error!("got SIGHUP, but {}", one_line(&e)),
        }
    }
    let after = settings(&config);
    let changed: Vec<&str> = after
        .iter()
        .filter(|(key, value)| {
            !applied.contains(&key.as_str())
                && before.as_ref().and_then(|b| b.get(key.as_str())) != Some(value)
        })
        .map(|(key, _)| key.as_str())
        .chain(
            before
                .iter()
                .flat_map(|b| b.keys())
                .filter(|key| !after.contains_key(key.as_str()))
                .map(String::as_str),
        )
        .collect();
    let now = if now.is_empty() {
        String::new()
    } else {
        format!("; in force now: {}", now.join(", "))
    };
    if changed.is_empty() {
        log::info!("got SIGHUP: reopened the log file{now}");
    } else {
        log::warn!(
            "got SIGHUP: reopened the log file{now}; changed settings that take effect at \
             the next start: {}",
            changed.join(", ")
        );
    }
    Some(after)
}
