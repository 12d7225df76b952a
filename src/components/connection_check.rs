//! **Check connection** and the tenant's last check, for the tenant's settings page: the outcome
//! in plain words, each missing permission by its exact name with the features it blocks, the
//! policy types Graph refused (403), and what Entra ID said when it refused a token. It polls
//! while a check is queued or running, and stops when it ends, or when a poll is refused for
//! good (then it shows why instead of the last status).

use leptos::prelude::*;

use super::poll::{use_poll, LastRead, PollState, PollTrouble};
use super::{Column, DataTable, ErrorMessage, Loading, NeedsRole, ToastQueue};
use crate::api::connection::{get_connection_check, CheckConnection};
use crate::domain::connection::{
    ConnectionCheck as LastCheck, ConnectionReport, ConnectionStatus, TypeStatus,
};
use crate::domain::{routes, AppError, Capability};
use crate::pages::tenant_layout::refusal;

/// The check button and the last check's report. `on_checked` runs when a check this page saw
/// queued or running has ended (so other parts of the page can read the tenant again).
#[component]
pub fn ConnectionCheck(
    tenant: Memo<String>,
    #[prop(optional, into)] on_checked: Option<Callback<()>>,
) -> impl IntoView {
    let tick = RwSignal::new(0_u64);
    let start = ServerAction::<CheckConnection>::new();
    // The start version the status last read was asked at: a read asked before the started
    // check was queued says nothing of how that check ended (see `started_run`). A failed
    // read leaves it, as the page keeps showing the status read before, and the poll tries
    // again while it is behind the start (see `status_poll`).
    let read_at = StoredValue::new(0_usize);
    let status = Resource::new(
        move || (tenant.get(), tick.get(), start.version().get()),
        move |(tenant, _, version)| async move {
            let read = get_connection_check(tenant).await;
            if read.is_ok() {
                read_at.set_value(version);
            }
            read
        },
    );
    let failures = use_poll(tick, move || {
        let version = start.version().get_untracked();
        status.with(|status| status_poll(status.as_ref(), read_at.get_value(), version))
    });
    // The status last shown: a poll that failed keeps it (with a quiet note) until one works.
    let shown = LastRead::<ConnectionStatus>::new();
    // A check seen queued or running that has now ended, or the one this page started that
    // ended before a poll saw it running: say how it went, once (run ids grow, so the last
    // one reported is the newest). Effects only run in the browser.
    let watched = StoredValue::new(None::<i64>);
    let reported = StoredValue::new(None::<i64>);
    Effect::new(move |_| {
        let Some(Ok(current)) = status.get() else {
            return;
        };
        let was = watched.get_value();
        watched.set_value(current.active_run);
        let ended = match (was, current.active_run) {
            (Some(run_id), None) => Some(run_id),
            (None, None) => started_run(start, read_at),
            _ => None,
        };
        if let Some(run_id) = ended.filter(|run_id| reported.get_value() < Some(*run_id)) {
            reported.set_value(Some(run_id));
            if let Some(toasts) = use_context::<ToastQueue>() {
                let href = routes::run(&tenant.get_untracked(), run_id, "");
                toasts.push(ended_message(run_id, current.last.as_ref()), Some(href));
            }
            if let Some(on_checked) = on_checked {
                on_checked.run(());
            }
        }
    });

    view! {
        <section
            class="connection-check"
            aria-labelledby="connection-check-title"
            data-testid="connection-check"
        >
            <h2 id="connection-check-title">"Connection to Microsoft Graph"</h2>
            <Transition fallback=|| view! { <Loading what="the last connection check" /> }>
                {move || Suspend::new(async move {
                    let refused = refusal(Capability::CheckConnection).await;
                    // As the run page: a passing failure keeps what was shown, one that ends
                    // polling (signed out, no longer a member) drops it for the error, or the
                    // page would say "Checking…" for good.
                    let read = shown.shown(status.await, |_| true);
                    match read {
                        Ok(current) => view! {
                            <CheckButton start tenant refused active=current.active_run />
                            <UnfinishedCheck
                                tenant
                                unfinished=unfinished(started_run(start, read_at), &current)
                            />
                            <LastCheckReport tenant last=current.last />
                        }
                        .into_any(),
                        Err(error) => view! { <ErrorMessage error /> }.into_any(),
                    }
                })}
            </Transition>
            <PollTrouble failures />
            {move || {
                start
                    .value()
                    .get()
                    .and_then(Result::err)
                    .map(|error| view! { <ErrorMessage error /> })
            }}
        </section>
    }
}

