//! Cancelling a run through the server function, with the worker capturing from the
//! Graph simulator: a queued run ends at once with every item skipped, a running one hears the cancel
//! (in-process wake-up on SQLite, another instance's NOTIFY on PostgreSQL), takes no new item
//! and records what was in flight, a Retry-After wait ends at once, repeated cancels answer the
//! same, an ended run is a 409, and a cancel racing the run's end gives one of the two. On
//! PostgreSQL, a runner claims nothing before it listens for other instances' cancels, and gives
//! its listener's connection back when it stops.

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    run_with_items, Answer, Form, RunRow, TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER,
};
use tenantatlas::domain::graph_wait::GraphWaitReason;
use tenantatlas::domain::restore::RestoreSource;
use tenantatlas::domain::run::{CancelledRun, Lane};
use tenantatlas::domain::run_detail::RunDetail;
use tenantatlas::domain::versions::RunActivity;
use tenantatlas::domain::{RunStatus, SubmittedRun};
use tenantatlas::graph_sim::{Fault, SimHandle};
use tenantatlas::server::db::{Backend, NativePool};
use tenantatlas::server::engine::operation::Registry;
use tenantatlas::server::engine::runner::WakeUp;
use tenantatlas::server::engine::worker::{CredentialsLoader, Outcome, RunFailure, Worker};
use tenantatlas::server::graph::{GraphClient, PolicyType};
use tokio::sync::watch;
use tokio::task::JoinHandle;

both_backends!(TestApp:
    a_queued_run_is_cancelled_at_once_with_every_item_skipped,
    a_cancelled_run_settles_once_its_claim_lets_go,
    a_cancelled_run_stays_unsettled_while_its_claim_outlives_the_lease,
    a_resume_waits_until_the_cancelled_run_has_settled,
    an_add_selected_of_a_cancelled_runs_policies_waits_until_it_has_settled,
    a_restore_preview_waits_until_a_cancelled_one_of_its_source_has_settled,
    a_capture_now_racing_the_cancel_of_the_capture_in_flight_waits_until_it_has_settled,
    a_sync_racing_the_cancel_of_the_sync_in_flight_waits_until_it_has_settled,
    repeated_cancels_answer_the_same_and_ended_runs_are_refused,
    a_running_run_takes_no_new_item_and_records_captures_in_flight,
    a_multi_request_capture_in_flight_is_recorded,
    a_worker_that_misses_the_cancel_takes_no_new_item_after_its_next_batch,
    a_retry_after_wait_ends_at_once,
    cancel_and_finish_race_to_one_outcome,
    the_last_capture_in_flight_is_recorded_with_its_graph_figures,
    retry_failed_reruns_only_the_failed_items_and_resume_the_cancelled_ones,
    a_throttled_run_says_it_is_waiting_and_keeps_its_graph_figures,
    a_run_nothing_works_on_waits_for_nothing,
    the_poll_versions_move_only_when_the_runs_do,
    a_waiting_run_keeps_its_version_while_the_wait_stands,
    a_queued_drift_check_is_cancelled_with_its_planned_items_skipped,
    who_may_cancel_a_run_is_who_may_start_it,
    a_resume_takes_the_failed_items_with_the_cancelled_ones,
);

struct Fixture {
    sim: SimHandle,
    client: GraphClient,
    operator: String,
    admin: String,
    set_id: i64,
    policies: Vec<(i64, String)>,
}

async fn fixture(app: &TestApp) -> Fixture {
    let (sim, client) = common::sim_and_client(200).await;
    let policies =
        common::insert_sim_compliance(&app.db, &client, &common::creds(CONTOSO), usize::MAX).await;
    assert!(policies.len() >= 24, "enough compliance policies");
    let operator = app.sign_in(OPERATOR).await;
    let admin = app.sign_in(ADMIN).await;
    let set_id = common::backup_set(app, &operator, CONTOSO, "Cancel").await;
    sim.reset_counters();
    Fixture {
        sim,
        client,
        operator,
        admin,
        set_id,
        policies,
    }
}

impl Fixture {
    /// Throttles every capture of the policies in `range` (for the whole test), each answer
    /// asking for a wait of `retry_after_secs`.
    fn throttle(&self, range: std::ops::Range<usize>, retry_after_secs: u64) {
        for (_, graph_id) in &self.policies[range] {
            self.sim.set_fault(
                graph_id,
                Fault::Throttle {
                    times: 1_000,
                    retry_after_secs,
                },
            );
        }
    }

    /// Waits (20 s at most) until the run's page says it waits on Graph.
    async fn wait_until_waiting(&self, app: &TestApp, run_id: i64) {
        common::wait_until(
            "never said it waits",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || async { self.detail(app, run_id).await.graph_wait.is_some() },
        )
        .await;
    }

    /// Waits (10 s at most) until the simulator has been asked about `graph_id`.
    async fn wait_until_asked(&self, graph_id: &str) {
        common::wait_until(
            "never asked",
            Duration::from_secs(10),
            Duration::from_millis(5),
            || async { !self.sim.counters().for_path(graph_id).is_empty() },
        )
        .await;
    }
    /// Retry (or resume) as the operator.
    async fn retry(&self, app: &TestApp, run_id: i64) -> Answer<SubmittedRun> {
        app.retry_failed(&self.operator, CONTOSO, run_id).await
    }

    fn worker(&self, app: &TestApp, name: &str) -> Worker {
        common::sim_worker(&app.db, &self.client, name)
    }

    /// [`Self::worker`] that also runs restores (previews and executes).
    fn restore_worker(&self, app: &TestApp, name: &str) -> Worker {
        let client = Arc::new(self.client.clone());
        let loader: CredentialsLoader =
            Arc::new(|_tenant| Box::pin(async { Ok::<_, RunFailure>(common::creds(CONTOSO)) }));
        Worker::new(
            app.db.clone(),
            Registry::full(client.clone(), client),
            loader,
            name,
        )
    }

    /// A runner of another instance named `name`: on PostgreSQL only the NOTIFYs reach it (its
    /// wake-ups and cancels are not the app's); its poll is slow enough never to matter.
    fn runner_elsewhere(&self, app: &TestApp, name: &str) -> (watch::Sender<bool>, JoinHandle<()>) {
        common::start_runner(
            self.worker(app, name),
            &WakeUp::default(),
            &app.db,
            Duration::from_secs(60),
        )
    }

    /// Queues "add policies" of the policies in `range` as the operator; the run's id.
    async fn submit(&self, app: &TestApp, range: std::ops::Range<usize>) -> i64 {
        let ids: Vec<i64> = self.policies[range].iter().map(|(id, _)| *id).collect();
        common::submit(app, &self.operator, CONTOSO, self.set_id, &ids).await
    }

    /// The run detail page's data (first page of items), as the operator reads it.
    async fn detail(&self, app: &TestApp, run_id: i64) -> RunDetail {
        app.run_detail(Some(&self.operator), CONTOSO, run_id, &[])
            .await
            .expect("the operator reads the run")
    }

    /// The admin cancels.
    async fn cancel(&self, app: &TestApp, run_id: i64) -> Answer<CancelledRun> {
        app.cancel_run(&self.admin, CONTOSO, run_id).await
    }

    /// "Compare with Intune" of the fixture's backup set, queued as the operator.
    async fn check_drift(&self, app: &TestApp) -> SubmittedRun {
        let form = Form::tenant(CONTOSO).field("backup_set_id", self.set_id);
        app.answer(Some(&self.operator), "runs/check-drift", &form)
            .await
            .expect("the drift check is queued")
    }

