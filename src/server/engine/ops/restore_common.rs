//! What the restore's two operations share: `restore.preview` and `restore.execute` plan the
//! same items (the input's entries, each a policy and the version restored), record each item on
//! its own, restore a version's parts only as far as it recorded them, and audit every policy
//! written with the same `restore.item_written` row.

use super::super::operation::{Run, Tx};
use crate::server::graph::CaptureOptions;

/// Implements [`super::PlannedRestore`] for an input entry with `policy_id` and `snapshot_id`
/// fields (the policy, and the version restored).
macro_rules! planned_restore {
    ($entry:ty) => {
        impl super::PlannedRestore for $entry {
            fn policy_id(&self) -> i64 {
                self.policy_id
            }

            fn snapshot_id(&self) -> i64 {
                self.snapshot_id
            }
        }
    };
}
pub(crate) use planned_restore;

/// The `plan` and `record` of a restore operation: its items are the input's entries (`items`,
/// see [`super::planned_ids`]), and each processed item is recorded on its own by `$record`
/// (`tx, run, pending, output, now`), in order.
macro_rules! restore_items {
    ($input:ty, $record:ident) => {
        fn plan(&self, run: &Run<$input>) -> Vec<i64> {
            super::planned_ids(&run.input.items)
        }

        async fn record(
            &self,
            tx: &mut Tx,
            run: &Run<$input>,
            batch: &[(Pending<Self::Item>, Self::Output)],
            now: i64,
        ) -> Result<Vec<Recorded>, sqlx::Error> {
            let mut recorded = Vec::with_capacity(batch.len());
            for (pending, output) in batch {
                recorded.push($record(tx, run, pending, output, now).await?);
            }
            Ok(recorded)
        }
    };
}
pub(crate) use restore_items;

/// What a restore of a version captured with `recorded` writes when `asked` was asked for: each
/// part asked for, as far as the version recorded it (assignments a capture left out cannot be
/// restored).
pub(crate) fn restore_includes(asked: CaptureOptions, recorded: CaptureOptions) -> CaptureOptions {
    CaptureOptions {
        include_assignments: asked.include_assignments && recorded.include_assignments,
        include_scope_tags: asked.include_scope_tags && recorded.include_scope_tags,
    }
}

/// Records the `restore.item_written` audit row of policy `policy_id`, written to Intune by a
/// restore (`details` says which run, which action, and whether the write is complete), in the
/// run's tenant and by its initiator.
pub(crate) async fn audit_item_written<I>(
    tx: &mut Tx,
    run: &Run<I>,
    policy_id: i64,
    details: serde_json::Value,
    now: i64,
) -> Result<(), sqlx::Error> {
    crate::server::audit::record_in(
        &mut **tx,
        crate::server::audit::AuditEvent {
            tenant_id: Some(run.tenant_id),
            actor_user_id: run.initiated_by,
            action: "restore.item_written",
            target: format!("policy:{policy_id}"),
            details,
        },
        now,
    )
    .await
}
