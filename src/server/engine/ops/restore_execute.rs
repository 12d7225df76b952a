//! `restore.execute`: writes the items of a current preview back to Intune. For each item, right
//! before writing, the live policy is read again: if its content hash moved since the preview
//! (or it was deleted, or came back), the item fails with `changed_since_preview` and nothing is
//! written for it. An item planned "no change" writes nothing. Then each group, assignment filter
//! and scope tag the write would name is looked up again (once per claim, an answer kept a few
//! minutes, as the preview does): one deleted since the preview, or one that cannot be looked up,
//! fails the item with nothing sent by this attempt (`changed_since_preview`, or the lookup's
//! reason; a write an earlier attempt announced MAY have landed, and the item says so). Otherwise the policy is updated in
//! place, or created anew when it was deleted (the policy's record then follows the new Graph id,
//! so a later restore updates it rather than creating another). Then the policy is captured again
//! and compared with the backup: the run's evidence ("48 of 50 now match the backup; 2 differ").
//! A policy written whose later step failed (its settings, definition values or assignments)
//! fails the item, and what was written is recorded all the same: the new Graph id of a policy
//! created, and an audit row marked incomplete. Nothing is ever deleted. Bulk lane.
//!
//! A run may start long after its submit (queued behind the tenant's bulk run, taken over after
//! a crash): at every claim, before any Graph call, the member who started it must still be
//! one who may restore in the tenant, or the run fails `not_authorized` and writes nothing.
//! A run of hundreds of items may also outlive its starter's role: every item's announce, which
//! reads the run's row before the item's first write, reads the starter's role with it. An item
//! whose starter may no longer restore writes nothing and fails `not_authorized`; so does every
//! item of the claim not yet started, without a Graph call, and the run ends failed
//! `not_authorized` once its items are recorded. Either way an item whose write an earlier
//! claim announced and never recorded (a takeover's) may have been written all the same: it
//! fails saying so, with an incomplete audit row, never as "nothing was written". So does such
//! an item of a takeover that fails before any Graph call for another reason (the tenant's
//! credentials or its secret refused), with that reason; the run keeps it too, and its message
//! counts the policies that may have been written.
//!
//! Writes survive cancels and takeovers. Right before its first write an item passes its point of
//! no return ([`interrupt::point_of_no_return`]): a cancel then lets it finish and record what it
//! wrote. A create is announced first, committed and fenced by the claim
//! (`run_items.create_sent_at`, migration 0022), and the announce stands until the create's
//! outcome is recorded. Only for an announced create does anyone look for the policy it made
//! ([`created_since`]), never adopting one the inventory held before or one Graph created
//! outside the time that create could land (an admin's, made by hand later): the same attempt
//! when the create's answer was lost, a claim taking the run over, and a later preview. None is
//! found while the create may still land ([`create_in_flight`]): then no second create is sent,
//! and the item fails saying the policy may have been created.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::super::operation::{Notice, Operation, Pending, Recorded, Run, Tx};
use super::super::worker::RunFailure;
use super::restore_common::{Lookups, Unverified};
use crate::domain::reason_code::ReasonCode;
use crate::domain::restore::{PlanAction, RestoreAction};
use crate::domain::run::OperationType;
use crate::domain::run_detail::ItemOutcome;
use crate::domain::snapshot::{CapturedPolicy, SettingNames};
use crate::domain::versions::Drift;
use crate::domain::{Capability, Role, Timestamp};
use crate::server::db::{Backend, Db};
use crate::server::graph::interrupt;
use crate::server::graph::write::{
    update_resendable, PolicyWriter, WriteFailure, WriteRequest, Written,
};
use crate::server::graph::{
    CaptureOptions, GraphConfig, GraphError, PolicySource, PolicyType, Snapshot, TenantCredentials,
};
use crate::server::restore::compare::restore_comparison;
use crate::server::restore::refs::{kind_label, references};
use crate::server::sanitize::sanitize;
use crate::server::snapshots::{store_captures, Capture, StoredVersion};

/// One item as its preview planned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecuteItem {
    pub policy_id: i64,
    /// The version restored.
    pub snapshot_id: i64,
    pub plan: PlanAction,
    /// The live content hash the preview saw; `None` when the policy was deleted.
    pub live_hash: Option<String>,
}

super::restore_common::planned_restore!(ExecuteItem);

/// What an execute stores in `runs.input`: the preview it executes and that preview's plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreExecuteInput {
    pub preview_run_id: i64,
    pub include_assignments: bool,
    pub include_scope_tags: bool,
    pub items: Vec<ExecuteItem>,
}

/// A pending item with the backup version to write.
pub struct WriteItem {
    /// The run item.
    pub item_id: i64,
    /// The item's run: its row fences the item's announce.
    pub run_id: i64,
    pub tenant_id: i64,
    pub policy_id: i64,
    pub graph_id: String,
    pub policy_type: String,
    pub planned: ExecuteItem,
    /// `None` when the version to restore can no longer be read: the item fails.
    pub backup: Option<StoredVersion>,
    pub include_assignments: bool,
    pub include_scope_tags: bool,
    /// When an earlier claim of the run announced it was sending this item's create (`None`
    /// when none did): only then may the create have reached Intune without being recorded.
    pub create_sent_at: Option<i64>,
    /// When an earlier claim announced it was sending this item's update in place (`None` when
    /// none did): only then may the policy have been written without being recorded.
    pub update_sent_at: Option<i64>,
    /// Where the create is announced before it is sent.
    db: Db,
    /// Set by the first announce of the claim that finds the member who started the run may no
    /// longer restore (shared by the claim's items): no item of the claim writes after it.
    starter_refused: Arc<AtomicBool>,
    /// The groups, filters and scope tags the claim looked up (shared by its items, dropped
    /// with them): a takeover asks afresh.
    lookups: Arc<Lookups>,
}

impl WriteItem {
    /// What the restore writes of the backup.
    fn restore_options(&self) -> CaptureOptions {
        CaptureOptions {
            include_assignments: self.include_assignments,
            include_scope_tags: self.include_scope_tags,
        }
    }
}

/// The name a create of `backup` gives the policy: the backup's, not the inventory's.
pub(crate) fn created_name(policy_type: PolicyType, backup: &StoredVersion) -> Option<&str> {
    backup
        .payload
        .pointer(&format!("/policy/{}", policy_type.spec().name_property))
        .and_then(serde_json::Value::as_str)
}

/// How far apart the clocks of this server and Graph may be: a policy Graph created longer
/// than this before an earlier claim announced its create, or after that create could land,
/// cannot be that create's.
const CLOCK_SKEW_MS: i64 = 10 * 60 * 1_000;

/// How long after a create was announced its POST may still reach Intune: the token the POST
/// waits for may take all its attempts first (the token endpoint is retried as Graph is), and
/// each attempt, of the token or of the POST, waits out its answer and then the longest pause
/// it honours before the next; a minute more covers the tenant's request budget. Read from the
/// Graph client's default configuration (this server runs it with its defaults). Until then a
/// create whose outcome is not known is never sent a second time.
pub(crate) fn create_in_flight_ms() -> i64 {
    i64::try_from(in_flight_bound(&GraphConfig::microsoft()).as_millis()).unwrap_or(i64::MAX)
}

/// [`create_in_flight_ms`] for a client configured with `config`.
fn in_flight_bound(config: &GraphConfig) -> Duration {
    let retry = &config.retry;
    let attempt = config.request_timeout + retry.max_retry_after.max(retry.max_delay);
    // The token's attempts, then the POST's.
    attempt * retry.max_attempts * 2 + Duration::from_secs(60)
}

/// The lock a fenced write takes on its run's row as it reads it: on PostgreSQL a shared row
/// lock held to the end of the transaction, so a takeover (an `UPDATE` of the row) waits for
/// the write to commit or roll back, and a claim skips the row meanwhile. On SQLite the write
/// transaction (`BEGIN IMMEDIATE`) already holds the database's write lock, which every claim
/// needs: nothing more.
fn run_lock(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " FOR SHARE",
        Backend::Sqlite => "",
    }
}

/// The read of the run's row that fences an item's write (`$1` run, `$2` tenant, `$3` the
/// claim's attempt), locked as [`run_lock`] says: a row while the claim holds the run as
/// running, none otherwise. Its one column is the role the member who started the run
/// (`runs.initiated_by`) holds in the run's tenant now, `NULL` when they are no member (removed,
/// or their account deleted): read in the same statement, so the fence costs nothing more.
fn held_run_sql(backend: Backend) -> String {
    format!(
        "SELECT (SELECT m.role FROM memberships m \
                 WHERE m.tenant_id = runs.tenant_id AND m.user_id = runs.initiated_by) \
         FROM runs WHERE id = $1 AND tenant_id = $2 AND attempt = $3 AND status = 'running'{}",
        run_lock(backend)
    )
}

/// Whether a create announced at `sent_at` may still be on its way to Intune, at `now` (both
/// by the database's clock: see [`database_now`]).
pub(crate) fn create_in_flight(sent_at: i64, now: i64) -> bool {
    now < sent_at.saturating_add(create_in_flight_ms())
}

/// The database's clock, in milliseconds since the epoch, as SQL: the clock migration 0026
/// stamps each inventory row with (`first_seen_at`), so an announce compares with it whatever
/// the clock of the server that made it.
fn now_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
        Backend::Postgres => "(floor(extract(epoch FROM clock_timestamp()) * 1000))::BIGINT",
    }
}

/// Whether a create announced at `sent_at` may still be on its way to Intune by the database's
/// clock now; when that clock cannot be read, it may (nothing is sent).
pub(crate) async fn in_flight(db: &Db, sent_at: i64) -> bool {
    match database_now(db).await {
        Ok(now) => create_in_flight(sent_at, now),
        Err(error) => {
            tracing::error!(%error, "could not read the database's clock");
            true
        }
    }
}

/// The database's clock now (see [`now_sql`]).
pub(crate) async fn database_now(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT {}", now_sql(db.backend())))
        .fetch_one(db.pool())
        .await
}

/// "2026-12-06 08:20 UTC": the first minute at which a create announced at `sent_at` can no
/// longer land.
pub(crate) fn create_settled_at(sent_at: i64) -> Timestamp {
    Timestamp(sent_at.saturating_add(create_in_flight_ms() + 60_000))
}

