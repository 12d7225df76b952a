//! Benchmark of "add policies" runs, on SQLite and PostgreSQL: the latency of "Add selected" at 1,
//! 1,000 and 10,000 policies (the service call and the whole HTTP request), 200 identical submits
//! at once (exactly one run), the worker's own cost on a 10,000-item run against a
//! zero-latency simulator (beside the same captures without worker and database, before and
//! after it, with the CPU each took), and the picker's requests on 50,000 policies. Prints
//! Markdown tables. `--worker-only` measures the worker alone; its progress lines give the
//! phases' times since boot, to cut a `perf record -k boottime -a` profile to one of them.
//! `cargo bench --bench runs --profile dev -- [--quick] [--engine sqlite|postgres|both]` (drop
//! `--profile dev` for a release build). The app is the tests' own (`tests/common`): the real
//! server on a random port over a fresh, seeded database, removed when the bench ends.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use common::{Backend, Form, Options, TestApp, TestDb};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tenantatlas::domain::{
    AddPoliciesOptions, Capability, PolicySelection, SubmittedRun, Timestamp,
};
use tenantatlas::graph_sim::{GraphSim, Knobs, SimConfig, SimHandle};
use tenantatlas::server::auth::{authorize_user, TenantContext};
use tenantatlas::server::db::Db;
use tenantatlas::server::engine::worker::Outcome;
use tenantatlas::server::graph::{
    CaptureOptions, GraphClient, GraphConfig, LimiterConfig, PolicyType,
};
use tenantatlas::server::inventory::sync_tenant;
use tenantatlas::server::runs::create::create_or_reuse;
use tenantatlas::server::runs::start::check_drift;

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
#[command(name = "runs")]
struct Args {
    /// Which database engine(s) to measure.
    #[arg(long, value_enum, default_value_t = EngineChoice::Both)]
    engine: EngineChoice,
    /// A PostgreSQL server URL (any database on it): the bench creates `ta_test_<random>` there
    /// and drops it at the end.
    #[arg(
        long,
        env = "BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_default_value = true,
        hide_env_values = true
    )]
    pg_url: String,
    /// Fewer samples and a 2,000-item run: a smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Only the worker's run (and its Graph-only baseline): for profiling it.
    #[arg(long)]
    worker_only: bool,
    /// Do not `ANALYZE` the PostgreSQL database before each series, as autovacuum would.
    #[arg(long)]
    no_analyze: bool,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// How much to measure.
struct Plan {
    /// (selected policies, timed samples) per submit size.
    sizes: [(usize, usize); 3],
    /// Untimed submits before each size's samples (pool connections, statement caches).
    warm_up: usize,
    /// Identical submits fired at once, and how many policies each selects.
    concurrent: usize,
    concurrent_policies: usize,
    /// Items of the run the worker processes.
    run_items: usize,
    /// Timed requests per picker query.
    picker_samples: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                sizes: [(1, 20), (1_000, 20), (10_000, 10)],
                warm_up: 2,
                concurrent: 200,
                concurrent_policies: 1_000,
                run_items: 2_000,
                picker_samples: 10,
            }
        } else {
            Self {
                sizes: [(1, 200), (1_000, 200), (10_000, 100)],
                warm_up: 5,
                concurrent: 200,
                concurrent_policies: 1_000,
                run_items: 10_000,
                picker_samples: 100,
            }
        }
    }
}

