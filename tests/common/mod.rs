//! Test harness: a fresh database per test (an SQLite file in a temp folder, or a new PostgreSQL
//! database), and the real server on a random port, talked to over HTTP like a browser would.

#![allow(dead_code)] // each test file uses a different part of the harness

mod api;
mod demo;
pub mod metrics;
mod runs;
pub mod schema;
mod serve;
pub mod takeover;

// Each test file uses some of these.
#[allow(unused_imports)]
pub use api::{Answer, Form, Refusal};
#[allow(unused_imports)]
pub use demo::DemoApp;
#[allow(unused_imports)]
pub use runs::{run_row, wait_run, RunRow};
#[allow(unused_imports)]
pub use serve::{serve_command, ServeProcess};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use std::sync::Arc;
use tenantatlas::server::auth::client_address::{IpRange, TrustedProxies};
use tenantatlas::server::auth::password::Checker;
use tenantatlas::server::auth::session::{SessionSettings, COOKIE, HOST_COOKIE};
use tenantatlas::server::auth::throttle::SignInThrottle;

use tenantatlas::domain::TenantExternalId;
use tenantatlas::graph_sim::{GraphSim, SimConfig, SimHandle};
use tenantatlas::server::engine::operation::Registry;
use tenantatlas::server::engine::runner::{self, WakeUp};
use tenantatlas::server::engine::worker::{CredentialsLoader, RunFailure, Worker};
use tenantatlas::server::graph::{
    ClientSecret, GraphAccess, GraphClient, GraphConfig, PolicySource, PolicyType,
    TenantCredentials,
};
use tenantatlas::server::state::{AppState, Settings};
use tenantatlas::server::tenants::keyring::KeyRing;
use tenantatlas::server::{db::Db, http, prepare, seed};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Which engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The engine's name in reports.
    pub fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        }
    }
}

/// The PostgreSQL server tests create their databases on (trust auth on these machines).
fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A migrated, empty database of its own.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    /// The SQLite folder (removed when dropped) or the PostgreSQL database.
    place: Place,
}

