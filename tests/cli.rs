//! The admin CLI: `create-user` bootstraps an account and a membership without SQL, reads the
//! password from standard input only, and refuses bad input with a clear message.

#![cfg(feature = "ssr")]

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{TempDir, CONTOSO};
use tenantatlas::server::{auth::password, db::Db, seed};

fn create_user(url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantatlas"))
        .args(["--database-url", url, "--log", "warn", "create-user"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the binary");
    // The binary may refuse its arguments before it reads standard input.
    let _ = child
        .stdin
        .take()
        .map(|mut pipe| pipe.write_all(stdin.as_bytes()));
    child.wait_with_output().unwrap()
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
