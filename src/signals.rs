//! Turning SIGINT and SIGTERM into a clean stop.
//!
//! A dedicated thread waits for the signals and, on the first one, drops the only sender of
//! a channel: every clone of the returned receiver then reports "disconnected", which the
//! role loops treat as "stop now" (they wait on it instead of sleeping, so they stop at
//! once). signal-hook rather than ctrlc: SIGHUP must later reload the config instead of
//! stopping, and ctrlc runs one handler for all three.

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, bounded};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// A receiver that disconnects when the process gets SIGINT or SIGTERM.
pub fn stop_on_signal() -> Result<Receiver<()>> {
    let (stop, stopped) = bounded::<()>(0);
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let name = if signal == SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                };
                log::info!("got {name}, shutting down");
                drop(stop);
            }
        })
        .context("starting the signal thread")?;
    Ok(stopped)
}
