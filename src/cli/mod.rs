//! The command line (SPEC §2): `skyrep [OPTIONS] CONFIG.ini COMMAND [ARGS...]`.
//!
//! Global options may stand anywhere, as with Londiste (`skyrep conf.ini check -v`). This
//! module only parses; `main` runs what it returns.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Result;
use lexopt::prelude::*;

use crate::daemon::Control;
use crate::error::usage;
use crate::subscriber::AddOptions;

/// Text of `skyrep --help`.
pub const HELP: &str = "\
skyrep: trigger-based table replication for PostgreSQL (Londiste-compatible)

Usage:
  skyrep [OPTIONS] CONFIG.ini COMMAND [ARGS...]
  skyrep -s|-k|-r CONFIG.ini   signal the running daemon of that config
  skyrep demo                  replicate a sample workload between two throwaway servers
  skyrep --ini                 print a sample config with every key and its default

Options:
  -h, --help        show this help and exit
  -V, --version     show the version and exit
  -q, --quiet       only warnings and errors on the terminal
  -v, --verbose     debug logging (twice: also the database driver's)
  -d, --daemon      run `replay` or `ticker` in the background (needs logfile, pidfile)
  -s, --stop        ask the daemon to stop safely (SIGINT: finish the batch, roll back copies)
  -k, --kill        stop the daemon at once (SIGTERM; transactions still roll back)
  -r, --reload      reload the daemon's config and reopen its log file (SIGHUP)
      --ini         print the sample config and exit

Commands:
  check             load the config and connect to every database it names
  install           install or upgrade pgq in `db` (a ticker config)
  ticker            tick `db`, or every database under `base_connstr`, as pgqd does
  replay            the replication daemon: ticker, replay and copy threads (alias: worker)

  provider install  install or upgrade pgq and londiste in `provider_db`; create the queue
  provider add TABLE... [--all]
                    register tables and create their capture triggers
  provider remove TABLE...
                    drop their capture triggers and unregister them
  provider tables   list the registered tables
  provider refresh-trigger TABLE...
                    regenerate their capture triggers after their columns changed
  provider execute FILE.sql...
                    run each script on the provider and queue it: every subscriber
                    runs it at the same point of the stream (alias: execute)
  provider add-seq SEQ...
                    register sequences whose values subscribers follow
  provider remove-seq SEQ...
                    unregister them
  provider seqs     list the registered sequences

  subscriber install
                    install or upgrade londiste in `subscriber_db`
  subscriber add TABLE... [--all] [--expect-sync] [--skip-truncate] [--force]
                 [--create] [--dest-table=NAME] [--copy-condition=SQL]
                    register tables for replication (--expect-sync: already equal;
                    --skip-truncate: copy without emptying; --force: even if the
                    columns differ; --create: create missing tables; --dest-table:
                    apply to another local table; --copy-condition: only these rows)
  subscriber resync TABLE...
                    copy the tables again
  subscriber missing
                    provider tables not added here
  subscriber remove TABLE...
                    stop applying events to them; their data is left alone
  subscriber tables one row per table: table_name  merge_state  table_attrs
  subscriber add-seq SEQ...
                    follow provider sequences: before each batch, replay moves them
                    forward to the provider's values (never back)
  subscriber remove-seq SEQ...
                    stop following them; their values are left alone
  subscriber seqs   one row per sequence: name, local last value, and a mark when
                    the provider no longer has it
  subscriber fkeys [pending|active]
                    foreign keys set aside while a table is copied (active: in place)
  subscriber triggers [pending|active]
                    triggers set aside while a table is copied (active: in place)
  subscriber restore-triggers TABLE [TRIGGER]
                    put the triggers set aside on TABLE back now
  subscriber register
                    register the job's consumer on the provider queue
  subscriber unregister
                    remove it and forget the position it had applied up to
  subscriber skip-execute FILE.sql
                    let replay pass over that queued script instead of running it
  tables, add-table, remove-table, add-seq, remove-seq, seqs
                    the same as subscriber tables, add, remove, add-seq,
                    remove-seq, seqs

  compare [TABLE...]
                    wait until replay has caught up (provider locked at most
                    lock_timeout), then count and checksum both sides; exit 1 if any differ
  repair [TABLE...] [--apply]
                    the same wait, then a row-by-row diff written as SQL to
                    fix.SCHEMA.TABLE.sql (--apply: also run it on the subscriber)
  status [--json]   the queue, the ticker and every consumer with its lag, this
                    subscriber's tables ok/copying/other and last errors

Exit codes: 0 success, 1 the command failed, 2 usage or config error.
See skyrep(1) and skyrep(5).
";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub struct Cli {
    /// -1 for `-q`, 0 by default, +1 per `-v`.
    pub verbosity: i8,
    /// `-d`: detach and run in the background.
    pub daemon: bool,
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
    /// Run the demo.
    Demo,
    /// Signal the running daemon of a config.
    Signal {
        /// The config file.
        config: PathBuf,
        /// What to ask.
        control: Control,
    },
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
    /// Run the standalone ticker.
    Ticker,
    /// Run the replication daemon.
    Replay,
    /// Install or upgrade pgq and londiste in `provider_db` and create the queue.
    ProviderInstall,
    /// Register tables on the provider.
    ProviderAdd {
        /// Tables as typed.
        tables: Vec<String>,
        /// Every user table.
        all: bool,
    },
    /// Unregister tables on the provider.
    ProviderRemove {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// List the provider's tables.
    ProviderTables,
    /// Regenerate the capture triggers of tables whose columns changed.
    ProviderRefreshTrigger {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// Run scripts on the provider and queue them for the subscribers.
    ProviderExecute {
        /// The script files.
        files: Vec<String>,
    },
    /// Register sequences on the provider.
    ProviderAddSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// Unregister sequences on the provider.
    ProviderRemoveSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// List the provider's sequences.
    ProviderSeqs,
    /// Install or upgrade londiste in `subscriber_db`.
    SubscriberInstall,
    /// Register tables on the subscriber.
    SubscriberAdd {
        /// Tables as typed.
        tables: Vec<String>,
        /// How.
        options: AddOptions,
    },
    /// Copy tables again.
    SubscriberResync {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// List provider tables not added here.
    SubscriberMissing,
    /// Unregister tables on the subscriber.
    SubscriberRemove {
        /// Tables as typed.
        tables: Vec<String>,
    },
    /// List the subscriber's tables and their states.
    SubscriberTables,
    /// Follow provider sequences on the subscriber.
    SubscriberAddSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// Stop following sequences on the subscriber.
    SubscriberRemoveSeq {
        /// Sequences as typed.
        seqs: Vec<String>,
    },
    /// List the subscriber's sequences with their values.
    SubscriberSeqs,
    /// List foreign keys set aside for a copy, or in place.
    SubscriberFkeys {
        /// Those in place instead of those set aside.
        active: bool,
    },
    /// List triggers set aside for a copy, or in place.
    SubscriberTriggers {
        /// Those in place instead of those set aside.
        active: bool,
    },
    /// Put triggers set aside back now.
    SubscriberRestoreTriggers {
        /// The table as typed.
        table: String,
        /// Only this trigger.
        trigger: Option<String>,
    },
    /// Register the consumer on the provider queue.
    SubscriberRegister,
    /// Unregister the consumer.
    SubscriberUnregister,
    /// Let replay pass over a queued script instead of running it.
    SubscriberSkipExecute {
        /// The script's file name.
        script: String,
    },
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
    },
    /// The queue, its consumers, this subscriber's tables and last errors.
    Status {
        /// One JSON object instead of text.
        json: bool,
    },
}

/// Command options (after the command word) that take no value.
const FLAGS: &[&str] = &[
    "all",
    "expect-sync",
    "skip-truncate",
    "force",
    "create",
    "apply",
    "json",
];

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
    let mut daemon = false;
    let mut dest_table: Option<String> = None;
    let mut copy_condition: Option<String> = None;
    let mut control: Option<Control> = None;
    let mut early: Option<Action> = None;
    let mut words: Vec<String> = Vec::new();
    let mut flags: Vec<&'static str> = Vec::new();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => early = early.or(Some(Action::Help)),
            Short('V') | Long("version") => early = early.or(Some(Action::Version)),
            Long("ini") => early = early.or(Some(Action::SampleConfig)),
            Short('q') | Long("quiet") => verbosity = -1,
            Short('v') | Long("verbose") => verbosity = verbosity.max(0).saturating_add(1),
            Short('d') | Long("daemon") => daemon = true,
            Short('s') | Long("stop") => control = pick(control, Control::Stop)?,
            Short('k') | Long("kill") => control = pick(control, Control::Kill)?,
            Short('r') | Long("reload") => control = pick(control, Control::Reload)?,
            Long("dest-table") if words.len() >= 2 => {
                dest_table = Some(text_value(&mut parser, "dest-table")?);
            }
            Long("copy-condition") if words.len() >= 2 => {
                copy_condition = Some(text_value(&mut parser, "copy-condition")?);
            }
            Long(name) if words.len() >= 2 && FLAGS.contains(&name) => {
                let flag = FLAGS.iter().find(|f| **f == name).expect("just checked");
                flags.push(flag);
            }
            Value(value) => words.push(
                value
                    .into_string()
                    .map_err(|v| usage(format!("argument {v:?} is not valid UTF-8")))?,
            ),
            _ => return Err(arg.unexpected().into()),
        }
    }
    if let Some(action) = early {
        return Ok(Cli {
            verbosity,
            daemon,
            action,
        });
    }
    if words == ["demo"] && control.is_none() && !daemon {
        return Ok(Cli {
            verbosity,
            daemon,
            action: Action::Demo,
        });
    }
    if let Some(control) = control {
        if daemon {
            return Err(usage("-d cannot be combined with -s, -k or -r"));
        }
        let [config] = <[String; 1]>::try_from(words).map_err(|words| {
            usage(format!(
                "-s, -k and -r take only the config file, found {}",
                words.join(" ")
            ))
        })?;
        return Ok(Cli {
            verbosity,
            daemon,
            action: Action::Signal {
                config: PathBuf::from(config),
                control,
            },
        });
    }
    let mut words = words.into_iter();
    let config = words
        .next()
        .ok_or_else(|| usage("missing CONFIG.ini argument (see skyrep --help)"))?;
    let first = words.next().ok_or_else(|| {
        usage(format!(
            "missing COMMAND after {config} (see skyrep --help)"
        ))
    })?;
    let mut rest: Vec<String> = words.collect();
    let name = match first.as_str() {
        "provider" | "subscriber" => {
            if rest.is_empty() {
                return Err(usage(format!(
                    "`{first}` needs a subcommand, e.g. `{first} install` (see skyrep --help)"
                )));
            }
            format!("{first} {}", rest.remove(0))
        }
        "tables" => "subscriber tables".to_string(),
        "add-table" => "subscriber add".to_string(),
        "remove-table" => "subscriber remove".to_string(),
        "execute" => "provider execute".to_string(),
        "add-seq" => "subscriber add-seq".to_string(),
        "remove-seq" => "subscriber remove-seq".to_string(),
        "seqs" => "subscriber seqs".to_string(),
        "worker" => "replay".to_string(),
        _ => first,
    };
    if (dest_table.is_some() || copy_condition.is_some()) && name != "subscriber add" {
        return Err(usage(format!(
            "`{name}` takes neither --dest-table nor --copy-condition"
        )));
    }
    let mut command = build(&name, rest, &flags)?;
    if let Command::SubscriberAdd { options, .. } = &mut command {
        options.dest_table = dest_table;
        options.copy_condition = copy_condition;
    }
    if daemon && !matches!(command, Command::Replay | Command::Ticker) {
        return Err(usage(format!(
            "-d runs `replay` or `ticker` in the background, not `{name}`"
        )));
    }
    Ok(Cli {
        verbosity,
        daemon,
        action: Action::Run {
            config: PathBuf::from(config),
            command,
        },
    })
}

