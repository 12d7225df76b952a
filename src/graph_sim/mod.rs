//! The Graph simulator: a small axum server that speaks enough of Microsoft Graph for the real
//! client, and standard Graph clients, to back up the four Intune policy families from it: the
//! token endpoint and its OpenID discovery document, the four policy collections with their
//! assignments, settings (`$expand=settingDefinitions`), definition values and presentation
//! values, compliance actions, groups, assignment filters and scope tags; `$select`, `$expand`,
//! `$top`, `@odata.nextLink` paging, `@odata.context`, JSON batching, and Graph's error bodies.
//! It accepts the writes a restore makes (creates, updates, settings, definition values,
//! compliance actions, `assign`), validated as Graph validates them. Fake tenants are
//! deterministic; knobs set latency, Intune's throttling (writes have a budget of their own)
//! and faults; mutations change policies while it runs ([`Mutation`]). Tests start it in-process on a random port; the `graph-sim` binary serves it
//! for the demo and the benchmark. It only ever binds 127.0.0.1. `docs/graph-simulator.md`
//! lists every route.

mod counters;
mod knobs;
mod mutation;
mod resources;
mod routes;
mod schema;
mod stored;
mod tenant;
mod writes;

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use counters::{RequestRecord, SimCounters};
pub use knobs::{AppSetup, Fault, Knobs, TokenFault, TokenUnavailable, APP_ROLES};
pub use mutation::{Mutation, MutationReport, Renamed};
pub use resources::{MASKED_SECRET, MAX_PAGE_SIZE};
pub use stored::Stored;
pub use tenant::{Directory, Kind, SimPolicy, CHILD_PAGE_SIZE};
pub use writes::READ_ONLY;

use tenant::FakeTenant;

/// How a simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// Seed of every fake tenant.
    pub seed: u64,
    /// Policies per tenant (spread over the four types), up to 50,000.
    pub policies_per_tenant: usize,
    /// The only client secret the token endpoint accepts.
    pub client_secret: String,
    pub knobs: Knobs,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            port: 0,
            seed: 42,
            policies_per_tenant: 200,
            client_secret: "sim-secret".into(),
            knobs: Knobs::default(),
        }
    }
}

/// The largest tenant the simulator generates.
pub const MAX_POLICIES_PER_TENANT: usize = 50_000;

/// Entry point: `GraphSim::start(config)`.
pub struct GraphSim;

/// A running simulator; dropping it stops the server.
pub struct SimHandle {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// What the client uses as its login base (the tenant id and `/oauth2/v2.0/token` follow).
    pub login_url: String,
    /// What the client uses as its Graph base (`…/beta`).
    pub graph_url: String,
    pub addr: SocketAddr,
    state: Arc<SimState>,
    server: JoinHandle<()>,
}

/// A token the simulator issued.
struct IssuedToken {
    tenant: String,
    client_id: String,
    /// Its `roles` claim: what the app was granted when the token was issued.
    roles: Vec<String>,
    expires_at: Instant,
}

/// Everything the handlers share.
struct SimState {
    seed: u64,
    policies_per_tenant: usize,
    client_secret: String,
    graph_url: String,
    started: Instant,
    knobs: RwLock<Arc<Knobs>>,
    tokens: Mutex<HashMap<String, IssuedToken>>,
    tenants: Mutex<HashMap<String, Arc<FakeTenant>>>,
    /// Arrival times of accepted requests per (tenant, app), for the sliding-window throttle.
    windows: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
    /// The same for writes only, for the write throttle.
    write_windows: Mutex<HashMap<(String, String), VecDeque<Instant>>>,
    /// How often a counted fault (`Throttle`, `Unavailable`) has fired, by policy id.
    fault_hits: Mutex<HashMap<String, u32>>,
    /// When a timed fault (`ThrottleWithoutRetryAfter`) first fired, by policy id.
    fault_since: Mutex<HashMap<String, Instant>>,
    /// How often `token_unavailable` has fired (reset by `SimHandle::set_knobs`).
    token_fault_hits: Mutex<u32>,
    /// The request log: the last [`REQUEST_LOG_CAPACITY`] requests, oldest first.
    log: Mutex<VecDeque<RequestRecord>>,
}

