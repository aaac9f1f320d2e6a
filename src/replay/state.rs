//! Per-table merge states on the subscriber (SPEC §4) and who may change each.
//!
//! | state | owner | meaning |
//! | --- | --- | --- |
//! | new (NULL) | replay | registered, waiting for the copy thread |
//! | `in-copy` | copy | table emptied and COPY running |
//! | `catching-up` | copy | copied; applying the events the copy's snapshot did not see |
//! | `wanna-sync:TICK` | replay | the copy is at TICK; replay takes over once it is there too |
//! | `do-sync:TICK` | copy | replay waits at TICK; the copy catches up to it and hands over |
//! | `ok` | replay | in sync; replay applies its events |
//!
//! Only the owner of a state moves a table out of it, so a thread that dies anywhere leaves a
//! state that the next start continues from.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, bail};
use postgres::GenericClient;
use postgres::types::Type;

use crate::base::names::TableName;

/// A table's merge state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeState {
    /// Registered, not copied yet.
    New,
    /// The copy thread is copying it.
    InCopy,
    /// Copied; the copy thread applies the events its snapshot missed.
    CatchingUp,
    /// The copy has applied everything up to this tick and waits for replay.
    WannaSync(i64),
    /// Replay waits at this tick for the copy to reach it.
    DoSync(i64),
    /// Replicated by the replay thread.
    Ok,
}

impl MergeState {
    /// Reads the `merge_state` column (NULL is [`MergeState::New`]).
    pub fn from_column(value: Option<&str>) -> Result<MergeState> {
        value.map_or(Ok(MergeState::New), str::parse)
    }

    /// The `merge_state` column value (NULL for [`MergeState::New`]).
    pub fn to_column(self) -> Option<String> {
        (self != MergeState::New).then(|| self.to_string())
    }
}

impl FromStr for MergeState {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<MergeState> {
        let tick = |rest: &str| -> Result<i64> {
            rest.parse()
                .map_err(|_| anyhow::anyhow!("bad merge state `{text}`"))
        };
        Ok(match text {
            "" | "new" => MergeState::New,
            "in-copy" => MergeState::InCopy,
            "catching-up" => MergeState::CatchingUp,
            "ok" => MergeState::Ok,
            _ => match text.split_once(':') {
                Some(("wanna-sync", rest)) => MergeState::WannaSync(tick(rest)?),
                Some(("do-sync", rest)) => MergeState::DoSync(tick(rest)?),
                _ => bail!("bad merge state `{text}`"),
            },
        })
    }
}

impl fmt::Display for MergeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MergeState::New => f.write_str("new"),
            MergeState::InCopy => f.write_str("in-copy"),
            MergeState::CatchingUp => f.write_str("catching-up"),
            MergeState::WannaSync(tick) => write!(f, "wanna-sync:{tick}"),
            MergeState::DoSync(tick) => write!(f, "do-sync:{tick}"),
            MergeState::Ok => f.write_str("ok"),
        }
    }
}

/// A table registered on the subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriberTable {
    /// The provider's table (what events name in `ev_extra1`).
    pub table: TableName,
    /// Where its rows go here.
    pub dest: TableName,
    /// Its merge state.
    pub state: MergeState,
    /// The copy's snapshot, while catching up.
    pub snapshot: Option<String>,
    /// Copy without emptying the table first.
    pub skip_truncate: bool,
    /// `--copy-condition`: only the provider's rows for which this SQL is true are here.
    pub condition: Option<String>,
}

/// The tables registered for `queue`, in name order.
pub fn load_tables(client: &mut impl GenericClient, queue: &str) -> Result<Vec<SubscriberTable>> {
    let rows = client
        // Typed: one round trip; replay reads the tables before every batch.
        .query_typed(
            "select table_name, dest_table, merge_state, custom_snapshot, skip_truncate, \
                    copy_condition \
             from londiste.subscriber_tables where queue_name = $1 order by table_name",
            &[(&queue, Type::TEXT)],
        )
        .context("reading the subscriber's tables")?;
    rows.iter()
        .map(|row| {
            Ok(SubscriberTable {
                table: TableName::from_qualified(row.get(0))?,
                dest: TableName::from_qualified(row.get(1))?,
                state: MergeState::from_column(row.get(2))?,
                snapshot: row.get(3),
                skip_truncate: row.get(4),
                condition: row.get(5),
            })
        })
        .collect()
}

