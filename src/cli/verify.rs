//! `check`, `compare`, `repair` and `status`: the commands that look at a job from outside.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use super::args::{check_flags, no_args};
use crate::config::Config;
use crate::verify::{check, compare, repair, status};

/// A verifying command with its arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Connect to every configured database and report.
    Check,
    /// Count and checksum tables on both sides at one point of the stream.
    Compare {
        /// Tables as typed (none: every table in state `ok`).
        tables: Vec<String>,
    },
    /// Diff tables row by row and write (or run) the SQL that makes the subscriber equal.
    Repair {
        /// Tables as typed (none: every table in state `ok`).
        tables: Vec<String>,
        /// Run the fix on the subscriber too.
        apply: bool,
        /// `--dir`: where the fix files go (default: the current directory).
        dir: PathBuf,
    },
    /// The queue, its consumers, this subscriber's tables and last errors.
    Status {
        /// One JSON object instead of text.
        json: bool,
        /// `--max-lag SECONDS`: fail when this subscriber's lag is over it.
        max_lag: Option<Duration>,
    },
}

/// The command `name` from its arguments and flags.
pub(super) fn build(name: &str, args: Vec<String>, flags: &[&str]) -> Result<Command> {
    let allowed: &[&str] = match name {
        "repair" => &["apply"],
        "status" => &["json"],
        _ => &[],
    };
    check_flags(name, flags, allowed)?;
    Ok(match name {
        "check" => no_args(name, &args, Command::Check)?,
        "compare" => Command::Compare { tables: args },
        "repair" => Command::Repair {
            tables: args,
            apply: flags.contains(&"apply"),
            dir: PathBuf::from("."),
        },
        "status" => no_args(
            name,
            &args,
            Command::Status {
                json: flags.contains(&"json"),
                max_lag: None,
            },
        )?,
        other => unreachable!("`{other}` is listed in COMMANDS but not built"),
    })
}

impl Command {
    /// Runs the command with `config`.
    pub(super) fn run(self, config: &Config) -> Result<()> {
        match self {
            Command::Check => check::run(config),
            Command::Compare { tables } => compare::compare(config, &tables),
            Command::Repair { tables, apply, dir } => repair::repair(config, &tables, apply, &dir),
            Command::Status { json, max_lag } => status::run(config, json, max_lag),
        }
    }
}
