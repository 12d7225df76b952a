//! Connecting tenants without SQL: `create-tenant` and the app's Connect form seal the client
//! secret with AES-256-GCM (never in clear in the database, bound to its tenant row), a wrong
//! key is refused at start with a clear message, `rotate-secret-key` moves every secret to the
//! newest key, the first account is the instance admin, and the owner replaces the secret,
//! disconnects and reconnects the tenant.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    Answer, Backend, Options, TempDir, TestApp, TestDb, ADMIN, CONTOSO, FABRIKAM, OPERATOR,
    OUTSIDER,
};
use tenantatlas::domain::tenant::SecretSource;
use tenantatlas::domain::{AddMemberOutcome, AppError, Role, TenantSettings, TenantSummary};
use tenantatlas::graph_sim::{GraphSim, SimConfig, SimHandle};
use tenantatlas::server::db::Backend as Engine;
use tenantatlas::server::engine::runner::WakeUp;
use tenantatlas::server::graph::credentials::{load_credentials, CredentialsError};
use tenantatlas::server::graph::{
    ClientSecret, GraphClient, GraphConfig, PolicyType, SecretResolver,
};
use tenantatlas::server::tenants::connection::{self, Rotated};
use tenantatlas::server::tenants::keyring::{KeyError, KeyRing};

both_backends!(TestApp:
    create_tenant_seals_the_secret_to_its_row,
    a_wrong_or_missing_key_stops_every_command_at_start,
    rotation_moves_every_secret_to_the_newest_key,
    an_env_reference_stays_possible,
    disconnecting_stops_the_runs_under_way_and_queued,
    disconnecting_or_reconnecting_twice_changes_nothing_the_second_time,
    disconnecting_again_cancels_the_runs_the_first_disconnect_left,
    create_tenant_refuses_an_owner_whose_password_an_invitation_link_chose,
    create_tenant_refuses_an_owner_an_older_instances_acceptance_made,
);

const K1: &str = "k1:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const K1_OTHER: &str = "k1:ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100";
const K2: &str = "k2:5f0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e5f";
const SECRET: &str = "Xq8~sUp3r.s3cret-VALUE_0123456789abcdef";
const TENANT_A: &str = "11111111-2222-4333-8444-555555555555";
const TENANT_B: &str = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee";

/// Runs a command of the binary against `url`, with `stdin` as its standard input.
fn admin(url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    common::run_binary(url, args, stdin)
}

fn ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refused(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "the command was expected to fail");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn key_file(dir: &TempDir, name: &str, lines: &[&str]) -> String {
    let path = dir.0.join(name);
    std::fs::write(&path, lines.join("\n")).unwrap();
    path.display().to_string()
}

fn create_tenant(url: &str, keys: &str, tenant: &str, secret: &str) -> std::process::Output {
    admin(
        url,
        &[
            "--secret-key-file",
            keys,
            "create-tenant",
            "--tenant",
            tenant,
            "--name",
            "Woodgrove",
            "--client-id",
            "app-woodgrove",
            "--owner",
            ADMIN,
        ],
        &format!("{secret}\n"),
    )
}

