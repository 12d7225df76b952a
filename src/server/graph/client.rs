//! The Graph client: authenticated, limited, retried requests (GETs with paging, and the writes
//! of [`super::write`] through the same loop), and policy capture.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::activity::{self, Count};
use super::jwt::{self, ClaimsError};
use super::limiter::{LimiterConfig, Limiters, WriteBudget};
use super::registry::{
    is_graph_id, storable_name, PolicyListing, PolicyType, MAX_DISPLAY_NAME_CHARS,
};
use super::retry::{retry_after, RetryPolicy};
use super::snapshot::{
    canonical_json, nesting_depth, SettingDefinition, Snapshot, MAX_PAYLOAD_DEPTH,
};
use super::token::{TenantCredentials, TokenCache, TokenFailure};
use super::GraphError;
use crate::domain::graph_wait::GraphWaitReason;
use crate::domain::reason_code::ReasonCode;
use crate::domain::snapshot::is_secret;
use crate::domain::Timestamp;
use crate::server::metrics;

/// A list or sub-collection longer than this many pages is treated as a Graph fault rather than
/// followed forever (a nextLink that repeats one already read fails at once).
const MAX_PAGES: usize = 10_000;
/// Default of [`GraphConfig::max_body_bytes`]: the largest answer body read, 32 MiB (a page of
/// 999 policies or of 25 settings with their definitions is a few hundred kilobytes).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// Default of [`GraphConfig::max_collection_items`]: the most entries one list or
/// sub-collection may hold, 100,000 (far above the policies of a tenant or the settings of a
/// policy). It bounds the count, not the memory: [`MAX_READ_BYTES`] does that.
pub const MAX_COLLECTION_ITEMS: usize = 100_000;
/// Default of [`GraphConfig::max_read_bytes`]: what one list, or one capture with every child
/// collection it reads, may read in answer bodies, 64 MiB (the largest settings catalog policy
/// is a few megabytes), so a tenant that sends large pages with endless nextLinks cannot fill
/// the memory. One answer may pass it by at most [`MAX_BODY_BYTES`] before it is noticed.
pub const MAX_READ_BYTES: usize = 64 * 1024 * 1024;

/// Where Graph is and how politely to talk to it. The base URLs are configuration so the same
/// client talks to Microsoft or to the simulator.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// e.g. `https://login.microsoftonline.com`; the tenant id and `/oauth2/v2.0/token` follow.
    pub login_base: String,
    /// e.g. `https://graph.microsoft.com/beta`; collection paths follow.
    pub graph_base: String,
    /// Budget of one HTTP request, answer body included.
    pub request_timeout: Duration,
    /// A cached token is replaced this long before it expires.
    pub token_refresh_margin: Duration,
    pub retry: RetryPolicy,
    pub limits: LimiterConfig,
    /// The smaller budget writes take on top of `limits`.
    pub write_budget: WriteBudget,
    /// An answer body longer than this is not read to its end: the request fails as
    /// `invalid_response` ([`MAX_BODY_BYTES`] by default).
    pub max_body_bytes: usize,
    /// A collection with more entries fails as `invalid_response` ([`MAX_COLLECTION_ITEMS`] by
    /// default).
    pub max_collection_items: usize,
    /// The answer bytes one list, or one capture with all its collections, may read in total;
    /// past it the read fails as `invalid_response` ([`MAX_READ_BYTES`] by default).
    pub max_read_bytes: usize,
}

impl GraphConfig {
    /// Safe defaults for the given endpoints.
    pub fn new(login_base: impl Into<String>, graph_base: impl Into<String>) -> Self {
        Self {
            login_base: login_base.into(),
            graph_base: graph_base.into(),
            request_timeout: Duration::from_secs(30),
            token_refresh_margin: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            limits: LimiterConfig::default(),
            write_budget: WriteBudget::default(),
            max_body_bytes: MAX_BODY_BYTES,
            max_collection_items: MAX_COLLECTION_ITEMS,
            max_read_bytes: MAX_READ_BYTES,
        }
    }

    /// Microsoft's public cloud; the settings catalog is only on the beta endpoint.
    pub fn microsoft() -> Self {
        Self::new(
            "https://login.microsoftonline.com",
            "https://graph.microsoft.com/beta",
        )
    }
}

/// What a capture includes besides the policy and its settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    pub include_assignments: bool,
    pub include_scope_tags: bool,
}

/// A boxed future, so [`PolicySource`] can be used as a trait object.
pub type GraphFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, GraphError>> + Send + 'a>>;

/// What a new token says the app may do: the application permissions in its `roles` claim, or
/// why they could not be read. Never the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub roles: Result<Vec<String>, ClaimsError>,
}

/// A boxed future of a token request (the connection check's first step).
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Granted, TokenFailure>> + Send + 'a>>;

