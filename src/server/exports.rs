//! CSV export of a run's items: `GET /t/{tenant}/runs/{id}/items.csv[?outcome=…]`, filtered as
//! the run detail page filters them (an outcome, or what a capture found: `changed`, …). The items
//! of a run that compares captures carry what each capture found (`result`, `changed settings`).
//! A queued run has no items yet (the engine writes them when it claims the run): its file lists
//! the selection stored with it, every policy pending, as its page does. The items of a restore
//! run (preview or execute) also carry what the restore planned or did for each (`action`, as the
//! run's page shows it: Blocked, Create, …, Created, Updated, …, Failed), the new Graph id of a
//! policy it created anew, and, in the message of a blocked item, why it is blocked.
//!
//! The file is streamed a page of rows at a time (keyset on the policy id, served by the
//! `(run_id, policy_id)` unique index), so the server holds one page whatever the run's size
//! (and a queued run's selection, at most `MAX_SELECTION` ids).
//! RFC 4180: UTF-8, CRLF line ends, a header row, fields quoted when they hold a comma, a quote
//! or a line break, and also a semicolon: Excel in locales whose list separator is `;` splits a
//! double-clicked file on it, so an unquoted `x;=1+1;` would become three cells, the second a
//! formula. A cell that a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`,
//! a tab or a carriage return) gets a leading `'`. Quoting protects a `;` only in the first
//! column: Excel opens a quote only at the very start of a field, so in `Policy 3,…,"a;=1+1;"`
//! split on `;` the quote is a plain character and `=1+1` a cell. So inside a cell every piece
//! after a `;`, CR or LF that would start with one of those characters, with a quote, or would
//! be empty (the cell's closing quote follows) gets a `'` as well: `a;=1+1;` is written
//! `"a;'=1+1;'"`, and the exported text differs from the stored one there. With all three,
//! opening the file runs nothing whether the spreadsheet splits on `,` or on `;`.

use axum::{
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use futures::{stream, StreamExt};
use serde::Deserialize;
use sqlx::FromRow;
use std::sync::Arc;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};
use tower_sessions::Session;

use super::auth::authorize_session;
use super::db::Db;
use super::runs::queries;
use super::state::AppState;
use super::tenants::TenantScope;
use crate::domain::restore::{PlanAction, PlanNotes, RestoreAction};
use crate::domain::run::OperationType;
use crate::domain::run_detail::{ItemFilter, ItemOutcome, RestoreItemResult};
use crate::domain::{AppError, Capability};

/// Rows read per query while streaming.
const PAGE_ROWS: i64 = 1_000;

/// The columns, in order.
const HEADER: [&str; 8] = [
    "policy name",
    "policy type",
    "platform",
    "graph id",
    "outcome",
    "reason code",
    "message",
    "finished at",
];

/// The columns of a run that compares captures ([`OperationType::compares_captures`]), in
/// order: what each capture found follows its outcome, as on the run's page.
const RESULT_HEADER: [&str; 10] = [
    "policy name",
    "policy type",
    "platform",
    "graph id",
    "outcome",
    "result",
    "changed settings",
    "reason code",
    "message",
    "finished at",
];

/// The columns of a restore run (preview or execute), in order: what the restore planned or
/// did for each item follows its outcome, as on the run's page, with the Graph id of a policy
/// it created anew; then what its capture found.
const RESTORE_HEADER: [&str; 12] = [
    "policy name",
    "policy type",
    "platform",
    "graph id",
    "outcome",
    "action",
    "new graph id",
    "result",
    "changed settings",
    "reason code",
    "message",
    "finished at",
];

/// Which columns an export writes, by the kind of its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Columns {
    /// [`HEADER`]: a run that captures nothing to compare.
    Plain,
    /// [`RESULT_HEADER`]: a run that compares captures ([`OperationType::compares_captures`]).
    Results,
    /// [`RESTORE_HEADER`]: a restore preview or execute.
    Restore,
}

impl Columns {
    /// The columns of a run of `operation` (one the code no longer knows: the plain ones).
    fn of(operation: Option<OperationType>) -> Self {
        match operation {
            Some(OperationType::RestorePreview | OperationType::RestoreExecute) => Self::Restore,
            Some(operation) if operation.compares_captures() => Self::Results,
            _ => Self::Plain,
        }
    }

    /// The header row's names, in order.
    fn header(self) -> &'static [&'static str] {
        match self {
            Self::Plain => &HEADER,
            Self::Results => &RESULT_HEADER,
            Self::Restore => &RESTORE_HEADER,
        }
    }
}

