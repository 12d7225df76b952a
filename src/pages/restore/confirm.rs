//! Steps 4 and 5 of the restore wizard: the confirmation ("I reviewed the impact", the tenant's
//! name typed) and **Execute**, disabled with the reasons until every gate holds; then the
//! execute run's progress and its evidence. The server checks every gate again and its refusal
//! is shown.

use std::collections::BTreeSet;
use std::time::Duration;

use leptos::prelude::*;

use super::Wizard;
use crate::api::restore::ExecuteRestore;
use crate::api::runs::{get_run, run_version};
use crate::components::{
    poll_delay, use_poll_while, ErrorMessage, LastRead, Loading, NeedsRole, PollTrouble,
    RunStatusBadge,
};
use crate::domain::restore::{policies_of, typed_name_matches, GateFailure, RestorePreview};
use crate::domain::run_detail::RunDetail;
use crate::domain::{routes, AppError, SubmittedRun};

/// Why a preview of another source than the page's (a hand-edited or stale link) is not
/// executed from here: the page would show one source and restore another.
pub const OTHER_SOURCE: &str =
    "This preview was made from another source than the one shown here. Open it from its own restore page, or run the preview again.";

/// Why neither a new preview nor Execute may start while an execute is on its way or running.
pub const EXECUTE_RUNNING: &str = "A restore of this preview is running.";

/// The execute as the wizard follows it, shared by the preview step (no new preview while it
/// runs) and steps 4 and 5. An execute is busy from its request until its run settled: a new
/// preview meanwhile would take the page to another preview, where the execute's answer would
/// be dropped and step 5 say that nothing is written while Intune is, and Execute would be
/// offered again.
#[derive(Clone, Copy)]
pub struct ExecuteState {
    action: ServerAction<ExecuteRestore>,
    /// The preview each execute was sent for: an answer that arrives after another preview was
    /// opened is not that preview's, once its run settled.
    sent_for: RwSignal<Option<i64>>,
    /// The runs step 5 has seen settled, or can no longer read (refused for good: signed out,
    /// no longer a member, the run gone): nothing more to follow.
    settled: RwSignal<BTreeSet<i64>>,
    /// This page's execute: the server's answer, while it is the preview's or not settled.
    answered: Memo<Option<SubmittedRun>>,
    /// The run step 5 shows: this page's execute, else the preview's own (read with it; one per
    /// preview, whatever its status): a page opened at a preview whose execute runs, was
    /// cancelled while its claim still writes, or ended follows it and shows how it ended.
    shown: Memo<Option<i64>>,
    /// Whether an execute is on its way or its run has not settled.
    pub busy: Memo<bool>,
}

impl ExecuteState {
    pub fn new(wizard: Wizard, current: RwSignal<Option<RestorePreview>>) -> Self {
        let action = ServerAction::<ExecuteRestore>::new();
        let sent_for = RwSignal::new(None::<i64>);
        let settled = RwSignal::new(BTreeSet::<i64>::new());
        let answered = Memo::new(move |_| {
            let run = action.value().get().and_then(Result::ok)?;
            let this_preview = sent_for.get() == wizard.preview_id.get();
            (this_preview || !settled.with(|s| s.contains(&run.run_id))).then_some(run)
        });
        let shown = Memo::new(move |_| {
            answered.get().map(|run| run.run_id).or_else(|| {
                let now = wizard.preview_id.get();
                current.with(|p| {
                    p.as_ref()
                        .filter(|p| Some(p.run_id) == now)
                        .and_then(|p| p.execute_run)
                })
            })
        });
        let busy = Memo::new(move |_| {
            action.pending().get()
                || shown
                    .get()
                    .is_some_and(|id| !settled.with(|s| s.contains(&id)))
        });
        ExecuteState {
            action,
            sent_for,
            settled,
            answered,
            shown,
            busy,
        }
    }

    /// The execute shown once step 5 read it settled: the preview is spent (one execute per
    /// preview), and Execute stays disabled for good.
    pub fn ended(&self) -> Option<i64> {
        let settled = self.settled;
        self.shown
            .get()
            .filter(|id| settled.with(|s| s.contains(id)))
    }
}

/// Why Execute stays disabled once the preview's execute ended, until the preview read again
/// says how (executed already, or stopped with no write recorded).
pub const EXECUTE_ENDED: &str =
    "The execute of this preview has ended. Run the preview again to restore again.";

/// Where the preview's execute stands, as step 5 follows it.
#[derive(Clone, Copy)]
struct ExecuteProgress {
    /// Requested, or running and not yet settled.
    busy: bool,
    /// Settled since the preview was read.
    ended: bool,
}

