//! The config file: its parsing (this file) and the table of every key with its kind,
//! default and meaning ([`keys`]). Uses `base` and `db`.
//!
//! The INI config file (SPEC §3).
//!
//! One section named `[skyrep]`, or `[londiste]`, `[londiste3]`, `[pgqd]` or `[pgqadm]` so that
//! existing Londiste and pgqd files load unchanged. `key = value` or `key: value`; `#` and `;`
//! start comment lines; an indented line continues the value above it (multi-line values such
//! as `compare_sql`); `%(name)s` inserts another key's value (`job_name` and `config_name`
//! always exist) and `%%` is a literal `%`. Unknown keys are warnings; anything else wrong is an
//! error naming the file and line. Every value is checked when the file is loaded, so a typo
//! stops the program before it touches a database.

pub mod keys;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;

use crate::base::error::usage;
use crate::db::connstr::ConnStr;
use keys::Kind;

/// Section names a config file may use.
pub const SECTIONS: &[&str] = &["skyrep", "londiste", "londiste3", "pgqd", "pgqadm"];

/// A loaded config file.
#[derive(Debug)]
pub struct Config {
    path: PathBuf,
    section: String,
    entries: Vec<Entry>,
    file_stem: String,
    warnings: Vec<String>,
}

#[derive(Debug)]
struct Entry {
    key: String,
    value: String,
    line: usize,
}

/// A setting that a reload of the config (SIGHUP) can change while threads use it.
#[derive(Clone, Debug)]
pub struct Live<T>(Arc<Mutex<T>>);

impl<T: Copy> Live<T> {
    /// Starts at `value`.
    pub fn new(value: T) -> Live<T> {
        Live(Arc::new(Mutex::new(value)))
    }

