//! The run panel of a backup set page: its active and recent runs with status, a progress bar
//! and counts. It polls while a run is not settled (active, or cancelled while what was in
//! flight is still recorded; slower in a hidden tab), stops when every run is (or when the
//! member may no longer read them), and announces each run once it has settled, with a toast.
//! Each run is a row kept by its id: a poll updates the rows in place and never rebuilds them, so
//! an open "Cancel run?", a cancel on its way and the keyboard focus survive it.

use std::collections::HashMap;
use std::future::IntoFuture;

use leptos::prelude::*;
use leptos::reactive::computed::ScopedFuture;

use super::poll::{use_poll, PollState, PollTrouble};
use super::{
    or_absent, use_toasts, CancelRunButton, ErrorMessage, Loading, RetryRunButton, RunStatusBadge,
};
use crate::api::runs::{backup_set_runs, backup_set_runs_version, CancelRun, RetryFailed};
use crate::domain::run::OperationType;
use crate::domain::run_detail::counted_down;
use crate::domain::{routes, AppError, RunStatus, RunSummary};
use crate::domain::{Capability, Role};
use crate::pages::run_detail::browser_now_ms;
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

/// The counts of a run's row: "3 / 20 processed · 2 added · 1 failed · 0 skipped".
fn counts_text(run: &RunSummary) -> String {
    format!(
        "{} / {} processed · {} {} · {} failed · {} skipped",
        run.processed_items,
        run.total_items,
        run.succeeded,
        done_word(run),
        run.failed,
        run.skipped
    )
}

/// The runs of `list` that settled since the panel's last list, `seen` (whether each run was
/// settled then; `None`: this is the first, and nothing has newly ended): those seen unsettled
/// then, and a run `submitted` from this page (or retried from the panel) if it is new to the
/// panel and already
/// settled, since a quick run can end before the first poll after its submit sees it. A run
/// started elsewhere (another tab, the page's drift check) that the panel never saw active is
/// not announced: it ended before the panel knew of it, maybe long ago. A cancelled run is
/// announced once its last outcomes are in, so its toast counts them and the page reloads its
/// items after them.
fn newly_ended<'a>(
    seen: Option<&HashMap<i64, bool>>,
    list: &'a [RunSummary],
    submitted: &[i64],
) -> Vec<&'a RunSummary> {
    let Some(seen) = seen else { return Vec::new() };
    list.iter()
        .filter(|run| run.settled)
        .filter(|run| match seen.get(&run.id) {
            Some(settled) => !settled,
            None => submitted.contains(&run.id),
        })
        .collect()
}

/// One read of the panel's runs.
type RunsRead = Result<Vec<RunSummary>, AppError>;

/// The panel's last list read in full: the (refresh, version of the set's runs) it was read at,
/// the list, and when it was read (ms).
type KeptList = Option<((usize, String), Vec<RunSummary>, f64)>;

/// One read of the set's runs for the panel: the whole list at first (`tick` 0) and after a
/// submit; else the version of the set's runs first, and the list only when it moved since
/// `last` (a kept list's Graph waits are counted down by the time since it was read).
async fn read_runs(
    tenant: String,
    backup_set_id: i64,
    refresh: usize,
    tick: u64,
    last: StoredValue<KeptList>,
) -> RunsRead {
    if tick == 0 {
        return backup_set_runs(tenant, backup_set_id).await;
    }
    let version = (
        refresh,
        backup_set_runs_version(tenant.clone(), backup_set_id).await?,
    );
    let unchanged = last.with_value(|last| match last {
        Some((seen, list, read_at)) if *seen == version => {
            let elapsed = (browser_now_ms() - read_at) as i64;
            let mut list = list.clone();
            for run in &mut list {
                run.graph_wait = run.graph_wait.map(|wait| counted_down(wait, elapsed));
            }
            Some(list)
        }
        _ => None,
    });
    if let Some(list) = unchanged {
        return Ok(list);
    }
    let list = backup_set_runs(tenant, backup_set_id).await?;
    last.set_value(Some((version, list.clone(), browser_now_ms())));
    Ok(list)
}

