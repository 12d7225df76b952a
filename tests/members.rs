//! A tenant's members: the owner adds an account by e-mail, changes roles and removes members;
//! a tenant always keeps an owner, also when two owners demote each other at the same moment;
//! every change is audited with the member's e-mail and the old and new role; a removed member
//! loses the tenant at once.

use crate::common;

use common::{TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY};
use serde_json::Value;
use tenantatlas::domain::{AddMemberOutcome, AppError, Email, Member, Role};
use tenantatlas::server::auth::{password, users};
use tenantatlas::server::db::Db;

both_backends!(TestApp:
    the_owner_manages_members_and_each_change_is_audited,
    the_last_owner_stays_even_under_concurrent_demotions,
    the_audit_log_filters_and_pages_by_keyset,
    an_inviter_who_may_no_longer_invite_loses_their_pending_invitations,
    an_account_made_through_another_tenants_invitation_is_invited_not_added,
    a_shared_tenant_forced_by_the_attacker_does_not_make_a_squatted_account_addable,
    an_address_that_hides_characters_is_refused_and_invites_nobody,
    adding_a_member_is_a_conflict_even_for_an_account_invited_elsewhere,
    a_removed_members_pending_invitation_does_not_bring_them_back,
    an_account_whose_password_the_admin_set_is_added_at_once,
    the_upgrade_marks_the_accounts_invitations_made,
    an_account_an_older_instances_acceptance_made_is_invited_not_added,
    create_user_takes_back_an_account_an_acceptance_made_since_it_read,
    the_upgrade_counts_the_resets_the_audit_log_recorded,
);

const MANAGER: &str = "manager@contoso.example";
/// Operator in Fabrikam, whom the owner adds to Contoso.
const NEWCOMER: &str = "operator@fabrikam.example";

/// An address with an invisible or steering character looks like another in the members list
/// and the invitations: it is refused like any malformed address (422, naming the e-mail) and
/// no invitation is made for it.
async fn an_address_that_hides_characters_is_refused_and_invites_nobody(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let invitations = app.count("invitations").await;
    for email in [
        "alice\u{200B}@contoso.example",
        "alice@\u{202E}elpmaxe.osotnoc",
        "al\u{AD}ice@contoso.example",
    ] {
        let refusal = app
            .add_member(&owner, CONTOSO, email, "operator")
            .await
            .expect_err("the address is refused");
        assert_eq!(refusal.status, 422, "{email:?}: {refusal:?}");
        assert!(
            matches!(refusal.error(), AppError::Invalid { ref field, .. } if field == "email"),
            "{email:?}: {refusal:?}"
        );
    }
    assert_eq!(app.count("invitations").await, invitations);
}

async fn members(app: &TestApp, cookie: &str) -> Vec<Member> {
    app.members(cookie, CONTOSO)
        .await
        .expect("the members are listed")
}

fn role_of(list: &[Member], email: &str) -> Option<Role> {
    list.iter().find(|m| m.email == email).map(|m| m.role)
}

