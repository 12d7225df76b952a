//! The Graph simulator over real HTTP, as any Graph client meets it: every route answers reads
//! and every route but the policies' refuses writes (tests/graph_write.rs covers those),
//! collections and entities carry `@odata.context`, query options behave as
//! Graph documents them, the directory matches what assignments name, JSON batching, the OpenID
//! discovery document, the request log, and mutations.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tenantatlas::graph_sim::{Kind, Knobs, Mutation, SimCounters, SimHandle, MAX_PAGE_SIZE};

use crate::sim_support;
use sim_support::{send, start_sim, token, TENANT};

async fn start(policies: usize, knobs: Knobs) -> SimHandle {
    start_sim(policies, knobs).await
}

/// `method` on `{base}/{path}` (path relative to the simulator, e.g. `beta/groups`).
async fn call(sim: &SimHandle, token: &str, method: Method, path: &str) -> (StatusCode, Value) {
    send(sim, token, method, path, &json!({})).await
}

/// Asserts a 400 `BadRequest` whose message holds `expected`.
fn assert_bad_request(answer: &(StatusCode, Value), expected: &str) {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "BadRequest", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(expected), "{message}");
}

async fn get(sim: &SimHandle, token: &str, path: &str) -> Value {
    let (status, body) = call(sim, token, Method::GET, path).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

/// Every route the simulator serves, with real ids of the tenant.
async fn every_route(sim: &SimHandle, token: &str) -> Vec<String> {
    let policies = sim.policies(TENANT);
    let of = |kind: Kind| policies.iter().find(|p| p.kind == kind).expect("kind");
    let mut paths = Vec::new();
    for kind in [
        Kind::ConfigurationPolicy,
        Kind::DeviceConfiguration,
        Kind::CompliancePolicy,
        Kind::GroupPolicyConfiguration,
    ] {
        let collection = format!("beta/deviceManagement/{}", kind.collection());
        let id = &of(kind).id;
        paths.push(collection.clone());
        paths.push(format!("{collection}/{id}"));
        paths.push(format!("{collection}/{id}/assignments"));
    }
    let catalog = &of(Kind::ConfigurationPolicy).id;
    paths.push(format!(
        "beta/deviceManagement/configurationPolicies/{catalog}/settings"
    ));
    let template = of(Kind::GroupPolicyConfiguration);
    // Value 2 has two presentation values (value 0 has none).
    let value = template.child_id(2);
    let values = format!(
        "beta/deviceManagement/groupPolicyConfigurations/{}/definitionValues",
        template.id
    );
    paths.push(values.clone());
    paths.push(format!("{values}/{value}"));
    paths.push(format!("{values}/{value}/definition"));
    paths.push(format!("{values}/{value}/presentationValues"));
    let compliance = &of(Kind::CompliancePolicy).id;
    let rules = format!(
        "beta/deviceManagement/deviceCompliancePolicies/{compliance}/scheduledActionsForRule"
    );
    let rule = get(sim, token, &rules).await["value"][0]["id"]
        .as_str()
        .expect("a rule")
        .to_owned();
    paths.push(rules.clone());
    paths.push(format!("{rules}/{rule}"));
    paths.push(format!("{rules}/{rule}/scheduledActionConfigurations"));
    let group = &sim.groups(TENANT)[0].id;
    let filter = &sim.assignment_filters(TENANT)[0].id;
    paths.extend([
        "beta/groups".to_owned(),
        format!("beta/groups/{group}"),
        "v1.0/groups".to_owned(),
        "beta/deviceManagement/assignmentFilters".to_owned(),
        format!("beta/deviceManagement/assignmentFilters/{filter}"),
        "beta/deviceManagement/roleScopeTags".to_owned(),
        "beta/deviceManagement/roleScopeTags/0".to_owned(),
    ]);
    paths
}

/// A policy collection or a policy: the routes that take writes.
fn is_policy_route(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    matches!(parts.as_slice(), [_, "deviceManagement", collection] | [_, "deviceManagement", collection, _]
        if Kind::from_collection(collection).is_some())
}

#[tokio::test]
async fn every_route_answers_reads_with_a_context_and_the_others_refuse_writes() {
    let sim = start(8, Knobs::default()).await;
    let token = token(&sim).await;
    let routes = every_route(&sim, &token).await;
    let read_only = routes.iter().filter(|p| !is_policy_route(p)).count();
    sim.reset_counters();
    for path in &routes {
        let body = get(&sim, &token, path).await;
        let context = body["@odata.context"].as_str().unwrap_or_default();
        assert!(
            context.contains("/$metadata#"),
            "GET {path} carries @odata.context: {body}"
        );
        if let Some(items) = body["value"].as_array() {
            assert!(!items.is_empty(), "GET {path} lists something");
        } else {
            assert!(context.ends_with("/$entity"), "{path}: {context}");
        }
        if is_policy_route(path) {
            continue;
        }
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let (status, body) = call(&sim, &token, method.clone(), path).await;
            assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(body["error"]["code"].is_string(), "{method} {path}: {body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(method.as_str())),
                "{body}"
            );
        }
    }
    let counters = sim.counters();
    assert_eq!(counters.requests.len(), routes.len() + read_only * 4);
    assert_eq!(counters.writes().len(), read_only * 4);
    assert!(counters.writes().iter().all(|r| r.status == 405));
}

