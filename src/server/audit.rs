//! The audit log: who did what, where and when. Details are small and pass the sanitizer.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use tracing::Instrument;

use crate::domain::Timestamp;
use crate::server::db::{Db, Sql};
use crate::server::sanitize::{is_secret_name, is_secret_pair_name, sanitize, REDACTED};

/// One audit event.
pub struct AuditEvent<'a> {
    /// The tenant's database id; `None` for events outside any tenant (sign-in).
    pub tenant_id: Option<i64>,
    pub actor_user_id: Option<i64>,
    /// A dotted verb, e.g. `auth.sign_in`, `membership.grant`, `run.start`.
    pub action: &'a str,
    /// What was acted on, e.g. `user:12`, `backup_set:4`.
    pub target: String,
    /// A small JSON object; every string value is sanitized before it is stored.
    pub details: serde_json::Value,
}

/// Writes the event before it returns. A failure is logged, not returned: the audited action
/// already happened.
///
/// Events recorded at the same time are written together (group commit): the first takes the
/// writer's turn and inserts what is queued in one statement; those queued meanwhile go with the
/// next turn. So a burst (a hundred identical submits, each audited) costs a few statements and
/// commits, not one each, and every event is still in the table when its `record` returns.
pub async fn record(db: &Db, event: AuditEvent<'_>) {
    let row = Row::of(event, Timestamp::now().millis());
    let writer = writer(db);
    writer
        .queue
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(row);
    // Whoever held the turn before us wrote our row if it was queued by then; otherwise we do.
    let turn = Arc::clone(&writer.turn).lock_owned().await;
    let rows = std::mem::take(&mut *writer.queue.lock().unwrap_or_else(PoisonError::into_inner));
    if rows.is_empty() {
        return;
    }
    // In a task of its own, which keeps the turn until they are written: the rows are other
    // requests' too, and this request may be dropped (its client went away) meanwhile. In this
    // request's span, so a failure is logged with the id of the request that wrote.
    let db = db.clone();
    let written = tokio::spawn(
        async move {
            let _turn = turn;
            for chunk in rows.chunks(ROWS_PER_INSERT) {
                if let Err(error) = insert(db.pool(), chunk).await {
                    let actions: Vec<&str> = chunk.iter().map(|row| row.action.as_str()).collect();
                    tracing::error!(%error, ?actions, "could not write the audit log");
                }
            }
        }
        .in_current_span(),
    );
    if let Err(error) = written.await {
        tracing::error!(%error, "the audit log writer stopped");
    }
}

/// Events per statement (6 values each: well under both engines' parameter limits).
const ROWS_PER_INSERT: usize = 200;

/// An event ready to insert: sanitized, with its time.
struct Row {
    tenant_id: Option<i64>,
    actor_user_id: Option<i64>,
    action: String,
    target: String,
    details: String,
    created_at: i64,
}

impl Row {
    fn of(event: AuditEvent<'_>, now: i64) -> Self {
        Self {
            tenant_id: event.tenant_id,
            actor_user_id: event.actor_user_id,
            action: event.action.to_owned(),
            target: sanitize(&event.target),
            details: sanitize_json(event.details).to_string(),
            created_at: now,
        }
    }
}

/// The events waiting for a turn, and the turn, of one database.
#[derive(Default)]
struct Writer {
    queue: Mutex<Vec<Row>>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// The writer of `db` (by [`Db::instance`]: a process may open several databases).
fn writer(db: &Db) -> Arc<Writer> {
    static WRITERS: LazyLock<Mutex<HashMap<u64, Arc<Writer>>>> = LazyLock::new(Mutex::default);
    let mut writers = WRITERS.lock().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(writers.entry(db.instance()).or_default())
}

/// Inserts `rows` in one statement.
async fn insert<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    rows: &[Row],
) -> Result<(), sqlx::Error> {
    let mut sql = Sql::new(
        "INSERT INTO audit_log (tenant_id, actor_user_id, action, target, details, created_at) \
         VALUES ",
    );
    sql.rows(rows, |sql, row| {
        sql.opt_int(row.tenant_id)
            .push(", ")
            .opt_int(row.actor_user_id)
            .push(", ")
            .text(row.action.as_str())
            .push(", ")
            .text(row.target.as_str())
            .push(", ")
            .text(row.details.as_str())
            .push(", ")
            .int(row.created_at);
    });
    sql.query().execute(executor).await?;
    Ok(())
}

/// Writes the event with `executor` (inside a caller's transaction, so the event commits with
/// what it records), at `now`.
pub async fn record_in<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    event: AuditEvent<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    insert(executor, &[Row::of(event, now)]).await
}

