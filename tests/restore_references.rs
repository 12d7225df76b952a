//! A restore execute checks again, right before it writes, that the groups, assignment filters
//! and scope tags the backup refers to still exist: a preview may be 15 minutes old, and one
//! deleted since would be written into the policy as a target that no longer exists. Each is
//! looked up once per claim of the run (a takeover asks again); one gone, or one that cannot be
//! looked up, fails the item with nothing sent, saying what an earlier claim may have sent. Driven through the server functions the wizard uses, against the simulator.

use crate::common;

use common::takeover::{announce, as_taken_over, Announced};
use common::{DemoApp, CONTOSO};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::restore::{PlanAction, RestorePreview, RestoreSource};
use tenantatlas::domain::run_detail::{ItemOutcome, RunDetail, RunItemRow};
use tenantatlas::domain::Timestamp;
use tenantatlas::graph_sim::AppSetup;
use tenantatlas::server::engine::operation::Registry;
use tenantatlas::server::engine::worker::{CredentialsLoader, Outcome, RunFailure, Worker};
use tenantatlas::server::graph::write::{DirectoryKind, PolicyWriter, WriteFuture, WriteRequest};
use tenantatlas::server::graph::{GraphClient, GraphFuture, PolicySource, TenantCredentials};
use tenantatlas::server::seed;

both_backends!(local Fixture:
    a_group_deleted_after_the_preview_is_never_written,
    a_scope_tag_deleted_after_the_preview_is_never_written,
    a_scope_tag_that_cannot_be_looked_up_is_never_written,
    a_group_two_policies_are_assigned_to_is_looked_up_once_per_run,
    a_takeover_stopped_by_a_deleted_group_says_the_earlier_update_may_have_landed,
    a_claim_taking_the_run_over_looks_each_group_up_again,
);

const MANAGER: &str = "manager@contoso.example";
const TENANT_NAME: &str = seed::DEMO_TENANTS[0].1;
/// The options a restore backs up and previews with.
const WITH_ASSIGNMENTS_AND_SCOPE_TAGS: &[(&str, &str)] = &[
    ("include_assignments", "true"),
    ("include_scope_tags", "true"),
];
/// How a failed item's message begins when a reference no longer exists.
const NO_LONGER_EXISTS: &str = "A group, filter or scope tag this policy refers to no longer exists: nothing was written. Run the preview again: it names what is missing.";

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

impl Fixture {
    async fn start(backend: common::Backend) -> Self {
        let demo_app = DemoApp::start(backend).await;
        let manager = demo_app.app.sign_in(MANAGER).await;
        Self { demo_app, manager }
    }

    /// Syncs the inventory, backs up the policies of `graph_ids` (assignments and scope tags
    /// included), then edits each in Intune, so a restore updates it; the backup set and the
    /// policies' inventory ids.
    async fn backup_then_edit(&self, graph_ids: &[&str]) -> (i64, Vec<i64>) {
        self.run_as(&self.manager, "runs/sync-inventory", &[("tenant", CONTOSO)])
            .await;
        let mut ids = Vec::new();
        for graph_id in graph_ids {
            ids.push(self.policy_id(graph_id).await);
        }
        let set = common::backup_set(&self.app, &self.manager, CONTOSO, "Restore me").await;
        let added = self
            .app
            .add_policies(
                &self.manager,
                CONTOSO,
                set,
                &ids,
                WITH_ASSIGNMENTS_AND_SCOPE_TAGS,
            )
            .await
            .expect("the backup starts");
        self.finish(added.run_id).await;
        for graph_id in graph_ids {
            assert!(self.demo.sim.change_settings(CONTOSO, graph_id));
        }
        (set, ids)
    }