/// Active and recent runs of one backup set. `refresh` changes when a run of the set was just
/// submitted or ended on the page (the panel reads its runs again, and keeps trying until a read
/// works); `submitted` is the run last submitted from the panel's page (announced even if it
/// ended before the panel saw it); `finished` is bumped when a run the panel watched has ended
/// (so the page reloads its items). Runs of `reported_elsewhere` (the page's own starter for
/// them says when they end) get no toast from the panel.
#[component]
pub fn RunPanel(
    tenant: Memo<String>,
    backup_set_id: i64,
    #[prop(into)] refresh: Signal<usize>,
    #[prop(into)] submitted: Signal<Option<i64>>,
    finished: RwSignal<u64>,
    #[prop(optional)] reported_elsewhere: Option<OperationType>,
) -> impl IntoView {
    let toasts = use_toasts();
    let tick = RwSignal::new(0_u64);
    // The runs retried from the panel: like a submit, each is announced even if it ended
    // before the panel saw it, and the panel reads its runs again at once.
    let retried = RwSignal::new(Vec::<i64>::new());
    let refresh = Signal::derive(move || refresh.get() + retried.with(Vec::len));
    // A poll asks for the version of the panel's runs first (one small read) and fetches the
    // runs only when it moved; a submit (`refresh`) always fetches. A kept list's Graph waits
    // are counted down by the time since it was read (the version does not move with them).
    let last = StoredValue::<KeptList>::new(None);
    // The `refresh` of the last read that worked: until one after a submit works, a failed read
    // is tried again (the list before does not show the run just submitted).
    let answered = StoredValue::new(refresh.get_untracked());
    let runs = Resource::new(
        move || (tenant.get(), refresh.get(), tick.get()),
        move |(tenant, refresh, tick)| async move {
            let read = read_runs(tenant, backup_set_id, refresh, tick, last).await;
            if read.is_ok() {
                answered.set_value(refresh);
            }
            read
        },
    );
    // Whether each run was settled at the last poll (`None` before the first list).
    let seen = StoredValue::new(None::<HashMap<i64, bool>>);
    let controls = Controls::new();

    // Effects only run in the browser: a run that ended since the last poll gets its toast,
    // unless the member cancelled it here (its Cancel says so, once), and the controls of runs
    // no longer listed go.
    Effect::new(move |_| {
        let Some(Ok(list)) = runs.get() else {
            return;
        };
        controls.keep_listed(&list);
        let mut submitted_here = retried.get_untracked();
        submitted_here.extend(submitted.get_untracked());
        let ended = seen.with_value(|seen| newly_ended(seen.as_ref(), &list, &submitted_here));
        let ended: Vec<_> = ended
            .into_iter()
            .filter(|run| {
                reported_elsewhere.is_none() || run.operation_type.known() != reported_elsewhere
            })
            .collect();
        for run in &ended {
            if run.status == RunStatus::Cancelled && controls.cancelled_here(run.id) {
                continue;
            }
            let href = routes::run(&tenant.get_untracked(), run.id, "");
            toasts.push(finished_text(run), Some(href));
        }
        seen.set_value(Some(list.iter().map(|run| (run.id, run.settled)).collect()));
        if !ended.is_empty() {
            finished.update(|n| *n += 1);
        }
    });
    let failures = use_poll(tick, move || {
        let state = runs
            .with(|runs| PollState::of(runs.as_ref(), |list| list.iter().any(|run| !run.settled)));
        match state {
            PollState::Failed if answered.get_value() != refresh.get_untracked() => {
                PollState::FailedAfterChange
            }
            state => state,
        }
    });
    // Each answer of the polls, in the browser (the server renders the first one).
    let polled = RwSignal::new(None::<RunsRead>);
    Effect::new(move |_| {
        if let Some(read) = runs.get() {
            polled.set(Some(read));
        }
    });

    view! {
        <section class="run-panel" aria-labelledby="run-panel-title" data-testid="run-panel">
            <h2 id="run-panel-title">"Runs of this set"</h2>
            <Transition fallback=|| view! { <Loading what="runs" /> }>
                {move || Suspend::new(async move {
                    // The first list (the server renders it), awaited without following the
                    // polls: the list follows them itself, row by row.
                    let first = ScopedFuture::new_untracked(runs.into_future()).await;
                    let refused = Refusals { role: current_role().await };
                    view! { <RunList tenant first polled refused tick controls retried /> }
                })}
            </Transition>
            <PollTrouble failures />
        </section>
    }
}

