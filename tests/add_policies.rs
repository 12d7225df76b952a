//! "Add selected": the server function creates or reuses a run and its items,
//! answers at once, deduplicates tenant-wide even under concurrent submits, and refuses
//! readonly members, non-members and bad input without writing anything.

use crate::common;

use common::{
    insert_policies, Answer, Form, TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY,
};
use serde_json::Value;
use tenantatlas::domain::{AppError, RunStatus, SubmittedRun};

both_backends!(TestApp:
    submit_queues_a_run_with_one_item_per_distinct_policy,
    the_same_selection_reuses_the_active_run_tenant_wide,
    options_are_part_of_the_key,
    a_finished_run_does_not_block_a_new_one,
    a_collision_with_a_run_that_ended_before_it_was_read_starts_a_new_run,
    fifty_concurrent_identical_submits_make_one_run,
    empty_and_foreign_selections_write_nothing,
    readonly_members_and_outsiders_get_403,
    select_all_is_resolved_at_submit_time,
    all_matching_takes_no_ids_and_needs_a_match,
);

/// US1: submitting never calls Graph, even with a client at hand whose every call would fail.
async fn submit_never_calls_graph(backend: common::Backend) {
    use tenantatlas::graph_sim::{GraphSim, SimConfig};
    use tenantatlas::server::graph::{GraphAccess, GraphClient, GraphConfig, SecretResolver};
    let sim = GraphSim::start(SimConfig::default()).await.unwrap();
    let mut knobs = sim.knobs();
    knobs.rate_503 = 1.0; // every Graph call would fail
    sim.set_knobs(knobs);
    let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url)).unwrap();
    let app = TestApp::spawn_with_graph(
        backend,
        GraphAccess {
            client,
            secrets: SecretResolver::default(),
        },
    )
    .await;
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let ids = insert_policies(&app.db, CONTOSO, 25).await;
    let run = submit_ok(&app, &cookie, set, &ids, true).await;
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.total, 25);
    let counters = sim.counters();
    assert_eq!(
        (counters.graph_requests(), counters.token_requests()),
        (0, 0),
        "no Graph call in the request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_submit_never_calls_graph() {
    submit_never_calls_graph(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_submit_never_calls_graph() {
    submit_never_calls_graph(common::Backend::Postgres).await;
}

/// US1: the submit wakes the worker. It polls only every 10 minutes here, so a run that ends
/// within seconds was woken by the submit. The demo's simulator and credentials stand in for
/// Microsoft Graph; the worker is the server's own (`server::runs_worker`).
async fn submit_wakes_the_worker_at_once(backend: common::Backend) {
    use std::time::Duration;
    use tenantatlas::server::{runs_worker, seed};
    let demo = seed::start_demo_graph(0).await.unwrap();
    let app = TestApp::spawn_with_graph(backend, demo.access.clone()).await;
    seed::sync_demo_inventory(&app.db, &demo).await.unwrap();
    let heartbeat = Heartbeat::watch(&app).await;
    let (stop, worker) = common::start_runner(
        runs_worker(&app.db, demo.access.clone()),
        &app.wake,
        &app.db,
        Duration::from_secs(600),
    );
    // The worker looks at the empty queue, then sleeps until woken: the run is submitted only
    // once it sleeps, or its first look could find the run and end it without any wake-up.
    heartbeat.runner_went_idle(&app).await;

    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let ids: Vec<i64> = sqlx::query_scalar(
        "SELECT p.id FROM policies p JOIN tenants t ON t.id = p.tenant_id \
         WHERE t.external_id = $1 ORDER BY p.id LIMIT 3",
    )
    .bind(CONTOSO)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let run = submit_ok(&app, &cookie, set, &ids, false).await;
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
                .bind(run.run_id)
                .fetch_one(app.db.pool())
                .await
                .unwrap();
            if status != "pending" && status != "running" {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the woken worker ends the run long before its next poll");
    assert_eq!(ended, "completed");
    stop.send(true).unwrap();
    worker.await.unwrap();
}

/// The worker's heartbeat (when it last reached the database: a claim, found or not, sets it),
/// read from the metrics router as `/metrics` serves it: the one sign the runner gives from the
/// outside that it has looked at the queue.
struct Heartbeat {
    /// The metrics router, served on its own listener.
    endpoint: common::metrics::MetricsEndpoint,
    /// Just before the runner started; any heartbeat before is at least [`Heartbeat::GAP`] older.
    since: std::time::Instant,
}

impl Heartbeat {
    /// Between an earlier heartbeat (the inventory sync's) and the runner's start.
    const GAP: std::time::Duration = std::time::Duration::from_millis(100);
    /// How long without a heartbeat the runner is taken to be waiting on its wake-up.
    const QUIET: std::time::Duration = std::time::Duration::from_millis(500);

    /// Serves `/metrics` for `app`; called just before the runner starts.
    async fn watch(app: &TestApp) -> Self {
        use tenantatlas::server::metrics;
        let handle = metrics::install().expect("the metrics recorder installs");
        let endpoint =
            common::metrics::MetricsEndpoint::serve(metrics::router(handle, app.db.clone())).await;
        tokio::time::sleep(Self::GAP).await;
        Self {
            endpoint,
            since: std::time::Instant::now(),
        }
    }

    /// How long ago the worker last reached the database (`None`: never).
    async fn age(&self) -> Option<std::time::Duration> {
        let text = self.endpoint.scrape().await;
        common::metrics::sample(&text, "tenantatlas_instance_heartbeat_age_seconds")
            .map(std::time::Duration::from_secs_f64)
    }

    /// Waits until the runner has looked at the queue since [`Heartbeat::watch`] and then not
    /// for [`Heartbeat::QUIET`]: it starts with a look at each lane, and a second round for its
    /// poll's first tick, which comes at once; after that it waits on its wake-up (or the poll).
    /// On PostgreSQL its listener is up then too (it listens before its first look).
    async fn runner_went_idle(&self, app: &TestApp) {
        use std::time::Duration;
        loop {
            let asked = self.since.elapsed();
            assert!(
                asked < Duration::from_secs(30),
                "the runner never went idle"
            );
            // A heartbeat before `since` is older than `asked + GAP` when it is read; one of
            // the runner's is younger than `asked + GAP / 2`, unless the scrape itself took that
            // long (then it is asked again).
            if let Some(age) = self.age().await {
                if age < asked + Self::GAP / 2 && age >= Self::QUIET {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if app.db.backend() == tenantatlas::server::db::Backend::Postgres {
            let listening = common::listening_connections(&app.db).await;
            assert_eq!(listening, 1, "the runner listens for NOTIFYs");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_submit_wakes_the_worker_at_once() {
    submit_wakes_the_worker_at_once(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_submit_wakes_the_worker_at_once() {
    submit_wakes_the_worker_at_once(common::Backend::Postgres).await;
}

/// A new backup set of Contoso to add to.
async fn target(app: &TestApp, cookie: &str) -> i64 {
    common::backup_set(app, cookie, CONTOSO, "Target").await
}

/// "Add selected" in Contoso, with or without assignments (part of the run's key).
async fn submit(
    app: &TestApp,
    cookie: &str,
    set: i64,
    ids: &[i64],
    assignments: bool,
) -> Answer<SubmittedRun> {
    let assignments = [(
        "include_assignments",
        if assignments { "true" } else { "false" },
    )];
    app.add_policies(cookie, CONTOSO, set, ids, &assignments)
        .await
}

/// The same, which must queue or reuse a run.
async fn submit_ok(
    app: &TestApp,
    cookie: &str,
    set: i64,
    ids: &[i64],
    assignments: bool,
) -> SubmittedRun {
    submit(app, cookie, set, ids, assignments)
        .await
        .expect("the run is queued")
}

/// The policy ids the only run of the test stores for its worker.
async fn stored_selection(app: &TestApp) -> Vec<i64> {
    let input: String = sqlx::query_scalar("SELECT input FROM runs")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let input: Value = serde_json::from_str(&input).unwrap();
    serde_json::from_value(input["policy_ids"].clone()).unwrap()
}

async fn submit_queues_a_run_with_one_item_per_distinct_policy(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let ids = insert_policies(&app.db, CONTOSO, 5).await;
    let with_duplicates = [ids.as_slice(), &ids[..2]].concat();
    let run = submit_ok(&app, &cookie, set, &with_duplicates, true).await;
    assert!(!run.reused);
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.total, 5);
    assert_eq!(app.count("runs").await, 1);
    let mut expected = ids.clone();
    expected.sort_unstable();
    assert_eq!(
        stored_selection(&app).await,
        expected,
        "sorted, without duplicates"
    );
    // The worker writes the items when it claims the run (tests/worker.rs); the submit does not.
    assert_eq!(app.count("run_items").await, 0);
    let (status, total, initiator, target): (String, i64, i64, i64) =
        sqlx::query_as("SELECT status, total_items, initiated_by, target_id FROM runs")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!((status.as_str(), total, target), ("pending", 5, set));
    let operator_id: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(OPERATOR)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(initiator, operator_id);
    // Nothing was captured or added in the request.
    assert_eq!(app.count("policy_snapshots").await, 0);
    assert_eq!(app.count("backup_items").await, 0);
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'run.start'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

async fn the_same_selection_reuses_the_active_run_tenant_wide(app: TestApp) {
    let operator = app.sign_in(OPERATOR).await;
    let set = target(&app, &operator).await;
    let ids = insert_policies(&app.db, CONTOSO, 3).await;
    let first = submit_ok(&app, &operator, set, &ids, false).await;
    let reversed: Vec<i64> = ids.iter().rev().copied().collect();
    let again = submit_ok(&app, &operator, set, &reversed, false).await;
    assert_eq!(again.run_id, first.run_id);
    assert!(again.reused);
    // Another user of the tenant gets the same run; the initiator stays the first user.
    let admin = app.sign_in(ADMIN).await;
    let by_admin = submit_ok(&app, &admin, set, &ids, false).await;
    assert_eq!(by_admin.run_id, first.run_id);
    assert!(by_admin.reused);
    assert_eq!(app.count("runs").await, 1);
    assert_eq!(stored_selection(&app).await.len(), 3);
    let initiator: String =
        sqlx::query_scalar("SELECT u.email FROM runs r JOIN users u ON u.id = r.initiated_by")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(initiator, OPERATOR);
}

async fn options_are_part_of_the_key(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let ids = insert_policies(&app.db, CONTOSO, 2).await;
    let without = submit_ok(&app, &cookie, set, &ids, false).await;
    let with = submit_ok(&app, &cookie, set, &ids, true).await;
    assert_ne!(without.run_id, with.run_id);
    assert!(!with.reused);
    let fewer = submit_ok(&app, &cookie, set, &ids[..1], false).await;
    assert_ne!(fewer.run_id, without.run_id);
    assert_eq!(app.count("runs").await, 3);
}

async fn a_finished_run_does_not_block_a_new_one(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let ids = insert_policies(&app.db, CONTOSO, 2).await;
    let first = submit_ok(&app, &cookie, set, &ids, false).await;
    sqlx::query("UPDATE runs SET status = 'completed' WHERE id = $1")
        .bind(first.run_id)
        .execute(app.db.pool())
        .await
        .unwrap();
    let second = submit_ok(&app, &cookie, set, &ids, false).await;
    assert_ne!(second.run_id, first.run_id);
    assert!(!second.reused);
}

/// A submit that collides on the unique index with an identical run answers with that run;
/// when that run ended between the collision and the read (its key is free again), the submit
/// queues a new run, as it would a moment later, instead of refusing with a 409.
async fn a_collision_with_a_run_that_ended_before_it_was_read_starts_a_new_run(app: TestApp) {
    use tenantatlas::domain::run::OperationType;
    use tenantatlas::domain::Capability;
    use tenantatlas::server::auth::authorize_user;
    use tenantatlas::server::runs::key::IdempotencyKey;
    use tenantatlas::server::runs::submit::{self, NewRun};

    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    let user_id = common::user_id(&app.db, OPERATOR).await;
    let ctx = authorize_user(&app.db, user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let operation = OperationType::AddPolicies;
    let run = NewRun {
        operation,
        target_id: set,
        input: "{}".into(),
        key: IdempotencyKey::of(operation, tenant_id, &[("backup_set", set)]),
        total: 0,
        retry_of: None,
    };
    // The winner of the race, inserted first; the insert below collides with it.
    let winner = submit::queue(&app.db, tenant_id, Some(user_id), &run)
        .await
        .unwrap();
    let reused = submit::insert_or_reuse(&app.db, &ctx, &run).await.unwrap();
    assert_eq!((reused.run_id, reused.reused), (winner, true));

    // The winner ends after the collision, before it is read.
    let (db, key) = (&app.db, &run.key);
    let submitted = submit::insert_or_reuse_reading(db, &ctx, &run, || async move {
        sqlx::query("UPDATE runs SET status = 'completed', finished_at = 1 WHERE id = $1")
            .bind(winner)
            .execute(db.pool())
            .await
            .unwrap();
        submit::find_active(db, tenant_id, key).await
    })
    .await
    .expect("a new run, not a refusal");
    assert_ne!(submitted.run_id, winner);
    assert!(!submitted.reused);
    assert_eq!(submitted.status, RunStatus::Pending);
    let active: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE idempotency_key = $1 AND status IN ('pending', 'running')",
    )
    .bind(run.key.as_str())
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(active, [submitted.run_id]);
}

async fn fifty_concurrent_identical_submits_make_one_run(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let ids = insert_policies(&app.db, CONTOSO, 20).await;
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .list("policy_ids", &ids);
    let mut submits = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = app.request(Some(&cookie), "runs/add-policies", &form.pairs());
        submits.spawn(request.send());
    }
    let mut run_ids = Vec::new();
    while let Some(response) = submits.join_next().await {
        let response = response.unwrap().unwrap();
        assert_eq!(
            response.status(),
            200,
            "a racing submit fails instead of returning the winner"
        );
        let run: SubmittedRun = response.json().await.unwrap();
        run_ids.push(run.run_id);
    }
    run_ids.sort_unstable();
    run_ids.dedup();
    assert_eq!(run_ids.len(), 1, "every submit answers with the same run");
    assert_eq!(app.count("runs").await, 1);
    assert_eq!(stored_selection(&app).await.len(), 20);
    // Each answer came after its audit event was written (they are written in groups): one
    // start and 49 reuses of that run, none lost, none twice.
    let audited: Vec<(String, i64)> = sqlx::query_as(
        "SELECT action, COUNT(*) FROM audit_log WHERE target = $1 GROUP BY action ORDER BY action",
    )
    .bind(format!("run:{}", run_ids[0]))
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        audited,
        [("run.reuse".to_owned(), 49), ("run.start".to_owned(), 1)]
    );
}

async fn empty_and_foreign_selections_write_nothing(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let empty = submit(&app, &cookie, set, &[], false)
        .await
        .expect_err("an empty selection is refused");
    assert_eq!(empty.status, 422);
    match empty.error() {
        AppError::Invalid { message, .. } => assert_eq!(message, "No policies selected."),
        other => panic!("{other:?}"),
    }

    let ours = insert_policies(&app.db, CONTOSO, 1).await;
    let theirs = insert_policies(&app.db, FABRIKAM, 1).await;
    let mixed = submit(&app, &cookie, set, &[ours[0], theirs[0]], false)
        .await
        .expect_err("another tenant's policy is refused");
    assert_eq!(mixed.status, 422);
    let unknown_set = submit(&app, &cookie, set + 1000, &ours, false)
        .await
        .expect_err("an unknown set is refused");
    assert_eq!(unknown_set.status, 404);

    // A list that is not comma-separated ids, or one sent a field per id, is a 400 with a reason.
    for (field, ids) in [
        ("policy_ids", format!("{},,{}", ours[0], ours[0])),
        ("policy_ids", format!("{},x", ours[0])),
        ("policy_ids", "99999999999999999999".to_owned()),
        ("policy_ids[0]", ours[0].to_string()),
    ] {
        let form = Form::tenant(CONTOSO)
            .field("backup_set_id", set)
            .field(field, &ids);
        let refused = app
            .answer::<SubmittedRun>(Some(&cookie), "runs/add-policies", &form)
            .await
            .expect_err("a malformed list is refused");
        assert_eq!(refused.status, 400, "{field}={ids}: {}", refused.body);
        assert!(refused.body.contains("policy_ids"), "{}", refused.body);
    }
    assert_eq!(app.count("runs").await, 0);
}

async fn readonly_members_and_outsiders_get_403(app: TestApp) {
    let operator = app.sign_in(OPERATOR).await;
    let set = target(&app, &operator).await;
    let ids = insert_policies(&app.db, CONTOSO, 2).await;
    for user in [READONLY, OUTSIDER] {
        let cookie = app.sign_in(user).await;
        let refusal = submit(&app, &cookie, set, &ids, false)
            .await
            .expect_err("only operators and above may add");
        assert_eq!(refusal.status, 403, "{user}");
    }
    assert_eq!(app.count("runs").await, 0);
}

/// "Add selected" after "Select all N matching": the picker's filter with `all_matching`, in
/// Contoso.
async fn submit_matching(
    app: &TestApp,
    cookie: &str,
    set: i64,
    filters: &[(&str, &str)],
) -> Answer<SubmittedRun> {
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .field("all_matching", "true")
        .fields(filters);
    app.answer(Some(cookie), "runs/add-policies", &form).await
}

/// "Select all N matching" is resolved when the submit arrives, not when it was clicked: a
/// policy synced in between is in the run, one gone from Intune meanwhile is not, and two such
/// submits that resolve alike share one run (the key is over the resolved ids), as does the
/// same selection listed.
async fn select_all_is_resolved_at_submit_time(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    insert_policies(&app.db, CONTOSO, 4).await;
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    // A policy of another type, which the filter leaves out.
    sqlx::query(
        "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
         VALUES ($1, 'other-type', 'settings_catalog', 'Other type', 'windows', 0)",
    )
    .bind(tenant_id)
    .execute(app.db.pool())
    .await
    .unwrap();
    let filter = [("policy_type", "compliance")];
    let clicked = app
        .matching_ids(&cookie, CONTOSO, set, &filter)
        .await
        .expect("select all answers")
        .ids;
    let n = clicked.len();
    assert!(n >= 4, "{clicked:?}");

    // Between the click and the submit: two policies are synced, one is gone from Intune.
    let synced = insert_policies(&app.db, CONTOSO, 2).await;
    sqlx::query("UPDATE policies SET gone_from_intune_at = 1 WHERE id = $1")
        .bind(clicked[0])
        .execute(app.db.pool())
        .await
        .unwrap();

    let run = submit_matching(&app, &cookie, set, &filter)
        .await
        .expect("the run is queued");
    assert!(!run.reused);
    assert_eq!(run.total, n as i64 + 1, "resolved at submit time");
    let mut expected: Vec<i64> = clicked[1..].iter().chain(&synced).copied().collect();
    expected.sort_unstable();
    assert_eq!(stored_selection(&app).await, expected);

    // The same resolution, again or listed, is the same run.
    let again = submit_matching(&app, &cookie, set, &filter).await.unwrap();
    assert_eq!((again.run_id, again.reused), (run.run_id, true));
    let listed = submit_ok(&app, &cookie, set, &expected, false).await;
    assert_eq!((listed.run_id, listed.reused), (run.run_id, true));
    assert_eq!(app.count("runs").await, 1);
}

/// `all_matching` takes the filter, not ids: both together, a filter nothing matches, or a
/// filter the picker would refuse write nothing.
async fn all_matching_takes_no_ids_and_needs_a_match(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = target(&app, &cookie).await;
    let ids = insert_policies(&app.db, CONTOSO, 2).await;

    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .field("all_matching", "true")
        .list("policy_ids", &ids);
    let both = app
        .answer::<SubmittedRun>(Some(&cookie), "runs/add-policies", &form)
        .await
        .expect_err("ids and all_matching together are refused");
    assert_eq!(both.status, 422, "{}", both.body);
    let nothing = submit_matching(&app, &cookie, set, &[("search", "no policy is named so")])
        .await
        .expect_err("a filter nothing matches is refused");
    for refused in [&both, &nothing] {
        match refused.error() {
            AppError::Invalid { field, message } => {
                assert_eq!(
                    (field.as_str(), message.as_str()),
                    ("policy_ids", "No policies selected.")
                )
            }
            other => panic!("{other:?}"),
        }
    }
    let bad_type = submit_matching(&app, &cookie, set, &[("policy_type", "nonsense")])
        .await
        .expect_err("an unknown type is refused");
    assert_eq!(bad_type.status, 422);
    assert!(
        bad_type.error().field_message("policy_type").is_some(),
        "{}",
        bad_type.body
    );
    let bad_platform = submit_matching(&app, &cookie, set, &[("platform", "amiga")])
        .await
        .expect_err("an unknown platform is refused");
    assert!(
        bad_platform.error().field_message("platform").is_some(),
        "{}",
        bad_platform.body
    );
    assert_eq!(app.count("runs").await, 0);
}