/// How many requests the request log keeps: the oldest record is dropped when a new one would
/// exceed it, so a long-running simulator (`serve --demo`, `graph-sim`) does not grow without
/// bound (a record without a body takes a few hundred bytes). It holds the largest benchmark's
/// run, a worker's 10,000 items (67,956 Graph requests, `docs/benchmarks.md`), whose requests
/// are counted from it.
pub const REQUEST_LOG_CAPACITY: usize = 100_000;

/// Locks a mutex, carrying on with the data if a handler panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    fn knobs(&self) -> Arc<Knobs> {
        Arc::clone(&self.knobs.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn tenant(&self, tenant_id: &str) -> Arc<FakeTenant> {
        let mut tenants = lock(&self.tenants);
        Arc::clone(
            tenants
                .entry(tenant_id.to_owned())
                .or_insert_with(|| self.generate(tenant_id)),
        )
    }

    fn generate(&self, tenant_id: &str) -> Arc<FakeTenant> {
        Arc::new(FakeTenant::generate(
            self.seed,
            tenant_id,
            self.policies_per_tenant,
        ))
    }

    /// Replaces a tenant by `edit(tenant)`; false when the edit finds nothing to change.
    fn edit_tenant(
        &self,
        tenant_id: &str,
        edit: impl FnOnce(&FakeTenant) -> Option<FakeTenant>,
    ) -> bool {
        let mut tenants = lock(&self.tenants);
        let current = tenants
            .entry(tenant_id.to_owned())
            .or_insert_with(|| self.generate(tenant_id));
        match edit(current) {
            Some(edited) => {
                *current = Arc::new(edited);
                true
            }
            None => false,
        }
    }

    /// Replaces a tenant by what `write` makes of it (nothing when it gives `None`) and returns
    /// the write's answer.
    fn write_tenant<T>(
        &self,
        tenant_id: &str,
        write: impl FnOnce(&FakeTenant) -> (Option<FakeTenant>, T),
    ) -> T {
        let mut tenants = lock(&self.tenants);
        let current = tenants
            .entry(tenant_id.to_owned())
            .or_insert_with(|| self.generate(tenant_id));
        let (edited, answer) = write(current);
        if let Some(edited) = edited {
            *current = Arc::new(edited);
        }
        answer
    }

    /// `http://127.0.0.1:<port>`, the base of every route.
    fn base_url(&self) -> &str {
        self.graph_url.trim_end_matches("/beta")
    }

    fn record(
        &self,
        arrival: Instant,
        method: &str,
        endpoint: String,
        (path, query): (&str, &str),
        status: u16,
        body: Option<serde_json::Value>,
    ) {
        let at_ms = arrival
            .saturating_duration_since(self.started)
            .as_secs_f64()
            * 1000.0;
        let mut log = lock(&self.log);
        while log.len() >= REQUEST_LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(RequestRecord {
            at_ms,
            method: method.to_owned(),
            endpoint,
            path: path.to_owned(),
            query: query.to_owned(),
            status,
            body,
        });
    }

    /// Applies a mutation (see [`Mutation`]) to its tenant.
    fn mutate(&self, mutation: &Mutation) -> MutationReport {
        let tenant_id = mutation.tenant.to_ascii_lowercase();
        let candidates: Vec<String> = match &mutation.policies {
            Some(ids) => ids.clone(),
            None => self
                .tenant(&tenant_id)
                .policies
                .iter()
                .map(|p| p.id.clone())
                .collect(),
        };
        let mut next = candidates.into_iter();
        let mut report = MutationReport::default();
        let mut changed = 0;
        while changed < mutation.change_settings {
            let Some(id) = next.next() else { break };
            if self.edit_tenant(&tenant_id, |t| t.with_changed_settings(&id)) {
                report.settings_changed.push(id);
                changed += 1;
            }
        }
        if mutation.rename {
            for id in next.by_ref() {
                let Some(policy) = self
                    .tenant(&tenant_id)
                    .policies
                    .iter()
                    .find(|p| p.id == id)
                    .cloned()
                else {
                    continue;
                };
                let name = format!("{} (renamed)", policy.name);
                if self.edit_tenant(&tenant_id, |t| t.with_renamed(&id, &name)) {
                    report.renamed = Some(Renamed { id, name });
                    break;
                }
            }
        }
        if mutation.add_assignment {
            for id in next.by_ref() {
                if self.edit_tenant(&tenant_id, |t| t.with_added_assignment(&id)) {
                    report.assignment_added = Some(id);
                    break;
                }
            }
        }
        if mutation.delete {
            for id in next.by_ref() {
                if self.edit_tenant(&tenant_id, |t| t.without(&id)) {
                    report.deleted = Some(id);
                    break;
                }
            }
        }
        report
    }
}

