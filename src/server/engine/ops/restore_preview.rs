//! `restore.preview` (the restore wizard's dry-run): reads the live state of each chosen policy
//! and records a plan per item — create (deleted in Intune), update (N settings differ, with the
//! settings a restore would remove), no change, or blocked (a group, assignment filter or scope
//! tag it names no longer exists) — and, for the whole restore, whether the app holds the
//! permissions a restore needs. Strictly read-only towards Graph: only GETs (the live capture is
//! stored as a version like any capture, so the plan links to its diff). Interactive lane.
//!
//! A policy an earlier execute sent a create for without learning whether Intune made it (its
//! answer lost, or its claim taken over) is never planned as a blind create: the preview looks
//! for the policy that create could have made ([`created_since`]). Found, it is the restore's
//! own: the policy's record follows it and the plan is made against it. Not found, a create is
//! planned only once that create can no longer land ([`create_in_flight`]); until then the
//! item is blocked and says when to preview again.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::operation::{Notice, Operation, Pending, Recorded, Run, Tx};
use super::super::worker::RunFailure;
use super::capture::{capture, CaptureItem, Captured};
use super::restore_common::{Lookups, Unverified};
use super::restore_execute::{
    create_settled_at, created_name, created_since, follow_created, in_flight, twin_in_use,
};
use crate::domain::connection::{Feature, Permission};
use crate::domain::reason_code::ReasonCode;
use crate::domain::restore::{PlanAction, PlanNotes, RestoreAction, RestoreSource};
use crate::domain::run::OperationType;
use crate::domain::snapshot::{CapturedPolicy, ChangeKind, PolicyType, SettingNames};
use crate::domain::versions::Drift;
use crate::domain::Timestamp;
use crate::server::db::Db;
use crate::server::graph::write::{ambiguous_secret_settings, secret_settings, PolicyWriter};
use crate::server::graph::{CaptureOptions, PolicySource, TenantCredentials};
use crate::server::restore::compare::restore_comparison;
use crate::server::restore::refs::{kind_label, references, Reference};
use crate::server::sanitize::sanitize;
use crate::server::snapshots::{load_version, store_captures, Capture, StoredVersion};

/// One item of a restore: a policy and the version restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreItem {
    pub policy_id: i64,
    pub snapshot_id: i64,
}

super::restore_common::planned_restore!(RestoreItem);

/// What a preview stores in `runs.input`: the source, the items with their versions (fixed at
/// submit, so the preview's basis cannot drift) and the options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestorePreviewInput {
    pub source: RestoreSource,
    pub items: Vec<RestoreItem>,
    pub include_assignments: bool,
    pub include_scope_tags: bool,
}

/// An earlier execute's create of a policy whose outcome was never recorded: the item that
/// announced it and when.
#[derive(Debug, Clone, Copy)]
pub struct UnsettledCreate {
    pub run_id: i64,
    pub item_id: i64,
    pub sent_at: i64,
}

/// A pending preview item: what to capture, and what the backup version refers to.
#[derive(Clone)]
pub struct PreviewItem {
    pub capture: CaptureItem,
    pub references: Vec<Reference>,
    /// What the restore writes (see [`restore_options`]): the parts it leaves out are not
    /// compared.
    pub restore: CaptureOptions,
    /// The version to restore could not be read: the item fails rather than stays pending.
    pub version_missing: bool,
    /// The name a create gives the policy (the backup's).
    pub created_name: Option<String>,
    /// The newest create of this policy an execute sent without recording its outcome.
    pub unsettled: Option<UnsettledCreate>,
    /// Where the inventory is read to tell the restore's own create from others' policies.
    db: Db,
    /// The groups, filters and scope tags the claim looked up (shared by its items, dropped
    /// with them): a takeover asks afresh.
    lookups: Arc<Lookups>,
}

