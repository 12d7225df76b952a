//! Reading runs for the screens: the tenant's runs, filtered (Runs page), one run with a page of
//! its items (run detail) and the recent runs of a backup set (run panel). Every query is scoped
//! by the tenant id.

use sqlx::FromRow;

use super::super::auth::JoinedRead;
use super::super::db::{Backend, Db, Sql};
use super::super::tenants::TenantScope;
use crate::domain::graph_wait::{GraphFigures, GraphWait, GraphWaitReason};
use crate::domain::policy_type::PolicyType;
use crate::domain::reason_code::ReasonCode;
use crate::domain::restore::{PlanAction, RestoreAction};
use crate::domain::run::{OperationType, RunFilter, StoredOperation};
use crate::domain::run_detail::{
    ItemFilter, ItemOutcome, ItemWindow, RestoreItemResult, RestoreRun, RunDetail, RunItemPage,
    RunItemRow, RunTarget,
};
use crate::domain::versions::{CaptureResult, Drift};
use crate::domain::{AppError, RunStatus, RunSummary, RunsPage, Timestamp};
use crate::server::backup_sets;
use crate::server::engine::ops::add_policies::AddPoliciesInput;
use crate::server::engine::ops::restore_preview::RestorePreviewInput;

/// How many ended runs the run panel shows for one backup set, beside its active ones.
pub const PANEL_RUNS: i64 = 5;

/// Up to how many active runs of one backup set the run panel shows: all of them in practice
/// (each needs another selection); the bound only caps what one poll reads.
pub const PANEL_ACTIVE_RUNS: i64 = 100;

/// The run panel's runs of one backup set, a condition over `runs r`: every active run (the
/// oldest [`PANEL_ACTIVE_RUNS`], which run first) and the [`PANEL_RUNS`] that ended last. An
/// active run stays listed however many runs are queued after it (its Cancel, and the toast
/// when it ends, need it listed), and a run that just ended is listed even when newer runs
/// ended before it. The rows are tenant `tenant`'s; the two selections read runs of tenant
/// `owner`, an expression that must not refer to the outer query, so that each is read once
/// per statement (through the tenant's index), not once per row. The backup set and the two
/// bounds are bound to the placeholders from `$first` on.
fn panel_runs(tenant: &str, owner: &str, first: usize) -> String {
    let (set, active, ended) = (first, first + 1, first + 2);
    format!(
        "r.tenant_id = {tenant} AND r.resource = 'backup_set' AND r.target_id = ${set} \
         AND (r.id IN (SELECT a.id FROM runs a WHERE a.tenant_id = {owner} \
               AND a.resource = 'backup_set' AND a.target_id = ${set} \
               AND a.status IN ('pending', 'running') \
               ORDER BY a.created_at, a.id LIMIT ${active}) \
           OR r.id IN (SELECT e.id FROM runs e WHERE e.tenant_id = {owner} \
               AND e.resource = 'backup_set' AND e.target_id = ${set} \
               AND e.status NOT IN ('pending', 'running') \
               ORDER BY COALESCE(e.finished_at, e.created_at) DESC, e.id DESC LIMIT ${ended}))"
    )
}

/// [`panel_runs`] joined into the authorization point's statement: the rows are the tenant
/// `t.id`'s; the selections read the runs of the set's tenant (the same one, or the rows are
/// none), which does not depend on `t`. The placeholders start at `$4`.
static PANEL_RUNS_JOINED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    panel_runs(
        "t.id",
        "(SELECT s.tenant_id FROM backup_sets s WHERE s.id = $4)",
        4,
    )
});

/// A stored reason code; an unknown spelling is logged and shown as `unknown_error`.
struct StoredReason(ReasonCode);

impl From<String> for StoredReason {
    fn from(raw: String) -> Self {
        Self(ReasonCode::parse(&raw).unwrap_or_else(|| {
            tracing::warn!(reason_code = %raw, "unknown reason code in the database");
            ReasonCode::UnknownError
        }))
    }
}

impl sqlx::Type<sqlx::Any> for StoredReason {
    fn type_info() -> sqlx::any::AnyTypeInfo {
        <String as sqlx::Type<sqlx::Any>>::type_info()
    }

