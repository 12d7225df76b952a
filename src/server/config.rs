//! Command line and environment configuration (`tenantatlas --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// TenantAtlas: add Microsoft Intune policies to backup sets, asynchronously.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Database: `sqlite://PATH` (embedded default) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "DATABASE_URL",
        // The URL may hold a password: never echo the environment's value in --help.
        hide_env_values = true,
        default_value = "sqlite://data/tenantatlas.db",
        global = true
    )]
    pub database_url: String,

    /// Log filter, e.g. `info` or `tenantatlas=debug,sqlx=warn`.
    #[arg(
        long,
        env = "RUST_LOG",
        default_value = "info,sqlx=warn",
        global = true
    )]
    pub log: String,

    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations and serve the web app.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// Create the demo tenants, admin and inventory if they are missing, then exit.
    SeedDemo,
}

/// Options of `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TENANTATLAS_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// Folder with the built browser bundle (`pkg/`) and static files.
    #[arg(long, env = "LEPTOS_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Seed the demo tenants, admin and inventory at start (the embedded default does).
    #[arg(long, env = "TENANTATLAS_DEMO")]
    pub demo: bool,
}
