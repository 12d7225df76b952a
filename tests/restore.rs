//! Defensive restore end to end on both engines: a backup captured from the Graph simulator,
//! Intune changed behind it, a `restore.preview` (strictly read-only: a simulator that refuses
//! every write proves it), the execute gates checked on the server, a `restore.execute` that
//! writes the backup back (update in place, create anew) and ends with evidence, and a second
//! restore that writes nothing. Every call goes through the server functions the wizard uses.

#![cfg(feature = "ssr")]

mod common;

use common::{DemoApp, Form, CONTOSO, OPERATOR, OUTSIDER, READONLY};
use serde_json::Value;
use tenantatlas::server::seed;

both_backends!(local Fixture:
    a_restore_brings_back_every_type_and_ends_with_evidence,
    the_preview_never_writes,
    the_execute_gates_hold_on_the_server,
    only_owners_and_managers_may_restore,
    an_item_changed_since_the_preview_is_not_written,
    a_missing_permission_or_group_blocks_the_restore,
);

const MANAGER: &str = "manager@contoso.example";
const TENANT_NAME: &str = seed::DEMO_TENANTS[0].1;
/// The options a restore backs up and previews with.
const WITH_ASSIGNMENTS_AND_SCOPE_TAGS: &[(&str, &str)] = &[
    ("include_assignments", "true"),
    ("include_scope_tags", "true"),
];

/// The demo app, as a manager of Contoso (who may restore).
struct Fixture {
    demo_app: DemoApp,
    manager: String,
}

impl std::ops::Deref for Fixture {
    type Target = DemoApp;

    fn deref(&self) -> &DemoApp {
        &self.demo_app
    }
}

/// One policy of each type in a backup set, with the inventory ids and Graph ids.
struct Backup {
    set: i64,
    policies: Vec<(i64, String)>,
}

impl Fixture {
    async fn start(backend: common::Backend) -> Self {
        let demo_app = DemoApp::start(backend).await;
        let manager = demo_app.app.sign_in(MANAGER).await;
        Self { demo_app, manager }
    }

    async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.call_as(&self.manager, endpoint, form).await
    }

    /// Starts a run through `endpoint` as the manager and runs it to its end; its id.
    async fn run(&self, endpoint: &str, form: &[(&str, &str)]) -> i64 {
        self.run_as(&self.manager, endpoint, form).await
    }

    /// Syncs the inventory and backs up one policy of each type (assignments and scope tags
    /// included).
    async fn backup(&self) -> Backup {
        self.run("runs/sync-inventory", &[("tenant", CONTOSO)])
            .await;
        let sims = self.demo.sim.policies(CONTOSO);
        let mut policies = Vec::new();
        for kind in [
            "configurationPolicies",
            "deviceConfigurations",
            "deviceCompliancePolicies",
            "groupPolicyConfigurations",
        ] {
            let sim = sims
                .iter()
                .find(|p| p.kind.collection() == kind && p.assignment_count > 0)
                .or_else(|| sims.iter().find(|p| p.kind.collection() == kind))
                .expect("the demo tenant has every type");
            policies.push((self.policy_id(&sim.id).await, sim.id.clone()));
        }
        let set = common::backup_set(&self.app, &self.manager, CONTOSO, "Restore me").await;
        let ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
        let form = Form::tenant(CONTOSO)
            .field("backup_set_id", set)
            .fields(WITH_ASSIGNMENTS_AND_SCOPE_TAGS)
            .list("policy_ids", &ids);
        self.run("runs/add-policies", &form.pairs()).await;
        Backup { set, policies }
    }

    /// Runs a preview of restoring `ids` of the set (assignments included); its id and plan.
    async fn preview(&self, set: i64, ids: &[i64]) -> (i64, Value) {
        let run = self.start_preview(&self.manager, set, ids).await;
        assert_eq!(run.0, 200, "{}", run.1);
        let run_id = run.1["run_id"].as_i64().unwrap();
        self.finish(run_id).await;
        (run_id, self.plan(run_id).await)
    }

    async fn start_preview(&self, cookie: &str, set: i64, ids: &[i64]) -> (u16, Value) {
        let form = Form::tenant(CONTOSO)
            .field("source", format!("set-{set}"))
            .fields(WITH_ASSIGNMENTS_AND_SCOPE_TAGS)
            .list("policy_ids", ids);
        self.call_as(cookie, "runs/restore-preview", &form.pairs())
            .await
    }

    async fn plan(&self, preview: i64) -> Value {
        let id = preview.to_string();
        let (status, plan) = self
            .call(
                "restore/preview",
                &[("tenant", CONTOSO), ("run_id", id.as_str())],
            )
            .await;
        assert_eq!(status, 200, "{plan}");
        plan
    }

    async fn execute_as(
        &self,
        cookie: &str,
        preview: i64,
        reviewed: bool,
        name: &str,
    ) -> (u16, Value) {
        let id = preview.to_string();
        let reviewed = if reviewed { "true" } else { "false" };
        self.call_as(
            cookie,
            "runs/restore-execute",
            &[
                ("tenant", CONTOSO),
                ("preview_run_id", id.as_str()),
                ("reviewed", reviewed),
                ("tenant_name", name),
            ],
        )
        .await
    }

    /// Executes `preview` with both confirmations and runs it to its end; the run's detail.
    async fn execute(&self, preview: i64) -> Value {
        let (status, run) = self
            .execute_as(&self.manager, preview, true, TENANT_NAME)
            .await;
        assert_eq!(status, 200, "{run}");
        let run_id = run["run_id"].as_i64().unwrap();
        self.finish(run_id).await;
        let id = run_id.to_string();
        let (status, detail) = self
            .call("runs/get", &[("tenant", CONTOSO), ("id", id.as_str())])
            .await;
        assert_eq!(status, 200, "{detail}");
        detail
    }

    /// The Graph writes the simulator has seen since its counters were reset.
    fn writes(&self) -> Vec<String> {
        self.demo
            .sim
            .counters()
            .requests
            .iter()
            .filter(|r| r.is_graph() && r.is_write())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    async fn runs(&self) -> i64 {
        common::count(&self.app.db, "runs").await
    }
}

