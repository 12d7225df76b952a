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
use tenantatlas::server::graph::write::{DirectoryKind, PolicyWriter, WriteFuture, WriteRequest};
use tenantatlas::server::graph::{
    ClientSecret, GraphClient, GraphConfig, GraphFuture, LimiterConfig, RetryPolicy,
    TenantCredentials, WriteBudget,
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

/// What a [`HookedWriter`] runs before each write, e.g. a stop the test holds the write at or a
/// knob it turns once the write is under way.
pub trait BeforeWrite: Send + Sync {
    /// Runs before `request` is sent through `client` (the wrapped writer); the write goes on
    /// when it is done.
    fn before_write<'s>(
        &'s self,
        client: &'s dyn PolicyWriter,
        creds: &'s TenantCredentials,
        request: &'s WriteRequest<'_>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>>;
}

/// The writes of `client` (the Graph client unless the test wraps another writer) with `hook`
/// run before each one: the tests that need a write held, delayed or its circumstances changed
/// share the delegation, and say only what their hook does.
pub struct HookedWriter<H, W = GraphClient> {
    pub client: W,
    pub hook: H,
}

impl<H: BeforeWrite, W: PolicyWriter> PolicyWriter for HookedWriter<H, W> {
    fn object_exists<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        kind: DirectoryKind,
        id: &'a str,
    ) -> GraphFuture<'a, bool> {
        PolicyWriter::object_exists(&self.client, creds, kind, id)
    }

    fn write_policy_reporting<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        request: WriteRequest<'a>,
    ) -> WriteFuture<'a> {
        Box::pin(async move {
            self.hook.before_write(&self.client, creds, &request).await;
            PolicyWriter::write_policy_reporting(&self.client, creds, request).await
        })
    }
}

/// A hook the test keeps a handle on (to release a stop, say) runs as the hook itself.
impl<H: BeforeWrite + ?Sized> BeforeWrite for std::sync::Arc<H> {
    fn before_write<'s>(
        &'s self,
        client: &'s dyn PolicyWriter,
        creds: &'s TenantCredentials,
        request: &'s WriteRequest<'_>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>> {
        H::before_write(self, client, creds, request)
    }
}

/// `method` on `{base}/{path}` (path relative to the simulator, e.g. `beta/groups`) with `body`
/// as JSON: the status and the answer's JSON (null when it has none).
pub async fn send(
    sim: &SimHandle,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (reqwest::StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}/{path}", sim.base_url))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Holds each write for a while before it is sent.
pub struct Delay(pub Duration);

impl BeforeWrite for Delay {
    fn before_write<'s>(
        &'s self,
        _client: &'s dyn PolicyWriter,
        _creds: &'s TenantCredentials,
        _request: &'s WriteRequest<'_>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>> {
        Box::pin(tokio::time::sleep(self.0))
    }
}
