//! A policy's content once a write touched it. Generated policies are rendered on demand from
//! their seed; the first write turns a policy into this explicit form (what Graph returned for
//! it until then), and every read of it is answered from here afterwards.

use serde_json::{json, Map, Value};

use super::tenant::{Kind, SimPolicy};

/// Properties a read renders from the policy's bookkeeping rather than from what was written.
pub(super) const RENDERED: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "version",
    "settingCount",
];

/// Everything a read of a written policy returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The policy's properties as written (no id, timestamps, version or counts).
    pub properties: Map<String, Value>,
    /// Settings (settings catalog), or definition values with their `definition` and their
    /// `presentationValues` (each with its `presentation`) inline.
    pub children: Vec<Value>,
    /// Compliance rules with their `scheduledActionConfigurations` inline.
    pub rules: Vec<Value>,
    /// Assignments as `…/assignments` lists them.
    pub assignments: Vec<Value>,
    /// The `version` counter of the types that have one.
    pub version: u64,
}

impl Stored {
    /// The generated policy's content, as Graph returned it so far.
    pub fn of_generated(policy: &SimPolicy) -> Self {
        let mut properties = match policy.to_json() {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        let version = properties
            .get("version")
            .and_then(Value::as_u64)
            .unwrap_or(1);
        properties.retain(|key, _| !RENDERED.contains(&key.as_str()));
        let children = (0..policy.child_count)
            .map(|index| {
                let mut child = policy.child(index, false);
                if let (Kind::GroupPolicyConfiguration, Value::Object(fields)) =
                    (policy.kind, &mut child)
                {
                    fields.insert("definition".into(), policy.definition(index));
                    fields.insert(
                        "presentationValues".into(),
                        Value::Array(policy.presentation_values(index, true)),
                    );
                }
                child
            })
            .collect();
        Self {
            properties,
            children,
            rules: policy.scheduled_actions(true),
            assignments: policy.assignments(),
            version,
        }
    }

    /// The policy's content: what was written, or the generated content.
    pub fn of_generated_or_stored(policy: &SimPolicy) -> Self {
        match &policy.stored {
            Some(stored) => stored.as_ref().clone(),
            None => Self::of_generated(policy),
        }
    }

    /// The policy as its get endpoint returns it.
    pub fn to_json(&self, policy: &SimPolicy, created: String, modified: String) -> Value {
        let mut item = self.properties.clone();
        item.insert("id".into(), json!(policy.id));
        item.insert("createdDateTime".into(), json!(created));
        item.insert("lastModifiedDateTime".into(), json!(modified));
        match policy.kind {
            Kind::DeviceConfiguration | Kind::CompliancePolicy => {
                item.insert("version".into(), json!(self.version));
            }
            Kind::ConfigurationPolicy => {
                item.insert("settingCount".into(), json!(self.children.len()));
            }
            Kind::GroupPolicyConfiguration => {}
        }
        Value::Object(item)
    }

    /// Child number `index`: a setting (its definition inlined when `expand`) or a definition
    /// value (its `definition` inlined when `expand`, its presentation values never).
    pub fn child(&self, kind: Kind, index: usize, expand: bool) -> Value {
        let Some(Value::Object(mut child)) = self.children.get(index).cloned() else {
            return Value::Null;
        };
        match kind {
            Kind::GroupPolicyConfiguration => {
                child.remove("presentationValues");
                if !expand {
                    child.remove("definition");
                }
            }
            _ if expand => {
                let definition = child
                    .get("settingInstance")
                    .and_then(|i| i.get("settingDefinitionId"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                child.insert(
                    "settingDefinitions".into(),
                    json!([{
                        "@odata.type": "#microsoft.graph.deviceManagementConfigurationSettingDefinition",
                        "id": definition,
                        "displayName": definition,
                    }]),
                );
            }
            _ => {}
        }
        Value::Object(child)
    }

    /// The `definition` of definition value number `index`.
    pub fn definition(&self, index: usize) -> Value {
        self.children
            .get(index)
            .and_then(|c| c.get("definition"))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The presentation values of definition value number `index`, each with its
    /// `presentation` when `expand`.
    pub fn presentation_values(&self, index: usize, expand: bool) -> Vec<Value> {
        let values = self
            .children
            .get(index)
            .and_then(|c| c.get("presentationValues"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        values
            .into_iter()
            .map(|mut value| {
                if let (false, Value::Object(fields)) = (expand, &mut value) {
                    fields.remove("presentation");
                }
                value
            })
            .collect()
    }

    /// The id of child number `index`.
    pub fn child_id(&self, index: usize) -> String {
        self.children
            .get(index)
            .and_then(|c| c.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }

    /// The compliance rules, with their actions inline when `expand`.
    pub fn scheduled_actions(&self, expand: bool) -> Vec<Value> {
        self.rules
            .iter()
            .cloned()
            .map(|mut rule| {
                if let (false, Value::Object(fields)) = (expand, &mut rule) {
                    fields.remove("scheduledActionConfigurations");
                }
                rule
            })
            .collect()
    }

    /// Changes one value, as a settings edit in Intune would: the first child's (or, without
    /// children, the first property's) first boolean is flipped, else its first number moves
    /// on, else its first text gets a mark.
    pub fn change_one_value(&mut self) {
        if let Some(child) = self.children.first_mut() {
            perturb(child);
            return;
        }
        const NAMES: [&str; 4] = ["displayName", "name", "description", "@odata.type"];
        let mut rest = Value::Object(
            self.properties
                .iter()
                .filter(|(key, _)| !NAMES.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        );
        perturb(&mut rest);
        if let Value::Object(changed) = rest {
            self.properties.extend(changed);
        }
    }
}

/// Flips the first boolean, else moves the first number on, else marks the first text.
fn perturb(value: &mut Value) {
    if !first_leaf(value, &mut |leaf| match leaf {
        Value::Bool(b) => {
            *b = !*b;
            true
        }
        _ => false,
    }) && !first_leaf(value, &mut |leaf| match leaf {
        Value::Number(n) => {
            *leaf = json!(n.as_i64().unwrap_or(0) + 1);
            true
        }
        _ => false,
    }) {
        first_leaf(value, &mut |leaf| match leaf {
            Value::String(s) if !s.starts_with('#') => {
                s.push('*');
                true
            }
            _ => false,
        });
    }
}

/// Whether a key holds content an admin edits: not an id and not a flag such as `isEncrypted`.
fn is_content(key: &str) -> bool {
    let flag = key
        .strip_prefix("is")
        .is_some_and(|rest| rest.starts_with(char::is_uppercase));
    key != "id" && !key.contains("Id") && !flag
}

/// Applies `change` to leaves depth-first (ids skipped) until it reports a change.
fn first_leaf(value: &mut Value, change: &mut impl FnMut(&mut Value) -> bool) -> bool {
    match value {
        Value::Object(fields) => fields
            .iter_mut()
            .filter(|(key, _)| is_content(key))
            .any(|(_, item)| first_leaf(item, change)),
        Value::Array(items) => items.iter_mut().any(|item| first_leaf(item, change)),
        leaf => change(leaf),
    }
}
