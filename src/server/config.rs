//! Command line and environment configuration (`tenantatlas --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::auth::client_address::IpRange;
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

    /// Log lines as text (for people) or one JSON object per line (for log shippers).
    #[arg(
        long,
        env = "TENANTATLAS_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,

    /// Microsoft Graph's address (`/beta` is appended); point it at `graph-sim` to test without
    /// a tenant. Demo mode ignores it and uses its own in-process simulator. An https URL (plain
    /// http only to a loopback host: 127.x.x.x, ::1, localhost), with no query, fragment or
    /// credentials; checked at start.
    #[arg(
        long,
        env = "TENANTATLAS_GRAPH_URL",
        default_value = "https://graph.microsoft.com",
        value_parser = graph_url,
        global = true
    )]
    pub graph_url: String,

    /// The Microsoft identity platform's address (`/{tenant}/oauth2/v2.0/token` follows). An
    /// https URL (plain http only to a loopback host: 127.x.x.x, ::1, localhost), with no query,
    /// fragment or credentials; checked at start.
    #[arg(
        long,
        env = "TENANTATLAS_LOGIN_URL",
        default_value = "https://login.microsoftonline.com",
        value_parser = login_url,
        global = true
    )]
    pub login_url: String,

    /// The key file that encrypts client secrets entered in the app: one `ID:HEX` key a line
    /// (64 hex digits), the last one encrypts, any decrypts. Without it, secrets can only be
    /// `env:NAME` references. Checked against the database at start.
    #[arg(long, env = "TENANTATLAS_SECRET_KEY_FILE", global = true)]
    pub secret_key_file: Option<PathBuf>,

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
    /// Sync the policy inventory from Microsoft Graph as an `inventory.sync` run per tenant
    /// (joining one already queued), wait for each to end and print what changed.
    SyncInventory(SyncInventoryArgs),
    /// Create a local account (or reset its password), optionally granting a role in a tenant.
    /// The password is read from the first line of standard input, never from the command line.
    /// Resetting the password of an existing account signs it out everywhere.
    CreateUser(CreateUserArgs),
    /// Set an existing account's password and sign it out everywhere. The password is read from
    /// the first line of standard input, never from the command line.
    SetPassword(SetPasswordArgs),
    /// Connect a tenant. The client secret is read from the first line of standard input and
    /// stored encrypted (needs --secret-key-file), unless --secret-ref names an environment
    /// variable.
    CreateTenant(CreateTenantArgs),
    /// Re-encrypt every stored client secret with the newest key of --secret-key-file.
    RotateSecretKey,
    /// Print a new random key line (`ID:HEX`) to append to the secret key file.
    NewSecretKey(NewSecretKeyArgs),
}

/// Options of `create-tenant`.
#[derive(Debug, Clone, clap::Args)]
pub struct CreateTenantArgs {
    /// The tenant's id (a GUID).
    #[arg(long)]
    pub tenant: String,
    /// The name shown in the app.
    #[arg(long)]
    pub name: String,
    /// The app registration's client id.
    #[arg(long)]
    pub client_id: String,
    /// `env:NAME`: read the client secret from this environment variable when it is needed,
    /// instead of storing it.
    #[arg(long)]
    pub secret_ref: Option<String>,
    /// The day the client secret expires (YYYY-MM-DD); the app warns 30 days before.
    #[arg(long)]
    pub secret_expires_on: Option<String>,
    /// The account (e-mail) that becomes the tenant's owner.
    #[arg(long)]
    pub owner: Option<String>,
}

/// Options of `new-secret-key`.
#[derive(Debug, Clone, clap::Args)]
pub struct NewSecretKeyArgs {
    /// The new key's id (letters, digits, `-`, `_`, `.`), e.g. the date: `2026-12`.
    #[arg(long)]
    pub id: String,
}

/// Options of `set-password`.
#[derive(Debug, Clone, clap::Args)]
pub struct SetPasswordArgs {
    /// The account's e-mail address (its sign-in name).
    #[arg(long)]
    pub email: String,
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
    /// Grant the instance-wide admin flag (may connect tenants). The first account gets it
    /// anyway.
    #[arg(long)]
    pub admin: bool,
}

