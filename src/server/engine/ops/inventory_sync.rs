//! `inventory.sync`: lists every supported policy type of the tenant through Graph and brings
//! the inventory in line (`server::inventory`). The run has no items; its work is the run's as
//! a whole ([`Operation::conclude`]). Its summary ("3 added, 1 updated, 200 unchanged, 1 gone")
//! is written in the sync's own transaction, fenced by the run's attempt, so a stalled earlier
//! claim can never commit a sync after another took the run over.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::operation::{Notice, Operation, Pending, Recorded, Run, Tx};
use super::super::worker::RunFailure;
use crate::domain::reason_code::ReasonCode;
use crate::domain::run::OperationType;
use crate::server::db::Db;
use crate::server::graph::{PolicySource, TenantCredentials};
use crate::server::inventory::{sync_tenant_fenced, Fence, SyncError};
use crate::server::sanitize::sanitize;

/// What a sync run stores in `runs.input`: nothing; the tenant is the run's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventorySyncInput {}

/// The handler; it lists through `source`.
pub struct InventorySync {
    source: Arc<dyn PolicySource>,
}

impl InventorySync {
    pub fn new(source: Arc<dyn PolicySource>) -> Self {
        Self { source }
    }
}

impl Operation for InventorySync {
    const TYPE: OperationType = OperationType::InventorySync;
    const NOTICE: Notice = Notice::new("Inventory sync", "The inventory is in line with Intune.");
    super::without_items!(InventorySyncInput);

    async fn conclude(
        &self,
        db: &Db,
        creds: Result<&TenantCredentials, &RunFailure>,
        run: &Run<InventorySyncInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        let creds = match creds {
            Ok(creds) => creds,
            Err(failure) => return Ok(Some(failure.clone())),
        };
        let fence = Fence {
            run_id: run.id,
            attempt: run.attempt,
        };
        match sync_tenant_fenced(db, run.tenant_id, self.source.as_ref(), creds, Some(fence)).await
        {
            Ok(report) => {
                tracing::info!(%report, "inventory synced by a run");
                Ok(None)
            }
            Err(SyncError::Graph(error)) => Ok(Some(RunFailure {
                reason: error.reason_code(),
                message: sanitize(error.message()),
            })),
            Err(SyncError::Database(error)) => Err(error),
            Err(SyncError::Fenced) => {
                tracing::warn!("the sync's run was taken over or ended; nothing written");
                Ok(None)
            }
            Err(error @ (SyncError::Credentials(_) | SyncError::TenantMismatch)) => {
                Ok(Some(RunFailure {
                    reason: ReasonCode::AuthenticationFailed,
                    message: sanitize(&error.to_string()),
                }))
            }
        }
    }
}
