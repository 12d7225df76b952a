//! The durable worker against the Graph simulator over real HTTP: an outcome per item, counters
//! that add up, a final status from the counts, safe failure texts, run-level failures, and a crash mid-run that loses nothing
//! and captures nothing twice.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{RunRow, TestDb, CONTOSO, OPERATOR};
use sqlx::Row;
use tenantatlas::domain::run::Lane;
use tenantatlas::domain::{AddPoliciesOptions, Capability, PolicySelection};
use tenantatlas::graph_sim::{Fault, SimHandle};
use tenantatlas::server::auth::authorize_user;
use tenantatlas::server::engine::worker::{Outcome, Worker};
use tenantatlas::server::graph::GraphClient;
use tenantatlas::server::runs::create::create_or_reuse;
use tenantatlas::server::seed;

both_backends!(TestDb:
    outcomes_and_counts_follow_the_rules,
    a_run_where_everything_fails_is_failed,
    failure_texts_are_sanitized_everywhere,
    a_deleted_backup_set_fails_the_run,
    an_unreadable_input_fails_the_run,
    a_crashed_worker_loses_nothing_and_adds_nothing_twice,
    two_instances_share_the_queue_without_double_work,
    a_heartbeat_keeps_a_slow_run_claimed,
    a_stalled_owner_writes_nothing_after_a_new_claim,
    work_that_always_fails_ends_the_run_after_the_attempt_limit,
    an_error_before_the_claim_commits_is_counted_with_a_pause,
    a_lost_claim_does_not_stop_the_next_claim_of_its_run,
    a_run_that_cannot_proceed_closes_its_items_and_offers_a_retry,
    a_database_error_loading_credentials_retries_the_run,
    a_drift_batch_and_a_cancel_do_not_deadlock,
    a_panic_while_processing_never_completes_the_run,
    a_rejected_secret_fails_the_run_with_one_token_request,
    a_refused_token_is_not_asked_for_again_by_each_item,
    a_cancelled_sync_stops_calling_graph_at_once,
    a_cancelled_sync_of_an_unthrottled_tenant_stops_listing,
    scattered_work_errors_do_not_fail_a_run_that_makes_progress,
    a_tenants_runs_stay_with_the_instance_that_works_for_it,
    a_give_up_that_cannot_write_its_items_still_ends_the_run,
    a_heartbeat_warning_names_its_run,
    a_shutdown_releases_only_the_claims_this_runner_holds,
    captures_in_flight_finish_while_a_batch_waits_for_the_database,
);

struct Fixture {
    db: tenantatlas::server::db::Db,
    sim: SimHandle,
    client: GraphClient,
    user_id: i64,
    set_id: i64,
    /// Compliance policies of the simulated Contoso tenant, as (policy id, graph id).
    policies: Vec<(i64, String)>,
}

async fn fixture(t: &TestDb) -> Fixture {
    seed::seed_demo(&t.db).await.unwrap();
    let (sim, client) = common::sim_and_client(80).await;
    let tenant_id = common::tenant_id(&t.db, CONTOSO).await;
    let user_id = common::user_id(&t.db, OPERATOR).await;
    let set_id: i64 = sqlx::query_scalar(
        "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, 'Worker test', 0) RETURNING id",
    )
    .bind(tenant_id)
    .fetch_one(t.db.pool())
    .await
    .unwrap();
    // The inventory, listed through the real client from the simulator.
    let policies =
        common::insert_sim_compliance(&t.db, &client, &common::creds(CONTOSO), usize::MAX).await;
    assert!(
        policies.len() >= 12,
        "the simulator serves enough compliance policies"
    );
    sim.reset_counters();
    Fixture {
        db: t.db.clone(),
        sim,
        client,
        user_id,
        set_id,
        policies,
    }
}

impl Fixture {
    fn worker(&self, name: &str) -> Worker {
        common::sim_worker(&self.db, &self.client, name)
    }

    /// Queues a run through the server function's service (the run with its selection); the
    /// worker writes the items when it claims it.
    async fn queue(&self, policy_ids: &[i64]) -> i64 {
        let ctx = authorize_user(&self.db, self.user_id, CONTOSO, Capability::StartRuns)
            .await
            .unwrap();
        let selection = PolicySelection::parse(policy_ids.to_vec()).unwrap();
        let options = AddPoliciesOptions {
            include_assignments: true,
            include_scope_tags: false,
        };
        let run = create_or_reuse(&self.db, &ctx, self.set_id, &selection, options)
            .await
            .unwrap();
        assert!(!run.reused);
        run.run_id
    }

    fn ids(&self, range: std::ops::Range<usize>) -> Vec<i64> {
        self.policies[range].iter().map(|(id, _)| *id).collect()
    }

    async fn run_row(&self, run_id: i64) -> RunRow {
        common::run_row(&self.db, run_id).await
    }

    async fn backup_item_count(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM backup_items WHERE backup_set_id = $1")
            .bind(self.set_id)
            .fetch_one(self.db.pool())
            .await
            .unwrap()
    }
}

async fn outcomes_and_counts_follow_the_rules(t: TestDb) {
    let f = fixture(&t).await;
    let worker = f.worker("w1");
    // Three policies are in the set already.
    let first = f.queue(&f.ids(0..3)).await;
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { run_id: first }
    );
    assert_eq!(
        f.run_row(first).await.status,
        "completed",
        "no failures → completed"
    );

    // 3 already there + 2 deleted in Intune + 5 good.
    for (_, graph_id) in &f.policies[3..5] {
        f.sim.set_fault(graph_id, Fault::NotFound);
    }
    let second = f.queue(&f.ids(0..10)).await;
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { run_id: second }
    );
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        Outcome::EmptyQueue
    );
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        ..
    } = f.run_row(second).await;
    assert_eq!(
        (status.as_str(), total, processed),
        ("completed_with_errors", 10, 10)
    );
    assert_eq!((succeeded, failed, skipped), (5, 2, 3));
    let reasons: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT outcome, reason_code FROM run_items WHERE run_id = $1 AND outcome <> 'succeeded' ORDER BY id")
            .bind(second)
            .fetch_all(f.db.pool())
            .await
            .unwrap();
    assert_eq!(
        reasons,
        [
            (
                "skipped".to_owned(),
                Some("already_in_backup_set".to_owned())
            ),
            (
                "skipped".to_owned(),
                Some("already_in_backup_set".to_owned())
            ),
            (
                "skipped".to_owned(),
                Some("already_in_backup_set".to_owned())
            ),
            ("failed".to_owned(), Some("policy_not_found".to_owned())),
            ("failed".to_owned(), Some("policy_not_found".to_owned())),
        ]
    );
    assert_eq!(f.backup_item_count().await, 8);
    let item_count: i64 = sqlx::query_scalar("SELECT item_count FROM backup_sets WHERE id = $1")
        .bind(f.set_id)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(item_count, 8);
    // Skipped items were not fetched from Graph again: 3 + 7 captures in all.
    assert_eq!(
        f.sim.counters().for_path("deviceCompliancePolicies/").len(),
        10
    );
    // The initiator is told, with a link to the run.
    let (title, link): (String, String) =
        sqlx::query_as("SELECT title, link FROM notifications WHERE user_id = $1 ORDER BY id DESC")
            .bind(f.user_id)
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert!(title.contains("Partially succeeded"), "{title}");
    assert_eq!(link, format!("/t/{CONTOSO}/runs/{second}"));
}

async fn a_run_where_everything_fails_is_failed(t: TestDb) {
    let f = fixture(&t).await;
    for (_, graph_id) in &f.policies[0..4] {
        f.sim.set_fault(graph_id, Fault::Forbidden);
    }
    let run = f.queue(&f.ids(0..4)).await;
    f.worker("w1").try_execute_task().await.unwrap();
    let RunRow {
        status,
        processed_items: processed,
        succeeded,
        failed,
        ..
    } = f.run_row(run).await;
    assert_eq!(
        (status.as_str(), processed, succeeded, failed),
        ("failed", 4, 0, 4)
    );
    assert_eq!(f.backup_item_count().await, 0);
}

/// Every log line of the process, at every level, for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures the process's logs from now on (nextest runs each test in a process of its own).
    fn capture() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no other log subscriber in this test's process");
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

async fn failure_texts_are_sanitized_everywhere(t: TestDb) {
    let logs = Logs::capture();
    let f = fixture(&t).await;
    f.sim.set_fault(&f.policies[0].1, Fault::LeakySecrets);
    let run = f.queue(&f.ids(0..2)).await;
    f.worker("w1").try_execute_task().await.unwrap();
    let message: String = sqlx::query_scalar(
        "SELECT message FROM run_items WHERE run_id = $1 AND outcome = 'failed'",
    )
    .bind(run)
    .fetch_one(f.db.pool())
    .await
    .unwrap();
    assert!(!message.contains("sim-secret"), "{message}");
    assert!(!message.contains("eyJ"), "no JWT: {message}");
    let stored: Vec<String> = sqlx::query_scalar("SELECT body FROM notifications")
        .fetch_all(f.db.pool())
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|b| !b.contains("sim-secret") && !b.contains("eyJ")));
    assert_eq!(f.run_row(run).await.status, "completed_with_errors");
    let logs = logs.text();
    assert!(logs.contains("capture failed"), "the failure is logged");
    for leaked in ["sim-secret", "eyJ", "Bearer ey"] {
        assert!(!logs.contains(leaked), "{leaked} in the logs:\n{logs}");
    }
}

async fn a_deleted_backup_set_fails_the_run(t: TestDb) {
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..3)).await;
    sqlx::query("DELETE FROM backup_sets WHERE id = $1")
        .bind(f.set_id)
        .execute(f.db.pool())
        .await
        .unwrap();
    f.worker("w1").try_execute_task().await.unwrap();
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        reason_code: reason,
        ..
    } = f.run_row(run).await;
    assert_eq!(
        (
            status.as_str(),
            total,
            processed,
            succeeded,
            failed,
            skipped
        ),
        ("failed", 3, 3, 0, 3, 0),
        "the planned items are closed with the run's reason: processed = total"
    );
    assert_eq!(reason.as_deref(), Some("backup_set_not_found"));
    let items = item_outcomes(&f.db, run).await;
    assert_eq!(items.len(), 3);
    assert!(
        items.iter().all(|(outcome, reason)| outcome == "failed"
            && reason.as_deref() == Some("backup_set_not_found")),
        "{items:?}"
    );
    assert_eq!(
        f.sim.counters().graph_requests(),
        0,
        "no Graph call for a run that cannot proceed"
    );
}