/// Options of `sync-inventory`.
#[derive(Debug, Clone, clap::Args)]
pub struct SyncInventoryArgs {
    /// Only this tenant (its external GUID); default: every tenant with Graph credentials.
    #[arg(long)]
    pub tenant: Option<String>,
}

/// The longest `--session-idle-minutes`: 7 days (an idle timeout is meant to be short; a
/// session still ends `--session-max-hours` after its sign-in).
const MAX_SESSION_IDLE_MINUTES: u64 = 7 * 24 * 60;

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
    /// simulator (the embedded default does). From the environment, `TENANTATLAS_DEMO` is
    /// `true`, `1`, `yes` or `on` (on), `false`, `0`, `no` or `off` (off), in any case; unset or
    /// empty is off, and anything else is refused rather than guessed.
    #[arg(long, env = "TENANTATLAS_DEMO", value_parser = demo_switch)]
    pub demo: bool,

    /// The port of the demo Graph simulator (with `--demo`), so a test can turn its knobs
    /// (`POST /_sim/knobs`); 0 picks a free one.
    #[arg(long, env = "TENANTATLAS_DEMO_GRAPH_PORT", default_value_t = 0)]
    pub demo_graph_port: u16,

    /// A file whose first line is the client secret the demo Graph simulator accepts (with
    /// `--demo`; default: a random one per start, known only to the demo tenants). With it, a
    /// tenant connected in the demo's UI with this secret is served by the simulator too.
    #[arg(long, env = "TENANTATLAS_DEMO_GRAPH_SECRET_FILE")]
    pub demo_graph_secret_file: Option<PathBuf>,

    /// The URL browsers use to reach the app (scheme://host[:port]); cross-site POSTs are refused
    /// against it and the session cookie is Secure when it is https. Default: http://ADDR.
    /// Invitation links are built on it, so inviting someone without an account needs it set.
    #[arg(long, env = "TENANTATLAS_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// A session unused for this many minutes ends: 1 to 10080 (7 days).
    #[arg(long, env = "TENANTATLAS_SESSION_IDLE_MINUTES", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=MAX_SESSION_IDLE_MINUTES))]
    pub session_idle_minutes: u64,

    /// A session ends this many hours after its sign-in, however busy it is.
    #[arg(long, env = "TENANTATLAS_SESSION_MAX_HOURS", default_value_t = 12,
          value_parser = clap::value_parser!(u64).range(1..=24 * 365))]
    pub session_max_hours: u64,

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

    /// The reverse proxies in front of the app, as address ranges (`10.0.0.0/8,::1`). When the
    /// socket's peer is inside one, the sign-in throttle and the audit log take the client's
    /// address from X-Forwarded-For: the first entry from the right outside these ranges.
    /// Default: none, and the header is ignored (anyone could write it).
    #[arg(
        long,
        env = "TENANTATLAS_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    pub trusted_proxy: Vec<IpRange>,

    /// Refused (see [`ServeArgs::refuse_retired`]): it believed X-Forwarded-For from whoever
    /// connected.
    #[arg(long, env = "TENANTATLAS_TRUSTED_PROXY_HOPS", hide = true)]
    pub trusted_proxy_hops: Option<String>,

    /// On SIGTERM or Ctrl-C, requests in flight get this many seconds to finish; then the
    /// server stops without them (a slow download is cut off) and the rest of the shutdown
    /// runs, so a stop never waits on a client.
    #[arg(long, env = "TENANTATLAS_SHUTDOWN_GRACE_SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_seconds: u64,

    /// Serve Prometheus metrics at `http://ADDR/metrics`, on a listener of its own (off by
    /// default, so they are never exposed next to the app by accident).
    #[arg(long, env = "TENANTATLAS_METRICS_ADDR", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// A switch read from the environment: unset or empty is off, `true`/`1`/`yes`/`on` and
