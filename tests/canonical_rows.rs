//! The data step after the migrations (`server::db::canonical_rows`): addresses and names stored
//! before they were spelled canonically on every write are respelled when the app migrates; a
//! respelling that two rows would share is left undone; a second run changes nothing.

use crate::common;

use common::{TestApp, ADMIN, CONTOSO};
use tenantatlas::server::db::canonical_rows::canonicalise_stored_rows;
use tenantatlas::server::db::Db;
use tenantatlas::server::seed;

both_backends!(TestApp: stored_spellings_become_canonical_when_the_app_migrates, a_canonical_database_is_only_read);

/// An account's address as stored before `Email::parse` composed it ("andre" + U+0301).
const DECOMPOSED: &str = "andre\u{301}@example.org";
/// The same address as typed and stored now ("andr" + U+00E9).
const COMPOSED: &str = "andr\u{e9}@example.org";

async fn insert_user(db: &Db, email: &str, display_name: &str, password_hash: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO users (email, display_name, password_hash, created_at) \
         VALUES ($1, $2, $3, 0) RETURNING id",
    )
    .bind(email)
    .bind(display_name)
    .bind(password_hash)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

async fn insert_set(db: &Db, tenant_id: i64, name: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, 0) RETURNING id",
    )
    .bind(tenant_id)
    .bind(name)
    .fetch_one(db.pool())
    .await
    .unwrap()
}

async fn text(db: &Db, table: &str, column: &str, id: i64) -> String {
    sqlx::query_scalar(&format!("SELECT {column} FROM {table} WHERE id = $1"))
        .bind(id)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// Every text column the step respells, by table and id: what "changes nothing" compares.
async fn snapshot(db: &Db) -> Vec<(String, i64, String)> {
    let mut all = Vec::new();
    for (table, column) in [
        ("users", "email"),
        ("users", "display_name"),
        ("invitations", "email"),
        ("tenants", "display_name"),
        ("backup_sets", "name"),
    ] {
        let rows: Vec<(i64, String)> =
            sqlx::query_as(&format!("SELECT id, {column} FROM {table} ORDER BY id"))
                .fetch_all(db.pool())
                .await
                .unwrap();
        all.extend(
            rows.into_iter()
                .map(|(id, value)| (format!("{table}.{column}"), id, value)),
        );
    }
    all
}

async fn sign_in_status(app: &TestApp, email: &str) -> u16 {
    app.call(
        "auth/sign-in",
        &[
            ("email", email),
            ("password", seed::DEMO_PASSWORD),
            ("next", "/"),
        ],
    )
    .await
    .status()
    .as_u16()
}

async fn stored_spellings_become_canonical_when_the_app_migrates(app: TestApp) {
    let db = &app.db;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = $1")
        .bind(ADMIN)
        .fetch_one(db.pool())
        .await
        .unwrap();
    let contoso = common::tenant_id(db, CONTOSO).await;

    // Rows as an older version stored them.
    let andre = insert_user(db, DECOMPOSED, "Andre\u{301}  Dupont", &hash).await;
    // Two accounts that differ only in composition: the composed one keeps its address, the
    // decomposed one cannot take it.
    let zoe_composed = insert_user(db, "zo\u{eb}@example.org", "Zo\u{eb}", &hash).await;
    let zoe_decomposed = insert_user(db, "zoe\u{308}@example.org", "Zoe\u{308}", &hash).await;
    let q1 = insert_set(db, contoso, "Q1  baseline").await;
    // Two sets of one tenant whose names become equal: the second stays as it is.
    let q2 = insert_set(db, contoso, "Q2 baseline").await;
    let q2_spaced = insert_set(db, contoso, "Q2\u{A0} baseline ").await;
    let northwind: i64 = sqlx::query_scalar(
        "INSERT INTO tenants (external_id, display_name, created_at) \
         VALUES ('northwind.example', $1, 0) RETURNING id",
    )
    .bind("Northwind\u{A0}Traders")
    .fetch_one(db.pool())
    .await
    .unwrap();
    let invitation: i64 = sqlx::query_scalar(
        "INSERT INTO invitations (tenant_id, email, role, token_hash, created_at, expires_at) \
         VALUES ($1, $2, 'readonly', 'not-a-real-token-hash', 0, 4102444800000) RETURNING id",
    )
    .bind(contoso)
    .bind("Ren\u{65}\u{301}e@Example.org")
    .fetch_one(db.pool())
    .await
    .unwrap();

    // Before the step, the composed address (what the sign-in form now looks up) finds nothing.
    assert_eq!(sign_in_status(&app, COMPOSED).await, 401);

    db.migrate()
        .await
        .expect("the data step never fails the start");

    assert_eq!(text(db, "users", "email", andre).await, COMPOSED);
    assert_eq!(
        text(db, "users", "display_name", andre).await,
        "Andr\u{e9} Dupont"
    );
    assert_eq!(
        text(db, "users", "email", zoe_composed).await,
        "zo\u{eb}@example.org"
    );
    assert_eq!(
        text(db, "users", "email", zoe_decomposed).await,
        "zoe\u{308}@example.org",
        "the colliding account keeps its stored address"
    );
    assert_eq!(
        text(db, "users", "display_name", zoe_decomposed).await,
        "Zo\u{eb}",
        "its display name, unique nowhere, is respelled"
    );
    assert_eq!(text(db, "backup_sets", "name", q1).await, "Q1 baseline");
    assert_eq!(text(db, "backup_sets", "name", q2).await, "Q2 baseline");
    assert_eq!(
        text(db, "backup_sets", "name", q2_spaced).await,
        "Q2\u{A0} baseline ",
        "the colliding set keeps its stored name"
    );
    assert_eq!(
        text(db, "tenants", "display_name", northwind).await,
        "Northwind Traders"
    );
    assert_eq!(
        text(db, "invitations", "email", invitation).await,
        "ren\u{e9}e@example.org"
    );

    // A second run (through the migrate the app runs, and the step alone) changes nothing.
    let before = snapshot(db).await;
    db.migrate().await.unwrap();
    assert_eq!(snapshot(db).await, before);
    assert_eq!(canonicalise_stored_rows(db).await.unwrap(), 0);
    assert_eq!(snapshot(db).await, before);

    // The account signs in with the address as typed now; "Q1 baseline" is taken.
    app.sign_in(COMPOSED).await;
    let again = sqlx::query(
        "INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, 'Q1 baseline', 0)",
    )
    .bind(contoso)
    .execute(db.pool())
    .await;
    assert!(
        again.is_err_and(|e| tenantatlas::server::db::is_unique_violation(&e)),
        "a second set that reads the same is refused"
    );
}

async fn a_canonical_database_is_only_read(app: TestApp) {
    let before = snapshot(&app.db).await;
    assert_eq!(canonicalise_stored_rows(&app.db).await.unwrap(), 0);
    assert_eq!(snapshot(&app.db).await, before);
}