    /// Policies the simulator was asked about, by Graph id.
    fn touched(&self) -> BTreeSet<String> {
        let counters = self.sim.counters();
        self.policies
            .iter()
            .filter(|(_, graph_id)| !counters.for_path(graph_id).is_empty())
            .map(|(_, graph_id)| graph_id.clone())
            .collect()
    }
}

/// The simulated Contoso tenant's settings catalog policies, put in the inventory, as (policy
/// id, Graph id): a capture of one asks Graph more than once (the policy, then its `settings`
/// pages).
async fn insert_sim_settings_catalog(app: &TestApp, client: &GraphClient) -> Vec<(i64, String)> {
    let tenant_id = common::tenant_id(&app.db, CONTOSO).await;
    let listed = client
        .list_policies(&common::creds(CONTOSO), PolicyType::SettingsCatalog)
        .await
        .unwrap();
    let mut policies = Vec::new();
    for listing in listed {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
             VALUES ($1, $2, 'settings_catalog', $3, $4, 0) RETURNING id",
        )
        .bind(tenant_id)
        .bind(&listing.graph_id)
        .bind(&listing.display_name)
        .bind(&listing.platform)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        policies.push((id, listing.graph_id));
    }
    policies
}

/// Run `run_id`'s row.
async fn run_row(app: &TestApp, run_id: i64) -> RunRow {
    common::run_row(&app.db, run_id).await
}

async fn items_skipped_as_cancelled(app: &TestApp, run_id: i64) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_items WHERE run_id = $1 AND outcome = 'skipped' AND reason_code = 'cancelled'",
    )
    .bind(run_id)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
}

async fn notifications_of(app: &TestApp, run_id: i64) -> Vec<(String, String)> {
    sqlx::query_as("SELECT title, body FROM notifications WHERE link LIKE $1 ORDER BY id")
        .bind(format!("%/runs/{run_id}"))
        .fetch_all(app.db.pool())
        .await
        .unwrap()
}

async fn a_queued_run_is_cancelled_at_once_with_every_item_skipped(app: TestApp) {
    let f = fixture(&app).await;
    let run_id = f.submit(&app, 0..12).await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        reason_code: reason,
        ..
    } = run_row(&app, run_id).await;
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("cancelled", Some("cancelled"))
    );
    assert_eq!(
        (total, processed, succeeded, failed, skipped),
        (12, 12, 0, 0, 12)
    );
    assert_eq!(items_skipped_as_cancelled(&app, run_id).await, 12);
    assert_eq!(
        notifications_of(&app, run_id).await,
        [(
            format!("Run {run_id}: Cancelled"),
            "Cancelled by Avery Admin.".to_owned()
        )]
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'run.cancel' AND target = $1",
    )
    .bind(format!("run:{run_id}"))
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);
    // Not active any more: no worker takes it, and the same selection starts a new run.
    let worker = f.worker(&app, "w1");
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        tenantatlas::server::engine::worker::Outcome::EmptyQueue
    );
    assert_ne!(f.submit(&app, 0..12).await, run_id);
    assert!(
        f.touched().is_empty(),
        "nothing of the cancelled run reached Graph"
    );
}

/// The pages poll until a run is settled: a cancelled run is not while the capture that was in
/// flight is still to be recorded over the cancel's skip (its version moves when it is), and is
/// once its claim has concluded. A queued run cancelled is settled at once.
async fn a_cancelled_run_settles_once_its_claim_lets_go(app: TestApp) {
    let f = fixture(&app).await;
    let (shared, operator, set_id) = (&app, f.operator.as_str(), f.set_id);
    let panel_row = move |run_id: i64| async move {
        shared
            .backup_set_runs(operator, CONTOSO, set_id)
            .await
            .expect("the run panel's runs")
            .into_iter()
            .find(|run| run.id == run_id)
            .expect("the run is listed")
    };
    let version = move |run_id: i64| async move {
        shared
            .run_version(operator, CONTOSO, run_id)
            .await
            .expect("the run's version")
    };

    let queued = f.submit(&app, 1..3).await;
    assert!(!f.detail(&app, queued).await.settled, "a queued run moves");
    f.cancel(&app, queued).await.expect("the run is cancelled");
    assert!(
        f.detail(&app, queued).await.settled,
        "no claim ever held it"
    );
    assert!(panel_row(queued).await.settled);

    // The capture's answer takes 1.5 s: the cancel comes while it is on its way.
    common::answer_after(&f.sim, 1_500);
    let graph_id = &f.policies[0].1;
    let run_id = f.submit(&app, 0..1).await;
    let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    f.wait_until_asked(graph_id).await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    let cancelled = f.detail(&app, run_id).await;
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    assert!(!cancelled.settled, "the capture in flight is still to come");
    assert_eq!((cancelled.succeeded, cancelled.skipped), (0, 1));
    assert!(!panel_row(run_id).await.settled, "the panel polls on too");
    let version_cancelled = version(run_id).await;

    working.await.unwrap().unwrap();
    let concluded = f.detail(&app, run_id).await;
    assert!(concluded.settled, "the claim let go of the run");
    assert_eq!(
        (
            concluded.processed_items,
            concluded.succeeded,
            concluded.skipped
        ),
        (1, 1, 0),
        "the late outcome is counted"
    );
    assert_ne!(version(run_id).await, version_cancelled, "a poll sees it");
    assert!(panel_row(run_id).await.settled);
}

/// A capture in flight when the run is cancelled may take longer than a lease (a slow Graph, a
/// restore's write past its point of no return honouring a Retry-After): its claim keeps
/// renewing the cancelled run's lease, so the run reads unsettled (the pages poll on) until
/// the claim has recorded it and let go, not from when the lease would have expired.
async fn a_cancelled_run_stays_unsettled_while_its_claim_outlives_the_lease(app: TestApp) {
    let f = fixture(&app).await;
    // The capture's answer takes 5 s, the lease 2 s (renewed every ~0.7 s).
    common::answer_after(&f.sim, 5_000);
    let graph_id = &f.policies[0].1;
    let run_id = f.submit(&app, 0..1).await;
    let worker = f
        .worker(&app, "w1")
        .with_cancels(app.wake.cancels())
        .with_lease(Duration::from_secs(2));
    let mut working = tokio::spawn(async move { worker.try_execute_task().await });
    f.wait_until_asked(graph_id).await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    let cancelled_at = Instant::now();
    // Every read while the claim works on reads unsettled, well past the lease.
    let worked = loop {
        tokio::select! {
            worked = &mut working => break worked,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if !f.detail(&app, run_id).await.settled {
            continue;
        }
        // Read just as the claim let go, before its task returned: it returns at once.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            working.is_finished(),
            "settled {:?} after the cancel while the capture is still in flight",
            cancelled_at.elapsed()
        );
    };
    worked.unwrap().unwrap();
    assert!(
        cancelled_at.elapsed() > Duration::from_secs(3),
        "the capture outlived the lease"
    );
    let concluded = f.detail(&app, run_id).await;
    assert!(concluded.settled, "the claim let go of the run");
    assert_eq!(
        (concluded.succeeded, concluded.skipped),
        (1, 0),
        "the late outcome is counted"
    );
}

