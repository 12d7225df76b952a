//! The access matrix: every page route and every server function the app registers (taken from
//! the router and the server-function registry, not from a list that could drift), called as an
//! anonymous visitor, a non-member and a member of each role. What each role may call follows
//! from the capability table (`Role::can`), not from answers written out here. Nothing leaks.

use crate::common;

use std::collections::BTreeMap;

use common::{TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY};
use leptos::server_fn::axum::server_fn_paths;
use tenantatlas::api::{access_table, Access};
use tenantatlas::domain::capability::ADMIN_LABEL;
use tenantatlas::domain::restore::RestoreSource;
use tenantatlas::domain::Role;
use tenantatlas::server::db::{Backend, Db};
use tenantatlas::server::http::download_paths;

both_backends!(TestApp:
    every_server_function_enforces_its_access,
    every_page_enforces_membership,
    a_page_naming_nothing_answers_its_status_every_time,
    a_page_refuses_a_number_in_its_url_it_cannot_read,
    every_id_of_another_tenant_is_refused_and_writes_nothing,
);

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    NonMember,
    Member(Role),
}

/// Every kind of caller: no session, another tenant's member, and each role in Contoso.
fn callers() -> impl Iterator<Item = Caller> {
    [Caller::Anonymous, Caller::NonMember]
        .into_iter()
        .chain(Role::ALL.map(Caller::Member))
}

/// Contoso's demo member with this role.
fn contoso_member(role: Role) -> &'static str {
    match role {
        Role::Owner => ADMIN,
        Role::Manager => "manager@contoso.example",
        Role::Operator => OPERATOR,
        Role::Readonly => READONLY,
    }
}

/// The status `caller` is refused `access` with, from the capability table; `None`: let through.
fn expected_denial(access: Access, caller: Caller) -> Option<u16> {
    match (access, caller) {
        (Access::Public, _) => None,
        (_, Caller::Anonymous) => Some(401),
        (Access::SignedIn, _) => None,
        // Only the demo owner holds the instance-wide admin flag.
        (Access::Admin, Caller::Member(Role::Owner)) => None,
        (Access::Admin, _) => Some(403),
        (_, Caller::NonMember) => Some(403),
        (Access::Tenant(capability), Caller::Member(role)) if !role.can(capability) => Some(403),
        _ => None,
    }
}

async fn cookie_for(app: &TestApp, caller: Caller) -> Option<String> {
    match caller {
        Caller::Anonymous => None,
        Caller::NonMember => Some(app.sign_in(OUTSIDER).await),
        Caller::Member(role) => Some(app.sign_in(contoso_member(role)).await),
    }
}

/// What each table of the schema holds, row by row: what a refused call must leave as it found
/// it. A handler that writes and only then answers 403 (the check after the insert, the update
/// or the delete) shows here, whatever its answer says; so does one that updates a row in place,
/// which a count of rows would miss. Refusals are not audited, so `audit_log` is compared too.
///
/// Every column of every table is compared, `sessions` included: a session is saved again (its
/// `touched_at`, `data` and `expires_at` moved on) only once a quarter of the idle time has
/// passed since its last save (`auth::session::keep_alive`), 15 minutes on the tests' servers,
/// not on every request, so a refused call moves none of its columns either.
#[derive(Debug, PartialEq, Eq)]
struct TableContents(BTreeMap<String, Vec<String>>);

/// How one table's rows are read for [`TableContents`]: a `SELECT` of each row as one text,
/// its columns' values quoted as SQL literals (so `NULL` differs from `'NULL'`), comma-joined.
struct RowsQuery {
    table: String,
    sql: String,
}

