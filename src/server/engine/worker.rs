//! The durable worker: the run and its items are the queue. A worker claims a pending run (or a
//! running one whose lease expired) with a lease, has the run's operation handler process each
//! pending item, and records every outcome together with the run's counters in one transaction,
//! guarded by the lease: a worker that lost its lease writes nothing, so no item is done twice.
//! Work that fails with an error (not a dead owner) sends the run back to the queue after a
//! backoff, at most [`WORK_ATTEMPTS`] times; then the run ends `failed`.
//! Tests drive it step by step through [`Worker::try_execute_task`].

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sqlx::FromRow;
use tracing::Instrument;

use super::cancel::Cancels;
use super::graph_figures::{add_in, FiguresWriter};
use super::instance::{InstanceLock, LOCK_SPACE};
use super::operation::{Operation, Pending, Recorded, Registry, Run, Totals, Tx};
use crate::domain::graph_wait::GraphFigures;
use crate::domain::notification::NotificationLevel;
use crate::domain::reason_code::ReasonCode;
use crate::domain::routes;
use crate::domain::run::{Lane, OperationType};
use crate::domain::run_detail::ItemOutcome;
use crate::domain::{RunStatus, Timestamp};
use crate::server::db::{is_unique_violation, Backend, Db, Sql};
use crate::server::graph::activity::GraphActivity;
use crate::server::graph::interrupt::Interrupt;
use crate::server::graph::TenantCredentials;
use crate::server::metrics;
use crate::server::sanitize::sanitize;

/// Why a whole run cannot proceed (e.g. the tenant's credentials are missing or rejected).
#[derive(Debug, Clone)]
pub struct RunFailure {
    pub reason: ReasonCode,
    pub message: String,
}

/// A boxed future, so credential loading can be swapped in tests.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Loads the Graph credentials of a tenant (by database id); every failure fails the run.
pub type CredentialsLoader =
    Arc<dyn Fn(i64) -> BoxFuture<Result<TenantCredentials, RunFailure>> + Send + Sync>;

/// Why a tenant's credentials were not loaded.
#[derive(Debug)]
pub enum CredentialsFailure {
    /// They cannot be used (missing, rejected, disconnected): the run fails with this.
    Refused(RunFailure),
    /// The database could not be read: the run goes back to the queue (a failed attempt).
    Database(sqlx::Error),
}

/// Loads the Graph credentials of a tenant, telling a database error from unusable credentials.
pub type CredentialsSource =
    Arc<dyn Fn(i64) -> BoxFuture<Result<TenantCredentials, CredentialsFailure>> + Send + Sync>;

/// Asks the token endpoint for a tenant's token (`credentials`) before a run's items go to
/// Graph; `Some` when Entra ID refuses the app, which fails the run as a whole. Any other answer
/// (throttled, unreachable) lets the items go on, each with the client's retries.
pub type TokenCheck = Arc<dyn Fn(TenantCredentials) -> BoxFuture<Option<RunFailure>> + Send + Sync>;

/// Called with a run's id right before a run that failed as a whole ends, once its conclusion
/// has settled what it could ([`Worker::with_before_failed_end`]): tests commit a cancel there.
pub type BeforeFailedEnd = Arc<dyn Fn(i64) -> BoxFuture<()> + Send + Sync>;

/// How many claims of a run in a row may end in an error of the work itself (a database error,
/// a panic while processing) before the run ends `failed` (`work_failed_repeatedly`, with the
/// last error's sanitized text). A claim that records outcomes makes progress and starts the
/// count again, so a long run is not given up over errors scattered through its life. A claim
/// taken over because its owner died (crash, `kill -9`, a lost lease) does not count: only the
/// worker that saw the error counts it ([`Worker::work_failed`]).
pub const WORK_ATTEMPTS: i64 = 5;

/// The pause before a run whose work failed is claimed again; it doubles with each failure of
/// the run in a row (see [`WORK_ATTEMPTS`]), up to [`WORK_BACKOFF_MAX`] (2, 4, 8, 16 s: about
/// half a minute before the run ends).
pub const WORK_BACKOFF: Duration = Duration::from_secs(2);

/// The longest pause between two failed claims of a run.
pub const WORK_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// The error of an execution that cannot end its run although nothing else holds it: items are
/// still pending (their processing stopped early). The run goes back to the queue.
fn unfinished_items() -> sqlx::Error {
    sqlx::Error::Protocol("the run's work ended with items still pending".into())
}

/// What one step of the worker did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A run was claimed and worked on until it ended (or the lease was lost).
    TaskCompleted { run_id: i64 },
    /// Nothing to do.
    EmptyQueue,
}

/// Outcomes written in one transaction at most (those ready when the previous batch is written).
const RECORD_BATCH: usize = 100;

/// How long a batch of outcomes waits to fill while more are coming.
const BATCH_FILL: Duration = Duration::from_millis(50);

/// Outcomes that may wait for the recorder, beyond the items in flight: while a batch is being
/// written the captures go on, and only a new item waits once this many are waiting (the
/// memory an unrecorded run holds stays bounded).
const RECORD_BACKLOG: usize = 2 * RECORD_BATCH;

/// [`outcomes_sql`]'s guard for a batch: only items still pending.
pub const PENDING_ONLY: &str = " AND run_items.outcome || '' = 'pending'";
/// [`outcomes_sql`]'s guard for items a cancel skipped while their capture was in flight.
const CANCELLED_ONLY: &str = " AND run_items.outcome || '' = 'skipped' \
     AND run_items.reason_code = 'cancelled' \
     AND EXISTS (SELECT 1 FROM runs r WHERE r.id = run_items.run_id AND r.status = 'cancelled')";

/// The statement that writes a batch's outcomes (item id, outcome) to the run's items that
/// `guard` admits.
///
/// Its plan must not depend on what PostgreSQL knows of the run. A new run's items (written at
/// its claim), or any table that grew since it was last analysed, are estimated at a row or two
/// for a given run and outcome; with the run and outcome as indexable conditions, PostgreSQL then
/// walked every pending item of the run through `(run_id, outcome)` for each batch, joined to
/// the batch row by row: a 10,000-item run spent most of its database time there
/// (`benches/runs.rs`, `docs/benchmarks.md`). So the items are found by their ids alone (`id
/// IN (…)`, the primary key: at most a batch's rows whatever the plan), and the run and the
/// outcome are only checked (`+run_id`, `outcome || ''`: expressions no index serves).
pub fn outcomes_sql<'a>(
    run_id: i64,
    now: i64,
    outcomes: impl IntoIterator<Item = (i64, &'a Recorded)>,
    guard: &str,
) -> Sql {
    let outcomes: Vec<(i64, &Recorded)> = outcomes.into_iter().collect();
    let mut sql = Sql::new("WITH v (id, outcome, reason_code, message) AS (VALUES ");
    sql.rows(&outcomes, |sql, (item_id, done)| {
        sql.int(*item_id)
            .push(", ")
            .text(done.outcome().as_str())
            .push(", ")
            .opt_text(done.reason().map(ReasonCode::as_str))
            .push(", ")
            .opt_text(done.message());
    })
    .push(
        ") UPDATE run_items SET outcome = v.outcome, reason_code = v.reason_code, \
         message = v.message, attempts = run_items.attempts + 1, finished_at = ",
    )
    .int(now)
    .push(" FROM v WHERE run_items.id = v.id AND run_items.id IN (")
    .list(&outcomes, |sql, (item_id, _)| {
        sql.int(*item_id);
    })
    .push(") AND +run_items.run_id = ")
    .int(run_id)
    .push(guard);
    sql
}

/// How often a claim that lost a race to another instance's claim is tried again at once.
const CLAIM_RETRIES: usize = 3;

/// How many runs one look at the queue keeps, in the claim's order, for the claims that follow.
const CANDIDATES: usize = 32;

/// How long the runs one look at the queue found are claimed from before the queue is looked
/// at again. Runs that became claimable after a look (a tenant freed by its run's end, a new
/// submit) have waited less than every run it found, so they come after them anyway; only a run
/// whose owner died meanwhile waits for the next look.
const CANDIDATES_FRESH: Duration = Duration::from_millis(500);

/// The runs the last look at each lane's queue found and no claim has tried yet. Shared by a
/// worker's clones (the runner's tasks); each worker looks at the queue for itself.
#[derive(Clone, Default)]
struct Candidates(Arc<std::sync::Mutex<HashMap<Lane, Look>>>);

/// When a lane's queue was looked at, and the runs found that no claim has tried yet.
type Look = (Instant, VecDeque<i64>);

impl Candidates {
    /// The looks by lane; a panic elsewhere while they were held leaves nothing half-written.
    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<Lane, Look>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next run to try in `lane`, while the look that found it is fresh.
    fn next(&self, lane: Lane) -> Option<i64> {
        let mut lanes = self.lanes();
        let (looked, ids) = lanes.get_mut(&lane)?;
        if looked.elapsed() > CANDIDATES_FRESH {
            ids.clear();
        }
        ids.pop_front()
    }

    fn keep(&self, lane: Lane, ids: Vec<i64>) {
        self.lanes().insert(lane, (Instant::now(), ids.into()));
    }

    /// Forgets every look: a run this worker released comes before the runs it found.
    fn forget(&self) {
        self.lanes().clear();
    }
}

