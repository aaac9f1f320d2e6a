//! Applying replicated row changes on the subscriber.
//!
//! PgQ's `logutriga` queues one event per changed row: `ev_type` `I:pk1,pk2` / `U:..` / `D:..`
//! (or `R` for TRUNCATE) and the row url-encoded in `ev_data`. [`decode`] reads that format and
//! [`Applier`] replays the rows on the subscriber. Replaying event by event costs one round
//! trip per row, so the applier adds up each row's changes and applies them per table and kind
//! with one prepared statement over `unnest` of text arrays (one array per column, values as
//! parameters, never in the SQL), which keeps the outcome of applying the events one by one.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use postgres::types::ToSql;
use postgres::{Statement, Transaction};

use crate::names::{TableName, quote_ident};

/// Events queued before they are applied.
const PENDING_EVENTS: usize = 20_000;
/// Bytes of values queued before they are applied (keeps wide rows from piling up).
const PENDING_BYTES: usize = 16 << 20;

/// What a row event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RowOp {
    /// `I:` — a row was inserted; the event carries the new row.
    Insert,
    /// `U:` — a row was updated; the event carries the whole new row.
    Update,
    /// `D:` — a row was deleted; the event carries the old row.
    Delete,
}

impl RowOp {
    fn index(self) -> usize {
        match self {
            RowOp::Insert => 0,
            RowOp::Update => 1,
            RowOp::Delete => 2,
        }
    }
}

/// `insert`, `update` or `delete`.
impl fmt::Display for RowOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RowOp::Insert => "insert",
            RowOp::Update => "update",
            RowOp::Delete => "delete",
        })
    }
}

/// One decoded row change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowEvent {
    /// The kind of change.
    pub op: RowOp,
    /// The provider's key columns, from `ev_type`.
    pub pkey: Vec<String>,
    /// The row's columns in event order, with their text values (`None` is NULL).
    pub values: Vec<(String, Option<String>)>,
}

/// What an event means for the subscriber's tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A row insert, update or delete.
    Row(RowEvent),
    /// The table was truncated (`ev_type` `R`).
    Truncate,
    /// Not a row event (any other `ev_type`).
    Other,
}

/// Decodes an event's `ev_type` and `ev_data` in `logutriga` format.
pub fn decode(ev_type: &str, ev_data: Option<&str>) -> Result<Decoded> {
    if ev_type == "R" {
        return Ok(Decoded::Truncate);
    }
    let op = match ev_type.get(..2) {
        Some("I:") => RowOp::Insert,
        Some("U:") => RowOp::Update,
        Some("D:") => RowOp::Delete,
        _ => return Ok(Decoded::Other),
    };
    let keys = &ev_type[2..];
    let pkey = if keys.is_empty() {
        Vec::new()
    } else {
        keys.split(',').map(str::to_owned).collect::<Vec<_>>()
    };
    if pkey.iter().any(String::is_empty) {
        bail!("bad event type `{ev_type}`: empty key column name");
    }
    let data = ev_data.ok_or_else(|| anyhow!("row event `{ev_type}` has no data"))?;
    let values =
        decode_urlencoded(data).with_context(|| format!("bad data in row event `{ev_type}`"))?;
    Ok(Decoded::Row(RowEvent { op, pkey, values }))
}

/// Decodes a url-encoded row: `name=value` pairs joined by `&`; a bare `name` is NULL, `name=`
/// the empty string; `%xx` is a byte, `+` a space. Empty pairs are skipped.
pub fn decode_urlencoded(data: &str) -> Result<Vec<(String, Option<String>)>> {
    data.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (pair, None),
            };
            let name = unescape(name)?;
            if name.is_empty() {
                bail!(
                    "empty column name before `={}`",
                    snippet(value.unwrap_or(""))
                );
            }
            let value = value
                .map(unescape)
                .transpose()
                .with_context(|| format!("bad value of column `{name}`"))?;
            Ok((name, value))
        })
        .collect()
}

