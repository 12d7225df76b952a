//! Invitations: the owner lists and withdraws pending ones; the invitee, who has no account
//! yet, reads one and accepts it. The token always travels in a POST body (the accept page
//! reads it from the link's fragment), never in a URL a log line would keep.

use leptos::prelude::*;

use crate::domain::{AppError, InvitationPreview, PendingInvitation};

/// The tenant's invitations that can still be used (owners and managers read them, as they
/// read the members).
#[server(prefix = "/api", endpoint = "invitations/list")]
pub async fn list_invitations(tenant: String) -> Result<Vec<PendingInvitation>, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::invitations;
    in_tenant(&tenant, Capability::ReadAuditLog, |ctx, state| async move {
        invitations::pending(&state.db, &ctx.scope).await
    })
    .await
}

/// Withdraws a pending invitation: its link stops working.
#[server(prefix = "/api", endpoint = "invitations/revoke")]
pub async fn revoke_invitation(tenant: String, id: i64) -> Result<(), AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::invitations;
    in_tenant(&tenant, Capability::ManageMembers, |ctx, state| async move {
        invitations::revoke(&state.db, &ctx.scope, ctx.user_id, id).await
    })
    .await
}

/// The invitation a token names: tenant, address and role, or why it cannot be used (not
/// valid, used, expired). Anyone holding the link may ask; nobody else can guess a token.
#[server(prefix = "/api", endpoint = "invitations/preview")]
pub async fn preview_invitation(token: String) -> Result<InvitationPreview, AppError> {
    use crate::domain::invitation::InvitationToken;
    use crate::server::tenants::invitations;
    use crate::server::{error::respond, state::app_state};
    respond(
        async {
            let db = &app_state()?.db;
            let token = InvitationToken::parse(&token)?;
            invitations::preview(db, &token).await
        }
        .await,
    )
}

/// Accepts an invitation: makes the account with this name and password and its membership,
/// signs it in, and answers the tenant's first page (where the browser goes next). When the
/// invited address has an account, the caller must be signed in as it: it then joins the tenant
/// (name and password unused); anyone else is refused with 409.
#[server(prefix = "/api", endpoint = "invitations/accept")]
pub async fn accept_invitation(
    token: String,
    name: String,
    password: String,
) -> Result<String, AppError> {
    use crate::domain::invitation::{check_new_password, parse_display_name, InvitationToken};
    use crate::domain::routes;
    use crate::server::auth::{current_session, password::HashError, session};
    use crate::server::tenants::invitations;
    use crate::server::{error::respond, state::app_state};
    respond(
        async {
            let state = app_state()?;
            let db = &state.db;
            let token = InvitationToken::parse(&token)?;
            if let Some(joiner) = invitations::check_usable(db, &token).await? {
                // The address has an account: only that account's session joins with the link
                // (the name and password are not used), and the link never sets a password.
                let session = current_session().await?;
                let signed_in =
                    session::signed_in_user(&session, db, &state.settings.sessions).await?;
                if signed_in != Some(joiner.account()) {
                    return Err(joiner.refusal());
                }
                let tenant = invitations::join(db, &token, joiner.account()).await?;
                let next = routes::tenant_home(&tenant.external_id);
                leptos_axum::redirect(&next);
                return Ok(next);
            }
            let name = parse_display_name(&name)?;
            check_new_password(&password)?;
            // Under sign-in's limit (one hash per core): every holder of a valid link could
            // otherwise start a 19 MiB hash per request.
            let hash = match state.password_checker.hash(password).await {
                Ok(hash) => hash,
                Err(HashError::Busy(busy)) => {
                    tracing::warn!("every core is hashing passwords: an acceptance is turned away");
                    return Err(AppError::Busy {
                        retry_after: busy.retry_after.as_secs().max(1),
                    });
                }
                Err(HashError::Failed) => {
                    tracing::error!("could not hash a new password");
                    return Err(AppError::Internal);
                }
            };
            let accepted = invitations::accept(db, &token, &name, &hash).await?;
            session::sign_in(
                &current_session().await?,
                accepted.user_id,
                accepted.session_generation,
            )
            .await
            .map_err(|error| {
                tracing::error!(%error, "could not store the session");
                AppError::Internal
            })?;
            let next = routes::tenant_home(&accepted.tenant.external_id);
            leptos_axum::redirect(&next);
            Ok(next)
        }
        .await,
    )
}
