//! The normalised tree of a snapshot, which the readable view and the diff both walk.
//!
//! Each node may hold its own value (a setting's choice, a property's scalar) and entries
//! (properties, child settings, set members). Entries carry a machine key (what is compared) and
//! a readable label (what is shown, never compared). Building is one pass over the payload: set
//! members get their key from their content through a digest computed bottom-up, so nothing is
//! serialised twice and the work stays linear in the size of the snapshot.
//!
//! Entry keys never collide across shapes: list items are `[n]`, members of a multiset `=value`
//! (scalars) or `#digest` (anything else), and object keys are Graph property names or the key a
//! keyed set derives (definition ids, group ids, URIs), none of which start with those marks.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Number, Value};

use super::labels::{choice_label, humanize, odata_type_label, odata_type_name, setting_id_label};
use super::{
    CaptureFormat, CapturedPolicy, Coverage, FormatField, PolicyType, SectionKind, SettingNames,
    SECRET_TEXT,
};

/// A value in the tree.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Leaf {
    Bool(bool),
    Number(Number),
    Text(String),
    /// A secret: never captured in plain text, equal to every other secret.
    Secret,
    /// A set member that is there, whatever its content (an assignment to all devices, an empty
    /// group collection instance).
    Present,
}

impl Leaf {
    /// The normalised JSON of the value; secrets and presence render as objects that no Graph
    /// property can produce (their keys start with `@`, which normalisation drops).
    pub(crate) fn json(&self) -> Value {
        match self {
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(n) => Value::Number(n.clone()),
            Self::Text(s) => Value::String(s.clone()),
            Self::Secret => {
                let mut marker = Map::new();
                marker.insert("@secret".into(), Value::String("not captured".into()));
                Value::Object(marker)
            }
            Self::Present => Value::Object(Map::new()),
        }
    }

    fn digest(&self) -> u64 {
        match self {
            Self::Bool(b) => fnv(b'b', &[u8::from(*b)]),
            Self::Number(n) => fnv(b'n', n.to_string().as_bytes()),
            Self::Text(s) => fnv(b's', s.as_bytes()),
            Self::Secret => fnv(b'x', &[]),
            Self::Present => fnv(b'p', &[]),
        }
    }

    /// The member key of a scalar in a multiset.
    fn set_key(&self) -> Option<String> {
        match self {
            Self::Bool(b) => Some(format!("={b}")),
            Self::Number(n) => Some(format!("={n}")),
            Self::Text(s) => Some(format!("={s}")),
            Self::Secret | Self::Present => None,
        }
    }
}

/// A node's own value and how it reads.
#[derive(Debug, Clone)]
pub(crate) struct Own {
    pub leaf: Leaf,
    pub text: String,
}

impl Own {
    fn new(leaf: Leaf, text: impl Into<String>) -> Self {
        Self {
            leaf,
            text: text.into(),
        }
    }

    fn present() -> Self {
        Self::new(Leaf::Present, "")
    }

    fn secret() -> Self {
        Self::new(Leaf::Secret, SECRET_TEXT)
    }
}

/// How a node's entries compare and render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Keyed: properties, or set members keyed by what identifies them.
    Object,
    /// Ordered.
    List,
    /// A multiset: order is no change.
    Bag,
}

/// One node of the tree.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub own: Option<Own>,
    pub shape: Shape,
    /// In document order; keys are unique.
    pub entries: Vec<Entry>,
    /// Content digest (keys, values, shape; never labels), for set member keys.
    pub digest: u64,
}

/// A keyed child of a node.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub key: String,
    /// For a member that shares its key with others of its set (two notification actions, two
    /// OMA settings with one URI): that shared key, which [`Entry::key`] extends with ` (2)`, ….
    /// The diff pairs such members by content rather than by their made-up keys. Not part of
    /// any digest.
    pub base: Option<String>,
    pub label: String,
    /// Secondary text for a reader (a setting's definition id, a template's category).
    pub detail: Option<String>,
    /// Compared but not shown as a row (`@odata.type`).
    pub hidden: bool,
    /// Shown without a row of its own: its entries appear at its parent's depth.
    pub inline: bool,
    pub node: Node,
}

impl Entry {
    fn new(key: impl Into<String>, label: impl Into<String>, node: Node) -> Self {
        Self {
            key: key.into(),
            base: None,
            label: label.into(),
            detail: None,
            hidden: false,
            inline: false,
            node,
        }
    }

    fn with_detail(mut self, detail: Option<String>) -> Self {
        self.detail = detail;
        self
    }
}

