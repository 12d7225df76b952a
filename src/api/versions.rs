//! A policy, its captured versions, one version, two versions compared, and the inventory.

use leptos::prelude::*;

use crate::domain::versions::{InventoryPage, PolicyInfo, VersionDiff, VersionRow, VersionView};
use crate::domain::AppError;

/// One policy of the tenant.
#[server(prefix = "/api", endpoint = "policies/get")]
pub async fn get_policy(tenant: String, id: i64) -> Result<PolicyInfo, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::versions;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        versions::policy(&state.db, &ctx.scope, id).await
    })
    .await
}

/// The policy's captured versions, newest first.
#[server(prefix = "/api", endpoint = "policies/versions")]
pub async fn policy_versions(tenant: String, id: i64) -> Result<Vec<VersionRow>, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::versions;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        versions::versions(&state.db, &ctx.scope, id).await
    })
    .await
}

/// One version of the policy, read as settings and as raw JSON.
#[server(prefix = "/api", endpoint = "policies/version")]
pub async fn policy_version(
    tenant: String,
    id: i64,
    version: i64,
) -> Result<VersionView, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::versions;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        versions::version(&state.db, &ctx.scope, id, version).await
    })
    .await
}

/// Two versions of the policy compared, `from` the older side.
#[server(prefix = "/api", endpoint = "policies/diff")]
pub async fn policy_diff(
    tenant: String,
    id: i64,
    from: i64,
    to: i64,
) -> Result<VersionDiff, AppError> {
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::versions;
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        versions::diff(&state.db, &ctx.scope, id, from, to).await
    })
    .await
}

/// One page of the tenant's inventory, filtered by a search text, a policy type and a platform,
/// and sorted as the picker sorts (`name`, `-name`, `type`, `platform` or `modified`, `-` for
/// descending); an unknown type, platform or sort is refused with the ones there are.
#[server(prefix = "/api", endpoint = "policies/inventory")]
pub async fn policy_inventory(
    tenant: String,
    #[server(default)] search: String,
    #[server(default)] policy_type: String,
    #[server(default)] platform: String,
    #[server(default)] sort: String,
    #[server(default)] page: i64,
) -> Result<InventoryPage, AppError> {
    use crate::domain::Capability;
    use crate::domain::PolicyType;
    use crate::server::auth::in_tenant;
    use crate::server::policies::parse_search;
    use crate::server::versions::{self, InventoryFilter};
    in_tenant(&tenant, Capability::View, |ctx, state| async move {
        let filter = InventoryFilter {
            search: parse_search(&search)?,
            policy_type: PolicyType::parse_filter("policy_type", &policy_type)?,
            platform,
        };
        let sort = versions::parse_sort(&sort)?;
        versions::inventory(&state.db, &ctx.scope, &filter, sort, page).await
    })
    .await
}
