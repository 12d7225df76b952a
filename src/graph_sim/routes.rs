//! The simulator's HTTP surface: token endpoint, Graph collections and the `/_sim` admin API.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use rand::Rng;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::knobs::{Fault, Knobs, TokenFault, POLICY_READ_ROLES};
use super::tenant::{Kind, SimPolicy, CHILD_PAGE_SIZE};
use super::{lock, IssuedToken, SimCounters, SimState};

/// Default and largest `$top` of a policy list.
const LIST_PAGE_SIZE: usize = 100;
const MAX_LIST_PAGE_SIZE: usize = 999;
/// How long a hung request hangs: far beyond any client timeout.
const HANG: Duration = Duration::from_secs(600);

type Shared = Arc<SimState>;

pub(super) fn router(state: Shared) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/_sim/knobs", get(read_knobs).post(patch_knobs))
        .route("/_sim/counters", get(counters))
        .route("/_sim/revoke_tokens", post(revoke_tokens))
        .fallback(graph)
        .with_state(state)
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
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
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let client_id = field("client_id").unwrap_or_default();
    let knobs = sim.knobs();
    let app = knobs.app(&tenant);
    let tenant_ok = tenant.len() == 36 && tenant.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let (status, body) = if !tenant_ok {
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
    sim.record(arrival, "token".into(), uri.path(), status.as_u16());
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

async fn counters(State(sim): State<Shared>) -> Json<SimCounters> {
    Json(SimCounters {
        requests: lock(&sim.log).clone(),
    })
}

async fn revoke_tokens(State(sim): State<Shared>) -> StatusCode {
    lock(&sim.tokens).clear();
    StatusCode::NO_CONTENT
}

/// A parsed Graph path: `/{version}/deviceManagement/{collection}[/{id}[/{segment}]]`.
struct Route {
    kind: Kind,
    id: Option<String>,
    segment: Option<String>,
}

impl Route {
    fn parse(path: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            [version, "deviceManagement", collection, rest @ ..]
                if matches!(*version, "beta" | "v1.0") && rest.len() <= 2 =>
            {
                Some(Self {
                    kind: Kind::from_collection(collection)?,
                    id: rest.first().map(|s| (*s).to_owned()),
                    segment: rest.get(1).map(|s| (*s).to_owned()),
                })
            }
            _ => None,
        }
    }

    fn endpoint(&self) -> String {
        match (&self.id, &self.segment) {
            (None, _) => format!("list:{}", self.kind.collection()),
            (Some(_), None) => format!("get:{}", self.kind.collection()),
            (Some(_), Some(segment)) => segment.clone(),
        }
    }
}

/// What a request gets.
enum Answer {
    Reply(Response),
    Hang,
}

/// Every Graph request: authenticate, throttle, inject faults, wait the latency, answer.
async fn graph(
    State(sim): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let arrival = Instant::now();
    let knobs = sim.knobs();
    let route = Route::parse(uri.path());
    let endpoint = route
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), Route::endpoint);
    let answer = decide(&sim, &knobs, arrival, route.as_ref(), &headers, &params);
    let status = match &answer {
        Answer::Reply(response) => response.status().as_u16(),
        Answer::Hang => 0,
    };
    sim.record(arrival, endpoint, uri.path(), status);
    let jitter = if knobs.latency_jitter_ms > 0 {
        rand::rng().random_range(0..=knobs.latency_jitter_ms)
    } else {
        0
    };
    tokio::time::sleep(Duration::from_millis(knobs.latency_ms + jitter)).await;
    match answer {
        Answer::Reply(response) => response,
        Answer::Hang => {
            tokio::time::sleep(HANG).await;
            graph_error(
                StatusCode::GATEWAY_TIMEOUT,
                "GatewayTimeout",
                "hung request released",
            )
        }
    }
}