impl Node {
    /// A node, or `None` when it holds nothing (normalisation drops empty values).
    fn make(own: Option<Own>, shape: Shape, entries: Vec<Entry>) -> Option<Node> {
        if own.is_none() && entries.is_empty() {
            return None;
        }
        let own_digest = own.as_ref().map_or(0x5eed, |o| o.leaf.digest());
        let digest = if entries.is_empty() {
            mix(own_digest)
        } else {
            let body = match shape {
                // Sums keep the digest independent of entry order, without sorting.
                Shape::Object => entries.iter().fold(0u64, |acc, e| {
                    acc.wrapping_add(mix(
                        fnv(b'k', e.key.as_bytes()) ^ e.node.digest.rotate_left(17)
                    ))
                }),
                Shape::Bag => entries
                    .iter()
                    .fold(0u64, |acc, e| acc.wrapping_add(mix(e.node.digest ^ 0xba6))),
                Shape::List => entries
                    .iter()
                    .fold(0x11u64, |acc, e| mix(acc ^ e.node.digest)),
            };
            let tag = match shape {
                Shape::Object => 1,
                Shape::List => 2,
                Shape::Bag => 3,
            };
            mix(mix(own_digest) ^ mix(body ^ tag))
        };
        Some(Node {
            own,
            shape,
            entries,
            digest,
        })
    }

    /// A node holding nothing: what an absent part compares as.
    pub(crate) fn empty() -> Node {
        Node {
            own: None,
            shape: Shape::Object,
            entries: Vec::new(),
            digest: 0,
        }
    }

    fn leaf(leaf: Leaf, text: impl Into<String>) -> Node {
        Self::make(Some(Own::new(leaf, text)), Shape::Object, Vec::new())
            .unwrap_or_else(unreachable_node)
    }

    /// The same node with [`Leaf::Present`] as its own value when it has none, so a set member
    /// is never dropped for being empty.
    fn present(self) -> Node {
        if self.own.is_some() {
            return self;
        }
        Self::make(Some(Own::present()), self.shape, self.entries).unwrap_or_else(unreachable_node)
    }

    /// The normalised JSON of the node: its value, its entries (objects by key, lists in order,
    /// multisets sorted), or both as `{"@value", "@children"}`.
    pub(crate) fn render(&self) -> Value {
        let body = (!self.entries.is_empty()).then(|| match self.shape {
            Shape::Object => {
                let mut sorted: Vec<&Entry> = self.entries.iter().collect();
                sorted.sort_by(|a, b| a.key.cmp(&b.key));
                Value::Object(
                    sorted
                        .into_iter()
                        .map(|e| (e.key.clone(), e.node.render()))
                        .collect(),
                )
            }
            Shape::List => Value::Array(self.entries.iter().map(|e| e.node.render()).collect()),
            Shape::Bag => {
                let mut items: Vec<(String, Value)> = self
                    .entries
                    .iter()
                    .map(|e| {
                        let value = e.node.render();
                        (value.to_string(), value)
                    })
                    .collect();
                items.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Array(items.into_iter().map(|(_, v)| v).collect())
            }
        });
        match (&self.own, body) {
            (Some(own), None) => own.leaf.json(),
            (None, Some(body)) => body,
            (Some(own), Some(body)) => {
                let mut both = Map::new();
                both.insert("@value".into(), own.leaf.json());
                both.insert("@children".into(), body);
                Value::Object(both)
            }
            (None, None) => Value::Object(Map::new()),
        }
    }
}

