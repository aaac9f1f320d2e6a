//! Throwaway local PostgreSQL servers, for `skyrep demo` and the test suite.
//!
//! A [`Server`] lives in a directory of its own: `data/` (made by initdb), `sock/` (its unix
//! socket) and `server.log`. It listens on 127.0.0.1 on a free port, with settings that trade
//! durability for speed, and is stopped when dropped. PostgreSQL refuses to run as root, so
//! as root the server binaries run as user `postgres` (through `runuser`).

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};

/// The address every server listens on.
pub const HOST: &str = "127.0.0.1";
/// How often to try another port when the chosen one was taken in the meantime.
const START_ATTEMPTS: usize = 5;
/// The longest path a unix socket may have (`sun_path`, including the final NUL).
const SOCKET_PATH_MAX: usize = 108;

/// A throwaway PostgreSQL server with superuser `postgres` and `trust` authentication.
pub struct Server {
    dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    running: bool,
}

impl Server {
    /// Creates a server in `dir`, an existing empty directory that is handed to the server
    /// user: runs initdb into `dir/data`. The server is not started.
    pub fn init(dir: &Path) -> Result<Server> {
        let server = Server {
            dir: dir.to_path_buf(),
            data_dir: dir.join("data"),
            socket_dir: dir.join("sock"),
            log_file: dir.join("server.log"),
            port: 0,
            running: false,
        };
        if server.socket_dir.as_os_str().len() + "/.s.PGSQL.65535.lock".len() >= SOCKET_PATH_MAX {
            bail!(
                "{} is too long a path for a unix socket; point TMPDIR at a shorter directory",
                server.socket_dir.display()
            );
        }
        fs::create_dir(&server.socket_dir)
            .with_context(|| format!("cannot create {}", server.socket_dir.display()))?;
        give_to_server_user(dir)?;
        give_to_server_user(&server.socket_dir)?;
        let mut initdb = server_command("initdb", dir)?;
        initdb.arg("-D").arg(&server.data_dir).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;
        Ok(server)
    }