/// What one export writes: which run, which of its items, and which columns.
#[derive(Debug, Clone)]
struct Export {
    run_id: i64,
    filter: Option<ItemFilter>,
    columns: Columns,
    /// The policies of a queued run that has no items yet ([`queries::queued_selection`]),
    /// written as pending items instead of the run's.
    selection: Option<Arc<[i64]>>,
}

#[derive(Debug, Deserialize)]
pub struct ItemsQuery {
    #[serde(default)]
    outcome: String,
}

/// The handler. The page guard has already sent anonymous visitors to sign-in; this checks the
/// membership again (the same rule as the run detail page), then streams.
pub async fn run_items_csv(
    State(state): State<AppState>,
    Path((tenant, run)): Path<(String, String)>,
    Query(query): Query<ItemsQuery>,
    session: Session,
) -> Response {
    match prepare(&state, &tenant, &run, &query, &session).await {
        Ok((scope, export)) => csv_response(state.db.clone(), scope, export),
        Err(error) => refusal(&error),
    }
}

async fn prepare(
    state: &AppState,
    tenant: &str,
    run: &str,
    query: &ItemsQuery,
    session: &Session,
) -> Result<(TenantScope, Export), AppError> {
    let context = authorize_session(state, session, tenant, Capability::View).await?;
    let not_found = || AppError::NotFound("This run does not exist in this tenant.".into());
    let run_id: i64 = run.parse().map_err(|_| not_found())?;
    let filter = match query.outcome.as_str() {
        "" => None,
        raw => Some(ItemFilter::parse(raw).ok_or_else(|| {
            AppError::invalid(
                "outcome",
                "Choose succeeded, failed, skipped, pending, or a result: changed, unchanged, \
                 deleted or new.",
            )
        })?),
    };
    let operation: String =
        sqlx::query_scalar("SELECT operation_type FROM runs WHERE tenant_id = $1 AND id = $2")
            .bind(context.scope.id())
            .bind(run_id)
            .fetch_optional(state.db.pool())
            .await?
            .ok_or_else(not_found)?;
    let columns = Columns::of(OperationType::parse(&operation));
    // Decided once: should the engine claim the run while the file streams, the file still
    // lists the run as it was when asked for, not part selection and part items.
    let selection = queries::queued_selection(&state.db, &context.scope, run_id, filter)
        .await?
        .map(Arc::from);
    Ok((
        context.scope,
        Export {
            run_id,
            filter,
            columns,
            selection,
        },
    ))
}

fn refusal(error: &AppError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(error)).into_response()
}

