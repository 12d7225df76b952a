//! Invitations: adding an address without an account makes a one-time link (the token in its
//! fragment, only its sha256 in the database) that lasts 7 days; accepting it makes the account
//! and the membership and signs in; a link works once, not after it expired or was withdrawn or
//! replaced, and never from a query string; inviting needs the server's public URL.

use crate::common;

use std::time::Duration;

use common::{Backend, Options, Refusal, TestApp, ADMIN, CONTOSO, OPERATOR, OUTSIDER, READONLY};
use sha2::{Digest, Sha256};
use tenantatlas::domain::invitation::InvitationToken;
use tenantatlas::domain::{AddMemberOutcome, AppError, Capability, Email, Role};
use tenantatlas::server::auth::password::Checker;
use tenantatlas::server::auth::{authorize_user, TenantContext};
use tenantatlas::server::tenants::{invitations, members};

both_backends!(TestApp:
    an_invitation_makes_the_account_and_the_membership_once,
    an_expired_or_replaced_or_withdrawn_link_is_refused_plainly,
    two_acceptances_at_the_same_moment_make_one_account,
    the_token_is_stored_hashed_and_never_read_from_a_query_string,
    bad_input_is_refused_and_writes_nothing,
    an_address_that_got_an_account_meanwhile_is_refused,
    many_acceptances_at_once_make_one_account,
    an_owner_demoted_while_inviting_makes_no_invitation,
    a_link_whose_inviter_may_no_longer_invite_brings_no_one_in,
    an_owner_demoted_while_changing_members_changes_no_one,
    a_decomposed_address_names_the_account_of_its_composed_form,
    joining_twice_with_the_account_is_one_join,
);

const INVITEE: &str = "new.person@example.org";
const PASSWORD: &str = "a long enough password";

/// The owner adds `email` with `role`; answers the invitation's token (from the link).
async fn invite(app: &TestApp, owner: &str, email: &str, role: &str) -> String {
    let outcome = app
        .add_member(owner, CONTOSO, email, role)
        .await
        .expect("the owner invites");
    let AddMemberOutcome::Invited { link, expires_at } = outcome else {
        panic!("an invitation, not {outcome:?}");
    };
    let prefix = format!("{}/invite#token=", app.origin());
    let token = link
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{link} is not {prefix}…"));
    assert!(!link.contains('?'), "{link}");
    assert_eq!(token.len(), 64);
    // 7 days from now, give or take the test's own time.
    let expires_at = expires_at.millis();
    let now = tenantatlas::domain::Timestamp::now().millis();
    let week = 7 * 24 * 3600 * 1000;
    assert!((now + week - 60_000..=now + week).contains(&expires_at));
    token.to_owned()
}

/// Accepting `token` as `name` with `password` is refused; the refusal.
async fn refused_accept(app: &TestApp, token: &str, name: &str, password: &str) -> Refusal {
    let (answer, _cookie) = app.accept_invitation(token, name, password).await;
    answer.expect_err("the acceptance is refused")
}

