//! The reason beside an action the member's role does not allow.

use leptos::prelude::*;

/// Visible text such as "Needs operator or above", next to a disabled action. A disabled
/// control cannot take focus, so a tooltip on it would never be read; the control names this
/// text (its `id`) in `aria-describedby` instead.
#[component]
pub fn NeedsRole(#[prop(into)] id: String, reason: &'static str) -> impl IntoView {
    view! {
        <p class="needs-role" id=id data-testid="needs-role">
            {reason}
        </p>
    }
}
