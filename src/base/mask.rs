//! The one place that hides passwords.
//!
//! Every log line, error message and printed connection string passes through
//! [`mask_secrets`], so a password given in a connection string (`password=...`, quoted or not,
//! or the `user:password@` part of a URI) never reaches a terminal, a log file or syslog.

use std::borrow::Cow;

/// What a hidden password is replaced with.
pub const MASK: &str = "***";

/// Returns `text` with every password in it replaced by `***`.
///
/// Recognises `password=VALUE` (any case, spaces around `=`, `'quoted \' values'`, and
/// `&`-terminated URI query parameters) and `scheme://user:PASSWORD@host` URIs.
pub fn mask_secrets(text: &str) -> Cow<'_, str> {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("password") && !lower.contains("://") {
        return Cow::Borrowed(text);
    }
    let masked = mask_uri_userinfo(&mask_password_params(text));
    Cow::Owned(masked)
}

/// Replaces the value after each `password=` (key=value strings and URI query parameters).
fn mask_password_params(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let Some(found) = find_ci(&text[i..], "password") else {
            out.push_str(&text[i..]);
            break;
        };
        let key_end = i + found + "password".len();
        let mut j = key_end;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j >= bytes.len() || bytes[j] != b'=' {
            out.push_str(&text[i..key_end]);
            i = key_end;
            continue;
        }
        j += 1;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        let in_uri_query = i + found > 0 && matches!(bytes[i + found - 1], b'?' | b'&');
        let value_end = if j < bytes.len() && bytes[j] == b'\'' {
            quoted_end(bytes, j)
        } else {
            let mut k = j;
            while k < bytes.len()
                && !bytes[k].is_ascii_whitespace()
                && !(in_uri_query && bytes[k] == b'&')
            {
                if bytes[k] == b'\\' {
                    k += 1;
                }
                k += 1;
            }
            k.min(bytes.len())
        };
        out.push_str(&text[i..key_end]);
        out.push('=');
        out.push_str(MASK);
        i = value_end;
    }
    out
}

/// Index just past the closing quote of a `'...'` value starting at `start` (or the end).
fn quoted_end(bytes: &[u8], start: usize) -> usize {
    let mut k = start + 1;
    while k < bytes.len() {
        match bytes[k] {
            b'\\' => k += 2,
            b'\'' => return k + 1,
            _ => k += 1,
        }
    }
    bytes.len()
}

/// Replaces the password in `scheme://user:password@host`.
fn mask_uri_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let authority_start = pos + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_len = after
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_len];
        match authority.rfind('@') {
            Some(at) if authority[..at].contains(':') => {
                let colon = authority[..at].find(':').unwrap_or(at);
                out.push_str(&authority[..colon + 1]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_len..];
    }
    out.push_str(rest);
    out
}

/// Byte offset of `needle` (ASCII, lower case) in `hay`, ignoring ASCII case.
fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    let hay = hay.as_bytes();
    let needle = needle.as_bytes();
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::mask_secrets;

    #[test]
    fn masks_key_value_passwords() {
        assert_eq!(
            mask_secrets("host=db password=s3cret user=x"),
            "host=db password=*** user=x"
        );
        assert_eq!(mask_secrets("password = s3cret"), "password=***");
        assert_eq!(
            mask_secrets(r"password='it\'s a secret' dbname=x"),
            "password=*** dbname=x"
        );
        assert_eq!(mask_secrets("PGPASSWORD=abc ls"), "PGPASSWORD=*** ls");
        assert_eq!(mask_secrets("password='unterminated"), "password=***");
    }

    #[test]
    fn masks_uri_passwords() {
        assert_eq!(
            mask_secrets("postgresql://app:p%40ss@h:5432/db?sslmode=require"),
            "postgresql://app:***@h:5432/db?sslmode=require"
        );
        assert_eq!(
            mask_secrets("postgres://h/db?password=abc&sslmode=require"),
            "postgres://h/db?password=***&sslmode=require"
        );
        assert_eq!(
            mask_secrets("postgresql://app@h/db"),
            "postgresql://app@h/db"
        );
    }

    #[test]
    fn leaves_other_text_alone() {
        assert_eq!(mask_secrets("no secrets here"), "no secrets here");
        assert_eq!(
            mask_secrets("the password is wrong"),
            "the password is wrong"
        );
    }
}
