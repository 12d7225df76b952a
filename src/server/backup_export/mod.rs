//! Export of a backup set: `GET /t/{tenant}/backup-sets/{id}/export.zip` answers a ZIP with
//! - `policies/<type>/<safe name>__<graph id>.json`: each item's stored version, pretty-printed
//!   (the same bytes as the version's raw JSON download);
//! - `manifest.json`: the tenant, the set, the export time, and per item its policy id, graph
//!   id, type, name, version id, content hash, capture time and file;
//! - `README.md`: the set documented, one section per policy with its readable settings.
//!
//! Memory stays flat whatever the set's size: the items are read once, in keyset pages of
//! [`PAGE_ROWS`] on the policy id (the `(backup_set_id, policy_id)` unique index), and each
//! policy's file is deflated straight into the response body as its page arrives. The manifest
//! and the README list every policy but can only be complete at the end, so their text is
//! deflated into temporary files as the items pass and copied into the archive last, after the
//! policy files (entry order does not matter to a ZIP reader). Reading every item exactly once
//! also keeps the three parts consistent with each other: a policy renamed or added while the
//! export runs is either in all of them, under one name, or in none.
//!
//! The body is fed through a small channel by a task of its own; a client that reads slowly
//! holds that task (and no database connection: a page is fetched whole, then written), and a
//! client that goes away stops it. A failure after the first byte cuts the download off (no
//! end record), so a broken archive never looks complete.

mod manifest;
mod names;
mod readme;
mod zip;

use std::time::Instant;

