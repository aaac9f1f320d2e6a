//! What replay does with the queue's events that are not row changes: the scripts of
//! `provider execute` (`EXECUTE`) and table removals (`londiste.remove-table`). Both run in
//! the batch's subscriber transaction, at their place among the row changes, so they happen
//! exactly once with the batch.
//!
//! Nothing in the queue is trusted: whoever may insert events could queue either. Each is
//! acted on only when the provider's registries vouch for it ([`vouch`]): a script only if
//! the provider's record of executed scripts holds it with the same text, a removal only
//! if the provider recorded it or no longer has the table.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use postgres::{Client, Transaction};

use crate::base::names::TableName;
use crate::capture::provider::{EXECUTE_EVENT, REMOVE_TABLE_EVENT};
use crate::capture::script::{Script, script_record};
use crate::db;
use crate::queue::consumer::Event;
use crate::replay::aside;
use crate::replay::state::{MergeState, load_tables, restart_copies};
use crate::replay::subscriber;

/// Runs the script of an `EXECUTE` event, with the names of tables in `dests` (by the
/// provider's `schema.table`) mapped to their local names, and records it in
/// `londiste.executed_scripts`. Tables being copied are emptied before it ([`empty_copies`])
/// and sent back to be copied again from the start after it ([`restart_copies`]). A script
/// marked by `subscriber skip-execute`, or run here before, is passed over; any other runs
/// only once `vouch` (see [`vouch`]) accepts it. A failing script fails the batch: replay
/// stops there.
pub fn run_script(
    tx: &mut Transaction<'_>,
    queue: &str,
    event: &Event,
    dests: &HashMap<String, TableName>,
    vouch: &mut dyn FnMut(&Event) -> Result<()>,
) -> Result<()> {
    let name = event.extra1.as_deref().unwrap_or("(unnamed script)");
    let text = event.data.as_deref().unwrap_or("");
    let md5: String = tx.query_one("select md5($1)", &[&text])?.get(0);
    match script_record(tx, queue, name, "subscriber install")? {
        Some(record) if record.status == "skip" => {
            tx.execute(
                "update londiste.executed_scripts set status = 'skipped', sql_md5 = $3, \
                 executed_at = now() where queue_name = $1 and file_name = $2",
                &[&queue, &name, &md5],
            )?;
            log::warn!("{name}: skipped as asked (subscriber skip-execute); not run here");
            return Ok(());
        }
        Some(record) if record.md5.as_ref() == Some(&md5) => {
            log::info!(
                "{name}: the same script ran here at {}; not run again",
                record.at
            );
            return Ok(());
        }
        _ => {}
    }
    vouch(event)?;
    let skip_hint =
        || format!("fix the subscriber, or pass over it with `subscriber skip-execute {name}`");
    let script = Script::parse(text)
        .and_then(Script::without_transaction_control)
        .with_context(|| format!("{name}: cannot run this script; {}", skip_hint()))?;
    let (sql, mapped) = script.mapped(dests);
    for (from, to) in &mapped {
        log::info!("{name}: {from} is {to} here");
    }
    log::info!("{name}: executing ({} statements)", script.len());
    // Emptied before the script runs (waiting for a COPY still running; the tables stay locked
    // until the batch commits), sent back to `new` after it.
    for table in empty_copies(tx, queue)? {
        log::info!("{table}: emptied before {name}, to be copied again after it");
    }
    tx.batch_execute(&sql)
        .with_context(|| format!("{name} failed on the subscriber; {}", skip_hint()))?;
    // Settings the script made (a search path, a timeout) must not outlive it in replay's
    // session; the fixed settings and the batch's own come back.
    tx.batch_execute(&format!(
        "reset all; {}; set local skyrep.replay = on",
        db::SESSION_SETTINGS
    ))?;
    for table in restart_copies(tx, queue)? {
        log::warn!(
            "{table}: {name} ran while it was being copied; it is copied again from the start"
        );
    }
    tx.execute(
        "insert into londiste.executed_scripts (queue_name, file_name, sql_md5, status) \
         values ($1, $2, $3, 'done') \
         on conflict (queue_name, file_name) do update \
         set sql_md5 = excluded.sql_md5, status = 'done', executed_at = now()",
        &[&queue, &name, &md5],
    )?;
    log::info!("{name}: executed");
    Ok(())
}

