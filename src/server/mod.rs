//! Everything that only runs on the server: configuration, database, HTTP wiring and the
//! services behind the server functions.

mod allocator;
pub mod audit;
pub mod auth;
pub mod backup_export;
pub mod backup_sets;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod exports;
pub mod graph;
pub mod http;
pub mod inventory;
pub mod logging;
pub mod metrics;
pub mod notifications;
pub mod panics;
pub mod policies;
pub mod request_log;
pub mod restore;
pub mod runs;
pub mod sanitize;
pub mod seed;
pub mod snapshots;
pub mod state;
pub mod static_files;
pub mod tenants;
pub mod versions;

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use auth::client_address::TrustedProxies;
use auth::session::SessionSettings;
use config::{Cli, Command, CreateUserArgs, ServeArgs, SetPasswordArgs, SyncInventoryArgs};
use db::Db;
use graph::credentials::CredentialsError;
use graph::{GraphAccess, GraphClient, GraphConfig, GraphError, SecretResolver};
use inventory::SyncError;
use state::{AppState, Settings};
use tenants::keyring::KeyRing;

use crate::domain::invitation::{parse_display_name, PASSWORD_MAX_CHARS};
use crate::domain::{AppError, Email, Role, TenantExternalId};

/// Why the binary could not start or finish its command.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] db::MigrateError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("Graph: {0}")]
    Graph(#[from] GraphError),
    #[error("inventory sync: {0}")]
    Inventory(#[from] SyncError),
    #[error("{0}")]
    Invalid(String),
}

impl From<AppError> for StartError {
    fn from(error: AppError) -> Self {
        Self::Invalid(error.to_string())
    }
}

/// Runs one CLI command to its end.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    if let Command::Serve(args) = &cli.command {
        args.refuse_retired().map_err(StartError::Invalid)?;
    }
    if let Command::NewSecretKey(args) = &cli.command {
        return tenants::cli::new_secret_key(args);
    }
    // Everything that can be checked without the database is checked before it is migrated:
    // a start that is refused for its configuration must leave the database as the previous
    // version left it, so that version can still start on it (it refuses a migration it does
    // not know).
    let key_file = cli
        .secret_key_file
        .as_deref()
        .map(KeyRing::load)
        .transpose()
        .map_err(|error| StartError::Invalid(error.to_string()))?;
    let db = Db::connect(&cli.database_url).await?;
    let mut serving = match &cli.command {
        Command::Serve(args) => Some(ServeStart::prepare(&db, args).await?),
        _ => None,
    };
    prepare(&db).await?;
    let keys = match key_file {
        Some(keys) => {
            keys.verify(&db)
                .await
                .map_err(|error| StartError::Invalid(error.to_string()))?;
            tracing::info!(newest = keys.newest_id(), "secret key file checked");
            Some(Arc::new(keys))
        }
        None => None,
    };
    let graph_config = cli.graph_config();
    match cli.command {
        Command::Migrate => tracing::info!("migrations applied"),
        Command::SeedDemo => {
            let created = seed::seed_demo(&db).await?;
            // The simulator only lives for this command: long enough to sync the inventory.
            let demo = seed::start_demo_graph(0).await?;
            demo_history(&db, &demo).await?;
            tracing::info!(created, "demo data ready");
        }
        Command::SyncInventory(args) => sync_inventory(&db, graph_config, keys, args).await?,
        Command::CreateUser(args) => create_user(&db, args).await?,
        Command::SetPassword(args) => set_password(&db, args).await?,
        Command::CreateTenant(args) => {
            tenants::cli::create_tenant(&db, keys.as_deref(), args).await?
        }
        Command::RotateSecretKey => tenants::cli::rotate_secret_key(&db, keys.as_deref()).await?,
        Command::NewSecretKey(_) => unreachable!("answered before the database is opened"),
        Command::Serve(args) => {
            let Some(start) = serving.take() else {
                return Err(StartError::Invalid("serve was not prepared".into()));
            };
            serve(db, graph_config, keys, args, start).await?
        }
    }
    Ok(())
}

/// The demo's inventory and history: a fresh simulator gets the demo's edits since the
/// baseline (written, with the baseline's captures, on the first start), then the inventory is
/// synced from it.
async fn demo_history(db: &Db, demo: &seed::DemoGraph) -> Result<(), StartError> {
    if seed::demo_history_written(db).await? {
        seed::replay_demo_edits(demo);
        return sync_demo_inventory(db, demo).await;
    }
    // The first start captures the baseline from the unedited simulator, so it needs the
    // inventory first, and again once the edits are in.
    sync_demo_inventory(db, demo).await?;
    seed::write_demo_history(db, demo).await?;
    tracing::info!("demo history written: a baseline set, later versions and a drift check");
    sync_demo_inventory(db, demo).await
}

