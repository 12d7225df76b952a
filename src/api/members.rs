//! A tenant's members: owners and managers read them, owners change them.

use leptos::prelude::*;

use crate::domain::{AddMemberOutcome, AppError, Member};

/// The tenant's members with their role and when they were added.
#[server(prefix = "/api", endpoint = "members/list")]
pub async fn list_members(tenant: String) -> Result<Vec<Member>, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::members;
    in_tenant(&tenant, Capability::ReadAuditLog, |ctx, state| async move {
        members::list(&state.db, &ctx.scope).await
    })
    .await
}

/// Adds the address as a member with `role`: at once when it has an account (409 if already a
/// member), else by an invitation whose one-time link is in the answer (409 when the server has
/// no `--public-url` to build it on).
#[server(prefix = "/api", endpoint = "members/add")]
pub async fn add_member(
    tenant: String,
    email: String,
    role: String,
) -> Result<AddMemberOutcome, AppError> {
    use crate::domain::{Capability, Email};
    use crate::server::auth::in_tenant;
    use crate::server::tenants::members;
    in_tenant(
        &tenant,
        Capability::ManageMembers,
        |ctx, state| async move {
            let email = Email::parse(&email)?;
            let role = parse_role(&role)?;
            members::add_or_invite(
                &state.db,
                &ctx.scope,
                ctx.user_id,
                &email,
                role,
                state.settings.public_url.as_deref(),
            )
            .await
        },
    )
    .await
}

/// Changes a member's role (409 when it would leave the tenant without an owner).
#[server(prefix = "/api", endpoint = "members/change-role")]
pub async fn change_member_role(
    tenant: String,
    user_id: i64,
    role: String,
) -> Result<(), AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::members;
    in_tenant(
        &tenant,
        Capability::ManageMembers,
        |ctx, state| async move {
            let role = parse_role(&role)?;
            members::change_role(&state.db, &ctx.scope, ctx.user_id, user_id, role).await
        },
    )
    .await
}

/// Removes a member (409 when it is the last owner). Their sessions lose the tenant at once.
#[server(prefix = "/api", endpoint = "members/remove")]
pub async fn remove_member(tenant: String, user_id: i64) -> Result<(), AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::tenants::members;
    in_tenant(&tenant, Capability::ManageMembers, |ctx, state| async move {
        members::remove(&state.db, &ctx.scope, ctx.user_id, user_id).await
    })
    .await
}

#[cfg(feature = "ssr")]
fn parse_role(raw: &str) -> Result<crate::domain::Role, AppError> {
    crate::domain::Role::parse(raw.trim())
        .ok_or_else(|| AppError::invalid("role", "Choose owner, manager, operator or readonly."))
}
