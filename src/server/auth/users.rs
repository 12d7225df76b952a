//! Accounts and memberships: the queries behind sign-in, the header and the admin CLI.

use sqlx::{AnyConnection, FromRow};

use crate::domain::{AppError, CurrentUser, Email, Role, TenantExternalId, Timestamp};
use crate::server::db::{is_unique_violation, Db};
use crate::server::tenants::invitations;

/// What sign-in needs to know about an account.
#[derive(FromRow)]
pub struct Credentials {
    #[sqlx(rename = "id")]
    pub user_id: i64,
    pub password_hash: Option<String>,
    /// The generation a new session is signed in under: a session signed in under another one is
    /// over (see [`super::session`]).
    pub session_generation: i64,
}

/// The account with this e-mail, if any.
pub async fn credentials(db: &Db, email: &Email) -> Result<Option<Credentials>, AppError> {
    Ok(
        sqlx::query_as("SELECT id, password_hash, session_generation FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(db.pool())
            .await?,
    )
}

/// SQL condition on the account `u`: its password is still the one chosen through an invitation
/// link. No address is verified, so such an account may belong to whoever held the link, not to
/// the address. It is read from the invitations, never from a mark the acceptance writes: an
/// invitation made the account when its `accepted_at` is the account's `created_at` (the
/// acceptance writes both from one clock reading; an existing account joining through its own
/// session does so later, and accepted invitations are never deleted). The admin choosing the
/// password since (`password_set_by_admin_at`) ends it. An older instance that does not know the
/// column leaves it NULL, which keeps the account counted as the link holder's: the safe side.
pub(crate) const PASSWORD_VIA_INVITATION: &str = "(u.password_set_by_admin_at IS NULL AND EXISTS \
     (SELECT 1 FROM invitations i WHERE i.accepted_by = u.id AND i.accepted_at = u.created_at))";

/// Whether the account's password is still the one whoever held an invitation link chose (see
/// [`PASSWORD_VIA_INVITATION`]): such an account is never given a tenant without its consent.
pub async fn password_via_invitation(db: &Db, user_id: i64) -> Result<bool, AppError> {
    let claimed: i64 = sqlx::query_scalar(&format!(
        "SELECT COUNT(*) FROM users u WHERE u.id = $1 AND {PASSWORD_VIA_INVITATION}"
    ))
    .bind(user_id)
    .fetch_one(db.pool())
    .await?;
    Ok(claimed > 0)
}

/// Sets an existing account's password and ends all of its sessions. Returns its id, or `None`
/// when no account has this e-mail. The admin chose the password, so the account no longer
/// counts as one an invitation link made (whoever held the link is signed out and locked out).
pub async fn set_password(
    db: &Db,
    email: &Email,
    password_hash: &str,
) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar(
        "UPDATE users SET password_hash = $1, session_generation = session_generation + 1, \
         password_set_by_admin_at = $2 WHERE email = $3 RETURNING id",
    )
    .bind(password_hash)
    .bind(Timestamp::now().millis())
    .bind(email.as_str())
    .fetch_optional(db.pool())
    .await?)
}

