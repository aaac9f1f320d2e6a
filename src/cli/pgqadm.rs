//! pgqadm's commands on a ticker config: `create`, `drop`, `register`, `unregister`,
//! `config` ([`admin`] does the work). `status` is parsed with the verifying commands; on a
//! ticker config it runs [`admin::status`] instead (see `Command::run` in this module's parent).

use anyhow::Result;

use super::args::check_flags;
use crate::base::error::usage;
use crate::config::Config;
use crate::queue::admin::{self, Setting};

/// The command names of this group.
pub(super) const NAMES: &[&str] = &["create", "drop", "register", "unregister", "config"];

/// A pgqadm command with its arguments.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Create a queue.
    Create {
        /// Its name.
        queue: String,
    },
    /// Drop a queue.
    Drop {
        /// Its name.
        queue: String,
        /// Unregister its consumers first.
        force: bool,
    },
    /// Register a consumer on a queue.
    Register {
        /// The queue.
        queue: String,
        /// The consumer.
        consumer: String,
    },
    /// Unregister a consumer from a queue.
    Unregister {
        /// The queue.
        queue: String,
        /// The consumer.
        consumer: String,
    },
    /// Show queue settings, or change one queue's.
    Config {
        /// Only this queue (none: every queue).
        queue: Option<String>,
        /// Settings to change, with their new values as typed.
        changes: Vec<(&'static Setting, String)>,
    },
}

