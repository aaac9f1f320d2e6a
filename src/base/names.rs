//! Table names as users type them and as SQL needs them.
//!
//! Users write `name` (meaning `public.name`), `schema.name`, or either part in double
//! quotes for names with capitals, spaces, dots or quotes (`"My Schema"."Order ""A"""`).
//! Inside, a table is always schema-qualified: [`TableName::qualified`] gives the unquoted
//! `schema.name` that PgQ's triggers put into `ev_extra1` and that the registry stores, and
//! [`TableName::quoted`] gives the form to put into SQL.

use std::fmt;

use anyhow::{Result, bail};

/// A schema-qualified table (or sequence) name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    /// The schema, as stored in the catalog (no quotes).
    pub schema: String,
    /// The name, as stored in the catalog (no quotes).
    pub name: String,
}

impl TableName {
    /// Parses a name as typed on the command line; a bare name means `public.NAME`.
    pub fn parse(text: &str) -> Result<TableName> {
        let parts = split_identifiers(text)?;
        let (schema, name) = match parts.as_slice() {
            [name] => ("public".to_string(), name.clone()),
            [schema, name] => (schema.clone(), name.clone()),
            _ => bail!(
                "bad table name `{text}`: write NAME or SCHEMA.NAME (double-quote names with dots)"
            ),
        };
        TableName::new(&schema, &name)
    }

    /// Builds a name from its catalog parts. A schema containing a dot is refused: the
    /// unquoted `schema.name` form, which PgQ's events carry, could not be read back.
    pub fn new(schema: &str, name: &str) -> Result<TableName> {
        if schema.is_empty() || name.is_empty() {
            bail!("bad table name `{schema}.{name}`: empty schema or name");
        }
        if schema.contains('.') {
            bail!("schema name `{schema}` contains a dot, which skyrep cannot replicate");
        }
        if schema.contains('\0') || name.contains('\0') {
            bail!("bad table name: NUL character");
        }
        Ok(TableName {
            schema: schema.to_string(),
            name: name.to_string(),
        })
    }

    /// Reads back the unquoted `schema.name` form (split at the first dot).
    pub fn from_qualified(text: &str) -> Result<TableName> {
        match text.split_once('.') {
            Some((schema, name)) => TableName::new(schema, name),
            None => bail!("`{text}` is not a schema-qualified table name"),
        }
    }

    /// `schema.name` without quotes, as PgQ events and the registry carry it.
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `"schema"."name"`, for SQL.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Shows the unquoted `schema.name`.
impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// An identifier in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string literal in single quotes, inner quotes doubled (standard_conforming_strings).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Splits `a."b.c"` into its dot-separated identifiers, removing quotes. Unquoted parts are
/// taken as written (PostgreSQL would fold them to lower case; skyrep does not guess).
fn split_identifiers(text: &str) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            current.push('"');
                        }
                        Some('"') => break,
                        Some(c) => current.push(c),
                        None => bail!("bad table name `{text}`: unterminated double quote"),
                    }
                }
            }
            '.' => {
                if current.is_empty() && !quoted_part {
                    bail!("bad table name `{text}`: empty part");
                }
                parts.push(std::mem::take(&mut current));
                quoted_part = false;
            }
            c => current.push(c),
        }
    }
    if current.is_empty() && !quoted_part {
        bail!("bad table name `{text}`: empty part");
    }
    parts.push(current);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_public() {
        let t = TableName::parse("test").unwrap();
        assert_eq!(t.qualified(), "public.test");
        assert_eq!(t.quoted(), "\"public\".\"test\"");
    }

    #[test]
    fn quoted_parts_keep_dots_quotes_spaces_and_capitals() {
        let t = TableName::parse(r#""Sales Data"."Order ""A"".v2""#).unwrap();
        assert_eq!(t.schema, "Sales Data");
        assert_eq!(t.name, "Order \"A\".v2");
        assert_eq!(t.quoted(), r#""Sales Data"."Order ""A"".v2""#);
        assert_eq!(TableName::from_qualified(&t.qualified()).unwrap(), t);
        let u = TableName::parse("shop.Ünïcødé").unwrap();
        assert_eq!(u.quoted(), "\"shop\".\"Ünïcødé\"");
    }

    #[test]
    fn bad_names_are_refused() {
        assert!(TableName::parse("a.b.c").is_err());
        assert!(TableName::parse("a.").is_err());
        assert!(TableName::parse("\"open").is_err());
        assert!(
            TableName::parse(r#""a.b".c"#)
                .unwrap_err()
                .to_string()
                .contains("dot")
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
