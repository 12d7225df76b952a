//! Where the server sends a browser: the page after sign-in (`next`, read as a browser reads a
//! URL, followed only to the app's own origin and re-serialised), and the page guard's way to
//! sign-in and back, which covers every GET and HEAD under `/t/`. None of these requests may
//! make the server panic.

use crate::common;

use common::{TestApp, CONTOSO, OPERATOR, OUTSIDER};
use tenantatlas::server::panics;
use tenantatlas::server::seed::DEMO_PASSWORD;

both_backends!(TestApp:
    sign_in_follows_only_pages_of_its_own_origin,
    the_guard_covers_every_get_and_head_under_t,
    a_path_with_a_backslash_is_404,
);

/// Signs in as a plain HTML form does (so the answer is a 302) and returns the status and the
/// `Location` header.
async fn sign_in_location(app: &TestApp, next: &str) -> (u16, Option<String>) {
    let form = [
        ("email", OPERATOR),
        ("password", DEMO_PASSWORD),
        ("next", next),
    ];
    let response = app
        .request(None, "auth/sign-in", &form)
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap_or_else(|error| panic!("sign-in with next={next:?}: {error}"));
    let location = response
        .headers()
        .get("location")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    (response.status().as_u16(), location)
}

async fn sign_in_follows_only_pages_of_its_own_origin(app: TestApp) {
    let host = app.addr.to_string();
    // Each `next` as the form field holds it after form decoding, and where the browser is sent.
    let table: Vec<(String, &str)> = vec![
        ("/t/x/runs?status=failed".into(), "/t/x/runs?status=failed"),
        // Browsers drop tabs and line breaks: these would be `//evil.example`.
        ("/\t/evil.example".into(), "/"),
        ("/\r/evil.example".into(), "/"),
        ("/\n/evil.example".into(), "/"),
        ("/\r\n".into(), "/"),
        ("/\u{0}".into(), "/"),
        ("/\u{7f}/evil.example".into(), "/"),
        // Browsers read `\` as `/`.
        ("/\\evil.example".into(), "/"),
        ("\\/evil.example".into(), "/"),
        ("\\\\evil.example".into(), "/"),
        // Encoded slashes and backslashes stay encoded: a path on this site.
        ("%2F%2Fevil.example".into(), "/%2F%2Fevil.example"),
        ("/%2F%2Fevil.example".into(), "/%2F%2Fevil.example"),
        ("/%5Cevil.example".into(), "/%5Cevil.example"),
        ("%5C%5Cevil.example".into(), "/%5C%5Cevil.example"),
        // Other hosts, with or without a scheme.
        ("//evil.example".into(), "/"),
        ("///evil.example".into(), "/"),
        (" //evil.example".into(), "/"),
        ("/.//evil.example".into(), "/"),
        ("/%2e//evil.example".into(), "/"),
        ("https://evil.example/".into(), "/"),
        ("https:evil.example".into(), "/"),
        (format!("https://{host}/t/x"), "/"),
        // The same scheme without `//` is a relative path.
        ("http:evil.example".into(), "/evil.example"),
        ("javascript:alert(document.cookie)".into(), "/"),
        ("data:text/html,<script>alert(1)</script>".into(), "/"),
        // Userinfo tricks: only the host after the last `@` counts.
        ("//user:pass@evil.example/".into(), "/"),
        (format!("//{host}@evil.example/"), "/"),
        (format!("http://{host}@evil.example/"), "/"),
        (format!("http://evil.example@{host}/t/x"), "/t/x"),
        ("/@evil.example".into(), "/@evil.example"),
        // Our own origin, re-serialised.
        (format!("http://{host}/t/x?y=1#top"), "/t/x?y=1"),
        ("/a b?q=<x>".into(), "/a%20b?q=%3Cx%3E"),
        ("/t/../runs/./1".into(), "/runs/1"),
        ("".into(), "/"),
    ];
    for (next, expected) in &table {
        let (status, location) = sign_in_location(&app, next).await;
        assert_eq!(status, 302, "next={next:?}");
        assert_eq!(location.as_deref(), Some(*expected), "next={next:?}");
    }
    assert_eq!(panics::count(), 0, "no sign-in made the server panic");
}

