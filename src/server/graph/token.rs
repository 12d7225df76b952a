//! Client-credentials tokens, one per tenant and app, cached until shortly before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::time::{Duration, Instant};

use super::client::{read_body, BodyError, GraphConfig};
use super::GraphError;
use crate::domain::connection::{TokenProblem, TokenRefusal};
use crate::domain::reason_code::ReasonCode;
use crate::domain::TenantExternalId;

/// The scope of an app-only Graph token.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// The longest lifetime a token is cached for, whatever `expires_in` says (Entra ID issues
/// app-only tokens for 60–90 minutes): a day.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);
/// The largest token endpoint answer read (a token is a few kilobytes).
const MAX_TOKEN_BODY_BYTES: usize = 1024 * 1024;
/// How long a refusal of the app (400, 401, 403) answers for the token endpoint, for the secret
/// it refused: the captures of a run with a rejected secret, queued on the tenant's slot, then
/// fail without each posting it again, while a new secret is tried at once.
const REFUSAL_MEMORY: Duration = Duration::from_secs(30);

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

/// What the token endpoint last said for one (tenant, app): a token, or a refusal of the app.
#[derive(Default)]
struct SlotState {
    token: Option<CachedToken>,
    /// The last refusal: until when it answers instead of the endpoint, for the secret it
    /// refused (a new secret is asked about at once).
    refused: Option<Refusal>,
}

/// A refusal of the app by the token endpoint, remembered for a while.
struct Refusal {
    error: GraphError,
    refusal: TokenRefusal,
    until: Instant,
    secret: ClientSecret,
}

impl Refusal {
    /// The refusal's error, while it still answers for `creds`.
    fn answers(&self, creds: &TenantCredentials, now: Instant) -> Option<&GraphError> {
        (now < self.until && self.secret.expose() == creds.client_secret.expose())
            .then_some(&self.error)
    }

    /// The refusal as a failure, while it still answers for `creds`.
    fn failure(&self, creds: &TenantCredentials, now: Instant) -> Option<TokenFailure> {
        self.answers(creds, now).map(|error| TokenFailure {
            error: error.clone(),
            refusal: Some(self.refusal.clone()),
        })
    }
}

impl SlotState {
    /// Keeps what a request to the token endpoint answered for `creds`.
    fn remember(&mut self, creds: &TenantCredentials, answer: &Result<CachedToken, TokenFailure>) {
        match answer {
            Ok(token) => {
                self.token = Some(token.clone());
                self.refused = None;
            }
            Err(TokenFailure {
                error,
                refusal: Some(refusal),
            }) => {
                self.token = None;
                self.refused = Some(Refusal {
                    error: error.clone(),
                    refusal: refusal.clone(),
                    until: Instant::now() + REFUSAL_MEMORY,
                    secret: creds.client_secret.clone(),
                });
            }
            // Throttled or unreachable: nothing is known about the app.
            Err(_) => {}
        }
    }
}

type Slot = Arc<tokio::sync::Mutex<SlotState>>;

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

/// Why the token endpoint gave no token: the error every caller gets, and, when Entra ID
/// refused the app (400, 401, 403), what it said, classified.
#[derive(Debug, Clone)]
pub struct TokenFailure {
    pub error: GraphError,
    pub refusal: Option<TokenRefusal>,
}

impl From<GraphError> for TokenFailure {
    fn from(error: GraphError) -> Self {
        Self {
            error,
            refusal: None,
        }
    }
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

    /// A valid access token, from the cache or the token endpoint. A refusal of the app
    /// answers again for [`REFUSAL_MEMORY`] without asking the endpoint: requests queued on the
    /// tenant's slot behind the refused one fail at once instead of each posting the secret.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        config: &GraphConfig,
        creds: &TenantCredentials,
    ) -> Result<String, GraphError> {
        let slot = self.slot(creds);
        let mut state = slot.lock().await;
        let now = Instant::now();
        if let Some(token) = state.token.as_ref().filter(|t| now < t.refresh_at) {
            return Ok(token.access_token.clone());
        }
        if let Some(error) = state.refused.as_ref().and_then(|r| r.answers(creds, now)) {
            return Err(error.clone());
        }
        let answer = request_token_retried(http, config, creds).await;
        state.remember(creds, &answer);
        answer
            .map(|token| token.access_token)
            .map_err(|failure| failure.error)
    }

    /// Whether the app gets a token: a valid cached one or a remembered refusal answers
    /// without the endpoint, which is asked otherwise (a run asks once before its items).
    pub(crate) async fn check(
        &self,
        http: &reqwest::Client,
        config: &GraphConfig,
        creds: &TenantCredentials,
    ) -> Result<(), TokenFailure> {
        let slot = self.slot(creds);
        let mut state = slot.lock().await;
        let now = Instant::now();
        if state.token.as_ref().is_some_and(|t| now < t.refresh_at) {
            return Ok(());
        }
        if let Some(failure) = state.refused.as_ref().and_then(|r| r.failure(creds, now)) {
            return Err(failure);
        }
        let answer = request_token_retried(http, config, creds).await;
        state.remember(creds, &answer);
        answer.map(|_| ())
    }

    /// A new token from the token endpoint whatever the cache holds (a check must prove that
    /// the credentials work now, not an hour ago); the cache then holds it.
    pub(crate) async fn fresh(
        &self,
        http: &reqwest::Client,
        config: &GraphConfig,
        creds: &TenantCredentials,
    ) -> Result<String, TokenFailure> {
        let slot = self.slot(creds);
        let mut state = slot.lock().await;
        let answer = request_token_retried(http, config, creds).await;
        state.remember(creds, &answer);
        Ok(answer?.access_token)
    }

    /// Forgets `stale` after Graph rejected it; a token another request already replaced stays.
    pub(crate) async fn invalidate(&self, creds: &TenantCredentials, stale: &str) {
        let slot = self.slot(creds);
        let mut state = slot.lock().await;
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.access_token == stale)
        {
            state.token = None;
        }
    }
}

