//! Cancelling a run. The decision is one conditional UPDATE of the run's row, so a cancel and the
//! run's end (which requires `running`) race to one outcome, never a mix. In the same
//! transaction every item not yet done ends `skipped` with reason `cancelled` (written first when
//! the worker has not written the run's items yet), so `processed = total` holds at once; the
//! captures in flight then replace their item's skip with their outcome (`engine::worker`).
//! A running run's lease stays with its claim, which lets go of it once it has recorded what
//! was in flight and concluded: until then the run is not settled, and its pages keep polling
//! (`runs::queries`).

use std::time::Duration;

use crate::domain::notification::NotificationLevel;
use crate::domain::reason_code::ReasonCode;
use crate::domain::routes;
use crate::domain::run::{CancelledRun, OperationType};
use crate::domain::run_detail::ItemOutcome;
use crate::domain::{AppError, Capability, RunStatus, Timestamp};
use crate::server::auth::TenantContext;
use crate::server::db::Db;
use crate::server::engine::operation::{Registry, Run};
use crate::server::metrics;

/// Whoever may start a run may cancel it ([`OperationType::cancel_capability`]); the caller
/// checked [`Capability::CancelRuns`], which every other run needs. A run of an operation this
/// build does not know needs that alone.
async fn ensure_may_cancel(db: &Db, ctx: &TenantContext, run_id: i64) -> Result<(), AppError> {
    let operation: Option<String> =
        sqlx::query_scalar("SELECT operation_type FROM runs WHERE tenant_id = $1 AND id = $2")
            .bind(ctx.scope.id())
            .bind(run_id)
            .fetch_optional(db.pool())
            .await?;
    let needed = operation
        .as_deref()
        .and_then(OperationType::parse)
        .map_or(Capability::CancelRuns, OperationType::cancel_capability);
    if !ctx.role.can(needed) {
        return Err(AppError::Forbidden(needed.holders().label.to_owned()));
    }
    Ok(())
}

/// Cancels run `run_id` of the context's tenant. `Ok(None)` when it was already cancelled
/// (the caller answers with the same body, [`cancelled`]); 409 when it ended another way.
pub async fn cancel(
    db: &Db,
    ctx: &TenantContext,
    run_id: i64,
) -> Result<Option<CancelledRun>, AppError> {
    let tenant_id = ctx.scope.id();
    ensure_may_cancel(db, ctx, run_id).await?;
    let now = Timestamp::now().millis();
    let mut tx = db.pool().begin().await?;
    // Written first and decided in the same statement: under SQLite's WAL a transaction that read
    // first could not upgrade its lock while the worker writes.
    let row: Option<CancelledRow> = sqlx::query_as(
        "UPDATE runs SET status = 'cancelled', finished_at = $1, reason_code = $2 \
         WHERE tenant_id = $3 AND id = $4 AND status IN ('pending', 'running') \
         RETURNING operation_type, started_at, id, attempt, tenant_id, target_id, initiated_by, input",
    )
    .bind(now)
    .bind(ReasonCode::Cancelled.as_str())
    .bind(tenant_id)
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(CancelledRow {
        operation_type,
        started_at,
        run,
    }) = row
    else {
        tx.rollback().await?;
        return match cancelled(db, tenant_id, run_id).await? {
            Some(_) => Ok(None),
            None => Err(AppError::Conflict("This run already finished.".into())),
        };
    };
    let operation = OperationType::parse(&operation_type);
    let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) AS n FROM run_items WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(&mut *tx)
        .await?;
    let skipped = if existing == 0 {
        let planned = planned_items(operation, &run)?;
        write_cancelled_items(&mut tx, db, tenant_id, run_id, &planned, now).await?
    } else {
        sqlx::query(
            "UPDATE run_items SET outcome = 'skipped', reason_code = $1, finished_at = $2 \
             WHERE run_id = $3 AND outcome = 'pending'",
        )
        .bind(ReasonCode::Cancelled.as_str())
        .bind(now)
        .bind(run_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64
    };
    sqlx::query(
        "UPDATE runs SET skipped = skipped + $1, processed_items = processed_items + $1 WHERE id = $2",
    )
    .bind(skipped)
    .bind(run_id)
    .execute(&mut *tx)
    .await?;
    if let Some(initiator) = run.initiated_by {
        notify(&mut tx, ctx, run_id, initiator, now).await?;
    }
    tx.commit().await?;
    report(operation, started_at, skipped, now);
    Ok(Some(CancelledRun {
        run_id,
        status: RunStatus::Cancelled,
        cancelled_at: Timestamp(now),
    }))
}

