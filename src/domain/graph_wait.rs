//! What a run tells about its conversation with Microsoft Graph: why its captures are waiting
//! right now (throttled, Graph unavailable, …) and, once it has ended, its Graph figures.

use super::spelled::spelled_enum;
use serde::{Deserialize, Serialize};

use super::run_detail::format_duration;

spelled_enum! {
    /// Why a run's captures are waiting on Microsoft Graph.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum GraphWaitReason {
        /// A 429 with `Retry-After`: Graph throttles the app in this tenant.
        Throttled => ("throttled", "throttled"),
        /// A 503 or 504: Graph is busy or down, retried with backoff.
        Unavailable => ("unavailable", "service unavailable"),
        /// No answer, or one cut short: retried with backoff.
        Unreachable => ("unreachable", "no answer"),
        /// This tenant's own request budget (the rate the app keeps under Graph's limit).
        RequestBudget => ("request_budget", "this tenant's request budget"),
    }
}

/// A wait of a running run, as the server saw it when it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphWait {
    pub reason: GraphWaitReason,
    /// Until the wait is expected to end, counted on the server when it answered; `None` when
    /// the wait has no known end (a backoff whose length Graph did not say).
    pub resumes_in_ms: Option<i64>,
}

impl GraphWait {
    /// "Waiting for Microsoft Graph (throttled): resuming in 12 s".
    pub fn text(&self) -> String {
        let head = format!("Waiting for Microsoft Graph ({})", self.reason.label());
        match self.resumes_in_ms {
            Some(ms) if ms >= 1_000 => format!("{head}: resuming in {}", format_duration(ms)),
            Some(_) => format!("{head}: resuming now"),
            None => head,
        }
    }
}

/// A run's Graph figures, kept when it ends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ssr", derive(sqlx::FromRow))]
pub struct GraphFigures {
    /// Requests sent to Graph (every attempt).
    #[cfg_attr(feature = "ssr", sqlx(rename = "graph_requests"))]
    pub requests: i64,
    /// Answers 429 (throttled).
    #[cfg_attr(feature = "ssr", sqlx(rename = "graph_throttled"))]
    pub throttled: i64,
    /// Answers 500–599.
    #[cfg_attr(feature = "ssr", sqlx(rename = "graph_server_errors"))]
    pub server_errors: i64,
    /// Attempts that repeated an earlier one.
    #[cfg_attr(feature = "ssr", sqlx(rename = "graph_retries"))]
    pub retries: i64,
    /// Time the captures spent waiting (throttling, backoff, the request budget), summed over
    /// captures that waited at the same time.
    #[cfg_attr(feature = "ssr", sqlx(rename = "graph_waited_ms"))]
    pub waited_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip() {
        for reason in GraphWaitReason::ALL {
            assert_eq!(GraphWaitReason::parse(reason.as_str()), Some(reason));
        }
        assert_eq!(GraphWaitReason::parse("busy"), None);
    }

    #[test]
    fn the_wait_reads_like_a_sentence() {
        let wait = GraphWait {
            reason: GraphWaitReason::Throttled,
            resumes_in_ms: Some(12_300),
        };
        assert_eq!(
            wait.text(),
            "Waiting for Microsoft Graph (throttled): resuming in 12 s"
        );
        let soon = GraphWait {
            resumes_in_ms: Some(300),
            ..wait
        };
        assert_eq!(
            soon.text(),
            "Waiting for Microsoft Graph (throttled): resuming now"
        );
        let open = GraphWait {
            reason: GraphWaitReason::Unavailable,
            resumes_in_ms: None,
        };
        assert_eq!(
            open.text(),
            "Waiting for Microsoft Graph (service unavailable)"
        );
    }
}
