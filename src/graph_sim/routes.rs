//! The simulator's HTTP surface: token endpoint, Graph collections and the `/_sim` admin API.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::knobs::{Fault, Knobs, TokenFault};
use super::mutation::Mutation;
use super::resources::{QueryOptions, Reader, Resource};
use super::{lock, writes, IssuedToken, SimCounters, SimState};

/// The most requests one `$batch` may hold.
const MAX_BATCH: usize = 20;
/// How long a hung request hangs: far beyond any client timeout.
const HANG: Duration = Duration::from_secs(600);

type Shared = Arc<SimState>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .route("/{tenant}/discovery/v2.0/keys", get(signing_keys))
        .route("/_sim/knobs", get(read_knobs).post(patch_knobs))
        .route("/_sim/counters", get(counters))
        .route("/_sim/mutate", post(mutate))
        .route("/_sim/revoke_tokens", post(revoke_tokens))
        .fallback(graph)
        .with_state(state)
}

/// Graph's error body: `{"error": {"code", "message", "innerError"}}`.
pub(super) fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "innerError": {"request-id": "00000000-0000-4000-8000-000000000000"}}});
    (status, Json(body)).into_response()
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant. A token is a JWT whose
/// payload carries the app's `roles` claim, as Entra ID's app-only tokens do (its signature is
/// random: nobody verifies it).
async fn token(
    State(sim): State<Shared>,
    Path(tenant): Path<String>,
    uri: Uri,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let arrival = Instant::now();
    // Every answer of the token endpoint is logged the same way.
    let record = |status: StatusCode| {
        sim.record(
            arrival,
            "POST",
            "token".into(),
            (uri.path(), uri.query().unwrap_or("")),
            status.as_u16(),
            None,
        )
    };
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let client_id = field("client_id").unwrap_or_default();
    let knobs = sim.knobs();
    let app = knobs.app(&tenant);
    let tenant_ok = tenant.len() == 36 && tenant.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let unavailable = knobs.token_unavailable.filter(|u| {
        let mut hits = lock(&sim.token_fault_hits);
        let fires = *hits < u.times;
        *hits += u32::from(fires);
        fires
    });
    if let Some(unavailable) = unavailable {
        let status =
            StatusCode::from_u16(unavailable.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut response = token_error(
            status,
            "temporarily_unavailable",
            if status == StatusCode::TOO_MANY_REQUESTS {
                50_196
            } else {
                90_033
            },
            "The service is temporarily unavailable or throttling requests; try again later.",
        );
        record(status);
        let mut response = (response.0, Json(std::mem::take(&mut response.1))).into_response();
        if let Some(seconds) = unavailable.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        return response;
    }
    let (status, mut body) = if !tenant_ok {
        token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90_002,
            &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
        )
    } else if field("grant_type") != Some("client_credentials")
        || field("scope") != Some("https://graph.microsoft.com/.default")
    {
        token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900_144,
            "The request body must contain the grant_type and scope parameters.",
        )
    } else if let Some(fault) = app.token_error {
        match fault {
            TokenFault::WrongSecret => wrong_secret(client_id),
            TokenFault::ExpiredSecret => token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7_000_222,
                &format!("The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."),
            ),
            TokenFault::AppNotFound => token_error(
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700_016,
                &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."),
            ),
        }
    } else if field("client_secret") != Some(sim.client_secret.as_str()) || client_id.is_empty() {
        wrong_secret(client_id)
    } else {
        let lifetime = knobs.token_lifetime_secs;
        let roles = app.roles();
        let access_token = jwt_for(&tenant, client_id, &roles, lifetime);
        let issued = IssuedToken {
            tenant: tenant.to_ascii_lowercase(),
            client_id: client_id.to_owned(),
            roles,
            expires_at: arrival + Duration::from_secs(lifetime),
        };
        lock(&sim.tokens).insert(access_token.clone(), issued);
        (
            StatusCode::OK,
            json!({"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access_token}),
        )
    };
    // What a refusal echoes back beyond Microsoft's words (the app's setup says what).
    if let (false, Some(detail), Some(Value::String(description))) = (
        status.is_success(),
        app.token_error_detail.as_deref(),
        body.get_mut("error_description"),
    ) {
        description.push(' ');
        description.push_str(detail);
    }
    record(status);
    (status, Json(body)).into_response()
}

/// AADSTS7000215, as Entra ID answers a secret that is not the app's.
fn wrong_secret(client_id: &str) -> (StatusCode, Value) {
    token_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        7_000_215,
        &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
    )
}

