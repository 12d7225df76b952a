//! Writing policies back to Intune (restore): the calls Graph documents for each of the four
//! types, through the same limiter, token cache and retries as reads, plus a write budget.
//!
//! What is sent is the backup's content with everything Graph treats as read-only or as
//! bookkeeping left out (ids, timestamps, `version`, counts, annotations other than
//! `@odata.type`, navigation properties, setting definitions). Every call checks the success
//! status Graph documents for it; any other success status is an unexpected answer.
//!
//! Secrets: a backup never holds a secret's value (captures drop it). An update in place keeps
//! each secret the backup has as the live policy holds it, so it stays as it is in Intune: a
//! settings catalog secret is sent back as its encrypted token (Graph returns it with
//! `valueState: encryptedValueToken` and takes it back); an encrypted OMA setting of a custom
//! profile, which Graph reads as `****` with a `secretReferenceValueId`, is sent as its plain
//! text, read through `getOmaSettingPlainTextValue` right before the write and held nowhere
//! else (never stored, never logged). An OMA setting's `isEncrypted` and
//! `secretReferenceValueId` are read-only and never sent. A secret the live policy does not
//! hold (or any secret, when the policy is created anew) cannot be restored: the write fails
//! before anything is sent, naming the settings ([`secret_settings`] lets a preview say so
//! first). Neither can secrets that share their place (two instances of a setting collection,
//! each with its password; two encrypted OMA settings under one OMA-URI), nor a secret in a
//! setting collection of several instances even if only one of them holds it, in the backup
//! or in the live policy: nothing tells which live value belongs to which instance, so the
//! write fails before anything is sent rather than guess ([`ambiguous_secret_settings`] lets a
//! preview say so).

use std::collections::{BTreeSet, HashMap};

use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::{Answer, Request};
use super::registry::is_graph_id;
use super::{GraphClient, GraphError, GraphFuture, PolicyType, TenantCredentials};
use crate::domain::reason_code::ReasonCode;
use crate::domain::snapshot::{is_secret, CaptureFormat, FormatField};

/// A tenant-wide object a policy refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectoryKind {
    Group,
    AssignmentFilter,
    ScopeTag,
}

impl DirectoryKind {
    /// Its collection under the Graph base.
    fn collection(self) -> &'static str {
        match self {
            Self::Group => "groups",
            Self::AssignmentFilter => "deviceManagement/assignmentFilters",
            Self::ScopeTag => "deviceManagement/roleScopeTags",
        }
    }
}

/// What to write for one policy.
pub struct WriteRequest<'a> {
    pub policy_type: PolicyType,
    /// The live policy to update in place; `None` creates the policy anew.
    pub target: Option<&'a str>,
    /// The backup version's payload as stored (the canonical JSON parsed), captured in `format`.
    pub backup: &'a Value,
    pub format: CaptureFormat,
    /// The live policy's payload as just captured (CaptureFormat::LATEST, same options), when it exists.
    pub live: Option<&'a Value>,
    pub include_assignments: bool,
    pub include_scope_tags: bool,
}

impl WriteRequest<'_> {
    /// Whether the backup's capture format recorded `field`. A part it did not record is not
    /// "empty": an update leaves it as Intune holds it.
    fn recorded(&self, field: FormatField) -> bool {
        self.format.fields().any(|recorded| recorded == field)
    }
}

/// The actions for noncompliance a compliance policy is created with when its backup did not
/// record them (capture format 1): mark the device noncompliant at once, as Intune's own default
/// (Graph refuses a compliance policy without a `block` action).
fn default_compliance_actions() -> Value {
    json!([{
        "ruleName": "PasswordRequired",
        "scheduledActionConfigurations": [{
            "actionType": "block",
            "gracePeriodHours": 0,
            "notificationTemplateId": "",
            "notificationMessageCCList": []
        }]
    }])
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub graph_id: String,
    pub created: bool,
    /// Write requests (POST/PUT/PATCH/DELETE) sent for this policy.
    pub writes: u32,
}

/// A write that failed. When the policy itself was written (created or updated in place) and a
/// later step failed (its settings, definition values or assignments), `written` says so: the
/// policy exists in Intune under that id, and a restore must record it or would create it again.
#[derive(Debug)]
pub struct WriteFailure {
    pub error: GraphError,
    /// The policy's own write, done before `error` (`writes` counts the steps that succeeded).
    pub written: Option<Written>,
    /// Whether a write request (POST, PUT, PATCH) for the policy may have been sent before
    /// `error`: `false` only when the failure came before the first was sent (a read the write
    /// needs first, such as the live secrets or scope tags, failed), so nothing was written.
    pub sent: bool,
}

impl WriteFailure {
    /// A failure before any write request for the policy was sent: nothing was written.
    pub fn unsent(error: GraphError) -> Self {
        Self {
            error,
            written: None,
            sent: false,
        }
    }
}

impl From<GraphError> for WriteFailure {
    /// A failure of the policy's own write (its create or update), which may have been sent:
    /// nothing of it is known to be written, and nothing is known not to be.
    fn from(error: GraphError) -> Self {
        Self {
            error,
            written: None,
            sent: true,
        }
    }
}

/// What [`PolicyWriter::write_policy_reporting`] returns.
pub type WriteFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<Written, WriteFailure>> + Send + 'a>>;

/// What a restore needs from Graph besides reads; tests substitute their own.
pub trait PolicyWriter: Send + Sync {
    /// Whether a group / assignment filter / scope tag exists (a GET by id; 404 → false).
    fn object_exists<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        kind: DirectoryKind,
        id: &'a str,
    ) -> GraphFuture<'a, bool>;
    /// Makes the policy match the backup: updates `target` in place or creates it anew, then
    /// replaces its assignments through the type's `assign` action when `include_assignments`
    /// and the backup recorded assignments. Never deletes a policy, group, filter or scope tag.
    fn write_policy<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        request: WriteRequest<'a>,
    ) -> GraphFuture<'a, Written> {
        Box::pin(async move {
            self.write_policy_reporting(creds, request)
                .await
                .map_err(|failure| failure.error)
        })
    }
    /// [`Self::write_policy`], saying on failure whether the policy itself was written before a
    /// later step failed.
    fn write_policy_reporting<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        request: WriteRequest<'a>,
    ) -> WriteFuture<'a>;
}

impl PolicyWriter for GraphClient {
    fn object_exists<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        kind: DirectoryKind,
        id: &'a str,
    ) -> GraphFuture<'a, bool> {
        Box::pin(GraphClient::object_exists(self, creds, kind, id))
    }

    fn write_policy_reporting<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        request: WriteRequest<'a>,
    ) -> WriteFuture<'a> {
        Box::pin(GraphClient::write_policy_reporting(self, creds, request))
    }
}

/// How a type's content besides its properties is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// Device configuration: everything is a property.
    None,
    /// Settings catalog: `settings` go inline in the create (POST) and the update (PUT) body.
    /// Settings cannot be changed one by one (a PATCH of `settings/{id}` has no route in
    /// Graph: microsoftgraph/microsoft-graph-docs-contrib#2014), so an update replaces the
    /// policy with its settings in one PUT, as Microsoft365DSC's settings catalog resources do.
    InlineSettings,
    /// Compliance: the rules go inline in the create body (Graph refuses a compliance policy
    /// without its block action) and through `scheduleActionsForRules` after an update.
    ScheduledActions,
    /// Administrative templates: `updateDefinitionValues` after the create or the update.
    DefinitionValues,
}

/// How one type is written.
struct WriteSpec {
    content: Content,
    /// PATCH (properties only) or PUT (properties and settings).
    update_method: Method,
}

fn write_spec(policy_type: PolicyType) -> WriteSpec {
    let (content, update_method) = match policy_type {
        PolicyType::SettingsCatalog => (Content::InlineSettings, Method::PUT),
        PolicyType::DeviceConfiguration => (Content::None, Method::PATCH),
        PolicyType::Compliance => (Content::ScheduledActions, Method::PATCH),
        PolicyType::AdministrativeTemplate => (Content::DefinitionValues, Method::PATCH),
    };
    WriteSpec {
        content,
        update_method,
    }
}

