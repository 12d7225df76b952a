//! `/tenants/connect`: connect a Microsoft Intune tenant (instance admins), who becomes its
//! owner. Anyone else, or a server without a secret key, sees the form disabled with the reason.

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::api::auth::current_user;
use crate::api::tenants::{can_connect_tenant, ConnectTenant};
use crate::components::{
    check_text, form_errors, AppHeader, ErrorMessage, Field, Loading, MeResource, NeedsRole,
    SecretFields,
};
use crate::domain::capability::ADMIN_LABEL;
use crate::domain::routes;
use crate::domain::tenant::{
    parse_client_id, parse_tenant_field, parse_tenant_name, CLIENT_ID_MAX_CHARS, NO_SECRET_KEY,
    TENANT_NAME_MAX_CHARS,
};

/// The page: header, an explanation and the form.
#[component]
pub fn ConnectTenantPage() -> impl IntoView {
    let me: MeResource = Resource::new(|| (), |()| current_user());
    // Why the form cannot be used, if it cannot: asked of the server only for an admin, so the
    // page itself never fails.
    let blocked = Resource::new(
        || (),
        move |()| async move {
            if !me.await?.is_admin {
                return Ok(Some(Blocked::NotAdmin));
            }
            Ok((!can_connect_tenant().await?).then_some(Blocked::NoSecretKey))
        },
    );
    view! {
        <Title text="Connect a tenant" />
        <AppHeader me />
        <main class="page narrow">
            <p class="breadcrumb">
                <a href="/">"← Your tenants"</a>
            </p>
            <h1>"Connect a tenant"</h1>
            <p class="muted">
                "TenantAtlas reads the tenant through an app registration in Microsoft Entra ID. "
                "Enter its ids and a client secret; the secret is stored encrypted and never shown "
                "again. You become the tenant's owner."
            </p>
            <Transition fallback=|| view! { <Loading what="the form" /> }>
                {move || Suspend::new(async move {
                    match blocked.await {
                        Ok(blocked) => view! { <ConnectTenantForm blocked /> }.into_any(),
                        Err(error) => view! { <ErrorMessage error /> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

/// Why the form cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Blocked {
    NotAdmin,
    NoSecretKey,
}

impl Blocked {
    fn reason(self) -> &'static str {
        match self {
            Self::NotAdmin => ADMIN_LABEL,
            Self::NoSecretKey => NO_SECRET_KEY,
        }
    }
}

/// The form. `blocked` is the reason it cannot be used (not an admin, no secret key): then it
/// is disabled with that reason above its button.
#[component]
fn ConnectTenantForm(blocked: Option<Blocked>) -> impl IntoView {
    let blocked = blocked.map(Blocked::reason);
    let action = ServerAction::<ConnectTenant>::new();
    let result = action.value();
    let (field, other_error) = form_errors(
        Signal::derive(move || result.get().and_then(Result::err)),
        &["tenant", "name", "client_id", "secret", "expires_on"],
    );
    // Connected: open the new tenant (a full load, so the header lists it).
    Effect::new(move |_| {
        if let Some(Ok(tenant)) = result.get() {
            let _ = window()
                .location()
                .set_href(&routes::tenant_home(&tenant.external_id));
        }
    });
    let disabled = blocked.is_some();
    view! {
        <ActionForm action>
            <fieldset
                class="create-form"
                data-testid="connect-tenant"
                disabled=move || disabled || action.pending().get()
            >
                <legend>"App registration"</legend>
                <Field
                    id="connect-tenant-id"
                    name="tenant"
                    label="Tenant id"
                    hint="The directory (tenant) id, a GUID."
                    required=true
                    maxlength=36
                    check=|raw| check_text(parse_tenant_field(raw))
                    server=field("tenant")
                />
                <Field
                    id="connect-name"
                    name="name"
                    label="Display name"
                    required=true
                    maxlength=TENANT_NAME_MAX_CHARS
                    check=|raw| check_text(parse_tenant_name(raw))
                    server=field("name")
                />
                <Field
                    id="connect-client-id"
                    name="client_id"
                    label="Client id"
                    hint="The application (client) id of the app registration."
                    required=true
                    maxlength=CLIENT_ID_MAX_CHARS
                    check=|raw| check_text(parse_client_id(raw))
                    server=field("client_id")
                />
                <SecretFields
                    ids=("connect-secret", "connect-expires-on")
                    secret_label="Client secret"
                    expires_label="Secret expires on (optional)"
                    secret_error=field("secret")
                    expires_error=field("expires_on")
                />
                <button
                    type="submit"
                    class="primary"
                    class:refused=disabled
                    aria-describedby=blocked.map(|_| "connect-needs")
                >
                    {move || if action.pending().get() { "Connecting…" } else { "Connect tenant" }}
                </button>
                {blocked.map(|reason| view! { <NeedsRole id="connect-needs" reason /> })}
                {move || other_error().map(|error| view! { <ErrorMessage error /> })}
            </fieldset>
        </ActionForm>
    }
}
