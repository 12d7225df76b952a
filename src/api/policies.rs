//! The policy picker: the tenant's inventory, filtered, sorted and paged on the server.

use leptos::prelude::*;

use crate::domain::policy_page::{MatchingPolicies, PolicyPage};
use crate::domain::AppError;

/// Runs `work` for a member of `tenant` (any member may read the inventory) with the picker's
/// filter read from its form fields (search, type, platform): what every picker function
/// starts with.
#[cfg(feature = "ssr")]
async fn with_filter<T, Fut>(
    tenant: &str,
    (search, policy_type, platform): (String, String, String),
    work: impl FnOnce(
        crate::server::auth::TenantContext,
        crate::server::db::Db,
        crate::server::policies::PolicyFilter,
    ) -> Fut,
) -> Result<T, AppError>
where
    Fut: std::future::Future<Output = Result<T, AppError>>,
{
    use crate::domain::Capability;
    use crate::server::auth::in_tenant;
    use crate::server::policies::PolicyFilter;
    in_tenant(tenant, Capability::View, |ctx, state| async move {
        let filter = PolicyFilter::parse(&search, &policy_type, platform)?;
        work(ctx, state.db.clone(), filter).await
    })
    .await
}

/// One page of the inventory for the picker of a backup set; `sort` is `name`, `-name`,
/// `type`, `platform` or `modified` (with `-` for descending; empty sorts by name, anything
/// else is refused as the inventory refuses it), `page` is zero-based. A search with a control
/// character, an unknown type or a platform none of the tenant's policies is on is refused.
#[server(prefix = "/api", endpoint = "policies/list")]
pub async fn list_policies(
    tenant: String,
    backup_set_id: i64,
    #[server(default)] search: String,
    #[server(default)] policy_type: String,
    #[server(default)] platform: String,
    #[server(default)] sort: String,
    #[server(default)] page: i64,
) -> Result<PolicyPage, AppError> {
    let fields = (search, policy_type, platform);
    with_filter(&tenant, fields, |ctx, db, filter| async move {
        let sort = crate::server::versions::parse_sort(&sort)?;
        crate::server::policies::page(&db, &ctx.scope, backup_set_id, &filter, sort, page).await
    })
    .await
}

/// "Select all N matching": the ids of every policy matching the filter that is not yet in
/// the backup set, resolved on the server (capped at one run's maximum).
#[server(prefix = "/api", endpoint = "policies/matching-ids")]
pub async fn matching_policy_ids(
    tenant: String,
    backup_set_id: i64,
    #[server(default)] search: String,
    #[server(default)] policy_type: String,
    #[server(default)] platform: String,
) -> Result<MatchingPolicies, AppError> {
    let fields = (search, policy_type, platform);
    with_filter(&tenant, fields, |ctx, db, filter| async move {
        crate::server::policies::matching_ids(&db, &ctx.scope, backup_set_id, &filter).await
    })
    .await
}

/// The number of policies matching the filter that are not yet in the backup set: what "Select
/// all N matching" selects, so the button says the number it will select.
#[server(prefix = "/api", endpoint = "policies/addable-count")]
pub async fn addable_policy_count(
    tenant: String,
    backup_set_id: i64,
    #[server(default)] search: String,
    #[server(default)] policy_type: String,
    #[server(default)] platform: String,
) -> Result<i64, AppError> {
    let fields = (search, policy_type, platform);
    with_filter(&tenant, fields, |ctx, db, filter| async move {
        crate::server::policies::addable_count(&db, &ctx.scope, backup_set_id, &filter).await
    })
    .await
}
