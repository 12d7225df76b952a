//! Short-lived messages in a corner of the page ("Queued: 3 policies", "Finished: …"), each
//! with an optional **View run** link and a dismiss button. A message leaves by itself after
//! [`TOAST_LIFETIME`]; if the pointer is over the list or the keyboard's focus is in it then, or
//! when either leaves the list, its count starts again (WCAG 2.2.1: whoever reads or reaches for
//! a message keeps it). The run's notification (the bell) stays, so nothing is lost when a toast
//! goes.

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
    let list = NodeRef::<leptos::html::Div>::new();
    // Bumped when the pointer or the focus leaves the list: every toast's count starts again.
    let released = RwSignal::new(0u64);
    let release = move || released.update(|n| *n = n.wrapping_add(1));
    view! {
        <div
            class="toasts"
            role="status"
            aria-live="polite"
            data-testid="toasts"
            node_ref=list
            on:mouseleave=move |_| release()
            on:focusout=move |_| release()
        >
            <For
                each=move || queue.toasts.get()
                key=|toast| toast.id
                children=move |toast| {
                    expire_unless_held(queue, toast.id, list, released);
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
                                on:click=move |_| queue.dismiss(toast.id)
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

/// Whether the pointer is over the list or the keyboard's focus is in it, read from the page
/// when asked: no event has to be seen (a browser that removes the focused toast, pushed out by
/// a newer one, need not fire a focusout), so the list cannot stay held by a stale flag.
fn held(list: NodeRef<leptos::html::Div>) -> bool {
    let Some(list) = list.get_untracked() else {
        return false;
    };
    let focused = document().active_element();
    list.matches(":hover").unwrap_or(false) || list.contains(focused.as_deref())
}

/// Dismisses toast `id` after [`TOAST_LIFETIME`] unless the list is [`held`] then, in which case
/// the count starts again; so does a release of the list (`released`). Effects run in the
/// browser only, and the toast's row owns this one, so a toast dismissed by hand (or pushed out
/// by a newer one) takes its timer with it.
fn expire_unless_held(
    queue: ToastQueue,
    id: u64,
    list: NodeRef<leptos::html::Div>,
    released: RwSignal<u64>,
) {
    let round = RwSignal::new(0u64);
    Effect::new(move |_| {
        released.track();
        round.track();
        let fire = move || {
            if held(list) {
                round.try_update(|n| *n = n.wrapping_add(1));
            } else {
                queue.dismiss(id);
            }
        };
        if let Ok(handle) = set_timeout_with_handle(fire, TOAST_LIFETIME) {
            on_cleanup(move || handle.clear());
        }
    });
}