/// What the inventory sync and the worker need from Graph; tests substitute their own source.
pub trait PolicySource: Send + Sync {
    /// Every policy of one type in the tenant.
    fn list_policies<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
    ) -> GraphFuture<'a, Vec<PolicyListing>>;

    /// One policy with everything its snapshot holds.
    fn capture_policy<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
        graph_id: &'a str,
        options: CaptureOptions,
    ) -> GraphFuture<'a, Snapshot>;

    /// Asks the token endpoint for a new token and reads what it grants.
    fn granted_roles<'a>(&'a self, creds: &'a TenantCredentials) -> TokenFuture<'a>;

    /// Reads the first page of a type's policies; the number of policies on it.
    fn first_page<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
    ) -> GraphFuture<'a, usize>;
}

/// The real client. Cheap to clone; clones share tokens and per-tenant limiters.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

// Not derived: only the endpoints are worth printing; tokens stay out of every log line.
impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient")
            .field("login_base", &self.inner.config.login_base)
            .field("graph_base", &self.inner.config.graph_base)
            .finish_non_exhaustive()
    }
}

struct Inner {
    http: reqwest::Client,
    config: GraphConfig,
    graph_origin: Option<url_origin::Origin>,
    tokens: TokenCache,
    limiters: Limiters,
}

/// One request of the send loop: a GET, or a write with its JSON body.
pub(super) struct Request<'a> {
    pub method: Method,
    pub url: &'a str,
    pub body: Option<&'a Value>,
    /// Whether sending it twice does no harm (a GET, a PATCH, a PUT, a replacing action). Only
    /// such a request is sent again after an answer that may have come after Graph acted on it
    /// (a timeout, a 504, a body cut short); any request is sent again after a 429 or a 503,
    /// which Graph answers without acting.
    pub idempotent: bool,
}

impl<'a> Request<'a> {
    /// A GET of `url`.
    pub fn get(url: &'a str) -> Self {
        Self {
            method: Method::GET,
            url,
            body: None,
            idempotent: true,
        }
    }

    fn is_write(&self) -> bool {
        self.method != Method::GET && self.method != Method::HEAD
    }
}

/// A success answer: its status and its JSON body (`Null` when the body is empty).
#[derive(Debug)]
pub(super) struct Answer {
    pub status: u16,
    pub body: Value,
    /// The length of the body as read, for [`ReadBudget`].
    pub bytes: usize,
    /// When the attempt Graph answered was sent (Unix ms, [`Timestamp::now`]): after the
    /// waits for the tenant's request budget and for earlier attempts' Retry-After, so Graph
    /// read what it answered no earlier than this.
    pub sent_at: i64,
}

/// What one list, or one capture with all its collections, may still read in answer bodies
/// ([`GraphConfig::max_read_bytes`]): the entry and page caps bound how many, this bounds how
/// much memory a tenant sending large pages with endless nextLinks can take.
struct ReadBudget {
    cap: usize,
    read: usize,
}

impl ReadBudget {
    fn new(cap: usize) -> Self {
        Self { cap, read: 0 }
    }

    /// Counts an answer of `bytes`; an `invalid_response` once the total passes the cap.
    fn spend(&mut self, bytes: usize) -> Result<(), GraphError> {
        self.read = self.read.saturating_add(bytes);
        if self.read > self.cap {
            return Err(GraphError::new(
                ReasonCode::InvalidResponse,
                format!(
                    "Graph sent more than {} bytes for one list or policy",
                    self.cap
                ),
            ));
        }
        Ok(())
    }
}

/// How one attempt ended when it did not return JSON.
enum Failure {
    /// Not worth repeating.
    Final(GraphError),
    /// The token was rejected: refresh it once, then give up.
    Unauthorized(GraphError),
    /// Worth another attempt after a while.
    Transient {
        error: GraphError,
        retry_after: Option<Duration>,
        /// What the run is waiting for until the next attempt.
        why: GraphWaitReason,
        /// Graph may have acted on the request before the answer failed.
        ambiguous: bool,
    },
}

