//! Server-side sessions in the app's own database (tower-sessions with the app's store,
//! [`super::session_store`]): the cookie holds only a random id; the user id lives in the
//! `sessions` table.
//!
//! A session ends when it is unused for the idle timeout, when its absolute lifetime since
//! sign-in is over, or when the user's session generation moves on (a password change): each
//! session records the generation it was signed in under, and every request compares it with
//! the user's, in the same statement that reads the session ([`confirmed`]).

use std::time::Duration;

use axum::Router;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use super::session_store::{self, DbSessionStore, GENERATION, SIGNED_IN_AT, TOUCHED_AT, USER_ID};
use crate::domain::{AppError, Timestamp};
use crate::server::db::Db;

/// The session cookie's name over plain http.
pub const COOKIE: &str = "tenantatlas_session";
/// The session cookie's name over https. Browsers accept a `__Host-` cookie only when it is
/// Secure, for path `/` and without a Domain, so a sibling subdomain cannot plant or overwrite it.
pub const HOST_COOKIE: &str = "__Host-tenantatlas_session";

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

/// Wraps the app in the session layer.
pub fn with_sessions(router: Router, db: &Db, settings: &SessionSettings) -> Router {
    let idle = time::Duration::try_from(settings.idle).unwrap_or(time::Duration::hours(8));
    let layer = SessionManagerLayer::new(DbSessionStore::new(db.clone()))
        .with_name(settings.cookie_name())
        .with_path("/")
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(settings.secure)
        .with_expiry(Expiry::OnInactivity(idle));
    router.layer(layer)
}

/// Deletes expired sessions every `period`, for as long as the server runs.
pub async fn delete_expired_forever(db: Db, period: Duration) {
    let store = DbSessionStore::new(db);
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        if let Err(error) = store.delete_expired().await {
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
    let confirmed = confirmed(session, settings, |key, now| async move {
        let sql = format!("SELECT {SESSION_COLUMNS} {FROM_SESSION} WHERE {SESSION_IS}");
        Ok(sqlx::query_as::<_, SessionColumns>(&sql)
            .bind(key)
            .bind(now)
            .fetch_optional(db.pool())
            .await?
            .map(|columns| (columns, ())))
    })
    .await?;
    Ok(confirmed.map(|(user_id, ())| user_id))
}

/// What [`confirmed`] reads of a session and its user: [`SESSION_COLUMNS`] selected
/// [`FROM_SESSION`] (with any further joins) where [`SESSION_IS`], which binds the session's key
/// (the hash of its id) to `$1` and the time now to `$2`.
#[derive(Debug, sqlx::FromRow)]
pub struct SessionColumns {
    user_id: Option<i64>,
    generation: Option<i64>,
    signed_in_at: Option<i64>,
    touched_at: Option<i64>,
    /// The user's generation now (`None`: no such user).
    current_generation: Option<i64>,
}

/// The columns of [`SessionColumns`].
pub const SESSION_COLUMNS: &str = "s.user_id, s.generation, s.signed_in_at, s.touched_at, \
     u.session_generation AS current_generation";
/// The session as `s` and its user as `u`.
pub const FROM_SESSION: &str = "FROM sessions s LEFT JOIN users u ON u.id = s.user_id";
/// The session whose [`session_store::key`] is `$1`, unless it expired before `$2`.
pub const SESSION_IS: &str = "s.id_hash = $1 AND s.expires_at > $2";

/// [`signed_in_user`] with what else the caller reads about the user in the same statement:
/// `read(session_key, now)` answers the session's [`SessionColumns`] (`None`: no such session,
/// or one that expired) and that. So the authorization point reads the session, the user and
/// the membership in one statement, without loading the session's record. It reads the session
/// as stored: a sign-in in this request counts from the next one.
pub async fn confirmed<T, Fut>(
    session: &Session,
    settings: &SessionSettings,
    read: impl FnOnce(String, i64) -> Fut,
) -> Result<Option<(i64, T)>, AppError>
where
    Fut: std::future::Future<Output = Result<Option<(SessionColumns, T)>, AppError>>,
{
    let Some(id) = session.id() else {
        return Ok(None);
    };
    let now = Timestamp::now().millis();
    let Some((columns, read)) = read(session_store::key(&id), now).await? else {
        return Ok(None);
    };
    let Some(user_id) = columns.user_id else {
        return Ok(None);
    };
    let max_age = i64::try_from(settings.max_age.as_millis()).unwrap_or(i64::MAX);
    let fresh = columns
        .signed_in_at
        .is_some_and(|at| now.saturating_sub(at) < max_age);
    if fresh && columns.generation.is_some() && columns.current_generation == columns.generation {
        keep_alive(
            session,
            settings,
            columns.touched_at.or(columns.signed_in_at),
            now,
        )
        .await;
        return Ok(Some((user_id, read)));
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
async fn keep_alive(session: &Session, settings: &SessionSettings, touched: Option<i64>, now: i64) {
    let idle = i64::try_from(settings.idle.as_millis()).unwrap_or(i64::MAX);
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
