//! The HTTP surface: Leptos pages and server functions, static files, and `/healthz`, inside
//! the session, cross-site and security-header layers, with a safety net for panics.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{ConnectInfo, Request, State},
    http::{header, HeaderValue, Method, StatusCode, Uri},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, MethodRouter},
    Json, Router,
};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use leptos::prelude::LeptosOptions;
use leptos::server_fn::axum::server_fn_paths;
use leptos::server_fn::error::SERVER_FN_ERROR_HEADER;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tracing::Instrument;

use super::auth::{guard, session};
use super::backup_export;
use super::error::PageStatus;
use super::exports;
use super::panics;
use super::request_log;
use super::state::AppState;
use super::static_files;
use super::versions;
use crate::app::{shell, App};
use crate::domain::AppError;

/// Leptos options for a server whose bundle lives in `site_root/pkg` (in the content-named folder
/// that `hash.txt`, which `build.sh` leaves next to the binary, names).
pub fn leptos_options(site_root: &Path, addr: SocketAddr) -> LeptosOptions {
    LeptosOptions::builder()
        .output_name("tenantatlas")
        .site_root(site_root.to_string_lossy().into_owned())
        .site_pkg_dir(static_files::bundle_dir())
        .site_addr(addr)
        .build()
}

/// The whole app as an axum router, with the default [`REQUEST_BODY_TIMEOUT`].
pub fn router(state: AppState) -> Router {
    router_with(state, REQUEST_BODY_TIMEOUT)
}

/// The whole app as an axum router, whose request bodies must arrive within `body_timeout`.
pub fn router_with(state: AppState, body_timeout: Duration) -> Router {
    panics::install_counter();
    let routes = generate_route_list(App);
    let options = state.leptos_options.clone();
    let site_root = Path::new(state.leptos_options.site_root.as_ref()).to_owned();
    let app = Router::new().route("/healthz", get(healthz));
    let app = download_routes()
        .into_iter()
        .fold(app, |app, (path, route)| app.route(path, route))
        .merge(static_files::pkg_router(&site_root))
        // Also registers every server function under /api, with AppState in their context.
        .leptos_routes(&state, routes, move || shell(options.clone()))
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        // Last of the routes: it applies to those registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(render_pages_whole))
        .layer(middleware::from_fn_with_state(state.clone(), guard::pages))
        .layer(middleware::from_fn(unreadable_arguments_are_400))
        .with_state(state.clone());
    // Outermost last: headers → panic net → compression → same-origin check → session → page
    // guard → handler.
    let app = session::with_sessions(app, &state.db, &state.settings.sessions)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard::same_origin,
        ))
        // Pages and server-function answers, gzip when the client accepts it; the bundle's
        // files are precompressed and pass through unchanged, and so do ZIP exports (deflated
        // already: gzip would only spend CPU).
        .layer(CompressionLayer::new().compress_when(
            DefaultPredicate::new().and(NotForContentType::const_new("application/zip")),
        ))
        .layer(middleware::from_fn(private_answers_are_not_stored))
        // Before anything else: no route, and above all not Leptos' fallback, which serves the
        // whole site root, ever sees a path to a hidden file.
        .layer(middleware::from_fn(static_files::hidden_files_are_404))
        .layer(middleware::from_fn(backslash_paths_are_404));
    with_panic_net(with_body_time_limit(with_body_limit(app), body_timeout))
}

/// The downloads: plain GET routes beside the pages, behind the same page guard (a tenant's
/// download needs its membership as its pages do). [`router_with`] registers exactly these, so
/// a download added here is in [`download_paths`] too, which the access and robustness sweeps
/// ask beside the router's pages.
pub fn download_routes() -> [(&'static str, MethodRouter<AppState>); 3] {
    [
        (
            "/t/{tenant}/runs/{id}/items.csv",
            get(exports::run_items_csv),
        ),
        (
            "/t/{tenant}/policies/{id}/versions/{version}/raw.json",
            get(versions::version_json),
        ),
        (
            "/t/{tenant}/backup-sets/{id}/export.zip",
            get(backup_export::backup_set_zip),
        ),
    ]
}

/// The paths of [`download_routes`], as the router has them (`{tenant}`, `{id}`, `{version}`).
pub fn download_paths() -> Vec<&'static str> {
    download_routes()
        .into_iter()
        .map(|(path, _)| path)
        .collect()
}

