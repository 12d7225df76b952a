//! The notification bell's server functions over HTTP: each user sees and dismisses only their
//! own notifications of the tenant they are in, the unread count follows, foreign ids are 404
//! and change nothing, and a run that ends tells its initiator with a link to the run.

use crate::common;

use common::{TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY};
use tenantatlas::domain::{NotificationLevel, NotificationList, Timestamp};
use tenantatlas::graph_sim::SimConfig;
use tenantatlas::server::engine::worker::Outcome;

both_backends!(TestApp:
    lists_only_the_users_own_notifications_of_the_tenant,
    lists_the_newest_page_and_counts_every_unread,
    unread_ones_past_the_page_come_first_once_the_newest_are_read,
    marking_one_read_lowers_the_count,
    foreign_and_unknown_ids_are_404_and_change_nothing,
    mark_all_read_clears_only_the_users_tenant,
    mark_all_read_leaves_one_written_after_the_list_unread,
    mark_all_read_marks_only_the_listed_even_one_stamped_before_the_list,
    mark_all_read_ignores_foreign_ids,
    mark_all_read_past_a_full_page_marks_only_what_is_older_by_the_margin,
    mark_all_read_refuses_more_ids_than_the_bell_lists,
    mark_all_read_takes_any_as_of_without_failing,
    readonly_members_read_and_dismiss_their_own,
    a_finished_run_notifies_its_initiator_with_a_link_to_the_run,
);

async fn user_id(app: &TestApp, email: &str) -> i64 {
    common::user_id(&app.db, email).await
}

async fn tenant_id(app: &TestApp, external_id: &str) -> i64 {
    common::tenant_id(&app.db, external_id).await
}

/// Writes a notification as the worker would; returns its id.
async fn notify(
    app: &TestApp,
    email: &str,
    tenant: &str,
    title: &str,
    created_at: i64,
    read: bool,
) -> i64 {
    let (user, tenant_id) = (user_id(app, email).await, tenant_id(app, tenant).await);
    sqlx::query_scalar(
        "INSERT INTO notifications (user_id, tenant_id, level, title, body, link, read_at, created_at) \
         VALUES ($1, $2, 'success', $3, 'All good.', $4, $5, $6) RETURNING id",
    )
    .bind(user)
    .bind(tenant_id)
    .bind(title)
    .bind(format!("/t/{tenant}/runs/1"))
    .bind(read.then_some(created_at + 1))
    .bind(created_at)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
}

/// `notifications/list` as `cookie` in `tenant`, which must answer.
async fn list(app: &TestApp, cookie: &str, tenant: &str) -> NotificationList {
    app.notifications(Some(cookie), tenant)
        .await
        .expect("the notifications are listed")
}

fn titles(list: &NotificationList) -> Vec<&str> {
    list.items.iter().map(|n| n.title.as_str()).collect()
}

async fn mark_read(app: &TestApp, cookie: &str, tenant: &str, id: i64) -> u16 {
    let id = id.to_string();
    app.call_as(
        cookie,
        "notifications/mark-read",
        &[("tenant", tenant), ("id", id.as_str())],
    )
    .await
    .status()
    .as_u16()
}

/// How many notifications are read, of everyone in every tenant.
async fn read_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM notifications WHERE read_at IS NOT NULL")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

/// The admin (member of both tenants) has three in Contoso (one read) and one in Fabrikam;
/// the operator has one in Contoso.
struct Seeded {
    contoso_newest: i64,
    contoso_older: i64,
    fabrikam: i64,
    operators: i64,
}

async fn seed(app: &TestApp) -> Seeded {
    let contoso_older = notify(app, ADMIN, CONTOSO, "Older", 1_000, false).await;
    notify(app, ADMIN, CONTOSO, "Oldest, read", 500, true).await;
    let contoso_newest = notify(app, ADMIN, CONTOSO, "Newest", 2_000, false).await;
    let fabrikam = notify(app, ADMIN, FABRIKAM, "In Fabrikam", 3_000, false).await;
    let operators = notify(app, OPERATOR, CONTOSO, "The operator's", 4_000, false).await;
    Seeded {
        contoso_newest,
        contoso_older,
        fabrikam,
        operators,
    }
}

