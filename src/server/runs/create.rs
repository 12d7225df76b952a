//! "Add selected": create the run, or return the identical run that is already queued or
//! running. No Graph call happens here; the worker does the work.
//!
//! The run row holds the validated selection; the engine writes the run's items from it when it
//! first claims the run (`engine::worker`, one lease-guarded transaction). So a submit
//! of 10,000 policies writes one row: on PostgreSQL, 10,000 item rows with their two foreign
//! keys took 80 ms alone, far beyond the 25 ms the submit may take (README, benchmarks).

use sqlx::Row;

use super::key::IdempotencyKey;
use super::stored_status;
use crate::domain::run::OperationType;
use crate::domain::{
    AddPoliciesOptions, AppError, PolicySelection, RunStatus, SubmittedRun, Timestamp,
};
use crate::server::auth::TenantContext;
use crate::server::db::{is_unique_violation, Db};
use crate::server::engine::ops::add_policies::AddPoliciesInput;
use crate::server::metrics;

/// The operation of the runs this submit creates.
const OPERATION: OperationType = OperationType::AddPolicies;

/// Creates the run (status `pending`) with its selection, or returns the active run with the
/// same idempotency key (`reused: true`). Two racing submissions cannot both create
/// one: the partial unique index refuses the second, which then returns the winner.
pub async fn create_or_reuse(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    selection: &PolicySelection,
    options: AddPoliciesOptions,
) -> Result<SubmittedRun, AppError> {
    create_or_reuse_retrying(db, ctx, backup_set_id, selection, options, None).await
}

/// [`create_or_reuse`] for a run that retries (or resumes) run `retry_of`: the same key rules,
/// so a double-click still makes one run; a new run records its parent.
pub async fn create_or_reuse_retrying(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    selection: &PolicySelection,
    options: AddPoliciesOptions,
    retry_of: Option<i64>,
) -> Result<SubmittedRun, AppError> {
    let started = std::time::Instant::now();
    let run = submit(db, ctx, backup_set_id, selection, options, retry_of).await?;
    metrics::run_submitted(OPERATION.as_str(), run.reused, started.elapsed());
    Ok(run)
}

async fn submit(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    selection: &PolicySelection,
    options: AddPoliciesOptions,
    retry_of: Option<i64>,
) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    let key = IdempotencyKey::for_add_policies(tenant_id, backup_set_id, selection, options);
    if let Some(run) = find_active(db, tenant_id, &key).await? {
        return Ok(run);
    }
    ensure_backup_set(db, tenant_id, backup_set_id).await?;
    ensure_policies(db, tenant_id, selection).await?;

    match insert(db, ctx, backup_set_id, selection, options, &key, retry_of).await {
        Ok(run) => Ok(run),
        Err(error) if is_unique_violation(&error) => {
            find_active(db, tenant_id, &key).await?.ok_or_else(|| {
                // The winner was inserted and finished between our insert and this read.
                AppError::Conflict(
                    "An identical run just finished. Submit again to start a new one.".into(),
                )
            })
        }
        Err(error) => Err(error.into()),
    }
}

async fn find_active(
    db: &Db,
    tenant_id: i64,
    key: &IdempotencyKey,
) -> Result<Option<SubmittedRun>, AppError> {
    let row = sqlx::query(
        "SELECT id, status, total_items FROM runs \
         WHERE tenant_id = $1 AND idempotency_key = $2 AND status IN ('pending', 'running')",
    )
    .bind(tenant_id)
    .bind(key.as_str())
    .fetch_optional(db.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let status: String = row.try_get("status")?;
    Ok(Some(SubmittedRun {
        run_id: row.try_get("id")?,
        reused: true,
        status: stored_status(&status)?,
        total: row.try_get("total_items")?,
    }))
}

async fn ensure_backup_set(db: &Db, tenant_id: i64, backup_set_id: i64) -> Result<(), AppError> {
    sqlx::query("SELECT id FROM backup_sets WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(backup_set_id)
        .fetch_optional(db.pool())
        .await?
        .map(|_| ())
        .ok_or_else(|| AppError::NotFound("This backup set does not exist in this tenant.".into()))
}

/// Every selected id must be a policy of this tenant. Which ones are not is not said: an id of
/// another tenant's policy must not be confirmed to exist.
async fn ensure_policies(
    db: &Db,
    tenant_id: i64,
    selection: &PolicySelection,
) -> Result<(), AppError> {
    // One statement for the whole selection (at most 10,000 ids: well inside both engines'
    // statement size limits).
    let sql = format!(
        "SELECT COUNT(*) AS n FROM policies WHERE tenant_id = $1 AND {}",
        db.backend().id_in("id", selection.ids())
    );
    let found: i64 = sqlx::query(&sql)
        .bind(tenant_id)
        .fetch_one(db.pool())
        .await?
        .try_get("n")?;
    let missing = selection.len() as i64 - found;
    if missing > 0 {
        return Err(AppError::invalid(
            "policy_ids",
            format!("{missing} of the selected policies are not in this tenant's inventory. Refresh and try again."),
        ));
    }
    Ok(())
}

async fn insert(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    selection: &PolicySelection,
    options: AddPoliciesOptions,
    key: &IdempotencyKey,
    retry_of: Option<i64>,
) -> Result<SubmittedRun, sqlx::Error> {
    let tenant_id = ctx.scope.id();
    let input = AddPoliciesInput {
        backup_set_id,
        policy_ids: selection.ids().to_vec(),
        options,
    };
    let run_id: i64 = sqlx::query(
        "INSERT INTO runs (tenant_id, initiated_by, operation_type, lane, resource, action, target_id, \
         input, idempotency_key, status, total_items, created_at, retry_of) \
         VALUES ($1, $2, $3, $4, 'backup_set', 'add_policies', $5, $6, $7, 'pending', $8, $9, $10) RETURNING id",
    )
    .bind(tenant_id)
    .bind(ctx.user_id)
    .bind(OPERATION.as_str())
    .bind(OPERATION.lane().as_str())
    .bind(backup_set_id)
    .bind(input.to_json())
    .bind(key.as_str())
    .bind(selection.len() as i64)
    .bind(Timestamp::now().millis())
    .bind(retry_of)
    .fetch_one(db.pool())
    .await?
    .try_get("id")?;
    Ok(SubmittedRun {
        run_id,
        reused: false,
        status: RunStatus::Pending,
        total: selection.len() as i64,
    })
}
