//! How far each running copy is: the copy thread records it, `subscriber tables` and `status`
//! show it.
//!
//! A copy writes its rows in one subscriber transaction that nobody else sees until it
//! commits, so its progress goes through a connection of its own: while the COPY runs, a
//! reporter thread writes the rows and bytes moved so far to `londiste.copy_progress` about
//! once a second, and deletes the row when the attempt ends (committed or rolled back; the
//! next attempt starts a fresh one). The total is the provider's estimate, taken from its
//! statistics when the copy starts: an upper bound where a copy condition leaves rows out,
//! and none where the table was never analyzed (then rows and bytes are shown without a
//! percentage or an ETA).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, bounded};
use postgres::{Client, GenericClient};
use serde_json::{Value, json};

use crate::base::error::one_line;
use crate::base::names::TableName;
use crate::base::output::seconds;
use crate::db::{self, to_regclass};
use crate::replay::job::Job;

/// How often the reporter writes a running copy's progress.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Progress not written for this long is shown with its age: the copy's process is gone, or
/// its reporter cannot write.
const STALE_AFTER: f64 = 10.0;

/// The provider's idea of how big a table is, read when its copy starts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Estimate {
    /// Rows, as of the last ANALYZE or VACUUM; None where the table has no statistics
    /// (never analyzed) or looks empty.
    pub rows: Option<i64>,
    /// The table's size on disk (with TOAST) as of then, for scale: COPY's text is not the
    /// same size.
    pub bytes: Option<i64>,
    /// A copy condition leaves rows out: `rows` is at most what the copy moves.
    pub upper_bound: bool,
}

impl Estimate {
    /// Reads the estimate of the provider's `table`; `conditional` when a copy condition
    /// filters it. From the catalog only, so that it takes no lock: a table locked by
    /// someone else holds up the COPY, not this.
    pub fn read(
        provider: &mut impl GenericClient,
        table: &TableName,
        conditional: bool,
    ) -> Result<Estimate> {
        // reltuples is -1 before the first ANALYZE (PostgreSQL 14 and later), 0 before it on
        // older servers.
        let row = provider
            .query_opt(
                "select case when c.reltuples > 0 then c.reltuples::int8 end, \
                        case when c.relpages > 0 then \
                            (c.relpages::int8 + coalesce(t.relpages, 0)) \
                            * pg_catalog.current_setting('block_size')::int8 end \
                 from pg_catalog.pg_class c \
                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                 left join pg_catalog.pg_class t on t.oid = c.reltoastrelid \
                 where n.nspname = $1 and c.relname = $2",
                &[&table.schema, &table.name],
            )
            .with_context(|| format!("reading the provider's estimate of {table}"))?;
        Ok(Estimate {
            rows: row.as_ref().and_then(|r| r.get(0)),
            bytes: row.as_ref().and_then(|r| r.get(1)),
            upper_bound: conditional,
        })
    }

    /// The share of the estimate that `rows` is, in percent; None without an estimate or
    /// once `rows` has passed it (the estimate was low).
    pub fn percent(&self, rows: i64) -> Option<f64> {
        let total = self.rows.filter(|&t| t > 0 && rows <= t)?;
        Some(100.0 * rows as f64 / total as f64)
    }

    /// Seconds until the estimate is reached at the rate since the start (`rows` in
    /// `elapsed` seconds); None without an estimate, before the first row, or past it.
    pub fn eta(&self, rows: i64, elapsed: f64) -> Option<f64> {
        let total = self
            .rows
            .filter(|&t| rows > 0 && rows <= t && elapsed > 0.0)?;
        Some((total - rows) as f64 * elapsed / rows as f64)
    }

    /// `N of about TOTAL rows (P%), X MB, ETA D` for a copy at `rows` and `bytes` after
    /// `elapsed` seconds; what the estimate cannot tell is left out, and with a copy condition
    /// every figure says it is a bound.
    pub fn summary(&self, rows: i64, bytes: i64, elapsed: f64) -> String {
        let (of, at_least, at_most) = if self.upper_bound {
            ("of at most", "at least ", "at most ")
        } else {
            ("of about", "", "")
        };
        let rows_text = match (self.rows, self.percent(rows)) {
            (Some(total), Some(p)) => format!("{rows} {of} {total} rows ({at_least}{p:.1}%)"),
            (Some(total), None) => format!("{rows} rows (past the estimate of {total})"),
            (None, _) => format!("{rows} rows (no estimate: the provider's table is not analyzed)"),
        };
        let mut text = format!("{rows_text}, {}", megabytes(bytes));
        if let Some(eta) = self.eta(rows, elapsed) {
            text.push_str(&format!(", ETA {at_most}{}", seconds(Some(eta))));
        }
        text
    }
}