impl GraphSim {
    /// Binds 127.0.0.1 and serves until the handle is dropped.
    pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, config.port)))
                .await?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let graph_url = format!("{base_url}/beta");
        let state = Arc::new(SimState {
            seed: config.seed,
            policies_per_tenant: config.policies_per_tenant.min(MAX_POLICIES_PER_TENANT),
            client_secret: config.client_secret,
            graph_url: graph_url.clone(),
            started: Instant::now(),
            knobs: RwLock::new(Arc::new(config.knobs)),
            tokens: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            windows: Mutex::new(HashMap::new()),
            write_windows: Mutex::new(HashMap::new()),
            fault_hits: Mutex::new(HashMap::new()),
            fault_since: Mutex::new(HashMap::new()),
            token_fault_hits: Mutex::new(0),
            log: Mutex::new(VecDeque::new()),
        });
        let app = routes::router(Arc::clone(&state));
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "graph simulator stopped");
            }
        });
        Ok(SimHandle {
            login_url: base_url.clone(),
            base_url,
            graph_url,
            addr,
            state,
            server,
        })
    }
}

impl SimHandle {
    /// A copy of the request log: the last [`REQUEST_LOG_CAPACITY`] requests, oldest first.
    pub fn counters(&self) -> SimCounters {
        SimCounters {
            requests: lock(&self.state.log).iter().cloned().collect(),
        }
    }

    /// Forgets every recorded request (and every counted fault hit).
    pub fn reset_counters(&self) {
        lock(&self.state.log).clear();
        lock(&self.state.fault_hits).clear();
        lock(&self.state.fault_since).clear();
    }

    /// The knobs in force.
    pub fn knobs(&self) -> Knobs {
        self.state.knobs().as_ref().clone()
    }

    /// Replaces the knobs; in-flight requests keep the ones they started with.
    pub fn set_knobs(&self, knobs: Knobs) {
        *self.state.knobs.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(knobs);
        *lock(&self.state.token_fault_hits) = 0;
    }

    /// Forces `fault` on every request touching policy `graph_id`.
    pub fn set_fault(&self, graph_id: &str, fault: Fault) {
        let mut knobs = self.knobs();
        knobs.faults.insert(graph_id.to_owned(), fault);
        self.set_knobs(knobs);
    }

    /// Sets up tenant `tenant_id`'s app registration (permissions, consent, token errors).
    pub fn set_app(&self, tenant_id: &str, app: AppSetup) {
        let mut knobs = self.knobs();
        knobs
            .apps
            .retain(|tenant, _| !tenant.eq_ignore_ascii_case(tenant_id));
        knobs.apps.insert(tenant_id.to_ascii_lowercase(), app);
        self.set_knobs(knobs);
    }

    /// Invalidates every issued token, as a secret rotation or revocation would.
    pub fn revoke_tokens(&self) {
        lock(&self.state.tokens).clear();
    }

    /// The fake policies of a tenant, as the simulator serves them.
    pub fn policies(&self, tenant_id: &str) -> Vec<SimPolicy> {
        self.state.tenant(tenant_id).policies.clone()
    }

    /// Renames a policy and moves its last-modified time forward, as an edit in Intune does;
    /// false if the tenant has no such policy.
    pub fn rename_policy(&self, tenant_id: &str, graph_id: &str, name: &str) -> bool {
        self.state
            .edit_tenant(tenant_id, |tenant| tenant.with_renamed(graph_id, name))
    }

    /// Changes one setting of a policy and moves its `version` and last-modified time on, as a
    /// settings edit in Intune does; false if the tenant has no such policy.
    pub fn change_settings(&self, tenant_id: &str, graph_id: &str) -> bool {
        self.state
            .edit_tenant(tenant_id, |tenant| tenant.with_changed_settings(graph_id))
    }

