//! "Retry N failed" and "Resume": a new run of the same operation on the same backup set with
//! the same options, of only the items that failed (skipped items are not retried) or, for a
//! cancelled run, of the items that failed and those the cancel skipped. Created like any submit
//! (the same idempotency key rules), and it records its parent in `retry_of`.

use super::create::create_or_reuse_retrying;
use super::queries::{lease_now, settled};
use crate::domain::reason_code::ReasonCode;
use crate::domain::run::OperationType;
use crate::domain::{AppError, PolicySelection, RunStatus, SubmittedRun};
use crate::server::auth::TenantContext;
use crate::server::db::Db;
use crate::server::engine::ops::add_policies::AddPoliciesInput;

/// Retries the failed items of run `run_id` (resumes it, when it was cancelled).
pub async fn retry_failed(
    db: &Db,
    ctx: &TenantContext,
    run_id: i64,
) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    let (operation, status, input, lease_expires_at): (String, RunStatus, String, Option<i64>) =
        sqlx::query_as(
            "SELECT operation_type, status, input, lease_expires_at FROM runs \
             WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant_id)
        .bind(run_id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| AppError::NotFound("This run does not exist in this tenant.".into()))?;
    // Only capture-type runs are retried here; a restore goes back through its wizard, with its
    // preview and confirmation.
    if OperationType::parse(&operation) != Some(OperationType::AddPolicies) {
        return Err(AppError::invalid(
            "id",
            "This kind of run cannot be retried from here.",
        ));
    }
    if status.is_active() {
        return Err(AppError::Conflict(
            "This run is still going; retry it when it has ended.".into(),
        ));
    }
    // A cancelled run's claim may still record the items that were in flight: a resume now
    // would take them again, and its run could work beside that claim.
    // By the lease clock: the database's on PostgreSQL, as the claim's heartbeat renews it.
    if !settled(status, lease_expires_at, lease_now(db).await?) {
        return Err(AppError::Conflict(
            "The cancelled run has not settled yet: what was in flight when it was cancelled \
             may still be recorded. Retry once it has settled (at most a minute)."
                .into(),
        ));
    }
    // Any run retries what failed; a cancelled one also resumes what the cancel skipped, so
    // its failures are not left behind by a resume.
    let which = match status {
        RunStatus::Cancelled => {
            "(outcome = 'failed' OR (outcome = 'skipped' AND reason_code = $3))"
        }
        _ => "outcome = 'failed' AND $3 <> ''",
    };
    let ids: Vec<i64> = sqlx::query_scalar(&format!(
        "SELECT policy_id FROM run_items WHERE tenant_id = $1 AND run_id = $2 AND {which} \
         ORDER BY policy_id"
    ))
    .bind(tenant_id)
    .bind(run_id)
    .bind(ReasonCode::Cancelled.as_str())
    .fetch_all(db.pool())
    .await?;
    if ids.is_empty() {
        return Err(AppError::invalid("id", "Nothing to retry."));
    }
    let input = AddPoliciesInput::from_json(&input).map_err(|_| {
        AppError::invalid(
            "id",
            "This run's stored input cannot be read; start it again.",
        )
    })?;
    let selection = PolicySelection::parse(ids)?;
    create_or_reuse_retrying(
        db,
        ctx,
        input.backup_set_id,
        &selection,
        input.options,
        Some(run_id),
    )
    .await
}
