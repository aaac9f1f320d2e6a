//! Log lines in Londiste's format (SPEC §7): `2026-11-23 09:13:41,442 31116 INFO message`.
//!
//! Lines go to the terminal (stderr) and, once [`set_file`] names one, to the log file. The
//! file can be swapped or reopened at any moment by calling [`set_file`] again (after
//! logrotate moved it away, on SIGHUP) and is created with mode 0640, never through a
//! symlink; one that root creates is given to the owner of its directory, so that a setup
//! command run as root does not lock the service's user out of its log. Every line passes
//! through [`mask_secrets`]. Timestamps are local time, read per line, so they stay right
//! across daylight-saving changes and in any thread.
//!
//! With `syslog = on`, [`set_syslog`] also sends each line that goes to the log file to the
//! local syslog socket (`/dev/log`, facility `daemon`), as `ident[pid]: LEVEL text`.
//!
//! A small logger of our own rather than simplelog: simplelog cannot print the pid or the
//! `,mmm` milliseconds of this format, and it fixes its writers at start-up.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, anyhow};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::base::mask::mask_secrets;

static LOGGER: OnceLock<Logger> = OnceLock::new();

struct Logger {
    pid: u32,
    terminal: LevelFilter,
    file_level: LevelFilter,
    /// Records of other crates (the database driver, TLS) are shown from this level up.
    others: LevelFilter,
    file: Mutex<Option<LogFile>>,
    syslog: Mutex<Option<Syslog>>,
}

/// The local syslog daemon's socket.
const SYSLOG_SOCKET: &str = "/dev/log";
/// Facility `daemon` in a syslog priority.
const LOG_DAEMON: u8 = 3 << 3;

/// A connection to the local syslog daemon.
struct Syslog {
    socket: UnixDatagram,
    ident: String,
}

impl Syslog {
    fn connect(path: &Path, ident: &str) -> Result<Syslog> {
        let socket = UnixDatagram::unbound().context("creating a socket for syslog")?;
        socket
            .connect(path)
            .with_context(|| format!("syslog: cannot reach {}", path.display()))?;
        Ok(Syslog {
            socket,
            ident: ident.to_string(),
        })
    }

    /// `<PRI>Mmm dd hh:mm:ss ident[pid]: LEVEL text`, as the C library's syslog() sends it.
    fn line(&self, pid: u32, level: Level, message: &str) -> String {
        let severity = match level {
            Level::Error => 3,
            Level::Warn => 4,
            Level::Info => 6,
            Level::Debug | Level::Trace => 7,
        };
        format!(
            "<{}>{} {}[{pid}]: {} {}",
            LOG_DAEMON | severity,
            chrono::Local::now().format("%b %e %H:%M:%S"),
            self.ident,
            level_name(level),
            mask_secrets(message)
        )
    }
}

struct LogFile {
    path: PathBuf,
    file: File,
}

/// Starts logging to the terminal. `verbosity` is -1 for `-q` (warnings and errors only), 0
/// by default, and one more per `-v` (debug, then everything including the driver's own).
/// Calling it again has no effect.
pub fn init(verbosity: i8) {
    let (terminal, file_level) = match verbosity {
        i8::MIN..=-1 => (LevelFilter::Warn, LevelFilter::Info),
        0 => (LevelFilter::Info, LevelFilter::Info),
        1 => (LevelFilter::Debug, LevelFilter::Debug),
        _ => (LevelFilter::Trace, LevelFilter::Trace),
    };
    let others = if verbosity >= 2 {
        LevelFilter::Debug
    } else {
        LevelFilter::Warn
    };
    let logger = Logger {
        pid: std::process::id(),
        terminal,
        file_level,
        others,
        file: Mutex::new(None),
        syslog: Mutex::new(None),
    };
    if LOGGER.set(logger).is_ok() {
        let logger = LOGGER.get().expect("just set");
        if log::set_logger(logger).is_ok() {
            log::set_max_level(terminal.max(file_level));
        }
    }
}

