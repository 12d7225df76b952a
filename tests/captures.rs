//! Runs that capture without a selection, end to end on both engines: **Sync from Intune**
//! (`inventory.sync`), **Capture now** (`policy.capture_snapshot`) and **Compare with Intune** on
//! a backup set (`backup_set.drift_check`). Each is started through its server function, runs on
//! the server's own worker against the Graph simulator (which changes policies as an admin in
//! Intune would), and is read back the way the pages read it.

use crate::common;

use std::time::Duration;

use common::{DemoApp, Form, CONTOSO, OPERATOR, OUTSIDER, READONLY};
use serde_json::Value;
use tenantatlas::domain::reason_code::ReasonCode;
use tenantatlas::domain::run_detail::{RunDetail, RunTarget};
use tenantatlas::domain::versions::{CaptureResult, Drift, RunActivity, VersionRow};
use tenantatlas::domain::{PolicyType, RunStatus, SubmittedRun};
use tenantatlas::graph_sim::{Fault, Kind, SimPolicy};
use tenantatlas::server::engine::worker::{Outcome, Worker};
use tenantatlas::server::graph::Snapshot;
use tenantatlas::server::snapshots::{
    candidate_payloads_read, load_version, store_captures, Capture,
};
use tokio::task::JoinHandle;

both_backends!(local Fixture:
    a_sync_run_brings_the_inventory_in_line_and_says_what_changed,
    capture_now_stores_a_version_only_when_the_content_changed,
    a_capture_cancelled_in_flight_reads_unsettled_until_its_claim_lets_go,
    a_cancelled_capture_whose_lease_ran_out_stays_settled,
    a_capture_cannot_start_again_until_the_cancelled_one_has_settled,
    a_tenant_whose_cancelled_run_another_instance_holds_waits_for_it,
    an_unreadable_base_version_counts_as_one_change_and_fails_nothing,
    a_drift_check_tells_unchanged_changed_and_deleted_apart,
    a_part_gone_while_a_policy_is_read_does_not_mark_the_policy_deleted,
    starts_are_deduplicated_refused_without_the_role_and_validated,
    racing_starts_make_one_run_of_each_kind,
    the_versions_list_names_the_run_that_captured_each_version,
    a_capture_that_adds_assignments_says_it_stored_a_new_version,
    a_policy_back_at_an_earlier_version_is_compared_with_that_version_afterwards,
    a_policy_back_at_a_format_1_version_finds_that_version_again,
    an_unchanged_policy_on_a_format_1_version_reads_no_other_format_1_version,
    a_policy_captured_again_after_a_404_is_no_longer_gone,
    a_policy_marked_gone_while_its_capture_is_in_flight_stays_gone,
    a_policy_marked_gone_while_a_backup_reads_it_stays_gone,
    a_policy_marked_gone_while_a_sync_lists_it_stays_gone,
    a_404_moves_an_older_mark_forward_past_a_read_recorded_late,
    an_older_read_recorded_later_does_not_become_the_current_version,
    a_read_held_back_by_a_429_counts_from_its_retry,
    a_404_of_a_policys_old_graph_id_does_not_mark_its_new_one_gone,
);

/// The demo app, as an operator of Contoso.
struct Fixture {
    demo_app: DemoApp,
    operator: String,
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
        let operator = demo_app.app.sign_in(OPERATOR).await;
        Self { demo_app, operator }
    }

    /// Calls a server function as the operator; the answer's status and JSON.
    async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, Value) {
        self.call_as(&self.operator, endpoint, form).await
    }

    /// Starts a run through `endpoint` as the operator and runs the queue until it has ended;
    /// its id.
    async fn run(&self, endpoint: &str, form: &[(&str, &str)]) -> i64 {
        self.run_as(&self.operator, endpoint, form).await
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
    async fn activity(&self, operation: &str, target: i64) -> RunActivity {
        self.app
            .run_activity(&self.operator, CONTOSO, operation, target)
            .await
            .expect("the activity is read")
    }

    /// The run as the run detail page reads it, items filtered by `filter` (may be empty).
    async fn detail(&self, run_id: i64, filter: &str) -> RunDetail {
        self.app
            .run_detail(
                Some(&self.operator),
                CONTOSO,
                run_id,
                &[("outcome", filter)],
            )
            .await
            .expect("the run is found")
    }
}

/// What the capture of the first listed item found.
fn first_result(detail: &RunDetail) -> &CaptureResult {
    detail.items.rows[0]
        .result
        .as_ref()
        .expect("a capturing run's item has a result")
}

impl Fixture {
    /// A "Capture now" of the third listed policy, claimed by `worker` with every Graph answer
    /// taking `latency_ms`, and cancelled once its first request reached Graph: the policy, the
    /// run, and the worker's task, still waiting on Graph.
    async fn capture_cancelled_in_flight(
        &self,
        latency_ms: u64,
        worker: Worker,
    ) -> (i64, i64, JoinHandle<Result<Outcome, sqlx::Error>>) {
        self.sync().await;
        let graph_id = self.demo.sim.policies(CONTOSO)[2].id.clone();
        let policy = self.policy_id(&graph_id).await;
        common::answer_after(&self.demo.sim, latency_ms);
        self.demo.sim.reset_counters();
        let id = policy.to_string();
        let form = [("tenant", CONTOSO), ("policy_id", id.as_str())];
        let run_id = self
            .start_as(&self.operator, "runs/capture-policy", &form)
            .await
            .run_id;
        let working = tokio::spawn(async move { worker.try_execute_task().await });
        let (sim, path) = (&self.demo.sim, graph_id.as_str());
        common::wait_until(
            "never asked",
            Duration::from_secs(10),
            Duration::from_millis(5),
            || async move { !sim.counters().for_path(path).is_empty() },
        )
        .await;
        self.app
            .cancel_run(&self.operator, CONTOSO, run_id)
            .await
            .expect("the capture is cancelled");
        (policy, run_id, working)
    }