async fn an_unreadable_input_fails_the_run(t: TestDb) {
    let f = fixture(&t).await;
    for unreadable in [
        "not json",
        "{}",
        r#"{"backup_set_id":1,"policy_ids":"1,2"}"#,
    ] {
        let run = f.queue(&f.ids(0..3)).await;
        sqlx::query("UPDATE runs SET input = $1 WHERE id = $2")
            .bind(unreadable)
            .bind(run)
            .execute(f.db.pool())
            .await
            .unwrap();
        assert_eq!(
            f.worker("w1").try_execute_task().await.unwrap(),
            Outcome::TaskCompleted { run_id: run }
        );
        // Nothing can be planned from it: the run counts no item, so processed = total.
        let RunRow {
            status,
            total_items: total,
            processed_items: processed,
            reason_code: reason,
            ..
        } = f.run_row(run).await;
        assert_eq!(
            (status.as_str(), total, processed, reason.as_deref()),
            ("failed", 0, 0, Some("invalid_run_input")),
            "{unreadable:?}"
        );
        let (level, body): (String, String) = sqlx::query_as(
            "SELECT level, body FROM notifications WHERE user_id = $1 ORDER BY id DESC",
        )
        .bind(f.user_id)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
        assert_eq!(level, "error");
        assert!(body.contains("cannot be read"), "{body}");
    }
    assert_eq!(f.backup_item_count().await, 0);
    assert_eq!(f.sim.counters().graph_requests(), 0, "no Graph call");
}

async fn a_crashed_worker_loses_nothing_and_adds_nothing_twice(t: TestDb) {
    let f = fixture(&t).await;
    common::answer_after(&f.sim, 150);
    let snapshots_before = common::count(&f.db, "policy_snapshots").await;
    let run = f.queue(&f.ids(0..12)).await;

    // Worker A dies mid-run: its task is dropped without any cleanup. Its lease is far longer
    // than this test, so it holds for B's first try.
    let a = f.worker("a").with_lease(Duration::from_secs(600));
    let crashed = tokio::spawn(async move { a.try_execute_task().await });
    let before = processed_at_least(&f.db, run, 2, "worker A makes progress").await;
    crashed.abort();
    let _ = crashed.await;
    assert!(before < 12, "A was stopped mid-run");
    let row = common::run_row(&f.db, run).await;
    assert_eq!((row.status.as_str(), row.attempt), ("running", 1));

    // Worker B finds nothing to take while A's lease holds ...
    let b = f.worker("b");
    assert_eq!(b.try_execute_task().await.unwrap(), Outcome::EmptyQueue);
    assert_eq!(
        common::run_row(&f.db, run).await,
        row,
        "B's try left the run as A left it"
    );
    // ... and takes the run once the lease has run out (here: moved into the past).
    sqlx::query("UPDATE runs SET lease_expires_at = 1 WHERE id = $1")
        .bind(run)
        .execute(f.db.pool())
        .await
        .unwrap();
    assert_eq!(
        b.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { run_id: run }
    );
    let done = common::run_row(&f.db, run).await;
    assert_eq!(
        (
            done.status.as_str(),
            done.total_items,
            done.processed_items,
            done.succeeded,
            done.attempt
        ),
        ("completed", 12, 12, 12, 2)
    );
    assert_eq!(f.backup_item_count().await, 12, "every policy exactly once");
    assert_eq!(
        common::count(&f.db, "policy_snapshots").await - snapshots_before,
        12,
        "one snapshot per policy"
    );
}

async fn two_instances_share_the_queue_without_double_work(t: TestDb) {
    use tenantatlas::server::engine::runner::{self, WakeUp};
    let f = fixture(&t).await;
    common::answer_after(&f.sim, 20);
    // Ten runs over disjoint policies, queued before either instance starts.
    let mut runs = Vec::new();
    for n in 0..10 {
        runs.push(f.queue(&f.ids(n..n + 1)).await);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let instances: Vec<_> = ["instance-a", "instance-b"]
        .into_iter()
        .map(|name| {
            tokio::spawn(runner::run(
                f.worker(name),
                WakeUp::default(),
                f.db.clone(),
                Duration::from_secs(5),
                stopped.clone(),
            ))
        })
        .collect();
    let finished = async {
        loop {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')",
            )
            .fetch_one(f.db.pool())
            .await
            .unwrap();
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), finished)
        .await
        .expect("both instances drain the queue");
    stop.send(true).unwrap();
    for instance in instances {
        instance.await.unwrap();
    }
    for run in runs {
        let row = f.run_row(run).await;
        assert_eq!(
            (row.status.as_str(), row.attempt),
            ("completed", 1),
            "run {run} was claimed once"
        );
    }
    assert_eq!(f.backup_item_count().await, 10);
    assert_eq!(
        f.sim.counters().for_path("deviceCompliancePolicies/").len(),
        10,
        "each policy captured once"
    );
}

async fn a_heartbeat_keeps_a_slow_run_claimed(t: TestDb) {
    let f = fixture(&t).await;
    let mut knobs = f.sim.knobs();
    knobs.latency_ms = 5_000; // the capture (the token is cached since the fixture listed)
    f.sim.set_knobs(knobs);
    let run = f.queue(&f.ids(0..1)).await;
    // The heartbeat comes every 0.5 s: a busy machine may delay one or two without harm.
    let lease = Duration::from_millis(1_500);
    let slow = f.worker("slow").with_lease(lease);
    let working = tokio::spawn(async move { slow.try_execute_task().await });
    // Two lease lengths pass before the first item can finish: only the heartbeat holds it.
    tokio::time::sleep(lease * 2).await;
    let other = f.worker("other").with_lease(lease);
    assert_eq!(
        other.try_execute_task().await.unwrap(),
        Outcome::EmptyQueue,
        "a run being worked on is not claimable"
    );
    assert_eq!(
        working.await.unwrap().unwrap(),
        Outcome::TaskCompleted { run_id: run }
    );
    let row = f.run_row(run).await;
    assert_eq!((row.status.as_str(), row.attempt), ("completed", 1));
}

/// Fencing: an owner that stalled after its claim (here: the same identity, as after a restart)
/// writes nothing once the run was claimed again, because every lease-guarded write checks the
/// claim's `attempt`.
async fn a_stalled_owner_writes_nothing_after_a_new_claim(t: TestDb) {
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..6)).await;
    let stalled = f.worker("same-instance");
    let old_claim = stalled.claim(Lane::Bulk).await.unwrap().expect("claimed");
    assert_eq!(old_claim.run.attempt, 1);
    // The lease runs out while the owner stalls; the identity claims the run again.
    sqlx::query("UPDATE runs SET lease_expires_at = 0 WHERE id = $1")
        .bind(run)
        .execute(f.db.pool())
        .await
        .unwrap();
    let current = f.worker("same-instance");
    let new_claim = current
        .claim(Lane::Bulk)
        .await
        .unwrap()
        .expect("claimed again");
    assert_eq!(new_claim.run.attempt, 2);

    stalled.execute_claimed(old_claim).await.unwrap();
    let RunRow {
        status,
        processed_items: processed,
        ..
    } = f.run_row(run).await;
    assert_eq!((status.as_str(), processed), ("running", 0));
    let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_items WHERE run_id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(items, 0, "the stalled owner wrote no item");
    assert_eq!(f.sim.counters().graph_requests(), 0, "nor called Graph");

    current.execute_claimed(new_claim).await.unwrap();
    let RunRow {
        status,
        processed_items: processed,
        succeeded,
        ..
    } = f.run_row(run).await;
    assert_eq!((status.as_str(), processed, succeeded), ("completed", 6, 6));
    assert_eq!(f.backup_item_count().await, 6);
}

/// A runner that stops gives up only the claims it holds itself, by run and attempt, not every
/// lease under its identity: a process that froze and lost its instance lock comes back as a
/// zombie while a newer life of the same identity (here `w2`, both "x") has claimed its runs
/// again; the zombie's shutdown must not hand a running run of the newer life to another
/// instance mid-run, nor settle a cancelled run the newer life still records.
async fn a_shutdown_releases_only_the_claims_this_runner_holds(t: TestDb) {
    use tenantatlas::server::engine::runner::WakeUp;
    use tenantatlas::server::runs::cancel;
    let f = fixture(&t).await;
    let newer = f.worker("x");
    let other = f.worker("y");
    let lease_of = |run: i64| {
        let db = f.db.clone();
        async move {
            let (owner, attempt, lease): (String, i64, Option<i64>) = sqlx::query_as(
                "SELECT lease_owner, attempt, lease_expires_at FROM runs WHERE id = $1",
            )
            .bind(run)
            .fetch_one(db.pool())
            .await
            .unwrap();
            (owner, attempt, lease)
        }
    };
    // The zombie (a runner "x") claims the run and works on it, slowly; its lease runs out while
    // it stalls, and the newer life claims the run again. Then the zombie stops.
    let zombie_claims_then_the_newer_life = |run: i64| {
        let (f, newer) = (&f, &newer);
        async move {
            common::answer_after(&f.sim, 30_000);
            // The poll's first beat is at once; the next would come after the test.
            let (stop, task) = common::start_runner(
                f.worker("x"),
                &WakeUp::default(),
                &f.db,
                Duration::from_secs(600),
            );
            common::wait_run(&f.db, run, Duration::from_secs(30), |row| {
                row.status == "running" && row.attempt == 1
            })
            .await;
            let claim = lose_lease_and_claim(&f.db, run, newer).await;
            assert_eq!((claim.run.id, claim.run.attempt), (run, 2));
            common::answer_after(&f.sim, 0);
            (stop, task, claim)
        }
    };

    // A running run.
    let run = f.queue(&f.ids(0..2)).await;
    let (stop, task, claim) = zombie_claims_then_the_newer_life(run).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    let (owner, attempt, lease) = lease_of(run).await;
    assert_eq!((owner.as_str(), attempt), ("x", 2));
    assert!(
        lease.is_some_and(|until| until > tenantatlas::domain::Timestamp::now().millis()),
        "the newer life's lease still holds: {lease:?}"
    );
    assert!(
        other.claim(Lane::Bulk).await.unwrap().is_none(),
        "another instance takes nothing from the newer life"
    );
    newer.execute_claimed(claim).await.unwrap();
    assert_eq!(f.run_row(run).await.status, "completed");

    // A cancelled run whose claim (the newer life's) has not let go yet.
    let run = f.queue(&f.ids(2..4)).await;
    let (stop, task, claim) = zombie_claims_then_the_newer_life(run).await;
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::CancelRuns)
        .await
        .unwrap();
    cancel::cancel(&f.db, &ctx, run)
        .await
        .unwrap()
        .expect("the run is cancelled");
    stop.send(true).unwrap();
    task.await.unwrap();
    let (owner, attempt, lease) = lease_of(run).await;
    assert_eq!((owner.as_str(), attempt), ("x", 2));
    assert!(
        lease.is_some(),
        "the cancelled run is not settled while the newer life holds it"
    );
    // The newer life lets go of it once it has concluded.
    newer.execute_claimed(claim).await.unwrap();
    let (_, _, lease) = lease_of(run).await;
    assert_eq!(lease, None, "settled once the newer life let go");
    assert_eq!(f.run_row(run).await.status, "cancelled");
}

