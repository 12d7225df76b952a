//! Writes to the four policy collections, validated the way Graph validates them: creates
//! (`POST`, 201 with the entity), updates (`PATCH`; settings catalog also `PUT` with its
//! settings; 204), deletes (204), and the `assign` (200 with the assignments),
//! `updateDefinitionValues` and `scheduleActionsForRules` (204) actions. A body with a read-only
//! property (an OMA setting's `isEncrypted` and `secretReferenceValueId` among them), a
//! navigation property where Graph takes none, an unknown `@odata.type` (or none where the
//! collection's type is abstract), an OMA setting without its derived type, a secret without its
//! value or an OMA setting whose value is the `****` mask a read shows, a top-level property its
//! type does not have (`schema::writable_properties`; a body without `@odata.type` is of the
//! collection's type, as Graph reads it), or an assignment property the kind's assignment type
//! does not have is refused with 400 and Graph's error body; an unknown policy gets 404. A
//! string OMA setting written where the policy held an encrypted one stays encrypted (under the
//! same reference), as Intune keeps it.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde_json::{json, Map, Value};

use super::resources::{PolicyAction, Resource, MASKED_SECRET};
use super::routes::graph_error;
use super::schema;
use super::stored::Stored;
use super::tenant::{assignment_json, timestamp, FakeTenant, Kind, SimPolicy};
use super::SimState;
use crate::domain::snapshot::is_secret;

/// The role a token needs for any write.
pub(super) const WRITE_ROLE: &str = "DeviceManagementConfiguration.ReadWrite.All";

/// Properties Graph computes itself.
pub const READ_ONLY: [&str; 7] = [
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "version",
    "settingCount",
    "isAssigned",
    "supportsScopeTags",
];

/// The types of an OMA setting (without `#microsoft.graph.`): `omaSetting` is abstract, so a
/// setting names one of these, as Microsoft's custom profile examples do.
const OMA_TYPES: [&str; 7] = [
    "omaSettingBase64",
    "omaSettingBoolean",
    "omaSettingDateTime",
    "omaSettingFloatingPoint",
    "omaSettingInteger",
    "omaSettingString",
    "omaSettingStringXml",
];

/// Read-only properties of an OMA setting (a custom profile's `omaSettings`): Intune decides
/// what it encrypts and names the encrypted value's reference itself.
pub const OMA_READ_ONLY: [&str; 2] = ["isEncrypted", "secretReferenceValueId"];

/// Read-only properties of a settings catalog policy's `templateReference`: Graph fills them in
/// from the template and refuses them in a body.
const TEMPLATE_READ_ONLY: [&str; 3] = [
    "templateFamily",
    "templateDisplayName",
    "templateDisplayVersion",
];

/// Navigation properties: never part of a PATCH, and of a create only where [`inline`] says.
const NAVIGATION: [&str; 5] = [
    "assignments",
    "settings",
    "scheduledActionsForRule",
    "definitionValues",
    "deviceStatuses",
];

/// The navigation property a create (and, settings catalog, a PUT) takes inline.
fn inline(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::ConfigurationPolicy => Some("settings"),
        Kind::CompliancePolicy => Some("scheduledActionsForRule"),
        Kind::DeviceConfiguration | Kind::GroupPolicyConfiguration => None,
    }
}

/// The `@odata.type`s a collection holds (without `#microsoft.graph.`), and whether a create
/// must name one (the collection's own type is abstract).
fn known_types(kind: Kind) -> (&'static [&'static str], bool) {
    match kind {
        Kind::ConfigurationPolicy => (&["deviceManagementConfigurationPolicy"], false),
        Kind::GroupPolicyConfiguration => (&["groupPolicyConfiguration"], false),
        Kind::DeviceConfiguration => (
            &[
                "windows10GeneralConfiguration",
                "windows10CustomConfiguration",
                "windows10EndpointProtectionConfiguration",
                "iosGeneralConfiguration",
                "iosCustomConfiguration",
                "macOSGeneralConfiguration",
                "macOSCustomConfiguration",
                "androidWorkProfileGeneralConfiguration",
                "androidWorkProfileCustomConfiguration",
            ],
            true,
        ),
        Kind::CompliancePolicy => (
            &[
                "windows10CompliancePolicy",
                "iosCompliancePolicy",
                "macOSCompliancePolicy",
                "androidWorkProfileCompliancePolicy",
                "androidCompliancePolicy",
                "androidDeviceOwnerCompliancePolicy",
            ],
            true,
        ),
    }
}

