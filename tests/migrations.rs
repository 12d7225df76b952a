//! The schema: migrations apply to empty databases, both engines hold the same schema, and the
//! rules the product keeps in the database (one active run per idempotency key, no row that
//! mixes tenants) hold on both engines.

use crate::common;

use common::TestDb;
use sqlx::Row;
use tenantatlas::server::db::is_unique_violation;

both_backends!(TestDb: migrations_apply_and_create_every_table, migrations_are_idempotent, active_runs_are_unique_per_key_until_terminal, one_bulk_run_per_tenant_is_active, rows_cannot_mix_tenants, run_counters_must_add_up, a_database_without_an_admin_makes_its_first_account_admin, a_database_a_newer_version_migrated_is_refused_saying_so);

const TABLES: [&str; 12] = [
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
    "sessions",
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
    let applied: i64 = sqlx::query_scalar::<_, i64>("SELECT COUNT(*) AS n FROM _sqlx_migrations")
        .fetch_one(t.db.pool())
        .await
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
    sqlx::query_scalar::<_, i64>("INSERT INTO tenants (external_id, display_name, created_at) VALUES ($1, $2, 0) RETURNING id")
        .bind(external_id)
        .bind(external_id)
        .fetch_one(t.db.pool())
        .await
        .unwrap()
}