/// Waits until run `run` has processed `at_least` items (`what` names the wait if it never
/// happens); how many it had then.
async fn processed_at_least(
    db: &tenantatlas::server::db::Db,
    run: i64,
    at_least: i64,
    what: &str,
) -> i64 {
    eprintln!("waiting: {what}");
    common::wait_run(db, run, Duration::from_secs(60), |row| {
        row.processed_items >= at_least
    })
    .await
    .processed_items
}

/// The items of `run` as (outcome, reason code), in order.
async fn item_outcomes(
    db: &tenantatlas::server::db::Db,
    run: i64,
) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT outcome, reason_code FROM run_items WHERE run_id = $1 ORDER BY id")
        .bind(run)
        .fetch_all(db.pool())
        .await
        .unwrap()
}

/// Waits until `run` is no longer pending or running (`limit` bounds a stuck test); its status.
async fn ended(db: &tenantatlas::server::db::Db, run: i64, limit: Duration) -> String {
    common::wait_run(db, run, limit, |row| !row.is_open())
        .await
        .status
}

/// A run whose every attempt fails with a database error (the backup set's table lost a column
/// the capture writes) is not claimed again forever by the runner: after `WORK_ATTEMPTS` failed
/// attempts, with a pause between them, it ends `failed` with its items closed, the counters
/// adding up, a sanitized reason and the initiator notified.
async fn work_that_always_fails_ends_the_run_after_the_attempt_limit(t: TestDb) {
    use tenantatlas::server::engine::runner::WakeUp;
    use tenantatlas::server::engine::worker::WORK_ATTEMPTS;
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..5)).await;
    let notified = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM notifications WHERE user_id = $1")
            .bind(f.user_id)
            .fetch_one(f.db.pool())
            .await
            .unwrap()
    };
    let notifications = notified().await;
    sqlx::query("ALTER TABLE backup_items RENAME COLUMN run_id TO run_id_gone")
        .execute(f.db.pool())
        .await
        .unwrap();
    let worker = f
        .worker("always-failing")
        .with_work_backoff(Duration::from_millis(20));
    let wake = WakeUp::default();
    let (stop, task) = common::start_runner(worker, &wake, &f.db, Duration::from_millis(50));
    let status = ended(&f.db, run, Duration::from_secs(60)).await;
    stop.send(true).unwrap();
    task.await.unwrap();

    assert_eq!(status, "failed");
    let row = sqlx::query(
        "SELECT attempt, work_errors, reason_code, failure_message, total_items, \
         processed_items, failed FROM runs WHERE id = $1",
    )
    .bind(run)
    .fetch_one(f.db.pool())
    .await
    .unwrap();
    let (attempt, errors): (i64, i64) = (row.get("attempt"), row.get("work_errors"));
    assert_eq!(errors, WORK_ATTEMPTS, "every failed attempt counted");
    assert_eq!(
        attempt,
        WORK_ATTEMPTS + 1,
        "one claim more ends it, none after"
    );
    assert_eq!(
        row.get::<Option<String>, _>("reason_code").as_deref(),
        Some("work_failed_repeatedly")
    );
    let message: String = row.get("failure_message");
    assert!(
        message.contains(&format!("failed {WORK_ATTEMPTS} times")),
        "{message}"
    );
    let counts: (i64, i64, i64) = (
        row.get("total_items"),
        row.get("processed_items"),
        row.get("failed"),
    );
    assert_eq!(counts, (5, 5, 5), "the counters add up");
    let items = item_outcomes(&f.db, run).await;
    assert_eq!(items.len(), 5);
    assert!(
        items.iter().all(|(outcome, reason)| outcome == "failed"
            && reason.as_deref() == Some("work_failed_repeatedly")),
        "{items:?}"
    );
    assert_eq!(notified().await, notifications + 1, "the initiator is told");
}

/// An "add policies" handler whose check fails with a database error on every claim: the
/// error comes while the runner's claim is still open (it commits with the run's items), so the
/// claim rolls back with it.
struct CheckAlwaysFails;

impl tenantatlas::server::engine::operation::Operation for CheckAlwaysFails {
    const TYPE: tenantatlas::domain::run::OperationType =
        tenantatlas::domain::run::OperationType::AddPolicies;
    type Input = serde_json::Value;
    type Item = ();
    type Output = ();
    const NOTICE: tenantatlas::server::engine::operation::Notice =
        tenantatlas::server::engine::operation::Notice::new("Add policies", "Nothing added.");

    async fn check(
        &self,
        _db: &tenantatlas::server::db::Db,
        _run: &tenantatlas::server::engine::operation::Run<serde_json::Value>,
    ) -> Result<Option<tenantatlas::server::engine::worker::RunFailure>, sqlx::Error> {
        Err(sqlx::Error::Protocol(
            "the check could not read the database".into(),
        ))
    }

    fn plan(
        &self,
        run: &tenantatlas::server::engine::operation::Run<serde_json::Value>,
    ) -> Vec<i64> {
        run.input["policy_ids"]
            .as_array()
            .map(|ids| ids.iter().filter_map(serde_json::Value::as_i64).collect())
            .unwrap_or_default()
    }

    async fn pending(
        &self,
        _db: &tenantatlas::server::db::Db,
        _run: &tenantatlas::server::engine::operation::Run<serde_json::Value>,
    ) -> Result<Vec<tenantatlas::server::engine::operation::Pending<()>>, sqlx::Error> {
        Ok(Vec::new())
    }

    async fn process(
        &self,
        _creds: &tenantatlas::server::graph::TenantCredentials,
        _run: &tenantatlas::server::engine::operation::Run<serde_json::Value>,
        _item: &(),
    ) {
    }

    async fn record(
        &self,
        _tx: &mut tenantatlas::server::engine::operation::Tx,
        _run: &tenantatlas::server::engine::operation::Run<serde_json::Value>,
        _batch: &[(tenantatlas::server::engine::operation::Pending<()>, ())],
        _now: i64,
    ) -> Result<Vec<tenantatlas::server::engine::operation::Recorded>, sqlx::Error> {
        Ok(Vec::new())
    }
}

/// An error before the runner's claim commits (here the operation's check; the items' insert
/// or the commit itself alike) rolls the claim back, `attempt` included: it is counted all the
/// same, with its pause, and after `WORK_ATTEMPTS` failed claims the run ends `failed`
/// (`work_failed_repeatedly`) instead of being claimed again at once, forever, holding the
/// tenant's lane.
async fn an_error_before_the_claim_commits_is_counted_with_a_pause(t: TestDb) {
    use tenantatlas::server::engine::operation::Registry;
    use tenantatlas::server::engine::runner::WakeUp;
    use tenantatlas::server::engine::worker::{CredentialsLoader, RunFailure, WORK_ATTEMPTS};
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..3)).await;
    let loader: CredentialsLoader =
        Arc::new(|_tenant| Box::pin(async { Ok::<_, RunFailure>(common::creds(CONTOSO)) }));
    let worker = Worker::new(
        f.db.clone(),
        Registry::default().with(CheckAlwaysFails),
        loader,
        "check-fails",
    )
    .with_work_backoff(Duration::from_millis(100));
    let wake = WakeUp::default();
    let started = std::time::Instant::now();
    let (stop, task) = common::start_runner(worker, &wake, &f.db, Duration::from_millis(50));
    let row = common::wait_run(&f.db, run, Duration::from_secs(30), |row| !row.is_open()).await;
    let elapsed = started.elapsed();
    stop.send(true).unwrap();
    task.await.unwrap();
    // The pauses after the failed claims before the give-up: 100, 200, 400 and 800 ms.
    let pauses: Duration = (0..WORK_ATTEMPTS - 1)
        .map(|n| Duration::from_millis(100) * (1 << n))
        .sum();
    assert!(elapsed >= pauses, "{elapsed:?}: each failed claim pauses");

    assert_eq!(row.status, "failed", "{row:?}");
    assert_eq!(row.reason_code.as_deref(), Some("work_failed_repeatedly"));
    let (attempt, errors, message): (i64, i64, String) =
        sqlx::query_as("SELECT attempt, work_errors, failure_message FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(errors, WORK_ATTEMPTS, "every failed claim counted");
    assert_eq!(attempt, WORK_ATTEMPTS + 1, "one claim more ends it");
    assert!(
        message.contains("the check could not read the database"),
        "{message}"
    );
}

/// Makes run `run`'s lease lost (its expiry passed) and claims it with `worker`. The claim
/// holding it may still renew it: its heartbeat renews a running run it holds (its owner is
/// alive and no one else claimed it), so on a busy machine between this write and the claim;
/// the loss is then made again, until the claim takes the run.
async fn lose_lease_and_claim(
    db: &tenantatlas::server::db::Db,
    run: i64,
    worker: &Worker,
) -> tenantatlas::server::engine::worker::ClaimedRun {
    for _ in 0..50 {
        sqlx::query("UPDATE runs SET lease_expires_at = 0 WHERE id = $1")
            .bind(run)
            .execute(db.pool())
            .await
            .unwrap();
        if let Some(claim) = worker.claim(Lane::Bulk).await.unwrap() {
            return claim;
        }
    }
    panic!("run {run} was never claimed again after its lease was lost");
}

