//! The connection check of a tenant: what its app registration may do in Microsoft Graph, in
//! words an admin can act on. The server builds a [`ConnectionReport`] (the token, the
//! application permissions in it, one page of each policy type) and stores the last one per
//! tenant; the tenant's pages show it, and a tenant whose last check failed on authentication
//! starts no run until a check passes again.

use serde::{Deserialize, Serialize};

use super::policy_type::PolicyType;
use super::Timestamp;

/// Something the app does that needs a Graph permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// Sync the inventory, add policies to backup sets, capture versions.
    Capture,
    /// Preview and execute restores.
    Restore,
}

impl Feature {
    /// What the UI calls it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Capture => "capture (sync, add policies to backup sets, capture versions)",
            Self::Restore => "restore",
        }
    }
}

/// A Graph application permission a feature needs; serialized as its exact Entra ID name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Permission {
    #[serde(rename = "DeviceManagementConfiguration.Read.All")]
    ConfigurationRead,
    #[serde(rename = "DeviceManagementConfiguration.ReadWrite.All")]
    ConfigurationReadWrite,
    #[serde(rename = "Group.Read.All")]
    GroupRead,
}

impl Permission {
    /// Every permission the app uses, in the order the report lists them.
    pub const ALL: [Permission; 3] = [
        Self::ConfigurationRead,
        Self::ConfigurationReadWrite,
        Self::GroupRead,
    ];

    /// The exact name Entra ID shows (and puts in the token's `roles` claim).
    pub fn name(self) -> &'static str {
        match self {
            Self::ConfigurationRead => "DeviceManagementConfiguration.Read.All",
            Self::ConfigurationReadWrite => "DeviceManagementConfiguration.ReadWrite.All",
            Self::GroupRead => "Group.Read.All",
        }
    }

    /// The features that cannot work without it. Restore checks the groups its assignments
    /// name, hence `Group.Read.All`.
    pub fn blocks(self) -> &'static [Feature] {
        match self {
            Self::ConfigurationRead => &[Feature::Capture],
            Self::ConfigurationReadWrite | Self::GroupRead => &[Feature::Restore],
        }
    }

    /// Whether `roles` (a token's `roles` claim) grants it; a ReadWrite permission grants the
    /// Read one of the same resource. Reading a group is also granted by the directory-wide
    /// permissions, which Graph accepts for it
    /// (<https://learn.microsoft.com/en-us/graph/api/group-get#permissions>).
    pub fn granted_by(self, roles: &[String]) -> bool {
        let has = |name: &str| roles.iter().any(|role| role == name);
        match self {
            Self::ConfigurationRead => has(self.name()) || has(Self::ConfigurationReadWrite.name()),
            Self::ConfigurationReadWrite => has(self.name()),
            Self::GroupRead => [
                self.name(),
                "Group.ReadWrite.All",
                "Directory.Read.All",
                "Directory.ReadWrite.All",
            ]
            .into_iter()
            .any(has),
        }
    }

    /// The permissions `roles` lacks, in [`Permission::ALL`] order.
    pub fn missing_from(roles: &[String]) -> Vec<Permission> {
        Self::ALL
            .into_iter()
            .filter(|permission| !permission.granted_by(roles))
            .collect()
    }

    /// The permissions `feature` needs that `roles` lacks, in [`Permission::ALL`] order: what
    /// blocks it, by the same table the connection check reports.
    pub fn missing_for(feature: Feature, roles: &[String]) -> Vec<Permission> {
        Self::missing_from(roles)
            .into_iter()
            .filter(|permission| permission.blocks().contains(&feature))
            .collect()
    }
}

/// How the last check ended; stored in `tenant_connection_checks.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    /// A token, every permission, every policy type readable.
    Ok,
    /// No token: the secret, the app or the tenant was refused (or the secret cannot be read).
    AuthFailed,
    /// A token without any application permission: nobody granted admin consent.
    NoConsent,
    /// A token, but some permission is missing or Graph refused a policy type.
    PermissionsMissing,
    /// The check could not finish (Graph or the token endpoint unreachable, throttled, slow).
    Incomplete,
}

impl CheckOutcome {
    pub const ALL: [CheckOutcome; 5] = [
        Self::Ok,
        Self::AuthFailed,
        Self::NoConsent,
        Self::PermissionsMissing,
        Self::Incomplete,
    ];

    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::AuthFailed => "auth_failed",
            Self::NoConsent => "no_consent",
            Self::PermissionsMissing => "permissions_missing",
            Self::Incomplete => "incomplete",
        }
    }

    /// Parses the database spelling.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == raw)
    }

    /// The words the UI shows.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "Connected",
            Self::AuthFailed => "Authentication failed",
            Self::NoConsent => "Admin consent missing",
            Self::PermissionsMissing => "Permissions missing",
            Self::Incomplete => "Check did not finish",
        }
    }

    /// Whether runs are refused while this is the tenant's last check: only when Entra ID
    /// refused the app itself. Missing permissions fail the affected items (403) on their own,
    /// and an unfinished check proves nothing.
    pub fn blocks_runs(self) -> bool {
        self == Self::AuthFailed
    }
}