impl TableContents {
    /// The row query of each table the migrations created, read from the engine's catalog, so
    /// that a table (or a column) a later migration adds is compared without this list being
    /// told.
    async fn queries(db: &Db) -> Vec<RowsQuery> {
        let tables = common::schema::tables(db).await;
        // The tables a server function writes, by their names in migrations/: the catalog query
        // found the schema, not some other one.
        for written in [
            "runs",
            "run_items",
            "backup_sets",
            "backup_items",
            "memberships",
            "invitations",
            "users",
            "sessions",
            "tenants",
            "tenant_connection_checks",
            "notifications",
            "policies",
            "policy_snapshots",
            "audit_log",
        ] {
            assert!(
                tables.iter().any(|table| table == written),
                "{written} is in the catalog: {tables:?}"
            );
        }
        // SQLite's `quote` and PostgreSQL's `quote_nullable` both write a value as its literal.
        let quote = match db.backend() {
            Backend::Sqlite => "quote",
            Backend::Postgres => "quote_nullable",
        };
        let mut queries = Vec::with_capacity(tables.len());
        for table in tables {
            let row = common::schema::columns(db, &table)
                .await
                .iter()
                .map(|column| format!("{quote}(\"{column}\")"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let sql = format!("SELECT {row} FROM \"{table}\"");
            queries.push(RowsQuery { table, sql });
        }
        queries
    }

    /// The rows of each table now, sorted (the engines return them in no set order).
    async fn take(db: &Db, queries: &[RowsQuery]) -> Self {
        let mut contents = BTreeMap::new();
        for query in queries {
            let mut rows: Vec<String> = sqlx::query_scalar(&query.sql)
                .fetch_all(db.pool())
                .await
                .unwrap_or_else(|error| panic!("read the rows of {}: {error}", query.table));
            rows.sort_unstable();
            contents.insert(query.table.clone(), rows);
        }
        Self(contents)
    }

    /// Each table whose rows differ from `before`'s, with the rows it lost and the rows it
    /// gained (an updated row is both).
    fn changed_since(&self, before: &Self) -> Vec<String> {
        let none = Vec::new();
        self.0
            .iter()
            .filter_map(|(table, after)| {
                let was = before.0.get(table).unwrap_or(&none);
                (was != after).then(|| {
                    let lost: Vec<&String> =
                        was.iter().filter(|row| !after.contains(row)).collect();
                    let gained: Vec<&String> =
                        after.iter().filter(|row| !was.contains(row)).collect();
                    format!("{table}: rows before {lost:?}, rows after {gained:?}")
                })
            })
            .collect()
    }
}

async fn every_server_function_enforces_its_access(app: TestApp) {
    // A backup set and a policy that exist in Contoso, so "found" and "forbidden" differ.
    let operator = app.sign_in(OPERATOR).await;
    let set_id = common::backup_set(&app, &operator, CONTOSO, "Matrix")
        .await
        .to_string();
    let policy_id = common::insert_policies(&app.db, CONTOSO, 1).await[0].to_string();
    let registered: Vec<&str> = server_fn_paths().map(|(path, _)| path).collect();
    let table: Vec<(String, Access)> = access_table().collect();
    assert_eq!(
        registered.len(),
        table.len(),
        "api::ACCESS lists exactly the registered functions"
    );
    for path in &registered {
        assert!(
            table.iter().any(|(p, _)| p == path),
            "{path} is registered but has no entry in api::ACCESS"
        );
    }
    // One form that fits every function's arguments (unknown fields are ignored).
    let name = format!("Matrix {}", uuid::Uuid::new_v4().simple());
    let source = format!("set-{set_id}");
    let form = [
        ("tenant", CONTOSO),
        ("id", set_id.as_str()),
        ("name", name.as_str()),
        ("description", ""),
        ("email", "nobody@contoso.example"),
        ("password", "not the password"),
        ("next", "/"),
        ("backup_set_id", set_id.as_str()),
        ("policy_ids", policy_id.as_str()),
        ("client_id", "matrix-app"),
        ("secret", "matrix secret value"),
        // No such member: an allowed caller gets a 404 and changes nobody's role.
        ("user_id", "999999999"),
        ("role", "readonly"),
        // No such invitation: the public invitation functions answer 404.
        (
            "token",
            "0000000000000000000000000000000000000000000000000000000000000000",
        ),
        // Versions of the backup set id taken as a policy id: none, so an allowed caller gets a 404.
        ("version", "1"),
        ("policy_id", policy_id.as_str()),
        ("operation", "policy.capture_snapshot"),
        ("from", "1"),
        ("to", "1"),
        // Restore: the set as the source; no such preview, so an allowed execute gets a 404.
        ("source", source.as_str()),
        ("run_id", "999999999"),
        ("preview_run_id", "999999999"),
        ("reviewed", "true"),
        ("tenant_name", "Contoso (demo)"),
    ];
    let tables = TableContents::queries(&app.db).await;
    let mut signed_in = Vec::new();
    for caller in callers() {
        signed_in.push((caller, cookie_for(&app, caller).await));
    }
    let mut refused_members = 0;
    // Every refusal first, then every call let through: a refused start then finds no run that
    // an allowed one queued (no worker runs here), which a start checked too late would join,
    // deduplicated, instead of writing a run of its own that the comparison would show.
    for refusals in [true, false] {
        for (caller, cookie) in &signed_in {
            let caller = *caller;
            for (path, access) in &table {
                if path == "/api/auth/sign-out" {
                    continue; // would end the session this loop is using; see sessions.rs
                }
                let expected_denial = expected_denial(*access, caller);
                if expected_denial.is_some() != refusals {
                    continue;
                }
                let endpoint = path.trim_start_matches("/api/");
                // No worker runs in tests' servers: only this call can change a row. What a
                // call let through writes is its own business, so only a refusal is watched.
                let before = match expected_denial {
                    Some(_) => Some(TableContents::take(&app.db, &tables).await),
                    None => None,
                };
                let response = match cookie {
                    Some(cookie) => app.call_as(cookie, endpoint, &form).await,
                    None => app.call(endpoint, &form).await,
                };
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                match expected_denial.zip(before) {
                    Some((denied, before)) => {
                        assert_eq!(status, denied, "{caller:?} → {path}: {body}");
                        // Refused means nothing written, before the refusal as well as after.
                        let after = TableContents::take(&app.db, &tables).await;
                        let changed = after.changed_since(&before);
                        assert!(
                            changed.is_empty(),
                            "{caller:?} → {path} was refused but wrote:\n{}",
                            changed.join("\n")
                        );
                        // A member is told which role the function needs.
                        if let (Access::Tenant(capability), Caller::Member(_)) = (access, caller) {
                            refused_members += 1;
                            assert!(
                                body.contains(capability.label()),
                                "{caller:?} → {path} does not say why: {body}"
                            );
                        }
                        if *access == Access::Admin && status == 403 {
                            assert!(body.contains(ADMIN_LABEL), "{caller:?} → {path}: {body}");
                        }
                        assert!(
                            !body.contains("Matrix") && !body.contains("Contoso"),
                            "{caller:?} → {path} leaked: {body}"
                        );
                    }
                    None => assert!(
                        status < 500 && status != 401 && status != 403 || *access == Access::Public,
                        "{caller:?} → {path} was refused: {status} {body}"
                    ),
                }
            }
        }
    }
    assert!(refused_members > 0, "some member is refused something");
}

async fn every_page_enforces_membership(app: TestApp) {
    // A set, a run of it and a policy with a stored version, so every page names something.
    let sample = common::Sample::create(&app).await;
    let mut routes: Vec<String> = leptos_axum::generate_route_list(tenantatlas::app::App)
        .iter()
        .map(|route| route.path().to_owned())
        .collect();
    assert!(routes.len() >= 5, "the router lists its pages");
    // The downloads are plain routes beside the pages, guarded the same: the router's list of
    // them, so a new one is asked too.
    let downloads = download_paths();
    assert!(downloads.len() >= 3, "the router lists its downloads");
    routes.extend(downloads.into_iter().map(str::to_owned));
    for caller in callers() {
        let cookie = cookie_for(&app, caller).await;
        for route in &routes {
            let path = sample.page_path(route);
            let response = app.get(cookie.as_deref(), &path).await;
            let status = response.status().as_u16();
            let location = response
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            let body = response.text().await.unwrap();
            let is_tenant_page = path.starts_with("/t/");
            match (caller, path.as_str()) {
                // Pages for visitors without a session: sign-in, and an invitation's link.
                (_, "/sign-in" | "/invite") => assert_eq!(status, 200, "{caller:?} → {path}"),
                (Caller::Anonymous, _) => {
                    assert!(
                        (300..400).contains(&status),
                        "{caller:?} → {path}: {status}"
                    );
                    assert!(
                        location.unwrap_or_default().starts_with("/sign-in?next="),
                        "{path}"
                    );
                }
                (Caller::NonMember, _) if is_tenant_page => {
                    assert_eq!(status, 403, "{caller:?} → {path}");
                    assert!(
                        !body.contains("Contoso") && !body.contains("Matrix"),
                        "{path} leaked: {body}"
                    );
                }
                // `/t/{tenant}` itself redirects to the backup sets.
                _ if path == format!("/t/{CONTOSO}") => {
                    assert!(status < 400, "{caller:?} → {path}: {status}")
                }
                _ => assert_eq!(status, 200, "{caller:?} → {path}"),
            }
            // An answer the browser reads back while hydrating: a resource that failed inside
            // the server during the render is a bug on any page (a refusal is not).
            assert!(
                !body.contains(r#"{\"Err\":\"Internal\"}"#),
                "{caller:?} → {path} hands the browser an internal error"
            );
        }
    }
}

/// A page that names what does not exist (an id no row has, or no number at all) answers 404,
/// and one it cannot read 422, every time, for each id of each route in turn (the router's
/// list). The status comes from the read that fails during the render; a render that sent its
/// head before that read failed answered 200 instead, on some requests and not others — so
/// each path is asked several times at once.
async fn a_page_naming_nothing_answers_its_status_every_time(app: TestApp) {
    let sample = common::Sample::create(&app).await;
    let (policy_id, version_id) = (&sample.policy_id, &sample.version_id);
    let cookie = app.sign_in(contoso_member(Role::Owner)).await;
    let mut cases: Vec<(String, u16)> = Vec::new();
    for route in leptos_axum::generate_route_list(tenantatlas::app::App) {
        let route = route.path().replace("{tenant}", CONTOSO);
        let names: Vec<&str> = ["{id}", "{version}"]
            .into_iter()
            .filter(|name| route.contains(name))
            .collect();
        // An id no row has, one that is not a number, and one beyond i64.
        for nothing in ["999999", "abc", "99999999999999999999"] {
            for missing in &names {
                let mut path = route.clone();
                for name in &names {
                    let id = if name == missing {
                        nothing
                    } else {
                        sample.id_for(&route, name)
                    };
                    path = path.replace(name, id);
                }
                if path.ends_with("/diff") {
                    path = format!("{path}?from={version_id}&to={version_id}");
                }
                cases.push((path, 404));
            }
        }
    }
    assert!(cases.len() >= 5, "the router names things: {cases:?}");
    let tenant = format!("/t/{CONTOSO}");
    cases.extend([
        (
            format!("{tenant}/policies/{policy_id}/diff?from={version_id}&to=999999"),
            404,
        ),
        (format!("{tenant}/restore/new?source=set-999999"), 404),
        (format!("{tenant}/restore/new?source=version-999999"), 404),
        (format!("{tenant}/restore/new?source=set-x"), 422),
        (format!("{tenant}/restore/new"), 422),
    ]);
    for (path, expected) in cases {
        let statuses: Vec<u16> = futures::future::join_all(
            (0..8).map(|_| async { app.get(Some(&cookie), &path).await.status().as_u16() }),
        )
        .await;
        assert!(
            statuses.iter().all(|status| *status == expected),
            "{path}: {statuses:?}, not {expected} every time"
        );
    }
}

/// A number in the query of a page's URL, for the sweep below.
struct NumberParameter<'a> {
    name: &'static str,
    /// Whether the page at this path reads it.
    read_by: fn(&str) -> bool,
    /// What it refuses besides what is no number.
    refused: &'static [&'static str],
    /// What it takes.
    taken: &'a [&'a str],
    /// The start of the reason the page gives.
    reason: &'static str,
}

