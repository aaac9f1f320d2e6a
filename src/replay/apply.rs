//! Applying replicated row changes on the subscriber.
//!
//! PgQ's `logutriga` queues one event per changed row: `ev_type` `I:pk1,pk2` / `U:..` / `D:..`
//! (or `R` for TRUNCATE) and the row url-encoded in `ev_data`. [`decode`] reads that format and
//! [`Applier`] replays the rows on the subscriber. Replaying event by event costs one round
//! trip per row, so the applier adds up each row's changes and applies them per table and kind
//! with one prepared statement over `unnest` of text arrays (one array per column, values as
//! parameters, never in the SQL), which keeps the outcome of applying the events one by one.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use postgres::types::ToSql;
use postgres::{GenericClient, Statement, Transaction};

use crate::base::names::{TableName, quote_ident, quote_literal};
use crate::replay::protect::DENY_TRIGGER;

/// Events queued before they are applied.
const PENDING_EVENTS: usize = 2_500;
/// Bytes of values queued before they are applied (keeps wide rows from piling up: the
/// statement that applies them holds them about twice more while it is sent).
const PENDING_BYTES: usize = 1 << 20;

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

/// The names a row event carries: its key columns (from `ev_type`) and its columns (from
/// `ev_data`), in order. Events of one table and kind mostly carry the same names, and share
/// one `Shape` ([`Decoder`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pkey: Vec<String>,
    columns: Vec<String>,
}

/// One decoded row change: its values in one buffer, its names shared with other events.
#[derive(Clone, Debug)]
pub struct RowEvent {
    /// The kind of change.
    pub op: RowOp,
    shape: Arc<Shape>,
    /// The values, decoded, one after another.
    text: String,
    /// Each column's value: where it lies in `text`; `None` is NULL.
    spans: Vec<Option<(u32, u32)>>,
}

/// Events are equal by what they say, however their values are laid out.
impl PartialEq for RowEvent {
    fn eq(&self, other: &RowEvent) -> bool {
        self.op == other.op
            && (Arc::ptr_eq(&self.shape, &other.shape) || self.shape == other.shape)
            && (0..self.spans.len()).all(|i| self.value(i) == other.value(i))
    }
}

impl Eq for RowEvent {}

impl RowEvent {
    /// An event of `op` with key columns `pkey` and these columns and values (`None` is NULL).
    pub fn new(op: RowOp, pkey: Vec<String>, values: &[(&str, Option<&str>)]) -> RowEvent {
        let shape = Arc::new(Shape {
            pkey,
            columns: values.iter().map(|(name, _)| name.to_string()).collect(),
        });
        RowEvent::with_values(op, shape, values.iter().map(|(_, value)| *value))
    }

    /// An event of `op` with the names of `shape` and these values, one per column.
    fn with_values<'v>(
        op: RowOp,
        shape: Arc<Shape>,
        values: impl Iterator<Item = Option<&'v str>> + Clone,
    ) -> RowEvent {
        let size = values.clone().flatten().map(str::len).sum();
        let mut text = String::with_capacity(size);
        let spans = values
            .map(|value| {
                value.map(|value| {
                    let start = text.len();
                    text.push_str(value);
                    (start as u32, text.len() as u32)
                })
            })
            .collect();
        RowEvent {
            op,
            shape,
            text,
            spans,
        }
    }

    /// The provider's key columns, from `ev_type`.
    pub fn pkey(&self) -> &[String] {
        &self.shape.pkey
    }

    /// The row's columns in event order.
    pub fn columns(&self) -> &[String] {
        &self.shape.columns
    }

    /// The text value of column `index` (in event order); `None` is NULL.
    pub fn value(&self, index: usize) -> Option<&str> {
        self.spans[index].map(|(start, end)| &self.text[start as usize..end as usize])
    }

    /// The columns with their values, in event order.
    pub fn values(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.shape
            .columns
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), self.value(i)))
    }

    /// The value of the column named `column`: `None` if the event does not carry it.
    fn get(&self, column: &str) -> Option<Option<&str>> {
        let at = self.shape.columns.iter().position(|name| name == column)?;
        Some(self.value(at))
    }

    /// Bytes of values the event holds.
    fn size(&self) -> usize {
        self.text.len()
    }

    /// The event with column `index` set to `value`.
    fn set(&mut self, index: usize, value: Option<&str>) {
        self.spans[index] = value.map(|value| {
            let start = self.text.len();
            self.text.push_str(value);
            (start as u32, self.text.len() as u32)
        });
    }

    /// The event with key columns `pkey` instead of its own.
    fn with_pkey(mut self, pkey: &[String]) -> RowEvent {
        self.shape = Arc::new(Shape {
            pkey: pkey.to_vec(),
            columns: self.shape.columns.clone(),
        });
        self
    }
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

/// Names lists remembered by a [`Decoder`]; past this many it starts afresh (events are not
/// trusted, and each could name other columns).
const MAX_SHAPES: usize = 256;

/// Decodes events in `logutriga` format, one [`Shape`] for the events that carry the same
/// names: a row's values are decoded into one buffer, and its names are decoded once.
#[derive(Default)]
pub struct Decoder {
    /// Shapes by the names as events spell them (see [`Decoder::decode`]).
    shapes: HashMap<String, Arc<Shape>>,
    /// The spelling of the event being decoded.
    spelling: String,
    /// The event's pairs: the name's place in `ev_data` and the value's, if any.
    pairs: Vec<(Range<usize>, Option<Range<usize>>)>,
    /// A value being decoded.
    bytes: Vec<u8>,
}

impl Decoder {
    /// A decoder that knows no names yet.
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Decodes an event's `ev_type` and `ev_data`.
    ///
    /// `ev_data` is the row url-encoded: `name=value` pairs joined by `&`; a bare `name` is
    /// NULL, `name=` the empty string; `%xx` is a byte, `+` a space. Empty pairs are skipped.
    pub fn decode(&mut self, ev_type: &str, ev_data: Option<&str>) -> Result<Decoded> {
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
        if !keys.is_empty() && keys.split(',').any(str::is_empty) {
            bail!("bad event type `{ev_type}`: empty key column name");
        }
        let data = ev_data.ok_or_else(|| anyhow!("row event `{ev_type}` has no data"))?;
        self.decode_row(op, keys, data)
            .with_context(|| format!("bad data in row event `{ev_type}`"))
    }

    fn decode_row(&mut self, op: RowOp, keys: &str, data: &str) -> Result<Decoded> {
        // The spelling names the shape: the key list's length, the key list, then the names
        // as encoded (an encoded name holds no `&` or `=`).
        self.spelling.clear();
        self.spelling.push_str(&keys.len().to_string());
        self.spelling.push(':');
        self.spelling.push_str(keys);
        self.pairs.clear();
        let mut at = 0;
        let mut size = 0;
        for pair in data.split('&') {
            let start = at;
            at += pair.len() + 1;
            if pair.is_empty() {
                continue;
            }
            let (name, value) = match pair.find('=') {
                Some(eq) => (start..start + eq, Some(start + eq + 1..start + pair.len())),
                None => (start..start + pair.len(), None),
            };
            size += value.as_ref().map_or(0, Range::len);
            self.spelling.push('&');
            self.spelling.push_str(&data[name.clone()]);
            self.pairs.push((name, value));
        }
        let shape = match self.shapes.get(&self.spelling) {
            Some(shape) => shape.clone(),
            None => {
                let shape = Arc::new(self.shape(keys, data)?);
                if self.shapes.len() >= MAX_SHAPES {
                    self.shapes.clear();
                }
                self.shapes.insert(self.spelling.clone(), shape.clone());
                shape
            }
        };
        let mut text = String::with_capacity(size);
        let mut spans = Vec::with_capacity(self.pairs.len());
        for (index, (_, value)) in self.pairs.iter().enumerate() {
            let Some(value) = value else {
                spans.push(None);
                continue;
            };
            let start = text.len();
            let raw = &data[value.clone()];
            if raw.contains(['%', '+']) {
                self.bytes.clear();
                unescape_bytes(raw, &mut self.bytes)
                    .and_then(|()| utf8(raw, &self.bytes))
                    .with_context(|| format!("bad value of column `{}`", shape.columns[index]))?;
                // Checked just above.
                text.push_str(std::str::from_utf8(&self.bytes).unwrap_or_default());
            } else {
                text.push_str(raw);
            }
            spans.push(Some((start as u32, text.len() as u32)));
        }
        Ok(Decoded::Row(RowEvent {
            op,
            shape,
            text,
            spans,
        }))
    }

    /// The names of the event being decoded, from `ev_type`'s `keys` and `data`.
    fn shape(&self, keys: &str, data: &str) -> Result<Shape> {
        let pkey = if keys.is_empty() {
            Vec::new()
        } else {
            keys.split(',').map(str::to_owned).collect()
        };
        let columns = self
            .pairs
            .iter()
            .map(|(name, value)| {
                let name = unescape(&data[name.clone()])?;
                if name.is_empty() {
                    bail!(
                        "empty column name before `={}`",
                        snippet(value.clone().map_or("", |value| &data[value]))
                    );
                }
                Ok(name)
            })
            .collect::<Result<_>>()?;
        Ok(Shape { pkey, columns })
    }
}

/// Decodes one event's `ev_type` and `ev_data` in `logutriga` format ([`Decoder::decode`]).
pub fn decode(ev_type: &str, ev_data: Option<&str>) -> Result<Decoded> {
    Decoder::new().decode(ev_type, ev_data)
}

/// Undoes the url-encoding of one name.
fn unescape(text: &str) -> Result<String> {
    let mut bytes = Vec::with_capacity(text.len());
    unescape_bytes(text, &mut bytes)?;
    utf8(text, &bytes)?;
    String::from_utf8(bytes).map_err(|e| anyhow!("{e}"))
}

/// Checks that `bytes`, decoded from `text`, are UTF-8.
fn utf8(text: &str, bytes: &[u8]) -> Result<()> {
    match std::str::from_utf8(bytes) {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "`{}` decodes to bytes that are not UTF-8 (at byte {}); the provider database \
             must use UTF8",
            snippet(text),
            e.valid_up_to()
        ),
    }
}

