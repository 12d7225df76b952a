//! Runs: the observable record of one background operation.

use super::spelled::{spelled_enum, spelled_serde};
use serde::{Deserialize, Serialize};

use super::error::parse_filter;
use super::graph_wait::GraphWait;
use super::{AppError, Capability, Timestamp};

spelled_enum! {
    /// Where a run is in its life; stored as its lower-case spelling.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub enum RunStatus {
        Pending => ("pending", "Queued"),
        Running => ("running", "Running"),
        Completed => ("completed", "Succeeded"),
        CompletedWithErrors => ("completed_with_errors", "Partially succeeded"),
        Failed => ("failed", "Failed"),
        Cancelled => ("cancelled", "Cancelled"),
    }
}

impl RunStatus {
    /// Pending and running runs are active: at most one per idempotency key.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// What a cancel answers: the run, cancelled, and when. A repeated cancel answers the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelledRun {
    pub run_id: i64,
    pub status: RunStatus,
    pub cancelled_at: Timestamp,
}

spelled_enum! {
    /// What kind of background work a run does; stored in `runs.operation_type`. Every kind is a run
    /// on the one engine, which dispatches it to the operation's handler.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum OperationType {
        /// Capture policies from Graph and add them to a backup set.
        AddPolicies => ("backup_set.add_policies", "Add policies to backup set"),
        /// List a tenant's policies from Graph into the inventory.
        InventorySync => ("inventory.sync", "Sync inventory"),
        /// Capture one policy's current version.
        CaptureSnapshot => ("policy.capture_snapshot", "Capture policy"),
        /// Compare a backup set with the tenant's current policies.
        DriftCheck => ("backup_set.drift_check", "Check backup set for drift"),
        /// Check that the tenant's Graph credentials work.
        CheckConnection => ("tenant.check_connection", "Check tenant connection"),
        /// Show what restoring a backup would change.
        RestorePreview => ("restore.preview", "Preview restore"),
        /// Write a backup's policies back to the tenant.
        RestoreExecute => ("restore.execute", "Restore policies"),
    }
}

impl OperationType {
    /// What a succeeded item of such a run did, in a word for counters ("12 added").
    pub fn done_word(self) -> &'static str {
        match self {
            Self::AddPolicies => "added",
            Self::CaptureSnapshot => "captured",
            Self::DriftCheck => "checked",
            Self::RestorePreview => "previewed",
            Self::RestoreExecute => "restored",
            Self::InventorySync | Self::CheckConnection => "done",
        }
    }

    /// What a role needs to cancel such a run: whatever starting one needs, so the roles that
    /// may start a run may cancel it (a restore only those who may restore, a connection check
    /// only those who may check it), and every other run whoever may cancel runs.
    pub fn cancel_capability(self) -> Capability {
        match self {
            Self::RestorePreview | Self::RestoreExecute => Capability::Restore,
            Self::CheckConnection => Capability::CheckConnection,
            Self::AddPolicies | Self::InventorySync | Self::CaptureSnapshot | Self::DriftCheck => {
                Capability::CancelRuns
            }
        }
    }

    /// Whether its items record what their capture found compared with an earlier version
    /// (`run_items.drift`, `changed_settings`): the runs whose items can be listed and
    /// exported by that result.
    pub fn compares_captures(self) -> bool {
        matches!(
            self,
            Self::CaptureSnapshot | Self::DriftCheck | Self::RestorePreview | Self::RestoreExecute
        )
    }

    /// The lane its runs queue in: long runs over many policies are bulk, short ones that a
    /// user waits for are interactive, so they never wait behind a bulk run.
    pub fn lane(self) -> Lane {
        match self {
            Self::AddPolicies | Self::InventorySync | Self::DriftCheck | Self::RestoreExecute => {
                Lane::Bulk
            }
            Self::CaptureSnapshot | Self::CheckConnection | Self::RestorePreview => {
                Lane::Interactive
            }
        }
    }
}

spelled_enum! {
    /// A queue of the engine; stored in `runs.lane`. At most one bulk run per tenant is active
    /// at a time (Graph's budget is per tenant and app, so two would only compete for it);
    /// interactive runs have slots of their own beside the bulk runs.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub enum Lane {
        Bulk => ("bulk", "Bulk"),
        Interactive => ("interactive", "Interactive"),
    }
}

spelled_serde!(OperationType);

/// A run's operation as the screens read it back: one this build knows, or a spelling written
/// by a newer version sharing the database, which is shown as stored rather than refused. On
/// the wire it is the stored spelling either way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredOperation {
    Known(OperationType),
    Other(String),
}

impl StoredOperation {
    /// The operation, if this build knows it.
    pub fn known(&self) -> Option<OperationType> {
        match self {
            Self::Known(operation) => Some(*operation),
            Self::Other(_) => None,
        }
    }

