//! Typed server-function calls for the versions tests (see `super`).

use tenantatlas::domain::versions::{
    InventoryPage, PolicyInfo, VersionDiff, VersionRow, VersionView,
};

use super::{Answer, Form, TestApp};

impl TestApp {
    /// `policies/inventory`: a page of the inventory, with `filters` (search, policy_type, page).
    pub async fn policy_inventory(
        &self,
        cookie: &str,
        tenant: &str,
        filters: &[(&str, &str)],
    ) -> Answer<InventoryPage> {
        let form = Form::tenant(tenant).fields(filters);
        self.answer(Some(cookie), "policies/inventory", &form).await
    }
}

super::tenant_calls! {
    /// `policies/get`: policy `id` of `tenant`, as the inventory last saw it.
    fn policy("policies/get", id: i64) -> PolicyInfo;
    /// `policies/versions`: the captured versions of policy `id`, newest first.
    fn policy_versions("policies/versions", id: i64) -> Vec<VersionRow>;
    /// `policies/version`: version `version` of policy `id`, read as settings and as raw JSON.
    fn policy_version("policies/version", id: i64, version: i64) -> VersionView;
    /// `policies/diff`: versions `from` (the older side) and `to` of policy `id` compared.
    fn policy_diff("policies/diff", id: i64, from: i64, to: i64) -> VersionDiff;
}
