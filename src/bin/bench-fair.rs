//! Fair share between tenants: many tenants each queue several runs at once, in
//! tenant order (the order that is worst for first-in, first-out) while one process works them
//! with `--worker-concurrency` runs at once against the Graph simulator. Prints, per engine, the
//! p50 and p99 of "submit → finished" over all runs, and over tenants of the time until the
//! tenant's first and last run finished, as Markdown.
//! `cargo build --bin bench-fair && target/debug/bench-fair [--engine sqlite|postgres|both]`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use sqlx::Row;
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::{Capability, Email, PolicySelection, Role, TenantExternalId};
use tenantatlas::graph_sim::{GraphSim, SimConfig};
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

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

/// `--engine`: which database engine(s) to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum EngineChoice {
    Sqlite,
    Postgres,
    Both,
}

/// Benchmark options; the defaults are the scenario.
#[derive(Debug, Parser)]
#[command(name = "bench-fair")]
struct Args {
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
    pg_url: String,
    #[arg(long, default_value_t = 200)]
    tenants: usize,
    /// Runs each tenant queues.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Policies per run.
    #[arg(long, default_value_t = 10)]
    policies: usize,
    /// The simulator's latency per Graph request.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Runs at once per lane (the server's `--worker-concurrency`).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

const SECRET: &str = "bench-fair-secret";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let engines: &[&str] = match args.engine {
        EngineChoice::Sqlite => &["sqlite"],
        EngineChoice::Postgres => &["postgres"],
        EngineChoice::Both => &["sqlite", "postgres"],
    };
    println!(
        "{} tenants × {} runs of {} policies, queued in tenant order; simulator latency {} ms; \
         {} runs at once\n",
        args.tenants, args.runs, args.policies, args.latency_ms, args.concurrency
    );
    println!("| engine | runs | wall time | run p50 / p99 (s) | tenant's first run p50 / p99 (s) | tenant's last run p50 / p99 (s) |");
    println!("|---|--:|--:|--:|--:|--:|");
    for engine in engines {
        let (url, cleanup) = create_db(engine, &args.pg_url).await?;
        let db = Db::connect(&url).await?;
        prepare(&db).await?;
        let result = measure(engine, &db, &args).await;
        db.close().await;
        cleanup.await;
        result?;
    }
    Ok(())
}

