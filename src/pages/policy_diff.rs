//! `/t/{tenant}/policies/{id}/diff?from={version}&to={version}`: two versions compared.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::policy::{id_param, no_policy};
use super::tenant_layout::use_tenant;
use crate::api::versions::policy_diff;
use crate::components::{ChangeList, EmptyState, ErrorMessage, Loading, NotComparedNotes};
use crate::domain::versions::short_hash;
use crate::domain::{routes, AppError};

/// The diff page: added, removed and changed settings, and what was not compared.
#[component]
pub fn PolicyDiffPage() -> impl IntoView {
    let tenant = use_tenant();
    let id = id_param("id");
    let query = use_query_map();
    let version = move |name: &'static str| {
        Memo::new(move |_| {
            query
                .read()
                .get(name)
                .and_then(|raw| raw.parse::<i64>().ok())
        })
    };
    let from = version("from");
    let to = version("to");
    let result = Resource::new(
        move || (tenant.get(), id.get(), from.get(), to.get()),
        |(tenant, id, from, to)| async move {
            match (id, from, to) {
                (None, _, _) => Err(no_policy()),
                (Some(id), Some(from), Some(to)) => policy_diff(tenant, id, from, to).await,
                _ => Err(AppError::invalid(
                    "from",
                    "Choose two versions of this policy to compare.",
                )),
            }
        },
    );
    view! {
        <Title text="Compare versions" />
        <p class="breadcrumb">
            <a href=move || id.get().map(|id| routes::policy(&tenant.get(), id))>"← Policy"</a>
        </p>
        <Transition fallback=|| view! { <Loading what="the comparison" /> }>
            {move || Suspend::new(async move {
                match result.await {
                    Ok(diff) => {
                        let tenant = tenant.get_untracked();
                        let policy_id = diff.policy.id;
                        let side = |v: &crate::domain::versions::VersionRef| {
                            view! {
                                <a href=routes::policy_version(&tenant, policy_id, v.id)>
                                    {v.captured_at.to_string()} " (" {short_hash(&v.content_hash)} ")"
                                </a>
                            }
                        };
                        let unchanged = diff.comparison.is_unchanged();
                        view! {
                            <h1 data-testid="policy-name">{diff.policy.display_name}</h1>
                            <p>"From " {side(&diff.from)} " to " {side(&diff.to)}</p>
                            {if unchanged {
                                view! {
                                    <EmptyState
                                        title="No differences"
                                        hint="The settings of these two versions are the same."
                                    />
                                }.into_any()
                            } else {
                                let count = diff.comparison.changes.len();
                                view! {
                                    <p data-testid="change-count">
                                        {if count == 1 { "1 setting differs".to_owned() } else { format!("{count} settings differ") }}
                                    </p>
                                    <ChangeList changes=diff.comparison.changes />
                                }.into_any()
                            }}
                            <NotComparedNotes notes=diff.comparison.not_compared />
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
    }
}
