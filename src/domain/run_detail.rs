//! What the run detail page and the run panel show: one run with its items.

use serde::{Deserialize, Serialize};

use super::graph_wait::{GraphFigures, GraphWait};
use super::policy_type::PolicyType;
use super::reason_code::ReasonCode;
use super::restore::{PlanAction, RestoreAction, RestoreSource};
use super::run::StoredOperation;
use super::spelled::spelled_enum;
use super::versions::{CaptureResult, Drift};
use super::{AppError, RunStatus, Timestamp};

/// Items per run detail page unless the request asks for another size.
pub const RUN_ITEMS_PAGE_SIZE: i64 = 100;

/// The most items one request may ask for: a run may hold 10,000 items, and every poll of the
/// run detail page reloads its page.
pub const RUN_ITEMS_MAX_PAGE_SIZE: i64 = 500;

spelled_enum! {
    /// Where one policy of a run ended (or that it is still waiting); declared in the order the
    /// filter lists them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum ItemOutcome {
        Succeeded => ("succeeded", "Added"),
        Failed => ("failed", "Failed"),
        Skipped => ("skipped", "Skipped"),
        Pending => ("pending", "Waiting"),
    }
}

/// One policy of a run and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunItemRow {
    pub policy_id: i64,
    pub policy_name: String,
    pub policy_type: PolicyType,
    pub outcome: ItemOutcome,
    pub reason_code: Option<ReasonCode>,
    /// Sanitized on the server before it was stored.
    pub message: Option<String>,
    /// What a capture found (drift check, capture now, a restore's live state or evidence);
    /// `None` for other runs.
    pub result: Option<CaptureResult>,
    /// What a restore planned or did for the item; `None` for other runs.
    pub restore: Option<RestoreItemResult>,
}

/// One item of a restore run: the preview's plan, or what the execute did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreItemResult {
    pub plan: Option<PlanAction>,
    pub action: Option<RestoreAction>,
    /// The new Graph id of a policy the execute created.
    pub created_graph_id: Option<String>,
}

impl RestoreItemResult {
    /// What the run detail page shows: "Created", "Updated", "Unchanged" (an execute), the plan
    /// (a preview), or "Failed" when the item failed; `None` while it waits.
    pub fn label(&self, outcome: ItemOutcome) -> Option<&'static str> {
        match (outcome, self.action, self.plan) {
            (ItemOutcome::Failed, _, _) => Some("Failed"),
            (_, Some(action), _) => Some(action.label()),
            (_, None, Some(plan)) => Some(plan.label()),
            _ => None,
        }
    }
}

/// How a restore run is tied to the wizard: a preview to its source (the wizard opens at it),
/// an execute to the preview it executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestoreRun {
    Preview { source: RestoreSource },
    Execute { preview_run_id: i64 },
}

/// Which of a run's items a page lists: those of one outcome, or, for a capturing run, those
/// that compare one way with their base ("changed" in a drift check). One URL value (`outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ItemFilter {
    Outcome(ItemOutcome),
    Drift(Drift),
}

impl ItemFilter {
    /// The URL spelling: the outcome's or the drift's (the two sets of words do not overlap).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outcome(outcome) => outcome.as_str(),
            Self::Drift(drift) => drift.as_str(),
        }
    }

    /// Parses the URL spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        ItemOutcome::parse(raw)
            .map(Self::Outcome)
            .or_else(|| Drift::parse(raw).map(Self::Drift))
    }
}

/// What a run works on, as its page names and links it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunTarget {
    /// `name` is `None` when the set was deleted after the run started.
    BackupSet { id: i64, name: Option<String> },
    /// `name` is `None` when the policy is no longer in the inventory.
    Policy { id: i64, name: Option<String> },
    /// The tenant itself (a sync, a connection check).
    Tenant,
}

/// Which of a run's items a request wants: a validated offset and page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemWindow {
    offset: i64,
    limit: i64,
}

impl ItemWindow {
    /// Parses the request's `offset` (from 0) and `limit` (0 means [`RUN_ITEMS_PAGE_SIZE`],
    /// at most [`RUN_ITEMS_MAX_PAGE_SIZE`]); anything else is a 422.
    pub fn parse(offset: i64, limit: i64) -> Result<Self, AppError> {
        if offset < 0 {
            return Err(AppError::invalid(
                "offset",
                "The offset cannot be negative.",
            ));
        }
        let limit = match limit {
            0 => RUN_ITEMS_PAGE_SIZE,
            1..=RUN_ITEMS_MAX_PAGE_SIZE => limit,
            _ => {
                return Err(AppError::invalid(
                    "limit",
                    format!("The page size must be between 1 and {RUN_ITEMS_MAX_PAGE_SIZE}."),
                ))
            }
        };
        Ok(Self { offset, limit })
    }

    /// The offset to read from when `total` items match: past the end means the last page
    /// (a filtered page may empty while the run is polled).
    pub fn offset_within(self, total: i64) -> i64 {
        if self.offset < total || total == 0 {
            self.offset.min(total)
        } else {
            (total - 1) / self.limit * self.limit
        }
    }