/// Why a write is refused: an error status with Graph's error body.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        graph_error(self.status, self.code, &self.message)
    }
}

fn bad(message: &str) -> Refusal {
    Refusal {
        status: StatusCode::BAD_REQUEST,
        code: "BadRequest",
        message: message.to_owned(),
    }
}

fn not_found(id: &str) -> Refusal {
    Refusal {
        status: StatusCode::NOT_FOUND,
        code: "ResourceNotFound",
        message: format!("Resource '{id}' does not exist."),
    }
}

/// The request log's name of a write.
pub(super) fn endpoint(method: &Method, resource: &Resource) -> String {
    match (method, resource) {
        (_, Resource::Action(_, _, action)) => format!("action:{}", action.segment()),
        (&Method::POST, Resource::Policies(kind)) => format!("create:{}", kind.collection()),
        (&Method::DELETE, Resource::Policy(kind, _)) => format!("delete:{}", kind.collection()),
        (_, Resource::Policy(kind, _)) => format!("update:{}", kind.collection()),
        (_, other) => format!("write:{}", other.endpoint()),
    }
}

/// Answers a write of `resource` in tenant `tenant_id`.
pub(super) fn answer(
    sim: &SimState,
    tenant_id: &str,
    method: &Method,
    resource: &Resource,
    body: &[u8],
) -> Response {
    let parsed = || -> Result<Map<String, Value>, Refusal> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(bad("Empty Payload. JSON content expected."));
        }
        match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(bad("The request body is not a JSON object.")),
        }
    };
    let result = match (method, resource) {
        (&Method::DELETE, Resource::Policy(kind, id)) => {
            let deleted = sim.write_tenant(tenant_id, |t| match t.find(*kind, id) {
                Some(_) => (t.without(id), true),
                None => (None, false),
            });
            if deleted {
                Ok(StatusCode::NO_CONTENT.into_response())
            } else {
                Err(not_found(id))
            }
        }
        (&Method::POST, Resource::Policies(kind)) => {
            parsed().and_then(|body| create(sim, tenant_id, *kind, body))
        }
        (&Method::PATCH, Resource::Policy(kind, id)) => {
            parsed().and_then(|body| update(sim, tenant_id, *kind, id, body, false))
        }
        (&Method::PUT, Resource::Policy(Kind::ConfigurationPolicy, id)) => parsed()
            .and_then(|body| update(sim, tenant_id, Kind::ConfigurationPolicy, id, body, true)),
        (&Method::POST, Resource::Action(kind, id, action)) => {
            parsed().and_then(|body| act(sim, tenant_id, *kind, id, *action, &body))
        }
        _ => Err(Refusal {
            status: StatusCode::METHOD_NOT_ALLOWED,
            code: "BadRequest",
            message: format!("The HTTP method '{method}' is not allowed on the resource."),
        }),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// What a body writes to.
enum Target<'a> {
    /// A new policy.
    New,
    /// An existing policy of this `@odata.type` (if it has one).
    Existing(Option<&'a str>),
}

/// A type name without its `#microsoft.graph.` prefix.
fn short_type(raw: &str) -> &str {
    raw.trim_start_matches('#')
        .trim_start_matches("microsoft.graph.")
}

/// The checks every policy body passes: no read-only property, no navigation property but
/// `allowed`, a known `@odata.type` (required on a create where the collection's type is
/// abstract, and the policy's own on an update), only its type's properties, OMA settings of a
/// known type, no secret without its value.
fn check_body(
    kind: Kind,
    body: &Map<String, Value>,
    allowed: Option<&str>,
    target: &Target<'_>,
) -> Result<(), Refusal> {
    if let Some(key) = READ_ONLY.iter().find(|key| body.contains_key(**key)) {
        return Err(bad(&format!(
            "The property '{key}' is read-only and cannot be written."
        )));
    }
    let reference = body.get("templateReference").and_then(Value::as_object);
    if let Some(key) = TEMPLATE_READ_ONLY
        .iter()
        .find(|key| reference.is_some_and(|r| r.contains_key(**key)))
    {
        return Err(bad(&format!(
            "The property 'templateReference/{key}' is read-only and cannot be written."
        )));
    }
    if let Some(key) = NAVIGATION
        .iter()
        .find(|key| body.contains_key(**key) && Some(**key) != allowed)
    {
        return Err(bad(&format!(
            "The navigation property '{key}' cannot be written in this request."
        )));
    }
    let (known, required) = known_types(kind);
    match body.get("@odata.type") {
        None if required && matches!(target, Target::New) => {
            return Err(bad(&format!(
                "A type must be given to create an entity of the abstract collection '{}': set @odata.type.",
                kind.collection()
            )))
        }
        None => {}
        Some(raw) => {
            let name = raw.as_str().map(short_type).unwrap_or_default();
            if !known.contains(&name) {
                return Err(bad(&format!(
                    "Invalid request body: the type '{raw}' is not a known type of '{}'.",
                    kind.collection()
                )));
            }
            let current = match target {
                Target::Existing(Some(current)) => Some(short_type(current)),
                _ => None,
            };
            if current.is_some_and(|c| c != name) {
                return Err(bad("The type of an existing entity cannot be changed."));
            }
        }
    }
    // Graph reads a body without `@odata.type` as the collection's declared type, on an update
    // too (not as the policy's own): where that type is abstract, it has none of the derived
    // types' properties.
    let type_name = body
        .get("@odata.type")
        .and_then(Value::as_str)
        .map_or(schema::policy_type(kind).name, short_type);
    if let Some(known) = schema::writable_properties(kind, type_name) {
        let unknown = body.keys().find(|key| {
            !key.contains('@')
                && !NAVIGATION.contains(&key.as_str())
                && !known.contains(&key.as_str())
        });
        if let Some(key) = unknown {
            return Err(bad(&format!(
                "The property '{key}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to only use property names that are defined by the type or mark the type as open type."
            )));
        }
    }
    check_oma_settings(body)?;
    if let Some(path) = secret_without_value(&Value::Object(body.clone()), "") {
        return Err(bad(&format!(
            "The secret at '{path}' has no value: a secret is written with its value or its encrypted token."
        )));
    }
    Ok(())
}

/// A custom profile's OMA settings each name their derived type (`omaSetting` is abstract and
/// has no `value`), and carry neither read-only property, nor the masked value a read shows for
/// an encrypted one (written back, it would replace the secret with `****`).
fn check_oma_settings(body: &Map<String, Value>) -> Result<(), Refusal> {
    let settings = body
        .get("omaSettings")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for (index, setting) in settings.iter().enumerate() {
        let Some(setting) = setting.as_object() else {
            continue;
        };
        match setting.get("@odata.type") {
            None => {
                return Err(bad(&format!(
                    "A type must be given to 'omaSettings/{index}' of the abstract type 'microsoft.graph.omaSetting': set @odata.type, e.g. #microsoft.graph.omaSettingInteger."
                )))
            }
            Some(raw) if !raw.as_str().is_some_and(|t| OMA_TYPES.contains(&short_type(t))) => {
                return Err(bad(&format!(
                    "Invalid request body: the type '{raw}' of 'omaSettings/{index}' is not a known type of 'microsoft.graph.omaSetting'."
                )))
            }
            Some(_) => {}
        }
        if let Some(key) = OMA_READ_ONLY.iter().find(|key| setting.contains_key(**key)) {
            return Err(bad(&format!(
                "The property 'omaSettings/{index}/{key}' is read-only and cannot be written."
            )));
        }
        if setting.get("value").and_then(Value::as_str) == Some(MASKED_SECRET) {
            return Err(bad(&format!(
                "The value of 'omaSettings/{index}' is the mask a read shows for an encrypted setting, not a value: read its plain text with getOmaSettingPlainTextValue."
            )));
        }
    }
    Ok(())
}

/// Sets the read-only properties of written OMA settings as Intune does: a string setting at an
/// OMA-URI that `current` held encrypted stays encrypted under the same reference; every other
/// setting is not encrypted.
fn encrypt_oma_settings(body: &mut Map<String, Value>, current: Option<&Value>) {
    let Some(Value::Array(settings)) = body.get_mut("omaSettings") else {
        return;
    };
    let encrypted = |uri: &Value| -> Option<Value> {
        current?
            .get("omaSettings")?
            .as_array()?
            .iter()
            .find(|s| s["isEncrypted"] == true && &s["omaUri"] == uri)
            .map(|s| s["secretReferenceValueId"].clone())
    };
    for setting in settings.iter_mut().filter_map(Value::as_object_mut) {
        let string = setting
            .get("@odata.type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("omaSettingString"));
        let reference = setting
            .get("omaUri")
            .and_then(&encrypted)
            .filter(|_| string);
        setting.insert("isEncrypted".into(), json!(reference.is_some()));
        setting.insert(
            "secretReferenceValueId".into(),
            reference.unwrap_or(Value::Null),
        );
    }
}

/// Where a secret without a value sits, if any.
fn secret_without_value(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Object(map) => {
            let empty = map
                .get("value")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if is_secret(map) && empty {
                return Some(path.to_owned());
            }
            map.iter()
                .find_map(|(key, item)| secret_without_value(item, &format!("{path}/{key}")))
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| secret_without_value(item, &format!("{path}/{i}"))),
        _ => None,
    }
}

fn guid() -> String {
    let mut rng = rand::rng();
    let (a, b): (u64, u64) = (rng.random(), rng.random());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn now() -> String {
    timestamp(time::OffsetDateTime::now_utc().unix_timestamp())
}

/// A copy of `value` with a new `id`.
fn with_id(value: &Value, id: String) -> Value {
    let mut value = value.clone();
    if let Value::Object(fields) = &mut value {
        fields.insert("id".into(), json!(id));
    }
    value
}

/// Settings as stored: each with its index as id, as Graph numbers them.
fn settings_of(body: &mut Map<String, Value>) -> Result<Vec<Value>, Refusal> {
    let Some(settings) = body.remove("settings") else {
        return Ok(Vec::new());
    };
    let Value::Array(settings) = settings else {
        return Err(bad("'settings' must be a collection."));
    };
    settings
        .iter()
        .enumerate()
        .map(|(index, setting)| {
            let instance = setting.get("settingInstance");
            let typed = instance
                .and_then(|i| i.get("@odata.type"))
                .and_then(Value::as_str)
                .is_some();
            let defined = instance
                .and_then(|i| i.get("settingDefinitionId"))
                .and_then(Value::as_str)
                .is_some();
            if !typed || !defined {
                return Err(bad(&format!(
                    "Setting {index} needs a settingInstance with an @odata.type and a settingDefinitionId."
                )));
            }
            let mut setting = with_id(setting, index.to_string());
            if let Value::Object(fields) = &mut setting {
                fields.remove("settingDefinitions");
            }
            Ok(setting)
        })
        .collect()
}

/// Compliance rules as stored, each rule and action with a new id.
fn rules_of(rules: &Value) -> Result<Vec<Value>, Refusal> {
    let Some(rules) = rules.as_array() else {
        return Err(bad("The scheduled actions must be a collection."));
    };
    rules
        .iter()
        .map(|rule| {
            let actions = rule
                .get("scheduledActionConfigurations")
                .and_then(Value::as_array)
                .ok_or_else(|| bad("Each rule needs its scheduledActionConfigurations."))?;
            let actions: Vec<Value> = actions
                .iter()
                .map(|action| {
                    if action.get("actionType").and_then(Value::as_str).is_none() {
                        return Err(bad("Each scheduled action needs an actionType."));
                    }
                    Ok(with_id(action, guid()))
                })
                .collect::<Result<_, _>>()?;
            let mut rule = with_id(rule, guid());
            if let Value::Object(fields) = &mut rule {
                fields.insert(
                    "scheduledActionConfigurations".into(),
                    Value::Array(actions),
                );
                fields
                    .entry("ruleName")
                    .or_insert_with(|| json!("PasswordRequired"));
            }
            Ok(rule)
        })
        .collect()
}

/// `POST /deviceManagement/{collection}`: 201 with the new policy.
fn create(
    sim: &SimState,
    tenant_id: &str,
    kind: Kind,
    mut body: Map<String, Value>,
) -> Result<Response, Refusal> {
    check_body(kind, &body, inline(kind), &Target::New)?;
    let name_key = if kind == Kind::ConfigurationPolicy {
        "name"
    } else {
        "displayName"
    };
    let name = body
        .get(name_key)
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad(&format!("The property '{name_key}' is required.")))?
        .to_owned();
    let children = settings_of(&mut body)?;
    let rules = match body.remove("scheduledActionsForRule") {
        Some(rules) => rules_of(&rules)?,
        None => Vec::new(),
    };
    let blocks = rules.iter().any(|rule| {
        rule["scheduledActionConfigurations"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["actionType"] == "block"))
    });
    if kind == Kind::CompliancePolicy && !blocks {
        return Err(bad(
            "A compliance policy needs a scheduled action of type 'block' (scheduledActionsForRule).",
        ));
    }
    let platform = body
        .get("platforms")
        .or_else(|| body.get("@odata.type"))
        .and_then(Value::as_str)
        .unwrap_or("windows10")
        .trim_start_matches('#')
        .trim_start_matches("microsoft.graph.")
        .to_owned();
    body.entry("roleScopeTagIds")
        .or_insert_with(|| json!(["0"]));
    complete_template_reference(&mut body, None);
    encrypt_oma_settings(&mut body, None);
    let stored = Stored {
        properties: body,
        children,
        rules,
        assignments: Vec::new(),
        version: 1,
    };
    let policy = SimPolicy::created(guid(), kind, name, &platform, stored);
    let entity = policy.to_json();
    sim.write_tenant(tenant_id, |t| (Some(t.with_created(policy)), ()));
    Ok((StatusCode::CREATED, Json(entity)).into_response())
}

