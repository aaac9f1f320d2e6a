//! The libpq password file (`~/.pgpass`, `passfile=`, `PGPASSFILE`).
//!
//! Each line is `host:port:database:user:password`; `*` matches anything, `\:` and `\\` escape,
//! `#` starts a comment line. The first matching line wins. As libpq does, a file that group
//! or others may read is ignored with a warning, and a unix socket host matches `localhost`.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

/// Whether `host` names a unix socket directory rather than a network host.
pub fn is_socket_dir(host: &str) -> bool {
    host.starts_with('/') || host.starts_with('@')
}

/// The password for this connection from `file`, if the file exists and a line matches.
pub fn lookup(
    file: &Path,
    host: &str,
    port: u16,
    dbname: &str,
    user: &str,
) -> Result<Option<String>> {
    let meta = match fs::metadata(file) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read password file {}", file.display()));
        }
    };
    if !meta.is_file() {
        log::warn!(
            "password file {} is not a plain file; ignored",
            file.display()
        );
        return Ok(None);
    }
    if meta.permissions().mode() & 0o077 != 0 {
        log::warn!(
            "password file {} may be read by group or others; ignored (chmod 0600 it)",
            file.display()
        );
        return Ok(None);
    }
    let text = fs::read_to_string(file)
        .with_context(|| format!("cannot read password file {}", file.display()))?;
    let host = if host.is_empty() || is_socket_dir(host) {
        "localhost"
    } else {
        host
    };
    let port = port.to_string();
    let wanted = [host, port.as_str(), dbname, user];
    Ok(text.lines().find_map(|line| match_line(line, &wanted)))
}

/// The password on `line` if its four fields match `wanted`.
fn match_line(line: &str, wanted: &[&str; 4]) -> Option<String> {
    if line.trim_start().starts_with('#') || line.trim().is_empty() {
        return None;
    }
    let fields = split_fields(line);
    if fields.len() < 5 {
        return None;
    }
    let matches = fields[..4]
        .iter()
        .zip(wanted)
        .all(|(field, want)| field == "*" || field == want);
    // A password may itself contain unescaped colons: everything after the fourth field.
    matches.then(|| fields[4..].join(":"))
}

/// Splits on unescaped `:` and removes the escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("never empty").push(next);
                }
            }
            ':' => fields.push(String::new()),
            _ => fields.last_mut().expect("never empty").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("skyrep-pgpass-{}-{name}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn first_matching_line_with_wildcards_and_escapes() {
        let dir = scratch("match");
        let file = write(
            &dir,
            "pgpass",
            "# comment\n\
             otherhost:*:*:*:nope\n\
             db1:5432:shop:app:p\\:w\\\\d\n\
             *:*:*:app:fallback:with:colons\n",
            0o600,
        );
        assert_eq!(
            lookup(&file, "db1", 5432, "shop", "app")
                .unwrap()
                .as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(
            lookup(&file, "db2", 5432, "shop", "app")
                .unwrap()
                .as_deref(),
            Some("fallback:with:colons")
        );
        assert_eq!(lookup(&file, "db2", 5432, "shop", "other").unwrap(), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn socket_directory_matches_localhost() {
        let dir = scratch("socket");
        let file = write(&dir, "pgpass", "localhost:5433:*:app:sock\n", 0o600);
        assert_eq!(
            lookup(&file, "/var/run/postgresql", 5433, "x", "app")
                .unwrap()
                .as_deref(),
            Some("sock")
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn readable_by_others_is_ignored_and_missing_is_none() {
        let dir = scratch("perm");
        let file = write(&dir, "pgpass", "*:*:*:*:pw\n", 0o644);
        assert_eq!(lookup(&file, "h", 5432, "d", "u").unwrap(), None);
        assert_eq!(
            lookup(&dir.join("absent"), "h", 5432, "d", "u").unwrap(),
            None
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