fn csv_response(db: Db, scope: TenantScope, export: Export) -> Response {
    let run_id = export.run_id;
    let filename = match export.filter {
        Some(filter) => format!("run-{run_id}-{}-items.csv", filter.as_str()),
        None => format!("run-{run_id}-items.csv"),
    };
    let header_line = Bytes::from(line(export.columns.header().iter().map(|h| h.to_string())));
    // The state is the last policy id written (0 before the first page; ids start at 1), or
    // None once the export is over.
    let pages = stream::unfold(Some(0_i64), move |after| {
        let db = db.clone();
        let scope = scope.clone();
        let export = export.clone();
        async move {
            match page(&db, &scope, &export, after?).await {
                Ok((_, None)) => None,
                Ok((text, Some(last))) => Some((Ok(Bytes::from(text)), Some(last))),
                Err(error) => {
                    // The status line has left already: a cut-off file is the honest answer.
                    tracing::error!(%error, run_id, "CSV export stopped");
                    Some((Err(std::io::Error::other("export failed")), None))
                }
            }
        }
    });
    // Fused: a body layer (compression) may poll once more after the end, which `unfold`
    // alone answers with a panic.
    let body = stream::once(async move { Ok::<_, std::io::Error>(header_line) })
        .chain(pages)
        .fuse();
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

/// One page of rows after policy id `after`, as CSV text, and the last policy id in it (None
/// when the page is empty).
async fn page(
    db: &Db,
    scope: &TenantScope,
    export: &Export,
    after: i64,
) -> Result<(String, Option<i64>), AppError> {
    let rows = match &export.selection {
        Some(ids) => selection_rows(db, scope, ids, after).await?,
        None => item_rows(db, scope, export, after).await?,
    };
    let mut text = String::new();
    let mut last = None;
    for row in rows {
        last = Some(row.policy_id);
        text.push_str(&line(row.into_cells(export.columns)));
    }
    Ok((text, last))
}

/// One page of a run's items (those the export's filter keeps) after policy id `after`.
async fn item_rows(
    db: &Db,
    scope: &TenantScope,
    export: &Export,
    after: i64,
) -> Result<Vec<ExportRow>, AppError> {
    let filter = match export.filter {
        Some(ItemFilter::Outcome(_)) => " AND i.outcome = $5",
        Some(ItemFilter::Drift(_)) => " AND i.drift = $5",
        None => "",
    };
    let sql = format!(
        "SELECT i.policy_id, p.display_name, p.policy_type, p.platform, p.graph_id, i.outcome, \
                i.drift, i.changed_settings, i.reason_code, i.message, i.finished_at, \
                i.restore_plan, i.restore_action, i.created_graph_id, i.restore_notes \
         FROM run_items i JOIN policies p ON p.tenant_id = i.tenant_id AND p.id = i.policy_id \
         WHERE i.tenant_id = $1 AND i.run_id = $2 AND i.policy_id > $3{filter} \
         ORDER BY i.policy_id LIMIT $4"
    );
    let mut query = sqlx::query_as::<_, ExportRow>(&sql)
        .bind(scope.id())
        .bind(export.run_id)
        .bind(after)
        .bind(PAGE_ROWS);
    if let Some(filter) = export.filter {
        query = query.bind(filter.as_str());
    }
    Ok(query.fetch_all(db.pool()).await?)
}

/// One page of a queued run's selection after policy id `after`, in the order of
/// [`item_rows`]: every policy pending, nothing done yet.
async fn selection_rows(
    db: &Db,
    scope: &TenantScope,
    ids: &[i64],
    after: i64,
) -> Result<Vec<ExportRow>, AppError> {
    let selected = db.backend().id_in("p.id", "$4", ids);
    let rows = selected
        .bind(
            sqlx::query_as::<_, (i64, String, String, String, String)>(&format!(
                "SELECT p.id, p.display_name, p.policy_type, p.platform, p.graph_id \
                 FROM policies p WHERE p.tenant_id = $1 AND p.id > $2 AND {} \
                 ORDER BY p.id LIMIT $3",
                selected.sql
            ))
            .bind(scope.id())
            .bind(after)
            .bind(PAGE_ROWS),
        )
        .fetch_all(db.pool())
        .await?;
    let pending = |(policy_id, display_name, policy_type, platform, graph_id)| ExportRow {
        policy_id,
        display_name,
        policy_type,
        platform,
        graph_id,
        outcome: ItemOutcome::Pending.as_str().to_owned(),
        drift: None,
        changed_settings: None,
        reason_code: None,
        message: None,
        finished_at: None,
        restore_plan: None,
        restore_action: None,
        created_graph_id: None,
        restore_notes: None,
    };
    Ok(rows.into_iter().map(pending).collect())
}

/// One item as the CSV writes it: every word as stored.
#[derive(FromRow)]
struct ExportRow {
    policy_id: i64,
    display_name: String,
    policy_type: String,
    platform: String,
    graph_id: String,
    outcome: String,
    /// What the item's capture found (`changed`, …), as stored; only for a run that compares.
    drift: Option<String>,
    changed_settings: Option<i64>,
    reason_code: Option<String>,
    message: Option<String>,
    finished_at: Option<i64>,
    /// What a restore planned or did, the Graph id of a policy it created and the safety
    /// checks' notes (JSON), as stored; only for a restore run.
    restore_plan: Option<String>,
    restore_action: Option<String>,
    created_graph_id: Option<String>,
    restore_notes: Option<String>,
}

impl ExportRow {
    /// The row's cells, in the order of `columns`' header.
    fn into_cells(self, columns: Columns) -> Vec<String> {
        let mut message = self.message.unwrap_or_default();
        let mut cells = vec![
            self.display_name,
            self.policy_type,
            self.platform,
            self.graph_id,
        ];
        if columns == Columns::Restore {
            // Read as the run's page reads it: an unknown spelling reads as none.
            let item = RestoreItemResult {
                plan: self.restore_plan.as_deref().and_then(PlanAction::parse),
                action: self
                    .restore_action
                    .as_deref()
                    .and_then(RestoreAction::parse),
                created_graph_id: self.created_graph_id,
            };
            // The page's label: Failed, else what the execute did, else the preview's plan.
            let action = ItemOutcome::parse(&self.outcome)
                .and_then(|outcome| item.label(outcome))
                .unwrap_or_default();
            cells.extend([
                self.outcome,
                action.to_owned(),
                item.created_graph_id.unwrap_or_default(),
            ]);
            // A blocked item succeeded (its preview read it) with no message: why it is
            // blocked is only in its notes, which the wizard lists.
            if message.is_empty() {
                message = blocked_reasons(self.restore_notes.as_deref());
            }
        } else {
            cells.push(self.outcome);
        }
        if columns != Columns::Plain {
            cells.push(self.drift.unwrap_or_default());
            cells.push(
                self.changed_settings
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            );
        }
        cells.extend([
            self.reason_code.unwrap_or_default(),
            message,
            self.finished_at.map(iso_8601).unwrap_or_default(),
        ]);
        cells
    }
}

/// Why a restore item is blocked, from its stored notes (JSON): each reason (a sentence), one
/// after the other; empty when there is none or the notes are unreadable.
fn blocked_reasons(notes: Option<&str>) -> String {
    notes
        .and_then(|notes| serde_json::from_str::<PlanNotes>(notes).ok())
        .map(|notes| notes.blocked.join(" "))
        .unwrap_or_default()
}

/// `2026-12-03T08:15:02.123Z`; empty for a value outside the calendar.
fn iso_8601(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// One CSV record with its CRLF.
fn line(cells: impl IntoIterator<Item = String>) -> String {
    let mut out = String::new();
    for (i, cell) in cells.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&field(&cell));
    }
    out.push_str("\r\n");
    out
}

