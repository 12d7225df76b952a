//! A labelled form field with its message line: the browser checks the value when it changes
//! (with the rules the server applies, from `domain/`), and the server's message for the field
//! replaces it after a submit. Whichever came last is shown.

use leptos::prelude::*;

use crate::domain::tenant::{check_client_secret, CLIENT_SECRET_MAX_CHARS};
use crate::domain::{AppError, Day};

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

/// The message a browser-side check shows for a parse result: the refusal's text, or `None`.
pub fn check_text(result: Result<impl Sized, AppError>) -> Option<String> {
    result.err().map(|error| error.to_string())
}

/// The message for each field of a form's last refusal (`error`), and the refusal when it was
/// about something else than `fields` (shown above the form).
pub fn form_errors(
    error: Signal<Option<AppError>>,
    fields: &'static [&'static str],
) -> (
    impl Fn(&'static str) -> Signal<Option<String>> + Copy,
    impl Fn() -> Option<AppError> + Copy,
) {
    let error = move || error.get();
    let field = move |name: &'static str| {
        Signal::derive(move || error().and_then(|e| e.field_message(name)))
    };
    let other = move || error().filter(|e| !fields.iter().any(|f| e.field_message(f).is_some()));
    (field, other)
}

/// A client secret and the day it expires, as the connect and settings forms ask for them
/// (fields `secret` and `expires_on`).
#[component]
pub fn SecretFields(
    /// The inputs' ids.
    ids: (&'static str, &'static str),
    secret_label: &'static str,
    expires_label: &'static str,
    #[prop(into)] secret_error: Signal<Option<String>>,
    #[prop(into)] expires_error: Signal<Option<String>>,
) -> impl IntoView {
    view! {
        <Field
            id=ids.0
            name="secret"
            label=secret_label
            kind="password"
            autocomplete="new-password"
            required=true
            maxlength=CLIENT_SECRET_MAX_CHARS
            check=|raw| check_text(check_client_secret(raw))
            server=secret_error
        />
        <Field
            id=ids.1
            name="expires_on"
            label=expires_label
            hint="The app warns 30 days before."
            kind="date"
            check=|raw| (!raw.is_empty()).then(|| check_text(Day::parse(raw))).flatten()
            server=expires_error
        />
    }
}
