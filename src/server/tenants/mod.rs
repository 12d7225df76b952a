//! Tenants: connecting one (`connection`), checking its connection (`connection_check`), the
//! key ring that seals client secrets (`keyring`), members and invitations, and the admin
//! commands (`cli`).
//!
//! The tenant a request acts in. [`TenantScope`] is the only way to hold a tenant's database id,
//! every query on tenant data takes one, and only the authorization point (`auth::authorize`)
//! builds one, so a query can neither forget the tenant nor reach a tenant the user is not in.

pub mod cli;
pub mod connection;
pub mod connection_check;
pub mod invitations;
pub mod keyring;
pub mod members;

use crate::domain::TenantSummary;

/// A tenant the current request may act in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    id: i64,
    summary: TenantSummary,
}

impl TenantScope {
    /// Only the authorization point may call this.
    pub(in crate::server) fn new(id: i64, summary: TenantSummary) -> Self {
        Self { id, summary }
    }

    /// The tenant's database id, for `WHERE tenant_id = $n`.
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn summary(&self) -> &TenantSummary {
        &self.summary
    }
}
