//! Deterministic fake tenants: the same seed and tenant id always give the same policies, ids,
//! names, settings and timestamps, so an unchanged policy hashes the same across captures.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::schema;
use super::stored::Stored;

/// Settings and definition values per page, as Graph serves them.
pub const CHILD_PAGE_SIZE: usize = 25;

/// The four Intune collections the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ConfigurationPolicy,
    DeviceConfiguration,
    CompliancePolicy,
    GroupPolicyConfiguration,
}

impl Kind {
    /// Policies are spread over the kinds in this order.
    const ALL: [Kind; 4] = [
        Kind::ConfigurationPolicy,
        Kind::DeviceConfiguration,
        Kind::CompliancePolicy,
        Kind::GroupPolicyConfiguration,
    ];

    /// The collection segment under `deviceManagement/`.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::ConfigurationPolicy => "configurationPolicies",
            Kind::DeviceConfiguration => "deviceConfigurations",
            Kind::CompliancePolicy => "deviceCompliancePolicies",
            Kind::GroupPolicyConfiguration => "groupPolicyConfigurations",
        }
    }

    /// Parses a collection segment.
    pub fn from_collection(segment: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.collection() == segment)
    }
}

/// One simulated policy; its JSON is rendered on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPolicy {
    pub id: String,
    pub kind: Kind,
    pub name: String,
    /// Index into the platform table (`windows10`, `iOS`, `macOS`, `android`).
    platform: usize,
    created_secs: i64,
    modified_secs: i64,
    /// Settings (settings catalog) or definition values (administrative templates).
    pub child_count: usize,
    /// How many assignments the policy has now.
    pub assignment_count: usize,
    /// Settings edits since the tenant was generated: each one moves `version` and changes one
    /// setting's value.
    pub revision: u32,
    assignments: Vec<SimAssignment>,
    scope_tags: Vec<String>,
    seed: u64,
    /// The content once a write touched the policy; reads are answered from it then.
    pub stored: Option<Box<Stored>>,
}

/// One assignment of a policy: a target of the tenant's groups (or all devices), maybe filtered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimAssignment {
    /// `None`: all devices.
    group_id: Option<String>,
    exclude: bool,
    /// An assignment filter's id and mode (`include` / `exclude`).
    filter: Option<(String, &'static str)>,
}

/// A tenant-wide object the policies refer to: a group, an assignment filter or a scope tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    pub id: String,
    pub display_name: String,
}

/// All policies of one tenant, and the groups, assignment filters and scope tags they use.
pub struct FakeTenant {
    pub policies: Vec<SimPolicy>,
    by_id: HashMap<String, usize>,
    pub groups: Vec<Directory>,
    pub filters: Vec<Directory>,
    pub scope_tags: Vec<Directory>,
}

/// SplitMix64: tiny, fast and stable across versions, unlike a library RNG whose stream may change.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn guid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }
}

/// FNV-1a, to fold a tenant id into the seed.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const PLATFORMS: [&str; 4] = ["windows10", "iOS", "macOS", "android"];
const AREAS: [&str; 12] = [
    "BitLocker",
    "Defender",
    "Edge",
    "Windows Hello",
    "Firewall",
    "OneDrive",
    "Wi-Fi",
    "VPN",
    "Passcode",
    "Updates",
    "Office",
    "Kiosk",
];
const FLAVOURS: [&str; 6] = [
    "baseline", "pilot", "strict", "standard", "legacy", "ring 1",
];
/// 2023-01-01T00:00:00Z: fake timestamps fall in the two years after it.
const EPOCH_2023: i64 = 1_672_531_200;

const GROUP_NAMES: [&str; 12] = [
    "All Windows devices",
    "All iOS devices",
    "All macOS devices",
    "All Android devices",
    "Pilot users",
    "Ring 1 devices",
    "Finance",
    "Sales",
    "Kiosks",
    "Executives",
    "Contractors",
    "Break-glass accounts",
];
const FILTER_NAMES: [&str; 3] = ["Corporate devices", "Windows 11 only", "Personal devices"];
const SCOPE_TAG_NAMES: [&str; 4] = ["Default", "Paris", "Berlin", "Remote workers"];