async fn lists_only_the_users_own_notifications_of_the_tenant(app: TestApp) {
    let seeded = seed(&app).await;
    let admin = app.sign_in(ADMIN).await;

    let contoso = list(&app, &admin, CONTOSO).await;
    assert_eq!(titles(&contoso), ["Newest", "Older", "Oldest, read"]);
    assert_eq!(contoso.unread, 2);
    let newest = &contoso.items[0];
    assert_eq!(newest.id, seeded.contoso_newest);
    assert_eq!(newest.level, NotificationLevel::Success);
    assert_eq!(newest.body, "All good.");
    let link = newest.link.as_ref().map(|link| link.as_str().to_owned());
    assert_eq!(link, Some(format!("/t/{CONTOSO}/runs/1")));
    assert_eq!(newest.created_at, Timestamp(2_000));
    assert_eq!(newest.read_at, None);
    assert_eq!(contoso.items[2].read_at, Some(Timestamp(501)));
    assert!(contoso.as_of > Timestamp(1_700_000_000_000));

    let fabrikam = list(&app, &admin, FABRIKAM).await;
    assert_eq!(titles(&fabrikam), ["In Fabrikam"]);
    assert_eq!(fabrikam.unread, 1);

    let operator = app.sign_in(OPERATOR).await;
    let own = list(&app, &operator, CONTOSO).await;
    assert_eq!(titles(&own), ["The operator's"]);
    assert_eq!(own.items[0].id, seeded.operators);
    assert_eq!(own.unread, 1);

    // A user with none sees an empty list; a non-member sees nothing at all.
    let readonly = app.sign_in(READONLY).await;
    let none = list(&app, &readonly, CONTOSO).await;
    assert_eq!((none.items.len(), none.unread), (0, 0));
    let outsider = app.sign_in(OUTSIDER).await;
    let refusal = app
        .notifications(Some(&outsider), CONTOSO)
        .await
        .expect_err("a non-member is refused");
    assert_eq!(refusal.status, 403);
    assert!(!refusal.body.contains("Newest"), "{refusal:?}");
    let anonymous = app
        .notifications(None, CONTOSO)
        .await
        .expect_err("nobody signed in");
    assert_eq!(anonymous.status, 401);
}

async fn lists_the_newest_page_and_counts_every_unread(app: TestApp) {
    for i in 0..25 {
        notify(
            &app,
            ADMIN,
            CONTOSO,
            &format!("Run {i:02}"),
            1_000 + i,
            false,
        )
        .await;
    }
    let admin = app.sign_in(ADMIN).await;
    let page = list(&app, &admin, CONTOSO).await;
    let shown = titles(&page);
    assert_eq!(shown.len(), 20);
    assert_eq!((shown[0], shown[19]), ("Run 24", "Run 05"));
    assert_eq!(
        page.unread, 25,
        "the count includes unread ones past the page"
    );
}

/// The bell's count always names items it lists: after the newest 20 of 25 are read, the five
/// older unread ones are listed first, not hidden behind the read ones.
async fn unread_ones_past_the_page_come_first_once_the_newest_are_read(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..25 {
        let title = format!("Run {i:02}");
        ids.push(notify(&app, ADMIN, CONTOSO, &title, 1_000 + i, false).await);
    }
    let admin = app.sign_in(ADMIN).await;
    for id in &ids[5..] {
        assert_eq!(mark_read(&app, &admin, CONTOSO, *id).await, 200);
    }
    let page = list(&app, &admin, CONTOSO).await;
    assert_eq!(page.unread, 5);
    let shown = titles(&page);
    assert_eq!(shown.len(), 20);
    assert_eq!(
        shown[..5],
        ["Run 04", "Run 03", "Run 02", "Run 01", "Run 00"],
        "the unread ones first, newest first"
    );
    assert!(page.items[..5].iter().all(|n| n.read_at.is_none()));
    assert_eq!(
        (shown[5], shown[19]),
        ("Run 24", "Run 10"),
        "then the newest read ones"
    );
}

