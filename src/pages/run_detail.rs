//! `/t/{tenant}/runs/{id}`: one run with its status, initiator, times, counters and its items,
//! a page at a time (`?outcome=failed&page=3`).

use std::future::IntoFuture;

use leptos::prelude::*;
use leptos::reactive::computed::ScopedFuture;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

mod restore;
mod retry;

use restore::{RestoreActionCell, RestoreRunLink};
use retry::RetryOfLink;

use super::policy::id_param;
use super::tenant_layout::{current_role, refusal_of, use_tenant};
use super::{query_page, query_param};
use crate::api::runs::{get_run, run_version, CancelRun, RetryFailed};
use crate::components::{
    or_absent, provide_toasts, use_poll_while, CancelRunButton, Column, DataTable, EmptyState,
    ErrorMessage, Loading, PollTrouble, RetryRunButton, RunStatusBadge, Toasts,
};
use crate::domain::graph_wait::GraphFigures;
use crate::domain::routes;
use crate::domain::run::OperationType;
use crate::domain::run_detail::{
    counted_down, format_duration, group_thousands, ItemFilter, ItemOutcome, RunDetail,
    RunItemPage, RunItemRow, RunTarget, RUN_ITEMS_PAGE_SIZE,
};
use crate::domain::versions::Drift;
use crate::domain::{AppError, Capability, Role};

/// What the run detail page last showed: the run, its filter and page, and the run's version.
#[derive(Debug, Clone, PartialEq)]
struct LastView {
    id: i64,
    outcome: String,
    page: i64,
    version: String,
}

