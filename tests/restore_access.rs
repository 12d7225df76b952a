//! A queued restore writes only while the member who started it may still restore: a
//! `restore.execute` may start long after its submit (behind the tenant's bulk run, after a
//! crash), and by then its starter may have been demoted, removed or deleted. The worker checks
//! at every claim, before any Graph call; the run then fails `not_authorized` and the simulator
//! sees no write. A starter demoted while the run writes stops it too: each item's announce
//! reads the starter's role before the item's first write, so the item in flight finishes and
//! none after it writes. A claim taking over a run whose earlier claim announced writes and
//! crashed before recording them sends nothing more either, and says those policies may have
//! been written (audited as incomplete), never that nothing was. Both engines; every role
//! change goes through the members API. And a restore's evidence (its read after the write)
//! leaves a mark of the policy being gone from Intune made while that read was in flight.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common;

use common::{DemoApp, ADMIN, CONTOSO};
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::restore::{PlanAction, RestoreSource};
use tenantatlas::domain::run_detail::{ItemOutcome, RunDetail};
use tenantatlas::domain::{RunStatus, Timestamp};
use tenantatlas::graph_sim::{AppSetup, RequestRecord, TokenFault};
use tenantatlas::server::engine::worker::{
    BeforeFailedEnd, Outcome, RunFailure, TokenCheck, WORK_ATTEMPTS,
};
use tenantatlas::server::graph::{GraphAccess, GraphClient, GraphConfig};
use tenantatlas::server::{runs_worker, seed};

both_backends!(local Fixture:
    a_restore_whose_starter_was_demoted_writes_nothing,
    a_restore_whose_starter_was_removed_writes_nothing,
    a_taken_over_restore_whose_starter_was_removed_says_what_may_have_been_written,
    a_taken_over_restore_whose_starter_is_demoted_before_its_first_write_says_what_may_have_been_written,
    a_refused_takeover_counts_what_earlier_claims_may_have_written,
    a_taken_over_restore_whose_secret_is_rejected_says_what_may_have_been_written,
    a_taken_over_restore_whose_credentials_cannot_be_used_says_what_may_have_been_written,
    a_restore_cancelled_while_its_takeover_fails_says_what_may_stay_written,
    a_restore_cancelled_as_its_takeover_ends_failed_says_what_may_stay_written,
    a_taken_over_restore_given_up_after_repeated_errors_says_what_may_have_been_written,
    a_restore_whose_starters_account_was_deleted_writes_nothing,
    a_restore_whose_starter_may_still_restore_writes,
    a_restore_whose_starter_is_demoted_while_it_writes_stops_writing,
    a_policy_marked_gone_while_a_restore_reads_its_evidence_stays_gone,
);

const MANAGER: &str = "manager@contoso.example";
const TENANT_NAME: &str = seed::DEMO_TENANTS[0].1;
/// The options a restore backs up and previews with.
const WITH_ASSIGNMENTS_AND_SCOPE_TAGS: &[(&str, &str)] = &[
    ("include_assignments", "true"),
    ("include_scope_tags", "true"),
];

/// The demo app, signed in as a manager of Contoso (who starts the restore) and as its owner
/// (who changes the manager's membership).
struct Fixture {
    demo_app: DemoApp,
    manager: String,
    owner: String,
}

impl std::ops::Deref for Fixture {
    type Target = DemoApp;

    fn deref(&self) -> &DemoApp {
        &self.demo_app
    }
}

/// A restore queued by the manager and not yet run.
struct Queued {
    run_id: i64,
    /// The inventory ids of the policies it restores.
    ids: Vec<i64>,
}

impl Fixture {
    async fn start(backend: common::Backend) -> Self {
        let demo_app = DemoApp::start(backend).await;
        let manager = demo_app.app.sign_in(MANAGER).await;
        let owner = demo_app.app.sign_in(ADMIN).await;
        Self {
            demo_app,
            manager,
            owner,
        }
    }

    /// As the manager: backs up a settings catalog policy and a device configuration, lets
    /// Intune change the first and delete the second, previews the restore (an update and a
    /// create) and executes it; the execute stays queued, as behind the tenant's bulk run (the
    /// test's worker runs only when asked).
    async fn queue_restore(&self) -> Queued {
        let changed = self.graph_ids("configurationPolicies", 1);
        let deleted = self.graph_ids("deviceConfigurations", 1);
        self.queue(&changed, &deleted).await
    }

    /// As [`Self::queue_restore`], with a second settings catalog policy to update: the items
    /// are two updates, then a create.
    async fn queue_two_updates_and_a_create(&self) -> Queued {
        let changed = self.graph_ids("configurationPolicies", 2);
        let deleted = self.graph_ids("deviceConfigurations", 1);
        self.queue(&changed, &deleted).await
    }