/// Syncs the demo tenants from the demo simulator and logs what changed.
async fn sync_demo_inventory(db: &Db, demo: &seed::DemoGraph) -> Result<(), StartError> {
    for (tenant, report) in seed::sync_demo_inventory(db, demo).await? {
        tracing::info!(tenant, %report, "demo inventory synced from the Graph simulator");
    }
    Ok(())
}

/// `sync-inventory`: an `inventory.sync` run per tenant, queued through the app's own
/// deduplication (a sync already queued or running for the tenant, from the app or another
/// invocation, is joined instead) and audited with no actor; then the command waits until each
/// has ended, and prints one line per tenant: the run's id and outcome. A live serving instance
/// executes the runs; with none, the command does, with an engine of its own that claims only
/// these runs ([`work_until_ended`]). Fails if any tenant that was asked for could not be
/// synced. A tenant whose secret this process cannot load (a demo secret, an environment
/// variable or a key of its own) gets no run; demo tenants are skipped unless named.
async fn sync_inventory(
    db: &Db,
    graph_config: GraphConfig,
    keys: Option<Arc<KeyRing>>,
    args: SyncInventoryArgs,
) -> Result<(), StartError> {
    let only = args
        .tenant
        .as_deref()
        .map(|raw| {
            TenantExternalId::parse(raw)
                .map_err(|_| StartError::Invalid(format!("--tenant {raw:?} is not a GUID")))
        })
        .transpose()?;
    let targets = inventory::sync_targets(db, only.as_ref()).await?;
    if targets.is_empty() {
        return Err(StartError::Invalid(match only {
            Some(id) => format!("no tenant has the id {id}"),
            None => "no tenant has Graph credentials (graph_client_id and graph_secret_ref)".into(),
        }));
    }
    let access = GraphAccess {
        client: GraphClient::new(graph_config)?,
        secrets: SecretResolver::default().with_keys(keys),
    };
    let mut failed = 0;
    let mut queued = Vec::new();
    for target in &targets {
        let label = format!("{} ({})", target.display_name, target.external_id);
        match graph::credentials::load_credentials(db, target.id, &access.secrets).await {
            Err(CredentialsError::DemoOnly) if only.is_none() => {
                println!("{label}: skipped, a demo tenant (synced by serve --demo and seed-demo)");
                continue;
            }
            // A secret this process cannot have (a demo secret, an environment variable of its
            // own, its own key ring) may be one a server has: no run is queued or joined for it,
            // so that the command never fails a run a server could have done.
            Err(
                error @ (CredentialsError::DemoOnly
                | CredentialsError::MissingEnvironment(_)
                | CredentialsError::Key(_)),
            ) => {
                failed += 1;
                println!(
                    "{label}: failed: credentials: {}",
                    sanitize::sanitize(&error.to_string())
                );
                continue;
            }
            // A disconnected tenant starts no run (the path without --tenant lists none): none
            // is queued or audited for it, as the app's start refuses it.
            Err(CredentialsError::Disconnected) => {
                failed += 1;
                println!("{label}: disconnected, not synced");
                continue;
            }
            // Any other problem is the tenant's, and the run's to record: it fails with the
            // reason.
            _ => {}
        }
        match runs::start::sync_inventory_unattended(db, target.id).await {
            Ok(run) => {
                audit::record(
                    db,
                    audit::AuditEvent {
                        tenant_id: Some(target.id),
                        actor_user_id: None,
                        action: if run.reused { "run.reuse" } else { "run.start" },
                        target: format!("run:{}", run.run_id),
                        details: serde_json::json!({
                            "on": format!("tenant:{}", target.id),
                            "total": run.total,
                            "via": "cli",
                        }),
                    },
                )
                .await;
                queued.push((label, run));
            }
            Err(error) => {
                failed += 1;
                println!(
                    "{label}: failed: {}",
                    sanitize::sanitize(&error.to_string())
                );
            }
        }
    }
    if !queued.is_empty() {
        failed += work_until_ended(db, access, &queued).await?;
    }
    if failed > 0 {
        return Err(StartError::Invalid(format!(
            "{failed} of {} tenants could not be synced",
            targets.len()
        )));
    }
    Ok(())
}

/// How long a run of `sync-inventory`'s must stay stranded behind a run left unfinished, with
/// no live instance, before the command gives up on it ([`give_up_stranded`]).
const STRANDED_GRACE: Duration = Duration::from_secs(3);

/// How often `sync-inventory` looks whether its runs have ended.
const SYNC_WAIT_POLL: Duration = Duration::from_millis(250);

/// How long `sync-inventory` waits, once the live instance it left its runs to is gone, before
/// it works on them itself: a restarted `serve` (a deploy) gives its leases back and is live
/// again within seconds, and should find its tenants' syncs still queued for it.
const SERVE_RESTART_GRACE: Duration = Duration::from_secs(10);

