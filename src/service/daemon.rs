//! Running as a service: `-d` (detach), the pidfile, and `-s`/`-k`/`-r` (signal the daemon).
//!
//! `-d` forks twice with a new session in between, so the daemon has no controlling terminal
//! and is no child of the shell; its standard streams go to `/dev/null` and it logs to
//! `logfile`. The first process waits on a pipe until the daemon has taken the pidfile and
//! passed its start-up checks (or failed to), so that `skyrep -d conf.ini replay` reports
//! "already running" and other start-up errors on the terminal and exits 1 (2 for a config
//! error), like the same command in the foreground. In the foreground under systemd,
//! [`notify_ready`] tells a `Type=notify` unit the same moment.
//!
//! The pidfile is written whole or not at all (a temporary file hard-linked into place) and
//! names one live process: a second daemon of the same config is refused while the first
//! lives, and a pidfile left by a dead process, or naming a process that is not skyrep
//! running that config, is taken over.
//!
//! `-s`, `-k` and `-r` signal only skyrep running the same config file: the pid a pidfile
//! names is checked in `/proc` first (its program, and an argument that is the same file as
//! the config), so a pidfile planted or left over with the pid of another process never gets
//! that process signalled.

use std::ffi::OsStr;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::base::error::{EXIT_USAGE, exit_code, one_line, usage};
use crate::base::output;
use crate::config::Config;

/// What `-s`, `-k` and `-r` ask of a running daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// `-s`: stop safely (SIGINT).
    Stop,
    /// `-k`: stop at once (SIGTERM).
    Kill,
    /// `-r`: reload the config and reopen the log (SIGHUP).
    Reload,
}

/// How long `-s` and `-k` wait for the daemon to exit.
const STOP_WAIT: Duration = Duration::from_secs(60);

/// The daemon's end of the start-up pipe: tell the waiting terminal how start-up went.
pub struct Detached {
    pipe: fs::File,
}

impl Detached {
    /// Reports a successful start; the terminal prints the pid and returns.
    pub fn ready(mut self) {
        let _ = writeln!(self.pipe, "ok {}", std::process::id());
    }

    /// Reports a failed start; the terminal prints the error and exits with its code (2 for
    /// a usage or config error, as in the foreground).
    pub fn failed(mut self, err: &anyhow::Error) {
        let _ = writeln!(self.pipe, "error {} {}", exit_code(err), one_line(err));
    }
}

/// Detaches from the terminal (see the module docs). Returns in the daemon; the process that
/// called it exits when the daemon reports through [`Detached`]. Call it before any thread or
/// database client exists: only the calling thread survives a fork.
pub fn detach(config: &Config) -> Result<Detached> {
    for key in ["logfile", "pidfile"] {
        if config.path_value(key)?.is_none() {
            return Err(usage(format!(
                "-d needs `{key}` in {}: a daemon has no terminal to log to, and -s/-k/-r find \
                 it through its pidfile",
                config.path().display()
            )));
        }
    }
    let (read, write) = pipe()?;
    // SAFETY: the process has one thread here (see above), so the child may go on running
    // Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("forking the daemon"),
        0 => {
            drop(read);
            // SAFETY: plain system calls in the single-threaded child.
            unsafe {
                if libc::setsid() == -1 {
                    libc::_exit(1);
                }
                match libc::fork() {
                    -1 => libc::_exit(1),
                    0 => {}
                    _ => libc::_exit(0),
                }
            }
            null_stdio()?;
            Ok(Detached {
                pipe: fs::File::from(write),
            })
        }
        child => {
            drop(write);
            let mut reply = String::new();
            let read_result = fs::File::from(read).read_to_string(&mut reply);
            // SAFETY: reaping the intermediate child, which exits at once.
            unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
            read_result.context("waiting for the daemon to start")?;
            let reply = reply.trim_end();
            if let Some(pid) = reply.strip_prefix("ok ") {
                output::line(&format!("started, pid {pid}"))?;
                std::process::exit(0);
            }
            match reply
                .strip_prefix("error ")
                .and_then(|rest| rest.split_once(' '))
            {
                Some((code, message)) if code == EXIT_USAGE.to_string() => Err(usage(message)),
                Some((_, message)) => bail!("{message}"),
                None => bail!(
                    "the daemon exited while starting; see {}",
                    config.path_value("logfile")?.unwrap_or_default().display()
                ),
            }
        }
    }
}

