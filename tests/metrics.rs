//! Prometheus metrics: after a submit, a run captured from the simulator (one capture throttled
//! once) and a repeated submit, `/metrics` on its own listener shows the runs submitted (reused
//! or not) and finished, the items by outcome, the queue depth, the Graph answers by class and
//! the 429, the retry wait, the run duration and the worker's heartbeat. Runs that end outside
//! an item's recording count too: a cancelled run with its skipped items, the items a run failed
//! as a whole closes, and a repeated drift check answered early. A worker busy with a run keeps
//! its heartbeat fresh, and a scrape answers in time when the database does not. Every request of the app is answered with a fresh `x-request-id`.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::metrics::{sample, scrape_once, MetricsEndpoint};
use common::{Form, TestApp, ADMIN, CONTOSO, OPERATOR};
use tenantatlas::domain::SubmittedRun;
use tenantatlas::graph_sim::{AppSetup, Fault, TokenFault};
use tenantatlas::server::graph::{
    ClientSecret, GraphAccess, GraphClient, GraphConfig, SecretResolver,
};
use tenantatlas::server::metrics;

both_backends!(TestApp:
    metrics_count_submits_runs_items_and_graph_answers,
    metrics_count_cancels_runs_failed_as_a_whole_and_repeated_drift_checks,
    every_answer_names_its_request,
    a_busy_worker_keeps_its_heartbeat_fresh,
    a_scrape_does_not_wait_for_the_database,
);

