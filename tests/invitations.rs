//! Invitations: adding an address without an account makes a one-time link (the token in its
//! fragment, only its sha256 in the database) that lasts 7 days; accepting it makes the account
//! and the membership and signs in; a link works once, not after it expired or was withdrawn or
//! replaced, and never from a query string; inviting needs the server's public URL.

#![cfg(feature = "ssr")]

mod common;

use common::{Options, TestApp, ADMIN, CONTOSO, OPERATOR};
use serde_json::Value;
use sha2::{Digest, Sha256};

both_backends!(TestApp:
    an_invitation_makes_the_account_and_the_membership_once,
    an_expired_or_replaced_or_withdrawn_link_is_refused_plainly,
    two_acceptances_at_the_same_moment_make_one_account,
    the_token_is_stored_hashed_and_never_read_from_a_query_string,
    bad_input_is_refused_and_writes_nothing,
    an_address_that_got_an_account_meanwhile_is_refused,
);

const INVITEE: &str = "new.person@example.org";
const PASSWORD: &str = "a long enough password";

/// The owner adds `email` with `role`; answers the invitation's token (from the link).
async fn invite(app: &TestApp, owner: &str, email: &str, role: &str) -> String {
    let response = app
        .call_as(
            owner,
            "members/add",
            &[("tenant", CONTOSO), ("email", email), ("role", role)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let outcome: Value = response.json().await.unwrap();
    let link = outcome["Invited"]["link"]
        .as_str()
        .unwrap_or_else(|| panic!("an invitation, not {outcome}"));
    let prefix = format!("{}/invite#token=", app.origin());
    let token = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link} is not {prefix}…"));
    assert!(!link.contains('?'), "{link}");
    assert_eq!(token.len(), 64);
    // 7 days from now, give or take the test's own time.
    let expires_at = outcome["Invited"]["expires_at"].as_i64().unwrap();
    let now = tenantatlas::domain::Timestamp::now().millis();
    let week = 7 * 24 * 3600 * 1000;
    assert!((now + week - 60_000..=now + week).contains(&expires_at));
    token.to_owned()
}

async fn accept(app: &TestApp, token: &str, name: &str, password: &str) -> reqwest::Response {
    app.call(
        "invitations/accept",
        &[("token", token), ("name", name), ("password", password)],
    )
    .await
}

async fn preview(app: &TestApp, token: &str) -> (u16, String) {
    let response = app.call("invitations/preview", &[("token", token)]).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn users_with(app: &TestApp, email: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

async fn an_invitation_makes_the_account_and_the_membership_once(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, "New.Person@Example.org", "operator").await;

    // The owner sees it pending; the invitee's link says what it is for.
    let pending: Value = app
        .call_as(&owner, "invitations/list", &[("tenant", CONTOSO)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending[0]["email"], INVITEE);
    assert_eq!(pending[0]["invited_by"], ADMIN);
    let (status, body) = preview(&app, &token).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["tenant_name"], "Contoso (demo)");
    assert_eq!(body["email"], INVITEE);
    assert_eq!(body["role"], "Operator");

    // Accepting makes the account, signs it in and goes to the tenant.
    let response = accept(&app, &token, "  Nova Person ", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let cookie = common::session_cookie(&response).expect("signed in");
    let next: String = response.json().await.unwrap();
    assert_eq!(next, format!("/t/{CONTOSO}/backup-sets"));
    let me: Value = app
        .call_as(&cookie, "auth/me", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["display_name"], "Nova Person");
    assert_eq!(me["is_admin"], false);
    assert_eq!(me["memberships"][0]["role"], "Operator");
    assert_eq!(
        app.call_as(&cookie, "backup-sets/list", &[("tenant", CONTOSO)])
            .await
            .status(),
        200
    );
    assert_eq!(
        app.call_as(&cookie, "backup-sets/list", &[("tenant", common::FABRIKAM)])
            .await
            .status(),
        403
    );
    // The password works for sign-in from then on.
    let signed_in = app
        .call(
            "auth/sign-in",
            &[("email", INVITEE), ("password", PASSWORD), ("next", "/")],
        )
        .await;
    assert_eq!(signed_in.status(), 200);

    // The link works once.
    let again = accept(&app, &token, "Someone Else", "another long password").await;
    assert_eq!(again.status(), 409);
    assert!(again.text().await.unwrap().contains("already been used"));
    assert_eq!(preview(&app, &token).await.0, 409);
    assert_eq!(users_with(&app, INVITEE).await, 1);
    let name: String = sqlx::query_scalar("SELECT display_name FROM users WHERE email = $1")
        .bind(INVITEE)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(name, "Nova Person");

    // The members list has them; nothing is pending any more; both steps are audited.
    let members: Value = app
        .call_as(&owner, "members/list", &[("tenant", CONTOSO)])
        .await
        .json()
        .await
        .unwrap();
    assert!(members
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["email"] == INVITEE && m["role"] == "Operator"));
    let pending: Value = app
        .call_as(&owner, "invitations/list", &[("tenant", CONTOSO)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(pending, Value::Array(vec![]));
    let audit: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT a.action, u.email FROM audit_log a LEFT JOIN users u ON u.id = a.actor_user_id \
         WHERE a.action LIKE 'invitation.%' ORDER BY a.id",
    )
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        audit,
        [
            ("invitation.create".to_owned(), Some(ADMIN.to_owned())),
            ("invitation.accept".to_owned(), Some(INVITEE.to_owned())),
        ]
    );
}

async fn an_expired_or_replaced_or_withdrawn_link_is_refused_plainly(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, INVITEE, "readonly").await;
    sqlx::query("UPDATE invitations SET expires_at = $1")
        .bind(tenantatlas::domain::Timestamp::now().millis() - 1)
        .execute(app.db.pool())
        .await
        .unwrap();
    let (status, body) = preview(&app, &token).await;
    assert_eq!(status, 409);
    assert!(body.contains("expired"), "{body}");
    let response = accept(&app, &token, "Late Person", PASSWORD).await;
    assert_eq!(response.status(), 409);
    assert!(response.text().await.unwrap().contains("expired"));
    assert_eq!(users_with(&app, INVITEE).await, 0);

    // A new invitation of the same address replaces a pending one: the first link stops.
    let first = invite(&app, &owner, INVITEE, "readonly").await;
    let second = invite(&app, &owner, INVITEE, "manager").await;
    assert_eq!(preview(&app, &first).await.0, 409);
    let pending: Value = app
        .call_as(&owner, "invitations/list", &[("tenant", CONTOSO)])
        .await
        .json()
        .await
        .unwrap();
    let pending = pending.as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["role"], "Manager");

    // Withdrawn: the link is no longer valid, and the withdrawal is audited.
    let id = pending[0]["id"].as_i64().unwrap().to_string();
    let revoke = [("tenant", CONTOSO), ("id", id.as_str())];
    let manager = app.sign_in("manager@contoso.example").await;
    assert_eq!(
        app.call_as(&manager, "invitations/revoke", &revoke)
            .await
            .status(),
        403
    );
    assert_eq!(
        app.call_as(&owner, "invitations/revoke", &revoke)
            .await
            .status(),
        200
    );
    let (status, body) = preview(&app, &second).await;
    assert_eq!(status, 404);
    assert!(body.contains("not valid"), "{body}");
    assert_eq!(
        accept(&app, &second, "Too Late", PASSWORD).await.status(),
        404
    );
    assert_eq!(
        app.call_as(&owner, "invitations/revoke", &revoke)
            .await
            .status(),
        404
    );
    assert_eq!(users_with(&app, INVITEE).await, 0);
    let revoked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'invitation.revoke'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(revoked, 1);
}