/// Reading invitation `token` is refused; the refusal.
async fn refused_preview(app: &TestApp, token: &str) -> Refusal {
    app.invitation_preview(token)
        .await
        .expect_err("the preview is refused")
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
    let pending = app
        .invitations(&owner, CONTOSO)
        .await
        .expect("the owner reads the invitations");
    assert_eq!(pending[0].email, INVITEE);
    assert_eq!(pending[0].invited_by.as_deref(), Some(ADMIN));
    let preview = app
        .invitation_preview(&token)
        .await
        .expect("the link can be read");
    assert_eq!(preview.tenant_name, "Contoso (demo)");
    assert_eq!(preview.email, INVITEE);
    assert_eq!(preview.role, Role::Operator);
    assert!(!preview.existing_account, "a new address makes its account");

    // Accepting makes the account, signs it in and goes to the tenant.
    let (next, cookie) = app
        .accept_invitation(&token, "  Nova Person ", PASSWORD)
        .await;
    let next = next.expect("the invitation is accepted");
    let cookie = cookie.expect("signed in");
    assert_eq!(next, format!("/t/{CONTOSO}/backup-sets"));
    let me = app.current_user(&cookie).await.expect("the new account");
    assert_eq!(me.display_name, "Nova Person");
    assert!(!me.is_admin);
    assert_eq!(me.memberships[0].role, Role::Operator);
    app.backup_sets(&cookie, CONTOSO)
        .await
        .expect("a member of Contoso");
    assert_eq!(
        app.backup_sets(&cookie, common::FABRIKAM)
            .await
            .expect_err("not a member of Fabrikam")
            .status,
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

    // The link works once: its page and an acceptance that is not the account's own session
    // say it was used (that session's is answered as the first, see
    // `joining_twice_with_the_account_is_one_join`).
    let again = refused_accept(&app, &token, "Someone Else", "another long password").await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("already been used"), "{}", again.body);
    let used = refused_preview(&app, &token).await;
    assert_eq!(used.status, 409);
    assert!(used.body.contains("already been used"), "{}", used.body);
    assert_eq!(users_with(&app, INVITEE).await, 1);
    let name: String = sqlx::query_scalar("SELECT display_name FROM users WHERE email = $1")
        .bind(INVITEE)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(name, "Nova Person");

    // The members list has them; nothing is pending any more; both steps are audited.
    let members = app
        .members(&owner, CONTOSO)
        .await
        .expect("the owner reads the members");
    assert!(members
        .iter()
        .any(|m| m.email == INVITEE && m.role == Role::Operator));
    let pending = app
        .invitations(&owner, CONTOSO)
        .await
        .expect("the owner reads the invitations");
    assert!(pending.is_empty(), "{pending:?}");
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
    // The acceptance names the new member by e-mail, as the members page's own changes do.
    let accepted: String =
        sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'invitation.accept'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    let accepted: serde_json::Value = serde_json::from_str(&accepted).unwrap();
    assert_eq!(accepted["member_email"], INVITEE, "{accepted}");
}

async fn an_expired_or_replaced_or_withdrawn_link_is_refused_plainly(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, INVITEE, "readonly").await;
    sqlx::query("UPDATE invitations SET expires_at = $1")
        .bind(tenantatlas::domain::Timestamp::now().millis() - 1)
        .execute(app.db.pool())
        .await
        .unwrap();
    let expired = refused_preview(&app, &token).await;
    assert_eq!(expired.status, 409);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    let expired = refused_accept(&app, &token, "Late Person", PASSWORD).await;
    assert_eq!(expired.status, 409);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    assert_eq!(users_with(&app, INVITEE).await, 0);

    // A new invitation of the same address replaces a pending one: the first link stops.
    let first = invite(&app, &owner, INVITEE, "readonly").await;
    let second = invite(&app, &owner, INVITEE, "manager").await;
    assert_eq!(refused_preview(&app, &first).await.status, 409);
    let pending = app
        .invitations(&owner, CONTOSO)
        .await
        .expect("the owner reads the invitations");
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].role, Role::Manager);

    // Withdrawn: the link is no longer valid, and the withdrawal is audited.
    let id = pending[0].id;
    let manager = app.sign_in("manager@contoso.example").await;
    assert_eq!(
        app.revoke_invitation(&manager, CONTOSO, id)
            .await
            .expect_err("a manager withdraws nothing")
            .status,
        403
    );
    app.revoke_invitation(&owner, CONTOSO, id)
        .await
        .expect("the owner withdraws it");
    let withdrawn = refused_preview(&app, &second).await;
    assert_eq!(withdrawn.status, 404);
    assert!(withdrawn.body.contains("not valid"), "{}", withdrawn.body);
    assert_eq!(
        refused_accept(&app, &second, "Too Late", PASSWORD)
            .await
            .status,
        404
    );
    assert_eq!(
        app.revoke_invitation(&owner, CONTOSO, id)
            .await
            .expect_err("withdrawn already")
            .status,
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
    let ((a, _), (b, _)) = tokio::join!(
        app.accept_invitation(&token, "First", PASSWORD),
        app.accept_invitation(&token, "Second", PASSWORD),
    );
    let refused = match (&a, &b) {
        (Ok(_), Err(refused)) | (Err(refused), Ok(_)) => refused,
        _ => panic!("one acceptance, one refusal: {a:?} {b:?}"),
    };
    assert_eq!(refused.status, 409);
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
        let refused = refused_accept(&app, token, name, password).await;
        assert_eq!(refused.status, status, "{name:.10} {password:.10}");
        let error = refused.error();
        if let Some(field) = field {
            assert!(
                matches!(&error, AppError::Invalid { field: f, .. } if f == field),
                "{error:?}"
            );
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
        let refused = app
            .add_member(&owner, CONTOSO, email, role)
            .await
            .expect_err("nobody is invited");
        assert_eq!(refused.status, 422);
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
    let refused = bare
        .add_member(&owner, CONTOSO, INVITEE, "operator")
        .await
        .expect_err("no link without a public URL");
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("--public-url"), "{}", refused.body);
    assert_eq!(bare.count("invitations").await, 0);
    let added = bare
        .add_member(&owner, CONTOSO, "operator@fabrikam.example", "readonly")
        .await
        .expect("an account is added at once");
    assert_eq!(added, AddMemberOutcome::Added);
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
    let (answer, cookie) = app.accept_invitation(&token, "Woody", PASSWORD).await;
    let refused = answer.expect_err("the address has an account");
    assert_eq!(refused.status, 409);
    assert!(cookie.is_none());
    assert!(refused.body.contains("exists already"), "{}", refused.body);
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

/// Acceptances of one link sent at once: every answer is the one account's 200, a 409, or the
/// busy answer; one account and one membership come of them.
async fn many_acceptances_at_once_make_one_account(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, INVITEE, "operator").await;
    let passwords: Vec<String> = (0..40).map(|i| format!("{PASSWORD} {i}")).collect();
    let answers = futures::future::join_all(
        passwords
            .iter()
            .map(|password| app.accept_invitation(&token, "Racer", password)),
    )
    .await;
    let accepted = answers.iter().filter(|(answer, _)| answer.is_ok()).count();
    assert_eq!(accepted, 1, "{answers:?}");
    for (answer, _) in &answers {
        if let Err(refused) = answer {
            assert!([409, 503].contains(&refused.status.as_u16()), "{refused:?}");
        }
    }
    assert_eq!(users_with(&app, INVITEE).await, 1);
}

