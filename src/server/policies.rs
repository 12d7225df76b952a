//! The policy inventory as the picker sees it: filtered, sorted and paged in SQL, so only one
//! page travels (50,000 policies: every request under 70 ms at p99, `benches/runs.rs`, docs/benchmarks.md).
//! Policies gone from Intune are left out.

use super::db::{like_pattern, Db, Sql};
use super::tenants::TenantScope;
use crate::domain::policy_page::{
    MatchingPolicies, PolicyPage, PolicyRow, PolicySort, SortColumn, POLICY_PAGE_SIZE,
    SEARCH_MAX_CHARS,
};
use crate::domain::selection::MAX_SELECTION;
use crate::domain::{AppError, PolicyType};

/// The picker's filter; empty strings and `None` mean "any".
#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    pub search: String,
    pub policy_type: Option<PolicyType>,
    pub platform: String,
}

/// Appends the inventory's `WHERE` clause over `policies p` to `sql`: the tenant, a name search
/// (trimmed, at most [`SEARCH_MAX_CHARS`], capitals of any script matching small letters:
/// `LOWER` folds as [`like_pattern`] does on both engines, see `db::fold_case`) and a type. The
/// tenant comes first, so no query built here can forget it.
pub(super) fn push_inventory_where(
    sql: &mut Sql,
    tenant_id: i64,
    search: &str,
    policy_type: Option<PolicyType>,
) {
    sql.push(" WHERE p.tenant_id = ").int(tenant_id);
    let search: String = search.trim().chars().take(SEARCH_MAX_CHARS).collect();
    if !search.is_empty() {
        sql.push(" AND LOWER(p.display_name) LIKE ")
            .text(like_pattern(&search))
            .push(" ESCAPE '\\'");
    }
    if let Some(policy_type) = policy_type {
        sql.push(" AND p.policy_type = ").text(policy_type.as_str());
    }
}

/// Appends the picker's `WHERE` clause: the inventory's, without the policies gone from Intune,
/// and the platform.
fn push_where(sql: &mut Sql, tenant_id: i64, filter: &PolicyFilter) {
    push_inventory_where(sql, tenant_id, &filter.search, filter.policy_type);
    sql.push(" AND p.gone_from_intune_at IS NULL");
    if !filter.platform.is_empty() {
        sql.push(" AND p.platform = ").text(filter.platform.clone());
    }
}

/// The `ORDER BY` of a page of policies (`policies p`): the picker's and the inventory's.
pub(super) fn order_by(sort: PolicySort) -> String {
    let direction = if sort.descending { "DESC" } else { "ASC" };
    let column = match sort.column {
        SortColumn::Name => "p.display_name",
        SortColumn::Type => "p.policy_type",
        SortColumn::Platform => "p.platform",
        // Policies never modified sort as oldest, on both engines.
        SortColumn::Modified => "COALESCE(p.last_modified_at, 0)",
    };
    // The id makes the order total, so pages never overlap or skip a row.
    format!("{column} {direction}, p.id {direction}")
}

/// Fails with 404 unless the backup set belongs to the tenant.
async fn check_backup_set(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
) -> Result<(), AppError> {
    super::backup_sets::ensure_exists(db, scope.id(), backup_set_id).await
}

