//! What a restore compares: a policy against the backup, without the parts the restore leaves
//! out. A restore without assignments (or scope tags) writes neither, so a difference there is
//! no change it makes: the plan, the "no change" decision and the evidence all compare through
//! [`restore_comparison`], or a restore that leaves them out would count them as changes, write
//! a no-op and report that the policy still differs. The same holds for the assignments a
//! policy set gives a policy: the restore never writes them, so they are never compared.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::domain::snapshot::{compare, CapturedPolicy, Comparison, SettingNames};
use crate::server::graph::write::is_direct_assignment;
use crate::server::graph::CaptureOptions;

/// Where a payload holds assignments and scope tags (at the top level, or inside `policy` as
/// `$expand` returns them).
const ASSIGNMENTS: &str = "assignments";
const SCOPE_TAGS: &str = "roleScopeTagIds";

/// `payload` without the parts a restore with `options` leaves out, and without the
/// assignments a policy set gives (borrowed when it leaves out nothing).
pub fn restored_part(payload: &Value, options: CaptureOptions) -> Cow<'_, Value> {
    let mut left_out = Vec::new();
    if !options.include_assignments {
        left_out.push(ASSIGNMENTS);
    }
    if !options.include_scope_tags {
        left_out.push(SCOPE_TAGS);
    }
    let holds = |value: &Value| {
        left_out.iter().any(|key| value.get(key).is_some())
            || value
                .get(ASSIGNMENTS)
                .and_then(Value::as_array)
                .is_some_and(|all| !all.iter().all(is_direct_assignment))
    };
    let in_policy = payload.get("policy").is_some_and(holds);
    if !holds(payload) && !in_policy {
        return Cow::Borrowed(payload);
    }
    let mut part = payload.clone();
    if let Some(object) = part.as_object_mut() {
        trim(object, &left_out);
    }
    if let Some(policy) = part.get_mut("policy").and_then(Value::as_object_mut) {
        trim(policy, &left_out);
    }
    Cow::Owned(part)
}

/// Removes the `left_out` keys of `object` and the assignments a policy set gives.
fn trim(object: &mut Map<String, Value>, left_out: &[&str]) {
    for key in left_out {
        object.remove(*key);
    }
    if let Some(Value::Array(assignments)) = object.get_mut(ASSIGNMENTS) {
        assignments.retain(is_direct_assignment);
    }
}

/// The changes from `old` to `new` in what a restore with `options` writes: both sides without
/// the parts it leaves out, which then read as captured in neither (not compared, no change).
pub fn restore_comparison(
    old: &CapturedPolicy<'_>,
    new: &CapturedPolicy<'_>,
    options: CaptureOptions,
    names: &SettingNames,
) -> Comparison {
    let old_part = restored_part(old.payload, options);
    let new_part = restored_part(new.payload, options);
    compare(
        &CapturedPolicy::new(old.family, old.format, &old_part),
        &CapturedPolicy::new(new.family, new.format, &new_part),
        names,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::snapshot::{CaptureFormat, PolicyType};
    use serde_json::json;

    const EVERYTHING: CaptureOptions = CaptureOptions {
        include_assignments: true,
        include_scope_tags: true,
    };

    fn policy(tags: &[&str], groups: &[&str]) -> Value {
        let assignments: Vec<Value> = groups
            .iter()
            .map(|g| {
                json!({"target": {
                    "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                    "groupId": g,
                }})
            })
            .collect();
        json!({
            "policyType": "deviceConfiguration",
            "policy": {
                "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
                "displayName": "Baseline",
                "passwordRequired": true,
                "roleScopeTagIds": tags,
            },
            "assignments": assignments,
        })
    }

    fn changes(old: &Value, new: &Value, options: CaptureOptions) -> usize {
        let family = PolicyType::DeviceConfiguration;
        restore_comparison(
            &CapturedPolicy::new(family, CaptureFormat::LATEST, old),
            &CapturedPolicy::new(family, CaptureFormat::LATEST, new),
            options,
            &SettingNames::default(),
        )
        .changes
        .len()
    }

    #[test]
    fn a_part_the_restore_leaves_out_is_no_change() {
        let backup = policy(&["0"], &["g-1"]);
        let more_groups = policy(&["0"], &["g-1", "g-2"]);
        let other_tags = policy(&["0", "7"], &["g-1"]);
        assert_eq!(changes(&more_groups, &backup, EVERYTHING), 1);
        assert_eq!(changes(&other_tags, &backup, EVERYTHING), 1);
        let no_assignments = CaptureOptions {
            include_assignments: false,
            ..EVERYTHING
        };
        assert_eq!(changes(&more_groups, &backup, no_assignments), 0);
        assert_eq!(changes(&other_tags, &backup, no_assignments), 1);
        let no_scope_tags = CaptureOptions {
            include_scope_tags: false,
            ..EVERYTHING
        };
        assert_eq!(changes(&other_tags, &backup, no_scope_tags), 0);
        assert_eq!(changes(&more_groups, &backup, no_scope_tags), 1);
    }

    #[test]
    fn an_assignment_a_policy_set_gives_is_no_change_the_restore_makes() {
        let backup = policy(&["0"], &["g-2"]);
        let from_set = json!({"source": "policySets", "sourceId": "set-1", "target": {
            "@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g-1"}});
        let mut inherited = backup.clone();
        inherited["assignments"]
            .as_array_mut()
            .expect("assignments")
            .push(from_set);
        assert_eq!(changes(&backup, &inherited, EVERYTHING), 0);
        assert_eq!(changes(&inherited, &backup, EVERYTHING), 0);
        let direct = policy(&["0"], &["g-2", "g-1"]);
        assert_eq!(changes(&inherited, &direct, EVERYTHING), 1);
        let expanded = json!({"policy": {"assignments": [
            {"source": "policySets", "target": {}}, {"source": "direct", "target": {}}
        ]}});
        assert_eq!(
            restored_part(&expanded, EVERYTHING).as_ref(),
            &json!({"policy": {"assignments": [{"source": "direct", "target": {}}]}})
        );
    }

    #[test]
    fn what_the_restore_writes_still_counts() {
        let backup = policy(&["0"], &["g-1"]);
        let mut edited = backup.clone();
        edited["policy"]["passwordRequired"] = json!(false);
        assert_eq!(changes(&edited, &backup, CaptureOptions::default()), 1);
    }

    #[test]
    fn parts_inside_the_policy_object_are_left_out_too() {
        let expanded =
            json!({"policy": {"displayName": "n", "assignments": [], "roleScopeTagIds": ["0"]}});
        let part = restored_part(&expanded, CaptureOptions::default());
        assert_eq!(part.as_ref(), &json!({"policy": {"displayName": "n"}}));
        assert!(matches!(
            restored_part(&expanded, EVERYTHING),
            Cow::Borrowed(_)
        ));
    }
}
