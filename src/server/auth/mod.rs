//! Accounts, sessions and the one authorization point.
//!
//! Every page and server function that touches a tenant goes through one check (the statement
//! of `authorized_rows`): server functions by [`in_tenant`] (through [`authorize`]) or
//! [`in_tenant_joined`], pages and downloads by [`authorize_session`]. It resolves
//! the signed-in user and their membership in the tenant the request names, and returns a
//! [`TenantContext`]. Tenant data can only be queried with the [`TenantScope`] inside it.
//! Anonymous → 401; not a member (or no such tenant) → 403 with no data; a member whose role
//! lacks the [`Capability`] the request needs → 403 with the capability's label as the reason.

pub mod client_address;
pub mod guard;
pub mod password;
pub mod redirect;
pub mod session;
pub mod session_store;
pub mod sign_in;
pub mod throttle;
pub mod users;

use tower_sessions::Session;

pub use sign_in::sign_in;

use super::db::Db;
use super::state::{app_state, AppState};
use super::tenants::TenantScope;
use crate::domain::{AppError, Capability, Role, TenantExternalId, TenantSummary};

/// A signed-in member acting in one tenant.
#[derive(Debug, Clone)]
pub struct TenantContext {
    pub scope: TenantScope,
    pub user_id: i64,
    pub role: Role,
}

/// The body of a tenant's server function: `work` runs for a member of `tenant` who holds
/// `capability` (401 / 403 otherwise, from [`authorize`]), with the app's state (its database,
/// the workers' wake-up, the secret keys…); an error sets the answer's status
/// ([`crate::server::error::respond`]).
pub async fn in_tenant<T, Fut>(
    tenant: &str,
    capability: Capability,
    work: impl FnOnce(TenantContext, AppState) -> Fut,
) -> Result<T, AppError>
where
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    crate::server::error::respond(
        async {
            let ctx = authorize(tenant, capability).await?;
            work(ctx, app_state()?).await
        }
        .await,
    )
}

/// The session of the current server function call or page render.
pub async fn current_session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>().await.map_err(|error| {
        tracing::error!(%error, "no session layer around this request");
        AppError::Internal
    })
}

/// The signed-in user's id, or 401 (no session, or one that is over: see [`session`]).
pub async fn signed_in_user() -> Result<i64, AppError> {
    let state = app_state()?;
    session::signed_in_user(
        &current_session().await?,
        &state.db,
        &state.settings.sessions,
    )
    .await?
    .ok_or(AppError::Unauthorized)
}

/// The authorization point for server functions and pages (see the module docs). The session,
/// its user and their membership are read in one statement.
pub async fn authorize(tenant: &str, capability: Capability) -> Result<TenantContext, AppError> {
    authorize_session(&app_state()?, &current_session().await?, tenant, capability).await
}

/// [`authorize`] for a request's `session` outside a server function (the page guard and the
/// download routes, which have no Leptos context): anonymous → 401, then as [`authorize`].
pub async fn authorize_session(
    state: &AppState,
    session: &Session,
    tenant: &str,
    capability: Capability,
) -> Result<TenantContext, AppError> {
    let (ctx, _) = authorized_rows(state, session, tenant, capability, None).await?;
    Ok(ctx)
}

/// A read of the tenant joined into the authorization point's statement, so that a poll costs
/// one statement: `LEFT JOIN {table} ON ({on})` (the tenant is `t.id`, the placeholders start at
/// `$4` and are bound from `binds`), `columns` selected, the rows ordered by `order`, at most
/// `limit`.
/// The join meets rows only when the user is a member of the tenant, and its rows are returned
/// only when they hold the capability. `key` is a column of the joined table that is never NULL
/// in a row of it: a row without it is the authorization's alone. The fragments are the
/// program's own text, never input (values go in `binds`), and the columns must not take the
/// authorization's names (`user_id`, `generation`, `signed_in_at`, `touched_at`,
/// `current_generation`, `tenant_id`, `display_name`, `disconnected_at`, `role`).
pub struct JoinedRead {
    pub columns: String,
    pub table: &'static str,
    pub on: &'static str,
    pub key: &'static str,
    pub order: &'static str,
    pub limit: i64,
    pub binds: Vec<i64>,
}

