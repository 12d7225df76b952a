//! `/t/{tenant}/policies`: the tenant's inventory, searched, filtered by type and platform,
//! sorted by a column and paged as the picker is, with links to each policy's page.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant_layout::use_tenant;
use super::{query_page, query_param};
use crate::api::captures::sync_inventory;
use crate::api::versions::policy_inventory;
use crate::components::{
    or_absent, provide_toasts, EmptyState, ErrorMessage, Loading, PlatformOptions,
    PolicyTypeOptions, RegionName, RunStarter, ScrollRegion, Toasts,
};
use crate::domain::policy_page::{PolicySort, SortColumn};
use crate::domain::routes;
use crate::domain::run::OperationType;

/// The inventory page. Its filters live in the URL (a plain GET form), so a view can be linked.
#[component]
pub fn PoliciesPage() -> impl IntoView {
    let tenant = use_tenant();
    let search = query_param("search");
    let policy_type = query_param("type");
    let platform = query_param("platform");
    // The request spelling (`-modified`); the server refuses one it does not know.
    let sort = query_param("sort");
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
                platform.get(),
                sort.get(),
                page.get(),
                synced.get(),
            )
        },
        |(tenant, search, policy_type, platform, sort, page, _)| async move {
            policy_inventory(tenant, search, policy_type, platform, sort, page? - 1).await
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
            <label>
                "Platform"
                <select name="platform">
                    <option value="">"All platforms"</option>
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            let platforms = inventory.await.map(|list| list.platforms).unwrap_or_default();
                            view! { <PlatformOptions platforms current=platform.get_untracked() /> }
                        })}
                    </Transition>
                </select>
            </label>
            // Applying the filters keeps the sort.
            {move || {
                let sort = sort.get();
                (!sort.is_empty()).then(|| view! { <input type="hidden" name="sort" value=sort /> })
            }}
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
                        let current = PolicySort::parse(&sort.get_untracked());
                        let view_of = InventoryView {
                            search: search.get_untracked(),
                            policy_type: policy_type.get_untracked(),
                            platform: platform.get_untracked(),
                            sort: current,
                        };
                        let href = |page: i64| routes::policies(&tenant, &view_of.query(page));
                        let sorted_by = |column: SortColumn| {
                            let sorted = InventoryView { sort: current.toggled(column), ..view_of.clone() };
                            // Another order starts again at the first page.
                            routes::policies(&tenant, &sorted.query(0))
                        };
                        let previous = (list.page > 0).then(|| href(list.page - 1));
                        let next = (list.page + 1 < list.page_count()).then(|| href(list.page + 1));
                        let summary = format!("Page {} of {} · {} policies", list.page + 1, list.page_count(), list.total);
                        let heading = |column: SortColumn, title: &'static str| view! {
                            <SortHeading column title current href=sorted_by(column) />
                        };
                        let headings = (
                            heading(SortColumn::Name, "Policy"),
                            heading(SortColumn::Type, "Type"),
                            heading(SortColumn::Platform, "Platform"),
                            heading(SortColumn::Modified, "Last modified"),
                        );
                        let rows = list.rows.into_iter().map(|policy| view! {
                                    <tr>
                                        <td>
                                            <a href=routes::policy(&tenant, policy.id)>{policy.display_name}</a>
                                            {policy.gone_from_intune_at.map(|_| view! { " " <span class="badge gone">"Gone from Intune"</span> })}
                                        </td>
                                        <td>{policy.policy_type.label()}</td>
                                        <td>{policy.platform}</td>
                                        <td>{or_absent(policy.last_modified_at)}</td>
                                    </tr>
                        }).collect_view();
                        view! {
                            <ScrollRegion name=RegionName::Label("Policies".into())>
                            <table class="data-table" data-testid="policies-table">
                                <thead>
                                    <tr>{headings}</tr>
                                </thead>
                                <tbody>{rows}</tbody>
                            </table>
                            </ScrollRegion>
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

/// The inventory's filters and sort as the URL holds them, to link another page or order.
#[derive(Clone)]
struct InventoryView {
    search: String,
    policy_type: String,
    platform: String,
    sort: PolicySort,
}

impl InventoryView {
    /// The query of zero-based `page` of this view (`?page=` counts from 1; the default sort,
    /// by name, is left out).
    fn query(&self, page: i64) -> String {
        let mut query = format!("?page={}", page + 1);
        for (name, value) in [
            ("search", self.search.as_str()),
            ("type", self.policy_type.as_str()),
            ("platform", self.platform.as_str()),
        ] {
            if !value.is_empty() {
                query.push_str(&format!("&{name}={}", urlencoding_lite(value)));
            }
        }
        if self.sort != PolicySort::default() {
            query.push_str(&format!("&sort={}", self.sort.as_param()));
        }
        query
    }
}

/// A column heading that links the inventory sorted by its column; following it again
/// reverses the order.
#[component]
fn SortHeading(
    column: SortColumn,
    title: &'static str,
    current: PolicySort,
    href: String,
) -> impl IntoView {
    let (aria_sort, arrow) = match (current.column == column, current.descending) {
        (false, _) => ("none", ""),
        (true, false) => ("ascending", " ▲"),
        (true, true) => ("descending", " ▼"),
    };
    view! {
        <th scope="col" aria-sort=aria_sort>
            <a href=href>{title}{arrow}</a>
        </th>
    }
}

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
