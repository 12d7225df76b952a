//! Backup sets through the real server: server functions over HTTP and server-rendered pages.

use crate::common;

use common::{Answer, Refusal, TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER};
use tenantatlas::domain::{AppError, BackupSetSummary};

both_backends!(TestApp:
    creates_and_lists_a_backup_set,
    rejects_bad_names_and_writes_nothing,
    rejects_hidden_characters_in_names_and_controls_in_descriptions,
    rejects_a_duplicate_name,
    rejects_a_name_that_looks_like_a_taken_one,
    unknown_or_malformed_tenant_is_403,
    backup_sets_stay_in_their_tenant,
    pages_render_on_the_server,
    healthz_answers,
    a_huge_set_answers_its_first_items_by_name,
    the_list_answers_the_newest_sets_and_counts_them_all,
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
    let list = app.backup_sets(&cookie, CONTOSO).await.expect("listed");
    assert_eq!(list.sets, [created]);
    assert_eq!(list.total, 1);
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

/// A name with an invisible or bidi formatting character would look like another set's name
/// (or the reverse of its own); a description with a control character other than a line
/// break or a tab is not text. Both engines refuse them alike, naming the field, and write
/// nothing.
async fn rejects_hidden_characters_in_names_and_controls_in_descriptions(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    create(&app, CONTOSO, "Baseline").await.expect("created");
    for name in [
        "Baseline\u{200B}",
        "Base\u{200F}line",
        "\u{202E}enilesaB",
        "Baseline\u{2060}",
        "\u{2066}Baseline\u{2069}",
        "\u{FEFF}Baseline",
    ] {
        let refusal = create_as(&app, &cookie, CONTOSO, name)
            .await
            .expect_err("a hidden character is refused");
        invalid(refusal, "name");
    }
    for description in ["nul\u{0}here", "bell\u{7}", "escape\u{1B}[2J"] {
        let refusal = app
            .create_backup_set(&cookie, CONTOSO, "Described", description)
            .await
            .expect_err("a control character is refused");
        invalid(refusal, "description");
    }
    assert_eq!(app.count("backup_sets").await, 1);
    let described = app
        .create_backup_set(&cookie, CONTOSO, "Described", "line one\r\nline two\tend")
        .await
        .expect("line breaks and tabs are text");
    assert_eq!(described.description, "line one\r\nline two\tend");
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

/// Names a page shows alike are one name: a run of spaces, a no-break space or decomposed
/// accents are stored in the canonical spelling, so the unique index (which compares bytes)
/// refuses them as taken.
async fn rejects_a_name_that_looks_like_a_taken_one(app: TestApp) {
    create(&app, CONTOSO, "Q1 baseline").await.expect("created");
    create(&app, CONTOSO, "Caf\u{E9} baseline")
        .await
        .expect("created");
    for name in [
        "Q1  baseline",
        "Q1\u{A0}baseline",
        "Q1 \u{202F} baseline",
        "Cafe\u{301} baseline",
    ] {
        let refusal = create(&app, CONTOSO, name)
            .await
            .expect_err("the name is taken");
        let message = invalid(refusal, "name");
        assert!(message.contains("already exists"), "{name:?}: {message:?}");
    }
    assert_eq!(app.count("backup_sets").await, 2);
    let stored = create(&app, CONTOSO, "Q2\u{A0}\u{A0}baseline")
        .await
        .expect("created");
    assert_eq!(stored.name, "Q2 baseline");
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
    assert!(fabrikam_sets.sets.is_empty());
    assert_eq!(fabrikam_sets.total, 0);
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

/// A set of more items than one read answers (`ITEMS_SHOWN`): the first of them by policy
/// name, with the set's `item_count` still telling how many it holds; a small set answers every
/// item, as before.
async fn a_huge_set_answers_its_first_items_by_name(app: TestApp) {
    use tenantatlas::server::backup_sets::ITEMS_SHOWN;
    let set = create(&app, CONTOSO, "Huge").await.expect("created").id;
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    let held = ITEMS_SHOWN + 1;
    for sql in [
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $3) \
         INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
         SELECT $1, 'huge-' || i, 'compliance', 'Huge ' || i, 'android', 0 FROM n",
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         SELECT tenant_id, id, 'h', '{}', 0 FROM policies \
         WHERE tenant_id = $1 AND graph_id LIKE 'huge-%' AND $2 > 0 AND $3 > 0",
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         SELECT s.tenant_id, $2, s.policy_id, s.id, 0 FROM policy_snapshots s \
         JOIN policies p ON p.tenant_id = s.tenant_id AND p.id = s.policy_id \
         WHERE s.tenant_id = $1 AND p.graph_id LIKE 'huge-%' AND $3 > 0",
        "UPDATE backup_sets SET item_count = $3 WHERE tenant_id = $1 AND id = $2",
    ] {
        sqlx::query(sql)
            .bind(tenant)
            .bind(set)
            .bind(held)
            .execute(app.db.pool())
            .await
            .unwrap();
    }
    let cookie = app.sign_in(OPERATOR).await;
    let detail = app
        .backup_set_detail(&cookie, CONTOSO, set)
        .await
        .expect("the set is read");
    assert_eq!(detail.set.item_count, held);
    assert_eq!(detail.items.len() as i64, ITEMS_SHOWN);
    let mut names: Vec<String> = (1..=held).map(|i| format!("Huge {i}")).collect();
    names.sort();
    names.truncate(ITEMS_SHOWN as usize);
    let shown: Vec<String> = detail
        .items
        .iter()
        .map(|item| item.policy_name.clone())
        .collect();
    assert_eq!(shown, names, "the first items by name");
    // The page says the list is cut, and by how much.
    let page = app
        .get(Some(&cookie), &format!("/t/{CONTOSO}/backup-sets/{set}"))
        .await;
    assert_eq!(page.status(), 200);
    // Text without the hydration markers between its parts.
    let text = page.text().await.unwrap().replace("<!>", "");
    assert!(
        text.contains(&format!(
            "Showing the first {ITEMS_SHOWN} of {held} policies"
        )),
        "the page says the list is cut"
    );

    // A small set: every item.
    let small = create(&app, CONTOSO, "Small").await.expect("created").id;
    sqlx::query(
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         SELECT tenant_id, $2, policy_id, id, 0 FROM policy_snapshots \
         WHERE tenant_id = $1 AND policy_id IN (SELECT id FROM policies WHERE graph_id IN ('huge-1', 'huge-2', 'huge-3'))",
    )
    .bind(tenant)
    .bind(small)
    .execute(app.db.pool())
    .await
    .unwrap();
    let detail = app
        .backup_set_detail(&cookie, CONTOSO, small)
        .await
        .expect("the set is read");
    let shown: Vec<&str> = detail
        .items
        .iter()
        .map(|i| i.policy_name.as_str())
        .collect();
    assert_eq!(shown, ["Huge 1", "Huge 2", "Huge 3"]);
}

/// More backup sets than one read of the list answers (`SETS_SHOWN`): the newest of them,
/// newest first, with the total telling how many the tenant holds, and the page says so; the
/// other tenant's sets are neither listed nor counted.
async fn the_list_answers_the_newest_sets_and_counts_them_all(app: TestApp) {
    use tenantatlas::server::backup_sets::SETS_SHOWN;
    let held = SETS_SHOWN + 1;
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    // Set i is created at i ms, so set `held` is the newest; two share each time from 100 on,
    // which the id orders.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
         INSERT INTO backup_sets (tenant_id, name, description, created_at) \
         SELECT $1, 'Set ' || i, 'bulk', CASE WHEN i < 100 THEN i ELSE 100 + (i - 100) / 2 END \
         FROM n",
    )
    .bind(tenant)
    .bind(held)
    .execute(app.db.pool())
    .await
    .unwrap();
    create(&app, FABRIKAM, "Elsewhere").await.expect("created");

    let cookie = app.sign_in(OPERATOR).await;
    let list = app.backup_sets(&cookie, CONTOSO).await.expect("listed");
    assert_eq!(list.total, held);
    assert_eq!(list.sets.len() as i64, SETS_SHOWN);
    let names: Vec<&str> = list.sets.iter().map(|set| set.name.as_str()).collect();
    let newest: Vec<String> = (2..=held).rev().map(|i| format!("Set {i}")).collect();
    assert_eq!(names, newest, "the newest sets, newest first");

    let page = app
        .get(Some(&cookie), &format!("/t/{CONTOSO}/backup-sets"))
        .await;
    assert_eq!(page.status(), 200);
    // Text without the hydration markers between its parts.
    let text = page.text().await.unwrap().replace("<!>", "");
    assert!(
        text.contains(&format!(
            "Showing the newest {SETS_SHOWN} of {held} backup sets."
        )),
        "the page says the list is cut"
    );
}
