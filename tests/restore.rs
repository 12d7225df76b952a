//! Defensive restore end to end on both engines: a backup captured from the Graph simulator,
//! Intune changed behind it, a `restore.preview` (strictly read-only: a simulator that refuses
//! every write proves it), the execute gates checked on the server, a `restore.execute` that
//! writes the backup back (update in place, create anew) and ends with evidence, and a second
//! restore that writes nothing. Every call goes through the server functions the wizard uses.

use crate::common;
use crate::sim_support::{BeforeWrite, Delay, HookedWriter};

use common::takeover::Announced;
use common::{Answer, DemoApp, Refusal, CONTOSO, OPERATOR, OUTSIDER, READONLY};
use std::sync::Arc;
use std::time::Duration;
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::restore::{
    GateFailure, PlanAction, PlanItem, RestorePreview, RestoreSource,
};
use tenantatlas::domain::run_detail::{ItemOutcome, RunDetail, RunItemRow};
use tenantatlas::domain::PolicyType;
use tenantatlas::domain::{RunStatus, SubmittedRun};
use tenantatlas::graph_sim::SimPolicy;

use tenantatlas::server::engine::operation::Registry;
use tenantatlas::server::engine::worker::{CredentialsLoader, RunFailure, Worker};
use tenantatlas::server::graph::write::{
    DirectoryKind, PolicyWriter, WriteFailure, WriteFuture, WriteRequest,
};
use tenantatlas::server::graph::{
    GraphClient, GraphError, GraphFuture, PolicySource, TenantCredentials,
};
use tenantatlas::server::seed;
use tenantatlas::server::snapshots::load_version;

both_backends!(local Fixture:
    a_restore_brings_back_every_type_and_ends_with_evidence,
    the_preview_never_writes,
    the_execute_gates_hold_on_the_server,
    a_name_stored_with_a_run_of_spaces_is_confirmed_as_the_page_shows_it,
    a_cancelled_queued_execute_is_not_called_executed,
    only_owners_and_managers_may_restore,
    an_item_changed_since_the_preview_is_not_written,
    a_missing_permission_or_group_blocks_the_restore,
    the_wizard_at_a_preview_sends_the_browser_each_answer_once,
    a_cancel_while_a_create_is_in_flight_records_the_write_in_full,
    a_takeover_never_takes_a_policy_that_existed_for_its_create,
    a_takeover_records_a_write_the_crashed_claim_made,
    a_takeover_claims_no_write_it_never_announced,
    a_takeover_never_resends_definition_values_an_earlier_claim_may_still_send,
    a_cancel_during_a_lost_create_does_not_say_nothing_was_written,
    an_update_whose_read_before_writing_fails_is_not_called_written,
    leaving_scope_tags_out_leaves_the_live_tags_alone,
    a_part_left_out_of_the_restore_is_no_change,
    a_create_warns_of_a_live_policy_with_the_backups_name,
    a_preview_that_could_not_read_a_policy_says_so,
    a_policy_written_before_its_assignments_failed_is_recorded,
    a_create_whose_answer_is_lost_is_found_and_never_sent_twice,
    a_create_that_may_still_land_blocks_the_next_create,
    a_takeover_never_creates_while_an_earlier_create_may_land,
    a_takeover_after_a_sync_takes_the_policy_its_create_made,
    a_takeover_that_cannot_finish_its_create_still_records_the_policy_it_made,
    a_preview_never_adopts_a_policy_made_after_the_create_could_land,
    a_takeover_never_resends_definition_values_of_an_adopted_create_that_may_still_land,
    a_takeover_after_an_update_cut_short_says_it_was_partly_written,
    a_second_previews_execute_never_sends_a_create_the_first_may_have_made,
    an_update_whose_answer_is_lost_is_audited_as_maybe_written,
    an_update_throttled_after_its_answer_was_lost_is_audited_as_maybe_written,
    a_preview_never_adopts_the_create_of_an_execute_still_running,
    a_create_whose_policy_has_another_record_in_use_is_never_planned_again,
    two_secrets_at_one_setting_path_in_the_backup_are_never_restored_by_a_guess,
    two_secrets_at_one_setting_path_in_intune_are_never_restored_by_a_guess,
    a_secret_in_one_of_several_collection_instances_is_never_restored_by_a_guess,
    a_secret_among_collection_instances_in_intune_is_never_restored_by_a_guess,
    the_preview_read_names_its_execute_while_it_is_queued_or_running,
    the_preview_read_names_its_execute_cancelled_while_its_claim_still_writes,
    an_execute_cancelled_while_its_claim_still_writes_is_settling_not_unwritten,
    an_execute_never_writes_a_policy_a_cancelled_execute_still_writes,
);

