//! Reading runs for the screens: the tenant's runs, filtered (Runs page), one run with a page of
//! its items (run detail) and the recent runs of a backup set (run panel). Every query is scoped
//! by the tenant id.

use sqlx::{any::AnyRow, Row};

use super::super::db::{Db, Sql};
use super::super::tenants::TenantScope;
use super::stored_status;
use crate::domain::graph_wait::{GraphFigures, GraphWait, GraphWaitReason};
use crate::domain::reason_code::ReasonCode;
use crate::domain::restore::{PlanAction, RestoreAction};
use crate::domain::run::{OperationType, RunFilter};
use crate::domain::run_detail::{
    ItemFilter, ItemOutcome, ItemWindow, RestoreItemResult, RestoreRun, RunDetail, RunItemPage,
    RunItemRow, RunTarget,
};
use crate::domain::versions::{CaptureResult, Drift};
use crate::domain::{AppError, RunStatus, RunSummary, Timestamp};
use crate::server::engine::ops::add_policies::AddPoliciesInput;
use crate::server::engine::ops::restore_preview::RestorePreviewInput;

/// How many runs the run panel shows for one backup set.
pub const PANEL_RUNS: i64 = 5;

fn status(row: &AnyRow) -> Result<RunStatus, AppError> {
    Ok(stored_status(&row.try_get::<String, _>("status")?)?)
}

/// A stored reason code; an unknown spelling is logged and shown as `unknown_error`.
fn reason(row: &AnyRow, column: &str) -> Result<Option<ReasonCode>, AppError> {
    let raw: Option<String> = row.try_get(column)?;
    Ok(raw.map(|raw| {
        ReasonCode::parse(&raw).unwrap_or_else(|| {
            tracing::warn!(reason_code = %raw, "unknown reason code in the database");
            ReasonCode::UnknownError
        })
    }))
}

/// The columns and join every run list reads, mapped by [`summary`].
const SUMMARY_SELECT: &str = "SELECT r.id, r.operation_type, r.status, \
     u.display_name AS initiated_by, r.total_items, r.processed_items, \
     r.succeeded, r.failed, r.skipped, r.created_at, r.graph_wait_reason, r.graph_wait_until \
     FROM runs r LEFT JOIN users u ON u.id = r.initiated_by";

fn summary(row: &AnyRow) -> Result<RunSummary, AppError> {
    Ok(RunSummary {
        id: row.try_get("id")?,
        operation_type: row.try_get("operation_type")?,
        status: status(row)?,
        initiated_by: row.try_get("initiated_by")?,
        total_items: row.try_get("total_items")?,
        processed_items: row.try_get("processed_items")?,
        succeeded: row.try_get("succeeded")?,
        failed: row.try_get("failed")?,
        skipped: row.try_get("skipped")?,
        created_at: Timestamp(row.try_get("created_at")?),
        graph_wait: graph_wait(row)?,
    })
}

/// The wait a running run's row records (`graph_wait_reason`, `graph_wait_until`), as the
/// time left from now. A run that is not running waits for nothing.
fn graph_wait(row: &AnyRow) -> Result<Option<GraphWait>, AppError> {
    if status(row)? != RunStatus::Running {
        return Ok(None);
    }
    let Some(raw) = row.try_get::<Option<String>, _>("graph_wait_reason")? else {
        return Ok(None);
    };
    let Some(reason) = GraphWaitReason::parse(&raw) else {
        tracing::warn!(reason = %raw, "unknown Graph wait reason in the database");
        return Ok(None);
    };
    let until: Option<i64> = row.try_get("graph_wait_until")?;
    let now = Timestamp::now().millis();
    Ok(Some(GraphWait {
        reason,
        resumes_in_ms: until.map(|until| until.saturating_sub(now).max(0)),
    }))
}

