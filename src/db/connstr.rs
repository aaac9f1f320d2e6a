//! libpq-style connection strings.
//!
//! Parses both forms libpq accepts — `key=value` pairs (values optionally single-quoted, with
//! backslash escapes) and `postgresql://` URIs (percent-encoded) — and resolves the result the
//! way libpq does: `PG*` environment defaults, `~/.pgpass` (or `passfile`), `sslmode` with
//! `sslrootcert`. The `postgres` crate's own parser rejects several of these keys and reads
//! neither the environment nor the password file, so this module does the parsing and
//! [`crate::db`] builds the crate's `Config` from a [`Resolved`] string.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::base::mask::MASK;
use crate::db::pgpass;
pub use crate::db::pgpass::is_socket_dir;
use crate::db::tls::SslMode;

/// Keys skyrep understands, in the order they are printed.
const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "connect_timeout",
    "application_name",
    "options",
    "sslmode",
    "sslrootcert",
    "keepalives",
    "keepalives_idle",
    "target_session_attrs",
    "channel_binding",
];

/// libpq keys that skyrep knows of but cannot honour; refused with a clear error.
const UNSUPPORTED_KEYS: &[&str] = &[
    "service",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "sslcompression",
    "requiressl",
    "gssencmode",
    "krbsrvname",
    "gsslib",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "replication",
    "load_balance_hosts",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "client_encoding",
    "fallback_application_name",
];

/// A parsed connection string: the keys the user wrote, nothing resolved yet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnStr {
    params: Vec<(String, String)>,
}

impl ConnStr {
    /// Parses a `key=value` connection string or a `postgresql://` / `postgres://` URI.
    ///
    /// Errors never contain the password.
    pub fn parse(text: &str) -> Result<ConnStr> {
        let trimmed = text.trim();
        let params = if trimmed.starts_with("postgresql://") || trimmed.starts_with("postgres://") {
            parse_uri(trimmed)?
        } else {
            parse_key_values(text)?
        };
        let mut conn = ConnStr::default();
        for (key, value) in params {
            check_key(&key)?;
            conn.set(&key, value);
        }
        Ok(conn)
    }

    /// The value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (a later value replaces an earlier one, as in libpq).
    fn set(&mut self, key: &str, value: String) {
        match self.params.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.params.push((key.to_string(), value)),
        }
    }

    /// This string with `key` set to `value` (for example `dbname` on a `base_connstr`).
    pub fn with(&self, key: &str, value: &str) -> ConnStr {
        let mut conn = self.clone();
        conn.set(key, value.to_string());
        conn
    }

    /// [`ConnStr::resolve`] with the process environment, for connecting.
    pub fn resolve_from_env(&self, default_app: &str) -> Result<Resolved> {
        self.resolve(&|var: &str| std::env::var(var).ok(), default_app)
    }

    /// Fills in what the string leaves out, as libpq would: `PG*` variables from `env`, then
    /// built-in defaults, then the password from the password file. `application_name`
    /// defaults to `default_app`.
    pub fn resolve(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
        default_app: &str,
    ) -> Result<Resolved> {
        let pick = |key: &str, var: &str| -> Option<String> {
            self.get(key)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .or_else(|| env(var).filter(|v| !v.is_empty()))
        };
        let hosts: Vec<String> = match pick("host", "PGHOST") {
            Some(list) => list.split(',').map(|h| h.trim().to_string()).collect(),
            None => vec![default_host()],
        };
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| if h.is_empty() { default_host() } else { h })
            .collect();
        let ports = parse_ports(pick("port", "PGPORT").as_deref(), hosts.len())?;
        let user = match pick("user", "PGUSER") {
            Some(user) => user,
            None => whoami::username()
                .map_err(|e| anyhow::anyhow!("cannot tell the operating system user: {e}"))?,
        };
        let dbname = pick("dbname", "PGDATABASE").unwrap_or_else(|| user.clone());
        let sslmode: SslMode = pick("sslmode", "PGSSLMODE")
            .as_deref()
            .unwrap_or("prefer")
            .parse()?;
        let home = env("HOME").map(PathBuf::from);
        let sslrootcert = match pick("sslrootcert", "PGSSLROOTCERT") {
            Some(path) => Some(expand_home(&path, home.as_deref())),
            None => home
                .as_ref()
                .map(|h| h.join(".postgresql/root.crt"))
                .filter(|p| p.exists()),
        };
        let connect_timeout = match pick("connect_timeout", "PGCONNECT_TIMEOUT") {
            Some(t) => Some(t.parse::<u64>().map_err(|_| {
                anyhow::anyhow!("invalid connect_timeout `{t}`: want whole seconds")
            })?),
            None => None,
        };
        let mut password = pick("password", "PGPASSWORD");
        if password.is_none() {
            let passfile = pick("passfile", "PGPASSFILE")
                .map(|p| expand_home(&p, home.as_deref()))
                .or_else(|| home.as_ref().map(|h| h.join(".pgpass")));
            if let Some(file) = passfile {
                password = pgpass::lookup(&file, &hosts[0], ports[0], &dbname, &user)?;
            }
        }
        Ok(Resolved {
            hosts,
            ports,
            hostaddr: self.get("hostaddr").map(str::to_string),
            dbname,
            user,
            password,
            sslmode,
            sslrootcert,
            connect_timeout,
            application_name: pick("application_name", "PGAPPNAME")
                .unwrap_or_else(|| default_app.to_string()),
            options: pick("options", "PGOPTIONS"),
            keepalives: self.get("keepalives").map(str::to_string),
            keepalives_idle: self.get("keepalives_idle").map(str::to_string),
            target_session_attrs: pick("target_session_attrs", "PGTARGETSESSIONATTRS"),
            channel_binding: pick("channel_binding", "PGCHANNELBINDING"),
        })
    }
}

