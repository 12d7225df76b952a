//! Server-side sessions in the app's own database (tower-sessions with its sqlx store): the
//! cookie holds only a random id; the user id lives in the `tower_sessions` table.

use std::time::Duration;

use axum::Router;
use tower_sessions::cookie::SameSite;
use tower_sessions::{ExpiredDeletion, Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use crate::server::db::{Db, NativePool};

/// The session cookie's name.
pub const COOKIE: &str = "tenantatlas_session";
const USER_ID: &str = "user_id";

/// How sessions behave.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A session unused this long is over.
    pub idle: Duration,
    /// Send the cookie only over TLS (set when the public URL is https).
    pub secure: bool,
}

/// Creates the session table if it is missing (the store owns its schema).
pub async fn migrate_store(db: &Db) -> Result<(), sqlx::Error> {
    match db.native() {
        NativePool::Sqlite(pool) => SqliteStore::new(pool.clone()).migrate().await,
        NativePool::Postgres(pool) => PostgresStore::new(pool.clone()).migrate().await,
    }
}

/// Wraps the app in the session layer of the database's engine.
pub fn with_sessions(router: Router, db: &Db, settings: &SessionSettings) -> Router {
    let idle = time::Duration::try_from(settings.idle).unwrap_or(time::Duration::hours(8));
    macro_rules! layer {
        ($store:expr) => {
            SessionManagerLayer::new($store)
                .with_name(COOKIE)
                .with_http_only(true)
                .with_same_site(SameSite::Lax)
                .with_secure(settings.secure)
                .with_expiry(Expiry::OnInactivity(idle))
        };
    }
    match db.native() {
        NativePool::Sqlite(pool) => router.layer(layer!(SqliteStore::new(pool.clone()))),
        NativePool::Postgres(pool) => router.layer(layer!(PostgresStore::new(pool.clone()))),
    }
}

/// Deletes expired sessions every `period`, for as long as the server runs.
pub async fn delete_expired_forever(db: Db, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        let result = match db.native() {
            NativePool::Sqlite(pool) => SqliteStore::new(pool.clone()).delete_expired().await,
            NativePool::Postgres(pool) => PostgresStore::new(pool.clone()).delete_expired().await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "could not delete expired sessions");
        }
    }
}

/// The signed-in user's id, if the session has one.
pub async fn user_id(session: &Session) -> Option<i64> {
    session.get::<i64>(USER_ID).await.ok().flatten()
}

/// Starts a signed-in session under a new id (no session fixation).
pub async fn sign_in(
    session: &Session,
    user_id: i64,
) -> Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(USER_ID, user_id).await
}

/// Ends the session: removed from the store and the cookie cleared.
pub async fn sign_out(session: &Session) -> Result<(), tower_sessions::session::Error> {
    session.flush().await
}
