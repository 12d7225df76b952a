//! The policy type registry: for each supported Intune policy type, its Graph endpoints, the
//! `$select`/`$expand` used, and the sub-collection its snapshot needs.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

use crate::domain::Timestamp;

pub use crate::domain::PolicyType;

/// A child collection read page by page after the policy itself.
#[derive(Debug)]
pub struct SubCollection {
    /// Path segment under the policy: `settings` or `definitionValues`.
    pub segment: &'static str,
    /// `$expand` on the child request, e.g. each definition value's `definition`.
    pub expand: Option<&'static str>,
    /// A collection under each child, read for every child: segment and `$expand`
    /// (administrative templates: `presentationValues` with their `presentation`).
    pub per_child: Option<(&'static str, &'static str)>,
}

/// Where a policy type lives in Graph and how it is read.
#[derive(Debug)]
pub struct PolicyTypeSpec {
    /// Collection path relative to the Graph base, e.g. `deviceManagement/configurationPolicies`.
    pub collection: &'static str,
    /// `$select` of the inventory list: what the picker shows, and `createdDateTime` (which every
    /// supported type has), by which a restore tells the policy its lost create made from one
    /// made otherwise.
    pub list_select: &'static str,
    /// The property holding the display name (`name` for settings catalog).
    pub name_property: &'static str,
    /// `$expand` of the policy request besides `assignments` (compliance actions).
    pub item_expand: Option<&'static str>,
    /// Paged children that are part of the snapshot.
    pub sub_collection: Option<SubCollection>,
}

static SETTINGS_CATALOG: PolicyTypeSpec = PolicyTypeSpec {
    collection: "deviceManagement/configurationPolicies",
    list_select: "id,name,platforms,createdDateTime,lastModifiedDateTime",
    name_property: "name",
    item_expand: None,
    // The definitions carry the names the viewer shows; they are stored apart from the content.
    sub_collection: Some(SubCollection {
        segment: "settings",
        expand: Some("settingDefinitions"),
        per_child: None,
    }),
};
static DEVICE_CONFIGURATION: PolicyTypeSpec = PolicyTypeSpec {
    collection: "deviceManagement/deviceConfigurations",
    list_select: "id,displayName,createdDateTime,lastModifiedDateTime",
    name_property: "displayName",
    item_expand: None,
    sub_collection: None,
};
static COMPLIANCE: PolicyTypeSpec = PolicyTypeSpec {
    collection: "deviceManagement/deviceCompliancePolicies",
    list_select: "id,displayName,createdDateTime,lastModifiedDateTime",
    name_property: "displayName",
    // A compliance policy cannot be created without its block action: restore needs them.
    item_expand: Some("scheduledActionsForRule($expand=scheduledActionConfigurations)"),
    sub_collection: None,
};
static ADMINISTRATIVE_TEMPLATE: PolicyTypeSpec = PolicyTypeSpec {
    collection: "deviceManagement/groupPolicyConfigurations",
    list_select: "id,displayName,createdDateTime,lastModifiedDateTime",
    name_property: "displayName",
    item_expand: None,
    sub_collection: Some(SubCollection {
        segment: "definitionValues",
        expand: Some("definition"),
        per_child: Some(("presentationValues", "presentation")),
    }),
};

impl PolicyType {
    /// Its Graph endpoints.
    pub fn spec(self) -> &'static PolicyTypeSpec {
        match self {
            Self::SettingsCatalog => &SETTINGS_CATALOG,
            Self::DeviceConfiguration => &DEVICE_CONFIGURATION,
            Self::Compliance => &COMPLIANCE,
            Self::AdministrativeTemplate => &ADMINISTRATIVE_TEMPLATE,
        }
    }
}

impl PolicyTypeSpec {
    /// The inventory list URL (first page).
    pub fn list_url(&self, graph_base: &str) -> String {
        format!(
            "{}/{}?$select={}",
            graph_base.trim_end_matches('/'),
            self.collection,
            self.list_select
        )
    }

