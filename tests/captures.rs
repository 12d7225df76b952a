//! Runs that capture without a selection, end to end on both engines: **Sync from Intune**
//! (`inventory.sync`), **Capture now** (`policy.capture_snapshot`) and **Compare with Intune** on
//! a backup set (`backup_set.drift_check`). Each is started through its server function, runs on
//! the server's own worker against the Graph simulator (which changes policies as an admin in
//! Intune would), and is read back the way the pages read it.

#![cfg(feature = "ssr")]

mod common;

use common::{TestApp, CONTOSO, OPERATOR, OUTSIDER, READONLY};
use serde_json::Value;
use tenantatlas::server::engine::worker::{Outcome, Worker};
use tenantatlas::server::{runs_worker, seed};

both_backends!(local Fixture:
    a_sync_run_brings_the_inventory_in_line_and_says_what_changed,
    capture_now_stores_a_version_only_when_the_content_changed,
    a_drift_check_tells_unchanged_changed_and_deleted_apart,
    starts_are_deduplicated_refused_without_the_role_and_validated,
    racing_starts_make_one_run_of_each_kind,
);

struct Fixture {
    app: TestApp,
    demo: seed::DemoGraph,
    worker: Worker,
    operator: String,
}

impl Fixture {
    async fn start(backend: common::Backend) -> Self {
        let demo = seed::start_demo_graph(0).await.unwrap();
        let app = TestApp::spawn_with_graph(backend, demo.access.clone()).await;
        let worker = runs_worker(&app.db, demo.access.clone());
        let operator = app.sign_in(OPERATOR).await;
        Self {
            app,
            demo,
            worker,
            operator,
        }
    }

    /// Calls a server function as the operator; the answer's status and JSON.
    async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self.app.call_as(&self.operator, endpoint, form).await;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Starts a run through `endpoint` and runs the queue until it has ended; its id.
    async fn run(&self, endpoint: &str, form: &[(&str, &str)]) -> i64 {
        let (status, run) = self.call(endpoint, form).await;
        assert_eq!(status, 200, "{endpoint}: {run}");
        let run_id = run["run_id"].as_i64().expect("a queued run");
        loop {
            match self.worker.try_execute_task().await.unwrap() {
                Outcome::TaskCompleted { run_id: done } if done == run_id => return run_id,
                Outcome::TaskCompleted { .. } => {}
                Outcome::EmptyQueue => panic!("run {run_id} was not run"),
            }
        }
    }

    async fn sync(&self) -> i64 {
        self.run("runs/sync-inventory", &[("tenant", CONTOSO)])
            .await
    }

    async fn capture(&self, policy_id: i64) -> i64 {
        let id = policy_id.to_string();
        self.run(
            "runs/capture-policy",
            &[("tenant", CONTOSO), ("policy_id", id.as_str())],
        )
        .await
    }

    /// What `runs/activity` says about `operation` on `target`.
    async fn activity(&self, operation: &str, target: i64) -> Value {
        let target = target.to_string();
        let (status, activity) = self
            .call(
                "runs/activity",
                &[
                    ("tenant", CONTOSO),
                    ("operation", operation),
                    ("target_id", target.as_str()),
                ],
            )
            .await;
        assert_eq!(status, 200, "{activity}");
        activity
    }

    /// The run as the run detail page reads it, items filtered by `filter` (may be empty).
    async fn detail(&self, run_id: i64, filter: &str) -> Value {
        let id = run_id.to_string();
        let (status, detail) = self
            .call(
                "runs/get",
                &[
                    ("tenant", CONTOSO),
                    ("id", id.as_str()),
                    ("outcome", filter),
                ],
            )
            .await;
        assert_eq!(status, 200, "{detail}");
        detail
    }

    /// Contoso's inventory row of a Graph id.
    async fn policy_id(&self, graph_id: &str) -> i64 {
        sqlx::query_scalar("SELECT id FROM policies WHERE graph_id = $1 AND tenant_id = $2")
            .bind(graph_id)
            .bind(common::tenant_id(&self.app.db, CONTOSO).await)
            .fetch_one(self.app.db.pool())
            .await
            .unwrap()
    }

