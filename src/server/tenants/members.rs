//! A tenant's members: list, add an existing account, change a role, remove. A tenant always
//! keeps an owner: every change locks the tenant's row first (a write on both engines, so two
//! owners demoting each other at the same moment are serialized), makes the change, counts the
//! owners left and rolls back with a 409 when none is. Each change is audited with the member's
//! e-mail and the old and new role. Authorization reads memberships on every request, so a
//! removed member loses the tenant at once; a member who is removed or can no longer manage
//! members loses their pending invitations in the tenant too (in the same transaction), so a
//! link they kept cannot bring anyone in, themselves included, with a role they may no longer
//! grant. A removed member's own address loses its pending invitations in the tenant as well,
//! so no link brings them back; an address that is a member already gets no invitation.

use super::{invitations, TenantScope};
use crate::domain::{AddMemberOutcome, AppError, Email, Member, Role, Timestamp};
use crate::server::audit::{self, AuditEvent};
use crate::server::auth::users;
use crate::server::db::{is_unique_violation, Db};

/// The tenant's members, owners first, then by name.
pub async fn list(db: &Db, scope: &TenantScope) -> Result<Vec<Member>, AppError> {
    let mut members: Vec<Member> = sqlx::query_as(
        "SELECT u.id, u.email, u.display_name, m.role, m.created_at FROM memberships m \
         JOIN users u ON u.id = m.user_id WHERE m.tenant_id = $1 ORDER BY u.display_name, u.id",
    )
    .bind(scope.id())
    .fetch_all(db.pool())
    .await?;
    members.sort_by_key(|m| Role::ALL.iter().position(|r| *r == m.role));
    Ok(members)
}

/// Adds the address as a member: at once when it has an account the owner may add without its
/// consent, else by an invitation whose link (built on `public_url`, the URL browsers reach the
/// app at) the owner passes on. An account whose password was chosen through another tenant's
/// invitation link proves no more than that someone held that link: whoever accepted it chose
/// the password, whatever the address. Such an account is always invited too, and only a
/// session of that account can accept the link: sharing a tenant with the owner proves nothing,
/// as the holder of the account may have brought the owner (or the account) into that tenant
/// without the owner's consent. Once the admin resets its password (`set-password`,
/// `create-user`), the password is no longer the link holder's and the account is added at once
/// like any other. An address whose account is a member already is a 409 that writes nothing
/// (change its role instead), however the account was made: an invitation for it would stay
/// pending, and let the member back in, with its role, after a removal.
pub async fn add_or_invite(
    db: &Db,
    scope: &TenantScope,
    actor: i64,
    email: &Email,
    role: Role,
    public_url: Option<&str>,
) -> Result<AddMemberOutcome, AppError> {
    if invitations::is_member(db.pool(), scope.id(), email).await? {
        return Err(invitations::already_a_member());
    }
    match account(db, scope, email).await? {
        Account::Addable(user_id) => {
            add(db, scope, actor, user_id, email, role).await?;
            Ok(AddMemberOutcome::Added)
        }
        Account::None | Account::NeedsConsent => {
            let (link, expires_at) =
                invitations::create(db, scope, actor, email, role, public_url).await?;
            Ok(AddMemberOutcome::Invited { link, expires_at })
        }
    }
}

/// The account an address names, as the owner adding it sees it.
enum Account {
    /// No account has the address.
    None,
    /// An account the owner may add at once.
    Addable(i64),
    /// An account whose password was chosen through an invitation link of another tenant: it
    /// joins only by accepting an invitation while signed in.
    NeedsConsent,
}

/// Reads the account of `email`. Its password may still be the one chosen through an
/// invitation link ([`users::PASSWORD_VIA_INVITATION`]: an invitation made it and the admin has
/// not set a password since); the tenant the link came from is then one of those whose
/// invitations the account accepted. An account that accepted only this tenant's invitations was
/// made through this tenant's own link, whose holder the tenant trusted already, so it is added
/// at once. An account whose password the admin set (the CLI or the seed) is added at once too,
/// even when it joined other tenants through their links: it joined with its own session, which
/// chose no password.
async fn account(db: &Db, scope: &TenantScope, email: &Email) -> Result<Account, AppError> {
    let Some(user_id) = sqlx::query_scalar::<_, i64>("SELECT id FROM users WHERE email = $1")
        .bind(email.as_str())
        .fetch_optional(db.pool())
        .await?
    else {
        return Ok(Account::None);
    };
    if !users::password_via_invitation(db, user_id).await? {
        return Ok(Account::Addable(user_id));
    }
    let invited_elsewhere: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM invitations WHERE accepted_by = $1 AND tenant_id <> $2",
    )
    .bind(user_id)
    .bind(scope.id())
    .fetch_one(db.pool())
    .await?;
    Ok(if invited_elsewhere == 0 {
        Account::Addable(user_id)
    } else {
        Account::NeedsConsent
    })
}

