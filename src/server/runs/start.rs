//! Starting the runs that have no selection: **Sync from Intune** (`inventory.sync`, the tenant),
//! **Capture now** (`policy.capture_snapshot`, one policy) and **Compare with Intune** on a backup
//! set (`backup_set.drift_check`). Each is deduplicated (one active run per target), refused
//! while the tenant's last connection check failed on authentication, and makes no Graph call:
//! the engine does the work.

use std::time::Instant;

use super::key::IdempotencyKey;
use super::queries::{lease_now, lease_now_sql, settled};
use super::submit::{create_or_reuse, create_or_reuse_unattended, find_active, NewRun};
use crate::domain::run::OperationType;
use crate::domain::versions::{CaptureResult, RunActivity, RunBrief};
use crate::domain::{AppError, RunStatus, SubmittedRun, Timestamp};
use crate::server::auth::TenantContext;
use crate::server::backup_sets;
use crate::server::db::Db;
use crate::server::engine::ops::capture_snapshot::CaptureSnapshotInput;
use crate::server::engine::ops::drift_check::DriftCheckInput;
use crate::server::engine::ops::inventory_sync::InventorySyncInput;
use crate::server::metrics;
use crate::server::tenants::connection_check;
use crate::server::tenants::TenantScope;

/// The largest set a drift check takes (the picker's selection limit).
const MAX_DRIFT_POLICIES: usize = 10_000;

fn json<T: serde::Serialize>(input: &T) -> Result<String, AppError> {
    serde_json::to_string(input).map_err(|_| AppError::Internal)
}

/// The sync run of the tenant: it works on the tenant itself, one active per tenant.
fn inventory_sync_run(tenant_id: i64) -> Result<NewRun, AppError> {
    let operation = OperationType::InventorySync;
    Ok(NewRun {
        operation,
        target_id: tenant_id,
        input: json(&InventorySyncInput::default())?,
        key: IdempotencyKey::of(operation, tenant_id, &[]),
        total: 0,
        retry_of: None,
    })
}

/// Refuses (409) a new run of `operation` on `target_id` while one cancelled before it has not
/// settled ([`settled`]): its claim may still send that run's requests and record what was in
/// flight, so a new run would work beside it: the same requests sent twice, and for "Add
/// selected" the set would back a policy up with whichever read is recorded first (which read
/// becomes a policy's current version does not depend on the order: see
/// `snapshots::store_captures` and its caveats). Every start that captures calls it for its
/// own kind and target (here, "Add selected" in `runs::create`, a restore preview in
/// `server::restore`), after looking for an identical active run: a double-click costs no
/// more, and a cancel committed between the look and the gate is seen by the gate (see
/// [`active_run`]). One read of the partial index
/// `runs_cancelled_held_by_tenant`: the tenant's cancelled runs still holding a lease are few,
/// however long its history.
pub(crate) async fn ensure_cancelled_settled(
    db: &Db,
    tenant_id: i64,
    operation: OperationType,
    target_id: i64,
) -> Result<(), AppError> {
    // Judged by the lease clock (the database's on PostgreSQL, see `lease_now_sql`).
    let sql = format!(
        "SELECT id FROM runs WHERE tenant_id = $1 AND operation_type = $2 AND target_id = $3 \
           AND status = 'cancelled' AND lease_expires_at >= {} LIMIT 1",
        lease_now_sql(db.backend(), "$4")
    );
    let unsettled = sqlx::query_scalar::<_, i64>(&sql)
        .bind(tenant_id)
        .bind(operation.as_str())
        .bind(target_id)
        .bind(super::queries::app_now())
        .fetch_optional(db.pool())
        .await?
        .is_some();
    if unsettled {
        return Err(AppError::Conflict(RunActivity::NOT_SETTLED.into()));
    }
    Ok(())
}

/// The identical run of `run` already queued or running in the tenant, answered as a reused
/// submit. Looked for before [`ensure_cancelled_settled`], never after: a run found active is
/// the answer, and one cancelled after this look is cancelled by then, so the settle gate that
/// follows sees it. Looked for after the gate, a cancel committed between the two would leave
/// neither to see it, and a new run would send the same requests beside the cancelled one's
/// claim still in flight.
async fn active_run(
    db: &Db,
    tenant_id: i64,
    run: &NewRun,
) -> Result<Option<SubmittedRun>, AppError> {
    let started = Instant::now();
    let active = find_active(db, tenant_id, &run.key).await?;
    if active.is_some() {
        metrics::run_submitted(run.operation.as_str(), true, started.elapsed());
    }
    Ok(active)
}

