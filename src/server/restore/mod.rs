//! Defensive restore on the server: the wizard's source and its candidates, starting a preview
//! (`restore.preview`) and an execute (`restore.execute`) — the execute only after every gate
//! of [`crate::domain::restore::check_gates`] holds on what the database says — and reading a
//! restore run's plan back. No Graph call here: the engine's handlers make them.

pub mod compare;
pub mod refs;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::FromRow;

use crate::domain::restore::{
    check_gates, ExecuteRequest, GateFailure, GateInput, PastExecute, PlanAction, PlanItem,
    PlanNotes, PreviewRequest, RestoreAction, RestoreCandidate, RestorePreview, RestoreSource,
    RestoreSourceView, TypeCount, MAX_RESTORE_ITEMS, PREVIEW_TTL_MS,
};
use crate::domain::run::OperationType;
use crate::domain::run_detail::ItemOutcome;
use crate::domain::{AppError, PolicyType, RunStatus, SubmittedRun, Timestamp};
use crate::server::auth::TenantContext;
use crate::server::db::Db;
use crate::server::engine::ops::restore_execute::{ExecuteItem, RestoreExecuteInput};
use crate::server::engine::ops::restore_preview::{RestoreItem, RestorePreviewInput};
use crate::server::metrics;
use crate::server::runs::key::IdempotencyKey;
use crate::server::runs::queries::{lease_now, settled};
use crate::server::runs::start::ensure_cancelled_settled;
use crate::server::runs::submit::{create_or_reuse, find_active, NewRun};
use crate::server::tenants::{connection_check, TenantScope};

const CANDIDATE_COLUMNS: &str = "p.id AS policy_id, p.display_name, p.policy_type, \
     p.gone_from_intune_at, s.id AS snapshot_id, s.captured_at, s.with_assignments, \
     s.with_scope_tags";

/// The source's title and candidates, or 404 when it is not in this tenant.
pub async fn source_view(
    db: &Db,
    scope: &TenantScope,
    source: RestoreSource,
) -> Result<RestoreSourceView, AppError> {
    let tenant_id = scope.id();
    let (title, rows) = match source {
        RestoreSource::BackupSet(set_id) => {
            let name: Option<String> =
                sqlx::query_scalar("SELECT name FROM backup_sets WHERE tenant_id = $1 AND id = $2")
                    .bind(tenant_id)
                    .bind(set_id)
                    .fetch_optional(db.pool())
                    .await?;
            let name = name.ok_or_else(|| {
                AppError::NotFound("This backup set does not exist in this tenant.".into())
            })?;
            let sql = format!(
                "SELECT {CANDIDATE_COLUMNS} FROM backup_items bi \
                 JOIN policies p ON p.tenant_id = bi.tenant_id AND p.id = bi.policy_id \
                 JOIN policy_snapshots s ON s.tenant_id = bi.tenant_id AND s.id = bi.snapshot_id \
                 WHERE bi.tenant_id = $1 AND bi.backup_set_id = $2 \
                 ORDER BY p.display_name, p.id LIMIT $3"
            );
            let rows: Vec<CandidateRow> = sqlx::query_as(&sql)
                .bind(tenant_id)
                .bind(set_id)
                .bind(MAX_RESTORE_ITEMS as i64)
                .fetch_all(db.pool())
                .await?;
            (name, rows)
        }
        RestoreSource::Version(version_id) => {
            let sql = format!(
                "SELECT {CANDIDATE_COLUMNS} FROM policy_snapshots s \
                 JOIN policies p ON p.tenant_id = s.tenant_id AND p.id = s.policy_id \
                 WHERE s.tenant_id = $1 AND s.id = $2"
            );
            let rows: Vec<CandidateRow> = sqlx::query_as(&sql)
                .bind(tenant_id)
                .bind(version_id)
                .fetch_all(db.pool())
                .await?;
            let Some(first) = rows.first() else {
                return Err(AppError::NotFound(
                    "This version does not exist in this tenant.".into(),
                ));
            };
            (first.display_name.clone(), rows)
        }
    };
    let candidates: Vec<RestoreCandidate> = rows.into_iter().map(RestoreCandidate::from).collect();
    let mut counts: BTreeMap<&'static str, (PolicyType, i64)> = BTreeMap::new();
    for c in &candidates {
        counts
            .entry(c.policy_type.as_str())
            .or_insert((c.policy_type, 0))
            .1 += 1;
    }
    Ok(RestoreSourceView {
        source,
        title,
        tenant_name: scope.summary().display_name.clone(),
        oldest_capture: candidates.iter().map(|c| c.captured_at).min(),
        newest_capture: candidates.iter().map(|c| c.captured_at).max(),
        counts: counts
            .into_iter()
            .map(|(_, (policy_type, count))| TypeCount { policy_type, count })
            .collect(),
        candidates,
    })
}