/// The tenant's runs matching `filter`, newest first (at most `limit`), only those older than
/// run `before` when given (keyset paging: stable while new runs arrive). The filter's values
/// are bound as parameters; only their placeholders are written into the SQL.
pub async fn list(
    db: &Db,
    scope: &TenantScope,
    filter: &RunFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RunSummary>, AppError> {
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
    sql.push(" ORDER BY r.created_at DESC, r.id DESC LIMIT ")
        .int(limit);
    let rows = sql.query().fetch_all(db.pool()).await?;
    rows.iter().map(summary).collect()
}

/// The columns of a run whose change the screens show; [`version`] and [`backup_set_version`]
/// join them into a text that changes when any of them does. The Graph figures are not among
/// them: they grow with every request, and a page shows them anew with the next counter
/// change (and the run's end), not every second.
const VERSION_COLUMNS: &str = "r.id, r.status, r.processed_items, r.succeeded, r.failed, \
     r.skipped, r.graph_wait_reason, r.graph_wait_until";

fn version_text(row: &AnyRow) -> Result<String, AppError> {
    let wait: Option<String> = row.try_get("graph_wait_reason")?;
    let until: Option<i64> = row.try_get("graph_wait_until")?;
    // While a run waits on Graph the page counts down "resuming in 12 s": a new version every
    // second, for as long as the wait lasts.
    let second = match wait {
        Some(_) => Timestamp::now().millis() / 1000,
        None => 0,
    };
    Ok(format!(
        "{}:{}:{}:{}:{}:{}:{}@{second}:{}",
        row.try_get::<i64, _>("id")?,
        row.try_get::<String, _>("status")?,
        row.try_get::<i64, _>("processed_items")?,
        row.try_get::<i64, _>("succeeded")?,
        row.try_get::<i64, _>("failed")?,
        row.try_get::<i64, _>("skipped")?,
        wait.unwrap_or_default(),
        until.unwrap_or_default(),
    ))
}

/// The version of one run of the tenant as its detail page shows it (including the newest run
/// that retried it), in one read by primary key (and the `retry_of` index).
pub async fn version(db: &Db, scope: &TenantScope, run_id: i64) -> Result<String, AppError> {
    let row = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS}, \
                (SELECT MAX(c.id) FROM runs c WHERE c.retry_of = r.id AND c.tenant_id = r.tenant_id) \
                  AS retried_by \
         FROM runs r WHERE r.tenant_id = $1 AND r.id = $2"
    ))
    .bind(scope.id())
    .bind(run_id)
    .fetch_optional(db.pool())
    .await?
    .ok_or_else(|| AppError::NotFound("This run does not exist in this tenant.".into()))?;
    let retried_by: Option<i64> = row.try_get("retried_by")?;
    Ok(format!(
        "{}/{}",
        version_text(&row)?,
        retried_by.unwrap_or_default()
    ))
}

/// The version of the run panel of one backup set: its recent runs' versions.
pub async fn backup_set_version(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
) -> Result<String, AppError> {
    let rows = sqlx::query(&format!(
        "SELECT {VERSION_COLUMNS} FROM runs r \
         WHERE r.tenant_id = $1 AND r.resource = 'backup_set' AND r.target_id = $2 \
         ORDER BY r.created_at DESC, r.id DESC LIMIT $3"
    ))
    .bind(scope.id())
    .bind(backup_set_id)
    .bind(PANEL_RUNS)
    .fetch_all(db.pool())
    .await?;
    let versions: Result<Vec<String>, AppError> = rows.iter().map(version_text).collect();
    Ok(versions?.join(","))
}

