//! What the capturing operations share (`policy.capture_snapshot`, `backup_set.drift_check`):
//! capture a policy from Graph, store the version (the hash rule: an unchanged policy reuses
//! its version), and compare it with a base version setting by setting. Each item records the
//! version it captured, the base and how the two compare (`run_items` columns of migration
//! 0015), which the result pages read.

use super::super::operation::{Pending, Recorded, Tx};
use super::PendingPolicy;
use crate::domain::reason_code::ReasonCode;
use crate::domain::snapshot::{compare, CapturedPolicy, PolicyType, SettingNames};
use crate::domain::versions::Drift;
use crate::domain::Timestamp;
use crate::server::db::Sql;
use crate::server::graph::{CaptureOptions, PolicySource, Snapshot, TenantCredentials};
use crate::server::sanitize::sanitize;
use crate::server::snapshots::{load_version, store_captures, Capture, StoredSnapshot};

/// A policy to capture, with the version its capture is compared with.
#[derive(Debug, Clone)]
pub struct CaptureItem {
    pub policy_id: i64,
    pub graph_id: String,
    pub policy_type: String,
    /// The version compared with: the backup's (drift) or the policy's current one (capture now).
    pub base_snapshot_id: Option<i64>,
    pub options: CaptureOptions,
}

/// What capturing one policy gave.
pub enum Captured {
    /// What Graph returned, and when the request that returned the policy was sent (Unix ms;
    /// [`Snapshot::read_at`], [`Capture::read_at`]).
    Snapshot {
        snapshot: Snapshot,
        read_at: i64,
    },
    /// Graph says the policy no longer exists.
    Deleted,
    Failed(ReasonCode, String),
}

/// Captures the item's policy from Graph.
pub async fn capture(
    source: &dyn PolicySource,
    creds: &TenantCredentials,
    item: &CaptureItem,
) -> Captured {
    let Some(policy_type) = PolicyType::parse(&item.policy_type) else {
        return Captured::Failed(ReasonCode::UnknownError, "Unsupported policy type.".into());
    };
    // Only for a source that does not say when it sent the read: a lower bound all the same.
    let asked_at = Timestamp::now().millis();
    match source
        .capture_policy(creds, policy_type, &item.graph_id, item.options)
        .await
    {
        Ok(snapshot) => Captured::Snapshot {
            read_at: snapshot.read_at.unwrap_or(asked_at),
            snapshot,
        },
        Err(error) if error.reason_code() == ReasonCode::PolicyNotFound => Captured::Deleted,
        Err(error) => {
            let (reason, message) = (error.reason_code(), sanitize(error.message()));
            tracing::warn!(policy_id = item.policy_id, reason = reason.as_str(), %message, "capture failed");
            Captured::Failed(reason, message)
        }
    }
}

/// Stores a batch of captures (their versions together), compares each with its base, and
/// records what each gave on its run item (one statement per [`ITEMS_PER_UPDATE`] items), in the
/// batch's order.
pub async fn record_captures(
    tx: &mut Tx,
    tenant_id: i64,
    batch: &[(Pending<CaptureItem>, Captured)],
    now: i64,
) -> Result<Vec<Recorded>, sqlx::Error> {
    let recorded = record_capture_results(tx, tenant_id, batch, now).await?;
    Ok(recorded.into_iter().map(|(recorded, _)| recorded).collect())
}

/// What a recorded capture found: how it compares with its base, and whether it stored a new
/// version. The two differ when only parts the base did not record (assignments, scope tags)
/// are new: the settings are unchanged, yet the version is new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureFinding {
    pub drift: Drift,
    pub new_version: bool,
}

