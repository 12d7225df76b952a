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
            return Err(no_policies_selected());
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

/// The refusal of a submit that names no policy (SPEC rule 2): a 422 naming `policy_ids`.
pub fn no_policies_selected() -> AppError {
    AppError::invalid("policy_ids", "No policies selected.")
}

/// What "Add selected" names: the ids the browser lists, or (`all_matching`) every policy that
/// matches the picker's filter and is not in the backup set yet, which the server resolves when
/// the submit arrives, so a policy synced since "Select all N matching" is in the run and one
/// gone from Intune meanwhile is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectionRequest {
    Ids(PolicySelection),
    AllMatching,
}

impl SelectionRequest {
    /// Reads the form's `policy_ids` and `all_matching`: ids without the flag are a
    /// [`PolicySelection`]; the flag takes no ids. Ids and the flag together name no one
    /// selection and are refused as an empty one is ([`no_policies_selected`]).
    pub fn parse(ids: Vec<i64>, all_matching: bool) -> Result<Self, AppError> {
        match (all_matching, ids.is_empty()) {
            (false, _) => PolicySelection::parse(ids).map(Self::Ids),
            (true, true) => Ok(Self::AllMatching),
            (true, false) => Err(no_policies_selected()),
        }
    }
}

/// Policy ids as a form sends them: one field of comma-separated ids (`policy_ids=3,9,12`),
/// not one field per id (`policy_ids[0]=3&…`). A selection of thousands is then one field to
/// decode instead of thousands of bracketed keys. An empty field is no ids; anything but
/// comma-separated integers is refused (400, with this type's reason).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyIds(pub Vec<i64>);

/// The field's text: `3,9,12`.
impl std::fmt::Display for PolicyIds {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                formatter.write_str(",")?;
            }
            write!(formatter, "{id}")?;
        }
        Ok(())
    }
}

impl Serialize for PolicyIds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PolicyIds {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IdsVisitor)
    }
}

/// Reads [`PolicyIds`] from text; anything else (a list sent a field per id) is refused with
/// what was expected, naming the field.
struct IdsVisitor;

impl serde::de::Visitor<'_> for IdsVisitor {
    type Value = PolicyIds;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("policy_ids as one field of comma-separated ids (policy_ids=3,9,12)")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<PolicyIds, E> {
        PolicyIds::parse(text).map_err(E::custom)
    }
}

impl PolicyIds {
    /// Reads `3,9,12` (spaces around an id allowed; empty is no ids).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        text.split(',')
            .map(|id| {
                id.trim()
                    .parse::<i64>()
                    .map_err(|_| "policy_ids: expected comma-separated policy ids".to_owned())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
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

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Form {
        policy_ids: PolicyIds,
    }

    proptest::proptest! {
        /// Any ids, through the form codec server functions use (serde_qs), read back as sent.
        #[test]
        fn policy_ids_read_back_through_the_form_codec(
            ids in proptest::collection::vec(proptest::prelude::any::<i64>(), 0..200)
        ) {
            let form = Form { policy_ids: PolicyIds(ids) };
            let body = serde_qs::to_string(&form).unwrap();
            proptest::prop_assert_eq!(serde_qs::from_str::<Form>(&body).unwrap(), form);
        }
    }

    #[test]
    fn policy_ids_examples() {
        assert_eq!(PolicyIds::parse(" 4, 5 ").unwrap(), PolicyIds(vec![4, 5]));
        assert_eq!(PolicyIds::parse("").unwrap(), PolicyIds(vec![]));
        for bad in [
            "1,,2",
            "1;2",
            "x",
            "1,",
            "99999999999999999999",
            "[1]",
            "policy_ids[0]=1",
        ] {
            assert!(PolicyIds::parse(bad).is_err(), "{bad} was read as ids");
        }
    }

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

    #[test]
    fn all_matching_takes_no_ids() {
        assert_eq!(
            SelectionRequest::parse(vec![], true).unwrap(),
            SelectionRequest::AllMatching
        );
        assert_eq!(
            SelectionRequest::parse(vec![4, 2, 4], false).unwrap(),
            SelectionRequest::Ids(PolicySelection::parse(vec![2, 4]).unwrap())
        );
        for (ids, all_matching) in [(vec![], false), (vec![7], true)] {
            let refused = SelectionRequest::parse(ids, all_matching).unwrap_err();
            assert_eq!(
                refused.field_message("policy_ids").as_deref(),
                Some("No policies selected.")
            );
        }
    }
}
