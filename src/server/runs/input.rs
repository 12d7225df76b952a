//! What an "add policies" run stores in `runs.input`: the backup set, the sorted policy ids and
//! the options. The submit writes it; the worker reads its items and options from it, and the
//! run detail page lists a queued run's selection from it. One type, so the three agree.

use serde::{Deserialize, Serialize};

use crate::domain::AddPoliciesOptions;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddPoliciesInput {
    #[serde(default)]
    pub backup_set_id: i64,
    /// Sorted and unique (a parsed `PolicySelection`).
    #[serde(default)]
    pub policy_ids: Vec<i64>,
    #[serde(default)]
    pub options: AddPoliciesOptions,
}

impl AddPoliciesInput {
    /// The stored JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Reads a stored input; one that cannot be read is logged and taken as empty (a run with
    /// no items and default options), rather than stopping the queue.
    pub fn from_json(raw: &str) -> Self {
        serde_json::from_str(raw).unwrap_or_else(|error| {
            tracing::error!(%error, "unreadable run input");
            Self::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_partial_inputs() {
        let input = AddPoliciesInput {
            backup_set_id: 7,
            policy_ids: vec![1, 2, 3],
            options: AddPoliciesOptions {
                include_assignments: true,
                include_scope_tags: false,
            },
        };
        assert_eq!(AddPoliciesInput::from_json(&input.to_json()), input);
        let options_only =
            AddPoliciesInput::from_json(r#"{"options":{"include_scope_tags":true}}"#);
        assert!(options_only.policy_ids.is_empty());
        assert!(options_only.options.include_scope_tags);
        assert_eq!(
            AddPoliciesInput::from_json("not json"),
            AddPoliciesInput::default()
        );
    }
}