/// Prints the string in `key=value` form with the password masked.
impl fmt::Display for ConnStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for key in KEYS {
            if let Some(value) = self.get(key) {
                if !first {
                    f.write_str(" ")?;
                }
                first = false;
                if *key == "password" {
                    write!(f, "password={MASK}")?;
                } else {
                    write!(f, "{key}={}", quote_value(value))?;
                }
            }
        }
        Ok(())
    }
}

/// A connection string with every default filled in: what skyrep connects with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// Host names, IP addresses or unix socket directories (absolute paths), tried in order.
    pub hosts: Vec<String>,
    /// One port per host.
    pub ports: Vec<u16>,
    /// Numeric address to use instead of resolving the host name.
    pub hostaddr: Option<String>,
    /// Database name.
    pub dbname: String,
    /// Role to log in as.
    pub user: String,
    /// Password from the string, `PGPASSWORD` or the password file.
    pub password: Option<String>,
    /// How hard to insist on TLS and on checking the server's certificate.
    pub sslmode: SslMode,
    /// File of trusted root certificates (PEM).
    pub sslrootcert: Option<PathBuf>,
    /// Seconds to wait for a connection; none waits as long as the system does.
    pub connect_timeout: Option<u64>,
    /// `application_name` reported to the server.
    pub application_name: String,
    /// Command-line options for the server backend (`-c name=value`).
    pub options: Option<String>,
    /// `1`/`0`: TCP keepalives on or off.
    pub keepalives: Option<String>,
    /// Seconds of idleness before a keepalive is sent.
    pub keepalives_idle: Option<String>,
    /// `any` or `read-write`.
    pub target_session_attrs: Option<String>,
    /// `disable`, `prefer` or `require`.
    pub channel_binding: Option<String>,
}

impl Resolved {
    /// Where this connects, for messages: `host=H port=P dbname=D user=U` (no password).
    pub fn describe(&self) -> String {
        let hosts = self.hosts.join(",");
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        format!(
            "host={} port={} dbname={} user={}",
            quote_value(&hosts),
            ports.join(","),
            quote_value(&self.dbname),
            quote_value(&self.user)
        )
    }
}

/// libpq's default host on Debian-style systems: the first socket directory that exists,
/// else `localhost`.
fn default_host() -> String {
    ["/var/run/postgresql", "/tmp"]
        .iter()
        .find(|dir| Path::new(dir).is_dir())
        .map_or_else(|| "localhost".to_string(), |dir| dir.to_string())
}

fn parse_ports(spec: Option<&str>, hosts: usize) -> Result<Vec<u16>> {
    let Some(spec) = spec else {
        return Ok(vec![5432; hosts]);
    };
    let mut ports = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let port = if part.is_empty() {
            5432
        } else {
            match part.parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => bail!("invalid port `{part}`"),
            }
        };
        ports.push(port);
    }
    match ports.len() {
        1 => Ok(vec![ports[0]; hosts]),
        n if n == hosts => Ok(ports),
        n => bail!("{n} ports given for {hosts} hosts"),
    }
}