/// The tenant every measurement acts in, and the member who submits (an operator may start runs).
const TENANT: &str = common::CONTOSO;
const OPERATOR: &str = common::OPERATOR;
/// The inventory the bench inserts: the largest selection one run may hold.
const INVENTORY: usize = 10_000;
/// What the picker submits by default.
const OPTIONS: AddPoliciesOptions = AddPoliciesOptions {
    include_assignments: true,
    include_scope_tags: true,
};
/// The tenant's inventory when the picker is measured (the issue: "50,000 policies stay fast").
const PICKER_INVENTORY: i64 = 50_000;
/// The goals.
const GOAL_P99_MS: f64 = 25.0;
const GOAL_RATIO: f64 = 3.0;
const GOAL_ITEMS_PER_SECOND: f64 = 1_000.0;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    // Warnings only unless asked, and on stderr beside the progress lines (the report is
    // stdout): `RUST_LOG=sqlx=debug` times every statement (to see what dominates).
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let plan = Plan::new(args.quick);
    let engines: &[Backend] = match args.engine {
        EngineChoice::Sqlite => &[Backend::Sqlite],
        EngineChoice::Postgres => &[Backend::Postgres],
        EngineChoice::Both => &[Backend::Sqlite, Backend::Postgres],
    };
    // One simulator and client for every engine: zero latency, no throttle, and a limiter far
    // above Intune's (46/s would set the pace; the engine is what is measured here).
    let sim = GraphSim::start(SimConfig {
        policies_per_tenant: INVENTORY,
        knobs: Knobs {
            latency_ms: 0,
            throttle_limit: 0,
            ..Knobs::default()
        },
        ..SimConfig::default()
    })
    .await?;
    let mut config = GraphConfig::new(&sim.login_url, &sim.graph_url);
    config.limits = LimiterConfig {
        requests_per_second: NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MAX),
        burst: NonZeroU32::new(1_000_000).unwrap_or(NonZeroU32::MAX),
        max_in_flight: 64,
    };
    let client = GraphClient::new(config)?;

    // Other work on the machine shows in the figures; say how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    println!(
        "runs: {} build, {} cores, load average {load}; samples per size: {}; {} warm-up submits each{}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        plan.sizes
            .iter()
            .map(|(n, samples)| format!("{samples} at {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        plan.warm_up,
        if args.quick { " (--quick)" } else { "" }
    );
    if engines.contains(&Backend::Postgres) {
        println!(
            "PostgreSQL: {}",
            if args.no_analyze {
                "no ANALYZE (--no-analyze): statistics as the server leaves them"
            } else {
                "ANALYZE before each series, as autovacuum would"
            }
        );
    }
    let mut reports = Vec::new();
    for &engine in engines {
        eprintln!("{}: setting up", engine.label());
        let test_db = TestDb::create_on(engine, &args.pg_url).await;
        let app = TestApp::serve(test_db, Options::default()).await;
        let analyze = engine == Backend::Postgres && !args.no_analyze;
        let result = measure(
            &app,
            engine,
            &plan,
            analyze,
            args.worker_only,
            &sim,
            &client,
        )
        .await;
        app.close().await;
        reports.push(result?);
    }
    print_reports(&plan, &reports);
    Ok(())
}

/// Percentiles of one series of samples.
#[derive(Debug, Clone, Copy)]
struct Stats {
    samples: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    /// Nearest-rank percentiles.
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let rank = |p: f64| {
            let index = ((p * samples.len() as f64).ceil() as usize).max(1) - 1;
            samples.get(index).copied().unwrap_or_default()
        };
        Self {
            samples: samples.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1_000.0
}

struct SubmitRow {
    policies: usize,
    service: Stats,
    http: Stats,
}

struct ConcurrentRow {
    path: &'static str,
    stats: Stats,
    runs: i64,
    items: i64,
    reused: usize,
}

struct WorkerRow {
    items: usize,
    elapsed: Duration,
    status: String,
    succeeded: i64,
    failed: i64,
    skipped: i64,
    graph_requests: usize,
    /// The same captures through the same client without the worker and the database.
    graph_only: Duration,
    /// CPU spent while the captures ran alone, and while the worker ran.
    graph_only_cpu: Cpu,
    worker_cpu: Cpu,
    /// A drift check of the same policies after the run (all unchanged).
    drift_check: Duration,
}

/// Seconds since boot (`/proc/uptime`), to cut a profile to a phase: `perf record -k boottime`,
/// then `perf report --time <start>,<end>`.
fn uptime() -> String {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// CPU seconds spent over an interval: by this process (client, simulator, worker), and by the
/// whole machine (this process, PostgreSQL and anything else), from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    process: f64,
    machine: f64,
}

impl Cpu {
    /// CPU seconds so far; zeros where `/proc` cannot be read.
    fn now() -> Self {
        // Clock ticks: 100 per second on Linux (`getconf CLK_TCK`).
        const TICKS: f64 = 100.0;
        let fields = |text: String, skip: usize| -> Vec<f64> {
            text.split_whitespace()
                .skip(skip)
                .map(|f| f.parse().unwrap_or(0.0))
                .collect()
        };
        // utime and stime are the 14th and 15th fields; the name (field 2) has no spaces here.
        let process = std::fs::read_to_string("/proc/self/stat")
            .map(|t| fields(t, 13))
            .ok()
            .map_or(0.0, |f| f.iter().take(2).sum::<f64>() / TICKS);
        // The first line: user nice system idle iowait irq softirq steal …; busy is all but idle
        // and iowait.
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned))
            .map(|line| fields(line, 1))
            .map_or(0.0, |f| {
                let busy: f64 = f.iter().take(8).sum::<f64>()
                    - f.get(3).copied().unwrap_or(0.0)
                    - f.get(4).copied().unwrap_or(0.0);
                busy / TICKS
            });
        Self { process, machine }
    }

    fn since(start: Self) -> Self {
        let now = Self::now();
        Self {
            process: now.process - start.process,
            machine: now.machine - start.machine,
        }
    }
}

