//! Client-credentials tokens, one per tenant and app, cached until shortly before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::time::{Duration, Instant};

use super::client::GraphConfig;
use super::GraphError;
use crate::domain::reason_code::ReasonCode;
use crate::domain::TenantExternalId;

/// The scope of an app-only Graph token.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// An app registration's secret; never printed, compared or serialized by accident.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps the secret read from configuration or the secret store.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The clear text, only for the token request body and the key ring that seals it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientSecret([REDACTED])")
    }
}

/// Who the client talks to Graph as: a tenant and the app registered in it.
#[derive(Debug, Clone)]
pub struct TenantCredentials {
    pub tenant_id: TenantExternalId,
    pub client_id: String,
    pub client_secret: ClientSecret,
}

/// A token and when to stop using it.
#[derive(Clone)]
struct CachedToken {
    access_token: String,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<CachedToken>>>;

/// Tokens by (tenant, app). Each key has its own async lock, so concurrent requests of one tenant
/// wait for a single token request instead of each asking for one.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<(String, String), Slot>>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct TokenErrorResponse {
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenCache {
    fn slot(&self, creds: &TenantCredentials) -> Slot {
        let key = (creds.tenant_id.as_str().to_owned(), creds.client_id.clone());
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(slots.entry(key).or_default())
    }

    /// A valid access token, from the cache or the token endpoint.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        config: &GraphConfig,
        creds: &TenantCredentials,
    ) -> Result<String, GraphError> {
        let slot = self.slot(creds);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok(token.access_token.clone());
        }
        let fresh = request_token(http, config, creds).await?;
        let token = fresh.access_token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets `stale` after Graph rejected it; a token another request already replaced stays.
    pub(crate) async fn invalidate(&self, creds: &TenantCredentials, stale: &str) {
        let slot = self.slot(creds);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.access_token == stale) {
            *cached = None;
        }
    }
}

/// POSTs the client-credentials grant to `{login_base}/{tenant}/oauth2/v2.0/token`.
async fn request_token(
    http: &reqwest::Client,
    config: &GraphConfig,
    creds: &TenantCredentials,
) -> Result<CachedToken, GraphError> {
    let url = format!(
        "{}/{}/oauth2/v2.0/token",
        config.login_base.trim_end_matches('/'),
        creds.tenant_id.as_str()
    );
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", creds.client_id.as_str()),
        ("client_secret", creds.client_secret.expose()),
        ("scope", GRAPH_SCOPE),
    ];
    let sent = Instant::now();
    let response = http
        .post(&url)
        .form(&form)
        .timeout(config.request_timeout)
        .send()
        .await
        .map_err(|e| token_transport_error(&e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| token_transport_error(&e))?;
    if status.is_success() {
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            GraphError::new(
                ReasonCode::InvalidResponse,
                "the token endpoint answered unreadable JSON",
            )
        })?;
        if parsed.access_token.is_empty() {
            return Err(GraphError::new(
                ReasonCode::InvalidResponse,
                "the token endpoint sent an empty token",
            ));
        }
        let lifetime = Duration::from_secs(parsed.expires_in);
        // Refresh a margin before expiry; very short lifetimes are used for half their life.
        let usable = lifetime
            .saturating_sub(config.token_refresh_margin)
            .max(lifetime / 2);
        return Ok(CachedToken {
            access_token: parsed.access_token,
            refresh_at: sent + usable,
        });
    }
    let detail = serde_json::from_slice::<TokenErrorResponse>(&body)
        .ok()
        .map(|e| {
            format!(
                "{} {}",
                e.error.unwrap_or_default(),
                e.error_description.unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let reason = match status.as_u16() {
        400 | 401 | 403 => ReasonCode::AuthenticationFailed,
        429 => ReasonCode::Throttled,
        _ => ReasonCode::GraphUnavailable,
    };
    Err(GraphError::new(
        reason,
        format!("the token endpoint answered {status}: {detail}"),
    ))
}

fn token_transport_error(error: &reqwest::Error) -> GraphError {
    if error.is_timeout() {
        GraphError::new(
            ReasonCode::Timeout,
            "the token endpoint did not answer in time",
        )
    } else {
        GraphError::new(
            ReasonCode::GraphUnavailable,
            "the token endpoint could not be reached",
        )
    }
}
