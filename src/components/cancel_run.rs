//! The **Cancel run** action of an active run, with a confirmation: the run detail page and the
//! run panel show it. For a role that may not cancel, it is disabled with the reason beside it.

use leptos::prelude::*;

use super::confirm::{trap_tab, use_confirm_focus};
use super::{use_toasts, ErrorMessage, NeedsRole};
use crate::api::runs::CancelRun;
use crate::domain::routes;

/// "Cancel run" for run `run_id` while it is `active`; `refused` is the reason the member may
/// not (then disabled). `on_cancelled` runs after the cancel was accepted, so the caller reloads
/// the run.
///
/// A polled page keeps the run's `cancel` action and whether its confirmation is open
/// (`confirming`) outside what its polls render again, one of each per run, and keeps the button
/// itself in place while the run is shown (it shows nothing once the run ended): so a cancel on
/// its way stays pending through the polls, and its answer (the toast, or why it failed) is shown
/// even when a poll saw the run end first. The confirmation takes the focus when it opens; Escape
/// or "Keep running" closes it and gives the focus back to "Cancel run". When the run ends while
/// the focus is on "Cancel run" or in its question (both go), the question closes and the focus
/// moves to `focus_when_ended` (the run panel: the row's run link) rather than to the page.
#[component]
pub fn CancelRunButton(
    tenant: String,
    run_id: i64,
    #[prop(into)] active: Signal<bool>,
    refused: Option<&'static str>,
    cancel: ServerAction<CancelRun>,
    confirming: RwSignal<bool>,
    #[prop(into)] on_cancelled: Callback<()>,
    #[prop(optional)] focus_when_ended: Option<NodeRef<leptos::html::A>>,
) -> impl IntoView {
    let toasts = use_toasts();
    let (opener, keep_button) = use_confirm_focus(confirming);
    // One per run: the run panel may show several active runs.
    let needs_id = format!("cancel-run-needs-{run_id}");
    let href = routes::run(&tenant, run_id, "");
    // Announces each answer that arrives while the button is in the page, once: an answer that
    // arrived before it was shown (the action outlives it) was announced then.
    Effect::new(move |announced: Option<usize>| {
        let answers = cancel.version().get();
        if announced.is_some_and(|announced| answers > announced) {
            if let Some(Ok(done)) = cancel.value().get_untracked() {
                confirming.set(false);
                toasts.push(
                    format!("Run #{} cancelled", done.run_id),
                    Some(href.clone()),
                );
                on_cancelled.run(());
            }
        }
        answers
    });
    // Whether the focus is on "Cancel run" or in its question: set when it enters, cleared when
    // it moves to another element (a removed element takes it nowhere).
    let focus_inside = StoredValue::new(false);
    Effect::new(move |was_active: Option<bool>| {
        let now = active.get();
        if was_active == Some(true) && !now {
            confirming.set(false);
            let fell = document()
                .active_element()
                .is_none_or(|element| element.tag_name().eq_ignore_ascii_case("body"));
            if std::mem::take(&mut *focus_inside.write_value()) && fell {
                if let Some(target) = focus_when_ended.and_then(|target| target.get_untracked()) {
                    let _ = target.focus();
                }
            }
        }
        now
    });
    let confirm = move |_| {
        cancel.dispatch(CancelRun {
            tenant: tenant.clone(),
            id: run_id,
        });
    };
    let ask = move || {
        view! {
            <p
                role="alertdialog"
                aria-label="Confirm cancel"
                data-testid="cancel-confirm"
                on:keydown=move |ev| {
                    trap_tab(&ev);
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
        }
    };
    let offer = move || {
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
    };
    // What the run's cancel offers: nothing once the run ended, else the button or the question.
    let asking = Memo::new(move |_| active.get().then(|| confirming.get()));
    let body = move || match asking.get() {
        None => ().into_any(),
        Some(false) => offer().into_any(),
        Some(true) => ask().into_any(),
    };
    let failure = move || cancel.value().get().and_then(Result::err);
    // Nothing at all once the run ended, unless its cancel failed (a 409: it ended another way).
    let shown = Memo::new(move |_| active.get() || failure().is_some());
    move || {
        shown.get().then(|| {
            view! {
                <div
                    class="action-row cancel-run"
                    on:focusin=move |_| focus_inside.set_value(true)
                    on:focusout=move |ev| {
                        if ev.related_target().is_some() {
                            focus_inside.set_value(false);
                        }
                    }
                >
                    {body.clone()}
                    {move || failure().map(|error| view! { <ErrorMessage error /> })}
                </div>
            }
        })
    }
}