#[tokio::test]
async fn unknown_paths_answer_graphs_error_naming_the_segment() {
    let sim = start(8, Knobs::default()).await;
    let token = token(&sim).await;
    let policy = &sim.policies(TENANT)[1];
    let cases = [
        ("beta/deviceManagement/widgets".to_owned(), "widgets"),
        ("beta/users".to_owned(), "users"),
        ("v2.0/groups".to_owned(), "v2.0"),
        (
            format!(
                "beta/deviceManagement/deviceConfigurations/{}/settings",
                policy.id
            ),
            "settings",
        ),
        ("beta/groups/x/members".to_owned(), "members"),
    ];
    for (path, segment) in cases {
        let (status, body) = call(&sim, &token, Method::GET, &path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(body["error"]["code"], "BadRequest");
        assert_eq!(
            body["error"]["message"],
            format!("Resource not found for the segment '{segment}'."),
            "{path}"
        );
    }
    let counters = sim.counters();
    assert!(counters
        .requests
        .iter()
        .filter(|r| r.is_graph())
        .all(|r| r.endpoint == "unknown"));
}

/// The settings catalog and administrative templates are beta only: under v1.0 their
/// collections (and everything under them) are unknown segments, for reads and writes.
#[tokio::test]
async fn beta_only_collections_are_unknown_segments_on_v1() {
    let sim = start(8, Knobs::default()).await;
    let token = token(&sim).await;
    let policies = sim.policies(TENANT);
    for kind in [Kind::ConfigurationPolicy, Kind::GroupPolicyConfiguration] {
        let collection = kind.collection();
        let id = &policies.iter().find(|p| p.kind == kind).expect("kind").id;
        let list = format!("v1.0/deviceManagement/{collection}");
        let segment = format!("Resource not found for the segment '{collection}'.");
        assert_bad_request(&call(&sim, &token, Method::GET, &list).await, &segment);
        let create = json!({"name": "n", "displayName": "n", "platforms": "windows10",
            "technologies": "mdm"});
        assert_bad_request(
            &send(&sim, &token, Method::POST, &list, &create).await,
            &segment,
        );
        for tail in ["", "/assignments"] {
            let path = format!("{list}/{id}{tail}");
            assert_bad_request(&call(&sim, &token, Method::GET, &path).await, &segment);
        }
        let beta = format!("beta/deviceManagement/{collection}");
        get(&sim, &token, &beta).await;
    }
    get(&sim, &token, "v1.0/deviceManagement/deviceConfigurations").await;
    get(
        &sim,
        &token,
        "v1.0/deviceManagement/deviceCompliancePolicies",
    )
    .await;
    assert_eq!(
        sim.policies(TENANT).len(),
        policies.len(),
        "nothing created"
    );
}

/// Graph reads a body without `@odata.type` as the collection's declared (abstract) type and
/// an OMA setting without one as the abstract `omaSetting`: neither has the derived types'
/// properties (`omaSettings`, a setting's `value`), so both are refused, as Intune refuses
/// them; Microsoft's update example types the body and every setting.
#[tokio::test]
async fn untyped_device_configuration_bodies_and_oma_settings_are_refused() {
    let sim = start(200, Knobs::default()).await;
    let token = token(&sim).await;
    let custom = sim
        .policies(TENANT)
        .into_iter()
        .find(|p| p.to_json()["@odata.type"] == "#microsoft.graph.windows10CustomConfiguration")
        .expect("a custom profile");
    let path = format!("beta/deviceManagement/deviceConfigurations/{}", custom.id);
    let before = sim.policy_json(TENANT, &custom.id).expect("policy");
    let setting = json!({"displayName": "x",
        "omaUri": "./Vendor/MSFT/Policy/Config/Example", "value": 5});

    let untyped_body = json!({"omaSettings": [setting]});
    assert_bad_request(
        &send(&sim, &token, Method::PATCH, &path, &untyped_body).await,
        "The property 'omaSettings' does not exist on type 'microsoft.graph.deviceConfiguration'",
    );
    let typed_body = json!({"@odata.type": "#microsoft.graph.windows10CustomConfiguration",
        "omaSettings": [setting]});
    assert_bad_request(
        &send(&sim, &token, Method::PATCH, &path, &typed_body).await,
        "omaSettings/0",
    );
    let mut abstract_setting = typed_body.clone();
    abstract_setting["omaSettings"][0]["@odata.type"] = json!("#microsoft.graph.omaSetting");
    assert_bad_request(
        &send(&sim, &token, Method::PATCH, &path, &abstract_setting).await,
        "omaSettings/0",
    );
    let collection = "beta/deviceManagement/deviceCompliancePolicies";
    let compliance = sim
        .policies(TENANT)
        .into_iter()
        .find(|p| p.kind == Kind::CompliancePolicy)
        .expect("a compliance policy");
    assert_bad_request(
        &send(
            &sim,
            &token,
            Method::PATCH,
            &format!("{collection}/{}", compliance.id),
            &json!({"osMinimumVersion": "10.0"}),
        )
        .await,
        "The property 'osMinimumVersion' does not exist on type 'microsoft.graph.deviceCompliancePolicy'",
    );
    assert_eq!(sim.policy_json(TENANT, &custom.id), Some(before));

    // Typed as Microsoft's example types them, the same write is taken.
    let mut typed = typed_body.clone();
    typed["omaSettings"][0]["@odata.type"] = json!("#microsoft.graph.omaSettingInteger");
    let (status, body) = send(&sim, &token, Method::PATCH, &path, &typed).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let untyped_name = json!({"displayName": "renamed"});
    let (status, body) = send(&sim, &token, Method::PATCH, &path, &untyped_name).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "a base property: {body}");
}