/// Whether a write (a create, an update) refused with `reason` may have reached Intune all the
/// same: only an answer that says Graph did not act (it refused the request, the token, the
/// permission; it was throttled; the run stopped before sending) rules it out. A timeout, a
/// gateway's 504, a server error or a 201 whose body is cut or lacks the new id may each hide
/// a written policy.
fn may_have_landed(reason: ReasonCode) -> bool {
    !matches!(
        reason,
        ReasonCode::GraphRejected
            | ReasonCode::PermissionDenied
            | ReasonCode::PolicyNotFound
            | ReasonCode::AuthenticationFailed
            | ReasonCode::Throttled
            | ReasonCode::InvalidRunInput
            | ReasonCode::SecretNotRestorable
            | ReasonCode::Cancelled
    )
}

/// Whether the policy's own write (its create or its update) may have landed although the
/// writer failed: a write request was sent, and either the failure may have come after Graph
/// acted on it or an earlier attempt's answer was lost (an update, idempotent, is sent again
/// after a timeout or a 504, and the retries may end on a refusal such as a 429 although the
/// first attempt landed; a create is never sent again after such an answer).
fn may_have_written(failure: &WriteFailure) -> bool {
    failure.sent && (failure.error.may_have_acted() || may_have_landed(failure.error.reason_code()))
}

/// The policy a create announced at `sent_at` made before its answer was recorded: a live
/// policy of the type named `name` that Graph created while that create could land (from the
/// announce to [`create_in_flight_ms`] after it, give or take [`CLOCK_SKEW_MS`]: see
/// [`created_in_flight`]) and that no inventory row held before it (a row a sync learned of
/// since may be that very policy). One made later (by hand, by another tool) is never taken
/// for it, however long the announce stays unsettled.
/// `Ok(None)` when there is none (the create never reached Intune, or not yet); an error when
/// Graph or the inventory cannot be asked, or when more than one policy fits (which one is the
/// restore's cannot be told). Shared by the execute (a takeover, a create whose answer was
/// lost) and the preview (a later restore of the same policy).
pub(crate) async fn created_since(
    source: &dyn PolicySource,
    db: &Db,
    creds: &TenantCredentials,
    tenant_id: i64,
    policy_type: PolicyType,
    name: &str,
    sent_at: i64,
) -> Result<Option<String>, GraphError> {
    let listed = source
        .list_policies(creds, policy_type)
        .await
        .map_err(|error| {
            GraphError::new(
                error.reason_code(),
                format!(
                    "an earlier attempt may have created the policy, and the policies of its type could not be listed to find it ({}): nothing was written; retry the restore",
                    error.message()
                ),
            )
        })?;
    let mut candidates = Vec::new();
    for listing in listed {
        if listing.display_name != name || !created_in_flight(listing.created_at, sent_at) {
            continue;
        }
        let known = known_before(db, tenant_id, policy_type, &listing.graph_id, sent_at)
            .await
            .map_err(|error| {
                tracing::error!(%error, "could not read the inventory");
                GraphError::new(
                    ReasonCode::UnknownError,
                    "the inventory could not be read to find the policy an earlier attempt may have created: nothing was written; retry the restore",
                )
            })?;
        if !known {
            candidates.push(listing.graph_id);
        }
    }
    match candidates.len() {
        0 | 1 => Ok(candidates.pop()),
        n => Err(GraphError::new(
            ReasonCode::ChangedSincePreview,
            format!(
                "an earlier attempt may have created the policy, and {n} policies of its type named \"{name}\" were created since ({}): which one it created cannot be told, so nothing was written; check them in Intune, sync the inventory and run the preview again",
                candidates.join(", ")
            ),
        )),
    }
}

/// Whether a policy Graph created at `created_at` may be the one a create announced at
/// `sent_at` made: created no earlier than the announce and no later than that create could
/// land ([`create_in_flight_ms`]), each give or take the clocks' skew. A policy whose creation
/// time Graph did not list cannot be told apart from one an admin made: it is not taken.
fn created_in_flight(created_at: Option<Timestamp>, sent_at: i64) -> bool {
    let earliest = sent_at.saturating_sub(CLOCK_SKEW_MS);
    let latest = sent_at
        .saturating_add(create_in_flight_ms())
        .saturating_add(CLOCK_SKEW_MS);
    created_at.is_some_and(|at| (earliest..=latest).contains(&at.millis()))
}

/// The write an item announces before sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Announce {
    /// A create (`run_items.create_sent_at`).
    Create,
    /// An update in place (`run_items.update_sent_at`).
    Update,
}

/// What announcing a write came to.
enum Announced {
    /// Announced at this time: it may be sent.
    At(i64),
    /// The claim no longer holds the run (cancelled, or taken over): nothing may be sent.
    NotRunning,
    /// Another execute's create of the policy may have made it: no create may be sent.
    OtherCreate,
    /// The item's announce is no longer what this claim read before deciding to write (an
    /// earlier claim of the run announced its write since, and may have sent it): nothing may
    /// be sent, and the item reads as maybe written.
    Moved,
    /// The member who started the run may no longer restore in its tenant (removed, given a
    /// lesser role, or their account deleted since the claim): nothing may be sent.
    StarterRefused,
}

/// What writing one item did.
pub enum Restored {
    /// Written (or found unchanged), with the capture made afterwards as evidence (`None` when
    /// that capture failed: the write stands, the evidence is missing).
    Done {
        action: RestoreAction,
        graph_id: String,
        evidence: Option<Evidence>,
    },
    Failed(ReasonCode, String),
    /// Graph refused the create this claim announced, or the writer failed before sending it:
    /// nothing was created, and the announce is withdrawn (no later preview need look for the
    /// policy).
    CreateRefused(ReasonCode, String),
    /// Graph refused the update this claim announced, or the writer failed before sending any
    /// of it (a read it needs first): nothing was written, and this claim's announce is
    /// withdrawn (back to an earlier claim's, whose write may still land), so the item is not
    /// counted as written.
    UpdateRefused(ReasonCode, String),
    /// A create was sent and its outcome is not known (its answer was lost and no policy it
    /// could have made was found, or an earlier claim's may still be on its way): the item
    /// fails, an audit row records the create as incomplete, and the announce stays, so the
    /// next preview of the policy looks for it before it plans a create.
    MaybeCreated {
        reason: ReasonCode,
        message: String,
    },
    /// An update was sent and its outcome is not known (its answer was lost): the item fails,
    /// and an audit row records the update as incomplete.
    MaybeUpdated {
        reason: ReasonCode,
        message: String,
    },
    /// The policy itself was written (created under `graph_id`, or updated in place) and a
    /// later step failed: the item fails, and what was written is still recorded (a created
    /// policy's new id, an audit row), or the next preview would plan to create it again.
    PartlyWritten {
        action: RestoreAction,
        graph_id: String,
        reason: ReasonCode,
        message: String,
    },
}

/// The policy as Graph returned it after the write (or at the item's read, for an item found
/// unchanged or already written), and when the request that returned it was sent (Unix ms;
/// [`Snapshot::read_at`]): a mark of being gone from Intune made after it stays, and a version
/// read after it stays current ([`Capture::read_at`]).
pub struct Evidence {
    pub snapshot: Snapshot,
    pub read_at: i64,
}

impl Evidence {
    /// The evidence of `snapshot`, read when its request was sent; for a source that does not
    /// say when, when the read was asked for (`asked_at`: a lower bound all the same).
    fn read(snapshot: Snapshot, asked_at: i64) -> Self {
        let read_at = snapshot.read_at.unwrap_or(asked_at);
        Self { snapshot, read_at }
    }
}

/// The handler: reads through `source`, writes through `writer` (which also looks up the
/// groups, filters and scope tags a backup refers to, once per claim, see [`Lookups`]).
pub struct RestoreExecute {
    source: Arc<dyn PolicySource>,
    writer: Arc<dyn PolicyWriter>,
}

impl RestoreExecute {
    pub fn new(source: Arc<dyn PolicySource>, writer: Arc<dyn PolicyWriter>) -> Self {
        Self { source, writer }
    }

