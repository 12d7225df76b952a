//! The engine's batch statements reach their rows through indexes on PostgreSQL, also on tables
//! that grew since they were last analysed: a new database, a new tenant's first backup, a new
//! run's items. Without statistics for them, PostgreSQL estimates such a run or tenant at a row
//! or two, and the statements that named them as indexable constants walked every pending item of
//! the run, or every version of the tenant, for each batch (a 10,000-item run was quadratic:
//! `benches/runs.rs`, `docs/benchmarks.md`).
//!
//! Each test grows a table after `ANALYZE` saw it nearly empty, writes one batch as the worker
//! does (in `Db::begin_batch`), and reads the transaction's own table counters
//! (`pg_stat_xact_user_tables`: rows read by sequential and index scans) to check that the batch
//! read about as many rows as it holds, not the table.

use crate::common;

use serde_json::json;
use sqlx::Row;

use common::{TestDb, CONTOSO};
use tenantatlas::server::db::Db;
use tenantatlas::server::engine::operation::Recorded;
use tenantatlas::server::engine::worker::{outcomes_sql, PENDING_ONLY};
use tenantatlas::server::graph::{CaptureOptions, PolicyType, Snapshot};
use tenantatlas::server::seed;
use tenantatlas::server::snapshots::store_snapshots;

/// Rows in the grown table; a batch of [`BATCH`] must read far fewer.
const GROWN: i64 = 3_000;
const BATCH: usize = 64;

/// Rows this transaction has read from `table` by sequential and index scans.
async fn rows_read(tx: &mut sqlx::Transaction<'static, sqlx::Any>, table: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT (COALESCE(seq_tup_read, 0) + COALESCE(idx_tup_fetch, 0))::bigint \
         FROM pg_stat_xact_user_tables WHERE relname = $1",
    )
    .bind(table)
    .fetch_one(&mut **tx)
    .await
    .unwrap()
}

/// The demo tenant with `GROWN` more policies, inserted after `ANALYZE` of the emptier tables;
/// the tenant's id and the new policies' ids.
async fn grown_tenant(db: &Db) -> (i64, Vec<i64>) {
    seed::seed_demo(db).await.unwrap();
    sqlx::query("ANALYZE").execute(db.pool()).await.unwrap();
    let tenant = common::tenant_id(db, CONTOSO).await;
    let policies: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
         SELECT $1, 'grown-' || g, 'compliance', 'Grown ' || g, 'android', 0 \
         FROM generate_series(1, $2::bigint) g RETURNING id",
    )
    .bind(tenant)
    .bind(GROWN)
    .fetch_all(db.pool())
    .await
    .unwrap();
    let mut policies = policies;
    policies.sort_unstable();
    (tenant, policies)
}

/// A batch of outcomes written to a run of `GROWN` pending items reads its own items only.
#[tokio::test]
async fn postgres_a_batch_of_outcomes_reads_its_items_not_the_run() {
    let t = TestDb::create(common::Backend::Postgres).await;
    let (tenant, _) = grown_tenant(&t.db).await;
    let run: i64 = sqlx::query_scalar(
        "INSERT INTO runs (tenant_id, operation_type, lane, resource, action, target_id, \
         input, idempotency_key, status, total_items, created_at) \
         VALUES ($1, 'backup_set.add_policies', 'bulk', 'test', 'plans', 0, '{}', 'plans', \
         'running', $2, 0) RETURNING id",
    )
    .bind(tenant)
    .bind(GROWN)
    .fetch_one(t.db.pool())
    .await
    .unwrap();
    let items: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO run_items (tenant_id, run_id, policy_id) \
         SELECT $1, $2, id FROM policies WHERE tenant_id = $1 AND graph_id LIKE 'grown-%' \
         RETURNING id",
    )
    .bind(tenant)
    .bind(run)
    .fetch_all(t.db.pool())
    .await
    .unwrap();
    assert_eq!(items.len() as i64, GROWN);

    let done = Recorded::succeeded();
    // A batch from the end of the run, as the last ones are (and one from its start).
    for batch in [&items[items.len() - BATCH..], &items[..BATCH]] {
        let mut tx = t.db.begin_batch(false).await.unwrap();
        let before = rows_read(&mut tx, "run_items").await;
        let written = outcomes_sql(run, 1, batch.iter().map(|id| (*id, &done)), PENDING_ONLY)
            .query()
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(written, BATCH as u64);
        let read = rows_read(&mut tx, "run_items").await - before;
        assert!(
            read <= 2 * BATCH as i64,
            "a batch of {BATCH} outcomes read {read} of the run's {GROWN} items"
        );
        tx.commit().await.unwrap();
    }
    // The guard still holds: an item already written is not written again.
    let mut tx = t.db.begin_batch(false).await.unwrap();
    let again = outcomes_sql(
        run,
        2,
        items[..BATCH].iter().map(|id| (*id, &done)),
        PENDING_ONLY,
    )
    .query()
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(again, 0);
    tx.rollback().await.unwrap();
    t.destroy().await;
}

