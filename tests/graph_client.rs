//! The Graph client against the Graph simulator over real HTTP: tokens, paging, retries,
//! throttling, faults and their reason codes. Assertions use the simulator's request log, not
//! wall-clock timings, so they hold on a slow machine.

use std::time::Duration;

use serde_json::Value;
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::snapshot::CaptureFormat;
use tenantatlas::graph_sim::{Fault, Kind, Knobs, SimHandle, SimPolicy};
use tenantatlas::server::graph::{
    CaptureOptions, GraphClient, GraphError, LimiterConfig, PolicySource, PolicyType, Snapshot,
    TenantCredentials,
};

use crate::sim_support;
use sim_support::mock::{MockGraph, Transfer};
use sim_support::redirect::{Reply, Scripted};
use sim_support::{creds_with, fast_config, nz, start_sim, SECRET, TENANT};

fn creds(secret: &str) -> TenantCredentials {
    creds_with(secret)
}

fn client(sim: &SimHandle) -> GraphClient {
    GraphClient::new(fast_config(sim)).expect("client builds")
}

fn first(sim: &SimHandle, kind: Kind) -> SimPolicy {
    sim.policies(TENANT)
        .into_iter()
        .find(|p| p.kind == kind)
        .expect("the tenant has this kind")
}

/// A fresh simulator whose first compliance policy answers with `fault`, and the error of
/// capturing that policy once (`why`: why it must fail).
async fn capture_with_fault(fault: Fault, why: &str) -> (SimHandle, SimPolicy, GraphError) {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::CompliancePolicy);
    sim.set_fault(&policy.id, fault);
    let error = client(&sim)
        .capture_policy(&creds(SECRET), PolicyType::Compliance, &policy.id, PLAIN)
        .await
        .expect_err(why);
    (sim, policy, error)
}

const PLAIN: CaptureOptions = CaptureOptions {
    include_assignments: false,
    include_scope_tags: false,
};

#[tokio::test]
async fn one_token_serves_every_request_of_a_tenant() {
    let sim = start_sim(40, Knobs::default()).await;
    let client = client(&sim);
    for policy_type in PolicyType::ALL {
        client
            .list_policies(&creds(SECRET), policy_type)
            .await
            .expect("list succeeds");
    }
    let policy = first(&sim, Kind::DeviceConfiguration);
    client
        .capture_policy(
            &creds(SECRET),
            PolicyType::DeviceConfiguration,
            &policy.id,
            PLAIN,
        )
        .await
        .expect("capture succeeds");
    let counters = sim.counters();
    assert_eq!(counters.token_requests(), 1);
    assert_eq!(counters.graph_requests(), 5);
}

#[tokio::test]
async fn a_revoked_token_is_refreshed_once_and_the_request_succeeds() {
    let sim = start_sim(8, Knobs::default()).await;
    let client = client(&sim);
    let policy = first(&sim, Kind::CompliancePolicy);
    client
        .capture_policy(&creds(SECRET), PolicyType::Compliance, &policy.id, PLAIN)
        .await
        .expect("first");
    sim.revoke_tokens();
    client
        .capture_policy(&creds(SECRET), PolicyType::Compliance, &policy.id, PLAIN)
        .await
        .expect("second");
    let counters = sim.counters();
    assert_eq!(counters.token_requests(), 2);
    assert_eq!(counters.with_status(401), 1);
    assert_eq!(counters.graph_requests(), 3);
}

#[tokio::test]
async fn a_token_rejected_twice_fails_as_authentication_failed() {
    let (sim, policy, error) =
        capture_with_fault(Fault::Unauthorized, "401 after a refresh is final").await;
    assert_eq!(error.reason_code(), ReasonCode::AuthenticationFailed);
    let counters = sim.counters();
    assert_eq!(
        counters.for_path(&policy.id).len(),
        2,
        "one refresh, no retries"
    );
    assert_eq!(counters.token_requests(), 2);
}

#[tokio::test]
async fn a_wrong_secret_fails_as_authentication_failed_without_graph_calls() {
    let sim = start_sim(8, Knobs::default()).await;
    let error = client(&sim)
        .list_policies(&creds("not-the-secret"), PolicyType::SettingsCatalog)
        .await
        .expect_err("the token endpoint refuses");
    assert_eq!(error.reason_code(), ReasonCode::AuthenticationFailed);
    assert!(!error.message().contains("not-the-secret"));
    let counters = sim.counters();
    assert_eq!(counters.graph_requests(), 0);
    assert_eq!(counters.token_requests(), 1);
}

/// Captures the first policy of `kind` as `policy_type` (no assignments, no scope tags) from a
/// fresh simulator: the simulator, the policy, the snapshot and its canonical JSON parsed.
async fn capture_first(
    kind: Kind,
    policy_type: PolicyType,
) -> (SimHandle, SimPolicy, Snapshot, Value) {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, kind);
    let snapshot = client(&sim)
        .capture_policy(&creds(SECRET), policy_type, &policy.id, PLAIN)
        .await
        .expect("capture succeeds");
    let payload = serde_json::from_str(&snapshot.canonical_json).expect("canonical JSON parses");
    (sim, policy, snapshot, payload)
}

#[tokio::test]
async fn settings_are_paged_to_the_last_page() {
    let (sim, policy, snapshot, payload) =
        capture_first(Kind::ConfigurationPolicy, PolicyType::SettingsCatalog).await;
    assert_eq!(policy.child_count, 60);
    let settings = payload["settings"].as_array().expect("settings array");
    assert_eq!(settings.len(), 60);
    let ids: Vec<&str> = settings.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids.first(), Some(&"0"));
    assert_eq!(ids.last(), Some(&"59"));
    assert_eq!(payload["policy"]["name"], Value::from(policy.name.clone()));
    assert_eq!(snapshot.display_name, policy.name);
    let settings_requests = sim.counters().by_endpoint()["settings"][&200];
    assert_eq!(settings_requests, 3, "25 + 25 + 10");
}

#[tokio::test]
async fn definition_values_are_paged_with_their_definitions() {
    let (_sim, policy, _, payload) = capture_first(
        Kind::GroupPolicyConfiguration,
        PolicyType::AdministrativeTemplate,
    )
    .await;
    assert_eq!(policy.child_count, 30);
    let values = payload["definitionValues"]
        .as_array()
        .expect("definition values");
    assert_eq!(values.len(), 30);
    assert!(values
        .iter()
        .all(|v| v["definition"]["displayName"].is_string()));
}

#[tokio::test]
async fn lists_follow_next_link_to_the_end() {
    let sim = start_sim(500, Knobs::default()).await;
    let listed = client(&sim)
        .list_policies(&creds(SECRET), PolicyType::DeviceConfiguration)
        .await
        .expect("list succeeds");
    let expected: Vec<SimPolicy> = sim
        .policies(TENANT)
        .into_iter()
        .filter(|p| p.kind == Kind::DeviceConfiguration)
        .collect();
    assert_eq!(expected.len(), 125);
    assert_eq!(listed.len(), 125);
    for (listing, policy) in listed.iter().zip(&expected) {
        assert_eq!(listing.graph_id, policy.id);
        assert_eq!(listing.display_name, policy.name);
        assert_eq!(listing.platform, policy.platform());
        assert!(listing.last_modified_at.is_some());
    }
    assert_eq!(
        sim.counters().by_endpoint()["list:deviceConfigurations"][&200],
        2
    );
}

