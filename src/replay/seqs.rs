//! Sequences whose values follow the provider, subscriber side: `subscriber add-seq |
//! remove-seq | seqs`, and the replay thread's step that moves the subscriber's sequences
//! forward before each batch commits ([`Follower`]). The registries of both sides and the
//! provider's commands are [`crate::capture::seqs`].
//!
//! A subscriber sequence is only ever moved forward (in the direction of its increment),
//! never back: values handed out on the subscriber by hand stay handed out. The exception is
//! a provider sequence with `CYCLE`, whose values come round again by design: the subscriber
//! follows it exactly, back to the start when it wraps around.

use anyhow::{Context, Result, anyhow, bail};
use postgres::types::Type;
use postgres::{Client, Transaction};

use crate::base::names::TableName;
use crate::base::output;
use crate::capture::seqs::{
    Side, check_registry, check_sequence, parse_seqs, provider_seqs, unregister,
};
use crate::db::to_regclass;
use crate::replay::subscriber::{self, Subscriber};

impl Subscriber {
    /// `subscriber add-seq`: follows `seqs`; each must be added on the provider for this
    /// queue and be a sequence here. All are added, or none.
    pub fn add_seqs(&mut self, seqs: &[String]) -> Result<()> {
        let names = parse_seqs(seqs, "subscriber add-seq")?;
        let queue = self.queue.clone();
        let theirs = {
            let provider = self.provider()?;
            check_registry(provider, Side::Provider)?;
            provider_seqs(provider, &queue)?
        };
        let mut tx = self.subscriber.transaction()?;
        subscriber::check_installed(&mut tx)?;
        check_registry(&mut tx, Side::Subscriber)?;
        for seq in &names {
            if !theirs.contains(&seq.qualified()) {
                bail!(
                    "sequence {seq} is not added on the provider for queue {queue}: \
                     run `provider add-seq {seq}` first"
                );
            }
            check_sequence(&mut tx, seq).map_err(|e| anyhow!("on the subscriber: {e:#}"))?;
        }
        for seq in &names {
            let added = tx.execute(
                "insert into londiste.subscriber_seqs (queue_name, seq_name) values ($1, $2) \
                 on conflict (queue_name, seq_name) do nothing",
                &[&queue, &seq.qualified()],
            )?;
            if added == 0 {
                log::info!("{}: sequence {seq} was already added", self.dbname);
            } else {
                log::info!("{}: added sequence {seq}", self.dbname);
            }
        }
        tx.commit().context("committing subscriber add-seq")
    }

    /// `subscriber remove-seq`: stops following `seqs`; their values are left alone.
    pub fn remove_seqs(&mut self, seqs: &[String]) -> Result<()> {
        let names = parse_seqs(seqs, "subscriber remove-seq")?;
        let mut tx = self.subscriber.transaction()?;
        subscriber::check_installed(&mut tx)?;
        unregister(&mut tx, Side::Subscriber, &self.queue, &names, &self.dbname)?;
        tx.commit().context("committing subscriber remove-seq")
    }