/// Bytes as `X.Y MB`.
pub fn megabytes(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The running totals of one copy, counted by the copying thread, read by the reporter.
#[derive(Debug, Default)]
pub struct Counters {
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    /// Counts `rows` more rows in `bytes` more bytes.
    pub fn add(&self, rows: u64, bytes: u64) {
        self.rows.fetch_add(rows, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (rows, bytes) so far.
    pub fn get(&self) -> (i64, i64) {
        let n = |a: &AtomicU64| i64::try_from(a.load(Ordering::Relaxed)).unwrap_or(i64::MAX);
        (n(&self.rows), n(&self.bytes))
    }
}

/// Runs `work` (the copy of `table`, counting into the counters it is given) while a
/// reporter thread records its progress for `status`; the record goes when `work` returns.
/// Progress that cannot be recorded is only logged: the copy goes on without it.
pub fn reporting<T>(
    job: &Job,
    table: &TableName,
    estimate: &Estimate,
    work: impl FnOnce(&Counters) -> T,
) -> T {
    let counters = Counters::default();
    let (done, finished) = bounded::<()>(0);
    std::thread::scope(|scope| {
        let counters = &counters;
        scope.spawn(move || {
            if let Err(e) = report(job, table, estimate, counters, &finished) {
                log::warn!(
                    "{table}: copy progress not shown by `status`: {}",
                    one_line(&e)
                );
            }
        });
        let result = work(counters);
        drop(done);
        result
    })
}

/// The reporter: writes the progress once a second until `finished` disconnects, then
/// deletes it.
fn report(
    job: &Job,
    table: &TableName,
    estimate: &Estimate,
    counters: &Counters,
    finished: &Receiver<()>,
) -> Result<()> {
    let mut client = db::connect("subscriber_db", &job.subscriber)?;
    if !to_regclass(&mut client, "londiste.copy_progress")? {
        // Wait for the copy all the same: returning now would look like its end.
        let _ = finished.recv();
        anyhow::bail!("londiste.copy_progress is missing: run `subscriber install` to upgrade");
    }
    // Progress needs no durability: never wait for a disk flush on its account.
    client.batch_execute("set synchronous_commit = off")?;
    let name = table.qualified();
    client
        .execute(
            "insert into londiste.copy_progress (queue_name, table_name, estimate_rows, \
                 estimate_bytes, estimate_upper_bound) \
             values ($1, $2, $3, $4, $5) \
             on conflict (queue_name, table_name) do update \
             set copied_rows = 0, copied_bytes = 0, estimate_rows = excluded.estimate_rows, \
                 estimate_bytes = excluded.estimate_bytes, \
                 estimate_upper_bound = excluded.estimate_upper_bound, \
                 started = now(), updated = now()",
            &[
                &job.queue,
                &name,
                &estimate.rows,
                &estimate.bytes,
                &estimate.upper_bound,
            ],
        )
        .context("recording the copy's start")?;
    let written = loop {
        match finished.recv_timeout(REPORT_EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => break Ok(()),
        }
        let (rows, bytes) = counters.get();
        if let Err(e) = client.execute(
            "update londiste.copy_progress set copied_rows = $3, copied_bytes = $4, \
                 updated = now() \
             where queue_name = $1 and table_name = $2",
            &[&job.queue, &name, &rows, &bytes],
        ) {
            break Err(anyhow::Error::from(e).context("recording the copy's progress"));
        }
    };
    // After a failed write, the record goes when the copy ends all the same.
    let _ = finished.recv();
    let cleared = clear(&mut client, &job.queue, table);
    written.and(cleared)
}

/// Deletes the progress of `table`'s copy.
fn clear(client: &mut Client, queue: &str, table: &TableName) -> Result<()> {
    client
        .execute(
            "delete from londiste.copy_progress where queue_name = $1 and table_name = $2",
            &[&queue, &table.qualified()],
        )
        .context("deleting the copy's progress")?;
    Ok(())
}

/// A running copy's progress as recorded.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The provider's schema.table.
    pub table: String,
    /// Rows sent to the subscriber so far.
    pub rows: i64,
    /// Bytes of COPY text sent so far.
    pub bytes: i64,
    /// What the provider said when the copy started.
    pub estimate: Estimate,
    /// Seconds from the start to the last record.
    pub elapsed: f64,
    /// Seconds since the last record.
    pub age: f64,
}

impl Progress {
    /// The progress of every table of `queue` in state `in-copy` (none where
    /// `londiste.copy_progress` is not installed yet), by table name.
    pub fn load(client: &mut impl GenericClient, queue: &str) -> Result<Vec<Progress>> {
        if !to_regclass(client, "londiste.copy_progress")? {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                "select p.table_name, p.copied_rows, p.copied_bytes, p.estimate_rows, \
                        p.estimate_bytes, p.estimate_upper_bound, \
                        extract(epoch from p.updated - p.started)::float8, \
                        extract(epoch from now() - p.updated)::float8 \
                 from londiste.copy_progress p \
                 join londiste.subscriber_tables t using (queue_name, table_name) \
                 where p.queue_name = $1 and t.merge_state = 'in-copy' \
                 order by p.table_name",
                &[&queue],
            )
            .context("reading the progress of the copies")?;
        Ok(rows
            .iter()
            .map(|r| Progress {
                table: r.get(0),
                rows: r.get(1),
                bytes: r.get(2),
                estimate: Estimate {
                    rows: r.get(3),
                    bytes: r.get(4),
                    upper_bound: r.get(5),
                },
                elapsed: r.get(6),
                age: r.get::<_, f64>(7).max(0.0),
            })
            .collect())
    }

    /// Whether the record is old: nobody has written it lately.
    fn stale(&self) -> bool {
        self.age > STALE_AFTER
    }

    /// One line for `status`: the summary, and the record's age when it is stale.
    pub fn text(&self) -> String {
        let mut text = self.estimate.summary(self.rows, self.bytes, self.elapsed);
        if self.stale() {
            text.push_str(&format!("; not updated for {}", seconds(Some(self.age))));
        }
        text
    }

    /// `key=value` words for `subscriber tables`; a figure bounded by a copy condition's
    /// estimate says so in its key (`estimated_rows_at_most`, `percent_at_least`,
    /// `eta_at_most`).
    pub fn attrs(&self) -> Vec<String> {
        let bound = |plain: &str, bounded: &str| {
            if self.estimate.upper_bound {
                bounded.to_string()
            } else {
                plain.to_string()
            }
        };
        let mut attrs = vec![
            format!("copied_rows={}", self.rows),
            format!("copied_bytes={}", self.bytes),
        ];
        if let Some(total) = self.estimate.rows {
            attrs.push(format!(
                "{}={total}",
                bound("estimated_rows", "estimated_rows_at_most")
            ));
        }
        if let Some(p) = self.estimate.percent(self.rows) {
            attrs.push(format!("{}={p:.1}", bound("percent", "percent_at_least")));
        }
        if let Some(eta) = self.estimate.eta(self.rows, self.elapsed) {
            attrs.push(format!(
                "{}={}",
                bound("eta", "eta_at_most"),
                seconds(Some(eta))
            ));
        }
        if self.stale() {
            attrs.push(format!("not_updated_for={}", seconds(Some(self.age))));
        }
        attrs
    }

    /// The progress as a JSON object for `status --json`.
    pub fn json(&self) -> Value {
        let tenth = |x: f64| (x * 10.0).round() / 10.0;
        json!({
            "table": self.table,
            "rows": self.rows,
            "bytes": self.bytes,
            "estimate_rows": self.estimate.rows,
            "estimate_bytes": self.estimate.bytes,
            "estimate_is_upper_bound": self.estimate.upper_bound,
            "percent": self.estimate.percent(self.rows).map(tenth),
            "eta": self.estimate.eta(self.rows, self.elapsed).map(tenth),
            "elapsed": tenth(self.elapsed),
            "updated_age": tenth(self.age),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Estimate;

    #[test]
    fn percent_and_eta_only_where_the_estimate_tells() {
        let about = Estimate {
            rows: Some(1000),
            bytes: Some(65536),
            upper_bound: false,
        };
        assert_eq!(about.percent(250), Some(25.0));
        // 250 rows in 10 s: the other 750 take 30 s.
        assert_eq!(about.eta(250, 10.0), Some(30.0));
        assert_eq!(about.eta(0, 10.0), None);
        assert_eq!(about.eta(250, 0.0), None);
        assert_eq!(
            about.summary(250, 1_500_000, 10.0),
            "250 of about 1000 rows (25.0%), 1.5 MB, ETA 30.0s"
        );
        // An estimate that turned out low gives neither.
        assert_eq!(about.percent(1001), None);
        assert_eq!(about.eta(1001, 10.0), None);
        assert_eq!(
            about.summary(1001, 0, 10.0),
            "1001 rows (past the estimate of 1000), 0.0 MB"
        );
        let at_most = Estimate {
            upper_bound: true,
            ..about.clone()
        };
        assert_eq!(
            at_most.summary(250, 0, 10.0),
            "250 of at most 1000 rows (at least 25.0%), 0.0 MB, ETA at most 30.0s"
        );
        let none = Estimate::default();
        assert_eq!(none.percent(5), None);
        assert_eq!(none.eta(5, 1.0), None);
        assert_eq!(
            none.summary(5, 0, 1.0),
            "5 rows (no estimate: the provider's table is not analyzed), 0.0 MB"
        );
    }
}