/// Whether a second send of `policy_type`'s update, while the first may still reach Intune,
/// leaves the policy as one send would: each write of its update replaces what it names (the
/// PATCH or PUT, `scheduleActionsForRules`, `assign`), except an administrative template's
/// `updateDefinitionValues`, whose `added` values would be added twice.
pub fn update_resendable(policy_type: PolicyType) -> bool {
    write_spec(policy_type).content != Content::DefinitionValues
}

/// Properties Graph computes itself: sending one is an error (or silently ignored).
const READ_ONLY: &[&str] = &[
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "version",
    "settingCount",
    "isAssigned",
    "supportsScopeTags",
];

/// Navigation properties: written through their own calls, never in the policy's body.
const NAVIGATION: &[&str] = &[
    "assignments",
    "settings",
    "scheduledActionsForRule",
    "definitionValues",
    "deviceStatuses",
    "userStatuses",
    "deviceStatusOverview",
    "userStatusOverview",
    "deviceSettingStateSummaries",
    "groupAssignments",
];

/// Whether a key is written back: `@odata.type` is, other annotations and read-only keys not.
fn is_writable_key(key: &str) -> bool {
    !READ_ONLY.contains(&key) && (key == "@odata.type" || !key.contains('@'))
}

/// A copy of an object with only its writable keys, recursively (nested entities such as
/// settings or actions carry ids and timestamps of their own).
fn writable(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(key, _)| is_writable_key(key) && key.as_str() != "settingDefinitions")
                .map(|(key, item)| (key.clone(), writable(item)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(writable).collect()),
        scalar => scalar.clone(),
    }
}

/// The policy's own writable properties (no navigation properties). Of `templateReference`
/// only `templateId` is written: its family, display name and display version are read-only
/// (<https://learn.microsoft.com/en-us/graph/api/resources/intune-deviceconfigv2-devicemanagementconfigurationpolicytemplatereference>).
fn policy_body(policy: &Map<String, Value>, include_scope_tags: bool) -> Map<String, Value> {
    let Value::Object(mut body) = writable(&Value::Object(policy.clone())) else {
        return Map::new();
    };
    body.retain(|key, _| !NAVIGATION.contains(&key.as_str()));
    if !include_scope_tags {
        body.remove("roleScopeTagIds");
    }
    if let Some(Value::Object(reference)) = body.get_mut("templateReference") {
        reference.retain(|key, _| key == "templateId");
    }
    body
}

/// The live policy's scope tags as its capture holds them (`None` when the capture left them
/// out).
fn live_scope_tags(live: Option<&Value>) -> Option<&Value> {
    live?
        .pointer("/policy/roleScopeTagIds")
        .filter(|tags| tags.is_array())
}

/// The array `key` of the payload, or inside its `policy` (as `$expand` returns it).
fn payload_array<'v>(payload: &'v Value, key: &str) -> Option<&'v Vec<Value>> {
    payload
        .get(key)
        .or_else(|| payload.get("policy").and_then(|p| p.get(key)))
        .and_then(Value::as_array)
}

/// Whether a captured assignment was made on the policy itself. `$expand=assignments` also
/// lists the ones a policy set gives it (`source` `policySets`, `sourceId` the set): those
/// belong to the policy set, so a restore neither writes them back as direct assignments nor
/// checks or compares them. No `source` (an older capture) reads as direct.
/// <https://learn.microsoft.com/en-us/graph/api/resources/intune-shared-deviceandappmanagementassignmentsource>
pub fn is_direct_assignment(assignment: &Value) -> bool {
    assignment
        .get("source")
        .and_then(Value::as_str)
        .is_none_or(|source| source.eq_ignore_ascii_case("direct"))
}

/// The direct assignments of a backup's `payload` that a restore writes, as stored: its
/// `assignments`, or its `policy`'s (as `$expand` returns them) when it has none at the top
/// level; `None` when it holds neither. The one place both the restore's reference checks
/// ([`crate::server::restore::refs::references`]) and [`assign_body`] read them from, so that
/// every group and filter written was checked first.
pub fn direct_assignments(payload: &Value) -> Option<impl Iterator<Item = &Value>> {
    Some(
        payload_array(payload, "assignments")?
            .iter()
            .filter(|a| is_direct_assignment(a)),
    )
}

/// The `assign` body for the backup's direct assignments (without `source` and `sourceId`,
/// which only say where an assignment came from); `None` when the backup holds none.
fn assign_body(backup: &Value) -> Option<Value> {
    let assignments: Vec<Value> = direct_assignments(backup)?
        .map(|a| {
            let mut a = writable(a);
            if let Value::Object(map) = &mut a {
                map.remove("source");
                map.remove("sourceId");
            }
            a
        })
        .collect();
    Some(json!({ "assignments": assignments }))
}

/// The secrets found at one place of a payload (see [`collect_secrets`]).
#[derive(Debug, Default)]
struct Place {
    /// Each secret at the place, in the order found.
    secrets: Vec<Map<String, Value>>,
    /// Whether one of them sits in a setting collection of several instances (see
    /// [`holds_several_instances`]).
    among_instances: bool,
}

impl Place {
    /// Whether a live value at this place cannot be paired with a backup's secret: the place
    /// holds more than one secret, or a secret in one of several instances of a setting
    /// collection (the only one holding a secret here may not be the one holding it there).
    fn is_ambiguous(&self) -> bool {
        self.secrets.len() > 1 || self.among_instances
    }
}

/// Every secret under a payload by where it sits (see [`collect_secrets`]).
type SecretPlaces = HashMap<String, Place>;

/// Whether `value`, the property `key` of a setting instance, lists more than one instance of
/// a group setting collection.
///
/// In Graph's settings catalog JSON a group setting collection (a setting instance of type
/// `deviceManagementConfigurationGroupSettingCollectionInstance`) lists its instances in
/// `groupSettingCollectionValue`: an array of `deviceManagementConfigurationGroupSettingValue`s,
/// each one instance (one Wi-Fi payload, one firewall rule) with its own `children`, setting
/// instances that may be collections in turn.
/// More than one instance means two or more elements in that one array, whatever they hold:
/// an instance without the secret, or without any children, is still one the live value may
/// belong to. It is judged per array on a secret's way down, not summed along it: a secret in
/// the only instance of a collection that sits in the only instance of another is alone at
/// its place; a secret below any array of two or more (the outer collection's, or an inner
/// one's in the instance above it) is among instances. Instances carry no id Graph keeps and
/// may be listed in any order (the normaliser compares them as a bag), so neither position nor
/// content pairs a backup's instance with a live one.
///
/// No other array is a collection of instances: `settings` and `children` list different
/// settings, and a simple or choice setting collection lists values; a secret repeated in any
/// of them shares its place with the other and counts as more than one secret.
fn holds_several_instances(key: &str, value: &Value) -> bool {
    key == "groupSettingCollectionValue" && value.as_array().is_some_and(|i| i.len() > 1)
}

