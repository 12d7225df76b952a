//! TenantAtlas: pick Microsoft Intune policies and add them to backup sets, asynchronously.
//!
//! The crate is built twice: with `ssr` as the server (axum + sqlx, see [`server`]) and with
//! `hydrate` as the browser bundle that hydrates the server-rendered pages.

pub mod api;
pub mod app;
#[cfg(feature = "hydrate")]
mod broken_page;
pub mod components;
pub mod domain;
#[cfg(feature = "ssr")]
pub mod graph_sim;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

/// Browser entry point: attaches the reactive app to the server-rendered HTML.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    broken_page::report_panics();
    // What `leptos::mount::hydrate_lazy` does (the page's chunk of the bundle is fetched before
    // the page hydrates), then `<body data-hydrated>`: it tells tests, and anyone debugging,
    // that the page is interactive, which with lazy routes is only once its chunk has arrived.
    wasm_bindgen_futures::spawn_local(async {
        let Some(body) = leptos::prelude::document().body() else {
            return;
        };
        leptos::mount::hydrate_from_async(body.clone(), app::App)
            .await
            .forget();
        let _ = body.set_attribute("data-hydrated", "");
    });
}