    /// Announces that `item`'s write is about to be sent, committed and only while this claim
    /// (`attempt`) holds the run as running, and, for a create, only while no other item of
    /// the policy (another execute's) announced a create whose outcome is not recorded: that
    /// create may have made the policy, and only a new preview looks for it. Decided under a
    /// lock of the policy's row (on SQLite, of the database), so two executes cannot both pass.
    /// Stamped with the database's clock, as the inventory's `first_seen_at` is.
    ///
    /// The run's row is read first, locked for the transaction on PostgreSQL ([`run_lock`]), as
    /// every other write fenced by the attempt takes it: no claim takes the run over (an
    /// `UPDATE` of that row) until the announce is committed or rolled back, so the read of the
    /// items of the claim that does sees it; and an announce of a claim whose run was taken over finds
    /// the new attempt. Without the lock, a stalled claim's open announce, whose statement
    /// read the run before the takeover, could commit after it, unseen by the new claim, which
    /// would then send the same create a second time. The item's announce must also still be
    /// what this claim read before deciding (`item`'s `create_sent_at` or `update_sent_at`):
    /// a decision on a stale read never announces.
    ///
    /// The same read of the run's row reads the role of the member who started it
    /// ([`held_run_sql`]): a starter demoted or removed while the run writes stops it at the
    /// next item's announce, at no statement more.
    async fn announce(
        &self,
        item: &WriteItem,
        attempt: i64,
        write: Announce,
    ) -> Result<Announced, sqlx::Error> {
        let (column, read, unsettled) = match write {
            Announce::Create => (
                "create_sent_at",
                item.create_sent_at,
                "AND NOT EXISTS (SELECT 1 FROM run_items o WHERE o.tenant_id = run_items.tenant_id \
                   AND o.policy_id = run_items.policy_id AND o.id <> run_items.id \
                   AND o.create_sent_at IS NOT NULL AND o.restore_action IS NULL)",
            ),
            Announce::Update => ("update_sent_at", item.update_sent_at, ""),
        };
        let backend = item.db.backend();
        let mut tx = item.db.begin_writing().await?;
        let held: Option<Option<String>> = sqlx::query_scalar(&held_run_sql(backend))
            .bind(item.run_id)
            .bind(item.tenant_id)
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(starter_role) = held else {
            tx.rollback().await?;
            return Ok(Announced::NotRunning);
        };
        if !may_restore(starter_role.as_deref()) {
            tx.rollback().await?;
            return Ok(Announced::StarterRefused);
        }
        if write == Announce::Create && backend == Backend::Postgres {
            sqlx::query("SELECT id FROM policies WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind(item.tenant_id)
                .bind(item.policy_id)
                .fetch_optional(&mut *tx)
                .await?;
        }
        let now = now_sql(backend);
        let announced: Option<i64> = sqlx::query_scalar(&format!(
            "UPDATE run_items SET {column} = {now} \
             WHERE id = $1 AND tenant_id = $2 AND outcome = 'pending' \
               AND ({column} = $3 OR ({column} IS NULL AND $3 IS NULL)) {unsettled} \
             RETURNING {column}"
        ))
        .bind(item.item_id)
        .bind(item.tenant_id)
        .bind(read)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(sent_at) = announced {
            tx.commit().await?;
            return Ok(Announced::At(sent_at));
        }
        let now_read: Option<Option<i64>> = sqlx::query_scalar(&format!(
            "SELECT {column} FROM run_items WHERE id = $1 AND tenant_id = $2 AND outcome = 'pending'"
        ))
        .bind(item.item_id)
        .bind(item.tenant_id)
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(match now_read {
            // Recorded meanwhile: not this claim's to write any more.
            None => Announced::NotRunning,
            Some(now_read) if now_read != read => Announced::Moved,
            Some(_) => Announced::OtherCreate,
        })
    }

    /// Whether the member who started `item`'s run may still restore in its tenant, read as
    /// [`Self::announce`] reads it ([`held_run_sql`]); `true` when claim `attempt` no longer
    /// holds the run (not this check's to decide).
    async fn starter_may_restore(
        &self,
        item: &WriteItem,
        attempt: i64,
    ) -> Result<bool, sqlx::Error> {
        let held: Option<Option<String>> = sqlx::query_scalar(&held_run_sql(item.db.backend()))
            .bind(item.run_id)
            .bind(item.tenant_id)
            .bind(attempt)
            .fetch_optional(item.db.pool())
            .await?;
        Ok(held.is_none_or(|role| may_restore(role.as_deref())))
    }

    async fn restore(&self, creds: &TenantCredentials, attempt: i64, item: &WriteItem) -> Restored {
        // An earlier item of this claim found the starter may no longer restore: no Graph call.
        if item.starter_refused.load(Ordering::Acquire) {
            return refused_item(item);
        }
        let Some(policy_type) = PolicyType::parse(&item.policy_type) else {
            return Restored::Failed(ReasonCode::UnknownError, "Unsupported policy type.".into());
        };
        let Some(backup) = &item.backup else {
            return Restored::Failed(
                ReasonCode::InvalidRunInput,
                "The version to restore no longer exists.".into(),
            );
        };
        // Read exactly as the preview did (the backup's capture options), so the hashes compare.
        let options = backup.options;
        let asked_at = Timestamp::now().millis();
        let live = match self
            .source
            .capture_policy(creds, policy_type, &item.graph_id, options)
            .await
        {
            Ok(snapshot) => Some(snapshot),
            Err(error) if error.reason_code() == ReasonCode::PolicyNotFound => None,
            Err(error) => return failed(error.reason_code(), error.message()),
        };
        let live_hash = live.as_ref().map(|s| s.content_hash.as_str());
        if live_hash != item.planned.live_hash.as_deref() {
            // A claim taking the run over finds what an earlier one wrote before it could
            // record so: a policy that now matches the backup is that write, done. Only an
            // announced update can be one (since migration 0026 no claim writes without
            // announcing first): without one, the change is someone else's, as for the first
            // claim.
            if let (true, Some(_), Some(live)) = (attempt > 1, item.update_sent_at, live) {
                if differing_settings(policy_type, backup, &live, item.restore_options()) == 0 {
                    return Restored::Done {
                        action: RestoreAction::Updated,
                        graph_id: item.graph_id.clone(),
                        evidence: Some(Evidence::read(live, asked_at)),
                    };
                }
                // An earlier claim announced its update and stopped before recording it: what
                // Intune holds now may be that write, cut short.
                return Restored::PartlyWritten {
                    action: RestoreAction::Updated,
                    graph_id: item.graph_id.clone(),
                    reason: ReasonCode::ChangedSincePreview,
                    message: "An earlier attempt of this run started updating the policy and stopped before it could record the outcome; the policy now matches neither the preview nor the backup, so it may be partly written. Run the preview again to restore the rest.".into(),
                };
            }
            return Restored::Failed(
                ReasonCode::ChangedSincePreview,
                "The policy changed in Intune since the preview: nothing was written. Run the preview again."
                    .into(),
            );
        }
        if item.planned.plan == PlanAction::Unchanged {
            return Restored::Done {
                action: RestoreAction::Unchanged,
                graph_id: item.graph_id.clone(),
                evidence: live.map(|snapshot| Evidence::read(snapshot, asked_at)),
            };
        }
        // An earlier claim that announced this update may still be sending it (alive behind a
        // lost lease, waiting out a Retry-After): an update that is not safe to send twice
        // (an administrative template's definition values) is not sent again until it can no
        // longer land, by the create's bound.
        if let (true, Some(_), Some(sent_at)) = (attempt > 1, &live, item.update_sent_at) {
            if !update_resendable(policy_type) && in_flight(&item.db, sent_at).await {
                let message = sanitize(&format!(
                    "An earlier attempt of this run sent the policy's update at {} and it may still be on its way: the policy MAY be written in Intune, and its definition values sent again would be added twice, so nothing was sent. Run the preview again after {}: it shows what the policy then holds.",
                    Timestamp(sent_at),
                    create_settled_at(sent_at)
                ));
                tracing::warn!(%message, "an earlier update may still land");
                return Restored::MaybeUpdated {
                    reason: ReasonCode::Timeout,
                    message,
                };
            }
        }
        // An earlier claim that announced this create may have sent it before it could record
        // so: that policy is updated rather than created a second time. While that create may
        // still be on its way (the earlier claim alive behind a lost lease, its POST waiting
        // out a Retry-After), none is sent: it could land after this claim's.
        let created_before = match (&live, item.create_sent_at) {
            (None, Some(sent_at)) => {
                match self
                    .created_by(creds, policy_type, item, backup, sent_at)
                    .await
                {
                    Ok(Some(found)) => Some(found),
                    Ok(None) if in_flight(&item.db, sent_at).await => {
                        return maybe_created(
                            ReasonCode::Timeout,
                            &format!(
                                "An earlier attempt of this run sent the policy's create at {} and its answer may still be on its way: the policy may be created in Intune, so no second create was sent. Run the preview again after {}: it finds the policy if it was created.",
                                Timestamp(sent_at),
                                create_settled_at(sent_at)
                            ),
                        );
                    }
                    Ok(None) => None,
                    Err(error) => return failed(error.reason_code(), error.message()),
                }
            }
            _ => None,
        };
        // The earlier claim that made that policy may still be sending the rest of its write
        // (alive behind a lost lease, waiting out a Retry-After): for an administrative
        // template, its `updateDefinitionValues`, which is not safe to send twice. Until it can
        // no longer land (the create's bound) nothing is sent: the policy is recorded as
        // created (the inventory follows it) and the item fails saying when to preview again.
        if let (true, Some(graph_id), Some(sent_at)) =
            (attempt > 1, &created_before, item.create_sent_at)
        {
            if !update_resendable(policy_type) && in_flight(&item.db, sent_at).await {
                let message = definition_values_in_flight(graph_id, sent_at);
                tracing::warn!(%message, "an earlier create's definition values may still land");
                return Restored::PartlyWritten {
                    action: RestoreAction::Created,
                    graph_id: graph_id.clone(),
                    reason: ReasonCode::Timeout,
                    message,
                };
            }
        }
        // The writer compares with what Intune holds (definition values to delete, secrets to
        // keep): for a policy found that way, that is its state now.
        let found = match &created_before {
            Some(id) => match self
                .source
                .capture_policy(creds, policy_type, id, options)
                .await
            {
                Ok(found) => Some(found),
                // The earlier claim's create made the policy: the item says so, and the
                // policy's record follows it.
                Err(error) => return partly_written(RestoreAction::Created, id.clone(), &error),
            },
            None => None,
        };
        let live_payload = live
            .as_ref()
            .or(found.as_ref())
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s.canonical_json).ok());
        let target = match &live {
            Some(_) => Some(item.graph_id.as_str()),
            None => created_before.as_deref(),
        };
        let write = match (&live, target) {
            (Some(_), _) => Some(Announce::Update),
            (None, None) => Some(Announce::Create),
            // Finishing the create an earlier claim announced: its announce stands.
            (None, Some(_)) => None,
        };
        // A group, filter or scope tag deleted since the preview (which may be 15 minutes old)
        // would be written as a target that no longer exists: each one the write names is
        // looked up again (once per claim, an answer kept a few minutes), and one gone, or not
        // verified, stops the item here. What an earlier claim announced may have been sent all
        // the same: the item says so.
        let references = references(
            &backup.payload,
            item.include_assignments,
            item.include_scope_tags,
        );
        let unverified = item
            .lookups
            .unverified(self.writer.as_ref(), creds, &references)
            .await;
        if !unverified.is_empty() {
            let earlier = match (&live, &created_before) {
                (_, Some(graph_id)) => Earlier::Created(graph_id),
                (Some(_), None) => item
                    .update_sent_at
                    .map_or(Earlier::Nothing, Earlier::UpdateSent),
                (None, None) => item
                    .create_sent_at
                    .map_or(Earlier::Nothing, Earlier::CreateSent),
            };
            return unverified_references(&unverified, earlier);
        }
        let announced = match write {
            // Finishing the create an earlier claim announced sends the rest of the policy (its
            // settings, its assignments) without an announce of its own: the starter's role is
            // read as an announce reads it (the one path that reads it apart).
            None => match self.starter_may_restore(item, attempt).await {
                Ok(true) => None,
                Ok(false) => {
                    item.starter_refused.store(true, Ordering::Release);
                    return match &created_before {
                        Some(graph_id) => refused_created(graph_id),
                        None => refused_item(item),
                    };
                }
                Err(error) => {
                    tracing::error!(%error, "could not read the starter's role");
                    return failed(
                        ReasonCode::UnknownError,
                        "The restore could not check that its starter may still restore: nothing was written. Retry the restore.",
                    );
                }
            },
            Some(write) => match self.announce(item, attempt, write).await {
                Ok(Announced::At(sent_at)) => Some((write, sent_at)),
                Ok(Announced::NotRunning) => {
                    let error = interrupt::give_up();
                    return failed(error.reason_code(), error.message());
                }
                // Not reached while the announce locks the run's row first (a claim cannot
                // take the run over between this claim's read and its announce); kept as the
                // second guard. The earlier claim's write may have been sent: the item says
                // so, as for a lost answer, rather than "nothing was sent".
                Ok(Announced::Moved) => {
                    const MOVED: &str = "An earlier attempt of this run announced a write of this policy after this attempt read it, and may have sent it: the policy MAY be written in Intune. This attempt sent nothing. Run the preview again: it shows what the policy holds.";
                    return match write {
                        Announce::Create => maybe_created(ReasonCode::ChangedSincePreview, MOVED),
                        Announce::Update => Restored::MaybeUpdated {
                            reason: ReasonCode::ChangedSincePreview,
                            message: MOVED.to_owned(),
                        },
                    };
                }
                Ok(Announced::StarterRefused) => {
                    item.starter_refused.store(true, Ordering::Release);
                    return refused_item(item);
                }
                Ok(Announced::OtherCreate) => {
                    return failed(
                        ReasonCode::ChangedSincePreview,
                        "Another restore sent this policy's create without learning whether Intune created it: no second create was sent. Run the preview again: it looks for the policy that create may have made.",
                    );
                }
                Err(error) => {
                    tracing::error!(%error, "could not announce a write");
                    return failed(
                        ReasonCode::UnknownError,
                        "The restore could not record that it is about to write the policy: nothing was written. Retry the restore.",
                    );
                }
            },
        };
        // From here on a cancel lets the item finish: what is sent is followed through and
        // recorded.
        if let Err(error) = interrupt::point_of_no_return() {
            return failed(error.reason_code(), error.message());
        }
        let adopted = created_before.is_some();
        match self
            .write(
                creds,
                policy_type,
                item,
                backup,
                target,
                live_payload.as_ref(),
                adopted,
            )
            .await
        {
            Ok(restored) => restored,
            Err(failure) => match announced {
                Some((Announce::Create, sent_at)) if may_have_written(&failure) => {
                    let error = failure.error;
                    self.after_lost_create(creds, policy_type, item, backup, sent_at, &error)
                        .await
                }
                // Graph refused the create, or it was never sent: nothing was created, and
                // nothing is announced.
                Some((Announce::Create, _)) => {
                    let error = failure.error;
                    let message = sanitize(error.message());
                    tracing::warn!(reason = error.reason_code().as_str(), %message, "create refused");
                    Restored::CreateRefused(error.reason_code(), message)
                }
                Some((Announce::Update, _)) if may_have_written(&failure) => {
                    let error = failure.error;
                    let message = sanitize(&format!(
                        "The policy MAY have been written in Intune, in part or in full: its update got no clear answer. Run the preview again to see what it holds. ({})",
                        error.message()
                    ));
                    tracing::warn!(reason = error.reason_code().as_str(), %message, "restore update may have landed");
                    Restored::MaybeUpdated {
                        reason: error.reason_code(),
                        message,
                    }
                }
                // Graph refused every attempt of the update, or a read before it failed:
                // nothing was written.
                Some((Announce::Update, _)) => {
                    let error = failure.error;
                    // The verdict first: Graph's or the refusal's words may be long, and the
                    // sanitizer cuts the message at its length.
                    let message = sanitize(&format!(
                        "The policy's update was refused, or not sent: nothing was written. {}",
                        error.message()
                    ));
                    tracing::warn!(reason = error.reason_code().as_str(), %message, "update not written");
                    Restored::UpdateRefused(error.reason_code(), message)
                }
                // Finishing an earlier claim's create: whatever the update came to, that
                // create made the policy, and the item records it so (as `after_lost_create`).
                None => match created_before {
                    Some(found) => partly_written(RestoreAction::Created, found, &failure.error),
                    None => failed(failure.error.reason_code(), failure.error.message()),
                },
            },
        }
    }

    /// The policy an earlier claim of the run created for `item` (announced at `sent_at`)
    /// before it could record so (see [`created_since`]).
    async fn created_by(
        &self,
        creds: &TenantCredentials,
        policy_type: PolicyType,
        item: &WriteItem,
        backup: &StoredVersion,
        sent_at: i64,
    ) -> Result<Option<String>, GraphError> {
        let Some(name) = created_name(policy_type, backup) else {
            return Ok(None);
        };
        let db = &item.db;
        created_since(
            self.source.as_ref(),
            db,
            creds,
            item.tenant_id,
            policy_type,
            name,
            sent_at,
        )
        .await
    }

    /// Writes the backup to `target` (or creates it anew) and captures the evidence. `adopted`
    /// when `target` is a policy this restore created before it could record so: the action
    /// is then a create. `Err` when nothing of the policy was written (and whether its first
    /// write request may have been sent).
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        creds: &TenantCredentials,
        policy_type: PolicyType,
        item: &WriteItem,
        backup: &StoredVersion,
        target: Option<&str>,
        live: Option<&serde_json::Value>,
        adopted: bool,
    ) -> Result<Restored, WriteFailure> {
        let request = WriteRequest {
            policy_type,
            target,
            backup: &backup.payload,
            format: backup.format,
            live,
            include_assignments: item.include_assignments,
            include_scope_tags: item.include_scope_tags,
        };
        let action = |written: &Written| {
            if written.created || adopted {
                RestoreAction::Created
            } else {
                RestoreAction::Updated
            }
        };
        let written = match self.writer.write_policy_reporting(creds, request).await {
            Ok(written) => written,
            Err(WriteFailure {
                error,
                written: Some(written),
                ..
            }) => {
                let action = action(&written);
                return Ok(partly_written(action, written.graph_id, &error));
            }
            Err(failure) => return Err(failure),
        };
        let asked_at = Timestamp::now().millis();
        let evidence = match self
            .source
            .capture_policy(creds, policy_type, &written.graph_id, backup.options)
            .await
        {
            Ok(snapshot) => Some(Evidence::read(snapshot, asked_at)),
            Err(error) => {
                tracing::warn!(
                    policy_id = item.policy_id,
                    reason = error.reason_code().as_str(),
                    "evidence capture failed"
                );
                None
            }
        };
        Ok(Restored::Done {
            action: action(&written),
            graph_id: written.graph_id,
            evidence,
        })
    }

    /// A create announced at `sent_at` failed in a way that does not rule out that Intune
    /// created the policy (`error`: a timeout, a 504, a cut answer). The policy is looked for
    /// at once: found, it is this restore's create and gets the rest of the write (its
    /// settings, its assignments) as an update; not found, the item fails saying the policy
    /// may have been created, and its announce stays for the next preview to look again.
    async fn after_lost_create(
        &self,
        creds: &TenantCredentials,
        policy_type: PolicyType,
        item: &WriteItem,
        backup: &StoredVersion,
        sent_at: i64,
        error: &GraphError,
    ) -> Restored {
        let may_be_created = |why: &str| {
            maybe_created(
                error.reason_code(),
                &format!(
                    "The policy's create got no usable answer ({}), and {why}: the policy MAY have been created in Intune. Sync the inventory and run the preview again (after {}) before restoring it again.",
                    error.message(),
                    create_settled_at(sent_at)
                ),
            )
        };
        let found = match self
            .created_by(creds, policy_type, item, backup, sent_at)
            .await
        {
            Ok(Some(found)) => found,
            Ok(None) => return may_be_created("no policy it could have created was found"),
            Err(lookup) => {
                return may_be_created(&format!("looking for it failed ({})", lookup.message()))
            }
        };
        tracing::info!(
            policy_id = item.policy_id,
            graph_id = %found,
            "a create whose answer was lost made the policy: it is updated"
        );
        let live = match self
            .source
            .capture_policy(creds, policy_type, &found, backup.options)
            .await
        {
            Ok(live) => serde_json::from_str::<serde_json::Value>(&live.canonical_json).ok(),
            Err(read) => return partly_written(RestoreAction::Created, found, &read),
        };
        match self
            .write(
                creds,
                policy_type,
                item,
                backup,
                Some(&found),
                live.as_ref(),
                true,
            )
            .await
        {
            Ok(restored) => restored,
            Err(write) => partly_written(RestoreAction::Created, found, &write.error),
        }
    }
}

