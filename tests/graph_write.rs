//! Restore's write path against the Graph simulator over real HTTP: for every policy type a
//! policy changed in Intune is written back (or a deleted one created anew) and a fresh capture
//! hashes as the backup did; Graph's validation (read-only properties, unknown types, secrets
//! without values) surfaces as errors; unexpected success codes are refused; the write budget
//! paces writes and only writes; a read-only simulator proves nothing is written.

use std::time::Duration;

use proptest::prelude::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::snapshot::CaptureFormat;
use tenantatlas::graph_sim::{AppSetup, Fault, Kind, Knobs, SimHandle, SimPolicy, READ_ONLY};
use tenantatlas::server::graph::snapshot::content_hash;
use tenantatlas::server::graph::write::secret_settings;
use tenantatlas::server::graph::{
    CaptureOptions, DirectoryKind, GraphClient, GraphError, PolicyType, PolicyWriter, Snapshot,
    TenantCredentials, WriteBudget, WriteRequest, Written,
};

use crate::sim_support;
use sim_support::{
    creds_with, fast_client, fast_config, nz, send, start_sim, token, SECRET, TENANT,
};

const BOTH: CaptureOptions = CaptureOptions {
    include_assignments: true,
    include_scope_tags: true,
};

async fn start(knobs: Knobs) -> SimHandle {
    start_sim(40, knobs).await
}

fn creds() -> TenantCredentials {
    creds_with(SECRET)
}

fn client(sim: &SimHandle) -> GraphClient {
    fast_client(sim)
}

fn kind_of(policy_type: PolicyType) -> Kind {
    match policy_type {
        PolicyType::SettingsCatalog => Kind::ConfigurationPolicy,
        PolicyType::DeviceConfiguration => Kind::DeviceConfiguration,
        PolicyType::Compliance => Kind::CompliancePolicy,
        PolicyType::AdministrativeTemplate => Kind::GroupPolicyConfiguration,
    }
}

/// A policy of the type that has assignments, preferring one that holds secrets (a custom
/// profile's encrypted OMA setting, a secret catalog setting) when `secrets`, or none when not.
fn pick(sim: &SimHandle, policy_type: PolicyType, secrets: bool) -> SimPolicy {
    let policies = sim.policies(TENANT);
    let holds_secret = |p: &SimPolicy| {
        let json = sim.policy_json(TENANT, &p.id).expect("policy");
        !secret_settings(&json).is_empty()
    };
    policies
        .iter()
        .filter(|p| p.kind == kind_of(policy_type) && p.assignment_count > 0)
        .find(|p| holds_secret(p) == secrets)
        .or_else(|| policies.iter().find(|p| p.kind == kind_of(policy_type)))
        .cloned()
        .expect("the tenant has this type")
}

async fn capture(client: &GraphClient, policy_type: PolicyType, id: &str) -> Snapshot {
    client
        .capture_policy(&creds(), policy_type, id, BOTH)
        .await
        .expect("capture")
}

fn payload(snapshot: &Snapshot) -> Value {
    serde_json::from_str(&snapshot.canonical_json).expect("stored JSON parses")
}

async fn write(
    client: &GraphClient,
    policy_type: PolicyType,
    target: Option<&str>,
    backup: &Value,
    live: Option<&Value>,
) -> Result<Written, GraphError> {
    write_format(
        client,
        policy_type,
        target,
        (backup, CaptureFormat::LATEST),
        live,
    )
    .await
}

/// [`write`] of a backup captured in `format`.
async fn write_format(
    client: &GraphClient,
    policy_type: PolicyType,
    target: Option<&str>,
    (backup, format): (&Value, CaptureFormat),
    live: Option<&Value>,
) -> Result<Written, GraphError> {
    PolicyWriter::write_policy(
        client,
        &creds(),
        WriteRequest {
            policy_type,
            target,
            backup,
            format,
            live,
            include_assignments: true,
            include_scope_tags: true,
        },
    )
    .await
}

/// A payload as capture format 1 stored it: without the parts format 2 added (compliance
/// actions, administrative template presentation values).
fn as_format_1(payload: &Value) -> Value {
    let mut v1 = payload.clone();
    if let Some(fields) = v1.as_object_mut() {
        fields.remove("scheduledActionsForRule");
    }
    if let Some(values) = v1.get_mut("definitionValues").and_then(Value::as_array_mut) {
        for value in values.iter_mut().filter_map(Value::as_object_mut) {
            value.remove("presentationValues");
        }
    }
    v1
}

/// The part of a payload that capture format 1 did not record, as comparable JSON: compliance
/// actions (by rule and action type), or each definition's presentation values.
fn unrecorded_part(policy_type: PolicyType, payload: &Value) -> Value {
    let sorted = |mut items: Vec<Value>| {
        items.sort_by_key(|item| item.to_string());
        Value::Array(items)
    };
    let children = |key: &str| payload[key].as_array().cloned().unwrap_or_default();
    match policy_type {
        PolicyType::Compliance => sorted(
            children("scheduledActionsForRule")
                .iter()
                .flat_map(|rule| rule["scheduledActionConfigurations"].as_array().cloned())
                .flatten()
                .map(|action| json!([action["actionType"], action["gracePeriodHours"]]))
                .collect(),
        ),
        _ => sorted(
            children("definitionValues")
                .iter()
                .map(|value| {
                    let presentations = value["presentationValues"]
                        .as_array()
                        .map(|p| p.iter().map(|pv| pv["value"].clone()).collect::<Vec<_>>());
                    json!([value["definition"]["id"], presentations])
                })
                .collect(),
        ),
    }
}

