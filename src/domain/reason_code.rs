//! Stable reason codes: why a run item (or a whole run) did not succeed.
//!
//! The snake_case spelling is stored in the database and shown in run details, so it never
//! changes; the label is what the UI prints next to it.

use serde::{Deserialize, Serialize};

/// Why an item was skipped or failed (SPEC Rule 8). Serialized as its database spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    AlreadyInBackupSet,
    PolicyNotFound,
    PermissionDenied,
    AuthenticationFailed,
    Throttled,
    GraphUnavailable,
    Timeout,
    InvalidResponse,
    Cancelled,
    /// Run-level: the backup set was deleted before or during the run.
    BackupSetNotFound,
    /// Run-level: the run's stored input cannot be read, so what to do is unknown.
    InvalidRunInput,
    /// Restore: the live policy changed between the preview and the write; nothing was written.
    ChangedSincePreview,
    /// Restore: Graph refused a write (400): the body names what it did not accept.
    WriteRejected,
    UnknownError,
}

impl ReasonCode {
    /// Every code, in the order of SPEC Rule 8.
    pub const ALL: [ReasonCode; 14] = [
        Self::AlreadyInBackupSet,
        Self::PolicyNotFound,
        Self::PermissionDenied,
        Self::AuthenticationFailed,
        Self::Throttled,
        Self::GraphUnavailable,
        Self::Timeout,
        Self::InvalidResponse,
        Self::Cancelled,
        Self::BackupSetNotFound,
        Self::InvalidRunInput,
        Self::ChangedSincePreview,
        Self::WriteRejected,
        Self::UnknownError,
    ];

    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AlreadyInBackupSet => "already_in_backup_set",
            Self::PolicyNotFound => "policy_not_found",
            Self::PermissionDenied => "permission_denied",
            Self::AuthenticationFailed => "authentication_failed",
            Self::Throttled => "throttled",
            Self::GraphUnavailable => "graph_unavailable",
            Self::Timeout => "timeout",
            Self::InvalidResponse => "invalid_response",
            Self::Cancelled => "cancelled",
            Self::BackupSetNotFound => "backup_set_not_found",
            Self::InvalidRunInput => "invalid_run_input",
            Self::ChangedSincePreview => "changed_since_preview",
            Self::WriteRejected => "write_rejected",
            Self::UnknownError => "unknown_error",
        }
    }

    /// Parses the database spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_str() == raw)
    }

    /// A short phrase for people.
    pub fn label(self) -> &'static str {
        match self {
            Self::AlreadyInBackupSet => "Already in the backup set",
            Self::PolicyNotFound => "Policy not found in Intune",
            Self::PermissionDenied => "Permission denied by Graph",
            Self::AuthenticationFailed => "Tenant credentials rejected",
            Self::Throttled => "Throttled by Graph",
            Self::GraphUnavailable => "Graph unavailable",
            Self::Timeout => "Graph did not answer in time",
            Self::InvalidResponse => "Unreadable answer from Graph",
            Self::Cancelled => "Cancelled",
            Self::BackupSetNotFound => "The backup set no longer exists",
            Self::InvalidRunInput => "The run's stored input cannot be read",
            Self::ChangedSincePreview => "Changed in Intune since the preview",
            Self::WriteRejected => "Graph refused the write",
            Self::UnknownError => "Unknown error",
        }
    }

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