/// Why a takeover sends nothing to the policy an earlier attempt created (`graph_id`, its create
/// announced at `sent_at`) while that attempt may still be sending its definition values.
fn definition_values_in_flight(graph_id: &str, sent_at: i64) -> String {
    sanitize(&format!(
        "An earlier attempt of this run created the policy (as {graph_id}) and may still be sending its definition values; sent twice they would be added twice, so nothing was sent. Run the preview again after {}: it shows what the policy then holds.",
        create_settled_at(sent_at)
    ))
}

/// The policy itself was written (`action`, under `graph_id`) and a later step failed (`error`).
fn partly_written(action: RestoreAction, graph_id: String, error: &GraphError) -> Restored {
    // The advice before Graph's words, which may be long: the sanitizer cuts at its length.
    let message = sanitize(&format!(
        "The policy itself was {} in Intune, but a later step failed. Run the preview again to restore the rest. {}",
        if action == RestoreAction::Created { "created" } else { "updated" },
        error.message()
    ));
    tracing::warn!(
        reason = error.reason_code().as_str(),
        %message,
        "restore item partly written"
    );
    Restored::PartlyWritten {
        action,
        graph_id,
        reason: error.reason_code(),
        message,
    }
}

/// What an earlier claim of the run wrote, or may have written, for an item this claim stops.
#[derive(Debug, Clone, Copy)]
enum Earlier<'a> {
    /// No earlier claim announced a write of it.
    Nothing,
    /// An earlier claim announced its update at this time and never recorded the outcome.
    UpdateSent(i64),
    /// An earlier claim announced its create at this time, and no policy it made was found.
    CreateSent(i64),
    /// An earlier claim created the policy, found by this one under this Graph id.
    Created(&'a str),
}