/// The most bytes a request body may have: [`with_body_limit`].
///
/// The largest request a page sends is an id list: "Add selected" in the picker and a restore's
/// choice post at most 10,000 policy ids (`MAX_SELECTION`, `MAX_RESTORE_ITEMS`) as one form
/// field. An id is at most 20 characters (`i64::MIN`) and the comma after it is `%2C` in the
/// form encoding, so 10,000 × 23 bytes ≈ 230 KB; every other field is bounded in characters
/// (a backup set's description: 2,000 characters, at most 12 bytes each once percent-encoded,
/// 24 KB). 2 MiB is about eight times the largest legitimate request.
pub const REQUEST_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Every route's request body is capped at [`REQUEST_BODY_LIMIT`] before anything reads it:
/// server functions collect their whole body into memory before the function (and its sign-in
/// check) runs, so without the cap an anonymous client could make the server hold gigabytes.
/// A declared `Content-Length` above the cap is answered 413 before the body is read; a body
/// that grows past it (chunked, or longer than declared) is cut there and answered 413 too,
/// with the same reason.
fn with_body_limit(app: Router) -> Router {
    app.layer(middleware::from_fn(bodies_cut_at_the_limit_are_413))
        .layer(RequestBodyLimitLayer::new(REQUEST_BODY_LIMIT))
        .layer(middleware::from_fn(declared_too_large_is_413))
}

/// A request that declares a body above [`REQUEST_BODY_LIMIT`]: 413 at once, nothing read.
/// ([`RequestBodyLimitLayer`] would answer it too, with a bare "length limit exceeded"; this
/// gives it the same answer as a body cut while it streams.)
async fn declared_too_large_is_413(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > REQUEST_BODY_LIMIT as u64) {
        return too_large(request.uri());
    }
    next.run(request).await
}

/// A body that [`RequestBodyLimitLayer`] cut at the limit: whatever the handler made of the
/// error (server_fn a 500 "error deserializing…"), the answer is a 413 that says why.
async fn bodies_cut_at_the_limit_are_413(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let cut = Arc::new(AtomicBool::new(false));
    let seen = cut.clone();
    let uri = request.uri().clone();
    let request = request.map(|body| {
        Body::from_stream(body.into_data_stream().map(move |chunk| {
            if let Err(error) = &chunk {
                if is_length_limit(error) {
                    seen.store(true, Ordering::Relaxed);
                }
            }
            chunk
        }))
    });
    let response = next.run(request).await;
    if cut.load(Ordering::Relaxed) {
        return too_large(&uri);
    }
    response
}

/// Whether a body error is the limit's (`http_body_util::LengthLimitError`, which no crate of
/// ours re-exports to compare types with: its text, anywhere in the error's chain).
/// `tests/robustness.rs` sends a chunked body past the limit and expects the 413, so an upgrade
/// that rewords it fails there.
fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.to_string() == "length limit exceeded" {
            return true;
        }
        source = error.source();
    }
    false
}

/// The 413: a server function's JSON error for its callers, a line of text elsewhere.
fn too_large(uri: &Uri) -> Response {
    let reason = format!(
        "The request is too large: its body may have at most {} MiB.",
        REQUEST_BODY_LIMIT / (1024 * 1024)
    );
    if uri.path().starts_with("/api/") {
        let error = AppError::invalid("", reason);
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(error)).into_response();
    }
    (StatusCode::PAYLOAD_TOO_LARGE, reason).into_response()
}

/// Every request body must arrive within `limit` of the moment something starts reading it,
/// or the request is answered 408 and its connection closed. [`with_body_limit`] caps a body's
/// bytes, not its time: without this, a client that sends a declared body a byte every few
/// seconds (or a chunked body that never ends) holds its task, its socket and the bytes read so
/// far for as long as it likes, and a few thousand such clients hold the server. The deadline
/// is for the whole body, not between its parts (which a trickle would always meet), and only
/// for the request's: a long answer (an export, a slow server function) is not timed. A body
/// that no handler reads is not timed either: hyper does not wait for it after the answer.
fn with_body_time_limit(app: Router, limit: Duration) -> Router {
    app.layer(middleware::from_fn_with_state(limit, slow_bodies_are_408))
}