/// `PATCH` (properties) or, settings catalog, `PUT` (properties and settings): 204.
fn update(
    sim: &SimState,
    tenant_id: &str,
    kind: Kind,
    id: &str,
    mut body: Map<String, Value>,
    replace: bool,
) -> Result<Response, Refusal> {
    let tenant = sim.tenant(tenant_id);
    let current = tenant.find(kind, id).ok_or_else(|| not_found(id))?;
    let current_type = current.to_json()["@odata.type"].as_str().map(str::to_owned);
    let allowed = replace.then_some("settings");
    check_body(
        kind,
        &body,
        allowed,
        &Target::Existing(current_type.as_deref()),
    )?;
    let settings = if replace {
        Some(settings_of(&mut body)?)
    } else {
        None
    };
    let current_json = current.to_json();
    complete_template_reference(&mut body, current_json.get("templateReference"));
    encrypt_oma_settings(&mut body, Some(&current_json));
    let name_key = current.name_key();
    let written = sim.write_tenant(tenant_id, |t| {
        split(t.with_written(kind, id, |policy, stored| {
            if let Some(name) = body.get(name_key).and_then(Value::as_str) {
                policy.name = name.to_owned();
            }
            match settings {
                Some(settings) => {
                    stored.properties = body;
                    stored.children = settings;
                }
                None => stored.properties.extend(body),
            }
            stored.version += 1;
            Ok::<(), Refusal>(())
        }))
    });
    written.map(|()| StatusCode::NO_CONTENT.into_response())
}

