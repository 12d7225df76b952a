//! Client-credentials tokens, one per tenant and app, cached until shortly before they expire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use sha2::{Digest, Sha256};
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
/// The longest access token used (Entra ID's app-only tokens are 1–3 KB); a longer one would
/// make every Graph request too large for Graph's front doors.
const MAX_ACCESS_TOKEN_BYTES: usize = 16 * 1024;
/// How long a refusal of the app (400, 401, 403 with Entra ID's error body) answers for the token
/// endpoint, for the secret it refused: the captures of a run with a rejected secret then fail
/// without each posting it again, while a new secret (another slot) is tried at once.
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

/// What the token endpoint last said for one (tenant, app, secret): a token or a refusal of the
/// app, and how the latest fetch ended.
#[derive(Default)]
struct SlotState {
    token: Option<CachedToken>,
    /// The last refusal, and until when it answers instead of the endpoint.
    refused: Option<Refusal>,
    /// How the latest fetch failed (`None` after a success).
    last_failure: Option<TokenFailure>,
}

/// A refusal of the app by the token endpoint, remembered for a while.
struct Refusal {
    failure: TokenFailure,
    until: Instant,
}

impl SlotState {
    /// Keeps what a fetch from the token endpoint answered.
    fn remember(&mut self, answer: &Result<CachedToken, TokenFailure>) {
        match answer {
            Ok(token) => {
                self.token = Some(token.clone());
                self.refused = None;
                self.last_failure = None;
            }
            Err(failure) => {
                if failure.refusal.is_some() {
                    self.token = None;
                    self.refused = Some(Refusal {
                        failure: failure.clone(),
                        until: Instant::now() + REFUSAL_MEMORY,
                    });
                }
                // Throttled or unreachable says nothing about the app, but it still answers
                // the requests that queued while this fetch and its retries ran.
                self.last_failure = Some(failure.clone());
            }
        }
    }
}

/// One (tenant, app, secret)'s entry: its state behind an async lock, so concurrent requests
/// wait for a single fetch instead of each asking, and how many fetches have ended, so a request
/// that queued while one ran takes that fetch's answer, success or failure, instead of
/// repeating it (six captures behind a failing endpoint ask it once, with its retries, not six
/// times).
#[derive(Default)]
struct Slot {
    state: tokio::sync::Mutex<SlotState>,
    /// Bumped under the lock when a fetch ends (not when it was cancelled).
    fetches: AtomicU64,
}

/// The key of a [`Slot`]: tenant, client id and the sha256 of the secret, so a replaced secret
/// gets its own token at once while a request still holding the old secret keeps the old one.
/// A replaced secret's entry stays (one per secret a tenant ever used in this process).
type SlotKey = (String, String, [u8; 32]);

/// Tokens by (tenant, app, secret).
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<SlotKey, Arc<Slot>>>,
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
    fn slot(&self, creds: &TenantCredentials) -> Arc<Slot> {
        let key = (
            creds.tenant_id.as_str().to_owned(),
            creds.client_id.clone(),
            Sha256::digest(creds.client_secret.expose().as_bytes()).into(),
        );
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(slots.entry(key).or_default())
    }

    /// A valid access token, from the cache or the token endpoint. A refusal of the app
    /// answers again for [`REFUSAL_MEMORY`] without asking the endpoint, and any failure answers
    /// the requests queued behind the fetch that got it: they fail at once instead of each
    /// asking again.
    pub(crate) async fn token(
        &self,
        http: &reqwest::Client,
        config: &GraphConfig,
        creds: &TenantCredentials,
    ) -> Result<String, GraphError> {
        self.obtain(http, config, creds, Want::Cached)
            .await
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
        self.obtain(http, config, creds, Want::Cached)
            .await
            .map(|_| ())
    }

    /// A new token from the token endpoint whatever the cache holds (a check must prove that
    /// the credentials work now, not an hour ago; a fetch that ended while this one waited is
    /// new enough); the cache then holds it.
    pub(crate) async fn fresh(
        &self,
        http: &reqwest::Client,
        config: &GraphConfig,
        creds: &TenantCredentials,
    ) -> Result<String, TokenFailure> {
        self.obtain(http, config, creds, Want::Fresh).await
    }

    /// The token as `want` says. The wait for the slot gives way to a cancel: a cancelled run
    /// does not wait behind another request's fetch and its retries.
    async fn obtain(
        &self,
        http: &reqwest::Client,
        config: &GraphConfig,
        creds: &TenantCredentials,
        want: Want,
    ) -> Result<String, TokenFailure> {
        let slot = self.slot(creds);
        let seen = slot.fetches.load(Ordering::SeqCst);
        let mut state = super::interrupt::waiting(slot.state.lock()).await?;
        let now = Instant::now();
        if want == Want::Cached {
            // A token still valid answers first: a fresh fetch (a connection check's) that
            // failed while this request waited says nothing against it.
            if let Some(token) = state.token.as_ref().filter(|t| now < t.refresh_at) {
                return Ok(token.access_token.clone());
            }
        }
        if slot.fetches.load(Ordering::SeqCst) != seen {
            // A fetch ended while this request waited: its answer is as new as this request's
            // own would be.
            if let Some(failure) = &state.last_failure {
                return Err(failure.clone());
            }
            if let Some(token) = &state.token {
                return Ok(token.access_token.clone());
            }
        }
        if want == Want::Cached {
            if let Some(refused) = state.refused.as_ref().filter(|r| now < r.until) {
                return Err(refused.failure.clone());
            }
        }
        let answer = request_token_retried(http, config, creds).await;
        // A fetch cut short by this request's cancel is no answer for the others.
        let cancelled = answer
            .as_ref()
            .is_err_and(|failure| failure.error.reason_code() == ReasonCode::Cancelled);
        if !cancelled {
            state.remember(&answer);
            slot.fetches.fetch_add(1, Ordering::SeqCst);
        }
        answer.map(|token| token.access_token)
    }

    /// Forgets `stale` after Graph rejected it; a token another request already replaced stays.
    /// Like every wait for the slot, it gives way to a cancel.
    pub(crate) async fn invalidate(
        &self,
        creds: &TenantCredentials,
        stale: &str,
    ) -> Result<(), GraphError> {
        let slot = self.slot(creds);
        let mut state = super::interrupt::waiting(slot.state.lock()).await?;
        if state
            .token
            .as_ref()
            .is_some_and(|t| t.access_token == stale)
        {
            state.token = None;
        }
        Ok(())
    }
}

