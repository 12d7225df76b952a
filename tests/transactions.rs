//! `Db::begin_writing`: a transaction that reads before it writes (a batch of outcomes reads the
//! stored versions first) still writes while other connections write and commit beside it. On
//! SQLite a plain `BEGIN` would fail that write at once (`SQLITE_BUSY_SNAPSHOT`) once another
//! writer had committed after the read.

use crate::common;

use std::time::Duration;

use common::{TestDb, CONTOSO};
use tenantatlas::server::seed;

both_backends!(TestDb: a_writing_transaction_reads_first_and_writes_beside_other_writers);

async fn a_writing_transaction_reads_first_and_writes_beside_other_writers(t: TestDb) {
    seed::seed_demo(&t.db).await.unwrap();
    let tenant = common::tenant_id(&t.db, CONTOSO).await;
    for round in 0..10 {
        let mut tx = t.db.begin_writing().await.unwrap();
        let before: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backup_sets")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        // Another connection writes meanwhile: it commits, or waits for this transaction.
        let other = {
            let db = t.db.clone();
            tokio::spawn(async move {
                sqlx::query("UPDATE tenants SET display_name = $1 WHERE id = $2")
                    .bind(format!("Renamed {round}"))
                    .bind(tenant)
                    .execute(db.pool())
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        sqlx::query("INSERT INTO backup_sets (tenant_id, name, created_at) VALUES ($1, $2, 0)")
            .bind(tenant)
            .bind(format!("Written after reading {round}"))
            .execute(&mut *tx)
            .await
            .unwrap_or_else(|error| panic!("round {round}: the write after the read: {error}"));
        tx.commit().await.unwrap();
        other
            .await
            .unwrap()
            .unwrap_or_else(|error| panic!("round {round}: the other writer: {error}"));
        let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM backup_sets")
            .fetch_one(t.db.pool())
            .await
            .unwrap();
        assert_eq!(after, before + 1);
    }
}

/// `Db::begin_lazy` on PostgreSQL: its commit does not wait for the WAL's flush
/// (`synchronous_commit` off for it alone), until `commit_durably` asks for the usual commit; the
/// other transactions, and the pool's connections after it, keep the server's setting.
#[tokio::test]
async fn postgres_a_lazy_transaction_commits_unflushed_until_told_otherwise() {
    let t = TestDb::create(common::Backend::Postgres).await;
    async fn setting(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> String {
        sqlx::query_scalar("SELECT current_setting('synchronous_commit')")
            .fetch_one(&mut **tx)
            .await
            .unwrap()
    }
    let mut lazy = t.db.begin_lazy().await.unwrap();
    assert_eq!(setting(&mut lazy).await, "off");
    t.db.commit_durably(&mut lazy).await.unwrap();
    assert_eq!(setting(&mut lazy).await, "on");
    lazy.commit().await.unwrap();
    let mut reading = t.db.begin_batch(true).await.unwrap();
    assert_eq!(setting(&mut reading).await, "off");
    reading.rollback().await.unwrap();
    for _ in 0..4 {
        let mut usual = t.db.begin_writing().await.unwrap();
        assert_eq!(setting(&mut usual).await, "on");
        usual.commit().await.unwrap();
    }
}

/// `Db::begin_batch` on PostgreSQL: a batch of outcomes plans with sequential scans off (so the
/// foreign-key checks of its inserts, whose plans each connection keeps, are planned through
/// the keys' indexes), and commits lazily only for an operation that opted in; the pool's
/// other transactions keep the server's settings.
#[tokio::test]
async fn postgres_a_batch_transaction_plans_by_index_and_is_lazy_only_when_asked() {
    let t = TestDb::create(common::Backend::Postgres).await;
    async fn settings(tx: &mut sqlx::Transaction<'static, sqlx::Any>) -> (String, String) {
        sqlx::query_as(
            "SELECT current_setting('enable_seqscan'), current_setting('synchronous_commit')",
        )
        .fetch_one(&mut **tx)
        .await
        .unwrap()
    }
    for (lazy, commit) in [(true, "off"), (false, "on")] {
        let mut batch = t.db.begin_batch(lazy).await.unwrap();
        assert_eq!(settings(&mut batch).await, ("off".into(), commit.into()));
        batch.commit().await.unwrap();
    }
    for _ in 0..4 {
        let mut usual = t.db.begin_writing().await.unwrap();
        assert_eq!(settings(&mut usual).await, ("on".into(), "on".into()));
        usual.commit().await.unwrap();
    }
}
