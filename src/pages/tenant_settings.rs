//! `/t/{tenant}/settings`: the tenant's connection. Its owner sees the app registration, where
//! the client secret lives and since when (never the secret), replaces the secret with its
//! expiry date, and disconnects or reconnects the tenant.

use leptos::prelude::*;
use leptos_meta::Title;

use super::tenant_layout::{fetch_if_held, use_connection_changed, use_tenant, use_tenant_page};
use crate::api::tenants::{get_tenant_settings, DisconnectTenant, ReconnectTenant, ReplaceSecret};
use crate::components::{
    check_text, form_errors, or_absent, provide_toasts, ConfirmButton, ConnectionCheck,
    ErrorMessage, Field, Loading, RefusedOrError, SecretFields, Toasts,
};
use crate::domain::tenant::{expiry_words, parse_client_id, CLIENT_ID_MAX_CHARS, NO_SECRET_KEY};
use crate::domain::{Capability, TenantSettings};

/// The settings page: the connection (owner), and the place of the connection check.
#[component]
pub fn TenantSettingsPage() -> impl IntoView {
    // The connection check says how a check it watched ended, with a link to its run.
    provide_toasts();
    let tenant = use_tenant();
    let replace = ServerAction::<ReplaceSecret>::new();
    let disconnect = ServerAction::<DisconnectTenant>::new();
    let reconnect = ServerAction::<ReconnectTenant>::new();
    let page = use_tenant_page();
    let settings = Resource::new(
        move || {
            (
                tenant.get(),
                replace.version().get(),
                disconnect.version().get(),
                reconnect.version().get(),
            )
        },
        move |(tenant, ..)| {
            fetch_if_held(page, Capability::ManageMembers, move || {
                get_tenant_settings(tenant)
            })
        },
    );
    // After a change, the banners above the page read the connection again.
    let changed = use_connection_changed();
    Effect::new(move |first: Option<()>| {
        replace.version().track();
        disconnect.version().track();
        reconnect.version().track();
        if first.is_some() {
            changed.update(|n| *n += 1);
        }
    });
    let switch = ConnectionSwitch {
        disconnect,
        reconnect,
        switched: StoredValue::new(false),
    };

    view! {
        <Title text="Settings" />
        <h1>"Settings"</h1>
        <h2 id="connection-title" tabindex="-1">"Connection"</h2>
        <Transition fallback=|| view! { <Loading what="the connection" /> }>
            {move || Suspend::new(async move {
                match settings.await {
                    Ok(settings) => view! {
                        <ConnectionFacts settings=settings.clone() />
                        <ReplaceSecretForm action=replace tenant can_store=settings.can_store_secrets />
                        <SwitchConnection switch tenant disconnected=settings.disconnected />
                    }.into_any(),
                    Err(error) => {
                        switch.use_after_error();
                        view! { <RefusedOrError error /> }.into_any()
                    }
                }
            })}
        </Transition>
        // Owners and managers: a run that gets a token and reads one page of each policy type,
        // and the permission report.
        <section id="connection-check" data-testid="connection-check">
            <ConnectionCheck tenant on_checked=move || changed.update(|n| *n += 1) />
        </section>
        <Toasts />
    }
}

/// What the owner knows about the connection.
#[component]
fn ConnectionFacts(settings: TenantSettings) -> impl IntoView {
    let expires = match (settings.secret_expires_on, settings.expiry_warning_days) {
        (Some(day), Some(left)) => format!("{day} ({})", expiry_words(left)),
        (Some(day), None) => day.to_string(),
        (None, _) => "Not entered".to_owned(),
    };
    view! {
        <dl class="facts" data-testid="connection-facts">
            <dt>"Tenant id"</dt>
            <dd class="mono">{settings.tenant.external_id}</dd>
            <dt>"Display name"</dt>
            <dd>{settings.tenant.display_name}</dd>
            <dt>"Client id"</dt>
            <dd class="mono">{or_absent(settings.client_id)}</dd>
            <dt>"Client secret"</dt>
            <dd data-testid="secret-source">{settings.secret.describe()}</dd>
            <dt>"Secret expires"</dt>
            <dd data-testid="secret-expires">{expires}</dd>
            <dt>"Status"</dt>
            <dd data-testid="connection-status">
                {if settings.disconnected { "Disconnected: no run can start" } else { "Connected" }}
            </dd>
        </dl>
    }
}

