//! A run's status as a coloured badge with the UI's word for it.

use leptos::prelude::*;

use crate::domain::RunStatus;

/// The status word users read ("Queued", "Partially succeeded", …), coloured by status.
#[component]
pub fn RunStatusBadge(status: RunStatus) -> impl IntoView {
    view! { <span class=format!("badge badge-{}", status.as_str())>{status.label()}</span> }
}