/// A row of [`CANDIDATE_COLUMNS`].
#[derive(FromRow)]
struct CandidateRow {
    policy_id: i64,
    display_name: String,
    policy_type: PolicyType,
    snapshot_id: i64,
    captured_at: Timestamp,
    with_assignments: Option<i64>,
    with_scope_tags: Option<i64>,
    gone_from_intune_at: Option<i64>,
}

impl From<CandidateRow> for RestoreCandidate {
    fn from(row: CandidateRow) -> Self {
        let flag = |value: Option<i64>| value.is_some_and(|v| v != 0);
        RestoreCandidate {
            policy_id: row.policy_id,
            display_name: row.display_name,
            policy_type: row.policy_type,
            snapshot_id: row.snapshot_id,
            captured_at: row.captured_at,
            with_assignments: flag(row.with_assignments),
            with_scope_tags: flag(row.with_scope_tags),
            gone_from_intune: row.gone_from_intune_at.is_some(),
        }
    }
}

/// Queues a preview of restoring the chosen policies of `request.source`, or returns the
/// identical one already queued or running. 422 for an empty or unknown choice; 409 while a
/// preview of the same source that was cancelled has not settled.
pub async fn start_preview(
    db: &Db,
    ctx: &TenantContext,
    request: &PreviewRequest,
) -> Result<SubmittedRun, AppError> {
    let started = std::time::Instant::now();
    let tenant_id = ctx.scope.id();
    let chosen: BTreeSet<i64> = request.policy_ids.iter().copied().collect();
    if chosen.is_empty() {
        return Err(AppError::invalid(
            "policy_ids",
            "Choose at least one policy to restore.",
        ));
    }
    if chosen.len() > MAX_RESTORE_ITEMS {
        return Err(AppError::invalid(
            "policy_ids",
            format!("A restore takes at most {MAX_RESTORE_ITEMS} policies."),
        ));
    }
    let view = source_view(db, &ctx.scope, request.source).await?;
    let versions: HashMap<i64, i64> = view
        .candidates
        .iter()
        .map(|c| (c.policy_id, c.snapshot_id))
        .collect();
    let mut items = Vec::with_capacity(chosen.len());
    for policy_id in &chosen {
        let Some(&snapshot_id) = versions.get(policy_id) else {
            return Err(AppError::invalid(
                "policy_ids",
                format!("Policy {policy_id} is not in this restore's source."),
            ));
        };
        items.push(RestoreItem {
            policy_id: *policy_id,
            snapshot_id,
        });
    }
    connection_check::ensure_runs_allowed(db, tenant_id).await?;
    let operation = OperationType::RestorePreview;
    let (source_kind, source_id) = match request.source {
        RestoreSource::BackupSet(id) => ("backup_set", id),
        RestoreSource::Version(id) => ("version", id),
    };
    let mut fields = vec![
        (source_kind, source_id),
        ("assignments", i64::from(request.include_assignments)),
        ("scope_tags", i64::from(request.include_scope_tags)),
    ];
    for item in &items {
        fields.push(("policy", item.policy_id));
        fields.push(("version", item.snapshot_id));
    }
    let input = RestorePreviewInput {
        source: request.source,
        items,
        include_assignments: request.include_assignments,
        include_scope_tags: request.include_scope_tags,
    };
    let run = NewRun {
        operation,
        target_id: source_id,
        input: serde_json::to_string(&input).map_err(|_| AppError::Internal)?,
        key: IdempotencyKey::of(operation, tenant_id, &fields),
        total: input.items.len() as i64,
        retry_of: None,
    };
    // A double-click finds the first preview before anything else is read.
    if let Some(active) = find_active(db, tenant_id, &run.key).await? {
        metrics::run_submitted(operation.as_str(), true, started.elapsed());
        return Ok(active);
    }
    // A preview cancelled while it read may still record what was in flight: a new preview of
    // the same source would read beside it, the same requests twice. (Which read becomes a
    // policy's current version does not depend on the order they are recorded in:
    // `snapshots::store_captures`. A version and a backup set that happen to share an id share
    // the target too, and wait for each other's cancel to settle: a lease at most.)
    ensure_cancelled_settled(db, tenant_id, operation, source_id).await?;
    create_or_reuse(db, ctx, &run).await
}

