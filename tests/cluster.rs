//! Throwaway PostgreSQL clusters for the integration tests.
//!
//! Each [`Cluster`] gets its own data directory, unix socket directory and
//! port, so tests can run in parallel (threads or processes). The server is
//! stopped and everything is removed when the `Cluster` is dropped, also when
//! the test panics. As root, the server runs as user `postgres`.

// Each test uses a subset of the harness, so not every item is used everywhere.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Once, OnceLock};

use postgres::{Client, NoTls, SimpleQueryMessage};

use crate::util::{TempDir, error_chain, process_alive, scratch_root};

const HOST: &str = "127.0.0.1";
/// How often to try another port when the chosen one was taken in the meantime.
const START_ATTEMPTS: usize = 5;
/// Lines of the server log shown when the server fails.
const LOG_TAIL_LINES: usize = 40;

/// A running throwaway PostgreSQL cluster with superuser `postgres`.
pub struct Cluster {
    dir: TempDir,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    running: bool,
}

/// Options for a [`Cluster`], created by [`Cluster::builder`].
#[derive(Default)]
pub struct ClusterBuilder {
    ssl: Option<(String, String)>,
    password_auth: bool,
    settings: Vec<(String, String)>,
}

impl ClusterBuilder {
    /// Enables TLS with the given PEM certificate (chain) and private key.
    pub fn ssl(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.ssl = Some((cert_pem.to_owned(), key_pem.to_owned()));
        self
    }

    /// Requires scram-sha-256 passwords over TCP; the unix socket stays `trust`.
    pub fn password_auth(mut self) -> Self {
        self.password_auth = true;
        self
    }

    /// Adds `name = 'value'` to postgresql.conf.
    pub fn setting(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Creates and starts the cluster; panics on failure.
    pub fn start(self) -> Cluster {
        remove_stale_clusters();
        let dir = TempDir::new("pg");
        let cluster = Cluster {
            data_dir: dir.path().join("data"),
            socket_dir: dir.path().join("sock"),
            log_file: dir.path().join("server.log"),
            dir,
            port: 0,
            running: false,
        };
        fs::create_dir(cluster.socket_dir()).expect("cannot create the socket directory");
        assert!(
            cluster.socket_dir().as_os_str().len() + "/.s.PGSQL.65535.lock".len() < 108,
            "{} is too long a path for a unix socket; point TMPDIR at a shorter directory",
            cluster.socket_dir().display()
        );
        give_to_server_user(cluster.dir());
        give_to_server_user(cluster.socket_dir());
        cluster.initdb();
        self.configure(cluster)
    }

    fn configure(self, mut cluster: Cluster) -> Cluster {
        let data = cluster.data_dir().to_owned();
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", HOST),
            (
                "unix_socket_directories",
                &cluster.socket_dir().to_string_lossy(),
            ),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "50"),
            ("shared_buffers", "32MB"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();

        if let Some((cert, key)) = &self.ssl {
            let cert_file = data.join("server.crt");
            let key_file = data.join("server.key");
            fs::write(&cert_file, cert).expect("cannot write server.crt");
            fs::write(&key_file, key).expect("cannot write server.key");
            fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600))
                .expect("cannot chmod server.key");
            give_to_server_user(&cert_file);
            give_to_server_user(&key_file);
            settings.push(("ssl".into(), "on".into()));
            settings.push(("ssl_cert_file".into(), cert_file.to_string_lossy().into()));
            settings.push(("ssl_key_file".into(), key_file.to_string_lossy().into()));
        }
        if self.password_auth {
            fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 host all all 127.0.0.1/32 scram-sha-256\n\
                 host all all ::1/128 scram-sha-256\n",
            )
            .expect("cannot write pg_hba.conf");
        }
        settings.extend(self.settings);

        let conf_file = data.join("postgresql.conf");
        let initdb_conf = fs::read_to_string(&conf_file).expect("cannot read postgresql.conf");
        for attempt in 1.. {
            cluster.port = free_port();
            let mut conf = initdb_conf.clone();
            conf.push_str("\n# Test harness settings\n");
            writeln!(conf, "port = {}", cluster.port).unwrap();
            for (name, value) in &settings {
                writeln!(conf, "{name} = {}", conf_value(value)).unwrap();
            }
            fs::write(&conf_file, conf).expect("cannot write postgresql.conf");

            let log_len = fs::metadata(&cluster.log_file).map_or(0, |m| m.len() as usize);
            match cluster.pg_ctl_start() {
                Ok(()) => break,
                Err(err) => {
                    let log = fs::read(&cluster.log_file).unwrap_or_default();
                    let new_log = String::from_utf8_lossy(log.get(log_len..).unwrap_or_default());
                    // Another process took the port between free_port() and now.
                    if attempt < START_ATTEMPTS && new_log.contains("Address already in use") {
                        continue;
                    }
                    panic!("{err}\n{}", cluster.log_tail());
                }
            }
        }
        cluster.running = true;
        cluster
    }
}

impl Cluster {
    /// Creates and starts a cluster with default options; panics on failure.
    pub fn start() -> Cluster {
        Cluster::builder().start()
    }

