//! Every request gets an id the server makes (16 hex digits), answered in `x-request-id` and
//! carried by the request's span (tower-http's `TraceLayer`), so one request's log lines can be
//! found together. An id sent by the client is not believed: it would let anyone forge log
//! correlation. The span holds the method and the path only, never the query string, which
//! may carry values a log must not keep.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use rand::Rng;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{DefaultOnResponse, MakeSpan, TraceLayer};
use tracing::{Level, Span};

/// The response header that names the request.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of one request, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Gives the request a fresh id and answers it in `x-request-id`.
pub async fn assign_request_id(mut request: Request, next: Next) -> Response {
    let id = format!("{:016x}", rand::rng().random::<u64>());
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The span of a request: its id, method and path.
#[derive(Debug, Clone, Copy)]
pub struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let id = request
            .extensions()
            .get::<RequestId>()
            .map(|id| id.0.as_str())
            .unwrap_or_default();
        tracing::info_span!(
            "request",
            request_id = id,
            method = %request.method(),
            path = request.uri().path(),
        )
    }
}

/// The trace layer: a span per request, and one line when the answer is ready (5xx as errors).
pub fn trace_layer(
) -> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), DefaultOnResponse> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(DefaultOnResponse::new().level(Level::INFO))
}
