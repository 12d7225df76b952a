//! `tenant.check_connection`: asks the token endpoint for a new token, reads the application
//! permissions in it, reads one page of each policy type, and stores what it found as the
//! tenant's last check. The run has no items: its work is the run's as a whole
//! ([`Operation::conclude`]), and a short one, so it queues in the interactive lane.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::super::operation::{Notice, Operation, Pending, Recorded, Run, Totals, Tx};
use super::super::worker::RunFailure;
use crate::domain::connection::{
    CheckOutcome, ConnectionReport, Feature, Permission, TypeCheck, TypeStatus,
};
use crate::domain::reason_code::ReasonCode;
use crate::domain::run::OperationType;
use crate::domain::RunStatus;
use crate::server::db::Db;
use crate::server::graph::jwt::ClaimsError;
use crate::server::graph::{PolicySource, PolicyType, TenantCredentials, TokenFailure};
use crate::server::sanitize::sanitize;
use crate::server::tenants::connection_check;

/// What a check run stores in `runs.input`: nothing; the tenant is the run's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckConnectionInput {}

/// The handler; it talks to Graph through `source`.
pub struct CheckConnection {
    source: Arc<dyn PolicySource>,
}

impl CheckConnection {
    pub fn new(source: Arc<dyn PolicySource>) -> Self {
        Self { source }
    }
}

/// A report, and the reason code the run fails with when the check did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub report: ConnectionReport,
    pub reason: Option<ReasonCode>,
}

impl Checked {
    /// The run's failure: none when the check passed.
    fn failure(&self) -> Option<RunFailure> {
        self.reason.map(|reason| RunFailure {
            reason,
            message: self.report.summary.clone(),
        })
    }
}

impl Operation for CheckConnection {
    const TYPE: OperationType = OperationType::CheckConnection;
    const NOTICE: Notice = Notice::new("Connection check", "The check did not finish.");
    super::without_items!(CheckConnectionInput);

    async fn conclude(
        &self,
        db: &Db,
        creds: Result<&TenantCredentials, &RunFailure>,
        run: &Run<CheckConnectionInput>,
    ) -> Result<Option<RunFailure>, sqlx::Error> {
        let checked = match creds {
            Ok(creds) => probe(self.source.as_ref(), creds).await,
            // The tenant was disconnected before the worker loaded its credentials (a check
            // queued after the disconnect listed the runs it cancels): the secret was never
            // tried, so the check proves nothing about the app and the tenant's last check
            // stays as it was. Stored as an authentication failure, it would refuse every run
            // of the reconnected tenant until a new check, over a secret that was never wrong.
            Err(failure) if failure.message == DISCONNECTED => {
                tracing::info!("the tenant is disconnected; the check stores no report");
                return Ok(Some(failure.clone()));
            }
            Err(failure) => unusable_credentials(failure),
        };
        tracing::info!(
            outcome = checked.report.outcome.as_str(),
            "connection checked"
        );
        if !connection_check::store(db, run.id, run.attempt, &checked.report).await? {
            tracing::warn!("the check's run was taken over or ended; its report is not stored");
        }
        Ok(checked.failure())
    }

    fn notification(
        &self,
        status: RunStatus,
        _totals: Totals,
        failure: Option<&RunFailure>,
        _summary: Option<&str>,
    ) -> (String, String) {
        let body = match failure {
            Some(failure) => sanitize(&failure.message),
            None => OK_SUMMARY.to_owned(),
        };
        (format!("{}: {}", Self::NOTICE.title, status.label()), body)
    }
}

/// The failure of a run whose tenant is disconnected when its worker loads the credentials
/// (`runs_worker`'s for [`CredentialsError::Disconnected`]): it fails as a run whose
/// credentials cannot be used, as the other operations' runs do, and the check knows it by
/// these words (it stores no report for it).
///
/// [`CredentialsError::Disconnected`]: crate::server::graph::credentials::CredentialsError::Disconnected
pub const DISCONNECTED: &str = "The tenant's Graph credentials cannot be used: the tenant is \
                                disconnected: its owner can reconnect it on its settings page";

const OK_SUMMARY: &str = "The app got a token, holds every permission TenantAtlas uses, and \
                          Graph let it read every policy type.";

