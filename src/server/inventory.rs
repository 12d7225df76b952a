//! Inventory sync: lists every supported policy type of a tenant through Graph and brings the
//! tenant's `policies` rows in line: new policies inserted, changed ones updated, and rows Graph
//! no longer lists marked `gone_from_intune_at` (kept for the backup items that point at them).
//!
//! Everything is read from Graph before the first write, and the writes share one transaction,
//! so a Graph failure, or a database failure half way, leaves the inventory as it was.

use std::collections::{BTreeMap, HashMap};

use sqlx::{Any, FromRow, Transaction};

use super::db::{Db, Sql};
use super::graph::credentials::{load_credentials, CredentialsError};
use super::graph::{
    GraphAccess, GraphError, PolicyListing, PolicySource, PolicyType, TenantCredentials,
};
use crate::domain::{TenantExternalId, Timestamp};

/// Rows per multi-row upsert: 5 parameters each keeps a statement far below both engines'
/// parameter limits while a large tenant still needs only a few statements.
const UPSERT_BATCH: usize = 500;
/// Ids per `IN (…)` list when marking policies gone.
const ID_BATCH: usize = 1_000;

/// What one sync changed, by policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Policies seen for the first time.
    pub added: usize,
    /// Policies whose name, platform or last-modified time changed, or that came back.
    pub updated: usize,
    /// Policies Graph lists exactly as stored.
    pub unchanged: usize,
    /// Policies stored as present that Graph no longer lists.
    pub gone: usize,
}

impl std::fmt::Display for SyncReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} added, {} updated, {} unchanged, {} gone",
            self.added, self.updated, self.unchanged, self.gone
        )
    }
}

/// Why a sync did not happen; in every case nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Graph refused or failed; reason code and sanitized message inside.
    #[error("Graph: {0}")]
    Graph(#[from] GraphError),
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialsError),
    /// The credentials name another tenant than the database row: syncing would mix tenants.
    #[error("the credentials belong to another tenant, or the tenant does not exist")]
    TenantMismatch,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The run this sync belongs to was taken over or ended meanwhile; nothing was written.
    #[error("the sync's run is no longer held by this claim")]
    Fenced,
}

/// The claim of a run a sync is done for: its transaction commits only while the run is still
/// running under this attempt, and writes the sync's summary on the run in the same
/// transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fence {
    pub run_id: i64,
    pub attempt: i64,
}

/// A tenant the CLI can sync.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SyncTarget {
    pub id: i64,
    pub external_id: String,
    pub display_name: String,
}

/// The tenant with this external id (configured or not, so the caller can say why it cannot be
/// synced), or, without one, every tenant that has Graph credentials configured.
pub async fn sync_targets(
    db: &Db,
    external_id: Option<&TenantExternalId>,
) -> Result<Vec<SyncTarget>, sqlx::Error> {
    match external_id {
        Some(external_id) => {
            sqlx::query_as(
                "SELECT id, external_id, display_name FROM tenants WHERE external_id = $1",
            )
            .bind(external_id.as_str())
            .fetch_all(db.pool())
            .await
        }
        None => {
            sqlx::query_as(
                "SELECT id, external_id, display_name FROM tenants \
                 WHERE graph_client_id IS NOT NULL AND graph_secret_ref IS NOT NULL \
                 AND disconnected_at IS NULL \
                 ORDER BY display_name, id",
            )
            .fetch_all(db.pool())
            .await
        }
    }
}

/// Loads the tenant's credentials and syncs its inventory through `access`'s client.
pub async fn load_and_sync(
    db: &Db,
    access: &GraphAccess,
    tenant_id: i64,
) -> Result<SyncReport, SyncError> {
    let creds = load_credentials(db, tenant_id, &access.secrets).await?;
    sync_tenant(db, tenant_id, &access.client, &creds).await
}

/// Syncs the inventory of the tenant with database id `tenant_id`, whose Graph credentials are
/// `creds`, from every supported policy type.
pub async fn sync_tenant(
    db: &Db,
    tenant_id: i64,
    source: &dyn PolicySource,
    creds: &TenantCredentials,
) -> Result<SyncReport, SyncError> {
    sync_tenant_fenced(db, tenant_id, source, creds, None).await
}

