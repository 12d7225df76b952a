//! What the simulator saw: every request with its arrival time, endpoint and answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One request as the simulator recorded it on arrival.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Milliseconds since the simulator started.
    pub at_ms: f64,
    /// The HTTP method (`GET`, `POST`, …).
    pub method: String,
    /// `token`, `openid`, `batch` (the envelope; its requests are logged one by one),
    /// `list:<collection>`, `get:<collection>`, `settings`, `definitionValues`,
    /// `get:definitionValues`, `definition`, `presentationValues`, `scheduledActionsForRule`,
    /// `scheduledActionConfigurations`, `assignments`, `list:groups`, `get:groups`,
    /// `list:assignmentFilters`, `list:roleScopeTags` (and their `get:`), writes as
    /// `create:<collection>`, `update:<collection>`, `delete:<collection>` and
    /// `action:<assign|updateDefinitionValues|scheduleActionsForRules>`,
    /// `function:getOmaSettingPlainTextValue`, or `unknown`.
    pub endpoint: String,
    /// The path without the query string.
    pub path: String,
    /// The query string as sent (still percent-encoded), empty when there is none.
    pub query: String,
    /// The answer's status; 0 for a request that was never answered (a hang).
    pub status: u16,
    /// A write's body as sent (JSON, or the text when it is not JSON); `None` for reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// A copy of the request log with the questions tests ask of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SimCounters {
    pub requests: Vec<RequestRecord>,
}

impl RequestRecord {
    /// A request to Graph itself: not sign-in, and not a batch envelope (its requests count).
    pub fn is_graph(&self) -> bool {
        !matches!(self.endpoint.as_str(), "token" | "openid" | "batch")
    }

    /// Whether it asked to change something (any method but GET and HEAD).
    pub fn is_write(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD")
    }

    /// The decoded value of one query option, if sent (e.g. `$expand`).
    pub fn query_param(&self, name: &str) -> Option<String> {
        reqwest::Url::parse(&format!("http://sim/?{}", self.query))
            .ok()?
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl SimCounters {
    /// Requests to Graph endpoints (sign-in and batch envelopes excluded).
    pub fn graph_requests(&self) -> usize {
        self.requests.iter().filter(|r| r.is_graph()).count()
    }

    /// Graph requests that asked to change something.
    pub fn writes(&self) -> Vec<&RequestRecord> {
        self.requests
            .iter()
            .filter(|r| r.is_graph() && r.is_write())
            .collect()
    }

    /// Requests to the token endpoint.
    pub fn token_requests(&self) -> usize {
        self.requests
            .iter()
            .filter(|r| r.endpoint == "token")
            .count()
    }

    /// Requests answered with `status`.
    pub fn with_status(&self, status: u16) -> usize {
        self.requests.iter().filter(|r| r.status == status).count()
    }

    /// Requests whose path contains `fragment` (e.g. a policy id), in arrival order.
    pub fn for_path(&self, fragment: &str) -> Vec<&RequestRecord> {
        self.requests
            .iter()
            .filter(|r| r.path.contains(fragment))
            .collect()
    }

    /// Counts by endpoint, then status.
    pub fn by_endpoint(&self) -> BTreeMap<String, BTreeMap<u16, usize>> {
        let mut counts: BTreeMap<String, BTreeMap<u16, usize>> = BTreeMap::new();
        for r in &self.requests {
            *counts
                .entry(r.endpoint.clone())
                .or_default()
                .entry(r.status)
                .or_default() += 1;
        }
        counts
    }

    /// The most Graph requests that arrived within any `window`: proves a client never went
    /// faster than allowed.
    pub fn max_graph_requests_in(&self, window: Duration) -> usize {
        let window_ms = window.as_secs_f64() * 1000.0;
        let mut times: Vec<f64> = self
            .requests
            .iter()
            .filter(|r| r.is_graph())
            .map(|r| r.at_ms)
            .collect();
        times.sort_by(f64::total_cmp);
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end] - times[start] >= window_ms {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(at_ms: f64, endpoint: &str, status: u16) -> RequestRecord {
        RequestRecord {
            at_ms,
            method: "GET".into(),
            endpoint: endpoint.into(),
            path: "/p".into(),
            query: "$expand=a%2Cb".into(),
            status,
            body: None,
        }
    }

    #[test]
    fn sliding_window_maximum() {
        let counters = SimCounters {
            requests: vec![
                record(0.0, "token", 200),
                record(0.0, "get:x", 200),
                record(500.0, "get:x", 429),
                record(999.0, "get:x", 200),
                record(1000.0, "get:x", 200),
                record(1600.0, "get:x", 200),
            ],
        };
        assert_eq!(counters.max_graph_requests_in(Duration::from_secs(1)), 3);
        assert_eq!(counters.graph_requests(), 5);
        assert_eq!(counters.token_requests(), 1);
        assert_eq!(counters.with_status(429), 1);
        assert_eq!(counters.by_endpoint()["get:x"][&200], 4);
        assert_eq!(
            counters.requests[0].query_param("$expand").as_deref(),
            Some("a,b")
        );
        assert!(counters.writes().is_empty());
    }
}
