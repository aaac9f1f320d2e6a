//! `repair`: a row-by-row diff of each table at one point of the stream, written as the SQL
//! that makes the subscriber equal (`fix.JOB.SCHEMA.TABLE.sql` in `--dir`), and run with
//! `--apply`.
//!
//! A fix file is created new (`O_EXCL`), never through a symbolic link (`O_NOFOLLOW`), with
//! mode 0600: the rows in it are the table's data. A regular file of this user left at that
//! name by an earlier run is replaced; anything else there (a link, another user's file) is
//! an error and left alone.
//!
//! Both sides stream their rows sorted by the primary key's text in byte order (`COLLATE
//! "C"`, the same on every server), and the two streams are merged: memory stays flat
//! whatever the table size. The fix is one statement per line.

use std::cmp::Ordering;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::base::error::usage;
use crate::base::names::{TableName, quote_ident};
use crate::base::output;
use crate::config::Config;
use crate::replay::state::SubscriberTable;
use crate::replay::subscriber::columns;
use crate::verify::sync::Syncer;

/// `repair [TABLE...] [--apply] [--dir DIR]`: see the module doc. Fails when any table
/// differed (also after applying the fix).
pub fn repair(config: &Config, names: &[String], apply: bool, dir: &Path) -> Result<()> {
    let job = config.job_name()?;
    // Checked before any table is synced or compared.
    if !dir.is_dir() {
        return Err(usage(format!(
            "--dir {}: no such directory; create it or choose another",
            dir.display()
        )));
    }
    let mut syncer = Syncer::connect(config)?;
    let tables = syncer.tables(names)?;
    let mut differ = Vec::new();
    for table in &tables {
        let shape = Shape::of(&mut syncer.provider, &table.table)?;
        syncer.sync(table, apply)?;
        log::info!("Comparing {}", table.table);
        let file = dir.join(format!(
            "fix.{}.{}.{}.sql",
            file_safe(&job),
            file_safe(&table.dest.schema),
            file_safe(&table.dest.name)
        ));
        let result = diff_table(&mut syncer, table, &shape, apply, file);
        match result {
            Ok(diff) => {
                syncer
                    .finish()
                    .with_context(|| format!("repairing {}", table.dest))?;
                report(table, &diff, apply)?;
                if diff.total() > 0 {
                    differ.push(table.table.to_string());
                }
            }
            Err(err) => {
                syncer.rollback();
                return Err(err.context(format!("repairing {}", table.table)));
            }
        }
    }
    if !differ.is_empty() {
        bail!(
            "{} of {} tables differ{}: {}",
            differ.len(),
            tables.len(),
            if apply { " (fixed)" } else { "" },
            differ.join(", ")
        );
    }
    log::info!("{} tables equal", tables.len());
    Ok(())
}

fn report(table: &SubscriberTable, diff: &Diff, apply: bool) -> Result<()> {
    if diff.total() == 0 {
        return output::line(&format!("{}: equal", table.table));
    }
    output::line(&format!(
        "{}: {} rows differ ({} missing on the subscriber, {} changed, {} extra); fix {} {}",
        table.table,
        diff.total(),
        diff.inserts,
        diff.updates,
        diff.deletes,
        if apply {
            "applied, written to"
        } else {
            "written to"
        },
        diff.file.display()
    ))
}

/// The columns a diff reads, key columns first, as the provider has them.
struct Shape {
    /// Column names; the first `keys` are the primary key's, in key order.
    columns: Vec<String>,
    keys: usize,
}