/// A second owner of Contoso (the manager, promoted by the admin): their account id and
/// session.
async fn second_owner(app: &TestApp, admin: &str) -> (i64, String) {
    let manager = "manager@contoso.example";
    let id = common::user_id(&app.db, manager).await;
    app.change_member_role(admin, CONTOSO, id, "owner")
        .await
        .expect("the admin makes the manager an owner");
    (id, app.sign_in(manager).await)
}

/// The second owner, authorized to manage members, then demoted to `role` by the admin before
/// they act: their id and the authorization they still hold.
async fn demoted_after_authorizing(app: &TestApp, role: &str) -> (i64, TenantContext) {
    let admin = app.sign_in(ADMIN).await;
    let (second, _) = second_owner(app, &admin).await;
    let authorized = authorize_user(&app.db, second, CONTOSO, Capability::ManageMembers)
        .await
        .expect("an owner manages members");
    app.change_member_role(&admin, CONTOSO, second, role)
        .await
        .expect("the admin demotes the second owner");
    (second, authorized)
}

/// An owner authorized to invite, then demoted by another owner before their invitation is
/// written (the demotion withdrew nothing: there was nothing yet), makes no invitation: the
/// invitation is written only while the inviter still holds the right, read under the lock
/// the demotion takes.
async fn an_owner_demoted_while_inviting_makes_no_invitation(app: TestApp) {
    let (second, authorized) = demoted_after_authorizing(&app, "manager").await;
    let admin = app.sign_in(ADMIN).await;
    let email = Email::parse(INVITEE).unwrap();
    let refused = invitations::create(
        &app.db,
        &authorized.scope,
        authorized.user_id,
        &email,
        Role::Owner,
        Some(&app.origin()),
    )
    .await
    .expect_err("a demoted owner invites nobody");
    assert_eq!(refused.status(), 403, "{refused:?}");
    assert_eq!(app.count("invitations").await, 0);
    // Removed altogether: refused the same way.
    let authorized = authorize_user(&app.db, second, CONTOSO, Capability::View)
        .await
        .expect("still a member");
    app.remove_member(&admin, CONTOSO, second)
        .await
        .expect("the admin removes them");
    let refused = invitations::create(
        &app.db,
        &authorized.scope,
        second,
        &email,
        Role::Operator,
        Some(&app.origin()),
    )
    .await
    .expect_err("a removed member invites nobody");
    assert_eq!(refused.status(), 403, "{refused:?}");
    assert_eq!(app.count("invitations").await, 0);
}

