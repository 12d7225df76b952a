//! SQLite specifics: the file and its folder are created on first use, WAL lets readers run
//! beside the single writer, a busy timeout makes writers queue instead of failing, and
//! `LOWER` folds every script, not ASCII alone.

use std::ffi::{c_char, c_int, c_void};
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use libsqlite3_sys as ffi;

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
    register_unicode_lower();
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

/// Makes `LOWER(text)` on every SQLite connection this process opens from now on fold the
/// way the search patterns are folded ([`super::fold_case`]): SQLite's own `LOWER` (and `LIKE`)
/// fold ASCII only, so a search for "überwachung" missed "Überwachung Defender", which
/// PostgreSQL finds. Replacing the built-in keeps one SQL text for both engines and reaches
/// every query that compares `LOWER(…)`, wherever it is built. No index or generated column
/// is built on `LOWER(…)` (an index would be read by another program with the built-in).
/// Registered as an auto-extension, since the `Any` pool gives no access to a connection's
/// handle; SQLite then calls [`add_unicode_lower`] for each connection it opens.
fn register_unicode_lower() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // SAFETY: `add_unicode_lower` has the entry point's signature and lives for the
        // whole program.
        let rc = unsafe { ffi::sqlite3_auto_extension(Some(add_unicode_lower)) };
        assert_eq!(rc, ffi::SQLITE_OK, "SQLite takes the LOWER extension");
    });
}

/// The auto-extension's entry point: defines `LOWER` with one argument on connection `db`.
unsafe extern "C" fn add_unicode_lower(
    db: *mut ffi::sqlite3,
    _error: *mut *mut c_char,
    _api: *const ffi::sqlite3_api_routines,
) -> c_int {
    // SAFETY: `db` is the connection SQLite is opening; the name is NUL-terminated; the
    // function keeps no state (`pApp` is null, nothing to destroy).
    unsafe {
        ffi::sqlite3_create_function_v2(
            db,
            c"lower".as_ptr(),
            1,
            ffi::SQLITE_UTF8 | ffi::SQLITE_DETERMINISTIC | ffi::SQLITE_INNOCUOUS,
            std::ptr::null_mut::<c_void>(),
            Some(unicode_lower),
            None,
            None,
            None,
        )
    }
}

/// `LOWER(value)`: NULL stays NULL, anything else is read as text and [`super::fold_case`]d.
unsafe extern "C" fn unicode_lower(
    context: *mut ffi::sqlite3_context,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) {
    // SAFETY: SQLite passes `argc` (1, as registered) values in `argv`, valid during the call;
    // the text it returns for one is `bytes` long (UTF-8, as registered) and valid until the
    // value changes, which nothing here does. The result is copied (`SQLITE_TRANSIENT`) before
    // `folded` is dropped.
    unsafe {
        let value = *argv;
        if argc != 1 || ffi::sqlite3_value_type(value) == ffi::SQLITE_NULL {
            ffi::sqlite3_result_null(context);
            return;
        }
        let text = ffi::sqlite3_value_text(value);
        let len = usize::try_from(ffi::sqlite3_value_bytes(value)).unwrap_or(0);
        let bytes = if text.is_null() {
            &[][..]
        } else {
            std::slice::from_raw_parts(text, len)
        };
        let text = String::from_utf8_lossy(bytes);
        let folded = super::fold_case(&text);
        ffi::sqlite3_result_text(
            context,
            folded.as_ptr().cast::<c_char>(),
            c_int::try_from(folded.len()).unwrap_or(c_int::MAX),
            ffi::SQLITE_TRANSIENT(),
        );
    }
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

/// The database file a `sqlite:` URL names, as sqlx reads the URL (scheme stripped once,
/// percent-decoded: `sqlite:////srv/a%20b.db` is `//srv/a b.db`, that is `/srv/a b.db`);
/// none for an in-memory database (`:memory:`, `mode=memory`, or no file name at all).
fn named_file(url: &str) -> Option<std::path::PathBuf> {
    let in_memory = url
        .split_once('?')
        .is_some_and(|(_, params)| params.split('&').any(|param| param == "mode=memory"));
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let memory = in_memory
        || path.as_os_str().is_empty()
        || path.to_str().is_some_and(|name| {
            name.contains(":memory:") || name.starts_with("file:sqlx-in-memory-")
        });
    (!memory).then(|| path.to_path_buf())
}

/// The database file a `sqlite:` URL opens, once it exists (after connecting): [`named_file`]
/// with symbolic links and `.`/`..` resolved, so that every spelling of one file (a link to it,
/// a percent-encoded name, a relative path) gives the same path, and with it the same instance
/// lock file. As named when it cannot be resolved (the file does not exist). None for an
/// in-memory database.
pub(super) fn file_path(url: &str) -> Option<std::path::PathBuf> {
    let path = named_file(url)?;
    Some(std::fs::canonicalize(&path).unwrap_or(path))
}

fn create_parent_dir(url: &str) -> Result<(), sqlx::Error> {
    let Some(path) = named_file(url) else {
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

    /// Every connection of a pool folds non-ASCII capitals in `LOWER`, as PostgreSQL does.
    #[tokio::test]
    async fn lower_folds_every_script() {
        let options = AnyPoolOptions::new().max_connections(2);
        sqlx::any::install_default_drivers();
        let (pool, native) = connect(options, "sqlite::memory:").await.unwrap();
        let lowered: String = sqlx::query_scalar("SELECT LOWER($1)")
            .bind("ÜBERWACHUNG Политика Wi-Fi")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(lowered, "überwachung политика wi-fi");
        let null: Option<String> = sqlx::query_scalar("SELECT LOWER(NULL)")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(null, None);
        let NativePool::Sqlite(native) = native else {
            unreachable!("an SQLite URL")
        };
        let number: String = sqlx::query_scalar("SELECT LOWER(12)")
            .fetch_one(&native)
            .await
            .unwrap();
        assert_eq!(number, "12");
    }

    /// The file a URL names is the one sqlx opens: scheme stripped once, percent-decoded;
    /// in-memory URLs name none.
    #[test]
    fn names_the_file_sqlx_opens() {
        let named = |url: &str| named_file(url).map(|path| path.display().to_string());
        assert_eq!(named("sqlite:data/a.db").as_deref(), Some("data/a.db"));
        assert_eq!(
            named("sqlite://data/a.db?mode=rwc").as_deref(),
            Some("data/a.db")
        );
        assert_eq!(named("sqlite:///srv/a.db").as_deref(), Some("/srv/a.db"));
        assert!(named_file("sqlite:////srv/a.db").is_some_and(|path| path.is_absolute()));
        assert_eq!(
            named("sqlite:///srv/a%20b.db").as_deref(),
            Some("/srv/a b.db")
        );
        for memory in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
            "sqlite://a.db?mode=memory&cache=shared",
            "sqlite:",
        ] {
            assert_eq!(named_file(memory), None, "{memory}");
        }
    }

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
