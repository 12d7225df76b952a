//! The durable worker: the run and its items are the queue. A worker claims a pending run (or a
//! running one whose lease expired) with a lease, captures each pending item from Graph, and
//! records every outcome together with the run's counters in one transaction, guarded by the
//! lease: a worker that lost its lease writes nothing, so no item is captured into the backup
//! set twice. Tests drive it step by step through [`Worker::try_execute_task`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sqlx::Row;

use super::input::AddPoliciesInput;
use super::key::ADD_POLICIES;
use crate::domain::reason_code::ReasonCode;
use crate::domain::{AddPoliciesOptions, RunStatus, Timestamp};
use crate::server::db::{Backend, Db};
use crate::server::graph::{CaptureOptions, PolicySource, PolicyType, Snapshot, TenantCredentials};
use crate::server::sanitize::sanitize;

/// Why a whole run cannot proceed (e.g. the tenant's credentials are missing or rejected).
#[derive(Debug, Clone)]
pub struct RunFailure {
    pub reason: ReasonCode,
    pub message: String,
}

/// A boxed future, so credential loading can be swapped in tests.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Loads the Graph credentials of a tenant (by database id).
pub type CredentialsLoader =
    Arc<dyn Fn(i64) -> BoxFuture<Result<TenantCredentials, RunFailure>> + Send + Sync>;

/// What one step of the worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A run was claimed and worked on until it ended (or the lease was lost).
    TaskCompleted { run_id: i64 },
    /// Nothing to do.
    EmptyQueue,
}

/// Outcomes written in one transaction at most (those ready when the previous batch is written).
const RECORD_BATCH: usize = 64;

/// Aborts the capture task when the run is abandoned (lease lost, error, or the worker stopped).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One worker; several (in one process or many) may share a database.
#[derive(Clone)]
pub struct Worker {
    db: Db,
    source: Arc<dyn PolicySource>,
    credentials: CredentialsLoader,
    /// Identifies this worker's leases.
    id: String,
    lease: Duration,
    /// Items captured at once per run (the Graph client's per-tenant limiter paces them).
    concurrency: usize,
}

#[derive(Clone)]
struct ClaimedRun {
    id: i64,
    tenant_id: i64,
    backup_set_id: i64,
    initiated_by: Option<i64>,
    options: AddPoliciesOptions,
    /// The selection stored by the submit; the run's items are written from it.
    policy_ids: Vec<i64>,
}

struct PendingItem {
    item_id: i64,
    policy_id: i64,
    graph_id: String,
    policy_type: String,
    /// The policy was already in the backup set when the run was resumed or started.
    already_in_set: bool,
}

/// Outcomes of a batch of items, added to the run's counters.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    succeeded: i64,
    failed: i64,
    skipped: i64,
}

enum ItemResult {
    Captured(Snapshot),
    Skipped(ReasonCode),
    Failed(ReasonCode, String),
}

impl Worker {
    pub fn new(
        db: Db,
        source: Arc<dyn PolicySource>,
        credentials: CredentialsLoader,
        id: impl Into<String>,
    ) -> Self {
        Self {
            db,
            source,
            credentials,
            id: id.into(),
            lease: Duration::from_secs(60),
            concurrency: 8,
        }
    }

    /// How long a claim lasts without a heartbeat (renewed every third of it while the run is
    /// worked on, and by every batch of outcomes).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Claims one run and works on it to its end.
    pub async fn try_execute_task(&self) -> Result<Outcome, sqlx::Error> {
        let Some(run) = self.claim().await? else {
            return Ok(Outcome::EmptyQueue);
        };
        let span = tracing::info_span!("run", run_id = run.id, tenant_id = run.tenant_id);
        let _guard = span.enter();
        self.process(&run).await?;
        Ok(Outcome::TaskCompleted { run_id: run.id })
    }