    async fn versions_of(&self, policy_id: i64) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM policy_snapshots WHERE policy_id = $1")
            .bind(policy_id)
            .fetch_one(self.app.db.pool())
            .await
            .unwrap()
    }

    /// The policy's versions as its page lists them, newest first.
    async fn listed_versions(&self, policy_id: i64) -> Vec<VersionRow> {
        self.app
            .policy_versions(&self.operator, CONTOSO, policy_id)
            .await
            .expect("the versions")
    }

    /// Backs `policy` up into a new set, without assignments or scope tags; the run's id.
    async fn back_up_without_assignments(&self, policy: i64) -> i64 {
        let set = common::backup_set(&self.app, &self.operator, CONTOSO, "Lean").await;
        let form = Form::tenant(CONTOSO)
            .field("backup_set_id", set)
            .list("policy_ids", &[policy]);
        self.run("runs/add-policies", &form.pairs()).await
    }

    /// Makes `version` read as one the first capture format stored: format 1, under a hash of
    /// its raw JSON (which format 1 took; any hash no format-2 capture has stands for it here,
    /// one per version).
    async fn as_format_1(&self, version: i64) {
        sqlx::query(
            "UPDATE policy_snapshots SET capture_format = 1, content_hash = $1 WHERE id = $2",
        )
        .bind(format!("{version:f>64}"))
        .bind(version)
        .execute(self.app.db.pool())
        .await
        .unwrap();
    }

    /// Captures `policy` now: the version its capture stored or found.
    async fn capture_version(&self, policy_id: i64) -> i64 {
        let run = self.capture(policy_id).await;
        first_result(&self.detail(run, "").await)
            .snapshot_id
            .expect("a version")
    }

    /// A device configuration of the simulator's Contoso.
    fn a_device_configuration(&self) -> SimPolicy {
        self.demo
            .sim
            .policies(CONTOSO)
            .into_iter()
            .find(|p| p.kind == Kind::DeviceConfiguration)
            .expect("a device configuration")
    }

    /// Renames `sim` in Intune and captures it (a second version, returned), then renames it
    /// back (as a restore of its first version `v1` would) and captures it again: that capture
    /// finds `v1` again, a change since the last capture but no new version.
    async fn renamed_and_back(&self, policy_id: i64, sim: &SimPolicy, v1: i64) -> i64 {
        assert!(self
            .demo
            .sim
            .rename_policy(CONTOSO, &sim.id, "Renamed for a while"));
        let v2 = self.capture_version(policy_id).await;
        assert_ne!(v1, v2);
        assert_eq!(self.versions_of(policy_id).await, 2);

        assert!(self.demo.sim.rename_policy(CONTOSO, &sim.id, &sim.name));
        let back = self.capture(policy_id).await;
        let detail = self.detail(back, "").await;
        assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
        let result = first_result(&detail);
        assert_eq!(result.drift, Drift::Changed, "{detail:?}");
        assert_eq!(result.base_snapshot_id, Some(v2), "{detail:?}");
        assert_eq!(result.snapshot_id, Some(v1), "{detail:?}");
        assert_eq!(self.versions_of(policy_id).await, 2);
        let summary = detail.summary.expect("a summary");
        assert!(!summary.contains("Captured a new version"), "{summary}");
        assert!(summary.contains("no new version stored"), "{summary}");
        v2
    }

    /// Captures `policy` again with nothing changed in Intune: no change from `version`, which
    /// it finds again.
    async fn captured_unchanged_at(&self, policy_id: i64, version: i64) {
        let again = self.capture(policy_id).await;
        let detail = self.detail(again, "").await;
        let result = first_result(&detail);
        assert_eq!(result.drift, Drift::Unchanged, "{detail:?}");
        assert_eq!(result.base_snapshot_id, Some(version), "{detail:?}");
        assert_eq!(result.snapshot_id, Some(version), "{detail:?}");
        let summary = detail.summary.expect("a summary");
        assert!(summary.starts_with("No change"), "{summary}");
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
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(detail.target, RunTarget::Tenant);
    let added = common::count(&f.app.db, "policies").await;
    assert!(added >= in_intune.len() as i64);
    let summary = detail.summary.expect("a concluded run has a summary");
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
    let summary = f
        .detail(second, "")
        .await
        .summary
        .expect("a concluded run has a summary");
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
    assert_eq!(activity.active, None);
    let last = activity.last.expect("the last sync");
    assert_eq!(last.id, second);
    assert_eq!(last.status, RunStatus::Completed);
    assert_eq!(last.summary, Some(summary));
}

async fn capture_now_stores_a_version_only_when_the_content_changed(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[2].id.clone();
    let policy = f.policy_id(&graph_id).await;

    let first = f.capture(policy).await;
    let detail = f.detail(first, "").await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert!(
        matches!(detail.target, RunTarget::Policy { id, .. } if id == policy),
        "{:?}",
        detail.target
    );
    assert_eq!(first_result(&detail).drift, Drift::New);
    assert_eq!(f.versions_of(policy).await, 1);

    // Nothing changed in Intune: no new version, and the run says so.
    let again = f.capture(policy).await;
    let detail = f.detail(again, "").await;
    let result = first_result(&detail);
    assert_eq!(result.drift, Drift::Unchanged, "{detail:?}");
    assert!(result.snapshot_id.is_some());
    assert_eq!(result.snapshot_id, result.base_snapshot_id);
    assert_eq!(f.versions_of(policy).await, 1);
    assert!(detail.summary.unwrap_or_default().starts_with("No change"));

    // Renamed in Intune: a second version, one setting changed, linked to its diff.
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &graph_id, "Renamed for capture"));
    let changed = f.capture(policy).await;
    let activity = f.activity("policy.capture_snapshot", policy).await;
    let last = activity.last.expect("the last capture");
    assert_eq!(last.id, changed);
    let capture = last.capture.expect("a capture says what it found");
    assert_eq!(capture.drift, Drift::Changed, "{capture:?}");
    assert!(capture.changed_settings.unwrap_or_default() >= 1);
    assert_eq!(f.versions_of(policy).await, 2);
    let (from, to) = capture.diff_versions().expect("two versions that differ");
    let (from, to) = (from.to_string(), to.to_string());
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
    assert_eq!(first_result(&detail).drift, Drift::Deleted);
    assert_eq!(
        detail.summary.as_deref(),
        Some("The policy no longer exists in Intune.")
    );
}

