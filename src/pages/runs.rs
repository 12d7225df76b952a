//! `/t/{tenant}/runs`: the operations monitor, filtered by status and operation type.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

use super::tenant_layout::use_tenant;
use super::{query_before, query_param};
use crate::api::runs::list_runs;
use crate::components::{
    or_absent, Column, DataTable, EmptyState, ErrorMessage, KeysetPager, Loading, RunStatusBadge,
};
use crate::domain::routes;
use crate::domain::run::{OperationType, RunFilter, StatusFilter};

/// Every run of the tenant, newest first. The filters live in the URL
/// (`?status=failed&type=backup_set.add_policies`), so a filtered view can be linked and
/// reloaded; the server parses them, and an unknown value shows its error.
#[component]
pub fn RunsPage() -> impl IntoView {
    let tenant = use_tenant();
    let status = query_param("status");
    let operation_type = query_param("type");
    // Older pages: `?before=<run id>`, the oldest run of the page before (0 = the newest).
    let before = query_before();
    let runs = Resource::new(
        move || {
            (
                tenant.get(),
                status.get(),
                operation_type.get(),
                before.get(),
            )
        },
        |(tenant, status, operation_type, before)| async move {
            list_runs(tenant, status, operation_type, before?).await
        },
    );

    view! {
        <Title text="Runs" />
        <h1>"Runs"</h1>
        <RunFilters tenant status operation_type />
        <Transition fallback=|| view! { <Loading what="runs" /> }>
            {move || Suspend::new(async move {
                let filtered = !status.get_untracked().is_empty()
                    || !operation_type.get_untracked().is_empty();
                // The current filters' page of runs older than `before`, or the newest.
                let link = move |before: Option<i64>| {
                    runs_href(
                        &tenant.get_untracked(),
                        &status.get_untracked(),
                        &operation_type.get_untracked(),
                        before,
                    )
                };
                // On an older page (`before`) the way back to the newest runs.
                let newest = (before.get_untracked() != Ok(0)).then(|| link(None));
                match runs.await {
                    // An older page can be empty while the newer ones are not: its runs
                    // left the filter meanwhile (a running run ended), or the URL was typed.
                    Ok(page) if page.runs.is_empty() && newest.is_some() => view! {
                        <EmptyState
                            title=if filtered {
                                "No older runs match these filters"
                            } else {
                                "No older runs"
                            }
                            hint="The runs are on the newer pages."
                        />
                        <KeysetPager
                            label="Pages of runs"
                            newest
                            older=None
                            words=PAGER_WORDS
                        />
                    }.into_any(),
                    Ok(page) if page.runs.is_empty() && filtered => view! {
                        <EmptyState
                            title="No runs match these filters"
                            hint="Choose another status or operation, or clear the filters."
                        />
                    }.into_any(),
                    Ok(page) if page.runs.is_empty() => view! {
                        <EmptyState
                            title="No runs yet"
                            hint="Runs appear here when policies are added to a backup set."
                        />
                    }.into_any(),
                    Ok(page) => {
                        let older = page.next_before.map(|id| link(Some(id)));
                        view! {
                        <DataTable columns=RUN_COLUMNS testid="runs-table">
                                {page.runs.into_iter().map(|run| view! {
                                    <tr>
                                        <td class="mono">
                                            <a href=routes::run(&tenant.get_untracked(), run.id, "")>"#" {run.id}</a>
                                        </td>
                                        <td>{run.operation_label().to_owned()}</td>
                                        <td><RunStatusBadge status=run.status /></td>
                                        <td class="num">{run.processed_items} " / " {run.total_items}</td>
                                        <td>{or_absent(run.initiated_by)}</td>
                                        <td>{run.created_at.to_string()}</td>
                                    </tr>
                                }).collect_view()}
                        </DataTable>
                        <KeysetPager
                            label="Pages of runs"
                            newest
                            older
                            words=PAGER_WORDS
                        />
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The filter bar: a select for the status and one for the operation type, and **Clear filters**
/// while either is set. `status` and `operation_type` are the URL's values.
#[component]
fn RunFilters(
    tenant: Memo<String>,
    status: Memo<String>,
    operation_type: Memo<String>,
) -> impl IntoView {
    // A changed filter is a new URL (so Back returns to the previous view); the page keeps
    // its scroll position.
    let navigate = use_navigate();
    let show = Callback::new(move |(status, operation_type): (String, String)| {
        navigate(
            &runs_href(&tenant.get_untracked(), &status, &operation_type, None),
            NavigateOptions {
                scroll: false,
                ..Default::default()
            },
        );
    });
    let status_choices = StatusFilter::ALL
        .into_iter()
        .map(|filter| (filter.as_param(), filter.label()))
        .collect();
    let type_choices = OperationType::ALL
        .into_iter()
        .map(|operation| (operation.as_str(), operation.label()))
        .collect();
    view! {
        <div class="run-filters" role="search" aria-label="Filter runs">
            <FilterSelect
                label="Status"
                all="All statuses"
                test_id="status-filter"
                current=status
                choices=status_choices
                on_pick=Callback::new(move |picked| show.run((picked, operation_type.get_untracked())))
            />
            <FilterSelect
                label="Operation"
                all="All operations"
                test_id="type-filter"
                current=operation_type
                choices=type_choices
                on_pick=Callback::new(move |picked| show.run((status.get_untracked(), picked)))
            />
            <Show when=move || !status.get().is_empty() || !operation_type.get().is_empty()>
                <a href=move || runs_href(&tenant.get(), "", "", None) data-noscroll>"Clear filters"</a>
            </Show>
        </div>
    }
}

/// The pager's links, on a page of runs and on an empty older page.
const PAGER_WORDS: (&str, &str) = ("← Newest runs", "Older runs →");

const RUN_COLUMNS: &[Column] = &[
    Column::text("Run"),
    Column::text("Operation"),
    Column::text("Status"),
    Column::number("Progress"),
    Column::text("Started by"),
    Column::text("Created"),
];

/// The Runs page with these filters (as the URL spells them; a value the filters do not know,
/// e.g. from a hand-edited URL, is dropped), older than run `before` when paging back.
fn runs_href(tenant: &str, status: &str, operation_type: &str, before: Option<i64>) -> String {
    let filter = RunFilter {
        status: StatusFilter::parse(status),
        operation: OperationType::parse(operation_type),
    };
    let mut query = filter.to_query();
    if let Some(id) = before {
        query.push(if query.is_empty() { '?' } else { '&' });
        query.push_str(&format!("before={id}"));
    }
    routes::runs(tenant, &query)
}

/// A labelled select of one filter that follows the URL: `current` is the URL's value (empty for
/// "all"). Options carry `selected` for the server's HTML and `prop:selected` so the select
/// follows the URL on Back and Forward too.
#[component]
fn FilterSelect(
    label: &'static str,
    all: &'static str,
    test_id: &'static str,
    current: Memo<String>,
    /// (URL value, label) of every choice besides "all".
    choices: Vec<(&'static str, &'static str)>,
    on_pick: Callback<String>,
) -> impl IntoView {
    view! {
        <label>
            {label}
            <select data-testid=test_id on:change=move |ev| on_pick.run(event_target_value(&ev))>
                <option
                    value=""
                    selected=move || current.get().is_empty()
                    prop:selected=move || current.get().is_empty()
                >
                    {all}
                </option>
                {choices
                    .into_iter()
                    .map(|(value, text)| {
                        view! {
                            <option
                                value=value
                                selected=move || current.get() == value
                                prop:selected=move || current.get() == value
                            >
                                {text}
                            </option>
                        }
                    })
                    .collect_view()}
            </select>
        </label>
    }
}
