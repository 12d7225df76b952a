//! The entity types the simulator serves, as Graph's metadata declares them: each type's
//! properties and navigation properties. Graph refuses a `$select` or `$expand` that names
//! anything else with 400 `BadRequest` "Could not find a property named '…' on type '…'.",
//! and so does the simulator (`check_query`).
//!
//! The lists are the documented properties of each base type (beta), and apart from them
//! (`derived`) the properties of the derived types the simulator generates (`omaSettings` of a
//! custom profile, for instance): Graph wants a type cast to read those on a base-type
//! collection, the simulator lets a read by; a write body of the base type may not hold them.
//! A unit test checks that every property a generated shape carries is listed here.

use super::resources::Resource;
use super::tenant::Kind;

/// One entity type of Graph's metadata.
#[derive(Debug)]
pub struct EntityType {
    /// Its name under `microsoft.graph.`.
    pub name: &'static str,
    pub properties: &'static [&'static str],
    /// Properties of the derived types the simulator generates: readable here without a type
    /// cast, but not the base type's, so not writable in a body of the base type.
    pub derived: &'static [&'static str],
    /// Navigation properties, each with its target type when the simulator serves it (a
    /// target it does not serve takes any nested options).
    pub navigation: &'static [(&'static str, Option<&'static EntityType>)],
}

impl EntityType {
    fn property(&self, name: &str) -> bool {
        self.properties
            .iter()
            .chain(self.derived)
            .any(|p| p.eq_ignore_ascii_case(name))
    }

    fn navigation(&self, name: &str) -> Option<Option<&'static EntityType>> {
        self.navigation
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, target)| *target)
    }

    fn not_found(&self, name: &str) -> String {
        format!(
            "Could not find a property named '{name}' on type 'microsoft.graph.{}'.",
            self.name
        )
    }

    /// Whether `$select` and `$expand` (with their nested options) name only properties of
    /// this type: `Err` is Graph's message for the first that is not.
    pub fn check_query(&self, select: Option<&str>, expand: Option<&str>) -> Result<(), String> {
        if let Some(select) = select {
            for item in split_top(select, ',') {
                // A type cast (`microsoft.graph.windows10CustomConfiguration/omaSettings`)
                // names a derived type's property: the name after the cast is checked.
                let name = item.rsplit('/').next().unwrap_or(item);
                if name != "*" && !self.property(name) && self.navigation(name).is_none() {
                    return Err(self.not_found(name));
                }
            }
        }
        if let Some(expand) = expand {
            for item in split_top(expand, ',') {
                let (name, inner) = match item.split_once('(') {
                    Some((name, inner)) => (name.trim(), inner.trim().strip_suffix(')')),
                    None => (item, None),
                };
                let name = name.strip_suffix("/$ref").unwrap_or(name);
                let name = name.rsplit('/').next().unwrap_or(name);
                if name == "*" {
                    continue;
                }
                let target = match self.navigation(name) {
                    Some(target) => target,
                    None if self.property(name) => {
                        return Err(format!(
                            "Property '{name}' on type 'microsoft.graph.{}' is not a navigation property or complex property. Only navigation properties can be expanded.",
                            self.name
                        ))
                    }
                    None => return Err(self.not_found(name)),
                };
                if let (Some(target), Some(inner)) = (target, inner) {
                    let (mut select, mut expand) = (None, None);
                    for option in split_top(inner, ';') {
                        let Some((key, value)) = option.split_once('=') else {
                            continue;
                        };
                        let key = key.trim();
                        let key = key.strip_prefix('$').unwrap_or(key);
                        if key.eq_ignore_ascii_case("select") {
                            select = Some(value.trim());
                        } else if key.eq_ignore_ascii_case("expand") {
                            expand = Some(value.trim());
                        }
                    }
                    target.check_query(select, expand)?;
                }
            }
        }
        Ok(())
    }
}