/// A "Capture now" cancelled while its capture is in flight still records its version after
/// the cancel: `runs/activity` reads its last run unsettled (the starter polls on and reports
/// nothing yet) until the claim has recorded it and let go.
async fn a_capture_cancelled_in_flight_reads_unsettled_until_its_claim_lets_go(f: Fixture) {
    let (policy, run_id, working) = f.capture_cancelled_in_flight(4_500, f.worker.clone()).await;
    let cancelled = f.activity("policy.capture_snapshot", policy).await;
    assert_eq!(cancelled.active, None, "a cancelled run is not active");
    let last = cancelled.last.as_ref().expect("the cancelled run");
    assert_eq!((last.id, last.status), (run_id, RunStatus::Cancelled));
    assert!(!cancelled.last_settled, "the capture is still in flight");
    assert!(cancelled.moving(), "the starter polls on");

    working.await.unwrap().unwrap();
    let settled = f.activity("policy.capture_snapshot", policy).await;
    assert!(settled.last_settled, "the claim let go of the run");
    assert!(!settled.moving());
    assert_eq!(settled.last.map(|run| run.id), Some(run_id));
    assert_eq!(
        f.versions_of(policy).await,
        1,
        "the late capture is recorded"
    );
}

/// A cancelled capture whose lease ran out (its claim's heartbeat stalled) reads settled, and a
/// resume may be accepted then: its claim, still waiting on Graph, neither renews the lease
/// (the heartbeat) nor records its late answer (the batch), so it stays settled.
async fn a_cancelled_capture_whose_lease_ran_out_stays_settled(f: Fixture) {
    // A heartbeat every second while the capture waits four on Graph.
    let worker = f.worker.clone().with_lease(Duration::from_secs(3));
    let (policy, run_id, working) = f.capture_cancelled_in_flight(4_000, worker).await;
    // The lease runs out as if the heartbeat had stalled.
    let past = tenantatlas::domain::Timestamp::now().millis() - 1_000;
    sqlx::query("UPDATE runs SET lease_expires_at = $1 WHERE id = $2")
        .bind(past)
        .bind(run_id)
        .execute(f.app.db.pool())
        .await
        .expect("the lease is set");
    while !working.is_finished() {
        let activity = f.activity("policy.capture_snapshot", policy).await;
        assert!(
            activity.last_settled,
            "a cancelled run whose lease ran out is not taken back by its claim"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    working.await.unwrap().unwrap();
    assert!(
        f.activity("policy.capture_snapshot", policy)
            .await
            .last_settled
    );
    assert_eq!(
        f.versions_of(policy).await,
        0,
        "the late answer of a claim whose lease ran out is not recorded"
    );
}

/// "Capture now" again while the capture cancelled before it is still in flight is refused
/// (409): the new capture would work beside the old claim, whose late answer would then become
/// the policy's current version over the new one's. Once the old claim has let go, it starts.
async fn a_capture_cannot_start_again_until_the_cancelled_one_has_settled(f: Fixture) {
    let (policy, _, working) = f.capture_cancelled_in_flight(4_000, f.worker.clone()).await;
    let id = policy.to_string();
    let form = [("tenant", CONTOSO), ("policy_id", id.as_str())];
    let runs_before = f.app.count("runs").await;
    let (status, body) = f.call("runs/capture-policy", &form).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.to_string().contains("has not settled yet"), "{body}");
    assert_eq!(f.app.count("runs").await, runs_before, "no run is queued");

    working.await.unwrap().unwrap();
    assert!(
        f.activity("policy.capture_snapshot", policy)
            .await
            .last_settled
    );
    common::answer_after(&f.demo.sim, 0);
    let (status, body) = f.call("runs/capture-policy", &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(f.app.count("runs").await, runs_before + 1, "{body}");
}

/// A tenant's run cancelled while another live instance worked on it is still that instance's
/// until its claim lets go (it still sends the requests in flight): this worker claims none of
/// the tenant's runs meanwhile, and does once the cancelled run's lease is over.
async fn a_tenant_whose_cancelled_run_another_instance_holds_waits_for_it(f: Fixture) {
    f.sync().await;
    let policies = f.demo.sim.policies(CONTOSO);
    let first = f.policy_id(&policies[1].id).await.to_string();
    let second = f.policy_id(&policies[2].id).await.to_string();
    let held = f
        .start_as(
            &f.operator,
            "runs/capture-policy",
            &[("tenant", CONTOSO), ("policy_id", first.as_str())],
        )
        .await
        .run_id;
    // Claimed elsewhere, then cancelled: the other instance's claim still holds its lease.
    let now = tenantatlas::domain::Timestamp::now().millis();
    sqlx::query(
        "UPDATE runs SET status = 'cancelled', finished_at = $1, lease_owner = 'elsewhere', \
         attempt = 1, lease_expires_at = $2 WHERE id = $3",
    )
    .bind(now)
    .bind(now + 60_000)
    .bind(held)
    .execute(f.app.db.pool())
    .await
    .expect("the run is cancelled elsewhere");
    let next = f
        .start_as(
            &f.operator,
            "runs/capture-policy",
            &[("tenant", CONTOSO), ("policy_id", second.as_str())],
        )
        .await
        .run_id;
    assert!(
        matches!(f.worker.try_execute_task().await, Ok(Outcome::EmptyQueue)),
        "the tenant is still worked for elsewhere"
    );
    sqlx::query("UPDATE runs SET lease_expires_at = $1 WHERE id = $2")
        .bind(now - 1_000)
        .bind(held)
        .execute(f.app.db.pool())
        .await
        .expect("the lease is over");
    assert!(matches!(
        f.worker.try_execute_task().await,
        Ok(Outcome::TaskCompleted { run_id }) if run_id == next
    ));
}

async fn an_unreadable_base_version_counts_as_one_change_and_fails_nothing(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[3].id.clone();
    let policy = f.policy_id(&graph_id).await;
    let first = f.capture(policy).await;
    let mut base = first_result(&f.detail(first, "").await)
        .snapshot_id
        .expect("a first version");
    // The stored version no longer reads back: JSON nested deeper than serde_json reads (as a
    // capture before the depth bound could store), then plain garbage.
    for unreadable in [
        format!("{{\"policy\":{}1{}}}", "[".repeat(200), "]".repeat(200)),
        "{\"policy\": ".to_owned(),
    ] {
        sqlx::query("UPDATE policy_snapshots SET payload = $1 WHERE id = $2")
            .bind(&unreadable)
            .bind(base)
            .execute(f.app.db.pool())
            .await
            .unwrap();
        assert!(f.demo.sim.rename_policy(
            CONTOSO,
            &graph_id,
            &format!("Renamed {}", unreadable.len())
        ));
        let run = f.capture(policy).await;
        let detail = f.detail(run, "").await;
        assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
        let result = first_result(&detail);
        assert_eq!(result.base_snapshot_id, Some(base), "{detail:?}");
        assert_eq!(result.drift, Drift::Changed, "{detail:?}");
        assert_eq!(result.changed_settings, Some(1), "{detail:?}");
        // The fresh capture is stored, readable, and is the next capture's base.
        let fresh = result.snapshot_id.expect("the capture is stored");
        assert_ne!(fresh, base);
        base = fresh;
    }
}

async fn a_drift_check_tells_unchanged_changed_and_deleted_apart(f: Fixture) {
    f.sync().await;
    let sims = f.demo.sim.policies(CONTOSO);
    let mut ids = Vec::new();
    for sim in &sims[..4] {
        ids.push(f.policy_id(&sim.id).await);
    }
    let set = common::backup_set(&f.app, &f.operator, CONTOSO, "Drift").await;
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .list("policy_ids", &ids);
    f.run("runs/add-policies", &form.pairs()).await;

    // In Intune since the backup: one renamed, one deleted, two untouched.
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &sims[0].id, "Drifted name"));
    assert!(f.demo.sim.remove_policy(CONTOSO, &sims[1].id));
    let run = f
        .run(
            "runs/check-drift",
            &[("tenant", CONTOSO), ("backup_set_id", &set.to_string())],
        )
        .await;
    let detail = f.detail(run, "").await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(
        detail.summary.as_deref(),
        Some("1 of 4 policies changed since this backup, 1 deleted in Intune.")
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
    assert_eq!(changed.items.rows.len(), 1, "{changed:?}");
    assert_eq!(changed.items.rows[0].policy_id, ids[0]);
    let result = first_result(&changed);
    assert!(result.changed_settings.unwrap_or_default() >= 1);
    assert!(result.diff_versions().is_some(), "{result:?}");
    let deleted = f.detail(run, "deleted").await;
    assert_eq!(deleted.items.rows[0].policy_id, ids[1]);
    let unchanged = f.detail(run, "unchanged").await;
    assert_eq!(unchanged.items.total, 2);
    // Captured the way the backup was, an unchanged policy is the backup's own version.
    for row in &unchanged.items.rows {
        let result = row.result.as_ref().expect("a result");
        assert!(result.snapshot_id.is_some());
        assert_eq!(result.snapshot_id, result.base_snapshot_id, "{row:?}");
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
    let activity = f.activity("backup_set.drift_check", set).await;
    assert_eq!(activity.last.map(|last| last.id), Some(run));
}

/// A Graph base in front of the simulator that answers 404 to every read of the presentation
/// values of policy `graph_id`'s definition values (a setting removed in Intune while the
/// policy is read) and passes everything else on.
async fn graph_without_presentation_values(sim_base: &str, graph_id: &str) -> String {
    use axum::extract::Request;
    use axum::response::Response;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let own = format!("http://{}", listener.local_addr().expect("bound"));
    let (sim_base, graph_id, origin) = (sim_base.to_owned(), graph_id.to_owned(), own.clone());
    let http = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (sim_base, graph_id, origin, http) = (
            sim_base.clone(),
            graph_id.clone(),
            origin.clone(),
            http.clone(),
        );
        async move {
            let target = request
                .uri()
                .path_and_query()
                .map_or_else(String::new, |p| p.as_str().to_owned());
            if target.contains(&format!("/{graph_id}/definitionValues/"))
                && target.contains("/presentationValues")
            {
                let gone = r#"{"error": {"code": "ResourceNotFound", "message": "Not found"}}"#;
                return Response::builder()
                    .status(404)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(gone))
                    .expect("a response");
            }
            let mut forwarded = http.get(format!("{sim_base}{target}"));
            if let Some(auth) = request.headers().get("authorization") {
                forwarded = forwarded.header("authorization", auth.as_bytes());
            }
            let answer = forwarded.send().await.expect("the simulator answers");
            let status = answer.status().as_u16();
            let body = answer
                .text()
                .await
                .expect("a body")
                .replace(&sim_base, &origin);
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .expect("a response")
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serves") });
    format!("{own}/beta")
}

async fn a_part_gone_while_a_policy_is_read_does_not_mark_the_policy_deleted(f: Fixture) {
    use tenantatlas::server::graph::{GraphAccess, GraphClient, GraphConfig};
    f.sync().await;
    let template = f
        .demo
        .sim
        .policies(CONTOSO)
        .into_iter()
        .find(|p| p.kind == Kind::GroupPolicyConfiguration && p.child_count > 0)
        .expect("an administrative template with settings");
    let id = f.policy_id(&template.id).await;
    let set = common::backup_set(&f.app, &f.operator, CONTOSO, "Parts").await;
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .list("policy_ids", &[id]);
    f.run("runs/add-policies", &form.pairs()).await;

    // A setting of the template is removed between the read of its values and the read of
    // that value's presentation values.
    let sim = &f.demo.sim;
    let graph = graph_without_presentation_values(&sim.base_url, &template.id).await;
    let access = GraphAccess {
        client: GraphClient::new(GraphConfig::new(&sim.login_url, &graph)).expect("a client"),
        secrets: f.demo.access.secrets.clone(),
    };
    let worker = tenantatlas::server::runs_worker(&f.app.db, access);
    let set_id = set.to_string();
    let run = f
        .start_as(
            &f.operator,
            "runs/check-drift",
            &[("tenant", CONTOSO), ("backup_set_id", &set_id)],
        )
        .await
        .run_id;
    loop {
        match worker.try_execute_task().await.expect("the worker runs") {
            Outcome::TaskCompleted { run_id } if run_id == run => break,
            Outcome::TaskCompleted { .. } => {}
            Outcome::EmptyQueue => panic!("run {run} was not run"),
        }
    }

    let gone: Option<i64> =
        sqlx::query_scalar("SELECT gone_from_intune_at FROM policies WHERE id = $1")
            .bind(id)
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(gone, None, "the policy is still in Intune");
    let detail = f.detail(run, "").await;
    assert_eq!(detail.items.rows.len(), 1, "{detail:?}");
    let item = &detail.items.rows[0];
    assert_ne!(
        item.result.as_ref().map(|result| result.drift),
        Some(Drift::Deleted),
        "{item:?}"
    );
    assert_eq!(
        item.reason_code,
        Some(ReasonCode::InvalidResponse),
        "{item:?}"
    );
    assert!(f.detail(run, "deleted").await.items.rows.is_empty());
}

async fn starts_are_deduplicated_refused_without_the_role_and_validated(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[0].id.clone();
    let policy = f.policy_id(&graph_id).await.to_string();
    let capture = [("tenant", CONTOSO), ("policy_id", policy.as_str())];
    // A read-only member may look, not start; another tenant's member may do neither. Asked
    // while no capture of the policy and no sync is queued, so that a start let through would
    // queue a run of its own rather than be folded into one already there.
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
    assert_eq!(
        common::count(&f.app.db, "runs").await,
        runs_before,
        "a refused start queued a run"
    );

    // A double-click makes one run.
    let first = f
        .start_as(&f.operator, "runs/capture-policy", &capture)
        .await;
    let second = f
        .start_as(&f.operator, "runs/capture-policy", &capture)
        .await;
    assert_eq!(first.run_id, second.run_id);
    assert_eq!((first.reused, second.reused), (false, true));
    let sync = [("tenant", CONTOSO)];
    let sync_a = f.start_as(&f.operator, "runs/sync-inventory", &sync).await;
    let sync_b = f.start_as(&f.operator, "runs/sync-inventory", &sync).await;
    assert_eq!(sync_a.run_id, sync_b.run_id);
    // The refused starts above left nothing for these to join.
    assert_eq!((sync_a.reused, sync_b.reused), (false, true));

    let runs_before = common::count(&f.app.db, "runs").await;
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
    let empty = common::backup_set(&f.app, &f.operator, CONTOSO, "Empty")
        .await
        .to_string();
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
            let run: SubmittedRun = answer.json().await.unwrap();
            ids.push(run.run_id);
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

async fn the_versions_list_names_the_run_that_captured_each_version(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[4].id.clone();
    let policy = f.policy_id(&graph_id).await;
    // A backup captures the first version; a capture finding it unchanged is a later run.
    let backup = f.back_up_without_assignments(policy).await;
    let listed = f.listed_versions(policy).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].run_id, Some(backup));

    // Changed in Intune: Capture now stores a version no backup holds, and is its run.
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &graph_id, "Renamed before capture"));
    let capture = f.capture(policy).await;
    let listed = f.listed_versions(policy).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed[0].backup_sets.is_empty());
    assert_eq!(listed[0].run_id, Some(capture), "{listed:?}");
    assert_eq!(listed[1].run_id, Some(backup), "{listed:?}");

    // Captured again unchanged, the version stays the first capture's.
    f.capture(policy).await;
    let listed = f.listed_versions(policy).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0].run_id, Some(capture), "{listed:?}");

    // A drift check that captures a change is the run of the version it stored.
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &graph_id, "Renamed before the drift check"));
    let set = listed[1].backup_sets[0].id;
    let drift = f
        .run(
            "runs/check-drift",
            &[("tenant", CONTOSO), ("backup_set_id", &set.to_string())],
        )
        .await;
    let listed = f.listed_versions(policy).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0].run_id, Some(drift), "{listed:?}");
}

