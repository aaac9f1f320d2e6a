//! Errors and exit codes.
//!
//! Errors travel as [`anyhow::Error`] with context added at each layer. An error that is the
//! user's to fix before anything can run (bad option, bad config) carries a [`UsageError`]
//! somewhere in its chain; that is what turns exit code 1 into 2 (SPEC §2).

use std::fmt;

use crate::mask::mask_secrets;

/// The command ran and failed, or found a difference.
pub const EXIT_FAILED: u8 = 1;
/// Usage or config error: nothing was attempted.
pub const EXIT_USAGE: u8 = 2;

/// Marks an error as a usage or configuration problem (exit code 2).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// Builds a usage/config error (exit code 2) from a message.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(UsageError(msg.into()))
}

/// The exit code an error ends the process with.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_FAILED
    }
}

/// The whole cause chain on one line, passwords masked: `what failed: why: root cause`.
pub fn one_line(err: &anyhow::Error) -> String {
    let text = format!("{err:#}");
    let joined: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    mask_secrets(&joined.join(" ")).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn usage_errors_exit_2_even_under_context() {
        let err = Err::<(), _>(usage("bad key"))
            .context("loading x.ini")
            .unwrap_err();
        assert_eq!(exit_code(&err), EXIT_USAGE);
        assert_eq!(one_line(&err), "loading x.ini: bad key");
    }

    #[test]
    fn other_errors_exit_1_and_print_the_chain_on_one_line() {
        let io = std::io::Error::other("ERROR: boom\nDETAIL: more");
        let err = anyhow::Error::new(io).context("password=hunter2 rejected");
        assert_eq!(exit_code(&err), EXIT_FAILED);
        assert_eq!(
            one_line(&err),
            "password=*** rejected: ERROR: boom DETAIL: more"
        );
    }
}
