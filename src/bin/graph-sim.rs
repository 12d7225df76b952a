//! The Graph simulator as a standalone server, to point a server started without `--demo` or
//! `sync-inventory` at (tests, benchmarks and `serve --demo` start it in-process instead):
//! `cargo run --bin graph-sim -- --policies 2000 --latency-ms 100`.
//! Knobs can be changed while it runs: `curl -X POST localhost:4010/_sim/knobs -d '{"rate_503":0.1}'
//! -H 'content-type: application/json'`; `GET /_sim/counters` returns the request log, and
//! `POST /_sim/mutate` changes policies as admins do in Intune (`docs/graph-simulator.md`).

use std::net::SocketAddr;

use clap::Parser;
use tenantatlas::graph_sim::{GraphSim, Knobs, SimConfig, MAX_POLICIES_PER_TENANT};

/// Command-line options; every knob can also be changed at run time through `/_sim/knobs`.
#[derive(Debug, Parser)]
#[command(
    name = "graph-sim",
    about = "A Microsoft Graph (Intune) simulator on 127.0.0.1"
)]
struct Args {
    /// Address to listen on; only 127.0.0.1 is accepted.
    #[arg(long, env = "GRAPH_SIM_ADDR", default_value = "127.0.0.1:4010")]
    addr: SocketAddr,
    /// Seed of the fake tenants.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Policies per tenant, spread over the four policy types.
    #[arg(long, default_value_t = 200)]
    policies: usize,
    /// The client secret the token endpoint accepts.
    #[arg(long, env = "GRAPH_SIM_CLIENT_SECRET", default_value = "sim-secret")]
    client_secret: String,
    /// Fixed latency of every Graph answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra random latency, up to this much.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Requests per app per tenant per window before 429 (0 disables throttling).
    #[arg(long, default_value_t = 1_000)]
    throttle_limit: u32,
    /// The throttle window.
    #[arg(long, default_value_t = 20_000)]
    throttle_window_ms: u64,
    /// Share of requests answered 503.
    #[arg(long, default_value_t = 0.0)]
    rate_503: f64,
    /// Share of requests answered 404.
    #[arg(long, default_value_t = 0.0)]
    rate_404: f64,
    /// Share of requests answered with a malformed body.
    #[arg(long, default_value_t = 0.0)]
    rate_malformed: f64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let args = Args::parse();
    if args.addr.ip() != std::net::Ipv4Addr::LOCALHOST {
        eprintln!(
            "graph-sim only listens on 127.0.0.1, not {}",
            args.addr.ip()
        );
        return std::process::ExitCode::FAILURE;
    }
    if args.policies > MAX_POLICIES_PER_TENANT {
        eprintln!("at most {MAX_POLICIES_PER_TENANT} policies per tenant");
        return std::process::ExitCode::FAILURE;
    }
    let knobs = Knobs {
        latency_ms: args.latency_ms,
        latency_jitter_ms: args.jitter_ms,
        throttle_limit: args.throttle_limit,
        throttle_window_ms: args.throttle_window_ms,
        rate_503: args.rate_503,
        rate_404: args.rate_404,
        rate_malformed: args.rate_malformed,
        ..Knobs::default()
    };
    let config = SimConfig {
        port: args.addr.port(),
        seed: args.seed,
        policies_per_tenant: args.policies,
        client_secret: args.client_secret,
        knobs,
    };
    let sim = match GraphSim::start(config).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("graph-sim could not listen on {}: {error}", args.addr);
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(login = %sim.login_url, graph = %sim.graph_url, "graph simulator listening");
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!(
        graph_requests = sim.counters().graph_requests(),
        "graph simulator stopped"
    );
    std::process::ExitCode::SUCCESS
}