/// The token endpoint's error body as Microsoft documents it: the OAuth `error`, a description
/// that starts with the AADSTS code and ends with the trace details, and `error_codes`.
fn token_error(status: StatusCode, error: &str, code: u32, message: &str) -> (StatusCode, Value) {
    let trace_id = uuid_like();
    let correlation_id = uuid_like();
    let timestamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    (
        status,
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {message} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"),
            "error_codes": [code],
            "timestamp": timestamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        }),
    )
}

/// A random id in GUID form (the simulator's trace and token ids).
fn uuid_like() -> String {
    let mut rng = rand::rng();
    let (a, b, c, d): (u32, u16, u16, u64) =
        (rng.random(), rng.random(), rng.random(), rng.random());
    format!(
        "{a:08x}-{b:04x}-4{:03x}-8{:03x}-{:012x}",
        c & 0x0fff,
        (d >> 48) & 0x0fff,
        d & 0xffff_ffff_ffff
    )
}

/// An app-only access token: `header.payload.signature`, each base64url, the payload holding
/// the claims Entra ID puts in one (the `roles` claim only when some permission is granted).
fn jwt_for(tenant: &str, client_id: &str, roles: &[String], lifetime: u64) -> String {
    use crate::server::graph::jwt::encode_base64url;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let tenant = tenant.to_ascii_lowercase();
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "graph-sim"});
    let mut claims = json!({
        "aud": "https://graph.microsoft.com",
        "iss": format!("https://sts.windows.net/{tenant}/"),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime as i64,
        "appid": client_id,
        "idtyp": "app",
        "tid": tenant,
        "uti": uuid_like(),
        "ver": "1.0",
    });
    if let (false, Value::Object(fields)) = (roles.is_empty(), &mut claims) {
        fields.insert("roles".into(), json!(roles));
    }
    let signature: [u8; 32] = rand::rng().random();
    format!(
        "{}.{}.{}",
        encode_base64url(header.to_string().as_bytes()),
        encode_base64url(claims.to_string().as_bytes()),
        encode_base64url(&signature)
    )
}

async fn read_knobs(State(sim): State<Shared>) -> Json<Knobs> {
    Json(sim.knobs().as_ref().clone())
}