async fn slow_bodies_are_408(
    State(limit): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let late = Arc::new(AtomicBool::new(false));
    let uri = request.uri().clone();
    let request = request.map(|body| body_with_deadline(body, limit, late.clone()));
    let response = next.run(request).await;
    if late.load(Ordering::Relaxed) {
        return too_slow(&uri, limit);
    }
    response
}

/// What a body read past its deadline ends with (the handler's error; the answer is
/// [`too_slow`]'s whatever the handler made of it).
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTooSlow;

/// `body`, which ends in [`BodyTooSlow`] (and sets `late`) when it has not ended `limit` after
/// its first read.
fn body_with_deadline(body: Body, limit: Duration, late: Arc<AtomicBool>) -> Body {
    struct Reading {
        chunks: axum::body::BodyDataStream,
        deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
        late: Arc<AtomicBool>,
    }
    let reading = Reading {
        chunks: body.into_data_stream(),
        deadline: None,
        late,
    };
    let chunks = futures::stream::unfold(Some(reading), move |reading| async move {
        let mut reading = reading?;
        let deadline = reading
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        let next = tokio::select! {
            chunk = reading.chunks.next() => Some(chunk?),
            () = deadline.as_mut() => None,
        };
        match next {
            Some(chunk) => Some((chunk, Some(reading))),
            None => {
                reading.late.store(true, Ordering::Relaxed);
                let error: Result<Bytes, axum::Error> = Err(axum::Error::new(BodyTooSlow));
                Some((error, None))
            }
        }
    });
    Body::from_stream(chunks)
}