/// Sees every run of `queued` to its end, whoever executes it; prints each run's outcome and
/// returns how many did not complete. While any other live instance serves the database (one
/// holding an instance lock, as `serve` does), the runs are left to it: its credentials are
/// the app's, and its interactive lane keeps serving the tenant while the sync runs (a tenant's
/// runs go to the instance already working for it). Another invocation's engine is no such
/// instance: it claims only its own invocation's runs, so a second invocation for another
/// tenant does not wait for the first. When none is live, the command starts an engine of its
/// own (when one was live before, only after [`SERVE_RESTART_GRACE`] without any) and keeps it
/// until its runs have ended: an instance of its own (on SQLite `<host>-cli`, or `<host>-cli-2`
/// … while other invocations hold that; on PostgreSQL `<host>-cli-<pid>`; [`cli_instance`];
/// with the lock `serve` takes, marked as a
/// command's, [`engine::instance::InstanceLock::acquire_cli`]) that executes only `queued`'s
/// runs, and only syncs.
async fn work_until_ended(
    db: &Db,
    graph: GraphAccess,
    queued: &[(String, crate::domain::SubmittedRun)],
) -> Result<usize, StartError> {
    let wake = engine::runner::WakeUp::default();
    // Every serving instance hears of the new runs at once on PostgreSQL (they poll on SQLite).
    wake.run_queued(db).await;
    let ids: Vec<i64> = queued.iter().map(|(_, run)| run.run_id).collect();
    let mut own: Option<OwnEngine> = None;
    let mut last_seen_live: Option<std::time::Instant> = None;
    // For each run: the run left unfinished that it waits behind, once the command gave up on it.
    let mut stranded: Vec<Option<GivenUp>> = vec![None; ids.len()];
    // For each run: since when it has been seen stranded, without a live instance, in a row.
    let mut stranded_since: Vec<Option<std::time::Instant>> = vec![None; ids.len()];
    let waited = loop {
        match ended_runs(db, &ids).await {
            Ok(ended)
                if ended
                    .iter()
                    .zip(&stranded)
                    .all(|(e, s)| e.is_some() || s.is_some()) =>
            {
                break Ok(ended)
            }
            Ok(_) => {}
            Err(error) => break Err(error),
        }
        if let Some(engine) = &own {
            // A live server takes a run left unfinished over itself (its lease may be over for a
            // moment: between its polls, or while it restarts): nothing is given up on meanwhile.
            let live = engine::instance::any_live(db)
                .await
                .map_err(|error| StartError::Invalid(error.to_string()));
            let given_up = match live {
                Ok(true) => {
                    stranded_since.fill(None);
                    Ok(())
                }
                Ok(false) => {
                    give_up_stranded(db, engine, queued, &mut stranded, &mut stranded_since).await
                }
                Err(error) => Err(error),
            };
            if let Err(error) = given_up {
                break Err(error);
            }
        } else {
            let live = engine::instance::any_live(db)
                .await
                .map_err(|error| StartError::Invalid(error.to_string()));
            match live {
                Ok(true) => last_seen_live = Some(std::time::Instant::now()),
                Ok(false)
                    if last_seen_live.is_some_and(|seen| seen.elapsed() < SERVE_RESTART_GRACE) => {}
                Ok(false) => match OwnEngine::start(db, graph.clone(), &wake, &ids).await {
                    Ok(started) => own = Some(started),
                    Err(error) => break Err(error),
                },
                Err(error) => break Err(error),
            }
        }
        tokio::time::sleep(SYNC_WAIT_POLL).await;
    };
    if let Some(own) = own {
        own.stop().await;
    }
    // Read again for the report: a run left queued may have been withdrawn or claimed since.
    let waited = match waited {
        Ok(_) => ended_runs(db, &ids).await,
        Err(error) => Err(error),
    };
    let mut failed = 0;
    for (((label, run), ended), behind) in queued.iter().zip(waited?).zip(stranded) {
        let joined = if run.reused { " (already queued)" } else { "" };
        let ended = match (ended, behind) {
            (
                _,
                Some(GivenUp {
                    behind,
                    withdrawn: true,
                }),
            ) => {
                failed += 1;
                println!(
                    "{label}: run {}{joined} withdrawn: run {behind} was left unfinished by a \
                     stopped server; start `serve` to finish it, then sync again",
                    run.run_id
                );
                continue;
            }
            // Ended as it is told, however it ended: a run left queued that another
            // invocation withdrew says "cancelled", not "left queued".
            (Some(ended), _) => ended,
            (None, Some(GivenUp { behind, .. })) => {
                failed += 1;
                println!(
                    "{label}: run {}{joined} left queued: run {behind} was left unfinished by a \
                     stopped server; start `serve` to finish it, then sync again",
                    run.run_id
                );
                continue;
            }
            // The loop ends only once every run ended or was given up on.
            (None, None) => continue,
        };
        let status = ended.status.as_str();
        let text = match ended.status {
            crate::domain::RunStatus::Completed => ended.summary.unwrap_or_default(),
            _ => {
                failed += 1;
                let why = [ended.reason_code, ended.failure_message]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                sanitize::sanitize(&why)
            }
        };
        let text = if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        };
        println!("{label}: run {}{joined} {status}{text}", run.run_id);
    }
    Ok(failed)
}

