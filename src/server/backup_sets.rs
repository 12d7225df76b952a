//! Backup sets of one tenant: list, create, read with items.

use super::db::{is_unique_violation, Db};
use super::tenants::TenantScope;
use crate::domain::backup_set::BackupSetList;
use crate::domain::{AppError, BackupSetDetail, BackupSetSummary, NewBackupSet, Timestamp};

const SUMMARY_COLUMNS: &str = "b.id, b.name, b.description, b.item_count, b.created_at, \
     COALESCE(u.display_name, '') AS created_by";

/// Whether backup set `id` belongs to tenant `tenant_id`: the one spelling of that check, for
/// submits, handlers and pages alike.
pub async fn exists(db: &Db, tenant_id: i64, id: i64) -> Result<bool, sqlx::Error> {
    Ok(
        sqlx::query("SELECT id FROM backup_sets WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(db.pool())
            .await?
            .is_some(),
    )
}

/// 404 unless backup set `id` belongs to tenant `tenant_id`.
pub async fn ensure_exists(db: &Db, tenant_id: i64, id: i64) -> Result<(), AppError> {
    if exists(db, tenant_id, id).await? {
        Ok(())
    } else {
        Err(AppError::NotFound(
            "This backup set does not exist in this tenant.".into(),
        ))
    }
}

/// The most backup sets one read of the list answers (the newest): an operator may create sets
/// without end, each with a description of up to 2,000 characters, so the whole list could
/// reach hundreds of megabytes on every load of the page. 500 is more sets than a tenant works
/// with at once and bounds the answer near 1 MB (about 4 MB if every description used 4-byte
/// characters); an older set still opens by its id.
pub const SETS_SHOWN: i64 = 500;

/// The tenant's newest [`SETS_SHOWN`] backup sets, newest first, and how many it holds in all
/// (counted only when the list is full, so a short list costs one query as before).
pub async fn list(db: &Db, scope: &TenantScope) -> Result<BackupSetList, AppError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM backup_sets b LEFT JOIN users u ON u.id = b.created_by \
         WHERE b.tenant_id = $1 ORDER BY b.created_at DESC, b.id DESC LIMIT $2"
    );
    let sets: Vec<BackupSetSummary> = sqlx::query_as(&sql)
        .bind(scope.id())
        .bind(SETS_SHOWN)
        .fetch_all(db.pool())
        .await?;
    let shown = i64::try_from(sets.len()).unwrap_or(i64::MAX);
    let total = if shown < SETS_SHOWN {
        shown
    } else {
        // Counted after the read: a set created in between makes it larger, never smaller.
        sqlx::query_scalar("SELECT COUNT(*) FROM backup_sets WHERE tenant_id = $1")
            .bind(scope.id())
            .fetch_one(db.pool())
            .await?
    };
    Ok(BackupSetList { sets, total })
}

/// Creates a backup set; a name already used in the tenant is a conflict, not a 500.
pub async fn create(
    db: &Db,
    scope: &TenantScope,
    created_by: Option<i64>,
    input: &NewBackupSet,
) -> Result<BackupSetSummary, AppError> {
    let inserted = sqlx::query_scalar(
        "INSERT INTO backup_sets (tenant_id, name, description, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(scope.id())
    .bind(input.name())
    .bind(input.description())
    .bind(created_by)
    .bind(Timestamp::now().millis())
    .fetch_one(db.pool())
    .await;
    let id: i64 = match inserted {
        Ok(id) => id,
        Err(e) if is_unique_violation(&e) => {
            return Err(AppError::invalid(
                "name",
                "A backup set with this name already exists.",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    get_summary(db, scope, id).await
}

async fn get_summary(db: &Db, scope: &TenantScope, id: i64) -> Result<BackupSetSummary, AppError> {
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM backup_sets b LEFT JOIN users u ON u.id = b.created_by \
         WHERE b.tenant_id = $1 AND b.id = $2"
    );
    sqlx::query_as(&sql)
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| AppError::NotFound("This backup set does not exist in this tenant.".into()))
}

/// The most items of a set one read answers: a set holds one item per policy, so this is more
/// than a normal tenant's whole inventory, and it bounds the answer of the largest (about 100
/// bytes of JSON an item). The set's `item_count` tells how many it holds in all.
pub const ITEMS_SHOWN: i64 = 5_000;

/// One backup set and its first [`ITEMS_SHOWN`] items (by policy name).
pub async fn get(db: &Db, scope: &TenantScope, id: i64) -> Result<BackupSetDetail, AppError> {
    let set = get_summary(db, scope, id).await?;
    let items = sqlx::query_as(
        "SELECT p.id, p.display_name, p.policy_type, p.platform, i.captured_at \
         FROM backup_items i JOIN policies p ON p.tenant_id = i.tenant_id AND p.id = i.policy_id \
         WHERE i.tenant_id = $1 AND i.backup_set_id = $2 ORDER BY p.display_name, i.id LIMIT $3",
    )
    .bind(scope.id())
    .bind(id)
    .bind(ITEMS_SHOWN)
    .fetch_all(db.pool())
    .await?;
    Ok(BackupSetDetail { set, items })
}
