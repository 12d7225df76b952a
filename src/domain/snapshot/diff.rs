//! The setting-level diff of two snapshots of one policy.
//!
//! Both snapshots are built into normalised trees restricted to what both recorded (the older
//! capture format), then walked side by side by entry key: a key on one side only is an added or
//! removed entry (reported once, with its whole content), a value that differs under the same
//! key is a change. Parts one side did not capture are listed as not compared, never as changes.
//!
//! Members of a set that share a key (several notification actions of one compliance rule, OMA
//! settings with one URI) carry made-up keys (`notification`, `notification (2)`) in the order of
//! their content digest, which an edit can change. Such members are paired by content instead:
//! equal members first, then the pairs with the fewest changes between them; only what is left
//! over on one side is added or removed. A change within a pair whose keys differ shows the new
//! side's path ([`Change::path`]) and keeps the old side's in [`Change::old_path`].

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::normalize::{build, common_sections, Entry, Leaf, Node, Own, SectionNode};
use super::readable::push_segment;
use super::{CapturedPolicy, Coverage, FormatField, SectionKind, SettingNames, SECRET_TEXT};

/// What happened to an entry between the old and the new snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChangeKind {
    /// Only in the new snapshot (with everything below it).
    Added,
    /// Only in the old snapshot (with everything below it).
    Removed,
    /// In both, with a different value of its own (what is below it is compared separately).
    Changed,
}

impl ChangeKind {
    /// The word the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Added => "Added",
            Self::Removed => "Removed",
            Self::Changed => "Changed",
        }
    }
}

/// One side of a change, readable and as normalised JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeValue {
    /// How it reads: a value ("Yes", "8", a choice's name, [`SECRET_TEXT`]) or, for an added or
    /// removed entry with content, a short summary ("Block (Grace period hours: 0)").
    pub text: String,
    pub json: Value,
}

/// One difference between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub section: SectionKind,
    /// Machine path: the section key, then entry keys (property names, definition ids, set keys).
    /// In the new snapshot, but for a removed entry (in the old one). Labels likewise.
    pub path: Vec<String>,
    /// The path in the old snapshot when it is not `path`: a change within members of a set that
    /// share a key, paired by content although their made-up keys differ (`notification (2)`
    /// then, `notification` now). `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<Vec<String>>,
    /// Readable path, one label per segment of `path` (the section's title first; empty for a
    /// segment that has no row of its own).
    pub labels: Vec<String>,
    /// `None` for an added entry, or when the entry had no value of its own before.
    pub old: Option<ChangeValue>,
    /// `None` for a removed entry, or when the entry has no value of its own now.
    pub new: Option<ChangeValue>,
}

impl Change {
    /// The path as a JSON-pointer-style string, equal to [`super::Row::path`] of the row it
    /// concerns.
    pub fn pointer(&self) -> String {
        pointer(&self.path)
    }

    /// The readable path: "Settings › Allow Archive Scanning › Depth".
    pub fn label_path(&self) -> String {
        let labels: Vec<&str> = self
            .labels
            .iter()
            .map(String::as_str)
            .filter(|l| !l.is_empty())
            .collect();
        labels.join(" › ")
    }
}

/// Why a part of the snapshots was not compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotComparedReason {
    /// The older snapshot's capture format did not record it ("not captured then").
    NotCapturedThen(FormatField),
    /// The old snapshot was captured without it (a capture option).
    NotCapturedInOld,
    /// The new snapshot was captured without it (a capture option).
    NotCapturedInNew,
}

impl NotComparedReason {
    /// How the UI says it.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotCapturedThen(_) => "not captured then (older capture format)",
            Self::NotCapturedInOld => "not captured in the older version",
            Self::NotCapturedInNew => "not captured in the newer version",
        }
    }
}

/// A part of the snapshots that the comparison left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotCompared {
    pub section: SectionKind,
    pub path: Vec<String>,
    pub labels: Vec<String>,
    pub reason: NotComparedReason,
}

/// The result of comparing two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub changes: Vec<Change>,
    pub not_compared: Vec<NotCompared>,
}

