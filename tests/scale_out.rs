//! Scale-out on PostgreSQL: several `tenantatlas serve` processes on one database share the run
//! queue. Every run is processed by exactly one process, a process started later takes work (of
//! a tenant the first is not working for) at once, a NOTIFY (not the safety-net poll) wakes idle instances, and SIGTERM hands a run over
//! at once. The instances are real processes of the built binary; Graph is the simulator over
//! HTTP. SQLite is one process by design, so this test is PostgreSQL's alone.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Backend, ServeProcess, TestDb, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER};
use tenantatlas::domain::{Capability, PolicySelection, TenantExternalId};
use tenantatlas::graph_sim::{GraphSim, SimConfig, SimHandle};
use tenantatlas::server::auth::authorize_user;
use tenantatlas::server::db::Db;
use tenantatlas::server::graph::{ClientSecret, GraphClient, GraphConfig, TenantCredentials};
use tenantatlas::server::runs::create::create_or_reuse;
use tenantatlas::server::seed;

const SECRET: &str = "scale-out-secret";
const SECRET_VAR: &str = "TA_SCALE_OUT_TEST_SECRET";
/// Far longer than any wait below: work that starts in time was woken, not polled for.
const POLL_SECONDS: &str = "600";

/// One `tenantatlas serve` process named `id`; killed if the test ends early.
struct Instance(ServeProcess);

impl Instance {
    async fn start(db_url: &str, sim: &SimHandle, id: &str) -> Self {
        let process = ServeProcess::start(
            common::serve_command(db_url)
                .args(["--graph-url", &sim.graph_url, "--login-url", &sim.login_url])
                .args(["--instance-id", id])
                .args(["--worker-poll-seconds", POLL_SECONDS])
                // One run at a time, so that a second instance finds work left to take.
                .args(["--worker-concurrency", "1"])
                .env(SECRET_VAR, SECRET),
        )
        .await;
        assert_eq!(process.instance_id(), id);
        Self(process)
    }

    /// This process's instance id, which an ended run keeps in `lease_owner`.
    fn instance_id(&self) -> &str {
        self.0.instance_id()
    }

    /// SIGTERM, as a service manager stops it; waits for a clean exit.
    async fn terminate(mut self) {
        self.0.sigterm();
        // A bound for a stuck process, not a speed requirement.
        let exit = self
            .0
            .wait_exit(Duration::from_secs(60))
            .await
            .expect("the instance stops after SIGTERM");
        assert!(exit.success(), "a SIGTERM stop exits cleanly: {exit}");
    }
}

/// A demo tenant whose Graph credentials the instances resolve, with its compliance policies.
struct Tenant {
    external_id: &'static str,
    id: i64,
    /// An operator of the tenant.
    user_id: i64,
    policies: Vec<i64>,
}

struct Fixture {
    db: Db,
    sim: SimHandle,
    /// Contoso: most of the work.
    main: Tenant,
    /// Fabrikam: work that a second instance can take while the first works for Contoso (one
    /// bulk run per tenant is active at a time).
    other: Tenant,
}

async fn fixture(t: &TestDb) -> Fixture {
    seed::seed_demo(&t.db).await.unwrap();
    let sim = GraphSim::start(SimConfig {
        policies_per_tenant: 400,
        client_secret: SECRET.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url)).unwrap();
    let mut tenants = Vec::new();
    for (external_id, operator) in [(CONTOSO, OPERATOR), (FABRIKAM, OUTSIDER)] {
        // The instances resolve the secret from their environment, as in production.
        sqlx::query(
            "UPDATE tenants SET graph_client_id = 'scale-out-test', graph_secret_ref = $1 \
             WHERE external_id = $2",
        )
        .bind(format!("env:{SECRET_VAR}"))
        .bind(external_id)
        .execute(t.db.pool())
        .await
        .unwrap();
        let creds = TenantCredentials {
            tenant_id: TenantExternalId::parse(external_id).unwrap(),
            client_id: "scale-out-test".into(),
            client_secret: ClientSecret::new(SECRET),
        };
        let policies: Vec<i64> = common::insert_sim_compliance(&t.db, &client, &creds, usize::MAX)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert!(policies.len() >= 50, "enough compliance policies to share");
        tenants.push(Tenant {
            external_id,
            id: common::tenant_id(&t.db, external_id).await,
            user_id: common::user_id(&t.db, operator).await,
            policies,
        });
    }
    let other = tenants.pop().unwrap();
    let main = tenants.pop().unwrap();
    Fixture {
        db: t.db.clone(),
        sim,
        main,
        other,
    }
}

