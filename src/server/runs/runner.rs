//! Runs the worker in the background of a server: it sleeps until woken (a submit in this
//! process, a PostgreSQL `NOTIFY` from another instance, or a slow poll as a safety net), works
//! the queue empty, and on shutdown releases its lease so another instance resumes at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::worker::{Outcome, Worker};
use crate::server::db::{Db, NativePool};

/// The PostgreSQL channel a submit notifies, so every instance's worker wakes.
const CHANNEL: &str = "tenantatlas_runs";
/// How long the listener waits before it reconnects to PostgreSQL.
const RECONNECT: Duration = Duration::from_secs(5);

/// Wakes the worker(s) after a run was queued. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct WakeUp {
    local: Arc<Notify>,
}

impl WakeUp {
    /// Wakes this process's worker and, on PostgreSQL, every other instance's.
    pub async fn run_queued(&self, db: &Db) {
        self.local.notify_one();
        if let NativePool::Postgres(pool) = db.native() {
            if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANNEL)
                .execute(pool)
                .await
            {
                tracing::warn!(%error, "could not notify other instances; they will poll");
            }
        }
    }
}

/// Runs `worker` until `shutdown` turns true, then releases its leases and wakes the other
/// instances to take them over. `poll` is the safety net for expired leases and lost wake-ups.
pub async fn run(
    worker: Worker,
    wake: WakeUp,
    db: Db,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    if let NativePool::Postgres(pool) = db.native() {
        tokio::spawn(listen(pool.clone(), wake.local.clone()));
    }
    loop {
        if *shutdown.borrow() {
            break;
        }
        let step = tokio::select! {
            step = worker.try_execute_task() => step,
            _ = shutdown.changed() => break,
        };
        match step {
            Ok(Outcome::TaskCompleted { .. }) => continue,
            Ok(Outcome::EmptyQueue) => {}
            Err(error) => {
                tracing::error!(%error, "worker step failed; the run goes back to the queue");
                // Not left to the lease's expiry: the run is retried at once, by us or another.
                if let Err(error) = worker.release_leases().await {
                    tracing::warn!(%error, "could not release the lease; it expires on its own");
                }
            }
        }
        tokio::select! {
            () = wake.local.notified() => {}
            () = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => break,
        }
    }
    match worker.release_leases().await {
        Ok(released) if released > 0 => {
            tracing::info!(released, "released run leases for another instance");
            wake.run_queued(&db).await;
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "could not release leases; they expire on their own"),
    }
}

/// Turns NOTIFYs from other instances into local wake-ups (reconnecting if the link drops).
async fn listen(pool: sqlx::PgPool, local: Arc<Notify>) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if listener.listen(CHANNEL).await.is_ok() {
                    while listener.recv().await.is_ok() {
                        local.notify_one();
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for run notifications; polling only")
            }
        }
        tokio::time::sleep(RECONNECT).await;
    }
}
