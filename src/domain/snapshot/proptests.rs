//! Property tests of normalisation and the diff on generated snapshots of all four families,
//! settings catalog trees included: pairs are either independent documents over small alphabets
//! (so they share keys and values often) or one document and a few random edits of it.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{json, Map, Value};

use super::normalize::{build, common_sections, leaves, Leaf, Node, Tree};
use super::{
    compare, diff, normalize, normalize_pair, readable, CaptureFormat, CapturedPolicy, Change,
    ChangeKind, PolicyType, SettingNames,
};

// ---------------------------------------------------------------- generators

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..4).prop_map(Value::from),
        "[ab]{0,2}".prop_map(Value::String),
    ]
}

/// Property names of generated objects: a few plain ones and the noise normalisation drops.
const KEYS: &[&str] = &[
    "alpha",
    "beta",
    "gamma",
    "id",
    "createdDateTime",
    "@odata.context",
    "@odata.type",
];

fn object_of<S: Strategy<Value = Value>>(
    keys: &'static [&'static str],
    values: S,
) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(select(keys), values, 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// Plain JSON: scalars, ordered arrays and objects, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            object_of(KEYS, inner),
        ]
    })
}

const POLICY_KEYS: &[&str] = &[
    "displayName",
    "passwordRequired",
    "passwordMinimumLength",
    "alpha",
    "beta",
    "version",
    "lastModifiedDateTime",
    "id",
    "@odata.type",
];

const TARGETS: &[&str] = &[
    "groupAssignmentTarget",
    "exclusionGroupAssignmentTarget",
    "allLicensedUsersAssignmentTarget",
    "allDevicesAssignmentTarget",
];

fn assignment() -> impl Strategy<Value = Value> {
    (
        select(TARGETS),
        select(&["g1", "g2", "g3"][..]),
        select(&["none", "include", "exclude"][..]),
        prop::option::of(select(&["f1", "f2"][..])),
        prop::option::of("[a-z]{1,3}"),
    )
        .prop_map(|(target, group, filter_type, filter, id)| {
            let mut target_json = json!({
                "@odata.type": format!("#microsoft.graph.{target}"),
                "deviceAndAppManagementAssignmentFilterType": filter_type,
                "deviceAndAppManagementAssignmentFilterId": filter,
            });
            if target.contains("Group") {
                target_json["groupId"] = json!(group);
            }
            json!({"id": id, "target": target_json})
        })
}

fn scope_tags() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(
        prop::collection::vec(select(&["0", "1", "2"][..]), 0..4).prop_map(|v| json!(v)),
    )
}

fn assignments() -> impl Strategy<Value = Option<Value>> {
    prop::option::of(prop::collection::vec(assignment(), 0..4).prop_map(Value::Array))
}

fn oma_setting() -> impl Strategy<Value = Value> {
    (
        select(&["./A", "./B", "./C"][..]),
        select(&["x", "y"][..]),
        any::<bool>(),
        scalar(),
        "[a-z]{1,3}",
    )
        .prop_map(|(uri, name, encrypted, value, reference)| {
            json!({"@odata.type": "#microsoft.graph.omaSettingString", "omaUri": uri,
                "displayName": name, "isEncrypted": encrypted, "value": value,
                "secretReferenceValueId": reference})
        })
}

/// Assembles a payload as a capture stores it.
fn payload(
    family: PolicyType,
    mut policy: Map<String, Value>,
    tags: Option<Value>,
    assignments: Option<Value>,
    extra: Vec<(&str, Value)>,
) -> Value {
    if let Some(tags) = tags {
        policy.insert("roleScopeTagIds".into(), tags);
    }
    let mut out = json!({"policyType": family.as_str(), "policy": policy});
    if let Some(assignments) = assignments {
        out["assignments"] = assignments;
    }
    for (key, value) in extra {
        out[key] = value;
    }
    out
}

fn policy_props() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(select(POLICY_KEYS), json_value(), 0..5)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn device_configuration() -> impl Strategy<Value = Value> {
    (
        policy_props(),
        prop::collection::vec(oma_setting(), 0..3),
        scope_tags(),
        assignments(),
    )
        .prop_map(|(mut policy, oma, tags, assignments)| {
            if !oma.is_empty() {
                policy.insert("omaSettings".into(), Value::Array(oma));
            }
            payload(
                PolicyType::DeviceConfiguration,
                policy,
                tags,
                assignments,
                Vec::new(),
            )
        })
}