/// `Node::make` only returns `None` for a node without value and entries; the callers above
/// always pass a value, so this is never reached. A node (rather than a panic) keeps user input
/// from ever crashing a page.
fn unreachable_node() -> Node {
    Node {
        own: Some(Own::present()),
        shape: Shape::Object,
        entries: Vec::new(),
        digest: 0,
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over a type tag and bytes: the same on every target (server and wasm).
fn fnv(tag: u8, bytes: &[u8]) -> u64 {
    let mut hash = (FNV_OFFSET ^ u64::from(tag)).wrapping_mul(FNV_PRIME);
    for byte in bytes {
        hash = (hash ^ u64::from(*byte)).wrapping_mul(FNV_PRIME);
    }
    hash
}

/// The splitmix64 finaliser: spreads the bits so sums of digests stay well mixed.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Makes keys unique: members that share a key (two equal scope tags, two OMA settings with one
/// URI) get ` (2)`, ` (3)`, … in digest order, which depends only on their content. Every member
/// of such a group keeps the shared key as its [`Entry::base`], so the diff can pair the members
/// of one group by content: an edit to one of them may move it to another place in digest order.
fn unique_keys(entries: &mut [Entry]) {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        groups.entry(entry.key.as_str()).or_default().push(index);
    }
    let mut repeated: Vec<(String, Vec<usize>)> = groups
        .into_iter()
        .filter(|(_, members)| members.len() > 1)
        .map(|(key, members)| (key.to_owned(), members))
        .collect();
    if repeated.is_empty() {
        return;
    }
    repeated.sort_by(|a, b| a.0.cmp(&b.0));
    let mut used: HashSet<String> = entries.iter().map(|e| e.key.clone()).collect();
    for (key, mut members) in repeated {
        members.sort_by_key(|&index| entries[index].node.digest);
        for &index in &members {
            entries[index].base = Some(key.clone());
        }
        let mut n = 2;
        for &index in &members[1..] {
            let mut candidate = format!("{key} ({n})");
            while used.contains(&candidate) {
                n += 1;
                candidate = format!("{key} ({n})");
            }
            n += 1;
            used.insert(candidate.clone());
            entries[index].key = candidate;
        }
    }
}

/// Property names that are noise everywhere: identity, timestamps and annotations.
fn is_noise(key: &str) -> bool {
    matches!(key, "id" | "createdDateTime" | "lastModifiedDateTime")
        || (key != "@odata.type" && key.contains('@'))
}

/// Policy properties that are noise at the policy's top level: Graph's edit counter and counts
/// derived from parts that are compared themselves.
const POLICY_NOISE: &[&str] = &["version", "settingCount", "isAssigned"];

/// Top-level payload keys that are bookkeeping, not policy content.
const PAYLOAD_META: &[&str] = &[
    "policyType",
    "policy",
    "settingDefinitions",
    "captureFormat",
    "captureOptions",
];

/// An object that holds a secret: an encrypted OMA setting or a secret setting value. Captures
/// drop such an object's `value`; the viewer and the diff read it as [`SECRET_TEXT`].
pub fn is_secret(map: &Map<String, Value>) -> bool {
    map.get("isEncrypted") == Some(&Value::Bool(true))
        || map.contains_key("valueState")
        || map
            .get("@odata.type")
            .and_then(Value::as_str)
            .is_some_and(|t| odata_type_name(t).ends_with("SecretSettingValue"))
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

fn str_of<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// The id inside an `@odata.bind` reference: `…/definitions('abc')` → `abc`.
fn bound_id(map: &Map<String, Value>, key: &str) -> Option<String> {
    let raw = str_of(map, key)?;
    let start = raw.rfind("('")? + 2;
    let end = raw[start..].find("')")? + start;
    Some(raw[start..end].to_owned()).filter(|s| !s.is_empty())
}

/// A gated part that was left out of a tree because the comparison's common format lacks it.
#[derive(Debug, Clone)]
pub(crate) struct Skipped {
    pub field: FormatField,
    pub path: Vec<String>,
    pub labels: Vec<String>,
}

/// One top-level part of the tree.
#[derive(Debug, Clone)]
pub(crate) struct SectionNode {
    pub kind: SectionKind,
    pub key: String,
    pub title: String,
    pub coverage: Coverage,
    pub node: Option<Node>,
}

/// A snapshot built into its normalised tree.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub sections: Vec<SectionNode>,
    pub skipped: Vec<Skipped>,
}

/// Builds the tree of `policy`, leaving out what `limit` (a capture format) does not record.
pub(crate) fn build(
    policy: &CapturedPolicy<'_>,
    names: &SettingNames,
    limit: CaptureFormat,
) -> Tree {
    let mut builder = Builder {
        names,
        limit,
        skipped: Vec::new(),
    };
    let sections = builder.sections(policy);
    Tree {
        sections,
        skipped: builder.skipped,
    }
}

struct Builder<'a> {
    names: &'a SettingNames,
    limit: CaptureFormat,
    skipped: Vec<Skipped>,
}