impl GraphClient {
    /// Builds the HTTP client (rustls) for the configured endpoints. It follows no redirect: a
    /// followed redirect would re-post the client secret or a write's body to wherever the
    /// answer points, or lead a GET (a nextLink) off the Graph host; a 3xx answer fails instead.
    pub fn new(config: GraphConfig) -> Result<Self, GraphError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("TenantAtlas/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| {
                GraphError::new(
                    ReasonCode::UnknownError,
                    "the HTTP client could not be built",
                )
            })?;
        let graph_origin = url_origin::of(&config.graph_base);
        let limiters = Limiters::new(config.limits.clone(), config.write_budget.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                graph_origin,
                tokens: TokenCache::default(),
                limiters,
            }),
        })
    }

    /// The endpoints and limits this client was built with.
    pub(super) fn config(&self) -> &GraphConfig {
        &self.inner.config
    }

    /// Every policy of `policy_type` in the tenant, following `@odata.nextLink` to the end.
    pub async fn list_policies(
        &self,
        creds: &TenantCredentials,
        policy_type: PolicyType,
    ) -> Result<Vec<PolicyListing>, GraphError> {
        let url = policy_type.spec().list_url(&self.inner.config.graph_base);
        let items = self.get_all_pages(creds, &url).await?;
        Ok(items
            .iter()
            .filter_map(|item| PolicyListing::from_graph(policy_type, item))
            .collect())
    }

    /// Reads one policy with everything a restore needs (capture format
    /// [`CaptureFormat::LATEST`](crate::domain::snapshot::CaptureFormat)): compliance actions
    /// with their configurations, settings catalog settings (every page) with their setting
    /// definitions (returned apart from the content), administrative template values with their
    /// definition and presentation values, and assignments and scope tags when asked. Secret
    /// values are dropped.
    ///
    /// The snapshot's [`Snapshot::read_at`] is when the policy's own GET was sent, by the
    /// attempt Graph answered: not when the capture was asked for, since the GET may first wait
    /// for the tenant's request budget and for Retry-After pauses (minutes), and content read
    /// after such a wait is newer than a read another run made meanwhile. The later requests of
    /// the read (settings pages, their values) do not move it: the policy's own GET is the one
    /// request every policy type makes, so reads of one policy compare on the same request; it
    /// returns the policy object, whose presence a mark of being gone from Intune is about; and
    /// it is the read's earliest part, so the read is never taken for newer than any of its
    /// content.
    pub async fn capture_policy(
        &self,
        creds: &TenantCredentials,
        policy_type: PolicyType,
        graph_id: &str,
        options: CaptureOptions,
    ) -> Result<Snapshot, GraphError> {
        if !is_graph_id(graph_id) {
            return Err(GraphError::new(
                ReasonCode::PolicyNotFound,
                "the policy id is not a Graph id",
            ));
        }
        let spec = policy_type.spec();
        let base = &self.inner.config.graph_base;
        // One budget for the policy and every collection read with it.
        let mut budget = ReadBudget::new(self.inner.config.max_read_bytes);
        let item_url = spec.item_url(base, graph_id, options.include_assignments);
        let answer = self.send(creds, &Request::get(&item_url)).await?;
        budget.spend(answer.bytes)?;
        let read_at = answer.sent_at;
        let Value::Object(mut policy) = answer.body else {
            return Err(GraphError::new(
                ReasonCode::InvalidResponse,
                "the policy is not a JSON object",
            ));
        };
        let assignments = policy.remove("assignments");
        let actions = policy.remove("scheduledActionsForRule");
        policy.retain(|key, _| !key.contains("@odata.context"));
        if !options.include_scope_tags {
            policy.remove("roleScopeTagIds");
        }
        let display_name = policy
            .get(spec.name_property)
            .and_then(Value::as_str)
            .and_then(|name| storable_name(name, MAX_DISPLAY_NAME_CHARS))
            .unwrap_or_else(|| graph_id.to_owned());

        let mut payload = Map::new();
        payload.insert("policyType".into(), Value::from(policy_type.as_str()));
        payload.insert("policy".into(), Value::Object(policy));
        if let Some(actions) = actions {
            payload.insert("scheduledActionsForRule".into(), actions);
        }
        let mut definitions = BTreeMap::new();
        if let Some((segment, url)) = spec.sub_collection_url(base, graph_id) {
            let mut children = self
                .pages_within(creds, &url, &mut budget)
                .await
                .map_err(changed_while_read)?;
            for child in &mut children {
                let Value::Object(fields) = child else {
                    continue;
                };
                // Names are not content: each definition is stored once, apart from the policy.
                if let Some(Value::Array(inline)) = fields.remove("settingDefinitions") {
                    for definition in inline {
                        if let Some(parsed) = setting_definition(&definition) {
                            definitions.insert(parsed.id.clone(), parsed);
                        }
                    }
                }
                let child_id = fields.get("id").and_then(Value::as_str);
                // The id goes into a URL path: anything but a Graph id could walk elsewhere.
                if child_id.is_some_and(|id| !is_graph_id(id)) {
                    return Err(GraphError::new(
                        ReasonCode::InvalidResponse,
                        format!("an entry of {segment} has an id that is not a Graph id"),
                    ));
                }
                let per_child = child_id.and_then(|id| spec.per_child_url(base, graph_id, id));
                if let Some((segment, url)) = per_child {
                    let values = self
                        .pages_within(creds, &url, &mut budget)
                        .await
                        .map_err(changed_while_read)?;
                    fields.insert(segment.into(), Value::Array(values));
                }
            }
            payload.insert(segment.into(), Value::Array(children));
        }
        if options.include_assignments {
            payload.insert(
                "assignments".into(),
                assignments.unwrap_or_else(|| Value::Array(Vec::new())),
            );
        }
        let mut payload = Value::Object(payload);
        // Stored only if it can be read back (and diffed and restored) later.
        if nesting_depth(&payload) > MAX_PAYLOAD_DEPTH {
            return Err(GraphError::new(
                ReasonCode::InvalidResponse,
                format!(
                    "the policy nests deeper than {MAX_PAYLOAD_DEPTH} levels and cannot be stored"
                ),
            ));
        }
        drop_secret_values(&mut payload);
        Ok(Snapshot::new(
            policy_type,
            graph_id.to_owned(),
            display_name,
            &payload,
            options,
        )
        .with_definitions(definitions.into_values().collect())
        .with_read_at(read_at))
    }

    /// Asks the token endpoint for a new token (the cache then holds it) and reads the
    /// application permissions in its `roles` claim.
    pub async fn granted_roles(&self, creds: &TenantCredentials) -> Result<Granted, TokenFailure> {
        let inner = &self.inner;
        let token = inner
            .tokens
            .fresh(&inner.http, &inner.config, creds)
            .await?;
        Ok(Granted {
            roles: jwt::roles(&token),
        })
    }

    /// Whether Entra ID gives the app a token, from the cache when it holds a valid one: a run
    /// asks before its items, so a refused secret fails the run once, not each item.
    pub async fn check_token(&self, creds: &TenantCredentials) -> Result<(), TokenFailure> {
        let inner = &self.inner;
        inner.tokens.check(&inner.http, &inner.config, creds).await
    }

    /// Reads the first page of `policy_type`'s list, as a sync starts, and counts its entries.
    pub async fn first_page(
        &self,
        creds: &TenantCredentials,
        policy_type: PolicyType,
    ) -> Result<usize, GraphError> {
        let url = policy_type.spec().list_url(&self.inner.config.graph_base);
        self.get_json(creds, &url)
            .await?
            .get("value")
            .and_then(Value::as_array)
            .map(Vec::len)
            .ok_or_else(|| {
                GraphError::new(ReasonCode::InvalidResponse, "a page has no value array")
            })
    }

    /// Every `value` entry of a collection, requesting each full `@odata.nextLink` until none.
    /// A nextLink to a page already read (a loop), more than [`MAX_PAGES`] pages, more than
    /// [`GraphConfig::max_collection_items`] entries or more than
    /// [`GraphConfig::max_read_bytes`] of answers fail as `invalid_response`.
    pub async fn get_all_pages(
        &self,
        creds: &TenantCredentials,
        first_url: &str,
    ) -> Result<Vec<Value>, GraphError> {
        let mut budget = ReadBudget::new(self.inner.config.max_read_bytes);
        self.pages_within(creds, first_url, &mut budget).await
    }

    /// [`Self::get_all_pages`] with its pages counted against `budget`, which a capture shares
    /// among all the collections it reads.
    async fn pages_within(
        &self,
        creds: &TenantCredentials,
        first_url: &str,
        budget: &mut ReadBudget,
    ) -> Result<Vec<Value>, GraphError> {
        let max_items = self.inner.config.max_collection_items;
        let mut items = Vec::new();
        // The pages read, by the sha256 of their URL: a nextLink may be long.
        let mut read: HashSet<[u8; 32]> = HashSet::new();
        let mut next = Some(first_url.to_owned());
        while let Some(url) = next.take() {
            if !read.insert(Sha256::digest(url.as_bytes()).into()) {
                return Err(GraphError::new(
                    ReasonCode::InvalidResponse,
                    "@odata.nextLink points to a page already read",
                ));
            }
            if read.len() > MAX_PAGES {
                return Err(GraphError::new(
                    ReasonCode::InvalidResponse,
                    "Graph kept sending more pages",
                ));
            }
            let answer = self.send(creds, &Request::get(&url)).await?;
            budget.spend(answer.bytes)?;
            let Value::Object(mut page) = answer.body else {
                return Err(GraphError::new(
                    ReasonCode::InvalidResponse,
                    "a page is not a JSON object",
                ));
            };
            match page.remove("value") {
                Some(Value::Array(values)) if items.len() + values.len() > max_items => {
                    return Err(GraphError::new(
                        ReasonCode::InvalidResponse,
                        format!("the collection holds more than {max_items} entries"),
                    ));
                }
                Some(Value::Array(values)) => items.extend(values),
                _ => {
                    return Err(GraphError::new(
                        ReasonCode::InvalidResponse,
                        "a page has no value array",
                    ));
                }
            }
            next = match page.remove("@odata.nextLink") {
                None | Some(Value::Null) => None,
                Some(Value::String(link)) => Some(self.checked_next_link(link)?),
                Some(_) => {
                    return Err(GraphError::new(
                        ReasonCode::InvalidResponse,
                        "@odata.nextLink is not a string",
                    ));
                }
            };
        }
        Ok(items)
    }

    /// A nextLink is followed as given, but only to the configured Graph origin: the bearer token
    /// must never be sent anywhere else.
    fn checked_next_link(&self, link: String) -> Result<String, GraphError> {
        match (&self.inner.graph_origin, url_origin::of(&link)) {
            (Some(expected), Some(actual)) if *expected == actual => Ok(link),
            _ => Err(GraphError::new(
                ReasonCode::InvalidResponse,
                "@odata.nextLink points outside Graph",
            )),
        }
    }

    /// One authenticated GET through the tenant's limiter, with retries, as JSON.
    pub async fn get_json(
        &self,
        creds: &TenantCredentials,
        url: &str,
    ) -> Result<Value, GraphError> {
        Ok(self.send(creds, &Request::get(url)).await?.body)
    }

    /// One authenticated request through the tenant's limiter (writes also through its write
    /// budget), with a fresh token after a 401 and retries as [`Request::idempotent`] allows.
    /// An error says whether Graph may have acted on the request ([`GraphError::may_have_acted`]):
    /// an idempotent write sent again after a lost answer may end on a refusal (a 429, a 401)
    /// although its first attempt landed.
    pub(super) async fn send(
        &self,
        creds: &TenantCredentials,
        request: &Request<'_>,
    ) -> Result<Answer, GraphError> {
        let mut unclear = None;
        self.send_attempts(creds, request, &mut unclear)
            .await
            .map_err(|error| match unclear {
                Some(earlier) if !error.may_have_acted() => {
                    // "PATCH …: no answer in time; sent again: answered 429 …".
                    let what =
                        describe(&request.method, request.url, &self.inner.config.graph_base);
                    let rest = |message: &str| match message.strip_prefix(what.as_str()) {
                        Some(rest) => rest.trim_start_matches(':').trim_start().to_owned(),
                        None => message.to_owned(),
                    };
                    let message = format!(
                        "{what}: {}; sent again: {}",
                        rest(earlier.message()),
                        rest(error.message())
                    );
                    error.after_unclear_attempt(message)
                }
                _ => error,
            })
    }

    /// [`Self::send`]'s attempts; `unclear` is set to the error of the first attempt whose answer
    /// may have come after Graph acted on the request, when it is sent again.
    async fn send_attempts(
        &self,
        creds: &TenantCredentials,
        request: &Request<'_>,
        unclear: &mut Option<GraphError>,
    ) -> Result<Answer, GraphError> {
        let inner = &self.inner;
        let limiter = inner.limiters.for_tenant(creds.tenant_id.as_str());
        let mut attempt = 0;
        let mut refreshed = false;
        loop {
            attempt += 1;
            let token = inner
                .tokens
                .token(&inner.http, &inner.config, creds)
                .await?;
            if request.is_write() {
                let budget = super::interrupt::waiting(limiter.acquire_write_slot());
                activity::waiting_for(GraphWaitReason::RequestBudget, None, budget).await?;
            }
            let outcome = {
                // A tenant paused by a Retry-After waits for Graph's throttle; otherwise only
                // for this tenant's own request budget.
                let paused = limiter.pause_left();
                let why = match paused {
                    Some(_) => GraphWaitReason::Throttled,
                    None => GraphWaitReason::RequestBudget,
                };
                let acquire = super::interrupt::waiting(limiter.acquire());
                let _permit = activity::waiting_for(why, paused, acquire).await??;
                self.send_once(request, &token).await
            };
            match outcome {
                Ok(answer) => return Ok(answer),
                Err(Failure::Unauthorized(_)) if !refreshed => {
                    // A revoked or rotated token: one fresh token, then the answer is final.
                    refreshed = true;
                    attempt -= 1;
                    activity::count(Count::Retry);
                    inner.tokens.invalidate(creds, &token).await?;
                }
                Err(Failure::Transient {
                    error,
                    retry_after,
                    why,
                    ambiguous,
                }) if attempt < inner.config.retry.max_attempts
                    && (request.idempotent || !ambiguous) =>
                {
                    activity::count(Count::Retry);
                    if ambiguous && unclear.is_none() {
                        *unclear = Some(error);
                    }
                    // A 429 without a positive Retry-After (none, 0, a date passed) pauses the
                    // tenant too, long enough to leave Intune's throttling window
                    // (`RetryPolicy::tenant_pause`); a zero one is never retried at once.
                    let throttled = matches!(why, GraphWaitReason::Throttled);
                    let retry_after =
                        inner
                            .config
                            .retry
                            .tenant_pause(attempt, retry_after, throttled);
                    if let Some(wait) = retry_after {
                        limiter.pause_for(wait);
                    }
                    let backoff = inner.config.retry.delay(attempt, retry_after);
                    metrics::graph_retry_wait(backoff);
                    let sleep = super::interrupt::waiting(tokio::time::sleep(backoff));
                    activity::waiting_for(why, Some(backoff), sleep).await?;
                }
                Err(Failure::Transient {
                    error,
                    ambiguous: true,
                    ..
                }) => return Err(error.acted_maybe()),
                Err(
                    Failure::Final(error)
                    | Failure::Unauthorized(error)
                    | Failure::Transient { error, .. },
                ) => return Err(error),
            }
        }
    }

    async fn send_once(&self, request: &Request<'_>, token: &str) -> Result<Answer, Failure> {
        let what = describe(&request.method, request.url, &self.inner.config.graph_base);
        // Taken once the attempt holds its permit: every wait before the send is behind it.
        let sent_at = Timestamp::now().millis();
        activity::count(Count::Request);
        let mut builder = self
            .inner
            .http
            .request(request.method.clone(), request.url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(self.inner.config.request_timeout);
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        let response = builder.send().await.map_err(|e| {
            metrics::graph_answer(None);
            if e.is_builder() {
                // Nothing was sent, and the same request would fail the same way.
                Failure::Final(GraphError::new(
                    ReasonCode::InvalidResponse,
                    format!("{what}: the request could not be built"),
                ))
            } else {
                transport_failure(&e, &what)
            }
        })?;
        let status = response.status();
        metrics::graph_answer(Some(status.as_u16()));
        match status.as_u16() {
            429 => activity::count(Count::Throttled),
            500..=599 => activity::count(Count::ServerError),
            _ => {}
        }
        let wait = retry_after(response.headers());
        let body = match read_body(response, self.inner.config.max_body_bytes).await {
            Ok(body) => body,
            Err(BodyError::Transport(e)) => return Err(transport_failure(&e, &what)),
            // The same request would get the same answer: not worth another attempt.
            Err(BodyError::TooLarge) => {
                return Err(Failure::Final(GraphError::new(
                    ReasonCode::InvalidResponse,
                    format!(
                        "{what}: the answer is larger than {} bytes",
                        self.inner.config.max_body_bytes
                    ),
                )));
            }
        };
        if status.is_success() {
            // A write's answer may have no body (204). Any other success whose body does not
            // parse is almost always a transfer cut short (a proxy or Graph closing the
            // stream); asking again usually gets the whole answer.
            if body.is_empty() && request.is_write() {
                return Ok(Answer {
                    status: status.as_u16(),
                    body: Value::Null,
                    bytes: 0,
                    sent_at,
                });
            }
            return match serde_json::from_slice(&mend_lone_surrogates(&body)) {
                Ok(json) => Ok(Answer {
                    status: status.as_u16(),
                    body: json,
                    bytes: body.len(),
                    sent_at,
                }),
                Err(_) => Err(Failure::Transient {
                    error: GraphError::new(
                        ReasonCode::InvalidResponse,
                        format!("{what}: the answer is not valid JSON"),
                    ),
                    retry_after: None,
                    why: GraphWaitReason::Unreachable,
                    ambiguous: true,
                }),
            };
        }
        let message = format!("{what} answered {status}: {}", error_detail(&body));
        Err(classify(status, message, wait))
    }
}