    async fn versions_of(&self, policy_id: i64) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM policy_snapshots WHERE policy_id = $1")
            .bind(policy_id)
            .fetch_one(self.app.db.pool())
            .await
            .unwrap()
    }

    async fn last_notification(&self) -> (String, String) {
        sqlx::query_as("SELECT title, body FROM notifications ORDER BY id DESC LIMIT 1")
            .fetch_one(self.app.db.pool())
            .await
            .unwrap()
    }
}

async fn a_sync_run_brings_the_inventory_in_line_and_says_what_changed(f: Fixture) {
    let in_intune = f.demo.sim.policies(CONTOSO);
    let run = f.sync().await;
    let detail = f.detail(run, "").await;
    assert_eq!(detail["status"], "Completed", "{detail}");
    assert_eq!(detail["target"]["kind"], "tenant");
    let added = common::count(&f.app.db, "policies").await;
    assert!(added >= in_intune.len() as i64);
    let summary = detail["summary"].as_str().unwrap().to_owned();
    assert!(
        summary.starts_with(&format!("{} added, 0 updated", in_intune.len())),
        "{summary}"
    );
    assert_eq!(
        f.last_notification().await,
        ("Inventory sync: Succeeded".into(), summary.clone())
    );

    // Intune changes: one policy renamed, one deleted; the next sync says so.
    let (renamed, deleted) = (&in_intune[0], &in_intune[1]);
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &renamed.id, "Renamed in Intune"));
    assert!(f.demo.sim.remove_policy(CONTOSO, &deleted.id));
    let second = f.sync().await;
    let summary = f.detail(second, "").await["summary"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        summary,
        format!(
            "0 added, 1 updated, {} unchanged, 1 gone.",
            in_intune.len() - 2
        )
    );
    let gone: Option<i64> =
        sqlx::query_scalar("SELECT gone_from_intune_at FROM policies WHERE graph_id = $1")
            .bind(&deleted.id)
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert!(
        gone.is_some(),
        "the deleted policy is marked gone, not removed"
    );

    // The inventory page's line: the last sync, how it ended and what it did.
    let activity = f.activity("inventory.sync", 0).await;
    assert_eq!(activity["active"], Value::Null);
    assert_eq!(activity["last"]["id"], second);
    assert_eq!(activity["last"]["status"], "Completed");
    assert_eq!(activity["last"]["summary"], summary.as_str());
}

async fn capture_now_stores_a_version_only_when_the_content_changed(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[2].id.clone();
    let policy = f.policy_id(&graph_id).await;

    let first = f.capture(policy).await;
    let detail = f.detail(first, "").await;
    assert_eq!(detail["status"], "Completed", "{detail}");
    assert_eq!(detail["target"]["kind"], "policy");
    assert_eq!(detail["target"]["id"], policy);
    assert_eq!(detail["items"]["rows"][0]["result"]["drift"], "New");
    assert_eq!(f.versions_of(policy).await, 1);

    // Nothing changed in Intune: no new version, and the run says so.
    let again = f.capture(policy).await;
    let detail = f.detail(again, "").await;
    let result = &detail["items"]["rows"][0]["result"];
    assert_eq!(result["drift"], "Unchanged", "{detail}");
    assert_eq!(result["snapshot_id"], result["base_snapshot_id"]);
    assert_eq!(f.versions_of(policy).await, 1);
    assert!(detail["summary"].as_str().unwrap().starts_with("No change"));

    // Renamed in Intune: a second version, one setting changed, linked to its diff.
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &graph_id, "Renamed for capture"));
    let changed = f.capture(policy).await;
    let activity = f.activity("policy.capture_snapshot", policy).await;
    assert_eq!(activity["last"]["id"], changed);
    let capture = &activity["last"]["capture"];
    assert_eq!(capture["drift"], "Changed", "{activity}");
    assert!(capture["changed_settings"].as_i64().unwrap() >= 1);
    assert_eq!(f.versions_of(policy).await, 2);
    let (from, to) = (
        capture["base_snapshot_id"].to_string(),
        capture["snapshot_id"].to_string(),
    );
    let id = policy.to_string();
    let (status, diff) = f
        .call(
            "policies/diff",
            &[
                ("tenant", CONTOSO),
                ("id", id.as_str()),
                ("from", from.as_str()),
                ("to", to.as_str()),
            ],
        )
        .await;
    assert_eq!(status, 200, "{diff}");
    let changes = diff["comparison"]["changes"].to_string();
    assert!(changes.contains("Renamed for capture"), "{changes}");

    // Deleted in Intune: the capture says so and the inventory marks it gone.
    assert!(f.demo.sim.remove_policy(CONTOSO, &graph_id));
    let deleted = f.capture(policy).await;
    let detail = f.detail(deleted, "").await;
    assert_eq!(detail["items"]["rows"][0]["result"]["drift"], "Deleted");
    assert_eq!(detail["summary"], "The policy no longer exists in Intune.");
}