/// GETs or HEADs a path with an optional session cookie: status and `Location`.
async fn visit(app: &TestApp, head: bool, cookie: Option<&str>, path: &str) -> (u16, String) {
    let url = app.url(path);
    let mut request = if head {
        app.http.head(url)
    } else {
        app.http.get(url)
    };
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|error| panic!("{path} (head: {head}): {error}"));
    let location = response
        .headers()
        .get("location")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
        .unwrap_or_default();
    (response.status().as_u16(), location)
}

async fn the_guard_covers_every_get_and_head_under_t(app: TestApp) {
    // Anonymous: sign in first, then come back to the (re-serialised) page.
    for head in [false, true] {
        assert_eq!(
            visit(&app, head, None, "/t/%0A.x").await,
            (303, "/sign-in?next=/t/%250A.x".to_owned())
        );
        assert_eq!(
            visit(&app, head, None, "/t/%0D%0A").await,
            (303, "/sign-in?next=/t/%250D%250A".to_owned())
        );
    }
    // Signed in: a tenant that cannot exist is refused before anything renders.
    let operator = app.sign_in(OPERATOR).await;
    for path in ["/t/%0A.x", "/t/%0D%0A", "/t/x.json", "/t"] {
        for head in [false, true] {
            let (status, _) = visit(&app, head, Some(&operator), path).await;
            assert_eq!(status, 403, "{path} (head: {head})");
        }
    }
    // A member's tenant home goes to its backup sets.
    let (status, location) = visit(&app, false, Some(&operator), &format!("/t/{CONTOSO}")).await;
    assert!(status < 400, "{status}");
    assert_eq!(location, format!("/t/{CONTOSO}/backup-sets"));
    // A non-member gets nothing, however the path is spelt.
    let outsider = app.sign_in(OUTSIDER).await;
    for path in [
        format!("/t/{CONTOSO}/backup-sets"),
        format!("//t//{CONTOSO}/backup-sets"),
        format!("/t/{CONTOSO}/runs.x"),
    ] {
        for head in [false, true] {
            let (status, _) = visit(&app, head, Some(&outsider), &path).await;
            assert_eq!(status, 403, "{path} (head: {head})");
        }
    }
    assert_eq!(panics::count(), 0, "no request made the server panic");
}

/// A backslash in a raw request line (or encoded, `%5C`): the page guard reads the tenant
/// between slashes, and the page's own URL reading takes `\` for `/`, so such a path could
/// name a tenant the guard never checked. No page, file or function has one: 404, before the
/// guard, whoever asks.
async fn a_path_with_a_backslash_is_404(app: TestApp) {
    let outsider = app.sign_in(OUTSIDER).await;
    let operator = app.sign_in(OPERATOR).await;
    let paths = [
        format!("/t\\{CONTOSO}\\backup-sets"),
        format!("/t/{CONTOSO}\\backup-sets"),
        format!("/\\t\\{CONTOSO}\\runs"),
        format!("/t%5C{CONTOSO}%5Cbackup-sets"),
        format!("/t/{CONTOSO}%5cbackup-sets"),
    ];
    for cookie in [&outsider, &operator] {
        for path in &paths {
            for method in ["GET", "HEAD"] {
                let case = format!("{method} {path}");
                let (status, body, _) =
                    crate::robustness::raw_request(&app, method, path, Some(cookie))
                        .await
                        .unwrap_or_else(|error| panic!("{case}: {error}"));
                assert_eq!(status, 404, "{case}");
                let body = String::from_utf8_lossy(&body);
                assert!(!body.contains("Contoso"), "{case}: {body}");
            }
        }
    }
    // The member's page itself is there.
    let (status, _) = visit(
        &app,
        false,
        Some(&operator),
        &format!("/t/{CONTOSO}/backup-sets"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(panics::count(), 0, "no request made the server panic");
}