async fn the_owner_manages_members_and_each_change_is_audited(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let manager = app.sign_in(MANAGER).await;
    // Owners and managers read the list; a manager cannot change it.
    let list = members(&app, &manager).await;
    assert_eq!(role_of(&list, ADMIN), Some(Role::Owner));
    assert_eq!(list[0].email, ADMIN, "owners first");
    let added_by =
        |cookie| app.add_member(cookie, CONTOSO, "Operator@Fabrikam.example", "operator");
    assert_eq!(
        added_by(&manager)
            .await
            .expect_err("a manager adds nobody")
            .status,
        403
    );

    // Add an existing account by e-mail: a member at once.
    let outsider = app.sign_in(NEWCOMER).await;
    assert_eq!(
        app.backup_sets(&outsider, CONTOSO)
            .await
            .expect_err("not a member yet")
            .status,
        403
    );
    added_by(&owner).await.expect("the owner adds the account");
    app.backup_sets(&outsider, CONTOSO)
        .await
        .expect("the new member's session sees the tenant without signing in again");
    assert_eq!(
        added_by(&owner).await.expect_err("a member already").status,
        409
    );
    // An address without an account gets an invitation instead (tests/invitations.rs).
    let invited = app
        .add_member(&owner, CONTOSO, "nobody@example.org", "operator")
        .await
        .expect("the address is invited");
    assert!(
        matches!(invited, AddMemberOutcome::Invited { .. }),
        "{invited:?}"
    );
    assert_eq!(
        app.add_member(&owner, CONTOSO, OPERATOR, "boss")
            .await
            .expect_err("no such role")
            .status,
        422
    );

    // Change a role, then remove: the removed member's session loses the tenant at once.
    let fabrikam_user = common::user_id(&app.db, NEWCOMER).await;
    app.change_member_role(&owner, CONTOSO, fabrikam_user, "readonly")
        .await
        .expect("the role changes");
    assert_eq!(
        role_of(&members(&app, &owner).await, NEWCOMER),
        Some(Role::Readonly)
    );
    app.remove_member(&owner, CONTOSO, fabrikam_user)
        .await
        .expect("the member is removed");
    assert_eq!(
        app.backup_sets(&outsider, CONTOSO)
            .await
            .expect_err("no longer a member")
            .status,
        403
    );
    assert_eq!(
        app.get(Some(&outsider), &format!("/t/{CONTOSO}/backup-sets"))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.remove_member(&owner, CONTOSO, fabrikam_user)
            .await
            .expect_err("not a member any more")
            .status,
        404
    );

    // Every change is audited: actor, member, old → new role.
    let rows: Vec<(String, String, String, Option<i64>)> = sqlx::query_as(
        "SELECT action, target, details, actor_user_id FROM audit_log \
         WHERE action LIKE 'member.%' ORDER BY id",
    )
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let admin_id = common::user_id(&app.db, ADMIN).await;
    let summary: Vec<(String, Value)> = rows
        .iter()
        .map(|(action, target, details, actor)| {
            assert_eq!(*actor, Some(admin_id));
            assert_eq!(*target, format!("user:{fabrikam_user}"));
            (action.clone(), serde_json::from_str(details).unwrap())
        })
        .collect();
    let expected = [
        ("member.add", Value::Null, "operator"),
        ("member.change_role", "operator".into(), "readonly"),
        ("member.remove", "readonly".into(), ""),
    ];
    assert_eq!(summary.len(), expected.len(), "{summary:?}");
    for ((action, details), (want, old, new)) in summary.iter().zip(expected) {
        assert_eq!(action, want);
        assert_eq!(details["old_role"], old, "{action}");
        let new = if new.is_empty() {
            Value::Null
        } else {
            new.into()
        };
        assert_eq!(details["new_role"], new, "{action}");
        assert_eq!(details["member_email"], NEWCOMER, "{action}");
    }
    // The audit page names the member by e-mail: no page shows account ids, and once the
    // member is removed nothing else ties `user:N` to a person.
    let page = app
        .audit_log(&owner, CONTOSO, &[("action", "member.remove")])
        .await
        .expect("the owner reads the audit log");
    let [removal] = page.entries.as_slice() else {
        panic!("one removal: {page:?}");
    };
    assert_eq!(removal.actor.as_deref(), Some(ADMIN));
    let details: Value = serde_json::from_str(&removal.details).unwrap();
    assert_eq!(details["member_email"], NEWCOMER, "{removal:?}");
    assert_eq!(details["old_role"], "readonly", "{removal:?}");
}

async fn the_last_owner_stays_even_under_concurrent_demotions(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let admin_id = common::user_id(&app.db, ADMIN).await;
    let change = |cookie, user_id, role| app.change_member_role(cookie, CONTOSO, user_id, role);
    // Alone as owner: demoting or removing oneself is refused, and nothing changes.
    assert_eq!(
        change(&owner, admin_id, "manager")
            .await
            .expect_err("the last owner stays")
            .status,
        409
    );
    let refused = app
        .remove_member(&owner, CONTOSO, admin_id)
        .await
        .expect_err("the last owner stays");
    assert_eq!(refused.status, 409);
    assert!(
        refused.body.contains("at least one owner"),
        "{}",
        refused.body
    );
    assert_eq!(
        role_of(&members(&app, &owner).await, ADMIN),
        Some(Role::Owner)
    );

    // Two owners demote each other at the same moment, many times: one wins; the other is
    // refused, with 409 when both passed authorization before either wrote (the check inside
    // the transaction), or 403 when the winner had already committed.
    let second = common::user_id(&app.db, READONLY).await;
    let second_cookie = app.sign_in(READONLY).await;
    for round in 0..8 {
        change(&owner, second, "owner")
            .await
            .unwrap_or_else(|refused| panic!("round {round}: {refused:?}"));
        let (a, b) = tokio::join!(
            change(&owner, second, "manager"),
            change(&second_cookie, admin_id, "manager"),
        );
        let refused = match (&a, &b) {
            (Ok(()), Err(refused)) | (Err(refused), Ok(())) => refused,
            _ => panic!("round {round}: {a:?} {b:?}"),
        };
        assert!(
            refused.status == 403 || refused.status == 409,
            "round {round}: {refused:?}"
        );
        let owners: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM memberships m JOIN tenants t ON t.id = m.tenant_id \
             WHERE t.external_id = $1 AND m.role = 'owner'",
        )
        .bind(CONTOSO)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        assert_eq!(owners, 1, "round {round}");
        // Whoever is still owner makes the admin the owner again for the next round.
        if a.is_err() {
            // The admin was demoted: the readonly user is the owner.
            change(&second_cookie, admin_id, "owner")
                .await
                .expect("the owner restores the admin");
        }
        change(&owner, second, "readonly")
            .await
            .expect("the admin demotes the second owner");
    }
}