struct EngineReport {
    engine: Backend,
    submits: Vec<SubmitRow>,
    concurrent: Vec<ConcurrentRow>,
    /// As many authorized reads at once as identical submits: the floor of their HTTP path.
    floor: Option<Stats>,
    worker: WorkerRow,
    picker: Vec<PickerRow>,
}

/// Everything a measurement needs about the running app.
struct Fixture<'a> {
    db: Db,
    ctx: TenantContext,
    tenant_id: i64,
    /// The synced inventory, ascending by id: what the picker selects and the worker captures.
    ids: Vec<i64>,
    policies: Vec<(PolicyType, String)>,
    app: &'a TestApp,
    /// The operator's session.
    cookie: String,
    /// Refresh the planner's statistics before each series, as autovacuum would (PostgreSQL).
    analyze: bool,
}

impl Fixture<'_> {
    /// Without statistics PostgreSQL plans blind (it checked each run item's foreign key with a
    /// sequential scan of `runs` when the submit still wrote the items). Autovacuum keeps the
    /// statistics current in a real deployment; servers that run with it off (like this
    /// project's test server) would measure that artefact instead, unless the bench does
    /// autovacuum's job. `--no-analyze` shows the difference.
    async fn analyze(&self) -> Result<()> {
        if self.analyze {
            sqlx::query("ANALYZE").execute(self.db.pool()).await?;
        }
        Ok(())
    }
}