    /// The policy URL, with its assignments inlined when they are part of the snapshot and
    /// the type's own `$expand`.
    pub fn item_url(&self, graph_base: &str, graph_id: &str, include_assignments: bool) -> String {
        let base = format!(
            "{}/{}/{graph_id}",
            graph_base.trim_end_matches('/'),
            self.collection
        );
        let expand: Vec<&str> = include_assignments
            .then_some("assignments")
            .into_iter()
            .chain(self.item_expand)
            .collect();
        if expand.is_empty() {
            base
        } else {
            format!("{base}?$expand={}", expand.join(","))
        }
    }

    /// The first page of the collection under one child (its `per_child`), if the type has one.
    pub fn per_child_url(
        &self,
        graph_base: &str,
        graph_id: &str,
        child_id: &str,
    ) -> Option<(&'static str, String)> {
        let sub = self.sub_collection.as_ref()?;
        let (segment, expand) = sub.per_child?;
        Some((
            segment,
            format!(
                "{}/{}/{graph_id}/{}/{child_id}/{segment}?$expand={expand}",
                graph_base.trim_end_matches('/'),
                self.collection,
                sub.segment
            ),
        ))
    }

    /// The first page of the policy's sub-collection, if the type has one.
    pub fn sub_collection_url(
        &self,
        graph_base: &str,
        graph_id: &str,
    ) -> Option<(&'static str, String)> {
        let sub = self.sub_collection.as_ref()?;
        let mut url = format!(
            "{}/{}/{graph_id}/{}",
            graph_base.trim_end_matches('/'),
            self.collection,
            sub.segment
        );
        if let Some(expand) = sub.expand {
            url.push_str("?$expand=");
            url.push_str(expand);
        }
        Some((sub.segment, url))
    }
}

/// The longest display name stored, in characters. A name is cut there (ending in `…`): 500
/// characters are at most 2,000 bytes, so an index entry of (tenant, name, id) stays under
/// PostgreSQL's B-tree limit of 2,704 bytes even for a name that does not compress.
pub const MAX_DISPLAY_NAME_CHARS: usize = 500;

/// The name shown for a policy Graph lists without one (or with one of control characters only).
const UNNAMED: &str = "(unnamed policy)";

/// Whether `id` can be a Graph id: 1–128 ASCII letters, digits, `-` and `_` (GUIDs and the
/// `guid_guid` ids of some collections). Only such an id is stored or put into a URL path.
pub fn is_graph_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A name from Graph made storable in a text column of either engine: control characters
/// (NUL, which PostgreSQL refuses in text, among them) dropped, except that tabs and line
/// breaks become a space; blanks trimmed; cut on a character boundary to `max_chars` (ending
/// in `…`); `None` when nothing is left.
pub fn storable_name(raw: &str, max_chars: usize) -> Option<String> {
    let mut cleaned = String::with_capacity(raw.len().min(max_chars * 4));
    for c in raw.chars() {
        match c {
            '\t' | '\n' | '\r' => cleaned.push(' '),
            c if c.is_control() => {}
            c => cleaned.push(c),
        }
    }
    let trimmed = cleaned.trim();
    if trimmed.is_empty() || max_chars == 0 {
        return None;
    }
    match trimmed.char_indices().nth(max_chars) {
        None => Some(trimmed.to_owned()),
        Some(_) => {
            let keep: String = trimmed.chars().take(max_chars - 1).collect();
            Some(format!("{}…", keep.trim_end()))
        }
    }
}

/// One row of the tenant's inventory as Graph lists it, every text ready to store: the id is a
/// Graph id ([`is_graph_id`]), the name passed [`storable_name`], the platform is one of a fixed
/// set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyListing {
    pub policy_type: PolicyType,
    pub graph_id: String,
    pub display_name: String,
    pub platform: String,
    pub last_modified_at: Option<Timestamp>,
    /// When Graph created the policy (`createdDateTime`); not stored in the inventory.
    #[serde(default)]
    pub created_at: Option<Timestamp>,
}