/// The non-empty items of `raw` separated by `separator` outside parentheses, trimmed.
pub fn split_top(raw: &str, separator: char) -> Vec<&str> {
    let mut items = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in raw.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if c == separator && depth == 0 => {
                items.push(raw[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    items.push(raw[start..].trim());
    items.retain(|item| !item.is_empty());
    items
}

/// The entity type a read of `resource` returns (a collection: of its items); `None` for
/// what is not an entity (an action, a function's string).
pub fn entity_type(resource: &Resource) -> Option<&'static EntityType> {
    Some(match resource {
        Resource::Policies(kind) | Resource::Policy(kind, _) => policy_type(*kind),
        Resource::Assignments(kind, _) => assignment_type(*kind),
        Resource::Settings(_) => &SETTING,
        Resource::DefinitionValues(_) | Resource::DefinitionValue(..) => &DEFINITION_VALUE,
        Resource::Definition(..) => &DEFINITION,
        Resource::PresentationValues(..) => &PRESENTATION_VALUE,
        Resource::ScheduledActions(_) | Resource::ScheduledAction(..) => &SCHEDULED_ACTION,
        Resource::ActionConfigurations(..) => &ACTION_ITEM,
        Resource::Groups | Resource::Group(_) => &GROUP,
        Resource::AssignmentFilters | Resource::AssignmentFilter(_) => &ASSIGNMENT_FILTER,
        Resource::ScopeTags | Resource::ScopeTag(_) => &SCOPE_TAG,
        Resource::Action(..) | Resource::OmaPlainText(..) => return None,
    })
}

/// The type of a policy collection's items.
pub fn policy_type(kind: Kind) -> &'static EntityType {
    match kind {
        Kind::ConfigurationPolicy => &CONFIGURATION_POLICY,
        Kind::DeviceConfiguration => &DEVICE_CONFIGURATION,
        Kind::CompliancePolicy => &COMPLIANCE_POLICY,
        Kind::GroupPolicyConfiguration => &GROUP_POLICY_CONFIGURATION,
    }
}

/// The type of a policy's assignments.
pub fn assignment_type(kind: Kind) -> &'static EntityType {
    match kind {
        Kind::ConfigurationPolicy => &CONFIGURATION_POLICY_ASSIGNMENT,
        Kind::DeviceConfiguration => &DEVICE_CONFIGURATION_ASSIGNMENT,
        Kind::CompliancePolicy => &COMPLIANCE_POLICY_ASSIGNMENT,
        Kind::GroupPolicyConfiguration => &GROUP_POLICY_CONFIGURATION_ASSIGNMENT,
    }
}

/// The properties a write body of type `type_name` (without `#microsoft.graph.`) to a `kind`
/// collection may hold, besides annotations and navigation properties: the collection's type's
/// own (not its `derived` list) and the derived type's own. `None` for a derived type whose
/// properties are not listed here (the general configurations and compliance policies have a
/// hundred or more each): its bodies are not checked.
pub fn writable_properties(kind: Kind, type_name: &str) -> Option<Vec<&'static str>> {
    let base = policy_type(kind);
    let derived: &[&str] = if type_name == base.name {
        &[]
    } else {
        match type_name {
            "windows10CustomConfiguration" | "androidWorkProfileCustomConfiguration" => {
                &["omaSettings"]
            }
            "iosCustomConfiguration" => &["payloadName", "payloadFileName", "payload"],
            "macOSCustomConfiguration" => &[
                "payloadName",
                "payloadFileName",
                "payload",
                "deploymentChannel",
            ],
            _ => return None,
        }
    };
    Some(base.properties.iter().chain(derived).copied().collect())
}

/// Navigation properties every device configuration and compliance policy has and the
/// simulator does not serve.
const STATUS_NAVIGATION: [(&str, Option<&EntityType>); 5] = [
    ("deviceStatuses", None),
    ("userStatuses", None),
    ("deviceStatusOverview", None),
    ("userStatusOverview", None),
    ("deviceSettingStateSummaries", None),
];