/// Undoes the url-encoding of one name or value.
fn unescape(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let special = |b: &u8| *b == b'%' || *b == b'+';
    let Some(first) = bytes.iter().position(special) else {
        return Ok(text.to_owned());
    };
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..first]);
    let mut i = first;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let byte = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| Some(hex_digit(hex[0])? << 4 | hex_digit(hex[1])?))
                    .ok_or_else(|| {
                        anyhow!(
                            "bad escape `{}` at byte {i} of `{}`",
                            text[i..].chars().take(3).collect::<String>(),
                            snippet(text)
                        )
                    })?;
                out.push(byte);
                i += 3;
            }
            _ => {
                let run = bytes[i..]
                    .iter()
                    .position(special)
                    .unwrap_or(bytes.len() - i);
                out.extend_from_slice(&bytes[i..i + run]);
                i += run;
            }
        }
    }
    String::from_utf8(out).map_err(|e| {
        anyhow!(
            "`{}` decodes to bytes that are not UTF-8 (at byte {}); the provider database \
             must use UTF8",
            snippet(text),
            e.utf8_error().valid_up_to()
        )
    })
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The start of `text`, for messages (values can be megabytes long).
fn snippet(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

/// A subscriber table's catalog facts.
struct Table {
    /// Columns by name.
    columns: HashMap<String, Column>,
    /// Primary key columns in index order; empty if there is none.
    pkey: Vec<String>,
}

/// A subscriber column's catalog facts.
struct Column {
    /// The type to cast the text to: without typmod, and a domain as its base type, so that
    /// storing into the column checks length and domain constraints instead of truncating as
    /// an explicit cast would.
    cast: String,
    /// A generated column: the subscriber computes it, so events' values for it are not stored.
    generated: bool,
    /// `GENERATED ALWAYS AS IDENTITY`: an UPDATE can set it only to DEFAULT.
    identity_always: bool,
}

impl Table {
    fn load(tx: &mut Transaction<'_>, name: &TableName) -> Result<Table> {
        let rows = tx
            .query(
                "select a.attname::text, \
                        format_type(case when t.typtype = 'd' then t.typbasetype \
                                         else a.atttypid end, -1), \
                        array_position(i.indkey::int2[], a.attnum), \
                        a.attgenerated <> '', \
                        a.attidentity = 'a' \
                 from pg_class c \
                 join pg_namespace n on n.oid = c.relnamespace \
                 join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 \
                                    and not a.attisdropped \
                 join pg_type t on t.oid = a.atttypid \
                 left join pg_index i on i.indrelid = c.oid and i.indisprimary \
                 where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'p') \
                 order by a.attnum",
                &[&name.schema, &name.name],
            )
            .with_context(|| format!("reading the columns of table {name} on the subscriber"))?;
        if rows.is_empty() {
            bail!("table {name} does not exist on the subscriber");
        }
        let mut pkey = Vec::new();
        let mut columns = HashMap::new();
        for row in rows {
            let column: String = row.get(0);
            if let Some(position) = row.get::<_, Option<i32>>(2) {
                pkey.push((position, column.clone()));
            }
            columns.insert(
                column,
                Column {
                    cast: row.get(1),
                    generated: row.get(3),
                    identity_always: row.get(4),
                },
            );
        }
        pkey.sort();
        Ok(Table {
            columns,
            pkey: pkey.into_iter().map(|(_, column)| column).collect(),
        })
    }
}

/// What identifies a group and its statement: the events' table, kind, key and columns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    table: TableName,
    op: RowOp,
    pkey: Vec<String>,
    columns: Vec<String>,
}

impl GroupKey {
    fn of(table: &TableName, event: &RowEvent) -> GroupKey {
        GroupKey {
            table: table.clone(),
            op: event.op,
            pkey: event.pkey.clone(),
            columns: event.values.iter().map(|(name, _)| name.clone()).collect(),
        }
    }

    fn matches(&self, table: &TableName, event: &RowEvent) -> bool {
        self.op == event.op
            && self.table == *table
            && self.pkey == event.pkey
            && self.columns.len() == event.values.len()
            && self
                .columns
                .iter()
                .zip(&event.values)
                .all(|(column, (name, _))| column == name)
    }
}

/// A prepared statement for one [`GroupKey`].
struct Plan {
    /// Run first: with a copy condition, deletes the updated rows that stopped matching;
    /// for updates of identity columns GENERATED ALWAYS, moves the rows whose value changed.
    pre: Option<Statement>,
    /// `None` for updates that set nothing (the event carries only key columns).
    statement: Option<Statement>,
    /// For each statement parameter, the index of its column in the event's values.
    params: Vec<usize>,
    /// How many leading parameters are key columns (updates keep the last row per key).
    keys: usize,
}