impl Builder<'_> {
    fn records(&self, field: FormatField) -> bool {
        field.since() <= self.limit
    }

    fn sections(&mut self, policy: &CapturedPolicy<'_>) -> Vec<SectionNode> {
        let family = policy.family;
        let empty = Map::new();
        let payload = policy.payload.as_object().unwrap_or(&empty);
        let object = payload
            .get("policy")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        // Parts that a capture may keep at the top level or inside the policy object.
        let settings_key = match family {
            PolicyType::SettingsCatalog => Some("settings"),
            PolicyType::AdministrativeTemplate => Some("definitionValues"),
            PolicyType::DeviceConfiguration | PolicyType::Compliance => None,
        };
        let actions_key = (family == PolicyType::Compliance).then_some("scheduledActionsForRule");
        let mut pulled: Vec<&str> = vec!["assignments", "roleScopeTagIds"];
        pulled.extend(settings_key);
        pulled.extend(actions_key);
        let find = |key: &str| payload.get(key).or_else(|| object.get(key));

        let mut sections = Vec::new();
        let mut skip: Vec<&str> = POLICY_NOISE.to_vec();
        skip.extend(pulled.iter().copied());
        let policy_title = match family {
            PolicyType::DeviceConfiguration | PolicyType::Compliance => "Settings",
            PolicyType::SettingsCatalog | PolicyType::AdministrativeTemplate => "Basics",
        };
        let policy_entries = self.fields(object, &skip);
        sections.push(SectionNode {
            kind: SectionKind::Policy,
            key: "policy".into(),
            title: policy_title.into(),
            coverage: Coverage::Captured,
            node: Node::make(None, Shape::Object, policy_entries),
        });

        if let Some(key) = settings_key {
            let value = find(key);
            let items = value
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let node = if family == PolicyType::SettingsCatalog {
                self.settings(items)
            } else {
                self.definition_values(items)
            };
            sections.push(SectionNode {
                kind: SectionKind::Settings,
                key: key.into(),
                title: "Settings".into(),
                coverage: captured_if(value.is_some()),
                node,
            });
        }

        if let Some(key) = actions_key {
            let field = FormatField::ComplianceActions;
            let value = find(key);
            let items = value
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let recorded = self.records(field);
            let node = self.keyed_array(key, items);
            if !recorded && node.is_some() {
                self.skipped.push(Skipped {
                    field,
                    path: vec![key.into()],
                    labels: vec![field.label().into()],
                });
            }
            sections.push(SectionNode {
                kind: SectionKind::ComplianceActions,
                key: key.into(),
                title: field.label().into(),
                coverage: if recorded {
                    Coverage::Captured
                } else {
                    Coverage::NotCapturedThen
                },
                node: node.filter(|_| recorded),
            });
        }

        let assignments = find("assignments");
        let items = assignments
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let node = self.assignments(items);
        sections.push(SectionNode {
            kind: SectionKind::Assignments,
            key: "assignments".into(),
            title: "Assignments".into(),
            coverage: captured_if(assignments.is_some()),
            node,
        });

        let tags = find("roleScopeTagIds");
        let items = tags
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        let node = self.scalar_bag(items, "Scope tag");
        sections.push(SectionNode {
            kind: SectionKind::ScopeTags,
            key: "roleScopeTagIds".into(),
            title: "Scope tags".into(),
            coverage: captured_if(tags.is_some()),
            node,
        });

        for (key, value) in payload {
            if PAYLOAD_META.contains(&key.as_str())
                || pulled.contains(&key.as_str())
                || is_noise(key)
            {
                continue;
            }
            let node = self.value(key, value);
            sections.push(SectionNode {
                kind: SectionKind::Other,
                key: key.clone(),
                title: humanize(key),
                coverage: Coverage::Captured,
                node,
            });
        }
        sections
    }

    /// Any JSON value, by the property name it sits under.
    fn value(&mut self, key: &str, value: &Value) -> Option<Node> {
        match value {
            Value::Null => None,
            Value::Bool(b) => Some(Node::leaf(Leaf::Bool(*b), yes_no(*b))),
            Value::Number(n) => Some(Node::leaf(Leaf::Number(n.clone()), n.to_string())),
            Value::String(s) if key == "@odata.type" => Some(Node::leaf(
                Leaf::Text(odata_type_name(s).to_owned()),
                odata_type_label(s),
            )),
            Value::String(s) => {
                let text = if s.is_empty() { "(empty)" } else { s.as_str() };
                Some(Node::leaf(Leaf::Text(s.clone()), text))
            }
            Value::Array(items) => self.array(key, items),
            Value::Object(map) => {
                let entries = self.fields(map, &[]);
                Node::make(None, Shape::Object, entries)
            }
        }
    }

    /// The properties of an object, minus noise and `skip`. A secret's value reads as a secret.
    fn fields(&mut self, map: &Map<String, Value>, skip: &[&str]) -> Vec<Entry> {
        let secret = is_secret(map);
        let mut entries = Vec::with_capacity(map.len());
        for (key, value) in map {
            if is_noise(key) || skip.contains(&key.as_str()) {
                continue;
            }
            if secret && matches!(key.as_str(), "valueState" | "secretReferenceValueId") {
                continue;
            }
            let node = if secret && key == "value" {
                Some(Node::leaf(Leaf::Secret, SECRET_TEXT))
            } else {
                self.value(key, value)
            };
            if let Some(node) = node {
                let mut entry = Entry::new(key.clone(), humanize(key), node);
                entry.hidden = key == "@odata.type";
                // A rule's actions read as the rule's content.
                entry.inline = key == "scheduledActionConfigurations";
                entries.push(entry);
            }
        }
        if secret && !map.contains_key("value") && !skip.contains(&"value") {
            entries.push(Entry::new(
                "value",
                "Value",
                Node::leaf(Leaf::Secret, SECRET_TEXT),
            ));
        }
        entries
    }

    /// An array: set-like ones by their name, every other one in order.
    fn array(&mut self, key: &str, items: &[Value]) -> Option<Node> {
        match key {
            "roleScopeTagIds" => self.scalar_bag(items, "Scope tag"),
            "notificationMessageCCList" => self.scalar_bag(items, "Recipient group"),
            "omaSettings" | "scheduledActionsForRule" | "scheduledActionConfigurations" => {
                self.keyed_array(key, items)
            }
            _ => {
                let entries: Vec<Entry> = items
                    .iter()
                    .filter_map(|item| self.value("", item))
                    .enumerate()
                    .map(|(index, node)| {
                        Entry::new(format!("[{index}]"), format!("Item {}", index + 1), node)
                    })
                    .collect();
                Node::make(None, Shape::List, entries)
            }
        }
    }

    /// A multiset of any values: members keyed by their content.
    fn bag(&mut self, members: Vec<Node>, item_label: &str) -> Option<Node> {
        let mut entries: Vec<Entry> = members
            .into_iter()
            .enumerate()
            .map(|(index, node)| {
                let node = node.present();
                let key = match (&node.own, node.entries.is_empty()) {
                    (Some(own), true) => own.leaf.set_key(),
                    _ => None,
                }
                .unwrap_or_else(|| digest_key(&node));
                Entry::new(key, format!("{item_label} {}", index + 1), node)
            })
            .collect();
        unique_keys(&mut entries);
        Node::make(None, Shape::Bag, entries)
    }

    fn scalar_bag(&mut self, items: &[Value], item_label: &str) -> Option<Node> {
        let members = items.iter().filter_map(|v| self.value("", v)).collect();
        self.bag(members, item_label)
    }

    /// A set of members keyed by what identifies them.
    fn keyed(entries: Vec<Entry>) -> Option<Node> {
        let mut entries = entries;
        unique_keys(&mut entries);
        Node::make(None, Shape::Object, entries)
    }

    /// Arrays keyed by one property of their members: OMA settings by URI, compliance rules by
    /// rule name, compliance actions by action type.
    fn keyed_array(&mut self, key: &str, items: &[Value]) -> Option<Node> {
        let (id_key, fallback) = match key {
            "omaSettings" => ("omaUri", "OMA setting"),
            "scheduledActionsForRule" => ("ruleName", "Rule"),
            _ => ("actionType", "Action"),
        };
        let mut entries = Vec::new();
        for item in items {
            let Some(map) = item.as_object() else {
                continue;
            };
            let id = str_of(map, id_key);
            let mut skip = vec![id_key];
            let (own, label, detail) = if key == "omaSettings" {
                // The OMA setting's value is its row's value, its name the label.
                let own = if is_secret(map) {
                    Some(Own::secret())
                } else {
                    self.scalar_own(map.get("value"))
                };
                if own.is_some() || map.get("value").is_some_and(Value::is_null) {
                    skip.push("value");
                }
                let label = str_of(map, "displayName").or(id).unwrap_or(fallback);
                (own, label.to_owned(), id.map(str::to_owned))
            } else {
                (None, id.map_or_else(|| fallback.to_owned(), humanize), None)
            };
            let fields = self.fields(map, &skip);
            let node = member(own, Shape::Object, fields);
            let key = id.map_or_else(|| digest_key(&node), str::to_owned);
            entries.push(Entry::new(key, label, node).with_detail(detail));
        }
        Self::keyed(entries)
    }

    /// A scalar as a node's own value; `None` for anything else (which then stays an entry).
    fn scalar_own(&mut self, value: Option<&Value>) -> Option<Own> {
        match value? {
            Value::Array(_) | Value::Object(_) => None,
            scalar => self.value("value", scalar).and_then(|n| n.own),
        }
    }

    /// Settings catalog settings, keyed by definition id at every level.
    fn settings(&mut self, items: &[Value]) -> Option<Node> {
        let mut entries = Vec::with_capacity(items.len());
        for item in items {
            let Some(map) = item.as_object() else {
                continue;
            };
            match map.get("settingInstance").and_then(Value::as_object) {
                Some(instance) => entries.push(self.setting(instance, None)),
                None => {
                    let fields = self.fields(map, &["settingDefinitions"]);
                    let node = member(None, Shape::Object, fields);
                    entries.push(Entry::new(digest_key(&node), "Setting", node));
                }
            }
        }
        Self::keyed(entries)
    }

    /// One setting instance: its value, child settings and collection members.
    fn setting(&mut self, instance: &Map<String, Value>, parent: Option<&str>) -> Entry {
        let id = str_of(instance, "settingDefinitionId").unwrap_or("");
        let label = match self.names.get(id) {
            Some(name) => name.to_owned(),
            None if id.is_empty() => "Setting".to_owned(),
            None => setting_id_label(id, parent),
        };
        let mut parts: Vec<Node> = Vec::new();
        for (key, value) in instance {
            let part = match key.as_str() {
                "choiceSettingValue" => self.choice_value(value, id),
                "simpleSettingValue" => self.simple_value(value),
                "groupSettingValue" => self.group_value(value, id),
                "groupSettingCollectionValue" => {
                    let members = self.members(value, |b, v| b.group_value(v, id));
                    self.bag(members, "Instance")
                }
                "simpleSettingCollectionValue" => {
                    let members = self.members(value, |b, v| b.simple_value(v));
                    self.bag(members, "Value")
                }
                "choiceSettingCollectionValue" => {
                    let members = self.members(value, |b, v| b.choice_value(v, id));
                    self.bag(members, "Value")
                }
                // The definition id is the key; the type is implied by the value property;
                // template links are fixed by the template.
                _ => None,
            };
            parts.extend(part);
        }
        // An instance has one value property; several (never sent by Graph) merge their entries.
        let node = match parts.len() {
            0 => Node::leaf(Leaf::Present, ""),
            1 => parts.pop().map_or_else(unreachable_node, Node::present),
            _ => {
                let mut entries = Vec::new();
                for (index, part) in parts.into_iter().enumerate() {
                    entries.push(Entry::new(format!("[{index}]"), "Value", part));
                }
                Node::make(None, Shape::List, entries).map_or_else(unreachable_node, Node::present)
            }
        };
        let key = if id.is_empty() {
            digest_key(&node)
        } else {
            id.to_owned()
        };
        let detail = (!id.is_empty()).then(|| id.to_owned());
        Entry::new(key, label, node).with_detail(detail)
    }

    fn members(
        &mut self,
        value: &Value,
        mut each: impl FnMut(&mut Self, &Value) -> Option<Node>,
    ) -> Vec<Node> {
        let items = value.as_array().map_or(&[][..], Vec::as_slice);
        items
            .iter()
            .filter_map(|item| {
                each(self, item).or_else(|| item.is_object().then(|| Node::leaf(Leaf::Present, "")))
            })
            .collect()
    }

    /// Child setting instances, keyed by definition id.
    fn children(&mut self, value: &Map<String, Value>, parent: &str) -> Vec<Entry> {
        let items = value
            .get("children")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice);
        items
            .iter()
            .filter_map(Value::as_object)
            .map(|child| self.setting(child, Some(parent)))
            .collect()
    }

    /// Value properties besides the children and a scalar value (`note` of a reference
    /// value, …); the type is implied, template links are fixed by the template.
    fn value_extras(&mut self, value: &Map<String, Value>, own_value: bool) -> Vec<Entry> {
        let mut skip = vec!["children", "@odata.type", "settingValueTemplateReference"];
        if own_value {
            skip.push("value");
        }
        self.fields(value, &skip)
    }

    fn choice_value(&mut self, value: &Value, setting_id: &str) -> Option<Node> {
        let map = value.as_object()?;
        let own = map.get("value").and_then(Value::as_str).map(|choice| {
            let text = self
                .names
                .get(choice)
                .map_or_else(|| choice_label(choice, setting_id), str::to_owned);
            Own::new(Leaf::Text(choice.to_owned()), text)
        });
        let own_value = own.is_some() || map.get("value").is_none_or(Value::is_null);
        let mut entries = self.children(map, setting_id);
        entries.extend(self.value_extras(map, own_value));
        unique_keys(&mut entries);
        Node::make(own, Shape::Object, entries)
    }

    fn simple_value(&mut self, value: &Value) -> Option<Node> {
        let map = value.as_object()?;
        let own = if is_secret(map) {
            Some(Own::secret())
        } else {
            self.scalar_own(map.get("value"))
        };
        let own_value = own.is_some() || map.get("value").is_none_or(Value::is_null);
        let entries = self.value_extras(map, own_value);
        Node::make(own, Shape::Object, entries)
    }

    fn group_value(&mut self, value: &Value, setting_id: &str) -> Option<Node> {
        let map = value.as_object()?;
        let mut entries = self.children(map, setting_id);
        entries.extend(self.value_extras(map, false));
        unique_keys(&mut entries);
        Node::make(None, Shape::Object, entries)
    }

    /// Administrative template values, keyed by definition id; the definition itself (names,
    /// category) is shown, never compared.
    fn definition_values(&mut self, items: &[Value]) -> Option<Node> {
        let mut entries = Vec::with_capacity(items.len());
        for item in items {
            let Some(map) = item.as_object() else {
                continue;
            };
            let definition = map.get("definition").and_then(Value::as_object);
            let id = definition
                .and_then(|d| str_of(d, "id").map(str::to_owned))
                .or_else(|| bound_id(map, "definition@odata.bind"));
            let label = definition
                .and_then(|d| str_of(d, "displayName"))
                .map(str::to_owned)
                .or_else(|| id.clone())
                .unwrap_or_else(|| "Setting".to_owned());
            let detail = definition.and_then(|d| {
                let category = str_of(d, "categoryPath");
                let class = str_of(d, "classType").map(humanize);
                match (category, class) {
                    (Some(c), Some(k)) => Some(format!("{c} ({k})")),
                    (Some(c), None) => Some(c.to_owned()),
                    (None, Some(k)) => Some(k),
                    (None, None) => None,
                }
            });
            let own = map.get("enabled").and_then(Value::as_bool).map(|enabled| {
                let text = if enabled { "Enabled" } else { "Disabled" };
                Own::new(Leaf::Bool(enabled), text)
            });
            let mut fields = self.fields(map, &["enabled", "definition", "presentationValues"]);
            let field = FormatField::PresentationValues;
            let values = map
                .get("presentationValues")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            let presentation = self.presentation_values(values);
            if let Some(node) = presentation {
                if self.records(field) {
                    let mut entry = Entry::new("presentationValues", field.label(), node);
                    entry.inline = true;
                    fields.push(entry);
                } else {
                    self.skipped.push(Skipped {
                        field,
                        path: vec![
                            "definitionValues".into(),
                            id.clone().unwrap_or_default(),
                            "presentationValues".into(),
                        ],
                        labels: vec!["Settings".into(), label.clone(), field.label().into()],
                    });
                }
            }
            let node = member(own, Shape::Object, fields);
            let key = id.unwrap_or_else(|| digest_key(&node));
            entries.push(Entry::new(key, label, node).with_detail(detail));
        }
        Self::keyed(entries)
    }

    /// Presentation values keyed by presentation id; the presentation gives the label.
    fn presentation_values(&mut self, items: &[Value]) -> Option<Node> {
        let mut entries = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let Some(map) = item.as_object() else {
                continue;
            };
            let presentation = map.get("presentation").and_then(Value::as_object);
            let id = presentation
                .and_then(|p| str_of(p, "id").map(str::to_owned))
                .or_else(|| bound_id(map, "presentation@odata.bind"));
            let label = presentation
                .and_then(|p| str_of(p, "label"))
                .map(|l| l.trim().trim_end_matches(':').trim().to_owned())
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| format!("Option {}", index + 1));
            let own = self.scalar_own(map.get("value"));
            let mut skip = vec!["presentation"];
            if own.is_some() || map.get("value").is_some_and(Value::is_null) {
                skip.push("value");
            }
            let fields = self.fields(map, &skip);
            let node = member(own, Shape::Object, fields);
            let key = id.unwrap_or_else(|| digest_key(&node));
            entries.push(Entry::new(key, label, node));
        }
        Self::keyed(entries)
    }

    /// Assignments keyed by target: `include:<group>`, `exclude:<group>`, `allUsers`,
    /// `allDevices`, `collection:<id>`. A filter of type `none` is no filter.
    fn assignments(&mut self, items: &[Value]) -> Option<Node> {
        let mut entries = Vec::with_capacity(items.len());
        for item in items {
            let Some(map) = item.as_object() else {
                continue;
            };
            let empty = Map::new();
            let target = map
                .get("target")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            let kind = target
                .get("@odata.type")
                .and_then(Value::as_str)
                .map_or("", odata_type_name);
            let group = str_of(target, "groupId");
            let (key, label, own) = match kind {
                "groupAssignmentTarget" => (
                    format!("include:{}", group.unwrap_or("")),
                    "Included group".to_owned(),
                    group.map(|g| Own::new(Leaf::Text(g.to_owned()), g)),
                ),
                "exclusionGroupAssignmentTarget" => (
                    format!("exclude:{}", group.unwrap_or("")),
                    "Excluded group".to_owned(),
                    group.map(|g| Own::new(Leaf::Text(g.to_owned()), g)),
                ),
                "allLicensedUsersAssignmentTarget" => ("allUsers".into(), "All users".into(), None),
                "allDevicesAssignmentTarget" => ("allDevices".into(), "All devices".into(), None),
                "configurationManagerCollectionAssignmentTarget" => {
                    let collection = str_of(target, "collectionId");
                    (
                        format!("collection:{}", collection.unwrap_or("")),
                        "Configuration Manager collection".to_owned(),
                        collection.map(|c| Own::new(Leaf::Text(c.to_owned()), c)),
                    )
                }
                other => (
                    format!("{other}:{}", group.unwrap_or("")),
                    if other.is_empty() {
                        "Assignment".to_owned()
                    } else {
                        humanize(other)
                    },
                    group.map(|g| Own::new(Leaf::Text(g.to_owned()), g)),
                ),
            };
            let filter_type = str_of(target, "deviceAndAppManagementAssignmentFilterType")
                .filter(|t| !t.eq_ignore_ascii_case("none"));
            let mut fields = Vec::new();
            if let Some(filter_type) = filter_type {
                if let Some(filter) = str_of(target, "deviceAndAppManagementAssignmentFilterId") {
                    fields.push(Entry::new(
                        "filter",
                        "Assignment filter",
                        Node::leaf(Leaf::Text(filter.to_owned()), filter),
                    ));
                }
                fields.push(Entry::new(
                    "filterMode",
                    "Filter mode",
                    Node::leaf(Leaf::Text(filter_type.to_owned()), humanize(filter_type)),
                ));
            }
            fields.extend(self.fields(
                target,
                &[
                    "@odata.type",
                    "groupId",
                    "collectionId",
                    "deviceAndAppManagementAssignmentFilterId",
                    "deviceAndAppManagementAssignmentFilterType",
                ],
            ));
            // `sourceId` repeats the policy's own id.
            fields.extend(self.fields(map, &["target", "sourceId"]));
            entries.push(Entry::new(key, label, member(own, Shape::Object, fields)));
        }
        Self::keyed(entries)
    }
}

