//! The run panel of a backup set page: its active and recent runs with status, a progress bar
//! and counts. It polls while a run is active (slower in a hidden tab), stops when none is, and
//! announces each run that finishes with a toast.

use std::collections::HashMap;

use leptos::prelude::*;

use super::poll::{use_poll, PollState, PollTrouble};
use super::{
    or_absent, use_toasts, CancelRunButton, ErrorMessage, Loading, RetryRunButton, RunStatusBadge,
};
use crate::api::runs::{backup_set_runs, backup_set_runs_version};
use crate::domain::{routes, RunStatus, RunSummary};
use crate::domain::{Capability, Role};
use crate::pages::tenant_layout::{current_role, refusal_of};

/// What a succeeded item of the run did ("added", "checked").
fn done_word(run: &RunSummary) -> &'static str {
    run.operation_type.done_word()
}

/// The "Finished: …" text of a run that has ended.
fn finished_text(run: &RunSummary) -> String {
    let ended = match run.status {
        RunStatus::Cancelled => format!("Cancelled: run #{}", run.id),
        status => format!("Finished: run #{} {}", run.id, status.label()),
    };
    format!(
        "{ended} — {} {}, {} failed, {} skipped",
        run.succeeded,
        done_word(run),
        run.failed,
        run.skipped
    )
}

/// The runs of `list` that ended since the panel's last list, `seen` (`None`: this is the
/// first, and nothing has newly ended): those seen active then, and those new to the panel and
/// already ended, since a quick run can end before the first poll after its submit sees it.
fn newly_ended<'a>(
    seen: Option<&HashMap<i64, RunStatus>>,
    list: &'a [RunSummary],
) -> Vec<&'a RunSummary> {
    let Some(seen) = seen else { return Vec::new() };
    list.iter()
        .filter(|run| !run.status.is_active())
        .filter(|run| seen.get(&run.id).is_none_or(|before| before.is_active()))
        .collect()
}

/// Active and recent runs of one backup set. `refresh` changes when a run was just submitted;
/// `finished` is bumped when a run the panel watched has ended (so the page reloads its items).
#[component]
pub fn RunPanel(
    tenant: Memo<String>,
    backup_set_id: i64,
    #[prop(into)] refresh: Signal<usize>,
    finished: RwSignal<u64>,
) -> impl IntoView {
    let toasts = use_toasts();
    let tick = RwSignal::new(0_u64);
    // A poll asks for the version of the panel's runs first (one small read) and fetches the
    // runs only when it moved; a submit (`refresh`) always fetches.
    let last = StoredValue::new(None::<((usize, String), Vec<RunSummary>)>);
    let runs = Resource::new(
        move || (tenant.get(), refresh.get(), tick.get()),
        move |(tenant, refresh, tick)| async move {
            if tick == 0 {
                return backup_set_runs(tenant, backup_set_id).await;
            }
            let version = (
                refresh,
                backup_set_runs_version(tenant.clone(), backup_set_id).await?,
            );
            let unchanged = last.with_value(|last| match last {
                Some((seen, list)) if *seen == version => Some(list.clone()),
                _ => None,
            });
            if let Some(list) = unchanged {
                return Ok(list);
            }
            let list = backup_set_runs(tenant, backup_set_id).await?;
            last.set_value(Some((version, list.clone())));
            Ok(list)
        },
    );
    // Status of each run at the last poll (`None` before the first list).
    let seen = StoredValue::new(None::<HashMap<i64, RunStatus>>);

    // Effects only run in the browser: a run that ended since the last poll gets its toast.
    Effect::new(move |_| {
        let Some(Ok(list)) = runs.get() else {
            return;
        };
        let ended = seen.with_value(|seen| newly_ended(seen.as_ref(), &list));
        for run in &ended {
            let href = routes::run(&tenant.get_untracked(), run.id, "");
            toasts.push(finished_text(run), Some(href));
        }
        seen.set_value(Some(list.iter().map(|run| (run.id, run.status)).collect()));
        if !ended.is_empty() {
            finished.update(|n| *n += 1);
        }
    });
    let failures = use_poll(tick, move || {
        runs.with(|runs| {
            PollState::of(runs.as_ref(), |list| {
                list.iter().any(|run| run.status.is_active())
            })
        })
    });
    // The list last shown: a poll that failed keeps it (with a quiet note) until one succeeds.
    let shown = StoredValue::new(None::<Vec<RunSummary>>);
    // Whether each run's "Cancel run?" is open, outside the polled part (which is rebuilt at
    // every poll), so an open confirmation survives the next poll.
    let owner = StoredValue::new(Owner::current().unwrap_or_default());
    let confirming = StoredValue::new(HashMap::<i64, RwSignal<bool>>::new());
    let confirming_for = move |run_id: i64| {
        if let Some(open) = confirming.with_value(|open| open.get(&run_id).copied()) {
            return open;
        }
        let open = owner.with_value(|owner| owner.with(|| RwSignal::new(false)));
        confirming.update_value(|all| {
            all.insert(run_id, open);
        });
        open
    };

    view! {
        <section class="run-panel" aria-labelledby="run-panel-title" data-testid="run-panel">
            <h2 id="run-panel-title">"Runs of this set"</h2>
            <Transition fallback=|| view! { <Loading what="runs" /> }>
                {move || Suspend::new(async move {
                    let read = match runs.await {
                        Ok(list) => {
                            shown.set_value(Some(list.clone()));
                            Ok(list)
                        }
                        Err(error) => shown.get_value().ok_or(error),
                    };
                    match read {
                        Ok(list) if list.is_empty() => view! {
                            <p class="muted">"No runs yet. Add policies to start one."</p>
                        }.into_any(),
                        Ok(list) => {
                            let refused = Refusals { role: current_role().await };
                            view! {
                                <ul class="run-list">
                                    {list.into_iter().map(|run| {
                                        let confirming = confirming_for(run.id);
                                        view! { <RunRow tenant run refused tick confirming /> }
                                    }).collect_view()}
                                </ul>
                            }.into_any()
                        }
                        Err(error) => view! { <ErrorMessage error /> }.into_any(),
                    }
                })}
            </Transition>
            <PollTrouble failures />
        </section>
    }
}