/// [`request_token`] with Graph's retry policy: a throttled (429) or failing (5xx, transport,
/// timeout) token endpoint is asked again after its `Retry-After` (capped like Graph's) or the
/// backoff, up to the same number of attempts. The caller holds the tenant's token slot, so
/// concurrent requests of the tenant wait for this one fetch and its retries.
async fn request_token_retried(
    http: &reqwest::Client,
    config: &GraphConfig,
    creds: &TenantCredentials,
) -> Result<CachedToken, TokenFailure> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match request_token(http, config, creds).await {
            Ok(token) => return Ok(token),
            Err((failure, Some(retry_after))) if attempt < config.retry.max_attempts => {
                let wait = config.retry.delay(attempt, retry_after);
                tracing::debug!(attempt, ?wait, reason = %failure.error.reason_code(), "token request retried");
                super::interrupt::waiting(tokio::time::sleep(wait)).await?;
            }
            Err((failure, _)) => return Err(failure),
        }
    }
}

/// POSTs the client-credentials grant to `{login_base}/{tenant}/oauth2/v2.0/token`. A failure
/// comes with `Some(Retry-After)` when asking again may help (429, 5xx, transport).
async fn request_token(
    http: &reqwest::Client,
    config: &GraphConfig,
    creds: &TenantCredentials,
) -> Result<CachedToken, (TokenFailure, Option<Option<Duration>>)> {
    let transient = |error: GraphError| (TokenFailure::from(error), Some(None));
    let final_ = |error: GraphError| (TokenFailure::from(error), None);
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
        .map_err(|e| transient(token_transport_error(&e)))?;
    let status = response.status();
    let retry_after = super::retry::retry_after(response.headers());
    let body = match read_body(response, MAX_TOKEN_BODY_BYTES).await {
        Ok(body) => body,
        Err(BodyError::Transport(e)) => return Err(transient(token_transport_error(&e))),
        Err(BodyError::TooLarge) => {
            return Err(final_(GraphError::new(
                ReasonCode::InvalidResponse,
                "the token endpoint answered more than a megabyte",
            )));
        }
    };
    if status.is_success() {
        let parsed: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            final_(GraphError::new(
                ReasonCode::InvalidResponse,
                "the token endpoint answered unreadable JSON",
            ))
        })?;
        if parsed.access_token.is_empty() {
            return Err(final_(GraphError::new(
                ReasonCode::InvalidResponse,
                "the token endpoint sent an empty token",
            )));
        }
        let lifetime = Duration::from_secs(parsed.expires_in).min(MAX_TOKEN_LIFETIME);
        // Refresh a margin before expiry; very short lifetimes are used for half their life.
        let usable = lifetime
            .saturating_sub(config.token_refresh_margin)
            .max(lifetime / 2);
        return Ok(CachedToken {
            access_token: parsed.access_token,
            // Cannot overflow with the lifetime capped; if it did, the token serves this request.
            refresh_at: sent.checked_add(usable).unwrap_or(sent),
        });
    }
    let refused = TokenErrorBody::parse(&body);
    let detail = format!(
        "{} {}",
        refused.error.as_deref().unwrap_or_default(),
        refused.description.as_deref().unwrap_or_default()
    );
    let (reason, refusal, retry) = match status.as_u16() {
        400 | 401 | 403 => (
            ReasonCode::AuthenticationFailed,
            Some(refused.refusal(status.as_u16())),
            None,
        ),
        429 => (ReasonCode::Throttled, None, Some(retry_after)),
        500..=599 => (ReasonCode::GraphUnavailable, None, Some(retry_after)),
        _ => (ReasonCode::GraphUnavailable, None, None),
    };
    Err((
        TokenFailure {
            error: GraphError::new(
                reason,
                format!("the token endpoint answered {status}: {detail}"),
            ),
            refusal,
        },
        retry,
    ))
}