/// The URL of one page (one-based) of a run's items with an outcome filter (empty for all).
fn items_href(tenant: &str, run_id: i64, outcome: &str, page: i64) -> String {
    let mut query = Vec::new();
    if !outcome.is_empty() {
        query.push(format!("outcome={outcome}"));
    }
    if page > 1 {
        query.push(format!("page={page}"));
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    routes::run(tenant, run_id, &query)
}

/// The run detail page; it polls the counters and the shown page until the run is settled
/// (queued, running, or cancelled while what was in flight is still recorded), and stops,
/// dropping what it showed, when a poll is refused for good (the member was removed, or signed
/// out; the run is gone). The outcome filter and the page are in the URL, so
/// a view can be linked.
#[component]
pub fn RunDetailPage() -> impl IntoView {
    let tenant = use_tenant();
    // A missing page number means the first page; a hand-mangled one shows why it is refused,
    // unless the run does not exist (read after it, the id sets the page's status last).
    let page = query_page();
    let id = id_param("id");
    let outcome = query_param("outcome");
    let tick = RwSignal::new(0_u64);
    // The cancel action says it was accepted in a toast.
    provide_toasts();
    let run = polled_run(tenant, id, outcome, page, tick);
    // Another outcome starts again at the first page; Back returns to the previous view.
    let navigate = use_navigate();
    let show_outcome = move |value: String| {
        if let Some(id) = id.get_untracked() {
            navigate(
                &items_href(&tenant.get_untracked(), id, &value, 1),
                NavigateOptions {
                    scroll: false,
                    ..Default::default()
                },
            );
        }
    };
    // A failed poll is tried again later, while the run last read was not settled (a cancelled
    // run still takes the outcomes that were in flight, and a restore's summary); one refused
    // for good is not.
    let failures = use_poll_while(tick, move || {
        run.with(|run| {
            run.as_ref().map(|run| {
                run.as_ref()
                    .map(|detail| !detail.settled)
                    .map_err(Clone::clone)
            })
        })
    });
    // Each answer of the polls, in the browser (the server renders the first one).
    let polled = RwSignal::new(None::<Result<RunDetail, AppError>>);
    Effect::new(move |_| {
        if let Some(read) = run.get() {
            polled.set(Some(read));
        }
    });
    // The view last shown: a poll of the same view that failed for a passing reason keeps it
    // (with a quiet note) until one succeeds; another view (outcome, page) that fails, or a poll
    // refused for good, shows why.
    let shown = StoredValue::new(None::<((i64, String, i64), RunDetail)>);
    let view_now = move || {
        let page = page.get_untracked().ok()?;
        Some((id.get_untracked()?, outcome.get_untracked(), page))
    };
    let shown_or = move |read: Result<RunDetail, AppError>| match (read, view_now()) {
        (Ok(detail), now) => {
            shown.set_value(now.map(|now| (now, detail.clone())));
            Ok(detail)
        }
        (Err(error), now) => {
            let kept = shown.with_value(|shown| match (shown, now) {
                (Some((seen, detail)), Some(now)) if *seen == now => Some(detail.clone()),
                _ => None,
            });
            if error.ends_polling() {
                shown.set_value(None);
            }
            error.or_kept(kept)
        }
    };
    // A run that compares captures (drift check, capture now) can also be filtered by result;
    // the items can be downloaded unless the run may no longer be read. An effect reads the run
    // (in the browser, once it has arrived), so hydration matches.
    let compares = RwSignal::new(false);
    let refused_for_good = RwSignal::new(false);
    Effect::new(move |_| {
        let (captures, ended_polling) = run.with(|run| match run {
            Some(Ok(detail)) => (
                detail
                    .operation_type
                    .known()
                    .is_some_and(OperationType::compares_captures),
                false,
            ),
            Some(Err(error)) => (false, error.ends_polling()),
            None => (false, false),
        });
        compares.set(captures);
        refused_for_good.set(ended_polling);
    });

    view! {
        <Title text="Run" />
        <p class="breadcrumb">
            <a href=move || routes::runs(&tenant.get(), "")>"← Runs"</a>
        </p>
        <Toasts />
        <Transition fallback=|| view! { <Loading what="the run" /> }>
            {move || Suspend::new(async move {
                match shown_or(run.await) {
                    Ok(detail) => view! { <RunFacts tenant=tenant.get_untracked() detail /> }.into_any(),
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                // The first answer (the server renders it), awaited without following the
                // polls: the actions follow them themselves, and are drawn again only when what
                // they offer changes, never for counters.
                let first = ScopedFuture::new_untracked(run.into_future()).await;
                let role = current_role().await;
                view! { <RunActionArea first polled id role tick /> }
            })}
        </Transition>
        <PollTrouble failures />
        <h2 id="items-title">"Items"</h2>
        <div class="action-row">
            <OutcomeFilter outcome compares on_change=show_outcome />
            {move || id.get().filter(|_| !refused_for_good.get()).map(|id| view! { <CsvLink tenant=tenant.get() id outcome=outcome.get() /> })}
        </div>
        <Transition fallback=|| view! { <Loading what="the items" /> }>
            {move || Suspend::new(async move {
                let Ok(detail) = shown_or(run.await) else {
                    // The error is already shown above.
                    return ().into_any();
                };
                let filter = outcome.get_untracked();
                if detail.items.rows.is_empty() {
                    let title = if filter.is_empty() { "No items" } else { "No items with this outcome" };
                    return view! { <EmptyState title hint="Choose another outcome to see more." /> }.into_any();
                }
                view! {
                    <ItemPager tenant=tenant.get_untracked() run_id=detail.id filter items=detail.items.clone() />
                    <RunItemsTable rows=detail.items.rows done_word=detail.operation_type.done_word() />
                }.into_any()
            })}
        </Transition>
    }
}

/// The actions of the run the page shows: the `first` answer, then each `polled` one. A poll
/// that failed for a passing reason keeps the run before; one refused for good takes them away.
#[component]
fn RunActionArea(
    first: Result<RunDetail, AppError>,
    polled: RwSignal<Option<Result<RunDetail, AppError>>>,
    id: Memo<Option<i64>>,
    role: Option<Role>,
    tick: RwSignal<u64>,
) -> impl IntoView {
    let detail = Memo::new(move |before: Option<&Option<RunDetail>>| {
        polled.with(|polled| match polled.as_ref().unwrap_or(&first) {
            Ok(detail) => Some(detail.clone()),
            Err(error) => {
                let before = before
                    .cloned()
                    .flatten()
                    .filter(|detail| Some(detail.id) == id.get_untracked());
                error.clone().or_kept(before).ok()
            }
        })
    });
    // Whoever may start such a run may cancel it.
    let offered = Memo::new(move |_| {
        detail.with(|detail| {
            detail
                .as_ref()
                .map(|detail| (detail.id, detail.operation_type.cancel_capability()))
        })
    });
    move || {
        offered.get().map(|(run_id, cancel_needs)| {
            view! { <RunActions run_id cancel_needs role detail tick /> }
        })
    }
}

/// Cancel and Retry of run `run_id`, made once per run the page shows, with the run's actions
/// and its open confirmation: `detail` (the run as last read) says which to offer, so polls that
/// move the counters leave them in place, with a cancel or retry on its way.
#[component]
fn RunActions(
    run_id: i64,
    cancel_needs: Capability,
    role: Option<Role>,
    detail: Memo<Option<RunDetail>>,
    tick: RwSignal<u64>,
) -> impl IntoView {
    let tenant = use_tenant().get_untracked();
    let cancel = ServerAction::<CancelRun>::new();
    let retry = ServerAction::<RetryFailed>::new();
    let confirming = RwSignal::new(false);
    let active = Signal::derive(move || {
        detail.with(|detail| {
            detail
                .as_ref()
                .is_some_and(|detail| detail.id == run_id && detail.status.is_active())
        })
    });
    let retry_label = Memo::new(move |_| {
        detail.with(|detail| {
            detail
                .as_ref()
                .filter(|detail| detail.id == run_id)
                .and_then(RunDetail::retry_label)
        })
    });
    let reload = move || tick.update(|n| *n += 1);
    let retry_button = {
        let tenant = tenant.clone();
        move || {
            retry_label.get().map(|label| {
                view! {
                    <RetryRunButton
                        tenant=tenant.clone()
                        run_id
                        label
                        refused=refusal_of(role, Capability::StartRuns)
                        retry
                        on_queued=move |_: i64| reload()
                    />
                }
            })
        }
    };
    view! {
        <CancelRunButton
            tenant
            run_id
            active
            refused=refusal_of(role, cancel_needs)
            cancel
            confirming
            on_cancelled=reload
        />
        {retry_button}
    }
}

/// The run with one page of its items, read again each `tick`: the last answer with the run's
/// version when it was read is kept, so a poll first asks for the version (one indexed read)
/// and fetches the run and its item page only when it moved. A kept answer's Graph wait is
/// counted down by the time since it was read (the version does not move with it).
fn polled_run(
    tenant: Memo<String>,
    id: Memo<Option<i64>>,
    outcome: Memo<String>,
    page: Memo<Result<i64, AppError>>,
    tick: RwSignal<u64>,
) -> Resource<Result<RunDetail, AppError>> {
    let last = StoredValue::new(None::<(LastView, RunDetail, f64)>);
    Resource::new(
        move || {
            (
                tenant.get(),
                id.get(),
                outcome.get(),
                page.get(),
                tick.get(),
            )
        },
        move |(tenant, id, outcome, page, tick)| async move {
            let Some(id) = id else {
                return Err(AppError::NotFound(
                    "This run does not exist in this tenant.".into(),
                ));
            };
            let page = page?;
            let offset = (page - 1).saturating_mul(RUN_ITEMS_PAGE_SIZE);
            // The first load (also on the server) reads the run at once.
            let version = if tick == 0 {
                String::new()
            } else {
                run_version(tenant.clone(), id).await?
            };
            let view = LastView {
                id,
                outcome: outcome.clone(),
                page,
                version,
            };
            if tick > 0 {
                let unchanged = last.with_value(|last| match last {
                    Some((seen, detail, read_at)) if *seen == view => {
                        let mut detail = detail.clone();
                        let elapsed = (browser_now_ms() - read_at) as i64;
                        detail.graph_wait =
                            detail.graph_wait.map(|wait| counted_down(wait, elapsed));
                        Some(detail)
                    }
                    _ => None,
                });
                if let Some(detail) = unchanged {
                    return Ok(detail);
                }
            }
            let detail = get_run(tenant, id, outcome, offset, RUN_ITEMS_PAGE_SIZE).await?;
            if tick > 0 {
                last.set_value(Some((view, detail.clone(), browser_now_ms())));
            }
            Ok(detail)
        },
    )
}

/// The browser's clock, in milliseconds: what a kept answer's wait is counted down by. Only
/// polls ask it (`tick > 0`), and only the browser polls.
pub(crate) fn browser_now_ms() -> f64 {
    leptos::web_sys::js_sys::Date::now()
}

/// "Download CSV" of the run's items with the filter shown (an outcome, or a capture's result).
#[component]
fn CsvLink(tenant: String, id: i64, outcome: String) -> impl IntoView {
    let csv_filter = ItemFilter::parse(&outcome).map_or("", ItemFilter::as_str);
    let href = routes::run_items_csv(&tenant, id, csv_filter);
    // `download` and `rel="external"`: the browser fetches the file, the router does not try
    // to render it as a page.
    view! {
        <a href=href download rel="external" data-testid="download-csv">
            "Download CSV"
        </a>
    }
}

/// The run's heading, status, failure, times and counters.
#[component]
fn RunFacts(tenant: String, detail: RunDetail) -> impl IntoView {
    let target_link = match detail.target.clone() {
        RunTarget::BackupSet {
            id,
            name: Some(name),
        } => {
            let href = routes::backup_set(&tenant, id);
            view! { " on " <a href=href data-testid="backup-set-link">{name}</a> }.into_any()
        }
        RunTarget::BackupSet { name: None, .. } => {
            view! { " on " <span class="muted">"a deleted backup set"</span> }.into_any()
        }
        RunTarget::Policy {
            id,
            name: Some(name),
        } => {
            let href = routes::policy(&tenant, id);
            view! { " of " <a href=href data-testid="policy-link">{name}</a> }.into_any()
        }
        RunTarget::Policy { name: None, .. } => {
            view! { " of " <span class="muted">"a policy no longer in the inventory"</span> }
                .into_any()
        }
        RunTarget::Tenant => ().into_any(),
    };
    let summary = detail.summary.clone().map(|summary| {
        view! { <p class="run-summary" data-testid="run-summary">{summary}</p> }
    });
    // What a succeeded item did, in the words of the run's operation ("Added", "Checked").
    let done_label = capitalized(detail.operation_type.done_word());
    let run_failure = detail.reason_code.map(|code| {
        let message = detail.failure_message.clone().unwrap_or_default();
        view! {
            <p class="error-message" role="alert">
                <span class="mono">{code.as_str()}</span> " — " {code.label()}
                {(!message.is_empty()).then(|| format!(": {message}"))}
            </p>
        }
    });
    let initiated_by = detail.initiated_by.clone();
    let run_link = |id: i64| {
        let href = routes::run(&tenant, id, "");
        view! { <a href=href class="mono">"run #" {id}</a> }
    };
    let parent_status = detail.retry_of_status;
    let retry_of = detail
        .retry_of
        .map(|parent| view! { <RetryOfLink tenant=tenant.clone() parent parent_status /> });
    let retried_by = (!detail.retried_by.is_empty()).then(|| {
        view! {
            <p data-testid="retried-by">
                "Retried by "
                {detail.retried_by.iter().enumerate().map(|(i, id)| view! {
                    {(i > 0).then_some(", ")}
                    {run_link(*id)}
                }).collect_view()}
            </p>
        }
    });
    let wait = detail.graph_wait.map(|wait| {
        view! {
            <p class="graph-wait" role="status" data-testid="graph-wait">{wait.text()}</p>
        }
    });
    let figures = detail.graph;
    let restore = detail
        .restore
        .map(|restore| view! { <RestoreRunLink tenant=tenant.clone() run_id=detail.id restore /> });
    view! {
        <h1>"Run #" {detail.id}</h1>
        <p>
            <span data-testid="run-status"><RunStatusBadge status=detail.status /></span>
            " " {detail.operation_type.label().to_owned()} {target_link}
        </p>
        {summary}
        {restore}
        {run_failure}
        {retry_of}
        {retried_by}
        {wait}
        <dl class="facts">
            <dt>"Started by"</dt>
            <dd>{or_absent(initiated_by)}</dd>
            <dt>"Queued"</dt>
            <dd>{detail.created_at.to_string()}</dd>
            <dt>"Started"</dt>
            <dd>{or_absent(detail.started_at)}</dd>
            <dt>"Finished"</dt>
            <dd>{or_absent(detail.finished_at)}</dd>
            <dt>"Duration"</dt>
            <dd>{or_absent(detail.duration())}</dd>
        </dl>
        <progress max=detail.total_items.max(1) value=detail.processed_items aria-label="Progress"></progress>
        <dl class="facts counters" data-testid="run-counters">
            <dt>"Processed"</dt>
            <dd data-testid="processed">{detail.processed_items} " / " {detail.total_items}</dd>
            <dt>{done_label}</dt>
            <dd data-testid="succeeded">{detail.succeeded}</dd>
            <dt>"Failed"</dt>
            <dd data-testid="failed">{detail.failed}</dd>
            <dt>"Skipped"</dt>
            <dd data-testid="skipped">{detail.skipped}</dd>
        </dl>
        <GraphFiguresList figures />
    }
}

/// The run's conversation with Microsoft Graph, once it has had one.
#[component]
fn GraphFiguresList(figures: GraphFigures) -> impl IntoView {
    (figures.requests > 0).then(|| {
        view! {
            <h2 id="graph-title">"Microsoft Graph"</h2>
            <dl class="facts counters" aria-labelledby="graph-title" data-testid="graph-figures">
                <dt>"Requests"</dt>
                <dd data-testid="graph-requests">{group_thousands(figures.requests)}</dd>
                <dt>"Throttled (429)"</dt>
                <dd data-testid="graph-throttled">{group_thousands(figures.throttled)}</dd>
                <dt>"Server errors (5xx)"</dt>
                <dd data-testid="graph-server-errors">{group_thousands(figures.server_errors)}</dd>
                <dt>"Retries"</dt>
                <dd data-testid="graph-retries">{group_thousands(figures.retries)}</dd>
                <dt>"Time waiting"</dt>
                <dd data-testid="graph-waited">{format_duration(figures.waited_ms)}</dd>
            </dl>
        }
    })
}

/// The outcome filter of the items; it follows the URL (`outcome` is the URL's value, empty for
/// any), with `prop:selected` so it follows Back and Forward too.
#[component]
fn OutcomeFilter(
    outcome: Memo<String>,
    compares: RwSignal<bool>,
    on_change: impl Fn(String) + 'static,
) -> impl IntoView {
    let option = move |value: &'static str, label: &'static str| {
        view! {
            <option
                value=value
                selected=move || outcome.get() == value
                prop:selected=move || outcome.get() == value
            >
                {label}
            </option>
        }
    };
    view! {
        <label class="outcome-filter">
            "Show items "
            <select on:change=move |ev| on_change(event_target_value(&ev))>
                <option
                    value=""
                    selected=move || outcome.get().is_empty()
                    prop:selected=move || outcome.get().is_empty()
                >
                    "with any outcome"
                </option>
                {ItemOutcome::ALL
                    .into_iter()
                    .map(|o| option(o.as_str(), o.label()))
                    .collect_view()}
                {move || compares.get().then(|| {
                    [Drift::Changed, Drift::Deleted, Drift::Unchanged]
                        .into_iter()
                        .map(|d| option(d.as_str(), d.label()))
                        .collect_view()
                })}
            </select>
        </label>
    }
}

/// Previous / next links around the range shown ("101–200 of 5,000"), only when there is more
/// than one page.
#[component]
fn ItemPager(tenant: String, run_id: i64, filter: String, items: RunItemPage) -> impl IntoView {
    let limit = items.limit.max(1);
    let page_link = move |offset: Option<i64>, label: &'static str, rel: &'static str| match offset
    {
        Some(offset) => {
            let href = items_href(&tenant, run_id, &filter, offset / limit + 1);
            view! { <a href=href rel=rel data-noscroll>{label}</a> }.into_any()
        }
        None => view! { <span class="pager-off" aria-disabled="true">{label}</span> }.into_any(),
    };
    let several = items.offset > 0 || items.total > items.limit;
    let previous = several.then(|| page_link(items.previous_offset(), "← Previous", "prev"));
    let next = several.then(|| page_link(items.next_offset(), "Next →", "next"));
    view! {
        <nav class="pager" aria-label="Item pages">
            {previous}
            <span data-testid="items-range">{items.range_text()}</span>
            {next}
        </nav>
    }
}

const ITEM_COLUMNS: &[Column] = &[
    Column::text("Policy"),
    Column::text("Type"),
    Column::text("Outcome"),
    Column::text("Reason"),
    Column::text("Message"),
];

/// The columns of a capturing run's items: what each capture found, with a link to its diff.
const RESULT_COLUMNS: &[Column] = &[
    Column::text("Policy"),
    Column::text("Type"),
    Column::text("Outcome"),
    Column::text("Result"),
    Column::text("Reason"),
    Column::text("Message"),
];

/// The columns of a restore run's items: the plan or action, and the live state or evidence
/// compared with the backup.
const RESTORE_COLUMNS: &[Column] = &[
    Column::text("Policy"),
    Column::text("Type"),
    Column::text("Outcome"),
    Column::text("Action"),
    Column::text("Compared with the backup"),
    Column::text("Reason"),
    Column::text("Message"),
];

/// One page of a run's items; a capturing run's have a result column, a restore run's an
/// action column too.
#[component]
fn RunItemsTable(
    rows: Vec<RunItemRow>,
    /// What the run's operation did to a succeeded item ("previewed", "restored").
    done_word: &'static str,
) -> impl IntoView {
    let done = capitalized(done_word);
    let tenant = use_tenant().get_untracked();
    let with_restore = rows.iter().any(|item| item.restore.is_some());
    let with_results = with_restore || rows.iter().any(|item| item.result.is_some());
    let columns = match (with_restore, with_results) {
        (true, _) => RESTORE_COLUMNS,
        (false, true) => RESULT_COLUMNS,
        (false, false) => ITEM_COLUMNS,
    };
    view! {
        <DataTable columns testid="run-items" labelled_by="items-title">
            {rows
                .into_iter()
                .map(|item| {
                    let result = with_results.then(|| {
                        let cell = item.result.map(|result| {
                            let diff = result.diff_versions().map(|(from, to)| {
                                let href = routes::policy_diff(&tenant, item.policy_id, from, to);
                                view! { " · " <a href=href data-testid="item-diff">"View diff"</a> }
                            });
                            view! {
                                <span class=format!("drift drift-{}", result.drift.as_str())>{result.text()}</span>
                                {diff}
                            }
                        });
                        view! { <td data-testid="item-result">{cell}</td> }
                    });
                    view! {
                        <tr>
                            <td>
                                <a href=routes::policy(&tenant, item.policy_id)>{item.policy_name}</a>
                            </td>
                            <td>{item.policy_type.label()}</td>
                            <td>
                                <span class=format!("outcome outcome-{}", item.outcome.as_str())>
                                    {match item.outcome {
                                        ItemOutcome::Succeeded => done.clone(),
                                        outcome => outcome.label().to_owned(),
                                    }}
                                </span>
                            </td>
                            {with_restore.then(|| view! { <RestoreActionCell outcome=item.outcome restore=item.restore /> })}
                            {result}
                            <td>
                                {item.reason_code.map(|code| view! {
                                    <span class="mono" title=code.label()>{code.as_str()}</span>
                                })}
                            </td>
                            <td>{item.message}</td>
                        </tr>
                    }
                })
                .collect_view()}
        </DataTable>
    }
}

/// The word with its first letter in upper case.
fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}