/// Where a test database lives.
enum Place {
    Folder(TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    /// A database on the server at `TEST_POSTGRES_ADMIN_URL` (or the local one), or an SQLite
    /// file in a temp folder.
    pub async fn create(backend: Backend) -> Self {
        Self::create_on(backend, &postgres_admin_url()).await
    }

    /// The same, with PostgreSQL databases created on the server of `admin_url` (any database
    /// on it; the benches take it as an option).
    pub async fn create_on(backend: Backend, admin_url: &str) -> Self {
        let (url, place) = match backend {
            Backend::Sqlite => {
                let dir = TempDir::new();
                let url = format!("sqlite://{}/test.db", dir.0.display());
                (url, Place::Folder(dir))
            }
            Backend::Postgres => {
                let name = format!("ta_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Db::connect(admin_url).await.expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let server = admin_url
                    .split('?')
                    .next()
                    .and_then(|url| url.rsplit_once('/'))
                    .map(|(server, _)| server)
                    .expect("the PostgreSQL URL has a database part");
                let url = format!("{server}/{name}");
                let place = Place::Postgres {
                    admin_url: admin_url.to_owned(),
                    name,
                };
                (url, place)
            }
        };
        let db = Db::connect(&url)
            .await
            .expect("connect to the test database");
        prepare(&db)
            .await
            .expect("migrations apply to an empty database");
        Self { db, url, place }
    }

    /// Closes the pool and removes the database at once. Tests leave theirs to
    /// `scripts/test.sh`; a bench's database is large, so it goes when the bench ends.
    pub async fn destroy(self) {
        self.db.close().await;
        if let Place::Postgres { admin_url, name } = self.place {
            let admin = Db::connect(&admin_url)
                .await
                .expect("connect to PostgreSQL");
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(admin.pool())
                .await
                .expect("drop the database");
            admin.close().await;
        }
    }
}

/// A running server with the demo data, on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Db,
    /// What the server's submits signal; a test that runs a worker passes it to the runner.
    pub wake: tenantatlas::server::engine::runner::WakeUp,
    pub http: reqwest::Client,
    /// The public URL the server was told browsers use (`Origin` of the test's calls).
    public_origin: String,
    _test_db: TestDb,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// The first demo tenant's external id.
pub const CONTOSO: &str = seed::DEMO_TENANTS[0].0;
/// The second demo tenant's external id.
pub const FABRIKAM: &str = seed::DEMO_TENANTS[1].0;
/// Owner of both demo tenants.
pub const ADMIN: &str = seed::DEMO_ADMIN_EMAIL;
/// Operator in Contoso only.
pub const OPERATOR: &str = "operator@contoso.example";
/// Readonly in Contoso only.
pub const READONLY: &str = "readonly@contoso.example";
/// Operator in Fabrikam only: a non-member of Contoso.
pub const OUTSIDER: &str = "operator@fabrikam.example";

/// How a test's server is set up; `Default` is the plain one.
pub struct Options {
    /// Sessions end after this long unused.
    pub idle: Duration,
    /// Sessions end this long after sign-in.
    pub max_age: Duration,
    /// A Graph client in the server's state (no worker runs in tests' servers).
    pub graph: Option<GraphAccess>,
    /// The reverse proxies whose X-Forwarded-For is believed, as `--trusted-proxy` takes them.
    pub trusted_proxies: &'static str,
    /// The public URL is https (the server itself still speaks plain http to the test).
    pub https: bool,
    /// Another password checker than one per core.
    pub checker: Option<Checker>,
    /// Other sign-in budgets than the defaults.
    pub throttle: Option<SignInThrottle>,
    /// The key ring that seals client secrets entered in the app (none: secrets are refused).
    pub secret_keys: Option<std::sync::Arc<KeyRing>>,
    /// The server was given its public URL (`--public-url`), which invitation links need.
    pub public_url: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            idle: Duration::from_secs(3600),
            max_age: Duration::from_secs(12 * 3600),
            graph: None,
            trusted_proxies: "",
            https: false,
            checker: None,
            throttle: None,
            secret_keys: None,
            public_url: true,
        }
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, Options::default()).await
    }

    /// A server whose sessions end after `idle` without use.
    pub async fn spawn_with_idle(backend: Backend, idle: Duration) -> Self {
        Self::spawn_with(
            backend,
            Options {
                idle,
                ..Options::default()
            },
        )
        .await
    }

    /// A server with a Graph client in its state (no worker runs in tests' servers).
    pub async fn spawn_with_graph(backend: Backend, graph: GraphAccess) -> Self {
        Self::spawn_with(
            backend,
            Options {
                graph: Some(graph),
                ..Options::default()
            },
        )
        .await
    }

    /// A server behind reverse proxies in these ranges (`--trusted-proxy` syntax).
    pub async fn spawn_behind_proxies(backend: Backend, ranges: &'static str) -> Self {
        Self::spawn_with(
            backend,
            Options {
                trusted_proxies: ranges,
                ..Options::default()
            },
        )
        .await
    }

    pub async fn spawn_with(backend: Backend, options: Options) -> Self {
        Self::serve(TestDb::create(backend).await, options).await
    }

    /// Seeds the demo data into `test_db` and serves it.
    pub async fn serve(test_db: TestDb, options: Options) -> Self {
        // Server logs show up in a failing test's output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
            .with_test_writer()
            .try_init();
        let db = test_db.db.clone();
        seed::seed_demo(&db).await.expect("seed demo data");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let scheme = if options.https { "https" } else { "http" };
        let public_origin = format!("{scheme}://{addr}");
        let trusted_proxies = options
            .trusted_proxies
            .split(',')
            .filter(|range| !range.is_empty())
            .map(|range| range.parse::<IpRange>().expect("a CIDR range"))
            .collect();
        let settings = Settings {
            public_origin: public_origin.clone(),
            public_url: options.public_url.then(|| public_origin.clone()),
            sessions: SessionSettings {
                idle: options.idle,
                max_age: options.max_age,
                secure: options.https,
            },
            trusted_proxies: TrustedProxies::new(trusted_proxies),
        };
        let mut state = AppState::new(
            db.clone(),
            http::leptos_options(&std::env::temp_dir(), addr),
            settings,
        );
        if let Some(graph) = options.graph {
            state = state.with_graph(graph);
        }
        if let Some(checker) = options.checker {
            state = state.with_password_checker(checker);
        }
        state = state.with_secret_keys(options.secret_keys);
        if let Some(throttle) = options.throttle {
            state = state.with_sign_in_throttle(throttle);
        }
        let wake = state.wake.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(http::serve(listener, state, async {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("http client");
        Self {
            addr,
            db,
            wake,
            http,
            public_origin,
            _test_db: test_db,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The public URL's origin, which the server accepts cross-site-checked POSTs from.
    pub fn origin(&self) -> String {
        self.public_origin.clone()
    }

    /// The database the server uses (for the CLI tests' binary).
    pub fn database_url(&self) -> &str {
        &self._test_db.url
    }

    /// Calls a server function anonymously, from our own origin, as the browser's form encoding does.
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.call_with(None, endpoint, form).await
    }

    /// Calls a server function with a session cookie (`name=value`, from [`TestApp::sign_in`]).
    pub async fn call_as(
        &self,
        cookie: &str,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.call_with(Some(cookie), endpoint, form).await
    }

    async fn call_with(
        &self,
        cookie: Option<&str>,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.request(cookie, endpoint, form)
            .send()
            .await
            .expect("server function request")
    }

    /// A server function request, ready to send (e.g. from spawned tasks).
    pub fn request(
        &self,
        cookie: Option<&str>,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(self.url(&format!("/api/{endpoint}")))
            .header("Origin", self.origin())
            .form(form);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        request
    }

    /// GETs a page, optionally with a session cookie.
    pub async fn get(&self, cookie: Option<&str>, path: &str) -> reqwest::Response {
        let mut request = self.http.get(self.url(path));
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        request.send().await.expect("page request")
    }

    /// Signs a demo user in and returns their session cookie as `name=value`.
    pub async fn sign_in(&self, email: &str) -> String {
        let response = self
            .call(
                "auth/sign-in",
                &[
                    ("email", email),
                    ("password", seed::DEMO_PASSWORD),
                    ("next", "/"),
                ],
            )
            .await;
        assert_eq!(response.status(), 200, "demo sign-in for {email}");
        session_cookie(&response).expect("sign-in sets the session cookie")
    }

    /// Counts the rows of a table (the tests' way to prove "nothing was written").
    pub async fn count(&self, table: &str) -> i64 {
        count(&self.db, table).await
    }

    /// Stops the server and removes its database ([`TestDb::destroy`]).
    pub async fn close(self) {
        drop(self._shutdown);
        self._test_db.destroy().await;
    }
}

/// The credentials the Graph simulator accepts for `tenant` (an external id).
pub fn creds(tenant: &str) -> TenantCredentials {
    creds_with_secret(tenant, "sim-secret")
}

/// Credentials for `tenant` with another secret (the simulator refuses any but its own).
pub fn creds_with_secret(tenant: &str, secret: &str) -> TenantCredentials {
    TenantCredentials {
        tenant_id: TenantExternalId::parse(tenant).expect("a tenant GUID"),
        client_id: "tenantatlas-test".into(),
        client_secret: ClientSecret::new(secret),
    }
}

/// A Graph simulator with `policies_per_tenant` policies in each tenant, and a client for it
/// with the default limits.
pub async fn sim_and_client(policies_per_tenant: usize) -> (SimHandle, GraphClient) {
    let sim = GraphSim::start(SimConfig {
        policies_per_tenant,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url))
        .expect("the client builds");
    (sim, client)
}

/// A runner working `worker`'s runs in the background as the server's does: it polls every
/// `poll` and wakes on `wake`. Send `true` to stop it, then await the task.
pub fn start_runner(
    worker: Worker,
    wake: &WakeUp,
    db: &Db,
    poll: Duration,
) -> (watch::Sender<bool>, JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(runner::run(worker, wake.clone(), db.clone(), poll, stopped));
    (stop, task)
}

/// A worker on `db` named `name` that captures through `client` as Contoso's app (the tests'
/// worker, driven one `try_execute_task` at a time).
pub fn sim_worker(db: &Db, client: &GraphClient, name: &str) -> Worker {
    let source: Arc<dyn PolicySource> = Arc::new(client.clone());
    let loader: CredentialsLoader =
        Arc::new(|_tenant| Box::pin(async { Ok::<_, RunFailure>(creds(CONTOSO)) }));
    Worker::new(db.clone(), Registry::standard(source), loader, name)
}

/// The session cookie a response sets, as `name=value` (`None` if it sets none).
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    session_set_cookie(response).and_then(|v| v.split(';').next().map(str::to_owned))
}

/// The whole `Set-Cookie` header of the session cookie, with its attributes.
pub fn session_set_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{COOKIE}=")) || v.starts_with(&format!("{HOST_COOKIE}=")))
        .map(str::to_owned)
}

/// Counts the rows of a table.
pub async fn count(db: &Db, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(db.pool())
        .await
        .expect("count rows")
}

/// How many connections to the test's PostgreSQL database listen for NOTIFYs (a listener's
/// connection keeps its LISTEN as its last statement until it is given back with UNLISTEN).
pub async fn listening_connections(db: &Db) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN %'",
    )
    .fetch_one(db.pool())
    .await
    .expect("count the listening connections")
}