fn action() -> impl Strategy<Value = Value> {
    (
        select(&["block", "notification", "retire"][..]),
        0i64..3,
        prop::collection::vec(select(&["g1", "g2"][..]), 0..3),
        "[a-z]{1,3}",
    )
        .prop_map(|(kind, hours, cc, id)| {
            json!({"id": id, "actionType": kind, "gracePeriodHours": hours,
                "notificationMessageCCList": cc})
        })
}

fn rules() -> impl Strategy<Value = Value> {
    prop::collection::vec(
        (
            select(&["PasswordRequired", "Other"][..]),
            prop::collection::vec(action(), 0..3),
        )
            .prop_map(|(rule, actions)| json!({"ruleName": rule, "scheduledActionConfigurations": actions})),
        0..3,
    )
    .prop_map(Value::Array)
}

fn compliance() -> impl Strategy<Value = Value> {
    (
        policy_props(),
        prop::option::of(rules()),
        any::<bool>(),
        scope_tags(),
        assignments(),
    )
        .prop_map(|(mut policy, rules, inside, tags, assignments)| {
            let mut extra = Vec::new();
            if let Some(rules) = rules {
                // Captures may keep the actions inside the policy (as `$expand` returns them)
                // or beside it.
                if inside {
                    policy.insert("scheduledActionsForRule".into(), rules);
                } else {
                    extra.push(("scheduledActionsForRule", rules));
                }
            }
            payload(PolicyType::Compliance, policy, tags, assignments, extra)
        })
}

fn presentation_value() -> impl Strategy<Value = Value> {
    (
        select(&["p1", "p2", "p3"][..]),
        select(&["Label:", "Other"][..]),
        scalar(),
        "[a-z]{1,3}",
    )
        .prop_map(|(id, label, value, own_id)| {
            json!({"id": own_id, "value": value,
                "@odata.type": "#microsoft.graph.groupPolicyPresentationValueText",
                "presentation": {"id": id, "label": label}})
        })
}

fn definition_value() -> impl Strategy<Value = Value> {
    (
        select(&["d1", "d2", "d3"][..]),
        prop::option::of(any::<bool>()),
        select(&["Name A", "Name B"][..]),
        prop::option::of(prop::collection::vec(presentation_value(), 0..3)),
        "[a-z]{1,3}",
    )
        .prop_map(|(definition, enabled, name, presentation, id)| {
            let mut value = json!({"id": id, "enabled": enabled, "configurationType": "policy",
                "definition": {"id": definition, "displayName": name, "classType": "machine"}});
            if let Some(presentation) = presentation {
                value["presentationValues"] = json!(presentation);
            }
            value
        })
}

fn administrative_template() -> impl Strategy<Value = Value> {
    (
        policy_props(),
        prop::collection::vec(definition_value(), 0..4),
        scope_tags(),
        assignments(),
    )
        .prop_map(|(policy, values, tags, assignments)| {
            payload(
                PolicyType::AdministrativeTemplate,
                policy,
                tags,
                assignments,
                vec![("definitionValues", Value::Array(values))],
            )
        })
}

/// A generated settings catalog setting; children are `(id suffix, setting)`.
#[derive(Debug, Clone)]
enum GenSetting {
    Choice(u8, Vec<(u8, GenSetting)>),
    Simple(Value),
    Secret(String, bool),
    Group(Vec<(u8, GenSetting)>),
    GroupCollection(Vec<Vec<(u8, GenSetting)>>),
    SimpleCollection(Vec<Value>),
    ChoiceCollection(Vec<(u8, Vec<(u8, GenSetting)>)>),
}

fn setting_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        (0i64..3).prop_map(Value::from),
        select(&["a", "b"][..]).prop_map(Value::from),
    ]
}

