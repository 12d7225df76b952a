//! The fence of a restore's announce on PostgreSQL: a claim whose announce of a create is still
//! open (its instance stalled before the commit) keeps the run from being taken over until it
//! commits, so the claim taking over reads that announce and never sends the same create again.
//! SQLite has one writer at a time: an open announce holds the write lock every claim needs.

use crate::common;

use crate::sim_support::{BeforeWrite, HookedWriter};
use common::{DemoApp, CONTOSO};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::restore::{PlanAction, RestoreSource};
use tenantatlas::server::engine::operation::Registry;
use tenantatlas::server::engine::worker::{CredentialsLoader, Outcome, RunFailure, Worker};
use tenantatlas::server::graph::write::{PolicyWriter, WriteRequest};
use tenantatlas::server::graph::{
    CaptureOptions, GraphClient, GraphFuture, PolicyListing, PolicySource, PolicyType, Snapshot,
    TenantCredentials, TokenFuture,
};
use tenantatlas::server::{runs_worker, seed};
use tokio::sync::Semaphore;

const MANAGER: &str = "manager@contoso.example";
const TENANT_NAME: &str = seed::DEMO_TENANTS[0].1;
/// How long the test waits for a step of another task (a bound for a stuck test).
const PATIENCE: Duration = Duration::from_secs(30);

/// A point the stalled claim stops at, the first time it gets there, until the test lets it go
/// on.
struct Stop {
    armed: AtomicBool,
    reached: Semaphore,
    go: Semaphore,
}

impl Stop {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            armed: AtomicBool::new(true),
            reached: Semaphore::new(0),
            go: Semaphore::new(0),
        })
    }

    /// Called by the claim: stops here the first time.
    async fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.reached.add_permits(1);
            self.go
                .acquire()
                .await
                .expect("the stop stays open")
                .forget();
        }
    }

    /// Waits until the claim has stopped here.
    async fn reached(&self, what: &str) {
        tokio::time::timeout(PATIENCE, self.reached.acquire())
            .await
            .unwrap_or_else(|_| panic!("the stalled claim never reached {what}"))
            .expect("the stop stays open")
            .forget();
    }

    /// Lets the claim go on.
    fn release(&self) {
        self.go.add_permits(1);
    }
}

/// The Graph client's reads, stopping at `stop` before the first policy is read.
struct StallingSource {
    client: GraphClient,
    stop: Arc<Stop>,
}

impl PolicySource for StallingSource {
    fn list_policies<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
    ) -> GraphFuture<'a, Vec<PolicyListing>> {
        PolicySource::list_policies(&self.client, creds, policy_type)
    }

    fn capture_policy<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
        graph_id: &'a str,
        options: CaptureOptions,
    ) -> GraphFuture<'a, Snapshot> {
        Box::pin(async move {
            self.stop.pass().await;
            PolicySource::capture_policy(&self.client, creds, policy_type, graph_id, options).await
        })
    }

    fn granted_roles<'a>(&'a self, creds: &'a TenantCredentials) -> TokenFuture<'a> {
        PolicySource::granted_roles(&self.client, creds)
    }

    fn first_page<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
    ) -> GraphFuture<'a, usize> {
        PolicySource::first_page(&self.client, creds, policy_type)
    }
}

/// A write held at the stop before it is sent (the Graph client's writes through
/// [`HookedWriter`]).
impl BeforeWrite for Stop {
    fn before_write<'s>(
        &'s self,
        _client: &'s dyn PolicyWriter,
        _creds: &'s TenantCredentials,
        _request: &'s WriteRequest<'_>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 's>> {
        Box::pin(self.pass())
    }
}

/// The demo app as a manager of Contoso, with an execute queued that creates a deleted device
/// configuration again.
struct Restore {
    demo_app: DemoApp,
    run_id: i64,
    /// The deleted policy's name: the create's.
    name: String,
}

impl Restore {
    /// Syncs, backs up one device configuration, deletes it in Intune, previews its restore (a
    /// create) and queues the execute.
    async fn queued(backend: common::Backend) -> Self {
        let demo_app = DemoApp::start(backend).await;
        let manager = demo_app.app.sign_in(MANAGER).await;
        demo_app
            .run_as(&manager, "runs/sync-inventory", &[("tenant", CONTOSO)])
            .await;
        let policy = demo_app
            .demo
            .sim
            .policies(CONTOSO)
            .into_iter()
            .find(|p| p.kind.collection() == "deviceConfigurations")
            .expect("the demo tenant has a device configuration");
        let id = demo_app.policy_id(&policy.id).await;
        let options = &[
            ("include_assignments", "true"),
            ("include_scope_tags", "true"),
        ];
        let set = common::backup_set(&demo_app.app, &manager, CONTOSO, "Restore me").await;
        let added = demo_app
            .app
            .add_policies(&manager, CONTOSO, set, &[id], options)
            .await
            .expect("the backup starts");
        demo_app.finish(added.run_id).await;
        assert!(demo_app.demo.sim.remove_policy(CONTOSO, &policy.id));
        let preview = demo_app
            .app
            .start_restore_preview(
                &manager,
                CONTOSO,
                RestoreSource::BackupSet(set),
                &[id],
                options,
            )
            .await
            .expect("the preview starts")
            .run_id;
        demo_app.finish(preview).await;
        let plan = demo_app
            .app
            .restore_preview(&manager, CONTOSO, preview)
            .await
            .expect("the manager reads the plan");
        assert_eq!(plan.items[0].plan, Some(PlanAction::Create), "{plan:?}");
        let run_id = demo_app
            .app
            .execute_restore(&manager, CONTOSO, preview, true, TENANT_NAME)
            .await
            .expect("the restore starts")
            .run_id;
        Self {
            demo_app,
            run_id,
            name: policy.name,
        }
    }