async fn a_capture_that_adds_assignments_says_it_stored_a_new_version(f: Fixture) {
    f.sync().await;
    let graph_id = f.demo.sim.policies(CONTOSO)[5].id.clone();
    let policy = f.policy_id(&graph_id).await;
    f.back_up_without_assignments(policy).await;
    assert_eq!(f.versions_of(policy).await, 1);

    // Capture now records assignments and scope tags too: a new version whose settings, as far
    // as the backup recorded them, are the same.
    let run = f.capture(policy).await;
    let detail = f.detail(run, "").await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    let result = first_result(&detail);
    assert_eq!(result.drift, Drift::Unchanged, "{detail:?}");
    assert_ne!(result.snapshot_id, result.base_snapshot_id, "{detail:?}");
    assert_eq!(f.versions_of(policy).await, 2);
    let summary = detail.summary.expect("a summary");
    assert!(!summary.contains("no new version"), "{summary}");
    assert!(summary.starts_with("Stored a new version"), "{summary}");

    // Captured again, nothing new: now it does say so.
    let again = f.capture(policy).await;
    let summary = f.detail(again, "").await.summary.expect("a summary");
    assert_eq!(f.versions_of(policy).await, 2);
    assert!(summary.starts_with("No change"), "{summary}");
}

async fn a_policy_back_at_an_earlier_version_is_compared_with_that_version_afterwards(f: Fixture) {
    f.sync().await;
    let sim = f.demo.sim.policies(CONTOSO)[6].clone();
    let policy = f.policy_id(&sim.id).await;
    let v1 = f.capture_version(policy).await;
    f.renamed_and_back(policy, &sim, v1).await;

    // Captured again, nothing changed in Intune: compared with the first version, which
    // Intune holds, not with the newer-captured second one.
    for _ in 0..2 {
        f.captured_unchanged_at(policy, v1).await;
    }
    assert_eq!(f.versions_of(policy).await, 2);
}