async fn marking_one_read_lowers_the_count(app: TestApp) {
    let seeded = seed(&app).await;
    let admin = app.sign_in(ADMIN).await;
    assert_eq!(
        mark_read(&app, &admin, CONTOSO, seeded.contoso_newest).await,
        200
    );
    let after = list(&app, &admin, CONTOSO).await;
    assert_eq!(after.unread, 1);
    // The one still unread comes first, then the read ones, newest first.
    assert_eq!(titles(&after), ["Older", "Newest", "Oldest, read"]);
    let read_at = after.items[1].read_at.expect("read now");

    // Again is fine and keeps the first time.
    assert_eq!(
        mark_read(&app, &admin, CONTOSO, seeded.contoso_newest).await,
        200
    );
    let again = list(&app, &admin, CONTOSO).await;
    assert_eq!(again.unread, 1);
    assert_eq!(again.items[1].id, seeded.contoso_newest);
    assert_eq!(again.items[1].read_at, Some(read_at));
    assert_eq!(again.items[0].id, seeded.contoso_older);
    assert_eq!(again.items[0].read_at, None);
}

async fn foreign_and_unknown_ids_are_404_and_change_nothing(app: TestApp) {
    let seeded = seed(&app).await;
    let before = read_count(&app).await;
    let admin = app.sign_in(ADMIN).await;
    // Another user's, in a tenant the admin is a member of.
    assert_eq!(
        mark_read(&app, &admin, CONTOSO, seeded.operators).await,
        404
    );
    // The admin's own, but of the other tenant than the one named.
    assert_eq!(mark_read(&app, &admin, CONTOSO, seeded.fabrikam).await, 404);
    assert_eq!(mark_read(&app, &admin, CONTOSO, 987_654).await, 404);
    let operator = app.sign_in(OPERATOR).await;
    let response = app
        .call_as(
            &operator,
            "notifications/mark-read",
            &[
                ("tenant", CONTOSO),
                ("id", &seeded.contoso_newest.to_string()),
            ],
        )
        .await;
    assert_eq!(response.status(), 404);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains("Newest") && !body.contains("All good"),
        "{body}"
    );
    // Outsiders are refused before any id is looked at.
    let outsider = app.sign_in(OUTSIDER).await;
    assert_eq!(
        mark_read(&app, &outsider, CONTOSO, seeded.operators).await,
        403
    );
    assert_eq!(
        app.call(
            "notifications/mark-read",
            &[("tenant", CONTOSO), ("id", &seeded.operators.to_string())],
        )
        .await
        .status(),
        401
    );
    assert_eq!(read_count(&app).await, before, "nothing was marked read");
    let still = list(&app, &operator, CONTOSO).await;
    assert_eq!(still.unread, 1);
}

async fn mark_all_read_clears_only_the_users_tenant(app: TestApp) {
    let seeded = seed(&app).await;
    let admin = app.sign_in(ADMIN).await;
    let response = app
        .call_as(
            &admin,
            "notifications/mark-all-read",
            &[("tenant", CONTOSO)],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<i64>().await.unwrap(), 2);
    let contoso = list(&app, &admin, CONTOSO).await;
    assert_eq!(contoso.unread, 0);
    assert!(contoso.items.iter().all(|n| n.read_at.is_some()));
    // The admin's Fabrikam notification and the operator's are still unread.
    let fabrikam = list(&app, &admin, FABRIKAM).await;
    assert_eq!(fabrikam.unread, 1);
    let unread: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM notifications WHERE read_at IS NULL ORDER BY id")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert_eq!(unread, [seeded.fabrikam, seeded.operators]);
    // Nothing left: answers 0 and writes nothing.
    let again = app
        .call_as(
            &admin,
            "notifications/mark-all-read",
            &[("tenant", CONTOSO)],
        )
        .await;
    assert_eq!(again.json::<i64>().await.unwrap(), 0);
}

