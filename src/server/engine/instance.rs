//! The identity of a serving process, and the lock that says it is alive.
//!
//! A heartbeat row would still look fresh right after a `kill -9` and refuse the restart; a lock
//! that the operating system or the database drops with the process does not. On PostgreSQL the
//! instance holds a session advisory lock for its identity on a connection of its own; on SQLite
//! it holds an OS file lock (`flock`) on a file next to the database. While the lock is held, the
//! identity's leases are this process's alone: leases under it from before a restart belong to a
//! dead process and are taken back at once, and (on PostgreSQL) any instance may take a run whose
//! owner's lock is free.
//!
//! The PostgreSQL lock lives on one connection, which can drop while the process lives (a
//! PostgreSQL restart, `pg_terminate_backend`, a network blip): its runs would then look orphaned
//! to every instance. So the connection is checked every [`LOCK_CHECK`], and the lock taken again
//! on a new connection at once when it is gone; meanwhile [`InstanceLock::is_held`] is false and
//! the worker claims nothing (`Worker::claim_open`).
//!
//! The server releases a session's lock only once it knows the client is gone. A holder that
//! vanishes without closing its connection (its host gone or cut off, the process frozen) sends
//! no FIN or RST, and TCP would notice only after about two hours. So the lock's session is told
//! to end after [`LOCK_SILENCE`] without a query, which a live holder's checks never leave.
//!
//! The engine a `sync-inventory` invocation runs for its own runs holds an instance lock too (its
//! leases are judged like any instance's, and its identity is taken like any other), but it does
//! not serve the database: it claims only its invocation's runs. So it also holds a marker
//! ([`InstanceLock::acquire_cli`]), taken before its instance lock and let go after it, and
//! [`any_live`] does not count an instance lock its holder has marked so: another invocation
//! then runs an engine of its own at once instead of leaving its runs to one that never claims
//! them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::worker::AbortOnDrop;
use crate::server::db::{Db, NativePool};

/// The first key of every instance's advisory lock (the second is the hash of its identity), so
/// they cannot collide with advisory locks others take on the same database.
pub const LOCK_SPACE: i32 = 0x5441; // "TA"

/// The first key of the marker a `sync-inventory` engine holds beside its instance lock, on the
/// same session and with the same second key: an instance lock of [`LOCK_SPACE`] whose session
/// also holds this is not a serving instance's ([`any_live`]).
pub const CLI_MARK_SPACE: i32 = 0x5443; // "TC"

/// How often the PostgreSQL lock's connection is checked (one `SELECT 1`), and how soon a lost
/// lock is tried again: the time other instances may see this one's runs as orphaned.
pub const LOCK_CHECK: Duration = Duration::from_secs(1);

/// How long the lock's session may go without a query before PostgreSQL ends it, and with it
/// the lock (`idle_session_timeout`): the longest a vanished holder keeps its identity and its
/// runs. Ten checks ([`LOCK_CHECK`]), so a live holder never comes near it.
pub const LOCK_SILENCE: Duration = Duration::from_secs(10);

/// How long one check may take before the connection counts as gone. Far above a check's
/// normal time (well under a millisecond), so a busy database is not taken for a dead
/// connection: dropping a live one would itself release the lock.
const LOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an instance cannot start.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error(
        "another live TenantAtlas process runs as instance {0:?}; stop it, or give this one its \
         own --instance-id"
    )]
    AlreadyRunning(String),
    #[error("cannot take the instance lock: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot take the instance lock file {path}: {error}")]
    File {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Who holds an instance lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    /// A serving instance (`serve`): [`any_live`] counts it.
    Serving,
    /// The engine of a `sync-inventory` invocation, which claims only that invocation's runs:
    /// it holds a marker beside the lock, and [`any_live`] does not count it.
    Cli,
}

/// A held instance lock; released when dropped or when the process dies, however it dies (on
/// PostgreSQL, one that vanished without closing its connection within [`LOCK_SILENCE`]).
pub struct InstanceLock {
    id: String,
    /// Whether the lock is held now (false while a dropped PostgreSQL connection is replaced).
    held: Arc<AtomicBool>,
    /// The task that owns the connection the session advisory lock lives on, checks it and
    /// takes the lock again when it drops (PostgreSQL); the lock goes with the task.
    _monitor: Option<AbortOnDrop>,
    /// The open, locked file (SQLite).
    _file: Option<std::fs::File>,
    /// The open, locked marker file of a `sync-inventory` engine (SQLite). Declared after
    /// `_file`, so it is let go after the instance lock: the lock is never seen unmarked.
    _marker: Option<std::fs::File>,
}

