//! The tenant's audit log (owners and managers).

use leptos::prelude::*;

use crate::domain::audit::AuditPage;
use crate::domain::AppError;

/// How many audit events a page holds.
pub const AUDIT_PAGE_SIZE: i64 = 50;

/// One page of the audit log, newest first. `action` (e.g. `member.add`) and `actor` (an
/// e-mail) filter when not empty; `before` (an event id from `next_before`) pages back, 0 is
/// the newest page.
#[server(prefix = "/api", endpoint = "audit/list")]
pub async fn list_audit(
    tenant: String,
    #[server(default)] action: String,
    #[server(default)] actor: String,
    #[server(default)] before: i64,
) -> Result<AuditPage, AppError> {
    use crate::domain::Capability;
    use crate::server::audit;
    use crate::server::auth::in_tenant;
    in_tenant(&tenant, Capability::ReadAuditLog, |ctx, state| async move {
        let before = match before {
            0 => None,
            id if id > 0 => Some(id),
            _ => return Err(AppError::invalid("before", "Not an event id.")),
        };
        let action = action.trim();
        if action.len() > 100 {
            return Err(AppError::invalid("action", "Not an action."));
        }
        // Read as accounts are stored (`Email::parse`: composed, lower-case), so any spelling
        // of an address names its account's events.
        let actor = match actor.trim() {
            "" => String::new(),
            given => crate::domain::Email::parse(given)
                .map_err(|_| AppError::invalid("actor", "Not an e-mail address."))?
                .as_str()
                .to_owned(),
        };
        audit::list(
            &state.db,
            &ctx.scope,
            action,
            &actor,
            before,
            AUDIT_PAGE_SIZE,
        )
        .await
    })
    .await
}
