//! The picker's and the run screens' server functions over HTTP: inventory search, filters,
//! paging and the in-set marker, tenant isolation, the Runs page's filters, run detail with its
//! paged items and a backup set's runs.

#![cfg(feature = "ssr")]

mod common;

use common::{
    backup_set, run_with_items, submit, TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY,
};
use serde_json::Value;
use sqlx::Row;

both_backends!(TestApp:
    lists_searches_filters_sorts_and_pages,
    marks_policies_already_in_the_set_and_leaves_them_out_of_select_all,
    another_tenants_policies_never_appear,
    run_detail_and_backup_set_runs_show_a_submitted_run,
    run_detail_is_403_for_outsiders_and_404_for_unknown_ids,
    runs_list_filters_by_status_and_operation_type,
    runs_list_refuses_unknown_filters_and_keeps_tenants_apart,
    runs_list_pages_back_with_before,
    run_detail_pages_its_items_with_totals_per_outcome,
    run_detail_refuses_invalid_paging,
);

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
    let tenant_id = common::tenant_id(&app.db, tenant).await;
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
    assert_eq!(run["target"]["kind"], "backup_set");
    assert_eq!(run["target"]["id"].to_string(), set);
    assert_eq!(run["target"]["name"], "Detail");
    assert_eq!(run["items"]["rows"].as_array().unwrap().len(), 3);
    assert_eq!(run["items"]["total"], 3);
    assert!(run["items"]["rows"][0]["policy_name"]
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
        pending["items"]["rows"].as_array().unwrap().len() as i64,
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

/// Moves a run to `status`, as the worker would have (counters are left alone).
async fn set_status(app: &TestApp, run_id: i64, status: &str) {
    sqlx::query("UPDATE runs SET status = $1 WHERE id = $2")
        .bind(status)
        .bind(run_id)
        .execute(app.db.pool())
        .await
        .unwrap();
}

/// Calls `runs/list` and returns the status and the body.
async fn runs_list(app: &TestApp, cookie: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = app.call_as(cookie, "runs/list", form).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn run_ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|run| run["id"].as_i64().unwrap())
        .collect()
}

async fn runs_list_filters_by_status_and_operation_type(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Filters").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 4).await;
    // Four runs with different selections (so none is reused), newest last.
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(submit(&app, &cookie, CONTOSO, &set, &ids[..=i]).await);
    }
    set_status(&app, runs[0], "completed").await;
    set_status(&app, runs[1], "failed").await;
    set_status(&app, runs[2], "running").await;
    // runs[3] stays pending.

    // A run of another operation type, written as a future service would.
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    let other: i64 = sqlx::query(
        "INSERT INTO runs (tenant_id, operation_type, resource, action, target_id, input, \
                           idempotency_key, status, total_items, created_at) \
         VALUES ($1, 'tenant.sync_inventory', 'tenant', 'sync_inventory', $1, '{}', 'other', \
                 'failed', 0, 1) RETURNING id",
    )
    .bind(tenant_id)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap();

    let (status, all) = runs_list(&app, &cookie, &[("tenant", CONTOSO)]).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        run_ids(&all),
        [runs[3], runs[2], runs[1], runs[0], other],
        "no filter: every run, newest first"
    );

    let readonly = app.sign_in(READONLY).await;
    let (status, failed) = runs_list(
        &app,
        &readonly,
        &[("tenant", CONTOSO), ("status", "failed")],
    )
    .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(run_ids(&failed), [runs[1], other]);
    assert!(failed
        .as_array()
        .unwrap()
        .iter()
        .all(|run| run["status"] == "Failed"));

    let (_, active) = runs_list(&app, &cookie, &[("tenant", CONTOSO), ("status", "active")]).await;
    assert_eq!(run_ids(&active), [runs[3], runs[2]], "queued and running");
    let (_, pending) =
        runs_list(&app, &cookie, &[("tenant", CONTOSO), ("status", "pending")]).await;
    assert_eq!(run_ids(&pending), [runs[3]]);
    let (_, cancelled) = runs_list(
        &app,
        &cookie,
        &[("tenant", CONTOSO), ("status", "cancelled")],
    )
    .await;
    assert_eq!(run_ids(&cancelled), Vec::<i64>::new());
    // The page takes its filters from the URL, so a filtered view can be linked.
    let html = app
        .get(
            Some(&cookie),
            &format!("/t/{CONTOSO}/runs?status=cancelled"),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("No runs match these filters"), "{html}");
    assert!(html.contains("Clear filters"), "{html}");

    let (_, add_policies) = runs_list(
        &app,
        &cookie,
        &[
            ("tenant", CONTOSO),
            ("operation_type", "backup_set.add_policies"),
        ],
    )
    .await;
    assert_eq!(run_ids(&add_policies), [runs[3], runs[2], runs[1], runs[0]]);
    let (_, both) = runs_list(
        &app,
        &cookie,
        &[
            ("tenant", CONTOSO),
            ("status", "failed"),
            ("operation_type", "backup_set.add_policies"),
        ],
    )
    .await;
    assert_eq!(run_ids(&both), [runs[1]]);
}

