//! PostgreSQL specifics: a larger pool (several instances and the worker share the server).

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::AnyPool;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

pub(super) async fn connect(options: AnyPoolOptions, url: &str) -> Result<AnyPool, sqlx::Error> {
    options.max_connections(20).connect(url).await
}
