//! The policy picker's server functions over HTTP: inventory search, filters, sorting and
//! paging, the in-set marker and "select all N matching", and tenant isolation.

use crate::common;

use common::{backup_set, Form, Refusal, TestApp, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY};
use tenantatlas::domain::policy_page::PolicyPage;
use tenantatlas::domain::{AppError, PolicyType};

both_backends!(TestApp:
    lists_searches_filters_sorts_and_pages,
    marks_policies_already_in_the_set_and_leaves_them_out_of_select_all,
    another_tenants_policies_never_appear,
    search_ignores_capitals_of_every_script,
    control_characters_in_the_search_are_refused,
    an_unknown_platform_or_sort_is_refused,
);

fn names(page: &PolicyPage) -> Vec<&str> {
    page.rows
        .iter()
        .map(|row| row.display_name.as_str())
        .collect()
}

/// Puts a policy into a backup set directly (as a finished run would have).
async fn add_to_set(app: &TestApp, tenant: &str, set_id: i64, policy_id: i64) {
    let tenant_id = common::tenant_id(&app.db, tenant).await;
    let snapshot: i64 = sqlx::query_scalar(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         VALUES ($1, $2, $3, '{}', 0) RETURNING id",
    )
    .bind(tenant_id)
    .bind(policy_id)
    .bind(format!("hash-{policy_id}"))
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at) \
         VALUES ($1, $2, $3, $4, 0)",
    )
    .bind(tenant_id)
    .bind(set_id)
    .bind(policy_id)
    .bind(snapshot)
    .execute(app.db.pool())
    .await
    .unwrap();
}

/// Adds policies named `names` to a tenant's inventory and returns their ids, in order.
async fn insert_named(app: &TestApp, tenant: &str, names: &[&str]) -> Vec<i64> {
    let tenant_id = common::tenant_id(&app.db, tenant).await;
    let mut ids = Vec::with_capacity(names.len());
    for (i, name) in names.iter().enumerate() {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
             VALUES ($1, $2, 'compliance', $3, 'unicode-test', 0) RETURNING id",
        )
        .bind(tenant_id)
        .bind(format!("named-{i}"))
        .bind(*name)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

/// Names with capitals outside ASCII are found by their small letters and their capitals, by
/// the picker, its "select all" and the inventory page alike, on both engines (SQLite's own
/// `LOWER` folds ASCII only); sorting by name is untouched.
async fn search_ignores_capitals_of_every_script(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Unicode").await;
    let named = [
        "Überwachung Test",
        "Политика Wi-Fi",
        "Ärger mit Straße",
        "Plain ASCII",
        "İzmir Wi-Fi",
    ];
    let ids = insert_named(&app, CONTOSO, &named).await;
    let cases = [
        ("überwachung", 0),
        ("ÜBERWACHUNG", 0),
        ("Überwachung test", 0),
        ("политика", 1),
        ("ПОЛИТИКА WI-FI", 1),
        ("ärger", 2),
        ("STRAßE", 2),
        ("plain", 3),
        // Rust lower-cases İ to i and a combining dot, PostgreSQL to a plain i: the search
        // and the name are folded by the same engine's rules, so either way it is found.
        ("İzmir", 4),
        ("İzmir wi-fi", 4),
    ];
    for (search, expected) in cases {
        let filter = [("search", search)];
        let page = app
            .policies_list(&cookie, CONTOSO, set, &filter)
            .await
            .expect("the picker lists");
        let found = names(&page);
        let matching = app
            .matching_ids(&cookie, CONTOSO, set, &filter)
            .await
            .expect("select all answers");
        let inventory = app
            .policy_inventory(&cookie, CONTOSO, &filter)
            .await
            .expect("the inventory lists");
        let in_inventory: Vec<&str> = inventory
            .rows
            .iter()
            .map(|row| row.display_name.as_str())
            .collect();
        assert_eq!(found, [named[expected]], "{search:?} in the picker");
        assert_eq!(matching.ids, [ids[expected]], "{search:?} in select all");
        assert_eq!(
            in_inventory,
            [named[expected]],
            "{search:?} in the inventory"
        );
    }

    // Sorting by name still orders these rows, one way and the other.
    let platform = ("platform", "unicode-test");
    let ascending = app
        .policies_list(&cookie, CONTOSO, set, &[("sort", "name"), platform])
        .await
        .expect("the picker lists");
    let descending = app
        .policies_list(&cookie, CONTOSO, set, &[("sort", "-name"), platform])
        .await
        .expect("the picker lists");
    let mut up = names(&ascending);
    let mut down = names(&descending);
    down.reverse();
    assert_eq!(up, down);
    up.sort_unstable();
    let mut all = named.to_vec();
    all.sort_unstable();
    assert_eq!(up, all);
}

async fn lists_searches_filters_sorts_and_pages(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Picker").await;
    common::insert_policies(&app.db, CONTOSO, 60).await;
    let (app, cookie) = (&app, cookie.as_str());
    let list = move |filters: &'static [(&'static str, &'static str)]| async move {
        app.policies_list(cookie, CONTOSO, set, filters)
            .await
            .expect("the picker lists")
    };

    let first = list(&[("search", "TEST POLICY")]).await;
    assert_eq!(first.total, 60);
    assert_eq!(first.page_size, 50);
    assert_eq!(first.rows.len(), 50);
    assert!(first.platforms.iter().any(|p| p == "android"));

    let second = list(&[("search", "test policy"), ("page", "1")]).await;
    assert_eq!(second.page, 1);
    assert_eq!(second.rows.len(), 10);
    let mut all = names(&first);
    all.extend(names(&second));
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 60, "pages neither overlap nor skip rows");

    // A page past the end answers the last page instead of an empty one.
    let past = list(&[("search", "test policy"), ("page", "99")]).await;
    assert_eq!(past.page, 1);

    let some = list(&[("search", "policy 5")]).await;
    assert_eq!(some.total, 11, "Test policy 5 and 50–59");

    // Wildcards are literal text.
    for wildcard in ["test%", "test_policy", "%"] {
        let none = app
            .policies_list(cookie, CONTOSO, set, &[("search", wildcard)])
            .await
            .expect("the picker lists");
        assert_eq!(none.total, 0, "{wildcard:?} is not a wildcard");
    }

    let by_type = list(&[
        ("search", "test policy"),
        ("policy_type", "settings_catalog"),
    ])
    .await;
    assert_eq!(by_type.total, 0);
    let by_platform = list(&[
        ("search", "test policy"),
        ("policy_type", "compliance"),
        ("platform", "android"),
    ])
    .await;
    assert_eq!(by_platform.total, 60);
    assert!(by_platform
        .rows
        .iter()
        .all(|row| row.policy_type == PolicyType::Compliance && row.platform == "android"));
    // A type that is no type is refused with the ones there are, not an empty page.
    for unknown in ["Compliance", "bogus", " compliance"] {
        let filter = [("policy_type", unknown)];
        let listed = app.policies_list(cookie, CONTOSO, set, &filter).await;
        let matching = app.matching_ids(cookie, CONTOSO, set, &filter).await;
        for refusal in [listed.map(|_| ()), matching.map(|_| ())] {
            let refusal = refusal.expect_err("an unknown type");
            assert_eq!(refusal.status, 422, "{unknown:?}: {}", refusal.body);
            assert!(
                refusal.body.contains("settings_catalog"),
                "{}",
                refusal.body
            );
        }
    }

    let descending = list(&[("search", "test policy"), ("sort", "-name")]).await;
    assert_eq!(names(&descending)[0], "Test policy 9");
    let ascending = list(&[("search", "test policy"), ("sort", "name")]).await;
    assert_eq!(names(&ascending)[0], "Test policy 0");

    // Readonly members may look (they cannot add).
    let readonly = app.sign_in(READONLY).await;
    let looked = app.policies_list(&readonly, CONTOSO, set, &[]).await;
    assert!(looked.is_ok(), "{looked:?}");
}