/// `false`/`0`/`no`/`off` (any case, surrounding blanks ignored) are what they say, and anything
/// else is an error naming `variable`. A lenient reading would take a typo (`flase`) or a
/// negative it does not know (`disabled`) for on.
fn switch(variable: &str, raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "" | "false" | "0" | "no" | "off" => Ok(false),
        "true" | "1" | "yes" | "on" => Ok(true),
        _ => Err(format!(
            "{variable}={raw:?} is not a switch: use true, 1, yes or on to turn it on, \
             false, 0, no or off (or nothing) to leave it off"
        )),
    }
}

/// `--demo` (`TENANTATLAS_DEMO`), read strictly ([`switch`]).
fn demo_switch(raw: &str) -> Result<bool, String> {
    switch("TENANTATLAS_DEMO", raw)
}

/// An endpoint the Graph client sends credentials to (`--login-url`: each tenant's client
/// secret; `--graph-url`: its access tokens), checked once at start so a mistake stops the
/// start instead of failing every request: `http` or `https`, a host, an optional port and
/// path, no query, fragment or credentials. Plain `http` is for a loopback host only (the Graph
/// simulator on 127.0.0.1, `localhost`, `::1`): anywhere else it would send the secrets in
/// clear. Returns the URL as [`url::Url`] writes it.
fn endpoint_url(option: &str, variable: &str, raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    let refuse = |why: &str| {
        Err(format!(
            "{option} {raw:?} ({variable}) {why}: give an https URL, e.g. https://host[:port][/path] \
             (plain http only to a loopback host: 127.0.0.1, ::1, localhost)"
        ))
    };
    let Ok(url) = url::Url::parse(raw) else {
        return refuse("is not a URL");
    };
    if !matches!(url.scheme(), "http" | "https") {
        return refuse("is not an http or https URL");
    }
    let Some(host) = url.host() else {
        return refuse("names no host");
    };
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("holds a user name or password");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return refuse("has a query or a fragment");
    }
    let loopback = match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    if url.scheme() == "http" && !loopback {
        return refuse(
            "is plain http to a host other than this machine (credentials would travel in clear)",
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `--graph-url` (`TENANTATLAS_GRAPH_URL`), checked ([`endpoint_url`]).
fn graph_url(raw: &str) -> Result<String, String> {
    endpoint_url("--graph-url", "TENANTATLAS_GRAPH_URL", raw)
}

/// `--login-url` (`TENANTATLAS_LOGIN_URL`), checked ([`endpoint_url`]).
fn login_url(raw: &str) -> Result<String, String> {
    endpoint_url("--login-url", "TENANTATLAS_LOGIN_URL", raw)
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl ServeArgs {
    /// Refuses a setting that would silently change meaning: the proxy hop count trusted any
    /// peer's X-Forwarded-For, and ignoring it would quietly move the throttle onto the proxy's
    /// address.
    pub fn refuse_retired(&self) -> Result<(), String> {
        if self.trusted_proxy_hops.is_some() {
            return Err(
                "--trusted-proxy-hops (TENANTATLAS_TRUSTED_PROXY_HOPS) is not supported: \
                 it believed X-Forwarded-For from whoever connected. Name your reverse proxies \
                 with --trusted-proxy CIDR[,CIDR...] (TENANTATLAS_TRUSTED_PROXY) and remove \
                 the old setting."
                    .into(),
            );
        }
        Ok(())
    }
}

/// The origin browsers reach the app at (`scheme://host[:port]`), as they write it in their
/// `Origin` header: parsed from `--public-url` once at start, so a spelling that means the same
/// site (`https://Atlas.Example:443/`) is the same origin and cross-site checks compare like
/// with like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin(String);

impl PublicOrigin {
    /// Parses a public URL: `http` or `https`, a host, an optional port, and at most a `/` for
    /// a path. The scheme and host are lower-cased and a default port (80, 443) is dropped. The
    /// app is served at the root of its host (its links and its `__Host-` cookie are for `/`),
    /// so a path, a query, a fragment or credentials are refused rather than ignored.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let refuse = |why: &str| {
            Err(format!(
                "--public-url {raw:?} (TENANTATLAS_PUBLIC_URL) {why}: give the address browsers \
                 use, scheme://host[:port], e.g. https://atlas.example.com"
            ))
        };
        let Ok(url) = url::Url::parse(raw) else {
            return refuse("is not a URL");
        };
        if !matches!(url.scheme(), "http" | "https") {
            return refuse("is not an http or https URL");
        }
        let Some(host) = url.host_str().filter(|host| !host.is_empty()) else {
            return refuse("names no host");
        };
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("holds a user name or password");
        }
        if url.path() != "/" {
            return refuse("has a path (the app is served at the root of its host)");
        }
        if url.query().is_some() || url.fragment().is_some() {
            return refuse("has a query or a fragment");
        }
        // `Url` lower-cases the scheme and host and drops the scheme's default port.
        let port = url
            .port()
            .map(|port| format!(":{port}"))
            .unwrap_or_default();
        Ok(Self(format!("{}://{host}{port}", url.scheme())))
    }

    /// The origin, `scheme://host[:port]`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether browsers reach the app over TLS.
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}