use axum::{
    body::{Body, Bytes},
    extract::{Path, State},
    http::{header, HeaderValue, Method, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures::{stream, StreamExt};
use serde_json::Value;
use sqlx::FromRow;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tower_sessions::Session;
use tracing::Instrument;

use self::zip::{DeflatedSpool, DosTime, ZipError, ZipWriter};
use super::audit::{self, AuditEvent};
use super::auth::{authorize_session, TenantContext};
use super::db::Db;
use super::snapshots::names_for;
use super::state::AppState;
use super::tenants::TenantScope;
use crate::domain::snapshot::{
    readable, CaptureFormat, CapturedPolicy, PolicyType, ReadableSnapshot, SettingNames,
};
use crate::domain::{AppError, Capability, Timestamp};

/// Items read per query. A page is held whole while it is written, so this bounds memory by
/// 50 stored versions (a few kilobytes each; a settings catalog policy with thousands of
/// settings is a few hundred).
const PAGE_ROWS: i64 = 50;
/// Output gathered before it is handed to the response body.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks that may wait for a slow client; beyond them the export waits too.
const CHANNEL_CHUNKS: usize = 4;
/// The most policies one export holds: a ZIP without ZIP64 lists 65,535 entries, and two of
/// them are the manifest and the README.
pub const MAX_POLICIES: i64 = zip::MAX_ENTRIES as i64 - 2;

/// The set as the manifest and the README describe it.
#[derive(FromRow)]
pub struct SetInfo {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub created_at: i64,
}

/// The set with the number of its items.
#[derive(FromRow)]
struct SetRow {
    #[sqlx(flatten)]
    set: SetInfo,
    items: i64,
}

/// One item of the set with its stored version.
#[derive(FromRow)]
pub struct ExportItem {
    pub policy_id: i64,
    pub graph_id: String,
    pub policy_type: PolicyType,
    /// The inventory's name, until the stored version's replaces it ([`backed_up_name`]).
    #[sqlx(rename = "display_name")]
    pub name: String,
    #[sqlx(rename = "snapshot_id")]
    pub version_id: i64,
    pub content_hash: String,
    pub captured_at: i64,
    /// The stored payload (canonical JSON).
    pub payload: String,
    /// The capture format the version was stored in (`policy_snapshots.capture_format`).
    #[sqlx(rename = "capture_format")]
    pub format: i64,
}

/// What the handler checked: who asks, and the set they may export.
struct Checked {
    context: TenantContext,
    set: SetInfo,
    items: i64,
}

/// What the handler checked, handed to the task that writes the archive.
struct Export {
    scope: TenantScope,
    set: SetInfo,
    exported_at: i64,
    zip: ZipWriter,
}

/// The handler. The page guard has already sent anonymous visitors to sign-in; this checks the
/// membership again (any member may export, as any member may read the set), then streams. A
/// HEAD (which axum routes here too) gets the same checks and headers, but no archive is
/// written and no export recorded: nobody took the tenant's configuration out.
pub async fn backup_set_zip(
    State(state): State<AppState>,
    method: Method,
    Path((tenant, set)): Path<(String, String)>,
    session: Session,
) -> Response {
    let answer = match check(&state, &tenant, &set, &session).await {
        Ok(checked) if method == Method::HEAD => Ok(zip_headers(Body::empty(), checked.set.id)),
        Ok(checked) => start(&state, checked)
            .await
            .map(|export| zip_response(state.db.clone(), export)),
        Err(error) => Err(error),
    };
    answer.unwrap_or_else(|error| {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(error)).into_response()
    })
}

/// Whether the caller may export the set, and whether it exists and fits in a ZIP.
async fn check(
    state: &AppState,
    tenant: &str,
    set: &str,
    session: &Session,
) -> Result<Checked, AppError> {
    let context = authorize_session(state, session, tenant, Capability::View).await?;
    let not_found = || AppError::NotFound("This backup set does not exist in this tenant.".into());
    let set_id: i64 = set.parse().map_err(|_| not_found())?;
    let SetRow { set, items } = sqlx::query_as(
        "SELECT b.id, b.name, b.description, b.created_at, \
                (SELECT COUNT(*) FROM backup_items i \
                 WHERE i.tenant_id = b.tenant_id AND i.backup_set_id = b.id) AS items \
         FROM backup_sets b WHERE b.tenant_id = $1 AND b.id = $2",
    )
    .bind(context.scope.id())
    .bind(set_id)
    .fetch_optional(state.db.pool())
    .await?
    .ok_or_else(not_found)?;
    if items > MAX_POLICIES {
        return Err(AppError::invalid(
            "id",
            format!(
                "This backup set holds {items} policies; an export holds at most {MAX_POLICIES} \
                 (the most a ZIP archive without ZIP64 lists)."
            ),
        ));
    }
    Ok(Checked {
        context,
        set,
        items,
    })
}

/// Starts an export that passed its checks: its temporary files, and its audit entry.
async fn start(state: &AppState, checked: Checked) -> Result<Export, AppError> {
    let Checked {
        context,
        set,
        items,
    } = checked;
    // Made here, so a server that cannot write temporary files answers 500 instead of a
    // download that breaks off.
    let zip = ZipWriter::new().map_err(|error| {
        tracing::error!(%error, "no temporary file for an export");
        AppError::Internal
    })?;
    audit::record(
        &state.db,
        AuditEvent {
            tenant_id: Some(context.scope.id()),
            actor_user_id: Some(context.user_id),
            action: "backup_set.export",
            target: format!("backup_set:{}", set.id),
            details: serde_json::json!({ "items": items }),
        },
    )
    .await;
    Ok(Export {
        scope: context.scope,
        set,
        exported_at: Timestamp::now().millis(),
        zip,
    })
}

/// Aborts the writing task when the response body is dropped (the client went away).
struct AbortOnDrop(JoinHandle<Result<(), ExportError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The body stream's state: chunks from the writer, then how the writer ended.
struct Feed {
    chunks: mpsc::Receiver<Bytes>,
    writer: Option<AbortOnDrop>,
}

fn zip_response(db: Db, export: Export) -> Response {
    let set_id = export.set.id;
    let (sender, chunks) = mpsc::channel(CHANNEL_CHUNKS);
    let span = tracing::info_span!("backup_export", backup_set_id = set_id);
    let writer = tokio::spawn(write_archive(db, export, sender).instrument(span));
    let feed = Feed {
        chunks,
        writer: Some(AbortOnDrop(writer)),
    };
    let body = stream::unfold(feed, move |mut feed| async move {
        if let Some(chunk) = feed.chunks.recv().await {
            return Some((Ok(chunk), feed));
        }
        // The writer dropped its sender: it has ended. Only a clean end ends the body cleanly;
        // a failure or a panic cuts the download off.
        let mut writer = feed.writer.take()?;
        let outcome = (&mut writer.0).await;
        match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => {
                tracing::error!(%error, set_id, "backup set export stopped");
                Some((Err(std::io::Error::other("export failed")), feed))
            }
            Err(error) => {
                tracing::error!(%error, set_id, "backup set export task failed");
                Some((Err(std::io::Error::other("export failed")), feed))
            }
        }
    })
    // Fused: a body layer may poll once more after the end.
    .fuse();
    zip_headers(Body::from_stream(body), set_id)
}

/// An answer carrying set `set_id`'s archive as `body`: a download, never stored.
fn zip_headers(body: Body, set_id: i64) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/zip"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"backup-set-{set_id}.zip\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// Why an export stopped before its end.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("archive: {0}")]
    Zip(#[from] ZipError),
    #[error("temporary file: {0}")]
    Io(#[from] std::io::Error),
}

/// Hands the writer's output to the response body.
struct BodySink {
    sender: mpsc::Sender<Bytes>,
}

impl BodySink {
    /// Sends what is pending once there is a chunk's worth; `false` when the client is gone.
    async fn send_full(&self, zip: &mut ZipWriter) -> bool {
        zip.pending() < CHUNK_BYTES || self.send(zip).await
    }

    /// Sends whatever is pending; `false` when the client is gone.
    async fn send(&self, zip: &mut ZipWriter) -> bool {
        let chunk = zip.take();
        chunk.is_empty() || self.sender.send(Bytes::from(chunk)).await.is_ok()
    }

    /// Copies a spooled entry or the central directory out, chunk by chunk.
    async fn copy_out(&self, zip: &mut ZipWriter) -> Result<bool, ZipError> {
        while zip.copy_chunk()? {
            if !self.send_full(zip).await {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Writes the whole archive into `sender`. Returns early (and fine) when the client goes away.
async fn write_archive(
    db: Db,
    export: Export,
    sender: mpsc::Sender<Bytes>,
) -> Result<(), ExportError> {
    let started = Instant::now();
    let Export {
        scope,
        set,
        exported_at,
        mut zip,
    } = export;
    let sink = BodySink { sender };
    let summary = scope.summary();
    let mut listing = DeflatedSpool::new()?;
    listing.write(
        manifest::head(
            &set,
            &summary.display_name,
            &summary.external_id,
            exported_at,
        )
        .as_bytes(),
    )?;
    let mut documentation = DeflatedSpool::new()?;
    documentation.write(
        readme::heading(
            &set,
            &summary.display_name,
            &summary.external_id,
            exported_at,
        )
        .as_bytes(),
    )?;

    let mut count: u64 = 0;
    let mut after = 0_i64;
    loop {
        let mut page = items_page(&db, &scope, set.id, after).await?;
        let Some(last) = page.last() else { break };
        after = last.policy_id;
        // Each payload parsed once; the page's setting names read in one go (stored apart
        // since capture format 2, inline before).
        let parsed: Vec<Option<Value>> = page
            .iter()
            .map(|item| serde_json::from_str::<Value>(&item.payload).ok())
            .collect();
        for (item, parsed) in page.iter_mut().zip(&parsed) {
            if let Some(name) = parsed
                .as_ref()
                .and_then(|payload| backed_up_name(item, payload))
            {
                item.name = name.to_owned();
            }
        }
        let payloads: Vec<&Value> = parsed.iter().flatten().collect();
        let names = names_for(&db, scope.id(), &payloads).await?;
        for (item, parsed) in page.iter().zip(&parsed) {
            let written = Written {
                item,
                parsed: parsed.as_ref(),
                names: &names,
            };
            add_item(
                &mut zip,
                &mut listing,
                &mut documentation,
                &written,
                count == 0,
            )?;
            count += 1;
            if !sink.send_full(&mut zip).await {
                return Ok(());
            }
            // Each item is a little CPU (parse, print, deflate twice, the readable view): let
            // other requests on this worker thread in between.
            tokio::task::yield_now().await;
        }
    }
    listing.write(manifest::tail(count).as_bytes())?;
    let exported = DosTime::from_millis(exported_at);
    zip.add_spooled("manifest.json", exported, listing)?;
    if !sink.copy_out(&mut zip).await? {
        return Ok(());
    }
    zip.add_spooled("README.md", exported, documentation)?;
    if !sink.copy_out(&mut zip).await? {
        return Ok(());
    }
    zip.finish_entries()?;
    if !sink.copy_out(&mut zip).await? {
        return Ok(());
    }
    zip.close()?;
    if sink.send(&mut zip).await {
        tracing::info!(
            policies = count,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "backup set exported"
        );
    }
    Ok(())
}

/// One item: its version as a file of the archive, its entry in the manifest and its section
/// in the README.
fn add_item(
    zip: &mut ZipWriter,
    listing: &mut DeflatedSpool,
    documentation: &mut DeflatedSpool,
    written: &Written<'_>,
    first: bool,
) -> Result<(), ExportError> {
    let item = written.item;
    let path = names::policy_path(
        item.policy_type.as_str(),
        &item.name,
        &item.graph_id,
        item.policy_id,
    );
    let pretty = written
        .parsed
        .and_then(|value| serde_json::to_string_pretty(value).ok());
    if pretty.is_none() {
        tracing::error!(
            version_id = item.version_id,
            "stored snapshot is not JSON; exported as stored"
        );
    }
    zip.start(&path, DosTime::from_millis(item.captured_at))?;
    zip.write(pretty.as_deref().unwrap_or(&item.payload).as_bytes())?;
    zip.end()?;
    listing.write(manifest::item(first, item, &path).as_bytes())?;
    let view = written
        .parsed
        .and_then(|payload| readable_view(item, payload, written.names));
    documentation.write(readme::policy_section(item, &path, view.as_ref()).as_bytes())?;
    Ok(())
}

/// The name the policy had when it was backed up: its type's name property in the stored
/// version. The manifest, the file name and the README use it, so a policy renamed in Intune
/// since is listed under the name its JSON carries, not under the inventory's newer one.
fn backed_up_name<'a>(item: &ExportItem, payload: &'a Value) -> Option<&'a str> {
    payload
        .get("policy")?
        .get(item.policy_type.spec().name_property)?
        .as_str()
        .filter(|name| !name.trim().is_empty())
}

/// An item on its way into the archive: its row, its payload parsed (`None` when the stored
/// text is not JSON) and the setting names of its page.
struct Written<'a> {
    item: &'a ExportItem,
    parsed: Option<&'a Value>,
    names: &'a SettingNames,
}

/// The readable view of an item's version, as the version viewer builds it: in the format it
/// was captured in. `None` for a type or format the app does not know.
fn readable_view(
    item: &ExportItem,
    payload: &Value,
    names: &SettingNames,
) -> Option<ReadableSnapshot> {
    let family = item.policy_type;
    let format = u16::try_from(item.format)
        .ok()
        .and_then(CaptureFormat::new)?;
    Some(readable(
        &CapturedPolicy::new(family, format, payload),
        names,
    ))
}

/// The set's items with a policy id above `after`, by policy id, with their stored versions.
async fn items_page(
    db: &Db,
    scope: &TenantScope,
    set_id: i64,
    after: i64,
) -> Result<Vec<ExportItem>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.policy_id, p.graph_id, p.policy_type, p.display_name, i.snapshot_id, \
                s.content_hash, s.payload, s.capture_format, i.captured_at \
         FROM backup_items i \
         JOIN policies p ON p.tenant_id = i.tenant_id AND p.id = i.policy_id \
         JOIN policy_snapshots s ON s.tenant_id = i.tenant_id AND s.id = i.snapshot_id \
         WHERE i.tenant_id = $1 AND i.backup_set_id = $2 AND i.policy_id > $3 \
         ORDER BY i.policy_id LIMIT $4",
    )
    .bind(scope.id())
    .bind(set_id)
    .bind(after)
    .bind(PAGE_ROWS)
    .fetch_all(db.pool())
    .await
}

/// `2026-12-03T08:15:02.123Z`; empty for a value outside the calendar.
fn iso_8601(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}
