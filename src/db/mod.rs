//! Talking to PostgreSQL: libpq-style connection strings ([`connstr`]), the password file
//! ([`pgpass`]), TLS ([`tls`]) and, in this file, opening connections. Uses `base`.
//!
//! Opening database connections from resolved connection strings.
//!
//! Each thread owns its own [`postgres::Client`] (every client carries its own small runtime),
//! so this module only builds them; it never shares them.

pub mod connstr;
pub mod pgpass;
pub mod tls;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use postgres::config::{ChannelBinding, TargetSessionAttrs};
use postgres::error::{Severity, SqlState};
use postgres::{CancelToken, Client, GenericClient};

use connstr::{Resolved, is_socket_dir};

/// The settings every skyrep session reads and writes values in, whatever the defaults of
/// the database, the role or the connection string: the text of a date, an interval, a
/// float, a bytea or a money value means the same on both sides, in the initial copy, in
/// events and in the statements that apply them. They are the forms skyrep's capture
/// triggers print values in (`pgq.skyrep_capture_fixed_settings`).
/// `synchronous_commit` goes from `off` to `on` (the other values all flush locally and are
/// kept): replay finishes a batch on the provider only after its subscriber commit, which
/// must then be on disk, whatever the server's, database's or role's default.
/// `row_security = off` makes a row-level security policy that would hide rows from
/// skyrep's role an error instead of a silent skip (in a copy, in replay, in `compare`).
pub const SESSION_SETTINGS: &str = "set datestyle = 'ISO, MDY'; set intervalstyle = 'postgres'; \
     set extra_float_digits = 3; set bytea_output = 'hex'; set timezone = 'UTC'; \
     set lc_monetary = 'C'; set standard_conforming_strings = on; \
     set client_encoding = 'UTF8'; set row_security = off; \
     select pg_catalog.set_config('synchronous_commit', 'on', false) \
     where pg_catalog.current_setting('synchronous_commit') = 'off'";

/// Connects to `conn`, called `name` in messages (`provider_db`, `subscriber_db`, ...), and
/// fixes the session's [`SESSION_SETTINGS`].
///
/// The error names the database, host, port, database name and user, never the password.
pub fn connect(name: &str, conn: &Resolved) -> Result<Client> {
    let what = || format!("cannot connect to {name} ({})", conn.describe());
    let config = build_config(name, conn).with_context(what)?;
    let tls = tls::connector(conn.sslmode, conn.sslrootcert.as_deref()).with_context(what)?;
    log::debug!("{name}: connecting to {}", conn.describe());
    let mut client = config.connect(tls).with_context(what)?;
    client
        .batch_execute(SESSION_SETTINGS)
        .with_context(|| format!("{name}: fixing the session's settings"))?;
    Ok(client)
}

/// Asks the server `conn` to cancel whatever the session of `token` runs now; for stopping a
/// long statement from another thread.
pub fn cancel(token: &CancelToken, conn: &Resolved) -> Result<()> {
    let tls = tls::connector(conn.sslmode, conn.sslrootcert.as_deref())?;
    token
        .cancel_query(tls)
        .with_context(|| format!("sending a cancel request to {}", conn.describe()))
}

fn build_config(name: &str, conn: &Resolved) -> Result<postgres::Config> {
    let mut config = postgres::Config::new();
    for (host, port) in conn.hosts.iter().zip(&conn.ports) {
        if is_socket_dir(host) {
            config.host_path(Path::new(host));
        } else {
            config.host(host);
        }
        config.port(*port);
    }
    if let Some(addrs) = &conn.hostaddr {
        for addr in addrs.split(',') {
            let ip: IpAddr = addr
                .trim()
                .parse()
                .map_err(|_| anyhow!("invalid hostaddr `{addr}`"))?;
            config.hostaddr(ip);
        }
    }
    // As in libpq, TLS is never used over unix sockets, whatever sslmode says.
    let ssl_mode = if conn.hosts.iter().all(|h| is_socket_dir(h)) {
        postgres::config::SslMode::Disable
    } else {
        conn.sslmode.protocol_mode()
    };
    config
        .dbname(&conn.dbname)
        .user(&conn.user)
        .application_name(&conn.application_name)
        .ssl_mode(ssl_mode);
    if let Some(password) = &conn.password {
        config.password(password);
    }
    if let Some(seconds) = conn.connect_timeout.filter(|s| *s > 0) {
        config.connect_timeout(Duration::from_secs(seconds));
    }
    if let Some(options) = &conn.options {
        config.options(options);
    }
    if let Some(on) = &conn.keepalives {
        config.keepalives(on != "0");
    }
    if let Some(idle) = &conn.keepalives_idle {
        let seconds: u64 = idle
            .parse()
            .map_err(|_| anyhow!("invalid keepalives_idle `{idle}`"))?;
        config.keepalives_idle(Duration::from_secs(seconds));
    }
    if let Some(attrs) = &conn.target_session_attrs {
        config.target_session_attrs(match attrs.as_str() {
            "any" => TargetSessionAttrs::Any,
            "read-write" => TargetSessionAttrs::ReadWrite,
            "read-only" => TargetSessionAttrs::ReadOnly,
            other => return Err(anyhow!("unsupported target_session_attrs `{other}`")),
        });
    }
    if let Some(binding) = &conn.channel_binding {
        config.channel_binding(match binding.as_str() {
            "disable" => ChannelBinding::Disable,
            "prefer" => ChannelBinding::Prefer,
            "require" => ChannelBinding::Require,
            other => return Err(anyhow!("invalid channel_binding `{other}`")),
        });
    }
    let name = name.to_string();
    config.notice_callback(move |notice| {
        let level = notice_level(notice.parsed_severity(), notice.code());
        log::log!(level, "{name}: {}: {}", notice.severity(), notice.message());
    });
    Ok(config)
}

/// The SQLSTATE of the database error in `err`'s chain, if there is one.
pub fn sql_state(err: &anyhow::Error) -> Option<&SqlState> {
    err.chain()
        .find_map(|e| e.downcast_ref::<postgres::Error>())
        .and_then(postgres::Error::code)
}

/// The log level of a server notice: a WARNING is one, except those that only say a
/// transaction command found no transaction (or one already) where skyrep ends or starts
/// one to be sure; NOTICEs (`... does not exist, skipping`) and the rest are debug output.
fn notice_level(severity: Option<Severity>, code: &SqlState) -> log::Level {
    match severity {
        Some(Severity::Warning)
            if *code != SqlState::NO_ACTIVE_SQL_TRANSACTION
                && *code != SqlState::ACTIVE_SQL_TRANSACTION =>
        {
            log::Level::Warn
        }
        _ => log::Level::Debug,
    }
}

/// Whether relation `name` exists.
pub fn to_regclass(client: &mut impl GenericClient, name: &str) -> Result<bool> {
    Ok(client
        .query_one("select to_regclass($1) is not null", &[&name])?
        .get(0))
}