/// The bell lists one unread; a run ends and writes a second before the next poll; **Mark all
/// read** with the list's `as_of` marks only the one the user saw.
async fn mark_all_read_leaves_one_written_after_the_list_unread(app: TestApp) {
    let seen = notify(&app, ADMIN, CONTOSO, "Seen", 1_000, false).await;
    let admin = app.sign_in(ADMIN).await;
    let listed = list(&app, &admin, CONTOSO).await;
    assert_eq!(listed.unread, 1);
    // Written after the list was read, as the worker does (its clock, not the list's).
    let created = Timestamp::now().millis().max(listed.as_of.millis() + 1);
    let unseen = notify(&app, ADMIN, CONTOSO, "Written since", created, false).await;
    let as_of = listed.as_of.millis().to_string();
    let response = app
        .call_as(
            &admin,
            "notifications/mark-all-read",
            &[("tenant", CONTOSO), ("as_of", as_of.as_str())],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<i64>().await.unwrap(),
        1,
        "only the listed one"
    );
    let after = list(&app, &admin, CONTOSO).await;
    assert_eq!(after.unread, 1);
    let unread: Vec<i64> = after
        .items
        .iter()
        .filter(|n| n.is_unread())
        .map(|n| n.id)
        .collect();
    assert_eq!(unread, [unseen]);
    assert!(after.items.iter().any(|n| n.id == seen && !n.is_unread()));
    // The next list's `as_of` covers it.
    let as_of = after.as_of.millis().to_string();
    let response = app
        .call_as(
            &admin,
            "notifications/mark-all-read",
            &[("tenant", CONTOSO), ("as_of", as_of.as_str())],
        )
        .await;
    assert_eq!(response.json::<i64>().await.unwrap(), 1);
    assert_eq!(list(&app, &admin, CONTOSO).await.unread, 0);
}

async fn readonly_members_read_and_dismiss_their_own(app: TestApp) {
    let own = notify(&app, READONLY, CONTOSO, "For the auditor", 1_000, false).await;
    let readonly = app.sign_in(READONLY).await;
    let before = list(&app, &readonly, CONTOSO).await;
    assert_eq!(before.unread, 1);
    assert_eq!(mark_read(&app, &readonly, CONTOSO, own).await, 200);
    notify(&app, READONLY, CONTOSO, "Another", 2_000, false).await;
    let all = app
        .call_as(
            &readonly,
            "notifications/mark-all-read",
            &[("tenant", CONTOSO)],
        )
        .await;
    assert_eq!(all.status(), 200);
    let after = list(&app, &readonly, CONTOSO).await;
    assert_eq!(after.unread, 0);
}

async fn a_finished_run_notifies_its_initiator_with_a_link_to_the_run(app: TestApp) {
    // The simulator's compliance policies in Contoso's inventory, so the run can capture them.
    let (_sim, client) = common::sim_and_client(SimConfig::default().policies_per_tenant).await;
    let policy_ids: Vec<i64> =
        common::insert_sim_compliance(&app.db, &client, &common::creds(CONTOSO), 2)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    assert_eq!(
        policy_ids.len(),
        2,
        "the simulator serves compliance policies"
    );

    // The operator starts the run through the app, as the picker does.
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Bell").await;
    let run_id = common::submit(&app, &operator, CONTOSO, set, &policy_ids).await;
    let before = list(&app, &operator, CONTOSO).await;
    assert_eq!(before.unread, 0, "nothing until the run ends");

    // The worker (not running inside test servers) takes the run to its end.
    let worker = common::sim_worker(&app.db, &client, "bell-test");
    assert!(matches!(
        worker.try_execute_task().await.unwrap(),
        Outcome::TaskCompleted { .. }
    ));

    let after = list(&app, &operator, CONTOSO).await;
    assert_eq!(after.unread, 1);
    let notification = &after.items[0];
    assert_eq!(notification.title, "Adding policies: Succeeded");
    assert_eq!(notification.level, NotificationLevel::Success);
    let link = notification.link.as_ref().expect("a link to the run");
    assert_eq!(link.as_str(), format!("/t/{CONTOSO}/runs/{run_id}"));
    // Only the initiator is told.
    let admin = app.sign_in(ADMIN).await;
    let admins = list(&app, &admin, CONTOSO).await;
    assert_eq!(admins.unread, 0);
    // The link leads to the run's page.
    let page = app.get(Some(&operator), link.as_str()).await;
    assert_eq!(page.status(), 200);
}