/// Gives account `user_id` the `role` in the tenant; an existing member is a 409 (change the
/// role instead).
async fn add(
    db: &Db,
    scope: &TenantScope,
    actor: i64,
    user_id: i64,
    email: &Email,
    role: Role,
) -> Result<(), AppError> {
    let mut tx = db.pool().begin().await?;
    invitations::lock_members(&mut tx, scope.id(), actor).await?;
    let inserted = sqlx::query(
        "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(user_id)
    .bind(scope.id())
    .bind(role.as_str())
    .bind(Timestamp::now().millis())
    .execute(&mut *tx)
    .await;
    match inserted {
        Ok(_) => tx.commit().await?,
        Err(error) if is_unique_violation(&error) => return Err(invitations::already_a_member()),
        Err(error) => return Err(error.into()),
    }
    let member = Audited {
        user_id,
        email: email.as_str(),
    };
    record(db, scope, actor, "member.add", member, None, Some(role)).await;
    Ok(())
}

/// Changes a member's role; demoting the last owner is a 409.
pub async fn change_role(
    db: &Db,
    scope: &TenantScope,
    actor: i64,
    user_id: i64,
    role: Role,
) -> Result<(), AppError> {
    let changed = change(db, scope, actor, user_id, Some(role)).await?;
    if changed.old != role {
        record(
            db,
            scope,
            actor,
            "member.change_role",
            changed.member(user_id),
            Some(changed.old),
            Some(role),
        )
        .await;
    }
    invitations::record_withdrawn(db, scope.id(), Some(actor), &changed.revoked).await;
    Ok(())
}

/// Removes a member; removing the last owner is a 409.
pub async fn remove(
    db: &Db,
    scope: &TenantScope,
    actor: i64,
    user_id: i64,
) -> Result<(), AppError> {
    let changed = change(db, scope, actor, user_id, None).await?;
    record(
        db,
        scope,
        actor,
        "member.remove",
        changed.member(user_id),
        Some(changed.old),
        None,
    )
    .await;
    invitations::record_withdrawn(db, scope.id(), Some(actor), &changed.revoked).await;
    invitations::record_voided(db, scope.id(), actor, &changed.voided, &changed.email).await;
    Ok(())
}

/// What a change of a membership did.
struct Changed {
    /// The member's role before.
    old: Role,
    /// The member's e-mail, for the audit log.
    email: String,
    /// The member's pending invitations withdrawn with it: (id, e-mail).
    revoked: Vec<(i64, String)>,
    /// On a removal, the pending invitations of the member's own address in the tenant, which
    /// would let them back in: their ids.
    voided: Vec<i64>,
}

/// Sets (`Some`) or deletes (`None`) the membership, as `actor` while they still may (under
/// [`invitations::lock_members`]), and checks, in the same transaction, that an owner remains.
/// A member left without [`Capability::ManageMembers`] (removed, or given a role without it)
/// loses the invitations they made in the tenant that are still pending; a removed member
/// loses the pending invitations of their own address in the tenant too (one made before they
/// joined some other way, by another link or the admin CLI, would bring them back).
async fn change(
    db: &Db,
    scope: &TenantScope,
    actor: i64,
    user_id: i64,
    role: Option<Role>,
) -> Result<Changed, AppError> {
    let mut tx = db.pool().begin().await?;
    invitations::lock_members(&mut tx, scope.id(), actor).await?;
    let (old, email): (String, String) = sqlx::query_as(
        "SELECT m.role, u.email FROM memberships m JOIN users u ON u.id = m.user_id \
         WHERE m.tenant_id = $1 AND m.user_id = $2",
    )
    .bind(scope.id())
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| AppError::NotFound("This account is not a member.".into()))?;
    let old = Role::parse(&old).ok_or(AppError::Internal)?;
    let write = match role {
        Some(role) => {
            sqlx::query("UPDATE memberships SET role = $3 WHERE tenant_id = $1 AND user_id = $2")
                .bind(scope.id())
                .bind(user_id)
                .bind(role.as_str())
        }
        None => sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(scope.id())
            .bind(user_id),
    };
    write.execute(&mut *tx).await?;
    let owners: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships WHERE tenant_id = $1 AND role = 'owner'",
    )
    .bind(scope.id())
    .fetch_one(&mut *tx)
    .await?;
    if owners == 0 {
        tx.rollback().await?;
        return Err(AppError::Conflict(
            "A tenant keeps at least one owner: make someone else owner first.".into(),
        ));
    }
    let revoked =
        invitations::withdraw_if_may_not_invite(&mut tx, scope.id(), user_id, role).await?;
    let voided = match role {
        Some(_) => Vec::new(),
        None => invitations::withdraw_for_address(&mut tx, scope.id(), &email).await?,
    };
    tx.commit().await?;
    Ok(Changed {
        old,
        email,
        revoked,
        voided,
    })
}

impl Changed {
    /// The member as the audit log names them.
    fn member(&self, user_id: i64) -> Audited<'_> {
        Audited {
            user_id,
            email: &self.email,
        }
    }
}

/// The member a change was about: their account's id, and their e-mail, which the audit page
/// shows (no page shows account ids, and after a removal nothing else ties the id to a person).
struct Audited<'a> {
    user_id: i64,
    email: &'a str,
}

async fn record(
    db: &Db,
    scope: &TenantScope,
    actor: i64,
    action: &str,
    member: Audited<'_>,
    old: Option<Role>,
    new: Option<Role>,
) {
    audit::record(
        db,
        AuditEvent {
            tenant_id: Some(scope.id()),
            actor_user_id: Some(actor),
            action,
            target: format!("user:{}", member.user_id),
            details: serde_json::json!({
                "member_email": member.email,
                "old_role": old.map(Role::as_str),
                "new_role": new.map(Role::as_str),
            }),
        },
    )
    .await;
}