/// Appends the bytes that url-encoded `text` stands for to `out`.
fn unescape_bytes(text: &str, out: &mut Vec<u8>) -> Result<()> {
    let bytes = text.as_bytes();
    let special = |b: &u8| *b == b'%' || *b == b'+';
    let mut i = 0;
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
    Ok(())
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

/// How to let replay set `session_replication_role`, for messages.
pub const REPLICA_GRANT: &str = "run replay as a superuser or, on PostgreSQL 15 and newer, \
    `GRANT SET ON PARAMETER session_replication_role TO <role>`";

/// Whether the session's role may set `session_replication_role`: a superuser, or on
/// PostgreSQL 15 and newer a role granted SET on it.
pub fn may_set_replica_role(client: &mut impl GenericClient) -> Result<bool> {
    let row = client
        .query_one(
            "select rolsuper, current_setting('server_version_num')::int >= 150000 \
             from pg_catalog.pg_roles where rolname = current_user",
            &[],
        )
        .context("reading the privileges of the subscriber's role")?;
    if row.get(0) {
        return Ok(true);
    }
    if !row.get::<_, bool>(1) {
        return Ok(false);
    }
    let row = client
        .query_one(
            "select has_parameter_privilege('session_replication_role', 'SET')",
            &[],
        )
        .context("reading the privileges of the subscriber's role")?;
    Ok(row.get(0))
}

/// The user triggers and rules of `dest` that fire on replayed rows when replay may not set
/// `session_replication_role = replica` (as `trigger NAME`, `rule NAME`): those enabled for
/// ordinary sessions. skyrep's own write guard is not one of them.
pub fn fire_on_replay(client: &mut impl GenericClient, dest: &TableName) -> Result<Vec<String>> {
    Ok(client
        .query(
            "select 'trigger ' || quote_ident(t.tgname) from pg_catalog.pg_trigger t \
             where t.tgrelid = pg_catalog.to_regclass($1) and not t.tgisinternal \
               and t.tgenabled in ('O', 'A') and t.tgname <> $2 \
             union all \
             select 'rule ' || quote_ident(r.rulename) from pg_catalog.pg_rewrite r \
             where r.ev_class = pg_catalog.to_regclass($1) and r.rulename <> '_RETURN' \
               and r.ev_enabled in ('O', 'A') \
             order by 1",
            &[&dest.quoted(), &DENY_TRIGGER],
        )
        .with_context(|| format!("reading the triggers and rules of {dest}"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// Warns, naming them, of the triggers and rules of `dest` that fire on replayed rows
/// because replay may not set the replica role ([`fire_on_replay`]).
pub fn warn_fire_on_replay(client: &mut impl GenericClient, dest: &TableName) -> Result<()> {
    let fire = fire_on_replay(client, dest)?;
    if !fire.is_empty() {
        log::warn!(
            "{dest}: {} fire on every replayed row, since the subscriber's role may not set \
             session_replication_role = replica (with which they do not, unless marked ENABLE \
             ALWAYS): they may change replicated rows or write twice; {REPLICA_GRANT}, or \
             disable them",
            fire.join(", ")
        );
    }
    Ok(())
}

/// Refuses `dest` if a foreign key of the subscriber between replicated tables, from or to
/// `dest`, has an action (cascade, set null, set default): without replication role `replica`
/// it would change replicated rows a second time (the provider's actions arrive as events).
pub fn check_fk_actions(client: &mut impl GenericClient, dest: &TableName) -> Result<()> {
    let rows = client
        .query(
            "with replicated as ( \
                 select c.oid from londiste.subscriber_tables s \
                 join pg_catalog.pg_class c on true \
                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname || '.' || c.relname = s.dest_table) \
             select format('%I on %s (references %s%s%s)', k.conname, k.conrelid::regclass, \
                           k.confrelid::regclass, \
                           case k.confdeltype when 'c' then ' on delete cascade' \
                                when 'n' then ' on delete set null' \
                                when 'd' then ' on delete set default' else '' end, \
                           case k.confupdtype when 'c' then ' on update cascade' \
                                when 'n' then ' on update set null' \
                                when 'd' then ' on update set default' else '' end) \
             from pg_catalog.pg_constraint k \
             where k.contype = 'f' \
               and (k.confdeltype in ('c', 'n', 'd') or k.confupdtype in ('c', 'n', 'd')) \
               and $1::text::regclass in (k.conrelid, k.confrelid) \
               and k.conrelid in (select oid from replicated) \
               and k.confrelid in (select oid from replicated) \
             order by 1",
            &[&dest.quoted()],
        )
        .with_context(|| format!("reading the foreign keys of {dest}"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let fkeys: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    bail!(
        "{dest}: foreign key {} would act on replicated rows a second time, and the subscriber's \
         role may not set session_replication_role = replica to keep it from that; {REPLICA_GRANT} \
         (or drop the action on the subscriber)",
        fkeys.join(", ")
    )
}

/// A subscriber table's catalog facts.
struct Table {
    /// Columns by name.
    columns: HashMap<String, Column>,
    /// Primary key columns in index order; empty if there is none.
    pkey: Vec<String>,
    /// The primary key is deferrable: inside a transaction several rows may hold a key.
    deferrable: bool,
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
    /// Values equal by the type are equal as text (integers, uuid, text with a deterministic
    /// collation), so the text identifies a key.
    exact: bool,
    /// A nondeterministic collation of the column, as SQL.
    collation: Option<String>,
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
                        case when t.typtype = 'd' then t.typbasetype else a.atttypid end \
                            in (16, 20, 21, 23, 26, 2950) \
                        or (case when t.typtype = 'd' then t.typbasetype else a.atttypid end \
                                in (25, 1043) and coalesce(co.collisdeterministic, true)), \
                        case when not co.collisdeterministic \
                             then format('%I.%I', cn.nspname, co.collname) end, \
                        a.attidentity = 'a' \
                 from pg_class c \
                 join pg_namespace n on n.oid = c.relnamespace \
                 join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 \
                                    and not a.attisdropped \
                 join pg_type t on t.oid = a.atttypid \
                 left join pg_index i on i.indrelid = c.oid and i.indisprimary \
                 left join pg_collation co on co.oid = a.attcollation \
                 left join pg_namespace cn on cn.oid = co.collnamespace \
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
                    exact: row.get(4),
                    collation: row.get(5),
                    identity_always: row.get(6),
                },
            );
        }
        pkey.sort();
        let deferrable: bool = tx
            .query_one(
                "select coalesce(bool_or(con.condeferrable), false) \
                 from pg_constraint con \
                 join pg_class c on c.oid = con.conrelid \
                 join pg_namespace n on n.oid = c.relnamespace \
                 where n.nspname = $1 and c.relname = $2 and con.contype = 'p'",
                &[&name.schema, &name.name],
            )
            .with_context(|| format!("reading the primary key of table {name} on the subscriber"))?
            .get(0);
        Ok(Table {
            columns,
            pkey: pkey.into_iter().map(|(_, column)| column).collect(),
            deferrable,
        })
    }
}

/// For each of `keys` (distinct key values of `dest`, in the order of its primary key), the
/// index of the first of them equal to it by the key columns' types (a timestamptz written in
/// two time zones, numeric 1.0 and 1.00, citext in two cases).
fn same_keys(
    tx: &mut Transaction<'_>,
    dest: &TableName,
    table: &Table,
    keys: &[&Key],
) -> Result<Vec<usize>> {
    if keys.len() < 2 {
        return Ok(vec![0; keys.len()]);
    }
    let names: Vec<String> = (1..=table.pkey.len()).map(|n| format!("k{n}")).collect();
    let typed = join(
        ", ",
        table.pkey.iter().zip(&names).map(|(column, name)| {
            let column = &table.columns[column];
            match &column.collation {
                Some(collation) => format!("cast(u.{name} as {}) collate {collation}", column.cast),
                None => format!("cast(u.{name} as {})", column.cast),
            }
        }),
    );
    let sql = format!(
        "select (min(u.i) over (partition by {typed}))::int - 1 \
         from unnest({}) with ordinality as u({}, i) order by u.i",
        join(", ", (1..=names.len()).map(|n| format!("${n}::text[]"))),
        names.join(", ")
    );
    let arrays: Vec<Vec<Option<&str>>> = (0..names.len())
        .map(|column| keys.iter().map(|key| key[column]).collect())
        .collect();
    let params: Vec<&(dyn ToSql + Sync)> = arrays
        .iter()
        .map(|array| array as &(dyn ToSql + Sync))
        .collect();
    let rows = tx
        .query(&sql, &params)
        .with_context(|| format!("comparing key values of {dest} by their types"))?;
    Ok(rows
        .iter()
        .map(|row| row.get::<_, i32>(0) as usize)
        .collect())
}

/// What identifies a group and its statement: the events' table, kind, key and columns.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    table: TableName,
    op: RowOp,
    shape: Arc<Shape>,
}

impl GroupKey {
    fn of(table: &TableName, event: &RowEvent) -> GroupKey {
        GroupKey {
            table: table.clone(),
            op: event.op,
            shape: event.shape.clone(),
        }
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
    /// Every row the statement names must be here: an UPDATE or DELETE without a copy
    /// condition. One that finds fewer means the subscriber differs from the provider.
    every_row: bool,
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
        let event_keys: HashSet<&String> = key.shape.pkey.iter().collect();
        if event_keys.len() != key.shape.pkey.len()
            || event_keys != table.pkey.iter().collect::<HashSet<_>>()
        {
            bail!(
                "the key of {dest} differs: events carry ({}) but the subscriber's primary key \
                 is ({})",
                key.shape.pkey.join(", "),
                table.pkey.join(", ")
            );
        }
        let mut seen = HashSet::new();
        for column in &key.shape.columns {
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
            for column in &key.shape.pkey {
                let index = key
                    .shape
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
        let stored = |&i: &usize| !table.columns[&key.shape.columns[i]].generated;
        match key.op {
            RowOp::Insert => {
                params.extend((0..key.shape.columns.len()).filter(stored));
                if params.is_empty() {
                    bail!("insert event for {dest} carries no columns to store");
                }
            }
            RowOp::Update => {
                params.extend(
                    (0..key.shape.columns.len())
                        .filter(|&i| !event_keys.contains(&key.shape.columns[i]))
                        .filter(stored),
                );
                if params.len() == keys {
                    return Ok(Plan {
                        pre: None,
                        statement: None,
                        params,
                        keys,
                        every_row: false,
                    });
                }
            }
            RowOp::Delete => {}
        }

        let names: Vec<&String> = params.iter().map(|&i| &key.shape.columns[i]).collect();
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
                    "delete from only {target} where ({key_list}) in \
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
                every_row: false,
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
                "with moved as (delete from only {target} as t using {source} \
                 where {matching} and ({differs}) returning {t_keys}) \
                 {insert} where ({u_keys}) in (select * from moved)"
            )
        });
        let sql = match key.op {
            RowOp::Insert => insert,
            RowOp::Update if set.is_empty() => moved.clone().unwrap_or_default(),
            RowOp::Update => format!(
                "update only {target} as t set {} from {source} where {matching}",
                join(
                    ", ",
                    set.iter()
                        .map(|c| format!("{} = {}", quote_ident(c), cast(c)))
                ),
            ),
            RowOp::Delete => {
                format!("delete from only {target} as t using {source} where {matching}")
            }
        };
        let pre = moved.filter(|_| !set.is_empty());
        let prepare = |tx: &mut Transaction<'_>, sql: &str| {
            tx.prepare(sql)
                .with_context(|| format!("preparing {}s into {dest}", key.op))
        };
        // An update that only moves rows (it sets nothing else) affects only those that moved.
        let every_row = match key.op {
            RowOp::Insert => false,
            RowOp::Update => !set.is_empty(),
            RowOp::Delete => true,
        };
        Ok(Plan {
            pre: pre.map(|sql| prepare(tx, &sql)).transpose()?,
            statement: Some(prepare(tx, &sql)?),
            params,
            keys,
            every_row,
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
    /// The table's index in [`Pending::tables`].
    table: usize,
    plan: Arc<Plan>,
    /// One text array per statement parameter.
    arrays: Vec<Vec<Option<&'a str>>>,
    /// Events taken in (more than the rows in `arrays` when updates of one key merged).
    events: usize,
    /// Updates: row index in `arrays` by key values.
    rows_by_key: HashMap<Key<'a>, usize>,
}

/// Which row of its table an event added to a [`Group`] changes.
#[derive(Clone, Copy)]
enum Identity<'k, 'a> {
    /// The row this key identifies; the key's text may differ between events of one row.
    Key(&'k Key<'a>),
    /// The row the event's key values name.
    Text,
    /// A row no other event of the group changes.
    Own,
}

impl<'a> Group<'a> {
    fn new(key: GroupKey, table: usize, plan: Arc<Plan>) -> Group<'a> {
        Group {
            arrays: vec![Vec::new(); plan.params.len()],
            key,
            table,
            plan,
            events: 0,
            rows_by_key: HashMap::new(),
        }
    }

    /// Whether `event`, of table `table` (its index in [`Pending::tables`]), belongs here.
    fn matches(&self, table: usize, event: &RowEvent) -> bool {
        self.table == table
            && self.key.op == event.op
            && (Arc::ptr_eq(&self.key.shape, &event.shape) || self.key.shape == event.shape)
    }

    /// Takes in `event`, a change of the row `identity` tells.
    fn add(&mut self, event: &'a RowEvent, identity: Identity<'_, 'a>) {
        self.events += 1;
        if self.plan.statement.is_none() {
            return;
        }
        if self.key.op == RowOp::Update {
            // The event carries the whole new row, so a later update of the key replaces an
            // earlier one (one source row per target row, as UPDATE ... FROM needs).
            let key = match identity {
                Identity::Key(identity) => Some(identity.clone()),
                Identity::Text => Some(
                    self.plan.params[..self.plan.keys]
                        .iter()
                        .map(|&i| event.value(i))
                        .collect(),
                ),
                Identity::Own => None,
            };
            if let Some(key) = key {
                match self.rows_by_key.entry(key) {
                    Entry::Occupied(e) => {
                        let index = *e.get();
                        for (array, &i) in self.arrays.iter_mut().zip(&self.plan.params) {
                            array[index] = event.value(i);
                        }
                        return;
                    }
                    Entry::Vacant(e) => {
                        e.insert(self.arrays[0].len());
                    }
                }
            }
        }
        for (array, &i) in self.arrays.iter_mut().zip(&self.plan.params) {
            array.push(event.value(i));
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
    fn row<'a, E: Events + ?Sized>(&'a self, events: &'a E) -> &'a RowEvent {
        self.merged
            .as_ref()
            .unwrap_or_else(|| events.at(self.event))
    }
}

/// Events by their index in [`Pending::events`].
trait Events {
    fn at(&self, index: usize) -> &RowEvent;
}

impl Events for [(usize, RowEvent)] {
    fn at(&self, index: usize) -> &RowEvent {
        &self[index].1
    }
}

/// The pending events with the values of some written as the subscriber writes them
/// ([`Applier::alike`]).
struct Alike<'a> {
    events: &'a [(usize, RowEvent)],
    /// The events rewritten, by index.
    rewritten: HashMap<usize, RowEvent>,
}

impl Events for Alike<'_> {
    fn at(&self, index: usize) -> &RowEvent {
        self.rewritten.get(&index).unwrap_or(&self.events[index].1)
    }
}

/// Lays the columns of update `event` over `image` (an update carries the columns it sets).
fn merge(image: &mut RowEvent, event: &RowEvent) {
    if Arc::ptr_eq(&image.shape, &event.shape) || image.columns() == event.columns() {
        image.text.clone_from(&event.text);
        image.spans.clone_from(&event.spans);
        return;
    }
    let mut columns = image.columns().to_vec();
    let mut values: Vec<Option<&str>> = (0..columns.len()).map(|i| image.value(i)).collect();
    for (name, value) in event.values() {
        match columns.iter().position(|column| column == name) {
            Some(at) => values[at] = value,
            None => {
                columns.push(name.to_string());
                values.push(value);
            }
        }
    }
    let shape = Arc::new(Shape {
        pkey: image.pkey().to_vec(),
        columns,
    });
    let merged = RowEvent::with_values(image.op, shape, values.iter().copied());
    *image = merged;
}

/// What the events of one row add up to, whether or not the row existed before them.
enum Outcome {
    /// Delete the row if it is there (the event that deleted it, for its key).
    Delete(usize),
    /// Update the row, if it is there, to this image.
    Update(Image),
    /// Insert this row.
    Insert(Image),
}

/// A row with the key being followed, among those that hold it while events go by (under a
/// deferrable key, several rows hold one key until the provider's transaction ends).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Held {
    /// The row that had the key before the events (its values unknown).
    before: bool,
    /// The insert that made the row, if the events did.
    insert: Option<usize>,
    /// Updates since, in order: the row's values are those of the last event setting each.
    updates: Vec<usize>,
}

impl Held {
    /// The row's value of `column`, where the events tell it.
    fn value<'a, E: Events + ?Sized>(
        &self,
        events: &'a E,
        column: &str,
    ) -> Option<Option<&'a str>> {
        self.updates
            .iter()
            .rev()
            .chain(self.insert.iter())
            .find_map(|&i| events.at(i).get(column))
    }

    /// The row's values are known (it was inserted or updated by the events).
    fn known(&self) -> bool {
        self.insert.is_some() || !self.updates.is_empty()
    }

    /// Whether the row is the one a delete carrying `event`'s values removed.
    fn is<E: Events + ?Sized>(&self, events: &E, event: &RowEvent) -> bool {
        self.known()
            && event
                .values()
                .all(|(name, v)| self.value(events, name).is_none_or(|mine| mine == v))
    }

    /// The row's image as one event: the insert or first update with the later ones merged.
    fn image<E: Events + ?Sized>(&self, events: &E, op: RowOp) -> Image {
        let mut steps = self.insert.iter().chain(&self.updates).copied();
        let first = steps.next().expect("a known row has an event");
        let mut merged: Option<RowEvent> = None;
        for step in steps {
            merge(
                merged.get_or_insert_with(|| events.at(first).clone()),
                events.at(step),
            );
        }
        if events.at(first).op != op {
            merged.get_or_insert_with(|| events.at(first).clone()).op = op;
        }
        Image {
            event: first,
            merged,
        }
    }
}

