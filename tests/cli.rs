//! The admin CLI: `create-user` bootstraps an account and a membership without SQL, `set-password`
//! changes a password, both read the password from standard input only, a password change signs
//! the account out everywhere, bad input is refused with a clear message, a grant never takes a
//! tenant's last owner away and audits a role change as old and new, and `serve` refuses a
//! retired proxy setting.

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    serve_command, session_cookie, ServeProcess, TempDir, TestApp, ADMIN, CONTOSO, FABRIKAM,
    OPERATOR, READONLY,
};
use tenantatlas::domain::{AddMemberOutcome, SubmittedRun};
use tenantatlas::graph_sim::{GraphSim, SimConfig, SimHandle};
use tenantatlas::server::{auth::password, db::Db, seed};

both_backends!(TestApp:
    set_password_signs_the_account_out_everywhere,
    create_user_on_an_existing_account_signs_it_out_everywhere,
    create_user_keeps_the_tenants_last_owner,
    create_user_audits_a_role_change_as_old_and_new,
    create_user_withdraws_the_invitations_of_a_member_who_may_no_longer_invite,
    create_user_accepts_the_tenant_id_in_any_case,
    create_user_refuses_a_name_that_hides_characters,
    sync_inventory_joins_the_sync_already_queued_for_the_tenant,
    sync_inventory_without_a_server_runs_the_sync_as_an_audited_run,
    sync_inventory_leaves_other_tenants_queued_runs_alone,
    sync_inventory_leaves_its_run_to_a_live_instance,
    sync_inventory_of_another_tenant_does_not_wait_for_a_running_invocation,
    sync_inventory_overlapping_invocations_reuse_their_identities,
    sync_inventory_refuses_an_engine_when_every_identity_is_taken,
    sync_inventory_queues_nothing_for_a_secret_it_cannot_load,
    sync_inventory_queues_nothing_for_a_disconnected_tenant,
    sync_inventory_does_not_wait_forever_behind_a_run_a_stopped_server_left,
    sync_inventory_gives_nothing_up_while_a_server_is_live,
    sync_inventory_leaves_queued_a_stranded_sync_another_invocation_joined,
);

fn create_user(url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    admin(url, "create-user", args, stdin)
}

/// Runs an admin command of the binary against the database at `url`.
fn admin(url: &str, command: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let args: Vec<&str> = std::iter::once(command)
        .chain(args.iter().copied())
        .collect();
    common::run_binary(url, &args, stdin)
}