#[tokio::test]
async fn an_unchanged_policy_hashes_the_same_and_options_change_the_snapshot() {
    let sim = start_sim(8, Knobs::default()).await;
    let client = client(&sim);
    let policy = first(&sim, Kind::ConfigurationPolicy);
    let creds = creds(SECRET);
    let capture =
        |options| client.capture_policy(&creds, PolicyType::SettingsCatalog, &policy.id, options);
    let a = capture(PLAIN).await.expect("first capture");
    let b = capture(PLAIN).await.expect("second capture");
    assert_eq!(a.content_hash, b.content_hash);
    assert_eq!(a.canonical_json, b.canonical_json);
    let full = CaptureOptions {
        include_assignments: true,
        include_scope_tags: true,
    };
    let c = capture(full).await.expect("capture with assignments");
    assert_ne!(a.content_hash, c.content_hash);
    let payload: Value = serde_json::from_str(&c.canonical_json).expect("parses");
    assert_eq!(
        payload["assignments"].as_array().map(Vec::len),
        Some(policy.assignment_count)
    );
    assert!(payload["policy"]["roleScopeTagIds"].is_array());
    let plain: Value = serde_json::from_str(&a.canonical_json).expect("parses");
    assert!(plain.get("assignments").is_none());
    assert!(plain["policy"].get("roleScopeTagIds").is_none());
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::DeviceConfiguration);
    sim.set_fault(
        &policy.id,
        Fault::Throttle {
            times: 1,
            retry_after_secs: 1,
        },
    );
    client(&sim)
        .capture_policy(
            &creds(SECRET),
            PolicyType::DeviceConfiguration,
            &policy.id,
            PLAIN,
        )
        .await
        .expect("succeeds after the wait");
    let counters = sim.counters();
    let attempts = counters.for_path(&policy.id);
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 200]);
    let waited_ms = attempts[1].at_ms - attempts[0].at_ms;
    assert!(
        waited_ms >= 1000.0,
        "retried after {waited_ms} ms, Retry-After said 1 s"
    );
}

/// Intune may answer 429 without `Retry-After` for its whole throttling window: the retries
/// pause the tenant for doubling steps (here 50 then 100 ms, `fast_config`) that outlast a
/// window longer than a transient failure's backoff (20–60 ms in all), instead of giving up
/// inside it.
#[tokio::test]
async fn a_throttle_without_retry_after_is_waited_out_across_its_window() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::DeviceConfiguration);
    sim.set_fault(&policy.id, Fault::ThrottleWithoutRetryAfter { millis: 120 });
    client(&sim)
        .capture_policy(
            &creds(SECRET),
            PolicyType::DeviceConfiguration,
            &policy.id,
            PLAIN,
        )
        .await
        .expect("succeeds once the window is over");
    let counters = sim.counters();
    let attempts = counters.for_path(&policy.id);
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 200]);
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| w[1].at_ms - w[0].at_ms)
        .collect();
    assert!(gaps[0] >= 50.0 && gaps[1] >= 100.0, "{gaps:?}");
}

/// A 429 with `Retry-After: 0` is not retried at once (Microsoft: avoid immediate retries):
/// it pauses the tenant like a 429 without the header, for doubling steps of
/// `throttled_delay` (here 100, 200 then 400 ms), so the retries outlast the window.
#[tokio::test]
async fn a_throttle_with_retry_after_zero_is_waited_out_like_one_without() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::DeviceConfiguration);
    sim.set_fault(
        &policy.id,
        Fault::Throttle {
            times: 3,
            retry_after_secs: 0,
        },
    );
    let mut config = fast_config(&sim);
    config.retry.max_attempts = 5;
    config.retry.throttled_delay = Duration::from_millis(100);
    GraphClient::new(config)
        .expect("client builds")
        .capture_policy(
            &creds(SECRET),
            PolicyType::DeviceConfiguration,
            &policy.id,
            PLAIN,
        )
        .await
        .expect("succeeds once the throttling is over");
    let counters = sim.counters();
    let attempts = counters.for_path(&policy.id);
    let statuses: Vec<u16> = attempts.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 429, 200]);
    let gaps: Vec<f64> = attempts
        .windows(2)
        .map(|w| w[1].at_ms - w[0].at_ms)
        .collect();
    assert!(
        gaps[0] >= 100.0 && gaps[1] >= 200.0 && gaps[2] >= 400.0,
        "{gaps:?}"
    );
}

#[tokio::test]
async fn unavailable_is_retried_then_reported_as_throttled() {
    let (sim, policy, error) =
        capture_with_fault(Fault::Unavailable { times: 100 }, "503 every time").await;
    assert_eq!(error.reason_code(), ReasonCode::Throttled);
    assert_eq!(sim.counters().for_path(&policy.id).len(), 3, "max_attempts");
}

#[tokio::test]
async fn a_cut_off_answer_is_retried_and_the_whole_answer_is_used() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::ConfigurationPolicy);
    sim.set_fault(&policy.id, Fault::Truncated { times: 1 });
    let snapshot = client(&sim)
        .capture_policy(
            &creds(SECRET),
            PolicyType::SettingsCatalog,
            &policy.id,
            PLAIN,
        )
        .await
        .expect("the second attempt gets the whole answer");
    assert_eq!(snapshot.graph_id, policy.id);
    let payload: Value = serde_json::from_str(&snapshot.canonical_json).expect("parses");
    assert_eq!(payload["settings"].as_array().map(Vec::len), Some(60));
    let item_requests: Vec<u16> = sim
        .counters()
        .for_path(&policy.id)
        .iter()
        .filter(|r| r.endpoint.starts_with("get:"))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        item_requests,
        vec![200, 200],
        "one cut-off answer, one retry"
    );
}

#[tokio::test]
async fn an_answer_that_is_always_cut_off_fails_as_invalid_response_after_the_retries() {
    let (sim, policy, error) =
        capture_with_fault(Fault::Malformed, "truncated JSON every time").await;
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse);
    assert!(
        error.message().contains("not valid JSON"),
        "{}",
        error.message()
    );
    assert_eq!(
        sim.counters().for_path(&policy.id).len(),
        3,
        "retried up to max_attempts like a 503"
    );
}

#[tokio::test]
async fn final_answers_are_not_retried_and_map_to_reason_codes() {
    let sim = start_sim(8, Knobs::default()).await;
    let client = client(&sim);
    let cases = [
        (
            Kind::DeviceConfiguration,
            PolicyType::DeviceConfiguration,
            Fault::NotFound,
            ReasonCode::PolicyNotFound,
        ),
        (
            Kind::CompliancePolicy,
            PolicyType::Compliance,
            Fault::Forbidden,
            ReasonCode::PermissionDenied,
        ),
        (
            Kind::GroupPolicyConfiguration,
            PolicyType::AdministrativeTemplate,
            Fault::ServerError,
            ReasonCode::GraphUnavailable,
        ),
    ];
    for (kind, policy_type, fault, reason) in cases {
        let policy = first(&sim, kind);
        sim.set_fault(&policy.id, fault.clone());
        let error = client
            .capture_policy(&creds(SECRET), policy_type, &policy.id, PLAIN)
            .await
            .expect_err("the fault is final");
        assert_eq!(error.reason_code(), reason, "{fault:?}");
        assert_eq!(
            sim.counters().for_path(&policy.id).len(),
            1,
            "{fault:?} must not be retried"
        );
    }
}