/// A number in a page's URL that the page cannot read (`?page=abc`, `?before=-1`, a preview
/// numbered 0) is refused with 422 and the reason on the page, not read as the first page.
/// Every route of the router is asked: a page that reads the parameter refuses each unreadable
/// value of the family and shows each readable one; any other page answers as it does without it.
async fn a_page_refuses_a_number_in_its_url_it_cannot_read(app: TestApp) {
    let sample = common::Sample::create(&app).await;
    let cookie = app.sign_in(contoso_member(Role::Owner)).await;
    let not_numbers = [
        "abc",
        "1.5",
        "1e3",
        "0x10",
        "%00",
        "%201",
        "99999999999999999999",
    ];
    let run = sample.run_id.as_str();
    let parameters = [
        NumberParameter {
            name: "page",
            read_by: |path| path.ends_with("/policies") || path.contains("/runs/"),
            refused: &["0", "-1"],
            taken: &["", "1"],
            reason: "Not a page number",
        },
        NumberParameter {
            name: "before",
            read_by: |path| path.ends_with("/runs") || path.ends_with("/audit"),
            refused: &["-1"],
            taken: &["", "0", run],
            reason: "Not an entry of this list",
        },
        NumberParameter {
            name: "preview",
            read_by: |path| path.contains("/restore/new"),
            refused: &["0", "-5"],
            taken: &[""],
            reason: "Not a restore preview",
        },
    ];
    let mut readers = 0;
    for route in leptos_axum::generate_route_list(tenantatlas::app::App) {
        let path = sample.page_path(route.path());
        let with = |param: &str, value: &str| {
            let joint = if path.contains('?') { '&' } else { '?' };
            format!("{path}{joint}{param}={value}")
        };
        let plain = app.get(Some(&cookie), &path).await.status().as_u16();
        for NumberParameter {
            name: param,
            read_by,
            refused,
            taken,
            reason,
        } in &parameters
        {
            if !read_by(&path) {
                let asked = with(param, "abc");
                let status = app.get(Some(&cookie), &asked).await.status().as_u16();
                assert_eq!(status, plain, "{asked} does not read {param}");
                continue;
            }
            readers += 1;
            for value in not_numbers.iter().chain(refused.iter()) {
                let asked = with(param, value);
                let response = app.get(Some(&cookie), &asked).await;
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                assert_eq!(status, 422, "{asked}");
                assert!(body.contains(reason), "{asked} says why: {body}");
            }
            for value in taken.iter() {
                let asked = with(param, value);
                let status = app.get(Some(&cookie), &asked).await.status().as_u16();
                assert_eq!(status, 200, "{asked}");
            }
        }
    }
    // The policies, runs, run detail, audit and restore pages.
    assert_eq!(readers, 5, "every page that reads a number was asked");
    // Another tenant's member learns nothing from an unreadable number: the refusal comes first.
    let outsider = app.sign_in(OUTSIDER).await;
    for query in ["runs?before=abc", "policies?page=0", "audit?before=-1"] {
        let path = format!("/t/{CONTOSO}/{query}");
        let status = app.get(Some(&outsider), &path).await.status().as_u16();
        assert_eq!(status, 403, "{path}");
    }
}

