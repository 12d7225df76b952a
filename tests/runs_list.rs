//! The Runs page over HTTP: its status and operation filters (refused when unknown), paging
//! back with `before`, the links the page renders (an older page with no run says so and links
//! back), and tenant isolation.

use crate::common;

use common::{
    backup_set, submit, Answer, TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY,
};
use tenantatlas::domain::run::{OperationType, StoredOperation};
use tenantatlas::domain::{RunStatus, RunsPage};

both_backends!(TestApp:
    runs_list_filters_by_status_and_operation_type,
    runs_list_refuses_unknown_filters_and_keeps_tenants_apart,
    runs_list_pages_back_with_before,
    an_exhausted_older_page_says_so_and_links_back,
);

/// Moves a run to `status`, as the worker would have (counters are left alone).
async fn set_status(app: &TestApp, run_id: i64, status: &str) {
    sqlx::query("UPDATE runs SET status = $1 WHERE id = $2")
        .bind(status)
        .bind(run_id)
        .execute(app.db.pool())
        .await
        .unwrap();
}

/// The ids of a listing that must have succeeded, in the order listed.
fn run_ids(page: Answer<RunsPage>) -> Vec<i64> {
    page.expect("the runs are listed")
        .runs
        .iter()
        .map(|run| run.id)
        .collect()
}

/// The ids of Contoso's runs that `cookie` sees with `filters`.
async fn contoso_runs(app: &TestApp, cookie: &str, filters: &[(&str, &str)]) -> Vec<i64> {
    run_ids(app.runs_list(Some(cookie), CONTOSO, filters).await)
}

async fn runs_list_filters_by_status_and_operation_type(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Filters").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 4).await;
    // Four runs with different selections (so none is reused), newest last.
    let mut runs = Vec::new();
    for i in 0..4 {
        runs.push(submit(&app, &cookie, CONTOSO, set, &ids[..=i]).await);
    }
    set_status(&app, runs[0], "completed").await;
    set_status(&app, runs[1], "failed").await;
    set_status(&app, runs[2], "running").await;
    // runs[3] stays pending.

    // A run of another operation type, written as a future service would.
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    let other: i64 = sqlx::query_scalar(
        "INSERT INTO runs (tenant_id, operation_type, resource, action, target_id, input, \
                           idempotency_key, status, total_items, created_at) \
         VALUES ($1, 'tenant.sync_inventory', 'tenant', 'sync_inventory', $1, '{}', 'other', \
                 'failed', 0, 1) RETURNING id",
    )
    .bind(tenant_id)
    .fetch_one(app.db.pool())
    .await
    .unwrap();

    let all = app
        .runs_list(Some(&cookie), CONTOSO, &[])
        .await
        .expect("the runs are listed")
        .runs;
    assert_eq!(
        all.iter().map(|run| run.id).collect::<Vec<_>>(),
        [runs[3], runs[2], runs[1], runs[0], other],
        "no filter: every run, newest first"
    );
    assert_eq!(
        all[0].operation_type,
        StoredOperation::Known(OperationType::AddPolicies)
    );
    assert_eq!(all[0].initiated_by.as_deref(), Some("Oli Operator"));
    assert_eq!(
        all[4].operation_type,
        StoredOperation::Other("tenant.sync_inventory".into()),
        "a spelling this build does not know is shown as stored"
    );
    assert_eq!(all[4].initiated_by, None, "nobody started it");

    let readonly = app.sign_in(READONLY).await;
    let failed = app
        .runs_list(Some(&readonly), CONTOSO, &[("status", "failed")])
        .await
        .expect("a readonly member may filter")
        .runs;
    assert_eq!(
        failed.iter().map(|run| run.id).collect::<Vec<_>>(),
        [runs[1], other]
    );
    assert!(failed.iter().all(|run| run.status == RunStatus::Failed));

    let active = contoso_runs(&app, &cookie, &[("status", "active")]).await;
    assert_eq!(active, [runs[3], runs[2]], "queued and running");
    let pending = contoso_runs(&app, &cookie, &[("status", "pending")]).await;
    assert_eq!(pending, [runs[3]]);
    let cancelled = contoso_runs(&app, &cookie, &[("status", "cancelled")]).await;
    assert_eq!(cancelled, Vec::<i64>::new());
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

    let add_policies = [("operation_type", "backup_set.add_policies")];
    let added = contoso_runs(&app, &cookie, &add_policies).await;
    assert_eq!(added, [runs[3], runs[2], runs[1], runs[0]]);
    let failed_added = [
        ("status", "failed"),
        ("operation_type", "backup_set.add_policies"),
    ];
    let both = contoso_runs(&app, &cookie, &failed_added).await;
    assert_eq!(both, [runs[1]]);
}