/// A resume right after the cancel would take the item still in flight again, and its run
/// could work beside the old claim: it is refused (nothing written) and not offered until the
/// cancelled run has settled, then allowed.
async fn a_resume_waits_until_the_cancelled_run_has_settled(app: TestApp) {
    let f = fixture(&app).await;
    common::answer_after(&f.sim, 4_500);
    let graph_id = &f.policies[0].1;
    let run_id = f.submit(&app, 0..6).await;
    let worker = f
        .worker(&app, "w1")
        .with_cancels(app.wake.cancels())
        .with_items_at_once(1);
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    f.wait_until_asked(graph_id).await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    let runs_before = runs_count(&app).await;
    let refused = f.retry(&app, run_id).await.expect_err("not settled yet");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("has not settled yet: what was in flight when it was cancelled"),
        "{}",
        refused.body
    );
    assert_eq!(runs_count(&app).await, runs_before, "nothing written");
    let unsettled = f.detail(&app, run_id).await;
    assert!(!unsettled.settled, "the capture is still in flight");
    assert_eq!(unsettled.retry_label(), None, "no resume offered yet");

    working.await.unwrap().unwrap();
    let settled = f.detail(&app, run_id).await;
    assert!(settled.settled);
    assert_eq!(settled.retry_label().as_deref(), Some("Resume 5 cancelled"));
    let resumed = f.retry(&app, run_id).await.expect("a settled run resumes");
    assert_ne!(resumed.run_id, run_id);
    assert_eq!(runs_count(&app).await, runs_before + 1);
}

/// "Add selected" of the policies a cancelled run was capturing would queue a run that a claim
/// takes beside the old one (the cancelled run no longer occupies the tenant's bulk lane), and
/// whichever capture is recorded last becomes the policy's current version, an older read
/// possibly over a newer one. Like a resume, it is refused (nothing written, the policy not
/// read again) until the cancelled run has settled, then allowed.
async fn an_add_selected_of_a_cancelled_runs_policies_waits_until_it_has_settled(app: TestApp) {
    let f = fixture(&app).await;
    common::answer_after(&f.sim, 3_000);
    let graph_id = &f.policies[0].1;
    let run_id = f.submit(&app, 0..1).await;
    let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    f.wait_until_asked(graph_id).await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    let runs_before = runs_count(&app).await;
    let ids = [f.policies[0].0];
    let add_again = || app.add_policies(&f.operator, CONTOSO, f.set_id, &ids, &[]);
    let refused = add_again().await.expect_err("not settled yet");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains(RunActivity::NOT_SETTLED),
        "{}",
        refused.body
    );
    assert_eq!(runs_count(&app).await, runs_before, "nothing written");
    // A claim free to work (the bulk lane counts only running runs) finds nothing beside the
    // cancelled run's: the policy was read once, by that run.
    let beside = f.worker(&app, "w2").try_execute_task().await.unwrap();
    assert_eq!(beside, Outcome::EmptyQueue);
    assert_eq!(f.sim.counters().for_path(graph_id).len(), 1, "one read");
    assert!(!f.detail(&app, run_id).await.settled, "still in flight");

    working.await.unwrap().unwrap();
    assert!(f.detail(&app, run_id).await.settled);
    let added = add_again()
        .await
        .expect("a settled run's policies are added again");
    assert!(!added.reused);
    assert_ne!(added.run_id, run_id);
    assert_eq!(runs_count(&app).await, runs_before + 1);
}

/// A restore preview stores each policy's live read as its current version, as a capture does:
/// started again while a cancelled preview of the same source still reads, it would read beside
/// that claim and the older read could be recorded last. It is refused until the cancelled
/// preview has settled, then allowed.
async fn a_restore_preview_waits_until_a_cancelled_one_of_its_source_has_settled(app: TestApp) {
    let f = fixture(&app).await;
    let (policy, graph_id) = f.policies[0].clone();
    let backup = f.submit(&app, 0..1).await;
    f.worker(&app, "w0").try_execute_task().await.unwrap();
    assert_eq!(f.detail(&app, backup).await.status, RunStatus::Completed);
    f.sim.reset_counters();
    common::answer_after(&f.sim, 3_000);
    let source = RestoreSource::BackupSet(f.set_id);
    let ids = [policy];
    let preview = || app.start_restore_preview(&f.admin, CONTOSO, source, &ids, &[]);
    let run_id = preview().await.expect("the preview is queued").run_id;
    let worker = f
        .restore_worker(&app, "w1")
        .with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    f.wait_until_asked(&graph_id).await;
    f.cancel(&app, run_id)
        .await
        .expect("the preview is cancelled");
    let runs_before = runs_count(&app).await;
    let refused = preview().await.expect_err("not settled yet");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains(RunActivity::NOT_SETTLED),
        "{}",
        refused.body
    );
    assert_eq!(runs_count(&app).await, runs_before, "nothing written");

    working.await.unwrap().unwrap();
    assert!(f.detail(&app, run_id).await.settled);
    let again = preview()
        .await
        .expect("a settled preview's source previews again");
    assert_ne!(again.run_id, run_id);
    assert_eq!(runs_count(&app).await, runs_before + 1);
}

