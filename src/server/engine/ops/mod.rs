//! One handler per operation type, each dispatched to by the engine.

pub mod add_policies;
pub mod capture;
pub mod capture_snapshot;
pub mod check_connection;
pub mod drift_check;
pub mod inventory_sync;
pub mod restore_common;
pub mod restore_execute;
pub mod restore_preview;

use super::worker::RunFailure;
use crate::domain::reason_code::ReasonCode;
use crate::domain::RunStatus;
use crate::server::db::Db;
use crate::server::snapshots::{load_version, StoredVersion};

/// A run's item without an outcome, with its policy's Graph id and type.
#[derive(sqlx::FromRow)]
pub(crate) struct PendingPolicy {
    pub item_id: i64,
    pub policy_id: i64,
    pub graph_id: String,
    pub policy_type: String,
}

/// The run's items without an outcome, in order, each with its policy's Graph id and type.
pub(crate) async fn pending_policy_rows(
    db: &Db,
    run_id: i64,
    tenant_id: i64,
) -> Result<Vec<PendingPolicy>, sqlx::Error> {
    sqlx::query_as(
        "SELECT ri.id AS item_id, ri.policy_id, p.graph_id, p.policy_type FROM run_items ri \
         JOIN policies p ON p.tenant_id = ri.tenant_id AND p.id = ri.policy_id \
         WHERE ri.run_id = $1 AND ri.tenant_id = $2 AND ri.outcome = 'pending' ORDER BY ri.id",
    )
    .bind(run_id)
    .bind(tenant_id)
    .fetch_all(db.pool())
    .await
}

/// An entry of a restore's input: a policy and the version restored.
pub(crate) trait PlannedRestore {
    fn policy_id(&self) -> i64;
    fn snapshot_id(&self) -> i64;
}

/// The policies a restore's input plans, in order: the run's items.
pub(crate) fn planned_ids<P: PlannedRestore>(planned: &[P]) -> Vec<i64> {
    planned.iter().map(P::policy_id).collect()
}

/// A pending item of a restore with the input's entry that planned it and the version it
/// restores (`None` when that version no longer exists).
pub(crate) struct PendingRestore<'a, P> {
    pub row: PendingPolicy,
    pub planned: &'a P,
    pub version: Option<StoredVersion>,
}

/// A restore's pending items, in order (every item was planned from the input, so each has its
/// entry). The version is read once here for what it refers to and how it was captured; the
/// payload is read again only where it is compared or written.
pub(crate) async fn pending_restores<'a, P: PlannedRestore>(
    db: &Db,
    run_id: i64,
    tenant_id: i64,
    planned: &'a [P],
) -> Result<Vec<PendingRestore<'a, P>>, sqlx::Error> {
    let by_policy: std::collections::HashMap<i64, &P> = planned
        .iter()
        .map(|item| (item.policy_id(), item))
        .collect();
    let mut pending = Vec::new();
    for row in pending_policy_rows(db, run_id, tenant_id).await? {
        let Some(&planned) = by_policy.get(&row.policy_id) else {
            continue;
        };
        let version = load_version(db.pool(), tenant_id, planned.snapshot_id()).await?;
        pending.push(PendingRestore {
            row,
            planned,
            version,
        });
    }
    Ok(pending)
}

/// The failure of a run whose backup set is gone (`message` says what the run could not do),
/// or `None` while the set exists.
pub(crate) async fn backup_set_gone(
    db: &Db,
    tenant_id: i64,
    backup_set_id: i64,
    message: &str,
) -> Result<Option<RunFailure>, sqlx::Error> {
    let exists = crate::server::backup_sets::exists(db, tenant_id, backup_set_id).await?;
    Ok((!exists).then(|| RunFailure {
        reason: ReasonCode::BackupSetNotFound,
        message: message.to_owned(),
    }))
}

