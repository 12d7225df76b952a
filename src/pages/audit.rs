//! `/t/{tenant}/audit`: the tenant's audit log (owners and managers), newest first, filtered by
//! action and actor, a page at a time. Filters and cursor live in the URL
//! (`?action=member.add&actor=a@b.example&before=812`), so a view can be linked.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant_layout::{fetch_if_held, use_tenant, use_tenant_page};
use super::{query_before, query_param};
use crate::api::audit::list_audit;
use crate::components::{
    or_absent, Column, DataTable, EmptyState, KeysetPager, Loading, RefusedOrError,
};
use crate::domain::audit::KNOWN_ACTIONS;
use crate::domain::{routes, Capability};

/// The audit log page.
#[component]
pub fn AuditPage() -> impl IntoView {
    let tenant = use_tenant();
    let action = query_param("action");
    let actor = query_param("actor");
    let before = query_before();
    let tenant_page = use_tenant_page();
    let page = Resource::new(
        move || (tenant.get(), action.get(), actor.get(), before.get()),
        move |(tenant, action, actor, before)| {
            fetch_if_held(tenant_page, Capability::ReadAuditLog, move || async move {
                list_audit(tenant, action, actor, before?).await
            })
        },
    );
    let link = move |before: Option<i64>| {
        audit_href(
            &tenant.get_untracked(),
            &action.get_untracked(),
            &actor.get_untracked(),
            before,
        )
    };

    view! {
        <Title text="Audit log" />
        <h1>"Audit log"</h1>
        <AuditFilters tenant action actor />
        <Transition fallback=|| view! { <Loading what="the audit log" /> }>
            {move || Suspend::new(async move {
                match page.await {
                    Ok(page) if page.entries.is_empty() => view! {
                        <EmptyState
                            title="Nothing recorded here"
                            hint="Changes to members and the connection, runs, restores and exports of this tenant appear here. Sign-ins belong to no tenant and are not listed."
                        />
                    }.into_any(),
                    Ok(page) => {
                        let older = page.next_before.map(|id| link(Some(id)));
                        let newest = (before.get_untracked() != Ok(0)).then(|| link(None));
                        view! {
                            <DataTable columns=AUDIT_COLUMNS testid="audit-log">
                                {page.entries.into_iter().map(|entry| view! {
                                    <tr data-testid="audit-row">
                                        <td>{entry.created_at.to_string()}</td>
                                        <td class="mono">{entry.action}</td>
                                        <td>{or_absent(entry.actor)}</td>
                                        <td class="mono">{entry.target}</td>
                                        <td class="mono small details">{entry.details}</td>
                                    </tr>
                                }).collect_view()}
                            </DataTable>
                            <KeysetPager label="Pages of the audit log" newest older />
                        }.into_any()
                    }
                    Err(error) => view! { <RefusedOrError error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

const AUDIT_COLUMNS: &[Column] = &[
    Column::text("When"),
    Column::text("Action"),
    Column::text("Actor"),
    Column::text("Target"),
    Column::text("Details"),
];

/// The audit page with these filters, older than event `before` when paging back.
fn audit_href(tenant: &str, action: &str, actor: &str, before: Option<i64>) -> String {
    let mut query: Vec<String> = Vec::new();
    for (name, value) in [("action", action), ("actor", actor)] {
        if !value.is_empty() {
            query.push(format!("{name}={}", encode(value)));
        }
    }
    if let Some(id) = before {
        query.push(format!("before={id}"));
    }
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{}", query.join("&"))
    };
    routes::audit(tenant, &query)
}

/// Percent-encodes a query value (an e-mail's `@` and `+` included).
fn encode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Action and actor; submitting loads the filtered first page (a plain GET form: it works
/// before the page is interactive too).
#[component]
fn AuditFilters(tenant: Memo<String>, action: Memo<String>, actor: Memo<String>) -> impl IntoView {
    view! {
        <form method="get" action=move || routes::audit(&tenant.get(), "")>
            <div class="run-filters" role="search" aria-label="Filter the audit log">
                <label>
                    "Action"
                    <input
                        type="text"
                        name="action"
                        list="audit-actions"
                        maxlength="100"
                        data-testid="action-filter"
                        value=move || action.get()
                        prop:value=move || action.get()
                    />
                </label>
                <datalist id="audit-actions">
                    {KNOWN_ACTIONS.iter().map(|name| view! { <option value=*name></option> }).collect_view()}
                </datalist>
                <label>
                    "Actor (e-mail)"
                    <input
                        type="email"
                        name="actor"
                        maxlength="254"
                        data-testid="actor-filter"
                        value=move || actor.get()
                        prop:value=move || actor.get()
                    />
                </label>
                <button type="submit">"Filter"</button>
                <Show when=move || !action.get().is_empty() || !actor.get().is_empty()>
                    <a href=move || routes::audit(&tenant.get(), "")>"Clear filters"</a>
                </Show>
            </div>
        </form>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_cursor_are_encoded_into_the_link() {
        assert_eq!(audit_href("t", "", "", None), "/t/t/audit");
        assert_eq!(
            audit_href("t", "member.add", "a+b@x.example", Some(12)),
            "/t/t/audit?action=member.add&actor=a%2Bb%40x.example&before=12"
        );
    }
}
