//! `provider ...`: the commands run on the provider database (capture).

use anyhow::Result;

use super::args::{check_flags, no_args, some_seqs, some_tables};
use crate::base::error::usage;
use crate::capture::provider::Provider;
use crate::config::Config;
use crate::queue::install;

/// A `provider` command with its arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Install or upgrade pgq and londiste in `provider_db` and create the queue.
    Install,
    /// Register tables on the provider.
    Add {
        /// Tables as typed.
        tables: Vec<String>,
        /// Every user table.
        all: bool,
        /// Set-based capture (`--bulk`).
        bulk: bool,
    },
    /// Unregister tables on the provider.
    Remove {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// List the provider's tables.
    Tables,
    /// Regenerate the capture triggers of tables whose columns changed.
    RefreshTrigger {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// Run scripts on the provider and queue them for the subscribers.
    Execute {
        /// The script files.
        files: Vec<String>,
    },
    /// Register sequences on the provider.
    AddSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// Unregister sequences on the provider.
    RemoveSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// List the provider's sequences.
    Seqs,
}

/// The provider command `name` (spelled out, `provider add`) from its arguments and flags.
pub(super) fn build(name: &str, args: Vec<String>, flags: &[&str]) -> Result<Command> {
    check_flags(
        name,
        flags,
        if name == "provider add" {
            &["all", "bulk"]
        } else {
            &[]
        },
    )?;
    Ok(match name {
        "provider install" => no_args(name, &args, Command::Install)?,
        "provider add" => {
            let all = flags.contains(&"all");
            Command::Add {
                tables: some_tables(name, args, all)?,
                all,
                bulk: flags.contains(&"bulk"),
            }
        }
        "provider remove" => Command::Remove {
            tables: some_tables(name, args, false)?,
        },
        "provider tables" => no_args(name, &args, Command::Tables)?,
        "provider refresh-trigger" => Command::RefreshTrigger {
            tables: some_tables(name, args, false)?,
        },
        "provider execute" if args.is_empty() => {
            return Err(usage("`provider execute` needs at least one file"));
        }
        "provider execute" => Command::Execute { files: args },
        "provider add-seq" => Command::AddSeq {
            seqs: some_seqs(name, args)?,
        },
        "provider remove-seq" => Command::RemoveSeq {
            seqs: some_seqs(name, args)?,
        },
        "provider seqs" => no_args(name, &args, Command::Seqs)?,
        other => unreachable!("`{other}` is listed in COMMANDS but not built"),
    })
}

impl Command {
    /// Runs the command with `config`.
    pub(super) fn run(self, config: &Config) -> Result<()> {
        let connect = || Provider::connect(config);
        match self {
            Command::Install => install::run_provider(config),
            Command::Add { tables, all, bulk } => connect()?.add(&tables, all, bulk),
            Command::Remove { tables } => connect()?.remove(&tables),
            Command::Tables => connect()?.tables(),
            Command::RefreshTrigger { tables } => connect()?.refresh_triggers(&tables),
            Command::Execute { files } => connect()?.execute(&files),
            Command::AddSeq { seqs } => connect()?.add_seqs(&seqs),
            Command::RemoveSeq { seqs } => connect()?.remove_seqs(&seqs),
            Command::Seqs => connect()?.seqs(),
        }
    }
}