    /// Runs a preview of restoring `ids` of the set, which must plan an update of each with
    /// nothing blocking it; its id.
    async fn preview_updates(&self, set: i64, ids: &[i64]) -> i64 {
        let run_id = self
            .app
            .start_restore_preview(
                &self.manager,
                CONTOSO,
                RestoreSource::BackupSet(set),
                ids,
                WITH_ASSIGNMENTS_AND_SCOPE_TAGS,
            )
            .await
            .expect("the preview starts")
            .run_id;
        self.finish(run_id).await;
        let plan: RestorePreview = self
            .app
            .restore_preview(&self.manager, CONTOSO, run_id)
            .await
            .expect("the manager reads the plan");
        assert_eq!(plan.not_executable, None, "{plan:?}");
        for item in &plan.items {
            assert_eq!(item.plan, Some(PlanAction::Update), "{plan:?}");
        }
        run_id
    }

    /// Starts the execute of `preview` as the manager; its id.
    async fn queue_execute(&self, preview: i64) -> i64 {
        self.app
            .execute_restore(&self.manager, CONTOSO, preview, true, TENANT_NAME)
            .await
            .expect("the restore starts")
            .run_id
    }

    /// Executes `preview` to its end with the demo's worker, the simulator's counters reset
    /// first (its requests are then the execute's); the run's detail.
    async fn execute(&self, preview: i64) -> RunDetail {
        let run_id = self.queue_execute(preview).await;
        self.demo.sim.reset_counters();
        self.finish(run_id).await;
        self.detail(run_id).await
    }

    /// As [`Self::execute`], with a worker whose writes and lookups go through `writer`.
    async fn execute_with(&self, preview: i64, writer: impl PolicyWriter + 'static) -> RunDetail {
        let run_id = self.queue_execute(preview).await;
        let worker = self.worker_writing_with(writer);
        self.demo.sim.reset_counters();
        loop {
            match worker.try_execute_task().await.expect("the worker runs") {
                Outcome::TaskCompleted { run_id: done } if done == run_id => break,
                Outcome::TaskCompleted { .. } => {}
                Outcome::EmptyQueue => panic!("run {run_id} was not run"),
            }
        }
        self.detail(run_id).await
    }

    /// The Graph id of a live policy assigned to a group whose update can be sent again (not an
    /// administrative template, whose takeover waits for an earlier update that may still land)
    /// and that group.
    fn assigned_policy(&self) -> (String, String) {
        let graph_id = self
            .demo
            .sim
            .policies(CONTOSO)
            .into_iter()
            .find(|p| {
                p.kind.collection() != "groupPolicyConfigurations"
                    && !groups_of(&self.live(&p.id)).is_empty()
            })
            .expect("a policy assigned to a group")
            .id;
        let group = groups_of(&self.live(&graph_id)).remove(0);
        (graph_id, group)
    }

    /// A worker like the demo's whose writes go through `writer`.
    fn worker_writing_with(&self, writer: impl PolicyWriter + 'static) -> Worker {
        let source: Arc<dyn PolicySource> = Arc::new(self.demo.access.client.clone());
        let (db, access) = (self.app.db.clone(), self.demo.access.clone());
        let loader: CredentialsLoader = Arc::new(move |tenant_id| {
            let (db, access) = (db.clone(), access.clone());
            Box::pin(async move {
                access
                    .credentials(&db, tenant_id)
                    .await
                    .map_err(|error| RunFailure {
                        reason: ReasonCode::AuthenticationFailed,
                        message: error.to_string(),
                    })
            })
        });
        Worker::new(
            self.app.db.clone(),
            Registry::full(source, Arc::new(writer)),
            loader,
            "directory-writer",
        )
    }

    /// The detail of run `run_id`, as the manager reads it.
    async fn detail(&self, run_id: i64) -> RunDetail {
        self.app
            .run_detail(Some(&self.manager), CONTOSO, run_id, &[])
            .await
            .expect("the manager reads the run")
    }