async fn sim(secret: &str) -> SimHandle {
    GraphSim::start(SimConfig {
        policies_per_tenant: 4,
        client_secret: secret.into(),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// Whether the tenant's stored credentials, opened with `keys`, get a token from a simulator
/// that accepts only `SECRET`, and list its policies.
async fn credentials_work(app: &TestApp, sim: &SimHandle, tenant_id: i64, keys: &[&str]) -> bool {
    let ring = Arc::new(KeyRing::parse(&keys.join("\n")).unwrap());
    let resolver = SecretResolver::default().with_keys(Some(ring));
    let creds = load_credentials(&app.db, tenant_id, &resolver)
        .await
        .expect("credentials open");
    let client = GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url)).unwrap();
    client
        .list_policies(&creds, PolicyType::Compliance)
        .await
        .is_ok()
}

async fn stored(app: &TestApp, tenant_id: i64) -> (String, String, String) {
    sqlx::query_as(
        "SELECT graph_secret_ref, graph_secret_ciphertext, graph_secret_key_id FROM tenants WHERE id = $1",
    )
    .bind(tenant_id)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn create_tenant_seals_the_secret_to_its_row(app: TestApp) {
    let dir = TempDir::new();
    let keys = key_file(&dir, "keys", &["# TenantAtlas secret keys", K1]);
    let url = app.database_url().to_owned();
    let out = ok(&create_tenant(&url, &keys, TENANT_A, SECRET));
    assert!(out.contains("Woodgrove"), "{out}");
    assert!(!out.contains(SECRET));
    let a = common::tenant_id(&app.db, TENANT_A).await;
    let (reference, ciphertext, key_id) = stored(&app, a).await;
    assert_eq!((reference.as_str(), key_id.as_str()), ("encrypted", "k1"));
    // The raw column holds neither the secret nor its hex, and nothing else in the database
    // that was written along with it does.
    for text in [SECRET, &hex(SECRET)] {
        assert!(!ciphertext.contains(text));
    }
    let audit: Vec<String> = sqlx::query_scalar("SELECT details FROM audit_log")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    assert!(audit.iter().all(|d| !d.contains(SECRET)), "{audit:?}");
    let role: String =
        sqlx::query_scalar("SELECT role FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(a)
            .bind(common::user_id(&app.db, ADMIN).await)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(role, "owner");
    // Nobody signed in connected it: as for create-user, no actor and `via: cli`; the owner's
    // grant has a row of its own.
    let rows: Vec<(String, Option<i64>, String, String)> = sqlx::query_as(
        "SELECT action, actor_user_id, target, details FROM audit_log WHERE tenant_id = $1 \
         ORDER BY id",
    )
    .bind(a)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    let admin_id = common::user_id(&app.db, ADMIN).await;
    let summary: Vec<(&str, Option<i64>, &str)> = rows
        .iter()
        .map(|(action, actor, target, _)| (action.as_str(), *actor, target.as_str()))
        .collect();
    let (tenant_target, owner_target) = (format!("tenant:{a}"), format!("user:{admin_id}"));
    assert_eq!(
        summary,
        [
            ("tenant.connect", None, tenant_target.as_str()),
            ("membership.grant", None, owner_target.as_str()),
        ]
    );
    let details = |i: usize| -> serde_json::Value { serde_json::from_str(&rows[i].3).unwrap() };
    assert_eq!(details(0)["via"], "cli", "{rows:?}");
    let grant = details(1);
    assert_eq!(grant["member_email"], ADMIN, "{grant}");
    assert_eq!(grant["old_role"], serde_json::Value::Null, "{grant}");
    assert_eq!(grant["new_role"], "owner", "{grant}");
    assert_eq!(grant["via"], "cli", "{grant}");
    let sim = sim(SECRET).await;
    assert!(credentials_work(&app, &sim, a, &[K1]).await);

    // A ciphertext copied onto another tenant's row does not open there.
    ok(&create_tenant(&url, &keys, TENANT_B, "another secret of B"));
    let b = common::tenant_id(&app.db, TENANT_B).await;
    sqlx::query("UPDATE tenants SET graph_secret_ciphertext = $1 WHERE id = $2")
        .bind(&ciphertext)
        .bind(b)
        .execute(app.db.pool())
        .await
        .unwrap();
    let resolver = SecretResolver::default().with_keys(Some(Arc::new(KeyRing::parse(K1).unwrap())));
    let error = load_credentials(&app.db, b, &resolver).await.unwrap_err();
    assert!(
        matches!(error, CredentialsError::Key(KeyError::Undecryptable)),
        "{error:?}"
    );
    // Without the key, the secret cannot be used, and the error says why.
    let error = load_credentials(&app.db, a, &SecretResolver::default())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no secret key"), "{error}");

    // The same tenant twice, a bad GUID, or an empty secret are refused and change nothing.
    let before = app.count("tenants").await;
    assert!(refused(&create_tenant(&url, &keys, TENANT_A, SECRET)).contains("already connected"));
    assert!(refused(&create_tenant(&url, &keys, "woodgrove", SECRET)).contains("GUID"));
    assert!(refused(&create_tenant(
        &url,
        &keys,
        "99999999-2222-4333-8444-555555555555",
        ""
    ))
    .contains("client secret"));
    assert_eq!(app.count("tenants").await, before);
}

async fn a_wrong_or_missing_key_stops_every_command_at_start(app: TestApp) {
    let dir = TempDir::new();
    let url = app.database_url().to_owned();
    let keys = key_file(&dir, "keys", &[K1]);
    ok(&create_tenant(&url, &keys, TENANT_A, SECRET));
    // Another key under the same id: its stored check value does not open.
    let wrong = key_file(&dir, "wrong", &[K1_OTHER]);
    for command in ["migrate", "rotate-secret-key"] {
        let stderr = refused(&admin(&url, &["--secret-key-file", &wrong, command], ""));
        assert!(
            stderr.contains("\"k1\"") && stderr.contains("is not the key"),
            "{stderr}"
        );
    }
    // A file without the key the stored secret names.
    let other = key_file(&dir, "other", &[K2]);
    let stderr = refused(&admin(&url, &["--secret-key-file", &other, "migrate"], ""));
    assert!(
        stderr.contains("\"k1\"") && stderr.contains("does not hold"),
        "{stderr}"
    );
    // A malformed file names its line; a missing one its path.
    let broken = key_file(&dir, "broken", &["# keys", "k1=abc"]);
    let stderr = refused(&admin(&url, &["--secret-key-file", &broken, "migrate"], ""));
    assert!(stderr.contains("line 2"), "{stderr}");
    let missing = dir.0.join("absent").display().to_string();
    let stderr = refused(&admin(
        &url,
        &["--secret-key-file", &missing, "migrate"],
        "",
    ));
    assert!(stderr.contains("cannot be read"), "{stderr}");
    // The right key still starts, and the secret is untouched.
    ok(&admin(&url, &["--secret-key-file", &keys, "migrate"], ""));
    let sim = sim(SECRET).await;
    let a = common::tenant_id(&app.db, TENANT_A).await;
    assert!(credentials_work(&app, &sim, a, &[K1]).await);
}

async fn rotation_moves_every_secret_to_the_newest_key(app: TestApp) {
    let dir = TempDir::new();
    let url = app.database_url().to_owned();
    let old = key_file(&dir, "old", &[K1]);
    ok(&create_tenant(&url, &old, TENANT_A, SECRET));
    let a = common::tenant_id(&app.db, TENANT_A).await;
    let (_, before, _) = stored(&app, a).await;
    // Step 1: the new key is appended; secrets stay under k1 until rotated.
    let both = key_file(&dir, "both", &[K1, K2]);
    let out = ok(&admin(
        &url,
        &["--secret-key-file", &both, "rotate-secret-key"],
        "",
    ));
    assert!(out.contains("1 client secrets re-encrypted"), "{out}");
    let (_, after, key_id) = stored(&app, a).await;
    assert_eq!(key_id, "k2");
    assert_ne!(before, after);
    let sim = sim(SECRET).await;
    // Step 2: the old key can leave the file.
    assert!(credentials_work(&app, &sim, a, &[K2]).await);
    let out = ok(&admin(
        &url,
        &["--secret-key-file", &both, "rotate-secret-key"],
        "",
    ));
    assert!(out.contains("0 client secrets"), "{out}");
    // `new-secret-key` prints a line the key file accepts.
    let line = ok(&admin(&url, &["new-secret-key", "--id", "2026-12"], ""));
    let ring = KeyRing::parse(&format!("{K1}\n{}", line.trim())).unwrap();
    assert_eq!(ring.newest_id(), "2026-12");
    refused(&admin(&url, &["new-secret-key", "--id", "bad id"], ""));
}

async fn an_env_reference_stays_possible(app: TestApp) {
    let url = app.database_url().to_owned();
    let out = ok(&admin(
        &url,
        &[
            "create-tenant",
            "--tenant",
            TENANT_A,
            "--name",
            "From the environment",
            "--client-id",
            "app-env",
            "--secret-ref",
            "env:TA_TENANTS_TEST_SECRET",
        ],
        "",
    ));
    assert!(out.contains("connected"), "{out}");
    let (reference,): (String,) =
        sqlx::query_as("SELECT graph_secret_ref FROM tenants WHERE external_id = $1")
            .bind(TENANT_A)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(reference, "env:TA_TENANTS_TEST_SECRET");
    // Without a key file and without a reference, there is nowhere to keep the secret.
    let stderr = refused(&admin(
        &url,
        &[
            "create-tenant",
            "--tenant",
            TENANT_B,
            "--name",
            "B",
            "--client-id",
            "app-b",
        ],
        "a secret\n",
    ));
    assert!(stderr.contains("--secret-key-file"), "{stderr}");
}

/// `create-tenant` of `tenant` (its secret from the environment, so no key file) with `owner`.
fn create_tenant_owned_by(url: &str, tenant: &str, owner: &str) -> std::process::Output {
    admin(
        url,
        &[
            "create-tenant",
            "--tenant",
            tenant,
            "--name",
            "Owned",
            "--client-id",
            "app-owned",
            "--secret-ref",
            "env:TA_TENANTS_TEST_SECRET",
            "--owner",
            owner,
        ],
        "",
    )
}

/// The role of the account `email` in the tenant `tenant`, if it is a member.
async fn role_in(app: &TestApp, tenant: &str, email: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id \
         JOIN tenants t ON t.id = m.tenant_id WHERE u.email = $1 AND t.external_id = $2",
    )
    .bind(email)
    .bind(tenant)
    .fetch_optional(app.db.pool())
    .await
    .unwrap()
}

/// No address is verified: Mallory, owner of Fabrikam, invites `alice@corp.example` into
/// Fabrikam and accepts the link herself, with a password she chose. The admin's
/// `create-tenant --owner alice@corp.example` is refused (it names `set-password`) and writes
/// nothing, neither the tenant nor a membership; once the admin has given the account a password
/// of theirs (`set-password`, which signs Mallory out), it succeeds. An account `create-user`
/// made is an owner as before.
async fn create_tenant_refuses_an_owner_whose_password_an_invitation_link_chose(app: TestApp) {
    const ALICE: &str = "alice@corp.example";
    const CAROL: &str = "carol@corp.example";
    const MALLORYS_PASSWORD: &str = "mallory's own password";
    let url = app.database_url().to_owned();
    let admin_session = app.sign_in(ADMIN).await;
    let mallory = app.sign_in(OUTSIDER).await;
    let mallory_id = common::user_id(&app.db, OUTSIDER).await;
    app.change_member_role(&admin_session, FABRIKAM, mallory_id, "owner")
        .await
        .expect("Mallory owns Fabrikam");
    let outcome = app
        .add_member(&mallory, FABRIKAM, ALICE, "readonly")
        .await
        .expect("Mallory invites the address");
    let AddMemberOutcome::Invited { link, .. } = outcome else {
        panic!("an invitation, not {outcome:?}");
    };
    let token = link.rsplit_once("#token=").expect("a token").1;
    let (accepted, _) = app
        .accept_invitation(token, "Alice", MALLORYS_PASSWORD)
        .await;
    accepted.expect("Mallory accepts the link herself");

    let tenants = app.count("tenants").await;
    let memberships = app.count("memberships").await;
    let stderr = refused(&create_tenant_owned_by(&url, TENANT_A, ALICE));
    assert!(
        stderr.contains("invitation link") && stderr.contains("set-password --email"),
        "{stderr}"
    );
    assert_eq!(app.count("tenants").await, tenants, "no tenant row");
    assert_eq!(app.count("memberships").await, memberships, "no membership");

    // The admin takes the account back: Mallory's password no longer signs in, and the account
    // may own the tenant.
    ok(&admin(
        &url,
        &["set-password", "--email", ALICE],
        "the real alice's password\n",
    ));
    let form = [
        ("email", ALICE),
        ("password", MALLORYS_PASSWORD),
        ("next", "/"),
    ];
    assert_eq!(app.call("auth/sign-in", &form).await.status(), 401);
    let out = ok(&create_tenant_owned_by(&url, TENANT_A, ALICE));
    assert!(out.contains("connected"), "{out}");
    assert_eq!(
        role_in(&app, TENANT_A, ALICE).await.as_deref(),
        Some("owner")
    );

    // An account the admin made owns a tenant at once, as before.
    ok(&admin(
        &url,
        &["create-user", "--email", CAROL, "--name", "Carol"],
        "carol's own password\n",
    ));
    ok(&create_tenant_owned_by(&url, TENANT_B, CAROL));
    assert_eq!(
        role_in(&app, TENANT_B, CAROL).await.as_deref(),
        Some("owner")
    );
}

/// During a rolling upgrade an instance of before migration 31 keeps serving: an account its
/// acceptance of Mallory's link made (Mallory owns Fabrikam) is refused as `--owner` like one
/// a current instance made, and nothing is written; after `set-password` it is accepted.
async fn create_tenant_refuses_an_owner_an_older_instances_acceptance_made(app: TestApp) {
    use crate::members::{accept_as_an_older_instance, OLD_SQUATTED};
    let url = app.database_url().to_owned();
    let mallory_id = common::user_id(&app.db, OUTSIDER).await;
    accept_as_an_older_instance(&app.db, OLD_SQUATTED, mallory_id).await;

    let tenants = app.count("tenants").await;
    let memberships = app.count("memberships").await;
    let stderr = refused(&create_tenant_owned_by(&url, TENANT_A, OLD_SQUATTED));
    assert!(
        stderr.contains("invitation link") && stderr.contains("set-password --email"),
        "{stderr}"
    );
    assert_eq!(app.count("tenants").await, tenants, "no tenant row");
    assert_eq!(app.count("memberships").await, memberships, "no membership");

    ok(&admin(
        &url,
        &["set-password", "--email", OLD_SQUATTED],
        "the real owner's password\n",
    ));
    ok(&create_tenant_owned_by(&url, TENANT_A, OLD_SQUATTED));
    assert_eq!(
        role_in(&app, TENANT_A, OLD_SQUATTED).await.as_deref(),
        Some("owner")
    );
}

mod accounts {
    use super::*;

    both_backends!(TestDb: the_first_account_is_the_instance_admin);

    async fn the_first_account_is_the_instance_admin(t: TestDb) {
        let create = |email: &str, admin_flag: bool| {
            let mut args = vec!["create-user", "--email", email, "--name", "N"];
            if admin_flag {
                args.push("--admin");
            }
            admin(&t.url, &args, "a long enough password\n")
        };
        ok(&create("first@example.org", false));
        ok(&create("second@example.org", false));
        ok(&create("third@example.org", true));
        let admins: Vec<String> =
            sqlx::query_scalar("SELECT email FROM users WHERE is_admin ORDER BY id")
                .fetch_all(t.db.pool())
                .await
                .unwrap();
        assert_eq!(admins, ["first@example.org", "third@example.org"]);
    }
}

// ---- The app: Connect a tenant and its settings page ----

async fn keyed_app(backend: Backend, keys: &[&str]) -> TestApp {
    TestApp::spawn_with(
        backend,
        Options {
            secret_keys: Some(Arc::new(KeyRing::parse(&keys.join("\n")).unwrap())),
            ..Options::default()
        },
    )
    .await
}

/// "Connect a tenant" as `cookie`: Woodgrove with its app registration and `secret`.
async fn connect(app: &TestApp, cookie: &str, tenant: &str, secret: &str) -> Answer<TenantSummary> {
    app.connect_tenant(cookie, tenant, "Woodgrove", "app-woodgrove", secret)
        .await
}

async fn connecting_in_the_app(backend: Backend) {
    let app = keyed_app(backend, &[K1]).await;
    let admin_cookie = app.sign_in(ADMIN).await;
    let summary = connect(&app, &admin_cookie, TENANT_A, SECRET)
        .await
        .expect("the admin connects the tenant");
    assert_eq!(summary.external_id, TENANT_A);
    let a = common::tenant_id(&app.db, TENANT_A).await;
    let (reference, ciphertext, _) = stored(&app, a).await;
    assert_eq!(reference, "encrypted");
    assert!(!ciphertext.contains(SECRET));
    let sim = sim(SECRET).await;
    assert!(credentials_work(&app, &sim, a, &[K1]).await);
    // The connecting admin is the owner and sees it in their tenants.
    let me = app
        .current_user(&admin_cookie)
        .await
        .expect("the admin is signed in");
    assert!(me.is_admin);
    assert_eq!(
        me.role_in(TENANT_A),
        Some(Role::Owner),
        "the new tenant is the admin's"
    );

    // Twice → 409; a bad field → 422 naming it; a non-admin → 403.
    let again = connect(&app, &admin_cookie, TENANT_A, SECRET)
        .await
        .unwrap_err();
    assert_eq!(again.status, 409);
    let long = "s".repeat(1_001);
    for (tenant, secret, field) in [
        ("not-a-guid", SECRET, "tenant"),
        (TENANT_B, "", "secret"),
        (TENANT_B, long.as_str(), "secret"),
    ] {
        let refusal = connect(&app, &admin_cookie, tenant, secret)
            .await
            .unwrap_err();
        assert_eq!(refusal.status, 422);
        let AppError::Invalid { field: named, .. } = refusal.error() else {
            panic!("not a field's error: {refusal:?}");
        };
        assert_eq!(named, field, "{refusal:?}");
    }
    let operator = app.sign_in(OPERATOR).await;
    let refusal = connect(&app, &operator, TENANT_B, SECRET)
        .await
        .unwrap_err();
    assert_eq!(refusal.status, 403);

    // The owner's settings: where the secret lives and since when, never the secret (in the
    // answer as sent).
    let settings = app
        .call_as(&admin_cookie, "tenants/settings", &[("tenant", TENANT_A)])
        .await
        .text()
        .await
        .unwrap();
    assert!(!settings.contains(SECRET) && !settings.contains(&ciphertext));
    let settings: TenantSettings = serde_json::from_str(&settings).unwrap();
    assert!(
        matches!(settings.secret, SecretSource::Encrypted { set_on: Some(_) }),
        "{settings:?}"
    );
    assert_eq!(settings.expiry_warning_days, None);
    assert!(settings.can_store_secrets);

    // A new secret that expires in 10 days: stored sealed, and the page warns.
    let soon = (time::OffsetDateTime::now_utc().date() + time::Duration::days(10)).to_string();
    app.replace_secret(&admin_cookie, TENANT_A, "the next secret", &soon)
        .await
        .expect("the owner replaces the secret");
    let settings = app
        .tenant_settings(&admin_cookie, TENANT_A)
        .await
        .expect("the owner reads the settings");
    assert_eq!(settings.expiry_warning_days, Some(10), "{settings:?}");
    let (_, after, _) = stored(&app, a).await;
    assert!(!after.contains("the next secret") && after != ciphertext);
    assert!(
        !credentials_work(&app, &sim, a, &[K1]).await,
        "the old secret is gone"
    );

    // Disconnect: data stays, no run starts, credentials refuse; reconnect undoes it.
    app.disconnect_tenant(&admin_cookie, TENANT_A)
        .await
        .expect("the owner disconnects the tenant");
    let set_id = app
        .create_backup_set(&admin_cookie, TENANT_A, "Kept", "")
        .await
        .expect("backup sets still work")
        .id;
    let policy = common::insert_policies(&app.db, TENANT_A, 1).await[0];
    let refused_run = app
        .add_policies(&admin_cookie, TENANT_A, set_id, &[policy], &[])
        .await
        .unwrap_err();
    assert_eq!(refused_run.status, 409);
    assert!(refused_run.body.contains("disconnected"));
    let resolver = SecretResolver::default().with_keys(Some(Arc::new(KeyRing::parse(K1).unwrap())));
    assert!(matches!(
        load_credentials(&app.db, a, &resolver).await,
        Err(CredentialsError::Disconnected)
    ));
    app.reconnect_tenant(&admin_cookie, TENANT_A)
        .await
        .expect("the owner reconnects the tenant");
    app.add_policies(&admin_cookie, TENANT_A, set_id, &[policy], &[])
        .await
        .expect("runs start again");
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE tenant_id = $1 AND action LIKE 'tenant.%' ORDER BY id",
    )
    .bind(a)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "tenant.connect",
            "tenant.replace_secret",
            "tenant.disconnect",
            "tenant.reconnect"
        ]
    );
}

