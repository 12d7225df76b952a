//! The notification bell: the signed-in user's notifications in a tenant, and dismissing them.
//! Any member may read and dismiss their own (readonly included): it changes no tenant data.

use leptos::prelude::*;

use crate::domain::{AppError, NotificationList};

/// The user's newest notifications in the tenant with the unread count.
#[server(prefix = "/api", endpoint = "notifications/list")]
pub async fn list_notifications(tenant: String) -> Result<NotificationList, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::notifications;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        notifications::list(&state.db, &ctx, notifications::LIST_LIMIT).await
    })
    .await
}

/// Marks one of the user's own notifications read; any other id is 404 and changes nothing.
#[server(prefix = "/api", endpoint = "notifications/mark-read")]
pub async fn mark_notification_read(tenant: String, id: i64) -> Result<(), AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::notifications;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        notifications::mark_read(&state.db, &ctx, id).await
    })
    .await
}

/// **Mark all read**: marks the unread notifications the bell listed, `ids` (comma-separated,
/// at most the list's limit; more, or not integers: 422 and nothing marked), from the list read
/// at `as_of` (milliseconds since the epoch). One written or committed after that list stays
/// unread; so do unread ones past a full page unless they are older than the page by a margin
/// (see [`crate::server::notifications::MarkAll`]). A page from before `ids`: without them,
/// those not newer than `as_of`; without either, all. Answers how many were unread.
#[server(prefix = "/api", endpoint = "notifications/mark-all-read")]
pub async fn mark_all_notifications_read(
    tenant: String,
    #[server(default)] ids: String,
    #[server(default)] as_of: Option<i64>,
) -> Result<u64, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::notifications::{self, MarkAll};
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        let what = MarkAll::parse(&ids, as_of)?;
        notifications::mark_all_read(&state.db, &ctx, what).await
    })
    .await
}