/// The member's role here, which decides per run whether Cancel and Retry are refused.
#[derive(Clone, Copy)]
struct Refusals {
    role: Option<Role>,
}

impl Refusals {
    /// Why the member may not do what `capability` allows (`None`: allowed).
    fn refusal(self, capability: Capability) -> Option<&'static str> {
        refusal_of(self.role, capability)
    }

    /// Cancelling a run takes the capability that starts it (a restore needs a manager).
    fn cancel(self, run: &RunSummary) -> Option<&'static str> {
        self.refusal(run.operation_type.cancel_capability())
    }
}

/// One run: link, badge, progress bar, counts, a Graph wait, and its Cancel or Retry action.
#[component]
fn RunRow(
    tenant: Memo<String>,
    run: RunSummary,
    refused: Refusals,
    tick: RwSignal<u64>,
    confirming: RwSignal<bool>,
) -> impl IntoView {
    let reload = move || tick.update(|n| *n += 1);
    let cancel = run.status.is_active().then(|| {
        view! { <CancelRunButton tenant=tenant.get_untracked() run_id=run.id refused=refused.cancel(&run) on_cancelled=reload confirming /> }
    });
    let failed = run.retry_items();
    let retry = (failed > 0).then(|| {
        let label = format!("Retry {failed} failed");
        view! {
            <RetryRunButton
                tenant=tenant.get_untracked()
                run_id=run.id
                label
                refused=refused.refusal(Capability::StartRuns)
                on_queued=move |_: i64| reload()
            />
        }
    });
    let wait = run.graph_wait.map(|wait| {
        view! {
            <span class="graph-wait" role="status" data-testid="graph-wait">{wait.text()}</span>
        }
    });
    let href = routes::run(&tenant.get_untracked(), run.id, "");
    let label = format!("Progress of run #{}", run.id);
    view! {
        <li class="run-row" data-testid="run-row" data-status=run.status.as_str()>
            <a href=href class="mono">"Run #" {run.id}</a>
            <RunStatusBadge status=run.status />
            <progress
                max=run.total_items.max(1)
                value=run.processed_items
                aria-label=label
            ></progress>
            <span class="run-counts">
                {run.processed_items} " / " {run.total_items} " processed · "
                {run.succeeded} " " {done_word(&run)} " · " {run.failed} " failed · " {run.skipped} " skipped"
            </span>
            <span class="muted small">{or_absent(run.initiated_by)} " · " {run.created_at.to_string()}</span>
            {wait}
            {cancel}
            {retry}
        </li>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::run::{OperationType, StoredOperation};
    use crate::domain::Timestamp;

    fn run(id: i64, status: RunStatus) -> RunSummary {
        RunSummary {
            id,
            operation_type: StoredOperation::Known(OperationType::AddPolicies),
            status,
            initiated_by: None,
            total_items: 2,
            processed_items: 2,
            succeeded: 2,
            failed: 0,
            skipped: 0,
            created_at: Timestamp(0),
            graph_wait: None,
        }
    }

    fn ids(ended: Vec<&RunSummary>) -> Vec<i64> {
        ended.iter().map(|run| run.id).collect()
    }

    #[test]
    fn the_first_list_announces_nothing() {
        let list = [run(1, RunStatus::Completed), run(2, RunStatus::Running)];
        assert!(newly_ended(None, &list).is_empty());
    }

    #[test]
    fn a_run_seen_active_and_now_ended_is_announced_once() {
        let seen = HashMap::from([(1, RunStatus::Running), (2, RunStatus::Completed)]);
        let list = [run(1, RunStatus::Completed), run(2, RunStatus::Completed)];
        assert_eq!(ids(newly_ended(Some(&seen), &list)), [1]);
        let seen = HashMap::from([(1, RunStatus::Completed), (2, RunStatus::Completed)]);
        assert!(newly_ended(Some(&seen), &list).is_empty());
    }

    #[test]
    fn a_new_run_that_ended_before_the_panel_saw_it_is_announced() {
        let seen = HashMap::from([(1, RunStatus::Completed)]);
        let list = [
            run(3, RunStatus::Cancelled),
            run(2, RunStatus::Pending),
            run(1, RunStatus::Completed),
        ];
        assert_eq!(ids(newly_ended(Some(&seen), &list)), [3]);
        // An empty panel counts as seen: its first run, already ended, is announced.
        assert_eq!(ids(newly_ended(Some(&HashMap::new()), &list)), [3, 1]);
    }
}