    /// The Graph ids of the first `n` of Contoso's policies in `collection`.
    fn graph_ids(&self, collection: &str, n: usize) -> Vec<String> {
        let ids: Vec<String> = self
            .demo
            .sim
            .policies(CONTOSO)
            .iter()
            .filter(|p| p.kind.collection() == collection)
            .take(n)
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(ids.len(), n, "the demo tenant has {n} {collection}");
        ids
    }

    /// As the manager: backs up the policies `changed` and `deleted` (Graph ids), lets Intune
    /// change the first and delete the second, previews the restore (updates, then creates) and
    /// executes it; the execute stays queued. Its `ids` are in that order.
    async fn queue(&self, changed: &[String], deleted: &[String]) -> Queued {
        self.run_as(&self.manager, "runs/sync-inventory", &[("tenant", CONTOSO)])
            .await;
        let mut ids = Vec::new();
        let mut expected = Vec::new();
        for (graph_ids, action) in [(changed, PlanAction::Update), (deleted, PlanAction::Create)] {
            for graph_id in graph_ids {
                let id = self.policy_id(graph_id).await;
                ids.push(id);
                expected.push((id, Some(action)));
            }
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

        for graph_id in changed {
            assert!(self.demo.sim.change_settings(CONTOSO, graph_id));
        }
        for graph_id in deleted {
            assert!(self.demo.sim.remove_policy(CONTOSO, graph_id));
        }
        let preview = self
            .app
            .start_restore_preview(
                &self.manager,
                CONTOSO,
                RestoreSource::BackupSet(set),
                &ids,
                WITH_ASSIGNMENTS_AND_SCOPE_TAGS,
            )
            .await
            .expect("the manager previews")
            .run_id;
        self.finish(preview).await;
        let plan = self
            .app
            .restore_preview(&self.manager, CONTOSO, preview)
            .await
            .expect("the manager reads the plan");
        let planned: Vec<_> = plan.items.iter().map(|i| (i.policy_id, i.plan)).collect();
        assert_eq!(planned.len(), expected.len(), "{plan:?}");
        for item in &expected {
            assert!(planned.contains(item), "{plan:?}");
        }
        let run_id = self
            .app
            .execute_restore(&self.manager, CONTOSO, preview, true, TENANT_NAME)
            .await
            .expect("the manager executes")
            .run_id;
        Queued { run_id, ids }
    }

    /// The manager's account id.
    async fn manager_id(&self) -> i64 {
        common::user_id(&self.app.db, MANAGER).await
    }

    /// Resets the simulator's request log and runs the queue until run `run_id` has ended;
    /// its detail, as the owner reads it.
    async fn run_counted(&self, run_id: i64) -> RunDetail {
        self.demo.sim.reset_counters();
        self.finish(run_id).await;
        self.app
            .run_detail(Some(&self.owner), CONTOSO, run_id, &[])
            .await
            .expect("the owner reads the run")
    }

    /// The Graph writes (every request but a GET or a HEAD) the simulator has seen since its
    /// log was reset.
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

    /// The action recorded for `policy_id`'s item of run `run_id`.
    async fn action(&self, run_id: i64, policy_id: i64) -> Option<String> {
        sqlx::query_scalar(
            "SELECT restore_action FROM run_items WHERE run_id = $1 AND policy_id = $2",
        )
        .bind(run_id)
        .bind(policy_id)
        .fetch_one(self.app.db.pool())
        .await
        .unwrap()
    }

    /// Asserts that run `run_id` (its `detail`) wrote nothing and failed `not_authorized`, every
    /// item failed with that reason and none recorded as written; and that the owner cannot
    /// retry it from the run's page (a restore goes back through its wizard).
    async fn assert_refused(&self, queued: &Queued, detail: &RunDetail) {
        assert_eq!(self.writes(), Vec::<String>::new(), "nothing was written");
        assert_eq!(detail.status, RunStatus::Failed, "{detail:?}");
        assert_eq!(
            detail.reason_code,
            Some(ReasonCode::NotAuthorized),
            "{detail:?}"
        );
        assert!(
            detail
                .failure_message
                .as_deref()
                .is_some_and(|message| message.starts_with(
                    "The member who started this restore may no longer restore in this tenant"
                )),
            "{detail:?}"
        );
        assert_eq!(detail.items.rows.len(), queued.ids.len(), "{detail:?}");
        for row in &detail.items.rows {
            assert_eq!(row.outcome, ItemOutcome::Failed, "{row:?}");
            assert_eq!(row.reason_code, Some(ReasonCode::NotAuthorized), "{row:?}");
        }
        for id in &queued.ids {
            assert_eq!(self.action(queued.run_id, *id).await, None, "policy {id}");
        }
        let written: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'restore.item_written'",
        )
        .fetch_one(self.app.db.pool())
        .await
        .unwrap();
        assert_eq!(written, 0, "no write audited");
        let refusal = self
            .app
            .retry_failed(&self.owner, CONTOSO, queued.run_id)
            .await
            .expect_err("a restore is not retried from the run's page");
        assert_eq!(refusal.status, 422, "{}", refusal.body);
    }