/// Moves `table` from state `from` to `to`; fails if the state was not `from`, which would
/// mean another thread owns it. `snapshot` sets the copy's snapshot; without one it is kept
/// while the copy is unfinished and cleared otherwise.
pub fn set_state(
    client: &mut impl GenericClient,
    queue: &str,
    table: &TableName,
    from: MergeState,
    to: MergeState,
    snapshot: Option<&str>,
) -> Result<()> {
    let copy_unfinished = matches!(
        to,
        MergeState::CatchingUp | MergeState::WannaSync(_) | MergeState::DoSync(_)
    );
    let changed = client
        .execute(
            "update londiste.subscriber_tables \
             set merge_state = $3, custom_snapshot = coalesce($4, case when $6 then custom_snapshot end) \
             where queue_name = $1 and table_name = $2 and merge_state is not distinct from $5",
            &[
                &queue,
                &table.qualified(),
                &to.to_column(),
                &snapshot,
                &from.to_column(),
                &copy_unfinished,
            ],
        )
        .with_context(|| format!("setting {table} to {to}"))?;
    if changed != 1 {
        bail!("{table} was not in state {from} when moving it to {to}");
    }
    log::info!("{table}: {from} -> {to}");
    Ok(())
}

/// Fails unless `table` is still in state `expected`, and keeps its state row locked until
/// the transaction ends, so that nobody moves it before the caller commits.
pub fn check_state(
    client: &mut impl GenericClient,
    queue: &str,
    table: &TableName,
    expected: MergeState,
) -> Result<()> {
    let now = client
        .query_opt(
            "select merge_state from londiste.subscriber_tables \
             where queue_name = $1 and table_name = $2 for update",
            &[&queue, &table.qualified()],
        )
        .with_context(|| format!("reading the state of {table}"))?
        .map(|r| MergeState::from_column(r.get(0)))
        .transpose()?;
    match now {
        Some(now) if now == expected => Ok(()),
        Some(now) => bail!("{table} is in state {now} now, no longer {expected}"),
        None => bail!("{table} is no longer registered"),
    }
}

/// Sends every table whose copy is under way back to `new`, to be copied again from the
/// start; returns their names. Replay does this when it runs a script of `provider execute`:
/// a copy taken before the script must not be caught up across it, and one taken after it
/// already holds what the script did.
pub fn restart_copies(client: &mut impl GenericClient, queue: &str) -> Result<Vec<TableName>> {
    client
        .query(
            "update londiste.subscriber_tables set merge_state = null, custom_snapshot = null \
             where queue_name = $1 and merge_state is not null and merge_state <> 'ok' \
             returning table_name",
            &[&queue],
        )
        .context("sending the tables being copied back to be copied again")?
        .iter()
        .map(|r| TableName::from_qualified(r.get(0)))
        .collect()
}

/// The last tick applied here for `consumer`, locked until the transaction ends.
pub fn applied_tick(
    client: &mut impl GenericClient,
    queue: &str,
    consumer: &str,
) -> Result<Option<i64>> {
    Ok(client
        // Typed: one round trip (this and record_tick run for every batch).
        .query_typed_opt(
            "select last_tick_id from londiste.applied_ticks \
             where queue_name = $1 and consumer_name = $2 for update",
            &[(&queue, Type::TEXT), (&consumer, Type::TEXT)],
        )
        .context("reading the applied tick")?
        .map(|row| row.get(0)))
}

/// Records `tick` as applied for `consumer` (in the transaction that applied it).
pub fn record_tick(
    client: &mut impl GenericClient,
    queue: &str,
    consumer: &str,
    tick: i64,
) -> Result<()> {
    client
        .query_typed(
            "insert into londiste.applied_ticks (queue_name, consumer_name, last_tick_id) values ($1, $2, $3) \
             on conflict (queue_name, consumer_name) \
             do update set last_tick_id = excluded.last_tick_id, applied_at = now()",
            &[(&queue, Type::TEXT), (&consumer, Type::TEXT), (&tick, Type::INT8)],
        )
        .context("recording the applied tick")?;
    Ok(())
}

/// Forgets `consumer`'s applied tick (a copy consumer that has handed over).
pub fn forget_tick(client: &mut impl GenericClient, queue: &str, consumer: &str) -> Result<()> {
    client
        .execute(
            "delete from londiste.applied_ticks where queue_name = $1 and consumer_name = $2",
            &[&queue, &consumer],
        )
        .context("forgetting the applied tick")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MergeState;

    #[test]
    fn states_round_trip() {
        for state in [
            MergeState::InCopy,
            MergeState::CatchingUp,
            MergeState::WannaSync(42),
            MergeState::DoSync(7),
            MergeState::Ok,
        ] {
            assert_eq!(
                MergeState::from_column(state.to_column().as_deref()).unwrap(),
                state
            );
        }
        assert_eq!(MergeState::from_column(None).unwrap(), MergeState::New);
        assert_eq!(MergeState::New.to_column(), None);
        assert!("do-sync:x".parse::<MergeState>().is_err());
        assert!("copying".parse::<MergeState>().is_err());
    }
}
