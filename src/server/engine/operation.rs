//! What an operation tells the engine, and the registry the engine dispatches through.
//!
//! A handler declares its stored input, plans a new run's items, loads the items still pending
//! with what processing each needs, processes one item (Graph calls, no database writes) and
//! writes a batch of results inside the engine's lease-guarded transaction. Claiming, leases,
//! heartbeats, counters, the run's end, its notification and giving a run up are the engine's,
//! the same for every operation.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock};

use serde::de::DeserializeOwned;

use super::worker::{BoxFuture, ClaimedRun, RunFailure, Worker};
use crate::domain::reason_code::ReasonCode;
use crate::domain::run::OperationType;
use crate::domain::run_detail::ItemOutcome;
use crate::domain::RunStatus;
use crate::server::db::Db;
use crate::server::graph::write::PolicyWriter;
use crate::server::graph::{GraphClient, GraphConfig, PolicySource, TenantCredentials};

/// A transaction of the engine, open while a batch of results is written.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// A claimed run with its input read by the operation's handler.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Run<I> {
    pub id: i64,
    /// Which claim of the run this is; every lease-guarded write checks it (fencing), so an
    /// owner that stalled can never write after another has taken the run.
    pub attempt: i64,
    pub tenant_id: i64,
    /// The resource the run works on (a backup set for "add policies").
    pub target_id: i64,
    pub initiated_by: Option<i64>,
    pub input: I,
}

impl<I> Run<I> {
    /// The same run with another input (the raw one parsed).
    pub fn with_input<J>(&self, input: J) -> Run<J> {
        Run {
            id: self.id,
            attempt: self.attempt,
            tenant_id: self.tenant_id,
            target_id: self.target_id,
            initiated_by: self.initiated_by,
            input,
        }
    }
}

/// A run item without an outcome yet, with what the handler loaded to process it.
#[derive(Debug, Clone)]
pub struct Pending<T> {
    pub item_id: i64,
    pub item: T,
}

/// How one item ended, as the handler wrote it. Never pending: only these constructors exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    outcome: ItemOutcome,
    reason: Option<ReasonCode>,
    message: Option<String>,
}

impl Recorded {
    pub fn succeeded() -> Self {
        Self {
            outcome: ItemOutcome::Succeeded,
            reason: None,
            message: None,
        }
    }

    pub fn skipped(reason: ReasonCode) -> Self {
        Self {
            outcome: ItemOutcome::Skipped,
            reason: Some(reason),
            message: None,
        }
    }

    /// `message` must already be sanitized.
    pub fn failed(reason: ReasonCode, message: String) -> Self {
        Self {
            outcome: ItemOutcome::Failed,
            reason: Some(reason),
            message: Some(message),
        }
    }

    pub fn outcome(&self) -> ItemOutcome {
        self.outcome
    }

    pub fn reason(&self) -> Option<ReasonCode> {
        self.reason
    }

    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

/// A run's counters when it ended, for its notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Totals {
    #[sqlx(rename = "total_items")]
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
}