/// The longest setting definition id stored (the catalog's ids are a few hundred characters at
/// most); a longer one would not fit the primary key's index on PostgreSQL.
const MAX_DEFINITION_ID_BYTES: usize = 1_024;

/// The body with every `\uXXXX` escape of a lone UTF-16 surrogate (one not in a high-low pair)
/// replaced by `\uFFFD`, the replacement character. .NET writes such escapes for a string cut
/// in the middle of a pair (a policy name, say) and serde_json refuses them: one odd name would
/// otherwise fail the whole page. Both escapes are six bytes, so the body keeps its length; it is
/// copied only if one is found.
fn mend_lone_surrogates(body: &[u8]) -> Cow<'_, [u8]> {
    /// The UTF-16 unit of a `\uXXXX` escape starting at `at`, if there is one.
    fn escape_at(body: &[u8], at: usize) -> Option<u16> {
        let escape = body.get(at..at + 6)?;
        if escape[0] != b'\\' || escape[1] != b'u' {
            return None;
        }
        let hex = std::str::from_utf8(&escape[2..]).ok()?;
        u16::from_str_radix(hex, 16).ok()
    }
    let mut mended: Option<Vec<u8>> = None;
    let (mut at, mut in_string) = (0, false);
    while at < body.len() {
        match (in_string, body[at]) {
            (false, b'"') => in_string = true,
            (false, _) => {}
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                let step = match escape_at(body, at) {
                    Some(0xD800..=0xDBFF)
                        if matches!(escape_at(body, at + 6), Some(0xDC00..=0xDFFF)) =>
                    {
                        12
                    }
                    Some(0xD800..=0xDFFF) => {
                        let out = mended.get_or_insert_with(|| body.to_vec());
                        out[at..at + 6].copy_from_slice(b"\\uFFFD");
                        6
                    }
                    Some(_) => 6,
                    // Any other escape is two bytes (an invalid one fails the parse anyway).
                    None => 2,
                };
                at += step;
                continue;
            }
            (true, _) => {}
        }
        at += 1;
    }
    mended.map_or(Cow::Borrowed(body), Cow::Owned)
}