impl ServeArgs {
    /// The public origin: `--public-url` parsed ([`PublicOrigin::parse`]), `None` when unset.
    pub fn public_origin(&self) -> Result<Option<PublicOrigin>, String> {
        self.public_url
            .as_deref()
            .filter(|url| !url.trim().is_empty())
            .map(PublicOrigin::parse)
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let cli = Cli::try_parse_from(["tenantatlas", "serve"].iter().chain(args))?;
        match cli.command {
            Command::Serve(args) => Ok(args),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn the_demo_switch_reads_the_environment_as_a_switch() {
        // nextest runs each test in a process of its own: the variable is this test's alone.
        for (value, on) in [
            ("1", true),
            ("true", true),
            ("yes", true),
            ("0", false),
            ("off", false),
            ("", false),
        ] {
            std::env::set_var("TENANTATLAS_DEMO", value);
            let args = serve(&[]).unwrap_or_else(|e| panic!("TENANTATLAS_DEMO={value:?}: {e}"));
            assert_eq!(args.demo, on, "TENANTATLAS_DEMO={value:?}");
        }
        std::env::remove_var("TENANTATLAS_DEMO");
        assert!(serve(&["--demo"]).is_ok_and(|args| args.demo));
        assert!(serve(&[]).is_ok_and(|args| !args.demo));
    }

    #[test]
    fn the_demo_switch_refuses_a_value_it_does_not_know() {
        // Each of these once turned demo mode on: a typo, a negative word it did not know, a
        // trailing blank only a shell quote shows.
        for (value, on) in [
            ("TRUE", true),
            ("On", true),
            (" yes ", true),
            ("False", false),
            ("NO", false),
            ("false ", false),
            ("  ", false),
        ] {
            std::env::set_var("TENANTATLAS_DEMO", value);
            let args = serve(&[]).unwrap_or_else(|e| panic!("TENANTATLAS_DEMO={value:?}: {e}"));
            assert_eq!(args.demo, on, "TENANTATLAS_DEMO={value:?}");
        }
        for value in ["disabled", "flase", "2", "enable", "y", "n", "-"] {
            std::env::set_var("TENANTATLAS_DEMO", value);
            match serve(&[]) {
                Ok(args) => panic!("TENANTATLAS_DEMO={value:?} read as demo={}", args.demo),
                Err(error) => {
                    let message = error.to_string();
                    assert!(message.contains("TENANTATLAS_DEMO"), "{value:?}: {message}");
                    assert!(message.contains("not a switch"), "{value:?}: {message}");
                }
            }
        }
        // The command line's flag is still a flag, whatever the environment holds.
        std::env::set_var("TENANTATLAS_DEMO", "disabled");
        assert!(serve(&["--demo"]).is_ok_and(|args| args.demo));
        std::env::remove_var("TENANTATLAS_DEMO");
    }

    /// The global options parsed before `serve`.
    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["tenantatlas"].iter().chain(args).chain(&["migrate"]))
    }