/// Two claims of one run in one process (the first lost its lease, the same identity claimed
/// it again): the first claim's heartbeat stops only the first claim. The run never shows
/// `completed` with items left, and ends completed with every item done once.
async fn a_lost_claim_does_not_stop_the_next_claim_of_its_run(t: TestDb) {
    use tenantatlas::server::engine::cancel::Cancels;
    let f = fixture(&t).await;
    common::answer_after(&f.sim, 100);
    let n = f.policies.len().min(30);
    let run = f.queue(&f.ids(0..n)).await;
    // One process: one set of cancellation signals for its workers.
    let cancels = Cancels::default();
    let lease = Duration::from_millis(600);
    let worker = || {
        f.worker("same-process")
            .with_lease(lease)
            .with_cancels(cancels.clone())
    };
    let first = worker();
    let claim = first.claim(Lane::Bulk).await.unwrap().expect("claimed");
    let first_work = tokio::spawn(async move { first.execute_claimed(claim).await });
    processed_at_least(&f.db, run, 1, "the first claim makes progress").await;
    let db = f.db.clone();
    let second = worker();
    let claim = lose_lease_and_claim(&f.db, run, &second).await;
    assert_eq!(claim.run.attempt, 2);
    let second_work = tokio::spawn(async move { second.execute_claimed(claim).await });
    // Whenever the run shows completed, every item is done.
    let watched = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let row = sqlx::query(
                "SELECT status, total_items, processed_items, \
                 (SELECT COUNT(*) FROM run_items i WHERE i.run_id = runs.id \
                   AND i.outcome = 'pending') AS pending FROM runs WHERE id = $1",
            )
            .bind(run)
            .fetch_one(db.pool())
            .await
            .unwrap();
            let status: String = row.get("status");
            let (total, processed, pending): (i64, i64, i64) = (
                row.get("total_items"),
                row.get("processed_items"),
                row.get("pending"),
            );
            if status == "completed" {
                assert_eq!(
                    (processed, pending),
                    (total, 0),
                    "completed with items left"
                );
            }
            if status != "running" {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the run ends");
    assert_eq!(watched, "completed");
    second_work
        .await
        .unwrap()
        .expect("the second claim ends the run");
    first_work
        .await
        .unwrap()
        .expect("the first claim gives up quietly");
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        ..
    } = f.run_row(run).await;
    assert_eq!(
        (status.as_str(), total, processed, succeeded),
        ("completed", n as i64, n as i64, n as i64)
    );
    assert_eq!(f.backup_item_count().await, n as i64, "every policy once");
}

/// The server's worker, with its real credentials loading (the demo tenants' secret resolves
/// to the simulator's).
fn server_worker(f: &Fixture) -> Worker {
    use tenantatlas::server::graph::{ClientSecret, GraphAccess, SecretResolver};
    let graph = GraphAccess {
        client: f.client.clone(),
        secrets: SecretResolver::with_demo_secret(ClientSecret::new("sim-secret")),
    };
    tenantatlas::server::runs_worker(&f.db, graph)
}

/// A run that fails as a whole after its items were written (the tenant was disconnected)
/// closes them as failed with its reason: the counters add up and "Retry failed" offers them.
async fn a_run_that_cannot_proceed_closes_its_items_and_offers_a_retry(t: TestDb) {
    use tenantatlas::server::runs::retry::retry_failed;
    let f = fixture(&t).await;
    let tenant = common::tenant_id(&f.db, CONTOSO).await;
    let run = f.queue(&f.ids(0..5)).await;
    sqlx::query("UPDATE tenants SET disconnected_at = 1 WHERE id = $1")
        .bind(tenant)
        .execute(f.db.pool())
        .await
        .unwrap();
    let worker = server_worker(&f);
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { run_id: run }
    );
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        reason_code: reason,
        ..
    } = f.run_row(run).await;
    assert_eq!(
        (
            status.as_str(),
            total,
            processed,
            succeeded,
            failed,
            skipped
        ),
        ("failed", 5, 5, 0, 5, 0)
    );
    assert_eq!(reason.as_deref(), Some("authentication_failed"));
    let items = item_outcomes(&f.db, run).await;
    assert_eq!(items.len(), 5);
    assert!(
        items.iter().all(|(outcome, reason)| outcome == "failed"
            && reason.as_deref() == Some("authentication_failed")),
        "{items:?}"
    );
    assert_eq!(f.sim.counters().graph_requests(), 0, "no Graph call");

    // Reconnected, the failed items are retried in a new run.
    sqlx::query("UPDATE tenants SET disconnected_at = NULL WHERE id = $1")
        .bind(tenant)
        .execute(f.db.pool())
        .await
        .unwrap();
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let retried = retry_failed(&f.db, &ctx, run)
        .await
        .expect("a retry is offered");
    assert_ne!(retried.run_id, run);
    let total: i64 = sqlx::query_scalar("SELECT total_items FROM runs WHERE id = $1")
        .bind(retried.run_id)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(total, 5);
}

/// A database error while a run's credentials load is not the tenant's fault: the run (and a
/// connection check) goes back to the queue as a failed attempt, no check result blocks the
/// tenant, and once the database answers the runs finish.
async fn a_database_error_loading_credentials_retries_the_run(t: TestDb) {
    use tenantatlas::server::tenants::connection_check;
    let f = fixture(&t).await;
    let tenant = common::tenant_id(&f.db, CONTOSO).await;
    let run = f.queue(&f.ids(0..3)).await;
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let check = connection_check::start(&f.db, &ctx).await.unwrap().run_id;
    sqlx::query("ALTER TABLE tenants RENAME COLUMN graph_secret_key_id TO key_id_gone")
        .execute(f.db.pool())
        .await
        .unwrap();
    let worker = server_worker(&f).with_work_backoff(Duration::from_secs(30));
    for _ in [run, check] {
        assert!(
            worker.try_execute_task().await.is_err(),
            "the attempt failed"
        );
    }
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        Outcome::EmptyQueue,
        "both wait for their backoff"
    );
    for id in [run, check] {
        let (status, errors): (String, i64) =
            sqlx::query_as("SELECT status, work_errors FROM runs WHERE id = $1")
                .bind(id)
                .fetch_one(f.db.pool())
                .await
                .unwrap();
        assert_eq!((status.as_str(), errors), ("running", 1), "run {id}");
    }
    let checks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tenant_connection_checks")
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(checks, 0, "no check result was stored");
    connection_check::ensure_runs_allowed(&f.db, tenant)
        .await
        .expect("the tenant may start runs");

    sqlx::query("ALTER TABLE tenants RENAME COLUMN key_id_gone TO graph_secret_key_id")
        .execute(f.db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET lease_expires_at = 0 WHERE id IN ($1, $2)")
        .bind(run)
        .bind(check)
        .execute(f.db.pool())
        .await
        .unwrap();
    while worker.try_execute_task().await.unwrap() != Outcome::EmptyQueue {}
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        ..
    } = f.run_row(run).await;
    assert_eq!((status.as_str(), total, processed), ("completed", 3, 3));
    let check_status: String = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(check)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_ne!(check_status, "running");
}

/// A cancel takes the run's row, then its items; a drift check's batch writes its items' results
/// too. The batch must take the run's row first as well, or the two deadlock (PostgreSQL): here
/// the cancel's two statements are run by hand around a batch that is waiting for the row.
async fn a_drift_batch_and_a_cancel_do_not_deadlock(t: TestDb) {
    use tenantatlas::domain::Timestamp;
    use tenantatlas::server::runs::start::check_drift;
    let f = fixture(&t).await;
    let n = f.policies.len().min(30);
    f.queue(&f.ids(0..n)).await;
    let worker = f.worker("drift");
    assert!(matches!(
        worker.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { .. }
    ));
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let run = check_drift(&f.db, &ctx, f.set_id).await.unwrap().run_id;
    common::answer_after(&f.sim, 300);
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    let db = f.db.clone();
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_items WHERE run_id = $1")
                .bind(run)
                .fetch_one(db.pool())
                .await
                .unwrap();
            if items > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the drift check writes its items");

    // The cancel's first statement (`runs::cancel`): it holds the run's row until it commits,
    // and leaves the lease to the claim.
    let now = Timestamp::now().millis();
    let mut cancel = f.db.pool().begin().await.unwrap();
    sqlx::query(
        "UPDATE runs SET status = 'cancelled', finished_at = $1, reason_code = 'cancelled' \
         WHERE id = $2 AND status IN ('pending', 'running')",
    )
    .bind(now)
    .bind(run)
    .execute(&mut *cancel)
    .await
    .unwrap();
    // The first batch (its captures take 300 ms) comes and waits for the row.
    match f.db.backend() {
        tenantatlas::server::db::Backend::Postgres => {
            tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let waiting: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM pg_stat_activity \
                         WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    )
                    .fetch_one(db.pool())
                    .await
                    .unwrap();
                    if waiting > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            })
            .await
            .expect("a batch waits for the run's row");
        }
        // One writer at a time: the batch waits for this transaction whatever it writes.
        tenantatlas::server::db::Backend::Sqlite => {
            tokio::time::sleep(Duration::from_millis(800)).await
        }
    }
    // The cancel's second statement: the pending items. The batch must not hold any.
    let skipped = sqlx::query(
        "UPDATE run_items SET outcome = 'skipped', reason_code = 'cancelled', finished_at = $1 \
         WHERE run_id = $2 AND outcome = 'pending'",
    )
    .bind(now)
    .bind(run)
    .execute(&mut *cancel)
    .await
    .expect("the cancel does not deadlock with the batch")
    .rows_affected() as i64;
    sqlx::query(
        "UPDATE runs SET skipped = skipped + $1, processed_items = processed_items + $1 \
         WHERE id = $2",
    )
    .bind(skipped)
    .bind(run)
    .execute(&mut *cancel)
    .await
    .unwrap();
    cancel.commit().await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(60), working)
        .await
        .expect("the worker ends")
        .unwrap();
    assert_eq!(
        outcome.expect("the batch was not aborted"),
        Outcome::TaskCompleted { run_id: run }
    );
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        ..
    } = f.run_row(run).await;
    assert_eq!(status, "cancelled");
    assert_eq!(total, n as i64);
    assert_eq!(processed, total, "the counters add up");
    assert_eq!(succeeded + failed + skipped, processed);
    assert!(
        succeeded >= 1,
        "the batch in flight was recorded over its skips"
    );
}

