//! Crash recovery in seconds: `tenantatlas serve` processes (the built binary) are killed with
//! `kill -9` mid-run. Liveness comes from the instance lock (a PostgreSQL advisory lock, an
//! SQLite `flock`), which dies with the process: a restarted instance takes its runs back at
//! once, a surviving instance takes a dead one's run without waiting for the lease, a second live
//! process with the same identity refuses to start, and every policy ends in the set once.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, RunRow, ServeProcess, TestDb, CONTOSO, OPERATOR};
use tenantatlas::domain::{Capability, PolicySelection, TenantExternalId};
use tenantatlas::graph_sim::{GraphSim, SimConfig, SimHandle};
use tenantatlas::server::auth::authorize_user;
use tenantatlas::server::db::Db;
use tenantatlas::server::graph::{ClientSecret, GraphClient, GraphConfig, TenantCredentials};
use tenantatlas::server::runs::create::create_or_reuse;
use tenantatlas::server::seed;

const SECRET: &str = "recovery-secret";
const SECRET_VAR: &str = "TA_RECOVERY_TEST_SECRET";

/// `tenantatlas serve` on the test's database and simulator, as instance `id`.
fn command(db_url: &str, sim: &SimHandle, id: &str) -> Command {
    let mut command = common::serve_command(db_url);
    command
        .args(["--graph-url", &sim.graph_url, "--login-url", &sim.login_url])
        .args(["--instance-id", id])
        // The safety net finds queued runs within a second (SQLite has no NOTIFY).
        .args(["--worker-poll-seconds", "1"])
        .env(SECRET_VAR, SECRET);
    command
}

/// Starts instance `id`; it is killed if the test ends early.
async fn start(db_url: &str, sim: &SimHandle, id: &str) -> ServeProcess {
    let instance = ServeProcess::start(&mut command(db_url, sim, id)).await;
    assert_eq!(instance.instance_id(), id);
    instance
}

struct Fixture {
    t: TestDb,
    sim: SimHandle,
    user_id: i64,
    tenant_id: i64,
    policies: Vec<i64>,
}

async fn fixture(backend: Backend) -> Fixture {
    let t = TestDb::create(backend).await;
    seed::seed_demo(&t.db).await.unwrap();
    let sim = GraphSim::start(SimConfig {
        policies_per_tenant: 400,
        client_secret: SECRET.into(),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sqlx::query(
        "UPDATE tenants SET graph_client_id = 'recovery-test', graph_secret_ref = $1 \
         WHERE external_id = $2",
    )
    .bind(format!("env:{SECRET_VAR}"))
    .bind(CONTOSO)
    .execute(t.db.pool())
    .await
    .unwrap();
    let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url)).unwrap();
    let creds = TenantCredentials {
        tenant_id: TenantExternalId::parse(CONTOSO).unwrap(),
        client_id: "recovery-test".into(),
        client_secret: ClientSecret::new(SECRET),
    };
    let policies = common::insert_sim_compliance(&t.db, &client, &creds, usize::MAX)
        .await
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let user_id = common::user_id(&t.db, OPERATOR).await;
    let tenant_id = common::tenant_id(&t.db, CONTOSO).await;
    Fixture {
        t,
        sim,
        user_id,
        tenant_id,
        policies,
    }
}

impl Fixture {
    fn db(&self) -> &Db {
        &self.t.db
    }

    fn set_latency(&self, ms: u64) {
        let mut knobs = self.sim.knobs();
        knobs.latency_ms = ms;
        self.sim.set_knobs(knobs);
    }

    /// Queues a run of every policy into a new backup set; returns (run, set).
    async fn queue_all(&self) -> (i64, i64) {
        let set: i64 = sqlx::query_scalar(
            "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, 'Recovery', 0) RETURNING id",
        )
        .bind(self.tenant_id)
        .fetch_one(self.db().pool())
        .await
        .unwrap();
        let ctx = authorize_user(self.db(), self.user_id, CONTOSO, Capability::StartRuns)
            .await
            .unwrap();
        let selection = PolicySelection::parse(self.policies.clone()).unwrap();
        let run = create_or_reuse(self.db(), &ctx, set, &selection, Default::default())
            .await
            .unwrap();
        (run.run_id, set)
    }

    /// Waits until `done` holds for the run's row; returns the row and how long that took.
    async fn wait_for(
        &self,
        run: i64,
        limit: Duration,
        done: impl Fn(&RunRow) -> bool,
    ) -> (RunRow, Duration) {
        let started = Instant::now();
        let row = common::wait_run(self.db(), run, limit, done).await;
        (row, started.elapsed())
    }