#[tokio::test]
async fn a_format_1_backup_leaves_what_it_did_not_record_as_intune_holds_it() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    for policy_type in [PolicyType::Compliance, PolicyType::AdministrativeTemplate] {
        let policy = pick(&sim, policy_type, false);
        let original = capture(&client, policy_type, &policy.id).await;
        let full = payload(&original);
        let held = unrecorded_part(policy_type, &full);
        assert_ne!(
            unrecorded_part(policy_type, &as_format_1(&full)),
            held,
            "{policy_type:?} holds the part format 1 did not record"
        );
        assert!(sim.rename_policy(TENANT, &policy.id, "Changed in Intune"));
        let live = capture(&client, policy_type, &policy.id).await;

        write_format(
            &client,
            policy_type,
            Some(&policy.id),
            (&as_format_1(&full), CaptureFormat::V1),
            Some(&payload(&live)),
        )
        .await
        .unwrap_or_else(|e| panic!("{policy_type:?}: {e}"));
        let after = capture(&client, policy_type, &policy.id).await;
        assert_eq!(after.display_name, original.display_name, "{policy_type:?}");
        assert_eq!(
            unrecorded_part(policy_type, &payload(&after)),
            held,
            "{policy_type:?}: what the backup did not record stays as Intune held it"
        );
    }

    // Created anew from format 1, a compliance policy gets Intune's default: block at once.
    let policy = pick(&sim, PolicyType::Compliance, false);
    let original = capture(&client, PolicyType::Compliance, &policy.id).await;
    assert!(sim.remove_policy(TENANT, &policy.id));
    let written = write_format(
        &client,
        PolicyType::Compliance,
        None,
        (&as_format_1(&payload(&original)), CaptureFormat::V1),
        None,
    )
    .await
    .expect("a format 1 compliance policy is created");
    let created = capture(&client, PolicyType::Compliance, &written.graph_id).await;
    assert_eq!(
        unrecorded_part(PolicyType::Compliance, &payload(&created)),
        json!([["block", 0]])
    );
}

#[tokio::test]
async fn a_changed_policy_of_every_type_is_written_back_to_its_backup() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    for policy_type in PolicyType::ALL {
        for secrets in [true, false] {
            let policy = pick(&sim, policy_type, secrets);
            let original = capture(&client, policy_type, &policy.id).await;
            assert!(sim.change_settings(TENANT, &policy.id));
            assert!(sim.rename_policy(TENANT, &policy.id, "Changed in Intune"));
            assert!(sim.add_assignment(TENANT, &policy.id));
            let live = capture(&client, policy_type, &policy.id).await;
            assert_ne!(live.content_hash, original.content_hash, "{policy_type:?}");
            sim.reset_counters();

            let written = write(
                &client,
                policy_type,
                Some(&policy.id),
                &payload(&original),
                Some(&payload(&live)),
            )
            .await
            .unwrap_or_else(|e| panic!("{policy_type:?} (secrets: {secrets}): {e}"));
            assert_eq!(written.graph_id, policy.id);
            assert!(!written.created);
            let writes = sim.counters();
            let writes = writes.writes();
            assert_eq!(writes.len() as u32, written.writes, "{policy_type:?}");
            assert!(writes.iter().all(|w| (200..300).contains(&w.status)));
            assert!(writes.iter().all(|w| w.body.is_some()));

            let after = capture(&client, policy_type, &policy.id).await;
            assert_eq!(
                after.content_hash, original.content_hash,
                "{policy_type:?} (secrets: {secrets}) matches its backup again:\n{}\n{}",
                original.canonical_json, after.canonical_json
            );
            assert_eq!(after.display_name, original.display_name);
        }
    }
}

#[tokio::test]
async fn what_is_written_carries_no_read_only_property_and_keeps_secrets_as_intune_holds_them() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let policy = pick(&sim, PolicyType::SettingsCatalog, true);
    let before = sim.policy_json(TENANT, &policy.id).expect("policy");
    let original = capture(&client, PolicyType::SettingsCatalog, &policy.id).await;
    assert!(sim.change_settings(TENANT, &policy.id));
    let live = capture(&client, PolicyType::SettingsCatalog, &policy.id).await;
    sim.reset_counters();
    write(
        &client,
        PolicyType::SettingsCatalog,
        Some(&policy.id),
        &payload(&original),
        Some(&payload(&live)),
    )
    .await
    .expect("written");
    let counters = sim.counters();
    let put = counters
        .writes()
        .into_iter()
        .find(|w| w.method == "PUT")
        .expect("the settings go in one PUT")
        .clone();
    let body = put.body.expect("logged body");
    for key in READ_ONLY {
        assert!(body.get(key).is_none(), "{key} is not sent: {body}");
    }
    // Nested read-only properties neither: of the template reference, only its id.
    assert_eq!(
        body["templateReference"],
        json!({"templateId": before["templateReference"]["templateId"]}),
        "{body}"
    );
    let settings = body["settings"].as_array().expect("settings inline");
    assert!(settings
        .iter()
        .all(|s| s.get("settingDefinitions").is_none()));
    // The secrets are sent back as Intune holds them (their encrypted tokens), so they stay.
    let after = sim.policy_json(TENANT, &policy.id).expect("policy");
    let secrets = |policy: &Value| -> Vec<Value> {
        policy["settings"]
            .as_array()
            .expect("settings")
            .iter()
            .map(|s| &s["settingInstance"]["simpleSettingValue"])
            .filter(|v| v["valueState"].is_string())
            .cloned()
            .collect()
    };
    assert!(!secrets(&before).is_empty());
    assert_eq!(secrets(&after), secrets(&before));
    assert!(counters.writes().iter().all(|w| w.method != "DELETE"));
}

