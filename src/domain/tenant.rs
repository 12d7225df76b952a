//! Tenants as the browser sees them, and the external (Entra ID) tenant id that names them in URLs.

use serde::{Deserialize, Serialize};

use super::AppError;

/// A Microsoft Entra tenant id: a GUID, stored and compared in lower case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TenantExternalId(String);

impl TenantExternalId {
    /// Accepts `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (hex digits, any case).
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let raw = raw.trim();
        let groups: Vec<&str> = raw.split('-').collect();
        let lengths_ok = groups.len() == 5 && groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12]);
        if lengths_ok
            && groups
                .iter()
                .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
        {
            Ok(Self(raw.to_ascii_lowercase()))
        } else {
            Err(AppError::NotFound("No tenant has this id.".into()))
        }
    }

    /// The canonical lower-case text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TenantExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tenant in lists and the page header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantSummary {
    /// The external GUID, used in URLs.
    pub external_id: String,
    pub display_name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_guids_case_insensitively() {
        let id = TenantExternalId::parse(" 6F1C2A3B-0000-4000-8000-00000000C0DE ").unwrap();
        assert_eq!(id.as_str(), "6f1c2a3b-0000-4000-8000-00000000c0de");
    }

    #[test]
    fn rejects_anything_else() {
        for bad in [
            "",
            "contoso",
            "6f1c2a3b00004000800000000000c0de",
            "6f1c2a3b-0000-4000-8000-00000000c0dg",
        ] {
            assert!(
                TenantExternalId::parse(bad).is_err(),
                "{bad:?} was accepted"
            );
        }
    }
}
