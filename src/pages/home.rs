//! `/`: the signed-in user's tenants (the tenant switcher of users with several memberships).

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::current_user;
use crate::components::{AppHeader, EmptyState, ErrorMessage, Loading, MeResource};
use crate::domain::routes;

/// The start page: one link per membership, with the role.
#[component]
pub fn HomePage() -> impl IntoView {
    let me: MeResource = Resource::new(|| (), |()| current_user());
    view! {
        <Title text="Tenants" />
        <AppHeader me />
        <main class="page">
            <h1>"Your tenants"</h1>
            <Suspense fallback=|| view! { <Loading what="your tenants" /> }>
                {move || Suspend::new(async move {
                    match me.await {
                        Ok(user) if user.memberships.is_empty() => view! {
                            <EmptyState
                                title="You are not a member of any tenant yet"
                                hint="Ask an owner of a tenant to add you."
                            />
                        }.into_any(),
                        Ok(user) => view! {
                            <ul class="tenant-list">
                                {user.memberships.into_iter().map(|m| {
                                    let href = routes::tenant_home(&m.tenant.external_id);
                                    view! {
                                        <li>
                                            <a href=href>{m.tenant.display_name}</a>
                                            <span class="muted">{m.role.as_str()}</span>
                                            <span class="muted mono">{m.tenant.external_id}</span>
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