/// Polls `condition` every `every` until it holds; fails the test saying "`what`" once
/// `deadline` has passed without it (a condition met late, on a loaded machine, still counts
/// if it holds at the check before the deadline).
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, every: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !condition().await {
        assert!(started.elapsed() < deadline, "{what}");
        tokio::time::sleep(every).await;
    }
}

/// Waits (20 s at most) until the simulator has answered a request with a 429.
pub async fn wait_until_throttled(sim: &SimHandle) {
    wait_until(
        "never throttled",
        Duration::from_secs(20),
        Duration::from_millis(20),
        || async { sim.counters().with_status(429) > 0 },
    )
    .await;
}

/// Makes the simulator answer every request `latency_ms` late (its other knobs as they are).
pub fn answer_after(sim: &SimHandle, latency_ms: u64) {
    let mut knobs = sim.knobs();
    knobs.latency_ms = latency_ms;
    sim.set_knobs(knobs);
}

/// A folder removed when the test ends.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!(
            "tenantatlas-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs each named `async fn(TestApp)` or `async fn(TestDb)` test once per database engine:
/// `both_backends!(TestApp: a, b)` makes `sqlite::a`, `postgres::a`, … so one `cargo nextest run`
/// shows every test on both engines. `both_backends!(local Fixture: a, b)` does the same with a
/// fixture of the test file, built by its `Fixture::start(backend)`.
#[macro_export]
macro_rules! both_backends {
    // A fixture of the test file itself, built by its `start(backend)`.
    (local $fixture:ident: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::$fixture::start(super::common::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::$fixture::start(super::common::Backend::Postgres).await).await
                }
            )*
        }
    };
    ($fixture:ident: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::$fixture::create_for(super::common::Backend::Sqlite).await).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::common::$fixture::create_for(super::common::Backend::Postgres).await).await
                }
            )*
        }
    };
}