/// PostgreSQL: the connection that holds the instance lock drops while the instance works on a
/// run (here `pg_terminate_backend`). The instance takes the lock again on a new connection and
/// claims nothing meanwhile, least of all the run it is working on: the run ends with its first
/// claim, every policy captured once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_dropped_instance_lock_is_taken_again_without_a_second_claim() {
    use tenantatlas::server::engine::instance::{InstanceLock, LOCK_SPACE};
    use tenantatlas::server::engine::runner::WakeUp;
    let t = TestDb::create(common::Backend::Postgres).await;
    let f = fixture(&t).await;
    common::answer_after(&f.sim, 100);
    let n = f.policies.len().min(30);
    let run = f.queue(&f.ids(0..n)).await;
    let identity = "dropped-lock";
    let lock = InstanceLock::acquire(&f.db, identity).await.unwrap();
    let worker = f.worker(identity).as_instance(&lock);
    let wake = WakeUp::default();
    let (stop, task) = common::start_runner(worker, &wake, &f.db, Duration::from_millis(50));
    processed_at_least(&f.db, run, 1, "the run makes progress").await;
    let db = f.db.clone();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
         WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND l.classid = $1 AND l.objid = hashtext($2)::oid",
    )
    .bind(LOCK_SPACE)
    .bind(identity)
    .fetch_all(f.db.pool())
    .await
    .unwrap();
    assert_eq!(terminated, [true], "the lock's connection was terminated");
    let status = ended(&f.db, run, Duration::from_secs(60)).await;
    // The lock is back within a few checks, on a new connection.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let held: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
                 AND l.classid = $1 AND l.objid = hashtext($2)::oid",
            )
            .bind(LOCK_SPACE)
            .bind(identity)
            .fetch_one(db.pool())
            .await
            .unwrap();
            if held == 1 && lock.is_held() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the lock was taken again");
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(status, "completed");
    let attempt: i64 = sqlx::query_scalar("SELECT attempt FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(attempt, 1, "never claimed a second time");
    assert_eq!(f.backup_item_count().await, n as i64);
    assert_eq!(
        f.sim.counters().for_path("deviceCompliancePolicies/").len(),
        n,
        "each policy captured once"
    );
}

/// PostgreSQL: leases are written and judged by the database's clock, not an instance's. B's
/// clock runs 45 s ahead of A's (and the database's); A, alive and holding its instance lock,
/// renewed its lease 30 s ago (30 s of its 60 s left). B neither takes A's running run nor the
/// tenant's other run (A works for the tenant), and the lease B writes for a run of its own
/// lasts a lease by the database's clock, not 45 s more. Once A's lease is over by the
/// database's clock, B takes the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_clock_ahead_does_not_take_a_live_instances_run() {
    use tenantatlas::server::engine::instance::InstanceLock;
    let t = TestDb::create(common::Backend::Postgres).await;
    let f = fixture(&t).await;
    let tenant = common::tenant_id(&f.db, CONTOSO).await;
    let other = common::tenant_id(&f.db, common::FABRIKAM).await;
    let interactive = |tenant: i64, key: &'static str| {
        let db = f.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO runs (tenant_id, operation_type, lane, resource, action, target_id, \
                 input, idempotency_key, status, total_items, created_at) \
                 VALUES ($1, 'tenant.check_connection', 'interactive', 'test', 'skew', 0, \
                   '{}', $2, 'pending', 0, 1) RETURNING id",
            )
            .bind(tenant)
            .bind(key)
            .fetch_one(db.pool())
            .await
            .unwrap()
        }
    };
    let lock_a = InstanceLock::acquire(&f.db, "clock-a").await.unwrap();
    let lock_b = InstanceLock::acquire(&f.db, "clock-b").await.unwrap();
    let a = f.worker("clock-a").as_instance(&lock_a);
    let b = f
        .worker("clock-b")
        .as_instance(&lock_b)
        .with_clock_offset(Duration::from_secs(45));
    let claimed = |run: Option<tenantatlas::server::engine::worker::ClaimedRun>| {
        run.map(|claimed| (claimed.run.id, claimed.run.attempt))
    };
    let bulk = f.queue(&f.ids(0..2)).await;
    assert_eq!(claimed(a.claim(Lane::Bulk).await.unwrap()), Some((bulk, 1)));
    // A's heartbeat renewed the lease 30 s ago: 30 s of it left.
    sqlx::query("UPDATE runs SET lease_expires_at = lease_expires_at - 30000 WHERE id = $1")
        .bind(bulk)
        .execute(f.db.pool())
        .await
        .unwrap();
    let left = lease_left(&f.db, bulk).await;
    assert!((25_000..=30_000).contains(&left), "{left} ms left");
    let check = interactive(tenant, "skew-contoso").await;
    assert_eq!(
        claimed(b.claim(Lane::Bulk).await.unwrap()),
        None,
        "B does not take the run of a live A"
    );
    assert_eq!(
        claimed(b.claim(Lane::Interactive).await.unwrap()),
        None,
        "B leaves the run of a tenant A works for"
    );
    let run = f.run_row(bulk).await;
    assert_eq!(run.status, "running");
    let (owner, attempt): (String, i64) =
        sqlx::query_as("SELECT lease_owner, attempt FROM runs WHERE id = $1")
            .bind(bulk)
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert_eq!(
        (owner.as_str(), attempt),
        ("clock-a", 1),
        "still A's first claim"
    );
    // B's own lease lasts 60 s by the database's clock, not 60 s from B's clock.
    let others = interactive(other, "skew-fabrikam").await;
    assert_eq!(
        claimed(b.claim(Lane::Interactive).await.unwrap()),
        Some((others, 1)),
        "B takes another tenant's run"
    );
    let left = lease_left(&f.db, others).await;
    assert!((55_000..=60_000).contains(&left), "{left} ms left");
    // A's lease over by the database's clock (A stalled): B takes the run, and the tenant's.
    let expired = database_now(&f.db).await - 1_000;
    sqlx::query("UPDATE runs SET lease_expires_at = $1 WHERE id = $2")
        .bind(expired)
        .bind(bulk)
        .execute(f.db.pool())
        .await
        .unwrap();
    assert_eq!(
        claimed(b.claim(Lane::Bulk).await.unwrap()),
        Some((bulk, 2)),
        "an expired lease is taken over"
    );
    assert_eq!(
        claimed(b.claim(Lane::Interactive).await.unwrap()),
        Some((check, 1)),
        "and B now works for the tenant"
    );
    drop((lock_a, lock_b));
}

/// The database's clock now, in milliseconds since the epoch.
async fn database_now(db: &tenantatlas::server::db::Db) -> i64 {
    sqlx::query_scalar("SELECT (floor(extract(epoch FROM clock_timestamp()) * 1000))::BIGINT")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// How long the lease of `run` lasts from now by the database's clock, in milliseconds.
async fn lease_left(db: &tenantatlas::server::db::Db, run: i64) -> i64 {
    let until: i64 = sqlx::query_scalar("SELECT lease_expires_at FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(db.pool())
        .await
        .unwrap();
    until - database_now(db).await
}

/// PostgreSQL: an instance that goes silent without closing its lock's connection, as when its
/// host vanishes or is cut off (no FIN or RST reaches the server), loses the lock within
/// `LOCK_SILENCE`, not when TCP would notice hours later: the same identity is taken again within
/// 5 s after that. Here the instance's runtime is blocked, so its lock's monitor never runs again
/// while its connections stay open (keepalives would not help: its host still answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_silent_instances_lock_is_free_within_its_bound() {
    use std::time::Instant;
    use tenantatlas::server::db::Db;
    use tenantatlas::server::engine::instance::{InstanceError, InstanceLock, LOCK_SILENCE};
    let t = TestDb::create(common::Backend::Postgres).await;
    let identity = "silent-lock";
    let (locked, taken) = tokio::sync::oneshot::channel();
    let (thaw, frozen) = std::sync::mpsc::channel::<()>();
    let url = t.url.clone();
    let silent = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let db = Db::connect(&url).await.unwrap();
            let lock = InstanceLock::acquire(&db, identity).await.unwrap();
            locked.send(()).unwrap();
            // Blocks the runtime's only thread until the test ends.
            let _ = frozen.recv();
            drop(lock);
        });
    });
    taken.await.expect("the first instance took its lock");
    let since = Instant::now();
    assert!(
        matches!(
            InstanceLock::acquire(&t.db, identity).await,
            Err(InstanceError::AlreadyRunning(_))
        ),
        "the silent instance holds its lock at first"
    );
    let bound = LOCK_SILENCE + Duration::from_secs(5);
    let second = loop {
        match InstanceLock::acquire(&t.db, identity).await {
            Ok(lock) => break lock,
            Err(InstanceError::AlreadyRunning(_)) if since.elapsed() < bound => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(error) => panic!("still refused after {:?}: {error}", since.elapsed()),
        }
    };
    eprintln!(
        "the silent instance's lock was free {:?} after its last query",
        since.elapsed()
    );
    assert!(second.is_held());
    thaw.send(()).unwrap();
    silent.join().unwrap();
}

/// An "add policies" handler whose processing panics on every item.
struct PanickingCapture;

impl tenantatlas::server::engine::operation::Operation for PanickingCapture {
    const TYPE: tenantatlas::domain::run::OperationType =
        tenantatlas::domain::run::OperationType::AddPolicies;
    const NOTICE: tenantatlas::server::engine::operation::Notice =
        tenantatlas::server::engine::operation::Notice::new("Panicking", "Unfinished.");
    type Input = tenantatlas::server::engine::ops::add_policies::AddPoliciesInput;
    type Item = ();
    type Output = ();

    fn plan(&self, run: &tenantatlas::server::engine::operation::Run<Self::Input>) -> Vec<i64> {
        run.input.policy_ids.clone()
    }

