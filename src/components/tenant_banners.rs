//! The notices above every page of a tenant: it is disconnected, or its client secret expires
//! soon (30 days before the date its owner entered).

use leptos::prelude::*;

use crate::api::tenants::get_tenant_status;
use crate::domain::routes;
use crate::domain::tenant::expiry_words;

/// The tenant's banners; `changed` is bumped when a page changed the connection.
#[component]
pub fn TenantBanners(tenant: Memo<String>, changed: RwSignal<u64>) -> impl IntoView {
    let status = Resource::new(
        move || (tenant.get(), changed.get()),
        |(tenant, _)| get_tenant_status(tenant),
    );
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                // A tenant the user may not see has no banner: its page says why.
                let status = status.await.ok()?;
                let settings = routes::tenant_settings(&tenant.get_untracked());
                let disconnected = status.disconnected.then(|| {
                    let settings = settings.clone();
                    view! {
                        <p class="notice banner" role="status" data-testid="banner-disconnected">
                            "This tenant is disconnected: its data is kept, and no run can start. "
                            "Its owner can reconnect it in "
                            <a href=settings>"Settings"</a>
                            "."
                        </p>
                    }
                });
                let expiry = status.expiry_warning_days.map(|days| {
                    view! {
                        <p class="notice banner" role="status" data-testid="banner-secret-expiry">
                            "The app registration's client secret " {expiry_words(days)}
                            ". Its owner can enter a new one in "
                            <a href=settings>"Settings"</a>
                            "."
                        </p>
                    }
                });
                Some(view! { {disconnected} {expiry} })
            })}
        </Transition>
    }
}
