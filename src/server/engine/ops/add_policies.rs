//! `backup_set.add_policies`: capture each selected policy from Graph and add it to the backup
//! set. The snapshot is stored once per policy and content hash; a policy already in the set is
//! skipped (`already_in_backup_set`), also when another run added it meanwhile.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::operation::{Notice, Operation, Pending, Recorded, Run, Totals, Tx};
use super::super::worker::RunFailure;
use crate::domain::reason_code::ReasonCode;
use crate::domain::run::OperationType;
use crate::domain::{AddPoliciesOptions, RunStatus, Timestamp};
use crate::server::db::{Db, Sql};
use crate::server::graph::{CaptureOptions, PolicySource, PolicyType, Snapshot, TenantCredentials};
use crate::server::sanitize::sanitize;
use crate::server::snapshots::{store_captures, Capture};

/// What an "add policies" run stores in `runs.input`: the backup set, the sorted policy ids and
/// the options. The submit writes it; the engine reads the run's items and options from it, and
/// the run detail page lists a queued run's selection from it. One type, so the three agree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPoliciesInput {
    pub backup_set_id: i64,
    /// Sorted and unique (a parsed `PolicySelection`).
    pub policy_ids: Vec<i64>,
    #[serde(default)]
    pub options: AddPoliciesOptions,
}

impl AddPoliciesInput {
    /// The stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a stored input; the set and the policies are required, the options default off.
    pub fn from_json(raw: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(raw)
    }
}

/// The handler; it captures through `source`.
pub struct AddPolicies {
    source: Arc<dyn PolicySource>,
}

impl AddPolicies {
    pub fn new(source: Arc<dyn PolicySource>) -> Self {
        Self { source }
    }
}

/// A pending item: the policy, and whether it was in the set when the run (re)started.
pub struct PolicyItem {
    policy_id: i64,
    graph_id: String,
    policy_type: String,
    already_in_set: bool,
}

/// What capturing one policy gave.
pub enum Captured {
    /// The policy as Graph returned it, and when the request that returned it was sent (Unix
    /// ms; [`Snapshot::read_at`]): a mark of being gone from Intune made after it stays, and a
    /// version read after it stays current ([`Capture::read_at`]).
    Snapshot {
        snapshot: Snapshot,
        read_at: i64,
    },
    Skipped(ReasonCode),
    Failed(ReasonCode, String),
}

impl Operation for AddPolicies {
    const TYPE: OperationType = OperationType::AddPolicies;
    const NOTICE: Notice = Notice::new("Adding policies", "The run did not finish.");
    // Its `conclude` is the default.
    const ENDS_WITH_LAST_BATCH: bool = true;
    // It only reads from Graph; a lost capture is captured again.
    const LAZY_COMMITS: bool = true;
    type Input = AddPoliciesInput;
    type Item = PolicyItem;
    type Output = Captured;

    async fn check(
        &self,
        db: &Db,
        run: &Run<AddPoliciesInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        super::backup_set_gone(
            db,
            run.tenant_id,
            run.target_id,
            "The backup set was deleted before the run could add policies to it.",
        )
        .await
    }

    fn plan(&self, run: &Run<AddPoliciesInput>) -> Vec<i64> {
        run.input.policy_ids.clone()
    }

