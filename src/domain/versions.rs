//! A policy's page, its captured versions, one version read as settings, and two versions
//! compared: what the server sends the policy pages.

use serde::{Deserialize, Serialize};

use super::snapshot::{Comparison, ReadableSnapshot};
use super::Timestamp;

/// Hex digits of a content hash the pages show.
pub const SHORT_HASH_CHARS: usize = 12;

/// The first [`SHORT_HASH_CHARS`] characters of a content hash.
pub fn short_hash(hash: &str) -> String {
    hash.chars().take(SHORT_HASH_CHARS).collect()
}

/// A policy's metadata, as the inventory last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyInfo {
    pub id: i64,
    pub display_name: String,
    pub policy_type: String,
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
pub struct VersionRow {
    pub id: i64,
    pub captured_at: Timestamp,
    pub content_hash: String,
    /// The backup sets whose item is this version, by name.
    pub backup_sets: Vec<SetLink>,
    /// The first run that captured this version, when a run did.
    pub run_id: Option<i64>,
    /// The version captured just before this one, for "Compare with previous".
    pub previous_id: Option<i64>,
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

    #[test]
    fn short_hash_keeps_twelve_characters() {
        assert_eq!(short_hash("0123456789abcdef"), "0123456789ab");
        assert_eq!(short_hash("abc"), "abc");
    }
}
