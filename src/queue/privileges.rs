//! Who may use the queue: PgQ 3's roles (`pgq_reader` consumes, `pgq_writer` inserts
//! events, `pgq_admin` ticks and administers) and the grants of `sql/pgq_grants.sql`.
//!
//! The roles are created when the installing role may create roles; otherwise the install
//! goes on (the schema's owner can do everything) and [`Roles::missing_advice`] says what to
//! create, or which config keys name existing roles instead.

use anyhow::{Context, Result};
use postgres::GenericClient;

use crate::config::Config;

const GRANTS: &str = include_str!("sql/pgq_grants.sql");

/// The names of the three roles (config keys `pgq_reader_role`, `pgq_writer_role`,
/// `pgq_admin_role`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Consumes: batches, consumers, retries.
    pub reader: String,
    /// Produces: `pgq.insert_event`.
    pub writer: String,
    /// Ticks, maintains, creates and drops queues; a member of the other two.
    pub admin: String,
}

impl Default for Roles {
    fn default() -> Roles {
        Roles {
            reader: "pgq_reader".into(),
            writer: "pgq_writer".into(),
            admin: "pgq_admin".into(),
        }
    }
}

impl Roles {
    /// The role names a config asks for (PgQ's names unless set).
    pub fn from_config(config: &Config) -> Result<Roles> {
        let name = |key: &str, default: String| -> Result<String> {
            Ok(config
                .text(key)?
                .filter(|v| !v.is_empty())
                .unwrap_or(default))
        };
        let d = Roles::default();
        Ok(Roles {
            reader: name("pgq_reader_role", d.reader)?,
            writer: name("pgq_writer_role", d.writer)?,
            admin: name("pgq_admin_role", d.admin)?,
        })
    }

    /// Grants PgQ 3's privileges on skyrep's `pgq` schema (and takes back wider ones), in
    /// the transaction of `client`, creating the roles where the current role may. Returns
    /// the roles that are still missing.
    pub fn grant(&self, client: &mut impl GenericClient) -> Result<Vec<String>> {
        client
            .execute(
                "select pg_catalog.set_config('skyrep.pgq_reader_role', $1, true), \
                        pg_catalog.set_config('skyrep.pgq_writer_role', $2, true), \
                        pg_catalog.set_config('skyrep.pgq_admin_role', $3, true)",
                &[&self.reader, &self.writer, &self.admin],
            )
            .context("naming the pgq roles")?;
        client
            .batch_execute(GRANTS)
            .context("granting the pgq privileges")?;
        let missing = client
            .query(
                "select n from pg_catalog.unnest($1::text[]) with ordinality r(n, i) \
                  where not exists (select 1 from pg_catalog.pg_roles where rolname = r.n) \
                  order by i",
                &[&vec![&self.reader, &self.writer, &self.admin]],
            )
            .context("looking for the pgq roles")?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok(missing)
    }

    /// What to do about `missing` roles, for the log: the statements a role with
    /// CREATEROLE runs, and the config keys that name existing roles instead.
    pub fn missing_advice(&self, missing: &[String]) -> String {
        let create: Vec<String> = missing
            .iter()
            .map(|r| {
                if *r == self.admin {
                    format!(
                        "CREATE ROLE {} NOLOGIN IN ROLE {}, {};",
                        quote_ident(r),
                        quote_ident(&self.reader),
                        quote_ident(&self.writer)
                    )
                } else {
                    format!("CREATE ROLE {} NOLOGIN;", quote_ident(r))
                }
            })
            .collect();
        format!(
            "role{} {} missing and this role may not create roles, so only the owner of schema \
             pgq can use the queue; as a role with CREATEROLE run `{}` and install again, or \
             name existing roles with pgq_reader_role, pgq_writer_role and pgq_admin_role",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ") + if missing.len() == 1 { " is" } else { " are" },
            create.join(" ")
        )
    }
}

/// `name` as an SQL identifier, quoted when it needs to be.
fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_names_the_statements_and_keys() {
        let roles = Roles {
            reader: "pgq_reader".into(),
            writer: "Queue Writer".into(),
            admin: "pgq_admin".into(),
        };
        let advice = roles.missing_advice(&["pgq_reader".into(), "pgq_admin".into()]);
        assert!(
            advice.contains(
                "`CREATE ROLE pgq_reader NOLOGIN; \
                 CREATE ROLE pgq_admin NOLOGIN IN ROLE pgq_reader, \"Queue Writer\";`"
            ),
            "{advice}"
        );
        assert!(
            advice.starts_with("roles pgq_reader, pgq_admin are missing"),
            "{advice}"
        );
        assert!(advice.contains("pgq_reader_role, pgq_writer_role and pgq_admin_role"));
    }
}