/// Queues a sync of the tenant's inventory, or returns the one already queued or running.
pub async fn sync_inventory(db: &Db, ctx: &TenantContext) -> Result<SubmittedRun, AppError> {
    sync_inventory_after(db, ctx, async {}).await
}

/// [`sync_inventory`], with `meanwhile` awaited right before it looks for an identical active
/// run: the seam where a test commits a cancel of that run mid-start.
pub async fn sync_inventory_after(
    db: &Db,
    ctx: &TenantContext,
    meanwhile: impl std::future::Future<Output = ()>,
) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    connection_check::ensure_runs_allowed(db, tenant_id).await?;
    let run = inventory_sync_run(tenant_id)?;
    meanwhile.await;
    if let Some(active) = active_run(db, tenant_id, &run).await? {
        return Ok(active);
    }
    ensure_cancelled_settled(db, tenant_id, OperationType::InventorySync, tenant_id).await?;
    create_or_reuse(db, ctx, &run).await
}

/// [`sync_inventory`] started by no member (the command line's `sync-inventory`): the same
/// checks and the same deduplication (a sync already queued or running, the UI's included, is
/// returned with `reused: true`), but the run has no initiator, so it notifies nobody.
pub async fn sync_inventory_unattended(db: &Db, tenant_id: i64) -> Result<SubmittedRun, AppError> {
    connection_check::ensure_runs_allowed(db, tenant_id).await?;
    let run = inventory_sync_run(tenant_id)?;
    if let Some(active) = active_run(db, tenant_id, &run).await? {
        return Ok(active);
    }
    ensure_cancelled_settled(db, tenant_id, OperationType::InventorySync, tenant_id).await?;
    create_or_reuse_unattended(db, tenant_id, &run).await
}

/// 404 unless policy `policy_id` belongs to tenant `tenant_id`.
async fn ensure_policy(db: &Db, tenant_id: i64, policy_id: i64) -> Result<(), AppError> {
    let exists = sqlx::query("SELECT id FROM policies WHERE tenant_id = $1 AND id = $2")
        .bind(tenant_id)
        .bind(policy_id)
        .fetch_optional(db.pool())
        .await?
        .is_some();
    if !exists {
        return Err(AppError::NotFound(
            "This policy does not exist in this tenant.".into(),
        ));
    }
    Ok(())
}

/// Queues a capture of one policy of the tenant, or returns the one already queued or running.
pub async fn capture_policy(
    db: &Db,
    ctx: &TenantContext,
    policy_id: i64,
) -> Result<SubmittedRun, AppError> {
    capture_policy_after(db, ctx, policy_id, async {}).await
}

/// [`capture_policy`], with `meanwhile` awaited right before it looks for an identical active
/// run: the seam where a test commits a cancel of that run mid-start.
pub async fn capture_policy_after(
    db: &Db,
    ctx: &TenantContext,
    policy_id: i64,
    meanwhile: impl std::future::Future<Output = ()>,
) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    connection_check::ensure_runs_allowed(db, tenant_id).await?;
    ensure_policy(db, tenant_id, policy_id).await?;
    let operation = OperationType::CaptureSnapshot;
    let run = NewRun {
        operation,
        target_id: policy_id,
        input: json(&CaptureSnapshotInput { policy_id })?,
        key: IdempotencyKey::of(operation, tenant_id, &[("policy", policy_id)]),
        total: 1,
        retry_of: None,
    };
    meanwhile.await;
    if let Some(active) = active_run(db, tenant_id, &run).await? {
        return Ok(active);
    }
    ensure_cancelled_settled(db, tenant_id, operation, policy_id).await?;
    create_or_reuse(db, ctx, &run).await
}