async fn measure(
    app: &TestApp,
    engine: Backend,
    plan: &Plan,
    analyze: bool,
    worker_only: bool,
    sim: &SimHandle,
    client: &GraphClient,
) -> Result<EngineReport> {
    let db = app.db.clone();
    let tenant_id = common::tenant_id(&db, TENANT).await;
    // The inventory, written by the real sync from the simulator.
    sync_tenant(&db, tenant_id, client, &common::creds(TENANT)).await?;
    let rows = sqlx::query_as::<_, (i64, String, String)>(
        "SELECT id, policy_type, graph_id FROM policies WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tenant_id)
    .fetch_all(db.pool())
    .await?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut policies = Vec::with_capacity(rows.len());
    for (id, policy_type, graph_id) in rows {
        ids.push(id);
        let policy_type =
            PolicyType::parse(&policy_type).ok_or("a synced policy of an unknown type")?;
        policies.push((policy_type, graph_id));
    }
    if ids.len() != INVENTORY {
        return Err(format!("{} policies synced, {INVENTORY} expected", ids.len()).into());
    }
    let user_id = common::user_id(&db, OPERATOR).await;
    // The service is called with the context the authorization point builds for this member.
    let ctx = authorize_user(&db, user_id, TENANT, Capability::StartRuns).await?;
    let fixture = Fixture {
        db,
        ctx,
        tenant_id,
        ids,
        policies,
        app,
        cookie: app.sign_in(OPERATOR).await,
        analyze,
    };
    let label = engine.label();

    if worker_only {
        eprintln!("{label}: worker on a {}-item run", plan.run_items);
        let worker = worker_throughput(&fixture, sim, client, plan.run_items).await?;
        return Ok(EngineReport {
            engine,
            submits: Vec::new(),
            concurrent: Vec::new(),
            floor: None,
            worker,
            picker: Vec::new(),
        });
    }
    let mut submits = Vec::new();
    for (policies, samples) in plan.sizes {
        eprintln!("{label}: {samples} submits of {policies} policies");
        submits.push(submit_latency(&fixture, policies, samples, plan.warm_up).await?);
    }
    eprintln!("{label}: {} concurrent identical submits", plan.concurrent);
    let concurrent = vec![
        concurrent_http(&fixture, plan.concurrent, plan.concurrent_policies).await?,
        concurrent_service(&fixture, plan.concurrent, plan.concurrent_policies).await?,
    ];
    let floor = concurrent_reads(&fixture, plan.concurrent).await?;
    eprintln!("{label}: worker on a {}-item run", plan.run_items);
    let worker = worker_throughput(&fixture, sim, client, plan.run_items).await?;
    eprintln!("{label}: the picker on {PICKER_INVENTORY} policies");
    let picker = picker_latency(&fixture, plan.picker_samples).await?;
    Ok(EngineReport {
        engine,
        submits,
        concurrent,
        floor: Some(floor),
        worker,
        picker,
    })
}

async fn new_backup_set(fixture: &Fixture<'_>, name: &str) -> Result<i64> {
    Ok(sqlx::query_scalar::<_, i64>(
        "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(fixture.tenant_id)
    .bind(name)
    .bind(Timestamp::now().millis())
    .fetch_one(fixture.db.pool())
    .await?)
}

/// Ends a run as the worker would, so the next identical submit creates a new one.
async fn finish_run(fixture: &Fixture<'_>, run_id: i64) -> Result<()> {
    sqlx::query("UPDATE runs SET status = 'completed', finished_at = $2 WHERE id = $1")
        .bind(run_id)
        .bind(Timestamp::now().millis())
        .execute(fixture.db.pool())
        .await?;
    Ok(())
}

fn expect_new(run: &SubmittedRun, policies: usize) -> Result<()> {
    if run.reused || run.total != policies as i64 {
        return Err(format!("expected a new run of {policies} items, got {run:?}").into());
    }
    Ok(())
}

/// Alternates service calls and HTTP requests with the same selection on one backup set; each
/// run is marked finished (untimed) before the next submit, so every sample creates a new run.
async fn submit_latency(
    fixture: &Fixture<'_>,
    policies: usize,
    samples: usize,
    warm_up: usize,
) -> Result<SubmitRow> {
    let ids = &fixture.ids[..policies];
    let selection = PolicySelection::parse(ids.to_vec())?;
    let set = new_backup_set(fixture, &format!("Latency {policies}")).await?;
    let (mut service, mut http) = (Vec::new(), Vec::new());
    for sample in 0..warm_up + samples {
        let started = Instant::now();
        let run = create_or_reuse(&fixture.db, &fixture.ctx, set, &selection, OPTIONS).await?;
        let service_time = started.elapsed();
        expect_new(&run, policies)?;
        finish_run(fixture, run.run_id).await?;

        let (http_time, run) = timed(fixture.submit(set, ids)).await?;
        expect_new(&run, policies)?;
        finish_run(fixture, run.run_id).await?;
        if sample + 1 == warm_up {
            fixture.analyze().await?;
        }
        if sample >= warm_up {
            service.push(service_time);
            http.push(http_time);
        }
    }
    Ok(SubmitRow {
        policies,
        service: Stats::of(service),
        http: Stats::of(http),
    })
}

/// Checks the outcome of identical concurrent submits: one run, every other answer reused it.
async fn one_run(
    fixture: &Fixture<'_>,
    path: &'static str,
    set: i64,
    answers: Vec<(Duration, SubmittedRun)>,
) -> Result<ConcurrentRow> {
    let run_ids: BTreeSet<i64> = answers.iter().map(|(_, run)| run.run_id).collect();
    let reused = answers.iter().filter(|(_, run)| run.reused).count();
    let (runs, items): (i64, i64) = sqlx::query_as::<_, (i64, i64)>(
        "SELECT (SELECT COUNT(*) FROM runs WHERE target_id = $1) AS runs, \
                (SELECT CAST(COALESCE(SUM(total_items), 0) AS BIGINT) FROM runs WHERE target_id = $1) AS items",
    )
    .bind(set)
    .fetch_one(fixture.db.pool())
    .await?;
    if run_ids.len() != 1 || runs != 1 || reused != answers.len() - 1 {
        return Err(format!(
            "{path}: {} submits gave {} distinct runs, {runs} in the database, {reused} reused",
            answers.len(),
            run_ids.len()
        )
        .into());
    }
    for run_id in run_ids {
        finish_run(fixture, run_id).await?;
    }
    Ok(ConcurrentRow {
        path,
        stats: Stats::of(answers.iter().map(|(time, _)| *time).collect()),
        runs,
        items,
        reused,
    })
}

/// `count` identical submits over HTTP, released together by a barrier.
async fn concurrent_http(
    fixture: &Fixture<'_>,
    count: usize,
    policies: usize,
) -> Result<ConcurrentRow> {
    let set = new_backup_set(fixture, "Concurrent HTTP").await?;
    fixture.analyze().await?;
    let answers = all_at_once(count, || {
        timed(fixture.submit(set, &fixture.ids[..policies]))
    })
    .await?;
    one_run(fixture, "HTTP", set, answers).await
}

/// `count` identical service calls, released together by a barrier.
async fn concurrent_service(
    fixture: &Fixture<'_>,
    count: usize,
    policies: usize,
) -> Result<ConcurrentRow> {
    let set = new_backup_set(fixture, "Concurrent service").await?;
    fixture.analyze().await?;
    let selection = Arc::new(PolicySelection::parse(fixture.ids[..policies].to_vec())?);
    let answers = all_at_once(count, || {
        let (db, ctx, selection) = (
            fixture.db.clone(),
            fixture.ctx.clone(),
            Arc::clone(&selection),
        );
        async move {
            let started = Instant::now();
            let run = create_or_reuse(&db, &ctx, set, &selection, OPTIONS).await?;
            Ok((started.elapsed(), run))
        }
    })
    .await?;
    one_run(fixture, "service", set, answers).await
}

/// `count` authorized reads at once over HTTP (`runs/version`: the session, the membership and
/// one indexed read), released together like the identical submits: what any `count` requests
/// at once cost on this machine, submit or not.
async fn concurrent_reads(fixture: &Fixture<'_>, count: usize) -> Result<Stats> {
    let set = new_backup_set(fixture, "Concurrent reads").await?;
    let (_, run) = timed::<SubmittedRun>(fixture.submit(set, &fixture.ids[..1])).await?;
    finish_run(fixture, run.run_id).await?;
    let form = Form::tenant(TENANT).field("id", run.run_id);
    let answers = all_at_once(count, || {
        timed::<String>(
            fixture
                .app
                .request(Some(&fixture.cookie), "runs/version", &form.pairs()),
        )
    })
    .await?;
    Ok(Stats::of(
        answers.into_iter().map(|(time, _)| time).collect(),
    ))
}

/// Runs `count` requests made by `submit` as tasks released together by a barrier; their answers.
async fn all_at_once<T, F, Fut>(count: usize, submit: F) -> Result<Vec<(Duration, T)>>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(Duration, T)>> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(count));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let (barrier, submitted) = (Arc::clone(&barrier), submit());
        tasks.spawn(async move {
            barrier.wait().await;
            submitted.await
        });
    }
    let mut answers = Vec::with_capacity(count);
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer??);
    }
    Ok(answers)
}