/// The 408, which closes the connection (the rest of the body may still be on its way): a
/// server function's JSON error for its callers, a line of text elsewhere.
fn too_slow(uri: &Uri, limit: Duration) -> Response {
    let reason = format!(
        "The request came too slowly: its body must arrive within {} seconds.",
        limit.as_secs_f64()
    );
    let mut response = if uri.path().starts_with("/api/") {
        let error = AppError::invalid("", reason);
        (StatusCode::REQUEST_TIMEOUT, Json(error)).into_response()
    } else {
        (StatusCode::REQUEST_TIMEOUT, reason).into_response()
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A path with a backslash, as sent or percent-encoded, is a 404 before anything reads it. The
/// page guard finds the tenant between slashes, but the page's own URL parser reads `\` as `/`:
/// `/t\contoso\backup-sets` would render a tenant's page past the membership check. No page,
/// file or server function has a backslash in its path.
async fn backslash_paths_are_404(request: Request, next: Next) -> Response {
    let path = request.uri().path().as_bytes();
    let backslash = path.contains(&b'\\')
        || path
            .windows(3)
            .any(|escape| escape.eq_ignore_ascii_case(b"%5c"));
    if backslash {
        return (
            StatusCode::NOT_FOUND,
            "Not found: no page or file has this path.",
        )
            .into_response();
    }
    next.run(request).await
}

/// The answer to a method an address does not take (axum adds the `Allow` header): for a
/// server function the JSON error its callers read, naming the method it takes; for a page,
/// an export or the health check, a line of text.
async fn method_not_allowed(uri: Uri) -> Response {
    let path = uri.path();
    if path.starts_with("/api/") {
        let takes = server_fn_paths()
            .find(|(function, _)| *function == path)
            .map_or_else(
                || Method::POST.to_string(),
                |(_, method)| method.to_string(),
            );
        let error = AppError::invalid("", format!("This address takes {takes} only."));
        return (StatusCode::METHOD_NOT_ALLOWED, Json(error)).into_response();
    }
    (
        StatusCode::METHOD_NOT_ALLOWED,
        "This address can only be read (GET or HEAD).",
    )
        .into_response()
}

/// Pages and server-function answers hold what only the signed-in user may see (and set the
/// session cookie): no cache keeps a copy, neither the browser's (a shared computer's next user
/// pressing Back) nor a shared one. An answer that chose its own policy keeps it (the bundle
/// under `/pkg`, the exports); other static files (`/favicon.svg`) are not concerned.
async fn private_answers_are_not_stored(request: Request, next: Next) -> Response {
    let is_api = request.uri().path().starts_with("/api/");
    let mut response = next.run(request).await;
    let is_html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if (is_api || is_html) && !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The last safety net: a handler that panics is answered with a 500 and the generic message
/// (the panic's text and backtrace stay in the server log), and security headers still apply.
/// A panic while a streamed page body is being written is past this point; the panic counter
/// sees it all the same.
fn with_panic_net(app: Router) -> Router {
    app.layer(CatchPanicLayer::custom(answer_panic))
        .layer(middleware::from_fn(guard::security_headers))
        .layer(request_log::trace_layer())
        .layer(middleware::from_fn(request_log::assign_request_id))
}

fn answer_panic(_panic: Box<dyn Any + Send + 'static>) -> Response {
    internal_error()
}

/// A 500 that tells the client nothing but "try again" (the cause is in the server log).
fn internal_error() -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, Json(AppError::Internal)).into_response()
}

/// The largest page [`render_pages_whole`] renders (a page of ours is tens of kilobytes).
const PAGE_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Renders each page to its end in a task of its own, then sends it whole.
///
/// Leptos streams a page while its resources resolve, and the render's reactive owner lives as
/// long as that stream. When the stream is dropped early (a HEAD request, whose body hyper never
/// reads, or a client that goes away mid-page), the owner is disposed while resource tasks still
/// read its signals, and they panic. Collecting the body in a spawned task keeps the stream alive
/// until the render has finished, whatever happens to the request. The cost is the first byte:
/// it leaves when the whole page is ready (our pages' data comes from a few indexed reads), and
/// whole bodies compress better. A HEAD answer keeps the `Content-Length` of the page. The
/// page's status is the last one its render set ([`PageStatus`]), which Leptos, having taken
/// it at the first chunk, may not have.
async fn render_pages_whole(request: Request, next: Next) -> Response {
    // Server functions are POSTs and answer JSON: they need neither the task nor the buffer.
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let status = PageStatus::default();
    let mut request = request;
    request.extensions_mut().insert(status.clone());
    // In the request's span, so the render's log lines carry its id as the request's others do.
    let render = tokio::spawn(
        async move {
            let response = next.run(request).await;
            let is_html = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|value| value.starts_with("text/html"));
            if !is_html {
                return response;
            }
            let (mut parts, body) = response.into_parts();
            match axum::body::to_bytes(body, PAGE_BODY_LIMIT).await {
                Ok(bytes) => {
                    if let Some(set) = status.get() {
                        parts.status = set;
                    }
                    Response::from_parts(parts, Body::from(bytes))
                }
                Err(error) => {
                    tracing::error!(%error, "a page could not be rendered to its end");
                    internal_error()
                }
            }
        }
        .in_current_span(),
    );
    // A panic in the render is counted by the panic hook and answered like any other.
    render.await.unwrap_or_else(|_| internal_error())
}

/// The largest error body [`unreadable_arguments_are_400`] reads (server-function errors are a
/// short JSON value).
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// The most characters of the reason a 400 for unreadable arguments quotes: enough to name the
/// field and what was wrong with it. serde_qs quotes the input (a repeated key, a whole value
/// that was also used as a map), which can be megabytes.
const ARGUMENTS_REASON_CHARS: usize = 300;

