//! Signing in with an e-mail and a password: the throttle, the password check, the session and
//! the audit events. The server function only reads the request and redirects.

use std::net::IpAddr;

use tower_sessions::Session;

use super::throttle::Refused;
use super::{session, users};
use crate::domain::{AppError, Email};
use crate::server::audit::{self, AuditEvent};
use crate::server::state::AppState;

/// Seconds a client is asked to wait when the throttle's budgets could not be read.
const UNAVAILABLE_RETRY_AFTER: u64 = 2;

/// Signs `email` in with `password` into `session` and answers the user's id. The attempt is
/// counted against the account and the client `address` ([`super::throttle`]): refused with 429
/// once either has spent its budget, and given back when it succeeds (or no password could be
/// checked: 503 while every core is checking passwords). When the database cannot reserve the
/// attempt, it is refused with 503 too, never checked uncounted. A wrong e-mail or password is a 401,
/// audited as `auth.sign_in_failed`; a success is audited as `auth.sign_in`.
pub async fn sign_in(
    state: &AppState,
    session: &Session,
    email: &Email,
    password: String,
    address: Option<IpAddr>,
) -> Result<i64, AppError> {
    // Reserved before the slow check, so parallel guesses cannot all pass a check that has not
    // counted any of them yet; in the database, so every instance on it draws on one budget.
    let attempt = match state
        .sign_in_throttle
        .reserve(&state.db, email.as_str(), address)
        .await
    {
        Ok(attempt) => attempt,
        Err(Refused::Wait(wait)) => {
            return Err(AppError::TooManyRequests(format!(
                "Too many failed sign-ins. Try again in {} seconds.",
                wait.as_secs().max(1)
            )))
        }
        // The budget could not be read (logged): no password is checked uncounted.
        Err(Refused::Unavailable) => {
            return Err(AppError::Busy {
                retry_after: UNAVAILABLE_RETRY_AFTER,
            })
        }
    };
    let account = users::credentials(&state.db, email).await?;
    let hash = account.as_ref().and_then(|a| a.password_hash.clone());
    let verified = match state.password_checker.verify(password, hash).await {
        Ok(verified) => verified,
        Err(busy) => {
            // No password was checked, so nothing was guessed.
            attempt.refund().await;
            tracing::warn!("every core is checking passwords: a sign-in is turned away");
            return Err(AppError::Busy {
                retry_after: busy.retry_after.as_secs().max(1),
            });
        }
    };
    let address = address.map(|a| a.to_string());
    let Some(account) = account.filter(|_| verified) else {
        // A failed attempt stays counted.
        drop(attempt);
        audit::record(
            &state.db,
            AuditEvent {
                tenant_id: None,
                actor_user_id: None,
                action: "auth.sign_in_failed",
                target: format!("email:{}", email.as_str()),
                details: serde_json::json!({ "address": address }),
            },
        )
        .await;
        return Err(AppError::InvalidCredentials);
    };
    attempt.refund().await;
    session::sign_in(session, account.user_id, account.session_generation)
        .await
        .map_err(|error| {
            tracing::error!(%error, "could not store the session");
            AppError::Internal
        })?;
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: None,
            actor_user_id: Some(account.user_id),
            action: "auth.sign_in",
            target: format!("user:{}", account.user_id),
            details: serde_json::json!({ "address": address }),
        },
    )
    .await;
    Ok(account.user_id)
}