const MANAGER: &str = "manager@contoso.example";
const TENANT_NAME: &str = seed::DEMO_TENANTS[0].1;
/// The options a restore backs up and previews with.
const WITH_ASSIGNMENTS_AND_SCOPE_TAGS: &[(&str, &str)] = &[
    ("include_assignments", "true"),
    ("include_scope_tags", "true"),
];
/// The options of a restore (or a backup) that leaves scope tags out.
const WITHOUT_SCOPE_TAGS: &[(&str, &str)] = &[
    ("include_assignments", "true"),
    ("include_scope_tags", "false"),
];
/// The options of a restore that leaves assignments out.
const WITHOUT_ASSIGNMENTS: &[(&str, &str)] = &[
    ("include_assignments", "false"),
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

impl Backup {
    /// The inventory ids of the backed-up policies, in order.
    fn ids(&self) -> Vec<i64> {
        self.policies.iter().map(|(id, _)| *id).collect()
    }
}

impl Fixture {
    async fn start(backend: common::Backend) -> Self {
        let demo_app = DemoApp::start(backend).await;
        let manager = demo_app.app.sign_in(MANAGER).await;
        Self { demo_app, manager }
    }

    /// Starts a run through `endpoint` as the manager and runs it to its end; its id.
    async fn run(&self, endpoint: &str, form: &[(&str, &str)]) -> i64 {
        self.run_as(&self.manager, endpoint, form).await
    }

    /// Syncs the inventory and backs up one policy of each type (assignments and scope tags
    /// included).
    async fn backup(&self) -> Backup {
        let sims = self.demo.sim.policies(CONTOSO);
        let mut graph_ids = Vec::new();
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
            graph_ids.push(sim.id.clone());
        }
        self.backup_of(&graph_ids).await
    }

    /// Syncs the inventory and backs up the policies of `graph_ids` (assignments and scope
    /// tags included).
    async fn backup_of(&self, graph_ids: &[String]) -> Backup {
        self.sync().await;
        let mut policies = Vec::new();
        for graph_id in graph_ids {
            policies.push((self.policy_id(graph_id).await, graph_id.clone()));
        }
        let set = common::backup_set(&self.app, &self.manager, CONTOSO, "Restore me").await;
        let ids: Vec<i64> = policies.iter().map(|(id, _)| *id).collect();
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
        Backup { set, policies }
    }

    /// Syncs the inventory.
    async fn sync(&self) {
        self.run("runs/sync-inventory", &[("tenant", CONTOSO)])
            .await;
    }

    /// Runs a preview of restoring `ids` of the set (assignments and scope tags included); its
    /// id and plan.
    async fn preview(&self, set: i64, ids: &[i64]) -> (i64, RestorePreview) {
        self.preview_with(set, ids, WITH_ASSIGNMENTS_AND_SCOPE_TAGS)
            .await
    }

    /// Runs a preview of restoring `ids` of the set with `options`; its id and plan.
    async fn preview_with(
        &self,
        set: i64,
        ids: &[i64],
        options: &[(&str, &str)],
    ) -> (i64, RestorePreview) {
        let run_id = self
            .app
            .start_restore_preview(
                &self.manager,
                CONTOSO,
                RestoreSource::BackupSet(set),
                ids,
                options,
            )
            .await
            .expect("the preview starts")
            .run_id;
        self.finish(run_id).await;
        (run_id, self.plan(run_id).await)
    }

    /// Runs a preview of restoring policy `id` of the set alone, which must plan `expected`;
    /// its id and plan.
    async fn preview_planning(
        &self,
        set: i64,
        id: i64,
        expected: PlanAction,
    ) -> (i64, RestorePreview) {
        let (preview, plan) = self.preview(set, &[id]).await;
        assert_eq!(item(&plan, id).plan, Some(expected), "{plan:?}");
        (preview, plan)
    }

    /// Starts the execute of `preview` as the manager, queued; its id.
    async fn queue_execute(&self, preview: i64) -> i64 {
        self.execute_as(&self.manager, preview, true, TENANT_NAME)
            .await
            .expect("the restore starts")
            .run_id
    }

    /// Makes the next claim of queued run `run_id` its second, as when a claim that crashed
    /// is taken over.
    async fn as_taken_over(&self, run_id: i64) {
        common::takeover::as_taken_over(&self.app.db, run_id).await;
    }

    /// Sets the columns of run `run_id` as `assignments` (SQL) says.
    async fn set_run(&self, run_id: i64, assignments: &str) {
        sqlx::query(&format!("UPDATE runs SET {assignments} WHERE id = $1"))
            .bind(run_id)
            .execute(self.app.db.pool())
            .await
            .unwrap();
    }

    /// Marks run `run_id` running under a live claim of this instance (in another of its
    /// tasks): attempt 1, its lease an hour ahead, so this instance's worker does not take it.
    async fn hold_by_live_claim(&self, run_id: i64) {
        sqlx::query(
            "UPDATE runs SET status = 'running', attempt = 1, lease_owner = $3, \
             lease_expires_at = $2 WHERE id = $1",
        )
        .bind(run_id)
        .bind(now_ms() + 3_600_000)
        .bind(self.worker.id())
        .execute(self.app.db.pool())
        .await
        .unwrap();
    }

    /// Starts the execute of `preview` as the manager, queued for a claim that takes it over
    /// ([`Self::as_taken_over`]); its id.
    async fn queue_takeover(&self, preview: i64) -> i64 {
        let run_id = self.queue_execute(preview).await;
        self.as_taken_over(run_id).await;
        run_id
    }

    /// Resets the simulator's counters and runs the queue until run `run_id` has ended: the
    /// [`Self::writes`] are then the run's.
    async fn finish_counted(&self, run_id: i64) {
        self.demo.sim.reset_counters();
        self.finish(run_id).await;
    }

    /// Marks run `run_id` cancelled, as an execute that ended by a cancel.
    async fn mark_cancelled(&self, run_id: i64) {
        self.set_run(run_id, "status = 'cancelled'").await;
    }

    /// The detail of run `run_id`, as the manager reads it.
    async fn detail(&self, run_id: i64) -> RunDetail {
        self.app
            .run_detail(Some(&self.manager), CONTOSO, run_id, &[])
            .await
            .expect("the manager reads the run")
    }

    /// The first item of run `run_id`, which must have failed: its reason and message.
    async fn failed_item(&self, run_id: i64) -> FailedItem {
        let detail = self.detail(run_id).await;
        let row = &detail.items.rows[0];
        assert_eq!(row.outcome, ItemOutcome::Failed, "{detail:?}");
        FailedItem {
            reason: row.reason_code,
            message: row.message.clone().unwrap_or_default(),
        }
    }

    /// Writes version `snapshot_id` of a policy to Intune as the execute would (in place at
    /// `target`, or anew): what a claim that crashed before recording it sent.
    async fn write_directly(
        &self,
        policy_type: PolicyType,
        snapshot_id: i64,
        target: Option<&str>,
    ) -> String {
        let version = self.version(snapshot_id).await;
        self.write_payload(policy_type, &version.payload, version.format, target)
            .await
    }

    /// Version `snapshot_id` as stored.
    async fn version(&self, snapshot_id: i64) -> tenantatlas::server::snapshots::StoredVersion {
        let tenant_id = common::tenant_id(&self.app.db, CONTOSO).await;
        load_version(self.app.db.pool(), tenant_id, snapshot_id)
            .await
            .unwrap()
            .expect("the version exists")
    }

    /// Writes `payload` (a captured policy) to Intune as a restore with assignments and scope
    /// tags would: in place at `target`, or anew.
    async fn write_payload(
        &self,
        policy_type: PolicyType,
        payload: &serde_json::Value,
        format: tenantatlas::domain::snapshot::CaptureFormat,
        target: Option<&str>,
    ) -> String {
        let tenant_id = common::tenant_id(&self.app.db, CONTOSO).await;
        let creds = self
            .demo
            .access
            .credentials(&self.app.db, tenant_id)
            .await
            .expect("credentials");
        let request = WriteRequest {
            policy_type,
            target,
            backup: payload,
            format,
            live: None,
            include_assignments: true,
            include_scope_tags: true,
        };
        self.demo
            .access
            .client
            .write_policy(&creds, request)
            .await
            .expect("written")
            .graph_id
    }

    /// Makes the item of preview `preview` an update with nothing blocking it, as a preview
    /// that did not check what blocked it would have recorded it.
    async fn plan_as_update(&self, preview: i64) {
        sqlx::query(
            "UPDATE run_items SET restore_plan = 'update', restore_notes = '{}' WHERE run_id = $1",
        )
        .bind(preview)
        .execute(self.app.db.pool())
        .await
        .unwrap();
    }

    /// A live settings catalog policy, made to hold one Wi-Fi collection of `networks` (see
    /// [`wifi_networks`]); its Graph id.
    fn wifi_policy(&self, networks: &[(&str, &str)]) -> String {
        let graph_id = self
            .live_policy("a settings catalog policy", |p| {
                p.kind.collection() == "configurationPolicies"
            })
            .id;
        self.set_wifi(&graph_id, networks);
        graph_id
    }

    /// Makes the settings catalog policy of `graph_id` hold one Wi-Fi collection of `networks`,
    /// as an edit in Intune would.
    fn set_wifi(&self, graph_id: &str, networks: &[(&str, &str)]) {
        assert!(self
            .demo
            .sim
            .set_settings(CONTOSO, graph_id, wifi_networks(networks)));
    }

    /// As [`Fixture::set_wifi`], a network without a password where its token is `None` (see
    /// [`wifi_instances`]).
    fn set_wifi_passwords(&self, graph_id: &str, networks: &[(&str, Option<&str>)]) {
        assert!(self
            .demo
            .sim
            .set_settings(CONTOSO, graph_id, wifi_instances(networks)));
    }

    /// The Wi-Fi networks Intune holds for the policy of `graph_id`: each SSID with the token
    /// of its password (empty for a network without one).
    fn wifi_of(&self, graph_id: &str) -> Vec<(String, String)> {
        let policy = self
            .demo
            .sim
            .policy_json(CONTOSO, graph_id)
            .expect("the policy is live");
        let instances = policy["settings"][0]["settingInstance"]["groupSettingCollectionValue"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        instances
            .iter()
            .map(|instance| {
                let value = |n: usize| {
                    instance["children"][n]["simpleSettingValue"]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                };
                (value(0), value(1))
            })
            .collect()
    }

    /// The count of `restore.item_written` audit rows.
    async fn audited(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'restore.item_written'")
            .fetch_one(self.app.db.pool())
            .await
            .unwrap()
    }

    /// The Graph id the inventory row `policy_id` holds.
    async fn graph_id_of(&self, policy_id: i64) -> String {
        sqlx::query_scalar("SELECT graph_id FROM policies WHERE id = $1")
            .bind(policy_id)
            .fetch_one(self.app.db.pool())
            .await
            .unwrap()
    }

    /// Whether the inventory row `policy_id` is marked gone from Intune.
    async fn gone_from_intune(&self, policy_id: i64) -> bool {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT gone_from_intune_at FROM policies WHERE id = $1",
        )
        .bind(policy_id)
        .fetch_one(self.app.db.pool())
        .await
        .unwrap()
        .is_some()
    }

    /// The first live policy that `matches`; `what` names it should there be none.
    fn live_policy(&self, what: &str, matches: impl Fn(&SimPolicy) -> bool) -> SimPolicy {
        self.demo
            .sim
            .policies(CONTOSO)
            .into_iter()
            .find(matches)
            .unwrap_or_else(|| panic!("no live policy is {what}"))
    }

    /// The name of the live policy of `graph_id`.
    fn name_of(&self, graph_id: &str) -> String {
        self.live_policy(graph_id, |p| p.id == graph_id).name
    }

    /// The Graph id of a live device configuration other than the one of `graph_id`.
    fn other_device_configuration(&self, graph_id: &str) -> String {
        self.live_policy("another device configuration", |p| {
            p.kind.collection() == "deviceConfigurations" && p.id != graph_id
        })
        .id
    }

    /// Whether Intune holds a live policy of `graph_id`.
    fn is_live(&self, graph_id: &str) -> bool {
        self.demo
            .sim
            .policies(CONTOSO)
            .iter()
            .any(|p| p.id == graph_id)
    }

    /// The version of `policy` that backup set `set` holds.
    async fn backed_up(&self, set: i64, policy: i64) -> i64 {
        sqlx::query_scalar(
            "SELECT snapshot_id FROM backup_items WHERE backup_set_id = $1 AND policy_id = $2",
        )
        .bind(set)
        .bind(policy)
        .fetch_one(self.app.db.pool())
        .await
        .unwrap()
    }

    /// Makes backup set `set` hold version `snapshot_id` of `policy`.
    async fn back_up_as(&self, set: i64, policy: i64, snapshot_id: i64) {
        sqlx::query(
            "UPDATE backup_items SET snapshot_id = $1 WHERE backup_set_id = $2 AND policy_id = $3",
        )
        .bind(snapshot_id)
        .bind(set)
        .bind(policy)
        .execute(self.app.db.pool())
        .await
        .unwrap();
    }

    /// The scope tags Intune holds for the policy of `graph_id`, if it is live.
    fn scope_tags_of(&self, graph_id: &str) -> Option<serde_json::Value> {
        self.demo
            .sim
            .policy_json(CONTOSO, graph_id)
            .map(|p| p["roleScopeTagIds"].clone())
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

    /// Starts a preview of restoring `ids` of the set (assignments included) as `cookie`.
    async fn start_preview(&self, cookie: &str, set: i64, ids: &[i64]) -> Answer<SubmittedRun> {
        self.app
            .start_restore_preview(
                cookie,
                CONTOSO,
                RestoreSource::BackupSet(set),
                ids,
                WITH_ASSIGNMENTS_AND_SCOPE_TAGS,
            )
            .await
    }

    /// The plan of preview run `preview`, as the manager reads it.
    async fn plan(&self, preview: i64) -> RestorePreview {
        self.app
            .restore_preview(&self.manager, CONTOSO, preview)
            .await
            .expect("the manager reads the plan")
    }

    /// Asks to execute `preview` as `cookie`, with the confirmations given.
    async fn execute_as(
        &self,
        cookie: &str,
        preview: i64,
        reviewed: bool,
        name: &str,
    ) -> Answer<SubmittedRun> {
        self.app
            .execute_restore(cookie, CONTOSO, preview, reviewed, name)
            .await
    }

    /// Executes `preview` with both confirmations and runs it to its end; the run's detail.
    async fn execute(&self, preview: i64) -> RunDetail {
        let run_id = self.queue_execute(preview).await;
        self.finish(run_id).await;
        self.detail(run_id).await
    }

    /// Asks to execute `preview` as the manager with both confirmations, which the server must
    /// refuse; `what` names the call.
    async fn execute_refused(&self, preview: i64, what: &str) -> Refusal {
        refused(
            self.execute_as(&self.manager, preview, true, TENANT_NAME)
                .await,
            what,
        )
    }

    /// Asserts that the simulator has seen no Graph write since its counters were reset; `why`
    /// says why none was due.
    fn assert_no_writes(&self, why: &str) {
        assert_eq!(self.writes(), Vec::<String>::new(), "{why}");
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
fn item(plan: &RestorePreview, policy_id: i64) -> &PlanItem {
    plan.items
        .iter()
        .find(|i| i.policy_id == policy_id)
        .unwrap_or_else(|| panic!("no item of policy {policy_id} in {plan:?}"))
}

/// The backup version the item of `policy_id` restores.
fn backup_version(plan: &RestorePreview, policy_id: i64) -> i64 {
    item(plan, policy_id)
        .backup_snapshot_id
        .expect("the backup version")
}

/// Whether one of the item's blocks says each of `words`.
fn blocked_saying(planned: &PlanItem, words: &[&str]) -> bool {
    planned
        .notes
        .blocked
        .iter()
        .any(|why| words.iter().all(|word| why.contains(word)))
}

/// The row of `policy_id`'s item in a run's detail.
fn row_of(detail: &RunDetail, policy_id: i64) -> &RunItemRow {
    detail
        .items
        .rows
        .iter()
        .find(|r| r.policy_id == policy_id)
        .unwrap_or_else(|| panic!("no item of policy {policy_id} in {detail:?}"))
}

/// What the server refused a call with; `what` names the call should it have been answered.
fn refused<T: std::fmt::Debug>(answer: Answer<T>, what: &str) -> Refusal {
    match answer {
        Ok(value) => panic!("{what} was answered: {value:?}"),
        Err(refusal) => refusal,
    }
}

/// A failed item of a run: why, and what it says.
struct FailedItem {
    reason: Option<ReasonCode>,
    message: String,
}

/// The details of a `restore.item_written` audit row.
#[derive(Debug, serde::Deserialize)]
struct ItemWritten {
    run_id: i64,
    action: String,
    graph_id: Option<String>,
    completed: bool,
    /// Why the write is incomplete (with `completed` false).
    failure: Option<WriteFailed>,
}

/// The failure an incomplete write's audit row records.
#[derive(Debug, serde::Deserialize)]
struct WriteFailed {
    message: String,
}

impl ItemWritten {
    /// The message of the failure the row records, if any.
    fn failure_message(&self) -> Option<&str> {
        self.failure
            .as_ref()
            .map(|failure| failure.message.as_str())
    }
}

/// Where a Wi-Fi network's password sits in [`wifi_networks`]: both networks' share it.
const WIFI_PASSWORD: &str = "/wifi/wifi_password";

/// A settings catalog policy's settings: one collection with an instance per network (two
/// Wi-Fi payloads, say), each with its SSID and its password as Intune holds it (an encrypted
/// token; a capture drops it).
fn wifi_networks(networks: &[(&str, &str)]) -> Vec<serde_json::Value> {
    let passwords: Vec<(&str, Option<&str>)> = networks
        .iter()
        .map(|(ssid, token)| (*ssid, Some(*token)))
        .collect();
    wifi_instances(&passwords)
}

/// As [`wifi_networks`], a network whose token is `None` without a password setting at all.
fn wifi_instances(networks: &[(&str, Option<&str>)]) -> Vec<serde_json::Value> {
    let simple = "#microsoft.graph.deviceManagementConfigurationSimpleSettingInstance";
    let instances: Vec<serde_json::Value> = networks
        .iter()
        .map(|(ssid, token)| {
            let mut children = vec![serde_json::json!(
                {"@odata.type": simple, "settingDefinitionId": "wifi_ssid", "simpleSettingValue": {
                    "@odata.type": "#microsoft.graph.deviceManagementConfigurationStringSettingValue",
                    "value": ssid}})];
            if let Some(token) = token {
                children.push(serde_json::json!(
                    {"@odata.type": simple, "settingDefinitionId": "wifi_password", "simpleSettingValue": {
                        "@odata.type": "#microsoft.graph.deviceManagementConfigurationSecretSettingValue",
                        "value": token, "valueState": "encryptedValueToken"}}));
            }
            serde_json::json!({ "children": children })
        })
        .collect();
    vec![serde_json::json!({"id": "0", "settingInstance": {
        "@odata.type": "#microsoft.graph.deviceManagementConfigurationGroupSettingCollectionInstance",
        "settingDefinitionId": "wifi",
        "groupSettingCollectionValue": instances
    }})]
}

/// `(ssid, token)` pairs as [`Fixture::wifi_of`] reads them.
fn networks(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(ssid, token)| ((*ssid).to_owned(), (*token).to_owned()))
        .collect()
}

/// `n` seconds.
fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Polls `done` every `every` until it holds; fails saying `what` never happened once `within`
/// has passed.
async fn wait_for<F, Fut>(what: &str, within: Duration, every: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !done().await {
        assert!(started.elapsed() < within, "{what}");
        tokio::time::sleep(every).await;
    }
}

async fn a_restore_brings_back_every_type_and_ends_with_evidence(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    // Intune changes behind the backup: every policy edited, the device configuration deleted
    // (a type without secret settings: a secret, never captured, cannot be created anew).
    let (deleted_id, deleted_graph) = backup.policies[1].clone();
    for (_, graph_id) in &backup.policies {
        assert!(f.demo.sim.change_settings(CONTOSO, graph_id));
    }
    assert!(f.demo.sim.remove_policy(CONTOSO, &deleted_graph));

    let (preview, plan) = f.preview(backup.set, &ids).await;
    assert_eq!(plan.status, RunStatus::Completed, "{plan:?}");
    assert_eq!(plan.not_executable, None, "{plan:?}");
    assert_eq!(item(&plan, deleted_id).plan, Some(PlanAction::Create));
    for (id, _) in backup.policies.iter().filter(|(id, _)| *id != deleted_id) {
        let planned = item(&plan, *id);
        assert_eq!(planned.plan, Some(PlanAction::Update), "{planned:?}");
        assert!(
            planned.changed_settings.is_some_and(|changed| changed >= 1),
            "{planned:?}"
        );
        assert_ne!(planned.live_snapshot_id, planned.backup_snapshot_id);
    }

    f.demo.sim.reset_counters();
    let detail = f.execute(preview).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(
        detail.summary.as_deref(),
        Some("4 of 4 now match the backup."),
        "{detail:?}"
    );
    assert!(!f.writes().is_empty());
    assert!(
        f.writes().iter().all(|w| !w.starts_with("DELETE")),
        "a restore never deletes: {:?}",
        f.writes()
    );
    // The deleted policy was created anew; its record follows the new id.
    let new_graph_id = f.graph_id_of(deleted_id).await;
    assert_ne!(new_graph_id, deleted_graph);
    assert!(f.is_live(&new_graph_id));
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
    assert_eq!(f.audited().await, 4, "one audit row per item written");

    // The same restore again, after a fresh preview: every item unchanged, zero writes.
    let (again, plan) = f.preview(backup.set, &ids).await;
    for id in &ids {
        assert_eq!(
            item(&plan, *id).plan,
            Some(PlanAction::Unchanged),
            "{plan:?}"
        );
    }
    f.demo.sim.reset_counters();
    let detail = f.execute(again).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    f.assert_no_writes("every item unchanged");
    let actions: Vec<Option<String>> =
        sqlx::query_scalar("SELECT restore_action FROM run_items WHERE run_id = $1")
            .bind(detail.id)
            .fetch_all(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(actions, vec![Some("unchanged".to_owned()); 4]);
}

async fn the_preview_never_writes(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    for (_, graph_id) in &backup.policies {
        assert!(f.demo.sim.change_settings(CONTOSO, graph_id));
    }
    assert!(f.demo.sim.remove_policy(CONTOSO, &backup.policies[0].1));
    // A simulator that fails every request but a GET.
    f.demo.sim.set_reject_writes(true);
    f.demo.sim.reset_counters();
    let (_, plan) = f.preview(backup.set, &ids).await;
    assert_eq!(plan.status, RunStatus::Completed, "{plan:?}");
    let counters = f.demo.sim.counters();
    assert!(counters.graph_requests() > 0);
    f.assert_no_writes("a preview only reads");
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
    let ids = backup.ids();
    assert!(f.demo.sim.change_settings(CONTOSO, &backup.policies[1].1));
    let (preview, _) = f.preview(backup.set, &ids).await;
    let runs = f.runs().await;

    // The request's own gates: 422, nothing queued. Spaces are compared as the page shows
    // them (a_name_stored_with_a_run_of_spaces_is_confirmed_as_the_page_shows_it), but one
    // left out is another name.
    let unspaced = TENANT_NAME.replace(' ', "");
    for (reviewed, name) in [
        (true, "Contoso"),
        (true, "contoso (demo)"),
        (true, ""),
        (true, unspaced.as_str()),
        (false, TENANT_NAME),
    ] {
        let refusal = refused(
            f.execute_as(&f.manager, preview, reviewed, name).await,
            &format!("{reviewed} {name:?}"),
        );
        assert_eq!(refusal.status, 422, "{reviewed} {name:?}: {}", refusal.body);
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
    let refusal = f.execute_refused(preview, "an expired preview").await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::PreviewExpired)
    );

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
    let held = f.backed_up(backup.set, policy).await;
    f.back_up_as(backup.set, policy, other).await;
    let refusal = f
        .execute_refused(preview, "a preview of a changed backup")
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert_eq!(
        f.runs().await,
        runs + 1,
        "only the second preview was queued"
    );
    f.back_up_as(backup.set, policy, held).await;

    // A current preview: a double submit is one run; once it ended, the preview is spent.
    let (first, second) = tokio::join!(
        f.execute_as(&f.manager, preview, true, TENANT_NAME),
        f.execute_as(&f.manager, preview, true, TENANT_NAME),
    );
    let (first, second) = match (first, second) {
        (Ok(first), Ok(second)) => (first, second),
        answers => panic!("both submits are answered: {answers:?}"),
    };
    assert_eq!(first.run_id, second.run_id);
    f.finish(first.run_id).await;
    let refusal = f.execute_refused(preview, "a spent preview").await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    // The race the checks alone lose: the first execute still looks under way to the check of
    // ended executes, and unlike the new one to the lookup of identical active runs (as when it
    // ends between the two). The database still refuses a second execute of the preview.
    f.set_run(
        first.run_id,
        "status = 'running', idempotency_key = 'elsewhere'",
    )
    .await;
    let before = f.runs().await;
    let refusal = f
        .execute_refused(preview, "a preview whose execute ends meanwhile")
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert_eq!(f.runs().await, before, "no second execute of the preview");

    // A preview that is not a preview of this tenant: 404.
    let refusal = refused(
        f.execute_as(&f.manager, first.run_id, true, TENANT_NAME)
            .await,
        "an execute run as the preview",
    );
    assert_eq!(refusal.status, 404);
}

/// A tenant whose name was stored before names were canonicalised, with two spaces: the wizard
/// shows it with one (HTML collapses the run), and the owner types what the page shows. The
/// server compares both canonicalised, so that name confirms the restore; a wrong one still
/// does not.
async fn a_name_stored_with_a_run_of_spaces_is_confirmed_as_the_page_shows_it(f: Fixture) {
    let stored = TENANT_NAME.replace(' ', "  ");
    sqlx::query("UPDATE tenants SET display_name = $1 WHERE external_id = $2")
        .bind(&stored)
        .bind(CONTOSO)
        .execute(f.app.db.pool())
        .await
        .unwrap();
    let backup = f.backup().await;
    let ids = backup.ids();
    let (preview, plan) = f.preview(backup.set, &ids).await;
    assert_eq!(plan.not_executable, None, "{plan:?}");
    let runs = f.runs().await;
    let refusal = refused(
        f.execute_as(&f.manager, preview, true, "Contoso  (Demo)")
            .await,
        "a wrong name",
    );
    assert_eq!(refusal.status, 422, "{}", refusal.body);
    assert_eq!(f.runs().await, runs);

    let run = f
        .execute_as(&f.manager, preview, true, TENANT_NAME)
        .await
        .unwrap_or_else(|refusal| panic!("{TENANT_NAME:?} for {stored:?}: {refusal:?}"));
    assert_eq!(f.runs().await, runs + 1);
    f.finish(run.run_id).await;
}

/// An execute cancelled while queued wrote nothing: the preview stays spent (one execute per
/// preview), but the refusal says no write was recorded rather than "executed already".
async fn a_cancelled_queued_execute_is_not_called_executed(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    assert!(f.demo.sim.change_settings(CONTOSO, &backup.policies[1].1));
    let (preview, _) = f.preview(backup.set, &ids).await;
    let queued = f.queue_execute(preview).await;
    f.app
        .cancel_run(&f.manager, CONTOSO, queued)
        .await
        .expect("the manager cancels the queued execute");
    let runs = f.runs().await;
    let refusal = f
        .execute_refused(
            preview,
            "a preview whose execute was cancelled while queued",
        )
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert!(
        refusal.body.contains("with no write to Intune recorded"),
        "{}",
        refusal.body
    );
    assert!(
        !refusal.body.contains("executed already"),
        "{}",
        refusal.body
    );
    assert_eq!(f.runs().await, runs, "no second execute of the preview");
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::ExecuteStoppedUnwritten)
    );

    // An execute that ran and wrote is executed already.
    let (preview, _) = f.preview(backup.set, &ids).await;
    assert_eq!(f.execute(preview).await.status, RunStatus::Completed);
    let refusal = f.execute_refused(preview, "a spent preview").await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert!(
        refusal.body.contains("executed already"),
        "{}",
        refusal.body
    );
}

