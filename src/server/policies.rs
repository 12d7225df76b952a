//! The policy inventory as the picker sees it: filtered, sorted and paged in SQL, so only one
//! page travels (50,000 policies: every request under 70 ms at p99, `benches/runs.rs`, docs/benchmarks.md).
//! Policies gone from Intune are left out.

use super::db::{Db, Sql};
use super::tenants::TenantScope;
use crate::domain::policy_page::{
    MatchingPolicies, PolicyPage, PolicyRow, PolicySort, SortColumn, POLICY_PAGE_SIZE,
    SEARCH_MAX_CHARS,
};
use crate::domain::selection::MAX_SELECTION;
use crate::domain::{AppError, PolicyType};

/// The picker's filter, parsed from its form fields; empty strings and `None` mean "any". The
/// platform is checked against the tenant's when a request uses it (that needs the database).
#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    search: String,
    policy_type: Option<PolicyType>,
    platform: String,
}

impl PolicyFilter {
    /// Reads the form fields: the search as [`parse_search`] reads it, the type as the
    /// inventory reads it (an unknown one is a 422 naming `policy_type`).
    pub fn parse(search: &str, policy_type: &str, platform: String) -> Result<Self, AppError> {
        Ok(Self {
            search: parse_search(search)?,
            policy_type: PolicyType::parse_filter("policy_type", policy_type)?,
            platform,
        })
    }
}

/// Reads a name search: trimmed and cut to [`SEARCH_MAX_CHARS`]; a control character is a 422
/// naming `search`. No name holds one, and the engines would disagree about it: SQLite's `LIKE`
/// stops at a NUL, so `%\0%` would match every policy ("select all N matching" would select
/// them all), while PostgreSQL refuses a NUL in a text outright.
pub fn parse_search(raw: &str) -> Result<String, AppError> {
    let search: String = raw.trim().chars().take(SEARCH_MAX_CHARS).collect();
    if search.chars().any(char::is_control) {
        return Err(AppError::invalid(
            "search",
            "The search cannot contain control characters.",
        ));
    }
    Ok(search)
}

/// Refuses a platform filter that is none of `platforms` (the ones the page offers) with a 422
/// naming `platform` and the platforms there are: a typo or a stale link shows as an error, not
/// as an empty page. Empty means any platform.
pub fn check_platform(platform: &str, platforms: &[String]) -> Result<(), AppError> {
    if platform.is_empty() || platforms.iter().any(|known| known == platform) {
        return Ok(());
    }
    Err(AppError::invalid(
        "platform",
        format!(
            "Unknown platform; this tenant's policies are on {}.",
            platforms.join(", ")
        ),
    ))
}

/// Appends the inventory's `WHERE` clause over `policies p` to `sql`: the tenant, a name search
/// (as [`parse_search`] read it; capitals of any script match small letters: see
/// [`Sql::contains_ignoring_case`]) and a type. The tenant comes first, so no query built here
/// can forget it.
pub(super) fn push_inventory_where(
    sql: &mut Sql,
    tenant_id: i64,
    search: &str,
    policy_type: Option<PolicyType>,
) {
    sql.push(" WHERE p.tenant_id = ").int(tenant_id);
    if !search.is_empty() {
        sql.push(" AND ")
            .contains_ignoring_case("p.display_name", search);
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

/// The platforms of the tenant's policies still in Intune: what the picker's platform filter
/// offers.
async fn platforms(db: &Db, scope: &TenantScope) -> Result<Vec<String>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT platform FROM policies \
         WHERE tenant_id = $1 AND gone_from_intune_at IS NULL ORDER BY platform",
    )
    .bind(scope.id())
    .fetch_all(db.pool())
    .await?)
}

/// Checks what a request of the picker names: the backup set (404 unless the tenant's) and the
/// platform filter ([`check_platform`], read only when there is one).
async fn check_request(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
    filter: &PolicyFilter,
) -> Result<(), AppError> {
    check_backup_set(db, scope, backup_set_id).await?;
    if !filter.platform.is_empty() {
        check_platform(&filter.platform, &platforms(db, scope).await?)?;
    }
    Ok(())
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
    let platforms = platforms(db, scope).await?;
    check_platform(&filter.platform, &platforms)?;
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
    check_request(db, scope, backup_set_id, filter).await?;
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
    check_request(db, scope, backup_set_id, filter).await?;
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
            &PolicyFilter::parse(" Wi-Fi ", "compliance", String::new()).unwrap(),
        );
        let text = sql.as_str();
        assert!(text.contains("p.tenant_id = $1"), "{text}");
        assert!(text.contains("LIKE LOWER($2)"), "{text}");
        assert!(text.contains("p.policy_type = $3"), "{text}");
        assert!(!text.contains("p.platform"), "{text}");
    }

    #[test]
    fn a_search_is_trimmed_and_cut_and_holds_no_control_character() {
        assert_eq!(parse_search("\t Wi-Fi  ").unwrap(), "Wi-Fi");
        let long = "x".repeat(SEARCH_MAX_CHARS + 10);
        assert_eq!(parse_search(&long).unwrap().len(), SEARCH_MAX_CHARS);
        for bad in ["\u{0}", "a\u{0}b", "a\u{7}", "a\tb", "\u{9B}x"] {
            let error = parse_search(bad).unwrap_err();
            assert!(
                error.field_message("search").is_some(),
                "{bad:?}: {error:?}"
            );
        }
    }

    #[test]
    fn a_platform_is_one_of_the_tenants_or_any() {
        let platforms = ["android".to_owned(), "windows".to_owned()];
        assert!(check_platform("", &platforms).is_ok());
        assert!(check_platform("android", &platforms).is_ok());
        let error = check_platform("Android", &platforms).unwrap_err();
        let message = error.field_message("platform").expect("names the field");
        assert!(message.contains("android, windows"), "{message}");
    }
}