/// Runs the check against Graph: a new token, its permissions, one page of each policy type.
pub async fn probe(source: &dyn PolicySource, creds: &TenantCredentials) -> Checked {
    let granted = match source.granted_roles(creds).await {
        Ok(granted) => granted,
        Err(failure) => return token_refused(failure),
    };
    let pages = PolicyType::ALL.map(|policy_type| async move {
        let read = source.first_page(creds, policy_type).await;
        (policy_type, read)
    });
    let mut types = Vec::with_capacity(PolicyType::ALL.len());
    let mut unavailable = None;
    for (policy_type, read) in futures::future::join_all(pages).await {
        let (status, detail) = match read {
            Ok(_) => (TypeStatus::Readable, None),
            Err(error) if error.reason_code() == ReasonCode::PermissionDenied => {
                (TypeStatus::Forbidden, Some(error.message().to_owned()))
            }
            Err(error) => {
                unavailable.get_or_insert(error.reason_code());
                (
                    TypeStatus::Failed,
                    Some(format!(
                        "{}: {}",
                        error.reason_code().label(),
                        error.message()
                    )),
                )
            }
        };
        types.push(TypeCheck {
            policy_type,
            status,
            detail,
        });
    }
    assess(granted.roles, types, unavailable)
}

/// What the token's permissions and Graph's answers mean together.
fn assess(
    roles: Result<Vec<String>, ClaimsError>,
    types: Vec<TypeCheck>,
    unavailable: Option<ReasonCode>,
) -> Checked {
    let (granted, missing, unreadable) = match roles {
        Ok(roles) => (Some(roles.clone()), Permission::missing_from(&roles), None),
        // Graph's answers below still say what the app may read.
        Err(error) => (None, Vec::new(), Some(error)),
    };
    let forbidden: Vec<&str> = types
        .iter()
        .filter(|t| t.status == TypeStatus::Forbidden)
        .map(|t| t.policy_type.label())
        .collect();
    let failed: Vec<&str> = types
        .iter()
        .filter(|t| t.status == TypeStatus::Failed)
        .map(|t| t.policy_type.label())
        .collect();
    let mut sentences = Vec::new();
    let (outcome, reason) = if granted.as_ref().is_some_and(Vec::is_empty) {
        sentences.push(
            "Admin consent has not been granted: the app's token carries no application \
             permissions, so Graph refuses everything. An admin of the tenant must grant admin \
             consent to the app's API permissions (Entra ID, App registrations, API \
             permissions, Grant admin consent), then check again."
                .to_owned(),
        );
        (CheckOutcome::NoConsent, Some(ReasonCode::PermissionDenied))
    } else if !missing.is_empty() || !forbidden.is_empty() {
        if !missing.is_empty() {
            let named: Vec<String> = missing
                .iter()
                .map(|permission| {
                    let blocked: Vec<&str> = permission
                        .blocks()
                        .iter()
                        .map(|f| feature_word(*f))
                        .collect();
                    format!("{} (blocks {})", permission.name(), blocked.join(" and "))
                })
                .collect();
            sentences.push(format!(
                "Missing application permissions: {}. Add them to the app registration and grant \
                 admin consent, then check again.",
                named.join(", ")
            ));
        }
        if !forbidden.is_empty() {
            sentences.push(format!(
                "Graph refused (403) to list: {}.",
                forbidden.join(", ")
            ));
        }
        (
            CheckOutcome::PermissionsMissing,
            Some(ReasonCode::PermissionDenied),
        )
    } else if let Some(reason) = unavailable {
        sentences.push(format!(
            "The check did not finish: Graph could not list {} ({}). Nothing is known to be \
             wrong with the app; try again later.",
            failed.join(", "),
            reason.label()
        ));
        (CheckOutcome::Incomplete, Some(reason))
    } else {
        sentences.push(OK_SUMMARY.to_owned());
        (CheckOutcome::Ok, None)
    };
    if let Some(error) = unreadable {
        sentences.push(format!(
            "The permissions in the token could not be read ({error}); only Graph's answers \
             were checked."
        ));
    }
    Checked {
        report: ConnectionReport {
            outcome,
            summary: sentences.join(" "),
            token: None,
            granted,
            missing,
            types,
        },
        reason,
    }
}

fn feature_word(feature: Feature) -> &'static str {
    match feature {
        Feature::Capture => "capture",
        Feature::Restore => "restore",
    }
}

/// No token: Entra ID refused the app (authentication failed), or could not be asked.
fn token_refused(failure: TokenFailure) -> Checked {
    match failure.refusal {
        Some(refusal) => Checked {
            report: ConnectionReport {
                outcome: CheckOutcome::AuthFailed,
                summary: refusal.words(),
                token: Some(refusal),
                granted: None,
                missing: Vec::new(),
                types: Vec::new(),
            },
            reason: Some(ReasonCode::AuthenticationFailed),
        },
        None => {
            let reason = failure.error.reason_code();
            Checked {
                report: ConnectionReport {
                    outcome: CheckOutcome::Incomplete,
                    summary: format!(
                        "The token endpoint could not be asked ({}: {}). Nothing is known to be \
                         wrong with the app; try again later.",
                        reason.label(),
                        failure.error.message()
                    ),
                    token: None,
                    granted: None,
                    missing: Vec::new(),
                    types: Vec::new(),
                },
                reason: Some(reason),
            }
        }
    }
}