    fn compatible(ty: &sqlx::any::AnyTypeInfo) -> bool {
        <String as sqlx::Type<sqlx::Any>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Any> for StoredReason {
    fn decode(value: sqlx::any::AnyValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        Ok(<String as sqlx::Decode<'r, sqlx::Any>>::decode(value)?.into())
    }
}

/// The columns and join every run list reads, as a [`SummaryRow`].
const SUMMARY_SELECT: &str = "SELECT r.id, r.operation_type, r.status, \
     u.display_name AS initiated_by, r.total_items, r.processed_items, \
     r.succeeded, r.failed, r.skipped, r.created_at, r.graph_wait_reason, r.graph_wait_until, \
     r.lease_expires_at \
     FROM runs r LEFT JOIN users u ON u.id = r.initiated_by";

/// A row of [`SUMMARY_SELECT`]: the summary and what its Graph wait and whether it is settled
/// are computed from.
#[derive(FromRow)]
struct SummaryRow {
    #[sqlx(flatten)]
    summary: RunSummary,
    #[sqlx(flatten)]
    wait: WaitColumns,
}

impl SummaryRow {
    /// The summary, settled or not by the lease clock's `now` ([`lease_now`]).
    fn into_summary(self, now: i64) -> RunSummary {
        RunSummary {
            graph_wait: self.wait.graph_wait(now),
            settled: self.wait.settled(now),
            ..self.summary
        }
    }
}

/// "Now" of the lease clock, as SQL (milliseconds since the epoch): on PostgreSQL the
/// database's (`statement_timestamp()`), the clock the workers write and judge leases by
/// (`engine::worker`), so a web process whose clock runs ahead of the database's does not read
/// a cancelled run settled while its claim's lease still holds it; on SQLite (one process, one
/// clock) `local`, a placeholder the query binds to [`app_now`].
pub(crate) fn lease_now_sql(backend: Backend, local: &str) -> String {
    match backend {
        Backend::Postgres => {
            "(floor(extract(epoch FROM statement_timestamp()) * 1000))::BIGINT".to_owned()
        }
        Backend::Sqlite => local.to_owned(),
    }
}

/// The lease clock's now ([`lease_now_sql`]), read once for a request that judges whether
/// runs are settled: one read on PostgreSQL, the process's clock on SQLite.
pub(crate) async fn lease_now(db: &Db) -> Result<i64, sqlx::Error> {
    match db.backend() {
        Backend::Postgres => {
            sqlx::query_scalar::<_, i64>(&format!(
                "SELECT {}",
                lease_now_sql(Backend::Postgres, "")
            ))
            .fetch_one(db.pool())
            .await
        }
        Backend::Sqlite => Ok(app_now()),
    }
}

/// How far ahead of the real time this process's clock reads, in milliseconds: a test seam
/// ([`set_app_clock_offset`]), 0 otherwise.
static APP_CLOCK_OFFSET: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Test seam: this process's clock, as the runs API reads it, runs `millis` ahead of the real
/// time (a web host whose clock is ahead of the database's).
pub fn set_app_clock_offset(millis: i64) {
    APP_CLOCK_OFFSET.store(millis, std::sync::atomic::Ordering::Relaxed);
}

/// This process's clock, in milliseconds since the epoch (with [`set_app_clock_offset`]'s).
pub(crate) fn app_now() -> i64 {
    Timestamp::now().millis() + APP_CLOCK_OFFSET.load(std::sync::atomic::Ordering::Relaxed)
}

/// The columns of a run row that record what it waits for on Graph, and whether a claim still
/// holds it.
#[derive(FromRow)]
struct WaitColumns {
    status: RunStatus,
    graph_wait_reason: Option<String>,
    graph_wait_until: Option<i64>,
    lease_expires_at: Option<i64>,
}

/// Whether a run that is `status` with its lease until `lease_expires_at` is settled at `now`
/// (see [`RunSummary::settled`]): it has ended and no claim holds it. Every end but a cancel's
/// clears the lease as it ends the run; a cancel leaves a running run's lease to its claim,
/// whose heartbeat renews it (and so does each batch it still records) while it has not run
/// out, and which clears it once it has concluded (`engine::worker`). A claim that died
/// meanwhile holds it until the lease expires. A queued run cancelled has no lease: settled at
/// once.
pub(crate) fn settled(status: RunStatus, lease_expires_at: Option<i64>, now: i64) -> bool {
    !status.is_active() && lease_expires_at.is_none_or(|until| until < now)
}

impl WaitColumns {
    fn settled(&self, now: i64) -> bool {
        settled(self.status, self.lease_expires_at, now)
    }

    /// The wait a running run's row records, as the time left from `now` by the lease clock
    /// ([`lease_now`]), the clock the worker wrote its end by (`engine::graph_figures`): on
    /// PostgreSQL the database's, so a web process whose clock disagrees with the worker's host
    /// still counts down the time the worker waits. A run that is not running waits for nothing.
    fn graph_wait(&self, now: i64) -> Option<GraphWait> {
        if self.status != RunStatus::Running {
            return None;
        }
        let raw = self.graph_wait_reason.as_deref()?;
        let Some(reason) = GraphWaitReason::parse(raw) else {
            tracing::warn!(reason = %raw, "unknown Graph wait reason in the database");
            return None;
        };
        Some(GraphWait {
            reason,
            resumes_in_ms: self
                .graph_wait_until
                .map(|until| until.saturating_sub(now).max(0)),
        })
    }
}

/// The tenant's runs matching `filter`, newest first (at most `limit`), only those older than
/// run `before` when given (keyset paging: stable while new runs arrive), and whether an older
/// one matches. The filter's values are bound as parameters; only their placeholders are
/// written into the SQL.
pub async fn list(
    db: &Db,
    scope: &TenantScope,
    filter: &RunFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<RunsPage, AppError> {
    let mut sql = Sql::new(SUMMARY_SELECT);
    sql.push(" WHERE r.tenant_id = ").int(scope.id());
    if let Some(status) = filter.status {
        sql.push(" AND r.status IN (");
        for (i, status) in status.statuses().into_iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.text(status.as_str());
        }
        sql.push(")");
    }
    if let Some(operation) = filter.operation {
        sql.push(" AND r.operation_type = ")
            .text(operation.as_str());
    }
    if let Some(before) = before {
        // A run of another tenant (or none) matches no row, so the page is empty.
        sql.push(" AND EXISTS (SELECT 1 FROM runs b WHERE b.tenant_id = r.tenant_id AND b.id = ")
            .int(before)
            .push(
                " AND (r.created_at < b.created_at OR (r.created_at = b.created_at AND r.id < b.id)))",
            );
    }
    // One row more than the page tells whether an older page holds anything.
    sql.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
        .int(limit.saturating_add(1));
    let mut rows: Vec<SummaryRow> = sql.query_as().fetch_all(db.pool()).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let now = lease_now(db).await?;
    let runs: Vec<RunSummary> = rows.into_iter().map(|row| row.into_summary(now)).collect();
    let next_before = more.then(|| runs.last().map(|run| run.id)).flatten();
    Ok(RunsPage { runs, next_before })
}

/// The columns of a run whose change the screens show ([`VersionRow`]); [`version`] and
/// [`backup_set_version`] join them into a text that changes when any of them does. The Graph figures are not among
/// them: they grow with every request, and a page shows them anew with the next counter
/// change (and the run's end), not every second. The lease is read only to tell whether the
/// run is settled ([`settled`]): a cancelled run's summary and late outcomes come after its
/// status changed, and the pages poll until it is settled. [`with_lease_now`] adds the lease
/// clock it is judged by.
const VERSION_COLUMNS: &str = "r.id, r.status, r.processed_items, r.succeeded, r.failed, \
     r.skipped, r.graph_wait_reason, r.graph_wait_until, r.summary, r.lease_expires_at";

/// The first placeholder a [`JoinedRead`]'s binds take in the authorization point's statement.
const JOINED_FIRST_PLACEHOLDER: usize = 4;

/// `read` with the lease clock's now ([`lease_now_sql`]) as its column `lease_now`, read in the
/// same statement: a poll judges whether its runs are settled by the clock the run detail and
/// panel judge them by (the database's on PostgreSQL), and still costs one read. On SQLite the
/// process's clock ([`app_now`]) is bound after the read's own binds.
fn with_lease_now(backend: Backend, mut read: JoinedRead) -> JoinedRead {
    let local = format!("${}", JOINED_FIRST_PLACEHOLDER + read.binds.len());
    read.columns = format!(
        "{}, {} AS lease_now",
        read.columns,
        lease_now_sql(backend, &local)
    );
    if backend == Backend::Sqlite {
        read.binds.push(app_now());
    }
    read
}

/// The [`VERSION_COLUMNS`] of one run, as stored.
#[derive(FromRow)]
pub struct VersionRow {
    id: i64,
    status: String,
    processed_items: i64,
    succeeded: i64,
    failed: i64,
    skipped: i64,
    graph_wait_reason: Option<String>,
    graph_wait_until: Option<i64>,
    summary: Option<String>,
    lease_expires_at: Option<i64>,
    /// The lease clock's now as the statement read it ([`with_lease_now`]).
    lease_now: i64,
}

impl VersionRow {
    /// Whether the run is settled at the row's lease clock ([`settled`]); a status this build
    /// does not know is not.
    fn settled(&self) -> bool {
        RunStatus::parse(&self.status)
            .is_some_and(|status| settled(status, self.lease_expires_at, self.lease_now))
    }

    /// The version's text. A wait moves it only when it starts, ends or its end moves
    /// (`graph_wait_until`), not every second: the pages count "resuming in 12 s" down
    /// themselves from when they read it, instead of reading the whole run (and its page of
    /// items) again every second of the wait.
    fn text(&self) -> String {
        // The summary by its checksum: a version is read every poll, the summary seldom.
        let summary = self
            .summary
            .as_deref()
            .map_or(0, |summary| crc32fast::hash(summary.as_bytes()));
        format!(
            "{}:{}:{}:{}:{}:{}:{}@{}:{summary:x}:{}",
            self.id,
            self.status,
            self.processed_items,
            self.succeeded,
            self.failed,
            self.skipped,
            self.graph_wait_reason.as_deref().unwrap_or_default(),
            self.graph_wait_until.unwrap_or_default(),
            if self.settled() { "settled" } else { "moving" },
        )
    }
}

/// A run's [`VersionRow`] with the newest run that retried it.
#[derive(FromRow)]
pub struct DetailVersionRow {
    #[sqlx(flatten)]
    run: VersionRow,
    retried_by: Option<i64>,
}

/// What the run detail page polls, read with the authorization ([`JoinedRead`]): one run of the
/// tenant by primary key, with the newest run that retried it (the `retry_of` index), and the
/// lease clock's now on `backend` ([`with_lease_now`]).
pub fn version_read(backend: Backend, run_id: i64) -> JoinedRead {
    with_lease_now(
        backend,
        JoinedRead {
            columns: format!(
                "{VERSION_COLUMNS}, (SELECT MAX(c.id) FROM runs c \
                   WHERE c.retry_of = r.id AND c.tenant_id = r.tenant_id) AS retried_by"
            ),
            table: "runs r",
            on: "r.tenant_id = t.id AND r.id = $4",
            key: "r.id",
            order: "r.id",
            limit: 1,
            binds: vec![run_id],
        },
    )
}

/// The version of one run as its detail page shows it, from [`version_read`]'s row.
pub fn version(rows: &[DetailVersionRow]) -> Result<String, AppError> {
    let row = rows
        .first()
        .ok_or_else(|| AppError::NotFound("This run does not exist in this tenant.".into()))?;
    Ok(format!(
        "{}/{}",
        row.run.text(),
        row.retried_by.unwrap_or_default()
    ))
}

/// What the run panel polls, read with the authorization ([`JoinedRead`]): the runs the panel
/// lists ([`panel_runs`]), newest first, and the lease clock's now on `backend`
/// ([`with_lease_now`]).
pub fn backup_set_version_read(backend: Backend, backup_set_id: i64) -> JoinedRead {
    with_lease_now(
        backend,
        JoinedRead {
            columns: VERSION_COLUMNS.to_owned(),
            table: "runs r",
            on: PANEL_RUNS_JOINED.as_str(),
            key: "r.id",
            order: "r.created_at DESC, r.id DESC",
            limit: PANEL_ACTIVE_RUNS + PANEL_RUNS,
            binds: vec![backup_set_id, PANEL_ACTIVE_RUNS, PANEL_RUNS],
        },
    )
}

/// The version of the run panel of one backup set: its recent runs' versions, from
/// [`backup_set_version_read`]'s rows.
pub fn backup_set_version(rows: &[VersionRow]) -> String {
    let versions: Vec<String> = rows.iter().map(VersionRow::text).collect();
    versions.join(",")
}

/// [`backup_set_version`], or 404 when backup set `backup_set_id` is not the tenant's (an
/// unknown id, another tenant's set), as the set's other reads answer. The poll stays one
/// statement for a set with runs: runs of the tenant name the set, so it exists (sets are
/// never deleted); only an empty answer reads the set.
pub async fn backup_set_version_of(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
    rows: &[VersionRow],
) -> Result<String, AppError> {
    if rows.is_empty() {
        backup_sets::ensure_exists(db, scope.id(), backup_set_id).await?;
    }
    Ok(backup_set_version(rows))
}

/// The runs of one backup set the run panel lists ([`panel_runs`]: the active ones and the
/// last ended), newest first; 404 when the set is not the tenant's (read only when it has no
/// runs, as in [`backup_set_version_of`]).
pub async fn for_backup_set(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
) -> Result<Vec<RunSummary>, AppError> {
    let sql = format!(
        "{SUMMARY_SELECT} WHERE {} ORDER BY r.created_at DESC, r.id DESC",
        panel_runs("$1", "$1", 2)
    );
    let rows: Vec<SummaryRow> = sqlx::query_as(&sql)
        .bind(scope.id())
        .bind(backup_set_id)
        .bind(PANEL_ACTIVE_RUNS)
        .bind(PANEL_RUNS)
        .fetch_all(db.pool())
        .await?;
    if rows.is_empty() {
        backup_sets::ensure_exists(db, scope.id(), backup_set_id).await?;
        return Ok(Vec::new());
    }
    let now = lease_now(db).await?;
    Ok(rows.into_iter().map(|row| row.into_summary(now)).collect())
}

/// One run of the tenant with one page of its items (only those with `outcome`, when given).
/// A poll of the run detail page costs the run row, one count and one page, whatever the run's
/// size.
pub async fn detail(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
    filter: Option<ItemFilter>,
    window: ItemWindow,
) -> Result<RunDetail, AppError> {
    let row: DetailRow = sqlx::query_as(
        "SELECT r.id, r.operation_type, r.status, u.display_name AS initiated_by, \
                r.created_at, r.started_at, r.finished_at, r.total_items, r.processed_items, \
                r.succeeded, r.failed, r.skipped, r.reason_code, r.failure_message, \
                r.resource, r.target_id, b.name AS backup_set_name, p.display_name AS policy_name, \
                r.retry_of, pr.status AS retry_of_status, r.summary, r.graph_wait_reason, \
                r.graph_wait_until, r.graph_requests, r.graph_throttled, r.graph_server_errors, \
                r.graph_retries, r.graph_waited_ms, r.lease_expires_at, \
                CASE WHEN r.operation_type = $3 THEN r.input END AS preview_input \
         FROM runs r LEFT JOIN users u ON u.id = r.initiated_by \
         LEFT JOIN backup_sets b ON b.tenant_id = r.tenant_id AND b.id = r.target_id \
           AND r.resource = 'backup_set' \
         LEFT JOIN policies p ON p.tenant_id = r.tenant_id AND p.id = r.target_id \
           AND r.resource = 'policy' \
         LEFT JOIN runs pr ON pr.tenant_id = r.tenant_id AND pr.id = r.retry_of \
         WHERE r.tenant_id = $1 AND r.id = $2",
    )
    .bind(scope.id())
    .bind(run_id)
    .bind(OperationType::RestorePreview.as_str())
    .fetch_optional(db.pool())
    .await?
    .ok_or_else(|| AppError::NotFound("This run does not exist in this tenant.".into()))?;
    let status = row.wait.status;
    let mut items = item_page(db, scope, run_id, filter, window).await?;
    // Only a queued run can list its selection instead; an ended one is not asked.
    if items.total == 0 && status == RunStatus::Pending {
        if let Some(ids) = queued_selection(db, scope, run_id, filter).await? {
            items = selection_page(db, scope, &ids, window).await?;
        }
    }
    let operation = row.operation_type.known();

    let retried_by: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE tenant_id = $1 AND retry_of = $2 ORDER BY id DESC",
    )
    .bind(scope.id())
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    let retry_items = retry_items(db, scope, run_id, operation, status, row.failed).await?;
    let now = lease_now(db).await?;

    Ok(RunDetail {
        graph_wait: row.wait.graph_wait(now),
        settled: row.wait.settled(now),
        target: row.target(),
        restore: row.restore_run(),
        id: row.id,
        operation_type: row.operation_type,
        status,
        initiated_by: row.initiated_by,
        created_at: row.created_at,
        started_at: row.started_at,
        finished_at: row.finished_at,
        total_items: row.total_items,
        processed_items: row.processed_items,
        succeeded: row.succeeded,
        failed: row.failed,
        skipped: row.skipped,
        reason_code: row.reason_code.map(|reason| reason.0),
        failure_message: row.failure_message,
        summary: row.summary,
        items,
        retry_of: row.retry_of,
        retry_of_status: row.retry_of_status,
        retried_by,
        retry_items,
        graph: row.graph,
    })
}

/// The run row [`detail`] reads.
#[derive(FromRow)]
struct DetailRow {
    id: i64,
    operation_type: StoredOperation,
    initiated_by: Option<String>,
    created_at: Timestamp,
    started_at: Option<Timestamp>,
    finished_at: Option<Timestamp>,
    total_items: i64,
    processed_items: i64,
    succeeded: i64,
    failed: i64,
    skipped: i64,
    reason_code: Option<StoredReason>,
    failure_message: Option<String>,
    resource: String,
    target_id: i64,
    backup_set_name: Option<String>,
    policy_name: Option<String>,
    retry_of: Option<i64>,
    retry_of_status: Option<RunStatus>,
    summary: Option<String>,
    preview_input: Option<String>,
    #[sqlx(flatten)]
    wait: WaitColumns,
    #[sqlx(flatten)]
    graph: GraphFigures,
}

impl DetailRow {
    /// How a restore run ties to the wizard: a preview's source (from its input), or the
    /// preview an execute executed (its target).
    fn restore_run(&self) -> Option<RestoreRun> {
        match self.operation_type.known() {
            Some(OperationType::RestorePreview) => self
                .preview_input
                .as_deref()
                .and_then(|input| serde_json::from_str::<RestorePreviewInput>(input).ok())
                .map(|input| RestoreRun::Preview {
                    source: input.source,
                }),
            Some(OperationType::RestoreExecute) => Some(RestoreRun::Execute {
                preview_run_id: self.target_id,
            }),
            _ => None,
        }
    }

    /// What the run works on, named as it is now.
    fn target(&self) -> RunTarget {
        let id = self.target_id;
        match self.resource.as_str() {
            "backup_set" => RunTarget::BackupSet {
                id,
                name: self.backup_set_name.clone(),
            },
            "policy" => RunTarget::Policy {
                id,
                name: self.policy_name.clone(),
            },
            _ => RunTarget::Tenant,
        }
    }
}

/// What "Retry N failed" (or "Resume N cancelled") would take again: the failed items of a
/// capture run that ended, and of a cancelled one also the items the cancel skipped. The same
/// rule as the retry itself (`runs::retry`).
async fn retry_items(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
    operation: Option<OperationType>,
    status: RunStatus,
    failed: i64,
) -> Result<i64, AppError> {
    if status.is_active() || operation != Some(OperationType::AddPolicies) {
        return Ok(0);
    }
    if status != RunStatus::Cancelled {
        return Ok(failed);
    }
    let cancelled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) AS n FROM run_items \
         WHERE tenant_id = $1 AND run_id = $2 \
         AND (outcome = 'failed' OR (outcome = 'skipped' AND reason_code = $3))",
    )
    .bind(scope.id())
    .bind(run_id)
    .bind(ReasonCode::Cancelled.as_str())
    .fetch_one(db.pool())
    .await?;
    Ok(cancelled)
}