/// Without a key file the app refuses to store a secret, and says what is missing.
async fn connecting_without_a_key_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cookie = app.sign_in(ADMIN).await;
    let refusal = connect(&app, &cookie, TENANT_A, SECRET).await.unwrap_err();
    assert_eq!(refusal.status, 409);
    assert!(refusal.body.contains("--secret-key-file"));
    let settings = app
        .tenant_settings(&cookie, CONTOSO)
        .await
        .expect("the owner reads the settings");
    assert!(!settings.can_store_secrets);
    assert_eq!(settings.secret, SecretSource::Demo);
    assert_eq!(app.count("tenants").await, 2);
}

/// The app with the demo's Graph simulator behind it, and the server's own run worker (its
/// credentials, and their failures, as `serve` maps them), driven by hand.
pub struct CheckedApp {
    app: TestApp,
    worker: tenantatlas::server::engine::worker::Worker,
    // Keeps the simulator answering for the test's length.
    _demo: tenantatlas::server::seed::DemoGraph,
}

impl CheckedApp {
    pub async fn start(backend: Backend) -> Self {
        let demo = tenantatlas::server::seed::start_demo_graph(0)
            .await
            .unwrap();
        let app = TestApp::spawn_with_graph(backend, demo.access.clone()).await;
        let worker = tenantatlas::server::runs_worker(&app.db, demo.access.clone());
        Self {
            app,
            worker,
            _demo: demo,
        }
    }
}