fn gen_setting() -> impl Strategy<Value = GenSetting> {
    let leaf = prop_oneof![
        (0u8..3).prop_map(|c| GenSetting::Choice(c, Vec::new())),
        setting_scalar().prop_map(GenSetting::Simple),
        ("[a-z]{1,4}", any::<bool>()).prop_map(|(t, e)| GenSetting::Secret(t, e)),
        prop::collection::vec(setting_scalar(), 0..3).prop_map(GenSetting::SimpleCollection),
    ];
    leaf.prop_recursive(3, 32, 3, |inner| {
        let children = prop::collection::vec((0u8..4, inner), 0..3);
        prop_oneof![
            (0u8..3, children.clone()).prop_map(|(c, ch)| GenSetting::Choice(c, ch)),
            children.clone().prop_map(GenSetting::Group),
            prop::collection::vec(children.clone(), 0..3).prop_map(GenSetting::GroupCollection),
            prop::collection::vec((0u8..3, children), 0..3).prop_map(GenSetting::ChoiceCollection),
        ]
    })
}

/// Child instances with unique definition ids (`<parent>_c<n>`), as Graph sends them.
fn children_json(parent: &str, children: &[(u8, GenSetting)]) -> Value {
    let mut seen = BTreeSet::new();
    Value::Array(
        children
            .iter()
            .filter(|(suffix, _)| seen.insert(*suffix))
            .map(|(suffix, child)| instance_json(&format!("{parent}_c{suffix}"), child))
            .collect(),
    )
}

fn instance_json(id: &str, setting: &GenSetting) -> Value {
    let kind =
        |name: &str| format!("#microsoft.graph.deviceManagementConfiguration{name}SettingInstance");
    match setting {
        GenSetting::Choice(choice, children) => json!({"@odata.type": kind("Choice"),
            "settingDefinitionId": id, "choiceSettingValue": {
                "value": format!("{id}_{choice}"), "children": children_json(id, children)}}),
        GenSetting::Simple(value) => {
            json!({"@odata.type": kind("Simple"), "settingDefinitionId": id,
            "simpleSettingValue": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationStringSettingValue",
                "value": value}})
        }
        GenSetting::Secret(token, encrypted) => json!({"@odata.type": kind("Simple"),
            "settingDefinitionId": id, "simpleSettingValue": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue",
                "value": token,
                "valueState": if *encrypted { "encryptedValueToken" } else { "notEncrypted" }}}),
        GenSetting::Group(children) => {
            json!({"@odata.type": kind("Group"), "settingDefinitionId": id,
            "groupSettingValue": {"children": children_json(id, children)}})
        }
        GenSetting::GroupCollection(instances) => {
            let values: Vec<Value> = instances
                .iter()
                .map(|children| json!({"children": children_json(id, children)}))
                .collect();
            json!({"@odata.type": kind("GroupCollection"), "settingDefinitionId": id,
                "groupSettingCollectionValue": values})
        }
        GenSetting::SimpleCollection(values) => {
            let values: Vec<Value> = values.iter().map(|v| json!({"value": v})).collect();
            json!({"@odata.type": kind("SimpleCollection"), "settingDefinitionId": id,
                "simpleSettingCollectionValue": values})
        }
        GenSetting::ChoiceCollection(items) => {
            let values: Vec<Value> = items
                .iter()
                .map(|(choice, children)| {
                    json!({"value": format!("{id}_{choice}"), "children": children_json(id, children)})
                })
                .collect();
            json!({"@odata.type": kind("ChoiceCollection"), "settingDefinitionId": id,
                "choiceSettingCollectionValue": values})
        }
    }
}

fn settings_catalog() -> impl Strategy<Value = Value> {
    (
        policy_props(),
        prop::collection::vec((0u8..5, gen_setting()), 0..5),
        scope_tags(),
        assignments(),
    )
        .prop_map(|(policy, settings, tags, assignments)| {
            let mut seen = BTreeSet::new();
            let settings: Vec<Value> = settings
                .iter()
                .filter(|(suffix, _)| seen.insert(*suffix))
                .enumerate()
                .map(|(index, (suffix, setting))| {
                    json!({"id": index.to_string(),
                        "settingInstance": instance_json(&format!("s{suffix}"), setting)})
                })
                .collect();
            payload(
                PolicyType::SettingsCatalog,
                policy,
                tags,
                assignments,
                vec![("settings", Value::Array(settings))],
            )
        })
}

