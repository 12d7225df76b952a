//! PostgreSQL specifics: a larger pool (several instances and the worker share the server).

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::AnyPool;

use super::NativePool;

pub(super) static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

pub(super) async fn connect(
    options: AnyPoolOptions,
    url: &str,
) -> Result<(AnyPool, NativePool), sqlx::Error> {
    let pool = options.max_connections(20).connect(url).await?;
    let native = PgPoolOptions::new().max_connections(4).connect(url).await?;
    Ok((pool, NativePool::Postgres(native)))
}