/// A policy captured before format 2, changed, then changed back: the capture in format 2 holds
/// the format-1 version's content under another hash, and neither the policy's current nor its
/// newest version holds it. It finds the format-1 version again instead of storing it twice.
async fn a_policy_back_at_a_format_1_version_finds_that_version_again(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let v1 = f.capture_version(policy).await;
    f.as_format_1(v1).await;

    // Unchanged, captured in format 2: still the format-1 version.
    let unchanged = f.capture(policy).await;
    let result = *first_result(&f.detail(unchanged, "").await);
    assert_eq!(result.snapshot_id, Some(v1), "{result:?}");
    assert_eq!(result.drift, Drift::Unchanged, "{result:?}");

    // Renamed in Intune (a second version, current and newest), then back: the first version
    // again, a change but no new version.
    f.renamed_and_back(policy, &sim, v1).await;

    // Captured again: no change from the first version, which stays current.
    f.captured_unchanged_at(policy, v1).await;
    assert_eq!(f.versions_of(policy).await, 2);
}

/// A policy captured several times in format 1 and unchanged since: its capture in format 2
/// misses its hash every time, and is compared with its current and newest versions only,
/// without reading the payloads of its other format-1 versions.
async fn an_unchanged_policy_on_a_format_1_version_reads_no_other_format_1_version(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let mut stored = Vec::new();
    for rename in [None, Some("Renamed once"), Some("Renamed twice")] {
        if let Some(name) = rename {
            assert!(f.demo.sim.rename_policy(CONTOSO, &sim.id, name));
        }
        stored.push(f.capture_version(policy).await);
    }
    let [v1, _, v3] = stored[..] else {
        unreachable!()
    };
    assert_eq!(f.versions_of(policy).await, 3);
    for version in &stored {
        f.as_format_1(*version).await;
    }

    // Unchanged: the current version, also the newest, is the only payload read.
    for _ in 0..2 {
        let before = candidate_payloads_read();
        let again = f.capture(policy).await;
        let read = candidate_payloads_read() - before;
        let result = *first_result(&f.detail(again, "").await);
        assert_eq!(result.snapshot_id, Some(v3), "{result:?}");
        assert_eq!(result.drift, Drift::Unchanged, "{result:?}");
        assert_eq!(read, 1, "payloads read");
    }

    // Back at the first name: found among the older format-1 versions, which are read now.
    assert!(f.demo.sim.rename_policy(CONTOSO, &sim.id, &sim.name));
    let back = f.capture(policy).await;
    let result = *first_result(&f.detail(back, "").await);
    assert_eq!(result.snapshot_id, Some(v1), "{result:?}");
    assert_eq!(result.drift, Drift::Changed, "{result:?}");

    // Unchanged again: the current version (the first) and the newest are read, not the
    // second.
    for _ in 0..2 {
        let before = candidate_payloads_read();
        let again = f.capture(policy).await;
        let read = candidate_payloads_read() - before;
        let result = *first_result(&f.detail(again, "").await);
        assert_eq!(result.snapshot_id, Some(v1), "{result:?}");
        assert_eq!(result.drift, Drift::Unchanged, "{result:?}");
        assert_eq!(read, 2, "payloads read");
    }
    assert_eq!(f.versions_of(policy).await, 3);
}