/// A new client secret with its expiry date, and optionally a new client id. Disabled, with
/// the reason, when the server has no key to store a secret with.
#[component]
fn ReplaceSecretForm(
    action: ServerAction<ReplaceSecret>,
    tenant: Memo<String>,
    can_store: bool,
) -> impl IntoView {
    let result = action.value();
    let error = Signal::derive(move || result.get().and_then(Result::err));
    let (field, other_error) = form_errors(error, &["secret", "client_id", "expires_on"]);
    let saved = move || matches!(result.get(), Some(Ok(()))).then_some("New secret saved.");
    view! {
        <ActionForm action>
            <fieldset
                class="create-form"
                data-testid="replace-secret"
                disabled=move || !can_store || action.pending().get()
            >
                <legend>"Replace the client secret"</legend>
                {(!can_store).then(|| view! { <p class="notice">{NO_SECRET_KEY}</p> })}
                <input type="hidden" name="tenant" value=move || tenant.get() />
                <SecretFields
                    ids=("replace-secret", "replace-expires-on")
                    secret_label="New client secret"
                    expires_label="It expires on (optional)"
                    secret_error=field("secret")
                    expires_error=field("expires_on")
                />
                <Field
                    id="replace-client-id"
                    name="client_id"
                    label="New client id (optional)"
                    hint="Leave empty to keep the current one."
                    maxlength=CLIENT_ID_MAX_CHARS
                    check=|raw| (!raw.trim().is_empty()).then(|| check_text(parse_client_id(raw))).flatten()
                    server=field("client_id")
                />
                <button type="submit" class="primary">
                    {move || if action.pending().get() { "Saving…" } else { "Save new secret" }}
                </button>
                {move || other_error().map(|error| view! { <ErrorMessage error /> })}
                <p class="form-success" role="status" aria-live="polite">{saved}</p>
            </fieldset>
        </ActionForm>
    }
}

/// The two actions that switch the connection.
#[derive(Clone, Copy)]
struct ConnectionSwitch {
    disconnect: ServerAction<DisconnectTenant>,
    reconnect: ServerAction<ReconnectTenant>,
    /// Set when one was confirmed, until the button drawn after its answer has the focus: the
    /// confirmation and its button go with the settings read before.
    switched: StoredValue<bool>,
}

impl ConnectionSwitch {
    /// The settings could not be read after a confirmed switch was answered, and their error is
    /// drawn instead of its button: the focus goes to the section's heading, and nothing is
    /// left waiting to take it when the settings are next drawn (after Replace secret, say).
    fn use_after_error(self) {
        let Self {
            disconnect,
            reconnect,
            switched,
        } = self;
        Effect::new(move |_| {
            if !switched.get_value()
                || disconnect.pending().get_untracked()
                || reconnect.pending().get_untracked()
            {
                return;
            }
            switched.set_value(false);
            request_animation_frame(|| focus_selector("#connection-title"));
        });
    }
}

/// Gives the focus to the button with the test id `testid`, in the browser.
fn focus_button(testid: &'static str) {
    focus_selector(&format!("button[data-testid={testid}]"));
}

/// Gives the focus to the element `selector` finds, in the browser.
fn focus_selector(selector: &str) {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        if let Ok(Some(element)) = document().query_selector(selector) {
            if let Ok(element) = element.dyn_into::<leptos::web_sys::HtmlElement>() {
                let _ = element.focus();
            }
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = selector;
}

/// Disconnect (its data is kept, no run starts) or reconnect, each after a confirmation.
#[component]
fn SwitchConnection(
    switch: ConnectionSwitch,
    tenant: Memo<String>,
    disconnected: bool,
) -> impl IntoView {
    let ConnectionSwitch {
        disconnect,
        reconnect,
        switched,
    } = switch;
    // Drawn after a confirmed switch was answered (the settings are read again): the button
    // now in the confirmed one's place gets the focus, once it is in the page.
    Effect::new(move |_| {
        if !switched.get_value()
            || disconnect.pending().get_untracked()
            || reconnect.pending().get_untracked()
        {
            return;
        }
        switched.set_value(false);
        let testid = if disconnected {
            "reconnect-tenant"
        } else {
            "disconnect-tenant"
        };
        request_animation_frame(move || focus_button(testid));
    });
    let failed = move || {
        disconnect
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| reconnect.value().get().and_then(Result::err))
    };
    let button = if disconnected {
        view! {
            <ConfirmButton
                label="Reconnect tenant"
                question="Reconnect this tenant? Runs can start again."
                confirm="Yes, reconnect"
                class="primary"
                testid="reconnect-tenant"
                pending=reconnect.pending()
                on_confirm=move || {
                    switched.set_value(true);
                    reconnect.dispatch(ReconnectTenant { tenant: tenant.get_untracked() });
                }
            />
        }
        .into_any()
    } else {
        view! {
            <ConfirmButton
                label="Disconnect tenant"
                question="Disconnect this tenant? Its data is kept, and no run can start until it is reconnected."
                confirm="Yes, disconnect"
                testid="disconnect-tenant"
                pending=disconnect.pending()
                on_confirm=move || {
                    switched.set_value(true);
                    disconnect.dispatch(DisconnectTenant { tenant: tenant.get_untracked() });
                }
            />
        }
        .into_any()
    };
    view! {
        <h2>{if disconnected { "Reconnect" } else { "Disconnect" }}</h2>
        <div class="action-row">{button}</div>
        {move || failed().map(|error| view! { <ErrorMessage error /> })}
    }
}