/// Why the token endpoint refused, in the terms the app can explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenProblem {
    /// AADSTS7000215: the secret is not the app's.
    WrongSecret,
    /// AADSTS7000222: the secret has expired.
    ExpiredSecret,
    /// AADSTS700016: no such app in the tenant, or nobody there consented to it.
    AppNotFound,
    /// OAuth `invalid_client`: the client's credentials were refused.
    InvalidClient,
    /// OAuth `unauthorized_client`: the app may not get tokens here.
    UnauthorizedClient,
    /// OAuth `invalid_request` (e.g. an unknown tenant).
    InvalidRequest,
    /// Anything else the token endpoint refused with.
    Other,
}

/// AADSTS codes are documented as subject to change, so only these three are read; anything
/// else is explained from the OAuth `error` field, which is part of the protocol.
const WRONG_SECRET: u32 = 7_000_215;
const EXPIRED_SECRET: u32 = 7_000_222;
const APP_NOT_FOUND: u32 = 700_016;

impl TokenProblem {
    /// Classifies a refusal: first by the AADSTS codes (`error_codes`, or the `AADSTSnnn:` that
    /// starts `error_description`), then by the OAuth `error` field.
    pub fn classify(codes: &[u32], error: Option<&str>) -> Self {
        for code in codes {
            match *code {
                WRONG_SECRET => return Self::WrongSecret,
                EXPIRED_SECRET => return Self::ExpiredSecret,
                APP_NOT_FOUND => return Self::AppNotFound,
                _ => {}
            }
        }
        match error.map(str::trim) {
            Some("invalid_client") => Self::InvalidClient,
            Some("unauthorized_client") => Self::UnauthorizedClient,
            Some("invalid_request") => Self::InvalidRequest,
            _ => Self::Other,
        }
    }

    /// What happened and what to do, in plain words.
    pub fn explain(self) -> &'static str {
        match self {
            Self::WrongSecret => {
                "The client secret is wrong: Entra ID does not know it for this app. Copy the \
                 secret's value (not its id) from the app registration and replace it on the \
                 tenant's settings page."
            }
            Self::ExpiredSecret => {
                "The client secret has expired. Create a new secret in the app registration \
                 (Certificates & secrets) and replace it on the tenant's settings page."
            }
            Self::AppNotFound => {
                "The app was not found in this tenant, or nobody in the tenant has consented to \
                 it. Check the client id and the tenant id, and have an admin of the tenant \
                 grant consent to the app."
            }
            Self::InvalidClient => {
                "Entra ID refused the app's credentials. Check the client id and replace the \
                 client secret on the tenant's settings page."
            }
            Self::UnauthorizedClient => {
                "Entra ID does not let this app get tokens in this tenant. Check that the app \
                 registration is enabled and consented to in the tenant."
            }
            Self::InvalidRequest => {
                "Entra ID refused the token request as invalid. Check the tenant id."
            }
            Self::Other => "Entra ID refused to issue a token for the app.",
        }
    }
}

/// What the token endpoint answered instead of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRefusal {
    pub problem: TokenProblem,
    /// The first AADSTS code, when there was one (shown for support, never interpreted beyond
    /// the three above).
    pub code: Option<u32>,
    /// The OAuth `error` field, when there was one.
    pub error: Option<String>,
    /// The HTTP status.
    pub status: u16,
}

impl TokenRefusal {
    /// The refusal in plain words, with the code for support.
    pub fn words(&self) -> String {
        let reference = match (&self.code, &self.error) {
            (Some(code), _) => format!(" (AADSTS{code})"),
            (None, Some(error)) => format!(" ({error})"),
            (None, None) => format!(" (HTTP {})", self.status),
        };
        format!("{}{reference}", self.problem.explain())
    }
}

/// How reading one page of a policy type went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeStatus {
    Readable,
    /// Graph answered 403.
    Forbidden,
    /// Any other failure (after the client's retries).
    Failed,
}

/// One policy type's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeCheck {
    pub policy_type: PolicyType,
    pub status: TypeStatus,
    /// The sanitized reason when it was not readable.
    pub detail: Option<String>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub outcome: CheckOutcome,
    /// One or two sentences an admin can act on.
    pub summary: String,
    /// Set when the token endpoint refused.
    pub token: Option<TokenRefusal>,
    /// The application permissions in the token's `roles` claim, sorted; `None` when no token
    /// was issued or its claims could not be read.
    pub granted: Option<Vec<String>>,
    /// The permissions the features need that the token lacks, in [`Permission::ALL`] order.
    pub missing: Vec<Permission>,
    /// One line per policy type, when a token was issued.
    pub types: Vec<TypeCheck>,
}

/// A tenant's last check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionCheck {
    /// The run that made it.
    pub run_id: Option<i64>,
    pub checked_at: Timestamp,
    pub report: ConnectionReport,
}

/// What the tenant's pages show: the last check, and the check queued or running now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub last: Option<ConnectionCheck>,
    pub active_run: Option<i64>,
}