/// The policies a queued "add policies" run lists as its items before the engine writes them
/// (it does when it claims the run): the selection stored with the run, every policy pending,
/// while the run is pending and has no item yet, in a list of every item or of the pending
/// ones. `None` when the run's items are what it lists. The run detail page and the CSV export
/// both ask this, so they list a queued run alike.
pub async fn queued_selection(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
    filter: Option<ItemFilter>,
) -> Result<Option<Vec<i64>>, AppError> {
    if !matches!(
        filter,
        None | Some(ItemFilter::Outcome(ItemOutcome::Pending))
    ) {
        return Ok(None);
    }
    let input: Option<String> = sqlx::query_scalar(
        "SELECT r.input FROM runs r \
         WHERE r.tenant_id = $1 AND r.id = $2 AND r.status = $3 AND r.operation_type = $4 \
         AND NOT EXISTS (SELECT 1 FROM run_items i \
           WHERE i.tenant_id = r.tenant_id AND i.run_id = r.id)",
    )
    .bind(scope.id())
    .bind(run_id)
    .bind(RunStatus::Pending.as_str())
    .bind(OperationType::AddPolicies.as_str())
    .fetch_optional(db.pool())
    .await?;
    // An input the engine cannot read fails the run when claimed; until then nothing is listed.
    Ok(input.map(|input| {
        AddPoliciesInput::from_json(&input)
            .map(|input| input.policy_ids)
            .unwrap_or_else(|error| {
                tracing::error!(%error, run_id, "unreadable run input");
                Vec::new()
            })
    }))
}

