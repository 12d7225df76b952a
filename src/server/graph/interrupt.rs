//! Lets a run's cancellation end the Graph client's waits (the tenant's limiter, a pause after
//! `Retry-After`, a retry's backoff) at once, without cutting a request already sent: a capture
//! in flight finishes (its next requests too, while the token and the budget are at hand at
//! once), one still waiting gives up and says so. Work that writes marks its point
//! of no return ([`point_of_no_return`]) right before its first write: from there on a cancel no
//! longer cuts its waits, so what it sent is followed through (the rest of its writes, their
//! evidence) and recorded, never dropped while the write stands in the tenant.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;

use tokio::sync::watch;

use super::GraphError;
use crate::domain::reason_code::ReasonCode;

tokio::task_local! {
    static INTERRUPT: Interrupt;
}

/// The interruption of one piece of work (one item of a run).
#[derive(Clone, Debug)]
pub struct Interrupt {
    signal: watch::Receiver<bool>,
    hit: Arc<AtomicBool>,
    /// Set at the work's point of no return: its waits then ignore the signal.
    committed: Arc<AtomicBool>,
    /// Whether a wait that is ready at once proceeds after the cancel ([`waiting`]).
    ready_waits_proceed: bool,
}

impl Interrupt {
    /// Interrupts the waits of the work it scopes once `signal` turns true: a wait still
    /// pending gives way, one that is ready at once proceeds (work in flight, an item's capture,
    /// goes on with its next request and is recorded).
    pub fn new(signal: watch::Receiver<bool>) -> Self {
        Self {
            signal,
            hit: Arc::new(AtomicBool::new(false)),
            committed: Arc::new(AtomicBool::new(false)),
            ready_waits_proceed: true,
        }
    }

    /// Like [`Self::new`], for work whose result a cancel throws away anyway (a run's
    /// conclusion: a sync's listings are fenced off once the run is cancelled): every wait of
    /// it gives way to the cancel, even one that is ready at once, so it asks Graph nothing more.
    pub fn giving_up_at_once(signal: watch::Receiver<bool>) -> Self {
        Self {
            ready_waits_proceed: false,
            ..Self::new(signal)
        }
    }

    /// Runs `work` with its Graph waits interruptible.
    pub async fn scope<F: Future>(&self, work: F) -> F::Output {
        INTERRUPT.scope(self.clone(), work).await
    }

    /// Whether a wait of the scoped work was cut short (its result is then not an outcome).
    pub fn interrupted(&self) -> bool {
        self.hit.load(Ordering::SeqCst)
    }
}

/// The error of work cut short by a cancel.
fn cancelled(interrupt: &Interrupt) -> GraphError {
    interrupt.hit.store(true, Ordering::SeqCst);
    GraphError::new(
        ReasonCode::Cancelled,
        "The run was cancelled while waiting for Microsoft Graph.",
    )
}

/// Marks the current work's point of no return, right before its first write: from here on its
/// waits no longer give way to a cancel and it is never [`Interrupt::interrupted`], so it
/// finishes and its outcome is recorded (replacing the cancel's skip). A `cancelled` error, and
/// the work counts as interrupted, when the cancel came first: the work must then write nothing.
/// Outside a scope, always `Ok`.
pub(crate) fn point_of_no_return() -> Result<(), GraphError> {
    let Ok(interrupt) = INTERRUPT.try_with(Clone::clone) else {
        return Ok(());
    };
    if interrupt.committed.load(Ordering::SeqCst) {
        return Ok(());
    }
    if *interrupt.signal.borrow() {
        return Err(cancelled(&interrupt));
    }
    interrupt.committed.store(true, Ordering::SeqCst);
    Ok(())
}

/// Gives the current work up as cut short by a cancel (or a lost claim) found other than in a
/// wait, before its point of no return: its result is then not an outcome. The `cancelled`
/// error to return.
pub(crate) fn give_up() -> GraphError {
    match INTERRUPT.try_with(Clone::clone) {
        Ok(interrupt) if !interrupt.committed.load(Ordering::SeqCst) => cancelled(&interrupt),
        _ => GraphError::new(
            ReasonCode::Cancelled,
            "The run was cancelled or taken over before anything was written.",
        ),
    }
}