/// Aborts a task when dropped: a run's processing when the run is abandoned (lease lost, error,
/// or the worker stopped), a runner's listener when the runner stops.
pub(super) struct AbortOnDrop(pub(super) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One worker; several (in one process or many) may share a database.
#[derive(Clone)]
pub struct Worker {
    db: Db,
    registry: Arc<Registry>,
    credentials: CredentialsSource,
    /// Asked once per run with items before they are processed (`None`: the items find out).
    token_check: Option<TokenCheck>,
    /// Awaited right before a run that failed as a whole ends (`None` but in tests).
    before_failed_end: Option<BeforeFailedEnd>,
    /// Identifies this worker's leases.
    id: String,
    lease: Duration,
    /// Items processed at once per run (the Graph client's per-tenant limiter paces them).
    items_at_once: usize,
    /// Runs worked on at once per lane by the runner.
    runs_at_once: usize,
    /// Whether the worker's identity is held by an instance lock (`serve` always): then on
    /// PostgreSQL it takes runs whose owner's lock is free without waiting for their lease.
    locked: bool,
    /// The cancellation signals of this process (a cancel here, or another instance's NOTIFY).
    cancels: Cancels,
    /// The runs the last look at the queue found, claimed in turn.
    candidates: Candidates,
    /// The first pause before a run whose work failed is claimed again ([`WORK_BACKOFF`]).
    backoff: Duration,
    /// Whether the instance lock is held now (`as_instance`): no claim while it is not.
    lock_held: Option<Arc<AtomicBool>>,
    /// The runs this worker (and its clones) executes now: never claimed again by it.
    executing: Arc<std::sync::Mutex<HashMap<i64, usize>>>,
    /// Only these runs are claimed (`with_only_runs`), written into the claim's SQL as
    /// integers; `None`: any run of a handled operation.
    only_runs: Option<Arc<str>>,
    /// How far this worker's clock runs ahead of its host's ([`Self::with_clock_offset`]).
    clock_offset: Duration,
}

/// A claimed run as stored: its operation, and its input not yet read by the handler.
pub struct ClaimedRun {
    pub operation: OperationType,
    pub run: Run<String>,
    /// How many claims of the run ended in an error of the work ([`WORK_ATTEMPTS`]).
    pub work_errors: i64,
    /// The last of those errors, sanitized.
    last_work_error: Option<String>,
    /// The claim's transaction when the runner claimed ([`Worker::claim_open`]): the run's items
    /// are written in it, so the claim and the plan cost one commit. `None` once committed.
    open: Option<Tx>,
}

/// A run counted as executing by a worker while this lives ([`Worker::executing`]).
pub struct Executing {
    runs: Arc<std::sync::Mutex<HashMap<i64, usize>>>,
    run_id: i64,
}

impl Drop for Executing {
    fn drop(&mut self) {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(held) = runs.get_mut(&self.run_id) {
            *held -= 1;
            if *held == 0 {
                runs.remove(&self.run_id);
            }
        }
    }
}

/// The row a claim returns: the stored operation (only handled ones are claimed) and the run.
#[derive(FromRow)]
struct ClaimRow {
    operation_type: String,
    work_errors: i64,
    last_work_error: Option<String>,
    #[sqlx(flatten)]
    run: Run<String>,
}

/// The row a run's end returns: its final status and counters, for the notification.
#[derive(FromRow)]
struct FinishedRow {
    status: RunStatus,
    #[sqlx(flatten)]
    totals: Totals,
    started_at: Option<i64>,
    summary: Option<String>,
    /// The tenant's external id, for the notification's link.
    tenant_external_id: String,
}

/// How a run ends: its failure, the last batch's counts and the Graph figures not yet written.
struct End {
    failure: Option<RunFailure>,
    counts: Counts,
    figures: GraphFigures,
    /// How many items are still pending when it ends: the last batch's, written right after
    /// the end in the same transaction. The run does not end while any other is pending.
    pending: i64,
}

/// What writing a batch of outcomes did.
enum Recording {
    Recorded,
    /// It was the last batch, and the run ended with it.
    Ended,
    /// Nothing was written: this worker no longer holds the run.
    LeaseLost,
}

/// Whether a claim still holds its run, as [`Worker::hold_lease`] found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hold {
    /// The run is running under this claim.
    Running,
    /// A cancel ended the run while this claim worked on it: the captures in flight are still
    /// recorded, but no new item may start.
    Cancelled,
    /// Another claim holds the run, or it ended: nothing is written.
    Lost,
}

impl Hold {
    fn held(self) -> bool {
        self != Self::Lost
    }
}

/// Outcomes of a batch of items, added to the run's counters.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    succeeded: i64,
    failed: i64,
    skipped: i64,
    /// Items a cancel had skipped (`cancelled`) whose capture was in flight and ended after it:
    /// their outcome replaces the skip.
    uncancelled: i64,
}

impl Counts {
    fn add(&mut self, outcome: ItemOutcome) {
        match outcome {
            ItemOutcome::Succeeded => self.succeeded += 1,
            ItemOutcome::Failed => self.failed += 1,
            ItemOutcome::Skipped => self.skipped += 1,
            // `Recorded` cannot hold it; counted nowhere if it ever did.
            ItemOutcome::Pending => {}
        }
    }
}

impl Worker {
    pub fn new(
        db: Db,
        registry: Registry,
        credentials: CredentialsLoader,
        id: impl Into<String>,
    ) -> Self {
        let credentials: CredentialsSource = Arc::new(move |tenant_id| {
            let load = credentials(tenant_id);
            Box::pin(async move { load.await.map_err(CredentialsFailure::Refused) })
        });
        Self::with_source(db, registry, credentials, id)
    }

    /// A worker whose credentials source tells database errors (a failed attempt, the run goes
    /// back to the queue) from unusable credentials (the run fails).
    pub fn with_source(
        db: Db,
        registry: Registry,
        credentials: CredentialsSource,
        id: impl Into<String>,
    ) -> Self {
        Self {
            db,
            registry: Arc::new(registry),
            credentials,
            token_check: None,
            before_failed_end: None,
            id: id.into(),
            lease: Duration::from_secs(60),
            items_at_once: 8,
            runs_at_once: 4,
            locked: false,
            cancels: Cancels::default(),
            candidates: Candidates::default(),
            backoff: WORK_BACKOFF,
            lock_held: None,
            executing: Arc::default(),
            only_runs: None,
            clock_offset: Duration::ZERO,
        }
    }

    /// Claims only the runs `ids` (none when it is empty): `sync-inventory` works on the runs it
    /// queued or joined, and leaves every other run to the serving instances.
    pub fn with_only_runs(mut self, ids: &[i64]) -> Self {
        // Integers of the program's own, not input: written into the SQL as they are.
        let list = ids
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.only_runs = Some(if list.is_empty() {
            "NULL".into()
        } else {
            list.into()
        });
        self
    }

    /// The condition that the run `id` (a column) is one this worker may claim.
    fn run_allowed(&self, id: &str) -> String {
        match &self.only_runs {
            Some(list) => format!("{id} IN ({list})"),
            None => "TRUE".to_owned(),
        }
    }

    /// Pauses `first` (doubling, see [`WORK_BACKOFF`]) before a run whose work failed is claimed
    /// again (tests shorten it).
    pub fn with_work_backoff(mut self, first: Duration) -> Self {
        self.backoff = first;
        self
    }

    /// Checks the tenant's token with `check` before a run's items are processed, so a secret
    /// the tenant rejects fails the run as a whole with one request to the token endpoint.
    pub fn with_token_check(mut self, check: TokenCheck) -> Self {
        self.token_check = Some(check);
        self
    }

    /// Awaits `hook` with the run's id right before a run that failed as a whole ends, after its
    /// conclusion: tests commit a cancel there, which the end then finds.
    pub fn with_before_failed_end(mut self, hook: BeforeFailedEnd) -> Self {
        self.before_failed_end = Some(hook);
        self
    }

    /// Watches the cancellation signals in `cancels` (the runner passes its wake-up's).
    pub fn with_cancels(mut self, cancels: Cancels) -> Self {
        self.cancels = cancels;
        self
    }

    /// Works under the identity `lock` holds: its leases are named after the instance, and
    /// liveness comes from the instance locks (see `instance`).
    pub fn as_instance(mut self, lock: &InstanceLock) -> Self {
        self.id = lock.id().to_owned();
        self.locked = true;
        self.lock_held = Some(lock.held());
        self
    }

    /// Runs this worker's clock `offset` ahead of its host's wherever it reads it for a lease
    /// (and for a claim's `started_at`): tests of instances whose clocks differ. On PostgreSQL
    /// leases are written and judged by the database's clock ([`Self::lease_now`]), so there
    /// it changes no lease; on SQLite (one process, one clock) leases follow it.
    pub fn with_clock_offset(mut self, offset: Duration) -> Self {
        self.clock_offset = offset;
        self
    }

    /// How long a claim lasts without a heartbeat (renewed every third of it while the run is
    /// worked on, and by every batch of outcomes).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How many items of a run are processed at once (at least one; 8 unless told).
    pub fn with_items_at_once(mut self, items: usize) -> Self {
        self.items_at_once = items.max(1);
        self
    }

    /// How many runs of each lane the runner works on at once (at least one).
    pub fn with_runs_at_once(mut self, runs: usize) -> Self {
        self.runs_at_once = runs.max(1);
        self
    }

    pub fn runs_at_once(&self) -> usize {
        self.runs_at_once
    }

    /// The identity this worker's leases are held under (`lease_owner`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Claims one run (bulk first, then interactive) and works on it to its end. An error of
    /// the work is counted on the run ([`Self::work_failed`]) and returned.
    pub async fn try_execute_task(&self) -> Result<Outcome, sqlx::Error> {
        for lane in Lane::ALL {
            if let Some(run) = self.claim(lane).await? {
                let (run_id, attempt) = (run.run.id, run.run.attempt);
                if let Err(error) = self.execute_claimed(run).await {
                    self.work_failed(run_id, attempt, &error.to_string())
                        .await?;
                    return Err(error);
                }
                return Ok(Outcome::TaskCompleted { run_id });
            }
        }
        Ok(Outcome::EmptyQueue)
    }

    /// Works on a claimed run to its end (or until the lease is lost), with its operation's
    /// handler, inside a span that names the run and its tenant.
    pub async fn execute_claimed(&self, claimed: ClaimedRun) -> Result<(), sqlx::Error> {
        let span = tracing::info_span!(
            "run",
            run_id = claimed.run.id,
            tenant_id = claimed.run.tenant_id,
            operation = claimed.operation.as_str()
        );
        // One less active run however the work ends (also when its task is aborted).
        struct Active;
        impl Drop for Active {
            fn drop(&mut self) {
                metrics::active_runs(-1.0);
            }
        }
        metrics::active_runs(1.0);
        let _active = Active;
        // Known as executing here while it is, so that this worker never claims it again
        // meanwhile (its instance lock may look free for a moment, see `instance`).
        let (run_id, attempt) = (claimed.run.id, claimed.run.attempt);
        let _executing = self.executing(run_id);
        let worked = match self.registry.execute(self.clone(), claimed) {
            Some(work) => work.instrument(span).await,
            // The claim only takes operations with a handler.
            None => Ok(()),
        };
        // However the work ended, this claim writes nothing more to the run.
        if let Err(error) = self.let_go_of_cancelled(run_id, attempt).await {
            tracing::warn!(
                run_id,
                %error,
                "could not settle the cancelled run; its lease expires on its own"
            );
        }
        worked
    }