/// The most recent runs that worked on one backup set, newest first.
pub async fn for_backup_set(
    db: &Db,
    scope: &TenantScope,
    backup_set_id: i64,
) -> Result<Vec<RunSummary>, AppError> {
    let sql = format!(
        "{SUMMARY_SELECT} WHERE r.tenant_id = $1 AND r.resource = 'backup_set' AND r.target_id = $2 \
         ORDER BY r.created_at DESC, r.id DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(scope.id())
        .bind(backup_set_id)
        .bind(PANEL_RUNS)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(summary).collect()
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
    let row = sqlx::query(
        "SELECT r.id, r.operation_type, r.status, u.display_name AS initiated_by, \
                r.created_at, r.started_at, r.finished_at, r.total_items, r.processed_items, \
                r.succeeded, r.failed, r.skipped, r.reason_code, r.failure_message, \
                r.resource, r.target_id, b.name AS backup_set_name, p.display_name AS policy_name, \
                r.retry_of, r.summary, r.graph_wait_reason, \
                r.graph_wait_until, r.graph_requests, r.graph_throttled, r.graph_server_errors, \
                r.graph_retries, r.graph_waited_ms, \
                CASE WHEN r.operation_type = $3 THEN r.input END AS preview_input \
         FROM runs r LEFT JOIN users u ON u.id = r.initiated_by \
         LEFT JOIN backup_sets b ON b.tenant_id = r.tenant_id AND b.id = r.target_id \
           AND r.resource = 'backup_set' \
         LEFT JOIN policies p ON p.tenant_id = r.tenant_id AND p.id = r.target_id \
           AND r.resource = 'policy' \
         WHERE r.tenant_id = $1 AND r.id = $2",
    )
    .bind(scope.id())
    .bind(run_id)
    .bind(OperationType::RestorePreview.as_str())
    .fetch_optional(db.pool())
    .await?
    .ok_or_else(|| AppError::NotFound("This run does not exist in this tenant.".into()))?;
    let status = status(&row)?;
    let mut items = item_page(db, scope, run_id, filter, window).await?;
    // A queued run's items are written by the worker when it claims the run; until then the
    // page lists the stored selection, every policy pending.
    let waiting = matches!(
        filter,
        None | Some(ItemFilter::Outcome(ItemOutcome::Pending))
    );
    let operation: String = row.try_get("operation_type")?;
    let selects_policies = OperationType::parse(&operation) == Some(OperationType::AddPolicies);
    if items.total == 0 && status == RunStatus::Pending && waiting && selects_policies {
        items = selection_page(db, scope, run_id, window).await?;
    }

    let retried_by: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE tenant_id = $1 AND retry_of = $2 ORDER BY id DESC",
    )
    .bind(scope.id())
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    let failed: i64 = row.try_get("failed")?;
    let retry_items = retry_items(db, scope, run_id, &row, status, failed).await?;

    let time = |column: &str| -> Result<Option<Timestamp>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp))
    };
    Ok(RunDetail {
        id: row.try_get("id")?,
        operation_type: operation.into(),
        status,
        initiated_by: row.try_get("initiated_by")?,
        created_at: Timestamp(row.try_get("created_at")?),
        started_at: time("started_at")?,
        finished_at: time("finished_at")?,
        total_items: row.try_get("total_items")?,
        processed_items: row.try_get("processed_items")?,
        succeeded: row.try_get("succeeded")?,
        failed,
        skipped: row.try_get("skipped")?,
        reason_code: reason(&row, "reason_code")?,
        failure_message: row.try_get("failure_message")?,
        target: target(&row)?,
        summary: row.try_get("summary")?,
        items,
        retry_of: row.try_get("retry_of")?,
        retried_by,
        retry_items,
        graph_wait: graph_wait(&row)?,
        graph: GraphFigures {
            requests: row.try_get("graph_requests")?,
            throttled: row.try_get("graph_throttled")?,
            server_errors: row.try_get("graph_server_errors")?,
            retries: row.try_get("graph_retries")?,
            waited_ms: row.try_get("graph_waited_ms")?,
        },
        restore: restore_run(&row)?,
    })
}

/// How a restore run ties to the wizard: a preview's source (from its input), or the preview
/// an execute executed (its target).
fn restore_run(row: &AnyRow) -> Result<Option<RestoreRun>, AppError> {
    let operation: String = row.try_get("operation_type")?;
    Ok(match OperationType::parse(&operation) {
        Some(OperationType::RestorePreview) => {
            let input: Option<String> = row.try_get("preview_input")?;
            input
                .and_then(|input| serde_json::from_str::<RestorePreviewInput>(&input).ok())
                .map(|input| RestoreRun::Preview {
                    source: input.source,
                })
        }
        Some(OperationType::RestoreExecute) => Some(RestoreRun::Execute {
            preview_run_id: row.try_get("target_id")?,
        }),
        _ => None,
    })
}

/// What the run works on, named as it is now.
fn target(row: &AnyRow) -> Result<RunTarget, AppError> {
    let id: i64 = row.try_get("target_id")?;
    let resource: String = row.try_get("resource")?;
    Ok(match resource.as_str() {
        "backup_set" => RunTarget::BackupSet {
            id,
            name: row.try_get("backup_set_name")?,
        },
        "policy" => RunTarget::Policy {
            id,
            name: row.try_get("policy_name")?,
        },
        _ => RunTarget::Tenant,
    })
}

/// What "Retry N failed" (or "Resume N cancelled") would take again: the failed items of a
/// capture run that ended, or the items a cancel skipped. The same rule as the retry itself.
async fn retry_items(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
    row: &AnyRow,
    status: RunStatus,
    failed: i64,
) -> Result<i64, AppError> {
    let operation: String = row.try_get("operation_type")?;
    if status.is_active() || OperationType::parse(&operation) != Some(OperationType::AddPolicies) {
        return Ok(0);
    }
    if status != RunStatus::Cancelled {
        return Ok(failed);
    }
    let cancelled: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM run_items \
         WHERE tenant_id = $1 AND run_id = $2 AND outcome = 'skipped' AND reason_code = $3",
    )
    .bind(scope.id())
    .bind(run_id)
    .bind(ReasonCode::Cancelled.as_str())
    .fetch_one(db.pool())
    .await?
    .try_get("n")?;
    Ok(cancelled)
}

