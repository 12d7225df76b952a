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

/// Every server function's URL (below `/api/`) by the access it requires. The access-matrix
/// test fails if a registered server function is missing here, and checks each one answers
/// every role as the capability table says; it calls them in this order.
pub const ACCESS: &[(Access, &[&str])] = &[
    // Anyone; the invitation functions serve whoever holds a link (the token is the credential).
    (
        Public,
        &[
            "auth/sign-in",
            "auth/sign-out",
            "invitations/preview",
            "invitations/accept",
        ],
    ),
    (SignedIn, &["auth/me"]),
    (Admin, &["tenants/connect", "tenants/can-connect"]),
    (Tenant(Can::View), &["backup-sets/list", "backup-sets/get"]),
    (
        Tenant(Can::View),
        &[
            "runs/list",
            "runs/get",
            "runs/version",
            "runs/for-backup-set",
            "runs/for-backup-set/version",
            "runs/activity",
        ],
    ),
    (Tenant(Can::View), &["restore/source", "restore/preview"]),
    (
        Tenant(Can::View),
        &[
            "policies/list",
            "policies/matching-ids",
            "policies/addable-count",
            "policies/get",
            "policies/versions",
            "policies/version",
            "policies/diff",
            "policies/inventory",
        ],
    ),
    (
        Tenant(Can::View),
        &[
            "notifications/list",
            "notifications/mark-read",
            "notifications/mark-all-read",
        ],
    ),
    (
        Tenant(Can::View),
        &["tenants/status", "tenants/connection-check"],
    ),
    (Tenant(Can::EditBackupSets), &["backup-sets/create"]),
    (
        Tenant(Can::StartRuns),
        &[
            "runs/add-policies",
            "runs/retry-failed",
            "runs/sync-inventory",
            "runs/capture-policy",
            "runs/check-drift",
        ],
    ),
    (Tenant(Can::CancelRuns), &["runs/cancel"]),
    (
        Tenant(Can::Restore),
        &["runs/restore-preview", "runs/restore-execute"],
    ),
    (Tenant(Can::CheckConnection), &["tenants/check-connection"]),
    (
        Tenant(Can::ReadAuditLog),
        &["audit/list", "members/list", "invitations/list"],
    ),
    (
        Tenant(Can::ManageMembers),
        &[
            "members/add",
            "members/change-role",
            "members/remove",
            "invitations/revoke",
            "tenants/settings",
            "tenants/replace-secret",
            // Disconnect before reconnect: the tenant stays connected for the next caller.
            "tenants/disconnect",
            "tenants/reconnect",
        ],
    ),
];

/// [`ACCESS`] as (full path, access) pairs, in its order.
pub fn access_table() -> impl Iterator<Item = (String, Access)> {
    ACCESS
        .iter()
        .flat_map(|(access, endpoints)| endpoints.iter().map(|e| (format!("/api/{e}"), *access)))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every server function file's name and text.
    fn sources() -> Vec<(String, String)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "rs"))
            .map(|path| {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn tenant_server_functions_authorize_only_through_in_tenant() {
        let sources = sources();
        assert!(sources.len() > 10, "the scan reads the server functions");
        // Built here so that this file's own text does not match.
        let by_hand = ["authorize", "("].concat();
        let offending: Vec<_> = sources
            .iter()
            .filter(|(_, text)| text.contains(&by_hand))
            .map(|(name, _)| name)
            .collect();
        assert!(
            offending.is_empty(),
            "a tenant's server function goes through server::auth::in_tenant (or \
             in_tenant_joined), which authorizes and sets the answer's status, not through \
             authorize by hand: {offending:?}"
        );
    }

    #[test]
    fn the_sign_in_server_function_leaves_throttle_and_password_check_to_the_server() {
        let sources = sources();
        let (_, auth) = sources.iter().find(|(name, _)| name == "auth.rs").unwrap();
        for part in [
            "sign_in_throttle",
            "password_checker",
            "auth.sign_in_failed",
        ] {
            assert!(
                !auth.contains(part),
                "the sign-in's {part} belongs in server::auth::sign_in"
            );
        }
    }
}