    /// Makes queued restore `queued` (an update first, a create last) look as its first claim
    /// left it when it crashed, or lost its lease, right after sending both writes: running
    /// under another owner whose lease is over, each item pending, the first and the last with
    /// their write announced (the update's `update_sent_at`, the create's `create_sent_at`,
    /// now), as a claim announces right before sending; any item between them not yet started.
    /// The next claim takes it over.
    async fn crashed_after_announcing(&self, queued: &Queued) {
        let db = self.app.db.pool();
        let now = Timestamp::now().millis();
        sqlx::query(
            "UPDATE runs SET status = 'running', attempt = 1, lease_owner = 'crashed', \
             lease_expires_at = 0, started_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(queued.run_id)
        .execute(db)
        .await
        .unwrap();
        let tenant_id = common::tenant_id(&self.app.db, CONTOSO).await;
        let [update, ref between @ .., create] = queued.ids[..] else {
            panic!("an update and a create: {:?}", queued.ids);
        };
        for policy_id in between {
            sqlx::query("INSERT INTO run_items (tenant_id, run_id, policy_id) VALUES ($1, $2, $3)")
                .bind(tenant_id)
                .bind(queued.run_id)
                .bind(policy_id)
                .execute(db)
                .await
                .unwrap();
        }
        for (policy_id, column) in [(update, "update_sent_at"), (create, "create_sent_at")] {
            sqlx::query(&format!(
                "INSERT INTO run_items (tenant_id, run_id, policy_id, {column}) \
                 VALUES ($1, $2, $3, $4)"
            ))
            .bind(tenant_id)
            .bind(queued.run_id)
            .bind(policy_id)
            .bind(now)
            .execute(db)
            .await
            .unwrap();
        }
    }

    /// The details of the `restore.item_written` audit row of `policy_id`, which must exist.
    async fn audit_of(&self, policy_id: i64) -> serde_json::Value {
        let details: String = sqlx::query_scalar(
            "SELECT details FROM audit_log WHERE action = 'restore.item_written' AND target = $1",
        )
        .bind(format!("policy:{policy_id}"))
        .fetch_optional(self.app.db.pool())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no audit row of policy {policy_id}"));
        serde_json::from_str(&details).expect("JSON details")
    }

    /// Asserts that taken-over run `queued` ([`Self::crashed_after_announcing`]), its `detail`,
    /// sent no write and failed `not_authorized`; that each item says its policy may have been
    /// written by the earlier attempt (not that nothing was), has an incomplete audit row
    /// failed `not_authorized` and no action recorded; that the create keeps its announce (a
    /// later preview looks for the policy); and that the run says so too.
    async fn assert_refused_after_announces(&self, queued: &Queued, detail: &RunDetail) {
        const REFUSED: &str =
            "The member who started this restore may no longer restore in this tenant";
        self.assert_stopped_after_announces(queued, detail, ReasonCode::NotAuthorized, REFUSED)
            .await;
        let message = detail.failure_message.as_deref().unwrap_or_default();
        assert!(message.starts_with(REFUSED), "{message}");
    }

    /// Asserts that taken-over run `queued` ([`Self::crashed_after_announcing`]), its `detail`,
    /// sent no write and failed `reason` with a message that holds `said` and counts the two
    /// policies the earlier attempt may have written (never "nothing more was written"); that
    /// each announced item (the first and the last) fails `reason` saying its policy may have
    /// been written by the earlier attempt, has an incomplete audit row failed `reason` and no
    /// action recorded, the create keeping its announce (a later preview looks for the
    /// policy); and that each item between fails `reason` as the run did, its message starting
    /// `said`, with nothing recorded or audited.
    async fn assert_stopped_after_announces(
        &self,
        queued: &Queued,
        detail: &RunDetail,
        reason: ReasonCode,
        said: &str,
    ) {
        assert_eq!(
            self.writes(),
            Vec::<String>::new(),
            "nothing more was written"
        );
        assert_eq!(detail.status, RunStatus::Failed, "{detail:?}");
        assert_eq!(detail.reason_code, Some(reason), "{detail:?}");
        let message = detail.failure_message.as_deref().unwrap_or_default();
        assert!(message.contains(said), "{message}");
        assert!(
            message.contains("2 policies may have been written"),
            "{message}"
        );
        assert!(!message.contains("nothing more was written"), "{message}");
        let items = queued.ids.len() as i64;
        assert_eq!(
            (detail.total_items, detail.processed_items, detail.failed),
            (items, items, items),
            "{detail:?}"
        );
        let [update, .., create] = queued.ids[..] else {
            panic!("an update and a create: {:?}", queued.ids);
        };
        assert_eq!(detail.items.rows.len(), queued.ids.len(), "{detail:?}");
        for row in &detail.items.rows {
            assert_eq!(row.outcome, ItemOutcome::Failed, "{row:?}");
            assert_eq!(row.reason_code, Some(reason), "{row:?}");
            let message = row.message.as_deref().unwrap_or_default();
            if row.policy_id == update || row.policy_id == create {
                assert!(message.contains("MAY have been"), "{row:?}");
                assert!(message.contains("earlier attempt"), "{row:?}");
                // Whole: the advice and why nothing more was sent survive the sanitizer's cut.
                assert!(message.contains("Run the preview again"), "{row:?}");
                assert!(
                    message.ends_with("was sent.") || message.ends_with(")."),
                    "{row:?}"
                );
                assert!(!message.contains("nothing was written"), "{row:?}");
                assert!(!message.contains("nothing more was written"), "{row:?}");
            } else {
                assert!(message.starts_with(said), "{row:?}");
                assert!(!message.contains("MAY have been"), "{row:?}");
            }
            assert_eq!(self.action(queued.run_id, row.policy_id).await, None);
        }
        let written: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'restore.item_written'",
        )
        .fetch_one(self.app.db.pool())
        .await
        .unwrap();
        assert_eq!(written, 2, "each announced write audited");
        let graph_id: String = sqlx::query_scalar("SELECT graph_id FROM policies WHERE id = $1")
            .bind(update)
            .fetch_one(self.app.db.pool())
            .await
            .unwrap();
        for (policy_id, action, graph_id) in [
            (update, "updated", Some(graph_id.as_str())),
            (create, "created", None),
        ] {
            let audited = self.audit_of(policy_id).await;
            assert_eq!(audited["action"], action, "{audited}");
            assert_eq!(audited["graph_id"].as_str(), graph_id, "{audited}");
            assert_eq!(audited["completed"], false, "{audited}");
            assert_eq!(audited["failure"]["reason"], reason.as_str(), "{audited}");
            assert_eq!(audited["run_id"], queued.run_id, "{audited}");
        }
        let create_sent_at: Option<i64> = sqlx::query_scalar(
            "SELECT create_sent_at FROM run_items WHERE run_id = $1 AND policy_id = $2",
        )
        .bind(queued.run_id)
        .bind(create)
        .fetch_one(self.app.db.pool())
        .await
        .unwrap();
        assert!(create_sent_at.is_some(), "the create's announce stays");
    }
}

