//! Backup sets through the real server: server functions over HTTP and server-rendered pages.

#![cfg(feature = "ssr")]

mod common;

use common::{TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER};
use serde_json::Value;

both_backends!(TestApp:
    creates_and_lists_a_backup_set,
    rejects_bad_names_and_writes_nothing,
    rejects_a_duplicate_name,
    unknown_or_malformed_tenant_is_403,
    backup_sets_stay_in_their_tenant,
    pages_render_on_the_server,
    healthz_answers,
);

async fn create_as(app: &TestApp, cookie: &str, tenant: &str, name: &str) -> reqwest::Response {
    let form = [
        ("tenant", tenant),
        ("name", name),
        ("description", "nightly"),
    ];
    app.call_as(cookie, "backup-sets/create", &form).await
}

/// Creates as an operator of the tenant.
async fn create(app: &TestApp, tenant: &str, name: &str) -> reqwest::Response {
    let operator = if tenant == FABRIKAM {
        OUTSIDER
    } else {
        OPERATOR
    };
    let cookie = app.sign_in(operator).await;
    create_as(app, &cookie, tenant, name).await
}

async fn list(app: &TestApp, cookie: &str, tenant: &str) -> Vec<Value> {
    let response = app
        .call_as(cookie, "backup-sets/list", &[("tenant", tenant)])
        .await;
    assert_eq!(response.status(), 200);
    response.json::<Vec<Value>>().await.unwrap()
}

async fn creates_and_lists_a_backup_set(app: TestApp) {
    let response = create(&app, CONTOSO, "  Baseline before upgrade ").await;
    assert_eq!(response.status(), 200);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "Baseline before upgrade");
    assert_eq!(created["description"], "nightly");
    assert_eq!(created["item_count"], 0);
    assert_eq!(created["created_by"], "Oli Operator");

    let sets = list(&app, &app.sign_in(OPERATOR).await, CONTOSO).await;
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["id"], created["id"]);
}

async fn rejects_bad_names_and_writes_nothing(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let too_long = "x".repeat(10_000);
    for (name, expected) in [
        ("", "Enter a name"),
        ("   ", "Enter a name"),
        (too_long.as_str(), "too long"),
    ] {
        let response = create_as(&app, &cookie, CONTOSO, name).await;
        assert_eq!(response.status(), 422, "name of {} chars", name.len());
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["Invalid"]["field"], "name");
        let message = error["Invalid"]["message"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?}"
        );
    }
    assert_eq!(app.count("backup_sets").await, 0);
}

async fn rejects_a_duplicate_name(app: TestApp) {
    assert_eq!(create(&app, CONTOSO, "Weekly").await.status(), 200);
    let response = create(&app, CONTOSO, "Weekly").await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert!(error["Invalid"]["message"]
        .as_str()
        .unwrap()
        .contains("already exists"));
    assert_eq!(app.count("backup_sets").await, 1);
    // The same name is fine in another tenant.
    assert_eq!(create(&app, FABRIKAM, "Weekly").await.status(), 200);
}

async fn unknown_or_malformed_tenant_is_403(app: TestApp) {
    // Answered like a tenant one is not a member of: whether it exists is not revealed.
    let cookie = app.sign_in(ADMIN).await;
    for tenant in ["00000000-0000-4000-8000-000000000000", "not-a-guid", ""] {
        let response = create_as(&app, &cookie, tenant, "Anything").await;
        assert_eq!(response.status(), 403, "tenant {tenant:?}");
        assert!(response
            .json::<Value>()
            .await
            .unwrap()
            .get("Forbidden")
            .is_some());
    }
    assert_eq!(app.count("backup_sets").await, 0);
}

async fn backup_sets_stay_in_their_tenant(app: TestApp) {
    let created: Value = create(&app, CONTOSO, "Contoso only")
        .await
        .json()
        .await
        .unwrap();
    // The admin is a member of both tenants: the set shows in Contoso only.
    let admin = app.sign_in(ADMIN).await;
    assert!(list(&app, &admin, FABRIKAM).await.is_empty());
    let id = created["id"].as_i64().unwrap().to_string();
    let response = app
        .call_as(
            &admin,
            "backup-sets/get",
            &[("tenant", FABRIKAM), ("id", &id)],
        )
        .await;
    assert_eq!(
        response.status(),
        404,
        "another tenant's backup set is not found through this tenant"
    );
    let response = app
        .call_as(
            &admin,
            "backup-sets/get",
            &[("tenant", CONTOSO), ("id", &id)],
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn pages_render_on_the_server(app: TestApp) {
    create(&app, CONTOSO, "Rendered on the server").await;
    let cookie = app.sign_in(OPERATOR).await;
    let page = app
        .get(Some(&cookie), &format!("/t/{CONTOSO}/backup-sets"))
        .await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("'nonce-") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Rendered on the server"),
        "the list is in the HTML"
    );
    assert!(
        html.contains("Contoso (demo)"),
        "the header names the tenant"
    );
    assert!(
        html.contains("/pkg/tenantatlas.js"),
        "the page loads the hydration bundle"
    );

    let missing = app.get(Some(&cookie), "/no/such/page").await;
    assert_eq!(missing.status(), 404);
}

async fn healthz_answers(app: TestApp) {
    let response = app.get(None, "/healthz").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");
}
