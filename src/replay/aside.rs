//! Indexes, foreign keys and triggers set aside while a table is copied.
//!
//! Before the COPY, in the copy's transaction, the subscriber table's secondary indexes (not
//! the primary key, not those behind a constraint), the foreign keys from and to it and its
//! user triggers (not skyrep's guard) are written to `londiste.pending_objects` with the
//! statement that creates each again, and dropped: the COPY fills a bare table, TRUNCATE is
//! not stopped by a referencing table, and no trigger fires per copied row. The indexes are
//! built again after the COPY in the same transaction; foreign keys and triggers come back
//! once the tables they join are in sync ([`restore_ready`]). Saving and dropping happen in one
//! transaction, so a crash never loses a definition.
//!
//! Only a table's owner may drop its indexes and triggers: where the subscriber's role has
//! only privileges on the table (DML, TRIGGER), they stay in place for the copy (it is
//! slower, and the triggers fire for the copied rows). A foreign key that stays would stop
//! the copy (TRUNCATE of a referenced table, rows whose parent is not copied yet), so
//! `subscriber add` refuses such a table up front ([`check_privileges`]), naming what is
//! missing.

use anyhow::{Context, Result, bail};
use postgres::GenericClient;

use crate::base::names::{TableName, quote_ident};
use crate::replay::protect::DENY_TRIGGER;
use crate::replay::state::{MergeState, SubscriberTable, load_tables};

/// SQL for the always-quoted `"schema"."name"` of relation `rel` in namespace `ns` (aliases),
/// the form [`TableName::quoted`] gives.
fn quoted(ns: &str, rel: &str) -> String {
    format!(
        "'\"' || replace({ns}.nspname, '\"', '\"\"') || '\".\"' || \
         replace({rel}.relname, '\"', '\"\"') || '\"'"
    )
}

/// What [`set_aside`] set aside.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetAside {
    /// Secondary indexes.
    pub indexes: usize,
    /// Foreign keys from or to the table.
    pub fkeys: usize,
    /// User triggers.
    pub triggers: usize,
}

/// Whether the session's role owns `table` (or is a member of its owner): it may drop its
/// indexes, triggers and constraints.
fn owns(tx: &mut impl GenericClient, table: &TableName) -> Result<bool> {
    tx.query_one(
        "select pg_catalog.pg_has_role(c.relowner, 'USAGE') from pg_catalog.pg_class c \
         where c.oid = $1::text::regclass",
        &[&table.quoted()],
    )
    .and_then(|row| row.try_get(0))
    .with_context(|| format!("reading the owner of {table}"))
}

/// Fails, naming the privilege, unless the session's role may copy `dest`: empty it
/// (TRUNCATE, unless `skip_truncate`) and set aside the foreign keys from and to it (own
/// the table each is on).
pub fn check_privileges(
    tx: &mut impl GenericClient,
    dest: &TableName,
    skip_truncate: bool,
) -> Result<()> {
    let row = tx
        .query_one(
            "select current_user::text, \
                    pg_catalog.has_table_privilege($1::text::regclass, 'TRUNCATE')",
            &[&dest.quoted()],
        )
        .with_context(|| format!("reading the privileges on {dest}"))?;
    let (role, truncate): (String, bool) = (row.try_get(0)?, row.try_get(1)?);
    if !skip_truncate && !truncate {
        bail!(
            "role {role} may not TRUNCATE {dest}, which its copy empties first: GRANT \
             TRUNCATE ON {} TO {}, or add it with --skip-truncate",
            dest.quoted(),
            quote_ident(&role)
        );
    }
    let kept: Vec<(String, String)> = tx
        .query(
            &format!(
                "select co.conname::text, {} from pg_catalog.pg_constraint co \
                 join pg_catalog.pg_class c on c.oid = co.conrelid \
                 join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
                 where co.contype = 'f' and ($1::text::regclass in (co.conrelid, co.confrelid)) \
                   and not pg_catalog.pg_has_role(c.relowner, 'USAGE') \
                 order by 2, 1",
                quoted("n", "c")
            ),
            &[&dest.quoted()],
        )
        .and_then(|rows| {
            rows.iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect()
        })
        .with_context(|| format!("reading the foreign keys of {dest}"))?;
    if let Some((name, owner)) = kept.first() {
        bail!(
            "role {role} does not own {owner}, so it cannot set aside its foreign key {} \
             (from or to {dest}) while {dest} is copied: make {role} a member of the owner \
             of {owner} (GRANT <owner> TO {}), drop the foreign key, or add {dest} with \
             --expect-sync",
            quote_ident(name),
            quote_ident(&role)
        );
    }
    Ok(())
}