/// One kind of run. The engine is generic over it; [`Registry`] erases it behind the operation
/// type the run row names.
pub trait Operation: Send + Sync + 'static {
    /// The runs this handler executes.
    const TYPE: OperationType;
    /// What the submit stored in `runs.input`; one that does not parse fails the run
    /// (`invalid_run_input`).
    type Input: DeserializeOwned + Send + Sync + 'static;
    /// A pending item with what processing it needs.
    type Item: Send + Sync + 'static;
    /// What processing one item produced, until its batch is written.
    type Output: Send + Sync + 'static;

    /// Whether the run can proceed at all, checked before anything is written or fetched;
    /// `Some` fails the run with that reason. By default it can.
    fn check(
        &self,
        db: &Db,
        run: &Run<Self::Input>,
    ) -> impl Future<Output = Result<Option<RunFailure>, sqlx::Error>> + Send {
        let _ = (db, run);
        async { Ok(None) }
    }

    /// The policies a new run works on, one item each (written once, at the first claim).
    fn plan(&self, run: &Run<Self::Input>) -> Vec<i64>;

    /// The run's items without an outcome (a resumed run skips those done before), in order.
    fn pending(
        &self,
        db: &Db,
        run: &Run<Self::Input>,
    ) -> impl Future<Output = Result<Vec<Pending<Self::Item>>, sqlx::Error>> + Send;

    /// Processes one item; the engine runs several at once and writes nothing meanwhile. A
    /// handler writes to the database here only what must be durable before a Graph write is
    /// sent (`restore.execute` records that a create goes out, fenced by the run's attempt);
    /// everything else is written by [`Self::record`].
    fn process(
        &self,
        creds: &TenantCredentials,
        run: &Run<Self::Input>,
        item: &Self::Item,
    ) -> impl Future<Output = Self::Output> + Send;

    /// Writes what a batch produced in `tx` (which the engine commits only while it holds the
    /// lease) and says how each item ended, in the batch's order.
    fn record(
        &self,
        tx: &mut Tx,
        run: &Run<Self::Input>,
        batch: &[(Pending<Self::Item>, Self::Output)],
        now: i64,
    ) -> impl Future<Output = Result<Vec<Recorded>, sqlx::Error>> + Send;

    /// Works on the run as a whole once its items are processed, and says whether the run
    /// failed. `creds` is the tenant's credentials, or the failure the run ends with: its
    /// credentials refused, its claim's [`Self::check`] or token check failed, or its work
    /// failed too often in a row (a run with items only; the run then has processed nothing,
    /// its items pending), or its cancel. A run cancelled after such a failure's conclusion,
    /// before its end, is concluded again with the cancel, so what a conclusion writes must
    /// hold when written twice. An operation without items (a connection check) does its work
    /// here; no engine transaction is open, so what it writes must be fenced by `run.attempt`
    /// itself. By default: that failure, or none.
    fn conclude(
        &self,
        db: &Db,
        creds: Result<&TenantCredentials, &RunFailure>,
        run: &Run<Self::Input>,
    ) -> impl Future<Output = Result<Option<RunFailure>, sqlx::Error>> + Send {
        let _ = (db, run);
        let failure = creds.err().cloned();
        async move { Ok(failure) }
    }

    /// The title and body of the notification the initiator gets when the run ends; `summary` is
    /// what the run wrote as its result line ([`super::ops::write_summary`]), if anything. By
    /// default "[`Notice::title`]: Succeeded" with the summary, the run's failure, or
    /// [`Notice::unfinished`].
    fn notification(
        &self,
        status: RunStatus,
        totals: Totals,
        failure: Option<&RunFailure>,
        summary: Option<&str>,
    ) -> (String, String) {
        let _ = totals;
        super::ops::summary_notification(Self::NOTICE, status, failure, summary)
    }

    /// How the initiator's notification names the run.
    const NOTICE: Notice;

    /// Whether the run may end in the transaction of its last batch of outcomes: only for an
    /// operation whose [`Self::conclude`] is the default (nothing to do after the items), which
    /// saves a commit per run. An operation that overrides `conclude` leaves it `false`, or its
    /// conclusion would never run.
    const ENDS_WITH_LAST_BATCH: bool = false;

    /// Whether the engine may commit the run's claim and its batches of outcomes without
    /// waiting for PostgreSQL to flush them (`Db::begin_lazy`, `Db::begin_batch`). A PostgreSQL
    /// crash may then lose the last of them; the run is claimed again and redoes what was lost.
    /// Only for an operation that reads from Graph and nothing else, for which a redo is
    /// harmless: never for one that writes to a tenant, which would write twice.
    const LAZY_COMMITS: bool = false;
}

/// The words of an operation's notification.
#[derive(Debug, Clone, Copy)]
pub struct Notice {
    /// What the title calls the run ("Drift check").
    pub title: &'static str,
    /// The body when the run ended without writing a result line.
    pub unfinished: &'static str,
}

impl Notice {
    /// A title and the body of a run that wrote no result line.
    pub const fn new(title: &'static str, unfinished: &'static str) -> Self {
        Self { title, unfinished }
    }
}

/// A handler with its types erased, so runs of every operation share one registry.
trait Handler: Send + Sync {
    fn execute(&self, worker: Worker, run: ClaimedRun) -> BoxFuture<Result<(), sqlx::Error>>;

    /// The items [`Operation::plan`] gives the run with its stored input read; `None` when the
    /// input cannot be read.
    fn plan(&self, run: &Run<String>) -> Option<Vec<i64>>;
}

struct Typed<O>(Arc<O>);

impl<O: Operation> Handler for Typed<O> {
    fn execute(&self, worker: Worker, run: ClaimedRun) -> BoxFuture<Result<(), sqlx::Error>> {
        let operation = Arc::clone(&self.0);
        Box::pin(async move { worker.execute(operation, run).await })
    }

    fn plan(&self, run: &Run<String>) -> Option<Vec<i64>> {
        let input = serde_json::from_str::<O::Input>(&run.input).ok()?;
        Some(self.0.plan(&run.with_input(input)))
    }
}

/// The handlers of this process, by operation type. The engine only claims runs it has a
/// handler for, so an instance of an older version leaves a newer operation's runs alone.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<OperationType, Arc<dyn Handler>>,
}