    pub fn limit(self) -> i64 {
        self.limit
    }
}

/// One page of a run's items (of one outcome, when filtered), in policy name order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunItemPage {
    pub rows: Vec<RunItemRow>,
    /// Items matching the outcome filter, on every page.
    pub total: i64,
    /// Zero-based position of the first row (clamped to the last page).
    pub offset: i64,
    pub limit: i64,
}

impl RunItemPage {
    /// "Showing 1–100 of 2,345" (or "Showing 0 of 0" when nothing matches).
    pub fn range_text(&self) -> String {
        if self.rows.is_empty() {
            return format!("Showing 0 of {}", group_thousands(self.total));
        }
        format!(
            "Showing {}–{} of {}",
            group_thousands(self.offset + 1),
            group_thousands(self.offset + self.rows.len() as i64),
            group_thousands(self.total)
        )
    }

    /// The offset of the previous page, if there is one.
    pub fn previous_offset(&self) -> Option<i64> {
        (self.offset > 0).then(|| (self.offset - self.limit).max(0))
    }

    /// The offset of the next page, if there is one.
    pub fn next_offset(&self) -> Option<i64> {
        let next = self.offset + self.limit;
        (next < self.total).then_some(next)
    }

    /// The one-based number of this page, for the URL (`?page=3`).
    pub fn page_number(&self) -> i64 {
        self.offset / self.limit.max(1) + 1
    }
}

/// `2345` as "2,345".
pub fn group_thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A run with its counters, times, target and one page of its items (optionally only those of
/// one outcome).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetail {
    pub id: i64,
    pub operation_type: StoredOperation,
    pub status: RunStatus,
    /// Who started it; `None` for a run nobody started or whose user is gone.
    pub initiated_by: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub total_items: i64,
    pub processed_items: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub skipped: i64,
    /// Run-level failure (the whole run could not proceed).
    pub reason_code: Option<ReasonCode>,
    pub failure_message: Option<String>,
    pub target: RunTarget,
    /// The run's result in a line ("12 of 240 policies changed since this backup"), once it
    /// concluded.
    pub summary: Option<String>,
    pub items: RunItemPage,
    /// The run whose failed items this one retries (or whose cancelled items it resumes).
    pub retry_of: Option<i64>,
    /// The status of that run: a cancelled one is resumed, any other retried.
    pub retry_of_status: Option<RunStatus>,
    /// The runs that retried or resumed this one, newest first.
    pub retried_by: Vec<i64>,
    /// The items a retry (a resume, for a cancelled run) would take again; 0 when this run
    /// cannot be retried from here (active, nothing failed, or not a capture).
    pub retry_items: i64,
    /// What the run's captures are waiting for on Graph right now (only while running).
    pub graph_wait: Option<GraphWait>,
    pub graph: GraphFigures,
    /// Whether what is shown of the run is final: it has ended and no claim works on it any
    /// more. A cancelled run is not settled while the captures (or a restore's writes) that were
    /// in flight are still being recorded over the cancel's skips and its claim concludes: its
    /// pages go on polling until it is.
    pub settled: bool,
    /// For a restore run: its preview's source, or the preview it executed.
    pub restore: Option<RestoreRun>,
}

impl RunDetail {
    /// "Retry 3 failed" or, for a cancelled run, "Resume 120 cancelled"; `None` when there is
    /// nothing to retry, or not yet: a cancelled run's claim may still record the items that
    /// were in flight, and the server refuses a resume until the run is settled.
    pub fn retry_label(&self) -> Option<String> {
        if self.retry_items == 0 || !self.settled {
            return None;
        }
        let n = group_thousands(self.retry_items);
        Some(match self.status {
            // A resume also takes the run's failures (`runs::retry`): the label counts both.
            RunStatus::Cancelled if self.failed > 0 => format!("Resume {n} cancelled or failed"),
            RunStatus::Cancelled => format!("Resume {n} cancelled"),
            _ => format!("Retry {n} failed"),
        })
    }

    /// How long the run took, as "1 min 5 s"; `None` until it has both started and finished.
    pub fn duration(&self) -> Option<String> {
        let (start, end) = (self.started_at?, self.finished_at?);
        Some(format_duration(end.millis().saturating_sub(start.millis())))
    }
}

/// `wait` as it stands `elapsed_ms` after it was read: the time left counted down (not below
/// zero). A run's version does not move while its wait stands, so a page counts "resuming in
/// 12 s" down itself from the answer it kept.
pub fn counted_down(wait: GraphWait, elapsed_ms: i64) -> GraphWait {
    GraphWait {
        resumes_in_ms: wait
            .resumes_in_ms
            .map(|left| left.saturating_sub(elapsed_ms.max(0)).max(0)),
        ..wait
    }
}

