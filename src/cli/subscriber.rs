//! `subscriber ...` and Londiste 3's short forms: the commands run on the subscriber
//! database (replay's tables and sequences).

use anyhow::Result;

use super::args::{check_flags, no_args, some_seqs, some_tables};
use crate::base::error::usage;
use crate::config::Config;
use crate::replay::job::Job;
use crate::replay::subscriber::{self, AddOptions, Lists, Subscriber};

/// A `subscriber` command with its arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Install or upgrade londiste in `subscriber_db`.
    Install,
    /// Register tables on the subscriber.
    Add {
        /// Tables as typed.
        tables: Vec<String>,
        /// How.
        options: AddOptions,
    },
    /// Copy tables again.
    Resync {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// List provider tables not added here.
    Missing,
    /// Unregister tables on the subscriber.
    Remove {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// List the subscriber's tables and their states.
    Tables,
    /// Follow provider sequences on the subscriber.
    AddSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// Stop following sequences on the subscriber.
    RemoveSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// List the subscriber's sequences with their values.
    Seqs,
    /// List foreign keys set aside for a copy, in place, or both.
    Fkeys {
        /// Which.
        lists: Lists,
    },
    /// List triggers set aside for a copy, in place, or both.
    Triggers {
        /// Which.
        lists: Lists,
    },
    /// Put triggers set aside back now.
    RestoreTriggers {
        /// The table as typed.
        table: String,
        /// Only this trigger.
        trigger: Option<String>,
    },
    /// Register the consumer on the provider queue.
    Register,
    /// Unregister the consumer.
    Unregister,
    /// Let replay pass over a queued script instead of running it.
    SkipExecute {
        /// The script's file name.
        script: String,
    },
}

/// The subscriber command `name` (spelled out, `subscriber add`) from its arguments and
/// flags; `subscriber add`'s options with values are set by the caller.
pub(super) fn build(name: &str, args: Vec<String>, flags: &[&str]) -> Result<Command> {
    let allowed: &[&str] = if name == "subscriber add" {
        &["all", "expect-sync", "skip-truncate", "force", "create"]
    } else {
        &[]
    };
    check_flags(name, flags, allowed)?;
    Ok(match name {
        "subscriber install" => no_args(name, &args, Command::Install)?,
        "subscriber add" => {
            let all = flags.contains(&"all");
            Command::Add {
                tables: some_tables(name, args, all)?,
                options: AddOptions {
                    all,
                    expect_sync: flags.contains(&"expect-sync"),
                    skip_truncate: flags.contains(&"skip-truncate"),
                    force: flags.contains(&"force"),
                    create: flags.contains(&"create"),
                    dest_table: None,
                    copy_condition: None,
                },
            }
        }
        "subscriber resync" => Command::Resync {
            tables: some_tables(name, args, false)?,
        },
        "subscriber missing" => no_args(name, &args, Command::Missing)?,
        "subscriber remove" => Command::Remove {
            tables: some_tables(name, args, false)?,
        },
        "subscriber tables" => no_args(name, &args, Command::Tables)?,
        "subscriber add-seq" => Command::AddSeq {
            seqs: some_seqs(name, args)?,
        },
        "subscriber remove-seq" => Command::RemoveSeq {
            seqs: some_seqs(name, args)?,
        },
        "subscriber seqs" => no_args(name, &args, Command::Seqs)?,
        "subscriber fkeys" | "subscriber triggers" => {
            let lists = match args.as_slice() {
                [] => Lists::Both,
                [which] if which == "pending" => Lists::Pending,
                [which] if which == "active" => Lists::Active,
                _ => {
                    return Err(usage(format!(
                        "`{name}` takes `pending`, `active` or nothing (both), found `{}`",
                        args.join(" ")
                    )));
                }
            };
            if name == "subscriber fkeys" {
                Command::Fkeys { lists }
            } else {
                Command::Triggers { lists }
            }
        }
        "subscriber restore-triggers" => match <[String; 2]>::try_from(args) {
            Ok([table, trigger]) => Command::RestoreTriggers {
                table,
                trigger: Some(trigger),
            },
            Err(args) => match <[String; 1]>::try_from(args) {
                Ok([table]) => Command::RestoreTriggers {
                    table,
                    trigger: None,
                },
                Err(_) => {
                    return Err(usage(
                        "`subscriber restore-triggers` takes a table and optionally a trigger",
                    ));
                }
            },
        },
        "subscriber register" => no_args(name, &args, Command::Register)?,
        "subscriber unregister" => no_args(name, &args, Command::Unregister)?,
        "subscriber skip-execute" => match <[String; 1]>::try_from(args) {
            Ok([script]) => Command::SkipExecute { script },
            Err(_) => {
                return Err(usage(
                    "`subscriber skip-execute` takes one script's file name",
                ));
            }
        },
        other => unreachable!("`{other}` is listed in COMMANDS but not built"),
    })
}

impl Command {
    /// Runs the command with `config`.
    pub(super) fn run(self, config: &Config) -> Result<()> {
        // `unregister` needs only the provider; every other command the subscriber.
        let connect = || Subscriber::connect(config);
        match self {
            Command::Install => connect()?.install(),
            Command::Add { tables, options } => connect()?.add(&tables, &options),
            Command::Resync { tables } => connect()?.resync(&tables),
            Command::Missing => connect()?.missing(),
            Command::Remove { tables } => connect()?.remove(&tables),
            Command::Tables => connect()?.tables(),
            Command::AddSeq { seqs } => connect()?.add_seqs(&seqs),
            Command::RemoveSeq { seqs } => connect()?.remove_seqs(&seqs),
            Command::Seqs => connect()?.seqs(),
            Command::Fkeys { lists } => connect()?.objects("fkey", lists),
            Command::Triggers { lists } => connect()?.objects("trigger", lists),
            Command::RestoreTriggers { table, trigger } => {
                connect()?.restore_triggers(&table, trigger.as_deref())
            }
            Command::Register => connect()?.register(),
            Command::Unregister => subscriber::unregister(&Job::from_config(config)?),
            Command::SkipExecute { script } => connect()?.skip_execute(&script),
        }
    }
}
