//! The restore wizard's server functions: the source and its candidates, starting a preview,
//! reading a preview's plan, and executing it. Only owners and managers may preview or execute
//! (`Capability::Restore`); every member may read.

use leptos::prelude::*;

use crate::domain::restore::{RestorePreview, RestoreSourceView};
use crate::domain::{AppError, SubmittedRun};

/// What a restore from `source` (`set-12` or `version-40`) can restore, with its summary.
#[server(prefix = "/api", endpoint = "restore/source")]
pub async fn get_restore_source(
    tenant: String,
    source: String,
) -> Result<RestoreSourceView, AppError> {
    use crate::domain::restore::RestoreSource;
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::restore;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        let source = RestoreSource::parse_param(&source).ok_or_else(|| {
            AppError::invalid(
                "source",
                "Name a backup set (set-N) or a version (version-N).",
            )
        })?;
        restore::source_view(&state.db, &ctx.scope, source).await
    })
    .await
}

/// Starts a preview (dry-run) of restoring `policy_ids` from `source`: strictly read-only towards
/// Intune. Deduplicated: the identical preview already queued or running is returned.
#[server(prefix = "/api", endpoint = "runs/restore-preview")]
pub async fn start_restore_preview(
    tenant: String,
    source: String,
    #[server(default)] policy_ids: crate::domain::PolicyIds,
    #[server(default)] include_assignments: bool,
    #[server(default)] include_scope_tags: bool,
) -> Result<SubmittedRun, AppError> {
    use crate::domain::restore::{PreviewRequest, RestoreSource};
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::restore;
    in_tenant(&tenant, Capability::Restore, |ctx, state| async move {
        let source = RestoreSource::parse_param(&source).ok_or_else(|| {
            AppError::invalid(
                "source",
                "Name a backup set (set-N) or a version (version-N).",
            )
        })?;
        let request = PreviewRequest {
            source,
            policy_ids: policy_ids.0,
            include_assignments,
            include_scope_tags,
        };
        let run = restore::start_preview(&state.db, &ctx, &request).await?;
        let details = serde_json::json!({
            "source": source.to_param(),
            "items": run.total,
            "include_assignments": include_assignments,
            "include_scope_tags": include_scope_tags,
        });
        audited(&state, &ctx, &run, "restore.preview", details).await;
        Ok(run)
    })
    .await
}

/// A restore preview's plan, and whether it can be executed now (confirmations aside).
#[server(prefix = "/api", endpoint = "restore/preview")]
pub async fn get_restore_preview(tenant: String, run_id: i64) -> Result<RestorePreview, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::restore;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        restore::preview(&state.db, &ctx.scope, run_id).await
    })
    .await
}

/// Executes a preview: 422 unless "I reviewed the impact" is confirmed and the tenant's display
/// name is typed as the page shows it (same letters and case; runs of spaces and the spelling of
/// accents compared in their canonical form, `domain::text::canonical_name`); 409 unless the preview is done, current (under 15 minutes, the backup
/// unchanged), not executed before and unblocked. A repeat while it runs returns the same run.
#[server(prefix = "/api", endpoint = "runs/restore-execute")]
pub async fn execute_restore(
    tenant: String,
    preview_run_id: i64,
    #[server(default)] reviewed: bool,
    #[server(default)] tenant_name: String,
) -> Result<SubmittedRun, AppError> {
    use crate::domain::restore::ExecuteRequest;
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::restore;
    in_tenant(&tenant, Capability::Restore, |ctx, state| async move {
        let request = ExecuteRequest {
            preview_run_id,
            reviewed,
            tenant_name,
        };
        let run = restore::start_execute(&state.db, &ctx, &request).await?;
        let details = serde_json::json!({ "preview_run_id": preview_run_id, "items": run.total });
        audited(&state, &ctx, &run, "restore.execute", details).await;
        Ok(run)
    })
    .await
}

/// Wakes the workers and writes the run's start, plus the restore's own audit row.
#[cfg(feature = "ssr")]
async fn audited(
    state: &crate::server::state::AppState,
    ctx: &crate::server::auth::TenantContext,
    run: &SubmittedRun,
    action: &str,
    details: serde_json::Value,
) {
    use crate::server::audit::{self, AuditEvent};
    super::captures::started(state, ctx, run, "restore", run.run_id).await;
    if run.reused {
        return;
    }
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(ctx.scope.id()),
            actor_user_id: Some(ctx.user_id),
            action,
            target: format!("run:{}", run.run_id),
            details,
        },
    )
    .await;
}
