//! Typed server-function calls for the versions tests (see `super`).

use tenantatlas::domain::versions::{
    InventoryPage, PolicyInfo, VersionDiff, VersionRow, VersionView,
};

use super::{Answer, Form, TestApp};

impl TestApp {
    /// `policies/get`: policy `id` of `tenant`, as the inventory last saw it.
    pub async fn policy(&self, cookie: &str, tenant: &str, id: i64) -> Answer<PolicyInfo> {
        let form = Form::tenant(tenant).field("id", id);
        self.answer(Some(cookie), "policies/get", &form).await
    }

    /// `policies/versions`: the captured versions of policy `id`, newest first.
    pub async fn policy_versions(
        &self,
        cookie: &str,
        tenant: &str,
        id: i64,
    ) -> Answer<Vec<VersionRow>> {
        let form = Form::tenant(tenant).field("id", id);
        self.answer(Some(cookie), "policies/versions", &form).await
    }

    /// `policies/version`: version `version` of policy `id`, read as settings and as raw JSON.
    pub async fn policy_version(
        &self,
        cookie: &str,
        tenant: &str,
        id: i64,
        version: i64,
    ) -> Answer<VersionView> {
        let form = Form::tenant(tenant)
            .field("id", id)
            .field("version", version);
        self.answer(Some(cookie), "policies/version", &form).await
    }

    /// `policies/diff`: versions `from` (the older side) and `to` of policy `id` compared.
    pub async fn policy_diff(
        &self,
        cookie: &str,
        tenant: &str,
        id: i64,
        from: i64,
        to: i64,
    ) -> Answer<VersionDiff> {
        let form = Form::tenant(tenant)
            .field("id", id)
            .field("from", from)
            .field("to", to);
        self.answer(Some(cookie), "policies/diff", &form).await
    }

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