// `create_for` is the constructor `both_backends!` calls on either fixture.
impl TestDb {
    pub async fn create_for(backend: Backend) -> Self {
        Self::create(backend).await
    }
}

impl TestApp {
    pub async fn create_for(backend: Backend) -> Self {
        Self::spawn(backend).await
    }
}

/// The database id of the tenant with this external id.
pub async fn tenant_id(db: &Db, external_id: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM tenants WHERE external_id = $1")
        .bind(external_id)
        .fetch_one(db.pool())
        .await
        .expect("tenant exists")
}

/// The database id of the user with this e-mail address.
pub async fn user_id(db: &Db, email: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(db.pool())
        .await
        .expect("user exists")
}

/// Adds `n` policies to a tenant's inventory (the demo seed's inventory may differ) and
/// returns their ids.
pub async fn insert_policies(db: &Db, tenant_external_id: &str, n: usize) -> Vec<i64> {
    let tenant_id = tenant_id(db, tenant_external_id).await;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id: i64 = sqlx::query_scalar::<_, i64>(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
             VALUES ($1, $2, 'compliance', $3, 'android', 0) RETURNING id",
        )
        .bind(tenant_id)
        .bind(format!("test-{}", uuid::Uuid::new_v4()))
        .bind(format!("Test policy {i}"))
        .fetch_one(db.pool())
        .await
        .expect("insert policy");
        ids.push(id);
    }
    ids
}