/// Gives up on the runs of `queued` that the command's own engine can never claim (marked in
/// `stranded` with the run each waits behind), once they stayed so for [`STRANDED_GRACE`]
/// (since when: `stranded_since`) while no instance was live: a run of their tenant left `running` in their
/// lane by a server that stopped or died (a bulk run SIGTERM released, a crashed server's),
/// of an operation the command does not handle, so that only `serve` takes it over; until
/// then the lane stays the tenant's and the sync would wait forever. That run is left alone
/// (it is not the command's to end; `serve` resumes it), and the sync the command queued is
/// withdrawn (cancelled while still queued, before any claim), so nothing of the command is
/// left pending; a sync the command joined (a member's, `reused`), or that someone joined
/// since ([`withdraw_queued`]), stays queued for `serve`.
async fn give_up_stranded(
    db: &Db,
    engine: &OwnEngine,
    queued: &[(String, crate::domain::SubmittedRun)],
    stranded: &mut [Option<GivenUp>],
    stranded_since: &mut [Option<std::time::Instant>],
) -> Result<(), StartError> {
    let blocked = engine.worker.stranded_behind().await?;
    for (i, (_, run)) in queued.iter().enumerate() {
        if stranded[i].is_some() {
            continue;
        }
        let Some(&(_, behind)) = blocked.iter().find(|(id, _)| *id == run.run_id) else {
            stranded_since[i] = None;
            continue;
        };
        // Only a run that stays stranded is given up on: not one a server is about to take.
        let since = *stranded_since[i].get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < STRANDED_GRACE {
            continue;
        }
        let withdrawn = if run.reused {
            false
        } else {
            match withdraw_queued(db, run.run_id).await? {
                Withdrawal::Withdrawn => true,
                Withdrawal::Joined => false,
                // Claimed meanwhile (a server came up): it is waited for as any other.
                Withdrawal::Taken => continue,
            }
        };
        tracing::warn!(
            run_id = run.run_id,
            behind,
            "the sync waits behind a run left unfinished by a stopped server; giving up on it"
        );
        stranded[i] = Some(GivenUp { behind, withdrawn });
    }
    Ok(())
}

/// A run of `sync-inventory`'s that it gave up on: the run left unfinished it waits behind, and
/// whether the command withdrew it (else it stays queued for `serve`).
#[derive(Debug, Clone, Copy)]
struct GivenUp {
    behind: i64,
    withdrawn: bool,
}

/// What [`withdraw_queued`] did with a run.
enum Withdrawal {
    /// Cancelled while still queued.
    Withdrawn,
    /// Still queued, and left so: someone else joined it.
    Joined,
    /// No longer queued: claimed (or ended) meanwhile.
    Taken,
}