/// What the preview learned of an earlier create whose outcome was not recorded.
enum Settled {
    /// There was none to settle, or the policy is live.
    Nothing,
    /// That create made the policy of this Graph id: the plan is made against it.
    Found(UnsettledCreate, String),
    /// No policy it could have made exists, and it can no longer land: a create is safe.
    NeverLanded(UnsettledCreate),
    /// Not known yet: the item is blocked, saying why.
    Unknown(String),
}

/// What reading one item's live state found.
pub struct Previewed {
    captured: Captured,
    settled: Settled,
    /// The backup's references that no longer exist, as "Group g-1 no longer exists".
    missing: Vec<String>,
}

/// The handler: captures through `source`, checks references through `writer` (GETs only).
pub struct RestorePreview {
    source: Arc<dyn PolicySource>,
    writer: Arc<dyn PolicyWriter>,
}

impl RestorePreview {
    pub fn new(source: Arc<dyn PolicySource>, writer: Arc<dyn PolicyWriter>) -> Self {
        Self { source, writer }
    }

    /// The references that no longer exist (one that cannot be checked counts as missing, said
    /// so: a restore must not write what it could not verify).
    async fn missing(&self, creds: &TenantCredentials, item: &PreviewItem) -> Vec<String> {
        item.lookups
            .unverified(self.writer.as_ref(), creds, &item.references)
            .await
            .into_iter()
            .map(|unverified| match unverified {
                Unverified::Missing(reference) => {
                    let label = kind_label(reference.kind);
                    format!("{label} {} no longer exists.", reference.id)
                }
                Unverified::Unchecked(reference, error) => sanitize(&format!(
                    "{} {} could not be checked: {}",
                    kind_label(reference.kind),
                    reference.id,
                    error.message()
                )),
            })
            .collect()
    }

    /// Settles `create`, an earlier execute's create of the deleted policy of `item` whose
    /// outcome was never recorded: the policy it made, captured, if Intune holds one.
    async fn settle(
        &self,
        creds: &TenantCredentials,
        run: &Run<RestorePreviewInput>,
        item: &PreviewItem,
        create: UnsettledCreate,
    ) -> (Captured, Settled) {
        let earlier = format!(
            "An earlier restore (run {}) sent this policy's create at {} without learning whether Intune created it",
            create.run_id,
            Timestamp(create.sent_at)
        );
        let found = match (
            PolicyType::parse(&item.capture.policy_type),
            &item.created_name,
        ) {
            (Some(family), Some(name)) => {
                created_since(
                    self.source.as_ref(),
                    &item.db,
                    creds,
                    run.tenant_id,
                    family,
                    name,
                    create.sent_at,
                )
                .await
            }
            _ => Ok(None),
        };
        match found {
            Ok(Some(graph_id)) => {
                let capture_item = CaptureItem {
                    graph_id: graph_id.clone(),
                    ..item.capture.clone()
                };
                match capture(self.source.as_ref(), creds, &capture_item).await {
                    captured @ Captured::Snapshot { .. } => {
                        (captured, Settled::Found(create, graph_id))
                    }
                    _ => (
                        Captured::Deleted,
                        Settled::Unknown(sanitize(&format!(
                            "{earlier}; policy {graph_id} may be that create, and it could not be read. Run the preview again."
                        ))),
                    ),
                }
            }
            Ok(None) if in_flight(&item.db, create.sent_at).await => (
                Captured::Deleted,
                Settled::Unknown(format!(
                    "{earlier}, and it could still arrive. Run the preview again after {}: a create is planned only once it can no longer.",
                    create_settled_at(create.sent_at)
                )),
            ),
            Ok(None) => (Captured::Deleted, Settled::NeverLanded(create)),
            Err(error) => (
                Captured::Deleted,
                Settled::Unknown(sanitize(&format!("{earlier}: {}", error.message()))),
            ),
        }
    }
}

