//! Command output on stdout, and durations as it shows them.
//!
//! A closed pipe (`skyrep --ini | head -3`) ends the output quietly instead of panicking, as
//! command-line tools are expected to behave.

use std::io::{ErrorKind, Write};

use anyhow::{Context, Result};

/// Writes `text` as it is to stdout.
pub fn text(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Writes `line` and a newline to stdout.
pub fn line(line: &str) -> Result<()> {
    text(&format!("{line}\n"))
}

/// A duration as Londiste shows it: `1.2s` under a minute, else `2h10m42s` / `5m3s`.
pub fn seconds(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "?".to_string();
    };
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let whole = s.round() as u64;
    let (h, m, s) = (whole / 3600, whole / 60 % 60, whole % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::seconds;

    #[test]
    fn durations_read_like_londiste() {
        assert_eq!(seconds(None), "?");
        assert_eq!(seconds(Some(0.04)), "0.0s");
        assert_eq!(seconds(Some(18.26)), "18.3s");
        assert_eq!(seconds(Some(303.0)), "5m3s");
        assert_eq!(seconds(Some(7842.4)), "2h10m42s");
    }
}
