//! Runs: the observable record of background work, and the queue the worker takes it from.

pub mod create;
pub mod key;
pub mod queries;
pub mod runner;
pub mod worker;

use sqlx::Row;

use super::db::Db;
use super::tenants::TenantScope;
use crate::domain::{AppError, RunStatus, RunSummary, Timestamp};

/// The tenant's runs, newest first (at most `limit`).
pub async fn list(db: &Db, scope: &TenantScope, limit: i64) -> Result<Vec<RunSummary>, AppError> {
    let rows = sqlx::query(
        "SELECT r.id, r.operation_type, r.status, COALESCE(u.display_name, '') AS initiated_by, \
                r.total_items, r.processed_items, r.succeeded, r.failed, r.skipped, r.created_at \
         FROM runs r LEFT JOIN users u ON u.id = r.initiated_by \
         WHERE r.tenant_id = $1 ORDER BY r.created_at DESC, r.id DESC LIMIT $2",
    )
    .bind(scope.id())
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            Ok(RunSummary {
                id: row.try_get("id")?,
                operation_type: row.try_get("operation_type")?,
                status: RunStatus::parse(&status).ok_or_else(|| {
                    tracing::error!(%status, "unknown run status in the database");
                    AppError::Internal
                })?,
                initiated_by: row.try_get("initiated_by")?,
                total_items: row.try_get("total_items")?,
                processed_items: row.try_get("processed_items")?,
                succeeded: row.try_get("succeeded")?,
                failed: row.try_get("failed")?,
                skipped: row.try_get("skipped")?,
                created_at: Timestamp(row.try_get("created_at")?),
            })
        })
        .collect()
}
