//! Runs: the operations monitor.

use leptos::prelude::*;

use crate::domain::run::CancelledRun;
use crate::domain::run_detail::RunDetail;
use crate::domain::{AppError, RunSummary, RunsPage, SubmittedRun};

/// How many runs the monitor shows at most.
pub const RUNS_PAGE_SIZE: i64 = 100;

/// The tenant's most recent runs, newest first. `status` is a run status (`failed`, …) or
/// `active` (queued or running), `operation_type` an operation (`backup_set.add_policies`);
/// empty means any, an unknown value is a 422. `before` (a run id) pages back: the runs older
/// than that run; 0 means the newest.
#[server(prefix = "/api", endpoint = "runs/list")]
pub async fn list_runs(
    tenant: String,
    #[server(default)] status: String,
    #[server(default)] operation_type: String,
    #[server(default)] before: i64,
) -> Result<RunsPage, AppError> {
    use crate::domain::run::RunFilter;
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        let filter = RunFilter::parse(&status, &operation_type)?;
        let before = match before {
            0 => None,
            id if id > 0 => Some(id),
            _ => return Err(AppError::invalid("before", "Not a run id.")),
        };
        runs::queries::list(&state.db, &ctx.scope, &filter, before, RUNS_PAGE_SIZE).await
    })
    .await
}

/// "Add selected": queues a run that adds the policies to the backup set, or returns the
/// identical run already queued or running. Answers at once; the worker talks to Graph.
///
/// The policies are `policy_ids`, or, with `all_matching` (after "Select all N matching"),
/// every policy matching the picker's filter (`search`, `policy_type`, `platform`, read and
/// checked as `policies/matching-ids` reads them) that is not in the set yet, resolved now (see
/// `runs::create::create_or_reuse_matching`). The filter is read only with `all_matching`; ids
/// and `all_matching` together, or a filter nothing matches, are "No policies selected" (422).
#[server(prefix = "/api", endpoint = "runs/add-policies")]
#[allow(clippy::too_many_arguments)]
pub async fn add_policies(
    tenant: String,
    backup_set_id: i64,
    #[server(default)] policy_ids: crate::domain::PolicyIds,
    #[server(default)] include_assignments: bool,
    #[server(default)] include_scope_tags: bool,
    #[server(default)] all_matching: bool,
    #[server(default)] search: String,
    #[server(default)] policy_type: String,
    #[server(default)] platform: String,
) -> Result<SubmittedRun, AppError> {
    use crate::domain::selection::SelectionRequest;
    use crate::domain::{AddPoliciesOptions, Capability};
    use crate::server::auth::in_tenant;
    use crate::server::policies::PolicyFilter;
    use crate::server::runs::{self, create};
    in_tenant(&tenant, Capability::StartRuns, |ctx, state| async move {
        let db = &state.db;
        let request = SelectionRequest::parse(policy_ids.0, all_matching)?;
        let options = AddPoliciesOptions {
            include_assignments,
            include_scope_tags,
        };
        let run = match &request {
            SelectionRequest::Ids(selection) => {
                create::create_or_reuse(db, &ctx, backup_set_id, selection, options).await?
            }
            SelectionRequest::AllMatching => {
                let filter = PolicyFilter::parse(&search, &policy_type, platform)?;
                create::create_or_reuse_matching(db, &ctx, backup_set_id, &filter, options).await?
            }
        };
        let details = serde_json::json!({
            "backup_set_id": backup_set_id,
            "total": run.total,
            "all_matching": all_matching,
        });
        runs::submitted(&state, &ctx, &run, "run.start", details).await;
        Ok(run)
    })
    .await
}

/// Cancels a queued or running run: no new item starts, captures in flight finish, every item
/// not started ends skipped (`cancelled`). A repeated cancel answers the same; a run that ended
/// another way is a 409.
#[server(prefix = "/api", endpoint = "runs/cancel")]
pub async fn cancel_run(tenant: String, id: i64) -> Result<CancelledRun, AppError> {
    use crate::domain::Capability;
    use crate::server::audit::{self, AuditEvent};
    use crate::server::auth::in_tenant;
    use crate::server::runs::cancel;
    in_tenant(&tenant, Capability::CancelRuns, |ctx, state| async move {
        let db = &state.db;
        let Some(cancelled) = cancel::cancel(db, &ctx, id).await? else {
            return cancel::cancelled(db, ctx.scope.id(), id)
                .await?
                .ok_or(AppError::Internal);
        };
        // The worker on this run, here or (PostgreSQL) on another instance, stops at once.
        state.wake.run_cancelled(db, id).await;
        audit::record(
            db,
            AuditEvent {
                tenant_id: Some(ctx.scope.id()),
                actor_user_id: Some(ctx.user_id),
                action: "run.cancel",
                target: format!("run:{id}"),
                details: serde_json::json!({}),
            },
        )
        .await;
        Ok(cancelled)
    })
    .await
}