async fn only_owners_and_managers_may_restore(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    let (preview, _) = f.preview(backup.set, &ids).await;
    let runs = f.runs().await;
    for email in [OPERATOR, READONLY, OUTSIDER] {
        let cookie = f.app.sign_in(email).await;
        let refusal = refused(
            f.start_preview(&cookie, backup.set, &ids).await,
            &format!("{email} preview"),
        );
        assert_eq!(refusal.status, 403, "{email} preview: {}", refusal.body);
        let refusal = refused(
            f.execute_as(&cookie, preview, true, TENANT_NAME).await,
            &format!("{email} execute"),
        );
        assert_eq!(refusal.status, 403, "{email} execute: {}", refusal.body);
    }
    assert_eq!(f.runs().await, runs, "nothing was queued");
    // Every member may read the plan; a non-member may not.
    let operator = f.app.sign_in(OPERATOR).await;
    f.app
        .restore_preview(&operator, CONTOSO, preview)
        .await
        .expect("an operator reads the plan");
    let outsider = f.app.sign_in(OUTSIDER).await;
    let refusal = refused(
        f.app.restore_preview(&outsider, CONTOSO, preview).await,
        "the outsider's read",
    );
    assert_eq!(refusal.status, 403);

    // A queued restore run is cancelled only by those who may restore.
    let queued = f
        .start_preview(&f.manager, backup.set, &ids[..1])
        .await
        .expect("the preview is queued");
    let refusal = refused(
        f.app.cancel_run(&operator, CONTOSO, queued.run_id).await,
        "the operator's cancel",
    );
    assert_eq!(refusal.status, 403, "{}", refusal.body);
    f.app
        .cancel_run(&f.manager, CONTOSO, queued.run_id)
        .await
        .expect("the manager cancels");
}

async fn an_item_changed_since_the_preview_is_not_written(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    for (_, graph_id) in &backup.policies {
        assert!(f.demo.sim.change_settings(CONTOSO, graph_id));
    }
    let (preview, _) = f.preview(backup.set, &ids).await;
    // Someone edits one policy again after the preview.
    let (moved, moved_graph) = backup.policies[3].clone();
    assert!(f.demo.sim.change_settings(CONTOSO, &moved_graph));
    f.demo.sim.reset_counters();
    let detail = f.execute(preview).await;
    assert_eq!(detail.status, RunStatus::CompletedWithErrors, "{detail:?}");
    let failed = row_of(&detail, moved);
    assert_eq!(failed.outcome, ItemOutcome::Failed);
    assert_eq!(failed.reason_code, Some(ReasonCode::ChangedSincePreview));
    assert!(
        f.writes().iter().all(|w| !w.contains(&moved_graph)),
        "nothing written for the moved policy: {:?}",
        f.writes()
    );
    assert!(
        detail
            .summary
            .as_deref()
            .is_some_and(|summary| summary.starts_with("3 of 4 now match the backup; 1 failed")),
        "{detail:?}"
    );
}

async fn a_missing_permission_or_group_blocks_the_restore(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    // The app lost Group.Read.All: the whole restore is blocked, and the block names it.
    f.demo.sim.set_app(
        CONTOSO,
        tenantatlas::graph_sim::AppSetup {
            missing_roles: vec!["Group.Read.All".into()],
            ..Default::default()
        },
    );
    let (preview, plan) = f.preview(backup.set, &ids).await;
    let block = plan.run_block.as_deref().unwrap_or_default();
    assert!(block.contains("Group.Read.All"), "{plan:?}");
    assert_eq!(plan.not_executable, Some(GateFailure::Blocked));
    let refusal = f.execute_refused(preview, "a blocked restore").await;
    assert_eq!(refusal.status, 409);

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
    assert_eq!(blocked.plan, Some(PlanAction::Blocked), "{plan:?}");
    assert!(blocked_saying(blocked, &[group.as_str()]), "{blocked:?}");
    let refusal = f
        .execute_refused(preview, "a restore with a blocked item")
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);

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
    let (_, plan) = f
        .preview_planning(backup.set, policy, PlanAction::Blocked)
        .await;
    let blocked = item(&plan, policy);
    assert!(
        blocked_saying(blocked, &[secrets[0].as_str()]),
        "{blocked:?}"
    );
}