impl Comparison {
    /// Whether nothing that both snapshots recorded differs.
    pub fn is_unchanged(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The changes from `old` to `new`; empty exactly when [`super::normalize_pair`] of the two is
/// equal. `names` labels settings catalog settings.
pub fn diff(
    old: &CapturedPolicy<'_>,
    new: &CapturedPolicy<'_>,
    names: &SettingNames,
) -> Vec<Change> {
    compare(old, new, names).changes
}

/// The changes from `old` to `new`, and what was not compared (parts an older capture format or
/// a capture option left out).
pub fn compare(
    old: &CapturedPolicy<'_>,
    new: &CapturedPolicy<'_>,
    names: &SettingNames,
) -> Comparison {
    let limit = old.format.min(new.format);
    let old_tree = build(old, names, limit);
    let new_tree = build(new, names, limit);
    let both = common_sections(&old_tree, &new_tree);

    let mut not_compared = Vec::new();
    let mut seen: HashSet<Vec<String>> = HashSet::new();
    for skipped in old_tree.skipped.iter().chain(&new_tree.skipped) {
        if seen.insert(skipped.path.clone()) {
            let section = new_tree
                .sections
                .iter()
                .chain(&old_tree.sections)
                .find(|s| skipped.path.first() == Some(&s.key))
                .map_or(SectionKind::Other, |s| s.kind);
            not_compared.push(NotCompared {
                section,
                path: skipped.path.clone(),
                labels: skipped.labels.clone(),
                reason: NotComparedReason::NotCapturedThen(skipped.field),
            });
        }
    }

    let mut walker = Walker::new(SectionKind::Other);
    // Sections in the new snapshot's order, then any only the old one has.
    let mut keys: Vec<&str> = new_tree.sections.iter().map(|s| s.key.as_str()).collect();
    for section in &old_tree.sections {
        if !keys.contains(&section.key.as_str()) {
            keys.push(&section.key);
        }
    }
    for key in keys {
        let old_section = old_tree.sections.iter().find(|s| s.key == key);
        let new_section = new_tree.sections.iter().find(|s| s.key == key);
        let Some(section) = new_section.or(old_section) else {
            continue;
        };
        if !both.contains(key) {
            let captured =
                |s: Option<&SectionNode>| s.is_some_and(|s| s.coverage == Coverage::Captured);
            let reason = match (captured(old_section), captured(new_section)) {
                (false, true) => Some(NotComparedReason::NotCapturedInOld),
                (true, false) => Some(NotComparedReason::NotCapturedInNew),
                _ => None,
            };
            if let Some(reason) = reason {
                not_compared.push(NotCompared {
                    section: section.kind,
                    path: vec![section.key.clone()],
                    labels: vec![section.title.clone()],
                    reason,
                });
            }
            continue;
        }
        walker.section = section.kind;
        walker.path = vec![section.key.clone()];
        walker.old_path = vec![section.key.clone()];
        walker.labels = vec![section.title.clone()];
        walker.old_labels = vec![section.title.clone()];
        let empty = Node::empty();
        let old_node = old_section.and_then(|s| s.node.as_ref()).unwrap_or(&empty);
        let new_node = new_section.and_then(|s| s.node.as_ref()).unwrap_or(&empty);
        walker.walk(old_node, new_node);
    }
    Comparison {
        changes: walker.changes,
        not_compared,
    }
}

struct Walker {
    changes: Vec<Change>,
    section: SectionKind,
    path: Vec<String>,
    /// The path on the old side: `path` but where a pair of members have different keys.
    old_path: Vec<String>,
    labels: Vec<String>,
    /// The labels on the old side (those of a removed entry).
    old_labels: Vec<String>,
}

/// Most candidate pairs weighed within one group of members that share a key; beyond it (a
/// policy with dozens of OMA settings under one URI) only members with equal keys are paired, as
/// keys alone would pair them, so the diff stays quick whatever the input.
const MAX_CANDIDATES: usize = 256;

impl Walker {
    fn new(section: SectionKind) -> Self {
        Self {
            changes: Vec::new(),
            section,
            path: Vec::new(),
            old_path: Vec::new(),
            labels: Vec::new(),
            old_labels: Vec::new(),
        }
    }

    fn walk(&mut self, old: &Node, new: &Node) {
        let old_leaf = old.own.as_ref().map(|o| &o.leaf);
        let new_leaf = new.own.as_ref().map(|o| &o.leaf);
        if old_leaf != new_leaf {
            self.push(
                ChangeKind::Changed,
                old.own.as_ref().map(own_value),
                new.own.as_ref().map(own_value),
            );
        }
        let partners = pair_entries(&old.entries, &new.entries);
        let mut paired = vec![false; old.entries.len()];
        for (entry, partner) in new.entries.iter().zip(partners) {
            match partner {
                Some(index) => {
                    paired[index] = true;
                    let before = &old.entries[index];
                    self.enter(entry, before);
                    self.walk(&before.node, &entry.node);
                }
                None => {
                    self.enter(entry, entry);
                    self.push(ChangeKind::Added, None, Some(subtree_value(&entry.node)));
                }
            }
            self.leave();
        }
        for (entry, paired) in old.entries.iter().zip(paired) {
            if !paired {
                self.enter(entry, entry);
                self.push(ChangeKind::Removed, Some(subtree_value(&entry.node)), None);
                self.leave();
            }
        }
    }

    /// Enters `entry`, which is `old` on the old side (itself for an added or removed one).
    fn enter(&mut self, entry: &Entry, old: &Entry) {
        let label = |e: &Entry| {
            if e.inline {
                String::new()
            } else {
                e.label.clone()
            }
        };
        self.path.push(entry.key.clone());
        self.old_path.push(old.key.clone());
        self.labels.push(label(entry));
        self.old_labels.push(label(old));
    }

    fn leave(&mut self) {
        self.path.pop();
        self.old_path.pop();
        self.labels.pop();
        self.old_labels.pop();
    }

    fn push(&mut self, kind: ChangeKind, old: Option<ChangeValue>, new: Option<ChangeValue>) {
        // A removed entry is only on the old side: its path and labels are the old side's.
        let (path, old_path, labels) = match kind {
            ChangeKind::Removed => (self.old_path.clone(), None, self.old_labels.clone()),
            ChangeKind::Added => (self.path.clone(), None, self.labels.clone()),
            ChangeKind::Changed => (
                self.path.clone(),
                (self.old_path != self.path).then(|| self.old_path.clone()),
                self.labels.clone(),
            ),
        };
        self.changes.push(Change {
            kind,
            section: self.section,
            path,
            old_path,
            labels,
            old,
            new,
        });
    }
}

/// For each of the `new` entries, the index of the `old` entry it is compared with, if any.
/// Entries pair by key; members that share a key ([`Entry::base`]) pair within their group by
/// content: equal members first, then those with the fewest changes between them, ties to equal
/// keys, then in key order (the same pairs whichever side is old). What is left over on one side
/// is added or removed.
fn pair_entries(old: &[Entry], new: &[Entry]) -> Vec<Option<usize>> {
    fn base(entry: &Entry) -> &str {
        entry.base.as_deref().unwrap_or(&entry.key)
    }
    let mut groups: BTreeMap<&str, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (index, entry) in old.iter().enumerate() {
        groups.entry(base(entry)).or_default().0.push(index);
    }
    for (index, entry) in new.iter().enumerate() {
        groups.entry(base(entry)).or_default().1.push(index);
    }
    let mut partners = vec![None; new.len()];
    for (olds, news) in groups.into_values() {
        if let ([o], [n]) = (olds.as_slice(), news.as_slice()) {
            partners[*n] = Some(*o);
            continue;
        }
        let weigh_all = olds.len() * news.len() <= MAX_CANDIDATES;
        let mut candidates = Vec::new();
        for &o in &olds {
            for &n in &news {
                let (a, b) = (&old[o], &new[n]);
                let same_key = a.key == b.key;
                if !weigh_all && !same_key {
                    continue;
                }
                let cost = if a.node.digest == b.node.digest {
                    0
                } else {
                    distance(&a.node, &b.node)
                };
                let (low, high) = if a.key <= b.key {
                    (&a.key, &b.key)
                } else {
                    (&b.key, &a.key)
                };
                candidates.push((cost, !same_key, low, high, o, n));
            }
        }
        candidates.sort();
        let mut old_taken = HashSet::new();
        for (_, _, _, _, o, n) in candidates {
            if partners[n].is_none() && !old_taken.contains(&o) {
                partners[n] = Some(o);
                old_taken.insert(o);
            }
        }
    }
    partners
}

/// How many changes comparing `old` with `new` reports.
fn distance(old: &Node, new: &Node) -> usize {
    let mut scratch = Walker::new(SectionKind::Other);
    scratch.walk(old, new);
    scratch.changes.len()
}

fn pointer(path: &[String]) -> String {
    let mut out = String::new();
    for segment in path {
        out.push('/');
        push_segment(&mut out, segment);
    }
    out
}

fn own_text(own: &Own) -> &str {
    match own.leaf {
        Leaf::Secret => SECRET_TEXT,
        Leaf::Present => "(set)",
        Leaf::Bool(_) | Leaf::Number(_) | Leaf::Text(_) => &own.text,
    }
}

fn own_value(own: &Own) -> ChangeValue {
    ChangeValue {
        text: own_text(own).to_owned(),
        json: own.leaf.json(),
    }
}

/// Longest summary of an added or removed entry, in bytes; longer ones end in "…".
const SUMMARY_MAX: usize = 300;

fn subtree_value(node: &Node) -> ChangeValue {
    let mut text = String::new();
    summarize(node, &mut text);
    if text.len() > SUMMARY_MAX {
        let mut cut = SUMMARY_MAX;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    if text.is_empty() {
        text.push_str("(set)");
    }
    ChangeValue {
        text,
        json: node.render(),
    }
}

/// "value (Label: value; Label: value (…))", stopping once long enough to be cut.
fn summarize(node: &Node, out: &mut String) {
    let own = node
        .own
        .as_ref()
        .map(own_text)
        .filter(|t| !t.is_empty() && *t != "(set)");
    if let Some(text) = own {
        out.push_str(text);
    }
    let mut visible = Vec::new();
    collect_visible(node, &mut visible);
    if visible.is_empty() {
        return;
    }
    let nested = own.is_some();
    if nested {
        out.push_str(" (");
    }
    for (index, entry) in visible.into_iter().enumerate() {
        if out.len() > SUMMARY_MAX {
            break;
        }
        if index > 0 {
            out.push_str("; ");
        }
        out.push_str(&entry.label);
        let has_own = entry
            .node
            .own
            .as_ref()
            .is_some_and(|o| !own_text(o).is_empty() && own_text(o) != "(set)");
        if has_own {
            out.push_str(": ");
            summarize(&entry.node, out);
        } else if !entry.node.entries.is_empty() {
            out.push_str(" (");
            summarize(&entry.node, out);
            out.push(')');
        }
    }
    if nested {
        out.push(')');
    }
}

/// The entries a reader sees below a node, with inline entries' content in their place.
fn collect_visible<'n>(node: &'n Node, out: &mut Vec<&'n Entry>) {
    for entry in &node.entries {
        if entry.hidden {
            continue;
        }
        if entry.inline {
            collect_visible(&entry.node, out);
        } else {
            out.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::snapshot::{normalize, normalize_pair, CaptureFormat, PolicyType};
    use serde_json::json;

    fn policy(family: PolicyType, format: CaptureFormat, payload: &Value) -> CapturedPolicy<'_> {
        CapturedPolicy::new(family, format, payload)
    }

    fn summary(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let side =
                    |v: &Option<ChangeValue>| v.as_ref().map_or("-".to_owned(), |v| v.text.clone());
                format!(
                    "{} {}: {} → {}",
                    c.kind.label(),
                    c.label_path(),
                    side(&c.old),
                    side(&c.new)
                )
            })
            .collect()
    }

    fn compliance(actions: Option<Value>, min_length: i64) -> Value {
        let mut policy = json!({
            "@odata.type": "#microsoft.graph.windows10CompliancePolicy", "id": "c1",
            "displayName": "Windows compliance", "version": 2, "passwordMinimumLength": min_length,
            "roleScopeTagIds": ["0"]
        });
        if let Some(actions) = actions {
            policy["scheduledActionsForRule"] = actions;
            policy["scheduledActionsForRule@odata.context"] = json!("ctx");
        }
        json!({"policyType": "compliance", "policy": policy, "assignments": []})
    }

    fn block_action(hours: i64) -> Value {
        json!([{"id": "r1", "ruleName": "PasswordRequired", "scheduledActionConfigurations": [
            {"id": "a1", "actionType": "block", "gracePeriodHours": hours,
             "notificationMessageCCList": []}]}])
    }

    #[test]
    fn compliance_actions_are_not_captured_then_in_format_one() {
        let family = PolicyType::Compliance;
        let old = compliance(None, 8);
        let new = compliance(Some(block_action(0)), 8);
        let comparison = compare(
            &policy(family, CaptureFormat::V1, &old),
            &policy(family, CaptureFormat::V2, &new),
            &SettingNames::new(),
        );
        assert!(comparison.is_unchanged(), "{:?}", comparison.changes);
        assert_eq!(
            comparison.not_compared,
            [NotCompared {
                section: SectionKind::ComplianceActions,
                path: vec!["scheduledActionsForRule".into()],
                labels: vec!["Actions for noncompliance".into()],
                reason: NotComparedReason::NotCapturedThen(FormatField::ComplianceActions),
            }]
        );
        // The same in the other direction, and a real change is still a change.
        let changed = compliance(None, 10);
        let comparison = compare(
            &policy(family, CaptureFormat::V2, &new),
            &policy(family, CaptureFormat::V1, &changed),
            &SettingNames::new(),
        );
        assert_eq!(
            summary(&comparison.changes),
            ["Changed Settings › Password minimum length: 8 → 10"]
        );
        assert_eq!(comparison.not_compared.len(), 1);
        // Without the format rule the actions would read as added: the same payloads as format 2.
        let as_added = diff(
            &policy(family, CaptureFormat::V2, &old),
            &policy(family, CaptureFormat::V2, &new),
            &SettingNames::new(),
        );
        assert_eq!(
            summary(&as_added),
            ["Added Actions for noncompliance › Password required: - → Block (Grace period hours: 0)"]
        );
    }

    #[test]
    fn compliance_actions_compare_by_action_type_in_format_two() {
        let family = PolicyType::Compliance;
        let old = compliance(Some(block_action(0)), 8);
        let new = compliance(Some(block_action(24)), 8);
        let changes = diff(
            &policy(family, CaptureFormat::V2, &old),
            &policy(family, CaptureFormat::V2, &new),
            &SettingNames::new(),
        );
        assert_eq!(
            summary(&changes),
            ["Changed Actions for noncompliance › Password required › Block › Grace period hours: 0 → 24"]
        );
        assert_eq!(
            changes[0].pointer(),
            "/scheduledActionsForRule/PasswordRequired/scheduledActionConfigurations/block/gracePeriodHours"
        );
        assert_eq!(changes[0].old.as_ref().map(|v| &v.json), Some(&json!(0)));
    }

    fn notifications(first_hours: i64) -> Value {
        json!([{"id": "r1", "ruleName": "PasswordRequired", "scheduledActionConfigurations": [
            {"id": "a1", "actionType": "notification", "gracePeriodHours": first_hours,
             "notificationTemplateId": "T1", "notificationMessageCCList": []},
            {"id": "a2", "actionType": "notification", "gracePeriodHours": 72,
             "notificationTemplateId": "T2", "notificationMessageCCList": []}]}])
    }

    /// Two notification actions share the key `notification`; editing one of them must not read
    /// as edits to both, whichever order the edit gives their content digests.
    #[test]
    fn an_edit_to_one_of_two_repeated_actions_is_one_change() {
        let family = PolicyType::Compliance;
        let old = compliance(Some(notifications(24)), 8);
        let before = policy(family, CaptureFormat::V2, &old);
        for hours in 0..100 {
            let new = compliance(Some(notifications(hours)), 8);
            let after = policy(family, CaptureFormat::V2, &new);
            let changes = diff(&before, &after, &SettingNames::new());
            if hours == 24 {
                assert!(changes.is_empty(), "{:?}", summary(&changes));
                continue;
            }
            assert_eq!(
                summary(&changes),
                [format!(
                    "Changed Actions for noncompliance › Password required › Notification › \
                     Grace period hours: 24 → {hours}"
                )],
                "{hours} h"
            );
            let change = &changes[0];
            assert_eq!(change.old.as_ref().map(|v| &v.json), Some(&json!(24)));
            assert_eq!(change.new.as_ref().map(|v| &v.json), Some(&json!(hours)));
            // The path names the edited action in the new snapshot: the one with template T1;
            // the old path names it in the old one.
            let action = |snapshot: &CapturedPolicy<'_>, key: &str| {
                normalize(snapshot)["scheduledActionsForRule"]["PasswordRequired"]["@children"]
                    ["scheduledActionConfigurations"][key]["@children"]
                    .clone()
            };
            assert_eq!(change.path[4], "gracePeriodHours");
            let now = action(&after, &change.path[3]);
            assert_eq!(now["notificationTemplateId"], json!("T1"), "{hours} h");
            assert_eq!(now["gracePeriodHours"], json!(hours), "{hours} h");
            let old_key = change.old_path.as_ref().map_or(&change.path[3], |p| &p[3]);
            let then = action(&before, old_key);
            assert_eq!(then["notificationTemplateId"], json!("T1"), "{hours} h");
            assert_eq!(then["gracePeriodHours"], json!(24), "{hours} h");
            // The same the other way round.
            let back = diff(&after, &before, &SettingNames::new());
            assert_eq!(back.len(), 1, "{hours} h: {:?}", summary(&back));
            assert_eq!(back[0].old.as_ref().map(|v| &v.json), Some(&json!(hours)));
        }
    }

