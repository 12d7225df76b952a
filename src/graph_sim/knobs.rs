//! The simulator's behaviour switches, settable at start and at run time (`POST /_sim/knobs`):
//! latency, throttling, faults per policy, and how each tenant's app registration is set up.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How the simulated Graph behaves. Every field has a default, so a JSON patch may name only the
/// fields it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Knobs {
    /// Fixed delay before every Graph answer.
    pub latency_ms: u64,
    /// Extra random delay, uniform in `0..=latency_jitter_ms`.
    pub latency_jitter_ms: u64,
    /// Requests one app may make per tenant per window before getting 429; 0 disables throttling.
    pub throttle_limit: u32,
    /// The throttle's sliding window (Intune: 20 s).
    pub throttle_window_ms: u64,
    /// Writes (POST, PUT, PATCH, DELETE) one app may make per tenant per window before getting
    /// 429, besides counting against `throttle_limit`; 0 disables it. Intune's device
    /// configuration service allows 100 per 20 s
    /// (<https://learn.microsoft.com/en-us/graph/throttling-limits>).
    pub write_throttle_limit: u32,
    /// Refuse every Graph write (any method but GET and HEAD; the token endpoint is not Graph)
    /// with 403 and a body saying the simulator is read-only: proves a preview writes nothing.
    pub reject_writes: bool,
    /// Share of Graph requests answered 503 (no `Retry-After`).
    pub rate_503: f64,
    /// Share of Graph requests answered 404.
    pub rate_404: f64,
    /// Share of Graph requests answered 200 with a truncated JSON body (the client retries them).
    pub rate_malformed: f64,
    /// Share of Graph requests that never get an answer.
    pub rate_hang: f64,
    /// `expires_in` of issued tokens.
    pub token_lifetime_secs: u64,
    /// The token endpoint's throttling or outage: its next requests (after these knobs are set)
    /// are answered with this status instead of a token.
    pub token_unavailable: Option<TokenUnavailable>,
    /// Forced faults by policy Graph id; they apply to the policy and its sub-collections.
    pub faults: BTreeMap<String, Fault>,
    /// How each tenant's app registration is set up in Entra ID, by tenant id (any case); a
    /// tenant not named has a valid secret, admin consent and every permission in [`APP_ROLES`].
    pub apps: BTreeMap<String, AppSetup>,
}

/// The token endpoint answering `status` (429 or 503, with `Retry-After` when
/// `retry_after_secs` is set) to its next `times` requests, as Entra ID throttles or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenUnavailable {
    pub status: u16,
    pub times: u32,
    #[serde(default)]
    pub retry_after_secs: Option<u64>,
}

/// The application permissions a simulated app holds unless its [`AppSetup`] takes some away:
/// every permission TenantAtlas uses.
pub const APP_ROLES: [&str; 3] = [
    "DeviceManagementConfiguration.Read.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "Group.Read.All",
];

/// A tenant's app registration, as the connection check meets it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSetup {
    /// Application permissions the app lacks: left out of its new tokens' `roles` claim. Graph
    /// refuses (403) the policy collections when neither policy read permission is left.
    pub missing_roles: Vec<String>,
    /// Collections (`deviceCompliancePolicies`, `groups`, `roleScopeTags`, …) Graph refuses (403) to the app
    /// whatever its roles, as a scoped or partial grant would.
    pub forbidden_collections: Vec<String>,
    /// Nobody granted admin consent: tokens carry no `roles` claim, so Graph refuses every
    /// policy collection.
    pub no_consent: bool,
    /// The token endpoint refuses the app this way, whatever secret it sends.
    pub token_error: Option<TokenFault>,
    /// Text the token endpoint adds to every refusal's `error_description`, as a proxy or a
    /// verbose identity provider that echoes what it was sent might: tests plant secrets here
    /// to prove they never reach a page, a notification or a log.
    pub token_error_detail: Option<String>,
}

impl AppSetup {
    /// The `roles` claim of the tokens the app gets now.
    pub fn roles(&self) -> Vec<String> {
        if self.no_consent {
            return Vec::new();
        }
        APP_ROLES
            .iter()
            .filter(|role| !self.missing_roles.iter().any(|missing| missing == *role))
            .map(|role| (*role).to_owned())
            .collect()
    }
}