/// The wizard opened at a preview (a reload) hands the browser every resource's answer under
/// the number of its creation, which the browser's hydration reads back in its own order. The
/// preview's resource was created inside the source's `Suspend`, which the server could run
/// twice: the browser then read the abandoned first resource's `{"Err":"Internal"}`, rendered
/// an error where the page showed the plan, and its hydration stopped (Playwright caught it
/// once in about ten reloads). Many renders at once, so that the server's timing varies.
async fn the_wizard_at_a_preview_sends_the_browser_each_answer_once(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    let (preview, _) = f.preview(backup.set, &ids).await;
    let path = format!(
        "/t/{CONTOSO}/restore/new?source=set-{}&preview={preview}",
        backup.set
    );
    let renders = futures::future::join_all((0..40).map(|_| async {
        let page = f.app.get(Some(&f.manager), &path).await;
        assert_eq!(page.status(), 200);
        page.text().await.unwrap()
    }))
    .await;
    let mut shapes = std::collections::BTreeSet::new();
    for html in renders {
        // `__RESOLVED_RESOURCES[3] = "{\"Ok\":…}"`: each resource's number and answer.
        let answers: Vec<(usize, &str)> = html
            .split("__RESOLVED_RESOURCES[")
            .skip(1)
            .filter_map(|rest| {
                let (number, answer) = rest.split_once(r#"] = ""#)?;
                Some((number.parse().ok()?, answer))
            })
            .collect();
        assert!(answers.len() >= 3, "the page hands the browser its answers");
        for (number, answer) in &answers {
            let start: String = answer.chars().take(40).collect();
            assert!(
                start.starts_with(r#"{\"Ok\""#),
                "resource {number}: {start}"
            );
        }
        assert!(
            html.contains(r#"data-testid="preview-status""#),
            "the plan is shown"
        );
        shapes.insert(
            answers
                .iter()
                .map(|(number, _)| *number)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        shapes.len(),
        1,
        "every render numbers its resources alike: {shapes:?}"
    );
}

/// A cancel while a create is in flight: the write stands in Intune, so the item finishes (its
/// assignments, its evidence) and is recorded in full: its outcome replaces the cancel's skip,
/// the audit row is written and the policy's record follows the new id (a later restore then
/// updates it instead of creating a duplicate).
async fn a_cancel_while_a_create_is_in_flight_records_the_write_in_full(f: Fixture) {
    let backup = f.backup().await;
    let (deleted_id, deleted_graph) = backup.policies[1].clone();
    assert!(f.demo.sim.remove_policy(CONTOSO, &deleted_graph));
    let (preview, _) = f
        .preview_planning(backup.set, deleted_id, PlanAction::Create)
        .await;
    let run_id = f.queue_execute(preview).await;
    let mut knobs = f.demo.sim.knobs();
    knobs.latency_ms = 400;
    f.demo.sim.set_knobs(knobs.clone());
    f.demo.sim.reset_counters();
    let sent = || async { f.created_any() };
    f.run_cancelling(f.worker.clone(), run_id, "the create was never sent", sent)
        .await;
    knobs.latency_ms = 0;
    f.demo.sim.set_knobs(knobs);

    let detail = f.detail(run_id).await;
    assert_eq!(detail.status, RunStatus::Cancelled, "{detail:?}");
    // The run says what the cancel left written.
    assert_eq!(
        detail.summary.as_deref(),
        Some("Cancelled after writing 1 of 1 policy; what was written stays in Intune."),
        "{detail:?}"
    );
    let row = &detail.items.rows[0];
    assert_eq!(row.outcome, ItemOutcome::Succeeded, "{detail:?}");
    assert_eq!(
        f.action(run_id, deleted_id).await.as_deref(),
        Some("created")
    );
    assert_eq!(f.audited().await, 1, "the write is audited");
    let new_graph_id = f.graph_id_of(deleted_id).await;
    assert_ne!(new_graph_id, deleted_graph);
    assert!(f.is_live(&new_graph_id));
    assert!(
        f.writes()
            .iter()
            .any(|w| w.starts_with("POST") && w.ends_with(&format!("{new_graph_id}/assign"))),
        "the created policy got its assignments: {:?}",
        f.writes()
    );
    // Restored again: the policy is found, nothing is created twice.
    f.preview_planning(backup.set, deleted_id, PlanAction::Unchanged)
        .await;
}

/// A claim that takes an execute over looks for the policy an earlier claim may have created
/// only where that claim announced its create, and never takes a policy that existed before
/// (someone else's, of the same name) for it: without an announced create it creates anew; with
/// one, it takes the one policy the earlier claim created; with two such candidates it writes
/// nothing and says why.
async fn a_takeover_never_takes_a_policy_that_existed_for_its_create(f: Fixture) {
    let backup = f.backup().await;
    let (p_id, p_graph) = backup.policies[1].clone();
    let name = f.name_of(&p_graph);
    let other = f.other_device_configuration(&p_graph);
    // Someone names another policy as the backed-up one, which is then deleted.
    assert!(f.demo.sim.rename_policy(CONTOSO, &other, &name));
    assert!(f.demo.sim.remove_policy(CONTOSO, &p_graph));
    let others_before = f.demo.sim.policy_json(CONTOSO, &other);

    // No create announced: created anew, the other policy untouched.
    let (preview, plan) = f
        .preview_planning(backup.set, p_id, PlanAction::Create)
        .await;
    let run_id = f.queue_takeover(preview).await;
    f.finish_counted(run_id).await;
    let detail = f.detail(run_id).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(f.action(run_id, p_id).await.as_deref(), Some("created"));
    let created = f.graph_id_of(p_id).await;
    assert!(created != other && created != p_graph);
    assert_eq!(f.demo.sim.policy_json(CONTOSO, &other), others_before);
    assert!(
        f.writes().iter().all(|w| !w.contains(&other)),
        "{:?}",
        f.writes()
    );
    assert_eq!(f.named(&name).len(), 2);

    // Announced by a claim that crashed after its create reached Intune: that policy is taken.
    let snapshot = backup_version(&plan, p_id);
    for (orphans, succeeds) in [(1, true), (2, false)] {
        assert!(f
            .demo
            .sim
            .remove_policy(CONTOSO, &f.graph_id_of(p_id).await));
        let (preview, _) = f
            .preview_planning(backup.set, p_id, PlanAction::Create)
            .await;
        let run_id = f.queue_takeover(preview).await;
        f.announce_create(run_id, p_id, now_ms()).await;
        let mut sent = Vec::new();
        for _ in 0..orphans {
            sent.push(
                f.write_directly(PolicyType::DeviceConfiguration, snapshot, None)
                    .await,
            );
        }
        f.finish_counted(run_id).await;
        let detail = f.detail(run_id).await;
        let row = &detail.items.rows[0];
        assert!(
            f.writes()
                .iter()
                .all(|w| !w.ends_with("/deviceConfigurations")),
            "nothing created twice: {:?}",
            f.writes()
        );
        assert_eq!(f.demo.sim.policy_json(CONTOSO, &other), others_before);
        if succeeds {
            assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
            assert_eq!(row.outcome, ItemOutcome::Succeeded);
            assert_eq!(f.action(run_id, p_id).await.as_deref(), Some("created"));
            assert_eq!(f.graph_id_of(p_id).await, sent[0]);
        } else {
            assert_eq!(detail.status, RunStatus::Failed, "{detail:?}");
            assert_eq!(row.outcome, ItemOutcome::Failed);
            assert_eq!(row.reason_code, Some(ReasonCode::ChangedSincePreview));
            f.assert_no_writes("nothing written");
            let message = row.message.as_deref().unwrap_or_default();
            assert!(
                sent.iter().all(|id| message.contains(id.as_str())),
                "{message}"
            );
        }
    }
}

/// A claim that crashed after writing an item back, before recording it: the claim that takes
/// the run over finds the policy matching the backup and records the item as updated (its
/// evidence, its audit row) instead of failing it as changed with "nothing was written".
async fn a_takeover_records_a_write_the_crashed_claim_made(f: Fixture) {
    let (backup, id, graph_id) = changed_policy(&f, 2).await;
    let (preview, plan) = f.preview_planning(backup.set, id, PlanAction::Update).await;
    let run_id = f.queue_takeover(preview).await;
    // The crashed claim announced its update before sending it.
    f.announce_update(run_id, id).await;
    let snapshot = backup_version(&plan, id);
    f.write_directly(PolicyType::Compliance, snapshot, Some(&graph_id))
        .await;
    f.finish_counted(run_id).await;
    let detail = f.detail(run_id).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(detail.items.rows[0].outcome, ItemOutcome::Succeeded);
    assert_eq!(f.action(run_id, id).await.as_deref(), Some("updated"));
    assert_eq!(f.audited().await, 1);
    f.assert_no_writes("written once, by the first claim");
    assert_eq!(
        detail.summary.as_deref(),
        Some("1 of 1 now match the backup."),
        "{detail:?}"
    );
}

/// A claim taking an execute over whose item was never announced (no claim sent its update)
/// finds the policy moved since the preview and now matching the backup: someone else wrote it
/// (an admin, by hand), not the run. The item fails as changed since the preview, as the first
/// claim's would, with no action recorded and no audit row claiming the write.
async fn a_takeover_claims_no_write_it_never_announced(f: Fixture) {
    let (backup, id, graph_id) = changed_policy(&f, 2).await;
    let (preview, plan) = f.preview_planning(backup.set, id, PlanAction::Update).await;
    let run_id = f.queue_takeover(preview).await;
    let snapshot = backup_version(&plan, id);
    f.write_directly(PolicyType::Compliance, snapshot, Some(&graph_id))
        .await;
    f.finish_counted(run_id).await;
    let failed = f.failed_item(run_id).await;
    assert_eq!(failed.reason, Some(ReasonCode::ChangedSincePreview));
    assert_eq!(f.action(run_id, id).await, None);
    assert_eq!(f.audited().await, 0, "no write of the run to audit");
    f.assert_no_writes("the item failed");
}

/// A claim taking an execute over whose earlier claim announced an administrative template's
/// update moments ago (its `updateDefinitionValues` may still be on its way: not idempotent,
/// values it adds would be added twice) sends nothing: the item fails saying when to preview
/// again, with an incomplete audit row.
async fn a_takeover_never_resends_definition_values_an_earlier_claim_may_still_send(f: Fixture) {
    let (backup, id, _) = changed_policy(&f, 3).await;
    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Update).await;
    let run_id = f.queue_takeover(preview).await;
    f.announce_update(run_id, id).await;
    f.finish_counted(run_id).await;

    f.assert_no_writes("nothing sent again");
    let message = f.failed_item(run_id).await.message;
    assert!(message.contains("Run the preview again after"), "{message}");
    assert!(message.contains("MAY be written"), "{message}");
    assert_eq!(f.action(run_id, id).await, None);
    let audited = f.only_audit().await;
    assert_eq!(audited.action, "updated");
    assert!(!audited.completed);
}

impl Fixture {
    /// Records that an earlier claim of run `run_id` announced the update of `policy_id` now
    /// (its item, pending), as a claim does right before sending it.
    async fn announce_update(&self, run_id: i64, policy_id: i64) {
        let db = &self.app.db;
        common::takeover::announce(db, Announced::Update, run_id, policy_id, now_ms()).await;
    }

    /// Records that an earlier claim of run `run_id` announced the create of `policy_id` at
    /// `sent_at` (its item, pending), as a claim does right before sending it.
    async fn announce_create(&self, run_id: i64, policy_id: i64, sent_at: i64) {
        let db = &self.app.db;
        common::takeover::announce(db, Announced::Create, run_id, policy_id, sent_at).await;
    }
}

/// The time now, in milliseconds since the epoch.
fn now_ms() -> i64 {
    tenantatlas::domain::Timestamp::now().millis()
}

/// A settings catalog policy is replaced by a PUT; with scope tags left out of the restore (the
/// wizard's default) its live scope tags stay as they are.
async fn leaving_scope_tags_out_leaves_the_live_tags_alone(f: Fixture) {
    let two_tags = |p: &SimPolicy| {
        f.scope_tags_of(&p.id)
            .is_some_and(|t| t.as_array().is_some_and(|t| t.len() == 2))
    };
    let tagged = f
        .live_policy("a settings catalog policy with two scope tags", |p| {
            p.kind.collection() == "configurationPolicies" && two_tags(p)
        })
        .id;
    let tags = f.scope_tags_of(&tagged);
    let backup = f.backup_of(std::slice::from_ref(&tagged)).await;
    let policy = backup.policies[0].0;
    assert!(f.demo.sim.change_settings(CONTOSO, &tagged));
    let (preview, plan) = f
        .preview_with(backup.set, &[policy], WITHOUT_SCOPE_TAGS)
        .await;
    assert_eq!(item(&plan, policy).plan, Some(PlanAction::Update));
    f.demo.sim.reset_counters();
    let detail = f.execute(preview).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert!(
        f.writes().iter().any(|w| w.starts_with("PUT")),
        "{:?}",
        f.writes()
    );
    assert_eq!(f.scope_tags_of(&tagged), tags, "the live scope tags stay");
}

/// A restore that leaves assignments (or scope tags) out writes none, so a difference there is
/// no change it makes: the plan says no change and removes nothing, the execute writes nothing,
/// and the evidence says the policy matches the backup.
async fn a_part_left_out_of_the_restore_is_no_change(f: Fixture) {
    let backup = f.backup().await;
    // Assignments: the device configuration is assigned to one more group since the backup.
    let (assigned, assigned_graph) = backup.policies[1].clone();
    assert!(f.demo.sim.add_assignment(CONTOSO, &assigned_graph));
    // Scope tags: the compliance policy's tags changed since the backup.
    let (tagged, tagged_graph) = backup.policies[2].clone();
    let tags_of = |graph_id: &str| f.scope_tags_of(graph_id).unwrap_or_default();
    let tags_before = tags_of(&tagged_graph);
    let other_tag = f
        .demo
        .sim
        .scope_tags(CONTOSO)
        .into_iter()
        .map(|tag| serde_json::Value::String(tag.id))
        .find(|id| tags_before.as_array().is_none_or(|tags| !tags.contains(id)))
        .expect("a scope tag the policy does not have");
    let held = f.backed_up(backup.set, tagged).await;
    let backup_version = f.version(held).await;
    let mut retagged = backup_version.payload.clone();
    retagged["policy"]["roleScopeTagIds"] = serde_json::json!([other_tag]);
    f.write_payload(
        PolicyType::Compliance,
        &retagged,
        backup_version.format,
        Some(&tagged_graph),
    )
    .await;
    assert_ne!(tags_of(&tagged_graph), tags_before, "the tags changed");

    for (policy, options) in [
        (assigned, WITHOUT_ASSIGNMENTS),
        (tagged, WITHOUT_SCOPE_TAGS),
    ] {
        // With the part included, the restore would change it.
        f.preview_planning(backup.set, policy, PlanAction::Update)
            .await;

        let (preview, plan) = f.preview_with(backup.set, &[policy], options).await;
        let planned = item(&plan, policy);
        assert_eq!(
            planned.plan,
            Some(PlanAction::Unchanged),
            "{options:?}: {plan:?}"
        );
        assert_eq!(planned.changed_settings, Some(0), "{options:?}: {plan:?}");
        assert_eq!(planned.notes.removals, Vec::<String>::new(), "{options:?}");

        f.demo.sim.reset_counters();
        let detail = f.execute(preview).await;
        assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
        f.assert_no_writes(&format!("{options:?}: nothing written"));
        assert_eq!(
            detail.summary.as_deref(),
            Some("1 of 1 now match the backup."),
            "{options:?}: {detail:?}"
        );
    }
}

/// A policy deleted in Intune is created anew with the backup's name, so the warning of a live
/// policy with the same name looks for that name, not the one the inventory last saw.
async fn a_create_warns_of_a_live_policy_with_the_backups_name(f: Fixture) {
    let backup = f.backup().await;
    let (policy, graph_id) = backup.policies[1].clone();
    let backup_name = f.name_of(&graph_id);
    let other = f.other_device_configuration(&graph_id);
    // Renamed since the backup, and another policy took its old name; then it was deleted.
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &graph_id, "Renamed since the backup"));
    assert!(f.demo.sim.rename_policy(CONTOSO, &other, &backup_name));
    f.sync().await;
    assert!(f.demo.sim.remove_policy(CONTOSO, &graph_id));

    let (_, plan) = f
        .preview_planning(backup.set, policy, PlanAction::Create)
        .await;
    let planned = item(&plan, policy);
    let warning = format!("A policy named \"{backup_name}\" already exists in Intune.");
    assert!(planned.notes.warnings.contains(&warning), "{planned:?}");
}

/// A preview that ended without reading every policy cannot be executed, and says why (not
/// that it has not finished).
async fn a_preview_that_could_not_read_a_policy_says_so(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    f.demo.sim.set_fault(
        &backup.policies[0].1,
        tenantatlas::graph_sim::Fault::Forbidden,
    );
    let (preview, plan) = f.preview(backup.set, &ids).await;
    assert_eq!(plan.status, RunStatus::CompletedWithErrors, "{plan:?}");
    assert_eq!(plan.not_executable, Some(GateFailure::PoliciesUnread(1)));
    let refusal = f
        .execute_refused(preview, "a preview that could not read a policy")
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert!(
        refusal
            .body
            .contains("1 policy could not be read: run the preview again."),
        "{}",
        refusal.body
    );
}

/// Makes every assignment of version `snapshot_id` one Graph refuses (a target without its
/// `@odata.type`: the `assign` action answers 400), so the policy itself is written and its
/// assignments fail; the hash stays, so the plan is what it would have been.
async fn refuse_assignments_of(f: &Fixture, snapshot_id: i64) {
    let mut payload = f.version(snapshot_id).await.payload;
    let assignments = payload["assignments"]
        .as_array_mut()
        .expect("the backup recorded assignments");
    assert!(!assignments.is_empty(), "the policy has assignments");
    for assignment in assignments {
        assignment["target"]
            .as_object_mut()
            .expect("a target")
            .remove("@odata.type");
    }
    sqlx::query("UPDATE policy_snapshots SET payload = $1 WHERE id = $2")
        .bind(payload.to_string())
        .bind(snapshot_id)
        .execute(f.app.db.pool())
        .await
        .unwrap();
}

/// An update and a create whose `assign` fails: the items fail, but what was written is
/// recorded: an audit row each (marked incomplete), and the created policy's new id, so the
/// next preview updates it rather than creating it a second time.
async fn a_policy_written_before_its_assignments_failed_is_recorded(f: Fixture) {
    let backup = f.backup().await;
    let (updated_id, updated_graph) = backup.policies[2].clone();
    let (created_id, created_graph) = backup.policies[1].clone();
    assert!(f.demo.sim.change_settings(CONTOSO, &updated_graph));
    assert!(f.demo.sim.remove_policy(CONTOSO, &created_graph));
    let ids = [updated_id, created_id];
    let (preview, plan) = f.preview(backup.set, &ids).await;
    assert_eq!(plan.not_executable, None, "{plan:?}");
    assert_eq!(item(&plan, updated_id).plan, Some(PlanAction::Update));
    assert_eq!(item(&plan, created_id).plan, Some(PlanAction::Create));
    for id in ids {
        refuse_assignments_of(&f, backup_version(&plan, id)).await;
    }

    f.demo.sim.reset_counters();
    let detail = f.execute(preview).await;
    for id in ids {
        let row = row_of(&detail, id);
        assert_eq!(row.outcome, ItemOutcome::Failed, "{row:?}");
        let message = row.message.as_deref().unwrap_or_default();
        assert!(message.contains("The policy itself was"), "{row:?}");
        assert!(message.contains("400"), "{row:?}");
    }
    assert!(
        f.writes().iter().any(|w| w.ends_with("/assign")),
        "{:?}",
        f.writes()
    );
    let new_graph_id = f.graph_id_of(created_id).await;
    assert_ne!(new_graph_id, created_graph);
    assert!(f.is_live(&new_graph_id));
    assert_eq!(
        f.action(detail.id, created_id).await.as_deref(),
        Some("created")
    );
    assert_eq!(
        f.action(detail.id, updated_id).await.as_deref(),
        Some("updated")
    );

    let audited = f.audit_details().await;
    assert_eq!(
        audited.len(),
        2,
        "one audit row per policy written: {audited:?}"
    );
    for (id, action, graph_id) in [
        (updated_id, "updated", &updated_graph),
        (created_id, "created", &new_graph_id),
    ] {
        let details = f.audit_of(id).await;
        assert_eq!(details.run_id, detail.id, "{details:?}");
        assert_eq!(details.action, action, "{details:?}");
        assert_eq!(details.graph_id.as_ref(), Some(graph_id), "{details:?}");
        assert!(!details.completed, "{details:?}");
        assert!(details.failure_message().is_some(), "{details:?}");
    }

    // The next preview finds the policy the execute created: an update, not a second create.
    let (_, plan) = f.preview(backup.set, &ids).await;
    for id in [created_id, updated_id] {
        assert_eq!(item(&plan, id).plan, Some(PlanAction::Update), "{plan:?}");
    }
}

/// A restore whose create's answer was lost ([`Fixture::lose_a_create`]).
struct LostCreate {
    /// The preview run.
    preview: i64,
    /// The execute run.
    run_id: i64,
    /// The backup version the create sent.
    snapshot: i64,
}

/// What [`LosingWriter`] does with a create.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lost {
    /// Sends it (Intune creates the policy) and answers as if no answer had come in time.
    AfterCreating,
    /// Answers as if no answer had come in time without sending it: the create may land later.
    BeforeCreating,
    /// Passes creates through, and answers each update as if no answer had come in time
    /// without sending it.
    Updates,
}

