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
// Short names for the table below.
use crate::domain::Capability as Can;
use Access::{Admin, Public, SignedIn, Tenant};

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
    ("/api/auth/sign-in", Public),
    ("/api/auth/sign-out", Public),
    ("/api/auth/me", SignedIn),
    // Whoever holds an invitation link (the token is the credential).
    ("/api/invitations/preview", Public),
    ("/api/invitations/accept", Public),
    ("/api/backup-sets/list", Tenant(Can::View)),
    ("/api/backup-sets/get", Tenant(Can::View)),
    ("/api/backup-sets/create", Tenant(Can::EditBackupSets)),
    ("/api/runs/list", Tenant(Can::View)),
    ("/api/runs/add-policies", Tenant(Can::StartRuns)),
    ("/api/runs/cancel", Tenant(Can::CancelRuns)),
    ("/api/runs/retry-failed", Tenant(Can::StartRuns)),
    ("/api/runs/get", Tenant(Can::View)),
    ("/api/runs/version", Tenant(Can::View)),
    ("/api/runs/for-backup-set", Tenant(Can::View)),
    ("/api/runs/for-backup-set/version", Tenant(Can::View)),
    ("/api/runs/sync-inventory", Tenant(Can::StartRuns)),
    ("/api/runs/capture-policy", Tenant(Can::StartRuns)),
    ("/api/runs/check-drift", Tenant(Can::StartRuns)),
    ("/api/runs/activity", Tenant(Can::View)),
    ("/api/restore/source", Tenant(Can::View)),
    ("/api/restore/preview", Tenant(Can::View)),
    ("/api/runs/restore-preview", Tenant(Can::Restore)),
    ("/api/runs/restore-execute", Tenant(Can::Restore)),
    ("/api/policies/list", Tenant(Can::View)),
    ("/api/policies/matching-ids", Tenant(Can::View)),
    ("/api/policies/get", Tenant(Can::View)),
    ("/api/policies/versions", Tenant(Can::View)),
    ("/api/policies/version", Tenant(Can::View)),
    ("/api/policies/diff", Tenant(Can::View)),
    ("/api/policies/inventory", Tenant(Can::View)),
    ("/api/notifications/list", Tenant(Can::View)),
    ("/api/notifications/mark-read", Tenant(Can::View)),
    ("/api/notifications/mark-all-read", Tenant(Can::View)),
    ("/api/tenants/connect", Admin),
    ("/api/tenants/can-connect", Admin),
    ("/api/tenants/status", Tenant(Can::View)),
    ("/api/audit/list", Tenant(Can::ReadAuditLog)),
    ("/api/members/list", Tenant(Can::ReadAuditLog)),
    ("/api/members/add", Tenant(Can::ManageMembers)),
    ("/api/members/change-role", Tenant(Can::ManageMembers)),
    ("/api/members/remove", Tenant(Can::ManageMembers)),
    ("/api/invitations/list", Tenant(Can::ReadAuditLog)),
    ("/api/invitations/revoke", Tenant(Can::ManageMembers)),
    ("/api/tenants/settings", Tenant(Can::ManageMembers)),
    ("/api/tenants/replace-secret", Tenant(Can::ManageMembers)),
    ("/api/tenants/connection-check", Tenant(Can::View)),
    (
        "/api/tenants/check-connection",
        Tenant(Can::CheckConnection),
    ),
    // Disconnect before reconnect: the access matrix calls them in this order, and leaves the
    // tenant connected for the next caller.
    ("/api/tenants/disconnect", Tenant(Can::ManageMembers)),
    ("/api/tenants/reconnect", Tenant(Can::ManageMembers)),
];
