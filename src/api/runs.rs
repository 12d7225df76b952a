//! Runs: the operations monitor.

use leptos::prelude::*;

use crate::domain::{AppError, RunSummary};

/// How many runs the monitor shows at most.
pub const RUNS_PAGE_SIZE: i64 = 100;

/// The tenant's most recent runs, newest first.
#[server(prefix = "/api", endpoint = "runs/list")]
pub async fn list_runs(tenant: String) -> Result<Vec<RunSummary>, AppError> {
    use crate::server::{error::respond, runs, state::app_state, tenants};
    respond(
        async {
            let db = app_state()?.db;
            let scope = tenants::resolve(&db, &tenant).await?;
            runs::list(&db, &scope, RUNS_PAGE_SIZE).await
        }
        .await,
    )
}