/// The same for the other changes of members: an owner authorized to manage members, then
/// demoted before the change is written, adds, promotes and removes no one (each is written
/// under the tenant's lock while the actor still may, or refused with a 403).
async fn an_owner_demoted_while_changing_members_changes_no_one(app: TestApp) {
    let (second, authorized) = demoted_after_authorizing(&app, "operator").await;
    let memberships = app.count("memberships").await;
    let (db, scope) = (&app.db, &authorized.scope);
    let operator = common::user_id(db, OPERATOR).await;
    let readonly = common::user_id(db, READONLY).await;
    let outsider = Email::parse(OUTSIDER).unwrap();
    let refusals = [
        members::change_role(db, scope, second, operator, Role::Owner)
            .await
            .expect_err("no promotion"),
        members::change_role(db, scope, second, second, Role::Owner)
            .await
            .expect_err("no promotion of oneself"),
        members::remove(db, scope, second, readonly)
            .await
            .expect_err("no removal"),
        members::add_or_invite(
            db,
            scope,
            second,
            &outsider,
            Role::Owner,
            Some(&app.origin()),
        )
        .await
        .map(|_| ())
        .expect_err("no addition"),
    ];
    for refused in refusals {
        assert_eq!(refused.status(), 403, "{refused:?}");
    }
    assert_eq!(app.count("memberships").await, memberships);
    let roles: Vec<(i64, String)> = sqlx::query_as(
        "SELECT user_id, role FROM memberships WHERE user_id IN ($1, $2) ORDER BY user_id",
    )
    .bind(operator)
    .bind(second)
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert!(
        roles.iter().all(|(_, role)| role == "operator"),
        "{roles:?}"
    );
}

/// A pending invitation whose inviter was demoted without it being withdrawn (written in the
/// moment of the demotion) is not valid any more: neither read, nor accepted by a new account,
/// nor joined by an existing one.
async fn a_link_whose_inviter_may_no_longer_invite_brings_no_one_in(app: TestApp) {
    let admin = app.sign_in(ADMIN).await;
    let (second, second_cookie) = second_owner(&app, &admin).await;
    let token = invite(&app, &second_cookie, INVITEE, "owner").await;
    let existing = OPERATOR.replace("contoso", "woodgrove");
    sqlx::query(
        "INSERT INTO users (email, display_name, password_hash, created_at) VALUES ($1, 'W', NULL, 0)",
    )
    .bind(&existing)
    .execute(app.db.pool())
    .await
    .unwrap();
    // An invitation of an account joins with that account's session (members.rs says when).
    let joining = InvitationToken::new(rand_bytes());
    let now = tenantatlas::domain::Timestamp::now().millis();
    sqlx::query(
        "INSERT INTO invitations (tenant_id, email, role, token_hash, invited_by, created_at, \
         expires_at) SELECT id, $2, 'owner', $3, $4, $5, $6 FROM tenants WHERE external_id = $1",
    )
    .bind(CONTOSO)
    .bind(&existing)
    .bind(invitations::token_hash(&joining))
    .bind(second)
    .bind(now)
    .bind(now + 3_600_000)
    .execute(app.db.pool())
    .await
    .unwrap();
    // The demotion, as if both invitations were written after it withdrew the pending ones.
    sqlx::query(
        "UPDATE memberships SET role = 'manager' WHERE user_id = $1 \
         AND tenant_id = (SELECT id FROM tenants WHERE external_id = $2)",
    )
    .bind(second)
    .bind(CONTOSO)
    .execute(app.db.pool())
    .await
    .unwrap();

    assert_eq!(refused_preview(&app, &token).await.status, 404);
    let refused = refused_accept(&app, &token, "Nova Person", PASSWORD).await;
    assert_eq!(refused.status, 404, "{refused:?}");
    assert_eq!(users_with(&app, INVITEE).await, 0);
    let user_id = common::user_id(&app.db, &existing).await;
    assert!(invitations::check_usable(&app.db, &joining).await.is_err());
    let refused = invitations::join(&app.db, &joining, user_id)
        .await
        .expect_err("the existing account joins nothing");
    assert_eq!(refused.status(), 404, "{refused:?}");
    let memberships: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(memberships, 0);
    let accepted: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM invitations WHERE accepted_at IS NOT NULL")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(accepted, 0);
}