impl Shape {
    fn of(provider: &mut Client, table: &TableName) -> Result<Shape> {
        let keys: Vec<String> = provider
            .query(
                "select a.attname::text from pg_catalog.pg_index i \
                 join pg_catalog.pg_attribute a on a.attrelid = i.indrelid \
                      and a.attnum = any (i.indkey::int2[]) \
                 where i.indrelid = $1::text::regclass and i.indisprimary \
                 order by pg_catalog.array_position(i.indkey::int2[], a.attnum)",
                &[&table.quoted()],
            )
            .with_context(|| format!("reading the primary key of {table}"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if keys.is_empty() {
            bail!("{table} has no primary key on the provider");
        }
        let mut names = keys.clone();
        for (name, _) in columns(provider, table)? {
            if !keys.contains(&name) {
                names.push(name);
            }
        }
        Ok(Shape {
            keys: keys.len(),
            columns: names,
        })
    }

    /// `COPY (SELECT ... ORDER BY ...) TO STDOUT` for `table`.
    fn copy_sql(&self, table: &TableName, condition: Option<&str>) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| quote_ident(c)).collect();
        let order: Vec<String> = cols[..self.keys]
            .iter()
            .map(|c| format!("({c})::text collate \"C\""))
            .collect();
        format!(
            "copy (select {} from only {}{} order by {}) to stdout",
            cols.join(", "),
            table.quoted(),
            condition
                .map(|c| format!(" where ({c})"))
                .unwrap_or_default(),
            order.join(", ")
        )
    }
}

/// What a diff found and where it wrote the fix.
struct Diff {
    file: PathBuf,
    inserts: u64,
    updates: u64,
    deletes: u64,
}

impl Diff {
    fn total(&self) -> u64 {
        self.inserts + self.updates + self.deletes
    }
}

/// One row as COPY printed it: every column's text, `None` for NULL.
type Row = Vec<Option<String>>;

/// Reads the next row of a COPY text stream.
fn next_row(reader: &mut impl BufRead, line: &mut Vec<u8>) -> Result<Option<Row>> {
    line.clear();
    if reader.read_until(b'\n', line)? == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    line.split(|&b| b == b'\t')
        .map(decode_field)
        .collect::<Result<Row>>()
        .map(Some)
}

/// Decodes one field of COPY's text format (`\N` is NULL; backslash escapes).
fn decode_field(field: &[u8]) -> Result<Option<String>> {
    if field == b"\\N" {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(field.len());
    let mut bytes = field.iter().copied().peekable();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'b') => out.push(8),
            Some(b'f') => out.push(12),
            Some(b'n') => out.push(b'\n'),
            Some(b'r') => out.push(b'\r'),
            Some(b't') => out.push(b'\t'),
            Some(b'v') => out.push(11),
            Some(d @ b'0'..=b'7') => {
                let mut value = u32::from(d - b'0');
                for _ in 0..2 {
                    match bytes.peek() {
                        Some(&o @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(o - b'0');
                            bytes.next();
                        }
                        _ => break,
                    }
                }
                out.push(value as u8);
            }
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    String::from_utf8(out)
        .map(Some)
        .context("a value is not valid UTF-8")
}

/// Compares two rows' keys (the first `keys` fields) in byte order, as `COLLATE "C"` sorts.
fn compare_keys(a: &Row, b: &Row, keys: usize) -> Ordering {
    a[..keys]
        .iter()
        .map(|v| v.as_deref().map(str::as_bytes))
        .cmp(b[..keys].iter().map(|v| v.as_deref().map(str::as_bytes)))
}

/// An SQL literal on one line: `E'...'` with escapes where the value holds a backslash or a
/// line break.
fn literal(value: &Option<String>) -> String {
    match value {
        None => "NULL".to_string(),
        Some(v) if v.contains(['\\', '\n', '\r']) => format!(
            "E'{}'",
            v.replace('\\', "\\\\")
                .replace('\'', "''")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
        ),
        Some(v) => format!("'{}'", v.replace('\'', "''")),
    }
}

/// Writes the statements of one table's fix.
struct FixWriter<'a> {
    out: BufWriter<File>,
    dest: String,
    shape: &'a Shape,
    quoted: Vec<String>,
}

