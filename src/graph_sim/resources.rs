//! What a Graph path names, and the answer to a read of it: entities and collection pages with
//! `@odata.context`, `$select`, `$expand`, `$top` and `@odata.nextLink` paging.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::schema;
use super::tenant::{FakeTenant, Kind, SimPolicy, CHILD_PAGE_SIZE};

/// What Graph shows instead of an encrypted OMA setting's value.
pub const MASKED_SECRET: &str = "****";

/// Default `$top` of a policy, group or directory list.
const LIST_PAGE_SIZE: usize = 100;
/// The largest `$top` Graph honours on these collections; larger values are cut to it.
pub const MAX_PAGE_SIZE: usize = 999;

/// An action bound to a policy (`POST …/{id}/{action}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyAction {
    /// Replaces the policy's assignments (every type).
    Assign,
    /// Administrative templates: adds, updates and deletes definition values.
    UpdateDefinitionValues,
    /// Compliance: replaces the rules and their actions.
    ScheduleActionsForRules,
}

impl PolicyAction {
    /// The path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Self::Assign => "assign",
            Self::UpdateDefinitionValues => "updateDefinitionValues",
            Self::ScheduleActionsForRules => "scheduleActionsForRules",
        }
    }
}

/// A Graph resource the simulator serves: reads, and the writes of `writes.rs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resource {
    Policies(Kind),
    Policy(Kind, String),
    /// An action of a policy; only POST reaches it.
    Action(Kind, String, PolicyAction),
    /// A device configuration's function
    /// `getOmaSettingPlainTextValue(secretReferenceValueId='…')`: the plain text of one of its
    /// encrypted OMA settings (policy id, secret reference).
    OmaPlainText(String, String),
    Assignments(Kind, String),
    /// Settings catalog `settings`.
    Settings(String),
    /// Administrative template `definitionValues`.
    DefinitionValues(String),
    DefinitionValue(String, String),
    /// `definitionValues/{id}/definition`.
    Definition(String, String),
    /// `definitionValues/{id}/presentationValues`.
    PresentationValues(String, String),
    /// Compliance `scheduledActionsForRule`.
    ScheduledActions(String),
    ScheduledAction(String, String),
    /// `scheduledActionsForRule/{id}/scheduledActionConfigurations`.
    ActionConfigurations(String, String),
    Groups,
    Group(String),
    AssignmentFilters,
    AssignmentFilter(String),
    ScopeTags,
    ScopeTag(String),
}

/// Who may read a resource: the application permissions Graph asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// `DeviceManagementConfiguration.Read.All` (or `ReadWrite.All`).
    DeviceConfiguration,
    /// `DeviceManagementRBAC.Read.All`, or a configuration permission.
    Rbac,
    /// `Group.Read.All` or `Directory.Read.All`.
    Groups,
    /// `DeviceManagementConfiguration.ReadWrite.All` alone: what a read of a secret's plain
    /// text needs.
    DeviceConfigurationSecrets,
}

impl Permission {
    /// The roles that grant it.
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Self::DeviceConfiguration => &[
                "DeviceManagementConfiguration.Read.All",
                "DeviceManagementConfiguration.ReadWrite.All",
            ],
            Self::Rbac => &[
                "DeviceManagementRBAC.Read.All",
                "DeviceManagementRBAC.ReadWrite.All",
                "DeviceManagementConfiguration.Read.All",
                "DeviceManagementConfiguration.ReadWrite.All",
            ],
            Self::Groups => &[
                "Group.Read.All",
                "Group.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ],
            Self::DeviceConfigurationSecrets => &["DeviceManagementConfiguration.ReadWrite.All"],
        }
    }
}

/// Whether Graph serves a policy collection under `version`: the settings catalog and the
/// administrative templates are beta only, so v1.0 has neither collection (nor anything under
/// them) and answers its unknown-segment 400.
fn is_served_on(version: &str, kind: Kind) -> bool {
    version == "beta" || matches!(kind, Kind::DeviceConfiguration | Kind::CompliancePolicy)
}

