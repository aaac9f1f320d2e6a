//! The command line (SPEC §2): `skyrep [OPTIONS] CONFIG.ini COMMAND [ARGS...]`.
//!
//! Global options may stand anywhere, as with Londiste (`skyrep conf.ini check -v`). This
//! module only parses; `main` runs what it returns.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use lexopt::prelude::*;

use crate::error::usage;

/// Text of `skyrep --help`.
pub const HELP: &str = "\
skyrep: trigger-based table replication for PostgreSQL (Londiste-compatible)

Usage:
  skyrep [OPTIONS] CONFIG.ini COMMAND [ARGS...]
  skyrep --ini                 print a sample config with every key and its default

Options:
  -h, --help        show this help and exit
  -V, --version     show the version and exit
  -q, --quiet       only warnings and errors on the terminal
  -v, --verbose     debug logging (twice: also the database driver's)
      --ini         print the sample config and exit

Commands:
  check             load the config and connect to every database it names
  install           install or upgrade pgq in `db` (a ticker config)
  provider install  install or upgrade pgq in `provider_db` and create the queue
  ticker            tick `db`, or every database under `base_connstr`, as pgqd does

Exit codes: 0 success, 1 the command failed, 2 usage or config error.
See skyrep(1) and skyrep(5).
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Cli {
    /// -1 for `-q`, 0 by default, +1 per `-v`.
    pub verbosity: i8,
    /// What to do.
    pub action: Action,
}

/// The thing to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Print the help text.
    Help,
    /// Print the version.
    Version,
    /// Print the sample config.
    SampleConfig,
    /// Run a command with a config file.
    Run {
        /// The config file.
        config: PathBuf,
        /// The command.
        command: Command,
    },
}

/// A command with its arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Connect to every configured database and report.
    Check,
    /// Install or upgrade pgq in the ticker config's `db`.
    Install,
    /// Install or upgrade pgq in `provider_db` and create the queue.
    ProviderInstall,
    /// Run the standalone ticker.
    Ticker,
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Cli> {
    parse_inner(args).map_err(|e| match e.downcast::<lexopt::Error>() {
        Ok(e) => usage(format!("{e} (see skyrep --help)")),
        Err(e) => e,
    })
}

fn parse_inner(args: impl IntoIterator<Item = OsString>) -> Result<Cli> {
    let mut parser = lexopt::Parser::from_args(args);
    let mut verbosity: i8 = 0;
    let mut early: Option<Action> = None;
    let mut words: Vec<String> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => early = early.or(Some(Action::Help)),
            Short('V') | Long("version") => early = early.or(Some(Action::Version)),
            Long("ini") => early = early.or(Some(Action::SampleConfig)),
            Short('q') | Long("quiet") => verbosity = -1,
            Short('v') | Long("verbose") => verbosity = verbosity.max(0).saturating_add(1),
            Value(value) => words.push(
                value
                    .into_string()
                    .map_err(|v| usage(format!("argument {v:?} is not valid UTF-8")))?,
            ),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if let Some(action) = early {
        return Ok(Cli { verbosity, action });
    }
    let mut words = words.into_iter();
    let config = words
        .next()
        .ok_or_else(|| usage("missing CONFIG.ini argument (see skyrep --help)"))?;
    let name = words.next().ok_or_else(|| {
        usage(format!(
            "missing COMMAND after {config} (see skyrep --help)"
        ))
    })?;
    let mut rest: Vec<String> = words.collect();
    let (name, command) = match name.as_str() {
        "check" => (name, Command::Check),
        "install" => (name, Command::Install),
        "ticker" => (name, Command::Ticker),
        "provider" => {
            let sub = (!rest.is_empty()).then(|| rest.remove(0));
            match sub.as_deref() {
                Some("install") => ("provider install".to_string(), Command::ProviderInstall),
                Some(other) => {
                    return Err(usage(format!(
                        "unknown command `provider {other}` (see skyrep --help)"
                    )));
                }
                None => {
                    return Err(usage(
                        "`provider` needs a subcommand, e.g. `provider install`",
                    ));
                }
            }
        }
        other => {
            return Err(usage(format!(
                "unknown command `{other}` (see skyrep --help)"
            )));
        }
    };
    no_arguments(&name, &rest)?;
    Ok(Cli {
        verbosity,
        action: Action::Run {
            config: PathBuf::from(config),
            command,
        },
    })
}

fn no_arguments(command: &str, rest: &[String]) -> Result<()> {
    match rest.first() {
        Some(extra) => Err(usage(format!(
            "`{command}` takes no arguments, found `{extra}`"
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{EXIT_USAGE, exit_code};

    fn cli(args: &[&str]) -> Result<Cli> {
        parse(args.iter().map(OsString::from))
    }

    fn fails(args: &[&str]) -> String {
        let err = cli(args).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_USAGE);
        format!("{err:#}")
    }

    #[test]
    fn options_anywhere() {
        let expected = Cli {
            verbosity: 2,
            action: Action::Run {
                config: PathBuf::from("a.ini"),
                command: Command::Check,
            },
        };
        assert_eq!(cli(&["-v", "a.ini", "check", "-v"]).unwrap(), expected);
        assert_eq!(cli(&["a.ini", "-vv", "check"]).unwrap(), expected);
        assert_eq!(cli(&["-q", "a.ini", "check"]).unwrap().verbosity, -1);
        let provider = cli(&["a.ini", "provider", "-v", "install"]).unwrap();
        assert_eq!(
            provider.action,
            Action::Run {
                config: PathBuf::from("a.ini"),
                command: Command::ProviderInstall
            }
        );
    }

    #[test]
    fn early_actions_need_no_config() {
        assert_eq!(cli(&["--help"]).unwrap().action, Action::Help);
        assert_eq!(
            cli(&["-h", "x.ini", "anything"]).unwrap().action,
            Action::Help
        );
        assert_eq!(cli(&["-V"]).unwrap().action, Action::Version);
        assert_eq!(cli(&["--ini"]).unwrap().action, Action::SampleConfig);
    }

    #[test]
    fn usage_errors() {
        assert_eq!(
            fails(&[]),
            "missing CONFIG.ini argument (see skyrep --help)"
        );
        assert_eq!(
            fails(&["a.ini"]),
            "missing COMMAND after a.ini (see skyrep --help)"
        );
        assert_eq!(
            fails(&["a.ini", "fly"]),
            "unknown command `fly` (see skyrep --help)"
        );
        assert_eq!(
            fails(&["a.ini", "check", "x"]),
            "`check` takes no arguments, found `x`"
        );
        assert_eq!(
            fails(&["--bogus"]),
            "invalid option '--bogus' (see skyrep --help)"
        );
        assert_eq!(
            fails(&["-x", "a.ini", "check"]),
            "invalid option '-x' (see skyrep --help)"
        );
    }
}