    async fn pending(
        &self,
        db: &tenantatlas::server::db::Db,
        run: &tenantatlas::server::engine::operation::Run<Self::Input>,
    ) -> Result<Vec<tenantatlas::server::engine::operation::Pending<()>>, sqlx::Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM run_items WHERE run_id = $1 AND outcome = 'pending' ORDER BY id",
        )
        .bind(run.id)
        .fetch_all(db.pool())
        .await?;
        Ok(ids
            .into_iter()
            .map(|item_id| tenantatlas::server::engine::operation::Pending { item_id, item: () })
            .collect())
    }

    async fn process(
        &self,
        _creds: &tenantatlas::server::graph::TenantCredentials,
        _run: &tenantatlas::server::engine::operation::Run<Self::Input>,
        _item: &(),
    ) {
        panic!("a bug in the handler");
    }

    async fn record(
        &self,
        _tx: &mut tenantatlas::server::engine::operation::Tx,
        _run: &tenantatlas::server::engine::operation::Run<Self::Input>,
        batch: &[(tenantatlas::server::engine::operation::Pending<()>, ())],
        _now: i64,
    ) -> Result<Vec<tenantatlas::server::engine::operation::Recorded>, sqlx::Error> {
        Ok(batch
            .iter()
            .map(|_| tenantatlas::server::engine::operation::Recorded::succeeded())
            .collect())
    }

    const ENDS_WITH_LAST_BATCH: bool = true;
}

/// A panic in the task that processes the items ends nothing: the run is not `completed` with
/// its items pending; the attempt counts as failed and the run goes back to the queue.
async fn a_panic_while_processing_never_completes_the_run(t: TestDb) {
    use tenantatlas::server::engine::operation::Registry;
    use tenantatlas::server::engine::worker::CredentialsLoader;
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..4)).await;
    let loader: CredentialsLoader = Arc::new(|_tenant| {
        Box::pin(async {
            Ok::<_, tenantatlas::server::engine::worker::RunFailure>(common::creds(CONTOSO))
        })
    });
    let worker = Worker::new(
        f.db.clone(),
        Registry::default().with(PanickingCapture),
        loader,
        "panicking",
    )
    .with_work_backoff(Duration::from_secs(30));
    assert!(
        worker.try_execute_task().await.is_err(),
        "the attempt failed"
    );
    let row = sqlx::query("SELECT status, processed_items, work_errors FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    let (status, processed, errors): (String, i64, i64) = (
        row.get("status"),
        row.get("processed_items"),
        row.get("work_errors"),
    );
    assert_eq!((status.as_str(), processed, errors), ("running", 0, 1));
    let items = item_outcomes(&f.db, run).await;
    assert_eq!(items.len(), 4);
    assert!(
        items.iter().all(|(outcome, _)| outcome == "pending"),
        "{items:?}"
    );
}

/// A client whose token cache is empty, on the fixture's simulator, as a server that just
/// started has.
fn fresh_client(f: &Fixture) -> GraphClient {
    use tenantatlas::server::graph::GraphConfig;
    GraphClient::new(GraphConfig::new(&f.sim.login_url, &f.sim.graph_url)).unwrap()
}

/// The server's worker over `client`, with its real credentials loading and token check.
fn server_worker_on(f: &Fixture, client: GraphClient) -> Worker {
    use tenantatlas::server::graph::{ClientSecret, GraphAccess, SecretResolver};
    let graph = GraphAccess {
        client,
        secrets: SecretResolver::with_demo_secret(ClientSecret::new("sim-secret")),
    };
    tenantatlas::server::runs_worker(&f.db, graph)
}

/// Contoso's app as Entra ID sees it once its secret is wrong.
fn reject_contoso_secret(f: &Fixture) {
    use tenantatlas::graph_sim::{AppSetup, TokenFault};
    f.sim.set_app(
        CONTOSO,
        AppSetup {
            token_error: Some(TokenFault::WrongSecret),
            ..AppSetup::default()
        },
    );
}

/// A secret the tenant rejects fails the run as a whole: `authentication_failed` on the run
/// (not only on its items), every item closed with it, after one request to the token
/// endpoint instead of one per policy, and no Graph call.
async fn a_rejected_secret_fails_the_run_with_one_token_request(t: TestDb) {
    let f = fixture(&t).await;
    reject_contoso_secret(&f);
    let run = f.queue(&f.ids(0..5)).await;
    let worker = server_worker_on(&f, fresh_client(&f));
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { run_id: run }
    );
    let RunRow {
        status,
        total_items: total,
        processed_items: processed,
        succeeded,
        failed,
        skipped,
        reason_code: reason,
        ..
    } = f.run_row(run).await;
    assert_eq!(
        (
            status.as_str(),
            total,
            processed,
            succeeded,
            failed,
            skipped
        ),
        ("failed", 5, 5, 0, 5, 0)
    );
    assert_eq!(reason.as_deref(), Some("authentication_failed"));
    let message: Option<String> =
        sqlx::query_scalar("SELECT failure_message FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    let message = message.expect("the run says why");
    assert!(message.contains("secret"), "{message}");
    assert!(!message.contains("sim-secret"), "{message}");
    let items = item_outcomes(&f.db, run).await;
    assert!(
        items.iter().all(|(outcome, reason)| outcome == "failed"
            && reason.as_deref() == Some("authentication_failed")),
        "{items:?}"
    );
    let counters = f.sim.counters();
    assert_eq!(
        counters.token_requests(),
        1,
        "one token request for the run"
    );
    assert_eq!(counters.graph_requests(), 0, "no Graph call");
}

/// Without the run's token check (a worker that lets its items find out), the captures of a
/// tenant whose secret is rejected share one refusal: the token endpoint is asked once, not
/// once per policy.
async fn a_refused_token_is_not_asked_for_again_by_each_item(t: TestDb) {
    let f = fixture(&t).await;
    reject_contoso_secret(&f);
    let run = f.queue(&f.ids(0..12)).await;
    let worker = common::sim_worker(&f.db, &fresh_client(&f), "w1");
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { run_id: run }
    );
    let items = item_outcomes(&f.db, run).await;
    assert_eq!(items.len(), 12);
    assert!(
        items.iter().all(|(outcome, reason)| outcome == "failed"
            && reason.as_deref() == Some("authentication_failed")),
        "{items:?}"
    );
    assert_eq!(f.sim.counters().token_requests(), 1);
}

/// A cancel stops a sync's Graph work, not only a run's items: a sync waiting out a long
/// `Retry-After` ends at once, and Graph hears nothing more from it, so the tenant's next run
/// (which the cancel let start) does not share the tenant's budget with it.
async fn a_cancelled_sync_stops_calling_graph_at_once(t: TestDb) {
    use tenantatlas::server::engine::runner::WakeUp;
    use tenantatlas::server::runs::{cancel, start};
    let f = fixture(&t).await;
    // One request per minute: the sync's listings are throttled with a Retry-After of ~60 s.
    let mut knobs = f.sim.knobs();
    knobs.throttle_limit = 1;
    knobs.throttle_window_ms = 60_000;
    f.sim.set_knobs(knobs);
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let run = start::sync_inventory(&f.db, &ctx).await.unwrap().run_id;
    let wake = WakeUp::default();
    let worker = f.worker("w1").with_cancels(wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    common::wait_until_throttled(&f.sim).await;
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::CancelRuns)
        .await
        .unwrap();
    cancel::cancel(&f.db, &ctx, run)
        .await
        .unwrap()
        .expect("the sync is cancelled");
    wake.run_cancelled(&f.db, run).await;
    // The wait is a minute; ending within 3 s (a margin for a loaded machine) proves it was cut.
    tokio::time::timeout(Duration::from_secs(3), working)
        .await
        .expect("the sync's work ended at once")
        .unwrap()
        .unwrap();
    let after_cancel = f.sim.counters().graph_requests();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        f.sim.counters().graph_requests(),
        after_cancel,
        "no Graph request after the cancel"
    );
    let RunRow {
        status,
        reason_code: reason,
        ..
    } = f.run_row(run).await;
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("cancelled", Some("cancelled"))
    );
    let summary: Option<String> = sqlx::query_scalar("SELECT summary FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(summary, None, "the cancelled sync wrote nothing");
}

/// A sync cancelled while it lists an unthrottled tenant stops asking Graph too: a wait that
/// would be ready at once (budget left, token cached) still gives way to the cancel in a run's
/// conclusion, whose result the cancel discards (only an item's capture in flight goes on).
async fn a_cancelled_sync_of_an_unthrottled_tenant_stops_listing(t: TestDb) {
    use tenantatlas::server::engine::runner::WakeUp;
    use tenantatlas::server::runs::{cancel, start};
    let f = fixture(&t).await;
    // 2,000 policies: 500 of each type, five pages of 100 each, every request 150 ms late.
    let (sim, client) = common::sim_and_client(2_000).await;
    common::answer_after(&sim, 150);
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::StartRuns)
        .await
        .unwrap();
    let run = start::sync_inventory(&f.db, &ctx).await.unwrap().run_id;
    let wake = WakeUp::default();
    let worker = common::sim_worker(&f.db, &client, "w1").with_cancels(wake.cancels());
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    common::wait_until(
        "the sync never listed",
        Duration::from_secs(20),
        Duration::from_millis(10),
        || async { sim.counters().graph_requests() > 0 },
    )
    .await;
    let ctx = authorize_user(&f.db, f.user_id, CONTOSO, Capability::CancelRuns)
        .await
        .unwrap();
    cancel::cancel(&f.db, &ctx, run)
        .await
        .unwrap()
        .expect("the sync is cancelled");
    wake.run_cancelled(&f.db, run).await;
    let at_cancel = sim.counters().graph_requests();
    tokio::time::timeout(Duration::from_secs(10), working)
        .await
        .expect("the sync's work ended")
        .unwrap()
        .unwrap();
    // At most the pages already asked for when the cancel landed (one per type) answer; no
    // further page is asked for (20 pages in all).
    let after = sim.counters().graph_requests();
    assert!(
        after <= at_cancel + 4,
        "{after} Graph requests after the cancel, {at_cancel} when it landed"
    );
    assert_eq!(f.run_row(run).await.status, "cancelled");
}

/// An "add policies" handler for the tests below: its processing panics once on each of the
/// first `panics` items it meets, and waits while `gate` is closed (saying it `started`).
struct ScriptedCapture {
    panics: usize,
    panicked: std::sync::Mutex<std::collections::HashSet<i64>>,
    gate: tokio::sync::watch::Receiver<bool>,
    started: tokio::sync::watch::Sender<bool>,
}

