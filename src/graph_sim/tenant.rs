//! Deterministic fake tenants: the same seed and tenant id always give the same policies, ids,
//! names, settings and timestamps, so an unchanged policy hashes the same across captures.

use std::collections::HashMap;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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
    pub assignment_count: usize,
    seed: u64,
}

/// All policies of one tenant.
pub struct FakeTenant {
    pub policies: Vec<SimPolicy>,
    by_id: HashMap<String, usize>,
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

impl FakeTenant {
    /// Generates `count` policies for a tenant. The first settings catalog policy has 60 settings
    /// (three pages) and the first administrative template 30 definition values (two pages), so
    /// paging tests have a known target.
    pub fn generate(seed: u64, tenant_id: &str, count: usize) -> Self {
        let mut rng = SplitMix(seed ^ fnv(tenant_id));
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
            policies.push(SimPolicy {
                id: rng.guid(),
                kind,
                name: format!("{area} {flavour} {:04}", index + 1),
                platform,
                created_secs,
                modified_secs,
                child_count,
                assignment_count: rng.below(4) as usize,
                seed: rng.next(),
            });
        }
        Self::from_policies(policies)
    }

    fn from_policies(policies: Vec<SimPolicy>) -> Self {
        let by_id = policies
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Self { policies, by_id }
    }

    /// A copy with policy `id` renamed and its `lastModifiedDateTime` a day later, as an edit in
    /// Intune leaves it; `None` if there is no such policy.
    pub fn with_renamed(&self, id: &str, name: &str) -> Option<Self> {
        let index = *self.by_id.get(id)?;
        let mut policies = self.policies.clone();
        policies[index].name = name.to_owned();
        policies[index].modified_secs += 86_400;
        Some(Self::from_policies(policies))
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
        Some(Self::from_policies(policies))
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
}

fn timestamp(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "2023-01-01T00:00:00Z".to_owned())
}

impl SimPolicy {
    /// The platform word.
    pub fn platform(&self) -> &'static str {
        PLATFORMS[self.platform]
    }

    /// The policy as Graph returns it from its get endpoint.
    pub fn to_json(&self) -> Value {
        let platform = self.platform();
        let mut item = json!({
            "id": self.id,
            "description": format!("Managed by the platform team ({platform})"),
            "createdDateTime": timestamp(self.created_secs),
            "lastModifiedDateTime": timestamp(self.modified_secs),
            "roleScopeTagIds": ["0"],
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
            Kind::DeviceConfiguration => {
                fields.insert(
                    "@odata.type".into(),
                    json!(format!(
                        "#microsoft.graph.{odata_platform}GeneralConfiguration"
                    )),
                );
                fields.insert("displayName".into(), json!(self.name));
                fields.insert("version".into(), json!(1 + self.seed % 9));
                fields.insert(
                    "passwordRequired".into(),
                    json!(self.seed.is_multiple_of(2)),
                );
                fields.insert("passwordMinimumLength".into(), json!(6 + self.seed % 10));
            }
            Kind::CompliancePolicy => {
                fields.insert(
                    "@odata.type".into(),
                    json!(format!("#microsoft.graph.{odata_platform}CompliancePolicy")),
                );
                fields.insert("displayName".into(), json!(self.name));
                fields.insert("version".into(), json!(1 + self.seed % 5));
                fields.insert(
                    "osMinimumVersion".into(),
                    json!(format!("{}.0", 10 + self.seed % 8)),
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
        let mut rng = SplitMix(self.seed ^ 0xA551);
        (0..self.assignment_count)
            .map(|_| {
                let group = rng.guid();
                json!({
                    "id": format!("{}_{group}", self.id),
                    "target": {
                        "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                        "groupId": group,
                        "deviceAndAppManagementAssignmentFilterType": "none"
                    }
                })
            })
            .collect()
    }

    /// Child number `index`: a settings catalog setting or a definition value.
    pub fn child(&self, index: usize, expand_definition: bool) -> Value {
        let mut rng = SplitMix(self.seed ^ (index as u64).wrapping_mul(0x9E37));
        match self.kind {
            Kind::GroupPolicyConfiguration => {
                let mut value = json!({
                    "id": rng.guid(),
                    "enabled": rng.below(4) != 0,
                    "configurationType": "policy",
                    "createdDateTime": timestamp(self.created_secs),
                    "lastModifiedDateTime": timestamp(self.modified_secs),
                });
                if expand_definition {
                    if let Value::Object(fields) = &mut value {
                        fields.insert(
                            "definition".into(),
                            json!({
                                "id": rng.guid(),
                                "displayName": format!("Administrative setting {}", index + 1),
                                "classType": if index.is_multiple_of(2) { "machine" } else { "user" },
                                "categoryPath": "\\Windows Components\\Microsoft Edge",
                            }),
                        );
                    }
                }
                value
            }
            _ => {
                let definition = format!(
                    "device_vendor_msft_policy_config_simulated_setting{}",
                    index + 1
                );
                json!({
                    "id": index.to_string(),
                    "settingInstance": {
                        "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
                        "settingDefinitionId": definition,
                        "choiceSettingValue": {
                            "value": format!("{definition}_{}", rng.below(3)),
                            "children": []
                        }
                    }
                })
            }
        }
    }

    /// Keeps only the `$select`ed properties (plus `id` and `@odata.type`, which Graph always sends).
    pub fn select(item: Value, select: Option<&str>) -> Value {
        let (Some(select), Value::Object(fields)) = (select, &item) else {
            return item;
        };
        let wanted: Vec<&str> = select.split(',').map(str::trim).collect();
        let kept: Map<String, Value> = fields
            .iter()
            .filter(|(k, _)| {
                k.as_str() == "id" || k.as_str() == "@odata.type" || wanted.contains(&k.as_str())
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
