//! Policy snapshots: the captured JSON in a canonical form, its capture format and options, and
//! a sha256 of its normalised content, so an unchanged policy hashes the same (whatever the key
//! order, ids, timestamps or `version` counter Graph sends) and its existing snapshot is reused.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::client::CaptureOptions;
use crate::domain::snapshot::{normalize, CaptureFormat, CapturedPolicy, PolicyType};

/// One captured policy, ready to store as a `policy_snapshots` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub policy_type: PolicyType,
    pub graph_id: String,
    pub display_name: String,
    /// What the capture recorded ([`CaptureFormat::LATEST`] for a capture made now).
    pub format: CaptureFormat,
    /// What the capture included besides the policy.
    pub options: CaptureOptions,
    /// The canonical JSON text of the payload, as stored.
    pub canonical_json: String,
    /// Lower-case hex sha256 of the payload's normalised content ([`content_hash`]).
    pub content_hash: String,
    /// The settings catalog setting definitions the settings use, each once, sorted by id:
    /// stored once per id outside the policy's content, so a name Microsoft changes never
    /// changes the hash.
    pub setting_definitions: Vec<SettingDefinition>,
    /// When the read that returned it was sent (Unix ms): for a capture from Graph, the send of
    /// the policy's own GET by the attempt Graph answered
    /// ([`GraphClient::capture_policy`](super::GraphClient::capture_policy)). `None` for a
    /// snapshot built otherwise; its reader then counts from when it asked.
    pub read_at: Option<i64>,
}

/// A settings catalog setting definition as Graph returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingDefinition {
    pub id: String,
    pub display_name: String,
    /// The whole definition (options included) as canonical JSON.
    pub json: String,
}

impl Snapshot {
    /// Canonicalizes and hashes a payload captured now (format [`CaptureFormat::LATEST`]).
    pub fn new(
        policy_type: PolicyType,
        graph_id: String,
        display_name: String,
        payload: &Value,
        options: CaptureOptions,
    ) -> Self {
        let format = CaptureFormat::LATEST;
        Self {
            policy_type,
            graph_id,
            display_name,
            format,
            options,
            canonical_json: canonical_json(payload),
            content_hash: content_hash(policy_type, format, payload),
            setting_definitions: Vec::new(),
            read_at: None,
        }
    }

    /// The same snapshot with the setting definitions its settings use.
    pub fn with_definitions(mut self, definitions: Vec<SettingDefinition>) -> Self {
        self.setting_definitions = definitions;
        self
    }

    /// The same snapshot, read by a request sent at `sent_at` (Unix ms).
    pub fn with_read_at(mut self, sent_at: i64) -> Self {
        self.read_at = Some(sent_at);
        self
    }
}

/// The deepest payload a capture stores, in nested arrays and objects (a scalar is 0 deep, `{}`
/// is 1). A stored payload must read back: serde_json refuses JSON nested 128 deep, and the
/// capture itself wraps what Graph sent a level or two deeper (the policy, a definition value's
/// presentation values); what the viewer, the diff and a restore build from a payload nests
/// deeper again. Intune's deepest policies (settings catalog groups in groups) stay far below.
pub const MAX_PAYLOAD_DEPTH: usize = 64;

