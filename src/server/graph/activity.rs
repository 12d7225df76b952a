//! What one run's captures did with Microsoft Graph: requests, throttled and failed answers,
//! retries and time spent waiting, and the waits going on right now. The engine scopes a run's
//! work with its [`GraphActivity`]; the client counts into the activity of the work it serves
//! (none outside a run) and registers each wait while it lasts. The engine writes a summary to
//! the run's row at most once a second.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::graph_wait::{GraphFigures, GraphWaitReason};

tokio::task_local! {
    static ACTIVITY: Arc<GraphActivity>;
}

/// A wait shorter than this is normal traffic, not worth telling the admin about.
pub const SHOWN_AFTER: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Wait {
    id: u64,
    reason: GraphWaitReason,
    started: Instant,
    until: Option<Instant>,
}

/// The Graph activity of one run's execution.
#[derive(Debug, Default)]
pub struct GraphActivity {
    requests: AtomicI64,
    throttled: AtomicI64,
    server_errors: AtomicI64,
    retries: AtomicI64,
    waited_ms: AtomicI64,
    next_wait: AtomicU64,
    waits: Mutex<Vec<Wait>>,
}

impl GraphActivity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Runs `work` with its Graph traffic counted here.
    pub async fn scope<F: Future>(self: &Arc<Self>, work: F) -> F::Output {
        ACTIVITY.scope(Arc::clone(self), work).await
    }

    /// The figures so far.
    pub fn figures(&self) -> GraphFigures {
        GraphFigures {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            waited_ms: self.waited_ms.load(Ordering::Relaxed),
        }
    }

    /// The wait to show at `now`: among the waits going on that have lasted, or are told to
    /// last, longer than [`SHOWN_AFTER`], the one that ends last (an open-ended one counts as
    /// ending last), with the time left when known.
    pub fn current_wait(&self, now: Instant) -> Option<(GraphWaitReason, Option<Duration>)> {
        self.wait_longer_than(SHOWN_AFTER, now)
    }

    fn wait_longer_than(
        &self,
        shown_after: Duration,
        now: Instant,
    ) -> Option<(GraphWaitReason, Option<Duration>)> {
        let waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        waits
            .iter()
            .filter(|wait| {
                now.saturating_duration_since(wait.started) >= shown_after
                    || wait.until.is_some_and(|until| {
                        until.saturating_duration_since(wait.started) >= shown_after
                    })
            })
            .max_by_key(|wait| (wait.until.is_none(), wait.until))
            .map(|wait| {
                (
                    wait.reason,
                    wait.until.map(|until| until.saturating_duration_since(now)),
                )
            })
    }

    fn begin_wait(&self, reason: GraphWaitReason, length: Option<Duration>) -> u64 {
        let id = self.next_wait.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        waits.push(Wait {
            id,
            reason,
            started,
            until: length.map(|length| started + length),
        });
        id
    }

    fn end_wait(&self, id: u64) {
        let mut waits = self.waits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = waits.iter().position(|wait| wait.id == id) {
            let wait = waits.swap_remove(at);
            let ms = i64::try_from(wait.started.elapsed().as_millis()).unwrap_or(i64::MAX);
            self.waited_ms.fetch_add(ms, Ordering::Relaxed);
        }
    }
}

/// What the client counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Count {
    /// One request sent (every attempt).
    Request,
    /// An answer 429.
    Throttled,
    /// An answer 500–599.
    ServerError,
    /// An attempt that repeats an earlier one.
    Retry,
}

/// Counts into the current work's activity, if it has one.
pub(crate) fn count(what: Count) {
    let _ = ACTIVITY.try_with(|activity| {
        let counter = match what {
            Count::Request => &activity.requests,
            Count::Throttled => &activity.throttled,
            Count::ServerError => &activity.server_errors,
            Count::Retry => &activity.retries,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    });
}

/// Awaits `wait`, registered as a wait for `reason` of about `length` (when known) in the
/// current work's activity for as long as it lasts, however it ends (also when dropped).
pub(crate) async fn waiting_for<F: Future>(
    reason: GraphWaitReason,
    length: Option<Duration>,
    wait: F,
) -> F::Output {
    let Ok(activity) = ACTIVITY.try_with(Arc::clone) else {
        return wait.await;
    };
    struct Registered(Arc<GraphActivity>, u64);
    impl Drop for Registered {
        fn drop(&mut self) {
            self.0.end_wait(self.1);
        }
    }
    let _registered = Registered(Arc::clone(&activity), activity.begin_wait(reason, length));
    wait.await
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHORT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_wait_is_shown_once_it_is_told_to_last_and_counted_when_it_ends() {
        let activity = GraphActivity::new();
        let quick = activity.scope(waiting_for(
            GraphWaitReason::RequestBudget,
            None,
            tokio::time::sleep(Duration::from_millis(50)),
        ));
        let long = activity.scope(waiting_for(
            GraphWaitReason::Throttled,
            Some(SHORT * 3),
            tokio::time::sleep(SHORT * 3),
        ));
        let watch = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let (reason, left) = activity
                .wait_longer_than(SHORT, Instant::now())
                .expect("the long wait");
            assert_eq!(reason, GraphWaitReason::Throttled);
            let left = left.expect("a known end");
            assert!(left > SHORT && left < SHORT * 3, "{left:?}");
        };
        tokio::join!(quick, long, watch);
        assert_eq!(
            activity.wait_longer_than(Duration::ZERO, Instant::now()),
            None
        );
        let waited = activity.figures().waited_ms;
        assert!((650..2_000).contains(&waited), "{waited} ms");
    }

    #[tokio::test]
    async fn an_open_ended_wait_shows_once_it_has_lasted_and_a_dropped_wait_ends() {
        let activity = GraphActivity::new();
        let forever = activity.scope(waiting_for(
            GraphWaitReason::Unavailable,
            None,
            std::future::pending::<()>(),
        ));
        let cut = tokio::time::timeout(SHORT * 2, forever);
        let watch = async {
            tokio::time::sleep(SHORT / 4).await;
            assert_eq!(
                activity.wait_longer_than(SHORT, Instant::now()),
                None,
                "not yet"
            );
            tokio::time::sleep(SHORT).await;
            assert_eq!(
                activity.wait_longer_than(SHORT, Instant::now()),
                Some((GraphWaitReason::Unavailable, None))
            );
        };
        let (timed_out, ()) = tokio::join!(cut, watch);
        assert!(timed_out.is_err());
        assert_eq!(
            activity.wait_longer_than(Duration::ZERO, Instant::now()),
            None,
            "the drop ended it"
        );
        assert!(activity.figures().waited_ms >= 400);
    }

    #[tokio::test]
    async fn outside_a_run_nothing_is_counted() {
        count(Count::Request);
        let activity = GraphActivity::new();
        activity.scope(async { count(Count::Request) }).await;
        assert_eq!(activity.figures().requests, 1);
    }
}