/// Milliseconds as a short human duration ("850 ms", "12 s", "3 min 4 s", "2 h 5 min").
pub fn format_duration(millis: i64) -> String {
    let millis = millis.max(0);
    let secs = millis / 1000;
    match secs {
        0 => format!("{millis} ms"),
        1..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_spelling_round_trips() {
        for outcome in ItemOutcome::ALL {
            assert_eq!(ItemOutcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(ItemOutcome::parse("done"), None);
    }

    #[test]
    fn a_wait_counts_down_from_when_it_was_read() {
        use super::super::graph_wait::GraphWaitReason;
        let wait = GraphWait {
            reason: GraphWaitReason::Throttled,
            resumes_in_ms: Some(12_000),
        };
        assert_eq!(counted_down(wait, 3_000).resumes_in_ms, Some(9_000));
        assert_eq!(counted_down(wait, 20_000).resumes_in_ms, Some(0));
        assert_eq!(counted_down(wait, -5).resumes_in_ms, Some(12_000));
        let open = GraphWait {
            resumes_in_ms: None,
            ..wait
        };
        assert_eq!(counted_down(open, 3_000), open);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(format_duration(-5), "0 ms");
        assert_eq!(format_duration(850), "850 ms");
        assert_eq!(format_duration(12_400), "12 s");
        assert_eq!(format_duration(184_000), "3 min 4 s");
        assert_eq!(format_duration(7_500_000), "2 h 5 min");
    }

    #[test]
    fn restore_items_say_what_they_did_and_failures_win() {
        let item = |plan, action| RestoreItemResult {
            plan,
            action,
            created_graph_id: None,
        };
        let executed = item(Some(PlanAction::Update), Some(RestoreAction::Updated));
        assert_eq!(executed.label(ItemOutcome::Succeeded), Some("Updated"));
        assert_eq!(executed.label(ItemOutcome::Failed), Some("Failed"));
        let planned = item(Some(PlanAction::Unchanged), None);
        assert_eq!(planned.label(ItemOutcome::Succeeded), Some("No change"));
        assert_eq!(item(None, None).label(ItemOutcome::Pending), None);
    }

    #[test]
    fn item_windows_refuse_negative_offsets_and_bound_the_page_size() {
        assert_eq!(
            ItemWindow::parse(0, 0).unwrap().limit(),
            RUN_ITEMS_PAGE_SIZE
        );
        assert_eq!(ItemWindow::parse(200, 25).unwrap().limit(), 25);
        for (offset, limit, field) in [(-1, 0, "offset"), (0, -5, "limit"), (0, 501, "limit")] {
            let error = ItemWindow::parse(offset, limit).unwrap_err();
            assert_eq!(error.status(), 422);
            assert!(error.field_message(field).is_some(), "{offset} {limit}");
        }
    }

    #[test]
    fn an_offset_past_the_end_reads_the_last_page() {
        let window = ItemWindow::parse(300, 100).unwrap();
        assert_eq!(window.offset_within(250), 200);
        assert_eq!(window.offset_within(300), 200);
        assert_eq!(window.offset_within(301), 300);
        assert_eq!(window.offset_within(0), 0);
        assert_eq!(ItemWindow::parse(0, 100).unwrap().offset_within(0), 0);
    }

    #[test]
    fn pages_say_where_they_are() {
        let row = RunItemRow {
            policy_id: 1,
            policy_name: "p".into(),
            policy_type: crate::domain::PolicyType::Compliance,
            outcome: ItemOutcome::Pending,
            reason_code: None,
            message: None,
            result: None,
            restore: None,
        };
        let page = |offset: i64, rows: usize, total: i64| RunItemPage {
            rows: vec![row.clone(); rows],
            total,
            offset,
            limit: 100,
        };
        let first = page(0, 100, 2345);
        assert_eq!(first.range_text(), "Showing 1–100 of 2,345");
        assert_eq!(first.previous_offset(), None);
        assert_eq!(first.next_offset(), Some(100));
        assert_eq!(first.page_number(), 1);
        let last = page(2300, 45, 2345);
        assert_eq!(last.range_text(), "Showing 2,301–2,345 of 2,345");
        assert_eq!(last.previous_offset(), Some(2200));
        assert_eq!(last.next_offset(), None);
        assert_eq!(last.page_number(), 24);
        assert_eq!(page(0, 0, 0).range_text(), "Showing 0 of 0");
    }

    #[test]
    fn item_filters_read_outcomes_and_drift_without_overlap() {
        for outcome in ItemOutcome::ALL {
            assert_eq!(
                ItemFilter::parse(outcome.as_str()),
                Some(ItemFilter::Outcome(outcome))
            );
        }
        for drift in Drift::ALL {
            assert_eq!(
                ItemFilter::parse(drift.as_str()),
                Some(ItemFilter::Drift(drift))
            );
        }
        assert_eq!(ItemFilter::parse(""), None);
        assert_eq!(ItemFilter::parse("Changed"), None);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1_234_567), "1,234,567");
        assert_eq!(group_thousands(-2345), "-2,345");
    }
}