    #[test]
    fn graph_endpoints_are_https_or_loopback_urls_checked_at_start() {
        let defaults = cli(&[]).unwrap();
        assert_eq!(defaults.graph_url, "https://graph.microsoft.com");
        assert_eq!(defaults.login_url, "https://login.microsoftonline.com");
        let config = defaults.graph_config();
        assert_eq!(config.login_base, "https://login.microsoftonline.com");
        assert_eq!(config.graph_base, "https://graph.microsoft.com/beta");
        for (refused, why) in [
            ("login.microsoftonline.com", "not a URL"),
            ("login.microsoftonline.com:443", "not an http or https URL"),
            ("ftp://login.example", "not an http or https URL"),
            ("https://", "not a URL"),
            ("http://remote-host", "plain http"),
            ("http://login.microsoftonline.com", "plain http"),
            ("http://10.0.0.5:8080", "plain http"),
            ("http://[::ffff:10.0.0.5]", "plain http"),
            ("http://localhost.example.com", "plain http"),
            ("https://login.example/?tenant=x", "query"),
            ("https://login.example/#x", "fragment"),
            ("https://user:secret@login.example", "user name or password"),
            ("https://user@login.example", "user name or password"),
        ] {
            for (option, variable) in [
                ("--login-url", "TENANTATLAS_LOGIN_URL"),
                ("--graph-url", "TENANTATLAS_GRAPH_URL"),
            ] {
                let message = match cli(&[option, refused]) {
                    Ok(cli) => panic!("{option} {refused:?} accepted as {cli:?}"),
                    Err(error) => error.to_string(),
                };
                assert!(message.contains(why), "{option} {refused}: {message}");
                assert!(message.contains(variable), "{option} {refused}: {message}");
            }
        }
        // What the tests' Graph simulator listens on, and other loopback spellings.
        for (graph, login, graph_base, login_base) in [
            (
                "http://127.0.0.1:41234/beta",
                "http://127.0.0.1:41234",
                "http://127.0.0.1:41234/beta",
                "http://127.0.0.1:41234",
            ),
            (
                "http://localhost:8080/",
                "http://LOCALHOST:8080/login/",
                "http://localhost:8080/beta",
                "http://localhost:8080/login",
            ),
            (
                "http://[::1]:8080",
                "http://127.3.2.1",
                "http://[::1]:8080/beta",
                "http://127.3.2.1",
            ),
            (
                " HTTPS://Graph.Microsoft.US:443/ ",
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us/beta",
                "https://login.microsoftonline.us",
            ),
        ] {
            let config = cli(&["--graph-url", graph, "--login-url", login])
                .unwrap_or_else(|e| panic!("{graph} {login}: {e}"))
                .graph_config();
            assert_eq!(config.graph_base, graph_base, "{graph}");
            assert_eq!(config.login_base, login_base, "{login}");
        }
        // From the environment too, which is how a deployment usually sets them.
        std::env::set_var("TENANTATLAS_LOGIN_URL", "login.microsoftonline.com");
        let message = cli(&[]).unwrap_err().to_string();
        std::env::remove_var("TENANTATLAS_LOGIN_URL");
        assert!(message.contains("TENANTATLAS_LOGIN_URL"), "{message}");
    }