/// The signed-in user with their tenants (by tenant name); `None` if the account is gone.
pub async fn current_user(db: &Db, user_id: i64) -> Result<Option<CurrentUser>, AppError> {
    let Some((email, display_name, is_admin)) = sqlx::query_as::<_, (String, String, i64)>(
        &format!("SELECT email, display_name, {ADMIN_FLAG} FROM users WHERE id = $1"),
    )
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let memberships = sqlx::query_as(
        "SELECT t.external_id, t.display_name, m.role FROM memberships m \
         JOIN tenants t ON t.id = m.tenant_id WHERE m.user_id = $1 ORDER BY t.display_name",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    Ok(Some(CurrentUser {
        display_name,
        email,
        is_admin: is_admin != 0,
        memberships,
    }))
}

/// The admin flag as an integer: SQLite stores a BOOLEAN as an integer, which the `Any` driver
/// will not read as a bool, so both engines are asked for 0 or 1.
const ADMIN_FLAG: &str = "CAST(CASE WHEN is_admin THEN 1 ELSE 0 END AS BIGINT) AS is_admin";

/// Whether the user holds the instance-wide admin flag (may connect new tenants).
pub async fn is_admin(db: &Db, user_id: i64) -> Result<bool, AppError> {
    let flag: Option<i64> =
        sqlx::query_scalar(&format!("SELECT {ADMIN_FLAG} FROM users WHERE id = $1"))
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(flag.is_some_and(|flag| flag != 0))
}

/// Grants the instance-wide admin flag.
pub async fn make_admin(db: &Db, user_id: i64) -> Result<(), AppError> {
    sqlx::query("UPDATE users SET is_admin = TRUE WHERE id = $1")
        .bind(user_id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Creates an account, or sets the password and name of an existing one (ending all of its
/// sessions; the admin chose the password, as with [`set_password`]). Returns its id. The first
/// account of a database is an admin.
pub async fn upsert_user(
    db: &Db,
    email: &Email,
    display_name: &str,
    password_hash: &str,
) -> Result<i64, AppError> {
    if let Some(user_id) = reset_account(db, email, display_name, password_hash).await? {
        return Ok(user_id);
    }
    insert_user(db, email, display_name, password_hash).await
}

/// The second step of [`upsert_user`], once no account had the address: makes the account. One
/// made since (a concurrent `create-user`, or an invitation's link accepted meanwhile, whose
/// holder chose its password) gets the admin's password and name and its sessions end, as if it
/// had been there at the first step: else the admin's grant that follows would hand a tenant to
/// whoever held the link.
pub async fn insert_user(
    db: &Db,
    email: &Email,
    display_name: &str,
    password_hash: &str,
) -> Result<i64, AppError> {
    let now = Timestamp::now().millis();
    let inserted = sqlx::query_scalar(
        "INSERT INTO users (email, display_name, password_hash, created_at, is_admin, \
         password_set_by_admin_at) \
         SELECT $1, $2, $3, $4, NOT EXISTS (SELECT 1 FROM users), $4 RETURNING id",
    )
    .bind(email.as_str())
    .bind(display_name)
    .bind(password_hash)
    .bind(now)
    .fetch_one(db.pool())
    .await;
    match inserted {
        Ok(id) => Ok(id),
        Err(e) if is_unique_violation(&e) => reset_account(db, email, display_name, password_hash)
            .await?
            .ok_or(AppError::Internal),
        Err(e) => Err(e.into()),
    }
}

/// Gives the account with this e-mail the admin's name and password and ends its sessions.
/// Returns its id, or `None` when no account has the address.
async fn reset_account(
    db: &Db,
    email: &Email,
    display_name: &str,
    password_hash: &str,
) -> Result<Option<i64>, AppError> {
    Ok(sqlx::query_scalar(
        "UPDATE users SET display_name = $1, password_hash = $2, \
         session_generation = session_generation + 1, password_set_by_admin_at = $3 \
         WHERE email = $4 RETURNING id",
    )
    .bind(display_name)
    .bind(password_hash)
    .bind(Timestamp::now().millis())
    .bind(email.as_str())
    .fetch_optional(db.pool())
    .await?)
}

/// What [`grant`] did: the tenant's database id and the member's role before (`None` when the
/// account was not a member).
pub struct Granted {
    pub tenant_id: i64,
    pub old_role: Option<Role>,
    /// The member's pending invitations withdrawn because the new role may not invite (as the
    /// members page does): (id, e-mail).
    pub revoked: Vec<(i64, String)>,
}

/// Grants (or changes) a user's role in a tenant. A tenant always keeps an owner, as in the
/// members page: the tenant's row is locked first (a write on both engines, so concurrent changes
/// run one after the other), and demoting its last owner is a 409 that writes nothing.
pub async fn grant(
    db: &Db,
    user_id: i64,
    tenant_external_id: &str,
    role: Role,
) -> Result<Granted, AppError> {
    let mut tx = db.pool().begin().await?;
    let tenant_id = tenant_id(&mut tx, tenant_external_id).await?;
    sqlx::query("UPDATE tenants SET display_name = display_name WHERE id = $1")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    let old_role = refuse_last_owner(&mut tx, tenant_id, user_id, role).await?;
    sqlx::query(
        "INSERT INTO memberships (user_id, tenant_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id, tenant_id) DO UPDATE SET role = excluded.role",
    )
    .bind(user_id)
    .bind(tenant_id)
    .bind(role.as_str())
    .bind(Timestamp::now().millis())
    .execute(&mut *tx)
    .await?;
    // A member who may no longer invite loses the invitations they made that are still pending,
    // so a link they kept cannot bring anyone in.
    let revoked =
        invitations::withdraw_if_may_not_invite(&mut tx, tenant_id, user_id, Some(role)).await?;
    tx.commit().await?;
    Ok(Granted {
        tenant_id,
        old_role,
        revoked,
    })
}

/// Checks a [`grant`] of `role` to the account with this e-mail before anything else is written
/// (the admin CLI would otherwise reset the password of an account whose grant is then refused):
/// the tenant must exist and its last owner keeps the role. [`grant`] checks again under the lock.
pub async fn check_grant(
    db: &Db,
    email: &Email,
    tenant_external_id: &str,
    role: Role,
) -> Result<(), AppError> {
    let mut conn = db.pool().acquire().await?;
    let tenant_id = tenant_id(&mut conn, tenant_external_id).await?;
    if let Some(account) = credentials(db, email).await? {
        refuse_last_owner(&mut conn, tenant_id, account.user_id, role).await?;
    }
    Ok(())
}

/// The database id of the tenant with this external id, in any case (stored in lower case, as
/// [`TenantExternalId::parse`] writes it); an unknown or malformed one is a 404.
async fn tenant_id(conn: &mut AnyConnection, tenant_external_id: &str) -> Result<i64, AppError> {
    let tenant_external_id = TenantExternalId::parse(tenant_external_id)?;
    sqlx::query_scalar("SELECT id FROM tenants WHERE external_id = $1")
        .bind(tenant_external_id.as_str())
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| AppError::NotFound("No tenant has this id.".into()))
}

/// The member's current role; a 409 when giving them `role` would take the tenant's last owner
/// away. A tenant that has no owner yet (being set up) may get members of any role.
async fn refuse_last_owner(
    conn: &mut AnyConnection,
    tenant_id: i64,
    user_id: i64,
    role: Role,
) -> Result<Option<Role>, AppError> {
    let old: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant_id)
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    let old = old
        .map(|old| Role::parse(&old).ok_or(AppError::Internal))
        .transpose()?;
    if old == Some(Role::Owner) && role != Role::Owner {
        let other_owners: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships \
             WHERE tenant_id = $1 AND role = 'owner' AND user_id <> $2",
        )
        .bind(tenant_id)
        .bind(user_id)
        .fetch_one(&mut *conn)
        .await?;
        if other_owners == 0 {
            return Err(AppError::Conflict(
                "A tenant keeps at least one owner: make someone else owner first.".into(),
            ));
        }
    }
    Ok(old)
}