/// An item whose backup refers to groups, filters or scope tags that no longer exist or could
/// not be looked up (`unverified`): this attempt sends nothing. What an `earlier` claim wrote
/// stays said: a policy it created is recorded as created, partly written; an update or create
/// it announced MAY have landed (never "nothing was written", see [`announced_item`]).
/// The reason is `changed_since_preview` when one no longer exists (the preview found it), else
/// the failed lookup's. The verdict and advice come first, what is missing last: the sanitizer
/// cuts the message at its length.
fn unverified_references(unverified: &[Unverified], earlier: Earlier<'_>) -> Restored {
    let mut missing = Vec::new();
    let mut unchecked = Vec::new();
    for reference in unverified {
        match reference {
            Unverified::Missing(reference) => {
                missing.push(format!("{} {}", kind_label(reference.kind), reference.id));
            }
            Unverified::Unchecked(reference, error) => unchecked.push((reference, error)),
        }
    }
    let (reason, verdict, advice) = match unchecked.first() {
        Some((_, error)) if missing.is_empty() => (
            error.reason_code(),
            "could not be checked",
            "Run the preview again: it checks each again.",
        ),
        _ => (
            ReasonCode::ChangedSincePreview,
            "no longer exists",
            "Run the preview again: it names what is missing.",
        ),
    };
    let mut named = String::new();
    if !missing.is_empty() {
        named.push_str(&format!(" Missing: {}.", missing.join(", ")));
    }
    if !unchecked.is_empty() {
        let unchecked: Vec<String> = unchecked
            .iter()
            .map(|(reference, error)| {
                let label = kind_label(reference.kind);
                format!("{label} {} ({})", reference.id, error.message())
            })
            .collect();
        named.push_str(&format!(" Not checked: {}.", unchecked.join(", ")));
    }
    match earlier {
        Earlier::Nothing => failed(
            reason,
            &format!(
                "A group, filter or scope tag this policy refers to {verdict}: nothing was written. {advice}{named}"
            ),
        ),
        Earlier::UpdateSent(sent_at) => {
            let message = sanitize(&format!(
                "A group, filter or scope tag this policy refers to {verdict}: this attempt sent nothing, but an earlier one sent its update at {}, which MAY have landed. {advice}{named}",
                Timestamp(sent_at)
            ));
            tracing::warn!(reason = reason.as_str(), %message, "an earlier update may have landed; a reference is missing");
            Restored::MaybeUpdated { reason, message }
        }
        Earlier::CreateSent(sent_at) => maybe_created(
            reason,
            &format!(
                "A group, filter or scope tag this policy refers to {verdict}: this attempt sent nothing, but an earlier one sent its create at {}, which MAY have landed. {advice}{named}",
                Timestamp(sent_at)
            ),
        ),
        Earlier::Created(graph_id) => {
            let message = sanitize(&format!(
                "An earlier attempt of this run created this policy in Intune (as {graph_id}); a group, filter or scope tag it refers to {verdict}, so nothing more was written. {advice}{named}"
            ));
            tracing::warn!(reason = reason.as_str(), %message, "an earlier create is not finished; a reference is missing");
            Restored::PartlyWritten {
                action: RestoreAction::Created,
                graph_id: graph_id.to_owned(),
                reason,
                message,
            }
        }
    }
}

/// A create that may have reached Intune without its outcome being known.
fn maybe_created(reason: ReasonCode, message: &str) -> Restored {
    let message = sanitize(message);
    tracing::warn!(reason = reason.as_str(), %message, "restore create may have landed");
    Restored::MaybeCreated { reason, message }
}

/// How many settings of a live capture differ from the backup in what a restore with `options`
/// writes: none when it holds the same content, one when it cannot be read (so it is looked at
/// rather than passed as matching). The comparison the plan, the takeover and the evidence make.
fn differing_settings(
    policy_type: PolicyType,
    backup: &StoredVersion,
    live: &Snapshot,
    options: CaptureOptions,
) -> i64 {
    if live.content_hash == backup.content_hash {
        return 0;
    }
    let Ok(payload) = serde_json::from_str::<serde_json::Value>(&live.canonical_json) else {
        return 1;
    };
    restore_comparison(
        &backup.captured(policy_type),
        &CapturedPolicy::new(policy_type, live.format, &payload),
        options,
        &SettingNames::default(),
    )
    .changes
    .len() as i64
}

/// Whether a row of the tenant's inventory held the policy of `graph_id` before `sent_at`
/// (migration 0026 stamps each row when the inventory first learns of it).
async fn known_before(
    db: &Db,
    tenant_id: i64,
    policy_type: PolicyType,
    graph_id: &str,
    sent_at: i64,
) -> Result<bool, sqlx::Error> {
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM policies WHERE tenant_id = $1 AND policy_type = $2 \
         AND graph_id = $3 AND COALESCE(first_seen_at, 0) < $4",
    )
    .bind(tenant_id)
    .bind(policy_type.as_str())
    .bind(graph_id)
    .bind(sent_at)
    .fetch_one(db.pool())
    .await?;
    Ok(held > 0)
}

fn failed(reason: ReasonCode, message: &str) -> Restored {
    let message = sanitize(message);
    tracing::warn!(reason = reason.as_str(), %message, "restore item failed");
    Restored::Failed(reason, message)
}

/// Why a restore queued by `initiated_by` may not write to tenant `tenant_id` now, or `None`
/// while it may: the submit checked the member's role, but the run may start much later (behind
/// the tenant's bulk run, after a crash), and by then the member may have been removed, given a
/// role that cannot restore, or had their account deleted (`initiated_by` then `NULL`). Read
/// from the database at each claim, as the authorization point reads it on every request.
async fn initiator_refused(
    db: &Db,
    tenant_id: i64,
    initiated_by: Option<i64>,
) -> Result<Option<RunFailure>, sqlx::Error> {
    let role: Option<String> = match initiated_by {
        Some(user_id) => {
            sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
                .bind(tenant_id)
                .bind(user_id)
                .fetch_optional(db.pool())
                .await?
        }
        None => None,
    };
    if may_restore(role.as_deref()) {
        return Ok(None);
    }
    tracing::warn!(
        initiated_by,
        "the member who started the restore may no longer restore: nothing is written"
    );
    Ok(Some(not_authorized()))
}

/// Whether a member holding `role` in a tenant (`None`: no member) may restore in it.
fn may_restore(role: Option<&str>) -> bool {
    role.and_then(Role::parse)
        .is_some_and(|role| role.can(Capability::Restore))
}

/// The failure of a restore whose starter may no longer restore: the run's, and each item's
/// that it kept from writing.
fn not_authorized() -> RunFailure {
    RunFailure {
        reason: ReasonCode::NotAuthorized,
        message: "The member who started this restore may no longer restore in this tenant: nothing more was written.".into(),
    }
}

/// The failure of a restore whose starter may no longer restore, `unrecorded` of whose items
/// may have been written without their outcome being recorded (an earlier claim's announced
/// write, a lost answer): the run then never says that nothing was written.
fn refused_run(unrecorded: i64) -> RunFailure {
    stopped_run(&not_authorized(), unrecorded)
}

/// The failure of a restore whose claim stopped with `failure` before any Graph call (its
/// starter refused, the tenant's credentials or its secret refused), `unrecorded` of whose
/// items may have been written without their outcome being recorded: the failure itself when
/// none may have been, else the failure's reason with a message that counts them, never one
/// that says nothing was written.
fn stopped_run(failure: &RunFailure, unrecorded: i64) -> RunFailure {
    if unrecorded == 0 {
        return failure.clone();
    }
    let policies = if unrecorded == 1 {
        "policy"
    } else {
        "policies"
    };
    let message = match failure.reason {
        ReasonCode::NotAuthorized => format!(
            "The member who started this restore may no longer restore in this tenant: nothing more was sent, but {unrecorded} {policies} may have been written without the outcome being recorded (see the items). Run the preview again to see what Intune holds."
        ),
        // The count first: a failure's message may be long, and the run's message is cut at
        // the sanitizer's length.
        _ => format!(
            "{unrecorded} {policies} may have been written by an earlier attempt without the outcome being recorded (see the items); nothing more was sent. {}",
            failure.message
        ),
    };
    RunFailure {
        reason: failure.reason,
        message,
    }
}

/// An item kept from writing because the member who started the run may no longer restore.
fn starter_refused() -> Restored {
    let RunFailure { reason, message } = not_authorized();
    failed(reason, &message)
}

/// Why an item whose starter may no longer restore sent nothing more, in few words: its message
/// must also say what an earlier attempt may have written and when to look, within the
/// sanitizer's length.
const REFUSED_NOTHING_MORE_SHORT: &str =
    "Its starter may no longer restore here, so nothing more was sent.";

/// An item kept from writing because the member who started the run may no longer restore,
/// as its announces say: see [`announced_item`]. Any other item wrote nothing.
fn refused_item(item: &WriteItem) -> Restored {
    announced_item(item, &not_authorized()).unwrap_or_else(starter_refused)
}

/// Why an item of a claim that stopped with `failure` sent nothing more.
fn nothing_more_sent(failure: &RunFailure) -> String {
    match failure.reason {
        ReasonCode::NotAuthorized => REFUSED_NOTHING_MORE_SHORT.to_owned(),
        // The failure's own words are the run's: the item's message stays short enough (the
        // sanitizer's length) to keep its advice.
        _ => format!("This attempt sent nothing ({}).", failure.reason.label()),
    }
}

