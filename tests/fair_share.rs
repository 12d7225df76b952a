//! One tenant must not stall another: the runner works on several runs at once, claims the next
//! run from the tenant that has waited longest, never has two bulk runs of one tenant active,
//! and keeps interactive runs apart from bulk runs. Graph is the simulator over real HTTP.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{RunRow, TestDb, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER};
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::run::OperationType;
use tenantatlas::domain::{Capability, PolicySelection};
use tenantatlas::graph_sim::SimHandle;
use tenantatlas::server::auth::authorize_user;
use tenantatlas::server::db::Db;
use tenantatlas::server::engine::operation::{
    Notice, Operation, Pending, Recorded, Registry, Run, Tx,
};
use tenantatlas::server::engine::runner::WakeUp;
use tenantatlas::server::engine::worker::{CredentialsLoader, RunFailure, Worker};
use tenantatlas::server::graph::{GraphClient, PolicySource, TenantCredentials};
use tenantatlas::server::runs::create::create_or_reuse;
use tenantatlas::server::seed;

both_backends!(TestDb:
    a_busy_tenant_does_not_delay_another,
    interactive_runs_do_not_wait_behind_bulk_runs,
    a_lane_is_polled_while_the_other_keeps_the_runner_busy,
    a_tenants_interactive_runs_go_one_at_a_time,
);

struct Fixture {
    db: Db,
    sim: SimHandle,
    client: GraphClient,
    /// Tenant database id → its credentials at the simulator.
    creds: HashMap<i64, TenantCredentials>,
    /// Compliance policy ids of each tenant, by external id.
    policies: HashMap<&'static str, Vec<i64>>,
}

async fn fixture(t: &TestDb, policies_per_tenant: usize) -> Fixture {
    seed::seed_demo(&t.db).await.unwrap();
    let (sim, client) = common::sim_and_client(policies_per_tenant).await;
    let mut creds = HashMap::new();
    let mut policies = HashMap::new();
    for tenant in [CONTOSO, FABRIKAM] {
        let ids = common::insert_sim_compliance(&t.db, &client, &common::creds(tenant), usize::MAX)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        creds.insert(
            common::tenant_id(&t.db, tenant).await,
            common::creds(tenant),
        );
        policies.insert(tenant, ids);
    }
    Fixture {
        db: t.db.clone(),
        sim,
        client,
        creds,
        policies,
    }
}

impl Fixture {
    fn worker(&self, registry: Registry) -> Worker {
        let creds = Arc::new(self.creds.clone());
        let loader: CredentialsLoader = Arc::new(move |tenant| {
            let creds = creds.get(&tenant).cloned().ok_or_else(|| RunFailure {
                reason: ReasonCode::AuthenticationFailed,
                message: "no credentials".into(),
            });
            Box::pin(async move { creds })
        });
        Worker::new(self.db.clone(), registry, loader, "fair-share")
    }

    fn source(&self) -> Arc<dyn PolicySource> {
        Arc::new(self.client.clone())
    }

    /// Queues an "add policies" run into a new backup set of `tenant`, as `user`.
    async fn queue(&self, tenant: &str, user: &str, policy_ids: &[i64]) -> i64 {
        let user_id = common::user_id(&self.db, user).await;
        let ctx = authorize_user(&self.db, user_id, tenant, Capability::StartRuns)
            .await
            .unwrap();
        let set_id: i64 = sqlx::query_scalar(
            "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, 0) RETURNING id",
        )
        .bind(ctx.scope.id())
        .bind(format!("Set {}", uuid::Uuid::new_v4()))
        .fetch_one(self.db.pool())
        .await
        .unwrap();
        let selection = PolicySelection::parse(policy_ids.to_vec()).unwrap();
        let run = create_or_reuse(&self.db, &ctx, set_id, &selection, Default::default())
            .await
            .unwrap();
        assert!(!run.reused);
        run.run_id
    }