/// What a key's events add up to.
enum Verdict {
    /// This change, or none; true if rows held the key together on the way (so replaying
    /// the events one by one would not give it).
    Known(Option<Outcome>, bool),
    /// It depends on whether the subscriber has the row: ask it.
    Ask,
    /// Several rows still hold the key: the provider's transaction goes on past the events.
    Unsettled,
    /// The events contradict each other: only replaying them one by one can tell.
    InOrder,
    /// Several outcomes remain possible.
    Unknown,
    /// More courses than are followed ([`MAX_COURSES`]) remain possible.
    TooMany,
    /// The subscriber's row (or its absence) fits none of the events' courses that end with
    /// the key held by one row or none: the subscriber differs from the provider.
    Diverged,
}

/// One possible course of a key's rows through the events.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Course {
    rows: Vec<Held>,
    /// More than one row held the key at some point.
    crowded: bool,
}

/// A held row's state as later events see it: `None` for the row from before, untouched
/// (its values unknown), else its values by column.
type RowState<'e> = Option<Vec<(&'e str, Option<&'e str>)>>;

impl Course {
    /// Where the course stands: whether rows held the key together, and the held rows'
    /// states in a fixed order. Courses that stand alike go on alike, whichever events made
    /// their rows (as where a later update of a row overwrote all an earlier one set), so
    /// one of them stands for all.
    fn state<'e, E: Events + ?Sized>(&self, events: &'e E) -> (bool, Vec<RowState<'e>>) {
        let mut rows: Vec<RowState<'e>> = self
            .rows
            .iter()
            .map(|row| {
                row.known().then(|| {
                    let mut values = BTreeMap::new();
                    for &i in row.insert.iter().chain(&row.updates) {
                        values.extend(events.at(i).values());
                    }
                    values.into_iter().collect()
                })
            })
            .collect();
        rows.sort_unstable();
        (self.crowded, rows)
    }
}

/// Courses followed per key at most (after those that stand alike are merged); more make
/// the key's outcome unknown.
const MAX_COURSES: usize = 256;

/// How a key's events add up: for each of the two starts (the row absent before the events,
/// or present with values unknown), every course the events allow. A delete removes the held
/// row its values match (or else the row from before, or else any); an update changes the
/// one held row (or any of several).
struct KeyRun {
    absent: Vec<Course>,
    present: Vec<Course>,
    /// More courses than [`MAX_COURSES`], from the absent and from the present start.
    overflow: [bool; 2],
}

impl KeyRun {
    fn new() -> KeyRun {
        let course = |rows| Course {
            rows,
            crowded: false,
        };
        let before = Held {
            before: true,
            insert: None,
            updates: Vec::new(),
        };
        KeyRun {
            absent: vec![course(Vec::new())],
            present: vec![course(vec![before])],
            overflow: [false; 2],
        }
    }