pub static CONFIGURATION_POLICY: EntityType = EntityType {
    name: "deviceManagementConfigurationPolicy",
    properties: &[
        "id",
        "name",
        "description",
        "platforms",
        "technologies",
        "createdDateTime",
        "lastModifiedDateTime",
        "settingCount",
        "creationSource",
        "roleScopeTagIds",
        "isAssigned",
        "templateReference",
        "priorityMetaData",
        "disableEntraGroupPolicyAssignment",
    ],
    derived: &[],
    navigation: &[
        ("assignments", Some(&CONFIGURATION_POLICY_ASSIGNMENT)),
        ("settings", Some(&SETTING)),
    ],
};

pub static DEVICE_CONFIGURATION: EntityType = EntityType {
    name: "deviceConfiguration",
    properties: &[
        "id",
        "lastModifiedDateTime",
        "roleScopeTagIds",
        "supportsScopeTags",
        "deviceManagementApplicabilityRuleOsEdition",
        "deviceManagementApplicabilityRuleOsVersion",
        "deviceManagementApplicabilityRuleDeviceMode",
        "createdDateTime",
        "description",
        "displayName",
        "version",
    ],
    // windows10CustomConfiguration and the general configurations.
    derived: &["omaSettings", "passwordRequired", "passwordMinimumLength"],
    navigation: &[
        ("assignments", Some(&DEVICE_CONFIGURATION_ASSIGNMENT)),
        ("groupAssignments", None),
        STATUS_NAVIGATION[0],
        STATUS_NAVIGATION[1],
        STATUS_NAVIGATION[2],
        STATUS_NAVIGATION[3],
        STATUS_NAVIGATION[4],
    ],
};

pub static COMPLIANCE_POLICY: EntityType = EntityType {
    name: "deviceCompliancePolicy",
    properties: &[
        "id",
        "roleScopeTagIds",
        "createdDateTime",
        "description",
        "lastModifiedDateTime",
        "displayName",
        "version",
    ],
    // The platforms' compliance policies.
    derived: &[
        "osMinimumVersion",
        "storageRequireEncryption",
        "passwordRequired",
    ],
    navigation: &[
        ("assignments", Some(&COMPLIANCE_POLICY_ASSIGNMENT)),
        ("scheduledActionsForRule", Some(&SCHEDULED_ACTION)),
        STATUS_NAVIGATION[0],
        STATUS_NAVIGATION[1],
        STATUS_NAVIGATION[2],
        STATUS_NAVIGATION[3],
        STATUS_NAVIGATION[4],
    ],
};

pub static GROUP_POLICY_CONFIGURATION: EntityType = EntityType {
    name: "groupPolicyConfiguration",
    properties: &[
        "id",
        "createdDateTime",
        "displayName",
        "description",
        "roleScopeTagIds",
        "policyConfigurationIngestionType",
        "lastModifiedDateTime",
    ],
    derived: &[],
    navigation: &[
        ("assignments", Some(&GROUP_POLICY_CONFIGURATION_ASSIGNMENT)),
        ("definitionValues", Some(&DEFINITION_VALUE)),
    ],
};

const ASSIGNMENT_PROPERTIES: &[&str] = &["id", "target", "source", "sourceId"];

pub static CONFIGURATION_POLICY_ASSIGNMENT: EntityType = EntityType {
    name: "deviceManagementConfigurationPolicyAssignment",
    properties: ASSIGNMENT_PROPERTIES,
    derived: &[],
    navigation: &[],
};

pub static DEVICE_CONFIGURATION_ASSIGNMENT: EntityType = EntityType {
    name: "deviceConfigurationAssignment",
    properties: &["id", "target", "source", "sourceId", "intent"],
    derived: &[],
    navigation: &[],
};

