//! Fair share between tenants: many tenants each queue several runs at once, in tenant order (the
//! order that is worst for first-in, first-out) while one process works them with
//! `--concurrency` runs at once against the Graph simulator. Prints, per engine, the p50 and p99
//! of "submit → finished" over all runs, and over tenants of the time until the tenant's first
//! and last run finished, as Markdown.
//!
//! `cargo bench --bench fair --profile dev -- [--engine sqlite|postgres|both] [--tenants N] …`
//! (drop `--profile dev` for a release build).

mod fleet;

use std::collections::HashMap;
use std::time::Instant;

use clap::Parser;
use fleet::{p50_p99, spawn_runner, Fleet, Result, Scratch};
use tenantatlas::server::engine::runner::WakeUp;

#[derive(Debug, Parser)]
#[command(name = "fair")]
struct Args {
    #[command(flatten)]
    setup: fleet::Setup,
    /// Tenants, each queuing `--runs` runs at once.
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
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "{} tenants × {} runs of {} policies, queued in tenant order; simulator latency {} ms; \
         {} runs at once\n",
        args.tenants, args.runs, args.policies, args.latency_ms, args.setup.concurrency
    );
    println!("| engine | runs | wall time | run p50 / p99 (s) | tenant's first run p50 / p99 (s) | tenant's last run p50 / p99 (s) |");
    println!("|---|--:|--:|--:|--:|--:|");
    args.setup
        .each_engine(async |engine, scratch| measure(engine, scratch, &args).await)
        .await
}

async fn measure(engine: &str, scratch: &Scratch, args: &Args) -> Result<()> {
    let db = &scratch.db;
    let fleet = Fleet::build(db, args.tenants, args.policies, args.latency_ms).await?;
    // The runner works while every tenant queues its runs (one backup set each), tenant after
    // tenant, each submit waking it as the server's does.
    let wake = WakeUp::default();
    let (stop, runner) = spawn_runner(
        fleet.worker("bench-fair", args.setup.concurrency),
        &wake,
        db,
    );
    let started = Instant::now();
    for tenant in &fleet.tenants {
        for _ in 0..args.runs {
            fleet.submit(tenant, &tenant.policy_ids).await?;
            wake.run_queued(db).await;
        }
    }
    fleet.drained().await?;
    let wall = started.elapsed();
    let _ = stop.send(true);
    runner.await?;

    let rows: Vec<(i64, String, i64, Option<i64>)> =
        sqlx::query_as("SELECT tenant_id, status, created_at, finished_at FROM runs")
            .fetch_all(db.pool())
            .await?;
    let mut per_run = Vec::new();
    let mut per_tenant: HashMap<i64, Vec<f64>> = HashMap::new();
    for (tenant_id, status, created, finished) in &rows {
        if status != "completed" {
            return Err(format!("a run ended {status}").into());
        }
        let seconds = (finished.unwrap_or(*created) - created) as f64 / 1000.0;
        per_run.push(seconds);
        per_tenant.entry(*tenant_id).or_default().push(seconds);
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
        p50_p99(per_run, 1),
        p50_p99(first, 1),
        p50_p99(last, 1)
    );
    Ok(())
}