impl Plan {
    /// Checks the events' columns against the table and prepares the statement.
    fn prepare(
        tx: &mut Transaction<'_>,
        key: &GroupKey,
        table: &Table,
        condition: Option<&str>,
    ) -> Result<Plan> {
        let dest = &key.table;
        if table.pkey.is_empty() {
            bail!("table {dest} has no primary key on the subscriber; row events need one");
        }
        let event_keys: HashSet<&String> = key.pkey.iter().collect();
        if event_keys.len() != key.pkey.len()
            || event_keys != table.pkey.iter().collect::<HashSet<_>>()
        {
            bail!(
                "the key of {dest} differs: events carry ({}) but the subscriber's primary key \
                 is ({})",
                key.pkey.join(", "),
                table.pkey.join(", ")
            );
        }
        let mut seen = HashSet::new();
        for column in &key.columns {
            if !table.columns.contains_key(column) {
                bail!(
                    "table {dest} on the subscriber has no column `{column}`, which the events \
                     carry"
                );
            }
            if !seen.insert(column) {
                bail!(
                    "{} event for {dest} carries column `{column}` twice",
                    key.op
                );
            }
        }
        let mut params = Vec::new();
        if key.op != RowOp::Insert {
            for column in &key.pkey {
                let index = key
                    .columns
                    .iter()
                    .position(|c| c == column)
                    .ok_or_else(|| {
                        anyhow!("{} event for {dest} lacks key column `{column}`", key.op)
                    })?;
                params.push(index);
            }
        }
        let keys = params.len();
        let stored = |&i: &usize| !table.columns[&key.columns[i]].generated;
        match key.op {
            RowOp::Insert => {
                params.extend((0..key.columns.len()).filter(stored));
                if params.is_empty() {
                    bail!("insert event for {dest} carries no columns to store");
                }
            }
            RowOp::Update => {
                params.extend(
                    (0..key.columns.len())
                        .filter(|&i| !event_keys.contains(&key.columns[i]))
                        .filter(stored),
                );
                if params.len() == keys {
                    return Ok(Plan {
                        pre: None,
                        statement: None,
                        params,
                        keys,
                    });
                }
            }
            RowOp::Delete => {}
        }

        let names: Vec<&String> = params.iter().map(|&i| &key.columns[i]).collect();
        let cast = |column: &String| {
            format!(
                "cast(u.{} as {})",
                quote_ident(column),
                table.columns[column].cast
            )
        };
        let source = format!(
            "unnest({}) as u({})",
            join(", ", (1..=names.len()).map(|n| format!("${n}::text[]"))),
            join(", ", names.iter().map(|c| quote_ident(c)))
        );
        let matching = join(
            " and ",
            names[..keys]
                .iter()
                .map(|c| format!("t.{} = {}", quote_ident(c), cast(c))),
        );
        let target = dest.quoted();
        let column_list = join(", ", names.iter().map(|c| quote_ident(c)));
        if let Some(condition) = condition
            && key.op != RowOp::Delete
        {
            // Only rows the condition holds for are here: an insert that does not match is
            // left out, an update makes the row match (insert or update it here) or not
            // (delete it here). The condition sees the row's typed columns by name.
            let typed = format!(
                "(select {} from {source}) as s",
                join(
                    ", ",
                    names
                        .iter()
                        .map(|c| format!("{} as {}", cast(c), quote_ident(c)))
                )
            );
            let upsert = format!(
                "insert into {target} ({column_list}) overriding system value \
                 select {column_list} from {typed} where ({condition})"
            );
            let (pre, sql) = if key.op == RowOp::Insert {
                (None, upsert)
            } else {
                let key_list = join(", ", names[..keys].iter().map(|c| quote_ident(c)));
                // An identity column GENERATED ALWAYS can only be updated to DEFAULT.
                let set = join(
                    ", ",
                    names[keys..]
                        .iter()
                        .filter(|c| !table.columns[c.as_str()].identity_always)
                        .map(|c| format!("{0} = excluded.{0}", quote_ident(c))),
                );
                let action = if set.is_empty() {
                    "nothing".to_string()
                } else {
                    format!("update set {set}")
                };
                let delete = format!(
                    "delete from {target} where ({key_list}) in \
                     (select {key_list} from {typed} where not coalesce(({condition}), false))"
                );
                (
                    Some(delete),
                    format!("{upsert} on conflict ({key_list}) do {action}"),
                )
            };
            let prepare = |tx: &mut Transaction<'_>, sql: &str| {
                tx.prepare(sql).with_context(|| {
                    format!("preparing {}s into {dest} with the copy condition", key.op)
                })
            };
            return Ok(Plan {
                pre: pre.map(|sql| prepare(tx, &sql)).transpose()?,
                statement: Some(prepare(tx, &sql)?),
                params,
                keys,
            });
        }
        let insert = format!(
            "insert into {target} ({column_list}) overriding system value select {} \
             from {source}",
            join(", ", names.iter().map(|c| cast(c))),
        );
        // An identity column GENERATED ALWAYS can only be updated to DEFAULT: updates leave
        // it out, and a row whose value differs (the provider set it to DEFAULT) is deleted
        // and inserted again with the provider's value, before the update.
        let (identity, set): (Vec<&String>, Vec<&String>) = names[keys..]
            .iter()
            .copied()
            .partition(|c| table.columns[*c].identity_always);
        let moved = (key.op == RowOp::Update && !identity.is_empty()).then(|| {
            let t_keys = join(
                ", ",
                names[..keys]
                    .iter()
                    .map(|c| format!("t.{}", quote_ident(c))),
            );
            let u_keys = join(", ", names[..keys].iter().map(|c| cast(c)));
            let differs = join(
                " or ",
                identity
                    .iter()
                    .map(|c| format!("t.{} is distinct from {}", quote_ident(c), cast(c))),
            );
            format!(
                "with moved as (delete from {target} as t using {source} \
                 where {matching} and ({differs}) returning {t_keys}) \
                 {insert} where ({u_keys}) in (select * from moved)"
            )
        });
        let sql = match key.op {
            RowOp::Insert => insert,
            RowOp::Update if set.is_empty() => moved.clone().unwrap_or_default(),
            RowOp::Update => format!(
                "update {target} as t set {} from {source} where {matching}",
                join(
                    ", ",
                    set.iter()
                        .map(|c| format!("{} = {}", quote_ident(c), cast(c)))
                ),
            ),
            RowOp::Delete => format!("delete from {target} as t using {source} where {matching}"),
        };
        let pre = moved.filter(|_| !set.is_empty());
        let prepare = |tx: &mut Transaction<'_>, sql: &str| {
            tx.prepare(sql)
                .with_context(|| format!("preparing {}s into {dest}", key.op))
        };
        Ok(Plan {
            pre: pre.map(|sql| prepare(tx, &sql)).transpose()?,
            statement: Some(prepare(tx, &sql)?),
            params,
            keys,
        })
    }
}