/// A preview run as stored: its state, its input and its items' plans.
struct StoredPreview {
    status: RunStatus,
    finished_at: Option<Timestamp>,
    blocked: Option<String>,
    input: RestorePreviewInput,
    items: Vec<PlanItem>,
}

async fn load_preview(
    db: &Db,
    scope: &TenantScope,
    preview_run_id: i64,
) -> Result<StoredPreview, AppError> {
    let (status, finished_at, blocked, input) =
        sqlx::query_as::<_, (RunStatus, Option<Timestamp>, Option<String>, String)>(
            "SELECT status, finished_at, blocked, input FROM runs \
         WHERE tenant_id = $1 AND id = $2 AND operation_type = $3",
        )
        .bind(scope.id())
        .bind(preview_run_id)
        .bind(OperationType::RestorePreview.as_str())
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| AppError::NotFound("This restore preview does not exist.".into()))?;
    let input: RestorePreviewInput =
        serde_json::from_str(&input).map_err(|_| AppError::Internal)?;
    Ok(StoredPreview {
        status,
        finished_at,
        blocked,
        input,
        items: plan_items(db, scope, preview_run_id).await?,
    })
}

/// The items of a restore run (preview or execute), by policy name.
pub async fn plan_items(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
) -> Result<Vec<PlanItem>, AppError> {
    let rows: Vec<PlanRow> = sqlx::query_as(
        "SELECT ri.policy_id, p.display_name, p.policy_type, ri.outcome, ri.message, \
                ri.base_snapshot_id, ri.snapshot_id, ri.restore_plan, ri.restore_action, \
                ri.changed_settings, ri.created_graph_id, ri.restore_notes \
         FROM run_items ri JOIN policies p ON p.tenant_id = ri.tenant_id AND p.id = ri.policy_id \
         WHERE ri.tenant_id = $1 AND ri.run_id = $2 ORDER BY p.display_name, ri.id",
    )
    .bind(scope.id())
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(PlanItem::from).collect())
}

/// A row of [`plan_items`]. An unknown plan or action reads as none, unreadable notes as
/// none.
#[derive(FromRow)]
struct PlanRow {
    policy_id: i64,
    display_name: String,
    policy_type: PolicyType,
    outcome: ItemOutcome,
    message: Option<String>,
    base_snapshot_id: Option<i64>,
    snapshot_id: Option<i64>,
    restore_plan: Option<String>,
    restore_action: Option<String>,
    changed_settings: Option<i64>,
    created_graph_id: Option<String>,
    restore_notes: Option<String>,
}

impl From<PlanRow> for PlanItem {
    fn from(row: PlanRow) -> Self {
        PlanItem {
            policy_id: row.policy_id,
            display_name: row.display_name,
            policy_type: row.policy_type,
            outcome: row.outcome,
            backup_snapshot_id: row.base_snapshot_id,
            live_snapshot_id: row.snapshot_id,
            plan: row.restore_plan.as_deref().and_then(PlanAction::parse),
            action: row.restore_action.as_deref().and_then(RestoreAction::parse),
            changed_settings: row.changed_settings,
            created_graph_id: row.created_graph_id,
            notes: row
                .restore_notes
                .as_deref()
                .and_then(|n| serde_json::from_str::<PlanNotes>(n).ok())
                .unwrap_or_default(),
            message: row.message,
        }
    }
}