    /// `subscriber seqs`: one line per followed sequence, `NAME  LAST_VALUE`, the value `-`
    /// when none has been handed out and `missing` when the sequence is gone here; marked
    /// `(not on the provider)` when the provider no longer has it added for the queue.
    pub fn seqs(&mut self) -> Result<()> {
        subscriber::check_installed(&mut self.subscriber)?;
        check_registry(&mut self.subscriber, Side::Subscriber)?;
        let rows = self.subscriber.query(
            "select r.seq_name, \
                    case when s.sequencename is null then 'missing' \
                         else coalesce(s.last_value::text, '-') end \
             from londiste.subscriber_seqs r \
             left join pg_catalog.pg_sequences s \
               on s.schemaname = split_part(r.seq_name, '.', 1) \
              and s.sequencename = substr(r.seq_name, length(split_part(r.seq_name, '.', 1)) + 2) \
             where r.queue_name = $1 order by 1",
            &[&self.queue],
        )?;
        let rows: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if rows.is_empty() {
            return Ok(());
        }
        let queue = self.queue.clone();
        let theirs = {
            let provider = self.provider()?;
            if to_regclass(provider, "londiste.provider_seqs")? {
                provider_seqs(provider, &queue)?
            } else {
                Vec::new()
            }
        };
        let width = rows
            .iter()
            .map(|(n, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        for (name, value) in rows {
            let mark = if theirs.contains(&name) {
                ""
            } else {
                "  (not on the provider)"
            };
            output::line(&format!("{name:width$}  {value}{mark}"))?;
        }
        Ok(())
    }
}

/// Where a sequence stands, as `setval` sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The last value handed out (or, when not `is_called`, the next one).
    pub last_value: i64,
    /// Whether `last_value` has been handed out.
    pub is_called: bool,
    /// The sequence's increment (negative for a descending sequence).
    pub increment: i64,
}

impl Position {
    /// The value `nextval` returns next, bounds aside (i128: no overflow).
    pub fn next(&self) -> i128 {
        if self.is_called {
            i128::from(self.last_value) + i128::from(self.increment)
        } else {
            i128::from(self.last_value)
        }
    }
}

/// The `setval(value, is_called)` that moves `local` (bounded by `min`..=`max`) forward so
/// that its next value is at least `target_next`, or None if it is there already. "Forward"
/// follows the sign of the local increment; a target past the local bound leaves the
/// sequence at that bound, used up, as the provider's is.
pub fn catch_up(local: Position, min: i64, max: i64, target_next: i128) -> Option<(i64, bool)> {
    let ascending = local.increment > 0;
    let behind = if ascending {
        local.next() < target_next
    } else {
        local.next() > target_next
    };
    if !behind {
        return None;
    }
    let within = |v: i128| (i128::from(min)..=i128::from(max)).contains(&v);
    let called = target_next - i128::from(local.increment);
    let set = if within(called) {
        (called as i64, true)
    } else if within(target_next) {
        (target_next as i64, false)
    } else {
        (if ascending { max } else { min }, true)
    };
    (set != (local.last_value, local.is_called)).then_some(set)
}

/// The `setval(value, is_called)` that makes `local`'s next value `target_next` exactly, in
/// either direction (bounded as in [`catch_up`]), or None if it is so already: how the
/// subscriber follows a provider sequence that cycles.
pub fn follow(local: Position, min: i64, max: i64, target_next: i128) -> Option<(i64, bool)> {
    if local.next() == target_next {
        return None;
    }
    let within = |v: i128| (i128::from(min)..=i128::from(max)).contains(&v);
    let called = target_next - i128::from(local.increment);
    if within(called) {
        Some((called as i64, true))
    } else if within(target_next) {
        Some((target_next as i64, false))
    } else {
        catch_up(local, min, max, target_next)
    }
}

/// The replay thread's view of the followed sequences: before each batch it reads the
/// provider's values ([`Follower::read`]), and inside the batch's subscriber transaction
/// moves the subscriber's sequences up to them ([`Targets::apply`]).
///
/// Reading after the batch's tick was taken is enough: sequences only move forward (or wrap
/// around), so the subscriber is never behind the provider's values at the last applied tick.
pub struct Follower {
    queue: String,
    /// `londiste.subscriber_seqs` exists (looked for again while it does not).
    installed: bool,
}

/// The provider's next value of each followed sequence, read before a batch, and whether the
/// sequence cycles there.
pub struct Targets(Vec<(TableName, i128, bool)>);

impl Follower {
    /// A follower for the sequences of `queue`.
    pub fn new(queue: &str) -> Follower {
        Follower {
            queue: queue.to_string(),
            installed: false,
        }
    }

