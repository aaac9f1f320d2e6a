//! Throwaway PostgreSQL clusters for the integration tests.
//!
//! Each [`Cluster`] gets its own data directory, unix socket directory and
//! port, so tests can run in parallel (threads or processes). The server is
//! stopped and everything is removed when the `Cluster` is dropped, also when
//! the test panics. As root, the server runs as user `postgres`.
//!
//! The server itself is [`skyrep::demo::cluster::Server`] (shared with `skyrep demo`); this adds
//! the scratch directory, TLS, password authentication, client helpers and the clean-up of
//! clusters left behind by killed test processes.

// Each test uses a subset of the harness, so not every item is used everywhere.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Once;

use postgres::{Client, NoTls};
use skyrep::demo::cluster::{self, HOST, Server, give_to_server_user};

use crate::util::{TempDir, error_chain, process_alive, scratch_root, strings};

/// Lines of the server log shown when the server fails.
const LOG_TAIL_LINES: usize = 40;

/// A running throwaway PostgreSQL cluster with superuser `postgres`.
pub struct Cluster {
    // Dropped first: stops the server before its directory is removed.
    server: Server,
    dir: TempDir,
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
        let mut server = Server::init(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
        let data = server.data_dir().to_owned();
        let mut settings = Vec::new();
        if let Some((cert, key)) = &self.ssl {
            let cert_file = data.join("server.crt");
            let key_file = data.join("server.key");
            fs::write(&cert_file, cert).expect("cannot write server.crt");
            fs::write(&key_file, key).expect("cannot write server.key");
            fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600))
                .expect("cannot chmod server.key");
            give_to_server_user(&cert_file).unwrap_or_else(|e| panic!("{e:#}"));
            give_to_server_user(&key_file).unwrap_or_else(|e| panic!("{e:#}"));
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
        if let Err(err) = server.start(&settings) {
            panic!("{err:#}\n{}", server.log_tail(LOG_TAIL_LINES));
        }
        Cluster { server, dir }
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
        self.server.port()
    }

    /// The TCP address the server listens on: "127.0.0.1".
    pub fn host(&self) -> &str {
        HOST
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        self.server.socket_dir()
    }

    /// The cluster's own directory, removed on drop; tests may write files into it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> &Path {
        self.server.data_dir()
    }

    /// A libpq-style connection string for `dbname` as user postgres over TCP.
    pub fn connstr(&self, dbname: &str) -> String {
        self.server.connstr(dbname)
    }

    /// A libpq-style connection string for `dbname` as user postgres over the unix socket.
    pub fn socket_connstr(&self, dbname: &str) -> String {
        self.server.socket_connstr(dbname)
    }

    /// Connects to `dbname` as user postgres over the unix socket (always `trust`).
    pub fn connect(&self, dbname: &str) -> Client {
        postgres::Config::new()
            .host_path(self.socket_dir())
            .port(self.port())
            .user("postgres")
            .dbname(dbname)
            .connect(NoTls)
            .unwrap_or_else(|e| {
                panic!(
                    "cannot connect to database {dbname} on port {}: {}",
                    self.port(),
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
        strings(&mut self.connect(dbname), sql)
    }

    /// The first column of the first row `sql` returns in `dbname` (None for NULL).
    pub fn value(&self, dbname: &str, sql: &str) -> Option<String> {
        self.query_strings(dbname, sql)
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .unwrap_or_else(|| panic!("{sql}\nreturned no row"))
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
        String::from_utf8_lossy(&fs::read(self.server.log_file()).unwrap_or_default()).into_owned()
    }

    /// Stops the server (fast shutdown); does nothing if it is already stopped.
    pub fn stop(&mut self) {
        if let Err(err) = self.server.stop() {
            panic!("{err:#}\n{}", self.server.log_tail(LOG_TAIL_LINES));
        }
    }

    /// Crashes the server (immediate shutdown: nothing more is written, as in a power loss
    /// for whatever was not yet on disk) and starts it again, which recovers from the WAL.
    pub fn crash_and_restart(&mut self) {
        if let Err(err) = self.server.crash() {
            panic!("{err:#}\n{}", self.server.log_tail(LOG_TAIL_LINES));
        }
        self.restart();
    }

    /// Stops the server if it is running and starts it again on the same port.
    pub fn restart(&mut self) {
        if let Err(err) = self.server.restart() {
            panic!("{err:#}\n{}", self.server.log_tail(LOG_TAIL_LINES));
        }
    }
}

/// The directory with the PostgreSQL server binaries.
pub fn bindir() -> &'static Path {
    cluster::bindir().unwrap_or_else(|e| panic!("{e:#}, or run tests/run.sh, which installs it"))
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
            cluster::stop_immediately(&dir);
            let _ = fs::remove_dir_all(&dir);
        }
    });
}