/// An administrative template's assignment (`groupPolicyConfigurationAssignment`) has no
/// `source` or `sourceId`: the simulator lists none, refuses them in `$select`, and in an
/// `assign` body.
#[tokio::test]
async fn administrative_template_assignments_have_no_source() {
    let sim = start(200, Knobs::default()).await;
    let token = token(&sim).await;
    let template = sim
        .policies(TENANT)
        .into_iter()
        .find(|p| p.kind == Kind::GroupPolicyConfiguration && p.assignment_count > 0)
        .expect("an assigned administrative template");
    let path = format!(
        "beta/deviceManagement/groupPolicyConfigurations/{}",
        template.id
    );
    let listed = get(&sim, &token, &format!("{path}/assignments")).await;
    let listed = listed["value"].as_array().expect("assignments").clone();
    assert!(!listed.is_empty());
    for assignment in &listed {
        assert!(assignment.get("source").is_none(), "{assignment}");
        assert!(assignment.get("sourceId").is_none(), "{assignment}");
    }
    for select in ["source", "id,sourceId"] {
        assert_bad_request(
            &call(
                &sim,
                &token,
                Method::GET,
                &format!("{path}/assignments?$select={select}"),
            )
            .await,
            "on type 'microsoft.graph.groupPolicyConfigurationAssignment'",
        );
    }
    let target = listed[0]["target"].clone();
    for (key, value) in [
        ("source", json!("direct")),
        ("sourceId", json!(template.id)),
    ] {
        let body = json!({"assignments": [{"target": target, key: value}]});
        assert_bad_request(
            &send(&sim, &token, Method::POST, &format!("{path}/assign"), &body).await,
            &format!("The property '{key}' does not exist on type 'microsoft.graph.groupPolicyConfigurationAssignment'"),
        );
    }
    let body = json!({"assignments": [{"target": target}]});
    let (status, answer) = send(&sim, &token, Method::POST, &format!("{path}/assign"), &body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert!(answer["value"][0].get("source").is_none(), "{answer}");
    // The other kinds keep theirs.
    let device = sim
        .policies(TENANT)
        .into_iter()
        .find(|p| p.kind == Kind::DeviceConfiguration && p.assignment_count > 0)
        .expect("an assigned device configuration");
    let device = get(
        &sim,
        &token,
        &format!(
            "beta/deviceManagement/deviceConfigurations/{}/assignments?$select=id,source,sourceId",
            device.id
        ),
    )
    .await;
    assert_eq!(device["value"][0]["source"], "direct");
}

#[tokio::test]
async fn top_is_honoured_up_to_the_maximum_and_beta_takes_options_without_dollar() {
    let sim = start(4_000, Knobs::default()).await;
    let token = token(&sim).await;
    let catalog = &sim.policies(TENANT)[0];
    assert_eq!(catalog.child_count, 60);
    let settings = format!(
        "deviceManagement/configurationPolicies/{}/settings",
        catalog.id
    );
    let count = |body: &Value| body["value"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(&get(&sim, &token, &format!("beta/{settings}")).await),
        25
    );
    let fifty = get(&sim, &token, &format!("beta/{settings}?$top=50")).await;
    assert_eq!(count(&fifty), 50);
    let next = fifty["@odata.nextLink"].as_str().expect("a next page");
    assert!(
        next.contains("%24top=50") || next.contains("$top=50"),
        "{next}"
    );
    assert_eq!(
        count(&get(&sim, &token, &format!("beta/{settings}?top=50")).await),
        50
    );
    let list = "deviceManagement/deviceConfigurations";
    assert_eq!(
        count(&get(&sim, &token, &format!("beta/{list}?top=5&$select=id")).await),
        5
    );
    assert_eq!(
        count(&get(&sim, &token, &format!("v1.0/{list}?top=5&$select=id")).await),
        100,
        "v1.0 wants the $"
    );
    let list = format!("beta/{list}");
    let capped = get(&sim, &token, &format!("{list}?$top=5000&$select=id")).await;
    assert_eq!(count(&capped), MAX_PAGE_SIZE);
    assert!(capped["@odata.nextLink"].is_string());
    let (status, _) = call(&sim, &token, Method::GET, &format!("{list}?$top=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let selected = get(&sim, &token, &format!("{list}?select=displayName&top=2")).await;
    let first = selected["value"][0].as_object().expect("an item");
    assert!(first.contains_key("displayName") && !first.contains_key("description"));
}

#[tokio::test]
async fn list_requests_expand_what_captures_use() {
    let sim = start(16, Knobs::default()).await;
    let token = token(&sim).await;
    let compliance = get(
        &sim,
        &token,
        "beta/deviceManagement/deviceCompliancePolicies?$expand=assignments,scheduledActionsForRule($expand=scheduledActionConfigurations)",
    )
    .await;
    for item in compliance["value"].as_array().expect("page") {
        assert!(item["assignments"].is_array(), "{item}");
        let actions = &item["scheduledActionsForRule"][0]["scheduledActionConfigurations"];
        assert!(actions.as_array().is_some_and(|a| !a.is_empty()), "{item}");
    }
    let catalog = get(
        &sim,
        &token,
        "beta/deviceManagement/configurationPolicies?$expand=settings",
    )
    .await;
    for item in catalog["value"].as_array().expect("page") {
        assert_eq!(
            item["settings"].as_array().map(Vec::len),
            item["settingCount"].as_u64().map(|n| n as usize)
        );
    }
    let plain = get(
        &sim,
        &token,
        "beta/deviceManagement/deviceCompliancePolicies",
    )
    .await;
    assert!(plain["value"][0].get("scheduledActionsForRule").is_none());
}

#[tokio::test]
async fn assignments_and_scope_tags_name_groups_filters_and_tags_that_exist() {
    let sim = start(200, Knobs::default()).await;
    let token = token(&sim).await;
    let ids = |body: Value| -> Vec<String> {
        body["value"]
            .as_array()
            .expect("page")
            .iter()
            .map(|v| v["id"].as_str().expect("id").to_owned())
            .collect()
    };
    let groups = ids(get(&sim, &token, "beta/groups").await);
    let filters = ids(get(&sim, &token, "beta/deviceManagement/assignmentFilters").await);
    let tags = ids(get(&sim, &token, "beta/deviceManagement/roleScopeTags").await);
    let (mut group_targets, mut filtered, mut tagged) = (0, 0, 0);
    for policy in sim.policies(TENANT) {
        for assignment in policy.assignments() {
            let target = &assignment["target"];
            if let Some(group) = target["groupId"].as_str() {
                assert!(groups.iter().any(|g| g == group), "{assignment}");
                group_targets += 1;
            }
            if let Some(filter) = target["deviceAndAppManagementAssignmentFilterId"].as_str() {
                assert!(filters.iter().any(|f| f == filter), "{assignment}");
                filtered += 1;
            }
        }
        let json = policy.to_json();
        for tag in json["roleScopeTagIds"].as_array().expect("tags") {
            assert!(tags.iter().any(|t| t == tag.as_str().unwrap_or_default()));
            tagged += 1;
        }
    }
    assert!(
        group_targets > 0 && filtered > 0 && tagged > 200,
        "the sweep saw each kind"
    );
    let group = get(&sim, &token, &format!("beta/groups/{}", groups[0])).await;
    assert_eq!(group["id"], json!(groups[0]));
    let (status, body) = call(&sim, &token, Method::GET, "beta/groups/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "ResourceNotFound");
}

#[tokio::test]
async fn the_request_log_records_method_path_and_query() {
    let sim = start(8, Knobs::default()).await;
    let token = token(&sim).await;
    let compliance = &sim.policies(TENANT)[2].id;
    let path = format!("beta/deviceManagement/deviceCompliancePolicies/{compliance}");
    get(&sim, &token, &format!("{path}?$expand=assignments")).await;
    call(&sim, &token, Method::PATCH, &path).await;
    // Over HTTP, as a test in another process reads it.
    let counters: SimCounters = reqwest::get(format!("{}/_sim/counters", sim.base_url))
        .await
        .expect("counters")
        .json()
        .await
        .expect("JSON");
    let graph: Vec<_> = counters.requests.iter().filter(|r| r.is_graph()).collect();
    assert_eq!(graph.len(), 2);
    assert_eq!(graph[0].method, "GET");
    assert_eq!(graph[0].path, format!("/{path}"));
    assert_eq!(
        graph[0].query_param("$expand").as_deref(),
        Some("assignments")
    );
    assert_eq!(graph[0].endpoint, "get:deviceCompliancePolicies");
    // An empty update changes nothing and is logged with its body.
    assert_eq!((graph[1].method.as_str(), graph[1].status), ("PATCH", 204));
    assert_eq!(graph[1].endpoint, "update:deviceCompliancePolicies");
    assert_eq!(graph[1].body, Some(json!({})));
    assert_eq!(counters.writes().len(), 1);
    assert_eq!(counters.requests[0].endpoint, "token");
    assert_eq!(counters.requests[0].method, "POST");
}

#[tokio::test]
async fn a_batch_answers_up_to_20_requests_each_counted_against_the_throttle() {
    let knobs = Knobs {
        throttle_limit: 3,
        throttle_window_ms: 60_000,
        ..Knobs::default()
    };
    let sim = start(8, knobs).await;
    let token = token(&sim).await;
    let policy = &sim.policies(TENANT)[1].id;
    let requests: Vec<Value> = (0..5)
        .map(|i| {
            json!({"id": i.to_string(), "method": "GET",
                "url": format!("/deviceManagement/deviceConfigurations/{policy}?$select=displayName")})
        })
        .collect();
    let batch = |requests: Vec<Value>| {
        reqwest::Client::new()
            .post(format!("{}/$batch", sim.graph_url))
            .bearer_auth(&token)
            .json(&json!({"requests": requests}))
            .send()
    };
    let answer: Value = batch(requests)
        .await
        .expect("batch")
        .json()
        .await
        .expect("JSON");
    let responses = answer["responses"].as_array().expect("responses");
    let statuses: Vec<u64> = responses
        .iter()
        .filter_map(|r| r["status"].as_u64())
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert_eq!(responses[0]["id"], "0");
    assert!(responses[0]["body"]["displayName"].is_string());
    assert!(responses[3]["headers"]["Retry-After"].is_string());
    let counters = sim.counters();
    assert_eq!(counters.graph_requests(), 5, "each inner request is logged");
    assert_eq!(counters.with_status(429), 2);

    let too_many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/groups"}))
        .collect();
    let refused = batch(too_many).await.expect("batch");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let (status, _) = call(&sim, &token, Method::GET, "beta/$batch").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

/// A write refused by the write throttle is not counted against the overall throttle either
/// (rejected requests do not count, as in Intune): after one accepted write and five refused
/// ones, nine more requests fit the overall limit of ten.
#[tokio::test]
async fn a_write_refused_by_the_write_throttle_leaves_the_overall_throttle_alone() {
    let knobs = Knobs {
        throttle_limit: 10,
        write_throttle_limit: 1,
        throttle_window_ms: 60_000,
        ..Knobs::default()
    };
    let sim = start(8, knobs).await;
    let token = token(&sim).await;
    let policy = sim
        .policies(TENANT)
        .into_iter()
        .find(|p| p.kind == Kind::DeviceConfiguration)
        .expect("a device configuration");
    let path = format!("beta/deviceManagement/deviceConfigurations/{}", policy.id);
    let current = sim.policy_json(TENANT, &policy.id).expect("policy");
    let body = json!({"@odata.type": current["@odata.type"], "description": "changed"});
    let mut writes = Vec::new();
    for _ in 0..6 {
        writes.push(send(&sim, &token, Method::PATCH, &path, &body).await.0);
    }
    assert_eq!(
        writes[0],
        StatusCode::NO_CONTENT,
        "the first write is accepted"
    );
    assert_eq!(writes[1..], [StatusCode::TOO_MANY_REQUESTS; 5]);
    for read in 0..9 {
        let (status, body) = call(&sim, &token, Method::GET, &path).await;
        assert_eq!(status, StatusCode::OK, "read {read}: {body}");
    }
    let (status, _) = call(&sim, &token, Method::GET, &path).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the eleventh accepted request is over the overall limit"
    );
}

#[tokio::test]
async fn the_openid_discovery_document_leads_to_a_working_token_endpoint() {
    let sim = start(8, Knobs::default()).await;
    let document: Value = reqwest::get(format!(
        "{}/{TENANT}/v2.0/.well-known/openid-configuration",
        sim.login_url
    ))
    .await
    .expect("discovery")
    .json()
    .await
    .expect("JSON");
    let endpoint = document["token_endpoint"].as_str().expect("token endpoint");
    assert_eq!(
        endpoint,
        format!("{}/{TENANT}/oauth2/v2.0/token", sim.login_url)
    );
    assert!(document["issuer"]
        .as_str()
        .is_some_and(|i| i.contains(TENANT)));
    let keys: Value = reqwest::get(document["jwks_uri"].as_str().expect("jwks"))
        .await
        .expect("keys")
        .json()
        .await
        .expect("JSON");
    assert!(keys["keys"].is_array());
    let answer = reqwest::Client::new()
        .post(endpoint)
        .form(&[
            ("client_id", "msal-client"),
            ("client_secret", "sim-secret"),
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn mutations_change_policies_and_move_their_version_and_time() {
    let sim = start(12, Knobs::default()).await;
    let token = token(&sim).await;
    let before = sim.policies(TENANT);
    let device = before
        .iter()
        .find(|p| p.kind == Kind::DeviceConfiguration)
        .expect("a device configuration");
    let others: Vec<String> = before
        .iter()
        .filter(|p| p.id != device.id)
        .map(|p| p.id.clone())
        .collect();
    let mut picks = vec![device.id.clone()];
    picks.extend(others.iter().take(3).cloned());
    let mutation = json!({"tenant": TENANT, "change_settings": 1, "rename": true,
        "add_assignment": true, "delete": true, "policies": picks});
    let report: Value = reqwest::Client::new()
        .post(format!("{}/_sim/mutate", sim.base_url))
        .json(&mutation)
        .send()
        .await
        .expect("mutate")
        .json()
        .await
        .expect("JSON");
    assert_eq!(report["settings_changed"], json!([device.id]));
    assert_eq!(report["renamed"]["id"], json!(picks[1]));
    assert_eq!(report["assignment_added"], json!(picks[2]));
    assert_eq!(report["deleted"], json!(picks[3]));

    let path = |kind: Kind, id: &str| format!("beta/deviceManagement/{}/{id}", kind.collection());
    let old = device.to_json();
    let new = get(&sim, &token, &path(Kind::DeviceConfiguration, &device.id)).await;
    assert_eq!(
        new["version"],
        json!(old["version"].as_u64().expect("version") + 1)
    );
    assert!(new["lastModifiedDateTime"].as_str() > old["lastModifiedDateTime"].as_str());
    let setting = if old.get("omaSettings").is_some() {
        "omaSettings"
    } else {
        "passwordMinimumLength"
    };
    assert_ne!(new[setting], old[setting], "a setting changed");

    let find = |id: &str| before.iter().find(|p| p.id == id).expect("policy").clone();
    let renamed = find(&picks[1]);
    let now = get(&sim, &token, &path(renamed.kind, &renamed.id)).await;
    let name_key = if renamed.kind == Kind::ConfigurationPolicy {
        "name"
    } else {
        "displayName"
    };
    assert_eq!(now[name_key], json!(format!("{} (renamed)", renamed.name)));
    assert!(
        now["lastModifiedDateTime"].as_str() > renamed.to_json()["lastModifiedDateTime"].as_str()
    );
    let assigned = find(&picks[2]);
    let assignments = get(
        &sim,
        &token,
        &format!("{}/assignments", path(assigned.kind, &assigned.id)),
    )
    .await;
    assert_eq!(
        assignments["value"].as_array().map(Vec::len),
        Some(assigned.assignment_count + 1)
    );
    let deleted = find(&picks[3]);
    let (status, _) = call(&sim, &token, Method::GET, &path(deleted.kind, &deleted.id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The same mutation on a fresh simulator gives the same tenant.
    let again = start(12, Knobs::default()).await;
    let replay: Mutation = serde_json::from_value(mutation).expect("the documented JSON");
    let report_again = serde_json::to_value(again.mutate(&replay)).expect("serializes");
    assert_eq!(report_again, report);
    assert_eq!(again.policies(TENANT), sim.policies(TENANT));
}

#[tokio::test]
async fn each_resource_asks_for_its_own_permission() {
    let sim = start(8, Knobs::default()).await;
    sim.set_app(
        TENANT,
        tenantatlas::graph_sim::AppSetup {
            missing_roles: vec!["Group.Read.All".into()],
            forbidden_collections: vec!["roleScopeTags".into()],
            ..Default::default()
        },
    );
    let token = token(&sim).await;
    for (path, expected) in [
        ("beta/groups", StatusCode::FORBIDDEN),
        ("beta/deviceManagement/roleScopeTags", StatusCode::FORBIDDEN),
        ("beta/deviceManagement/assignmentFilters", StatusCode::OK),
        ("beta/deviceManagement/deviceConfigurations", StatusCode::OK),
    ] {
        let (status, body) = call(&sim, &token, Method::GET, path).await;
        assert_eq!(status, expected, "{path}: {body}");
        if expected == StatusCode::FORBIDDEN {
            assert_eq!(body["error"]["code"], "Forbidden");
        }
    }
}
