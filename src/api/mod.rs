//! Server functions, one file per screen or capability. Each is thin: authorize (`server::auth`),
//! validate, call a service in `server/`, return a DTO from `domain/`. They live under `/api/`
//! with fixed endpoints so the URLs do not depend on where the code was built.

pub mod audit;
pub mod auth;
pub mod backup_sets;
pub mod captures;
pub mod connection;
pub mod invitations;
pub mod members;
pub mod notifications;
pub mod policies;
pub mod restore;
pub mod runs;
pub mod tenants;
pub mod versions;

use crate::domain::Capability;

/// What a server function requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (sign-in, sign-out, and the invitation an unguessable link names).
    Public,
    /// A signed-in user, in no particular tenant.
    SignedIn,
    /// A signed-in user with the instance-wide admin flag.
    Admin,
    /// A member of the tenant named by the `tenant` argument whose role holds the capability.
    Tenant(Capability),
}

/// Every server function's URL and the access it requires. The access-matrix test fails if a
/// registered server function is missing here, and checks each one answers every role as the
/// capability table says.
pub const ACCESS: &[(&str, Access)] = &[
    ("/api/auth/sign-in", Access::Public),
    ("/api/auth/sign-out", Access::Public),
    ("/api/auth/me", Access::SignedIn),
    // Whoever holds an invitation link (the token is the credential).
    ("/api/invitations/preview", Access::Public),
    ("/api/invitations/accept", Access::Public),
    ("/api/backup-sets/list", Access::Tenant(Capability::View)),
    ("/api/backup-sets/get", Access::Tenant(Capability::View)),
    (
        "/api/backup-sets/create",
        Access::Tenant(Capability::EditBackupSets),
    ),
    ("/api/runs/list", Access::Tenant(Capability::View)),
    (
        "/api/runs/add-policies",
        Access::Tenant(Capability::StartRuns),
    ),
    ("/api/runs/cancel", Access::Tenant(Capability::CancelRuns)),
    (
        "/api/runs/retry-failed",
        Access::Tenant(Capability::StartRuns),
    ),
    ("/api/runs/get", Access::Tenant(Capability::View)),
    ("/api/runs/version", Access::Tenant(Capability::View)),
    ("/api/runs/for-backup-set", Access::Tenant(Capability::View)),
    (
        "/api/runs/for-backup-set/version",
        Access::Tenant(Capability::View),
    ),
    (
        "/api/runs/sync-inventory",
        Access::Tenant(Capability::StartRuns),
    ),
    (
        "/api/runs/capture-policy",
        Access::Tenant(Capability::StartRuns),
    ),
    (
        "/api/runs/check-drift",
        Access::Tenant(Capability::StartRuns),
    ),
    ("/api/runs/activity", Access::Tenant(Capability::View)),
    ("/api/restore/source", Access::Tenant(Capability::View)),
    ("/api/restore/preview", Access::Tenant(Capability::View)),
    (
        "/api/runs/restore-preview",
        Access::Tenant(Capability::Restore),
    ),
    (
        "/api/runs/restore-execute",
        Access::Tenant(Capability::Restore),
    ),
    ("/api/policies/list", Access::Tenant(Capability::View)),
    (
        "/api/policies/matching-ids",
        Access::Tenant(Capability::View),
    ),
    ("/api/policies/get", Access::Tenant(Capability::View)),
    ("/api/policies/versions", Access::Tenant(Capability::View)),
    ("/api/policies/version", Access::Tenant(Capability::View)),
    ("/api/policies/diff", Access::Tenant(Capability::View)),
    ("/api/policies/inventory", Access::Tenant(Capability::View)),
    ("/api/notifications/list", Access::Tenant(Capability::View)),
    (
        "/api/notifications/mark-read",
        Access::Tenant(Capability::View),
    ),
    (
        "/api/notifications/mark-all-read",
        Access::Tenant(Capability::View),
    ),
    ("/api/tenants/connect", Access::Admin),
    ("/api/tenants/can-connect", Access::Admin),
    ("/api/tenants/status", Access::Tenant(Capability::View)),
    ("/api/audit/list", Access::Tenant(Capability::ReadAuditLog)),
    (
        "/api/members/list",
        Access::Tenant(Capability::ReadAuditLog),
    ),
    (
        "/api/members/add",
        Access::Tenant(Capability::ManageMembers),
    ),
    (
        "/api/members/change-role",
        Access::Tenant(Capability::ManageMembers),
    ),
    (
        "/api/members/remove",
        Access::Tenant(Capability::ManageMembers),
    ),
    (
        "/api/invitations/list",
        Access::Tenant(Capability::ReadAuditLog),
    ),
    (
        "/api/invitations/revoke",
        Access::Tenant(Capability::ManageMembers),
    ),
    (
        "/api/tenants/settings",
        Access::Tenant(Capability::ManageMembers),
    ),
    (
        "/api/tenants/replace-secret",
        Access::Tenant(Capability::ManageMembers),
    ),
    (
        "/api/tenants/connection-check",
        Access::Tenant(Capability::View),
    ),
    (
        "/api/tenants/check-connection",
        Access::Tenant(Capability::CheckConnection),
    ),
    // Disconnect before reconnect: the access matrix calls them in this order, and leaves the
    // tenant connected for the next caller.
    (
        "/api/tenants/disconnect",
        Access::Tenant(Capability::ManageMembers),
    ),
    (
        "/api/tenants/reconnect",
        Access::Tenant(Capability::ManageMembers),
    ),
];