    #[test]
    fn trusted_proxies_are_a_comma_separated_list_of_ranges() {
        let args = serve(&[
            "--trusted-proxy",
            "10.0.0.0/8,::1",
            "--trusted-proxy",
            "192.0.2.7",
        ])
        .unwrap();
        let ranges: Vec<String> = args.trusted_proxy.iter().map(ToString::to_string).collect();
        assert_eq!(ranges, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        assert!(args.refuse_retired().is_ok());
        assert!(serve(&["--trusted-proxy", "10.0.0.1/8"]).is_err());
    }

    #[test]
    fn the_retired_hop_count_is_refused_whatever_its_value() {
        for value in ["0", "1", "5"] {
            let args = serve(&["--trusted-proxy-hops", value]).unwrap();
            let message = args.refuse_retired().unwrap_err();
            assert!(message.contains("--trusted-proxy CIDR"), "{message}");
        }
    }

    #[test]
    fn sessions_last_twelve_hours_at_most_by_default() {
        assert_eq!(serve(&[]).unwrap().session_max_hours, 12);
        assert_eq!(
            serve(&["--session-max-hours", "2"])
                .unwrap()
                .session_max_hours,
            2
        );
        assert!(serve(&["--session-max-hours", "0"]).is_err());
    }

    #[test]
    fn the_idle_timeout_is_one_minute_to_seven_days() {
        assert_eq!(serve(&[]).unwrap().session_idle_minutes, 120);
        for minutes in ["1", "90", "10080"] {
            let args = serve(&["--session-idle-minutes", minutes]).unwrap();
            assert_eq!(args.session_idle_minutes.to_string(), minutes);
        }
        // 0 was taken for 1 minute downstream, and a huge value overflowed `* 60`.
        for minutes in ["0", "10081", "307445734561825861", "18446744073709551615"] {
            let message = match serve(&["--session-idle-minutes", minutes]) {
                Ok(args) => panic!("{minutes} accepted as {}", args.session_idle_minutes),
                Err(error) => error.to_string(),
            };
            assert!(message.contains("--session-idle-minutes"), "{message}");
        }
        std::env::set_var("TENANTATLAS_SESSION_IDLE_MINUTES", "0");
        let refused = serve(&[]).is_err();
        std::env::remove_var("TENANTATLAS_SESSION_IDLE_MINUTES");
        assert!(refused, "TENANTATLAS_SESSION_IDLE_MINUTES=0 accepted");
    }

    #[test]
    fn public_urls_are_compared_as_browsers_write_origins() {
        for (spellings, origin) in [
            (
                &[
                    "https://atlas.example",
                    "https://Atlas.Example",
                    "HTTPS://ATLAS.EXAMPLE/",
                    "https://atlas.example:443",
                    "https://atlas.example:443/",
                    " https://atlas.example/ ",
                ][..],
                "https://atlas.example",
            ),
            (
                &["http://atlas.example:80", "http://Atlas.example/"][..],
                "http://atlas.example",
            ),
            (
                &["https://atlas.example:8443/", "HTTPS://atlas.EXAMPLE:8443"][..],
                "https://atlas.example:8443",
            ),
            (
                &["http://atlas.example:443", "http://atlas.example:443/"][..],
                "http://atlas.example:443",
            ),
            (
                &["http://127.0.0.1:3000", "http://127.0.0.1:3000/"][..],
                "http://127.0.0.1:3000",
            ),
            (
                &["http://[::1]:3000/", "http://[0:0::1]:3000"][..],
                "http://[::1]:3000",
            ),
        ] {
            for spelling in spellings {
                let parsed = PublicOrigin::parse(spelling).unwrap();
                assert_eq!(parsed.as_str(), origin, "{spelling}");
                assert_eq!(
                    parsed.is_https(),
                    origin.starts_with("https:"),
                    "{spelling}"
                );
            }
        }
        for (refused, why) in [
            ("https://atlas.example/tenantatlas", "has a path"),
            ("https://atlas.example/tenantatlas/", "has a path"),
            ("https://atlas.example/?x=1", "query"),
            ("https://atlas.example/#top", "fragment"),
            ("https://admin:pw@atlas.example", "user name or password"),
            ("ftp://atlas.example", "not an http or https URL"),
            ("atlas.example", "not a URL"),
            ("atlas.example:3000", "not an http or https URL"),
            ("https://", "not a URL"),
        ] {
            let message = PublicOrigin::parse(refused).unwrap_err();
            assert!(message.contains(why), "{refused}: {message}");
            assert!(message.contains("scheme://host[:port]"), "{message}");
        }
        assert_eq!(serve(&[]).unwrap().public_origin(), Ok(None));
        assert_eq!(
            serve(&["--public-url", "https://Atlas.Example:443/"])
                .unwrap()
                .public_origin()
                .unwrap()
                .map(|origin| origin.as_str().to_owned()),
            Some("https://atlas.example".to_owned())
        );
    }
}