/// Whether the source now holds another version of a chosen policy than the preview restores
/// (a backup item replaced or removed, the set or the version deleted).
async fn backup_moved(
    db: &Db,
    tenant_id: i64,
    input: &RestorePreviewInput,
) -> Result<bool, AppError> {
    for item in &input.items {
        let current: Option<i64> = match input.source {
            RestoreSource::BackupSet(set_id) => {
                sqlx::query_scalar(
                    "SELECT snapshot_id FROM backup_items \
                     WHERE tenant_id = $1 AND backup_set_id = $2 AND policy_id = $3",
                )
                .bind(tenant_id)
                .bind(set_id)
                .bind(item.policy_id)
                .fetch_optional(db.pool())
                .await?
            }
            RestoreSource::Version(_) => {
                sqlx::query_scalar(
                    "SELECT id FROM policy_snapshots WHERE tenant_id = $1 AND id = $2 AND policy_id = $3",
                )
                .bind(tenant_id)
                .bind(item.snapshot_id)
                .bind(item.policy_id)
                .fetch_optional(db.pool())
                .await?
            }
        };
        if current != Some(item.snapshot_id) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The gates' view of a stored preview, with what was typed.
fn gate_input<'a>(
    preview: &'a StoredPreview,
    moved: bool,
    executed: PastExecute,
    reviewed: bool,
    typed_name: &'a str,
    tenant_name: &'a str,
) -> GateInput<'a> {
    let planned = |plan: PlanAction| {
        preview
            .items
            .iter()
            .filter(|item| item.plan == Some(plan))
            .count()
    };
    GateInput {
        preview_status: preview.status,
        preview_finished_at: preview.finished_at,
        now: Timestamp::now(),
        failed_items: preview
            .items
            .iter()
            .filter(|item| item.outcome == ItemOutcome::Failed)
            .count(),
        blocked_items: planned(PlanAction::Blocked),
        run_block: preview.blocked.as_deref(),
        backup_moved: moved,
        executed,
        reviewed,
        typed_name,
        tenant_name,
    }
}

/// A preview with its plan and whether it could be executed now (confirmations aside).
pub async fn preview(
    db: &Db,
    scope: &TenantScope,
    preview_run_id: i64,
) -> Result<RestorePreview, AppError> {
    let stored = load_preview(db, scope, preview_run_id).await?;
    let moved = backup_moved(db, scope.id(), &stored.input).await?;
    let executed = past_execute(db, scope.id(), preview_run_id).await?;
    let execute_run = execute_run(db, scope.id(), preview_run_id).await?;
    let tenant_name = scope.summary().display_name.clone();
    let gates = gate_input(&stored, moved, executed, true, &tenant_name, &tenant_name);
    let not_executable = check_gates(&gates).err();
    let expires_in_ms = match (&not_executable, stored.finished_at) {
        (None, Some(finished)) => {
            Some((finished.millis() + PREVIEW_TTL_MS - gates.now.millis()).max(0))
        }
        _ => None,
    };
    Ok(RestorePreview {
        run_id: preview_run_id,
        status: stored.status,
        finished_at: stored.finished_at,
        source: stored.input.source,
        include_assignments: stored.input.include_assignments,
        include_scope_tags: stored.input.include_scope_tags,
        run_block: stored.blocked,
        items: stored.items,
        not_executable,
        expires_in_ms,
        tenant_name,
        execute_run,
    })
}

/// The execute of this preview, whatever its status: one per preview ever (the unique index
/// `runs_one_execute_per_preview`; `start_execute` reuses the one queued or running). A page
/// opened at the preview follows it until it settled, not only while it is queued or running: a
/// cancelled execute whose claim still writes (its lease held) is `cancelled` already.
async fn execute_run(
    db: &Db,
    tenant_id: i64,
    preview_run_id: i64,
) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT id FROM runs WHERE tenant_id = $1 AND operation_type = $2 AND target_id = $3 \
         ORDER BY id DESC LIMIT 1",
    )
    .bind(tenant_id)
    .bind(OperationType::RestoreExecute.as_str())
    .bind(preview_run_id)
    .fetch_optional(db.pool())
    .await?)
}

