//! The HTML shell, the router and the tenant layout.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    path,
};

use crate::pages::{
    audit::AuditPage,
    backup_set::BackupSetPage,
    backup_sets::BackupSetsPage,
    connect_tenant::ConnectTenantPage,
    home::HomePage,
    invite::InvitePage,
    members::MembersPage,
    not_found::NotFound,
    policies::PoliciesPage,
    policy::PolicyDetailPage,
    policy_diff::PolicyDiffPage,
    policy_version::PolicyVersionPage,
    restore::RestorePage,
    run_detail::RunDetailPage,
    runs::RunsPage,
    sign_in::SignInPage,
    tenant_layout::{TenantHome, TenantLayout},
    tenant_settings::TenantSettingsPage,
};

/// The document around the app (server side only renders it).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    // The page's Content-Security-Policy allows only our scripts and the inline ones Leptos
    // marks with this response's nonce.
    #[cfg(feature = "ssr")]
    if let (Some(nonce), Some(response)) = (
        leptos::nonce::use_nonce(),
        use_context::<leptos_axum::ResponseOptions>(),
    ) {
        if let Ok(value) =
            axum::http::HeaderValue::from_str(&crate::server::auth::guard::page_csp(&nonce))
        {
            response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, value);
        }
    }
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

/// The application: routes of the start page and of every tenant.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser, after hydration: this attribute tells tests (and anyone
    // debugging) that the wasm bundle has taken over the server-rendered page.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/tenantatlas.css" />
        <Title formatter=|page: String| format!("{page} · TenantAtlas") />
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/") view=HomePage />
                <Route path=path!("/sign-in") view=SignInPage />
                <Route path=path!("/invite") view=InvitePage />
                <Route path=path!("/tenants/connect") view=ConnectTenantPage />
                <ParentRoute path=path!("/t/:tenant") view=TenantLayout>
                    <Route path=path!("") view=TenantHome />
                    <Route path=path!("backup-sets") view=BackupSetsPage />
                    <Route path=path!("backup-sets/:id") view=BackupSetPage />
                    <Route path=path!("policies") view=PoliciesPage />
                    <Route path=path!("policies/:id") view=PolicyDetailPage />
                    <Route path=path!("policies/:id/versions/:version") view=PolicyVersionPage />
                    <Route path=path!("policies/:id/diff") view=PolicyDiffPage />
                    <Route path=path!("restore/new") view=RestorePage />
                    <Route path=path!("runs") view=RunsPage />
                    <Route path=path!("runs/:id") view=RunDetailPage />
                    <Route path=path!("settings") view=TenantSettingsPage />
                    <Route path=path!("members") view=MembersPage />
                    <Route path=path!("audit") view=AuditPage />
                </ParentRoute>
            </Routes>
        </Router>
    }
}