async fn the_audit_log_filters_and_pages_by_keyset(app: TestApp) {
    let contoso = common::tenant_id(&app.db, CONTOSO).await;
    let fabrikam = common::tenant_id(&app.db, common::FABRIKAM).await;
    let admin_id = common::user_id(&app.db, ADMIN).await;
    let manager_id = common::user_id(&app.db, MANAGER).await;
    // 60 events in Contoso (every third by the manager, as `run.start`), 5 in Fabrikam.
    for i in 0..65_i64 {
        let (tenant, actor, action) = match i {
            60.. => (fabrikam, admin_id, "member.add"),
            _ if i % 3 == 0 => (contoso, manager_id, "run.start"),
            _ => (contoso, admin_id, "member.add"),
        };
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, actor_user_id, action, target, details, created_at) \
             VALUES ($1, $2, $3, $4, '{}', $5)",
        )
        .bind(tenant)
        .bind(actor)
        .bind(action)
        .bind(format!("event:{i}"))
        .bind(i)
        .execute(app.db.pool())
        .await
        .unwrap();
    }
    let manager = app.sign_in(MANAGER).await;
    let first = app
        .audit_log(&manager, CONTOSO, &[])
        .await
        .expect("the first page");
    let entries = &first.entries;
    assert_eq!(entries.len(), 50);
    let before = first.next_before.expect("a second page").to_string();
    let second = app
        .audit_log(&manager, CONTOSO, &[("before", &before)])
        .await
        .expect("the second page");
    let rest = &second.entries;
    assert_eq!(second.next_before, None);
    // Newest first, no event twice, none missing, none of Fabrikam's (sign-ins of this test
    // have no tenant, so the 60 are all there is).
    let ids: Vec<i64> = entries.iter().chain(rest).map(|e| e.id).collect();
    assert_eq!(ids.len(), 60);
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    assert!(entries
        .iter()
        .chain(rest)
        .all(|e| e.target.starts_with("event:")));
    assert!(!entries
        .iter()
        .chain(rest)
        .any(|e| matches!(e.target.as_str(), "event:60" | "event:61")));
    // Filters: by action, by actor, both.
    let runs = app
        .audit_log(&manager, CONTOSO, &[("action", "run.start")])
        .await
        .expect("run starts");
    assert_eq!(runs.entries.len(), 20);
    let by_admin = app
        .audit_log(&manager, CONTOSO, &[("actor", "Admin@Contoso.example")])
        .await
        .expect("the admin's events")
        .entries;
    assert_eq!(by_admin.len(), 40);
    assert!(by_admin.iter().all(|e| e.actor.as_deref() == Some(ADMIN)));
    let none = app
        .audit_log(
            &manager,
            CONTOSO,
            &[("action", "run.start"), ("actor", ADMIN)],
        )
        .await
        .expect("nothing matches both");
    assert!(none.entries.is_empty());
    // The actor is read as accounts are stored: a decomposed spelling names the composed
    // account, and a long address counts characters, not bytes.
    let jose: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, display_name, password_hash, created_at) \
         VALUES ('jos\u{e9}@contoso.example', 'Jos\u{e9}', 'x', 0) RETURNING id",
    )
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor_user_id, action, target, details, created_at) \
         VALUES ($1, $2, 'run.start', 'event:jose', '{}', 100)",
    )
    .bind(contoso)
    .bind(jose)
    .execute(app.db.pool())
    .await
    .unwrap();
    let by_jose = app
        .audit_log(
            &manager,
            CONTOSO,
            &[("actor", "Jose\u{301}@Contoso.example")],
        )
        .await
        .expect("the decomposed spelling's events")
        .entries;
    assert_eq!(
        by_jose
            .iter()
            .map(|e| e.target.as_str())
            .collect::<Vec<_>>(),
        ["event:jose"]
    );
    let long = format!("{}@contoso.example", "\u{e9}".repeat(140));
    assert!(long.chars().count() <= 254 && long.len() > 254);
    let nobody = app
        .audit_log(&manager, CONTOSO, &[("actor", &long)])
        .await
        .expect("a long address that is an address");
    assert!(nobody.entries.is_empty());
    assert_eq!(
        app.audit_log(&manager, CONTOSO, &[("actor", "not an address")])
            .await
            .expect_err("not an address")
            .status,
        422
    );
    // An operator may not read it.
    let operator = app.sign_in(OPERATOR).await;
    assert_eq!(
        app.audit_log(&operator, CONTOSO, &[])
            .await
            .expect_err("an operator reads no audit log")
            .status,
        403
    );
}

/// The token of the invitation link `members/add` answered with.
fn token_of(outcome: AddMemberOutcome) -> String {
    let AddMemberOutcome::Invited { link, .. } = outcome else {
        panic!("an invitation, not {outcome:?}");
    };
    link.rsplit_once("#token=").expect("a token").1.to_owned()
}