async fn marks_policies_already_in_the_set_and_leaves_them_out_of_select_all(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Marked").await;
    let other = backup_set(&app, &cookie, CONTOSO, "Other").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 5).await;
    add_to_set(&app, CONTOSO, set, ids[0]).await;
    add_to_set(&app, CONTOSO, other, ids[1]).await;

    let search = [("search", "test policy")];
    let page = app
        .policies_list(&cookie, CONTOSO, set, &search)
        .await
        .expect("the picker lists");
    let in_set: Vec<i64> = page
        .rows
        .iter()
        .filter(|row| row.in_set)
        .map(|row| row.id)
        .collect();
    assert_eq!(in_set, [ids[0]], "only the policy in this set is marked");

    let mut matching = app
        .matching_ids(&cookie, CONTOSO, set, &search)
        .await
        .expect("select all answers");
    matching.ids.sort_unstable();
    assert_eq!(matching.ids, ids[1..]);
    assert!(!matching.truncated);
}

async fn another_tenants_policies_never_appear(app: TestApp) {
    let contoso = app.sign_in(OPERATOR).await;
    let fabrikam = app.sign_in(OUTSIDER).await;
    let contoso_set = backup_set(&app, &contoso, CONTOSO, "Mine").await;
    let fabrikam_set = backup_set(&app, &fabrikam, FABRIKAM, "Theirs").await;
    let mine = common::insert_policies(&app.db, CONTOSO, 3).await;
    let theirs = common::insert_policies(&app.db, FABRIKAM, 3).await;

    let search = [("search", "test policy")];
    let page = app
        .policies_list(&contoso, CONTOSO, contoso_set, &search)
        .await
        .expect("the picker lists");
    assert_eq!(page.total, 3);
    assert!(page
        .rows
        .iter()
        .all(|row| mine.contains(&row.id) && !theirs.contains(&row.id)));
    let matching = app
        .matching_ids(&contoso, CONTOSO, contoso_set, &search)
        .await
        .expect("select all answers");
    assert_eq!(matching.ids.len(), 3);

    // A member of Fabrikam only is refused Contoso's inventory, with nothing in the answer.
    let refusals = [
        app.policies_list(&fabrikam, CONTOSO, contoso_set, &search)
            .await
            .map(|_| ()),
        app.matching_ids(&fabrikam, CONTOSO, contoso_set, &search)
            .await
            .map(|_| ()),
    ];
    for refusal in refusals {
        let refusal = refusal.expect_err("a non-member is refused");
        assert_eq!(refusal.status, 403);
        assert!(!refusal.body.contains("Test policy"), "leaked: {refusal:?}");
    }

    // Another tenant's backup set id is unknown here.
    let cross = app
        .policies_list(&contoso, CONTOSO, fabrikam_set, &[])
        .await
        .expect_err("another tenant's set is unknown");
    assert_eq!(cross.status, 404);
}