/// A "Capture now" while the policy's capture is in flight answers with that run; a cancel of
/// it committed while the second click is being answered, right before the click looks for it
/// (so the look finds no active capture), must not let the click queue a second capture beside
/// the cancelled one's GET still in flight: the settle gate comes after the look, so it sees
/// the cancelled capture unsettled and refuses (409, nothing written) until it has settled.
async fn a_capture_now_racing_the_cancel_of_the_capture_in_flight_waits_until_it_has_settled(
    app: TestApp,
) {
    use tenantatlas::domain::{AppError, Capability};
    use tenantatlas::server::auth::authorize_user;
    use tenantatlas::server::runs::start::capture_policy_after;
    let f = fixture(&app).await;
    common::answer_after(&f.sim, 3_000);
    let (policy, graph_id) = f.policies[0].clone();
    let form = Form::tenant(CONTOSO).field("policy_id", policy);
    let capture: SubmittedRun = app
        .answer(Some(&f.operator), "runs/capture-policy", &form)
        .await
        .expect("the capture is queued");
    let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    f.wait_until_asked(&graph_id).await;
    let runs_before = runs_count(&app).await;

    // The second click: the cancel of the capture in flight commits while it is answered.
    let user_id = common::user_id(&app.db, OPERATOR).await;
    let ctx = authorize_user(&app.db, user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let cancel = async {
        f.cancel(&app, capture.run_id)
            .await
            .expect("the capture is cancelled");
    };
    match capture_policy_after(&app.db, &ctx, policy, cancel).await {
        Err(AppError::Conflict(message)) => {
            assert!(message.contains(RunActivity::NOT_SETTLED), "{message}")
        }
        other => panic!(
            "a capture started beside the cancelled one still in flight (run {}): {other:?}",
            capture.run_id
        ),
    }
    assert_eq!(runs_count(&app).await, runs_before, "nothing written");
    assert_eq!(f.sim.counters().for_path(&graph_id).len(), 1, "one read");

    working.await.unwrap().unwrap();
    assert!(f.detail(&app, capture.run_id).await.settled);
}

/// "Sync from Intune" while the tenant's sync is in flight, with a cancel of it committed right
/// before the click looks for it: as for a capture, the settle gate after the look refuses
/// (409, nothing written) until the cancelled sync has settled, instead of a second sync
/// listing beside the first's requests still in flight.
async fn a_sync_racing_the_cancel_of_the_sync_in_flight_waits_until_it_has_settled(app: TestApp) {
    use tenantatlas::domain::{AppError, Capability};
    use tenantatlas::server::auth::authorize_user;
    use tenantatlas::server::runs::start::sync_inventory_after;
    let f = fixture(&app).await;
    common::answer_after(&f.sim, 3_000);
    let sync: SubmittedRun = app
        .answer(
            Some(&f.operator),
            "runs/sync-inventory",
            &Form::tenant(CONTOSO),
        )
        .await
        .expect("the sync is queued");
    let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    common::wait_until(
        "never claimed",
        Duration::from_secs(10),
        Duration::from_millis(5),
        || async { run_row(&app, sync.run_id).await.status == "running" },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let runs_before = runs_count(&app).await;

    let user_id = common::user_id(&app.db, OPERATOR).await;
    let ctx = authorize_user(&app.db, user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let cancel = async {
        f.cancel(&app, sync.run_id)
            .await
            .expect("the sync is cancelled");
    };
    match sync_inventory_after(&app.db, &ctx, cancel).await {
        Err(AppError::Conflict(message)) => {
            assert!(message.contains(RunActivity::NOT_SETTLED), "{message}")
        }
        other => panic!(
            "a sync started beside the cancelled one still in flight (run {}): {other:?}",
            sync.run_id
        ),
    }
    assert_eq!(runs_count(&app).await, runs_before, "nothing written");

    working.await.unwrap().unwrap();
    assert!(f.detail(&app, sync.run_id).await.settled);
}

/// How many runs the database holds, of every tenant.
async fn runs_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

async fn repeated_cancels_answer_the_same_and_ended_runs_are_refused(app: TestApp) {
    let f = fixture(&app).await;
    let run_id = f.submit(&app, 0..3).await;
    let first = f.cancel(&app, run_id).await.expect("the run is cancelled");
    let again = f
        .cancel(&app, run_id)
        .await
        .expect("a repeated cancel is answered");
    assert_eq!(again, first, "a repeated cancel answers the same");
    assert_eq!(
        notifications_of(&app, run_id).await.len(),
        1,
        "one notification"
    );

    let done = f.submit(&app, 3..5).await;
    f.worker(&app, "w1").try_execute_task().await.unwrap();
    assert_eq!(run_row(&app, done).await.status, "completed");
    let refused = f.cancel(&app, done).await.expect_err("the run ended");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("This run already finished."),
        "{}",
        refused.body
    );
    assert_eq!(run_row(&app, done).await.status, "completed", "unchanged");

    // Another tenant's run, or none, is not found.
    let refused = f.cancel(&app, done + 1000).await.expect_err("no such run");
    assert_eq!(refused.status, 404);
}

async fn a_running_run_takes_no_new_item_and_records_captures_in_flight(app: TestApp) {
    let f = fixture(&app).await;
    common::answer_after(&f.sim, 300);
    let run_id = f.submit(&app, 0..24).await;
    // On PostgreSQL the worker is another instance's: only the NOTIFY reaches it.
    let (stop, runner) = match app.db.backend() {
        Backend::Sqlite => common::start_runner(
            f.worker(&app, "other-instance"),
            &app.wake,
            &app.db,
            Duration::from_secs(60),
        ),
        Backend::Postgres => f.runner_elsewhere(&app, "other-instance"),
    };
    // The first captures are recorded: the run is well under way.
    common::wait_run(&app.db, run_id, Duration::from_secs(60), |run| {
        run.processed_items > 0
    })
    .await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    // The claim has ended: the captures in flight are recorded (every policy Graph was asked
    // about is counted) and the run's Graph figures are final (a claim writes the last of them
    // when it ends). Until then a capture is in flight or a figure is missing.
    let ended = common::wait_run(&app.db, run_id, Duration::from_secs(60), |run| {
        run.status == "cancelled"
            && run.succeeded as usize == f.touched().len()
            && run.graph_requests as usize == f.sim.counters().graph_requests()
    })
    .await;
    let touched_when_ended = f.touched();
    // Once the runner has stopped, nothing of it can still start a capture.
    stop.send_replace(true);
    runner.await.unwrap();
    let touched = f.touched();
    assert_eq!(touched, touched_when_ended, "no new item after the cancel");
    assert!(
        touched.len() < 24,
        "the run stopped early: {}",
        touched.len()
    );

    let run = run_row(&app, run_id).await;
    assert_eq!(run, ended, "nothing written to the run since");
    assert_eq!(
        (run.total_items, run.processed_items),
        (24, 24),
        "processed = total"
    );
    assert_eq!(run.succeeded + run.failed + run.skipped, 24);
    assert_eq!(run.failed, 0);
    assert_eq!(items_skipped_as_cancelled(&app, run_id).await, run.skipped);
    assert_eq!(
        run.succeeded as usize,
        touched.len(),
        "every capture that started was recorded"
    );
    let in_set: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backup_items WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(in_set, run.succeeded, "what was captured stays in the set");
}

/// The captures in flight when the cancel comes each have requests still to send (a settings
/// catalog policy's `settings` after the policy): with the tenant's token and budget at hand
/// they are sent without waiting, and every capture that started is recorded, none dropped
/// half-way although Graph was asked.
async fn a_multi_request_capture_in_flight_is_recorded(app: TestApp) {
    let f = fixture(&app).await;
    let catalog = insert_sim_settings_catalog(&app, &f.client).await;
    assert!(catalog.len() >= 24, "enough settings catalog policies");
    let catalog = &catalog[..24];
    f.sim.reset_counters();
    common::answer_after(&f.sim, 300);
    let ids: Vec<i64> = catalog.iter().map(|(id, _)| *id).collect();
    let run_id = common::submit(&app, &f.operator, CONTOSO, f.set_id, &ids).await;
    // On PostgreSQL the worker is another instance's: only the NOTIFY reaches it.
    let (stop, runner) = match app.db.backend() {
        Backend::Sqlite => common::start_runner(
            f.worker(&app, "other-instance"),
            &app.wake,
            &app.db,
            Duration::from_secs(60),
        ),
        Backend::Postgres => f.runner_elsewhere(&app, "other-instance"),
    };
    common::wait_run(&app.db, run_id, Duration::from_secs(60), |run| {
        run.processed_items > 0
    })
    .await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    common::wait_until(
        "never settled",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async { f.detail(&app, run_id).await.settled },
    )
    .await;
    stop.send_replace(true);
    runner.await.unwrap();

    let counters = f.sim.counters();
    // A capture started once Graph was asked for its policy.
    let touched = catalog
        .iter()
        .filter(|(_, graph_id)| !counters.for_path(graph_id).is_empty())
        .count();
    let run = run_row(&app, run_id).await;
    assert_eq!(run.status, "cancelled");
    assert!(touched < 24, "the run stopped early: {touched}");
    assert_eq!((run.total_items, run.processed_items), (24, 24));
    assert_eq!(run.failed, 0);
    assert_eq!(items_skipped_as_cancelled(&app, run_id).await, run.skipped);
    assert_eq!(
        run.succeeded as usize, touched,
        "every capture that started was recorded: {run:?}"
    );
    let in_set: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backup_items WHERE run_id = $1")
        .bind(run_id)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(in_set, run.succeeded, "what was captured stays in the set");
}

/// The cancel's signal never reaches the worker (another instance whose NOTIFY was lost, a
/// worker with cancellation signals of its own: the same on both engines). Its next batch finds
/// the run cancelled and stops the items, instead of the heartbeat a third of a lease later:
/// no item the cancel skipped starts, and none of them ends `succeeded` over its skip.
async fn a_worker_that_misses_the_cancel_takes_no_new_item_after_its_next_batch(app: TestApp) {
    let f = fixture(&app).await;
    common::answer_after(&f.sim, 300);
    let run_id = f.submit(&app, 0..24).await;
    // Two items at once: the 24 would take seconds more after the cancel (its lease's
    // heartbeat, 20 s away, would stop them only after the last).
    let worker = f.worker(&app, "deaf-instance").with_items_at_once(2);
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    common::wait_run(&app.db, run_id, Duration::from_secs(60), |run| {
        run.processed_items > 0
    })
    .await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    // The claim ends once what was in flight is recorded. The timeout is only a bound on a
    // hung claim, not what catches a missed stop: without the batch's stop the claim goes on
    // to the 24th item well within it (its heartbeat, 20 s away, comes after the last), and
    // the `< 24` assertion below fails.
    tokio::time::timeout(Duration::from_secs(20), working)
        .await
        .expect("the claim ended")
        .unwrap()
        .unwrap();
    let touched = f.touched();
    assert!(
        touched.len() < 24,
        "the run stopped early: {}",
        touched.len()
    );
    let run = run_row(&app, run_id).await;
    assert_eq!(run.status, "cancelled");
    assert_eq!((run.total_items, run.processed_items), (24, 24));
    assert_eq!(run.succeeded + run.failed + run.skipped, 24);
    assert_eq!(items_skipped_as_cancelled(&app, run_id).await, run.skipped);
    assert_eq!(
        run.succeeded as usize,
        touched.len(),
        "every capture that started was recorded, and only those"
    );
}

async fn a_retry_after_wait_ends_at_once(app: TestApp) {
    let f = fixture(&app).await;
    f.throttle(0..6, 60);
    let run_id = f.submit(&app, 0..6).await;
    let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    common::wait_until_throttled(&f.sim).await;
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    let cancelled_at = Instant::now();
    // The wait is 60 s; ending within 10 s (a margin for a loaded machine) proves it was cut.
    tokio::time::timeout(Duration::from_secs(10), working)
        .await
        .expect("the 60 s wait ended at once")
        .unwrap()
        .unwrap();
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        ..
    } = run_row(&app, run_id).await;
    assert_eq!(
        (
            status.as_str(),
            total,
            processed,
            succeeded,
            failed,
            skipped
        ),
        ("cancelled", 6, 6, 0, 0, 6),
        "the waiting captures were not recorded"
    );
}

async fn cancel_and_finish_race_to_one_outcome(app: TestApp) {
    let f = fixture(&app).await;
    let mut seen = BTreeSet::new();
    for round in 0..16 {
        let run_id = f.submit(&app, round..round + 1).await;
        let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
        let working = tokio::spawn(async move { worker.try_execute_task().await });
        tokio::time::sleep(Duration::from_millis((round as u64 * 3) % 25)).await;
        let answer = f.cancel(&app, run_id).await;
        working.await.unwrap().unwrap();
        let RunRow {
            status,
            total_items: total,
            processed_items: processed,
            succeeded,
            failed,
            skipped,
            ..
        } = run_row(&app, run_id).await;
        match answer {
            Ok(cancelled) => assert_eq!(status, "cancelled", "{cancelled:?}"),
            Err(refused) if refused.status == 409 => {
                assert_eq!(status, "completed", "{}", refused.body);
                assert!(
                    refused.body.contains("This run already finished."),
                    "{}",
                    refused.body
                );
            }
            Err(refused) => panic!("cancel answered {refused:?}"),
        }
        seen.insert(status.clone());
        assert_eq!((total, processed), (1, 1), "round {round}");
        assert_eq!(succeeded + failed + skipped, 1);
        let notes = notifications_of(&app, run_id).await;
        assert_eq!(notes.len(), 1, "one end, one notification: {notes:?}");
        assert_eq!(
            notes[0].0.contains("Cancelled"),
            status == "cancelled",
            "{notes:?}"
        );
    }
    assert!(!seen.is_empty());
}

/// The run's last item is being captured when the cancel comes: the run is cancelled, and the
/// capture, its counts and what it did with Graph are still written (an add-policies run ends in
/// the transaction of its last batch, which a cancelled run cannot).
async fn the_last_capture_in_flight_is_recorded_with_its_graph_figures(app: TestApp) {
    let f = fixture(&app).await;
    let mut knobs = f.sim.knobs();
    // The truncated first answer makes the capture send its request again; the cancel comes
    // while that second request is answered (250 ms), after the wait between the two (a cancel
    // during that wait would end the capture unrecorded). The second request is not yet in the
    // figures the run wrote while it went on, so only the run's end can keep it.
    knobs.latency_ms = 250;
    f.sim.set_knobs(knobs);
    let graph_id = &f.policies[0].1;
    f.sim.set_fault(graph_id, Fault::Truncated { times: 1 });
    let run_id = f.submit(&app, 0..1).await;
    let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    let started = Instant::now();
    while f.sim.counters().for_path(graph_id).len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never repeated"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    working.await.unwrap().unwrap();

    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        ..
    } = run_row(&app, run_id).await;
    assert_eq!(status, "cancelled");
    assert_eq!(
        (total, processed, succeeded, failed, skipped),
        (1, 1, 1, 0, 0),
        "the capture replaced the cancel's skip"
    );
    let (requests, wait): (i64, Option<String>) =
        sqlx::query_as("SELECT graph_requests, graph_wait_reason FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(
        requests as usize,
        f.sim.counters().graph_requests(),
        "the Graph figures are kept"
    );
    assert!(requests > 0);
    assert_eq!(wait, None);
    let notes = notifications_of(&app, run_id).await;
    assert_eq!(notes.len(), 1, "one end, one notification: {notes:?}");
    assert!(notes[0].0.contains("Cancelled"), "{notes:?}");
}

