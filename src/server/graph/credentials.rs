//! A tenant's Graph credentials: the app's client id and a *reference* to its secret, both on the
//! tenant row. The database never holds a secret in clear: `env:NAME` is resolved from the
//! environment, and `encrypted` opens the ciphertext on the row with the key ring
//! ([`crate::server::tenants::keyring`]), each time credentials are loaded. The secret only
//! lives in a [`ClientSecret`] (which never prints itself).

use std::sync::Arc;

use sqlx::FromRow;

use super::token::{ClientSecret, TenantCredentials};
use super::GraphClient;
use crate::domain::TenantExternalId;
use crate::server::db::Db;
use crate::server::tenants::keyring::{KeyError, KeyRing, Sealed};

/// The `graph_secret_ref` of the demo tenants. It resolves only in a process that runs the demo
/// simulator, which draws a fresh random secret at start, so no usable secret is ever written
/// down and a copied demo database grants nothing.
pub const DEMO_SECRET_REF: &str = "demo:simulator";

/// The `graph_secret_ref` of a tenant whose secret is stored encrypted on its own row.
pub const ENCRYPTED_SECRET_REF: &str = "encrypted";

/// Why a tenant's credentials could not be loaded. No variant carries the secret.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("no tenant has this id")]
    UnknownTenant,
    #[error("the tenant has no Graph app configured (client id and secret reference)")]
    NotConfigured,
    #[error("the secret reference must look like env:NAME")]
    UnsupportedReference,
    #[error("the environment variable {0} named by the secret reference is not set or empty")]
    MissingEnvironment(String),
    #[error("a demo tenant's secret only exists while the demo simulator runs (serve --demo or seed-demo)")]
    DemoOnly,
    #[error("the tenant is disconnected: its owner can reconnect it on its settings page")]
    Disconnected,
    #[error("the stored client secret cannot be used: {0}")]
    Key(#[from] KeyError),
    #[error("the tenant id is not a GUID")]
    InvalidTenantId,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Turns secret references into secrets: `env:NAME` reads the environment variable NAME;
/// `demo:simulator` resolves only when built with the demo simulator's secret.
#[derive(Clone, Default)]
pub struct SecretResolver {
    demo: Option<ClientSecret>,
    keys: Option<Arc<KeyRing>>,
}

impl std::fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretResolver")
            .field("demo", &self.demo.is_some())
            .field("keys", &self.keys)
            .finish()
    }
}

impl SecretResolver {
    /// A resolver that also knows the running demo simulator's secret.
    pub fn with_demo_secret(secret: ClientSecret) -> Self {
        Self {
            demo: Some(secret),
            keys: None,
        }
    }

    /// The same resolver, opening encrypted secrets with `keys`.
    pub fn with_keys(mut self, keys: Option<Arc<KeyRing>>) -> Self {
        self.keys = keys;
        self
    }

    /// Opens a secret sealed on the tenant row `tenant_id`.
    pub fn open(&self, tenant_id: i64, sealed: &Sealed) -> Result<ClientSecret, CredentialsError> {
        let keys = self.keys.as_ref().ok_or(KeyError::NotConfigured)?;
        Ok(keys.open(tenant_id, sealed)?)
    }

    /// The secret `reference` points to.
    pub fn resolve(&self, reference: &str) -> Result<ClientSecret, CredentialsError> {
        self.resolve_with(reference, |name| std::env::var(name).ok())
    }

    fn resolve_with(
        &self,
        reference: &str,
        lookup: impl FnOnce(&str) -> Option<String>,
    ) -> Result<ClientSecret, CredentialsError> {
        let reference = reference.trim();
        if reference == DEMO_SECRET_REF {
            return self.demo.clone().ok_or(CredentialsError::DemoOnly);
        }
        let name = reference
            .strip_prefix("env:")
            .filter(|name| !name.is_empty())
            .ok_or(CredentialsError::UnsupportedReference)?;
        lookup(name)
            .filter(|value| !value.is_empty())
            .map(ClientSecret::new)
            .ok_or_else(|| CredentialsError::MissingEnvironment(name.to_owned()))
    }
}