/// Queues a run of `items` policies through the real submit path, then lets the real worker
/// process it through the real client against the simulator; also times the same captures
/// without the worker (client and simulator only) to separate Graph from the engine.
async fn worker_throughput(
    fixture: &Fixture<'_>,
    sim: &SimHandle,
    client: &GraphClient,
    items: usize,
) -> Result<WorkerRow> {
    // Graph only, before and after the worker: the machine's pace drifts between minutes, and
    // the worker is compared with the mean of the two. First once untimed, so that neither is
    // the first pass over a new simulator and client (whose connections, buffers and the
    // allocator's memory the worker's run would then find ready).
    graph_only(fixture, client, items).await?;
    let (before, before_cpu) = graph_only(fixture, client, items).await?;

    let set = new_backup_set(fixture, "Worker").await?;
    let selection = PolicySelection::parse(fixture.ids[..items].to_vec())?;
    let run = create_or_reuse(&fixture.db, &fixture.ctx, set, &selection, OPTIONS).await?;
    expect_new(&run, items)?;
    let worker = common::sim_worker(&fixture.db, client, "bench");
    fixture.analyze().await?;
    sim.reset_counters();
    eprintln!("worker: starts at uptime {} s", uptime());
    let cpu = Cpu::now();
    let started = Instant::now();
    let outcome = worker.try_execute_task().await?;
    let elapsed = started.elapsed();
    let worker_cpu = Cpu::since(cpu);
    eprintln!("worker: ended at uptime {} s", uptime());
    let graph_requests = sim.counters().graph_requests();
    let (after, after_cpu) = graph_only(fixture, client, items).await?;
    let graph_only = (before + after) / 2;
    let graph_only_cpu = Cpu {
        process: (before_cpu.process + after_cpu.process) / 2.0,
        machine: (before_cpu.machine + after_cpu.machine) / 2.0,
    };
    eprintln!("Graph only: {before:?} before the worker, {after:?} after");
    if outcome != (Outcome::TaskCompleted { run_id: run.run_id }) {
        return Err(format!("the worker did {outcome:?}, not run {}", run.run_id).into());
    }
    let (status, succeeded, failed, skipped) = run_totals(fixture, run.run_id).await?;

    // A drift check of the set the run filled: every policy captured again and compared with
    // its backup (unchanged: the same version, no new one), recorded on its run item.
    let drift = check_drift(&fixture.db, &fixture.ctx, set).await?;
    expect_new(&drift, items)?;
    fixture.analyze().await?;
    let started = Instant::now();
    let outcome = worker.try_execute_task().await?;
    let drift_check = started.elapsed();
    if outcome
        != (Outcome::TaskCompleted {
            run_id: drift.run_id,
        })
    {
        return Err(format!(
            "the worker did {outcome:?}, not drift check {}",
            drift.run_id
        )
        .into());
    }
    let (drift_status, drift_succeeded, ..) = run_totals(fixture, drift.run_id).await?;
    if drift_status != "completed" || drift_succeeded != items as i64 {
        return Err(
            format!("drift check {drift_status}, {drift_succeeded} of {items} succeeded").into(),
        );
    }
    Ok(WorkerRow {
        items,
        elapsed,
        status,
        succeeded,
        failed,
        skipped,
        graph_requests,
        graph_only,
        graph_only_cpu,
        worker_cpu,
        drift_check,
    })
}