async fn retry_failed_reruns_only_the_failed_items_and_resume_the_cancelled_ones(app: TestApp) {
    let f = fixture(&app).await;
    let worker = f.worker(&app, "w1");
    // One policy already in the set (skipped), two that fail, three that succeed.
    let first = f.submit(&app, 0..1).await;
    worker.try_execute_task().await.unwrap();
    assert_eq!(run_row(&app, first).await.status, "completed");
    for (_, graph_id) in &f.policies[1..3] {
        f.sim.set_fault(graph_id, Fault::ServerError);
    }
    let parent = f.submit(&app, 0..6).await;
    worker.try_execute_task().await.unwrap();
    let RunRow {
        status,
        succeeded,
        failed,
        skipped,
        ..
    } = run_row(&app, parent).await;
    assert_eq!(
        (status.as_str(), succeeded, failed, skipped),
        ("completed_with_errors", 3, 2, 1)
    );

    // Not before the failures are cleared: a retry is a run of the failed two only.
    f.sim.set_knobs(tenantatlas::graph_sim::Knobs::default());
    let retry = f.retry(&app, parent).await.expect("the retry is queued");
    let retry_id = retry.run_id;
    assert_eq!((retry.total, retry.reused), (2, false));
    // A double-click makes one run.
    let again = f.retry(&app, parent).await.expect("the retry is reused");
    assert_eq!((again.run_id, again.reused), (retry_id, true));
    let retry_of: Option<i64> = sqlx::query_scalar("SELECT retry_of FROM runs WHERE id = $1")
        .bind(retry_id)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(retry_of, Some(parent));
    // Each of the two run pages links to the other; the parent offers its two failed items.
    let parent_page = f.detail(&app, parent).await;
    assert_eq!(parent_page.retried_by, [retry_id]);
    assert_eq!(parent_page.retry_items, 2);
    assert_eq!(f.detail(&app, retry_id).await.retry_of, Some(parent));
    let retried: Vec<i64> =
        sqlx::query_scalar("SELECT policy_id FROM run_items WHERE run_id = $1 ORDER BY policy_id")
            .bind(retry_id)
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert!(retried.is_empty(), "items are written at the claim");
    worker.try_execute_task().await.unwrap();
    let RunRow {
        status,
        total_items: total,
        succeeded,
        ..
    } = run_row(&app, retry_id).await;
    assert_eq!((status.as_str(), total, succeeded), ("completed", 2, 2));
    let retried: Vec<i64> =
        sqlx::query_scalar("SELECT policy_id FROM run_items WHERE run_id = $1 ORDER BY policy_id")
            .bind(retry_id)
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    let mut expected: Vec<i64> = f.policies[1..3].iter().map(|(id, _)| *id).collect();
    expected.sort_unstable();
    assert_eq!(retried, expected, "only the failed items");

    // Nothing failed: nothing to retry.
    let refused = f.retry(&app, retry_id).await.expect_err("nothing failed");
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(
        refused.body.contains("Nothing to retry."),
        "{}",
        refused.body
    );

    // Resume: a cancelled run's skipped-as-cancelled items, and nothing else.
    let cancelled = f.submit(&app, 6..10).await;
    f.cancel(&app, cancelled)
        .await
        .expect("the run is cancelled");
    assert_eq!(
        f.detail(&app, cancelled).await.retry_items,
        4,
        "Resume 4 cancelled"
    );
    let resumed = f
        .retry(&app, cancelled)
        .await
        .expect("the resume is queued");
    assert_eq!(resumed.total, 4);
    worker.try_execute_task().await.unwrap();
    let RunRow {
        status,
        total_items: total,
        succeeded,
        ..
    } = run_row(&app, resumed.run_id).await;
    assert_eq!((status.as_str(), total, succeeded), ("completed", 4, 4));
}