/// The items joined by `separator`.
fn join(separator: &str, items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(separator)
}

/// Changes of one table and kind, with the same key and columns, applied with one statement.
/// The values are borrowed from the queued events.
struct Group<'a> {
    key: GroupKey,
    plan: Arc<Plan>,
    /// One text array per statement parameter.
    arrays: Vec<Vec<Option<&'a str>>>,
    /// Events taken in (more than the rows in `arrays` when updates of one key merged).
    events: usize,
    /// Updates: row index in `arrays` by key values.
    rows_by_key: HashMap<Vec<Option<&'a str>>, usize>,
}

impl<'a> Group<'a> {
    fn new(key: GroupKey, plan: Arc<Plan>) -> Group<'a> {
        Group {
            arrays: vec![Vec::new(); plan.params.len()],
            key,
            plan,
            events: 0,
            rows_by_key: HashMap::new(),
        }
    }

    fn add(&mut self, event: &'a RowEvent) {
        self.events += 1;
        if self.plan.statement.is_none() {
            return;
        }
        let mut row: Vec<Option<&'a str>> = self
            .plan
            .params
            .iter()
            .map(|&i| event.values[i].1.as_deref())
            .collect();
        if self.key.op == RowOp::Update {
            // The event carries the whole new row, so a later update of the key replaces an
            // earlier one (one source row per target row, as UPDATE ... FROM needs).
            let key = row[..self.plan.keys].to_vec();
            match self.rows_by_key.entry(key) {
                Entry::Occupied(e) => {
                    let index = *e.get();
                    for (array, value) in self.arrays.iter_mut().zip(row.drain(..)) {
                        array[index] = value;
                    }
                    return;
                }
                Entry::Vacant(e) => {
                    e.insert(self.arrays[0].len());
                }
            }
        }
        for (array, value) in self.arrays.iter_mut().zip(row) {
            array.push(value);
        }
    }
}

/// A row as queued events leave it: one of the events, with any later updates laid over it.
struct Image {
    /// The event's index in [`Pending::events`].
    event: usize,
    /// The event with later updates merged in, once there are any.
    merged: Option<RowEvent>,
}

impl Image {
    fn row<'a>(&'a self, events: &'a [(usize, RowEvent)]) -> &'a RowEvent {
        self.merged.as_ref().unwrap_or(&events[self.event].1)
    }
}

