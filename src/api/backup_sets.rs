//! Backup sets: list, create, and one set with its items.

use leptos::prelude::*;

use crate::domain::backup_set::BackupSetList;
use crate::domain::{AppError, BackupSetDetail, BackupSetSummary};

/// The tenant's newest backup sets (a bounded number), newest first, and how many it holds.
#[server(prefix = "/api", endpoint = "backup-sets/list")]
pub async fn list_backup_sets(tenant: String) -> Result<BackupSetList, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::backup_sets;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        backup_sets::list(&state.db, &ctx.scope).await
    })
    .await
}

/// Creates a backup set. Bad input is a 422 naming the field, and nothing is written.
#[server(prefix = "/api", endpoint = "backup-sets/create")]
pub async fn create_backup_set(
    tenant: String,
    name: String,
    #[server(default)] description: String,
) -> Result<BackupSetSummary, AppError> {
    use crate::domain::{Capability, NewBackupSet};
    use crate::server::auth::in_tenant;
    use crate::server::backup_sets;
    in_tenant(
        &tenant,
        Capability::EditBackupSets,
        |ctx, state| async move {
            let input = NewBackupSet::parse(&name, &description)?;
            backup_sets::create(&state.db, &ctx.scope, Some(ctx.user_id), &input).await
        },
    )
    .await
}

/// One backup set of the tenant, with its items.
#[server(prefix = "/api", endpoint = "backup-sets/get")]
pub async fn get_backup_set(tenant: String, id: i64) -> Result<BackupSetDetail, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::backup_sets;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        backup_sets::get(&state.db, &ctx.scope, id).await
    })
    .await
}