/// What a spreadsheet reads as the start of a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One field: defused against formula injection, then quoted when RFC 4180 requires it or it
/// holds a `;` (the separator of spreadsheets in many locales). Excel opens a quote only at the
/// very start of a field, so once a `;`-splitting reader is inside a record, the quotes around a
/// later cell are plain characters and every `;` in it starts a cell of its own (a line break,
/// a record): each piece after a `;`, CR or LF that would start with a formula character or a
/// quote (which would open one) gets a `'` too (`a;=1` is written `"a;'=1"`), and so does one
/// that ends the cell (its closing quote would open one).
fn field(raw: &str) -> String {
    let mut defused = String::with_capacity(raw.len() + 2);
    if raw.starts_with(FORMULA_STARTS) {
        defused.push('\'');
    }
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        defused.push(c);
        if matches!(c, ';' | '\r' | '\n')
            && chars
                .peek()
                .is_none_or(|next| FORMULA_STARTS.contains(next) || *next == '"')
        {
            defused.push('\'');
        }
    }
    if defused.contains([',', ';', '"', '\r', '\n']) {
        format!("\"{}\"", defused.replace('"', "\"\""))
    } else {
        defused
    }
}

#[cfg(test)]
mod tests {
    use super::{field, iso_8601, line, Columns, ExportRow};
    use proptest::prelude::*;

