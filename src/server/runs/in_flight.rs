//! Identical submits that arrive together in one process share one trip to the database.
//!
//! A double-click, or a hundred racing submits of one selection, used to run the whole submit
//! each: find the active run, check the selection, insert, and for all but one a unique
//! violation and a second read. The database still decides between processes (the partial
//! unique index); inside a process, the first submit of a key does the work and the identical
//! ones that arrive before it answers wait for its answer, which says `reused: true` to them.
//! Once it has answered, the next submit of the key goes to the database again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tokio::sync::OnceCell;

use super::key::IdempotencyKey;
use crate::domain::{AppError, SubmittedRun};
use crate::server::db::Db;

type Answer = Result<SubmittedRun, AppError>;

/// A submit's place: the database (a process may open several, as the tests do) and the key.
type Slot = (u64, String);
/// The answer of a submit in flight, once there is one.
type Cell = Arc<OnceCell<Answer>>;

/// The submits in flight.
static IN_FLIGHT: LazyLock<Mutex<HashMap<Slot, Cell>>> = LazyLock::new(Mutex::default);

fn calls() -> std::sync::MutexGuard<'static, HashMap<Slot, Cell>> {
    IN_FLIGHT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Forgets a key's cell when a call of it ends (only that cell: a later one may be there). The
/// calls still waiting on it keep it; the next submit of the key starts afresh.
struct Forget {
    slot: Slot,
    cell: Cell,
}

impl Drop for Forget {
    fn drop(&mut self) {
        let mut calls = calls();
        if calls
            .get(&self.slot)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            calls.remove(&self.slot);
        }
    }
}

/// Answers the submit of `key` with `submit`, or with the answer of the identical submit in
/// flight. If the submit doing the work is dropped (its client went away), a waiting one does it.
pub async fn coalesce<F, Fut>(db: &Db, key: &IdempotencyKey, submit: F) -> Answer
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let slot = (db.instance(), key.as_str().to_owned());
    let cell = Arc::clone(calls().entry(slot.clone()).or_default());
    // However this call ends (answered, or dropped), the key is forgotten.
    let _forget = Forget {
        slot,
        cell: Arc::clone(&cell),
    };
    let worked = AtomicBool::new(false);
    let answer = cell
        .get_or_init(|| {
            worked.store(true, Ordering::Relaxed);
            submit()
        })
        .await
        .clone();
    if worked.load(Ordering::Relaxed) {
        answer
    } else {
        answer.map(|run| SubmittedRun {
            reused: true,
            ..run
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;
    use crate::domain::run::OperationType;
    use crate::domain::RunStatus;

    fn key(target: i64) -> IdempotencyKey {
        IdempotencyKey::of(OperationType::DriftCheck, 1, &[("backup_set", target)])
    }

    fn created(run_id: i64) -> Answer {
        Ok(SubmittedRun {
            run_id,
            reused: false,
            status: RunStatus::Pending,
            total: 1,
        })
    }

    /// Submits of one key that overlap run the work once, and every other one is told it
    /// reused that run; a submit of another key or another database, or one after the
    /// answer, works on its own.
    #[tokio::test]
    async fn overlapping_identical_submits_work_once() {
        sqlx::any::install_default_drivers();
        let (db, other_db) = (
            Db::connect("sqlite::memory:").await.unwrap(),
            Db::connect("sqlite::memory:").await.unwrap(),
        );
        let works = Arc::new(AtomicUsize::new(0));
        let submit = |db: Db, target: i64| {
            let works = Arc::clone(&works);
            async move {
                coalesce(&db, &key(target), || async {
                    let n = works.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    created(100 + n as i64)
                })
                .await
                .unwrap()
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            tasks.spawn(submit(db.clone(), 7));
        }
        tasks.spawn(submit(db.clone(), 8));
        tasks.spawn(submit(other_db.clone(), 7));
        let answers = tasks.join_all().await;
        assert_eq!(works.load(Ordering::SeqCst), 3, "{answers:?}");
        assert_eq!(answers.iter().filter(|a| !a.reused).count(), 3);
        let same: std::collections::BTreeSet<i64> = answers
            .iter()
            .filter(|a| a.reused)
            .map(|a| a.run_id)
            .collect();
        assert_eq!(same.len(), 1, "the 49 waiting submits share one answer");
        // Answered: the next submit of the key asks again.
        let again = submit(db.clone(), 7).await;
        assert!(!again.reused);
        assert_eq!(works.load(Ordering::SeqCst), 4);
        assert!(
            calls().keys().all(|(db_id, _)| *db_id != db.instance()),
            "nothing is kept"
        );
    }

    /// A submit whose caller went away mid-work leaves the work to one that waits for it,
    /// which then created the run itself.
    #[tokio::test]
    async fn a_dropped_submit_hands_the_work_on() {
        sqlx::any::install_default_drivers();
        let db = Db::connect("sqlite::memory:").await.unwrap();
        let pause = || tokio::time::sleep(Duration::from_millis(20));
        let first = tokio::spawn({
            let db = db.clone();
            async move {
                coalesce(&db, &key(9), || async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    created(1)
                })
                .await
            }
        });
        pause().await;
        let second = tokio::spawn({
            let db = db.clone();
            async move { coalesce(&db, &key(9), || async { created(2) }).await }
        });
        pause().await;
        assert!(
            !second.is_finished(),
            "the second submit waits for the first"
        );
        first.abort();
        let answer = second.await.unwrap().unwrap();
        assert_eq!((answer.run_id, answer.reused), (2, false));
        assert!(
            calls().keys().all(|(db_id, _)| *db_id != db.instance()),
            "nothing is kept"
        );
    }
}
