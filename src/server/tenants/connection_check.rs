//! The tenant's connection check: starting one (a `tenant.check_connection` run, one active per
//! tenant), storing its report as the tenant's last check, reading it back, and the gate every
//! run start passes: a tenant whose last check failed on authentication starts no run (a check
//! that could not finish does not lift that).

use super::TenantScope;
use crate::domain::connection::{
    blocked_runs_message, CheckOutcome, ConnectionCheck, ConnectionReport, ConnectionStatus,
};
use crate::domain::run::OperationType;
use crate::domain::{AppError, SubmittedRun, Timestamp};
use crate::server::auth::TenantContext;
use crate::server::db::Db;
use crate::server::engine::ops::check_connection::CheckConnectionInput;
use crate::server::runs::key::IdempotencyKey;
use crate::server::runs::submit::{self, NewRun};

const OPERATION: OperationType = OperationType::CheckConnection;

/// Queues a check of the tenant, or returns the one already queued or running (`reused`).
pub async fn start(db: &Db, ctx: &TenantContext) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    let input =
        serde_json::to_string(&CheckConnectionInput::default()).map_err(|_| AppError::Internal)?;
    let run = NewRun {
        operation: OPERATION,
        target_id: tenant_id,
        input,
        key: IdempotencyKey::of(OPERATION, tenant_id, &[]),
        total: 0,
        retry_of: None,
    };
    submit::create_or_reuse(db, ctx, &run).await
}

/// Stores `report` as the last check of run `run_id`'s tenant, only while claim `attempt` of the
/// run is the one running (an owner that lost the run writes nothing). `false` when it did not.
/// A check that could not finish proves nothing, so it never replaces a standing failure on
/// authentication: the tenant's runs stay refused, and its pages keep saying why, until a check
/// that finished (passed, or failed otherwise) replaces it.
pub async fn store(
    db: &Db,
    run_id: i64,
    attempt: i64,
    report: &ConnectionReport,
) -> Result<bool, sqlx::Error> {
    let json = serde_json::to_string(report).map_err(|error| sqlx::Error::Encode(error.into()))?;
    // SQLite needs the WHERE of an INSERT … SELECT before ON CONFLICT; it has one.
    let stored = sqlx::query(
        "INSERT INTO tenant_connection_checks (tenant_id, run_id, checked_at, outcome, report) \
         SELECT r.tenant_id, r.id, $3, $4, $5 FROM runs r \
         WHERE r.id = $1 AND r.attempt = $2 AND r.status = 'running' \
         ON CONFLICT (tenant_id) DO UPDATE SET run_id = excluded.run_id, \
           checked_at = excluded.checked_at, outcome = excluded.outcome, report = excluded.report \
         WHERE NOT (tenant_connection_checks.outcome = $6 AND excluded.outcome = $7)",
    )
    .bind(run_id)
    .bind(attempt)
    .bind(Timestamp::now().millis())
    .bind(report.outcome.as_str())
    .bind(json)
    .bind(CheckOutcome::AuthFailed.as_str())
    .bind(CheckOutcome::Incomplete.as_str())
    .execute(db.pool())
    .await?
    .rows_affected();
    if stored == 1 || report.outcome != CheckOutcome::Incomplete {
        return Ok(stored == 1);
    }
    // Not written: the run was lost, or a standing failure on authentication was kept.
    let running: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE id = $1 AND attempt = $2 AND status = 'running'",
    )
    .bind(run_id)
    .bind(attempt)
    .fetch_optional(db.pool())
    .await?;
    Ok(running.is_some())
}

/// The tenant's last check, if it was ever checked.
pub async fn last(db: &Db, tenant_id: i64) -> Result<Option<ConnectionCheck>, AppError> {
    let row: Option<(Option<i64>, Timestamp, String)> = sqlx::query_as(
        "SELECT run_id, checked_at, report FROM tenant_connection_checks WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(db.pool())
    .await?;
    let Some((run_id, checked_at, report)) = row else {
        return Ok(None);
    };
    let report: ConnectionReport = serde_json::from_str(&report).map_err(|error| {
        tracing::error!(%error, "unreadable connection check report");
        AppError::Internal
    })?;
    Ok(Some(ConnectionCheck {
        run_id,
        checked_at,
        report,
    }))
}

/// What the tenant's pages show: the last check and the check queued or running now.
pub async fn status(db: &Db, scope: &TenantScope) -> Result<ConnectionStatus, AppError> {
    let active_run: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE tenant_id = $1 AND operation_type = $2 \
         AND status IN ('pending', 'running') ORDER BY id DESC LIMIT 1",
    )
    .bind(scope.id())
    .bind(OPERATION.as_str())
    .fetch_optional(db.pool())
    .await?;
    Ok(ConnectionStatus {
        last: last(db, scope.id()).await?,
        active_run,
    })
}

/// Refuses (409) to start a run for a tenant whose last check failed on authentication, with
/// the way out (a later check that could not finish leaves that failure standing: see
/// [`store`]). A tenant never checked, or whose last check passed or failed otherwise, may
/// start runs. Every place that starts a sync, capture or restore run calls this first; the
/// check itself does not (it is the way out).
pub async fn ensure_runs_allowed(db: &Db, tenant_id: i64) -> Result<(), AppError> {
    let report: Option<String> = sqlx::query_scalar(
        "SELECT report FROM tenant_connection_checks WHERE tenant_id = $1 AND outcome = $2",
    )
    .bind(tenant_id)
    .bind(CheckOutcome::AuthFailed.as_str())
    .fetch_optional(db.pool())
    .await?;
    let Some(report) = report else { return Ok(()) };
    let summary = serde_json::from_str::<ConnectionReport>(&report)
        .map(|report| report.summary)
        .unwrap_or_default();
    Err(AppError::Conflict(blocked_runs_message(&summary)))
}