impl FixWriter<'_> {
    fn key_condition(&self, row: &Row) -> String {
        (0..self.shape.keys)
            .map(|i| format!("{} = {}", self.quoted[i], literal(&row[i])))
            .collect::<Vec<_>>()
            .join(" and ")
    }

    fn insert(&mut self, row: &Row) -> Result<()> {
        let values: Vec<String> = row.iter().map(literal).collect();
        writeln!(
            self.out,
            "insert into {} ({}) values ({});",
            self.dest,
            self.quoted.join(", "),
            values.join(", ")
        )?;
        Ok(())
    }

    fn delete(&mut self, row: &Row) -> Result<()> {
        writeln!(
            self.out,
            "delete from only {} where {};",
            self.dest,
            self.key_condition(row)
        )?;
        Ok(())
    }

    /// Writes an update of the columns that differ; false if none do.
    fn update(&mut self, theirs: &Row, ours: &Row) -> Result<bool> {
        let sets: Vec<String> = (self.shape.keys..self.quoted.len())
            .filter(|&i| theirs[i] != ours[i])
            .map(|i| format!("{} = {}", self.quoted[i], literal(&theirs[i])))
            .collect();
        if sets.is_empty() {
            return Ok(false);
        }
        writeln!(
            self.out,
            "update only {} set {} where {};",
            self.dest,
            sets.join(", "),
            self.key_condition(theirs)
        )?;
        Ok(true)
    }
}

/// The fix file's first and last lines; `--apply` runs what is between them.
const FIX_BEGIN: &str = "begin;\nset local skyrep.replay = on;";
const FIX_END: &str = "commit;";

/// Diffs `table` in the snapshots `syncer` holds, writes the fix file and, with `apply`,
/// runs it in the subscriber's transaction.
fn diff_table(
    syncer: &mut Syncer,
    table: &SubscriberTable,
    shape: &Shape,
    apply: bool,
    file: PathBuf,
) -> Result<Diff> {
    let out = create_fix_file(&file).with_context(|| format!("creating {}", file.display()))?;
    let mut writer = FixWriter {
        out: BufWriter::new(out),
        dest: table.dest.quoted(),
        shape,
        quoted: shape.columns.iter().map(|c| quote_ident(c)).collect(),
    };
    writeln!(
        writer.out,
        "-- skyrep repair: makes {} on the subscriber equal to {} on the provider.\n\
         -- skyrep.replay = on lets this session write to a replicated table.\n{FIX_BEGIN}",
        table.dest, table.table
    )?;
    let mut diff = Diff {
        file,
        inserts: 0,
        updates: 0,
        deletes: 0,
    };
    {
        let mut theirs_in = BufReader::with_capacity(
            1 << 16,
            syncer
                .provider
                .copy_out(&shape.copy_sql(&table.table, table.condition.as_deref()))
                .context("reading the provider's rows")?,
        );
        let mut ours_in = BufReader::with_capacity(
            1 << 16,
            syncer
                .subscriber
                .copy_out(&shape.copy_sql(&table.dest, None))
                .context("reading the subscriber's rows")?,
        );
        let (mut line_a, mut line_b) = (Vec::new(), Vec::new());
        let mut theirs = next_row(&mut theirs_in, &mut line_a)?;
        let mut ours = next_row(&mut ours_in, &mut line_b)?;
        loop {
            let order = match (&theirs, &ours) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(t), Some(o)) => compare_keys(t, o, shape.keys),
            };
            match order {
                Ordering::Less => {
                    writer.insert(theirs.as_ref().expect("compared"))?;
                    diff.inserts += 1;
                    theirs = next_row(&mut theirs_in, &mut line_a)?;
                }
                Ordering::Greater => {
                    writer.delete(ours.as_ref().expect("compared"))?;
                    diff.deletes += 1;
                    ours = next_row(&mut ours_in, &mut line_b)?;
                }
                Ordering::Equal => {
                    let (t, o) = (theirs.as_ref(), ours.as_ref());
                    if writer.update(t.expect("compared"), o.expect("compared"))? {
                        diff.updates += 1;
                    }
                    theirs = next_row(&mut theirs_in, &mut line_a)?;
                    ours = next_row(&mut ours_in, &mut line_b)?;
                }
            }
        }
    }
    writeln!(writer.out, "{FIX_END}")?;
    writer.out.flush()?;
    drop(writer);
    if diff.total() == 0 {
        std::fs::remove_file(&diff.file)
            .with_context(|| format!("removing {}", diff.file.display()))?;
    } else if apply {
        run_fix(&mut syncer.subscriber, &diff.file)?;
    }
    Ok(diff)
}

