//! Server functions, one file per screen or capability. Each is thin: authorize (`server::auth`),
//! validate, call a service in `server/`, return a DTO from `domain/`. They live under `/api/`
//! with fixed endpoints so the URLs do not depend on where the code was built.

pub mod auth;
pub mod backup_sets;
pub mod notifications;
pub mod policies;
pub mod runs;

/// What a server function requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in, sign-out).
    Public,
    /// A signed-in user, in no particular tenant.
    SignedIn,
    /// A member of the tenant named by the `tenant` argument.
    TenantView,
    /// A member whose role may start or change work (not readonly).
    TenantChange,
}

/// Every server function's URL and the access it requires. The access-matrix test fails if a
/// registered server function is missing here, and checks each one behaves as listed.
pub const ACCESS: &[(&str, Access)] = &[
    ("/api/auth/sign-in", Access::Public),
    ("/api/auth/sign-out", Access::Public),
    ("/api/auth/me", Access::SignedIn),
    ("/api/backup-sets/list", Access::TenantView),
    ("/api/backup-sets/get", Access::TenantView),
    ("/api/backup-sets/create", Access::TenantChange),
    ("/api/runs/list", Access::TenantView),
    ("/api/runs/add-policies", Access::TenantChange),
    ("/api/runs/get", Access::TenantView),
    ("/api/runs/for-backup-set", Access::TenantView),
    ("/api/policies/list", Access::TenantView),
    ("/api/policies/matching-ids", Access::TenantView),
    ("/api/notifications/list", Access::TenantView),
    ("/api/notifications/mark-read", Access::TenantView),
    ("/api/notifications/mark-all-read", Access::TenantView),
];