    /// Starts the server for the first time on a free port: appends the port, the throwaway
    /// settings and `settings` (`name`, `value`) to initdb's postgresql.conf. Tries another
    /// port when the chosen one is taken by the time the server binds it.
    pub fn start(&mut self, settings: &[(String, String)]) -> Result<()> {
        let socket_dir = self.socket_dir.to_string_lossy().into_owned();
        let throwaway = [
            ("listen_addresses", HOST),
            ("unix_socket_directories", &socket_dir),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "50"),
            ("shared_buffers", "32MB"),
        ];
        let conf_file = self.data_dir.join("postgresql.conf");
        let initdb_conf = fs::read_to_string(&conf_file)
            .with_context(|| format!("cannot read {}", conf_file.display()))?;
        for attempt in 1.. {
            self.port = free_port()?;
            let mut conf = initdb_conf.clone();
            conf.push_str("\n# Throwaway server settings\n");
            writeln!(conf, "port = {}", self.port)?;
            let all = throwaway
                .iter()
                .map(|(name, value)| (*name, *value))
                .chain(settings.iter().map(|(name, value)| (&**name, &**value)));
            for (name, value) in all {
                writeln!(conf, "{name} = {}", conf_value(value))?;
            }
            fs::write(&conf_file, conf)
                .with_context(|| format!("cannot write {}", conf_file.display()))?;
            let log_len = fs::metadata(&self.log_file).map_or(0, |m| m.len() as usize);
            match self.pg_ctl_start() {
                Ok(()) => break,
                Err(err) => {
                    let log = fs::read(&self.log_file).unwrap_or_default();
                    let new_log = String::from_utf8_lossy(log.get(log_len..).unwrap_or_default());
                    // Another process took the port between free_port() and now.
                    if attempt < START_ATTEMPTS && new_log.contains("Address already in use") {
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        self.running = true;
        Ok(())
    }

    /// Stops the server (fast shutdown: sessions are ended, transactions rolled back); does
    /// nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        if self.running {
            self.pg_ctl(&["-m", "fast", "-w", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Stops the server at once, as a crash would (immediate shutdown: nothing more is
    /// written, and the next start recovers from the WAL); nothing if it is not running.
    pub fn crash(&mut self) -> Result<()> {
        if self.running {
            self.pg_ctl(&["-m", "immediate", "-w", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Stops the server if it is running and starts it again on the same port.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.pg_ctl_start()?;
        self.running = true;
        Ok(())
    }

    /// The TCP port the server listens on (also in its unix socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's own directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server log.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// A libpq-style connection string for `dbname` as user postgres over TCP.
    pub fn connstr(&self, dbname: &str) -> String {
        format!(
            "host={HOST} port={} user=postgres dbname={}",
            self.port,
            connstr_value(dbname)
        )
    }

    /// A libpq-style connection string for `dbname` as user postgres over the unix socket.
    pub fn socket_connstr(&self, dbname: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={}",
            connstr_value(&self.socket_dir.to_string_lossy()),
            self.port,
            connstr_value(dbname)
        )
    }

    /// The last `lines` lines of the server log, under a line naming the file.
    pub fn log_tail(&self, lines: usize) -> String {
        let log =
            String::from_utf8_lossy(&fs::read(&self.log_file).unwrap_or_default()).into_owned();
        let all: Vec<&str> = log.lines().collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        format!("--- end of {} ---\n{tail}", self.log_file.display())
    }

    fn pg_ctl_start(&self) -> Result<()> {
        let log = self
            .log_file
            .to_str()
            .ok_or_else(|| anyhow!("{} is not UTF-8", self.log_file.display()))?;
        self.pg_ctl(&["-l", log, "-w", "-t", "60", "start"])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let mut cmd = server_command("pg_ctl", &self.dir)?;
        cmd.arg("-D").arg(&self.data_dir).args(args);
        run(cmd, &format!("pg_ctl {}", args.join(" ")))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Also covers a server left running by a failed or timed-out start.
        stop_immediately(&self.dir);
    }
}

/// Stops the server in `dir` (see [`Server::init`]) at once if its postmaster.pid says it
/// runs (`pg_ctl stop -m immediate`), ignoring errors; for servers left behind by a process
/// that died.
pub fn stop_immediately(dir: &Path) {
    let data_dir = dir.join("data");
    if !data_dir.join("postmaster.pid").exists() {
        return;
    }
    if let Ok(mut cmd) = server_command("pg_ctl", dir) {
        cmd.arg("-D")
            .arg(&data_dir)
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// As root, hands `path` to the server user; otherwise does nothing.
pub fn give_to_server_user(path: &Path) -> Result<()> {
    if let Some((uid, gid)) = server_user()? {
        chown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot hand {} to user postgres", path.display()))?;
    }
    Ok(())
}

/// Runs `cmd`; on failure, the error carries its output.
fn run(mut cmd: Command, what: &str) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what} ({:?})", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A command running server binary `program` in `cwd`, as user postgres when we are root.
fn server_command(program: &str, cwd: &Path) -> Result<Command> {
    let program = bindir()?.join(program);
    let mut cmd = if server_user()?.is_some() {
        let runuser = ["/usr/sbin/runuser", "/sbin/runuser"]
            .into_iter()
            .find(|path| Path::new(path).exists())
            .unwrap_or("runuser");
        let mut cmd = Command::new(runuser);
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    };
    cmd.current_dir(cwd);
    // Variables like PGDATA or PGPORT of the caller must not affect the server.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    Ok(cmd)
}

/// Uid and gid of user postgres if we are root (the server refuses to run as root), else
/// `None`; an error if we are root and there is no such user.
fn server_user() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    let ids = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[..] {
            ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
            _ => None,
        }
    });
    match ids {
        Some(ids) => Ok(Some(ids)),
        None => bail!(
            "running as root, but user postgres does not exist (PostgreSQL refuses to run as \
             root): install the `postgresql` package, which creates the user"
        ),
    }
}

/// The directory with the PostgreSQL server binaries: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout), else the first directory in `PATH` that
/// has `pg_ctl`.
pub fn bindir() -> Result<&'static Path> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR.get_or_init(find_bindir).as_deref().ok_or_else(|| {
        anyhow!(
            "PostgreSQL server binaries not found (pg_config --bindir, /usr/lib/postgresql/*/bin, \
             PATH): install the `postgresql` package"
        )
    })
}

fn find_bindir() -> Option<PathBuf> {
    let has_pg_ctl = |dir: &Path| dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_pg_ctl(&dir) {
            return Some(dir);
        }
    }
    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let version = name
                .to_str()?
                .split('.')
                .map(|part| part.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            let bin = entry.path().join("bin");
            has_pg_ctl(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_pg_ctl(dir))
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .context("cannot pick a free port")?
        .port())
}

/// `value` quoted for postgresql.conf.
fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// `value` quoted for a libpq-style connection string if needed.
fn connstr_value(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\']) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}
