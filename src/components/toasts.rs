//! Short-lived messages in a corner of the page ("Queued: 3 policies", "Finished: …"), each
//! with an optional **View run** link and a dismiss button.

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

/// Renders the page's toasts; screen readers announce each new one.
#[component]
pub fn Toasts() -> impl IntoView {
    let queue = use_toasts();
    view! {
        <div class="toasts" role="status" aria-live="polite" data-testid="toasts">
            <For each=move || queue.toasts.get() key=|toast| toast.id let:toast>
                <div class="toast" data-testid="toast">
                    <span class="toast-text">{toast.text}</span>
                    {toast.link.map(|href| view! { <a href=href class="toast-link">"View run"</a> })}
                    <button
                        type="button"
                        class="link-button toast-dismiss"
                        aria-label="Dismiss"
                        on:click=move |_| queue.dismiss(toast.id)
                    >
                        "×"
                    </button>
                </div>
            </For>
        </div>
    }
}