    /// Every policy of the run ended in the set exactly once.
    async fn assert_each_policy_once(&self, run: i64, set: i64) {
        let n = self.policies.len() as i64;
        let row = common::run_row(self.db(), run).await;
        assert_eq!((row.status.as_str(), row.processed_items), ("completed", n));
        let (items, distinct): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(DISTINCT policy_id) FROM backup_items WHERE backup_set_id = $1",
        )
        .bind(set)
        .fetch_one(self.db().pool())
        .await
        .unwrap();
        assert_eq!((items, distinct), (n, n), "every policy once");
    }
}

/// kill -9 mid-run, then the same instance again: it resumes within 5 s of its start (the
/// lease would hold the run for 60 s).
async fn restart_resumes_within_5_s(backend: Backend) {
    let f = fixture(backend).await;
    f.set_latency(250);
    let (run, set) = f.queue_all().await;
    let first = start(&f.t.url, &f.sim, "recovery-a").await;
    f.wait_for(run, Duration::from_secs(60), |row| row.processed_items >= 8)
        .await;
    first.kill_9();
    let killed = common::run_row(f.db(), run).await;
    assert_eq!(
        (killed.status.as_str(), killed.attempt),
        ("running", 1),
        "killed mid-run"
    );
    let before = killed.processed_items;
    assert!(before < f.policies.len() as i64);

    let restarted = start(&f.t.url, &f.sim, "recovery-a").await;
    let (_, took) = f
        .wait_for(run, Duration::from_secs(30), |row| {
            row.attempt == 2 && row.processed_items > before
        })
        .await;
    eprintln!("{backend:?}: resumed {took:?} after the restart");
    assert!(took <= Duration::from_secs(5), "resumed after {took:?}");
    f.wait_for(run, Duration::from_secs(60), |row| {
        row.status == "completed"
    })
    .await;
    f.assert_each_policy_once(run, set).await;
    assert_eq!(
        common::run_row(f.db(), run).await.attempt,
        2,
        "claimed twice in all"
    );
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restart_resumes_within_5_s() {
    restart_resumes_within_5_s(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_resumes_within_5_s() {
    restart_resumes_within_5_s(Backend::Postgres).await;
}

/// A second live process with an identity that is in use refuses to start, and says why.
async fn a_second_live_process_with_the_same_identity_refuses_to_start(backend: Backend) {
    let f = fixture(backend).await;
    let (run, _) = f.queue_all().await;
    let first = start(&f.t.url, &f.sim, "recovery-twin").await;
    f.wait_for(run, Duration::from_secs(60), |row| row.status != "pending")
        .await;
    let second = command(&f.t.url, &f.sim, "recovery-twin")
        .stderr(Stdio::piped())
        .output()
        .expect("run the second process");
    assert!(
        !second.status.success(),
        "the second process exited with an error"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another live TenantAtlas process runs as instance \"recovery-twin\""),
        "{stderr}"
    );
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_second_live_process_with_the_same_identity_refuses_to_start() {
    a_second_live_process_with_the_same_identity_refuses_to_start(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_second_live_process_with_the_same_identity_refuses_to_start() {
    a_second_live_process_with_the_same_identity_refuses_to_start(Backend::Postgres).await;
}

/// Two instances on PostgreSQL; the one working on the run is killed with kill -9. The survivor
/// sees its lock free and takes the run within 20 s, long before the 60 s lease ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_survivor_takes_a_killed_instances_run_within_20_s() {
    let f = fixture(Backend::Postgres).await;
    f.set_latency(250);
    let (run, set) = f.queue_all().await;
    let a = start(&f.t.url, &f.sim, "recovery-a").await;
    let b = start(&f.t.url, &f.sim, "recovery-b").await;
    let (working, _) = f
        .wait_for(run, Duration::from_secs(60), |row| row.processed_items >= 8)
        .await;
    let (dying, survivor) = if working.lease_owner == a.instance_id() {
        (a, b)
    } else {
        (b, a)
    };
    assert_eq!(working.lease_owner, dying.instance_id());
    dying.kill_9();
    let before = common::run_row(f.db(), run).await.processed_items;
    let (_, took) = f
        .wait_for(run, Duration::from_secs(30), |row| {
            row.attempt == 2
                && row.processed_items > before
                && row.lease_owner == survivor.instance_id()
        })
        .await;
    eprintln!("taken over {took:?} after the kill");
    assert!(took <= Duration::from_secs(20), "taken over after {took:?}");
    f.wait_for(run, Duration::from_secs(60), |row| {
        row.status == "completed"
    })
    .await;
    f.assert_each_policy_once(run, set).await;
    drop(survivor);
}
