//! A restore as an earlier claim that crashed (or lost its lease) left it: the run queued for a
//! claim that takes it over, and items whose write that claim announced before sending it.

use tenantatlas::server::db::Db;

use super::{tenant_id, CONTOSO};

/// Makes the next claim of queued run `run_id` its second, as when a claim that crashed is
/// taken over.
pub async fn as_taken_over(db: &Db, run_id: i64) {
    sqlx::query("UPDATE runs SET attempt = 1 WHERE id = $1")
        .bind(run_id)
        .execute(db.pool())
        .await
        .unwrap();
}

/// A write a claim announces before sending it.
#[derive(Debug, Clone, Copy)]
pub enum Announced {
    Update,
    Create,
}

/// Records that an earlier claim of Contoso's run `run_id` announced the `write` of `policy_id`
/// at `sent_at`, its item pending, as a claim does right before sending it.
pub async fn announce(db: &Db, write: Announced, run_id: i64, policy_id: i64, sent_at: i64) {
    let column = match write {
        Announced::Update => "update_sent_at",
        Announced::Create => "create_sent_at",
    };
    let tenant_id = tenant_id(db, CONTOSO).await;
    sqlx::query(&format!(
        "INSERT INTO run_items (tenant_id, run_id, policy_id, {column}) VALUES ($1, $2, $3, $4)"
    ))
    .bind(tenant_id)
    .bind(run_id)
    .bind(policy_id)
    .bind(sent_at)
    .execute(db.pool())
    .await
    .unwrap();
}