/// The plan of the item of `policy_id`.
fn item(plan: &Value, policy_id: i64) -> &Value {
    plan["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["policy_id"] == policy_id)
        .unwrap_or_else(|| panic!("no item of policy {policy_id} in {plan}"))
}

async fn a_restore_brings_back_every_type_and_ends_with_evidence(f: Fixture) {
    let backup = f.backup().await;
    let ids: Vec<i64> = backup.policies.iter().map(|(id, _)| *id).collect();
    // Intune changes behind the backup: every policy edited, the device configuration deleted
    // (a type without secret settings: a secret, never captured, cannot be created anew).
    let (deleted_id, deleted_graph) = backup.policies[1].clone();
    for (_, graph_id) in &backup.policies {
        assert!(f.demo.sim.change_settings(CONTOSO, graph_id));
    }
    assert!(f.demo.sim.remove_policy(CONTOSO, &deleted_graph));

    let (preview, plan) = f.preview(backup.set, &ids).await;
    assert_eq!(plan["status"], "Completed", "{plan}");
    assert_eq!(plan["not_executable"], Value::Null, "{plan}");
    assert_eq!(item(&plan, deleted_id)["plan"], "create");
    for (id, _) in backup.policies.iter().filter(|(id, _)| *id != deleted_id) {
        let planned = item(&plan, *id);
        assert_eq!(planned["plan"], "update", "{planned}");
        assert!(
            planned["changed_settings"].as_i64().unwrap() >= 1,
            "{planned}"
        );
        assert_ne!(planned["live_snapshot_id"], planned["backup_snapshot_id"]);
    }

    f.demo.sim.reset_counters();
    let detail = f.execute(preview).await;
    assert_eq!(detail["status"], "Completed", "{detail}");
    assert_eq!(
        detail["summary"], "4 of 4 now match the backup.",
        "{detail}"
    );
    assert!(!f.writes().is_empty());
    assert!(
        f.writes().iter().all(|w| !w.starts_with("DELETE")),
        "a restore never deletes: {:?}",
        f.writes()
    );
    // The deleted policy was created anew; its record follows the new id.
    let new_graph_id: String = sqlx::query_scalar("SELECT graph_id FROM policies WHERE id = $1")
        .bind(deleted_id)
        .fetch_one(f.app.db.pool())
        .await
        .unwrap();
    assert_ne!(new_graph_id, deleted_graph);
    assert!(f
        .demo
        .sim
        .policies(CONTOSO)
        .iter()
        .any(|p| p.id == new_graph_id));
    // Each policy's current version is the backup's again.
    let current: Vec<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT bi.snapshot_id, p.current_snapshot_id FROM backup_items bi \
         JOIN policies p ON p.id = bi.policy_id WHERE bi.backup_set_id = $1",
    )
    .bind(backup.set)
    .fetch_all(f.app.db.pool())
    .await
    .unwrap();
    assert_eq!(current.len(), 4);
    for (backup_version, now) in current {
        assert_eq!(Some(backup_version), now);
    }
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'restore.item_written'")
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(audited, 4, "one audit row per item written");

    // The same restore again, after a fresh preview: every item unchanged, zero writes.
    let (again, plan) = f.preview(backup.set, &ids).await;
    for id in &ids {
        assert_eq!(item(&plan, *id)["plan"], "unchanged", "{plan}");
    }
    f.demo.sim.reset_counters();
    let detail = f.execute(again).await;
    assert_eq!(detail["status"], "Completed", "{detail}");
    assert_eq!(f.writes(), Vec::<String>::new());
    let actions: Vec<Option<String>> =
        sqlx::query_scalar("SELECT restore_action FROM run_items WHERE run_id = $1")
            .bind(detail["id"].as_i64().unwrap())
            .fetch_all(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(actions, vec![Some("unchanged".to_owned()); 4]);
}

async fn the_preview_never_writes(f: Fixture) {
    let backup = f.backup().await;
    let ids: Vec<i64> = backup.policies.iter().map(|(id, _)| *id).collect();
    for (_, graph_id) in &backup.policies {
        assert!(f.demo.sim.change_settings(CONTOSO, graph_id));
    }
    assert!(f.demo.sim.remove_policy(CONTOSO, &backup.policies[0].1));
    // A simulator that fails every request but a GET.
    f.demo.sim.set_reject_writes(true);
    f.demo.sim.reset_counters();
    let (_, plan) = f.preview(backup.set, &ids).await;
    assert_eq!(plan["status"], "Completed", "{plan}");
    let counters = f.demo.sim.counters();
    assert!(counters.graph_requests() > 0);
    assert_eq!(f.writes(), Vec::<String>::new());
    let methods: std::collections::BTreeSet<&str> = counters
        .requests
        .iter()
        .filter(|r| r.is_graph())
        .map(|r| r.method.as_str())
        .collect();
    assert_eq!(methods, ["GET"].into(), "only reads reach Graph");
}

async fn the_execute_gates_hold_on_the_server(f: Fixture) {
    let backup = f.backup().await;
    let ids: Vec<i64> = backup.policies.iter().map(|(id, _)| *id).collect();
    assert!(f.demo.sim.change_settings(CONTOSO, &backup.policies[1].1));
    let (preview, _) = f.preview(backup.set, &ids).await;
    let runs = f.runs().await;

    // The request's own gates: 422, nothing queued.
    let padded = format!("{TENANT_NAME} ");
    for (reviewed, name) in [
        (true, "Contoso"),
        (true, "contoso (demo)"),
        (true, ""),
        (true, padded.as_str()),
        (false, TENANT_NAME),
    ] {
        let (status, body) = f.execute_as(&f.manager, preview, reviewed, name).await;
        assert_eq!(status, 422, "{reviewed} {name:?}: {body}");
    }
    assert_eq!(f.runs().await, runs);

    // A preview that is too old: 409.
    let finished: i64 = sqlx::query_scalar("SELECT finished_at FROM runs WHERE id = $1")
        .bind(preview)
        .fetch_one(f.app.db.pool())
        .await
        .unwrap();
    let aged = finished - 16 * 60 * 1_000;
    sqlx::query("UPDATE runs SET finished_at = $1 WHERE id = $2")
        .bind(aged)
        .bind(preview)
        .execute(f.app.db.pool())
        .await
        .unwrap();
    let (status, body) = f.execute_as(&f.manager, preview, true, TENANT_NAME).await;
    assert_eq!(status, 409, "{body}");
    assert!(f.plan(preview).await["not_executable"] == "PreviewExpired");

    // The backup changed since the preview: 409.
    let (preview, _) = f.preview(backup.set, &ids).await;
    let (policy, _) = backup.policies[2];
    let other = common::insert_snapshot(
        &f.app.db,
        CONTOSO,
        policy,
        &serde_json::json!({"displayName": "another backup"}),
        'f',
        5,
    )
    .await;
    let held: i64 = sqlx::query_scalar(
        "SELECT snapshot_id FROM backup_items WHERE backup_set_id = $1 AND policy_id = $2",
    )
    .bind(backup.set)
    .bind(policy)
    .fetch_one(f.app.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "UPDATE backup_items SET snapshot_id = $1 WHERE backup_set_id = $2 AND policy_id = $3",
    )
    .bind(other)
    .bind(backup.set)
    .bind(policy)
    .execute(f.app.db.pool())
    .await
    .unwrap();
    let (status, body) = f.execute_as(&f.manager, preview, true, TENANT_NAME).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        f.runs().await,
        runs + 1,
        "only the second preview was queued"
    );
    sqlx::query(
        "UPDATE backup_items SET snapshot_id = $1 WHERE backup_set_id = $2 AND policy_id = $3",
    )
    .bind(held)
    .bind(backup.set)
    .bind(policy)
    .execute(f.app.db.pool())
    .await
    .unwrap();

    // A current preview: a double submit is one run; once it ended, the preview is spent.
    let (first, second) = tokio::join!(
        f.execute_as(&f.manager, preview, true, TENANT_NAME),
        f.execute_as(&f.manager, preview, true, TENANT_NAME),
    );
    assert_eq!((first.0, second.0), (200, 200), "{} {}", first.1, second.1);
    assert_eq!(first.1["run_id"], second.1["run_id"]);
    f.finish(first.1["run_id"].as_i64().unwrap()).await;
    let (status, body) = f.execute_as(&f.manager, preview, true, TENANT_NAME).await;
    assert_eq!(status, 409, "{body}");

    // A preview that is not a preview of this tenant: 404.
    let (status, _) = f
        .execute_as(
            &f.manager,
            first.1["run_id"].as_i64().unwrap(),
            true,
            TENANT_NAME,
        )
        .await;
    assert_eq!(status, 404);
}

