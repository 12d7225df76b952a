//! The tenant's audit log as its page shows it.

use serde::{Deserialize, Serialize};

use super::Timestamp;

/// One audited event of a tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct AuditEntry {
    pub id: i64,
    pub action: String,
    /// The actor's e-mail; `None` for the CLI or a deleted account.
    #[cfg_attr(feature = "ssr", sqlx(rename = "email"))]
    pub actor: Option<String>,
    pub target: String,
    /// The small sanitized JSON object stored with the event.
    pub details: String,
    pub created_at: Timestamp,
}

/// One page of the audit log, newest first; `next_before` pages back (the `before` of the
/// next page), `None` on the last page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_before: Option<i64>,
}

/// The actions the app records in a tenant's log, offered as suggestions by the audit page's
/// action filter (the filter takes any action name).
pub const KNOWN_ACTIONS: &[&str] = &[
    "backup_set.export",
    "invitation.accept",
    "invitation.create",
    "invitation.revoke",
    "member.add",
    "member.change_role",
    "member.remove",
    "membership.grant",
    "run.cancel",
    "run.retry",
    "run.reuse",
    "run.start",
    "tenant.connect",
    "tenant.disconnect",
    "tenant.reconnect",
    "tenant.replace_secret",
];