/// [`record_captures`], with what each capture that was recorded found (`None` for a failed
/// one), in the batch's order.
pub async fn record_capture_results(
    tx: &mut Tx,
    tenant_id: i64,
    batch: &[(Pending<CaptureItem>, Captured)],
    now: i64,
) -> Result<Vec<(Recorded, Option<CaptureFinding>)>, sqlx::Error> {
    let captures: Vec<Capture<'_>> = batch
        .iter()
        .filter_map(|(pending, captured)| match captured {
            Captured::Snapshot { snapshot, read_at } => Some(Capture {
                policy_id: pending.item.policy_id,
                snapshot,
                read_at: Some(*read_at),
            }),
            _ => None,
        })
        .collect();
    let mut stored = store_captures(tx, tenant_id, &captures, now)
        .await?
        .into_iter();
    let mut recorded = Vec::with_capacity(batch.len());
    let mut results = Vec::with_capacity(batch.len());
    for (pending, captured) in batch {
        let version = match captured {
            Captured::Snapshot { .. } => stored.next(),
            _ => None,
        };
        match compare_capture(tx, tenant_id, pending, captured, version, now).await? {
            Ok(result) => {
                let finding = CaptureFinding {
                    drift: result.drift,
                    new_version: result.new_version,
                };
                results.push(result);
                recorded.push((Recorded::succeeded(), Some(finding)));
            }
            Err(failed) => recorded.push((failed, None)),
        }
    }
    for chunk in results.chunks(ITEMS_PER_UPDATE) {
        item_results_sql(tenant_id, chunk)
            .query()
            .execute(&mut **tx)
            .await?;
    }
    Ok(recorded)
}

/// Run items per statement when recording a batch (5 values each: well under both engines'
/// parameter limits).
const ITEMS_PER_UPDATE: usize = 100;

/// What a capture leaves on its run item: the version it stored, the base and how they compare.
#[derive(Debug)]
struct ItemResult {
    item_id: i64,
    snapshot_id: Option<i64>,
    base_snapshot_id: Option<i64>,
    drift: Drift,
    changed_settings: Option<i64>,
    /// Whether the capture stored a new version (not written: [`CaptureFinding`] carries it).
    new_version: bool,
}

/// How the capture compares with the item's base (`version`: the one its snapshot was stored
/// as). A failed capture has nothing to compare: it comes back as the outcome to record (`Err`).
/// A policy deleted in Intune is marked gone from the inventory.
async fn compare_capture(
    tx: &mut Tx,
    tenant_id: i64,
    pending: &Pending<CaptureItem>,
    captured: &Captured,
    version: Option<StoredSnapshot>,
    now: i64,
) -> Result<Result<ItemResult, Recorded>, sqlx::Error> {
    let item = &pending.item;
    let (snapshot_id, drift, changed_settings, new_version) = match captured {
        Captured::Failed(reason, message) => {
            return Ok(Err(Recorded::failed(*reason, message.clone())));
        }
        Captured::Deleted => {
            // The mark moves forward to this 404: an older mark (a blip no capture has cleared
            // since) would let a read made before this 404, recorded after it, clear the mark.
            // Only while the record still names the Graph id asked for: a restore may have
            // recreated the policy meanwhile and moved the record to the new one, which this
            // 404 says nothing of.
            sqlx::query(
                "UPDATE policies SET gone_from_intune_at = CASE WHEN gone_from_intune_at IS NULL \
                 OR gone_from_intune_at < $3 THEN $3 ELSE gone_from_intune_at END \
                 WHERE tenant_id = $1 AND id = $2 AND graph_id = $4",
            )
            .bind(tenant_id)
            .bind(item.policy_id)
            .bind(now)
            .bind(&item.graph_id)
            .execute(&mut **tx)
            .await?;
            (None, Drift::Deleted, None, false)
        }
        Captured::Snapshot { snapshot, .. } => {
            // Stored with the batch ([`record_captures`]).
            let stored = version.ok_or(sqlx::Error::RowNotFound)?;
            let (drift, changed) = match item.base_snapshot_id {
                None => (Drift::New, None),
                Some(base) if base == stored.id => (Drift::Unchanged, Some(0)),
                Some(base) => {
                    let changed =
                        changed_settings(tx, tenant_id, base, snapshot, &item.policy_type).await?;
                    (
                        if changed == 0 {
                            Drift::Unchanged
                        } else {
                            Drift::Changed
                        },
                        Some(changed),
                    )
                }
            };
            (Some(stored.id), drift, changed, stored.new_version)
        }
    };
    Ok(Ok(ItemResult {
        item_id: pending.item_id,
        snapshot_id,
        base_snapshot_id: item.base_snapshot_id,
        drift,
        changed_settings,
        new_version,
    }))
}