impl PolicyListing {
    /// Reads a list entry; `None` when it has no id or one that is not a Graph id (such an
    /// entry cannot be captured later, and its id is never stored).
    pub fn from_graph(policy_type: PolicyType, item: &Value) -> Option<Self> {
        let graph_id = item.get("id")?.as_str()?;
        if !is_graph_id(graph_id) {
            // The id itself stays out of the log: it is whatever the tenant sent.
            tracing::warn!(
                policy_type = policy_type.as_str(),
                id_bytes = graph_id.len(),
                "Graph listed a policy whose id is not a Graph id; skipped"
            );
            return None;
        }
        let graph_id = graph_id.to_owned();
        let display_name = item
            .get(policy_type.spec().name_property)
            .and_then(Value::as_str)
            .and_then(|name| storable_name(name, MAX_DISPLAY_NAME_CHARS))
            .unwrap_or_else(|| UNNAMED.to_owned());
        let at = |property: &str| {
            item.get(property)
                .and_then(Value::as_str)
                .and_then(parse_rfc3339)
        };
        Some(Self {
            policy_type,
            graph_id,
            display_name,
            platform: platform_of(policy_type, item),
            last_modified_at: at("lastModifiedDateTime"),
            created_at: at("createdDateTime"),
        })
    }
}