/// Queues the execute of a preview once every gate holds on the server (422 for a wrong name or
/// a missing confirmation, 409 for a preview that is not current, not done or blocked), or
/// returns the execute of this preview that is already queued or running.
pub async fn start_execute(
    db: &Db,
    ctx: &TenantContext,
    request: &ExecuteRequest,
) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    let operation = OperationType::RestoreExecute;
    // The key names the preview (its items, versions and options), the target tenant and the
    // group mapping (none yet: a restore stays in its tenant).
    let key = IdempotencyKey::of(
        operation,
        tenant_id,
        &[
            ("preview", request.preview_run_id),
            ("target_tenant", tenant_id),
        ],
    );
    let stored = load_preview(db, &ctx.scope, request.preview_run_id).await?;
    let moved = backup_moved(db, tenant_id, &stored.input).await?;
    let executed = past_execute(db, tenant_id, request.preview_run_id).await?;
    let tenant_name = &ctx.scope.summary().display_name;
    let gates = gate_input(
        &stored,
        moved,
        executed,
        request.reviewed,
        &request.tenant_name,
        tenant_name,
    );
    if let Err(failure) = check_gates(&gates) {
        // A repeat of an execute already under way is that run, not a refusal.
        if let Some(active) = crate::server::runs::submit::find_active(db, tenant_id, &key).await? {
            if !failure.is_input() {
                crate::server::metrics::run_reused(operation.as_str());
                return Ok(active);
            }
        }
        return Err(gate_error(&failure));
    }
    // A repeat of an execute already under way is that run, as above.
    if find_active(db, tenant_id, &key).await?.is_none() {
        ensure_no_write_in_flight(db, tenant_id, &stored.items).await?;
    }
    connection_check::ensure_runs_allowed(db, tenant_id).await?;
    let mut items = Vec::with_capacity(stored.items.len());
    let live_hashes = live_hashes(db, tenant_id, request.preview_run_id).await?;
    for item in &stored.items {
        let (Some(plan), Some(snapshot_id)) = (item.plan, item.backup_snapshot_id) else {
            return Err(gate_error(&GateFailure::PreviewNotDone));
        };
        items.push(ExecuteItem {
            policy_id: item.policy_id,
            snapshot_id,
            plan,
            live_hash: live_hashes.get(&item.policy_id).cloned().flatten(),
        });
    }
    let input = RestoreExecuteInput {
        preview_run_id: request.preview_run_id,
        include_assignments: stored.input.include_assignments,
        include_scope_tags: stored.input.include_scope_tags,
        items,
    };
    let run = NewRun {
        operation,
        target_id: request.preview_run_id,
        input: serde_json::to_string(&input).map_err(|_| AppError::Internal)?,
        key,
        total: input.items.len() as i64,
        retry_of: None,
    };
    match create_or_reuse(db, ctx, &run).await {
        // The index of one execute per preview refused it: an execute ended since the check.
        Err(AppError::Conflict(conflict)) => {
            match past_execute(db, tenant_id, request.preview_run_id).await? {
                PastExecute::Ended => Err(gate_error(&GateFailure::AlreadyExecuted)),
                PastExecute::StoppedUnwritten => {
                    Err(gate_error(&GateFailure::ExecuteStoppedUnwritten))
                }
                PastExecute::Settling => Err(gate_error(&GateFailure::ExecuteSettling)),
                PastExecute::None => Err(AppError::Conflict(conflict)),
            }
        }
        submitted => submitted,
    }
}

