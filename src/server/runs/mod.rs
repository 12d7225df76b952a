//! Runs: the observable record of background work. The submit creates (or reuses) a run, the
//! screens read runs; the engine (`server::engine`) executes them.

pub mod cancel;
pub mod create;
pub mod in_flight;
pub mod key;
pub mod queries;
pub mod retry;
pub mod start;
pub mod submit;

use crate::domain::SubmittedRun;
use crate::server::audit::{self, AuditEvent};
use crate::server::auth::TenantContext;
use crate::server::state::AppState;

/// What every server function that starts a run does after the submit: wakes the workers for a
/// new run (this process's at once, and on PostgreSQL every instance's by NOTIFY) and audits the
/// submit as `started` ("run.start", "run.retry", …) or, for an identical run returned instead,
/// "run.reuse", with `details`.
pub async fn submitted(
    state: &AppState,
    ctx: &TenantContext,
    run: &SubmittedRun,
    started: &'static str,
    details: serde_json::Value,
) {
    if !run.reused {
        state.wake.run_queued(&state.db).await;
    }
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(ctx.scope.id()),
            actor_user_id: Some(ctx.user_id),
            action: if run.reused { "run.reuse" } else { started },
            target: format!("run:{}", run.run_id),
            details,
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use crate::domain::{AppError, RunStatus};

    /// Rows read `runs.status` as a [`RunStatus`] column: an unknown spelling (written by a
    /// newer server, or by hand) is a decode error naming it, which answers with a 500.
    #[tokio::test]
    async fn every_status_reads_back_and_an_unknown_one_is_an_error() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        for status in RunStatus::ALL {
            let read: RunStatus = sqlx::query_scalar("SELECT $1")
                .bind(status.as_str())
                .fetch_one(&pool)
                .await
                .unwrap();
            assert_eq!(read, status);
        }
        for raw in ["paused", "Running", "", "running "] {
            let error = sqlx::query_scalar::<_, RunStatus>("SELECT $1")
                .bind(raw)
                .fetch_one(&pool)
                .await
                .unwrap_err();
            assert!(error.to_string().contains(&format!("{raw:?}")), "{error}");
            assert_eq!(AppError::from(error).status(), 500);
        }
    }
}