/// The value of option `--name`, which must be UTF-8.
fn text_value(parser: &mut lexopt::Parser, name: &str) -> Result<String> {
    parser
        .value()?
        .into_string()
        .map_err(|v| usage(format!("--{name} {v:?} is not valid UTF-8")))
}

/// One of `-s`, `-k`, `-r`; two different ones are a usage error.
fn pick(current: Option<Control>, new: Control) -> Result<Option<Control>> {
    match current {
        Some(old) if old != new => Err(usage("use only one of -s, -k and -r")),
        _ => Ok(Some(new)),
    }
}

/// Every command name, subcommands spelled out (the Londiste 3 short forms `tables`,
/// `add-table`, `remove-table`, `add-seq`, `remove-seq`, `seqs` are read as their
/// `subscriber` commands).
pub const COMMANDS: &[&str] = &[
    "check",
    "install",
    "ticker",
    "replay",
    "provider install",
    "provider add",
    "provider remove",
    "provider tables",
    "provider refresh-trigger",
    "provider execute",
    "provider add-seq",
    "provider remove-seq",
    "provider seqs",
    "subscriber install",
    "subscriber add",
    "subscriber remove",
    "subscriber resync",
    "subscriber missing",
    "subscriber tables",
    "subscriber add-seq",
    "subscriber remove-seq",
    "subscriber seqs",
    "subscriber fkeys",
    "subscriber triggers",
    "subscriber restore-triggers",
    "subscriber register",
    "subscriber unregister",
    "subscriber skip-execute",
    "compare",
    "repair",
    "status",
];