fn family_document(family: PolicyType) -> BoxedStrategy<Value> {
    match family {
        PolicyType::SettingsCatalog => settings_catalog().boxed(),
        PolicyType::DeviceConfiguration => device_configuration().boxed(),
        PolicyType::Compliance => compliance().boxed(),
        PolicyType::AdministrativeTemplate => administrative_template().boxed(),
    }
}

fn family() -> impl Strategy<Value = PolicyType> {
    select(&PolicyType::ALL[..])
}

fn format() -> impl Strategy<Value = CaptureFormat> {
    select(&[CaptureFormat::V1, CaptureFormat::V2][..])
}

fn document() -> impl Strategy<Value = (PolicyType, Value)> {
    family().prop_flat_map(|f| (Just(f), family_document(f)))
}

/// Two documents of one family: independent, or the second an edit of the first.
fn pair() -> impl Strategy<Value = (PolicyType, Value, Value)> {
    prop_oneof![
        family().prop_flat_map(|f| (Just(f), family_document(f), family_document(f))),
        (document(), prop::collection::vec(any::<u64>(), 1..4)).prop_map(|((f, a), seeds)| {
            let mut b = a.clone();
            for seed in seeds {
                mutate(&mut b, seed);
            }
            (f, a, b)
        }),
    ]
}

// ---------------------------------------------------------------- edits

/// splitmix64: a tiny deterministic generator driven by a proptest seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            usize::try_from(self.next() % n as u64).unwrap_or(0)
        }
    }
}

fn count(value: &Value) -> usize {
    1 + match value {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(map) => map.values().map(count).sum(),
        _ => 0,
    }
}

/// One random edit somewhere in the document: replace, remove, add or flip a value.
fn mutate(doc: &mut Value, seed: u64) {
    let mut rng = Rng(seed);
    let mut target = rng.below(count(doc));
    edit_at(doc, &mut target, &mut rng);
}

fn edit_at(value: &mut Value, target: &mut usize, rng: &mut Rng) -> bool {
    if *target == 0 {
        edit(value, rng);
        return true;
    }
    *target -= 1;
    match value {
        Value::Array(items) => items.iter_mut().any(|item| edit_at(item, target, rng)),
        Value::Object(map) => map.values_mut().any(|item| edit_at(item, target, rng)),
        _ => false,
    }
}

fn edit(value: &mut Value, rng: &mut Rng) {
    let replacements = [
        Value::Null,
        json!(true),
        json!(false),
        json!(0),
        json!(2),
        json!("a"),
        json!(""),
    ];
    match rng.below(4) {
        0 => *value = replacements[rng.below(replacements.len())].clone(),
        1 => match value {
            Value::Array(items) if !items.is_empty() => {
                items.remove(rng.below(items.len()));
            }
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(rng.below(map.len())).cloned();
                if let Some(key) = key {
                    map.remove(&key);
                }
            }
            _ => *value = Value::Null,
        },
        2 => match value {
            Value::Array(items) if !items.is_empty() => {
                let copy = items[rng.below(items.len())].clone();
                items.push(copy);
            }
            Value::Array(items) => items.push(json!("a")),
            Value::Object(map) => {
                map.insert("alpha".into(), json!(rng.below(3)));
            }
            _ => flip(value),
        },
        _ => flip(value),
    }
}

fn flip(value: &mut Value) {
    *value = match value {
        Value::Bool(b) => Value::Bool(!*b),
        Value::Number(n) => json!(n.as_i64().unwrap_or(0) + 1),
        Value::String(s) if s == "a" => json!("b"),
        Value::String(s) => json!(format!("{s}x")),
        Value::Array(items) => Value::Array(items.iter().rev().cloned().collect()),
        Value::Object(_) | Value::Null => json!("a"),
    };
}

/// Arrays that are sets: their order is never a change.
const SET_LIKE: &[&str] = &[
    "roleScopeTagIds",
    "assignments",
    "settings",
    "omaSettings",
    "definitionValues",
    "presentationValues",
    "scheduledActionsForRule",
    "scheduledActionConfigurations",
    "notificationMessageCCList",
    "groupSettingCollectionValue",
    "simpleSettingCollectionValue",
    "choiceSettingCollectionValue",
    "children",
];

