//! A policy's page, its captured versions, one version read as settings, and two versions
//! compared: what the server sends the policy pages.

use serde::{Deserialize, Serialize};

use super::policy_type::PolicyType;
use super::snapshot::{Comparison, ReadableSnapshot};
use super::spelled::spelled_enum;
use super::Timestamp;

/// Hex digits of a content hash the pages show.
pub const SHORT_HASH_CHARS: usize = 12;

/// The first [`SHORT_HASH_CHARS`] characters of a content hash.
pub fn short_hash(hash: &str) -> String {
    hash.chars().take(SHORT_HASH_CHARS).collect()
}

/// A policy's metadata, as the inventory last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct PolicyInfo {
    pub id: i64,
    pub display_name: String,
    pub policy_type: PolicyType,
    pub platform: String,
    pub graph_id: String,
    pub last_modified_at: Option<Timestamp>,
    /// Set when a sync no longer found the policy in Intune.
    pub gone_from_intune_at: Option<Timestamp>,
}

/// A backup set that holds a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLink {
    pub id: i64,
    pub name: String,
}

/// One captured version of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct VersionRow {
    pub id: i64,
    pub captured_at: Timestamp,
    pub content_hash: String,
    /// The backup sets whose item is this version, by name.
    #[cfg_attr(feature = "ssr", sqlx(skip))]
    pub backup_sets: Vec<SetLink>,
    /// The first run that captured this version, when a run did.
    #[cfg_attr(feature = "ssr", sqlx(skip))]
    pub run_id: Option<i64>,
    /// The version captured just before this one, for "Compare with previous".
    #[cfg_attr(feature = "ssr", sqlx(skip))]
    pub previous_id: Option<i64>,
    /// Whether Intune held this version at the policy's last capture (after a restore to an
    /// older version, that older one).
    #[cfg_attr(feature = "ssr", sqlx(skip))]
    pub current: bool,
}

/// One version read as settings, with its raw payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub policy: PolicyInfo,
    pub version_id: i64,
    pub captured_at: Timestamp,
    pub content_hash: String,
    pub readable: ReadableSnapshot,
    /// The stored payload, pretty-printed.
    pub raw_json: String,
}

/// Which version a side of a comparison is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRef {
    pub id: i64,
    pub captured_at: Timestamp,
    pub content_hash: String,
}

/// Two versions of a policy compared setting by setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionDiff {
    pub policy: PolicyInfo,
    pub from: VersionRef,
    pub to: VersionRef,
    pub comparison: Comparison,
}

/// One page of the tenant's inventory (gone policies included, marked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryPage {
    pub rows: Vec<PolicyInfo>,
    /// Policies matching the filter, on every page.
    pub total: i64,
    /// Zero-based page actually returned (clamped to the last page).
    pub page: i64,
    pub page_size: i64,
    /// Every platform of the tenant's inventory, for the platform filter.
    pub platforms: Vec<String>,
}

impl InventoryPage {
    /// Number of pages, at least one.
    pub fn page_count(&self) -> i64 {
        ((self.total + self.page_size - 1) / self.page_size.max(1)).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(active: Option<i64>, last: Option<i64>, last_settled: bool) -> RunActivity {
        let brief = |id| RunBrief {
            id,
            status: crate::domain::RunStatus::Cancelled,
            finished_at: None,
            summary: None,
            capture: None,
        };
        RunActivity {
            active: active.map(brief),
            last: last.map(brief),
            last_settled,
        }
    }

    #[test]
    fn a_run_that_settles_after_a_new_one_started_is_still_reported() {
        let mut watch = StarterWatch::default();
        assert_eq!(watch.step(None, &activity(Some(1), None, true)), None);
        // Run 1 cancelled in flight while run 2 started (elsewhere): nothing yet.
        assert_eq!(watch.step(None, &activity(Some(2), Some(1), false)), None);
        assert_eq!(watch.step(None, &activity(Some(2), Some(1), false)), None);
        // Run 1 has settled: reported once.
        assert_eq!(watch.step(None, &activity(Some(2), Some(1), true)), Some(1));
        assert_eq!(watch.step(None, &activity(Some(2), Some(1), true)), None);
        // Run 2 ends: reported too.
        assert_eq!(watch.step(None, &activity(None, Some(2), true)), Some(2));
    }

    #[test]
    fn a_run_started_here_or_never_seen_going() {
        let mut watch = StarterWatch::default();
        assert_eq!(watch.step(None, &activity(None, Some(7), true)), None);
        assert_eq!(watch.step(Some(8), &activity(None, Some(8), true)), Some(8));
        assert_eq!(watch.step(Some(8), &activity(None, Some(8), true)), None);
    }

    #[test]
    fn short_hash_keeps_twelve_characters() {
        assert_eq!(short_hash("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_hash("abc"), "abc");
    }
}

spelled_enum! {
    /// How a fresh capture compares with the version it was checked against: the backup's version
    /// (drift check) or the policy's newest version before (capture now). Stored in
    /// `run_items.drift`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub enum Drift {
        /// No setting differs.
        Unchanged => ("unchanged", "Unchanged"),
        /// At least one setting differs.
        Changed => ("changed", "Changed"),
        /// The policy no longer exists in Intune.
        Deleted => ("deleted", "Deleted in Intune"),
        /// There was no version to compare with: the first capture.
        New => ("new", "First version"),
    }
}

/// What a capture found for one item of a run: the version it stored or reused, the version it
/// was compared with and how they compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct CaptureResult {
    pub drift: Drift,
    /// Settings that differ (`None` when nothing was compared).
    pub changed_settings: Option<i64>,
    pub snapshot_id: Option<i64>,
    pub base_snapshot_id: Option<i64>,
}

impl CaptureResult {
    /// "Changed: 4 settings", "Unchanged", "Deleted in Intune".
    pub fn text(&self) -> String {
        match (self.drift, self.changed_settings) {
            (Drift::Changed, Some(1)) => "Changed: 1 setting".to_owned(),
            (Drift::Changed, Some(n)) => format!("Changed: {n} settings"),
            (drift, _) => drift.label().to_owned(),
        }
    }

