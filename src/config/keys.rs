//! Every config key skyrep knows: its kind, default and one-line meaning.
//!
//! This table is the single source for the typed getters in [`crate::config`], for the
//! warnings about unknown keys, and for the sample config that `skyrep --ini` prints.

/// What a key's value must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text.
    Text,
    /// A libpq connection string.
    ConnStr,
    /// A file path; a leading `~` is the home directory.
    Path,
    /// Seconds, fractions allowed (`0.2`).
    Seconds,
    /// A whole number, at least 1.
    Count,
    /// `on`/`off`, `yes`/`no`, `true`/`false`, `1`/`0`.
    Flag,
}

/// One config key.
#[derive(Debug)]
pub struct Key {
    /// The name used in new config files.
    pub name: &'static str,
    /// Older names that mean the same key.
    pub aliases: &'static [&'static str],
    /// What the value must look like.
    pub kind: Kind,
    /// The value used when the key is absent, if any.
    pub default: Option<&'static str>,
    /// One line saying what the key does.
    pub help: &'static str,
    /// Heading under which `--ini` prints the key.
    pub group: &'static str,
}

const fn key(
    name: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    group: &'static str,
    help: &'static str,
) -> Key {
    Key {
        name,
        aliases: &[],
        kind,
        default,
        help,
        group,
    }
}

/// The default `compare_sql`: row count and the sum of a 64-bit hash of every row's text.
pub const DEFAULT_COMPARE_SQL: &str = "select count(*) as cnt, coalesce(sum(hashtextextended(t::text, 0)), 0) as chksum from only _TABLE_ t";

const JOB: &str = "job";
const DATABASES: &str = "databases";
const FILES: &str = "files";
const REPLAY: &str = "replay";
const TICKER: &str = "ticker";
const COMPARE: &str = "compare and repair";
const SERVICE: &str = "service";
const MULTI: &str = "standalone ticker over many databases";
const ROLES: &str = "queue privileges";