/// The command `name` from its arguments and flags.
pub(super) fn build(name: &str, args: Vec<String>, flags: &[&str]) -> Result<Command> {
    check_flags(name, flags, if name == "drop" { &["force"] } else { &[] })?;
    let names = if name.ends_with("register") { 2 } else { 1 };
    if let Some(empty) = args.iter().take(names).position(String::is_empty) {
        let what = if empty == 0 { "queue" } else { "consumer" };
        return Err(usage(format!("`{name}`: the {what} name is empty")));
    }
    let mut args = args.into_iter();
    let command = match name {
        "create" | "drop" => {
            let [queue] = exactly(name, args, "QUEUE")?;
            if name == "create" {
                Command::Create { queue }
            } else {
                Command::Drop {
                    queue,
                    force: flags.contains(&"force"),
                }
            }
        }
        "register" | "unregister" => {
            let [queue, consumer] = exactly(name, args, "QUEUE CONSUMER")?;
            if name == "register" {
                Command::Register { queue, consumer }
            } else {
                Command::Unregister { queue, consumer }
            }
        }
        "config" => {
            let queue = args.next();
            let mut changes: Vec<(&'static Setting, String)> = Vec::new();
            for arg in args {
                let (key, value) = arg.split_once('=').ok_or_else(|| {
                    usage(format!(
                        "`config QUEUE` takes settings as KEY=VALUE, found `{arg}`"
                    ))
                })?;
                let setting = admin::setting(key.trim()).ok_or_else(|| {
                    usage(format!(
                        "unknown queue setting `{}` (known: {})",
                        key.trim(),
                        admin::setting_names()
                    ))
                })?;
                if changes.iter().any(|(s, _)| s == &setting) {
                    return Err(usage(format!("`{}` is given twice", setting.name)));
                }
                changes.push((setting, value.trim().to_string()));
            }
            Command::Config { queue, changes }
        }
        other => unreachable!("`{other}` is listed in NAMES but not built"),
    };
    Ok(command)
}

/// The `N` arguments of `name`, whose usage is `name USAGE`.
fn exactly<const N: usize>(
    name: &str,
    args: impl Iterator<Item = String>,
    usage_text: &str,
) -> Result<[String; N]> {
    let args: Vec<String> = args.collect();
    <[String; N]>::try_from(args).map_err(|args| {
        let found = if args.is_empty() {
            "nothing".to_string()
        } else {
            args.iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        usage(format!("usage: `{name} {usage_text}`, found {found}"))
    })
}

impl Command {
    /// Runs the command on the `db` of `config`, a ticker config.
    pub(super) fn run(self, config: &Config) -> Result<()> {
        match self {
            Command::Create { queue } => admin::create(config, &queue),
            Command::Drop { queue, force } => admin::drop_queue(config, &queue, force),
            Command::Register { queue, consumer } => admin::register(config, &queue, &consumer),
            Command::Unregister { queue, consumer } => admin::unregister(config, &queue, &consumer),
            Command::Config { queue, changes } => match queue {
                Some(queue) if !changes.is_empty() => admin::set_config(config, &queue, &changes),
                queue => admin::show_config(config, queue.as_deref()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::super::{Action, Command as Any, parse};
    use super::*;
    use crate::base::error::{EXIT_USAGE, exit_code};

    fn command(args: &[&str]) -> Command {
        match parse(args.iter().map(OsString::from)).unwrap().action {
            Action::Run {
                command: Any::Pgqadm(command),
                ..
            } => command,
            other => panic!("{other:?}"),
        }
    }

    fn fails(args: &[&str]) -> String {
        let err = parse(args.iter().map(OsString::from)).unwrap_err();
        assert_eq!(exit_code(&err), EXIT_USAGE);
        format!("{err:#}")
    }

    fn setting(name: &str) -> &'static Setting {
        admin::setting(name).unwrap()
    }

    #[test]
    fn queue_and_consumer_commands() {
        assert_eq!(
            command(&["t.ini", "create", "my queue"]),
            Command::Create {
                queue: "my queue".into()
            }
        );
        assert_eq!(
            command(&["t.ini", "drop", "q"]),
            Command::Drop {
                queue: "q".into(),
                force: false
            }
        );
        assert_eq!(
            command(&["t.ini", "drop", "--force", "q"]),
            Command::Drop {
                queue: "q".into(),
                force: true
            }
        );
        assert_eq!(
            command(&["t.ini", "register", "q", "Ünï \"c\""]),
            Command::Register {
                queue: "q".into(),
                consumer: "Ünï \"c\"".into()
            }
        );
        assert_eq!(
            command(&["t.ini", "unregister", "q", "c"]),
            Command::Unregister {
                queue: "q".into(),
                consumer: "c".into()
            }
        );
        assert_eq!(
            fails(&["t.ini", "create"]),
            "usage: `create QUEUE`, found nothing"
        );
        assert_eq!(
            fails(&["t.ini", "drop", "a", "b"]),
            "usage: `drop QUEUE`, found `a` `b`"
        );
        assert_eq!(
            fails(&["t.ini", "register", "q"]),
            "usage: `register QUEUE CONSUMER`, found `q`"
        );
        assert_eq!(
            fails(&["t.ini", "unregister", "q", "c", "d"]),
            "usage: `unregister QUEUE CONSUMER`, found `q` `c` `d`"
        );
        assert_eq!(
            fails(&["t.ini", "create", "q", "--force"]),
            "`create` does not take --force"
        );
        assert_eq!(
            fails(&["t.ini", "create", ""]),
            "`create`: the queue name is empty"
        );
        assert_eq!(
            fails(&["t.ini", "register", "q", ""]),
            "`register`: the consumer name is empty"
        );
    }

    #[test]
    fn config_shows_or_sets() {
        assert_eq!(
            command(&["t.ini", "config"]),
            Command::Config {
                queue: None,
                changes: vec![]
            }
        );
        assert_eq!(
            command(&["t.ini", "config", "q"]),
            Command::Config {
                queue: Some("q".into()),
                changes: vec![]
            }
        );
        assert_eq!(
            command(&[
                "t.ini",
                "config",
                "q",
                "queue_ticker_max_lag=0.5",
                "ticker_idle_period = 2 hours",
                "TICKER_PAUSED=on",
            ]),
            Command::Config {
                queue: Some("q".into()),
                changes: vec![
                    (setting("ticker_max_lag"), "0.5".into()),
                    (setting("ticker_idle_period"), "2 hours".into()),
                    (setting("ticker_paused"), "on".into()),
                ]
            }
        );
        assert_eq!(
            fails(&["t.ini", "config", "q", "ticker_max_lag"]),
            "`config QUEUE` takes settings as KEY=VALUE, found `ticker_max_lag`"
        );
        assert_eq!(
            fails(&["t.ini", "config", "q", "queue_name=x"]),
            "unknown queue setting `queue_name` (known: ticker_max_count, ticker_max_lag, \
             ticker_idle_period, rotation_period, ticker_paused, external_ticker)"
        );
        assert_eq!(
            fails(&[
                "t.ini",
                "config",
                "q",
                "ticker_max_lag=1",
                "queue_ticker_max_lag=2"
            ]),
            "`ticker_max_lag` is given twice"
        );
        assert_eq!(
            fails(&["t.ini", "config", "", "ticker_max_lag=1"]),
            "`config`: the queue name is empty"
        );
        assert_eq!(
            fails(&["t.ini", "config", "--json"]),
            "`config` does not take --json"
        );
    }
}
