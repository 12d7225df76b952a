//! Test harness: a fresh database per test (an SQLite file in a temp folder, or a new PostgreSQL
//! database), and the real server on a random port, talked to over HTTP like a browser would.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::net::SocketAddr;
use std::path::PathBuf;

use tenantatlas::server::{db::Db, http, seed, state::AppState};

/// Which engine a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
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
    // Keeps the SQLite folder alive as long as the test.
    _dir: Option<TempDir>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> Self {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = TempDir::new();
                (format!("sqlite://{}/test.db", dir.0.display()), Some(dir))
            }
            Backend::Postgres => {
                let name = format!("ta_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Db::connect(&postgres_admin_url())
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(admin.pool())
                    .await
                    .expect("create test database");
                admin.close().await;
                let base = postgres_admin_url();
                let url = match base.rsplit_once('/') {
                    Some((server, _)) => format!("{server}/{name}"),
                    None => panic!("TEST_POSTGRES_ADMIN_URL has no database part"),
                };
                (url, None)
            }
        };
        let db = Db::connect(&url)
            .await
            .expect("connect to the test database");
        db.migrate()
            .await
            .expect("migrations apply to an empty database");
        Self { db, url, _dir: dir }
    }
}

/// A running server with the demo data, on its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub db: Db,
    pub http: reqwest::Client,
    _test_db: TestDb,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// The first demo tenant's external id.
pub const CONTOSO: &str = seed::DEMO_TENANTS[0].0;
/// The second demo tenant's external id.
pub const FABRIKAM: &str = seed::DEMO_TENANTS[1].0;

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        let test_db = TestDb::create(backend).await;
        let db = test_db.db.clone();
        seed::seed_demo(&db).await.expect("seed demo data");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let site_root = std::env::temp_dir();
        let state = AppState {
            db: db.clone(),
            leptos_options: http::leptos_options(&site_root, addr),
        };
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
            http,
            _test_db: test_db,
            _shutdown: tx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Calls a server function the way the browser's form encoding does.
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/{endpoint}")))
            .form(form)
            .send()
            .await
            .expect("server function request")
    }

    /// Counts the rows of a table (the tests' way to prove "nothing was written").
    pub async fn count(&self, table: &str) -> i64 {
        count(&self.db, table).await
    }
}

/// Counts the rows of a table.
pub async fn count(db: &Db, table: &str) -> i64 {
    use sqlx::Row;
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
        .fetch_one(db.pool())
        .await
        .expect("count rows")
        .try_get("n")
        .expect("count column")
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
/// shows every test on both engines.
#[macro_export]
macro_rules! both_backends {
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