/// The Graph client's writes, except that the answer of every create is lost (a timeout: the
/// client does not send a create twice).
struct LosingWriter {
    client: GraphClient,
    lost: Lost,
    /// How many creates were asked of it.
    creates: Arc<std::sync::atomic::AtomicUsize>,
}

impl PolicyWriter for LosingWriter {
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
        if (request.target.is_some()) != (self.lost == Lost::Updates) {
            return PolicyWriter::write_policy_reporting(&self.client, creds, request);
        }
        self.creates
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if self.lost == Lost::AfterCreating {
                PolicyWriter::write_policy_reporting(&self.client, creds, request).await?;
            }
            Err(WriteFailure::from(GraphError::new(
                ReasonCode::Timeout,
                "POST deviceManagement/deviceConfigurations: no answer in time",
            )))
        })
    }
}

impl Fixture {
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
            "losing-writer",
        )
    }

    /// Runs the queue's next task with `worker`, which hears the server's cancels at once as the
    /// runner's does, and cancels run `run_id` as the manager once `ready` holds (`what` says
    /// what never happened should it not within 20 s).
    async fn run_cancelling<F, Fut>(&self, worker: Worker, run_id: i64, what: &str, ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let worker = worker.with_cancels(self.app.wake.cancels());
        let (executed, ()) = tokio::join!(worker.try_execute_task(), async {
            wait_for(what, secs(20), ms(5), ready).await;
            self.app
                .cancel_run(&self.manager, CONTOSO, run_id)
                .await
                .expect("the manager cancels");
        });
        executed.expect("the worker runs");
    }

    /// How many items with a create announced (and not settled) have `column` = `id` (a run's,
    /// or a policy's).
    async fn announced_creates(&self, column: &str, id: i64) -> i64 {
        sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM run_items WHERE {column} = $1 AND create_sent_at IS NOT NULL"
        ))
        .bind(id)
        .fetch_one(self.app.db.pool())
        .await
        .unwrap()
    }

    /// Previews the restore of deleted policy `id` of backup set `set` and executes it with a
    /// writer that loses the create's answer without sending it (it may land later).
    async fn lose_a_create(&self, set: i64, id: i64) -> LostCreate {
        let (preview, plan) = self.preview(set, &[id]).await;
        let snapshot = backup_version(&plan, id);
        let run_id = self.queue_execute(preview).await;
        let worker = self.worker_writing_with(self.losing_writer(Lost::BeforeCreating));
        self.finish_with(&worker, run_id).await;
        LostCreate {
            preview,
            run_id,
            snapshot,
        }
    }

    /// Runs `worker` until run `run_id` has ended.
    async fn finish_with(&self, worker: &Worker, run_id: i64) {
        use tenantatlas::server::engine::worker::Outcome;
        loop {
            match worker.try_execute_task().await.expect("the worker runs") {
                Outcome::TaskCompleted { run_id: done } if done == run_id => return,
                Outcome::TaskCompleted { .. } => {}
                Outcome::EmptyQueue => panic!("run {run_id} was not run"),
            }
        }
    }

    /// The Graph ids of the live policies named `name`.
    fn named(&self, name: &str) -> Vec<String> {
        let mut ids: Vec<String> = self
            .demo
            .sim
            .policies(CONTOSO)
            .into_iter()
            .filter(|p| p.name == name)
            .map(|p| p.id)
            .collect();
        ids.sort();
        ids
    }

    /// Whether a create of a device configuration was sent since the counters were reset.
    fn created_any(&self) -> bool {
        self.writes()
            .iter()
            .any(|w| w.starts_with("POST") && w.ends_with("/deviceConfigurations"))
    }

    /// The `restore.item_written` audit rows' details, oldest first.
    async fn audit_details(&self) -> Vec<ItemWritten> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT details FROM audit_log WHERE action = 'restore.item_written' ORDER BY id",
        )
        .fetch_all(self.app.db.pool())
        .await
        .unwrap();
        rows.iter()
            .map(|d| serde_json::from_str(d).expect("JSON details"))
            .collect()
    }

    /// The details of the one `restore.item_written` audit row there must be.
    async fn only_audit(&self) -> ItemWritten {
        let mut audited = self.audit_details().await;
        assert_eq!(audited.len(), 1, "{audited:?}");
        audited.remove(0)
    }

    /// Asserts that the one `restore.item_written` audit row says the update of the policy of
    /// `graph_id` may have been written (incomplete).
    async fn assert_audited_maybe_updated(&self, graph_id: &str) {
        let audited = self.only_audit().await;
        assert_eq!(audited.action, "updated");
        assert_eq!(audited.graph_id.as_deref(), Some(graph_id));
        assert!(!audited.completed);
    }

    /// The details of the `restore.item_written` audit row of `policy_id`.
    async fn audit_of(&self, policy_id: i64) -> ItemWritten {
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

    /// The Graph client's writes, losing the answers `lost` says (see [`LosingWriter`]).
    fn losing_writer(&self, lost: Lost) -> LosingWriter {
        LosingWriter {
            client: self.demo.access.client.clone(),
            lost,
            creates: Default::default(),
        }
    }

    /// Moves the create announced for `policy_id` by an execute an hour back, past the time it
    /// could still land.
    async fn age_announce(&self, policy_id: i64) {
        self.age_announce_by(policy_id, 3_600_000).await;
    }

    /// Moves the create announced for `policy_id` by an execute `millis` back.
    async fn age_announce_by(&self, policy_id: i64, millis: i64) {
        sqlx::query(
            "UPDATE run_items SET create_sent_at = create_sent_at - $2 \
             WHERE policy_id = $1 AND create_sent_at IS NOT NULL",
        )
        .bind(policy_id)
        .bind(millis)
        .execute(self.app.db.pool())
        .await
        .unwrap();
    }
}

/// A policy of the backup (the `index`th: see [`Fixture::backup`]) whose settings changed in
/// Intune since: the backup, and the policy's inventory id and Graph id.
async fn changed_policy(f: &Fixture, index: usize) -> (Backup, i64, String) {
    let backup = f.backup().await;
    let (id, graph_id) = backup.policies[index].clone();
    assert!(f.demo.sim.change_settings(CONTOSO, &graph_id));
    (backup, id, graph_id)
}

/// A deleted policy of the backup (a device configuration): its inventory id, its Graph id
/// and its name.
async fn deleted_policy(f: &Fixture) -> (Backup, i64, String, String) {
    let backup = f.backup().await;
    let (id, graph_id) = backup.policies[1].clone();
    let name = f.name_of(&graph_id);
    assert!(f.demo.sim.remove_policy(CONTOSO, &graph_id));
    (backup, id, graph_id, name)
}

/// A create Intune carried out but whose answer was lost (a timeout): the execute looks for the
/// policy at once, finds it, finishes the write as an update of it and records it as created
/// with its id; the next preview and execute update it, and no second create is ever sent.
async fn a_create_whose_answer_is_lost_is_found_and_never_sent_twice(f: Fixture) {
    let (backup, id, old_graph_id, name) = deleted_policy(&f).await;
    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Create).await;
    let run_id = f.queue_execute(preview).await;
    let worker = f.worker_writing_with(f.losing_writer(Lost::AfterCreating));
    f.demo.sim.reset_counters();
    f.finish_with(&worker, run_id).await;

    let created = f.named(&name);
    assert_eq!(created.len(), 1, "one policy named {name}: {created:?}");
    let detail = f.detail(run_id).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(detail.items.rows[0].outcome, ItemOutcome::Succeeded);
    assert_eq!(f.action(run_id, id).await.as_deref(), Some("created"));
    assert_eq!(f.graph_id_of(id).await, created[0]);
    assert_ne!(created[0], old_graph_id);
    let audited = f.only_audit().await;
    assert_eq!(audited.graph_id.as_ref(), Some(&created[0]));
    assert!(audited.completed);

    // Restored again: the created policy is found, nothing is created twice.
    let (preview, plan) = f.preview(backup.set, &[id]).await;
    assert_ne!(item(&plan, id).plan, Some(PlanAction::Create), "{plan:?}");
    f.demo.sim.reset_counters();
    f.execute(preview).await;
    assert!(!f.created_any(), "no second create: {:?}", f.writes());
    assert_eq!(f.named(&name), created);
}