fn decide(
    sim: &SimState,
    knobs: &Knobs,
    arrival: Instant,
    route: Option<&Route>,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Answer {
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
        return Answer::Reply(graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty, expired or invalid.",
        ));
    };

    if let Some(retry_after) = throttle(sim, knobs, arrival, (tenant_id.clone(), client_id)) {
        let mut response = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests for this app in this tenant.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        return Answer::Reply(response);
    }

    let mut rng = rand::rng();
    if rng.random_bool(knobs.rate_hang.clamp(0.0, 1.0)) {
        return Answer::Hang;
    }
    if rng.random_bool(knobs.rate_503.clamp(0.0, 1.0)) {
        return Answer::Reply(graph_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is temporarily unavailable.",
        ));
    }
    if rng.random_bool(knobs.rate_404.clamp(0.0, 1.0)) {
        return Answer::Reply(graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "The requested resource does not exist.",
        ));
    }
    if rng.random_bool(knobs.rate_malformed.clamp(0.0, 1.0)) {
        return Answer::Reply(malformed());
    }

    let Some(route) = route else {
        return Answer::Reply(graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Resource not found for the segment.",
        ));
    };
    // Intune's collections need a policy read permission in the token, and the app's setup
    // may refuse some collections whatever its roles.
    let may_read = roles
        .iter()
        .any(|role| POLICY_READ_ROLES.contains(&role.as_str()));
    let refused = knobs
        .app(&tenant_id)
        .forbidden_collections
        .iter()
        .any(|collection| collection == route.kind.collection());
    if !may_read || refused {
        return Answer::Reply(graph_error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "Application is not authorized to perform this operation. Application must have one of the following scopes: DeviceManagementConfiguration.Read.All, DeviceManagementConfiguration.ReadWrite.All",
        ));
    }
    if let Some(fault) = route
        .id
        .as_ref()
        .and_then(|id| knobs.faults.get(id).map(|f| (id, f)))
    {
        if let Some(answer) = forced_fault(sim, fault.0, fault.1, bearer) {
            return answer;
        }
    }
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let tenant = sim.tenant(&tenant_id);
    let Some(id) = &route.id else {
        return Answer::Reply(list_page(
            sim,
            route,
            &tenant.of_kind(route.kind).collect::<Vec<_>>(),
            params,
            param("$top"),
            param("$skiptoken"),
            param("$select"),
        ));
    };
    let Some(policy) = tenant.find(route.kind, id) else {
        return Answer::Reply(graph_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!("Resource '{id}' does not exist."),
        ));
    };
    let expand: Vec<&str> = param("$expand")
        .map(|e| e.split(',').map(str::trim).collect())
        .unwrap_or_default();
    Answer::Reply(match route.segment.as_deref() {
        None => {
            let mut item = SimPolicy::select(policy.to_json(), param("$select"));
            if let Value::Object(fields) = &mut item {
                if expand.contains(&"assignments") {
                    fields.insert("assignments".into(), Value::Array(policy.assignments()));
                }
                if expand.contains(&"settings") && policy.kind == Kind::ConfigurationPolicy {
                    let all = (0..policy.child_count)
                        .map(|i| policy.child(i, false))
                        .collect();
                    fields.insert("settings".into(), Value::Array(all));
                }
                let context = format!(
                    "{}/$metadata#deviceManagement/{}/$entity",
                    sim.graph_url,
                    route.kind.collection()
                );
                fields.insert("@odata.context".into(), Value::String(context));
            }
            Json(item).into_response()
        }
        Some("assignments") => Json(json!({"value": policy.assignments()})).into_response(),
        Some("settings") if policy.kind == Kind::ConfigurationPolicy => {
            child_page(sim, route, policy, params, param("$skiptoken"), false)
        }
        Some("definitionValues") if policy.kind == Kind::GroupPolicyConfiguration => child_page(
            sim,
            route,
            policy,
            params,
            param("$skiptoken"),
            expand.contains(&"definition"),
        ),
        Some(other) => graph_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("Resource not found for the segment '{other}'."),
        ),
    })
}