impl InstanceLock {
    /// Takes the lock of identity `id` for a serving instance, or says that a live process
    /// already holds it.
    pub async fn acquire(db: &Db, id: &str) -> Result<Self, InstanceError> {
        Self::acquire_as(db, id, Holder::Serving).await
    }

    /// Takes the lock of identity `id` for the engine of a `sync-inventory` invocation, or says
    /// that a live process already holds it: the same lock as [`Self::acquire`] (its leases are
    /// judged, and its identity refused to a second process, alike), marked so that
    /// [`any_live`] does not take it for a serving instance.
    pub async fn acquire_cli(db: &Db, id: &str) -> Result<Self, InstanceError> {
        Self::acquire_as(db, id, Holder::Cli).await
    }

    async fn acquire_as(db: &Db, id: &str, holder: Holder) -> Result<Self, InstanceError> {
        let held = Arc::new(AtomicBool::new(true));
        let (monitor, file, marker) = match db.native() {
            NativePool::Postgres(pool) => {
                let Some(conn) = try_lock(pool, id, holder).await? else {
                    return Err(InstanceError::AlreadyRunning(id.to_owned()));
                };
                let monitor = tokio::spawn(keep_locked(
                    pool.clone(),
                    id.to_owned(),
                    holder,
                    conn,
                    Arc::clone(&held),
                ));
                (Some(AbortOnDrop(monitor)), None, None)
            }
            NativePool::Sqlite(_) => {
                // The marker first, so that the instance lock is never seen without it.
                let marker = match holder {
                    Holder::Cli => Some(lock_exclusively(lock_file(db, CLI_FILE, id), id)?),
                    Holder::Serving => None,
                };
                let file = lock_exclusively(lock_file(db, INSTANCE_FILE, id), id)?;
                (None, Some(file), marker)
            }
        };
        Ok(Self {
            id: id.to_owned(),
            held,
            _monitor: monitor,
            _file: file,
            _marker: marker,
        })
    }

    /// Whether the lock is held right now, shared with the worker (see [`Self::is_held`]).
    pub(super) fn held(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.held)
    }

    /// Whether the lock is held right now: false from a dropped PostgreSQL connection until the
    /// lock is taken again on a new one.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// The identity this lock holds: the owner name of the instance's leases.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Whether any live serving instance holds an instance lock on this database, whatever its