impl FakeTenant {
    /// Generates `count` policies for a tenant. The first settings catalog policy has 60 settings
    /// (three pages) and the first administrative template 30 definition values (two pages), so
    /// paging tests have a known target.
    pub fn generate(seed: u64, tenant_id: &str, count: usize) -> Self {
        let tenant_seed = seed ^ fnv(tenant_id);
        // The directory comes from a stream of its own, so policies keep their ids and names.
        let mut directory = SplitMix(tenant_seed ^ 0xD1EC_7021);
        let groups: Vec<Directory> = GROUP_NAMES
            .iter()
            .map(|name| Directory {
                id: directory.guid(),
                display_name: (*name).to_owned(),
            })
            .collect();
        let filters: Vec<Directory> = FILTER_NAMES
            .iter()
            .map(|name| Directory {
                id: directory.guid(),
                display_name: (*name).to_owned(),
            })
            .collect();
        let scope_tags: Vec<Directory> = SCOPE_TAG_NAMES
            .iter()
            .enumerate()
            .map(|(id, name)| Directory {
                id: id.to_string(),
                display_name: (*name).to_owned(),
            })
            .collect();
        let mut rng = SplitMix(tenant_seed);
        let mut policies = Vec::with_capacity(count);
        for index in 0..count {
            let kind = Kind::ALL[index % Kind::ALL.len()];
            let platform = match kind {
                Kind::GroupPolicyConfiguration => 0,
                _ => rng.below(PLATFORMS.len() as u64) as usize,
            };
            let area = AREAS[rng.below(AREAS.len() as u64) as usize];
            let flavour = FLAVOURS[rng.below(FLAVOURS.len() as u64) as usize];
            let child_count = match (kind, index) {
                (Kind::ConfigurationPolicy, 0) => 60,
                (Kind::GroupPolicyConfiguration, 3) => 30,
                (Kind::ConfigurationPolicy, _) => 1 + rng.below(70) as usize,
                (Kind::GroupPolicyConfiguration, _) => 1 + rng.below(40) as usize,
                _ => 0,
            };
            let created_secs = EPOCH_2023 + rng.below(365 * 86_400) as i64;
            let modified_secs = created_secs + rng.below(365 * 86_400) as i64;
            let id = rng.guid();
            let assignment_count = rng.below(4) as usize;
            let policy_seed = rng.next();
            let assignments =
                generated_assignments(policy_seed, assignment_count, &groups, &filters);
            let scope_tags = if policy_seed.is_multiple_of(5) {
                vec!["0".to_owned(), (1 + policy_seed % 3).to_string()]
            } else {
                vec!["0".to_owned()]
            };
            policies.push(SimPolicy {
                id,
                kind,
                name: format!("{area} {flavour} {:04}", index + 1),
                platform,
                created_secs,
                modified_secs,
                child_count,
                assignment_count,
                revision: 0,
                assignments,
                scope_tags,
                seed: policy_seed,
                stored: None,
            });
        }
        Self::from_policies(policies, groups, filters, scope_tags)
    }

    fn from_policies(
        policies: Vec<SimPolicy>,
        groups: Vec<Directory>,
        filters: Vec<Directory>,
        scope_tags: Vec<Directory>,
    ) -> Self {
        let by_id = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Self {
            policies,
            by_id,
            groups,
            filters,
            scope_tags,
        }
    }

    /// A copy with policy `id` changed by `edit` and its `lastModifiedDateTime` a day later, as
    /// an edit in Intune leaves it; `None` if there is no such policy or `edit` declines.
    fn with_edit(
        &self,
        id: &str,
        edit: impl FnOnce(&mut SimPolicy, &Self) -> bool,
    ) -> Option<Self> {
        let index = *self.by_id.get(id)?;
        let mut policies = self.policies.clone();
        if !edit(&mut policies[index], self) {
            return None;
        }
        policies[index].modified_secs += 86_400;
        Some(Self::from_policies(
            policies,
            self.groups.clone(),
            self.filters.clone(),
            self.scope_tags.clone(),
        ))
    }

    /// A copy with policy `id` renamed; `None` if there is no such policy.
    pub fn with_renamed(&self, id: &str, name: &str) -> Option<Self> {
        self.with_edit(id, |policy, _| {
            policy.name = name.to_owned();
            let key = policy.name_key();
            if let Some(stored) = &mut policy.stored {
                stored.properties.insert(key.into(), json!(name));
            }
            true
        })
    }

    /// A copy where one setting of policy `id` has another value and its `version` moved on.
    pub fn with_changed_settings(&self, id: &str) -> Option<Self> {
        self.with_edit(id, |policy, _| {
            policy.revision += 1;
            if let Some(stored) = &mut policy.stored {
                stored.version += 1;
                stored.change_one_value();
            }
            true
        })
    }