/// Why Execute is disabled now (the role aside, shown beside the button); empty when it is not.
fn reasons(
    wizard: Wizard,
    preview: Option<&RestorePreview>,
    expired: bool,
    reviewed: bool,
    typed: &str,
    tenant_name: &str,
    progress: ExecuteProgress,
) -> Vec<String> {
    let ExecuteProgress { busy, ended } = progress;
    let mut reasons = Vec::new();
    if busy {
        reasons.push(EXECUTE_RUNNING.to_owned());
    }
    // While its execute is still written (a cancelled one whose claim has not let go) the
    // preview is not "executed already", "stopped with no write" nor "still settling": it is
    // running, which the first reason says.
    let spent_by_execute = |failure: &GateFailure| {
        matches!(
            failure,
            GateFailure::AlreadyExecuted
                | GateFailure::ExecuteStoppedUnwritten
                | GateFailure::ExecuteSettling
        )
    };
    match preview {
        None => reasons.push("Run the preview first.".to_owned()),
        Some(preview)
            if busy
                && preview
                    .not_executable
                    .as_ref()
                    .is_some_and(spent_by_execute) => {}
        Some(preview) => {
            let chosen: BTreeSet<i64> = preview.items.iter().map(|i| i.policy_id).collect();
            let same_scope = wizard.selected.with(|s| *s == chosen)
                && wizard.include_assignments.get() == preview.include_assignments
                && wizard.include_scope_tags.get() == preview.include_scope_tags;
            // Read while its execute was still settling, which step 5 has since seen it do:
            // the preview read again says how it ended.
            let settled_since =
                ended && preview.not_executable == Some(GateFailure::ExecuteSettling);
            if preview.source != wizard.source {
                reasons.push(OTHER_SOURCE.to_owned());
            } else if let Some(failure) = preview.not_executable.as_ref().filter(|_| !settled_since)
            {
                reasons.push(failure.message().to_owned());
            } else if ended {
                // Read before the execute ended: the preview read again says how it did.
                reasons.push(EXECUTE_ENDED.to_owned());
            } else if expired {
                reasons.push(GateFailure::PreviewExpired.message().to_owned());
            } else if !same_scope {
                reasons.push(
                    "The scope or the options changed since this preview. Run the preview again."
                        .to_owned(),
                );
            }
        }
    }
    if !reviewed {
        reasons.push(GateFailure::NotReviewed.message().to_owned());
    }
    // As the server compares: the label shows a run of spaces as one.
    if !typed_name_matches(typed, tenant_name) {
        reasons.push(GateFailure::WrongTenantName.message().to_owned());
    }
    reasons
}

/// Whether the preview last read has stopped being current since (its 15 minutes, counted
/// from the server's answer, have passed while the page stayed open). Effects run only in the
/// browser; a preview read again starts the count again.
fn use_expiry(current: RwSignal<Option<RestorePreview>>) -> ReadSignal<bool> {
    let expired = RwSignal::new(false);
    Effect::new(move |_| {
        let left = current.with(|p| p.as_ref().and_then(|p| p.expires_in_ms));
        expired.set(false);
        let Some(left) = left else { return };
        let wait = Duration::from_millis(u64::try_from(left).unwrap_or(0));
        if let Ok(handle) = set_timeout_with_handle(move || expired.set(true), wait) {
            on_cleanup(move || handle.clear());
        }
    });
    expired.read_only()
}

/// A new preview (another run in the URL) asks its own questions. The page keeps its steps
/// across previews (a started preview only changes the URL), so without this the box ticked for
/// the last preview would confirm one the user has not seen, and the last execute (its
/// progress, or the server's refusal) would stand for the new one and keep Execute disabled
/// with no reason. The typed name stays: the tenant is the same. The URL's id changes as soon
/// as a preview is started, before its plan is read, so nothing confirms the gap in between.
/// An execute still busy (the page left for another preview by the history, say) is kept: step
/// 5 follows it until it settled, and drops it then (its answer was sent for another preview).
/// Effects run in the browser only: the first run records the preview the page was opened at
/// and resets nothing.
fn use_reset_on_new_preview(
    preview_id: Memo<Option<i64>>,
    reviewed: RwSignal<bool>,
    execute: ExecuteState,
) {
    Effect::new(move |last: Option<Option<i64>>| {
        let id = preview_id.get();
        if last.is_some_and(|last| last != id) {
            reviewed.set(false);
            if !execute.busy.get_untracked() {
                execute.action.value().set(None);
            }
        }
        id
    });
}

