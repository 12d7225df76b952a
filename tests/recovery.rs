//! Crash recovery in seconds: `tenantatlas serve` processes (the built binary) are killed with
//! `kill -9` mid-run. Liveness comes from the instance lock (a PostgreSQL advisory lock, an
//! SQLite `flock`), which dies with the process: a restarted instance takes its runs back at
//! once, a surviving instance takes a dead one's run without waiting for the lease, a second live
//! process with the same identity refuses to start, and every policy ends in the set once.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestDb, CONTOSO, OPERATOR};
use tenantatlas::domain::{Capability, PolicySelection, TenantExternalId};
use tenantatlas::graph_sim::{GraphSim, SimConfig, SimHandle};
use tenantatlas::server::auth::authorize_user;
use tenantatlas::server::db::Db;
use tenantatlas::server::graph::{ClientSecret, GraphClient, GraphConfig, TenantCredentials};
use tenantatlas::server::runs::create::create_or_reuse;
use tenantatlas::server::seed;

const SECRET: &str = "recovery-secret";
const SECRET_VAR: &str = "TA_RECOVERY_TEST_SECRET";

/// One `tenantatlas serve` process; killed if the test ends early.
struct Instance {
    child: Child,
    id: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn command(db_url: &str, sim: &SimHandle, id: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantatlas"));
    command
        .args(["--database-url", db_url])
        .args(["--log", "tenantatlas=info,sqlx=warn"])
        .args(["--graph-url", &sim.graph_url, "--login-url", &sim.login_url])
        .args(["serve", "--addr", &format!("127.0.0.1:{}", free_port())])
        .args(["--instance-id", id])
        // The safety net finds queued runs within a second (SQLite has no NOTIFY).
        .args(["--worker-poll-seconds", "1"])
        .env(SECRET_VAR, SECRET);
    command
}

impl Instance {
    fn start(db_url: &str, sim: &SimHandle, id: &str) -> Self {
        let child = command(db_url, sim, id)
            .spawn()
            .expect("start tenantatlas serve");
        Self {
            child,
            id: id.to_owned(),
        }
    }

    /// `kill -9`: no cleanup of any kind.
    fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

    /// (status, attempt, processed, owner) of a run.
    async fn run_row(&self, run: i64) -> (String, i64, i64, String) {
        sqlx::query_as(
            "SELECT status, attempt, processed_items, COALESCE(lease_owner, '') FROM runs WHERE id = $1",
        )
        .bind(run)
        .fetch_one(self.db().pool())
        .await
        .unwrap()
    }

    /// Waits until `done` holds for the run's row; returns how long that took.
    async fn wait_for(
        &self,
        run: i64,
        limit: Duration,
        what: &str,
        done: impl Fn(&(String, i64, i64, String)) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let row = self.run_row(run).await;
            if done(&row) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "{what} did not happen within {limit:?}: {row:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every policy of the run ended in the set exactly once.
    async fn assert_each_policy_once(&self, run: i64, set: i64) {
        let n = self.policies.len() as i64;
        let (status, _, processed, _) = self.run_row(run).await;
        assert_eq!((status.as_str(), processed), ("completed", n));
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
    let first = Instance::start(&f.t.url, &f.sim, "recovery-a");
    f.wait_for(
        run,
        Duration::from_secs(60),
        "progress",
        |(_, _, done, _)| *done >= 8,
    )
    .await;
    first.kill_9();
    let (status, attempt, before, _) = f.run_row(run).await;
    assert_eq!((status.as_str(), attempt), ("running", 1), "killed mid-run");
    assert!(before < f.policies.len() as i64);

    let restarted = Instance::start(&f.t.url, &f.sim, "recovery-a");
    let took = f
        .wait_for(
            run,
            Duration::from_secs(30),
            "the resume",
            |(_, attempt, done, _)| *attempt == 2 && *done > before,
        )
        .await;
    eprintln!("{backend:?}: resumed {took:?} after the restart");
    assert!(took <= Duration::from_secs(5), "resumed after {took:?}");
    f.wait_for(run, Duration::from_secs(60), "the end", |(status, ..)| {
        status == "completed"
    })
    .await;
    f.assert_each_policy_once(run, set).await;
    assert_eq!(f.run_row(run).await.1, 2, "claimed twice in all");
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
    let first = Instance::start(&f.t.url, &f.sim, "recovery-twin");
    f.wait_for(run, Duration::from_secs(60), "the start", |(status, ..)| {
        status != "pending"
    })
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
    let a = Instance::start(&f.t.url, &f.sim, "recovery-a");
    let b = Instance::start(&f.t.url, &f.sim, "recovery-b");
    f.wait_for(
        run,
        Duration::from_secs(60),
        "progress",
        |(_, _, done, _)| *done >= 8,
    )
    .await;
    let (_, _, before, owner) = f.run_row(run).await;
    let (dying, survivor) = if owner == a.id { (a, b) } else { (b, a) };
    assert_eq!(owner, dying.id);
    dying.kill_9();
    let took = f
        .wait_for(
            run,
            Duration::from_secs(30),
            "the takeover",
            |(_, attempt, done, owner)| *attempt == 2 && *done > before && *owner == survivor.id,
        )
        .await;
    eprintln!("taken over {took:?} after the kill");
    assert!(took <= Duration::from_secs(20), "taken over after {took:?}");
    f.wait_for(run, Duration::from_secs(60), "the end", |(status, ..)| {
        status == "completed"
    })
    .await;
    f.assert_each_policy_once(run, set).await;
    drop(survivor);
}
