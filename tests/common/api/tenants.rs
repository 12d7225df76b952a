//! Typed server-function calls for the tenants tests (see `super`).

use tenantatlas::domain::connection::ConnectionStatus;
use tenantatlas::domain::{SubmittedRun, TenantSettings, TenantSummary};

use super::super::TestApp;
use super::{Answer, Form};

super::tenant_calls! {
    /// `tenants/connect`: "Connect a tenant" with this app registration and client secret.
    fn connect_tenant("tenants/connect", name: &str, client_id: &str, secret: &str) -> TenantSummary;
    /// `tenants/settings`: the tenant's connection as its owner's settings page reads it.
    fn tenant_settings("tenants/settings") -> TenantSettings;
    /// `tenants/replace-secret`: a new client secret that expires on `expires_on` (`YYYY-MM-DD`).
    fn replace_secret("tenants/replace-secret", secret: &str, expires_on: &str) -> ();
    /// `tenants/disconnect`: disconnects the tenant (its data stays).
    fn disconnect_tenant("tenants/disconnect") -> ();
    /// `tenants/reconnect`: reconnects a disconnected tenant.
    fn reconnect_tenant("tenants/reconnect") -> ();
    /// `tenants/connection-check`: the tenant's last connection check and the one running now.
    fn connection_status("tenants/connection-check") -> ConnectionStatus;
    /// `tenants/check-connection`: "Check connection" (queues a check, or returns the one queued).
    fn check_connection("tenants/check-connection") -> SubmittedRun;
}
