//! Tenants: the start page list and the header of every tenant page.

use leptos::prelude::*;

use crate::domain::{AppError, TenantSummary};

/// Every tenant (until sign-in narrows this to the user's memberships).
#[server(prefix = "/api", endpoint = "tenants/list")]
pub async fn list_tenants() -> Result<Vec<TenantSummary>, AppError> {
    use crate::server::{error::respond, state::app_state, tenants};
    respond(async { tenants::list(&app_state()?.db).await }.await)
}

/// The tenant named by its external id.
#[server(prefix = "/api", endpoint = "tenants/get")]
pub async fn get_tenant(tenant: String) -> Result<TenantSummary, AppError> {
    use crate::server::{error::respond, state::app_state, tenants};
    respond(
        async {
            let scope = tenants::resolve(&app_state()?.db, &tenant).await?;
            Ok(scope.summary().clone())
        }
        .await,
    )
}