/// [`in_tenant`] for a read that fits in the authorization point's statement ([`JoinedRead`]):
/// `work` gets the context and the joined rows, read with the session, the user and the
/// membership in one statement (what the polls use: the session layer's and the server
/// function's own work aside, a poll that finds nothing new costs one indexed read).
pub async fn in_tenant_joined<T, R, Fut>(
    tenant: &str,
    capability: Capability,
    read: JoinedRead,
    work: impl FnOnce(TenantContext, Vec<R>) -> Fut,
) -> Result<T, AppError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    crate::server::error::respond(
        async {
            let session = current_session().await?;
            let (ctx, rows) =
                authorized_rows(&app_state()?, &session, tenant, capability, Some(&read)).await?;
            let mut joined = Vec::with_capacity(rows.len());
            for row in &rows {
                if <JoinedKey as sqlx::FromRow<_>>::from_row(row)?
                    .joined_key
                    .is_some()
                {
                    joined.push(R::from_row(row)?);
                }
            }
            work(ctx, joined).await
        }
        .await,
    )
}

/// The authorization point's one statement: the session, its user, their membership in `tenant`
/// and, with `read`, the joined rows (see [`JoinedRead`]).
async fn authorized_rows(
    state: &AppState,
    session: &Session,
    tenant: &str,
    capability: Capability,
    read: Option<&JoinedRead>,
) -> Result<(TenantContext, Vec<sqlx::any::AnyRow>), AppError> {
    // A malformed id is answered like a tenant one is not a member of: nothing is revealed
    // (after the session is checked: a signed-out request is a 401 either way).
    let external_id = TenantExternalId::parse(tenant).ok();
    let external = external_id.as_ref().map(TenantExternalId::as_str);
    let db = &state.db;
    let (user_id, (membership, rows)) = session::confirmed(
        session,
        &state.settings.sessions,
        |session_key, now| async move {
            let (columns, join, order) = match read {
                Some(read) => (
                    format!(", {}, {} AS joined_key", read.columns, read.key),
                    // In parentheses: an OR in `on` cannot reach past the membership condition.
                    format!(
                        "LEFT JOIN {} ON ({}) AND m.role IS NOT NULL",
                        read.table, read.on
                    ),
                    format!("ORDER BY {} LIMIT {}", read.order, read.limit.max(1)),
                ),
                None => Default::default(),
            };
            let sql = format!(
                "SELECT {}, t.id AS tenant_id, t.display_name, t.disconnected_at, m.role{columns} \
                 {} \
                 LEFT JOIN tenants t ON t.external_id = $3 \
                 LEFT JOIN memberships m ON m.tenant_id = t.id AND m.user_id = u.id \
                 {join} WHERE {} {order}",
                session::SESSION_COLUMNS,
                session::FROM_SESSION,
                session::SESSION_IS,
            );
            let mut query = sqlx::query(&sql)
                .bind(session_key)
                .bind(now)
                .bind(external.unwrap_or_default());
            for bind in read.map(|read| read.binds.as_slice()).unwrap_or_default() {
                query = query.bind(*bind);
            }
            let rows = query.fetch_all(db.pool()).await?;
            let Some(first) = rows.first() else {
                return Ok(None);
            };
            let row = <SessionRow as sqlx::FromRow<_>>::from_row(first)?;
            let membership = match (external, row.tenant_id, row.display_name, row.role) {
                (Some(_), Some(id), Some(display_name), Some(role)) => Some(Membership {
                    id,
                    display_name,
                    disconnected_at: row.disconnected_at,
                    role,
                }),
                _ => None,
            };
            Ok(Some((row.session, (membership, rows))))
        },
    )
    .await?
    .ok_or(AppError::Unauthorized)?;
    let ctx = context(user_id, external_id, membership, capability)?;
    Ok((ctx, rows))
}

