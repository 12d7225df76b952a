//! Connecting a tenant and changing its connection: the app registration, the client secret
//! (sealed by the key ring, or an `env:NAME` reference), its expiry, disconnect and reconnect,
//! and re-encrypting every secret with the newest key.

use sqlx::FromRow;

use super::keyring::{KeyError, KeyRing, Sealed};
use super::TenantScope;
use crate::domain::tenant::{check_client_secret, expiry_warning, SecretSource, NO_SECRET_KEY};
use crate::domain::{
    routes, AppError, Day, Email, NewTenant, Role, TenantSettings, TenantStatus, TenantSummary,
    Timestamp,
};
use crate::server::audit::{self, AuditEvent};
use crate::server::auth::TenantContext;
use crate::server::db::{is_unique_violation, Db};
use crate::server::engine::runner::WakeUp;
use crate::server::graph::credentials::{DEMO_SECRET_REF, ENCRYPTED_SECRET_REF};
use crate::server::graph::ClientSecret;
use crate::server::runs::cancel;

/// Where a new tenant's client secret comes from.
pub enum SecretInput {
    /// Typed in (the form, or the CLI's standard input): stored sealed.
    Clear(ClientSecret),
    /// An `env:NAME` reference: the secret stays in the environment.
    Reference(String),
}

/// The refusal when no key ring is configured.
fn no_key() -> AppError {
    AppError::Conflict(NO_SECRET_KEY.into())
}

/// A client secret as typed: trimmed, non-empty and bounded.
pub fn parse_secret(raw: &str) -> Result<ClientSecret, AppError> {
    check_client_secret(raw)?;
    Ok(ClientSecret::new(raw.trim()))
}