/// How the status poll sees `read`, asked at start version `version` when the last status read
/// was asked at `read_at`: a read that failed for a passing reason after a check was started,
/// before any read told how that check went, is retried ([`PollState::FailedAfterChange`]) even
/// though the status read before it was settled, or the page would never see the check end.
fn status_poll(
    read: Option<&Result<ConnectionStatus, AppError>>,
    read_at: usize,
    version: usize,
) -> PollState {
    match PollState::of(read, |status| status.active_run.is_some()) {
        PollState::Failed if read_at != version => PollState::FailedAfterChange,
        state => state,
    }
}

/// The check this page started, once the status read last was asked after it was queued:
/// `None` before a start, and while the status shown is older than the start.
fn started_run(start: ServerAction<CheckConnection>, read_at: StoredValue<usize>) -> Option<i64> {
    if read_at.get_value() != start.version().get_untracked() {
        return None;
    }
    start
        .value()
        .get_untracked()
        .and_then(Result::ok)
        .map(|run| run.run_id)
}

/// A check this page started that ended without leaving its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Unfinished {
    run_id: i64,
    /// Whether an earlier check's report stands below it (none on a tenant never checked,
    /// whose first check was cancelled or could not finish).
    earlier_report: bool,
}

impl Unfinished {
    /// The note's words after the run's link: the report below is named only when there is one.
    fn rest_of_note(self) -> &'static str {
        if self.earlier_report {
            ") did not finish, so it proved nothing; the report below is the last completed check."
        } else {
            ") did not finish, so it proved nothing."
        }
    }
}

/// `started`, when it has ended without leaving its report: it is no longer queued or running
/// and the tenant's last check is older (a check that could not finish leaves a standing
/// failure on authentication as the last check), or there is none.
fn unfinished(started: Option<i64>, current: &ConnectionStatus) -> Option<Unfinished> {
    let started = started?;
    let last_run = current.last.as_ref().and_then(|last| last.run_id);
    (current.active_run != Some(started) && last_run < Some(started)).then_some(Unfinished {
        run_id: started,
        earlier_report: current.last.is_some(),
    })
}

/// What the toast says of check `run_id` that has ended, given the tenant's last check: its
/// outcome when the report is its own, otherwise that it did not finish and what the last
/// completed check found, so an older report is never told as this check's outcome.
fn ended_message(run_id: i64, last: Option<&LastCheck>) -> String {
    let Some(last) = last else {
        return "Connection check: did not finish".to_owned();
    };
    let outcome = last.report.outcome.label();
    match last.run_id {
        Some(own) if own == run_id => format!("Connection check: {outcome}"),
        Some(later) if later > run_id => {
            format!(
                "Connection check: run #{run_id} ended; a later check (run #{later}): {outcome}"
            )
        }
        Some(older) => format!(
            "Connection check: did not finish. The last completed check (run #{older}): {outcome}"
        ),
        None => format!("Connection check: did not finish. The last completed check: {outcome}"),
    }
}

/// Above the last check's report: the check this page started ended without a report of its
/// own, so the report below (if any) is an earlier check's, not its outcome.
#[component]
fn UnfinishedCheck(tenant: Memo<String>, unfinished: Option<Unfinished>) -> impl IntoView {
    unfinished.map(|unfinished| {
        let run_id = unfinished.run_id;
        let href = routes::run(&tenant.get_untracked(), run_id, "");
        view! {
            <p class="notice" role="status" data-testid="check-unfinished">
                "The check you started (" <a href=href>"run #" {run_id}</a>
                {unfinished.rest_of_note()}
            </p>
        }
    })
}

/// "Check connection": disabled with the reason for a role that may not, and while a check is
/// queued or running (which it then names).
#[component]
fn CheckButton(
    start: ServerAction<CheckConnection>,
    tenant: Memo<String>,
    refused: Option<&'static str>,
    active: Option<i64>,
) -> impl IntoView {
    const NEEDS_ID: &str = "check-connection-needs";
    let busy = move || start.pending().get() || active.is_some();
    let running = active.map(|run_id| {
        let href = routes::run(&tenant.get_untracked(), run_id, "");
        view! {
            <span class="muted" role="status" data-testid="check-running">
                "Checking… " <a href=href>"run #" {run_id}</a>
            </span>
        }
    });
    view! {
        <div class="action-row">
            <button
                type="button"
                class="primary"
                data-testid="check-connection"
                class:refused=refused.is_some()
                disabled=move || refused.is_some() || busy()
                aria-describedby=refused.map(|_| NEEDS_ID)
                on:click=move |_| {
                    start.dispatch(CheckConnection { tenant: tenant.get_untracked() });
                }
            >
                "Check connection"
            </button>
            {refused.map(|reason| view! { <NeedsRole id=NEEDS_ID reason /> })}
            {running}
        </div>
    }
}