/// Saves and drops `dest`'s secondary indexes, the foreign keys from and to it and its user
/// triggers, inside the caller's transaction. Where the role does not own `dest`, its
/// indexes and triggers stay (see the module docs); a foreign key it cannot drop is an error.
pub fn set_aside(
    tx: &mut impl GenericClient,
    queue: &str,
    table: &TableName,
    dest: &TableName,
) -> Result<SetAside> {
    let quoted_dest = dest.quoted();
    let context = || format!("setting aside the indexes, foreign keys and triggers of {dest}");
    // One copy thread at a time: two tables joined by a foreign key, set aside at once, would
    // both find the key and both drop it. The lock is held until the caller commits, so the
    // second thread's queries below see the first one's drops.
    tx.query_one(
        "select pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('skyrep aside'), \
                pg_catalog.hashtext($1))",
        &[&queue],
    )
    .with_context(context)?;
    check_privileges(tx, dest, true)?;
    let owner = owns(tx, dest)?;
    if !owner {
        log::info!(
            "{dest}: not owned by this role, so its indexes and triggers stay in place for \
             the copy"
        );
    }
    // Foreign keys first: one may need an index that goes next.
    let fkeys = tx
        .query(
            &format!(
                "select {}, co.conname::text, {}, pg_catalog.pg_get_constraintdef(co.oid) \
             from pg_catalog.pg_constraint co \
             join pg_catalog.pg_class c on c.oid = co.conrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             join pg_catalog.pg_class f on f.oid = co.confrelid \
             join pg_catalog.pg_namespace fn on fn.oid = f.relnamespace \
             where co.contype = 'f' and ($1::text::regclass in (co.conrelid, co.confrelid)) \
             order by 1, 2",
                quoted("n", "c"),
                quoted("fn", "f")
            ),
            &[&quoted_dest],
        )
        .with_context(context)?;
    for row in &fkeys {
        let (owner, name, other, definition): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        // The table at the constraint's other end from `owner` (`dest` itself for a key of
        // another table that references it).
        let other_end = if owner == quoted_dest {
            &other
        } else {
            &quoted_dest
        };
        save(
            tx,
            queue,
            table,
            "fkey",
            &owner,
            &name,
            Some(other_end),
            &format!(
                "alter table {owner} add constraint {} {definition}",
                quote_ident(&name)
            ),
        )?;
        tx.batch_execute(&format!(
            "alter table {owner} drop constraint {}",
            quote_ident(&name)
        ))
        .with_context(context)?;
    }
    let triggers = if owner {
        tx.query(
            "select t.tgname::text, pg_catalog.pg_get_triggerdef(t.oid) \
                    || case t.tgenabled \
                           when 'A' then '; alter table ' || $1 || ' enable always trigger ' \
                           when 'R' then '; alter table ' || $1 || ' enable replica trigger ' \
                           when 'D' then '; alter table ' || $1 || ' disable trigger ' \
                           else '' end \
                    || case when t.tgenabled <> 'O' then quote_ident(t.tgname) else '' end \
             from pg_catalog.pg_trigger t \
             where t.tgrelid = $1::text::regclass and not t.tgisinternal and t.tgname <> $2 \
             order by 1",
            &[&quoted_dest, &DENY_TRIGGER],
        )
        .with_context(context)?
    } else {
        Vec::new()
    };
    for row in &triggers {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        save(
            tx,
            queue,
            table,
            "trigger",
            &quoted_dest,
            &name,
            None,
            &definition,
        )?;
        tx.batch_execute(&format!(
            "drop trigger {} on {quoted_dest}",
            quote_ident(&name)
        ))
        .with_context(context)?;
    }
    let indexes = if owner {
        tx.query(
            &format!(
                "select {}, pg_catalog.pg_get_indexdef(i.indexrelid) \
             from pg_catalog.pg_index i \
             join pg_catalog.pg_class ic on ic.oid = i.indexrelid \
             join pg_catalog.pg_namespace n on n.oid = ic.relnamespace \
             where i.indrelid = $1::text::regclass and not i.indisprimary \
               and not exists (select 1 from pg_catalog.pg_constraint co \
                               where co.conindid = i.indexrelid) \
             order by 1",
                quoted("n", "ic")
            ),
            &[&quoted_dest],
        )
        .with_context(context)?
    } else {
        Vec::new()
    };
    for row in &indexes {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        save(
            tx,
            queue,
            table,
            "index",
            &quoted_dest,
            &name,
            None,
            &definition,
        )?;
        tx.batch_execute(&format!("drop index {name}"))
            .with_context(context)?;
    }
    Ok(SetAside {
        indexes: indexes.len(),
        fkeys: fkeys.len(),
        triggers: triggers.len(),
    })
}

