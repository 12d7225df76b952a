//! The run detail screen over HTTP: a submitted run with its target and items, the items paged
//! and filtered by outcome (with the links the page renders), a backup set's runs (the run
//! panel's list and the version it polls), and who may read a run.

use crate::common;

use common::{
    backup_set, run_with_items, submit, Form, TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR,
    OUTSIDER, READONLY,
};
use tenantatlas::domain::run::{OperationType, StoredOperation};
use tenantatlas::domain::run_detail::{ItemOutcome, RunDetail, RunTarget};
use tenantatlas::domain::versions::RunActivity;
use tenantatlas::domain::RunStatus;

both_backends!(TestApp:
    run_detail_and_backup_set_runs_show_a_submitted_run,
    run_detail_is_403_for_outsiders_and_404_for_unknown_ids,
    run_detail_pages_its_items_with_totals_per_outcome,
    run_detail_refuses_invalid_paging,
    backup_set_runs_keep_every_active_run_and_the_last_ended,
    runs_of_an_unknown_backup_set_are_404,
    a_wait_counts_down_by_the_clock_its_end_was_written_by,
);

/// Contoso's run `id` as `cookie` reads it, with `extra` fields (outcome, offset, limit); it
/// must be found.
async fn detail(app: &TestApp, cookie: &str, id: i64, extra: &[(&str, &str)]) -> RunDetail {
    app.run_detail(Some(cookie), CONTOSO, id, extra)
        .await
        .expect("the run is found")
}

/// The policy ids of the page of items, in the order listed.
fn item_ids(run: &RunDetail) -> Vec<i64> {
    run.items.rows.iter().map(|item| item.policy_id).collect()
}

/// The policy names of the page of items, in the order listed.
fn item_names(run: &RunDetail) -> Vec<String> {
    run.items
        .rows
        .iter()
        .map(|item| item.policy_name.clone())
        .collect()
}