async fn a_restore_whose_starter_was_demoted_writes_nothing(f: Fixture) {
    let queued = f.queue_restore().await;
    let manager = f.manager_id().await;
    f.app
        .change_member_role(&f.owner, CONTOSO, manager, "readonly")
        .await
        .expect("the owner demotes the manager");
    let detail = f.run_counted(queued.run_id).await;
    f.assert_refused(&queued, &detail).await;
    // Nor may the demoted member start it again from the run's page.
    let refusal = f
        .app
        .retry_failed(&f.manager, CONTOSO, queued.run_id)
        .await
        .expect_err("a readonly member retries nothing");
    assert_eq!(refusal.status, 403, "{}", refusal.body);
}

async fn a_restore_whose_starter_was_removed_writes_nothing(f: Fixture) {
    let queued = f.queue_restore().await;
    let manager = f.manager_id().await;
    f.app
        .remove_member(&f.owner, CONTOSO, manager)
        .await
        .expect("the owner removes the manager");
    let detail = f.run_counted(queued.run_id).await;
    f.assert_refused(&queued, &detail).await;
}

/// A claim that takes the run over checks again, before any Graph call. Its first claim
/// announced an update and a create, sent them, and crashed before recording either: both may
/// be in Intune. The takeover sends nothing, and each item says its policy may have been
/// written, audited as incomplete, as a cancel counts such writes.
async fn a_taken_over_restore_whose_starter_was_removed_says_what_may_have_been_written(
    f: Fixture,
) {
    let queued = f.queue_restore().await;
    f.crashed_after_announcing(&queued).await;
    let manager = f.manager_id().await;
    f.app
        .remove_member(&f.owner, CONTOSO, manager)
        .await
        .expect("the owner removes the manager");
    let detail = f.run_counted(queued.run_id).await;
    let asked: Vec<String> = f
        .demo
        .sim
        .counters()
        .requests
        .iter()
        .filter(|r| r.is_graph())
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(asked, Vec::<String>::new(), "no Graph call at all");
    f.assert_refused_after_announces(&queued, &detail).await;
}

