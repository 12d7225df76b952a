//! A labelled form field with its message line: the browser checks the value when it changes
//! (with the rules the server applies, from `domain/`), and the server's message for the field
//! replaces it after a submit. Whichever came last is shown.

use leptos::prelude::*;

/// A browser-side check of one field: the message to show, or `None` when the value is fine.
pub type FieldCheck = fn(&str) -> Option<String>;

/// One input of a form: `name` is what the form submits, `id` ties the label and the message
/// to it.
#[component]
pub fn Field(
    id: &'static str,
    name: &'static str,
    label: &'static str,
    /// The input's `type`.
    #[prop(default = "text")]
    kind: &'static str,
    #[prop(optional)] required: bool,
    #[prop(optional)] maxlength: Option<usize>,
    #[prop(default = "off")] autocomplete: &'static str,
    /// A line under the label, e.g. where to find the value.
    #[prop(optional)]
    hint: Option<&'static str>,
    #[prop(optional)] check: Option<FieldCheck>,
    /// The server's message for this field, after a submit.
    #[prop(into)]
    server: Signal<Option<String>>,
) -> impl IntoView {
    let shown = RwSignal::new(None::<String>);
    Effect::new(move |_| shown.set(server.get()));
    let error_id = format!("{id}-error");
    let hint_id = format!("{id}-hint");
    let described_by = match hint {
        Some(_) => format!("{hint_id} {error_id}"),
        None => error_id.clone(),
    };
    view! {
        <label for=id>{label}</label>
        {hint.map(|hint| view! { <p id=hint_id class="field-hint">{hint}</p> })}
        <input
            id=id
            name=name
            type=kind
            required=required
            maxlength=maxlength
            autocomplete=autocomplete
            aria-invalid=move || shown.get().is_some().to_string()
            aria-describedby=described_by
            on:change=move |ev| {
                if let Some(check) = check {
                    shown.set(check(&event_target_value(&ev)));
                }
            }
        />
        <p id=error_id class="field-error" role="alert">
            {move || shown.get()}
        </p>
    }
}
