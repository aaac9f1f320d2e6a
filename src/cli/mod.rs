//! The command line (SPEC §2): `skyrep [OPTIONS] CONFIG.ini COMMAND [ARGS...]`.
//!
//! Global options may stand anywhere, as with Londiste (`skyrep conf.ini check -v`). This
//! module reads the global options and the command word; each group of commands has a file
//! that checks its arguments and runs it with the role that does the work: [`provider`],
//! [`subscriber`], [`verify`] (check, compare, repair, status), [`daemons`] (install,
//! ticker, replay) and [`pgqadm`] (create, drop, register, unregister, config; and status on
//! a ticker config). `main` starts logging and the pidfile, then runs the [`Command`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use lexopt::prelude::*;

use crate::base::error::usage;
use crate::config::Config;
use crate::queue::admin;
use crate::service::daemon::Control;

mod args;
pub mod daemons;
mod help;
pub mod pgqadm;
pub mod provider;
pub mod subscriber;
pub mod verify;

pub use daemons::Started;
pub use help::HELP;

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

/// A command with its arguments, by group.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// `install`, `ticker`, `replay`.
    Daemon(daemons::Command),
    /// `provider ...`.
    Provider(provider::Command),
    /// `subscriber ...`.
    Subscriber(subscriber::Command),
    /// `check`, `compare`, `repair`, `status`.
    Verify(verify::Command),
    /// `create`, `drop`, `register`, `unregister`, `config` (pgqadm's, on a ticker config).
    Pgqadm(pgqadm::Command),
}

impl Command {
    /// Whether this is a daemon (`replay` or `ticker`): it may run in the background and
    /// takes the pidfile.
    pub fn is_daemon(&self) -> bool {
        matches!(
            self,
            Command::Daemon(daemons::Command::Replay | daemons::Command::Ticker)
        )
    }

    /// Starts a daemon (`replay`, `ticker`) up to the moment `-d` reports a start: its
    /// start-up checks, its lock and its signal handlers (see [`Started`]). `None` for the
    /// other commands.
    pub fn start(&self, config: &Config) -> Result<Option<Started>> {
        match self {
            Command::Daemon(command) => command.start(config),
            _ => Ok(None),
        }
    }

    /// Runs the command with `config` and what [`Command::start`] returned. `status` on a
    /// ticker config is pgqadm's.
    pub fn run(self, config: &Config, started: Option<Started>) -> Result<()> {
        match self {
            Command::Verify(verify::Command::Status { json, max_lag })
                if admin::is_ticker_config(config)? =>
            {
                admin::status(config, json, max_lag)
            }
            Command::Daemon(command) => command.run(config, started),
            Command::Provider(command) => command.run(config),
            Command::Subscriber(command) => command.run(config),
            Command::Verify(command) => command.run(config),
            Command::Pgqadm(command) => command.run(config),
        }
    }
}

