//! Lets a run's cancellation end the Graph client's waits (the tenant's limiter, a pause after
//! `Retry-After`, a retry's backoff) at once, without cutting a request already sent: a capture
//! in flight finishes, one still waiting gives up and says so.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
}

impl Interrupt {
    /// Interrupts the waits of the work it scopes once `signal` turns true.
    pub fn new(signal: watch::Receiver<bool>) -> Self {
        Self {
            signal,
            hit: Arc::new(AtomicBool::new(false)),
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

/// Waits for `wait` unless the current work is interrupted first (then a `cancelled` error).
pub(crate) async fn waiting<F: Future>(wait: F) -> Result<F::Output, GraphError> {
    let Ok(interrupt) = INTERRUPT.try_with(Clone::clone) else {
        return Ok(wait.await);
    };
    let mut signal = interrupt.signal.clone();
    tokio::select! {
        biased;
        Ok(_) = signal.wait_for(|cancelled| *cancelled) => {
            interrupt.hit.store(true, Ordering::SeqCst);
            Err(GraphError::new(
                ReasonCode::Cancelled,
                "The run was cancelled while waiting for Microsoft Graph.",
            ))
        }
        done = wait => Ok(done),
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
    }
}