/// A set member: never dropped for being empty, since the member itself is the information.
fn member(own: Option<Own>, shape: Shape, entries: Vec<Entry>) -> Node {
    Node::make(Some(own.unwrap_or_else(Own::present)), shape, entries)
        .unwrap_or_else(unreachable_node)
}

/// The key of a member identified by its content.
fn digest_key(node: &Node) -> String {
    format!("#{:016x}", node.digest)
}

fn captured_if(present: bool) -> Coverage {
    if present {
        Coverage::Captured
    } else {
        Coverage::NotCaptured
    }
}

/// Every value of a tree by its path: what "a leaf differs" means in tests.
#[cfg(test)]
pub(crate) fn leaves(
    node: &Node,
    path: &mut Vec<String>,
    out: &mut std::collections::BTreeMap<Vec<String>, Leaf>,
) {
    if let Some(own) = &node.own {
        out.insert(path.clone(), own.leaf.clone());
    }
    for entry in &node.entries {
        path.push(entry.key.clone());
        leaves(&entry.node, path, out);
        path.pop();
    }
}

/// The normalised JSON of one snapshot: every captured part (an empty one as `{}`), noise
/// dropped, sets in a canonical order. Equal for two snapshots exactly when [`super::diff`] finds
/// no change between them (when both were captured the same way).
pub fn normalize(policy: &CapturedPolicy<'_>) -> Value {
    render(&build(policy, &SettingNames::new(), policy.format), None)
}