/// A member promoted to owner invites an address as owner; once they are demoted below owner or
/// removed, that link no longer works (nobody gets in through it, the inviter included) and the
/// withdrawal is audited, while invitations of the owners who stay keep working.
async fn an_inviter_who_may_no_longer_invite_loses_their_pending_invitations(app: TestApp) {
    let admin = app.sign_in(ADMIN).await;
    let promoted = app.sign_in(OPERATOR).await;
    let promoted_id = common::user_id(&app.db, OPERATOR).await;
    let kept = token_of(
        app.add_member(&admin, CONTOSO, "kept@example.org", "operator")
            .await
            .expect("the admin invites"),
    );
    // Each way of losing the capability, the removal last (it ends the membership).
    let changes: [(&str, Option<&str>); 4] = [
        ("manager", Some("manager")),
        ("operator", Some("operator")),
        ("readonly", Some("readonly")),
        ("removed", None),
    ];
    for (round, (label, demoted_to)) in changes.into_iter().enumerate() {
        app.change_member_role(&admin, CONTOSO, promoted_id, "owner")
            .await
            .expect("the admin promotes the operator to owner");
        let email = format!("accomplice{round}@example.org");
        let token = token_of(
            app.add_member(&promoted, CONTOSO, &email, "owner")
                .await
                .expect("the new owner invites"),
        );
        // Staying an owner keeps the invitation.
        app.change_member_role(&admin, CONTOSO, promoted_id, "owner")
            .await
            .expect("no change");
        app.invitation_preview(&token)
            .await
            .unwrap_or_else(|refusal| panic!("{label}: still usable: {refusal:?}"));
        match demoted_to {
            Some(role) => app
                .change_member_role(&admin, CONTOSO, promoted_id, role)
                .await
                .expect("the admin demotes them"),
            None => app
                .remove_member(&admin, CONTOSO, promoted_id)
                .await
                .expect("the admin removes them"),
        }
        let (answer, cookie) = app
            .accept_invitation(&token, "Accomplice", "a long enough password")
            .await;
        let refused = answer.expect_err(label);
        assert_eq!(refused.status, 404, "{label}: {refused:?}");
        assert!(cookie.is_none());
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
        assert_eq!(accounts, 0, "{label}: no account, no membership");
        let audited: Vec<(String, String)> = sqlx::query_as(
            "SELECT target, details FROM audit_log WHERE action = 'invitation.revoke' \
             ORDER BY id DESC",
        )
        .fetch_all(app.db.pool())
        .await
        .unwrap();
        assert_eq!(audited[0].0, format!("email:{email}"), "{label}");
        assert!(
            audited[0].1.contains("inviter_may_no_longer_invite"),
            "{label}: {}",
            audited[0].1
        );
        assert_eq!(audited.len(), round + 1, "{label}: one withdrawal a round");
    }
    let pending = app
        .invitations(&admin, CONTOSO)
        .await
        .expect("the admin reads the invitations");
    assert_eq!(pending.len(), 1, "{pending:?}");
    app.invitation_preview(&kept)
        .await
        .expect("the admin's own invitation still works");
}

/// Signs in with a password (not the demo one); the session cookie.
async fn sign_in_with(app: &TestApp, email: &str, password: &str) -> String {
    let response = app
        .call(
            "auth/sign-in",
            &[("email", email), ("password", password), ("next", "/")],
        )
        .await;
    assert_eq!(response.status(), 200, "sign-in of {email}");
    common::session_cookie(&response).expect("a session")
}

/// The status of `invitations/accept` of `token` sent with `cookie` (or none).
async fn accept_as(app: &TestApp, cookie: Option<&str>, token: &str) -> u16 {
    app.request(
        cookie,
        "invitations/accept",
        &[
            ("token", token),
            ("name", "Someone"),
            ("password", "a long enough password"),
        ],
    )
    .send()
    .await
    .unwrap()
    .status()
    .as_u16()
}

async fn role_in_contoso(app: &TestApp, email: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id \
         JOIN tenants t ON t.id = m.tenant_id WHERE u.email = $1 AND t.external_id = $2",
    )
    .bind(email)
    .bind(CONTOSO)
    .fetch_optional(app.db.pool())
    .await
    .unwrap()
}

/// The address the attacker squats, and the password he chose for it.
const VICTIM: &str = "victim@example.org";
const ATTACKERS_PASSWORD: &str = "the attacker's own password";

/// Sessions of the seeded admin, of the attacker (made owner of Fabrikam) and of Contoso's other
/// owner (the manager, made owner of Contoso only).
struct Squatted {
    admin: String,
    attacker: String,
    contoso_owner: String,
}

/// The owner of Fabrikam invites `VICTIM` into Fabrikam and accepts the link himself: the
/// account is his.
async fn squat_the_victims_address(app: &TestApp) -> Squatted {
    let admin = app.sign_in(ADMIN).await;
    // The attacker owns Fabrikam (A); the manager becomes an owner of Contoso (B) only.
    let attacker = app.sign_in(OUTSIDER).await;
    let fabrikam_owner = common::user_id(&app.db, OUTSIDER).await;
    app.change_member_role(&admin, FABRIKAM, fabrikam_owner, "owner")
        .await
        .expect("the admin makes the attacker owner of Fabrikam");
    let contoso_owner = app.sign_in(MANAGER).await;
    let manager_id = common::user_id(&app.db, MANAGER).await;
    app.change_member_role(&admin, CONTOSO, manager_id, "owner")
        .await
        .expect("the admin makes the manager owner of Contoso");

    let token = token_of(
        app.add_member(&attacker, FABRIKAM, VICTIM, "readonly")
            .await
            .expect("the attacker invites the address into his tenant"),
    );
    let (accepted, _) = app
        .accept_invitation(&token, "Victim", ATTACKERS_PASSWORD)
        .await;
    accepted.expect("the attacker accepts it himself");
    Squatted {
        admin,
        attacker,
        contoso_owner,
    }
}