impl Registry {
    /// The handlers of every run that only reads Graph, capturing through `source`.
    pub fn standard(source: Arc<dyn PolicySource>) -> Self {
        use super::ops::{
            add_policies, capture_snapshot, check_connection, drift_check, inventory_sync,
        };
        Self::default()
            .with(add_policies::AddPolicies::new(Arc::clone(&source)))
            .with(inventory_sync::InventorySync::new(Arc::clone(&source)))
            .with(capture_snapshot::CaptureSnapshot::new(Arc::clone(&source)))
            .with(drift_check::DriftCheck::new(Arc::clone(&source)))
            .with(check_connection::CheckConnection::new(source))
    }

    /// Every handler this version ships, reading through `source` and writing (restore) through
    /// `writer`.
    pub fn full(source: Arc<dyn PolicySource>, writer: Arc<dyn PolicyWriter>) -> Self {
        use super::ops::{restore_execute, restore_preview};
        Self::standard(Arc::clone(&source))
            .with(restore_preview::RestorePreview::new(
                Arc::clone(&source),
                Arc::clone(&writer),
            ))
            .with(restore_execute::RestoreExecute::new(source, writer))
    }

    /// Every handler this version ships, for planning alone ([`Self::plan`]): a plan reads the
    /// stored input and nothing else, so their Graph client points nowhere and is never called.
    /// Built once; `None` if the HTTP client could not be built (no Graph client can then).
    pub fn planning() -> Option<&'static Self> {
        static PLANNING: LazyLock<Option<Registry>> = LazyLock::new(|| {
            let nowhere = GraphConfig::new("http://127.0.0.1:9", "http://127.0.0.1:9/beta");
            let client = Arc::new(GraphClient::new(nowhere).ok()?);
            Some(Registry::full(client.clone(), client))
        });
        PLANNING.as_ref()
    }

    /// The policies `run` of `operation` works on, one item each, planned from its stored input
    /// as its first claim plans them. `None` when there is no handler or the input cannot be
    /// read (the claim would fail the run with `invalid_run_input`).
    pub fn plan(&self, operation: OperationType, run: &Run<String>) -> Option<Vec<i64>> {
        self.handlers.get(&operation)?.plan(run)
    }

    /// Adds (or replaces) the handler of `O::TYPE`.
    pub fn with<O: Operation>(mut self, operation: O) -> Self {
        self.handlers
            .insert(O::TYPE, Arc::new(Typed(Arc::new(operation))));
        self
    }

    /// The operation types with a handler, in the order of [`OperationType::ALL`].
    pub fn operations(&self) -> Vec<OperationType> {
        OperationType::ALL
            .into_iter()
            .filter(|operation| self.handlers.contains_key(operation))
            .collect()
    }

    /// Executes a claimed run with its operation's handler; `None` when there is none.
    pub(super) fn execute(
        &self,
        worker: Worker,
        run: ClaimedRun,
    ) -> Option<BoxFuture<Result<(), sqlx::Error>>> {
        let handler = self.handlers.get(&run.operation)?;
        Some(handler.execute(worker, run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_full_registry_handles_every_operation() {
        let client = Arc::new(
            crate::server::graph::GraphClient::new(crate::server::graph::GraphConfig::new(
                "http://127.0.0.1:9",
                "http://127.0.0.1:9/beta",
            ))
            .unwrap(),
        );
        assert_eq!(
            Registry::full(client.clone(), client).operations(),
            OperationType::ALL.to_vec()
        );
    }

    #[test]
    fn a_stored_input_plans_the_items_its_operation_would() {
        let registry = Registry::planning().expect("a planning registry");
        let run = |input: &str| Run {
            id: 1,
            attempt: 0,
            tenant_id: 1,
            target_id: 1,
            initiated_by: None,
            input: input.to_owned(),
        };
        let drift = r#"{"backup_set_id":1,"policy_ids":[4,7,9]}"#;
        assert_eq!(
            registry.plan(OperationType::DriftCheck, &run(drift)),
            Some(vec![4, 7, 9])
        );
        assert_eq!(
            registry.plan(OperationType::CaptureSnapshot, &run(r#"{"policy_id":5}"#)),
            Some(vec![5])
        );
        assert_eq!(
            registry.plan(OperationType::CheckConnection, &run("{}")),
            Some(Vec::new())
        );
        assert_eq!(registry.plan(OperationType::DriftCheck, &run("[")), None);
    }

    #[test]
    fn recorded_outcomes_are_never_pending() {
        assert_eq!(Recorded::succeeded().outcome(), ItemOutcome::Succeeded);
        let skipped = Recorded::skipped(ReasonCode::AlreadyInBackupSet);
        assert_eq!(
            (skipped.outcome(), skipped.reason()),
            (ItemOutcome::Skipped, Some(ReasonCode::AlreadyInBackupSet))
        );
        let failed = Recorded::failed(ReasonCode::Timeout, "slow".into());
        assert_eq!(
            (failed.outcome(), failed.message()),
            (ItemOutcome::Failed, Some("slow"))
        );
    }
}
