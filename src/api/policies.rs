//! The policy picker: the tenant's inventory, filtered, sorted and paged on the server.

use leptos::prelude::*;

use crate::domain::policy_page::{MatchingPolicies, PolicyPage};
use crate::domain::AppError;

/// One page of the inventory for the picker of a backup set; `sort` is `name`, `-name`,
/// `type`, `platform` or `modified` (with `-` for descending), `page` is zero-based.
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
    use crate::domain::policy_page::PolicySort;
    use crate::domain::Capability;
    use crate::domain::PolicyType;
    use crate::server::auth::in_tenant;
    use crate::server::policies::{self, PolicyFilter};
    in_tenant(&tenant, Capability::View, |ctx, db| async move {
        let filter = PolicyFilter {
            search,
            policy_type: PolicyType::parse_filter("policy_type", &policy_type)?,
            platform,
        };
        policies::page(
            &db,
            &ctx.scope,
            backup_set_id,
            &filter,
            PolicySort::parse(&sort),
            page,
        )
        .await
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
    use crate::domain::Capability;
    use crate::domain::PolicyType;
    use crate::server::auth::in_tenant;
    use crate::server::policies::{self, PolicyFilter};
    in_tenant(&tenant, Capability::View, |ctx, db| async move {
        let filter = PolicyFilter {
            search,
            policy_type: PolicyType::parse_filter("policy_type", &policy_type)?,
            platform,
        };
        policies::matching_ids(&db, &ctx.scope, backup_set_id, &filter).await
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
    use crate::domain::Capability;
    use crate::domain::PolicyType;
    use crate::server::auth::in_tenant;
    use crate::server::policies::{self, PolicyFilter};
    in_tenant(&tenant, Capability::View, |ctx, db| async move {
        let filter = PolicyFilter {
            search,
            policy_type: PolicyType::parse_filter("policy_type", &policy_type)?,
            platform,
        };
        policies::addable_count(&db, &ctx.scope, backup_set_id, &filter).await
    })
    .await
}
