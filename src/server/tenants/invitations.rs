//! Invitations: a one-time link that makes an account and a membership for an e-mail address
//! without one. The token is 32 random bytes; only its sha256 is stored, so the database (or a
//! backup of it) cannot hand out a usable link. A link lasts [`INVITATION_DAYS`], is used once
//! (the consuming update is one statement, so two uses at the same moment cannot both pass),
//! and a new invitation for the same address in the same tenant replaces the pending one. An
//! invitation of an address that has an account (one the owner may not add without its
//! consent, see `members::add_or_invite`) is accepted by that account's session instead. An
//! invitation is written only while its inviter may invite, and used only while they still
//! may: a demoted or removed inviter's links bring no one in. An address whose account is a
//! member is not invited, and a removed member's address loses its pending invitations. The
//! session of the account that used a link may send the acceptance again (a double click, a
//! retry after a lost answer) while it is a member: it is answered as the first time, and
//! nothing is written.

use sqlx::FromRow;

use super::TenantScope;
use crate::domain::invitation::{not_valid, InvitationToken, INVITATION_DAYS};
use crate::domain::{
    routes, AppError, Capability, Email, InvitationPreview, PendingInvitation, Role, TenantSummary,
    Timestamp,
};
use crate::server::audit::{self, AuditEvent};
use crate::server::db::{is_unique_violation, Db};

const DAY_MILLIS: i64 = 24 * 60 * 60 * 1000;

/// The stored form of a token: its sha256, in hex.
pub fn token_hash(token: &InvitationToken) -> String {
    crate::server::graph::snapshot::sha256_hex(token.expose().as_bytes())
}

/// The refusal when the server does not know the URL browsers reach it at.
fn no_public_url() -> AppError {
    AppError::Conflict(
        "This address joins by invitation, and an invitation link needs the address the app \
         is reached at: start the server with --public-url (or TENANTATLAS_PUBLIC_URL)."
            .into(),
    )
}

/// The refusal to add or invite an address whose account is a member of the tenant already.
pub(super) fn already_a_member() -> AppError {
    AppError::Conflict("This account is already a member: change its role instead.".into())
}

/// Whether the account with this address is a member of the tenant, read on `conn`.
pub(super) async fn is_member<'c, E>(
    conn: E,
    tenant_id: i64,
    email: &Email,
) -> Result<bool, AppError>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    let member: Option<i64> = sqlx::query_scalar(
        "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND u.email = $2",
    )
    .bind(tenant_id)
    .bind(email.as_str())
    .fetch_optional(conn)
    .await?;
    Ok(member.is_some())
}

/// Whether a member with `role` (`None`: not a member) may invite: the one rule that decides
/// who makes invitations and whose invitations stay usable.
fn may_invite(role: Option<Role>) -> bool {
    role.is_some_and(|role| role.can(Capability::ManageMembers))
}