/// What the panel shows.
#[derive(Clone, PartialEq)]
enum Showing {
    NoRuns,
    Runs,
    Failed(AppError),
}

/// The panel's list: the `first` read, then each `polled` one. A poll that failed for a passing
/// reason keeps the list before (the panel says quietly that it could not refresh); one refused
/// for good (the member was removed, or signed out) drops it for the error.
#[component]
fn RunList(
    tenant: Memo<String>,
    first: RunsRead,
    polled: RwSignal<Option<RunsRead>>,
    refused: Refusals,
    tick: RwSignal<u64>,
    controls: Controls,
    retried: RwSignal<Vec<i64>>,
) -> impl IntoView {
    let shown = Memo::new(move |before: Option<&RunsRead>| {
        let read = polled.get().unwrap_or_else(|| first.clone());
        let before = before.and_then(|before| before.as_ref().ok().cloned());
        read.or_else(|error| error.or_kept(before))
    });
    let showing = Memo::new(move |_| {
        shown.with(|shown| match shown {
            Ok(list) if list.is_empty() => Showing::NoRuns,
            Ok(_) => Showing::Runs,
            Err(error) => Showing::Failed(error.clone()),
        })
    });
    let list = Memo::new(move |_| shown.with(|shown| shown.clone().unwrap_or_default()));
    move || match showing.get() {
        Showing::NoRuns => view! {
            <p class="muted">"No runs yet. Add policies to start one."</p>
        }
        .into_any(),
        Showing::Runs => view! {
            <ul class="run-list">
                <For
                    each=move || list.get()
                    key=|run| run.id
                    children=move |run: RunSummary| {
                        let controls = controls.of(run.id);
                        view! { <RunRow tenant run list refused tick controls retried /> }
                    }
                />
            </ul>
        }
        .into_any(),
        Showing::Failed(error) => view! { <ErrorMessage error /> }.into_any(),
    }
}

/// What the panel keeps of one run outside its row: whether its "Cancel run?" is open, and its
/// cancel and retry actions, so none of them is lost if the row is drawn again.
#[derive(Clone, Copy)]
struct RunControls {
    confirming: RwSignal<bool>,
    cancel: ServerAction<CancelRun>,
    retry: ServerAction<RetryFailed>,
}

/// The [`RunControls`] of each run the panel has shown, made in the panel's own scope (which
/// lives as long as the panel) the first time a run is shown.
#[derive(Clone, Copy)]
struct Controls {
    owner: StoredValue<Owner>,
    by_run: StoredValue<HashMap<i64, RunControls>>,
}

impl Controls {
    fn new() -> Self {
        Self {
            owner: StoredValue::new(Owner::current().unwrap_or_default()),
            by_run: StoredValue::new(HashMap::new()),
        }
    }

    /// The controls of run `run_id`.
    fn of(self, run_id: i64) -> RunControls {
        if let Some(controls) = self.by_run.with_value(|all| all.get(&run_id).copied()) {
            return controls;
        }
        let controls = self.owner.with_value(|owner| {
            owner.with(|| RunControls {
                confirming: RwSignal::new(false),
                cancel: ServerAction::new(),
                retry: ServerAction::new(),
            })
        });
        self.by_run.update_value(|all| {
            all.insert(run_id, controls);
        });
        controls
    }

