//! What the tests that talk to the Graph simulator directly share: starting it, a client
//! configured for fast tests, credentials and a raw token.

#![allow(dead_code)] // each test file uses a different part

pub mod mock;
pub mod redirect;

use std::num::NonZeroU32;
use std::time::Duration;

use serde_json::Value;
use tenantatlas::domain::TenantExternalId;
use tenantatlas::graph_sim::{GraphSim, Knobs, SimConfig, SimHandle};
use tenantatlas::server::graph::{
    ClientSecret, GraphClient, GraphConfig, LimiterConfig, RetryPolicy, TenantCredentials,
    WriteBudget,
};

/// The simulated tenant the tests use (the demo's Contoso).
pub const TENANT: &str = "6f1c2a3b-0000-4000-8000-00000000c0de";
/// The client secret the simulator accepts.
pub const SECRET: &str = "sim-secret";

pub fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).expect("non-zero")
}

/// A simulator with `policies` policies per tenant, behaving as `knobs` say.
pub async fn start_sim(policies: usize, knobs: Knobs) -> SimHandle {
    GraphSim::start(SimConfig {
        policies_per_tenant: policies,
        knobs,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// The app's credentials for [`TENANT`] with `secret`.
pub fn creds_with(secret: &str) -> TenantCredentials {
    TenantCredentials {
        tenant_id: TenantExternalId::parse(TENANT).expect("valid tenant id"),
        client_id: "tenantatlas-app".into(),
        client_secret: ClientSecret::new(secret),
    }
}

/// Fast retries and generous read and write budgets, so fault tests take milliseconds.
pub fn fast_config(sim: &SimHandle) -> GraphConfig {
    fast_config_for(&sim.login_url, &sim.graph_url)
}

/// [`fast_config`] for any token endpoint and Graph base.
pub fn fast_config_for(login_url: &str, graph_url: &str) -> GraphConfig {
    let mut config = GraphConfig::new(login_url, graph_url);
    config.request_timeout = Duration::from_secs(5);
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        max_retry_after: Duration::from_secs(5),
        throttled_delay: Duration::from_millis(50),
    };
    config.limits = LimiterConfig {
        requests_per_second: nz(1_000),
        burst: nz(100),
        max_in_flight: 16,
    };
    config.write_budget = WriteBudget {
        writes_per_second: nz(1_000),
        burst: nz(100),
    };
    config
}

/// A client with [`fast_config`].
pub fn fast_client(sim: &SimHandle) -> GraphClient {
    GraphClient::new(fast_config(sim)).expect("client builds")
}

/// A client-credentials token, as any client gets one.
pub async fn token(sim: &SimHandle) -> String {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/{TENANT}/oauth2/v2.0/token", sim.login_url))
        .form(&[
            ("client_id", "any-client"),
            ("client_secret", SECRET),
            ("grant_type", "client_credentials"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token JSON");
    answer["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}