/// Everything that must not count as a change: set-like arrays reordered, instance ids,
/// timestamps, the edit counter and annotations renewed, `@odata.type` spelled with or without
/// `#`, secret tokens re-issued, and names (template definitions, presentation labels, inline
/// setting definitions) renamed.
fn shuffle(value: &mut Value, parent: &str, rng: &mut Rng) {
    match value {
        Value::Array(items) => {
            if SET_LIKE.contains(&parent) {
                for i in (1..items.len()).rev() {
                    let j = rng.below(i + 1);
                    items.swap(i, j);
                }
            }
            for item in items.iter_mut() {
                shuffle(item, "", rng);
            }
        }
        Value::Object(map) => {
            let naming = matches!(parent, "definition" | "presentation");
            let secret = map.contains_key("valueState")
                || map.get("isEncrypted") == Some(&Value::Bool(true));
            for (key, item) in map.iter_mut() {
                match key.as_str() {
                    "id" if !naming => *item = json!(format!("id{}", rng.below(1000))),
                    "createdDateTime" | "lastModifiedDateTime" => {
                        *item = json!(format!("2024-01-0{}T00:00:00Z", rng.below(9) + 1));
                    }
                    "version" if parent == "policy" => *item = json!(rng.below(50)),
                    "displayName" if parent == "definition" => *item = json!("Renamed"),
                    "label" if parent == "presentation" => *item = json!("Renamed:"),
                    "value" | "secretReferenceValueId" if secret => {
                        *item = json!(format!("token{}", rng.below(1000)));
                    }
                    "valueState" => {
                        *item = json!(if rng.below(2) == 0 {
                            "notEncrypted"
                        } else {
                            "encryptedValueToken"
                        });
                    }
                    "@odata.type" => {
                        if let Some(text) = item.as_str() {
                            *item = json!(match text.strip_prefix('#') {
                                Some(bare) => bare.to_owned(),
                                None => format!("#{text}"),
                            });
                        }
                    }
                    _ => shuffle(item, key, rng),
                }
            }
            if parent == "policy" {
                map.insert("@odata.context".into(), json!("https://graph/$metadata#x"));
            }
            if map.contains_key("settingInstance") {
                map.insert(
                    "settingDefinitions".into(),
                    json!([{"id": "s1", "displayName": format!("Name {}", rng.below(9))}]),
                );
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- checks

fn captured(family: PolicyType, format: CaptureFormat, payload: &Value) -> CapturedPolicy<'_> {
    CapturedPolicy::new(family, format, payload)
}

/// A leaf of a tree, with the path it has when members that share a key are not told apart
/// (each of their made-up keys, `notification (2)`, read as the shared one), and whether that
/// path passes through such a member (which the diff pairs by content, not by key).
#[derive(Debug, Clone)]
struct Found {
    leaf: Leaf,
    base: Vec<String>,
    shared: bool,
}

/// Every leaf (path → value) of the parts a comparison of the two covers.
fn comparable_leaves(old: &Tree, new: &Tree) -> [BTreeMap<Vec<String>, Found>; 2] {
    let both = common_sections(old, new);
    [old, new].map(|tree| {
        let mut plain = BTreeMap::new();
        let mut out = BTreeMap::new();
        for section in &tree.sections {
            if !both.contains(&section.key) {
                continue;
            }
            if let Some(node) = &section.node {
                let mut path = vec![section.key.clone()];
                leaves(node, &mut path, &mut plain);
                let mut base = path.clone();
                found(node, &mut path, &mut base, false, &mut out);
            }
        }
        assert_eq!(plain.len(), out.len());
        out
    })
}

fn found(
    node: &Node,
    path: &mut Vec<String>,
    base: &mut Vec<String>,
    shared: bool,
    out: &mut BTreeMap<Vec<String>, Found>,
) {
    if let Some(own) = &node.own {
        let leaf = own.leaf.clone();
        out.insert(
            path.clone(),
            Found {
                leaf,
                base: base.clone(),
                shared,
            },
        );
    }
    for entry in &node.entries {
        path.push(entry.key.clone());
        base.push(entry.base.clone().unwrap_or_else(|| entry.key.clone()));
        found(&entry.node, path, base, shared || entry.base.is_some(), out);
        path.pop();
        base.pop();
    }
}

/// The leaves as a multiset of (path with shared keys, value).
fn by_base<'m>(leaves: impl Iterator<Item = &'m Found>) -> BTreeMap<(Vec<String>, String), usize> {
    let mut out = BTreeMap::new();
    for found in leaves {
        *out.entry((found.base.clone(), format!("{:?}", found.leaf)))
            .or_default() += 1;
    }
    out
}

fn under<'m, V>(
    leaves: &'m BTreeMap<Vec<String>, V>,
    prefix: &'m [String],
) -> impl Iterator<Item = (&'m Vec<String>, &'m V)> + 'm {
    leaves
        .iter()
        .filter(move |(path, _)| path.starts_with(prefix))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_snapshot_never_differs_from_itself(
        (family, doc) in document(),
        a in format(),
        b in format(),
    ) {
        let names = SettingNames::from_payload(&doc);
        prop_assert!(diff(&captured(family, a, &doc), &captured(family, a, &doc), &names).is_empty());
        // Nor from itself read in another capture format.
        prop_assert!(diff(&captured(family, a, &doc), &captured(family, b, &doc), &names).is_empty());
        // Rows have unique paths, so a change can point at its row.
        let view = readable(&captured(family, a, &doc), &names);
        let mut paths = BTreeSet::new();
        prop_assert!(view.rows().all(|r| paths.insert(r.path.clone())));
    }

    #[test]
    fn the_diff_is_empty_exactly_when_normalised_documents_are_equal(
        (family, old, new) in pair(),
        a in format(),
        b in format(),
    ) {
        let (x, y) = (captured(family, a, &old), captured(family, b, &new));
        let changes = diff(&x, &y, &SettingNames::new());
        let (nx, ny) = normalize_pair(&x, &y);
        prop_assert_eq!(changes.is_empty(), nx == ny, "changes: {:?}", changes);
        if a == b {
            let same_parts = compare(&x, &y, &SettingNames::new()).not_compared.is_empty();
            if same_parts {
                prop_assert_eq!(changes.is_empty(), normalize(&x) == normalize(&y));
            }
        }
    }

    #[test]
    fn every_change_names_a_differing_leaf_and_every_differing_leaf_is_reported(
        (family, old, new) in pair(),
        a in format(),
        b in format(),
    ) {
        let (x, y) = (captured(family, a, &old), captured(family, b, &new));
        let changes = diff(&x, &y, &SettingNames::new());
        let limit = a.min(b);
        let names = SettingNames::new();
        let [before, after] = comparable_leaves(&build(&x, &names, limit), &build(&y, &names, limit));
        // What the changes account for on each side; every other leaf must be on both sides
        // alike (members that share a key may have changed places, so by shared key).
        let mut consumed = BTreeSet::new();
        let mut produced = BTreeSet::new();
        for change in &changes {
            match change.kind {
                ChangeKind::Removed => {
                    let gone: Vec<Vec<String>> = under(&before, &change.path).map(|(p, _)| p.clone()).collect();
                    prop_assert!(!gone.is_empty(), "removed nothing: {:?}", change);
                    // Unless a member that shares its key left its key to another one.
                    let shared = under(&before, &change.path).all(|(_, f)| f.shared)
                        || under(&after, &change.path).all(|(_, f)| f.shared);
                    prop_assert!(shared, "still there: {:?}", change);
                    prop_assert!(change.old.is_some());
                    prop_assert!(change.old_path.is_none());
                    consumed.extend(gone);
                }
                ChangeKind::Added => {
                    let added: Vec<Vec<String>> = under(&after, &change.path).map(|(p, _)| p.clone()).collect();
                    prop_assert!(!added.is_empty(), "added nothing: {:?}", change);
                    let shared = under(&before, &change.path).all(|(_, f)| f.shared)
                        || under(&after, &change.path).all(|(_, f)| f.shared);
                    prop_assert!(shared, "was there: {:?}", change);
                    prop_assert!(change.new.is_some());
                    prop_assert!(change.old_path.is_none());
                    produced.extend(added);
                }
                ChangeKind::Changed => {
                    let old_path = change.old_path.as_ref().unwrap_or(&change.path);
                    prop_assert_ne!(change.old_path.as_ref(), Some(&change.path));
                    let was = before.get(old_path);
                    let is = after.get(&change.path);
                    if let (Some(was), Some(is)) = (was, is) {
                        prop_assert_eq!(&was.base, &is.base, "{:?}", change);
                    }
                    let (was, is) = (was.map(|f| &f.leaf), is.map(|f| &f.leaf));
                    prop_assert_ne!(was, is, "not a change: {:?}", change);
                    prop_assert_eq!(change.old.as_ref().map(|v| v.json.clone()), was.map(Leaf::json));
                    prop_assert_eq!(change.new.as_ref().map(|v| v.json.clone()), is.map(Leaf::json));
                    if was.is_some() {
                        prop_assert!(consumed.insert(old_path.clone()), "twice: {:?}", change);
                    }
                    if is.is_some() {
                        prop_assert!(produced.insert(change.path.clone()), "twice: {:?}", change);
                    }
                }
            }
        }
        let kept = by_base(before.iter().filter(|(p, _)| !consumed.contains(*p)).map(|(_, f)| f));
        let made = by_base(after.iter().filter(|(p, _)| !produced.contains(*p)).map(|(_, f)| f));
        prop_assert_eq!(kept, made, "changes: {:?}", changes);
    }

    #[test]
    fn the_diff_is_symmetric(
        (family, old, new) in pair(),
        a in format(),
        b in format(),
    ) {
        let names = SettingNames::new();
        let forward = diff(&captured(family, a, &old), &captured(family, b, &new), &names);
        let backward = diff(&captured(family, b, &new), &captured(family, a, &old), &names);
        // Each change as (kind from old to new, its path in `old`, its path in `new`).
        let sides = |c: &Change| -> (Option<Vec<String>>, Option<Vec<String>>) {
            match c.kind {
                ChangeKind::Added => (None, Some(c.path.clone())),
                ChangeKind::Removed => (Some(c.path.clone()), None),
                ChangeKind::Changed => {
                    (Some(c.old_path.clone().unwrap_or_else(|| c.path.clone())), Some(c.path.clone()))
                }
            }
        };
        let swap = |k: ChangeKind| match k {
            ChangeKind::Added => ChangeKind::Removed,
            ChangeKind::Removed => ChangeKind::Added,
            ChangeKind::Changed => ChangeKind::Changed,
        };
        let mut f: Vec<_> = forward.iter().map(|c| (c.kind as u8, sides(c))).collect();
        let mut g: Vec<_> = backward
            .iter()
            .map(|c| {
                let (then, now) = sides(c);
                (swap(c.kind) as u8, (now, then))
            })
            .collect();
        f.sort();
        g.sort();
        prop_assert_eq!(f, g);
    }

    #[test]
    fn reordering_sets_and_renewing_noise_is_no_change(
        (family, doc) in document(),
        seed in any::<u64>(),
        a in format(),
        b in format(),
    ) {
        let mut shuffled = doc.clone();
        shuffle(&mut shuffled, "", &mut Rng(seed));
        let (x, y) = (captured(family, a, &doc), captured(family, b, &shuffled));
        let changes = diff(&x, &y, &SettingNames::new());
        prop_assert!(changes.is_empty(), "{:?}\n{}\n{}", changes, doc, shuffled);
        prop_assert_eq!(normalize(&captured(family, a, &doc)), normalize(&captured(family, a, &shuffled)));
    }

    #[test]
    fn any_json_reads_and_compares_without_panicking(
        family in family(),
        old in object_of(&["policy", "settings", "definitionValues", "assignments", "scheduledActionsForRule", "alpha"], json_value()),
        new in json_value(),
    ) {
        let names = SettingNames::from_payload(&old);
        let _ = readable(&captured(family, CaptureFormat::V2, &old), &names);
        let _ = compare(&captured(family, CaptureFormat::V1, &old), &captured(family, CaptureFormat::V2, &new), &names);
        let _ = normalize(&captured(family, CaptureFormat::V2, &new));
    }
}