    /// A copy where a write changed policy `id` (made explicit first, see [`Stored`]) and its
    /// `lastModifiedDateTime` moved on; `None` if there is no such policy of `kind`, or the
    /// write's error.
    pub fn with_written<E>(
        &self,
        kind: Kind,
        id: &str,
        write: impl FnOnce(&mut SimPolicy, &mut Stored) -> Result<(), E>,
    ) -> Option<Result<Self, E>> {
        let index = *self.by_id.get(id)?;
        if self.policies[index].kind != kind {
            return None;
        }
        let mut policies = self.policies.clone();
        let policy = &mut policies[index];
        let mut stored = policy
            .stored
            .take()
            .unwrap_or_else(|| Box::new(Stored::of_generated(policy)));
        if let Err(error) = write(policy, &mut stored) {
            return Some(Err(error));
        }
        policy.child_count = stored.children.len();
        policy.assignment_count = stored.assignments.len();
        policy.modified_secs += 86_400;
        policy.stored = Some(stored);
        Some(Ok(Self::from_policies(
            policies,
            self.groups.clone(),
            self.filters.clone(),
            self.scope_tags.clone(),
        )))
    }

    /// A copy with one more policy, created by a write.
    pub fn with_created(&self, policy: SimPolicy) -> Self {
        let mut policies = self.policies.clone();
        policies.push(policy);
        Self::from_policies(
            policies,
            self.groups.clone(),
            self.filters.clone(),
            self.scope_tags.clone(),
        )
    }

    /// A copy without group `id`, as a deletion in Entra ID leaves it (assignments to it stay,
    /// as they do in Intune); `None` if there is none.
    pub fn without_group(&self, id: &str) -> Option<Self> {
        if !self.groups.iter().any(|g| g.id == id) {
            return None;
        }
        let groups = self.groups.iter().filter(|g| g.id != id).cloned().collect();
        Some(Self::from_policies(
            self.policies.clone(),
            groups,
            self.filters.clone(),
            self.scope_tags.clone(),
        ))
    }

    /// A copy where policy `id` is also assigned to a group it was not assigned to; `None` when
    /// there is no such policy or it already targets every group.
    pub fn with_added_assignment(&self, id: &str) -> Option<Self> {
        self.with_edit(id, |policy, tenant| {
            let used: Vec<String> = match &policy.stored {
                Some(stored) => stored
                    .assignments
                    .iter()
                    .filter_map(|a| a["target"]["groupId"].as_str().map(str::to_owned))
                    .collect(),
                None => policy
                    .assignments
                    .iter()
                    .filter_map(|a| a.group_id.clone())
                    .collect(),
            };
            let Some(group) = tenant.groups.iter().find(|g| !used.contains(&g.id)) else {
                return false;
            };
            if let Some(stored) = &mut policy.stored {
                stored.assignments.push(assignment_json(
                    policy.kind,
                    &policy.id,
                    "groupAssignmentTarget",
                    Some(&group.id),
                    None,
                ));
                policy.assignment_count = stored.assignments.len();
                return true;
            }
            policy.assignments.push(SimAssignment {
                group_id: Some(group.id.clone()),
                exclude: false,
                filter: None,
            });
            policy.assignment_count = policy.assignments.len();
            true
        })
    }

    /// A copy without policy `id`, as a deletion in Intune leaves it; `None` if there is none.
    pub fn without(&self, id: &str) -> Option<Self> {
        self.by_id.get(id)?;
        let policies = self
            .policies
            .iter()
            .filter(|p| p.id != id)
            .cloned()
            .collect();
        Some(Self::from_policies(
            policies,
            self.groups.clone(),
            self.filters.clone(),
            self.scope_tags.clone(),
        ))
    }

    /// A policy by its Graph id and collection.
    pub fn find(&self, kind: Kind, id: &str) -> Option<&SimPolicy> {
        self.by_id
            .get(id)
            .map(|i| &self.policies[*i])
            .filter(|p| p.kind == kind)
    }