/// What the events queued for one row add up to.
struct Net {
    /// The table, as an index into [`Pending::tables`].
    table: usize,
    /// A delete of the row as it was before these events (the index of the first event that
    /// removed it).
    delete: Option<usize>,
    /// The row as the events leave it: an insert (the row is new, or back after `delete`) or
    /// an update of the existing row; `None` when the row ends up absent.
    write: Option<Image>,
}

impl Net {
    /// Takes in `event`, the next event of this row, which will be `events[index]`. Returns
    /// false if its outcome depends on the subscriber's data (an insert of a row the events
    /// say is there), so only replaying the events in order gives the right answer.
    fn add(&mut self, index: usize, event: &RowEvent, events: &[(usize, RowEvent)]) -> bool {
        match (event.op, &mut self.write) {
            (RowOp::Insert, Some(_)) => return false,
            (RowOp::Insert, write @ None) => {
                *write = Some(Image {
                    event: index,
                    merged: None,
                })
            }
            (RowOp::Update, Some(image)) => {
                let base = image.event;
                let row = image.merged.get_or_insert_with(|| events[base].1.clone());
                merge(row, event);
            }
            // The row is gone: like the UPDATE it stands for, this changes nothing.
            (RowOp::Update, None) => {}
            (RowOp::Delete, write) => {
                if let Some(image) = write.take()
                    && image.row(events).op == RowOp::Update
                {
                    self.delete = Some(index);
                }
            }
        }
        true
    }
}

/// Lays the columns of update `event` over `image` (an update carries the columns it sets).
fn merge(image: &mut RowEvent, event: &RowEvent) {
    for (name, value) in &event.values {
        match image.values.iter_mut().find(|(column, _)| column == name) {
            Some((_, old)) => old.clone_from(value),
            None => image.values.push((name.clone(), value.clone())),
        }
    }
}

/// The events queued since the last flush, in order and added up per row.
#[derive(Default)]
struct Pending {
    /// Tables in the order of their first event.
    tables: Vec<TableName>,
    /// Each table's key columns, as its first event named them.
    pkeys: Vec<Vec<String>>,
    /// The events in order, with their table's index.
    events: Vec<(usize, RowEvent)>,
    /// Each row's net change, in the order of the row's first event.
    nets: Vec<Net>,
    /// Index into `nets` by table and key values.
    rows: HashMap<(usize, Vec<Option<String>>), usize>,
    /// Each (table, kind) in the order of its first event.
    kinds: Vec<(usize, RowOp)>,
    /// Set when the events must be applied in order (see [`Net::add`]).
    in_order_only: bool,
    /// Bytes of values queued.
    bytes: usize,
    /// Events queued, by kind.
    counts: [u64; 3],
}

impl Pending {
    fn push(&mut self, dest: &TableName, event: RowEvent) {
        let table = match self.tables.iter().position(|t| t == dest) {
            Some(table) => table,
            None => {
                self.tables.push(dest.clone());
                self.pkeys.push(event.pkey.clone());
                self.tables.len() - 1
            }
        };
        self.bytes += event
            .values
            .iter()
            .filter_map(|(_, value)| value.as_ref())
            .map(String::len)
            .sum::<usize>();
        self.counts[event.op.index()] += 1;
        if !self.kinds.contains(&(table, event.op)) {
            self.kinds.push((table, event.op));
        }
        if !self.in_order_only {
            self.in_order_only = !self.add_net(table, &event);
        }
        self.events.push((table, event));
    }

    /// Adds `event` to its row's net change; false if the events must be applied in order.
    fn add_net(&mut self, table: usize, event: &RowEvent) -> bool {
        if event.pkey != self.pkeys[table] {
            return false;
        }
        let key: Option<Vec<Option<String>>> = event
            .pkey
            .iter()
            .map(|column| {
                let (_, value) = event.values.iter().find(|(name, _)| name == column)?;
                Some(value.clone())
            })
            .collect();
        let Some(key) = key else {
            return false;
        };
        let index = self.events.len();
        match self.rows.entry((table, key)) {
            Entry::Occupied(e) => self.nets[*e.get()].add(index, event, &self.events),
            Entry::Vacant(e) => {
                e.insert(self.nets.len());
                let mut net = Net {
                    table,
                    delete: None,
                    write: None,
                };
                match event.op {
                    RowOp::Delete => net.delete = Some(index),
                    RowOp::Insert | RowOp::Update => {
                        net.write = Some(Image {
                            event: index,
                            merged: None,
                        })
                    }
                }
                self.nets.push(net);
                true
            }
        }
    }

