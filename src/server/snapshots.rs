//! Stored versions of policies: a captured [`Snapshot`] becomes a `policy_snapshots` row. Every
//! operation that captures (adding to a backup set, capture now, drift checks) stores through
//! here, so the hash rule holds everywhere: an unchanged policy reuses its existing version.
//!
//! The hash covers the normalised content only ([`crate::server::graph::snapshot::content_hash`]).
//! A version stored before hashes were normalised, or captured in an older capture format, holds
//! the same content under another hash; such a newest version is reused too when its normalised
//! content equals the capture's (so a device configuration captured in format 2 after a format-1
//! capture is not a new version). A capture that records more than the newest version did
//! (compliance actions, presentation values) is a new version, whose comparison with the older
//! one reads those parts as "not captured then", never as changes.
//!
//! Setting definitions are stored once per id in `setting_definitions`, apart from any
//! content; [`definition_names`] and [`setting_names`] read them for the viewer.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;
use sqlx::{Any, Executor, FromRow};

use super::db::{Db, Sql};
use super::engine::operation::Tx;
use super::graph::{CaptureOptions, SettingDefinition, Snapshot};
use crate::domain::snapshot::{normalize, CaptureFormat, CapturedPolicy, PolicyType, SettingNames};

/// Ids per statement when reading definitions (well under both engines' parameter limits).
const IDS_PER_QUERY: usize = 500;

/// The version a capture was stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The `policy_snapshots` row.
    pub id: i64,
    /// Whether this capture made the row (a new version); `false` when the policy's content was
    /// already stored (under this hash, or as its newest version).
    pub new_version: bool,
}

/// A stored version as comparisons read it: its payload, capture format and options.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVersion {
    pub id: i64,
    pub payload: Value,
    pub format: CaptureFormat,
    pub options: CaptureOptions,
    pub content_hash: String,
    pub captured_at: i64,
}

impl StoredVersion {
    /// The version as the snapshot module reads it.
    pub fn captured(&self, family: PolicyType) -> CapturedPolicy<'_> {
        CapturedPolicy::new(family, self.format, &self.payload)
    }
}

const VERSION_COLUMNS: &str =
    "id, payload, capture_format, with_assignments, with_scope_tags, content_hash, captured_at";

/// A row of [`VERSION_COLUMNS`], before its payload and format are read.
#[derive(FromRow)]
struct VersionRow {
    id: i64,
    payload: String,
    capture_format: i64,
    with_assignments: i64,
    with_scope_tags: i64,
    content_hash: String,
    captured_at: i64,
}

impl TryFrom<VersionRow> for StoredVersion {
    type Error = sqlx::Error;

    fn try_from(row: VersionRow) -> Result<Self, sqlx::Error> {
        let decode = |e: String| sqlx::Error::Decode(e.into());
        let format = row.capture_format;
        Ok(StoredVersion {
            id: row.id,
            payload: serde_json::from_str(&row.payload).map_err(|e| decode(e.to_string()))?,
            format: u16::try_from(format)
                .ok()
                .and_then(CaptureFormat::new)
                .ok_or_else(|| decode(format!("unknown capture format {format}")))?,
            options: CaptureOptions {
                include_assignments: row.with_assignments != 0,
                include_scope_tags: row.with_scope_tags != 0,
            },
            content_hash: row.content_hash,
            captured_at: row.captured_at,
        })
    }
}

/// One version of the tenant's policies, by id (`None` if the tenant has no such version).
pub async fn load_version<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    tenant_id: i64,
    snapshot_id: i64,
) -> Result<Option<StoredVersion>, sqlx::Error> {
    let sql =
        format!("SELECT {VERSION_COLUMNS} FROM policy_snapshots WHERE tenant_id = $1 AND id = $2");
    sqlx::query_as::<_, VersionRow>(&sql)
        .bind(tenant_id)
        .bind(snapshot_id)
        .fetch_optional(executor)
        .await?
        .map(StoredVersion::try_from)
        .transpose()
}