/// An item kept from writing by `failure` (its starter may no longer restore, the tenant's
/// credentials or secret refused) whose create or update an earlier claim announced and never
/// recorded (`create_sent_at`, `update_sent_at`: it crashed or lost its lease after sending):
/// it may have been written all the same, and fails with the failure's reason saying so, with
/// an incomplete audit row (a create's announce stays for the next preview to look for it), as
/// [`cancelled_summary`] counts it: never as "nothing was written". `None` for an item no
/// claim announced.
fn announced_item(item: &WriteItem, failure: &RunFailure) -> Option<Restored> {
    let nothing_more = nothing_more_sent(failure);
    match (item.create_sent_at, item.update_sent_at) {
        (Some(sent_at), _) => Some(maybe_created(
            failure.reason,
            &format!(
                "This policy MAY have been created in Intune: an earlier attempt sent its create at {} and stopped before recording it. Run the preview again after {}: it finds the policy if it was created. {nothing_more}",
                Timestamp(sent_at),
                create_settled_at(sent_at)
            ),
        )),
        (None, Some(sent_at)) => {
            let message = sanitize(&format!(
                "This policy MAY have been written in Intune, in part or in full: an earlier attempt sent its update at {} and stopped before recording it. Run the preview again to see what it holds. {nothing_more}",
                Timestamp(sent_at)
            ));
            tracing::warn!(%message, "an earlier update may have landed; this claim sends nothing");
            Some(Restored::MaybeUpdated {
                reason: failure.reason,
                message,
            })
        }
        (None, None) => None,
    }
}

/// The policy an earlier claim of the run created (as `graph_id`, found by this claim) and
/// stopped before finishing, whose starter may no longer restore: recorded as created (the
/// inventory follows it) and partly written, the rest not sent.
fn refused_created(graph_id: &str) -> Restored {
    let message = sanitize(&format!(
        "An earlier attempt of this run created this policy in Intune (as {graph_id}) and stopped before recording it or writing the rest. Run the preview again to see what it holds. {REFUSED_NOTHING_MORE_SHORT}"
    ));
    tracing::warn!(%message, "an earlier create is not finished; its starter is refused");
    Restored::PartlyWritten {
        action: RestoreAction::Created,
        graph_id: graph_id.to_owned(),
        reason: ReasonCode::NotAuthorized,
        message,
    }
}

/// What one claim's items share: see [`WriteItem`]'s fields of the same names.
struct Claim {
    starter_refused: Arc<AtomicBool>,
    lookups: Arc<Lookups>,
}

/// What the execute writes for a pending item: the planned version, with the options the run
/// asked for where the version was captured with them, and whether an earlier claim announced
/// its create or its update (`announced`, by run item: when, of each).
fn write_item(
    db: &Db,
    run: &Run<RestoreExecuteInput>,
    announced: &HashMap<i64, (Option<i64>, Option<i64>)>,
    claim: &Claim,
    pending: super::PendingRestore<'_, ExecuteItem>,
) -> Pending<WriteItem> {
    let input = &run.input;
    let super::PendingRestore {
        row,
        planned,
        version: backup,
    } = pending;
    let asked = CaptureOptions {
        include_assignments: input.include_assignments,
        include_scope_tags: input.include_scope_tags,
    };
    let recorded = backup.as_ref().map(|b| b.options).unwrap_or_default();
    let CaptureOptions {
        include_assignments,
        include_scope_tags,
    } = super::restore_common::restore_includes(asked, recorded);
    Pending {
        item_id: row.item_id,
        item: WriteItem {
            item_id: row.item_id,
            run_id: run.id,
            tenant_id: run.tenant_id,
            policy_id: row.policy_id,
            graph_id: row.graph_id,
            policy_type: row.policy_type,
            planned: planned.clone(),
            include_assignments,
            include_scope_tags,
            backup,
            create_sent_at: announced.get(&row.item_id).and_then(|sent| sent.0),
            update_sent_at: announced.get(&row.item_id).and_then(|sent| sent.1),
            db: db.clone(),
            starter_refused: Arc::clone(&claim.starter_refused),
            lookups: Arc::clone(&claim.lookups),
        },
    }
}

impl Operation for RestoreExecute {
    const TYPE: OperationType = OperationType::RestoreExecute;
    const NOTICE: Notice = Notice::new("Restore", "The restore did not finish.");
    type Output = Restored;

    type Input = RestoreExecuteInput;
    type Item = WriteItem;

    super::restore_common::restore_items!(RestoreExecuteInput, record_restored);

    /// At every claim (the first, a resume, a takeover), before any Graph call: the member who
    /// started the restore must still be one who may restore in the run's tenant.
    async fn check(
        &self,
        db: &Db,
        run: &Run<RestoreExecuteInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        initiator_refused(db, run.tenant_id, run.initiated_by).await
    }

    async fn pending(
        &self,
        db: &Db,
        run: &Run<RestoreExecuteInput>,
    ) -> Result<Vec<Pending<WriteItem>>, sqlx::Error> {
        let pending = super::pending_restores(db, run.id, run.tenant_id, &run.input.items).await?;
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT id, create_sent_at, update_sent_at FROM run_items \
             WHERE run_id = $1 AND tenant_id = $2 AND outcome = 'pending' \
               AND (create_sent_at IS NOT NULL OR update_sent_at IS NOT NULL)",
        )
        .bind(run.id)
        .bind(run.tenant_id)
        .fetch_all(db.pool())
        .await?;
        let announced = rows
            .into_iter()
            .map(|(id, create, update)| (id, (create, update)))
            .collect();
        // One flag for the claim's items: the first announce that finds the starter refused
        // stops the rest.
        let starter_refused = Arc::new(AtomicBool::new(false));
        // The claim's lookups, dropped with its items however it ends: a takeover asks afresh.
        let claim = Claim {
            starter_refused,
            lookups: Arc::new(Lookups::default()),
        };
        Ok(pending
            .into_iter()
            .map(|pending| write_item(db, run, &announced, &claim, pending))
            .collect())
    }

    async fn process(
        &self,
        creds: &TenantCredentials,
        run: &Run<RestoreExecuteInput>,
        item: &WriteItem,
    ) -> Restored {
        self.restore(creds, run.attempt, item).await
    }

    async fn conclude(
        &self,
        db: &Db,
        creds: Result<&TenantCredentials, &RunFailure>,
        run: &Run<RestoreExecuteInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        // A cancel undoes nothing: a run cancelled while this claim was writing says what
        // stays written (the engine concludes it with the cancel as its failure, or as usual).
        let cancelled = || write_cancelled(db, run);
        if let Err(failure) = creds {
            if failure.reason == ReasonCode::Cancelled {
                cancelled().await?;
                return Ok(Some(failure.clone()));
            }
            // The claim stopped before any Graph call (its check found the starter may no
            // longer restore, the tenant's credentials or secret were refused): nothing is
            // sent, and the items an earlier claim announced say they may have been written.
            return Ok(Some(self.close_stopped(db, run, failure).await?));
        }
        let (summary, refused) = evidence_summary(db, run.id).await?;
        if !super::write_summary(db, run.id, run.attempt, &summary).await? {
            cancelled().await?;
            return Ok(None);
        }
        // An item found that the member who started the run may no longer restore: the items
        // after it wrote nothing, and the run fails as a whole, as the claim's check fails it.
        if !refused {
            return Ok(None);
        }
        Ok(Some(refused_run(unrecorded_writes(db, run.id).await?)))
    }
}

impl RestoreExecute {
    /// Closes the pending items of a run whose claim stopped with `failure` before any Graph
    /// call (its starter may no longer restore, the tenant's credentials or secret refused; the
    /// engine then closes none), in the database alone. An item whose write an earlier claim
    /// announced (a takeover's) fails with the failure's reason saying it may have been
    /// written, with an incomplete `restore.item_written` audit row ([`announced_item`]); the
    /// others fail with the failure's reason and message, nothing written, as the engine closes
    /// them. Written only while this claim holds the run as running, the run's row taken first,
    /// as the engine and a cancel take it, with its counters. The run's failure, with the
    /// failure's reason, saying how many items may have been written ([`stopped_run`]).
    async fn close_stopped(
        &self,
        db: &Db,
        run: &Run<RestoreExecuteInput>,
        failure: &RunFailure,
    ) -> Result<RunFailure, sqlx::Error> {
        let pending = self.pending(db, run).await?;
        let lock = match db.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let mut tx = db.begin_writing().await?;
        let held: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM runs WHERE id = $1 AND tenant_id = $2 AND attempt = $3 \
               AND status = 'running'{lock}"
        ))
        .bind(run.id)
        .bind(run.tenant_id)
        .bind(run.attempt)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            tx.rollback().await?;
            // A cancel committed since the claim (its items skipped): the run says what stays
            // written, as any cancelled restore does. Fenced, so a lost run gets nothing.
            write_cancelled(db, run).await?;
            return Ok(failure.clone());
        }
        let now = Timestamp::now().millis();
        // Closed with the message the engine would close them with.
        let unannounced = Restored::Failed(failure.reason, sanitize(&failure.message));
        for pending in &pending {
            let announced = announced_item(&pending.item, failure);
            let restored = announced.as_ref().unwrap_or(&unannounced);
            let recorded = record_restored(&mut tx, run, pending, restored, now).await?;
            let closed = sqlx::query(
                "UPDATE run_items SET outcome = 'failed', reason_code = $1, message = $2, \
                 finished_at = $3 WHERE id = $4 AND run_id = $5 AND outcome = 'pending'",
            )
            .bind(recorded.reason().map(ReasonCode::as_str))
            .bind(recorded.message())
            .bind(now)
            .bind(pending.item_id)
            .bind(run.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if closed != 1 {
                // Recorded since it was read: the engine closes what is still pending.
                tx.rollback().await?;
                return Ok(stopped_run(failure, unrecorded_writes(db, run.id).await?));
            }
        }
        let closed = pending.len() as i64;
        sqlx::query(
            "UPDATE runs SET failed = failed + $1, processed_items = processed_items + $1 \
             WHERE id = $2",
        )
        .bind(closed)
        .bind(run.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        crate::server::metrics::items_recorded(
            <Self as Operation>::TYPE.as_str(),
            ItemOutcome::Failed.as_str(),
            Some(failure.reason.as_str()),
            closed as u64,
        );
        // Counted over the whole run, not only the items closed here: an earlier claim may have
        // closed some (and crashed before the run ended) or recorded a lost answer.
        Ok(stopped_run(failure, unrecorded_writes(db, run.id).await?))
    }
}

