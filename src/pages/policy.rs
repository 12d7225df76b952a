//! `/t/{tenant}/policies/{id}`: a policy's metadata and its captured versions, newest first.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::tenant_layout::use_tenant;
use crate::api::versions::{get_policy, policy_versions};
use crate::components::{or_absent, Column, DataTable, EmptyState, ErrorMessage, Loading};
use crate::domain::policy_page::policy_type_label;
use crate::domain::versions::{short_hash, PolicyInfo};
use crate::domain::{routes, AppError};

/// The number in the URL segment `name`, if it is one.
pub fn id_param(name: &'static str) -> Memo<Option<i64>> {
    let params = use_params_map();
    Memo::new(move |_| {
        params
            .read()
            .get(name)
            .and_then(|raw| raw.parse::<i64>().ok())
    })
}

/// The policy not found error for a URL id that is not a number.
pub fn no_policy() -> AppError {
    AppError::NotFound("This policy does not exist in this tenant.".into())
}

/// Metadata of a policy as a fact list.
#[component]
pub fn PolicyFacts(policy: PolicyInfo) -> impl IntoView {
    view! {
        <dl class="facts">
            <dt>"Type"</dt>
            <dd>{policy_type_label(&policy.policy_type).to_owned()}</dd>
            <dt>"Platform"</dt>
            <dd>{policy.platform}</dd>
            <dt>"Graph id"</dt>
            <dd class="mono">{policy.graph_id}</dd>
            <dt>"Last modified"</dt>
            <dd>{or_absent(policy.last_modified_at)}</dd>
        </dl>
        {policy.gone_from_intune_at.map(|at| view! {
            <p class="badge gone" data-testid="gone">"Gone from Intune since " {at.to_string()}</p>
        })}
    }
}

/// The policy page.
#[component]
pub fn PolicyDetailPage() -> impl IntoView {
    let tenant = use_tenant();
    let id = id_param("id");
    let policy = Resource::new(
        move || (tenant.get(), id.get()),
        |(tenant, id)| async move {
            match id {
                Some(id) => get_policy(tenant, id).await,
                None => Err(no_policy()),
            }
        },
    );
    let versions = Resource::new(
        move || (tenant.get(), id.get()),
        |(tenant, id)| async move {
            match id {
                Some(id) => policy_versions(tenant, id).await,
                None => Err(no_policy()),
            }
        },
    );
    view! {
        <Title text="Policy" />
        <p class="breadcrumb">
            <a href=move || routes::policies(&tenant.get(), "")>"← Policies"</a>
        </p>
        <Transition fallback=|| view! { <Loading what="the policy" /> }>
            {move || Suspend::new(async move {
                match policy.await {
                    Ok(policy) => view! {
                        <h1 data-testid="policy-name">{policy.display_name.clone()}</h1>
                        <PolicyFacts policy />
                    }.into_any(),
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
        <h2>"Versions"</h2>
        <Transition fallback=|| view! { <Loading what="the versions" /> }>
            {move || Suspend::new(async move {
                let tenant = tenant.get_untracked();
                match (versions.await, id.get_untracked()) {
                    (Ok(list), _) if list.is_empty() => view! {
                        <EmptyState
                            title="No versions captured yet"
                            hint="Add the policy to a backup set to capture a version."
                        />
                    }.into_any(),
                    (Ok(list), Some(policy_id)) => view! {
                        <DataTable columns=VERSION_COLUMNS testid="versions">
                            {list.into_iter().map(|version| {
                                let sets = version.backup_sets.into_iter().map(|set| view! {
                                    <a href=routes::backup_set(&tenant, set.id)>{set.name}</a>" "
                                }).collect_view();
                                let run = version.run_id.map(|run| view! {
                                    <a href=routes::run(&tenant, run, "")>"#" {run}</a>
                                });
                                let previous = version.previous_id.map(|from| view! {
                                    " · "
                                    <a href=routes::policy_diff(&tenant, policy_id, from, version.id)>
                                        "Compare with previous"
                                    </a>
                                });
                                view! {
                                    <tr>
                                        <td>{version.captured_at.to_string()}</td>
                                        <td class="mono" title=version.content_hash.clone()>
                                            {short_hash(&version.content_hash)}
                                        </td>
                                        <td>{sets}</td>
                                        <td>{run.map_or_else(|| crate::components::ABSENT.into_any(), IntoAny::into_any)}</td>
                                        <td>
                                            <a href=routes::policy_version(&tenant, policy_id, version.id)>"View"</a>
                                            {previous}
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </DataTable>
                    }.into_any(),
                    // The error is already shown at the top of the page.
                    _ => ().into_any(),
                }
            })}
        </Transition>
    }
}

const VERSION_COLUMNS: &[Column] = &[
    Column::text("Captured"),
    Column::text("Content hash"),
    Column::text("Backup sets"),
    Column::text("Run"),
    Column::text("Actions"),
];