async fn a_drift_check_tells_unchanged_changed_and_deleted_apart(f: Fixture) {
    f.sync().await;
    let sims = f.demo.sim.policies(CONTOSO);
    let mut ids = Vec::new();
    for sim in &sims[..4] {
        ids.push(f.policy_id(&sim.id).await);
    }
    let set = common::backup_set(&f.app, &f.operator, CONTOSO, "Drift").await;
    let mut form = vec![
        ("tenant".to_owned(), CONTOSO.to_owned()),
        ("backup_set_id".to_owned(), set.clone()),
    ];
    for (i, id) in ids.iter().enumerate() {
        form.push((format!("policy_ids[{i}]"), id.to_string()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    f.run("runs/add-policies", &form).await;

    // In Intune since the backup: one renamed, one deleted, two untouched.
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &sims[0].id, "Drifted name"));
    assert!(f.demo.sim.remove_policy(CONTOSO, &sims[1].id));
    let run = f
        .run(
            "runs/check-drift",
            &[("tenant", CONTOSO), ("backup_set_id", set.as_str())],
        )
        .await;
    let detail = f.detail(run, "").await;
    assert_eq!(detail["status"], "Completed", "{detail}");
    assert_eq!(
        detail["summary"],
        "1 of 4 policies changed since this backup, 1 deleted in Intune."
    );
    assert_eq!(
        f.last_notification().await,
        (
            "Drift check: Succeeded".into(),
            "1 of 4 policies changed since this backup, 1 deleted in Intune.".into()
        )
    );
    // The result filter lists each kind; a changed item links to its diff.
    let changed = f.detail(run, "changed").await;
    let rows = changed["items"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{changed}");
    assert_eq!(rows[0]["policy_id"], ids[0]);
    assert!(rows[0]["result"]["changed_settings"].as_i64().unwrap() >= 1);
    assert_ne!(
        rows[0]["result"]["base_snapshot_id"],
        rows[0]["result"]["snapshot_id"]
    );
    let deleted = f.detail(run, "deleted").await;
    assert_eq!(deleted["items"]["rows"][0]["policy_id"], ids[1]);
    let unchanged = f.detail(run, "unchanged").await;
    assert_eq!(unchanged["items"]["total"], 2);
    // Captured the way the backup was, an unchanged policy is the backup's own version.
    for row in unchanged["items"]["rows"].as_array().unwrap() {
        assert_eq!(
            row["result"]["snapshot_id"], row["result"]["base_snapshot_id"],
            "{row}"
        );
    }
    // The backup itself is untouched: its items still hold the versions captured then.
    let held: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM backup_items i JOIN run_items r ON r.policy_id = i.policy_id \
         WHERE r.run_id = $1 AND i.snapshot_id = r.base_snapshot_id",
    )
    .bind(run)
    .fetch_one(f.app.db.pool())
    .await
    .unwrap();
    assert_eq!(held, 4);
    let activity = f
        .activity("backup_set.drift_check", set.parse().unwrap())
        .await;
    assert_eq!(activity["last"]["id"], run);
}

async fn starts_are_deduplicated_refused_without_the_role_and_validated(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[0].id.clone();
    let policy = f.policy_id(&graph_id).await.to_string();
    let capture = [("tenant", CONTOSO), ("policy_id", policy.as_str())];
    // A double-click makes one run.
    let (_, first) = f.call("runs/capture-policy", &capture).await;
    let (_, second) = f.call("runs/capture-policy", &capture).await;
    assert_eq!(first["run_id"], second["run_id"]);
    assert_eq!(
        (first["reused"].clone(), second["reused"].clone()),
        (false.into(), true.into())
    );
    let (_, sync_a) = f.call("runs/sync-inventory", &[("tenant", CONTOSO)]).await;
    let (_, sync_b) = f.call("runs/sync-inventory", &[("tenant", CONTOSO)]).await;
    assert_eq!(sync_a["run_id"], sync_b["run_id"]);

    // A read-only member may look, not start; another tenant's member may do neither.
    let runs_before = common::count(&f.app.db, "runs").await;
    for (email, expected) in [(READONLY, 403), (OUTSIDER, 403)] {
        let cookie = f.app.sign_in(email).await;
        for (endpoint, form) in [
            ("runs/capture-policy", capture.to_vec()),
            ("runs/sync-inventory", vec![("tenant", CONTOSO)]),
        ] {
            let response = f.app.call_as(&cookie, endpoint, &form).await;
            assert_eq!(response.status(), expected, "{email} → {endpoint}");
        }
    }
    let outsider = f.app.sign_in(OUTSIDER).await;
    let response = f
        .app
        .call_as(
            &outsider,
            "runs/activity",
            &[("tenant", CONTOSO), ("operation", "inventory.sync")],
        )
        .await;
    assert_eq!(response.status(), 403);

    // Bad input: a 4xx with a reason, and nothing written.
    let empty = common::backup_set(&f.app, &f.operator, CONTOSO, "Empty").await;
    let (status, error) = f
        .call(
            "runs/check-drift",
            &[("tenant", CONTOSO), ("backup_set_id", empty.as_str())],
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert!(error.to_string().contains("nothing to compare"), "{error}");
    for (endpoint, form) in [
        (
            "runs/capture-policy",
            vec![("tenant", CONTOSO), ("policy_id", "987654321")],
        ),
        (
            "runs/check-drift",
            vec![("tenant", CONTOSO), ("backup_set_id", "987654321")],
        ),
    ] {
        let (status, error) = f.call(endpoint, &form).await;
        assert_eq!(status, 404, "{endpoint}: {error}");
    }
    for operation in [
        "backup_set.add_policies",
        "restore.execute",
        "",
        "inventory.sync'--",
    ] {
        let (status, _) = f
            .call(
                "runs/activity",
                &[
                    ("tenant", CONTOSO),
                    ("operation", operation),
                    ("target_id", "1"),
                ],
            )
            .await;
        assert_eq!(status, 422, "{operation:?}");
    }
    assert_eq!(common::count(&f.app.db, "runs").await, runs_before);
}

async fn racing_starts_make_one_run_of_each_kind(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[0].id.clone();
    let policy = f.policy_id(&graph_id).await.to_string();
    let manager = f.app.sign_in("manager@contoso.example").await;
    // 20 of each start at once, from two members: one run of each kind, the others reuse it.
    type Start<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let starts: Vec<Start> = vec![
        (
            "runs/sync-inventory",
            vec![("tenant", CONTOSO)],
            f.operator.as_str(),
        ),
        (
            "runs/capture-policy",
            vec![("tenant", CONTOSO), ("policy_id", policy.as_str())],
            manager.as_str(),
        ),
        (
            "tenants/check-connection",
            vec![("tenant", CONTOSO)],
            manager.as_str(),
        ),
    ];
    for (endpoint, form, cookie) in &starts {
        let calls = (0..20).map(|_| f.app.call_as(cookie, endpoint, form));
        let answers = futures::future::join_all(calls).await;
        let mut ids = Vec::new();
        for answer in answers {
            assert_eq!(answer.status(), 200, "{endpoint}");
            let run: Value = answer.json().await.unwrap();
            ids.push(run["run_id"].as_i64().unwrap());
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 1, "{endpoint}: {ids:?}");
    }
    let active: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM runs WHERE status IN ('pending', 'running')")
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(active, 3);
}