/// What talking to Graph for any tenant takes: the process's one client (shared tokens and
/// limiters) and the resolver for the tenants' secret references.
#[derive(Clone, Debug)]
pub struct GraphAccess {
    pub client: GraphClient,
    pub secrets: SecretResolver,
}

impl GraphAccess {
    /// Loads the credentials of the tenant with database id `tenant_id`.
    pub async fn credentials(
        &self,
        db: &Db,
        tenant_id: i64,
    ) -> Result<TenantCredentials, CredentialsError> {
        load_credentials(db, tenant_id, &self.secrets).await
    }
}

/// The tenant row's Graph columns.
#[derive(FromRow)]
struct CredentialsRow {
    external_id: String,
    graph_client_id: Option<String>,
    graph_secret_ref: Option<String>,
    graph_secret_ciphertext: Option<String>,
    graph_secret_key_id: Option<String>,
    disconnected_at: Option<i64>,
}

/// Reads the tenant's client id and secret reference and resolves the secret.
pub async fn load_credentials(
    db: &Db,
    tenant_id: i64,
    secrets: &SecretResolver,
) -> Result<TenantCredentials, CredentialsError> {
    let row: CredentialsRow = sqlx::query_as(
        "SELECT external_id, graph_client_id, graph_secret_ref, graph_secret_ciphertext, \
         graph_secret_key_id, disconnected_at FROM tenants WHERE id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(db.pool())
    .await?
    .ok_or(CredentialsError::UnknownTenant)?;
    if row.disconnected_at.is_some() {
        return Err(CredentialsError::Disconnected);
    }
    let (Some(client_id), Some(secret_ref)) = (
        row.graph_client_id.filter(|id| !id.trim().is_empty()),
        row.graph_secret_ref.filter(|r| !r.trim().is_empty()),
    ) else {
        return Err(CredentialsError::NotConfigured);
    };
    Ok(TenantCredentials {
        tenant_id: TenantExternalId::parse(&row.external_id)
            .map_err(|_| CredentialsError::InvalidTenantId)?,
        client_id: client_id.trim().to_owned(),
        client_secret: if secret_ref.trim() == ENCRYPTED_SECRET_REF {
            let sealed = Sealed {
                key_id: row.graph_secret_key_id.unwrap_or_default(),
                ciphertext: row.graph_secret_ciphertext.unwrap_or_default(),
            };
            secrets.open(tenant_id, &sealed)?
        } else {
            secrets.resolve(&secret_ref)?
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(value: Option<&str>) -> impl FnOnce(&str) -> Option<String> + '_ {
        move |name| {
            assert_eq!(name, "TA_SECRET");
            value.map(str::to_owned)
        }
    }

    #[test]
    fn env_references_read_the_named_variable() {
        let resolver = SecretResolver::default();
        let secret = resolver
            .resolve_with("env:TA_SECRET", env(Some("s3cret")))
            .expect("the variable is set");
        assert_eq!(format!("{secret:?}"), "ClientSecret([REDACTED])");
        for missing in [None, Some("")] {
            let error = resolver
                .resolve_with("env:TA_SECRET", env(missing))
                .expect_err("no secret");
            assert!(
                matches!(error, CredentialsError::MissingEnvironment(ref n) if n == "TA_SECRET")
            );
        }
    }

    #[test]
    fn other_references_are_refused() {
        let resolver = SecretResolver::default();
        for bad in ["", "env:", "s3cret", "file:/etc/secret", "ENV:TA_SECRET"] {
            assert!(matches!(
                resolver.resolve_with(bad, |_| Some("x".into())),
                Err(CredentialsError::UnsupportedReference)
            ));
        }
    }

    #[test]
    fn the_demo_reference_needs_the_demo_simulator() {
        assert!(matches!(
            SecretResolver::default().resolve(DEMO_SECRET_REF),
            Err(CredentialsError::DemoOnly)
        ));
        let demo = SecretResolver::with_demo_secret(ClientSecret::new("d"));
        assert!(demo.resolve(DEMO_SECRET_REF).is_ok());
        assert_eq!(
            format!("{demo:?}"),
            "SecretResolver { demo: true, keys: None }"
        );
    }
}
