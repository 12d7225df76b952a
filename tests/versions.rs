//! A policy's versions through the real server: the policy page, the version viewer, the raw
//! JSON download, the diff of two stored versions and the inventory, with tenant isolation.

use crate::common;

use common::{
    insert_policies, insert_snapshot, Answer, Form, TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER,
    READONLY,
};
use serde_json::{json, Value};
use tenantatlas::domain::snapshot::{ChangeKind, RowValue};
use tenantatlas::domain::versions::{SetLink, VersionDiff};
use tenantatlas::domain::PolicyType;

both_backends!(TestApp:
    policy_page_lists_versions_newest_first,
    viewer_reads_settings_and_serves_raw_json,
    diff_shows_the_changed_setting,
    non_members_are_refused,
    foreign_or_bad_versions_are_not_found,
    inventory_searches_and_filters,
    inventory_sorts_and_filters_by_platform_as_the_picker,
    a_long_history_answers_its_newest_versions,
);

fn payload(min_length: i64) -> Value {
    json!({
        "policyType": "compliance",
        "policy": {
            "@odata.type": "#microsoft.graph.windows10CompliancePolicy",
            "id": "c0ffee",
            "displayName": "Test policy 0",
            "passwordRequired": true,
            "passwordMinimumLength": min_length
        }
    })
}

/// A Contoso policy with two versions (minimum length 8, then 12); the older one is held by a
/// backup set. Returns (policy id, older version, newer version, backup set id).
async fn two_versions(app: &TestApp) -> (i64, i64, i64, i64) {
    let policy = insert_policies(&app.db, CONTOSO, 1).await[0];
    let old = insert_snapshot(&app.db, CONTOSO, policy, &payload(8), 'a', 1_000).await;
    let new = insert_snapshot(&app.db, CONTOSO, policy, &payload(12), 'b', 2_000).await;
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(app, &operator, CONTOSO, "Baseline").await;
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    sqlx::query(
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         VALUES ($1, $2, $3, $4, 1000)",
    )
    .bind(tenant_id)
    .bind(set)
    .bind(policy)
    .bind(old)
    .execute(app.db.pool())
    .await
    .unwrap();
    (policy, old, new, set)
}

