//! `/t/{tenant}/policies`: the tenant's inventory, searched, filtered by type and paged, with
//! links to each policy's page.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant_layout::use_tenant;
use super::{query_page, query_param};
use crate::api::captures::sync_inventory;
use crate::api::versions::policy_inventory;
use crate::components::{
    or_absent, provide_toasts, Column, DataTable, EmptyState, ErrorMessage, Loading,
    PolicyTypeOptions, RunStarter, Toasts,
};
use crate::domain::routes;
use crate::domain::run::OperationType;

/// The inventory page. Its filters live in the URL (a plain GET form), so a view can be linked.
#[component]
pub fn PoliciesPage() -> impl IntoView {
    let tenant = use_tenant();
    let search = query_param("search");
    let policy_type = query_param("type");
    // `?page=` counts from 1; the server's page from 0.
    let page = query_page();
    provide_toasts();
    // Bumped when a sync ends: the inventory reloads.
    let synced = RwSignal::new(0_u64);
    let inventory = Resource::new(
        move || {
            (
                tenant.get(),
                search.get(),
                policy_type.get(),
                page.get(),
                synced.get(),
            )
        },
        |(tenant, search, policy_type, page, _)| async move {
            policy_inventory(tenant, search, policy_type, page? - 1).await
        },
    );
    let sync = Action::new(move |_: &()| sync_inventory(tenant.get_untracked()));
    view! {
        <Title text="Policies" />
        <h1>"Policies"</h1>
        <Toasts />
        <RunStarter
            tenant
            operation=OperationType::InventorySync
            label="Sync from Intune"
            last_label="Last sync"
            testid="sync-inventory"
            start=sync
            on_done=move |_| synced.update(|n| *n += 1)
        />
        <form method="get" class="run-filters" role="search" aria-label="Filter policies">
            <label>
                "Search"
                <input type="search" name="search" prop:value=move || search.get() value=move || search.get() />
            </label>
            <label>
                "Type"
                <select name="type">
                    <PolicyTypeOptions current=policy_type />
                </select>
            </label>
            <button type="submit">"Apply"</button>
        </form>
        <Transition fallback=|| view! { <Loading what="policies" /> }>
            {move || Suspend::new(async move {
                match inventory.await {
                    Ok(list) if list.rows.is_empty() => view! {
                        <EmptyState
                            title="No policies"
                            hint="Policies appear here once the inventory has seen them; change the filters to see more."
                        />
                    }.into_any(),
                    Ok(list) => {
                        let tenant = tenant.get_untracked();
                        let href = |page: i64| {
                            let mut q = format!("?page={}", page + 1);
                            let s = search.get_untracked();
                            if !s.is_empty() {
                                q.push_str(&format!("&search={}", urlencoding_lite(&s)));
                            }
                            let t = policy_type.get_untracked();
                            if !t.is_empty() {
                                q.push_str(&format!("&type={}", urlencoding_lite(&t)));
                            }
                            routes::policies(&tenant, &q)
                        };
                        let previous = (list.page > 0).then(|| href(list.page - 1));
                        let next = (list.page + 1 < list.page_count()).then(|| href(list.page + 1));
                        let summary = format!("Page {} of {} · {} policies", list.page + 1, list.page_count(), list.total);
                        view! {
                            <DataTable columns=POLICY_COLUMNS testid="policies-table">
                                {list.rows.into_iter().map(|policy| view! {
                                    <tr>
                                        <td>
                                            <a href=routes::policy(&tenant, policy.id)>{policy.display_name}</a>
                                            {policy.gone_from_intune_at.map(|_| view! { " " <span class="badge gone">"Gone from Intune"</span> })}
                                        </td>
                                        <td>{policy.policy_type.label()}</td>
                                        <td>{policy.platform}</td>
                                        <td>{or_absent(policy.last_modified_at)}</td>
                                    </tr>
                                }).collect_view()}
                            </DataTable>
                            <nav class="pager" aria-label="Pages of policies">
                                {previous.map(|href| view! { <a href=href rel="prev">"← Previous"</a> })}
                                <span>{summary}</span>
                                {next.map(|href| view! { <a href=href rel="next">"Next →"</a> })}
                            </nav>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

const POLICY_COLUMNS: &[Column] = &[
    Column::text("Policy"),
    Column::text("Type"),
    Column::text("Platform"),
    Column::text("Last modified"),
];

/// Percent-encodes a query value (everything but unreserved characters).
fn urlencoding_lite(value: &str) -> String {
    let mut out = String::new();
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