impl Resource {
    /// Parses the path of a Graph request: `Ok((version, resource))`, or the first segment the
    /// simulator does not know.
    pub fn parse(path: &str) -> Result<(String, Self), String> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let Some((version, rest)) = parts.split_first() else {
            return Err(String::new());
        };
        if !matches!(*version, "beta" | "v1.0") {
            return Err((*version).to_owned());
        }
        let owned = |s: &str| s.to_owned();
        let resource = match rest {
            ["groups"] => Self::Groups,
            ["groups", id] => Self::Group(owned(id)),
            ["deviceManagement", "assignmentFilters"] => Self::AssignmentFilters,
            ["deviceManagement", "assignmentFilters", id] => Self::AssignmentFilter(owned(id)),
            ["deviceManagement", "roleScopeTags"] => Self::ScopeTags,
            ["deviceManagement", "roleScopeTags", id] => Self::ScopeTag(owned(id)),
            ["groups", _, segment, ..]
            | ["deviceManagement", "assignmentFilters" | "roleScopeTags", _, segment, ..] => {
                return Err(owned(segment))
            }
            ["deviceManagement", collection, tail @ ..] => {
                let kind = Kind::from_collection(collection)
                    .filter(|kind| is_served_on(version, *kind))
                    .ok_or_else(|| owned(collection))?;
                Self::of_policy(kind, tail)?
            }
            [first, ..] => return Err(owned(first)),
            [] => return Err(String::new()),
        };
        Ok(((*version).to_owned(), resource))
    }

    fn of_policy(kind: Kind, tail: &[&str]) -> Result<Self, String> {
        use Kind::{CompliancePolicy, ConfigurationPolicy, GroupPolicyConfiguration};
        let id = |s: &&str| (*s).to_owned();
        Ok(match (kind, tail) {
            (_, []) => Self::Policies(kind),
            (_, [p]) => Self::Policy(kind, id(p)),
            (_, [p, "assignments"]) => Self::Assignments(kind, id(p)),
            (_, [p, "assign"]) => Self::Action(kind, id(p), PolicyAction::Assign),
            (GroupPolicyConfiguration, [p, "updateDefinitionValues"]) => {
                Self::Action(kind, id(p), PolicyAction::UpdateDefinitionValues)
            }
            (CompliancePolicy, [p, "scheduleActionsForRules"]) => {
                Self::Action(kind, id(p), PolicyAction::ScheduleActionsForRules)
            }
            (Kind::DeviceConfiguration, [p, function])
                if function.starts_with("getOmaSettingPlainTextValue(") =>
            {
                let reference = function
                    .strip_prefix("getOmaSettingPlainTextValue(secretReferenceValueId='")
                    .and_then(|rest| rest.strip_suffix("')"))
                    .ok_or_else(|| (*function).to_owned())?;
                Self::OmaPlainText(id(p), reference.to_owned())
            }
            (ConfigurationPolicy, [p, "settings"]) => Self::Settings(id(p)),
            (GroupPolicyConfiguration, [p, "definitionValues"]) => Self::DefinitionValues(id(p)),
            (GroupPolicyConfiguration, [p, "definitionValues", v]) => {
                Self::DefinitionValue(id(p), id(v))
            }
            (GroupPolicyConfiguration, [p, "definitionValues", v, "definition"]) => {
                Self::Definition(id(p), id(v))
            }
            (GroupPolicyConfiguration, [p, "definitionValues", v, "presentationValues"]) => {
                Self::PresentationValues(id(p), id(v))
            }
            (CompliancePolicy, [p, "scheduledActionsForRule"]) => Self::ScheduledActions(id(p)),
            (CompliancePolicy, [p, "scheduledActionsForRule", r]) => {
                Self::ScheduledAction(id(p), id(r))
            }
            (
                CompliancePolicy,
                [p, "scheduledActionsForRule", r, "scheduledActionConfigurations"],
            ) => Self::ActionConfigurations(id(p), id(r)),
            (_, [_, "definitionValues" | "scheduledActionsForRule", _, segment, ..]) => {
                return Err((*segment).to_owned())
            }
            (_, [_, segment, ..]) => return Err((*segment).to_owned()),
        })
    }

    /// The policy this resource belongs to (forced faults apply to it and everything under it).
    pub fn policy_id(&self) -> Option<&str> {
        match self {
            Self::Policy(_, id)
            | Self::Action(_, id, _)
            | Self::OmaPlainText(id, _)
            | Self::Assignments(_, id)
            | Self::Settings(id)
            | Self::DefinitionValues(id)
            | Self::DefinitionValue(id, _)
            | Self::Definition(id, _)
            | Self::PresentationValues(id, _)
            | Self::ScheduledActions(id)
            | Self::ScheduledAction(id, _)
            | Self::ActionConfigurations(id, _) => Some(id),
            _ => None,
        }
    }

    /// The collection segment an app setup may refuse (`forbidden_collections`).
    pub fn collection(&self) -> &'static str {
        match self {
            Self::Policies(kind)
            | Self::Policy(kind, _)
            | Self::Action(kind, ..)
            | Self::Assignments(kind, _) => kind.collection(),
            Self::Settings(_) => Kind::ConfigurationPolicy.collection(),
            Self::OmaPlainText(..) => Kind::DeviceConfiguration.collection(),
            Self::DefinitionValues(_)
            | Self::DefinitionValue(..)
            | Self::Definition(..)
            | Self::PresentationValues(..) => Kind::GroupPolicyConfiguration.collection(),
            Self::ScheduledActions(_)
            | Self::ScheduledAction(..)
            | Self::ActionConfigurations(..) => Kind::CompliancePolicy.collection(),
            Self::Groups | Self::Group(_) => "groups",
            Self::AssignmentFilters | Self::AssignmentFilter(_) => "assignmentFilters",
            Self::ScopeTags | Self::ScopeTag(_) => "roleScopeTags",
        }
    }

    /// What reading it needs.
    pub fn permission(&self) -> Permission {
        match self {
            Self::Groups | Self::Group(_) => Permission::Groups,
            Self::ScopeTags | Self::ScopeTag(_) => Permission::Rbac,
            Self::OmaPlainText(..) => Permission::DeviceConfigurationSecrets,
            _ => Permission::DeviceConfiguration,
        }
    }

    /// The name the request log files it under.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Policies(kind) => format!("list:{}", kind.collection()),
            Self::Policy(kind, _) => format!("get:{}", kind.collection()),
            Self::Action(_, _, action) => format!("action:{}", action.segment()),
            Self::OmaPlainText(..) => "function:getOmaSettingPlainTextValue".into(),
            Self::Assignments(..) => "assignments".into(),
            Self::Settings(_) => "settings".into(),
            Self::DefinitionValues(_) => "definitionValues".into(),
            Self::DefinitionValue(..) => "get:definitionValues".into(),
            Self::Definition(..) => "definition".into(),
            Self::PresentationValues(..) => "presentationValues".into(),
            Self::ScheduledActions(_) => "scheduledActionsForRule".into(),
            Self::ScheduledAction(..) => "get:scheduledActionsForRule".into(),
            Self::ActionConfigurations(..) => "scheduledActionConfigurations".into(),
            Self::Groups => "list:groups".into(),
            Self::Group(_) => "get:groups".into(),
            Self::AssignmentFilters => "list:assignmentFilters".into(),
            Self::AssignmentFilter(_) => "get:assignmentFilters".into(),
            Self::ScopeTags => "list:roleScopeTags".into(),
            Self::ScopeTag(_) => "get:roleScopeTags".into(),
        }
    }
}