async fn run_detail_and_backup_set_runs_show_a_submitted_run(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Detail").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 3).await;
    let run_id = submit(&app, &cookie, CONTOSO, set, &ids).await;

    let run = detail(&app, &cookie, run_id, &[]).await;
    assert_eq!(run.id, run_id);
    assert_eq!(
        run.operation_type,
        StoredOperation::Known(OperationType::AddPolicies)
    );
    assert_eq!(run.total_items, 3);
    assert_eq!(run.initiated_by.as_deref(), Some("Oli Operator"));
    assert_eq!(
        run.target,
        RunTarget::BackupSet {
            id: set,
            name: Some("Detail".into())
        }
    );
    assert_eq!(run.items.rows.len(), 3);
    assert_eq!(run.items.total, 3);
    assert!(run.items.rows[0].policy_name.starts_with("Test policy"));

    // The filter keeps only items with that outcome; an unknown outcome is a 422.
    let pending = detail(&app, &cookie, run_id, &[("outcome", "pending")]).await;
    assert_eq!(pending.items.rows.len() as i64, 3 - run.processed_items);
    assert!(pending
        .items
        .rows
        .iter()
        .all(|item| item.outcome == ItemOutcome::Pending));
    let refusal = app
        .run_detail(Some(&cookie), CONTOSO, run_id, &[("outcome", "exploded")])
        .await
        .expect_err("an unknown outcome is refused");
    assert_eq!(refusal.status, 422);

    let readonly = app.sign_in(READONLY).await;
    let runs = app
        .backup_set_runs(&readonly, CONTOSO, set)
        .await
        .expect("a readonly member sees the set's runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, run_id);
    assert_eq!(runs[0].status, RunStatus::Pending);

    let empty = backup_set(&app, &cookie, CONTOSO, "Nothing yet").await;
    let runs = app
        .backup_set_runs(&cookie, CONTOSO, empty)
        .await
        .expect("an empty set's runs");
    assert!(runs.is_empty());
}

async fn run_detail_is_403_for_outsiders_and_404_for_unknown_ids(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Secret").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 1).await;
    let run_id = submit(&app, &cookie, CONTOSO, set, &ids).await;

    let outsider = app.sign_in(OUTSIDER).await;
    let refusal = app
        .run_detail(Some(&outsider), CONTOSO, run_id, &[])
        .await
        .expect_err("a non-member is refused");
    assert_eq!(refusal.status, 403);
    assert!(
        !refusal.body.contains("Secret") && !refusal.body.contains("Test policy"),
        "{refusal:?}"
    );
    // Asking for Contoso's run through the outsider's own tenant finds nothing.
    let refusal = app
        .run_detail(Some(&outsider), FABRIKAM, run_id, &[])
        .await
        .expect_err("not a run of Fabrikam");
    assert_eq!(refusal.status, 404);
    let refusal = app
        .backup_set_runs(&outsider, CONTOSO, set)
        .await
        .expect_err("a non-member is refused");
    assert_eq!(refusal.status, 403);

    let refusal = app
        .run_detail(Some(&cookie), CONTOSO, 999_999, &[])
        .await
        .expect_err("no such run");
    assert_eq!(refusal.status, 404);
    let refusal = app
        .run_detail(None, CONTOSO, run_id, &[])
        .await
        .expect_err("nobody signed in");
    assert_eq!(refusal.status, 401);
}

async fn run_detail_pages_its_items_with_totals_per_outcome(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let run = run_with_items(&app, &cookie, 250, 120, 30).await;

    let first = detail(&app, &cookie, run, &[]).await;
    assert_eq!(first.total_items, 250);
    assert_eq!(first.items.total, 250);
    assert_eq!(first.items.offset, 0);
    assert_eq!(first.items.limit, 100);
    assert_eq!(item_ids(&first).len(), 100);

    let second = detail(&app, &cookie, run, &[("offset", "100")]).await;
    let third = detail(&app, &cookie, run, &[("offset", "200")]).await;
    assert_eq!(item_ids(&second).len(), 100);
    assert_eq!(
        item_ids(&third).len(),
        50,
        "the third page holds the last 50"
    );
    assert_eq!(third.items.total, 250);
    let mut all: Vec<i64> = [&first, &second, &third]
        .iter()
        .flat_map(|page| item_ids(page))
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 250, "pages neither overlap nor skip items");
    // Pages follow the policy names.
    let mut in_order = item_names(&first);
    in_order.extend(item_names(&second));
    in_order.extend(item_names(&third));
    let mut sorted = in_order.clone();
    sorted.sort();
    assert_eq!(in_order, sorted);

    // The outcome filter and paging together; totals count the filtered items.
    let succeeded = detail(
        &app,
        &cookie,
        run,
        &[("outcome", "succeeded"), ("offset", "100")],
    )
    .await;
    assert_eq!(succeeded.items.total, 120);
    assert_eq!(item_ids(&succeeded).len(), 20);
    assert!(succeeded
        .items
        .rows
        .iter()
        .all(|item| item.outcome == ItemOutcome::Succeeded));
    let failed = detail(
        &app,
        &cookie,
        run,
        &[("outcome", "failed"), ("limit", "25")],
    )
    .await;
    assert_eq!(failed.items.total, 30);
    assert_eq!(failed.items.limit, 25);
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
    let waiting = detail(&app, &cookie, run, &[("outcome", "pending")]).await;
    assert_eq!(waiting.items.total, 100);
    assert_eq!(waiting.failed, 30, "counters are the whole run's");

    // Past the end answers the last page (a filtered page can empty while the run is polled).
    let past = detail(&app, &cookie, run, &[("offset", "1000")]).await;
    assert_eq!(past.items.offset, 200);
    assert_eq!(item_ids(&past).len(), 50);
    let skipped = detail(
        &app,
        &cookie,
        run,
        &[("outcome", "skipped"), ("offset", "100")],
    )
    .await;
    assert_eq!(skipped.items.total, 0);
    assert_eq!(skipped.items.offset, 0);
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
        let refusal = app
            .run_detail(Some(&cookie), CONTOSO, run, &extra)
            .await
            .expect_err("invalid paging is refused");
        assert_eq!(refusal.status, 422, "{extra:?}: {refusal:?}");
    }
    let most = detail(&app, &cookie, run, &[("limit", "500")]).await;
    assert_eq!(item_ids(&most).len(), 3);
    // A non-member learns nothing, whatever the paging.
    let outsider = app.sign_in(OUTSIDER).await;
    let refusal = app
        .run_detail(Some(&outsider), CONTOSO, run, &[("offset", "-1")])
        .await
        .expect_err("a non-member is refused");
    assert_eq!(refusal.status, 403);
}

