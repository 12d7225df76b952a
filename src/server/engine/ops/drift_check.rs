//! `backup_set.drift_check` ("Compare with Intune" on a backup set): captures every policy in the
//! set the way its backup item was captured and compares it with the backup's version. Each item
//! ends unchanged, changed (with the number of settings) or deleted in Intune; the run's summary
//! says how many changed ("12 of 240 policies changed since this backup"). Fresh captures are
//! stored as versions (the hash rule), so each change links to its diff.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::operation::{Notice, Operation, Pending, Recorded, Run, Tx};
use super::super::worker::RunFailure;
use super::capture::{pending_capture, CaptureItem, Captured, PendingCapture};
use crate::domain::run::OperationType;
use crate::domain::versions::DriftCounts;
use crate::server::db::Db;
use crate::server::graph::{CaptureOptions, PolicySource, TenantCredentials};

/// What a drift check stores in `runs.input`: the set and its policies when it was submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftCheckInput {
    pub backup_set_id: i64,
    pub policy_ids: Vec<i64>,
}

/// The handler; it captures through `source`.
pub struct DriftCheck {
    source: Arc<dyn PolicySource>,
}

impl DriftCheck {
    pub fn new(source: Arc<dyn PolicySource>) -> Self {
        Self { source }
    }
}

impl Operation for DriftCheck {
    const TYPE: OperationType = OperationType::DriftCheck;
    const NOTICE: Notice = Notice::new("Drift check", "The drift check did not finish.");
    type Input = DriftCheckInput;
    type Item = CaptureItem;
    type Output = Captured;

    async fn check(
        &self,
        db: &Db,
        run: &Run<DriftCheckInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        super::backup_set_gone(
            db,
            run.tenant_id,
            run.input.backup_set_id,
            "The backup set was deleted before its drift check could run.",
        )
        .await
    }

    fn plan(&self, run: &Run<DriftCheckInput>) -> Vec<i64> {
        run.input.policy_ids.clone()
    }

    async fn pending(
        &self,
        db: &Db,
        run: &Run<DriftCheckInput>,
    ) -> Result<Vec<Pending<CaptureItem>>, sqlx::Error> {
        // Each policy is captured the way its backup was (with or without assignments and
        // scope tags, as the stored version records), so an unchanged policy hashes the same.
        let sql = "SELECT ri.id AS item_id, ri.policy_id, p.graph_id, p.policy_type, \
                    bi.snapshot_id AS base_id, s.with_assignments, s.with_scope_tags \
             FROM run_items ri \
             JOIN policies p ON p.tenant_id = ri.tenant_id AND p.id = ri.policy_id \
             LEFT JOIN backup_items bi ON bi.tenant_id = ri.tenant_id AND bi.backup_set_id = $2 \
               AND bi.policy_id = ri.policy_id \
             LEFT JOIN policy_snapshots s ON s.tenant_id = bi.tenant_id AND s.id = bi.snapshot_id \
             WHERE ri.run_id = $1 AND ri.tenant_id = $3 AND ri.outcome = 'pending' ORDER BY ri.id";
        let rows: Vec<DriftPending> = sqlx::query_as(sql)
            .bind(run.id)
            .bind(run.input.backup_set_id)
            .bind(run.tenant_id)
            .fetch_all(db.pool())
            .await?;
        let recorded = |flag: Option<i64>| flag.is_some_and(|on| on != 0);
        Ok(rows
            .into_iter()
            .map(|row| {
                let options = CaptureOptions {
                    include_assignments: recorded(row.with_assignments),
                    include_scope_tags: recorded(row.with_scope_tags),
                };
                pending_capture(row.capture, options)
            })
            .collect())
    }

    super::capturing_items!(DriftCheckInput);

    async fn conclude(
        &self,
        db: &Db,
        creds: Result<&TenantCredentials, &RunFailure>,
        run: &Run<DriftCheckInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        if let Err(failure) = creds {
            return Ok(Some(failure.clone()));
        }
        let counts = drift_counts(db, run.id).await?;
        super::write_summary(db, run.id, run.attempt, &counts.summary()).await?;
        Ok(None)
    }
}

/// A pending item of a drift check with how its backup was captured.
#[derive(sqlx::FromRow)]
struct DriftPending {
    #[sqlx(flatten)]
    capture: PendingCapture,
    with_assignments: Option<i64>,
    with_scope_tags: Option<i64>,
}

/// How a drift check's items compare, counted.
pub async fn drift_counts(db: &Db, run_id: i64) -> Result<DriftCounts, sqlx::Error> {
    let rows: Vec<(String, Option<String>, i64)> = sqlx::query_as(
        "SELECT outcome, drift, COUNT(*) AS n FROM run_items WHERE run_id = $1 GROUP BY outcome, drift",
    )
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    let mut counts = DriftCounts::default();
    for (outcome, drift, n) in rows {
        counts.total += n;
        match drift.as_deref() {
            Some("changed") => counts.changed += n,
            Some("deleted") => counts.deleted += n,
            Some("unchanged") => counts.unchanged += n,
            // A policy that was not in the set's backup when checked.
            Some("new") => counts.unchanged += n,
            _ if outcome == "failed" => counts.failed += n,
            _ => {}
        }
    }
    Ok(counts)
}