async fn two_acceptances_at_the_same_moment_make_one_account(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, INVITEE, "operator").await;
    let (a, b) = tokio::join!(
        accept(&app, &token, "First", PASSWORD),
        accept(&app, &token, "Second", PASSWORD),
    );
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409]);
    assert_eq!(users_with(&app, INVITEE).await, 1);
    let memberships: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = $1",
    )
    .bind(INVITEE)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(memberships, 1);
}

async fn the_token_is_stored_hashed_and_never_read_from_a_query_string(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, INVITEE, "operator").await;

    // The database holds the token's sha256, and the token nowhere: not in any column of the
    // invitation, not in the audit log.
    let (hash, row): (String, String) = sqlx::query_as(
        "SELECT token_hash, email || ' ' || role || ' ' || CAST(created_at AS TEXT) || ' ' || \
         CAST(expires_at AS TEXT) FROM invitations",
    )
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    let expected: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hash, expected);
    assert!(!hash.contains(&token) && !row.contains(&token));
    let audit: Vec<String> = sqlx::query_scalar("SELECT target || ' ' || details FROM audit_log")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    assert!(audit.iter().all(|line| !line.contains(&token)), "{audit:?}");

    // A token in the query string is not read: the request lacks its token and is refused,
    // and nothing is written.
    let response = app
        .http
        .post(app.url(&format!("/api/invitations/accept?token={token}")))
        .header("Origin", app.origin())
        .form(&[("name", "Query Person"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(users_with(&app, INVITEE).await, 0);
    let preview = app
        .http
        .post(app.url(&format!("/api/invitations/preview?token={token}")))
        .header("Origin", app.origin())
        .form(&[("unexpected", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(preview.status(), 400);

    // The accept page is open to visitors without an account; its link has the token after '#'.
    let page = app.get(None, "/invite").await;
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Accept an invitation"));
}

async fn bad_input_is_refused_and_writes_nothing(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, INVITEE, "operator").await;
    let long_name = "n".repeat(101);
    let long_password = "p".repeat(1_001);
    for (token, name, password, status, field) in [
        (token.as_str(), "", PASSWORD, 422, Some("name")),
        (
            token.as_str(),
            long_name.as_str(),
            PASSWORD,
            422,
            Some("name"),
        ),
        (token.as_str(), "Nova", "short", 422, Some("password")),
        (
            token.as_str(),
            "Nova",
            long_password.as_str(),
            422,
            Some("password"),
        ),
        ("not-a-token", "Nova", PASSWORD, 404, None),
        (&"0".repeat(64), "Nova", PASSWORD, 404, None),
    ] {
        let response = accept(&app, token, name, password).await;
        assert_eq!(response.status(), status, "{name:.10} {password:.10}");
        let body: Value = response.json().await.unwrap();
        if let Some(field) = field {
            assert_eq!(body["Invalid"]["field"], field, "{body}");
        }
    }
    assert_eq!(users_with(&app, INVITEE).await, 0);
    let accepted: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM invitations WHERE accepted_at IS NOT NULL")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(accepted, 0);
    // A bad role or address invites nobody.
    for (email, role) in [("not an address", "operator"), (INVITEE, "boss")] {
        let response = app
            .call_as(
                &owner,
                "members/add",
                &[("tenant", CONTOSO), ("email", email), ("role", role)],
            )
            .await;
        assert_eq!(response.status(), 422);
    }
    assert_eq!(app.count("invitations").await, 1);

    // Without --public-url no link can be made: a plain 409, and nothing is written. An
    // address with an account is still added at once.
    let bare = TestApp::spawn_with(
        if app.database_url().starts_with("sqlite") {
            common::Backend::Sqlite
        } else {
            common::Backend::Postgres
        },
        Options {
            public_url: false,
            ..Options::default()
        },
    )
    .await;
    let owner = bare.sign_in(ADMIN).await;
    let response = bare
        .call_as(
            &owner,
            "members/add",
            &[
                ("tenant", CONTOSO),
                ("email", INVITEE),
                ("role", "operator"),
            ],
        )
        .await;
    assert_eq!(response.status(), 409);
    assert!(response.text().await.unwrap().contains("--public-url"));
    assert_eq!(bare.count("invitations").await, 0);
    let response = bare
        .call_as(
            &owner,
            "members/add",
            &[
                ("tenant", CONTOSO),
                ("email", "operator@fabrikam.example"),
                ("role", "readonly"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), "Added");
}

async fn an_address_that_got_an_account_meanwhile_is_refused(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let email = OPERATOR.replace("contoso", "woodgrove");
    let token = invite(&app, &owner, &email, "operator").await;
    // The address gets an account some other way (the CLI) before the link is used.
    sqlx::query(
        "INSERT INTO users (email, display_name, password_hash, created_at) VALUES ($1, 'W', NULL, 0)",
    )
    .bind(&email)
    .execute(app.db.pool())
    .await
    .unwrap();
    let response = accept(&app, &token, "Woody", PASSWORD).await;
    assert_eq!(response.status(), 409);
    assert!(common::session_cookie(&response).is_none());
    assert!(response.text().await.unwrap().contains("exists already"));
    // The invitation stays unused, and the account got no membership (nor a password).
    let accepted: Option<i64> = sqlx::query_scalar("SELECT accepted_at FROM invitations")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(accepted, None);
    let memberships: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM memberships m JOIN users u ON u.id = m.user_id WHERE u.email = $1",
    )
    .bind(&email)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(memberships, 0);
}
