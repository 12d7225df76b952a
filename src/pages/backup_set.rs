//! `/t/{tenant}/backup-sets/{id}`: one backup set and its items.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::tenant_layout::use_tenant;
use crate::api::backup_sets::get_backup_set;
use crate::components::{EmptyState, ErrorMessage, Loading};
use crate::domain::AppError;

/// A backup set with its captured policies.
#[component]
pub fn BackupSetPage() -> impl IntoView {
    let tenant = use_tenant();
    let params = use_params_map();
    let id = Memo::new(move |_| {
        params
            .read()
            .get("id")
            .and_then(|raw| raw.parse::<i64>().ok())
    });
    let detail = Resource::new(
        move || (tenant.get(), id.get()),
        |(tenant, id)| async move {
            match id {
                Some(id) => get_backup_set(tenant, id).await,
                None => Err(AppError::NotFound(
                    "This backup set does not exist in this tenant.".into(),
                )),
            }
        },
    );

    view! {
        <Title text="Backup set" />
        <p class="breadcrumb">
            <a href=move || format!("/t/{}/backup-sets", tenant.get())>"← Backup sets"</a>
        </p>
        <Suspense fallback=|| view! { <Loading what="the backup set" /> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => {
                        let set = detail.set;
                        let items = detail.items;
                        view! {
                            <h1 data-testid="backup-set-name">{set.name}</h1>
                            <p class="muted">{set.description}</p>
                            <dl class="facts">
                                <dt>"Items"</dt>
                                <dd>{set.item_count}</dd>
                                <dt>"Created"</dt>
                                <dd>{set.created_at.to_string()}</dd>
                                <dt>"Created by"</dt>
                                <dd>{if set.created_by.is_empty() { "—".to_owned() } else { set.created_by }}</dd>
                            </dl>
                            <h2>"Policies in this set"</h2>
                            {if items.is_empty() {
                                view! {
                                    <EmptyState
                                        title="No policies in this set yet"
                                        hint="Policies you add are captured from Microsoft Graph and listed here."
                                    />
                                }.into_any()
                            } else {
                                view! {
                                    <table class="data-table">
                                        <thead>
                                            <tr>
                                                <th scope="col">"Policy"</th>
                                                <th scope="col">"Type"</th>
                                                <th scope="col">"Platform"</th>
                                                <th scope="col">"Captured"</th>
                                            </tr>
                                        </thead>
                                        <tbody>
                                            {items.into_iter().map(|item| view! {
                                                <tr>
                                                    <td>{item.policy_name}</td>
                                                    <td>{item.policy_type}</td>
                                                    <td>{item.platform}</td>
                                                    <td>{item.captured_at.to_string()}</td>
                                                </tr>
                                            }).collect_view()}
                                        </tbody>
                                    </table>
                                }.into_any()
                            }}
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Suspense>
    }
}
