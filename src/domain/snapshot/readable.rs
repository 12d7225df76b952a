//! The readable view of a snapshot: sections of rows with labels and display values, the way an
//! admin reads a policy rather than its JSON.
//!
//! Cost: one pass to build the normalised tree and one pass over it, so rendering is linear in
//! the size of the snapshot (plus a name lookup per setting and each row's path string, which is
//! as long as the row is deep). A settings catalog policy with thousands of settings renders in
//! one walk; nothing is sorted or serialised.

use serde::{Deserialize, Serialize};

use super::normalize::{build, Leaf, Node};
use super::{
    CaptureFormat, CapturedPolicy, Coverage, FormatField, PolicyType, SectionKind, SettingNames,
    SECRET_TEXT,
};

/// What a row shows in its value column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RowValue {
    /// A heading: the rows below it (one level deeper) are its content.
    Group,
    Text(String),
    /// A secret: shown as [`SECRET_TEXT`], never its value.
    Secret,
}

impl RowValue {
    /// The text of the value column ("" for a heading).
    pub fn text(&self) -> &str {
        match self {
            Self::Group => "",
            Self::Text(text) => text,
            Self::Secret => SECRET_TEXT,
        }
    }
}

/// One row of a section. Rows come in reading order; a row's sub-rows follow it with
/// `depth + 1` (a nested object, a list's items, a setting's children).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    /// Nesting level, 0 for the section's top rows.
    pub depth: u16,
    /// Machine path (`/settings/<definition id>/<child id>`), the same as [`super::Change::pointer`]
    /// for a change at this row, so a diff can point at the row.
    pub path: String,
    pub label: String,
    /// Secondary text: a setting's definition id, a template setting's category, an OMA URI.
    pub detail: Option<String>,
    pub value: RowValue,
}

/// One part of the snapshot (basics, settings, assignments, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadableSection {
    pub kind: SectionKind,
    /// The payload key (`policy`, `settings`, `assignments`, …), the first segment of paths.
    pub key: String,
    pub title: String,
    /// Whether the snapshot holds this part at all; an empty captured part has no rows.
    pub coverage: Coverage,
    pub rows: Vec<Row>,
}

/// A snapshot as an admin reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadableSnapshot {
    pub family: PolicyType,
    pub format: CaptureFormat,
    pub sections: Vec<ReadableSection>,
    /// Parts the snapshot's capture format did not record ("Presentation values: not captured
    /// by this version's capture format").
    pub notes: Vec<String>,
}

impl ReadableSnapshot {
    /// Every row of every section, for counting or searching.
    pub fn rows(&self) -> impl Iterator<Item = &Row> {
        self.sections.iter().flat_map(|s| s.rows.iter())
    }
}

/// The readable view of a snapshot. `names` names settings catalog definitions and their
/// choices (empty is fine: ids then read in a readable form of themselves).
pub fn readable(policy: &CapturedPolicy<'_>, names: &SettingNames) -> ReadableSnapshot {
    let tree = build(policy, names, policy.format);
    let sections = tree
        .sections
        .iter()
        .map(|section| {
            let mut rows = Vec::new();
            if let Some(node) = &section.node {
                let mut path = String::from("/");
                push_segment(&mut path, &section.key);
                // A part that is a plain value (an unknown top-level scalar) is one row.
                let depth = if node.own.is_some() {
                    rows.push(Row {
                        depth: 0,
                        path: path.clone(),
                        label: section.title.clone(),
                        detail: None,
                        value: row_value(node),
                    });
                    1
                } else {
                    0
                };
                rows_of(node, depth, &mut path, &mut rows);
            }
            ReadableSection {
                kind: section.kind,
                key: section.key.clone(),
                title: section.title.clone(),
                coverage: section.coverage,
                rows,
            }
        })
        .collect();
    let notes = FormatField::ALL
        .into_iter()
        .filter(|f| f.family() == policy.family && f.since() > policy.format)
        // Names captured elsewhere (the definitions store) make up for a missing format field.
        .filter(|f| *f != FormatField::SettingDefinitions || names.is_empty())
        .map(|f| {
            format!(
                "{}: not captured by this version's capture format (format {}).",
                f.label(),
                policy.format.get()
            )
        })
        .collect();
    ReadableSnapshot {
        family: policy.family,
        format: policy.format,
        sections,
        notes,
    }
}

/// Appends `/segment` with JSON pointer escaping (`~` → `~0`, `/` → `~1`).
pub(crate) fn push_segment(path: &mut String, segment: &str) {
    if !path.ends_with('/') {
        path.push('/');
    }
    for c in segment.chars() {
        match c {
            '~' => path.push_str("~0"),
            '/' => path.push_str("~1"),
            c => path.push(c),
        }
    }
}

/// What a node's own value shows.
pub(crate) fn row_value(node: &Node) -> RowValue {
    match &node.own {
        None => RowValue::Group,
        Some(own) => match own.leaf {
            Leaf::Present => RowValue::Group,
            Leaf::Secret => RowValue::Secret,
            Leaf::Bool(_) | Leaf::Number(_) | Leaf::Text(_) => RowValue::Text(own.text.clone()),
        },
    }
}