/// The arguments that name a row of a tenant: an id, a list of them, a restore source.
const ID_ARGUMENTS: &[&str] = &[
    "id",
    "backup_set_id",
    "policy_id",
    "run_id",
    "preview_run_id",
    "user_id",
    "target_id",
    "version",
    "from",
    "to",
    "ids",
    "policy_ids",
    "source",
];

/// The arguments that name a row of a tenant at one function only: the runs page's cursor is a
/// run id, looked up in the tenant.
const ID_ARGUMENTS_AT: &[(&str, &str)] = &[("runs/list", "before")];

/// The integer arguments that name no row: a page, an offset, a page size, a clock.
const NOT_ID_ARGUMENTS: &[&str] = &["page", "offset", "limit", "as_of"];

/// The integer arguments that name no row at one function: the audit log's cursor is an event
/// id compared as a number (`a.id < before`), no event is looked up, so another tenant's id is
/// only a position.
const NOT_ID_ARGUMENTS_AT: &[(&str, &str)] = &[("audit/list", "before")];

/// Whether `name` names a row of the tenant at `endpoint`.
fn is_id_argument(endpoint: &str, name: &str) -> bool {
    ID_ARGUMENTS.contains(&name) || ID_ARGUMENTS_AT.contains(&(endpoint, name))
}

