//! Sessions and sign-in: fixation, sign-out, idle expiry, forged cookies, cross-origin POSTs,
//! indistinguishable failures and the failure throttle.

#![cfg(feature = "ssr")]

mod common;

use std::time::Duration;

use common::{session_cookie, TestApp, CONTOSO, OPERATOR, READONLY};
use serde_json::Value;
use tenantatlas::server::seed::DEMO_PASSWORD;

both_backends!(TestApp:
    sign_in_rotates_the_session_id,
    sign_out_ends_the_session_in_the_store,
    forged_cookies_are_anonymous,
    cross_origin_posts_are_refused_and_write_nothing,
    wrong_password_and_unknown_user_look_the_same,
    repeated_failures_are_slowed_down,
    sign_in_and_out_are_audited,
    cookies_are_http_only_and_same_site,
);

async fn me(app: &TestApp, cookie: &str) -> u16 {
    app.call_as(cookie, "auth/me", &[]).await.status().as_u16()
}

async fn sign_in_with(
    app: &TestApp,
    cookie: Option<&str>,
    email: &str,
    password: &str,
) -> reqwest::Response {
    let form = [("email", email), ("password", password), ("next", "/")];
    match cookie {
        Some(cookie) => app.call_as(cookie, "auth/sign-in", &form).await,
        None => app.call("auth/sign-in", &form).await,
    }
}

async fn sign_in_rotates_the_session_id(app: TestApp) {
    // A session id somebody already knows (here: from an earlier sign-in) is never reused.
    let planted = app.sign_in(READONLY).await;
    let response = sign_in_with(&app, Some(&planted), OPERATOR, DEMO_PASSWORD).await;
    assert_eq!(response.status(), 200);
    let fresh = session_cookie(&response).expect("a new session cookie");
    assert_ne!(fresh, planted);
    assert_eq!(me(&app, &planted).await, 401, "the old id is gone");
    let who: Value = app
        .call_as(&fresh, "auth/me", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(who["email"], OPERATOR);
}

async fn sign_out_ends_the_session_in_the_store(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    assert_eq!(me(&app, &cookie).await, 200);
    let response = app.call_as(&cookie, "auth/sign-out", &[]).await;
    assert!(response.status().is_success() || response.status().is_redirection());
    // Replaying the old cookie (as a thief would) no longer works.
    assert_eq!(me(&app, &cookie).await, 401);
    let page = app
        .get(Some(&cookie), &format!("/t/{CONTOSO}/backup-sets"))
        .await;
    assert!(page.status().is_redirection());
}

async fn forged_cookies_are_anonymous(app: TestApp) {
    for forged in [
        "tenantatlas_session=AAAAAAAAAAAAAAAAAAAAAA",
        "tenantatlas_session=not-base64-%%%",
        "tenantatlas_session=",
        &format!("tenantatlas_session={}", "x".repeat(5000)),
    ] {
        assert_eq!(me(&app, forged).await, 401, "{forged:.40}");
    }
}

async fn cross_origin_posts_are_refused_and_write_nothing(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let form = [
        ("tenant", CONTOSO),
        ("name", "From elsewhere"),
        ("description", ""),
    ];
    let url = app.url("/api/backup-sets/create");
    let evil = app
        .http
        .post(&url)
        .header("Cookie", &cookie)
        .header("Origin", "http://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(evil.status(), 403);
    let no_origin = app
        .http
        .post(&url)
        .header("Cookie", &cookie)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(no_origin.status(), 403, "no Origin and no Referer");
    let foreign_referer = app
        .http
        .post(&url)
        .header("Cookie", &cookie)
        .header("Referer", format!("{}.evil.example/", app.origin()))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        foreign_referer.status(),
        403,
        "a Referer that only starts like ours"
    );
    assert_eq!(app.count("backup_sets").await, 0);

    let same_site_referer = app
        .http
        .post(&url)
        .header("Cookie", &cookie)
        .header(
            "Referer",
            format!("{}/t/{CONTOSO}/backup-sets", app.origin()),
        )
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        same_site_referer.status(),
        200,
        "our own page without an Origin header"
    );
    assert_eq!(app.count("backup_sets").await, 1);
}