#[tokio::test]
async fn a_deleted_policy_of_every_type_is_created_anew_with_a_new_id() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    for policy_type in PolicyType::ALL {
        let policy = pick(&sim, policy_type, false);
        let original = capture(&client, policy_type, &policy.id).await;
        assert!(sim.remove_policy(TENANT, &policy.id));
        sim.reset_counters();

        let written = write(&client, policy_type, None, &payload(&original), None)
            .await
            .unwrap_or_else(|e| panic!("{policy_type:?}: {e}"));
        assert!(written.created);
        assert_ne!(written.graph_id, policy.id);
        let counters = sim.counters();
        let create = counters.writes()[0].clone();
        assert_eq!((create.method.as_str(), create.status), ("POST", 201));
        assert_eq!(counters.writes().len() as u32, written.writes);

        let recreated = capture(&client, policy_type, &written.graph_id).await;
        assert_eq!(
            recreated.content_hash, original.content_hash,
            "{policy_type:?}:\n{}\n{}",
            original.canonical_json, recreated.canonical_json
        );
        assert!(sim
            .policies(TENANT)
            .iter()
            .any(|p| p.id == written.graph_id));
    }
}

#[tokio::test]
async fn settings_and_values_added_since_the_backup_are_removed_and_missing_ones_added() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    for (policy_type, key) in [
        (PolicyType::AdministrativeTemplate, "definitionValues"),
        (PolicyType::SettingsCatalog, "settings"),
    ] {
        let policy = pick(&sim, policy_type, false);
        let original = capture(&client, policy_type, &policy.id).await;
        let full = payload(&original);
        let mut fewer = full.clone();
        let items = fewer[key].as_array_mut().expect("children");
        assert!(items.len() > 1, "{policy_type:?} has children to drop");
        items.remove(0);
        let fewer_hash = content_hash(policy_type, CaptureFormat::LATEST, &fewer);
        assert_ne!(fewer_hash, original.content_hash);

        // The live policy has a child the backup lacks: it goes.
        write(&client, policy_type, Some(&policy.id), &fewer, Some(&full))
            .await
            .unwrap_or_else(|e| panic!("{policy_type:?}: {e}"));
        let after = capture(&client, policy_type, &policy.id).await;
        assert_eq!(after.content_hash, fewer_hash, "{policy_type:?}");

        // The backup has a child the live policy lacks: it comes back.
        write(
            &client,
            policy_type,
            Some(&policy.id),
            &full,
            Some(&payload(&after)),
        )
        .await
        .unwrap_or_else(|e| panic!("{policy_type:?}: {e}"));
        let restored = capture(&client, policy_type, &policy.id).await;
        assert_eq!(
            restored.content_hash, original.content_hash,
            "{policy_type:?}"
        );
    }
    let counters = sim.counters();
    let update = counters
        .writes()
        .into_iter()
        .find(|w| w.endpoint == "action:updateDefinitionValues")
        .expect("definition values were written")
        .clone();
    let body = update.body.expect("logged body");
    assert_eq!(
        body["deletedIds"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
}

#[tokio::test]
async fn a_secret_cannot_be_created_and_nothing_is_written_for_it() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let policy = pick(&sim, PolicyType::SettingsCatalog, true);
    let original = capture(&client, PolicyType::SettingsCatalog, &policy.id).await;
    assert!(!secret_settings(&payload(&original)).is_empty());
    assert!(sim.remove_policy(TENANT, &policy.id));
    sim.reset_counters();
    let error = write(
        &client,
        PolicyType::SettingsCatalog,
        None,
        &payload(&original),
        None,
    )
    .await
    .expect_err("a secret cannot be created from a backup");
    assert!(error.message().contains("secret"), "{error}");
    assert!(sim.counters().writes().is_empty());
}

#[tokio::test]
async fn writing_an_unchanged_policy_succeeds_and_changes_nothing() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    for policy_type in PolicyType::ALL {
        let policy = pick(&sim, policy_type, false);
        let original = capture(&client, policy_type, &policy.id).await;
        let same = payload(&original);
        write(&client, policy_type, Some(&policy.id), &same, Some(&same))
            .await
            .unwrap_or_else(|e| panic!("{policy_type:?}: {e}"));
        let after = capture(&client, policy_type, &policy.id).await;
        assert_eq!(after.content_hash, original.content_hash, "{policy_type:?}");
    }
}

