//! SQLite specifics: the file and its folder are created on first use, WAL lets readers run
//! beside the single writer, and a busy timeout makes writers queue instead of failing.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use sqlx::{AnyPool, Executor};

use super::NativePool;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

pub(super) async fn connect(
    options: AnyPoolOptions,
    url: &str,
) -> Result<(AnyPool, NativePool), sqlx::Error> {
    create_parent_dir(url)?;
    let url = with_create_mode(url);
    let native = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(
            SqliteConnectOptions::from_str(&url)?
                .journal_mode(SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(5)),
        )
        .await?;
    let pool = options
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                     PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                )
                .await
                .map(|_| ())
            })
        })
        .connect(&url)
        .await?;
    Ok((pool, NativePool::Sqlite(native)))
}

/// `sqlite://data/x.db` → `sqlite://data/x.db?mode=rwc` unless a mode is given.
fn with_create_mode(url: &str) -> String {
    if url.contains("mode=") || url.contains(":memory:") {
        url.to_owned()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// The database file a `sqlite:` URL names; none for an in-memory database.
pub(super) fn file_path(url: &str) -> Option<std::path::PathBuf> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

fn create_parent_dir(url: &str) -> Result<(), sqlx::Error> {
    let Some(path) = file_path(url) else {
        return Ok(());
    };
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_create_mode_only_when_absent() {
        assert_eq!(
            with_create_mode("sqlite://data/a.db"),
            "sqlite://data/a.db?mode=rwc"
        );
        assert_eq!(
            with_create_mode("sqlite://a.db?cache=shared"),
            "sqlite://a.db?cache=shared&mode=rwc"
        );
        assert_eq!(
            with_create_mode("sqlite://a.db?mode=ro"),
            "sqlite://a.db?mode=ro"
        );
    }
}