/// Records what writing one item did: the action, a created policy's new id (the policy's
/// record follows it), the evidence as a version compared with the backup, and an audit row
/// for every item written.
async fn record_restored(
    tx: &mut Tx,
    run: &Run<RestoreExecuteInput>,
    pending: &Pending<WriteItem>,
    restored: &Restored,
    now: i64,
) -> Result<Recorded, sqlx::Error> {
    let item = &pending.item;
    let tenant_id = run.tenant_id;
    let backup_id = item.planned.snapshot_id;
    let (action, graph_id, evidence) = match restored {
        Restored::Failed(reason, message) => return Ok(Recorded::failed(*reason, message.clone())),
        Restored::CreateRefused(reason, message) => {
            sqlx::query("UPDATE run_items SET create_sent_at = NULL WHERE id = $1")
                .bind(pending.item_id)
                .execute(&mut **tx)
                .await?;
            return Ok(Recorded::failed(*reason, message.clone()));
        }
        Restored::UpdateRefused(reason, message) => {
            sqlx::query("UPDATE run_items SET update_sent_at = $1 WHERE id = $2")
                .bind(item.update_sent_at)
                .bind(pending.item_id)
                .execute(&mut **tx)
                .await?;
            return Ok(Recorded::failed(*reason, message.clone()));
        }
        Restored::MaybeCreated { reason, message } => {
            let failure = serde_json::json!({"reason": reason.as_str(), "message": message});
            let action = RestoreAction::Created;
            audit_written(tx, run, item, action, None, Some(failure), now).await?;
            return Ok(Recorded::failed(*reason, message.clone()));
        }
        Restored::MaybeUpdated { reason, message } => {
            let failure = serde_json::json!({"reason": reason.as_str(), "message": message});
            let (action, graph_id) = (RestoreAction::Updated, Some(item.graph_id.as_str()));
            audit_written(tx, run, item, action, graph_id, Some(failure), now).await?;
            return Ok(Recorded::failed(*reason, message.clone()));
        }
        Restored::PartlyWritten {
            action,
            graph_id,
            reason,
            message,
        } => {
            // No evidence: the policy is not what the backup holds, and the item fails.
            if !follow_created(tx, tenant_id, item.policy_id, *action, graph_id).await? {
                let message = sanitize(&twin_in_use(graph_id));
                let failure = serde_json::json!({"reason": reason.as_str(), "message": message});
                let graph_id = Some(graph_id.as_str());
                audit_written(tx, run, item, *action, graph_id, Some(failure), now).await?;
                return Ok(Recorded::failed(*reason, message));
            }
            sqlx::query(
                "UPDATE run_items SET restore_action = $1, created_graph_id = $2, \
                 base_snapshot_id = $3 WHERE id = $4",
            )
            .bind(action.as_str())
            .bind((*action == RestoreAction::Created).then_some(graph_id.as_str()))
            .bind(backup_id)
            .bind(pending.item_id)
            .execute(&mut **tx)
            .await?;
            let failure = serde_json::json!({"reason": reason.as_str(), "message": message});
            let graph_id = Some(graph_id.as_str());
            audit_written(tx, run, item, *action, graph_id, Some(failure), now).await?;
            return Ok(Recorded::failed(*reason, message.clone()));
        }
        Restored::Done {
            action,
            graph_id,
            evidence,
        } => (*action, graph_id, evidence),
    };
    if !follow_created(tx, tenant_id, item.policy_id, action, graph_id).await? {
        // Written in full, but the announce stands: no later preview plans a create.
        let reason = ReasonCode::ChangedSincePreview;
        let message = sanitize(&twin_in_use(graph_id));
        let failure = serde_json::json!({"reason": reason.as_str(), "message": message});
        audit_written(tx, run, item, action, Some(graph_id), Some(failure), now).await?;
        return Ok(Recorded::failed(reason, message));
    }
    let (evidence_id, drift, changed) = match evidence {
        Some(Evidence { snapshot, read_at }) => {
            // Stored as read when its GET was sent: a sync that marked the policy gone while
            // the read was in flight (or since) is not undone.
            let capture = Capture {
                policy_id: item.policy_id,
                snapshot,
                read_at: Some(*read_at),
            };
            let stored = store_captures(tx, tenant_id, &[capture], now)
                .await?
                .into_iter()
                .next()
                .ok_or(sqlx::Error::RowNotFound)?;
            // Compared in what the restore writes: a part it left out that differs is no
            // difference it failed to undo.
            let changed = match (&item.backup, PolicyType::parse(&item.policy_type)) {
                _ if stored.id == backup_id => 0,
                (Some(backup), Some(family)) => {
                    differing_settings(family, backup, snapshot, item.restore_options())
                }
                // Unreadable: counted as one, so it is looked at rather than passed as equal.
                _ => 1,
            };
            let drift = if changed == 0 {
                Drift::Unchanged
            } else {
                Drift::Changed
            };
            (Some(stored.id), Some(drift.as_str()), Some(changed))
        }
        None => (None, None, None),
    };
    sqlx::query(
        "UPDATE run_items SET restore_action = $1, created_graph_id = $2, snapshot_id = $3, \
         base_snapshot_id = $4, drift = $5, changed_settings = $6 WHERE id = $7",
    )
    .bind(action.as_str())
    .bind((action == RestoreAction::Created).then_some(graph_id.as_str()))
    .bind(evidence_id)
    .bind(backup_id)
    .bind(drift)
    .bind(changed)
    .bind(pending.item_id)
    .execute(&mut **tx)
    .await?;
    if action != RestoreAction::Unchanged {
        audit_written(tx, run, item, action, Some(graph_id), None, now).await?;
    }
    Ok(Recorded::succeeded())
}

/// A created policy's record follows its new Graph id, so a later restore updates it rather
/// than creating another. A sync that ran between the create and its record found the policy
/// and gave it a row of its own: that row is dropped while nothing refers to it yet (it is the
/// same Intune policy); one a capture or a backup already uses keeps the id, and the record
/// stays where it was: `false` (the caller then leaves the create's announce standing, so no
/// later preview plans a create of the record).
pub(crate) async fn follow_created(
    tx: &mut Tx,
    tenant_id: i64,
    policy_id: i64,
    action: RestoreAction,
    graph_id: &str,
) -> Result<bool, sqlx::Error> {
    if action != RestoreAction::Created {
        return Ok(true);
    }
    const TWIN: &str = "FROM policies WHERE tenant_id = $1 AND graph_id = $2 AND id <> $3 \
         AND policy_type = (SELECT p.policy_type FROM policies p WHERE p.tenant_id = $1 AND p.id = $3)";
    let unused = "AND NOT EXISTS (SELECT 1 FROM policy_snapshots s \
           WHERE s.tenant_id = policies.tenant_id AND s.policy_id = policies.id) \
         AND NOT EXISTS (SELECT 1 FROM backup_items b \
           WHERE b.tenant_id = policies.tenant_id AND b.policy_id = policies.id) \
         AND NOT EXISTS (SELECT 1 FROM run_items r \
           WHERE r.tenant_id = policies.tenant_id AND r.policy_id = policies.id)";
    sqlx::query(&format!("DELETE {TWIN} {unused}"))
        .bind(tenant_id)
        .bind(graph_id)
        .bind(policy_id)
        .execute(&mut **tx)
        .await?;
    let twins: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) {TWIN}"))
        .bind(tenant_id)
        .bind(graph_id)
        .bind(policy_id)
        .fetch_one(&mut **tx)
        .await?;
    if twins > 0 {
        tracing::warn!(
            policy_id,
            graph_id,
            "the created policy already has an inventory row in use: its record stays"
        );
        return Ok(false);
    }
    sqlx::query(
        "UPDATE policies SET graph_id = $1, gone_from_intune_at = NULL \
         WHERE tenant_id = $2 AND id = $3",
    )
    .bind(graph_id)
    .bind(tenant_id)
    .bind(policy_id)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// Why a created policy's record could not follow it ([`follow_created`] returned `false`).
pub(crate) fn twin_in_use(graph_id: &str) -> String {
    format!(
        "Intune holds this policy as {graph_id}, created by a restore, and the inventory already holds that policy under another record in use: this record stays where it was, and no create of it is planned again. Restore the policy from that other record."
    )
}

/// The `restore.item_written` audit row of a policy written to Intune; `failure` (reason and
/// message) when the write is incomplete: a step after the policy's own write failed, or a
/// create's outcome is not known (`graph_id` then `None`).
async fn audit_written(
    tx: &mut Tx,
    run: &Run<RestoreExecuteInput>,
    item: &WriteItem,
    action: RestoreAction,
    graph_id: Option<&str>,
    failure: Option<serde_json::Value>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut details = serde_json::json!({
        "run_id": run.id,
        "preview_run_id": run.input.preview_run_id,
        "version_id": item.planned.snapshot_id,
        "action": action.as_str(),
        "graph_id": graph_id,
        "completed": failure.is_none(),
    });
    if let Some(failure) = failure {
        details["failure"] = failure;
    }
    super::restore_common::audit_item_written(tx, run, item.policy_id, details, now).await
}

/// How many items of run `run_id` failed with no action recorded although their write was
/// announced (`create_sent_at`, `update_sent_at`): they may have been written, as
/// [`cancelled_summary`] counts them.
async fn unrecorded_writes(db: &Db, run_id: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_items WHERE run_id = $1 AND outcome = 'failed' \
           AND restore_action IS NULL \
           AND (create_sent_at IS NOT NULL OR update_sent_at IS NOT NULL)",
    )
    .bind(run_id)
    .fetch_one(db.pool())
    .await
}

/// "48 of 50 now match the backup; 2 differ (see diffs)." — the run's evidence, and whether an
/// item failed `not_authorized` (its starter may no longer restore: the run fails with it).
async fn evidence_summary(db: &Db, run_id: i64) -> Result<(String, bool), sqlx::Error> {
    let rows: Vec<(String, Option<String>, Option<String>, i64)> = sqlx::query_as(
        "SELECT outcome, drift, reason_code, COUNT(*) AS n FROM run_items WHERE run_id = $1 \
         GROUP BY outcome, drift, reason_code",
    )
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    let (mut total, mut matching, mut differing, mut failed, mut unverified) = (0, 0, 0, 0, 0);
    let mut refused = false;
    for (outcome, drift, reason, n) in rows {
        refused |= reason.as_deref() == Some(ReasonCode::NotAuthorized.as_str());
        total += n;
        match (outcome.as_str(), drift.as_deref().and_then(Drift::parse)) {
            ("failed", _) => failed += n,
            (_, Some(Drift::Unchanged)) => matching += n,
            (_, Some(_)) => differing += n,
            (_, None) => unverified += n,
        }
    }
    let mut summary = format!("{matching} of {total} now match the backup");
    if differing > 0 {
        summary.push_str(&format!("; {differing} differ (see diffs)"));
    }
    if failed > 0 {
        summary.push_str(&format!("; {failed} failed"));
    }
    if unverified > 0 {
        summary.push_str(&format!("; {unverified} could not be read back"));
    }
    summary.push('.');
    Ok((summary, refused))
}