/// A takeover refused after an earlier refused claim closed the update's item and crashed
/// before the run ended: the run's message counts what may have been written over the whole
/// run (the update closed before and the create closed now), not only the items this claim
/// closed.
async fn a_refused_takeover_counts_what_earlier_claims_may_have_written(f: Fixture) {
    let queued = f.queue_restore().await;
    f.crashed_after_announcing(&queued).await;
    let db = f.app.db.pool();
    sqlx::query(
        "UPDATE run_items SET outcome = 'failed', reason_code = 'not_authorized', \
         message = 'closed by an earlier claim', finished_at = update_sent_at \
         WHERE run_id = $1 AND policy_id = $2",
    )
    .bind(queued.run_id)
    .bind(queued.ids[0])
    .execute(db)
    .await
    .unwrap();
    sqlx::query("UPDATE runs SET failed = 1, processed_items = 1 WHERE id = $1")
        .bind(queued.run_id)
        .execute(db)
        .await
        .unwrap();
    let manager = f.manager_id().await;
    f.app
        .remove_member(&f.owner, CONTOSO, manager)
        .await
        .expect("the owner removes the manager");
    let detail = f.run_counted(queued.run_id).await;
    assert_eq!(f.writes(), Vec::<String>::new(), "nothing more was written");
    assert_eq!(detail.status, RunStatus::Failed, "{detail:?}");
    assert_eq!(
        (detail.total_items, detail.processed_items, detail.failed),
        (2, 2, 2),
        "{detail:?}"
    );
    let message = detail.failure_message.as_deref().unwrap_or_default();
    assert!(
        message.contains("2 policies may have been written"),
        "{message}"
    );
}

/// A takeover of a run whose first claim announced an update and a create, sent them and
/// crashed before recording either, and never started its second update; meanwhile Entra ID
/// has come to reject the tenant's secret, so the takeover's one token check fails the run
/// `authentication_failed` before any Graph call. The announced items say their policy may
/// have been written, audited as incomplete, with that reason; the update not started fails as
/// the run does; the run keeps its reason and counts the policies that may have been written.
async fn a_taken_over_restore_whose_secret_is_rejected_says_what_may_have_been_written(f: Fixture) {
    let queued = f.queue_two_updates_and_a_create().await;
    f.crashed_after_announcing(&queued).await;
    f.demo.sim.set_app(
        CONTOSO,
        AppSetup {
            token_error: Some(TokenFault::WrongSecret),
            ..AppSetup::default()
        },
    );
    // A client of its own: the app's client still holds the token the earlier runs fetched.
    let sim = &f.demo.sim;
    let access = GraphAccess {
        client: GraphClient::new(GraphConfig::new(&sim.login_url, &sim.graph_url))
            .expect("a Graph client"),
        secrets: f.demo.access.secrets.clone(),
    };
    let worker = runs_worker(&f.app.db, access);
    sim.reset_counters();
    let executed = worker.try_execute_task().await.expect("the worker runs");
    assert!(
        matches!(executed, Outcome::TaskCompleted { run_id } if run_id == queued.run_id),
        "{executed:?}"
    );
    assert_eq!(sim.counters().token_requests(), 1, "one token request");
    assert_eq!(sim.counters().graph_requests(), 0, "no Graph call");
    let detail = f
        .app
        .run_detail(Some(&f.owner), CONTOSO, queued.run_id, &[])
        .await
        .expect("the owner reads the run");
    f.assert_stopped_after_announces(
        &queued,
        &detail,
        ReasonCode::AuthenticationFailed,
        "Entra ID refused the tenant's app",
    )
    .await;
}

/// The same takeover whose tenant's credentials cannot be loaded at all (its secret's
/// reference names an environment variable that is not set): refused before any token
/// request, it says the same, with the credentials' reason.
async fn a_taken_over_restore_whose_credentials_cannot_be_used_says_what_may_have_been_written(
    f: Fixture,
) {
    let queued = f.queue_two_updates_and_a_create().await;
    f.crashed_after_announcing(&queued).await;
    sqlx::query(
        "UPDATE tenants SET graph_secret_ref = 'env:TA_RESTORE_ACCESS_TEST_UNSET'          WHERE external_id = $1",
    )
    .bind(CONTOSO)
    .execute(f.app.db.pool())
    .await
    .unwrap();
    let detail = f.run_counted(queued.run_id).await;
    assert_eq!(
        f.demo.sim.counters().token_requests(),
        0,
        "no token request"
    );
    assert_eq!(f.demo.sim.counters().graph_requests(), 0, "no Graph call");
    f.assert_stopped_after_announces(
        &queued,
        &detail,
        ReasonCode::AuthenticationFailed,
        "The tenant's Graph credentials cannot be used",
    )
    .await;
}

