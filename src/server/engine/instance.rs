//! The identity of a serving process, and the lock that says it is alive.
//!
//! A heartbeat row would still look fresh right after a `kill -9` and refuse the restart; a lock
//! that the operating system or the database drops with the process does not. On PostgreSQL the
//! instance holds a session advisory lock for its identity on a connection of its own; on SQLite
//! it holds an OS file lock (`flock`) on a file next to the database. While the lock is held, the
//! identity's leases are this process's alone: leases under it from before a restart belong to a
//! dead process and are taken back at once, and (on PostgreSQL) any instance may take a run whose
//! owner's lock is free.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::server::db::{Db, NativePool};

/// The first key of every instance's advisory lock (the second is the hash of its identity), so
/// they cannot collide with advisory locks others take on the same database.
pub const LOCK_SPACE: i32 = 0x5441; // "TA"

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

/// A held instance lock; released when dropped or when the process dies, however it dies.
pub struct InstanceLock {
    id: String,
    /// The connection the session advisory lock lives on (PostgreSQL).
    _connection: Option<sqlx::postgres::PgConnection>,
    /// The open, locked file (SQLite).
    _file: Option<std::fs::File>,
}

impl InstanceLock {
    /// Takes the lock of identity `id`, or says that a live process already holds it.
    pub async fn acquire(db: &Db, id: &str) -> Result<Self, InstanceError> {
        let (connection, file) = match db.native() {
            NativePool::Postgres(pool) => {
                let mut conn = pool.acquire().await?.detach();
                let locked: bool =
                    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2)) AS locked")
                        .bind(LOCK_SPACE)
                        .bind(id)
                        .fetch_one(&mut conn)
                        .await?;
                if !locked {
                    return Err(InstanceError::AlreadyRunning(id.to_owned()));
                }
                (Some(conn), None)
            }
            NativePool::Sqlite(_) => {
                let path = lock_file(db, id);
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
                    Ok(()) => (None, Some(file)),
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(InstanceError::AlreadyRunning(id.to_owned()))
                    }
                    Err(std::fs::TryLockError::Error(error)) => {
                        return Err(InstanceError::File { path, error })
                    }
                }
            }
        };
        Ok(Self {
            id: id.to_owned(),
            _connection: connection,
            _file: file,
        })
    }

    /// The identity this lock holds: the owner name of the instance's leases.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The lock file of identity `id`: next to the database file (in the temporary folder for an
/// in-memory database), named after the identity with anything but letters and digits replaced.
fn lock_file(db: &Db, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let name = format!("instance-{safe}.lock");
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
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}-{addr}")
}
