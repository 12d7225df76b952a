//! The tenant's connection check: read the last one (any member), start one (owner, manager).

use leptos::prelude::*;

use crate::domain::connection::ConnectionStatus;
use crate::domain::{AppError, SubmittedRun};

/// The tenant's last connection check (when, how it ended, the report) and the check queued or
/// running now, if any. A tenant never checked has no last check.
#[server(prefix = "/api", endpoint = "tenants/connection-check")]
pub async fn get_connection_check(tenant: String) -> Result<ConnectionStatus, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::connection_check;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        connection_check::status(&state.db, &ctx.scope).await
    })
    .await
}

/// "Check connection": queues a `tenant.check_connection` run (a new token, its permissions,
/// one page of each policy type), or returns the check already queued or running. Answers at
/// once; the worker talks to Graph. It is allowed whatever the last check found: it is how a
/// tenant blocked by a failed authentication gets unblocked.
#[server(prefix = "/api", endpoint = "tenants/check-connection")]
pub async fn check_connection(tenant: String) -> Result<SubmittedRun, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs;
    use crate::server::tenants::connection_check;
    in_tenant(
        &tenant,
        Capability::CheckConnection,
        |ctx, state| async move {
            let db = &state.db;
            let run = connection_check::start(db, &ctx).await?;
            let details = serde_json::json!({});
            runs::submitted(&state, &ctx, &run, "tenant.check_connection", details).await;
            Ok(run)
        },
    )
    .await
}