async fn metrics_count_submits_runs_items_and_graph_answers(app: TestApp) {
    let handle = metrics::install().unwrap();
    let (sim, client) = common::sim_and_client(30).await;
    let policies =
        common::insert_sim_compliance(&app.db, &client, &common::creds(CONTOSO), 4).await;
    sim.set_fault(
        &policies[0].1,
        Fault::Throttle {
            times: 1,
            retry_after_secs: 1,
        },
    );
    sim.set_fault(&policies[1].1, Fault::NotFound);
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Metrics").await;
    let ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
    let run_id = common::submit(&app, &operator, CONTOSO, set, &ids).await;
    assert_eq!(
        common::submit(&app, &operator, CONTOSO, set, &ids).await,
        run_id,
        "the repeat is reused"
    );

    // Scraped while the run waits: the queue depth is read from the database.
    let endpoint = MetricsEndpoint::serve(metrics::router(handle, app.db.clone())).await;
    let before = endpoint.scrape().await;
    assert_eq!(
        sample(&before, r#"tenantatlas_queue_runs{status="pending"}"#),
        Some(1.0),
        "{before}"
    );

    let worker = common::sim_worker(&app.db, &client, "w1");
    worker.try_execute_task().await.unwrap();

    let text = endpoint.scrape().await;
    let op = r#"operation="backup_set.add_policies""#;
    let expect = |series: String, value: f64| {
        assert_eq!(sample(&text, &series), Some(value), "{series} in\n{text}");
    };
    expect(
        format!(r#"tenantatlas_runs_submitted_total{{{op},reused="false"}}"#),
        1.0,
    );
    expect(
        format!(r#"tenantatlas_runs_submitted_total{{{op},reused="true"}}"#),
        1.0,
    );
    expect(
        format!(r#"tenantatlas_runs_finished_total{{{op},status="completed_with_errors"}}"#),
        1.0,
    );
    expect(
        format!(r#"tenantatlas_run_items_total{{{op},outcome="succeeded",reason_code=""}}"#),
        3.0,
    );
    expect(
        format!(
            r#"tenantatlas_run_items_total{{{op},outcome="failed",reason_code="policy_not_found"}}"#
        ),
        1.0,
    );
    expect(
        format!(r#"tenantatlas_run_duration_seconds_count{{{op},status="completed_with_errors"}}"#),
        1.0,
    );
    expect(r#"tenantatlas_queue_runs{status="pending"}"#.into(), 0.0);
    expect(r#"tenantatlas_queue_runs{status="running"}"#.into(), 0.0);
    expect("tenantatlas_graph_throttled_total".into(), 1.0);
    expect("tenantatlas_graph_retry_wait_seconds_count".into(), 1.0);
    expect("tenantatlas_active_runs".into(), 0.0);
    expect("tenantatlas_submit_duration_seconds_count".into(), 2.0);
    // Every Graph request the simulator saw, by class (the token endpoint is not Graph).
    let counters = sim.counters();
    let class = |c: &str| {
        sample(
            &text,
            &format!(r#"tenantatlas_graph_requests_total{{class="{c}"}}"#),
        )
    };
    assert_eq!(
        class("4xx"),
        Some((counters.with_status(429) + counters.with_status(404)) as f64),
        "{text}"
    );
    assert_eq!(
        class("2xx").unwrap() + class("4xx").unwrap(),
        counters.graph_requests() as f64,
        "{text}"
    );
    let age = sample(&text, "tenantatlas_instance_heartbeat_age_seconds").unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    for name in ["tenantatlas_runs_finished_total", "tenantatlas_queue_runs"] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} is described"
        );
    }
}

async fn metrics_count_cancels_runs_failed_as_a_whole_and_repeated_drift_checks(app: TestApp) {
    let handle = metrics::install().unwrap();
    let (sim, client) = common::sim_and_client(30).await;
    let policies =
        common::insert_sim_compliance(&app.db, &client, &common::creds(CONTOSO), 6).await;
    let ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
    let operator = app.sign_in(OPERATOR).await;
    let admin = app.sign_in(ADMIN).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Metrics").await;
    // The set holds three policies, so a drift check has something to compare.
    common::submit(&app, &operator, CONTOSO, set, &ids[0..3]).await;
    common::sim_worker(&app.db, &client, "w1")
        .try_execute_task()
        .await
        .unwrap();

    // A drift check submitted twice is one run, then cancelled while it waits.
    let check_drift = || async {
        let form = Form::tenant(CONTOSO).field("backup_set_id", set);
        let submitted: SubmittedRun = app
            .answer(Some(&operator), "runs/check-drift", &form)
            .await
            .expect("the drift check is queued");
        submitted
    };
    let check = check_drift().await;
    let repeat = check_drift().await;
    assert_eq!((repeat.run_id, repeat.reused), (check.run_id, true));
    app.cancel_run(&admin, CONTOSO, check.run_id)
        .await
        .expect("the drift check is cancelled");

    // A secret the tenant rejects fails a run of three policies as a whole.
    common::submit(&app, &operator, CONTOSO, set, &ids[3..6]).await;
    sim.set_app(
        CONTOSO,
        AppSetup {
            token_error: Some(TokenFault::WrongSecret),
            ..AppSetup::default()
        },
    );
    let graph = GraphAccess {
        client: GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url)).unwrap(),
        secrets: SecretResolver::with_demo_secret(ClientSecret::new("sim-secret")),
    };
    tenantatlas::server::runs_worker(&app.db, graph)
        .try_execute_task()
        .await
        .unwrap();

    let text = scrape_once(metrics::router(handle, app.db.clone())).await;
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    };
    expect(
        r#"tenantatlas_runs_finished_total{operation="backup_set.drift_check",status="cancelled"}"#,
        1.0,
    );
    expect(
        r#"tenantatlas_run_items_total{operation="backup_set.drift_check",outcome="skipped",reason_code="cancelled"}"#,
        3.0,
    );
    expect(
        r#"tenantatlas_runs_finished_total{operation="backup_set.add_policies",status="failed"}"#,
        1.0,
    );
    expect(
        r#"tenantatlas_run_items_total{operation="backup_set.add_policies",outcome="failed",reason_code="authentication_failed"}"#,
        3.0,
    );
    expect(
        r#"tenantatlas_runs_submitted_total{operation="backup_set.drift_check",reused="false"}"#,
        1.0,
    );
    expect(
        r#"tenantatlas_runs_submitted_total{operation="backup_set.drift_check",reused="true"}"#,
        1.0,
    );
}

/// A worker busy with a run claims nothing until it ends, as a runner whose every slot is busy;
/// each batch of the run's outcomes renews the lease, and is a heartbeat. Scraped while the run
/// keeps the worker busy for 2 s and more, the heartbeat's age stays below a second, the shortest
/// `--worker-poll-seconds`.
async fn a_busy_worker_keeps_its_heartbeat_fresh(app: TestApp) {
    let handle = metrics::install().unwrap();
    let (sim, client) = common::sim_and_client(30).await;
    let policies =
        common::insert_sim_compliance(&app.db, &client, &common::creds(CONTOSO), 12).await;
    let mut knobs = sim.knobs();
    knobs.latency_ms = 400;
    sim.set_knobs(knobs);
    let operator = app.sign_in(OPERATOR).await;
    let set = common::backup_set(&app, &operator, CONTOSO, "Busy").await;
    let ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
    common::submit(&app, &operator, CONTOSO, set, &ids).await;

    let endpoint = MetricsEndpoint::serve(metrics::router(handle, app.db.clone())).await;
    // One item at a time: a batch of outcomes every capture.
    let worker = common::sim_worker(&app.db, &client, "busy").with_items_at_once(1);
    let started = Instant::now();
    let work = tokio::spawn(async move { worker.try_execute_task().await });
    let mut ages = Vec::new();
    while !work.is_finished() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let text = endpoint.scrape().await;
        if let Some(age) = sample(&text, "tenantatlas_instance_heartbeat_age_seconds") {
            ages.push((started.elapsed(), age));
        }
    }
    work.await.unwrap().unwrap();
    assert!(
        started.elapsed() > Duration::from_secs(2),
        "the run kept the worker busy for {:?} only",
        started.elapsed()
    );
    assert!(ages.len() >= 5, "scraped while the run went on: {ages:?}");
    assert!(
        ages.iter().all(|(_, age)| *age < 1.0),
        "heartbeat ages (time into the run, age): {ages:?}"
    );
}

/// With every connection of the app's pool checked out, as when the database is down or the pool
/// is exhausted, a scrape answers within the queue read's timeout, not after the pool's 10 s
/// acquire timeout (Prometheus' default `scrape_timeout`, so every scrape would time out and the
/// heartbeat-age alert for exactly this failure would never fire). It still has the heartbeat's
/// age, and no queue depth: the figures read before are not served as current.
async fn a_scrape_does_not_wait_for_the_database(app: TestApp) {
    let handle = metrics::install().unwrap();
    metrics::heartbeat();
    let endpoint = MetricsEndpoint::serve(metrics::router(handle, app.db.clone())).await;
    let pending = r#"tenantatlas_queue_runs{status="pending"}"#;
    let running = r#"tenantatlas_queue_runs{status="running"}"#;
    let before = endpoint.scrape().await;
    assert_eq!(sample(&before, pending), Some(0.0), "{before}");
    assert_eq!(sample(&before, running), Some(0.0), "{before}");

    let pool = app.db.pool();
    let mut held = Vec::new();
    for _ in 0..pool.options().get_max_connections() {
        held.push(pool.acquire().await.expect("a connection of the pool"));
    }
    let started = Instant::now();
    let text = tokio::time::timeout(Duration::from_secs(5), endpoint.scrape())
        .await
        .unwrap_or_else(|_| panic!("/metrics did not answer within 5 s with the pool exhausted"));
    let took = started.elapsed();
    assert!(
        took < metrics::QUEUE_READ_TIMEOUT + Duration::from_secs(1),
        "/metrics answered after {took:?}"
    );
    let age = sample(&text, "tenantatlas_instance_heartbeat_age_seconds")
        .unwrap_or_else(|| panic!("no heartbeat age in\n{text}"));
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(sample(&text, pending), None, "{text}");
    assert_eq!(sample(&text, running), None, "{text}");
    assert_eq!(
        sample(&text, "tenantatlas_queue_runs_read_ok"),
        Some(0.0),
        "{text}"
    );

    drop(held);
    let after = endpoint.scrape().await;
    assert_eq!(sample(&after, pending), Some(0.0), "{after}");
    assert_eq!(sample(&after, running), Some(0.0), "{after}");
    assert_eq!(
        sample(&after, "tenantatlas_queue_runs_read_ok"),
        Some(1.0),
        "{after}"
    );
}

async fn every_answer_names_its_request(app: TestApp) {
    let mut seen = BTreeSet::new();
    for path in [
        "/healthz",
        "/",
        "/sign-in",
        "/no-such-page",
        "/api/runs/list",
    ] {
        let response = app.get(None, path).await;
        let id = response
            .headers()
            .get("x-request-id")
            .unwrap_or_else(|| panic!("{path}: no x-request-id"))
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert!(seen.insert(id), "a fresh id per request");
    }
    // A client's own id is not believed.
    let response = reqwest::Client::new()
        .get(app.url("/healthz"))
        .header("x-request-id", "forged")
        .send()
        .await
        .unwrap();
    assert_ne!(response.headers()["x-request-id"], "forged");
}
