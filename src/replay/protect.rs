//! The write guard on replicated tables: a statement trigger on each subscriber table that
//! refuses ordinary writes (`londiste.deny_write`). Replay's own session passes: in the
//! replica role the trigger does not fire; otherwise `skyrep.replay = on` lets through the
//! role that put the guard there (skyrep's subscriber role), its members and superusers.

use anyhow::{Context, Result};
use postgres::GenericClient;

use crate::base::names::{TableName, quote_ident, quote_literal};

/// Name of the trigger that refuses ordinary writes to a replicated table.
pub const DENY_TRIGGER: &str = "_skyrep_deny";

/// Puts (or puts again) the guard of `queue` on `dest`, for the session's role.
pub fn guard(tx: &mut impl GenericClient, dest: &TableName, queue: &str) -> Result<()> {
    let role: String = tx
        .query_one("select current_user::text", &[])
        .context("reading the subscriber's role")?
        .get(0);
    tx.batch_execute(&format!(
        "drop trigger if exists {trigger} on {table}; \
         create trigger {trigger} before insert or update or delete or truncate on {table} \
         for each statement execute function londiste.deny_write({queue}, {role})",
        trigger = quote_ident(DENY_TRIGGER),
        table = dest.quoted(),
        queue = quote_literal(queue),
        role = quote_literal(&role),
    ))
    .with_context(|| format!("protecting {dest} against ordinary writes"))
}

/// Takes the guard off `dest`, which must exist.
pub fn unguard(tx: &mut impl GenericClient, dest: &TableName) -> Result<()> {
    tx.batch_execute(&format!(
        "drop trigger if exists {} on {}",
        quote_ident(DENY_TRIGGER),
        dest.quoted()
    ))?;
    Ok(())
}
