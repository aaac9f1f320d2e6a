//! Checks of a command's arguments and flags that every group of commands shares.

use anyhow::Result;

use crate::base::error::usage;

/// Fails unless every flag given to `name` is in `allowed`.
pub fn check_flags(name: &str, flags: &[&str], allowed: &[&str]) -> Result<()> {
    match flags.iter().find(|f| !allowed.contains(f)) {
        Some(flag) => Err(usage(format!("`{name}` does not take --{flag}"))),
        None => Ok(()),
    }
}

/// `command`, if `name` was given no arguments.
pub fn no_args<T>(name: &str, args: &[String], command: T) -> Result<T> {
    match args.first() {
        Some(extra) => Err(usage(format!(
            "`{name}` takes no arguments, found `{extra}`"
        ))),
        None => Ok(command),
    }
}

/// The tables given to `name`: at least one, unless `all` (then none).
pub fn some_tables(name: &str, tables: Vec<String>, all: bool) -> Result<Vec<String>> {
    if tables.is_empty() && !all {
        return Err(usage(format!("`{name}` needs at least one table")));
    }
    if all && !tables.is_empty() {
        return Err(usage(format!(
            "`{name}` takes either tables or --all, not both"
        )));
    }
    Ok(tables)
}

/// The sequences given to `name`: at least one.
pub fn some_seqs(name: &str, seqs: Vec<String>) -> Result<Vec<String>> {
    if seqs.is_empty() {
        return Err(usage(format!("`{name}` needs at least one sequence")));
    }
    Ok(seqs)
}