/// Whether an execute of this preview has ended (the preview is spent: one execute per
/// preview, migration 0023), and whether it wrote. An item written (`restore_action` created
/// or updated), or whose write was announced (`create_sent_at`, `update_sent_at`: sent, its
/// outcome perhaps never recorded), counts as written. An execute that completed (every item
/// unchanged, say) was executed all the same; one cancelled or failed with no such item
/// (cancelled while queued, its credentials refused, every policy changed since the preview)
/// recorded no write. An announced create that a later preview found never landed
/// (`Settled::NeverLanded` clears its `create_sent_at`) no longer counts: the refusal says no
/// write was *recorded*, not that none was made. None of this holds while the execute is not
/// settled (cancelled, its claim still holding its lease, [`settled`]) while one of its writes
/// is announced with no result recorded (`in_flight`): Graph may still take it (executed) or
/// refuse it (`CreateRefused` clears `create_sent_at`, `UpdateRefused` puts `update_sent_at`
/// back: no write), so the preview is [`PastExecute::Settling`] until it let go (judged by the
/// lease clock, as the runs API judges it). With no such write the answer is final at once: a
/// write is announced only while the run is `running`, under its row lock, so a cancelled run
/// announces none.
async fn past_execute(
    db: &Db,
    tenant_id: i64,
    preview_run_id: i64,
) -> Result<PastExecute, AppError> {
    let ended: Option<(String, Option<i64>, i64, i64)> = sqlx::query_as(
        "SELECT r.status, r.lease_expires_at, (SELECT COUNT(*) FROM run_items i \
             WHERE i.tenant_id = r.tenant_id AND i.run_id = r.id \
               AND (i.restore_action IN ('created', 'updated') \
                    OR i.create_sent_at IS NOT NULL OR i.update_sent_at IS NOT NULL)), \
           (SELECT COUNT(*) FROM run_items i \
             WHERE i.tenant_id = r.tenant_id AND i.run_id = r.id AND i.restore_action IS NULL \
               AND (i.create_sent_at IS NOT NULL OR i.update_sent_at IS NOT NULL)) \
         FROM runs r WHERE r.tenant_id = $1 AND r.operation_type = $2 AND r.target_id = $3 \
           AND r.status NOT IN ('pending', 'running') LIMIT 1",
    )
    .bind(tenant_id)
    .bind(OperationType::RestoreExecute.as_str())
    .bind(preview_run_id)
    .fetch_optional(db.pool())
    .await?;
    let Some((status, lease_expires_at, written, in_flight)) = ended else {
        return Ok(PastExecute::None);
    };
    let status = RunStatus::parse(&status);
    if let (Some(RunStatus::Cancelled), Some(_), true) = (status, lease_expires_at, in_flight > 0) {
        if !settled(RunStatus::Cancelled, lease_expires_at, lease_now(db).await?) {
            return Ok(PastExecute::Settling);
        }
    }
    Ok(match (status, written) {
        (Some(RunStatus::Cancelled | RunStatus::Failed), 0) => PastExecute::StoppedUnwritten,
        _ => PastExecute::Ended,
    })
}

/// Refuses (409, naming the policy) an execute that would write a policy whose update or
/// create another execute of the tenant announced and has no result of yet, that execute
/// cancelled but its claim still holding its lease (not settled): Graph may still apply that
/// write after this execute read the live policy, and the two would race. Once that result
/// is recorded (or refused) or the claim let go, the execute may start.
async fn ensure_no_write_in_flight(
    db: &Db,
    tenant_id: i64,
    items: &[PlanItem],
) -> Result<(), AppError> {
    let in_flight: Vec<(i64, String)> = sqlx::query_as(
        "SELECT i.policy_id, p.display_name FROM run_items i \
         JOIN runs r ON r.id = i.run_id AND r.tenant_id = i.tenant_id \
         JOIN policies p ON p.id = i.policy_id AND p.tenant_id = i.tenant_id \
         WHERE i.tenant_id = $1 AND r.operation_type = $2 AND r.status = 'cancelled' \
           AND r.lease_expires_at IS NOT NULL AND r.lease_expires_at >= $3 \
           AND i.restore_action IS NULL \
           AND (i.create_sent_at IS NOT NULL OR i.update_sent_at IS NOT NULL)",
    )
    .bind(tenant_id)
    .bind(OperationType::RestoreExecute.as_str())
    .bind(lease_now(db).await?)
    .fetch_all(db.pool())
    .await?;
    let writes = |policy_id: i64| {
        items.iter().any(|item| {
            item.policy_id == policy_id
                && matches!(item.plan, Some(PlanAction::Create | PlanAction::Update))
        })
    };
    match in_flight
        .into_iter()
        .find(|(policy_id, _)| writes(*policy_id))
    {
        Some((_, name)) => Err(AppError::Conflict(format!(
            "A cancelled restore has not stopped yet: its write of \"{name}\" may still reach \
             Intune. Wait until it has stopped."
        ))),
        None => Ok(()),
    }
}

/// The live content hash each item's preview saw.
async fn live_hashes(
    db: &Db,
    tenant_id: i64,
    preview_run_id: i64,
) -> Result<HashMap<i64, Option<String>>, AppError> {
    let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
        "SELECT policy_id, live_hash FROM run_items WHERE tenant_id = $1 AND run_id = $2",
    )
    .bind(tenant_id)
    .bind(preview_run_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().collect())
}

/// The 4xx answer of a gate that does not hold.
fn gate_error(failure: &GateFailure) -> AppError {
    if failure.is_input() {
        let field = match failure {
            GateFailure::WrongTenantName => "tenant_name",
            _ => "reviewed",
        };
        AppError::invalid(field, failure.message())
    } else {
        AppError::Conflict(failure.message())
    }
}