    /// The policies of one collection, in list order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &SimPolicy> {
        self.policies.iter().filter(move |p| p.kind == kind)
    }

    /// A group as `GET /groups/{id}` returns it.
    pub fn group_json(&self, group: &Directory) -> Value {
        let nickname: String = group
            .display_name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        json!({
            "id": group.id,
            "displayName": group.display_name,
            "description": format!("{} (simulated)", group.display_name),
            "groupTypes": [],
            "mailEnabled": false,
            "mailNickname": nickname,
            "securityEnabled": true,
            "createdDateTime": timestamp(EPOCH_2023),
        })
    }

    /// An assignment filter as `GET /deviceManagement/assignmentFilters/{id}` returns it.
    pub fn filter_json(&self, filter: &Directory) -> Value {
        json!({
            "id": filter.id,
            "displayName": filter.display_name,
            "description": "",
            "platform": "windows10AndLater",
            "rule": "(device.deviceOwnership -eq \"Corporate\")",
            "assignmentFilterManagementType": "devices",
            "roleScopeTags": ["0"],
            "createdDateTime": timestamp(EPOCH_2023),
            "lastModifiedDateTime": timestamp(EPOCH_2023),
        })
    }

    /// A scope tag as `GET /deviceManagement/roleScopeTags/{id}` returns it.
    pub fn scope_tag_json(&self, tag: &Directory) -> Value {
        json!({
            "id": tag.id,
            "displayName": tag.display_name,
            "description": "",
            "isBuiltIn": tag.id == "0",
        })
    }
}

/// The assignments a policy starts with: distinct groups of the tenant, now and then an
/// exclusion, all devices or an assignment filter.
fn generated_assignments(
    seed: u64,
    count: usize,
    groups: &[Directory],
    filters: &[Directory],
) -> Vec<SimAssignment> {
    let mut rng = SplitMix(seed ^ 0xA551);
    let start = rng.below(groups.len() as u64) as usize;
    (0..count)
        .map(|k| {
            let roll = rng.below(8);
            let filter = (rng.below(4) == 0).then(|| {
                let f = &filters[rng.below(filters.len() as u64) as usize];
                (
                    f.id.clone(),
                    if roll.is_multiple_of(2) {
                        "include"
                    } else {
                        "exclude"
                    },
                )
            });
            match roll {
                0 => SimAssignment {
                    group_id: Some(groups[(start + k * 5) % groups.len()].id.clone()),
                    exclude: true,
                    filter: None,
                },
                1 if k == 0 => SimAssignment {
                    group_id: None,
                    exclude: false,
                    filter,
                },
                _ => SimAssignment {
                    group_id: Some(groups[(start + k * 5) % groups.len()].id.clone()),
                    exclude: false,
                    filter,
                },
            }
        })
        .collect()
}

/// An assignment of the `policy_kind` policy `policy_id` as Graph lists it: `target_kind` is
/// the target's type, `filter` an assignment filter's id and mode. It is made on the policy
/// itself (`source` `direct`) where the kind's assignment type has a `source` (an
/// administrative template's has none).
pub(super) fn assignment_json(
    policy_kind: Kind,
    policy_id: &str,
    target_kind: &str,
    group: Option<&str>,
    filter: Option<(&str, &str)>,
) -> Value {
    let mut target = json!({
        "@odata.type": format!("#microsoft.graph.{target_kind}"),
        "deviceAndAppManagementAssignmentFilterId": filter.map(|f| f.0),
        "deviceAndAppManagementAssignmentFilterType": filter.map_or("none", |f| f.1),
    });
    if let (Some(group), Value::Object(fields)) = (group, &mut target) {
        fields.insert("groupId".into(), json!(group));
    }
    let mut assignment = json!({
        "id": format!("{policy_id}_{}", group.unwrap_or(ALL_DEVICES)),
        "target": target
    });
    let has_source = schema::assignment_type(policy_kind)
        .properties
        .contains(&"source");
    if let (true, Value::Object(fields)) = (has_source, &mut assignment) {
        fields.insert("source".into(), json!("direct"));
        fields.insert("sourceId".into(), json!(policy_id));
    }
    assignment
}

pub(super) fn timestamp(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "2023-01-01T00:00:00Z".to_owned())
}

/// The id Graph gives the all-devices target's assignments.
const ALL_DEVICES: &str = "adadadad-808e-44e2-905a-0b7873a8a531";
/// A notification template id meaning "none", as Graph sends it for a block action.
const NO_TEMPLATE: &str = "00000000-0000-0000-0000-000000000000";

