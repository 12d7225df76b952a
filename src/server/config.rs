//! Command line and environment configuration (`tenantatlas --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::graph::GraphConfig;

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

    /// Microsoft Graph's address (`/beta` is appended); point it at `graph-sim` to test without
    /// a tenant. Demo mode ignores it and uses its own in-process simulator.
    #[arg(
        long,
        env = "TENANTATLAS_GRAPH_URL",
        default_value = "https://graph.microsoft.com",
        global = true
    )]
    pub graph_url: String,

    /// The Microsoft identity platform's address (`/{tenant}/oauth2/v2.0/token` follows).
    #[arg(
        long,
        env = "TENANTATLAS_LOGIN_URL",
        default_value = "https://login.microsoftonline.com",
        global = true
    )]
    pub login_url: String,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The Graph client's configuration for the configured endpoints, with safe defaults.
    pub fn graph_config(&self) -> GraphConfig {
        let graph = self.graph_url.trim_end_matches('/');
        // The settings catalog is only on the beta endpoint; accept a URL that already names it.
        let graph_base = if graph.ends_with("/beta") {
            graph.to_owned()
        } else {
            format!("{graph}/beta")
        };
        GraphConfig::new(self.login_url.trim_end_matches('/'), graph_base)
    }
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations and serve the web app.
    Serve(ServeArgs),
    /// Apply pending migrations and exit.
    Migrate,
    /// Create the demo tenants and users if they are missing, sync their inventory from an
    /// in-process Graph simulator, then exit.
    SeedDemo,
    /// Sync the policy inventory from Microsoft Graph and print what changed.
    SyncInventory(SyncInventoryArgs),
    /// Create a local account (or reset its password), optionally granting a role in a tenant.
    /// The password is read from the first line of standard input, never from the command line.
    CreateUser(CreateUserArgs),
}

/// Options of `create-user`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateUserArgs {
    /// The account's e-mail address (its sign-in name).
    #[arg(long)]
    pub email: String,
    /// The name shown in the app.
    #[arg(long)]
    pub name: String,
    /// Grant a role in this tenant (its external GUID).
    #[arg(long, requires = "role")]
    pub tenant: Option<String>,
    /// owner, manager, operator or readonly.
    #[arg(long, requires = "tenant")]
    pub role: Option<String>,
}

/// Options of `sync-inventory`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncInventoryArgs {
    /// Only this tenant (its external GUID); default: every tenant with Graph credentials.
    #[arg(long)]
    pub tenant: Option<String>,
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

    /// Seed the demo tenants and users and serve their inventory from an in-process Graph
    /// simulator (the embedded default does).
    #[arg(long, env = "TENANTATLAS_DEMO")]
    pub demo: bool,

    /// The URL browsers use to reach the app (scheme://host[:port]); cross-site POSTs are refused
    /// against it and the session cookie is Secure when it is https. Default: http://ADDR.
    #[arg(long, env = "TENANTATLAS_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// A session unused for this many minutes ends.
    #[arg(long, env = "TENANTATLAS_SESSION_IDLE_MINUTES", default_value_t = 120)]
    pub session_idle_minutes: u64,

    /// The worker's safety-net poll, in seconds: it finds expired leases and wake-ups it missed.
    /// Submits wake it at once (and, on PostgreSQL, every instance through NOTIFY).
    #[arg(long, env = "TENANTATLAS_WORKER_POLL_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub worker_poll_seconds: u64,

    /// Runs this process works on at once in each lane (bulk, interactive); at most one bulk run
    /// per tenant is active across all instances (docs/operations.md).
    #[arg(long, env = "TENANTATLAS_WORKER_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u64).range(1..=256))]
    pub worker_concurrency: u64,

    /// This instance's stable identity (default: the host name and the listen address). A
    /// restarted instance takes back the runs of its identity at once; a second live process
    /// with the same identity refuses to start.
    #[arg(long, env = "TENANTATLAS_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// How many reverse proxies in front of the app append the client's address to
    /// X-Forwarded-For; the sign-in throttle and the audit log then use the address the
    /// outermost one saw. 0 (the default) ignores the header: anyone could write it.
    #[arg(long, env = "TENANTATLAS_TRUSTED_PROXY_HOPS", default_value_t = 0,
          value_parser = clap::value_parser!(u8).range(0..=5))]
    pub trusted_proxy_hops: u8,
}
