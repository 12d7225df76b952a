//! Captured policies read the way an admin reads them, and compared setting by setting.
//!
//! Pure code (no database, network or UI) shared by the server (pages, runs, export) and the
//! browser. A stored snapshot payload is built once into a normalised tree; [`readable`] turns
//! the tree into rows with labels, [`diff`] compares two trees, [`normalize`] renders one as
//! canonical JSON (for content hashes and equality).
//!
//! The payload is what a capture stores: `{"policyType", "policy", "settings" | "definitionValues",
//! "assignments"?, "scheduledActionsForRule"?}`. `assignments`, `roleScopeTagIds` and
//! `scheduledActionsForRule` may also sit inside `policy` (as `$expand` returns them).
//!
//! Normalisation (what counts as the same policy):
//! - Noise is dropped: `id`, `createdDateTime`, `lastModifiedDateTime`, the policy's `version`,
//!   `settingCount` and `isAssigned` (derived from the settings and assignments that are compared
//!   themselves), every `@…` annotation except `@odata.type`, and the settings catalog's template
//!   references and embedded `settingDefinitions` (names are not content: a name Microsoft changes
//!   must not make a policy look changed). `null`, `[]` and `{}` mean "not set".
//! - `@odata.type` stays where it says what a thing is (the policy's profile type, an OMA setting's
//!   data type) and is consumed where the shape already says it (setting instances and values,
//!   assignment targets, which become the assignment's key).
//! - Set-like arrays compare regardless of order: scope tag ids and e-mail recipient groups as
//!   multisets, assignments keyed by target (include/exclude + group, all users, all devices),
//!   OMA settings by URI, compliance actions by rule and action type, administrative template
//!   values by definition id and their presentation values by presentation id, settings catalog
//!   settings by their path of `settingDefinitionId`s. Repeated instances of a group collection
//!   and the items of simple/choice setting collections are multisets of their content, so a
//!   reordering is no change. Every other array keeps its order.
//! - Secrets (encrypted OMA values, secret setting values in either `valueState`) are never
//!   shown or compared by value: they read "secret (not captured)" and compare equal to each other.
//! - Between snapshots of different capture formats, parts the older format did not record are
//!   "not captured then" ([`FormatField`]), never "added"; a part one snapshot was captured without
//!   (assignments, scope tags) is "not compared".

mod diff;
mod labels;
mod normalize;
mod readable;

#[cfg(test)]
mod proptests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use diff::{
    compare, diff, Change, ChangeKind, ChangeValue, Comparison, NotCompared, NotComparedReason,
};
pub use labels::{choice_label, humanize, odata_type_label, setting_id_label};
pub use normalize::{is_secret, normalize, normalize_pair};
pub use readable::{readable, ReadableSection, ReadableSnapshot, Row, RowValue};

pub use super::policy_type::PolicyType;

/// How a secret reads wherever a value would be shown.
pub const SECRET_TEXT: &str = "secret (not captured)";

/// The version of what a capture records; stored with each snapshot. Format 1 is the first
/// capture (policy, settings catalog settings, administrative template values with their
/// definition, assignments and scope tags when asked); format 2 adds the [`FormatField`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CaptureFormat(u16);

impl CaptureFormat {
    /// The first capture format.
    pub const V1: CaptureFormat = CaptureFormat(1);
    /// Adds compliance actions, presentation values and setting definitions.
    pub const V2: CaptureFormat = CaptureFormat(2);
    /// What captures write today.
    pub const LATEST: CaptureFormat = Self::V2;

    /// A known format; `None` for 0 or a format newer than this code knows.
    pub fn new(version: u16) -> Option<Self> {
        (1..=Self::LATEST.0)
            .contains(&version)
            .then_some(CaptureFormat(version))
    }

    /// The stored number.
    pub fn get(self) -> u16 {
        self.0
    }

    /// The parts beyond format 1 that this format records.
    pub fn fields(self) -> impl Iterator<Item = FormatField> {
        FormatField::ALL
            .into_iter()
            .filter(move |f| f.since() <= self)
    }
}

/// A part of a snapshot that not every capture format records: the explicit list of what each
/// format added. Comparing across formats leaves these out of the newer side ("not captured then").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FormatField {
    /// Compliance `scheduledActionsForRule` with its `scheduledActionConfigurations`.
    ComplianceActions,
    /// Administrative template `definitionValues[].presentationValues` with their `presentation`.
    PresentationValues,
    /// Settings catalog setting definitions (display names), stored once per id outside the
    /// policy's content: shown as names, never compared.
    SettingDefinitions,
}

impl FormatField {
    /// Every field added after format 1.
    pub const ALL: [FormatField; 3] = [
        Self::ComplianceActions,
        Self::PresentationValues,
        Self::SettingDefinitions,
    ];

    /// The first format that records it.
    pub fn since(self) -> CaptureFormat {
        match self {
            Self::ComplianceActions | Self::PresentationValues | Self::SettingDefinitions => {
                CaptureFormat::V2
            }
        }
    }

    /// The family it belongs to.
    pub fn family(self) -> PolicyType {
        match self {
            Self::ComplianceActions => PolicyType::Compliance,
            Self::PresentationValues => PolicyType::AdministrativeTemplate,
            Self::SettingDefinitions => PolicyType::SettingsCatalog,
        }
    }

    /// What the UI calls it.
    pub fn label(self) -> &'static str {
        match self {
            Self::ComplianceActions => "Actions for noncompliance",
            Self::PresentationValues => "Presentation values",
            Self::SettingDefinitions => "Setting names",
        }
    }
}