/// Which token [`TokenCache::obtain`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A valid cached one if there is one.
    Cached,
    /// One fetched after the request came.
    Fresh,
}

/// [`request_token`] with Graph's retry policy: a throttled (429) or failing (5xx, transport,
/// timeout) token endpoint is asked again after its `Retry-After` (capped like Graph's) or the
/// backoff, up to the same number of attempts. The caller holds the tenant's token slot, so
/// concurrent requests of the tenant wait for this one fetch and its retries, and take its
/// answer.
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
        // Never cached: every request would fail on it as if Graph could not be reached.
        if !is_bearer_token(&parsed.access_token) {
            return Err(final_(GraphError::new(
                ReasonCode::InvalidResponse,
                "the token endpoint sent a token that cannot be sent in a header (empty, too \
                 long, or with spaces or control characters)",
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
    if status.is_redirection() {
        // Never followed (see `GraphClient::new`): it would post the secret elsewhere.
        return Err(final_(GraphError::new(
            ReasonCode::InvalidResponse,
            format!("the token endpoint answered a redirect ({status})"),
        )));
    }
    let refused = TokenErrorBody::parse(&body);
    let detail = format!(
        "{} {}",
        refused.error.as_deref().unwrap_or_default(),
        refused.description.as_deref().unwrap_or_default()
    );
    // Only Entra ID's own error body (an OAuth `error` or an AADSTS code) refuses the app: the
    // 4xx of a proxy or firewall in front of the endpoint says nothing about the app.
    let from_entra = refused.error.is_some() || !refused.codes.is_empty();
    let (reason, refusal, retry) = match status.as_u16() {
        // Entra ID says it failed, not the app: asked again, never remembered as a refusal,
        // whatever the status it came with (400 is common).
        _ if refused.is_transient() => (ReasonCode::GraphUnavailable, None, Some(retry_after)),
        400 | 401 | 403 if from_entra => (
            ReasonCode::AuthenticationFailed,
            Some(refused.refusal(status.as_u16())),
            None,
        ),
        400 | 401 | 403 => {
            return Err(final_(GraphError::new(
                ReasonCode::GraphUnavailable,
                format!(
                    "the token endpoint answered HTTP {}, an answer that is not Entra ID's (a \
                     proxy or firewall in between?)",
                    status.as_u16()
                ),
            )));
        }
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

/// AADSTS codes of a transient failure in Entra ID: 90033 (MsodsServiceUnavailable, "a
/// transient error has occurred, try again") and 90006 (ExternalServerRetryableError).
const TRANSIENT_AADSTS: [u32; 2] = [90033, 90006];

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

    /// Whether Entra ID failed on its side and asks to be asked again: the OAuth errors
    /// `temporarily_unavailable` and `server_error` (AADSTS 90033, 50196, 90006 come with
    /// them), or one of the AADSTS codes of a service that is unavailable for a moment.
    fn is_transient(&self) -> bool {
        matches!(
            self.error.as_deref(),
            Some("temporarily_unavailable" | "server_error")
        ) || self
            .codes
            .iter()
            .any(|code| TRANSIENT_AADSTS.contains(code))
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

/// Whether `token` can go into an `Authorization: Bearer` header as it is: 1 to
/// [`MAX_ACCESS_TOKEN_BYTES`] visible ASCII characters, no space (a JWT is base64url and dots).
fn is_bearer_token(token: &str) -> bool {
    (1..=MAX_ACCESS_TOKEN_BYTES).contains(&token.len())
        && token.bytes().all(|b| b.is_ascii_graphic())
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
