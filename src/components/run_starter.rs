//! A button that starts one kind of run on one target (Sync from Intune, Capture now, Compare
//! with Intune), the run queued or running now with its link, and how the last one ended. It
//! polls while a run is active or the last one is not settled (a capture cancelled in flight
//! still records its snapshot); when a run it saw active has ended and settled, it says so in a
//! toast and hands the run to `on_done` (the page then reloads what the run changed).

use leptos::prelude::*;

use super::poll::{LastRead, PollState, PollTrouble};
use super::{use_poll_while, ErrorMessage, NeedsRole, ToastQueue};
use crate::api::captures::get_run_activity;
use crate::domain::run::OperationType;
use crate::domain::versions::{RunActivity, RunBrief, StarterWatch};
use crate::domain::{routes, AppError, Capability, SubmittedRun};
use crate::pages::tenant_layout::refusal;

/// How a page starts the run (a server function behind an action).
pub type StartAction = Action<(), Result<SubmittedRun, AppError>>;

#[component]
pub fn RunStarter(
    tenant: Memo<String>,
    operation: OperationType,
    /// The policy or backup set; ignored for a sync (the tenant is the target).
    #[prop(optional)]
    target_id: i64,
    /// The button's words.
    label: &'static str,
    /// What the last run is called in the line below the button ("Last sync").
    last_label: &'static str,
    testid: &'static str,
    start: StartAction,
    #[prop(optional, into)] on_done: Option<Callback<RunBrief>>,
) -> impl IntoView {
    let tick = RwSignal::new(0_u64);
    // The start (its action's version) that the last read that worked came after.
    let answered = StoredValue::new(start.version().get_untracked());
    let activity = Resource::new(
        move || (tenant.get(), tick.get(), start.version().get()),
        move |(tenant, _, version)| async move {
            let read = get_run_activity(tenant, operation.as_str().to_owned(), target_id).await;
            if read.is_ok() {
                answered.set_value(version);
            }
            read
        },
    );
    // A failed poll is tried again later, while a run was last read active, or until a read
    // after the last start works (the last read before it was settled, and the run just
    // started would never be seen); one refused for good (signed out, no longer a member) is
    // not.
    let failures = use_poll_while(tick, move || {
        let state = PollState::from(activity.with(|read| {
            read.as_ref()
                .map(|read| read.as_ref().map(RunActivity::moving).map_err(Clone::clone))
        }));
        match state {
            PollState::Failed if answered.get_value() != start.version().get_untracked() => {
                PollState::FailedAfterChange
            }
            state => state,
        }
    });
    // What the row last showed, and for which tenant: a poll of the same tenant that failed for
    // a passing reason keeps it (with a quiet note) until one works, while a run was active and
    // the poll thus tries again; one refused for good drops it for the error. A read that
    // failed with no run seen active (the one after a start, say) shows the error while it is
    // read again: the old row would hide the run just started.
    let shown = LastRead::<(String, RunActivity)>::new();
    let shown_or = move |read: Result<RunActivity, AppError>| {
        let now = tenant.get_untracked();
        let read = read.map(|current| (now.clone(), current));
        shown
            .shown(read, |(seen, current)| *seen == now && current.moving())
            .map(|(_, current)| current)
    };
    // A run that ended which this page started, or saw queued or running: reported once.
    // (A short run may end before the first poll sees it active.) Effects only run in the
    // browser.
    let watch = StoredValue::new(StarterWatch::default());
    Effect::new(move |_| {
        let Some(Ok(current)) = activity.get() else {
            return;
        };
        let started = start
            .value()
            .get_untracked()
            .and_then(Result::ok)
            .map(|run| run.run_id);
        let mut watching = watch.get_value();
        let report = watching.step(started, &current);
        watch.set_value(watching);
        let Some(last) = current.last.filter(|last| report == Some(last.id)) else {
            return;
        };
        let run_id = last.id;
        if let Some(toasts) = use_context::<ToastQueue>() {
            let text = format!(
                "{}: {}",
                operation.label(),
                last.summary
                    .clone()
                    .unwrap_or_else(|| last.status.label().to_owned())
            );
            toasts.push(text, Some(routes::run(&tenant.get_untracked(), run_id, "")));
        }
        if let Some(on_done) = on_done {
            on_done.run(last);
        }
    });
    let needs_id = format!("{testid}-needs");
    view! {
        <div class="run-starter" data-testid=testid>
            <Transition fallback=|| ()>
                {move || {
                    let needs_id = needs_id.clone();
                    Suspend::new(async move {
                        let refused = refusal(Capability::StartRuns).await;
                        match shown_or(activity.await) {
                            Ok(current) => view! {
                                <StarterRow
                                    tenant start refused label needs_id
                                    current last_label
                                />
                            }.into_any(),
                            Err(error) => view! { <ErrorMessage error /> }.into_any(),
                        }
                    })
                }}
            </Transition>
            <PollTrouble failures />
            {move || start.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error /> })}
        </div>
    }
}

#[component]
fn StarterRow(
    tenant: Memo<String>,
    start: StartAction,
    refused: Option<&'static str>,
    label: &'static str,
    needs_id: String,
    current: RunActivity,
    last_label: &'static str,
) -> impl IntoView {
    let active = current.active.map(|run| run.id);
    // A cancelled last run that has not settled may still record what was in flight: a new
    // run would work beside its claim (the start answers 409 meanwhile, for the same reason).
    let unsettled = active.is_none() && !current.last_settled;
    let busy = move || start.pending().get() || active.is_some() || unsettled;
    let tenant = tenant.get_untracked();
    let settling = unsettled.then(|| {
        view! {
            <span class="muted" role="status" data-testid="run-settling">
                {RunActivity::NOT_SETTLED}
            </span>
        }
    });
    let running = active.map(|run_id| {
        view! {
            <span class="muted" role="status" data-testid="run-active">
                "Running… " <a href=routes::run(&tenant, run_id, "")>"run #" {run_id}</a>
            </span>
        }
    });
    let last = current.last.map(|last| {
        let href = routes::run(&tenant, last.id, "");
        let when = last.finished_at.map(|at| format!(" {at}"));
        view! {
            <p class="muted" data-testid="run-last">
                {last_label} {when} ": " {last.status.label()}
                {last.summary.map(|summary| format!(" — {summary}"))}
                " · " <a href=href>"run #" {last.id}</a>
            </p>
        }
    });
    let described = refused.map(|_| needs_id.clone());
    view! {
        <div class="action-row">
            <button
                type="button"
                class:refused=refused.is_some()
                disabled=move || refused.is_some() || busy()
                aria-describedby=described
                on:click=move |_| {
                    start.dispatch(());
                }
            >
                {label}
            </button>
            {refused.map(|reason| view! { <NeedsRole id=needs_id.clone() reason /> })}
            {running}
            {settling}
        </div>
        {last}
    }
}
