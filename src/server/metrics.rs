//! Prometheus metrics, served on a listener of their own (`--metrics-addr`, off by default) so
//! they are never exposed next to the app by accident. The recorder is the `metrics` crate's
//! global one; every metric the app records is named and described here, and the call sites use
//! the small functions below.
//!
//! `tenantatlas_queue_runs` is read from the database at each scrape: it is the same figure on
//! every instance, so sum it over instances never — aggregate with `max by (status)`. The read
//! is given [`QUEUE_READ_TIMEOUT`], not the pool's 10 s acquire timeout, which is Prometheus'
//! default `scrape_timeout`: with the database down or the pool exhausted, a scrape still answers
//! in time, with the heartbeat's age (the alert for exactly that failure) and without the queue's
//! series, so no earlier figure is served as current; `tenantatlas_queue_runs_read_ok` says which.
//! The queue's family is written by the scrape itself, next to the recorder's text, so its
//! series exist only when this scrape read them.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::Timestamp;
use crate::server::db::Db;

/// Seconds: from 5 ms (a submit) to an hour (a large run).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

static INSTALLED: Mutex<Option<PrometheusHandle>> = Mutex::new(None);
/// When this instance's worker last reached the database (a claim, a lease renewal or a batch
/// of outcomes), in ms.
static LAST_HEARTBEAT: AtomicI64 = AtomicI64::new(0);

/// Installs the process's recorder (once; later calls return the same handle).
pub fn install() -> Result<PrometheusHandle, String> {
    let mut installed = INSTALLED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .map_err(|error| error.to_string())?
        .install_recorder()
        .map_err(|error| error.to_string())?;
    describe();
    *installed = Some(handle.clone());
    Ok(handle)
}

fn describe() {
    describe_counter!(
        "tenantatlas_runs_submitted_total",
        "Runs submitted, by operation and whether an identical active run was returned (reused)."
    );
    describe_histogram!(
        "tenantatlas_submit_duration_seconds",
        "Time to create or reuse a run for a submit (a repeated restore execute is not timed)."
    );
    describe_counter!(
        "tenantatlas_runs_finished_total",
        "Runs ended, by operation and status: by this instance's worker, or by a cancel it answered."
    );
    describe_histogram!(
        "tenantatlas_run_duration_seconds",
        "From a run's start to its end, by operation and status (a run cancelled before it started has none)."
    );
    describe_counter!(
        "tenantatlas_run_items_total",
        "Run items ended, by operation, outcome and reason code: one by one, closed with their failed run, or skipped by a cancel (an in-flight item a cancel skipped is counted again with its outcome)."
    );
    describe_gauge!(
        "tenantatlas_active_runs",
        "Runs this instance's worker is working on."
    );
    describe_gauge!(
        "tenantatlas_instance_heartbeat_age_seconds",
        "Seconds since this instance's worker last reached the database."
    );
    describe_counter!(
        "tenantatlas_graph_requests_total",
        "Requests to Microsoft Graph, by status class of the answer (none: no answer)."
    );
    describe_counter!(
        "tenantatlas_graph_throttled_total",
        "Answers 429 from Microsoft Graph."
    );
    describe_histogram!(
        "tenantatlas_graph_retry_wait_seconds",
        "Waits before retrying a Graph request (Retry-After or backoff)."
    );
}

pub fn run_submitted(operation: &'static str, reused: bool, took: Duration) {
    let reused = if reused { "true" } else { "false" };
    counter!("tenantatlas_runs_submitted_total", "operation" => operation, "reused" => reused)
        .increment(1);
    histogram!("tenantatlas_submit_duration_seconds").record(took.as_secs_f64());
}

/// A repeat answered with the active run before the submit path (a repeated restore execute,
/// found while its gates are checked): counted as reused, not timed.
pub fn run_reused(operation: &'static str) {
    counter!("tenantatlas_runs_submitted_total", "operation" => operation, "reused" => "true")
        .increment(1);
}

pub fn run_finished(operation: &'static str, status: &'static str, took: Option<Duration>) {
    counter!("tenantatlas_runs_finished_total", "operation" => operation, "status" => status)
        .increment(1);
    if let Some(took) = took {
        histogram!("tenantatlas_run_duration_seconds", "operation" => operation, "status" => status)
            .record(took.as_secs_f64());
    }
}