/// The query options of a request. On beta, Graph also accepts them without their `$`.
#[derive(Debug, Default)]
pub struct QueryOptions {
    pub top: Option<String>,
    pub skiptoken: Option<String>,
    pub select: Option<String>,
    pub expand: Option<String>,
    /// Every option as sent, for the next link.
    pub raw: Vec<(String, String)>,
}

impl QueryOptions {
    /// Reads the options of a request to `version`.
    pub fn parse(version: &str, params: &[(String, String)]) -> Self {
        let mut options = Self {
            raw: params.to_vec(),
            ..Self::default()
        };
        for (key, value) in params {
            let name = match key.strip_prefix('$') {
                Some(name) => name,
                None if version == "beta" => key.as_str(),
                None => continue,
            };
            let slot = match name.to_ascii_lowercase().as_str() {
                "top" => &mut options.top,
                "skiptoken" => &mut options.skiptoken,
                "select" => &mut options.select,
                "expand" => &mut options.expand,
                _ => continue,
            };
            *slot = Some(value.clone());
        }
        options
    }

    /// The `$expand` items: each name with its nested options (`scheduledActionsForRule` →
    /// `$expand=scheduledActionConfigurations`).
    pub fn expands(&self) -> Vec<(String, String)> {
        let Some(raw) = &self.expand else {
            return Vec::new();
        };
        let mut items = Vec::new();
        let (mut depth, mut start) = (0usize, 0usize);
        let mut push = |part: &str| {
            let part = part.trim();
            if part.is_empty() {
                return;
            }
            match part.split_once('(') {
                Some((name, inner)) => items.push((
                    name.trim().to_owned(),
                    inner.trim_end_matches(')').trim().to_owned(),
                )),
                None => items.push((part.to_owned(), String::new())),
            }
        };
        for (i, c) in raw.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    push(&raw[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        push(&raw[start..]);
        items
    }

    fn expands_name(&self, name: &str) -> Option<String> {
        self.expands()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, inner)| inner)
    }
}