/// One page (zero-based, clamped to the last one) of the tenant's inventory, with each row
/// marked when it is already in the backup set.
pub async fn page(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
    filter: &PolicyFilter,
    sort: PolicySort,
    page: i64,
) -> Result<PolicyPage, AppError> {
    check_backup_set(db, scope, backup_set_id).await?;
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM policies p");
    push_where(&mut count, scope.id(), filter);
    let total: i64 = count.query_scalar().fetch_one(db.pool()).await?;
    let last_page = ((total - 1).max(0)) / POLICY_PAGE_SIZE;
    let page = page.clamp(0, last_page);

    // The page is cut from the policies alone; only its rows are then looked up in the set.
    let order = order_by(sort);
    let mut rows = Sql::new(
        "SELECT p.id, p.display_name, p.policy_type, p.platform, p.last_modified_at, \
                CAST(CASE WHEN b.id IS NULL THEN 0 ELSE 1 END AS BIGINT) AS in_set \
         FROM (SELECT * FROM policies p",
    );
    push_where(&mut rows, scope.id(), filter);
    rows.push(&format!(" ORDER BY {order} LIMIT "))
        .int(POLICY_PAGE_SIZE)
        .push(" OFFSET ")
        .int(page * POLICY_PAGE_SIZE)
        .push(
            ") p LEFT JOIN backup_items b ON b.tenant_id = p.tenant_id AND b.policy_id = p.id \
             AND b.backup_set_id = ",
        )
        .int(backup_set_id)
        .push(&format!(" ORDER BY {order}"));
    let rows: Vec<PickerRow> = rows.query_as().fetch_all(db.pool()).await?;
    let rows = rows
        .into_iter()
        .map(|row| PolicyRow {
            in_set: row.in_set != 0,
            ..row.policy
        })
        .collect();

    let platforms = sqlx::query_scalar(
        "SELECT DISTINCT platform FROM policies \
         WHERE tenant_id = $1 AND gone_from_intune_at IS NULL ORDER BY platform",
    )
    .bind(scope.id())
    .fetch_all(db.pool())
    .await?;

    Ok(PolicyPage {
        rows,
        total,
        page,
        page_size: POLICY_PAGE_SIZE,
        platforms,
    })
}

/// A row of the picker's page: the policy, and whether the set holds it (0 or 1).
#[derive(sqlx::FromRow)]
struct PickerRow {
    #[sqlx(flatten)]
    policy: PolicyRow,
    in_set: i64,
}

/// Every policy matching the filter that is not yet in the backup set, at most
/// [`MAX_SELECTION`] of them: what "select all N matching" selects.
pub async fn matching_ids(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
    filter: &PolicyFilter,
) -> Result<MatchingPolicies, AppError> {
    check_backup_set(db, scope, backup_set_id).await?;
    let mut sql = Sql::new("SELECT p.id FROM policies p");
    push_where(&mut sql, scope.id(), filter);
    push_not_in_set(&mut sql, backup_set_id);
    sql.push(" ORDER BY p.id LIMIT ")
        .int(MAX_SELECTION as i64 + 1);
    let mut ids: Vec<i64> = sql.query_scalar().fetch_all(db.pool()).await?;
    let truncated = ids.len() > MAX_SELECTION;
    ids.truncate(MAX_SELECTION);
    Ok(MatchingPolicies { ids, truncated })
}

/// How many policies matching the filter are not in the backup set yet: the number "Select all
/// N matching" selects (before the cap of one run), so the button and the selection agree.
pub async fn addable_count(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
    filter: &PolicyFilter,
) -> Result<i64, AppError> {
    check_backup_set(db, scope, backup_set_id).await?;
    let mut sql = Sql::new("SELECT COUNT(*) AS n FROM policies p");
    push_where(&mut sql, scope.id(), filter);
    push_not_in_set(&mut sql, backup_set_id);
    Ok(sql.query_scalar().fetch_one(db.pool()).await?)
}

/// Appends "and not in backup set `backup_set_id`" to a `WHERE` clause over `policies p`.
fn push_not_in_set(sql: &mut Sql, backup_set_id: i64) {
    sql.push(
        " AND NOT EXISTS (SELECT 1 FROM backup_items b WHERE b.tenant_id = p.tenant_id \
         AND b.policy_id = p.id AND b.backup_set_id = ",
    )
    .int(backup_set_id)
    .push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_filters_in_order() {
        let mut sql = Sql::new("SELECT p.id FROM policies p");
        push_where(
            &mut sql,
            7,
            &PolicyFilter {
                search: " Wi-Fi ".into(),
                policy_type: Some(PolicyType::Compliance),
                platform: String::new(),
            },
        );
        let text = sql.as_str();
        assert!(text.contains("p.tenant_id = $1"), "{text}");
        assert!(text.contains("LIKE $2"), "{text}");
        assert!(text.contains("p.policy_type = $3"), "{text}");
        assert!(!text.contains("p.platform"), "{text}");
    }
}