    /// Gives up this worker's leases (graceful shutdown): its runs become claimable at once.
    pub async fn release_leases(&self) -> Result<u64, sqlx::Error> {
        sqlx::query(
            "UPDATE runs SET lease_expires_at = 0 WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(&self.id)
        .execute(self.db.pool())
        .await
        .map(|done| done.rows_affected())
    }

    /// Renews the lease on `run_id` every third of its length, until aborted or the lease is
    /// lost.
    async fn heartbeat(self, run_id: i64) {
        let mut every = tokio::time::interval(self.lease / 3);
        every.tick().await; // the first tick is immediate; the claim has just set the lease
        loop {
            every.tick().await;
            let renewed = sqlx::query(
                "UPDATE runs SET lease_expires_at = $1 \
                 WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
            )
            .bind(self.lease_until())
            .bind(run_id)
            .bind(&self.id)
            .execute(self.db.pool())
            .await;
            match renewed {
                Ok(done) if done.rows_affected() == 1 => {}
                Ok(_) => return, // lost, or the run ended
                Err(error) => tracing::warn!(%error, "could not renew the lease; retrying"),
            }
        }
    }

    fn lease_until(&self) -> i64 {
        Timestamp::now().millis() + self.lease.as_millis() as i64
    }

    async fn claim(&self) -> Result<Option<ClaimedRun>, sqlx::Error> {
        let now = Timestamp::now().millis();
        // PostgreSQL: rows another instance is claiming right now are skipped, not waited for.
        // SQLite has one writer at a time, so the UPDATE is atomic as it stands.
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let claimable = "(status = 'pending' OR (status = 'running' AND lease_expires_at < $3))";
        let sql = format!(
            "UPDATE runs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             attempt = attempt + 1, started_at = COALESCE(started_at, $3) \
             WHERE id = (SELECT id FROM runs WHERE {claimable} AND operation_type = $4 \
                         ORDER BY created_at, id LIMIT 1{lock}) \
               AND {claimable} \
             RETURNING id, tenant_id, target_id, initiated_by, input"
        );
        let row = sqlx::query(&sql)
            .bind(&self.id)
            .bind(self.lease_until())
            .bind(now)
            .bind(ADD_POLICIES)
            .fetch_optional(self.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let input = AddPoliciesInput::from_json(&row.try_get::<String, _>("input")?);
        Ok(Some(ClaimedRun {
            id: row.try_get("id")?,
            tenant_id: row.try_get("tenant_id")?,
            backup_set_id: row.try_get("target_id")?,
            initiated_by: row.try_get("initiated_by")?,
            options: input.options,
            policy_ids: input.policy_ids,
        }))
    }

    async fn process(&self, run: &ClaimedRun) -> Result<(), sqlx::Error> {
        let set_exists = sqlx::query("SELECT id FROM backup_sets WHERE tenant_id = $1 AND id = $2")
            .bind(run.tenant_id)
            .bind(run.backup_set_id)
            .fetch_optional(self.db.pool())
            .await?
            .is_some();
        if !set_exists {
            let failure = RunFailure {
                reason: ReasonCode::BackupSetNotFound,
                message: "The backup set was deleted before the run could add policies to it."
                    .into(),
            };
            return self.finish(run, Some(failure)).await;
        }
        if !self.materialize_items(run).await? {
            tracing::warn!("lease lost before the run's items were written");
            return Ok(());
        }
        // The heartbeat keeps the claim while Graph is slow (a Retry-After may pause a tenant
        // for longer than the lease); it stops when this run is left, however that happens.
        let _heartbeat = AbortOnDrop(tokio::spawn(self.clone().heartbeat(run.id)));
        let creds = match (self.credentials)(run.tenant_id).await {
            Ok(creds) => creds,
            Err(failure) => return self.finish(run, Some(failure)).await,
        };
        // Items with an outcome are done, also from an earlier attempt: a resumed run skips them.
        // Whether each policy is already in the set comes with it: one query per run, not per item.
        let rows = sqlx::query(
            "SELECT ri.id AS item_id, ri.policy_id, p.graph_id, p.policy_type, bi.id AS backup_item_id \
             FROM run_items ri \
             JOIN policies p ON p.tenant_id = ri.tenant_id AND p.id = ri.policy_id \
             LEFT JOIN backup_items bi ON bi.backup_set_id = $2 AND bi.policy_id = ri.policy_id \
             WHERE ri.run_id = $1 AND ri.tenant_id = $3 AND ri.outcome = 'pending' ORDER BY ri.id",
        )
        .bind(run.id)
        .bind(run.backup_set_id)
        .bind(run.tenant_id)
        .fetch_all(self.db.pool())
        .await?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(PendingItem {
                    item_id: row.try_get("item_id")?,
                    policy_id: row.try_get("policy_id")?,
                    graph_id: row.try_get("graph_id")?,
                    policy_type: row.try_get("policy_type")?,
                    already_in_set: row.try_get::<Option<i64>, _>("backup_item_id")?.is_some(),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;

        // Every item is processed, however many fail (no circuit breaker, SPEC Rule 6). Captures
        // run in a task of their own, so Graph keeps working while outcomes are written; the
        // outcomes that are ready are written together, in one transaction per batch.
        let (sender, mut outcomes) = tokio::sync::mpsc::channel(RECORD_BATCH);
        let captures = {
            let (worker, run) = (self.clone(), run.clone());
            AbortOnDrop(tokio::spawn(async move {
                futures::stream::iter(items)
                    .map(|item| async {
                        let result = worker.work_on(&run, &creds, &item).await;
                        (item, result)
                    })
                    .buffer_unordered(worker.concurrency)
                    .for_each(|outcome| async {
                        // The receiver is gone only when this run is abandoned.
                        let _ = sender.send(outcome).await;
                    })
                    .await;
            }))
        };
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        while outcomes.recv_many(&mut batch, RECORD_BATCH).await > 0 {
            if !self.record(run, &batch).await? {
                tracing::warn!("lease lost; another worker continues this run");
                return Ok(());
            }
            batch.clear();
        }
        drop(captures);
        self.finish(run, None).await
    }

    /// Writes the run's items (one `pending` item per selected policy) from the selection the
    /// submit stored, in one transaction that holds the lease; a resumed run already has them.
    /// `false`, and nothing written, when this worker no longer holds the lease.
    async fn materialize_items(&self, run: &ClaimedRun) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.pool().begin().await?;
        if !self.hold_lease(&mut tx, run, Counts::default()).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        let existing: i64 = sqlx::query("SELECT COUNT(*) AS n FROM run_items WHERE run_id = $1")
            .bind(run.id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if existing == 0 && !run.policy_ids.is_empty() {
            // The submit checked every id against the tenant; the tenant filter stays anyway.
            let sql = format!(
                "INSERT INTO run_items (tenant_id, run_id, policy_id) \
                 SELECT p.tenant_id, $2, p.id FROM policies p WHERE p.tenant_id = $1 AND {}",
                self.db.backend().id_in("p.id", &run.policy_ids)
            );
            let written = sqlx::query(&sql)
                .bind(run.tenant_id)
                .bind(run.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if written != run.policy_ids.len() as u64 {
                // Only a policy row deleted since the submit (they are marked gone, not deleted).
                tracing::warn!(written, "some selected policies no longer exist");
                sqlx::query("UPDATE runs SET total_items = $1 WHERE id = $2")
                    .bind(written as i64)
                    .bind(run.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn work_on(
        &self,
        run: &ClaimedRun,
        creds: &TenantCredentials,
        item: &PendingItem,
    ) -> ItemResult {
        // Added later by another run: `record` still finds it (ON CONFLICT) and skips it then.
        if item.already_in_set {
            return ItemResult::Skipped(ReasonCode::AlreadyInBackupSet);
        }
        let Some(policy_type) = PolicyType::parse(&item.policy_type) else {
            return ItemResult::Failed(ReasonCode::UnknownError, "Unsupported policy type.".into());
        };
        let options = CaptureOptions {
            include_assignments: run.options.include_assignments,
            include_scope_tags: run.options.include_scope_tags,
        };
        match self
            .source
            .capture_policy(creds, policy_type, &item.graph_id, options)
            .await
        {
            Ok(snapshot) => ItemResult::Captured(snapshot),
            Err(error) => {
                let (reason, message) = (error.reason_code(), sanitize(error.message()));
                // The operator's trail; only the sanitized text, like the database and the UI.
                tracing::warn!(
                    policy_id = item.policy_id,
                    reason = reason.as_str(),
                    %message,
                    "capture failed"
                );
                ItemResult::Failed(reason, message)
            }
        }
    }

    /// Writes a batch of outcomes with the run's counters (and, for captured items, the snapshot
    /// and the backup item) in one transaction that also renews the lease. `false`, and nothing
    /// written, when this worker no longer holds the lease.
    async fn record(
        &self,
        run: &ClaimedRun,
        batch: &[(PendingItem, ItemResult)],
    ) -> Result<bool, sqlx::Error> {
        let now = Timestamp::now().millis();
        let mut tx = self.db.pool().begin().await?;
        let mut counts = Counts::default();
        for (item, result) in batch {
            let (outcome, reason, message) = match result {
                ItemResult::Skipped(reason) => ("skipped", Some(*reason), None),
                ItemResult::Failed(reason, message) => ("failed", Some(*reason), Some(message)),
                ItemResult::Captured(snapshot) => {
                    if self.add_to_set(&mut tx, run, item, snapshot, now).await? {
                        ("succeeded", None, None)
                    } else {
                        // Added meanwhile by another run: the item is where the user wanted it.
                        ("skipped", Some(ReasonCode::AlreadyInBackupSet), None)
                    }
                }
            };
            let updated = sqlx::query(
                "UPDATE run_items SET outcome = $1, reason_code = $2, message = $3, \
                 attempts = attempts + 1, finished_at = $4 WHERE id = $5 AND outcome = 'pending'",
            )
            .bind(outcome)
            .bind(reason.map(ReasonCode::as_str))
            .bind(message)
            .bind(now)
            .bind(item.item_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated != 1 {
                // Another worker recorded it: this one lost the run.
                tx.rollback().await?;
                return Ok(false);
            }
            match outcome {
                "succeeded" => counts.succeeded += 1,
                "failed" => counts.failed += 1,
                _ => counts.skipped += 1,
            }
        }
        if !self.hold_lease(&mut tx, run, counts).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        if counts.succeeded > 0 {
            sqlx::query("UPDATE backup_sets SET item_count = item_count + $1 WHERE id = $2")
                .bind(counts.succeeded)
                .bind(run.backup_set_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Adds `counts` to the run's counters and renews the lease, in `tx`; `false` when this
    /// worker no longer holds the lease (the caller then rolls back).
    async fn hold_lease(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        run: &ClaimedRun,
        counts: Counts,
    ) -> Result<bool, sqlx::Error> {
        let held = sqlx::query(
            "UPDATE runs SET succeeded = succeeded + $1, failed = failed + $2, skipped = skipped + $3, \
             processed_items = processed_items + $4, lease_expires_at = $5 \
             WHERE id = $6 AND lease_owner = $7 AND status = 'running'",
        )
        .bind(counts.succeeded)
        .bind(counts.failed)
        .bind(counts.skipped)
        .bind(counts.succeeded + counts.failed + counts.skipped)
        .bind(self.lease_until())
        .bind(run.id)
        .bind(&self.id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(held == 1)
    }

    /// Stores the snapshot (an unchanged policy reuses its snapshot: unique per policy and
    /// content hash) and adds the backup item. `false` when the policy is already in the set.
    async fn add_to_set(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        run: &ClaimedRun,
        item: &PendingItem,
        snapshot: &Snapshot,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query(
            "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (policy_id, content_hash) DO NOTHING",
        )
        .bind(run.tenant_id)
        .bind(item.policy_id)
        .bind(&snapshot.content_hash)
        .bind(&snapshot.canonical_json)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let snapshot_id: i64 = sqlx::query(
            "SELECT id FROM policy_snapshots WHERE policy_id = $1 AND content_hash = $2",
        )
        .bind(item.policy_id)
        .bind(&snapshot.content_hash)
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?;
        let added = sqlx::query(
            "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, run_id, captured_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (backup_set_id, policy_id) DO NOTHING",
        )
        .bind(run.tenant_id)
        .bind(run.backup_set_id)
        .bind(item.policy_id)
        .bind(snapshot_id)
        .bind(run.id)
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(added == 1)
    }

    /// Ends the run (SPEC Rule 7) and tells the initiator, in one transaction.
    async fn finish(
        &self,
        run: &ClaimedRun,
        failure: Option<RunFailure>,
    ) -> Result<(), sqlx::Error> {
        let now = Timestamp::now().millis();
        let mut tx = self.db.pool().begin().await?;
        // Write first and decide in the same statement (SPEC Rule 7): a transaction that read
        // before writing could not upgrade its lock under SQLite's WAL while another worker writes.
        // `lease_owner` stays: an ended run names the worker (`pid<N>-…`) that finished it.
        let finished = sqlx::query(
            "UPDATE runs SET status = CASE \
                 WHEN $1 THEN 'failed' \
                 WHEN failed = 0 THEN 'completed' \
                 WHEN succeeded = 0 THEN 'failed' \
                 ELSE 'completed_with_errors' END, \
             finished_at = $2, reason_code = $3, failure_message = $4, \
             lease_expires_at = NULL \
             WHERE id = $5 AND lease_owner = $6 AND status = 'running' \
             RETURNING status, total_items, succeeded, failed, skipped",
        )
        .bind(failure.is_some())
        .bind(now)
        .bind(failure.as_ref().map(|f| f.reason.as_str()))
        .bind(failure.as_ref().map(|f| sanitize(&f.message)))
        .bind(run.id)
        .bind(&self.id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = finished else {
            // The lease was lost: whoever holds it now finishes the run.
            tx.rollback().await?;
            return Ok(());
        };
        let status: String = row.try_get("status")?;
        let status = RunStatus::parse(&status).unwrap_or(RunStatus::Failed);
        let (total, succeeded, failed, skipped): (i64, i64, i64, i64) = (
            row.try_get("total_items")?,
            row.try_get("succeeded")?,
            row.try_get("failed")?,
            row.try_get("skipped")?,
        );
        if let Some(user_id) = run.initiated_by {
            let tenant: String = sqlx::query("SELECT external_id FROM tenants WHERE id = $1")
                .bind(run.tenant_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("external_id")?;
            let level = match status {
                RunStatus::Completed => "success",
                RunStatus::CompletedWithErrors => "warning",
                _ => "error",
            };
            let body = match &failure {
                Some(f) => sanitize(&format!("{}: {}", f.reason.label(), f.message)),
                None => format!(
                    "{succeeded} added, {skipped} already there, {failed} failed, of {total}."
                ),
            };
            sqlx::query(
                "INSERT INTO notifications (user_id, tenant_id, level, title, body, link, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(user_id)
            .bind(run.tenant_id)
            .bind(level)
            .bind(format!("Adding policies: {}", status.label()))
            .bind(body)
            .bind(format!("/t/{tenant}/runs/{}", run.id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        tracing::info!(
            status = status.as_str(),
            succeeded,
            failed,
            skipped,
            "run finished"
        );
        Ok(())
    }
}
