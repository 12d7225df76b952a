//! The connection check, end to end: the server function queues a `tenant.check_connection`
//! run, the server's own worker runs it against the Graph simulator (whose app registrations
//! are set up per test: a missing permission, a wrong or expired secret, no consent), and the
//! report the tenant's pages read names what is wrong in plain words. A tenant whose last check
//! failed on authentication starts no run until a check passes; one never checked is not blocked.

use crate::common;

use common::{
    insert_policies, Answer, TestApp, ADMIN, CONTOSO, FABRIKAM, OPERATOR, OUTSIDER, READONLY,
};
use tenantatlas::domain::connection::{
    CheckOutcome, ConnectionReport, ConnectionStatus, Permission, TokenProblem, TypeStatus,
};
use tenantatlas::domain::{PolicyType, SubmittedRun};
use tenantatlas::graph_sim::{AppSetup, TokenFault};
use tenantatlas::server::engine::worker::{Outcome, Worker};
use tenantatlas::server::{runs_worker, seed};

const MANAGER: &str = "manager@contoso.example";
const WAY_OUT: &str = "Check the connection on the tenant's settings page after fixing the secret.";

both_backends!(local Fixture:
    a_passing_check_is_stored_for_every_member_to_read,
    a_missing_permission_is_named_with_what_it_blocks_and_each_refused_type,
    without_any_policy_permission_every_type_is_refused_and_capture_is_blocked,
    a_wrong_secret_blocks_runs_until_a_check_passes,
    a_check_that_cannot_finish_leaves_an_authentication_failure_standing,
    an_expired_secret_is_told_apart,
    an_app_unknown_to_the_tenant_is_told_apart,
    a_token_without_roles_means_admin_consent_is_missing,
    a_secret_that_cannot_be_loaded_fails_authentication,
    a_tenant_never_checked_is_not_blocked,
    one_check_runs_at_a_time_and_only_owners_and_managers_start_it,
    secrets_echoed_by_the_token_endpoint_are_never_stored_or_shown,
);

struct Fixture {
    app: TestApp,
    demo: seed::DemoGraph,
    worker: Worker,
}

impl Fixture {
    async fn start(backend: common::Backend) -> Self {
        let demo = seed::start_demo_graph(0).await.unwrap();
        let app = TestApp::spawn_with_graph(backend, demo.access.clone()).await;
        let worker = runs_worker(&app.db, demo.access.clone());
        Self { app, demo, worker }
    }

    /// Sets up Contoso's app registration in the simulator.
    fn contoso_app(&self, app: AppSetup) {
        self.demo.sim.set_app(CONTOSO, app);
    }

    /// Starts a check of Contoso as `email`, runs it to its end with the server's worker, and
    /// returns the run's id.
    async fn check(&self, email: &str) -> i64 {
        let cookie = self.app.sign_in(email).await;
        let run_id = self
            .app
            .check_connection(&cookie, CONTOSO)
            .await
            .expect("a queued check")
            .run_id;
        // Runs queued before it (bulk runs come first) end too.
        loop {
            match self.worker.try_execute_task().await.unwrap() {
                Outcome::TaskCompleted { run_id: done } if done == run_id => return run_id,
                Outcome::TaskCompleted { .. } => {}
                Outcome::EmptyQueue => panic!("the check was not run"),
            }
        }
    }

    /// Contoso's connection status as `email` reads it.
    async fn status(&self, email: &str) -> ConnectionStatus {
        let cookie = self.app.sign_in(email).await;
        self.app
            .connection_status(&cookie, CONTOSO)
            .await
            .expect("members read the connection status")
    }

    /// Contoso's last report, as its owner reads it.
    async fn report(&self) -> ConnectionReport {
        let status = self.status(ADMIN).await;
        assert_eq!(status.active_run, None, "no check is left running");
        status.last.expect("a check has ended").report
    }