mod checked {
    use super::{
        a_check_the_disconnect_overtook_leaves_the_reconnected_tenant_unblocked, CheckedApp,
    };
    use crate::common;

    both_backends!(local CheckedApp:
        a_check_the_disconnect_overtook_leaves_the_reconnected_tenant_unblocked,
    );
}

/// A connection check is started while the tenant is connected; the owner's disconnect
/// commits before the check's run is inserted, so the runs the disconnect cancels do not
/// include it (here: the flag is set as that disconnect left it, after the check was queued).
/// The worker then finds the credentials refused because the tenant is disconnected: that is
/// no authentication failure, so once the owner reconnects, the tenant's runs start again
/// without a new check, and its last check does not say the secret is wrong.
async fn a_check_the_disconnect_overtook_leaves_the_reconnected_tenant_unblocked(f: CheckedApp) {
    use tenantatlas::server::engine::worker::Outcome;
    let app = &f.app;
    let owner = app.sign_in(ADMIN).await;
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    let check = app
        .check_connection(&owner, CONTOSO)
        .await
        .expect("the check is queued while the tenant is connected")
        .run_id;
    sqlx::query("UPDATE tenants SET disconnected_at = $1 WHERE id = $2")
        .bind(tenantatlas::domain::Timestamp::now().millis())
        .bind(tenant)
        .execute(app.db.pool())
        .await
        .unwrap();
    loop {
        match f.worker.try_execute_task().await.unwrap() {
            Outcome::TaskCompleted { run_id } if run_id == check => break,
            Outcome::TaskCompleted { .. } => {}
            Outcome::EmptyQueue => panic!("the check was not run"),
        }
    }
    let (status, message): (String, Option<String>) =
        sqlx::query_as("SELECT status, failure_message FROM runs WHERE id = $1")
            .bind(check)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(status, "failed");
    assert!(
        message
            .as_deref()
            .unwrap_or_default()
            .contains("disconnected"),
        "{message:?}"
    );
    app.reconnect_tenant(&owner, CONTOSO)
        .await
        .expect("the owner reconnects the tenant");
    let set = app
        .create_backup_set(&owner, CONTOSO, "After the reconnect", "")
        .await
        .expect("a backup set")
        .id;
    let policy = common::insert_policies(&app.db, CONTOSO, 1).await[0];
    app.add_policies(&owner, CONTOSO, set, &[policy], &[])
        .await
        .expect("the reconnected tenant's runs start without a new check");
    let sync = app
        .call_as(&owner, "runs/sync-inventory", &[("tenant", CONTOSO)])
        .await;
    assert_eq!(sync.status(), 200, "{}", sync.text().await.unwrap());
    // The check proved nothing about the app: no report is stored (Contoso had none).
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM tenant_connection_checks WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(app.db.pool())
            .await
            .unwrap();
    assert_eq!(
        outcome, None,
        "the disconnect was stored as the tenant's last check"
    );
}