/// Fills in a written `templateReference`'s read-only properties as Graph does: from the
/// policy's `current` reference, or for a new policy as a policy made without a template.
fn complete_template_reference(body: &mut Map<String, Value>, current: Option<&Value>) {
    let Some(Value::Object(reference)) = body.get_mut("templateReference") else {
        return;
    };
    match current.and_then(Value::as_object) {
        Some(current) => {
            for key in TEMPLATE_READ_ONLY {
                if let Some(value) = current.get(key) {
                    reference.insert(key.into(), value.clone());
                }
            }
        }
        None => {
            reference.insert("templateFamily".into(), json!("none"));
            reference.insert("templateDisplayName".into(), Value::Null);
        }
    }
}

/// Turns `with_written`'s answer into an edit for [`SimState::write_tenant`].
fn split(result: Option<Result<FakeTenant, Refusal>>) -> (Option<FakeTenant>, Result<(), Refusal>) {
    match result {
        Some(Ok(tenant)) => (Some(tenant), Ok(())),
        Some(Err(refusal)) => (None, Err(refusal)),
        None => (None, Err(bad("The policy changed while it was written."))),
    }
}

/// `POST …/{id}/{action}`.
fn act(
    sim: &SimState,
    tenant_id: &str,
    kind: Kind,
    id: &str,
    action: PolicyAction,
    body: &Map<String, Value>,
) -> Result<Response, Refusal> {
    if sim.tenant(tenant_id).find(kind, id).is_none() {
        return Err(not_found(id));
    }
    let written = sim.write_tenant(tenant_id, |t| {
        split(t.with_written(
            kind,
            id,
            |policy: &mut SimPolicy, stored: &mut Stored| -> Result<(), Refusal> {
                match action {
                    PolicyAction::Assign => assign(kind, &policy.id, stored, body),
                    PolicyAction::ScheduleActionsForRules => {
                        let rules = body
                            .get("deviceComplianceScheduledActionForRules")
                            .ok_or_else(|| {
                                bad("'deviceComplianceScheduledActionForRules' is required.")
                            })?;
                        stored.rules = rules_of(rules)?;
                        stored.version += 1;
                        Ok(())
                    }
                    PolicyAction::UpdateDefinitionValues => update_definition_values(stored, body),
                }
            },
        ))
    });
    written?;
    Ok(match action {
        // 200 with the assignments, as the assign pages document.
        PolicyAction::Assign => {
            let tenant = sim.tenant(tenant_id);
            let assignments = tenant
                .find(kind, id)
                .map(SimPolicy::assignments)
                .unwrap_or_default();
            Json(json!({ "value": assignments })).into_response()
        }
        _ => StatusCode::NO_CONTENT.into_response(),
    })
}