/// How deeply `value` nests arrays and objects: 0 for a scalar, 1 for `[]` or `{"a": 1}`.
pub fn nesting_depth(value: &Value) -> usize {
    // A stack instead of recursion: the depth is what is being checked.
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(fields) => Box::new(fields.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// The hash rule: sha256 of the canonical JSON of the payload's normalised content (noise
/// dropped, sets in a canonical order, secrets as markers), so two captures of an unchanged
/// policy hash the same.
pub fn content_hash(policy_type: PolicyType, format: CaptureFormat, payload: &Value) -> String {
    let normal = match PolicyType::parse(policy_type.as_str()) {
        Some(family) => normalize(&CapturedPolicy::new(family, format, payload)),
        None => payload.clone(),
    };
    sha256_hex(canonical_json(&normal).as_bytes())
}

/// JSON with object keys sorted by their UTF-8 bytes and no insignificant whitespace; response
/// metadata that changes between identical reads (`@odata.context`) is left out.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map
                .iter()
                .filter(|(key, _)| key.as_str() != "@odata.context")
                .collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_metadata_do_not_change_the_hash() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": null, "c": "x"}], "x": true}, "@odata.context": "1"});
        let b = json!({"a": {"x": true, "y": [1, {"c": "x", "d": null}]}, "b": 1, "@odata.context": "2"});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":true,"y":[1,{"c":"x","d":null}]},"b":1}"#
        );
        let sa = Snapshot::new(PolicyType::Compliance, "1".into(), "n".into(), &a, PLAIN);
        let sb = Snapshot::new(PolicyType::Compliance, "1".into(), "n".into(), &b, PLAIN);
        assert_eq!(sa.content_hash, sb.content_hash);
        assert_eq!(sa.content_hash.len(), 64);
    }

    const PLAIN: CaptureOptions = CaptureOptions {
        include_assignments: false,
        include_scope_tags: false,
    };

    #[test]
    fn a_setting_change_changes_the_hash_and_noise_does_not() {
        let policy = |length: u32, version: u32, id: &str| {
            json!({"policyType": "device_configuration", "policy": {
                "id": id, "version": version, "lastModifiedDateTime": format!("2024-0{version}-01T00:00:00Z"),
                "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
                "displayName": "Baseline", "passwordMinimumLength": length}})
        };
        let hash =
            |p: &Value| content_hash(PolicyType::DeviceConfiguration, CaptureFormat::LATEST, p);
        assert_eq!(hash(&policy(8, 1, "a")), hash(&policy(8, 2, "b")));
        assert_ne!(hash(&policy(8, 1, "a")), hash(&policy(9, 1, "a")));
        let ordered =
            |tags: Value| json!({"policyType": "compliance", "policy": {"roleScopeTagIds": tags}});
        assert_eq!(
            hash(&ordered(json!(["0", "1"]))),
            hash(&ordered(json!(["1", "0"])))
        );
    }

    /// `inner` wrapped in `levels` arrays.
    fn nested(levels: usize, inner: Value) -> Value {
        (0..levels).fold(inner, |value, _| Value::Array(vec![value]))
    }

    #[test]
    fn depth_counts_arrays_and_objects() {
        assert_eq!(nesting_depth(&json!(1)), 0);
        assert_eq!(nesting_depth(&json!([])), 1);
        assert_eq!(nesting_depth(&json!({"a": [1, {"b": []}], "c": 2})), 4);
        assert_eq!(nesting_depth(&nested(300, json!({}))), 301);
    }

    #[test]
    fn a_policy_graph_can_send_may_be_too_deep_to_read_back_once_wrapped() {
        // What serde_json reads and refuses: the reason a capture limits the depth it stores.
        let deepest_read: Value =
            serde_json::from_str(&canonical_json(&nested(127, json!(1)))).expect("127 deep parses");
        let wrapped = json!({"policyType": "compliance", "policy": deepest_read});
        assert!(serde_json::from_str::<Value>(&canonical_json(&wrapped)).is_err());
        assert!(nesting_depth(&wrapped) > MAX_PAYLOAD_DEPTH);
    }

    /// Any JSON value, now and then nested deeper than serde_json reads (also used by
    /// `graph::jwt`'s tests for the claims of a token).
    pub(crate) fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        let tree = leaf.prop_recursive(6, 48, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..4)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        });
        // Now and then far deeper than the bound, on both sides of it and of serde_json's.
        (tree, prop_oneof![Just(0usize), 0usize..200])
            .prop_map(|(tree, levels)| nested(levels, tree))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever a capture may store (within the bound) reads back as it was.
        #[test]
        fn a_storable_payload_reads_back(value in any_json()) {
            if nesting_depth(&value) <= MAX_PAYLOAD_DEPTH {
                let text = canonical_json(&value);
                let read: Value = serde_json::from_str(&text).expect("a stored payload parses");
                proptest::prop_assert_eq!(canonical_json(&read), text);
                proptest::prop_assert_eq!(nesting_depth(&read), nesting_depth(&value));
            }
        }
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