/// The two confirmations, Execute with why it is disabled, and the execute once started.
#[component]
pub fn ConfirmStep(
    wizard: Wizard,
    tenant_name: String,
    current: RwSignal<Option<RestorePreview>>,
    state: ExecuteState,
) -> impl IntoView {
    let refused = wizard.refused;
    let reviewed = RwSignal::new(false);
    let typed = RwSignal::new(String::new());
    let execute = state.action;
    let name = StoredValue::new(tenant_name.clone());
    let expired = use_expiry(current);
    use_reset_on_new_preview(wizard.preview_id, reviewed, state);
    let blocking = Memo::new(move |_| {
        current.with(|p| {
            name.with_value(|name| {
                let expired = expired.get();
                reasons(
                    wizard,
                    p.as_ref(),
                    expired,
                    reviewed.get(),
                    &typed.get(),
                    name,
                    ExecuteProgress {
                        busy: state.busy.get(),
                        ended: state.ended().is_some(),
                    },
                )
            })
        })
    });
    // A refusal sent for another preview than the one in the URL is not this preview's.
    let sent_for = state.sent_for;
    let refusal = move || {
        if sent_for.get() == wizard.preview_id.get() {
            execute.value().get().and_then(Result::err)
        } else {
            None
        }
    };
    // An execute shown (this page's, or the preview's own found running) is not started again.
    let started = move || state.shown.with(Option::is_some);
    let disabled =
        move || refused.is_some() || state.busy.get() || started() || !blocking.with(Vec::is_empty);
    let run_execute = move |_| {
        let Some(preview_run_id) = current.with_untracked(|p| p.as_ref().map(|p| p.run_id)) else {
            return;
        };
        sent_for.set(Some(preview_run_id));
        execute.dispatch(ExecuteRestore {
            tenant: wizard.tenant.get_untracked(),
            preview_run_id,
            reviewed: reviewed.get_untracked(),
            tenant_name: typed.get_untracked(),
        });
    };
    let described = if refused.is_some() {
        "execute-reasons execute-needs"
    } else {
        "execute-reasons"
    };
    view! {
        <section class="wizard-step" aria-labelledby="step-confirm" data-testid="restore-confirm">
            <h2 id="step-confirm">"4. Confirm"</h2>
            <p>
                <label>
                    <input
                        type="checkbox"
                        data-testid="reviewed"
                        prop:checked=move || reviewed.get()
                        on:change=move |ev| reviewed.set(event_target_checked(&ev))
                    />
                    " I reviewed the impact"
                </label>
            </p>
            <p class="confirm-name">
                <label for="confirm-name">"Type the tenant's name (" {tenant_name} ") to confirm"</label>
                <input
                    id="confirm-name"
                    type="text"
                    autocomplete="off"
                    spellcheck="false"
                    data-testid="confirm-name"
                    prop:value=move || typed.get()
                    on:input=move |ev| typed.set(event_target_value(&ev))
                />
            </p>
            <div class="action-row">
                <button
                    type="button"
                    class="danger"
                    class:refused=refused.is_some()
                    data-testid="execute"
                    disabled=disabled
                    aria-describedby=described
                    on:click=run_execute
                >
                    {move || if execute.pending().get() { "Executing…" } else { "Execute" }}
                </button>
                {refused.map(|reason| view! { <NeedsRole id="execute-needs" reason /> })}
            </div>
            <ul id="execute-reasons" class="gate-reasons" data-testid="execute-reasons" aria-live="polite">
                {move || blocking.get().into_iter().map(|reason| view! { <li>{reason}</li> }).collect_view()}
            </ul>
            <div data-testid="execute-error">
                {move || refusal().map(|error| view! { <ErrorMessage error /> })}
            </div>
        </section>
        <section class="wizard-step" aria-labelledby="step-execute" data-testid="restore-execute">
            <h2 id="step-execute">"5. Execute"</h2>
            {move || state.answered.with(|run| run.as_ref().is_some_and(|run| run.reused)).then(|| view! {
                <p class="muted" data-testid="execute-reused">"Already running — showing the existing run"</p>
            })}
            {move || match state.shown.get() {
                Some(run_id) => view! {
                    <ExecuteProgress tenant=wizard.tenant.get_untracked() run_id settled=state.settled />
                }.into_any(),
                None => view! { <p class="muted">"Nothing is written until you execute."</p> }.into_any(),
            }}
        </section>
    }
}

