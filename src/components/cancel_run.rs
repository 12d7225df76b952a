//! The **Cancel run** action of an active run, with a confirmation: the run detail page and the
//! run panel show it. For a role that may not cancel, it is disabled with the reason beside it.

use leptos::prelude::*;

use super::confirm::use_confirm_focus;
use super::{use_toasts, ErrorMessage, NeedsRole};
use crate::api::runs::CancelRun;
use crate::domain::routes;

/// "Cancel run" for run `run_id`; `refused` is the reason the member may not (then disabled).
/// `on_cancelled` runs after the cancel was accepted, so the caller reloads the run. A page that
/// re-renders the button while polling passes `confirming` from outside the polled part, so an
/// open confirmation survives the next poll. The confirmation takes the focus when it opens;
/// Escape or "Keep running" closes it and gives the focus back to "Cancel run".
#[component]
pub fn CancelRunButton(
    tenant: String,
    run_id: i64,
    refused: Option<&'static str>,
    #[prop(into)] on_cancelled: Callback<()>,
    #[prop(optional)] confirming: Option<RwSignal<bool>>,
) -> impl IntoView {
    let toasts = use_toasts();
    let confirming = confirming.unwrap_or_else(|| RwSignal::new(false));
    let (opener, keep_button) = use_confirm_focus(confirming);
    let cancel = ServerAction::<CancelRun>::new();
    // One per run: the run panel may show several active runs.
    let needs_id = format!("cancel-run-needs-{run_id}");
    let href = routes::run(&tenant, run_id, "");
    Effect::new(move |_| {
        if let Some(Ok(done)) = cancel.value().get() {
            confirming.set(false);
            toasts.push(
                format!("Run #{} cancelled", done.run_id),
                Some(href.clone()),
            );
            on_cancelled.run(());
        }
    });
    let confirm = {
        let tenant = tenant.clone();
        move |_| {
            cancel.dispatch(CancelRun {
                tenant: tenant.clone(),
                id: run_id,
            });
        }
    };
    view! {
        <div class="action-row cancel-run">
            <Show
                when=move || confirming.get()
                fallback=move || {
                    let needs_id = needs_id.clone();
                    view! {
                    <button
                        type="button"
                        class="danger"
                        class:refused=refused.is_some()
                        data-testid="cancel-run"
                        disabled=refused.is_some()
                        aria-describedby=refused.map(|_| needs_id.clone())
                        node_ref=opener
                        on:click=move |_| confirming.set(true)
                    >
                        "Cancel run"
                    </button>
                    {refused.map(|reason| view! { <NeedsRole id=needs_id reason /> })}
                    }
                }
            >
                <p
                    role="alertdialog"
                    aria-label="Confirm cancel"
                    data-testid="cancel-confirm"
                    on:keydown=move |ev| {
                        if ev.key() == "Escape" {
                            ev.stop_propagation();
                            confirming.set(false);
                        }
                    }
                >
                    "Cancel run #" {run_id} "? Items not started are skipped; captures in progress finish. "
                    <button
                        type="button"
                        class="danger"
                        data-testid="cancel-run-confirm"
                        disabled=move || cancel.pending().get()
                        on:click=confirm.clone()
                    >
                        "Yes, cancel run"
                    </button>
                    " "
                    <button type="button" data-testid="cancel-run-keep" node_ref=keep_button on:click=move |_| confirming.set(false)>
                        "Keep running"
                    </button>
                </p>
            </Show>
            {move || cancel.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error /> })}
        </div>
    }
}
