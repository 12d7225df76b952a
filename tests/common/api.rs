//! The server functions the tests call most, one typed method each: a test reads the answer as
//! the domain type the page gets (`RunDetail`, `PolicyPage`, …), not as JSON it indexes into.
//! A refusal comes back as its status and body, so a test can check both.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use tenantatlas::domain::backup_set::BackupSetList;
use tenantatlas::domain::policy_page::{MatchingPolicies, PolicyPage};
use tenantatlas::domain::run_detail::RunDetail;
use tenantatlas::domain::versions::RunActivity;
use tenantatlas::domain::{
    AppError, BackupSetDetail, BackupSetSummary, NotificationList, RunSummary, RunsPage,
    SubmittedRun,
};

use super::TestApp;

/// Typed calls of tenant server functions whose form is the tenant and the arguments, each sent
/// as the field of its own name: `fn name("endpoint", arg: Type, …) -> T;` becomes
/// `TestApp::name(&self, cookie, tenant, arg, …) -> Answer<T>`.
macro_rules! tenant_calls {
    ($($(#[$doc:meta])* fn $name:ident($endpoint:literal $(, $arg:ident: $ty:ty)*) -> $answer:ty;)*) => {
        impl TestApp {
            $(
                $(#[$doc])*
                pub async fn $name(
                    &self,
                    cookie: &str,
                    tenant: &str,
                    $($arg: $ty),*
                ) -> Answer<$answer> {
                    let form = Form::tenant(tenant)$(.field(stringify!($arg), $arg))*;
                    self.answer(Some(cookie), $endpoint, &form).await
                }
            )*
        }
    };
}
pub(crate) use tenant_calls;

mod members;
mod restore;
mod tenants;
mod versions;

/// A server function's answer: the typed value on 200, else what the server refused with.
pub type Answer<T> = Result<T, Refusal>;

/// A server function's answer other than 200.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    /// The body as text (an error's JSON, which a test may search for a leak).
    pub body: String,
}

impl Refusal {
    /// The error the server function answered with.
    pub fn error(&self) -> AppError {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|error| panic!("not an AppError ({error}): {}", self.body))
    }
}

/// A form as the browser encodes it, lists of ids included (`policy_ids=3,9,12`, see
/// `domain::PolicyIds`): the one place that spells that encoding.
#[derive(Debug, Clone, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// A form with the `tenant` field, which every tenant's server function takes.
    pub fn tenant(tenant: &str) -> Self {
        Self::default().field("tenant", tenant)
    }

    /// Adds one field.
    pub fn field(mut self, name: &str, value: impl ToString) -> Self {
        self.0.push((name.to_owned(), value.to_string()));
        self
    }

    /// Adds fields as given (filters, paging).
    pub fn fields(mut self, fields: &[(&str, &str)]) -> Self {
        self.0
            .extend(fields.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Adds a list of ids as one field, the ids separated by commas.
    pub fn list(self, name: &str, values: &[i64]) -> Self {
        self.field(name, tenantatlas::domain::PolicyIds(values.to_vec()))
    }

    /// The fields as [`TestApp::call_as`] takes them.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.0
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }
}

impl TestApp {
    /// Calls a server function with `form` (as `cookie`, or anonymously) and reads its answer.
    pub async fn answer<T: DeserializeOwned>(
        &self,
        cookie: Option<&str>,
        endpoint: &str,
        form: &Form,
    ) -> Answer<T> {
        let response = self
            .request(cookie, endpoint, &form.pairs())
            .send()
            .await
            .expect("server function request");
        let status = response.status();
        let body = response.text().await.expect("an answer");
        if status != StatusCode::OK {
            return Err(Refusal { status, body });
        }
        Ok(serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("{endpoint} answered {body}: {error}")))
    }

    /// `runs/add-policies`: "Add selected" of `ids` to backup set `set`, with `extra` fields
    /// (the options).
    pub async fn add_policies(
        &self,
        cookie: &str,
        tenant: &str,
        set: i64,
        ids: &[i64],
        extra: &[(&str, &str)],
    ) -> Answer<SubmittedRun> {
        let form = Form::tenant(tenant)
            .field("backup_set_id", set)
            .fields(extra)
            .list("policy_ids", ids);
        self.answer(Some(cookie), "runs/add-policies", &form).await
    }

    /// `policies/list`: the picker's page of the inventory for backup set `set`, filtered by
    /// `filters`.
    pub async fn policies_list(
        &self,
        cookie: &str,
        tenant: &str,
        set: i64,
        filters: &[(&str, &str)],
    ) -> Answer<PolicyPage> {
        let form = Form::tenant(tenant)
            .field("backup_set_id", set)
            .fields(filters);
        self.answer(Some(cookie), "policies/list", &form).await
    }

    /// `policies/matching-ids`: the picker's "select all N matching".
    pub async fn matching_ids(
        &self,
        cookie: &str,
        tenant: &str,
        set: i64,
        filters: &[(&str, &str)],
    ) -> Answer<MatchingPolicies> {
        let form = Form::tenant(tenant)
            .field("backup_set_id", set)
            .fields(filters);
        self.answer(Some(cookie), "policies/matching-ids", &form)
            .await
    }

    /// `runs/list`: the Runs page's runs, newest first, with `filters` (status, type, before).
    pub async fn runs_list(
        &self,
        cookie: Option<&str>,
        tenant: &str,
        filters: &[(&str, &str)],
    ) -> Answer<RunsPage> {
        let form = Form::tenant(tenant).fields(filters);
        self.answer(cookie, "runs/list", &form).await
    }

    /// `runs/get`: run `id` with one page of its items (`extra`: outcome, offset, limit).
    pub async fn run_detail(
        &self,
        cookie: Option<&str>,
        tenant: &str,
        id: i64,
        extra: &[(&str, &str)],
    ) -> Answer<RunDetail> {
        let form = Form::tenant(tenant).field("id", id).fields(extra);
        self.answer(cookie, "runs/get", &form).await
    }

    /// `runs/activity`: the active and the last run of `operation` on `target` (0: the
    /// tenant), as the pages beside a run's start button read them.
    pub async fn run_activity(
        &self,
        cookie: &str,
        tenant: &str,
        operation: &str,
        target: i64,
    ) -> Answer<RunActivity> {
        let form = Form::tenant(tenant)
            .field("operation", operation)
            .field("target_id", target);
        self.answer(Some(cookie), "runs/activity", &form).await
    }

    /// `notifications/list`: the newest page of the caller's notifications in `tenant`.
    pub async fn notifications(
        &self,
        cookie: Option<&str>,
        tenant: &str,
    ) -> Answer<NotificationList> {
        self.answer(cookie, "notifications/list", &Form::tenant(tenant))
            .await
    }

    /// `runs/for-backup-set`: the runs of backup set `set`, newest first.
    pub async fn backup_set_runs(
        &self,
        cookie: &str,
        tenant: &str,
        set: i64,
    ) -> Answer<Vec<RunSummary>> {
        let form = Form::tenant(tenant).field("backup_set_id", set);
        self.answer(Some(cookie), "runs/for-backup-set", &form)
            .await
    }
}

tenant_calls! {
    /// `backup-sets/create`: a new backup set in `tenant`.
    fn create_backup_set("backup-sets/create", name: &str, description: &str) -> BackupSetSummary;
    /// `backup-sets/list`: the tenant's newest backup sets and how many it holds.
    fn backup_sets("backup-sets/list") -> BackupSetList;
    /// `backup-sets/get`: backup set `id` with its items.
    fn backup_set_detail("backup-sets/get", id: i64) -> BackupSetDetail;
}