/// A cancel committed between a takeover's claim and its closing of the items: here while the
/// takeover's one token check waits (held until the owner's cancel has committed), which then
/// fails the run as a rejected secret does. The run stays cancelled and says, as a cancelled
/// restore does, that the two policies the earlier attempt announced may have been written.
async fn a_restore_cancelled_while_its_takeover_fails_says_what_may_stay_written(f: Fixture) {
    let queued = f.queue_restore().await;
    f.crashed_after_announcing(&queued).await;
    let (asked, mut asking) =
        tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<()>>();
    let check: TokenCheck = Arc::new(move |_| {
        let asked = asked.clone();
        Box::pin(async move {
            let (answer, answered) = tokio::sync::oneshot::channel();
            asked.send(answer).expect("the test waits for the check");
            answered.await.expect("the test lets the check answer");
            Some(RunFailure {
                reason: ReasonCode::AuthenticationFailed,
                message: "Entra ID refused the tenant's app.".into(),
            })
        })
    });
    let worker = runs_worker(&f.app.db, f.demo.access.clone()).with_token_check(check);
    let (executed, ()) = tokio::join!(worker.try_execute_task(), async {
        let answer = asking.recv().await.expect("the takeover checks its token");
        f.app
            .cancel_run(&f.owner, CONTOSO, queued.run_id)
            .await
            .expect("the owner cancels");
        answer.send(()).expect("the check waits");
    });
    let executed = executed.expect("the worker runs");
    assert!(
        matches!(executed, Outcome::TaskCompleted { run_id } if run_id == queued.run_id),
        "{executed:?}"
    );
    let detail = f
        .app
        .run_detail(Some(&f.owner), CONTOSO, queued.run_id, &[])
        .await
        .expect("the owner reads the run");
    assert_eq!(detail.status, RunStatus::Cancelled, "{detail:?}");
    assert_eq!(
        detail.summary.as_deref(),
        Some(
            "Cancelled before any policy was recorded as written; 2 of 2 policies may have been written; what was written stays in Intune. Run the preview again to see."
        ),
        "{detail:?}"
    );
}

/// A cancel committed right after the takeover closed the items (the announced ones saying
/// they may have been written) and before the run's end: the end finds the run cancelled, no
/// item left for the cancel to skip. The run stays cancelled and says, as a cancelled restore
/// does, that the two policies the earlier attempt announced may have been written.
async fn a_restore_cancelled_as_its_takeover_ends_failed_says_what_may_stay_written(f: Fixture) {
    let queued = f.queue_restore().await;
    f.crashed_after_announcing(&queued).await;
    let check: TokenCheck = Arc::new(|_| {
        Box::pin(async {
            Some(RunFailure {
                reason: ReasonCode::AuthenticationFailed,
                message: "Entra ID refused the tenant's app.".into(),
            })
        })
    });
    let (asked, mut asking) =
        tokio::sync::mpsc::unbounded_channel::<tokio::sync::oneshot::Sender<()>>();
    let before_end: BeforeFailedEnd = Arc::new(move |_| {
        let asked = asked.clone();
        Box::pin(async move {
            let (answer, answered) = tokio::sync::oneshot::channel();
            asked.send(answer).expect("the test waits for the end");
            answered.await.expect("the test lets the run end");
        })
    });
    let worker = runs_worker(&f.app.db, f.demo.access.clone())
        .with_token_check(check)
        .with_before_failed_end(before_end);
    let (executed, ()) = tokio::join!(worker.try_execute_task(), async {
        let answer = asking.recv().await.expect("the takeover ends failed");
        let pending: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM run_items WHERE run_id = $1 AND outcome = 'pending'",
        )
        .bind(queued.run_id)
        .fetch_one(f.app.db.pool())
        .await
        .unwrap();
        assert_eq!(pending, 0, "the takeover closed the items before its end");
        f.app
            .cancel_run(&f.owner, CONTOSO, queued.run_id)
            .await
            .expect("the owner cancels");
        answer.send(()).expect("the end waits");
    });
    let executed = executed.expect("the worker runs");
    assert!(
        matches!(executed, Outcome::TaskCompleted { run_id } if run_id == queued.run_id),
        "{executed:?}"
    );
    let detail = f
        .app
        .run_detail(Some(&f.owner), CONTOSO, queued.run_id, &[])
        .await
        .expect("the owner reads the run");
    assert_eq!(detail.status, RunStatus::Cancelled, "{detail:?}");
    assert_eq!(
        detail.summary.as_deref(),
        Some(
            "Cancelled before any policy was recorded as written; 2 of 2 policies may have been written; what was written stays in Intune. Run the preview again to see."
        ),
        "{detail:?}"
    );
    for row in &detail.items.rows {
        let message = row.message.as_deref().unwrap_or_default();
        assert!(message.contains("MAY have been"), "{row:?}");
    }
}