/// The platform the picker filters on: settings catalog names it, the classic types encode it
/// in their `@odata.type`, administrative templates are Windows only.
fn platform_of(policy_type: PolicyType, item: &Value) -> String {
    let raw = match policy_type {
        PolicyType::SettingsCatalog => item.get("platforms").and_then(Value::as_str).unwrap_or(""),
        PolicyType::AdministrativeTemplate => "windows10",
        PolicyType::DeviceConfiguration | PolicyType::Compliance => item
            .get("@odata.type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim_start_matches("#microsoft.graph."),
    };
    let lower = raw.to_ascii_lowercase();
    let platform = if lower.starts_with("windows") {
        "windows10"
    } else if lower.starts_with("ios") {
        "iOS"
    } else if lower.starts_with("macos") {
        "macOS"
    } else if lower.starts_with("android") || lower.starts_with("aosp") {
        "android"
    } else {
        "unknown"
    };
    platform.to_owned()
}

/// Parses Graph's `2024-05-01T12:34:56.789Z` (fraction and offset optional); `None` if malformed.
fn parse_rfc3339(raw: &str) -> Option<Timestamp> {
    let bytes = raw.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = raw.get(from..from + len)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 19 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b'T' {
        return None;
    }
    let year = i32::try_from(num(0, 4)?).ok()?;
    let month = Month::try_from(u8::try_from(num(5, 2)?).ok()?).ok()?;
    let date = Date::from_calendar_date(year, month, u8::try_from(num(8, 2)?).ok()?).ok()?;
    let (h, m, s) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut rest = &raw[19..];
    let mut millis = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        let padded = format!("{:0<3}", &fraction[..digits.min(3)]);
        millis = padded.parse().ok()?;
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" | "" => UtcOffset::UTC,
        _ => {
            let sign: i8 = if rest.starts_with('-') { -1 } else { 1 };
            let hours = i8::try_from(num(raw.len() - 5, 2)?).ok()?;
            let minutes = i8::try_from(num(raw.len() - 2, 2)?).ok()?;
            UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?
        }
    };
    let time = Time::from_hms_milli(
        u8::try_from(h).ok()?,
        u8::try_from(m).ok()?,
        u8::try_from(s).ok()?,
        u16::try_from(millis).ok()?,
    )
    .ok()?;
    let instant = PrimitiveDateTime::new(date, time).assume_offset(offset);
    let ms = instant.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn database_spellings_round_trip() {
        for t in PolicyType::ALL {
            assert_eq!(PolicyType::parse(t.as_str()), Some(t));
            assert_eq!(
                serde_json::to_value(t).expect("serializes"),
                json!(t.as_str())
            );
        }
    }

    #[test]
    fn urls_follow_the_registry() {
        let spec = PolicyType::SettingsCatalog.spec();
        assert_eq!(
            spec.list_url("https://g/beta/"),
            "https://g/beta/deviceManagement/configurationPolicies?$select=id,name,platforms,createdDateTime,lastModifiedDateTime"
        );
        assert_eq!(
            spec.item_url("https://g/beta", "abc", true),
            "https://g/beta/deviceManagement/configurationPolicies/abc?$expand=assignments"
        );
        let (segment, url) = PolicyType::AdministrativeTemplate
            .spec()
            .sub_collection_url("https://g/beta", "abc")
            .expect("admin templates have definition values");
        assert_eq!(segment, "definitionValues");
        assert!(url.ends_with("/groupPolicyConfigurations/abc/definitionValues?$expand=definition"));
        assert!(PolicyType::Compliance
            .spec()
            .sub_collection_url("https://g", "abc")
            .is_none());
        assert_eq!(
            PolicyType::Compliance.spec().item_url("https://g", "abc", true),
            "https://g/deviceManagement/deviceCompliancePolicies/abc?$expand=assignments,scheduledActionsForRule($expand=scheduledActionConfigurations)"
        );
        assert_eq!(
            PolicyType::AdministrativeTemplate
                .spec()
                .per_child_url("https://g", "abc", "v1"),
            Some((
                "presentationValues",
                "https://g/deviceManagement/groupPolicyConfigurations/abc/definitionValues/v1/presentationValues?$expand=presentation".to_owned()
            ))
        );
    }

    #[test]
    fn listings_read_name_platform_and_time() {
        let item = json!({
            "id": "1", "@odata.type": "#microsoft.graph.iosCompliancePolicy",
            "displayName": "iOS baseline", "lastModifiedDateTime": "2024-05-01T12:00:00.5Z",
            "createdDateTime": "2024-04-01T08:00:00Z"
        });
        let listing = PolicyListing::from_graph(PolicyType::Compliance, &item).expect("has an id");
        assert_eq!(listing.display_name, "iOS baseline");
        assert_eq!(listing.platform, "iOS");
        assert_eq!(listing.last_modified_at, Some(Timestamp(1_714_564_800_500)));
        assert_eq!(listing.created_at, Some(Timestamp(1_711_958_400_000)));
        assert!(
            PolicyListing::from_graph(PolicyType::Compliance, &json!({"displayName": "x"}))
                .is_none()
        );
    }

    #[test]
    fn listed_names_are_made_storable_and_odd_ids_are_skipped() {
        let listing =
            |item: Value| PolicyListing::from_graph(PolicyType::DeviceConfiguration, &item);
        let named = |name: &str| {
            listing(json!({"id": "a1", "displayName": name}))
                .expect("a Graph id")
                .display_name
        };
        assert_eq!(named("Base\u{0}line"), "Baseline");
        assert_eq!(
            named("Two\nlines\tand\u{7f}\u{85}more"),
            "Two lines andmore"
        );
        assert_eq!(named("\u{0}\u{1}"), UNNAMED);
        let long = named(&"é".repeat(4_000));
        assert_eq!(long.chars().count(), MAX_DISPLAY_NAME_CHARS);
        assert!(long.ends_with('…'));
        for id in [
            "",
            "../groups",
            "a/b",
            "a b",
            "a\u{0}b",
            "é",
            &"a".repeat(129),
        ] {
            assert_eq!(
                listing(json!({"id": id, "displayName": "x"})),
                None,
                "{id:?}"
            );
        }
        assert!(listing(json!({"id": "0f3c_9b2e-AA", "displayName": "x"})).is_some());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn any_name_becomes_storable(raw in ".*", long in proptest::collection::vec(proptest::prelude::any::<char>(), 0..1_200), max in 1usize..600) {
            for raw in [raw, long.into_iter().collect::<String>()] {
                match storable_name(&raw, max) {
                    None => proptest::prop_assert!(raw.chars().all(|c| c.is_control() || c.is_whitespace())),
                    Some(name) => {
                        proptest::prop_assert!(!name.is_empty());
                        proptest::prop_assert!(name.chars().count() <= max);
                        proptest::prop_assert!(!name.chars().any(char::is_control), "{name:?}");
                        proptest::prop_assert_eq!(name.trim(), name.as_str());
                        // Cleaning again changes nothing; a short clean name is kept as it is.
                        proptest::prop_assert_eq!(storable_name(&name, max), Some(name.clone()));
                        if raw.chars().count() <= max && !raw.chars().any(char::is_control) {
                            proptest::prop_assert_eq!(name.as_str(), raw.trim());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn timestamps_parse_with_offsets_and_reject_garbage() {
        assert_eq!(
            parse_rfc3339("1970-01-01T01:00:00+01:00"),
            Some(Timestamp(0))
        );
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:00.1234567Z"),
            Some(Timestamp(123))
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2024-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2024-01-01T00:00:00é"), None);
    }
}