/// The cancelled run as a cancel answered it; `None` when the run does not exist in this
/// tenant (404) or ended another way.
pub async fn cancelled(
    db: &Db,
    tenant_id: i64,
    run_id: i64,
) -> Result<Option<CancelledRun>, AppError> {
    let (status, finished_at): (RunStatus, Option<i64>) =
        sqlx::query_as("SELECT status, finished_at FROM runs WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(run_id)
            .fetch_optional(db.pool())
            .await?
            .ok_or_else(|| AppError::NotFound("This run does not exist in this tenant.".into()))?;
    Ok((status == RunStatus::Cancelled).then(|| CancelledRun {
        run_id,
        status,
        cancelled_at: Timestamp(finished_at.unwrap_or_default()),
    }))
}

/// Counts a committed cancel: the run ends here, not in the worker (whose end then finds it
/// cancelled and records nothing), and so do the items it skipped. A run of an operation this
/// build does not know has no label to count under.
fn report(operation: Option<OperationType>, started_at: Option<i64>, skipped: i64, now: i64) {
    let Some(operation) = operation else {
        return;
    };
    let took =
        started_at.map(|started| Duration::from_millis(now.saturating_sub(started).max(0) as u64));
    metrics::run_finished(operation.as_str(), RunStatus::Cancelled.as_str(), took);
    metrics::items_recorded(
        operation.as_str(),
        ItemOutcome::Skipped.as_str(),
        Some(ReasonCode::Cancelled.as_str()),
        u64::try_from(skipped).unwrap_or_default(),
    );
}

/// The run row a cancel decided on.
#[derive(sqlx::FromRow)]
struct CancelledRow {
    operation_type: String,
    /// `None` for a run no claim had started.
    started_at: Option<i64>,
    #[sqlx(flatten)]
    run: Run<String>,
}

/// The policies a run not yet started would have worked on, planned from its stored input by
/// its operation's handler, as its first claim would have. An input that cannot be read (or an
/// operation this build does not know) plans nothing: the run would have failed with
/// `invalid_run_input`.
fn planned_items(
    operation: Option<OperationType>,
    run: &Run<String>,
) -> Result<Vec<i64>, AppError> {
    let registry = Registry::planning().ok_or(AppError::Internal)?;
    Ok(operation
        .and_then(|operation| registry.plan(operation, run))
        .unwrap_or_default())
}

/// Writes the items of a run that never started, skipped as `cancelled`; how many.
async fn write_cancelled_items(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    db: &Db,
    tenant_id: i64,
    run_id: i64,
    policy_ids: &[i64],
    now: i64,
) -> Result<i64, AppError> {
    let written = if policy_ids.is_empty() {
        0
    } else {
        let ids = db.backend().id_in("p.id", "$5", policy_ids);
        let sql = format!(
            "INSERT INTO run_items (tenant_id, run_id, policy_id, outcome, reason_code, finished_at) \
             SELECT p.tenant_id, $2, p.id, 'skipped', $3, $4 FROM policies p \
             WHERE p.tenant_id = $1 AND {}",
            ids.sql
        );
        ids.bind(
            sqlx::query(&sql)
                .bind(tenant_id)
                .bind(run_id)
                .bind(ReasonCode::Cancelled.as_str())
                .bind(now),
        )
        .execute(&mut **tx)
        .await?
        .rows_affected() as i64
    };
    // Policies deleted since the submit are not items, as when the worker writes them.
    sqlx::query("UPDATE runs SET total_items = $1 WHERE id = $2")
        .bind(written)
        .bind(run_id)
        .execute(&mut **tx)
        .await?;
    Ok(written)
}

/// Tells the run's initiator who cancelled it.
async fn notify(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    ctx: &TenantContext,
    run_id: i64,
    initiator: i64,
    now: i64,
) -> Result<(), AppError> {
    let actor: String = sqlx::query_scalar("SELECT display_name FROM users WHERE id = $1")
        .bind(ctx.user_id)
        .fetch_one(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO notifications (user_id, tenant_id, level, title, body, link, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(initiator)
    .bind(ctx.scope.id())
    .bind(NotificationLevel::Warning.as_str())
    .bind(format!("Run {run_id}: {}", RunStatus::Cancelled.label()))
    .bind(format!("Cancelled by {actor}."))
    .bind(routes::run(&ctx.scope.summary().external_id, run_id, ""))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