/// One stored snapshot, as the functions of this module read it.
#[derive(Debug, Clone, Copy)]
pub struct CapturedPolicy<'a> {
    pub family: PolicyType,
    pub format: CaptureFormat,
    /// The stored payload (see the module documentation).
    pub payload: &'a Value,
}

impl<'a> CapturedPolicy<'a> {
    /// A snapshot of `family` captured in `format`.
    pub fn new(family: PolicyType, format: CaptureFormat, payload: &'a Value) -> Self {
        Self {
            family,
            format,
            payload,
        }
    }
}

/// Display names of settings catalog setting definitions and of their choice options, by id.
/// Empty is fine: ids then read in a readable form of themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingNames {
    names: BTreeMap<String, String>,
}

impl SettingNames {
    /// No names.
    pub fn new() -> Self {
        Self::default()
    }

    /// Names one id (a setting definition id or a choice option's `itemId`).
    pub fn insert(&mut self, id: impl Into<String>, name: impl Into<String>) {
        self.names.insert(id.into(), name.into());
    }

    /// The name of an id, if known.
    pub fn get(&self, id: &str) -> Option<&str> {
        self.names.get(id).map(String::as_str)
    }

    /// Adds every name of `other` (its names win).
    pub fn extend(&mut self, other: SettingNames) {
        self.names.extend(other.names);
    }

    /// How many ids are named.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether no id is named.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Adds Graph `deviceManagementConfigurationSettingDefinition`s: each `id` → `displayName`
    /// and each option's `itemId` → `displayName`. Entries without them are skipped.
    pub fn add_definitions<'v>(&mut self, definitions: impl IntoIterator<Item = &'v Value>) {
        for definition in definitions {
            let named = |v: &Value, key: &str| -> Option<(String, String)> {
                let id = v.get(key)?.as_str()?;
                let name = v.get("displayName")?.as_str()?;
                (!id.is_empty() && !name.is_empty()).then(|| (id.to_owned(), name.to_owned()))
            };
            if let Some((id, name)) = named(definition, "id") {
                self.names.insert(id, name);
            }
            let options = definition.get("options").and_then(Value::as_array);
            for option in options.into_iter().flatten() {
                if let Some((id, name)) = named(option, "itemId") {
                    self.names.insert(id, name);
                }
            }
        }
    }

    /// The names of the definitions a payload carries inline: `settingDefinitions` of each
    /// setting (as `$expand=settingDefinitions` returns them) or at the top level.
    pub fn from_payload(payload: &Value) -> Self {
        let mut names = Self::new();
        let top = payload.get("settingDefinitions").and_then(Value::as_array);
        names.add_definitions(top.into_iter().flatten());
        let settings = payload
            .get("settings")
            .or_else(|| payload.get("policy").and_then(|p| p.get("settings")))
            .and_then(Value::as_array);
        for setting in settings.into_iter().flatten() {
            let inline = setting.get("settingDefinitions").and_then(Value::as_array);
            names.add_definitions(inline.into_iter().flatten());
        }
        names
    }
}

/// A part of a snapshot as the viewer and the diff group it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SectionKind {
    /// The policy object's own properties (all of them for device configuration and compliance).
    Policy,
    /// Settings catalog settings or administrative template values.
    Settings,
    /// Compliance actions for noncompliance.
    ComplianceActions,
    Assignments,
    ScopeTags,
    /// Any other top-level part of a payload, compared as plain JSON.
    Other,
}

/// Whether a part was captured in a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Coverage {
    Captured,
    /// Captured without it (a capture option: assignments, scope tags).
    NotCaptured,
    /// The snapshot's capture format did not record it yet.
    NotCapturedThen,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn families_use_the_policy_type_spellings() {
        for family in PolicyType::ALL {
            assert_eq!(PolicyType::parse(family.as_str()), Some(family));
            assert_eq!(
                serde_json::to_value(family).expect("serializes"),
                json!(family.as_str())
            );
        }
        assert_eq!(
            PolicyType::of_payload(&json!({"policyType": "administrative_template"})),
            Some(PolicyType::AdministrativeTemplate)
        );
        assert_eq!(PolicyType::of_payload(&json!({"policyType": 3})), None);
    }

    #[test]
    fn each_format_lists_what_it_records() {
        assert_eq!(CaptureFormat::new(0), None);
        assert_eq!(CaptureFormat::new(1), Some(CaptureFormat::V1));
        assert_eq!(CaptureFormat::new(CaptureFormat::LATEST.get() + 1), None);
        assert_eq!(CaptureFormat::V1.fields().count(), 0);
        assert_eq!(
            CaptureFormat::V2.fields().collect::<Vec<_>>(),
            FormatField::ALL
        );
        for field in FormatField::ALL {
            assert!(field.since() > CaptureFormat::V1);
        }
    }

    #[test]
    fn names_come_from_setting_definitions_and_their_options() {
        let payload = json!({"settings": [{"id": "0",
            "settingInstance": {"settingDefinitionId": "a"},
            "settingDefinitions": [{"id": "a", "displayName": "Setting A",
                "options": [{"itemId": "a_1", "displayName": "On"}, {"itemId": "a_0"}]}]}],
            "settingDefinitions": [{"id": "b", "displayName": "Setting B"}, {"displayName": "no id"}]});
        let names = SettingNames::from_payload(&payload);
        assert_eq!(names.get("a"), Some("Setting A"));
        assert_eq!(names.get("a_1"), Some("On"));
        assert_eq!(names.get("a_0"), None);
        assert_eq!(names.get("b"), Some("Setting B"));
        assert_eq!(names.len(), 3);
    }
}
