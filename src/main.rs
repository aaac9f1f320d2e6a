//! The `skyrep` command: parse the command line, load the config, start logging, run the
//! command ([`skyrep::cli`] says which role runs each).

use std::process::ExitCode;

use anyhow::Result;

use skyrep::base::error::{self, usage};
use skyrep::base::output;
use skyrep::cli::{self, Action};
use skyrep::config::Config;
use skyrep::config::keys;
use skyrep::demo;
use skyrep::service::{daemon, logging};

/// The static build allocates through mimalloc: musl's malloc is slow for replay's many
/// small allocations (see Cargo.toml).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    bound_malloc();
    stop_on_panic();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logging::final_error(&error::one_line(&err));
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
        Action::Demo => {
            // The tour speaks on stdout; the log only with -v.
            logging::init(cli.verbosity.saturating_sub(1));
            demo::run()
        }
        Action::Signal { config, control } => daemon::signal(&Config::load(&config)?, control),
        Action::Run { config, command } => {
            let config = Config::load(&config)?;
            // Before any thread or database client exists.
            let background = if cli.daemon {
                Some(daemon::detach(&config)?)
            } else {
                None
            };
            let daemon_command = command.is_daemon();
            let started = start_logging(&config, cli.verbosity).and_then(|()| {
                let pidfile = if daemon_command {
                    daemon::PidFile::take(&config)?
                } else {
                    None
                };
                Ok((pidfile, command.start(&config)?))
            });
            let (_pidfile, started) = match (started, background) {
                (Ok(started), Some(detached)) => {
                    detached.ready();
                    started
                }
                (Err(err), Some(detached)) => {
                    detached.failed(&err);
                    return Err(err);
                }
                (started, None) => {
                    let started = started?;
                    if daemon_command {
                        daemon::notify_ready()?;
                    }
                    started
                }
            };
            command.run(&config, started)
        }
    }
}

/// Starts logging to the terminal and to the config's `logfile`.
fn start_logging(config: &Config, verbosity: i8) -> Result<()> {
    logging::init(verbosity);
    let logfile = config.path_value("logfile")?;
    logging::set_file(logfile.as_deref()).map_err(|e| usage(format!("{e:#}")))?;
    if config.flag("syslog")? {
        let ident = match config.text("syslog_ident")? {
            Some(ident) => ident,
            None => config.job_name()?,
        };
        if let Err(e) = logging::set_syslog(Some(&ident)) {
            log::warn!("{}; logging without it", error::one_line(&e));
        }
    }
    log::debug!(
        "loaded {} (section [{}])",
        config.path().display(),
        config.section()
    );
    for warning in config.warnings() {
        log::warn!("{warning}");
    }
    Ok(())
}

/// glibc's malloc keeps freed memory where a daemon that once met wide rows would hold it for
/// good: after freeing a large block it raises its mmap threshold to that size (so the next
/// megabyte rows come from the heap, which fragments and rarely shrinks), and it gives every
/// thread an arena of its own. A fixed threshold returns large blocks to the system as soon as
/// they are freed, and two arenas keep the reader, applier and copy threads from each holding
/// freed memory apart (bench/drain.sh: peak RSS of a batch of 1 MB rows).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn bound_malloc() {
    // SAFETY: mallopt only sets malloc's parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// mimalloc (the static build's) keeps freed memory for a second before it gives it back to
/// the system, long enough for replay's reader to take more: the daemon peaked at 15 to 25 MB
/// draining a backlog. It reads its settings from the environment as the process starts,
/// before `main`, so the program starts itself again with memory given back at once and
/// arenas committed as used (bench/drain.sh: 9 to 15 MB). A setting already in the
/// environment is kept; where the program cannot be started again it runs as it is.
#[cfg(target_env = "musl")]
fn bound_malloc() {
    use std::os::unix::process::CommandExt;
    const SETTINGS: [(&str, &str); 2] = [
        ("MIMALLOC_PURGE_DELAY", "0"),
        ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
    ];
    if SETTINGS
        .iter()
        .all(|(name, _)| std::env::var_os(name).is_some())
    {
        return;
    }
    // By its own path, not /proc/self/exe: the kernel names the process after the file it
    // runs, and the init script and `-s` look for skyrep by that name.
    let Ok(program) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut again = std::process::Command::new(program);
    if let Some(name) = args.next() {
        again.arg0(name);
    }
    again.args(args);
    for (name, value) in SETTINGS {
        if std::env::var_os(name).is_none() {
            again.env(name, value);
        }
    }
    // Returns only if the program could not be started again.
    let _ = again.exec();
}

/// Other allocators need no settings.
#[cfg(not(any(all(target_os = "linux", target_env = "gnu"), target_env = "musl")))]
fn bound_malloc() {}

/// A panic in any thread is a bug that leaves the other threads unsupervised: log it (to the
/// log file too) and end the process. Open transactions roll back with their connections,
/// and a pidfile left behind is taken over by the next start.
fn stop_on_panic() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let text = format!(
            "thread {} panicked{place}: {message}; stopping the process",
            thread.name().unwrap_or("unnamed")
        );
        log::error!("{text}");
        if log::max_level() == log::LevelFilter::Off {
            eprintln!("skyrep: {text}");
        }
        std::process::exit(1);
    }));
}