/// The newest create of each policy that an execute of the tenant announced and never recorded
/// the outcome of (`restore_action` is set with any write recorded).
async fn unsettled_creates(
    db: &Db,
    tenant_id: i64,
) -> Result<HashMap<i64, UnsettledCreate>, sqlx::Error> {
    let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT ri.policy_id, ri.run_id, ri.id, ri.create_sent_at FROM run_items ri \
         JOIN runs r ON r.tenant_id = ri.tenant_id AND r.id = ri.run_id \
         WHERE ri.tenant_id = $1 AND r.operation_type = $2 \
           AND ri.create_sent_at IS NOT NULL AND ri.restore_action IS NULL \
         ORDER BY ri.create_sent_at, ri.id",
    )
    .bind(tenant_id)
    .bind(OperationType::RestoreExecute.as_str())
    .fetch_all(db.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|(policy_id, run_id, item_id, sent_at)| {
            let create = UnsettledCreate {
                run_id,
                item_id,
                sent_at,
            };
            (policy_id, create)
        })
        .collect())
}

/// What the preview compares for a pending item: the live policy against the planned version,
/// and what that version refers to.
fn preview_item(
    db: &Db,
    input: &RestorePreviewInput,
    unsettled: &HashMap<i64, UnsettledCreate>,
    lookups: &Arc<Lookups>,
    pending: super::PendingRestore<'_, RestoreItem>,
) -> Pending<PreviewItem> {
    let super::PendingRestore {
        row,
        planned,
        version,
    } = pending;
    let (options, restore, references) = match &version {
        Some(version) => {
            let restore = restore_options(version, input);
            let found = references(
                &version.payload,
                restore.include_assignments,
                restore.include_scope_tags,
            );
            (version.options, restore, found)
        }
        None => (
            CaptureOptions::default(),
            CaptureOptions::default(),
            Vec::new(),
        ),
    };
    let name = match (PolicyType::parse(&row.policy_type), &version) {
        (Some(family), Some(version)) => created_name(family, version).map(str::to_owned),
        _ => None,
    };
    Pending {
        item_id: row.item_id,
        item: PreviewItem {
            unsettled: unsettled.get(&row.policy_id).copied(),
            created_name: name,
            db: db.clone(),
            lookups: Arc::clone(lookups),
            capture: CaptureItem {
                policy_id: row.policy_id,
                graph_id: row.graph_id,
                policy_type: row.policy_type,
                base_snapshot_id: Some(planned.snapshot_id),
                options,
            },
            references,
            restore,
            version_missing: version.is_none(),
        },
    }
}

impl Operation for RestorePreview {
    const TYPE: OperationType = OperationType::RestorePreview;
    const NOTICE: Notice = Notice::new("Restore preview", "The restore preview did not finish.");
    type Output = Previewed;

    type Input = RestorePreviewInput;
    type Item = PreviewItem;

    super::restore_common::restore_items!(RestorePreviewInput, record_plan);

    async fn pending(
        &self,
        db: &Db,
        run: &Run<RestorePreviewInput>,
    ) -> Result<Vec<Pending<PreviewItem>>, sqlx::Error> {
        let pending = super::pending_restores(db, run.id, run.tenant_id, &run.input.items).await?;
        let unsettled = unsettled_creates(db, run.tenant_id).await?;
        // The claim's lookups, dropped with its items however it ends: a takeover asks afresh.
        let lookups = Arc::new(Lookups::default());
        Ok(pending
            .into_iter()
            .map(|pending| preview_item(db, &run.input, &unsettled, &lookups, pending))
            .collect())
    }

    async fn process(
        &self,
        creds: &TenantCredentials,
        run: &Run<RestorePreviewInput>,
        item: &PreviewItem,
    ) -> Previewed {
        if item.version_missing {
            return Previewed {
                captured: Captured::Failed(
                    ReasonCode::InvalidRunInput,
                    "The version to restore no longer exists.".into(),
                ),
                settled: Settled::Nothing,
                missing: Vec::new(),
            };
        }
        let captured = capture(self.source.as_ref(), creds, &item.capture).await;
        let (captured, settled) = match (captured, item.unsettled) {
            (Captured::Deleted, Some(create)) => self.settle(creds, run, item, create).await,
            (captured, _) => (captured, Settled::Nothing),
        };
        let missing = match captured {
            Captured::Failed(..) => Vec::new(),
            _ => self.missing(creds, item).await,
        };
        Previewed {
            captured,
            settled,
            missing,
        }
    }