    /// The two versions a diff link compares (backup or previous → fresh), when both exist and
    /// differ.
    pub fn diff_versions(&self) -> Option<(i64, i64)> {
        match (self.base_snapshot_id, self.snapshot_id) {
            (Some(from), Some(to)) if from != to => Some((from, to)),
            _ => None,
        }
    }
}

/// A drift check's items, counted by how they compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftCounts {
    pub total: i64,
    pub unchanged: i64,
    pub changed: i64,
    pub deleted: i64,
    /// Items that could not be captured (throttled, forbidden, …).
    pub failed: i64,
}

impl DriftCounts {
    /// "12 of 240 policies changed since this backup, 1 deleted in Intune, 2 could not be checked."
    pub fn summary(&self) -> String {
        let noun = if self.total == 1 {
            "policy"
        } else {
            "policies"
        };
        let mut text = if self.changed == 0 && self.deleted == 0 && self.failed == 0 {
            format!("None of {} {noun} changed since this backup", self.total)
        } else {
            format!(
                "{} of {} {noun} changed since this backup",
                self.changed, self.total
            )
        };
        if self.deleted > 0 {
            text.push_str(&format!(", {} deleted in Intune", self.deleted));
        }
        if self.failed > 0 {
            text.push_str(&format!(", {} could not be checked", self.failed));
        }
        text.push('.');
        text
    }
}

/// When a kind of run on a target last ran and how it ended, and the one queued or running now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunActivity {
    pub active: Option<RunBrief>,
    pub last: Option<RunBrief>,
    /// Whether the last run that ended is settled (the rule of [`super::RunSummary::settled`]),
    /// or there is none: a capture cancelled in flight still records its snapshot after the
    /// cancel, so its starter polls on and reports it only once it is.
    pub last_settled: bool,
}

impl RunActivity {
    /// Why a run of the kind cannot start again while the last one is cancelled and unsettled:
    /// the start's 409 (`server::runs::start`) and the starter's line under its disabled button.
    pub const NOT_SETTLED: &'static str = "The last run was cancelled and has not settled yet: \
        what was in flight when it was cancelled may still be recorded. Start again once it has \
        settled (at most a minute).";

    /// Whether a run may still change: one is queued or running, or the last one that ended is
    /// still being recorded by its claim. The starter polls while it is.
    pub fn moving(&self) -> bool {
        self.active.is_some() || !self.last_settled
    }
}

/// What a run starter remembers between polls to report each run it started or saw going
/// once, when it has ended and settled (`components::run_starter`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StarterWatch {
    /// The run it last read queued or running.
    active: Option<i64>,
    /// A run of its own that ended but had not settled when last read: reported once it has,
    /// even if a new run started meanwhile (one slot for both lost it).
    awaiting: Option<i64>,
    /// The last run reported.
    reported: Option<i64>,
}

impl StarterWatch {
    /// Takes in a poll's `current` activity, `started` being the run this page started; the run
    /// to report now, if any.
    pub fn step(&mut self, started: Option<i64>, current: &RunActivity) -> Option<i64> {
        let last = current.last.as_ref().map(|run| run.id);
        let ours =
            last.is_some() && (last == started || last == self.active || last == self.awaiting);
        self.active = current.active.as_ref().map(|run| run.id);
        // A run awaited is the last that ended until it is reported; a later one replaces it.
        if self.awaiting != last {
            self.awaiting = None;
        }
        if !ours || self.reported == last {
            return None;
        }
        if !current.last_settled {
            // Cancelled with a capture in flight: what it records is still to come.
            self.awaiting = last;
            return None;
        }
        self.awaiting = None;
        self.reported = last;
        last
    }
}

/// A run in a line: its id, status, when it ended and its summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunBrief {
    pub id: i64,
    pub status: super::RunStatus,
    pub finished_at: Option<Timestamp>,
    pub summary: Option<String>,
    /// For a capture of one policy: what it found.
    pub capture: Option<CaptureResult>,
}