#[tokio::test]
async fn an_assignment_a_policy_set_gives_is_not_restored_as_a_direct_one() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let policy = pick(&sim, PolicyType::DeviceConfiguration, false);
    let original = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
    let mut backup = payload(&original);
    let kind = "#microsoft.graph.groupAssignmentTarget";
    let target = |group: &str| json!({"@odata.type": kind, "groupId": group});
    backup["assignments"] = json!([
        {"id": "a-1", "source": "policySets", "sourceId": "set-1", "target": target("g-1")},
        {"id": "a-2", "source": "direct", "sourceId": policy.id, "target": target("g-2")},
    ]);
    sim.reset_counters();
    write(
        &client,
        PolicyType::DeviceConfiguration,
        Some(&policy.id),
        &backup,
        None,
    )
    .await
    .expect("written");
    let counters = sim.counters();
    let assign = counters
        .writes()
        .into_iter()
        .find(|w| w.endpoint == "action:assign")
        .expect("the assignments are written")
        .clone();
    let body = assign.body.expect("logged body");
    let sent = body["assignments"].as_array().expect("assignments");
    assert_eq!(sent.len(), 1, "only the direct assignment: {body}");
    assert_eq!(sent[0]["target"]["groupId"], "g-2", "{body}");
}

#[tokio::test]
async fn graphs_400_surfaces_as_a_failure_with_its_message() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let policy = pick(&sim, PolicyType::DeviceConfiguration, false);
    let original = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
    let mut backup = payload(&original);
    backup["policy"]["@odata.type"] = json!("#microsoft.graph.imaginaryConfiguration");
    sim.reset_counters();
    let error = write(
        &client,
        PolicyType::DeviceConfiguration,
        Some(&policy.id),
        &backup,
        None,
    )
    .await
    .expect_err("Graph refuses an unknown type");
    assert!(error.message().contains("400"), "{error}");
    assert!(
        error.message().contains("imaginaryConfiguration"),
        "{error}"
    );
    assert_eq!(sim.counters().writes().len(), 1, "a 400 is not retried");
    let after = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
    assert_eq!(after.content_hash, original.content_hash);
}

#[tokio::test]
async fn a_success_status_other_than_the_documented_one_is_an_error() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let policy = pick(&sim, PolicyType::DeviceConfiguration, false);
    let original = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
    sim.set_fault(&policy.id, Fault::WriteAnswers { status: 202 });
    let error = write(
        &client,
        PolicyType::DeviceConfiguration,
        Some(&policy.id),
        &payload(&original),
        None,
    )
    .await
    .expect_err("202 is not what Graph documents for an update");
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse);
    assert!(error.message().contains("202"), "{error}");
}

/// A failed write says whether a write request for the policy may have been sent: a read the
/// writer makes first (a settings catalog policy's live scope tags, kept when the restore leaves
/// them out) that Graph answers 500 sent none; an update answered 500 may have been sent.
#[tokio::test]
async fn a_write_failure_says_whether_a_write_request_was_sent() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    for (policy_type, include_scope_tags, sent) in [
        (PolicyType::SettingsCatalog, false, false),
        (PolicyType::DeviceConfiguration, true, true),
    ] {
        let policy = pick(&sim, policy_type, false);
        let backup = payload(&capture(&client, policy_type, &policy.id).await);
        sim.set_fault(&policy.id, Fault::ServerError);
        sim.reset_counters();
        let request = WriteRequest {
            policy_type,
            target: Some(&policy.id),
            backup: &backup,
            format: CaptureFormat::LATEST,
            live: None,
            include_assignments: true,
            include_scope_tags,
        };
        let failure = client
            .write_policy_reporting(&creds(), request)
            .await
            .expect_err("Graph answers 500");
        assert_eq!(failure.sent, sent, "{policy_type:?}: {}", failure.error);
        assert!(failure.written.is_none());
        assert_eq!(sim.counters().writes().is_empty(), !sent, "{policy_type:?}");
    }
}

/// An administrative template backup whose definition value names its definition by an id that
/// is not a Graph id (`d')/x('` would name another path inside the `@odata.bind` URL) is
/// refused before anything is sent, on an update and on a create alike: nothing is written,
/// not even the policy without that value.
#[tokio::test]
async fn a_definition_id_that_is_not_a_graph_id_is_refused_before_any_write() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let policy_type = PolicyType::AdministrativeTemplate;
    let policy = pick(&sim, policy_type, false);
    let mut backup = payload(&capture(&client, policy_type, &policy.id).await);
    let definition = backup["definitionValues"][0]["definition"]
        .as_object_mut()
        .expect("the backup holds a definition value with its definition");
    definition.insert("id".into(), json!("d')/x('"));
    let before = sim.policy_json(TENANT, &policy.id).expect("policy");
    for target in [Some(policy.id.as_str()), None] {
        sim.reset_counters();
        let request = WriteRequest {
            policy_type,
            target,
            backup: &backup,
            format: CaptureFormat::LATEST,
            live: None,
            include_assignments: true,
            include_scope_tags: true,
        };
        let failure = client
            .write_policy_reporting(&creds(), request)
            .await
            .expect_err("the definition id is refused");
        assert!(!failure.sent, "{target:?}: {}", failure.error);
        assert!(failure.written.is_none(), "{target:?}");
        assert_eq!(
            failure.error.reason_code(),
            ReasonCode::InvalidRunInput,
            "{target:?}: {}",
            failure.error
        );
        assert!(
            sim.counters().writes().is_empty(),
            "{target:?}: {:?}",
            sim.counters().writes()
        );
    }
    assert_eq!(sim.policy_json(TENANT, &policy.id), Some(before));
}