    /// What a role needs to cancel such a run ([`OperationType::cancel_capability`]); an
    /// operation this build does not know needs whatever cancels runs.
    pub fn cancel_capability(&self) -> Capability {
        self.known()
            .map_or(Capability::CancelRuns, OperationType::cancel_capability)
    }

    /// What a succeeded item did ("added"); "done" for an operation this build does not know.
    pub fn done_word(&self) -> &'static str {
        self.known().map_or("done", OperationType::done_word)
    }

    /// The words the UI shows: the operation's label, or the stored spelling.
    pub fn label(&self) -> &str {
        match self {
            Self::Known(operation) => operation.label(),
            Self::Other(raw) => raw,
        }
    }
}

impl From<String> for StoredOperation {
    fn from(raw: String) -> Self {
        OperationType::parse(&raw).map_or(Self::Other(raw), Self::Known)
    }
}

// By hand rather than `#[serde(untagged)]`: the same wire form, without the buffering
// deserializer untagged enums bring into the browser bundle.
impl Serialize for StoredOperation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Known(operation) => serializer.serialize_str(operation.as_str()),
            Self::Other(raw) => serializer.serialize_str(raw),
        }
    }
}

impl<'de> Deserialize<'de> for StoredOperation {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(String::deserialize(deserializer)?.into())
    }
}

#[cfg(feature = "ssr")]
impl sqlx::Type<sqlx::Any> for StoredOperation {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

#[cfg(feature = "ssr")]
impl<'r> sqlx::Decode<'r, sqlx::Any> for StoredOperation {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?.into())
    }
}

/// The Runs page's status filter: one status, or every active (queued or running) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StatusFilter {
    Active,
    Only(RunStatus),
}

impl StatusFilter {
    /// Every choice, in the order the filter lists them: the group first, then each status.
    pub const ALL: [StatusFilter; 7] = [
        Self::Active,
        Self::Only(RunStatus::Pending),
        Self::Only(RunStatus::Running),
        Self::Only(RunStatus::Completed),
        Self::Only(RunStatus::CompletedWithErrors),
        Self::Only(RunStatus::Failed),
        Self::Only(RunStatus::Cancelled),
    ];

    /// The URL spelling: `active` or a status's database spelling.
    pub fn as_param(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Only(status) => status.as_str(),
        }
    }

    /// Parses the URL spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_param() == raw)
    }

    /// The words the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Active => "Active (queued or running)",
            Self::Only(status) => status.label(),
        }
    }

    /// The statuses a run may have to match.
    pub fn statuses(self) -> Vec<RunStatus> {
        match self {
            Self::Active => RunStatus::ALL
                .into_iter()
                .filter(|s| s.is_active())
                .collect(),
            Self::Only(status) => vec![status],
        }
    }
}

/// The Runs page's filters, parsed from the request; `None` means "any".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunFilter {
    pub status: Option<StatusFilter>,
    pub operation: Option<OperationType>,
}

impl RunFilter {
    /// Parses the request spelling (`status`, `type`): empty means any, anything else unknown
    /// is refused (422) rather than silently ignored, so a mistyped link never shows all runs.
    pub fn parse(status: &str, operation_type: &str) -> Result<Self, AppError> {
        Ok(Self {
            status: parse_filter(
                "status",
                status.trim(),
                StatusFilter::parse,
                "Unknown run status filter.",
            )?,
            operation: parse_filter(
                "type",
                operation_type.trim(),
                OperationType::parse,
                "Unknown operation type filter.",
            )?,
        })
    }

    /// The query string of a link to this view: `?status=failed&type=…`, or empty.
    pub fn to_query(&self) -> String {
        let parts: Vec<String> = [
            self.status.map(|s| format!("status={}", s.as_param())),
            self.operation.map(|t| format!("type={}", t.as_str())),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// One row of the runs list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct RunSummary {
    pub id: i64,
    pub operation_type: StoredOperation,
    pub status: RunStatus,
    /// Who started it; `None` for a run nobody started (the demo's) or whose user is gone.
    pub initiated_by: Option<String>,
    pub total_items: i64,
    pub processed_items: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    pub created_at: Timestamp,
    /// What the run's captures are waiting for on Graph right now (only while running).
    #[cfg_attr(feature = "ssr", sqlx(skip))]
    pub graph_wait: Option<GraphWait>,
    /// Whether what is shown of the run is final: it has ended and no claim works on it any
    /// more. A cancelled run is not settled while the captures (or a restore's writes) that were
    /// in flight are still being recorded over the cancel's skips and its claim concludes: its
    /// pages go on polling until it is.
    #[cfg_attr(feature = "ssr", sqlx(skip))]
    pub settled: bool,
}

/// One page of the runs list, newest first; `next_before` pages back (the `before` of the
/// next page), `None` when no older run matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunsPage {
    pub runs: Vec<RunSummary>,
    pub next_before: Option<i64>,
}

impl RunSummary {
    /// The failed items a "Retry N failed" would take again: those of a capture run that ended
    /// with failures (a cancelled run resumes from its page instead).
    pub fn retry_items(&self) -> i64 {
        let ended_with_failures = matches!(
            self.status,
            RunStatus::CompletedWithErrors | RunStatus::Failed
        );
        let retriable = self.operation_type.known() == Some(OperationType::AddPolicies);
        if ended_with_failures && retriable {
            self.failed
        } else {
            0
        }
    }