/// "Retry N failed": queues a run of the same operation on the same backup set with the same
/// options, of only the items that failed; for a cancelled run, of the items the cancel skipped
/// (resume). An identical run already queued or running is returned instead.
#[server(prefix = "/api", endpoint = "runs/retry-failed")]
pub async fn retry_failed(tenant: String, id: i64) -> Result<SubmittedRun, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs::{self, retry};
    in_tenant(&tenant, Capability::StartRuns, |ctx, state| async move {
        let db = &state.db;
        let run = retry::retry_failed(db, &ctx, id).await?;
        let details = serde_json::json!({ "retry_of": id, "total": run.total });
        runs::submitted(&state, &ctx, &run, "run.retry", details).await;
        Ok(run)
    })
    .await
}

/// One run with its counters and one page of its items (by policy name). `outcome`
/// (`succeeded`, `failed`, `skipped`, `pending`) keeps only the items that ended that way,
/// empty keeps all; `offset` counts from 0 and `limit` defaults to 100 (at most 500). The
/// page says how many items match, so the run detail page polls a page, never the whole run.
#[server(prefix = "/api", endpoint = "runs/get")]
pub async fn get_run(
    tenant: String,
    id: i64,
    #[server(default)] outcome: String,
    #[server(default)] offset: i64,
    #[server(default)] limit: i64,
) -> Result<RunDetail, AppError> {
    use crate::domain::run_detail::{ItemFilter, ItemWindow};
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs::queries;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        let outcome = match outcome.as_str() {
            "" => None,
            raw => Some(
                ItemFilter::parse(raw)
                    .ok_or_else(|| AppError::invalid("outcome", "Unknown outcome filter."))?,
            ),
        };
        let window = ItemWindow::parse(offset, limit)?;
        queries::detail(&state.db, &ctx.scope, id, outcome, window).await
    })
    .await
}

/// What run detail polls: a short text that changes whenever anything the page shows of the
/// run changes (status, counters, the Graph wait and figures, a retry of it), read in one
/// indexed read in the authorization point's statement. The page fetches the run again only when
/// it changed.
#[server(prefix = "/api", endpoint = "runs/version")]
pub async fn run_version(tenant: String, id: i64) -> Result<String, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant_joined;
    use crate::server::runs::queries;
    let backend = crate::server::state::app_state()?.db.backend();
    let read = queries::version_read(backend, id);
    in_tenant_joined(&tenant, Capability::View, read, |_, rows| async move {
        queries::version(&rows)
    })
    .await
}

/// What the run panel polls: the same for the recent runs of one backup set (404 when the set
/// is not the tenant's).
#[server(prefix = "/api", endpoint = "runs/for-backup-set/version")]
pub async fn backup_set_runs_version(
    tenant: String,
    backup_set_id: i64,
) -> Result<String, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant_joined;
    use crate::server::runs::queries;
    let state = crate::server::state::app_state()?;
    let read = queries::backup_set_version_read(state.db.backend(), backup_set_id);
    in_tenant_joined(&tenant, Capability::View, read, |ctx, rows| async move {
        queries::backup_set_version_of(&state.db, &ctx.scope, backup_set_id, &rows).await
    })
    .await
}

/// The recent runs of one backup set, newest first: what the run panel shows and polls (404
/// when the set is not the tenant's).
#[server(prefix = "/api", endpoint = "runs/for-backup-set")]
pub async fn backup_set_runs(
    tenant: String,
    backup_set_id: i64,
) -> Result<Vec<RunSummary>, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::runs::queries;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        queries::for_backup_set(&state.db, &ctx.scope, backup_set_id).await
    })
    .await
}
