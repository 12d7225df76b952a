//! `/invite#token=…`: where an invitation link leads. The token is in the fragment, which the
//! browser never sends to a server; this page reads it there, shows what the invitation is for,
//! and posts it with the invitee's name and password. The account is made, signed in, and goes
//! to the tenant. An address that has an account already joins with it instead, signed in.

use leptos::{html, prelude::*};
use leptos_meta::Title;

use crate::api::invitations::{preview_invitation, AcceptInvitation};
use crate::components::{ErrorMessage, Field, Loading};
use crate::domain::invitation::{
    parse_display_name, DISPLAY_NAME_MAX_CHARS, PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS,
};
use crate::domain::{AppError, InvitationPreview};

/// The token in the page's fragment (`#token=…`), if any.
fn fragment_token() -> Option<String> {
    let hash = window().location().hash().ok()?;
    hash.trim_start_matches('#')
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// The accept page.
#[component]
pub fn InvitePage() -> impl IntoView {
    // Only the browser knows the fragment, so the invitation is read there, by an effect (which
    // never runs on the server: a resource the server cannot resolve would be read by a render
    // that a dropped request may already have left).
    let invitation = RwSignal::new(None::<Option<(String, Result<InvitationPreview, AppError>)>>);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            let read = match fragment_token() {
                Some(token) => Some((token.clone(), preview_invitation(token).await)),
                None => None,
            };
            invitation.try_set(Some(read));
        });
    });
    view! {
        <Title text="Accept an invitation" />
        <header class="app-header">
            <span class="brand">"TenantAtlas"</span>
        </header>
        <main class="page narrow">
            <h1>"Accept an invitation"</h1>
            {move || match invitation.get() {
                None => view! { <Loading what="the invitation" /> }.into_any(),
                Some(Some((token, Ok(preview)))) if preview.existing_account => view! {
                    <InvitationSummary preview />
                    <JoinForm token />
                }.into_any(),
                Some(Some((token, Ok(preview)))) => view! {
                    <InvitationSummary preview />
                    <AcceptForm token />
                }.into_any(),
                Some(Some((_, Err(error)))) => view! { <ErrorMessage error /> }.into_any(),
                Some(None) => {
                    let error = AppError::NotFound(
                        "This page needs the whole link of an invitation (it ends with \
                         #token=…). Open the link you were given."
                            .into(),
                    );
                    view! { <ErrorMessage error /> }.into_any()
                }
            }}
        </main>
    }
}

/// Which tenant, which role, and the address the account signs in with.
#[component]
fn InvitationSummary(preview: InvitationPreview) -> impl IntoView {
    view! {
        <p data-testid="invitation-summary">
            "You are invited to " <strong>{preview.tenant_name}</strong> " as "
            <strong>{preview.role.label()}</strong> ". Your account signs in with "
            <strong data-testid="invitation-email">{preview.email}</strong> "."
        </p>
        <p class="muted small">"The invitation can be used until " {preview.expires_at.to_string()} "."</p>
    }
}

/// The address has an account: it joins while signed in as that account, with no new name or
/// password (the server refuses anyone else, and says so).
#[component]
fn JoinForm(token: String) -> impl IntoView {
    let action = ServerAction::<AcceptInvitation>::new();
    let error = move || action.value().get().and_then(Result::err);
    view! {
        <ActionForm action>
            <fieldset class="create-form" data-testid="join-invitation" disabled=move || action.pending().get()>
                <legend>"Join with your account"</legend>
                <p>
                    "An account signs in with this address already. Sign in with it in this "
                    "browser (" <a href="/sign-in">"sign in"</a> "), then open this link again and join."
                </p>
                <input type="hidden" name="token" value=token />
                <input type="hidden" name="name" value="" />
                <input type="hidden" name="password" value="" />
                <button type="submit" class="primary">
                    {move || if action.pending().get() { "Joining…" } else { "Join the tenant" }}
                </button>
                {move || error().map(|error| view! { <ErrorMessage error /> })}
            </fieldset>
        </ActionForm>
    }
}

fn message(result: Result<impl Sized, AppError>) -> Option<String> {
    result.err().map(|error| error.to_string())
}

/// Name, password and the password again; the token goes with them in the request body.
#[component]
fn AcceptForm(token: String) -> impl IntoView {
    let action = ServerAction::<AcceptInvitation>::new();
    let error = move || action.value().get().and_then(Result::err);
    let field = move |name: &'static str| {
        Signal::derive(move || error().and_then(|e| e.field_message(name)))
    };
    let other_error = move || {
        error().filter(|e| {
            !["name", "password"]
                .iter()
                .any(|f| e.field_message(f).is_some())
        })
    };
    let password = NodeRef::<html::Input>::new();
    let again = NodeRef::<html::Input>::new();
    // The browser refuses to submit while the two passwords differ.
    let compare = move |_| {
        if let (Some(password), Some(again)) = (password.get(), again.get()) {
            let differ = password.value() != again.value();
            again.set_custom_validity(if differ {
                "The two passwords differ."
            } else {
                ""
            });
        }
    };
    view! {
        <ActionForm action>
            <fieldset class="create-form" data-testid="accept-invitation" disabled=move || action.pending().get()>
                <legend>"Your account"</legend>
                <input type="hidden" name="token" value=token />
                <Field
                    id="invite-name"
                    name="name"
                    label="Your name"
                    autocomplete="name"
                    required=true
                    maxlength=DISPLAY_NAME_MAX_CHARS
                    check=|raw| message(parse_display_name(raw))
                    server=field("name")
                />
                <label for="invite-password">"Password"</label>
                <p id="invite-password-hint" class="field-hint">
                    "At least " {PASSWORD_MIN_CHARS} " characters."
                </p>
                <input
                    id="invite-password"
                    name="password"
                    type="password"
                    required
                    minlength=PASSWORD_MIN_CHARS
                    maxlength=PASSWORD_MAX_CHARS
                    autocomplete="new-password"
                    aria-describedby="invite-password-hint invite-password-error"
                    node_ref=password
                    on:input=compare
                />
                <p id="invite-password-error" class="field-error" role="alert">
                    {move || field("password").get()}
                </p>
                <label for="invite-password-again">"Password again"</label>
                <input
                    id="invite-password-again"
                    type="password"
                    required
                    autocomplete="new-password"
                    node_ref=again
                    on:input=compare
                />
                <button type="submit" class="primary">
                    {move || if action.pending().get() { "Creating your account…" } else { "Create account and sign in" }}
                </button>
                {move || other_error().map(|error| view! { <ErrorMessage error /> })}
            </fieldset>
        </ActionForm>
    }
}