/// The simulator's compliance policies of the tenant `creds` names (at most `limit`), listed
/// through the real client and written to its inventory as a sync would. Returns (policy id,
/// graph id) pairs.
pub async fn insert_sim_compliance(
    db: &Db,
    client: &GraphClient,
    creds: &TenantCredentials,
    limit: usize,
) -> Vec<(i64, String)> {
    let tenant_id = tenant_id(db, creds.tenant_id.as_str()).await;
    let listed = client
        .list_policies(creds, PolicyType::Compliance)
        .await
        .unwrap();
    let mut policies = Vec::new();
    for listing in listed.into_iter().take(limit) {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
             VALUES ($1, $2, 'compliance', $3, $4, 0) RETURNING id",
        )
        .bind(tenant_id)
        .bind(&listing.graph_id)
        .bind(&listing.display_name)
        .bind(&listing.platform)
        .fetch_one(db.pool())
        .await
        .unwrap();
        policies.push((id, listing.graph_id));
    }
    policies
}

// Runs as the tests set them up: a backup set, a submit, a run with items in given outcomes.

/// Creates a backup set in `tenant` as `cookie` and returns its id.
pub async fn backup_set(app: &TestApp, cookie: &str, tenant: &str, name: &str) -> i64 {
    app.create_backup_set(cookie, tenant, name, "")
        .await
        .expect("the backup set is created")
        .id
}

/// Submits "add policies" for `ids` to backup set `set` of `tenant` and returns the run's id.
pub async fn submit(app: &TestApp, cookie: &str, tenant: &str, set: i64, ids: &[i64]) -> i64 {
    app.add_policies(cookie, tenant, set, ids, &[])
        .await
        .expect("the run is queued")
        .run_id
}