    /// A builder for a cluster with non-default options.
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder::default()
    }

    /// The TCP port the server listens on (also used in the socket's name).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP address the server listens on: "127.0.0.1".
    pub fn host(&self) -> &str {
        HOST
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's own directory, removed on drop; tests may write files into it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
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
            connstr_value(&self.socket_dir().to_string_lossy()),
            self.port,
            connstr_value(dbname)
        )
    }

    /// Connects to `dbname` as user postgres over the unix socket (always `trust`).
    pub fn connect(&self, dbname: &str) -> Client {
        postgres::Config::new()
            .host_path(self.socket_dir())
            .port(self.port)
            .user("postgres")
            .dbname(dbname)
            .connect(NoTls)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to database {dbname} on port {}: {}",
                    self.port,
                    error_chain(&e)
                )
            })
    }

    /// Runs `sql` in database postgres; panics on error. Several statements run as one
    /// implicit transaction, so statements like CREATE DATABASE need a call of their own.
    pub fn execute(&self, sql: &str) {
        if let Err(e) = self.connect("postgres").batch_execute(sql) {
            panic!("{sql}\nfailed: {}", error_chain(&e));
        }
    }

    /// Runs `sql` in `dbname` and returns the rows of all its statements as text.
    pub fn query_strings(&self, dbname: &str, sql: &str) -> Vec<Vec<Option<String>>> {
        let messages = self
            .connect(dbname)
            .simple_query(sql)
            .unwrap_or_else(|e| panic!("{sql}\nfailed: {}", error_chain(&e)));
        messages
            .iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// Creates database `name`.
    pub fn create_database(&self, name: &str) {
        self.execute(&format!(
            "CREATE DATABASE \"{}\"",
            name.replace('"', "\"\"")
        ));
    }

    /// The server log so far.
    pub fn server_log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_file).unwrap_or_default()).into_owned()
    }

    /// Stops the server (fast shutdown); does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if self.running {
            if let Err(err) = self.pg_ctl(&["-m", "fast", "-w", "stop"]) {
                panic!("{err}\n{}", self.log_tail());
            }
            self.running = false;
        }
    }

    /// Stops the server if it is running and starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(err) = self.pg_ctl_start() {
            panic!("{err}\n{}", self.log_tail());
        }
        self.running = true;
    }

    fn log_tail(&self) -> String {
        let log = self.server_log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        format!("--- end of {} ---\n{tail}", self.log_file.display())
    }

    fn initdb(&self) {
        let mut cmd = server_command("initdb", self.dir());
        cmd.arg("-D").arg(self.data_dir()).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-locale",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        if let Err(err) = run(cmd, "initdb") {
            panic!("{err}");
        }
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let log = self
            .log_file
            .to_str()
            .expect("non-UTF-8 temporary directory");
        self.pg_ctl(&["-l", log, "-w", "-t", "60", "start"])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = server_command("pg_ctl", self.dir());
        cmd.arg("-D").arg(self.data_dir()).args(args);
        run(cmd, &format!("pg_ctl {}", args.join(" ")))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Also covers a server left running by a failed or timed-out start.
        if self.data_dir().join("postmaster.pid").exists() {
            stop_immediately(self.data_dir(), self.dir());
        }
        // The TempDir field then removes the directory.
    }
}

/// As root, hands `path` to the server user.
fn give_to_server_user(path: &Path) {
    if let Some((uid, gid)) = server_user() {
        chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("cannot chown {}: {e}", path.display()));
    }
}

/// `pg_ctl stop -m immediate`, ignoring errors.
fn stop_immediately(data_dir: &Path, cwd: &Path) {
    let mut cmd = server_command("pg_ctl", cwd);
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-m", "immediate", "-w", "stop"]);
    let _ = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Runs `cmd`; on failure, returns a message with its output.
fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what} ({:?}): {e}", cmd.get_program()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// A command running server binary `program` in `cwd`, as user postgres when we are root.
fn server_command(program: &str, cwd: &Path) -> Command {
    let program = bindir().join(program);
    let mut cmd = if server_user().is_some() {
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
    // Variables like PGDATA or PGPORT of the caller must not affect the cluster.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// Uid and gid of user postgres if we are root (the server refuses to run as root).
fn server_user() -> Option<(u32, u32)> {
    static USER: OnceLock<Option<(u32, u32)>> = OnceLock::new();
    *USER.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let passwd = fs::read_to_string("/etc/passwd").expect("cannot read /etc/passwd");
        let ids = passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields[..] {
                ["postgres", _, uid, gid, ..] => Some((uid.parse().ok()?, gid.parse().ok()?)),
                _ => None,
            }
        });
        Some(ids.expect(
            "running as root, but user postgres does not exist: the server refuses to run as \
             root; install PostgreSQL with `apt-get install postgresql` (which creates the user) \
             or run tests/run.sh",
        ))
    })
}

/// The directory with the PostgreSQL server binaries.
pub fn bindir() -> &'static Path {
    static BINDIR: OnceLock<PathBuf> = OnceLock::new();
    BINDIR.get_or_init(find_bindir)
}

fn find_bindir() -> PathBuf {
    let has_pg_ctl = |dir: &Path| dir.join("pg_ctl").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_pg_ctl(&dir) {
            return dir;
        }
    }
    // Debian's layout: /usr/lib/postgresql/<version>/bin; take the highest version.
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
        return bin;
    }
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|dir| has_pg_ctl(dir))
    {
        return dir;
    }
    panic!(
        "PostgreSQL server binaries not found: install them with `apt-get install postgresql` \
         or run tests/run.sh, which installs them"
    );
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((HOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("cannot pick a free port")
        .port()
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

/// Stops and removes clusters left behind by test processes that were killed
/// (e.g. on a timeout) before they could clean up; once per process.
fn remove_stale_clusters() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir(scratch_root()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|name| name.split_once('-'))
                .and_then(|(pid, _)| pid.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() as i32 || process_alive(pid) {
                continue;
            }
            let dir = entry.path();
            if dir.join("data/postmaster.pid").exists() {
                stop_immediately(&dir.join("data"), &dir);
            }
            let _ = fs::remove_dir_all(&dir);
        }
    });
}