/// Whether a row of the authorization point's statement holds a joined row ([`JoinedRead`]'s
/// `key`, never NULL in one) or only the authorization.
#[derive(sqlx::FromRow)]
struct JoinedKey {
    joined_key: Option<i64>,
}

/// The session with its user, and the user's membership in the tenant the request names (all
/// `None` when they are not a member).
#[derive(sqlx::FromRow)]
struct SessionRow {
    #[sqlx(flatten)]
    session: session::SessionColumns,
    tenant_id: Option<i64>,
    display_name: Option<String>,
    disconnected_at: Option<i64>,
    role: Option<Role>,
}

/// A user's membership in a tenant, with what the context needs of the tenant.
struct Membership {
    id: i64,
    display_name: String,
    disconnected_at: Option<i64>,
    role: Role,
}

/// The signed-in user, when they hold the instance-wide admin flag (connecting tenants);
/// anonymous → 401, anyone else → 403.
pub async fn authorize_admin() -> Result<i64, AppError> {
    let db = &app_state()?.db;
    let user_id = signed_in_user().await?;
    if users::is_admin(db, user_id).await? {
        Ok(user_id)
    } else {
        Err(AppError::Forbidden(ADMIN_LABEL.into()))
    }
}

/// The reason a user without the admin flag is refused (and shown beside the action).
pub const ADMIN_LABEL: &str = crate::domain::capability::ADMIN_LABEL;

/// [`authorize`] for a known user, without a session: the service-level tests and benches,
/// which act as a member directly.
pub async fn authorize_user(
    db: &Db,
    user_id: i64,
    tenant: &str,
    capability: Capability,
) -> Result<TenantContext, AppError> {
    let Ok(external_id) = TenantExternalId::parse(tenant) else {
        return context(user_id, None, None, capability);
    };
    let membership: Option<(i64, String, Option<i64>, Role)> = sqlx::query_as(
        "SELECT t.id, t.display_name, t.disconnected_at, m.role FROM tenants t \
         JOIN memberships m ON m.tenant_id = t.id AND m.user_id = $2 \
         WHERE t.external_id = $1",
    )
    .bind(external_id.as_str())
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    let membership = membership.map(|(id, display_name, disconnected_at, role)| Membership {
        id,
        display_name,
        disconnected_at,
        role,
    });
    context(user_id, Some(external_id), membership, capability)
}

/// The context of `user_id` in the tenant `external_id`, or why not: no membership (or no
/// such tenant, or a malformed id) → 403 revealing nothing; a role without `capability` → 403
/// with its label; a disconnected tenant → 409 for what starts runs.
fn context(
    user_id: i64,
    external_id: Option<TenantExternalId>,
    membership: Option<Membership>,
    capability: Capability,
) -> Result<TenantContext, AppError> {
    let (Some(external_id), Some(membership)) = (external_id, membership) else {
        return Err(AppError::Forbidden(
            "You are not a member of this tenant.".into(),
        ));
    };
    let role = membership.role;
    if !role.can(capability) {
        return Err(AppError::Forbidden(capability.refusal(role)));
    }
    if membership.disconnected_at.is_some() && capability.starts_runs() {
        return Err(AppError::Conflict(
            "This tenant is disconnected: no run can start. Its owner can reconnect it on the \
             tenant's settings page."
                .into(),
        ));
    }
    let summary = TenantSummary {
        external_id: external_id.as_str().to_owned(),
        display_name: membership.display_name,
    };
    Ok(TenantContext {
        scope: TenantScope::new(membership.id, summary),
        user_id,
        role,
    })
}