/// The app after `serve` was restarted with k2 appended to the key file (step 2 of the
/// rotation): k2 seals, k1 and k2 open.
pub struct KeyedApp(TestApp);

impl KeyedApp {
    pub async fn start(backend: Backend) -> Self {
        Self(keyed_app(backend, &[K1, K2]).await)
    }
}

mod keyed {
    use super::{
        connecting_a_disconnected_tenant_says_how_to_reconnect,
        rotation_keeps_a_secret_replaced_meanwhile, KeyedApp,
    };
    use crate::common;

    both_backends!(local KeyedApp:
        rotation_keeps_a_secret_replaced_meanwhile,
        connecting_a_disconnected_tenant_says_how_to_reconnect,
    );
}

/// `rotate-secret-key` reads the secrets, the owner replaces one ("Replace the client secret"),
/// then the rotation writes: the replacement stays (the restarted `serve` sealed it with the
/// newest key); a replacement an older `serve` sealed with the old key is read again and
/// re-encrypted; the secret nobody touched is re-encrypted.
async fn rotation_keeps_a_secret_replaced_meanwhile(app: KeyedApp) {
    const TENANT_C: &str = "cccccccc-dddd-4eee-8fff-000000000000";
    let app = app.0;
    let dir = TempDir::new();
    let url = app.database_url().to_owned();
    // Three tenants connected before k2 was added: their secrets are under k1.
    let old = key_file(&dir, "old", &[K1]);
    ok(&create_tenant(&url, &old, TENANT_A, SECRET));
    ok(&create_tenant(&url, &old, TENANT_B, SECRET));
    ok(&create_tenant(&url, &old, TENANT_C, SECRET));
    let (a, b, c) = (
        common::tenant_id(&app.db, TENANT_A).await,
        common::tenant_id(&app.db, TENANT_B).await,
        common::tenant_id(&app.db, TENANT_C).await,
    );
    let ring = KeyRing::parse(&[K1, K2].join("\n")).unwrap();
    let plan = connection::plan_rotation(&app.db, &ring)
        .await
        .expect("the rotation reads the secrets");

    const REPLACEMENT: &str = "the replacement secret, set while the rotation ran";
    let owner = app.sign_in(ADMIN).await;
    let expires = (time::OffsetDateTime::now_utc().date() + time::Duration::days(90)).to_string();
    app.replace_secret(&owner, TENANT_A, REPLACEMENT, &expires)
        .await
        .expect("the owner replaces the secret");

    // C's secret is replaced by a `serve` not yet restarted: sealed with k1 still.
    let old_serve = KeyRing::parse(K1).unwrap();
    let sealed = old_serve.seal(c, &ClientSecret::new(REPLACEMENT));
    sqlx::query(
        "UPDATE tenants SET graph_secret_ciphertext = $1, graph_secret_key_id = $2 WHERE id = $3",
    )
    .bind(&sealed.ciphertext)
    .bind(&sealed.key_id)
    .bind(c)
    .execute(app.db.pool())
    .await
    .unwrap();

    let rotated = connection::apply_rotation(&app.db, &ring, plan)
        .await
        .expect("the rotation writes");
    // B as read, C as read again: re-encrypted; A: left as the replacement stored it.
    assert_eq!(
        rotated,
        Rotated {
            reencrypted: 2,
            replaced_meanwhile: 1
        }
    );
    for tenant in [a, b, c] {
        assert_eq!(stored(&app, tenant).await.2, "k2", "tenant row {tenant}");
    }
    // k2 alone opens every secret, each to its latest value: the replacements are not
    // overwritten by the secrets read before them.
    let replaced = sim(REPLACEMENT).await;
    for tenant in [a, c] {
        assert!(
            credentials_work(&app, &replaced, tenant, &[K2]).await,
            "tenant row {tenant}: the replacement survives the rotation"
        );
    }
    let untouched = sim(SECRET).await;
    assert!(credentials_work(&app, &untouched, b, &[K2]).await);
}