/// Queues a drift check of a backup set (every policy in it), or returns the one already queued
/// or running. An empty set has nothing to compare: 400.
pub async fn check_drift(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
) -> Result<SubmittedRun, AppError> {
    let started = Instant::now();
    let tenant_id = ctx.scope.id();
    connection_check::ensure_runs_allowed(db, tenant_id).await?;
    backup_sets::ensure_exists(db, tenant_id, backup_set_id).await?;
    let operation = OperationType::DriftCheck;
    let key = IdempotencyKey::of(operation, tenant_id, &[("backup_set", backup_set_id)]);
    // A double-click finds the first run before the set is read again.
    if let Some(active) = find_active(db, tenant_id, &key).await? {
        metrics::run_submitted(operation.as_str(), true, started.elapsed());
        return Ok(active);
    }
    ensure_cancelled_settled(db, tenant_id, operation, backup_set_id).await?;
    let policy_ids: Vec<i64> = sqlx::query_scalar(
        "SELECT policy_id FROM backup_items WHERE tenant_id = $1 AND backup_set_id = $2 ORDER BY policy_id",
    )
    .bind(tenant_id)
    .bind(backup_set_id)
    .fetch_all(db.pool())
    .await?;
    if policy_ids.is_empty() {
        return Err(AppError::invalid(
            "backup_set_id",
            "This backup set holds no policies yet: there is nothing to compare with Intune.",
        ));
    }
    if policy_ids.len() > MAX_DRIFT_POLICIES {
        return Err(AppError::invalid(
            "backup_set_id",
            format!("A drift check takes at most {MAX_DRIFT_POLICIES} policies."),
        ));
    }
    let total = policy_ids.len() as i64;
    let run = NewRun {
        operation,
        target_id: backup_set_id,
        input: json(&DriftCheckInput {
            backup_set_id,
            policy_ids,
        })?,
        key,
        total,
        retry_of: None,
    };
    create_or_reuse(db, ctx, &run).await
}

/// The run of `operation` on `target_id` queued or running now, and the last one that ended;
/// 404 when `target_id` is not a policy (a capture) or a backup set (a drift check) of the
/// tenant, as the start answers.
pub async fn activity(
    db: &Db,
    scope: &TenantScope,
    operation: OperationType,
    target_id: i64,
) -> Result<RunActivity, AppError> {
    // The brief and, for the last run that ended, whether it is settled.
    let brief = |active: bool| async move {
        let sql = format!(
            "SELECT id, status, finished_at, summary, lease_expires_at FROM runs \
             WHERE tenant_id = $1 AND operation_type = $2 AND target_id = $3 AND status {} \
             ORDER BY id DESC LIMIT 1",
            if active {
                "IN ('pending', 'running')"
            } else {
                "NOT IN ('pending', 'running')"
            }
        );
        type Row = (
            i64,
            RunStatus,
            Option<Timestamp>,
            Option<String>,
            Option<i64>,
        );
        let row = sqlx::query_as::<_, Row>(&sql)
            .bind(scope.id())
            .bind(operation.as_str())
            .bind(target_id)
            .fetch_optional(db.pool())
            .await?;
        let Some((id, status, finished_at, summary, lease_expires_at)) = row else {
            return Ok::<_, AppError>((None, true));
        };
        let capture = if operation == OperationType::CaptureSnapshot {
            capture_result(db, scope, id).await?
        } else {
            None
        };
        let is_settled = settled(status, lease_expires_at, lease_now(db).await?);
        let brief = RunBrief {
            id,
            status,
            finished_at,
            summary,
            capture,
        };
        Ok((Some(brief), is_settled))
    };
    let ((active, _), (last, last_settled)) = (brief(true).await?, brief(false).await?);
    // Runs of the tenant name their target, which is never deleted: only an answer with none
    // reads the target (the starter polls only while a run moves, so rarely).
    if active.is_none() && last.is_none() {
        match operation {
            OperationType::CaptureSnapshot => ensure_policy(db, scope.id(), target_id).await?,
            OperationType::DriftCheck => {
                backup_sets::ensure_exists(db, scope.id(), target_id).await?
            }
            // A sync's target is the tenant itself, which the caller is in.
            _ => {}
        }
    }
    Ok(RunActivity {
        active,
        last,
        last_settled,
    })
}

/// What the capture of a one-policy run found, once its item is done.
pub async fn capture_result(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
) -> Result<Option<CaptureResult>, AppError> {
    let row = sqlx::query_as(
        "SELECT drift, changed_settings, snapshot_id, base_snapshot_id FROM run_items \
         WHERE tenant_id = $1 AND run_id = $2 AND drift IS NOT NULL ORDER BY id LIMIT 1",
    )
    .bind(scope.id())
    .bind(run_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row)
}
