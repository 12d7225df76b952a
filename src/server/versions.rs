//! A policy's captured versions: metadata, the list of versions, one version read as settings
//! or as raw JSON, two versions compared, and the inventory page. Every query names the tenant,
//! so another tenant's policy or version is simply not found.

use std::collections::HashMap;

use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use tower_sessions::Session;

use super::auth::authorize_session;
use super::db::{Db, Sql};
use super::policies::{order_by, push_inventory_where};
use super::snapshots::{load_version, names_for, StoredVersion};
use super::state::AppState;
use super::tenants::TenantScope;
use crate::domain::error::parse_filter;
use crate::domain::policy_page::{PolicySort, POLICY_PAGE_SIZE};
use crate::domain::snapshot::{compare, readable};
use crate::domain::versions::{
    InventoryPage, PolicyInfo, SetLink, VersionDiff, VersionRef, VersionRow, VersionView,
};
use crate::domain::{AppError, Capability, PolicyType, Timestamp};

const POLICY_COLUMNS: &str = "p.id, p.display_name, p.policy_type, p.platform, p.graph_id, \
     p.last_modified_at, p.gone_from_intune_at";

fn policy_not_found() -> AppError {
    AppError::NotFound("This policy does not exist in this tenant.".into())
}

fn version_not_found() -> AppError {
    AppError::NotFound("This version does not exist for this policy.".into())
}

/// One policy of the tenant.
pub async fn policy(db: &Db, scope: &TenantScope, id: i64) -> Result<PolicyInfo, AppError> {
    let sql =
        format!("SELECT {POLICY_COLUMNS} FROM policies p WHERE p.tenant_id = $1 AND p.id = $2");
    sqlx::query_as(&sql)
        .bind(scope.id())
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(policy_not_found)
}

/// The most versions of a policy one read answers (the newest): a policy gains one with every
/// capture that found it changed, without end, so the list is bounded; older versions stay
/// readable by their id, and the oldest one listed still names its predecessor.
pub const VERSIONS_SHOWN: i64 = 500;

/// The policy's newest [`VERSIONS_SHOWN`] versions, newest first, with the backup sets holding
/// each and the run that captured it.
pub async fn versions(
    db: &Db,
    scope: &TenantScope,
    policy_id: i64,
) -> Result<Vec<VersionRow>, AppError> {
    policy(db, scope, policy_id).await?;
    let current: Option<i64> = sqlx::query_scalar(
        "SELECT current_snapshot_id FROM policies WHERE tenant_id = $1 AND id = $2",
    )
    .bind(scope.id())
    .bind(policy_id)
    .fetch_one(db.pool())
    .await?;
    // One more than shown: the predecessor of the oldest one shown.
    let mut rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT id, content_hash, captured_at FROM policy_snapshots \
         WHERE tenant_id = $1 AND policy_id = $2 ORDER BY captured_at DESC, id DESC LIMIT $3",
    )
    .bind(scope.id())
    .bind(policy_id)
    .bind(VERSIONS_SHOWN + 1)
    .fetch_all(db.pool())
    .await?;
    let older: Vec<Option<i64>> = rows.iter().skip(1).map(|r| Some(r.id)).collect();
    for (row, previous) in rows.iter_mut().zip(older) {
        row.previous_id = previous;
    }
    let complete = rows.len() as i64 <= VERSIONS_SHOWN;
    rows.truncate(VERSIONS_SHOWN as usize);
    let shown: Vec<i64> = rows.iter().map(|row| row.id).collect();
    let items: Vec<(i64, Option<i64>, i64, String)> = if shown.is_empty() {
        Vec::new()
    } else {
        let ids = db.backend().id_in("i.snapshot_id", "$3", &shown);
        let sql = format!(
            "SELECT i.snapshot_id, i.run_id, b.id AS set_id, b.name AS set_name \
             FROM backup_items i JOIN backup_sets b ON b.tenant_id = i.tenant_id AND b.id = i.backup_set_id \
             WHERE i.tenant_id = $1 AND i.policy_id = $2 AND {} ORDER BY i.captured_at, i.id",
            ids.sql
        );
        ids.bind(sqlx::query_as(&sql).bind(scope.id()).bind(policy_id))
            .fetch_all(db.pool())
            .await?
    };
    let mut sets: HashMap<i64, Vec<SetLink>> = HashMap::new();
    let mut runs = capturing_runs(db, scope, policy_id, &shown).await?;
    for (snapshot_id, run_id, id, name) in items {
        sets.entry(snapshot_id)
            .or_default()
            .push(SetLink { id, name });
        if let Some(run_id) = run_id {
            earliest(&mut runs, snapshot_id, run_id);
        }
    }
    for row in &mut rows {
        row.backup_sets = sets.remove(&row.id).unwrap_or_default();
        row.run_id = runs.get(&row.id).copied();
        row.current = current == Some(row.id);
    }
    // Before any capture recorded it (versions stored by older builds), the newest is current;
    // a current version older than those shown is simply not among them.
    if !rows.iter().any(|row| row.current) && (complete || current.is_none()) {
        if let Some(newest) = rows.first_mut() {
            newest.current = true;
        }
    }
    Ok(rows)
}