/// The tenant's credentials could not even be loaded (no secret in the environment, a key that
/// cannot open it, …): to the admin, that is an authentication failure with its own cause.
fn unusable_credentials(failure: &RunFailure) -> Checked {
    let outcome = if failure.reason == ReasonCode::AuthenticationFailed {
        CheckOutcome::AuthFailed
    } else {
        CheckOutcome::Incomplete
    };
    Checked {
        report: ConnectionReport {
            outcome,
            summary: format!(
                "{} Fix the client secret on the tenant's settings page.",
                sanitize(&failure.message)
            ),
            token: None,
            granted: None,
            missing: Vec::new(),
            types: Vec::new(),
        },
        reason: Some(failure.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_check(policy_type: PolicyType, status: TypeStatus) -> TypeCheck {
        TypeCheck {
            policy_type,
            status,
            detail: None,
        }
    }

    fn all_readable() -> Vec<TypeCheck> {
        PolicyType::ALL
            .map(|t| type_check(t, TypeStatus::Readable))
            .to_vec()
    }

    fn roles(names: &[&str]) -> Result<Vec<String>, ClaimsError> {
        Ok(names.iter().map(|n| (*n).to_owned()).collect())
    }

    #[test]
    fn every_permission_and_every_type_is_a_pass() {
        let checked = assess(
            roles(&[
                "DeviceManagementConfiguration.ReadWrite.All",
                "Group.Read.All",
            ]),
            all_readable(),
            None,
        );
        assert_eq!(checked.report.outcome, CheckOutcome::Ok);
        assert_eq!(checked.failure().map(|f| f.reason), None);
    }

    #[test]
    fn missing_permissions_are_named_with_what_they_block() {
        let mut types = all_readable();
        types[2].status = TypeStatus::Forbidden;
        let checked = assess(
            roles(&["DeviceManagementConfiguration.Read.All"]),
            types,
            None,
        );
        let report = &checked.report;
        assert_eq!(report.outcome, CheckOutcome::PermissionsMissing);
        assert_eq!(
            report.missing,
            [Permission::ConfigurationReadWrite, Permission::GroupRead]
        );
        assert!(
            report.summary.contains(
                "DeviceManagementConfiguration.ReadWrite.All (blocks restore), Group.Read.All (blocks restore)"
            ),
            "{}",
            report.summary
        );
        assert!(report
            .summary
            .contains("Graph refused (403) to list: Compliance."));
        assert_eq!(checked.reason, Some(ReasonCode::PermissionDenied));
    }

    #[test]
    fn a_token_without_roles_means_no_consent() {
        let checked = assess(roles(&[]), all_readable(), None);
        assert_eq!(checked.report.outcome, CheckOutcome::NoConsent);
        assert!(checked
            .report
            .summary
            .starts_with("Admin consent has not been granted"));
        assert_eq!(checked.report.missing, Permission::ALL);
    }

    #[test]
    fn unreadable_claims_fall_back_to_graphs_answers() {
        let checked = assess(Err(ClaimsError::NotJwt), all_readable(), None);
        assert_eq!(checked.report.outcome, CheckOutcome::Ok);
        assert_eq!(checked.report.granted, None);
        assert!(checked.report.summary.contains("could not be read"));
    }

    #[test]
    fn a_graph_outage_is_an_unfinished_check_not_a_verdict() {
        let mut types = all_readable();
        types[0].status = TypeStatus::Failed;
        let checked = assess(
            roles(&[
                "DeviceManagementConfiguration.ReadWrite.All",
                "Group.Read.All",
            ]),
            types,
            Some(ReasonCode::Throttled),
        );
        assert_eq!(checked.report.outcome, CheckOutcome::Incomplete);
        assert!(!checked.report.outcome.blocks_runs());
        assert_eq!(checked.reason, Some(ReasonCode::Throttled));
    }

    #[test]
    fn credentials_that_cannot_be_loaded_fail_authentication() {
        let checked = unusable_credentials(&RunFailure {
            reason: ReasonCode::AuthenticationFailed,
            message: "The tenant's Graph credentials cannot be used: the environment variable \
                      TA_SECRET named by the secret reference is not set or empty"
                .into(),
        });
        assert_eq!(checked.report.outcome, CheckOutcome::AuthFailed);
        assert!(checked.report.summary.contains("TA_SECRET"));
    }

    #[test]
    fn a_disconnected_tenant_fails_with_the_credentials_words() {
        use crate::server::graph::credentials::CredentialsError;
        assert_eq!(
            DISCONNECTED,
            format!(
                "The tenant's Graph credentials cannot be used: {}",
                CredentialsError::Disconnected
            )
        );
    }

    #[test]
    fn the_stored_input_is_an_empty_object() {
        assert_eq!(
            serde_json::to_string(&CheckConnectionInput::default()).unwrap(),
            "{}"
        );
    }
}