/// The ids of `list`'s unread notifications, as the bell sends them (`3,9,12`).
fn unread_ids(list: &NotificationList) -> String {
    list.items
        .iter()
        .filter(|n| n.is_unread())
        .map(|n| n.id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// **Mark all read** as the bell sends it: the listed unread ids and the list's `as_of`.
async fn mark_all_listed(
    app: &TestApp,
    cookie: &str,
    tenant: &str,
    ids: &str,
    as_of: Timestamp,
) -> reqwest::Response {
    let as_of = as_of.millis().to_string();
    app.call_as(
        cookie,
        "notifications/mark-all-read",
        &[("tenant", tenant), ("ids", ids), ("as_of", as_of.as_str())],
    )
    .await
}

async fn unread_in_db(app: &TestApp) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM notifications WHERE read_at IS NULL ORDER BY id")
        .fetch_all(app.db.pool())
        .await
        .unwrap()
}

/// A run's final transaction stamps its notification at T - 1 ms, but commits only after the
/// bell's list (as of T) has run its query: the list does not show it. **Mark all read** with
/// what the list showed leaves it unread, though it is older than the list's `as_of`.
async fn mark_all_read_marks_only_the_listed_even_one_stamped_before_the_list(app: TestApp) {
    let seen = notify(&app, ADMIN, CONTOSO, "Seen", 1_000, false).await;
    let admin = app.sign_in(ADMIN).await;
    let listed = list(&app, &admin, CONTOSO).await;
    assert_eq!(unread_ids(&listed), seen.to_string());
    let late = listed.as_of.millis() - 1;
    let unseen = notify(&app, ADMIN, CONTOSO, "Committed late", late, false).await;

    let response = mark_all_listed(&app, &admin, CONTOSO, &unread_ids(&listed), listed.as_of).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<i64>().await.unwrap(),
        1,
        "only the listed one"
    );
    let after = list(&app, &admin, CONTOSO).await;
    assert_eq!(after.unread, 1, "the count names the one never shown");
    assert_eq!(unread_ids(&after), unseen.to_string());

    // Once listed, the next Mark all read marks it.
    let response = mark_all_listed(&app, &admin, CONTOSO, &unread_ids(&after), after.as_of).await;
    assert_eq!(response.json::<i64>().await.unwrap(), 1);
    assert_eq!(list(&app, &admin, CONTOSO).await.unread, 0);
}

/// Another user's ids, or the user's own of another tenant, are neither marked nor counted, and
/// the answer says nothing about them; a full "page" of foreign ids sweeps nothing either.
async fn mark_all_read_ignores_foreign_ids(app: TestApp) {
    let seeded = seed(&app).await;
    let admin = app.sign_in(ADMIN).await;
    let ids = format!(
        "{},{},{}",
        seeded.contoso_older, seeded.operators, seeded.fabrikam
    );
    let response = mark_all_listed(&app, &admin, CONTOSO, &ids, Timestamp::now()).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert_eq!(body, "1", "only the admin's own in Contoso");
    assert_eq!(
        unread_in_db(&app).await,
        [seeded.contoso_newest, seeded.fabrikam, seeded.operators]
    );

    // Twenty foreign ids (a full page) mark none of the admin's, however old.
    let mut foreign = vec![seeded.operators, seeded.fabrikam];
    for i in 0..18 {
        foreign.push(notify(&app, OPERATOR, CONTOSO, &format!("Op {i}"), 10 + i, false).await);
    }
    let ids = foreign
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let response = mark_all_listed(&app, &admin, CONTOSO, &ids, Timestamp::now()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<i64>().await.unwrap(), 0);
    let operator = app.sign_in(OPERATOR).await;
    assert_eq!(list(&app, &operator, CONTOSO).await.unread, 19);
    assert_eq!(list(&app, &admin, CONTOSO).await.unread, 1);
    assert_eq!(list(&app, &admin, FABRIKAM).await.unread, 1);
}

