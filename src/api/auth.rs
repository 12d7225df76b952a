//! Sign-in, sign-out and who is signed in.

use leptos::prelude::*;

use crate::domain::{self, AppError};

/// Signs in and answers the local path to go to next (the `next` asked for, if it is local).
#[server(prefix = "/api", endpoint = "auth/sign-in")]
pub async fn sign_in(
    email: String,
    password: String,
    #[server(default)] next: String,
) -> Result<String, AppError> {
    use crate::domain::Email;
    use crate::server::auth::client_address::client_address;
    use crate::server::auth::{current_session, redirect};
    use crate::server::{error::respond, state::app_state};
    use axum::extract::ConnectInfo;
    use axum::http::HeaderMap;
    use std::net::SocketAddr;

    respond(
        async {
            let state = app_state()?;
            let email = Email::parse(&email)?;
            let peer = leptos_axum::extract::<ConnectInfo<SocketAddr>>()
                .await
                .ok()
                .map(|c| c.0.ip());
            let headers = leptos_axum::extract::<HeaderMap>()
                .await
                .unwrap_or_default();
            let forwarded_for: Vec<&str> = headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .collect();
            let address = client_address(peer, &forwarded_for, &state.settings.trusted_proxies);
            let session = current_session().await?;
            crate::server::auth::sign_in(&state, &session, &email, password, address).await?;
            let next = redirect::LocalPath::parse(&next, &state.settings.public_origin);
            // The browser goes there, with or without the wasm bundle (Location + server-fn redirect).
            leptos_axum::redirect(next.as_str());
            Ok(next.into_string())
        }
        .await,
    )
}

/// Ends the session (also in the store, so a copied cookie stops working).
#[server(prefix = "/api", endpoint = "auth/sign-out")]
pub async fn sign_out() -> Result<(), AppError> {
    use crate::server::audit::{self, AuditEvent};
    use crate::server::auth::{current_session, session};
    use crate::server::{error::respond, state::app_state};

    respond(
        async {
            let state = app_state()?;
            let current = current_session().await?;
            let user_id = session::unchecked_user_id(&current).await;
            session::sign_out(&current).await.map_err(|error| {
                tracing::error!(%error, "could not delete the session");
                AppError::Internal
            })?;
            if let Some(user_id) = user_id {
                audit::record(
                    &state.db,
                    AuditEvent {
                        tenant_id: None,
                        actor_user_id: Some(user_id),
                        action: "auth.sign_out",
                        target: format!("user:{user_id}"),
                        details: serde_json::json!({}),
                    },
                )
                .await;
            }
            leptos_axum::redirect("/sign-in");
            Ok(())
        }
        .await,
    )
}

/// The signed-in user and their tenants; 401 when nobody is signed in.
#[server(prefix = "/api", endpoint = "auth/me")]
pub async fn current_user() -> Result<domain::CurrentUser, AppError> {
    use crate::server::auth::{signed_in_user, users};
    use crate::server::{error::respond, state::app_state};

    respond(
        async {
            let db = &app_state()?.db;
            let user_id = signed_in_user().await?;
            users::current_user(db, user_id)
                .await?
                .ok_or(AppError::Unauthorized)
        }
        .await,
    )
}