impl Fixture {
    /// Whether the policy page says the policy is gone from Intune.
    async fn gone_from_intune(&self, policy_id: i64) -> bool {
        self.app
            .policy(&self.operator, CONTOSO, policy_id)
            .await
            .expect("the policy")
            .gone_from_intune_at
            .is_some()
    }

    /// Whether the picker of backup set `set` lists `policy` when searched by its `name`.
    async fn in_picker(&self, set: i64, policy: i64, name: &str) -> bool {
        self.app
            .policies_list(&self.operator, CONTOSO, set, &[("search", name)])
            .await
            .expect("the picker's page")
            .rows
            .iter()
            .any(|row| row.id == policy)
    }

    /// Makes the simulator answer 404 to every read of `graph_id` (`true`: as if deleted in
    /// Intune), or serve it again (`false`).
    fn answer_not_found(&self, graph_id: &str, not_found: bool) {
        let mut knobs = self.demo.sim.knobs();
        if not_found {
            knobs.faults.insert(graph_id.to_owned(), Fault::NotFound);
        } else {
            knobs.faults.remove(graph_id);
        }
        self.demo.sim.set_knobs(knobs);
    }
}

/// A capture answered 404 marks the policy gone from Intune; a later capture that Graph answers
/// (the 404 was a replication blip, or the policy came back) clears the mark, so the picker
/// lists the policy again and its page no longer says it is gone. Whichever way the capture
/// finds its version: by hash, as a format-1 current version with the same content, or as a
/// drift check of a backup set that holds it.
async fn a_policy_captured_again_after_a_404_is_no_longer_gone(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let set = common::backup_set(&f.app, &f.operator, CONTOSO, "Held").await;
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .list("policy_ids", &[policy]);
    f.run("runs/add-policies", &form.pairs()).await;
    let v1 = f.capture_version(policy).await;
    assert!(f.in_picker(set, policy, &sim.name).await);
    let set_id = set.to_string();
    let check = [("tenant", CONTOSO), ("backup_set_id", set_id.as_str())];

    for round in [
        "capture by hash",
        "capture of a format-1 version",
        "drift check",
    ] {
        if round == "capture of a format-1 version" {
            f.as_format_1(v1).await;
        }
        f.answer_not_found(&sim.id, true);
        let deleted = if round == "drift check" {
            f.run("runs/check-drift", &check).await
        } else {
            f.capture(policy).await
        };
        let detail = f.detail(deleted, "").await;
        assert_eq!(
            first_result(&detail).drift,
            Drift::Deleted,
            "{round}: {detail:?}"
        );
        assert!(f.gone_from_intune(policy).await, "{round}");
        assert!(!f.in_picker(set, policy, &sim.name).await, "{round}");

        // Served again: captured fine, and back in the inventory.
        f.answer_not_found(&sim.id, false);
        if round == "drift check" {
            let again = f.run("runs/check-drift", &check).await;
            let detail = f.detail(again, "").await;
            assert_eq!(detail.status, RunStatus::Completed, "{round}: {detail:?}");
            assert_ne!(
                first_result(&detail).drift,
                Drift::Deleted,
                "{round}: {detail:?}"
            );
        } else {
            f.captured_unchanged_at(policy, v1).await;
        }
        assert!(
            !f.gone_from_intune(policy).await,
            "{round}: still marked gone"
        );
        assert!(
            f.in_picker(set, policy, &sim.name).await,
            "{round}: not in the picker"
        );
    }
}

/// A capture whose read started before its policy was marked gone from Intune (a sync that no
/// longer listed it, while the capture was in flight: deleted after the read) leaves the mark
/// when its batch is recorded; a capture read after the mark clears it.
async fn a_policy_marked_gone_while_its_capture_is_in_flight_stays_gone(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let id = policy.to_string();
    let form = [("tenant", CONTOSO), ("policy_id", id.as_str())];
    let run_id = mark_gone_while_in_flight(&f, &sim.id, policy, "runs/capture-policy", &form).await;
    let detail = f.detail(run_id, "").await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(first_result(&detail).drift, Drift::New, "{detail:?}");
    assert!(
        f.gone_from_intune(policy).await,
        "a capture read before the mark cleared it"
    );

    f.capture(policy).await;
    assert!(
        !f.gone_from_intune(policy).await,
        "a capture read after the mark left it"
    );
}

/// The same for the captures of an "add policies" run: the policy is in the set, and still
/// marked gone.
async fn a_policy_marked_gone_while_a_backup_reads_it_stays_gone(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let set = common::backup_set(&f.app, &f.operator, CONTOSO, "In flight").await;
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .list("policy_ids", &[policy]);
    let run_id =
        mark_gone_while_in_flight(&f, &sim.id, policy, "runs/add-policies", &form.pairs()).await;
    let detail = f.detail(run_id, "").await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert_eq!(detail.succeeded, 1, "{detail:?}");
    assert!(
        f.gone_from_intune(policy).await,
        "a backup read before the mark cleared it"
    );
}

