//! Policy snapshots: the captured JSON in a canonical form and its sha256, so an unchanged
//! policy hashes the same and its existing snapshot is reused.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::registry::PolicyType;

/// One captured policy, ready to store as a `policy_snapshots` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub policy_type: PolicyType,
    pub graph_id: String,
    pub display_name: String,
    /// The canonical JSON text that is stored and hashed.
    pub canonical_json: String,
    /// Lower-case hex sha256 of `canonical_json`.
    pub content_hash: String,
}

impl Snapshot {
    /// Canonicalizes and hashes an assembled payload.
    pub fn new(
        policy_type: PolicyType,
        graph_id: String,
        display_name: String,
        payload: &Value,
    ) -> Self {
        let canonical_json = canonical_json(payload);
        let content_hash = sha256_hex(canonical_json.as_bytes());
        Self {
            policy_type,
            graph_id,
            display_name,
            canonical_json,
            content_hash,
        }
    }
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
        let sa = Snapshot::new(PolicyType::Compliance, "1".into(), "n".into(), &a);
        let sb = Snapshot::new(PolicyType::Compliance, "1".into(), "n".into(), &b);
        assert_eq!(sa.content_hash, sb.content_hash);
        assert_eq!(sa.content_hash.len(), 64);
    }

    #[test]
    fn any_change_changes_the_hash() {
        let a = Snapshot::new(
            PolicyType::Compliance,
            "1".into(),
            "n".into(),
            &json!({"a": [1, 2]}),
        );
        let b = Snapshot::new(
            PolicyType::Compliance,
            "1".into(),
            "n".into(),
            &json!({"a": [2, 1]}),
        );
        assert_ne!(a.content_hash, b.content_hash);
    }

    #[test]
    fn sha256_matches_a_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