/// Sets run `id`'s status, as the worker would (an ended run gets `finished_at`).
async fn set_status(app: &TestApp, id: i64, status: RunStatus, finished_at: Option<i64>) {
    sqlx::query("UPDATE runs SET status = $1, finished_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(finished_at)
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();
}

/// The ids of the run panel's list of backup set `set` and of the version it polls, each in
/// the order given (newest first).
async fn panel(app: &TestApp, cookie: &str, set: i64) -> (Vec<i64>, Vec<i64>) {
    let listed = app
        .backup_set_runs(cookie, CONTOSO, set)
        .await
        .expect("the set's runs")
        .iter()
        .map(|run| run.id)
        .collect();
    let version = app
        .backup_set_runs_version(cookie, CONTOSO, set)
        .await
        .expect("the set's runs' version");
    let polled = version
        .split(',')
        .filter(|run| !run.is_empty())
        .map(|run| run.split(':').next().unwrap().parse().unwrap())
        .collect();
    (listed, polled)
}

/// An active run stays in the run panel however many runs are queued behind it (its Cancel and
/// the toast when it ends need it there), and the panel's poll sees what its list shows; the
/// ended runs listed are the last to end, so a long run that ends after newer ones is listed.
async fn backup_set_runs_keep_every_active_run_and_the_last_ended(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Busy").await;
    let policies = common::insert_policies(&app.db, CONTOSO, 8).await;
    let mut runs = Vec::new();
    for policy in &policies {
        runs.push(submit(&app, &cookie, CONTOSO, set, &[*policy]).await);
    }
    let newest_first: Vec<i64> = runs.iter().rev().copied().collect();

    // The oldest is claimed; seven are queued behind it. Every one is listed.
    set_status(&app, runs[0], RunStatus::Running, None).await;
    let (listed, polled) = panel(&app, &cookie, set).await;
    assert_eq!(listed, newest_first, "every active run");
    assert_eq!(polled, listed, "the poll reads what the list shows");
    let listed = app.backup_set_runs(&cookie, CONTOSO, set).await.unwrap();
    let running = listed.iter().find(|run| run.id == runs[0]);
    assert_eq!(running.map(|run| run.status), Some(RunStatus::Running));

    // The seven newer ones end, one after the other, while the oldest still runs: it stays,
    // beside the five that ended last.
    for (i, run) in runs[1..].iter().enumerate() {
        set_status(&app, *run, RunStatus::Completed, Some(1_000 + i as i64)).await;
    }
    let (listed, polled) = panel(&app, &cookie, set).await;
    let expected = [runs[7], runs[6], runs[5], runs[4], runs[3], runs[0]];
    assert_eq!(listed, expected, "the running run and the last five ended");
    assert_eq!(polled, listed);

    // The oldest ends last: it is among the last five to end, so it is listed (and announced).
    set_status(&app, runs[0], RunStatus::Completed, Some(2_000)).await;
    let (listed, polled) = panel(&app, &cookie, set).await;
    assert_eq!(listed, [runs[7], runs[6], runs[5], runs[4], runs[0]]);
    assert_eq!(polled, listed);
}

/// The run panel's reads and the run starters' activity answer for a backup set or policy that
/// is not the tenant's as the set's other reads do (404), not with an empty list that looks like
/// a set with no runs; a capture's or drift check's activity without a target is a 422. A set
/// of the tenant with no runs still reads empty.
async fn runs_of_an_unknown_backup_set_are_404(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let empty = backup_set(&app, &cookie, CONTOSO, "Nothing yet").await;
    let owner = app.sign_in(ADMIN).await;
    let theirs = backup_set(&app, &owner, FABRIKAM, "Fabrikam's").await;

    let listed = app.backup_set_runs(&cookie, CONTOSO, empty).await;
    assert!(listed.expect("an empty set's runs").is_empty());
    let version = app.backup_set_runs_version(&cookie, CONTOSO, empty).await;
    assert_eq!(version.expect("an empty set's version"), "");

    for set in [999_999, theirs, -1] {
        let listed = app
            .backup_set_runs(&cookie, CONTOSO, set)
            .await
            .expect_err("not the tenant's set");
        assert_eq!(listed.status, 404, "set {set}: {}", listed.body);
        assert!(
            listed
                .body
                .contains("This backup set does not exist in this tenant."),
            "{}",
            listed.body
        );
        let polled = app
            .backup_set_runs_version(&cookie, CONTOSO, set)
            .await
            .expect_err("not the tenant's set");
        assert_eq!(polled.status, 404, "set {set}: {}", polled.body);
    }

    // The run starters' activity: a target left out (it reads 0) or not positive is a 422, one
    // not of the tenant a 404; a set of the tenant with no runs, or a sync, has none.
    let no_target = |operation: &'static str| {
        let form = Form::tenant(CONTOSO).field("operation", operation);
        let app = &app;
        let cookie = &cookie;
        async move {
            app.answer::<RunActivity>(Some(cookie), "runs/activity", &form)
                .await
        }
    };
    for operation in ["policy.capture_snapshot", "backup_set.drift_check"] {
        let refused = no_target(operation).await.expect_err("no target");
        assert_eq!(refused.status, 422, "{operation}: {}", refused.body);
        let refused = app
            .run_activity(&cookie, CONTOSO, operation, -5)
            .await
            .expect_err("not an id");
        assert_eq!(refused.status, 422, "{operation}: {}", refused.body);
    }
    let policy = common::insert_policies(&app.db, FABRIKAM, 1).await[0];
    for (operation, target) in [
        ("policy.capture_snapshot", 999_999),
        ("policy.capture_snapshot", policy),
        ("backup_set.drift_check", 999_999),
        ("backup_set.drift_check", theirs),
    ] {
        let refused = app
            .run_activity(&cookie, CONTOSO, operation, target)
            .await
            .expect_err("not the tenant's");
        assert_eq!(
            refused.status, 404,
            "{operation} {target}: {}",
            refused.body
        );
    }
    let none = app
        .run_activity(&cookie, CONTOSO, "backup_set.drift_check", empty)
        .await
        .expect("an empty set's activity");
    assert!(none.active.is_none() && none.last.is_none());
    let sync = no_target("inventory.sync")
        .await
        .expect("a sync's activity");
    assert!(sync.active.is_none());
}