/// The first run that captured each of these versions of the policy, among the runs whose item
/// records it: "Capture now", a drift check, a restore's preview or evidence. A backup's run
/// records its versions on the backup's items instead; the caller adds those.
async fn capturing_runs(
    db: &Db,
    scope: &TenantScope,
    policy_id: i64,
    versions: &[i64],
) -> Result<HashMap<i64, i64>, AppError> {
    if versions.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = db.backend().id_in("snapshot_id", "$3", versions);
    let sql = format!(
        "SELECT snapshot_id, MIN(run_id) FROM run_items \
         WHERE tenant_id = $1 AND policy_id = $2 AND {} GROUP BY snapshot_id",
        ids.sql
    );
    let rows: Vec<(i64, i64)> = ids
        .bind(sqlx::query_as(&sql).bind(scope.id()).bind(policy_id))
        .fetch_all(db.pool())
        .await?;
    Ok(rows.into_iter().collect())
}

/// Keeps the earlier of the runs known to have captured `version` (run ids grow with time).
fn earliest(runs: &mut HashMap<i64, i64>, version: i64, run_id: i64) {
    runs.entry(version)
        .and_modify(|known| *known = (*known).min(run_id))
        .or_insert(run_id);
}

/// A stored version of the tenant's policy: its reference and what comparisons read of it.
struct Stored {
    reference: VersionRef,
    version: StoredVersion,
}

async fn stored(
    db: &Db,
    scope: &TenantScope,
    policy_id: i64,
    version_id: i64,
) -> Result<Stored, AppError> {
    // The policy is part of the key: a version id of another policy is not found.
    let of_policy = sqlx::query(
        "SELECT id FROM policy_snapshots WHERE tenant_id = $1 AND policy_id = $2 AND id = $3",
    )
    .bind(scope.id())
    .bind(policy_id)
    .bind(version_id)
    .fetch_optional(db.pool())
    .await?
    .is_some();
    if !of_policy {
        return Err(version_not_found());
    }
    let version = load_version(db.pool(), scope.id(), version_id)
        .await
        .map_err(|error| {
            tracing::error!(%error, version_id, "stored snapshot cannot be read");
            AppError::Internal
        })?
        .ok_or_else(version_not_found)?;
    Ok(Stored {
        reference: VersionRef {
            id: version.id,
            captured_at: Timestamp(version.captured_at),
            content_hash: version.content_hash.clone(),
        },
        version,
    })
}

/// One version read as settings, with its pretty-printed payload.
pub async fn version(
    db: &Db,
    scope: &TenantScope,
    policy_id: i64,
    version_id: i64,
) -> Result<VersionView, AppError> {
    let info = policy(db, scope, policy_id).await?;
    let family = info.policy_type;
    let stored = stored(db, scope, policy_id, version_id).await?;
    // Setting names come from the definitions this tenant's captures stored apart (format 2) or
    // inside the payload (format 1).
    let names = names_for(db, scope.id(), &[&stored.version.payload]).await?;
    let readable = readable(&stored.version.captured(family), &names);
    let raw_json =
        serde_json::to_string_pretty(&stored.version.payload).map_err(|_| AppError::Internal)?;
    Ok(VersionView {
        policy: info,
        version_id: stored.reference.id,
        captured_at: stored.reference.captured_at,
        content_hash: stored.reference.content_hash,
        readable,
        raw_json,
    })
}