/// The last check, or a note that there was none.
#[component]
fn LastCheckReport(tenant: Memo<String>, last: Option<LastCheck>) -> impl IntoView {
    let Some(last) = last else {
        return view! {
            <p class="muted" data-testid="never-checked">
                "Never checked. A check proves that the client secret works and names every \
                 permission the app is missing; check before the first sync."
            </p>
        }
        .into_any();
    };
    let outcome = last.report.outcome;
    let run_link = last.run_id.map(|run_id| {
        let href = routes::run(&tenant.get_untracked(), run_id, "");
        view! { " · " <a href=href>"run #" {run_id}</a> }
    });
    view! {
        <div class="check-report" data-testid="check-report" data-outcome=outcome.as_str()>
            <p>
                <span class=format!("badge check-{}", outcome.as_str()) data-testid="check-outcome">
                    {outcome.label()}
                </span>
                " Checked " {last.checked_at.to_string()} {run_link}
            </p>
            <p class="check-summary" data-testid="check-summary">{last.report.summary.clone()}</p>
            <ReportDetails report=last.report />
        </div>
    }
    .into_any()
}

const MISSING_COLUMNS: &[Column] = &[Column::text("Missing permission"), Column::text("Blocks")];
const TYPE_COLUMNS: &[Column] = &[Column::text("Policy type"), Column::text("Graph answered")];

