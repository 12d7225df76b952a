//! Sessions and sign-in: fixation, sign-out, idle and absolute expiry, revocation by password
//! change, the `__Host-` cookie, forged cookies, cross-origin POSTs, indistinguishable failures,
//! the atomic failure throttle (per account, per address, IPv6 per /64, behind trusted proxies,
//! one budget for every instance on the database) and the bounded password checks.

use crate::common;

use std::time::Duration;

use common::{
    session_cookie, session_set_cookie, Options, TestApp, ADMIN, CONTOSO, OPERATOR, READONLY,
};
use serde_json::Value;
use tenantatlas::domain::Email;
use tenantatlas::server::auth::client_address::TrustedProxies;
use tenantatlas::server::auth::password::{self, Checker};
use tenantatlas::server::auth::session::SessionSettings;
use tenantatlas::server::auth::session_store::{self, DbSessionStore};
use tenantatlas::server::auth::{throttle, users};
use tenantatlas::server::db::Db;
use tenantatlas::server::http;
use tenantatlas::server::seed::DEMO_PASSWORD;
use tenantatlas::server::state::{AppState, Settings};
use tower_sessions::session::{Id, Record};
use tower_sessions::{Session, SessionStore};

both_backends!(TestApp:
    sign_in_rotates_the_session_id,
    sign_out_ends_the_session_in_the_store,
    forged_cookies_are_anonymous,
    cross_origin_posts_are_refused_and_write_nothing,
    wrong_password_and_unknown_user_look_the_same,
    repeated_failures_are_slowed_down,
    sign_in_and_out_are_audited,
    cookies_are_http_only_and_same_site,
    parallel_guesses_get_at_most_the_budget,
    successful_sign_ins_leave_the_failure_budget_whole,
    a_password_change_ends_every_session_of_that_user,
    the_store_keeps_records_and_never_overwrites_on_create,
    expired_sessions_are_deleted,
    the_table_holds_no_usable_session_id,
    a_save_in_flight_never_brings_an_ended_session_back,
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

#[tokio::test]
async fn a_session_in_use_outlives_its_idle_timeout() {
    let app = TestApp::spawn_with_idle(common::Backend::Sqlite, Duration::from_secs(2)).await;
    let cookie = app.sign_in(OPERATOR).await;
    let signed_in = std::time::Instant::now();
    // Used every 300 ms for twice the idle timeout: each use is well inside it.
    while signed_in.elapsed() < Duration::from_secs(4) {
        assert_eq!(
            me(&app, &cookie).await,
            200,
            "in use, {:?} after the sign-in",
            signed_in.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Then unused for longer than the idle timeout: over.
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

    // Proxies are trusted, but the peer is not one of them: the header is still ignored.
    let elsewhere = TestApp::spawn_behind_proxies(common::Backend::Sqlite, "10.0.0.0/8").await;
    assert_eq!(
        fail_sign_in_forwarded_for(&elsewhere, "203.0.113.7").await,
        401
    );
    assert_eq!(
        failed_sign_in_addresses(&elsewhere).await,
        ["\"127.0.0.1\""]
    );

    // Behind trusted proxies: the first address from the right that is not one of them.
    let proxied =
        TestApp::spawn_behind_proxies(common::Backend::Sqlite, "127.0.0.1/32,10.0.0.0/8").await;
    for header in [
        "203.0.113.7",
        "6.6.6.6, 198.51.100.2",
        "6.6.6.6, 198.51.100.3:4711, 10.1.2.3",
        "[2001:db8::7]:443, 10.1.2.3:80",
    ] {
        assert_eq!(fail_sign_in_forwarded_for(&proxied, header).await, 401);
    }
    assert_eq!(
        failed_sign_in_addresses(&proxied).await,
        [
            "\"203.0.113.7\"",
            "\"198.51.100.2\"",
            "\"198.51.100.3\"",
            "\"2001:db8::7\""
        ]
    );
}

/// A failed sign-in for `email` that a trusted proxy forwarded from `client`.
async fn fail_sign_in_from(app: &TestApp, email: &str, client: &str) -> u16 {
    let form = [("email", email), ("password", "guess"), ("next", "/")];
    app.request(None, "auth/sign-in", &form)
        .header("X-Forwarded-For", client)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn ipv6_clients_are_throttled_per_64() {
    // Budgets that do not refill while the test runs.
    let slow = |burst| throttle::Budget {
        burst,
        refill: Duration::from_secs(3600),
    };
    let app = TestApp::spawn_with(
        common::Backend::Sqlite,
        Options {
            trusted_proxies: "127.0.0.1",
            throttle: Some(throttle::SignInThrottle::new(slow(5), slow(3))),
            ..Options::default()
        },
    )
    .await;
    // One host sprays accounts, each attempt from a fresh address of its /64.
    for n in 0..3 {
        let client = format!("2001:db8:5:6:{n:x}::1");
        let status = fail_sign_in_from(&app, &format!("spray{n}@contoso.example"), &client).await;
        assert_eq!(status, 401, "attempt {n}");
    }
    let same_64 = fail_sign_in_from(&app, "fresh@contoso.example", "2001:db8:5:6:ffff::9").await;
    assert_eq!(same_64, 429, "another address of the same /64");
    let next_64 = fail_sign_in_from(&app, "fresh@contoso.example", "2001:db8:5:7::1").await;
    assert_eq!(next_64, 401, "the neighbouring /64 has its own budget");
}

async fn parallel_guesses_get_at_most_the_budget(app: TestApp) {
    let guesses: Vec<_> = (0..60)
        .map(|_| {
            let form = [("email", OPERATOR), ("password", "guess"), ("next", "/")];
            tokio::spawn(app.request(None, "auth/sign-in", &form).send())
        })
        .collect();
    let (mut checked, mut busy) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap().unwrap().status().as_u16() {
            401 => checked += 1,
            // Turned away before its check when every core stayed busy for 2 s (a slow machine).
            503 => busy += 1,
            429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        checked <= throttle::ACCOUNT.burst,
        "{checked} of 60 parallel guesses were checked"
    );
    assert!(checked + busy >= 1, "some guesses got past the throttle");
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.sign_in_failed'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(audited, i64::from(checked));
}

async fn successful_sign_ins_leave_the_failure_budget_whole(app: TestApp) {
    for _ in 0..2 * throttle::ACCOUNT.burst {
        let response = sign_in_with(&app, None, OPERATOR, DEMO_PASSWORD).await;
        assert_eq!(response.status(), 200);
    }
    for n in 0..throttle::ACCOUNT.burst {
        let wrong = sign_in_with(&app, None, OPERATOR, "guess").await;
        assert_eq!(
            wrong.status(),
            401,
            "failure {n} is still within the budget"
        );
    }
    let spent = sign_in_with(&app, None, OPERATOR, "guess").await;
    assert_eq!(spent.status(), 429);
}

/// A second server (its own state, its own pool) on `app`'s database, as a second `serve`
/// instance behind the same address would be; it stops when the answer is dropped.
async fn second_instance(
    app: &TestApp,
    throttle: throttle::SignInThrottle,
    checker: Checker,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let db = Db::connect(app.database_url()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let origin = format!("http://{addr}");
    let settings = Settings {
        public_origin: origin.clone(),
        public_url: Some(origin),
        sessions: SessionSettings {
            idle: Duration::from_secs(3600),
            max_age: Duration::from_secs(12 * 3600),
            secure: false,
        },
        trusted_proxies: TrustedProxies::default(),
    };
    let state = AppState::new(
        db,
        http::leptos_options(&std::env::temp_dir(), addr),
        settings,
    )
    .with_password_checker(checker)
    .with_sign_in_throttle(throttle);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(http::serve(listener, state, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// Two instances on one database share the account's budget: 60 parallel wrong sign-ins for
/// one account, alternating between them, get at most the budget checked (not twice it).
async fn two_instances_share_one_sign_in_budget(backend: common::Backend) {
    // A budget that does not refill while the test runs, and enough password checks at once
    // that none is turned away busy (which would give its slot back for a later guess).
    let slow = |burst| throttle::Budget {
        burst,
        refill: Duration::from_secs(3600),
    };
    let budgets = || throttle::SignInThrottle::new(slow(throttle::ACCOUNT.burst), slow(100));
    let checker = || Checker::new(64, Duration::from_secs(60));
    let app = TestApp::spawn_with(
        backend,
        Options {
            throttle: Some(budgets()),
            checker: Some(checker()),
            ..Options::default()
        },
    )
    .await;
    let (second, _stop) = second_instance(&app, budgets(), checker()).await;
    let form = [("email", OPERATOR), ("password", "guess"), ("next", "/")];
    let guesses: Vec<_> = (0..60)
        .map(|n| {
            let request = if n % 2 == 0 {
                app.request(None, "auth/sign-in", &form)
            } else {
                app.http
                    .post(format!("http://{second}/api/auth/sign-in"))
                    .header("Origin", format!("http://{second}"))
                    .form(&form)
            };
            tokio::spawn(request.send())
        })
        .collect();
    let (mut checked, mut refused) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap().unwrap().status().as_u16() {
            401 => checked += 1,
            429 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'auth.sign_in_failed'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert!(
        audited <= i64::from(throttle::ACCOUNT.burst),
        "{audited} of 60 guesses on two instances were checked"
    );
    assert_eq!(audited, checked);
    assert!(refused >= 55, "{refused} of 60 guesses were refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_instances_share_one_sign_in_budget() {
    two_instances_share_one_sign_in_budget(common::Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_share_one_sign_in_budget() {
    two_instances_share_one_sign_in_budget(common::Backend::Postgres).await;
}

/// PostgreSQL: pruning the budgets while a sign-in holds its account row never deadlocks with
/// that sign-in reserving its address row next. A plain `DELETE … WHERE next_free <= now`
/// deleted the address row, then waited on the account row, while the sign-in waited on the
/// deleted address row: 40P01 for one of them. The prune now skips the rows a sign-in holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pruning_skips_the_budgets_a_sign_in_holds() {
    let test_db = common::TestDb::create(common::Backend::Postgres).await;
    let db = test_db.db.clone();
    let (account, address) = ("account:prune@contoso.example", "address:192.0.2.7");
    // Both whole again (prunable), the address row first in the table.
    for key in [address, account] {
        sqlx::query("INSERT INTO sign_in_budgets (key, next_free) VALUES ($1, 0)")
            .bind(key)
            .execute(db.pool())
            .await
            .unwrap();
    }
    // A reserve's upserts, as throttle::reserve runs them: the account's row, then the address's.
    let upsert = "INSERT INTO sign_in_budgets (key, next_free) VALUES ($1, $2) \
                  ON CONFLICT (key) DO UPDATE SET next_free = GREATEST(sign_in_budgets.next_free, $2)";
    let next_free = i64::MAX / 2;
    let mut held = db.pool().begin().await.unwrap();
    sqlx::query(upsert)
        .bind(account)
        .bind(next_free)
        .execute(&mut *held)
        .await
        .unwrap();
    let mut prune = tokio::spawn({
        let db = db.clone();
        async move { throttle::prune(&db).await }
    });
    // Let the prune run up to where it would wait on the held account row.
    let early = tokio::time::timeout(Duration::from_millis(500), &mut prune).await;
    let reserved = tokio::time::timeout(
        Duration::from_secs(20),
        sqlx::query(upsert)
            .bind(address)
            .bind(next_free)
            .execute(&mut *held),
    )
    .await
    .expect("the address row is reserved without waiting for ever");
    assert!(
        reserved.is_ok(),
        "the sign-in's reserve failed: {:?}",
        reserved.err()
    );
    held.commit().await.unwrap();
    let pruned = match early {
        Ok(done) => done,
        Err(_) => tokio::time::timeout(Duration::from_secs(20), prune)
            .await
            .expect("the prune ends"),
    }
    .unwrap();
    assert_eq!(
        pruned.map_err(|e| e.to_string()),
        Ok(1),
        "the prune deleted the free address row only"
    );
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT key, next_free FROM sign_in_budgets ORDER BY key")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        [
            (account.to_owned(), next_free),
            (address.to_owned(), next_free)
        ],
        "the held account row was skipped, the address row reserved again"
    );
}

#[tokio::test]
async fn busy_password_checks_answer_503_with_retry_after_and_spend_nothing() {
    // No check can ever start: every sign-in waits its (short) time and is turned away.
    let app = TestApp::spawn_with(
        common::Backend::Sqlite,
        Options {
            checker: Some(Checker::new(0, Duration::from_millis(20))),
            ..Options::default()
        },
    )
    .await;
    // More than the account's budget: an attempt turned away costs none of it.
    for _ in 0..2 * throttle::ACCOUNT.burst {
        let response = sign_in_with(&app, None, OPERATOR, DEMO_PASSWORD).await;
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "1");
        assert!(session_cookie(&response).is_none());
        let body = response.text().await.unwrap();
        assert!(body.contains("Busy"), "{body}");
    }
}

#[tokio::test]
async fn sessions_end_after_their_max_age_however_busy() {
    let app = TestApp::spawn_with(
        common::Backend::Sqlite,
        Options {
            max_age: Duration::from_secs(3),
            ..Options::default()
        },
    )
    .await;
    let cookie = app.sign_in(OPERATOR).await;
    // No earlier than the session's own sign-in time, so its lifetime is over at 3.2 s from here.
    let signed_in = std::time::Instant::now();
    let page = format!("/t/{CONTOSO}/backup-sets");
    // Used all along (with a margin for a slow machine), so the idle timeout never strikes.
    while signed_in.elapsed() < Duration::from_millis(1500) {
        assert_eq!(me(&app, &cookie).await, 200);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_millis(3200).saturating_sub(signed_in.elapsed())).await;
    assert_eq!(me(&app, &cookie).await, 401);
    assert!(app
        .get(Some(&cookie), &page)
        .await
        .status()
        .is_redirection());
    let fresh = app.sign_in(OPERATOR).await;
    assert_eq!(
        me(&app, &fresh).await,
        200,
        "a new sign-in starts a new lifetime"
    );
}

async fn a_password_change_ends_every_session_of_that_user(app: TestApp) {
    let laptop = app.sign_in(OPERATOR).await;
    let phone = app.sign_in(OPERATOR).await;
    let tablet = app.sign_in(OPERATOR).await;
    let colleague = app.sign_in(ADMIN).await;
    let page = format!("/t/{CONTOSO}/backup-sets");
    assert_eq!(app.get(Some(&phone), &page).await.status(), 200);
    app.backup_sets(&tablet, CONTOSO).await.unwrap();

    let hash = password::hash("a brand new password".into()).await.unwrap();
    let email = Email::parse(OPERATOR).unwrap();
    users::set_password(&app.db, &email, &hash)
        .await
        .unwrap()
        .unwrap();

    assert_eq!(me(&app, &laptop).await, 401);
    assert!(app.get(Some(&phone), &page).await.status().is_redirection());
    // A tenant's server function checks the session's generation with the membership.
    let refused = app.backup_sets(&tablet, CONTOSO).await.unwrap_err();
    assert_eq!(refused.status.as_u16(), 401, "{}", refused.body);
    let malformed = app
        .backup_sets(&colleague, "not a tenant id")
        .await
        .unwrap_err();
    assert_eq!(
        malformed.status.as_u16(),
        403,
        "a live session, an unknown tenant"
    );
    assert_eq!(
        me(&app, &colleague).await,
        200,
        "other users stay signed in"
    );
    let old = sign_in_with(&app, None, OPERATOR, DEMO_PASSWORD).await;
    assert_eq!(old.status(), 401);
    let new = sign_in_with(&app, None, OPERATOR, "a brand new password").await;
    assert_eq!(new.status(), 200);
    let cookie = session_cookie(&new).unwrap();
    assert_eq!(
        me(&app, &cookie).await,
        200,
        "signed in under the new generation"
    );
}

#[tokio::test]
async fn an_https_public_url_gets_a_host_prefixed_cookie() {
    let plain = TestApp::spawn(common::Backend::Sqlite).await;
    let response = sign_in_with(&plain, None, OPERATOR, DEMO_PASSWORD).await;
    let set_cookie = session_set_cookie(&response).unwrap();
    assert!(
        set_cookie.starts_with("tenantatlas_session="),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");

    let app = TestApp::spawn_with(
        common::Backend::Sqlite,
        Options {
            https: true,
            ..Options::default()
        },
    )
    .await;
    let response = sign_in_with(&app, None, OPERATOR, DEMO_PASSWORD).await;
    assert_eq!(response.status(), 200);
    let set_cookie = session_set_cookie(&response).unwrap();
    // What browsers demand of a `__Host-` cookie: Secure, Path=/ and no Domain.
    assert!(
        set_cookie.starts_with("__Host-tenantatlas_session="),
        "{set_cookie}"
    );
    assert!(set_cookie.contains("; Secure"), "{set_cookie}");
    assert!(set_cookie.contains("; Path=/"), "{set_cookie}");
    assert!(!set_cookie.contains("Domain"), "{set_cookie}");
    let cookie = session_cookie(&response).unwrap();
    assert_eq!(me(&app, &cookie).await, 200);
    // The plain name means nothing there.
    let renamed = cookie.replacen("__Host-", "", 1);
    assert_eq!(me(&app, &renamed).await, 401);
}

fn record(user_id: i64, expires_in: time::Duration) -> Record {
    Record {
        id: Id::default(),
        data: [
            ("user_id".to_owned(), Value::from(user_id)),
            ("note".to_owned(), Value::from("kept as JSON")),
        ]
        .into_iter()
        .collect(),
        expiry_date: time::OffsetDateTime::now_utc() + expires_in,
    }
}

/// The signed-in user id of the session row `id`, as the authorization point reads it.
async fn user_column(app: &TestApp, id: Id) -> Option<Option<i64>> {
    sqlx::query_scalar("SELECT user_id FROM sessions WHERE id_hash = $1")
        .bind(session_store::key(&id))
        .fetch_optional(app.db.pool())
        .await
        .unwrap()
}

/// Two users of the demo.
async fn two_users(app: &TestApp) -> (i64, i64) {
    sqlx::query_as("SELECT min(id), max(id) FROM users")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

async fn the_store_keeps_records_and_never_overwrites_on_create(app: TestApp) {
    let store = DbSessionStore::new(app.db.clone());
    let (one, other) = two_users(&app).await;
    let mut first = record(one, time::Duration::minutes(5));
    store.create(&mut first).await.unwrap();
    let loaded = store.load(&first.id).await.unwrap().expect("the record");
    assert_eq!(loaded.data, first.data);
    assert_eq!(
        loaded.expiry_date.unix_timestamp(),
        first.expiry_date.unix_timestamp()
    );
    assert_eq!(user_column(&app, first.id).await, Some(Some(one)));

    // A new record that happens to draw a taken id gets another one; the first is untouched.
    let mut second = record(other, time::Duration::minutes(5));
    second.id = first.id;
    store.create(&mut second).await.unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(user_column(&app, first.id).await, Some(Some(one)));
    assert_eq!(user_column(&app, second.id).await, Some(Some(other)));

    // A save replaces the record and its columns; a delete removes it.
    second.data.remove("user_id");
    store.save(&second).await.unwrap();
    assert_eq!(user_column(&app, second.id).await, Some(None));
    store.delete(&second.id).await.unwrap();
    assert!(store.load(&second.id).await.unwrap().is_none());
    assert_eq!(user_column(&app, second.id).await, None);
}

async fn expired_sessions_are_deleted(app: TestApp) {
    let store = DbSessionStore::new(app.db.clone());
    let (user, _) = two_users(&app).await;
    let mut live = record(user, time::Duration::minutes(5));
    let mut over = record(user, time::Duration::seconds(-1));
    store.create(&mut live).await.unwrap();
    store.create(&mut over).await.unwrap();
    // An expired record is not loaded even before it is deleted.
    assert!(store.load(&over.id).await.unwrap().is_none());
    assert_eq!(store.delete_expired().await.unwrap(), 1);
    assert_eq!(user_column(&app, over.id).await, None);
    assert!(store.load(&live.id).await.unwrap().is_some());
}

async fn the_table_holds_no_usable_session_id(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let value = cookie.split_once('=').expect("name=value").1.to_owned();
    let id: Id = value.parse().expect("a session id");
    let stored: Vec<String> = sqlx::query_scalar("SELECT id_hash FROM sessions")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    // The row is there under the id's hash, and nothing stored is (or contains) the id.
    assert!(stored.contains(&session_store::key(&id)), "{stored:?}");
    let data: Vec<String> = sqlx::query_scalar("SELECT data FROM sessions")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    for text in stored.iter().chain(&data) {
        assert!(!text.contains(&value), "the session id is stored: {text}");
    }
    // A cookie carrying the stored hash instead of the id signs no one in.
    let forged = format!("tenantatlas_session={}", session_store::key(&id));
    assert_eq!(me(&app, &forged).await, 401);
    assert_eq!(me(&app, &cookie).await, 200);
}

async fn a_save_in_flight_never_brings_an_ended_session_back(app: TestApp) {
    let store = std::sync::Arc::new(DbSessionStore::new(app.db.clone()));
    let (user, _) = two_users(&app).await;
    let mut signed_in = record(user, time::Duration::minutes(5));
    store.create(&mut signed_in).await.unwrap();
    let id = signed_in.id;

    // A request in flight moves the session's expiry on (the guard's keep-alive) …
    let in_flight = Session::new(Some(id), store.clone(), None);
    in_flight.insert("touched_at", 1).await.unwrap();
    // … while another request of the same session signs out …
    let sign_out = Session::new(Some(id), store.clone(), None);
    sign_out.flush().await.unwrap();
    assert_eq!(user_column(&app, id).await, None);
    // … and the first one's save, with its response, finds the session gone and leaves it so.
    in_flight.save().await.unwrap();
    assert!(store.load(&id).await.unwrap().is_none());
    assert_eq!(user_column(&app, id).await, None);

    // A session that still exists is saved as before.
    let mut live = record(user, time::Duration::minutes(5));
    store.create(&mut live).await.unwrap();
    let used = Session::new(Some(live.id), store.clone(), None);
    used.insert("touched_at", 2).await.unwrap();
    used.save().await.unwrap();
    let loaded = store.load(&live.id).await.unwrap().expect("the record");
    assert_eq!(loaded.data.get("touched_at"), Some(&Value::from(2)));
    assert_eq!(user_column(&app, live.id).await, Some(Some(user)));
}