/// One page of a queued run's selection ([`queued_selection`]), in policy name order, as
/// pending items.
async fn selection_page(
    db: &Db,
    scope: &TenantScope,
    ids: &[i64],
    window: ItemWindow,
) -> Result<RunItemPage, AppError> {
    let backend = db.backend();
    let selected = backend.id_in("p.id", "$2", ids);
    let total: i64 = selected
        .bind(
            sqlx::query_scalar(&format!(
                "SELECT COUNT(*) AS n FROM policies p WHERE p.tenant_id = $1 AND {}",
                selected.sql
            ))
            .bind(scope.id()),
        )
        .fetch_one(db.pool())
        .await?;
    let offset = window.offset_within(total);
    let selected = backend.id_in("p.id", "$4", ids);
    let rows = selected
        .bind(
            sqlx::query_as::<_, (i64, String, PolicyType)>(&format!(
                "SELECT p.id, p.display_name, p.policy_type FROM policies p \
                 WHERE p.tenant_id = $1 AND {} ORDER BY p.display_name, p.id LIMIT $2 OFFSET $3",
                selected.sql
            ))
            .bind(scope.id())
            .bind(window.limit())
            .bind(offset),
        )
        .fetch_all(db.pool())
        .await?
        .into_iter()
        .map(|(policy_id, policy_name, policy_type)| RunItemRow {
            policy_id,
            policy_name,
            policy_type,
            outcome: ItemOutcome::Pending,
            reason_code: None,
            message: None,
            result: None,
            restore: None,
        })
        .collect();
    Ok(RunItemPage {
        rows,
        total,
        offset,
        limit: window.limit(),
    })
}

