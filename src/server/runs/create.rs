//! "Add selected": create the run, or return the identical run that is already queued or
//! running. No Graph call happens here; the worker does the work.
//!
//! The run row holds the validated selection; the engine writes the run's items from it when it
//! first claims the run (`engine::worker`, one lease-guarded transaction). So a submit
//! of 10,000 policies writes one row: on PostgreSQL, 10,000 item rows with their two foreign
//! keys took 80 ms alone, far beyond the 25 ms the submit may take (README, benchmarks).

use super::in_flight;
use super::key::IdempotencyKey;
use super::start::ensure_cancelled_settled;
use super::submit::{self, NewRun};
use crate::domain::run::OperationType;
use crate::domain::{AddPoliciesOptions, AppError, PolicySelection, SubmittedRun};
use crate::server::auth::TenantContext;
use crate::server::backup_sets;
use crate::server::db::Db;
use crate::server::engine::ops::add_policies::AddPoliciesInput;
use crate::server::metrics;
use crate::server::policies::{self, PolicyFilter};
use crate::server::tenants::connection_check;

/// The operation of the runs this submit creates.
const OPERATION: OperationType = OperationType::AddPolicies;

/// Creates the run (status `pending`) with its selection, or returns the active run with the
/// same idempotency key (`reused: true`). Two racing submissions cannot both create
/// one: the partial unique index refuses the second, which then returns the winner. 409 while
/// a run of the set that was cancelled has not settled (see `start::ensure_cancelled_settled`).
pub async fn create_or_reuse(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    selection: &PolicySelection,
    options: AddPoliciesOptions,
) -> Result<SubmittedRun, AppError> {
    create_or_reuse_retrying(db, ctx, backup_set_id, selection, options, None).await
}

/// "Add selected" after "Select all N matching" (`all_matching`): the selection is resolved
/// here, at submit time, with the query "Select all" answers with ([`policies::matching_ids`]:
/// the tenant's policies matching `filter`, not in the backup set yet, not gone from Intune,
/// the first [`MAX_SELECTION`](crate::domain::selection::MAX_SELECTION) by id), so a policy
/// synced since the click is in the run and one gone meanwhile is not. The key is then made
/// from the resolved ids, as for listed ids: two such submits that resolve alike share one run.
/// Nothing matching is "No policies selected"; no Graph call, as for any submit.
pub async fn create_or_reuse_matching(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    filter: &PolicyFilter,
    options: AddPoliciesOptions,
) -> Result<SubmittedRun, AppError> {
    let matching = policies::matching_ids(db, &ctx.scope, backup_set_id, filter).await?;
    let selection = PolicySelection::parse(matching.ids)?;
    create_or_reuse(db, ctx, backup_set_id, &selection, options).await
}

/// [`create_or_reuse`] for a run that retries (or resumes) run `retry_of`: the same key rules,
/// so a double-click still makes one run; a new run records its parent.
pub async fn create_or_reuse_retrying(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    selection: &PolicySelection,
    options: AddPoliciesOptions,
    retry_of: Option<i64>,
) -> Result<SubmittedRun, AppError> {
    let started = std::time::Instant::now();
    let run = submit(db, ctx, backup_set_id, selection, options, retry_of).await?;
    metrics::run_submitted(OPERATION.as_str(), run.reused, started.elapsed());
    Ok(run)
}

async fn submit(
    db: &Db,
    ctx: &TenantContext,
    backup_set_id: i64,
    selection: &PolicySelection,
    options: AddPoliciesOptions,
    retry_of: Option<i64>,
) -> Result<SubmittedRun, AppError> {
    let tenant_id = ctx.scope.id();
    let key = IdempotencyKey::for_add_policies(tenant_id, backup_set_id, selection, options);
    in_flight::coalesce(db, &key, || async {
        // Before anything else, a duplicate submit included: the tenant's credentials were
        // refused. (Identical submits in flight share this answer too.)
        connection_check::ensure_runs_allowed(db, tenant_id).await?;
        // A duplicate submit is answered before the selection is checked again.
        if let Some(run) = submit::find_active(db, tenant_id, &key).await? {
            return Ok(run);
        }
        backup_sets::ensure_exists(db, tenant_id, backup_set_id).await?;
        // A run of the set cancelled while it captured may still record what was in flight:
        // a new one would capture beside its claim, the same requests twice, and the set would
        // keep whichever read of a policy is recorded first (`ON CONFLICT DO NOTHING`). (Checked
        // for the whole set, not the selection: one indexed read, and a cancelled run settles
        // within a lease.)
        ensure_cancelled_settled(db, tenant_id, OPERATION, backup_set_id).await?;
        ensure_policies(db, tenant_id, selection).await?;
        let input = AddPoliciesInput {
            backup_set_id,
            policy_ids: selection.ids().to_vec(),
            options,
        };
        let run = NewRun {
            operation: OPERATION,
            target_id: backup_set_id,
            input: input.to_json(),
            key: key.clone(),
            total: selection.len() as i64,
            retry_of,
        };
        submit::insert_or_reuse(db, ctx, &run).await
    })
    .await
}

/// Every selected id must be a policy of this tenant. Which ones are not is not said: an id of
/// another tenant's policy must not be confirmed to exist.
async fn ensure_policies(
    db: &Db,
    tenant_id: i64,
    selection: &PolicySelection,
) -> Result<(), AppError> {
    // One statement for the whole selection (at most 10,000 ids: well inside both engines'
    // statement size limits).
    let ids = db.backend().id_in("id", "$2", selection.ids());
    let sql = format!(
        "SELECT COUNT(*) AS n FROM policies WHERE tenant_id = $1 AND {}",
        ids.sql
    );
    let found: i64 = ids
        .bind(sqlx::query_scalar(&sql).bind(tenant_id))
        .fetch_one(db.pool())
        .await?;
    let missing = selection.len() as i64 - found;
    if missing > 0 {
        return Err(AppError::invalid(
            "policy_ids",
            format!("{missing} of the selected policies are not in this tenant's inventory. Refresh and try again."),
        ));
    }
    Ok(())
}
