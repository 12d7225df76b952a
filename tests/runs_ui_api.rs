//! The picker's and the run screens' server functions over HTTP: inventory search, filters,
//! paging and the in-set marker, tenant isolation, run detail and a backup set's runs.

#![cfg(feature = "ssr")]

mod common;

use common::{TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY};
use serde_json::Value;
use sqlx::Row;

both_backends!(TestApp:
    lists_searches_filters_sorts_and_pages,
    marks_policies_already_in_the_set_and_leaves_them_out_of_select_all,
    another_tenants_policies_never_appear,
    run_detail_and_backup_set_runs_show_a_submitted_run,
    run_detail_is_403_for_outsiders_and_404_for_unknown_ids,
);

/// Creates a backup set in `tenant` as `cookie` and returns its id.
async fn backup_set(app: &TestApp, cookie: &str, tenant: &str, name: &str) -> String {
    let form = [("tenant", tenant), ("name", name), ("description", "")];
    let response = app.call_as(cookie, "backup-sets/create", &form).await;
    assert_eq!(response.status(), 200);
    let created: Value = response.json().await.unwrap();
    created["id"].as_i64().unwrap().to_string()
}

/// Calls `policies/list` and returns the status and the body.
async fn list(app: &TestApp, cookie: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = app.call_as(cookie, "policies/list", form).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn names(page: &Value) -> Vec<String> {
    page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["display_name"].as_str().unwrap().to_owned())
        .collect()
}

/// Puts a policy into a backup set directly (as a finished run would have).
async fn add_to_set(app: &TestApp, tenant: &str, set_id: &str, policy_id: i64) {
    let tenant_id: i64 = sqlx::query("SELECT id FROM tenants WHERE external_id = $1")
        .bind(tenant)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
        .try_get("id")
        .unwrap();
    let snapshot: i64 = sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         VALUES ($1, $2, $3, '{}', 0) RETURNING id",
    )
    .bind(tenant_id)
    .bind(policy_id)
    .bind(format!("hash-{policy_id}"))
    .fetch_one(app.db.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap();
    sqlx::query(
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         VALUES ($1, $2, $3, $4, 0)",
    )
    .bind(tenant_id)
    .bind(set_id.parse::<i64>().unwrap())
    .bind(policy_id)
    .bind(snapshot)
    .execute(app.db.pool())
    .await
    .unwrap();
}

async fn lists_searches_filters_sorts_and_pages(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Picker").await;
    common::insert_policies(&app.db, CONTOSO, 60).await;
    let base = [("tenant", CONTOSO), ("backup_set_id", set.as_str())];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut form: Vec<(&str, &str)> = base.to_vec();
        form.extend_from_slice(extra);
        form
    };

    let (status, first) = list(&app, &cookie, &with(&[("search", "TEST POLICY")])).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["total"], 60);
    assert_eq!(first["page_size"], 50);
    assert_eq!(first["rows"].as_array().unwrap().len(), 50);
    assert!(first["platforms"]
        .as_array()
        .unwrap()
        .contains(&Value::from("android")));

    let (_, second) = list(
        &app,
        &cookie,
        &with(&[("search", "test policy"), ("page", "1")]),
    )
    .await;
    assert_eq!(second["page"], 1);
    assert_eq!(second["rows"].as_array().unwrap().len(), 10);
    let mut all = names(&first);
    all.extend(names(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60, "pages neither overlap nor skip rows");

    // A page past the end answers the last page instead of an empty one.
    let (_, past) = list(
        &app,
        &cookie,
        &with(&[("search", "test policy"), ("page", "99")]),
    )
    .await;
    assert_eq!(past["page"], 1);

    let (_, some) = list(&app, &cookie, &with(&[("search", "policy 5")])).await;
    assert_eq!(some["total"], 11, "Test policy 5 and 50–59");

    // Wildcards are literal text.
    for wildcard in ["test%", "test_policy", "%"] {
        let (status, none) = list(&app, &cookie, &with(&[("search", wildcard)])).await;
        assert_eq!(status, 200);
        assert_eq!(none["total"], 0, "{wildcard:?} is not a wildcard");
    }

    let (_, by_type) = list(
        &app,
        &cookie,
        &with(&[
            ("search", "test policy"),
            ("policy_type", "settings_catalog"),
        ]),
    )
    .await;
    assert_eq!(by_type["total"], 0);
    let (_, by_platform) = list(
        &app,
        &cookie,
        &with(&[
            ("search", "test policy"),
            ("policy_type", "compliance"),
            ("platform", "android"),
        ]),
    )
    .await;
    assert_eq!(by_platform["total"], 60);

    let (_, descending) = list(
        &app,
        &cookie,
        &with(&[("search", "test policy"), ("sort", "-name")]),
    )
    .await;
    assert_eq!(names(&descending)[0], "Test policy 9");
    let (_, ascending) = list(
        &app,
        &cookie,
        &with(&[("search", "test policy"), ("sort", "nonsense")]),
    )
    .await;
    assert_eq!(names(&ascending)[0], "Test policy 0");

    // Readonly members may look (they cannot add).
    let readonly = app.sign_in(READONLY).await;
    let (status, _) = list(&app, &readonly, &with(&[])).await;
    assert_eq!(status, 200);
}