async fn runs_list_refuses_unknown_filters_and_keeps_tenants_apart(app: TestApp) {
    let contoso = app.sign_in(OPERATOR).await;
    let fabrikam = app.sign_in(OUTSIDER).await;
    let contoso_set = backup_set(&app, &contoso, CONTOSO, "Ours").await;
    let fabrikam_set = backup_set(&app, &fabrikam, FABRIKAM, "Theirs").await;
    let mine = common::insert_policies(&app.db, CONTOSO, 1).await;
    let theirs = common::insert_policies(&app.db, FABRIKAM, 1).await;
    let our_run = submit(&app, &contoso, CONTOSO, &contoso_set, &mine).await;
    let their_run = submit(&app, &fabrikam, FABRIKAM, &fabrikam_set, &theirs).await;
    set_status(&app, our_run, "failed").await;
    set_status(&app, their_run, "failed").await;

    // Unknown values are refused, not ignored: (status, operation type).
    for (status, operation_type) in [
        ("exploded", ""),
        ("Failed", ""),
        ("queued", ""),
        ("", "backup_set.delete"),
        ("failed", "' OR 1=1 --"),
    ] {
        let form = [
            ("tenant", CONTOSO),
            ("status", status),
            ("operation_type", operation_type),
        ];
        let (status, body) = runs_list(&app, &contoso, &form).await;
        assert_eq!(status, 422, "{form:?}: {body}");
        assert!(body.to_string().contains("Unknown"), "{body}");
    }

    let (_, failed) = runs_list(&app, &contoso, &[("tenant", CONTOSO), ("status", "failed")]).await;
    assert_eq!(run_ids(&failed), [our_run], "only this tenant's runs");
    let (_, failed) = runs_list(
        &app,
        &fabrikam,
        &[("tenant", FABRIKAM), ("status", "failed")],
    )
    .await;
    assert_eq!(run_ids(&failed), [their_run]);

    // A non-member is refused before the filter is looked at, with nothing in the answer.
    for status in ["failed", "exploded"] {
        let response = app
            .call_as(
                &fabrikam,
                "runs/list",
                &[("tenant", CONTOSO), ("status", status)],
            )
            .await;
        assert_eq!(response.status(), 403, "{status}");
        let body = response.text().await.unwrap();
        assert!(!body.contains("\"id\""), "no run in the answer: {body}");
    }
    let response = app
        .call("runs/list", &[("tenant", CONTOSO), ("status", "failed")])
        .await;
    assert_eq!(response.status(), 401);
}

