//! The Intune policy types TenantAtlas reads and restores: one enum for the inventory, the
//! snapshot viewer and diff, the Graph registry and the restore writer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::parse_filter;
use super::spelled::spelled_enum;
use super::AppError;

spelled_enum! {
    /// A supported policy type; stored (and sent to the browser) as its `policies.policy_type`
    /// spelling. The Graph endpoints of each live in the server's registry.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum PolicyType {
        SettingsCatalog => ("settings_catalog", "Settings catalog"),
        DeviceConfiguration => ("device_configuration", "Device configuration"),
        Compliance => ("compliance", "Compliance"),
        AdministrativeTemplate => ("administrative_template", "Administrative template"),
    }
}

impl PolicyType {
    /// The type a stored payload names in its `policyType`.
    pub fn of_payload(payload: &Value) -> Option<Self> {
        payload
            .get("policyType")
            .and_then(Value::as_str)
            .and_then(Self::parse)
    }

    /// A type filter as it arrives in `field` (a form, the URL): empty is any type; a spelling
    /// that is no type is refused, naming the ones there are, instead of matching nothing.
    pub fn parse_filter(field: &str, raw: &str) -> Result<Option<Self>, AppError> {
        let known: Vec<&str> = Self::ALL.iter().map(|t| t.as_str()).collect();
        let message = format!("Unknown policy type; the types are {}.", known.join(", "));
        parse_filter(field, raw, Self::parse, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_serde_spelling_is_the_stored_spelling() {
        for policy_type in PolicyType::ALL {
            assert_eq!(
                serde_json::to_value(policy_type).unwrap(),
                Value::from(policy_type.as_str())
            );
        }
    }

    #[test]
    fn a_payload_names_its_type() {
        let payload = serde_json::json!({ "policyType": "compliance", "id": "x" });
        assert_eq!(
            PolicyType::of_payload(&payload),
            Some(PolicyType::Compliance)
        );
        assert_eq!(PolicyType::of_payload(&serde_json::json!({})), None);
    }
}
