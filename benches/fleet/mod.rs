//! What the engine benches share: a fresh database per engine, many tenants with their
//! credentials and a few compliance policies each in the Graph simulator, a worker over them, and
//! the percentile arithmetic of the reports.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::{Capability, Email, PolicySelection, Role, TenantExternalId};
use tenantatlas::graph_sim::{GraphSim, SimConfig, SimHandle};
use tenantatlas::server::auth::{authorize_user, users};
use tenantatlas::server::db::Db;
use tenantatlas::server::engine::operation::Registry;
use tenantatlas::server::engine::runner::{self, WakeUp};
use tenantatlas::server::engine::worker::{CredentialsLoader, RunFailure, Worker};
use tenantatlas::server::graph::{
    ClientSecret, GraphClient, GraphConfig, PolicySource, PolicyType, TenantCredentials,
};
use tenantatlas::server::prepare;
use tenantatlas::server::runs::create::create_or_reuse;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = BoxError> = std::result::Result<T, E>;

const SECRET: &str = "bench-fleet-secret";

/// `--engine`: which database engine(s) to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineChoice {
    Sqlite,
    Postgres,
    Both,
}

/// The options every fleet bench takes: which engines, where PostgreSQL is, and how many runs
/// the worker works at once.
#[derive(Debug, clap::Args)]
pub struct Setup {
    #[arg(long, value_enum, default_value_t = EngineChoice::Both)]
    engine: EngineChoice,
    /// A PostgreSQL server URL (any database on it): the bench creates `ta_bench_<random>` there
    /// and drops it at the end.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_default_value = true
    )]
    pub pg_url: String,
    /// Runs at once per lane (the server's `--worker-concurrency`).
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Setup {
    /// Runs `measure` on a scratch database of each engine asked for, in order, and drops each
    /// database afterwards (also when `measure` fails).
    pub async fn each_engine(
        &self,
        measure: impl AsyncFn(&'static str, &Scratch) -> Result<()>,
    ) -> Result<()> {
        for engine in self.names() {
            let scratch = Scratch::create(engine, &self.pg_url).await?;
            let result = measure(engine, &scratch).await;
            scratch.remove().await;
            result?;
        }
        Ok(())
    }

    /// The engines to measure, in order.
    pub fn names(&self) -> &'static [&'static str] {
        match self.engine {
            EngineChoice::Sqlite => &["sqlite"],
            EngineChoice::Postgres => &["postgres"],
            EngineChoice::Both => &["sqlite", "postgres"],
        }
    }
}

/// A database created for one measurement; [`Scratch::remove`] drops it.
pub struct Scratch {
    pub db: Db,
    cleanup: Pin<Box<dyn Future<Output = ()>>>,
}

impl Scratch {
    /// A fresh, migrated database on `engine` (`sqlite`: a temporary file; `postgres`: a
    /// `ta_bench_<random>` database on the server of `pg_url`).
    pub async fn create(engine: &str, pg_url: &str) -> Result<Self> {
        let suffix = format!("{:016x}", rand::random::<u64>());
        let (url, cleanup): (String, Pin<Box<dyn Future<Output = ()>>>) = if engine == "sqlite" {
            let dir = std::env::temp_dir().join(format!("tenantatlas-bench-{suffix}"));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}/bench.db", dir.display());
            (
                url,
                Box::pin(async move {
                    let _ = std::fs::remove_dir_all(dir);
                }),
            )
        } else {
            let name = format!("ta_bench_{suffix}");
            let admin = Db::connect(pg_url).await?;
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(admin.pool())
                .await?;
            admin.close().await;
            let Some((server, _)) = pg_url.split('?').next().and_then(|u| u.rsplit_once('/'))
            else {
                return Err("--pg-url has no database part".into());
            };
            let admin_url = pg_url.to_owned();
            let drop_name = name.clone();
            (
                format!("{server}/{name}"),
                Box::pin(async move {
                    if let Ok(admin) = Db::connect(&admin_url).await {
                        let drop = format!("DROP DATABASE IF EXISTS {drop_name} WITH (FORCE)");
                        let _ = sqlx::query(&drop).execute(admin.pool()).await;
                        admin.close().await;
                    }
                }),
            )
        };
        let db = Db::connect(&url).await?;
        prepare(&db).await?;
        Ok(Self { db, cleanup })
    }

    /// Closes the pool and removes the database.
    pub async fn remove(self) {
        self.db.close().await;
        self.cleanup.await;
    }
}

/// One tenant of the fleet: its external id, row id and the ids of its inventory policies.
pub struct FleetTenant {
    pub external: String,
    pub tenant_id: i64,
    pub policy_ids: Vec<i64>,
}

/// Tenants with credentials and policies in a simulator, one operator in all of them.
pub struct Fleet {
    pub db: Db,
    /// Held so the simulator serves as long as the fleet lives.
    _sim: SimHandle,
    pub user_id: i64,
    pub tenants: Vec<FleetTenant>,
    client: GraphClient,
    creds: Arc<HashMap<i64, TenantCredentials>>,
}