pub static COMPLIANCE_POLICY_ASSIGNMENT: EntityType = EntityType {
    name: "deviceCompliancePolicyAssignment",
    properties: ASSIGNMENT_PROPERTIES,
    derived: &[],
    navigation: &[],
};

pub static GROUP_POLICY_CONFIGURATION_ASSIGNMENT: EntityType = EntityType {
    name: "groupPolicyConfigurationAssignment",
    // No `source` or `sourceId`: Graph does not say where it came from.
    properties: &["id", "lastModifiedDateTime", "target"],
    derived: &[],
    navigation: &[],
};

pub static SETTING: EntityType = EntityType {
    name: "deviceManagementConfigurationSetting",
    properties: &["id", "settingInstance"],
    derived: &[],
    navigation: &[("settingDefinitions", None)],
};

pub static DEFINITION_VALUE: EntityType = EntityType {
    name: "groupPolicyDefinitionValue",
    properties: &[
        "id",
        "createdDateTime",
        "enabled",
        "configurationType",
        "lastModifiedDateTime",
    ],
    derived: &[],
    navigation: &[
        ("definition", Some(&DEFINITION)),
        ("presentationValues", Some(&PRESENTATION_VALUE)),
    ],
};

pub static DEFINITION: EntityType = EntityType {
    name: "groupPolicyDefinition",
    properties: &[
        "id",
        "classType",
        "displayName",
        "explainText",
        "categoryPath",
        "supportedOn",
        "policyType",
        "hasRelatedDefinitions",
        "groupPolicyCategoryId",
        "minDeviceCspVersion",
        "minUserCspVersion",
        "version",
        "lastModifiedDateTime",
    ],
    derived: &[],
    navigation: &[
        ("definitionFile", None),
        ("category", None),
        ("presentations", None),
        ("nextVersionDefinition", None),
        ("previousVersionDefinition", None),
    ],
};

pub static PRESENTATION_VALUE: EntityType = EntityType {
    name: "groupPolicyPresentationValue",
    properties: &["id", "lastModifiedDateTime", "createdDateTime"],
    // Text, decimal, list…
    derived: &["value", "values"],
    navigation: &[("definitionValue", None), ("presentation", None)],
};

pub static SCHEDULED_ACTION: EntityType = EntityType {
    name: "deviceComplianceScheduledActionForRule",
    properties: &["id", "ruleName"],
    derived: &[],
    navigation: &[("scheduledActionConfigurations", Some(&ACTION_ITEM))],
};

pub static ACTION_ITEM: EntityType = EntityType {
    name: "deviceComplianceActionItem",
    properties: &[
        "id",
        "gracePeriodHours",
        "actionType",
        "notificationTemplateId",
        "notificationMessageCCList",
    ],
    derived: &[],
    navigation: &[],
};