fn expand_home(path: &str, home: Option<&Path>) -> PathBuf {
    match (path.strip_prefix('~'), home) {
        (Some(rest), Some(home)) if rest.is_empty() || rest.starts_with('/') => {
            home.join(rest.trim_start_matches('/'))
        }
        _ => PathBuf::from(path),
    }
}

fn check_key(key: &str) -> Result<()> {
    if KEYS.contains(&key) {
        Ok(())
    } else if UNSUPPORTED_KEYS.contains(&key) {
        bail!("connection option `{key}` is not supported by skyrep")
    } else {
        bail!("unknown connection option `{key}`")
    }
}

/// Quotes a value for a `key=value` string when it needs it.
fn quote_value(value: &str) -> String {
    if !value.is_empty() && !value.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return value.to_string();
    }
    let mut out = String::from("'");
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// Splits `key = value key2='quoted value'` the way libpq does.
fn parse_key_values(text: &str) -> Result<Vec<(String, String)>> {
    let chars: Vec<char> = text.chars().collect();
    let mut params = Vec::new();
    let mut i = 0;
    loop {
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() {
            return Ok(params);
        }
        let mut key = String::new();
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            key.push(chars[i]);
            i += 1;
        }
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            bail!("missing `=` after `{key}` in connection string");
        }
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            loop {
                match chars.get(i) {
                    None => bail!("unterminated quoted value for `{key}` in connection string"),
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if i + 1 < chars.len() => {
                        value.push(chars[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
        }
        params.push((key, value));
    }
}

/// Splits `postgresql://user:password@host1:port1,host2/dbname?key=value` into parameters.
fn parse_uri(uri: &str) -> Result<Vec<(String, String)>> {
    let rest = uri
        .strip_prefix("postgresql://")
        .or_else(|| uri.strip_prefix("postgres://"))
        .unwrap_or(uri);
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };
    let mut params = Vec::new();
    let hostlist = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !user.is_empty() {
                params.push(("user".to_string(), percent_decode(user, "user name")?));
            }
            if let Some(password) = password {
                params.push((
                    "password".to_string(),
                    percent_decode(password, "password")?,
                ));
            }
            hosts
        }
        None => authority,
    };
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for spec in hostlist.split(',') {
        let (host, port) = split_host_port(spec)?;
        hosts.push(percent_decode(host, "host")?);
        ports.push(port.to_string());
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        params.push(("host".to_string(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        params.push(("port".to_string(), ports.join(",")));
    }
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        params.push(("dbname".to_string(), percent_decode(path, "database name")?));
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("missing `=` in URI query parameter `{}`", pair);
        };
        let key = percent_decode(key, "query parameter")?;
        let what = if key == "password" {
            "password"
        } else {
            "query parameter"
        };
        params.push((key, percent_decode(value, what)?));
    }
    Ok(params)
}

/// `host:port`, `[::1]:port` or a bare host.
fn split_host_port(spec: &str) -> Result<(&str, &str)> {
    if let Some(rest) = spec.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            bail!("unterminated `[` in URI host `{spec}`");
        };
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, port)),
            None if after.is_empty() => Ok((host, "")),
            None => bail!("unexpected `{after}` after `]` in URI host"),
        };
    }
    Ok(spec.split_once(':').unwrap_or((spec, "")))
}

