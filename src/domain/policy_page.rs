//! What the policy picker asks for (filter, sort, page) and what it gets back.

use serde::{Deserialize, Serialize};

use super::policy_type::PolicyType;
use super::Timestamp;

/// Rows per picker page.
pub const POLICY_PAGE_SIZE: i64 = 50;

/// Longest search text the server looks at; longer input is cut, never an error.
pub const SEARCH_MAX_CHARS: usize = 200;

/// A column the picker sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SortColumn {
    Name,
    Type,
    Platform,
    Modified,
}

/// Sort column and direction; spelled `name`, `-name`, `type`, `-modified`, … in requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySort {
    pub column: SortColumn,
    pub descending: bool,
}

impl Default for PolicySort {
    fn default() -> Self {
        Self {
            column: SortColumn::Name,
            descending: false,
        }
    }
}

impl PolicySort {
    /// Parses the request spelling; anything unknown sorts by name (the server's `parse_sort`
    /// refuses what this would not spell back the same).
    pub fn parse(raw: &str) -> Self {
        let (descending, name) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw),
        };
        let column = match name {
            "type" => SortColumn::Type,
            "platform" => SortColumn::Platform,
            "modified" => SortColumn::Modified,
            "name" => SortColumn::Name,
            _ => return Self::default(),
        };
        Self { column, descending }
    }

    /// The request spelling.
    pub fn as_param(self) -> String {
        let name = match self.column {
            SortColumn::Name => "name",
            SortColumn::Type => "type",
            SortColumn::Platform => "platform",
            SortColumn::Modified => "modified",
        };
        if self.descending {
            format!("-{name}")
        } else {
            name.to_owned()
        }
    }

    /// Clicking a column header: the same column flips direction, another starts ascending.
    pub fn toggled(self, column: SortColumn) -> Self {
        Self {
            column,
            descending: self.column == column && !self.descending,
        }
    }
}

/// One inventory policy as the picker lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct PolicyRow {
    pub id: i64,
    pub display_name: String,
    pub policy_type: PolicyType,
    pub platform: String,
    pub last_modified_at: Option<Timestamp>,
    /// Already in the backup set: shown, but not selectable.
    #[cfg_attr(feature = "ssr", sqlx(skip))]
    pub in_set: bool,
}

/// One page of the filtered, sorted inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPage {
    pub rows: Vec<PolicyRow>,
    /// Policies matching the filter, on every page.
    pub total: i64,
    /// Zero-based page number actually returned (clamped to the last page).
    pub page: i64,
    pub page_size: i64,
    /// Every platform of the tenant's inventory, for the platform filter.
    pub platforms: Vec<String>,
}

impl PolicyPage {
    /// Number of pages (at least one, so "page 1 of 1" reads right for an empty result).
    pub fn page_count(&self) -> i64 {
        ((self.total + self.page_size - 1) / self.page_size.max(1)).max(1)
    }
}

/// "Select all N matching": the ids of every selectable policy that matches the filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchingPolicies {
    /// At most `MAX_SELECTION` ids, those not yet in the backup set.
    pub ids: Vec<i64>,
    /// True when more policies matched than one run may add.
    pub truncated: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_spelling_round_trips_and_defaults_to_name() {
        for raw in [
            "name",
            "-name",
            "type",
            "-platform",
            "modified",
            "-modified",
        ] {
            assert_eq!(PolicySort::parse(raw).as_param(), raw);
        }
        assert_eq!(PolicySort::parse("drop table"), PolicySort::default());
        assert_eq!(PolicySort::parse(""), PolicySort::default());
    }

    #[test]
    fn toggling_flips_the_same_column_only() {
        let by_name = PolicySort::default();
        assert!(by_name.toggled(SortColumn::Name).descending);
        assert!(!by_name.toggled(SortColumn::Type).descending);
    }

    #[test]
    fn page_count_rounds_up() {
        let page = |total| PolicyPage {
            rows: vec![],
            total,
            page: 0,
            page_size: 50,
            platforms: vec![],
        };
        assert_eq!(page(0).page_count(), 1);
        assert_eq!(page(50).page_count(), 1);
        assert_eq!(page(51).page_count(), 2);
    }
}