/// 32 bytes for a token, different every call.
fn rand_bytes() -> [u8; 32] {
    let mut bytes = [0; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes
}

/// Accepting hashes the new password under sign-in's limit: when no core is free for a hash,
/// every acceptance, however many arrive at once, gets the busy answer (503, `Retry-After`)
/// and nothing is written; the link stays usable.
async fn accepting_hashes_under_the_password_checks_limit(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        Options {
            checker: Some(Checker::new(0, Duration::from_millis(20))),
            ..Options::default()
        },
    )
    .await;
    // Made without signing in (the owner's sign-in would be turned away as well).
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let hash: String = Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let now = tenantatlas::domain::Timestamp::now().millis();
    sqlx::query(
        "INSERT INTO invitations (tenant_id, email, role, token_hash, invited_by, created_at, \
         expires_at) SELECT id, $2, 'owner', $3, $6, $4, $5 FROM tenants WHERE external_id = $1",
    )
    .bind(CONTOSO)
    .bind(INVITEE)
    .bind(&hash)
    .bind(now)
    .bind(now + 3_600_000)
    .bind(common::user_id(&app.db, ADMIN).await)
    .execute(app.db.pool())
    .await
    .unwrap();
    let users = app.count("users").await;
    let answers = futures::future::join_all((0..20).map(|_| {
        app.request(
            None,
            "invitations/accept",
            &[
                ("token", token.as_str()),
                ("name", "Flood"),
                ("password", PASSWORD),
            ],
        )
        .send()
    }))
    .await;
    for answer in answers {
        let answer = answer.expect("an answer");
        assert_eq!(answer.status(), 503);
        assert_eq!(answer.headers()["retry-after"], "1");
        assert!(common::session_cookie(&answer).is_none());
        assert!(answer.text().await.unwrap().contains("Busy"));
    }
    assert_eq!(app.count("users").await, users, "no account");
    assert_eq!(users_with(&app, INVITEE).await, 0);
    let preview = app
        .invitation_preview(&token)
        .await
        .expect("the link is still usable");
    assert_eq!(preview.email, INVITEE);
}