/// A refusal of the token endpoint, with the AADSTS code Entra ID sends for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenFault {
    /// AADSTS7000215 (401 `invalid_client`): the secret is not the app's.
    WrongSecret,
    /// AADSTS7000222 (401 `invalid_client`): the secret has expired.
    ExpiredSecret,
    /// AADSTS700016 (400 `unauthorized_client`): no such app in the tenant, or not consented.
    AppNotFound,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            latency_jitter_ms: 0,
            throttle_limit: 1_000,
            throttle_window_ms: 20_000,
            write_throttle_limit: 100,
            reject_writes: false,
            rate_503: 0.0,
            rate_404: 0.0,
            rate_malformed: 0.0,
            rate_hang: 0.0,
            token_lifetime_secs: 3_599,
            token_unavailable: None,
            faults: BTreeMap::new(),
            apps: BTreeMap::new(),
        }
    }
}

/// A fault forced on every request that touches one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 404, as if the policy was deleted in Intune.
    NotFound,
    /// 403, as if the app lacked the permission.
    Forbidden,
    /// 401, whatever the token.
    Unauthorized,
    /// 500 with a Graph error body.
    ServerError,
    /// 500 whose body echoes the caller's bearer token and a client secret (sanitizer tests).
    LeakySecrets,
    /// 200 with a truncated JSON body, every time.
    Malformed,
    /// The first `times` requests get 200 with a truncated JSON body, then normal answers (a
    /// transfer cut short that a second attempt gets whole).
    Truncated { times: u32 },
    /// No answer at all.
    Hang,
    /// The first `times` requests get 429 with `Retry-After: retry_after_secs`, then normal answers.
    Throttle { times: u32, retry_after_secs: u64 },
    /// Every request gets 429 without `Retry-After` until `millis` have passed since the first
    /// of them, then normal answers (as Intune may throttle for its 20-second window).
    ThrottleWithoutRetryAfter { millis: u64 },
    /// The first `times` requests get 503 without `Retry-After`, then normal answers.
    Unavailable { times: u32 },
    /// Every write to the policy is answered `status` with an empty body, whatever Graph
    /// documents for it; reads are answered as usual (a client must refuse an unexpected
    /// success status).
    WriteAnswers { status: u16 },
}

impl Knobs {
    /// The app registration of tenant `tenant_id` (matched in any case).
    pub fn app(&self, tenant_id: &str) -> AppSetup {
        self.apps
            .iter()
            .find(|(tenant, _)| tenant.eq_ignore_ascii_case(tenant_id))
            .map(|(_, app)| app.clone())
            .unwrap_or_default()
    }

    /// Applies a JSON object of changed fields; unknown fields or bad values are an error and
    /// leave the knobs unchanged.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(changes) = patch else {
            return Err("the knobs patch must be a JSON object".into());
        };
        let mut current = serde_json::to_value(self).map_err(|e| e.to_string())?;
        if let serde_json::Value::Object(fields) = &mut current {
            for (key, value) in changes {
                if !fields.contains_key(key) {
                    return Err(format!("unknown knob `{key}`"));
                }
                fields.insert(key.clone(), value.clone());
            }
        }
        serde_json::from_value(current).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_patch_changes_only_the_named_knobs() {
        let knobs = Knobs::default()
            .patched(&json!({"latency_ms": 100, "faults": {"p1": {"kind": "throttle", "times": 1, "retry_after_secs": 2}}}))
            .expect("valid patch");
        assert_eq!(knobs.latency_ms, 100);
        assert_eq!(knobs.throttle_limit, 1_000);
        assert_eq!(
            knobs.faults.get("p1"),
            Some(&Fault::Throttle {
                times: 1,
                retry_after_secs: 2
            })
        );
    }

    #[test]
    fn an_app_setup_takes_permissions_away_by_tenant() {
        let knobs = Knobs::default()
            .patched(&json!({"apps": {"6F1C2A3B-0000-4000-8000-00000000C0DE": {
                "missing_roles": ["Group.Read.All"],
                "token_error": "expired_secret"
            }}}))
            .expect("valid patch");
        let app = knobs.app("6f1c2a3b-0000-4000-8000-00000000c0de");
        assert_eq!(
            app.roles(),
            [
                "DeviceManagementConfiguration.Read.All",
                "DeviceManagementConfiguration.ReadWrite.All"
            ]
        );
        assert_eq!(app.token_error, Some(TokenFault::ExpiredSecret));
        assert_eq!(knobs.app("another").roles(), APP_ROLES);
        let no_consent = AppSetup {
            no_consent: true,
            ..AppSetup::default()
        };
        assert!(no_consent.roles().is_empty());
        assert!(Knobs::default()
            .patched(&json!({"apps": {"t": {"missing_role": []}}}))
            .is_err());
    }

    #[test]
    fn unknown_knobs_and_bad_values_are_rejected() {
        assert!(Knobs::default().patched(&json!({"latency": 1})).is_err());
        assert!(Knobs::default()
            .patched(&json!({"latency_ms": "slow"}))
            .is_err());
        assert!(Knobs::default().patched(&json!([1])).is_err());
    }
}
