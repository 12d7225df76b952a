//! `/sign-in`: e-mail and password.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use crate::api::auth::SignIn;
use crate::components::ErrorMessage;

/// The sign-in form; afterwards the browser goes to `next` (a local path) or the start page.
#[component]
pub fn SignInPage() -> impl IntoView {
    let query = use_query_map();
    let next = move || query.read().get("next").unwrap_or_else(|| "/".to_owned());
    let action = ServerAction::<SignIn>::new();
    let error = move || action.value().get().and_then(Result::err);
    let email_error = move || error().and_then(|e| e.field_message("email"));
    let other_error = move || error().filter(|e| e.field_message("email").is_none());

    view! {
        <Title text="Sign in" />
        <header class="app-header">
            <span class="brand">"TenantAtlas"</span>
        </header>
        <main class="page narrow">
            <h1>"Sign in"</h1>
            <ActionForm action>
                <fieldset class="create-form" disabled=move || action.pending().get()>
                    <input type="hidden" name="next" value=next />
                    <label for="sign-in-email">"E-mail"</label>
                    <input
                        id="sign-in-email"
                        name="email"
                        type="email"
                        required
                        autocomplete="username"
                        aria-describedby="sign-in-email-error"
                    />
                    <p id="sign-in-email-error" class="field-error" role="alert">
                        {email_error}
                    </p>
                    <label for="sign-in-password">"Password"</label>
                    <input
                        id="sign-in-password"
                        name="password"
                        type="password"
                        required
                        autocomplete="current-password"
                    />
                    <button type="submit" class="primary">
                        {move || if action.pending().get() { "Signing in…" } else { "Sign in" }}
                    </button>
                    {move || other_error().map(|error| view! { <ErrorMessage error /> })}
                </fieldset>
            </ActionForm>
        </main>
    }
}