#[allow(clippy::too_many_arguments)]
fn save(
    tx: &mut impl GenericClient,
    queue: &str,
    table: &TableName,
    kind: &str,
    owner: &str,
    name: &str,
    other: Option<&str>,
    definition: &str,
) -> Result<()> {
    tx.execute(
        "insert into londiste.pending_objects \
             (queue_name, table_name, kind, owner_table, object_name, other_table, definition) \
         values ($1, $2, $3, $4, $5, $6, $7) \
         on conflict (queue_name, kind, owner_table, object_name) do nothing",
        &[
            &queue,
            &table.qualified(),
            &kind,
            &owner,
            &name,
            &other,
            &definition,
        ],
    )
    .with_context(|| format!("saving the definition of {kind} {name} on {owner}"))?;
    Ok(())
}

/// Builds the indexes set aside for `table` again, inside the caller's transaction (after the
/// COPY filled it). Returns how many.
pub fn rebuild_indexes(
    tx: &mut impl GenericClient,
    queue: &str,
    table: &TableName,
) -> Result<usize> {
    let rows = tx
        .query(
            "delete from londiste.pending_objects \
             where queue_name = $1 and table_name = $2 and kind = 'index' \
             returning object_name, definition",
            &[&queue, &table.qualified()],
        )
        .with_context(|| format!("reading the indexes set aside for {table}"))?;
    for row in &rows {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        tx.batch_execute(&definition)
            .with_context(|| format!("building index {name} of {table} again"))?;
    }
    Ok(rows.len())
}