/// Sends log lines to the file at `path` from now on (`None`: terminal only). Called again
/// with the same path, it reopens the file: a file moved away is left behind.
pub fn set_file(path: Option<&Path>) -> Result<()> {
    let Some(logger) = LOGGER.get() else {
        return Ok(());
    };
    let next = match path {
        Some(path) => Some(LogFile {
            path: path.to_path_buf(),
            file: open_log_file(path)?,
        }),
        None => None,
    };
    *logger.file.lock().unwrap_or_else(|e| e.into_inner()) = next;
    Ok(())
}

/// Also sends log lines to the local syslog as `ident` (`None`: stop). Fails if the syslog
/// socket cannot be reached; logging goes on without it then.
pub fn set_syslog(ident: Option<&str>) -> Result<()> {
    set_syslog_at(Path::new(SYSLOG_SOCKET), ident)
}

/// Writes the error that ends the process to the log file and syslog, where they are set
/// (the terminal gets it from the caller): a daemon's terminal is `/dev/null`.
pub fn final_error(message: &str) {
    let Some(logger) = LOGGER.get() else {
        return;
    };
    let pid = logger.pid;
    if let Some(syslog) = logger
        .syslog
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        let _ = syslog
            .socket
            .send(syslog.line(pid, Level::Error, message).as_bytes());
    }
    if let Some(log) = logger
        .file
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_mut()
    {
        let _ = log
            .file
            .write_all(format_line(pid, Level::Error, message).as_bytes());
    }
}

fn set_syslog_at(path: &Path, ident: Option<&str>) -> Result<()> {
    let Some(logger) = LOGGER.get() else {
        return Ok(());
    };
    let next = ident.map(|ident| Syslog::connect(path, ident)).transpose();
    let mut slot = logger.syslog.lock().unwrap_or_else(|e| e.into_inner());
    match next {
        Ok(next) => {
            *slot = next;
            Ok(())
        }
        Err(e) => {
            *slot = None;
            Err(e)
        }
    }
}

/// Opens the log file for appending, creating it if it is not there. A file that root
/// creates goes to the owner and group of its directory (see [`give_to_directory_owner`]).
fn open_log_file(path: &Path) -> Result<File> {
    let what = || format!("cannot open log file {}", path.display());
    let mut options = OpenOptions::new();
    options
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_NOFOLLOW);
    // Twice: once more if the file is removed between the two opens.
    for _ in 0..2 {
        match options.clone().create_new(true).open(path) {
            Ok(file) => {
                give_to_directory_owner(&file, path);
                return Ok(file);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(what),
        }
        match options.open(path) {
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            opened => return opened.with_context(what),
        }
    }
    Err(anyhow!("it keeps being removed")).with_context(what)
}

/// A log file that root has just created goes to the owner and group of its directory, as
/// one the daemon creates there would: setup commands run as root with a service's config
/// (`provider install`) must not leave a log file that the service's user cannot write. A
/// file that exists already keeps its owner. Failing is only a warning: the file works for
/// this process either way.
fn give_to_directory_owner(file: &File, path: &Path) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let result = std::fs::metadata(dir).and_then(|dir| {
        let own = file.metadata()?;
        if (own.uid(), own.gid()) == (dir.uid(), dir.gid()) {
            return Ok(());
        }
        // SAFETY: fchown on a descriptor this process owns.
        if unsafe { libc::fchown(file.as_raw_fd(), dir.uid(), dir.gid()) } == -1 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    });
    if let Err(e) = result {
        log::warn!(
            "cannot give log file {} to the owner of {}: {e}",
            path.display(),
            dir.display()
        );
    }
}

/// Level names as Python's logging (and so Londiste's log files) spell them.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

/// One formatted line, newline included.
fn format_line(pid: u32, level: Level, message: &str) -> String {
    let now = chrono::Local::now();
    format!(
        "{} {pid} {} {}\n",
        now.format("%Y-%m-%d %H:%M:%S,%3f"),
        level_name(level),
        mask_secrets(message)
    )
}

