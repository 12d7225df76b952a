//! The header of signed-in pages: brand, tenant switcher, user, navigation, the notification
//! bell (inside a tenant) and sign-out.

use leptos::prelude::*;
use leptos_router::components::A;

use super::NotificationBell;
use crate::api::auth::SignOut;
use crate::domain::{routes, AppError, Capability, CurrentUser, Membership};

/// The signed-in user, loaded once per page by the layout and shared with its pages.
pub type MeResource = Resource<Result<CurrentUser, AppError>>;

/// The tenant switcher: the select only chooses and **Switch** goes there (a full load: the
/// server checks membership before rendering). A select that went on `change` would leave the
/// page on the first arrow key (Chromium fires `change` for an arrow on a closed select), and
/// with it whatever was being filled in. The button is there only when there is somewhere else
/// to go.
#[component]
fn TenantSwitcher(memberships: Vec<Membership>, current: String) -> impl IntoView {
    let several = memberships.len() > 1;
    // The URL may spell the tenant in another case than its id (`/t/ABC…/`): the same tenant.
    let options = memberships
        .into_iter()
        .map(|m| {
            let selected = m.tenant.external_id.eq_ignore_ascii_case(&current);
            view! {
                <option value=m.tenant.external_id selected=selected>
                    {m.tenant.display_name}
                </option>
            }
        })
        .collect_view();
    // Switch reads what the select shows when clicked, whatever chose it.
    let select = NodeRef::<leptos::html::Select>::new();
    view! {
        <span class="tenant-switch">
            <select
                class="tenant-switcher"
                aria-label="Tenant"
                data-testid="tenant-switcher"
                node_ref=select
            >
                {options}
            </select>
            {several.then(|| view! {
                <button
                    type="button"
                    class="tenant-switch-go"
                    data-testid="switch-tenant"
                    on:click=move |_| {
                        if let Some(select) = select.get_untracked() {
                            let _ = window().location().set_href(&routes::tenant_home(&select.value()));
                        }
                    }
                >
                    "Switch"
                    <span class="visually-hidden">" tenant"</span>
                </button>
            })}
        </span>
    }
}

/// Header with the tenant switcher and the notification bell (when `tenant` is the current
/// tenant's external id).
#[component]
pub fn AppHeader(me: MeResource, #[prop(optional)] tenant: Option<Memo<String>>) -> impl IntoView {
    let sign_out = ServerAction::<SignOut>::new();
    view! {
        <header class="app-header">
            <a class="brand" href="/">
                "TenantAtlas"
            </a>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let user = me.await.ok()?;
                    let current = tenant.map(|t| t.get_untracked()).unwrap_or_default();
                    let switcher = (!current.is_empty()).then(|| {
                        view! { <TenantSwitcher memberships=user.memberships.clone() current /> }
                    });
                    Some(view! {
                        {switcher}
                        <span class="user-name" data-testid="user-name">{user.display_name}</span>
                    })
                })}
            </Transition>
            {tenant
                .map(|tenant| {
                    view! {
                        <nav aria-label="Main">
                            <A href=move || routes::backup_sets(&tenant.get())>"Backup sets"</A>
                            <A href=move || routes::policies(&tenant.get(), "")>"Policies"</A>
                            <A href=move || routes::runs(&tenant.get(), "")>"Runs"</A>
                            <Transition fallback=|| ()>
                                {move || Suspend::new(async move {
                                    // Members and the audit log, for the roles that read them.
                                    let role = me.await.ok()?.role_in(&tenant.get_untracked())?;
                                    role.can(Capability::ReadAuditLog).then(|| view! {
                                        <A href=move || routes::members(&tenant.get())>"Members"</A>
                                        <A href=move || routes::audit(&tenant.get(), "")>"Audit"</A>
                                    })
                                })}
                            </Transition>
                            <A href=move || routes::tenant_settings(&tenant.get())>"Settings"</A>
                        </nav>
                    }
                })}
            {tenant.map(|tenant| view! { <NotificationBell tenant /> })}
            <ActionForm action=sign_out>
                <button type="submit" class="link-button">"Sign out"</button>
            </ActionForm>
        </header>
    }
}