impl Fixture {
    async fn backup_set(&self, tenant: &Tenant, name: &str) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, 0) RETURNING id",
        )
        .bind(tenant.id)
        .bind(name)
        .fetch_one(self.db.pool())
        .await
        .unwrap()
    }

    /// Queues a run through the server function's service (the run with its selection),
    /// without waking anyone.
    async fn queue(&self, tenant: &Tenant, set_id: i64, policy_ids: &[i64]) -> i64 {
        let ctx = authorize_user(
            &self.db,
            tenant.user_id,
            tenant.external_id,
            Capability::StartRuns,
        )
        .await
        .unwrap();
        let selection = PolicySelection::parse(policy_ids.to_vec()).unwrap();
        let run = create_or_reuse(&self.db, &ctx, set_id, &selection, Default::default())
            .await
            .unwrap();
        assert!(!run.reused);
        run.run_id
    }

    /// What a submit on another instance sends: the instances' shared wake-up channel.
    async fn notify(&self) {
        sqlx::query("SELECT pg_notify('tenantatlas_runs', '')")
            .execute(self.db.pool())
            .await
            .unwrap();
    }

    /// Waits until `runs` have all ended; panics after `limit` (a bound for a stuck test).
    async fn wait_ended(&self, runs: &[i64], limit: Duration) {
        for &run in runs {
            common::wait_run(&self.db, run, limit, |row| !row.is_open()).await;
        }
    }

    async fn items_in_set(&self, set_id: i64) -> (i64, i64) {
        sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT policy_id) FROM backup_items WHERE backup_set_id = $1",
        )
        .bind(set_id)
        .fetch_one(self.db.pool())
        .await
        .unwrap()
    }
}

#[tokio::test]
async fn instances_share_the_queue_wake_each_other_and_hand_over_on_sigterm() {
    let t = TestDb::create(Backend::Postgres).await;
    let f = fixture(&t).await;
    let mut knobs = f.sim.knobs();
    knobs.latency_ms = 120;
    f.sim.set_knobs(knobs.clone());

    // 1. Ten queued runs of two tenants; instance B starts while A is working and takes its
    //    share at once.
    let a = Instance::start(&t.url, &f.sim, "scale-out-a").await;
    let shared_set = f.backup_set(&f.main, "Shared by two instances").await;
    let other_set = f.backup_set(&f.other, "Taken by the second instance").await;
    // Counted from before the first run is queued: A's first look at the queue, just after it
    // started, may already take one.
    f.sim.reset_counters();
    let mut runs = Vec::new();
    for (n, chunk) in f.main.policies[..20].chunks(4).enumerate() {
        runs.push(f.queue(&f.main, shared_set, chunk).await);
        let other_chunk = &f.other.policies[n * 4..n * 4 + 4];
        runs.push(f.queue(&f.other, other_set, other_chunk).await);
    }
    f.notify().await;
    let b = Instance::start(&t.url, &f.sim, "scale-out-b").await;
    f.wait_ended(&runs, Duration::from_secs(60)).await;
    let (mut by_a, mut by_b) = (BTreeSet::new(), BTreeSet::new());
    for &run in &runs {
        let row = common::run_row(&f.db, run).await;
        assert_eq!(
            (row.status.as_str(), row.attempt, row.succeeded),
            ("completed", 1, 4),
            "run {run} was claimed once and completed"
        );
        let owner = row.lease_owner;
        if owner == a.instance_id() {
            by_a.insert(run);
        } else if owner == b.instance_id() {
            by_b.insert(run);
        } else {
            panic!("run {run} was finished by an unknown worker {owner:?}");
        }
    }
    assert!(!by_a.is_empty(), "A, woken by NOTIFY, processed runs");
    assert!(!by_b.is_empty(), "B, started later, picked up work at once");
    assert_eq!(f.items_in_set(shared_set).await, (20, 20));
    assert_eq!(f.items_in_set(other_set).await, (20, 20));
    assert_eq!(
        f.sim.counters().for_path("deviceCompliancePolicies/").len(),
        40,
        "each policy captured once, by one instance"
    );

    // 2. Both idle, polling only every 10 minutes: a NOTIFY alone gets the run done.
    let woken_set = f.backup_set(&f.main, "Woken by NOTIFY").await;
    let run = f.queue(&f.main, woken_set, &f.main.policies[40..44]).await;
    f.notify().await;
    f.wait_ended(&[run], Duration::from_secs(30)).await;
    assert_eq!(common::run_row(&f.db, run).await.status, "completed");

    // 3. SIGTERM mid-run: the stopping instance releases its lease and wakes the other, which
    //    resumes at once (the lease would last 60 s, the poll 10 min).
    knobs.latency_ms = 400;
    f.sim.set_knobs(knobs);
    let handover_set = f.backup_set(&f.main, "Handed over").await;
    let rest = &f.main.policies[44..];
    let run = f.queue(&f.main, handover_set, rest).await;
    f.notify().await;
    let owner = common::wait_run(&f.db, run, Duration::from_secs(60), |row| {
        row.status == "running" && row.succeeded > 0
    })
    .await
    .lease_owner;
    let (stopping, staying) = if owner == a.instance_id() {
        (a, b)
    } else {
        (b, a)
    };
    stopping.terminate().await;
    f.wait_ended(&[run], Duration::from_secs(30)).await;
    let row = common::run_row(&f.db, run).await;
    assert_eq!(row.status, "completed");
    assert_eq!(row.attempt, 2, "claimed again after the handover");
    assert_eq!(
        row.succeeded,
        rest.len() as i64,
        "every item once over both attempts"
    );
    assert_eq!(row.lease_owner, staying.instance_id());
    let n = rest.len() as i64;
    assert_eq!(f.items_in_set(handover_set).await, (n, n));
    staying.terminate().await;
}
