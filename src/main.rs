//! skyrep: trigger-based, table-level PostgreSQL replication in one binary — the PgQ queue,
//! its ticker and Londiste replay, re-created as a sync, thread-per-role Rust program.

mod check;
mod cli;
mod config;
mod connstr;
mod db;
mod error;
mod keys;
mod logging;
mod mask;
mod output;
mod pgpass;
mod tls;

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{Action, Command};
use crate::config::Config;
use crate::error::usage;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("skyrep: {}", error::one_line(&err));
            ExitCode::from(error::exit_code(&err))
        }
    }
}

fn run() -> Result<()> {
    let cli = cli::parse(std::env::args_os().skip(1))?;
    match cli.action {
        Action::Help => output::text(cli::HELP),
        Action::Version => output::line(&format!("skyrep {}", env!("CARGO_PKG_VERSION"))),
        Action::SampleConfig => output::text(&keys::sample_config()),
        Action::Run { config, command } => {
            let config = Config::load(&config)?;
            logging::init(cli.verbosity);
            let logfile = config.path_value("logfile")?;
            logging::set_file(logfile.as_deref()).map_err(|e| usage(format!("{e:#}")))?;
            log::debug!(
                "loaded {} (section [{}])",
                config.path().display(),
                config.section()
            );
            for warning in config.warnings() {
                log::warn!("{warning}");
            }
            match command {
                Command::Check => check::run(&config),
            }
        }
    }
}