/// The normalised JSON of two snapshots as a comparison sees them: both restricted to the parts
/// both recorded (the older capture format, the capture options both used). Equal exactly when
/// [`super::diff`] of the two is empty.
pub fn normalize_pair(old: &CapturedPolicy<'_>, new: &CapturedPolicy<'_>) -> (Value, Value) {
    let limit = old.format.min(new.format);
    let names = SettingNames::new();
    let old_tree = build(old, &names, limit);
    let new_tree = build(new, &names, limit);
    let both = common_sections(&old_tree, &new_tree);
    (
        render(&old_tree, Some(&both)),
        render(&new_tree, Some(&both)),
    )
}

/// The keys of the sections both trees captured.
pub(crate) fn common_sections(old: &Tree, new: &Tree) -> HashSet<String> {
    let captured = |tree: &Tree| -> HashSet<String> {
        tree.sections
            .iter()
            .filter(|s| s.coverage == Coverage::Captured)
            .map(|s| s.key.clone())
            .collect()
    };
    let old_keys = captured(old);
    captured(new)
        .into_iter()
        .filter(|key| old_keys.contains(key))
        .collect()
}

fn render(tree: &Tree, only: Option<&HashSet<String>>) -> Value {
    let mut out = Map::new();
    for section in &tree.sections {
        if section.coverage != Coverage::Captured || only.is_some_and(|o| !o.contains(&section.key))
        {
            continue;
        }
        let value = section
            .node
            .as_ref()
            .map_or_else(|| Value::Object(Map::new()), Node::render);
        out.insert(section.key.clone(), value);
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(family: PolicyType, payload: &Value) -> Tree {
        build(
            &CapturedPolicy::new(family, CaptureFormat::LATEST, payload),
            &SettingNames::new(),
            CaptureFormat::LATEST,
        )
    }

    fn section<'t>(tree: &'t Tree, key: &str) -> &'t SectionNode {
        tree.sections
            .iter()
            .find(|s| s.key == key)
            .expect("section exists")
    }

    #[test]
    fn noise_is_dropped_and_meaningful_types_stay() {
        let payload = json!({"policyType": "device_configuration", "policy": {
            "id": "1", "version": 3, "createdDateTime": "x", "lastModifiedDateTime": "y",
            "@odata.context": "c", "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
            "displayName": "Baseline", "passwordMinimumLength": 8, "nested": {"id": "n", "a": null},
            "assignments@odata.context": "z"
        }});
        let normal = normalize(&CapturedPolicy::new(
            PolicyType::DeviceConfiguration,
            CaptureFormat::V1,
            &payload,
        ));
        assert_eq!(
            normal,
            json!({"policy": {
                "@odata.type": "windows10GeneralConfiguration",
                "displayName": "Baseline", "passwordMinimumLength": 8
            }})
        );
    }

    #[test]
    fn sets_do_not_depend_on_order() {
        let a = json!({"policy": {"roleScopeTagIds": ["0", "5", "5"]}, "assignments": [
            {"id": "1", "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1",
                "deviceAndAppManagementAssignmentFilterType": "none"}},
            {"id": "2", "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}
        ]});
        let b = json!({"policy": {"roleScopeTagIds": ["5", "0", "5"]}, "assignments": [
            {"id": "9", "target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget",
                "deviceAndAppManagementAssignmentFilterId": null}},
            {"target": {"@odata.type": "microsoft.graph.groupAssignmentTarget", "groupId": "g1"}}
        ]});
        let family = PolicyType::Compliance;
        let norm = |p: &Value| normalize(&CapturedPolicy::new(family, CaptureFormat::V1, p));
        assert_eq!(norm(&a), norm(&b));
        let t = tree(family, &a);
        let keys: Vec<&str> = section(&t, "assignments")
            .node
            .as_ref()
            .expect("assignments")
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["include:g1", "allDevices"]);
        let tags: Vec<&str> = section(&t, "roleScopeTagIds")
            .node
            .as_ref()
            .expect("tags")
            .entries
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(tags, ["=0", "=5", "=5 (2)"]);
    }

    #[test]
    fn secrets_compare_equal_and_never_show_their_value() {
        let oma = |value: &str, reference: &str| {
            json!({"policy": {"omaSettings": [{"@odata.type": "#microsoft.graph.omaSettingString",
                "omaUri": "./Device/X", "displayName": "X", "isEncrypted": true,
                "secretReferenceValueId": reference, "value": value}]}})
        };
        let a = oma("****", "r1");
        let b = oma("encrypted-blob", "r2");
        let family = PolicyType::DeviceConfiguration;
        let norm = |p: &Value| normalize(&CapturedPolicy::new(family, CaptureFormat::V1, p));
        assert_eq!(norm(&a), norm(&b));
        let text = norm(&a).to_string();
        assert!(!text.contains("****") && !text.contains("r1"), "{text}");
    }

    #[test]
    fn empty_set_members_stay_present() {
        let payload = json!({"settings": [{"settingInstance": {
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
            "settingDefinitionId": "g", "groupSettingCollectionValue": [{"children": []}, {"children": []}]
        }}]});
        let one = json!({"settings": [{"settingInstance": {
            "settingDefinitionId": "g", "groupSettingCollectionValue": [{"children": []}]
        }}]});
        let family = PolicyType::SettingsCatalog;
        let norm = |p: &Value| normalize(&CapturedPolicy::new(family, CaptureFormat::V1, p));
        assert_ne!(norm(&payload), norm(&one));
        assert_eq!(
            norm(&one)["settings"],
            json!({"g": {"@value": {}, "@children": [{}]}})
        );
    }
}