/// A sync whose listing was asked for before a capture's 404 marked the policy gone (deleted
/// after Graph listed it) leaves the mark when it records the listing; the next sync, listing
/// after the mark, clears it.
async fn a_policy_marked_gone_while_a_sync_lists_it_stays_gone(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let form = [("tenant", CONTOSO)];
    let run_id = mark_gone_while_in_flight(
        &f,
        "deviceConfigurations",
        policy,
        "runs/sync-inventory",
        &form,
    )
    .await;
    let detail = f.detail(run_id, "").await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    assert!(
        f.gone_from_intune(policy).await,
        "a listing asked for before the mark cleared it"
    );

    f.sync().await;
    assert!(
        !f.gone_from_intune(policy).await,
        "a listing asked for after the mark left it"
    );
}

/// A 404 moves an older mark of being gone (a blip no capture has cleared since) forward: a read
/// made between the two and recorded after the 404 does not clear it; a read after the 404 does.
async fn a_404_moves_an_older_mark_forward_past_a_read_recorded_late(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let version = f.capture_version(policy).await;
    let content = f.as_capture(version).await;
    // The old blip's mark, then a read (sent now, recorded below, after the 404).
    let blip = tenantatlas::domain::Timestamp::now().millis() - 60_000;
    sqlx::query("UPDATE policies SET gone_from_intune_at = $1 WHERE id = $2")
        .bind(blip)
        .bind(policy)
        .execute(f.app.db.pool())
        .await
        .expect("the policy is marked gone");
    let read_at = tenantatlas::domain::Timestamp::now().millis();
    tokio::time::sleep(Duration::from_millis(5)).await;

    f.answer_not_found(&sim.id, true);
    let deleted = f.capture(policy).await;
    let detail = f.detail(deleted, "").await;
    assert_eq!(first_result(&detail).drift, Drift::Deleted, "{detail:?}");
    f.answer_not_found(&sim.id, false);

    f.record(policy, &[(&content, read_at)]).await;
    assert!(
        f.gone_from_intune(policy).await,
        "a read made before the 404 cleared the mark"
    );
    let after = tenantatlas::domain::Timestamp::now().millis();
    f.record(policy, &[(&content, after)]).await;
    assert!(
        !f.gone_from_intune(policy).await,
        "a read made after the 404 left the mark"
    );
}

/// Starts the run `endpoint` with `form` (one capture of `policy`, or a sync), and marks the
/// policy gone, as a sync or a capture's 404 would, once its request to a Graph path containing
/// `asked` (the policy's Graph id, or a listing's collection) has started (Graph answering after
/// 1 s); the run's id once it has ended.
async fn mark_gone_while_in_flight(
    f: &Fixture,
    asked: &str,
    policy: i64,
    endpoint: &str,
    form: &[(&str, &str)],
) -> i64 {
    while_in_flight(f, asked, endpoint, form, async {
        // Marked gone after the read started (a later millisecond), as a sync would.
        tokio::time::sleep(Duration::from_millis(5)).await;
        sqlx::query("UPDATE policies SET gone_from_intune_at = $1 WHERE id = $2")
            .bind(tenantatlas::domain::Timestamp::now().millis())
            .bind(policy)
            .execute(f.app.db.pool())
            .await
            .expect("the policy is marked gone");
    })
    .await
}

/// Starts the run `endpoint` with `form` and runs the queue, doing `meanwhile` once its request
/// to a Graph path containing `asked` has started (Graph answering after 1 s); the run's id once
/// it has ended.
async fn while_in_flight(
    f: &Fixture,
    asked: &str,
    endpoint: &str,
    form: &[(&str, &str)],
    meanwhile: impl std::future::Future<Output = ()>,
) -> i64 {
    common::answer_after(&f.demo.sim, 1_000);
    f.demo.sim.reset_counters();
    let run_id = f.start_as(&f.operator, endpoint, form).await.run_id;
    let worker = f.worker.clone();
    let working = tokio::spawn(async move { worker.try_execute_task().await });
    let (counters, path) = (&f.demo.sim, asked);
    common::wait_until(
        "never asked",
        Duration::from_secs(10),
        Duration::from_millis(5),
        || async move { !counters.counters().for_path(path).is_empty() },
    )
    .await;
    meanwhile.await;
    working.await.unwrap().unwrap();
    common::answer_after(&f.demo.sim, 0);
    run_id
}

/// Two runs of different kinds or targets may capture one policy at once (a "Capture now" beside
/// a cancelled backup still finishing its read, backups into two sets, a restore preview beside a
/// drift check): the capture recorded last may have read first. The current version (what the
/// versions page calls current, what Intune held at the policy's last read) is the newest read's,
/// not the last recorded one's; within one batch too, wherever the newest read stands.
async fn an_older_read_recorded_later_does_not_become_the_current_version(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    let a = f.capture_version(policy).await;
    assert!(f.demo.sim.rename_policy(CONTOSO, &sim.id, "Renamed since"));
    // Content B, read now (t2) through "Capture now".
    let b = f.capture_version(policy).await;
    assert_ne!(a, b);
    assert_eq!(f.current_version(policy).await, Some(b));
    let (content_a, content_b) = (f.as_capture(a).await, f.as_capture(b).await);

    // Content A, read before t2 and recorded after it: B stays current.
    let older = f.record(policy, &[(&content_a, 1)]).await;
    assert_eq!(older, [a], "content A is found again");
    assert_eq!(
        f.current_version(policy).await,
        Some(b),
        "an older read moved the current version back"
    );

    // Content A, read after t2: A is current.
    let t3 = tenantatlas::domain::Timestamp::now().millis();
    f.record(policy, &[(&content_a, t3)]).await;
    assert_eq!(f.current_version(policy).await, Some(a));

    // One batch, the newest read first, then last.
    f.record(policy, &[(&content_b, t3 + 2), (&content_a, t3 + 1)])
        .await;
    assert_eq!(
        f.current_version(policy).await,
        Some(b),
        "the batch's last capture won over its newest read"
    );
    f.record(policy, &[(&content_b, t3 + 3), (&content_a, t3 + 4)])
        .await;
    assert_eq!(f.current_version(policy).await, Some(a));
}

impl Fixture {
    /// The version the policy's versions page marks current.
    async fn current_version(&self, policy_id: i64) -> Option<i64> {
        let versions = self.listed_versions(policy_id).await;
        let mut current = versions.iter().filter(|v| v.current).map(|v| v.id);
        let first = current.next();
        assert_eq!(current.next(), None, "one current version: {versions:?}");
        first
    }

