//! What a captured policy refers to outside itself: the groups and assignment filters its
//! assignments target, and its scope tags. A restore checks that each still exists before it
//! writes anything that names it.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::server::graph::write::{direct_assignments, DirectoryKind};

/// The built-in scope tag every policy may carry; it always exists.
const DEFAULT_SCOPE_TAG: &str = "0";

/// A directory object a policy refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub kind: DirectoryKind,
    pub id: String,
}

/// What the safety checks call a kind of directory object.
pub fn kind_label(kind: DirectoryKind) -> &'static str {
    match kind {
        DirectoryKind::Group => "Group",
        DirectoryKind::AssignmentFilter => "Assignment filter",
        DirectoryKind::ScopeTag => "Scope tag",
    }
}

/// The order references are listed in: groups, filters, scope tags.
const ORDER: [DirectoryKind; 3] = [
    DirectoryKind::Group,
    DirectoryKind::AssignmentFilter,
    DirectoryKind::ScopeTag,
];

fn rank(kind: DirectoryKind) -> usize {
    ORDER.iter().position(|k| *k == kind).unwrap_or(ORDER.len())
}

/// The references of a stored version's `payload` (`assignments` beside the `policy` or inside
/// it, read where the write reads them: [`direct_assignments`]; the `policy`'s
/// `roleScopeTagIds` name its scope tags) that a restore would write: the assignments' groups
/// and filters when `assignments` (of its direct assignments: a policy set's are not written),
/// the scope tags (other than the default one) when `scope_tags`. Each once, sorted, with its
/// id exactly as written.
pub fn references(payload: &Value, assignments: bool, scope_tags: bool) -> Vec<Reference> {
    let mut found: BTreeSet<(usize, String)> = BTreeSet::new();
    let mut add = |kind: DirectoryKind, id: String| {
        found.insert((rank(kind), id));
    };
    if assignments {
        for assignment in direct_assignments(payload).into_iter().flatten() {
            let Some(target) = assignment.get("target") else {
                continue;
            };
            if let Some(group) = non_empty(target.get("groupId")) {
                add(DirectoryKind::Group, group);
            }
            let filter = non_empty(target.get("deviceAndAppManagementAssignmentFilterId"));
            if let Some(filter) = filter.filter(|id| !is_nil_guid(id)) {
                add(DirectoryKind::AssignmentFilter, filter);
            }
        }
    }
    if scope_tags {
        for tag in payload
            .pointer("/policy/roleScopeTagIds")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(tag) = non_empty(Some(tag)).filter(|tag| tag != DEFAULT_SCOPE_TAG) {
                add(DirectoryKind::ScopeTag, tag);
            }
        }
    }
    found
        .into_iter()
        .map(|(rank, id)| Reference {
            kind: ORDER[rank],
            id,
        })
        .collect()
}

/// The id as the write sends it, untrimmed: a padded id is looked up as it stands (and, not
/// being a Graph id, reads as missing), never checked as another id than the one written.
fn non_empty(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Graph writes an all-zero id where an assignment has no filter.
fn is_nil_guid(id: &str) -> bool {
    id.chars().all(|c| c == '0' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Value {
        json!({
            "policy": {"roleScopeTagIds": ["0", "7", "7"]},
            "assignments": [
                {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget",
                    "groupId": "g-1", "deviceAndAppManagementAssignmentFilterId": "f-1"}},
                {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget",
                    "groupId": "g-2", "deviceAndAppManagementAssignmentFilterId": null}},
                {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget",
                    "deviceAndAppManagementAssignmentFilterId": "00000000-0000-0000-0000-000000000000"}},
                {"target": {"groupId": "g-1"}}
            ]
        })
    }

    #[test]
    fn assignments_name_their_groups_and_filters_once() {
        let found = references(&policy(), true, false);
        let ids: Vec<(&str, &str)> = found
            .iter()
            .map(|r| (kind_label(r.kind), r.id.as_str()))
            .collect();
        assert_eq!(
            ids,
            vec![
                ("Group", "g-1"),
                ("Group", "g-2"),
                ("Assignment filter", "f-1")
            ]
        );
    }

    #[test]
    fn an_assignment_a_policy_set_gives_is_not_the_restores_to_check() {
        let payload = json!({"assignments": [
            {"source": "policySets", "sourceId": "set-1",
                "target": {"groupId": "g-1", "deviceAndAppManagementAssignmentFilterId": "f-1"}},
            {"source": "direct", "sourceId": "p", "target": {"groupId": "g-2"}},
        ]});
        assert_eq!(
            references(&payload, true, false),
            vec![Reference {
                kind: DirectoryKind::Group,
                id: "g-2".into()
            }]
        );
    }

    #[test]
    fn assignments_inside_the_policy_are_checked_as_they_are_written() {
        // As `$expand` returns them: the write assigns these, so their groups are checked.
        let payload = json!({"policy": {"assignments": [
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget",
                "groupId": "g-9", "deviceAndAppManagementAssignmentFilterId": "f-9"}}
        ]}});
        assert_eq!(
            references(&payload, true, false),
            vec![
                Reference {
                    kind: DirectoryKind::Group,
                    id: "g-9".into()
                },
                Reference {
                    kind: DirectoryKind::AssignmentFilter,
                    id: "f-9".into()
                }
            ]
        );
    }

    #[test]
    fn a_padded_id_is_checked_as_it_stands() {
        let payload = json!({
            "policy": {"roleScopeTagIds": [" 7 "]},
            "assignments": [{"target": {"groupId": " g-1 ",
                "deviceAndAppManagementAssignmentFilterId": "f-1\t"}}]
        });
        let checked: Vec<String> = references(&payload, true, true)
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(checked, vec![" g-1 ", "f-1\t", " 7 "]);
    }

    #[test]
    fn scope_tags_leave_the_default_out() {
        let found = references(&policy(), false, true);
        assert_eq!(
            found,
            vec![Reference {
                kind: DirectoryKind::ScopeTag,
                id: "7".into()
            }]
        );
    }

    #[test]
    fn what_is_left_out_is_not_checked() {
        assert!(references(&policy(), false, false).is_empty());
        assert!(references(
            &json!({"assignments": "junk", "roleScopeTagIds": 3}),
            true,
            true
        )
        .is_empty());
    }
}