/// A takeover of a run whose earlier claims announced an update and a create, and whose work
/// then failed [`WORK_ATTEMPTS`] times in a row: the next claim gives the run up before any
/// Graph call. As a takeover refused for another reason, it says what may have been written:
/// the announced items fail `work_failed_repeatedly` saying their policy may have been
/// written, audited as incomplete; the update not started fails as the run does; the run
/// counts the policies that may have been written.
async fn a_taken_over_restore_given_up_after_repeated_errors_says_what_may_have_been_written(
    f: Fixture,
) {
    let queued = f.queue_two_updates_and_a_create().await;
    f.crashed_after_announcing(&queued).await;
    sqlx::query(
        "UPDATE runs SET work_errors = $1, last_work_error = 'the database went away' \
         WHERE id = $2",
    )
    .bind(WORK_ATTEMPTS)
    .bind(queued.run_id)
    .execute(f.app.db.pool())
    .await
    .unwrap();
    let detail = f.run_counted(queued.run_id).await;
    assert_eq!(
        f.demo.sim.counters().token_requests(),
        0,
        "no token request"
    );
    assert_eq!(f.demo.sim.counters().graph_requests(), 0, "no Graph call");
    f.assert_stopped_after_announces(
        &queued,
        &detail,
        ReasonCode::WorkFailedRepeatedly,
        &format!("Work on this run failed {WORK_ATTEMPTS} times in a row"),
    )
    .await;
    let message = detail.failure_message.as_deref().unwrap_or_default();
    assert!(message.contains("the database went away"), "{message}");
}

/// The same takeover whose starter is demoted after the claim's check, while it reads the
/// first policy (one item at a time, Graph slowed): the update's announce finds the starter
/// refused and sends nothing, the create after it is not started; both say their policy may
/// have been written by the earlier attempt.
async fn a_taken_over_restore_whose_starter_is_demoted_before_its_first_write_says_what_may_have_been_written(
    f: Fixture,
) {
    let queued = f.queue_restore().await;
    f.crashed_after_announcing(&queued).await;
    let manager = f.manager_id().await;
    common::answer_after(&f.demo.sim, 300);
    f.demo.sim.reset_counters();
    let worker = f.worker.clone().with_items_at_once(1);
    let (executed, ()) = tokio::join!(worker.try_execute_task(), async {
        let started = std::time::Instant::now();
        while !f.demo.sim.counters().requests.iter().any(|r| r.is_graph()) {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the restore never read a policy"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        f.app
            .change_member_role(&f.owner, CONTOSO, manager, "readonly")
            .await
            .expect("the owner demotes the manager");
    });
    let executed = executed.expect("the worker runs");
    assert!(
        matches!(executed, Outcome::TaskCompleted { run_id } if run_id == queued.run_id),
        "{executed:?}"
    );
    common::answer_after(&f.demo.sim, 0);
    let detail = f
        .app
        .run_detail(Some(&f.owner), CONTOSO, queued.run_id, &[])
        .await
        .expect("the owner reads the run");
    f.assert_refused_after_announces(&queued, &detail).await;
}

/// The starter's account deleted: the run's `initiated_by` is `NULL` (no API deletes an
/// account; the database does as an operator would).
async fn a_restore_whose_starters_account_was_deleted_writes_nothing(f: Fixture) {
    let queued = f.queue_restore().await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(f.manager_id().await)
        .execute(f.app.db.pool())
        .await
        .unwrap();
    let initiated_by: Option<i64> =
        sqlx::query_scalar("SELECT initiated_by FROM runs WHERE id = $1")
            .bind(queued.run_id)
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(initiated_by, None);
    let detail = f.run_counted(queued.run_id).await;
    f.assert_refused(&queued, &detail).await;
}

/// The control: a starter who may still restore gets the writes done.
async fn a_restore_whose_starter_may_still_restore_writes(f: Fixture) {
    let queued = f.queue_restore().await;
    let detail = f.run_counted(queued.run_id).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(detail.reason_code, None, "{detail:?}");
    assert!(!f.writes().is_empty(), "the restore wrote");
    let (changed, deleted) = (queued.ids[0], queued.ids[1]);
    assert_eq!(
        f.action(queued.run_id, changed).await.as_deref(),
        Some("updated")
    );
    assert_eq!(
        f.action(queued.run_id, deleted).await.as_deref(),
        Some("created")
    );
}

/// A restore of several items whose starter is demoted while it writes (one item at a time,
/// Graph slowed so the run is mid-way): the item in flight finishes, and no write reaches the
/// simulator after the demotion for any other item; the items after it fail `not_authorized`
/// with nothing written or audited, and the run fails `not_authorized`.
async fn a_restore_whose_starter_is_demoted_while_it_writes_stops_writing(f: Fixture) {
    let changed = f.graph_ids("configurationPolicies", 5);
    let queued = f.queue(&changed, &[]).await;
    let manager = f.manager_id().await;
    common::answer_after(&f.demo.sim, 100);
    f.demo.sim.reset_counters();
    // The policy a Graph write went to.
    let policy_of = |path: &str| {
        changed
            .iter()
            .find(|graph_id| path.contains(graph_id.as_str()))
            .cloned()
            .unwrap_or_else(|| path.to_owned())
    };
    let worker = f.worker.clone().with_items_at_once(1);
    let (executed, logged) = tokio::join!(worker.try_execute_task(), async {
        let started = std::time::Instant::now();
        while f.writes().is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the restore never wrote"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        f.app
            .change_member_role(&f.owner, CONTOSO, manager, "readonly")
            .await
            .expect("the owner demotes the manager");
        // What the simulator had seen when the demotion was committed.
        f.demo.sim.counters().requests.len()
    });
    let executed = executed.expect("the worker runs");
    assert!(
        matches!(executed, Outcome::TaskCompleted { run_id } if run_id == queued.run_id),
        "{executed:?}"
    );
    common::answer_after(&f.demo.sim, 0);

    let requests = f.demo.sim.counters().requests;
    let written = |requests: &[RequestRecord]| -> BTreeSet<String> {
        requests
            .iter()
            .filter(|r| r.is_graph() && r.is_write())
            .map(|r| policy_of(&r.path))
            .collect()
    };
    let (before, after) = requests.split_at(logged);
    let (written_before, written_after) = (written(before), written(after));
    // Only the item in flight (one at a time: the last written before) went on writing.
    assert!(
        written_after.len() <= 1 && written_after.is_subset(&written_before),
        "written after the demotion: {written_after:?}; before: {written_before:?}"
    );
    assert!(
        written_before.len() < changed.len(),
        "the run was demoted mid-way: {written_before:?}"
    );

    let detail = f
        .app
        .run_detail(Some(&f.owner), CONTOSO, queued.run_id, &[])
        .await
        .expect("the owner reads the run");
    assert_eq!(detail.status, RunStatus::Failed, "{detail:?}");
    assert_eq!(
        detail.reason_code,
        Some(ReasonCode::NotAuthorized),
        "{detail:?}"
    );
    let items: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT policy_id, outcome, reason_code, restore_action FROM run_items \
         WHERE run_id = $1 ORDER BY id",
    )
    .bind(queued.run_id)
    .fetch_all(f.app.db.pool())
    .await
    .unwrap();
    assert_eq!(items.len(), changed.len(), "{items:?}");
    // Written items first (those that wrote before the demotion), then none written: every
    // item after the first refused one failed `not_authorized` with nothing recorded.
    let updated = items
        .iter()
        .take_while(|(_, _, _, action)| action.as_deref() == Some("updated"))
        .count();
    assert_eq!(updated, written_before.len(), "{items:?}");
    for (policy_id, outcome, reason, action) in &items[updated..] {
        assert_eq!(outcome, "failed", "policy {policy_id}: {items:?}");
        assert_eq!(
            reason.as_deref(),
            Some(ReasonCode::NotAuthorized.as_str()),
            "policy {policy_id}: {items:?}"
        );
        assert_eq!(action, &None, "policy {policy_id}: {items:?}");
    }
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'restore.item_written'")
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(
        audited, updated as i64,
        "only the items written are audited"
    );
}