pub static GROUP: EntityType = EntityType {
    name: "group",
    properties: &[
        "id",
        "deletedDateTime",
        "accessType",
        "allowExternalSenders",
        "assignedLabels",
        "assignedLicenses",
        "autoSubscribeNewMembers",
        "classification",
        "createdByAppId",
        "createdDateTime",
        "description",
        "displayName",
        "expirationDateTime",
        "groupTypes",
        "hasMembersWithLicenseErrors",
        "hideFromAddressLists",
        "hideFromOutlookClients",
        "infoCatalogs",
        "isArchived",
        "isAssignableToRole",
        "isFavorite",
        "isManagementRestricted",
        "isSubscribedByMail",
        "licenseProcessingState",
        "mail",
        "mailEnabled",
        "mailNickname",
        "membershipRule",
        "membershipRuleProcessingState",
        "membershipRuleProcessingStatus",
        "onPremisesDomainName",
        "onPremisesLastSyncDateTime",
        "onPremisesNetBiosName",
        "onPremisesProvisioningErrors",
        "onPremisesSamAccountName",
        "onPremisesSecurityIdentifier",
        "onPremisesSyncEnabled",
        "organizationId",
        "preferredDataLocation",
        "preferredLanguage",
        "proxyAddresses",
        "renewedDateTime",
        "resourceBehaviorOptions",
        "resourceProvisioningOptions",
        "securityEnabled",
        "securityIdentifier",
        "serviceProvisioningErrors",
        "theme",
        "uniqueName",
        "unseenConversationsCount",
        "unseenCount",
        "unseenMessagesCount",
        "visibility",
        "writebackConfiguration",
    ],
    derived: &[],
    navigation: &[
        ("members", None),
        ("owners", None),
        ("memberOf", None),
        ("transitiveMembers", None),
        ("transitiveMemberOf", None),
        ("membersWithLicenseErrors", None),
        ("appRoleAssignments", None),
        ("createdOnBehalfOf", None),
        ("extensions", None),
        ("settings", None),
        ("photo", None),
        ("photos", None),
        ("drive", None),
        ("drives", None),
        ("sites", None),
        ("calendar", None),
        ("calendarView", None),
        ("conversations", None),
        ("events", None),
        ("threads", None),
        ("acceptedSenders", None),
        ("rejectedSenders", None),
        ("groupLifecyclePolicies", None),
        ("permissionGrants", None),
        ("endpoints", None),
        ("team", None),
        ("planner", None),
        ("onenote", None),
    ],
};

pub static ASSIGNMENT_FILTER: EntityType = EntityType {
    name: "deviceAndAppManagementAssignmentFilter",
    properties: &[
        "id",
        "createdDateTime",
        "lastModifiedDateTime",
        "displayName",
        "description",
        "platform",
        "rule",
        "roleScopeTags",
        "payloads",
        "assignmentFilterManagementType",
    ],
    derived: &[],
    navigation: &[],
};