impl SimPolicy {
    /// The platform word.
    pub fn platform(&self) -> &'static str {
        PLATFORMS[self.platform]
    }

    /// Whether this device configuration is a Windows custom (OMA-URI) profile.
    fn is_custom(&self) -> bool {
        self.kind == Kind::DeviceConfiguration && self.platform == 0 && self.seed.is_multiple_of(3)
    }

    /// The property holding the policy's name.
    pub fn name_key(&self) -> &'static str {
        match self.kind {
            Kind::ConfigurationPolicy => "name",
            _ => "displayName",
        }
    }

    /// A policy a write created: its content is what was written.
    pub fn created(id: String, kind: Kind, name: String, platform: &str, stored: Stored) -> Self {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let lower = platform.to_ascii_lowercase();
        let platform = PLATFORMS
            .iter()
            .position(|p| lower.starts_with(&p.to_ascii_lowercase()))
            .unwrap_or(0);
        Self {
            seed: fnv(&id),
            id,
            kind,
            name,
            platform,
            created_secs: now,
            modified_secs: now,
            child_count: stored.children.len(),
            assignment_count: stored.assignments.len(),
            revision: 0,
            assignments: Vec::new(),
            scope_tags: Vec::new(),
            stored: Some(Box::new(stored)),
        }
    }

    /// The policy as Graph returns it from its get endpoint.
    pub fn to_json(&self) -> Value {
        if let Some(stored) = &self.stored {
            return stored.to_json(
                self,
                timestamp(self.created_secs),
                timestamp(self.modified_secs),
            );
        }
        let platform = self.platform();
        let revision = u64::from(self.revision);
        let mut item = json!({
            "id": self.id,
            "description": format!("Managed by the platform team ({platform})"),
            "createdDateTime": timestamp(self.created_secs),
            "lastModifiedDateTime": timestamp(self.modified_secs),
            "roleScopeTagIds": self.scope_tags,
        });
        let Value::Object(fields) = &mut item else {
            return item;
        };
        let odata_platform = match platform {
            "windows10" => "windows10",
            "iOS" => "ios",
            "macOS" => "macOS",
            _ => "androidWorkProfile",
        };
        match self.kind {
            Kind::ConfigurationPolicy => {
                fields.insert("name".into(), json!(self.name));
                fields.insert("platforms".into(), json!(platform));
                fields.insert("technologies".into(), json!("mdm"));
                fields.insert("settingCount".into(), json!(self.child_count));
                fields.insert(
                    "templateReference".into(),
                    json!({"templateId": "", "templateFamily": "none", "templateDisplayName": null}),
                );
            }
            Kind::DeviceConfiguration if self.is_custom() => {
                fields.insert(
                    "@odata.type".into(),
                    json!("#microsoft.graph.windows10CustomConfiguration"),
                );
                fields.insert("displayName".into(), json!(self.name));
                fields.insert("version".into(), json!(1 + self.seed % 9 + revision));
                let mut rng = SplitMix(self.seed ^ 0x0A4A);
                fields.insert(
                    "omaSettings".into(),
                    json!([
                        {
                            "@odata.type": "#microsoft.graph.omaSettingInteger",
                            "displayName": "Minimum PIN length",
                            "description": null,
                            "omaUri": "./Device/Vendor/MSFT/PassportForWork/PINComplexity/MinimumPINLength",
                            "value": 6 + (self.seed + revision) % 10,
                            "isReadOnly": false,
                            "isEncrypted": false,
                            "secretReferenceValueId": null
                        },
                        {
                            "@odata.type": "#microsoft.graph.omaSettingString",
                            "displayName": "Wi-Fi pre-shared key",
                            "description": null,
                            "omaUri": "./Vendor/MSFT/WiFi/Profile/Corp/WlanXml",
                            // The plain text, as Intune holds it: a read shows `****`.
                            "value": format!("psk-{:016x}{:016x}", rng.next(), rng.next()),
                            "isReadOnly": false,
                            "isEncrypted": true,
                            "secretReferenceValueId": rng.guid()
                        }
                    ]),
                );
            }
            Kind::DeviceConfiguration => {
                fields.insert(
                    "@odata.type".into(),
                    json!(format!(
                        "#microsoft.graph.{odata_platform}GeneralConfiguration"
                    )),
                );
                fields.insert("displayName".into(), json!(self.name));
                fields.insert("version".into(), json!(1 + self.seed % 9 + revision));
                fields.insert(
                    "passwordRequired".into(),
                    json!(self.seed.is_multiple_of(2)),
                );
                fields.insert(
                    "passwordMinimumLength".into(),
                    json!(6 + (self.seed + revision) % 10),
                );
            }
            Kind::CompliancePolicy => {
                fields.insert(
                    "@odata.type".into(),
                    json!(format!("#microsoft.graph.{odata_platform}CompliancePolicy")),
                );
                fields.insert("displayName".into(), json!(self.name));
                fields.insert("version".into(), json!(1 + self.seed % 5 + revision));
                fields.insert(
                    "osMinimumVersion".into(),
                    json!(format!("{}.0", 10 + (self.seed + revision) % 8)),
                );
                fields.insert("storageRequireEncryption".into(), json!(true));
            }
            Kind::GroupPolicyConfiguration => {
                fields.insert(
                    "@odata.type".into(),
                    json!("#microsoft.graph.groupPolicyConfiguration"),
                );
                fields.insert("displayName".into(), json!(self.name));
                fields.insert("policyConfigurationIngestionType".into(), json!("builtIn"));
            }
        }
        item
    }

    /// The policy's assignments.
    pub fn assignments(&self) -> Vec<Value> {
        if let Some(stored) = &self.stored {
            return stored.assignments.clone();
        }
        self.assignments
            .iter()
            .map(|a| {
                let (kind, group) = match (&a.group_id, a.exclude) {
                    (None, _) => ("allDevicesAssignmentTarget", None),
                    (Some(g), false) => ("groupAssignmentTarget", Some(g.as_str())),
                    (Some(g), true) => ("exclusionGroupAssignmentTarget", Some(g.as_str())),
                };
                let filter = a.filter.as_ref().map(|(id, mode)| (id.as_str(), *mode));
                assignment_json(self.kind, &self.id, kind, group, filter)
            })
            .collect()
    }

    /// Compliance actions for noncompliance (`scheduledActionsForRule`): one rule whose
    /// `scheduledActionConfigurations` are inlined when `expand_configurations`.
    pub fn scheduled_actions(&self, expand_configurations: bool) -> Vec<Value> {
        if let Some(stored) = &self.stored {
            return stored.scheduled_actions(expand_configurations);
        }
        if self.kind != Kind::CompliancePolicy {
            return Vec::new();
        }
        let mut rng = SplitMix(self.seed ^ 0x5C4E);
        let mut rule = json!({"id": rng.guid(), "ruleName": "PasswordRequired"});
        if let Value::Object(fields) = &mut rule {
            if expand_configurations {
                fields.insert(
                    "scheduledActionConfigurations".into(),
                    Value::Array(self.action_configurations(&mut rng)),
                );
            }
        }
        vec![rule]
    }

    fn action_configurations(&self, rng: &mut SplitMix) -> Vec<Value> {
        let mut actions = vec![json!({
            "id": rng.guid(),
            "gracePeriodHours": 0,
            "actionType": "block",
            "notificationTemplateId": NO_TEMPLATE,
            "notificationMessageCCList": []
        })];
        let template = rng.guid();
        if self.seed.is_multiple_of(2) {
            actions.push(json!({
                "id": rng.guid(),
                "gracePeriodHours": 24,
                "actionType": "notification",
                "notificationTemplateId": template,
                "notificationMessageCCList": []
            }));
        }
        actions
    }

    /// The id of child number `index` (a definition value's id; a setting's is its index).
    pub fn child_id(&self, index: usize) -> String {
        if let Some(stored) = &self.stored {
            return stored.child_id(index);
        }
        match self.kind {
            Kind::GroupPolicyConfiguration => self.child_rng(index).guid(),
            _ => index.to_string(),
        }
    }

    /// The index of the child with this id.
    pub fn child_index(&self, id: &str) -> Option<usize> {
        (0..self.child_count).find(|&i| self.child_id(i) == id)
    }

    fn child_rng(&self, index: usize) -> SplitMix {
        SplitMix(self.seed ^ (index as u64).wrapping_mul(0x9E37))
    }

    /// Child number `index`: a settings catalog setting (its definition inlined with
    /// `$expand=settingDefinitions`) or a definition value (its definition inlined with
    /// `$expand=definition`).
    pub fn child(&self, index: usize, expand: bool) -> Value {
        if let Some(stored) = &self.stored {
            return stored.child(self.kind, index, expand);
        }
        let mut rng = self.child_rng(index);
        let revision = u64::from(self.revision);
        match self.kind {
            Kind::GroupPolicyConfiguration => {
                let id = rng.guid();
                let enabled = (rng.below(4) != 0) ^ (index == 0 && revision % 2 == 1);
                let mut value = json!({
                    "id": id,
                    "enabled": enabled,
                    "configurationType": "policy",
                    "createdDateTime": timestamp(self.created_secs),
                    "lastModifiedDateTime": timestamp(self.modified_secs),
                });
                if expand {
                    if let Value::Object(fields) = &mut value {
                        fields.insert("definition".into(), self.definition(index));
                    }
                }
                value
            }
            _ if index % 10 == 9 => {
                let definition = format!(
                    "device_vendor_msft_policy_config_simulated_secret{}",
                    index + 1
                );
                let mut setting = json!({
                    "id": index.to_string(),
                    "settingInstance": {
                        "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
                        "settingDefinitionId": definition,
                        "simpleSettingValue": {
                            "@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue",
                            "value": format!("{:016x}{:016x}", rng.next(), rng.next()),
                            "valueState": "encryptedValueToken"
                        }
                    }
                });
                if expand {
                    if let Value::Object(fields) = &mut setting {
                        fields.insert(
                            "settingDefinitions".into(),
                            json!([{
                                "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingDefinition",
                                "id": definition,
                                "name": format!("SimulatedSecret{}", index + 1),
                                "displayName": format!("Simulated secret {}", index + 1),
                                "description": "A secret the service keeps encrypted.",
                                "baseUri": "./Device/Vendor/MSFT/Policy",
                                "offsetUri": format!("Config/Simulated/Secret{}", index + 1),
                                "valueDefinition": {
                                    "@odata.type": "#microsoft.graph.deviceManagementConfigurationStringSettingValueDefinition",
                                    "isSecret": true
                                }
                            }]),
                        );
                    }
                }
                setting
            }
            _ => {
                let definition = format!(
                    "device_vendor_msft_policy_config_simulated_setting{}",
                    index + 1
                );
                let bump = if index == 0 { revision } else { 0 };
                let choice = (rng.below(3) + bump) % 3;
                let mut setting = json!({
                    "id": index.to_string(),
                    "settingInstance": {
                        "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                        "settingDefinitionId": definition,
                        "choiceSettingValue": {
                            "value": format!("{definition}_{choice}"),
                            "children": []
                        }
                    }
                });
                if expand {
                    let options: Vec<Value> = ["Disabled", "Enabled", "Audit"]
                        .iter()
                        .enumerate()
                        .map(|(n, name)| {
                            json!({
                                "itemId": format!("{definition}_{n}"),
                                "name": name,
                                "displayName": name,
                                "optionValue": {
                                    "@odata.type": "#microsoft.graph.deviceManagementConfigurationIntegerSettingValue",
                                    "value": n
                                }
                            })
                        })
                        .collect();
                    if let Value::Object(fields) = &mut setting {
                        fields.insert(
                            "settingDefinitions".into(),
                            json!([{
                                "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingDefinition",
                                "id": definition,
                                "name": format!("SimulatedSetting{}", index + 1),
                                "displayName": format!("Simulated setting {}", index + 1),
                                "description": "A setting of the simulated catalog.",
                                "baseUri": "./Device/Vendor/MSFT/Policy",
                                "offsetUri": format!("Config/Simulated/Setting{}", index + 1),
                                "options": options
                            }]),
                        );
                    }
                }
                setting
            }
        }
    }

    /// The `groupPolicyDefinition` of definition value number `index`.
    pub fn definition(&self, index: usize) -> Value {
        if let Some(stored) = &self.stored {
            return stored.definition(index);
        }
        let mut rng = self.child_rng(index);
        rng.guid();
        rng.below(4);
        json!({
            "id": rng.guid(),
            "displayName": format!("Administrative setting {}", index + 1),
            "classType": if index.is_multiple_of(2) { "machine" } else { "user" },
            "categoryPath": "\\Windows Components\\Microsoft Edge",
            "policyType": "admxBacked",
            "version": "1.0",
        })
    }

    /// The presentation values of definition value number `index` (none, a text, or a text and
    /// a number), each with its `presentation` when `expand`.
    pub fn presentation_values(&self, index: usize, expand: bool) -> Vec<Value> {
        if let Some(stored) = &self.stored {
            return stored.presentation_values(index, expand);
        }
        let mut rng = SplitMix(self.seed ^ (index as u64).wrapping_mul(0x9E37) ^ 0x9E5);
        (0..index % 3)
            .map(|n| {
                let (kind, value, presentation, label) = if n == 0 {
                    (
                        "groupPolicyPresentationValueText",
                        json!(format!("https://intranet.example/{}", rng.below(100))),
                        "groupPolicyPresentationTextBox",
                        "Home page URL:",
                    )
                } else {
                    (
                        "groupPolicyPresentationValueDecimal",
                        json!(64 * (1 + rng.below(8))),
                        "groupPolicyPresentationDecimalTextBox",
                        "Cache size (MB):",
                    )
                };
                let mut item = json!({
                    "@odata.type": format!("#microsoft.graph.{kind}"),
                    "id": rng.guid(),
                    "value": value,
                    "createdDateTime": timestamp(self.created_secs),
                    "lastModifiedDateTime": timestamp(self.modified_secs),
                });
                let presentation_id = rng.guid();
                if let (true, Value::Object(fields)) = (expand, &mut item) {
                    fields.insert(
                        "presentation".into(),
                        json!({
                            "@odata.type": format!("#microsoft.graph.{presentation}"),
                            "id": presentation_id,
                            "label": label,
                            "lastModifiedDateTime": timestamp(EPOCH_2023),
                        }),
                    );
                }
                item
            })
            .collect()
    }

    /// Keeps only the `$select`ed properties (plus `id` and `@odata.type`, which Graph always
    /// sends). Names match as Graph matches them, whatever their case; that they are
    /// properties of the type was checked before (`schema::EntityType::check_query`).
    pub fn select(item: Value, select: Option<&str>) -> Value {
        let (Some(select), Value::Object(fields)) = (select, &item) else {
            return item;
        };
        let wanted: Vec<&str> = select
            .split(',')
            .map(|name| name.trim().rsplit('/').next().unwrap_or_default())
            .collect();
        if wanted.contains(&"*") {
            return item;
        }
        let kept: Map<String, Value> = fields
            .iter()
            .filter(|(k, _)| {
                k.as_str() == "id"
                    || k.as_str() == "@odata.type"
                    || wanted.iter().any(|w| w.eq_ignore_ascii_case(k))
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Value::Object(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_tenant() {
        let a = FakeTenant::generate(7, "t1", 50);
        let b = FakeTenant::generate(7, "t1", 50);
        let c = FakeTenant::generate(7, "t2", 50);
        assert_eq!(a.policies, b.policies);
        assert_ne!(a.policies[0].id, c.policies[0].id);
        assert_eq!(a.policies[0].to_json(), b.policies[0].to_json());
    }

    #[test]
    fn known_paging_targets_exist() {
        let tenant = FakeTenant::generate(1, "t", 8);
        assert_eq!(tenant.policies[0].kind, Kind::ConfigurationPolicy);
        assert_eq!(tenant.policies[0].child_count, 60);
        assert_eq!(tenant.policies[3].kind, Kind::GroupPolicyConfiguration);
        assert_eq!(tenant.policies[3].child_count, 30);
        let id = tenant.policies[1].id.clone();
        assert!(tenant.find(Kind::DeviceConfiguration, &id).is_some());
        assert!(tenant.find(Kind::CompliancePolicy, &id).is_none());
    }

    #[test]
    fn edits_change_only_the_named_policy() {
        let tenant = FakeTenant::generate(5, "t", 10);
        let id = tenant.policies[2].id.clone();
        let renamed = tenant
            .with_renamed(&id, "Renamed")
            .expect("the policy exists");
        assert_eq!(renamed.policies[2].name, "Renamed");
        assert!(renamed.policies[2].modified_secs > tenant.policies[2].modified_secs);
        assert_eq!(renamed.policies[3], tenant.policies[3]);
        let removed = tenant.without(&id).expect("the policy exists");
        assert_eq!(removed.policies.len(), 9);
        assert!(removed.find(Kind::ConfigurationPolicy, &id).is_none());
        assert_eq!(
            removed.find(Kind::DeviceConfiguration, &tenant.policies[1].id),
            Some(&tenant.policies[1])
        );
        assert!(tenant.with_renamed("missing", "x").is_none());
        assert!(tenant.without("missing").is_none());
    }

    #[test]
    fn ids_are_guids() {
        let tenant = FakeTenant::generate(3, "t", 20);
        for p in &tenant.policies {
            let groups: Vec<usize> = p.id.split('-').map(str::len).collect();
            assert_eq!(groups, vec![8, 4, 4, 4, 12], "{}", p.id);
        }
    }
}