/// A create whose answer was lost and whose policy is not (yet) in Intune: the item fails
/// saying the policy may have been created, with an incomplete audit row. The next preview
/// does not plan a create while the first could still land; once it has landed, the preview
/// finds it, the policy's record follows it, and the execute updates it: one policy, one
/// create sent.
async fn a_create_that_may_still_land_blocks_the_next_create(f: Fixture) {
    let (backup, id, _, name) = deleted_policy(&f).await;
    let lost = f.lose_a_create(backup.set, id).await;
    let (run_id, snapshot) = (lost.run_id, lost.snapshot);

    let FailedItem { reason, message } = f.failed_item(run_id).await;
    assert_eq!(reason, Some(ReasonCode::Timeout));
    assert!(message.contains("MAY have been created"), "{message}");
    assert!(message.contains("Sync the inventory"), "{message}");
    assert_eq!(f.action(run_id, id).await, None);
    let audited = f.only_audit().await;
    assert_eq!(audited.action, "created");
    assert_eq!(audited.graph_id, None);
    assert!(!audited.completed);
    assert!(audited.failure_message().is_some(), "{audited:?}");

    // While the create could still land, no create is planned.
    let (_, plan) = f
        .preview_planning(backup.set, id, PlanAction::Blocked)
        .await;
    let planned = item(&plan, id);
    let run = format!("run {run_id}");
    assert!(
        blocked_saying(planned, &[run.as_str(), "preview again after"]),
        "{planned:?}"
    );

    // It lands: the next preview finds it and plans against it.
    let landed = f
        .write_directly(PolicyType::DeviceConfiguration, snapshot, None)
        .await;
    let (preview, plan) = f.preview(backup.set, &[id]).await;
    let planned = item(&plan, id);
    assert!(
        matches!(
            planned.plan,
            Some(PlanAction::Unchanged | PlanAction::Update)
        ),
        "{plan:?}"
    );
    assert!(
        planned.notes.warnings.iter().any(|w| w.contains(&landed)),
        "{planned:?}"
    );
    assert_eq!(f.graph_id_of(id).await, landed);
    assert_eq!(f.action(run_id, id).await.as_deref(), Some("created"));
    f.demo.sim.reset_counters();
    let detail = f.execute(preview).await;
    assert_eq!(
        detail.items.rows[0].outcome,
        ItemOutcome::Succeeded,
        "{detail:?}"
    );
    assert!(!f.created_any(), "no second create: {:?}", f.writes());
    assert_eq!(f.named(&name), vec![landed]);
}

/// A claim taking an execute over while the earlier claim's create may still be on its way
/// (its lease lost, its POST waiting out a Retry-After) sends no create of its own: the item
/// fails saying when to preview again. A preview before then blocks the item; one after it,
/// with no policy created, plans the create again.
async fn a_takeover_never_creates_while_an_earlier_create_may_land(f: Fixture) {
    let (backup, id, _, name) = deleted_policy(&f).await;
    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Create).await;
    let run_id = f.queue_takeover(preview).await;
    f.announce_create(run_id, id, now_ms()).await;
    f.finish_counted(run_id).await;

    assert!(!f.created_any(), "no create sent: {:?}", f.writes());
    assert!(f.named(&name).is_empty());
    let message = f.failed_item(run_id).await.message;
    assert!(message.contains("no second create was sent"), "{message}");
    assert!(message.contains("Run the preview again after"), "{message}");

    f.preview_planning(backup.set, id, PlanAction::Blocked)
        .await;
    f.age_announce(id).await;
    f.preview_planning(backup.set, id, PlanAction::Create).await;
    let unsettled = f.announced_creates("policy_id", id).await;
    assert_eq!(unsettled, 0, "the preview settled the announce");
}

/// A sync of the inventory between a crash and the takeover learns of the policy the crashed
/// claim created: the takeover still takes it as its own (the inventory learned of it only
/// after the create was announced), records it as created under its id, and creates nothing.
async fn a_takeover_after_a_sync_takes_the_policy_its_create_made(f: Fixture) {
    let (backup, id, _, name) = deleted_policy(&f).await;
    let (preview, plan) = f.preview(backup.set, &[id]).await;
    let snapshot = backup_version(&plan, id);
    let sent_at = now_ms() - 1_000;
    let landed = f
        .write_directly(PolicyType::DeviceConfiguration, snapshot, None)
        .await;
    f.sync().await;
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM policies WHERE graph_id = $1")
        .bind(&landed)
        .fetch_one(f.app.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "the sync learned of the created policy");

    let run_id = f.queue_takeover(preview).await;
    f.announce_create(run_id, id, sent_at).await;
    f.finish_counted(run_id).await;

    let detail = f.detail(run_id).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert!(!f.created_any(), "no second create: {:?}", f.writes());
    assert_eq!(f.named(&name), vec![landed.clone()]);
    assert_eq!(f.action(run_id, id).await.as_deref(), Some("created"));
    assert_eq!(f.graph_id_of(id).await, landed);
}

/// A takeover that finds the policy the crashed claim's create made and then cannot finish it
/// (reading it fails, or its update does) still records what that create did: the item is
/// created under the policy's id (the policy's record follows it), with an incomplete audit
/// row, and its message says the policy itself was created.
async fn a_takeover_that_cannot_finish_its_create_still_records_the_policy_it_made(f: Fixture) {
    use tenantatlas::graph_sim::Fault;
    let backup = f.backup().await;
    for (index, policy_type, fault) in [
        // Its capture before the update fails.
        (1, PolicyType::DeviceConfiguration, Fault::ServerError),
        // Its capture passes and its update fails.
        (
            2,
            PolicyType::Compliance,
            Fault::WriteAnswers { status: 500 },
        ),
    ] {
        let (id, graph_id) = backup.policies[index].clone();
        assert!(f.demo.sim.remove_policy(CONTOSO, &graph_id));
        let (preview, plan) = f.preview_planning(backup.set, id, PlanAction::Create).await;
        let sent_at = now_ms() - 1_000;
        let landed = f
            .write_directly(policy_type, backup_version(&plan, id), None)
            .await;
        f.sync().await;
        f.demo.sim.set_fault(&landed, fault.clone());

        let run_id = f.queue_takeover(preview).await;
        f.announce_create(run_id, id, sent_at).await;
        f.finish_counted(run_id).await;

        let message = f.failed_item(run_id).await.message;
        assert!(
            message.contains("The policy itself was created in Intune"),
            "{fault:?}: {message}"
        );
        assert_eq!(
            f.action(run_id, id).await.as_deref(),
            Some("created"),
            "{fault:?}"
        );
        assert_eq!(f.graph_id_of(id).await, landed, "{fault:?}");
        let audited = f.audit_of(id).await;
        assert_eq!(audited.action, "created", "{fault:?}");
        assert_eq!(audited.graph_id.as_ref(), Some(&landed), "{fault:?}");
        assert!(!audited.completed, "{fault:?}");
    }
    assert_eq!(f.audit_details().await.len(), 2);
}

/// A create whose answer was lost and that never landed leaves its announce for a later
/// preview to look again; a policy an admin makes by hand with the backup's name days later
/// is not that create's: the preview plans a create (not an update of the admin's policy), the
/// earlier item stays unrecorded, and the execute leaves the admin's policy alone.
async fn a_preview_never_adopts_a_policy_made_after_the_create_could_land(f: Fixture) {
    let (backup, id, _, name) = deleted_policy(&f).await;
    let lost = f.lose_a_create(backup.set, id).await;
    assert!(f
        .failed_item(lost.run_id)
        .await
        .message
        .contains("MAY have been created"));
    f.age_announce_by(id, 2 * 86_400_000).await;

    // Two days later an admin makes a policy of that name by hand, with other content.
    let mut payload = f.version(lost.snapshot).await.payload;
    payload["policy"]["description"] = serde_json::json!("Made by hand");
    let hand_made = f
        .write_payload(
            PolicyType::DeviceConfiguration,
            &payload,
            f.version(lost.snapshot).await.format,
            None,
        )
        .await;
    assert_eq!(f.named(&name), vec![hand_made.clone()]);

    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Create).await;
    assert_eq!(f.action(lost.run_id, id).await, None);
    assert_ne!(f.graph_id_of(id).await, hand_made);
    let detail = f.execute(preview).await;
    assert_eq!(
        detail.items.rows[0].outcome,
        ItemOutcome::Succeeded,
        "{detail:?}"
    );
    assert_ne!(f.graph_id_of(id).await, hand_made);
    let admins = f
        .demo
        .sim
        .policy_json(CONTOSO, &hand_made)
        .expect("the admin's policy is live");
    assert_eq!(admins["description"], "Made by hand", "{admins}");
    assert_eq!(f.named(&name).len(), 2);
}

/// A claim that announced an administrative template's create, got its 201 and is still
/// sending its definition values (alive behind a lost lease, `updateDefinitionValues` waiting
/// out a Retry-After) when another claim takes the run over: the takeover finds the created
/// policy without its values and must not send them too (`added` values would be added twice).
/// It sends nothing, records the policy as created under its id and fails the item saying
/// when to preview again. Once the create can no longer land, a takeover finishes such a
/// policy's write as before: its values sent once.
async fn a_takeover_never_resends_definition_values_of_an_adopted_create_that_may_still_land(
    f: Fixture,
) {
    let backup = f.backup().await;
    let (id, graph_id) = backup.policies[3].clone();
    assert!(f.demo.sim.remove_policy(CONTOSO, &graph_id));
    // Half an hour on, the create can no longer land (its bound is 26 minutes with the
    // default client) and a policy created then may still be its own (within the bound and
    // the clocks' skew): the simulator stamps the policy as created now.
    for (age_ms, in_flight) in [(1_000, true), (1_800_000, false)] {
        let (preview, plan) = f.preview_planning(backup.set, id, PlanAction::Create).await;
        let version = f.version(backup_version(&plan, id)).await;
        // What the earlier claim's POST left: the policy alone, its definition values not
        // yet sent.
        let mut alone = version.payload.clone();
        let mut values = 0;
        if let Some(removed) = alone
            .as_object_mut()
            .and_then(|o| o.remove("definitionValues"))
        {
            values += removed.as_array().map_or(0, Vec::len);
        }
        if let Some(removed) = alone
            .get_mut("policy")
            .and_then(serde_json::Value::as_object_mut)
            .and_then(|o| o.remove("definitionValues"))
        {
            values += removed.as_array().map_or(0, Vec::len);
        }
        assert!(values > 0, "the backup holds definition values");
        let sent_at = now_ms() - age_ms;
        let created = f
            .write_payload(
                PolicyType::AdministrativeTemplate,
                &alone,
                version.format,
                None,
            )
            .await;

        let run_id = f.queue_takeover(preview).await;
        f.announce_create(run_id, id, sent_at).await;
        f.finish_counted(run_id).await;

        let writes = f.writes();
        let sent_values = writes
            .iter()
            .filter(|w| w.contains("updateDefinitionValues"))
            .count();
        assert!(
            writes
                .iter()
                .all(|w| !w.starts_with("POST") || !w.ends_with("/groupPolicyConfigurations")),
            "no second create: {writes:?}"
        );
        let detail = f.detail(run_id).await;
        let row = &detail.items.rows[0];
        assert_eq!(f.action(run_id, id).await.as_deref(), Some("created"));
        assert_eq!(f.graph_id_of(id).await, created, "the record follows it");
        if in_flight {
            assert_eq!(writes, Vec::<String>::new(), "nothing sent: {writes:?}");
            assert_eq!(row.outcome, ItemOutcome::Failed, "{detail:?}");
            let message = row.message.as_deref().unwrap_or_default();
            assert!(message.contains("Run the preview again after"), "{message}");
            assert!(message.contains(created.as_str()), "{message}");
            let audited = f.audit_details().await;
            let last = audited.last().expect("an audit row");
            assert_eq!(last.action, "created", "{audited:?}");
            assert_eq!(last.graph_id.as_ref(), Some(&created), "{audited:?}");
            assert!(!last.completed, "{audited:?}");
            // The next restore starts from the created policy.
            assert!(f.demo.sim.remove_policy(CONTOSO, &created));
        } else {
            assert_eq!(sent_values, 1, "the values sent once: {writes:?}");
            assert_eq!(row.outcome, ItemOutcome::Succeeded, "{detail:?}");
        }
    }
}

/// A claim that crashed in the middle of an update it announced (the policy written, its
/// assignments not): the claim taking the run over finds the policy matching neither the
/// preview nor the backup, and records it as partly written (an incomplete audit row), not as
/// "nothing was written".
async fn a_takeover_after_an_update_cut_short_says_it_was_partly_written(f: Fixture) {
    let (backup, id, graph_id) = changed_policy(&f, 2).await;
    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Update).await;
    let run_id = f.queue_takeover(preview).await;
    f.announce_update(run_id, id).await;
    // What the crashed claim's write left: neither the preview's policy nor the backup's.
    assert!(f.demo.sim.rename_policy(CONTOSO, &graph_id, "Half written"));
    f.finish_counted(run_id).await;

    f.assert_no_writes("nothing written again");
    let message = f.failed_item(run_id).await.message;
    assert!(message.contains("partly written"), "{message}");
    assert!(!message.contains("nothing was written"), "{message}");
    assert_eq!(f.action(run_id, id).await.as_deref(), Some("updated"));
    let audited = f.only_audit().await;
    assert_eq!(audited.action, "updated");
    assert!(!audited.completed);
}

/// Two previews of the same deleted policy both plan its create. The first one's execute sends
/// it and loses the answer, and no policy it could have made is found; the second one's
/// execute then sends no create of its own: the item fails asking for a new preview, which
/// looks for the policy first.
async fn a_second_previews_execute_never_sends_a_create_the_first_may_have_made(f: Fixture) {
    let (backup, id, _, _) = deleted_policy(&f).await;
    let (first, _) = f.preview_planning(backup.set, id, PlanAction::Create).await;
    let (second, _) = f.preview_planning(backup.set, id, PlanAction::Create).await;
    let creates = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let worker = f.worker_writing_with(LosingWriter {
        creates: creates.clone(),
        ..f.losing_writer(Lost::BeforeCreating)
    });
    let run_id = f.queue_execute(first).await;
    f.finish_with(&worker, run_id).await;
    let run_id = f.queue_execute(second).await;
    f.finish_with(&worker, run_id).await;

    assert_eq!(creates.load(std::sync::atomic::Ordering::SeqCst), 1);
    let message = f.failed_item(run_id).await.message;
    assert!(message.contains("Run the preview again"), "{message}");
    assert_eq!(f.action(run_id, id).await, None);
}