    /// The status and run-level reason of a run.
    async fn run_end(&self, run_id: i64) -> (String, Option<String>) {
        sqlx::query_as("SELECT status, reason_code FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_one(self.app.db.pool())
            .await
            .unwrap()
    }

    /// Submits "add policies" of one new policy to a new backup set of `tenant` as `email`.
    async fn add_policies(&self, email: &str, tenant: &str) -> Answer<SubmittedRun> {
        let cookie = self.app.sign_in(email).await;
        let name = format!("Checked {}", uuid::Uuid::new_v4().simple());
        let set = common::backup_set(&self.app, &cookie, tenant, &name).await;
        let ids = insert_policies(&self.app.db, tenant, 1).await;
        self.app.add_policies(&cookie, tenant, set, &ids, &[]).await
    }
}

/// Each policy type's status in the report, in registry order.
fn type_statuses(report: &ConnectionReport) -> Vec<(PolicyType, TypeStatus)> {
    report
        .types
        .iter()
        .map(|t| (t.policy_type, t.status))
        .collect()
}

async fn a_passing_check_is_stored_for_every_member_to_read(f: Fixture) {
    let run = f.check(MANAGER).await;
    assert_eq!(f.run_end(run).await, ("completed".into(), None));
    let last = f.status(READONLY).await.last.expect("the check is stored");
    assert_eq!(last.run_id, Some(run));
    let report = &last.report;
    assert_eq!(report.outcome, CheckOutcome::Ok);
    assert_eq!(
        report.granted.as_deref().expect("a token was issued"),
        [
            "DeviceManagementConfiguration.Read.All",
            "DeviceManagementConfiguration.ReadWrite.All",
            "Group.Read.All"
        ]
    );
    assert!(report.missing.is_empty(), "{:?}", report.missing);
    assert_eq!(report.token, None);
    assert_eq!(
        type_statuses(report),
        [
            (PolicyType::SettingsCatalog, TypeStatus::Readable),
            (PolicyType::DeviceConfiguration, TypeStatus::Readable),
            (PolicyType::Compliance, TypeStatus::Readable),
            (PolicyType::AdministrativeTemplate, TypeStatus::Readable),
        ]
    );
    // One token and one page of each of the four collections.
    let counters = f.demo.sim.counters();
    assert_eq!(
        (counters.token_requests(), counters.graph_requests()),
        (1, 4)
    );
    // The initiator is told how it went.
    let (title, body): (String, String) =
        sqlx::query_as("SELECT title, body FROM notifications ORDER BY id DESC LIMIT 1")
            .fetch_one(f.app.db.pool())
            .await
            .unwrap();
    assert_eq!(title, "Connection check: Succeeded");
    assert!(body.contains("every permission"), "{body}");
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'tenant.check_connection'",
    )
    .fetch_one(f.app.db.pool())
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

async fn a_missing_permission_is_named_with_what_it_blocks_and_each_refused_type(f: Fixture) {
    f.contoso_app(AppSetup {
        missing_roles: vec![
            "DeviceManagementConfiguration.ReadWrite.All".into(),
            "Group.Read.All".into(),
        ],
        forbidden_collections: vec!["deviceCompliancePolicies".into()],
        ..AppSetup::default()
    });
    let run = f.check(ADMIN).await;
    assert_eq!(
        f.run_end(run).await,
        ("failed".into(), Some("permission_denied".into()))
    );
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::PermissionsMissing);
    assert_eq!(
        report.missing,
        [Permission::ConfigurationReadWrite, Permission::GroupRead]
    );
    let summary = &report.summary;
    assert!(
        summary.contains(
            "DeviceManagementConfiguration.ReadWrite.All (blocks restore), Group.Read.All (blocks restore)"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("Graph refused (403) to list: Compliance."),
        "{summary}"
    );
    assert_eq!(
        type_statuses(&report),
        [
            (PolicyType::SettingsCatalog, TypeStatus::Readable),
            (PolicyType::DeviceConfiguration, TypeStatus::Readable),
            (PolicyType::Compliance, TypeStatus::Forbidden),
            (PolicyType::AdministrativeTemplate, TypeStatus::Readable),
        ]
    );
    // Capture still works for what the app may read: runs are not blocked.
    f.add_policies(OPERATOR, CONTOSO)
        .await
        .expect("runs are not blocked");
}

async fn without_any_policy_permission_every_type_is_refused_and_capture_is_blocked(f: Fixture) {
    f.contoso_app(AppSetup {
        missing_roles: vec![
            "DeviceManagementConfiguration.Read.All".into(),
            "DeviceManagementConfiguration.ReadWrite.All".into(),
        ],
        ..AppSetup::default()
    });
    f.check(ADMIN).await;
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::PermissionsMissing);
    assert_eq!(
        report.granted.as_deref().expect("a token was issued"),
        ["Group.Read.All"]
    );
    assert!(report
        .summary
        .contains("DeviceManagementConfiguration.Read.All (blocks capture)"));
    assert!(report
        .types
        .iter()
        .all(|t| t.status == TypeStatus::Forbidden));
}