    /// Reads the list of followed sequences from the subscriber and, when there are any,
    /// the provider's values of those still added there, in one query.
    pub fn read(&mut self, provider: &mut Client, subscriber: &mut Client) -> Result<Targets> {
        if !self.installed {
            self.installed = to_regclass(subscriber, "londiste.subscriber_seqs")?;
            if !self.installed {
                return Ok(Targets(Vec::new()));
            }
        }
        let followed: Vec<String> = subscriber
            // Typed: one round trip, as it runs before every batch.
            .query_typed(
                "select seq_name from londiste.subscriber_seqs where queue_name = $1",
                &[(&self.queue, Type::TEXT)],
            )
            .context("reading the subscriber's sequences")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if followed.is_empty() {
            return Ok(Targets(Vec::new()));
        }
        // last_value is null until the sequence hands out a value: then it starts at
        // start_value.
        let rows = provider
            .query(
                "select p.seq_name, s.last_value, s.start_value, s.increment_by, s.cycle, \
                        s.min_value, s.max_value \
                 from londiste.provider_seqs p \
                 join pg_catalog.pg_sequences s \
                   on s.schemaname = split_part(p.seq_name, '.', 1) \
                  and s.sequencename = \
                      substr(p.seq_name, length(split_part(p.seq_name, '.', 1)) + 2) \
                 where p.queue_name = $1 and p.seq_name = any($2)",
                &[&self.queue, &followed],
            )
            .context("reading the provider's sequences")?;
        let mut targets = Vec::with_capacity(rows.len());
        for row in rows {
            let name: String = row.get(0);
            let (last, start, increment, cycle, min, max): (Option<i64>, i64, i64, bool, i64, i64) = (
                row.get(1),
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
            );
            let next = match last {
                Some(last) => i128::from(last) + i128::from(increment),
                None => i128::from(start),
            };
            // Past its bound, a cycling sequence starts again at the other one.
            let next = match (cycle, next > i128::from(max), next < i128::from(min)) {
                (true, true, _) => i128::from(min),
                (true, _, true) => i128::from(max),
                _ => next,
            };
            targets.push((TableName::from_qualified(&name)?, next, cycle));
        }
        Ok(Targets(targets))
    }
}

impl Targets {
    /// Moves each subscriber sequence forward to the provider's next value (never back), or
    /// to exactly that value if the provider's cycles. `setval` is not undone by a rollback,
    /// which is harmless: the next batch sets the values again.
    pub fn apply(&self, tx: &mut Transaction<'_>) -> Result<()> {
        for (seq, target, cycle) in &self.0 {
            let row = tx
                .query_one(
                    &format!(
                        "select s.last_value, s.is_called, q.seqincrement, q.seqmin, q.seqmax \
                         from {} s, pg_catalog.pg_sequence q \
                         where q.seqrelid = $1::text::regclass",
                        seq.quoted()
                    ),
                    &[&seq.quoted()],
                )
                .with_context(|| format!("reading sequence {seq} on the subscriber"))?;
            let local = Position {
                last_value: row.get(0),
                is_called: row.get(1),
                increment: row.get(2),
            };
            let (min, max) = (row.get(3), row.get(4));
            let set = if *cycle {
                follow(local, min, max, *target)
            } else {
                catch_up(local, min, max, *target)
            };
            if let Some((value, is_called)) = set {
                tx.query_one(
                    "select pg_catalog.setval($1::text::regclass, $2, $3)",
                    &[&seq.quoted(), &value, &is_called],
                )
                .with_context(|| format!("moving sequence {seq} on the subscriber"))?;
                log::debug!("sequence {seq} moved to {value} (is_called {is_called})");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(last_value: i64, is_called: bool, increment: i64) -> Position {
        Position {
            last_value,
            is_called,
            increment,
        }
    }

    #[test]
    fn ascending_sequences_only_move_forward() {
        // Behind: set so that nextval returns the provider's next value.
        assert_eq!(catch_up(at(5, true, 1), 1, i64::MAX, 11), Some((10, true)));
        assert_eq!(catch_up(at(1, false, 1), 1, i64::MAX, 2), Some((1, true)));
        // Level or ahead: left alone.
        assert_eq!(catch_up(at(10, true, 1), 1, i64::MAX, 11), None);
        assert_eq!(catch_up(at(50, true, 1), 1, i64::MAX, 11), None);
        assert_eq!(catch_up(at(11, false, 1), 1, i64::MAX, 11), None);
        // Steps of 10.
        assert_eq!(catch_up(at(5, true, 10), 5, 1000, 105), Some((95, true)));
        // The provider is past the local minimum's reach: the value itself, not called.
        assert_eq!(catch_up(at(1, false, 10), 1, 1000, 5), Some((5, false)));
    }

    #[test]
    fn descending_sequences_move_down() {
        assert_eq!(
            catch_up(at(-5, true, -1), i64::MIN, -1, -11),
            Some((-10, true))
        );
        assert_eq!(
            catch_up(at(-1, false, -1), i64::MIN, -1, -2),
            Some((-1, true))
        );
        assert_eq!(catch_up(at(-20, true, -1), i64::MIN, -1, -11), None);
        assert_eq!(catch_up(at(-10, true, -1), i64::MIN, -1, -11), None);
    }

    #[test]
    fn a_cycling_sequence_is_followed_back_when_it_wraps_around() {
        // Level: nothing to do; ahead (wrapped on the provider): back to its value.
        assert_eq!(follow(at(10, true, 1), 1, 100, 11), None);
        assert_eq!(follow(at(11, false, 1), 1, 100, 11), None);
        assert_eq!(follow(at(99, true, 1), 1, 100, 3), Some((2, true)));
        assert_eq!(follow(at(100, true, 1), 1, 100, 1), Some((1, false)));
        assert_eq!(follow(at(5, true, 1), 1, 100, 50), Some((49, true)));
        assert_eq!(follow(at(-99, true, -1), -100, -1, -1), Some((-1, false)));
    }

    #[test]
    fn a_used_up_provider_sequence_uses_up_the_local_one() {
        let top = i128::from(i64::MAX) + 1;
        assert_eq!(
            catch_up(at(7, true, 1), 1, i64::MAX, top),
            Some((i64::MAX, true))
        );
        assert_eq!(catch_up(at(i64::MAX, true, 1), 1, i64::MAX, top + 5), None);
        assert_eq!(catch_up(at(3, true, 1), 1, 100, 500), Some((100, true)));
        assert_eq!(
            catch_up(at(-3, true, -1), -100, -1, -500),
            Some((-100, true))
        );
    }
}