/// An update whose answer is lost (a timeout) may have changed the policy: the item fails
/// saying so, with an incomplete audit row.
async fn an_update_whose_answer_is_lost_is_audited_as_maybe_written(f: Fixture) {
    let (backup, id, graph_id) = changed_policy(&f, 2).await;
    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Update).await;
    let worker = f.worker_writing_with(f.losing_writer(Lost::Updates));
    let run_id = f.queue_execute(preview).await;
    f.finish_with(&worker, run_id).await;

    let message = f.failed_item(run_id).await.message;
    assert!(message.contains("MAY have been written"), "{message}");
    f.assert_audited_maybe_updated(&graph_id).await;
    // Its only trace is the announced write (no outcome recorded): the preview counts as
    // executed, never as "no write recorded", even for an execute that ended cancelled.
    assert_eq!(f.action(run_id, id).await, None);
    f.mark_cancelled(run_id).await;
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::AlreadyExecuted)
    );
}

/// Sets the simulator's knobs over HTTP, as a test writer must from inside the worker's write
/// (it holds no handle to the simulator): `knobs_url` is its `/_sim/knobs`.
async fn post_knobs(knobs_url: &str, knobs: &serde_json::Value) {
    reqwest::Client::new()
        .post(knobs_url)
        .json(knobs)
        .send()
        .await
        .expect("the simulator answers")
        .error_for_status()
        .expect("the knobs are set");
}

/// Before an update: makes the simulator answer late (every request, until the test sets it
/// back), so the update's first attempt lands while its answer is lost. Used through
/// [`late_answers_writer`].
struct AnswersLateFromAnUpdate {
    /// The simulator's knobs endpoint.
    knobs_url: String,
}

impl BeforeWrite for AnswersLateFromAnUpdate {
    fn before_write<'s>(
        &'s self,
        client: &'s dyn PolicyWriter,
        creds: &'s TenantCredentials,
        request: &'s WriteRequest<'_>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>> {
        Box::pin(async move {
            if request.target.is_some() {
                // A token first, on time (the token endpoint answers without the latency).
                let group = "00000000-0000-4000-8000-000000000000";
                let _ =
                    PolicyWriter::object_exists(client, creds, DirectoryKind::Group, group).await;
                let late = serde_json::json!({"latency_ms": 3_000, "latency_jitter_ms": 0});
                post_knobs(&self.knobs_url, &late).await;
            }
        })
    }
}

/// The Graph client's writes, through a client that gives up on an answer after half a
/// second, with the simulator answering late from the moment an update is asked for.
fn late_answers_writer(
    sim: &tenantatlas::graph_sim::SimHandle,
) -> HookedWriter<AnswersLateFromAnUpdate> {
    let mut config = crate::sim_support::fast_config(sim);
    config.request_timeout = ms(500);
    HookedWriter {
        client: GraphClient::new(config).expect("the client builds"),
        hook: AnswersLateFromAnUpdate {
            knobs_url: format!("{}/_sim/knobs", sim.base_url),
        },
    }
}

/// An update whose first attempt lands in Intune but whose answer is lost (no answer in time),
/// sent again (an update may be) and throttled until the client gives up: the last answer
/// alone (a 429) would say Graph did nothing, but the policy MAY have been written, so the item
/// fails saying so, with an incomplete audit row, and its announce stays (the preview counts as
/// executed).
async fn an_update_throttled_after_its_answer_was_lost_is_audited_as_maybe_written(f: Fixture) {
    let (backup, id, graph_id) = changed_policy(&f, 2).await;
    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Update).await;
    let worker = f.worker_writing_with(late_answers_writer(&f.demo.sim));
    let run_id = f.queue_execute(preview).await;
    f.demo.sim.reset_counters();
    let sim = &f.demo.sim;
    tokio::join!(f.finish_with(&worker, run_id), async {
        let sent = || async { !sim.counters().writes().is_empty() };
        wait_for("the update was never sent", secs(30), ms(2), sent).await;
        // The update's next attempts (the fast client makes 3 in all) are throttled.
        let mut knobs = sim.knobs();
        knobs.latency_ms = 0;
        knobs.faults.insert(
            graph_id.clone(),
            tenantatlas::graph_sim::Fault::Throttle {
                times: 2,
                retry_after_secs: 0,
            },
        );
        sim.set_knobs(knobs);
    });

    let statuses: Vec<u16> = sim.counters().writes().iter().map(|w| w.status).collect();
    assert_eq!(
        statuses,
        vec![204, 429, 429],
        "the first attempt was applied"
    );
    let message = f.failed_item(run_id).await.message;
    assert!(message.contains("MAY have been written"), "{message}");
    assert!(!message.contains("nothing was written"), "{message}");
    assert!(message.contains("no answer in time"), "{message}");
    f.assert_audited_maybe_updated(&graph_id).await;
    let announced: Option<i64> = sqlx::query_scalar(
        "SELECT update_sent_at FROM run_items WHERE run_id = $1 AND policy_id = $2",
    )
    .bind(run_id)
    .bind(id)
    .fetch_one(f.app.db.pool())
    .await
    .unwrap();
    assert!(announced.is_some(), "the announce stays");
    assert_eq!(f.action(run_id, id).await, None);
    f.mark_cancelled(run_id).await;
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::AlreadyExecuted)
    );
}

/// A cancel while a create is on its way whose answer is then lost (and no policy it could
/// have made is found): the create may have landed, so the cancelled run's summary says so
/// rather than "Cancelled before any policy was written."
async fn a_cancel_during_a_lost_create_does_not_say_nothing_was_written(f: Fixture) {
    let (backup, id, _, _) = deleted_policy(&f).await;
    let (preview, _) = f.preview_planning(backup.set, id, PlanAction::Create).await;
    let run_id = f.queue_execute(preview).await;
    let worker = f.worker_writing_with(HookedWriter {
        client: f.losing_writer(Lost::BeforeCreating),
        hook: Delay(ms(800)),
    });
    let announced = || async { f.announced_creates("run_id", run_id).await > 0 };
    f.run_cancelling(worker, run_id, "the create was never announced", announced)
        .await;

    let detail = f.detail(run_id).await;
    assert_eq!(detail.status, RunStatus::Cancelled, "{detail:?}");
    assert_eq!(f.action(run_id, id).await, None);
    let summary = detail.summary.as_deref().unwrap_or_default();
    assert!(
        !summary.contains("before any policy was written"),
        "{summary}"
    );
    assert!(
        summary.contains("1 of 1 policy may have been written"),
        "{summary}"
    );
    assert!(summary.contains("Run the preview again"), "{summary}");
}

/// Before the write of a policy in place: from then on the simulator answers every request
/// touching that policy 500, so the reads the write makes before its first write request fail
/// and nothing is sent.
struct FailsReadsOfAnUpdate {
    /// The simulator's knobs endpoint.
    knobs_url: String,
}

impl BeforeWrite for FailsReadsOfAnUpdate {
    fn before_write<'s>(
        &'s self,
        _client: &'s dyn PolicyWriter,
        _creds: &'s TenantCredentials,
        request: &'s WriteRequest<'_>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 's>> {
        Box::pin(async move {
            if let Some(target) = request.target {
                let fault = serde_json::json!({"faults": {target: {"kind": "server_error"}}});
                post_knobs(&self.knobs_url, &fault).await;
            }
        })
    }
}

/// An update whose read before its first write fails (a settings catalog policy restored
/// without its scope tags reads the live ones first, to keep them; Graph answers 500): nothing
/// was sent, so the item fails without "MAY have been written", no audit row claims a write,
/// and the preview is not counted as having written anything.
async fn an_update_whose_read_before_writing_fails_is_not_called_written(f: Fixture) {
    let graph_id = f
        .live_policy("a settings catalog policy", |p| {
            p.kind.collection() == "configurationPolicies"
        })
        .id;
    f.sync().await;
    let id = f.policy_id(&graph_id).await;
    let set = common::backup_set(&f.app, &f.manager, CONTOSO, "Without scope tags").await;
    let added = f
        .app
        .add_policies(&f.manager, CONTOSO, set, &[id], WITHOUT_SCOPE_TAGS)
        .await
        .expect("the backup starts");
    f.finish(added.run_id).await;
    assert!(f.demo.sim.change_settings(CONTOSO, &graph_id));
    let (preview, _) = f.preview_planning(set, id, PlanAction::Update).await;
    let worker = f.worker_writing_with(HookedWriter {
        client: f.demo.access.client.clone(),
        hook: FailsReadsOfAnUpdate {
            knobs_url: format!("{}/_sim/knobs", f.demo.sim.base_url),
        },
    });
    let run_id = f.queue_execute(preview).await;
    f.demo.sim.reset_counters();
    f.finish_with(&worker, run_id).await;
    let mut knobs = f.demo.sim.knobs();
    knobs.faults.clear();
    f.demo.sim.set_knobs(knobs);

    f.assert_no_writes("nothing sent");
    assert!(
        f.demo.sim.counters().with_status(500) > 0,
        "the read before the write was answered 500"
    );
    let message = f.failed_item(run_id).await.message;
    assert!(!message.contains("MAY have been written"), "{message}");
    assert!(message.contains("nothing was written"), "{message}");
    assert_eq!(f.action(run_id, id).await, None);
    assert_eq!(f.audited().await, 0, "no write to audit");
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::ExecuteStoppedUnwritten)
    );
}

/// A preview that finds the policy a create may have made while that create's execute is still
/// running leaves the execute's item alone (it records its own outcome) and blocks the item.
async fn a_preview_never_adopts_the_create_of_an_execute_still_running(f: Fixture) {
    let (backup, id, _, _) = deleted_policy(&f).await;
    let (preview, plan) = f.preview(backup.set, &[id]).await;
    let snapshot = backup_version(&plan, id);
    let run_id = f.queue_execute(preview).await;
    // Held by a live claim of this instance (in another of its tasks): its worker does not take
    // it again, and the tenant's preview may still be claimed here (a live claim of another
    // instance would keep the tenant's runs on that instance).
    f.hold_by_live_claim(run_id).await;
    f.announce_create(run_id, id, now_ms()).await;
    let landed = f
        .write_directly(PolicyType::DeviceConfiguration, snapshot, None)
        .await;
    // Its own Graph id deleted, as a sync that no longer lists it marks it.
    sqlx::query("UPDATE policies SET gone_from_intune_at = $1 WHERE id = $2")
        .bind(now_ms())
        .bind(id)
        .execute(f.app.db.pool())
        .await
        .unwrap();

    let (_, plan) = f
        .preview_planning(backup.set, id, PlanAction::Blocked)
        .await;
    let planned = item(&plan, id);
    assert!(blocked_saying(planned, &["still writing"]), "{planned:?}");
    assert_eq!(f.action(run_id, id).await, None);
    assert_ne!(f.graph_id_of(id).await, landed);
    assert!(
        f.gone_from_intune(id).await,
        "the read of the create it did not adopt cleared the record's gone mark"
    );
}

/// A create whose answer was lost lands, and a sync gives the policy a record of its own that a
/// backup then uses: the restored record cannot follow it. The preview blocks the item naming
/// the policy, the announce stands, and no later preview plans a create.
async fn a_create_whose_policy_has_another_record_in_use_is_never_planned_again(f: Fixture) {
    let (backup, id, _, _) = deleted_policy(&f).await;
    let LostCreate {
        preview,
        run_id,
        snapshot,
    } = f.lose_a_create(backup.set, id).await;
    let landed = f
        .write_directly(PolicyType::DeviceConfiguration, snapshot, None)
        .await;
    f.sync().await;
    // A run refers to the sync's record of the policy: it is in use.
    sqlx::query(
        "INSERT INTO run_items (tenant_id, run_id, policy_id) \
         SELECT tenant_id, $1, id FROM policies WHERE graph_id = $2",
    )
    .bind(preview)
    .bind(&landed)
    .execute(f.app.db.pool())
    .await
    .unwrap();

    for _ in 0..2 {
        let (_, plan) = f
            .preview_planning(backup.set, id, PlanAction::Blocked)
            .await;
        let planned = item(&plan, id);
        assert!(blocked_saying(planned, &[landed.as_str()]), "{planned:?}");
        assert_eq!(f.action(run_id, id).await, None);
        assert!(
            f.gone_from_intune(id).await,
            "the read of its twin cleared the record's gone mark"
        );
    }
}

/// Runs the execute of `preview` (planned as an update all the same, see
/// [`Fixture::plan_as_update`]), which must fail its one item before any write, saying
/// `holder` holds the password where it cannot be told apart; the policy of `graph_id` must
/// still hold `live`.
async fn never_writes_secrets_by_a_guess(
    f: &Fixture,
    preview: i64,
    graph_id: &str,
    holder: &str,
    live: &[(&str, &str)],
) {
    f.plan_as_update(preview).await;
    let audited = f.audited().await;
    let run_id = f.queue_execute(preview).await;
    f.finish_counted(run_id).await;
    f.assert_no_writes("which token is whose cannot be told");
    let failed = f.failed_item(run_id).await;
    assert_eq!(failed.reason, Some(ReasonCode::SecretNotRestorable));
    for words in [WIFI_PASSWORD, holder, "nothing was written"] {
        assert!(
            failed.message.contains(words),
            "{words}: {}",
            failed.message
        );
    }
    assert_eq!(f.audited().await, audited, "no write to audit");
    assert_eq!(f.wifi_of(graph_id), networks(live));
}