/// server_fn answers a request whose arguments it cannot decode (a wrong type, a missing field,
/// a body that is not UTF-8) with a 500 before the function runs. That is the client's mistake:
/// such an answer (an [`AppError::Transport`], which a function itself never returns) becomes a
/// 400 that says what could not be read, cut to [`ARGUMENTS_REASON_CHARS`]. An error body
/// longer than [`ERROR_BODY_LIMIT`] can only be such a decoding error quoting its input (a
/// function's own errors are short): a 400 with a fixed reason.
async fn unreadable_arguments_are_400(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !response.headers().contains_key(SERVER_FN_ERROR_HEADER)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let reason = match axum::body::to_bytes(body, ERROR_BODY_LIMIT).await {
        Ok(bytes) => match serde_json::from_slice::<AppError>(&bytes) {
            Ok(AppError::Transport(reason)) => shortened(reason),
            _ => return Response::from_parts(parts, Body::from(bytes)),
        },
        Err(_) => "error deserializing server function arguments: they could not be read \
                   (the error is too long to show)"
            .to_owned(),
    };
    let Ok(body) = serde_json::to_vec(&AppError::Transport(reason)) else {
        return internal_error();
    };
    parts.status = StatusCode::BAD_REQUEST;
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// `reason` cut to [`ARGUMENTS_REASON_CHARS`], marked with `…` where it was cut.
fn shortened(reason: String) -> String {
    match reason.char_indices().nth(ARGUMENTS_REASON_CHARS) {
        Some((end, _)) => format!("{}…", &reason[..end]),
        None => reason,
    }
}

/// How long a stopping server lets in-flight requests finish by default
/// (`--shutdown-grace-seconds`).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's line and headers, from the moment the server
/// waits for them (a new connection, or one kept alive after its last answer): then the
/// connection is closed. A browser sends them in one go.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a client may take to send a request's body, from the moment the server starts
/// reading it: then the request is answered 408 ([`with_body_time_limit`]). The largest body a
/// page sends is about 230 KB ([`REQUEST_BODY_LIMIT`]): 30 s is about 8 KB/s.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// How [`serve_with`] treats its connections; `Default` is what `serve` runs with.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long a stopping server lets in-flight requests finish ([`serve_with_grace`]).
    pub grace: Duration,
    /// [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// [`REQUEST_BODY_TIMEOUT`].
    pub request_body_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            grace: DEFAULT_SHUTDOWN_GRACE,
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_body_timeout: REQUEST_BODY_TIMEOUT,
        }
    }
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for at most
/// [`DEFAULT_SHUTDOWN_GRACE`] ([`serve_with_grace`]).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, shutdown, ServeOptions::default()).await
}

/// Serves until `shutdown` resolves, then stops accepting connections and lets in-flight
/// requests finish for at most `grace`. What is still in flight then (a client that reads an
/// export slowly, or sends its request slowly) is given up: the call returns, so the rest of
/// the stop (the worker handing back its lease, the database closing) runs, and the
/// connections close when the process ends. Without the deadline one slow client would keep a
/// stopped server alive for as long as it likes.
pub async fn serve_with_grace(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let options = ServeOptions {
        grace,
        ..ServeOptions::default()
    };
    serve_with(listener, state, shutdown, options).await
}

/// [`serve_with_grace`] with every option ([`serve_router`]).
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let app = router_with(state, options.request_body_timeout);
    serve_router(listener, app, shutdown, options).await
}

/// Serves `app` as [`serve_with_grace`] says: HTTP/1.1 with keep-alive (and upgrades), as
/// `axum::serve` did, but with a timer, so that hyper's header read timeout applies
/// (`axum::serve` builds its connections without one, and then a client that sends its
/// headers a byte at a time, or nothing at all, holds a task and a socket for ever), and with
/// the peer's address in each request (`ConnectInfo<SocketAddr>`, which sign-in's throttle
/// reads). A request body is timed by the router itself ([`router_with`]), not here:
/// `options.request_body_timeout` is not read.
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    options: ServeOptions,
) -> std::io::Result<()> {
    let app = TowerToHyperService::new(app);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .keep_alive(true);
    // Each connection holds a receiver; `stop` tells them all to finish their request in flight
    // and close, and its `closed()` resolves once they all have.
    let (stop, connections) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            app.call(request)
        });
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = connections.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(error) = served {
                        tracing::trace!(%error, "a connection ended in an error");
                    }
                    return;
                }
                _ = stopping.changed() => connection.as_mut().graceful_shutdown(),
            }
            if let Err(error) = connection.await {
                tracing::trace!(%error, "a connection ended in an error");
            }
            // `stopping` is dropped here, after the connection.
        });
    }
    drop(listener);
    drop(connections);
    let _ = stop.send(());
    tokio::select! {
        () = stop.closed() => Ok(()),
        () = tokio::time::sleep(options.grace) => {
            tracing::warn!(
                grace_seconds = options.grace.as_secs_f64(),
                "requests still in flight after the shutdown grace period are dropped"
            );
            Ok(())
        }
    }
}