/// `assign`: the assignments replace the policy's. Each holds only properties of the kind's
/// assignment type (an administrative template's has no `source` or `sourceId`).
fn assign(
    kind: Kind,
    policy_id: &str,
    stored: &mut Stored,
    body: &Map<String, Value>,
) -> Result<(), Refusal> {
    let assignment_type = schema::assignment_type(kind);
    let assignments = body
        .get("assignments")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("'assignments' must be a collection."))?;
    stored.assignments = assignments
        .iter()
        .map(|assignment| {
            let unknown = assignment.as_object().into_iter().flatten().find(|(key, _)| {
                !key.contains('@') && !assignment_type.properties.contains(&key.as_str())
            });
            if let Some((key, _)) = unknown {
                return Err(bad(&format!(
                    "The property '{key}' does not exist on type 'microsoft.graph.{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                    assignment_type.name
                )));
            }
            let target = assignment
                .get("target")
                .and_then(Value::as_object)
                .filter(|t| t.get("@odata.type").and_then(Value::as_str).is_some())
                .ok_or_else(|| bad("Each assignment needs a target with an @odata.type."))?;
            let group = target.get("groupId").and_then(Value::as_str);
            let mut stored = assignment_json(kind, policy_id, "", group, None);
            if let Value::Object(fields) = &mut stored {
                fields.insert("target".into(), Value::Object(target.clone()));
            }
            Ok(stored)
        })
        .collect::<Result<_, Refusal>>()?;
    Ok(())
}