    fn add<E: Events + ?Sized>(&mut self, index: usize, events: &E) {
        for (start, courses) in [&mut self.absent, &mut self.present]
            .into_iter()
            .enumerate()
        {
            // A delete removes a row its values match; only where no course has one (the
            // values' text changed with the session's settings) may it be any row.
            let mut next = Vec::new();
            for course in courses.iter() {
                step(course.clone(), index, events, false, &mut next);
            }
            if next.is_empty() {
                for course in courses.iter() {
                    step(course.clone(), index, events, true, &mut next);
                }
            }
            if next.len() > 1 {
                let mut seen = HashSet::new();
                next.retain(|course| seen.insert(course.state(events)));
            }
            if next.len() > MAX_COURSES {
                self.overflow[start] = true;
                next.truncate(MAX_COURSES);
            }
            *courses = next;
        }
    }

    /// What the events add up to; `exists` tells whether the subscriber has the row, where
    /// that was asked. The courses' ends are compared by `alike` (the events with values of
    /// one text for one value, as given to [`KeyRun::add`]); the outcome is made of `events`.
    /// `open`: the events may stop inside a provider transaction that holds the key with
    /// several rows (a deferrable key, applied before the batch's end), so a course that ends
    /// so is possible, and such a key waits for more of its events.
    fn outcome<A: Events + ?Sized>(
        &self,
        events: &[(usize, RowEvent)],
        alike: &A,
        last: usize,
        exists: Option<bool>,
        open: bool,
    ) -> Verdict {
        if open {
            let crowded_end = |courses: &[Course]| courses.iter().any(|c| c.rows.len() > 1);
            let (absent, present) = (crowded_end(&self.absent), crowded_end(&self.present));
            match exists {
                None if absent && present => return Verdict::Unsettled,
                None if absent || present => return Verdict::Ask,
                Some(true) if present => return Verdict::Unsettled,
                Some(false) if absent => return Verdict::Unsettled,
                _ => {}
            }
        }
        let crowded = self
            .absent
            .iter()
            .chain(&self.present)
            .any(|c| c.rows.len() > 1);
        let settled = |courses: &[Course], start: bool| -> Vec<Course> {
            if exists.is_some_and(|exists| exists != start) {
                return Vec::new();
            }
            courses
                .iter()
                .filter(|c| c.rows.len() <= 1)
                .cloned()
                .collect()
        };
        let (absent, present) = (settled(&self.absent, false), settled(&self.present, true));
        // Courses past counting from one start (rows that hold the key together branch on
        // updates): the subscriber's row may tell that it is the other start. Else nothing
        // tells the outcome, and replaying the events one by one would not give it either
        // (an update or delete of one of the rows would change them all).
        let overflow = match exists {
            Some(exists) => self.overflow[usize::from(exists)],
            None => self.overflow.contains(&true),
        };
        if overflow {
            return match exists {
                None => Verdict::Ask,
                Some(_) => Verdict::TooMany,
            };
        }
        if absent.is_empty() && present.is_empty() {
            return match (exists, crowded) {
                (None, true) => Verdict::Unsettled,
                // From the subscriber's start the events find no row they change, or end
                // with several rows holding the key, which the provider never had at the end
                // of its transaction: replaying them would leave such rows.
                (Some(_), true) => Verdict::Diverged,
                // No course is left with several rows: replaying the events one by one
                // stops at the first that finds no row.
                (_, false) => Verdict::InOrder,
            };
        }
        // Each start must lead to one end (rows alike by their events are one end): `None`
        // where it leads to several.
        let end = |courses: &[Course]| -> Option<Option<Held>> {
            let values = |course: &Course| {
                course.rows.first().map(|r| {
                    r.known()
                        .then(|| r.image(alike, RowOp::Update).row(alike).clone())
                })
            };
            let first = courses.first().map(values);
            courses
                .iter()
                .all(|c| Some(values(c)) == first)
                .then(|| courses.first().and_then(|c| c.rows.first().cloned()))
        };
        let (from_absent, from_present) = (end(&absent), end(&present));
        let ambiguous = from_absent.is_none() || from_present.is_none();
        let (from_absent, from_present) = (
            from_absent.filter(|_| !absent.is_empty()),
            from_present.filter(|_| !present.is_empty()),
        );
        // Where only rows held together make a start possible, or a start leads to several
        // ends, the subscriber's row decides which start it is.
        let only_crowded =
            |courses: &[Course]| !courses.is_empty() && courses.iter().all(|c| c.crowded);
        let lone = absent.is_empty() || present.is_empty();
        if exists.is_none()
            && (ambiguous || (lone && (only_crowded(&absent) || only_crowded(&present))))
        {
            return Verdict::Ask;
        }
        if ambiguous {
            return Verdict::Unknown;
        }
        let mut courses = absent.iter().chain(&present);
        let crowded = match exists {
            Some(_) => courses.any(|c| c.crowded),
            None => courses.all(|c| c.crowded),
        };
        let outcome = match (from_absent, from_present) {
            (Some(Some(row)), None) => Some(Outcome::Insert(row.image(events, RowOp::Insert))),
            (Some(Some(_)), Some(_)) => return Verdict::InOrder,
            (_, Some(None)) => Some(Outcome::Delete(last)),
            (_, Some(Some(row))) if row.known() => {
                Some(Outcome::Update(row.image(events, RowOp::Update)))
            }
            // Absent stays absent, the row from before stays as it was.
            _ => None,
        };
        Verdict::Known(outcome, crowded)
    }
}

/// The courses `course` goes on to with event `index`, added to `out` (none if the event is
/// impossible in it). A delete removes the held row its values match, else the row from
/// before, else (if `loose`) any row.
fn step<E: Events + ?Sized>(
    mut course: Course,
    index: usize,
    events: &E,
    loose: bool,
    out: &mut Vec<Course>,
) {
    let event = events.at(index);
    match event.op {
        RowOp::Insert => {
            course.rows.push(Held {
                before: false,
                insert: Some(index),
                updates: Vec::new(),
            });
            course.crowded |= course.rows.len() > 1;
            out.push(course);
        }
        RowOp::Update => {
            for at in 0..course.rows.len() {
                let mut next = course.clone();
                next.rows[at].updates.push(index);
                out.push(next);
            }
        }
        RowOp::Delete => {
            let matching = course.rows.iter().position(|row| row.is(events, event));
            let before = course
                .rows
                .iter()
                .position(|row| row.before && !row.known());
            match matching.or(before) {
                Some(at) => {
                    course.rows.remove(at);
                    out.push(course);
                }
                None if loose => {
                    for at in 0..course.rows.len() {
                        let mut next = course.clone();
                        next.rows.remove(at);
                        out.push(next);
                    }
                }
                None => {}
            }
        }
    }
}

/// The events queued since the last flush, in order.
#[derive(Default)]
struct Pending {
    /// Tables in the order of their first event.
    tables: Vec<TableName>,
    /// The events in order, with their table's index.
    events: Vec<(usize, RowEvent)>,
    /// Each event's id in the queue (for messages).
    ids: Vec<i64>,
    /// Each (table, kind) in the order of its first event.
    kinds: Vec<(usize, RowOp)>,
    /// Bytes of values queued.
    bytes: usize,
    /// Events queued, by kind.
    counts: [u64; 3],
    /// Times applying was put off because some key was held by several rows at once.
    held: u32,
}

impl Pending {
    fn push(&mut self, dest: &TableName, event: RowEvent, id: i64) {
        let table = match self.tables.iter().position(|t| t == dest) {
            Some(table) => table,
            None => {
                self.tables.push(dest.clone());
                self.tables.len() - 1
            }
        };
        self.bytes += event.size();
        self.counts[event.op.index()] += 1;
        if !self.kinds.contains(&(table, event.op)) {
            self.kinds.push((table, event.op));
        }
        self.events.push((table, event));
        self.ids.push(id);
    }

    /// The events of each table on their own, in their order.
    fn split(self) -> Vec<Pending> {
        if self.tables.len() < 2 {
            return vec![self];
        }
        let mut parts: Vec<Pending> = self.tables.iter().map(|_| Pending::default()).collect();
        for ((table, event), id) in self.events.into_iter().zip(self.ids) {
            parts[table].push(&self.tables[table], event, id);
        }
        parts
    }

    /// The events of `parts` together again, in the queue's order (event ids).
    fn join(parts: Vec<Pending>) -> Pending {
        let mut all: Vec<(i64, TableName, RowEvent)> = Vec::new();
        for part in parts {
            for ((table, event), id) in part.events.into_iter().zip(part.ids) {
                all.push((id, part.tables[table].clone(), event));
            }
        }
        all.sort_by_key(|(id, _, _)| *id);
        let mut pending = Pending::default();
        for (id, table, event) in all {
            pending.push(&table, event, id);
        }
        pending
    }

    /// Event `at` for an error message: its id in the queue, what it did, where, and the
    /// values of its key columns.
    fn describe(&self, at: usize) -> String {
        let (table, event) = &self.events[at];
        let key: Vec<String> = event
            .pkey()
            .iter()
            .map(|column| {
                let value = event.get(column).flatten();
                format!("{column}={}", value.map_or("NULL".into(), snippet))
            })
            .collect();
        format!(
            "event {}: {} of {} with key {}",
            self.ids[at],
            event.op,
            self.tables[*table],
            key.join(", ")
        )
    }