/// `POST /_sim/knobs` with a JSON object of the knobs to change.
async fn patch_knobs(State(sim): State<Shared>, Json(patch): Json<Value>) -> Response {
    let current = sim.knobs();
    match current.patched(&patch) {
        Ok(knobs) => {
            *sim.knobs.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(knobs.clone());
            Json(knobs).into_response()
        }
        Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

/// `GET /_sim/counters`: the request log, the last [`super::REQUEST_LOG_CAPACITY`] requests.
async fn counters(State(sim): State<Shared>) -> Json<SimCounters> {
    Json(SimCounters {
        requests: lock(&sim.log).iter().cloned().collect(),
    })
}

async fn revoke_tokens(State(sim): State<Shared>) -> StatusCode {
    lock(&sim.tokens).clear();
    StatusCode::NO_CONTENT
}

/// What a request gets.
enum Answer {
    Reply(Response),
    Hang,
}

/// Every Graph request: authenticate, throttle, inject faults, wait the latency, answer.
/// `POST /{version}/$batch` answers up to 20 requests in one.
async fn graph(
    State(sim): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let arrival = Instant::now();
    let knobs = sim.knobs();
    let path = uri.path();
    let query = uri.query().unwrap_or("");
    if is_batch(path) {
        let status;
        let response = if method == Method::POST {
            let response = batch(&sim, &knobs, arrival, path, &headers, &body).await;
            status = response.status().as_u16();
            response
        } else {
            status = 405;
            not_allowed(&method, path)
        };
        sim.record(
            arrival,
            method.as_str(),
            "batch".into(),
            (path, query),
            status,
            None,
        );
        return response;
    }
    let call = Call {
        method: &method,
        path,
        headers: &headers,
        params: &params,
        body: &body,
    };
    let (endpoint, answer) = decide(&sim, &knobs, arrival, &call);
    let status = match &answer {
        Answer::Reply(response) => response.status().as_u16(),
        Answer::Hang => 0,
    };
    sim.record(
        arrival,
        method.as_str(),
        endpoint,
        (path, query),
        status,
        call.logged_body(),
    );
    latency(&knobs).await;
    match answer {
        Answer::Reply(response) => response,
        Answer::Hang => hung().await,
    }
}

async fn latency(knobs: &Knobs) {
    let jitter = if knobs.latency_jitter_ms > 0 {
        rand::rng().random_range(0..=knobs.latency_jitter_ms)
    } else {
        0
    };
    let latency = knobs.latency_ms + jitter;
    // Not even a zero sleep: tokio's timer rounds a deadline up to its next millisecond, so a
    // "zero-latency" simulator answered about 1.3 ms late (measured: a capture's request took
    // 1.27 ms on average at zero latency, 40 % of a 1-policy run).
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
}

async fn hung() -> Response {
    tokio::time::sleep(HANG).await;
    graph_error(
        StatusCode::GATEWAY_TIMEOUT,
        "GatewayTimeout",
        "hung request released",
    )
}

fn is_batch(path: &str) -> bool {
    matches!(
        path.trim_matches('/').split_once('/'),
        Some(("beta" | "v1.0", "$batch"))
    )
}

/// 405 with Graph's error body: the resource takes no such request.
fn not_allowed(method: &Method, path: &str) -> Response {
    graph_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "BadRequest",
        &format!("The HTTP method '{method}' is not allowed on the resource '{path}'."),
    )
}

/// One Graph request (also one inside a batch).
struct Call<'a> {
    method: &'a Method,
    path: &'a str,
    headers: &'a HeaderMap,
    params: &'a [(String, String)],
    body: &'a [u8],
}

impl Call<'_> {
    fn is_write(&self) -> bool {
        *self.method != Method::GET && *self.method != Method::HEAD
    }

    /// What the request log keeps of the body: a write's JSON (or text); nothing for reads.
    fn logged_body(&self) -> Option<Value> {
        if !self.is_write() {
            return None;
        }
        Some(
            serde_json::from_slice(self.body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(self.body).into_owned())),
        )
    }
}