/// One page of a run's items in policy name order, with the number of items that match.
async fn item_page(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
    filter: Option<ItemFilter>,
    window: ItemWindow,
) -> Result<RunItemPage, AppError> {
    // The outcome count is served by the (run_id, outcome) index.
    let condition = |sql: &mut Sql| {
        sql.push(" WHERE i.tenant_id = ").int(scope.id());
        sql.push(" AND i.run_id = ").int(run_id);
        match filter {
            Some(ItemFilter::Outcome(outcome)) => {
                sql.push(" AND i.outcome = ").text(outcome.as_str());
            }
            Some(ItemFilter::Drift(drift)) => {
                sql.push(" AND i.drift = ").text(drift.as_str());
            }
            None => {}
        }
    };
    let mut count = Sql::new("SELECT COUNT(*) AS n FROM run_items i");
    condition(&mut count);
    let total: i64 = count.query_scalar().fetch_one(db.pool()).await?;
    let offset = window.offset_within(total);

    let mut page = Sql::new(
        "SELECT i.policy_id, p.display_name, p.policy_type, i.outcome, i.reason_code, i.message, \
         i.drift, i.changed_settings, i.snapshot_id, i.base_snapshot_id, i.restore_plan, \
         i.restore_action, i.created_graph_id \
         FROM run_items i JOIN policies p ON p.tenant_id = i.tenant_id AND p.id = i.policy_id",
    );
    condition(&mut page);
    page.push(" ORDER BY p.display_name, i.id LIMIT ")
        .int(window.limit())
        .push(" OFFSET ")
        .int(offset);
    let rows: Vec<ItemRow> = page.query_as().fetch_all(db.pool()).await?;
    let rows = rows.into_iter().map(RunItemRow::from).collect();
    Ok(RunItemPage {
        rows,
        total,
        offset,
        limit: window.limit(),
    })
}

