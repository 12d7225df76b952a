//! Backup sets through the real server: server functions over HTTP and server-rendered pages.

use crate::common;

use common::{Answer, Refusal, TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER};
use tenantatlas::domain::{AppError, BackupSetSummary};

both_backends!(TestApp:
    creates_and_lists_a_backup_set,
    rejects_bad_names_and_writes_nothing,
    rejects_a_duplicate_name,
    unknown_or_malformed_tenant_is_403,
    backup_sets_stay_in_their_tenant,
    pages_render_on_the_server,
    healthz_answers,
);

/// Creates a backup set described "nightly" as `cookie`.
async fn create_as(
    app: &TestApp,
    cookie: &str,
    tenant: &str,
    name: &str,
) -> Answer<BackupSetSummary> {
    app.create_backup_set(cookie, tenant, name, "nightly").await
}

/// Creates as an operator of the tenant.
async fn create(app: &TestApp, tenant: &str, name: &str) -> Answer<BackupSetSummary> {
    let operator = if tenant == FABRIKAM {
        OUTSIDER
    } else {
        OPERATOR
    };
    let cookie = app.sign_in(operator).await;
    create_as(app, &cookie, tenant, name).await
}

/// The message of a 422 answer, after checking the field it names.
fn invalid(refusal: Refusal, expected_field: &str) -> String {
    assert_eq!(refusal.status, 422, "{refusal:?}");
    match refusal.error() {
        AppError::Invalid { field, message } => {
            assert_eq!(field, expected_field);
            message
        }
        other => panic!("not a validation error: {other:?}"),
    }
}

async fn creates_and_lists_a_backup_set(app: TestApp) {
    let created = create(&app, CONTOSO, "  Baseline before upgrade ")
        .await
        .expect("created");
    assert_eq!(created.name, "Baseline before upgrade");
    assert_eq!(created.description, "nightly");
    assert_eq!(created.item_count, 0);
    assert_eq!(created.created_by, "Oli Operator");

    let cookie = app.sign_in(OPERATOR).await;
    let sets = app.backup_sets(&cookie, CONTOSO).await.expect("listed");
    assert_eq!(sets, [created]);
}

async fn rejects_bad_names_and_writes_nothing(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let too_long = "x".repeat(10_000);
    for (name, expected) in [
        ("", "Enter a name"),
        ("   ", "Enter a name"),
        (too_long.as_str(), "too long"),
    ] {
        let refusal = create_as(&app, &cookie, CONTOSO, name)
            .await
            .expect_err("a bad name is refused");
        let message = invalid(refusal, "name");
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?} (name of {} chars)",
            name.len()
        );
    }
    assert_eq!(app.count("backup_sets").await, 0);
}

async fn rejects_a_duplicate_name(app: TestApp) {
    create(&app, CONTOSO, "Weekly").await.expect("created");
    let refusal = create(&app, CONTOSO, "Weekly")
        .await
        .expect_err("the name is taken");
    assert!(invalid(refusal, "name").contains("already exists"));
    assert_eq!(app.count("backup_sets").await, 1);
    // The same name is fine in another tenant.
    create(&app, FABRIKAM, "Weekly")
        .await
        .expect("created in Fabrikam");
}

async fn unknown_or_malformed_tenant_is_403(app: TestApp) {
    // Answered like a tenant one is not a member of: whether it exists is not revealed.
    let cookie = app.sign_in(ADMIN).await;
    for tenant in ["00000000-0000-4000-8000-000000000000", "not-a-guid", ""] {
        let refusal = create_as(&app, &cookie, tenant, "Anything")
            .await
            .expect_err("refused");
        assert_eq!(refusal.status, 403, "tenant {tenant:?}");
        assert!(
            matches!(refusal.error(), AppError::Forbidden(_)),
            "{refusal:?}"
        );
    }
    assert_eq!(app.count("backup_sets").await, 0);
}

async fn backup_sets_stay_in_their_tenant(app: TestApp) {
    let created = create(&app, CONTOSO, "Contoso only")
        .await
        .expect("created");
    // The admin is a member of both tenants: the set shows in Contoso only.
    let admin = app.sign_in(ADMIN).await;
    let fabrikam_sets = app.backup_sets(&admin, FABRIKAM).await.expect("listed");
    assert!(fabrikam_sets.is_empty());
    let refusal = app
        .backup_set_detail(&admin, FABRIKAM, created.id)
        .await
        .expect_err("another tenant's backup set is not found through this tenant");
    assert_eq!(refusal.status, 404);
    let detail = app
        .backup_set_detail(&admin, CONTOSO, created.id)
        .await
        .expect("found in its own tenant");
    assert_eq!(detail.set, created);
    assert!(detail.items.is_empty());
}

async fn pages_render_on_the_server(app: TestApp) {
    create(&app, CONTOSO, "Rendered on the server")
        .await
        .expect("created");
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