async fn a_wrong_secret_blocks_runs_until_a_check_passes(f: Fixture) {
    // A failed run from before, for "retry failed" below.
    let cookie = f.app.sign_in(OPERATOR).await;
    let earlier = common::run_with_items(&f.app, &cookie, 2, 1, 1).await;
    sqlx::query("UPDATE runs SET status = 'completed_with_errors' WHERE id = $1")
        .bind(earlier)
        .execute(f.app.db.pool())
        .await
        .unwrap();

    f.contoso_app(AppSetup {
        token_error: Some(TokenFault::WrongSecret),
        ..AppSetup::default()
    });
    let run = f.check(ADMIN).await;
    assert_eq!(
        f.run_end(run).await,
        ("failed".into(), Some("authentication_failed".into()))
    );
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::AuthFailed);
    let token = report.token.expect("the token endpoint refused");
    assert_eq!(token.problem, TokenProblem::WrongSecret);
    assert_eq!(token.code, Some(7_000_215));
    assert_eq!(token.error.as_deref(), Some("invalid_client"));
    let summary = &report.summary;
    assert!(
        summary.starts_with("The client secret is wrong"),
        "{summary}"
    );
    // No Graph call without a token.
    assert_eq!(f.demo.sim.counters().graph_requests(), 0);

    // Capture runs are refused with the reason and the way out, and nothing is written.
    let runs_before = f.app.count("runs").await;
    let refused = f.add_policies(OPERATOR, CONTOSO).await.unwrap_err();
    assert_eq!(refused.status, 409);
    let body = &refused.body;
    assert!(body.contains("The client secret is wrong"), "{body}");
    assert!(body.contains(WAY_OUT), "{body}");
    let retry = f
        .app
        .retry_failed(&cookie, CONTOSO, earlier)
        .await
        .unwrap_err();
    assert_eq!(retry.status, 409);
    assert!(retry.body.contains(WAY_OUT));
    assert_eq!(f.app.count("runs").await, runs_before);
    // Only this tenant is blocked.
    f.add_policies(OUTSIDER, FABRIKAM)
        .await
        .expect("Fabrikam is not blocked");

    // The secret is fixed; a passing check unblocks the tenant.
    f.contoso_app(AppSetup::default());
    f.check(MANAGER).await;
    assert_eq!(f.report().await.outcome, CheckOutcome::Ok);
    f.add_policies(OPERATOR, CONTOSO)
        .await
        .expect("the tenant is unblocked");
}

async fn a_check_that_cannot_finish_leaves_an_authentication_failure_standing(f: Fixture) {
    use tenantatlas::graph_sim::{Knobs, TokenUnavailable};
    f.contoso_app(AppSetup {
        token_error: Some(TokenFault::WrongSecret),
        ..AppSetup::default()
    });
    let failed = f.check(ADMIN).await;
    assert_eq!(f.report().await.outcome, CheckOutcome::AuthFailed);
    assert_eq!(
        f.add_policies(OPERATOR, CONTOSO).await.unwrap_err().status,
        409
    );

    // The token endpoint is unavailable now: the next check proves nothing either way.
    f.contoso_app(AppSetup::default());
    f.demo.sim.set_knobs(Knobs {
        token_unavailable: Some(TokenUnavailable {
            status: 503,
            times: 1_000,
            retry_after_secs: Some(0),
        }),
        ..f.demo.sim.knobs()
    });
    let unfinished = f.check(MANAGER).await;
    assert_eq!(f.run_end(unfinished).await.0, "failed");
    // The block stands, and what the pages read still says why.
    let runs_before = f.app.count("runs").await;
    let refused = f.add_policies(OPERATOR, CONTOSO).await.unwrap_err();
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains(WAY_OUT), "{}", refused.body);
    assert_eq!(f.app.count("runs").await, runs_before);
    let last = f.status(ADMIN).await.last.expect("a check has ended");
    assert_eq!(last.report.outcome, CheckOutcome::AuthFailed);
    assert!(last.report.outcome.blocks_runs());
    assert_eq!(last.run_id, Some(failed));

    // A check that passes lifts it.
    f.demo.sim.set_knobs(Knobs {
        token_unavailable: None,
        ..f.demo.sim.knobs()
    });
    f.check(MANAGER).await;
    assert_eq!(f.report().await.outcome, CheckOutcome::Ok);
    f.add_policies(OPERATOR, CONTOSO)
        .await
        .expect("the tenant is unblocked");
}

