//! Runs the worker in the background of a server: it keeps up to `runs_at_once` runs of each
//! lane going, claims the next one whenever a slot frees or it is woken (a submit in this
//! process, a PostgreSQL `NOTIFY` from another instance, or a slow poll as a safety net), and on
//! shutdown releases its leases so another instance resumes at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;

use super::cancel::Cancels;
use super::worker::{AbortOnDrop, Executing, Worker};
use crate::domain::run::Lane;
use crate::server::db::{Db, NativePool};

/// The PostgreSQL channel a submit notifies, so every instance's worker wakes.
const CHANNEL: &str = "tenantatlas_runs";
/// The PostgreSQL channel a cancel notifies with the run's id, so the instance working on it stops.
const CANCEL_CHANNEL: &str = "tenantatlas_cancels";
/// How long the listener waits before it reconnects to PostgreSQL.
const RECONNECT: Duration = Duration::from_secs(5);
/// How long a starting runner waits to hear other instances before it works on polling alone.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Wakes the worker(s) after a run was queued or cancelled. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct WakeUp {
    local: Arc<Notify>,
    cancels: Cancels,
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

    /// Tells the worker working on `run_id`, in this process or (PostgreSQL) another instance,
    /// that the run was cancelled. The cancel is already committed; this only makes it quick.
    pub async fn run_cancelled(&self, db: &Db, run_id: i64) {
        self.cancels.cancel(run_id);
        if let NativePool::Postgres(pool) = db.native() {
            if let Err(error) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CANCEL_CHANNEL)
                .bind(run_id.to_string())
                .execute(pool)
                .await
            {
                tracing::warn!(%error, "could not notify other instances of a cancel; their heartbeat finds it");
            }
        }
        // A cancelled run frees its tenant's bulk slot for the next queued run.
        self.local.notify_one();
    }

    /// The cancellation signals a worker run by [`run`] watches.
    pub fn cancels(&self) -> Cancels {
        self.cancels.clone()
    }
}