/// Why an answer body was not read.
pub(super) enum BodyError {
    /// It is (or says it is) longer than the cap.
    TooLarge,
    /// The transfer failed.
    Transport(reqwest::Error),
}

/// Reads an answer body of at most `cap` bytes: a longer `Content-Length` is refused before
/// anything is read, and reading stops at the first chunk past the cap (a body without a length,
/// or with a false one).
pub(super) async fn read_body(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, BodyError> {
    let announced = response.content_length();
    if announced.is_some_and(|len| len > cap as u64) {
        return Err(BodyError::TooLarge);
    }
    // Trusted for the first allocation only up to a megabyte.
    let mut body = Vec::with_capacity(announced.map_or(0, |len| len as usize).min(1 << 20));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > cap {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A setting definition as stored: its id, display name and JSON; `None` without a storable id
/// (empty, too long, or with control characters: the viewer then shows the setting's id). The
/// name is made storable as a policy's is.
fn setting_definition(definition: &Value) -> Option<SettingDefinition> {
    let id = definition.get("id")?.as_str()?;
    if id.is_empty() || id.len() > MAX_DEFINITION_ID_BYTES || id.chars().any(char::is_control) {
        tracing::warn!(
            id_bytes = id.len(),
            "Graph sent a setting definition whose id cannot be stored; skipped"
        );
        return None;
    }
    let id = id.to_owned();
    let display_name = definition
        .get("displayName")
        .and_then(Value::as_str)
        .and_then(|name| storable_name(name, MAX_DISPLAY_NAME_CHARS))
        .unwrap_or_else(|| id.clone());
    Some(SettingDefinition {
        id,
        display_name,
        json: canonical_json(definition),
    })
}

/// Removes the value of every secret (an encrypted OMA setting, a secret setting value) while
/// keeping what marks it as one: a backup never holds a secret, not even encrypted, and its
/// plain text is never asked for.
fn drop_secret_values(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            if is_secret(fields) {
                fields.remove("value");
            }
            fields.values_mut().for_each(drop_secret_values);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_secret_values),
        _ => {}
    }
}

/// A read of a policy's sub-collection (or of one entry's values) that Graph answered 404: the
/// policy itself was there a moment ago, so what went is a part of it (a setting removed while
/// it was read), not the policy. Only a 404 on the policy's own URL says it was deleted in
/// Intune; this fails the capture alone, to be asked again. Any other error is passed on.
fn changed_while_read(error: GraphError) -> GraphError {
    if error.reason_code() != ReasonCode::PolicyNotFound {
        return error;
    }
    GraphError::new(
        ReasonCode::InvalidResponse,
        format!(
            "the policy changed while it was read (a part of it is gone: {}); capture it again",
            error.message()
        ),
    )
}

/// Maps a non-success status to what the retry loop does and the reason code if it gives up.
fn classify(status: StatusCode, message: String, retry_after: Option<Duration>) -> Failure {
    match status.as_u16() {
        400 => Failure::Final(GraphError::new(ReasonCode::GraphRejected, message)),
        401 => Failure::Unauthorized(GraphError::new(ReasonCode::AuthenticationFailed, message)),
        403 => Failure::Final(GraphError::new(ReasonCode::PermissionDenied, message)),
        404 => Failure::Final(GraphError::new(ReasonCode::PolicyNotFound, message)),
        429 => Failure::Transient {
            error: GraphError::new(ReasonCode::Throttled, message),
            retry_after,
            why: GraphWaitReason::Throttled,
            ambiguous: false,
        },
        503 => Failure::Transient {
            error: GraphError::new(ReasonCode::Throttled, message),
            retry_after,
            why: GraphWaitReason::Unavailable,
            ambiguous: false,
        },
        // A gateway timeout: Graph may have done the work behind it.
        504 => Failure::Transient {
            error: GraphError::new(ReasonCode::GraphUnavailable, message),
            retry_after,
            why: GraphWaitReason::Unavailable,
            ambiguous: true,
        },
        500..=599 => Failure::Final(GraphError::new(ReasonCode::GraphUnavailable, message)),
        // Never followed (see `GraphClient::new`), and asking again gets the same answer.
        300..=399 => Failure::Final(GraphError::new(
            ReasonCode::InvalidResponse,
            format!("Graph answered a redirect: {message}"),
        )),
        _ => Failure::Final(GraphError::new(ReasonCode::UnknownError, message)),
    }
}

fn transport_failure(error: &reqwest::Error, what: &str) -> Failure {
    let error = if error.is_timeout() {
        GraphError::new(ReasonCode::Timeout, format!("{what}: no answer in time"))
    } else {
        GraphError::new(
            ReasonCode::GraphUnavailable,
            format!("{what}: Graph could not be reached"),
        )
    };
    // A request that timed out may have reached Graph.
    Failure::Transient {
        error,
        retry_after: None,
        why: GraphWaitReason::Unreachable,
        ambiguous: true,
    }
}

/// `GET deviceManagement/...` without the base URL and the query string.
fn describe(method: &Method, url: &str, graph_base: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    let relative = path
        .strip_prefix(graph_base.trim_end_matches('/'))
        .unwrap_or(path);
    format!("{method} {}", relative.trim_start_matches('/'))
}

/// Graph's `error.code: error.message`, or the start of a body that is not Graph's error shape.
/// The sanitizer in [`GraphError::new`] removes whatever secrets it contains.
fn error_detail(body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<Value>(body) {
        if let Some(error) = json.get("error") {
            let code = error.get("code").and_then(Value::as_str).unwrap_or("");
            let message = error.get("message").and_then(Value::as_str).unwrap_or("");
            return format!("{code}: {message}");
        }
    }
    String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned()
}

impl PolicySource for GraphClient {
    fn list_policies<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
    ) -> GraphFuture<'a, Vec<PolicyListing>> {
        Box::pin(GraphClient::list_policies(self, creds, policy_type))
    }

    fn capture_policy<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
        graph_id: &'a str,
        options: CaptureOptions,
    ) -> GraphFuture<'a, Snapshot> {
        Box::pin(GraphClient::capture_policy(
            self,
            creds,
            policy_type,
            graph_id,
            options,
        ))
    }

    fn granted_roles<'a>(&'a self, creds: &'a TenantCredentials) -> TokenFuture<'a> {
        Box::pin(GraphClient::granted_roles(self, creds))
    }

    fn first_page<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        policy_type: PolicyType,
    ) -> GraphFuture<'a, usize> {
        Box::pin(GraphClient::first_page(self, creds, policy_type))
    }
}

