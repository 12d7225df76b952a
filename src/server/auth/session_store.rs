//! The session store: tower-sessions records in the app's own `sessions` table, on either
//! engine. A record's data is kept as JSON; the fields that decide whether a session still holds
//! (its user, the generation and time it was signed in under, its last save) are kept as columns
//! too, so the authorization point reads the session, the user and the membership in one
//! statement ([`super::session::confirmed`]) without loading the record. Rows are found by the
//! SHA-256 of the session id ([`key`]), never by the id itself: a copy of the table (a backup, a
//! read-only leak) holds no cookie that signs anyone in.

use async_trait::async_trait;
use time::OffsetDateTime;
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{Error, Result, SessionStore};

use crate::domain::Timestamp;
use crate::server::db::Db;
use crate::server::graph::snapshot::sha256_hex;

/// The stored form of a session id: its SHA-256, in hex.
pub fn key(id: &Id) -> String {
    sha256_hex(id.to_string().as_bytes())
}

/// The record's keys that are also columns (see [`super::session`]).
pub const USER_ID: &str = "user_id";
pub const SIGNED_IN_AT: &str = "signed_in_at";
pub const GENERATION: &str = "generation";
pub const TOUCHED_AT: &str = "touched_at";

/// Sessions in the app's database.
#[derive(Debug, Clone)]
pub struct DbSessionStore {
    db: Db,
}

impl DbSessionStore {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Writes `record` as a new row. Returns whether it was written (it is not when its id is
    /// taken).
    async fn insert(&self, record: &Record) -> Result<bool> {
        let columns = Columns::of(record)?;
        let written = sqlx::query(
            "INSERT INTO sessions \
             (id_hash, user_id, generation, signed_in_at, touched_at, data, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id_hash) DO NOTHING",
        )
        .bind(key(&record.id))
        .bind(columns.user_id)
        .bind(columns.generation)
        .bind(columns.signed_in_at)
        .bind(columns.touched_at)
        .bind(columns.data)
        .bind(columns.expires_at)
        .execute(self.db.pool())
        .await
        .map_err(backend)?
        .rows_affected();
        Ok(written == 1)
    }

    /// Writes `record` over the row of the same id, if that row still exists. A session ended
    /// (signed out, or ended by the authorization point) while a request of it was in flight
    /// stays ended: that request's save finds no row and writes nothing, rather than bringing
    /// the session and its user back.
    async fn update(&self, record: &Record) -> Result<()> {
        let columns = Columns::of(record)?;
        sqlx::query(
            "UPDATE sessions SET user_id = $2, generation = $3, signed_in_at = $4, \
             touched_at = $5, data = $6, expires_at = $7 WHERE id_hash = $1",
        )
        .bind(key(&record.id))
        .bind(columns.user_id)
        .bind(columns.generation)
        .bind(columns.signed_in_at)
        .bind(columns.touched_at)
        .bind(columns.data)
        .bind(columns.expires_at)
        .execute(self.db.pool())
        .await
        .map_err(backend)?;
        Ok(())
    }

    /// Deletes the sessions whose expiry has passed.
    pub async fn delete_expired(&self) -> std::result::Result<u64, sqlx::Error> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(Timestamp::now().millis())
            .execute(self.db.pool())
            .await?
            .rows_affected())
    }
}

/// A record as the columns of its row.
struct Columns {
    user_id: Option<i64>,
    generation: Option<i64>,
    signed_in_at: Option<i64>,
    touched_at: Option<i64>,
    data: String,
    expires_at: i64,
}

impl Columns {
    fn of(record: &Record) -> Result<Self> {
        let column = |key: &str| record.data.get(key).and_then(serde_json::Value::as_i64);
        Ok(Self {
            user_id: column(USER_ID),
            generation: column(GENERATION),
            signed_in_at: column(SIGNED_IN_AT),
            touched_at: column(TOUCHED_AT),
            data: serde_json::to_string(&record.data).map_err(|e| Error::Encode(e.to_string()))?,
            expires_at: millis(record.expiry_date),
        })
    }
}

fn millis(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn backend(error: sqlx::Error) -> Error {
    Error::Backend(error.to_string())
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> Result<()> {
        // Ids are 128 random bits; a taken one is drawn again rather than overwritten.
        while !self.insert(record).await? {
            record.id = Id::default();
        }
        Ok(())
    }

    /// Only ever updates: a session is created by [`SessionStore::create`] (a new session, or
    /// a sign-in's new id), never brought back by a save.
    async fn save(&self, record: &Record) -> Result<()> {
        self.update(record).await
    }

    async fn load(&self, id: &Id) -> Result<Option<Record>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT data, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(key(id))
        .bind(Timestamp::now().millis())
        .fetch_optional(self.db.pool())
        .await
        .map_err(backend)?;
        let Some((data, expires_at)) = row else {
            return Ok(None);
        };
        let expiry_date =
            OffsetDateTime::from_unix_timestamp_nanos(i128::from(expires_at) * 1_000_000)
                .map_err(|e| Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data: serde_json::from_str(&data).map_err(|e| Error::Decode(e.to_string()))?,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(key(id))
            .execute(self.db.pool())
            .await
            .map_err(backend)?;
        Ok(())
    }
}