    /// Lets go of claim `attempt` of `run_id` if a cancel ended the run: its in-flight outcomes
    /// and its conclusion (a restore's summary) are written, so the run is settled
    /// (`runs::queries`) and its pages stop polling. Nothing for a run that is not cancelled:
    /// its end cleared the lease, or it goes back to the queue ([`Self::work_failed`]).
    async fn let_go_of_cancelled(&self, run_id: i64, attempt: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE runs SET lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $2 AND attempt = $3 AND status = 'cancelled' \
               AND lease_expires_at IS NOT NULL",
        )
        .bind(run_id)
        .bind(&self.id)
        .bind(attempt)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Counts run `run_id` as executing here until the guard is dropped: this worker claims
    /// it again only once every guard of it is gone. [`Self::execute_claimed`] holds one while
    /// it works; the runner holds one from its claim until it has counted a failure of the
    /// work ([`Self::work_failed`]), so that its next claim takes neither a run whose task has
    /// yet to start nor one whose claim rolled back with an error not counted yet (claimable
    /// at once: a second execution beside the first, with no pause).
    pub fn executing(&self, run_id: i64) -> Executing {
        *self.executing_runs().entry(run_id).or_insert(0) += 1;
        Executing {
            runs: Arc::clone(&self.executing),
            run_id,
        }
    }

