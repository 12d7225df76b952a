//! Tenants: connect one (instance admins), and its connection settings (owners).

use leptos::prelude::*;

use crate::domain::{AppError, TenantSettings, TenantStatus, TenantSummary};

/// "Connect a tenant": the tenant's id, a display name, the app registration's client id and
/// its secret (stored encrypted), optionally the secret's expiry (`YYYY-MM-DD`). The admin who
/// connects it becomes its owner. A tenant already connected is a 409; a server without a
/// secret key refuses with a 409 that says so.
#[server(prefix = "/api", endpoint = "tenants/connect")]
pub async fn connect_tenant(
    tenant: String,
    name: String,
    client_id: String,
    secret: String,
    #[server(default)] expires_on: String,
) -> Result<TenantSummary, AppError> {
    use crate::domain::NewTenant;
    use crate::server::auth::authorize_admin;
    use crate::server::tenants::connection::{self, SecretInput};
    use crate::server::{error::respond, state::app_state};
    respond(
        async {
            let state = app_state()?;
            let user_id = authorize_admin().await?;
            let input = NewTenant::parse(&tenant, &name, &client_id)?;
            let secret = connection::parse_secret(&secret)?;
            let expires_on = optional_day(&expires_on)?;
            let keys = state.secret_keys.as_deref();
            let (_, summary) = connection::connect(
                &state.db,
                keys,
                Some(user_id),
                &input,
                SecretInput::Clear(secret),
                expires_on,
            )
            .await?;
            Ok(summary)
        }
        .await,
    )
}

/// Whether a client secret entered in the Connect form can be stored: `false` when the server
/// has no secret key (the form is then disabled with the reason instead of being filled in for
/// nothing). Instance admins only.
#[server(prefix = "/api", endpoint = "tenants/can-connect")]
pub async fn can_connect_tenant() -> Result<bool, AppError> {
    use crate::server::auth::authorize_admin;
    use crate::server::{error::respond, state::app_state};
    respond(
        async {
            let state = app_state()?;
            authorize_admin().await?;
            Ok(state.secret_keys.is_some())
        }
        .await,
    )
}

/// What every member is told about the tenant's connection (the banner above its pages):
/// disconnected, and a client secret that expires within 30 days.
#[server(prefix = "/api", endpoint = "tenants/status")]
pub async fn get_tenant_status(tenant: String) -> Result<TenantStatus, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::connection;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        connection::status(&state.db, &ctx.scope).await
    })
    .await
}

/// The tenant's connection as its owner sees it: client id, where the secret lives and since
/// when (never the secret), its expiry and the warning, and whether it is disconnected.
#[server(prefix = "/api", endpoint = "tenants/settings")]
pub async fn get_tenant_settings(tenant: String) -> Result<TenantSettings, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::connection;
    in_tenant(
        &tenant,
        Capability::ManageMembers,
        |ctx, state| async move {
            connection::settings(&state.db, &ctx.scope, state.secret_keys.is_some()).await
        },
    )
    .await
}

/// Replaces the client secret (and the client id, when one is given) with the new secret's
/// expiry date.
#[server(prefix = "/api", endpoint = "tenants/replace-secret")]
pub async fn replace_secret(
    tenant: String,
    secret: String,
    #[server(default)] client_id: String,
    #[server(default)] expires_on: String,
) -> Result<(), AppError> {
    use crate::domain::{tenant::parse_client_id, Capability};
    use crate::server::auth::in_tenant;
    use crate::server::tenants::connection;
    in_tenant(
        &tenant,
        Capability::ManageMembers,
        |ctx, state| async move {
            let secret = connection::parse_secret(&secret)?;
            let client_id = match client_id.trim() {
                "" => None,
                raw => Some(parse_client_id(raw)?),
            };
            let expires_on = optional_day(&expires_on)?;
            connection::replace_secret(
                &state.db,
                state.secret_keys.as_deref(),
                &ctx.scope,
                ctx.user_id,
                client_id.as_deref(),
                &secret,
                expires_on,
            )
            .await
        },
    )
    .await
}

/// Disconnects the tenant: its data stays, no run can start, every run queued or under way is
/// cancelled, and it can be reconnected.
#[server(prefix = "/api", endpoint = "tenants/disconnect")]
pub async fn disconnect_tenant(tenant: String) -> Result<(), AppError> {
    set_connected(tenant, false).await
}

/// Reconnects a disconnected tenant.
#[server(prefix = "/api", endpoint = "tenants/reconnect")]
pub async fn reconnect_tenant(tenant: String) -> Result<(), AppError> {
    set_connected(tenant, true).await
}

#[cfg(feature = "ssr")]
async fn set_connected(tenant: String, connected: bool) -> Result<(), AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::connection;
    in_tenant(
        &tenant,
        Capability::ManageMembers,
        |ctx, state| async move {
            connection::set_connected(&state.db, &state.wake, &ctx, connected).await?;
            Ok(())
        },
    )
    .await
}

/// An optional `YYYY-MM-DD` field: empty is none.
#[cfg(feature = "ssr")]
fn optional_day(raw: &str) -> Result<Option<crate::domain::Day>, AppError> {
    match raw.trim() {
        "" => Ok(None),
        raw => crate::domain::Day::parse(raw).map(Some),
    }
}