    /// The words the UI shows for this run's operation.
    pub fn operation_label(&self) -> &str {
        self.operation_type.label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_spelling_round_trips() {
        for status in RunStatus::ALL {
            assert_eq!(RunStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(RunStatus::parse("queued"), None);
    }

    #[test]
    fn only_pending_and_running_are_active() {
        let active: Vec<_> = RunStatus::ALL
            .into_iter()
            .filter(|s| s.is_active())
            .collect();
        assert_eq!(active, [RunStatus::Pending, RunStatus::Running]);
    }

    #[test]
    fn status_filter_spelling_round_trips() {
        for filter in StatusFilter::ALL {
            assert_eq!(StatusFilter::parse(filter.as_param()), Some(filter));
        }
        assert_eq!(
            StatusFilter::Active.statuses(),
            [RunStatus::Pending, RunStatus::Running]
        );
        assert_eq!(
            StatusFilter::Only(RunStatus::Failed).statuses(),
            [RunStatus::Failed]
        );
    }

    #[test]
    fn operation_type_round_trips_and_unknown_types_show_as_stored() {
        for operation in OperationType::ALL {
            assert_eq!(OperationType::parse(operation.as_str()), Some(operation));
            let stored = StoredOperation::from(operation.as_str().to_owned());
            assert_eq!(stored, StoredOperation::Known(operation));
            assert_eq!(stored.label(), operation.label());
            let wire = serde_json::to_value(&stored).unwrap();
            assert_eq!(wire, serde_json::json!(operation.as_str()));
            assert_eq!(
                serde_json::from_value::<StoredOperation>(wire).unwrap(),
                stored
            );
        }
        let newer = StoredOperation::from("tenant.sync".to_owned());
        assert_eq!(newer.known(), None);
        assert_eq!(newer.label(), "tenant.sync");
        let wire = serde_json::to_value(&newer).unwrap();
        assert_eq!(
            serde_json::from_value::<StoredOperation>(wire).unwrap(),
            newer
        );
    }

    #[test]
    fn lanes_round_trip_and_short_operations_are_interactive() {
        for lane in Lane::ALL {
            assert_eq!(Lane::parse(lane.as_str()), Some(lane));
        }
        assert_eq!(OperationType::AddPolicies.lane(), Lane::Bulk);
        assert_eq!(OperationType::CheckConnection.lane(), Lane::Interactive);
        assert_eq!(OperationType::CaptureSnapshot.lane(), Lane::Interactive);
        assert_eq!(OperationType::RestorePreview.lane(), Lane::Interactive);
        assert_eq!(OperationType::RestoreExecute.lane(), Lane::Bulk);
    }

    #[test]
    fn who_may_start_a_run_may_cancel_it() {
        assert_eq!(
            OperationType::RestoreExecute.cancel_capability(),
            Capability::Restore
        );
        assert_eq!(
            OperationType::RestorePreview.cancel_capability(),
            Capability::Restore
        );
        assert_eq!(
            OperationType::CheckConnection.cancel_capability(),
            Capability::CheckConnection
        );
        assert_eq!(
            OperationType::DriftCheck.cancel_capability(),
            Capability::CancelRuns
        );
    }

    #[test]
    fn only_known_operations_are_filters() {
        assert!(RunFilter::parse("", "backup_set.add_policies").is_ok());
        assert!(RunFilter::parse("", "restore.execute").is_ok());
        let error = RunFilter::parse("", "restore.rollback").unwrap_err();
        assert!(error.field_message("type").is_some());
    }

    #[test]
    fn filters_parse_at_the_edge_and_link_back() {
        assert_eq!(RunFilter::parse("", "").unwrap(), RunFilter::default());
        assert_eq!(RunFilter::default().to_query(), "");
        let filter = RunFilter::parse("failed", "backup_set.add_policies").unwrap();
        assert_eq!(filter.status, Some(StatusFilter::Only(RunStatus::Failed)));
        assert_eq!(filter.operation, Some(OperationType::AddPolicies));
        assert_eq!(
            filter.to_query(),
            "?status=failed&type=backup_set.add_policies"
        );
        assert_eq!(
            RunFilter::parse("active", "").unwrap().to_query(),
            "?status=active"
        );
        let error = RunFilter::parse("Failed", "").unwrap_err();
        assert_eq!(error.status(), 422);
        assert!(error.field_message("status").is_some());
        let error = RunFilter::parse("", "drop table runs").unwrap_err();
        assert!(error.field_message("type").is_some());
    }
}