    async fn conclude(
        &self,
        db: &Db,
        creds: Result<&TenantCredentials, &RunFailure>,
        run: &Run<RestorePreviewInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        let creds = match creds {
            Ok(creds) => creds,
            Err(failure) => return Ok(Some(failure.clone())),
        };
        let block = match self.source.granted_roles(creds).await {
            Ok(granted) => missing_roles(granted.roles.as_deref().unwrap_or_default()),
            Err(failure) => Some(sanitize(&format!(
                "The app's permissions could not be read: {}",
                failure.error.message()
            ))),
        };
        // A cancel during the permission read ended the run: it keeps no block.
        sqlx::query(
            "UPDATE runs SET blocked = $1 WHERE id = $2 AND attempt = $3 AND status = 'running'",
        )
        .bind(block.as_deref())
        .bind(run.id)
        .bind(run.attempt)
        .execute(db.pool())
        .await?;
        let summary = plan_summary(db, run.id, block.as_deref()).await?;
        super::write_summary(db, run.id, run.attempt, &summary).await?;
        Ok(None)
    }
}

/// What a restore of `version` includes: the options asked for, as far as the version recorded
/// them (assignments a capture left out cannot be restored).
pub fn restore_options(version: &StoredVersion, input: &RestorePreviewInput) -> CaptureOptions {
    let asked = CaptureOptions {
        include_assignments: input.include_assignments,
        include_scope_tags: input.include_scope_tags,
    };
    super::restore_common::restore_includes(asked, version.options)
}

/// The restore-wide block when the token lacks a permission a restore needs, naming each: the
/// connection check's table ([`Permission::missing_for`]), so an app it passes is not blocked
/// here.
pub fn missing_roles(roles: &[String]) -> Option<String> {
    let missing: Vec<&str> = Permission::missing_for(Feature::Restore, roles)
        .into_iter()
        .map(Permission::name)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "The app lacks the application permission{} {} (grant {} and admin consent in Entra ID).",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(" and "),
            if missing.len() == 1 { "it" } else { "them" },
        )
    })
}

