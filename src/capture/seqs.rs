//! Sequences whose values subscribers follow, provider side: `provider add-seq | remove-seq |
//! seqs`, and the registries of both sides (`londiste.provider_seqs`,
//! `londiste.subscriber_seqs`), which store the unquoted `schema.name` like the table
//! registries. Adding checks every name first and changes nothing unless all are good. The
//! subscriber side and following the values are [`crate::replay::seqs`].

use anyhow::{Context, Result, bail};
use postgres::{GenericClient, Transaction};

use crate::base::error::usage;
use crate::base::names::TableName;
use crate::base::output;
use crate::capture::provider::{self, Provider, parse_names};
use crate::db::to_regclass;

impl Provider {
    /// `provider add-seq`: registers `seqs` for the queue; each must be a sequence here.
    pub fn add_seqs(&mut self, seqs: &[String]) -> Result<()> {
        let names = parse_seqs(seqs, "provider add-seq")?;
        let mut tx = self.client.transaction()?;
        provider::check_installed(&mut tx, &self.queue)?;
        check_registry(&mut tx, Side::Provider)?;
        for seq in &names {
            check_sequence(&mut tx, seq)?;
        }
        for seq in &names {
            let added = tx.execute(
                "insert into londiste.provider_seqs (queue_name, seq_name) values ($1, $2) \
                 on conflict (queue_name, seq_name) do nothing",
                &[&self.queue, &seq.qualified()],
            )?;
            if added == 0 {
                log::info!("{}: sequence {seq} was already added", self.dbname);
            } else {
                log::info!("{}: added sequence {seq}", self.dbname);
            }
        }
        tx.commit().context("committing provider add-seq")
    }

    /// `provider remove-seq`: unregisters `seqs`; each must be registered.
    pub fn remove_seqs(&mut self, seqs: &[String]) -> Result<()> {
        let names = parse_seqs(seqs, "provider remove-seq")?;
        let mut tx = self.client.transaction()?;
        provider::check_installed(&mut tx, &self.queue)?;
        unregister(&mut tx, Side::Provider, &self.queue, &names, &self.dbname)?;
        tx.commit().context("committing provider remove-seq")
    }

    /// `provider seqs`: the registered sequences, one per line.
    pub fn seqs(&mut self) -> Result<()> {
        provider::check_installed(&mut self.client, &self.queue)?;
        check_registry(&mut self.client, Side::Provider)?;
        for seq in provider_seqs(&mut self.client, &self.queue)? {
            output::line(&seq)?;
        }
        Ok(())
    }
}

/// Which side's sequence registry.
#[derive(Clone, Copy)]
pub enum Side {
    /// `londiste.provider_seqs`.
    Provider,
    /// `londiste.subscriber_seqs`.
    Subscriber,
}

impl Side {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Side::Provider => "provider",
            Side::Subscriber => "subscriber",
        }
    }

    /// Its registry table.
    pub fn registry(self) -> &'static str {
        match self {
            Side::Provider => "londiste.provider_seqs",
            Side::Subscriber => "londiste.subscriber_seqs",
        }
    }
}

/// Removes `names` from `side`'s registry for `queue`; each must be in it.
pub fn unregister(
    tx: &mut Transaction<'_>,
    side: Side,
    queue: &str,
    names: &[TableName],
    dbname: &str,
) -> Result<()> {
    check_registry(tx, side)?;
    for seq in names {
        let removed = tx.execute(
            &format!(
                "delete from {} where queue_name = $1 and seq_name = $2",
                side.registry()
            ),
            &[&queue, &seq.qualified()],
        )?;
        if removed == 0 {
            bail!(
                "sequence {seq} is not added on the {} for queue {queue}",
                side.name()
            );
        }
        log::info!("{dbname}: removed sequence {seq}");
    }
    Ok(())
}

/// Parses sequence names as typed (a bare name means `public.NAME`), dropping repeats.
pub fn parse_seqs(seqs: &[String], command: &str) -> Result<Vec<TableName>> {
    let names = parse_names(seqs)?;
    if names.is_empty() {
        return Err(usage(format!("`{command}` needs at least one sequence")));
    }
    Ok(names)
}

/// Fails unless the sequence registry `table` exists (an install from before sequences).
pub fn check_registry(client: &mut impl GenericClient, side: Side) -> Result<()> {
    if !to_regclass(client, side.registry())? {
        let side = side.name();
        bail!("the {side} database has no sequence registry yet: run `{side} install` again");
    }
    Ok(())
}

/// Fails with a message naming `seq` unless it is a sequence.
pub fn check_sequence(client: &mut impl GenericClient, seq: &TableName) -> Result<()> {
    let kind: Option<String> = client
        .query_opt(
            "select c.relkind::text from pg_catalog.pg_class c \
             join pg_catalog.pg_namespace n on n.oid = c.relnamespace \
             where n.nspname = $1 and c.relname = $2",
            &[&seq.schema, &seq.name],
        )?
        .map(|row| row.get(0));
    match kind.as_deref() {
        None => bail!("sequence {seq} does not exist"),
        Some("S") => Ok(()),
        Some("r" | "p") => bail!("{seq} is a table, not a sequence"),
        Some("v" | "m") => bail!("{seq} is a view, not a sequence"),
        Some(_) => bail!("{seq} is not a sequence"),
    }
}

/// The sequences added on the provider for `queue`, as `schema.name`, sorted.
pub fn provider_seqs(client: &mut impl GenericClient, queue: &str) -> Result<Vec<String>> {
    let rows = client.query(
        "select seq_name from londiste.provider_seqs where queue_name = $1 order by 1",
        &[&queue],
    )?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}