/// Calls `runs/get` for run `id` of Contoso with extra fields and returns the status and body.
async fn get_run(app: &TestApp, cookie: &str, id: i64, extra: &[(&str, &str)]) -> (u16, Value) {
    let id = id.to_string();
    let mut form = vec![("tenant", CONTOSO), ("id", id.as_str())];
    form.extend_from_slice(extra);
    let response = app.call_as(cookie, "runs/get", &form).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn item_ids(run: &Value) -> Vec<i64> {
    run["items"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["policy_id"].as_i64().unwrap())
        .collect()
}

async fn run_detail_pages_its_items_with_totals_per_outcome(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let run = run_with_items(&app, &cookie, 250, 120, 30).await;

    let (status, first) = get_run(&app, &cookie, run, &[]).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["total_items"], 250);
    assert_eq!(first["items"]["total"], 250);
    assert_eq!(first["items"]["offset"], 0);
    assert_eq!(first["items"]["limit"], 100);
    assert_eq!(item_ids(&first).len(), 100);

    let (_, second) = get_run(&app, &cookie, run, &[("offset", "100")]).await;
    let (_, third) = get_run(&app, &cookie, run, &[("offset", "200")]).await;
    assert_eq!(item_ids(&second).len(), 100);
    assert_eq!(
        item_ids(&third).len(),
        50,
        "the third page holds the last 50"
    );
    assert_eq!(third["items"]["total"], 250);
    let mut all: Vec<i64> = [&first, &second, &third]
        .iter()
        .flat_map(|page| item_ids(page))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 250, "pages neither overlap nor skip items");
    // Pages follow the policy names.
    let names = |page: &Value| -> Vec<String> {
        page["items"]["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["policy_name"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut in_order = names(&first);
    in_order.extend(names(&second));
    in_order.extend(names(&third));
    let mut sorted = in_order.clone();
    sorted.sort();
    assert_eq!(in_order, sorted);

    // The outcome filter and paging together; totals count the filtered items.
    let (_, succeeded) = get_run(
        &app,
        &cookie,
        run,
        &[("outcome", "succeeded"), ("offset", "100")],
    )
    .await;
    assert_eq!(succeeded["items"]["total"], 120);
    assert_eq!(item_ids(&succeeded).len(), 20);
    assert!(succeeded["items"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|item| item["outcome"] == "succeeded"));
    let (_, failed) = get_run(
        &app,
        &cookie,
        run,
        &[("outcome", "failed"), ("limit", "25")],
    )
    .await;
    assert_eq!(failed["items"]["total"], 30);
    assert_eq!(failed["items"]["limit"], 25);
    assert_eq!(item_ids(&failed).len(), 25);
    // The page reads the filter and the one-based page from its URL and links the neighbours.
    let html = app
        .get(
            Some(&cookie),
            &format!("/t/{CONTOSO}/runs/{run}?outcome=succeeded&page=2"),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Showing 101–120 of 120"), "{html}");
    assert!(
        html.contains(&format!(
            "href=\"/t/{CONTOSO}/runs/{run}?outcome=succeeded\""
        )),
        "a link back to the first page: {html}"
    );
    let (_, waiting) = get_run(&app, &cookie, run, &[("outcome", "pending")]).await;
    assert_eq!(waiting["items"]["total"], 100);
    assert_eq!(waiting["failed"], 30, "counters are the whole run's");

    // Past the end answers the last page (a filtered page can empty while the run is polled).
    let (status, past) = get_run(&app, &cookie, run, &[("offset", "1000")]).await;
    assert_eq!(status, 200);
    assert_eq!(past["items"]["offset"], 200);
    assert_eq!(item_ids(&past).len(), 50);
    let (_, skipped) = get_run(
        &app,
        &cookie,
        run,
        &[("outcome", "skipped"), ("offset", "100")],
    )
    .await;
    assert_eq!(skipped["items"]["total"], 0);
    assert_eq!(skipped["items"]["offset"], 0);
    assert!(item_ids(&skipped).is_empty());
}

async fn run_detail_refuses_invalid_paging(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let run = run_with_items(&app, &cookie, 3, 1, 0).await;
    for extra in [
        [("offset", "-1"), ("limit", "0")],
        [("offset", "0"), ("limit", "-1")],
        [("offset", "0"), ("limit", "501")],
    ] {
        let (status, body) = get_run(&app, &cookie, run, &extra).await;
        assert_eq!(status, 422, "{extra:?}: {body}");
    }
    let (status, most) = get_run(&app, &cookie, run, &[("limit", "500")]).await;
    assert_eq!(status, 200);
    assert_eq!(item_ids(&most).len(), 3);
    // A non-member learns nothing, whatever the paging.
    let outsider = app.sign_in(OUTSIDER).await;
    let (status, _) = get_run(&app, &outsider, run, &[("offset", "-1")]).await;
    assert_eq!(status, 403);
}

/// Inserts `n` finished runs of Contoso, one millisecond apart (two share each timestamp, so the
/// id breaks ties), oldest first; returns their ids.
async fn insert_runs(app: &TestApp, tenant: &str, n: i64) -> Vec<i64> {
    let tenant_id = common::tenant_id(&app.db, tenant).await;
    let mut ids = Vec::new();
    for i in 0..n {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO runs (tenant_id, operation_type, resource, action, target_id, input, \
                               idempotency_key, status, total_items, created_at) \
             VALUES ($1, 'backup_set.add_policies', 'backup_set', 'add_policies', 0, '{}', $2, \
                     'completed', 0, $3) RETURNING id",
        )
        .bind(tenant_id)
        .bind(format!("paging-{tenant}-{i}"))
        .bind(1_000 + i / 2)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

async fn runs_list_pages_back_with_before(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let mut ids = insert_runs(&app, CONTOSO, 150).await;
    ids.reverse(); // newest first, as the list shows them
    let (status, first) = runs_list(&app, &cookie, &[("tenant", CONTOSO)]).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(run_ids(&first), ids[..100]);

    let last = ids[99].to_string();
    let (status, second) =
        runs_list(&app, &cookie, &[("tenant", CONTOSO), ("before", &last)]).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        run_ids(&second),
        ids[100..],
        "the older 50, no overlap, no gap"
    );

    // Paging keeps the filters: no failed run is older than anything.
    let (_, filtered) = runs_list(
        &app,
        &cookie,
        &[("tenant", CONTOSO), ("status", "failed"), ("before", &last)],
    )
    .await;
    assert_eq!(run_ids(&filtered), Vec::<i64>::new());

    // Another tenant's run id as the cursor shows nothing of either tenant.
    let fabrikam = insert_runs(&app, FABRIKAM, 1).await;
    let (status, foreign) = runs_list(
        &app,
        &cookie,
        &[("tenant", CONTOSO), ("before", &fabrikam[0].to_string())],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(run_ids(&foreign), Vec::<i64>::new());

    let (status, body) = runs_list(&app, &cookie, &[("tenant", CONTOSO), ("before", "-1")]).await;
    assert_eq!(status, 422, "{body}");

    // The page links to the older runs and back to the newest.
    let html = app
        .get(Some(&cookie), &format!("/t/{CONTOSO}/runs"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains(&format!("?before={}", ids[99])), "older link");
    let html = app
        .get(
            Some(&cookie),
            &format!("/t/{CONTOSO}/runs?before={}", ids[99]),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("Newest runs"));
    assert!(
        !html.contains("Older runs"),
        "the last page has no older link"
    );
}