async fn an_expired_secret_is_told_apart(f: Fixture) {
    f.contoso_app(AppSetup {
        token_error: Some(TokenFault::ExpiredSecret),
        ..AppSetup::default()
    });
    f.check(ADMIN).await;
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::AuthFailed);
    let token = report.token.expect("the token endpoint refused");
    assert_eq!(token.problem, TokenProblem::ExpiredSecret);
    assert_eq!(token.code, Some(7_000_222));
    let summary = &report.summary;
    assert!(
        summary.starts_with("The client secret has expired"),
        "{summary}"
    );
    let refused = f.add_policies(OPERATOR, CONTOSO).await.unwrap_err();
    assert_eq!(refused.status, 409);
    assert!(refused.body.contains("The client secret has expired"));
}

async fn an_app_unknown_to_the_tenant_is_told_apart(f: Fixture) {
    f.contoso_app(AppSetup {
        token_error: Some(TokenFault::AppNotFound),
        ..AppSetup::default()
    });
    f.check(ADMIN).await;
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::AuthFailed);
    let token = report.token.expect("the token endpoint refused");
    assert_eq!(token.problem, TokenProblem::AppNotFound);
    assert_eq!(token.code, Some(700_016));
    assert_eq!(token.status, 400);
    assert!(report
        .summary
        .contains("The app was not found in this tenant"));
}

async fn a_token_without_roles_means_admin_consent_is_missing(f: Fixture) {
    f.contoso_app(AppSetup {
        no_consent: true,
        ..AppSetup::default()
    });
    let run = f.check(ADMIN).await;
    assert_eq!(
        f.run_end(run).await,
        ("failed".into(), Some("permission_denied".into()))
    );
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::NoConsent);
    assert_eq!(report.granted, Some(Vec::new()));
    assert_eq!(
        report.missing,
        [
            Permission::ConfigurationRead,
            Permission::ConfigurationReadWrite,
            Permission::GroupRead
        ]
    );
    let summary = &report.summary;
    assert!(
        summary.starts_with("Admin consent has not been granted"),
        "{summary}"
    );
    assert!(report
        .types
        .iter()
        .all(|t| t.status == TypeStatus::Forbidden));
    // Authentication works: runs are not blocked (their items fail with 403 on their own).
    f.add_policies(OPERATOR, CONTOSO)
        .await
        .expect("runs are not blocked");
}

async fn a_secret_that_cannot_be_loaded_fails_authentication(f: Fixture) {
    sqlx::query("UPDATE tenants SET graph_secret_ref = $1 WHERE external_id = $2")
        .bind("env:TA_NO_SUCH_SECRET")
        .bind(CONTOSO)
        .execute(f.app.db.pool())
        .await
        .unwrap();
    let run = f.check(ADMIN).await;
    assert_eq!(
        f.run_end(run).await,
        ("failed".into(), Some("authentication_failed".into()))
    );
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::AuthFailed);
    assert!(report.summary.contains("TA_NO_SUCH_SECRET"));
    assert_eq!(f.demo.sim.counters().token_requests(), 0);
    let refused = f.add_policies(OPERATOR, CONTOSO).await.unwrap_err();
    assert_eq!(refused.status, 409);
}

async fn a_tenant_never_checked_is_not_blocked(f: Fixture) {
    let status = f.status(OPERATOR).await;
    assert_eq!(status.last, None);
    assert_eq!(status.active_run, None);
    f.add_policies(OPERATOR, CONTOSO)
        .await
        .expect("runs are not blocked");
}

