//! Loading, empty and error states, the same on every page.

use leptos::prelude::*;

use crate::domain::AppError;

/// Shown while data loads.
#[component]
pub fn Loading(#[prop(into)] what: String) -> impl IntoView {
    view! {
        <p class="loading" role="status" aria-live="polite">
            "Loading " {what} "…"
        </p>
    }
}

/// Shown when a list has nothing in it; `hint` says what to do next.
#[component]
pub fn EmptyState(#[prop(into)] title: String, #[prop(into)] hint: String) -> impl IntoView {
    view! {
        <div class="empty-state">
            <p class="empty-title">{title}</p>
            <p class="empty-hint">{hint}</p>
        </div>
    }
}

/// Shown when loading failed; the text is the error's user-safe message.
#[component]
pub fn ErrorMessage(error: AppError) -> impl IntoView {
    view! {
        <p class="error-message" role="alert">
            {error.to_string()}
        </p>
    }
}

/// A part of a page the member's role does not open: the reason, as beside a disabled action.
/// Any other failure is an [`ErrorMessage`].
#[component]
pub fn RefusedOrError(error: AppError) -> impl IntoView {
    match error {
        AppError::Forbidden(reason) => view! {
            <p class="needs-role" data-testid="needs-role">
                {reason}
            </p>
        }
        .into_any(),
        error => view! { <ErrorMessage error /> }.into_any(),
    }
}