/// The refusal of a run for a tenant whose last check failed on authentication, and the way out.
pub fn blocked_runs_message(summary: &str) -> String {
    format!(
        "Runs cannot start for this tenant: its last connection check failed on authentication. \
         {summary} Check the connection on the tenant's settings page after fixing the secret."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn aadsts_codes_come_first_then_the_oauth_error() {
        use TokenProblem::*;
        assert_eq!(
            TokenProblem::classify(&[7_000_215], Some("invalid_client")),
            WrongSecret
        );
        assert_eq!(
            TokenProblem::classify(&[7_000_222], Some("invalid_client")),
            ExpiredSecret
        );
        assert_eq!(
            TokenProblem::classify(&[700_016], Some("unauthorized_client")),
            AppNotFound
        );
        // A code the app does not know falls back to the protocol's error field.
        assert_eq!(
            TokenProblem::classify(&[7_000_999], Some("invalid_client")),
            InvalidClient
        );
        assert_eq!(
            TokenProblem::classify(&[], Some("unauthorized_client")),
            UnauthorizedClient
        );
        assert_eq!(
            TokenProblem::classify(&[90_002], Some("invalid_request")),
            InvalidRequest
        );
        assert_eq!(
            TokenProblem::classify(&[], Some("temporarily_unavailable")),
            Other
        );
        assert_eq!(TokenProblem::classify(&[], None), Other);
        // Several codes: the known one wins wherever it is.
        assert_eq!(
            TokenProblem::classify(&[50_000, 7_000_222], None),
            ExpiredSecret
        );
    }

    #[test]
    fn refusals_read_as_plain_words_with_the_code() {
        let wrong = TokenRefusal {
            problem: TokenProblem::WrongSecret,
            code: Some(7_000_215),
            error: Some("invalid_client".into()),
            status: 401,
        };
        assert!(wrong.words().starts_with("The client secret is wrong"));
        assert!(wrong.words().ends_with("(AADSTS7000215)"));
        let bare = TokenRefusal {
            problem: TokenProblem::Other,
            code: None,
            error: None,
            status: 400,
        };
        assert!(bare.words().ends_with("(HTTP 400)"));
    }

    #[test]
    fn read_write_implies_read_and_each_missing_permission_names_what_it_blocks() {
        let all = roles(&[
            "DeviceManagementConfiguration.ReadWrite.All",
            "Group.ReadWrite.All",
        ]);
        assert!(Permission::missing_from(&all).is_empty());
        let read_only = roles(&["DeviceManagementConfiguration.Read.All"]);
        assert_eq!(
            Permission::missing_from(&read_only),
            [Permission::ConfigurationReadWrite, Permission::GroupRead]
        );
        assert_eq!(Permission::missing_from(&[]), Permission::ALL);
        // Similar names do not count.
        let lookalikes = roles(&["DeviceManagementConfiguration.Read", "group.read.all"]);
        assert_eq!(Permission::missing_from(&lookalikes), Permission::ALL);
        assert_eq!(Permission::ConfigurationRead.blocks(), [Feature::Capture]);
        assert_eq!(Permission::GroupRead.blocks(), [Feature::Restore]);
    }

    #[test]
    fn a_feature_lacks_only_the_permissions_it_needs() {
        let capture_only = roles(&["DeviceManagementConfiguration.Read.All"]);
        assert!(Permission::missing_for(Feature::Capture, &capture_only).is_empty());
        assert_eq!(
            Permission::missing_for(Feature::Restore, &capture_only),
            [Permission::ConfigurationReadWrite, Permission::GroupRead]
        );
        // A ReadWrite permission, or a directory-wide one, grants reading groups.
        for groups in [
            "Group.Read.All",
            "Group.ReadWrite.All",
            "Directory.Read.All",
            "Directory.ReadWrite.All",
        ] {
            let granted = roles(&["DeviceManagementConfiguration.ReadWrite.All", groups]);
            assert!(
                Permission::missing_for(Feature::Restore, &granted).is_empty(),
                "{groups}"
            );
            assert!(Permission::missing_from(&granted).is_empty(), "{groups}");
        }
        let no_groups = roles(&[
            "DeviceManagementConfiguration.ReadWrite.All",
            "User.Read.All",
        ]);
        assert_eq!(
            Permission::missing_for(Feature::Restore, &no_groups),
            [Permission::GroupRead]
        );
    }

    #[test]
    fn permissions_serialize_as_their_exact_names() {
        for permission in Permission::ALL {
            assert_eq!(
                serde_json::to_string(&permission).unwrap(),
                format!("\"{}\"", permission.name())
            );
        }
    }

    #[test]
    fn outcomes_round_trip_and_only_authentication_failures_block() {
        for outcome in CheckOutcome::ALL {
            assert_eq!(CheckOutcome::parse(outcome.as_str()), Some(outcome));
            assert_eq!(outcome.blocks_runs(), outcome == CheckOutcome::AuthFailed);
        }
        assert_eq!(CheckOutcome::parse("OK"), None);
    }
}