/// Every key, in the order `--ini` prints them.
pub const KEYS: &[Key] = &[
    key(
        "job_name",
        Kind::Text,
        None,
        JOB,
        "names the consumer on the queue, log lines and the pidfile (default: config file name without extension)",
    ),
    key(
        "provider_db",
        Kind::ConnStr,
        None,
        DATABASES,
        "source database, a libpq connection string (key=value or postgresql:// URI)",
    ),
    key(
        "subscriber_db",
        Kind::ConnStr,
        None,
        DATABASES,
        "target database, a libpq connection string",
    ),
    key(
        "db",
        Kind::ConnStr,
        None,
        DATABASES,
        "for a ticker config: the database whose queues to tick",
    ),
    Key {
        aliases: &["queue_name"],
        ..key(
            "pgq_queue_name",
            Kind::Text,
            None,
            DATABASES,
            "queue on the provider that carries the changes",
        )
    },
    key(
        "pgq_reader_role",
        Kind::Text,
        Some("pgq_reader"),
        ROLES,
        "role that may consume from pgq queues; install creates it if missing and allowed to",
    ),
    key(
        "pgq_writer_role",
        Kind::Text,
        Some("pgq_writer"),
        ROLES,
        "role that may insert events with pgq.insert_event; install creates it if missing and allowed to",
    ),
    key(
        "pgq_admin_role",
        Kind::Text,
        Some("pgq_admin"),
        ROLES,
        "role that may tick, maintain and create queues; install creates it if missing and allowed to",
    ),
    key(
        "logfile",
        Kind::Path,
        None,
        FILES,
        "log file, reopened on SIGHUP, e.g. /var/log/skyrep/%(job_name)s.log (default: log to the terminal only)",
    ),
    key(
        "pidfile",
        Kind::Path,
        None,
        FILES,
        "pid file, e.g. /run/skyrep/%(job_name)s.pid; refuses to start a second daemon of the same job",
    ),
    key(
        "loop_delay",
        Kind::Seconds,
        Some("0.2"),
        REPLAY,
        "seconds the replay thread waits for a batch when no tick wakes it",
    ),
    key(
        "parallel_copies",
        Kind::Count,
        Some("1"),
        REPLAY,
        "how many tables are copied at the same time",
    ),
    key(
        "batch_events",
        Kind::Count,
        Some("20000"),
        REPLAY,
        "when more events than this wait, replay takes several ticks as one batch of about this many",
    ),
    key(
        "exception_sleep",
        Kind::Seconds,
        Some("20"),
        REPLAY,
        "seconds to wait after an error before retrying (the first retry is quicker)",
    ),
    key(
        "connection_lifetime",
        Kind::Seconds,
        Some("1200"),
        REPLAY,
        "seconds after which idle database connections are renewed",
    ),
    key(
        "ticker",
        Kind::Flag,
        Some("on"),
        TICKER,
        "run a ticker thread for the provider queue inside replay (off when an external ticker runs)",
    ),
    key(
        "ticker_period",
        Kind::Seconds,
        Some("0.2"),
        TICKER,
        "seconds between tick attempts (sooner when a queue's ticker_max_lag runs out first)",
    ),
    Key {
        aliases: &["maint_delay"],
        ..key(
            "maint_period",
            Kind::Seconds,
            Some("120"),
            TICKER,
            "seconds between maintenance runs (event table rotation, retry queue)",
        )
    },
    key(
        "retry_period",
        Kind::Seconds,
        Some("30"),
        TICKER,
        "seconds between moves of due retry events back into the queue",
    ),
    key(
        "lock_timeout",
        Kind::Seconds,
        Some("10"),
        COMPARE,
        "seconds compare and repair may hold provider locks while waiting for replay",
    ),
    key(
        "compare_sql",
        Kind::Text,
        Some(DEFAULT_COMPARE_SQL),
        COMPARE,
        "per-table query of compare, returning a count and a checksum; _TABLE_ is replaced",
    ),
    key(
        "syslog",
        Kind::Flag,
        Some("0"),
        SERVICE,
        "also send log lines to the local syslog",
    ),
    key(
        "syslog_ident",
        Kind::Text,
        Some("%(job_name)s"),
        SERVICE,
        "program name in syslog lines",
    ),
    key(
        "base_connstr",
        Kind::ConnStr,
        Some(""),
        MULTI,
        "connection string without dbname for ticking every database that has pgq",
    ),
    key(
        "initial_database",
        Kind::Text,
        Some("template1"),
        MULTI,
        "database to connect to first to list the others",
    ),
    key(
        "database_list",
        Kind::Text,
        Some(""),
        MULTI,
        "comma-separated databases to tick (empty: every database that has pgq)",
    ),
    key(
        "check_period",
        Kind::Seconds,
        Some("60"),
        MULTI,
        "seconds between checks for new databases",
    ),
];

/// The key called `name` (or one of its aliases), if skyrep knows it.
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter()
        .find(|k| k.name == name || k.aliases.contains(&name))
}

/// The sample config printed by `skyrep --ini`: every key commented out with its default.
pub fn sample_config() -> String {
    let mut out = String::from(
        "# skyrep configuration: one [skyrep] section (old [londiste], [londiste3], [pgqd]\n\
         # and [pgqadm] files load too). %(key)s inserts another key's value; a leading ~\n\
         # is the home directory. Remove the # in front of a key to set it.\n\n[skyrep]\n",
    );
    let mut group = "";
    for key in KEYS {
        if key.group != group {
            group = key.group;
            out.push_str(&format!("\n## {group} ##\n"));
        }
        out.push_str(&format!("\n# {}\n", key.help));
        match key.default {
            Some(default) => out.push_str(&format!("#{} = {}\n", key.name, default)),
            None => out.push_str(&format!("#{} =\n", key.name)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_are_unique() {
        let mut names: Vec<&str> = KEYS
            .iter()
            .flat_map(|k| std::iter::once(k.name).chain(k.aliases.iter().copied()))
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all);
    }

    #[test]
    fn aliases_find_their_key() {
        assert_eq!(find("queue_name").unwrap().name, "pgq_queue_name");
        assert_eq!(find("maint_delay").unwrap().name, "maint_period");
        assert!(find("no_such_key").is_none());
    }

    #[test]
    fn sample_lists_every_key_with_its_default() {
        let sample = sample_config();
        for key in KEYS {
            let line = match key.default {
                Some(d) => format!("#{} = {}\n", key.name, d),
                None => format!("#{} =\n", key.name),
            };
            assert!(sample.contains(&line), "missing {line}");
        }
    }
}