/// Puts back the foreign keys and triggers set aside whose tables are all in sync (or not
/// replicated from `queue` at all). Each in a transaction of its own; returns how many.
pub fn restore_ready(client: &mut postgres::Client, queue: &str) -> Result<usize> {
    let busy: Vec<SubscriberTable> = load_tables(client, queue)?
        .into_iter()
        .filter(|t| t.state != MergeState::Ok)
        .collect();
    let busy_dest: Vec<String> = busy.iter().map(|t| t.dest.quoted()).collect();
    let busy_table: Vec<String> = busy.iter().map(|t| t.table.qualified()).collect();
    let pending = client
        .query(
            "select kind, owner_table, object_name, other_table, table_name \
             from londiste.pending_objects \
             where queue_name = $1 and kind in ('fkey', 'trigger') \
             order by kind, owner_table, object_name",
            &[&queue],
        )
        .context("reading the foreign keys and triggers set aside")?;
    let mut restored = 0;
    for row in &pending {
        let (kind, owner, name, other, copied): (String, String, String, Option<String>, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
        // The table whose copy set it aside counts too: older versions recorded a key that
        // references the copied table with its own table at both ends.
        if busy_dest.contains(&owner)
            || other.as_ref().is_some_and(|o| busy_dest.contains(o))
            || busy_table.contains(&copied)
        {
            continue;
        }
        restore(client, queue, &kind, &owner, &name)?;
        restored += 1;
    }
    Ok(restored)
}

/// Creates one set-aside object again and forgets its definition, in one transaction.
pub fn restore(
    client: &mut postgres::Client,
    queue: &str,
    kind: &str,
    owner: &str,
    name: &str,
) -> Result<()> {
    let what = || format!("putting {kind} {name} back on {owner}");
    let mut tx = client.transaction().with_context(what)?;
    let definition: Option<String> = tx
        .query_opt(
            "delete from londiste.pending_objects \
             where queue_name = $1 and kind = $2 and owner_table = $3 and object_name = $4 \
             returning definition",
            &[&queue, &kind, &owner, &name],
        )
        .with_context(what)?
        .map(|row| row.get(0));
    if let Some(definition) = definition {
        tx.batch_execute(&definition).with_context(what)?;
        tx.commit().with_context(what)?;
        log::info!("{owner}: {kind} {name} is back");
    }
    Ok(())
}

/// A foreign key or trigger as `subscriber fkeys` and `subscriber triggers` list it.
#[derive(Debug, PartialEq, Eq)]
pub struct Object {
    /// The table it is on, quoted.
    pub table: String,
    /// Its name.
    pub name: String,
    /// The statement that creates it.
    pub definition: String,
}

/// The foreign keys (`kind` `fkey`) or triggers (`trigger`) set aside and not back yet.
pub fn pending(client: &mut impl GenericClient, queue: &str, kind: &str) -> Result<Vec<Object>> {
    let rows = client
        .query(
            "select owner_table, object_name, definition from londiste.pending_objects \
             where queue_name = $1 and kind = $2 order by 1, 2",
            &[&queue, &kind],
        )
        .with_context(|| format!("listing the {kind}s set aside"))?;
    Ok(rows.iter().map(object).collect())
}

/// The foreign keys (`kind` `fkey`: from or to a replicated table) or user triggers
/// (`trigger`) in place on the subscriber's tables of `queue`.
pub fn active(client: &mut impl GenericClient, queue: &str, kind: &str) -> Result<Vec<Object>> {
    let tables: Vec<String> = load_tables(client, queue)?
        .iter()
        .map(|t| t.dest.quoted())
        .collect();
    let sql = if kind == "fkey" {
        format!(
            "select distinct {}, co.conname::text, \
                    'alter table ' || {} || ' add constraint ' || quote_ident(co.conname) \
                    || ' ' || pg_catalog.pg_get_constraintdef(co.oid) \
             from pg_catalog.pg_constraint co \
             join pg_catalog.pg_class c on c.oid = co.conrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where co.contype = 'f' \
               and (co.conrelid = any($1::text[]::regclass[]) \
                    or co.confrelid = any($1::text[]::regclass[])) \
             order by 1, 2",
            quoted("n", "c"),
            quoted("n", "c")
        )
    } else {
        format!(
            "select {}, t.tgname::text, pg_catalog.pg_get_triggerdef(t.oid) \
             from pg_catalog.pg_trigger t \
             join pg_catalog.pg_class c on c.oid = t.tgrelid \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where t.tgrelid = any($1::text[]::regclass[]) and not t.tgisinternal \
               and t.tgname <> $2 \
             order by 1, 2",
            quoted("n", "c")
        )
    };
    let rows = if kind == "fkey" {
        client.query(&sql, &[&tables])
    } else {
        client.query(&sql, &[&tables, &DENY_TRIGGER])
    }
    .with_context(|| format!("listing the {kind}s in place"))?;
    Ok(rows.iter().map(object).collect())
}

fn object(row: &postgres::Row) -> Object {
    Object {
        table: row.get(0),
        name: row.get(1),
        definition: row.get(2),
    }
}