/// The settings and secret values under `value`, keyed by where they sit: the path of
/// `settingDefinitionId`s (settings catalog) or the OMA-URI (custom profiles) above them;
/// `among_instances` when `value` sits in a setting collection of several instances.
/// Array positions are no part of a place: the instances of a setting collection are a bag
/// (Intune may list them in another order, and none carries an id Graph keeps), so secrets of
/// two instances share their place, and so do two OMA settings under one OMA-URI.
fn collect_secrets(value: &Value, anchor: &str, among_instances: bool, out: &mut SecretPlaces) {
    match value {
        Value::Object(map) => {
            let anchor = anchored(map, anchor);
            if is_secret(map) {
                let place = out.entry(anchor.clone()).or_default();
                place.secrets.push(map.clone());
                place.among_instances |= among_instances;
            }
            for (key, item) in map {
                let among = among_instances || holds_several_instances(key, item);
                collect_secrets(item, &anchor, among, out);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_secrets(i, anchor, among_instances, out)),
        _ => {}
    }
}

/// The secrets under `payload` by where they sit.
fn secret_places(payload: &Value) -> SecretPlaces {
    let mut found = SecretPlaces::new();
    collect_secrets(payload, "", false, &mut found);
    found
}

fn anchored(map: &Map<String, Value>, anchor: &str) -> String {
    let own = ["settingDefinitionId", "omaUri"]
        .iter()
        .find_map(|key| map.get(*key).and_then(Value::as_str));
    match own {
        Some(own) => format!("{anchor}/{own}"),
        None => anchor.to_owned(),
    }
}

/// The secret settings of a backup payload, by where they sit (setting definition path or
/// OMA-URI): a backup has none of their values, so each can only be kept as the live policy
/// holds it, never created.
pub fn secret_settings(backup: &Value) -> Vec<String> {
    let sorted: BTreeSet<String> = secret_places(backup).into_keys().collect();
    sorted.into_iter().collect()
}

/// The places of a payload (a backup, or the live policy as captured) whose secrets cannot be
/// told apart, sorted: a place holding more than one secret, or a secret in a setting
/// collection of several instances (see [`Place::is_ambiguous`]). A restore cannot tell which
/// value Intune holds belongs to which (a backup has none of their values), so it writes no
/// policy with a secret at such a place.
pub fn ambiguous_secret_settings(payload: &Value) -> Vec<String> {
    shared_places(&secret_places(payload))
}

/// The places whose secrets cannot be told apart, sorted.
fn shared_places(places: &SecretPlaces) -> Vec<String> {
    let shared: BTreeSet<&String> = places
        .iter()
        .filter(|(_, place)| place.is_ambiguous())
        .map(|(name, _)| name)
        .collect();
    shared.into_iter().cloned().collect()
}

/// What holds secrets that cannot be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holder {
    Backup,
    Intune,
}

impl Holder {
    fn label(self) -> &'static str {
        match self {
            Self::Backup => "the backup",
            Self::Intune => "the live policy in Intune",
        }
    }
}

/// The one secret at each place; an error naming the places whose secrets `holder` holds
/// cannot be told apart (see [`Place::is_ambiguous`]: which of them a value belongs to cannot
/// be told, so none is filled by a guess).
fn one_per_place(
    places: SecretPlaces,
    holder: Holder,
) -> Result<HashMap<String, Map<String, Value>>, GraphError> {
    let shared = shared_places(&places);
    if !shared.is_empty() {
        return Err(ambiguous_secrets_error(&shared, holder));
    }
    Ok(places
        .into_iter()
        .filter_map(|(name, mut place)| Some((name, place.secrets.pop()?)))
        .collect())
}

/// The live policy's secrets (`raw`, as Graph reads it) at the places `wanted` names, one per
/// place; an error when its secrets at a wanted place cannot be told apart.
fn live_places(
    raw: &Value,
    wanted: &[String],
) -> Result<HashMap<String, Map<String, Value>>, GraphError> {
    let mut found = secret_places(raw);
    found.retain(|anchor, _| wanted.contains(anchor));
    one_per_place(found, Holder::Intune)
}

/// Read-only properties of an OMA setting: Intune decides what it encrypts and names the
/// encrypted value's reference.
const OMA_READ_ONLY: [&str; 2] = ["isEncrypted", "secretReferenceValueId"];

/// The value Graph reads an encrypted OMA setting as.
const MASKED_SECRET: &str = "****";

/// Fills each secret in `body` with the live policy's value at the same place (a settings
/// catalog secret's encrypted token, an OMA setting's plain text); the places the live policy
/// has no secret for.
fn fill_secrets(
    value: &mut Value,
    anchor: &str,
    live: &HashMap<String, Map<String, Value>>,
    missing: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            let anchor = anchored(map, anchor);
            if is_secret(map) {
                match live.get(&anchor) {
                    Some(secret) => {
                        for key in ["value", "valueState"] {
                            if let Some(kept) = secret.get(key) {
                                map.insert(key.to_owned(), kept.clone());
                            }
                        }
                    }
                    None => missing.push(anchor.clone()),
                }
            }
            for item in map.values_mut() {
                fill_secrets(item, &anchor, live, missing);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| fill_secrets(i, anchor, live, missing)),
        _ => {}
    }
}

/// Removes the read-only properties of a custom profile's OMA settings from a body.
fn strip_oma_read_only(body: &mut Value) {
    let Some(Value::Array(settings)) = body.get_mut("omaSettings") else {
        return;
    };
    for setting in settings.iter_mut().filter_map(Value::as_object_mut) {
        setting.retain(|key, _| !OMA_READ_ONLY.contains(&key.as_str()));
    }
}

/// The error for secrets that cannot be restored.
fn secrets_error(missing: &[String]) -> GraphError {
    GraphError::new(
        ReasonCode::SecretNotRestorable,
        format!(
            "The backup holds secret settings that a backup never records ({}); they can only be kept as the live policy holds them, and it holds none there: set them in Intune",
            missing.join(", ")
        ),
    )
}

/// The error for secrets that `holder` holds at places where they cannot be told apart.
fn ambiguous_secrets_error(places: &[String], holder: Holder) -> GraphError {
    // Short, the advice before the paths: the execute wraps it, and a failure text is cut at
    // 300 characters (real setting paths are long, and several may be named).
    GraphError::new(
        ReasonCode::SecretNotRestorable,
        format!(
            "{} holds a secret more than once or among several collection instances, so which value is whose cannot be told (backups hold no secrets); set it in Intune. Setting path: {}",
            capitalized(holder.label()),
            places.join(", "),
        ),
    )
}

/// `text` with its first letter in upper case (a label that starts a sentence).
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// What is sent for a policy: its writable properties and its other content.
struct Prepared {
    /// A JSON object.
    body: Value,
    /// Settings, compliance rules or definition values (as captured: their bodies are built
    /// from them); `Null` for device configurations.
    content: Value,
}

/// The places of the secrets `prepared` holds (a backup's, without their values); an error
/// when those at a place cannot be told apart.
fn wanted_secrets(prepared: &Prepared) -> Result<Vec<String>, GraphError> {
    let mut places = SecretPlaces::new();
    collect_secrets(&prepared.body, "", false, &mut places);
    collect_secrets(&prepared.content, "", false, &mut places);
    Ok(one_per_place(places, Holder::Backup)?.into_keys().collect())
}

/// Fills each secret of `prepared` with the live one at its place (see [`fill_secrets`]); an
/// error naming the places `live` holds none for.
fn fill_prepared(
    prepared: &mut Prepared,
    live: &HashMap<String, Map<String, Value>>,
) -> Result<(), GraphError> {
    let mut missing = Vec::new();
    fill_secrets(&mut prepared.body, "", live, &mut missing);
    fill_secrets(&mut prepared.content, "", live, &mut missing);
    if missing.is_empty() {
        Ok(())
    } else {
        Err(secrets_error(&missing))
    }
}

/// The content that is not a property, ready to send: settings or compliance rules without
/// their read-only parts, definition values as captured (their bodies are built from them).
fn inline_content(spec: &WriteSpec, backup: &Value) -> Value {
    let key = match spec.content {
        Content::None => return Value::Null,
        Content::InlineSettings => "settings",
        Content::ScheduledActions => "scheduledActionsForRule",
        Content::DefinitionValues => "definitionValues",
    };
    let items = Value::Array(payload_array(backup, key).cloned().unwrap_or_default());
    match spec.content {
        Content::DefinitionValues => items,
        _ => writable(&items),
    }
}

/// The value ids of `definitionValues`, keyed by definition id, with their presentation
/// value ids keyed by presentation id.
struct LiveValue<'v> {
    id: &'v str,
    presentations: HashMap<String, &'v str>,
}

/// The definition (or presentation) id a value names, whatever it reads: its expanded object's
/// id, or the id inside its `…@odata.bind`.
fn named_id<'v>(item: &'v Value, expanded: &str) -> Option<&'v str> {
    if let Some(id) = item
        .get(expanded)
        .and_then(|d| d.get("id"))
        .and_then(Value::as_str)
    {
        return Some(id);
    }
    let bind = item
        .get(format!("{expanded}@odata.bind"))
        .and_then(Value::as_str)?;
    let start = bind.rfind("('")? + 2;
    let end = bind[start..].find("')")? + start;
    Some(&bind[start..end])
}

