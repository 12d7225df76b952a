//! One handler per operation type, each dispatched to by the engine.

pub mod add_policies;
pub mod capture;
pub mod capture_snapshot;
pub mod check_connection;
pub mod drift_check;
pub mod inventory_sync;

use crate::server::db::Db;

/// Writes a run's one-line summary ("12 of 240 policies changed since this backup"), which its
/// notification and the pages show; only while this claim (`attempt`) still holds the run.
pub(crate) async fn write_summary(
    db: &Db,
    run_id: i64,
    attempt: i64,
    summary: &str,
) -> Result<bool, sqlx::Error> {
    let written = sqlx::query(
        "UPDATE runs SET summary = $1 WHERE id = $2 AND attempt = $3 AND status = 'running'",
    )
    .bind(summary)
    .bind(run_id)
    .bind(attempt)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(written == 1)
}