/// Records the plan of one previewed item.
async fn record_plan(
    tx: &mut Tx,
    run: &Run<RestorePreviewInput>,
    pending: &Pending<PreviewItem>,
    previewed: &Previewed,
    now: i64,
) -> Result<Recorded, sqlx::Error> {
    let tenant_id = run.tenant_id;
    let item = &pending.item.capture;
    let mut notes = PlanNotes {
        blocked: previewed.missing.clone(),
        ..PlanNotes::default()
    };
    // Whether a snapshot captured is of the record's own Graph id: a create found under
    // another one is, once the record follows it.
    let mut own_read = true;
    match &previewed.settled {
        Settled::Nothing => {}
        Settled::Found(create, graph_id) => {
            let adoption = adopt_create(tx, run, item.policy_id, create, graph_id, now).await?;
            own_read = matches!(adoption, Adoption::Adopted);
            match adoption {
                Adoption::Adopted => notes.warnings.push(format!(
                    "An earlier restore (run {}) created this policy as {graph_id} without learning so: the restore updates that policy.",
                    create.run_id
                )),
                Adoption::StillRunning => notes.blocked.push(format!(
                    "An earlier restore (run {}) is still writing this policy (policy {graph_id} may be its create). Run the preview again once it has finished.",
                    create.run_id
                )),
                Adoption::TwinInUse => notes.blocked.push(twin_in_use(graph_id)),
            }
        }
        Settled::NeverLanded(create) => {
            // Checked once the create could no longer land: it never did.
            sqlx::query(
                "UPDATE run_items SET create_sent_at = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND restore_action IS NULL AND outcome <> 'pending'",
            )
            .bind(tenant_id)
            .bind(create.item_id)
            .execute(&mut **tx)
            .await?;
        }
        Settled::Unknown(why) => notes.blocked.push(why.clone()),
    }
    let backup_id = item.base_snapshot_id;
    let backup = match backup_id {
        Some(id) => load_version(&mut **tx, tenant_id, id).await?,
        None => None,
    };
    let backup_secrets = backup
        .as_ref()
        .map(|b| secret_settings(&b.payload))
        .unwrap_or_default();
    let backup_ambiguous = backup
        .as_ref()
        .map(|b| ambiguous_secret_settings(&b.payload))
        .unwrap_or_default();
    let (plan, live_id, live_hash, drift, changed) = match &previewed.captured {
        Captured::Failed(reason, message) => {
            return Ok(Recorded::failed(*reason, message.clone()));
        }
        Captured::Deleted => {
            notes
                .warnings
                .push("Deleted in Intune: the restore creates it anew, with a new id.".to_owned());
            let created = match (PolicyType::parse(&item.policy_type), &backup) {
                (Some(family), Some(backup)) => created_name(family, backup),
                _ => None,
            };
            if let Some(name) = name_taken(tx, tenant_id, item, created).await? {
                notes.warnings.push(format!(
                    "A policy named \"{name}\" already exists in Intune."
                ));
            }
            // A secret is never captured, so a policy created anew could not get it back.
            for setting in &backup_secrets {
                notes.blocked.push(format!(
                    "Secret setting {setting} cannot be created anew: backups never hold secrets."
                ));
            }
            (PlanAction::Create, None, None, Drift::Deleted, None)
        }
        Captured::Snapshot { snapshot, read_at } => {
            // Kept as the record's version either way; a create not adopted leaves the
            // record's own Graph id gone from Intune, and its mark with it.
            let capture = Capture {
                policy_id: item.policy_id,
                snapshot,
                read_at: own_read.then_some(*read_at),
            };
            let stored = store_captures(tx, tenant_id, &[capture], now)
                .await?
                .into_iter()
                .next()
                .ok_or(sqlx::Error::RowNotFound)?;
            let live = serde_json::from_str::<serde_json::Value>(&snapshot.canonical_json).ok();
            let (changed, removals) = match (PolicyType::parse(&item.policy_type), &backup, &live) {
                (Some(family), Some(backup), Some(live)) => {
                    live_to_backup(family, snapshot.format, live, backup, pending.item.restore)
                }
                // Unreadable: planned as an update, so it is looked at rather than skipped.
                _ => (1, Vec::new()),
            };
            notes.removals = removals;
            // An update keeps each secret as Intune holds it; one Intune no longer holds cannot
            // be written.
            let live_secrets = live.as_ref().map(secret_settings).unwrap_or_default();
            if changed > 0 {
                for setting in backup_secrets.iter().filter(|s| !live_secrets.contains(s)) {
                    notes.blocked.push(format!(
                        "Secret setting {setting} is no longer set in Intune and cannot be restored: backups never hold secrets."
                    ));
                }
                // Secrets sharing a setting path (instances of a setting collection, OMA
                // settings under one OMA-URI), or one secret in a setting collection of several
                // instances, cannot be told apart: which instance a value Intune holds belongs
                // to is not known, and the restore never guesses.
                for setting in &backup_ambiguous {
                    notes.blocked.push(format!(
                        "Secret setting {setting} is set more than once in the backup, or in a setting collection of several instances there, and cannot be restored: backups never hold secrets, and which instance a value Intune holds belongs to cannot be told."
                    ));
                }
                let live_ambiguous = live
                    .as_ref()
                    .map(ambiguous_secret_settings)
                    .unwrap_or_default();
                for setting in live_ambiguous
                    .iter()
                    .filter(|s| backup_secrets.contains(s) && !backup_ambiguous.contains(s))
                {
                    notes.blocked.push(format!(
                        "Secret setting {setting} is set more than once in Intune, or in a setting collection of several instances there, and cannot be restored: backups never hold secrets, and which of those values, if any, is the backup's cannot be told."
                    ));
                }
            }
            let plan = if changed == 0 {
                PlanAction::Unchanged
            } else {
                PlanAction::Update
            };
            let drift = if changed == 0 {
                Drift::Unchanged
            } else {
                Drift::Changed
            };
            (
                plan,
                Some(stored.id),
                Some(snapshot.content_hash.clone()),
                drift,
                Some(changed),
            )
        }
    };
    if PolicyType::parse(&item.policy_type).is_none() {
        notes
            .blocked
            .push("This policy type cannot be restored.".to_owned());
    }
    let plan = if notes.blocked.is_empty() {
        plan
    } else {
        PlanAction::Blocked
    };
    let notes_json = serde_json::to_string(&notes).unwrap_or_else(|_| "{}".to_owned());
    sqlx::query(
        "UPDATE run_items SET snapshot_id = $1, base_snapshot_id = $2, drift = $3, \
         changed_settings = $4, restore_plan = $5, live_hash = $6, restore_notes = $7 WHERE id = $8",
    )
    .bind(live_id)
    .bind(backup_id)
    .bind(drift.as_str())
    .bind(changed)
    .bind(plan.as_str())
    .bind(live_hash)
    .bind(notes_json)
    .bind(pending.item_id)
    .execute(&mut **tx)
    .await?;
    Ok(Recorded::succeeded())
}

