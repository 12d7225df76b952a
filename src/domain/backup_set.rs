//! Backup sets: the validated input that creates one, and what the pages show.

use serde::{Deserialize, Serialize};

use super::policy_type::PolicyType;
use super::tenant::hides_characters;
use super::text::canonical_name;
use super::{AppError, Timestamp};

/// Longest accepted backup set name, in characters.
pub const NAME_MAX_CHARS: usize = 200;
/// Longest accepted description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 2_000;

/// A backup set to create, parsed from the form: trimmed, non-empty and bounded; the name without
/// control or invisible formatting characters and in its canonical spelling ([`canonical_name`]:
/// the unique index on a tenant's set names compares bytes, and "Q1  baseline" must collide with
/// "Q1 baseline"), the description without control characters other than line breaks and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackupSet {
    name: String,
    description: String,
}

impl NewBackupSet {
    /// Validates the raw form fields; the error names the field that is wrong.
    pub fn parse(name: &str, description: &str) -> Result<Self, AppError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(AppError::invalid(
                "name",
                "Enter a name for the backup set.",
            ));
        }
        // An invisible character would make a name that looks like another set's.
        if hides_characters(name) {
            return Err(AppError::invalid(
                "name",
                "The name cannot contain control characters or invisible formatting characters.",
            ));
        }
        let name = canonical_name(name);
        if name.chars().count() > NAME_MAX_CHARS {
            return Err(AppError::invalid(
                "name",
                format!("The name is too long: at most {NAME_MAX_CHARS} characters."),
            ));
        }
        let description = description.trim();
        if description.chars().count() > DESCRIPTION_MAX_CHARS {
            return Err(AppError::invalid(
                "description",
                format!("The description is too long: at most {DESCRIPTION_MAX_CHARS} characters."),
            ));
        }
        // Lines and tabs are text; other control characters (NUL above all, which one engine
        // stores and the other refuses) are not.
        if description
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err(AppError::invalid(
                "description",
                "The description cannot contain control characters other than line breaks and tabs.",
            ));
        }
        Ok(Self {
            name,
            description: description.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn description(&self) -> &str {
        &self.description
    }
}

/// One row of the backup sets list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct BackupSetSummary {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub item_count: i64,
    pub created_by: String,
    pub created_at: Timestamp,
}

/// The backup sets list: the tenant's newest sets, as many as one read answers, and how many
/// it holds in all, so the page can say when the list was cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSetList {
    /// Newest first.
    pub sets: Vec<BackupSetSummary>,
    /// Every backup set of the tenant, shown or not.
    pub total: i64,
}

impl BackupSetList {
    /// Whether the tenant holds more sets than the list shows.
    pub fn is_cut(&self) -> bool {
        i64::try_from(self.sets.len()).unwrap_or(i64::MAX) < self.total
    }
}

/// A backup set page: the set and its items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSetDetail {
    pub set: BackupSetSummary,
    pub items: Vec<BackupItemRow>,
}

/// One captured policy in a backup set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct BackupItemRow {
    #[cfg_attr(feature = "ssr", sqlx(rename = "id"))]
    pub policy_id: i64,
    #[cfg_attr(feature = "ssr", sqlx(rename = "display_name"))]
    pub policy_name: String,
    pub policy_type: PolicyType,
    pub platform: String,
    pub captured_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_a_normal_name() {
        let set = NewBackupSet::parse("  Baseline 2026 ", " before the change ").unwrap();
        assert_eq!(set.name(), "Baseline 2026");
        assert_eq!(set.description(), "before the change");
    }

    #[test]
    fn names_that_look_the_same_are_stored_the_same() {
        for raw in [
            "Q1 baseline",
            "Q1  baseline",
            " Q1\u{A0}baseline ",
            "Q1\u{202F}\u{2007}baseline",
        ] {
            let set = NewBackupSet::parse(raw, "").unwrap();
            assert_eq!(set.name(), "Q1 baseline", "{raw:?}");
        }
        let set = NewBackupSet::parse("Cafe\u{301} baseline", "").unwrap();
        assert_eq!(set.name(), "Caf\u{E9} baseline");
        let err = NewBackupSet::parse("Q1\tbaseline", "").unwrap_err();
        assert!(err.field_message("name").is_some(), "{err:?}");
    }

    #[test]
    fn rejects_blank_names() {
        let err = NewBackupSet::parse(" \t ", "").unwrap_err();
        assert_eq!(err.status(), 422);
        assert!(err.field_message("name").is_some());
    }

    #[test]
    fn counts_characters_not_bytes() {
        let exactly = "é".repeat(NAME_MAX_CHARS);
        assert!(NewBackupSet::parse(&exactly, "").is_ok());
        let over = "é".repeat(NAME_MAX_CHARS + 1);
        assert!(NewBackupSet::parse(&over, "")
            .unwrap_err()
            .field_message("name")
            .is_some());
    }

    #[test]
    fn rejects_long_descriptions_and_control_characters() {
        let long = "x".repeat(DESCRIPTION_MAX_CHARS + 1);
        assert!(NewBackupSet::parse("ok", &long)
            .unwrap_err()
            .field_message("description")
            .is_some());
        assert!(NewBackupSet::parse("bad\u{0}name", "").is_err());
    }

    #[test]
    fn rejects_invisible_and_bidi_formatting_in_names() {
        for hidden in [
            "Baseline\u{200B}",
            "Base\u{200D}line",
            "\u{202E}enilesaB",
            "Base\u{2060}line",
            "Base\u{2066}line\u{2069}",
            "\u{FEFF}Baseline",
            "Base\u{AD}line",
            "Baseline\u{E0041}",
        ] {
            let err = NewBackupSet::parse(hidden, "").unwrap_err();
            assert!(err.field_message("name").is_some(), "{hidden:?}: {err:?}");
        }
        assert!(NewBackupSet::parse("Café Ünïcode – 2026 ✓", "").is_ok());
        assert!(NewBackupSet::parse("گزارش\u{200C}ها 👨\u{200D}👩\u{200D}👧", "").is_ok());
    }

    #[test]
    fn descriptions_keep_line_breaks_and_tabs_but_no_other_control_characters() {
        let set = NewBackupSet::parse("ok", "first line\r\nsecond\tline").unwrap();
        assert_eq!(set.description(), "first line\r\nsecond\tline");
        for bad in [
            "nul\u{0}here",
            "bell\u{7}",
            "escape\u{1B}[0m",
            "c1\u{85}next",
        ] {
            let err = NewBackupSet::parse("ok", bad).unwrap_err();
            assert!(
                err.field_message("description").is_some(),
                "{bad:?}: {err:?}"
            );
        }
    }
}