async fn only_owners_and_managers_may_restore(f: Fixture) {
    let backup = f.backup().await;
    let ids: Vec<i64> = backup.policies.iter().map(|(id, _)| *id).collect();
    let (preview, _) = f.preview(backup.set, &ids).await;
    let runs = f.runs().await;
    for email in [OPERATOR, READONLY, OUTSIDER] {
        let cookie = f.app.sign_in(email).await;
        let (status, body) = f.start_preview(&cookie, backup.set, &ids).await;
        assert_eq!(status, 403, "{email} preview: {body}");
        let (status, body) = f.execute_as(&cookie, preview, true, TENANT_NAME).await;
        assert_eq!(status, 403, "{email} execute: {body}");
    }
    assert_eq!(f.runs().await, runs, "nothing was queued");
    // Every member may read the plan; a non-member may not.
    let operator = f.app.sign_in(OPERATOR).await;
    let id = preview.to_string();
    let form = [("tenant", CONTOSO), ("run_id", id.as_str())];
    assert_eq!(f.call_as(&operator, "restore/preview", &form).await.0, 200);
    let outsider = f.app.sign_in(OUTSIDER).await;
    assert_eq!(f.call_as(&outsider, "restore/preview", &form).await.0, 403);

    // A queued restore run is cancelled only by those who may restore.
    let (status, queued) = f.start_preview(&f.manager, backup.set, &ids[..1]).await;
    assert_eq!(status, 200, "{queued}");
    let id = queued["run_id"].as_i64().unwrap().to_string();
    let form = [("tenant", CONTOSO), ("id", id.as_str())];
    let (status, body) = f.call_as(&operator, "runs/cancel", &form).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(f.call_as(&f.manager, "runs/cancel", &form).await.0, 200);
}