/// Creates the fix file at `path` (see the module doc).
fn create_fix_file(path: &Path) -> Result<File> {
    match fs::symlink_metadata(path) {
        // SAFETY: geteuid has no preconditions.
        Ok(meta) if meta.file_type().is_file() && meta.uid() == unsafe { libc::geteuid() } => {
            fs::remove_file(path).context("removing the fix file of an earlier run")?;
        }
        Ok(meta) if meta.file_type().is_symlink() => {
            bail!("a symbolic link is in its place; remove it or choose another --dir")
        }
        Ok(_) => bail!("something else is in its place; remove it or choose another --dir"),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    Ok(fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?)
}

/// Runs the statements of a fix file inside the open transaction of `client`, a few hundred
/// per round trip.
fn run_fix(client: &mut Client, file: &PathBuf) -> Result<()> {
    let reader =
        BufReader::new(File::open(file).with_context(|| format!("reading {}", file.display()))?);
    let mut chunk = String::new();
    let mut lines = 0;
    for line in reader.lines() {
        let line = line?;
        if line.starts_with("--") || line == "begin;" || line == FIX_END {
            continue;
        }
        chunk.push_str(&line);
        chunk.push('\n');
        lines += 1;
        if lines == 500 {
            client.batch_execute(&chunk).context("applying the fix")?;
            chunk.clear();
            lines = 0;
        }
    }
    client.batch_execute(&chunk).context("applying the fix")
}

/// `name` with path separators and control characters replaced, for a file name.
fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_decode() {
        assert_eq!(decode_field(b"\\N").unwrap(), None);
        assert_eq!(decode_field(b"").unwrap(), Some(String::new()));
        assert_eq!(
            decode_field(b"a\\tb\\nc\\\\d\\101\\r").unwrap().unwrap(),
            "a\tb\nc\\dA\r"
        );
        let mut input: &[u8] = b"1\tx\\ty\t\\N\n2\t\t\n";
        let mut line = Vec::new();
        assert_eq!(
            next_row(&mut input, &mut line).unwrap(),
            Some(vec![Some("1".into()), Some("x\ty".into()), None])
        );
        assert_eq!(
            next_row(&mut input, &mut line).unwrap(),
            Some(vec![Some("2".into()), Some("".into()), Some("".into())])
        );
        assert_eq!(next_row(&mut input, &mut line).unwrap(), None);
    }

    #[test]
    fn literals_stay_on_one_line() {
        assert_eq!(literal(&None), "NULL");
        assert_eq!(literal(&Some("it's".into())), "'it''s'");
        assert_eq!(literal(&Some("a\\b\nc'".into())), "E'a\\\\b\\nc'''");
    }

    #[test]
    fn keys_compare_in_byte_order() {
        let row = |k: &str| vec![Some(k.to_string()), Some("v".into())];
        assert_eq!(compare_keys(&row("10"), &row("9"), 1), Ordering::Less);
        assert_eq!(compare_keys(&row("B"), &row("a"), 1), Ordering::Less);
        assert_eq!(compare_keys(&row("é"), &row("z"), 1), Ordering::Greater);
        assert_eq!(compare_keys(&row("x"), &row("x"), 1), Ordering::Equal);
    }
}
