//! Command output on stdout.
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