/// An update whose first attempt lands in Intune but whose answer is lost (no answer in time)
/// is sent again, as it may be; when every later attempt is throttled, the error still says
/// Graph may have acted on it (it did: the policy holds the backup again) and tells both
/// answers. The same 429s without a lost answer say Graph did nothing.
#[tokio::test]
async fn an_update_throttled_after_a_lost_answer_says_it_may_have_landed() {
    let sim = start(Knobs::default()).await;
    let mut config = fast_config(&sim);
    config.request_timeout = Duration::from_millis(300);
    let client = GraphClient::new(config).expect("client builds");
    let policy_type = PolicyType::DeviceConfiguration;
    let policy = pick(&sim, policy_type, false);
    let original = capture(&client, policy_type, &policy.id).await;
    let backup = payload(&original);
    let throttled = |times| Fault::Throttle {
        times,
        retry_after_secs: 0,
    };

    sim.set_fault(&policy.id, throttled(3));
    let error = write(&client, policy_type, Some(&policy.id), &backup, None)
        .await
        .expect_err("every attempt is throttled");
    assert_eq!(error.reason_code(), ReasonCode::Throttled);
    assert!(!error.may_have_acted(), "{error}");

    assert!(sim.change_settings(TENANT, &policy.id));
    // The first attempt is applied, and answered after the client has given up.
    sim.set_knobs(Knobs {
        latency_ms: 2_000,
        ..Knobs::default()
    });
    sim.reset_counters();
    let (written, ()) = tokio::join!(
        write(&client, policy_type, Some(&policy.id), &backup, None),
        async {
            let started = std::time::Instant::now();
            while sim.counters().writes().is_empty() {
                assert!(started.elapsed() < Duration::from_secs(10), "no write sent");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            // The attempts after it: throttled until the client gives up.
            let mut knobs = Knobs::default();
            knobs.faults.insert(policy.id.clone(), throttled(2));
            sim.set_knobs(knobs);
        }
    );
    let error = written.expect_err("the attempts after the lost answer are throttled");
    assert_eq!(error.reason_code(), ReasonCode::Throttled, "{error}");
    assert!(error.may_have_acted(), "{error}");
    assert!(error.message().contains("no answer in time"), "{error}");
    assert!(error.message().contains("429"), "{error}");
    let statuses: Vec<u16> = sim.counters().writes().iter().map(|w| w.status).collect();
    assert_eq!(
        statuses,
        vec![204, 429, 429],
        "the first attempt was applied"
    );
    let landed = capture(&client, policy_type, &policy.id).await;
    assert_eq!(
        landed.content_hash, original.content_hash,
        "the update landed"
    );
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_not_sent_again_but_an_update_is() {
    let sim = start(Knobs::default()).await;
    let mut config = fast_config(&sim);
    config.request_timeout = Duration::from_millis(300);
    let client = GraphClient::new(config).expect("client builds");
    let policy = pick(&sim, PolicyType::DeviceConfiguration, false);
    let backup = payload(&capture(&client, PolicyType::DeviceConfiguration, &policy.id).await);
    sim.set_knobs(Knobs {
        rate_hang: 1.0,
        ..Knobs::default()
    });
    sim.reset_counters();
    let error = write(
        &client,
        PolicyType::DeviceConfiguration,
        None,
        &backup,
        None,
    )
    .await
    .expect_err("no answer");
    assert_eq!(error.reason_code(), ReasonCode::Timeout);
    assert!(error.may_have_acted(), "{error}");
    assert_eq!(
        sim.counters().writes().len(),
        1,
        "a create that may have happened is not repeated"
    );
    sim.reset_counters();
    write(
        &client,
        PolicyType::DeviceConfiguration,
        Some(&policy.id),
        &backup,
        None,
    )
    .await
    .expect_err("no answer");
    assert_eq!(
        sim.counters().writes().len(),
        3,
        "an update is idempotent: every attempt"
    );
}

#[tokio::test]
async fn a_read_only_simulator_refuses_and_logs_every_write_while_reads_work() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let policy = pick(&sim, PolicyType::Compliance, false);
    let original = capture(&client, PolicyType::Compliance, &policy.id).await;
    sim.set_reject_writes(true);
    sim.reset_counters();
    let error = write(
        &client,
        PolicyType::Compliance,
        Some(&policy.id),
        &payload(&original),
        None,
    )
    .await
    .expect_err("writes are refused");
    assert_eq!(error.reason_code(), ReasonCode::PermissionDenied);
    assert!(error.message().contains("read-only"), "{error}");
    let again = capture(&client, PolicyType::Compliance, &policy.id).await;
    assert_eq!(again.content_hash, original.content_hash);

    let token = token(&sim).await;
    let path = format!(
        "beta/deviceManagement/deviceCompliancePolicies/{}",
        policy.id
    );
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let (status, body) = send(&sim, &token, method.clone(), &path, &json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("read-only")));
    }
    let counters = sim.counters();
    assert_eq!(counters.writes().len(), 5);
    assert!(counters.writes().iter().all(|w| w.status == 403));
    assert!(sim.policies(TENANT).iter().any(|p| p.id == policy.id));
}

