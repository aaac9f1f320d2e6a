//! `compare`: row count and checksum of each table on both sides, at one point of the stream.

use anyhow::{Context, Result, bail};
use postgres::Client;

use crate::base::names::{TableName, quote_ident};
use crate::base::output;
use crate::config::Config;
use crate::config::keys::DEFAULT_COMPARE_SQL;
use crate::replay::subscriber::columns;
use crate::verify::sync::Syncer;

/// `compare [TABLE...]`: synchronises each table (see [`crate::verify::sync`]), runs `compare_sql` on
/// both sides and prints `srcdb: N rows, checksum=X` and `dstdb: ...`. Fails when any table
/// differs.
pub fn compare(config: &Config, names: &[String]) -> Result<()> {
    let custom_sql = config
        .text("compare_sql")?
        .filter(|sql| sql != DEFAULT_COMPARE_SQL);
    let mut syncer = Syncer::connect(config)?;
    let tables = syncer.tables(names)?;
    let mut differ = Vec::new();
    for table in &tables {
        let query = match &custom_sql {
            Some(sql) => CompareQuery::Custom(sql.clone()),
            None => CompareQuery::Columns(columns(&mut syncer.provider, &table.table)?),
        };
        syncer.sync(table, false)?;
        log::info!("Counting {}", table.table);
        let counted = count(
            &mut syncer.provider,
            &query.sql(&table.table, table.condition.as_deref()),
        )
        .with_context(|| format!("counting {} on the provider", table.table))
        .and_then(|src| {
            let dst = count(&mut syncer.subscriber, &query.sql(&table.dest, None))
                .with_context(|| format!("counting {} on the subscriber", table.dest))?;
            Ok((src, dst))
        });
        syncer.rollback();
        let (src, dst) = counted?;
        output::line(&table.table.to_string())?;
        output::line(&format!("  srcdb: {src}"))?;
        output::line(&format!("  dstdb: {dst}"))?;
        if src != dst {
            output::line(&format!(
                "  DIFFERENT: {} is not equal on both sides",
                table.table
            ))?;
            differ.push(table.table.to_string());
        }
    }
    if !differ.is_empty() {
        bail!(
            "{} of {} tables differ: {}",
            differ.len(),
            tables.len(),
            differ.join(", ")
        );
    }
    log::info!("{} tables equal", tables.len());
    Ok(())
}

/// The query that counts and checksums one table.
enum CompareQuery {
    /// The default: row count and the sum of a 64-bit hash of each row's text, with the
    /// provider's columns in the provider's order on both sides (so that another column
    /// order on the subscriber is no difference).
    Columns(Vec<(String, String)>),
    /// The configured `compare_sql`, `_TABLE_` replaced by the table's quoted name.
    Custom(String),
}

/// The name `_TABLE_` stands for in a custom `compare_sql` on a table with a copy condition:
/// a common table expression holding the rows the condition holds for.
const CONDITION_ROWS: &str = "\"_skyrep_compare_rows\"";

impl CompareQuery {
    /// The query for `table`, counting only the rows `condition` holds for (the provider's
    /// side of a table added with `--copy-condition`).
    fn sql(&self, table: &TableName, condition: Option<&str>) -> String {
        match (self, condition) {
            (CompareQuery::Custom(sql), None) => sql.replace("_TABLE_", &table.quoted()),
            // `_TABLE_` names a common table expression of the matching rows, so the
            // user's query works as written: with or without ONLY (which a CTE takes), an
            // alias, `_TABLE_.column`, or a WITH of its own (it runs as a subquery, where
            // the outer CTE is seen).
            (CompareQuery::Custom(sql), Some(condition)) => {
                let sql = sql.trim_end().trim_end_matches(';');
                format!(
                    "with {CONDITION_ROWS} as (select * from only {} where ({condition})) \
                     select * from ({}\n) as compared",
                    table.quoted(),
                    sql.replace("_TABLE_", CONDITION_ROWS)
                )
            }
            (CompareQuery::Columns(cols), _) => {
                let row: Vec<String> = cols
                    .iter()
                    .map(|(c, _)| format!("t.{}", quote_ident(c)))
                    .collect();
                format!(
                    "select count(*), coalesce(sum(hashtextextended(row({})::text, 0)), 0) \
                     from only {} t{}",
                    row.join(", "),
                    table.quoted(),
                    condition
                        .map(|c| format!(" where ({c})"))
                        .unwrap_or_default()
                )
            }
        }
    }
}

/// Runs a compare query and formats its first two columns as `N rows, checksum=X`.
fn count(client: &mut Client, sql: &str) -> Result<String> {
    let rows = client.simple_query(sql)?;
    let row = rows
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .context("the compare query returned no row")?;
    if row.len() < 2 {
        bail!("the compare query must return two columns (count, checksum)");
    }
    Ok(format!(
        "{} rows, checksum={}",
        row.get(0).unwrap_or("0"),
        row.get(1).unwrap_or("None")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_sql_on_a_table_with_a_condition_reads_a_cte_of_its_rows() {
        let table = TableName::new("My \"Schema\"", "Odd Tab").unwrap();
        let custom = CompareQuery::Custom(
            "select count(*), sum(hashtext(t::text)) from only _TABLE_ t;\n".into(),
        );
        assert_eq!(
            custom.sql(&table, None),
            "select count(*), sum(hashtext(t::text)) from only \"My \"\"Schema\"\"\".\"Odd Tab\" t;\n"
        );
        assert_eq!(
            custom.sql(&table, Some("id > 5")),
            "with \"_skyrep_compare_rows\" as \
             (select * from only \"My \"\"Schema\"\"\".\"Odd Tab\" where (id > 5)) \
             select * from (select count(*), sum(hashtext(t::text)) \
             from only \"_skyrep_compare_rows\" t\n) as compared"
        );
    }
}
