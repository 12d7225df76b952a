//! TenantAtlas's half of the side-by-side with Graphile Worker (`scripts/bench-peer.sh` runs
//! both on the same PostgreSQL). Our unit of work is a 1-policy add-policies run against the
//! zero-latency Graph simulator, spread over `--tenants` tenants (only one bulk run per tenant
//! is active at a time): a leased transaction with counters, an item and a snapshot.
//!   enqueue → start: runs submitted one at a time, `--interval-ms` apart, to an idle engine
//!   that a runner works; the time from calling the submit to the worker's claim
//!   (`started_at`), in whole milliseconds.
//!   throughput: `--jobs` runs queued while no runner works, then one runner with
//!   `--concurrency` runs at once per lane starts; runs finished per second until the last.
//! Prints one Markdown table row per engine.
//!
//! `cargo bench --bench peer --profile dev -- [--engine postgres|sqlite|both] [--jobs N] …`

mod fleet;

use std::time::{Duration, Instant};

use clap::Parser;
use fleet::{p50_p99, spawn_runner, Fleet, Result, Scratch};
use tenantatlas::domain::Timestamp;
use tenantatlas::server::engine::runner::WakeUp;

#[derive(Debug, Parser)]
#[command(name = "peer")]
struct Args {
    #[command(flatten)]
    setup: fleet::Setup,
    /// Tenants the runs are spread over: one bulk run per tenant is active at a time, so this
    /// bounds how many runs can be worked at once.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Runs queued for the throughput figure.
    #[arg(long, default_value_t = 1_000)]
    jobs: usize,
    #[command(flatten)]
    probe: Probe,
}

/// The enqueue → start figure: runs submitted one at a time to an idle engine.
#[derive(Debug, clap::Args)]
struct Probe {
    /// How many runs.
    #[arg(long = "latency-jobs", default_value_t = 200)]
    runs: usize,
    /// The pause between two submits.
    #[arg(long = "interval-ms", default_value_t = 50)]
    pause_ms: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    args.setup
        .each_engine(async |engine, scratch| measure(engine, scratch, &args).await)
        .await
}

async fn measure(engine: &str, scratch: &Scratch, args: &Args) -> Result<()> {
    let db = &scratch.db;
    let fleet = Fleet::build(db, args.tenants, 1, 0).await?;
    let tenant = |i: usize| &fleet.tenants[i % fleet.tenants.len()];

    // Enqueue → start on an idle engine.
    let wake = WakeUp::default();
    let (stop, runner) = spawn_runner(
        fleet.worker("bench-peer", args.setup.concurrency),
        &wake,
        db,
    );
    let mut latency_runs = Vec::new();
    for i in 0..args.probe.runs {
        let tenant = tenant(i);
        // The set exists before: the enqueue is the submit (authorization included), as
        // `addJob` is Graphile Worker's.
        let set = fleet.backup_set(tenant).await?;
        let submitted_at = Timestamp::now().millis();
        let run = fleet.submit_to(tenant, set, &tenant.policy_ids).await?;
        latency_runs.push((run, submitted_at));
        wake.run_queued(db).await;
        tokio::time::sleep(Duration::from_millis(args.probe.pause_ms)).await;
    }
    fleet.drained().await?;
    let _ = stop.send(true);
    runner.await?;
    let mut latencies = Vec::new();
    for (run, submitted_at) in latency_runs {
        let (status, started): (String, Option<i64>) =
            sqlx::query_as("SELECT status, started_at FROM runs WHERE id = $1")
                .bind(run)
                .fetch_one(db.pool())
                .await?;
        if status != "completed" {
            return Err(format!("run {run} ended {status}").into());
        }
        // The claim stamps `started_at` as it starts its statement, so a claim that waited for
        // the submit's commit can read a little early: never below zero.
        latencies.push(started.map_or(0, |started| (started - submitted_at).max(0)) as f64);
    }

    // Throughput: queue everything, then one runner works it off.
    let queued_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(db.pool())
        .await?;
    for i in 0..args.jobs {
        let tenant = tenant(i);
        fleet.submit(tenant, &tenant.policy_ids).await?;
    }
    let begin = Instant::now();
    let (stop, runner) = spawn_runner(
        fleet.worker("bench-peer", args.setup.concurrency),
        &wake,
        db,
    );
    wake.run_queued(db).await;
    fleet.drained().await?;
    let wall = begin.elapsed().as_secs_f64();
    let _ = stop.send(true);
    runner.await?;
    let completed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status = 'completed'")
        .fetch_one(db.pool())
        .await?;
    if completed != queued_before + args.jobs as i64 {
        return Err(format!("only {completed} runs completed").into());
    }
    let name = if engine == "sqlite" {
        "SQLite"
    } else {
        "PostgreSQL"
    };
    println!(
        "| TenantAtlas on {name} (1-policy run) | {} | {:.0} ({} in {wall:.1} s) |",
        p50_p99(latencies, 1),
        args.jobs as f64 / wall,
        args.jobs,
    );
    Ok(())
}