async fn a_throttled_run_says_it_is_waiting_and_keeps_its_graph_figures(app: TestApp) {
    let f = fixture(&app).await;
    // The first capture is throttled for 3 s (the whole tenant pauses); the others are slow
    // enough that the run goes on for seconds after the pause.
    f.sim.set_fault(
        &f.policies[0].1,
        Fault::Throttle {
            times: 1,
            retry_after_secs: 3,
        },
    );
    common::answer_after(&f.sim, 500);
    let n = f.policies.len().min(48);
    let run_id = f.submit(&app, 0..n).await;
    let worker = f.worker(&app, "w1");
    let working = tokio::spawn(async move { worker.try_execute_task().await });

    let started = Instant::now();
    let mut seen_wait = None;
    let mut cleared_while_running = false;
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never ended"
        );
        let page = f.detail(&app, run_id).await;
        let wait = page.graph_wait;
        if !page.status.is_active() {
            assert!(wait.is_none(), "an ended run waits for nothing: {wait:?}");
            break;
        }
        if wait.is_some() && seen_wait.is_none() {
            seen_wait = wait;
        }
        if wait.is_none() && seen_wait.is_some() && page.status == RunStatus::Running {
            cleared_while_running = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    working.await.unwrap().unwrap();
    let wait = seen_wait.expect("the 3 s throttle was shown while the run waited");
    assert_eq!(wait.reason, GraphWaitReason::Throttled, "{wait:?}");
    let left = wait.resumes_in_ms.expect("a known end");
    assert!((0..=3_000).contains(&left), "{left} ms");
    assert!(
        cleared_while_running,
        "the wait cleared once requests flowed again"
    );

    let page = f.detail(&app, run_id).await;
    assert_eq!(page.status, RunStatus::Completed, "{page:?}");
    let figures = page.graph;
    assert!(
        figures.requests > n as i64,
        "every capture and the retry: {figures:?}"
    );
    assert_eq!(figures.throttled, 1, "{figures:?}");
    assert_eq!(figures.server_errors, 0, "{figures:?}");
    assert!(figures.retries >= 1, "{figures:?}");
    assert!(
        figures.waited_ms >= 2_500,
        "the throttled capture waited its 3 s: {figures:?}"
    );
    // What the simulator saw agrees with the run's count.
    assert_eq!(f.sim.counters().with_status(429), 1);
}

/// A claim whose work failed while its items waited on Graph leaves no wait behind: the page
/// would say "resuming in 0 s" of a run nothing works on until the next claim. Nor does a claim
/// that died while waiting: the next claim starts from no wait.
async fn a_run_nothing_works_on_waits_for_nothing(app: TestApp) {
    let f = fixture(&app).await;
    f.throttle(0..2, 10);
    let run_id = f.submit(&app, 0..2).await;
    let worker = f.worker(&app, "w1");
    let working = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.try_execute_task().await })
    };
    f.wait_until_waiting(&app, run_id).await;
    // The work fails (its task is gone) and is counted, as `try_execute_task` does on an error.
    working.abort();
    let _ = working.await;
    worker
        .work_failed(run_id, 1, "database down")
        .await
        .expect("the failure is counted");
    let page = f.detail(&app, run_id).await;
    assert_eq!(page.status, RunStatus::Running, "back in the queue");
    assert_eq!(page.graph_wait, None, "nothing waits on Graph for it");

    // A claim that died while waiting left its wait; the next claim does not keep it.
    sqlx::query(
        "UPDATE runs SET graph_wait_reason = 'throttled', graph_wait_until = $1, \
         lease_expires_at = 0 WHERE id = $2",
    )
    .bind(i64::MAX / 2)
    .bind(run_id)
    .execute(app.db.pool())
    .await
    .unwrap();
    assert!(f.detail(&app, run_id).await.graph_wait.is_some());
    let mut claimed = None;
    for lane in Lane::ALL {
        if let Some(run) = f.worker(&app, "w2").claim(lane).await.unwrap() {
            claimed = Some(run.run.id);
            break;
        }
    }
    assert_eq!(claimed, Some(run_id), "the next claim");
    let page = f.detail(&app, run_id).await;
    assert_eq!(page.status, RunStatus::Running);
    assert_eq!(page.graph_wait, None, "the dead claim's wait is gone");
}

async fn the_poll_versions_move_only_when_the_runs_do(app: TestApp) {
    let f = fixture(&app).await;
    let (app, operator, set_id) = (&app, f.operator.as_str(), f.set_id);
    let run = |id: i64| async move {
        app.run_version(operator, CONTOSO, id)
            .await
            .expect("the run's version")
    };
    let panel = || async move {
        app.backup_set_runs_version(operator, CONTOSO, set_id)
            .await
            .expect("the run panel's version")
    };

    f.sim.set_fault(&f.policies[0].1, Fault::ServerError);
    let run_id = f.submit(app, 0..3).await;
    let (queued, queued_panel) = (run(run_id).await, panel().await);
    assert_eq!(run(run_id).await, queued, "nothing moved");
    assert_eq!(panel().await, queued_panel, "nothing moved");

    f.worker(app, "w1").try_execute_task().await.unwrap();
    let ended = run(run_id).await;
    assert_ne!(ended, queued, "the run ended");
    assert_ne!(panel().await, queued_panel);
    assert_eq!(run(run_id).await, ended, "nothing moved since");

    // A retry of it changes what its page shows (the link to the retry).
    f.sim.set_knobs(tenantatlas::graph_sim::Knobs::default());
    f.retry(app, run_id).await.expect("the run is retried");
    assert_ne!(run(run_id).await, ended, "retried by a new run");

    // A run that is not the tenant's is a 404.
    let refused = app
        .run_version(operator, CONTOSO, i64::MAX)
        .await
        .expect_err("not the tenant's run");
    assert_eq!(refused.status, 404, "{}", refused.body);
    // The version is read in the authorization's statement: asked through another tenant of
    // the same user (the owner of both), the run and the set are not found there.
    let owner = app.sign_in(ADMIN).await;
    assert!(app.run_version(&owner, CONTOSO, run_id).await.is_ok());
    let elsewhere = app
        .run_version(&owner, FABRIKAM, run_id)
        .await
        .expect_err("Contoso's run through Fabrikam");
    assert_eq!(elsewhere.status, 404, "{}", elsewhere.body);
    let panel_elsewhere = app
        .backup_set_runs_version(&owner, FABRIKAM, set_id)
        .await
        .expect_err("Contoso's set through Fabrikam");
    assert_eq!(panel_elsewhere.status, 404, "{}", panel_elsewhere.body);
    // A non-member learns nothing either way.
    let outsider = app.sign_in(OUTSIDER).await;
    for id in [run_id, i64::MAX] {
        let refused = app.run_version(&outsider, CONTOSO, id).await.unwrap_err();
        assert_eq!(refused.status, 403, "{}", refused.body);
    }
}