/// `policies/addable-count`: how many policies "Select all N matching" would select.
async fn addable_count(
    app: &TestApp,
    cookie: &str,
    set: i64,
    filters: &[(&str, &str)],
) -> Result<i64, Refusal> {
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .fields(filters);
    app.answer(Some(cookie), "policies/addable-count", &form)
        .await
}

/// The field a 422 answer names.
fn invalid_field(refusal: Refusal) -> String {
    assert_eq!(refusal.status, 422, "{refusal:?}");
    match refusal.error() {
        AppError::Invalid { field, .. } => field,
        other => panic!("not a validation error: {other:?}"),
    }
}

/// A search with a control character is no text a name holds: refused naming `search` by the
/// list, "select all" and its count alike, on both engines (SQLite's `LIKE` would stop at a
/// NUL and match every policy; PostgreSQL refuses a NUL in a text).
async fn control_characters_in_the_search_are_refused(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Searched").await;
    common::insert_policies(&app.db, CONTOSO, 3).await;
    for search in [
        "\u{0}",
        "test\u{0}policy",
        "bell\u{7}",
        "\u{1B}[2J",
        "c1\u{9B}",
    ] {
        let filter = [("search", search)];
        let listed = app.policies_list(&cookie, CONTOSO, set, &filter).await;
        let matching = app.matching_ids(&cookie, CONTOSO, set, &filter).await;
        let counted = addable_count(&app, &cookie, set, &filter).await;
        for refusal in [
            listed.map(|_| ()),
            matching.map(|_| ()),
            counted.map(|_| ()),
        ] {
            let refusal = refusal.expect_err("a control character is refused");
            assert_eq!(invalid_field(refusal), "search", "{search:?}");
        }
    }
    // A tab or spaces around the words are trimmed, as before.
    let counted = addable_count(&app, &cookie, set, &[("search", "\ttest policy ")])
        .await
        .expect("the count answers");
    assert_eq!(counted, 3);
}

/// The picker refuses a platform the tenant's policies are not on and a sort there is not, as
/// the inventory does, instead of answering nothing or sorting by name.
async fn an_unknown_platform_or_sort_is_refused(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let set = backup_set(&app, &cookie, CONTOSO, "Filtered").await;
    common::insert_policies(&app.db, CONTOSO, 3).await;
    for platform in ["Android", "bogus", " android"] {
        let filter = [("platform", platform)];
        let listed = app.policies_list(&cookie, CONTOSO, set, &filter).await;
        let matching = app.matching_ids(&cookie, CONTOSO, set, &filter).await;
        let counted = addable_count(&app, &cookie, set, &filter).await;
        for refusal in [
            listed.map(|_| ()),
            matching.map(|_| ()),
            counted.map(|_| ()),
        ] {
            let refusal = refusal.expect_err("an unknown platform is refused");
            assert!(refusal.body.contains("android"), "{}", refusal.body);
            assert_eq!(invalid_field(refusal), "platform", "{platform:?}");
        }
    }
    for sort in ["nonsense", "Name", "--name", " name"] {
        let refusal = app
            .policies_list(&cookie, CONTOSO, set, &[("sort", sort)])
            .await
            .expect_err("an unknown sort is refused");
        assert_eq!(invalid_field(refusal), "sort", "{sort:?}");
    }
    // The known ones still answer.
    let filter = [("platform", "android"), ("sort", "-modified")];
    let page = app
        .policies_list(&cookie, CONTOSO, set, &filter)
        .await
        .expect("the picker lists");
    assert_eq!(page.total, 3);
    let counted = addable_count(&app, &cookie, set, &[("platform", "android")])
        .await
        .expect("the count answers");
    assert_eq!(counted, 3);
}