/// The command `name` with its arguments and flags, checking that it takes them.
fn build(name: &str, args: Vec<String>, flags: &[&str]) -> Result<Command> {
    if !COMMANDS.contains(&name) {
        return Err(usage(format!(
            "unknown command `{name}` (see skyrep --help)"
        )));
    }
    let needs_tables = matches!(
        name,
        "provider add"
            | "provider remove"
            | "provider refresh-trigger"
            | "subscriber add"
            | "subscriber remove"
            | "subscriber resync"
    );
    let needs_seqs = matches!(
        name,
        "provider add-seq" | "provider remove-seq" | "subscriber add-seq" | "subscriber remove-seq"
    );
    let takes_tables = needs_tables
        || needs_seqs
        || matches!(
            name,
            "compare"
                | "repair"
                | "provider execute"
                | "subscriber skip-execute"
                | "subscriber fkeys"
                | "subscriber triggers"
                | "subscriber restore-triggers"
        );
    let allowed: &[&str] = match name {
        "provider add" => &["all"],
        "subscriber add" => &["all", "expect-sync", "skip-truncate", "force", "create"],
        "repair" => &["apply"],
        "status" => &["json"],
        _ => &[],
    };
    if let Some(flag) = flags.iter().find(|f| !allowed.contains(f)) {
        return Err(usage(format!("`{name}` does not take --{flag}")));
    }
    if !takes_tables && let Some(extra) = args.first() {
        return Err(usage(format!(
            "`{name}` takes no arguments, found `{extra}`"
        )));
    }
    let all = flags.contains(&"all");
    if needs_seqs && args.is_empty() {
        return Err(usage(format!("`{name}` needs at least one sequence")));
    }
    if needs_tables && args.is_empty() && !all {
        return Err(usage(format!("`{name}` needs at least one table")));
    }
    if all && !args.is_empty() {
        return Err(usage(format!(
            "`{name}` takes either tables or --all, not both"
        )));
    }
    Ok(match name {
        "check" => Command::Check,
        "install" => Command::Install,
        "ticker" => Command::Ticker,
        "replay" => Command::Replay,
        "provider install" => Command::ProviderInstall,
        "provider add" => Command::ProviderAdd { tables: args, all },
        "provider remove" => Command::ProviderRemove { tables: args },
        "provider tables" => Command::ProviderTables,
        "provider refresh-trigger" => Command::ProviderRefreshTrigger { tables: args },
        "provider execute" if args.is_empty() => {
            return Err(usage("`provider execute` needs at least one file"));
        }
        "provider execute" => Command::ProviderExecute { files: args },
        "provider add-seq" => Command::ProviderAddSeq { seqs: args },
        "provider remove-seq" => Command::ProviderRemoveSeq { seqs: args },
        "provider seqs" => Command::ProviderSeqs,
        "subscriber install" => Command::SubscriberInstall,
        "subscriber add" => Command::SubscriberAdd {
            tables: args,
            options: AddOptions {
                all,
                expect_sync: flags.contains(&"expect-sync"),
                skip_truncate: flags.contains(&"skip-truncate"),
                force: flags.contains(&"force"),
                create: flags.contains(&"create"),
                dest_table: None,
                copy_condition: None,
            },
        },
        "subscriber resync" => Command::SubscriberResync { tables: args },
        "subscriber missing" => Command::SubscriberMissing,
        "subscriber remove" => Command::SubscriberRemove { tables: args },
        "subscriber tables" => Command::SubscriberTables,
        "subscriber add-seq" => Command::SubscriberAddSeq { seqs: args },
        "subscriber remove-seq" => Command::SubscriberRemoveSeq { seqs: args },
        "subscriber seqs" => Command::SubscriberSeqs,
        "subscriber fkeys" | "subscriber triggers" => {
            let active = match args.as_slice() {
                [] => false,
                [which] if which == "pending" => false,
                [which] if which == "active" => true,
                _ => {
                    return Err(usage(format!(
                        "`{name}` takes `pending` (the default) or `active`, found `{}`",
                        args.join(" ")
                    )));
                }
            };
            if name == "subscriber fkeys" {
                Command::SubscriberFkeys { active }
            } else {
                Command::SubscriberTriggers { active }
            }
        }
        "subscriber restore-triggers" => match <[String; 2]>::try_from(args) {
            Ok([table, trigger]) => Command::SubscriberRestoreTriggers {
                table,
                trigger: Some(trigger),
            },
            Err(args) => match <[String; 1]>::try_from(args) {
                Ok([table]) => Command::SubscriberRestoreTriggers {
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
        "subscriber register" => Command::SubscriberRegister,
        "subscriber unregister" => Command::SubscriberUnregister,
        "subscriber skip-execute" => match <[String; 1]>::try_from(args) {
            Ok([script]) => Command::SubscriberSkipExecute { script },
            Err(_) => {
                return Err(usage(
                    "`subscriber skip-execute` takes one script's file name",
                ));
            }
        },
        "compare" => Command::Compare { tables: args },
        "repair" => Command::Repair {
            tables: args,
            apply: flags.contains(&"apply"),
        },
        "status" => Command::Status {
            json: flags.contains(&"json"),
        },
        other => unreachable!("`{other}` is listed in COMMANDS but not built"),
    })
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
    fn set_aside_commands() {
        let command = |args: &[&str]| match cli(args).unwrap().action {
            Action::Run { command, .. } => command,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            command(&["a.ini", "subscriber", "fkeys"]),
            Command::SubscriberFkeys { active: false }
        );
        assert_eq!(
            command(&["a.ini", "subscriber", "triggers", "active"]),
            Command::SubscriberTriggers { active: true }
        );
        assert_eq!(
            command(&["a.ini", "subscriber", "restore-triggers", "t", "tr"]),
            Command::SubscriberRestoreTriggers {
                table: "t".into(),
                trigger: Some("tr".into())
            }
        );
        assert!(
            fails(&["a.ini", "subscriber", "fkeys", "all"])
                .contains("`pending` (the default) or `active`")
        );
        assert!(fails(&["a.ini", "subscriber", "restore-triggers"]).contains("takes a table"));
        assert!(
            fails(&["a.ini", "subscriber", "restore-triggers", "a", "b", "c"])
                .contains("takes a table")
        );
    }

    #[test]
    fn daemon_controls() {
        let run = cli(&["-d", "a.ini", "replay"]).unwrap();
        assert!(run.daemon);
        assert!(cli(&["a.ini", "worker", "--daemon"]).unwrap().daemon);
        assert!(cli(&["a.ini", "ticker", "-d"]).unwrap().daemon);
        for (option, control) in [
            ("-s", Control::Stop),
            ("--kill", Control::Kill),
            ("-r", Control::Reload),
        ] {
            assert_eq!(
                cli(&[option, "a.ini"]).unwrap().action,
                Action::Signal {
                    config: PathBuf::from("a.ini"),
                    control
                }
            );
        }
        assert_eq!(cli(&["demo"]).unwrap().action, Action::Demo);
        assert!(fails(&["-d", "a.ini", "check"]).contains("not `check`"));
        assert!(fails(&["-s", "-r", "a.ini"]).contains("only one of -s, -k and -r"));
        assert!(fails(&["-s", "a.ini", "replay"]).contains("take only the config file"));
        assert!(fails(&["-s"]).contains("take only the config file"));
        assert!(fails(&["-d", "-k", "a.ini"]).contains("cannot be combined"));
    }

    #[test]
    fn options_anywhere() {
        let expected = Cli {
            verbosity: 2,
            daemon: false,
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
    fn sequence_commands_and_short_forms() {
        let run = |args: &[&str]| match cli(args).unwrap().action {
            Action::Run { command, .. } => command,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            run(&["a.ini", "provider", "add-seq", "s1", "x.s2"]),
            Command::ProviderAddSeq {
                seqs: vec!["s1".into(), "x.s2".into()]
            }
        );
        assert_eq!(run(&["a.ini", "provider", "seqs"]), Command::ProviderSeqs);
        assert_eq!(
            run(&["a.ini", "add-seq", "s"]),
            Command::SubscriberAddSeq {
                seqs: vec!["s".into()]
            }
        );
        assert_eq!(
            run(&["a.ini", "remove-seq", "s"]),
            Command::SubscriberRemoveSeq {
                seqs: vec!["s".into()]
            }
        );
        assert_eq!(run(&["a.ini", "seqs"]), Command::SubscriberSeqs);
        assert_eq!(
            fails(&["a.ini", "subscriber", "add-seq"]),
            "`subscriber add-seq` needs at least one sequence"
        );
        assert_eq!(
            fails(&["a.ini", "provider", "remove-seq", "--all"]),
            "`provider remove-seq` does not take --all"
        );
        assert_eq!(
            fails(&["a.ini", "seqs", "s"]),
            "`subscriber seqs` takes no arguments, found `s`"
        );
    }

    #[test]
    fn table_commands_and_their_flags() {
        let run = |args: &[&str]| match cli(args).unwrap().action {
            Action::Run { command, .. } => command,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            run(&["a.ini", "provider", "add", "t1", "s.t2"]),
            Command::ProviderAdd {
                tables: vec!["t1".into(), "s.t2".into()],
                all: false
            }
        );
        assert_eq!(
            run(&["a.ini", "provider", "add", "--all"]),
            Command::ProviderAdd {
                tables: vec![],
                all: true
            }
        );
        assert_eq!(
            run(&["a.ini", "add-table", "t", "--expect-sync"]),
            Command::SubscriberAdd {
                tables: vec!["t".into()],
                options: AddOptions {
                    expect_sync: true,
                    ..AddOptions::default()
                }
            }
        );
        assert_eq!(run(&["a.ini", "tables"]), Command::SubscriberTables);
        assert_eq!(
            run(&["a.ini", "compare"]),
            Command::Compare { tables: vec![] }
        );
        assert_eq!(
            run(&["a.ini", "repair", "t", "--apply"]),
            Command::Repair {
                tables: vec!["t".into()],
                apply: true
            }
        );
        assert_eq!(
            fails(&["a.ini", "compare", "--apply"]),
            "`compare` does not take --apply"
        );
        assert_eq!(
            run(&["a.ini", "status", "--json"]),
            Command::Status { json: true }
        );
        assert_eq!(run(&["a.ini", "status"]), Command::Status { json: false });
        assert_eq!(
            fails(&["a.ini", "status", "t"]),
            "`status` takes no arguments, found `t`"
        );
        assert_eq!(
            fails(&["a.ini", "check", "--json"]),
            "`check` does not take --json"
        );
        assert_eq!(
            fails(&["a.ini", "provider", "add"]),
            "`provider add` needs at least one table"
        );
        assert_eq!(
            fails(&["a.ini", "provider", "remove", "--all"]),
            "`provider remove` does not take --all"
        );
        assert_eq!(
            fails(&["a.ini", "subscriber", "add", "t", "--all"]),
            "`subscriber add` takes either tables or --all, not both"
        );
        assert_eq!(
            fails(&["--all", "a.ini", "tables"]),
            "invalid option '--all' (see skyrep --help)"
        );
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