impl ScriptedCapture {
    /// The handler, the sender that opens its gate (`open` at first), and the receiver that
    /// tells it started processing.
    fn new(
        panics: usize,
        open: bool,
    ) -> (
        Self,
        tokio::sync::watch::Sender<bool>,
        tokio::sync::watch::Receiver<bool>,
    ) {
        let (opener, gate) = tokio::sync::watch::channel(open);
        let (started, watch_started) = tokio::sync::watch::channel(false);
        let capture = Self {
            panics,
            panicked: Default::default(),
            gate,
            started,
        };
        (capture, opener, watch_started)
    }

    /// A worker on the fixture's database with this handler alone, as Contoso's app.
    fn worker(self, f: &Fixture, name: &str) -> Worker {
        use tenantatlas::server::engine::operation::Registry;
        use tenantatlas::server::engine::worker::CredentialsLoader;
        let loader: CredentialsLoader = Arc::new(|_tenant| {
            Box::pin(async {
                Ok::<_, tenantatlas::server::engine::worker::RunFailure>(common::creds(CONTOSO))
            })
        });
        Worker::new(f.db.clone(), Registry::default().with(self), loader, name)
    }
}

impl tenantatlas::server::engine::operation::Operation for ScriptedCapture {
    const TYPE: tenantatlas::domain::run::OperationType =
        tenantatlas::domain::run::OperationType::AddPolicies;
    const NOTICE: tenantatlas::server::engine::operation::Notice =
        tenantatlas::server::engine::operation::Notice::new("Scripted", "Unfinished.");
    type Input = tenantatlas::server::engine::ops::add_policies::AddPoliciesInput;
    /// The item's id.
    type Item = i64;
    type Output = ();

    fn plan(&self, run: &tenantatlas::server::engine::operation::Run<Self::Input>) -> Vec<i64> {
        run.input.policy_ids.clone()
    }

    async fn pending(
        &self,
        db: &tenantatlas::server::db::Db,
        run: &tenantatlas::server::engine::operation::Run<Self::Input>,
    ) -> Result<Vec<tenantatlas::server::engine::operation::Pending<i64>>, sqlx::Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM run_items WHERE run_id = $1 AND outcome = 'pending' ORDER BY id",
        )
        .bind(run.id)
        .fetch_all(db.pool())
        .await?;
        Ok(ids
            .into_iter()
            .map(|item_id| tenantatlas::server::engine::operation::Pending {
                item_id,
                item: item_id,
            })
            .collect())
    }

    async fn process(
        &self,
        _creds: &tenantatlas::server::graph::TenantCredentials,
        _run: &tenantatlas::server::engine::operation::Run<Self::Input>,
        item: &i64,
    ) {
        self.started.send_replace(true);
        let mut gate = self.gate.clone();
        let _ = gate.wait_for(|open| *open).await;
        let panics = {
            let mut panicked = self.panicked.lock().unwrap();
            panicked.len() < self.panics && panicked.insert(*item)
        };
        if panics {
            panic!("a bug in the handler, met once by item {item}");
        }
    }

    async fn record(
        &self,
        _tx: &mut tenantatlas::server::engine::operation::Tx,
        _run: &tenantatlas::server::engine::operation::Run<Self::Input>,
        batch: &[(tenantatlas::server::engine::operation::Pending<i64>, ())],
        _now: i64,
    ) -> Result<Vec<tenantatlas::server::engine::operation::Recorded>, sqlx::Error> {
        Ok(batch
            .iter()
            .map(|_| tenantatlas::server::engine::operation::Recorded::succeeded())
            .collect())
    }

    const ENDS_WITH_LAST_BATCH: bool = true;
}

/// A run whose claims each make progress is not given up over work errors scattered through
/// its life: five different items panic once each (as a failover or a bug met by one odd
/// policy would), one item at a time, so every claim after the first records an item before
/// the next panic. The count of failed claims starts again with each recorded batch: the run
/// completes, every item once, instead of ending `work_failed_repeatedly` ("5 times in a row").
async fn scattered_work_errors_do_not_fail_a_run_that_makes_progress(t: TestDb) {
    use tenantatlas::server::engine::runner::WakeUp;
    use tenantatlas::server::engine::worker::WORK_ATTEMPTS;
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..8)).await;
    let (capture, _opener, _started) = ScriptedCapture::new(WORK_ATTEMPTS as usize, true);
    let worker = capture
        .worker(&f, "scattered-errors")
        .with_items_at_once(1)
        .with_work_backoff(Duration::from_millis(10));
    let wake = WakeUp::default();
    let (stop, task) = common::start_runner(worker, &wake, &f.db, Duration::from_millis(50));
    let status = ended(&f.db, run, Duration::from_secs(60)).await;
    stop.send(true).unwrap();
    task.await.unwrap();

    let row = f.run_row(run).await;
    assert_eq!(
        (
            status.as_str(),
            row.total_items,
            row.processed_items,
            row.succeeded
        ),
        ("completed", 8, 8, 8),
        "{row:?}"
    );
    assert_eq!(row.reason_code, None);
    assert_eq!(
        row.attempt,
        WORK_ATTEMPTS + 1,
        "a claim for each panic, then one that ends the run"
    );
    let items = item_outcomes(&f.db, run).await;
    assert!(
        items.iter().all(|(outcome, _)| outcome == "succeeded"),
        "{items:?}"
    );
}

/// Each process paces a tenant's Graph requests with a limiter of its own, so a tenant's
/// interactive run is claimed only by the instance that works on its bulk run: another
/// instance leaves it (and takes another tenant's). When that instance dies, its runs are
/// taken over and the tenant's runs claimed by whoever takes them.
async fn a_tenants_runs_stay_with_the_instance_that_works_for_it(t: TestDb) {
    let f = fixture(&t).await;
    let tenant = common::tenant_id(&f.db, CONTOSO).await;
    let other = common::tenant_id(&f.db, common::FABRIKAM).await;
    let interactive = |tenant: i64, key: &'static str| {
        let db = f.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO runs (tenant_id, operation_type, lane, resource, action, target_id, \
                 input, idempotency_key, status, total_items, created_at) \
                 VALUES ($1, 'tenant.check_connection', 'interactive', 'test', 'affinity', 0, \
                   '{}', $2, 'pending', 0, 1) RETURNING id",
            )
            .bind(tenant)
            .bind(key)
            .fetch_one(db.pool())
            .await
            .unwrap()
        }
    };
    let (a, b) = (f.worker("instance-a"), f.worker("instance-b"));
    let claimed = |run: Option<tenantatlas::server::engine::worker::ClaimedRun>| {
        run.map(|claimed| (claimed.run.id, claimed.run.attempt))
    };
    let bulk = f.queue(&f.ids(0..2)).await;
    assert_eq!(claimed(a.claim(Lane::Bulk).await.unwrap()), Some((bulk, 1)));
    let check = interactive(tenant, "affinity-contoso").await;
    assert_eq!(
        claimed(b.claim(Lane::Interactive).await.unwrap()),
        None,
        "B leaves the run of a tenant A works for"
    );
    let others = interactive(other, "affinity-fabrikam").await;
    assert_eq!(
        claimed(b.claim(Lane::Interactive).await.unwrap()),
        Some((others, 1)),
        "B takes another tenant's run"
    );
    assert_eq!(
        claimed(a.claim(Lane::Interactive).await.unwrap()),
        Some((check, 1)),
        "A takes the run of the tenant it works for"
    );
    // A dies: its leases run out, and nothing of it holds the tenant any more.
    sqlx::query("UPDATE runs SET lease_expires_at = 0 WHERE lease_owner = 'instance-a'")
        .execute(f.db.pool())
        .await
        .unwrap();
    assert_eq!(
        claimed(b.claim(Lane::Bulk).await.unwrap()),
        Some((bulk, 2)),
        "the dead instance's bulk run is taken over"
    );
    assert_eq!(
        claimed(b.claim(Lane::Interactive).await.unwrap()),
        Some((check, 2)),
        "and its interactive run"
    );
}

/// A heartbeat that cannot renew its lease warns in the run's span: the warning names the run,
/// its tenant and its operation (docs/operations.md).
async fn a_heartbeat_warning_names_its_run(t: TestDb) {
    use tenantatlas::server::db::Backend;
    let logs = Logs::capture();
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..1)).await;
    let (capture, opener, mut started) = ScriptedCapture::new(0, false);
    let worker = capture
        .worker(&f, "heartbeat-warns")
        .with_lease(Duration::from_millis(300));
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    // The item is being processed (the run's items are written, the heartbeat started): from
    // now on a renewal of the lease alone (no counter changes) is refused by the database.
    tokio::time::timeout(Duration::from_secs(30), started.wait_for(|s| *s))
        .await
        .expect("the item starts")
        .unwrap();
    let refuse: &[&str] = match f.db.backend() {
        Backend::Sqlite => &[
            "CREATE TRIGGER refuse_renewal BEFORE UPDATE OF lease_expires_at ON runs \
             WHEN NEW.processed_items = OLD.processed_items AND NEW.status = 'running' \
             BEGIN SELECT RAISE(ABORT, 'renewal refused by the test'); END",
        ],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse_renewal() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN RAISE EXCEPTION 'renewal refused by the test'; END $$",
            "CREATE TRIGGER refuse_renewal BEFORE UPDATE OF lease_expires_at ON runs \
             FOR EACH ROW WHEN (NEW.processed_items = OLD.processed_items \
               AND NEW.status = 'running') EXECUTE FUNCTION refuse_renewal()",
        ],
    };
    for sql in refuse {
        sqlx::query(sql).execute(f.db.pool()).await.unwrap();
    }
    let warning = {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = logs.text();
            if let Some(line) = text
                .lines()
                .find(|line| line.contains("could not renew the lease"))
            {
                break line.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "no warning:\n{text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let allow = match f.db.backend() {
        Backend::Sqlite => "DROP TRIGGER refuse_renewal",
        Backend::Postgres => "DROP TRIGGER refuse_renewal ON runs",
    };
    sqlx::query(allow).execute(f.db.pool()).await.unwrap();
    opener.send_replace(true);
    working.await.unwrap().unwrap();
    assert!(
        warning.contains(&format!("run_id={run}"))
            && warning.contains("tenant_id=")
            && warning.contains("operation=")
            && warning.contains("backup_set.add_policies"),
        "{warning}"
    );
    assert_eq!(f.run_row(run).await.status, "completed");
}