    /// Stored `version` as a capture of a device configuration would hold it again.
    async fn as_capture(&self, version: i64) -> Snapshot {
        let tenant = common::tenant_id(&self.app.db, CONTOSO).await;
        let stored = load_version(self.app.db.pool(), tenant, version)
            .await
            .unwrap()
            .expect("the version");
        Snapshot::new(
            PolicyType::DeviceConfiguration,
            String::new(),
            String::new(),
            &stored.payload,
            stored.options,
        )
    }

    /// Records one batch of captures of `policy_id`, each (content, when its read started), as
    /// a capturing run's batch does; the versions they were stored as.
    async fn record(&self, policy_id: i64, reads: &[(&Snapshot, i64)]) -> Vec<i64> {
        let tenant = common::tenant_id(&self.app.db, CONTOSO).await;
        let captures: Vec<Capture<'_>> = reads
            .iter()
            .map(|(snapshot, read_at)| Capture {
                policy_id,
                snapshot,
                read_at: Some(*read_at),
            })
            .collect();
        let now = tenantatlas::domain::Timestamp::now().millis();
        let mut tx = self.app.db.begin_batch(false).await.unwrap();
        let stored = store_captures(&mut tx, tenant, &captures, now)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        stored.iter().map(|s| s.id).collect()
    }
}

/// A read held back by Graph's throttling counts as made when its answered attempt was sent,
/// not when it was asked for: a backup's read of a policy gets a 429 (Retry-After 2 s); while
/// it waits, a "Capture now" on another instance (its own Graph client, not paused) reads and
/// records the old content O; the policy is renamed; the backup's retry reads the new content
/// N and records it last. N was read last, so it is the current version.
async fn a_read_held_back_by_a_429_counts_from_its_retry(f: Fixture) {
    use std::sync::Arc;
    use tenantatlas::server::engine::operation::Registry;
    use tenantatlas::server::engine::worker::CredentialsLoader;
    use tenantatlas::server::graph::{GraphClient, GraphConfig, PolicySource};
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    f.demo.sim.reset_counters();
    f.demo.sim.set_fault(
        &sim.id,
        Fault::Throttle {
            times: 1,
            retry_after_secs: 2,
        },
    );
    let set = common::backup_set(&f.app, &f.operator, CONTOSO, "Throttled").await;
    let form = Form::tenant(CONTOSO)
        .field("backup_set_id", set)
        .list("policy_ids", &[policy]);
    let backup = f
        .start_as(&f.operator, "runs/add-policies", &form.pairs())
        .await
        .run_id;
    let worker = f.worker.clone();
    let backing_up = tokio::spawn(async move { worker.try_execute_task().await });
    common::wait_until_throttled(&f.demo.sim).await;

    // A claim for the tenant whose Graph client the 429 did not pause: as another instance's,
    // serving the tenant while the backup's claim waits out the Retry-After behind a lost
    // lease (here under the same identity, so the tenant is not held elsewhere).
    let client = GraphClient::new(GraphConfig::new(
        &f.demo.sim.login_url,
        &f.demo.sim.graph_url,
    ))
    .expect("a client");
    let tenant = common::tenant_id(&f.app.db, CONTOSO).await;
    let creds = f
        .demo
        .access
        .credentials(&f.app.db, tenant)
        .await
        .expect("the tenant's credentials");
    let loader: CredentialsLoader = Arc::new(move |_tenant| {
        let creds = creds.clone();
        Box::pin(async move { Ok(creds) })
    });
    let source: Arc<dyn PolicySource> = Arc::new(client);
    let other = Worker::new(
        f.app.db.clone(),
        Registry::standard(source),
        loader,
        f.worker.id(),
    );
    let id = policy.to_string();
    let form = [("tenant", CONTOSO), ("policy_id", id.as_str())];
    let capture = f
        .start_as(&f.operator, "runs/capture-policy", &form)
        .await
        .run_id;
    match other.try_execute_task().await.expect("the worker runs") {
        Outcome::TaskCompleted { run_id } => assert_eq!(run_id, capture),
        Outcome::EmptyQueue => panic!("the capture was not run"),
    }
    let old = first_result(&f.detail(capture, "").await)
        .snapshot_id
        .expect("the capture's version");
    assert_eq!(f.current_version(policy).await, Some(old));
    assert!(f
        .demo
        .sim
        .rename_policy(CONTOSO, &sim.id, "Renamed while throttled"));

    backing_up.await.unwrap().unwrap();
    let detail = f.detail(backup, "").await;
    assert_eq!(detail.status, RunStatus::Completed, "{detail:?}");
    let new: i64 = sqlx::query_scalar(
        "SELECT snapshot_id FROM backup_items WHERE backup_set_id = $1 AND policy_id = $2",
    )
    .bind(set)
    .bind(policy)
    .fetch_one(f.app.db.pool())
    .await
    .unwrap();
    let read = load_version(f.app.db.pool(), tenant, new)
        .await
        .unwrap()
        .expect("the backup's version");
    assert!(
        read.payload.to_string().contains("Renamed while throttled"),
        "the backup's retry was sent before the rename (the Capture now took longer than the \
         Retry-After)"
    );
    assert_eq!(
        f.current_version(policy).await,
        Some(new),
        "the read retried after the 429 counted from before it and lost to an older read"
    );
}

/// A restore that recreated a deleted policy moves its record to the new Graph id (and clears the
/// mark): a capture's GET of the old id, in flight meanwhile, answers 404, which says nothing of
/// the new policy, so the record is not marked gone.
async fn a_404_of_a_policys_old_graph_id_does_not_mark_its_new_one_gone(f: Fixture) {
    f.sync().await;
    let sim = f.a_device_configuration();
    let policy = f.policy_id(&sim.id).await;
    assert!(f.demo.sim.remove_policy(CONTOSO, &sim.id));
    let id = policy.to_string();
    let form = [("tenant", CONTOSO), ("policy_id", id.as_str())];
    while_in_flight(&f, &sim.id, "runs/capture-policy", &form, async {
        // As a restore's create followed by `follow_created` leaves the record.
        sqlx::query("UPDATE policies SET graph_id = $1, gone_from_intune_at = NULL WHERE id = $2")
            .bind("recreated-by-a-restore")
            .bind(policy)
            .execute(f.app.db.pool())
            .await
            .expect("the record follows the new policy");
    })
    .await;
    assert!(
        !f.gone_from_intune(policy).await,
        "a 404 of the old Graph id marked the recreated policy gone"
    );
}