/// Where a request is answered from.
pub struct Reader<'a> {
    /// `…/beta` or `…/v1.0` of this simulator.
    pub version_url: String,
    pub tenant: &'a FakeTenant,
    pub options: QueryOptions,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    super::routes::graph_error(status, code, message)
}

/// The entity `matches` picks, or the id (answered as a 404).
fn by_id<'a, T>(items: &'a [T], matches: impl Fn(&T) -> bool, id: &str) -> Result<&'a T, String> {
    items
        .iter()
        .find(|item| matches(item))
        .ok_or_else(|| id.to_owned())
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "ResourceNotFound",
        &format!("Resource '{id}' does not exist."),
    )
}

impl Reader<'_> {
    fn context(&self, rest: &str) -> String {
        format!("{}/$metadata#{rest}", self.version_url)
    }

    /// `$select` as Graph applies it: the selected properties, `id`, `@odata.type` and whatever
    /// `$expand` inlined.
    fn select(&self, item: Value) -> Value {
        let Some(select) = &self.options.select else {
            return item;
        };
        let mut wanted = select.clone();
        for (name, _) in self.options.expands() {
            wanted.push(',');
            wanted.push_str(&name);
        }
        SimPolicy::select(item, Some(&wanted))
    }

    fn entity(&self, mut item: Value, context: &str) -> Response {
        item = self.select(item);
        if let Value::Object(fields) = &mut item {
            fields.insert(
                "@odata.context".into(),
                Value::String(self.context(&format!("{context}/$entity"))),
            );
        }
        Json(item).into_response()
    }

    /// One page of a collection of `total` items, from `$skiptoken` (an offset), `$top` long.
    fn page(
        &self,
        path: &str,
        total: usize,
        default_size: usize,
        context: &str,
        item: impl Fn(usize) -> Value,
    ) -> Response {
        let size = match self.options.top.as_deref().map(str::parse::<usize>) {
            None => default_size,
            Some(Ok(top)) if top > 0 => top.min(MAX_PAGE_SIZE),
            Some(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "Invalid $top: it must be a positive integer.",
                )
            }
        };
        let Some(offset) = self
            .options
            .skiptoken
            .as_deref()
            .map_or(Some(0), |s| s.parse::<usize>().ok())
        else {
            return error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid $skiptoken.");
        };
        let end = offset.saturating_add(size).min(total);
        let items: Vec<Value> = (offset.min(end)..end)
            .map(|i| self.select(item(i)))
            .collect();
        let mut body = Map::new();
        body.insert("@odata.context".into(), json!(self.context(context)));
        if end < total {
            if let Some(link) = self.next_link(path, end) {
                body.insert("@odata.nextLink".into(), json!(link));
            }
        }
        body.insert("value".into(), Value::Array(items));
        Json(Value::Object(body)).into_response()
    }

    /// The URL of the next page: the same request with a new `$skiptoken`.
    fn next_link(&self, path: &str, offset: usize) -> Option<String> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.version_url)).ok()?;
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in &self.options.raw {
                let bare = k.trim_start_matches('$');
                if !bare.eq_ignore_ascii_case("skiptoken") {
                    query.append_pair(k, v);
                }
            }
            query.append_pair("$skiptoken", &offset.to_string());
        }
        Some(url.into())
    }

    /// A policy as listed or read, with what `$expand` asks inlined. An encrypted OMA
    /// setting's value reads as Graph shows it, `****`: its plain text only comes from
    /// [`Resource::OmaPlainText`].
    fn policy_json(&self, policy: &SimPolicy) -> Value {
        let mut item = policy.to_json();
        let Value::Object(fields) = &mut item else {
            return item;
        };
        if let Some(Value::Array(settings)) = fields.get_mut("omaSettings") {
            for setting in settings.iter_mut().filter_map(Value::as_object_mut) {
                if setting.get("isEncrypted") == Some(&Value::Bool(true)) {
                    setting.insert("value".into(), json!(MASKED_SECRET));
                }
            }
        }
        if self.options.expands_name("assignments").is_some() {
            fields.insert("assignments".into(), Value::Array(policy.assignments()));
        }
        if policy.kind == Kind::ConfigurationPolicy {
            if let Some(inner) = self.options.expands_name("settings") {
                let definitions = inner.contains("settingDefinitions");
                let all = (0..policy.child_count)
                    .map(|i| policy.child(i, definitions))
                    .collect();
                fields.insert("settings".into(), Value::Array(all));
            }
        }
        if policy.kind == Kind::CompliancePolicy {
            if let Some(inner) = self.options.expands_name("scheduledActionsForRule") {
                let configurations = inner.contains("scheduledActionConfigurations");
                fields.insert(
                    "scheduledActionsForRule".into(),
                    Value::Array(policy.scheduled_actions(configurations)),
                );
            }
        }
        item
    }

    /// Answers a read of `resource` (`path` is its path under the version).
    pub fn read(&self, resource: &Resource, path: &str) -> Response {
        // Graph reads the query against the type's metadata before it looks for anything.
        if let Some(entity) = schema::entity_type(resource) {
            let options = &self.options;
            if let Err(message) =
                entity.check_query(options.select.as_deref(), options.expand.as_deref())
            {
                return error(StatusCode::BAD_REQUEST, "BadRequest", &message);
            }
        }
        let tenant = self.tenant;
        let find = |kind: Kind, id: &str| tenant.find(kind, id).ok_or_else(|| id.to_string());
        // The error is the id that was not found.
        let answer = || -> Result<Response, String> {
            Ok(match resource {
                Resource::Action(..) => {
                    return Ok(error(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "BadRequest",
                        &format!("The HTTP method 'GET' is not allowed on the resource '{path}'."),
                    ))
                }
                Resource::Policies(kind) => {
                    let policies: Vec<&SimPolicy> = tenant.of_kind(*kind).collect();
                    let context = format!("deviceManagement/{}", kind.collection());
                    self.page(path, policies.len(), LIST_PAGE_SIZE, &context, |i| {
                        self.policy_json(policies[i])
                    })
                }
                Resource::Policy(kind, id) => {
                    let policy = find(*kind, id)?;
                    let context = format!("deviceManagement/{}", kind.collection());
                    self.entity(self.policy_json(policy), &context)
                }
                Resource::OmaPlainText(id, reference) => {
                    let policy = find(Kind::DeviceConfiguration, id)?;
                    let plain = policy.to_json()["omaSettings"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|s| {
                            s["isEncrypted"] == true
                                && s["secretReferenceValueId"].as_str() == Some(reference)
                        })
                        .map(|s| s["value"].clone())
                        .ok_or_else(|| reference.clone())?;
                    Json(json!({
                        "@odata.context": self.context("Edm.String"),
                        "value": plain,
                    }))
                    .into_response()
                }
                Resource::Assignments(kind, id) => {
                    let policy = find(*kind, id)?;
                    let all = policy.assignments();
                    let context =
                        format!("deviceManagement/{}('{id}')/assignments", kind.collection());
                    self.page(path, all.len(), LIST_PAGE_SIZE, &context, |i| {
                        all[i].clone()
                    })
                }
                Resource::Settings(id) => {
                    let policy = find(Kind::ConfigurationPolicy, id)?;
                    let definitions = self.options.expands_name("settingDefinitions").is_some();
                    let context =
                        format!("deviceManagement/configurationPolicies('{id}')/settings");
                    self.page(path, policy.child_count, CHILD_PAGE_SIZE, &context, |i| {
                        policy.child(i, definitions)
                    })
                }
                Resource::DefinitionValues(id) => {
                    let policy = find(Kind::GroupPolicyConfiguration, id)?;
                    let definition = self.options.expands_name("definition").is_some();
                    let presentations = self.options.expands_name("presentationValues");
                    let context = format!(
                        "deviceManagement/groupPolicyConfigurations('{id}')/definitionValues"
                    );
                    self.page(path, policy.child_count, CHILD_PAGE_SIZE, &context, |i| {
                        let mut value = policy.child(i, definition);
                        if let (Some(inner), Value::Object(fields)) = (&presentations, &mut value) {
                            let values =
                                policy.presentation_values(i, inner.contains("presentation"));
                            fields.insert("presentationValues".into(), Value::Array(values));
                        }
                        value
                    })
                }
                Resource::DefinitionValue(id, value_id) => {
                    let policy = find(Kind::GroupPolicyConfiguration, id)?;
                    let index = policy
                        .child_index(value_id)
                        .ok_or_else(|| value_id.to_string())?;
                    let definition = self.options.expands_name("definition").is_some();
                    let context = format!(
                        "deviceManagement/groupPolicyConfigurations('{id}')/definitionValues"
                    );
                    self.entity(policy.child(index, definition), &context)
                }
                Resource::Definition(id, value_id) => {
                    let policy = find(Kind::GroupPolicyConfiguration, id)?;
                    let index = policy
                        .child_index(value_id)
                        .ok_or_else(|| value_id.to_string())?;
                    let context = format!(
                        "deviceManagement/groupPolicyConfigurations('{id}')/definitionValues('{value_id}')/definition"
                    );
                    self.entity(policy.definition(index), &context)
                }
                Resource::PresentationValues(id, value_id) => {
                    let policy = find(Kind::GroupPolicyConfiguration, id)?;
                    let index = policy
                        .child_index(value_id)
                        .ok_or_else(|| value_id.to_string())?;
                    let presentation = self.options.expands_name("presentation").is_some();
                    let all = policy.presentation_values(index, presentation);
                    let context = format!(
                        "deviceManagement/groupPolicyConfigurations('{id}')/definitionValues('{value_id}')/presentationValues"
                    );
                    self.page(path, all.len(), LIST_PAGE_SIZE, &context, |i| {
                        all[i].clone()
                    })
                }
                Resource::ScheduledActions(id) => {
                    let policy = find(Kind::CompliancePolicy, id)?;
                    let configurations = self
                        .options
                        .expands_name("scheduledActionConfigurations")
                        .is_some();
                    let all = policy.scheduled_actions(configurations);
                    let context = format!(
                        "deviceManagement/deviceCompliancePolicies('{id}')/scheduledActionsForRule"
                    );
                    self.page(path, all.len(), LIST_PAGE_SIZE, &context, |i| {
                        all[i].clone()
                    })
                }
                Resource::ScheduledAction(id, rule_id) => {
                    let policy = find(Kind::CompliancePolicy, id)?;
                    let configurations = self
                        .options
                        .expands_name("scheduledActionConfigurations")
                        .is_some();
                    let rule = policy
                        .scheduled_actions(configurations)
                        .into_iter()
                        .find(|r| r["id"] == json!(rule_id))
                        .ok_or_else(|| rule_id.to_string())?;
                    let context = format!(
                        "deviceManagement/deviceCompliancePolicies('{id}')/scheduledActionsForRule"
                    );
                    self.entity(rule, &context)
                }
                Resource::ActionConfigurations(id, rule_id) => {
                    let policy = find(Kind::CompliancePolicy, id)?;
                    let rule = policy
                        .scheduled_actions(true)
                        .into_iter()
                        .find(|r| r["id"] == json!(rule_id))
                        .ok_or_else(|| rule_id.to_string())?;
                    let all = rule["scheduledActionConfigurations"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    let context = format!(
                        "deviceManagement/deviceCompliancePolicies('{id}')/scheduledActionsForRule('{rule_id}')/scheduledActionConfigurations"
                    );
                    self.page(path, all.len(), LIST_PAGE_SIZE, &context, |i| {
                        all[i].clone()
                    })
                }
                Resource::Groups => {
                    self.page(path, tenant.groups.len(), LIST_PAGE_SIZE, "groups", |i| {
                        tenant.group_json(&tenant.groups[i])
                    })
                }
                Resource::Group(id) => {
                    let group = by_id(&tenant.groups, |g| &g.id == id, id)?;
                    self.entity(tenant.group_json(group), "groups")
                }
                Resource::AssignmentFilters => self.page(
                    path,
                    tenant.filters.len(),
                    LIST_PAGE_SIZE,
                    "deviceManagement/assignmentFilters",
                    |i| tenant.filter_json(&tenant.filters[i]),
                ),
                Resource::AssignmentFilter(id) => {
                    let filter = by_id(&tenant.filters, |f| &f.id == id, id)?;
                    self.entity(
                        tenant.filter_json(filter),
                        "deviceManagement/assignmentFilters",
                    )
                }
                Resource::ScopeTags => self.page(
                    path,
                    tenant.scope_tags.len(),
                    LIST_PAGE_SIZE,
                    "deviceManagement/roleScopeTags",
                    |i| tenant.scope_tag_json(&tenant.scope_tags[i]),
                ),
                Resource::ScopeTag(id) => {
                    let tag = by_id(&tenant.scope_tags, |t| &t.id == id, id)?;
                    self.entity(tenant.scope_tag_json(tag), "deviceManagement/roleScopeTags")
                }
            })
        };
        answer().unwrap_or_else(|id| not_found(&id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_or_name_the_unknown_segment() {
        let ok = |path: &str| Resource::parse(path).expect(path).1;
        assert_eq!(
            ok("/beta/deviceManagement/deviceCompliancePolicies/p/scheduledActionsForRule/r/scheduledActionConfigurations"),
            Resource::ActionConfigurations("p".into(), "r".into())
        );
        assert_eq!(ok("/v1.0/groups/g"), Resource::Group("g".into()));
        assert_eq!(
            ok("/beta/deviceManagement/groupPolicyConfigurations/p/definitionValues/v/presentationValues"),
            Resource::PresentationValues("p".into(), "v".into())
        );
        let unknown = |path: &str| Resource::parse(path).expect_err(path);
        assert_eq!(unknown("/beta/deviceManagement/widgets"), "widgets");
        assert_eq!(
            unknown("/beta/deviceManagement/deviceConfigurations/p/settings"),
            "settings"
        );
        assert_eq!(unknown("/gamma/groups"), "gamma");
        assert_eq!(unknown("/beta/users"), "users");
        assert_eq!(unknown("/beta/groups/g/members"), "members");
        assert_eq!(
            unknown("/beta/deviceManagement/groupPolicyConfigurations/p/definitionValues/v/other"),
            "other"
        );
        // Beta only: the settings catalog and the administrative templates.
        assert_eq!(
            unknown("/v1.0/deviceManagement/configurationPolicies/p/settings"),
            "configurationPolicies"
        );
        assert_eq!(
            unknown("/v1.0/deviceManagement/groupPolicyConfigurations"),
            "groupPolicyConfigurations"
        );
        assert_eq!(
            ok("/v1.0/deviceManagement/deviceConfigurations/p"),
            Resource::Policy(Kind::DeviceConfiguration, "p".into())
        );
    }

    #[test]
    fn beta_takes_options_without_dollar_and_nested_expands() {
        let params = vec![
            ("top".to_owned(), "5".to_owned()),
            (
                "$expand".to_owned(),
                "assignments,scheduledActionsForRule($expand=scheduledActionConfigurations)"
                    .to_owned(),
            ),
        ];
        let beta = QueryOptions::parse("beta", &params);
        assert_eq!(beta.top.as_deref(), Some("5"));
        assert_eq!(
            beta.expands(),
            vec![
                ("assignments".to_owned(), String::new()),
                (
                    "scheduledActionsForRule".to_owned(),
                    "$expand=scheduledActionConfigurations".to_owned()
                )
            ]
        );
        assert_eq!(QueryOptions::parse("v1.0", &params).top, None);
    }
}