/// Decides the answer to one Graph request (also each request inside a batch); returns the
/// request log's endpoint name with it.
fn decide(sim: &SimState, knobs: &Knobs, arrival: Instant, call: &Call<'_>) -> (String, Answer) {
    let (method, path, headers, params) = (call.method, call.path, call.headers, call.params);
    let parsed = Resource::parse(path);
    let endpoint = match &parsed {
        Err(_) => "unknown".to_owned(),
        Ok((_, resource)) if call.is_write() => writes::endpoint(method, resource),
        Ok((_, resource)) => resource.endpoint(),
    };
    let reply = |response: Response| (endpoint.clone(), Answer::Reply(response));
    if call.is_write() && knobs.reject_writes {
        return reply(graph_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("The simulator is read-only (reject_writes): {method} {path} was refused."),
        ));
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let caller = lock(&sim.tokens)
        .get(bearer)
        .filter(|t| t.expires_at > arrival)
        .map(|t| (t.tenant.clone(), t.client_id.clone(), t.roles.clone()));
    let Some((tenant_id, client_id, roles)) = caller else {
        return reply(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty, expired or invalid.",
        ));
    };

    let key = (tenant_id.clone(), client_id);
    let write_limit = if call.is_write() {
        knobs.write_throttle_limit
    } else {
        0
    };
    let throttled = throttle(
        [
            (&sim.windows, knobs.throttle_limit),
            (&sim.write_windows, write_limit),
        ],
        knobs,
        arrival,
        &key,
    )
    .map(|(which, wait)| {
        let message = if which == 0 {
            "Too many requests for this app in this tenant."
        } else {
            "Too many write requests for this app in this tenant."
        };
        (wait, message)
    });
    if let Some((retry_after, message)) = throttled {
        let mut response = graph_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return reply(response);
    }

    let mut rng = rand::rng();
    if rng.random_bool(knobs.rate_hang.clamp(0.0, 1.0)) {
        return (endpoint, Answer::Hang);
    }
    if rng.random_bool(knobs.rate_503.clamp(0.0, 1.0)) {
        return reply(graph_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable.",
        ));
    }
    if rng.random_bool(knobs.rate_404.clamp(0.0, 1.0)) {
        return reply(graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The requested resource does not exist.",
        ));
    }
    if rng.random_bool(knobs.rate_malformed.clamp(0.0, 1.0)) {
        return reply(malformed());
    }

    let (version, resource) = match parsed {
        Ok(parsed) => parsed,
        Err(segment) => {
            return reply(graph_error(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("Resource not found for the segment '{segment}'."),
            ))
        }
    };
    // The token needs a permission that grants the resource (and, to write, the write
    // permission), and the app's setup may refuse some collections whatever its roles.
    let may_read = if call.is_write() {
        roles.iter().any(|role| role == writes::WRITE_ROLE)
    } else {
        roles
            .iter()
            .any(|role| resource.permission().roles().contains(&role.as_str()))
    };
    let refused = knobs
        .app(&tenant_id)
        .forbidden_collections
        .iter()
        .any(|collection| collection == resource.collection());
    if !may_read || refused {
        let needed = if call.is_write() {
            writes::WRITE_ROLE.to_owned()
        } else {
            resource.permission().roles().join(", ")
        };
        return reply(graph_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!("Application is not authorized to perform this operation. Application must have one of the following scopes: {needed}"),
        ));
    }
    if let Some((id, fault)) = resource
        .policy_id()
        .and_then(|id| knobs.faults.get(id).map(|f| (id, f)))
    {
        if let Some(answer) = forced_fault(sim, id, fault, bearer, call.is_write()) {
            return (endpoint, answer);
        }
    }
    if call.is_write() {
        let writable = matches!(
            resource,
            Resource::Policies(_) | Resource::Policy(..) | Resource::Action(..)
        );
        if !writable {
            return reply(not_allowed(method, path));
        }
        return reply(writes::answer(
            sim, &tenant_id, method, &resource, call.body,
        ));
    }
    let tenant = sim.tenant(&tenant_id);
    let reader = Reader {
        version_url: format!("{}/{version}", sim.base_url()),
        tenant: &tenant,
        options: QueryOptions::parse(&version, params),
    };
    let under_version = path
        .trim_start_matches('/')
        .strip_prefix(version.as_str())
        .unwrap_or(path);
    reply(reader.read(&resource, under_version))
}