/// Invites `email` into the tenant with `role` and answers the link (with the only copy of the
/// token) and when it expires. Pending invitations of the same address in this tenant end now.
/// An address whose account is a member already is a 409 that writes nothing: the link would
/// stay pending while they are a member (joining refuses it) and bring them back after a
/// removal (which withdraws it for that reason, see [`withdraw_for_address`]).
///
/// The actor was authorized before this runs, but another owner may demote or remove them in
/// the meantime, and the demotion withdraws only the invitations already written: so the
/// invitation is written under [`lock_members`], while they may invite, or not at all (403).
pub async fn create(
    db: &Db,
    scope: &TenantScope,
    actor: i64,
    email: &Email,
    role: Role,
    public_url: Option<&str>,
) -> Result<(String, Timestamp), AppError> {
    let public_url = public_url.ok_or_else(no_public_url)?;
    let token = InvitationToken::new(rand::random());
    let now = Timestamp::now().millis();
    let expires_at = now + INVITATION_DAYS * DAY_MILLIS;
    let mut tx = db.pool().begin().await?;
    lock_members(&mut tx, scope.id(), actor).await?;
    if is_member(&mut *tx, scope.id(), email).await? {
        tx.rollback().await?;
        return Err(already_a_member());
    }
    sqlx::query(
        "UPDATE invitations SET expires_at = $3 \
         WHERE tenant_id = $1 AND email = $2 AND accepted_at IS NULL AND expires_at > $3",
    )
    .bind(scope.id())
    .bind(email.as_str())
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO invitations (tenant_id, email, role, token_hash, invited_by, created_at, \
         expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(scope.id())
    .bind(email.as_str())
    .bind(role.as_str())
    .bind(token_hash(&token))
    .bind(actor)
    .bind(now)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    audit::record(
        db,
        AuditEvent {
            tenant_id: Some(scope.id()),
            actor_user_id: Some(actor),
            action: "invitation.create",
            target: format!("email:{}", email.as_str()),
            details: serde_json::json!({
                "invitation_id": id,
                "new_role": role.as_str(),
                "expires_at": expires_at,
            }),
        },
    )
    .await;
    Ok((
        routes::invite_link(public_url, token.expose()),
        Timestamp(expires_at),
    ))
}

/// Locks the tenant's members for a change that `actor` makes (an invitation, an added member,
/// a role changed or a member removed), and refuses it (403) unless the actor still may manage
/// members. The actor was authorized before, but another owner may have demoted or removed
/// them since. A write to the tenant's row: PostgreSQL locks the row and SQLite takes its write
/// lock, so changes of one tenant's members run one after the other, and the role read here
/// stays true until the transaction ends (a demotion that starts later waits, then withdraws
/// what this wrote).
pub(super) async fn lock_members(
    tx: &mut sqlx::AnyConnection,
    tenant_id: i64,
    actor: i64,
) -> Result<(), AppError> {
    sqlx::query("UPDATE tenants SET display_name = display_name WHERE id = $1")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    let actor_role = role_of(tx, tenant_id, Some(actor)).await?;
    if may_invite(actor_role) {
        return Ok(());
    }
    Err(AppError::Forbidden(match actor_role {
        Some(role) => Capability::ManageMembers.refusal(role),
        None => "You are not a member of this tenant.".into(),
    }))
}

/// The role of member `user_id` (`None`: no one) in the tenant, read in `tx`.
async fn role_of(
    tx: &mut sqlx::AnyConnection,
    tenant_id: i64,
    user_id: Option<i64>,
) -> Result<Option<Role>, AppError> {
    let role: Option<Role> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(tx)
            .await?;
    Ok(role)
}

/// The tenant's invitations that can still be used, newest first.
pub async fn pending(db: &Db, scope: &TenantScope) -> Result<Vec<PendingInvitation>, AppError> {
    let rows = sqlx::query_as(
        "SELECT i.id, i.email, i.role, u.email AS invited_by, i.created_at, i.expires_at \
         FROM invitations i LEFT JOIN users u ON u.id = i.invited_by \
         WHERE i.tenant_id = $1 AND i.accepted_at IS NULL AND i.expires_at > $2 \
         ORDER BY i.id DESC",
    )
    .bind(scope.id())
    .bind(Timestamp::now().millis())
    .fetch_all(db.pool())
    .await?;
    Ok(rows)
}

/// Withdraws a pending invitation: its link stops working.
pub async fn revoke(db: &Db, scope: &TenantScope, actor: i64, id: i64) -> Result<(), AppError> {
    let email: Option<String> = sqlx::query_scalar(
        "DELETE FROM invitations WHERE tenant_id = $1 AND id = $2 AND accepted_at IS NULL \
         RETURNING email",
    )
    .bind(scope.id())
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    let email = email.ok_or_else(|| {
        AppError::NotFound("This tenant has no pending invitation with this id.".into())
    })?;
    audit::record(
        db,
        AuditEvent {
            tenant_id: Some(scope.id()),
            actor_user_id: Some(actor),
            action: "invitation.revoke",
            target: format!("email:{email}"),
            details: serde_json::json!({ "invitation_id": id }),
        },
    )
    .await;
    Ok(())
}

/// An invitation as its token finds it.
#[derive(FromRow)]
struct Found {
    #[sqlx(rename = "external_id")]
    tenant_external_id: String,
    #[sqlx(rename = "display_name")]
    tenant_name: String,
    email: String,
    role: Role,
    expires_at: i64,
    accepted_at: Option<i64>,
    accepted_by: Option<i64>,
    /// The inviter's role in the tenant now (`None`: no longer a member, or no inviter).
    inviter_role: Option<Role>,
    /// The role in the tenant now of the account that used the invitation (`None`: unused, or
    /// that account is no longer a member).
    acceptor_role: Option<Role>,
}

impl Found {
    /// The account that used the invitation, while it is still a member of the tenant: its
    /// session sending the acceptance again (a double click, a retry after the answer was lost)
    /// is answered as the first time ([`join`]). Once removed, the link stays used.
    fn joined_by(&self) -> Option<i64> {
        let used = self.accepted_at.is_some() && self.acceptor_role.is_some();
        self.accepted_by.filter(|_| used)
    }

    /// The tenant the invitation is for, as a successful acceptance answers it.
    fn tenant(self) -> TenantSummary {
        TenantSummary {
            external_id: self.tenant_external_id,
            display_name: self.tenant_name,
        }
    }
}

async fn find(db: &Db, token: &InvitationToken) -> Result<Found, AppError> {
    sqlx::query_as(
        "SELECT t.external_id, t.display_name, i.email, i.role, i.expires_at, i.accepted_at, \
         i.accepted_by, m.role AS inviter_role, a.role AS acceptor_role \
         FROM invitations i JOIN tenants t ON t.id = i.tenant_id \
         LEFT JOIN memberships m ON m.tenant_id = i.tenant_id AND m.user_id = i.invited_by \
         LEFT JOIN memberships a ON a.tenant_id = i.tenant_id AND a.user_id = i.accepted_by \
         WHERE i.token_hash = $1",
    )
    .bind(token_hash(token))
    .fetch_optional(db.pool())
    .await?
    .ok_or_else(not_valid)
}

/// Why a found invitation cannot be used any more, if it cannot. One whose inviter may no
/// longer invite is not valid, as if withdrawn: the demotion withdraws their pending
/// invitations, and one written in the moment of it is refused the same way.
fn unusable(found: &Found, now: i64) -> Option<AppError> {
    if found.accepted_at.is_some() {
        Some(already_used())
    } else if found.expires_at <= now {
        Some(AppError::Conflict(
            "This invitation has expired. Ask the tenant's owner for a new one.".into(),
        ))
    } else if !may_invite(found.inviter_role) {
        Some(not_valid())
    } else {
        None
    }
}

/// Refuses, in `tx`, a claimed invitation whose inviter may no longer invite (see
/// [`unusable`]): rolls `tx` back and answers that the link is not valid. Read after the
/// claim, so a demotion that commits first is seen, and one that commits later finds the
/// invitation used (it withdraws only pending ones), as if the invitation came first.
async fn check_inviter(
    mut tx: sqlx::Transaction<'static, sqlx::Any>,
    tenant_id: i64,
    inviter: Option<i64>,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, AppError> {
    if may_invite(role_of(&mut tx, tenant_id, inviter).await?) {
        Ok(tx)
    } else {
        tx.rollback().await?;
        Err(not_valid())
    }
}

/// What the accept page shows, or why the link cannot be used.
pub async fn preview(db: &Db, token: &InvitationToken) -> Result<InvitationPreview, AppError> {
    let (preview, _) = usable(db, find(db, token).await?).await?;
    Ok(preview)
}

/// The account whose session alone may use a link ([`check_usable`]), and what anyone else is
/// told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joiner {
    /// The account the invited address has: its session joins with [`join`]; any other request
    /// is told to sign in as it first.
    Account(i64),
    /// The account that used the link, still a member: its session sending the acceptance again
    /// (a double click, a retry after a lost answer) is answered by [`join`] as the first time.
    /// Any other request hears that the link was used, exactly as when that account has left
    /// the tenant: the answer tells no one whether it is still a member.
    Member(i64),
}

impl Joiner {
    /// The account whose session the request must carry.
    pub fn account(self) -> i64 {
        match self {
            Joiner::Account(account) | Joiner::Member(account) => account,
        }
    }

    /// The refusal for a request that is not that account's session.
    pub fn refusal(self) -> AppError {
        match self {
            Joiner::Account(_) => sign_in_first(),
            Joiner::Member(_) => already_used(),
        }
    }
}

/// Checks the token before the (slow) password hash is computed, so a link that cannot be used
/// costs the server one indexed read. Answers the account whose session alone may use the link,
/// if the invited address has one ([`Joiner`]).
pub async fn check_usable(db: &Db, token: &InvitationToken) -> Result<Option<Joiner>, AppError> {
    let found = find(db, token).await?;
    if let Some(member) = found.joined_by() {
        return Ok(Some(Joiner::Member(member)));
    }
    let (_, account) = usable(db, found).await?;
    Ok(account.map(Joiner::Account))
}

/// The invitation `found` if it is usable, and the account its address has, if any.
async fn usable(db: &Db, found: Found) -> Result<(InvitationPreview, Option<i64>), AppError> {
    if let Some(error) = unusable(&found, Timestamp::now().millis()) {
        return Err(error);
    }
    let account: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
        .bind(&found.email)
        .fetch_optional(db.pool())
        .await?;
    let preview = InvitationPreview {
        tenant_name: found.tenant_name,
        email: found.email,
        role: found.role,
        expires_at: Timestamp(found.expires_at),
        existing_account: account.is_some(),
    };
    Ok((preview, account))
}

/// The refusal of a link that was used.
fn already_used() -> AppError {
    AppError::Conflict(
        "This invitation has already been used. Sign in with its e-mail address, or ask the \
         tenant's owner for a new invitation."
            .into(),
    )
}

/// The refusal when the invited address has an account and the request is not signed in as it.
pub fn sign_in_first() -> AppError {
    AppError::Conflict(
        "An account with this e-mail address exists already: sign in with it, then open this \
         link again to join the tenant."
            .into(),
    )
}

/// Uses the invitation for the existing account `user_id` (whose session the caller checked):
/// marks it accepted and adds the membership with the invited role, in one transaction. The
/// invitation must name the account's address; an account already a member is a 409 that
/// leaves the invitation unused. The account that used it already, still a member, is
/// answered the tenant as the first time, with nothing written: a double click or a retry after
/// a lost answer is harmless (see [`Found::joined_by`]).
pub async fn join(
    db: &Db,
    token: &InvitationToken,
    user_id: i64,
) -> Result<TenantSummary, AppError> {
    let now = Timestamp::now().millis();
    let mut tx = db.pool().begin().await?;
    let claimed: Option<(i64, i64, String, Option<i64>)> = sqlx::query_as(
        "UPDATE invitations SET accepted_at = $2, accepted_by = $3 \
         WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2 \
         AND email = (SELECT email FROM users WHERE id = $3) \
         RETURNING id, tenant_id, role, invited_by",
    )
    .bind(token_hash(token))
    .bind(now)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((invitation_id, tenant_id, role, inviter)) = claimed else {
        tx.rollback().await?;
        let found = find(db, token).await?;
        if found.joined_by() == Some(user_id) {
            return Ok(found.tenant());
        }
        return Err(unusable(&found, now).unwrap_or_else(sign_in_first));
    };
    let mut tx = check_inviter(tx, tenant_id, inviter).await?;
    let inserted = sqlx::query(
        "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(tenant_id)
    .bind(&role)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => {}
        Err(error) if is_unique_violation(&error) => {
            tx.rollback().await?;
            return Err(AppError::Conflict(
                "Your account is a member of this tenant already.".into(),
            ));
        }
        Err(error) => return Err(error.into()),
    }
    let accepted = Acceptance {
        invitation_id,
        tenant_id,
        user_id,
        role: &role,
        existing_account: true,
    };
    accepted.commit(db, tx).await
}

/// The account an accepted invitation made.
pub struct Accepted {
    pub user_id: i64,
    pub session_generation: i64,
    pub tenant: TenantSummary,
}

/// Uses the invitation: marks it accepted, makes the account (name, password hash) and the
/// membership, in one transaction. The mark is a conditional update, so of two acceptances at
/// the same moment exactly one passes. An address that got an account meanwhile is a 409 and
/// leaves the invitation unused.
pub async fn accept(
    db: &Db,
    token: &InvitationToken,
    display_name: &str,
    password_hash: &str,
) -> Result<Accepted, AppError> {
    let now = Timestamp::now().millis();
    let mut tx = db.pool().begin().await?;
    let claimed: Option<(i64, i64, String, String, Option<i64>)> = sqlx::query_as(
        "UPDATE invitations SET accepted_at = $2 \
         WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > $2 \
         RETURNING id, tenant_id, email, role, invited_by",
    )
    .bind(token_hash(token))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((invitation_id, tenant_id, email, role, inviter)) = claimed else {
        tx.rollback().await?;
        let found = find(db, token).await?;
        return Err(unusable(&found, now).unwrap_or_else(not_valid));
    };
    let mut tx = check_inviter(tx, tenant_id, inviter).await?;
    // The account's `created_at` is the invitation's `accepted_at`: that is how an account whose
    // password the link's holder chose is told apart (`users::PASSWORD_VIA_INVITATION`).
    let inserted = sqlx::query_as::<_, (i64, i64)>(
        "INSERT INTO users (email, display_name, password_hash, created_at, is_admin) \
         VALUES ($1, $2, $3, $4, FALSE) RETURNING id, session_generation",
    )
    .bind(&email)
    .bind(display_name)
    .bind(password_hash)
    .bind(now)
    .fetch_one(&mut *tx)
    .await;
    let (user_id, session_generation) = match inserted {
        Ok(row) => row,
        Err(error) if is_unique_violation(&error) => {
            // The address got an account since the check: it joins with that account.
            tx.rollback().await?;
            return Err(sign_in_first());
        }
        Err(error) => return Err(error.into()),
    };
    sqlx::query(
        "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(tenant_id)
    .bind(&role)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE invitations SET accepted_by = $2 WHERE id = $1")
        .bind(invitation_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let accepted = Acceptance {
        invitation_id,
        tenant_id,
        user_id,
        role: &role,
        existing_account: false,
    };
    let tenant = accepted.commit(db, tx).await?;
    Ok(Accepted {
        user_id,
        session_generation,
        tenant,
    })
}

/// An invitation used, its membership written in an open transaction.
struct Acceptance<'a> {
    invitation_id: i64,
    tenant_id: i64,
    user_id: i64,
    role: &'a str,
    /// Whether an existing account joined (rather than one made by the acceptance).
    existing_account: bool,
}

impl Acceptance<'_> {
    /// Reads the tenant joined, commits `tx` and audits the acceptance.
    async fn commit(
        self,
        db: &Db,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
    ) -> Result<TenantSummary, AppError> {
        let tenant: TenantSummary =
            sqlx::query_as("SELECT external_id, display_name FROM tenants WHERE id = $1")
                .bind(self.tenant_id)
                .fetch_one(&mut *tx)
                .await?;
        let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(self.user_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        audit::record(
            db,
            AuditEvent {
                tenant_id: Some(self.tenant_id),
                actor_user_id: Some(self.user_id),
                action: "invitation.accept",
                target: format!("user:{}", self.user_id),
                details: serde_json::json!({
                    "invitation_id": self.invitation_id,
                    "member_email": email,
                    "old_role": null,
                    "new_role": self.role,
                    "existing_account": self.existing_account,
                }),
            },
        )
        .await;
        Ok(tenant)
    }
}

/// Withdraws, in `tx`, the pending invitations `inviter` made in the tenant when their new
/// `role` (`None`: removed) may no longer invite, so a link they kept cannot bring anyone in.
/// Returns what was withdrawn: (id, e-mail). The members page and the admin CLI share it.
pub(crate) async fn withdraw_if_may_not_invite(
    tx: &mut sqlx::AnyConnection,
    tenant_id: i64,
    inviter: i64,
    role: Option<Role>,
) -> Result<Vec<(i64, String)>, sqlx::Error> {
    if may_invite(role) {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "DELETE FROM invitations WHERE tenant_id = $1 AND invited_by = $2 \
         AND accepted_at IS NULL RETURNING id, email",
    )
    .bind(tenant_id)
    .bind(inviter)
    .fetch_all(tx)
    .await
}

/// Withdraws, in `tx`, the pending invitations of `email` (a removed member's address) in the
/// tenant: one made before the account became a member some other way (another link, the admin
/// CLI) stayed pending, and would let the removed member back in. Returns their ids.
pub(super) async fn withdraw_for_address(
    tx: &mut sqlx::AnyConnection,
    tenant_id: i64,
    email: &str,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "DELETE FROM invitations WHERE tenant_id = $1 AND email = $2 \
         AND accepted_at IS NULL AND expires_at > $3 RETURNING id",
    )
    .bind(tenant_id)
    .bind(email)
    .bind(Timestamp::now().millis())
    .fetch_all(tx)
    .await
}

/// Audits the invitations [`withdraw_if_may_not_invite`] withdrew; `actor` is `None` for the
/// admin CLI.
pub(crate) async fn record_withdrawn(
    db: &Db,
    tenant_id: i64,
    actor: Option<i64>,
    withdrawn: &[(i64, String)],
) {
    for (id, email) in withdrawn {
        let reason = "inviter_may_no_longer_invite";
        record_revoked(db, tenant_id, actor, *id, email, reason).await;
    }
}

/// Audits the invitations [`withdraw_for_address`] withdrew when `actor` removed the member
/// with that address.
pub(super) async fn record_voided(
    db: &Db,
    tenant_id: i64,
    actor: i64,
    voided: &[i64],
    email: &str,
) {
    for id in voided {
        record_revoked(db, tenant_id, Some(actor), *id, email, "member_removed").await;
    }
}

async fn record_revoked(
    db: &Db,
    tenant_id: i64,
    actor: Option<i64>,
    id: i64,
    email: &str,
    reason: &str,
) {
    audit::record(
        db,
        AuditEvent {
            tenant_id: Some(tenant_id),
            actor_user_id: actor,
            action: "invitation.revoke",
            target: format!("email:{email}"),
            details: serde_json::json!({ "invitation_id": id, "reason": reason }),
        },
    )
    .await;
}
