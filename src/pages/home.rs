//! `/`: the signed-in user's tenants (the tenant switcher of users with several memberships).

use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::auth::current_user;
use crate::components::{AppHeader, EmptyState, ErrorMessage, Loading, MeResource, NeedsRole};
use crate::domain::capability::ADMIN_LABEL;
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
                                hint={if user.is_admin {
                                    "Connect your first tenant below."
                                } else {
                                    "Ask an owner of a tenant to add you."
                                }}
                            />
                            <ConnectLink is_admin=user.is_admin />
                        }.into_any(),
                        Ok(user) => view! {
                            <ConnectLink is_admin=user.is_admin />
                            <ul class="tenant-list">
                                {user.memberships.into_iter().map(|m| {
                                    let href = routes::tenant_home(&m.tenant.external_id);
                                    view! {
                                        <li>
                                            <a href=href>{m.tenant.display_name}</a>
                                            <span class="muted">{m.role.label()}</span>
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

/// "Connect a tenant": instance admins connect tenants; anyone else is told what it takes.
#[component]
fn ConnectLink(is_admin: bool) -> impl IntoView {
    view! {
        <div class="action-row">
            <a
                href=routes::connect_tenant()
                data-testid="connect-tenant-link"
                aria-describedby=(!is_admin).then_some("connect-tenant-needs")
            >
                "Connect a tenant"
            </a>
            {(!is_admin).then(|| view! { <NeedsRole id="connect-tenant-needs" reason=ADMIN_LABEL /> })}
        </div>
    }
}