    /// Whether run `run_id` was cancelled from this panel: its cancel is on its way (a poll may
    /// see the run cancelled before the answer arrives) or was accepted.
    fn cancelled_here(self, run_id: i64) -> bool {
        self.by_run
            .with_value(|all| all.get(&run_id).copied())
            .is_some_and(|controls| {
                controls.cancel.pending().get_untracked()
                    || matches!(controls.cancel.value().get_untracked(), Some(Ok(_)))
            })
    }

    /// Forgets the controls of runs not in `list` (they left the panel), except those whose
    /// cancel or retry is still on its way, so the panel keeps one per run it shows.
    fn keep_listed(self, list: &[RunSummary]) {
        self.by_run.update_value(|all| {
            keep_listed(all, list, |controls| {
                controls.cancel.pending().get_untracked()
                    || controls.retry.pending().get_untracked()
            });
        });
    }
}

/// Keeps in `all` the entries of runs in `list` and those `busy` says are still needed.
fn keep_listed<T>(all: &mut HashMap<i64, T>, list: &[RunSummary], busy: impl Fn(&T) -> bool) {
    all.retain(|run_id, entry| list.iter().any(|run| run.id == *run_id) || busy(entry));
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
/// Made once per run; what changes follows `list` (the panel's last list).
#[component]
fn RunRow(
    tenant: Memo<String>,
    run: RunSummary,
    list: Memo<Vec<RunSummary>>,
    refused: Refusals,
    tick: RwSignal<u64>,
    controls: RunControls,
    retried: RwSignal<Vec<i64>>,
) -> impl IntoView {
    let id = run.id;
    let cancel_refused = refused.cancel(&run);
    let started = format!(
        "{} · {}",
        or_absent(run.initiated_by.clone()),
        run.created_at
    );
    // The run as the last list has it; a run that left the list keeps its last state until its
    // row goes.
    let run = Memo::new(move |before: Option<&RunSummary>| {
        list.with(|list| list.iter().find(|run| run.id == id).cloned())
            .or_else(|| before.cloned())
            .unwrap_or_else(|| run.clone())
    });
    let status = Memo::new(move |_| run.with(|run| run.status));
    let retry_items = Memo::new(move |_| run.with(RunSummary::retry_items));
    let reload = move || tick.update(|n| *n += 1);
    let retry = move || {
        let failed = retry_items.get();
        (failed > 0).then(|| {
            view! {
                <RetryRunButton
                    tenant=tenant.get_untracked()
                    run_id=id
                    label=format!("Retry {failed} failed")
                    refused=refused.refusal(Capability::StartRuns)
                    retry=controls.retry
                    on_queued=move |run_id: i64| retried.update(|runs| runs.push(run_id))
                />
            }
        })
    };
    let wait = move || {
        run.with(|run| run.graph_wait).map(|wait| {
            view! {
                <span class="graph-wait" role="status" data-testid="graph-wait">{wait.text()}</span>
            }
        })
    };
    let href = routes::run(&tenant.get_untracked(), id, "");
    let label = format!("Progress of run #{id}");
    let run_link = NodeRef::<leptos::html::A>::new();
    view! {
        <li class="run-row" data-testid="run-row" data-status=move || status.get().as_str()>
            <a href=href class="mono" node_ref=run_link>"Run #" {id}</a>
            {move || view! { <RunStatusBadge status=status.get() /> }}
            <progress
                max=move || run.with(|run| run.total_items.max(1))
                value=move || run.with(|run| run.processed_items)
                aria-label=label
            ></progress>
            <span class="run-counts">{move || run.with(counts_text)}</span>
            <span class="muted small">{started}</span>
            {wait}
            <CancelRunButton
                tenant=tenant.get_untracked()
                run_id=id
                active=Signal::derive(move || status.get().is_active())
                refused=cancel_refused
                cancel=controls.cancel
                confirming=controls.confirming
                on_cancelled=reload
                focus_when_ended=run_link
            />
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
            settled: !status.is_active(),
        }
    }

    fn ids(ended: Vec<&RunSummary>) -> Vec<i64> {
        ended.iter().map(|run| run.id).collect()
    }

    #[test]
    fn the_first_list_announces_nothing() {
        let list = [run(1, RunStatus::Completed), run(2, RunStatus::Running)];
        assert!(newly_ended(None, &list, &[]).is_empty());
    }

    #[test]
    fn a_run_seen_active_and_now_ended_is_announced_once() {
        let seen = HashMap::from([(1, false), (2, true)]);
        let list = [run(1, RunStatus::Completed), run(2, RunStatus::Completed)];
        assert_eq!(ids(newly_ended(Some(&seen), &list, &[])), [1]);
        let seen = HashMap::from([(1, true), (2, true)]);
        assert!(newly_ended(Some(&seen), &list, &[]).is_empty());
    }

    /// A cancelled run whose claim still records what was in flight is not announced (nor the
    /// page's items reloaded) until it has settled: the toast counts its last outcomes.
    #[test]
    fn a_cancelled_run_is_announced_once_settled() {
        let seen = HashMap::from([(1, false)]);
        let mut cancelled = run(1, RunStatus::Cancelled);
        cancelled.settled = false;
        assert!(newly_ended(Some(&seen), std::slice::from_ref(&cancelled), &[]).is_empty());
        cancelled.settled = true;
        assert_eq!(ids(newly_ended(Some(&seen), &[cancelled], &[])), [1]);
    }

    #[test]
    fn the_submitted_run_that_ended_before_the_panel_saw_it_is_announced() {
        let seen = HashMap::from([(1, true)]);
        let list = [
            run(3, RunStatus::Cancelled),
            run(2, RunStatus::Pending),
            run(1, RunStatus::Completed),
        ];
        assert_eq!(ids(newly_ended(Some(&seen), &list, &[3])), [3]);
        // An empty panel counts as seen: its first run, already ended, is announced.
        let list = [run(1, RunStatus::Completed)];
        assert_eq!(ids(newly_ended(Some(&HashMap::new()), &list, &[1])), [1]);
    }

    /// A run started elsewhere (the drift check, another tab) that ended before the panel saw
    /// it is not announced when the panel reads again later (after a submit, say).
    #[test]
    fn a_run_started_elsewhere_that_ended_unseen_is_not_announced() {
        let seen = HashMap::from([(1, true)]);
        let list = [run(3, RunStatus::Completed), run(1, RunStatus::Completed)];
        assert!(newly_ended(Some(&seen), &list, &[]).is_empty());
        let list = [
            run(4, RunStatus::Running),
            run(3, RunStatus::Completed),
            run(1, RunStatus::Completed),
        ];
        assert!(newly_ended(Some(&seen), &list, &[4]).is_empty());
        // Seen active, it is announced once ended, wherever it was started.
        let seen = HashMap::from([(3, false), (1, true)]);
        assert_eq!(ids(newly_ended(Some(&seen), &list, &[4])), [3]);
    }

    #[test]
    fn controls_of_runs_no_longer_listed_go_unless_busy() {
        // Per run: whether its cancel or retry is on its way.
        let mut all = HashMap::from([(1, false), (2, false), (3, true), (4, false)]);
        let list = [run(4, RunStatus::Running), run(2, RunStatus::Completed)];
        keep_listed(&mut all, &list, |busy| *busy);
        let mut kept: Vec<i64> = all.into_keys().collect();
        kept.sort_unstable();
        assert_eq!(kept, [2, 3, 4]);
    }
}