/// The error body of Microsoft's token endpoint: the OAuth `error` and `error_description`,
/// and Entra ID's `error_codes` (AADSTS numbers). Read field by field, so one odd field never
/// hides the others.
#[derive(Debug, Default, PartialEq, Eq)]
struct TokenErrorBody {
    error: Option<String>,
    description: Option<String>,
    codes: Vec<u32>,
}

impl TokenErrorBody {
    fn parse(body: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(body) else {
            return Self::default();
        };
        let text = |name: &str| {
            fields
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let description = text("error_description");
        let mut codes: Vec<u32> = fields
            .get("error_codes")
            .and_then(serde_json::Value::as_array)
            .map(|codes| {
                codes
                    .iter()
                    .filter_map(|code| code.as_u64().and_then(|c| u32::try_from(c).ok()))
                    .collect()
            })
            .unwrap_or_default();
        // Without `error_codes`, the description starts with the code ("AADSTS7000215: …").
        if codes.is_empty() {
            codes.extend(description.as_deref().and_then(aadsts_prefix));
        }
        Self {
            // Kept only as OAuth spells its codes ("invalid_client"): the text is stored with
            // the check's report and shown, and a token endpoint is not trusted to send that.
            error: text("error").filter(|error| is_oauth_error_code(error)),
            description,
            codes,
        }
    }

    fn refusal(&self, status: u16) -> TokenRefusal {
        TokenRefusal {
            problem: TokenProblem::classify(&self.codes, self.error.as_deref()),
            code: self.codes.first().copied(),
            error: self.error.clone(),
            status,
        }
    }
}

/// Whether `error` reads as an OAuth error code: 1 to 64 lowercase ASCII letters and `_`.
fn is_oauth_error_code(error: &str) -> bool {
    (1..=64).contains(&error.len()) && error.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The number in a leading `AADSTSnnn`, if any.
fn aadsts_prefix(description: &str) -> Option<u32> {
    let digits: String = description
        .trim_start()
        .strip_prefix("AADSTS")?
        .chars()
        .take_while(char::is_ascii_digit)
        .take(9)
        .collect();
    digits.parse().ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_token_endpoints_error_body() {
        // The shape Microsoft documents for the token endpoint's errors.
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-12-01 10:00:00Z","error_codes":[7000215],"timestamp":"2026-12-01 10:00:00Z","trace_id":"0000aaaa-11bb-cccc-dd22-eeeeee333333","correlation_id":"aaaa0000-bb11-2222-33cc-444444dddddd","error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#;
        let parsed = TokenErrorBody::parse(body);
        assert_eq!(parsed.error.as_deref(), Some("invalid_client"));
        assert_eq!(parsed.codes, [7_000_215]);
        let refusal = parsed.refusal(401);
        assert_eq!(refusal.problem, TokenProblem::WrongSecret);
        assert_eq!(refusal.code, Some(7_000_215));
    }

    #[test]
    fn without_error_codes_the_description_names_the_code() {
        let parsed = TokenErrorBody::parse(
            br#"{"error":"invalid_client","error_description":"AADSTS7000222: The provided client secret keys for app 'x' are expired."}"#,
        );
        assert_eq!(parsed.codes, [7_000_222]);
        assert_eq!(parsed.refusal(401).problem, TokenProblem::ExpiredSecret);
    }

    #[test]
    fn odd_bodies_still_give_what_they_have() {
        assert_eq!(TokenErrorBody::parse(b"<html>"), TokenErrorBody::default());
        // An `error` that is no OAuth code (long, markup, control characters) is not kept.
        for hostile in [
            "x".repeat(10_000),
            "<script>".into(),
            "bad\nline".into(),
            String::new(),
        ] {
            let body =
                serde_json::json!({ "error": hostile, "error_codes": [7000215] }).to_string();
            let parsed = TokenErrorBody::parse(body.as_bytes());
            assert_eq!(parsed.error, None, "{hostile:.20}");
            assert_eq!(parsed.codes, [7_000_215]);
        }
        assert_eq!(TokenErrorBody::parse(b"[]"), TokenErrorBody::default());
        let odd = TokenErrorBody::parse(
            br#"{"error":"unauthorized_client","error_codes":["700016", -1, 99999999999],"error_description":7}"#,
        );
        assert_eq!(odd.error.as_deref(), Some("unauthorized_client"));
        assert!(odd.codes.is_empty());
        assert_eq!(odd.refusal(400).problem, TokenProblem::UnauthorizedClient);
        assert_eq!(
            aadsts_prefix("AADSTS700016: Application not found"),
            Some(700_016)
        );
        assert_eq!(aadsts_prefix("AADSTS: nothing"), None);
        assert_eq!(aadsts_prefix("Error AADSTS700016"), None);
        assert_eq!(aadsts_prefix("AADSTS99999999999999"), Some(999_999_999));
    }
}