/// With more unread than a page, the page's ids also mark unread ones older than the oldest
/// listed and than the list by the margin; one a few seconds older than the oldest listed (it
/// could be a late commit) stays unread, and the count says so.
async fn mark_all_read_past_a_full_page_marks_only_what_is_older_by_the_margin(app: TestApp) {
    let now = Timestamp::now().millis();
    let mut old = Vec::new();
    for i in 0..3 {
        old.push(notify(&app, ADMIN, CONTOSO, &format!("Old {i}"), 1_000 + i, false).await);
    }
    for i in 0..20 {
        notify(
            &app,
            ADMIN,
            CONTOSO,
            &format!("Recent {i:02}"),
            now - 20_000 + i,
            false,
        )
        .await;
    }
    let admin = app.sign_in(ADMIN).await;
    let listed = list(&app, &admin, CONTOSO).await;
    assert_eq!(listed.unread, 23);
    let ids = unread_ids(&listed);
    assert_eq!(ids.split(',').count(), 20);
    assert!(old
        .iter()
        .all(|id| !ids.split(',').any(|s| s == id.to_string())));
    // Committed after the list's query, stamped before the oldest listed.
    let late = notify(&app, ADMIN, CONTOSO, "Late", now - 30_000, false).await;

    let response = mark_all_listed(&app, &admin, CONTOSO, &ids, listed.as_of).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<i64>().await.unwrap(),
        23,
        "the page and the old ones"
    );
    let after = list(&app, &admin, CONTOSO).await;
    assert_eq!(after.unread, 1);
    assert_eq!(unread_ids(&after), late.to_string());
}

/// A crafted `as_of` (the smallest or largest i64) beside a full page of ids is no 500 (an
/// overflow) and marks the listed ones, no unlisted one.
async fn mark_all_read_takes_any_as_of_without_failing(app: TestApp) {
    let old = notify(&app, ADMIN, CONTOSO, "Old", 1_000, false).await;
    let now = Timestamp::now().millis();
    for i in 0..40 {
        notify(
            &app,
            ADMIN,
            CONTOSO,
            &format!("Run {i:02}"),
            now - 1_000 + i,
            false,
        )
        .await;
    }
    let admin = app.sign_in(ADMIN).await;
    for (as_of, marked) in [(i64::MIN, 20), (i64::MAX, 21)] {
        let ids = unread_ids(&list(&app, &admin, CONTOSO).await);
        assert_eq!(ids.split(',').count(), 20);
        let response = mark_all_listed(&app, &admin, CONTOSO, &ids, Timestamp(as_of)).await;
        assert_eq!(response.status(), 200, "as_of {as_of}");
        assert_eq!(
            response.json::<i64>().await.unwrap(),
            marked,
            "as_of {as_of}"
        );
        if as_of == i64::MIN {
            // No sweep below the smallest time: the old one, never listed, stays unread.
            assert_eq!(unread_in_db(&app).await.first(), Some(&old));
        }
    }
    // With `as_of` = i64::MAX the sweep's bound is now - 5 min, and the old one is older.
    assert_eq!(unread_in_db(&app).await, Vec::<i64>::new());
}

/// More ids than the bell lists, or not ids, is 422 with a reason, and nothing is marked.
async fn mark_all_read_refuses_more_ids_than_the_bell_lists(app: TestApp) {
    let mut ids = Vec::new();
    for i in 0..21 {
        ids.push(
            notify(
                &app,
                ADMIN,
                CONTOSO,
                &format!("Run {i:02}"),
                1_000 + i,
                false,
            )
            .await,
        );
    }
    let admin = app.sign_in(ADMIN).await;
    let too_many = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let response = mark_all_listed(&app, &admin, CONTOSO, &too_many, Timestamp::now()).await;
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(body.contains("At most 20"), "{body}");
    let response = mark_all_listed(&app, &admin, CONTOSO, "1,two", Timestamp::now()).await;
    assert_eq!(response.status(), 422);
    assert_eq!(read_count(&app).await, 0, "nothing was marked read");
    assert_eq!(list(&app, &admin, CONTOSO).await.unread, 21);
}