/// A row of a run's item page.
#[derive(FromRow)]
struct ItemRow {
    policy_id: i64,
    display_name: String,
    policy_type: PolicyType,
    outcome: ItemOutcome,
    reason_code: Option<StoredReason>,
    message: Option<String>,
    /// With `changed_settings`, `snapshot_id` and `base_snapshot_id` (migration 0015): what a
    /// capture found, if anything.
    drift: Option<Drift>,
    changed_settings: Option<i64>,
    snapshot_id: Option<i64>,
    base_snapshot_id: Option<i64>,
    /// With `restore_action` and `created_graph_id` (migration 0016): what a restore planned
    /// or did, if anything. An unknown spelling reads as none.
    restore_plan: Option<String>,
    restore_action: Option<String>,
    created_graph_id: Option<String>,
}

impl From<ItemRow> for RunItemRow {
    fn from(item: ItemRow) -> Self {
        let restore = (item.restore_plan.is_some()
            || item.restore_action.is_some()
            || item.created_graph_id.is_some())
        .then(|| RestoreItemResult {
            plan: item.restore_plan.as_deref().and_then(PlanAction::parse),
            action: item
                .restore_action
                .as_deref()
                .and_then(RestoreAction::parse),
            created_graph_id: item.created_graph_id,
        });
        RunItemRow {
            policy_id: item.policy_id,
            policy_name: item.display_name,
            policy_type: item.policy_type,
            outcome: item.outcome,
            reason_code: item.reason_code.map(|reason| reason.0),
            message: item.message,
            result: item.drift.map(|drift| CaptureResult {
                drift,
                changed_settings: item.changed_settings,
                snapshot_id: item.snapshot_id,
                base_snapshot_id: item.base_snapshot_id,
            }),
            restore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run waiting on Graph keeps its version while the wait stands: the pages count the
    /// wait down themselves, and read the run again only when something moved.
    #[test]
    fn a_waiting_run_keeps_its_version_while_the_wait_stands() {
        let row = VersionRow {
            id: 7,
            status: RunStatus::Running.as_str().to_owned(),
            processed_items: 3,
            succeeded: 3,
            failed: 0,
            skipped: 0,
            graph_wait_reason: Some(GraphWaitReason::Throttled.as_str().to_owned()),
            graph_wait_until: Some(Timestamp::now().millis() + 10_000),
            summary: None,
            lease_expires_at: Some(Timestamp::now().millis() + 60_000),
            lease_now: Timestamp::now().millis(),
        };
        let before = row.text();
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        assert_eq!(row.text(), before, "a second later, nothing moved");
    }

    /// A version is settled or moving by the lease clock its statement read, not by this
    /// process's clock: a cancelled run's lease long past by the process's clock still holds
    /// it while the statement's clock reads it unexpired.
    #[test]
    fn a_version_is_settled_by_the_lease_clock_it_read() {
        let row = |lease_now| VersionRow {
            id: 7,
            status: RunStatus::Cancelled.as_str().to_owned(),
            processed_items: 1,
            succeeded: 1,
            failed: 0,
            skipped: 0,
            graph_wait_reason: None,
            graph_wait_until: None,
            summary: None,
            lease_expires_at: Some(2_000),
            lease_now,
        };
        assert!(row(1_000).text().ends_with(":moving"), "the claim holds it");
        assert!(row(3_000).text().ends_with(":settled"), "the lease ran out");
    }

    /// The polls read the lease clock in their one statement: the database's on PostgreSQL
    /// (nothing more to bind), the process's bound after the read's own binds on SQLite.
    #[test]
    fn the_polls_read_the_lease_clock_in_their_statement() {
        for read in [
            version_read(Backend::Postgres, 7),
            backup_set_version_read(Backend::Postgres, 7),
        ] {
            assert!(
                read.columns.ends_with(&format!(
                    "{} AS lease_now",
                    lease_now_sql(Backend::Postgres, "")
                )),
                "{}",
                read.columns
            );
        }
        assert_eq!(version_read(Backend::Postgres, 7).binds, [7]);
        let run = version_read(Backend::Sqlite, 7);
        assert!(
            run.columns.ends_with(", $5 AS lease_now"),
            "{}",
            run.columns
        );
        assert_eq!(run.binds.len(), 2);
        let panel = backup_set_version_read(Backend::Sqlite, 7);
        assert!(
            panel.columns.ends_with(", $7 AS lease_now"),
            "{}",
            panel.columns
        );
        assert_eq!(panel.binds.len(), 4);
    }

    #[test]
    fn a_run_is_settled_once_ended_and_no_claim_holds_it() {
        let now = 10_000;
        // Active: never settled, whatever its lease.
        assert!(!settled(RunStatus::Pending, None, now));
        assert!(!settled(RunStatus::Running, Some(0), now));
        // Ended by its claim (or a queued run cancelled): no lease.
        assert!(settled(RunStatus::Completed, None, now));
        assert!(settled(RunStatus::Cancelled, None, now));
        // Cancelled while a claim still records what was in flight: not until it lets go, or
        // its lease expires (the claim died).
        assert!(!settled(RunStatus::Cancelled, Some(now + 1), now));
        assert!(settled(RunStatus::Cancelled, Some(now - 1), now));
    }

    #[tokio::test]
    async fn an_unknown_reason_code_reads_as_unknown_error() {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect("sqlite::memory:").await.unwrap();
        let read = |raw: Option<&'static str>| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, Option<StoredReason>>("SELECT $1")
                    .bind(raw)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .map(|reason| reason.0)
            }
        };
        assert_eq!(read(None).await, None);
        assert_eq!(
            read(Some(ReasonCode::Cancelled.as_str())).await,
            Some(ReasonCode::Cancelled)
        );
        assert_eq!(
            read(Some("no_such_reason")).await,
            Some(ReasonCode::UnknownError)
        );
    }
}
