//! The frame of every tenant page: header with the tenant switcher and navigation, and the page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::{
    components::{Outlet, Redirect},
    hooks::{use_navigate, use_params_map},
    NavigateOptions,
};

use crate::api::auth::current_user;
use crate::components::{AppHeader, MeResource, TenantBanners};
use crate::domain::{routes, AppError, Capability, Role, TenantExternalId};

/// The tenant named in the URL (`/t/{tenant}/…`) and the signed-in user, for the pages below.
#[derive(Clone, Copy)]
pub struct TenantPage {
    pub tenant: Memo<String>,
    /// Read once with the layout, and again by the members page after a role change or a
    /// removal of her own: what a page disables follows her role. A reading that fails says so
    /// (every action disabled with "reload the page"): the one before it is the role she just
    /// gave up, and a 401 is a session that ended.
    pub me: MeResource,
    /// Bumped by a page that changed the tenant's connection (disconnect, a new secret), so the
    /// banners above every page read it again.
    pub connection_changed: RwSignal<u64>,
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

/// The current page's tenant and user, for resource fetchers (which run apart from the
/// component, so they take it along).
pub fn use_tenant_page() -> TenantPage {
    expect_context::<TenantPage>()
}

/// `fetch()`'s answer when the signed-in user's role in the page's tenant holds `capability`;
/// otherwise the refusal, without asking the server. A part of a page that is not for this
/// member thus never fails the page's own request (a server function's error during the render
/// would set the page's status).
pub async fn fetch_if_held<T, Fut>(
    page: TenantPage,
    capability: Capability,
    fetch: impl FnOnce() -> Fut,
) -> Result<T, AppError>
where
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    let me = page.me.await?;
    match me.role_in(&page.tenant.get_untracked()) {
        Some(role) if role.can(capability) => fetch().await,
        Some(role) => Err(AppError::Forbidden(capability.refusal(role))),
        None => Err(AppError::Forbidden(capability.label().to_owned())),
    }
}

/// What a page bumps after it changed the tenant's connection, so the banners read it again.
pub fn use_connection_changed() -> RwSignal<u64> {
    expect_context::<TenantPage>().connection_changed
}

/// What an action says beside it when the signed-in user could not be read (the request
/// failed): their role is unknown, not lacking.
pub const ROLE_UNREAD: &str = "Your role here could not be read: reload the page to try again";

/// What the current page shows beside an action needing `capability` ("Needs operator or
/// above"), or `None` when the signed-in user's role holds it; [`ROLE_UNREAD`] when the user
/// could not be read. Await it like [`current_role`].
pub async fn refusal(capability: Capability) -> Option<&'static str> {
    let page = expect_context::<TenantPage>();
    match page.me.await {
        Ok(me) => refusal_of(me.role_in(&page.tenant.get_untracked()), capability),
        Err(_) => Some(ROLE_UNREAD),
    }
}

/// Why a member with `role` (`None`: no role here) may not do what `capability` allows.
pub fn refusal_of(role: Option<Role>, capability: Capability) -> Option<&'static str> {
    match role {
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
    let connection_changed = RwSignal::new(0_u64);
    provide_context(TenantPage {
        tenant,
        me,
        connection_changed,
    });
    leave_when_no_longer_member(tenant, me);
    view! {
        <AppHeader me tenant=tenant />
        <main class="page">
            <crate::components::ConnectionBanner tenant changed=connection_changed />
            <TenantBanners tenant changed=connection_changed />
            <Outlet />
        </main>
    }
}

/// Once the user, read again, is no longer a member of the tenant (she removed herself), its
/// pages are not hers: she goes to her tenants, where the guard would send a non-member on the
/// next load ("Back to your tenants"), rather than stay on pages that can only be refused.
/// The guard only checks a page loaded from the server: in the browser, Back (or any link)
/// can lead to the tenant's pages again, and the layout's first reading sends her away too.
/// The tenant's page is replaced in the history, not added to, so Back goes past it instead
/// of bouncing to her tenants each time.
fn leave_when_no_longer_member(tenant: Memo<String>, me: MeResource) {
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(user)) = me.get() {
            if user.role_in(&tenant.get_untracked()).is_none() {
                navigate(
                    "/",
                    NavigateOptions {
                        replace: true,
                        ..Default::default()
                    },
                );
            }
        }
    });
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