    fn template(presentation: Option<&str>) -> Value {
        let mut value = json!({"id": "v1", "enabled": true,
            "definition": {"id": "d1", "displayName": "Home page"}});
        if let Some(url) = presentation {
            value["presentationValues"] = json!([{"id": "pv", "value": url,
                "presentation": {"id": "p1", "label": "URL:"}}]);
        }
        json!({"policy": {"displayName": "Edge"}, "definitionValues": [value]})
    }

    #[test]
    fn presentation_values_are_not_captured_then_in_format_one() {
        let family = PolicyType::AdministrativeTemplate;
        let old = template(None);
        let new = template(Some("https://a"));
        let comparison = compare(
            &policy(family, CaptureFormat::V1, &old),
            &policy(family, CaptureFormat::V2, &new),
            &SettingNames::new(),
        );
        assert!(comparison.is_unchanged(), "{:?}", comparison.changes);
        assert_eq!(comparison.not_compared.len(), 1);
        assert_eq!(
            comparison.not_compared[0].path,
            ["definitionValues", "d1", "presentationValues"]
        );
        let (a, b) = normalize_pair(
            &policy(family, CaptureFormat::V1, &old),
            &policy(family, CaptureFormat::V2, &new),
        );
        assert_eq!(a, b);

        let newer = template(Some("https://b"));
        let changes = diff(
            &policy(family, CaptureFormat::V2, &new),
            &policy(family, CaptureFormat::V2, &newer),
            &SettingNames::new(),
        );
        assert_eq!(
            summary(&changes),
            ["Changed Settings › Home page › URL: https://a → https://b"]
        );
    }