/// What no row has: the value every id argument takes in the answer a Contoso id is compared
/// with.
const NO_ROW: &str = "999999999";

/// Every tenant server function that takes an id (the access table's, with their arguments read
/// from `src/api`), called as a legitimate member of Fabrikam with the capability it needs (the
/// Fabrikam operator, or the owner of both tenants where an operator may not) for Fabrikam,
/// with Contoso's ids: each of the tenant's kinds of row for `id`, and the row each other id
/// argument names. Every answer is the one an id no row has gets (a 404, or the 4xx a
/// function's validation gives first; for a function that answers "none of those" the same
/// 2xx), it names nothing of Contoso, and no table changed: a lookup or a write that left out
/// the tenant shows as Contoso's row read or written.
async fn every_id_of_another_tenant_is_refused_and_writes_nothing(app: TestApp) {
    let sample = common::Sample::create(&app).await;
    let owner = app.sign_in(ADMIN).await;
    let outsider = app.sign_in(OUTSIDER).await;
    let (policy, version) = (
        sample.policy_id.parse::<i64>().unwrap(),
        sample.version_id.parse::<i64>().unwrap(),
    );
    // A restore preview, an invitation, and a notification of each caller, all Contoso's.
    let preview = app
        .start_restore_preview(
            &owner,
            CONTOSO,
            RestoreSource::Version(version),
            &[policy],
            &[],
        )
        .await
        .expect("a Contoso preview")
        .run_id
        .to_string();
    app.add_member(&owner, CONTOSO, "invitee@contoso.example", "readonly")
        .await
        .expect("a Contoso invitation");
    let contoso = common::tenant_id(&app.db, CONTOSO).await;
    let invitation: i64 =
        sqlx::query_scalar("SELECT MAX(id) FROM invitations WHERE tenant_id = $1")
            .bind(contoso)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    let mut notifications = Vec::new();
    for email in [ADMIN, OUTSIDER] {
        let user = common::user_id(&app.db, email).await;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO notifications (user_id, tenant_id, level, title, body, link, created_at) \
             VALUES ($1, $2, 'success', 'Contoso notice', 'Contoso body', '/', 1) RETURNING id",
        )
        .bind(user)
        .bind(contoso)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        notifications.push(id.to_string());
    }
    let member = common::user_id(&app.db, READONLY).await.to_string();
    let invitation = invitation.to_string();
    let (set, run) = (sample.set_id.as_str(), sample.run_id.as_str());
    let (policy, version) = (sample.policy_id.as_str(), sample.version_id.as_str());
    let (preview, invitation, member) = (preview.as_str(), invitation.as_str(), member.as_str());
    let notifications: Vec<&str> = notifications.iter().map(String::as_str).collect();
    let every_row: Vec<&str> = [set, run, policy, version, preview, invitation, member]
        .into_iter()
        .chain(notifications.iter().copied())
        .collect();
    let set_source = format!("set-{set}");
    let version_source = format!("version-{version}");
    // The Contoso values of an id argument, each asked in turn.
    let contoso_values = |name: &str| -> Vec<String> {
        let values: Vec<&str> = match name {
            "id" => every_row.clone(),
            "backup_set_id" => vec![set],
            "policy_id" | "policy_ids" => vec![policy],
            "run_id" | "preview_run_id" => vec![preview, run],
            "user_id" => vec![member],
            "target_id" => vec![policy, set],
            "version" | "from" | "to" => vec![version],
            "ids" => notifications.clone(),
            "source" => vec![&version_source, &set_source],
            "before" => vec![run, preview],
            _ => unreachable!("{name} is no id argument"),
        };
        values.into_iter().map(str::to_owned).collect()
    };
    // What the other arguments take: a valid value, enough for a function to reach its lookup
    // (an argument that does not decode answers 400 before the function runs, for a Contoso id
    // as for none). An argument without one here is a new one to give a value.
    let other_value = |endpoint: &str, name: &str| match name {
        "operation" => "policy.capture_snapshot",
        "role" => "readonly",
        "reviewed" | "include_assignments" | "include_scope_tags" => "true",
        "all_matching" => "false",
        "tenant_name" => "Fabrikam (demo)",
        "limit" => "100",
        "page" | "offset" => "0",
        // Later than every notification: the listed ones are all marked.
        "as_of" => "9999999999999",
        "search" | "policy_type" | "platform" | "sort" | "status" | "operation_type"
        | "outcome" => "",
        _ => panic!("{endpoint}'s argument {name} needs a value in this test"),
    };
    let sources = crate::robustness::server_fn_sources();
    let app = &app;
    let tables = TableContents::queries(&app.db).await;
    let before = TableContents::take(&app.db, &tables).await;
    let mut asked = Vec::new();
    for (path, access) in access_table() {
        let Access::Tenant(capability) = access else {
            continue;
        };
        let endpoint = path.trim_start_matches("/api/");
        let function = sources
            .iter()
            .find(|function| function.endpoint == endpoint)
            .unwrap_or_else(|| panic!("{endpoint}'s source in src/api"));
        // An integer is a row's id or said here not to be one: a new one is not skipped unasked.
        for (name, ty) in &function.arguments {
            let named = is_id_argument(endpoint, name)
                || NOT_ID_ARGUMENTS.contains(&name.as_str())
                || NOT_ID_ARGUMENTS_AT.contains(&(endpoint, name.as_str()));
            assert!(
                !ty.contains("i64") || named,
                "{endpoint}'s {name}: {ty} is neither an id argument nor listed as none"
            );
        }
        let ids: Vec<&str> = function
            .arguments
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| is_id_argument(endpoint, name))
            .collect();
        if ids.is_empty() {
            continue;
        }
        let cookie = if Role::Operator.can(capability) {
            &outsider
        } else {
            &owner
        };
        // Each id argument at each of its Contoso values in turn, the others at their first.
        let first: Vec<(&str, String)> = ids
            .iter()
            .map(|name| (*name, contoso_values(name).remove(0)))
            .collect();
        let mut cases = vec![first.clone()];
        for (at, name) in ids.iter().enumerate() {
            for value in contoso_values(name).into_iter().skip(1) {
                let mut case = first.clone();
                case[at].1 = value;
                cases.push(case);
            }
        }
        let form = |ids: &[(&str, String)]| -> Vec<(String, String)> {
            std::iter::once(("tenant".to_owned(), FABRIKAM.to_owned()))
                .chain(function.arguments.iter().filter_map(|(name, _)| {
                    let value = match ids.iter().find(|(id, _)| id == name) {
                        Some((_, value)) => value.clone(),
                        None if name == "tenant" => return None,
                        None => other_value(endpoint, name).to_owned(),
                    };
                    Some((name.clone(), value))
                }))
                .collect()
        };
        let call = |form: Vec<(String, String)>| async move {
            let fields: Vec<(&str, &str)> = form
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            let response = app.call_as(cookie, endpoint, &fields).await;
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        };
        for case in cases {
            // The same arguments naming no row (`set-999999999` for `set-1`).
            let nothing: Vec<(&str, String)> = case
                .iter()
                .map(|(name, value)| {
                    let kind = value.trim_end_matches(|c: char| c.is_ascii_digit());
                    (*name, format!("{kind}{NO_ROW}"))
                })
                .collect();
            let expected = call(form(&nothing)).await;
            let (status, body) = call(form(&case)).await;
            let what = format!("{endpoint} for Fabrikam with Contoso's {case:?}");
            // The answer is the function's own: its arguments decoded and it ran.
            assert!(
                !expected.1.to_lowercase().contains("deserializ"),
                "{endpoint} with {nothing:?} did not decode its arguments: {} {}",
                expected.0,
                expected.1
            );
            assert!(
                (400..500).contains(&status) || (200..300).contains(&expected.0),
                "{what}: {status} {body}"
            );
            assert_eq!(
                (status, &body),
                (expected.0, &expected.1),
                "{what} answers otherwise than for rows that do not exist"
            );
            let lower = body.to_lowercase();
            assert!(
                !lower.contains("contoso")
                    && !body.contains(CONTOSO)
                    && !lower.contains("sample")
                    && !lower.contains("test policy"),
                "{what} names Contoso's data: {body}"
            );
            let changed = TableContents::take(&app.db, &tables)
                .await
                .changed_since(&before);
            assert!(changed.is_empty(), "{what} wrote:\n{}", changed.join("\n"));
            asked.push(endpoint.to_owned());
        }
    }
    asked.dedup();
    assert!(
        asked.len() >= 20,
        "the functions that take an id were asked: {asked:?}"
    );
}