#[tokio::test]
async fn create_user_grants_a_role_and_audits_it() {
    let dir = TempDir::new();
    let url = format!("sqlite://{}/cli.db", dir.0.display());
    let db = Db::connect(&url).await.unwrap();
    tenantatlas::server::prepare(&db).await.unwrap();
    seed::seed_demo(&db).await.unwrap();

    let args = [
        "--email",
        "New.Admin@Contoso.example",
        "--name",
        "New Admin",
        "--tenant",
        CONTOSO,
        "--role",
        "manager",
    ];
    let output = create_user(&url, &args, "a long enough password\n");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let (hash, role): (String, String) = sqlx::query_as(
        "SELECT u.password_hash, m.role FROM users u JOIN memberships m ON m.user_id = u.id \
         WHERE u.email = 'new.admin@contoso.example'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(role, "manager");
    assert!(password::verify("a long enough password".into(), Some(hash)).await);
    let audited: Vec<String> = sqlx::query_scalar("SELECT action FROM audit_log ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert_eq!(audited, ["user.create_or_reset", "membership.grant"]);

    let short = create_user(
        &url,
        &["--email", "x@contoso.example", "--name", "X"],
        "short\n",
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least"));
    let bad_role = create_user(
        &url,
        &[
            "--email",
            "y@contoso.example",
            "--name",
            "Y",
            "--tenant",
            CONTOSO,
            "--role",
            "boss",
        ],
        "a long enough password\n",
    );
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("unknown role"));
    let users: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE email IN ('x@contoso.example', 'y@contoso.example')",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(users, 0, "refused input writes nothing");
}

/// Whether `cookie` is still signed in.
async fn signed_in(app: &TestApp, cookie: &str) -> bool {
    app.call_as(cookie, "auth/me", &[]).await.status() == 200
}

async fn sign_in_status(app: &TestApp, email: &str, password: &str) -> u16 {
    let form = [("email", email), ("password", password), ("next", "/")];
    app.call("auth/sign-in", &form).await.status().as_u16()
}

async fn set_password_signs_the_account_out_everywhere(app: TestApp) {
    let laptop = app.sign_in(OPERATOR).await;
    let phone = app.sign_in(OPERATOR).await;
    let colleague = app.sign_in(ADMIN).await;

    let output = admin(
        app.database_url(),
        "set-password",
        &["--email", "Operator@Contoso.example"],
        "a brand new password\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!signed_in(&app, &laptop).await);
    assert!(!signed_in(&app, &phone).await);
    assert!(
        signed_in(&app, &colleague).await,
        "other accounts keep theirs"
    );
    assert_eq!(
        sign_in_status(&app, OPERATOR, seed::DEMO_PASSWORD).await,
        401
    );
    assert_eq!(
        sign_in_status(&app, OPERATOR, "a brand new password").await,
        200
    );
    let audited: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE action LIKE 'user.%'")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    assert_eq!(audited, ["user.set_password"]);

    let unknown = admin(
        app.database_url(),
        "set-password",
        &["--email", "nobody@contoso.example"],
        "a brand new password\n",
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no account has the e-mail"));
    let short = admin(
        app.database_url(),
        "set-password",
        &["--email", OPERATOR],
        "short\n",
    );
    assert!(!short.status.success());
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least"));
    // Sign-in refuses a password over 1,000 characters unhashed: the CLI must not set one.
    let long = "p".repeat(1_001);
    let too_long = admin(
        app.database_url(),
        "set-password",
        &["--email", OPERATOR],
        &format!("{long}\n"),
    );
    assert!(!too_long.status.success());
    assert!(String::from_utf8_lossy(&too_long.stderr).contains("at most 1000"));
    assert_eq!(
        sign_in_status(&app, OPERATOR, "a brand new password").await,
        200,
        "a refused change changes nothing"
    );
}

async fn create_user_on_an_existing_account_signs_it_out_everywhere(app: TestApp) {
    let cookie = app.sign_in(OPERATOR).await;
    let colleague = app.sign_in(ADMIN).await;
    let output = create_user(
        app.database_url(),
        &["--email", OPERATOR, "--name", "Operator"],
        "another new password\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!signed_in(&app, &cookie).await);
    assert!(signed_in(&app, &colleague).await);
    let form = [
        ("email", OPERATOR),
        ("password", "another new password"),
        ("next", "/"),
    ];
    let response = app.call("auth/sign-in", &form).await;
    assert_eq!(response.status(), 200);
    assert!(signed_in(&app, &session_cookie(&response).unwrap()).await);
}

/// The role of `email` in `tenant`, as stored.
async fn stored_role(app: &TestApp, email: &str, tenant: &str) -> String {
    sqlx::query_scalar(
        "SELECT m.role FROM memberships m JOIN users u ON u.id = m.user_id \
         JOIN tenants t ON t.id = m.tenant_id WHERE u.email = $1 AND t.external_id = $2",
    )
    .bind(email)
    .bind(tenant)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
}

async fn create_user_keeps_the_tenants_last_owner(app: TestApp) {
    let cookie = app.sign_in(ADMIN).await;
    let output = create_user(
        app.database_url(),
        &[
            "--email", ADMIN, "--name", "Admin", "--tenant", CONTOSO, "--role", "readonly",
        ],
        "a brand new password\n",
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("at least one owner"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stored_role(&app, ADMIN, CONTOSO).await, "owner");
    assert!(signed_in(&app, &cookie).await, "nothing was written");
    assert_eq!(sign_in_status(&app, ADMIN, seed::DEMO_PASSWORD).await, 200);
    assert_eq!(app.count("audit_log").await, audited_sign_ins(&app).await);
}

/// The audit rows of sign-ins (written by the test's own sign-ins).
async fn audited_sign_ins(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'auth.%'")
        .fetch_one(app.db.pool())
        .await
        .unwrap()
}

async fn create_user_audits_a_role_change_as_old_and_new(app: TestApp) {
    let output = create_user(
        app.database_url(),
        &[
            "--email", READONLY, "--name", "Readonly", "--tenant", CONTOSO, "--role", "manager",
        ],
        "a brand new password\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stored_role(&app, READONLY, CONTOSO).await, "manager");
    let details: Vec<String> =
        sqlx::query_scalar("SELECT details FROM audit_log WHERE action = 'membership.grant'")
            .fetch_all(app.db.pool())
            .await
            .unwrap();
    let details: Vec<serde_json::Value> = details
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        details,
        [serde_json::json!({
            "member_email": READONLY,
            "old_role": "readonly",
            "new_role": "manager",
            "via": "cli",
        })]
    );
}

async fn create_user_accepts_the_tenant_id_in_any_case(app: TestApp) {
    // `create-tenant` stores a GUID in lower case whatever case it was typed in; a GUID copied
    // from the Azure portal in upper case names the same tenant here too.
    let output = create_user(
        app.database_url(),
        &[
            "--email",
            "upper@contoso.example",
            "--name",
            "Upper",
            "--tenant",
            &format!("  {}  ", CONTOSO.to_uppercase()),
            "--role",
            "operator",
        ],
        "a brand new password\n",
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stored_role(&app, "upper@contoso.example", CONTOSO).await,
        "operator"
    );
    // A malformed id is refused as an unknown one, before any account is written.
    let output = create_user(
        app.database_url(),
        &[
            "--email",
            "malformed@contoso.example",
            "--name",
            "Malformed",
            "--tenant",
            "contoso",
            "--role",
            "operator",
        ],
        "a brand new password\n",
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("No tenant has this id"), "{stderr}");
    let accounts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = 'malformed@contoso.example'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(accounts, 0);
}

async fn create_user_refuses_a_name_that_hides_characters(app: TestApp) {
    // The invitation's form refuses these names; the CLI parses the name the same way.
    for name in ["Ada\u{200B} Lovelace", "\u{202E}ecalevoL adA"] {
        let output = create_user(
            app.database_url(),
            &["--email", "ada@contoso.example", "--name", name],
            "a brand new password\n",
        );
        assert!(!output.status.success(), "{name:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("invisible"), "{stderr}");
    }
    let accounts: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE email = 'ada@contoso.example'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(accounts, 0);
}

async fn create_user_withdraws_the_invitations_of_a_member_who_may_no_longer_invite(app: TestApp) {
    let grant = |role: &'static str| {
        let url = app.database_url().to_owned();
        move || {
            create_user(
                &url,
                &[
                    "--email", OPERATOR, "--name", "Operator", "--tenant", CONTOSO, "--role", role,
                ],
                // The demo's password again, so the test signs in as the operator.
                &format!("{}\n", seed::DEMO_PASSWORD),
            )
        }
    };
    let output = grant("owner")();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let owner = app.sign_in(OPERATOR).await;
    let invited = app
        .add_member(&owner, CONTOSO, "newcomer@contoso.example", "operator")
        .await
        .expect("an owner invites");
    assert!(matches!(invited, AddMemberOutcome::Invited { .. }));
    let pending = |app: &TestApp| {
        let pool = app.db.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM invitations WHERE email = 'newcomer@contoso.example' \
                 AND accepted_at IS NULL",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(pending(&app).await, 1);

    let output = grant("readonly")();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stored_role(&app, OPERATOR, CONTOSO).await, "readonly");
    assert_eq!(
        pending(&app).await,
        0,
        "a readonly member's link brings no one in"
    );
    let revoked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'invitation.revoke'")
            .fetch_one(app.db.pool())
            .await
            .unwrap();
    assert_eq!(revoked, 1);
}

/// Runs `serve` with `args` and `env`, expecting it to refuse to start; returns its stderr.
fn serve_refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = TempDir::new();
    let url = format!("sqlite://{}/serve.db", dir.0.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantatlas"))
        .args(["--database-url", &url, "--log", "warn", "serve"])
        .args(["--addr", "127.0.0.1:0", "--site-root"])
        .arg(&dir.0)
        .args(args)
        .env_remove("TENANTATLAS_TRUSTED_PROXY_HOPS")
        .env_remove("TENANTATLAS_TRUSTED_PROXY")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve {args:?} {env:?} started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn serve_refuses_the_retired_proxy_hop_count() {
    let flag = serve_refused(&["--trusted-proxy-hops", "1"], &[]);
    assert!(flag.contains("--trusted-proxy CIDR"), "{flag}");
    let env = serve_refused(&[], &[("TENANTATLAS_TRUSTED_PROXY_HOPS", "0")]);
    assert!(env.contains("TENANTATLAS_TRUSTED_PROXY_HOPS"), "{env}");
    assert!(env.contains("--trusted-proxy CIDR"), "{env}");
    let with_new = serve_refused(
        &["--trusted-proxy", "10.0.0.0/8", "--trusted-proxy-hops", "2"],
        &[],
    );
    assert!(with_new.contains("--trusted-proxy CIDR"), "{with_new}");
}

#[test]
fn serve_refuses_a_malformed_proxy_range() {
    let typo = serve_refused(&["--trusted-proxy", "10.0.0.0/8,10.0.0.1/8"], &[]);
    assert!(typo.contains("bits set past /8"), "{typo}");
    let env = serve_refused(&[], &[("TENANTATLAS_TRUSTED_PROXY", "::1,proxy.internal")]);
    assert!(env.contains("not an IP address"), "{env}");
}

#[test]
fn serve_refuses_a_public_url_browsers_would_not_send_as_origin() {
    for (url, why) in [
        ("https://atlas.example/tenantatlas", "has a path"),
        ("ftp://atlas.example", "not an http or https URL"),
        ("atlas.example", "not a URL"),
    ] {
        let flag = serve_refused(&["--public-url", url], &[]);
        assert!(
            flag.contains(why) && flag.contains("--public-url"),
            "{flag}"
        );
        let env = serve_refused(&[], &[("TENANTATLAS_PUBLIC_URL", url)]);
        assert!(env.contains(why), "{env}");
    }
}

/// How many migrations the database at `url` has applied (none when it has no migrations table).
async fn applied_migrations(url: &str) -> i64 {
    let db = Db::connect(url).await.unwrap();
    let table: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    if table == 0 {
        return 0;
    }
    sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// A start refused for its configuration (a public URL with a path, a key file others may
/// change, a port in use) leaves the database unmigrated: the version it replaces can still start
/// on it.
#[tokio::test]
async fn serve_refused_for_its_configuration_migrates_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new();
    let keys = dir.0.join("keys");
    std::fs::write(
        &keys,
        tenantatlas::server::tenants::keyring::new_key_line("k1"),
    )
    .unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o664)).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let keys = keys.display().to_string();
    for (name, args) in [
        (
            "path",
            vec![
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--public-url",
                "https://atlas.example/app",
            ],
        ),
        (
            "keys",
            vec!["--secret-key-file", &keys, "serve", "--addr", "127.0.0.1:0"],
        ),
        ("port", vec!["serve", "--addr", &taken]),
    ] {
        let url = format!("sqlite://{}/{name}.db", dir.0.display());
        let output = common::run_binary(&url, &args, "");
        assert!(!output.status.success(), "{name}: the start is refused");
        assert_eq!(
            applied_migrations(&url).await,
            0,
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A request that never finishes (its body never arrives in full, as a client on a stalled
/// link, or one reading an export slowly, keeps its request in flight) does not keep a stopped
/// server alive: SIGTERM ends the process within the shutdown grace period, cleanly.
#[tokio::test]
async fn sigterm_stops_within_the_grace_period_whatever_is_in_flight() {
    use tokio::io::AsyncWriteExt;

    let dir = TempDir::new();
    let url = format!("sqlite://{}/serve.db", dir.0.display());
    let mut server = ServeProcess::start(
        serve_command(&url)
            .arg("--site-root")
            .arg(&dir.0)
            .args(["--shutdown-grace-seconds", "1"]),
    )
    .await;
    let addr = server.addr();
    let origin = format!("http://{addr}");

    // A sign-in whose body stops after its first bytes: the server is reading it.
    let mut stalled = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/auth/sign-in HTTP/1.1\r\nHost: {addr}\r\nOrigin: {origin}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100000\r\n\r\nemail="
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let terminated = Instant::now();
    server.sigterm();
    // The grace period (1 s), the worker's hand-over and the database's close, with a margin.
    let limit = Duration::from_secs(8);
    let exit = server
        .wait_exit(limit)
        .await
        .unwrap_or_else(|| panic!("serve was still running {limit:?} after SIGTERM"));
    assert!(exit.success(), "a SIGTERM stop exits cleanly: {exit}");
    assert!(
        terminated.elapsed() >= Duration::from_millis(900),
        "the request in flight had its grace period"
    );
    drop(stalled);
}

/// Policies the Graph simulator lists in each tenant for the `sync-inventory` tests.
const SIM_POLICIES: usize = 12;

/// A Graph simulator, and Contoso connected to it with its secret in an environment variable
/// (the other demo tenants keep the demo's secret, which only demo mode has).
async fn contoso_on_a_simulator(app: &TestApp) -> SimHandle {
    let sim = GraphSim::start(SimConfig {
        policies_per_tenant: SIM_POLICIES,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    sqlx::query(
        "UPDATE tenants SET graph_client_id = 'tenantatlas-test', \
         graph_secret_ref = 'env:TA_CLI_TEST_SECRET' WHERE external_id = $1",
    )
    .bind(CONTOSO)
    .execute(app.db.pool())
    .await
    .unwrap();
    sim
}

/// Runs `sync-inventory` with `args` against the test's database and simulator (off the test's
/// threads: the simulator answers on them).
async fn sync_inventory_cli(app: &TestApp, sim: &SimHandle, args: &[&str]) -> (bool, String) {
    start_sync_inventory(app, sim, args).await.unwrap()
}

/// The `sync-inventory` command with `args` against the test's database and simulator.
fn sync_inventory_command(app: &TestApp, sim: &SimHandle, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tenantatlas"));
    command
        .args(["--database-url", app.database_url(), "--log", "warn"])
        .args(["--graph-url", &sim.graph_url, "--login-url", &sim.login_url])
        .arg("sync-inventory")
        .args(args)
        .env("TA_CLI_TEST_SECRET", "sim-secret")
        .stdin(Stdio::null());
    command
}

/// [`sync_inventory_cli`] stopped (killed) once `limit` has passed: `None` then, with its output
/// so far.
async fn sync_inventory_within(
    app: &TestApp,
    sim: &SimHandle,
    args: &[&str],
    limit: Duration,
) -> (Option<bool>, String) {
    let mut command = sync_inventory_command(app, sim, args);
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    tokio::task::spawn_blocking(move || {
        let mut child = command.spawn().expect("run the binary");
        let started = Instant::now();
        let exited = loop {
            if child.try_wait().expect("the binary's status").is_some() {
                break true;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let output = child.wait_with_output().expect("the binary's output");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        let ok = exited.then_some(output.status.success());
        (ok, format!("{stdout}{stderr}"))
    })
    .await
    .unwrap()
}

/// [`sync_inventory_cli`] started in the background: its success and output once it exits.
fn start_sync_inventory(
    app: &TestApp,
    sim: &SimHandle,
    args: &[&str],
) -> tokio::task::JoinHandle<(bool, String)> {
    let mut command = sync_inventory_command(app, sim, args);
    tokio::task::spawn_blocking(move || {
        let output = command.output().expect("run the binary");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        (output.status.success(), format!("{stdout}{stderr}"))
    })
}

/// Queues the tenant's sync as `email` through the app, as "Sync from Intune" does.
async fn queue_sync_as(app: &TestApp, email: &str, tenant: &str) -> SubmittedRun {
    let cookie = app.sign_in(email).await;
    let response = app
        .call_as(&cookie, "runs/sync-inventory", &[("tenant", tenant)])
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The tenant's `inventory.sync` runs: id, status, initiator, summary and Graph requests.
async fn sync_runs(
    app: &TestApp,
    tenant: &str,
) -> Vec<(i64, String, Option<i64>, Option<String>, i64)> {
    sqlx::query_as(
        "SELECT r.id, r.status, r.initiated_by, r.summary, r.graph_requests FROM runs r \
         JOIN tenants t ON t.id = r.tenant_id \
         WHERE t.external_id = $1 AND r.operation_type = 'inventory.sync' ORDER BY r.id",
    )
    .bind(tenant)
    .fetch_all(app.db.pool())
    .await
    .unwrap()
}

/// Contoso's policies present in the inventory.
async fn present_policies(app: &TestApp) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM policies p JOIN tenants t ON t.id = p.tenant_id \
         WHERE t.external_id = $1 AND p.gone_from_intune_at IS NULL",
    )
    .bind(CONTOSO)
    .fetch_one(app.db.pool())
    .await
    .unwrap()
}

/// The audit rows of a run: action, actor and tenant.
async fn run_audit(app: &TestApp, run_id: i64) -> Vec<(String, Option<i64>, Option<i64>)> {
    sqlx::query_as(
        "SELECT action, actor_user_id, tenant_id FROM audit_log WHERE target = $1 ORDER BY id",
    )
    .bind(format!("run:{run_id}"))
    .fetch_all(app.db.pool())
    .await
    .unwrap()
}

/// A cron'd `sync-inventory` while a member's "Sync from Intune" is queued lists the tenant
/// once: the command joins the member's run (the same dedup as the app), sees it to its end and
/// prints its id.
async fn sync_inventory_joins_the_sync_already_queued_for_the_tenant(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    let queued = queue_sync_as(&app, OPERATOR, CONTOSO).await;
    assert!(!queued.reused);

    let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("run {} (already queued) completed", queued.run_id)),
        "{out}"
    );
    let runs = sync_runs(&app, CONTOSO).await;
    assert_eq!(runs.len(), 1, "no second sync of the tenant: {runs:?}");
    let (id, status, initiated_by, summary, _) = &runs[0];
    assert_eq!((*id, status.as_str()), (queued.run_id, "completed"));
    assert!(initiated_by.is_some(), "still the member's run");
    assert_eq!(
        summary.as_deref(),
        Some(format!("{SIM_POLICIES} added, 0 updated, 0 unchanged, 0 gone.").as_str())
    );
    assert_eq!(present_policies(&app).await, SIM_POLICIES as i64);
    let audited: Vec<String> = run_audit(&app, queued.run_id)
        .await
        .into_iter()
        .map(|(action, ..)| action)
        .collect();
    assert_eq!(audited, ["run.start", "run.reuse"]);
}

/// With nothing queued and no server up, `sync-inventory` still syncs, and as a run: queued
/// with no initiator, audited with no actor, executed by the command's own engine to
/// `completed` with its summary and Graph counters; demo tenants are skipped without a run.
async fn sync_inventory_without_a_server_runs_the_sync_as_an_audited_run(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    let (ok, out) = sync_inventory_cli(&app, &sim, &[]).await;
    assert!(ok, "{out}");
    let runs = sync_runs(&app, CONTOSO).await;
    assert_eq!(runs.len(), 1, "{runs:?}\n{out}");
    let (run_id, status, initiated_by, summary, graph_requests) = runs[0].clone();
    assert_eq!(status, "completed", "{out}");
    assert_eq!(initiated_by, None, "no member started it");
    assert_eq!(
        summary.as_deref(),
        Some(format!("{SIM_POLICIES} added, 0 updated, 0 unchanged, 0 gone.").as_str())
    );
    assert!(graph_requests > 0, "the run counted its Graph requests");
    assert!(
        out.contains(&format!("run {run_id} completed: {SIM_POLICIES} added")),
        "{out}"
    );
    assert!(out.contains("skipped, a demo tenant"), "{out}");
    assert!(sync_runs(&app, FABRIKAM).await.is_empty());
    assert_eq!(present_policies(&app).await, SIM_POLICIES as i64);
    let contoso: i64 = sqlx::query_scalar("SELECT id FROM tenants WHERE external_id = $1")
        .bind(CONTOSO)
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(
        run_audit(&app, run_id).await,
        [("run.start".to_owned(), None, Some(contoso))]
    );

    // Run again: a new run, which finds the inventory unchanged.
    let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
    assert!(ok, "{out}");
    let runs = sync_runs(&app, CONTOSO).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(
        runs[1].3.as_deref(),
        Some(format!("0 added, 0 updated, {SIM_POLICIES} unchanged, 0 gone.").as_str())
    );
}

/// A member's queued sync of another tenant is not the command's: `sync-inventory --tenant
/// Contoso` with no server up executes only the run it queued, so Fabrikam's (a demo tenant,
/// whose secret only `serve --demo` has) stays queued for a server, unclaimed, and its member
/// hears nothing.
async fn sync_inventory_leaves_other_tenants_queued_runs_alone(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    let fabrikam = queue_sync_as(&app, ADMIN, FABRIKAM).await;
    let notifications = |app: &TestApp| {
        let pool = app.db.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM notifications")
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let before = notifications(&app).await;

    let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
    assert!(ok, "{out}");
    assert_eq!(sync_runs(&app, CONTOSO).await[0].1, "completed", "{out}");
    let row = common::run_row(&app.db, fabrikam.run_id).await;
    assert_eq!(
        (row.status.as_str(), row.attempt, row.lease_owner.as_str()),
        ("pending", 0, ""),
        "{out}"
    );
    assert_eq!(
        notifications(&app).await,
        before,
        "no one was told of a failure"
    );
}

/// While another live instance serves the database (here: its instance lock, held by the
/// test), the command queues its sync and leaves it to that instance rather than claiming it;
/// once no instance is left, the command executes it itself.
async fn sync_inventory_leaves_its_run_to_a_live_instance(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    let serving = tenantatlas::server::engine::instance::InstanceLock::acquire(&app.db, "serving")
        .await
        .unwrap();
    let cli = start_sync_inventory(&app, &sim, &["--tenant", CONTOSO]);
    let queued_by = Instant::now() + Duration::from_secs(30);
    let run_id = loop {
        if let Some(run) = sync_runs(&app, CONTOSO).await.first() {
            break run.0;
        }
        assert!(Instant::now() < queued_by, "the command queued no sync");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Several of the command's looks at the instances.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let row = common::run_row(&app.db, run_id).await;
    assert_eq!(
        (row.status.as_str(), row.attempt),
        ("pending", 0),
        "the run is the live instance's to claim"
    );

    // A restart (a deploy): the instance is gone for a moment. The command does not take the
    // run in that gap; only once no instance came back for a while does it work on it itself.
    drop(serving);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let row = common::run_row(&app.db, run_id).await;
    assert_eq!(
        (row.status.as_str(), row.attempt),
        ("pending", 0),
        "left for the restarted instance"
    );
    let (ok, out) = cli.await.unwrap();
    assert!(ok, "{out}");
    let row = common::run_row(&app.db, run_id).await;
    assert_eq!(row.status, "completed", "{out}");
    assert!(row.lease_owner.contains("-cli"), "{out}");
}

/// How late the slow simulator answers every Graph request in
/// [`sync_inventory_of_another_tenant_does_not_wait_for_a_running_invocation`]: the least time
/// the first invocation still works once its run is claimed.
const SLOW_GRAPH_MS: u64 = 20_000;

/// Two cron'd invocations for different tenants, with no server up. The first syncs Contoso
/// through a slow Graph (every answer 20 s late), so its engine is live and busy; the second,
/// for Fabrikam through a fast one, runs an engine of its own at once and finishes while the
/// first still works: the first's engine claims only its own invocation's runs, so it is no
/// live instance to leave Fabrikam's run to (it was taken for one, and the second waited until
/// the first had ended, and 10 s more). A serving instance that starts meanwhile does not take
/// the first's run either: its owner's lock is alive, whatever marks it as a command's.
async fn sync_inventory_of_another_tenant_does_not_wait_for_a_running_invocation(app: TestApp) {
    use tenantatlas::domain::run::Lane;
    use tenantatlas::server::engine::instance::InstanceLock;
    use tenantatlas::server::graph::{GraphAccess, GraphClient, GraphConfig, SecretResolver};

    let slow = contoso_on_a_simulator(&app).await;
    common::answer_after(&slow, SLOW_GRAPH_MS);
    let fast = GraphSim::start(SimConfig {
        policies_per_tenant: SIM_POLICIES,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    sqlx::query(
        "UPDATE tenants SET graph_client_id = 'tenantatlas-test', \
         graph_secret_ref = 'env:TA_CLI_TEST_SECRET' WHERE external_id = $1",
    )
    .bind(FABRIKAM)
    .execute(app.db.pool())
    .await
    .unwrap();

    let first = start_sync_inventory(&app, &slow, &["--tenant", CONTOSO]);
    let claimed_by = Instant::now() + Duration::from_secs(30);
    let contoso_run = loop {
        let runs = sync_runs(&app, CONTOSO).await;
        if let Some((id, "running", ..)) = runs.first().map(|run| (run.0, run.1.as_str())) {
            break id;
        }
        assert!(
            Instant::now() < claimed_by,
            "the first invocation's engine never claimed its run: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let first_owner = common::run_row(&app.db, contoso_run).await.lease_owner;
    assert!(first_owner.contains("-cli"), "{first_owner}");

    // Well within the first's next Graph answer: it cannot have ended by then.
    let second = tokio::time::timeout(
        Duration::from_millis(SLOW_GRAPH_MS * 3 / 4),
        start_sync_inventory(&app, &fast, &["--tenant", FABRIKAM]),
    )
    .await
    .expect("the second invocation waited for the first one's engine")
    .unwrap();
    let (ok, out) = second;
    assert!(ok, "{out}");
    assert!(!first.is_finished(), "the first invocation still works");
    let fabrikam = sync_runs(&app, FABRIKAM).await;
    assert_eq!(fabrikam.len(), 1, "{fabrikam:?}\n{out}");
    assert_eq!(fabrikam[0].1, "completed", "{out}");
    let second_owner = common::run_row(&app.db, fabrikam[0].0).await.lease_owner;
    assert!(second_owner.contains("-cli"), "{second_owner}");
    assert_ne!(second_owner, first_owner, "an engine of its own");

    // A serving instance (its lock and worker, with every operation's handler) finds nothing
    // to claim: Contoso's run is a live owner's.
    let serving = InstanceLock::acquire(&app.db, "serving").await.unwrap();
    let worker = tenantatlas::server::runs_worker(
        &app.db,
        GraphAccess {
            client: GraphClient::new(GraphConfig::new(&slow.login_url, &slow.graph_url))
                .expect("the client builds"),
            secrets: SecretResolver::default(),
        },
    )
    .as_instance(&serving);
    for lane in Lane::ALL {
        let claimed = worker.claim(lane).await.unwrap();
        assert_eq!(
            claimed.map(|claimed| claimed.run.id),
            None,
            "a live command's run taken over in the {lane:?} lane"
        );
    }
    let row = common::run_row(&app.db, contoso_run).await;
    assert_eq!(
        (row.status.as_str(), row.attempt, row.lease_owner.as_str()),
        ("running", 1, first_owner.as_str())
    );
    drop(serving);

    common::answer_after(&slow, 0);
    let (ok, out) = first.await.unwrap();
    assert!(ok, "{out}");
    let row = common::run_row(&app.db, contoso_run).await;
    assert_eq!(
        (row.status.as_str(), row.attempt),
        ("completed", 1),
        "{out}"
    );
}

/// The names of the instance lock files and CLI marker files next to the SQLite database
/// (none on PostgreSQL), sorted.
fn lock_files(app: &TestApp) -> Vec<String> {
    let Some(file) = app.db.sqlite_file() else {
        return Vec::new();
    };
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut names: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|entry| {
            entry.ends_with(".lock")
                && (entry.starts_with(&format!("{name}.instance-"))
                    || entry.starts_with(&format!("{name}.cli-")))
        })
        .collect();
    names.sort();
    names
}

/// The lock files of `sync-inventory` engines with the identities `ids`, as [`lock_files`]
/// lists them (an instance lock and a marker each; none on PostgreSQL).
fn cli_lock_files(app: &TestApp, ids: &[&str]) -> Vec<String> {
    let Some(file) = app.db.sqlite_file() else {
        return Vec::new();
    };
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut names: Vec<String> = ids
        .iter()
        .flat_map(|id| {
            let safe: String = id
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            ["instance", "cli"].map(|kind| format!("{name}.{kind}-{safe}.lock"))
        })
        .collect();
    names.sort();
    names
}

/// Invocations that overlap a running one (here the test holds its engine's identity,
/// `HOST-cli`, as a running invocation does) take, on SQLite, the next free one of a few fixed
/// identities, not one per process (on PostgreSQL, where a lock is a session's and no file is
/// left, one per process: three invocations, three identities): one after another they all run as `HOST-cli-2`, so on SQLite the lock
/// files next to the database stay those two identities' however many invocations overlapped
/// (one identity per process left two files per invocation behind, which every look at the
/// live instances then opened and locked). Once the running one is gone, the next takes
/// `HOST-cli` again.
async fn sync_inventory_overlapping_invocations_reuse_their_identities(app: TestApp) {
    use tenantatlas::server::engine::instance::{host_name, InstanceLock};

    let sim = contoso_on_a_simulator(&app).await;
    let shared = format!("{}-cli", host_name());
    let overlapping = format!("{shared}-2");
    let running = InstanceLock::acquire_cli(&app.db, &shared).await.unwrap();
    for _ in 0..3 {
        let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
        assert!(ok, "{out}");
    }
    assert_eq!(
        lock_files(&app),
        cli_lock_files(&app, &[&shared, &overlapping])
    );
    let mut owners = Vec::new();
    for (id, status, ..) in sync_runs(&app, CONTOSO).await {
        assert_eq!(status, "completed");
        owners.push(common::run_row(&app.db, id).await.lease_owner);
    }
    let postgres = app.db.backend() == tenantatlas::server::db::Backend::Postgres;
    if postgres {
        // One identity per process (a lock on a session may be lost while its process lives):
        // three invocations, three identities, none of them the held one.
        let mut distinct = owners.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "{owners:?}");
        let per_process = format!("{shared}-");
        assert!(
            owners
                .iter()
                .all(|owner| owner.starts_with(&per_process) && *owner != overlapping),
            "{owners:?}"
        );
    } else {
        assert_eq!(owners, [overlapping.as_str(); 3]);
    }

    drop(running);
    let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
    assert!(ok, "{out}");
    let last = sync_runs(&app, CONTOSO).await.last().unwrap().0;
    let owner = common::run_row(&app.db, last).await.lease_owner;
    if postgres {
        assert_ne!(owner, shared);
    } else {
        assert_eq!(owner, shared);
    }
    assert_eq!(
        lock_files(&app),
        cli_lock_files(&app, &[&shared, &overlapping])
    );
}

/// On SQLite, while every identity a `sync-inventory` engine may take on this host is held (16
/// overlapping invocations), one more says so and ends with an error; its run stays queued for
/// a server. On PostgreSQL those identities are not its own (one per process): it runs.
async fn sync_inventory_refuses_an_engine_when_every_identity_is_taken(app: TestApp) {
    use tenantatlas::server::engine::instance::{host_name, InstanceLock};

    let sim = contoso_on_a_simulator(&app).await;
    let shared = format!("{}-cli", host_name());
    let mut running = vec![InstanceLock::acquire_cli(&app.db, &shared).await.unwrap()];
    for n in 2..=16 {
        let id = format!("{shared}-{n}");
        running.push(InstanceLock::acquire_cli(&app.db, &id).await.unwrap());
    }
    let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
    let runs = sync_runs(&app, CONTOSO).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    if app.db.backend() == tenantatlas::server::db::Backend::Postgres {
        // On PostgreSQL each invocation has an identity of its own: nothing is in its way.
        assert!(ok, "{out}");
        assert_eq!(runs[0].1, "completed", "{out}");
    } else {
        assert!(!ok, "{out}");
        assert!(
            out.contains("16 sync-inventory invocations already run their engines on this host"),
            "{out}"
        );
        assert!(out.contains(&format!("{shared}-16")), "{out}");
        assert_eq!(runs[0].1, "pending", "{out}");
    }
    drop(running);
}

/// A tenant whose secret this process cannot load (here: an environment variable it does not
/// have, which a server may) is reported as failed, and no run is queued for it: the command
/// does not fail a run that a server could have done.
async fn sync_inventory_queues_nothing_for_a_secret_it_cannot_load(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    sqlx::query(
        "UPDATE tenants SET graph_secret_ref = 'env:TA_CLI_TEST_UNSET' WHERE external_id = $1",
    )
    .bind(CONTOSO)
    .execute(app.db.pool())
    .await
    .unwrap();
    let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("failed: credentials:"), "{out}");
    assert!(out.contains("TA_CLI_TEST_UNSET"), "{out}");
    assert!(sync_runs(&app, CONTOSO).await.is_empty(), "{out}");
}

/// `sync-inventory --tenant` of a disconnected tenant fails and says so, and queues no run for
/// it (nor audits one): a disconnected tenant starts no run, as the app refuses it and as the
/// command without --tenant leaves it out.
async fn sync_inventory_queues_nothing_for_a_disconnected_tenant(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    let owner = app.sign_in(ADMIN).await;
    app.disconnect_tenant(&owner, CONTOSO)
        .await
        .expect("the owner disconnects the tenant");
    let runs_before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    let (ok, out) = sync_inventory_cli(&app, &sim, &["--tenant", CONTOSO]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("disconnected, not synced"), "{out}");
    let runs_after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM runs")
        .fetch_one(app.db.pool())
        .await
        .unwrap();
    assert_eq!(runs_after, runs_before, "a run was queued: {out}");
    let started: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action IN ('run.start', 'run.reuse')",
    )
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    assert_eq!(started, 0, "a run start was audited: {out}");
    assert_eq!(sim.counters().requests.len(), 0, "Graph was called: {out}");
}

/// A bulk run a stopped server left `running` (SIGTERM gave its lease back; a crash lets it
/// expire) holds the tenant's bulk lane until `serve` takes it over: the command's own engine
/// handles syncs alone, so its sync would wait behind it forever, silently. It says which run
/// stands in the way and fails instead, withdraws the sync it queued, and leaves that run as
/// it was, for `serve` to resume.
async fn sync_inventory_does_not_wait_forever_behind_a_run_a_stopped_server_left(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Left running").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 2).await;
    let left = common::submit(&app, &operator, CONTOSO, set, &ids).await;
    sqlx::query(
        "UPDATE runs SET status = 'running', lane = 'bulk', lease_owner = 'gone', \
         lease_expires_at = 0, attempt = 1, started_at = 1 WHERE id = $1",
    )
    .bind(left)
    .execute(app.db.pool())
    .await
    .unwrap();

    let (ok, out) =
        sync_inventory_within(&app, &sim, &["--tenant", CONTOSO], Duration::from_secs(30)).await;
    assert_eq!(ok, Some(false), "it must end, and fail: {out}");
    assert!(
        out.contains(&format!(
            "run {left} was left unfinished by a stopped server; start `serve` to finish it"
        )),
        "{out}"
    );
    let runs = sync_runs(&app, CONTOSO).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].1, "cancelled", "nothing left queued: {out}");
    assert!(
        out.contains(&format!("run {} withdrawn", runs[0].0)),
        "{out}"
    );
    let row = common::run_row(&app.db, left).await;
    assert_eq!(
        (row.status.as_str(), row.attempt, row.lease_owner.as_str()),
        ("running", 1, "gone"),
        "the run left unfinished is serve's to resume"
    );
}

/// A server that comes up while the command's own engine waits behind a run left unfinished
/// takes that run over itself (its lease being over says nothing more: a live server's run is
/// so between its polls, or while it restarts): the command keeps its sync queued and waits as
/// long as any instance is live, and gives up on it only once none is, and it stayed stranded.
async fn sync_inventory_gives_nothing_up_while_a_server_is_live(app: TestApp) {
    use tenantatlas::server::engine::instance::{InstanceLock, CLI_MARK_SPACE};
    let sim = contoso_on_a_simulator(&app).await;
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Left running").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 2).await;
    let left = common::submit(&app, &operator, CONTOSO, set, &ids).await;
    sqlx::query(
        "UPDATE runs SET status = 'running', lane = 'bulk', lease_owner = 'gone', \
         lease_expires_at = 0, attempt = 1, started_at = 1 WHERE id = $1",
    )
    .bind(left)
    .execute(app.db.pool())
    .await
    .unwrap();
    let command =
        sync_inventory_within(&app, &sim, &["--tenant", CONTOSO], Duration::from_secs(40));
    let engine_started = async {
        loop {
            let started = match app.db.sqlite_file() {
                Some(file) => std::fs::read_dir(file.parent().unwrap())
                    .unwrap()
                    .filter_map(Result::ok)
                    .any(|entry| entry.file_name().to_string_lossy().contains(".cli-")),
                None => sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' \
                     AND granted AND classid = $1)",
                )
                .bind(CLI_MARK_SPACE)
                .fetch_one(app.db.pool())
                .await
                .unwrap(),
            };
            if started {
                // A server comes up while the command's engine waits behind the run.
                let server = InstanceLock::acquire(&app.db, "came-up").await.unwrap();
                tokio::time::sleep(Duration::from_secs(5)).await;
                let runs = sync_runs(&app, CONTOSO).await;
                assert_eq!(runs.len(), 1, "{runs:?}");
                assert_eq!(runs[0].1, "pending", "kept queued while a server is live");
                drop(server);
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let ((ok, out), ()) = tokio::join!(command, engine_started);
    assert_eq!(ok, Some(false), "it ends once no server is live: {out}");
    let runs = sync_runs(&app, CONTOSO).await;
    assert_eq!(runs[0].1, "cancelled", "then withdrawn: {out}");
    assert!(
        out.contains(&format!("run {} withdrawn", runs[0].0)),
        "{out}"
    );
}

/// Two overlapping invocations behind a run a stopped server left: A queues the sync, B joins
/// it. Neither withdraws it: B was told it stays queued (and a member who joined it would see
/// it cancelled for nothing), so both say it is left queued, and it is.
async fn sync_inventory_leaves_queued_a_stranded_sync_another_invocation_joined(app: TestApp) {
    let sim = contoso_on_a_simulator(&app).await;
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Left running").await;
    let ids = common::insert_policies(&app.db, CONTOSO, 2).await;
    let left = common::submit(&app, &operator, CONTOSO, set, &ids).await;
    sqlx::query(
        "UPDATE runs SET status = 'running', lane = 'bulk', lease_owner = 'gone', \
         lease_expires_at = 0, attempt = 1, started_at = 1 WHERE id = $1",
    )
    .bind(left)
    .execute(app.db.pool())
    .await
    .unwrap();
    let a = sync_inventory_within(&app, &sim, &["--tenant", CONTOSO], Duration::from_secs(40));
    let b = async {
        // B starts once A's sync is queued.
        while sync_runs(&app, CONTOSO).await.is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sync_inventory_within(&app, &sim, &["--tenant", CONTOSO], Duration::from_secs(40)).await
    };
    let ((a_ok, a_out), (b_ok, b_out)) = tokio::join!(a, b);
    assert_eq!((a_ok, b_ok), (Some(false), Some(false)), "{a_out}\n{b_out}");
    let runs = sync_runs(&app, CONTOSO).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    let sync = runs[0].0;
    assert_eq!(
        runs[0].1, "pending",
        "left queued for serve: {a_out}\n{b_out}"
    );
    assert!(
        b_out.contains(&format!("run {sync} (already queued) left queued")),
        "{b_out}"
    );
    assert!(
        a_out.contains(&format!("run {sync} left queued")),
        "{a_out}"
    );
}