#[tokio::test]
async fn writes_keep_to_their_budget_and_reads_do_not_wait_for_it() {
    let sim = start(Knobs::default()).await;
    let mut config = fast_config(&sim);
    // One write a second: the writes below take several seconds by budget alone.
    config.write_budget = WriteBudget {
        writes_per_second: nz(1),
        burst: nz(1),
    };
    let client = GraphClient::new(config).expect("client builds");
    let policies: Vec<SimPolicy> = sim
        .policies(TENANT)
        .into_iter()
        .filter(|p| p.kind == Kind::DeviceConfiguration)
        .take(2)
        .collect();
    let mut backups = Vec::new();
    for policy in &policies {
        let snapshot = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
        backups.push((policy.id.clone(), payload(&snapshot)));
    }
    sim.reset_counters();
    let writer = client.clone();
    let writes = tokio::spawn(async move {
        for (id, backup) in &backups {
            write(
                &writer,
                PolicyType::DeviceConfiguration,
                Some(id),
                backup,
                None,
            )
            .await
            .expect("written");
        }
    });
    // Reads share the tenant's read budget only: they all get through while the writes wait for
    // theirs (a margin of seconds, not a timing).
    for _ in 0..30 {
        client
            .first_page(&creds(), PolicyType::Compliance)
            .await
            .expect("read");
    }
    assert!(
        !writes.is_finished(),
        "the reads waited for the write budget"
    );
    writes.await.expect("writes task");

    let counters = sim.counters();
    let mut write_times: Vec<f64> = counters.writes().iter().map(|w| w.at_ms).collect();
    write_times.sort_by(f64::total_cmp);
    assert!(write_times.len() >= 4, "{write_times:?}");
    // burst 1 + 1/s: at most 2 writes in any second.
    for (i, start) in write_times.iter().enumerate() {
        let in_window = write_times[i..]
            .iter()
            .take_while(|t| **t - start < 1000.0)
            .count();
        assert!(
            in_window <= 2,
            "{in_window} writes within 1 s: {write_times:?}"
        );
    }
}

#[tokio::test]
async fn directory_objects_exist_until_they_are_deleted() {
    let sim = start(Knobs::default()).await;
    let client = client(&sim);
    let exists = |kind, id: String| {
        let client = client.clone();
        async move {
            PolicyWriter::object_exists(&client, &creds(), kind, &id)
                .await
                .expect("answered")
        }
    };
    let group = sim.groups(TENANT)[0].id.clone();
    let filter = sim.assignment_filters(TENANT)[0].id.clone();
    assert!(exists(DirectoryKind::Group, group.clone()).await);
    assert!(exists(DirectoryKind::AssignmentFilter, filter).await);
    assert!(exists(DirectoryKind::ScopeTag, "1".into()).await);
    assert!(!exists(DirectoryKind::ScopeTag, "99".into()).await);
    assert!(sim.remove_group(TENANT, &group));
    assert!(!exists(DirectoryKind::Group, group).await);
    assert!(
        !exists(
            DirectoryKind::Group,
            "00000000-0000-4000-8000-000000000000".into()
        )
        .await
    );
}

#[tokio::test]
async fn writing_needs_the_write_permission() {
    let sim = start(Knobs::default()).await;
    sim.set_app(
        TENANT,
        AppSetup {
            missing_roles: vec!["DeviceManagementConfiguration.ReadWrite.All".into()],
            ..AppSetup::default()
        },
    );
    let client = client(&sim);
    let policy = pick(&sim, PolicyType::DeviceConfiguration, false);
    let original = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
    let error = write(
        &client,
        PolicyType::DeviceConfiguration,
        Some(&policy.id),
        &payload(&original),
        None,
    )
    .await
    .expect_err("the app may only read");
    assert_eq!(error.reason_code(), ReasonCode::PermissionDenied);
    assert!(error
        .message()
        .contains("DeviceManagementConfiguration.ReadWrite.All"));
}

/// The writable part of a policy as its get endpoint returns it.
fn patch_body(policy: &Value) -> Value {
    let mut body = policy.clone();
    if let Value::Object(fields) = &mut body {
        fields.retain(|key, _| {
            !READ_ONLY.contains(&key.as_str())
                && !matches!(
                    key.as_str(),
                    "assignments" | "settings" | "definitionValues" | "scheduledActionsForRule"
                )
        });
    }
    body
}