/// `count` items of one operation ended with one outcome and reason.
pub fn items_recorded(
    operation: &'static str,
    outcome: &'static str,
    reason: Option<&'static str>,
    count: u64,
) {
    counter!(
        "tenantatlas_run_items_total",
        "operation" => operation,
        "outcome" => outcome,
        "reason_code" => reason.unwrap_or("")
    )
    .increment(count);
}

/// One more (or, with a negative `by`, one less) run in this instance's hands.
pub fn active_runs(by: f64) {
    gauge!("tenantatlas_active_runs").increment(by);
}

/// The worker reached the database.
pub fn heartbeat() {
    LAST_HEARTBEAT.store(Timestamp::now().millis(), Ordering::Relaxed);
}

/// A Graph answer with `status` (`None`: no answer).
pub fn graph_answer(status: Option<u16>) {
    let class = match status {
        Some(200..=299) => "2xx",
        Some(300..=399) => "3xx",
        Some(400..=499) => "4xx",
        Some(500..=599) => "5xx",
        _ => "none",
    };
    counter!("tenantatlas_graph_requests_total", "class" => class).increment(1);
    if status == Some(429) {
        counter!("tenantatlas_graph_throttled_total").increment(1);
    }
}

pub fn graph_retry_wait(wait: Duration) {
    histogram!("tenantatlas_graph_retry_wait_seconds").record(wait.as_secs_f64());
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    db: Db,
}

/// The `/metrics` router of the metrics listener.
pub fn router(handle: PrometheusHandle, db: Db) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape { handle, db })
}

async fn scrape(State(scrape): State<Scrape>) -> Response {
    let queue = match tokio::time::timeout(QUEUE_READ_TIMEOUT, queue_depth(&scrape.db)).await {
        Ok(Ok(depth)) => Some(depth),
        Ok(Err(error)) => {
            tracing::warn!(%error, "could not read the queue depth for /metrics");
            None
        }
        Err(_) => {
            tracing::warn!(
                timeout = ?QUEUE_READ_TIMEOUT,
                "the queue depth for /metrics was not read in time"
            );
            None
        }
    };
    let last = LAST_HEARTBEAT.load(Ordering::Relaxed);
    if last > 0 {
        let age = (Timestamp::now().millis() - last).max(0) as f64 / 1000.0;
        gauge!("tenantatlas_instance_heartbeat_age_seconds").set(age);
    }
    scrape.handle.run_upkeep();
    let mut text = scrape.handle.render();
    render_queue(&mut text, queue);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

/// How long a scrape waits for the queue's depth: well inside Prometheus' default 10 s
/// `scrape_timeout` (and the pool's 10 s acquire timeout), and far above the query's
/// milliseconds on a reachable database.
pub const QUEUE_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Appends the queue's families to the recorder's `text`: `tenantatlas_queue_runs` by status when
/// this scrape read them (`queue`), none otherwise, and `tenantatlas_queue_runs_read_ok`, 1 or 0.
fn render_queue(text: &mut String, queue: Option<(i64, i64)>) {
    use std::fmt::Write;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(
        "# HELP tenantatlas_queue_runs Pending and running runs in the database (database-wide: \
         aggregate with max, never sum; absent when this scrape could not read them).\n\
         # TYPE tenantatlas_queue_runs gauge\n",
    );
    if let Some((pending, running)) = queue {
        let _ = writeln!(
            text,
            "tenantatlas_queue_runs{{status=\"pending\"}} {pending}"
        );
        let _ = writeln!(
            text,
            "tenantatlas_queue_runs{{status=\"running\"}} {running}"
        );
    }
    text.push('\n');
    let _ = write!(
        text,
        "# HELP tenantatlas_queue_runs_read_ok Whether this scrape read the queue depth from the \
         database in time (1) or not (0).\n\
         # TYPE tenantatlas_queue_runs_read_ok gauge\n\
         tenantatlas_queue_runs_read_ok {}\n",
        u8::from(queue.is_some())
    );
}

async fn queue_depth(db: &Db) -> Result<(i64, i64), sqlx::Error> {
    let row: (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN 1 ELSE 0 END), 0), \
                COALESCE(SUM(CASE WHEN status = 'running' THEN 1 ELSE 0 END), 0) \
         FROM runs WHERE status IN ('pending', 'running')",
    )
    .fetch_one(db.pool())
    .await?;
    Ok(row)
}