    /// A worker of another instance whose reads and writes stop at `read` and `write`.
    fn stalling_worker(&self, read: Arc<Stop>, write: Arc<Stop>) -> Worker {
        let client = self.demo_app.demo.access.client.clone();
        let source = Arc::new(StallingSource {
            client: client.clone(),
            stop: read,
        });
        let writer = Arc::new(HookedWriter {
            client,
            hook: write,
        });
        let (db, access) = (
            self.demo_app.app.db.clone(),
            self.demo_app.demo.access.clone(),
        );
        let loader: CredentialsLoader = Arc::new(move |tenant_id| {
            let (db, access) = (db.clone(), access.clone());
            Box::pin(async move {
                access
                    .credentials(&db, tenant_id)
                    .await
                    .map_err(|error| RunFailure {
                        reason: ReasonCode::AuthenticationFailed,
                        message: error.to_string(),
                    })
            })
        });
        Worker::new(
            self.demo_app.app.db.clone(),
            Registry::full(source, writer),
            loader,
            "stalled-instance",
        )
        // No heartbeat renews the lease the test lets expire while the test runs.
        .with_lease(Duration::from_secs(600))
    }

    /// How many backends of the test's database wait for a lock in a statement like `like`.
    async fn waiting(&self, like: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
               AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(like)
        .fetch_one(self.demo_app.app.db.pool())
        .await
        .expect("pg_stat_activity reads")
    }

    /// The creates of a device configuration the simulator received since its counters were
    /// reset.
    fn creates(&self) -> usize {
        self.demo_app
            .demo
            .sim
            .counters()
            .requests
            .iter()
            .filter(|r| r.is_graph() && r.is_write() && r.method == "POST")
            .filter(|r| r.path.ends_with("/deviceConfigurations"))
            .count()
    }
}

/// Instance X's announce of a create is open (X stalled before its commit; here, its `UPDATE`
/// waits for a row lock the test holds, having read the run before the takeover) when X's
/// lease runs out. Instance Y's claim does not take the run over meanwhile; once the announce
/// is committed Y takes it over, reads the announce, and sends no create while X's may still
/// land. X sends its create: the simulator receives exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_takeover_waits_for_an_open_announce_and_never_creates_twice() {
    let f = Restore::queued(common::Backend::Postgres).await;
    let db = f.demo_app.app.db.clone();
    let run_id = f.run_id;
    f.demo_app.demo.sim.reset_counters();

    let (read, write) = (Stop::new(), Stop::new());
    let x = f.stalling_worker(read.clone(), write.clone());
    let x_task = tokio::spawn(async move { x.try_execute_task().await });
    read.reached("its read of the live policy").await;

    // X's lease is over, and its announce will wait in its UPDATE of the item, as an announce
    // that stalled before its commit holds its locks.
    let mut announce_held = db.pool().begin().await.expect("a transaction");
    let items: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM run_items WHERE run_id = $1 FOR UPDATE")
            .bind(run_id)
            .fetch_all(&mut *announce_held)
            .await
            .expect("the item locks");
    assert_eq!(items.len(), 1, "X wrote the run's item");
    // Before X announces: the announce's lock on the run would hold this write back.
    sqlx::query("UPDATE runs SET lease_expires_at = 0 WHERE id = $1")
        .bind(run_id)
        .execute(db.pool())
        .await
        .expect("X's lease expires");
    read.release();
    let started = Instant::now();
    while f.waiting("UPDATE run_items SET create_sent_at%").await == 0 {
        assert!(started.elapsed() < PATIENCE, "X never announced its create");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Y tries to take the run over while X's announce is open.
    let y = runs_worker(&db, f.demo_app.demo.access.clone());
    let y_task = tokio::spawn(async move { y.try_execute_task().await });
    let started = Instant::now();
    while !y_task.is_finished() && f.waiting("SELECT id FROM policies%FOR UPDATE").await == 0 {
        assert!(started.elapsed() < PATIENCE, "Y neither ended nor waited");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let attempt_while_open = common::run_row(&db, run_id).await.attempt;

    // X's announce commits and X stops before its POST; Y works on the run to its end.
    announce_held.commit().await.expect("the lock is let go");
    write.reached("its create").await;
    let y_outcome = y_task.await.expect("Y joins").expect("Y runs");
    if common::run_row(&db, run_id).await.is_open() {
        assert!(matches!(y_outcome, Outcome::EmptyQueue), "{y_outcome:?}");
        f.demo_app.finish(run_id).await;
    }
    // X sends its create, and finds the run taken over.
    write.release();
    tokio::time::timeout(PATIENCE, x_task)
        .await
        .expect("X ends")
        .expect("X joins")
        .expect("X runs");

    assert_eq!(f.creates(), 1, "one create sent for the policy");
    let named = f
        .demo_app
        .demo
        .sim
        .policies(CONTOSO)
        .into_iter()
        .filter(|p| p.name == f.name)
        .count();
    assert_eq!(named, 1, "one policy named {}", f.name);
    assert_eq!(
        attempt_while_open, 1,
        "the run was not taken over while X's announce was open"
    );
    let row = common::run_row(&db, run_id).await;
    assert_eq!(row.attempt, 2, "Y took the run over once it could: {row:?}");
}