async fn insert_run(
    t: &TestDb,
    tenant_id: i64,
    key: &str,
    status: &str,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(
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
    let policy_of_a: i64 = sqlx::query_scalar::<_, i64>(
        "INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at) \
         VALUES ($1, 'g1', 'compliance', 'P', 'android', 0) RETURNING id",
    )
    .bind(a)
    .fetch_one(t.db.pool())
    .await
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

/// The two migration folders describe one schema in two dialects: the same tables, the same
/// columns in the same order with the same nullability and type family, the same indexes
/// (columns, uniqueness, partial or not) and the same foreign keys. Names of indexes that back a
/// UNIQUE constraint differ between the engines, so indexes compare by what they cover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_engines_have_the_same_schema() {
    let sqlite = TestDb::create(common::Backend::Sqlite).await;
    let postgres = TestDb::create(common::Backend::Postgres).await;
    let (left, right) = (
        sqlite_schema(&sqlite).await,
        postgres_schema(&postgres).await,
    );
    assert!(left.len() >= TABLES.len(), "{left:#?}");
    // The comparison sees what matters: a partial unique index and composite foreign keys.
    let runs = &left["runs"];
    assert!(
        runs.indexes
            .iter()
            .any(|(_, unique, partial)| *unique && *partial),
        "{runs:#?}"
    );
    let items = &left["run_items"];
    assert!(
        items
            .foreign_keys
            .iter()
            .any(|(from, _, _)| from.contains(',')),
        "{items:#?}"
    );
    for table in left.keys().chain(right.keys()) {
        assert_eq!(
            left.get(table),
            right.get(table),
            "table {table}: SQLite (left) and PostgreSQL (right) differ"
        );
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// (name, type family, NOT NULL), in column order.
    columns: Vec<(String, &'static str, bool)>,
    /// (columns, unique, partial); the primary key is left out.
    indexes: std::collections::BTreeSet<(String, bool, bool)>,
    /// (columns, referenced table, referenced columns).
    foreign_keys: std::collections::BTreeSet<(String, String, String)>,
}

type Schema = std::collections::BTreeMap<String, Table>;

/// The family of a column type, the same word on both engines: `INTEGER` (SQLite's rowid
/// alias) and `BIGINT` are both 64-bit integers here.
fn family(declared: &str) -> &'static str {
    let upper = declared.to_ascii_uppercase();
    match upper.split(['(', ' ']).next().unwrap_or_default() {
        "INTEGER" | "BIGINT" | "INT8" | "BIGSERIAL" => "integer",
        "TEXT" | "VARCHAR" | "CHARACTER" => "text",
        "JSON" | "JSONB" => "json",
        "BLOB" | "BYTEA" => "bytes",
        "BOOLEAN" | "BOOL" => "boolean",
        "REAL" | "DOUBLE" | "FLOAT8" => "real",
        _ => panic!("a column type the schema test does not know: {declared}"),
    }
}

fn is_ours(table: &str) -> bool {
    !table.starts_with("_sqlx") && !table.starts_with("sqlite_") && !table.starts_with("tower_")
}

async fn strings(t: &TestDb, sql: &str, bind: &[&str]) -> Vec<Vec<String>> {
    let mut query = sqlx::query(sql);
    for value in bind {
        query = query.bind(*value);
    }
    let rows = query.fetch_all(t.db.pool()).await.unwrap();
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| {
                    row.try_get::<String, _>(i)
                        .or_else(|_| row.try_get::<i64, _>(i).map(|n| n.to_string()))
                        .or_else(|_| row.try_get::<bool, _>(i).map(|b| b.to_string()))
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}

async fn sqlite_schema(t: &TestDb) -> Schema {
    let mut schema = Schema::new();
    let tables = common::schema::tables(&t.db).await;
    for table in tables.into_iter().filter(|t| is_ours(t)) {
        let mut entry = Table::default();
        let columns = strings(
            t,
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info($1) ORDER BY cid",
            &[&table],
        )
        .await;
        for column in columns {
            let not_null = column[2] == "1" || column[3] != "0";
            entry
                .columns
                .push((column[0].clone(), family(&column[1]), not_null));
        }
        let indexes = strings(
            t,
            "SELECT name, \"unique\", origin, partial FROM pragma_index_list($1)",
            &[&table],
        )
        .await;
        for index in indexes.into_iter().filter(|index| index[2] != "pk") {
            let columns = strings(
                t,
                "SELECT name FROM pragma_index_info($1) ORDER BY seqno",
                &[&index[0]],
            )
            .await;
            let columns: Vec<String> = columns.into_iter().map(|c| c[0].clone()).collect();
            entry
                .indexes
                .insert((columns.join(","), index[1] == "1", index[3] == "1"));
        }
        let keys = strings(
            t,
            "SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list($1) ORDER BY id, seq",
            &[&table],
        )
        .await;
        let mut by_id =
            std::collections::BTreeMap::<String, (String, Vec<String>, Vec<String>)>::new();
        for key in keys {
            let e = by_id
                .entry(key[0].clone())
                .or_insert_with(|| (key[1].clone(), vec![], vec![]));
            e.1.push(key[2].clone());
            e.2.push(key[3].clone());
        }
        for (_, (target, from, to)) in by_id {
            entry
                .foreign_keys
                .insert((from.join(","), target, to.join(",")));
        }
        schema.insert(table, entry);
    }
    schema
}

async fn postgres_schema(t: &TestDb) -> Schema {
    let mut schema = Schema::new();
    let tables = common::schema::tables(&t.db).await;
    for table in tables.into_iter().filter(|t| is_ours(t)) {
        let mut entry = Table::default();
        let columns = strings(
            t,
            "SELECT column_name::text, data_type::text, is_nullable::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            &[&table],
        )
        .await;
        for column in columns {
            entry
                .columns
                .push((column[0].clone(), family(&column[1]), column[2] == "NO"));
        }
        let indexes = strings(
            t,
            "SELECT (SELECT string_agg(pg_get_indexdef(i.indexrelid, k, true), ',' ORDER BY k) \
                     FROM generate_series(1, i.indnatts) AS k), \
                    i.indisunique::text, (i.indpred IS NOT NULL)::text \
             FROM pg_index i WHERE i.indrelid = ('public.' || $1)::regclass AND NOT i.indisprimary",
            &[&table],
        )
        .await;
        for index in indexes {
            entry
                .indexes
                .insert((index[0].clone(), index[1] == "true", index[2] == "true"));
        }
        let keys = strings(
            t,
            "SELECT (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) FROM unnest(c.conkey) \
                       WITH ORDINALITY AS k(attnum, n) \
                       JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum), \
                    cf.relname::text, \
                    (SELECT string_agg(a.attname::text, ',' ORDER BY k.n) FROM unnest(c.confkey) \
                       WITH ORDINALITY AS k(attnum, n) \
                       JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum) \
             FROM pg_constraint c JOIN pg_class cf ON cf.oid = c.confrelid \
             WHERE c.contype = 'f' AND c.conrelid = ('public.' || $1)::regclass",
            &[&table],
        )
        .await;
        for key in keys {
            entry
                .foreign_keys
                .insert((key[0].clone(), key[1].clone(), key[2].clone()));
        }
        schema.insert(table, entry);
    }
    schema
}

/// On a PostgreSQL that has lz4 (this project's CI does), stored versions' payloads are
/// compressed with it, not with pglz (migration 0020).
#[tokio::test]
async fn postgres_payloads_are_compressed_with_lz4() {
    let t = TestDb::create(common::Backend::Postgres).await;
    let method: String = sqlx::query_scalar(
        "SELECT attcompression::text FROM pg_attribute \
         WHERE attrelid = 'policy_snapshots'::regclass AND attname = 'payload'",
    )
    .fetch_one(t.db.pool())
    .await
    .unwrap();
    assert_eq!(method, "l", "policy_snapshots.payload's compression method");
    t.destroy().await;
}

/// Migration 0029 on a database as 0028 left it: the migrator's record of 0029 is taken back,
/// so the next `migrate` applies 0029 (and only it) to the accounts written meanwhile.
async fn migrate_0029_again(t: &TestDb) {
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 29")
        .execute(t.db.pool())
        .await
        .unwrap();
    t.db.migrate().await.expect("0029 applies");
}

async fn insert_user(t: &TestDb, email: &str, admin: bool) {
    sqlx::query(
        "INSERT INTO users (email, display_name, password_hash, created_at, is_admin) \
         VALUES ($1, 'N', 'x', 0, $2)",
    )
    .bind(email)
    .bind(admin)
    .execute(t.db.pool())
    .await
    .unwrap();
}

async fn admins(t: &TestDb) -> Vec<String> {
    sqlx::query_scalar("SELECT email FROM users WHERE is_admin ORDER BY id")
        .fetch_all(t.db.pool())
        .await
        .unwrap()
}

/// Migration 0009 added the instance admin flag as FALSE for every account, so a database made
/// before it had no admin and nobody could connect a tenant in the app. 0029 gives the flag to
/// the first account (the smallest id) of a database without an admin, and changes nothing on
/// an empty database or on one that has an admin.
async fn a_database_without_an_admin_makes_its_first_account_admin(t: TestDb) {
    migrate_0029_again(&t).await;
    assert_eq!(common::count(&t.db, "users").await, 0, "empty: a no-op");
    // Accounts of before 0009: none is admin.
    insert_user(&t, "first@example.org", false).await;
    insert_user(&t, "second@example.org", false).await;
    migrate_0029_again(&t).await;
    assert_eq!(admins(&t).await, ["first@example.org"]);
    // A database with an admin (not the first account) keeps it as it is.
    sqlx::query("UPDATE users SET is_admin = (email = 'second@example.org')")
        .execute(t.db.pool())
        .await
        .unwrap();
    migrate_0029_again(&t).await;
    assert_eq!(admins(&t).await, ["second@example.org"]);
}

/// A database holding a migration this build does not know (a newer TenantAtlas migrated it) is
/// refused, and the message says what happened and what to do.
async fn a_database_a_newer_version_migrated_is_refused_saying_so(t: TestDb) {
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, installed_on, success, checksum, \
         execution_time) VALUES (9999, 'from the future', CURRENT_TIMESTAMP, TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(t.db.pool())
    .await
    .unwrap();
    let error = t.db.migrate().await.unwrap_err().to_string();
    assert!(
        error.contains("migrated by a newer TenantAtlas")
            && error.contains("migration 9999")
            && error.contains("run that version or newer"),
        "{error}"
    );
}