async fn marks_policies_already_in_the_set_and_leaves_them_out_of_select_all(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Marked").await;
    let other = backup_set(&app, &cookie, CONTOSO, "Other").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 5).await;
    add_to_set(&app, CONTOSO, &set, ids[0]).await;
    add_to_set(&app, CONTOSO, &other, ids[1]).await;

    let form = [
        ("tenant", CONTOSO),
        ("backup_set_id", set.as_str()),
        ("search", "test policy"),
    ];
    let (_, page) = list(&app, &cookie, &form).await;
    let in_set: Vec<i64> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["in_set"] == true)
        .map(|row| row["id"].as_i64().unwrap())
        .collect();
    assert_eq!(in_set, [ids[0]], "only the policy in this set is marked");

    let response = app.call_as(&cookie, "policies/matching-ids", &form).await;
    assert_eq!(response.status(), 200);
    let matching: Value = response.json().await.unwrap();
    let mut got: Vec<i64> = matching["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, ids[1..]);
    assert_eq!(matching["truncated"], false);
}

async fn another_tenants_policies_never_appear(app: TestApp) {
    let contoso = app.sign_in(OPERATOR).await;
    let fabrikam = app.sign_in(OUTSIDER).await;
    let contoso_set = backup_set(&app, &contoso, CONTOSO, "Mine").await;
    let fabrikam_set = backup_set(&app, &fabrikam, FABRIKAM, "Theirs").await;
    let mine = common::insert_policies(&app.db, CONTOSO, 3).await;
    let theirs = common::insert_policies(&app.db, FABRIKAM, 3).await;

    let form = [
        ("tenant", CONTOSO),
        ("backup_set_id", contoso_set.as_str()),
        ("search", "test policy"),
    ];
    let (_, page) = list(&app, &contoso, &form).await;
    let ids: Vec<i64> = page["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_i64().unwrap())
        .collect();
    assert_eq!(page["total"], 3);
    assert!(ids
        .iter()
        .all(|id| mine.contains(id) && !theirs.contains(id)));
    let matching: Value = app
        .call_as(&contoso, "policies/matching-ids", &form)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(matching["ids"].as_array().unwrap().len(), 3);

    // A member of Fabrikam only is refused Contoso's inventory, with nothing in the answer.
    for endpoint in ["policies/list", "policies/matching-ids"] {
        let response = app.call_as(&fabrikam, endpoint, &form).await;
        assert_eq!(response.status(), 403, "{endpoint}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("Test policy"), "{endpoint} leaked: {body}");
    }

    // Another tenant's backup set id is unknown here.
    let cross = [
        ("tenant", CONTOSO),
        ("backup_set_id", fabrikam_set.as_str()),
    ];
    let (status, _) = list(&app, &contoso, &cross).await;
    assert_eq!(status, 404);
}

async fn run_detail_and_backup_set_runs_show_a_submitted_run(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Detail").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 3).await;
    let id_texts: Vec<String> = ids.iter().map(i64::to_string).collect();
    let keys: Vec<String> = (0..ids.len()).map(|i| format!("policy_ids[{i}]")).collect();
    let mut form: Vec<(&str, &str)> = vec![("tenant", CONTOSO), ("backup_set_id", set.as_str())];
    form.extend(
        keys.iter()
            .map(String::as_str)
            .zip(id_texts.iter().map(String::as_str)),
    );
    let response = app.call_as(&cookie, "runs/add-policies", &form).await;
    assert_eq!(response.status(), 200);
    let submitted: Value = response.json().await.unwrap();
    let run_id = submitted["run_id"].as_i64().unwrap().to_string();

    let response = app
        .call_as(
            &cookie,
            "runs/get",
            &[("tenant", CONTOSO), ("id", run_id.as_str())],
        )
        .await;
    assert_eq!(response.status(), 200);
    let run: Value = response.json().await.unwrap();
    assert_eq!(run["total_items"], 3);
    assert_eq!(run["initiated_by"], "Oli Operator");
    assert_eq!(run["backup_set_id"].to_string(), set);
    assert_eq!(run["backup_set_name"], "Detail");
    assert_eq!(run["items"].as_array().unwrap().len(), 3);
    assert!(run["items"][0]["policy_name"]
        .as_str()
        .unwrap()
        .starts_with("Test policy"));

    // The filter keeps only items with that outcome; an unknown outcome is a 422.
    let processed = run["processed_items"].as_i64().unwrap();
    let pending: Value = app
        .call_as(
            &cookie,
            "runs/get",
            &[
                ("tenant", CONTOSO),
                ("id", run_id.as_str()),
                ("outcome", "pending"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        pending["items"].as_array().unwrap().len() as i64,
        3 - processed
    );
    let response = app
        .call_as(
            &cookie,
            "runs/get",
            &[
                ("tenant", CONTOSO),
                ("id", run_id.as_str()),
                ("outcome", "exploded"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);

    let readonly = app.sign_in(READONLY).await;
    let response = app
        .call_as(
            &readonly,
            "runs/for-backup-set",
            &[("tenant", CONTOSO), ("backup_set_id", set.as_str())],
        )
        .await;
    assert_eq!(response.status(), 200);
    let runs: Vec<Value> = response.json().await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["id"].to_string(), run_id);

    let empty = backup_set(&app, &cookie, CONTOSO, "Nothing yet").await;
    let runs: Vec<Value> = app
        .call_as(
            &cookie,
            "runs/for-backup-set",
            &[("tenant", CONTOSO), ("backup_set_id", empty.as_str())],
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(runs.is_empty());
}

async fn run_detail_is_403_for_outsiders_and_404_for_unknown_ids(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Secret").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 1).await;
    let id = ids[0].to_string();
    let form = [
        ("tenant", CONTOSO),
        ("backup_set_id", set.as_str()),
        ("policy_ids[0]", id.as_str()),
    ];
    let submitted: Value = app
        .call_as(&cookie, "runs/add-policies", &form)
        .await
        .json()
        .await
        .unwrap();
    let run_id = submitted["run_id"].as_i64().unwrap().to_string();

    let outsider = app.sign_in(OUTSIDER).await;
    let response = app
        .call_as(
            &outsider,
            "runs/get",
            &[("tenant", CONTOSO), ("id", run_id.as_str())],
        )
        .await;
    assert_eq!(response.status(), 403);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("Secret") && !body.contains("Test policy"),
        "{body}"
    );
    // Asking for Contoso's run through the outsider's own tenant finds nothing.
    let response = app
        .call_as(
            &outsider,
            "runs/get",
            &[("tenant", FABRIKAM), ("id", run_id.as_str())],
        )
        .await;
    assert_eq!(response.status(), 404);
    let response = app
        .call_as(
            &outsider,
            "runs/for-backup-set",
            &[("tenant", CONTOSO), ("backup_set_id", set.as_str())],
        )
        .await;
    assert_eq!(response.status(), 403);

    let response = app
        .call_as(
            &cookie,
            "runs/get",
            &[("tenant", CONTOSO), ("id", "999999")],
        )
        .await;
    assert_eq!(response.status(), 404);
    let response = app
        .call("runs/get", &[("tenant", CONTOSO), ("id", run_id.as_str())])
        .await;
    assert_eq!(response.status(), 401);
}