/// Storing a batch of captures for a tenant whose `GROWN` versions came after `ANALYZE` reads
/// the batch's policies' versions only.
#[tokio::test]
async fn postgres_a_batch_of_captures_reads_its_policies_versions_not_the_tenants() {
    let t = TestDb::create(common::Backend::Postgres).await;
    let (tenant, policies) = grown_tenant(&t.db).await;
    let (stored, new) = policies.split_at(policies.len() - BATCH);
    sqlx::query(
        "INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at) \
         SELECT $1, id, md5(id::text) || md5(id::text), '{}', 0 FROM policies \
         WHERE tenant_id = $1 AND graph_id LIKE 'grown-%' AND id <= $2",
    )
    .bind(tenant)
    .bind(stored[stored.len() - 1])
    .execute(t.db.pool())
    .await
    .unwrap();
    let snapshots: Vec<Snapshot> = new
        .iter()
        .map(|id| {
            Snapshot::new(
                PolicyType::Compliance,
                format!("grown-{id}"),
                format!("Grown {id}"),
                &json!({"policyType": "compliance", "policy": {"id": id, "passwordRequired": true}}),
                CaptureOptions::default(),
            )
        })
        .collect();
    let captures: Vec<(i64, &Snapshot)> = new.iter().copied().zip(&snapshots).collect();

    let mut tx = t.db.begin_batch(false).await.unwrap();
    let before = rows_read(&mut tx, "policy_snapshots").await;
    let versions = store_snapshots(&mut tx, tenant, &captures, 1)
        .await
        .unwrap();
    assert_eq!(versions.len(), BATCH);
    assert!(versions.iter().all(|v| v.new_version));
    let read = rows_read(&mut tx, "policy_snapshots").await - before;
    assert!(
        read <= 2 * BATCH as i64,
        "a batch of {BATCH} captures read {read} of the tenant's {} versions",
        stored.len()
    );
    tx.commit().await.unwrap();
    t.destroy().await;
}

/// The lookups of a tenant's cancelled runs whose claim has not let go (the claim's tenant
/// affinity, `Worker::tenant_not_elsewhere`, and the starts' settle check,
/// `runs::start::ensure_cancelled_settled`) go through the small partial index of such runs
/// (migration 0027), not through the tenant's whole history of runs. SQLite's planner, on the
/// statements' shapes.
#[tokio::test]
async fn sqlite_a_tenants_cancelled_runs_still_held_are_read_by_their_index() {
    let t = TestDb::create(common::Backend::Sqlite).await;
    for statement in [
        "SELECT 1 FROM runs c WHERE c.tenant_id = 1 AND c.status = 'cancelled' \
           AND c.lease_expires_at IS NOT NULL AND c.lease_owner <> 'me' \
           AND NOT (c.lease_expires_at < 0)",
        "SELECT id FROM runs WHERE tenant_id = 1 AND operation_type = 'policy.capture_snapshot' \
           AND target_id = 1 AND status = 'cancelled' AND lease_expires_at >= 0 LIMIT 1",
    ] {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {statement}"))
            .fetch_all(t.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<String, _>("detail"))
            .collect();
        assert!(
            plan.iter()
                .any(|step| step.contains("runs_cancelled_held_by_tenant")),
            "{statement}: {plan:?}"
        );
    }
}
