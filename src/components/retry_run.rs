//! **Retry N failed** (and **Resume N cancelled**) for a run that ended: queues a run of only
//! those items and links to it. For a role that may not start runs, it is disabled with the
//! reason beside it.

use leptos::prelude::*;

use super::{use_toasts, ErrorMessage, NeedsRole};
use crate::api::runs::RetryFailed;
use crate::domain::routes;

/// The retry button of run `run_id`, labelled `label` ("Retry 3 failed"). `on_queued` gets the
/// new run's id once the server accepted it. A polled page keeps the run's `retry` action
/// outside what its polls render again (one per run), so a retry on its way stays pending, and
/// its answer is shown, through the polls.
#[component]
pub fn RetryRunButton(
    tenant: String,
    run_id: i64,
    label: String,
    refused: Option<&'static str>,
    retry: ServerAction<RetryFailed>,
    #[prop(into)] on_queued: Callback<i64>,
) -> impl IntoView {
    let toasts = use_toasts();
    let needs_id = format!("retry-run-needs-{run_id}");
    // Announces each answer that arrives while the button is in the page, once: an answer that
    // arrived before it was shown (the action outlives it) was announced then.
    Effect::new({
        let tenant = tenant.clone();
        move |announced: Option<usize>| {
            let answers = retry.version().get();
            if announced.is_some_and(|announced| answers > announced) {
                if let Some(Ok(queued)) = retry.value().get_untracked() {
                    let verb = if queued.reused {
                        "is already queued"
                    } else {
                        "queued"
                    };
                    toasts.push(
                        format!("Run #{} {verb} (retry of run #{run_id})", queued.run_id),
                        Some(routes::run(&tenant, queued.run_id, "")),
                    );
                    on_queued.run(queued.run_id);
                }
            }
            answers
        }
    });
    let dispatch = move |_| {
        retry.dispatch(RetryFailed {
            tenant: tenant.clone(),
            id: run_id,
        });
    };
    view! {
        <div class="action-row retry-run">
            <button
                type="button"
                data-testid="retry-run"
                class:refused=refused.is_some()
                disabled=move || refused.is_some() || retry.pending().get()
                aria-describedby=refused.map(|_| needs_id.clone())
                on:click=dispatch
            >
                {label}
            </button>
            {refused.map(|reason| view! { <NeedsRole id=needs_id.clone() reason /> })}
            {move || retry.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error /> })}
        </div>
    }
}