/// The notification of a run that ends with a summary line: "title: Succeeded" and the summary,
/// the failure when the run failed as a whole, or the notice's `unfinished` when it wrote none.
pub(crate) fn summary_notification(
    notice: super::operation::Notice,
    status: crate::domain::RunStatus,
    failure: Option<&RunFailure>,
    summary: Option<&str>,
) -> (String, String) {
    let body = match (failure, summary) {
        (Some(f), _) => {
            crate::server::sanitize::sanitize(&format!("{}: {}", f.reason.label(), f.message))
        }
        (None, Some(summary)) => summary.to_owned(),
        (None, None) => notice.unfinished.to_owned(),
    };
    (format!("{}: {}", notice.title, status.label()), body)
}

/// The item types and methods of an operation without items (its work is the run's as a whole, in
/// `conclude`): nothing to plan, load, process or record.
macro_rules! without_items {
    ($input:ty) => {
        type Input = $input;
        type Item = ();
        type Output = ();

        fn plan(&self, _run: &Run<$input>) -> Vec<i64> {
            Vec::new()
        }

        async fn pending(
            &self,
            _db: &Db,
            _run: &Run<$input>,
        ) -> Result<Vec<Pending<()>>, sqlx::Error> {
            Ok(Vec::new())
        }

        async fn process(&self, _creds: &TenantCredentials, _run: &Run<$input>, _item: &()) {}

        async fn record(
            &self,
            _tx: &mut Tx,
            _run: &Run<$input>,
            batch: &[(Pending<()>, ())],
            _now: i64,
        ) -> Result<Vec<Recorded>, sqlx::Error> {
            // Never called: the run has no items.
            Ok(batch.iter().map(|_| Recorded::succeeded()).collect())
        }
    };
}
pub(crate) use without_items;

/// The methods of an operation whose items are captures ([`capture::capture`], stored and
/// compared by [`capture::record_captures`]); the handler holds the Graph `source`.
macro_rules! capturing_items {
    ($input:ty) => {
        async fn process(
            &self,
            creds: &TenantCredentials,
            _run: &Run<$input>,
            item: &CaptureItem,
        ) -> Captured {
            super::capture::capture(self.source.as_ref(), creds, item).await
        }

        async fn record(
            &self,
            tx: &mut Tx,
            run: &Run<$input>,
            batch: &[(Pending<CaptureItem>, Captured)],
            now: i64,
        ) -> Result<Vec<Recorded>, sqlx::Error> {
            super::capture::record_captures(tx, run.tenant_id, batch, now).await
        }
    };
}
pub(crate) use capturing_items;

/// Writes a run's one-line summary ("12 of 240 policies changed since this backup"), which its
/// notification and the pages show; only while this claim (`attempt`) still holds the run.
pub(crate) async fn write_summary(
    db: &Db,
    run_id: i64,
    attempt: i64,
    summary: &str,
) -> Result<bool, sqlx::Error> {
    write_summary_while(db, run_id, attempt, summary, RunStatus::Running).await
}

/// Writes the summary of a run that a cancel ended while this claim (`attempt`) was working on
/// it: what the claim did before it stopped (a restore's writes stay in Intune). Only that claim
/// writes it: a cancelled run is never claimed again, so its attempt stays the claim's.
pub(crate) async fn write_cancelled_summary(
    db: &Db,
    run_id: i64,
    attempt: i64,
    summary: &str,
) -> Result<bool, sqlx::Error> {
    write_summary_while(db, run_id, attempt, summary, RunStatus::Cancelled).await
}

/// Writes the run's summary while claim `attempt` holds it and the run is `status`.
async fn write_summary_while(
    db: &Db,
    run_id: i64,
    attempt: i64,
    summary: &str,
    status: RunStatus,
) -> Result<bool, sqlx::Error> {
    let written =
        sqlx::query("UPDATE runs SET summary = $1 WHERE id = $2 AND attempt = $3 AND status = $4")
            .bind(summary)
            .bind(run_id)
            .bind(attempt)
            .bind(status.as_str())
            .execute(db.pool())
            .await?
            .rows_affected();
    Ok(written == 1)
}