/// The id inside a `…@odata.bind` reference (`…/groupPolicyDefinitions('abc')` → `abc`).
fn bound(value: &Value, key: &str) -> Option<String> {
    let raw = value.get(key)?.as_str()?;
    let start = raw.rfind("('")? + 2;
    let end = raw[start..].find("')")? + start;
    Some(raw[start..end].to_owned())
}

/// `updateDefinitionValues`: deletes, then updates, then adds.
fn update_definition_values(stored: &mut Stored, body: &Map<String, Value>) -> Result<(), Refusal> {
    let list = |key: &str| -> Result<Vec<Value>, Refusal> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => Ok(items.clone()),
            Some(_) => Err(bad(&format!("'{key}' must be a collection."))),
        }
    };
    let (added, updated, deleted) = (list("added")?, list("updated")?, list("deletedIds")?);
    let index_of = |children: &[Value], id: &str| children.iter().position(|c| c["id"] == id);
    for id in &deleted {
        let id = id.as_str().unwrap_or_default();
        let index = index_of(&stored.children, id).ok_or_else(|| {
            bad(&format!(
                "The definition value '{id}' is not in the policy."
            ))
        })?;
        stored.children.remove(index);
    }
    for value in &updated {
        let id = value["id"].as_str().unwrap_or_default();
        let index = index_of(&stored.children, id).ok_or_else(|| {
            bad(&format!(
                "The definition value '{id}' is not in the policy."
            ))
        })?;
        let current = stored.children[index].clone();
        let definition = current["definition"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // An updated value without `presentationValues` keeps its own (a property left out of
        // an update is not changed).
        let presentations = match value.get("presentationValues") {
            Some(_) => Some(presentation_values(value, &current, &definition)?),
            None => None,
        };
        let Value::Object(fields) = &mut stored.children[index] else {
            continue;
        };
        for (key, item) in value.as_object().into_iter().flatten() {
            if !matches!(key.as_str(), "id" | "presentationValues") && !key.contains('@') {
                fields.insert(key.clone(), item.clone());
            }
        }
        if let Some(presentations) = presentations {
            fields.insert("presentationValues".into(), Value::Array(presentations));
        }
        fields.insert("lastModifiedDateTime".into(), json!(now()));
    }
    for value in &added {
        if value.get("id").is_some() {
            return Err(bad("The property 'id' is read-only and cannot be written."));
        }
        let definition = bound(value, "definition@odata.bind")
            .ok_or_else(|| bad("An added definition value needs 'definition@odata.bind'."))?;
        if stored
            .children
            .iter()
            .any(|c| c["definition"]["id"] == definition.as_str())
        {
            return Err(bad(&format!(
                "The policy already has a value for the definition '{definition}'."
            )));
        }
        let presentations = presentation_values(value, &Value::Null, &definition)?;
        let mut fields: Map<String, Value> = value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, _)| key.as_str() != "presentationValues" && !key.contains('@'))
            .map(|(key, item)| (key.clone(), item.clone()))
            .collect();
        fields.insert("id".into(), json!(guid()));
        fields.insert("createdDateTime".into(), json!(now()));
        fields.insert("lastModifiedDateTime".into(), json!(now()));
        fields.insert(
            "definition".into(),
            json!({"id": definition, "displayName": definition}),
        );
        fields.insert("presentationValues".into(), Value::Array(presentations));
        stored.children.push(Value::Object(fields));
    }
    Ok(())
}