/// Two versions of the policy compared setting by setting (`from` is the older side).
pub async fn diff(
    db: &Db,
    scope: &TenantScope,
    policy_id: i64,
    from: i64,
    to: i64,
) -> Result<VersionDiff, AppError> {
    let info = policy(db, scope, policy_id).await?;
    let family = info.policy_type;
    let old = stored(db, scope, policy_id, from).await?;
    let new = stored(db, scope, policy_id, to).await?;
    let names = names_for(
        db,
        scope.id(),
        &[&old.version.payload, &new.version.payload],
    )
    .await?;
    let comparison = compare(
        &old.version.captured(family),
        &new.version.captured(family),
        &names,
    );
    Ok(VersionDiff {
        policy: info,
        from: old.reference,
        to: new.reference,
        comparison,
    })
}

/// What the inventory page filters by; empty strings and `None` mean "any".
#[derive(Debug, Clone, Default)]
pub struct InventoryFilter {
    /// As [`crate::server::policies::parse_search`] reads it.
    pub search: String,
    pub policy_type: Option<PolicyType>,
    /// One of the tenant's platforms ([`inventory`] refuses another).
    pub platform: String,
}

/// Reads the request spelling of a sort (`name`, `-modified`, …); empty sorts by name.
/// An unknown sort is refused with the ones there are (the picker's too): the inventory's sort
/// comes from its URL, where a typo should show.
pub fn parse_sort(raw: &str) -> Result<PolicySort, AppError> {
    let sort = parse_filter(
        "sort",
        raw,
        |raw| Some(PolicySort::parse(raw)).filter(|sort| sort.as_param() == raw),
        "Unknown sort; sort by name, type, platform or modified, with a leading - for descending.",
    )?;
    Ok(sort.unwrap_or_default())
}

/// One page (zero-based, clamped) of the tenant's inventory, gone policies included, filtered
/// and sorted as the picker's, with the tenant's platforms for the platform filter.
pub async fn inventory(
    db: &Db,
    scope: &TenantScope,
    filter: &InventoryFilter,
    sort: PolicySort,
    page: i64,
) -> Result<InventoryPage, AppError> {
    let platforms: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT platform FROM policies WHERE tenant_id = $1 ORDER BY platform",
    )
    .bind(scope.id())
    .fetch_all(db.pool())
    .await?;
    let platform = filter.platform.as_str();
    crate::server::policies::check_platform(platform, &platforms)?;
    let filtered = |sql: &mut Sql| {
        push_inventory_where(sql, scope.id(), &filter.search, filter.policy_type);
        if !platform.is_empty() {
            sql.push(" AND p.platform = ").text(platform.to_owned());
        }
    };
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM policies p");
    filtered(&mut count);
    let total: i64 = count.query_scalar().fetch_one(db.pool()).await?;
    let page_size = POLICY_PAGE_SIZE;
    let last = ((total - 1).max(0)) / page_size;
    let page = page.clamp(0, last);
    let mut rows = Sql::new(format!("SELECT {POLICY_COLUMNS} FROM policies p"));
    filtered(&mut rows);
    rows.push(&format!(" ORDER BY {} LIMIT ", order_by(sort)))
        .int(page_size)
        .push(" OFFSET ")
        .int(page * page_size);
    Ok(InventoryPage {
        rows: rows.query_as().fetch_all(db.pool()).await?,
        total,
        page,
        page_size,
        platforms,
    })
}

/// `GET /t/{tenant}/policies/{id}/versions/{version}/raw.json`: the stored payload as a
/// download. The page guard has sent anonymous visitors to sign-in; membership is checked again
/// here, as on the pages.
pub async fn version_json(
    State(state): State<AppState>,
    Path((tenant, policy, version)): Path<(String, String, String)>,
    session: Session,
) -> Response {
    match raw(&state, &tenant, &policy, &version, &session).await {
        Ok((policy_id, version_id, text)) => {
            let mut response = text.into_response();
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            let disposition =
                format!("attachment; filename=\"policy-{policy_id}-version-{version_id}.json\"");
            if let Ok(value) = HeaderValue::from_str(&disposition) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(error) => {
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(error)).into_response()
        }
    }
}

async fn raw(
    state: &AppState,
    tenant: &str,
    policy: &str,
    version: &str,
    session: &Session,
) -> Result<(i64, i64, String), AppError> {
    let context = authorize_session(state, session, tenant, Capability::View).await?;
    let policy_id: i64 = policy.parse().map_err(|_| policy_not_found())?;
    let version_id: i64 = version.parse().map_err(|_| version_not_found())?;
    let stored = stored(&state.db, &context.scope, policy_id, version_id).await?;
    let text =
        serde_json::to_string_pretty(&stored.version.payload).map_err(|_| AppError::Internal)?;
    Ok((policy_id, version_id, text))
}