    /// The value now.
    pub fn get(&self) -> T {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the value for every holder.
    pub fn set(&self, value: T) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

/// A live setting with the key it is read from on reload.
#[derive(Clone, Debug)]
pub enum LiveKey {
    /// A number of seconds.
    Seconds(&'static str, Live<Duration>),
    /// A whole number.
    Count(&'static str, Live<u32>),
}

impl LiveKey {
    /// Sets the value from `config`; returns the key and the value as text.
    pub fn reload(&self, config: &Config) -> Result<(&'static str, String)> {
        Ok(match self {
            LiveKey::Seconds(key, live) => {
                live.set(config.seconds(key)?);
                (key, format!("{:?}", live.get()))
            }
            LiveKey::Count(key, live) => {
                live.set(config.count(key)?);
                (key, live.get().to_string())
            }
        })
    }
}

impl Config {
    /// Reads, parses and checks the config file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| usage(format!("cannot read config file {}: {e}", path.display())))?;
        Config::parse(path, &text)
    }

    /// Parses and checks config text; `path` is used for messages and the default `job_name`.
    pub fn parse(path: &Path, text: &str) -> Result<Config> {
        let file_stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut config = Config {
            path: path.to_path_buf(),
            section: String::new(),
            entries: Vec::new(),
            file_stem,
            warnings: Vec::new(),
        };
        config.read_lines(text)?;
        config.check()?;
        Ok(config)
    }

    fn read_lines(&mut self, text: &str) -> Result<()> {
        // None: before any section; Some(true): in ours; Some(false): in one we ignore.
        let mut in_ours: Option<bool> = None;
        let mut last_key: Option<usize> = None;
        for (index, raw) in text.lines().enumerate() {
            let line_no = index + 1;
            let line = raw.trim_end_matches('\r');
            let trimmed = line.trim();
            if trimmed.is_empty() {
                last_key = None;
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            if line.starts_with(char::is_whitespace)
                && let Some(entry) = last_key
            {
                let entry = &mut self.entries[entry];
                entry.value.push('\n');
                entry.value.push_str(trimmed);
                continue;
            }
            last_key = None;
            if let Some(name) = trimmed.strip_prefix('[') {
                let Some(name) = name.strip_suffix(']') else {
                    return Err(
                        self.error_at(line_no, format!("unterminated section header `{trimmed}`"))
                    );
                };
                let name = name.trim();
                if SECTIONS.iter().any(|s| s.eq_ignore_ascii_case(name)) {
                    if !self.section.is_empty() {
                        return Err(self.error_at(
                            line_no,
                            format!("second section [{name}]: a config has one section (first was [{}])", self.section),
                        ));
                    }
                    self.section = name.to_string();
                    in_ours = Some(true);
                } else {
                    self.warnings.push(format!(
                        "{}:{line_no}: section [{name}] ignored (skyrep reads [{}])",
                        self.path.display(),
                        SECTIONS[0]
                    ));
                    in_ours = Some(false);
                }
                continue;
            }
            let Some(split) = trimmed.find(['=', ':']) else {
                return Err(self.error_at(
                    line_no,
                    format!("expected `key = value`, found `{trimmed}`"),
                ));
            };
            let key = trimmed[..split].trim().to_ascii_lowercase();
            let value = trimmed[split + 1..].trim().to_string();
            if key.is_empty() {
                return Err(self.error_at(line_no, "missing key name before `=`".to_string()));
            }
            match in_ours {
                None => {
                    return Err(self.error_at(
                        line_no,
                        format!(
                            "`{key}` is outside a section; start the file with [{}]",
                            SECTIONS[0]
                        ),
                    ));
                }
                Some(false) => continue,
                Some(true) => {}
            }
            if let Some(earlier) = self.entry(&key) {
                self.warnings.push(format!(
                    "{}:{line_no}: `{key}` was already set on line {}; the later value wins",
                    self.path.display(),
                    earlier.line
                ));
            }
            self.entries.push(Entry {
                key,
                value,
                line: line_no,
            });
            last_key = Some(self.entries.len() - 1);
        }
        if self.section.is_empty() {
            return Err(usage(format!(
                "{}: no [{}] section (also accepted: {})",
                self.path.display(),
                SECTIONS[0],
                SECTIONS[1..]
                    .iter()
                    .map(|s| format!("[{s}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }

    /// Checks every value against its kind and warns about keys skyrep does not know.
    fn check(&mut self) -> Result<()> {
        let mut unknown = Vec::new();
        for entry in &self.entries {
            match keys::find(&entry.key) {
                Some(key) => self.check_value(key)?,
                None => unknown.push(format!(
                    "{}:{}: unknown key `{}` ignored",
                    self.path.display(),
                    entry.line,
                    entry.key
                )),
            }
        }
        self.job_name()?;
        self.warnings.extend(unknown);
        Ok(())
    }

    fn check_value(&self, key: &keys::Key) -> Result<()> {
        match key.kind {
            Kind::Text => self.text(key.name).map(drop),
            Kind::ConnStr => self.connstr(key.name).map(drop),
            Kind::Path => self.path_value(key.name).map(drop),
            Kind::Seconds => self.seconds(key.name).map(drop),
            Kind::Count => self.count(key.name).map(drop),
            Kind::Flag => self.flag(key.name).map(drop),
        }
    }

    /// The config file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The section name the file used (`skyrep`, `londiste3`, ...).
    pub fn section(&self) -> &str {
        &self.section
    }

    /// Every key of the section with its raw value (before interpolation), in file order.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|entry| (entry.key.as_str(), entry.value.as_str()))
    }

    /// Warnings found while loading (unknown keys, ignored sections, keys set twice).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// `job_name`, defaulting to the config file name without its extension.
    pub fn job_name(&self) -> Result<String> {
        Ok(self
            .text("job_name")?
            .unwrap_or_else(|| self.file_stem.clone()))
    }

    /// A text key with interpolation done; `None` when absent and without default.
    pub fn text(&self, name: &str) -> Result<Option<String>> {
        let key = known(name);
        match self.entry(name) {
            Some(entry) => self
                .expand(
                    &entry.value,
                    key.name,
                    Some(entry.line),
                    &mut vec![key.name.to_string()],
                )
                .map(Some),
            None => match key.default {
                Some(default) => self
                    .expand(default, key.name, None, &mut vec![key.name.to_string()])
                    .map(Some),
                None => Ok(None),
            },
        }
    }

    /// A key that must be set, for commands that cannot work without it.
    pub fn require_text(&self, name: &str) -> Result<String> {
        self.text(name)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| self.missing(name))
    }

    /// A connection string key that must be set, parsed.
    pub fn require_connstr(&self, name: &str) -> Result<ConnStr> {
        self.connstr(name)?.ok_or_else(|| self.missing(name))
    }

    /// The usage error for a key a command needs that is not set, saying what the key is;
    /// for a file that names one database with `db` (a ticker config, a Londiste 3 node)
    /// asked to replicate, what replication needs instead.
    fn missing(&self, name: &str) -> anyhow::Error {
        let mut text = format!("{}: missing key `{name}`", self.path.display());
        if let Some(key) = keys::find(name) {
            text.push_str(&format!(": {}", key.help));
        }
        let replication_key = matches!(name, "provider_db" | "subscriber_db")
            || (name == "pgq_queue_name" && self.entry("provider_db").is_none());
        if replication_key && self.entry("db").is_some() {
            text.push_str(
                "; this file names one database with `db`, as a ticker config (for `ticker`, \
                 `install` and pgqadm's commands) or a Londiste 3 node does, but replication \
                 reads its two databases from `provider_db` and `subscriber_db`",
            );
        }
        usage(text)
    }

    /// A connection string key, parsed.
    pub fn connstr(&self, name: &str) -> Result<Option<ConnStr>> {
        match self.text(name)? {
            Some(text) => ConnStr::parse(&text)
                .map(Some)
                .map_err(|e| self.value_error(name, format!("{e:#}"))),
            None => Ok(None),
        }
    }

    /// A path key; a leading `~` becomes the home directory.
    pub fn path_value(&self, name: &str) -> Result<Option<PathBuf>> {
        let Some(text) = self.text(name)?.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let path = match (text.strip_prefix('~'), home) {
            (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
                home.join(rest.trim_start_matches('/'))
            }
            (Some(_), None) => {
                return Err(self.value_error(
                    name,
                    format!("cannot expand `~` in `{text}`: HOME is not set"),
                ));
            }
            _ => PathBuf::from(text),
        };
        Ok(Some(path))
    }

    /// A duration in seconds (fractions allowed).
    pub fn seconds(&self, name: &str) -> Result<Duration> {
        let text = self.text_with_default(name)?;
        match text.parse::<f64>().map(Duration::try_from_secs_f64) {
            Ok(Ok(duration)) => Ok(duration),
            _ => Err(self.value_error(
                name,
                format!("expected a number of seconds, found `{text}`"),
            )),
        }
    }

    /// A whole number of at least 1.
    pub fn count(&self, name: &str) -> Result<u32> {
        let text = self.text_with_default(name)?;
        match text.parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(self.value_error(
                name,
                format!("expected a whole number of at least 1, found `{text}`"),
            )),
        }
    }

    /// An on/off switch.
    pub fn flag(&self, name: &str) -> Result<bool> {
        let text = self.text_with_default(name)?;
        match text.to_ascii_lowercase().as_str() {
            "1" | "on" | "yes" | "true" => Ok(true),
            "0" | "off" | "no" | "false" => Ok(false),
            _ => Err(self.value_error(name, format!("expected on or off, found `{text}`"))),
        }
    }

    fn text_with_default(&self, name: &str) -> Result<String> {
        let text = self.text(name)?;
        Ok(text.unwrap_or_else(|| {
            panic!("config key `{name}` is read as a value but keys::KEYS gives it no default")
        }))
    }

    /// The last entry for `name`, matching aliases of known keys.
    fn entry(&self, name: &str) -> Option<&Entry> {
        let wanted = keys::find(name).map(|k| k.name);
        self.entries.iter().rev().find(|e| match wanted {
            Some(canonical) => keys::find(&e.key).map(|k| k.name) == Some(canonical),
            None => e.key == name,
        })
    }

    /// Replaces `%(name)s` and `%%` in `value`. `stack` holds the keys being expanded, to
    /// catch cycles.
    fn expand(
        &self,
        value: &str,
        key: &str,
        line: Option<usize>,
        stack: &mut Vec<String>,
    ) -> Result<String> {
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(pos) = rest.find('%') {
            out.push_str(&rest[..pos]);
            let after = &rest[pos + 1..];
            if let Some(tail) = after.strip_prefix('%') {
                out.push('%');
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('(') {
                let Some((name, tail)) = tail.split_once(")s") else {
                    return Err(self.error_line(
                        line,
                        format!("{key}: bad reference in `{value}`: write %(name)s, or %% for a literal %"),
                    ));
                };
                let name = name.to_ascii_lowercase();
                out.push_str(&self.lookup_for_expansion(&name, key, line, stack)?);
                rest = tail;
            } else {
                out.push('%');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn lookup_for_expansion(
        &self,
        name: &str,
        key: &str,
        line: Option<usize>,
        stack: &mut Vec<String>,
    ) -> Result<String> {
        let canonical = keys::find(name).map_or(name, |k| k.name).to_string();
        if stack.contains(&canonical) {
            stack.push(canonical);
            return Err(self.error_line(
                line,
                format!(
                    "{key}: %(..)s references form a cycle: {}",
                    stack.join(" -> ")
                ),
            ));
        }
        let (raw, raw_line) = match self.entry(name) {
            Some(entry) => (entry.value.as_str(), Some(entry.line)),
            None => match canonical.as_str() {
                "job_name" | "config_name" => return Ok(self.file_stem.clone()),
                _ => match keys::find(name).and_then(|k| k.default) {
                    Some(default) => (default, None),
                    None => {
                        return Err(self.error_line(
                            line,
                            format!("{key}: %({name})s refers to a key that is not set"),
                        ));
                    }
                },
            },
        };
        stack.push(canonical);
        let expanded = self.expand(raw, name, raw_line, stack);
        stack.pop();
        expanded
    }

    fn error_at(&self, line: usize, msg: String) -> anyhow::Error {
        usage(format!("{}:{line}: {msg}", self.path.display()))
    }

    fn error_line(&self, line: Option<usize>, msg: String) -> anyhow::Error {
        match line {
            Some(line) => self.error_at(line, msg),
            None => usage(format!("{}: {msg}", self.path.display())),
        }
    }

    fn value_error(&self, name: &str, msg: String) -> anyhow::Error {
        let line = self.entry(name).map(|e| e.line);
        self.error_line(line, format!("{}: {msg}", known(name).name))
    }
}

/// The table entry for a key the code asks for; asking for an unlisted key is a bug.
fn known(name: &str) -> &'static keys::Key {
    keys::find(name).unwrap_or_else(|| panic!("config key `{name}` is missing from keys::KEYS"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::error::{EXIT_USAGE, exit_code};

    fn parse(text: &str) -> Result<Config> {
        Config::parse(Path::new("/etc/skyrep/shop.ini"), text)
    }

    fn err(text: &str) -> String {
        let e = parse(text).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_USAGE);
        format!("{e:#}")
    }

    #[test]
    fn every_section_name_loads() {
        for name in SECTIONS {
            let c = parse(&format!("[{name}]\nloop_delay = 1.0\n")).unwrap();
            assert_eq!(c.section(), *name);
            assert_eq!(c.seconds("loop_delay").unwrap(), Duration::from_secs(1));
        }
    }

    #[test]
    fn defaults_apply_and_job_name_is_the_file_stem() {
        let c = parse("[skyrep]\n").unwrap();
        assert_eq!(c.job_name().unwrap(), "shop");
        assert_eq!(c.seconds("loop_delay").unwrap(), Duration::from_millis(200));
        assert_eq!(c.count("parallel_copies").unwrap(), 1);
        assert!(c.flag("ticker").unwrap());
        assert_eq!(c.text("syslog_ident").unwrap().as_deref(), Some("shop"));
        assert_eq!(c.text("provider_db").unwrap(), None);
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn interpolation_is_recursive_and_knows_job_and_config_name() {
        let c = parse(
            "[skyrep]\njob_name = j_%(config_name)s\nbase = /var/log/%(job_name)s\n\
             logfile = %(base)s/%(job_name)s.log\ncompare_sql = select 100%% from _TABLE_ -- %d\n",
        )
        .unwrap();
        assert_eq!(c.job_name().unwrap(), "j_shop");
        assert_eq!(
            c.path_value("logfile").unwrap().unwrap(),
            PathBuf::from("/var/log/j_shop/j_shop.log")
        );
        assert_eq!(
            c.text("compare_sql").unwrap().unwrap(),
            "select 100% from _TABLE_ -- %d"
        );
        assert_eq!(
            c.warnings(),
            ["/etc/skyrep/shop.ini:3: unknown key `base` ignored"]
        );
    }

    #[test]
    fn interpolation_errors_name_the_line() {
        assert_eq!(
            err("[skyrep]\n\nlogfile = /tmp/%(nope)s.log\n"),
            "/etc/skyrep/shop.ini:3: logfile: %(nope)s refers to a key that is not set"
        );
        assert_eq!(
            err("[skyrep]\npidfile = /tmp/%(job_name)\n"),
            "/etc/skyrep/shop.ini:2: pidfile: bad reference in `/tmp/%(job_name)`: write %(name)s, or %% for a literal %"
        );
        let cycle = err("[skyrep]\njob_name = %(a)s\na = %(b)s\nb = %(job_name)s\n");
        assert!(
            cycle.ends_with("cycle: job_name -> a -> b -> job_name"),
            "{cycle}"
        );
        let self_ref = err("[skyrep]\nlogfile = %(logfile)s\n");
        assert!(self_ref.contains("cycle: logfile -> logfile"), "{self_ref}");
    }

    #[test]
    fn continuation_lines_and_comments() {
        let c = parse(
            "# leading comment\n; another\n[skyrep]\ncompare_sql = select count(*)\n    # not part of it\n\
             \tfrom only _TABLE_\n  where true\nloop_delay: 2\n",
        )
        .unwrap();
        assert_eq!(
            c.text("compare_sql").unwrap().unwrap(),
            "select count(*)\nfrom only _TABLE_\nwhere true"
        );
        assert_eq!(c.seconds("loop_delay").unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn typed_values_are_checked_at_load() {
        assert_eq!(
            err("[skyrep]\nloop_delay = soon\n"),
            "/etc/skyrep/shop.ini:2: loop_delay: expected a number of seconds, found `soon`"
        );
        assert_eq!(
            err("[skyrep]\nparallel_copies = 0\n"),
            "/etc/skyrep/shop.ini:2: parallel_copies: expected a whole number of at least 1, found `0`"
        );
        assert_eq!(
            err("[skyrep]\nticker = sometimes\n"),
            "/etc/skyrep/shop.ini:2: ticker: expected on or off, found `sometimes`"
        );
        let e = err("[skyrep]\nprovider_db = host=x password='abc\n");
        assert!(
            e.starts_with("/etc/skyrep/shop.ini:2: provider_db: unterminated"),
            "{e}"
        );
        assert!(!e.contains("abc"), "{e}");
        let e = err("[skyrep]\nqueue_name = q\nmaint_delay = x\n");
        assert_eq!(
            e,
            "/etc/skyrep/shop.ini:3: maint_period: expected a number of seconds, found `x`"
        );
    }

    #[test]
    fn structure_errors_name_the_line() {
        assert_eq!(
            err("job_name = x\n"),
            "/etc/skyrep/shop.ini:1: `job_name` is outside a section; start the file with [skyrep]"
        );
        assert_eq!(
            err("[skyrep]\njust words\n"),
            "/etc/skyrep/shop.ini:2: expected `key = value`, found `just words`"
        );
        assert_eq!(
            err("[skyrep\n"),
            "/etc/skyrep/shop.ini:1: unterminated section header `[skyrep`"
        );
        assert_eq!(
            err("[other]\nx = 1\n"),
            "/etc/skyrep/shop.ini: no [skyrep] section (also accepted: [londiste], [londiste3], [pgqd], [pgqadm])"
        );
        assert!(
            err("[skyrep]\n[pgqd]\n").starts_with("/etc/skyrep/shop.ini:2: second section [pgqd]")
        );
        assert_eq!(
            err("[skyrep]\n = 1\n"),
            "/etc/skyrep/shop.ini:2: missing key name before `=`"
        );
    }

    #[test]
    fn unknown_keys_ignored_sections_and_repeats_are_warnings() {
        let c =
            parse("[skylog]\nx = 1\n[skyrep]\nLoop_Delay = 1\nloop_delay = 3\nuse_skylog = 0\n")
                .unwrap();
        assert_eq!(c.seconds("loop_delay").unwrap(), Duration::from_secs(3));
        assert_eq!(
            c.warnings(),
            [
                "/etc/skyrep/shop.ini:1: section [skylog] ignored (skyrep reads [skyrep])",
                "/etc/skyrep/shop.ini:5: `loop_delay` was already set on line 4; the later value wins",
                "/etc/skyrep/shop.ini:6: unknown key `use_skylog` ignored",
            ]
        );
    }

    #[test]
    fn aliases_read_as_the_new_name() {
        let c = parse("[londiste3]\nqueue_name = replika\n").unwrap();
        assert_eq!(
            c.text("pgq_queue_name").unwrap().as_deref(),
            Some("replika")
        );
        assert_eq!(c.require_text("pgq_queue_name").unwrap(), "replika");
        assert_eq!(
            format!("{:#}", c.require_text("provider_db").unwrap_err()),
            "/etc/skyrep/shop.ini: missing key `provider_db`: source database, a libpq \
             connection string (key=value or postgresql:// URI)"
        );
        // A Londiste 3 node file names one database.
        let c = parse("[londiste3]\ndb = dbname=leaf\nqueue_name = replika\n").unwrap();
        let err = format!("{:#}", c.require_connstr("subscriber_db").unwrap_err());
        assert!(
            err.starts_with("/etc/skyrep/shop.ini: missing key `subscriber_db`: target database")
                && err.ends_with(
                    "replication reads its two databases from `provider_db` and `subscriber_db`"
                ),
            "{err}"
        );
        assert_eq!(
            exit_code(&c.require_connstr("subscriber_db").unwrap_err()),
            EXIT_USAGE
        );
        // A Londiste 2 ticker.ini asked to replicate: the queue is the first key missing.
        let c = parse("[pgqadm]\njob_name = myticker\ndb = dbname=producer\n").unwrap();
        let err = format!("{:#}", c.require_text("pgq_queue_name").unwrap_err());
        assert!(
            err.starts_with("/etc/skyrep/shop.ini: missing key `pgq_queue_name`: ")
                && err
                    .contains("as a ticker config (for `ticker`, `install` and pgqadm's commands)"),
            "{err}"
        );
    }

    #[test]
    fn home_is_expanded_in_paths() {
        let home = std::env::var("HOME").expect("tests run with HOME set");
        let c = parse("[skyrep]\nlogfile = ~/log/%(job_name)s.log\npidfile = ~user/x\n").unwrap();
        assert_eq!(
            c.path_value("logfile").unwrap().unwrap(),
            Path::new(&home).join("log/shop.log")
        );
        assert_eq!(
            c.path_value("pidfile").unwrap().unwrap(),
            PathBuf::from("~user/x")
        );
    }

    #[test]
    fn the_sample_config_loads_without_warnings() {
        let c = parse(&keys::sample_config()).unwrap();
        assert!(c.warnings().is_empty(), "{:?}", c.warnings());
    }

    #[test]
    fn seed_files_load_unchanged() {
        for (name, text, warnings) in [
            (
                "londiste2-conf.ini",
                include_str!("../../tests/fixtures/londiste2-conf.ini"),
                0,
            ),
            (
                "londiste2-ticker.ini",
                include_str!("../../tests/fixtures/londiste2-ticker.ini"),
                0,
            ),
            (
                "londiste3.ini",
                include_str!("../../tests/fixtures/londiste3.ini"),
                1,
            ),
            ("pgqd.ini", include_str!("../../tests/fixtures/pgqd.ini"), 0),
        ] {
            let c =
                Config::parse(Path::new(name), text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert_eq!(c.warnings().len(), warnings, "{name}: {:?}", c.warnings());
        }
    }
}