/// A restore's evidence (the policy read again after its write) clears the policy's mark of
/// being gone from Intune only when the mark is no newer than that read: a sync that marked the
/// policy gone while the read was in flight (deleted meanwhile) is not undone by the record.
async fn a_policy_marked_gone_while_a_restore_reads_its_evidence_stays_gone(f: Fixture) {
    let changed = f.graph_ids("configurationPolicies", 1);
    let queued = f.queue(&changed, &[]).await;
    let (graph_id, policy) = (changed[0].as_str(), queued.ids[0]);
    common::answer_after(&f.demo.sim, 300);
    f.demo.sim.reset_counters();
    let worker = f.worker.clone();
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    // The evidence read: a read of the policy after its write.
    let sim = &f.demo.sim;
    common::wait_until(
        "the evidence was never read",
        Duration::from_secs(20),
        Duration::from_millis(5),
        || async move {
            let counters = sim.counters();
            let requests = counters.for_path(graph_id);
            requests
                .iter()
                .position(|r| r.is_write())
                .is_some_and(|first| requests[first..].iter().any(|r| !r.is_write()))
        },
    )
    .await;
    // Marked gone after the read started (a later millisecond), as a sync would.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let marked = Timestamp::now().millis();
    sqlx::query("UPDATE policies SET gone_from_intune_at = $1 WHERE id = $2")
        .bind(marked)
        .bind(policy)
        .execute(f.app.db.pool())
        .await
        .expect("the policy is marked gone");
    let executed = working.await.unwrap().expect("the worker runs");
    common::answer_after(&f.demo.sim, 0);
    assert!(
        matches!(executed, Outcome::TaskCompleted { run_id } if run_id == queued.run_id),
        "{executed:?}"
    );
    let detail = f
        .app
        .run_detail(Some(&f.owner), CONTOSO, queued.run_id, &[])
        .await
        .expect("the owner reads the run");
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(
        f.action(queued.run_id, policy).await.as_deref(),
        Some("updated")
    );
    let gone: Option<i64> =
        sqlx::query_scalar("SELECT gone_from_intune_at FROM policies WHERE id = $1")
            .bind(policy)
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(gone, Some(marked), "the mark made during the read stays");
}