/// Stores `snapshot` as a version of the tenant's policy, or finds the version with the same
/// content, inside the caller's transaction; stores its setting definitions too. The version
/// becomes the policy's current one (what Intune held at its last capture), also when it is an
/// older version found again, as after a restore.
pub async fn store_snapshot(
    tx: &mut Tx,
    tenant_id: i64,
    policy_id: i64,
    snapshot: &Snapshot,
    now: i64,
) -> Result<StoredSnapshot, sqlx::Error> {
    let stored = find_or_insert(tx, tenant_id, policy_id, snapshot, now).await?;
    sqlx::query("UPDATE policies SET current_snapshot_id = $1 WHERE tenant_id = $2 AND id = $3")
        .bind(stored.id)
        .bind(tenant_id)
        .bind(policy_id)
        .execute(&mut **tx)
        .await?;
    Ok(stored)
}

async fn find_or_insert(
    tx: &mut Tx,
    tenant_id: i64,
    policy_id: i64,
    snapshot: &Snapshot,
    now: i64,
) -> Result<StoredSnapshot, sqlx::Error> {
    store_definitions(tx, &snapshot.setting_definitions, now).await?;
    if let Some(id) = with_hash(tx, tenant_id, policy_id, &snapshot.content_hash).await? {
        return Ok(StoredSnapshot {
            id,
            new_version: false,
        });
    }
    let sql = format!(
        "SELECT {VERSION_COLUMNS} FROM policy_snapshots WHERE tenant_id = $1 AND policy_id = $2 \
         ORDER BY captured_at DESC, id DESC LIMIT 1"
    );
    let newest: Option<VersionRow> = sqlx::query_as(&sql)
        .bind(tenant_id)
        .bind(policy_id)
        .fetch_optional(&mut **tx)
        .await?;
    if let Some(row) = newest {
        // A version that cannot be read is never reused; the capture then becomes a new one.
        if let Ok(newest) = StoredVersion::try_from(row) {
            if same_content(&newest, snapshot) {
                return Ok(StoredSnapshot {
                    id: newest.id,
                    new_version: false,
                });
            }
        }
    }
    let inserted = sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at, \
         capture_format, with_assignments, with_scope_tags) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (policy_id, content_hash) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(policy_id)
    .bind(&snapshot.content_hash)
    .bind(&snapshot.canonical_json)
    .bind(now)
    .bind(i64::from(snapshot.format.get()))
    .bind(i64::from(snapshot.options.include_assignments))
    .bind(i64::from(snapshot.options.include_scope_tags))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let id = with_hash(tx, tenant_id, policy_id, &snapshot.content_hash)
        .await?
        .ok_or(sqlx::Error::RowNotFound)?;
    Ok(StoredSnapshot {
        id,
        new_version: inserted == 1,
    })
}

async fn with_hash(
    tx: &mut Tx,
    tenant_id: i64,
    policy_id: i64,
    hash: &str,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM policy_snapshots WHERE tenant_id = $1 AND policy_id = $2 AND content_hash = $3",
    )
    .bind(tenant_id)
    .bind(policy_id)
    .bind(hash)
    .fetch_optional(&mut **tx)
    .await
}

/// Whether a stored version holds what a capture holds: the same normalised content, each read
/// in its own capture format. The capture options are part of it: a part captured without
/// (assignments, scope tags) is left out of the normalised content, one captured empty is not.
fn same_content(stored: &StoredVersion, snapshot: &Snapshot) -> bool {
    let Some(family) = PolicyType::parse(snapshot.policy_type.as_str()) else {
        return false;
    };
    let Ok(payload) = serde_json::from_str::<Value>(&snapshot.canonical_json) else {
        return false;
    };
    normalize(&stored.captured(family))
        == normalize(&CapturedPolicy::new(family, snapshot.format, &payload))
}