    /// The Graph writes the simulator has seen since its counters were reset.
    fn writes(&self) -> Vec<String> {
        self.demo
            .sim
            .counters()
            .writes()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// The policy of `graph_id` as Intune holds it, with its assignments and settings.
    fn live(&self, graph_id: &str) -> serde_json::Value {
        self.demo
            .sim
            .policy_json(CONTOSO, graph_id)
            .expect("the policy is live")
    }

    /// The Graph id of the first live policy whose live state `matches`.
    fn policy_where(&self, what: &str, matches: impl Fn(&serde_json::Value) -> bool) -> String {
        self.demo
            .sim
            .policies(CONTOSO)
            .into_iter()
            .find(|p| matches(&self.live(&p.id)))
            .unwrap_or_else(|| panic!("no live policy {what}"))
            .id
    }
}

/// The groups a live policy's assignments target.
fn groups_of(policy: &serde_json::Value) -> Vec<String> {
    policy["assignments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["target"]["groupId"].as_str().map(str::to_owned))
        .collect()
}

/// The scope tags of a live policy other than the default one ("0").
fn scope_tags_of(policy: &serde_json::Value) -> Vec<String> {
    policy["roleScopeTagIds"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|tag| tag.as_str().filter(|tag| *tag != "0").map(str::to_owned))
        .collect()
}

/// The only item of a run, which must have failed with `reason`: its row.
fn failed_item(detail: &RunDetail, reason: ReasonCode) -> &RunItemRow {
    let [row] = detail.items.rows.as_slice() else {
        panic!("not one item: {detail:?}");
    };
    assert_eq!(row.outcome, ItemOutcome::Failed, "{detail:?}");
    assert_eq!(row.reason_code, Some(reason), "{detail:?}");
    let action = row.restore.as_ref().and_then(|restore| restore.action);
    assert_eq!(action, None, "nothing is recorded as written: {detail:?}");
    row
}

/// Asserts that the execute sent no write and left the policy of `graph_id` as `before`.
fn assert_nothing_written(f: &Fixture, graph_id: &str, before: &serde_json::Value) {
    assert_eq!(f.writes(), Vec::<String>::new(), "nothing is written");
    assert_eq!(&f.live(graph_id), before, "the policy is as it was");
}

async fn a_group_deleted_after_the_preview_is_never_written(f: Fixture) {
    let graph_id = f.policy_where("assigned to a group", |p| !groups_of(p).is_empty());
    let (set, ids) = f.backup_then_edit(&[&graph_id]).await;
    let preview = f.preview_updates(set, &ids).await;
    // An admin deletes the group in Entra ID after the preview.
    let group = groups_of(&f.live(&graph_id)).remove(0);
    assert!(f.demo.sim.remove_group(CONTOSO, &group));
    let before = f.live(&graph_id);

    let detail = f.execute(preview).await;
    let row = failed_item(&detail, ReasonCode::ChangedSincePreview);
    let message = row.message.as_deref().unwrap_or_default();
    assert!(message.starts_with(NO_LONGER_EXISTS), "{message}");
    assert!(message.contains(&format!("Group {group}")), "{message}");
    assert_nothing_written(&f, &graph_id, &before);
}

/// A writer through the Graph client for which the directory object `gone` (a kind and an id)
/// no longer exists, as Graph answers once it is deleted (404).
struct Deleted {
    client: GraphClient,
    gone: (DirectoryKind, String),
}

impl PolicyWriter for Deleted {
    fn object_exists<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        kind: DirectoryKind,
        id: &'a str,
    ) -> GraphFuture<'a, bool> {
        if (kind, id) == (self.gone.0, self.gone.1.as_str()) {
            return Box::pin(async { Ok(false) });
        }
        PolicyWriter::object_exists(&self.client, creds, kind, id)
    }

    fn write_policy_reporting<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        request: WriteRequest<'a>,
    ) -> WriteFuture<'a> {
        PolicyWriter::write_policy_reporting(&self.client, creds, request)
    }
}