async fn wrong_password_and_unknown_user_look_the_same(app: TestApp) {
    let wrong = sign_in_with(&app, None, OPERATOR, "not the password").await;
    let unknown = sign_in_with(&app, None, "nobody@contoso.example", "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert!(session_cookie(&wrong).is_none() && session_cookie(&unknown).is_none());
    assert_eq!(wrong.text().await.unwrap(), unknown.text().await.unwrap());
    let malformed = sign_in_with(&app, None, "not an email", "x").await;
    assert_eq!(malformed.status(), 422);
}

async fn repeated_failures_are_slowed_down(app: TestApp) {
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            sign_in_with(&app, None, OPERATOR, "guess")
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[0], 401);
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // Even the right password waits now.
    let right = sign_in_with(&app, None, OPERATOR, DEMO_PASSWORD).await;
    assert_eq!(right.status(), 429);
    assert!(right.text().await.unwrap().contains("Try again in"));
    // Another account from elsewhere is not affected.
    let other = sign_in_with(&app, None, READONLY, DEMO_PASSWORD).await;
    assert_eq!(other.status(), 200);
}

async fn sign_in_and_out_are_audited(app: TestApp) {
    sign_in_with(&app, None, OPERATOR, "wrong password").await;
    let cookie = app.sign_in(OPERATOR).await;
    app.call_as(&cookie, "auth/sign-out", &[]).await;
    let actions: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    assert_eq!(
        actions,
        ["auth.sign_in_failed", "auth.sign_in", "auth.sign_out"]
    );
    let details: Vec<String> = sqlx::query_scalar("SELECT details FROM audit_log")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    assert!(
        details.iter().all(|d| !d.contains("wrong password")),
        "passwords never reach the audit log"
    );
}

async fn cookies_are_http_only_and_same_site(app: TestApp) {
    let response = sign_in_with(&app, None, OPERATOR, DEMO_PASSWORD).await;
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn idle_sessions_expire() {
    let app = TestApp::spawn_with_idle(common::Backend::Sqlite, Duration::from_secs(1)).await;
    let cookie = app.sign_in(OPERATOR).await;
    assert_eq!(me(&app, &cookie).await, 200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(me(&app, &cookie).await, 401);
}

/// The addresses the audit log recorded for failed sign-ins, oldest first.
async fn failed_sign_in_addresses(app: &TestApp) -> Vec<String> {
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE action = 'auth.sign_in_failed' ORDER BY id",
    )
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    details
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap()["address"].to_string())
        .collect()
}

async fn fail_sign_in_forwarded_for(app: &TestApp, forwarded_for: &str) -> u16 {
    let form = [("email", OPERATOR), ("password", "guess"), ("next", "/")];
    app.request(None, "auth/sign-in", &form)
        .header("X-Forwarded-For", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn x_forwarded_for_counts_only_behind_trusted_proxies() {
    // Directly reachable: the header is the client's own words and is ignored.
    let direct = TestApp::spawn(common::Backend::Sqlite).await;
    assert_eq!(
        fail_sign_in_forwarded_for(&direct, "203.0.113.7").await,
        401
    );
    assert_eq!(failed_sign_in_addresses(&direct).await, ["\"127.0.0.1\""]);

    // Behind one proxy: the address it appended, not what the client put before it.
    let proxied = TestApp::spawn_behind_proxies(common::Backend::Sqlite, 1).await;
    assert_eq!(
        fail_sign_in_forwarded_for(&proxied, "203.0.113.7").await,
        401
    );
    assert_eq!(
        fail_sign_in_forwarded_for(&proxied, "6.6.6.6, 198.51.100.2").await,
        401
    );
    assert_eq!(
        failed_sign_in_addresses(&proxied).await,
        ["\"203.0.113.7\"", "\"198.51.100.2\""]
    );
}
