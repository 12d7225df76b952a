//! The options of a "Type" filter: "All types" (the empty value) and one per policy type, the
//! current value selected, so every page filters by the same spellings and words.

use leptos::prelude::*;

use crate::domain::PolicyType;

/// `<option>`s for a `<select>`; `current` is the filter's value (empty for all types).
#[component]
pub fn PolicyTypeOptions(#[prop(into)] current: Signal<String>) -> impl IntoView {
    view! {
        <option value="" selected=move || current.with(String::is_empty)>"All types"</option>
        {PolicyType::ALL
            .into_iter()
            .map(|policy_type| {
                let value = policy_type.as_str();
                view! {
                    <option value=value selected=move || current.with(|c| c == value)>
                        {policy_type.label()}
                    </option>
                }
            })
            .collect_view()}
    }
}

/// `<option>`s of a "Platform" filter after its "All platforms": the tenant's `platforms`, the
/// `current` one selected.
#[component]
pub fn PlatformOptions(platforms: Vec<String>, current: String) -> impl IntoView {
    platforms
        .into_iter()
        .map(|name| {
            let selected = name == current;
            let label = name.clone();
            view! { <option value=name selected=selected>{label}</option> }
        })
        .collect_view()
}