/// identity (this process's own locks included); the engine of a `sync-inventory` invocation
/// (its lock marked, [`InstanceLock::acquire_cli`]) does not count: it claims only its own
/// invocation's runs. PostgreSQL: an advisory lock of [`LOCK_SPACE`] granted to any session in
/// this database that does not also hold the identity's [`CLI_MARK_SPACE`] marker (one look at
/// `pg_locks`, so a session's two locks are seen together). SQLite: a lock file of the
/// database's that cannot be locked now, whose marker file can, in two looks in a row
/// ([`serving_holder`]); each is locked for a moment and let go. An in-memory SQLite database
/// has no other process: false.
pub async fn any_live(db: &Db) -> Result<bool, InstanceError> {
    match db.native() {
        // Referenced twice, the CTE is computed once: both locks come from one look.
        NativePool::Postgres(pool) => Ok(sqlx::query_scalar(&format!(
            "WITH held AS (SELECT l.classid, l.objid, l.pid FROM pg_locks l \
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())) \
             SELECT EXISTS (SELECT 1 FROM held i WHERE i.classid = {LOCK_SPACE} \
               AND NOT EXISTS (SELECT 1 FROM held m WHERE m.classid = {CLI_MARK_SPACE} \
                 AND m.objid = i.objid AND m.pid = i.pid))"
        ))
        .fetch_one(pool)
        .await?),
        NativePool::Sqlite(_) => {
            let Some(file) = db.sqlite_file() else {
                return Ok(false);
            };
            let (Some(folder), Some(name)) = (file.parent(), file.file_name()) else {
                return Ok(false);
            };
            let name = name.to_string_lossy();
            let prefix = format!("{name}.{INSTANCE_FILE}-");
            let io = |error| InstanceError::File {
                path: folder.to_owned(),
                error,
            };
            for entry in std::fs::read_dir(folder).map_err(io)? {
                let entry = entry.map_err(io)?;
                let entry_name = entry.file_name();
                let entry_name = entry_name.to_string_lossy();
                let Some(safe) = entry_name
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(".lock"))
                else {
                    continue;
                };
                let lock = entry.path();
                let marker = folder.join(format!("{name}.{CLI_FILE}-{safe}.lock"));
                if serving_holder(|| look_at(&lock, &marker)) {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

/// What one look at an instance lock file, then at its marker file, saw (SQLite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// The lock is free: no instance holds it.
    Free,
    /// The lock and its marker are held: a `sync-inventory` engine's.
    Marked,
    /// The lock is held and its marker free: a serving instance's, unless its holder let go of
    /// both between the two looks.
    Unmarked,
}

/// How many looks [`serving_holder`] takes at most at one lock before it goes by the last.
const LOOKS: usize = 8;

/// Looks at the instance lock file `lock`, then at its marker file `marker`.
fn look_at(lock: &std::path::Path, marker: &std::path::Path) -> Seen {
    if !locked_elsewhere(lock) {
        Seen::Free
    } else if locked_elsewhere(marker) {
        Seen::Marked
    } else {
        Seen::Unmarked
    }
}

/// Whether an instance lock is held by a serving instance, from `look` ([`look_at`]). The two
/// files are looked at one after the other, not together: a `sync-inventory` engine that stops
/// between the two looks (it lets go of its lock, then of its marker; or it is killed, and the
/// system closes its files in whatever order) is seen as a held lock without a marker. So a
/// held lock is looked at again until two looks in a row agree (at most [`LOOKS`], then the
/// last counts); a free lock counts at once.
fn serving_holder(mut look: impl FnMut() -> Seen) -> bool {
    let mut last = look();
    for _ in 1..LOOKS {
        if last == Seen::Free {
            return false;
        }
        let now = look();
        if now == last {
            break;
        }
        last = now;
    }
    last == Seen::Unmarked
}

/// Whether the file at `path` is locked by another open file now (it is locked for a moment
/// and let go). A file gone since it was listed, or not ours to open, is not.
fn locked_elsewhere(path: &std::path::Path) -> bool {
    let Ok(lock) = std::fs::File::open(path) else {
        return false;
    };
    matches!(lock.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Opens (creating it) and locks the file at `path` for identity `id`; refused as already
/// running when another open file holds it.
fn lock_exclusively(path: PathBuf, id: &str) -> Result<std::fs::File, InstanceError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| InstanceError::File {
            path: path.clone(),
            error,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(InstanceError::AlreadyRunning(id.to_owned())),
        Err(std::fs::TryLockError::Error(error)) => Err(InstanceError::File { path, error }),
    }
}

/// Takes the advisory lock of identity `id` on a connection of its own, for `holder` (a
/// `sync-inventory` engine takes its [`CLI_MARK_SPACE`] marker first, on the same session);
/// `None` when another session holds either.
async fn try_lock(
    pool: &sqlx::PgPool,
    id: &str,
    holder: Holder,
) -> Result<Option<sqlx::postgres::PgConnection>, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    limit_silence(&mut conn).await?;
    if holder == Holder::Cli && !try_advisory_lock(&mut conn, CLI_MARK_SPACE, id).await? {
        return Ok(None);
    }
    if try_advisory_lock(&mut conn, LOCK_SPACE, id).await? {
        return Ok(Some(conn));
    }
    if holder == Holder::Cli {
        // Not left to the connection's close, which the server may see only later.
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(CLI_MARK_SPACE)
            .bind(id)
            .execute(&mut conn)
            .await?;
    }
    Ok(None)
}

/// Takes the session advisory lock (`space`, hash of `id`) on `conn` if it is free.
async fn try_advisory_lock(
    conn: &mut sqlx::postgres::PgConnection,
    space: i32,
    id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked")
        .bind(space)
        .bind(id)
        .fetch_one(conn)
        .await
}

/// Makes PostgreSQL end the lock's session once its holder is silent: after [`LOCK_SILENCE`]
/// without a query (`idle_session_timeout`, PostgreSQL 14 and later), and, as a second guard
/// that also works on older servers, when TCP keepalives find the holder's host gone (about 20 s:
/// probes after 5 s of quiet, 5 s apart; or 20 s of data unacknowledged). A setting the server
/// refuses is logged once and left out: the lock then lasts as long as the connection, as before.
async fn limit_silence(conn: &mut sqlx::postgres::PgConnection) -> Result<(), sqlx::Error> {
    static REFUSED: AtomicBool = AtomicBool::new(false);
    let settings = [
        (
            "idle_session_timeout",
            format!("{}s", LOCK_SILENCE.as_secs()),
        ),
        ("tcp_keepalives_idle", "5".to_owned()),
        ("tcp_keepalives_interval", "5".to_owned()),
        ("tcp_keepalives_count", "3".to_owned()),
        ("tcp_user_timeout", "20000".to_owned()),
    ];
    for (name, value) in settings {
        let set = sqlx::query("SELECT set_config($1, $2, false)")
            .bind(name)
            .bind(value)
            .execute(&mut *conn)
            .await;
        match set {
            Ok(_) => {}
            Err(sqlx::Error::Database(error)) => {
                if !REFUSED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        setting = name,
                        %error,
                        "the database refused a limit on the instance lock's session; a vanished \
                         instance may keep its lock until the server notices it is gone"
                    );
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Checks the lock's connection every [`LOCK_CHECK`]; when it is gone (with it the lock), says
/// so in `held` and takes the lock again on a new connection, as soon as it can.
async fn keep_locked(
    pool: sqlx::PgPool,
    id: String,
    holder: Holder,
    conn: sqlx::postgres::PgConnection,
    held: Arc<AtomicBool>,
) {
    let mut conn = Some(conn);
    let mut every = tokio::time::interval(LOCK_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Some(current) = conn.as_mut() {
            let alive = tokio::time::timeout(
                LOCK_CHECK_TIMEOUT,
                sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&mut *current),
            )
            .await;
            if matches!(alive, Ok(Ok(_))) {
                continue;
            }
            held.store(false, Ordering::SeqCst);
            conn = None;
            tracing::warn!("the instance lock's connection dropped; taking the lock again");
        }
        match try_lock(&pool, &id, holder).await {
            Ok(Some(new)) => {
                conn = Some(new);
                held.store(true, Ordering::SeqCst);
                tracing::info!("the instance lock is held again");
            }
            // The old session may not be gone yet on the server's side; tried again next tick.
            Ok(None) => tracing::warn!("the instance lock is still held by another session"),
            Err(error) => tracing::warn!(%error, "cannot take the instance lock again yet"),
        }
    }
}

/// What an instance lock file's name starts with (after the database file's name).
const INSTANCE_FILE: &str = "instance";

/// What a `sync-inventory` engine's marker file's name starts with (after the database file's
/// name): not the instance lock files' start, so that older versions' [`any_live`] never read it.
const CLI_FILE: &str = "cli";

/// The lock file of kind `kind` ([`INSTANCE_FILE`], [`CLI_FILE`]) of identity `id`: next to the
/// database file (in the temporary folder for an in-memory database), named after the identity
/// with anything but letters and digits replaced.
fn lock_file(db: &Db, kind: &str, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = format!("{kind}-{safe}.lock");
    match db.sqlite_file() {
        Some(file) => {
            let mut path = file.as_os_str().to_owned();
            path.push(format!(".{name}"));
            PathBuf::from(path)
        }
        None => std::env::temp_dir().join(name),
    }
}

/// The default identity: the host name and the listen address, so that two instances on one
/// machine differ and a restarted instance is the same one.
pub fn default_id(addr: SocketAddr) -> String {
    format!("{}-{addr}", host_name())
}

/// This machine's name, as instance identities start (`localhost` when it has none).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the temporary folder, removed when dropped.
    struct Folder(PathBuf);

    impl Folder {
        fn new() -> Self {
            let path = std::env::temp_dir().join(format!("ta-instance-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for Folder {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Takes identity `x` through `held`, then through `second`, which names the same database
    /// file another way: the second must be refused while the first lives.
    async fn second_spelling_is_refused(held: &str, second: &str) {
        let first = Db::connect(held).await.unwrap();
        let lock = InstanceLock::acquire(&first, "x").await.unwrap();
        let other = Db::connect(second).await.unwrap();
        match InstanceLock::acquire(&other, "x").await {
            Err(InstanceError::AlreadyRunning(id)) => assert_eq!(id, "x"),
            Err(error) => panic!("{second} should be refused as already running, got {error}"),
            Ok(_) => panic!("{second} took the lock {held} holds"),
        }
        assert_eq!(first.sqlite_file(), other.sqlite_file());
        drop(lock);
        InstanceLock::acquire(&other, "x").await.unwrap();
    }

    /// [`serving_holder`] over the looks `seen`, in order: its answer and how many it took.
    fn judged(seen: &[Seen]) -> (bool, usize) {
        let mut looks = seen.iter().copied();
        let mut taken = 0;
        let serving = serving_holder(|| {
            taken += 1;
            looks.next().unwrap_or(Seen::Free)
        });
        (serving, taken)
    }

    /// A `sync-inventory` engine that stops (or is killed) between the look at its lock and the
    /// look at its marker is seen held and unmarked once; the next look finds its lock free, and
    /// it is not taken for a serving instance.
    #[test]
    fn instance_lock_let_go_between_the_two_looks_is_not_serving() {
        assert_eq!(judged(&[Seen::Unmarked, Seen::Free]), (false, 2));
        assert_eq!(
            judged(&[Seen::Unmarked, Seen::Marked, Seen::Marked]),
            (false, 3)
        );
    }

    /// A held lock counts as its holder's once two looks in a row agree; a free lock at once.
    #[test]
    fn instance_lock_counts_as_two_looks_in_a_row_see_it() {
        assert_eq!(judged(&[Seen::Free]), (false, 1));
        assert_eq!(judged(&[Seen::Unmarked, Seen::Unmarked]), (true, 2));
        assert_eq!(judged(&[Seen::Marked, Seen::Marked]), (false, 2));
        // Marked for a moment: a command trying the serving instance's identity.
        assert_eq!(
            judged(&[Seen::Marked, Seen::Unmarked, Seen::Unmarked]),
            (true, 3)
        );
    }

    /// Looks that never agree stop after [`LOOKS`], and the last one counts.
    #[test]
    fn instance_lock_looks_are_bounded() {
        let flapping = [Seen::Marked, Seen::Unmarked].repeat(LOOKS);
        let (serving, taken) = judged(&flapping);
        assert_eq!(taken, LOOKS);
        assert_eq!(serving, flapping[LOOKS - 1] == Seen::Unmarked);
    }

    /// On a SQLite file, a serving instance's lock counts as live, a `sync-inventory` engine's
    /// (marked) does not, and neither once let go of.
    #[tokio::test]
    async fn instance_locks_of_serving_instances_are_live() {
        let dir = Folder::new();
        let db = Db::connect(&format!("sqlite://{}", dir.0.join("ta.db").display()))
            .await
            .unwrap();
        assert!(!any_live(&db).await.unwrap());
        let cli = InstanceLock::acquire_cli(&db, "host-cli").await.unwrap();
        assert!(!any_live(&db).await.unwrap(), "a command's engine");
        let serving = InstanceLock::acquire(&db, "serving").await.unwrap();
        assert!(any_live(&db).await.unwrap());
        drop(serving);
        assert!(!any_live(&db).await.unwrap());
        drop(cli);
        assert!(!any_live(&db).await.unwrap());
    }

    /// A symbolic link to the database file is the same database, so the same instance.
    #[tokio::test]
    async fn lock_follows_a_symlink_to_the_database_file() {
        let dir = Folder::new();
        let real = dir.0.join("ta.db");
        let alias = dir.0.join("alias.db");
        let held = format!("sqlite://{}", real.display());
        Db::connect(&held).await.unwrap();
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        second_spelling_is_refused(&held, &format!("sqlite://{}", alias.display())).await;
    }

    /// sqlx percent-decodes the URL's path: `a%20b.db` opens the file `a b.db`.
    #[tokio::test]
    async fn lock_follows_a_percent_encoded_file_name() {
        let dir = Folder::new();
        let dir = dir.0.display().to_string();
        second_spelling_is_refused(
            &format!("sqlite://{dir}/a b.db"),
            &format!("sqlite://{dir}/a%20b.db"),
        )
        .await;
        assert!(std::path::Path::new(&format!("{dir}/a b.db")).exists());
        assert!(!std::path::Path::new(&format!("{dir}/a%20b.db")).exists());
    }

    /// `sqlite:////srv/ta.db` names the absolute file `/srv/ta.db` (as sqlx opens it), not
    /// `srv/ta.db` under the working folder.
    #[tokio::test]
    async fn lock_of_four_slashes_is_next_to_the_absolute_file() {
        let dir = Folder::new();
        let file = dir.0.join("ta.db");
        assert!(file.is_absolute());
        let four = format!("sqlite://{}", file.display()).replacen("sqlite:///", "sqlite:////", 1);
        second_spelling_is_refused(&format!("sqlite://{}", file.display()), &four).await;
        let db = Db::connect(&four).await.unwrap();
        let lock = lock_file(&db, INSTANCE_FILE, "x");
        assert!(lock.is_absolute(), "{}", lock.display());
        assert_eq!(
            lock.parent(),
            Some(&*std::fs::canonicalize(&dir.0).unwrap())
        );
    }
}
