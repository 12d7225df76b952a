//! Polling, written once: a page keeps a `tick` that its resources read, and bumps it after a
//! delay for as long as what it shows is still moving. A poll that fails for a passing reason (a
//! server restart, a dropped request) does not stop it: it tries again later, waiting longer each
//! time, and the page keeps what it last read. A poll refused for good (signed out, no longer a
//! member, the thing gone) stops it, and the page drops what it last read.

use std::time::Duration;

use leptos::prelude::*;

use crate::domain::AppError;

/// Poll interval while the tab is visible.
const POLL_VISIBLE: Duration = Duration::from_millis(1500);
/// Poll interval while the tab is hidden.
const POLL_HIDDEN: Duration = Duration::from_secs(5);
/// The longest wait between tries after polls failed.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long to wait before polling again: slower when the tab is hidden (browser only).
pub fn poll_delay() -> Duration {
    if document().hidden() {
        POLL_HIDDEN
    } else {
        POLL_VISIBLE
    }
}

/// How long to wait after `failures` polls in a row failed: twice the visible interval after
/// the first, doubling each time, at most [`RETRY_MAX`].
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 1_u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX);
    POLL_VISIBLE.saturating_mul(factor).min(RETRY_MAX)
}

impl AppError {
    /// Whether a poll answered with this error is answered for good: the user was signed out,
    /// removed from the tenant or refused, or what the page shows is gone. Asking again would get
    /// the same answer, and what the page last read must no longer be shown.
    pub fn ends_polling(&self) -> bool {
        matches!(
            self,
            Self::Unauthorized | Self::Forbidden(_) | Self::NotFound(_)
        )
    }

    /// What a polled view shows when a poll failed with this error: what it showed before
    /// (`last`, if anything) while the failure is passing, so the page keeps it and says quietly
    /// that it could not refresh; the error when it [ends polling](Self::ends_polling).
    pub fn or_kept<T>(self, last: Option<T>) -> Result<T, AppError> {
        match last {
            Some(last) if !self.ends_polling() => Ok(last),
            _ => Err(self),
        }
    }
}

/// What a polled read shows, as its poll sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollState {
    /// Not read yet.
    Unknown,
    /// Still moving (a run queued or running): read again soon.
    Moving,
    /// Settled (the run ended, or the read was refused for good): nothing more to read.
    Settled,
    /// The last read failed: read again later if the last answer was still moving.
    Failed,
    /// The last read failed, and what is asked changed since the last answer (a run was just
    /// submitted, so the last answer no longer stands for it): read again later, whether or
    /// not the last answer was moving.
    FailedAfterChange,
}

impl PollState {
    /// The state of a resource's value; `moving` says whether a successful answer still moves.
    pub fn of<T>(read: Option<&Result<T, AppError>>, moving: impl FnOnce(&T) -> bool) -> Self {
        match read {
            None => Self::Unknown,
            Some(Ok(value)) if moving(value) => Self::Moving,
            Some(Ok(_)) => Self::Settled,
            Some(Err(error)) if error.ends_polling() => Self::Settled,
            Some(Err(_)) => Self::Failed,
        }
    }
}

/// Bumps `tick` once after [`poll_delay`] each time `state()` is re-evaluated to
/// [`PollState::Moving`], so a resource that reads `tick` loads again, and `state()` is asked
/// again about the new data. It stops by itself when `state()` answers `Settled` (a run ended).
/// A failed read while the last answer was moving, or after what is asked changed
/// ([`PollState::FailedAfterChange`]), is retried after [`retry_delay`] (a first read that
/// fails is not: the page shows its error). Returns how many polls failed in a row,
/// for [`PollTrouble`]. Effects run only in the browser, so the server never polls; a pending
/// timer is cleared when the page goes away.
pub fn use_poll(tick: RwSignal<u64>, state: impl Fn() -> PollState + 'static) -> ReadSignal<u32> {
    let failures = RwSignal::new(0_u32);
    // Whether the last answer that arrived was still moving.
    let moving = StoredValue::new(false);
    // The tick whose failure was counted: a failure re-evaluated twice counts once.
    let failed_at = StoredValue::new(None::<u64>);
    Effect::new(move |_| {
        let delay = match state() {
            PollState::Unknown => return,
            PollState::Settled => {
                moving.set_value(false);
                if failures.get_untracked() != 0 {
                    failures.set(0);
                }
                return;
            }
            PollState::Moving => {
                moving.set_value(true);
                if failures.get_untracked() != 0 {
                    failures.set(0);
                }
                poll_delay()
            }
            state @ (PollState::Failed | PollState::FailedAfterChange) => {
                if state == PollState::Failed && !moving.get_value() {
                    return;
                }
                let at = tick.get_untracked();
                if failed_at.get_value() != Some(at) {
                    failed_at.set_value(Some(at));
                    failures.update(|n| *n = n.saturating_add(1));
                }
                retry_delay(failures.get_untracked())
            }
        };
        let bump = move || {
            tick.try_update(|t| *t += 1);
        };
        if let Ok(handle) = set_timeout_with_handle(bump, delay) {
            on_cleanup(move || handle.clear());
        }
    });
    failures.read_only()
}