    /// Replaces the settings of settings catalog policy `graph_id` by `settings` (each as its
    /// `settings` endpoint lists it, a secret with its value as Intune holds it) and moves its
    /// last-modified time on, as a settings edit in Intune does: for a test that needs a policy
    /// of a shape the generated tenant has none of. False if there is no such policy.
    pub fn set_settings(
        &self,
        tenant_id: &str,
        graph_id: &str,
        settings: Vec<serde_json::Value>,
    ) -> bool {
        self.state.edit_tenant(tenant_id, |tenant| {
            let written = tenant.with_written(Kind::ConfigurationPolicy, graph_id, |_, stored| {
                stored.children = settings;
                Ok::<(), std::convert::Infallible>(())
            });
            written?.ok()
        })
    }

    /// Assigns a policy to one more of the tenant's groups; false if there is no such policy
    /// or it already targets every group.
    pub fn add_assignment(&self, tenant_id: &str, graph_id: &str) -> bool {
        self.state
            .edit_tenant(tenant_id, |tenant| tenant.with_added_assignment(graph_id))
    }

    /// Applies a [`Mutation`]: what `POST /_sim/mutate` does.
    pub fn mutate(&self, mutation: &Mutation) -> MutationReport {
        self.state.mutate(mutation)
    }

    /// The tenant's groups, as `GET /groups` lists them.
    pub fn groups(&self, tenant_id: &str) -> Vec<Directory> {
        self.state.tenant(tenant_id).groups.clone()
    }

    /// The tenant's assignment filters.
    pub fn assignment_filters(&self, tenant_id: &str) -> Vec<Directory> {
        self.state.tenant(tenant_id).filters.clone()
    }

    /// The tenant's scope tags.
    pub fn scope_tags(&self, tenant_id: &str) -> Vec<Directory> {
        self.state.tenant(tenant_id).scope_tags.clone()
    }

    /// Refuses (or accepts again) every Graph write: the `reject_writes` knob.
    pub fn set_reject_writes(&self, reject: bool) {
        let mut knobs = self.knobs();
        knobs.reject_writes = reject;
        self.set_knobs(knobs);
    }

    /// A policy as its get endpoint returns it, with its `assignments`, its `settings` or
    /// `definitionValues` (each with its `definition` and `presentationValues`) and its
    /// `scheduledActionsForRule` (with their actions) inline; `None` if there is none.
    pub fn policy_json(&self, tenant_id: &str, graph_id: &str) -> Option<serde_json::Value> {
        let tenant = self.state.tenant(tenant_id);
        let policy = tenant.policies.iter().find(|p| p.id == graph_id)?;
        let content = Stored::of_generated_or_stored(policy);
        let mut json = policy.to_json();
        if let serde_json::Value::Object(fields) = &mut json {
            fields.insert("assignments".into(), content.assignments.into());
            match policy.kind {
                Kind::ConfigurationPolicy => {
                    fields.insert("settings".into(), content.children.into());
                }
                Kind::GroupPolicyConfiguration => {
                    fields.insert("definitionValues".into(), content.children.into());
                }
                Kind::CompliancePolicy => {
                    fields.insert("scheduledActionsForRule".into(), content.rules.into());
                }
                Kind::DeviceConfiguration => {}
            }
        }
        Some(json)
    }

    /// Deletes a group, as an admin deleting it in Entra ID would (assignments to it stay);
    /// false if there is none.
    pub fn remove_group(&self, tenant_id: &str, group_id: &str) -> bool {
        self.state
            .edit_tenant(tenant_id, |tenant| tenant.without_group(group_id))
    }

    /// Deletes a policy, as an admin deleting it in Intune would; false if there is none.
    pub fn remove_policy(&self, tenant_id: &str, graph_id: &str) -> bool {
        self.state
            .edit_tenant(tenant_id, |tenant| tenant.without(graph_id))
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_request_log_keeps_the_last_requests_up_to_its_capacity() {
        let sim = GraphSim::start(SimConfig {
            policies_per_tenant: 0,
            ..SimConfig::default()
        })
        .await
        .expect("the simulator starts");
        for i in 0..=REQUEST_LOG_CAPACITY {
            sim.state.record(
                Instant::now(),
                "GET",
                format!("r{i}"),
                ("/beta/groups", ""),
                200,
                None,
            );
        }
        let requests = sim.counters().requests;
        assert_eq!(requests.len(), REQUEST_LOG_CAPACITY);
        assert_eq!(requests[0].endpoint, "r1", "the oldest is dropped");
        assert_eq!(
            requests[REQUEST_LOG_CAPACITY - 1].endpoint,
            format!("r{REQUEST_LOG_CAPACITY}")
        );
    }
}