    /// Queues a [`Probe`] run (an interactive run of the connection check's type) straight into
    /// the database, without a wake-up; its id.
    async fn queue_probe(&self, tenant_id: i64, policy_ids: &[i64]) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO runs (tenant_id, operation_type, lane, resource, action, target_id, input, \
             idempotency_key, status, total_items, created_at) \
             VALUES ($1, $2, 'interactive', 'tenant', 'check_connection', $1, $3, $5, 'pending', 1, $4) \
             RETURNING id",
        )
        .bind(tenant_id)
        .bind(OperationType::CheckConnection.as_str())
        .bind(serde_json::to_string(policy_ids).unwrap())
        .bind(tenantatlas::domain::Timestamp::now().millis())
        .bind(format!("probe-{}", uuid::Uuid::new_v4()))
        .fetch_one(self.db.pool())
        .await
        .unwrap()
    }

    /// How many of `runs` are pending or running.
    async fn active(&self, runs: &[i64]) -> usize {
        let mut active = 0;
        for &run in runs {
            active += usize::from(common::run_row(&self.db, run).await.is_open());
        }
        active
    }

    /// Waits until `run` has ended; its row then, and how long that took. `limit` only bounds
    /// a stuck test.
    async fn wait_ended(&self, run: i64, limit: Duration) -> (RunRow, Duration) {
        let started = Instant::now();
        let row = common::wait_run(&self.db, run, limit, |row| !row.is_open()).await;
        (row, started.elapsed())
    }

    fn set_latency(&self, ms: u64) {
        let mut knobs = self.sim.knobs();
        knobs.latency_ms = ms;
        self.sim.set_knobs(knobs);
    }
}

async fn a_busy_tenant_does_not_delay_another(t: TestDb) {
    let f = fixture(&t, 2_000).await;
    let contoso = &f.policies[CONTOSO];
    assert_eq!(contoso.len(), 500, "500 compliance policies per tenant");
    // Tenant A queues twenty runs of 500 policies.
    let mut a_runs = Vec::new();
    for _ in 0..20 {
        a_runs.push(f.queue(CONTOSO, OPERATOR, contoso).await);
    }
    f.set_latency(50);
    let wake = WakeUp::default();
    let worker = f.worker(Registry::standard(f.source()));
    assert_eq!(
        worker.runs_at_once(),
        4,
        "the default of --worker-concurrency"
    );
    let (stop, runner) = common::start_runner(worker, &wake, &f.db, Duration::from_secs(600));
    // A's first run is under way before B submits.
    common::wait_run(&f.db, a_runs[0], Duration::from_secs(60), |run| {
        run.status == "running"
    })
    .await;

    let b_run = f
        .queue(FABRIKAM, OUTSIDER, &f.policies[FABRIKAM][..1])
        .await;
    wake.run_queued(&f.db).await;
    let (b, took) = f.wait_ended(b_run, Duration::from_secs(120)).await;
    let a_active = f.active(&a_runs).await;
    assert_eq!(b.status, "completed");
    assert!(a_active > 0, "A's runs are still going");
    eprintln!("B's 1-policy run ended {took:?} after its submit, {a_active} of A's runs active");
    // B did not wait for A's run: it ended first (how long it took is reported above, not
    // asserted: a timing belongs in a benchmark, benches/fair.rs).
    let (a_first, _) = f.wait_ended(a_runs[0], Duration::from_secs(300)).await;
    assert!(
        b.finished_at < a_first.finished_at,
        "B's run ended at {:?}, after A's first run at {:?}",
        b.finished_at,
        a_first.finished_at
    );

    // At most one of A's bulk runs was ever running: the others are still queued, untouched.
    let running: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'running' AND tenant_id = $1")
            .bind(common::tenant_id(&f.db, CONTOSO).await)
            .fetch_one(f.db.pool())
            .await
            .unwrap();
    assert!(running <= 1, "{running} bulk runs of A at once");
    let started: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM runs WHERE started_at IS NOT NULL AND tenant_id = $1",
    )
    .bind(common::tenant_id(&f.db, CONTOSO).await)
    .fetch_one(f.db.pool())
    .await
    .unwrap();
    assert!(started < 20, "A's runs are taken one after another");
    stop.send(true).unwrap();
    runner.await.unwrap();
}

