//! The bell's notifications: list, mark one read, mark all read. Every query is scoped by the
//! signed-in user *and* the tenant of the request (both from the [`TenantContext`] that only
//! the authorization point builds), so nobody reads or dismisses another user's notifications,
//! nor their own from another tenant.

use sqlx::FromRow;

use super::auth::TenantContext;
use super::db::{Db, Sql};
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

/// How much older than the list (see [`MarkAll::Listed`]) an unread notification the list did
/// not show must be for **Mark all read** to mark it: more than a run's final transaction takes
/// between stamping its notification and committing it, plus the clock skew between instances.
pub const UNLISTED_MARGIN_MS: i64 = 5 * 60 * 1000;

/// What **Mark all read** marks, as the request says what the user saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkAll {
    /// The unread notifications the bell listed (`ids`, at most [`LIST_LIMIT`]), from the list
    /// read at `as_of`. Exactly those are marked, never one the list did not show because it
    /// was written (or committed) after the list's query. One exception, so a user with more
    /// unread than a page can clear them: when the page was full of unread ones
    /// ([`LIST_LIMIT`] ids), unread ones older than the oldest listed *and* than
    /// `as_of - `[`UNLISTED_MARGIN_MS`] are marked too; those were there, past the page, when
    /// the list was read, and no notification still being committed is that old. Any others
    /// stay unread, are counted, and the next list shows them.
    Listed {
        ids: Vec<i64>,
        as_of: Option<Timestamp>,
    },
    /// A page from before `ids`: the unread ones not newer than its list's `as_of`.
    NotNewerThan(Timestamp),
    /// A page from before `as_of`: every unread one.
    Everything,
}

impl MarkAll {
    /// Reads the request: `ids` comma-separated (`3,9,12`; empty or absent: a page from before
    /// them) and `as_of` (milliseconds since the epoch). More ids than the bell lists, or
    /// anything but integers, is refused (422) before anything is written.
    pub fn parse(ids: &str, as_of: Option<i64>) -> Result<Self, AppError> {
        let as_of = as_of.map(Timestamp);
        if ids.trim().is_empty() {
            return Ok(as_of.map_or(Self::Everything, Self::NotNewerThan));
        }
        let ids = ids
            .split(',')
            .map(|id| id.trim().parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| {
                AppError::invalid("ids", "ids: expected comma-separated notification ids.")
            })?;
        if i64::try_from(ids.len()).map_or(true, |n| n > LIST_LIMIT) {
            return Err(AppError::invalid(
                "ids",
                format!(
                    "At most {LIST_LIMIT} notifications can be marked at once (the ones the \
                     bell lists); {} were sent.",
                    ids.len()
                ),
            ));
        }
        Ok(Self::Listed { ids, as_of })
    }
}

/// Marks the user's unread notifications in the tenant read, as `what` says (see [`MarkAll`]);
/// answers how many changed. Ids of another user's or another tenant's notifications, or of
/// none, are ignored: only the user's own in this tenant are ever marked or counted.
pub async fn mark_all_read(db: &Db, ctx: &TenantContext, what: MarkAll) -> Result<u64, AppError> {
    let now = Timestamp::now();
    let changed = match what {
        MarkAll::Listed { mut ids, as_of } => {
            ids.sort_unstable();
            ids.dedup();
            let page_full = i64::try_from(ids.len()).is_ok_and(|n| n >= LIST_LIMIT);
            let unlisted_before = match as_of {
                Some(as_of) if page_full => oldest_of(db, ctx, &ids).await?.map(|oldest| {
                    oldest.min(
                        as_of
                            .millis()
                            .min(now.millis())
                            .saturating_sub(UNLISTED_MARGIN_MS),
                    )
                }),
                _ => None,
            };
            let mut sql = Sql::new("UPDATE notifications SET read_at = ");
            sql.int(now.millis())
                .push(" WHERE user_id = ")
                .int(ctx.user_id)
                .push(" AND tenant_id = ")
                .int(ctx.scope.id())
                .push(" AND read_at IS NULL AND (id IN (")
                .list(&ids, |sql, id| {
                    sql.int(*id);
                })
                .push(")");
            if let Some(before) = unlisted_before {
                sql.push(" OR created_at < ").int(before);
            }
            sql.push(")");
            sql.query().execute(db.pool()).await?.rows_affected()
        }
        MarkAll::NotNewerThan(seen) => mark_not_newer_than(db, ctx, now, seen).await?,
        MarkAll::Everything => mark_not_newer_than(db, ctx, now, now).await?,
    };
    Ok(changed)
}

/// The `created_at` of the oldest of `ids` that is the user's in the tenant (read or not: one
/// read since the list was still listed unread), if any is.
async fn oldest_of(db: &Db, ctx: &TenantContext, ids: &[i64]) -> Result<Option<i64>, AppError> {
    let mut sql = Sql::new("SELECT MIN(created_at) FROM notifications WHERE user_id = ");
    sql.int(ctx.user_id)
        .push(" AND tenant_id = ")
        .int(ctx.scope.id())
        .push(" AND id IN (")
        .list(ids, |sql, id| {
            sql.int(*id);
        })
        .push(")");
    Ok(sql
        .query_scalar::<Option<i64>>()
        .fetch_one(db.pool())
        .await?)
}

/// Marks the unread ones not newer than `seen`: what a page from before `ids` asked for.
async fn mark_not_newer_than(
    db: &Db,
    ctx: &TenantContext,
    now: Timestamp,
    seen: Timestamp,
) -> Result<u64, AppError> {
    let changed = sqlx::query(
        "UPDATE notifications SET read_at = $1 \
         WHERE user_id = $2 AND tenant_id = $3 AND read_at IS NULL AND created_at <= $4",
    )
    .bind(now.millis())
    .bind(ctx.user_id)
    .bind(ctx.scope.id())
    .bind(seen.millis())
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(changed)
}
