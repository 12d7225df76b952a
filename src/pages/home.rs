//! `/`: the tenants to choose from.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::tenants::list_tenants;
use crate::components::{EmptyState, ErrorMessage, Loading};

/// The start page: one link per tenant.
#[component]
pub fn HomePage() -> impl IntoView {
    let tenants = Resource::new(|| (), |()| list_tenants());
    view! {
        <Title text="Tenants" />
        <header class="app-header">
            <a class="brand" href="/">
                "TenantAtlas"
            </a>
        </header>
        <main class="page">
            <h1>"Tenants"</h1>
            <Suspense fallback=|| view! { <Loading what="tenants" /> }>
                {move || Suspend::new(async move {
                    match tenants.await {
                        Ok(list) if list.is_empty() => view! {
                            <EmptyState
                                title="No tenants yet"
                                hint="Start the server with --demo to add the demo tenants."
                            />
                        }.into_any(),
                        Ok(list) => view! {
                            <ul class="tenant-list">
                                {list.into_iter().map(|t| {
                                    let href = format!("{}/backup-sets", t.base_path());
                                    view! {
                                        <li>
                                            <a href=href>{t.display_name}</a>
                                            <span class="muted mono">{t.external_id}</span>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any(),
                        Err(error) => view! { <ErrorMessage error /> }.into_any(),
                    }
                })}
            </Suspense>
        </main>
    }
}
