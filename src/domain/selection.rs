//! What "Add selected" submits: the policies (parsed into a [`PolicySelection`]) and the options,
//! and what the server answers.

use serde::{Deserialize, Serialize};

use super::{AppError, RunStatus};

/// The most policies one run may add. Above it the request is refused with a clear message:
/// the run and its items are written in one transaction that must stay short.
pub const MAX_SELECTION: usize = 10_000;

/// Selected policy ids: sorted, without duplicates, non-empty and bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySelection(Vec<i64>);

impl PolicySelection {
    /// Normalises the ids the browser sent (any order, duplicates allowed).
    pub fn parse(mut ids: Vec<i64>) -> Result<Self, AppError> {
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Err(AppError::invalid("policy_ids", "No policies selected."));
        }
        if ids.len() > MAX_SELECTION {
            return Err(AppError::invalid(
                "policy_ids",
                format!(
                    "{} policies selected; one run can add at most {MAX_SELECTION}. \
                     Narrow the filter or add them in several runs.",
                    ids.len()
                ),
            ));
        }
        Ok(Self(ids))
    }

    /// The ids, ascending.
    pub fn ids(&self) -> &[i64] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Options of an "add policies" run, part of its idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AddPoliciesOptions {
    #[serde(default)]
    pub include_assignments: bool,
    #[serde(default)]
    pub include_scope_tags: bool,
}

/// The answer to "Add selected": the run that now does the work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmittedRun {
    pub run_id: i64,
    /// True when an identical run was already queued or running and is returned instead.
    pub reused: bool,
    pub status: RunStatus,
    pub total: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_deduplicates() {
        let selection = PolicySelection::parse(vec![9, 3, 9, 1, 3]).unwrap();
        assert_eq!(selection.ids(), [1, 3, 9]);
        assert_eq!(selection.len(), 3);
    }

    #[test]
    fn empty_and_oversized_selections_are_refused() {
        let empty = PolicySelection::parse(vec![]).unwrap_err();
        assert_eq!(
            empty.field_message("policy_ids").as_deref(),
            Some("No policies selected.")
        );
        let too_many: Vec<i64> = (0..=MAX_SELECTION as i64).collect();
        let err = PolicySelection::parse(too_many).unwrap_err();
        assert!(err.field_message("policy_ids").unwrap().contains("at most"));
        let exactly: Vec<i64> = (0..MAX_SELECTION as i64).chain(0..10).collect();
        assert_eq!(
            PolicySelection::parse(exactly).unwrap().len(),
            MAX_SELECTION
        );
    }
}