/// Waits for `wait` unless the current work is interrupted first (then a `cancelled` error);
/// past the work's [`point_of_no_return`], it just waits.
///
/// A wait that is ready at once (the token slot free, budget left in the limiter) is no wait:
/// it proceeds even after the cancel, so work in flight goes on with its next request (a
/// settings catalog policy's `settings` pages, an administrative template's presentation
/// values) and is recorded. Only a wait still pending gives way, and then at once, however long
/// it would take (a `Retry-After`); under [`Interrupt::giving_up_at_once`] every wait does.
pub(crate) async fn waiting<F: Future>(wait: F) -> Result<F::Output, GraphError> {
    let Ok(interrupt) = INTERRUPT.try_with(Clone::clone) else {
        return Ok(wait.await);
    };
    if interrupt.committed.load(Ordering::SeqCst) {
        return Ok(wait.await);
    }
    let mut wait = std::pin::pin!(wait);
    if interrupt.ready_waits_proceed {
        let first = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
        if let Poll::Ready(done) = first {
            return Ok(done);
        }
    }
    let mut signal = interrupt.signal.clone();
    tokio::select! {
        biased;
        Ok(_) = signal.wait_for(|cancelled| *cancelled) => Err(cancelled(&interrupt)),
        done = wait.as_mut() => Ok(done),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_ends_at_once_when_interrupted_and_outside_a_scope_it_is_plain() {
        let (cancel, signal) = watch::channel(false);
        let interrupt = Interrupt::new(signal);
        let waiting_long = interrupt.scope(waiting(tokio::time::sleep(Duration::from_secs(60))));
        let started = std::time::Instant::now();
        let (result, ()) = tokio::join!(waiting_long, async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.send_replace(true);
        });
        assert_eq!(result.unwrap_err().reason_code(), ReasonCode::Cancelled);
        assert!(interrupt.interrupted());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(waiting(async { 7 }).await.unwrap(), 7);
        assert!(point_of_no_return().is_ok());
    }

    #[tokio::test]
    async fn after_a_cancel_a_ready_wait_proceeds_and_a_pending_one_gives_way() {
        let (cancel, signal) = watch::channel(false);
        cancel.send_replace(true);
        // The next request of a capture in flight: the token slot is free, the budget left.
        let in_flight = Interrupt::new(signal.clone());
        let slot = tokio::sync::Mutex::new(7);
        let ready = in_flight
            .scope(async {
                let state = waiting(slot.lock()).await?;
                let budget = waiting(async { *state }).await?;
                Ok::<_, GraphError>(budget)
            })
            .await;
        assert_eq!(ready.unwrap(), 7);
        assert!(!in_flight.interrupted(), "its outcome is recorded");
        // A wait that would take a minute gives way at once.
        let waiting_long = Interrupt::new(signal);
        let started = std::time::Instant::now();
        let result = waiting_long
            .scope(waiting(tokio::time::sleep(Duration::from_secs(60))))
            .await;
        assert_eq!(result.unwrap_err().reason_code(), ReasonCode::Cancelled);
        assert!(waiting_long.interrupted());
        assert!(started.elapsed() < Duration::from_secs(5));
        // Work whose result the cancel throws away sends nothing more, ready or not.
        let discarded = Interrupt::giving_up_at_once(waiting_long.signal.clone());
        let result = discarded.scope(waiting(async { 7 })).await;
        assert_eq!(result.unwrap_err().reason_code(), ReasonCode::Cancelled);
        assert!(discarded.interrupted());
    }

    #[tokio::test]
    async fn past_the_point_of_no_return_a_cancel_no_longer_cuts_the_waits() {
        let (cancel, signal) = watch::channel(false);
        let interrupt = Interrupt::new(signal);
        let work = interrupt.scope(async {
            point_of_no_return()?;
            // The write is in flight when the cancel comes; what follows still waits.
            let first = waiting(tokio::time::sleep(Duration::from_millis(100))).await;
            let second = waiting(async { 7 }).await;
            first.and(second)
        });
        let (result, ()) = tokio::join!(work, async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            cancel.send_replace(true);
        });
        assert_eq!(result.unwrap(), 7);
        assert!(!interrupt.interrupted(), "its outcome is recorded");
    }

    #[tokio::test]
    async fn a_cancel_before_the_point_of_no_return_stops_the_work_before_it_writes() {
        let (cancel, signal) = watch::channel(false);
        cancel.send_replace(true);
        let interrupt = Interrupt::new(signal.clone());
        let result = interrupt.scope(async { point_of_no_return() }).await;
        assert_eq!(result.unwrap_err().reason_code(), ReasonCode::Cancelled);
        assert!(interrupt.interrupted(), "its result is not an outcome");
        let given_up = Interrupt::new(signal);
        let error = given_up.scope(async { give_up() }).await;
        assert_eq!(error.reason_code(), ReasonCode::Cancelled);
        assert!(given_up.interrupted());
    }
}
