//! The HTML shell, the router and the tenant layout.

use std::future::Future;

use leptos::{lazy, prelude::*};
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::{
    components::{ParentRoute, Route, Router, Routes},
    path, Lazy, LazyRoute,
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

/// The pages, in areas. Each area is one lazy function: its pages' code (components,
/// server-function calls, the deserializers of their answers) is cut from the main bundle into
/// chunks that the browser fetches when a page of the area is first shown, and that a
/// server-rendered page preloads ([docs/build.md](../docs/build.md)). One function per area, not
/// per page: the splitter makes a chunk of each set of split points sharing code, and with one
/// per page the backup set page needed 150 files. The shell, the router, the tenant layout and
/// what they use stay in the main module.
macro_rules! page_areas {
    ($($area:ident / $preload:ident: $Area:ident { $($route:ident => $page:ident),+ $(,)? })+) => {$(
        // A variant is named after the page component it shows.
        #[allow(clippy::enum_variant_names)]
        #[derive(Clone, Copy)]
        enum $Area {
            $($page),+
        }

        #[lazy]
        async fn $area(page: $Area) -> AnyView {
            match page {
                $($Area::$page => view! { <$page /> }.into_any()),+
            }
        }

        $(
            struct $route;

            impl LazyRoute for $route {
                fn data() -> Self {
                    Self
                }

                fn view(_this: Self) -> impl Future<Output = AnyView> {
                    $area($Area::$page)
                }

                // The router awaits this before it hydrates a page, which only works once the
                // area's chunk is there. `$preload` is what `#[lazy]` names the loader of
                // `$area`'s chunk (`__preload_<name>`), in the browser only.
                fn preload() -> impl Future<Output = ()> {
                    async {
                        #[cfg(target_arch = "wasm32")]
                        $preload().await;
                    }
                }
            }
        )+
    )+};
}

page_areas! {
    account_pages / __preload_account_pages: AccountPage {
        HomeRoute => HomePage,
        SignInRoute => SignInPage,
        InviteRoute => InvitePage,
        ConnectTenantRoute => ConnectTenantPage,
    }
    backup_pages / __preload_backup_pages: BackupPage {
        BackupSetsRoute => BackupSetsPage,
        BackupSetRoute => BackupSetPage,
        RestoreRoute => RestorePage,
    }
    policy_pages / __preload_policy_pages: PolicyPage {
        PoliciesRoute => PoliciesPage,
        PolicyDetailRoute => PolicyDetailPage,
        PolicyVersionRoute => PolicyVersionPage,
        PolicyDiffRoute => PolicyDiffPage,
    }
    run_pages / __preload_run_pages: RunPage {
        RunsRoute => RunsPage,
        RunDetailRoute => RunDetailPage,
    }
    admin_pages / __preload_admin_pages: AdminPage {
        TenantSettingsRoute => TenantSettingsPage,
        MembersRoute => MembersPage,
        AuditRoute => AuditPage,
    }
}

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
    view! {
        <Stylesheet id="leptos" href="/pkg/tenantatlas.css" />
        <Title formatter=|page: String| format!("{page} · TenantAtlas") />
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/") view={Lazy::<HomeRoute>::new()} />
                <Route path=path!("/sign-in") view={Lazy::<SignInRoute>::new()} />
                <Route path=path!("/invite") view={Lazy::<InviteRoute>::new()} />
                <Route path=path!("/tenants/connect") view={Lazy::<ConnectTenantRoute>::new()} />
                <ParentRoute path=path!("/t/:tenant") view=TenantLayout>
                    <Route path=path!("") view=TenantHome />
                    <Route path=path!("backup-sets") view={Lazy::<BackupSetsRoute>::new()} />
                    <Route path=path!("backup-sets/:id") view={Lazy::<BackupSetRoute>::new()} />
                    <Route path=path!("policies") view={Lazy::<PoliciesRoute>::new()} />
                    <Route path=path!("policies/:id") view={Lazy::<PolicyDetailRoute>::new()} />
                    <Route path=path!("policies/:id/versions/:version") view={Lazy::<PolicyVersionRoute>::new()} />
                    <Route path=path!("policies/:id/diff") view={Lazy::<PolicyDiffRoute>::new()} />
                    <Route path=path!("restore/new") view={Lazy::<RestoreRoute>::new()} />
                    <Route path=path!("runs") view={Lazy::<RunsRoute>::new()} />
                    <Route path=path!("runs/:id") view={Lazy::<RunDetailRoute>::new()} />
                    <Route path=path!("settings") view={Lazy::<TenantSettingsRoute>::new()} />
                    <Route path=path!("members") view={Lazy::<MembersRoute>::new()} />
                    <Route path=path!("audit") view={Lazy::<AuditRoute>::new()} />
                </ParentRoute>
            </Routes>
        </Router>
    }
}