/// A stand-in for a short interactive operation: one item per policy, nothing to fetch.
struct Probe;

impl Operation for Probe {
    const TYPE: OperationType = OperationType::CheckConnection;
    const NOTICE: Notice = Notice::new("Probe", "");
    type Input = Vec<i64>;
    type Item = ();
    type Output = ();

    async fn check(&self, _: &Db, _: &Run<Vec<i64>>) -> Result<Option<RunFailure>, sqlx::Error> {
        Ok(None)
    }

    fn plan(&self, run: &Run<Vec<i64>>) -> Vec<i64> {
        run.input.clone()
    }

    async fn pending(&self, db: &Db, run: &Run<Vec<i64>>) -> Result<Vec<Pending<()>>, sqlx::Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM run_items WHERE run_id = $1 AND outcome = 'pending' ORDER BY id",
        )
        .bind(run.id)
        .fetch_all(db.pool())
        .await?;
        Ok(ids
            .into_iter()
            .map(|item_id| Pending { item_id, item: () })
            .collect())
    }

    async fn process(&self, _: &TenantCredentials, _: &Run<Vec<i64>>, _: &()) {}

    async fn record(
        &self,
        _: &mut Tx,
        _: &Run<Vec<i64>>,
        batch: &[(Pending<()>, ())],
        _: i64,
    ) -> Result<Vec<Recorded>, sqlx::Error> {
        Ok(batch.iter().map(|_| Recorded::succeeded()).collect())
    }
}

async fn interactive_runs_do_not_wait_behind_bulk_runs(t: TestDb) {
    let f = fixture(&t, 200).await;
    let contoso = &f.policies[CONTOSO];
    let tenant_id = common::tenant_id(&f.db, CONTOSO).await;
    // One slot per lane, and a bulk run of the same tenant that takes seconds.
    f.set_latency(300);
    let bulk = f.queue(CONTOSO, OPERATOR, &contoso[..40]).await;
    let wake = WakeUp::default();
    let worker = f
        .worker(Registry::standard(f.source()).with(Probe))
        .with_runs_at_once(1);
    let (stop, runner) = common::start_runner(worker, &wake, &f.db, Duration::from_secs(600));
    common::wait_run(&f.db, bulk, Duration::from_secs(60), |run| {
        run.status == "running"
    })
    .await;

    let probe = f.queue_probe(tenant_id, &contoso[..1]).await;
    wake.run_queued(&f.db).await;
    let (probe, took) = f.wait_ended(probe, Duration::from_secs(120)).await;
    assert_eq!(probe.status, "completed");
    eprintln!("the interactive run ended {took:?} after its submit");
    // It did not wait behind the bulk run: that one is still going (how long the probe took is
    // reported above, not asserted: a timing belongs in a benchmark).
    assert_eq!(
        common::run_row(&f.db, bulk).await.status,
        "running",
        "the bulk run is still going"
    );
    stop.send(true).unwrap();
    runner.await.unwrap();
}