/// What finding an earlier execute's create came to.
enum Adoption {
    /// Recorded: the policy's record follows the create.
    Adopted,
    /// That execute's item is still pending: it records its own outcome.
    StillRunning,
    /// The inventory holds the created policy under another record in use: the record stays,
    /// and so does the announce (no later preview plans a create).
    TwinInUse,
}

/// Records that `create` (an earlier execute's item of `policy_id`) made the policy of
/// `graph_id`: the policy's record follows it, the item records the create, and an audit row
/// says the create was found by this preview (the item had failed: the write is incomplete).
/// Nothing is recorded while that item is still pending, or when the record cannot follow.
async fn adopt_create(
    tx: &mut Tx,
    run: &Run<RestorePreviewInput>,
    policy_id: i64,
    create: &UnsettledCreate,
    graph_id: &str,
    now: i64,
) -> Result<Adoption, sqlx::Error> {
    let created = RestoreAction::Created;
    let settled: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_items \
         WHERE tenant_id = $1 AND id = $2 AND restore_action IS NULL AND outcome <> 'pending'",
    )
    .bind(run.tenant_id)
    .bind(create.item_id)
    .fetch_one(&mut **tx)
    .await?;
    if settled == 0 {
        return Ok(Adoption::StillRunning);
    }
    if !follow_created(tx, run.tenant_id, policy_id, created, graph_id).await? {
        return Ok(Adoption::TwinInUse);
    }
    sqlx::query(
        "UPDATE run_items SET restore_action = $1, created_graph_id = $2 \
         WHERE tenant_id = $3 AND id = $4 AND restore_action IS NULL",
    )
    .bind(created.as_str())
    .bind(graph_id)
    .bind(run.tenant_id)
    .bind(create.item_id)
    .execute(&mut **tx)
    .await?;
    let details = serde_json::json!({
        "run_id": create.run_id,
        "found_by_preview_run_id": run.id,
        "action": created.as_str(),
        "graph_id": graph_id,
        "completed": false,
    });
    super::restore_common::audit_item_written(tx, run, policy_id, details, now).await?;
    Ok(Adoption::Adopted)
}

/// How many settings a restore with `restore` options would change (live → backup), and the
/// ones it would remove; the parts it leaves out are not compared.
fn live_to_backup(
    family: PolicyType,
    live_format: crate::domain::snapshot::CaptureFormat,
    live: &serde_json::Value,
    backup: &StoredVersion,
    restore: CaptureOptions,
) -> (i64, Vec<String>) {
    let mut names = SettingNames::from_payload(live);
    names.extend(SettingNames::from_payload(&backup.payload));
    let comparison = restore_comparison(
        &CapturedPolicy::new(family, live_format, live),
        &backup.captured(family),
        restore,
        &names,
    );
    let removals = comparison
        .changes
        .iter()
        .filter(|change| change.kind == ChangeKind::Removed)
        .map(|change| {
            let labels: Vec<&str> = change
                .labels
                .iter()
                .map(String::as_str)
                .filter(|label| !label.is_empty())
                .collect();
            labels.join(" › ")
        })
        .collect();
    (comparison.changes.len() as i64, removals)
}