async fn an_item_changed_since_the_preview_is_not_written(f: Fixture) {
    let backup = f.backup().await;
    let ids: Vec<i64> = backup.policies.iter().map(|(id, _)| *id).collect();
    for (_, graph_id) in &backup.policies {
        assert!(f.demo.sim.change_settings(CONTOSO, graph_id));
    }
    let (preview, _) = f.preview(backup.set, &ids).await;
    // Someone edits one policy again after the preview.
    let (moved, moved_graph) = backup.policies[3].clone();
    assert!(f.demo.sim.change_settings(CONTOSO, &moved_graph));
    f.demo.sim.reset_counters();
    let detail = f.execute(preview).await;
    assert_eq!(detail["status"], "CompletedWithErrors", "{detail}");
    let failed = detail["items"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["policy_id"] == moved)
        .cloned()
        .unwrap();
    assert_eq!(failed["outcome"], "failed");
    assert_eq!(failed["reason_code"], "changed_since_preview");
    assert!(
        f.writes().iter().all(|w| !w.contains(&moved_graph)),
        "nothing written for the moved policy: {:?}",
        f.writes()
    );
    assert!(detail["summary"]
        .as_str()
        .unwrap()
        .starts_with("3 of 4 now match the backup; 1 failed"));
}

async fn a_missing_permission_or_group_blocks_the_restore(f: Fixture) {
    let backup = f.backup().await;
    let ids: Vec<i64> = backup.policies.iter().map(|(id, _)| *id).collect();
    // The app lost Group.Read.All: the whole restore is blocked, and the block names it.
    f.demo.sim.set_app(
        CONTOSO,
        tenantatlas::graph_sim::AppSetup {
            missing_roles: vec!["Group.Read.All".into()],
            ..Default::default()
        },
    );
    let (preview, plan) = f.preview(backup.set, &ids).await;
    let block = plan["run_block"].as_str().unwrap_or_default();
    assert!(block.contains("Group.Read.All"), "{plan}");
    assert_eq!(plan["not_executable"], "Blocked");
    let (status, _) = f.execute_as(&f.manager, preview, true, TENANT_NAME).await;
    assert_eq!(status, 409);

    // A group the backup assigns no longer exists: that item is blocked.
    f.demo.sim.set_app(CONTOSO, Default::default());
    let (policy, graph_id) = backup.policies[1].clone();
    let group = f
        .demo
        .sim
        .policy_json(CONTOSO, &graph_id)
        .and_then(|p| {
            p["assignments"]
                .as_array()?
                .iter()
                .find_map(|a| a["target"]["groupId"].as_str().map(str::to_owned))
        })
        .expect("the policy is assigned to a group");
    assert!(f.demo.sim.remove_group(CONTOSO, &group));
    let (preview, plan) = f.preview(backup.set, &ids).await;
    let blocked = item(&plan, policy);
    assert_eq!(blocked["plan"], "blocked", "{plan}");
    assert!(blocked["notes"]["blocked"].to_string().contains(&group));
    let (status, body) = f.execute_as(&f.manager, preview, true, TENANT_NAME).await;
    assert_eq!(status, 409, "{body}");

    // A deleted policy whose backup holds a secret setting cannot be created anew (a backup
    // never holds a secret's value): blocked, naming the setting.
    let (policy, graph_id) = backup.policies[0].clone();
    let payload: String = sqlx::query_scalar(
        "SELECT s.payload FROM backup_items bi JOIN policy_snapshots s ON s.id = bi.snapshot_id \
         WHERE bi.backup_set_id = $1 AND bi.policy_id = $2",
    )
    .bind(backup.set)
    .bind(policy)
    .fetch_one(f.app.db.pool())
    .await
    .unwrap();
    let secrets = tenantatlas::server::graph::write::secret_settings(
        &serde_json::from_str(&payload).unwrap(),
    );
    assert!(
        !secrets.is_empty(),
        "the demo's settings catalog policy holds a secret"
    );
    assert!(f.demo.sim.remove_policy(CONTOSO, &graph_id));
    let (_, plan) = f.preview(backup.set, &[policy]).await;
    let blocked = item(&plan, policy);
    assert_eq!(blocked["plan"], "blocked", "{plan}");
    assert!(
        blocked["notes"]["blocked"]
            .to_string()
            .contains(&secrets[0]),
        "{blocked}"
    );
}
