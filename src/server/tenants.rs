//! Resolving the tenant a request names. [`TenantScope`] is the only way to hold a tenant's
//! database id, and every query on tenant data takes one, so a query cannot forget the tenant.

use sqlx::Row;

use super::db::Db;
use crate::domain::{AppError, TenantExternalId, TenantSummary};

/// A tenant the current request may act in. Built only by [`resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantScope {
    id: i64,
    summary: TenantSummary,
}

impl TenantScope {
    /// The tenant's database id, for `WHERE tenant_id = $n`.
    pub fn id(&self) -> i64 {
        self.id
    }

    pub fn summary(&self) -> &TenantSummary {
        &self.summary
    }
}

/// Looks up the tenant named in a URL (its external GUID).
pub async fn resolve(db: &Db, external_id: &str) -> Result<TenantScope, AppError> {
    let external_id = TenantExternalId::parse(external_id)?;
    let row = sqlx::query("SELECT id, display_name FROM tenants WHERE external_id = $1")
        .bind(external_id.as_str())
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| AppError::NotFound("No tenant has this id.".into()))?;
    Ok(TenantScope {
        id: row.try_get("id")?,
        summary: TenantSummary {
            external_id: external_id.as_str().to_owned(),
            display_name: row.try_get("display_name")?,
        },
    })
}

/// Every tenant, by name (the start page until sign-in narrows it to memberships).
pub async fn list(db: &Db) -> Result<Vec<TenantSummary>, AppError> {
    let rows = sqlx::query("SELECT external_id, display_name FROM tenants ORDER BY display_name")
        .fetch_all(db.pool())
        .await?;
    rows.iter()
        .map(|row| {
            Ok(TenantSummary {
                external_id: row.try_get("external_id")?,
                display_name: row.try_get("display_name")?,
            })
        })
        .collect()
}