/// The sliding-window throttle: `Some(retry_after_secs)` when this app is over its budget.
/// Rejected requests do not count, as in Intune.
fn throttle(sim: &SimState, knobs: &Knobs, arrival: Instant, key: (String, String)) -> Option<u64> {
    if knobs.throttle_limit == 0 {
        return None;
    }
    let window = Duration::from_millis(knobs.throttle_window_ms.max(1));
    let mut windows = lock(&sim.windows);
    let seen = windows.entry(key).or_default();
    while seen
        .front()
        .is_some_and(|t| arrival.saturating_duration_since(*t) >= window)
    {
        seen.pop_front();
    }
    if seen.len() >= knobs.throttle_limit as usize {
        let oldest = seen.front().copied().unwrap_or(arrival);
        let wait = window.saturating_sub(arrival.saturating_duration_since(oldest));
        return Some(wait.as_secs_f64().ceil().max(1.0) as u64);
    }
    seen.push_back(arrival);
    None
}

/// A forced fault's answer, or `None` once a counted fault is used up.
fn forced_fault(sim: &SimState, id: &str, fault: &Fault, bearer: &str) -> Option<Answer> {
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

/// The URL of the next page: the same request with a new `$skiptoken`.
fn next_link(
    sim: &SimState,
    route: &Route,
    params: &[(String, String)],
    offset: usize,
) -> Option<String> {
    let mut path = format!(
        "{}/deviceManagement/{}",
        sim.graph_url,
        route.kind.collection()
    );
    for part in [&route.id, &route.segment].into_iter().flatten() {
        path.push('/');
        path.push_str(part);
    }
    let mut url = reqwest::Url::parse(&path).ok()?;
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params.iter().filter(|(k, _)| k != "$skiptoken") {
            query.append_pair(k, v);
        }
        query.append_pair("$skiptoken", &offset.to_string());
    }
    Some(url.into())
}

fn page_response(items: Vec<Value>, next: Option<String>, context: String) -> Response {
    let mut body = json!({"@odata.context": context, "value": items});
    if let (Some(link), Value::Object(fields)) = (next, &mut body) {
        fields.insert("@odata.nextLink".into(), Value::String(link));
    }
    Json(body).into_response()
}

fn list_page(
    sim: &SimState,
    route: &Route,
    policies: &[&SimPolicy],
    params: &[(String, String)],
    top: Option<&str>,
    skiptoken: Option<&str>,
    select: Option<&str>,
) -> Response {
    let size = top
        .and_then(|t| t.parse().ok())
        .unwrap_or(LIST_PAGE_SIZE)
        .clamp(1, MAX_LIST_PAGE_SIZE);
    let Some(offset) = skiptoken.map_or(Some(0), |s| s.parse::<usize>().ok()) else {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid $skiptoken.");
    };
    let items: Vec<Value> = policies
        .iter()
        .skip(offset)
        .take(size)
        .map(|p| SimPolicy::select(p.to_json(), select))
        .collect();
    let end = offset + items.len();
    let next = (end < policies.len())
        .then(|| next_link(sim, route, params, end))
        .flatten();
    page_response(
        items,
        next,
        format!(
            "{}/$metadata#deviceManagement/{}",
            sim.graph_url,
            route.kind.collection()
        ),
    )
}

fn child_page(
    sim: &SimState,
    route: &Route,
    policy: &SimPolicy,
    params: &[(String, String)],
    skiptoken: Option<&str>,
    expand_definition: bool,
) -> Response {
    let Some(offset) = skiptoken.map_or(Some(0), |s| s.parse::<usize>().ok()) else {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Invalid $skiptoken.");
    };
    let end = (offset + CHILD_PAGE_SIZE).min(policy.child_count);
    let items = (offset.min(end)..end)
        .map(|i| policy.child(i, expand_definition))
        .collect();
    let next = (end < policy.child_count)
        .then(|| next_link(sim, route, params, end))
        .flatten();
    page_response(
        items,
        next,
        format!(
            "{}/$metadata#deviceManagement/{}('{}')/{}",
            sim.graph_url,
            route.kind.collection(),
            policy.id,
            route.segment.as_deref().unwrap_or("")
        ),
    )
}
