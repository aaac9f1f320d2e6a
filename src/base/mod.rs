//! Plumbing every role uses and that knows nothing of replication: errors and exit codes
//! ([`error`]), table names as users type them and quoted for SQL ([`names`]), command
//! output on stdout and durations as it shows them ([`output`]) and the one place that
//! hides passwords ([`mask`]).
//!
//! Uses no other folder.

pub mod error;
pub mod mask;
pub mod names;
pub mod output;