/// One page of a queued run's selection (stored with the run), in policy name order, as pending
/// items.
async fn selection_page(
    db: &Db,
    scope: &TenantScope,
    run_id: i64,
    window: ItemWindow,
) -> Result<RunItemPage, AppError> {
    let input: String = sqlx::query("SELECT input FROM runs WHERE tenant_id = $1 AND id = $2")
        .bind(scope.id())
        .bind(run_id)
        .fetch_one(db.pool())
        .await?
        .try_get("input")?;
    // An input the engine cannot read fails the run when claimed; until then nothing is listed.
    let ids = AddPoliciesInput::from_json(&input)
        .map(|input| input.policy_ids)
        .unwrap_or_else(|error| {
            tracing::error!(%error, run_id, "unreadable run input");
            Vec::new()
        });
    let selected = db.backend().id_in("p.id", &ids);
    let total: i64 = sqlx::query(&format!(
        "SELECT COUNT(*) AS n FROM policies p WHERE p.tenant_id = $1 AND {selected}"
    ))
    .bind(scope.id())
    .fetch_one(db.pool())
    .await?
    .try_get("n")?;
    let offset = window.offset_within(total);
    let rows = sqlx::query(&format!(
        "SELECT p.id, p.display_name, p.policy_type FROM policies p \
         WHERE p.tenant_id = $1 AND {selected} ORDER BY p.display_name, p.id LIMIT $2 OFFSET $3"
    ))
    .bind(scope.id())
    .bind(window.limit())
    .bind(offset)
    .fetch_all(db.pool())
    .await?
    .iter()
    .map(|policy| {
        Ok(RunItemRow {
            policy_id: policy.try_get("id")?,
            policy_name: policy.try_get("display_name")?,
            policy_type: policy.try_get("policy_type")?,
            outcome: ItemOutcome::Pending,
            reason_code: None,
            message: None,
            result: None,
            restore: None,
        })
    })
    .collect::<Result<_, AppError>>()?;
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
    let total: i64 = count.query().fetch_one(db.pool()).await?.try_get("n")?;
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
    let rows = page
        .query()
        .fetch_all(db.pool())
        .await?
        .iter()
        .map(|item| {
            let raw: String = item.try_get("outcome")?;
            Ok(RunItemRow {
                policy_id: item.try_get("policy_id")?,
                policy_name: item.try_get("display_name")?,
                policy_type: item.try_get("policy_type")?,
                outcome: ItemOutcome::parse(&raw).ok_or_else(|| {
                    tracing::error!(outcome = %raw, "unknown item outcome in the database");
                    AppError::Internal
                })?,
                reason_code: reason(item, "reason_code")?,
                message: item.try_get("message")?,
                result: capture_result(item)?,
                restore: restore_result(item)?,
            })
        })
        .collect::<Result<_, AppError>>()?;
    Ok(RunItemPage {
        rows,
        total,
        offset,
        limit: window.limit(),
    })
}

/// What a capture found for an item (the `run_items` columns of migration 0015), if anything.
fn capture_result(item: &AnyRow) -> Result<Option<CaptureResult>, AppError> {
    let Some(raw) = item.try_get::<Option<String>, _>("drift")? else {
        return Ok(None);
    };
    let drift = Drift::parse(&raw).ok_or_else(|| {
        tracing::error!(drift = %raw, "unknown drift in the database");
        AppError::Internal
    })?;
    Ok(Some(CaptureResult {
        drift,
        changed_settings: item.try_get("changed_settings")?,
        snapshot_id: item.try_get("snapshot_id")?,
        base_snapshot_id: item.try_get("base_snapshot_id")?,
    }))
}

/// What a restore planned or did for an item (the `run_items` columns of migration 0016), if
/// anything.
fn restore_result(item: &AnyRow) -> Result<Option<RestoreItemResult>, AppError> {
    let plan: Option<String> = item.try_get("restore_plan")?;
    let action: Option<String> = item.try_get("restore_action")?;
    let created_graph_id: Option<String> = item.try_get("created_graph_id")?;
    if plan.is_none() && action.is_none() && created_graph_id.is_none() {
        return Ok(None);
    }
    Ok(Some(RestoreItemResult {
        plan: plan.as_deref().and_then(PlanAction::parse),
        action: action.as_deref().and_then(RestoreAction::parse),
        created_graph_id,
    }))
}