impl Logger {
    fn passes(&self, metadata: &Metadata<'_>, sink: LevelFilter) -> bool {
        let ours = metadata.target().starts_with("skyrep");
        metadata.level() <= sink && (ours || metadata.level() <= self.others)
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        self.passes(metadata, self.terminal.max(self.file_level))
    }

    fn log(&self, record: &Record<'_>) {
        let to_terminal = self.passes(record.metadata(), self.terminal);
        let to_file = self.passes(record.metadata(), self.file_level);
        if !to_terminal && !to_file {
            return;
        }
        let line = format_line(self.pid, record.level(), &record.args().to_string());
        if to_terminal {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        if to_file
            && let Some(syslog) = self
                .syslog
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
        {
            // A syslog daemon that is gone or overloaded must not stop the work.
            let text = syslog.line(self.pid, record.level(), &record.args().to_string());
            let _ = syslog.socket.send(text.as_bytes());
        }
        if to_file && let Some(log) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            // A failing log write cannot be reported anywhere better than the terminal.
            if let Err(e) = log.file.write_all(line.as_bytes()) {
                let _ = writeln!(
                    std::io::stderr(),
                    "skyrep: writing to {}: {e}",
                    log.path.display()
                );
            }
        }
    }

    fn flush(&self) {
        if let Some(log) = self.file.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            let _ = log.file.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_file_again_reopens_after_the_file_was_moved() {
        let dir = std::env::temp_dir().join(format!("skyrep-logging-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let current = dir.join("job.log");
        let rotated = dir.join("job.log.1");
        init(0);
        set_file(Some(&current)).unwrap();
        log::info!("before rotation");
        std::fs::rename(&current, &rotated).unwrap();
        set_file(Some(&current)).unwrap();
        log::info!("after rotation");
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&current).unwrap();
        assert!(
            old.ends_with(" INFO before rotation\n") && !old.contains("after"),
            "{old}"
        );
        assert!(
            new.ends_with(" INFO after rotation\n") && !new.contains("before"),
            "{new}"
        );
        set_file(None).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn syslog_gets_the_lines_the_file_gets() {
        let dir = std::env::temp_dir().join(format!("skyrep-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log.sock");
        let daemon = UnixDatagram::bind(&path).unwrap();
        init(0);
        set_syslog_at(&path, Some("shop")).unwrap();
        log::info!("to syslog, password=secret");
        log::debug!("not at this level");
        set_syslog_at(&path, None).unwrap();
        log::info!("not after it was turned off");
        daemon.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        while let Ok(n) = daemon.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        let ours: Vec<&String> = got.iter().filter(|l| l.contains("syslog,")).collect();
        assert_eq!(ours.len(), 1, "{got:?}");
        let line = ours[0];
        assert!(line.starts_with("<30>"), "daemon.info: {line}");
        assert!(
            line.ends_with(&format!(
                " shop[{}]: INFO to syslog, password=***",
                std::process::id()
            )),
            "{line}"
        );
        assert!(!got.iter().any(|l| l.contains("not ")), "{got:?}");
        let err = set_syslog_at(&dir.join("missing.sock"), Some("shop")).unwrap_err();
        assert!(
            format!("{err:#}").contains("syslog: cannot reach"),
            "{err:#}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn line_format_matches_londiste() {
        let line = format_line(31116, Level::Warn, "conn password=x failed");
        // 2026-11-23 09:13:41,442 31116 WARNING conn password=*** failed
        let (stamp, rest) = line.split_at(23);
        assert_eq!(rest, " 31116 WARNING conn password=*** failed\n");
        let bytes = stamp.as_bytes();
        assert_eq!(
            (
                bytes[4], bytes[7], bytes[10], bytes[13], bytes[16], bytes[19]
            ),
            (b'-', b'-', b' ', b':', b':', b',')
        );
        assert!(
            stamp.chars().filter(char::is_ascii_digit).count() == 17,
            "{stamp}"
        );
    }
}