/// The metrics listener's server (`--metrics-addr`): [`serve_router`], so that a client that
/// never finishes its headers is cut off after `options.header_read_timeout` as on the app's
/// listener (it used `axum::serve`, which has no header read timeout). It has no shutdown of
/// its own: it stops with the process.
pub async fn serve_metrics(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
) -> std::io::Result<()> {
    serve_router(listener, router, std::future::pending(), options).await
}

/// An accept that failed: a connection that went away before it was accepted is nothing; else
/// (no file descriptor left, most likely) the error is logged and the next accept waits a
/// second, so that the loop does not spin while nothing can be accepted (as `axum::serve`).
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "a connection could not be accepted");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// For load balancers: 200 when the database answers, 503 otherwise.
async fn healthz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    match state.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(error) => {
            tracing::warn!(%error, "health check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweeps (tests/access_matrix.rs, tests/robustness.rs) ask the router's pages and
    /// [`download_paths`]; a route registered in [`router_with`] any other way would be asked by
    /// neither. So `router_with` registers `/healthz` and what [`download_routes`] holds, and no
    /// other route by hand.
    #[test]
    fn the_router_registers_no_route_the_sweeps_do_not_ask() {
        let source = include_str!("http.rs");
        let start = source
            .find("pub fn router_with(")
            .expect("router_with is here");
        let body = &source[start..];
        let body = &body[..body.find("\n}\n").expect("router_with ends")];
        assert_eq!(
            registered(body),
            [
                (".route(", "\"/healthz\""),
                (".route(", "path"),
                (".merge(", "static_files::pkg_router(&site_root))"),
            ],
            "router_with registers /healthz, each of download_routes() by its path, and the \
             bundle's files; nothing else by hand"
        );
        let folded = body
            .find("download_routes()")
            .expect("the downloads' list is registered");
        assert!(folded < body.find("app.route(path").unwrap_or(0));
        // What the merged router registers: the bundle's folder, outside /t/.
        let files = include_str!("static_files.rs");
        let start = files
            .find("pub fn pkg_router")
            .expect("pkg_router is there");
        let body = &files[start..];
        let body = &body[..body.find("\n}\n").expect("pkg_router ends")];
        assert_eq!(registered(body), [(".nest_service(", "\"/pkg\"")]);
    }

    /// Every call in `body` that adds routes to a router (`.route(`, `.route_service(`,
    /// `.nest(`, `.nest_service(`, `.merge(`), with its first argument.
    fn registered(body: &str) -> Vec<(&'static str, &str)> {
        const CALLS: [&str; 5] = [
            ".route(",
            ".route_service(",
            ".nest(",
            ".nest_service(",
            ".merge(",
        ];
        let mut found: Vec<(usize, &'static str, &str)> = CALLS
            .iter()
            .flat_map(|call| {
                body.match_indices(*call).map(move |(at, _)| {
                    let rest = &body[at + call.len()..];
                    (
                        at,
                        *call,
                        rest[..rest.find([',', '\n']).unwrap_or(rest.len())].trim(),
                    )
                })
            })
            .collect();
        found.sort_by_key(|(at, ..)| *at);
        found
            .into_iter()
            .map(|(_, call, arg)| (call, arg))
            .collect()
    }

    async fn boom() -> &'static str {
        panic!("a detail only the server log may see")
    }

    /// The name of the span the handler runs in.
    async fn span_name() -> &'static str {
        tracing::Span::current()
            .metadata()
            .map_or("none", |metadata| metadata.name())
    }

    /// A page renders in a task of its own, still in the request's span (so its log lines carry
    /// the request's id). The subscriber is this test's thread's only: the runtime is
    /// single-threaded, so the server's tasks run on it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_page_renders_in_the_span_of_its_request() {
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry());
        let app = with_panic_net(
            Router::new()
                .route("/page", get(span_name))
                .layer(middleware::from_fn(render_pages_whole)),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let response = reqwest::get(format!("http://{addr}/page")).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "request");
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_generic_500() {
        panics::install_counter();
        let before = panics::count();
        let app = with_panic_net(Router::new().route("/boom", get(boom)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let response = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()["x-frame-options"], "DENY");
        let body = response.text().await.unwrap();
        assert_eq!(body, serde_json::to_string(&AppError::Internal).unwrap());
        assert!(panics::count() > before, "the hook counted the panic");
    }
}
