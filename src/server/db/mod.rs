//! The database: one sqlx `Any` pool that speaks SQLite (the embedded default) or PostgreSQL
//! (production, several instances on one queue). Domain queries are written once in SQL both
//! engines accept (`$1` placeholders, `RETURNING`, partial indexes); what differs lives in
//! [`sqlite`] and [`postgres`] and is chosen by [`Backend`].

pub mod canonical_rows;
mod postgres;
mod sql;
mod sqlite;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::Any;
use sqlx::AnyPool;

pub use sql::{fold_case, Sql};

/// Why [`Db::migrate`] failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database holds a migration this build does not have: a newer TenantAtlas migrated
    /// it. Nothing was applied; this build cannot use it.
    #[error(
        "this database was migrated by a newer TenantAtlas (migration {0}, which this build does \
         not know): run that version or newer"
    )]
    Newer(i64),
    #[error("{0}")]
    Other(#[from] sqlx::migrate::MigrateError),
}

/// Which engine a pool talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Up to how many ids [`Backend::id_in`] binds as one value.
const BOUND_IDS: usize = 100;

/// A condition "`column` is one of these ids" ([`Backend::id_in`]): its SQL, and the value to
/// bind for it as the statement's last placeholder, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdIn {
    pub sql: String,
    value: Option<String>,
}

impl IdIn {
    /// `query` (with every other value bound) with the ids' value bound, if they are one; a
    /// statement with the ids written into it is not kept prepared, as it is used once.
    pub fn bind<'q, Q: BindText<'q>>(&self, query: Q) -> Q {
        match &self.value {
            Some(value) => query.bind_text(value.clone()),
            None => query.keep_prepared(false),
        }
    }
}

/// sqlx's three kinds of query, to bind an [`IdIn`] to.
pub trait BindText<'q>: Sized {
    fn bind_text(self, value: String) -> Self;
    fn keep_prepared(self, keep: bool) -> Self;
}

impl<'q> BindText<'q> for sqlx::query::Query<'q, Any, AnyArguments<'q>> {
    fn bind_text(self, value: String) -> Self {
        self.bind(value)
    }
    fn keep_prepared(self, keep: bool) -> Self {
        self.persistent(keep)
    }
}

impl<'q, O> BindText<'q> for sqlx::query::QueryAs<'q, Any, O, AnyArguments<'q>> {
    fn bind_text(self, value: String) -> Self {
        self.bind(value)
    }
    fn keep_prepared(self, keep: bool) -> Self {
        self.persistent(keep)
    }
}

impl<'q, O> BindText<'q> for sqlx::query::QueryScalar<'q, Any, O, AnyArguments<'q>> {
    fn bind_text(self, value: String) -> Self {
        self.bind(value)
    }
    fn keep_prepared(self, keep: bool) -> Self {
        self.persistent(keep)
    }
}

impl Backend {
    /// Picks the engine from a `sqlite:` or `postgres:` URL.
    pub fn from_url(url: &str) -> Result<Self, sqlx::Error> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Self::Postgres)
        } else {
            Err(sqlx::Error::Configuration(
                "DATABASE_URL must start with sqlite: or postgres:".into(),
            ))
        }
    }

    /// `column` is one of `ids`. A short list (the common case: a run of a few policies) is one
    /// value bound to `placeholder`, which must be the statement's last: a JSON array read by
    /// `json_each` on SQLite, an array on PostgreSQL. The statement's text is then the same
    /// whatever the ids, so each connection prepares it once, where ids written into the SQL
    /// made every call a new statement (a round trip to prepare it, and one to evict another
    /// from the cache). A long list is written into the SQL as before: PostgreSQL searches a
    /// constant array through a hash, a bound one element by element (a submit of 10,000
    /// policies: 8.3 ms bound, 4.0 ms written, service p50 in `benches/runs.rs`); its statement
    /// is not kept prepared ([`IdIn::bind`]). The ids are integers, so writing them cannot
    /// inject anything.
    pub fn id_in(self, column: &str, placeholder: &str, ids: &[i64]) -> IdIn {
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let (sql, value) = match (self, ids.len() <= BOUND_IDS) {
            (Self::Sqlite, true) => (
                format!("{column} IN (SELECT value FROM json_each({placeholder}))"),
                Some(format!("[{list}]")),
            ),
            (Self::Postgres, true) => (
                format!("{column} = ANY(CAST({placeholder} AS TEXT)::bigint[])"),
                Some(format!("{{{list}}}")),
            ),
            (Self::Sqlite, false) => (format!("{column} IN ({list})"), None),
            (Self::Postgres, false) => (format!("{column} = ANY('{{{list}}}'::bigint[])"), None),
        };
        IdIn { sql, value }
    }

    /// The function that returns the larger of two values (`MAX(a, b)` is an aggregate on
    /// PostgreSQL, `GREATEST` unknown to SQLite).
    pub fn greatest(self) -> &'static str {
        match self {
            Self::Sqlite => "MAX",
            Self::Postgres => "GREATEST",
        }
    }

    fn migrator(self) -> &'static Migrator {
        match self {
            Self::Sqlite => &sqlite::MIGRATOR,
            Self::Postgres => &postgres::MIGRATOR,
        }
    }
}