/// Cancels run `run_id` while it is still queued (no claim took it) and nobody else joined it:
/// no item, no initiator to notify (the command's own run). A join (a member's click, another
/// invocation) is known by its audit record, "run.reuse" of the run, written right after the
/// join: a run joined is left queued for `serve`, as the one who joined it was told.
async fn withdraw_queued(db: &Db, run_id: i64) -> Result<Withdrawal, StartError> {
    let withdrawn = sqlx::query(
        "UPDATE runs SET status = 'cancelled', finished_at = $1, reason_code = $2 \
         WHERE id = $3 AND status = 'pending' AND initiated_by IS NULL \
           AND NOT EXISTS (SELECT 1 FROM audit_log a \
             WHERE a.tenant_id = runs.tenant_id AND a.action = 'run.reuse' AND a.target = $4)",
    )
    .bind(crate::domain::Timestamp::now().millis())
    .bind(crate::domain::reason_code::ReasonCode::Cancelled.as_str())
    .bind(run_id)
    .bind(format!("run:{run_id}"))
    .execute(db.pool())
    .await?;
    if withdrawn.rows_affected() > 0 {
        return Ok(Withdrawal::Withdrawn);
    }
    let pending: Option<i64> =
        sqlx::query_scalar("SELECT id FROM runs WHERE id = $1 AND status = 'pending'")
            .bind(run_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(if pending.is_some() {
        Withdrawal::Joined
    } else {
        Withdrawal::Taken
    })
}

/// How many `sync-inventory` engines may run at once on one host on SQLite: one identity each
/// ([`cli_instance`]).
const CLI_ENGINES: usize = 16;

/// Takes the instance lock of a `sync-inventory` engine, marked as a command's so that another
/// invocation does not leave its runs to it.
///
/// On SQLite: the first free of a few fixed identities per host (`<host>-cli`, then
/// `<host>-cli-2` to `<host>-cli-16` while overlapping invocations hold the others), not one per
/// process, so that their lock files next to the database stay a few however often cron runs
/// the command, and an identity taken again takes back the leases its dead holder left (a
/// restarted instance's own, [`engine::runner::run`]) at once: an OS file lock is let go only
/// when its process ends, and SQLite judges leases by their expiry alone. Refused when all are
/// held.
///
/// On PostgreSQL: `<host>-cli-<pid>`, one per process (`-2`… appended while another process
/// holds that, e.g. a container's with the same host name and process id). A lock there lives on a session, which
/// can end while its process lives on (a restarted server, an idle timeout) and is taken again
/// a second later; a fixed identity taken by another invocation in that second would take back
/// the live holder's leases and keep it from its lock until it ends. A dead holder's leases are
/// over as soon as its lock is free (the workers' lease check), so nothing waits for them, and
/// no lock file is involved.
async fn cli_instance(db: &Db) -> Result<engine::instance::InstanceLock, StartError> {
    let host = engine::instance::host_name();
    let invalid = |error: engine::instance::InstanceError| StartError::Invalid(error.to_string());
    let postgres = db.backend() == crate::server::db::Backend::Postgres;
    let pid = std::process::id();
    for n in 1..=CLI_ENGINES {
        // On PostgreSQL a name is taken only when another process has the same host name and
        // process id (containers with their own process ids) or its lock key: the next one.
        let id = match (postgres, n) {
            (true, 1) => format!("{host}-cli-{pid}"),
            (true, n) => format!("{host}-cli-{pid}-{n}"),
            (false, 1) => format!("{host}-cli"),
            (false, n) => format!("{host}-cli-{n}"),
        };
        match engine::instance::InstanceLock::acquire_cli(db, &id).await {
            Err(engine::instance::InstanceError::AlreadyRunning(_)) => continue,
            acquired => return acquired.map_err(invalid),
        }
    }
    Err(StartError::Invalid(if postgres {
        format!(
            "the instance names {host}-cli-{pid} to {host}-cli-{pid}-{CLI_ENGINES} are all held \
             by other live processes; run this one once one has ended"
        )
    } else {
        format!(
            "{CLI_ENGINES} sync-inventory invocations already run their engines on this host \
             (instances {host}-cli to {host}-cli-{CLI_ENGINES}); run this one once one has ended"
        )
    }))
}

/// The engine `sync-inventory` runs when no serving instance is live: its instance lock (marked
/// as a command's) and its runner.
struct OwnEngine {
    instance: engine::instance::InstanceLock,
    /// A clone of the runner's worker, to ask which of its runs it can never claim.
    worker: engine::worker::Worker,
    stop: tokio::sync::watch::Sender<bool>,
    runner: tokio::task::JoinHandle<()>,
}

impl OwnEngine {
    /// Takes the command's instance lock and starts a runner that claims only the runs `ids`.
    async fn start(
        db: &Db,
        graph: GraphAccess,
        wake: &engine::runner::WakeUp,
        ids: &[i64],
    ) -> Result<Self, StartError> {
        let instance = cli_instance(db).await?;
        let worker = worker_with(db, graph, |client| {
            engine::operation::Registry::default()
                .with(engine::ops::inventory_sync::InventorySync::new(client))
        })
        .as_instance(&instance)
        .with_only_runs(ids);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let runner = tokio::spawn(engine::runner::run(
            worker.clone(),
            wake.clone(),
            db.clone(),
            Duration::from_secs(1),
            stopped,
        ));
        Ok(Self {
            instance,
            worker,
            stop,
            runner,
        })
    }

    /// Stops the runner (a run it was still on is released for another instance at once) and
    /// lets the instance lock go.
    async fn stop(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(10), self.runner)
            .await
            .is_err()
        {
            tracing::warn!("the worker did not stop in time; its lease will expire");
        }
        drop(self.instance);
    }
}

/// How a run ended, as `sync-inventory` reports it.
#[derive(sqlx::FromRow)]
struct EndedRun {
    status: crate::domain::RunStatus,
    summary: Option<String>,
    reason_code: Option<String>,
    failure_message: Option<String>,
}