/// The owner of tenant A invites someone else's address into A and accepts the link himself:
/// the account `victim@…` is his. When the owner of tenant B later adds the address, B gets an
/// invitation link instead of a member, and only a session of that account can use the link
/// (the real person would find they cannot sign in, and the attacker never gets B's link). This
/// holds also for an owner who shares a tenant with the account. Accounts not made through
/// another tenant's link are still added at once.
async fn an_account_made_through_another_tenants_invitation_is_invited_not_added(app: TestApp) {
    let Squatted {
        admin,
        attacker,
        contoso_owner,
    } = squat_the_victims_address(&app).await;

    // Contoso's owner adds the address: an invitation, not a membership.
    for role in ["owner", "readonly"] {
        let outcome = app
            .add_member(&contoso_owner, CONTOSO, VICTIM, role)
            .await
            .expect("the owner adds the address");
        assert!(
            matches!(outcome, AddMemberOutcome::Invited { .. }),
            "{role}: {outcome:?}"
        );
        assert_eq!(role_in_contoso(&app, VICTIM).await, None, "{role}");
    }
    let outcome = app
        .add_member(&contoso_owner, CONTOSO, VICTIM, "owner")
        .await
        .expect("the owner adds the address");
    let link_token = token_of(outcome);
    // The link's page offers to join with the account, not to make one.
    let preview = app
        .invitation_preview(&link_token)
        .await
        .expect("the link's preview");
    assert!(preview.existing_account, "{preview:?}");
    // Nobody but the account's own session can use the link: no session, another account.
    assert_eq!(accept_as(&app, None, &link_token).await, 409);
    assert_eq!(accept_as(&app, Some(&attacker), &link_token).await, 409);
    assert_eq!(
        accept_as(&app, Some(&contoso_owner), &link_token).await,
        409
    );
    assert_eq!(role_in_contoso(&app, VICTIM).await, None);
    let victims_password: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
            .bind(VICTIM)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    // The account's own session joins with the invited role (whoever holds the account and the
    // link: the owner chose whom to give the link), once: sent again (a double click, a retry
    // after a lost answer), the join is answered as the first and changes nothing.
    let victim = sign_in_with(&app, VICTIM, ATTACKERS_PASSWORD).await;
    assert_eq!(accept_as(&app, Some(&victim), &link_token).await, 200);
    assert_eq!(
        role_in_contoso(&app, VICTIM).await.as_deref(),
        Some("owner")
    );
    let audit_rows = app.count("audit_log").await;
    let memberships = app.count("memberships").await;
    assert_eq!(accept_as(&app, Some(&victim), &link_token).await, 200);
    assert_eq!(
        role_in_contoso(&app, VICTIM).await.as_deref(),
        Some("owner")
    );
    assert_eq!(app.count("audit_log").await, audit_rows, "nothing audited");
    assert_eq!(app.count("memberships").await, memberships);
    let after: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
            .bind(VICTIM)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(after, victims_password, "a link never sets a password");
    app.remove_member(&admin, CONTOSO, common::user_id(&app.db, VICTIM).await)
        .await
        .expect("removed again");
    // Removed, the account's session can no longer use the link it used.
    let audit_rows = app.count("audit_log").await;
    assert_eq!(accept_as(&app, Some(&victim), &link_token).await, 409);
    assert_eq!(role_in_contoso(&app, VICTIM).await, None);
    assert_eq!(app.count("audit_log").await, audit_rows, "nothing audited");

    // The admin shares Fabrikam with the account: invited all the same (the attacker chooses
    // whom his tenant shares).
    let outcome = app
        .add_member(&admin, CONTOSO, VICTIM, "readonly")
        .await
        .expect("the admin adds it");
    assert!(
        matches!(outcome, AddMemberOutcome::Invited { .. }),
        "{outcome:?}"
    );
    assert_eq!(role_in_contoso(&app, VICTIM).await, None);
    // An account not made through an invitation (the seeded one of Fabrikam's owner), though
    // it shares no tenant with Contoso's new owner: added at once, as before.
    assert_eq!(
        app.add_member(&contoso_owner, CONTOSO, OUTSIDER, "readonly")
            .await
            .expect("the owner adds it"),
        AddMemberOutcome::Added
    );
}