/// The Graph client's captures, counted as they start and finish; they wait at the gate until
/// the test opens it.
struct CountingSource {
    client: GraphClient,
    started: std::sync::atomic::AtomicUsize,
    finished: std::sync::atomic::AtomicUsize,
    /// A permit once the first capture has started.
    reached: tokio::sync::Semaphore,
    gate: tokio::sync::watch::Sender<bool>,
}

impl CountingSource {
    fn new(client: GraphClient) -> Self {
        Self {
            client,
            started: Default::default(),
            finished: Default::default(),
            reached: tokio::sync::Semaphore::new(0),
            gate: tokio::sync::watch::Sender::new(false),
        }
    }

    fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.started.load(SeqCst), self.finished.load(SeqCst))
    }
}

impl tenantatlas::server::graph::PolicySource for CountingSource {
    fn list_policies<'a>(
        &'a self,
        creds: &'a tenantatlas::server::graph::TenantCredentials,
        policy_type: tenantatlas::domain::snapshot::PolicyType,
    ) -> tenantatlas::server::graph::GraphFuture<'a, Vec<tenantatlas::server::graph::PolicyListing>>
    {
        tenantatlas::server::graph::PolicySource::list_policies(&self.client, creds, policy_type)
    }

    fn capture_policy<'a>(
        &'a self,
        creds: &'a tenantatlas::server::graph::TenantCredentials,
        policy_type: tenantatlas::domain::snapshot::PolicyType,
        graph_id: &'a str,
        options: tenantatlas::server::graph::CaptureOptions,
    ) -> tenantatlas::server::graph::GraphFuture<'a, tenantatlas::server::graph::Snapshot> {
        use std::sync::atomic::Ordering::SeqCst;
        Box::pin(async move {
            if self.started.fetch_add(1, SeqCst) == 0 {
                self.reached.add_permits(1);
            }
            let mut gate = self.gate.subscribe();
            let _ = gate.wait_for(|open| *open).await;
            let captured = tenantatlas::server::graph::PolicySource::capture_policy(
                &self.client,
                creds,
                policy_type,
                graph_id,
                options,
            )
            .await;
            self.finished.fetch_add(1, SeqCst);
            captured
        })
    }

    fn granted_roles<'a>(
        &'a self,
        creds: &'a tenantatlas::server::graph::TenantCredentials,
    ) -> tenantatlas::server::graph::TokenFuture<'a> {
        tenantatlas::server::graph::PolicySource::granted_roles(&self.client, creds)
    }

    fn first_page<'a>(
        &'a self,
        creds: &'a tenantatlas::server::graph::TenantCredentials,
        policy_type: tenantatlas::domain::snapshot::PolicyType,
    ) -> tenantatlas::server::graph::GraphFuture<'a, usize> {
        tenantatlas::server::graph::PolicySource::first_page(&self.client, creds, policy_type)
    }
}

/// While a batch of outcomes waits for the database, the captures in flight go on and finish:
/// handing an outcome to the recorder never holds the stream of items up (a full bounded
/// channel did: its send stopped every capture in flight until the batch was written). Only a
/// new item waits, once the backlog is full. 400 policies the simulator does not know: each
/// capture is a quick 404, recorded as failed.
async fn captures_in_flight_finish_while_a_batch_waits_for_the_database(t: TestDb) {
    use tenantatlas::server::db::Backend;
    use tenantatlas::server::engine::operation::Registry;
    use tenantatlas::server::engine::worker::CredentialsLoader;
    let f = fixture(&t).await;
    let ids = common::insert_policies(&f.db, CONTOSO, 400).await;
    let run = f.queue(&ids).await;
    // A client Graph's pace does not hold back (as the runs bench's): 300 captures in well under
    // the 5 s SQLite's writers wait for the lock held below.
    let mut config =
        tenantatlas::server::graph::GraphConfig::new(&f.sim.login_url, &f.sim.graph_url);
    config.limits = tenantatlas::server::graph::limiter::LimiterConfig {
        requests_per_second: std::num::NonZeroU32::MAX,
        burst: std::num::NonZeroU32::MAX,
        max_in_flight: 64,
    };
    let client = GraphClient::new(config).unwrap();
    let source = Arc::new(CountingSource::new(client));
    let loader: CredentialsLoader = Arc::new(|_tenant| {
        Box::pin(async {
            Ok::<_, tenantatlas::server::engine::worker::RunFailure>(common::creds(CONTOSO))
        })
    });
    let worker = Worker::new(
        f.db.clone(),
        Registry::standard(Arc::clone(&source) as _),
        loader,
        "counting",
    );
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    tokio::time::timeout(Duration::from_secs(30), source.reached.acquire())
        .await
        .expect("the first capture starts")
        .expect("never closed")
        .forget();
    // Every batch now waits for the database: SQLite's one writer, or the run's row on
    // PostgreSQL (a batch's transaction renews the run's lease first).
    let mut lock = f.db.pool().acquire().await.unwrap();
    match f.db.backend() {
        Backend::Sqlite => {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *lock)
                .await
                .unwrap();
        }
        Backend::Postgres => {
            sqlx::query("BEGIN").execute(&mut *lock).await.unwrap();
            sqlx::query("SELECT id FROM runs WHERE id = $1 FOR UPDATE")
                .bind(run)
                .fetch_one(&mut *lock)
                .await
                .unwrap();
        }
    }
    source.gate.send_replace(true);
    // Until more than two batches' worth of captures started and every one of them finished,
    // with none started for a moment, or 3 s (SQLite's writers give up after 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut last = source.counts();
    let still = loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = source.counts();
        let settled = now == last && now.0 == now.1 && now.0 > 200;
        if settled || tokio::time::Instant::now() >= deadline {
            break now;
        }
        last = now;
    };
    let processed: i64 = f.run_row(run).await.processed_items;
    sqlx::query("ROLLBACK").execute(&mut *lock).await.unwrap();
    drop(lock);
    let (started, finished) = still;
    assert_eq!(
        started, finished,
        "every capture that started finished while the batch waited ({started} started, {finished} finished, within 3 s)"
    );
    assert!(
        started > 200,
        "the captures went on while the batch waited: {started} of 400"
    );
    assert!(
        started < 400,
        "the backlog is bounded: {started} of 400 started"
    );
    assert_eq!(
        processed, 0,
        "nothing was recorded while the database was held"
    );
    assert_eq!(
        working.await.unwrap().unwrap(),
        Outcome::TaskCompleted { run_id: run }
    );
    let row = f.run_row(run).await;
    assert_eq!((row.status.as_str(), row.processed_items), ("failed", 400));
    assert_eq!(source.counts(), (400, 400), "each policy captured once");
}

/// PostgreSQL: a run whose lease is over (here 0, as SIGTERM leaves it) but whose owner's
/// instance lock is held is a live server's, between its polls or restarting: it takes the run
/// over itself, so a sync queued behind it is not stranded, and `sync-inventory` must not give
/// up on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_run_whose_owner_holds_its_lock_strands_nothing() {
    use tenantatlas::server::engine::instance::InstanceLock;
    let t = TestDb::create(common::Backend::Postgres).await;
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..2)).await;
    let owner = InstanceLock::acquire(&f.db, "live-owner").await.unwrap();
    sqlx::query(
        "UPDATE runs SET status = 'running', lane = 'bulk', lease_owner = $1, \
         lease_expires_at = 0, attempt = 1, started_at = 1 WHERE id = $2",
    )
    .bind(owner.id())
    .bind(run)
    .execute(f.db.pool())
    .await
    .unwrap();
    let tenant_id = common::tenant_id(&f.db, CONTOSO).await;
    let sync = tenantatlas::server::runs::start::sync_inventory_unattended(&f.db, tenant_id)
        .await
        .unwrap();
    let cli = InstanceLock::acquire_cli(&f.db, "cli-engine")
        .await
        .unwrap();
    let worker = f
        .worker("cli-engine")
        .as_instance(&cli)
        .with_only_runs(&[sync.run_id]);
    assert_eq!(
        worker.stranded_behind().await.unwrap(),
        Vec::<(i64, i64)>::new(),
        "the owner is live"
    );
    drop(owner);
    // Once the owner's lock is free, the sync is stranded behind the run.
    let stranded = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let stranded = worker.stranded_behind().await.unwrap();
            if !stranded.is_empty() {
                break stranded;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a dead owner strands the sync");
    assert_eq!(stranded, [(sync.run_id, run)]);
}

/// Items that can never be written (here a trigger refuses them): every claim rolls back, and
/// so does the claim that gives up after `WORK_ATTEMPTS` (it writes the items first). The run
/// must still end, failed, after one claim more, and never be claimed again and again at once,
/// holding the tenant's lane.
async fn a_give_up_that_cannot_write_its_items_still_ends_the_run(t: TestDb) {
    use tenantatlas::server::engine::runner::WakeUp;
    use tenantatlas::server::engine::worker::WORK_ATTEMPTS;
    let f = fixture(&t).await;
    let run = f.queue(&f.ids(0..3)).await;
    let refuse: &[&str] = match f.db.backend() {
        tenantatlas::server::db::Backend::Sqlite => &["CREATE TRIGGER refuse_items BEFORE INSERT \
             ON run_items BEGIN SELECT RAISE(ABORT, 'items refused'); END"],
        tenantatlas::server::db::Backend::Postgres => &[
            "CREATE FUNCTION refuse_items() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'items refused'; END $$",
            "CREATE TRIGGER refuse_items BEFORE INSERT ON run_items \
             FOR EACH ROW EXECUTE FUNCTION refuse_items()",
        ],
    };
    for sql in refuse {
        sqlx::query(sql).execute(f.db.pool()).await.unwrap();
    }
    let worker = f
        .worker("items-refused")
        .with_work_backoff(Duration::from_millis(20));
    let wake = WakeUp::default();
    let (stop, task) = common::start_runner(worker, &wake, &f.db, Duration::from_millis(50));
    let row = common::wait_run(&f.db, run, Duration::from_secs(10), |row| !row.is_open()).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    let attempt: i64 = sqlx::query_scalar("SELECT attempt FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert!(attempt <= WORK_ATTEMPTS + 2, "claimed {attempt} times");
    assert_eq!(row.status, "failed", "{row:?}");
    assert_eq!(row.reason_code.as_deref(), Some("work_failed_repeatedly"));
}
