//! Benchmark: captures policies through the real client against an in-process simulator with
//! Intune's throttle enforced, and reports the achieved request rate as a share of the ceiling
//! and the share of 429 answers. `cargo run --release --bin bench-graph -- --policies 2000`.

use std::collections::{BTreeMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tenantatlas::domain::TenantExternalId;
use tenantatlas::graph_sim::{GraphSim, Kind, Knobs, SimConfig};
use tenantatlas::server::graph::{
    CaptureOptions, ClientSecret, GraphClient, GraphConfig, LimiterConfig, PolicyType,
    TenantCredentials,
};

/// Benchmark options; the defaults are the scenario.
#[derive(Debug, Parser)]
#[command(name = "bench-graph")]
struct Args {
    /// Policies to capture (spread over the four types).
    #[arg(long, default_value_t = 2_000)]
    policies: usize,
    /// Simulated Graph latency.
    #[arg(long, default_value_t = 100)]
    latency_ms: u64,
    /// Concurrent capture tasks (the limiter decides how many requests are really in flight).
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Client limiter: requests per second (default: the client's default).
    #[arg(long)]
    rate: Option<u32>,
    /// Client limiter: burst.
    #[arg(long)]
    burst: Option<u32>,
    /// Client limiter: requests in flight.
    #[arg(long)]
    in_flight: Option<usize>,
}

const TENANT: &str = "6f1c2a3b-0000-4000-8000-00000000c0de";
const THROTTLE_LIMIT: u32 = 1_000;
const THROTTLE_WINDOW_MS: u64 = 20_000;

fn policy_type(kind: Kind) -> PolicyType {
    match kind {
        Kind::ConfigurationPolicy => PolicyType::SettingsCatalog,
        Kind::DeviceConfiguration => PolicyType::DeviceConfiguration,
        Kind::CompliancePolicy => PolicyType::Compliance,
        Kind::GroupPolicyConfiguration => PolicyType::AdministrativeTemplate,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let knobs = Knobs {
        latency_ms: args.latency_ms,
        throttle_limit: THROTTLE_LIMIT,
        throttle_window_ms: THROTTLE_WINDOW_MS,
        ..Knobs::default()
    };
    let sim = GraphSim::start(SimConfig {
        policies_per_tenant: args.policies,
        knobs,
        ..SimConfig::default()
    })
    .await?;
    let mut config = GraphConfig::new(&sim.login_url, &sim.graph_url);
    let defaults = LimiterConfig::default();
    config.limits = LimiterConfig {
        requests_per_second: args
            .rate
            .and_then(NonZeroU32::new)
            .unwrap_or(defaults.requests_per_second),
        burst: args
            .burst
            .and_then(NonZeroU32::new)
            .unwrap_or(defaults.burst),
        max_in_flight: args.in_flight.unwrap_or(defaults.max_in_flight),
    };
    println!(
        "limiter: {}/s, burst {}, {} in flight; simulator: {} ms latency, {} requests / {} s",
        config.limits.requests_per_second,
        config.limits.burst,
        config.limits.max_in_flight,
        args.latency_ms,
        THROTTLE_LIMIT,
        THROTTLE_WINDOW_MS / 1000
    );
    let client = GraphClient::new(config)?;
    let creds = Arc::new(TenantCredentials {
        tenant_id: TenantExternalId::parse(TENANT)?,
        client_id: "bench".into(),
        client_secret: ClientSecret::new("sim-secret"),
    });
    let queue: Arc<Mutex<VecDeque<(PolicyType, String)>>> = Arc::new(Mutex::new(
        sim.policies(TENANT)
            .into_iter()
            .map(|p| (policy_type(p.kind), p.id))
            .collect(),
    ));
    let options = CaptureOptions {
        include_assignments: true,
        include_scope_tags: true,
    };

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..args.workers.max(1) {
        let (client, creds, queue) = (client.clone(), Arc::clone(&creds), Arc::clone(&queue));
        tasks.spawn(async move {
            let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((policy_type, id)) = next else { break };
                let outcome = match client
                    .capture_policy(&creds, policy_type, &id, options)
                    .await
                {
                    Ok(_) => "captured".to_owned(),
                    Err(error) => error.reason_code().as_str().to_owned(),
                };
                *outcomes.entry(outcome).or_default() += 1;
            }
            outcomes
        });
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(result) = tasks.join_next().await {
        for (outcome, count) in result? {
            *outcomes.entry(outcome).or_default() += count;
        }
    }
    let elapsed = started.elapsed();

    let counters = sim.counters();
    let graph = counters.graph_requests();
    let throttled = counters.with_status(429);
    let ceiling = f64::from(THROTTLE_LIMIT) / (THROTTLE_WINDOW_MS as f64 / 1000.0);
    let achieved = graph as f64 / elapsed.as_secs_f64();
    let busiest = counters.max_graph_requests_in(Duration::from_millis(THROTTLE_WINDOW_MS));
    println!("outcomes: {outcomes:?}");
    println!(
        "graph requests: {graph} in {:.1} s ({} token requests)",
        elapsed.as_secs_f64(),
        counters.token_requests()
    );
    println!(
        "achieved: {achieved:.1} requests/s = {:.1} % of the {ceiling:.0}/s ceiling",
        100.0 * achieved / ceiling
    );
    println!(
        "429 answers: {throttled} = {:.2} % of requests; busiest {} s window: {busiest} requests",
        100.0 * throttled as f64 / graph.max(1) as f64,
        THROTTLE_WINDOW_MS / 1000
    );
    Ok(())
}
