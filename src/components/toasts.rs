//! Short-lived messages in a corner of the page ("Queued: 3 policies", "Finished: …"), each
//! with an optional **View run** link and a dismiss button. A message leaves by itself after
//! [`TOAST_LIFETIME`], counted while neither the pointer is over the list nor the keyboard's
//! focus is in it (WCAG 2.2.1: whoever reads or reaches for a message keeps it); the run's
//! notification (the bell) stays, so nothing is lost when a toast goes.

use std::time::Duration;

use leptos::prelude::*;

/// One message on screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toast {
    pub id: u64,
    pub text: String,
    /// Where **View run** leads, if anywhere.
    pub link: Option<String>,
}

/// The page's toast list, shared through context by [`provide_toasts`].
#[derive(Debug, Clone, Copy)]
pub struct ToastQueue {
    toasts: RwSignal<Vec<Toast>>,
    next_id: StoredValue<u64>,
}

/// How many toasts stay on screen; older ones make room.
const MAX_TOASTS: usize = 4;

/// How long a toast stays on screen while nobody holds the list (pointer over it, focus in it);
/// holding it starts the count again.
pub const TOAST_LIFETIME: Duration = Duration::from_secs(10);

impl ToastQueue {
    /// Shows a message, with a **View run** link when `link` is given.
    pub fn push(&self, text: impl Into<String>, link: Option<String>) {
        let id = self.next_id.get_value();
        self.next_id.set_value(id + 1);
        self.toasts.update(|list| {
            list.push(Toast {
                id,
                text: text.into(),
                link,
            });
            let overflow = list.len().saturating_sub(MAX_TOASTS);
            list.drain(..overflow);
        });
    }

    /// Removes one message.
    pub fn dismiss(&self, id: u64) {
        self.toasts
            .update(|list| list.retain(|toast| toast.id != id));
    }
}

/// Starts an empty toast list for the components below; render it with [`Toasts`].
pub fn provide_toasts() -> ToastQueue {
    let queue = ToastQueue {
        toasts: RwSignal::new(Vec::new()),
        next_id: StoredValue::new(0),
    };
    provide_context(queue);
    queue
}

/// The toast list of the page (from [`provide_toasts`]).
pub fn use_toasts() -> ToastQueue {
    expect_context::<ToastQueue>()
}

/// Renders the page's toasts; screen readers announce each new one. Each goes after
/// [`TOAST_LIFETIME`] unless the list is held (see the module's text).
#[component]
pub fn Toasts() -> impl IntoView {
    let queue = use_toasts();
    let hovered = RwSignal::new(false);
    let focused = RwSignal::new(false);
    let held = Memo::new(move |_| hovered.get() || focused.get());
    view! {
        <div
            class="toasts"
            role="status"
            aria-live="polite"
            data-testid="toasts"
            on:mouseenter=move |_| hovered.set(true)
            on:mouseleave=move |_| hovered.set(false)
            on:focusin=move |_| focused.set(true)
            on:focusout=move |_| focused.set(false)
        >
            <For
                each=move || queue.toasts.get()
                key=|toast| toast.id
                children=move |toast| {
                    expire_unless_held(queue, toast.id, held);
                    view! {
                        <div class="toast" data-testid="toast">
                            <span class="toast-text">{toast.text}</span>
                            {toast
                                .link
                                .map(|href| view! { <a href=href class="toast-link">"View run"</a> })}
                            <button
                                type="button"
                                class="link-button toast-dismiss"
                                aria-label="Dismiss"
                                on:click=move |_| {
                                    queue.dismiss(toast.id);
                                    // The button had the focus and is gone: a browser need not
                                    // say so with a focusout, and the list must not stay held.
                                    focused.set(false);
                                }
                            >
                                "×"
                            </button>
                        </div>
                    }
                }
            />
        </div>
    }
}

/// Dismisses toast `id` after [`TOAST_LIFETIME`] without a hold; a hold stops the count and its
/// end starts it again. Effects run in the browser only, and the toast's row owns this one, so
/// a toast dismissed by hand (or pushed out by a newer one) takes its timer with it.
fn expire_unless_held(queue: ToastQueue, id: u64, held: Memo<bool>) {
    Effect::new(move |_| {
        if held.get() {
            return;
        }
        if let Ok(handle) = set_timeout_with_handle(move || queue.dismiss(id), TOAST_LIFETIME) {
            on_cleanup(move || handle.clear());
        }
    });
}