/// One statement that records these results on their run items, found by their ids (the
/// primary key, as the engine's outcomes are: [`outcomes_sql`](super::super::worker::outcomes_sql))
/// and only in the run's tenant.
fn item_results_sql(tenant_id: i64, results: &[ItemResult]) -> Sql {
    let mut sql =
        Sql::new("WITH v (id, snapshot_id, base_snapshot_id, drift, changed_settings) AS (VALUES ");
    sql.rows(results, |sql, result| {
        sql.int(result.item_id)
            .push(", ")
            .opt_int(result.snapshot_id)
            .push(", ")
            .opt_int(result.base_snapshot_id)
            .push(", ")
            .text(result.drift.as_str())
            .push(", ")
            .opt_int(result.changed_settings);
    })
    .push(
        ") UPDATE run_items SET snapshot_id = v.snapshot_id, \
         base_snapshot_id = v.base_snapshot_id, drift = v.drift, \
         changed_settings = v.changed_settings FROM v WHERE run_items.id = v.id AND run_items.id IN (",
    )
    .list(results, |sql, result| {
        sql.int(result.item_id);
    })
    .push(") AND run_items.tenant_id = ")
    .int(tenant_id);
    sql
}

/// How many settings differ between the stored version `base` and the fresh capture, each read
/// in the format it was captured in (parts the older one did not record are not counted). The
/// capture is compared as it is in memory: reading back what was just stored would be the same
/// work twice.
pub(crate) async fn changed_settings(
    tx: &mut Tx,
    tenant_id: i64,
    base: i64,
    fresh: &Snapshot,
    policy_type: &str,
) -> Result<i64, sqlx::Error> {
    let old = match load_version(&mut **tx, tenant_id, base).await {
        Ok(old) => old,
        // A stored payload that no longer parses (or an unknown format) is this item's problem,
        // not the batch's: the database answered, only the row cannot be read.
        Err(sqlx::Error::Decode(error)) => {
            tracing::warn!(snapshot_id = base, %error, "the base version cannot be read");
            None
        }
        Err(error) => return Err(error),
    };
    let new = serde_json::from_str::<serde_json::Value>(&fresh.canonical_json).ok();
    let (Some(family), Some(old), Some(new)) = (PolicyType::parse(policy_type), old, new) else {
        // Unreadable: counted as one change, so it is looked at rather than passed as equal.
        return Ok(1);
    };
    // Names only label the changes; counting them needs none.
    let comparison = compare(
        &old.captured(family),
        &CapturedPolicy::new(family, fresh.format, &new),
        &SettingNames::default(),
    );
    Ok(comparison.changes.len() as i64)
}

/// A pending item of a capturing run with `base_id`, the version it is compared with (if any).
#[derive(sqlx::FromRow)]
pub struct PendingCapture {
    #[sqlx(flatten)]
    policy: PendingPolicy,
    base_id: Option<i64>,
}

/// A pending item of a capturing run, captured with `options`.
pub fn pending_capture(row: PendingCapture, options: CaptureOptions) -> Pending<CaptureItem> {
    Pending {
        item_id: row.policy.item_id,
        item: CaptureItem {
            policy_id: row.policy.policy_id,
            graph_id: row.policy.graph_id,
            policy_type: row.policy.policy_type,
            base_snapshot_id: row.base_id,
            options,
        },
    }
}
