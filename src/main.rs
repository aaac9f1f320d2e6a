//! The `skyrep` command: parse the command line, load the config, start logging, run the
//! command (see the library's modules for each role).

use std::process::ExitCode;

use anyhow::Result;

use skyrep::cli::{self, Action, Command};
use skyrep::config::Config;
use skyrep::error::{self, usage};
use skyrep::provider::Provider;
use skyrep::subscriber::Subscriber;
use skyrep::{
    check, compare, install, keys, logging, output, repair, replay, signals, status, ticker,
};

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
                Command::Install => install::run(&config),
                Command::ProviderInstall => install::run_provider(&config),
                Command::ProviderAdd { tables, all } => {
                    Provider::connect(&config)?.add(&tables, all)
                }
                Command::ProviderRemove { tables } => Provider::connect(&config)?.remove(&tables),
                Command::ProviderTables => Provider::connect(&config)?.tables(),
                Command::SubscriberInstall => Subscriber::connect(&config)?.install(),
                Command::SubscriberAdd {
                    tables,
                    all,
                    expect_sync,
                } => Subscriber::connect(&config)?.add(&tables, all, expect_sync),
                Command::SubscriberRemove { tables } => {
                    Subscriber::connect(&config)?.remove(&tables)
                }
                Command::SubscriberTables => Subscriber::connect(&config)?.tables(),
                Command::SubscriberRegister => Subscriber::connect(&config)?.register(),
                Command::SubscriberUnregister => Subscriber::connect(&config)?.unregister(),
                Command::Ticker => ticker::run(&config, signals::stop_on_signal()?),
                Command::Replay => replay::run(&config, signals::stop_on_signal()?),
                Command::Compare { tables } => compare::compare(&config, &tables),
                Command::Repair { tables, apply } => repair::repair(&config, &tables, apply),
                Command::Status { json } => status::run(&config, json),
            }
        }
    }
}