/// The name of another live policy of the same type that has the name the create gives the
/// deleted policy (`name`, the backup's: it may have been renamed since), if one does (from the
/// inventory, as the last sync saw it).
async fn name_taken(
    tx: &mut Tx,
    tenant_id: i64,
    item: &CaptureItem,
    name: Option<&str>,
) -> Result<Option<String>, sqlx::Error> {
    let Some(name) = name else {
        return Ok(None);
    };
    sqlx::query_scalar(
        "SELECT display_name FROM policies \
         WHERE tenant_id = $1 AND policy_type = $2 AND display_name = $3 AND id <> $4 \
           AND gone_from_intune_at IS NULL LIMIT 1",
    )
    .bind(tenant_id)
    .bind(&item.policy_type)
    .bind(name)
    .bind(item.policy_id)
    .fetch_optional(&mut **tx)
    .await
}

/// "2 to update, 1 to create, 9 unchanged, 1 blocked", and the restore-wide block if any.
async fn plan_summary(db: &Db, run_id: i64, block: Option<&str>) -> Result<String, sqlx::Error> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT restore_plan, COUNT(*) AS n FROM run_items WHERE run_id = $1 GROUP BY restore_plan",
    )
    .bind(run_id)
    .fetch_all(db.pool())
    .await?;
    let mut counts: HashMap<Option<PlanAction>, i64> = HashMap::new();
    for (plan, n) in rows {
        *counts
            .entry(plan.as_deref().and_then(PlanAction::parse))
            .or_default() += n;
    }
    let count = |plan| counts.get(&Some(plan)).copied().unwrap_or(0);
    let mut parts = vec![
        format!("{} to update", count(PlanAction::Update)),
        format!("{} to create", count(PlanAction::Create)),
        format!("{} unchanged", count(PlanAction::Unchanged)),
    ];
    if count(PlanAction::Blocked) > 0 {
        parts.push(format!("{} blocked", count(PlanAction::Blocked)));
    }
    let failed = counts.get(&None).copied().unwrap_or(0);
    if failed > 0 {
        parts.push(format!("{failed} could not be read"));
    }
    let mut summary = format!("{}.", parts.join(", "));
    if let Some(block) = block {
        summary.push_str(" Blocked: ");
        summary.push_str(block);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_permission_is_named() {
        let roles = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        let read_only = roles(&["DeviceManagementConfiguration.Read.All"]);
        let block = missing_roles(&read_only).unwrap_or_default();
        assert!(
            block.contains("DeviceManagementConfiguration.ReadWrite.All"),
            "{block}"
        );
        assert!(block.contains("Group.Read.All"), "{block}");
        let no_groups = roles(&["DeviceManagementConfiguration.ReadWrite.All"]);
        let block = missing_roles(&no_groups).unwrap_or_default();
        assert!(block.contains("permission Group.Read.All"), "{block}");
        assert!(!block.contains("ReadWrite"), "{block}");
    }

    /// The permissions the connection check accepts do not block a restore.
    #[test]
    fn what_grants_a_permission_to_the_connection_check_grants_it_here() {
        let roles = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        for granted in [
            roles(&[
                "DeviceManagementConfiguration.ReadWrite.All",
                "Group.Read.All",
            ]),
            roles(&[
                "DeviceManagementConfiguration.ReadWrite.All",
                "Group.ReadWrite.All",
            ]),
            roles(&[
                "DeviceManagementConfiguration.ReadWrite.All",
                "Directory.Read.All",
            ]),
        ] {
            assert_eq!(missing_roles(&granted), None, "{granted:?}");
            assert!(Permission::missing_from(&granted).is_empty(), "{granted:?}");
        }
    }
}
