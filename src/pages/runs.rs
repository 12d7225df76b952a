//! `/t/{tenant}/runs`: the operations monitor.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant_layout::use_tenant;
use crate::api::runs::list_runs;
use crate::components::{EmptyState, ErrorMessage, Loading, RunStatusBadge};

/// Every run of the tenant, newest first.
#[component]
pub fn RunsPage() -> impl IntoView {
    let tenant = use_tenant();
    let runs = Resource::new(move || tenant.get(), list_runs);
    view! {
        <Title text="Runs" />
        <h1>"Runs"</h1>
        <Suspense fallback=|| view! { <Loading what="runs" /> }>
            {move || Suspend::new(async move {
                match runs.await {
                    Ok(list) if list.is_empty() => view! {
                        <EmptyState
                            title="No runs yet"
                            hint="Runs appear here when policies are added to a backup set."
                        />
                    }.into_any(),
                    Ok(list) => view! {
                        <table class="data-table">
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
                                        <td>{run.operation_type}</td>
                                        <td><RunStatusBadge status=run.status /></td>
                                        <td class="num">{run.processed_items} " / " {run.total_items}</td>
                                        <td>{run.initiated_by}</td>
                                        <td>{run.created_at.to_string()}</td>
                                    </tr>
                                }).collect_view()}
                            </tbody>
                        </table>
                    }.into_any(),
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Suspense>
    }
}