/// The definition (or presentation) id a value refers to ([`named_id`]), only when it is a
/// Graph id: it goes into an `@odata.bind` URL, where any other text could name another path.
fn referred_id(item: &Value, expanded: &str) -> Option<String> {
    named_id(item, expanded)
        .filter(|id| is_graph_id(id))
        .map(str::to_owned)
}

/// Refuses definition values (as a backup holds them) that name their definition or a
/// presentation by an id that is not a Graph id: they cannot be bound, and leaving them out
/// would restore the policy without them while reporting it restored.
fn bindable_definition_values(values: &Value) -> Result<(), GraphError> {
    let not_bindable =
        |item: &Value, expanded: &str| named_id(item, expanded).is_some_and(|id| !is_graph_id(id));
    let refused = values
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .any(|value| {
            not_bindable(value, "definition")
                || value
                    .get("presentationValues")
                    .and_then(Value::as_array)
                    .is_some_and(|pvs| pvs.iter().any(|pv| not_bindable(pv, "presentation")))
        });
    if refused {
        return Err(GraphError::new(
            ReasonCode::InvalidRunInput,
            "the backup names a setting definition or presentation by an id that is not a Graph id, so its values cannot be written",
        ));
    }
    Ok(())
}

fn live_values(live: Option<&Value>) -> HashMap<String, LiveValue<'_>> {
    let Some(items) = live.and_then(|l| payload_array(l, "definitionValues")) else {
        return HashMap::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let id = item.get("id").and_then(Value::as_str)?;
            let definition = referred_id(item, "definition")?;
            let presentations = item
                .get("presentationValues")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .filter_map(|v| {
                            Some((
                                referred_id(v, "presentation")?,
                                v.get("id").and_then(Value::as_str)?,
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            Some((definition, LiveValue { id, presentations }))
        })
        .collect()
}

impl GraphClient {
    fn graph_url(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.config().graph_base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    /// Whether a group / assignment filter / scope tag exists: a GET by id, 404 → false.
    pub async fn object_exists(
        &self,
        creds: &TenantCredentials,
        kind: DirectoryKind,
        id: &str,
    ) -> Result<bool, GraphError> {
        if !is_graph_id(id) {
            return Ok(false);
        }
        // GET /groups/{id}: https://learn.microsoft.com/en-us/graph/api/group-get
        // GET /deviceManagement/assignmentFilters/{id}:
        //   https://learn.microsoft.com/en-us/graph/api/intune-policyset-deviceandappmanagementassignmentfilter-get
        // GET /deviceManagement/roleScopeTags/{id}:
        //   https://learn.microsoft.com/en-us/graph/api/intune-rbac-rolescopetag-get
        let url = self.graph_url(&format!("{}/{id}?$select=id", kind.collection()));
        match self.get_json(creds, &url).await {
            Ok(_) => Ok(true),
            Err(error) if error.reason_code() == ReasonCode::PolicyNotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Makes the policy match the backup (see [`PolicyWriter::write_policy`]).
    pub async fn write_policy(
        &self,
        creds: &TenantCredentials,
        request: WriteRequest<'_>,
    ) -> Result<Written, GraphError> {
        self.write_policy_reporting(creds, request)
            .await
            .map_err(|failure| failure.error)
    }

    /// [`Self::write_policy`], saying on failure whether the policy itself was written (see
    /// [`WriteFailure`]).
    pub async fn write_policy_reporting(
        &self,
        creds: &TenantCredentials,
        request: WriteRequest<'_>,
    ) -> Result<Written, WriteFailure> {
        if request.target.is_some_and(|target| !is_graph_id(target)) {
            return Err(WriteFailure::unsent(GraphError::new(
                ReasonCode::PolicyNotFound,
                "the target policy id is not a Graph id",
            )));
        }
        let spec = write_spec(request.policy_type);
        let prepared = self
            .prepare(creds, &spec, &request)
            .await
            .map_err(WriteFailure::unsent)?;
        let content = prepared.content.clone();
        let (graph_id, created) = match request.target {
            Some(target) => {
                self.update_in_place(creds, &spec, &request, target, prepared)
                    .await?;
                (target.to_owned(), false)
            }
            None => (self.create(creds, &spec, &request, prepared).await?, true),
        };
        let item = format!("{}/{graph_id}", request.policy_type.spec().collection);
        let mut written = Written {
            graph_id,
            created,
            writes: 1,
        };
        // From here on the policy exists as written: a later step's failure carries it along.
        let rest = match self
            .write_content(creds, &spec, &request, &item, &content, created)
            .await
        {
            Ok(sent) => {
                written.writes += sent;
                self.write_assignments(creds, &request, &item).await
            }
            Err(error) => Err(error),
        };
        match rest {
            Ok(sent) => {
                written.writes += sent;
                Ok(written)
            }
            Err(error) => Err(WriteFailure {
                error,
                written: Some(written),
                sent: true,
            }),
        }
    }

    /// The policy's writable properties and its other content, secrets filled from the live
    /// policy; an error naming the secrets that cannot be filled.
    async fn prepare(
        &self,
        creds: &TenantCredentials,
        spec: &WriteSpec,
        request: &WriteRequest<'_>,
    ) -> Result<Prepared, GraphError> {
        let Some(policy) = request.backup.get("policy").and_then(Value::as_object) else {
            return Err(GraphError::new(
                ReasonCode::InvalidRunInput,
                "the backup has no policy object",
            ));
        };
        let mut prepared = Prepared {
            body: Value::Object(policy_body(policy, request.include_scope_tags)),
            content: inline_content(spec, request.backup),
        };
        // Refused before anything is sent: the values are written after the policy itself.
        if spec.content == Content::DefinitionValues {
            bindable_definition_values(&prepared.content)?;
        }
        // Refused before anything is read when the backup's secrets cannot be told apart.
        let wanted = wanted_secrets(&prepared)?;
        if !wanted.is_empty() {
            let live = match request.target {
                Some(target) => {
                    self.live_secrets(creds, request.policy_type, target, &wanted)
                        .await?
                }
                None => HashMap::new(),
            };
            fill_prepared(&mut prepared, &live)?;
        }
        strip_oma_read_only(&mut prepared.body);
        Ok(prepared)
    }

    /// Updates the policy's properties (settings catalog: with its settings, in one PUT).
    async fn update_in_place(
        &self,
        creds: &TenantCredentials,
        spec: &WriteSpec,
        request: &WriteRequest<'_>,
        target: &str,
        prepared: Prepared,
    ) -> Result<(), WriteFailure> {
        let collection = request.policy_type.spec().collection;
        let url = self.graph_url(&format!("{collection}/{target}"));
        let mut body = prepared.body;
        if spec.content == Content::InlineSettings {
            body["settings"] = prepared.content;
        }
        // A PUT replaces the policy: scope tags the restore leaves out would be dropped, so the
        // live policy's go with it and stay as they are.
        if spec.update_method == Method::PUT && !request.include_scope_tags {
            let tags = match live_scope_tags(request.live) {
                Some(tags) => Some(tags.clone()),
                // Read before anything is sent: its failure writes nothing.
                None => self
                    .scope_tags_of(creds, &url)
                    .await
                    .map_err(WriteFailure::unsent)?,
            };
            if let Some(tags) = tags {
                body["roleScopeTagIds"] = tags;
            }
        }
        // Settings catalog, PUT with the settings (see `Content::InlineSettings`); the others,
        // PATCH:
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfigv2-devicemanagementconfigurationpolicy-update
        //   https://learn.microsoft.com/en-us/graph/api/intune-grouppolicy-grouppolicyconfiguration-update
        // Device configurations and compliance policies have an update page per derived type
        // (none for the abstract base types), e.g.
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-windows10customconfiguration-update
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-windows10compliancepolicy-update
        // The body's @odata.type (the captured policy's) chooses which applies; without it Graph
        // reads the body as the abstract base type, which has none of the derived properties.
        // The update pages document 200 with the updated entity; Graph's update convention
        // (and the simulator) answers 204 without one. Both mean done; nothing else does.
        let method = spec.update_method.clone();
        self.write(creds, method, &url, &body, true, &[200, 204])
            .await?;
        Ok(())
    }

    /// The scope tags of the policy at `url` as Graph holds them now (`None` when it names none).
    async fn scope_tags_of(
        &self,
        creds: &TenantCredentials,
        url: &str,
    ) -> Result<Option<Value>, GraphError> {
        // https://learn.microsoft.com/en-us/graph/api/intune-deviceconfigv2-devicemanagementconfigurationpolicy-get
        let policy = self
            .get_json(creds, &format!("{url}?$select=id,roleScopeTagIds"))
            .await?;
        Ok(policy
            .get("roleScopeTagIds")
            .filter(|t| t.is_array())
            .cloned())
    }

    /// Creates the policy, with the content the create takes inline; its new id.
    async fn create(
        &self,
        creds: &TenantCredentials,
        spec: &WriteSpec,
        request: &WriteRequest<'_>,
        prepared: Prepared,
    ) -> Result<String, GraphError> {
        let collection = request.policy_type.spec().collection;
        let mut body = prepared.body;
        match spec.content {
            Content::InlineSettings => body["settings"] = prepared.content,
            Content::ScheduledActions if request.recorded(FormatField::ComplianceActions) => {
                body["scheduledActionsForRule"] = prepared.content
            }
            Content::ScheduledActions => {
                body["scheduledActionsForRule"] = default_compliance_actions()
            }
            Content::None | Content::DefinitionValues => {}
        }
        // POST creates; 201 with the new entity:
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfigv2-devicemanagementconfigurationpolicy-create
        //   https://learn.microsoft.com/en-us/graph/api/intune-grouppolicy-grouppolicyconfiguration-create
        // Device configurations and compliance policies have a create page per derived type
        // (their collections' types are abstract), e.g.
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-windows10customconfiguration-create
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-windows10compliancepolicy-create
        // The body's @odata.type (the captured policy's) chooses which applies.
        // Not idempotent: a create whose answer is lost is not sent again, or the policy
        // could exist twice.
        let url = self.graph_url(collection);
        let answer = self
            .write(creds, Method::POST, &url, &body, false, &[201])
            .await?;
        answer
            .body
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_graph_id(id))
            .map(str::to_owned)
            .ok_or_else(|| {
                GraphError::new(
                    ReasonCode::InvalidResponse,
                    format!("POST {collection} answered 201 without the new policy's id"),
                )
            })
    }

    /// The live policy's secrets at the places `wanted` names, with the values a write keeps
    /// them with (a capture drops them): settings catalog settings with their encrypted tokens
    /// as Graph returns them, or the policy's encrypted OMA settings with their plain text.
    async fn live_secrets(
        &self,
        creds: &TenantCredentials,
        policy_type: PolicyType,
        target: &str,
        wanted: &[String],
    ) -> Result<HashMap<String, Map<String, Value>>, GraphError> {
        let collection = policy_type.spec().collection;
        let raw = match write_spec(policy_type).content {
            Content::InlineSettings => Value::Array(
                self.get_all_pages(
                    creds,
                    &self.graph_url(&format!("{collection}/{target}/settings")),
                )
                .await?,
            ),
            _ => {
                self.get_json(creds, &self.graph_url(&format!("{collection}/{target}")))
                    .await?
            }
        };
        // Refused before any plain text is read.
        let mut found = live_places(&raw, wanted)?;
        for secret in found.values_mut() {
            // An encrypted OMA setting reads as `****` with its reference; its plain text is
            // what a write takes.
            let Some(reference) = secret
                .get("secretReferenceValueId")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            let plain = self
                .oma_plain_text(creds, collection, target, &reference)
                .await?;
            secret.insert("value".into(), plain);
        }
        Ok(found)
    }

    /// The plain text of a live policy's encrypted OMA setting, by its reference.
    async fn oma_plain_text(
        &self,
        creds: &TenantCredentials,
        collection: &str,
        target: &str,
        reference: &str,
    ) -> Result<Value, GraphError> {
        if !is_graph_id(reference) {
            return Err(GraphError::new(
                ReasonCode::InvalidResponse,
                "the live policy names an encrypted OMA setting by a reference that is not a Graph id",
            ));
        }
        // GET …/getOmaSettingPlainTextValue(secretReferenceValueId='…'): 200 with the string;
        // it needs DeviceManagementConfiguration.ReadWrite.All, as any write does:
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-deviceconfiguration-getomasettingplaintextvalue
        let url = self.graph_url(&format!(
            "{collection}/{target}/getOmaSettingPlainTextValue(secretReferenceValueId='{reference}')"
        ));
        let answer = self.get_json(creds, &url).await?;
        answer
            .get("value")
            .filter(|value| value.as_str().is_some_and(|v| v != MASKED_SECRET))
            .cloned()
            .ok_or_else(|| {
                GraphError::new(
                    ReasonCode::InvalidResponse,
                    "getOmaSettingPlainTextValue answered without the setting's plain text",
                )
            })
    }

    /// Writes what the create or the update left: compliance actions after an update, and
    /// administrative template values. The number of writes sent.
    async fn write_content(
        &self,
        creds: &TenantCredentials,
        spec: &WriteSpec,
        request: &WriteRequest<'_>,
        item: &str,
        content: &Value,
        created: bool,
    ) -> Result<u32, GraphError> {
        match spec.content {
            // A backup that did not record the actions leaves the live ones alone (sending its
            // empty list would remove them).
            Content::ScheduledActions
                if !created && !request.recorded(FormatField::ComplianceActions) =>
            {
                Ok(0)
            }
            Content::ScheduledActions if !created => {
                // https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-devicecompliancepolicy-scheduleactionsforrules
                // 204; it replaces the rules, so sending it twice does no harm.
                let url = self.graph_url(&format!("{item}/scheduleActionsForRules"));
                let body = json!({ "deviceComplianceScheduledActionForRules": content });
                self.write(creds, Method::POST, &url, &body, true, &[204])
                    .await?;
                Ok(1)
            }
            Content::DefinitionValues => {
                let live = if created { None } else { request.live };
                let presentations = request.recorded(FormatField::PresentationValues);
                let body = self.definition_value_changes(content, live, presentations);
                let empty = ["added", "updated", "deletedIds"]
                    .iter()
                    .all(|key| body[*key].as_array().is_none_or(Vec::is_empty));
                if empty {
                    return Ok(0);
                }
                // https://learn.microsoft.com/en-us/graph/api/intune-grouppolicy-grouppolicyconfiguration-updatedefinitionvalues
                // 204. Not idempotent: `added` values would be added twice.
                let url = self.graph_url(&format!("{item}/updateDefinitionValues"));
                self.write(creds, Method::POST, &url, &body, false, &[204])
                    .await?;
                Ok(1)
            }
            _ => Ok(0),
        }
    }

    /// `updateDefinitionValues`' body: backup values the live policy lacks are added (bound to
    /// their definition and presentations), values both have are updated (by the live ids),
    /// live values the backup lacks are deleted. Without `recorded_presentations` (a backup whose format
    /// did not record them) an updated value carries none, so Intune keeps the live ones.
    fn definition_value_changes(
        &self,
        backup: &Value,
        live: Option<&Value>,
        recorded_presentations: bool,
    ) -> Value {
        let mut live = live_values(live);
        let definitions = self.graph_url("deviceManagement/groupPolicyDefinitions");
        let (mut added, mut updated) = (Vec::new(), Vec::new());
        for value in backup.as_array().map_or(&[][..], Vec::as_slice) {
            let Some(map) = value.as_object() else {
                continue;
            };
            let Some(definition) = referred_id(value, "definition") else {
                continue;
            };
            let existing = live.remove(&definition);
            let mut body: Map<String, Value> = map
                .iter()
                .filter(|(key, _)| {
                    is_writable_key(key)
                        && !matches!(key.as_str(), "definition" | "presentationValues")
                })
                .map(|(key, item)| (key.clone(), writable(item)))
                .collect();
            let presentations: Vec<Value> = map
                .get("presentationValues")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice)
                .iter()
                .filter_map(|pv| {
                    let presentation = referred_id(pv, "presentation")?;
                    let mut out: Map<String, Value> = pv
                        .as_object()?
                        .iter()
                        .filter(|(key, _)| is_writable_key(key) && key.as_str() != "presentation")
                        .map(|(key, item)| (key.clone(), writable(item)))
                        .collect();
                    out.insert(
                        "presentation@odata.bind".into(),
                        json!(format!(
                            "{definitions}('{definition}')/presentations('{presentation}')"
                        )),
                    );
                    if let Some(id) = existing
                        .as_ref()
                        .and_then(|e| e.presentations.get(&presentation))
                    {
                        out.insert("id".into(), json!(id));
                    }
                    Some(Value::Object(out))
                })
                .collect();
            match existing {
                Some(_) if !recorded_presentations => {}
                _ => {
                    body.insert("presentationValues".into(), Value::Array(presentations));
                }
            }
            match existing {
                Some(existing) => {
                    body.insert("id".into(), json!(existing.id));
                    updated.push(Value::Object(body));
                }
                None => {
                    body.insert(
                        "definition@odata.bind".into(),
                        json!(format!("{definitions}('{definition}')")),
                    );
                    added.push(Value::Object(body));
                }
            }
        }
        let mut deleted: Vec<&str> = live.values().map(|v| v.id).collect();
        deleted.sort_unstable();
        json!({ "added": added, "updated": updated, "deletedIds": deleted })
    }

    /// Replaces the assignments through the type's `assign` action when asked and recorded.
    async fn write_assignments(
        &self,
        creds: &TenantCredentials,
        request: &WriteRequest<'_>,
        item: &str,
    ) -> Result<u32, GraphError> {
        if !request.include_assignments {
            return Ok(0);
        }
        let Some(body) = assign_body(request.backup) else {
            return Ok(0);
        };
        // `assign` replaces every assignment; 200 with the new collection:
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfigv2-devicemanagementconfigurationpolicy-assign
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-deviceconfiguration-assign
        //   https://learn.microsoft.com/en-us/graph/api/intune-deviceconfig-devicecompliancepolicy-assign
        //   https://learn.microsoft.com/en-us/graph/api/intune-grouppolicy-grouppolicyconfiguration-assign
        let url = self.graph_url(&format!("{item}/assign"));
        self.write(creds, Method::POST, &url, &body, true, &[200])
            .await?;
        Ok(1)
    }

    /// One write; an answer with a success status other than `expected` is an error.
    async fn write(
        &self,
        creds: &TenantCredentials,
        method: Method,
        url: &str,
        body: &Value,
        idempotent: bool,
        expected: &[u16],
    ) -> Result<Answer, GraphError> {
        let request = Request {
            method: method.clone(),
            url,
            body: Some(body),
            idempotent,
        };
        let answer = self.send(creds, &request).await?;
        if expected.contains(&answer.status) {
            return Ok(answer);
        }
        let path = url
            .strip_prefix(self.config().graph_base.trim_end_matches('/'))
            .unwrap_or(url);
        Err(GraphError::new(
            ReasonCode::InvalidResponse,
            format!(
                "{method} {} answered {} where Graph documents {}",
                path.trim_start_matches('/'),
                answer.status,
                expected
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_keep_only_writable_properties() {
        let policy = json!({
            "id": "p", "createdDateTime": "x", "lastModifiedDateTime": "y", "version": 3,
            "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
            "@odata.context": "c", "displayName": "n", "roleScopeTagIds": ["0"],
            "assignments": [], "nested": {"id": "i", "value": 1}
        });
        let map = policy.as_object().expect("object");
        let body = policy_body(map, false);
        let keys: Vec<&str> = body.keys().map(String::as_str).collect();
        assert_eq!(keys, ["@odata.type", "displayName", "nested"]);
        assert_eq!(body["nested"], json!({"value": 1}));
        assert!(policy_body(map, true).contains_key("roleScopeTagIds"));
    }

    #[test]
    fn a_template_reference_is_written_as_its_id_alone() {
        let policy = json!({"name": "n", "templateReference": {"templateId": "t",
            "templateFamily": "none", "templateDisplayName": "d", "templateDisplayVersion": "1"}});
        let body = policy_body(policy.as_object().expect("object"), true);
        assert_eq!(body["templateReference"], json!({"templateId": "t"}));
    }

    #[test]
    fn the_live_scope_tags_are_read_from_a_capture_that_holds_them() {
        let live = json!({"policy": {"roleScopeTagIds": ["0", "7"]}});
        assert_eq!(live_scope_tags(Some(&live)), Some(&json!(["0", "7"])));
        assert_eq!(live_scope_tags(Some(&json!({"policy": {}}))), None);
        assert_eq!(live_scope_tags(None), None);
    }

    #[test]
    fn secrets_are_filled_from_the_live_policy_by_place() {
        let backup = json!({"settings": [{"settingInstance": {"settingDefinitionId": "a",
            "simpleSettingValue": {"@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue", "valueState": "encryptedValueToken"}}}]});
        let live = json!([{"settingInstance": {"settingDefinitionId": "a",
            "simpleSettingValue": {"@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue", "valueState": "encryptedValueToken", "value": "tok"}}}]);
        assert_eq!(secret_settings(&backup), ["/a"]);
        let found = live_places(&live, &secret_settings(&backup)).expect("one secret at /a");
        let mut body = backup.clone();
        let mut missing = Vec::new();
        fill_secrets(&mut body, "", &found, &mut missing);
        assert!(missing.is_empty());
        assert_eq!(
            body["settings"][0]["settingInstance"]["simpleSettingValue"]["value"],
            "tok"
        );
        let mut again = backup;
        fill_secrets(&mut again, "", &HashMap::new(), &mut missing);
        assert_eq!(missing, ["/a"]);
    }

    /// A settings catalog secret's value: with its encrypted token as Graph reads it, or
    /// without (as a backup holds it).
    fn secret_value(token: Option<&str>) -> Value {
        let mut value = json!({
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue",
            "valueState": "encryptedValueToken"
        });
        if let Some(token) = token {
            value["value"] = json!(token);
        }
        value
    }

    /// Settings with one `wifi` collection: one instance (a Wi-Fi payload) per password.
    fn wifi_settings(passwords: &[Option<&str>]) -> Value {
        let instances: Vec<Value> = passwords
            .iter()
            .map(|password| {
                json!({"children": [{
                    "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
                    "settingDefinitionId": "wifi_password",
                    "simpleSettingValue": secret_value(*password)
                }]})
            })
            .collect();
        json!([{"id": "0", "settingInstance": {
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
            "settingDefinitionId": "wifi",
            "groupSettingCollectionValue": instances
        }}])
    }

    /// A custom profile's encrypted OMA setting under `uri`: with its value as `live` reads it
    /// (`****`), or as a backup holds it.
    fn encrypted_oma(uri: &str, reference: &str, live: bool) -> Value {
        let mut setting = json!({
            "@odata.type": "#microsoft.graph.omaSettingString",
            "displayName": "Wi-Fi pre-shared key",
            "omaUri": uri,
            "isEncrypted": true,
            "secretReferenceValueId": reference
        });
        if live {
            setting["value"] = json!(MASKED_SECRET);
        }
        setting
    }

    /// What `prepare` makes of a backup's `body` and `content` against the live policy's
    /// secrets as Graph reads them (`raw`): both filled, or the error the write fails with.
    fn fill_from(body: Value, content: Value, raw: &Value) -> Result<Prepared, GraphError> {
        let mut prepared = Prepared { body, content };
        let wanted = wanted_secrets(&prepared)?;
        let live = live_places(raw, &wanted)?;
        fill_prepared(&mut prepared, &live)?;
        Ok(prepared)
    }

    /// The error `fill_from` must fail with; `why` says why.
    fn refused(filled: Result<Prepared, GraphError>, why: &str) -> GraphError {
        match filled {
            Ok(prepared) => panic!("{why}, yet filled: {} {}", prepared.body, prepared.content),
            Err(error) => error,
        }
    }

    #[test]
    fn two_secrets_at_one_setting_path_are_never_filled_by_a_guess() {
        let place = "/wifi/wifi_password";
        let two_live = wifi_settings(&[Some("tokA"), Some("tokB")]);
        assert_eq!(ambiguous_secret_settings(&two_live), [place]);
        // The backup holds the two networks: which token is whose cannot be told.
        let backup = wifi_settings(&[None, None]);
        assert_eq!(secret_settings(&backup), [place]);
        assert_eq!(ambiguous_secret_settings(&backup), [place]);
        let error = refused(
            fill_from(json!({}), backup.clone(), &two_live),
            "two backup secrets at one place",
        );
        assert_eq!(error.reason_code(), ReasonCode::SecretNotRestorable);
        assert!(error.message().contains(place), "{}", error.message());
        assert!(
            error.message().starts_with("The backup "),
            "{}",
            error.message()
        );
        // Even against one live network: its token may be either's.
        let one_live = wifi_settings(&[Some("tokA")]);
        let error = refused(
            fill_from(json!({}), backup, &one_live),
            "two backup secrets against one live",
        );
        assert!(error.message().contains(place), "{}", error.message());
        // A backup of one network against two live ones: which is the backup's cannot be told.
        let error = refused(
            fill_from(json!({}), wifi_settings(&[None]), &two_live),
            "one backup secret against two live",
        );
        assert_eq!(error.reason_code(), ReasonCode::SecretNotRestorable);
        assert!(error.message().contains(place), "{}", error.message());
        assert!(
            error.message().starts_with("The live policy in Intune "),
            "{}",
            error.message()
        );
    }

    #[test]
    fn two_encrypted_oma_settings_under_one_uri_are_never_filled_by_a_guess() {
        let uri = "./Vendor/MSFT/WiFi/Profile/Corp/WlanXml";
        let place = format!("/{uri}");
        let live = json!({"omaSettings": [
            encrypted_oma(uri, "5b0e2a61-0000-4000-8000-000000000001", true),
            encrypted_oma(uri, "5b0e2a61-0000-4000-8000-000000000002", true),
        ]});
        assert_eq!(ambiguous_secret_settings(&live), [place.as_str()]);
        let two = json!({"omaSettings": [
            encrypted_oma(uri, "5b0e2a61-0000-4000-8000-000000000001", false),
            encrypted_oma(uri, "5b0e2a61-0000-4000-8000-000000000002", false),
        ]});
        let error = refused(
            fill_from(two, Value::Null, &live),
            "two backup OMA secrets under one URI",
        );
        assert_eq!(error.reason_code(), ReasonCode::SecretNotRestorable);
        assert!(error.message().contains(&place), "{}", error.message());
        // One in the backup, two live: refused before any plain text would be read.
        let one = json!({"omaSettings": [encrypted_oma(uri, "5b0e2a61-0000-4000-8000-000000000001", false)]});
        let error = refused(
            fill_from(one, Value::Null, &live),
            "one backup OMA secret against two live",
        );
        assert!(error.message().contains(&place), "{}", error.message());
    }

    #[test]
    fn a_secret_alone_at_its_place_is_still_filled() {
        let filled = fill_from(
            json!({}),
            wifi_settings(&[None]),
            &wifi_settings(&[Some("tokA")]),
        )
        .unwrap_or_else(|error| panic!("filled: {}", error.message()));
        assert_eq!(filled.content, wifi_settings(&[Some("tokA")]));
        // Secrets at two places, one each: each filled with its own.
        let two_places = |first: Option<&str>, second: Option<&str>| {
            json!([
                {"settingInstance": {"settingDefinitionId": "a", "simpleSettingValue": secret_value(first)}},
                {"settingInstance": {"settingDefinitionId": "b", "simpleSettingValue": secret_value(second)}}
            ])
        };
        let filled = fill_from(
            json!({}),
            two_places(None, None),
            &two_places(Some("tokA"), Some("tokB")),
        )
        .unwrap_or_else(|error| panic!("filled: {}", error.message()));
        assert_eq!(filled.content, two_places(Some("tokA"), Some("tokB")));
    }

    /// A settings catalog setting instance of definition `id`: a group setting collection
    /// listing `instances` (each a `groupSettingValue` with its children).
    fn collection(id: &str, instances: Vec<Value>) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
            "settingDefinitionId": id,
            "groupSettingCollectionValue": instances
        })
    }

    /// One instance of a group setting collection, with `children` (setting instances).
    fn instance(children: Vec<Value>) -> Value {
        json!({ "children": children })
    }

    /// A Wi-Fi network's SSID.
    fn ssid(name: &str) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
            "settingDefinitionId": "wifi_ssid",
            "simpleSettingValue": {
                "@odata.type": "#microsoft.graph.deviceManagementConfigurationStringSettingValue",
                "value": name
            }
        })
    }

    /// A Wi-Fi network's password: with its encrypted token as Graph reads it, or without.
    fn password(token: Option<&str>) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance",
            "settingDefinitionId": "wifi_password",
            "simpleSettingValue": secret_value(token)
        })
    }

    /// A policy's settings: the one setting instance `setting`.
    fn settings_of(setting: Value) -> Value {
        json!([{ "id": "0", "settingInstance": setting }])
    }

    #[test]
    fn a_secret_in_one_of_several_collection_instances_is_never_filled_by_a_guess() {
        let place = "/wifi/wifi_password";
        // The backup's Corp network has a password, its Guest network none; in Intune it is
        // the other way round. One secret at the place on each side, yet Intune's is Guest's.
        let backup = settings_of(collection(
            "wifi",
            vec![
                instance(vec![ssid("Corp"), password(None)]),
                instance(vec![ssid("Guest")]),
            ],
        ));
        let live = settings_of(collection(
            "wifi",
            vec![
                instance(vec![ssid("Corp")]),
                instance(vec![ssid("Guest"), password(Some("tokGuest"))]),
            ],
        ));
        let error = refused(
            fill_from(json!({}), backup.clone(), &live),
            "Corp filled with Guest's password",
        );
        assert_eq!(secret_settings(&backup), [place]);
        assert_eq!(ambiguous_secret_settings(&backup), [place]);
        assert_eq!(ambiguous_secret_settings(&live), [place]);
        assert_eq!(error.reason_code(), ReasonCode::SecretNotRestorable);
        assert!(error.message().contains(place), "{}", error.message());
        assert!(
            error.message().starts_with("The backup "),
            "{}",
            error.message()
        );
        // A backup of Corp alone, against Intune's two networks: the token may be Guest's.
        let corp = settings_of(collection(
            "wifi",
            vec![instance(vec![ssid("Corp"), password(None)])],
        ));
        assert!(ambiguous_secret_settings(&corp).is_empty());
        let error = refused(
            fill_from(json!({}), corp, &live),
            "one backup instance against two live ones",
        );
        assert_eq!(error.reason_code(), ReasonCode::SecretNotRestorable);
        assert!(
            error.message().starts_with("The live policy in Intune "),
            "{}",
            error.message()
        );
        assert!(error.message().contains(place), "{}", error.message());
        // Against one live network: it may be the backup's Guest, renamed. An instance counts
        // however little it holds.
        let one_live = settings_of(collection(
            "wifi",
            vec![instance(vec![ssid("Corp"), password(Some("tokCorp"))])],
        ));
        refused(
            fill_from(json!({}), backup, &one_live),
            "two backup instances against one live",
        );
        let with_empty = settings_of(collection(
            "wifi",
            vec![instance(vec![password(None)]), instance(vec![])],
        ));
        assert_eq!(ambiguous_secret_settings(&with_empty), [place]);
        refused(
            fill_from(json!({}), with_empty, &one_live),
            "a backup instance beside an empty one",
        );
    }

    #[test]
    fn a_secret_in_a_collection_of_one_instance_is_still_filled() {
        let corp = |token: Option<&str>| {
            settings_of(collection(
                "wifi",
                vec![instance(vec![ssid("Corp"), password(token)])],
            ))
        };
        assert!(ambiguous_secret_settings(&corp(Some("tokCorp"))).is_empty());
        let filled = fill_from(json!({}), corp(None), &corp(Some("tokCorp")))
            .unwrap_or_else(|error| panic!("filled: {}", error.message()));
        assert_eq!(filled.content, corp(Some("tokCorp")));
        // Other settings' collections of several instances are no concern of this secret's.
        let beside = |token: Option<&str>| {
            json!([
                {"id": "0", "settingInstance": collection("wifi", vec![instance(vec![ssid("Corp"), password(token)])])},
                {"id": "1", "settingInstance": collection("vpn", vec![instance(vec![]), instance(vec![])])}
            ])
        };
        let filled = fill_from(json!({}), beside(None), &beside(Some("tokCorp")))
            .unwrap_or_else(|error| panic!("filled: {}", error.message()));
        assert_eq!(filled.content, beside(Some("tokCorp")));
    }

    #[test]
    fn nested_collections_are_judged_instance_by_instance() {
        let place = "/wifi/eap/wifi_password";
        // A password in the one EAP instance of the one Wi-Fi instance: alone at its place.
        let nested = |token: Option<&str>| {
            settings_of(collection(
                "wifi",
                vec![instance(vec![
                    ssid("Corp"),
                    collection("eap", vec![instance(vec![password(token)])]),
                ])],
            ))
        };
        assert_eq!(secret_settings(&nested(None)), [place]);
        assert!(ambiguous_secret_settings(&nested(Some("tokCorp"))).is_empty());
        let filled = fill_from(json!({}), nested(None), &nested(Some("tokCorp")))
            .unwrap_or_else(|error| panic!("filled: {}", error.message()));
        assert_eq!(filled.content, nested(Some("tokCorp")));
        // Two instances of the inner collection, one with the password.
        let inner_two = settings_of(collection(
            "wifi",
            vec![instance(vec![
                ssid("Corp"),
                collection(
                    "eap",
                    vec![instance(vec![]), instance(vec![password(Some("tokB"))])],
                ),
            ])],
        ));
        let error = refused(
            fill_from(json!({}), nested(None), &inner_two),
            "a live secret in one of two inner instances",
        );
        assert_eq!(ambiguous_secret_settings(&inner_two), [place]);
        assert!(error.message().contains(place), "{}", error.message());
        // Two outer instances, each with an inner collection of one instance: the inner
        // arrays hold one each, yet the password sits in one of two Wi-Fi payloads.
        let outer_two = settings_of(collection(
            "wifi",
            vec![
                instance(vec![
                    ssid("Corp"),
                    collection("eap", vec![instance(vec![password(None)])]),
                ]),
                instance(vec![
                    ssid("Guest"),
                    collection("eap", vec![instance(vec![])]),
                ]),
            ],
        ));
        assert_eq!(ambiguous_secret_settings(&outer_two), [place]);
        let error = refused(
            fill_from(json!({}), outer_two, &nested(Some("tokCorp"))),
            "a backup secret in one of two outer instances",
        );
        assert!(
            error.message().starts_with("The backup "),
            "{}",
            error.message()
        );
    }

    #[test]
    fn only_direct_assignments_are_assigned() {
        let target = |group: &str| json!({"groupId": group});
        let backup = json!({"assignments": [
            {"id": "a-1", "source": "policySets", "sourceId": "set-1", "target": target("g-1")},
            {"id": "a-2", "source": "direct", "sourceId": "p", "target": target("g-2")},
            {"id": "a-3", "target": target("g-3")},
        ]});
        assert_eq!(
            assign_body(&backup),
            Some(json!({"assignments": [{"target": target("g-2")}, {"target": target("g-3")}]}))
        );
        let only_inherited = json!({"policy": {"assignments": [
            {"source": "policySets", "sourceId": "set-1", "target": target("g-1")}
        ]}});
        assert_eq!(
            assign_body(&only_inherited),
            Some(json!({"assignments": []})),
            "the policy keeps no direct assignment"
        );
        assert_eq!(assign_body(&json!({"policy": {}})), None);
    }

    #[test]
    fn every_group_and_filter_assigned_is_one_the_restore_checks() {
        use crate::server::restore::refs::references;
        let target = |group: &str, filter: &str| {
            json!({"@odata.type": "#microsoft.graph.groupAssignmentTarget",
                "groupId": group, "deviceAndAppManagementAssignmentFilterId": filter})
        };
        for backup in [
            // Inside the policy, as `$expand` returns them.
            json!({"policy": {"assignments": [{"target": target("g-1", "f-1")}]}}),
            // Padded ids: checked as sent, not as the trimmed ids.
            json!({"assignments": [{"target": target(" g-2 ", "f-2\t")}]}),
            json!({"assignments": [{"target": target("g-3", "f-3")}],
                "policy": {"assignments": [{"target": target("g-4", "f-4")}]}}),
        ] {
            let body = assign_body(&backup).expect("assignments");
            let mut sent: Vec<String> = body["assignments"]
                .as_array()
                .expect("array")
                .iter()
                .flat_map(|a| {
                    let target = &a["target"];
                    [
                        target["groupId"].as_str(),
                        target["deviceAndAppManagementAssignmentFilterId"].as_str(),
                    ]
                })
                .flatten()
                .map(str::to_owned)
                .collect();
            sent.sort();
            let mut checked: Vec<String> = references(&backup, true, false)
                .into_iter()
                .map(|r| r.id)
                .collect();
            checked.sort();
            assert_eq!(checked, sent, "{backup}");
        }
    }

    #[test]
    fn an_assignment_without_a_source_is_direct() {
        assert!(is_direct_assignment(&json!({"target": {}})));
        assert!(is_direct_assignment(&json!({"source": null})));
        assert!(is_direct_assignment(&json!({"source": "direct"})));
        assert!(!is_direct_assignment(&json!({"source": "policySets"})));
    }

    #[test]
    fn bound_ids_are_read() {
        let value = json!({"definition@odata.bind": "https://g/beta/deviceManagement/groupPolicyDefinitions('d1')"});
        assert_eq!(referred_id(&value, "definition").as_deref(), Some("d1"));
        let value = json!({"definition": {"id": "d2"}});
        assert_eq!(referred_id(&value, "definition").as_deref(), Some("d2"));
    }

    #[test]
    fn a_definition_id_that_is_not_a_graph_id_never_reaches_a_bind() {
        let client = GraphClient::new(crate::server::graph::GraphConfig::new(
            "https://login",
            "https://graph/beta",
        ))
        .expect("client");
        let bad_definition = json!([{"definition": {"id": "d')/x('"}, "enabled": true}]);
        let bad_presentation = json!([{"definition": {"id": "d1"}, "enabled": true,
            "presentationValues": [{"presentation": {"id": "p')/x('"}, "value": "v"}]}]);
        let bad_bind = json!([{"enabled": true,
            "definition@odata.bind": "https://graph/beta/deviceManagement/groupPolicyDefinitions('d 1')"}]);
        for backup in [&bad_definition, &bad_presentation, &bad_bind] {
            let body = client.definition_value_changes(backup, None, true);
            assert!(
                !body.to_string().contains("')/x('") && !body.to_string().contains("d 1"),
                "bound: {body}"
            );
            let refused = bindable_definition_values(backup).expect_err("refused");
            assert_eq!(refused.reason_code(), ReasonCode::InvalidRunInput);
        }
        // A Graph id is bound as before.
        let good = json!([{"definition": {"id": "d1"}, "enabled": true,
            "presentationValues": [{"presentation": {"id": "p1"}, "value": "v"}]}]);
        assert!(bindable_definition_values(&good).is_ok());
        let body = client.definition_value_changes(&good, None, true);
        assert_eq!(
            body["added"][0]["presentationValues"][0]["presentation@odata.bind"],
            json!("https://graph/beta/deviceManagement/groupPolicyDefinitions('d1')/presentations('p1')")
        );
    }
}
