//! Anything no route matches.

use leptos::prelude::*;
use leptos_meta::Title;

/// A 404 page (the status is set during server rendering).
#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::server::error::set_status(axum::http::StatusCode::NOT_FOUND);
    view! {
        <Title text="Not found" />
        <main class="page">
            <h1>"Page not found"</h1>
            <p>
                <a href="/">"Back to the tenants"</a>
            </p>
        </main>
    }
}