/// The execute run: status, progress and, when it ended, its evidence ("48 of 50 now match the
/// backup; …"), with the link to its page.
#[component]
fn ExecuteProgress(
    tenant: String,
    run_id: i64,
    /// Where the run is recorded once it was read settled, or refused for good (the wizard is
    /// busy until then).
    settled: RwSignal<BTreeSet<i64>>,
) -> impl IntoView {
    let tick = RwSignal::new(0_u64);
    let href = routes::run(&tenant, run_id, "");
    // The last answer with the run's version is kept: a poll first asks for the version (one
    // indexed read) and reads the run again only when it moved.
    let last = StoredValue::new(None::<(String, RunDetail)>);
    let run = Resource::new(
        move || tick.get(),
        move |tick| {
            let tenant = tenant.clone();
            async move {
                // The first load (also on the server) reads the run at once.
                if tick == 0 {
                    return get_run(tenant, run_id, String::new(), 0, 1).await;
                }
                let version = run_version(tenant.clone(), run_id).await?;
                let unchanged = last.with_value(|last| match last {
                    Some((at, detail)) if *at == version => Some(detail.clone()),
                    _ => None,
                });
                if let Some(detail) = unchanged {
                    return Ok(detail);
                }
                let detail = get_run(tenant, run_id, String::new(), 0, 1).await?;
                last.set_value(Some((version, detail.clone())));
                Ok(detail)
            }
        },
    );
    // It polls while the run last read was not settled: a cancelled restore is still written to
    // until its claim lets go (a write past its point of no return, then "Cancelled after
    // writing N of M…"). A failed poll is tried again later; one refused for good (signed out,
    // no longer a member) is not.
    let failures = use_poll_while(tick, move || {
        run.with(|read| {
            read.as_ref().map(|read| {
                read.as_ref()
                    .map(|detail| !detail.settled)
                    .map_err(Clone::clone)
            })
        })
    });
    use_first_read_retried(run, tick);
    // A read refused for good (signed out, no longer a member, the run gone) shows its error
    // and leaves nothing to follow: the wizard is not held busy by a run it cannot read.
    Effect::new(move |_| {
        let done = run.with(|read| match read {
            Some(Ok(detail)) => detail.settled,
            Some(Err(error)) => error.ends_polling(),
            None => false,
        });
        if done && !settled.with_untracked(|s| s.contains(&run_id)) {
            settled.update(|s| {
                s.insert(run_id);
            });
        }
    });
    // The run last shown: a poll that failed for a passing reason keeps it (with a quiet note)
    // until one works; one refused for good drops it for the error.
    let shown = LastRead::<RunDetail>::new();
    let shown_or = move |read: Result<RunDetail, AppError>| shown.shown(read, |_| true);
    view! {
        <Transition fallback=|| view! { <Loading what="the restore run" /> }>
            {move || {
                let href = href.clone();
                Suspend::new(async move {
                    match shown_or(run.await) {
                        Ok(detail) => view! {
                            <p role="status" data-testid="execute-status" data-status=detail.status.as_str()>
                                <RunStatusBadge status=detail.status />
                                " " {policies_of(detail.processed_items, detail.total_items)} " · "
                                <a href=href data-testid="execute-run-link">"View run"</a>
                            </p>
                            <progress
                                max=detail.total_items.max(1)
                                value=detail.processed_items
                                aria-label="Progress of the restore"
                            ></progress>
                            {detail.summary.map(|summary| view! {
                                <p class="run-summary" data-testid="execute-summary">{summary}</p>
                            })}
                        }.into_any(),
                        Err(error) => {
                            let again = !error.ends_polling();
                            view! {
                                <ErrorMessage error />
                                {again.then(|| view! {
                                    <p class="muted small" role="status" data-testid="execute-retrying">
                                        "Could not read the restore run — trying again…"
                                    </p>
                                })}
                            }.into_any()
                        }
                    }
                })
            }}
        </Transition>
        <PollTrouble failures />
    }
}

/// The longest wait between tries of a first read that failed.
const FIRST_READ_RETRY_MAX: Duration = Duration::from_secs(30);

