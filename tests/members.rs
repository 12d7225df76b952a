//! A tenant's members: the owner adds an account by e-mail, changes roles and removes members;
//! a tenant always keeps an owner, also when two owners demote each other at the same moment;
//! every change is audited with the old and new role; a removed member loses the tenant at once.

#![cfg(feature = "ssr")]

mod common;

use common::{TestApp, ADMIN, CONTOSO, OPERATOR, READONLY};
use serde_json::Value;

both_backends!(TestApp:
    the_owner_manages_members_and_each_change_is_audited,
    the_last_owner_stays_even_under_concurrent_demotions,
    the_audit_log_filters_and_pages_by_keyset,
);

const MANAGER: &str = "manager@contoso.example";

async fn members(app: &TestApp, cookie: &str) -> Vec<Value> {
    let response = app
        .call_as(cookie, "members/list", &[("tenant", CONTOSO)])
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn role_of(list: &[Value], email: &str) -> Option<String> {
    list.iter()
        .find(|m| m["email"] == email)
        .map(|m| m["role"].as_str().unwrap().to_lowercase())
}

async fn change(app: &TestApp, cookie: &str, user_id: i64, role: &str) -> u16 {
    let user_id = user_id.to_string();
    app.call_as(
        cookie,
        "members/change-role",
        &[("tenant", CONTOSO), ("user_id", &user_id), ("role", role)],
    )
    .await
    .status()
    .as_u16()
}

async fn the_owner_manages_members_and_each_change_is_audited(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let manager = app.sign_in(MANAGER).await;
    // Owners and managers read the list; a manager cannot change it.
    let list = members(&app, &manager).await;
    assert_eq!(role_of(&list, ADMIN).as_deref(), Some("owner"));
    assert_eq!(list[0]["email"], ADMIN, "owners first");
    let add = [
        ("tenant", CONTOSO),
        ("email", "Operator@Fabrikam.example"),
        ("role", "operator"),
    ];
    assert_eq!(
        app.call_as(&manager, "members/add", &add).await.status(),
        403
    );

    // Add an existing account by e-mail: a member at once.
    let outsider = app.sign_in("operator@fabrikam.example").await;
    assert_eq!(
        app.call_as(&outsider, "backup-sets/list", &[("tenant", CONTOSO)])
            .await
            .status(),
        403
    );
    assert_eq!(app.call_as(&owner, "members/add", &add).await.status(), 200);
    assert_eq!(
        app.call_as(&outsider, "backup-sets/list", &[("tenant", CONTOSO)])
            .await
            .status(),
        200,
        "the new member's session sees the tenant without signing in again"
    );
    assert_eq!(app.call_as(&owner, "members/add", &add).await.status(), 409);
    // An address without an account gets an invitation instead (tests/invitations.rs).
    let unknown = [
        ("tenant", CONTOSO),
        ("email", "nobody@example.org"),
        ("role", "operator"),
    ];
    let invited = app.call_as(&owner, "members/add", &unknown).await;
    assert_eq!(invited.status(), 200);
    let invited: Value = invited.json().await.unwrap();
    assert!(invited["Invited"]["link"].is_string(), "{invited}");
    let bad_role = [("tenant", CONTOSO), ("email", OPERATOR), ("role", "boss")];
    assert_eq!(
        app.call_as(&owner, "members/add", &bad_role).await.status(),
        422
    );

    // Change a role, then remove: the removed member's session loses the tenant at once.
    let fabrikam_user = common::user_id(&app.db, "operator@fabrikam.example").await;
    assert_eq!(change(&app, &owner, fabrikam_user, "readonly").await, 200);
    assert_eq!(
        role_of(&members(&app, &owner).await, "operator@fabrikam.example").as_deref(),
        Some("readonly")
    );
    let id = fabrikam_user.to_string();
    let remove = [("tenant", CONTOSO), ("user_id", id.as_str())];
    assert_eq!(
        app.call_as(&owner, "members/remove", &remove)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.call_as(&outsider, "backup-sets/list", &[("tenant", CONTOSO)])
            .await
            .status(),
        403
    );
    assert_eq!(
        app.get(Some(&outsider), &format!("/t/{CONTOSO}/backup-sets"))
            .await
            .status(),
        403
    );
    assert_eq!(
        app.call_as(&owner, "members/remove", &remove)
            .await
            .status(),
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
    }
}

async fn the_last_owner_stays_even_under_concurrent_demotions(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let admin_id = common::user_id(&app.db, ADMIN).await;
    // Alone as owner: demoting or removing oneself is refused, and nothing changes.
    assert_eq!(change(&app, &owner, admin_id, "manager").await, 409);
    let id = admin_id.to_string();
    let remove = [("tenant", CONTOSO), ("user_id", id.as_str())];
    let refused = app.call_as(&owner, "members/remove", &remove).await;
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("at least one owner"));
    assert_eq!(
        role_of(&members(&app, &owner).await, ADMIN).as_deref(),
        Some("owner")
    );

    // Two owners demote each other at the same moment, many times: one wins; the other is
    // refused, with 409 when both passed authorization before either wrote (the check inside
    // the transaction), or 403 when the winner had already committed.
    let second = common::user_id(&app.db, READONLY).await;
    let second_cookie = app.sign_in(READONLY).await;
    for round in 0..8 {
        assert_eq!(
            change(&app, &owner, second, "owner").await,
            200,
            "round {round}"
        );
        let (a, b) = tokio::join!(
            change(&app, &owner, second, "manager"),
            change(&app, &second_cookie, admin_id, "manager"),
        );
        let mut statuses = [a, b];
        statuses.sort_unstable();
        assert!(
            statuses == [200, 403] || statuses == [200, 409],
            "round {round}: {statuses:?}"
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
        if a != 200 {
            // The admin was demoted: the readonly user is the owner.
            assert_eq!(change(&app, &second_cookie, admin_id, "owner").await, 200);
        }
        assert_eq!(change(&app, &owner, second, "readonly").await, 200);
    }
}

async fn audit_page(app: &TestApp, cookie: &str, form: &[(&str, &str)]) -> Value {
    let response = app.call_as(cookie, "audit/list", form).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
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
    let first = audit_page(&app, &manager, &[("tenant", CONTOSO)]).await;
    let entries = first["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 50);
    let before = first["next_before"].as_i64().expect("a second page");
    let before_text = before.to_string();
    let second = audit_page(
        &app,
        &manager,
        &[("tenant", CONTOSO), ("before", &before_text)],
    )
    .await;
    let rest = second["entries"].as_array().unwrap();
    assert_eq!(second["next_before"], Value::Null);
    // Newest first, no event twice, none missing, none of Fabrikam's (sign-ins of this test
    // have no tenant, so the 60 are all there is).
    let ids: Vec<i64> = entries
        .iter()
        .chain(rest)
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 60);
    assert!(ids.windows(2).all(|w| w[0] > w[1]));
    assert!(entries
        .iter()
        .chain(rest)
        .all(|e| e["target"].as_str().unwrap().starts_with("event:")));
    assert!(!entries
        .iter()
        .chain(rest)
        .any(|e| ["event:60", "event:61"].contains(&e["target"].as_str().unwrap())));
    // Filters: by action, by actor, both.
    let runs = audit_page(
        &app,
        &manager,
        &[("tenant", CONTOSO), ("action", "run.start")],
    )
    .await;
    assert_eq!(runs["entries"].as_array().unwrap().len(), 20);
    let by_admin = audit_page(
        &app,
        &manager,
        &[("tenant", CONTOSO), ("actor", "Admin@Contoso.example")],
    )
    .await;
    let by_admin = by_admin["entries"].as_array().unwrap();
    assert_eq!(by_admin.len(), 40);
    assert!(by_admin.iter().all(|e| e["actor"] == ADMIN));
    let none = audit_page(
        &app,
        &manager,
        &[
            ("tenant", CONTOSO),
            ("action", "run.start"),
            ("actor", ADMIN),
        ],
    )
    .await;
    assert!(none["entries"].as_array().unwrap().is_empty());
    // An operator may not read it.
    let operator = app.sign_in(OPERATOR).await;
    assert_eq!(
        app.call_as(&operator, "audit/list", &[("tenant", CONTOSO)])
            .await
            .status(),
        403
    );
}