#[tokio::test]
async fn a_policy_deleted_in_intune_is_policy_not_found() {
    let sim = start_sim(8, Knobs::default()).await;
    let error = client(&sim)
        .capture_policy(
            &creds(SECRET),
            PolicyType::Compliance,
            "00000000-0000-4000-8000-000000000000",
            PLAIN,
        )
        .await
        .expect_err("unknown id");
    assert_eq!(error.reason_code(), ReasonCode::PolicyNotFound);
    assert_eq!(sim.counters().graph_requests(), 1);
}

#[tokio::test]
async fn a_hung_request_times_out() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::DeviceConfiguration);
    sim.set_fault(&policy.id, Fault::Hang);
    let mut config = fast_config(&sim);
    config.request_timeout = Duration::from_millis(300);
    config.retry.max_attempts = 2;
    let error = GraphClient::new(config)
        .expect("client builds")
        .capture_policy(
            &creds(SECRET),
            PolicyType::DeviceConfiguration,
            &policy.id,
            PLAIN,
        )
        .await
        .expect_err("no answer");
    assert_eq!(error.reason_code(), ReasonCode::Timeout);
    let statuses: Vec<u16> = sim
        .counters()
        .for_path(&policy.id)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![0, 0], "two unanswered attempts");
}

#[tokio::test]
async fn secrets_in_graph_error_bodies_never_reach_the_message() {
    let (_sim, _policy, error) = capture_with_fault(Fault::LeakySecrets, "500").await;
    assert_eq!(error.reason_code(), ReasonCode::GraphUnavailable);
    let message = error.message();
    assert!(message.contains("InternalServerError"), "{message}");
    assert!(message.contains("[REDACTED]"), "{message}");
    assert!(!message.contains(SECRET), "{message}");
    assert!(!message.contains("eyJ"), "{message}");
    assert!(!error.to_string().contains(SECRET));
}

#[tokio::test]
async fn the_client_works_through_the_policy_source_trait() {
    let sim = start_sim(8, Knobs::default()).await;
    let source: Box<dyn PolicySource> = Box::new(client(&sim));
    let listed = source
        .list_policies(&creds(SECRET), PolicyType::Compliance)
        .await
        .expect("lists");
    assert_eq!(listed.len(), 2);
    let snapshot = source
        .capture_policy(
            &creds(SECRET),
            PolicyType::Compliance,
            &listed[0].graph_id,
            PLAIN,
        )
        .await
        .expect("captures");
    assert_eq!(snapshot.graph_id, listed[0].graph_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limiter_keeps_a_burst_of_2000_requests_under_the_throttle() {
    // The simulator enforces 500 requests per 1 s (Intune's rule, scaled down so the test takes
    // seconds); the client is allowed 300 per second with a burst of 10 and 8 in flight.
    let knobs = Knobs {
        throttle_limit: 500,
        throttle_window_ms: 1_000,
        latency_ms: 1,
        ..Knobs::default()
    };
    let sim = start_sim(40, knobs).await;
    let mut config = fast_config(&sim);
    config.limits = LimiterConfig {
        requests_per_second: nz(300),
        burst: nz(10),
        max_in_flight: 8,
    };
    let client = GraphClient::new(config).expect("client builds");
    let urls: Vec<String> = sim
        .policies(TENANT)
        .iter()
        .filter(|p| p.kind == Kind::DeviceConfiguration)
        .map(|p| {
            format!(
                "{}/deviceManagement/deviceConfigurations/{}",
                sim.graph_url, p.id
            )
        })
        .collect();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2_000 {
        let client = client.clone();
        let url = urls[i % urls.len()].clone();
        tasks.spawn(async move { client.get_json(&creds(SECRET), &url).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.expect("task finishes").expect("request succeeds");
    }
    let counters = sim.counters();
    assert_eq!(
        counters.graph_requests(),
        2_000,
        "no request needed a retry"
    );
    assert_eq!(counters.with_status(429), 0);
    assert!(counters.max_graph_requests_in(Duration::from_secs(1)) <= 500);
    assert_eq!(
        counters.token_requests(),
        1,
        "concurrent callers share one token request"
    );
}

/// A capture of `policy` with scope tags and assignments, and its payload.
async fn capture_full(
    sim: &SimHandle,
    policy_type: PolicyType,
    policy: &SimPolicy,
) -> (Snapshot, Value) {
    let full = CaptureOptions {
        include_assignments: true,
        include_scope_tags: true,
    };
    let snapshot = client(sim)
        .capture_policy(&creds(SECRET), policy_type, &policy.id, full)
        .await
        .expect("capture succeeds");
    let payload = serde_json::from_str(&snapshot.canonical_json).expect("parses");
    (snapshot, payload)
}

#[tokio::test]
async fn compliance_captures_carry_their_actions_for_noncompliance() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::CompliancePolicy);
    let (snapshot, payload) = capture_full(&sim, PolicyType::Compliance, &policy).await;
    assert_eq!(snapshot.format, CaptureFormat::LATEST);
    let rules = payload["scheduledActionsForRule"]
        .as_array()
        .expect("the actions are captured");
    assert_eq!(rules.len(), 1);
    let actions = rules[0]["scheduledActionConfigurations"]
        .as_array()
        .expect("with their configurations");
    assert!(actions.iter().any(|a| a["actionType"] == "block"));
    assert!(payload["policy"].get("scheduledActionsForRule").is_none());
    // One request: the actions come with the policy through `$expand`.
    let counters = sim.counters();
    let reads = counters.for_path(&policy.id);
    assert_eq!(reads.len(), 1);
    assert_eq!(
        reads[0].query_param("$expand").as_deref(),
        Some("assignments,scheduledActionsForRule($expand=scheduledActionConfigurations)")
    );
}

#[tokio::test]
async fn administrative_templates_carry_presentation_values_with_their_presentation() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::GroupPolicyConfiguration);
    let (_, payload) = capture_full(&sim, PolicyType::AdministrativeTemplate, &policy).await;
    let values = payload["definitionValues"].as_array().expect("values");
    assert_eq!(values.len(), policy.child_count);
    let mut presentations = 0;
    for value in values {
        assert!(value["definition"]["displayName"].is_string());
        let inner = value["presentationValues"]
            .as_array()
            .expect("every value has its presentation values");
        for presentation in inner {
            assert!(
                presentation["presentation"]["label"].is_string(),
                "{presentation}"
            );
            presentations += 1;
        }
    }
    assert!(
        presentations > 0,
        "the simulator serves some presentation values"
    );
    let counters = sim.counters();
    let reads: Vec<_> = counters
        .requests
        .iter()
        .filter(|r| r.endpoint == "presentationValues")
        .collect();
    assert_eq!(
        reads.len(),
        policy.child_count,
        "one read per definition value"
    );
    assert!(reads
        .iter()
        .all(|r| r.query_param("$expand").as_deref() == Some("presentation")));
}