fn rows_of(node: &Node, depth: u16, path: &mut String, rows: &mut Vec<Row>) {
    for entry in &node.entries {
        if entry.hidden {
            continue;
        }
        let len = path.len();
        push_segment(path, &entry.key);
        if entry.inline {
            rows_of(&entry.node, depth, path, rows);
        } else {
            rows.push(Row {
                depth,
                path: path.clone(),
                label: entry.label.clone(),
                detail: entry.detail.clone(),
                value: row_value(&entry.node),
            });
            rows_of(&entry.node, depth.saturating_add(1), path, rows);
        }
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn view(family: PolicyType, payload: &Value, names: &SettingNames) -> ReadableSnapshot {
        readable(
            &CapturedPolicy::new(family, CaptureFormat::LATEST, payload),
            names,
        )
    }

    /// `(depth, label, value)` of a section's rows.
    fn lines(view: &ReadableSnapshot, key: &str) -> Vec<(u16, String, String)> {
        view.sections
            .iter()
            .find(|s| s.key == key)
            .expect("section exists")
            .rows
            .iter()
            .map(|r| (r.depth, r.label.clone(), r.value.text().to_owned()))
            .collect()
    }

    fn line(depth: u16, label: &str, value: &str) -> (u16, String, String) {
        (depth, label.to_owned(), value.to_owned())
    }

    #[test]
    fn device_configuration_reads_one_row_per_property() {
        let payload = json!({"policyType": "device_configuration", "policy": {
            "@odata.type": "#microsoft.graph.windows10GeneralConfiguration", "id": "p1",
            "displayName": "Baseline", "version": 4, "lastModifiedDateTime": "2024-01-01T00:00:00Z",
            "passwordRequired": true, "passwordMinimumLength": 8, "passwordBlockSimple": false,
            "edgeSearchEngine": {"@odata.type": "#microsoft.graph.edgeSearchEngine", "edgeSearchEngineType": "bing"},
            "defenderFileExtensionsToExclude": ["exe", "dll"],
            "omaSettings": [{"@odata.type": "#microsoft.graph.omaSettingString", "displayName": "Secret thing",
                "omaUri": "./Device/Vendor/MSFT/X", "isEncrypted": true, "value": "ZW5jcnlwdGVk",
                "secretReferenceValueId": "ref"}],
            "roleScopeTagIds": ["0"]
        }, "assignments": []});
        let view = view(
            PolicyType::DeviceConfiguration,
            &payload,
            &SettingNames::new(),
        );
        assert_eq!(
            lines(&view, "policy"),
            [
                line(0, "Defender file extensions to exclude", ""),
                line(1, "Item 1", "exe"),
                line(1, "Item 2", "dll"),
                line(0, "Display name", "Baseline"),
                line(0, "Edge search engine", ""),
                line(1, "Edge search engine type", "bing"),
                line(0, "OMA settings", ""),
                line(1, "Secret thing", SECRET_TEXT),
                line(2, "Display name", "Secret thing"),
                line(2, "Is encrypted", "Yes"),
                line(0, "Password block simple", "No"),
                line(0, "Password minimum length", "8"),
                line(0, "Password required", "Yes"),
            ]
        );
        let oma = view
            .rows()
            .find(|r| r.label == "Secret thing")
            .expect("oma row");
        assert_eq!(oma.path, "/policy/omaSettings/.~1Device~1Vendor~1MSFT~1X");
        assert_eq!(oma.detail.as_deref(), Some("./Device/Vendor/MSFT/X"));
        assert_eq!(oma.value, RowValue::Secret);
        let text = serde_json::to_string(&view).expect("serializes");
        assert!(!text.contains("ZW5jcnlwdGVk") && !text.contains("\"ref\""));
        let assignments = view
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::Assignments)
            .expect("assignments");
        assert_eq!(assignments.coverage, Coverage::Captured);
        assert!(assignments.rows.is_empty());
        assert_eq!(
            lines(&view, "roleScopeTagIds"),
            [line(0, "Scope tag 1", "0")]
        );
    }

    #[test]
    fn settings_catalog_reads_as_a_setting_tree_with_names() {
        let payload = json!({"policyType": "settings_catalog",
        "policy": {"name": "Defender", "platforms": "windows10", "settingCount": 2},
        "settings": [
            {"id": "0", "settingInstance": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                "settingDefinitionId": "device_vendor_msft_policy_config_defender_allowarchivescanning",
                "choiceSettingValue": {"value": "device_vendor_msft_policy_config_defender_allowarchivescanning_1",
                    "children": [{
                        "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
                        "settingDefinitionId": "device_vendor_msft_policy_config_defender_allowarchivescanning_depth",
                        "simpleSettingValue": {"@odata.type": "#microsoft.graph.deviceManagementConfigurationIntegerSettingValue", "value": 3}
                    }]}}},
            {"id": "1", "settingInstance": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
                "settingDefinitionId": "vendor_msft_firewall_rules",
                "groupSettingCollectionValue": [{"children": [{
                    "settingDefinitionId": "vendor_msft_firewall_rules_name",
                    "simpleSettingValue": {"value": "Block telnet"}}, {
                    "settingDefinitionId": "vendor_msft_firewall_rules_key",
                    "simpleSettingValue": {"@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue",
                        "value": "c2VjcmV0", "valueState": "encryptedValueToken"}}]}]}},
            {"id": "2", "settingInstance": {
                "settingDefinitionId": "vendor_msft_urls",
                "simpleSettingCollectionValue": [{"value": "https://a"}, {"value": "https://b"}]}}
        ]});
        let mut names = SettingNames::new();
        names.add_definitions(&[json!({
            "id": "device_vendor_msft_policy_config_defender_allowarchivescanning",
            "displayName": "Allow Archive Scanning",
            "options": [{"itemId": "device_vendor_msft_policy_config_defender_allowarchivescanning_1", "displayName": "Allowed"}]
        })]);
        let view = view(PolicyType::SettingsCatalog, &payload, &names);
        assert_eq!(
            lines(&view, "policy"),
            [
                line(0, "Name", "Defender"),
                line(0, "Platforms", "windows10")
            ]
        );
        assert_eq!(
            lines(&view, "settings"),
            [
                line(0, "Allow Archive Scanning", "Allowed"),
                line(1, "Depth", "3"),
                line(0, "Firewall rules", ""),
                line(1, "Instance 1", ""),
                line(2, "Name", "Block telnet"),
                line(2, "Key", SECRET_TEXT),
                line(0, "URLs", ""),
                line(1, "Value 1", "https://a"),
                line(1, "Value 2", "https://b"),
            ]
        );
        let first = &view.sections[1].rows[0];
        assert_eq!(
            first.detail.as_deref(),
            Some("device_vendor_msft_policy_config_defender_allowarchivescanning")
        );
        assert_eq!(
            first.path,
            "/settings/device_vendor_msft_policy_config_defender_allowarchivescanning"
        );
        assert!(!serde_json::to_string(&view)
            .expect("json")
            .contains("c2VjcmV0"));
        assert!(view.notes.is_empty());
    }

    #[test]
    fn administrative_templates_read_definition_state_and_presentation_values() {
        let payload = json!({"policyType": "administrative_template",
        "policy": {"displayName": "Edge", "@odata.type": "#microsoft.graph.groupPolicyConfiguration"},
        "definitionValues": [{"id": "v1", "enabled": true, "configurationType": "policy",
            "definition": {"id": "d1", "displayName": "Configure the home page URL",
                "classType": "user", "categoryPath": "\\Microsoft Edge\\Startup"},
            "presentationValues": [{"@odata.type": "#microsoft.graph.groupPolicyPresentationValueText",
                "id": "pv1", "value": "https://intranet",
                "presentation": {"id": "p1", "label": "Home page URL:"}}]},
            {"id": "v2", "enabled": false, "definition": {"id": "d2", "displayName": "Allow InPrivate"}}
        ], "assignments": [
            {"target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1",
                "deviceAndAppManagementAssignmentFilterId": "f1",
                "deviceAndAppManagementAssignmentFilterType": "include"}},
            {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g2"}},
            {"target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"}}
        ]});
        let view = view(
            PolicyType::AdministrativeTemplate,
            &payload,
            &SettingNames::new(),
        );
        assert_eq!(
            lines(&view, "definitionValues"),
            [
                line(0, "Configure the home page URL", "Enabled"),
                line(1, "Configuration type", "policy"),
                line(1, "Home page URL", "https://intranet"),
                line(0, "Allow InPrivate", "Disabled"),
            ]
        );
        let first = &view.sections[1].rows[0];
        assert_eq!(
            first.detail.as_deref(),
            Some("\\Microsoft Edge\\Startup (User)")
        );
        assert_eq!(
            lines(&view, "assignments"),
            [
                line(0, "Included group", "g1"),
                line(1, "Assignment filter", "f1"),
                line(1, "Filter mode", "Include"),
                line(0, "Excluded group", "g2"),
                line(0, "All users", ""),
            ]
        );
        let scope = view
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::ScopeTags)
            .expect("scope tags");
        assert_eq!(scope.coverage, Coverage::NotCaptured);
    }

    #[test]
    fn older_formats_say_what_they_did_not_capture() {
        let payload = json!({"policy": {"displayName": "C"}});
        let view = readable(
            &CapturedPolicy::new(PolicyType::Compliance, CaptureFormat::V1, &payload),
            &SettingNames::new(),
        );
        let actions = view
            .sections
            .iter()
            .find(|s| s.kind == SectionKind::ComplianceActions)
            .expect("actions section");
        assert_eq!(actions.coverage, Coverage::NotCapturedThen);
        assert_eq!(view.notes.len(), 1);
        assert!(view.notes[0].starts_with("Actions for noncompliance"));
    }
}
