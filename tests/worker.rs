//! The durable worker against the Graph simulator over real HTTP: an outcome per item, counters
//! that add up, a final status from the counts, safe failure texts, run-level failures, and a crash mid-run that loses nothing
//! and captures nothing twice.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestDb, CONTOSO, OPERATOR};
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

    async fn run_row(&self, run_id: i64) -> (String, i64, i64, i64, i64, i64, Option<String>) {
        let row = sqlx::query(
            "SELECT status, total_items, processed_items, succeeded, failed, skipped, reason_code FROM runs WHERE id = $1",
        )
        .bind(run_id)
        .fetch_one(self.db.pool())
        .await
        .unwrap();
        (
            row.get("status"),
            row.get("total_items"),
            row.get("processed_items"),
            row.get("succeeded"),
            row.get("failed"),
            row.get("skipped"),
            row.get("reason_code"),
        )
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
        f.run_row(first).await.0,
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
    let (status, total, processed, succeeded, failed, skipped, _) = f.run_row(second).await;
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
    let (status, _, processed, succeeded, failed, ..) = f.run_row(run).await;
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
    assert_eq!(f.run_row(run).await.0, "completed_with_errors");
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
    let (status, _, processed, .., reason) = f.run_row(run).await;
    assert_eq!(status, "failed");
    assert_eq!(processed, 0);
    assert_eq!(reason.as_deref(), Some("backup_set_not_found"));
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
        let (status, total, processed, .., reason) = f.run_row(run).await;
        assert_eq!(
            (status.as_str(), total, processed, reason.as_deref()),
            ("failed", 3, 0, Some("invalid_run_input")),
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
    let mut knobs = f.sim.knobs();
    knobs.latency_ms = 150;
    f.sim.set_knobs(knobs);
    let run = f.queue(&f.ids(0..12)).await;

    // Worker A dies mid-run: its task is dropped without any cleanup.
    let a = f.worker("a").with_lease(Duration::from_millis(800));
    let crashed = tokio::spawn(async move { a.try_execute_task().await });
    let db = f.db.clone();
    let progressed = async {
        loop {
            let done: i64 = sqlx::query_scalar("SELECT processed_items FROM runs WHERE id = $1")
                .bind(run)
                .fetch_one(db.pool())
                .await
                .unwrap();
            if done >= 2 {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let before = tokio::time::timeout(Duration::from_secs(30), progressed)
        .await
        .expect("worker A makes progress");
    crashed.abort();
    let _ = crashed.await;
    assert!(before < 12, "A was stopped mid-run");
    assert_eq!(f.run_row(run).await.0, "running");

    // Worker B cannot take the run while A's lease holds, and takes it once it has expired.
    let b = f.worker("b");
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(
        b.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { run_id: run }
    );
    let (status, total, processed, succeeded, ..) = f.run_row(run).await;
    assert_eq!(
        (status.as_str(), total, processed, succeeded),
        ("completed", 12, 12, 12)
    );
    assert_eq!(f.backup_item_count().await, 12, "every policy exactly once");
    let attempts: i64 = sqlx::query_scalar("SELECT attempt FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(attempts, 2);
}

async fn two_instances_share_the_queue_without_double_work(t: TestDb) {
    use tenantatlas::server::engine::runner::{self, WakeUp};
    let f = fixture(&t).await;
    let mut knobs = f.sim.knobs();
    knobs.latency_ms = 20;
    f.sim.set_knobs(knobs);
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
        let (status, ..) = f.run_row(run).await;
        assert_eq!(status, "completed");
        let attempts: i64 = sqlx::query_scalar("SELECT attempt FROM runs WHERE id = $1")
            .bind(run)
            .fetch_one(f.db.pool())
            .await
            .unwrap();
        assert_eq!(attempts, 1, "run {run} was claimed once");
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
    let (status, ..) = f.run_row(run).await;
    assert_eq!(status, "completed");
    let attempt: i64 = sqlx::query_scalar("SELECT attempt FROM runs WHERE id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(attempt, 1);
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
    let (status, _, processed, ..) = f.run_row(run).await;
    assert_eq!((status.as_str(), processed), ("running", 0));
    let items: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM run_items WHERE run_id = $1")
        .bind(run)
        .fetch_one(f.db.pool())
        .await
        .unwrap();
    assert_eq!(items, 0, "the stalled owner wrote no item");
    assert_eq!(f.sim.counters().graph_requests(), 0, "nor called Graph");

    current.execute_claimed(new_claim).await.unwrap();
    let (status, _, processed, succeeded, ..) = f.run_row(run).await;
    assert_eq!((status.as_str(), processed, succeeded), ("completed", 6, 6));
    assert_eq!(f.backup_item_count().await, 6);
}
