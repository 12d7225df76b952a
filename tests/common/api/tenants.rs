//! Typed server-function calls for the tenants tests (see `super`).

use tenantatlas::domain::connection::ConnectionStatus;
use tenantatlas::domain::{SubmittedRun, TenantSettings, TenantSummary};

use super::super::TestApp;
use super::{Answer, Form};

impl TestApp {
    /// `tenants/connect`: "Connect a tenant" with this app registration and client secret.
    pub async fn connect_tenant(
        &self,
        cookie: &str,
        tenant: &str,
        name: &str,
        client_id: &str,
        secret: &str,
    ) -> Answer<TenantSummary> {
        let form = Form::tenant(tenant)
            .field("name", name)
            .field("client_id", client_id)
            .field("secret", secret);
        self.answer(Some(cookie), "tenants/connect", &form).await
    }

    /// `tenants/settings`: the tenant's connection as its owner's settings page reads it.
    pub async fn tenant_settings(&self, cookie: &str, tenant: &str) -> Answer<TenantSettings> {
        self.answer(Some(cookie), "tenants/settings", &Form::tenant(tenant))
            .await
    }

    /// `tenants/replace-secret`: a new client secret that expires on `expires_on` (`YYYY-MM-DD`).
    pub async fn replace_secret(
        &self,
        cookie: &str,
        tenant: &str,
        secret: &str,
        expires_on: &str,
    ) -> Answer<()> {
        let form = Form::tenant(tenant)
            .field("secret", secret)
            .field("expires_on", expires_on);
        self.answer(Some(cookie), "tenants/replace-secret", &form)
            .await
    }

    /// `tenants/disconnect`: disconnects the tenant (its data stays).
    pub async fn disconnect_tenant(&self, cookie: &str, tenant: &str) -> Answer<()> {
        self.answer(Some(cookie), "tenants/disconnect", &Form::tenant(tenant))
            .await
    }

    /// `tenants/reconnect`: reconnects a disconnected tenant.
    pub async fn reconnect_tenant(&self, cookie: &str, tenant: &str) -> Answer<()> {
        self.answer(Some(cookie), "tenants/reconnect", &Form::tenant(tenant))
            .await
    }

    /// `tenants/connection-check`: the tenant's last connection check and the one running now.
    pub async fn connection_status(&self, cookie: &str, tenant: &str) -> Answer<ConnectionStatus> {
        self.answer(
            Some(cookie),
            "tenants/connection-check",
            &Form::tenant(tenant),
        )
        .await
    }

    /// `tenants/check-connection`: "Check connection" (queues a check, or returns the one queued).
    pub async fn check_connection(&self, cookie: &str, tenant: &str) -> Answer<SubmittedRun> {
        self.answer(
            Some(cookie),
            "tenants/check-connection",
            &Form::tenant(tenant),
        )
        .await
    }
}