/// Writes the definitions that are new or whose JSON changed. Unchanged ones are not written,
/// so concurrent captures of the same settings do not lock each other's rows.
async fn store_definitions(
    tx: &mut Tx,
    definitions: &[SettingDefinition],
    now: i64,
) -> Result<(), sqlx::Error> {
    if definitions.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = definitions.iter().map(|d| d.id.clone()).collect();
    let mut stored: HashMap<String, String> = HashMap::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = in_list(
            "SELECT id, definition FROM setting_definitions WHERE id IN (",
            chunk,
        );
        let rows: Vec<(String, String)> = sql.query_as().fetch_all(&mut **tx).await?;
        stored.extend(rows);
    }
    for definition in definitions {
        match stored.get(&definition.id) {
            Some(json) if *json == definition.json => {}
            Some(_) => {
                sqlx::query(
                    "UPDATE setting_definitions SET display_name = $2, definition = $3, updated_at = $4 \
                     WHERE id = $1",
                )
                .bind(&definition.id)
                .bind(&definition.display_name)
                .bind(&definition.json)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
            None => {
                sqlx::query(
                    "INSERT INTO setting_definitions (id, display_name, definition, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&definition.id)
                .bind(&definition.display_name)
                .bind(&definition.json)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            }
        }
    }
    Ok(())
}

/// `prefix` followed by one placeholder per id and `)`.
fn in_list(prefix: &str, ids: &[String]) -> Sql {
    let mut sql = Sql::new(prefix);
    for (index, id) in ids.iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.text(id.clone());
    }
    sql.push(")");
    sql
}

/// The stored display names of setting definitions, by id; ids never stored are left out.
pub async fn definition_names(
    db: &Db,
    ids: &[String],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let mut names = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = in_list(
            "SELECT id, display_name FROM setting_definitions WHERE id IN (",
            chunk,
        );
        let rows: Vec<(String, String)> = sql.query_as().fetch_all(db.pool()).await?;
        names.extend(rows);
    }
    Ok(names)
}

/// What the viewer and the diff show for settings catalog ids: the stored definitions' names
/// and their choice options' names.
pub async fn setting_names(db: &Db, ids: &[String]) -> Result<SettingNames, sqlx::Error> {
    let mut names = SettingNames::new();
    for chunk in ids.chunks(IDS_PER_QUERY) {
        let sql = in_list(
            "SELECT definition FROM setting_definitions WHERE id IN (",
            chunk,
        );
        let texts: Vec<String> = sql.query_scalar().fetch_all(db.pool()).await?;
        let definitions: Vec<Value> = texts
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        names.add_definitions(&definitions);
    }
    Ok(names)
}

/// The names the viewer and the diff use for one or more stored payloads: the stored
/// definitions of every setting they use, and the names a format-1 payload carries inline.
pub async fn names_for(db: &Db, payloads: &[&Value]) -> Result<SettingNames, sqlx::Error> {
    let ids: BTreeSet<String> = payloads.iter().flat_map(|p| definition_ids(p)).collect();
    let ids: Vec<String> = ids.into_iter().collect();
    let mut names = setting_names(db, &ids).await?;
    for payload in payloads {
        names.extend(SettingNames::from_payload(payload));
    }
    Ok(names)
}

/// Every `settingDefinitionId` a payload uses, at any depth, sorted and once each: the ids to
/// ask [`setting_names`] for.
pub fn definition_ids(payload: &Value) -> Vec<String> {
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(fields) => {
                for (key, item) in fields {
                    match (key.as_str(), item) {
                        ("settingDefinitionId", Value::String(id)) => {
                            out.insert(id.clone());
                        }
                        _ => walk(item, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut ids = BTreeSet::new();
    walk(payload, &mut ids);
    ids.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn definition_ids_are_found_at_every_depth() {
        let payload = json!({"settings": [
            {"settingInstance": {"settingDefinitionId": "b", "groupSettingCollectionValue": [
                {"children": [{"settingDefinitionId": "a"}, {"settingDefinitionId": "b"}]}]}},
            {"settingInstance": {"settingDefinitionId": "c"}}]});
        assert_eq!(definition_ids(&payload), ["a", "b", "c"]);
    }
}