/// The engine's own small pool, for what needs a concrete driver (PostgreSQL's LISTEN/NOTIFY,
/// the SQLite instance lock).
#[derive(Clone)]
pub enum NativePool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A connection pool and the engine behind it. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    native: NativePool,
    backend: Backend,
    /// The SQLite database file (none for PostgreSQL or an in-memory database).
    sqlite_file: Option<PathBuf>,
    /// Which of this process's connections it is (see [`Db::instance`]).
    instance: u64,
}

// Not derived: connect options hold the URL, and a password must never reach a log line.
impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// A PostgreSQL transaction whose commit does not wait for the WAL's flush ([`Db::begin_lazy`]).
const LAZY_BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit TO off";
/// Sequential scans planned only where no index serves, for the rest of a PostgreSQL
/// transaction ([`Db::begin_batch`]).
const PLAN_BY_INDEX: &str = "SET LOCAL enable_seqscan TO off";

impl Db {
    /// Connects (creating an SQLite file and its folder when missing).
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        let (pool, native) = match backend {
            Backend::Sqlite => sqlite::connect(options, url).await?,
            Backend::Postgres => postgres::connect(options, url).await?,
        };
        Ok(Self {
            pool,
            native,
            backend,
            sqlite_file: match backend {
                Backend::Sqlite => sqlite::file_path(url),
                Backend::Postgres => None,
            },
            instance: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// Applies the engine's pending migrations from `migrations/<engine>/`, then respells the
    /// names and addresses stored before they were canonical on every write
    /// ([`canonical_rows`]; a no-op once they are).
    ///
    /// A database that a newer TenantAtlas migrated (a migration this build does not know) is
    /// refused, with nothing applied: [`MigrateError::Newer`].
    pub async fn migrate(&self) -> Result<(), MigrateError> {
        self.backend
            .migrator()
            .run(&self.pool)
            .await
            .map_err(|error| match error {
                sqlx::migrate::MigrateError::VersionMissing(version) => {
                    MigrateError::Newer(version)
                }
                error => MigrateError::Other(error),
            })?;
        canonical_rows::canonicalise_stored_rows(self)
            .await
            .map_err(|error| MigrateError::Other(error.into()))?;
        Ok(())
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that will write, whatever it reads first. On SQLite it takes the write
    /// lock at its start (`BEGIN IMMEDIATE`), waiting for another writer there: a transaction
    /// that reads before its first write would have to upgrade its lock, which waits in the
    /// busy handler's sleeps, or fails at once when another writer committed after its read
    /// (`SQLITE_BUSY_SNAPSHOT`). PostgreSQL locks rows, not the database: a plain `BEGIN`.
    pub async fn begin_writing(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Backend::Postgres => self.pool.begin().await,
        }
    }

    /// A transaction whose commit on PostgreSQL returns before the WAL is flushed to disk
    /// (`synchronous_commit` off for this transaction alone): a crash of PostgreSQL may then
    /// lose the last fraction of a second of such commits, each whole and in order, never a part
    /// of one. Only for work the engine redoes when it is lost (`Operation::LAZY_COMMITS`). On
    /// SQLite, whose commits in WAL mode are not flushed anyway (`synchronous = NORMAL`), a
    /// plain `BEGIN`. A batch of outcomes, which reads first, begins with [`Self::begin_batch`].
    pub async fn begin_lazy(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.backend {
            Backend::Postgres => self.pool.begin_with(LAZY_BEGIN).await,
            Backend::Sqlite => self.pool.begin().await,
        }
    }

    /// The transaction a run's batch of outcomes is written in, which reads first: lazy as
    /// [`Self::begin_lazy`]'s for an operation that opted in (`lazy`), on SQLite
    /// [`Self::begin_writing`].
    /// On PostgreSQL, with sequential scans planned only where no index serves
    /// (`enable_seqscan` off for this transaction alone): every statement of a batch reaches its
    /// rows through an index, and so must the foreign-key checks of its inserts, whose plans
    /// each connection keeps. A connection that first checked a key while the table was a page
    /// or two (a new database, a new tenant's first backup) otherwise kept a plan that reads the
    /// whole table for every inserted row, until the table was analysed again.
    pub async fn begin_batch(
        &self,
        lazy: bool,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match (self.backend, lazy) {
            (Backend::Postgres, true) => {
                self.pool
                    .begin_with(format!("{LAZY_BEGIN}; {PLAN_BY_INDEX}"))
                    .await
            }
            (Backend::Postgres, false) => {
                self.pool
                    .begin_with(format!("BEGIN; {PLAN_BY_INDEX}"))
                    .await
            }
            (Backend::Sqlite, _) => self.begin_writing().await,
        }
    }

    /// Makes a transaction begun with [`Self::begin_lazy`] commit as any other: waiting until
    /// PostgreSQL has flushed it.
    pub async fn commit_durably(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<(), sqlx::Error> {
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit TO on")
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    pub fn native(&self) -> &NativePool {
        &self.native
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite database file, if any (the instance lock file lives next to it).
    pub fn sqlite_file(&self) -> Option<&Path> {
        self.sqlite_file.as_deref()
    }

    /// A number no other [`Db::connect`] of this process has (its clones share it): what is
    /// kept in memory per database keys by it.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// Answers whether the database takes queries (for `/healthz`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
        match &self.native {
            NativePool::Sqlite(pool) => pool.close().await,
            NativePool::Postgres(pool) => pool.close().await,
        }
    }
}

/// Whether an error is a unique-constraint violation (the same check on both engines).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}