/// A lane whose last claim found nothing is asked again at the next poll even while runs of the
/// other lane end one after another: the poll is a steady beat, not a pause that every run's end
/// starts again. The interactive run is queued without a wake-up (as one whose owner died would
/// be found), so only the poll finds it.
async fn a_lane_is_polled_while_the_other_keeps_the_runner_busy(t: TestDb) {
    let f = fixture(&t, 200).await;
    let tenant_id = common::tenant_id(&f.db, CONTOSO).await;
    let mut bulk = Vec::new();
    for i in 0..30 {
        for tenant in [CONTOSO, FABRIKAM] {
            let user = if tenant == CONTOSO {
                OPERATOR
            } else {
                OUTSIDER
            };
            bulk.push(f.queue(tenant, user, &f.policies[tenant][i..i + 1]).await);
        }
    }
    f.set_latency(40);
    let poll = Duration::from_millis(300);
    let wake = WakeUp::default();
    let worker = f
        .worker(Registry::standard(f.source()).with(Probe))
        .with_runs_at_once(2);
    let (stop, runner) = common::start_runner(worker, &wake, &f.db, poll);
    wake.run_queued(&f.db).await;
    // The runner is busy: bulk runs end every few tens of milliseconds.
    common::wait_run(&f.db, bulk[3], Duration::from_secs(60), |run| {
        !run.is_open()
    })
    .await;
    let probe = f.queue_probe(tenant_id, &f.policies[CONTOSO][..1]).await;
    let (probe, took) = f.wait_ended(probe, Duration::from_secs(60)).await;
    let bulk_active = f.active(&bulk).await;
    eprintln!("the unannounced interactive run ended {took:?} after it was queued, {bulk_active} bulk runs active");
    assert_eq!(probe.status, "completed");
    // Found by the poll, not after the bulk runs drained (how long it took is reported above,
    // not asserted: a timing belongs in a benchmark).
    assert!(bulk_active > 0, "the bulk runs were still going");
    stop.send(true).unwrap();
    runner.await.unwrap();
}

/// [`Probe`] whose items take a while, so two runs of it that were let run side by side would
/// overlap.
struct SlowProbe;

impl Operation for SlowProbe {
    const TYPE: OperationType = OperationType::CheckConnection;
    const NOTICE: Notice = Notice::new("Slow probe", "");
    type Input = Vec<i64>;
    type Item = ();
    type Output = ();

    async fn check(&self, db: &Db, run: &Run<Vec<i64>>) -> Result<Option<RunFailure>, sqlx::Error> {
        Probe.check(db, run).await
    }

    fn plan(&self, run: &Run<Vec<i64>>) -> Vec<i64> {
        Probe.plan(run)
    }

    async fn pending(&self, db: &Db, run: &Run<Vec<i64>>) -> Result<Vec<Pending<()>>, sqlx::Error> {
        Probe.pending(db, run).await
    }

    async fn process(&self, _: &TenantCredentials, _: &Run<Vec<i64>>, _: &()) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn record(
        &self,
        tx: &mut Tx,
        run: &Run<Vec<i64>>,
        batch: &[(Pending<()>, ())],
        now: i64,
    ) -> Result<Vec<Recorded>, sqlx::Error> {
        Probe.record(tx, run, batch, now).await
    }
}

/// The interactive lane keeps a tenant's runs one after another, as the bulk lane does: with
/// slots free, a tenant's second interactive run starts only when its first has ended.
async fn a_tenants_interactive_runs_go_one_at_a_time(t: TestDb) {
    let f = fixture(&t, 200).await;
    let tenant_id = common::tenant_id(&f.db, CONTOSO).await;
    let first = f.queue_probe(tenant_id, &f.policies[CONTOSO][..1]).await;
    let second = f.queue_probe(tenant_id, &f.policies[CONTOSO][1..2]).await;
    let wake = WakeUp::default();
    let worker = f
        .worker(Registry::standard(f.source()).with(SlowProbe))
        .with_runs_at_once(4);
    let (stop, runner) = common::start_runner(worker, &wake, &f.db, Duration::from_millis(300));
    wake.run_queued(&f.db).await;
    let (first, _) = f.wait_ended(first, Duration::from_secs(60)).await;
    let (second, _) = f.wait_ended(second, Duration::from_secs(60)).await;
    assert_eq!(
        (first.status.as_str(), second.status.as_str()),
        ("completed", "completed")
    );
    assert!(
        second.started_at.unwrap() >= first.finished_at.unwrap(),
        "the second run started at {:?}, before the first ended at {:?}",
        second.started_at,
        first.finished_at
    );
    stop.send(true).unwrap();
    runner.await.unwrap();
}