/// A run's status and counters (succeeded, failed, skipped).
async fn run_totals(fixture: &Fixture<'_>, run_id: i64) -> Result<(String, i64, i64, i64)> {
    Ok(sqlx::query_as::<_, (String, i64, i64, i64)>(
        "SELECT status, succeeded, failed, skipped FROM runs WHERE id = $1",
    )
    .bind(run_id)
    .fetch_one(fixture.db.pool())
    .await?)
}

/// The run's captures through the same client, without worker or database, 8 at once as the
/// worker makes them, in a task of the runtime as the worker's are: the time and the CPU.
async fn graph_only(
    fixture: &Fixture<'_>,
    client: &GraphClient,
    items: usize,
) -> Result<(Duration, Cpu)> {
    let creds = common::creds(TENANT);
    let capture = CaptureOptions {
        include_assignments: OPTIONS.include_assignments,
        include_scope_tags: OPTIONS.include_scope_tags,
    };
    let policies = fixture.policies[..items].to_vec();
    let client = client.clone();
    eprintln!("Graph only: starts at uptime {} s", uptime());
    let cpu = Cpu::now();
    let started = Instant::now();
    let captures = tokio::spawn(async move {
        let (client, creds) = (&client, &creds);
        let mut captures = futures::stream::iter(policies)
            .map(|(policy_type, graph_id)| async move {
                client
                    .capture_policy(creds, policy_type, &graph_id, capture)
                    .await
            })
            .buffer_unordered(8);
        while let Some(result) = captures.next().await {
            result.map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    });
    captures.await??;
    let elapsed = started.elapsed();
    let cpu = Cpu::since(cpu);
    eprintln!("Graph only: ended at uptime {} s, {elapsed:?}", uptime());
    Ok((elapsed, cpu))
}

/// A picker request: its name in the report, the server function, the filter fields.
type PickerQuery = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// One picker query's latency over HTTP.
struct PickerRow {
    query: &'static str,
    stats: Stats,
    /// What the answer said: the matching total, or the ids "select all" returned.
    answer: String,
}

/// The picker's requests on a tenant of 50,000 policies, 2,000 of them already in the backup set
/// it adds to: first page, a name search, type and platform filters sorted by last change, the
/// last page, and "select all N matching".
async fn picker_latency(fixture: &Fixture<'_>, samples: usize) -> Result<Vec<PickerRow>> {
    // The rest of the 50,000 beside the simulator's 10,000, as a sync would have written them
    // (every fifth one with a last-modified time, so that sort has both kinds).
    let extra = PICKER_INVENTORY - INVENTORY as i64;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $2) \
         INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, \
                               last_modified_at, synced_at) \
         SELECT $1, 'picker-' || i, \
                CASE i % 4 WHEN 0 THEN 'settings_catalog' WHEN 1 THEN 'device_configuration' \
                           WHEN 2 THEN 'compliance' ELSE 'administrative_template' END, \
                'Picker policy ' || i, \
                CASE i % 3 WHEN 0 THEN 'windows10' WHEN 1 THEN 'iOS' ELSE 'android' END, \
                CASE WHEN i % 5 = 0 THEN i ELSE NULL END, 0 \
         FROM n",
    )
    .bind(fixture.tenant_id)
    .bind(extra)
    .execute(fixture.db.pool())
    .await?;
    let set = new_backup_set(fixture, "Picker bench").await?;
    // 2,000 policies already in the set (marked in the list, left out of "select all").
    sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         SELECT p.tenant_id, p.id, 'picker-bench', '{}', 0 FROM policies p \
         WHERE p.tenant_id = $1 AND p.graph_id LIKE 'picker-%' AND p.id % 20 = 0",
    )
    .bind(fixture.tenant_id)
    .execute(fixture.db.pool())
    .await?;
    sqlx::query(
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         SELECT s.tenant_id, $2, s.policy_id, s.id, 0 FROM policy_snapshots s \
         WHERE s.tenant_id = $1 AND s.content_hash = 'picker-bench'",
    )
    .bind(fixture.tenant_id)
    .bind(set)
    .execute(fixture.db.pool())
    .await?;
    fixture.analyze().await?;
    let set = set.to_string();
    let queries: [PickerQuery; 5] = [
        ("first page, by name", "policies/list", vec![]),
        (
            "search \"policy 12\"",
            "policies/list",
            vec![("search", "policy 12")],
        ),
        (
            "compliance + android, by last change",
            "policies/list",
            vec![
                ("policy_type", "compliance"),
                ("platform", "android"),
                ("sort", "-modified"),
            ],
        ),
        ("last page, by name", "policies/list", vec![("page", "999")]),
        (
            "select all matching (settings catalog)",
            "policies/matching-ids",
            vec![("policy_type", "settings_catalog")],
        ),
    ];
    let mut rows = Vec::new();
    for (query, endpoint, extra) in queries {
        let mut form = vec![("tenant", TENANT), ("backup_set_id", set.as_str())];
        form.extend(extra);
        let mut times = Vec::with_capacity(samples);
        let mut answer = serde_json::Value::Null;
        for _ in 0..samples + 2 {
            let request = fixture.app.request(Some(&fixture.cookie), endpoint, &form);
            let (time, body) = timed(request).await?;
            times.push(time);
            answer = body;
        }
        // The first two warm the pool and the statement cache.
        times.drain(..2);
        let answer = match answer.get("ids") {
            Some(ids) => format!(
                "{} ids{}",
                ids.as_array().map_or(0, Vec::len),
                if answer["truncated"] == true {
                    ", truncated"
                } else {
                    ""
                }
            ),
            None => format!("{} matching", answer["total"]),
        };
        rows.push(PickerRow {
            query,
            stats: Stats::of(times),
            answer,
        });
    }
    Ok(rows)
}