/// The poll ([`use_poll_while`]) tries again a read that failed only after one that was still
/// moving: a first read of the execute that failed for a passing reason (a 5xx, a dropped
/// request) would never be tried again, and the wizard, busy until it reads the run settled,
/// would stay busy for good (no new preview) with nothing of the run shown. It is tried again
/// here, waiting longer each time, until one read works (the poll takes over) or is refused for
/// good. Effects run in the browser only; a pending try is cleared when step 5 goes away.
fn use_first_read_retried(run: Resource<Result<RunDetail, AppError>>, tick: RwSignal<u64>) {
    let read_once = StoredValue::new(false);
    let failures = StoredValue::new(0_u32);
    // The tick whose failure was counted: a failure re-evaluated twice counts once.
    let failed_at = StoredValue::new(None::<u64>);
    Effect::new(move |_| {
        let failed = run.with(|read| match read {
            Some(Ok(_)) => {
                read_once.set_value(true);
                false
            }
            Some(Err(error)) => !error.ends_polling() && !read_once.get_value(),
            None => false,
        });
        if !failed {
            return;
        }
        let at = tick.get_untracked();
        if failed_at.get_value() != Some(at) {
            failed_at.set_value(Some(at));
            failures.update_value(|n| *n = n.saturating_add(1));
        }
        let doubled = 1_u32 << failures.get_value().min(5);
        let wait = poll_delay()
            .saturating_mul(doubled)
            .min(FIRST_READ_RETRY_MAX);
        let again = move || {
            tick.try_update(|t| *t += 1);
        };
        if let Ok(handle) = set_timeout_with_handle(again, wait) {
            on_cleanup(move || handle.clear());
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use leptos::prelude::*;

    use super::{reasons, ExecuteProgress, Wizard, EXECUTE_ENDED, EXECUTE_RUNNING};
    use crate::domain::restore::{GateFailure, RestorePreview, RestoreSource};
    use crate::domain::RunStatus;

    const SOURCE: RestoreSource = RestoreSource::BackupSet(7);
    const TENANT: &str = "Contoso";

    fn wizard() -> Wizard {
        Wizard {
            tenant: Memo::new(|_| "tenant".to_owned()),
            source: SOURCE,
            selected: RwSignal::new(BTreeSet::new()),
            include_assignments: RwSignal::new(false),
            include_scope_tags: RwSignal::new(false),
            refused: None,
            preview_id: Memo::new(|_| Some(1)),
        }
    }

    fn preview(not_executable: Option<GateFailure>) -> RestorePreview {
        RestorePreview {
            run_id: 1,
            status: RunStatus::Completed,
            finished_at: None,
            source: SOURCE,
            include_assignments: false,
            include_scope_tags: false,
            run_block: None,
            items: Vec::new(),
            not_executable,
            expires_in_ms: Some(60_000),
            tenant_name: TENANT.to_owned(),
            execute_run: Some(2),
        }
    }

    /// Execute's reasons for a preview refused with `failure`, the confirmations given (signals
    /// need an owner, which a page has and a test makes).
    fn reasons_for(failure: GateFailure, busy: bool) -> Vec<String> {
        reasons_after(failure, ExecuteProgress { busy, ended: false })
    }

    /// Execute's reasons for a preview refused with `failure`, its execute at `progress`.
    fn reasons_after(failure: GateFailure, progress: ExecuteProgress) -> Vec<String> {
        Owner::new().with(|| {
            reasons(
                wizard(),
                Some(&preview(Some(failure))),
                false,
                true,
                TENANT,
                TENANT,
                progress,
            )
        })
    }

    /// While the wizard follows its execute, what the preview read says of that execute (done,
    /// stopped with no write, still settling) is not shown beside "running": the run is.
    /// Once it is no longer busy, the server's reason is the one shown.
    #[test]
    fn while_its_execute_runs_only_running_is_said_of_it() {
        let spent = [
            GateFailure::AlreadyExecuted,
            GateFailure::ExecuteStoppedUnwritten,
            GateFailure::ExecuteSettling,
        ];
        for failure in spent {
            assert_eq!(
                reasons_for(failure.clone(), true),
                [EXECUTE_RUNNING],
                "{failure:?}"
            );
            assert_eq!(
                reasons_for(failure.clone(), false),
                [failure.message()],
                "{failure:?}"
            );
        }
        // Any other refusal still shows beside it.
        let other = GateFailure::PreviewExpired;
        assert_eq!(
            reasons_for(other.clone(), true),
            [EXECUTE_RUNNING.to_owned(), other.message()]
        );
    }

    /// A preview read while its execute was still settling, which step 5 has seen end since:
    /// "wait until it has stopped" no longer holds, and the preview read again will say how it
    /// ended. The other answers of that read still stand.
    #[test]
    fn a_settling_execute_seen_to_end_says_ended() {
        let ended = ExecuteProgress {
            busy: false,
            ended: true,
        };
        assert_eq!(
            reasons_after(GateFailure::ExecuteSettling, ended),
            [EXECUTE_ENDED]
        );
        let executed = GateFailure::AlreadyExecuted;
        assert_eq!(reasons_after(executed.clone(), ended), [executed.message()]);
    }
}
