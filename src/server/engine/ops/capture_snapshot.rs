//! `policy.capture_snapshot` ("Capture now", and "Compare with Intune now" on a version): captures
//! one policy and stores a new version only when its content changed. The item records the
//! version it captured and how it compares with the policy's current version before the run
//! (the one its last capture found, which after a change back is an earlier version, not the
//! newest). Short, so it queues in the interactive lane.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::operation::{Notice, Operation, Pending, Recorded, Run, Tx};
use super::super::worker::RunFailure;
use super::capture::{
    capture, pending_capture, record_capture_results, CaptureFinding, CaptureItem, Captured,
    PendingCapture,
};
use crate::domain::reason_code::ReasonCode;
use crate::domain::run::OperationType;
use crate::domain::versions::Drift;
use crate::server::db::Db;
use crate::server::graph::{CaptureOptions, PolicySource, TenantCredentials};

/// What a capture run stores in `runs.input`: the policy (also the run's target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSnapshotInput {
    pub policy_id: i64,
}

/// The handler; it captures through `source`.
pub struct CaptureSnapshot {
    source: Arc<dyn PolicySource>,
}

impl CaptureSnapshot {
    pub fn new(source: Arc<dyn PolicySource>) -> Self {
        Self { source }
    }
}

/// Captures now include everything a restore needs.
pub const FULL_CAPTURE: CaptureOptions = CaptureOptions {
    include_assignments: true,
    include_scope_tags: true,
};

impl Operation for CaptureSnapshot {
    const TYPE: OperationType = OperationType::CaptureSnapshot;
    const NOTICE: Notice = Notice::new("Capture policy", "The capture did not finish.");
    type Input = CaptureSnapshotInput;
    type Item = CaptureItem;
    type Output = Captured;

    async fn check(
        &self,
        db: &Db,
        run: &Run<CaptureSnapshotInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        let exists = sqlx::query("SELECT id FROM policies WHERE tenant_id = $1 AND id = $2")
            .bind(run.tenant_id)
            .bind(run.input.policy_id)
            .fetch_optional(db.pool())
            .await?
            .is_some();
        Ok((!exists).then(|| RunFailure {
            reason: ReasonCode::PolicyNotFound,
            message: "The policy is no longer in this tenant's inventory.".into(),
        }))
    }

    fn plan(&self, run: &Run<CaptureSnapshotInput>) -> Vec<i64> {
        vec![run.input.policy_id]
    }

    async fn pending(
        &self,
        db: &Db,
        run: &Run<CaptureSnapshotInput>,
    ) -> Result<Vec<Pending<CaptureItem>>, sqlx::Error> {
        // The base is the policy's current version before this run captured: the one its last
        // capture found (`current_snapshot_id`), which is an earlier version again once Intune
        // went back to one (renamed back, or restored). Only a policy without one (captured
        // before the column existed) falls back to its newest version by capture time. A
        // resumed run's item is done, so it is not read again.
        let rows: Vec<PendingCapture> = sqlx::query_as(
            "SELECT ri.id AS item_id, ri.policy_id, p.graph_id, p.policy_type, \
               COALESCE(\
                 (SELECT s.id FROM policy_snapshots s WHERE s.tenant_id = p.tenant_id \
                  AND s.policy_id = p.id AND s.id = p.current_snapshot_id), \
                 (SELECT s.id FROM policy_snapshots s WHERE s.tenant_id = p.tenant_id AND s.policy_id = p.id \
                  ORDER BY s.captured_at DESC, s.id DESC LIMIT 1)) AS base_id \
             FROM run_items ri JOIN policies p ON p.tenant_id = ri.tenant_id AND p.id = ri.policy_id \
             WHERE ri.run_id = $1 AND ri.tenant_id = $2 AND ri.outcome = 'pending' ORDER BY ri.id",
        )
        .bind(run.id)
        .bind(run.tenant_id)
        .fetch_all(db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| pending_capture(row, FULL_CAPTURE))
            .collect())
    }

    async fn process(
        &self,
        creds: &TenantCredentials,
        _run: &Run<CaptureSnapshotInput>,
        item: &CaptureItem,
    ) -> Captured {
        capture(self.source.as_ref(), creds, item).await
    }

    /// Records the capture and, in the same transaction, the run's summary: only here is it
    /// known whether the capture stored a new version, which the comparison alone cannot tell.
    async fn record(
        &self,
        tx: &mut Tx,
        run: &Run<CaptureSnapshotInput>,
        batch: &[(Pending<CaptureItem>, Captured)],
        now: i64,
    ) -> Result<Vec<Recorded>, sqlx::Error> {
        let results = record_capture_results(tx, run.tenant_id, batch, now).await?;
        if let Some(summary) = results.iter().find_map(|(_, found)| found.map(summary)) {
            sqlx::query("UPDATE runs SET summary = $1 WHERE tenant_id = $2 AND id = $3")
                .bind(summary)
                .bind(run.tenant_id)
                .bind(run.id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(results.into_iter().map(|(recorded, _)| recorded).collect())
    }
}

/// The run's result line: what the capture found, and whether it stored a new version.
fn summary(found: CaptureFinding) -> &'static str {
    match (found.drift, found.new_version) {
        (Drift::New, _) => "Captured the first version.",
        (Drift::Changed, true) => "Captured a new version: the policy changed since the last one.",
        // The capture is a version stored before (its hash, or its content, is known): Intune
        // went back to it, by an edit or a restore.
        (Drift::Changed, false) => {
            "The policy changed since the last capture; Intune holds an earlier version again \
             (no new version stored)."
        }
        (Drift::Unchanged, false) => "No change since the last version; no new version stored.",
        // The hash differs, but only in parts the last version did not record.
        (Drift::Unchanged, true) => {
            "Stored a new version that also records what the last one did not (assignments, \
             scope tags); no setting changed."
        }
        (Drift::Deleted, _) => "The policy no longer exists in Intune.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_capture_says_whether_it_stored_a_version() {
        let found = |drift, new_version| summary(CaptureFinding { drift, new_version });
        assert!(found(Drift::Unchanged, false).contains("no new version stored"));
        assert!(found(Drift::Unchanged, true).starts_with("Stored a new version"));
        assert!(found(Drift::Changed, true).starts_with("Captured a new version"));
    }

    #[test]
    fn a_change_back_to_an_earlier_version_does_not_claim_a_new_one() {
        let back = summary(CaptureFinding {
            drift: Drift::Changed,
            new_version: false,
        });
        assert!(!back.contains("new version:"), "{back}");
        assert!(back.contains("earlier version again"), "{back}");
        assert!(back.contains("no new version stored"), "{back}");
    }
}