/// Connecting a GUID whose tenant is disconnected is a 409 that says so and names the way
/// back (its owner reconnects it on its settings page), not "already connected".
async fn connecting_a_disconnected_tenant_says_how_to_reconnect(app: KeyedApp) {
    let app = app.0;
    let admin_cookie = app.sign_in(ADMIN).await;
    connect(&app, &admin_cookie, TENANT_A, SECRET)
        .await
        .expect("the admin connects the tenant");
    app.disconnect_tenant(&admin_cookie, TENANT_A)
        .await
        .expect("the owner disconnects it");
    let before = app.count("tenants").await;
    // In upper case, as copied from the Azure portal: the same tenant.
    let again = connect(&app, &admin_cookie, &TENANT_A.to_uppercase(), SECRET)
        .await
        .unwrap_err();
    assert_eq!(again.status, 409);
    for said in [
        "disconnected",
        "reconnect",
        &format!("/t/{TENANT_A}/settings"),
    ] {
        assert!(again.body.contains(said), "{said:?}: {}", again.body);
    }
    assert!(!again.body.contains("already connected"), "{}", again.body);
    // A tenant that is connected is still "already connected"; nothing was written.
    let connected = connect(&app, &admin_cookie, CONTOSO, SECRET)
        .await
        .unwrap_err();
    assert_eq!(connected.status, 409);
    assert!(
        connected.body.contains("already connected"),
        "{}",
        connected.body
    );
    assert_eq!(app.count("tenants").await, before);
}

