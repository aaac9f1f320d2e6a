//! Errors and exit codes.
//!
//! Errors travel as [`anyhow::Error`] with context added at each layer. An error that is the
//! user's to fix before anything can run (bad option, bad config) carries a [`UsageError`]
//! somewhere in its chain; that is what turns exit code 1 into 2 (SPEC §2).

use std::fmt;
use std::time::Duration;

use crate::base::mask::mask_secrets;

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

/// The pause before the first retry after a failure: a dropped connection is often back at
/// once.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// The failures in a row of a loop that retries (a thread's session, a ticker): an error is
/// logged once however often it repeats, and the recovery is logged too.
#[derive(Debug, Default)]
pub struct Failures {
    count: u32,
    last: Option<String>,
}

impl Failures {
    /// Logs `line` (at debug level when it repeats the last failure's) and returns how long
    /// to pause before trying again: briefly after the first failure, then `pause`.
    pub fn failed(&mut self, line: String, pause: Duration) -> Duration {
        self.count += 1;
        if self.last.as_deref() == Some(line.as_str()) {
            log::debug!("{line} ({} times in a row)", self.count);
        } else {
            log::error!("{line}");
        }
        self.last = Some(line);
        if self.count == 1 {
            FIRST_RETRY.min(pause)
        } else {
            pause
        }
    }

    /// The work goes on again: logs so, as `who`, if it had failed.
    pub fn recovered(&mut self, who: &str) {
        if self.count > 0 {
            log::info!("{who}: working again after {} failed attempts", self.count);
            *self = Failures::default();
        }
    }
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

#[cfg(test)]
mod failure_tests {
    use super::*;

    #[test]
    fn retries_fast_once_then_at_the_given_pause() {
        let mut failures = Failures::default();
        let pause = Duration::from_secs(20);
        assert_eq!(failures.failed("a: down".into(), pause), FIRST_RETRY);
        assert_eq!(failures.failed("a: down".into(), pause), pause);
        assert_eq!(failures.failed("a: other".into(), pause), pause);
        failures.recovered("a");
        assert_eq!(failures.failed("a: down".into(), pause), FIRST_RETRY);
        let short = Duration::from_millis(300);
        assert_eq!(Failures::default().failed("b".into(), short), short);
    }
}
