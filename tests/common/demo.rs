//! A server on the demo Graph (the simulator holding the demo tenants' policies) with the run
//! engine's worker, driven one run at a time: what the tests of runs that call Graph share.

use serde_json::Value;
use tenantatlas::server::engine::worker::{Outcome, Worker};
use tenantatlas::server::{runs_worker, seed};

use tenantatlas::domain::SubmittedRun;

use super::{tenant_id, Backend, Form, TestApp, CONTOSO};

/// The app, the simulator behind it and a worker the test runs by hand (no polling, no sleeps).
pub struct DemoApp {
    pub app: TestApp,
    pub demo: seed::DemoGraph,
    pub worker: Worker,
}

impl DemoApp {
    pub async fn start(backend: Backend) -> Self {
        let demo = seed::start_demo_graph(0)
            .await
            .expect("the demo Graph starts");
        let app = TestApp::spawn_with_graph(backend, demo.access.clone()).await;
        let worker = runs_worker(&app.db, demo.access.clone());
        Self { app, demo, worker }
    }

    /// Calls a server function as `cookie`: the answer's status and its JSON (or its text as a
    /// JSON string).
    pub async fn call_as(
        &self,
        cookie: &str,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> (u16, Value) {
        let response = self.app.call_as(cookie, endpoint, form).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("an answer");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Runs the queue until run `run_id` has ended.
    pub async fn finish(&self, run_id: i64) {
        loop {
            match self
                .worker
                .try_execute_task()
                .await
                .expect("the worker runs")
            {
                Outcome::TaskCompleted { run_id: done } if done == run_id => return,
                Outcome::TaskCompleted { .. } => {}
                Outcome::EmptyQueue => panic!("run {run_id} was not run"),
            }
        }
    }

    /// Starts (or reuses) a run through `endpoint` as `cookie`, which must succeed.
    pub async fn start_as(
        &self,
        cookie: &str,
        endpoint: &str,
        form: &[(&str, &str)],
    ) -> SubmittedRun {
        let form = Form::default().fields(form);
        self.app
            .answer(Some(cookie), endpoint, &form)
            .await
            .unwrap_or_else(|refusal| panic!("{endpoint}: {refusal:?}"))
    }

    /// Starts a run through `endpoint` as `cookie` and runs the queue until it has ended; its id.
    pub async fn run_as(&self, cookie: &str, endpoint: &str, form: &[(&str, &str)]) -> i64 {
        let run_id = self.start_as(cookie, endpoint, form).await.run_id;
        self.finish(run_id).await;
        run_id
    }

    /// Contoso's inventory row of a Graph id.
    pub async fn policy_id(&self, graph_id: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM policies WHERE graph_id = $1 AND tenant_id = $2")
            .bind(graph_id)
            .bind(tenant_id(&self.app.db, CONTOSO).await)
            .fetch_one(self.app.db.pool())
            .await
            .expect("the policy is in the inventory")
    }
}