/// The simulator cannot delete a scope tag: the execute's writer answers that it is gone.
async fn a_scope_tag_deleted_after_the_preview_is_never_written(f: Fixture) {
    let graph_id = f.policy_where("with a scope tag", |p| !scope_tags_of(p).is_empty());
    let (set, ids) = f.backup_then_edit(&[&graph_id]).await;
    let preview = f.preview_updates(set, &ids).await;
    let tag = scope_tags_of(&f.live(&graph_id)).remove(0);
    let before = f.live(&graph_id);

    let writer = Deleted {
        client: f.demo.access.client.clone(),
        gone: (DirectoryKind::ScopeTag, tag.clone()),
    };
    let detail = f.execute_with(preview, writer).await;
    let row = failed_item(&detail, ReasonCode::ChangedSincePreview);
    let message = row.message.as_deref().unwrap_or_default();
    assert!(message.starts_with(NO_LONGER_EXISTS), "{message}");
    assert!(
        message.ends_with(&format!("Missing: Scope tag {tag}.")),
        "{message}"
    );
    assert_nothing_written(&f, &graph_id, &before);
}

/// A lookup Graph refuses (the app lost its read of scope tags since the preview) counts as
/// missing: a restore never writes what it could not verify.
async fn a_scope_tag_that_cannot_be_looked_up_is_never_written(f: Fixture) {
    let graph_id = f.policy_where("with a scope tag", |p| !scope_tags_of(p).is_empty());
    let (set, ids) = f.backup_then_edit(&[&graph_id]).await;
    let preview = f.preview_updates(set, &ids).await;
    let tag = scope_tags_of(&f.live(&graph_id)).remove(0);
    f.demo.sim.set_app(
        CONTOSO,
        AppSetup {
            forbidden_collections: vec!["roleScopeTags".into()],
            ..Default::default()
        },
    );
    let before = f.live(&graph_id);

    let detail = f.execute(preview).await;
    let row = failed_item(&detail, ReasonCode::PermissionDenied);
    let message = row.message.as_deref().unwrap_or_default();
    assert!(
        message.starts_with("A group, filter or scope tag this policy refers to could not be checked: nothing was written."),
        "{message}"
    );
    assert!(
        message.contains(&format!("Not checked: Scope tag {tag} (")),
        "{message}"
    );
    assert_nothing_written(&f, &graph_id, &before);
}

async fn a_group_two_policies_are_assigned_to_is_looked_up_once_per_run(f: Fixture) {
    let policies = f.demo.sim.policies(CONTOSO);
    let (group, graph_ids) = policies
        .iter()
        .flat_map(|p| {
            groups_of(&f.live(&p.id))
                .into_iter()
                .map(|g| (g, p.id.clone()))
        })
        .find_map(|(group, first)| {
            let second = policies
                .iter()
                .find(|p| p.id != first && groups_of(&f.live(&p.id)).contains(&group))?;
            Some((group, [first, second.id.clone()]))
        })
        .expect("two policies of the demo tenant share a group");
    let graph_ids: Vec<&str> = graph_ids.iter().map(String::as_str).collect();
    let (set, ids) = f.backup_then_edit(&graph_ids).await;
    let preview = f.preview_updates(set, &ids).await;

    let detail = f.execute(preview).await;
    assert_eq!(detail.succeeded, 2, "{detail:?}");
    let lookups = f
        .demo
        .sim
        .counters()
        .requests
        .iter()
        .filter(|r| r.method == "GET" && r.endpoint == "get:groups" && r.path.ends_with(&group))
        .count();
    assert_eq!(lookups, 1, "the group is looked up once for the run");
    for graph_id in &graph_ids {
        assert!(
            f.writes().iter().any(|w| w.contains(graph_id)),
            "{graph_id} is written: {:?}",
            f.writes()
        );
    }
}

