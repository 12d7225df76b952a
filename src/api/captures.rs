//! Runs started without a selection: Sync from Intune, Capture now and Compare with Intune (drift
//! check), and what the last of each found.

use leptos::prelude::*;

use crate::domain::versions::RunActivity;
use crate::domain::{AppError, SubmittedRun};

/// Starts a sync of the tenant's inventory from Intune (deduplicated: one active per tenant).
#[server(prefix = "/api", endpoint = "runs/sync-inventory")]
pub async fn sync_inventory(tenant: String) -> Result<SubmittedRun, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs::start;
    in_tenant(&tenant, Capability::StartRuns, |ctx, state| async move {
        let run = start::sync_inventory(&state.db, &ctx).await?;
        started(&state, &ctx, &run, "tenant", ctx.scope.id()).await;
        Ok(run)
    })
    .await
}

/// Starts a capture of one policy (deduplicated: one active per policy). A new version is
/// stored only when the policy's content changed.
#[server(prefix = "/api", endpoint = "runs/capture-policy")]
pub async fn capture_policy(tenant: String, policy_id: i64) -> Result<SubmittedRun, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs::start;
    in_tenant(&tenant, Capability::StartRuns, |ctx, state| async move {
        let run = start::capture_policy(&state.db, &ctx, policy_id).await?;
        started(&state, &ctx, &run, "policy", policy_id).await;
        Ok(run)
    })
    .await
}

/// Starts a drift check of a backup set: every policy in it captured and compared with the
/// backup (deduplicated: one active per set).
#[server(prefix = "/api", endpoint = "runs/check-drift")]
pub async fn check_drift(tenant: String, backup_set_id: i64) -> Result<SubmittedRun, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs::start;
    in_tenant(&tenant, Capability::StartRuns, |ctx, state| async move {
        let run = start::check_drift(&state.db, &ctx, backup_set_id).await?;
        started(&state, &ctx, &run, "backup_set", backup_set_id).await;
        Ok(run)
    })
    .await
}

/// The run of `operation` (`inventory.sync`, `policy.capture_snapshot` or
/// `backup_set.drift_check`) on `target_id` (a policy, a backup set; ignored for a sync, whose
/// target is the tenant) that is active now, and the last one that ended. A capture's or drift
/// check's `target_id` left out or not positive is a 422, one not of the tenant a 404.
#[server(prefix = "/api", endpoint = "runs/activity")]
pub async fn get_run_activity(
    tenant: String,
    operation: String,
    #[server(default)] target_id: i64,
) -> Result<RunActivity, AppError> {
    use crate::domain::run::OperationType;
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs::start;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        // A sync's target is the tenant, whatever `target_id` says.
        let (operation, target_id) = match OperationType::parse(&operation) {
            Some(op @ (OperationType::CaptureSnapshot | OperationType::DriftCheck)) => {
                // Left out, it reads 0: no run's target, so say so rather than answer "none".
                if target_id <= 0 {
                    return Err(AppError::invalid(
                        "target_id",
                        "Not a policy or backup set id.",
                    ));
                }
                (op, target_id)
            }
            Some(OperationType::InventorySync) => (OperationType::InventorySync, ctx.scope.id()),
            _ => return Err(AppError::invalid("operation", "Unknown operation.")),
        };
        start::activity(&state.db, &ctx.scope, operation, target_id).await
    })
    .await
}

/// Wakes the workers for a new run and writes the audit event of the start.
#[cfg(feature = "ssr")]
pub(crate) async fn started(
    state: &crate::server::state::AppState,
    ctx: &crate::server::auth::TenantContext,
    run: &SubmittedRun,
    target_kind: &str,
    target_id: i64,
) {
    let details =
        serde_json::json!({ "on": format!("{target_kind}:{target_id}"), "total": run.total });
    crate::server::runs::submitted(state, ctx, run, "run.start", details).await;
}
