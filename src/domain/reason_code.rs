//! Stable reason codes: why a run item (or a whole run) did not succeed.
//!
//! The snake_case spelling is stored in the database and shown in run details, so it never
//! changes; the label is what the UI prints next to it.

use super::spelled::spelled_enum;
use serde::{Deserialize, Serialize};

spelled_enum! {
    /// Why an item was skipped or failed, or a run could not proceed: a stable code stored with
    /// a short sanitized message (never a raw Graph payload). Serialized as its database spelling.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ReasonCode {
        AlreadyInBackupSet => ("already_in_backup_set", "Already in the backup set"),
        PolicyNotFound => ("policy_not_found", "Policy not found in Intune"),
        PermissionDenied => ("permission_denied", "Permission denied by Graph"),
        AuthenticationFailed => ("authentication_failed", "Tenant credentials rejected"),
        Throttled => ("throttled", "Throttled by Graph"),
        GraphUnavailable => ("graph_unavailable", "Graph unavailable"),
        Timeout => ("timeout", "Graph did not answer in time"),
        InvalidResponse => ("invalid_response", "Unreadable answer from Graph"),
        Cancelled => ("cancelled", "Cancelled"),
        /// Run-level: the backup set was deleted before or during the run.
        BackupSetNotFound => ("backup_set_not_found", "The backup set no longer exists"),
        /// Run-level: the run's stored input cannot be read, so what to do is unknown.
        InvalidRunInput => ("invalid_run_input", "The run's stored input cannot be read"),
        /// Restore: the live policy changed between the preview and the write; nothing was written.
        ChangedSincePreview => ("changed_since_preview", "Changed in Intune since the preview"),
        /// Graph refused the request as invalid (400): its message names what it did not accept.
        GraphRejected => ("graph_rejected", "Graph refused the request"),
        /// Restore: the backup holds a secret setting (never captured) that Intune does not
        /// hold either, so it cannot be written.
        SecretNotRestorable => ("secret_not_restorable", "A secret setting cannot be restored"),
        /// Run-level: work on the run failed with an error of its own (not a dead worker) too
        /// many times in a row; its message carries the last error.
        WorkFailedRepeatedly => ("work_failed_repeatedly", "The run's work failed repeatedly"),
        /// Run-level: the member who started the run may no longer do what it does in its
        /// tenant (removed, given a lesser role, or their account deleted) by the time a worker
        /// takes it up: a queued restore writes nothing.
        NotAuthorized => ("not_authorized", "Started by a member who may no longer do this"),
        UnknownError => ("unknown_error", "Unknown error"),
    }
}

impl ReasonCode {
    /// Skips are not failures: the item is already where the user wanted it.
    pub fn is_skip(self) -> bool {
        matches!(self, Self::AlreadyInBackupSet)
    }
}

impl std::fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_database_spelling() {
        for code in ReasonCode::ALL {
            assert_eq!(ReasonCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn serde_uses_the_database_spelling() {
        for code in ReasonCode::ALL {
            let json = serde_json::to_string(&code).expect("serializes");
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: ReasonCode = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, code);
        }
    }

    #[test]
    fn unknown_spellings_are_rejected() {
        assert_eq!(ReasonCode::parse("PolicyNotFound"), None);
        assert_eq!(ReasonCode::parse(""), None);
        assert_eq!(ReasonCode::parse("policy_not_found "), None);
    }

    #[test]
    fn spellings_and_labels_are_distinct() {
        let mut spellings: Vec<_> = ReasonCode::ALL.iter().map(|c| c.as_str()).collect();
        let mut labels: Vec<_> = ReasonCode::ALL.iter().map(|c| c.label()).collect();
        spellings.sort_unstable();
        spellings.dedup();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(spellings.len(), ReasonCode::ALL.len());
        assert_eq!(labels.len(), ReasonCode::ALL.len());
    }

    #[test]
    fn only_already_in_backup_set_is_a_skip() {
        let skips: Vec<_> = ReasonCode::ALL
            .into_iter()
            .filter(|c| c.is_skip())
            .collect();
        assert_eq!(skips, vec![ReasonCode::AlreadyInBackupSet]);
    }
}
