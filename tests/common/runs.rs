//! A run's row as the tests read it, and waiting for it to reach a state.

use std::time::{Duration, Instant};

use tenantatlas::server::db::Db;

/// The columns of `runs` the tests check.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RunRow {
    pub status: String,
    pub total_items: i64,
    pub processed_items: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    pub reason_code: Option<String>,
    pub attempt: i64,
    /// Empty when no claim ever held the run.
    pub lease_owner: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The Graph requests the run has written down so far (all of them once a claim has ended).
    pub graph_requests: i64,
}

impl RunRow {
    /// Pending or running.
    pub fn is_open(&self) -> bool {
        matches!(self.status.as_str(), "pending" | "running")
    }
}

/// Run `run_id`'s row; panics when there is none.
pub async fn run_row(db: &Db, run_id: i64) -> RunRow {
    sqlx::query_as(
        "SELECT status, total_items, processed_items, succeeded, failed, skipped, reason_code, \
         attempt, COALESCE(lease_owner, '') AS lease_owner, started_at, finished_at, \
         graph_requests FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_one(db.pool())
    .await
    .unwrap_or_else(|error| panic!("run {run_id}: {error}"))
}

/// Polls run `run_id` until `done` holds for its row, and returns that row; panics with the
/// last row seen once `limit` has passed (a bound for a stuck test, not a speed requirement).
pub async fn wait_run(
    db: &Db,
    run_id: i64,
    limit: Duration,
    done: impl Fn(&RunRow) -> bool,
) -> RunRow {
    let started = Instant::now();
    loop {
        let row = run_row(db, run_id).await;
        if done(&row) {
            return row;
        }
        assert!(
            started.elapsed() < limit,
            "run {run_id} did not reach the state within {limit:?}; last seen: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