/// Runs `worker` until `shutdown` turns true, then stops its runs, releases the leases of its
/// own claims (by run and attempt, not every lease of its identity) and wakes the other
/// instances to take them over. `poll` is the safety net for expired leases and
/// lost wake-ups.
pub async fn run(
    worker: Worker,
    wake: WakeUp,
    db: Db,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let worker = worker.with_cancels(wake.cancels());
    // The listener lives as long as this runner: it holds a connection of the engine's small
    // pool, which the NOTIFYs of submits and cancels need too.
    let _listener = match db.native() {
        NativePool::Postgres(pool) => Some(start_listening(pool, &wake, &mut shutdown).await),
        NativePool::Sqlite(_) => None,
    };
    let mut active = JoinSet::new();
    // Which lane and run each task works on, to free its slot (and release the run on error).
    // Each claim's lane, run and attempt, and its hold on the run (`Worker::executing`).
    let mut working: HashMap<tokio::task::Id, (Lane, i64, i64, Executing)> = HashMap::new();
    let busy = |working: &HashMap<_, (Lane, i64, i64, Executing)>, lane: Lane| {
        working.values().filter(|(l, ..)| *l == lane).count()
    };
    // This worker's identity is its own (the instance lock of `serve`, a unique name in tests):
    // leases under it are from before a restart, and their runs are taken back at once.
    match worker.release_previous_life().await {
        Ok(released) if released > 0 => {
            tracing::info!(
                released,
                "taking back the runs of this instance's previous life"
            )
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(%error, "could not release old leases; they expire on their own")
        }
    }
    // Lanes whose last claim found nothing claimable: not asked again until something could
    // have changed that (a wake-up, the poll, or a run of that lane ending here, which frees its
    // tenant), so a busy runner does not query an empty lane between every two runs.
    let mut exhausted: HashSet<Lane> = HashSet::new();
    // A steady beat, not a pause restarted by every run's end, so that the poll comes however
    // busy the runner is.
    let mut polling = tokio::time::interval(poll);
    polling.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *shutdown.borrow() {
            break;
        }
        for lane in Lane::ALL {
            while !exhausted.contains(&lane) && busy(&working, lane) < worker.runs_at_once() {
                match worker.claim_open(lane).await {
                    Ok(Some(claimed)) => {
                        let (run_id, attempt) = (claimed.run.id, claimed.run.attempt);
                        // Held before the next claim, which must not take the run again while
                        // its task has yet to start, nor before its failure is counted.
                        let held = worker.executing(run_id);
                        let runner = worker.clone();
                        let task =
                            active.spawn(async move { runner.execute_claimed(claimed).await });
                        working.insert(task.id(), (lane, run_id, attempt, held));
                    }
                    Ok(None) => {
                        exhausted.insert(lane);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "could not claim a run; trying again later");
                        break;
                    }
                }
            }
        }
        tokio::select! {
            Some(done) = active.join_next_with_id() => {
                let (id, result) = match done {
                    Ok((id, result)) => (id, result.map_err(|e| e.to_string())),
                    Err(error) => (error.id(), Err(error.to_string())),
                };
                let Some((lane, run_id, attempt, _held)) = working.remove(&id) else { continue };
                exhausted.remove(&lane);
                if let Err(error) = result {
                    tracing::error!(run_id, %error, "work on a run failed; it goes back to the queue");
                    // Counted on the run, which is claimed again after a backoff (by us or
                    // another), or fails once it failed too often (`worker::WORK_ATTEMPTS`).
                    if let Err(error) = worker.work_failed(run_id, attempt, &error).await {
                        tracing::warn!(%error, "could not count the failed attempt; the lease expires on its own");
                    }
                }
                continue;
            }
            () = wake.local.notified() => exhausted.clear(),
            _ = polling.tick() => exhausted.clear(),
            _ = shutdown.changed() => break,
        }
    }
    // The runs stop before their leases go, so nothing is written after another took them.
    active.shutdown().await;
    // Only the claims this runner holds, by run and attempt: a newer life of this identity may
    // hold others under the same `lease_owner` (this process froze and lost its lock), and
    // releasing those would have another instance take them mid-run.
    let mut released = 0;
    for &(_, run_id, attempt, _) in working.values() {
        match worker.let_go_of_claim(run_id, attempt).await {
            Ok(n) => released += n,
            Err(error) => {
                tracing::warn!(run_id, %error, "could not release the run's lease; it expires on its own")
            }
        }
    }
    if released > 0 {
        tracing::info!(released, "released run leases for another instance");
        wake.run_queued(&db).await;
    }
}

/// Starts the listener for other instances' NOTIFYs and waits until it listens (at most
/// [`LISTEN_WAIT`], or until `shutdown`). No run is claimed before: a cancel sent earlier would
/// reach its run only through the heartbeat, a third of a lease later, after the run had taken
/// items it should not have. The listener stops when the returned guard is dropped.
async fn start_listening(
    pool: &sqlx::PgPool,
    wake: &WakeUp,
    shutdown: &mut watch::Receiver<bool>,
) -> AbortOnDrop {
    let (ready, listening) = oneshot::channel();
    let listener = AbortOnDrop(tokio::spawn(listen(pool.clone(), wake.clone(), ready)));
    tokio::select! {
        heard = tokio::time::timeout(LISTEN_WAIT, listening) => {
            if !matches!(heard, Ok(Ok(()))) {
                tracing::warn!("not listening to other instances yet; working on the poll and heartbeats alone");
            }
        }
        // The runner's loop sees the shutdown and leaves.
        _ = shutdown.changed() => {}
    }
    listener
}

/// Turns NOTIFYs from other instances into local wake-ups and cancellation signals
/// (reconnecting if the link drops). `ready` is told once the first LISTEN is in place.
async fn listen(pool: sqlx::PgPool, wake: WakeUp, ready: oneshot::Sender<()>) {
    let mut ready = Some(ready);
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if listener.listen_all([CHANNEL, CANCEL_CHANNEL]).await.is_ok() {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    } else {
                        // Back after a drop: a submit notified meanwhile is looked for now (a
                        // cancel meanwhile reaches its run through the heartbeat).
                        wake.local.notify_one();
                    }
                    while let Ok(notification) = listener.recv().await {
                        if notification.channel() == CANCEL_CHANNEL {
                            if let Ok(run_id) = notification.payload().parse::<i64>() {
                                wake.cancels.cancel(run_id);
                            }
                        }
                        wake.local.notify_one();
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