/// A run's wait on Graph is counted down by the clock its end was written by: the lease clock,
/// on PostgreSQL the database's (the worker writes the end as the database's now plus the time
/// left, and the runs API reads the time left from the database's now), so a web process whose
/// clock disagrees with the worker's host still says "resuming in" the 30 s the throttled worker
/// waits, not 0 s or 90 s. Here this process's clock (the worker's and the web's) runs a minute
/// ahead of the database's while the worker writes the wait; on PostgreSQL it then runs a
/// minute behind it while the page reads. On SQLite (one process, one clock) the process's
/// clock writes and reads it.
async fn a_wait_counts_down_by_the_clock_its_end_was_written_by(app: TestApp) {
    use tenantatlas::graph_sim::Fault;
    use tenantatlas::server::db::Backend;
    use tenantatlas::server::runs::queries::set_app_clock_offset;

    let (sim, client) = common::sim_and_client(4).await;
    let policies =
        common::insert_sim_compliance(&app.db, &client, &common::creds(CONTOSO), 1).await;
    let (policy_id, graph_id) = policies.first().expect("a compliance policy").clone();
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Throttled").await;
    sim.set_fault(
        &graph_id,
        Fault::Throttle {
            times: 1_000,
            retry_after_secs: 30,
        },
    );
    let run_id = submit(&app, &cookie, CONTOSO, set, &[policy_id]).await;
    set_app_clock_offset(60_000);
    let worker = common::sim_worker(&app.db, &client, "w1");
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    common::wait_until(
        "the run never said it waits",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(100),
        || async {
            detail(&app, &cookie, run_id, &[])
                .await
                .graph_wait
                .is_some_and(|wait| wait.resumes_in_ms.is_some())
        },
    )
    .await;
    let mut offsets = vec![60_000];
    if app.db.backend() == Backend::Postgres {
        offsets.push(-60_000);
    }
    for offset in offsets {
        set_app_clock_offset(offset);
        let wait = detail(&app, &cookie, run_id, &[])
            .await
            .graph_wait
            .expect("the run still waits");
        let left = wait.resumes_in_ms.expect("a known end");
        assert!(
            (20_000..=30_000).contains(&left),
            "{left} ms left with this process's clock {offset} ms off the database's"
        );
    }
    set_app_clock_offset(0);
    working.abort();
    let _ = working.await;
}