impl Fleet {
    /// `tenants` tenants, each with `policies` compliance policies synced into the inventory;
    /// the simulator answers after `latency_ms`.
    pub async fn build(db: &Db, tenants: usize, policies: usize, latency_ms: u64) -> Result<Self> {
        let sim = GraphSim::start(SimConfig {
            // Spread over four types: `policies` compliance policies per tenant.
            policies_per_tenant: policies * 4,
            client_secret: SECRET.into(),
            ..SimConfig::default()
        })
        .await?;
        let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url))?;
        let email = Email::parse("bench@fleet.example")?;
        let user_id = users::upsert_user(db, &email, "Bench", "not-a-hash").await?;
        let mut creds = HashMap::new();
        let mut fleet = Vec::new();
        for n in 0..tenants {
            let external = format!("{n:08x}-0000-4000-8000-0000000fa1e5");
            let tenant_id: i64 = sqlx::query_scalar(
                "INSERT INTO tenants (external_id, display_name, created_at) \
                 VALUES ($1, $2, 0) RETURNING id",
            )
            .bind(&external)
            .bind(format!("Tenant {n}"))
            .fetch_one(db.pool())
            .await?;
            users::grant(db, user_id, &external, Role::Operator).await?;
            let tenant_creds = TenantCredentials {
                tenant_id: TenantExternalId::parse(&external)?,
                client_id: "bench-fleet".into(),
                client_secret: ClientSecret::new(SECRET),
            };
            let mut policy_ids = Vec::new();
            for listing in client
                .list_policies(&tenant_creds, PolicyType::Compliance)
                .await?
            {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO policies \
                         (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
                     VALUES ($1, $2, 'compliance', $3, $4, 0) RETURNING id",
                )
                .bind(tenant_id)
                .bind(&listing.graph_id)
                .bind(&listing.display_name)
                .bind(&listing.platform)
                .fetch_one(db.pool())
                .await?;
                policy_ids.push(id);
            }
            creds.insert(tenant_id, tenant_creds);
            fleet.push(FleetTenant {
                external,
                tenant_id,
                policy_ids,
            });
        }
        let mut knobs = sim.knobs();
        knobs.latency_ms = latency_ms;
        sim.set_knobs(knobs);
        Ok(Self {
            db: db.clone(),
            _sim: sim,
            user_id,
            tenants: fleet,
            client,
            creds: Arc::new(creds),
        })
    }

    /// A worker (instance `name`) working `runs_at_once` runs per lane of this fleet.
    pub fn worker(&self, name: &str, runs_at_once: usize) -> Worker {
        let creds = Arc::clone(&self.creds);
        let loader: CredentialsLoader = Arc::new(move |tenant| {
            let found = creds.get(&tenant).cloned().ok_or_else(|| RunFailure {
                reason: ReasonCode::AuthenticationFailed,
                message: "unknown tenant".into(),
            });
            Box::pin(async move { found })
        });
        let source: Arc<dyn PolicySource> = Arc::new(self.client.clone());
        Worker::new(self.db.clone(), Registry::standard(source), loader, name)
            .with_runs_at_once(runs_at_once)
    }

    /// Submits an add-policies run of `policy_ids` of `tenant` into a new backup set, as the
    /// server's submit does (without waking anyone); returns the run id.
    pub async fn submit(&self, tenant: &FleetTenant, policy_ids: &[i64]) -> Result<i64> {
        let set = self.backup_set(tenant).await?;
        self.submit_to(tenant, set, policy_ids).await
    }

    /// A new backup set of `tenant`.
    pub async fn backup_set(&self, tenant: &FleetTenant) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, 0) RETURNING id",
        )
        .bind(tenant.tenant_id)
        .bind(format!("Set {}", rand::random::<u64>()))
        .fetch_one(self.db.pool())
        .await?)
    }

    /// Submits an add-policies run of `policy_ids` into backup set `set` of `tenant` as the
    /// server's submit does, authorization included (without waking anyone); returns the run id.
    pub async fn submit_to(
        &self,
        tenant: &FleetTenant,
        set: i64,
        policy_ids: &[i64],
    ) -> Result<i64> {
        let ctx = authorize_user(
            &self.db,
            self.user_id,
            &tenant.external,
            Capability::StartRuns,
        )
        .await?;
        let selection = PolicySelection::parse(policy_ids.to_vec())?;
        let submitted =
            create_or_reuse(&self.db, &ctx, set, &selection, Default::default()).await?;
        Ok(submitted.run_id)
    }

    /// Waits until no run is queued or running.
    pub async fn drained(&self) -> Result<()> {
        loop {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')",
            )
            .fetch_one(self.db.pool())
            .await?;
            if open == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A runner working `worker`'s runs until the returned sender says stop; `wake` is how submits
/// wake it, as the server's do.
pub fn spawn_runner(
    worker: Worker,
    wake: &WakeUp,
    db: &Db,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(runner::run(
        worker,
        wake.clone(),
        db.clone(),
        Duration::from_secs(1),
        stopped,
    ));
    (stop, runner)
}

/// The value at quantile `p` of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// "p50 / p99" of `values`, with `decimals` digits.
pub fn p50_p99(mut values: Vec<f64>, decimals: usize) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "{:.*} / {:.*}",
        decimals,
        percentile(&values, 0.5),
        decimals,
        percentile(&values, 0.99)
    )
}