/// While a run waits on Graph its versions (the run's, its panel's) stand still: the pages count
/// "resuming in N s" down themselves, instead of reading the run and its items every second.
async fn a_waiting_run_keeps_its_version_while_the_wait_stands(app: TestApp) {
    let f = fixture(&app).await;
    f.throttle(0..2, 10);
    let run_id = f.submit(&app, 0..2).await;
    let worker = f.worker(&app, "w1").with_cancels(app.wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    f.wait_until_waiting(&app, run_id).await;
    let versions = || async {
        (
            app.run_version(&f.operator, CONTOSO, run_id)
                .await
                .expect("the run's version"),
            app.backup_set_runs_version(&f.operator, CONTOSO, f.set_id)
                .await
                .expect("the run panel's version"),
        )
    };
    let waiting = versions().await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(versions().await, waiting, "nothing moved while it waits");
    assert!(
        f.detail(&app, run_id).await.graph_wait.is_some(),
        "still waiting"
    );
    f.cancel(&app, run_id).await.expect("the run is cancelled");
    working.await.unwrap().unwrap();
}

/// A runner on PostgreSQL claims no run before it hears other instances' cancels: a cancel sent
/// to it earlier would be lost, and the run would take items until the heartbeat noticed. While
/// it cannot LISTEN (every connection of the engine's own pool, the listener's, is held), the
/// queued run waits; once it can, the run is claimed and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_runner_claims_nothing_before_it_hears_cancels() {
    let app = TestApp::create_for(common::Backend::Postgres).await;
    let f = fixture(&app).await;
    let run_id = f.submit(&app, 0..2).await;
    let NativePool::Postgres(native) = app.db.native() else {
        unreachable!("a PostgreSQL database")
    };
    let mut held = Vec::new();
    for _ in 0..native.options().get_max_connections() {
        held.push(
            native
                .acquire()
                .await
                .expect("a connection of the engine's pool"),
        );
    }
    assert!(native.try_acquire().is_none(), "the engine's pool is held");
    let (stop, runner) = f.runner_elsewhere(&app, "deaf-instance");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        run_row(&app, run_id).await.status,
        "pending",
        "no claim before the instance listens"
    );
    drop(held);
    // The run is claimed once the instance listens.
    common::wait_run(&app.db, run_id, Duration::from_secs(60), |run| {
        run.status == "completed"
    })
    .await;
    stop.send_replace(true);
    runner.await.unwrap();
}