mod in_the_app {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_connecting() {
        connecting_in_the_app(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_connecting() {
        connecting_in_the_app(Backend::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_without_a_key() {
        connecting_without_a_key_is_refused(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_without_a_key() {
        connecting_without_a_key_is_refused(Backend::Postgres).await
    }
}

/// (status, processed items) of a run.
async fn run_state(app: &TestApp, run_id: i64) -> (String, i64) {
    sqlx::query_as("SELECT status, processed_items FROM runs WHERE id = $1")
        .bind(run_id)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

/// Disconnecting is the off switch: a run under way (whose worker loaded the credentials when
/// it claimed the run) is cancelled and stops sending requests to Graph, a queued one is
/// cancelled too, and the audit log says so.
async fn disconnecting_stops_the_runs_under_way_and_queued(app: TestApp) {
    let (sim, client) = common::sim_and_client(200).await;
    let mut knobs = sim.knobs();
    knobs.latency_ms = 200;
    sim.set_knobs(knobs);
    let policies: Vec<i64> =
        common::insert_sim_compliance(&app.db, &client, &common::creds(CONTOSO), usize::MAX)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
    assert!(policies.len() >= 24, "enough policies: {}", policies.len());
    let operator = app.sign_in(OPERATOR).await;
    let admin = app.sign_in(ADMIN).await;
    let first_set = common::backup_set(&app, &operator, CONTOSO, "Under way").await;
    let second_set = common::backup_set(&app, &operator, CONTOSO, "Queued").await;
    let running = common::submit(&app, &operator, CONTOSO, first_set, &policies).await;
    let queued = common::submit(&app, &operator, CONTOSO, second_set, &policies[..3]).await;
    // On PostgreSQL the worker is another instance's: only the NOTIFY reaches it.
    let worker = common::sim_worker(&app.db, &client, "worker");
    let (stop, runner) = match app.db.backend() {
        Engine::Sqlite => common::start_runner(worker, &app.wake, &app.db, Duration::from_secs(60)),
        Engine::Postgres => {
            common::start_runner(worker, &WakeUp::default(), &app.db, Duration::from_secs(60))
        }
    };
    let started = Instant::now();
    while run_state(&app, running).await.1 == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the run never progressed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.disconnect_tenant(&admin, CONTOSO)
        .await
        .expect("the owner disconnects the tenant");
    for run in [running, queued] {
        assert_eq!(run_state(&app, run).await.0, "cancelled", "run {run}");
    }
    // Requests already in flight may finish (each a few at 200 ms); then Graph hears nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_grace = sim.counters().requests.len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sim.counters().requests.len(),
        after_grace,
        "the worker kept using the disconnected tenant's credentials"
    );
    let (_, processed) = run_state(&app, running).await;
    assert_eq!(processed, policies.len() as i64, "processed = total");
    let captured: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM run_items WHERE run_id = $1 AND outcome = 'succeeded'",
    )
    .bind(running)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert!(
        (captured as usize) < policies.len(),
        "the run stopped early: {captured}"
    );
    // The second run waited behind the first, or ran beside it: either way it ended cancelled
    // with every item accounted for.
    let (total, processed): (i64, i64) =
        sqlx::query_as("SELECT total_items, processed_items FROM runs WHERE id = $1")
            .bind(queued)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!((total, processed), (3, 3));

    // Audited: the disconnect names the runs it cancelled, and each cancel names its reason.
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    let details: String = sqlx::query_scalar(
        "SELECT details FROM audit_log WHERE tenant_id = $1 AND action = 'tenant.disconnect'",
    )
    .bind(tenant)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    let details: serde_json::Value = serde_json::from_str(&details).unwrap();
    assert_eq!(
        details["cancelled_runs"],
        serde_json::json!([running, queued])
    );
    let cancels: Vec<(String, String)> = sqlx::query_as(
        "SELECT target, details FROM audit_log WHERE tenant_id = $1 AND action = 'run.cancel' \
         ORDER BY id",
    )
    .bind(tenant)
    .fetch_all(app.db.pool())
    .await
    .unwrap();
    assert_eq!(cancels.len(), 2, "{cancels:?}");
    for ((target, details), run) in cancels.iter().zip([running, queued]) {
        assert_eq!(target, &format!("run:{run}"));
        assert!(details.contains("tenant.disconnect"), "{details}");
    }
    stop.send_replace(true);
    runner.await.unwrap();
}

/// The `disconnected_at` of a tenant and its audited `action` rows, as stored.
async fn disconnect_state(app: &TestApp, tenant: i64, action: &str) -> (Option<i64>, i64) {
    let disconnected_at = sqlx::query_scalar("SELECT disconnected_at FROM tenants WHERE id = $1")
        .bind(tenant)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let audited =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND action = $2")
            .bind(tenant)
            .bind(action)
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    (disconnected_at, audited)
}

async fn disconnecting_or_reconnecting_twice_changes_nothing_the_second_time(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    app.disconnect_tenant(&owner, CONTOSO)
        .await
        .expect("the owner disconnects the tenant");
    let first = disconnect_state(&app, tenant, "tenant.disconnect").await;
    assert!(first.0.is_some());
    assert_eq!(first.1, 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    app.disconnect_tenant(&owner, CONTOSO)
        .await
        .expect("a second disconnect succeeds");
    assert_eq!(
        disconnect_state(&app, tenant, "tenant.disconnect").await,
        first,
        "the first disconnect's time stays and it is audited once"
    );

    app.reconnect_tenant(&owner, CONTOSO)
        .await
        .expect("the owner reconnects the tenant");
    app.reconnect_tenant(&owner, CONTOSO)
        .await
        .expect("a second reconnect succeeds");
    assert_eq!(
        disconnect_state(&app, tenant, "tenant.reconnect").await,
        (None, 1)
    );
}

/// A run still queued or under way while the tenant is disconnected (one the first disconnect
/// did not reach: it stopped before its cancels) is cancelled by the next disconnect, which
/// still leaves the first one's time and writes no second `tenant.disconnect`.
async fn disconnecting_again_cancels_the_runs_the_first_disconnect_left(app: TestApp) {
    let owner = app.sign_in(ADMIN).await;
    let operator = app.sign_in(OPERATOR).await;
    let tenant = common::tenant_id(&app.db, CONTOSO).await;
    let running = common::run_with_items(&app, &operator, 3, 1, 0).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Queued").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 2).await;
    let queued = common::submit(&app, &operator, CONTOSO, set, &ids).await;
    let disconnected_at = 1_700_000_000_000_i64;
    sqlx::query("UPDATE tenants SET disconnected_at = $1 WHERE id = $2")
        .bind(disconnected_at)
        .bind(tenant)
        .execute(app.db.pool())
        .await
        .unwrap();

    app.disconnect_tenant(&owner, CONTOSO)
        .await
        .expect("the owner disconnects the tenant again");
    for run in [running, queued] {
        assert_eq!(run_state(&app, run).await.0, "cancelled", "run {run}");
    }
    assert_eq!(
        disconnect_state(&app, tenant, "tenant.disconnect").await,
        (Some(disconnected_at), 0),
        "the first disconnect's time stays, and no second disconnect is audited"
    );
    let cancels: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND action = 'run.cancel'",
    )
    .bind(tenant)
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(cancels, 2, "each cancel is audited");
}