/// An `env:NAME` reference as typed.
pub fn parse_reference(raw: &str) -> Result<String, AppError> {
    let raw = raw.trim();
    let name_ok = raw.strip_prefix("env:").is_some_and(|name| {
        !name.is_empty()
            && name.len() <= 100
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if !name_ok {
        return Err(AppError::invalid(
            "secret_ref",
            "A secret reference looks like env:NAME.",
        ));
    }
    Ok(raw.to_owned())
}

/// Connects a tenant in the app, as instance admin `owner`, who becomes its owner (see
/// [`insert`]); the `tenant.connect` audit row names them. A tenant id already connected is a
/// 409.
pub async fn connect(
    db: &Db,
    keys: Option<&KeyRing>,
    owner: Option<i64>,
    input: &NewTenant,
    secret: SecretInput,
    expires_on: Option<Day>,
) -> Result<(i64, TenantSummary), AppError> {
    let tenant_id = insert(db, keys, owner, input, &secret, expires_on).await?;
    record_connect(db, tenant_id, owner, input, &secret, None).await;
    Ok(connected(tenant_id, input))
}

/// Connects a tenant from the admin CLI (`create-tenant`), with the account (id and e-mail)
/// made its owner, if one is named. Nobody signed in did it: as for `create-user`, the audit
/// rows have no actor and say `via: cli`, and the owner's grant has a `membership.grant` row of
/// its own (the owner did not connect the tenant). A tenant id already connected is a 409.
pub async fn connect_from_cli(
    db: &Db,
    keys: Option<&KeyRing>,
    owner: Option<(i64, &Email)>,
    input: &NewTenant,
    secret: SecretInput,
    expires_on: Option<Day>,
) -> Result<(i64, TenantSummary), AppError> {
    let owner_id = owner.map(|(id, _)| id);
    let tenant_id = insert(db, keys, owner_id, input, &secret, expires_on).await?;
    record_connect(db, tenant_id, None, input, &secret, Some("cli")).await;
    if let Some((user_id, email)) = owner {
        audit::record(
            db,
            AuditEvent {
                tenant_id: Some(tenant_id),
                actor_user_id: None,
                action: "membership.grant",
                target: format!("user:{user_id}"),
                details: serde_json::json!({
                    "member_email": email.as_str(),
                    "old_role": null,
                    "new_role": Role::Owner.as_str(),
                    "via": "cli",
                }),
            },
        )
        .await;
    }
    Ok(connected(tenant_id, input))
}

/// The tenant [`insert`] connected, as the caller reports it.
fn connected(tenant_id: i64, input: &NewTenant) -> (i64, TenantSummary) {
    (
        tenant_id,
        TenantSummary {
            external_id: input.external_id.to_string(),
            display_name: input.display_name.clone(),
        },
    )
}

/// Audits a connection: `actor` (`None`: the admin CLI, named by `via`), the app registration
/// and where the secret is kept (never the secret).
async fn record_connect(
    db: &Db,
    tenant_id: i64,
    actor: Option<i64>,
    input: &NewTenant,
    secret: &SecretInput,
    via: Option<&str>,
) {
    let mut details = serde_json::json!({
        "client_id": input.client_id,
        "secret": if matches!(secret, SecretInput::Clear(_)) { "encrypted" } else { "reference" },
    });
    if let Some(via) = via {
        details["via"] = via.into();
    }
    audit::record(
        db,
        AuditEvent {
            tenant_id: Some(tenant_id),
            actor_user_id: actor,
            action: "tenant.connect",
            target: format!("tenant:{tenant_id}"),
            details,
        },
    )
    .await;
}

/// Writes a new tenant: its row, its sealed secret (the row id is the associated data, so the
/// row is written first, in the same transaction) and, when `owner` is given, that user's
/// ownership. Answers the row's id; a tenant id already connected is a 409.
async fn insert(
    db: &Db,
    keys: Option<&KeyRing>,
    owner: Option<i64>,
    input: &NewTenant,
    secret: &SecretInput,
    expires_on: Option<Day>,
) -> Result<i64, AppError> {
    if matches!(secret, SecretInput::Clear(_)) && keys.is_none() {
        return Err(no_key());
    }
    let now = Timestamp::now().millis();
    let mut tx = db.pool().begin().await?;
    let reference = match secret {
        SecretInput::Clear(_) => ENCRYPTED_SECRET_REF.to_owned(),
        SecretInput::Reference(reference) => reference.clone(),
    };
    let inserted = sqlx::query_scalar(
        "INSERT INTO tenants (external_id, display_name, graph_client_id, graph_secret_ref, \
         graph_secret_set_at, graph_secret_expires_on, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(input.external_id.as_str())
    .bind(&input.display_name)
    .bind(&input.client_id)
    .bind(&reference)
    .bind(now)
    .bind(expires_on.map(|d| d.to_string()))
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let tenant_id: i64 = match inserted {
        Ok(id) => id,
        Err(error) if is_unique_violation(&error) => {
            tx.rollback().await?;
            return Err(already_there(db, input).await);
        }
        Err(error) => return Err(error.into()),
    };
    if let (SecretInput::Clear(secret), Some(keys)) = (secret, keys) {
        store_sealed(&mut tx, tenant_id, &keys.seal(tenant_id, secret)).await?;
    }
    if let Some(owner) = owner {
        sqlx::query(
            "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(owner)
        .bind(tenant_id)
        .bind(Role::Owner.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(tenant_id)
}

/// The 409 for a tenant id already in TenantAtlas. A disconnected tenant is not connected
/// again here (its row, data and members stay): the message says who reconnects it and where.
/// Only an instance admin (the Connect form) or whoever runs the CLI reads this; the tenant's
/// existence was theirs to learn already, and "disconnected" adds only what they need to stop
/// retrying, never who its owners are.
async fn already_there(db: &Db, input: &NewTenant) -> AppError {
    let disconnected: Result<Option<Option<i64>>, sqlx::Error> =
        sqlx::query_scalar("SELECT disconnected_at FROM tenants WHERE external_id = $1")
            .bind(input.external_id.as_str())
            .fetch_optional(db.pool())
            .await;
    match disconnected {
        Ok(Some(Some(_))) => AppError::Conflict(format!(
            "A tenant with this id is in TenantAtlas but disconnected: its owner can reconnect \
             it with \"Reconnect tenant\" on its settings page ({}).",
            routes::tenant_settings(input.external_id.as_str())
        )),
        Ok(_) => AppError::Conflict("A tenant with this id is already connected.".into()),
        Err(error) => error.into(),
    }
}

async fn store_sealed(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    tenant_id: i64,
    sealed: &Sealed,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE tenants SET graph_secret_ciphertext = $2, graph_secret_key_id = $3 WHERE id = $1",
    )
    .bind(tenant_id)
    .bind(&sealed.ciphertext)
    .bind(&sealed.key_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The tenant's connection as its settings page shows it (never the secret).
pub async fn settings(
    db: &Db,
    scope: &TenantScope,
    can_store_secrets: bool,
) -> Result<TenantSettings, AppError> {
    let row: SettingsRow = sqlx::query_as(
        "SELECT graph_client_id, graph_secret_ref, graph_secret_set_at, graph_secret_expires_on, \
         disconnected_at FROM tenants WHERE id = $1",
    )
    .bind(scope.id())
    .fetch_one(db.pool())
    .await?;
    let secret = match row.graph_secret_ref.as_deref().map(str::trim) {
        Some(ENCRYPTED_SECRET_REF) => SecretSource::Encrypted {
            set_on: row
                .graph_secret_set_at
                .and_then(|at| Day::of(Timestamp(at))),
        },
        Some(DEMO_SECRET_REF) => SecretSource::Demo,
        Some(reference) if reference.starts_with("env:") => SecretSource::Environment {
            name: reference.trim_start_matches("env:").to_owned(),
        },
        _ => SecretSource::Missing,
    };
    let expires_on = row.status.expires_on();
    let expiry_warning_days = expiry_warning(expires_on, Day::of(Timestamp::now()));
    Ok(TenantSettings {
        tenant: scope.summary().clone(),
        client_id: row.graph_client_id,
        secret,
        secret_expires_on: expires_on,
        expiry_warning_days,
        disconnected: row.status.disconnected_at.is_some(),
        can_store_secrets,
    })
}

/// The tenant's row as its settings page reads it.
#[derive(FromRow)]
struct SettingsRow {
    graph_client_id: Option<String>,
    graph_secret_ref: Option<String>,
    graph_secret_set_at: Option<i64>,
    #[sqlx(flatten)]
    status: StatusRow,
}

/// The columns of the tenant's row that its status is made of.
#[derive(FromRow)]
struct StatusRow {
    graph_secret_expires_on: Option<String>,
    disconnected_at: Option<i64>,
}

impl StatusRow {
    /// The secret's expiry day; a stored text that is no day reads as none.
    fn expires_on(&self) -> Option<Day> {
        self.graph_secret_expires_on
            .as_deref()
            .and_then(|raw| Day::parse(raw).ok())
    }
}

/// What every member is told about the tenant's connection: disconnected, and the secret's
/// expiry when it is near.
pub async fn status(db: &Db, scope: &TenantScope) -> Result<TenantStatus, AppError> {
    let row: StatusRow = sqlx::query_as(
        "SELECT graph_secret_expires_on, disconnected_at FROM tenants WHERE id = $1",
    )
    .bind(scope.id())
    .fetch_one(db.pool())
    .await?;
    Ok(TenantStatus {
        disconnected: row.disconnected_at.is_some(),
        expiry_warning_days: expiry_warning(row.expires_on(), Day::of(Timestamp::now())),
    })
}

/// Replaces the tenant's client secret (stored sealed with the newest key), and the client id
/// when one is given, with the new secret's expiry.
pub async fn replace_secret(
    db: &Db,
    keys: Option<&KeyRing>,
    scope: &TenantScope,
    actor: i64,
    client_id: Option<&str>,
    secret: &ClientSecret,
    expires_on: Option<Day>,
) -> Result<(), AppError> {
    let keys = keys.ok_or_else(no_key)?;
    let sealed = keys.seal(scope.id(), secret);
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "UPDATE tenants SET graph_secret_ref = $2, graph_secret_set_at = $3, \
         graph_secret_expires_on = $4, graph_client_id = COALESCE($5, graph_client_id) WHERE id = $1",
    )
    .bind(scope.id())
    .bind(ENCRYPTED_SECRET_REF)
    .bind(Timestamp::now().millis())
    .bind(expires_on.map(|d| d.to_string()))
    .bind(client_id)
    .execute(&mut *tx)
    .await?;
    store_sealed(&mut tx, scope.id(), &sealed).await?;
    tx.commit().await?;
    audit::record(
        db,
        AuditEvent {
            tenant_id: Some(scope.id()),
            actor_user_id: Some(actor),
            action: "tenant.replace_secret",
            target: format!("tenant:{}", scope.id()),
            details: serde_json::json!({
                "key_id": sealed.key_id,
                "expires_on": expires_on.map(|d| d.to_string()),
                "client_id_changed": client_id.is_some(),
            }),
        },
    )
    .await;
    Ok(())
}

/// Disconnects (`connected = false`) or reconnects the tenant. Its data stays either way.
///
/// Disconnecting is the off switch (a leaked secret, an offboarded customer): besides refusing
/// new runs (the authorization point) and the credentials (they no longer load), it cancels
/// every run of the tenant that is queued or under way, as a member's cancel would, because a
/// worker loads the credentials once per claim and would otherwise keep using them to the run's
/// end, restore writes included. The flag is written first, so a run claimed after the list
/// below was read finds the credentials refused. Returns the ids of the runs it cancelled.
///
/// Asking for the state the tenant is already in succeeds without a second audit row, and the
/// first disconnect's time stays. A repeated disconnect still cancels the runs that are queued
/// or under way (each cancel audited): the flag and the cancels are not one transaction, so a
/// first disconnect that stopped between them (or a run that slipped past them) is finished by
/// asking again.
pub async fn set_connected(
    db: &Db,
    wake: &WakeUp,
    ctx: &TenantContext,
    connected: bool,
) -> Result<Vec<i64>, AppError> {
    let scope = &ctx.scope;
    let update = if connected {
        sqlx::query(
            "UPDATE tenants SET disconnected_at = NULL \
             WHERE id = $1 AND disconnected_at IS NOT NULL",
        )
        .bind(scope.id())
    } else {
        sqlx::query(
            "UPDATE tenants SET disconnected_at = $2 WHERE id = $1 AND disconnected_at IS NULL",
        )
        .bind(scope.id())
        .bind(Timestamp::now().millis())
    };
    let changed = update.execute(db.pool()).await?.rows_affected() > 0;
    let cancelled = if connected {
        Vec::new()
    } else {
        cancel_active_runs(db, wake, ctx).await?
    };
    if !changed {
        return Ok(cancelled);
    }
    audit::record(
        db,
        AuditEvent {
            tenant_id: Some(scope.id()),
            actor_user_id: Some(ctx.user_id),
            action: if connected {
                "tenant.reconnect"
            } else {
                "tenant.disconnect"
            },
            target: format!("tenant:{}", scope.id()),
            details: if connected {
                serde_json::json!({})
            } else {
                serde_json::json!({ "cancelled_runs": cancelled })
            },
        },
    )
    .await;
    Ok(cancelled)
}

/// Cancels every queued or running run of the tenant (the cancel of `runs::cancel`, then the
/// signal to the worker on it, here or on another instance), each audited as `run.cancel` by
/// the actor with the disconnect as its reason. A run that ends on its own meanwhile is left as
/// it ended. The ids of the runs cancelled here.
async fn cancel_active_runs(
    db: &Db,
    wake: &WakeUp,
    ctx: &TenantContext,
) -> Result<Vec<i64>, AppError> {
    let active: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM runs WHERE tenant_id = $1 AND status IN ('pending', 'running') ORDER BY id",
    )
    .bind(ctx.scope.id())
    .fetch_all(db.pool())
    .await?;
    let mut cancelled = Vec::with_capacity(active.len());
    for run_id in active {
        match cancel::cancel(db, ctx, run_id).await {
            Ok(Some(_)) => {}
            // Cancelled by someone else, or ended, between the list and the cancel.
            Ok(None) | Err(AppError::Conflict(_)) => continue,
            Err(error) => return Err(error),
        }
        wake.run_cancelled(db, run_id).await;
        audit::record(
            db,
            AuditEvent {
                tenant_id: Some(ctx.scope.id()),
                actor_user_id: Some(ctx.user_id),
                action: "run.cancel",
                target: format!("run:{run_id}"),
                details: serde_json::json!({ "reason": "tenant.disconnect" }),
            },
        )
        .await;
        cancelled.push(run_id);
    }
    Ok(cancelled)
}

/// Whether the tenant is disconnected (no run may start).
pub async fn is_disconnected(db: &Db, tenant_id: i64) -> Result<bool, AppError> {
    let at: Option<Option<i64>> =
        sqlx::query_scalar("SELECT disconnected_at FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(matches!(at, Some(Some(_))))
}

/// Re-encrypts every stored secret with the newest key: [`plan_rotation`], then
/// [`apply_rotation`].
pub async fn rotate(db: &Db, keys: &KeyRing) -> Result<Rotated, RotateError> {
    let plan = plan_rotation(db, keys).await?;
    apply_rotation(db, keys, plan).await
}

/// What `rotate-secret-key` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Secrets moved from an older key to the newest.
    pub reencrypted: usize,
    /// Secrets replaced while the command ran (the owner's "Replace the client secret"),
    /// already sealed with the newest key by that replacement, so left as they are.
    pub replaced_meanwhile: usize,
}

/// The secrets still under an older key, read and sealed again with the newest key, before
/// anything is written.
pub struct RotationPlan {
    reseals: Vec<Reseal>,
}

/// One tenant's secret as it was read and as it will be stored.
struct Reseal {
    tenant_id: i64,
    read: Sealed,
    resealed: Sealed,
}

/// Reads every secret stored under an older key than the newest and seals it again. A secret
/// that does not open stops the rotation before anything is written.
pub async fn plan_rotation(db: &Db, keys: &KeyRing) -> Result<RotationPlan, RotateError> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT id, graph_secret_ciphertext, graph_secret_key_id FROM tenants \
         WHERE graph_secret_ciphertext IS NOT NULL AND graph_secret_key_id <> $1 ORDER BY id",
    )
    .bind(keys.newest_id())
    .fetch_all(db.pool())
    .await?;
    let reseals = rows
        .into_iter()
        .map(|(tenant_id, ciphertext, key_id)| {
            reseal(keys, tenant_id, Sealed { key_id, ciphertext })
        })
        .collect::<Result<_, _>>()?;
    Ok(RotationPlan { reseals })
}

fn reseal(keys: &KeyRing, tenant_id: i64, read: Sealed) -> Result<Reseal, RotateError> {
    let secret = keys
        .open(tenant_id, &read)
        .map_err(|error| RotateError::Tenant(tenant_id, error))?;
    Ok(Reseal {
        tenant_id,
        resealed: keys.seal(tenant_id, &secret),
        read,
    })
}

/// Writes the plan in one transaction. Each write is conditional on the row still holding the
/// secret that was read: on PostgreSQL the rows are not locked while they are read, and a plain
/// `UPDATE … WHERE id` would put back, re-encrypted, a secret the owner replaced in between
/// (with the replacement's date and expiry left beside it). A row that changed meanwhile is
/// read again: a replacement sealed it with the newest key already (`serve` was restarted
/// with the new key before the rotation, step 2 of the rotation), and it is left; one still
/// under an older key (a `serve` not yet restarted) is sealed again and written the same way.
pub async fn apply_rotation(
    db: &Db,
    keys: &KeyRing,
    plan: RotationPlan,
) -> Result<Rotated, RotateError> {
    let mut tx = db.begin_writing().await?;
    let mut rotated = Rotated {
        reencrypted: 0,
        replaced_meanwhile: 0,
    };
    for mut pending in plan.reseals {
        loop {
            let written = sqlx::query(
                "UPDATE tenants SET graph_secret_ciphertext = $2, graph_secret_key_id = $3 \
                 WHERE id = $1 AND graph_secret_ciphertext = $4 AND graph_secret_key_id = $5",
            )
            .bind(pending.tenant_id)
            .bind(&pending.resealed.ciphertext)
            .bind(&pending.resealed.key_id)
            .bind(&pending.read.ciphertext)
            .bind(&pending.read.key_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written > 0 {
                rotated.reencrypted += 1;
                break;
            }
            let now: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                "SELECT graph_secret_ciphertext, graph_secret_key_id FROM tenants WHERE id = $1",
            )
            .bind(pending.tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
            match now {
                Some((Some(ciphertext), Some(key_id))) if key_id != keys.newest_id() => {
                    let read = Sealed { key_id, ciphertext };
                    pending = reseal(keys, pending.tenant_id, read)?;
                }
                // Under the newest key, or no sealed secret any more.
                _ => {
                    rotated.replaced_meanwhile += 1;
                    break;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(rotated)
}

/// Why `rotate-secret-key` stopped (nothing is changed then).
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("the secret of tenant row {0} cannot be opened: {1}")]
    Tenant(i64, KeyError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}