async fn runs_list_refuses_unknown_filters_and_keeps_tenants_apart(app: TestApp) {
    let contoso = app.sign_in(OPERATOR).await;
    let fabrikam = app.sign_in(OUTSIDER).await;
    let contoso_set = backup_set(&app, &contoso, CONTOSO, "Ours").await;
    let fabrikam_set = backup_set(&app, &fabrikam, FABRIKAM, "Theirs").await;
    let mine = common::insert_policies(&app.db, CONTOSO, 1).await;
    let theirs = common::insert_policies(&app.db, FABRIKAM, 1).await;
    let our_run = submit(&app, &contoso, CONTOSO, contoso_set, &mine).await;
    let their_run = submit(&app, &fabrikam, FABRIKAM, fabrikam_set, &theirs).await;
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
        let filters = [("status", status), ("operation_type", operation_type)];
        let refusal = app
            .runs_list(Some(&contoso), CONTOSO, &filters)
            .await
            .expect_err("an unknown filter is refused");
        assert_eq!(refusal.status, 422, "{filters:?}: {refusal:?}");
        assert!(refusal.body.contains("Unknown"), "{refusal:?}");
    }

    let failed = [("status", "failed")];
    let ours = contoso_runs(&app, &contoso, &failed).await;
    assert_eq!(ours, [our_run], "only this tenant's runs");
    let theirs = run_ids(app.runs_list(Some(&fabrikam), FABRIKAM, &failed).await);
    assert_eq!(theirs, [their_run]);

    // A non-member is refused before the filter is looked at, with nothing in the answer.
    for status in ["failed", "exploded"] {
        let refusal = app
            .runs_list(Some(&fabrikam), CONTOSO, &[("status", status)])
            .await
            .expect_err("a non-member is refused");
        assert_eq!(refusal.status, 403, "{status}");
        assert!(
            !refusal.body.contains("\"id\""),
            "no run in the answer: {refusal:?}"
        );
    }
    let anonymous = app
        .runs_list(None, CONTOSO, &failed)
        .await
        .expect_err("nobody signed in");
    assert_eq!(anonymous.status, 401);
}

/// Inserts `n` finished runs of `tenant`, one millisecond apart (two share each timestamp, so
/// the id breaks ties), oldest first; returns their ids.
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
    let first = app.runs_list(Some(&cookie), CONTOSO, &[]).await.unwrap();
    assert_eq!(first.next_before, Some(ids[99]), "the older page's cursor");
    assert_eq!(contoso_runs(&app, &cookie, &[]).await, ids[..100]);

    let last = ids[99].to_string();
    assert_eq!(
        contoso_runs(&app, &cookie, &[("before", &last)]).await,
        ids[100..],
        "the older 50, no overlap, no gap"
    );

    // Paging keeps the filters: no failed run is older than anything.
    let older_failed = [("status", "failed"), ("before", last.as_str())];
    let filtered = contoso_runs(&app, &cookie, &older_failed).await;
    assert_eq!(filtered, Vec::<i64>::new());

    // Another tenant's run id as the cursor shows nothing of either tenant.
    let fabrikam = insert_runs(&app, FABRIKAM, 1).await[0].to_string();
    let foreign = contoso_runs(&app, &cookie, &[("before", &fabrikam)]).await;
    assert_eq!(foreign, Vec::<i64>::new());

    let refusal = app
        .runs_list(Some(&cookie), CONTOSO, &[("before", "-1")])
        .await
        .expect_err("a negative cursor is refused");
    assert_eq!(refusal.status, 422, "{refusal:?}");

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

async fn an_exhausted_older_page_says_so_and_links_back(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    // Exactly one page of runs: the first page has no older one to link to.
    let ids = insert_runs(&app, CONTOSO, 100).await;
    let oldest = ids[0];
    let first = app.runs_list(Some(&cookie), CONTOSO, &[]).await.unwrap();
    assert_eq!(first.runs.len(), 100);
    assert_eq!(first.next_before, None, "no older run");
    let page = |query: String| {
        let app = &app;
        let cookie = &cookie;
        async move {
            app.get(Some(cookie), &format!("/t/{CONTOSO}/runs{query}"))
                .await
                .text()
                .await
                .unwrap()
        }
    };
    let html = page(String::new()).await;
    assert!(!html.contains("?before="), "{html}");
    assert!(!html.contains("Older runs"), "{html}");

    // An older page typed into the address bar (or whose runs left a filter) holds none.
    let html = page(format!("?before={oldest}")).await;
    assert!(!html.contains("No runs yet"), "{html}");
    assert!(html.contains("No older runs"), "{html}");
    assert!(html.contains("Newest runs"), "{html}");
    assert!(!html.contains("Older runs"), "{html}");

    // With filters the link back keeps them.
    let html = page(format!("?status=completed&before={oldest}")).await;
    assert!(!html.contains("No runs match these filters"), "{html}");
    assert!(html.contains("No older runs match these filters"), "{html}");
    assert!(html.contains("Newest runs"), "{html}");
    assert!(
        html.contains(&format!("href=\"/t/{CONTOSO}/runs?status=completed\"")),
        "{html}"
    );
}
