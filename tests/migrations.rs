//! The schema: migrations apply to empty databases, and the rules SPEC.md puts in the database
//! (one active run per idempotency key, no row that mixes tenants) hold on both engines.

#![cfg(feature = "ssr")]

mod common;

use common::TestDb;
use sqlx::Row;
use tenantatlas::server::db::is_unique_violation;

both_backends!(TestDb: migrations_apply_and_create_every_table, migrations_are_idempotent, active_runs_are_unique_per_key_until_terminal, one_bulk_run_per_tenant_is_active, rows_cannot_mix_tenants, run_counters_must_add_up);

const TABLES: [&str; 11] = [
    "tenants",
    "users",
    "memberships",
    "policies",
    "policy_snapshots",
    "backup_sets",
    "backup_items",
    "runs",
    "run_items",
    "notifications",
    "audit_log",
];

async fn migrations_apply_and_create_every_table(t: TestDb) {
    for table in TABLES {
        assert_eq!(
            common::count(&t.db, table).await,
            0,
            "{table} exists and is empty"
        );
    }
}

async fn migrations_are_idempotent(t: TestDb) {
    t.db.migrate().await.expect("a second migrate is a no-op");
    let applied: i64 = sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(t.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    // Every migration once (both engines have the same numbered files).
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count();
    assert_eq!(applied, files as i64);
    assert!(files >= 6);
}

async fn insert_tenant(t: &TestDb, external_id: &str) -> i64 {
    sqlx::query("INSERT INTO tenants (external_id, display_name, created_at) VALUES ($1, $2, 0) RETURNING id")
        .bind(external_id)
        .bind(external_id)
        .fetch_one(t.db.pool())
        .await
        .unwrap()
        .try_get("id")
        .unwrap()
}

async fn insert_run(
    t: &TestDb,
    tenant_id: i64,
    key: &str,
    status: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query(
        "INSERT INTO runs (tenant_id, operation_type, resource, action, target_id, input, \
         idempotency_key, status, total_items, created_at) \
         VALUES ($1, 'backup_set.add_policies', 'backup_set', 'add_policies', 1, '{}', $2, $3, 0, 0) \
         RETURNING id",
    )
    .bind(tenant_id)
    .bind(key)
    .bind(status)
    .fetch_one(t.db.pool())
    .await
    .map(|row| row.try_get("id").unwrap())
}

async fn active_runs_are_unique_per_key_until_terminal(t: TestDb) {
    let tenant = insert_tenant(&t, "t1").await;
    let other_tenant = insert_tenant(&t, "t2").await;
    let first = insert_run(&t, tenant, "key-a", "pending")
        .await
        .expect("first active run");

    for status in ["pending", "running"] {
        let err = insert_run(&t, tenant, "key-a", status)
            .await
            .expect_err("second active run with the same key");
        assert!(
            is_unique_violation(&err),
            "expected a unique violation, got {err}"
        );
    }
    // Same key in another tenant, or another key in the same tenant: allowed.
    insert_run(&t, other_tenant, "key-a", "pending")
        .await
        .expect("other tenant");
    insert_run(&t, tenant, "key-b", "running")
        .await
        .expect("other key");
    // Terminal runs never block.
    insert_run(&t, tenant, "key-a", "completed")
        .await
        .expect("terminal run with the same key");

    sqlx::query("UPDATE runs SET status = 'completed' WHERE id = $1")
        .bind(first)
        .execute(t.db.pool())
        .await
        .unwrap();
    insert_run(&t, tenant, "key-a", "pending")
        .await
        .expect("a new run once the first is terminal");
}

async fn insert_interactive_run(t: &TestDb, tenant_id: i64, key: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO runs (tenant_id, operation_type, lane, resource, action, target_id, input, \
         idempotency_key, status, total_items, created_at) \
         VALUES ($1, 'tenant.check_connection', 'interactive', 'tenant', 'check_connection', 1, '[]', \
         $2, 'running', 0, 0) RETURNING id",
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_one(t.db.pool())
    .await
}

async fn one_bulk_run_per_tenant_is_active(t: TestDb) {
    let tenant = insert_tenant(&t, "t1").await;
    let other_tenant = insert_tenant(&t, "t2").await;
    let running = insert_run(&t, tenant, "k1", "running").await.unwrap();
    // Runs go in the bulk lane unless they say otherwise.
    let lane: String = sqlx::query_scalar("SELECT lane FROM runs WHERE id = $1")
        .bind(running)
        .fetch_one(t.db.pool())
        .await
        .unwrap();
    assert_eq!(lane, "bulk");
    let second = insert_run(&t, tenant, "k2", "running")
        .await
        .expect_err("a second running bulk run of the tenant");
    assert!(is_unique_violation(&second), "{second}");
    let queued = insert_run(&t, tenant, "k2", "pending").await.unwrap();
    let claim = sqlx::query("UPDATE runs SET status = 'running' WHERE id = $1")
        .bind(queued)
        .execute(t.db.pool())
        .await
        .expect_err("claiming it while the first runs");
    assert!(is_unique_violation(&claim), "{claim}");
    // Another tenant's bulk run and the tenant's interactive runs are not held back.
    insert_run(&t, other_tenant, "k1", "running").await.unwrap();
    insert_interactive_run(&t, tenant, "i1").await.unwrap();
    insert_interactive_run(&t, tenant, "i2").await.unwrap();
    let bad_lane = sqlx::query("UPDATE runs SET lane = 'express' WHERE id = $1")
        .bind(queued)
        .execute(t.db.pool())
        .await;
    assert!(bad_lane.is_err(), "an unknown lane was accepted");
    // Once the first ends, the queued one may run.
    sqlx::query("UPDATE runs SET status = 'completed' WHERE id = $1")
        .bind(running)
        .execute(t.db.pool())
        .await
        .unwrap();
    sqlx::query("UPDATE runs SET status = 'running' WHERE id = $1")
        .bind(queued)
        .execute(t.db.pool())
        .await
        .expect("the next bulk run of the tenant");
}

async fn rows_cannot_mix_tenants(t: TestDb) {
    let a = insert_tenant(&t, "ta").await;
    let b = insert_tenant(&t, "tb").await;
    let policy_of_a: i64 = sqlx::query(
        "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
         VALUES ($1, 'g1', 'compliance', 'P', 'android', 0) RETURNING id",
    )
    .bind(a)
    .fetch_one(t.db.pool())
    .await
    .unwrap()
    .try_get("id")
    .unwrap();
    // A snapshot that claims tenant b for a policy of tenant a violates the composite key.
    let mixed = sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         VALUES ($1, $2, 'h', '{}', 0)",
    )
    .bind(b)
    .bind(policy_of_a)
    .execute(t.db.pool())
    .await;
    assert!(mixed.is_err(), "a snapshot mixing tenants was accepted");
    sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         VALUES ($1, $2, 'h', '{}', 0)",
    )
    .bind(a)
    .bind(policy_of_a)
    .execute(t.db.pool())
    .await
    .expect("a snapshot in the policy's own tenant");
}

async fn run_counters_must_add_up(t: TestDb) {
    let tenant = insert_tenant(&t, "tc").await;
    let run = insert_run(&t, tenant, "k", "running").await.unwrap();
    let set = |processed: i64, succeeded: i64| {
        sqlx::query(
            "UPDATE runs SET total_items = 2, processed_items = $1, succeeded = $2 WHERE id = $3",
        )
        .bind(processed)
        .bind(succeeded)
        .bind(run)
        .execute(t.db.pool())
    };
    assert!(
        set(1, 0).await.is_err(),
        "processed_items without an outcome was accepted"
    );
    assert!(
        set(3, 3).await.is_err(),
        "more processed than total was accepted"
    );
    set(2, 2).await.expect("consistent counters");
}