/// Graph's JSON batching: `{"requests": [{"id", "method", "url", "headers"?, "body"?}]}`, up
/// to 20, answered as `{"responses": [{"id", "status", "headers", "body"}]}`. Each inner
/// request is authenticated, throttled and logged like a request of its own.
async fn batch(
    sim: &SimState,
    knobs: &Knobs,
    arrival: Instant,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let version = path.trim_matches('/').split('/').next().unwrap_or("beta");
    let bad = |message: &str| graph_error(StatusCode::BAD_REQUEST, "BadRequest", message);
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return bad("The batch request body is not JSON.");
    };
    let Some(requests) = request.get("requests").and_then(Value::as_array) else {
        return bad("The batch request body has no requests array.");
    };
    if requests.len() > MAX_BATCH {
        return bad(&format!(
            "Number of requests in a batch exceeds the limit of {MAX_BATCH}."
        ));
    }
    let mut responses = Vec::with_capacity(requests.len());
    for inner in requests {
        let field = |name: &str| inner.get(name).and_then(Value::as_str);
        let (Some(id), Some(method), Some(url)) = (field("id"), field("method"), field("url"))
        else {
            return bad("Each batch request needs an id, a method and a url.");
        };
        let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
            return bad(&format!("Invalid method '{method}' in request '{id}'."));
        };
        let (inner_path, query) = url.split_once('?').unwrap_or((url, ""));
        let full_path = format!("/{version}/{}", inner_path.trim_start_matches('/'));
        let params: Vec<(String, String)> = reqwest::Url::parse(&format!("http://sim/?{query}"))
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default();
        let inner_body = inner
            .get("body")
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let call = Call {
            method: &method,
            path: &full_path,
            headers,
            params: &params,
            body: &inner_body,
        };
        let (endpoint, answer) = decide(sim, knobs, arrival, &call);
        let response = match answer {
            Answer::Reply(response) => response,
            Answer::Hang => graph_error(
                StatusCode::GATEWAY_TIMEOUT,
                "GatewayTimeout",
                "The request timed out.",
            ),
        };
        let status = response.status().as_u16();
        sim.record(
            arrival,
            method.as_str(),
            endpoint,
            (&full_path, query),
            status,
            call.logged_body(),
        );
        let mut inner_headers = serde_json::Map::new();
        inner_headers.insert("Content-Type".into(), json!("application/json"));
        if let Some(wait) = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
        {
            inner_headers.insert("Retry-After".into(), json!(wait));
        }
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        let body = serde_json::from_slice::<Value>(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        responses.push(json!({"id": id, "status": status, "headers": inner_headers, "body": body}));
    }
    latency(knobs).await;
    Json(json!({"responses": responses})).into_response()
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`: the discovery document MSAL reads
/// before it asks for a token.
async fn openid_configuration(
    State(sim): State<Shared>,
    Path(tenant): Path<String>,
    uri: Uri,
) -> Response {
    let arrival = Instant::now();
    let base = sim.base_url();
    let body = json!({
        "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/{tenant}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
        "rbac_url": "https://pas.windows.net"
    });
    sim.record(
        arrival,
        "GET",
        "openid".into(),
        (uri.path(), uri.query().unwrap_or("")),
        200,
        None,
    );
    Json(body).into_response()
}

/// `GET /{tenant}/discovery/v2.0/keys`: the signing keys the discovery document points to.
/// The simulator's tokens are not verified by anyone, so there are none.
async fn signing_keys() -> Json<Value> {
    Json(json!({"keys": []}))
}

/// `POST /_sim/mutate`: changes the tenant's policies as admins do in Intune (see the module
/// documentation for the JSON).
async fn mutate(State(sim): State<Shared>, Json(mutation): Json<Mutation>) -> Response {
    Json(sim.mutate(&mutation)).into_response()
}

/// Arrival times of accepted requests per (tenant, app), for a sliding-window throttle.
type ThrottleWindows = Mutex<HashMap<(String, String), VecDeque<Instant>>>;

/// Sliding-window throttles, each over its `windows` with `limit` requests per window (0: none),
/// checked together: `Some((index, retry_after_secs))` of the first one this app is over. The
/// arrival counts in every window only when none refuses it: rejected requests do not count, as
/// in Intune (a write refused by the write throttle leaves the overall one untouched). The
/// windows are locked together, in the order given, so the check and the count are one step.
fn throttle<const N: usize>(
    throttles: [(&ThrottleWindows, u32); N],
    knobs: &Knobs,
    arrival: Instant,
    key: &(String, String),
) -> Option<(usize, u64)> {
    let window = Duration::from_millis(knobs.throttle_window_ms.max(1));
    let mut counted = Vec::with_capacity(N);
    for (index, (windows, limit)) in throttles.into_iter().enumerate() {
        if limit == 0 {
            continue;
        }
        let mut windows = lock(windows);
        let seen = windows.entry(key.clone()).or_default();
        while seen
            .front()
            .is_some_and(|t| arrival.saturating_duration_since(*t) >= window)
        {
            seen.pop_front();
        }
        if seen.len() >= limit as usize {
            let oldest = seen.front().copied().unwrap_or(arrival);
            let wait = window.saturating_sub(arrival.saturating_duration_since(oldest));
            return Some((index, wait.as_secs_f64().ceil().max(1.0) as u64));
        }
        counted.push(windows);
    }
    for mut windows in counted {
        windows.entry(key.clone()).or_default().push_back(arrival);
    }
    None
}

/// A forced fault's answer, or `None` once a counted fault is used up.
fn forced_fault(
    sim: &SimState,
    id: &str,
    fault: &Fault,
    bearer: &str,
    write: bool,
) -> Option<Answer> {
    let counted = |times: u32| {
        let mut hits = lock(&sim.fault_hits);
        let used = hits.entry(id.to_owned()).or_default();
        *used += 1;
        *used <= times
    };
    Some(match fault {
        Fault::NotFound => Answer::Reply(graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "The policy was deleted.")),
        Fault::Forbidden => Answer::Reply(graph_error(StatusCode::FORBIDDEN, "Forbidden", "Application is not authorized to perform this operation. DeviceManagementConfiguration.Read.All is required.")),
        Fault::Unauthorized => Answer::Reply(graph_error(StatusCode::UNAUTHORIZED, "InvalidAuthenticationToken", "Access token validation failure.")),
        Fault::ServerError => Answer::Reply(graph_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "An internal server error occurred.")),
        Fault::LeakySecrets => Answer::Reply(graph_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            &format!("Upstream call failed. Request headers: Authorization: Bearer {bearer}; body: client_id=sim&client_secret={}&grant_type=client_credentials", sim.client_secret),
        )),
        Fault::Malformed => Answer::Reply(malformed()),
        Fault::Truncated { times } => {
            if !counted(*times) {
                return None;
            }
            Answer::Reply(malformed())
        }
        Fault::Hang => Answer::Hang,
        Fault::Throttle { times, retry_after_secs } => {
            if !counted(*times) {
                return None;
            }
            let mut response = graph_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Throttled (forced).");
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            Answer::Reply(response)
        }
        Fault::ThrottleWithoutRetryAfter { millis } => {
            let since = *lock(&sim.fault_since)
                .entry(id.to_owned())
                .or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_millis(*millis) {
                return None;
            }
            Answer::Reply(graph_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Throttled (forced, without Retry-After)."))
        }
        Fault::WriteAnswers { status } => {
            if !write {
                return None;
            }
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::ACCEPTED);
            Answer::Reply(status.into_response())
        }
        Fault::Unavailable { times } => {
            if !counted(*times) {
                return None;
            }
            Answer::Reply(graph_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "Unavailable (forced)."))
        }
    })
}

/// A 200 whose JSON stops half way.
fn malformed() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"value\": [{\"id\": \"12",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn zero_latency_answers_without_waiting_for_the_timer() {
        // A zero sleep is pending until tokio's timer reaches its next millisecond.
        assert!(latency(&Knobs::default()).now_or_never().is_some());
        let slow = Knobs {
            latency_ms: 5,
            ..Knobs::default()
        };
        assert!(latency(&slow).now_or_never().is_none());
    }
}