    fn full(&self) -> bool {
        self.events.len() >= PENDING_EVENTS || self.bytes >= PENDING_BYTES
    }

    /// Where a group of `op` changes to `table` goes among the statements of the net changes:
    /// deletes, then updates, then inserts, each kind in the order of its first event.
    fn rank(&self, table: &TableName, op: RowOp) -> (usize, usize) {
        let phase = match op {
            RowOp::Delete => 0,
            RowOp::Update => 1,
            RowOp::Insert => 2,
        };
        let first = self
            .kinds
            .iter()
            .position(|&(t, o)| o == op && self.tables[t] == *table);
        (phase, first.unwrap_or(usize::MAX))
    }
}

/// Applies row changes to subscriber tables inside the caller's transaction.
///
/// Changes are queued until [`Applier::flush`] (or until enough are queued), and then each
/// row's changes are added up to one net change (the row deleted, updated to its last image, or
/// inserted), applied as one statement per table, kind and column list: deletes, then updates,
/// then inserts, each kind table by table in the order of its first event. The tables end up
/// as if the events had been applied one by one. Where the new order trips a constraint (a
/// foreign key between tables, a unique column whose values moved between rows) the applier
/// rolls back to a savepoint and applies the same events in their order, one statement per
/// run of consecutive changes of one table and kind; if that fails too, one event at a time.
///
/// Statements are prepared on the connection of the first transaction and cached, so one
/// applier serves one connection for its lifetime (call [`Applier::reset`] after reconnecting
/// or after DDL on the tables). Statements address `dest` as plain SQL would, inheritance
/// children included. The applier never commits.
#[derive(Default)]
pub struct Applier {
    tables: HashMap<TableName, Table>,
    plans: HashMap<GroupKey, Arc<Plan>>,
    /// Copy conditions by table.
    conditions: HashMap<TableName, String>,
    pending: Pending,
    counts: [u64; 3],
}

impl Applier {
    /// An applier with nothing cached or pending.
    pub fn new() -> Applier {
        Applier::default()
    }

    /// Queues one change for `dest`, and applies what is queued when that is much.
    pub fn push(
        &mut self,
        tx: &mut Transaction<'_>,
        dest: &TableName,
        mut event: RowEvent,
    ) -> Result<()> {
        // `ev_type` joins the key columns' names with commas, so a name with a comma in it
        // reads as several: where the text is the subscriber's key, that key is meant.
        let pkey = &self.table(tx, dest)?.pkey;
        if event.pkey.len() != pkey.len() && event.pkey.join(",") == pkey.join(",") {
            event.pkey.clone_from(pkey);
        }
        self.pending.push(dest, event);
        if self.pending.full() {
            self.flush(tx)?;
        }
        Ok(())
    }

    /// Applies what is pending, then empties `dest`: all of it, or with a copy condition only
    /// the rows that meet it (the table may hold other rows, from elsewhere).
    pub fn truncate(&mut self, tx: &mut Transaction<'_>, dest: &TableName) -> Result<()> {
        self.flush(tx)?;
        let sql = match self.conditions.get(dest) {
            Some(condition) => format!("delete from {} where ({condition})", dest.quoted()),
            None => format!("truncate {}", dest.quoted()),
        };
        tx.execute(&sql, &[])
            .with_context(|| format!("truncating {dest}"))?;
        Ok(())
    }

