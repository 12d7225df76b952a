//! The data step that follows the SQL migrations ([`super::Db::migrate`]): rows stored before
//! e-mail addresses and names were spelled canonically on every write are respelled so. An
//! account whose address was stored decomposed (NFD) could not sign in once the typed address was
//! composed before the lookup, an invitation stored so no longer matched its account, and a backup
//! set named "Q1  baseline" let a second "Q1 baseline" that reads the same be created. In Rust,
//! as SQLite has no NFC: the rewrite is the one the writers apply ([`Email::parse`],
//! [`canonical_name`]).
//!
//! One `SELECT` of the ids and text columns per table, and an `UPDATE` only for a value whose
//! canonical spelling differs, all in one transaction: a database already canonical is read and
//! left alone, and a second run changes nothing. A rewrite that a unique constraint refuses (two
//! accounts whose addresses differ only in composition, two sets of a tenant whose names become
//! equal) leaves that row as it is, logged by ids only (no address in the log): the start goes on.

use std::collections::HashSet;

use sqlx::{Acquire, Row};

use super::{is_unique_violation, Db};
use crate::domain::auth::Email;
use crate::domain::text::canonical_name;

/// A column whose text has one canonical spelling.
struct Column {
    name: &'static str,
    /// Unique in its table (within [`Table::scope`] when the table has one).
    unique: bool,
    /// The canonical spelling of a stored value, or `None` to leave the value as it is.
    canonical: fn(&str) -> Option<String>,
}

/// A table with canonically spelled columns.
struct Table {
    name: &'static str,
    /// The column a unique column is unique together with (`backup_sets`: the tenant).
    scope: Option<&'static str>,
    columns: &'static [Column],
}

/// An address as [`Email::parse`] spells it; one that no longer parses stays as it is.
fn canonical_email(stored: &str) -> Option<String> {
    Email::parse(stored)
        .ok()
        .map(|email| email.as_str().to_owned())
}

/// A name as [`canonical_name`] spells it; one that would become empty stays as it is.
fn canonical_text(stored: &str) -> Option<String> {
    Some(canonical_name(stored)).filter(|name| !name.is_empty())
}

const TABLES: [Table; 4] = [
    Table {
        name: "users",
        scope: None,
        columns: &[
            Column {
                name: "email",
                unique: true,
                canonical: canonical_email,
            },
            Column {
                name: "display_name",
                unique: false,
                canonical: canonical_text,
            },
        ],
    },
    Table {
        name: "invitations",
        scope: None,
        columns: &[Column {
            name: "email",
            unique: false,
            canonical: canonical_email,
        }],
    },
    Table {
        name: "tenants",
        scope: None,
        columns: &[Column {
            name: "display_name",
            unique: false,
            canonical: canonical_text,
        }],
    },
    Table {
        name: "backup_sets",
        scope: Some("tenant_id"),
        columns: &[Column {
            name: "name",
            unique: true,
            canonical: canonical_text,
        }],
    },
];

/// Respells every stored address and name that is not in its canonical form, in one
/// transaction, and answers how many values it rewrote (0 when all were canonical).
pub async fn canonicalise_stored_rows(db: &Db) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin_writing().await?;
    let mut rewritten = 0;
    for table in &TABLES {
        rewritten += canonicalise_table(&mut tx, table).await?;
    }
    tx.commit().await?;
    if rewritten > 0 {
        tracing::info!(
            rewritten,
            "stored names and addresses respelled canonically"
        );
    }
    Ok(rewritten)
}

async fn canonicalise_table(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    table: &Table,
) -> Result<u64, sqlx::Error> {
    let scope = table.scope.map(|c| format!(", {c}")).unwrap_or_default();
    let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
    let select = format!(
        "SELECT id{scope}, {} FROM {} ORDER BY id",
        names.join(", "),
        table.name
    );
    let rows = sqlx::query(&select).fetch_all(&mut **tx).await?;
    let first_text = if table.scope.is_some() { 2 } else { 1 };

    struct Stored {
        id: i64,
        scope: i64,
        values: Vec<String>,
    }
    let mut stored = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut values = Vec::with_capacity(table.columns.len());
        for i in 0..table.columns.len() {
            values.push(row.try_get::<String, _>(first_text + i)?);
        }
        stored.push(Stored {
            id: row.try_get(0)?,
            scope: if table.scope.is_some() {
                row.try_get(1)?
            } else {
                0
            },
            values,
        });
    }

    let mut rewritten = 0;
    for (i, column) in table.columns.iter().enumerate() {
        // Every value the column holds now, per scope: a canonical spelling another row already
        // holds (or takes first, by id) would break the unique constraint.
        let mut taken: HashSet<(i64, &str)> = if column.unique {
            stored
                .iter()
                .map(|s| (s.scope, s.values[i].as_str()))
                .collect()
        } else {
            HashSet::new()
        };
        let mut claimed: HashSet<(i64, String)> = HashSet::new();
        for row in &stored {
            let old = row.values[i].as_str();
            let Some(new) = (column.canonical)(old).filter(|new| new != old) else {
                continue;
            };
            if column.unique
                && (taken.contains(&(row.scope, new.as_str()))
                    || claimed.contains(&(row.scope, new.clone())))
            {
                warn_collision(table, column, row.id, row.scope);
                continue;
            }
            // A savepoint: should a constraint this step does not know of (or a row written
            // since the SELECT) refuse the value, the transaction goes on without it.
            let mut savepoint = (&mut *tx).begin().await?;
            let update = format!(
                "UPDATE {} SET {} = $1 WHERE id = $2 AND {} = $3",
                table.name, column.name, column.name
            );
            let updated = sqlx::query(&update)
                .bind(&new)
                .bind(row.id)
                .bind(old)
                .execute(&mut *savepoint)
                .await;
            match updated {
                Ok(done) => {
                    savepoint.commit().await?;
                    rewritten += done.rows_affected();
                    if column.unique {
                        taken.remove(&(row.scope, old));
                        claimed.insert((row.scope, new));
                    }
                }
                Err(error) if is_unique_violation(&error) => {
                    savepoint.rollback().await?;
                    warn_collision(table, column, row.id, row.scope);
                }
                Err(error) => return Err(error),
            }
        }
    }
    Ok(rewritten)
}

/// Logs a row left in its old spelling, by ids only (the value may be an e-mail address).
fn warn_collision(table: &Table, column: &Column, id: i64, scope: i64) {
    match table.scope {
        Some(scope_column) => tracing::warn!(
            table = table.name,
            column = column.name,
            id,
            scope_column,
            scope,
            "stored value left in its old spelling: its canonical form is another row's"
        ),
        None => tracing::warn!(
            table = table.name,
            column = column.name,
            id,
            "stored value left in its old spelling: its canonical form is another row's"
        ),
    }
}
