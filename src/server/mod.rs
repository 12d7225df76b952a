//! Everything that only runs on the server: configuration, database, HTTP wiring and the
//! services behind the server functions.

pub mod backup_sets;
pub mod config;
pub mod db;
pub mod error;
pub mod graph;
pub mod http;
pub mod runs;
pub mod sanitize;
pub mod seed;
pub mod state;
pub mod tenants;

use config::{Cli, Command, ServeArgs};
use db::Db;
use state::AppState;

/// Why the binary could not start or finish its command.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Runs one CLI command to its end.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    let db = Db::connect(&cli.database_url).await?;
    db.migrate().await?;
    match cli.command {
        Command::Migrate => tracing::info!("migrations applied"),
        Command::SeedDemo => {
            let created = seed::seed_demo(&db).await?;
            tracing::info!(created, "demo data ready");
        }
        Command::Serve(args) => serve(db, args).await?,
    }
    Ok(())
}

async fn serve(db: Db, args: ServeArgs) -> Result<(), StartError> {
    if args.demo {
        seed::seed_demo(&db).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    let state = AppState {
        db: db.clone(),
        leptos_options: http::leptos_options(&args.site_root, addr),
    };
    tracing::info!("TenantAtlas is listening on http://{addr}");
    if args.demo {
        tracing::info!(
            "demo mode: open http://{addr}/ and pick a demo tenant (signed in as {})",
            seed::DEMO_ADMIN_EMAIL
        );
    }
    http::serve(listener, state, shutdown_signal()).await?;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