/// How each of the runs `ids` ended, in their order; `None` for a run still queued or running.
async fn ended_runs(db: &Db, ids: &[i64]) -> Result<Vec<Option<EndedRun>>, StartError> {
    let mut ended = Vec::with_capacity(ids.len());
    for id in ids {
        let run: EndedRun = sqlx::query_as(
            "SELECT status, summary, reason_code, failure_message FROM runs WHERE id = $1",
        )
        .bind(id)
        .fetch_one(db.pool())
        .await?;
        ended.push((!run.status.is_active()).then_some(run));
    }
    Ok(ended)
}

/// Brings a database up to date: the app's migrations (the sessions' table included).
pub async fn prepare(db: &Db) -> Result<(), StartError> {
    db.migrate().await?;
    Ok(())
}

/// Reads a new password from the first line of standard input and hashes it.
async fn read_password_hash() -> Result<String, StartError> {
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']).to_owned();
    let chars = password.chars().count();
    if chars < auth::password::MIN_CHARS {
        return Err(StartError::Invalid(format!(
            "the password (first line of standard input) needs at least {} characters",
            auth::password::MIN_CHARS
        )));
    }
    // Sign-in refuses a longer one before hashing, so such an account could never sign in.
    if chars > PASSWORD_MAX_CHARS {
        return Err(StartError::Invalid(format!(
            "the password (first line of standard input) may have at most {PASSWORD_MAX_CHARS} characters"
        )));
    }
    auth::password::hash(password)
        .await
        .map_err(|_| StartError::Invalid("could not hash the password".into()))
}

/// `set-password`: a new password for an existing account, which ends all of its sessions.
async fn set_password(db: &Db, args: SetPasswordArgs) -> Result<(), StartError> {
    let email = Email::parse(&args.email)?;
    let hash = read_password_hash().await?;
    let user_id = auth::users::set_password(db, &email, &hash)
        .await?
        .ok_or_else(|| {
            StartError::Invalid(format!(
                "no account has the e-mail {}: create it with create-user",
                email.as_str()
            ))
        })?;
    audit::record(
        db,
        audit::AuditEvent {
            tenant_id: None,
            actor_user_id: None,
            action: "user.set_password",
            target: format!("user:{user_id}"),
            details: serde_json::json!({ "via": "cli" }),
        },
    )
    .await;
    println!(
        "password of {} set; its sessions are signed out",
        email.as_str()
    );
    Ok(())
}

async fn create_user(db: &Db, args: CreateUserArgs) -> Result<(), StartError> {
    let email = Email::parse(&args.email)?;
    let role = match args.role.as_deref() {
        Some(raw) => Some(Role::parse(raw).ok_or_else(|| {
            StartError::Invalid(format!(
                "unknown role {raw:?}: use owner, manager, operator or readonly"
            ))
        })?),
        None => None,
    };
    let name = parse_display_name(&args.name)?;
    // Parsed as every other command parses it, so an upper-case GUID names the tenant too.
    let tenant = args
        .tenant
        .as_deref()
        .map(TenantExternalId::parse)
        .transpose()?;
    let hash = read_password_hash().await?;
    if let (Some(tenant), Some(role)) = (&tenant, role) {
        auth::users::check_grant(db, &email, tenant.as_str(), role).await?;
    }
    let user_id = auth::users::upsert_user(db, &email, &name, &hash).await?;
    if args.admin {
        auth::users::make_admin(db, user_id).await?;
    }
    audit::record(
        db,
        audit::AuditEvent {
            tenant_id: None,
            actor_user_id: None,
            action: "user.create_or_reset",
            target: format!("user:{user_id}"),
            details: serde_json::json!({ "via": "cli", "admin": args.admin }),
        },
    )
    .await;
    if let (Some(tenant), Some(role)) = (tenant, role) {
        let granted = auth::users::grant(db, user_id, tenant.as_str(), role).await?;
        if granted.old_role != Some(role) {
            audit::record(
                db,
                audit::AuditEvent {
                    tenant_id: Some(granted.tenant_id),
                    actor_user_id: None,
                    action: "membership.grant",
                    target: format!("user:{user_id}"),
                    details: serde_json::json!({
                        "member_email": email.as_str(),
                        "old_role": granted.old_role.map(Role::as_str),
                        "new_role": role.as_str(),
                        "via": "cli",
                    }),
                },
            )
            .await;
        }
        tenants::invitations::record_withdrawn(db, granted.tenant_id, None, &granted.revoked).await;
    }
    println!("user {} ready (id {user_id})", email.as_str());
    Ok(())
}

/// What `serve` checks and takes before the database is migrated: everything that can refuse
/// the start for its configuration or its surroundings without reading the database (the public
/// URL, the demo secret file, the listeners, the instance lock).
struct ServeStart {
    public_url: Option<String>,
    demo_secret: Option<graph::ClientSecret>,
    listener: tokio::net::TcpListener,
    addr: std::net::SocketAddr,
    instance_id: String,
    /// Held until the process ends: while it is, the identity's runs are this process's.
    instance: engine::instance::InstanceLock,
    metrics: Option<(
        metrics_exporter_prometheus::PrometheusHandle,
        tokio::net::TcpListener,
    )>,
}

