//! Polling, written once: a page keeps a `tick` that its resources read, and bumps it after a
//! delay for as long as what it shows is still moving.

use std::time::Duration;

use leptos::prelude::*;

/// Poll interval while the tab is visible.
const POLL_VISIBLE: Duration = Duration::from_millis(1500);
/// Poll interval while the tab is hidden.
const POLL_HIDDEN: Duration = Duration::from_secs(5);

/// How long to wait before polling again: slower when the tab is hidden (browser only).
pub fn poll_delay() -> Duration {
    if document().hidden() {
        POLL_HIDDEN
    } else {
        POLL_VISIBLE
    }
}

/// Bumps `tick` once after [`poll_delay`] each time `active()` is re-evaluated to `true`, so a
/// resource that reads `tick` loads again, and `active()` is asked again about the new data.
/// It stops by itself when `active()` answers `false` (a run ended). Effects run only in the
/// browser, so the server never polls; a pending timer is cleared when the page goes away.
pub fn use_poll_while(tick: RwSignal<u64>, active: impl Fn() -> bool + 'static) {
    Effect::new(move |_| {
        if !active() {
            return;
        }
        let bump = move || {
            tick.try_update(|t| *t += 1);
        };
        if let Ok(handle) = set_timeout_with_handle(bump, poll_delay()) {
            on_cleanup(move || handle.clear());
        }
    });
}