#[tokio::test]
async fn the_simulator_validates_writes_as_graph_does() {
    let sim = start(Knobs::default()).await;
    let token = token(&sim).await;
    let policy = pick(&sim, PolicyType::DeviceConfiguration, false);
    let path = format!("beta/deviceManagement/deviceConfigurations/{}", policy.id);
    let current = sim.policy_json(TENANT, &policy.id).expect("policy");
    let mut body = patch_body(&current);
    body["displayName"] = json!("Edited over HTTP");
    let (status, answer) = send(&sim, &token, Method::PATCH, &path, &body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let after = sim.policy_json(TENANT, &policy.id).expect("policy");
    assert_eq!(after["displayName"], "Edited over HTTP");
    assert!(after["lastModifiedDateTime"] != current["lastModifiedDateTime"]);
    assert!(after["version"].as_u64() > current["version"].as_u64());

    let mut unknown = body.clone();
    unknown["@odata.type"] = json!("#microsoft.graph.imaginaryConfiguration");
    let (status, answer) = send(&sim, &token, Method::PATCH, &path, &unknown).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "BadRequest");

    let collection = "beta/deviceManagement/deviceConfigurations";
    let mut untyped = body.clone();
    untyped
        .as_object_mut()
        .expect("object")
        .remove("@odata.type");
    let (status, _) = send(&sim, &token, Method::POST, collection, &untyped).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the collection's type is abstract"
    );
    let (status, created) = send(&sim, &token, Method::POST, collection, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_str().is_some_and(|id| id != policy.id));

    let missing = "beta/deviceManagement/deviceConfigurations/00000000-0000-4000-8000-000000000000";
    let (status, _) = send(&sim, &token, Method::PATCH, missing, &body).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(
        &sim,
        &token,
        Method::POST,
        &format!("{path}/assign"),
        &json!({}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "assign needs its assignments"
    );
    let (status, answer) = send(
        &sim,
        &token,
        Method::POST,
        &format!("{path}/assign"),
        &json!({"assignments": []}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "assign answers its collection");
    assert_eq!(answer["value"], json!([]));
}

#[tokio::test]
async fn the_simulator_keeps_writes_to_their_own_throttle() {
    let sim = start(Knobs {
        write_throttle_limit: 2,
        throttle_window_ms: 60_000,
        ..Knobs::default()
    })
    .await;
    let token = token(&sim).await;
    let policy = pick(&sim, PolicyType::DeviceConfiguration, false);
    let path = format!("beta/deviceManagement/deviceConfigurations/{}", policy.id);
    let body = patch_body(&sim.policy_json(TENANT, &policy.id).expect("policy"));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(send(&sim, &token, Method::PATCH, &path, &body).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::NO_CONTENT,
            StatusCode::NO_CONTENT,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    let (status, _) = send(&sim, &token, Method::GET, &path, &Value::Null).await;
    assert_eq!(status, StatusCode::OK, "reads keep their own budget");
}

/// The read-only properties inside a settings catalog policy's template reference are refused
/// with 400 like Graph's, in an update as in a create, and the policy stays as it was.
#[tokio::test]
async fn a_template_references_read_only_properties_are_refused() {
    let sim = start(Knobs::default()).await;
    let token = token(&sim).await;
    let policy = pick(&sim, PolicyType::SettingsCatalog, false);
    let before = sim.policy_json(TENANT, &policy.id).expect("policy");
    let collection = kind_of(PolicyType::SettingsCatalog).collection();
    for key in [
        "templateFamily",
        "templateDisplayName",
        "templateDisplayVersion",
    ] {
        let reference = json!({"templateId": "", key: "x"});
        let mut body = patch_body(&before);
        body["templateReference"] = reference.clone();
        let path = format!("beta/deviceManagement/{collection}/{}", policy.id);
        let (status, answer) = send(&sim, &token, Method::PATCH, &path, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {answer}");
        assert!(answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(key)));
        let create = json!({"name": "new", "platforms": "windows10", "technologies": "mdm",
            "templateReference": reference, "settings": []});
        let path = format!("beta/deviceManagement/{collection}");
        let (status, answer) = send(&sim, &token, Method::POST, &path, &create).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {answer}");
    }
    assert_eq!(sim.policy_json(TENANT, &policy.id), Some(before));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// Any read-only property in an otherwise valid update is refused with 400, and the policy
    /// stays as it was.
    #[test]
    fn any_read_only_property_is_refused(index in 0..READ_ONLY.len(), value in any::<u32>(), kind in 0..4usize) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let sim = start(Knobs::default()).await;
            let token = token(&sim).await;
            let policy_type = PolicyType::ALL[kind];
            let policy = pick(&sim, policy_type, false);
            let before = sim.policy_json(TENANT, &policy.id).expect("policy");
            let mut body = patch_body(&before);
            body[READ_ONLY[index]] = json!(value.to_string());
            let path = format!(
                "beta/deviceManagement/{}/{}",
                kind_of(policy_type).collection(),
                policy.id
            );
            let (status, answer) = send(&sim, &token, Method::PATCH, &path, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{}: {answer}", READ_ONLY[index]);
            assert!(answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(READ_ONLY[index])));
            assert_eq!(sim.policy_json(TENANT, &policy.id), Some(before));
        });
    }
}

/// The custom profiles of the test tenant (each holds an encrypted OMA setting).
fn custom_profiles(sim: &SimHandle) -> Vec<SimPolicy> {
    let profiles: Vec<SimPolicy> = sim
        .policies(TENANT)
        .into_iter()
        .filter(|p| p.to_json()["@odata.type"] == "#microsoft.graph.windows10CustomConfiguration")
        .collect();
    assert!(!profiles.is_empty(), "the tenant has custom profiles");
    profiles
}

/// A policy's encrypted OMA settings as Intune holds them: OMA-URI, plain text, reference.
fn encrypted_oma(policy: &Value) -> Vec<(Value, Value, Value)> {
    policy["omaSettings"]
        .as_array()
        .expect("OMA settings")
        .iter()
        .filter(|s| s["isEncrypted"] == true)
        .map(|s| {
            (
                s["omaUri"].clone(),
                s["value"].clone(),
                s["secretReferenceValueId"].clone(),
            )
        })
        .collect()
}

