//! Server-side sessions in the app's own database (tower-sessions with its sqlx store): the
//! cookie holds only a random id; the user id lives in the `tower_sessions` table.
//!
//! A session ends when it is unused for the idle timeout, when its absolute lifetime since
//! sign-in is over, or when the user's session generation moves on (a password change): the
//! store's rows are opaque and cannot be found by user, so each session records the generation
//! it was signed in under, and [`signed_in_user`] compares it on every request.

use std::time::Duration;

use axum::Router;
use tower_sessions::cookie::SameSite;
use tower_sessions::{ExpiredDeletion, Expiry, Session, SessionManagerLayer};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use super::users;
use crate::domain::{AppError, Timestamp};
use crate::server::db::{Db, NativePool};

/// The session cookie's name over plain http.
pub const COOKIE: &str = "tenantatlas_session";
/// The session cookie's name over https. Browsers accept a `__Host-` cookie only when it is
/// Secure, for path `/` and without a Domain, so a sibling subdomain cannot plant or overwrite it.
pub const HOST_COOKIE: &str = "__Host-tenantatlas_session";
const USER_ID: &str = "user_id";
const SIGNED_IN_AT: &str = "signed_in_at";
const GENERATION: &str = "generation";
/// When the session's expiry was last moved on (its last save).
const TOUCHED_AT: &str = "touched_at";

/// How sessions behave.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// A session unused this long is over.
    pub idle: Duration,
    /// A session is over this long after its sign-in, however busy it is.
    pub max_age: Duration,
    /// Send the cookie only over TLS, under the `__Host-` name (set when the public URL is https).
    pub secure: bool,
}

impl SessionSettings {
    /// The session cookie's name: [`HOST_COOKIE`] over https, [`COOKIE`] otherwise.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            HOST_COOKIE
        } else {
            COOKIE
        }
    }
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
                .with_name(settings.cookie_name())
                .with_path("/")
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

/// The user id a session holds, unchecked: only for recording who signed out. Everything that
/// decides access asks [`signed_in_user`].
pub async fn unchecked_user_id(session: &Session) -> Option<i64> {
    session.get::<i64>(USER_ID).await.ok().flatten()
}

/// The signed-in user, if the session has one that still holds: signed in less than `max_age`
/// ago, under the user's current session generation. A session that fails either is ended in
/// the store, so its cookie stops working for good.
pub async fn signed_in_user(
    session: &Session,
    db: &Db,
    settings: &SessionSettings,
) -> Result<Option<i64>, AppError> {
    let confirmed = confirmed(session, settings, |user_id| async move {
        Ok((users::session_generation(db, user_id).await?, ()))
    })
    .await?;
    Ok(confirmed.map(|(user_id, ())| user_id))
}

/// [`signed_in_user`] with what else the caller reads about the user in the same query:
/// `read(user_id)` answers the user's current session generation (`None`: no such user) and
/// that. So the authorization point checks the session and the membership in one statement.
pub async fn confirmed<T, Fut>(
    session: &Session,
    settings: &SessionSettings,
    read: impl FnOnce(i64) -> Fut,
) -> Result<Option<(i64, T)>, AppError>
where
    Fut: std::future::Future<Output = Result<(Option<i64>, T), AppError>>,
{
    let Some(user_id) = unchecked_user_id(session).await else {
        return Ok(None);
    };
    let signed_in_at = session.get::<i64>(SIGNED_IN_AT).await.ok().flatten();
    let generation = session.get::<i64>(GENERATION).await.ok().flatten();
    let max_age = i64::try_from(settings.max_age.as_millis()).unwrap_or(i64::MAX);
    let fresh =
        signed_in_at.is_some_and(|at| Timestamp::now().millis().saturating_sub(at) < max_age);
    if fresh && generation.is_some() {
        let (current, read) = read(user_id).await?;
        if current == generation {
            keep_alive(session, settings, signed_in_at).await;
            return Ok(Some((user_id, read)));
        }
    }
    session.flush().await.map_err(|error| {
        tracing::error!(%error, "could not delete an ended session");
        AppError::Internal
    })?;
    Ok(None)
}

/// Moves the idle expiry on for a session in use. The store keeps a session's expiry (and
/// the browser its cookie's) from its last save, and a session that is only read is not saved;
/// so it is saved again once a quarter of the idle time has passed since its last save, not on
/// every request (a write per poll). A session therefore ends after between three quarters of
/// the idle time and all of it without use, and never while it is used.
async fn keep_alive(session: &Session, settings: &SessionSettings, signed_in_at: Option<i64>) {
    let now = Timestamp::now().millis();
    let idle = i64::try_from(settings.idle.as_millis()).unwrap_or(i64::MAX);
    let touched = session
        .get::<i64>(TOUCHED_AT)
        .await
        .ok()
        .flatten()
        .or(signed_in_at);
    if touched.is_some_and(|at| now.saturating_sub(at) < idle / 4) {
        return;
    }
    // Saved with the response; if that fails, the session only ends sooner.
    if let Err(error) = session.insert(TOUCHED_AT, now).await {
        tracing::warn!(%error, "could not move the session's expiry on");
    }
}

/// Starts a signed-in session under a new id (no session fixation), for the user's current
/// session `generation`.
pub async fn sign_in(
    session: &Session,
    user_id: i64,
    generation: i64,
) -> Result<(), tower_sessions::session::Error> {
    session.cycle_id().await?;
    session.insert(USER_ID, user_id).await?;
    session.insert(GENERATION, generation).await?;
    session
        .insert(SIGNED_IN_AT, Timestamp::now().millis())
        .await
}

/// Ends the session: removed from the store and the cookie cleared.
pub async fn sign_out(session: &Session) -> Result<(), tower_sessions::session::Error> {
    session.flush().await
}