/// A Contoso run of `n` items, of which the first `succeeded` (by policy id) succeeded and the
/// next `failed` failed; the rest wait. Counters match, as the worker keeps them.
pub async fn run_with_items(
    app: &TestApp,
    cookie: &str,
    n: usize,
    succeeded: usize,
    failed: usize,
) -> i64 {
    let set = backup_set(app, cookie, CONTOSO, "Big run").await;
    let ids = insert_policies(&app.db, CONTOSO, n).await;
    let run = submit(app, cookie, CONTOSO, set, &ids).await;
    // The items, as the worker writes them when it claims the run.
    for id in &ids {
        sqlx::query(
            "INSERT INTO run_items (tenant_id, run_id, policy_id) \
             SELECT tenant_id, id, $2 FROM runs WHERE id = $1",
        )
        .bind(run)
        .bind(id)
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    for (outcome, range) in [
        ("succeeded", 0..succeeded),
        ("failed", succeeded..succeeded + failed),
    ] {
        for id in &ids[range] {
            sqlx::query("UPDATE run_items SET outcome = $1 WHERE run_id = $2 AND policy_id = $3")
                .bind(outcome)
                .bind(run)
                .bind(id)
                .execute(app.db.pool())
                .await
                .unwrap();
        }
    }
    sqlx::query(
        "UPDATE runs SET status = 'running', succeeded = $1, failed = $2, processed_items = $3 \
         WHERE id = $4",
    )
    .bind(succeeded as i64)
    .bind(failed as i64)
    .bind((succeeded + failed) as i64)
    .bind(run)
    .execute(app.db.pool())
    .await
    .unwrap();
    run
}

/// Runs a command of the binary against the database at `url`, with `stdin` as its standard
/// input (passwords and secrets are read from there).
pub fn run_binary(url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantatlas"))
        .args(["--database-url", url, "--log", "warn"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    // The binary may refuse its arguments before it reads standard input.
    let _ = child
        .stdin
        .take()
        .map(|mut pipe| pipe.write_all(stdin.as_bytes()));
    child.wait_with_output().unwrap()
}

/// Stores a snapshot of a policy as a capture would (the payload as given, its hash made up
/// from `hash_seed`) and returns its id.
pub async fn insert_snapshot(
    db: &Db,
    tenant_external_id: &str,
    policy_id: i64,
    payload: &Value,
    hash_seed: char,
    captured_at: i64,
) -> i64 {
    let tenant_id = tenant_id(db, tenant_external_id).await;
    sqlx::query_scalar(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(tenant_id)
    .bind(policy_id)
    .bind(hash_seed.to_string().repeat(64))
    .bind(payload.to_string())
    .bind(captured_at)
    .fetch_one(db.pool())
    .await
    .expect("insert snapshot")
}

/// One of each thing a Contoso page or server function can name, made as the operator would:
/// a backup set, a policy in the inventory, a queued run adding it to the set, and a stored
/// version of that policy. Ids as text, since they go into forms and paths.
pub struct Sample {
    pub set_id: String,
    pub policy_id: String,
    pub run_id: String,
    pub version_id: String,
}

impl Sample {
    pub async fn create(app: &TestApp) -> Self {
        let operator = app.sign_in(OPERATOR).await;
        let set = backup_set(app, &operator, CONTOSO, "Sample").await;
        let policy = insert_policies(&app.db, CONTOSO, 1).await[0];
        let run = submit(app, &operator, CONTOSO, set, &[policy]).await;
        let payload =
            serde_json::json!({"policyType": "compliance", "policy": {"passwordRequired": true}});
        let version = insert_snapshot(&app.db, CONTOSO, policy, &payload, 'e', 1_000).await;
        Self {
            set_id: set.to_string(),
            policy_id: policy.to_string(),
            run_id: run.to_string(),
            version_id: version.to_string(),
        }
    }

    /// The path of a page route of the router (`/t/{tenant}/…`) in Contoso, every placeholder
    /// naming this sample's thing, with the query a page needs to show something (a diff's two
    /// versions, the restore wizard's source).
    pub fn page_path(&self, route: &str) -> String {
        let mut path = route
            .replace("{tenant}", CONTOSO)
            .replace("{id}", self.id_for(route, "{id}"))
            .replace("{version}", &self.version_id);
        if path.ends_with("/diff") {
            path = format!("{path}?from={0}&to={0}", self.version_id);
        }
        // Without its source the wizard answers 422 with the reason.
        if path.ends_with("/restore/new") {
            path = format!("{path}?source=set-{}", self.set_id);
        }
        path
    }

    /// What a route's placeholder names here: `{version}` the version; `{id}` the run, the
    /// policy or the set, whichever the route is about.
    pub fn id_for(&self, route: &str, placeholder: &str) -> &str {
        match placeholder {
            "{version}" => &self.version_id,
            _ if route.contains("/runs/") => &self.run_id,
            _ if route.contains("/policies/") => &self.policy_id,
            _ => &self.set_id,
        }
    }
}