/// The attacker who squatted `victim@…` through his tenant (Fabrikam) adds Contoso's owner to
/// Fabrikam himself, which needs no consent of that owner's seeded account: the owner now shares
/// a tenant with the squatted account. Adding the address to Contoso as owner still gives an
/// invitation, not a membership: a shared tenant the attacker forced proves nothing.
async fn a_shared_tenant_forced_by_the_attacker_does_not_make_a_squatted_account_addable(
    app: TestApp,
) {
    let Squatted {
        attacker,
        contoso_owner,
        ..
    } = squat_the_victims_address(&app).await;
    assert_eq!(
        app.add_member(&attacker, FABRIKAM, MANAGER, "readonly")
            .await
            .expect("the attacker adds Contoso's owner to his tenant"),
        AddMemberOutcome::Added
    );
    let outcome = app
        .add_member(&contoso_owner, CONTOSO, VICTIM, "owner")
        .await
        .expect("Contoso's owner adds the address");
    assert!(
        matches!(outcome, AddMemberOutcome::Invited { .. }),
        "{outcome:?}"
    );
    assert_eq!(role_in_contoso(&app, VICTIM).await, None);
    // The attacker's sessions have no way into Contoso either.
    let squatter = sign_in_with(&app, VICTIM, ATTACKERS_PASSWORD).await;
    app.current_user(&squatter)
        .await
        .expect("the attacker is signed in");
    assert_eq!(
        app.members(&squatter, CONTOSO)
            .await
            .expect_err("the squatter is no member of Contoso")
            .status,
        403
    );
}

/// The number of `invitation.create` rows in the audit log.
async fn invitations_made(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'invitation.create'")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

/// An account made through another tenant's invitation is invited rather than added; once it
/// is a member, adding its address again (with any role, in any spelling) is the same 409 as for
/// any member, and writes no invitation: such a link would stay pending (joining refuses it)
/// and let the member back in, as owner, after a removal.
async fn adding_a_member_is_a_conflict_even_for_an_account_invited_elsewhere(app: TestApp) {
    let Squatted { contoso_owner, .. } = squat_the_victims_address(&app).await;
    let token = token_of(
        app.add_member(&contoso_owner, CONTOSO, VICTIM, "readonly")
            .await
            .expect("the owner invites the address"),
    );
    let victim = sign_in_with(&app, VICTIM, ATTACKERS_PASSWORD).await;
    assert_eq!(accept_as(&app, Some(&victim), &token).await, 200);
    assert_eq!(
        role_in_contoso(&app, VICTIM).await.as_deref(),
        Some("readonly")
    );

    let invitations = app.count("invitations").await;
    let made = invitations_made(&app).await;
    for (email, role) in [(VICTIM, "owner"), ("Victim@Example.org", "readonly")] {
        let refusal = app
            .add_member(&contoso_owner, CONTOSO, email, role)
            .await
            .expect_err("a member already");
        assert_eq!(refusal.status, 409, "{email} {role}: {refusal:?}");
        assert!(
            refusal.body.contains("already a member"),
            "{email} {role}: {}",
            refusal.body
        );
    }
    assert_eq!(app.count("invitations").await, invitations, "no invitation");
    assert_eq!(invitations_made(&app).await, made, "none audited");
    assert_eq!(
        role_in_contoso(&app, VICTIM).await.as_deref(),
        Some("readonly")
    );
}

/// An invitation made while the address was no member stays pending when the account then
/// becomes a member some other way (here the admin CLI's grant). Removing the member withdraws
/// it (audited), so the link cannot bring the removed member back, with its role (owner).
async fn a_removed_members_pending_invitation_does_not_bring_them_back(app: TestApp) {
    let Squatted {
        admin,
        contoso_owner,
        ..
    } = squat_the_victims_address(&app).await;
    let token = token_of(
        app.add_member(&contoso_owner, CONTOSO, VICTIM, "owner")
            .await
            .expect("the owner invites the address as owner"),
    );
    let victim_id = common::user_id(&app.db, VICTIM).await;
    users::grant(&app.db, victim_id, CONTOSO, Role::Readonly)
        .await
        .expect("the admin CLI makes the account a readonly member");
    assert_eq!(
        role_in_contoso(&app, VICTIM).await.as_deref(),
        Some("readonly")
    );
    app.remove_member(&admin, CONTOSO, victim_id)
        .await
        .expect("the admin removes the member");

    let victim = sign_in_with(&app, VICTIM, ATTACKERS_PASSWORD).await;
    assert_eq!(
        accept_as(&app, Some(&victim), &token).await,
        404,
        "the link was withdrawn with the membership"
    );
    assert_eq!(role_in_contoso(&app, VICTIM).await, None);
    let pending = app
        .invitations(&admin, CONTOSO)
        .await
        .expect("the admin reads the invitations");
    assert!(pending.iter().all(|i| i.email != VICTIM), "{pending:?}");
    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT target, details FROM audit_log WHERE action = 'invitation.revoke' ORDER BY id",
    )
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let [(target, details)] = audited.as_slice() else {
        panic!("one withdrawal: {audited:?}");
    };
    assert_eq!(*target, format!("email:{VICTIM}"));
    assert!(details.contains("member_removed"), "{details}");
}