/// A fresh database; the future removes it.
async fn create_db(
    engine: &str,
    pg_url: &str,
) -> Result<(
    String,
    std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
)> {
    let suffix = format!("{:016x}", rand::random::<u64>());
    if engine == "sqlite" {
        let dir = std::env::temp_dir().join(format!("tenantatlas-bench-{suffix}"));
        std::fs::create_dir_all(&dir)?;
        let url = format!("sqlite://{}/bench.db", dir.display());
        return Ok((
            url,
            Box::pin(async move {
                let _ = std::fs::remove_dir_all(dir);
            }),
        ));
    }
    let name = format!("ta_bench_{suffix}");
    let admin = Db::connect(pg_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(admin.pool())
        .await?;
    admin.close().await;
    let Some((server, _)) = pg_url.split('?').next().and_then(|u| u.rsplit_once('/')) else {
        return Err("--pg-url has no database part".into());
    };
    let admin_url = pg_url.to_owned();
    let drop_name = name.clone();
    Ok((
        format!("{server}/{name}"),
        Box::pin(async move {
            if let Ok(admin) = Db::connect(&admin_url).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {drop_name} WITH (FORCE)"))
                    .execute(admin.pool())
                    .await;
                admin.close().await;
            }
        }),
    ))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn p50_p99(mut values: Vec<f64>) -> String {
    values.sort_by(f64::total_cmp);
    format!(
        "{:.1} / {:.1}",
        percentile(&values, 0.5),
        percentile(&values, 0.99)
    )
}

async fn measure(engine: &str, db: &Db, args: &Args) -> Result<()> {
    let sim = GraphSim::start(SimConfig {
        // Spread over four types: `policies` compliance policies per tenant.
        policies_per_tenant: args.policies * 4,
        client_secret: SECRET.into(),
        ..SimConfig::default()
    })
    .await?;
    let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url))?;
    let email = Email::parse("bench@fair.example")?;
    let user_id = users::upsert_user(db, &email, "Bench", "not-a-hash").await?;
    let mut creds = HashMap::new();
    let mut selections = Vec::new();
    for n in 0..args.tenants {
        let external = format!("{n:08x}-0000-4000-8000-0000000fa1e5");
        let tenant_id: i64 = sqlx::query_scalar(
            "INSERT INTO tenants (external_id, display_name, created_at) VALUES ($1, $2, 0) RETURNING id",
        )
        .bind(&external)
        .bind(format!("Tenant {n}"))
        .fetch_one(db.pool())
        .await?;
        users::grant(db, user_id, &external, Role::Operator).await?;
        let tenant_creds = TenantCredentials {
            tenant_id: TenantExternalId::parse(&external)?,
            client_id: "bench-fair".into(),
            client_secret: ClientSecret::new(SECRET),
        };
        let mut ids = Vec::new();
        for listing in client
            .list_policies(&tenant_creds, PolicyType::Compliance)
            .await?
        {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
                 VALUES ($1, $2, 'compliance', $3, $4, 0) RETURNING id",
            )
            .bind(tenant_id)
            .bind(&listing.graph_id)
            .bind(&listing.display_name)
            .bind(&listing.platform)
            .fetch_one(db.pool())
            .await?;
            ids.push(id);
        }
        creds.insert(tenant_id, tenant_creds);
        selections.push((external, tenant_id, ids));
    }
    let mut knobs = sim.knobs();
    knobs.latency_ms = args.latency_ms;
    sim.set_knobs(knobs);

    let creds = Arc::new(creds);
    let loader: CredentialsLoader = Arc::new(move |tenant| {
        let found = creds.get(&tenant).cloned().ok_or_else(|| RunFailure {
            reason: ReasonCode::AuthenticationFailed,
            message: "unknown tenant".into(),
        });
        Box::pin(async move { found })
    });
    let source: Arc<dyn PolicySource> = Arc::new(client);
    let worker = Worker::new(db.clone(), Registry::standard(source), loader, "bench-fair")
        .with_runs_at_once(args.concurrency);

    // The runner works while every tenant queues its runs (one backup set each), tenant after
    // tenant, each submit waking it as the server's does.
    let wake = WakeUp::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn(runner::run(
        worker,
        wake.clone(),
        db.clone(),
        Duration::from_secs(1),
        stopped,
    ));
    let started = Instant::now();
    for (external, tenant_id, ids) in &selections {
        let ctx = authorize_user(db, user_id, external, Capability::StartRuns).await?;
        let selection = PolicySelection::parse(ids.clone())?;
        for run in 0..args.runs {
            let set: i64 = sqlx::query_scalar(
                "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, 0) RETURNING id",
            )
            .bind(tenant_id)
            .bind(format!("Set {run}"))
            .fetch_one(db.pool())
            .await?;
            create_or_reuse(db, &ctx, set, &selection, Default::default()).await?;
            wake.run_queued(db).await;
        }
    }
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')")
                .fetch_one(db.pool())
                .await?;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let wall = started.elapsed();
    let _ = stop.send(true);
    runner.await?;

    let rows = sqlx::query("SELECT tenant_id, status, created_at, finished_at FROM runs")
        .fetch_all(db.pool())
        .await?;
    let mut per_run = Vec::new();
    let mut per_tenant: HashMap<i64, Vec<f64>> = HashMap::new();
    for row in &rows {
        let status: String = row.try_get("status")?;
        if status != "completed" {
            return Err(format!("a run ended {status}").into());
        }
        let created: i64 = row.try_get("created_at")?;
        let finished: i64 = row.try_get("finished_at")?;
        let seconds = (finished - created) as f64 / 1000.0;
        per_run.push(seconds);
        per_tenant
            .entry(row.try_get("tenant_id")?)
            .or_default()
            .push(seconds);
    }
    let first: Vec<f64> = per_tenant
        .values()
        .map(|runs| runs.iter().copied().fold(f64::MAX, f64::min))
        .collect();
    let last: Vec<f64> = per_tenant
        .values()
        .map(|runs| runs.iter().copied().fold(0.0, f64::max))
        .collect();
    println!(
        "| {engine} | {} | {:.1} s | {} | {} | {} |",
        rows.len(),
        wall.as_secs_f64(),
        p50_p99(per_run),
        p50_p99(first),
        p50_p99(last)
    );
    Ok(())
}
