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
        }
    }

    /// The same snapshot with the setting definitions its settings use.
    pub fn with_definitions(mut self, definitions: Vec<SettingDefinition>) -> Self {
        self.setting_definitions = definitions;
        self
    }
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
mod tests {
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

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