/// Runs the admin command `args` of the binary on the app's database, which must succeed.
fn admin_cli(app: &TestApp, args: &[&str], stdin: &str) {
    let output = common::run_binary(app.database_url(), args, stdin);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An address with no account yet, which Fabrikam's owner (the attacker) invites into Fabrikam
/// before the admin makes its account with `create-user`; its session then joins Fabrikam
/// through the link.
const ADMIN_MADE: &str = "admin.made@example.org";

/// `ADMIN_MADE` gets its account from the admin, then joins Fabrikam through the attacker's
/// link with its own session.
async fn join_fabrikam_with_an_admin_made_account(app: &TestApp, attacker: &str) {
    let token = token_of(
        app.add_member(attacker, FABRIKAM, ADMIN_MADE, "readonly")
            .await
            .expect("the attacker invites the address"),
    );
    admin_cli(
        app,
        &["create-user", "--email", ADMIN_MADE, "--name", "Made"],
        "the admin's password for it\n",
    );
    let session = sign_in_with(app, ADMIN_MADE, "the admin's password for it").await;
    assert_eq!(accept_as(app, Some(&session), &token).await, 200);
}

/// The mark that keeps a squatted account from being added at once is the password the link's
/// holder chose, not the acceptance: once the admin resets the password (`set-password`, which
/// signs the squatter out), Contoso's owner adds the address at once. An account the admin made
/// is added at once too, though it joined another tenant through that tenant's link (with its
/// own session, which chose no password).
async fn an_account_whose_password_the_admin_set_is_added_at_once(app: TestApp) {
    let Squatted {
        attacker,
        contoso_owner,
        ..
    } = squat_the_victims_address(&app).await;
    join_fabrikam_with_an_admin_made_account(&app, &attacker).await;
    assert!(matches!(
        app.add_member(&contoso_owner, CONTOSO, VICTIM, "readonly")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Invited { .. }
    ));

    admin_cli(
        &app,
        &["set-password", "--email", VICTIM],
        "the victim's real password\n",
    );
    assert_eq!(
        app.add_member(&contoso_owner, CONTOSO, VICTIM, "readonly")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Added
    );
    assert_eq!(
        role_in_contoso(&app, VICTIM).await.as_deref(),
        Some("readonly")
    );
    assert_eq!(
        app.add_member(&contoso_owner, CONTOSO, ADMIN_MADE, "readonly")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Added
    );
}

/// Takes the database back to the schema of before migration 31 (as an instance of before it
/// left it), then migrates it again.
async fn migrate_0031_again(app: &TestApp) {
    for statement in [
        "DELETE FROM _sqlx_migrations WHERE version = 31",
        "ALTER TABLE users DROP COLUMN password_set_by_admin_at",
    ] {
        sqlx::query(statement).execute(app.db.pool()).await.unwrap();
    }
    app.db.migrate().await.expect("migration 31 applies again");
}

/// Whether the account `email` counts as one whose password an invitation link's holder chose.
async fn password_via_invitation(app: &TestApp, email: &str) -> bool {
    users::password_via_invitation(&app.db, common::user_id(&app.db, email).await)
        .await
        .expect("read the account")
}

/// A database of before migration 31: the upgrade leaves the accounts an invitation made (the
/// squatted one) counted as the link holder's, not one the admin made that joined through a
/// link with its own session, so a squatted account is still invited, not added, after it.
async fn the_upgrade_marks_the_accounts_invitations_made(app: TestApp) {
    let Squatted {
        attacker,
        contoso_owner,
        ..
    } = squat_the_victims_address(&app).await;
    join_fabrikam_with_an_admin_made_account(&app, &attacker).await;
    migrate_0031_again(&app).await;
    assert!(password_via_invitation(&app, VICTIM).await);
    assert!(!password_via_invitation(&app, ADMIN_MADE).await);
    assert!(matches!(
        app.add_member(&contoso_owner, CONTOSO, VICTIM, "owner")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Invited { .. }
    ));
    assert_eq!(role_in_contoso(&app, VICTIM).await, None);
}

/// An address squatted through an instance that predates migration 31 (one still serving beside
/// a newer one during a rolling upgrade).
pub(crate) const OLD_SQUATTED: &str = "old.squatted@example.org";

/// Writes what an acceptance of a Fabrikam invitation for `email` by an instance of before
/// migration 31 writes: an account without `password_set_by_admin_at`, its membership, and the
/// invitation, accepted by the account at its `created_at` (one clock reading). Returns the
/// account's id.
pub(crate) async fn accept_as_an_older_instance(db: &Db, email: &str, inviter: i64) -> i64 {
    let now: i64 = 1_800_000_000_000;
    let fabrikam = common::tenant_id(db, FABRIKAM).await;
    let user_id: i64 = sqlx::query_scalar(
        "INSERT INTO users (email, display_name, password_hash, created_at, is_admin) \
         VALUES ($1, 'Squatted', 'the holder''s hash', $2, FALSE) RETURNING id",
    )
    .bind(email)
    .bind(now)
    .fetch_one(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO memberships (user_id, tenant_id, role, created_at) \
         VALUES ($1, $2, 'readonly', $3)",
    )
    .bind(user_id)
    .bind(fabrikam)
    .bind(now)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO invitations (tenant_id, email, role, token_hash, invited_by, created_at, \
         expires_at, accepted_at, accepted_by) \
         VALUES ($1, $2, 'readonly', $3, $4, $5, $6, $7, $8)",
    )
    .bind(fabrikam)
    .bind(email)
    .bind(format!("accepted by an older instance: {email}"))
    .bind(inviter)
    .bind(now - 60_000)
    .bind(now + 60_000)
    .bind(now)
    .bind(user_id)
    .execute(db.pool())
    .await
    .unwrap();
    user_id
}