impl ServeStart {
    async fn prepare(db: &Db, args: &ServeArgs) -> Result<Self, StartError> {
        let public_url = args
            .public_origin()
            .map_err(StartError::Invalid)?
            .map(|origin| origin.as_str().to_owned());
        let demo_secret = match (&args.demo, args.demo_graph_secret_file.as_deref()) {
            (true, Some(path)) => Some(read_demo_graph_secret(path)?),
            _ => None,
        };
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        let addr = listener.local_addr()?;
        let metrics = match args.metrics_addr {
            Some(metrics_addr) => {
                let handle = metrics::install().map_err(StartError::Invalid)?;
                let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
                Some((handle, listener))
            }
            None => None,
        };
        let instance_id = args
            .instance_id
            .clone()
            .filter(|id| !id.trim().is_empty())
            .unwrap_or_else(|| engine::instance::default_id(addr));
        let instance = engine::instance::InstanceLock::acquire(db, &instance_id)
            .await
            .map_err(|error| StartError::Invalid(error.to_string()))?;
        Ok(Self {
            public_url,
            demo_secret,
            listener,
            addr,
            instance_id,
            instance,
            metrics,
        })
    }
}

async fn serve(
    db: Db,
    graph_config: GraphConfig,
    keys: Option<Arc<KeyRing>>,
    args: ServeArgs,
    start: ServeStart,
) -> Result<(), StartError> {
    panics::install_counter();
    let ServeStart {
        public_url,
        demo_secret,
        listener,
        addr,
        instance_id,
        instance,
        metrics: metrics_listener,
    } = start;
    // Held until the server stops: in demo mode the simulator is the app's Graph.
    let demo = if args.demo {
        seed::seed_demo(&db).await?;
        let demo = seed::start_demo_graph_with_secret(args.demo_graph_port, demo_secret).await?;
        demo_history(&db, &demo).await?;
        Some(demo)
    } else {
        None
    };
    let mut graph = match &demo {
        Some(demo) => demo.access.clone(),
        None => GraphAccess {
            client: GraphClient::new(graph_config)?,
            secrets: SecretResolver::default(),
        },
    };
    graph.secrets = graph.secrets.with_keys(keys.clone());
    if keys.is_none() {
        tracing::warn!(
            "no --secret-key-file: client secrets cannot be entered in the app, and stored \
             encrypted secrets cannot be used"
        );
    }
    if public_url.is_none() && addr.ip().is_unspecified() {
        tracing::warn!(
            "no --public-url while listening on {addr}: browsers reach the app under another \
             address than http://{addr}, so every sign-in and change is refused as cross-site; \
             set --public-url (TENANTATLAS_PUBLIC_URL) to the address browsers use"
        );
    }
    let public_origin = public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let settings = Settings {
        sessions: SessionSettings {
            idle: Duration::from_secs(args.session_idle_minutes.max(1) * 60),
            max_age: Duration::from_secs(args.session_max_hours * 3600),
            secure: public_origin.starts_with("https://"),
        },
        public_origin,
        public_url,
        trusted_proxies: TrustedProxies::new(args.trusted_proxy.clone()),
    };
    let state = AppState::new(
        db.clone(),
        http::leptos_options(&args.site_root, addr),
        settings,
    )
    .with_graph(graph.clone())
    .with_secret_keys(keys);
    // The worker shares the process's Graph client (its tokens and per-tenant limiters).
    let (stop_worker, worker_stopped) = tokio::sync::watch::channel(false);
    let worker = runs_worker(&db, graph)
        .with_runs_at_once(args.worker_concurrency as usize)
        .as_instance(&instance);
    let runner = tokio::spawn(engine::runner::run(
        worker,
        state.wake.clone(),
        db.clone(),
        Duration::from_secs(args.worker_poll_seconds),
        worker_stopped,
    ));
    tokio::spawn(auth::session::delete_expired_forever(
        db.clone(),
        Duration::from_secs(600),
    ));
    tokio::spawn(auth::throttle::prune_forever(
        db.clone(),
        Duration::from_secs(60),
    ));
    if let Some((handle, listener)) = metrics_listener {
        tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
        let router = metrics::router(handle, db.clone());
        tokio::spawn(async move {
            let options = http::ServeOptions::default();
            if let Err(error) = http::serve_metrics(listener, router, options).await {
                tracing::error!(%error, "the metrics listener stopped");
            }
        });
    }
    tracing::info!("TenantAtlas is listening on http://{addr} as instance {instance_id:?}");
    if let Some(demo) = &demo {
        tracing::info!(
            "demo mode: open http://{addr}/ and sign in as {} with the password {}",
            seed::DEMO_ADMIN_EMAIL,
            seed::DEMO_PASSWORD
        );
        tracing::info!(
            "demo Graph simulator on {} (knobs: POST /_sim/knobs, request log: GET /_sim/counters)",
            demo.sim.base_url
        );
    }
    http::serve_with_grace(
        listener,
        state,
        async move {
            shutdown_signal().await;
            let _ = stop_worker.send(true);
        },
        Duration::from_secs(args.shutdown_grace_seconds),
    )
    .await?;
    // Let the worker give back its lease, so another instance resumes the run at once.
    if tokio::time::timeout(Duration::from_secs(10), runner)
        .await
        .is_err()
    {
        tracing::warn!("the worker did not stop in time; its lease will expire");
    }
    drop(demo);
    drop(instance);
    // A request given up at the grace deadline may still hold a connection; closing waits
    // for it only briefly, the process's end releases it anyway.
    if tokio::time::timeout(Duration::from_secs(5), db.close())
        .await
        .is_err()
    {
        tracing::warn!("the database connections were not released in time");
    }
    tracing::info!("stopped");
    Ok(())
}

