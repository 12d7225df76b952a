//! Typed server-function calls for the members tests (see `super`).

use reqwest::StatusCode;
use tenantatlas::domain::audit::AuditPage;
use tenantatlas::domain::{
    AddMemberOutcome, CurrentUser, InvitationPreview, Member, PendingInvitation, SubmittedRun,
};

use super::{Answer, Form, Refusal, TestApp};

impl TestApp {
    /// `auth/me`: the signed-in user and their tenants.
    pub async fn current_user(&self, cookie: &str) -> Answer<CurrentUser> {
        self.answer(Some(cookie), "auth/me", &Form::default()).await
    }

    /// `members/list`: the tenant's members with their roles.
    pub async fn members(&self, cookie: &str, tenant: &str) -> Answer<Vec<Member>> {
        self.answer(Some(cookie), "members/list", &Form::tenant(tenant))
            .await
    }

    /// `members/add`: adds `email` with `role` (as the form sends it), or invites it.
    pub async fn add_member(
        &self,
        cookie: &str,
        tenant: &str,
        email: &str,
        role: &str,
    ) -> Answer<AddMemberOutcome> {
        let form = Form::tenant(tenant)
            .field("email", email)
            .field("role", role);
        self.answer(Some(cookie), "members/add", &form).await
    }

    /// `members/change-role`: gives member `user_id` the role `role` (as the form sends it).
    pub async fn change_member_role(
        &self,
        cookie: &str,
        tenant: &str,
        user_id: i64,
        role: &str,
    ) -> Answer<()> {
        let form = Form::tenant(tenant)
            .field("user_id", user_id)
            .field("role", role);
        self.answer(Some(cookie), "members/change-role", &form)
            .await
    }

    /// `members/remove`: removes member `user_id` from the tenant.
    pub async fn remove_member(&self, cookie: &str, tenant: &str, user_id: i64) -> Answer<()> {
        let form = Form::tenant(tenant).field("user_id", user_id);
        self.answer(Some(cookie), "members/remove", &form).await
    }

    /// `audit/list`: one page of the tenant's audit log, with `filters` (action, actor, before).
    pub async fn audit_log(
        &self,
        cookie: &str,
        tenant: &str,
        filters: &[(&str, &str)],
    ) -> Answer<AuditPage> {
        let form = Form::tenant(tenant).fields(filters);
        self.answer(Some(cookie), "audit/list", &form).await
    }

    /// `invitations/list`: the tenant's invitations that can still be used.
    pub async fn invitations(&self, cookie: &str, tenant: &str) -> Answer<Vec<PendingInvitation>> {
        self.answer(Some(cookie), "invitations/list", &Form::tenant(tenant))
            .await
    }

    /// `invitations/revoke`: withdraws pending invitation `id`.
    pub async fn revoke_invitation(&self, cookie: &str, tenant: &str, id: i64) -> Answer<()> {
        let form = Form::tenant(tenant).field("id", id);
        self.answer(Some(cookie), "invitations/revoke", &form).await
    }

    /// `invitations/preview`: what invitation `token` is for, asked without an account.
    pub async fn invitation_preview(&self, token: &str) -> Answer<InvitationPreview> {
        let form = Form::default().field("token", token);
        self.answer(None, "invitations/preview", &form).await
    }

    /// `invitations/accept`: accepts invitation `token` as a new account; the answer (the page
    /// the browser goes to next) and the session cookie it set, if any.
    pub async fn accept_invitation(
        &self,
        token: &str,
        name: &str,
        password: &str,
    ) -> (Answer<String>, Option<String>) {
        let form = Form::default()
            .field("token", token)
            .field("name", name)
            .field("password", password);
        let response = self
            .request(None, "invitations/accept", &form.pairs())
            .send()
            .await
            .expect("server function request");
        let cookie = super::super::session_cookie(&response);
        let status = response.status();
        let body = response.text().await.expect("an answer");
        let answer = if status == StatusCode::OK {
            Ok(serde_json::from_str(&body)
                .unwrap_or_else(|error| panic!("invitations/accept answered {body}: {error}")))
        } else {
            Err(Refusal { status, body })
        };
        (answer, cookie)
    }

    // Run control

    // `runs/cancel` is `cancel_run`, in `restore.rs`.

    /// `runs/retry-failed`: "Retry N failed" (or "Resume N cancelled") of run `id`.
    pub async fn retry_failed(&self, cookie: &str, tenant: &str, id: i64) -> Answer<SubmittedRun> {
        let form = Form::tenant(tenant).field("id", id);
        self.answer(Some(cookie), "runs/retry-failed", &form).await
    }

    /// `runs/version`: the text run detail polls, which changes whenever run `id` does.
    pub async fn run_version(&self, cookie: &str, tenant: &str, id: i64) -> Answer<String> {
        let form = Form::tenant(tenant).field("id", id);
        self.answer(Some(cookie), "runs/version", &form).await
    }

    /// `runs/for-backup-set/version`: the text the run panel of backup set `set` polls.
    pub async fn backup_set_runs_version(
        &self,
        cookie: &str,
        tenant: &str,
        set: i64,
    ) -> Answer<String> {
        let form = Form::tenant(tenant).field("backup_set_id", set);
        self.answer(Some(cookie), "runs/for-backup-set/version", &form)
            .await
    }
}