/// Command options (after the command word) that take no value.
const FLAGS: &[&str] = &[
    "all",
    "bulk",
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
    let mut dir: Option<PathBuf> = None;
    let mut max_lag: Option<Duration> = None;
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
                let condition = text_value(&mut parser, "copy-condition")?;
                if condition.trim().is_empty() {
                    return Err(usage(
                        "--copy-condition is empty: give a condition over the table's \
                         columns, e.g. --copy-condition='id > 0'",
                    ));
                }
                copy_condition = Some(condition);
            }
            Long("dir") if words.len() >= 2 => dir = Some(PathBuf::from(parser.value()?)),
            Long("max-lag") if words.len() >= 2 => {
                max_lag = Some(seconds_value(&text_value(&mut parser, "max-lag")?)?);
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
            // `create-leaf ... --provider=...`: say what is missing, not the option.
            Long(_) if words.get(1).is_some_and(|w| CASCADE.contains(&w.as_str())) => {
                return Err(cascade(&words[1]));
            }
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
    // `help COMMAND` asks for help too, unless a config file is named `help`.
    let help_first = words.first().is_some_and(|w| w == "help") && !Path::new("help").exists();
    if help_first || (words.len() == 2 && words[1] == "help") {
        return Ok(Cli {
            verbosity,
            daemon,
            action: Action::Help,
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
        short => match SHORT_FORMS.iter().find(|(word, _)| *word == short) {
            Some((_, command)) => command.to_string(),
            None => first,
        },
    };
    if (dest_table.is_some() || copy_condition.is_some()) && name != "subscriber add" {
        return Err(usage(format!(
            "`{name}` takes neither --dest-table nor --copy-condition"
        )));
    }
    if dir.is_some() && name != "repair" {
        return Err(usage(format!("`{name}` does not take --dir")));
    }
    if max_lag.is_some() && name != "status" {
        return Err(usage(format!("`{name}` does not take --max-lag")));
    }
    let mut command = build(&name, rest, &flags)?;
    if let Command::Subscriber(subscriber::Command::Add { options, .. }) = &mut command {
        options.dest_table = dest_table;
        options.copy_condition = copy_condition;
    }
    if let (Command::Verify(verify::Command::Repair { dir: to, .. }), Some(dir)) =
        (&mut command, dir)
    {
        *to = dir;
    }
    if let (Command::Verify(verify::Command::Status { max_lag: to, .. }), Some(limit)) =
        (&mut command, max_lag)
    {
        *to = Some(limit);
    }
    if daemon && !command.is_daemon() {
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

/// `--max-lag`'s value: a number of seconds, not negative.
fn seconds_value(text: &str) -> Result<Duration> {
    match text.trim().parse::<f64>().map(Duration::try_from_secs_f64) {
        Ok(Ok(limit)) => Ok(limit),
        _ => Err(usage(format!(
            "--max-lag {text:?}: want a number of seconds, e.g. --max-lag 30"
        ))),
    }
}

/// One of `-s`, `-k`, `-r`; two different ones are a usage error.
fn pick(current: Option<Control>, new: Control) -> Result<Option<Control>> {
    match current {
        Some(old) if old != new => Err(usage("use only one of -s, -k and -r")),
        _ => Ok(Some(new)),
    }
}

/// Londiste 3's words for commands, and the command each is read as.
pub const SHORT_FORMS: &[(&str, &str)] = &[
    ("tables", "subscriber tables"),
    ("add-table", "subscriber add"),
    ("remove-table", "subscriber remove"),
    ("resync", "subscriber resync"),
    ("missing", "subscriber missing"),
    ("add-seq", "subscriber add-seq"),
    ("remove-seq", "subscriber remove-seq"),
    ("seqs", "subscriber seqs"),
    ("execute", "provider execute"),
    ("worker", "replay"),
];

/// Every command name, subcommands spelled out (the [`SHORT_FORMS`] are read as these).
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
    "create",
    "drop",
    "register",
    "unregister",
    "config",
];

/// Londiste 3's commands for nodes of a cascade (SPEC §8), refused with an error that says
/// so rather than as unknown.
const CASCADE: &[&str] = &[
    "create-root",
    "create-branch",
    "create-leaf",
    "members",
    "node-info",
    "change-provider",
    "takeover",
    "tag-dead",
    "tag-alive",
    "drop-node",
    "pause",
    "resume",
    "wait-sync",
    "wait-root",
    "wait-provider",
];

/// The error for a command of [`CASCADE`].
fn cascade(name: &str) -> anyhow::Error {
    usage(format!(
        "`{name}` is a command of Londiste 3's cascade, which skyrep does not have yet: \
         replication goes from `provider_db` to `subscriber_db` of one config (see skyrep \
         --help)"
    ))
}

/// The command `name` (subcommands spelled out) with its arguments and flags, checked by
/// its group.
fn build(name: &str, args: Vec<String>, flags: &[&str]) -> Result<Command> {
    if CASCADE.contains(&name) {
        return Err(cascade(name));
    }
    if !COMMANDS.contains(&name) {
        return Err(usage(format!(
            "unknown command `{name}` (see skyrep --help)"
        )));
    }
    Ok(if name.starts_with("provider ") {
        Command::Provider(provider::build(name, args, flags)?)
    } else if name.starts_with("subscriber ") {
        Command::Subscriber(subscriber::build(name, args, flags)?)
    } else if matches!(name, "install" | "ticker" | "replay") {
        Command::Daemon(daemons::build(name, args, flags)?)
    } else if pgqadm::NAMES.contains(&name) {
        Command::Pgqadm(pgqadm::build(name, args, flags)?)
    } else {
        Command::Verify(verify::build(name, args, flags)?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::error::{EXIT_USAGE, exit_code};
    use crate::replay::subscriber::{AddOptions, Lists};

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
            Command::Subscriber(subscriber::Command::Fkeys { lists: Lists::Both })
        );
        assert_eq!(
            command(&["a.ini", "subscriber", "fkeys", "pending"]),
            Command::Subscriber(subscriber::Command::Fkeys {
                lists: Lists::Pending
            })
        );
        assert_eq!(
            command(&["a.ini", "subscriber", "triggers"]),
            Command::Subscriber(subscriber::Command::Triggers { lists: Lists::Both })
        );
        assert_eq!(
            command(&["a.ini", "subscriber", "triggers", "active"]),
            Command::Subscriber(subscriber::Command::Triggers {
                lists: Lists::Active
            })
        );
        assert_eq!(
            command(&["a.ini", "subscriber", "restore-triggers", "t", "tr"]),
            Command::Subscriber(subscriber::Command::RestoreTriggers {
                table: "t".into(),
                trigger: Some("tr".into())
            })
        );
        assert!(
            fails(&["a.ini", "subscriber", "fkeys", "all"])
                .contains("takes `pending`, `active` or nothing (both), found `all`")
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
                command: Command::Verify(verify::Command::Check),
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
                command: Command::Provider(provider::Command::Install)
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
        // `help` as a command word, alone or after a config file, as `--help`.
        assert_eq!(cli(&["help"]).unwrap().action, Action::Help);
        assert_eq!(cli(&["a.ini", "help"]).unwrap().action, Action::Help);
        assert_eq!(cli(&["-v", "help"]).unwrap().action, Action::Help);
        // `help` before a command, where no config file is named `help`.
        assert_eq!(cli(&["help", "status"]).unwrap().action, Action::Help);
    }

    #[test]
    fn sequence_commands_and_short_forms() {
        let run = |args: &[&str]| match cli(args).unwrap().action {
            Action::Run { command, .. } => command,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            run(&["a.ini", "provider", "add-seq", "s1", "x.s2"]),
            Command::Provider(provider::Command::AddSeq {
                seqs: vec!["s1".into(), "x.s2".into()]
            })
        );
        assert_eq!(
            run(&["a.ini", "provider", "seqs"]),
            Command::Provider(provider::Command::Seqs)
        );
        assert_eq!(
            run(&["a.ini", "add-seq", "s"]),
            Command::Subscriber(subscriber::Command::AddSeq {
                seqs: vec!["s".into()]
            })
        );
        assert_eq!(
            run(&["a.ini", "remove-seq", "s"]),
            Command::Subscriber(subscriber::Command::RemoveSeq {
                seqs: vec!["s".into()]
            })
        );
        assert_eq!(
            run(&["a.ini", "seqs"]),
            Command::Subscriber(subscriber::Command::Seqs)
        );
        assert_eq!(
            run(&["a.ini", "resync", "t", "s.u"]),
            Command::Subscriber(subscriber::Command::Resync {
                tables: vec!["t".into(), "s.u".into()]
            })
        );
        assert_eq!(
            run(&["a.ini", "missing"]),
            Command::Subscriber(subscriber::Command::Missing)
        );
        assert_eq!(
            fails(&["a.ini", "resync"]),
            "`subscriber resync` needs at least one table"
        );
        assert_eq!(
            fails(&["a.ini", "missing", "t"]),
            "`subscriber missing` takes no arguments, found `t`"
        );
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
            Command::Provider(provider::Command::Add {
                tables: vec!["t1".into(), "s.t2".into()],
                all: false,
                bulk: false
            })
        );
        assert_eq!(
            run(&["a.ini", "provider", "add", "t1", "--bulk"]),
            Command::Provider(provider::Command::Add {
                tables: vec!["t1".into()],
                all: false,
                bulk: true
            })
        );
        assert_eq!(
            run(&["a.ini", "provider", "add", "--all"]),
            Command::Provider(provider::Command::Add {
                tables: vec![],
                all: true,
                bulk: false
            })
        );
        assert_eq!(
            run(&["a.ini", "add-table", "t", "--expect-sync"]),
            Command::Subscriber(subscriber::Command::Add {
                tables: vec!["t".into()],
                options: AddOptions {
                    expect_sync: true,
                    ..AddOptions::default()
                }
            })
        );
        assert_eq!(
            run(&["a.ini", "tables"]),
            Command::Subscriber(subscriber::Command::Tables)
        );
        assert_eq!(
            run(&["a.ini", "compare"]),
            Command::Verify(verify::Command::Compare { tables: vec![] })
        );
        assert_eq!(
            run(&["a.ini", "repair", "t", "--apply"]),
            Command::Verify(verify::Command::Repair {
                tables: vec!["t".into()],
                apply: true,
                dir: PathBuf::from(".")
            })
        );
        assert_eq!(
            run(&["a.ini", "repair", "--dir", "/var/fixes", "t"]),
            Command::Verify(verify::Command::Repair {
                tables: vec!["t".into()],
                apply: false,
                dir: PathBuf::from("/var/fixes")
            })
        );
        assert_eq!(
            fails(&["a.ini", "compare", "--dir", "x"]),
            "`compare` does not take --dir"
        );
        assert_eq!(
            fails(&["a.ini", "compare", "--apply"]),
            "`compare` does not take --apply"
        );
        assert_eq!(
            run(&["a.ini", "status", "--json"]),
            Command::Verify(verify::Command::Status {
                json: true,
                max_lag: None
            })
        );
        assert_eq!(
            run(&["a.ini", "status"]),
            Command::Verify(verify::Command::Status {
                json: false,
                max_lag: None
            })
        );
        assert_eq!(
            run(&["a.ini", "status", "--max-lag", "2.5", "--json"]),
            Command::Verify(verify::Command::Status {
                json: true,
                max_lag: Some(Duration::from_millis(2500))
            })
        );
        assert_eq!(
            run(&["a.ini", "status", "--max-lag=30"]),
            Command::Verify(verify::Command::Status {
                json: false,
                max_lag: Some(Duration::from_secs(30))
            })
        );
        for bad in ["soon", "-1", "inf", "NaN", ""] {
            assert!(
                fails(&["a.ini", "status", "--max-lag", bad]).contains("want a number of seconds"),
                "{bad}"
            );
        }
        assert_eq!(
            fails(&["a.ini", "compare", "--max-lag", "5"]),
            "`compare` does not take --max-lag"
        );
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
        assert!(
            fails(&["a.ini", "add-table", "t", "--copy-condition= "])
                .starts_with("--copy-condition is empty")
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
        for args in [
            &["a.ini", "create-leaf", "n", "dbname=x"][..],
            &[
                "a.ini",
                "create-leaf",
                "n",
                "dbname=x",
                "--provider=dbname=y",
            ],
        ] {
            assert!(
                fails(args).starts_with("`create-leaf` is a command of Londiste 3's cascade"),
                "{args:?}"
            );
        }
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
