//! The bell's notifications: list, mark one read, mark all read. Every query is scoped by the
//! signed-in user *and* the tenant of the request (both from the [`TenantContext`] that only
//! the authorization point builds), so nobody reads or dismisses another user's notifications,
//! nor their own from another tenant.

use sqlx::FromRow;

use super::auth::TenantContext;
use super::db::Db;
use crate::domain::notification::InternalLink;
use crate::domain::{AppError, Notification, NotificationLevel, NotificationList, Timestamp};

/// How many notifications the bell lists (the unread count covers all of them).
pub const LIST_LIMIT: i64 = 20;

/// A stored notification; its level and link are checked when it becomes a [`Notification`].
#[derive(FromRow)]
struct NotificationRow {
    id: i64,
    level: String,
    title: String,
    body: String,
    link: Option<String>,
    read_at: Option<Timestamp>,
    created_at: Timestamp,
}

impl From<NotificationRow> for Notification {
    fn from(row: NotificationRow) -> Self {
        let level = NotificationLevel::parse(&row.level).unwrap_or_else(|| {
            tracing::warn!(level = %row.level, "unknown notification level in the database");
            NotificationLevel::Info
        });
        // Only the worker writes links; one that is not a path of this app is dropped, not
        // shown.
        let link = row.link.and_then(|raw| {
            let link = InternalLink::parse(&raw);
            if link.is_none() {
                tracing::warn!(link = %raw, "notification link outside the app dropped");
            }
            link
        });
        Notification {
            id: row.id,
            level,
            title: row.title,
            body: row.body,
            link,
            read_at: row.read_at,
            created_at: row.created_at,
        }
    }
}

/// The user's notifications in the tenant (at most `limit`), unread first and newest first
/// within each, and their unread count. Unread first: the bell counts every unread one, so each
/// it counts is in the list (up to `limit`) and can be read there, however many newer ones were.
pub async fn list(db: &Db, ctx: &TenantContext, limit: i64) -> Result<NotificationList, AppError> {
    // Read before the rows: **Mark all read** sends it back and marks only what is not newer,
    // so a notification written while this list was read stays unread, never marked unseen.
    let as_of = Timestamp::now();
    let rows: Vec<NotificationRow> = sqlx::query_as(
        "SELECT id, level, title, body, link, read_at, created_at FROM notifications \
         WHERE user_id = $1 AND tenant_id = $2 \
         ORDER BY (read_at IS NULL) DESC, created_at DESC, id DESC LIMIT $3",
    )
    .bind(ctx.user_id)
    .bind(ctx.scope.id())
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let unread: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) AS n FROM notifications \
         WHERE user_id = $1 AND tenant_id = $2 AND read_at IS NULL",
    )
    .bind(ctx.user_id)
    .bind(ctx.scope.id())
    .fetch_one(db.pool())
    .await?;
    Ok(NotificationList {
        items: rows.into_iter().map(Notification::from).collect(),
        unread,
        as_of,
    })
}

/// Marks one of the user's notifications in the tenant read (again is fine: the first time
/// stays). Another user's or another tenant's id is 404, exactly like an id that never existed.
pub async fn mark_read(db: &Db, ctx: &TenantContext, id: i64) -> Result<(), AppError> {
    // Both engines count a matched row as affected even when `read_at` keeps its value.
    let matched = sqlx::query(
        "UPDATE notifications SET read_at = COALESCE(read_at, $1) \
         WHERE id = $2 AND user_id = $3 AND tenant_id = $4",
    )
    .bind(Timestamp::now().millis())
    .bind(id)
    .bind(ctx.user_id)
    .bind(ctx.scope.id())
    .execute(db.pool())
    .await?
    .rows_affected();
    if matched == 0 {
        return Err(AppError::NotFound(
            "This notification does not exist.".into(),
        ));
    }
    Ok(())
}

/// Marks the user's unread notifications in the tenant read; answers how many changed.
///
/// `seen` is the `as_of` of the list the user saw: only notifications not newer than it are
/// marked, so one written after that list (a run that ended since the bell's last poll) stays
/// unread and shows on the next poll. Without it (a client older than this argument) every
/// unread one is marked, as before.
pub async fn mark_all_read(
    db: &Db,
    ctx: &TenantContext,
    seen: Option<Timestamp>,
) -> Result<u64, AppError> {
    let now = Timestamp::now();
    let changed = sqlx::query(
        "UPDATE notifications SET read_at = $1 \
         WHERE user_id = $2 AND tenant_id = $3 AND read_at IS NULL AND created_at <= $4",
    )
    .bind(now.millis())
    .bind(ctx.user_id)
    .bind(ctx.scope.id())
    .bind(seen.unwrap_or(now).millis())
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(changed)
}