    /// The runs this worker executes now, each with the guards held on it ([`Self::executing`]).
    fn executing_runs(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        self.executing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts an error of the work on claim `attempt` of `run_id` (`error` is sanitized before
    /// it is stored) and gives the run back to the queue after a backoff ([`WORK_BACKOFF`]): the
    /// lease is set to expire then, and the claim's Graph wait is cleared (nothing waits now). Once [`WORK_ATTEMPTS`] claims in a row failed (a batch of
    /// outcomes recorded in between starts the count again, see [`Self::hold_lease`]), the
    /// lease expires at once and the next claim ends the run `failed`. A claim whose
    /// transaction rolled back with the error ([`Self::claim_open`]: it commits with the run's
    /// items) is counted too ([`Self::count_rolled_back_claim`]). Nothing when this claim no
    /// longer holds the run.
    pub async fn work_failed(
        &self,
        run_id: i64,
        attempt: i64,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let before: Option<i64> = sqlx::query_scalar(
            "SELECT work_errors FROM runs \
             WHERE id = $1 AND lease_owner = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(run_id)
        .bind(&self.id)
        .bind(attempt)
        .fetch_optional(self.db.pool())
        .await?;
        let Some(before) = before else {
            return self.count_rolled_back_claim(run_id, attempt, error).await;
        };
        let errors = before + 1;
        // The lease expires after the backoff (by the lease clock, see `lease_now`), or at once
        // (0) once the attempts are used up.
        // The claim that gives up comes at once; once a give-up rolled back too, with a pause
        // like any other, so that a give-up that keeps failing never spins on the run.
        let give_up = errors == WORK_ATTEMPTS;
        let pause = backoff(self.backoff, errors).as_millis() as i64;
        let now = self.lease_now("$9");
        // The wait this claim wrote goes with it: nothing waits on Graph for the run until the
        // next claim writes its own.
        sqlx::query(&format!(
            "UPDATE runs SET work_errors = $1, last_work_error = $2, \
             lease_expires_at = CASE WHEN $3 THEN 0 ELSE {now} + $8 END, \
             graph_wait_reason = NULL, graph_wait_until = NULL \
             WHERE id = $4 AND lease_owner = $5 AND attempt = $6 AND status = 'running' \
               AND work_errors = $7"
        ))
        .bind(errors)
        .bind(sanitize(error))
        .bind(give_up)
        .bind(run_id)
        .bind(&self.id)
        .bind(attempt)
        .bind(before)
        .bind(pause)
        .bind(self.local_now())
        .execute(self.db.pool())
        .await?;
        self.candidates.forget();
        tracing::warn!(
            run_id,
            errors,
            limit = WORK_ATTEMPTS,
            "work on the run failed; it is claimed again after a pause"
        );
        Ok(())
    }

    /// Counts an error that rolled back claim `attempt` of `run_id` with it: the claim stays
    /// open until the run's items are written ([`Self::claim_open`]), so an error before (the
    /// operation's check, the items' insert, the commit itself) undid the claim, its `attempt`
    /// included, and without this the run would be claimed again at once, with no pause and
    /// no limit, holding its tenant's lane for as long as the error repeats. The claim is
    /// committed now, as it would have been, with the error counted and the lease of the
    /// backoff ([`Self::work_failed`]'s), fenced as a claim: only while no claim took the run
    /// since (its `attempt` is still the one before this claim's) and the run is still
    /// claimable (pending in a lane its tenant has free, or running with its lease over; not
    /// cancelled), while no other live instance works for its tenant. Nothing otherwise.
    async fn count_rolled_back_claim(
        &self,
        run_id: i64,
        attempt: i64,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let before: Option<i64> =
            sqlx::query_scalar("SELECT work_errors FROM runs WHERE id = $1 AND attempt = $2")
                .bind(run_id)
                .bind(attempt - 1)
                .fetch_optional(self.db.pool())
                .await?;
        let Some(before) = before else {
            return Ok(());
        };
        let errors = before + 1;
        // The claim that gives up comes at once; once a give-up rolled back too, with a pause
        // like any other, so that a give-up that keeps failing never spins on the run.
        let give_up = errors == WORK_ATTEMPTS;
        let pause = backoff(self.backoff, errors).as_millis() as i64;
        // `$9` is this worker's now, for `started_at`; leases go by the lease clock.
        let now = self.lease_now("$9");
        let lease_over = self.lease_over("", &now);
        let here = self.tenant_not_elsewhere("runs.tenant_id", "$5", &now);
        let counted = sqlx::query(&format!(
            "UPDATE runs SET status = 'running', lease_owner = $5, attempt = $6, \
             started_at = COALESCE(started_at, $9), work_errors = $1, last_work_error = $2, \
             lease_expires_at = CASE WHEN $3 THEN 0 ELSE {now} + $8 END, \
             graph_wait_reason = NULL, graph_wait_until = NULL \
             WHERE id = $4 AND attempt = $6 - 1 AND work_errors = $7 AND {here} AND ( \
               (status = 'pending' AND NOT EXISTS (SELECT 1 FROM runs a \
                 WHERE a.tenant_id = runs.tenant_id AND a.lane = runs.lane \
                   AND a.status = 'running')) \
               OR (status = 'running' AND {lease_over}))"
        ))
        .bind(errors)
        .bind(sanitize(error))
        .bind(give_up)
        .bind(run_id)
        .bind(&self.id)
        .bind(attempt)
        .bind(before)
        .bind(pause)
        .bind(self.local_now())
        .execute(self.db.pool())
        .await?;
        self.candidates.forget();
        if counted.rows_affected() > 0 {
            tracing::warn!(
                run_id,
                errors,
                limit = WORK_ATTEMPTS,
                "work on the run failed before its claim committed; it is claimed again after a pause"
            );
        }
        Ok(())
    }

    /// At start only, before the first claim: gives up every lease held under this worker's
    /// identity, which can only be a previous life's (the identity is the instance lock's, held
    /// by one live process; a unique name in tests): its running runs become claimable at once,
    /// and the cancelled runs it still held are settled (nothing of that life writes to them any
    /// more; its claims are fenced by their `attempt`). How many runs went back to the queue.
    /// Never at shutdown: by then a newer life of the same identity may hold runs under it
    /// (this process froze and lost its lock meanwhile), which are not this process's to give
    /// up; the runner's shutdown lets go of its own claims ([`Self::let_go_of_claim`]).
    pub async fn release_previous_life(&self) -> Result<u64, sqlx::Error> {
        let released = sqlx::query(
            "UPDATE runs SET lease_expires_at = 0 WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(&self.id)
        .execute(self.db.pool())
        .await?;
        sqlx::query(
            "UPDATE runs SET lease_expires_at = NULL \
             WHERE lease_owner = $1 AND status = 'cancelled' AND lease_expires_at IS NOT NULL",
        )
        .bind(&self.id)
        .execute(self.db.pool())
        .await?;
        self.candidates.forget();
        Ok(released.rows_affected())
    }

    /// At shutdown, once its work stopped: gives up claim `attempt` of `run_id`, one of the
    /// claims the runner holds. A running run becomes claimable at once; a cancelled run the
    /// claim still held is settled (it writes nothing more). Nothing when the claim no longer
    /// holds the run (it ended, or another claim took it, possibly under this same identity:
    /// a newer life of this instance after this one froze). How many runs (0 or 1) went back
    /// to the queue.
    pub async fn let_go_of_claim(&self, run_id: i64, attempt: i64) -> Result<u64, sqlx::Error> {
        let released = self.release_lease(run_id, attempt).await?;
        self.let_go_of_cancelled(run_id, attempt).await?;
        Ok(released)
    }

    /// Gives up this worker's lease on one claim of a run, so that it is retried at once.
    pub async fn release_lease(&self, run_id: i64, attempt: i64) -> Result<u64, sqlx::Error> {
        let released = sqlx::query(
            "UPDATE runs SET lease_expires_at = 0 \
             WHERE id = $1 AND lease_owner = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(run_id)
        .bind(&self.id)
        .bind(attempt)
        .execute(self.db.pool())
        .await?;
        self.candidates.forget();
        Ok(released.rows_affected())
    }

    /// Renews the lease on the claim `attempt` of `run_id` every third of its length, until
    /// aborted (the claim let go) or the lease is lost. A cancelled run's lease is renewed too:
    /// the claim still records what was in flight (a restore's write past its point of no
    /// return may wait on Graph longer than a lease), and the run is settled only once it lets
    /// go (`runs::queries`); a claim that died lets it settle when the lease expires.
    async fn heartbeat(self, run_id: i64, attempt: i64) {
        let mut every = tokio::time::interval(self.lease / 3);
        every.tick().await; // the first tick is immediate; the claim has just set the lease
        loop {
            every.tick().await;
            // A cancelled run whose lease is cleared was let go of (`let_go_of_cancelled`,
            // `let_go_of_claim`, `release_previous_life`), and one whose lease ran out (a
            // stalled heartbeat) reads settled and may have been resumed: a renewal that comes
            // after must not take it back, so a cancelled run's lease is renewed only while it
            // still holds.
            let now = self.lease_now("$5");
            let renewed: Result<Option<RunStatus>, _> = sqlx::query_scalar(&format!(
                "UPDATE runs SET lease_expires_at = {now} + $1 \
                 WHERE id = $2 AND lease_owner = $3 AND attempt = $4 \
                   AND (status = 'running' \
                     OR (status = 'cancelled' AND lease_expires_at >= {now})) \
                 RETURNING status"
            ))
            .bind(self.lease_ms())
            .bind(run_id)
            .bind(&self.id)
            .bind(attempt)
            .bind(self.local_now())
            .fetch_optional(self.db.pool())
            .await;
            match renewed {
                Ok(Some(status)) => {
                    metrics::heartbeat();
                    if status == RunStatus::Cancelled {
                        // The safety net for a cancel whose NOTIFY was lost: no new item of
                        // this claim, and the lease held until the claim lets go.
                        self.cancels.stop(run_id, attempt);
                    }
                }
                Ok(None) => {
                    // Lost or ended: no new item of this claim (a later claim of the run in
                    // this process keeps going).
                    self.cancels.stop(run_id, attempt);
                    return;
                }
                Err(error) => tracing::warn!(%error, "could not renew the lease; retrying"),
            }
        }
    }

    /// The lease's length in milliseconds: a lease written at `now` lasts until `now` plus it.
    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Now by this worker's clock (its host's, [`Self::with_clock_offset`] ahead), in
    /// milliseconds since the epoch.
    fn local_now(&self) -> i64 {
        Timestamp::now().millis() + self.clock_offset.as_millis() as i64
    }

    /// "Now" for leases, as SQL: every lease is written (now plus its length) and judged
    /// (expired when before now) by this one clock. On PostgreSQL that is the database's
    /// (`statement_timestamp()`: one instant for the whole statement, so a claim judges and
    /// writes by the same now, and not the transaction's start, which a claim's open
    /// transaction may be long past), since instances on several hosts share the runs and a
    /// host whose clock is ahead would otherwise see a live instance's leases expired and take
    /// its runs. On SQLite, one process with one clock, it is `local`: the placeholder the
    /// query binds to [`Self::local_now`] (unused, and harmless, on PostgreSQL).
    fn lease_now(&self, local: &str) -> String {
        match self.db.backend() {
            Backend::Postgres => {
                "(floor(extract(epoch FROM statement_timestamp()) * 1000))::BIGINT".to_owned()
            }
            Backend::Sqlite => local.to_owned(),
        }
    }

    /// Claims the next run of `lane`, committed: first a run whose lease expired (its owner is
    /// gone), then the oldest run of the tenant that has waited longest among the tenants
    /// without an active run in the lane. A tenant waits from its oldest queued run, or from the
    /// end of its last run that started (was claimed) when that came later, so a tenant that
    /// was just served queues behind the others, and one whose queued run was cancelled does
    /// not. In the bulk lane the partial unique index `runs_one_bulk_per_tenant` refuses
    /// a second active run of a tenant whoever claims it; a claim that loses that race tries
    /// again. One look at the queue finds the next few runs in that order, and the claims that
    /// follow take them one by one while they are still claimable (see [`CANDIDATES_FRESH`]):
    /// a claim is then one indexed `UPDATE`, not a look at every waiting tenant.
    pub async fn claim(&self, lane: Lane) -> Result<Option<ClaimedRun>, sqlx::Error> {
        let Some(mut claimed) = self.claim_open(lane).await? else {
            return Ok(None);
        };
        if let Some(mut tx) = claimed.open.take() {
            // Committed before the operation is known: durably, whatever it is.
            self.db.commit_durably(&mut tx).await?;
            tx.commit().await?;
        }
        Ok(Some(claimed))
    }

    /// [`Self::claim`] with the claim's transaction left open in the run: [`Self::execute_claimed`]
    /// writes the run's items in it and commits (or commits it at once when the run cannot
    /// proceed). Until then the run's row is locked, so nothing else writes to the run.
    pub async fn claim_open(&self, lane: Lane) -> Result<Option<ClaimedRun>, sqlx::Error> {
        if let Some(held) = &self.lock_held {
            if !held.load(Ordering::SeqCst) {
                // Without its instance lock this instance's own runs look orphaned: nothing is
                // claimed until the lock is back (see `instance`).
                return Ok(None);
            }
        }
        for _ in 0..CLAIM_RETRIES {
            // Lazy until the run's operation is known: `execute` makes it durable unless the
            // operation allows lazy commits.
            let mut tx = self.db.begin_lazy().await?;
            match self.try_claim(&mut tx, lane).await {
                // The transaction rolls back as it is dropped.
                Err(error) if is_unique_violation(&error) => continue,
                Err(error) => return Err(error),
                Ok(None) => {
                    tx.rollback().await?;
                    metrics::heartbeat();
                    return Ok(None);
                }
                Ok(Some((operation, row))) => {
                    metrics::heartbeat();
                    return Ok(Some(ClaimedRun {
                        operation,
                        run: row.run,
                        work_errors: row.work_errors,
                        last_work_error: row.last_work_error,
                        open: Some(tx),
                    }));
                }
            }
        }
        Ok(None)
    }

    /// This worker's queued runs (`with_only_runs`) that wait behind a run it cannot take over:
    /// a run of their tenant running in their lane, of an operation this worker has no handler
    /// for (or not one of its runs), whose owner stopped or died: on PostgreSQL between locked
    /// instances, its owner's instance lock is free; otherwise its lease expired. The lane is
    /// the tenant's until that run ends, and only an instance with its handler (`serve`) takes
    /// it over, so such a run of this worker's waits for one to come: `sync-inventory`'s
    /// engine, which handles syncs alone, tells its caller instead of waiting forever. A run
    /// whose owner is live is not stranded: it ends, and the lane is free again. Pairs of the
    /// queued run and the run it waits behind, by id; none without `with_only_runs`.
    pub async fn stranded_behind(&self) -> Result<Vec<(i64, i64)>, sqlx::Error> {
        if self.only_runs.is_none() {
            return Ok(Vec::new());
        }
        // The operation types are this program's own constants, not input: written into the SQL.
        let handled = self
            .registry
            .operations()
            .iter()
            .map(|operation| format!("'{}'", operation.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        // A run this worker may take over is one of its own runs of a handled operation.
        let not_taken_over = if handled.is_empty() {
            String::new()
        } else {
            format!(
                "AND NOT (o.operation_type IN ({handled}) AND {})",
                self.run_allowed("o.id")
            )
        };
        let now = self.lease_now("$1");
        // Between locked instances on PostgreSQL, only a free lock says the owner is gone: an
        // expired lease alone is also a live server's run between its polls (after a backoff
        // pause, or released at 0 by a SIGTERM while it restarts), which it takes over itself.
        let o_owner_gone = match (self.db.backend(), self.locked) {
            (Backend::Postgres, true) => self.owner_lock_free("o."),
            _ => format!("o.lease_expires_at < {now}"),
        };
        let allowed = self.run_allowed("q.id");
        sqlx::query_as(&format!(
            "SELECT q.id, o.id FROM runs q JOIN runs o \
               ON o.tenant_id = q.tenant_id AND o.lane = q.lane AND o.id <> q.id \
             WHERE {allowed} AND q.status = 'pending' AND o.status = 'running' {not_taken_over} \
               AND {o_owner_gone} \
             ORDER BY q.id, o.id"
        ))
        .bind(self.local_now())
        .fetch_all(self.db.pool())
        .await
    }

    /// The condition under which the lease of a running run (columns prefixed with `alias`) is
    /// over at `now` (SQL for the lease clock, [`Self::lease_now`]): it expired or, on PostgreSQL
    /// between locked instances, its owner's instance lock is free (the owner died). The lock's second key is the identity's `hashtext`, which
    /// `pg_locks` shows as an oid.
    fn lease_over(&self, alias: &str, now: &str) -> String {
        match (self.db.backend(), self.locked) {
            (Backend::Postgres, true) => format!(
                "({alias}lease_expires_at < {now} OR {})",
                self.owner_lock_free(alias)
            ),
            _ => format!("{alias}lease_expires_at < {now}"),
        }
    }

    /// PostgreSQL: the condition under which the instance lock of a run's lease owner (columns
    /// prefixed with `alias`) is held by no session: the owner stopped or died.
    fn owner_lock_free(&self, alias: &str) -> String {
        format!(
            "NOT EXISTS (SELECT 1 FROM pg_locks l \
               WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
                 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND l.classid = {LOCK_SPACE} AND l.objid = hashtext({alias}lease_owner)::oid)"
        )
    }

    /// The condition under which no other live instance works for the tenant `tenant` (a column
    /// or placeholder) now: none of the tenant's running runs, in either lane, is held by
    /// another owner (`me`: the placeholder for this worker's id) whose lease is not over.
    /// Each process paces a tenant's Graph requests with a limiter of its own, so a tenant whose
    /// runs went to two instances would get twice its budget, and a `Retry-After` seen by one
    /// would not pause the other: a tenant's runs are claimed by the instance that already works
    /// for it. A dead owner's runs do not hold the tenant (their lease is over), so they are
    /// taken over and the tenant's other runs claimed as before. Served by the partial index
    /// `runs_running_by_tenant` (migration 0017). A cancelled run whose lease another live
    /// owner still holds counts too: that claim still sends the run's requests in flight (and
    /// records them) until it lets go; served by `runs_cancelled_held_by_tenant` (migration
    /// 0027). (Its lease is NULL once let go of, and then `NOT lease_over` is not true.)
    fn tenant_not_elsewhere(&self, tenant: &str, me: &str, now: &str) -> String {
        let e_lease_over = self.lease_over("e.", now);
        let c_lease_over = self.lease_over("c.", now);
        format!(
            "NOT EXISTS (SELECT 1 FROM runs e WHERE e.tenant_id = {tenant} \
               AND e.status = 'running' AND e.lease_owner <> {me} AND NOT {e_lease_over}) \
             AND NOT EXISTS (SELECT 1 FROM runs c WHERE c.tenant_id = {tenant} \
               AND c.status = 'cancelled' AND c.lease_expires_at IS NOT NULL \
               AND c.lease_owner <> {me} AND NOT {c_lease_over})"
        )
    }

    async fn try_claim(
        &self,
        tx: &mut Tx,
        lane: Lane,
    ) -> Result<Option<(OperationType, ClaimRow)>, sqlx::Error> {
        let handled = self.registry.operations();
        if handled.is_empty() {
            return Ok(None);
        }
        // The operation types are this program's own constants, not input: written into the SQL.
        let handled = handled
            .iter()
            .map(|operation| format!("'{}'", operation.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut looks = 0;
        loop {
            let id = match self.candidates.next(lane) {
                Some(id) => id,
                None => {
                    // A second look only when the first was full (it may have left runs out)
                    // and every one of its candidates was taken meanwhile.
                    if looks == 2 {
                        return Ok(None);
                    }
                    let ids = self.look_at_queue(lane, &handled).await?;
                    if ids.is_empty() {
                        return Ok(None);
                    }
                    looks = if ids.len() == CANDIDATES {
                        looks + 1
                    } else {
                        2
                    };
                    self.candidates.keep(lane, ids);
                    continue;
                }
            };
            if self.executing_runs().contains_key(&id) {
                // Its instance lock looked free for a moment: this worker is still on it.
                continue;
            }
            if let Some(row) = self.claim_candidate(tx, lane, id, &handled).await? {
                // Only handled types are claimed, and every handled type parses.
                return Ok(
                    OperationType::parse(&row.operation_type).map(|operation| (operation, row))
                );
            }
        }
    }

    /// The next runs to claim in `lane`, in the claim's order (at most [`CANDIDATES`]): runs
    /// whose owner is gone, then, per tenant without a run going in the lane, its oldest queued
    /// run, by the time the tenant has waited (from that run, or from the end of its last run
    /// that started, when that came later: a queued run cancelled before any claim served the
    /// tenant nothing, so its end does not count, or cancelling one of its queued runs would
    /// send the tenant to the back of the queue). Served by `runs_tenant_lane_finished`
    /// (migration 0019), newest end first, each checked for its start. Only runs of tenants
    /// no other live instance works for ([`Self::tenant_not_elsewhere`]). One candidate per
    /// tenant, not every queued run: the cost grows with the tenants waiting, not with the runs
    /// queued. Read outside the claim's transaction: on SQLite a transaction that reads first
    /// cannot take the write lock for its claim once another writer has committed after its
    /// read (`SQLITE_BUSY_SNAPSHOT`, not waited for).
    async fn look_at_queue(&self, lane: Lane, handled: &str) -> Result<Vec<i64>, sqlx::Error> {
        let greatest = self.db.backend().greatest();
        let now = self.lease_now("$2");
        let o_lease_over = self.lease_over("o.", &now);
        let o_here = self.tenant_not_elsewhere("o.tenant_id", "$3", &now);
        let q_here = self.tenant_not_elsewhere("q.tenant_id", "$3", &now);
        let allowed = self.run_allowed("r.id");
        let sql = format!(
            "SELECT r.id FROM runs r JOIN ( \
                 SELECT o.id, 0 AS late, 0 AS waited FROM runs o \
                   WHERE o.lane = $1 AND o.status = 'running' AND o.operation_type IN ({handled}) \
                     AND {o_lease_over} AND {o_here} \
                 UNION ALL \
                 SELECT (SELECT n.id FROM runs n WHERE n.tenant_id = q.tenant_id AND n.lane = $1 \
                           AND n.status = 'pending' AND n.operation_type IN ({handled}) \
                           ORDER BY n.created_at, n.id LIMIT 1), \
                   1, {greatest}(q.oldest, (SELECT COALESCE(MAX(f.finished_at), 0) FROM runs f \
                        WHERE f.tenant_id = q.tenant_id AND f.lane = $1 \
                          AND f.finished_at IS NOT NULL AND f.started_at IS NOT NULL)) \
                 FROM (SELECT p.tenant_id, MIN(p.created_at) AS oldest FROM runs p \
                       WHERE p.lane = $1 AND p.status = 'pending' \
                         AND p.operation_type IN ({handled}) GROUP BY p.tenant_id) q \
                 WHERE NOT EXISTS (SELECT 1 FROM runs a WHERE a.tenant_id = q.tenant_id \
                   AND a.lane = $1 AND a.status = 'running') AND {q_here}) c ON c.id = r.id \
             WHERE {allowed} \
             ORDER BY c.late, c.waited, r.created_at, r.id LIMIT {CANDIDATES}"
        );
        sqlx::query_scalar(&sql)
            .bind(lane.as_str())
            .bind(self.local_now())
            .bind(&self.id)
            .fetch_all(self.db.pool())
            .await
    }

    /// Claims the candidate `id` if it is still claimable as it was when the queue was looked
    /// at: a run whose owner is gone, or its tenant's oldest queued run in the lane while the
    /// tenant has no run going there; either only while no other live instance works for the
    /// tenant ([`Self::tenant_not_elsewhere`]). `None` when it no longer is (claimed by another
    /// instance, cancelled, or its tenant busy) or, on PostgreSQL, while another instance is
    /// claiming it.
    async fn claim_candidate(
        &self,
        tx: &mut Tx,
        lane: Lane,
        id: i64,
        handled: &str,
    ) -> Result<Option<ClaimRow>, sqlx::Error> {
        // PostgreSQL: a row another instance is claiming right now is skipped, not waited for.
        // SQLite has one writer at a time, so the UPDATE is atomic as it stands.
        let lock = match self.db.backend() {
            Backend::Postgres => " FOR UPDATE OF r SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // `$3` is this worker's now, for `started_at`; leases go by the lease clock.
        let now = self.lease_now("$3");
        let claimable = format!(
            "(status = 'pending' OR (status = 'running' AND {}))",
            self.lease_over("", &now)
        );
        let r_lease_over = self.lease_over("r.", &now);
        let r_here = self.tenant_not_elsewhere("r.tenant_id", "$1", &now);
        let allowed = self.run_allowed("r.id");
        // A wait a previous claim left (it died while waiting) is not this claim's: its
        // figures' writer starts from no wait, and writes one only when its items wait.
        let sql = format!(
            "UPDATE runs SET status = 'running', lease_owner = $1, lease_expires_at = {now} + $2, \
             attempt = attempt + 1, started_at = COALESCE(started_at, $3), \
             graph_wait_reason = NULL, graph_wait_until = NULL \
             WHERE id = (SELECT r.id FROM runs r WHERE r.id = $5 AND r.lane = $4 \
                 AND r.operation_type IN ({handled}) AND {allowed} AND {r_here} AND ( \
                   (r.status = 'pending' \
                     AND NOT EXISTS (SELECT 1 FROM runs a WHERE a.tenant_id = r.tenant_id \
                       AND a.lane = $4 AND a.status = 'running') \
                     AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.tenant_id = r.tenant_id \
                       AND o.lane = $4 AND o.status = 'pending' AND o.operation_type IN ({handled}) \
                       AND (o.created_at < r.created_at \
                         OR (o.created_at = r.created_at AND o.id < r.id)))) \
                   OR (r.status = 'running' AND {r_lease_over})){lock}) \
               AND {claimable} \
             RETURNING id, attempt, tenant_id, operation_type, target_id, initiated_by, input, \
               work_errors, last_work_error"
        );
        sqlx::query_as(&sql)
            .bind(&self.id)
            .bind(self.lease_ms())
            .bind(self.local_now())
            .bind(lane.as_str())
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
    }

    /// Executes a claimed run with `operation`: reads its input, checks it can proceed, writes
    /// its items, processes the pending ones and ends it.
    pub(super) async fn execute<O: Operation>(
        &self,
        handler: Arc<O>,
        claimed: ClaimedRun,
    ) -> Result<(), sqlx::Error> {
        let operation = &*handler;
        let ClaimedRun {
            run: raw,
            mut open,
            work_errors,
            last_work_error,
            ..
        } = claimed;
        if let (false, Some(tx)) = (O::LAZY_COMMITS, open.as_mut()) {
            self.db.commit_durably(tx).await?;
        }
        let parsed = serde_json::from_str::<O::Input>(&raw.input);
        if work_errors >= WORK_ATTEMPTS {
            // Every attempt failed the same way, or several ways: the run ends here instead of
            // going round again, its items closed with its reason.
            tracing::error!(
                work_errors,
                "work on the run failed too often; the run fails"
            );
            let failure = RunFailure {
                reason: ReasonCode::WorkFailedRepeatedly,
                message: format!(
                    "Work on this run failed {work_errors} times in a row, so it was given up. \
                     Last error: {}",
                    last_work_error.as_deref().unwrap_or("unknown")
                ),
            };
            return match parsed {
                Ok(input) if work_errors == WORK_ATTEMPTS => {
                    let run = raw.with_input(input);
                    self.fail_planned(open, operation, &run, failure).await
                }
                // Unreadable input, or a give-up that failed already (writing the items or
                // committing them): the run ends with the items it has, writing none.
                _ => self.fail_unplanned(open, operation, &raw, failure).await,
            };
        }
        let input = match parsed {
            Ok(input) => input,
            Err(error) => {
                // Read as empty, the run would end "completed" with nothing done.
                tracing::error!(%error, "unreadable run input; the run fails");
                let failure = RunFailure {
                    reason: ReasonCode::InvalidRunInput,
                    message: "The run's stored input cannot be read. Submit it again.".into(),
                };
                return self.fail_unplanned(open, operation, &raw, failure).await;
            }
        };
        let run = Arc::new(raw.with_input(input));
        // Watched before the items are written: a cancel committed later signals this watch,
        // and one committed earlier makes the run no longer `running`, so nothing is written.
        // The one watch of this execution, held until it returns: every wait of its items
        // listens to its signal, and the heartbeat's safety-net cancel reaches it.
        let cancel = self.cancels.watch(run.id, run.attempt);
        if let Some(failure) = operation.check(&self.db, &run).await? {
            // Concluded with its failure once its items are written, as a run whose credentials
            // are refused: the handler settles what an earlier claim left unrecorded (a
            // restore's announced writes) before the engine closes the rest with the failure.
            if !self
                .materialize_items(open.take(), &run, &operation.plan(&run))
                .await?
            {
                tracing::warn!("lease lost before the failed run's items were written");
                return Ok(());
            }
            let concluded = operation.conclude(&self.db, Err(&failure), &run).await?;
            let failure = concluded.unwrap_or(failure);
            return self.end_failed(operation, &run, failure).await;
        }
        if !self
            .materialize_items(open.take(), &run, &operation.plan(&run))
            .await?
        {
            tracing::warn!("lease lost before the run's items were written");
            return Ok(());
        }
        // The heartbeat keeps the claim while Graph is slow (a Retry-After may pause a tenant
        // for longer than the lease); it stops when this run is left, however that happens.
        // In the run's span, so that its warnings name the run, its tenant and its operation.
        let _heartbeat = AbortOnDrop(tokio::spawn(
            self.clone()
                .heartbeat(run.id, run.attempt)
                .in_current_span(),
        ));
        let creds = match (self.credentials)(run.tenant_id).await {
            Ok(creds) => creds,
            // Not the tenant's fault: the run goes back to the queue, a failed attempt.
            Err(CredentialsFailure::Database(error)) => return Err(error),
            Err(CredentialsFailure::Refused(failure)) => {
                let concluded = operation.conclude(&self.db, Err(&failure), &run).await?;
                let failure = concluded.unwrap_or(failure);
                return self.end_failed(operation, &run, failure).await;
            }
        };
        // Items with an outcome are done, also from an earlier attempt: a resumed run skips them.
        let items = operation.pending(&self.db, &run).await?;
        if let (false, Some(check)) = (items.is_empty(), &self.token_check) {
            // One token request for the run: a secret the tenant rejects fails it as a whole
            // (its items closed with the reason) instead of failing every item on its own.
            let interrupt = Interrupt::new(cancel.signal());
            if let Some(failure) = interrupt.scope(check(creds.clone())).await {
                let concluded = operation.conclude(&self.db, Err(&failure), &run).await?;
                let failure = concluded.unwrap_or(failure);
                return self.end_failed(operation, &run, failure).await;
            }
        }
        let mut unrecorded = items.len();
        // What the items do with Graph, on the run's row at most once a second and at its end.
        let activity = GraphActivity::new();
        let figures = FiguresWriter::new(
            self.db.clone(),
            &self.id,
            run.id,
            run.attempt,
            Arc::clone(&activity),
        );
        let mut writing = WritingFigures::start(figures);

        // Every item is processed, however many fail: no circuit breaker stops a run early. Items
        // are processed in a task of their own, so Graph keeps working while outcomes are
        // written; the outcomes that are ready are written together, in one transaction per
        // batch.
        // Handing an outcome over never waits: an item in flight is not held up while a batch is
        // written (a bounded channel's full send would stop the stream from polling them).
        // Instead an item takes a place in the backlog before it starts, given back when the
        // recorder takes its outcome into a batch, so at most `items_at_once + RECORD_BACKLOG`
        // outcomes wait beside the batch being written (at most `RECORD_BATCH`).
        let (sender, mut outcomes) = tokio::sync::mpsc::unbounded_channel();
        let backlog = Arc::new(tokio::sync::Semaphore::new(
            self.items_at_once + RECORD_BACKLOG,
        ));
        // A cancel stops the stream of items: no new one starts, those in flight finish and are
        // recorded, and one still waiting on Graph (limiter, Retry-After, backoff) gives up
        // and is not recorded: the cancel has already skipped it (`cancelled`).
        let processing = {
            let (worker, run) = (self.clone(), Arc::clone(&run));
            let handler = Arc::clone(&handler);
            let creds = creds.clone();
            let activity = Arc::clone(&activity);
            let signal = cancel.signal();
            let stop = cancel.cancelled();
            AbortOnDrop(tokio::spawn(
                async move {
                    futures::stream::iter(items)
                        .then(|pending| {
                            let backlog = Arc::clone(&backlog);
                            // The semaphore is never closed.
                            async move { (pending, backlog.acquire_owned().await.ok()) }
                        })
                        .take_until(stop)
                        .map(|(pending, place)| {
                            let interrupt = Interrupt::new(signal.clone());
                            let (handler, creds, run) = (&handler, &creds, &run);
                            let activity = &activity;
                            async move {
                                let work = handler.process(creds, run, &pending.item);
                                let output = activity.scope(interrupt.scope(work)).await;
                                (!interrupt.interrupted()).then_some((pending, output, place))
                            }
                        })
                        .buffer_unordered(worker.items_at_once)
                        .for_each(|outcome| {
                            if let Some(outcome) = outcome {
                                // The receiver is gone only when this run is abandoned.
                                let _ = sender.send(outcome);
                            }
                            futures::future::ready(())
                        })
                        .await;
                }
                .in_current_span(),
            ))
        };
        let mut batch = Vec::with_capacity(RECORD_BATCH);
        let mut received = Vec::with_capacity(RECORD_BATCH);
        while outcomes.recv_many(&mut received, RECORD_BATCH).await > 0 {
            // Taken from the backlog: their places go back (dropped) as they join the batch.
            batch.extend(
                received
                    .drain(..)
                    .map(|(pending, output, _place)| (pending, output)),
            );
            // While more outcomes are coming, the batch waits a moment to fill: a few larger
            // transactions cost the database and this process less than many of one or two
            // outcomes each, which is what a fast Graph and a fast database otherwise make.
            let filled_by = tokio::time::Instant::now() + BATCH_FILL;
            while batch.len() < RECORD_BATCH && batch.len() < unrecorded {
                let room = RECORD_BATCH - batch.len();
                match tokio::time::timeout_at(filled_by, outcomes.recv_many(&mut received, room))
                    .await
                {
                    Ok(0) | Err(_) => break,
                    Ok(_) => batch.extend(
                        received
                            .drain(..)
                            .map(|(pending, output, _place)| (pending, output)),
                    ),
                }
            }
            unrecorded = unrecorded.saturating_sub(batch.len());
            // The last batch of an operation that concludes nothing ends the run in its own
            // transaction: one commit less per run.
            let ending = if unrecorded == 0 && O::ENDS_WITH_LAST_BATCH {
                Some(writing.stop().await)
            } else {
                None
            };
            let recording = self
                .record(operation, &run, &batch, ending, writing.writer())
                .await?;
            match recording {
                Recording::Recorded => {}
                Recording::Ended => return Ok(()),
                Recording::LeaseLost => {
                    tracing::warn!("lease lost; another worker continues this run");
                    return Ok(());
                }
            }
            batch.clear();
        }
        // The items' task has ended (it dropped the sender); a panic in it must not end the
        // run as if every item were done: it goes back to the queue, a failed attempt.
        let processed = {
            let mut processing = processing;
            (&mut processing.0).await
        };
        if let Err(error) = processed {
            if error.is_panic() {
                tracing::error!("processing the run's items panicked");
                return Err(sqlx::Error::Protocol(
                    "processing the run's items panicked".into(),
                ));
            }
        }
        let cancelled = cancel.is_cancelled();
        if cancelled && !cancel_reached_run(&self.db, run.id).await? {
            // This claim lost the run (its heartbeat stopped it): whoever holds it goes on.
            tracing::warn!("lease lost; another claim continues this run");
            return Ok(());
        }
        let failure = if cancelled {
            // A cancelled run's conclusion does its bookkeeping only: given the cancel as its
            // credentials' failure, no handler calls Graph (what it would write on the run is
            // fenced off by the run's status anyway). The tenant's bulk slot is free again, so
            // Graph work here would compete with the tenant's next run.
            operation
                .conclude(&self.db, Err(&cancelled_failure()), &run)
                .await?
        } else {
            // The conclusion's Graph work (a sync's listing, a check's probe): a cancel ends
            // every wait of it, also one that would be ready at once, and it gives up (the
            // cancel discards its result, unlike an item's capture in flight); its requests
            // count on the run.
            let interrupt = Interrupt::giving_up_at_once(cancel.signal());
            let work = operation.conclude(&self.db, Ok(&creds), &run);
            activity.scope(interrupt.scope(work)).await?
        };
        let figures = writing.stop().await;
        let end = End {
            failure,
            counts: Counts::default(),
            figures,
            pending: 0,
        };
        self.end_run(None, operation, &run, end).await?;
        Ok(())
    }

    /// Ends a run given up ([`WORK_ATTEMPTS`]) before its items were processed: they are
    /// written first (a resumed run already has them), its conclusion settles what an earlier
    /// claim left unrecorded (a restore's announced writes say they may have been written, as
    /// when a claim's check fails), then the rest are closed as failed with its reason, so
    /// `processed = total` and "Retry failed" offers them.
    async fn fail_planned<O: Operation>(
        &self,
        open: Option<Tx>,
        operation: &O,
        run: &Run<O::Input>,
        failure: RunFailure,
    ) -> Result<(), sqlx::Error> {
        let plan = operation.plan(run);
        if !self.materialize_items(open, run, &plan).await? {
            tracing::warn!("lease lost before the failed run's items were written");
            return Ok(());
        }
        // A run without items has nothing for its conclusion to settle: an operation without
        // items does its work there (a connection check reports on the tenant's credentials),
        // which a run given up does not do.
        let failure = if plan.is_empty() {
            failure
        } else {
            // The run ends here whatever failed in the attempts before: a conclusion that fails
            // too leaves the items for the end to close, instead of sending the run round again
            // (at once, its attempts used up).
            match operation.conclude(&self.db, Err(&failure), run).await {
                Ok(concluded) => concluded.unwrap_or(failure),
                Err(error) => {
                    tracing::error!(%error, "the given-up run's conclusion failed; its items close with its reason");
                    failure
                }
            }
        };
        self.end_failed(operation, run, failure).await
    }

    /// Ends run `run`, which failed as a whole with `failure` once its conclusion settled what
    /// it could ([`Self::finish_failed`]). A cancel committed since (the end finds the run
    /// cancelled under this claim, its items already closed, so the cancel skipped none) gets
    /// the cancelled run's conclusion, as a run cancelled while it works does: a restore then
    /// says what may stay written.
    async fn end_failed<O: Operation>(
        &self,
        operation: &O,
        run: &Run<O::Input>,
        failure: RunFailure,
    ) -> Result<(), sqlx::Error> {
        if let Some(hook) = &self.before_failed_end {
            hook(run.id).await;
        }
        if self.finish_failed(None, operation, run, failure).await? {
            operation
                .conclude(&self.db, Err(&cancelled_failure()), run)
                .await?;
        }
        Ok(())
    }

    /// Ends a run whose input cannot be read, so its items cannot be planned: the run counts
    /// the items it has (none unless an earlier claim wrote them), so `processed = total`.
    async fn fail_unplanned<O: Operation>(
        &self,
        open: Option<Tx>,
        operation: &O,
        run: &Run<String>,
        failure: RunFailure,
    ) -> Result<(), sqlx::Error> {
        let mut tx = match open {
            Some(tx) => tx,
            None => self.db.pool().begin().await?,
        };
        sqlx::query(
            "UPDATE runs SET total_items = \
               (SELECT COUNT(*) FROM run_items i WHERE i.run_id = runs.id) \
             WHERE id = $1 AND lease_owner = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(run.id)
        .bind(&self.id)
        .bind(run.attempt)
        .execute(&mut *tx)
        .await?;
        self.finish_failed(Some(tx), operation, run, failure)
            .await?;
        Ok(())
    }

    /// Ends a run that failed as a whole, in the claim's transaction when it is still `open`;
    /// whether a cancel ended it under this claim first ([`Self::end_run`]).
    async fn finish_failed<O: Operation, I>(
        &self,
        open: Option<Tx>,
        operation: &O,
        run: &Run<I>,
        failure: RunFailure,
    ) -> Result<bool, sqlx::Error> {
        let end = End {
            failure: Some(failure),
            counts: Counts::default(),
            figures: GraphFigures::default(),
            pending: 0,
        };
        self.end_run(open, operation, run, end).await
    }

    /// Ends the run in its own transaction (the claim's when still `open`). A run that fails as
    /// a whole closes its pending items as failed with its reason, so its counters add up and
    /// "Retry failed" offers them. A run this claim no longer holds as running (cancelled, or
    /// lost) keeps what `end` carries of Graph figures. A run this claim still holds that cannot
    /// end (items still pending) is an error: it goes back to the queue. Whether a cancel ended
    /// the run under this claim before this end could (not a run lost to another claim).
    async fn end_run<O: Operation, I>(
        &self,
        open: Option<Tx>,
        operation: &O,
        run: &Run<I>,
        mut end: End,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = match open {
            Some(tx) => tx,
            None => self.db.pool().begin().await?,
        };
        // The pending items closed as failed, counted once the run's end is committed.
        let mut closed_items = None;
        if let Some(failure) = &end.failure {
            // The run's row first (it holds the lease), then its items, as a cancel takes them.
            if self
                .hold_lease(&mut tx, run.id, run.attempt, Counts::default(), false)
                .await?
                .held()
            {
                let closed = sqlx::query(
                    "UPDATE run_items SET outcome = 'failed', reason_code = $1, message = $2, \
                     finished_at = $3 WHERE run_id = $4 AND outcome = 'pending'",
                )
                .bind(failure.reason.as_str())
                .bind(sanitize(&failure.message))
                .bind(Timestamp::now().millis())
                .bind(run.id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                end.counts.failed += closed as i64;
                closed_items = Some((failure.reason, closed));
            }
        }
        let figures = end.figures;
        match self.finish_in(&mut tx, operation, run, end).await? {
            Some(ended) => {
                tx.commit().await?;
                if let Some((reason, closed)) = closed_items {
                    metrics::items_recorded(
                        O::TYPE.as_str(),
                        ItemOutcome::Failed.as_str(),
                        Some(reason.as_str()),
                        closed,
                    );
                }
                ended.report(O::TYPE);
            }
            None => {
                let status = self.status_under(&mut tx, run.id, run.attempt).await?;
                if status == Some(RunStatus::Running) {
                    tx.rollback().await?;
                    return Err(unfinished_items());
                }
                if figures != GraphFigures::default() {
                    add_in(&mut tx, run.id, &self.id, run.attempt, figures).await?;
                    tx.commit().await?;
                } else {
                    tx.rollback().await?;
                }
                return Ok(status == Some(RunStatus::Cancelled));
            }
        }
        Ok(false)
    }

    /// The status of `run_id` while claim `attempt` of it is its last (a cancelled run is never
    /// claimed again), read in `tx`; `None` once another claim took it.
    async fn status_under(
        &self,
        tx: &mut Tx,
        run_id: i64,
        attempt: i64,
    ) -> Result<Option<RunStatus>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT status FROM runs WHERE id = $1 AND lease_owner = $2 AND attempt = $3",
        )
        .bind(run_id)
        .bind(&self.id)
        .bind(attempt)
        .fetch_optional(&mut **tx)
        .await
    }

    /// Writes the run's items (one `pending` item per planned policy), in the claim's `open`
    /// transaction or in one that holds the lease; a resumed run already has them. `false`, and
    /// nothing written, when this worker no longer holds the lease.
    async fn materialize_items<I>(
        &self,
        open: Option<Tx>,
        run: &Run<I>,
        policy_ids: &[i64],
    ) -> Result<bool, sqlx::Error> {
        let mut tx = match open {
            Some(tx) => tx,
            None => {
                let mut tx = self.db.pool().begin().await?;
                if !self
                    .hold_lease(&mut tx, run.id, run.attempt, Counts::default(), false)
                    .await?
                    .held()
                {
                    tx.rollback().await?;
                    return Ok(false);
                }
                tx
            }
        };
        // Only a claim writes items, so the first claim finds none.
        let existing: i64 = if run.attempt == 1 {
            0
        } else {
            sqlx::query_scalar("SELECT COUNT(*) AS n FROM run_items WHERE run_id = $1")
                .bind(run.id)
                .fetch_one(&mut *tx)
                .await?
        };
        if existing == 0 && !policy_ids.is_empty() {
            // The submit checked every id against the tenant; the tenant filter stays anyway.
            let ids = self.db.backend().id_in("p.id", "$3", policy_ids);
            let sql = format!(
                "INSERT INTO run_items (tenant_id, run_id, policy_id) \
                 SELECT p.tenant_id, $2, p.id FROM policies p WHERE p.tenant_id = $1 AND {}",
                ids.sql
            );
            let written = ids
                .bind(sqlx::query(&sql).bind(run.tenant_id).bind(run.id))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if written != policy_ids.len() as u64 {
                // Only a policy row deleted since the submit (they are marked gone, not deleted).
                tracing::warn!(written, "some planned policies no longer exist");
                sqlx::query("UPDATE runs SET total_items = $1 WHERE id = $2")
                    .bind(written as i64)
                    .bind(run.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Writes a batch of outcomes (the handler's part first, then each item's outcome) with the
    /// run's counters, in one transaction that also renews the lease, or, with `ending` (the
    /// Graph figures not yet written), ends the run in it too; otherwise the figures go with it
    /// once a second (`writer`). Nothing is written when this worker no longer holds the lease.
    /// The handler's part comes before the run's row, and the run's row before the items', as a
    /// cancel takes them (the run's row, then its items): the two wait for each other instead of
    /// deadlocking over the items.
    async fn record<O: Operation>(
        &self,
        operation: &O,
        run: &Run<O::Input>,
        batch: &[(Pending<O::Item>, O::Output)],
        ending: Option<GraphFigures>,
        writer: &FiguresWriter,
    ) -> Result<Recording, sqlx::Error> {
        let now = Timestamp::now().millis();
        let mut tx = self.db.begin_batch(O::LAZY_COMMITS).await?;
        // The run's row first, as a cancel takes it: a handler's part that writes the run's
        // items (captures, drift checks, restores) would otherwise lock them before the run's
        // row while a cancel holds the row and waits for the items (a deadlock on PostgreSQL).
        // It also checks the lease before the handler does any work.
        match self
            .hold_lease(&mut tx, run.id, run.attempt, Counts::default(), true)
            .await?
        {
            Hold::Running => {}
            // The cancel's signal did not reach this process (another instance's cancel whose
            // NOTIFY was lost, a worker that does not listen): the run's row says it. The
            // stream of items stops here, not at the next heartbeat (a third of a lease
            // later). Items whose slot freed between the cancel and this check may have
            // started meanwhile (at most `items_at_once` at a time, for as long as this batch
            // took to come): they are recorded over their skip like those in flight, and a
            // restore's write is still refused by its announce, which reads the run's status.
            Hold::Cancelled => self.cancels.stop(run.id, run.attempt),
            Hold::Lost => {
                tx.rollback().await?;
                return Ok(Recording::LeaseLost);
            }
        }
        // The handler's part may read before it writes.
        let recorded = operation.record(&mut tx, run, batch, now).await?;
        if recorded.len() != batch.len() {
            tx.rollback().await?;
            return Ok(Recording::LeaseLost);
        }
        let mut counts = Counts::default();
        for done in &recorded {
            counts.add(done.outcome());
        }
        // Every outcome in one statement; the items a cancel had skipped while their capture
        // was in flight in a second one (their outcome replaces the skip).
        let outcomes = |guard: &str| {
            outcomes_sql(
                run.id,
                now,
                batch
                    .iter()
                    .zip(&recorded)
                    .map(|((pending, _), done)| (pending.item_id, done)),
                guard,
            )
        };
        let report = || {
            for done in &recorded {
                metrics::items_recorded(
                    O::TYPE.as_str(),
                    done.outcome().as_str(),
                    done.reason().map(ReasonCode::as_str),
                    1,
                );
            }
        };
        if let Some(figures) = ending {
            // The run's end first, with this batch's counts: it holds only while this claim
            // holds the run as running, and then no item of it is a cancel's skip.
            let end = End {
                failure: None,
                counts,
                figures,
                pending: batch.len() as i64,
            };
            if let Some(ended) = self.finish_in(&mut tx, operation, run, end).await? {
                let updated = outcomes(PENDING_ONLY)
                    .query()
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if updated != batch.len() as u64 {
                    // Another worker recorded some: this one lost the run.
                    tx.rollback().await?;
                    return Ok(Recording::LeaseLost);
                }
                tx.commit().await?;
                report();
                ended.report(O::TYPE);
                return Ok(Recording::Ended);
            }
            // Nothing written to the run: it was cancelled (its outcomes and figures still
            // count, its end is the cancel's) or other items are still pending (the run ends
            // after them). This claim holds the run's row since the first statement.
        }
        let mut updated = outcomes(PENDING_ONLY)
            .query()
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated < batch.len() as u64 {
            let uncancelled = outcomes(CANCELLED_ONLY)
                .query()
                .execute(&mut *tx)
                .await?
                .rows_affected();
            counts.uncancelled = uncancelled as i64;
            updated += uncancelled;
        }
        if updated != batch.len() as u64 {
            // Another worker recorded some: this one lost the run.
            tx.rollback().await?;
            return Ok(Recording::LeaseLost);
        }
        match ending {
            // Cancelled: the figures still count.
            Some(figures) => add_in(&mut tx, run.id, &self.id, run.attempt, figures).await?,
            // The figures go with the batch when a second has passed since they were written.
            None => writer.write_in(&mut tx).await?,
        }
        if !self
            .hold_lease(&mut tx, run.id, run.attempt, counts, true)
            .await?
            .held()
        {
            tx.rollback().await?;
            return Ok(Recording::LeaseLost);
        }
        tx.commit().await?;
        report();
        Ok(Recording::Recorded)
    }

    /// Adds `counts` to the run's counters and renews the lease, in `tx`, and says whether the
    /// run is still running under this claim, was cancelled while it worked on it (only
    /// `recording` a batch holds a cancelled run), or is no longer this claim's ([`Hold::Lost`]:
    /// nothing written, the caller rolls back). Counts of a batch of
    /// outcomes are progress: the run's count of failed claims ([`WORK_ATTEMPTS`]) starts again,
    /// since the claims that failed before it were not in a row with the next failure.
    async fn hold_lease(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        run_id: i64,
        attempt: i64,
        counts: Counts,
        recording: bool,
    ) -> Result<Hold, sqlx::Error> {
        let progress = counts.succeeded + counts.failed + counts.skipped > 0;
        // A cancelled run still takes the outcomes of the captures that were in flight, from the
        // claim that was working on it; nothing else (no new item, no end) is written to it. Its
        // lease is renewed too: the run is not settled while its claim still records
        // (`runs::queries`), and a claim that died meanwhile lets it settle when it expires.
        // Only while that lease still holds: once it has run out (a stalled heartbeat) the run
        // reads settled and may have been resumed, so a late batch of a cancelled run is not
        // recorded then; it gives up like a fenced one (`Hold::Lost`, rolled back).
        let now = self.lease_now("$11");
        let held: Option<RunStatus> = sqlx::query_scalar(&format!(
            "UPDATE runs SET succeeded = succeeded + $1, failed = failed + $2, skipped = skipped + $3, \
             processed_items = processed_items + $4, lease_expires_at = {now} + $5, \
             work_errors = CASE WHEN $10 THEN 0 ELSE work_errors END, \
             last_work_error = CASE WHEN $10 THEN NULL ELSE last_work_error END \
             WHERE id = $6 AND lease_owner = $7 AND attempt = $8 \
               AND (status = 'running' \
                 OR (status = 'cancelled' AND $9 AND lease_expires_at >= {now})) \
             RETURNING status"
        ))
        .bind(counts.succeeded)
        .bind(counts.failed)
        .bind(counts.skipped - counts.uncancelled)
        .bind(counts.succeeded + counts.failed + counts.skipped - counts.uncancelled)
        .bind(self.lease_ms())
        .bind(run_id)
        .bind(&self.id)
        .bind(attempt)
        .bind(recording)
        .bind(progress)
        .bind(self.local_now())
        .fetch_optional(&mut **tx)
        .await?;
        Ok(match held {
            Some(status) => {
                // A heartbeat as much as the timer's renewal: a runner whose every slot is busy
                // claims nothing, and the timer renews only every third of a lease.
                metrics::heartbeat();
                match status {
                    RunStatus::Cancelled => Hold::Cancelled,
                    _ => Hold::Running,
                }
            }
            None => Hold::Lost,
        })
    }

    /// Ends the run in `tx` and tells the initiator: no failures → completed; failures and at
    /// least one success → completed with errors; failures and no success, or a run that could
    /// not proceed at all → failed. `end.counts` and `end.figures` are added first. `None`, and
    /// nothing written, when this claim no longer holds a running run (lease lost, or
    /// cancelled). What ended is reported once `tx` is committed.
    async fn finish_in<O: Operation, I>(
        &self,
        tx: &mut Tx,
        operation: &O,
        run: &Run<I>,
        end: End,
    ) -> Result<Option<Ended>, sqlx::Error> {
        let End {
            failure,
            counts,
            figures,
            pending,
        } = end;
        let now = Timestamp::now().millis();
        // Write first and decide the final status in the same statement: a transaction that read
        // before writing could not upgrade its lock under SQLite's WAL while another worker writes.
        // `lease_owner` stays: an ended run names the worker (the instance) that finished it.
        // The status is decided from the counters with this batch's counts added.
        let finished: Option<FinishedRow> = sqlx::query_as(
            "UPDATE runs SET status = CASE \
                 WHEN $1 THEN 'failed' \
                 WHEN failed + $2 = 0 THEN 'completed' \
                 WHEN succeeded + $3 = 0 THEN 'failed' \
                 ELSE 'completed_with_errors' END, \
             succeeded = succeeded + $3, failed = failed + $2, skipped = skipped + $4, \
             processed_items = processed_items + $5, \
             graph_requests = graph_requests + $6, graph_throttled = graph_throttled + $7, \
             graph_server_errors = graph_server_errors + $8, graph_retries = graph_retries + $9, \
             graph_waited_ms = graph_waited_ms + $10, graph_wait_reason = NULL, \
             graph_wait_until = NULL, \
             finished_at = $11, reason_code = $12, failure_message = $13, \
             lease_expires_at = NULL \
             WHERE id = $14 AND lease_owner = $15 AND attempt = $16 AND status = 'running' \
               AND (SELECT COUNT(*) FROM run_items i \
                    WHERE i.run_id = runs.id AND i.outcome = 'pending') = $17 \
             RETURNING status, total_items, succeeded, failed, skipped, started_at, summary, \
               (SELECT t.external_id FROM tenants t WHERE t.id = runs.tenant_id) AS tenant_external_id",
        )
        .bind(failure.is_some())
        .bind(counts.failed)
        .bind(counts.succeeded)
        .bind(counts.skipped - counts.uncancelled)
        .bind(counts.succeeded + counts.failed + counts.skipped - counts.uncancelled)
        .bind(figures.requests)
        .bind(figures.throttled)
        .bind(figures.server_errors)
        .bind(figures.retries)
        .bind(figures.waited_ms)
        .bind(now)
        .bind(failure.as_ref().map(|f| f.reason.as_str()))
        .bind(failure.as_ref().map(|f| sanitize(&f.message)))
        .bind(run.id)
        .bind(&self.id)
        .bind(run.attempt)
        .bind(pending)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = finished else {
            // The lease was lost (whoever holds it now finishes the run), the run was
            // cancelled, or items other than the last batch's are still pending.
            return Ok(None);
        };
        let FinishedRow {
            status,
            totals,
            started_at,
            summary,
            tenant_external_id,
        } = row;
        if let Some(user_id) = run.initiated_by {
            let level = match status {
                RunStatus::Completed => NotificationLevel::Success,
                RunStatus::CompletedWithErrors => NotificationLevel::Warning,
                _ => NotificationLevel::Error,
            };
            let (title, body) =
                operation.notification(status, totals, failure.as_ref(), summary.as_deref());
            sqlx::query(
                "INSERT INTO notifications (user_id, tenant_id, level, title, body, link, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(user_id)
            .bind(run.tenant_id)
            .bind(level.as_str())
            .bind(title)
            .bind(body)
            .bind(routes::run(&tenant_external_id, run.id, ""))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        let took = started_at
            .map(|started| Duration::from_millis(now.saturating_sub(started).max(0) as u64));
        Ok(Some(Ended {
            status,
            totals,
            took,
        }))
    }
}

/// The pause before the next claim of a run whose work failed `errors` times: `first`, doubled
/// with each further failure, at most [`WORK_BACKOFF_MAX`].
fn backoff(first: Duration, errors: i64) -> Duration {
    let doublings = u32::try_from(errors.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    first.saturating_mul(1 << doublings).min(WORK_BACKOFF_MAX)
}

/// The failure a cancelled run concludes with: given as its credentials' failure, no handler
/// calls Graph, and what it writes is its cancelled summary at most.
fn cancelled_failure() -> RunFailure {
    RunFailure {
        reason: ReasonCode::Cancelled,
        message: "The run was cancelled.".into(),
    }
}

/// Whether run `run_id` was cancelled (so a stopped claim was stopped by the cancel, not by the
/// loss of its lease).
async fn cancel_reached_run(db: &Db, run_id: i64) -> Result<bool, sqlx::Error> {
    let status: Option<RunStatus> = sqlx::query_scalar("SELECT status FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(status == Some(RunStatus::Cancelled))
}

/// A run's end as written, reported once committed.
struct Ended {
    status: RunStatus,
    totals: Totals,
    took: Option<Duration>,
}

impl Ended {
    fn report(&self, operation: OperationType) {
        metrics::run_finished(operation.as_str(), self.status.as_str(), self.took);
        tracing::info!(
            status = self.status.as_str(),
            succeeded = self.totals.succeeded,
            failed = self.totals.failed,
            skipped = self.totals.skipped,
            "run finished"
        );
    }
}

/// The periodic writer of a run's Graph figures, stopped once.
struct WritingFigures {
    figures: Arc<FiguresWriter>,
    stop: tokio::sync::watch::Sender<()>,
    task: Option<AbortOnDrop>,
}

impl WritingFigures {
    fn start(figures: Arc<FiguresWriter>) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(());
        let task = AbortOnDrop(tokio::spawn(
            Arc::clone(&figures).every_second(stopped).in_current_span(),
        ));
        Self {
            figures,
            stop,
            task: Some(task),
        }
    }

    /// The writer, for the batches to write with.
    fn writer(&self) -> &FiguresWriter {
        &self.figures
    }

    /// Stops the writer between two writes (the first call) and returns what it has not written.
    async fn stop(&mut self) -> GraphFigures {
        if let Some(mut task) = self.task.take() {
            let _ = self.stop.send(());
            let _ = (&mut task.0).await;
        }
        self.figures.take_unwritten().await
    }
}