/// Tells systemd that the daemon has started, when it runs in the foreground under a
/// `Type=notify` unit (which sets `NOTIFY_SOCKET`): `systemctl start` returns once this is
/// sent, after the same start-up checks as `-d`, and fails with the daemon's error if it
/// exits before. Does nothing without `NOTIFY_SOCKET`.
pub fn notify_ready() -> Result<()> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let what = || format!("telling systemd the daemon started (NOTIFY_SOCKET={socket:?})");
    let address = match socket.as_bytes() {
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name),
        [b'/', ..] => SocketAddr::from_pathname(&socket),
        _ => return Err(anyhow!("not a socket path")).with_context(what),
    }
    .with_context(what)?;
    let sender = UnixDatagram::unbound().with_context(what)?;
    sender
        .send_to_addr(b"READY=1\n", &address)
        .with_context(what)?;
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error()).context("creating a pipe");
    }
    // SAFETY: both descriptors were just opened and are owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Points stdin, stdout and stderr at `/dev/null`.
fn null_stdio() -> Result<()> {
    let null = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("opening /dev/null")?;
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, from a descriptor we own.
        if unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), fd) } == -1 {
            return Err(std::io::Error::last_os_error()).context("redirecting to /dev/null");
        }
    }
    Ok(())
}

/// A pidfile naming this process, removed when dropped (or by [`exit_at_once`]).
pub struct PidFile {
    path: PathBuf,
}

/// The path of the pidfile this process holds, for [`exit_at_once`].
static HELD: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Ends the process at once, as `-k` (SIGTERM) asks: removes the pidfile it holds and exits
/// with status 0. Whatever a thread is doing is abandoned; the servers roll back the open
/// transactions when the connections close, which loses nothing (a batch or a copy step
/// commits whole or not at all, and the next start carries on).
pub fn exit_at_once() -> ! {
    if let Some(path) = HELD.lock().unwrap_or_else(|e| e.into_inner()).take() {
        remove_own(&path);
    }
    log::logger().flush();
    std::process::exit(0)
}

/// Removes the pidfile at `path` if it still names this process.
fn remove_own(path: &Path) {
    if let Ok(Some(pid)) = read_pid(path)
        && pid == std::process::id() as i32
    {
        let _ = fs::remove_file(path);
    }
}

impl PidFile {
    /// Takes the config's `pidfile`, if it names one: refuses while another live process
    /// holds it, takes it over from a dead one.
    pub fn take(config: &Config) -> Result<Option<PidFile>> {
        match config.path_value("pidfile")? {
            Some(path) => PidFile::create(&path, config.path()).map(Some),
            None => Ok(None),
        }
    }

    /// Writes this process's pid to `path` for a daemon of the config file `config` (see
    /// [`PidFile::take`]).
    pub fn create(path: &Path, config: &Path) -> Result<PidFile> {
        let own = std::process::id();
        let file_name = path
            .file_name()
            .ok_or_else(|| anyhow!("pidfile {} names no file", path.display()))?;
        let mut temporary_name = file_name.to_os_string();
        temporary_name.push(format!(".{own}.tmp"));
        let temporary = path.with_file_name(temporary_name);
        // A config error, as a log file that cannot be opened is: a restart would repeat it.
        write_new(&temporary, format!("{own}\n").as_bytes())
            .map_err(|e| usage(format!("cannot write pidfile {}: {e}", path.display())))?;
        let result = (|| {
            // Twice: once more after removing a stale pidfile.
            for _ in 0..2 {
                match fs::hard_link(&temporary, path) {
                    Ok(()) => {
                        *HELD.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.into());
                        return Ok(PidFile { path: path.into() });
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("creating pidfile {}", path.display()));
                    }
                }
                let stale = match read_pid(path)? {
                    None => "no process".to_string(),
                    Some(pid) if !alive(pid) => format!("pid {pid}, which is gone"),
                    // Where it cannot be told, the process may be the daemon: refused.
                    Some(pid) => match daemon_of(pid, config) {
                        Ok(Some(other)) => format!("pid {pid}, which is {other}"),
                        _ => bail!(
                            "already running as pid {pid} (pidfile {}); stop it with -s",
                            path.display()
                        ),
                    },
                };
                log::warn!("taking over pidfile {} of {stale}", path.display());
                remove_if_there(path)?;
            }
            bail!("pidfile {} keeps coming back", path.display())
        })();
        remove_if_there(&temporary)?;
        result
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        HELD.lock().unwrap_or_else(|e| e.into_inner()).take();
        remove_own(&self.path);
    }
}

/// Writes `data` to a new file at `path`, readable by all and writable by the owner only
/// whatever the umask allows more of. Whatever is at `path` (a file left by a crash, or a
/// symlink planted there) is removed first, never followed.
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    remove_if_there(path)?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    file.write_all(data)?;
    Ok(())
}

fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The pid in a pidfile; `None` if the file is missing or holds no pid.
fn read_pid(path: &Path) -> Result<Option<i32>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok().filter(|pid| *pid > 0)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading pidfile {}", path.display())),
    }
}

/// Whether process `pid` exists.
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let found = unsafe { libc::kill(pid, 0) } == 0;
    found || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Whether process `pid` is skyrep running the config file `config`: `None` if it is, else
/// what it is instead. It is when its program has the name of this one (the same file, or
/// one put in its place by an upgrade) and one of its arguments, read from its own working
/// directory, is the same file as `config`. Fails where `/proc` does not tell (another
/// user's process).
fn daemon_of(pid: i32, config: &Path) -> Result<Option<String>> {
    let process = PathBuf::from(format!("/proc/{pid}"));
    let cannot_tell = || format!("cannot tell whether pid {pid} is skyrep");
    let exe = fs::read_link(process.join("exe")).with_context(cannot_tell)?;
    let own = std::env::current_exe().context("finding this program")?;
    // A program replaced or removed while it runs is `/path/name (deleted)`.
    let name = |path: &Path| {
        path.file_name().map(|name| {
            name.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string()
        })
    };
    if name(&exe) != name(&own) {
        return Ok(Some(exe.display().to_string()));
    }
    let wanted = fs::metadata(config)
        .with_context(|| format!("reading config file {}", config.display()))?;
    let cmdline = fs::read(process.join("cmdline")).with_context(cannot_tell)?;
    let runs_config = cmdline
        .split(|&byte| byte == 0)
        .skip(1)
        .filter(|arg| !arg.is_empty() && !arg.starts_with(b"-"))
        .any(|arg| {
            // Relative to the process's working directory, through its link in /proc.
            let arg = Path::new(OsStr::from_bytes(arg));
            let path = process.join("cwd").join(arg);
            fs::metadata(path).is_ok_and(|m| m.dev() == wanted.dev() && m.ino() == wanted.ino())
        });
    if runs_config {
        Ok(None)
    } else {
        Ok(Some("skyrep running another config".to_string()))
    }
}

/// `-s`, `-k`, `-r`: signals the daemon named by the config's pidfile, once it is sure the
/// pid is skyrep running this config. After `-s` and `-k` waits until it has exited.
pub fn signal(config: &Config, control: Control) -> Result<()> {
    let path = config.path_value("pidfile")?.ok_or_else(|| {
        usage(format!(
            "{} has no `pidfile`, so there is no daemon to signal",
            config.path().display()
        ))
    })?;
    let pid = match read_pid(&path)? {
        Some(pid) if alive(pid) => pid,
        Some(pid) => bail!(
            "no daemon running: pid {pid} from {} is gone",
            path.display()
        ),
        None => bail!("no daemon running: no pid in {}", path.display()),
    };
    let what = match daemon_of(pid, config.path()) {
        Ok(None) => None,
        Ok(Some(other)) => Some(format!("is {other}")),
        Err(e) => Some(format!("may not be skyrep: {}", one_line(&e))),
    };
    if let Some(what) = what {
        bail!(
            "pid {pid} from {} {what}, not skyrep running {}; not signalled",
            path.display(),
            config.path().display()
        );
    }
    let (signal, name) = match control {
        Control::Stop => (libc::SIGINT, "SIGINT"),
        Control::Kill => (libc::SIGTERM, "SIGTERM"),
        Control::Reload => (libc::SIGHUP, "SIGHUP"),
    };
    // SAFETY: sending a signal to a pid.
    if unsafe { libc::kill(pid, signal) } == -1 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("sending {name} to pid {pid}"));
    }
    if control == Control::Reload {
        return output::line(&format!("sent {name} to pid {pid}"));
    }
    let deadline = Instant::now() + STOP_WAIT;
    while alive(pid) {
        if Instant::now() > deadline {
            bail!(
                "pid {pid} is still running {} s after {name}",
                STOP_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    output::line(&format!("stopped pid {pid}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    #[test]
    fn the_pidfile_never_follows_a_planted_symlink() {
        let dir = std::env::temp_dir().join(format!("skyrep-pidfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").unwrap();
        let path = dir.join("job.pid");
        // At the temporary name the pidfile is written under first, and at the pidfile.
        symlink(
            &victim,
            dir.join(format!("job.pid.{}.tmp", std::process::id())),
        )
        .unwrap();
        symlink(&victim, &path).unwrap();
        let pidfile = PidFile::create(&path, &dir.join("job.ini")).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
        let meta = fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(
            meta.permissions().mode() & 0o022,
            0,
            "not writable by others"
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(pidfile);
        assert!(!path.exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
