//! The schema as the engine's catalog lists it: the tables the migrations created and their
//! columns, so a check over "every table" takes in a table a later migration adds without a
//! list of names being told.

use tenantatlas::server::db::{Backend, Db};

/// The base tables of the app's schema, by name (SQLite's own `sqlite_*` tables left out).
pub async fn tables(db: &Db) -> Vec<String> {
    let catalog = match db.backend() {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name"
        }
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
             ORDER BY table_name"
        }
    };
    sqlx::query_scalar(catalog)
        .fetch_all(db.pool())
        .await
        .expect("read the catalog's tables")
}

/// The columns of `table`, by name, in the order the table declares them.
pub async fn columns(db: &Db, table: &str) -> Vec<String> {
    let catalog = match db.backend() {
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1) ORDER BY cid",
        Backend::Postgres => {
            "SELECT CAST(column_name AS TEXT) FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 \
             ORDER BY ordinal_position"
        }
    };
    let columns: Vec<String> = sqlx::query_scalar(catalog)
        .bind(table)
        .fetch_all(db.pool())
        .await
        .expect("read the catalog's columns");
    assert!(!columns.is_empty(), "{table} has columns in the catalog");
    columns
}