/// A settings catalog policy with two Wi-Fi networks, each with its password: the backup holds
/// neither value, and the two share their setting path, so which token Intune holds is whose
/// cannot be told (Intune may list the instances in any order). The preview blocks the item
/// naming the path; an execute that meets it all the same fails it before any write, where it
/// once sent both networks with the second's token.
async fn two_secrets_at_one_setting_path_in_the_backup_are_never_restored_by_a_guess(f: Fixture) {
    let graph_id = f.wifi_policy(&[("Corp", "tokA"), ("Guest", "tokB")]);
    let backup = f.backup_of(std::slice::from_ref(&graph_id)).await;
    let (policy, _) = backup.policies[0];
    // Intune changes behind the backup: the first network renamed.
    let live = [("Corp-5G", "tokA"), ("Guest", "tokB")];
    f.set_wifi(&graph_id, &live);

    let (preview, plan) = f
        .preview_planning(backup.set, policy, PlanAction::Blocked)
        .await;
    let blocked = item(&plan, policy);
    assert!(
        blocked_saying(blocked, &[WIFI_PASSWORD, "more than once in the backup"]),
        "{blocked:?}"
    );
    let refusal = f
        .execute_refused(preview, "a restore with an ambiguous secret")
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);

    never_writes_secrets_by_a_guess(&f, preview, &graph_id, "The backup holds", &live).await;
}

/// A backup of one Wi-Fi network is restored with its password kept as Intune holds it; once
/// Intune holds two networks, which of their tokens is the backup network's cannot be told:
/// blocked, and never written.
async fn two_secrets_at_one_setting_path_in_intune_are_never_restored_by_a_guess(f: Fixture) {
    let graph_id = f.wifi_policy(&[("Corp", "tokA")]);
    let backup = f.backup_of(std::slice::from_ref(&graph_id)).await;
    let (policy, _) = backup.policies[0];
    // One secret at its place is filled as before.
    f.set_wifi(&graph_id, &[("Corp-5G", "tokA")]);
    let (preview, _) = f
        .preview_planning(backup.set, policy, PlanAction::Update)
        .await;
    let detail = f.execute(preview).await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(f.wifi_of(&graph_id), networks(&[("Corp", "tokA")]));

    let live = [("Corp", "tokA"), ("Guest", "tokB")];
    f.set_wifi(&graph_id, &live);
    let (preview, plan) = f
        .preview_planning(backup.set, policy, PlanAction::Blocked)
        .await;
    let blocked = item(&plan, policy);
    assert!(
        blocked_saying(blocked, &[WIFI_PASSWORD, "more than once in Intune"]),
        "{blocked:?}"
    );

    never_writes_secrets_by_a_guess(
        &f,
        preview,
        &graph_id,
        "The live policy in Intune holds",
        &live,
    )
    .await;
}

/// A Wi-Fi policy whose backup holds two networks, Corp with its password and Guest without
/// one; in Intune it is now the other way round. Each side holds one secret at the setting
/// path, yet Intune's is Guest's, and which instance is which cannot be told (they carry no id
/// Graph keeps and may be listed in any order): the preview blocks the item naming the path,
/// and an execute that meets it all the same fails it before any write, where it once sent
/// Corp with Guest's password.
async fn a_secret_in_one_of_several_collection_instances_is_never_restored_by_a_guess(f: Fixture) {
    let graph_id = f.wifi_policy(&[("Corp", "tokCorp")]);
    f.set_wifi_passwords(&graph_id, &[("Corp", Some("tokCorp")), ("Guest", None)]);
    let backup = f.backup_of(std::slice::from_ref(&graph_id)).await;
    let (policy, _) = backup.policies[0];
    f.set_wifi_passwords(&graph_id, &[("Corp", None), ("Guest", Some("tokGuest"))]);

    let (preview, plan) = f
        .preview_planning(backup.set, policy, PlanAction::Blocked)
        .await;
    let blocked = item(&plan, policy);
    assert!(
        blocked_saying(
            blocked,
            &[
                WIFI_PASSWORD,
                "in the backup, or in a setting collection of several instances"
            ]
        ),
        "{blocked:?}"
    );
    let refusal = f
        .execute_refused(
            preview,
            "a restore with a secret among collection instances",
        )
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);

    let live = [("Corp", ""), ("Guest", "tokGuest")];
    never_writes_secrets_by_a_guess(&f, preview, &graph_id, "The backup holds", &live).await;
}

/// A backup of one Wi-Fi network with its password; Intune now holds two networks, the
/// password in the other one only. One secret at the path on each side, yet which instance
/// is the backup's cannot be told: blocked, and never written.
async fn a_secret_among_collection_instances_in_intune_is_never_restored_by_a_guess(f: Fixture) {
    let graph_id = f.wifi_policy(&[("Corp", "tokCorp")]);
    let backup = f.backup_of(std::slice::from_ref(&graph_id)).await;
    let (policy, _) = backup.policies[0];
    f.set_wifi_passwords(&graph_id, &[("Corp", None), ("Guest", Some("tokGuest"))]);

    let (preview, plan) = f
        .preview_planning(backup.set, policy, PlanAction::Blocked)
        .await;
    let blocked = item(&plan, policy);
    assert!(
        blocked_saying(
            blocked,
            &[
                WIFI_PASSWORD,
                "in Intune, or in a setting collection of several instances"
            ]
        ),
        "{blocked:?}"
    );

    let live = [("Corp", ""), ("Guest", "tokGuest")];
    never_writes_secrets_by_a_guess(
        &f,
        preview,
        &graph_id,
        "The live policy in Intune holds",
        &live,
    )
    .await;
}

/// A page opened at a preview whose execute is queued or running (a reload, a second tab)
/// learns of that execute from the preview's read: the wizard shows its progress instead of
/// offering Execute (which would only get the same run back) and "Nothing is written until you
/// execute.". Once the execute ended, the read still names it (the one execute of the
/// preview), whose end the wizard shows, and the preview is spent.
async fn the_preview_read_names_its_execute_while_it_is_queued_or_running(f: Fixture) {
    let backup = f.backup().await;
    let (preview, plan) = f.preview(backup.set, &backup.ids()).await;
    assert_eq!(plan.execute_run, None, "not executed yet");
    assert_eq!(plan.not_executable, None);
    let run_id = f.queue_execute(preview).await;
    let plan = f.plan(preview).await;
    assert_eq!(plan.execute_run, Some(run_id), "queued");
    f.set_run(run_id, "status = 'running'").await;
    assert_eq!(f.plan(preview).await.execute_run, Some(run_id), "running");
    f.set_run(run_id, "status = 'pending'").await;
    f.finish(run_id).await;
    let plan = f.plan(preview).await;
    assert_eq!(plan.execute_run, Some(run_id), "ended");
    assert_eq!(plan.not_executable, Some(GateFailure::AlreadyExecuted));
}

/// An execute cancelled while running is `cancelled` at once, but its claim still writes to
/// Intune until it let go of its lease (the run is not settled): a page opened at the preview
/// meanwhile must still follow that execute, not say "Nothing is written until you execute."
/// and offer a new preview. It stays named once settled.
async fn the_preview_read_names_its_execute_cancelled_while_its_claim_still_writes(f: Fixture) {
    let backup = f.backup().await;
    let (preview, _) = f.preview(backup.set, &backup.ids()).await;
    let run_id = f.queue_execute(preview).await;
    // Held by a live claim (of another task of this instance): running, its lease an hour ahead.
    f.hold_by_live_claim(run_id).await;
    f.app
        .cancel_run(&f.manager, CONTOSO, run_id)
        .await
        .expect("the manager cancels the running execute");
    let detail = f.detail(run_id).await;
    assert_eq!(detail.status, RunStatus::Cancelled);
    assert!(!detail.settled, "its claim still holds it");
    assert_eq!(
        f.plan(preview).await.execute_run,
        Some(run_id),
        "cancelled, its claim still writing"
    );
    // The claim let go: settled, and still the preview's one execute.
    f.set_run(run_id, "lease_expires_at = NULL").await;
    assert!(f.detail(run_id).await.settled);
    assert_eq!(f.plan(preview).await.execute_run, Some(run_id), "settled");
}

/// Cancels execute `run_id` while a live claim holds it ([`Fixture::hold_by_live_claim`]):
/// `cancelled`, not settled.
async fn cancel_while_its_claim_holds(f: &Fixture, run_id: i64) {
    f.hold_by_live_claim(run_id).await;
    f.app
        .cancel_run(&f.manager, CONTOSO, run_id)
        .await
        .expect("the manager cancels the running execute");
    assert!(!f.detail(run_id).await.settled, "its claim still holds it");
}

/// Asserts that `preview`'s execute is still settling: the read says so (not "no write", not
/// "executed already") and an execute (a second client's) is refused 409 saying so, starting
/// nothing.
async fn assert_settling(f: &Fixture, preview: i64) {
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::ExecuteSettling)
    );
    let runs = f.runs().await;
    let refusal = f
        .execute_refused(preview, "a preview whose cancelled execute still writes")
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert!(refusal.body.contains("not stopped yet"), "{}", refusal.body);
    assert!(!refusal.body.contains("no write"), "{}", refusal.body);
    assert_eq!(f.runs().await, runs, "no second execute of the preview");
}

/// An execute cancelled while its claim still writes is `cancelled`; only a write it announced
/// (`update_sent_at`) whose result is not recorded may still change the answer: Graph may take
/// it (executed) or refuse it (the refusal puts `update_sent_at` back: no write). Until that
/// result is recorded or the claim let go, the read says the execute has not stopped yet and
/// an execute is refused saying so. With no such write the answer is final at once: a write is
/// announced only while the run is `running`, so a cancelled run announces none.
async fn an_execute_cancelled_while_its_claim_still_writes_is_settling_not_unwritten(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();

    // (a) Nothing announced: no write recorded, and none can come, though the lease holds.
    let (preview, _) = f.preview(backup.set, &ids).await;
    let run_id = f.queue_execute(preview).await;
    cancel_while_its_claim_holds(&f, run_id).await;
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::ExecuteStoppedUnwritten),
        "cancelled with nothing announced: final at once"
    );

    // (b) An update announced before the cancel, its result not recorded: settling. Graph
    // refuses it (`UpdateRefused` puts back the `update_sent_at` read before announcing, none
    // on a first attempt) and the claim lets go: no write recorded.
    let (preview, _) = f.preview(backup.set, &ids).await;
    let run_id = f.queue_execute(preview).await;
    claim_and_announce_update(&f, run_id, &ids).await;
    cancel_while_its_claim_holds(&f, run_id).await;
    assert_settling(&f, preview).await;
    announce_update(&f, run_id, ids[0], "update_sent_at = NULL").await;
    f.set_run(run_id, "lease_expires_at = NULL").await;
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::ExecuteStoppedUnwritten),
        "settled, the announced update refused"
    );

    // (c) An update announced, then its result recorded: executed already, lease held or not.
    let (preview, _) = f.preview(backup.set, &ids).await;
    let run_id = f.queue_execute(preview).await;
    claim_and_announce_update(&f, run_id, &ids).await;
    cancel_while_its_claim_holds(&f, run_id).await;
    assert_settling(&f, preview).await;
    announce_update(&f, run_id, ids[0], "restore_action = 'updated'").await;
    assert_eq!(
        f.plan(preview).await.not_executable,
        Some(GateFailure::AlreadyExecuted),
        "a write recorded, the claim still holding"
    );
}

/// A cancelled execute whose claim still holds it with an update announced (its result not
/// recorded) may still update that policy: a new preview of it and its execute would race
/// that write, so the execute is refused (409, naming the policy) and starts nothing until
/// the cancelled one settled.
async fn an_execute_never_writes_a_policy_a_cancelled_execute_still_writes(f: Fixture) {
    let backup = f.backup().await;
    let ids = backup.ids();
    let (first, _) = f.preview(backup.set, &ids).await;
    let first_run = f.queue_execute(first).await;
    claim_and_announce_update(&f, first_run, &ids).await;
    cancel_while_its_claim_holds(&f, first_run).await;

    let (second, _) = f.preview(backup.set, &ids).await;
    f.plan_as_update(second).await;
    let runs = f.runs().await;
    let refusal = f
        .execute_refused(second, "a policy a cancelled execute still writes")
        .await;
    assert_eq!(refusal.status, 409, "{}", refusal.body);
    assert!(refusal.body.contains("not stopped yet"), "{}", refusal.body);
    assert_eq!(f.runs().await, runs, "no execute of the second preview");

    // The claim let go: the second preview's execute starts.
    f.set_run(first_run, "lease_expires_at = NULL").await;
    f.queue_execute(second).await;
}

/// Claims execute `run_id` by a live claim ([`Fixture::hold_by_live_claim`]) that writes its
/// items, as the worker's claim does, and announces an update of the first of `ids`
/// (`update_sent_at`), its result not recorded yet.
async fn claim_and_announce_update(f: &Fixture, run_id: i64, ids: &[i64]) {
    f.hold_by_live_claim(run_id).await;
    for policy_id in ids {
        sqlx::query(
            "INSERT INTO run_items (tenant_id, run_id, policy_id) \
             SELECT p.tenant_id, $1, p.id FROM policies p WHERE p.id = $2",
        )
        .bind(run_id)
        .bind(policy_id)
        .execute(f.app.db.pool())
        .await
        .unwrap();
    }
    announce_update(f, run_id, ids[0], "update_sent_at = 1").await;
}

/// Sets `assignments` (SQL) on the item of execute `run_id` for `policy_id`, as its claim
/// announcing, recording or refusing an update does.
async fn announce_update(f: &Fixture, run_id: i64, policy_id: i64, assignments: &str) {
    let changed = sqlx::query(&format!(
        "UPDATE run_items SET {assignments} WHERE run_id = $1 AND policy_id = $2"
    ))
    .bind(run_id)
    .bind(policy_id)
    .execute(f.app.db.pool())
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1, "the execute's item");
}