#[tokio::test]
async fn setting_definitions_come_apart_from_the_content_once_per_id() {
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::ConfigurationPolicy);
    let (snapshot, payload) = capture_full(&sim, PolicyType::SettingsCatalog, &policy).await;
    let settings = payload["settings"].as_array().expect("settings");
    assert_eq!(settings.len(), 60);
    assert!(
        !snapshot.canonical_json.contains("settingDefinitions"),
        "names are not content"
    );
    let ids: Vec<&str> = snapshot
        .setting_definitions
        .iter()
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(ids.len(), 60, "one definition per setting, each once");
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, ids);
    let first_definition = &snapshot.setting_definitions[0];
    assert!(first_definition.display_name.starts_with("Simulated"));
    assert!(
        first_definition.json.contains("\"options\"") || first_definition.json.contains("isSecret")
    );
    let reads = sim.counters();
    assert!(reads
        .requests
        .iter()
        .filter(|r| r.endpoint == "settings")
        .all(|r| r.query_param("$expand").as_deref() == Some("settingDefinitions")));
}

#[tokio::test]
async fn secrets_stay_marked_and_their_values_are_never_captured() {
    let sim = start_sim(200, Knobs::default()).await;
    // Settings catalog: every tenth setting is a secret setting value.
    let policy = first(&sim, Kind::ConfigurationPolicy);
    let (snapshot, payload) = capture_full(&sim, PolicyType::SettingsCatalog, &policy).await;
    let secret = &payload["settings"][9]["settingInstance"]["simpleSettingValue"];
    assert_eq!(secret["valueState"], "encryptedValueToken");
    assert!(secret.get("value").is_none(), "{secret}");
    let served = tenantatlas::graph_sim::SimPolicy::child(&policy, 9, false);
    let token = served["settingInstance"]["simpleSettingValue"]["value"]
        .as_str()
        .expect("the simulator serves a token");
    assert!(!snapshot.canonical_json.contains(token));
    // Device configuration: an encrypted OMA setting keeps its marks, not its value.
    let custom = sim
        .policies(TENANT)
        .into_iter()
        .find(|p| p.to_json()["@odata.type"] == "#microsoft.graph.windows10CustomConfiguration")
        .expect("the tenant has a custom profile");
    let (snapshot, payload) = capture_full(&sim, PolicyType::DeviceConfiguration, &custom).await;
    let oma = payload["policy"]["omaSettings"]
        .as_array()
        .expect("OMA settings");
    let encrypted = oma
        .iter()
        .find(|s| s["isEncrypted"] == true)
        .expect("one is encrypted");
    assert!(encrypted.get("value").is_none());
    assert!(encrypted["secretReferenceValueId"].is_string());
    assert!(oma
        .iter()
        .any(|s| s["isEncrypted"] == false && s["value"].is_number()));
    let served = custom.to_json();
    let blob = served["omaSettings"][1]["value"].as_str().expect("served");
    assert!(!snapshot.canonical_json.contains(blob));
    // Nothing asked for plain text.
    assert!(!sim
        .counters()
        .requests
        .iter()
        .any(|r| r.path.contains("PlainText")));
}

