//! Stored versions of policies: a captured [`Snapshot`] becomes a `policy_snapshots` row. Every
//! operation that captures (adding to a backup set, capture now, drift checks) stores through
//! here, so the hash rule holds everywhere: an unchanged policy reuses its existing version.

use sqlx::Row;

use super::engine::operation::Tx;
use super::graph::Snapshot;

/// The version a capture was stored as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredSnapshot {
    /// The `policy_snapshots` row.
    pub id: i64,
    /// Whether this capture made the row (a new version); `false` when the policy's content was
    /// already stored under this hash.
    pub new_version: bool,
}

/// Stores `snapshot` as a version of the tenant's policy, or finds the version with the same
/// content hash, inside the caller's transaction.
pub async fn store_snapshot(
    tx: &mut Tx,
    tenant_id: i64,
    policy_id: i64,
    snapshot: &Snapshot,
    now: i64,
) -> Result<StoredSnapshot, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (policy_id, content_hash) DO NOTHING",
    )
    .bind(tenant_id)
    .bind(policy_id)
    .bind(&snapshot.content_hash)
    .bind(&snapshot.canonical_json)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let id: i64 = sqlx::query(
        "SELECT id FROM policy_snapshots WHERE tenant_id = $1 AND policy_id = $2 AND content_hash = $3",
    )
    .bind(tenant_id)
    .bind(policy_id)
    .bind(&snapshot.content_hash)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?;
    Ok(StoredSnapshot {
        id,
        new_version: inserted == 1,
    })
}