    /// Applies what is pending; call before committing. After an error nothing is pending.
    pub fn flush(&mut self, tx: &mut Transaction<'_>) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        if pending.events.is_empty() {
            return Ok(());
        }
        let nets = std::mem::take(&mut pending.nets);
        let several = pending.events.len() > 1;
        let mut done = false;
        if several && !pending.in_order_only {
            done = self.attempt(tx, "net changes", |applier, sp| {
                applier.apply_net(sp, &pending, nets)
            })?;
        }
        if several && !done {
            done = self.attempt(tx, "runs of events", |applier, sp| {
                applier.apply_in_order(sp, &pending, false)
            })?;
        }
        if !done {
            self.apply_in_order(tx, &pending, true)?;
        }
        for (total, n) in self.counts.iter_mut().zip(pending.counts) {
            *total += n;
        }
        Ok(())
    }

    /// Row events applied since creation: (inserts, updates, deletes).
    pub fn counts(&self) -> (u64, u64, u64) {
        let [inserts, updates, deletes] = self.counts;
        (inserts, updates, deletes)
    }

    /// Applies to `dest` only the rows for which the SQL `condition` holds (`--copy-condition`;
    /// `None`: every row). Call before queuing changes of `dest`.
    pub fn set_condition(&mut self, dest: &TableName, condition: Option<&str>) {
        if self.conditions.get(dest).map(String::as_str) == condition {
            return;
        }
        match condition {
            Some(condition) => self.conditions.insert(dest.clone(), condition.to_string()),
            None => self.conditions.remove(dest),
        };
        self.plans.retain(|key, _| key.table != *dest);
    }

    /// Forgets cached table facts and statements, and drops anything pending (flush first to
    /// keep it); for after DDL on the tables or a reconnect.
    pub fn reset(&mut self) {
        self.tables.clear();
        self.plans.clear();
        self.pending = Pending::default();
    }

    /// Runs `apply` inside a savepoint; on an error rolls back to it and returns false.
    fn attempt(
        &mut self,
        tx: &mut Transaction<'_>,
        what: &str,
        apply: impl FnOnce(&mut Applier, &mut Transaction<'_>) -> Result<()>,
    ) -> Result<bool> {
        let mut savepoint = tx.transaction().context("setting a savepoint")?;
        match apply(self, &mut savepoint) {
            Ok(()) => {
                savepoint.commit().context("releasing a savepoint")?;
                Ok(true)
            }
            Err(e) => {
                savepoint
                    .rollback()
                    .context("rolling back to a savepoint")?;
                log::debug!("applying {what} failed, trying smaller steps: {e:#}");
                Ok(false)
            }
        }
    }

    /// Applies each row's net change: deletes, updates, inserts.
    fn apply_net(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &Pending,
        nets: Vec<Net>,
    ) -> Result<()> {
        // Few groups, so finding one by comparing beats hashing a key made for every event.
        let mut groups: Vec<Group> = Vec::new();
        for net in &nets {
            let dest = &pending.tables[net.table];
            let delete = net.delete.map(|index| &pending.events[index].1);
            let write = net.write.as_ref().map(|image| image.row(&pending.events));
            for event in [delete, write].into_iter().flatten() {
                let at = match groups.iter().position(|g| g.key.matches(dest, event)) {
                    Some(at) => at,
                    None => {
                        let key = GroupKey::of(dest, event);
                        let plan = self.plan(tx, &key)?;
                        groups.push(Group::new(key, plan));
                        groups.len() - 1
                    }
                };
                groups[at].add(event);
            }
        }
        groups.sort_by_key(|group| pending.rank(&group.key.table, group.key.op));
        for group in groups {
            self.execute(tx, group)?;
        }
        Ok(())
    }

    /// Applies the events in their order: one statement per run of consecutive changes of one
    /// table and kind, or with `one_by_one` one statement per event.
    fn apply_in_order(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &Pending,
        one_by_one: bool,
    ) -> Result<()> {
        let mut group: Option<Group> = None;
        for (table, event) in &pending.events {
            let dest = &pending.tables[*table];
            let mut current = match group.take() {
                Some(current) if !one_by_one && current.key.matches(dest, event) => current,
                other => {
                    if let Some(done) = other {
                        self.execute(tx, done)?;
                    }
                    let key = GroupKey::of(dest, event);
                    let plan = self.plan(tx, &key)?;
                    Group::new(key, plan)
                }
            };
            current.add(event);
            group = Some(current);
        }
        match group {
            Some(last) => self.execute(tx, last),
            None => Ok(()),
        }
    }

    /// The cached statement for `key`, else checks the columns and prepares one.
    fn plan(&mut self, tx: &mut Transaction<'_>, key: &GroupKey) -> Result<Arc<Plan>> {
        if let Some(plan) = self.plans.get(key) {
            return Ok(plan.clone());
        }
        self.table(tx, &key.table)?;
        let table = &self.tables[&key.table];
        let condition = self.conditions.get(&key.table).map(String::as_str);
        let plan = Arc::new(Plan::prepare(tx, key, table, condition)?);
        self.plans.insert(key.clone(), plan.clone());
        Ok(plan)
    }

    /// The cached catalog facts of `dest`, read first if need be.
    fn table(&mut self, tx: &mut Transaction<'_>, dest: &TableName) -> Result<&Table> {
        if !self.tables.contains_key(dest) {
            let table = Table::load(tx, dest)?;
            self.tables.insert(dest.clone(), table);
        }
        Ok(&self.tables[dest])
    }

    fn execute(&mut self, tx: &mut Transaction<'_>, group: Group) -> Result<()> {
        if let Some(statement) = &group.plan.statement {
            let params: Vec<&(dyn ToSql + Sync)> = group
                .arrays
                .iter()
                .map(|array| array as &(dyn ToSql + Sync))
                .collect();
            if let Some(pre) = &group.plan.pre {
                tx.execute(pre, &params).with_context(|| {
                    format!(
                        "applying {} {}s to {} (first step)",
                        group.events, group.key.op, group.key.table
                    )
                })?;
            }
            tx.execute(statement, &params).with_context(|| {
                format!(
                    "applying {} {}s to {}",
                    group.events, group.key.op, group.key.table
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: RowOp, pkey: &[&str], values: &[(&str, Option<&str>)]) -> Decoded {
        Decoded::Row(RowEvent {
            op,
            pkey: pkey.iter().map(|k| k.to_string()).collect(),
            values: values
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_owned)))
                .collect(),
        })
    }

    fn values(data: &str) -> Vec<(String, Option<String>)> {
        decode_urlencoded(data).unwrap()
    }

    fn error(data: &str) -> String {
        format!("{:#}", decode_urlencoded(data).unwrap_err())
    }

    #[test]
    fn null_differs_from_empty() {
        assert_eq!(
            values("a&b=&c=x"),
            [
                ("a".to_string(), None),
                ("b".to_string(), Some(String::new())),
                ("c".to_string(), Some("x".to_string())),
            ]
        );
        assert_eq!(values(""), []);
        assert_eq!(values("a=1&&b"), values("a=1&b"));
    }

    #[test]
    fn escapes_decode_bytewise() {
        assert_eq!(
            values("Col+X=a+b%2bc%2Bd%25%26%3d%0a%09%22%5C"),
            [("Col X".to_string(), Some("a b+c+d%&=\n\t\"\\".to_string()))]
        );
        // Multi-byte UTF-8, in either hex case, next to plain text.
        assert_eq!(
            values("%C3%bc=x%e2%82%AC%f0%9f%98%80y"),
            [("ü".to_string(), Some("x€😀y".to_string()))]
        );
        // Values may contain `=`, only the first one splits.
        assert_eq!(
            values("a=b=c"),
            [("a".to_string(), Some("b=c".to_string()))]
        );
    }

    #[test]
    fn malformed_data_is_refused() {
        assert!(error("a=%zz").contains("bad escape `%zz` at byte 0"));
        assert!(error("a=x%4").contains("bad escape `%4` at byte 1"));
        assert!(error("a=x%").contains("bad escape `%` at byte 1"));
        assert!(error("a=%4ü").contains("bad escape `%4ü`"));
        assert!(error("a=%ff").contains("not UTF-8"));
        assert!(error("a=%c3").contains("not UTF-8"));
        assert!(error("=1").contains("empty column name"));
        assert!(error("a=1&b=%g0").contains("bad value of column `b`"));
    }

    #[test]
    fn event_types() {
        assert_eq!(
            decode("I:id", Some("id=1&v")).unwrap(),
            row(RowOp::Insert, &["id"], &[("id", Some("1")), ("v", None)])
        );
        assert_eq!(
            decode("U:a,b c", Some("a=1&b+c=2")).unwrap(),
            row(
                RowOp::Update,
                &["a", "b c"],
                &[("a", Some("1")), ("b c", Some("2"))]
            )
        );
        assert_eq!(
            decode("D:", Some("x=1")).unwrap(),
            row(RowOp::Delete, &[], &[("x", Some("1"))])
        );
        assert_eq!(decode("R", Some("")).unwrap(), Decoded::Truncate);
        assert_eq!(decode("R", None).unwrap(), Decoded::Truncate);
        for other in [
            "R:",
            "r",
            "I",
            "i:id",
            "TRUNCATE",
            "",
            "ü",
            "{\"op\":1}",
            "X:id",
        ] {
            assert_eq!(
                decode(other, Some("a=1")).unwrap(),
                Decoded::Other,
                "{other}"
            );
        }
    }

    #[test]
    fn bad_row_events_are_refused() {
        let text = |t, d| format!("{:#}", decode(t, d).unwrap_err());
        assert!(text("I:id", None).contains("has no data"));
        assert!(text("I:a,,b", Some("a=1")).contains("empty key column name"));
        assert!(text("U:id", Some("id=%x1")).contains("bad data in row event `U:id`"));
    }
}