/// A stopped runner gives back its listener's connection: after five runners started and
/// stopped one after another on one PostgreSQL database (whose engine pool has four
/// connections), no connection of the database is left listening, a sixth runner listens, and a
/// submit's NOTIFY wakes it (its poll is an hour away, so nothing else would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_stopped_runner_stops_listening() {
    let app = TestApp::create_for(common::Backend::Postgres).await;
    let f = fixture(&app).await;
    for i in 0..5 {
        let (stop, runner) = f.runner_elsewhere(&app, &format!("instance-{i}"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send_replace(true);
        runner.await.unwrap();
    }
    listeners_become(&app, 0, "the stopped runners stop listening").await;
    let (stop, runner) = common::start_runner(
        f.worker(&app, "last-instance"),
        &WakeUp::default(),
        &app.db,
        Duration::from_secs(3600),
    );
    listeners_become(&app, 1, "the last runner listens").await;
    let run_id = f.submit(&app, 0..1).await;
    // A bound for a stuck test only: without the NOTIFY the run would wait for the hourly poll.
    common::wait_run(&app.db, run_id, Duration::from_secs(60), |run| {
        run.status == "completed"
    })
    .await;
    stop.send_replace(true);
    runner.await.unwrap();
}

/// Waits until `n` connections to the test's database are listening for NOTIFYs (a listener's
/// connection keeps its LISTEN as its last statement until it is given back with UNLISTEN).
async fn listeners_become(app: &TestApp, n: i64, what: &str) {
    let started = Instant::now();
    loop {
        let listening = common::listening_connections(&app.db).await;
        if listening == n {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{what}: {listening} listening connections, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A queued run of any operation plans its items from its stored input, as its first claim
/// would: a cancel writes them all skipped, so the run reads "3 of 3, 3 skipped", not 0 of 0.
async fn a_queued_drift_check_is_cancelled_with_its_planned_items_skipped(app: TestApp) {
    let f = fixture(&app).await;
    let filled = f.submit(&app, 0..3).await;
    f.worker(&app, "w1").try_execute_task().await.unwrap();
    assert_eq!(run_row(&app, filled).await.status, "completed");
    // The tenant's bulk lane is busy with another run, so the drift check stays queued.
    let busy = f.submit(&app, 3..5).await;
    let check = f.check_drift(&app).await;
    assert_eq!(run_row(&app, check.run_id).await.status, "pending");
    f.cancel(&app, check.run_id)
        .await
        .expect("the drift check is cancelled");
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        reason_code: reason,
        ..
    } = run_row(&app, check.run_id).await;
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("cancelled", Some("cancelled"))
    );
    assert_eq!(
        (total, processed, succeeded, failed, skipped),
        (3, 3, 0, 0, 3)
    );
    assert_eq!(items_skipped_as_cancelled(&app, check.run_id).await, 3);
    let mut planned: Vec<i64> = f.policies[0..3].iter().map(|(id, _)| *id).collect();
    planned.sort_unstable();
    let items: Vec<i64> =
        sqlx::query_scalar("SELECT policy_id FROM run_items WHERE run_id = $1 ORDER BY policy_id")
            .bind(check.run_id)
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert_eq!(
        items, planned,
        "the set's policies, as the check planned them"
    );
    assert_eq!(
        run_row(&app, busy).await.status,
        "pending",
        "the other run is untouched"
    );
}

/// The roles that may start a run may cancel it: an operator may not cancel the connection
/// check an owner started (only managers and owners may start one), and the run goes on.
async fn who_may_cancel_a_run_is_who_may_start_it(app: TestApp) {
    let f = fixture(&app).await;
    let check = app
        .check_connection(&f.admin, CONTOSO)
        .await
        .expect("the owner queues a connection check");
    let refused = app
        .cancel_run(&f.operator, CONTOSO, check.run_id)
        .await
        .expect_err("an operator may not cancel a connection check");
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(
        run_row(&app, check.run_id).await.status,
        "pending",
        "still queued"
    );
    assert!(notifications_of(&app, check.run_id).await.is_empty());
    // The owner may; and the operator may cancel the runs an operator may start.
    f.cancel(&app, check.run_id)
        .await
        .expect("the owner cancels it");
    let run_id = f.submit(&app, 0..2).await;
    app.cancel_run(&f.operator, CONTOSO, run_id)
        .await
        .expect("an operator cancels an add-policies run");
}

/// A cancelled run whose items partly failed resumes with those failures too, not only with
/// what the cancel skipped; the new run's page says it resumes the cancelled run.
async fn a_resume_takes_the_failed_items_with_the_cancelled_ones(app: TestApp) {
    let operator = app.sign_in(OPERATOR).await;
    let admin = app.sign_in(ADMIN).await;
    // Six items: one succeeded, two failed, three not yet started when the run is cancelled.
    let run = run_with_items(&app, &operator, 6, 1, 2).await;
    app.cancel_run(&admin, CONTOSO, run)
        .await
        .expect("the run is cancelled");
    assert_eq!(run_row(&app, run).await.status, "cancelled");
    assert_eq!(items_skipped_as_cancelled(&app, run).await, 3);
    // The button says what the resume takes: the failures with the cancelled items.
    let detail = app
        .run_detail(Some(&operator), CONTOSO, run, &[])
        .await
        .expect("the cancelled run");
    assert_eq!(detail.retry_items, 5);
    assert_eq!(
        detail.retry_label().as_deref(),
        Some("Resume 5 cancelled or failed")
    );
    let resumed = app
        .retry_failed(&operator, CONTOSO, run)
        .await
        .expect("the resume is queued");
    assert_eq!(resumed.total, 5, "two failed and three cancelled");
    let expected: Vec<i64> = sqlx::query_scalar(
        "SELECT policy_id FROM run_items WHERE run_id = $1 AND outcome <> 'succeeded' \
         ORDER BY policy_id",
    )
    .bind(run)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let input: String = sqlx::query_scalar("SELECT input FROM runs WHERE id = $1")
        .bind(resumed.run_id)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let input: serde_json::Value = serde_json::from_str(&input).unwrap();
    let resumed_ids: Vec<i64> = input["policy_ids"]
        .as_array()
        .expect("the resume's policies")
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    assert_eq!(resumed_ids, expected);

    let page = app
        .get(
            Some(&operator),
            &format!("/t/{CONTOSO}/runs/{}", resumed.run_id),
        )
        .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Resumes the cancelled items of"),
        "the resume's page says what it continues"
    );
    assert!(!html.contains("Retries the failed items of"));
}

/// A cancelled run's claim renews its lease by the database's clock on PostgreSQL, so whether
/// the run is settled is judged by that clock too: with the web process's clock a minute ahead
/// of the database's, a cancelled run whose lease holds for 30 s more (by the database) reads
/// unsettled on the detail page, beside the start button and in the polls' versions (run
/// detail's, run panel's), a resume is refused and a new run of its target is refused, nothing
/// written. With the web process's clock a minute behind, a lease that ran out 30 s ago (by the
/// database) reads settled on the detail page and in the versions alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_settled_is_judged_by_the_databases_clock() {
    let app = TestApp::create_for(common::Backend::Postgres).await;
    let f = fixture(&app).await;
    let filled = f.submit(&app, 0..2).await;
    f.worker(&app, "w1").try_execute_task().await.unwrap();
    assert_eq!(run_row(&app, filled).await.status, "completed");
    let capture = f.submit(&app, 2..4).await;
    let drift = f.check_drift(&app).await.run_id;
    // Both cancelled while a claim holds them for 30 s more, by the database's clock.
    sqlx::query(
        "UPDATE runs SET status = 'cancelled', lease_expires_at = \
           (floor(extract(epoch FROM statement_timestamp()) * 1000))::BIGINT + 30000 \
         WHERE id IN ($1, $2)",
    )
    .bind(capture)
    .bind(drift)
    .execute(app.db.pool())
    .await
    .unwrap();
    tenantatlas::server::runs::queries::set_app_clock_offset(60_000);

    assert!(!f.detail(&app, capture).await.settled, "the claim holds it");
    assert!(!f.detail(&app, drift).await.settled, "the claim holds it");
    // The polls' versions say so too, or a page polling them would stop before the settle.
    assert_versions_say(&app, &f, [capture, drift], "moving").await;
    let activity = app
        .run_activity(&f.operator, CONTOSO, "backup_set.drift_check", f.set_id)
        .await
        .expect("the activity reads");
    assert!(!activity.last_settled, "the claim holds it");
    let runs_before = runs_count(&app).await;
    let refused = f.retry(&app, capture).await.expect_err("not settled yet");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert!(
        refused.body.contains("has not settled yet"),
        "{}",
        refused.body
    );
    let form = Form::tenant(CONTOSO).field("backup_set_id", f.set_id);
    let refused = app
        .answer::<SubmittedRun>(Some(&f.operator), "runs/check-drift", &form)
        .await
        .expect_err("the cancelled drift check has not settled");
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(runs_count(&app).await, runs_before, "nothing written");

    // The reverse: the lease ran out 30 s ago by the database's clock, and this process's
    // clock is 60 s behind it. Settled on the detail page, and so in the polls' versions.
    sqlx::query(
        "UPDATE runs SET lease_expires_at = \
           (floor(extract(epoch FROM statement_timestamp()) * 1000))::BIGINT - 30000 \
         WHERE id IN ($1, $2)",
    )
    .bind(capture)
    .bind(drift)
    .execute(app.db.pool())
    .await
    .unwrap();
    tenantatlas::server::runs::queries::set_app_clock_offset(-60_000);
    assert!(f.detail(&app, capture).await.settled, "the lease ran out");
    assert!(f.detail(&app, drift).await.settled, "the lease ran out");
    assert_versions_say(&app, &f, [capture, drift], "settled").await;
}

/// On SQLite (one process) the lease clock is the process's: with it a minute ahead, a cancelled
/// run whose lease holds for 30 s more by the real time reads settled on the detail page and in
/// the polls' versions alike; at the real time, unsettled in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_settled_is_judged_by_the_process_clock() {
    let app = TestApp::create_for(common::Backend::Sqlite).await;
    let f = fixture(&app).await;
    let filled = f.submit(&app, 0..2).await;
    f.worker(&app, "w1").try_execute_task().await.unwrap();
    assert_eq!(run_row(&app, filled).await.status, "completed");
    let capture = f.submit(&app, 2..4).await;
    let drift = f.check_drift(&app).await.run_id;
    sqlx::query("UPDATE runs SET status = 'cancelled', lease_expires_at = $1 WHERE id IN ($2, $3)")
        .bind(tenantatlas::domain::Timestamp::now().millis() + 30_000)
        .bind(capture)
        .bind(drift)
        .execute(app.db.pool())
        .await
        .unwrap();
    assert!(!f.detail(&app, capture).await.settled, "the claim holds it");
    assert_versions_say(&app, &f, [capture, drift], "moving").await;
    tenantatlas::server::runs::queries::set_app_clock_offset(60_000);
    assert!(f.detail(&app, capture).await.settled, "the lease ran out");
    assert!(f.detail(&app, drift).await.settled, "the lease ran out");
    assert_versions_say(&app, &f, [capture, drift], "settled").await;
}

/// The run version of each of `runs` (the fixture's backup set's) and their entries in the run
/// panel's version end with `state` (`settled` or `moving`).
async fn assert_versions_say(app: &TestApp, f: &Fixture, runs: [i64; 2], state: &str) {
    let panel = app
        .backup_set_runs_version(&f.operator, CONTOSO, f.set_id)
        .await
        .expect("the run panel's version");
    for run_id in runs {
        let version = app
            .run_version(&f.operator, CONTOSO, run_id)
            .await
            .expect("the run's version");
        let (text, _retried_by) = version.rsplit_once('/').expect("a run version");
        assert!(
            text.ends_with(&format!(":{state}")),
            "run {run_id}: {version}"
        );
        let entry = panel
            .split(',')
            .find(|entry| entry.starts_with(&format!("{run_id}:")))
            .unwrap_or_else(|| panic!("run {run_id} in the panel's version {panel}"));
        assert_eq!(entry, text, "the panel's entry of run {run_id}");
    }
}
