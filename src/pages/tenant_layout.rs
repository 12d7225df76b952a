//! The frame of every tenant page: header with the tenant's name, navigation, and the page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::{Outlet, Redirect, A},
    hooks::use_params_map,
};

use crate::api::tenants::get_tenant;

/// The tenant named in the URL (`/t/{tenant}/…`), shared with the pages below the layout.
#[derive(Clone, Copy)]
pub struct CurrentTenant(pub Memo<String>);

/// The external id of the tenant of the current page.
pub fn use_tenant() -> Memo<String> {
    expect_context::<CurrentTenant>().0
}

/// Header and navigation around a tenant's pages.
#[component]
pub fn TenantLayout() -> impl IntoView {
    let params = use_params_map();
    let tenant = Memo::new(move |_| params.read().get("tenant").unwrap_or_default());
    provide_context(CurrentTenant(tenant));
    let info = Resource::new(move || tenant.get(), get_tenant);
    let link = move |page: &'static str| move || format!("/t/{}/{page}", tenant.get());

    view! {
        <header class="app-header">
            <a class="brand" href="/">
                "TenantAtlas"
            </a>
            <Transition fallback=|| view! { <span class="tenant-name">"…"</span> }>
                {move || Suspend::new(async move {
                    match info.await {
                        Ok(t) => view! { <span class="tenant-name" data-testid="tenant-name">{t.display_name}</span> }.into_any(),
                        Err(_) => view! { <span class="tenant-name muted">"Unknown tenant"</span> }.into_any(),
                    }
                })}
            </Transition>
            <nav aria-label="Main">
                <A href=link("backup-sets")>"Backup sets"</A>
                <A href=link("runs")>"Runs"</A>
            </nav>
        </header>
        <main class="page">
            <Outlet />
        </main>
    }
}

/// `/t/{tenant}` itself: go to the backup sets.
#[component]
pub fn TenantHome() -> impl IntoView {
    let tenant = use_tenant();
    view! {
        <Title text="Tenant" />
        <Redirect path=format!("/t/{}/backup-sets", tenant.get_untracked()) />
    }
}