impl Fixture<'_> {
    /// "Add selected" of `ids` to backup set `set` as the operator, with the picker's default
    /// options: the request, ready to send (the form is encoded before the clock starts).
    fn submit(&self, set: i64, ids: &[i64]) -> reqwest::RequestBuilder {
        let form = Form::tenant(TENANT)
            .field("backup_set_id", set)
            .field("include_assignments", OPTIONS.include_assignments)
            .field("include_scope_tags", OPTIONS.include_scope_tags)
            .list("policy_ids", ids);
        self.app
            .request(Some(&self.cookie), "runs/add-policies", &form.pairs())
    }
}

/// Sends a server function request and times it until the whole answer is read; a non-2xx
/// answer is an error.
async fn timed<T: DeserializeOwned>(request: reqwest::RequestBuilder) -> Result<(Duration, T)> {
    let started = Instant::now();
    let response = request.send().await?;
    let status = response.status();
    let url = response.url().path().to_owned();
    let bytes = response.bytes().await?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        return Err(format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )
        .into());
    }
    Ok((elapsed, serde_json::from_slice(&bytes)?))
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn print_reports(plan: &Plan, reports: &[EngineReport]) {
    println!("\n### Submit latency (ms), a new run per sample\n");
    println!("| engine | policies | samples | service p50 | service p99 | HTTP p50 | HTTP p99 | HTTP max |");
    println!("|---|--:|--:|--:|--:|--:|--:|--:|");
    for report in reports {
        for row in &report.submits {
            println!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                report.engine.label(),
                row.policies,
                row.service.samples,
                ms(row.service.p50),
                ms(row.service.p99),
                ms(row.http.p50),
                ms(row.http.p99),
                ms(row.http.max)
            );
        }
    }
    println!();
    for report in reports {
        let (Some(one), Some(largest)) = (report.submits.first(), report.submits.last()) else {
            continue;
        };
        for (path, small, large) in [
            ("service", one.service.p99, largest.service.p99),
            ("HTTP", one.http.p99, largest.http.p99),
        ] {
            let (large, small) = (ms(large), ms(small));
            println!(
                "- {} {path}: p99 at {} = {large:.1} ms: ≤ {GOAL_P99_MS} ms {}; {:.1} × the {}-policy p99 ({small:.1} ms): ≤ {GOAL_RATIO} × {}",
                report.engine.label(),
                largest.policies,
                verdict(large <= GOAL_P99_MS),
                large / small.max(f64::EPSILON),
                one.policies,
                verdict(large <= GOAL_RATIO * small)
            );
        }
    }

    println!(
        "\n### {} identical submits at once ({} policies each)\n",
        plan.concurrent, plan.concurrent_policies
    );
    println!("| engine | path | runs | items queued | reused | p50 ms | p99 ms | max ms |");
    println!("|---|---|--:|--:|--:|--:|--:|--:|");
    for report in reports {
        for row in &report.concurrent {
            println!(
                "| {} | {} | {} | {} | {} of {} | {:.1} | {:.1} | {:.1} |",
                report.engine.label(),
                row.path,
                row.runs,
                row.items,
                row.reused,
                row.stats.samples,
                ms(row.stats.p50),
                ms(row.stats.p99),
                ms(row.stats.max)
            );
        }
        let Some(floor) = &report.floor else {
            continue;
        };
        println!(
            "| {} | the floor: {} authorized reads (`runs/version`) | – | – | – | {:.1} | {:.1} | {:.1} |",
            report.engine.label(),
            floor.samples,
            ms(floor.p50),
            ms(floor.p99),
            ms(floor.max)
        );
    }

    println!(
        "\n### Worker on one run, simulator at 0 ms latency, no throttle, limiter out of the way\n"
    );
    println!("| engine | items | status | succeeded | failed | skipped | Graph requests | time s | items/s | Graph only (mean of before and after), items/s |");
    println!("|---|--:|---|--:|--:|--:|--:|--:|--:|--:|");
    for report in reports {
        let w = &report.worker;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.0} | {:.0} |",
            report.engine.label(),
            w.items,
            w.status,
            w.succeeded,
            w.failed,
            w.skipped,
            w.graph_requests,
            w.elapsed.as_secs_f64(),
            w.items as f64 / w.elapsed.as_secs_f64(),
            w.items as f64 / w.graph_only.as_secs_f64()
        );
    }
    println!();
    for report in reports {
        let w = &report.worker;
        let rate = w.items as f64 / w.elapsed.as_secs_f64();
        println!(
            "- {}: {rate:.0} items/s: ≥ {GOAL_ITEMS_PER_SECOND} {}; {} of {} succeeded: {}; \
             {:.0} % of the rate of the same captures without worker and database",
            report.engine.label(),
            verdict(rate >= GOAL_ITEMS_PER_SECOND),
            w.succeeded,
            w.items,
            verdict(w.succeeded == w.items as i64 && w.status == "completed"),
            100.0 * w.graph_only.as_secs_f64() / w.elapsed.as_secs_f64()
        );
    }
    for report in reports {
        let w = &report.worker;
        println!(
            "- {}: a drift check of the same {} policies (each captured again, unchanged): \
             {:.1} s, {:.0} items/s",
            report.engine.label(),
            w.items,
            w.drift_check.as_secs_f64(),
            w.items as f64 / w.drift_check.as_secs_f64()
        );
    }
    println!(
        "\nCPU per item (ms of one core), from /proc: this process (client, simulator, worker) \
         and the whole machine (with the database)\n"
    );
    println!("| engine | Graph only: process | machine | cores busy | worker: process | machine | cores busy |");
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for report in reports {
        let w = &report.worker;
        let per_item = |seconds: f64| 1_000.0 * seconds / w.items as f64;
        println!(
            "| {} | {:.3} | {:.3} | {:.2} | {:.3} | {:.3} | {:.2} |",
            report.engine.label(),
            per_item(w.graph_only_cpu.process),
            per_item(w.graph_only_cpu.machine),
            w.graph_only_cpu.machine / w.graph_only.as_secs_f64(),
            per_item(w.worker_cpu.process),
            per_item(w.worker_cpu.machine),
            w.worker_cpu.machine / w.elapsed.as_secs_f64(),
        );
    }
    println!(
        "\n### The picker on {PICKER_INVENTORY} policies (HTTP, ms, {} samples each)\n",
        plan.picker_samples
    );
    println!("| engine | request | answer | p50 | p99 | max |");
    println!("|---|---|---|--:|--:|--:|");
    for report in reports {
        for row in &report.picker {
            println!(
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} |",
                report.engine.label(),
                row.query,
                row.answer,
                ms(row.stats.p50),
                ms(row.stats.p99),
                ms(row.stats.max)
            );
        }
    }
}