/// What Entra ID said, the missing permissions, each policy type, and what was granted.
#[component]
fn ReportDetails(report: ConnectionReport) -> impl IntoView {
    let token = report.token.map(|refusal| {
        let code = refusal.code.map(|code| format!("AADSTS{code}"));
        let error = refusal.error.unwrap_or_default();
        view! {
            <p class="small" data-testid="token-error">
                "Entra ID refused the token (HTTP " {refusal.status} "): "
                <span class="mono">{error}</span> " " <span class="mono">{code}</span>
            </p>
        }
    });
    let missing = (!report.missing.is_empty()).then(|| {
        view! {
            <h3 id="missing-permissions-title">"Missing permissions"</h3>
            <DataTable
                columns=MISSING_COLUMNS
                testid="missing-permissions"
                labelled_by="missing-permissions-title"
            >
                {report
                    .missing
                    .iter()
                    .map(|permission| {
                        let blocks = permission
                            .blocks()
                            .iter()
                            .map(|feature| feature.label())
                            .collect::<Vec<_>>()
                            .join(", ");
                        view! {
                            <tr>
                                <td class="mono">{permission.name()}</td>
                                <td>{blocks}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </DataTable>
        }
    });
    let types = (!report.types.is_empty()).then(|| {
        view! {
            <h3 id="policy-types-title">"Policy types"</h3>
            <DataTable columns=TYPE_COLUMNS testid="policy-type-checks" labelled_by="policy-types-title">
                {report
                    .types
                    .into_iter()
                    .map(|check| {
                        let (class, words) = match check.status {
                            TypeStatus::Readable => ("outcome outcome-succeeded", "Readable".to_owned()),
                            TypeStatus::Forbidden => ("outcome outcome-failed", "Refused (403)".to_owned()),
                            TypeStatus::Failed => (
                                "outcome outcome-skipped",
                                check.detail.clone().unwrap_or_else(|| "Failed".to_owned()),
                            ),
                        };
                        view! {
                            <tr data-testid="policy-type-check" data-status=format!("{:?}", check.status).to_lowercase()>
                                <td>{check.policy_type.label()}</td>
                                <td class=class>{words}</td>
                            </tr>
                        }
                    })
                    .collect_view()}
            </DataTable>
        }
    });
    let granted = report.granted.map(|granted| {
        let names = if granted.is_empty() {
            "none".to_owned()
        } else {
            granted.join(", ")
        };
        view! {
            <p class="small muted" data-testid="granted-permissions">
                "Application permissions in the token: " <span class="mono">{names}</span>
            </p>
        }
    });
    view! { {token} {missing} {types} {granted} }
}

/// Above every tenant page: a tenant never checked is asked to be checked, and a tenant whose
/// last check failed on authentication says that its runs are refused and what to do. Nothing
/// otherwise. `changed` makes it read the tenant again (a page that checked or changed it).
#[component]
pub fn ConnectionBanner(
    tenant: Memo<String>,
    #[prop(optional, into)] changed: Option<Signal<u64>>,
) -> impl IntoView {
    let tick = RwSignal::new(0_u64);
    let status = Resource::new(
        move || (tenant.get(), changed.map(|c| c.get()), tick.get()),
        |(tenant, _, _)| get_connection_check(tenant),
    );
    use_poll(tick, move || {
        status.with(|status| PollState::of(status.as_ref(), |s| s.active_run.is_some()))
    });
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let current = status.await.ok()?;
                match current.last {
                    None if current.active_run.is_some() => None,
                    None => Some(view! {
                        <p class="notice connection-banner" role="status" data-testid="connection-banner" data-kind="never-checked">
                            "This tenant has never been checked — check its connection on the \
                             tenant's settings page before its first sync."
                        </p>
                    }.into_any()),
                    Some(last) if last.report.outcome.blocks_runs() => Some(view! {
                        <p class="error-message connection-banner" role="alert" data-testid="connection-banner" data-kind="auth-failed">
                            "Authentication failed at the last check (" {last.checked_at.to_string()} "): "
                            {last.report.summary} " Runs cannot start until a check passes: check \
                             the connection on the tenant's settings page after fixing the secret."
                        </p>
                    }.into_any()),
                    Some(_) => None,
                }
            })}
        </Transition>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::connection::CheckOutcome;
    use crate::domain::Timestamp;

    fn check(run_id: i64, outcome: CheckOutcome) -> LastCheck {
        LastCheck {
            run_id: Some(run_id),
            checked_at: Timestamp(0),
            report: ConnectionReport {
                outcome,
                summary: String::new(),
                token: None,
                granted: None,
                missing: Vec::new(),
                types: Vec::new(),
            },
        }
    }

    #[test]
    fn a_check_is_told_by_its_own_report_only() {
        let failed = check(7, CheckOutcome::AuthFailed);
        assert_eq!(
            ended_message(7, Some(&failed)),
            "Connection check: Authentication failed"
        );
        // Check 9 could not finish: the standing report is check 7's.
        let told = ended_message(9, Some(&failed));
        assert_eq!(
            told,
            "Connection check: did not finish. The last completed check (run #7): \
             Authentication failed"
        );
        assert!(!told.starts_with("Connection check: Authentication failed"));
        assert_eq!(ended_message(9, None), "Connection check: did not finish");
        assert_eq!(
            ended_message(5, Some(&check(7, CheckOutcome::Ok))),
            "Connection check: run #5 ended; a later check (run #7): Connected"
        );
    }

    #[test]
    fn a_started_check_is_unfinished_once_it_ended_without_its_report() {
        let status = |active_run, last: Option<i64>| ConnectionStatus {
            last: last.map(|run_id| check(run_id, CheckOutcome::AuthFailed)),
            active_run,
        };
        let ended = |earlier_report| {
            Some(Unfinished {
                run_id: 9,
                earlier_report,
            })
        };
        assert_eq!(unfinished(Some(9), &status(None, Some(7))), ended(true));
        // A tenant never checked whose first check was cancelled: no report stands below.
        assert_eq!(unfinished(Some(9), &status(None, None)), ended(false));
        assert_eq!(unfinished(Some(9), &status(Some(9), Some(7))), None);
        assert_eq!(unfinished(Some(9), &status(None, Some(9))), None);
        assert_eq!(unfinished(Some(9), &status(None, Some(11))), None);
        assert_eq!(unfinished(None, &status(None, Some(7))), None);
    }

    #[test]
    fn an_unfinished_check_names_the_report_below_only_when_there_is_one() {
        let note = |earlier_report| {
            let unfinished = Unfinished {
                run_id: 9,
                earlier_report,
            };
            format!("The check you started (run #9{}", unfinished.rest_of_note())
        };
        assert_eq!(
            note(true),
            "The check you started (run #9) did not finish, so it proved nothing; the report \
             below is the last completed check."
        );
        assert_eq!(
            note(false),
            "The check you started (run #9) did not finish, so it proved nothing."
        );
    }

    #[test]
    fn a_failed_read_after_a_start_keeps_polling_until_a_read_tells_how_it_went() {
        let settled: Result<ConnectionStatus, AppError> = Ok(ConnectionStatus {
            last: None,
            active_run: None,
        });
        let dropped: Result<ConnectionStatus, AppError> = Err(AppError::Transport("reset".into()));
        // Started (version 1) after a settled status read at version 0: the first read after
        // the start failed, so nothing told how the check went yet.
        assert_eq!(
            status_poll(Some(&dropped), 0, 1),
            PollState::FailedAfterChange
        );
        // As before otherwise: a failure with nothing started since the last read, answers,
        // and refusals for good.
        assert_eq!(status_poll(Some(&dropped), 1, 1), PollState::Failed);
        assert_eq!(status_poll(Some(&dropped), 0, 0), PollState::Failed);
        assert_eq!(status_poll(Some(&settled), 0, 1), PollState::Settled);
        assert_eq!(status_poll(None, 0, 1), PollState::Unknown);
        let refused: Result<ConnectionStatus, AppError> = Err(AppError::Unauthorized);
        assert_eq!(status_poll(Some(&refused), 0, 1), PollState::Settled);
    }
}