/// The demo simulator's client secret: the first line of `path`, checked like a secret typed
/// into the app.
fn read_demo_graph_secret(path: &std::path::Path) -> Result<graph::ClientSecret, StartError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        StartError::Invalid(format!(
            "--demo-graph-secret-file {}: {error}",
            path.display()
        ))
    })?;
    tenants::connection::parse_secret(text.lines().next().unwrap_or_default()).map_err(|_| {
        StartError::Invalid(format!(
            "--demo-graph-secret-file {}: the first line is not a usable client secret",
            path.display()
        ))
    })
}

/// The run worker of this process, with every operation's handler, calling Graph through
/// `graph` (the credentials of each run's tenant are resolved by `graph` too).
pub fn runs_worker(db: &Db, graph: GraphAccess) -> engine::worker::Worker {
    worker_with(db, graph, |client| {
        engine::operation::Registry::full(client.clone(), client)
    })
}

/// A run worker like [`runs_worker`], with the handlers `registry` builds on the Graph client.
fn worker_with(
    db: &Db,
    graph: GraphAccess,
    registry: impl FnOnce(Arc<GraphClient>) -> engine::operation::Registry,
) -> engine::worker::Worker {
    use engine::worker::{CredentialsFailure, CredentialsSource, RunFailure, TokenCheck, Worker};
    let client = std::sync::Arc::new(graph.client.clone());
    // Only Entra ID's refusal of the app fails the run; a throttled or unreachable token
    // endpoint is the items' to retry.
    let token_client = graph.client.clone();
    let token_check: TokenCheck = std::sync::Arc::new(move |creds| {
        let client = token_client.clone();
        Box::pin(async move {
            let refusal = client.check_token(&creds).await.err()?.refusal?;
            Some(RunFailure {
                reason: crate::domain::reason_code::ReasonCode::AuthenticationFailed,
                message: sanitize::sanitize(&format!(
                    "Entra ID refused the tenant's app: {} Run a connection check after fixing it.",
                    refusal.words()
                )),
            })
        })
    });
    let loader_db = db.clone();
    let credentials: CredentialsSource = std::sync::Arc::new(move |tenant_id| {
        let (db, graph) = (loader_db.clone(), graph.clone());
        Box::pin(async move {
            graph
                .credentials(&db, tenant_id)
                .await
                .map_err(|error| match error {
                    // Not the tenant's credentials: the run is tried again later.
                    graph::credentials::CredentialsError::Database(error) => {
                        CredentialsFailure::Database(error)
                    }
                    // The run fails as for credentials that cannot be used, with the words a
                    // connection check knows apart: the secret was never tried, so the check
                    // stores no report (none that would refuse the tenant's runs once it is
                    // reconnected).
                    graph::credentials::CredentialsError::Disconnected => {
                        CredentialsFailure::Refused(RunFailure {
                            reason: crate::domain::reason_code::ReasonCode::AuthenticationFailed,
                            message: engine::ops::check_connection::DISCONNECTED.to_owned(),
                        })
                    }
                    error => CredentialsFailure::Refused(RunFailure {
                        reason: crate::domain::reason_code::ReasonCode::AuthenticationFailed,
                        message: format!("The tenant's Graph credentials cannot be used: {error}"),
                    }),
                })
        })
    });
    // A name of its own until `serve` names it after the instance (`Worker::as_instance`).
    let id = format!(
        "pid{}-{}",
        std::process::id(),
        crate::domain::Timestamp::now().millis()
    );
    Worker::with_source(db.clone(), registry(client), credentials, id).with_token_check(token_check)
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