/// Empties the tables whose copy already holds rows (catching up, or waiting to hand over)
/// and returns their names; tables copied without emptying keep their rows. Replay does this
/// before it runs a script, whose tables are then sent back to be copied again
/// ([`restart_copies`]): such a copy may hold what the script does (an insert would meet its
/// own row), and whatever the script leaves in them is replaced by the new copy.
///
/// Every table being copied is locked first, which waits for a copy step still running on it
/// (a COPY commits its rows with the move to `catching-up`) and keeps the next from starting
/// until the batch commits; only then are the states read. Whatever joins an emptied table
/// by a foreign key is set aside again (normally nothing: a copy keeps them aside until it is
/// in sync, but a script may have added one).
fn empty_copies(tx: &mut Transaction<'_>, queue: &str) -> Result<Vec<TableName>> {
    let copying: Vec<String> = load_tables(tx, queue)?
        .iter()
        .filter(|t| !matches!(t.state, MergeState::New | MergeState::Ok) && !t.skip_truncate)
        .map(|t| format!("only {}", t.dest.quoted()))
        .collect();
    if copying.is_empty() {
        return Ok(Vec::new());
    }
    tx.batch_execute(&format!(
        "lock table {} in access exclusive mode",
        copying.join(", ")
    ))
    .context("locking the tables being copied")?;
    let holding: Vec<_> = load_tables(tx, queue)?
        .into_iter()
        .filter(|t| {
            matches!(
                t.state,
                MergeState::CatchingUp | MergeState::WannaSync(_) | MergeState::DoSync(_)
            ) && !t.skip_truncate
        })
        .collect();
    for t in &holding {
        aside::set_aside(tx, queue, &t.table, &t.dest)?;
        tx.batch_execute(&format!("truncate only {}", t.dest.quoted()))
            .with_context(|| format!("emptying {}", t.dest))?;
    }
    Ok(holding.into_iter().map(|t| t.dest).collect())
}

/// Unregisters the table a `londiste.remove-table` event names, if it is registered here and
/// `vouch` accepts the event; returns whether it was.
pub fn remove_table(
    tx: &mut Transaction<'_>,
    queue: &str,
    event: &Event,
    vouch: &mut dyn FnMut(&Event) -> Result<()>,
) -> Result<bool> {
    let Some(name) = event.data.as_deref() else {
        bail!("event {}: a table removal without a table name", event.id);
    };
    let table = TableName::from_qualified(name)
        .with_context(|| format!("event {}: table removal", event.id))?;
    vouch(event)?;
    let removed = subscriber::unregister_table(tx, queue, &table)?.is_some();
    if removed {
        log::info!("{table}: removed on the provider; no longer replicated here (its rows stay)");
    }
    Ok(removed)
}

/// Fails unless the provider's registries vouch for the control event `event` of `queue`
/// (`provider` is a connection of its own, outside the batch's transaction): an `EXECUTE`
/// must be in the provider's record of executed scripts with the same text; a
/// `londiste.remove-table` must be recorded by `provider remove` in the transaction that
/// queued it, or name a table the provider no longer has. The error names the event and
/// what did not match.
pub fn vouch(provider: &mut Client, queue: &str, event: &Event) -> Result<()> {
    let id = event.id;
    match event.ev_type.as_deref() {
        Some(EXECUTE_EVENT) => {
            let name = event.extra1.as_deref().unwrap_or("");
            let text = event.data.as_deref().unwrap_or("");
            let same: Option<bool> = provider
                .query_opt(
                    "select sql_md5 = md5($3) from londiste.executed_scripts \
                     where queue_name = $1 and file_name = $2 and status = 'done'",
                    &[&queue, &name, &text],
                )
                .context("reading the provider's record of executed scripts")?
                .map(|r| r.get(0));
            match same {
                Some(true) => Ok(()),
                found => bail!(
                    "event {id}: script {name} was not run by `provider execute` ({}): not run \
                     here. Whoever may insert events into queue {queue} queued it; pass over it \
                     with `subscriber skip-execute {name}`",
                    if found.is_some() {
                        "the provider ran a different text under that name"
                    } else {
                        "the provider's record of executed scripts does not hold it"
                    }
                ),
            }
        }
        Some(REMOVE_TABLE_EVENT) => {
            let table = event.data.as_deref().unwrap_or("");
            let vouched: bool = provider
                .query_one(
                    "select not exists (select 1 from londiste.provider_tables \
                                        where queue_name = $1 and table_name = $2) \
                            or exists (select 1 from londiste.removed_tables \
                                       where queue_name = $1 and table_name = $2 \
                                         and ev_txid = $3)",
                    &[&queue, &table, &event.txid],
                )
                .context(
                    "reading the provider's registry of tables (run `provider install` there to \
                     upgrade)",
                )?
                .get(0);
            if !vouched {
                bail!(
                    "event {id}: a removal of {table}, which the provider still replicates and \
                     did not remove in that transaction: not applied. Whoever may insert events \
                     into queue {queue} queued it"
                );
            }
            Ok(())
        }
        other => bail!(
            "event {id}: {} is not a control event skyrep queues",
            other.unwrap_or("(no type)")
        ),
    }
}