    #[test]
    fn capture_options_leave_parts_uncompared() {
        let family = PolicyType::DeviceConfiguration;
        let with = json!({"policy": {"displayName": "A", "roleScopeTagIds": ["0"]},
            "assignments": [{"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]});
        let without = json!({"policy": {"displayName": "A"}});
        let comparison = compare(
            &policy(family, CaptureFormat::V1, &with),
            &policy(family, CaptureFormat::V1, &without),
            &SettingNames::new(),
        );
        assert!(comparison.is_unchanged());
        let reasons: Vec<_> = comparison
            .not_compared
            .iter()
            .map(|n| (n.section, n.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                (
                    SectionKind::Assignments,
                    NotComparedReason::NotCapturedInNew
                ),
                (SectionKind::ScopeTags, NotComparedReason::NotCapturedInNew),
            ]
        );
    }

    #[test]
    fn assignments_and_scope_tags_report_by_target() {
        let family = PolicyType::DeviceConfiguration;
        let old = json!({"policy": {"roleScopeTagIds": ["0"]}, "assignments": [
            {"id": "x", "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1"}},
            {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g2"}}]});
        let new = json!({"policy": {"roleScopeTagIds": ["5", "0"]}, "assignments": [
            {"target": {"@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", "groupId": "g2"}},
            {"id": "y", "target": {"@odata.type": "#microsoft.graph.groupAssignmentTarget", "groupId": "g1",
                "deviceAndAppManagementAssignmentFilterId": "f", "deviceAndAppManagementAssignmentFilterType": "exclude"}},
            {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]});
        let changes = diff(
            &policy(family, CaptureFormat::V1, &old),
            &policy(family, CaptureFormat::V1, &new),
            &SettingNames::new(),
        );
        assert_eq!(
            summary(&changes),
            [
                "Added Assignments › Included group › Assignment filter: - → f",
                "Added Assignments › Included group › Filter mode: - → Exclude",
                "Added Assignments › All devices: - → (set)",
                "Added Scope tags › Scope tag 1: - → 5",
            ]
        );
        assert_eq!(changes[2].pointer(), "/assignments/allDevices");
    }

    fn catalog(settings: Value) -> Value {
        json!({"policyType": "settings_catalog", "policy": {"name": "P"}, "settings": settings})
    }

    fn choice(id: &str, value: &str, children: Value) -> Value {
        json!({"settingInstance": {
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationChoiceSettingInstance",
            "settingDefinitionId": id, "choiceSettingValue": {"value": value, "children": children}}})
    }

    fn simple(id: &str, value: Value) -> Value {
        json!({"@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
            "settingDefinitionId": id, "simpleSettingValue": {"value": value}})
    }

    fn rules(instances: &[(&str, i64)]) -> Value {
        let values: Vec<Value> = instances
            .iter()
            .map(|(name, port)| {
                json!({"children": [simple("fw_rule_name", json!(name)), simple("fw_rule_port", json!(port))]})
            })
            .collect();
        json!({"settingInstance": {
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
            "settingDefinitionId": "fw_rule", "groupSettingCollectionValue": values}})
    }

    #[test]
    fn settings_catalog_compares_by_definition_path_with_names() {
        let family = PolicyType::SettingsCatalog;
        let old = catalog(json!([
            choice(
                "av_scan",
                "av_scan_0",
                json!([simple("av_scan_depth", json!(3))])
            ),
            rules(&[("telnet", 23), ("ftp", 21)]),
        ]));
        let reordered = catalog(json!([
            rules(&[("ftp", 21), ("telnet", 23)]),
            choice(
                "av_scan",
                "av_scan_0",
                json!([simple("av_scan_depth", json!(3))])
            ),
        ]));
        let format = CaptureFormat::V2;
        let names = {
            let mut names = SettingNames::new();
            names.insert("av_scan", "Allow scanning");
            names.insert("av_scan_0", "Not allowed");
            names.insert("av_scan_1", "Allowed");
            names.insert("fw_rule", "Firewall rules");
            names
        };
        assert!(diff(
            &policy(family, format, &old),
            &policy(family, format, &reordered),
            &names
        )
        .is_empty());

        let new = catalog(json!([
            choice(
                "av_scan",
                "av_scan_1",
                json!([
                    simple("av_scan_depth", json!(5)),
                    simple("av_scan_zip", json!(true))
                ])
            ),
            rules(&[("ftp", 21), ("telnet", 2323)]),
        ]));
        let changes = diff(
            &policy(family, format, &old),
            &policy(family, format, &new),
            &names,
        );
        let mut lines = summary(&changes);
        // Members of a multiset are identified by content: the edited instance is a new one.
        let instance_lines: Vec<String> = lines.drain(3..).collect();
        assert_eq!(
            lines,
            [
                "Changed Settings › Allow scanning: Not allowed → Allowed",
                "Changed Settings › Allow scanning › Depth: 3 → 5",
                "Added Settings › Allow scanning › Zip: - → Yes",
            ]
        );
        assert_eq!(
            instance_lines,
            [
                "Added Settings › Firewall rules › Instance 2: - → Name: telnet; Port: 2323",
                "Removed Settings › Firewall rules › Instance 1: Name: telnet; Port: 23 → -",
            ]
        );
        assert_eq!(changes[1].pointer(), "/settings/av_scan/av_scan_depth");
        assert_eq!(
            changes[0].new.as_ref().map(|v| &v.json),
            Some(&json!("av_scan_1"))
        );
    }

    #[test]
    fn secrets_never_differ_by_value_but_a_secret_turning_plain_does() {
        let family = PolicyType::SettingsCatalog;
        let secret = |token: &str, state: &str| {
            catalog(
                json!([{"settingInstance": {"settingDefinitionId": "wlan_key", "simpleSettingValue": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue",
                "value": token, "valueState": state}}}]),
            )
        };
        let format = CaptureFormat::V1;
        let names = SettingNames::new();
        let a = secret("tokenA", "encryptedValueToken");
        let b = secret("plainB", "notEncrypted");
        assert!(diff(
            &policy(family, format, &a),
            &policy(family, format, &b),
            &names
        )
        .is_empty());
        let plain = catalog(json!([{"settingInstance": simple("wlan_key", json!("visible"))}]));
        let changes = diff(
            &policy(family, format, &a),
            &policy(family, format, &plain),
            &names,
        );
        assert_eq!(
            summary(&changes),
            [format!(
                "Changed Settings › Wlan key: {SECRET_TEXT} → visible"
            )]
        );
        assert!(!serde_json::to_string(&changes)
            .expect("json")
            .contains("tokenA"));
    }
}
