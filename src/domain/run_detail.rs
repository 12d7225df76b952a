//! What the run detail page and the run panel show: one run with its items.

use serde::{Deserialize, Serialize};

use super::reason_code::ReasonCode;
use super::{RunStatus, Timestamp};

/// Where one policy of a run ended (or that it is still waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    Pending,
    Succeeded,
    Failed,
    Skipped,
}

impl ItemOutcome {
    /// Every outcome, in the order the filter lists them.
    pub const ALL: [ItemOutcome; 4] = [Self::Succeeded, Self::Failed, Self::Skipped, Self::Pending];

    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    /// Parses the database spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }

    /// The word the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pending => "Waiting",
            Self::Succeeded => "Added",
            Self::Failed => "Failed",
            Self::Skipped => "Skipped",
        }
    }
}

/// One policy of a run and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunItemRow {
    pub policy_id: i64,
    pub policy_name: String,
    pub policy_type: String,
    pub outcome: ItemOutcome,
    pub reason_code: Option<ReasonCode>,
    /// Sanitized on the server before it was stored.
    pub message: Option<String>,
}

/// A run with its counters, times, target and items (optionally only those of one outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    pub id: i64,
    pub operation_type: String,
    pub status: RunStatus,
    pub initiated_by: String,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub total_items: i64,
    pub processed_items: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Run-level failure (the whole run could not proceed).
    pub reason_code: Option<ReasonCode>,
    pub failure_message: Option<String>,
    pub backup_set_id: i64,
    /// `None` when the backup set was deleted after the run started.
    pub backup_set_name: Option<String>,
    pub items: Vec<RunItemRow>,
}

impl RunDetail {
    /// How long the run took, as "1 min 5 s"; `None` until it has both started and finished.
    pub fn duration(&self) -> Option<String> {
        let (start, end) = (self.started_at?, self.finished_at?);
        Some(format_duration(end.millis().saturating_sub(start.millis())))
    }
}

/// Milliseconds as a short human duration ("850 ms", "12 s", "3 min 4 s", "2 h 5 min").
pub fn format_duration(millis: i64) -> String {
    let millis = millis.max(0);
    let secs = millis / 1000;
    match secs {
        0 => format!("{millis} ms"),
        1..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_spelling_round_trips() {
        for outcome in ItemOutcome::ALL {
            assert_eq!(ItemOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(ItemOutcome::parse("done"), None);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(format_duration(-5), "0 ms");
        assert_eq!(format_duration(850), "850 ms");
        assert_eq!(format_duration(12_400), "12 s");
        assert_eq!(format_duration(184_000), "3 min 4 s");
        assert_eq!(format_duration(7_500_000), "2 h 5 min");
    }
}
