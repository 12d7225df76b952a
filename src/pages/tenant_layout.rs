//! The frame of every tenant page: header with the tenant switcher and navigation, and the page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::{Outlet, Redirect},
    hooks::use_params_map,
};

use crate::api::auth::current_user;
use crate::components::{AppHeader, MeResource};
use crate::domain::{routes, Capability, Role, TenantExternalId};

/// The tenant named in the URL (`/t/{tenant}/…`) and the signed-in user, for the pages below.
#[derive(Clone, Copy)]
pub struct TenantPage {
    pub tenant: Memo<String>,
    pub me: MeResource,
}

/// The external id of the tenant of the current page.
pub fn use_tenant() -> Memo<String> {
    expect_context::<TenantPage>().tenant
}

/// The signed-in user's role in the current tenant (`None` if not a member). Await it inside a
/// `<Suspense/>` or `<Transition/>`, so server and browser render the same.
pub async fn current_role() -> Option<Role> {
    let page = expect_context::<TenantPage>();
    let me = page.me.await.ok()?;
    me.role_in(&page.tenant.get_untracked())
}

/// What the current page shows beside an action needing `capability` ("Needs operator or
/// above"), or `None` when the signed-in user's role holds it. Await it like [`current_role`].
pub async fn refusal(capability: Capability) -> Option<&'static str> {
    match current_role().await {
        Some(role) if role.can(capability) => None,
        _ => Some(capability.label()),
    }
}

/// Header and navigation around a tenant's pages.
#[component]
pub fn TenantLayout() -> impl IntoView {
    let params = use_params_map();
    let tenant = Memo::new(move |_| params.read().get("tenant").unwrap_or_default());
    let me: MeResource = Resource::new(|| (), |()| current_user());
    provide_context(TenantPage { tenant, me });
    view! {
        <AppHeader me tenant=tenant />
        <main class="page">
            <crate::components::ConnectionBanner tenant />
            <Outlet />
        </main>
    }
}

/// `/t/{tenant}` itself: go to the backup sets. The redirect becomes a `Location` header, so
/// it is built from the parsed tenant id, never from the raw path.
#[component]
pub fn TenantHome() -> impl IntoView {
    let tenant = use_tenant();
    let backup_sets = TenantExternalId::parse(&tenant.get_untracked())
        .ok()
        .map(|id| routes::tenant_home(&id.to_string()));
    view! {
        <Title text="Tenant" />
        {backup_sets.map(|path| view! { <Redirect path /> })}
    }
}