/// The presentation values of a written definition value: each keeps the presentation it
/// names (by id, or through `presentation@odata.bind`), a known value id or a new one.
fn presentation_values(
    value: &Value,
    current: &Value,
    definition: &str,
) -> Result<Vec<Value>, Refusal> {
    let empty = Vec::new();
    let known = current["presentationValues"].as_array().unwrap_or(&empty);
    let written = value["presentationValues"].as_array().unwrap_or(&empty);
    written
        .iter()
        .map(|pv| {
            let existing = pv
                .get("id")
                .and_then(Value::as_str)
                .and_then(|id| known.iter().find(|k| k["id"] == id));
            let presentation = match (existing, bound(pv, "presentation@odata.bind")) {
                (_, Some(id)) => known
                    .iter()
                    .map(|k| &k["presentation"])
                    .find(|p| p["id"] == id.as_str())
                    .cloned()
                    .unwrap_or_else(|| json!({"id": id})),
                (Some(existing), None) => existing["presentation"].clone(),
                (None, None) => {
                    return Err(bad(&format!(
                        "A presentation value of the definition '{definition}' needs 'presentation@odata.bind'."
                    )))
                }
            };
            let id = existing
                .and_then(|e| e["id"].as_str())
                .map_or_else(guid, str::to_owned);
            let mut fields: Map<String, Value> = pv
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(key, _)| key.as_str() != "id" && !key.contains("@odata.bind"))
                .map(|(key, item)| (key.clone(), item.clone()))
                .collect();
            fields.insert("id".into(), json!(id));
            fields.insert("lastModifiedDateTime".into(), json!(now()));
            fields.insert("presentation".into(), presentation);
            Ok(Value::Object(fields))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn refused(kind: Kind, body: Value, target: &Target<'_>) -> String {
        match check_body(kind, &object(body), inline(kind), target) {
            Err(refusal) => refusal.message,
            Ok(()) => panic!("accepted"),
        }
    }

    #[test]
    fn an_unknown_top_level_property_is_refused_as_graph_refuses_it() {
        let message = refused(
            Kind::ConfigurationPolicy,
            json!({"name": "n", "platforms": "windows10", "technologies": "mdm", "bogus": 1}),
            &Target::New,
        );
        assert_eq!(
            message,
            "The property 'bogus' does not exist on type 'microsoft.graph.deviceManagementConfigurationPolicy'. Make sure to only use property names that are defined by the type or mark the type as open type."
        );
        // A settings catalog policy has a `name`, not a `displayName`.
        assert!(refused(
            Kind::ConfigurationPolicy,
            json!({"displayName": "n"}),
            &Target::New
        )
        .contains("'displayName' does not exist"));
        // The derived type's own properties, and no other derived type's.
        let custom = json!({"@odata.type": "#microsoft.graph.windows10CustomConfiguration",
            "displayName": "n", "omaSettings": [], "payload": "x"});
        assert!(
            refused(Kind::DeviceConfiguration, custom, &Target::New).contains(
                "'payload' does not exist on type 'microsoft.graph.windows10CustomConfiguration'"
            )
        );
        // A body without @odata.type is read as the collection's declared type, not as the
        // policy's own: an abstract one has none of its derived types' properties.
        assert!(refused(
            Kind::GroupPolicyConfiguration,
            json!({"displayName": "n", "omaSettings": []}),
            &Target::Existing(Some("#microsoft.graph.groupPolicyConfiguration"))
        )
        .contains(
            "'omaSettings' does not exist on type 'microsoft.graph.groupPolicyConfiguration'"
        ));
        assert!(refused(
            Kind::DeviceConfiguration,
            json!({"omaSettings": []}),
            &Target::Existing(Some("#microsoft.graph.windows10CustomConfiguration"))
        )
        .contains("'omaSettings' does not exist on type 'microsoft.graph.deviceConfiguration'"));
    }

    /// `omaSetting` is abstract: each OMA setting names one of its derived types.
    #[test]
    fn an_oma_setting_without_its_derived_type_is_refused() {
        let custom = Target::Existing(Some("#microsoft.graph.windows10CustomConfiguration"));
        let body = |setting: Value| {
            json!({"@odata.type": "#microsoft.graph.windows10CustomConfiguration",
                "omaSettings": [setting]})
        };
        let setting = json!({"displayName": "x", "omaUri": "./Vendor/MSFT/X", "value": 5});
        for typed in [Value::Null, json!("#microsoft.graph.omaSetting"), json!(5)] {
            let mut setting = setting.clone();
            if !typed.is_null() {
                setting["@odata.type"] = typed;
            }
            let message = refused(Kind::DeviceConfiguration, body(setting), &custom);
            assert!(message.contains("omaSettings/0"), "{message}");
        }
        let mut integer = setting.clone();
        integer["@odata.type"] = json!("#microsoft.graph.omaSettingInteger");
        let result = check_body(
            Kind::DeviceConfiguration,
            &object(body(integer)),
            None,
            &custom,
        );
        assert!(result.is_ok(), "{:?}", result.err().map(|r| r.message));
    }

    /// What restore writes back, a read policy without its read-only properties, passes.
    #[test]
    fn every_generated_policy_written_back_passes() {
        let tenant = FakeTenant::generate(9, "t", 40);
        for policy in &tenant.policies {
            let mut body = object(policy.to_json());
            body.retain(|key, _| !READ_ONLY.contains(&key.as_str()));
            if let Some(Value::Array(settings)) = body.get_mut("omaSettings") {
                for setting in settings.iter_mut().filter_map(Value::as_object_mut) {
                    setting.retain(|key, _| !OMA_READ_ONLY.contains(&key.as_str()));
                }
            }
            if let Some(Value::Object(reference)) = body.get_mut("templateReference") {
                reference.retain(|key, _| key == "templateId");
            }
            let current = policy.to_json()["@odata.type"].as_str().map(str::to_owned);
            let result = check_body(
                policy.kind,
                &body,
                None,
                &Target::Existing(current.as_deref()),
            );
            assert!(
                result.is_ok(),
                "{:?}: {:?}",
                policy.kind,
                result.err().map(|r| r.message)
            );
        }
    }
}