#[tokio::test]
async fn restoring_a_custom_profile_keeps_each_encrypted_oma_value_as_it_was_live() {
    let sim = start_sim(200, Knobs::default()).await;
    let client = client(&sim);
    for policy in custom_profiles(&sim) {
        let before = sim.policy_json(TENANT, &policy.id).expect("policy");
        let secrets = encrypted_oma(&before);
        assert!(!secrets.is_empty(), "{before}");
        let original = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
        assert!(sim.change_settings(TENANT, &policy.id));
        let live = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
        sim.reset_counters();
        write(
            &client,
            PolicyType::DeviceConfiguration,
            Some(&policy.id),
            &payload(&original),
            Some(&payload(&live)),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", policy.id));

        let counters = sim.counters();
        let patch = counters
            .writes()
            .into_iter()
            .find(|w| w.method == "PATCH")
            .expect("the profile is patched")
            .clone();
        let body = patch.body.expect("logged body");
        for setting in body["omaSettings"].as_array().expect("OMA settings sent") {
            for key in ["isEncrypted", "secretReferenceValueId"] {
                assert!(setting.get(key).is_none(), "{key} is read-only: {setting}");
            }
            assert_ne!(
                setting["value"], "****",
                "the mask is not a value: {setting}"
            );
        }
        // Each secret's plain text was read once, right before the write, by its reference.
        let reads: Vec<&str> = counters
            .requests
            .iter()
            .filter(|r| r.endpoint == "function:getOmaSettingPlainTextValue")
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(reads.len(), secrets.len(), "{reads:?}");
        for (_, _, reference) in &secrets {
            let reference = reference.as_str().expect("a reference");
            assert!(
                reads.iter().any(|path| path.contains(reference)),
                "{reads:?}"
            );
        }

        let after = sim.policy_json(TENANT, &policy.id).expect("policy");
        assert_eq!(
            encrypted_oma(&after),
            secrets,
            "the secrets stay as they were"
        );
        let again = capture(&client, PolicyType::DeviceConfiguration, &policy.id).await;
        assert_eq!(again.content_hash, original.content_hash);
        assert!(!again
            .canonical_json
            .contains(secrets[0].1.as_str().expect("plain text")));
    }
}

#[tokio::test]
async fn the_simulator_masks_encrypted_oma_values_and_refuses_their_read_only_properties() {
    let sim = start_sim(200, Knobs::default()).await;
    let token = token(&sim).await;
    let policy = custom_profiles(&sim).remove(0);
    let path = format!("beta/deviceManagement/deviceConfigurations/{}", policy.id);
    let held = encrypted_oma(&sim.policy_json(TENANT, &policy.id).expect("policy"));
    let (uri, plain, reference) = held[0].clone();
    let reference = reference.as_str().expect("a reference").to_owned();

    // A read shows the mask and the reference; the function answers the plain text.
    let (status, served) = send(&sim, &token, Method::GET, &path, &Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    let served_secret = served["omaSettings"]
        .as_array()
        .expect("OMA settings")
        .iter()
        .find(|s| s["omaUri"] == uri)
        .expect("the secret is listed")
        .clone();
    assert_eq!(served_secret["value"], "****");
    assert_eq!(served_secret["isEncrypted"], true);
    assert_eq!(served_secret["secretReferenceValueId"], json!(reference));
    let function =
        format!("{path}/getOmaSettingPlainTextValue(secretReferenceValueId='{reference}')");
    let (status, answer) = send(&sim, &token, Method::GET, &function, &Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["value"], plain);
    let unknown = format!(
        "{path}/getOmaSettingPlainTextValue(secretReferenceValueId='00000000-0000-4000-8000-000000000000')"
    );
    let (status, _) = send(&sim, &token, Method::GET, &unknown, &Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Writing back what a read shows is refused: each read-only property, and the mask.
    let body = patch_body(&served);
    for key in ["isEncrypted", "secretReferenceValueId"] {
        let mut one = body.clone();
        for setting in one["omaSettings"].as_array_mut().expect("settings") {
            let setting = setting.as_object_mut().expect("object");
            setting.remove(if key == "isEncrypted" {
                "secretReferenceValueId"
            } else {
                "isEncrypted"
            });
            if setting["value"] == "****" {
                setting.insert("value".into(), plain.clone());
            }
        }
        let (status, answer) = send(&sim, &token, Method::PATCH, &path, &one).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{key}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(key) && message.contains("read-only"),
            "{message}"
        );
    }
    let mut masked = body.clone();
    for setting in masked["omaSettings"].as_array_mut().expect("settings") {
        let setting = setting.as_object_mut().expect("object");
        setting.retain(|key, _| key != "isEncrypted" && key != "secretReferenceValueId");
    }
    let (status, answer) = send(&sim, &token, Method::PATCH, &path, &masked).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "the mask is refused: {answer}"
    );

    // The plain text without the read-only properties is taken, and stays encrypted.
    for setting in masked["omaSettings"].as_array_mut().expect("settings") {
        if setting["value"] == "****" {
            setting["value"] = json!("a new pre-shared key");
        }
    }
    let (status, answer) = send(&sim, &token, Method::PATCH, &path, &masked).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{answer}");
    let after = encrypted_oma(&sim.policy_json(TENANT, &policy.id).expect("policy"));
    assert_eq!(
        after,
        vec![(uri, json!("a new pre-shared key"), json!(reference))]
    );
}
