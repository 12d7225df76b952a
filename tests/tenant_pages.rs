//! The tenant and member pages as the server renders them: each role gets the page (200) with
//! the parts it may not use explained, never a failed page; the Connect form says why it cannot
//! be used; the banner above every tenant page warns of a disconnected tenant and of a client
//! secret expiring within 30 days; the settings page never holds the secret.

use crate::common;

use common::{TestApp, ADMIN, CONTOSO, OPERATOR, READONLY};
use tenantatlas::domain::capability::ADMIN_LABEL;
use tenantatlas::domain::tenant::NO_SECRET_KEY;
use tenantatlas::domain::{Day, Timestamp};

both_backends!(TestApp:
    each_role_gets_the_pages_with_what_it_may_not_do_explained,
    the_banner_warns_of_a_disconnected_tenant_and_an_expiring_secret,
);

const MANAGER: &str = "manager@contoso.example";

/// The page's status and HTML, as `email` (anonymous when `None`).
async fn page(app: &TestApp, email: Option<&str>, path: &str) -> (u16, String) {
    let cookie = match email {
        Some(email) => Some(app.sign_in(email).await),
        None => None,
    };
    let response = app.get(cookie.as_deref(), path).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn each_role_gets_the_pages_with_what_it_may_not_do_explained(app: TestApp) {
    // Connect: an admin on a server without a secret key is told so; anyone else what it takes.
    let (status, html) = page(&app, Some(ADMIN), "/tenants/connect").await;
    assert_eq!(status, 200);
    assert!(html.contains(NO_SECRET_KEY), "{html}");
    let (status, html) = page(&app, Some(OPERATOR), "/tenants/connect").await;
    assert_eq!(status, 200);
    assert!(html.contains(ADMIN_LABEL));

    // Members and audit: owners and managers read them; an operator or readonly member is told
    // the role they need, on a page that does not fail.
    for path in ["members", "audit"] {
        let path = format!("/t/{CONTOSO}/{path}");
        for email in [OPERATOR, READONLY] {
            let (status, html) = page(&app, Some(email), &path).await;
            assert_eq!(status, 200, "{email} {path}");
            assert!(html.contains("Needs manager or owner"), "{email} {path}");
            assert!(!html.contains(MANAGER), "{email} {path} lists members");
        }
    }
    let (status, html) = page(&app, Some(MANAGER), &format!("/t/{CONTOSO}/members")).await;
    assert_eq!(status, 200);
    assert!(html.contains(READONLY) && html.contains("Needs owner"));
    let (_, html) = page(&app, Some(ADMIN), &format!("/t/{CONTOSO}/members")).await;
    assert!(html.contains(READONLY) && html.contains("Remove"));

    // Settings: the owner's; a manager is told it needs the owner.
    let (status, html) = page(&app, Some(MANAGER), &format!("/t/{CONTOSO}/settings")).await;
    assert_eq!(status, 200);
    assert!(html.contains("Needs owner"));
    assert!(
        !html.contains("tenantatlas-demo"),
        "the client id is the owner's to see"
    );
    let (status, html) = page(&app, Some(ADMIN), &format!("/t/{CONTOSO}/settings")).await;
    assert_eq!(status, 200);
    assert!(html.contains("tenantatlas-demo") && html.contains("Disconnect tenant"));
    assert!(html.contains(r#"id="connection-check""#));

    // The invitation page is for visitors without an account.
    let (status, html) = page(&app, None, "/invite").await;
    assert_eq!(status, 200);
    assert!(html.contains("Accept an invitation"));
}

async fn the_banner_warns_of_a_disconnected_tenant_and_an_expiring_secret(app: TestApp) {
    let backup_sets = format!("/t/{CONTOSO}/backup-sets");
    let (_, html) = page(&app, Some(READONLY), &backup_sets).await;
    assert!(!html.contains("banner-secret-expiry") && !html.contains("banner-disconnected"));

    let today = Day::of(Timestamp::now()).unwrap();
    let in_days = |days: i64| Day(today.0 + time::Duration::days(days)).to_string();
    for (expires, shown) in [
        (in_days(31), None),
        (in_days(30), Some("expires in 30 days")),
        (in_days(0), Some("expires today")),
        (in_days(-3), Some("expired 3 days ago")),
    ] {
        sqlx::query("UPDATE tenants SET graph_secret_expires_on = $1 WHERE external_id = $2")
            .bind(&expires)
            .bind(CONTOSO)
            .execute(app.db.pool())
            .await
            .unwrap();
        let (_, html) = page(&app, Some(READONLY), &backup_sets).await;
        match shown {
            Some(text) => assert!(html.contains(text), "{expires}: {text}"),
            None => assert!(!html.contains("banner-secret-expiry"), "{expires}"),
        }
    }

    let owner = app.sign_in(ADMIN).await;
    let response = app
        .call_as(&owner, "tenants/disconnect", &[("tenant", CONTOSO)])
        .await;
    assert_eq!(response.status(), 200);
    let (status, html) = page(&app, Some(READONLY), &format!("/t/{CONTOSO}/runs")).await;
    assert_eq!(status, 200);
    assert!(html.contains("This tenant is disconnected"));
}
