//! Small helpers shared by the integration tests.

// Each test uses a subset of the harness, so not every helper is used everywhere.
#![allow(dead_code)]

use std::error::Error;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use postgres::{Client, SimpleQueryMessage};

/// A `Command` for the `skyrep` binary under test, with `PG*` variables of the
/// caller's environment removed so that tests do not depend on them.
pub fn skyrep() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_skyrep"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// The directory under which all scratch directories of the suite are created
/// (`$TMPDIR/skyrep-tests`).
pub fn scratch_root() -> PathBuf {
    let root = std::env::temp_dir().join("skyrep-tests");
    if fs::create_dir(&root).is_ok() {
        // Shared like /tmp, so that runs as root and as a normal user can both use it.
        let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o1777));
    }
    root
}

/// A unique scratch directory, removed with its contents when dropped.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a new empty directory `<scratch_root>/<pid>-<n>-<label>`.
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let root = scratch_root();
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = root.join(format!("{}-{n}-{label}", std::process::id()));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                // Left behind by an earlier process that had the same pid.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `contents` to the file `name` inside the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path.join(name);
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Calls `f` every 50 ms until it returns true; panics after `timeout`,
/// saying it was waiting until `what`.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks whether the process exists.
    let exists = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    // kill() also succeeds for zombies, which have exited but not been reaped.
    let zombie = fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
    });
    exists && !zombie
}

/// `err` followed by all its sources, e.g. "db error: ERROR: relation "t" does not exist".
pub fn error_chain(err: &dyn Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// Runs `sql`; panics with the server's error.
pub fn exec(client: &mut Client, sql: &str) {
    if let Err(e) = client.batch_execute(sql) {
        panic!("{sql}\nfailed: {}", error_chain(&e));
    }
}

/// The rows `sql` returns, as text (`None` for NULL); panics with the server's error.
pub fn strings(client: &mut Client, sql: &str) -> Vec<Vec<Option<String>>> {
    client
        .simple_query(sql)
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {}", error_chain(&e)))
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

/// SplitMix64: small, and the same numbers for a seed everywhere.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One of `items`.
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}