pub static SCOPE_TAG: EntityType = EntityType {
    name: "roleScopeTag",
    properties: &["id", "displayName", "description", "isBuiltIn"],
    derived: &[],
    navigation: &[("assignments", None)],
};

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::graph_sim::tenant::FakeTenant;

    /// Every key of `item` (but `@odata.*`) is a property or navigation property of `ty`.
    fn assert_known(ty: &EntityType, item: &Value) {
        for key in item.as_object().expect("an object").keys() {
            assert!(
                key.starts_with("@odata.") || ty.property(key) || ty.navigation(key).is_some(),
                "{} has no '{key}'",
                ty.name
            );
        }
    }

    #[test]
    fn every_generated_property_is_known() {
        let tenant = FakeTenant::generate(11, "t", 40);
        for policy in &tenant.policies {
            assert_known(policy_type(policy.kind), &policy.to_json());
            for assignment in policy.assignments() {
                assert_known(assignment_type(policy.kind), &assignment);
            }
            for rule in policy.scheduled_actions(true) {
                assert_known(&SCHEDULED_ACTION, &rule);
                for action in rule["scheduledActionConfigurations"]
                    .as_array()
                    .expect("actions")
                {
                    assert_known(&ACTION_ITEM, action);
                }
            }
            for index in 0..policy.child_count.min(5) {
                match policy.kind {
                    Kind::ConfigurationPolicy => {
                        assert_known(&SETTING, &policy.child(index, true));
                    }
                    Kind::GroupPolicyConfiguration => {
                        assert_known(&DEFINITION_VALUE, &policy.child(index, true));
                        assert_known(&DEFINITION, &policy.definition(index));
                        for value in policy.presentation_values(index, true) {
                            assert_known(&PRESENTATION_VALUE, &value);
                        }
                    }
                    _ => {}
                }
            }
        }
        for group in &tenant.groups {
            assert_known(&GROUP, &tenant.group_json(group));
        }
        for filter in &tenant.filters {
            assert_known(&ASSIGNMENT_FILTER, &tenant.filter_json(filter));
        }
        for tag in &tenant.scope_tags {
            assert_known(&SCOPE_TAG, &tenant.scope_tag_json(tag));
        }
    }

    /// The lists hold what Graph's beta metadata has: a settings catalog policy's
    /// `disableEntraGroupPolicyAssignment` (Graph returns it and takes it back), an
    /// administrative template's assignment without `source` and `sourceId`, and a base type's
    /// writable properties without those of the derived types the simulator generates.
    #[test]
    fn the_lists_hold_what_graph_has_and_no_more() {
        let catalog = "disableEntraGroupPolicyAssignment";
        assert_eq!(
            CONFIGURATION_POLICY.check_query(Some(catalog), None),
            Ok(())
        );
        assert!(
            writable_properties(Kind::ConfigurationPolicy, CONFIGURATION_POLICY.name)
                .is_some_and(|known| known.contains(&catalog))
        );
        for name in ["source", "sourceId"] {
            assert_eq!(
                GROUP_POLICY_CONFIGURATION_ASSIGNMENT.check_query(Some(name), None),
                Err(format!("Could not find a property named '{name}' on type 'microsoft.graph.groupPolicyConfigurationAssignment'."))
            );
            assert_eq!(
                DEVICE_CONFIGURATION_ASSIGNMENT.check_query(Some(name), None),
                Ok(())
            );
        }
        let base = writable_properties(Kind::DeviceConfiguration, DEVICE_CONFIGURATION.name)
            .expect("listed");
        assert!(base.contains(&"displayName") && !base.contains(&"omaSettings"));
        let custom = writable_properties(Kind::DeviceConfiguration, "windows10CustomConfiguration")
            .expect("listed");
        assert!(custom.contains(&"omaSettings"));
        let compliance =
            writable_properties(Kind::CompliancePolicy, COMPLIANCE_POLICY.name).expect("listed");
        assert!(!compliance.contains(&"osMinimumVersion"));
    }

    #[test]
    fn unknown_names_are_refused_with_graphs_message() {
        let catalog = &CONFIGURATION_POLICY;
        assert_eq!(
            catalog.check_query(Some("displayName,bogus"), None),
            Err("Could not find a property named 'displayName' on type 'microsoft.graph.deviceManagementConfigurationPolicy'.".into())
        );
        assert_eq!(
            catalog.check_query(Some("id,name,platforms,lastModifiedDateTime"), None),
            Ok(())
        );
        assert_eq!(
            catalog.check_query(None, Some("settings($expand=settingDefinitions)")),
            Ok(())
        );
        assert!(DEVICE_CONFIGURATION
            .check_query(None, Some("settings"))
            .expect_err("no settings")
            .contains("'settings' on type 'microsoft.graph.deviceConfiguration'"));
        assert_eq!(
            COMPLIANCE_POLICY.check_query(
                Some("displayName"),
                Some("assignments,scheduledActionsForRule($expand=scheduledActionConfigurations)")
            ),
            Ok(())
        );
        assert!(COMPLIANCE_POLICY
            .check_query(None, Some("scheduledActionsForRule($expand=bogus)"))
            .expect_err("nested")
            .contains("'bogus' on type 'microsoft.graph.deviceComplianceScheduledActionForRule'"));
        assert!(COMPLIANCE_POLICY
            .check_query(None, Some("scheduledActionsForRule($select=ruleName,nope;$expand=scheduledActionConfigurations)"))
            .is_err());
        assert!(COMPLIANCE_POLICY
            .check_query(None, Some("displayName"))
            .expect_err("not a navigation property")
            .contains("Only navigation properties can be expanded"));
        assert_eq!(
            DEFINITION_VALUE.check_query(None, Some("definition")),
            Ok(())
        );
        assert_eq!(
            PRESENTATION_VALUE.check_query(None, Some("presentation")),
            Ok(())
        );
        assert_eq!(
            DEVICE_CONFIGURATION.check_query(
                Some("microsoft.graph.windows10CustomConfiguration/omaSettings,*"),
                None
            ),
            Ok(())
        );
    }
}