/// One page of the tenant's audit log, newest first: only `action` (when not empty), only the
/// actor with this e-mail (when not empty), and only events older than `before` (keyset paging
/// on the id, so a page costs the same however far back it is).
pub async fn list(
    db: &Db,
    scope: &crate::server::tenants::TenantScope,
    action: &str,
    actor_email: &str,
    before: Option<i64>,
    limit: i64,
) -> Result<crate::domain::audit::AuditPage, crate::domain::AppError> {
    use crate::domain::audit::{AuditEntry, AuditPage};
    let mut entries: Vec<AuditEntry> = sqlx::query_as(
        "SELECT a.id, a.action, u.email, a.target, a.details, a.created_at FROM audit_log a \
         LEFT JOIN users u ON u.id = a.actor_user_id \
         WHERE a.tenant_id = $1 AND ($2 = '' OR a.action = $2) AND ($3 = '' OR u.email = $3) \
         AND a.id < $4 ORDER BY a.id DESC LIMIT $5",
    )
    .bind(scope.id())
    .bind(action)
    .bind(actor_email)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit + 1)
    .fetch_all(db.pool())
    .await?;
    let more = entries.len() as i64 > limit;
    entries.truncate(limit.max(0) as usize);
    let next_before = more.then(|| entries.last().map(|e| e.id)).flatten();
    Ok(AuditPage {
        entries,
        next_before,
    })
}

/// Sanitizes every string, and redacts whole values whose key names a secret (`password`,
/// `clientSecret`) or that an object marks as secret (`value` beside `"isEncrypted": true`, a
/// `secretReferenceValueId`, or a `name`/`key` naming a secret, keys in any case): a string
/// sanitized on its own
/// no longer has its name beside it.
fn sanitize_json(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(text) => Value::String(sanitize(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(sanitize_json).collect()),
        Value::Object(map) => {
            // A name/value pair whose name is a secret's (`{"name": "client_secret", "value":
            // …}`, as in OMA settings or a form's fields, `Name`/`Value` in PowerShell's output)
            // holds the secret under `value`; a display name with spaces names no secret.
            let named_secret = map.iter().any(|(k, v)| {
                (k.eq_ignore_ascii_case("name") || k.eq_ignore_ascii_case("key"))
                    && v.as_str().is_some_and(is_secret_pair_name)
            });
            let marked = named_secret
                || map.get("isEncrypted") == Some(&Value::Bool(true))
                || map
                    .get("secretReferenceValueId")
                    .is_some_and(|id| !id.is_null());
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| {
                        let secret =
                            is_secret_name(&k) || (marked && k.eq_ignore_ascii_case("value"));
                        let v = if secret && !v.is_null() {
                            Value::String(REDACTED.into())
                        } else {
                            sanitize_json(v)
                        };
                        (sanitize(&k), v)
                    })
                    .collect(),
            )
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_inside_details_are_redacted() {
        let details = serde_json::json!({
            "note": "retried with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl",
            "nested": ["client_secret=abc123def456"],
            "count": 3
        });
        let text = sanitize_json(details).to_string();
        assert!(!text.contains("eyJhbGciOiJIUzI1NiJ9"), "{text}");
        assert!(!text.contains("abc123def456"), "{text}");
        assert!(text.contains("\"count\":3"));
    }

    #[test]
    fn values_of_pairs_named_secret_are_redacted_whole() {
        let details = serde_json::json!({
            "fields": [
                {"name": "client_secret", "value": "s3cr3t-pair-value"},
                {"value": {"nested": "s3cr3t-object-value"}, "key": "Password"},
                {"name": "displayName", "value": "Contoso baseline"}
            ]
        });
        let text = sanitize_json(details).to_string();
        assert!(!text.contains("s3cr3t-pair-value"), "{text}");
        assert!(!text.contains("s3cr3t-object-value"), "{text}");
        assert!(text.contains("Contoso baseline"), "{text}");
        assert!(text.contains("client_secret"), "{text}");
    }

    #[test]
    fn pairs_match_keys_in_any_case_and_skip_display_names() {
        let details = serde_json::json!({
            "fields": [
                {"Name": "ClientSecret", "Value": "hunter2hunter2"},
                {"KEY": "AdminPassword", "VALUE": ["s3cr3t-in-array"]},
                {"Name": "Windows LAPS password", "Value": 8},
                {"name": "Contoso password policy", "value": "kept-display-value"}
            ]
        });
        let text = sanitize_json(details).to_string();
        for secret in ["hunter2hunter2", "s3cr3t-in-array"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for kept in [
            "\"Value\":8",
            "\"value\":\"kept-display-value\"",
            "Windows LAPS password",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
    }

    #[test]
    fn values_under_secret_keys_are_redacted_whole() {
        let details = serde_json::json!({
            "password": "hunter2hunter2",
            "password2": "s3cr3t-numbered",
            "key1": "0123456789abcdef0123456789abcdef",
            "clientSecret": {"kind": "s3cr3t-object"},
            "x-api-key": 123456789,
            "omaSettings": [{"isEncrypted": true, "value": "oma-secret-1"}, {"value": "plain"}],
            "keySize": 2048,
            "keySize_2": 4096,
            "sessionTimeout": "PT1H",
            "code": "Forbidden"
        });
        let text = sanitize_json(details).to_string();
        for secret in [
            "hunter2hunter2",
            "s3cr3t-numbered",
            "0123456789abcdef",
            "s3cr3t-object",
            "123456789",
            "oma-secret-1",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        for kept in [
            "\"keySize\":2048",
            "\"keySize_2\":4096",
            "\"sessionTimeout\":\"PT1H\"",
            "\"code\":\"Forbidden\"",
            "\"value\":\"plain\"",
        ] {
            assert!(text.contains(kept), "{kept} missing from {text}");
        }
    }
}