/// [`use_poll`] for a page outside this module: `state()` answers whether what it shows still
/// moves (`true`/`false`), or, for a read that may fail, `None` before the first answer,
/// `Some(Err(error))` with the read's error when it failed (one that [ends
/// polling](AppError::ends_polling) settles it) and `Some(Ok(moving))` otherwise.
pub fn use_poll_while<S: Into<PollState>>(
    tick: RwSignal<u64>,
    state: impl Fn() -> S + 'static,
) -> ReadSignal<u32> {
    use_poll(tick, move || state().into())
}

impl From<bool> for PollState {
    fn from(moving: bool) -> Self {
        if moving {
            Self::Moving
        } else {
            Self::Settled
        }
    }
}

impl From<Option<Result<bool, AppError>>> for PollState {
    fn from(read: Option<Result<bool, AppError>>) -> Self {
        Self::of(read.as_ref(), |moving| *moving)
    }
}

/// The last answer a poll showed, shown again while later reads fail for a passing reason
/// ([`AppError::or_kept`]); a read refused for good (signed out, no longer a member, the thing
/// gone) forgets it, so the error shows.
pub struct LastRead<T: Send + Sync + 'static>(StoredValue<Option<T>>);

impl<T: Send + Sync + 'static> Clone for LastRead<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Send + Sync + 'static> Copy for LastRead<T> {}

impl<T: Clone + Send + Sync + 'static> LastRead<T> {
    pub fn new() -> Self {
        Self(StoredValue::new(None))
    }

    /// What to show for `read`: an answer, kept for later; or, for a failure, the kept answer
    /// when `keep` says it still stands for what is asked now, else the error.
    pub fn shown(
        self,
        read: Result<T, AppError>,
        keep: impl FnOnce(&T) -> bool,
    ) -> Result<T, AppError> {
        match read {
            Ok(answer) => {
                self.0.set_value(Some(answer.clone()));
                Ok(answer)
            }
            Err(error) => {
                if error.ends_polling() {
                    self.0.set_value(None);
                }
                error.or_kept(self.0.get_value().filter(keep))
            }
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Default for LastRead<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// A failed poll, said quietly beside what was last read: it is tried again by itself.
#[component]
pub fn PollTrouble(failures: ReadSignal<u32>) -> impl IntoView {
    move || {
        (failures.get() > 0).then(|| {
            view! {
                <p class="poll-trouble muted small" role="status" data-testid="poll-trouble">
                    "Could not refresh — trying again…"
                </p>
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_the_maximum() {
        let delays: Vec<_> = (1..=40).map(retry_delay).collect();
        assert_eq!(delays[0], Duration::from_secs(3));
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert!(delays.iter().all(|d| *d <= RETRY_MAX && *d > POLL_VISIBLE));
        assert_eq!(*delays.last().unwrap_or(&Duration::ZERO), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn the_last_read_stands_in_for_a_passing_failure_only() {
        let owner = Owner::new();
        owner.with(|| {
            let last = LastRead::<i64>::new();
            let passing = || Err(AppError::Transport("reset".into()));
            assert!(last.shown(passing(), |_| true).is_err(), "nothing read yet");
            assert_eq!(last.shown(Ok(7), |_| true), Ok(7));
            assert_eq!(last.shown(passing(), |_| true), Ok(7), "kept");
            assert!(
                last.shown(passing(), |n| *n != 7).is_err(),
                "not for this read"
            );
            assert!(last.shown(Err(AppError::Unauthorized), |_| true).is_err());
            assert!(
                last.shown(passing(), |_| true).is_err(),
                "a refusal for good forgot it"
            );
        });
    }

    #[test]
    fn a_passing_failure_is_failed_whatever_was_read_before() {
        let err: Result<bool, AppError> = Err(AppError::Transport("reset".into()));
        assert_eq!(PollState::of(Some(&err), |m| *m), PollState::Failed);
        assert_eq!(PollState::from(Some(err)), PollState::Failed);
        assert_eq!(PollState::of(Some(&Ok(true)), |m| *m), PollState::Moving);
        assert_eq!(PollState::of(Some(&Ok(false)), |m| *m), PollState::Settled);
        assert_eq!(
            PollState::of(None::<&Result<bool, AppError>>, |m| *m),
            PollState::Unknown
        );
    }

    fn refusals() -> [AppError; 3] {
        [
            AppError::Unauthorized,
            AppError::Forbidden("You are not a member of this tenant.".into()),
            AppError::NotFound("This run does not exist in this tenant.".into()),
        ]
    }

    #[test]
    fn a_read_refused_for_good_settles_the_poll() {
        for error in refusals() {
            let read: Result<bool, AppError> = Err(error);
            assert_eq!(PollState::of(Some(&read), |m| *m), PollState::Settled);
            assert_eq!(PollState::from(Some(read)), PollState::Settled);
        }
    }

    #[test]
    fn a_passing_failure_keeps_the_last_view_and_a_refusal_drops_it() {
        let dropped = AppError::Transport("reset".into());
        assert_eq!(
            dropped.clone().or_kept(Some("run #7 running")),
            Ok("run #7 running")
        );
        assert_eq!(dropped.clone().or_kept(None::<&str>), Err(dropped));
        for error in refusals() {
            assert_eq!(error.clone().or_kept(Some("run #7 running")), Err(error));
        }
    }
}
