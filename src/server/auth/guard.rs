//! HTTP middleware around the whole app: page access, cross-site request protection, and
//! security headers. Page access uses the same [`authorize_session`](super::authorize_session)
//! as the server functions; these layers add nothing a server function could skip.

use axum::{
    body::Body,
    extract::{Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
};
use tower_sessions::Session;

use super::redirect::LocalPath;
use super::{authorize_session, session};
use crate::domain::{AppError, Capability};
use crate::server::state::AppState;

/// Pages need a signed-in user; tenant pages (`/t/{tenant}/…`) need a membership in that tenant.
/// Anonymous users are sent to sign-in (and back afterwards); non-members get a 403 page.
pub async fn pages(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !is_page(request.method(), path) {
        return next.run(request).await;
    }
    let tenant = tenant_segment(path).map(str::to_owned);
    let signed_in = match (request.extensions().get::<Session>(), tenant) {
        (None, _) => Ok(false),
        // A tenant page: the session and the membership in one statement.
        (Some(session), Some(tenant)) => {
            match authorize_session(&state, session, &tenant, Capability::View).await {
                Ok(_) => Ok(true),
                Err(AppError::Unauthorized) => Ok(false),
                Err(error) => Err(error),
            }
        }
        (Some(session), None) => {
            session::signed_in_user(session, &state.db, &state.settings.sessions)
                .await
                .map(|user| user.is_some())
        }
    };
    match signed_in {
        Ok(true) => {}
        Ok(false) => {
            let back = request.uri().path_and_query().map_or("/", |p| p.as_str());
            let back = LocalPath::parse(back, &state.settings.public_origin);
            return Redirect::to(&format!(
                "/sign-in?next={}",
                encode_component(back.as_str())
            ))
            .into_response();
        }
        Err(error) => return error_page(&error),
    }
    next.run(request).await
}

/// Whether a request asks for a page that needs a signed-in user (rather than the API, a static
/// file, sign-in, the invitation page, whose visitor has no account yet, or the health check). HEAD renders the same page as GET, so it is guarded the same. Everything under `/t/`
/// is a page, whatever its path holds; elsewhere a path with a dot is a static file
/// (`/favicon.svg`).
fn is_page(method: &Method, path: &str) -> bool {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return false;
    }
    tenant_segment(path).is_some()
        || !path.starts_with("/api/")
            && !path.starts_with("/pkg/")
            && path != "/sign-in"
            && path != crate::domain::routes::INVITE
            && path != "/healthz"
            && !path.contains('.')
}

/// The tenant a tenant page names (`/t/{tenant}/…`), as it stands in the path; empty segments
/// are skipped, so `//t//x` names `x` too and cannot slip past the membership check.
fn tenant_segment(path: &str) -> Option<&str> {
    let mut segments = path.split('/').filter(|segment| !segment.is_empty());
    (segments.next() == Some("t")).then(|| segments.next().unwrap_or_default())
}

fn error_page(error: &AppError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · TenantAtlas</title>\
         <link rel=\"stylesheet\" href=\"/pkg/tenantatlas.css\"></head><body><main class=\"page\">\
         <h1>{title}</h1><p>{message}</p><p><a href=\"/\">Back to your tenants</a></p></main></body></html>",
        title = if status == StatusCode::FORBIDDEN { "Access denied" } else { "Something went wrong" },
        message = html_escape(&error.to_string()),
    );
    // A page without scripts: its own stylesheet is all it loads (the default policy, for
    // answers that are not pages, would refuse even that).
    let csp = HeaderValue::from_static(ERROR_PAGE_CSP);
    (status, [(header::CONTENT_SECURITY_POLICY, csp)], Html(body)).into_response()
}

/// The policy of the guard's own error page: its stylesheet and nothing else.
const ERROR_PAGE_CSP: &str =
    "default-src 'none'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// Refuses state-changing requests (server functions are POSTs) that do not come from our own
/// pages: the `Origin` (or, without it, the `Referer`) must be the configured public URL.
/// SameSite cookies already stop most of this; this also covers same-site subdomains and
/// browsers without SameSite.
pub async fn same_origin(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    ) {
        return next.run(request).await;
    }
    let origin = &state.settings.public_origin;
    let headers = request.headers();
    let allowed = match headers.get(header::ORIGIN) {
        Some(value) => value.as_bytes() == origin.as_bytes(),
        None => headers
            .get(header::REFERER)
            .and_then(|r| r.to_str().ok())
            .is_some_and(|referer| {
                referer
                    .strip_prefix(origin.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            }),
    };
    if allowed {
        next.run(request).await
    } else {
        let error = AppError::Forbidden("Cross-site request refused.".into());
        (StatusCode::FORBIDDEN, axum::Json(error)).into_response()
    }
}

/// The policy for responses that are not pages (pages set their own, with the script nonce).
const DEFAULT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Security headers on every response.
pub async fn security_headers(request: Request<Body>, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(DEFAULT_CSP),
        );
    }
    response
}

/// The Content-Security-Policy of a page whose inline scripts carry `nonce`.
pub fn page_csp(nonce: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
         base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )
}

fn encode_component(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn html_escape(raw: &str) -> String {
    raw.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_return_path() {
        assert_eq!(
            encode_component("/t/abc/runs?status=failed&x=1"),
            "/t/abc/runs%3Fstatus%3Dfailed%26x%3D1"
        );
    }

    #[test]
    fn every_get_and_head_under_t_is_a_page() {
        for path in ["/t/%0A.x", "/t/x/runs/1.json", "//t//x", "/", "/t"] {
            assert!(is_page(&Method::GET, path), "{path}");
            assert!(is_page(&Method::HEAD, path), "{path}");
        }
        for path in [
            "/favicon.svg",
            "/pkg/tenantatlas.js",
            "/api/auth/me",
            "/sign-in",
            "/invite",
        ] {
            assert!(!is_page(&Method::GET, path), "{path}");
        }
        assert!(!is_page(&Method::POST, "/t/x"));
        assert_eq!(tenant_segment("//t//x/runs"), Some("x"));
        assert_eq!(tenant_segment("/t"), Some(""));
        assert_eq!(tenant_segment("/tenants/x"), None);
    }

    #[test]
    fn page_policy_allows_only_own_and_nonced_scripts() {
        let csp = page_csp("abc");
        assert!(csp.contains("script-src 'self' 'nonce-abc' 'wasm-unsafe-eval'"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(csp.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn the_error_page_loads_its_stylesheet_and_fits_a_phone() {
        let response = error_page(&AppError::Forbidden("No.".into()));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap_or_default();
        assert!(csp.contains("style-src 'self'"), "{csp}");
        assert!(!csp.contains("script-src") && csp.contains("default-src 'none'"));
        assert!(!csp.contains("unsafe-inline"));
    }
}