/// An earlier claim announced the update and stopped before recording it (a lost lease, its
/// update perhaps still waiting out a Retry-After); the group is deleted before the takeover.
/// The takeover sends nothing, but the earlier update may land: never "nothing was written".
async fn a_takeover_stopped_by_a_deleted_group_says_the_earlier_update_may_have_landed(f: Fixture) {
    let (graph_id, group) = f.assigned_policy();
    let (set, ids) = f.backup_then_edit(&[&graph_id]).await;
    let preview = f.preview_updates(set, &ids).await;
    let run_id = f.queue_execute(preview).await;
    as_taken_over(&f.app.db, run_id).await;
    let now = Timestamp::now().millis();
    announce(&f.app.db, Announced::Update, run_id, ids[0], now).await;
    assert!(f.demo.sim.remove_group(CONTOSO, &group));
    let before = f.live(&graph_id);

    f.demo.sim.reset_counters();
    f.finish(run_id).await;
    let detail = f.detail(run_id).await;
    let row = failed_item(&detail, ReasonCode::ChangedSincePreview);
    let message = row.message.as_deref().unwrap_or_default();
    assert!(message.contains("MAY"), "{message}");
    assert!(!message.contains("nothing was written"), "{message}");
    assert!(message.contains(&format!("Group {group}")), "{message}");
    assert_nothing_written(&f, &graph_id, &before);
}

/// A writer through the Graph client whose first write panics before it is sent: the claim
/// ends without its conclusion and the run goes back to the queue.
struct PanicsOnFirstWrite {
    client: GraphClient,
    panicked: AtomicBool,
}

impl PolicyWriter for PanicsOnFirstWrite {
    fn object_exists<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        kind: DirectoryKind,
        id: &'a str,
    ) -> GraphFuture<'a, bool> {
        PolicyWriter::object_exists(&self.client, creds, kind, id)
    }

    fn write_policy_reporting<'a>(
        &'a self,
        creds: &'a TenantCredentials,
        request: WriteRequest<'a>,
    ) -> WriteFuture<'a> {
        if !self.panicked.swap(true, Ordering::SeqCst) {
            panic!("the claim stops before sending its write");
        }
        PolicyWriter::write_policy_reporting(&self.client, creds, request)
    }
}

/// The first claim looks the group up (it exists), announces the update and stops (a panic,
/// which requeues the run without concluding it); the group is deleted meanwhile. The claim
/// taking the run over in the same process looks the group up again and writes nothing.
async fn a_claim_taking_the_run_over_looks_each_group_up_again(f: Fixture) {
    let (graph_id, group) = f.assigned_policy();
    let (set, ids) = f.backup_then_edit(&[&graph_id]).await;
    let preview = f.preview_updates(set, &ids).await;
    let run_id = f.queue_execute(preview).await;
    let writer = PanicsOnFirstWrite {
        client: f.demo.access.client.clone(),
        panicked: AtomicBool::new(false),
    };
    let worker = f
        .worker_writing_with(writer)
        .with_work_backoff(Duration::from_millis(1));
    let before = f.live(&graph_id);
    f.demo.sim.reset_counters();
    let mut claims = 0;
    loop {
        match worker.try_execute_task().await {
            Ok(Outcome::TaskCompleted { run_id: done }) if done == run_id => break,
            // The first claim stopped: an admin deletes the group before the next one.
            Err(_) if claims == 0 => {
                claims += 1;
                assert!(f.demo.sim.remove_group(CONTOSO, &group));
            }
            Ok(Outcome::EmptyQueue) | Err(_) => {
                claims += 1;
                assert!(claims < 100, "run {run_id} was not run to its end");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Outcome::TaskCompleted { .. }) => {}
        }
    }
    let lookups = f
        .demo
        .sim
        .counters()
        .requests
        .iter()
        .filter(|r| r.method == "GET" && r.endpoint == "get:groups" && r.path.ends_with(&group))
        .count();
    assert_eq!(lookups, 2, "each claim looks the group up");
    let detail = f.detail(run_id).await;
    let row = failed_item(&detail, ReasonCode::ChangedSincePreview);
    let message = row.message.as_deref().unwrap_or_default();
    assert!(message.contains(&format!("Group {group}")), "{message}");
    assert_nothing_written(&f, &graph_id, &before);
}