    fn full(&self) -> bool {
        let scale = 1usize << self.held.min(16);
        self.events.len() >= PENDING_EVENTS * scale || self.bytes >= PENDING_BYTES * scale
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

/// Where the columns of a table's key are among an event's values; `None` where the event
/// does not carry the key.
type Places = Option<Vec<usize>>;

/// A key's values, equal for rows the key's types call equal.
type Key<'a> = Vec<Option<&'a str>>;

/// The pending events by row: each row's events in order, the rows in the order of their
/// first event.
struct Runs {
    /// Each row's table, and where its events are in `events`.
    rows: Vec<(usize, Range<usize>)>,
    /// The rows' events (their indices in [`Pending::events`]), row after row; an event
    /// that does not carry the subscriber's key is in no row.
    events: Vec<usize>,
}

impl Runs {
    /// The events of `pending` by row; `keys[i]` is the row identity of event `i`.
    fn of(pending: &Pending, keys: &[Option<Key>]) -> Runs {
        let mut ids: HashMap<(usize, &Key), usize> = HashMap::with_capacity(keys.len());
        let mut row_of = Vec::with_capacity(keys.len());
        let mut rows: Vec<(usize, Range<usize>)> = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let Some(key) = key else {
                row_of.push(None);
                continue;
            };
            let table = pending.events[index].0;
            let row = *ids.entry((table, key)).or_insert_with(|| {
                rows.push((table, 0..0));
                rows.len() - 1
            });
            // Counted in `end` for now.
            rows[row].1.end += 1;
            row_of.push(Some(row));
        }
        let mut start = 0;
        for (_, range) in &mut rows {
            let count = range.end;
            *range = start..start;
            start += count;
        }
        let mut events = vec![0; start];
        for (index, row) in row_of.into_iter().enumerate() {
            if let Some(row) = row {
                let range = &mut rows[row].1;
                events[range.end] = index;
                range.end += 1;
            }
        }
        Runs { rows, events }
    }

    /// Each row's table and events.
    fn iter(&self) -> impl Iterator<Item = (usize, &[usize])> {
        self.rows
            .iter()
            .map(|(table, range)| (*table, &self.events[range.clone()]))
    }
}

/// The pending events added up per row.
struct Netting {
    /// Each row's net change with its table, in the order of the row's first event.
    changes: Vec<(usize, Outcome)>,
    /// The events (indices in [`Pending::events`]) of the rows whose events only make sense
    /// applied one by one (or not at all), and those that carry no key, in order.
    in_order: Vec<usize>,
    /// Replaying one by one would not give the outcome (keys moved through each other).
    crowded: bool,
    /// A key held by several rows (the provider's transaction goes on past these events).
    unsettled: Option<String>,
    /// Rows whose change depends on whether the subscriber has them: (table, first event).
    ask: Vec<(usize, usize)>,
}

/// Adds up the events per row; `keys[i]` is the row identity of event `i` (`None`: the event
/// cannot be netted); `exists` tells, by the index of a row's first event, whether the
/// subscriber has the row, where that was asked. `alike` are the events with each value
/// written as one text whatever the session that wrote it ([`Applier::alike`]): which of the
/// rows holding a key a delete removed is told by them. `open[t]`: the events of table `t` may
/// stop inside a provider transaction that holds a key of it with several rows (see
/// [`KeyRun::outcome`]).
fn net(
    pending: &Pending,
    keys: &[Option<Key>],
    runs: &Runs,
    exists: &HashMap<usize, bool>,
    alike: &Alike,
    open: &[bool],
) -> Result<Netting> {
    let events = &pending.events;
    let mut netting = Netting {
        changes: Vec::with_capacity(runs.rows.len()),
        in_order: keys
            .iter()
            .enumerate()
            .filter(|(_, key)| key.is_none())
            .map(|(index, _)| index)
            .collect(),
        crowded: false,
        unsettled: None,
        ask: Vec::new(),
    };
    for (table, run) in runs.iter() {
        let last = *run.last().expect("a run has an event");
        if let ([only], false) = (run, open[table]) {
            let only = *only;
            netting.changes.push((
                table,
                match events[only].1.op {
                    RowOp::Delete => Outcome::Delete(only),
                    RowOp::Update => Outcome::Update(Image {
                        event: only,
                        merged: None,
                    }),
                    RowOp::Insert => Outcome::Insert(Image {
                        event: only,
                        merged: None,
                    }),
                },
            ));
            continue;
        }
        let mut key_run = KeyRun::new();
        for &index in run {
            key_run.add(index, alike);
        }
        let run_text = || {
            format!(
                "{} key ({}), events {} to {}",
                pending.tables[table],
                key_text(&keys[last]),
                pending.ids[run[0]],
                pending.ids[last]
            )
        };
        match key_run.outcome(
            events,
            alike,
            last,
            exists.get(&run[0]).copied(),
            open[table],
        ) {
            Verdict::Known(outcome, crowded) => {
                netting.crowded |= crowded;
                netting.changes.extend(outcome.map(|o| (table, o)));
            }
            Verdict::Ask => netting.ask.push((table, run[0])),
            Verdict::Unsettled => netting.unsettled = Some(run_text()),
            Verdict::InOrder => netting.in_order.extend_from_slice(run),
            Verdict::Unknown => bail!(
                "cannot tell what the events of {} add up to: several rows held the key at once",
                run_text()
            ),
            Verdict::TooMany => bail!(
                "cannot tell what the events of {} add up to: several rows held the key at once, \
                 with more than {MAX_COURSES} ways the events may have gone through them",
                run_text()
            ),
            Verdict::Diverged => bail!(
                "the events of {} do not fit the subscriber, which {} the row: the subscriber \
                 differs from the provider",
                run_text(),
                if exists.get(&run[0]) == Some(&true) {
                    "has"
                } else {
                    "does not have"
                }
            ),
        }
    }
    netting.in_order.sort_unstable();
    Ok(netting)
}

/// A step of applying a part in which keys moved through each other ([`CROWDED_ORDERS`]).
#[derive(Clone, Copy)]
enum Step {
    /// The net changes that delete rows.
    Deletes,
    /// The events that apply only in their order ([`Netting::in_order`]).
    Events,
    /// The other net changes: updates, then inserts.
    Rest,
}

/// The orders in which a part's net changes, where keys moved through each other, are applied
/// with its events that apply only in their order. Any order that goes through ends the same,
/// but the subscriber's constraints between the rows (a foreign key, a unique column) may let
/// only some through. First the net deletes, then the events, then the net updates and
/// inserts: what the deletes free (a unique value, a referenced row) is free for the events,
/// and what the events add is there for the updates and inserts, as the net changes among
/// themselves are ordered. Then the events before all net changes (they free what the net
/// changes take, as a delete of the rows that reference a row the net changes delete), and
/// last after all of them (they need what the net changes add, as an insert of a row that
/// references a row the net changes insert).
const CROWDED_ORDERS: [[Step; 3]; 3] = [
    [Step::Deletes, Step::Events, Step::Rest],
    [Step::Events, Step::Deletes, Step::Rest],
    [Step::Deletes, Step::Rest, Step::Events],
];

/// Values of one column: their places (event, value) among the pending events, and their
/// texts.
type Values<'a> = (Vec<(usize, usize)>, Vec<&'a str>);