async fn one_check_runs_at_a_time_and_only_owners_and_managers_start_it(f: Fixture) {
    let start = |email: &'static str| {
        let f = &f;
        async move {
            let cookie = f.app.sign_in(email).await;
            f.app.check_connection(&cookie, CONTOSO).await
        }
    };
    // Refused while no check is queued, so that a start let through would queue a run of its
    // own rather than be folded into one already there.
    let runs_before = f.app.count("runs").await;
    let refuse_all = || async {
        for email in [OPERATOR, READONLY] {
            let refused = start(email).await.unwrap_err();
            assert_eq!(refused.status, 403);
            assert!(refused.body.contains("Needs manager or owner"));
        }
        let outsider = start(OUTSIDER).await.unwrap_err();
        assert_eq!(outsider.status, 403);
    };
    refuse_all().await;
    assert_eq!(
        f.app.count("runs").await,
        runs_before,
        "a refused start queued a check"
    );
    let first = start(ADMIN).await.expect("the owner starts a check");
    let second = start(MANAGER).await.expect("a manager starts a check");
    assert!(!first.reused);
    assert!(second.reused);
    assert_eq!(first.run_id, second.run_id);
    let status = f.status(READONLY).await;
    assert_eq!(status.active_run, Some(first.run_id));
    // Queued in the interactive lane, so it never waits behind a bulk run of the tenant.
    let lane: String = sqlx::query_scalar("SELECT lane FROM runs WHERE id = $1")
        .bind(first.run_id)
        .fetch_one(f.app.db.pool())
        .await
        .unwrap();
    assert_eq!(lane, "interactive");
    // And refused while one is: not joined to it either.
    refuse_all().await;
    assert_eq!(f.app.count("runs").await, runs_before + 1);
}

async fn secrets_echoed_by_the_token_endpoint_are_never_stored_or_shown(f: Fixture) {
    // A refusal that echoes a client secret, a bearer token and a password back.
    let secret = "Zx8Q~s3cr3tValueThatMustNeverShow.abcdefghij";
    let jwt =
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2dyYXBoIn0.c2lnbmF0dXJlLXZhbHVl";
    f.contoso_app(AppSetup {
        token_error: Some(TokenFault::WrongSecret),
        token_error_detail: Some(format!(
            "Request was: client_secret={secret}&assertion=Bearer {jwt} password={secret}"
        )),
        ..AppSetup::default()
    });
    let run = f.check(ADMIN).await;
    assert_eq!(
        f.run_end(run).await,
        ("failed".into(), Some("authentication_failed".into()))
    );
    // The Entra ID code is still told apart.
    let report = f.report().await;
    assert_eq!(report.outcome, CheckOutcome::AuthFailed);
    assert_eq!(
        report.token.as_ref().and_then(|token| token.code),
        Some(7_000_215),
        "{report:?}"
    );
    // The report is built from the code and the OAuth `error` only, never from the description
    // (which may echo anything): its secrets are nowhere in the database: not the report, the run, its notification or the audit log.
    let db = f.app.db.pool();
    let mut stored: Vec<String> = Vec::new();
    stored.extend(
        sqlx::query_scalar::<_, String>("SELECT report FROM tenant_connection_checks")
            .fetch_all(db)
            .await
            .unwrap(),
    );
    stored.extend(
        sqlx::query_scalar::<_, Option<String>>("SELECT failure_message FROM runs")
            .fetch_all(db)
            .await
            .unwrap()
            .into_iter()
            .flatten(),
    );
    stored.extend(
        sqlx::query_scalar::<_, String>("SELECT body FROM notifications")
            .fetch_all(db)
            .await
            .unwrap(),
    );
    stored.extend(
        sqlx::query_scalar::<_, String>("SELECT details FROM audit_log")
            .fetch_all(db)
            .await
            .unwrap(),
    );
    assert!(!stored.is_empty());
    for text in &stored {
        for planted in [secret, jwt, "s3cr3tValue"] {
            assert!(!text.contains(planted), "{planted} leaked into: {text}");
        }
    }
    // Nor on the page a member reads: the answer as sent.
    let cookie = f.app.sign_in(READONLY).await;
    let response = f
        .app
        .call_as(&cookie, "tenants/connection-check", &[("tenant", CONTOSO)])
        .await;
    assert_eq!(response.status(), 200);
    let status = response.text().await.unwrap();
    assert!(
        !status.contains("s3cr3tValue") && !status.contains(jwt),
        "{status}"
    );
}