async fn page(app: &TestApp, cookie: &str, path: &str) -> (u16, String) {
    let response = app.get(Some(cookie), path).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Checks a non-member's answer from `endpoint`: refused (403), naming no policy.
fn refused<T: std::fmt::Debug>(endpoint: &str, answer: Answer<T>) {
    let refusal = answer.expect_err(endpoint);
    assert_eq!(refusal.status, 403, "{endpoint}: {}", refusal.body);
    assert!(!refusal.body.contains("Test policy"), "{endpoint} leaked");
}

async fn policy_page_lists_versions_newest_first(app: TestApp) {
    let (policy, old, new, set) = two_versions(&app).await;
    let reader = app.sign_in(READONLY).await;
    let info = app
        .policy(&reader, CONTOSO, policy)
        .await
        .expect("the policy");
    assert_eq!(info.display_name, "Test policy 0");
    assert_eq!(info.policy_type, PolicyType::Compliance);
    let versions = app
        .policy_versions(&reader, CONTOSO, policy)
        .await
        .expect("the versions");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].id, new);
    assert_eq!(versions[0].previous_id, Some(old));
    assert_eq!(versions[0].backup_sets, []);
    assert_eq!(versions[1].id, old);
    assert_eq!(versions[1].previous_id, None);
    assert_eq!(
        versions[1].backup_sets[0],
        SetLink {
            id: set,
            name: "Baseline".to_owned()
        }
    );

    let (status, html) = page(&app, &reader, &format!("/t/{CONTOSO}/policies/{policy}")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Test policy 0"), "{html}");
    assert!(
        html.contains(&format!(">{}<", "b".repeat(12))),
        "the short hash: {html}"
    );
    assert!(
        html.contains(&format!(
            "/t/{CONTOSO}/policies/{policy}/diff?from={old}&amp;to={new}"
        )) || html.contains(&format!(
            "/t/{CONTOSO}/policies/{policy}/diff?from={old}&to={new}"
        ))
    );
    assert!(html.contains(&format!("/t/{CONTOSO}/backup-sets/{set}")));
    // A reader may not compare with Intune: each button names the reason, which is shown once
    // as text (a disabled button's tooltip is never read).
    assert!(
        html.contains(r#"aria-describedby="compare-needs-role""#),
        "{html}"
    );
    assert!(html.contains(r#"id="compare-needs-role""#), "{html}");
    let operator = app.sign_in(OPERATOR).await;
    let (_, html) = page(&app, &operator, &format!("/t/{CONTOSO}/policies/{policy}")).await;
    assert!(!html.contains("compare-needs-role"), "{html}");
    // The backup set's item list links to the policy page.
    let (_, set_html) = page(&app, &reader, &format!("/t/{CONTOSO}/backup-sets/{set}")).await;
    assert!(
        set_html.contains(&format!("/t/{CONTOSO}/policies/{policy}\"")),
        "{set_html}"
    );
}

async fn viewer_reads_settings_and_serves_raw_json(app: TestApp) {
    let (policy, old, _, _) = two_versions(&app).await;
    let reader = app.sign_in(READONLY).await;
    let view = app
        .policy_version(&reader, CONTOSO, policy, old)
        .await
        .expect("the version");
    let min = view
        .readable
        .rows()
        .find(|r| r.label == "Password minimum length")
        .expect("a readable label");
    assert_eq!(min.value, RowValue::Text("8".to_owned()));
    assert!(view.raw_json.contains("\"passwordMinimumLength\": 8"));

    let path = format!("/t/{CONTOSO}/policies/{policy}/versions/{old}");
    let (status, html) = page(&app, &reader, &path).await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Password minimum length") && html.contains("Raw JSON"),
        "{html}"
    );

    let response = app.get(Some(&reader), &format!("{path}/raw.json")).await;
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment"), "{disposition}");
    let downloaded: Value = response.json().await.unwrap();
    assert_eq!(downloaded, payload(8));
}

async fn diff_shows_the_changed_setting(app: TestApp) {
    let (policy, old, new, _) = two_versions(&app).await;
    let reader = app.sign_in(READONLY).await;
    let diff = app
        .policy_diff(&reader, CONTOSO, policy, old, new)
        .await
        .expect("the comparison");
    let changes = &diff.comparison.changes;
    assert_eq!(changes.len(), 1, "{diff:?}");
    let change = &changes[0];
    assert_eq!(change.kind, ChangeKind::Changed);
    assert!(change
        .labels
        .iter()
        .any(|label| label.contains("Password minimum length")));
    assert_eq!(change.old.as_ref().map(|v| v.text.as_str()), Some("8"));
    assert_eq!(change.new.as_ref().map(|v| v.text.as_str()), Some("12"));

    let (status, html) = page(
        &app,
        &reader,
        &format!("/t/{CONTOSO}/policies/{policy}/diff?from={old}&to={new}"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains("Password minimum length") && html.contains(">12<"),
        "{html}"
    );
    assert!(!html.contains("No differences"));
    let (_, same) = page(
        &app,
        &reader,
        &format!("/t/{CONTOSO}/policies/{policy}/diff?from={old}&to={old}"),
    )
    .await;
    assert!(same.contains("No differences"), "{same}");
}

async fn non_members_are_refused(app: TestApp) {
    let (policy, old, new, _) = two_versions(&app).await;
    let outsider = app.sign_in(OUTSIDER).await;
    refused("policies/get", app.policy(&outsider, CONTOSO, policy).await);
    refused(
        "policies/versions",
        app.policy_versions(&outsider, CONTOSO, policy).await,
    );
    refused(
        "policies/version",
        app.policy_version(&outsider, CONTOSO, policy, old).await,
    );
    refused(
        "policies/diff",
        app.policy_diff(&outsider, CONTOSO, policy, old, new).await,
    );
    refused(
        "policies/inventory",
        app.policy_inventory(&outsider, CONTOSO, &[]).await,
    );
    for path in [
        format!("/t/{CONTOSO}/policies"),
        format!("/t/{CONTOSO}/policies/{policy}"),
        format!("/t/{CONTOSO}/policies/{policy}/versions/{old}"),
        format!("/t/{CONTOSO}/policies/{policy}/versions/{old}/raw.json"),
        format!("/t/{CONTOSO}/policies/{policy}/diff?from={old}&to={new}"),
    ] {
        let (status, body) = page(&app, &outsider, &path).await;
        assert_eq!(status, 403, "{path}");
        assert!(
            !body.contains("Test policy") && !body.contains("passwordMinimumLength"),
            "{path} leaked"
        );
    }
    // Anonymous: sent to sign in, also for the download.
    let response = app
        .get(
            None,
            &format!("/t/{CONTOSO}/policies/{policy}/versions/{old}/raw.json"),
        )
        .await;
    assert!(response.status().is_redirection());
}

async fn foreign_or_bad_versions_are_not_found(app: TestApp) {
    let (policy, old, _, _) = two_versions(&app).await;
    // Another Contoso policy's version, and a Fabrikam policy's version.
    let other = insert_policies(&app.db, CONTOSO, 1).await[0];
    let other_version = insert_snapshot(&app.db, CONTOSO, other, &payload(4), 'c', 3_000).await;
    let foreign_policy = insert_policies(&app.db, FABRIKAM, 1).await[0];
    let foreign = insert_snapshot(&app.db, FABRIKAM, foreign_policy, &payload(5), 'd', 3_000).await;
    let reader = app.sign_in(READONLY).await;
    for version in [other_version, foreign, 999999] {
        let refusal = app
            .policy_version(&reader, CONTOSO, policy, version)
            .await
            .expect_err("not this policy's version");
        assert_eq!(refusal.status, 404, "{version}: {}", refusal.body);
        assert!(!refusal.body.contains("\"passwordMinimumLength\""));
        let refusal = app
            .policy_diff(&reader, CONTOSO, policy, old, version)
            .await
            .expect_err("not this policy's version");
        assert_eq!(refusal.status, 404, "{version}: {}", refusal.body);
        let path = format!("/t/{CONTOSO}/policies/{policy}/versions/{version}/raw.json");
        assert_eq!(app.get(Some(&reader), &path).await.status(), 404, "{path}");
    }
    // The Fabrikam policy itself, through Contoso's URL.
    let refusal = app
        .policy(&reader, CONTOSO, foreign_policy)
        .await
        .expect_err("another tenant's policy");
    assert_eq!(refusal.status, 404);
    // Not numbers: a client error with a reason, never a 500.
    let form = Form::tenant(CONTOSO)
        .field("id", policy)
        .field("from", "x")
        .field("to", old);
    let refusal = app
        .answer::<VersionDiff>(Some(&reader), "policies/diff", &form)
        .await
        .expect_err("`from` is not a number");
    assert!(refusal.status.is_client_error(), "{refusal:?}");
    let path = format!("/t/{CONTOSO}/policies/{policy}/versions/abc/raw.json");
    assert_eq!(app.get(Some(&reader), &path).await.status(), 404);
    let (status, _) = page(
        &app,
        &reader,
        &format!("/t/{CONTOSO}/policies/{policy}/diff?from=x"),
    )
    .await;
    assert!(status < 500);
}

async fn inventory_searches_and_filters(app: TestApp) {
    let ids = insert_policies(&app.db, CONTOSO, 3).await;
    let reader = app.sign_in(READONLY).await;
    let search = [("search", "test policy 1"), ("policy_type", "compliance")];
    let found = app
        .policy_inventory(&reader, CONTOSO, &search)
        .await
        .expect("the inventory");
    assert!(found.rows.iter().any(|r| r.id == ids[1]));
    assert!(found
        .rows
        .iter()
        .all(|r| r.display_name.to_lowercase().contains("test policy 1")));
    let other_type = [
        ("search", "test policy 1"),
        ("policy_type", "settings_catalog"),
    ];
    let none = app
        .policy_inventory(&reader, CONTOSO, &other_type)
        .await
        .expect("the inventory");
    assert_eq!(none.total, 0);
    // A type that is no type: refused with the ones there are, by the function and the page.
    let refusal = app
        .policy_inventory(&reader, CONTOSO, &[("policy_type", "bogus")])
        .await
        .expect_err("an unknown type");
    assert_eq!(refusal.status, 422, "{}", refusal.body);
    let (status, html) = page(&app, &reader, &format!("/t/{CONTOSO}/policies?type=bogus")).await;
    assert_eq!(status, 422);
    assert!(html.contains("Unknown policy type"), "{html}");
    let (status, html) = page(
        &app,
        &reader,
        &format!("/t/{CONTOSO}/policies?search=Test+policy+1"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("/t/{CONTOSO}/policies/{}\"", ids[1])),
        "{html}"
    );
}

/// A policy with more versions than one read answers (`VERSIONS_SHOWN`): the newest of them,
/// newest first; the oldest shown still names its predecessor (which stays readable by id),
/// and backup sets are named for the versions shown.
async fn a_long_history_answers_its_newest_versions(app: TestApp) {
    use tenantatlas::server::versions::VERSIONS_SHOWN;
    let policy = insert_policies(&app.db, CONTOSO, 1).await[0];
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    let mut ids = Vec::new();
    for i in 0..=VERSIONS_SHOWN {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(tenant)
        .bind(policy)
        .bind(format!("{i:064}"))
        .bind(payload(i).to_string())
        .bind(1_000 + i)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        ids.push(id);
    }
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "History").await;
    sqlx::query(
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         VALUES ($1, $2, $3, $4, 0)",
    )
    .bind(tenant)
    .bind(set)
    .bind(policy)
    .bind(*ids.last().unwrap())
    .execute(app.db.pool())
    .await
    .unwrap();
    let reader = app.sign_in(READONLY).await;
    let versions = app
        .policy_versions(&reader, CONTOSO, policy)
        .await
        .expect("the versions");
    assert_eq!(versions.len() as i64, VERSIONS_SHOWN);
    let shown: Vec<i64> = versions.iter().map(|v| v.id).collect();
    let newest: Vec<i64> = ids
        .iter()
        .rev()
        .take(VERSIONS_SHOWN as usize)
        .copied()
        .collect();
    assert_eq!(shown, newest, "the newest, newest first");
    assert_eq!(versions.last().unwrap().previous_id, Some(ids[0]));
    assert_eq!(versions[0].backup_sets.len(), 1);
    assert!(versions[0].current, "the newest is current");
    assert_eq!(versions.iter().filter(|v| v.current).count(), 1);
    app.policy_version(&reader, CONTOSO, policy, ids[0])
        .await
        .expect("the oldest is still readable");
}

async fn inventory_sorts_and_filters_by_platform_as_the_picker(app: TestApp) {
    let ids = insert_policies(&app.db, CONTOSO, 3).await;
    // Modified in the order 1, 0, 2; policy 1 is the one Windows policy.
    for (id, modified) in [(ids[0], 2_000), (ids[1], 1_000), (ids[2], 3_000)] {
        sqlx::query("UPDATE policies SET last_modified_at = $1 WHERE id = $2")
            .bind(modified)
            .bind(id)
            .execute(app.db.pool())
            .await
            .unwrap();
    }
    sqlx::query("UPDATE policies SET platform = 'windows10' WHERE id = $1")
        .bind(ids[1])
        .execute(app.db.pool())
        .await
        .unwrap();
    let reader = app.sign_in(READONLY).await;
    let listed = |filters: &'static [(&'static str, &'static str)]| {
        let (app, reader) = (&app, &reader);
        async move {
            let page = app
                .policy_inventory(reader, CONTOSO, filters)
                .await
                .expect("the inventory");
            (page.rows.iter().map(|r| r.id).collect::<Vec<_>>(), page)
        }
    };
    let (newest_first, inventory) = listed(&[("sort", "-modified")]).await;
    assert_eq!(newest_first, vec![ids[2], ids[0], ids[1]]);
    assert_eq!(inventory.platforms, vec!["android", "windows10"]);
    let (by_name_descending, _) = listed(&[("sort", "-name")]).await;
    assert_eq!(by_name_descending, vec![ids[2], ids[1], ids[0]]);
    let (windows, inventory) = listed(&[("platform", "windows10")]).await;
    assert_eq!((windows, inventory.total), (vec![ids[1]], 1));

    // A sort or platform that is none: refused with the ones there are, by the function and
    // the page. A search with a control character is refused as the picker's is (SQLite's LIKE
    // stops at a NUL, so `%\0%` would list every policy; PostgreSQL refuses a NUL outright).
    for (field, value, reason) in [
        ("sort", "modified_desc", "Unknown sort"),
        ("sort", "-", "Unknown sort"),
        ("platform", "bogus", "android, windows10"),
        ("search", "\u{0}", "control characters"),
        ("search", "wi\u{0}fi", "control characters"),
        ("search", "\u{1B}[2J", "control characters"),
    ] {
        let refusal = app
            .policy_inventory(&reader, CONTOSO, &[(field, value)])
            .await
            .expect_err(value);
        assert_eq!(refusal.status, 422, "{}", refusal.body);
        assert!(refusal.body.contains(reason), "{}", refusal.body);
    }
    let (status, html) = page(&app, &reader, &format!("/t/{CONTOSO}/policies?sort=bogus")).await;
    assert_eq!(status, 422);
    assert!(html.contains("Unknown sort"), "{html}");

    // The page keeps the sort and platform in its links: a heading reverses the order it sorts
    // by, and names it for a screen reader.
    let (status, html) = page(
        &app,
        &reader,
        &format!("/t/{CONTOSO}/policies?sort=-modified&platform=android"),
    )
    .await;
    assert_eq!(status, 200);
    let html = html.replace("&amp;", "&");
    assert!(html.contains(r#"aria-sort="descending""#), "{html}");
    let policies = format!("/t/{CONTOSO}/policies?page=1&platform=android");
    for sorted in ["\"", "&sort=modified\"", "&sort=type\""] {
        assert!(
            html.contains(&format!("{policies}{sorted}")),
            "{sorted}: {html}"
        );
    }
    assert!(html.contains(r#"<option value="windows10""#), "{html}");
}
