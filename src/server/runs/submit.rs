//! Queues a run of any operation, or answers with the identical run that is already queued or
//! running. Every start (sync, capture now, drift check, connection check, …) goes through
//! here: the idempotency key and the partial unique index `runs_active_idempotency` make a
//! double-click, or a hundred racing submits, one run.

use super::in_flight;
use super::key::IdempotencyKey;
use crate::domain::run::OperationType;
use crate::domain::{AppError, RunStatus, SubmittedRun, Timestamp};
use crate::server::auth::TenantContext;
use crate::server::db::{is_unique_violation, Db};
use crate::server::metrics;

/// A run to queue.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub operation: OperationType,
    /// What the run works on: a backup set, a policy or the tenant itself.
    pub target_id: i64,
    /// The operation's input, as JSON.
    pub input: String,
    /// Identical submits share one active run: the operation, the tenant and what makes two
    /// runs the same, hashed.
    pub key: IdempotencyKey,
    /// Items known at submit time (0 when the engine plans them at the first claim).
    pub total: i64,
    /// The run this one retries, if any.
    pub retry_of: Option<i64>,
}

/// Queues `run` in the member's tenant, or returns the active run with the same key
/// (`reused: true`). Two racing submits cannot both insert: the unique index refuses the
/// second, which then answers with the winner.
pub async fn create_or_reuse(
    db: &Db,
    ctx: &TenantContext,
    run: &NewRun,
) -> Result<SubmittedRun, AppError> {
    submit(db, ctx.scope.id(), Some(ctx.user_id), run).await
}

/// [`create_or_reuse`] for a run no member starts (the command line's): the same deduplication,
/// but the run has no initiator, so it notifies nobody. The caller has checked the tenant.
pub async fn create_or_reuse_unattended(
    db: &Db,
    tenant_id: i64,
    run: &NewRun,
) -> Result<SubmittedRun, AppError> {
    submit(db, tenant_id, None, run)
        .await
        .map_err(|error| match error {
            // Not the page's "Reload the page": no page asked.
            AppError::Conflict(_) => {
                AppError::Conflict("Another run stands in the way of this one; try again.".into())
            }
            error => error,
        })
}

async fn submit(
    db: &Db,
    tenant_id: i64,
    initiator: Option<i64>,
    run: &NewRun,
) -> Result<SubmittedRun, AppError> {
    let started = std::time::Instant::now();
    let submitted = in_flight::coalesce(db, &run.key, || async {
        if let Some(active) = find_active(db, tenant_id, &run.key).await? {
            return Ok(active);
        }
        insert_as(db, tenant_id, initiator, run, || {
            find_active(db, tenant_id, &run.key)
        })
        .await
    })
    .await?;
    metrics::run_submitted(run.operation.as_str(), submitted.reused, started.elapsed());
    Ok(submitted)
}

/// How many times a submit inserts its run when each insert collides with an identical run
/// that has ended by the time it is read: the key is free again then, and the insert is tried
/// anew. Past this, another unique index (one execute per restore preview) refuses the run.
const INSERT_ATTEMPTS: usize = 3;

/// Inserts the run, or, when an identical one won the race to the unique index, returns that
/// one. For a caller that already looked for an active run (and checked its input meanwhile).
pub async fn insert_or_reuse(
    db: &Db,
    ctx: &TenantContext,
    run: &NewRun,
) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    insert_or_reuse_reading(db, ctx, run, || find_active(db, tenant_id, &run.key)).await
}

/// [`insert_or_reuse`], with `winner` the read of the identical run after a collision (the
/// seam where a test ends that run between the collision and the read). A winner that ended
/// before it was read frees the key: the run is inserted again, as a new submit would.
pub async fn insert_or_reuse_reading<F, Fut>(
    db: &Db,
    ctx: &TenantContext,
    run: &NewRun,
    winner: F,
) -> Result<SubmittedRun, AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<SubmittedRun>, AppError>>,
{
    insert_as(db, ctx.scope.id(), Some(ctx.user_id), run, winner).await
}

/// [`insert_or_reuse_reading`] for the tenant `tenant_id`, started by `initiator` (none: the
/// command line).
async fn insert_as<F, Fut>(
    db: &Db,
    tenant_id: i64,
    initiator: Option<i64>,
    run: &NewRun,
    mut winner: F,
) -> Result<SubmittedRun, AppError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<SubmittedRun>, AppError>>,
{
    for _ in 0..INSERT_ATTEMPTS {
        match queue(db, tenant_id, initiator, run).await {
            Ok(run_id) => {
                return Ok(SubmittedRun {
                    run_id,
                    reused: false,
                    status: RunStatus::Pending,
                    total: run.total,
                });
            }
            Err(error) if is_unique_violation(&error) => {
                if let Some(active) = winner().await? {
                    return Ok(active);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(AppError::Conflict(
        "Another run stands in the way of this one. Reload the page to see it.".into(),
    ))
}

/// The tenant's queued or running run with this key.
pub async fn find_active(
    db: &Db,
    tenant_id: i64,
    key: &IdempotencyKey,
) -> Result<Option<SubmittedRun>, AppError> {
    let row: Option<(i64, RunStatus, i64)> = sqlx::query_as(
        "SELECT id, status, total_items FROM runs \
         WHERE tenant_id = $1 AND idempotency_key = $2 AND status IN ('pending', 'running')",
    )
    .bind(tenant_id)
    .bind(key.as_str())
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(|(run_id, status, total)| SubmittedRun {
        run_id,
        reused: true,
        status,
        total,
    }))
}

/// Inserts the run as queued, without looking for an identical one (the caller did); its id.
/// A run nobody started (`initiated_by` `None`, e.g. the demo's) notifies nobody.
pub async fn queue(
    db: &Db,
    tenant_id: i64,
    initiated_by: Option<i64>,
    run: &NewRun,
) -> Result<i64, sqlx::Error> {
    // `resource.action` is the operation's spelling, split where the database keeps it apart.
    let (resource, action) = run
        .operation
        .as_str()
        .split_once('.')
        .unwrap_or((run.operation.as_str(), ""));
    sqlx::query_scalar(
        "INSERT INTO runs (tenant_id, initiated_by, operation_type, lane, resource, action, target_id, \
         input, idempotency_key, status, total_items, created_at, retry_of) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12) RETURNING id",
    )
    .bind(tenant_id)
    .bind(initiated_by)
    .bind(run.operation.as_str())
    .bind(run.operation.lane().as_str())
    .bind(resource)
    .bind(action)
    .bind(run.target_id)
    .bind(&run.input)
    .bind(run.key.as_str())
    .bind(run.total)
    .bind(Timestamp::now().millis())
    .bind(run.retry_of)
    .fetch_one(db.pool())
    .await
}