/// During a rolling upgrade an instance of before migration 31 keeps serving, and its
/// acceptances write no more than they did. An account such an acceptance made (of Fabrikam,
/// whose owner is the attacker) is still invited by Contoso's owner, not added; once the admin
/// sets its password it is added.
async fn an_account_an_older_instances_acceptance_made_is_invited_not_added(app: TestApp) {
    let Squatted { contoso_owner, .. } = squat_the_victims_address(&app).await;
    let attacker_id = common::user_id(&app.db, OUTSIDER).await;
    accept_as_an_older_instance(&app.db, OLD_SQUATTED, attacker_id).await;
    let outcome = app
        .add_member(&contoso_owner, CONTOSO, OLD_SQUATTED, "owner")
        .await
        .expect("the owner adds the address");
    assert!(
        matches!(outcome, AddMemberOutcome::Invited { .. }),
        "{outcome:?}"
    );
    assert_eq!(role_in_contoso(&app, OLD_SQUATTED).await, None);

    admin_cli(
        &app,
        &["set-password", "--email", OLD_SQUATTED],
        "the real owner's password\n",
    );
    assert_eq!(
        app.add_member(&contoso_owner, CONTOSO, OLD_SQUATTED, "readonly")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Added
    );
}

/// `create-user` reads the address, finds no account, and makes one; an acceptance of the
/// attacker's link that made the account in between (the insert then finds it taken) does not
/// leave it the attacker's: it gets the admin's password, counts as set by the admin, and the
/// attacker's session ends, as if it had been there when `create-user` read.
async fn create_user_takes_back_an_account_an_acceptance_made_since_it_read(app: TestApp) {
    let Squatted { contoso_owner, .. } = squat_the_victims_address(&app).await;
    let squatter = sign_in_with(&app, VICTIM, ATTACKERS_PASSWORD).await;
    const ADMINS_PASSWORD: &str = "the admin's password for the victim";
    let hash = password::hash(ADMINS_PASSWORD.into())
        .await
        .expect("hash the password");
    let email = Email::parse(VICTIM).expect("an address");
    // The step of `upsert_user` after its read found no account.
    let user_id = users::insert_user(&app.db, &email, "Victim", &hash)
        .await
        .expect("the account is taken back");
    assert_eq!(user_id, common::user_id(&app.db, VICTIM).await);
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(hash.as_str()),
        "the admin's password"
    );
    assert!(!password_via_invitation(&app, VICTIM).await);
    let signed_out = app
        .current_user(&squatter)
        .await
        .expect_err("the attacker's session is over");
    assert_eq!(signed_out.status, 401, "{signed_out:?}");
    let form = [
        ("email", VICTIM),
        ("password", ATTACKERS_PASSWORD),
        ("next", "/"),
    ];
    assert_eq!(app.call("auth/sign-in", &form).await.status(), 401);
    sign_in_with(&app, VICTIM, ADMINS_PASSWORD).await;
    assert_eq!(
        app.add_member(&contoso_owner, CONTOSO, VICTIM, "readonly")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Added
    );
}

/// A reset made before migration 31 left an audit row (`user.set_password`), dated after the
/// account was made: the upgrade counts it, so that account is added at once after it. An
/// account whose only such rows predate it (another account's, the id reused) or come from the
/// old create-user that lost the race to the acceptance (a `user.create_or_reset` row, but the
/// session generation never raised) still counts as the link holder's and is invited.
async fn the_upgrade_counts_the_resets_the_audit_log_recorded(app: TestApp) {
    let Squatted { contoso_owner, .. } = squat_the_victims_address(&app).await;
    admin_cli(
        &app,
        &["set-password", "--email", VICTIM],
        "the victim's real password\n",
    );
    let attacker_id = common::user_id(&app.db, OUTSIDER).await;
    let old = accept_as_an_older_instance(&app.db, OLD_SQUATTED, attacker_id).await;
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor_user_id, action, target, details, created_at) \
         VALUES (NULL, NULL, 'user.set_password', $1, '{}', 1000)",
    )
    .bind(format!("user:{old}"))
    .execute(app.db.pool())
    .await
    .unwrap();
    // The old create-user that lost the race to the acceptance wrote its row after the
    // account was made, but set no password: the account's session generation stayed 0.
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, actor_user_id, action, target, details, created_at) \
         SELECT NULL, NULL, 'user.create_or_reset', $1, '{}', created_at + 1000 \
         FROM users WHERE id = $2",
    )
    .bind(format!("user:{old}"))
    .bind(old)
    .execute(app.db.pool())
    .await
    .unwrap();
    migrate_0031_again(&app).await;
    assert!(!password_via_invitation(&app, VICTIM).await);
    assert!(password_via_invitation(&app, OLD_SQUATTED).await);
    assert_eq!(
        app.add_member(&contoso_owner, CONTOSO, VICTIM, "readonly")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Added
    );
    assert!(matches!(
        app.add_member(&contoso_owner, CONTOSO, OLD_SQUATTED, "readonly")
            .await
            .expect("the owner adds the address"),
        AddMemberOutcome::Invited { .. }
    ));
}
