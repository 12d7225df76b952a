//! Runs: the operations monitor.

use leptos::prelude::*;

use crate::domain::{AppError, RunSummary};

/// How many runs the monitor shows at most.
pub const RUNS_PAGE_SIZE: i64 = 100;

/// The tenant's most recent runs, newest first.
#[server(prefix = "/api", endpoint = "runs/list")]
pub async fn list_runs(tenant: String) -> Result<Vec<RunSummary>, AppError> {
    use crate::server::auth::{authorize, Need};
    use crate::server::{error::respond, runs, state::app_state};
    respond(
        async {
            let db = app_state()?.db;
            let ctx = authorize(&tenant, Need::View).await?;
            runs::list(&db, &ctx.scope, RUNS_PAGE_SIZE).await
        }
        .await,
    )
}
