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

    /// Writes `record`: a new row, or (`replace`) over the row of the same id. Returns whether a
    /// row was written (a new row is not when its id is taken).
    async fn write(&self, record: &Record, replace: bool) -> Result<bool> {
        let column = |key: &str| record.data.get(key).and_then(serde_json::Value::as_i64);
        let data = serde_json::to_string(&record.data).map_err(|e| Error::Encode(e.to_string()))?;
        let on_conflict = if replace {
            "DO UPDATE SET user_id = excluded.user_id, generation = excluded.generation, \
             signed_in_at = excluded.signed_in_at, touched_at = excluded.touched_at, \
             data = excluded.data, expires_at = excluded.expires_at"
        } else {
            "DO NOTHING"
        };
        let sql = format!(
            "INSERT INTO sessions \
             (id_hash, user_id, generation, signed_in_at, touched_at, data, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id_hash) {on_conflict}"
        );
        let written = sqlx::query(&sql)
            .bind(key(&record.id))
            .bind(column(USER_ID))
            .bind(column(GENERATION))
            .bind(column(SIGNED_IN_AT))
            .bind(column(TOUCHED_AT))
            .bind(data)
            .bind(millis(record.expiry_date))
            .execute(self.db.pool())
            .await
            .map_err(backend)?
            .rows_affected();
        Ok(written == 1)
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
        while !self.write(record, false).await? {
            record.id = Id::default();
        }
        Ok(())
    }

    async fn save(&self, record: &Record) -> Result<()> {
        self.write(record, true).await.map(|_| ())
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