/// Scheme, host and port of a URL, to keep nextLinks on the Graph host.
mod url_origin {
    use super::Url;

    pub(super) type Origin = (String, Option<String>, Option<u16>);

    pub(super) fn of(raw: &str) -> Option<Origin> {
        let url = Url::parse(raw).ok()?;
        Some((
            url.scheme().to_owned(),
            url.host_str().map(str::to_owned),
            url.port_or_known_default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A JSON string literal of these UTF-16 units, every one written as a `\uXXXX` escape.
    fn escaped(units: &[u16]) -> String {
        let inner: String = units.iter().map(|u| format!("\\u{u:04x}")).collect();
        format!("\"{inner}\"")
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let read = |raw: &str| -> Value {
            serde_json::from_slice(&mend_lone_surrogates(raw.as_bytes())).expect("parses")
        };
        assert_eq!(
            read(r#"{"name": "Base\ud800line", "b": "\udc00", "ok": "\ud83d\ude00"}"#),
            serde_json::json!({"name": "Base\u{fffd}line", "b": "\u{fffd}", "ok": "😀"})
        );
        // The premise: serde_json alone refuses it.
        assert!(serde_json::from_str::<Value>(r#""Base\ud800line""#).is_err());
        // Escaped backslashes and text outside strings are left alone.
        assert_eq!(read(r#"["\\ud800", 1]"#), serde_json::json!(["\\ud800", 1]));
        let clean = br#"{"a": "\u00e9\ud83d\ude00 \" \\"}"#;
        assert!(matches!(mend_lone_surrogates(clean), Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn any_utf16_text_reads_as_dotnet_meant_it(units in proptest::collection::vec(
            prop_oneof![any::<u16>(), 0xD800u16..0xE000], 0..40)) {
            let raw = escaped(&units);
            let read: String = serde_json::from_slice(&mend_lone_surrogates(raw.as_bytes()))
                .expect("every escape is valid after mending");
            prop_assert_eq!(read, String::from_utf16_lossy(&units));
        }

        #[test]
        fn valid_json_is_never_changed(text in any::<String>()) {
            let json = serde_json::to_string(&serde_json::json!({"k": text, "e": "\u{1F600}"}))
                .expect("serializes");
            prop_assert!(matches!(mend_lone_surrogates(json.as_bytes()), Cow::Borrowed(_)));
        }
    }
}