#[tokio::test]
async fn the_hash_follows_settings_not_graph_noise() {
    let sim = start_sim(8, Knobs::default()).await;
    for kind in [
        Kind::ConfigurationPolicy,
        Kind::DeviceConfiguration,
        Kind::CompliancePolicy,
        Kind::GroupPolicyConfiguration,
    ] {
        let policy = first(&sim, kind);
        let policy_type = match kind {
            Kind::ConfigurationPolicy => PolicyType::SettingsCatalog,
            Kind::DeviceConfiguration => PolicyType::DeviceConfiguration,
            Kind::CompliancePolicy => PolicyType::Compliance,
            Kind::GroupPolicyConfiguration => PolicyType::AdministrativeTemplate,
        };
        let (before, _) = capture_full(&sim, policy_type, &policy).await;
        let (again, _) = capture_full(&sim, policy_type, &policy).await;
        assert_eq!(before.content_hash, again.content_hash, "{kind:?}");
        assert!(sim.change_settings(TENANT, &policy.id));
        let (changed, _) = capture_full(&sim, policy_type, &policy).await;
        assert_ne!(
            before.content_hash, changed.content_hash,
            "{kind:?}: a setting changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_of_a_tenant_captures_what_restore_needs_and_no_secret() {
    // An administrative template costs a request per definition value: thousands here, more
    // than Intune's per-app budget allows in 20 s, which this sweep is not about.
    let knobs = Knobs {
        throttle_limit: 0,
        ..Knobs::default()
    };
    let sim = start_sim(120, knobs).await;
    let client = client(&sim);
    let creds = creds(SECRET);
    let full = CaptureOptions {
        include_assignments: true,
        include_scope_tags: true,
    };
    for policy in sim.policies(TENANT) {
        let policy_type = match policy.kind {
            Kind::ConfigurationPolicy => PolicyType::SettingsCatalog,
            Kind::DeviceConfiguration => PolicyType::DeviceConfiguration,
            Kind::CompliancePolicy => PolicyType::Compliance,
            Kind::GroupPolicyConfiguration => PolicyType::AdministrativeTemplate,
        };
        let snapshot = client
            .capture_policy(&creds, policy_type, &policy.id, full)
            .await
            .expect("capture succeeds");
        let payload: Value = serde_json::from_str(&snapshot.canonical_json).expect("parses");
        let name = &policy.name;
        assert_eq!(
            payload["assignments"].as_array().map(Vec::len),
            Some(policy.assignment_count),
            "{name}"
        );
        assert!(payload["policy"]["roleScopeTagIds"].is_array(), "{name}");
        match policy.kind {
            Kind::CompliancePolicy => assert!(
                payload["scheduledActionsForRule"][0]["scheduledActionConfigurations"].is_array(),
                "{name}"
            ),
            Kind::GroupPolicyConfiguration => assert!(
                payload["definitionValues"]
                    .as_array()
                    .is_some_and(|v| v.iter().all(|v| v["presentationValues"].is_array())),
                "{name}"
            ),
            Kind::ConfigurationPolicy => assert_eq!(
                snapshot.setting_definitions.len(),
                policy.child_count,
                "{name}"
            ),
            Kind::DeviceConfiguration => {}
        }
        // No secret keeps a value, at any depth.
        fn secrets_have_no_value(value: &Value) -> bool {
            match value {
                Value::Object(fields) => {
                    let secret = fields.get("isEncrypted") == Some(&Value::Bool(true))
                        || fields.contains_key("valueState");
                    !(secret && fields.contains_key("value"))
                        && fields.values().all(secrets_have_no_value)
                }
                Value::Array(items) => items.iter().all(secrets_have_no_value),
                _ => true,
            }
        }
        assert!(secrets_have_no_value(&payload), "{name}");
        let again = client
            .capture_policy(&creds, policy_type, &policy.id, full)
            .await
            .expect("capture succeeds");
        assert_eq!(snapshot.content_hash, again.content_hash, "{name}");
    }
}

// ------------------------------------------------ a broken or hostile tenant (mock Graph)

/// `{"value": [...]}` with `ids` as device configurations, and a nextLink when given.
fn page(ids: &[String], next: Option<String>) -> String {
    let value: Vec<Value> = ids
        .iter()
        .map(|id| serde_json::json!({"id": id, "displayName": format!("Policy {id}")}))
        .collect();
    let mut page = serde_json::json!({ "value": value });
    if let Some(next) = next {
        page["@odata.nextLink"] = Value::from(next);
    }
    page.to_string()
}

#[tokio::test]
async fn a_next_link_to_a_page_already_read_fails_after_two_requests() {
    let mock = MockGraph::with_token(|base, _| {
        let looping = format!("{base}/deviceManagement/deviceConfigurations?$skiptoken=loop");
        (200, page(&["a1".into()], Some(looping)))
    })
    .await;
    let error = mock
        .client()
        .list_policies(&creds(SECRET), PolicyType::DeviceConfiguration)
        .await
        .expect_err("a nextLink loop is a Graph fault");
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
    assert_eq!(mock.requests().len(), 2, "{:?}", mock.requests());

    // A nextLink back to the first page is the same loop, noticed one request earlier.
    let mock = MockGraph::with_token(|base, target| {
        let first = format!("{}{target}", base.trim_end_matches("/beta"));
        (200, page(&["a1".into()], Some(first)))
    })
    .await;
    let error = mock
        .client()
        .list_policies(&creds(SECRET), PolicyType::DeviceConfiguration)
        .await
        .expect_err("a nextLink to the first page");
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse);
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_collection_past_its_entry_cap_fails() {
    // Pages of three, each with a new nextLink, forever.
    let mock = MockGraph::with_token(|base, target| {
        let n: usize = target
            .split("$skiptoken=")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let ids: Vec<String> = (0..3).map(|i| format!("p{n}x{i}")).collect();
        let next = format!(
            "{base}/deviceManagement/deviceConfigurations?$skiptoken={}",
            n + 1
        );
        (200, page(&ids, Some(next)))
    })
    .await;
    let mut config = mock.config();
    config.max_collection_items = 5;
    let error = GraphClient::new(config)
        .expect("client builds")
        .list_policies(&creds(SECRET), PolicyType::DeviceConfiguration)
        .await
        .expect_err("more entries than the cap");
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
    assert_eq!(mock.requests().len(), 2, "3 + 3 entries pass the cap of 5");
}

#[tokio::test]
async fn an_answer_past_the_body_cap_is_not_read_nor_asked_again() {
    let big: Vec<String> = (0..200).map(|i| format!("policy-{i:04}")).collect();
    for transfer in [Transfer::Length, Transfer::Chunked] {
        let body = page(&big, None);
        assert!(body.len() > 4 * 1024);
        let mock = MockGraph::start(
            r#"{"access_token":"mock-token","expires_in":3600}"#,
            transfer,
            move |_, _| (200, body.clone()),
        )
        .await;
        let mut config = mock.config();
        config.max_body_bytes = 4 * 1024;
        let error = GraphClient::new(config)
            .expect("client builds")
            .list_policies(&creds(SECRET), PolicyType::DeviceConfiguration)
            .await
            .expect_err("the page is larger than the cap");
        assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
        assert_eq!(mock.requests().len(), 1, "{transfer:?}: not retried");
        // Under the cap, the same answer is read.
        let listed = mock
            .client()
            .list_policies(&creds(SECRET), PolicyType::DeviceConfiguration)
            .await
            .expect("within the default cap");
        assert_eq!(listed.len(), big.len());
    }
}

#[tokio::test]
async fn a_child_id_that_is_not_a_graph_id_never_reaches_a_url() {
    let mock = MockGraph::with_token(|_, target| {
        let template = "/beta/deviceManagement/groupPolicyConfigurations/p1";
        if target == template {
            (200, r#"{"id": "p1", "displayName": "Template"}"#.into())
        } else if target.starts_with(&format!("{template}/definitionValues?")) {
            let values = serde_json::json!({"value": [
                {"id": "v1", "enabled": true},
                {"id": "../../../../groups?$select=id#", "enabled": true},
            ]});
            (200, values.to_string())
        } else {
            (200, r#"{"value": []}"#.into())
        }
    })
    .await;
    let error = mock
        .client()
        .capture_policy(
            &creds(SECRET),
            PolicyType::AdministrativeTemplate,
            "p1",
            PLAIN,
        )
        .await
        .expect_err("a definition value with a path for an id");
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
    let requests = mock.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.contains("/definitionValues/v1/presentationValues")),
        "a Graph id is followed: {requests:?}"
    );
    assert!(
        requests
            .iter()
            .all(|r| r.starts_with("/beta/deviceManagement/groupPolicyConfigurations/p1")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_policy_too_deep_to_read_back_is_refused_and_a_deep_one_is_stored() {
    /// A device configuration whose body nests `depth` levels (the policy object included).
    fn nested_policy(id: &str, depth: usize) -> String {
        let inner = (0..depth - 1).fold(Value::from(1), |v, _| Value::Array(vec![v]));
        serde_json::json!({"id": id, "displayName": "Deep", "nest": inner}).to_string()
    }
    let mock = MockGraph::with_token(|_, target| {
        match target.rsplit('/').next().unwrap_or_default() {
            // As deep as serde_json reads: the capture would wrap it once more.
            "p127" => (200, nested_policy("p127", 127)),
            "p40" => (200, nested_policy("p40", 40)),
            _ => (
                404,
                r#"{"error": {"code": "ResourceNotFound", "message": "no"}}"#.into(),
            ),
        }
    })
    .await;
    let client = mock.client();
    let error = client
        .capture_policy(
            &creds(SECRET),
            PolicyType::DeviceConfiguration,
            "p127",
            PLAIN,
        )
        .await
        .expect_err("too deep to store readable");
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
    assert!(error.message().contains("nests deeper"), "{error}");

    let snapshot = client
        .capture_policy(
            &creds(SECRET),
            PolicyType::DeviceConfiguration,
            "p40",
            PLAIN,
        )
        .await
        .expect("a deep policy within the bound");
    let stored: Value = serde_json::from_str(&snapshot.canonical_json).expect("reads back");
    assert_eq!(stored["policy"]["displayName"], "Deep");
}

#[tokio::test]
async fn a_token_that_claims_to_live_forever_is_cached_without_overflow() {
    for expires_in in ["18446744073709551615", "0", "1"] {
        let mock = MockGraph::start(
            &format!(r#"{{"access_token":"mock-token","expires_in":{expires_in}}}"#),
            Transfer::Length,
            |_, _| (200, page(&[], None)),
        )
        .await;
        let client = mock.client();
        for _ in 0..2 {
            let listed = client
                .list_policies(&creds(SECRET), PolicyType::Compliance)
                .await
                .expect("the token serves");
            assert!(listed.is_empty(), "expires_in {expires_in}");
        }
    }
}

#[tokio::test]
async fn captured_names_and_definitions_are_made_storable() {
    let mock = MockGraph::with_token(|_, target| {
        let policy = "/beta/deviceManagement/configurationPolicies/p1";
        if target == policy {
            (
                200,
                r#"{"id": "p1", "name": "Cat\u0000alog\nbaseline"}"#.into(),
            )
        } else if target.starts_with(&format!("{policy}/settings?")) {
            let settings = serde_json::json!({"value": [{
                "id": "0",
                "settingInstance": {"settingDefinitionId": "a"},
                "settingDefinitions": [
                    {"id": "a", "displayName": "Na\u{0}me"},
                    {"id": "b\u{0}", "displayName": "Dropped"},
                    {"id": "c".repeat(2_000), "displayName": "Dropped"},
                ],
            }]});
            (200, settings.to_string())
        } else {
            (200, r#"{"value": []}"#.into())
        }
    })
    .await;
    let snapshot = mock
        .client()
        .capture_policy(&creds(SECRET), PolicyType::SettingsCatalog, "p1", PLAIN)
        .await
        .expect("the capture succeeds");
    assert_eq!(snapshot.display_name, "Catalog baseline");
    let definitions: Vec<(&str, &str)> = snapshot
        .setting_definitions
        .iter()
        .map(|d| (d.id.as_str(), d.display_name.as_str()))
        .collect();
    assert_eq!(definitions, [("a", "Name")]);
}

#[tokio::test]
async fn a_name_with_a_lone_surrogate_is_listed_not_refused() {
    // What .NET writes for a name cut inside a surrogate pair; serde_json alone refuses it.
    let mock = MockGraph::with_token(|_, _| {
        (
            200,
            r#"{"value": [{"id": "a1", "displayName": "Base\ud83dline"}, {"id": "a2", "displayName": "Fine"}]}"#
                .into(),
        )
    })
    .await;
    let listed = mock
        .client()
        .list_policies(&creds(SECRET), PolicyType::Compliance)
        .await
        .expect("the page reads");
    let names: Vec<&str> = listed.iter().map(|l| l.display_name.as_str()).collect();
    assert_eq!(names, ["Base\u{fffd}line", "Fine"]);
    assert_eq!(mock.requests().len(), 1, "read at the first attempt");
}

#[tokio::test]
async fn a_throttled_or_failing_token_endpoint_is_asked_again_and_concurrent_captures_share_one_fetch(
) {
    use tenantatlas::graph_sim::TokenUnavailable;
    for (status, retry_after_secs) in [(429, Some(1)), (503, None), (429, None)] {
        let sim = start_sim(8, Knobs::default()).await;
        let policy = first(&sim, Kind::CompliancePolicy);
        sim.set_knobs(Knobs {
            token_unavailable: Some(TokenUnavailable {
                status,
                times: 1,
                retry_after_secs,
            }),
            ..Knobs::default()
        });
        sim.reset_counters();
        let client = client(&sim);
        let started = std::time::Instant::now();
        let creds = creds(SECRET);
        let captures = (0..6)
            .map(|_| client.capture_policy(&creds, PolicyType::Compliance, &policy.id, PLAIN));
        for capture in futures::future::join_all(captures).await {
            capture.unwrap_or_else(|e| panic!("{status}: {e}"));
        }
        if let Some(seconds) = retry_after_secs {
            assert!(
                started.elapsed() >= Duration::from_secs(seconds),
                "Retry-After honoured"
            );
        }
        let tokens = token_statuses(&sim);
        assert_eq!(
            tokens,
            [status, 200],
            "one fetch, retried once, for every capture"
        );
    }
}

/// A `$select` or `$expand` naming what the type does not have is refused as Graph refuses
/// it, while every query the client sends (list `$select`s, nested `$expand`s) still passes.
#[tokio::test]
async fn unknown_select_and_expand_names_are_refused_as_graph_refuses_them() {
    let sim = start_sim(8, Knobs::default()).await;
    let token = sim_support::token(&sim).await;
    for (query, name, on) in [
        (
            "deviceConfigurations?$expand=settings",
            "settings",
            "deviceConfiguration",
        ),
        (
            "configurationPolicies?$select=displayName,bogus",
            "displayName",
            "deviceManagementConfigurationPolicy",
        ),
        (
            "configurationPolicies?$select=name,bogus",
            "bogus",
            "deviceManagementConfigurationPolicy",
        ),
        (
            "deviceCompliancePolicies?$expand=scheduledActionsForRule($expand=bogus)",
            "bogus",
            "deviceComplianceScheduledActionForRule",
        ),
    ] {
        let response = reqwest::Client::new()
            .get(format!("{}/deviceManagement/{query}", sim.graph_url))
            .bearer_auth(&token)
            .send()
            .await
            .expect("the simulator answers");
        assert_eq!(response.status().as_u16(), 400, "{query}");
        let body: Value = response.json().await.expect("Graph's error JSON");
        assert_eq!(body["error"]["code"], "BadRequest", "{query}: {body}");
        assert_eq!(
            body["error"]["message"],
            format!("Could not find a property named '{name}' on type 'microsoft.graph.{on}'."),
            "{query}"
        );
    }
    let client = client(&sim);
    let creds = creds(SECRET);
    for policy_type in PolicyType::ALL {
        let listed = client
            .list_policies(&creds, policy_type)
            .await
            .unwrap_or_else(|e| panic!("{policy_type:?}: {e}"));
        let first = listed.first().expect("a policy of each type");
        client
            .capture_policy(
                &creds,
                policy_type,
                &first.graph_id,
                CaptureOptions {
                    include_assignments: true,
                    include_scope_tags: true,
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{policy_type:?}: {e}"));
    }
    let refused = sim
        .counters()
        .requests
        .iter()
        .filter(|r| r.is_graph() && r.status == 400)
        .count();
    assert_eq!(refused, 4, "only the four queries above were refused");
}

/// Entra ID sends `temporarily_unavailable` (AADSTS90033) with 400 as well as with 503: the
/// OAuth error says it is Entra ID's failure, not the app's, so it is asked again and never
/// taken for a refusal of the app.
#[tokio::test]
async fn a_transient_oauth_error_sent_with_400_is_asked_again_not_a_refusal() {
    use tenantatlas::graph_sim::TokenUnavailable;
    let sim = start_sim(8, Knobs::default()).await;
    let policy = first(&sim, Kind::CompliancePolicy);
    sim.set_knobs(Knobs {
        token_unavailable: Some(TokenUnavailable {
            status: 400,
            times: 1,
            retry_after_secs: None,
        }),
        ..Knobs::default()
    });
    sim.reset_counters();
    client(&sim)
        .capture_policy(&creds(SECRET), PolicyType::Compliance, &policy.id, PLAIN)
        .await
        .expect("the second token request gets a token");
    let tokens = token_statuses(&sim);
    assert_eq!(tokens, [400, 200], "asked twice");
    // The same answer to a connection check is no refusal of the app either.
    sim.set_knobs(Knobs {
        token_unavailable: Some(TokenUnavailable {
            status: 400,
            times: 100,
            retry_after_secs: None,
        }),
        ..Knobs::default()
    });
    let failure = client(&sim)
        .check_token(&creds(SECRET))
        .await
        .expect_err("no token");
    assert!(failure.refusal.is_none(), "{:?}", failure.refusal);
    assert_eq!(failure.error.reason_code(), ReasonCode::GraphUnavailable);
}

// ------------------------------------------ redirects, budgets and odd token endpoints (scripted)

/// What a list of compliance policies through a client built from `config` fails with.
async fn list_error(config: tenantatlas::server::graph::GraphConfig, secret: &str) -> GraphError {
    GraphClient::new(config)
        .expect("client builds")
        .list_policies(&creds(secret), PolicyType::Compliance)
        .await
        .expect_err("the list must fail")
}

#[tokio::test]
async fn redirects_are_never_followed() {
    // Where every redirect points: a willing token endpoint and Graph, had it been followed.
    let elsewhere = Scripted::start(|seen| {
        if seen.is_token_request() {
            Reply::token("elsewhere-token")
        } else {
            Reply::empty_page()
        }
    })
    .await;
    for status in [301, 302, 307, 308] {
        // A token endpoint redirecting the client secret to another host.
        let target = elsewhere.url.clone();
        let login = Scripted::start(move |seen| {
            Reply::redirect(status, format!("{target}{}", seen.target))
        })
        .await;
        let error = list_error(login.config(), SECRET).await;
        assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
        assert!(error.message().contains("redirect"), "{error}");
        assert_eq!(login.token_requests(), 1, "{status}: not asked again");

        // Graph (or a nextLink on its host) redirecting a GET to another host.
        let target = elsewhere.url.clone();
        let graph = Scripted::start(move |seen| {
            if seen.is_token_request() {
                Reply::token("mock-token")
            } else {
                Reply::redirect(status, format!("{target}{}", seen.target))
            }
        })
        .await;
        let error = list_error(graph.config(), SECRET).await;
        assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
        assert!(error.message().contains("redirect"), "{error}");
        let gets = graph
            .requests()
            .iter()
            .filter(|r| r.method == "GET")
            .count();
        assert_eq!(gets, 1, "{status}: a redirect is final, not retried");
    }
    assert!(
        elsewhere.requests().is_empty(),
        "a redirect was followed: {:?}",
        elsewhere.requests()
    );
}

/// A page of one device configuration padded to about a mebibyte, with a nextLink when given.
fn mebibyte_page(n: usize, next: Option<String>) -> String {
    let mut page = serde_json::json!({"value": [
        {"id": format!("p{n}"), "displayName": "x".repeat(1 << 20)}
    ]});
    if let Some(next) = next {
        page["@odata.nextLink"] = Value::from(next);
    }
    page.to_string()
}

#[tokio::test]
async fn a_collection_past_its_byte_budget_fails() {
    // Pages of a mebibyte with a new nextLink each, forever (n stays one digit).
    let mock = MockGraph::with_token(|base, target| {
        let n: usize = target
            .split("$skiptoken=")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let next = format!(
            "{base}/deviceManagement/deviceConfigurations?$skiptoken={}",
            n + 1
        );
        (200, mebibyte_page(n, Some(next)))
    })
    .await;
    let page_bytes = mebibyte_page(0, Some(format!("{}/x?$skiptoken=1", mock.graph_url))).len();
    let mut config = mock.config();
    config.max_read_bytes = 4 << 20;
    let listed = GraphClient::new(config)
        .expect("client builds")
        .list_policies(&creds(SECRET), PolicyType::DeviceConfiguration)
        .await;
    // Not `expect_err`: a list read in full would print megabytes.
    let Err(error) = listed else {
        panic!("more bytes than the budget were read");
    };
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
    assert!(error.message().contains("bytes"), "{error}");
    assert_eq!(
        mock.requests().len(),
        (4 << 20) / page_bytes + 1,
        "the page past the budget is the last one read"
    );
}

#[tokio::test]
async fn a_capture_past_its_byte_budget_fails_though_each_collection_is_within_it() {
    // An administrative template of ten definition values, each with one page of presentation
    // values of a mebibyte: every collection is under the budget, the capture is not.
    let mock = MockGraph::with_token(|_, target| {
        let template = "/beta/deviceManagement/groupPolicyConfigurations/p1";
        if target == template {
            (200, r#"{"id": "p1", "displayName": "Template"}"#.into())
        } else if target.starts_with(&format!("{template}/definitionValues?")) {
            let values: Vec<Value> = (0..10)
                .map(|i| serde_json::json!({"id": format!("v{i}"), "enabled": true}))
                .collect();
            (200, serde_json::json!({ "value": values }).to_string())
        } else {
            (200, mebibyte_page(0, None))
        }
    })
    .await;
    let mut config = mock.config();
    config.max_read_bytes = 4 << 20;
    let captured = GraphClient::new(config)
        .expect("client builds")
        .capture_policy(
            &creds(SECRET),
            PolicyType::AdministrativeTemplate,
            "p1",
            PLAIN,
        )
        .await;
    let Err(error) = captured else {
        panic!("more bytes than the capture's budget were read");
    };
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
    let presentation_pages = mock
        .requests()
        .iter()
        .filter(|r| r.contains("/presentationValues"))
        .count();
    assert_eq!(presentation_pages, 4, "{:?}", mock.requests());
}

#[tokio::test]
async fn a_failing_token_endpoint_is_asked_by_one_request_for_all_that_queued_behind_it() {
    let login = Scripted::start(|seen| {
        if seen.is_token_request() {
            Reply::json(503, r#"{"error": "temporarily_unavailable"}"#)
        } else {
            Reply::empty_page()
        }
    })
    .await;
    let config = login.config();
    let max_attempts = config.retry.max_attempts as usize;
    let client = GraphClient::new(config).expect("client builds");
    let creds = creds(SECRET);
    let captures =
        (0..6).map(|_| client.capture_policy(&creds, PolicyType::Compliance, "p1", PLAIN));
    for capture in futures::future::join_all(captures).await {
        let error = capture.expect_err("no token");
        assert_eq!(error.reason_code(), ReasonCode::GraphUnavailable, "{error}");
    }
    assert_eq!(
        login.token_requests(),
        max_attempts,
        "one fetch with its retries answers every capture queued behind it"
    );
    // A request that comes later asks again.
    let error = client
        .list_policies(&creds, PolicyType::Compliance)
        .await
        .expect_err("still no token");
    assert_eq!(error.reason_code(), ReasonCode::GraphUnavailable, "{error}");
    assert_eq!(login.token_requests(), 2 * max_attempts);
    assert!(login.requests().iter().all(|r| r.is_token_request()));
}

/// A connection check fetches a fresh token whatever the cache holds; when that fetch fails
/// (here: every attempt times out), the captures that queued behind it still have the token
/// the cache holds, valid for the best part of an hour, and go on with it.
#[tokio::test]
async fn a_failed_fresh_fetch_does_not_fail_requests_a_cached_token_serves() {
    let tokens = std::sync::atomic::AtomicUsize::new(0);
    let login = Scripted::start(move |seen| {
        if !seen.is_token_request() {
            Reply::empty_page()
        } else if tokens.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::token("cached-token")
        } else {
            Reply::hang()
        }
    })
    .await;
    let mut config = login.config();
    config.request_timeout = Duration::from_millis(500);
    let client = GraphClient::new(config).expect("client builds");
    let creds = creds(SECRET);
    client
        .list_policies(&creds, PolicyType::Compliance)
        .await
        .expect("a token, then the list");
    let check = tokio::spawn({
        let (client, creds) = (client.clone(), creds.clone());
        async move { client.granted_roles(&creds).await.map(|_| ()) }
    });
    while login.token_requests() < 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client
        .list_policies(&creds, PolicyType::Compliance)
        .await
        .expect("the cached token serves though the check's fetch failed");
    check
        .await
        .expect("the check ends")
        .expect_err("the token endpoint never answered the check");
    let graph: Vec<_> = login
        .requests()
        .into_iter()
        .filter(|r| !r.is_token_request())
        .collect();
    assert_eq!(graph.len(), 2, "{graph:?}");
}

#[tokio::test]
async fn a_cancelled_request_does_not_wait_behind_a_token_fetch() {
    use tenantatlas::server::graph::interrupt::Interrupt;
    let login = Scripted::start(|seen| {
        if seen.is_token_request() {
            Reply::hang()
        } else {
            Reply::empty_page()
        }
    })
    .await;
    let mut config = login.config();
    config.request_timeout = Duration::from_secs(600);
    let client = GraphClient::new(config).expect("client builds");
    let holder = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .list_policies(&creds(SECRET), PolicyType::Compliance)
                .await
        }
    });
    while login.token_requests() == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (cancel, signal) = tokio::sync::watch::channel(false);
    let interrupt = Interrupt::new(signal);
    let creds = creds(SECRET);
    let queued = interrupt.scope(client.list_policies(&creds, PolicyType::Compliance));
    let (result, ()) = tokio::join!(
        tokio::time::timeout(Duration::from_secs(60), queued),
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.send_replace(true);
        }
    );
    let error = result
        .expect("the cancel ends the wait for the token")
        .expect_err("cancelled");
    assert_eq!(error.reason_code(), ReasonCode::Cancelled, "{error}");
    assert!(interrupt.interrupted());
    assert!(
        !holder.is_finished(),
        "the fetch it queued behind still runs"
    );
    assert_eq!(login.token_requests(), 1);
    holder.abort();
}

#[tokio::test]
async fn a_token_endpoint_refusal_that_is_not_entra_ids_is_unavailable_not_authentication() {
    for status in [400, 401, 403] {
        let proxy = Scripted::start(move |seen| {
            if seen.is_token_request() {
                Reply::html(
                    status,
                    "<html><body>Access denied by the proxy</body></html>",
                )
            } else {
                Reply::empty_page()
            }
        })
        .await;
        let error = list_error(proxy.config(), SECRET).await;
        assert_eq!(error.reason_code(), ReasonCode::GraphUnavailable, "{error}");
        assert!(error.message().contains("not Entra ID"), "{error}");
        let failure = GraphClient::new(proxy.config())
            .expect("client builds")
            .check_token(&creds(SECRET))
            .await
            .expect_err("no token");
        assert!(failure.refusal.is_none(), "{status}: no refusal of the app");
        assert_eq!(proxy.token_requests(), 2, "{status}: not asked again");
    }
    // Entra ID's own refusal, with its OAuth error and AADSTS code, still is one.
    let entra = Scripted::start(|_| {
        Reply::json(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215]}"#,
        )
    })
    .await;
    let error = list_error(entra.config(), SECRET).await;
    assert_eq!(
        error.reason_code(),
        ReasonCode::AuthenticationFailed,
        "{error}"
    );
    let failure = GraphClient::new(entra.config())
        .expect("client builds")
        .check_token(&creds(SECRET))
        .await
        .expect_err("refused");
    assert!(failure.refusal.is_some());
}

#[tokio::test]
async fn a_token_that_cannot_be_a_header_is_refused_and_not_cached() {
    for bad in [
        "ab\ncd".to_owned(),
        "ab cd".into(),
        "é".into(),
        "x".repeat(20_000),
    ] {
        let token = bad.clone();
        let login = Scripted::start(move |seen| {
            if seen.is_token_request() {
                Reply::token(&token)
            } else {
                Reply::empty_page()
            }
        })
        .await;
        let client = GraphClient::new(login.config()).expect("client builds");
        for asked in 1..=2 {
            let error = client
                .list_policies(&creds(SECRET), PolicyType::Compliance)
                .await
                .expect_err("no usable token");
            assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
            assert_eq!(login.token_requests(), asked, "{bad:.20?}: never cached");
        }
        assert!(login.requests().iter().all(|r| r.is_token_request()));
    }
}

#[tokio::test]
async fn a_replaced_secret_gets_a_token_of_its_own() {
    let sim = start_sim(8, Knobs::default()).await;
    let client = client(&sim);
    client
        .list_policies(&creds(SECRET), PolicyType::Compliance)
        .await
        .expect("the first secret works");
    let error = client
        .list_policies(&creds("the-new-secret"), PolicyType::Compliance)
        .await
        .expect_err("the first secret's token never serves another secret");
    assert_eq!(
        error.reason_code(),
        ReasonCode::AuthenticationFailed,
        "{error}"
    );
    assert_eq!(sim.counters().token_requests(), 2);
    // The first secret's token stays cached for whoever still holds it.
    client
        .list_policies(&creds(SECRET), PolicyType::Compliance)
        .await
        .expect("still cached");
    assert_eq!(sim.counters().token_requests(), 2);
}

/// The statuses of the token endpoint's answers since the simulator's counters were reset.
fn token_statuses(sim: &SimHandle) -> Vec<u16> {
    sim.counters()
        .requests
        .iter()
        .filter(|r| r.endpoint == "token")
        .map(|r| r.status)
        .collect()
}

#[tokio::test]
async fn a_part_gone_while_a_policy_is_read_is_not_a_deleted_policy() {
    // The template and its definition values answer; one value's presentation values are gone
    // (a setting removed in Intune between the two reads).
    let mock = MockGraph::with_token(|_, target| {
        let template = "/beta/deviceManagement/groupPolicyConfigurations/p1";
        if target == template {
            (200, r#"{"id": "p1", "displayName": "Template"}"#.into())
        } else if target.starts_with(&format!("{template}/definitionValues?")) {
            let values = serde_json::json!({"value": [
                {"id": "v1", "enabled": true},
                {"id": "v2", "enabled": true},
            ]});
            (200, values.to_string())
        } else if target.contains("/definitionValues/v2/presentationValues") {
            let gone = r#"{"error": {"code": "ResourceNotFound", "message": "Not found"}}"#;
            (404, gone.into())
        } else {
            (200, r#"{"value": []}"#.into())
        }
    })
    .await;
    let error = mock
        .client()
        .capture_policy(
            &creds(SECRET),
            PolicyType::AdministrativeTemplate,
            "p1",
            PLAIN,
        )
        .await
        .expect_err("a part of the policy is gone");
    assert_ne!(error.reason_code(), ReasonCode::PolicyNotFound, "{error}");
    assert_eq!(error.reason_code(), ReasonCode::InvalidResponse, "{error}");
    assert!(
        error.message().contains("changed while it was read"),
        "{error}"
    );

    // A 404 on the policy's own URL still says it was deleted, $expand or not.
    let mock = MockGraph::with_token(|_, target| {
        if target.contains("/definitionValues") {
            (200, r#"{"value": []}"#.into())
        } else {
            let gone = r#"{"error": {"code": "ResourceNotFound", "message": "Not found"}}"#;
            (404, gone.into())
        }
    })
    .await;
    for policy_type in [PolicyType::AdministrativeTemplate, PolicyType::Compliance] {
        let error = mock
            .client()
            .capture_policy(&creds(SECRET), policy_type, "p1", PLAIN)
            .await
            .expect_err("the policy is gone");
        assert_eq!(error.reason_code(), ReasonCode::PolicyNotFound, "{error}");
    }
    assert!(
        mock.requests()
            .iter()
            .any(|r| r.contains("CompliancePolicies/p1?$expand=")),
        "{:?}",
        mock.requests()
    );
}