/// [`sync_tenant`] for a run: with a `fence`, the writes commit only while the run's claim
/// holds, together with the run's summary.
#[tracing::instrument(name = "inventory_sync", skip(db, source, creds))]
pub async fn sync_tenant_fenced(
    db: &Db,
    tenant_id: i64,
    source: &dyn PolicySource,
    creds: &TenantCredentials,
    fence: Option<Fence>,
) -> Result<SyncReport, SyncError> {
    // A policy marked gone after this (a capture's GET answered 404 while the listing was in
    // flight) may have been deleted after Graph listed it: the listing cannot clear that mark.
    let listed_at = Timestamp::now().millis();
    let listed = list_everything(source, creds).await?;
    let now = Timestamp::now().millis();

    // Reads the tenant and its stored policies before it writes them.
    let mut tx = db.begin_writing().await?;
    let owner: Option<String> = sqlx::query_scalar("SELECT external_id FROM tenants WHERE id = $1")
        .bind(tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
    if owner
        .and_then(|raw| TenantExternalId::parse(&raw).ok())
        .as_ref()
        != Some(&creds.tenant_id)
    {
        return Err(SyncError::TenantMismatch);
    }

    let mut stored = stored_policies(&mut tx, tenant_id).await?;
    let mut report = SyncReport::default();
    let mut writes = Vec::new();
    for (key, listing) in &listed {
        match stored.remove(key) {
            None => {
                report.added += 1;
                writes.push(listing);
            }
            Some(row) if row.differs_from(listing, listed_at) => {
                report.updated += 1;
                writes.push(listing);
            }
            Some(_) => report.unchanged += 1,
        }
    }
    // What is left was not listed; rows already marked gone keep their date (a sync does not
    // re-date them, tests/inventory.rs; a capture's 404 does move the mark forward).
    let gone: Vec<i64> = stored
        .values()
        .filter(|row| row.gone_from_intune_at.is_none())
        .map(|row| row.id)
        .collect();
    report.gone = gone.len();

    for ids in gone.chunks(ID_BATCH) {
        mark_gone(&mut tx, tenant_id, ids, now).await?;
    }
    for batch in writes.chunks(UPSERT_BATCH) {
        upsert(&mut tx, tenant_id, batch, now, listed_at).await?;
    }
    if report.unchanged > 0 {
        // One statement for every unchanged row: synced_at says when a sync last saw it.
        sqlx::query(
            "UPDATE policies SET synced_at = $2 \
             WHERE tenant_id = $1 AND gone_from_intune_at IS NULL AND synced_at <> $2",
        )
        .bind(tenant_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(fence) = fence {
        let held = sqlx::query(
            "UPDATE runs SET summary = $1 WHERE id = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(format!("{report}."))
        .bind(fence.run_id)
        .bind(fence.attempt)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if held != 1 {
            tx.rollback().await?;
            return Err(SyncError::Fenced);
        }
    }
    tx.commit().await?;
    tracing::info!(
        added = report.added,
        updated = report.updated,
        unchanged = report.unchanged,
        gone = report.gone,
        "inventory synced"
    );
    Ok(report)
}

/// (policy type, Graph id): how a policy is known in Graph and in the unique key.
type PolicyKey = (&'static str, String);

/// Every listing of every type, read concurrently (the client's limiter keeps it polite), keyed
/// so a policy Graph happened to list twice is written once.
async fn list_everything(
    source: &dyn PolicySource,
    creds: &TenantCredentials,
) -> Result<BTreeMap<PolicyKey, PolicyListing>, GraphError> {
    let [a, b, c, d] = PolicyType::ALL;
    let (a, b, c, d) = tokio::try_join!(
        source.list_policies(creds, a),
        source.list_policies(creds, b),
        source.list_policies(creds, c),
        source.list_policies(creds, d),
    )?;
    Ok([a, b, c, d]
        .into_iter()
        .flatten()
        .map(|listing| {
            (
                (listing.policy_type.as_str(), listing.graph_id.clone()),
                listing,
            )
        })
        .collect())
}

/// A `policies` row as far as the sync compares it.
#[derive(FromRow)]
struct StoredPolicy {
    id: i64,
    display_name: String,
    platform: String,
    last_modified_at: Option<i64>,
    gone_from_intune_at: Option<i64>,
}

impl StoredPolicy {
    /// Whether the row needs the listing written: a mark of being gone counts only when the
    /// listing (started at `listed_at`) is at least as new as it, as [`upsert`] clears it.
    fn differs_from(&self, listing: &PolicyListing, listed_at: i64) -> bool {
        self.gone_from_intune_at.is_some_and(|at| at <= listed_at)
            || self.display_name != listing.display_name
            || self.platform != listing.platform
            || self.last_modified_at != listing.last_modified_at.map(Timestamp::millis)
    }
}

async fn stored_policies(
    tx: &mut Transaction<'_, Any>,
    tenant_id: i64,
) -> Result<HashMap<PolicyKey, StoredPolicy>, sqlx::Error> {
    let rows: Vec<StoredRow> = sqlx::query_as(
        "SELECT id, policy_type, graph_id, display_name, platform, last_modified_at, \
         gone_from_intune_at FROM policies WHERE tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_all(&mut **tx)
    .await?;
    let mut stored = HashMap::with_capacity(rows.len());
    for row in rows {
        // The schema's CHECK allows only known types; anything else could never match a listing.
        let Some(policy_type) = PolicyType::parse(&row.policy_type) else {
            continue;
        };
        stored.insert((policy_type.as_str(), row.graph_id), row.policy);
    }
    Ok(stored)
}

/// A `policies` row with its key.
#[derive(FromRow)]
struct StoredRow {
    policy_type: String,
    graph_id: String,
    #[sqlx(flatten)]
    policy: StoredPolicy,
}

async fn mark_gone(
    tx: &mut Transaction<'_, Any>,
    tenant_id: i64,
    ids: &[i64],
    now: i64,
) -> Result<(), sqlx::Error> {
    // The ids are integers read from the database: a literal list cannot inject anything.
    let list = ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    // Never backwards: a capture's 404 recorded meanwhile may have marked a row later.
    let mut sql = Sql::new(
        "UPDATE policies SET gone_from_intune_at = CASE WHEN gone_from_intune_at IS NULL \
         OR gone_from_intune_at < ",
    );
    sql.int(now)
        .push(" THEN ")
        .int(now)
        .push(" ELSE gone_from_intune_at END WHERE tenant_id = ")
        .int(tenant_id)
        .push(&format!(" AND id IN ({list})"));
    sql.query().execute(&mut **tx).await?;
    Ok(())
}

/// Inserts or updates a batch of listings in one statement; an updated row is present again,
/// unless its mark of being gone is newer than the listing (started at `listed_at`).
async fn upsert(
    tx: &mut Transaction<'_, Any>,
    tenant_id: i64,
    batch: &[&PolicyListing],
    now: i64,
    listed_at: i64,
) -> Result<(), sqlx::Error> {
    let mut sql = Sql::new(
        "INSERT INTO policies (tenant_id, policy_type, graph_id, display_name, platform, \
         last_modified_at, synced_at) VALUES ",
    );
    sql.rows(batch, |sql, listing| {
        sql.int(tenant_id)
            .push(", ")
            .text(listing.policy_type.as_str())
            .push(", ")
            .text(listing.graph_id.as_str())
            .push(", ")
            .text(listing.display_name.as_str())
            .push(", ")
            .text(listing.platform.as_str())
            .push(", ")
            .opt_int(listing.last_modified_at.map(Timestamp::millis))
            .push(", ")
            .int(now);
    });
    sql.push(
        " ON CONFLICT (tenant_id, policy_type, graph_id) DO UPDATE SET \
         display_name = excluded.display_name, platform = excluded.platform, \
         last_modified_at = excluded.last_modified_at, synced_at = excluded.synced_at, \
         gone_from_intune_at = CASE WHEN policies.gone_from_intune_at <= ",
    );
    sql.int(listed_at)
        .push(" THEN NULL ELSE policies.gone_from_intune_at END");
    sql.query().execute(&mut **tx).await?;
    Ok(())
}