mod under_the_limit {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_accepting_waits_for_a_free_core() {
        accepting_hashes_under_the_password_checks_limit(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_accepting_waits_for_a_free_core() {
        accepting_hashes_under_the_password_checks_limit(Backend::Postgres).await
    }
}

/// "andre\u{301}@…" (an e and a combining acute) and "andr\u{e9}@…" (é) look the same, so they
/// are one address: once the composed one has an account (through an invitation), the
/// decomposed one names that account. Adding it to another tenant invites that account (whose
/// session joins: no second account), adding it where it is a member is a 409, and it signs in.
async fn a_decomposed_address_names_the_account_of_its_composed_form(app: TestApp) {
    const COMPOSED: &str = "andr\u{e9}@example.org";
    const DECOMPOSED: &str = "Andre\u{301}@Example.org";
    let owner = app.sign_in(ADMIN).await;
    let token = invite(&app, &owner, COMPOSED, "operator").await;
    let (accepted, _) = app.accept_invitation(&token, "Andr\u{e9}", PASSWORD).await;
    accepted.expect("the invitation is accepted");
    let accounts = app.count("users").await;

    let outcome = app
        .add_member(&owner, common::FABRIKAM, DECOMPOSED, "readonly")
        .await
        .expect("the owner adds the address to Fabrikam");
    let AddMemberOutcome::Invited { link, .. } = outcome else {
        panic!("an invitation of the account, not {outcome:?}");
    };
    let fabrikam = link.rsplit_once("#token=").expect("a token").1;
    let preview = app
        .invitation_preview(fabrikam)
        .await
        .expect("the link's preview");
    assert!(preview.existing_account, "{preview:?}");
    assert_eq!(preview.email, COMPOSED);
    let refused = refused_accept(&app, fabrikam, "Another", "another long password").await;
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(refused.body.contains("exists already"), "{}", refused.body);

    let refused = app
        .add_member(&owner, CONTOSO, DECOMPOSED, "owner")
        .await
        .expect_err("a member of Contoso already");
    assert_eq!(refused.status, 409, "{refused:?}");
    let signed_in = app
        .call(
            "auth/sign-in",
            &[("email", DECOMPOSED), ("password", PASSWORD), ("next", "/")],
        )
        .await;
    assert_eq!(signed_in.status(), 200);
    assert_eq!(app.count("users").await, accounts, "no second account");
    assert_eq!(users_with(&app, COMPOSED).await, 1);
}

/// "Join the tenant" of the account's session, as the page sends it (no name, no password):
/// the status and the body.
async fn join_as(app: &TestApp, session: &str, token: &str) -> (u16, String) {
    let response = app
        .call_as(
            session,
            "invitations/accept",
            &[("token", token), ("name", ""), ("password", "")],
        )
        .await;
    let status = response.status().as_u16();
    (status, response.text().await.expect("an answer"))
}

/// The `invitation.accept` rows of the audit log.
async fn acceptances_audited(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'invitation.accept'")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

/// "Join the tenant" sent twice by the account's session (a double click, a retry after the
/// first answer was lost) is one join: both answers go to the tenant, and the second writes
/// nothing (one membership, one `invitation.accept`). The same goes for the session of an
/// account the link made. Anyone else still gets the 409.
async fn joining_twice_with_the_account_is_one_join(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let contoso = invite(&app, &owner, INVITEE, "operator").await;
    let (accepted, cookie) = app.accept_invitation(&contoso, "Nova", PASSWORD).await;
    accepted.expect("the invitation is accepted");
    let invitee = cookie.expect("signed in");
    // The account's session sends the acceptance again: it goes to Contoso, as the first did.
    let (status, body) = join_as(&app, &invitee, &contoso).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("\"/t/{CONTOSO}/backup-sets\""));

    // An invitation of the account (made through Contoso's link) into Fabrikam: its session
    // joins, twice.
    let outcome = app
        .add_member(&owner, common::FABRIKAM, INVITEE, "readonly")
        .await
        .expect("the owner adds the address to Fabrikam");
    let AddMemberOutcome::Invited { link, .. } = outcome else {
        panic!("an invitation of the account, not {outcome:?}");
    };
    let fabrikam = link.rsplit_once("#token=").expect("a token").1;
    let audited = acceptances_audited(&app).await;
    let memberships = app.count("memberships").await;
    let first = join_as(&app, &invitee, fabrikam).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first.1, format!("\"/t/{}/backup-sets\"", common::FABRIKAM));
    let again = join_as(&app, &invitee, fabrikam).await;
    assert_eq!(again, first, "the second join is answered as the first");
    assert_eq!(app.count("memberships").await, memberships + 1);
    assert_eq!(acceptances_audited(&app).await, audited + 1);

    // Anyone else is told the link was used, with nothing written.
    let (status, body) = join_as(&app, &owner, fabrikam).await;
    assert_eq!(status, 409);
    assert!(body.contains("already been used"), "{body}");
    let refused = refused_accept(&app, fabrikam, "Someone", PASSWORD).await;
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(refused.body.contains("already been used"), "{refused:?}");
    assert_eq!(app.count("memberships").await, memberships + 1);
    assert_eq!(acceptances_audited(&app).await, audited + 1);

    // Whether the account is still a member is no one else's to learn from the link: once it
    // has left Fabrikam, the answer to anyone else is the same, and its own session's is too.
    let user = common::user_id(&app.db, INVITEE).await;
    app.remove_member(&owner, common::FABRIKAM, user)
        .await
        .expect("the owner removes the account");
    let after = refused_accept(&app, fabrikam, "Someone", PASSWORD).await;
    assert_eq!((after.status, &after.body), (refused.status, &refused.body));
    assert_eq!(
        join_as(&app, &owner, fabrikam).await,
        (status, body.clone())
    );
    assert_eq!(join_as(&app, &invitee, fabrikam).await, (status, body));
}
