//! Cancellation signals for the runs this process works on. A cancel is decided in the database
//! (`runs::cancel`); these signals only tell a worker at once, so that it takes no new item of the
//! run and its waits on Graph end. They come from a cancel in this process or, on PostgreSQL,
//! from another instance's `NOTIFY` (`runner`). Each claim of a run (its `attempt`) has a signal
//! of its own: a cancel stops every claim of the run in this process, while a claim that lost
//! its lease stops only itself, never a later claim of the same run in the same process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The cancellation signals of the runs being worked on in this process. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Cancels {
    runs: Arc<Mutex<HashMap<Claim, Entry>>>,
}

/// One claim of a run: its id and `attempt`.
type Claim = (i64, i64);

#[derive(Debug)]
struct Entry {
    signal: watch::Sender<bool>,
    /// How many executions of the claim in this process watch it.
    watchers: usize,
}

/// Watches one claim's cancellation (or loss) while it is worked on; dropping it stops the watch.
#[derive(Debug)]
pub struct Watch {
    cancels: Cancels,
    claim: Claim,
    signal: watch::Receiver<bool>,
}

impl Watch {
    /// Resolves once the run is cancelled; never otherwise. The future does not hold the watch:
    /// whoever works on the run keeps the watch for as long as it does (a future dropped early,
    /// as `take_until` drops its stop once the stream is drained, must not end the watch while
    /// the run's waits still listen to its signal).
    pub fn cancelled(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut signal = self.signal.clone();
        async move {
            if signal.wait_for(|cancelled| *cancelled).await.is_err() {
                // The sender lives as long as the watch; once it is gone nobody waits on this.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The signal itself, for waits deeper down (the Graph client's).
    pub fn signal(&self) -> watch::Receiver<bool> {
        self.signal.clone()
    }

    pub fn is_cancelled(&self) -> bool {
        *self.signal.borrow()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut runs) = self.cancels.runs.lock() {
            if let Some(entry) = runs.get_mut(&self.claim) {
                entry.watchers -= 1;
                if entry.watchers == 0 {
                    runs.remove(&self.claim);
                }
            }
        }
    }
}

impl Cancels {
    /// Starts watching the claim `attempt` of `run_id`.
    pub fn watch(&self, run_id: i64, attempt: i64) -> Watch {
        let mut runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let claim = (run_id, attempt);
        let entry = runs.entry(claim).or_insert_with(|| Entry {
            signal: watch::channel(false).0,
            watchers: 0,
        });
        entry.watchers += 1;
        Watch {
            cancels: self.clone(),
            claim,
            signal: entry.signal.subscribe(),
        }
    }

    /// Signals every watcher of every claim of `run_id` in this process (the run was
    /// cancelled); nothing when none watches it.
    pub fn cancel(&self, run_id: i64) {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for ((run, _), entry) in runs.iter() {
            if *run == run_id {
                entry.signal.send_replace(true);
            }
        }
    }

    /// Signals the watchers of the claim `attempt` of `run_id` only (that claim lost the run):
    /// a later claim of the same run in this process keeps going.
    pub fn stop(&self, run_id: i64, attempt: i64) {
        let runs = self
            .runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(entry) = runs.get(&(run_id, attempt)) {
            entry.signal.send_replace(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_cancel_reaches_every_watcher_of_that_run_only() {
        let cancels = Cancels::default();
        let (first, second, other) = (
            cancels.watch(1, 1),
            cancels.watch(1, 2),
            cancels.watch(2, 1),
        );
        cancels.cancel(1);
        first.cancelled().await;
        second.cancelled().await;
        assert!(!other.is_cancelled());
        drop((first, second));
        assert!(cancels
            .runs
            .lock()
            .unwrap()
            .keys()
            .all(|(run, _)| *run != 1));
        // A cancel of a run nobody watches is a no-op, and a later watch starts uncancelled.
        cancels.cancel(1);
        assert!(!cancels.watch(1, 3).is_cancelled());
    }

    /// A claim that lost its lease stops itself only: a later claim of the same run in the same
    /// process (its attempt) keeps its items going.
    #[tokio::test]
    async fn a_lost_claim_stops_itself_not_the_next_claim_of_its_run() {
        let cancels = Cancels::default();
        let (lost, current) = (cancels.watch(7, 1), cancels.watch(7, 2));
        cancels.stop(7, 1);
        lost.cancelled().await;
        assert!(!current.is_cancelled());
        // A stop of a claim nobody watches is a no-op.
        cancels.stop(7, 3);
        assert!(!current.is_cancelled());
    }

    /// A worker stops taking items with `take_until(watch.cancelled())`, which drops that future
    /// once every item has been taken, while the items' waits still listen to the signal: the
    /// watch must outlive that future, or a cancel would go to a new signal nobody listens to.
    #[tokio::test]
    async fn the_stop_future_dropped_early_leaves_the_watch_listening() {
        let cancels = Cancels::default();
        let watch = cancels.watch(1, 1);
        let mut items_listen = watch.signal();
        drop(watch.cancelled());
        // Another watcher of the claim comes and goes meanwhile, and one of a second claim.
        drop(cancels.watch(1, 1));
        drop(cancels.watch(1, 2));
        cancels.cancel(1);
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            items_listen.wait_for(|cancelled| *cancelled),
        )
        .await
        .expect("the items' waits hear the cancel")
        .expect("the signal is still sent");
        drop(watch);
    }
}