    fn row(outcome: &str, message: Option<&str>) -> ExportRow {
        ExportRow {
            policy_id: 1,
            display_name: "P".into(),
            policy_type: "compliance".into(),
            platform: "iOS".into(),
            graph_id: "g".into(),
            outcome: outcome.into(),
            drift: Some("changed".into()),
            changed_settings: Some(2),
            reason_code: None,
            message: message.map(str::to_owned),
            finished_at: None,
            restore_plan: Some("blocked".into()),
            restore_action: None,
            created_graph_id: None,
            restore_notes: Some(r#"{"blocked":["A.","B."],"warnings":["W."]}"#.into()),
        }
    }

    #[test]
    fn restore_items_read_as_their_page_shows_them() {
        let cells = row("succeeded", None).into_cells(Columns::Restore);
        assert_eq!(
            cells,
            [
                "P",
                "compliance",
                "iOS",
                "g",
                "succeeded",
                "Blocked",
                "",
                "changed",
                "2",
                "",
                "A. B.",
                ""
            ]
        );
        // A failure wins over the plan, and its message over the notes.
        let cells = row("failed", Some("Graph refused it.")).into_cells(Columns::Restore);
        assert_eq!((&*cells[5], &*cells[10]), ("Failed", "Graph refused it."));
        // A failure recorded before any plan: Failed, as the page shows it.
        let mut unplanned = row("failed", None);
        unplanned.restore_plan = None;
        unplanned.restore_notes = Some("not json".into());
        let cells = unplanned.into_cells(Columns::Restore);
        assert_eq!((&*cells[5], &*cells[10]), ("Failed", ""));
        let mut created = row("succeeded", None);
        created.restore_action = Some("created".into());
        created.created_graph_id = Some("new".into());
        created.restore_notes = None;
        let cells = created.into_cells(Columns::Restore);
        assert_eq!((&*cells[5], &*cells[6]), ("Created", "new"));
        // Other runs keep their columns, and a restore's fields stay out of them.
        assert_eq!(
            row("succeeded", None).into_cells(Columns::Results),
            [
                "P",
                "compliance",
                "iOS",
                "g",
                "succeeded",
                "changed",
                "2",
                "",
                "",
                ""
            ]
        );
        assert_eq!(
            row("succeeded", None).into_cells(Columns::Plain),
            ["P", "compliance", "iOS", "g", "succeeded", "", "", ""]
        );
    }

    #[test]
    fn fields_are_quoted_and_defused() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        for start in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(
                field(start).trim_start_matches('"').starts_with('\''),
                "{start:?}"
            );
        }
        assert_eq!(line(["a".into(), "".into(), "c".into()]), "a,,c\r\n");
        // A spreadsheet that splits on `;` must not find a formula after one.
        // Nor in a later column, where its quote is a plain character: every piece after a
        // `;` (or a line break) that would start a formula or open a quote is defused too.
        assert_eq!(field("x;=1+1;"), "\"x;'=1+1;'\"");
        assert_eq!(field("a;b"), "\"a;b\"");
        assert_eq!(field("a;@SUM(1)"), "\"a;'@SUM(1)\"");
        assert_eq!(field("a;\"=1"), "\"a;'\"\"=1\"");
        assert_eq!(field("a\n-b\r\n+c"), "\"a\n'-b\r\n'+c\"");
        assert_eq!(field("a, b;c"), "\"a, b;c\"");
        assert_eq!(iso_8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_8601(1_764_750_902_123), "2025-12-03T08:35:02.123Z");
    }

    /// Reads one RFC 4180 record back (the parser a spreadsheet applies).
    fn parse(record: &str) -> Vec<String> {
        split(record, ',')
    }

    /// Reads one record back split on `separator` outside quotes: `,` as RFC 4180 does, or `;`
    /// as a spreadsheet in a locale whose list separator is `;` does (`,` is then a plain
    /// character). As Excel does, a quote opens only at the very start of a piece (anywhere
    /// else it is a plain character), and a line break outside quotes starts a record (here a
    /// piece).
    fn split(record: &str, separator: char) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut chars = record.strip_suffix("\r\n").unwrap().chars().peekable();
        let mut quoted = false;
        let mut at_start = true;
        while let Some(c) = chars.next() {
            let start = std::mem::replace(&mut at_start, false);
            match (quoted, c) {
                (false, c) if c == separator || c == '\r' || c == '\n' => {
                    cells.push(String::new());
                    at_start = true;
                }
                (false, '"') if start => quoted = true,
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    cells.last_mut().unwrap().push('"');
                }
                (true, '"') => quoted = false,
                (_, c) => cells.last_mut().unwrap().push(c),
            }
        }
        cells
    }

    /// What a cell reads back as: a `'` before a first formula character, and after a `;`, CR
    /// or LF followed by one, by a quote or by nothing.
    fn written(original: &str) -> String {
        let formula = |c: Option<char>| matches!(c, Some('=' | '+' | '-' | '@' | '\t' | '\r'));
        let mut out = String::new();
        if formula(original.chars().next()) {
            out.push('\'');
        }
        let chars: Vec<char> = original.chars().collect();
        for (i, c) in chars.iter().enumerate() {
            out.push(*c);
            let next = chars.get(i + 1).copied();
            if matches!(c, ';' | '\r' | '\n') && (formula(next) || matches!(next, Some('"') | None))
            {
                out.push('\'');
            }
        }
        out
    }

    #[test]
    fn a_later_column_holds_no_formula_after_a_semicolon() {
        for cells in [vec!["a", "b;=1"], vec!["a", "b;\"=1"], vec!["a", "b\n@x"]] {
            let record = line(cells.iter().map(|c| c.to_string()));
            for piece in split(&record, ';') {
                assert!(
                    !piece.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{piece:?} in {record:?}"
                );
            }
        }
    }

    proptest! {
        /// Any cells survive the round trip, and none reads back as a formula.
        #[test]
        fn any_cells_round_trip_without_formulas(
            cells in proptest::collection::vec(prop_oneof![".*", "[a-z;=+@\"\n-]{0,8}"], 1..6)
        ) {
            let record = line(cells.clone());
            // Nor does any piece of the record split on `;` outside quotes start a formula.
            for piece in split(&record, ';') {
                prop_assert!(
                    !piece.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{:?} in {:?}", piece, record
                );
            }
            let back = parse(&record);
            prop_assert_eq!(back.len(), cells.len());
            for (original, read) in cells.iter().zip(&back) {
                prop_assert!(!read.starts_with(['=', '+', '-', '@', '\t', '\r']));
                prop_assert_eq!(read, &written(original));
            }
        }
    }
}