    async fn pending(
        &self,
        db: &Db,
        run: &Run<AddPoliciesInput>,
    ) -> Result<Vec<Pending<PolicyItem>>, sqlx::Error> {
        // Whether each policy is already in the set comes with it: one query per run, not per
        // item.
        let rows: Vec<(i64, i64, String, String, Option<i64>)> = sqlx::query_as(
            "SELECT ri.id AS item_id, ri.policy_id, p.graph_id, p.policy_type, bi.id AS backup_item_id \
             FROM run_items ri \
             JOIN policies p ON p.tenant_id = ri.tenant_id AND p.id = ri.policy_id \
             LEFT JOIN backup_items bi ON bi.backup_set_id = $2 AND bi.policy_id = ri.policy_id \
             WHERE ri.run_id = $1 AND ri.tenant_id = $3 AND ri.outcome = 'pending' ORDER BY ri.id",
        )
        .bind(run.id)
        .bind(run.target_id)
        .bind(run.tenant_id)
        .fetch_all(db.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(item_id, policy_id, graph_id, policy_type, backup_item_id)| Pending {
                    item_id,
                    item: PolicyItem {
                        policy_id,
                        graph_id,
                        policy_type,
                        already_in_set: backup_item_id.is_some(),
                    },
                },
            )
            .collect())
    }

    async fn process(
        &self,
        creds: &TenantCredentials,
        run: &Run<AddPoliciesInput>,
        item: &PolicyItem,
    ) -> Captured {
        // Added later by another run: `record` still finds it (ON CONFLICT) and skips it then.
        if item.already_in_set {
            return Captured::Skipped(ReasonCode::AlreadyInBackupSet);
        }
        let Some(policy_type) = PolicyType::parse(&item.policy_type) else {
            return Captured::Failed(ReasonCode::UnknownError, "Unsupported policy type.".into());
        };
        let options = CaptureOptions {
            include_assignments: run.input.options.include_assignments,
            include_scope_tags: run.input.options.include_scope_tags,
        };
        // Only for a source that does not say when it sent the read: a lower bound all the same.
        let asked_at = Timestamp::now().millis();
        match self
            .source
            .capture_policy(creds, policy_type, &item.graph_id, options)
            .await
        {
            Ok(snapshot) => Captured::Snapshot {
                read_at: snapshot.read_at.unwrap_or(asked_at),
                snapshot,
            },
            Err(error) => {
                let (reason, message) = (error.reason_code(), sanitize(error.message()));
                // The operator's trail; only the sanitized text, like the database and the UI.
                tracing::warn!(
                    policy_id = item.policy_id,
                    reason = reason.as_str(),
                    %message,
                    "capture failed"
                );
                Captured::Failed(reason, message)
            }
        }
    }

    async fn record(
        &self,
        tx: &mut Tx,
        run: &Run<AddPoliciesInput>,
        batch: &[(Pending<PolicyItem>, Captured)],
        now: i64,
    ) -> Result<Vec<Recorded>, sqlx::Error> {
        let captures: Vec<Capture> = batch
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
        let stored = store_captures(tx, run.tenant_id, &captures, now).await?;
        let items: Vec<(i64, i64)> = captures
            .iter()
            .zip(&stored)
            .map(|(capture, version)| (capture.policy_id, version.id))
            .collect();
        let mut new_in_set = add_to_set(tx, run, &items, now).await?;
        let mut recorded = Vec::with_capacity(batch.len());
        let mut added: i64 = 0;
        for (pending, captured) in batch {
            recorded.push(match captured {
                Captured::Skipped(reason) => Recorded::skipped(*reason),
                Captured::Failed(reason, message) => Recorded::failed(*reason, message.clone()),
                Captured::Snapshot { .. } => {
                    if new_in_set.remove(&pending.item.policy_id) {
                        added += 1;
                        Recorded::succeeded()
                    } else {
                        // Added meanwhile by another run: the item is where the user wanted it.
                        Recorded::skipped(ReasonCode::AlreadyInBackupSet)
                    }
                }
            });
        }
        if added > 0 {
            sqlx::query("UPDATE backup_sets SET item_count = item_count + $1 WHERE id = $2")
                .bind(added)
                .bind(run.target_id)
                .execute(&mut **tx)
                .await?;
        }
        Ok(recorded)
    }

    fn notification(
        &self,
        status: RunStatus,
        totals: Totals,
        failure: Option<&RunFailure>,
        _summary: Option<&str>,
    ) -> (String, String) {
        let Totals {
            total,
            succeeded,
            failed,
            skipped,
        } = totals;
        let body = match failure {
            Some(f) => sanitize(&format!("{}: {}", f.reason.label(), f.message)),
            None => {
                format!("{succeeded} added, {skipped} already there, {failed} failed, of {total}.")
            }
        };
        (format!("{}: {}", Self::NOTICE.title, status.label()), body)
    }
}

/// Adds the backup items (policy, version) to the run's set; the policies it added, without
/// those already in the set.
async fn add_to_set(
    tx: &mut Tx,
    run: &Run<AddPoliciesInput>,
    items: &[(i64, i64)],
    now: i64,
) -> Result<HashSet<i64>, sqlx::Error> {
    let mut added = HashSet::with_capacity(items.len());
    for chunk in items.chunks(ITEMS_PER_INSERT) {
        let mut sql = Sql::new(
            "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, run_id, \
             captured_at) VALUES ",
        );
        sql.rows(chunk, |sql, (policy_id, snapshot_id)| {
            sql.int(run.tenant_id)
                .push(", ")
                .int(run.target_id)
                .push(", ")
                .int(*policy_id)
                .push(", ")
                .int(*snapshot_id)
                .push(", ")
                .int(run.id)
                .push(", ")
                .int(now);
        })
        .push(" ON CONFLICT (backup_set_id, policy_id) DO NOTHING RETURNING policy_id");
        let policies: Vec<i64> = sql.query_scalar().fetch_all(&mut **tx).await?;
        added.extend(policies);
    }
    Ok(added)
}

/// Backup items per statement (6 values each).
const ITEMS_PER_INSERT: usize = 100;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_it_cannot_read() {
        let input = AddPoliciesInput {
            backup_set_id: 7,
            policy_ids: vec![1, 2, 3],
            options: AddPoliciesOptions {
                include_assignments: true,
                include_scope_tags: false,
            },
        };
        assert_eq!(
            AddPoliciesInput::from_json(&input.to_json()).unwrap(),
            input
        );
        let without_options =
            AddPoliciesInput::from_json(r#"{"backup_set_id":7,"policy_ids":[4]}"#).unwrap();
        assert_eq!(without_options.options, AddPoliciesOptions::default());
        for unreadable in [
            "not json",
            "",
            "{}",
            r#"{"options":{"include_scope_tags":true}}"#,
            r#"{"backup_set_id":7,"policy_ids":"1,2"}"#,
            r#"{"backup_set_id":"7","policy_ids":[1]}"#,
        ] {
            assert!(
                AddPoliciesInput::from_json(unreadable).is_err(),
                "{unreadable:?}"
            );
        }
    }
}
