//! `/t/{tenant}/runs`: the operations monitor, filtered by status and operation type.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_query_map};
use leptos_router::NavigateOptions;

use super::tenant_layout::use_tenant;
use crate::api::runs::{list_runs, RUNS_PAGE_SIZE};
use crate::components::{EmptyState, ErrorMessage, Loading, RunStatusBadge};
use crate::domain::run::{OperationType, RunFilter, StatusFilter};

/// Every run of the tenant, newest first. The filters live in the URL
/// (`?status=failed&type=backup_set.add_policies`), so a filtered view can be linked and
/// reloaded; the server parses them, and an unknown value shows its error.
#[component]
pub fn RunsPage() -> impl IntoView {
    let tenant = use_tenant();
    let query = use_query_map();
    let status = Memo::new(move |_| query.read().get("status").unwrap_or_default());
    let operation_type = Memo::new(move |_| query.read().get("type").unwrap_or_default());
    // Older pages: `?before=<run id>`, the oldest run of the page before (0 = the newest).
    let before = Memo::new(move |_| {
        query
            .read()
            .get("before")
            .and_then(|raw| raw.parse::<i64>().ok())
            .unwrap_or_default()
    });
    let runs = Resource::new(
        move || {
            (
                tenant.get(),
                status.get(),
                operation_type.get(),
                before.get(),
            )
        },
        |(tenant, status, operation_type, before)| {
            list_runs(tenant, status, operation_type, before)
        },
    );
    // The current filters as a query string, with `before` appended when paging back.
    let link = move |before: Option<i64>| {
        let filter = RunFilter {
            status: StatusFilter::parse(&status.get_untracked()),
            operation: OperationType::parse(&operation_type.get_untracked()),
        };
        let query = filter.to_query();
        let page = match (before, query.is_empty()) {
            (None, _) => String::new(),
            (Some(id), true) => format!("?before={id}"),
            (Some(id), false) => format!("&before={id}"),
        };
        format!("/t/{}/runs{query}{page}", tenant.get_untracked())
    };

    // A changed filter is a new URL (so Back returns to the previous view); the page keeps
    // its scroll position. Options carry `selected` for the server's HTML and `prop:selected`
    // so the selects follow the URL on Back and Forward too.
    let navigate = use_navigate();
    let show = move |status: String, operation_type: String| {
        // A value from a hand-edited URL that the selects cannot show is dropped.
        let filter = RunFilter {
            status: StatusFilter::parse(&status),
            operation: OperationType::parse(&operation_type),
        };
        navigate(
            &format!("/t/{}/runs{}", tenant.get_untracked(), filter.to_query()),
            NavigateOptions {
                scroll: false,
                ..Default::default()
            },
        );
    };
    let show_status = show.clone();
    let show_type = show;

    view! {
        <Title text="Runs" />
        <h1>"Runs"</h1>
        <div class="run-filters" role="search" aria-label="Filter runs">
            <label>
                "Status"
                <select
                    data-testid="status-filter"
                    on:change=move |ev| show_status(event_target_value(&ev), operation_type.get_untracked())
                >
                    <option
                        value=""
                        selected=move || status.get().is_empty()
                        prop:selected=move || status.get().is_empty()
                    >
                        "All statuses"
                    </option>
                    {StatusFilter::ALL
                        .into_iter()
                        .map(|filter| {
                            let value = filter.as_param();
                            view! {
                                <option
                                    value=value
                                    selected=move || status.get() == value
                                    prop:selected=move || status.get() == value
                                >
                                    {filter.label()}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </label>
            <label>
                "Operation"
                <select
                    data-testid="type-filter"
                    on:change=move |ev| show_type(status.get_untracked(), event_target_value(&ev))
                >
                    <option
                        value=""
                        selected=move || operation_type.get().is_empty()
                        prop:selected=move || operation_type.get().is_empty()
                    >
                        "All operations"
                    </option>
                    {OperationType::ALL
                        .into_iter()
                        .map(|operation| {
                            let value = operation.as_str();
                            view! {
                                <option
                                    value=value
                                    selected=move || operation_type.get() == value
                                    prop:selected=move || operation_type.get() == value
                                >
                                    {operation.label()}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
            </label>
            <Show when=move || !status.get().is_empty() || !operation_type.get().is_empty()>
                <a href=move || format!("/t/{}/runs", tenant.get()) data-noscroll>"Clear filters"</a>
            </Show>
        </div>
        <Transition fallback=|| view! { <Loading what="runs" /> }>
            {move || Suspend::new(async move {
                let filtered = !status.get_untracked().is_empty()
                    || !operation_type.get_untracked().is_empty();
                match runs.await {
                    Ok(list) if list.is_empty() && filtered => view! {
                        <EmptyState
                            title="No runs match these filters"
                            hint="Choose another status or operation, or clear the filters."
                        />
                    }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <EmptyState
                            title="No runs yet"
                            hint="Runs appear here when policies are added to a backup set."
                        />
                    }.into_any(),
                    Ok(list) => {
                        let older = (list.len() as i64 == RUNS_PAGE_SIZE)
                            .then(|| list.last().map(|run| link(Some(run.id))))
                            .flatten();
                        let newest = (before.get_untracked() != 0).then(|| link(None));
                        view! {
                        <table class="data-table" data-testid="runs-table">
                            <thead>
                                <tr>
                                    <th scope="col">"Run"</th>
                                    <th scope="col">"Operation"</th>
                                    <th scope="col">"Status"</th>
                                    <th scope="col" class="num">"Progress"</th>
                                    <th scope="col">"Started by"</th>
                                    <th scope="col">"Created"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {list.into_iter().map(|run| view! {
                                    <tr>
                                        <td class="mono">
                                            <a href=format!("/t/{}/runs/{}", tenant.get_untracked(), run.id)>"#" {run.id}</a>
                                        </td>
                                        <td>{run.operation_label().to_owned()}</td>
                                        <td><RunStatusBadge status=run.status /></td>
                                        <td class="num">{run.processed_items} " / " {run.total_items}</td>
                                        <td>{run.initiated_by}</td>
                                        <td>{run.created_at.to_string()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                        <nav class="pager" aria-label="Pages of runs">
                            {newest.map(|href| view! { <a href=href>"← Newest runs"</a> })}
                            {older.map(|href| view! { <a href=href rel="next">"Older runs →"</a> })}
                        </nav>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
    }
}