/// "Cancelled after writing 2 of 6 policies; what was written stays in Intune." — a cancelled
/// run's summary: a cancel undoes nothing, so the admin learns what it left written. An item
/// whose write was announced (`create_sent_at`, `update_sent_at`) with no action recorded (its
/// answer lost, or an earlier claim's write that may still land) may have been written: it is
/// counted apart, never as "nothing written".
async fn cancelled_summary(db: &Db, run_id: i64) -> Result<String, sqlx::Error> {
    let (total, written, unknown): (i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), \
           COALESCE(SUM(CASE WHEN restore_action IN ($2, $3) THEN 1 ELSE 0 END), 0), \
           COALESCE(SUM(CASE WHEN restore_action IS NULL \
             AND (create_sent_at IS NOT NULL OR update_sent_at IS NOT NULL) THEN 1 ELSE 0 END), 0) \
         FROM run_items WHERE run_id = $1",
    )
    .bind(run_id)
    .bind(RestoreAction::Created.as_str())
    .bind(RestoreAction::Updated.as_str())
    .fetch_one(db.pool())
    .await?;
    Ok(cancelled_text(total, written, unknown))
}

/// Writes [`cancelled_summary`] on run `run` while it is cancelled at this claim's attempt;
/// whether it was.
async fn write_cancelled(db: &Db, run: &Run<RestoreExecuteInput>) -> Result<bool, sqlx::Error> {
    let summary = cancelled_summary(db, run.id).await?;
    super::write_cancelled_summary(db, run.id, run.attempt, &summary).await
}

/// The words of [`cancelled_summary`]: `written` of `total` items recorded as written,
/// `unknown` more that may have been.
fn cancelled_text(total: i64, written: i64, unknown: i64) -> String {
    let policies = if total == 1 { "policy" } else { "policies" };
    match (written, unknown) {
        (0, 0) => "Cancelled before any policy was written.".to_owned(),
        (_, 0) => format!(
            "Cancelled after writing {written} of {total} {policies}; what was written stays in Intune."
        ),
        (0, _) => format!(
            "Cancelled before any policy was recorded as written; {unknown} of {total} {policies} may have been written; what was written stays in Intune. Run the preview again to see."
        ),
        _ => format!(
            "Cancelled after writing {written} of {total} {policies}; {unknown} more may have been written; what was written stays in Intune. Run the preview again to see."
        ),
    }
}

// A restore writes to the customer's tenant: a commit lost to a crash of PostgreSQL would make
// the resumed run write again, so its commits always wait for the flush.
const _: () = assert!(!<RestoreExecute as Operation>::LAZY_COMMITS);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::graph::write::DirectoryKind;
    use crate::server::graph::RetryPolicy;
    use crate::server::restore::refs::Reference;

    /// The message of `restored`, which must be a partly written or may-have-been-written one.
    fn message_of(restored: &Restored) -> &str {
        match restored {
            Restored::PartlyWritten { message, .. }
            | Restored::MaybeCreated { message, .. }
            | Restored::MaybeUpdated { message, .. } => message,
            _ => panic!("not a partly written item"),
        }
    }

    /// A restore item's message keeps its advice whole within the sanitizer's length, with a
    /// policy's Graph id as long as Intune's (a GUID) and a long error text from Graph.
    #[test]
    fn restore_messages_keep_their_advice_within_the_sanitizers_length() {
        let graph_id = "0f3c2a51-9d7e-4b6a-8c1f-2e5d7a9b3c4e".to_owned();
        let sent_at = 1_796_000_000_000;
        let long_error = GraphError::new(
            ReasonCode::GraphUnavailable,
            format!(
                "GET deviceManagement/deviceConfigurations/{graph_id} answered 500: {}",
                "An internal server error has occurred. ".repeat(20)
            ),
        );
        let messages = [
            (
                definition_values_in_flight(&graph_id, sent_at),
                "it shows what the policy then holds.",
            ),
            (
                message_of(&refused_created(&graph_id)).to_owned(),
                "so nothing more was sent.",
            ),
        ];
        for (message, end) in &messages {
            assert!(
                message.chars().count() <= crate::server::sanitize::MAX_CHARS,
                "{message}"
            );
            assert!(message.ends_with(end), "{message}");
        }
        // Five groups by GUID, one of them not looked up with Graph's long words.
        let group = |n: usize| Reference {
            kind: DirectoryKind::Group,
            id: format!("{n}f3c2a51-9d7e-4b6a-8c1f-2e5d7a9b3c4e"),
        };
        let mut unverified: Vec<Unverified> =
            (1..5).map(|n| Unverified::Missing(group(n))).collect();
        unverified.push(Unverified::Unchecked(group(5), long_error.clone()));
        let earlier = [
            Earlier::Nothing,
            Earlier::Created(&graph_id),
            Earlier::UpdateSent(sent_at),
            Earlier::CreateSent(sent_at),
        ];
        for earlier in earlier {
            let (reason, message) = match unverified_references(&unverified, earlier) {
                Restored::Failed(reason, message) => {
                    assert!(matches!(earlier, Earlier::Nothing), "{earlier:?}");
                    (reason, message)
                }
                Restored::PartlyWritten {
                    action,
                    graph_id: created,
                    reason,
                    message,
                } => {
                    assert_eq!(action, RestoreAction::Created);
                    assert!(matches!(earlier, Earlier::Created(id) if id == created));
                    (reason, message)
                }
                Restored::MaybeUpdated { reason, message } => {
                    assert!(matches!(earlier, Earlier::UpdateSent(_)), "{earlier:?}");
                    (reason, message)
                }
                Restored::MaybeCreated { reason, message } => {
                    assert!(matches!(earlier, Earlier::CreateSent(_)), "{earlier:?}");
                    (reason, message)
                }
                _ => panic!("{earlier:?}: not failed, partly or maybe written"),
            };
            assert_eq!(reason, ReasonCode::ChangedSincePreview);
            assert!(
                message.chars().count() <= crate::server::sanitize::MAX_CHARS,
                "{message}"
            );
            assert!(
                message.contains("no longer exists")
                    && message.contains(
                        "Run the preview again: it names what is missing. Missing: Group 1f3c2a51"
                    ),
                "{message}"
            );
            if let Earlier::UpdateSent(_) | Earlier::CreateSent(_) = earlier {
                assert!(
                    message.contains("MAY") && !message.contains("nothing was written"),
                    "{message}"
                );
            }
        }
        let unchecked = [Unverified::Unchecked(group(1), long_error.clone())];
        match unverified_references(&unchecked, Earlier::Nothing) {
            Restored::Failed(reason, message) => {
                assert_eq!(reason, ReasonCode::GraphUnavailable);
                assert!(
                    message.starts_with("A group, filter or scope tag this policy refers to could not be checked: nothing was written. Run the preview again: it checks each again. Not checked: Group 1f3c2a51"),
                    "{message}"
                );
            }
            _ => panic!("an unchecked group fails the item"),
        }
        for action in [RestoreAction::Created, RestoreAction::Updated] {
            let written = partly_written(action, graph_id.clone(), &long_error);
            assert!(
                message_of(&written).contains("Run the preview again to restore the rest."),
                "{}",
                message_of(&written)
            );
        }
    }

    /// An item whose write may have landed is never summed up as "nothing written".
    #[test]
    fn a_cancel_counts_the_writes_that_may_have_landed() {
        assert_eq!(
            cancelled_text(3, 0, 0),
            "Cancelled before any policy was written."
        );
        let unknown = cancelled_text(1, 0, 1);
        assert!(
            !unknown.contains("before any policy was written"),
            "{unknown}"
        );
        assert!(
            unknown.contains("1 of 1 policy may have been written"),
            "{unknown}"
        );
        let both = cancelled_text(6, 2, 1);
        assert!(
            both.starts_with(
                "Cancelled after writing 2 of 6 policies; 1 more may have been written"
            ),
            "{both}"
        );
    }

    /// With the default retry policy the bound covers a token fetched in five attempts and a
    /// POST sent in five, each waiting out the request timeout and the longest pause.
    #[test]
    fn the_in_flight_bound_covers_the_token_and_the_post_retries() {
        let config = GraphConfig::microsoft();
        let retry = RetryPolicy::default();
        let worst_attempt = config.request_timeout + retry.max_retry_after.max(retry.max_delay);
        let worst = worst_attempt * retry.max_attempts * 2;
        assert!(in_flight_bound(&config) > worst);
        assert!(create_in_flight_ms() as u128 > worst.as_millis());
    }

    /// Only a policy Graph created while the announced create could land may be that create's:
    /// not one made well before the announce, nor one made after (an admin's, by hand), nor one
    /// whose creation time was not listed.
    #[test]
    fn a_lost_create_adopts_only_a_policy_created_while_it_could_land() {
        let sent_at = 1_800_000_000_000;
        let at = |offset: i64| Some(Timestamp(sent_at + offset));
        let latest = create_in_flight_ms() + CLOCK_SKEW_MS;
        assert!(created_in_flight(at(0), sent_at));
        assert!(created_in_flight(at(5_000), sent_at));
        assert!(created_in_flight(at(-CLOCK_SKEW_MS), sent_at));
        assert!(created_in_flight(at(latest), sent_at));
        assert!(!created_in_flight(at(-CLOCK_SKEW_MS - 1), sent_at));
        assert!(!created_in_flight(at(latest + 1), sent_at));
        assert!(!created_in_flight(at(86_400_000), sent_at));
        assert!(!created_in_flight(None, sent_at));
    }
}