/// A key's values for messages.
fn key_text(key: &Option<Key>) -> String {
    match key {
        Some(values) => join(
            ", ",
            values
                .iter()
                .map(|v| v.map_or("NULL".to_string(), quote_literal)),
        ),
        None => "?".to_string(),
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
/// or after DDL on the tables). Statements keep to `dest`'s own rows (`ONLY`), not those of
/// tables inheriting from it. An UPDATE or DELETE that finds no row is an error: the
/// subscriber differs from the provider. The applier never commits.
#[derive(Default)]
pub struct Applier {
    tables: HashMap<TableName, Table>,
    plans: HashMap<GroupKey, Arc<Plan>>,
    /// Copy conditions by table.
    conditions: HashMap<TableName, String>,
    pending: Pending,
    counts: [u64; 3],
    /// Whether this connection may set `session_replication_role` (asked once).
    replica: Option<bool>,
    /// Tables emptied by the TRUNCATE events queued last, in order (see [`Applier::truncate`]).
    truncates: Vec<TableName>,
}

impl Applier {
    /// An applier with nothing cached or pending.
    pub fn new() -> Applier {
        Applier::default()
    }

    /// Starts applying in `tx`: sets `skyrep.replay = on` (which the subscriber's deny
    /// triggers let through) and, where this connection's role may, `session_replication_role
    /// = replica`, so that the subscriber's foreign-key actions and ordinary triggers do not
    /// act on replicated rows (the provider's own actions arrive as events). Without that
    /// privilege, tables whose foreign-key actions would act on replicated rows are refused
    /// when their events are applied ([`check_fk_actions`]).
    pub fn begin(&mut self, tx: &mut Transaction<'_>) -> Result<()> {
        let replica = match self.replica {
            Some(replica) => replica,
            None => {
                let replica = may_set_replica_role(tx)?;
                if !replica {
                    log::warn!(
                        "the subscriber's role may not set session_replication_role: foreign-key \
                         actions that would act on replicated rows are refused; {REPLICA_GRANT}"
                    );
                }
                *self.replica.insert(replica)
            }
        };
        tx.batch_execute(if replica {
            "set local skyrep.replay = on; set local session_replication_role = replica"
        } else {
            "set local skyrep.replay = on"
        })
        .context("setting up the replay transaction")
    }

    /// Queues one change for `dest` (event `id` of the queue, for messages), and applies
    /// what is queued when that is much.
    pub fn push(
        &mut self,
        tx: &mut Transaction<'_>,
        dest: &TableName,
        mut event: RowEvent,
        id: i64,
    ) -> Result<()> {
        if self.truncates.contains(dest) {
            self.flush_truncates(tx)?;
        }
        // `ev_type` joins the key columns' names with commas, so a name with a comma in it
        // reads as several: where the text is the subscriber's key, that key is meant.
        let pkey = &self.table(tx, dest)?.pkey;
        if event.pkey().len() != pkey.len() && event.pkey().join(",") == pkey.join(",") {
            event = event.with_pkey(pkey);
        }
        self.pending.push(dest, event, id);
        if self.pending.full() {
            self.apply_rows(tx, false)?;
        }
        Ok(())
    }

    /// Applies the row changes pending, then empties `dest`: all of it, or with a copy
    /// condition only the rows that meet it (the table may hold other rows, from elsewhere).
    /// Tables truncated in a row, with no row change of one of them in between, are emptied
    /// by one TRUNCATE, as the provider's `TRUNCATE a, b` or `TRUNCATE a CASCADE` did: a table
    /// referenced by a foreign key can only be truncated together with its referencing ones.
    ///
    /// Every transaction that wrote `dest` before the TRUNCATE had ended (the TRUNCATE waited
    /// for their locks), but others may go on past it: where one holds a key of another table
    /// with several rows, that table's rows wait, and only `dest`'s are applied first.
    pub fn truncate(&mut self, tx: &mut Transaction<'_>, dest: &TableName) -> Result<()> {
        if !self.apply_rows(tx, false)? {
            let pending = std::mem::take(&mut self.pending);
            let held = pending.held;
            let mut parts = pending.split();
            let mine = parts
                .iter()
                .position(|part| part.tables.first() == Some(dest))
                .map(|at| parts.remove(at));
            self.pending = Pending::join(parts);
            self.pending.held = held;
            if let Some(mine) = mine {
                self.apply_pending(tx, mine, true)?;
            }
        }
        if !self.truncates.contains(dest) {
            self.truncates.push(dest.clone());
        }
        Ok(())
    }

    /// Empties the tables of the TRUNCATE events queued. Where a foreign key of the subscriber
    /// keeps a table from being truncated and replication role `replica` is on, its rows are
    /// deleted instead (no foreign-key action fires in that role).
    fn flush_truncates(&mut self, tx: &mut Transaction<'_>) -> Result<()> {
        let truncates = std::mem::take(&mut self.truncates);
        let mut whole = Vec::new();
        for dest in &truncates {
            match self.conditions.get(dest) {
                Some(condition) => {
                    let sql = format!("delete from only {} where ({condition})", dest.quoted());
                    tx.execute(&sql, &[])
                        .with_context(|| format!("truncating {dest}"))?;
                }
                None => whole.push(dest),
            }
        }
        if whole.is_empty() {
            return Ok(());
        }
        let names = join(", ", whole.iter().map(|dest| dest.to_string()));
        let sql = format!(
            "truncate {}",
            join(
                ", ",
                whole.iter().map(|dest| format!("only {}", dest.quoted()))
            )
        );
        if self.replica == Some(true) {
            let truncated = self.attempt(tx, "a truncate", |_, sp| {
                sp.batch_execute(&sql).map_err(anyhow::Error::from)
            })?;
            if !truncated {
                for dest in &whole {
                    tx.batch_execute(&format!("delete from only {}", dest.quoted()))
                        .with_context(|| format!("truncating {dest} by deleting its rows"))?;
                }
            }
            return Ok(());
        }
        tx.batch_execute(&sql).with_context(|| {
            format!(
                "truncating {names} (a foreign key of a table not truncated with it keeps a \
                 table from being truncated; with session_replication_role = replica its rows \
                 are deleted instead: {REPLICA_GRANT})"
            )
        })?;
        Ok(())
    }

    /// Applies what is pending; call before committing. After an error nothing is pending.
    pub fn flush(&mut self, tx: &mut Transaction<'_>) -> Result<()> {
        self.flush_truncates(tx)?;
        self.flush_rows(tx)
    }

    /// Applies the row changes pending.
    fn flush_rows(&mut self, tx: &mut Transaction<'_>) -> Result<()> {
        self.apply_rows(tx, true).map(|_| ())
    }

    /// Applies the row changes pending. Unless they are the `last` of the provider's
    /// transactions so far, puts them off (returns false) while several rows hold a key.
    fn apply_rows(&mut self, tx: &mut Transaction<'_>, last: bool) -> Result<bool> {
        let pending = std::mem::take(&mut self.pending);
        match self.apply_pending(tx, pending, last)? {
            Some(put_off) => {
                self.pending = put_off;
                Ok(false)
            }
            None => Ok(true),
        }
    }

    /// Applies the row changes of `pending`, or (unless they are the `last` of the
    /// provider's transactions so far) returns them all while several rows hold a key.
    fn apply_pending(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: Pending,
        last: bool,
    ) -> Result<Option<Pending>> {
        if pending.events.is_empty() {
            return Ok(None);
        }
        // In the replica role no foreign key acts or checks between the tables, so each
        // table's changes are applied on their own terms: a swap of unique values in one
        // table that only the events' order can apply does not force that order onto keys
        // that moved through each other in another (where only the net changes are right).
        let held = pending.held;
        let parts = if self.replica == Some(true) {
            pending.split()
        } else {
            vec![pending]
        };
        let mut nettings = Vec::new();
        for part in &parts {
            let keys = self.row_keys(tx, part)?;
            let runs = Runs::of(part, &keys);
            let alike = self.alike(tx, part, &runs)?;
            // Before the batch's end a provider transaction may hold a deferrable key with
            // several rows past these events.
            let mut open = Vec::new();
            for dest in &part.tables {
                open.push(!last && self.table(tx, dest)?.deferrable);
            }
            let mut netting = net(part, &keys, &runs, &HashMap::new(), &alike, &open)?;
            if !netting.ask.is_empty() {
                let exists = self.exists(tx, part, &keys, &netting.ask)?;
                netting = net(part, &keys, &runs, &exists, &alike, &open)?;
            }
            if let Some(unsettled) = &netting.unsettled {
                if last {
                    bail!("{unsettled}: several rows still hold the key at the end of the batch");
                }
                let mut pending = Pending::join(parts);
                pending.held = held + 1;
                return Ok(Some(pending));
            }
            nettings.push((keys, netting));
        }
        for (part, (keys, netting)) in parts.iter().zip(nettings) {
            self.apply_part(tx, part, &keys, netting)?;
        }
        Ok(None)
    }

    /// Applies the settled changes of `pending`: their net changes where keys moved through
    /// each other, else the net changes if the subscriber takes them, else runs of events in
    /// their order, else one event at a time.
    fn apply_part(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &Pending,
        keys: &[Option<Key>],
        netting: Netting,
    ) -> Result<()> {
        let several = pending.events.len() > 1;
        let mut done = false;
        if netting.crowded {
            // Keys moved through each other: only the net changes are right for them.
            self.apply_crowded(tx, pending, keys, netting.changes, &netting.in_order)?;
            done = true;
        } else if several && netting.in_order.is_empty() {
            done = self.attempt(tx, "net changes", |applier, sp| {
                applier.apply_net(sp, pending, &netting.changes)
            })?;
        }
        let every = || 0..pending.events.len();
        if several && !done {
            done = self.attempt(tx, "runs of events", |applier, sp| {
                applier.apply_in_order(sp, pending, keys, every(), false)
            })?;
        }
        if !done {
            self.apply_in_order(tx, pending, keys, every(), true)?;
        }
        for (total, n) in self.counts.iter_mut().zip(pending.counts) {
            *total += n;
        }
        Ok(())
    }

    /// Applies a part in which keys moved through each other: the net `changes`, since
    /// replaying those keys' events one by one would not give them, and the events of
    /// `in_order` ([`Netting::in_order`]) in their order. The two change different rows, so
    /// every order the subscriber's constraints let through ends the same; those of
    /// [`CROWDED_ORDERS`] are tried in turn, each in a savepoint. Where none goes through, the
    /// first is applied with the events one by one, so that the error names the event the
    /// subscriber refuses: the events are never passed over.
    fn apply_crowded(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &Pending,
        keys: &[Option<Key>],
        changes: Vec<(usize, Outcome)>,
        in_order: &[usize],
    ) -> Result<()> {
        let (deletes, rest): (Vec<_>, Vec<_>) = changes
            .into_iter()
            .partition(|(_, change)| matches!(change, Outcome::Delete(_)));
        let apply = |applier: &mut Applier, tx: &mut Transaction<'_>, order, one_by_one| {
            for step in order {
                match step {
                    Step::Deletes => applier.apply_net(tx, pending, &deletes)?,
                    Step::Events => applier.apply_in_order(
                        tx,
                        pending,
                        keys,
                        in_order.iter().copied(),
                        one_by_one,
                    )?,
                    Step::Rest => applier.apply_net(tx, pending, &rest)?,
                }
            }
            Ok(())
        };
        if !in_order.is_empty() {
            for order in CROWDED_ORDERS {
                let what = "net changes with the events that apply only in their order";
                if self.attempt(tx, what, |applier, sp| apply(applier, sp, order, false))? {
                    return Ok(());
                }
            }
        }
        apply(self, tx, CROWDED_ORDERS[0], true).with_context(|| {
            let mut text = "applying net changes in which keys moved through each other (they \
                            cannot be applied event by event)"
                .to_string();
            if let (Some(&first), Some(&last)) = (in_order.first(), in_order.last()) {
                text.push_str(&format!(
                    " together with {} events, {} to {}, that apply only in their order",
                    in_order.len(),
                    pending.ids[first],
                    pending.ids[last]
                ));
            }
            text
        })
    }

    /// Each pending event's row identity: its key values in the order of the subscriber's
    /// primary key, where rows equal by the key's types have one identity; `None` where the
    /// event does not carry the subscriber's key.
    fn row_keys<'p>(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &'p Pending,
    ) -> Result<Vec<Option<Key<'p>>>> {
        for dest in &pending.tables {
            self.table(tx, dest)?;
        }
        let tables: Vec<&Table> = pending.tables.iter().map(|t| &self.tables[t]).collect();
        // Where an event's names put the key's columns, by table and names (few of them).
        let mut places: Vec<(usize, &Arc<Shape>, Places)> = Vec::new();
        let mut keys: Vec<Option<Key>> = Vec::with_capacity(pending.events.len());
        for (table, event) in &pending.events {
            let known = places
                .iter()
                .position(|(t, shape, _)| t == table && Arc::ptr_eq(shape, &event.shape));
            let at = match known {
                Some(at) => at,
                None => {
                    let pkey = &tables[*table].pkey;
                    let columns = if pkey.is_empty()
                        || event.pkey().len() != pkey.len()
                        || !pkey.iter().all(|c| event.pkey().contains(c))
                    {
                        None
                    } else {
                        pkey.iter()
                            .map(|column| event.columns().iter().position(|c| c == column))
                            .collect()
                    };
                    places.push((*table, &event.shape, columns));
                    places.len() - 1
                }
            };
            keys.push(
                places[at]
                    .2
                    .as_ref()
                    .map(|columns| columns.iter().map(|&i| event.value(i)).collect()),
            );
        }
        for (index, table) in tables.iter().enumerate() {
            if table.pkey.iter().all(|c| table.columns[c].exact) {
                continue;
            }
            let mut distinct: Vec<&Key> = Vec::new();
            let mut seen: HashSet<&Key> = HashSet::new();
            for (key, (t, _)) in keys.iter().zip(&pending.events) {
                if *t == index
                    && let Some(key) = key
                    && seen.insert(key)
                {
                    distinct.push(key);
                }
            }
            let same = same_keys(tx, &pending.tables[index], table, &distinct)?;
            let canonical: HashMap<Key, Key> = distinct
                .iter()
                .zip(same)
                .filter(|(key, first)| *key != &distinct[*first])
                .map(|(key, first)| ((*key).clone(), distinct[first].clone()))
                .collect();
            for (key, (t, _)) in keys.iter_mut().zip(&pending.events) {
                if *t == index
                    && let Some(k) = key
                    && let Some(first) = canonical.get(k)
                {
                    *k = first.clone();
                }
            }
        }
        Ok(keys)
    }

    /// The events of `pending` with each value of a column whose text depends on the writing
    /// session's settings (a timestamptz in its time zone, an interval in its style, a float in
    /// its digits) written as the subscriber writes it here, for telling rows apart: which of
    /// the rows holding a key (under a deferrable key) a delete removed is told by the row's
    /// values, and the insert or update that wrote them may come from another session than
    /// the delete. Only events of keys with several events (the rows of `runs`) are
    /// rewritten. Values the subscriber cannot read keep their text.
    fn alike<'p>(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &'p Pending,
        runs: &Runs,
    ) -> Result<Alike<'p>> {
        let mut alike = Alike {
            events: &pending.events,
            rewritten: HashMap::new(),
        };
        // (table, column) -> the places (event, value) of its values, and their texts.
        let mut places: HashMap<(usize, &str), Values> = HashMap::new();
        for (table, run) in runs.iter() {
            if run.len() < 2 {
                continue;
            }
            let columns = &self.tables[&pending.tables[table]].columns;
            for &index in run {
                for (at, (name, value)) in pending.events[index].1.values().enumerate() {
                    let (Some(column), Some(value)) = (columns.get(name), value) else {
                        continue;
                    };
                    if column.exact || column.generated || column.collation.is_some() {
                        continue;
                    }
                    let (at_places, texts) = places.entry((table, name)).or_default();
                    at_places.push((index, at));
                    texts.push(value);
                }
            }
        }
        let mut places: Vec<_> = places.into_iter().collect();
        places.sort_by(|a, b| a.0.cmp(&b.0));
        for ((table, name), (at_places, texts)) in places {
            let dest = &pending.tables[table];
            let cast = &self.tables[dest].columns[name].cast;
            let sql = format!(
                "select cast(u.v as {cast})::text from unnest($1::text[]) with ordinality as u(v, i) \
                 order by u.i"
            );
            let mut savepoint = tx.transaction().context("setting a savepoint")?;
            match savepoint.query(&sql, &[&texts]) {
                Ok(rows) => {
                    savepoint.commit().context("releasing a savepoint")?;
                    for ((index, at), row) in at_places.into_iter().zip(rows) {
                        alike
                            .rewritten
                            .entry(index)
                            .or_insert_with(|| pending.events[index].1.clone())
                            .set(at, row.get(0));
                    }
                }
                Err(e) => {
                    savepoint
                        .rollback()
                        .context("rolling back to a savepoint")?;
                    log::debug!("{dest}: values of column {name} compared by their text: {e}");
                }
            }
        }
        Ok(alike)
    }

    /// Whether the subscriber has the rows of `ask` ((table, index of an event of the row)),
    /// by the index.
    fn exists(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &Pending,
        keys: &[Option<Key>],
        ask: &[(usize, usize)],
    ) -> Result<HashMap<usize, bool>> {
        let mut exists = HashMap::new();
        for (index, dest) in pending.tables.iter().enumerate() {
            let rows: Vec<usize> = ask
                .iter()
                .filter(|(table, _)| *table == index)
                .map(|&(_, row)| row)
                .collect();
            if rows.is_empty() {
                continue;
            }
            let table = &self.tables[dest];
            let names: Vec<String> = (1..=table.pkey.len()).map(|n| format!("k{n}")).collect();
            let matching = join(
                " and ",
                table.pkey.iter().zip(&names).map(|(column, name)| {
                    format!(
                        "t.{} = cast(u.{name} as {})",
                        quote_ident(column),
                        table.columns[column].cast
                    )
                }),
            );
            let sql = format!(
                "select (u.i - 1)::int from unnest({}) with ordinality as u({}, i) \
                 where exists (select from only {} as t where {matching})",
                join(", ", (1..=names.len()).map(|n| format!("${n}::text[]"))),
                names.join(", "),
                dest.quoted()
            );
            let arrays: Vec<Vec<Option<&str>>> = (0..names.len())
                .map(|column| {
                    rows.iter()
                        .map(|&row| keys[row].as_ref().and_then(|key| key[column]))
                        .collect()
                })
                .collect();
            let params: Vec<&(dyn ToSql + Sync)> = arrays
                .iter()
                .map(|array| array as &(dyn ToSql + Sync))
                .collect();
            let found = tx
                .query(&sql, &params)
                .with_context(|| format!("looking up rows of {dest}"))?;
            exists.extend(rows.iter().map(|&row| (row, false)));
            for row in found {
                exists.insert(rows[row.get::<_, i32>(0) as usize], true);
            }
        }
        Ok(exists)
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
        self.truncates.clear();
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
        changes: &[(usize, Outcome)],
    ) -> Result<()> {
        // Few groups, so finding one by comparing beats hashing a key made for every event.
        let mut groups: Vec<Group> = Vec::new();
        for (table, change) in changes {
            let dest = &pending.tables[*table];
            let event = match change {
                Outcome::Delete(index) => &pending.events[*index].1,
                Outcome::Update(image) | Outcome::Insert(image) => image.row(&pending.events[..]),
            };
            // Each change is of another row.
            let at = match groups.iter().position(|g| g.matches(*table, event)) {
                Some(at) => at,
                None => {
                    let key = GroupKey::of(dest, event);
                    let plan = self.plan(tx, &key)?;
                    groups.push(Group::new(key, *table, plan));
                    groups.len() - 1
                }
            };
            groups[at].add(event, Identity::Own);
        }
        groups.sort_by_key(|group| pending.rank(&group.key.table, group.key.op));
        for group in groups {
            self.execute(tx, group)?;
        }
        Ok(())
    }

    /// Applies `events` (indices in [`Pending::events`], in order) in their order: one
    /// statement per run of consecutive changes of one table and kind, or with `one_by_one`
    /// one statement per event.
    fn apply_in_order(
        &mut self,
        tx: &mut Transaction<'_>,
        pending: &Pending,
        keys: &[Option<Key>],
        events: impl Iterator<Item = usize>,
        one_by_one: bool,
    ) -> Result<()> {
        let mut group: Option<Group> = None;
        // Event by event, a failure names the event it was.
        let mut last_event = None;
        let named = |result: Result<()>, at: Option<usize>| match at {
            Some(at) if one_by_one => result.with_context(|| pending.describe(at)),
            _ => result,
        };
        for at in events {
            let ((table, event), key) = (&pending.events[at], &keys[at]);
            let dest = &pending.tables[*table];
            let mut current = match group.take() {
                Some(current) if !one_by_one && current.matches(*table, event) => current,
                other => {
                    if let Some(done) = other {
                        named(self.execute(tx, done), last_event)?;
                    }
                    let key = GroupKey::of(dest, event);
                    let plan = self.plan(tx, &key)?;
                    Group::new(key, *table, plan)
                }
            };
            current.add(event, key.as_ref().map_or(Identity::Text, Identity::Key));
            group = Some(current);
            last_event = Some(at);
        }
        match group {
            Some(last) => named(self.execute(tx, last), last_event),
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

    /// The cached catalog facts of `dest`, read (and its foreign-key actions checked where
    /// replay may not set the replica role) the first time.
    fn table(&mut self, tx: &mut Transaction<'_>, dest: &TableName) -> Result<&Table> {
        if !self.tables.contains_key(dest) {
            let table = Table::load(tx, dest)?;
            if self.replica == Some(false) {
                check_fk_actions(tx, dest)?;
                warn_fire_on_replay(tx, dest)?;
            }
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
            let affected = tx.execute(statement, &params).with_context(|| {
                format!(
                    "applying {} {}s to {}",
                    group.events, group.key.op, group.key.table
                )
            })?;
            let rows = group.arrays.first().map_or(0, Vec::len) as u64;
            if group.plan.every_row && affected < rows {
                bail!(
                    "{} of {rows} {}s of {} found no row here: the subscriber's table differs \
                     from the provider's, and replay stops rather than skip a change (`compare` \
                     and `repair` show and mend the differences)",
                    rows - affected,
                    group.key.op,
                    group.key.table
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(op: RowOp, pkey: &[&str], values: &[(&str, Option<&str>)]) -> Decoded {
        Decoded::Row(RowEvent::new(
            op,
            pkey.iter().map(|k| k.to_string()).collect(),
            values,
        ))
    }

    fn values(data: &str) -> Vec<(String, Option<String>)> {
        let Decoded::Row(event) = decode("I:", Some(data)).unwrap() else {
            panic!("not a row event");
        };
        event
            .values()
            .map(|(name, value)| (name.to_string(), value.map(str::to_owned)))
            .collect()
    }

    fn error(data: &str) -> String {
        format!("{:#}", decode("I:", Some(data)).unwrap_err())
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

    /// Events with the same names share them; names spelled otherwise, in another order or
    /// with another key are told apart.
    #[test]
    fn a_decoder_shares_names() {
        let mut decoder = Decoder::new();
        let mut row = |ev_type: &str, data: &str| match decoder.decode(ev_type, Some(data)) {
            Ok(Decoded::Row(event)) => event,
            _ => panic!("{ev_type} {data}: not a row event"),
        };
        let first = row("U:id", "id=1&v=x");
        let second = row("U:id", "id=2&v");
        assert!(Arc::ptr_eq(&first.shape, &second.shape));
        assert_eq!(second.value(0), Some("2"));
        assert_eq!(second.value(1), None);
        let swapped = row("U:id", "v=y&id=3");
        assert_eq!(swapped.columns(), ["v", "id"]);
        assert_eq!(swapped.get("id"), Some(Some("3")));
        let spelled = row("U:id", "i%64=4&v=z");
        assert_eq!(spelled.columns(), ["id", "v"]);
        assert_eq!(spelled.value(0), Some("4"));
        let other_key = row("U:v", "id=1&v=x");
        assert_eq!(other_key.pkey(), ["v"]);
        assert!(!Arc::ptr_eq(&first.shape, &other_key.shape));
        // The key list's end is not taken for a column name, nor the other way round.
        let (joined, apart) = (row("I:a&b", "c=1"), row("I:a", "b&c=1"));
        assert_eq!(
            (joined.pkey(), joined.columns()),
            (&["a&b".to_string()][..], &["c".to_string()][..])
        );
        assert_eq!(apart.columns(), ["b", "c"]);
        assert_eq!(apart.value(0), None);
        assert_eq!(first, row("U:id", "id=1&v=x"));
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

    /// A provider history of one key: the row there before (its value) or not, and up to
    /// `size.0` events made by changing rows that hold the key, up to `size.1` at once in the
    /// middle (a deferrable key), one or none at the end.
    fn histories(
        rows: &mut Vec<String>,
        events: &mut Vec<RowEvent>,
        same_values: bool,
        size: (usize, usize),
        out: &mut Vec<(Vec<RowEvent>, Option<String>)>,
    ) {
        if rows.len() <= 1 && !events.is_empty() {
            out.push((events.clone(), rows.first().cloned()));
        }
        if events.len() == size.0 {
            return;
        }
        let event = |op, value: &str| {
            RowEvent::new(
                op,
                vec!["id".into()],
                &[("id", Some("1")), ("v", Some(value))],
            )
        };
        // A value by the event's place: branches that differ only in which row an update
        // changed make the same events.
        let fresh = |events: &Vec<RowEvent>| {
            if same_values {
                "x".to_string()
            } else {
                format!("v{}", events.len())
            }
        };
        if rows.len() < size.1 {
            let value = fresh(events);
            rows.push(value.clone());
            events.push(event(RowOp::Insert, &value));
            histories(rows, events, same_values, size, out);
            events.pop();
            rows.pop();
        }
        for at in 0..rows.len() {
            let old = rows.remove(at);
            events.push(event(RowOp::Delete, &old));
            histories(rows, events, same_values, size, out);
            events.pop();
            rows.insert(at, old);

            let value = fresh(events);
            let old = std::mem::replace(&mut rows[at], value.clone());
            events.push(event(RowOp::Update, &value));
            histories(rows, events, same_values, size, out);
            events.pop();
            rows[at] = old;
        }
    }

    /// The value of row `id` = 1 after `outcome` on a table where it was `before`.
    fn applied(
        outcome: Option<&Outcome>,
        events: &[(usize, RowEvent)],
        before: Option<&str>,
    ) -> Option<String> {
        let value = |image: &Image| image.row(events).value(1).map(str::to_owned);
        match outcome {
            None => before.map(str::to_owned),
            Some(Outcome::Delete(_)) => None,
            Some(Outcome::Update(image)) => before.and(value(image)),
            Some(Outcome::Insert(image)) => {
                assert!(before.is_none(), "insert over an existing row");
                value(image)
            }
        }
    }

    /// Nets every history of `size` (see [`histories`]), with and without the row before
    /// them, with distinct and with equal values, asking for the subscriber's row where
    /// told to. The net change must give the provider's end; it may be refused only where
    /// the events fit histories with different ends (an update of one of several rows that
    /// hold the key does not say which). Returns the histories netted and those refused.
    fn net_every_history(size: (usize, usize)) -> (usize, usize) {
        let (mut known, mut refused) = (0, 0);
        for same_values in [false, true] {
            for before in [None, Some("old".to_string())] {
                let mut out = Vec::new();
                let mut rows: Vec<String> = before.iter().cloned().collect();
                histories(&mut rows, &mut Vec::new(), same_values, size, &mut out);
                let mut ends: HashMap<String, HashSet<Option<String>>> = HashMap::new();
                for (history, after) in &out {
                    ends.entry(format!("{history:?}"))
                        .or_default()
                        .insert(after.clone());
                }
                for (history, after) in out {
                    let events: Vec<(usize, RowEvent)> =
                        history.iter().cloned().map(|e| (0, e)).collect();
                    let mut run = KeyRun::new();
                    for index in 0..events.len() {
                        run.add(index, &events[..]);
                    }
                    let last = events.len() - 1;
                    let mut verdict = run.outcome(&events, &events[..], last, None, false);
                    if matches!(verdict, Verdict::Ask) {
                        verdict =
                            run.outcome(&events, &events[..], last, Some(before.is_some()), false);
                    }
                    let several = ends[&format!("{history:?}")].len() > 1;
                    match verdict {
                        Verdict::Known(outcome, _) if !several => {
                            assert_eq!(
                                applied(outcome.as_ref(), &events, before.as_deref()),
                                after,
                                "{history:?} from {before:?}"
                            );
                            known += 1;
                        }
                        Verdict::Unknown if several => refused += 1,
                        _ => panic!("{history:?} from {before:?}: wrong verdict"),
                    }
                }
            }
        }
        (known, refused)
    }

    /// Every history of up to five events of one key with up to three rows holding it.
    #[test]
    fn every_history_of_a_key_nets_to_what_the_provider_did() {
        let (known, refused) = net_every_history((5, 3));
        assert!(
            known > 500 && refused > 0,
            "{known} known, {refused} refused"
        );
    }

    /// Every history of up to nine events of one key with up to two rows holding it: rows
    /// held together through many updates, each of which might have changed either row,
    /// still net to the provider's end (the courses that differ only in which row an
    /// update changed, where the rows end alike, are one).
    #[test]
    fn every_long_history_of_a_key_nets_to_what_the_provider_did() {
        let (known, refused) = net_every_history((9, 2));
        assert!(
            known > 40_000 && refused > 0,
            "{known} known, {refused} refused"
        );
    }

    /// A key inserted, updated, deleted and inserted again in one batch (a key that is not
    /// deferrable): from the row there before, every update might change either of two rows,
    /// and the events would end with two; so the row was not there, and the subscriber's row
    /// would be a difference from the provider.
    #[test]
    fn a_long_history_of_a_new_key_nets_to_its_last_insert() {
        let ops = [
            RowOp::Insert,
            RowOp::Update,
            RowOp::Update,
            RowOp::Update,
            RowOp::Update,
            RowOp::Update,
            RowOp::Update,
            RowOp::Delete,
            RowOp::Insert,
            RowOp::Update,
            RowOp::Update,
        ];
        let events: Vec<(usize, RowEvent)> = ops
            .iter()
            .enumerate()
            .map(|(i, &op)| {
                // The delete carries the row as the update before it left it.
                let value = format!("v{}", if op == RowOp::Delete { i - 1 } else { i });
                let values = [("id", Some("1")), ("v", Some(value.as_str()))];
                (0, RowEvent::new(op, vec!["id".into()], &values))
            })
            .collect();
        let mut run = KeyRun::new();
        for index in 0..events.len() {
            run.add(index, &events[..]);
        }
        let last = events.len() - 1;
        for exists in [None, Some(false)] {
            match run.outcome(&events, &events[..], last, exists, false) {
                Verdict::Known(outcome, _) => assert_eq!(
                    applied(outcome.as_ref(), &events, None),
                    Some(format!("v{last}"))
                ),
                _ => panic!("wrong verdict where the subscriber's row is {exists:?}"),
            }
        }
        assert!(matches!(
            run.outcome(&events, &events[..], last, Some(true), false),
            Verdict::Diverged
        ));
    }

    /// A part where a key was held by two rows on the way (only its net change is right) and
    /// another key's events contradict each other, beside an event without the key: the
    /// netting keeps the latter's events, in order, to be applied with the net change.
    #[test]
    fn events_that_apply_only_in_order_are_kept_beside_a_crowded_key() {
        let event =
            |op, values: &[(&str, Option<&str>)]| RowEvent::new(op, vec!["id".into()], values);
        let keyed = |op, id, v| event(op, &[("id", Some(id)), ("v", Some(v))]);
        let mut pending = Pending::default();
        let table = TableName {
            schema: "public".into(),
            name: "t".into(),
        };
        for (id, e) in [
            keyed(RowOp::Insert, "1", "a"),
            keyed(RowOp::Delete, "2", "x"),
            event(RowOp::Insert, &[("v", Some("no key"))]),
            keyed(RowOp::Delete, "1", "a"),
            keyed(RowOp::Delete, "2", "x"),
            keyed(RowOp::Update, "1", "c"),
        ]
        .into_iter()
        .enumerate()
        {
            pending.push(&table, e, id as i64 + 100);
        }
        let keys: Vec<Option<Key>> = pending
            .events
            .iter()
            .map(|(_, e)| e.get("id").map(|id| vec![id]))
            .collect();
        let runs = Runs::of(&pending, &keys);
        let alike = Alike {
            events: &pending.events,
            rewritten: HashMap::new(),
        };
        let exists = HashMap::from([(0, true)]);
        let netting = net(&pending, &keys, &runs, &exists, &alike, &[false]).unwrap();
        assert!(netting.crowded);
        assert_eq!(netting.in_order, [1, 2, 4]);
        match &netting.changes[..] {
            [(0, Outcome::Update(image))] => {
                assert_eq!(image.row(&pending.events[..]).get("v"), Some(Some("c")))
            }
            _ => panic!("wrong net changes"),
        }
    }

    /// Nets the events of key `id` = 1, made of `(op, v)`, on table `public.t` with event ids
    /// from 100, where the subscriber has the row or not.
    fn net_one_key(changes: &[(RowOp, String)], exists: bool) -> Result<Netting> {
        let mut pending = Pending::default();
        let table = TableName {
            schema: "public".into(),
            name: "t".into(),
        };
        for (id, (op, v)) in changes.iter().enumerate() {
            let values = [("id", Some("1")), ("v", Some(v.as_str()))];
            let event = RowEvent::new(*op, vec!["id".into()], &values);
            pending.push(&table, event, id as i64 + 100);
        }
        let keys: Vec<Option<Key>> = pending
            .events
            .iter()
            .map(|(_, e)| e.get("id").map(|id| vec![id]))
            .collect();
        let runs = Runs::of(&pending, &keys);
        let alike = Alike {
            events: &pending.events,
            rewritten: HashMap::new(),
        };
        let exists = HashMap::from([(0, exists)]);
        net(&pending, &keys, &runs, &exists, &alike, &[false])
    }

    /// Where the subscriber's row leaves a key held by several rows when the events end, or
    /// more ways through the rows than are followed remain, netting stops naming the table,
    /// the key and the events (replaying them in their order would change every row that
    /// holds the key).
    #[test]
    fn keys_that_net_to_no_end_the_provider_had_are_refused() {
        let change = |op, v: &str| (op, v.to_string());
        // A new row and an update of one of the two rows there would then be.
        let inserted = [change(RowOp::Insert, "a"), change(RowOp::Update, "b")];
        assert!(net_one_key(&inserted, false).is_ok());
        let text = format!("{:#}", net_one_key(&inserted, true).err().unwrap());
        assert!(
            text.contains(
                "public.t key ('1'), events 100 to 101 do not fit the subscriber, \
                           which has the row"
            ),
            "{text}"
        );
        // Three rows hold the key through many updates of distinct values, then two go.
        let mut crowded = vec![change(RowOp::Insert, "a"), change(RowOp::Insert, "b")];
        crowded.extend((0..40).map(|i| change(RowOp::Update, &format!("v{i}"))));
        crowded.extend([change(RowOp::Delete, "v39"), change(RowOp::Delete, "v38")]);
        let text = format!("{:#}", net_one_key(&crowded, true).err().unwrap());
        assert!(
            text.contains(
                "public.t key ('1'), events 100 to 143 add up to: several rows held \
                           the key at once, with more than 256 ways"
            ),
            "{text}"
        );
    }

    #[test]
    fn bad_row_events_are_refused() {
        let text = |t, d| format!("{:#}", decode(t, d).unwrap_err());
        assert!(text("I:id", None).contains("has no data"));
        assert!(text("I:a,,b", Some("a=1")).contains("empty key column name"));
        assert!(text("U:id", Some("id=%x1")).contains("bad data in row event `U:id`"));
    }
}