/// Decodes `%XX` escapes. `what` names the part for the error (never the text of a password).
fn percent_decode(text: &str, what: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                bail!("invalid percent-encoding in URI {what}");
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| anyhow::anyhow!("URI {what} is not valid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn pairs(conn: &ConnStr) -> Vec<(&str, &str)> {
        conn.params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn key_values_with_spaces_and_quotes() {
        let c =
            ConnStr::parse(r"dbname =  producer port = 5432 host='my host' password='a \'b\' \\c'")
                .unwrap();
        assert_eq!(
            pairs(&c),
            vec![
                ("dbname", "producer"),
                ("port", "5432"),
                ("host", "my host"),
                ("password", r"a 'b' \c"),
            ]
        );
    }

    #[test]
    fn empty_value_at_end_as_in_old_londiste_configs() {
        let c = ConnStr::parse("dbname=provider port=6000 host=").unwrap();
        assert_eq!(c.get("host"), Some(""));
        let r = c.resolve(&no_env, "skyrep/t").unwrap();
        assert_eq!(r.ports, vec![6000]);
        assert!(!r.hosts[0].is_empty());
    }

    #[test]
    fn key_value_errors() {
        let err = ConnStr::parse("host").unwrap_err().to_string();
        assert_eq!(err, "missing `=` after `host` in connection string");
        let err = ConnStr::parse("password='abc").unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
        assert!(!err.contains("abc"), "{err}");
        let err = ConnStr::parse("hots=x").unwrap_err().to_string();
        assert_eq!(err, "unknown connection option `hots`");
        let err = ConnStr::parse("sslcert=/x").unwrap_err().to_string();
        assert!(err.contains("not supported"), "{err}");
    }

    #[test]
    fn uri_with_percent_encoding_ipv6_and_query() {
        let c = ConnStr::parse(
            "postgresql://app%40corp:p%3As%20s@[::1]:6543,db2/my%20db?sslmode=require&application_name=x",
        )
        .unwrap();
        assert_eq!(
            pairs(&c),
            vec![
                ("user", "app@corp"),
                ("password", "p:s s"),
                ("host", "::1,db2"),
                ("port", "6543,"),
                ("dbname", "my db"),
                ("sslmode", "require"),
                ("application_name", "x"),
            ]
        );
        let r = c.resolve(&no_env, "skyrep/t").unwrap();
        assert_eq!(r.ports, vec![6543, 5432]);
    }

    #[test]
    fn uri_socket_dir_and_bare_forms() {
        let c = ConnStr::parse("postgres://%2Fvar%2Frun%2Fpostgresql/shop").unwrap();
        assert_eq!(c.get("host"), Some("/var/run/postgresql"));
        assert_eq!(c.get("dbname"), Some("shop"));
        let c = ConnStr::parse("postgresql://").unwrap();
        assert_eq!(pairs(&c), vec![]);
        let c = ConnStr::parse("postgresql:///db?host=/tmp&port=5433").unwrap();
        assert_eq!(c.get("host"), Some("/tmp"));
        assert_eq!(c.get("port"), Some("5433"));
        let err = ConnStr::parse("postgresql://u:p%zz@h/db")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "invalid percent-encoding in URI password");
    }

    #[test]
    fn environment_defaults_and_explicit_values_win() {
        let env = |var: &str| -> Option<String> {
            match var {
                "PGHOST" => Some("envhost".into()),
                "PGPORT" => Some("7777".into()),
                "PGUSER" => Some("envuser".into()),
                "PGDATABASE" => Some("envdb".into()),
                "PGPASSWORD" => Some("envpw".into()),
                "PGSSLMODE" => Some("require".into()),
                _ => None,
            }
        };
        let r = ConnStr::parse("")
            .unwrap()
            .resolve(&env, "skyrep/job")
            .unwrap();
        assert_eq!(r.hosts, vec!["envhost"]);
        assert_eq!(r.ports, vec![7777]);
        assert_eq!(r.user, "envuser");
        assert_eq!(r.dbname, "envdb");
        assert_eq!(r.password.as_deref(), Some("envpw"));
        assert_eq!(r.sslmode, SslMode::Require);
        assert_eq!(r.application_name, "skyrep/job");
        let r = ConnStr::parse("host=h port=1 user=u dbname=d password=p sslmode=disable")
            .unwrap()
            .resolve(&env, "skyrep/job")
            .unwrap();
        assert_eq!(
            (
                r.hosts[0].as_str(),
                r.ports[0],
                r.user.as_str(),
                r.dbname.as_str()
            ),
            ("h", 1, "u", "d")
        );
        assert_eq!(r.password.as_deref(), Some("p"));
        assert_eq!(r.sslmode, SslMode::Disable);
    }

    #[test]
    fn dbname_defaults_to_user_and_bad_values_are_refused() {
        let r = ConnStr::parse("user=alice")
            .unwrap()
            .resolve(&no_env, "a")
            .unwrap();
        assert_eq!(r.dbname, "alice");
        let bad = |s: &str| {
            ConnStr::parse(s)
                .unwrap()
                .resolve(&no_env, "a")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(bad("port=abc"), "invalid port `abc`");
        assert_eq!(bad("host=a,b port=1,2,3"), "3 ports given for 2 hosts");
        assert!(bad("sslmode=maybe").contains("sslmode"));
        assert!(bad("connect_timeout=soon").contains("connect_timeout"));
    }

    #[test]
    fn display_masks_the_password_and_quotes() {
        let c = ConnStr::parse("host='a b' password=secret dbname=x").unwrap();
        assert_eq!(c.to_string(), "host='a b' dbname=x password=***");
        let r = c.resolve(&no_env, "a").unwrap();
        assert!(!r.describe().contains("secret"));
        assert!(
            r.describe()
                .starts_with("host='a b' port=5432 dbname=x user=")
        );
    }
}
