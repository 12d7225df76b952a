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

super::tenant_calls! {
    /// `members/list`: the tenant's members with their roles.
    fn members("members/list") -> Vec<Member>;
    /// `members/add`: adds `email` with `role` (as the form sends it), or invites it.
    fn add_member("members/add", email: &str, role: &str) -> AddMemberOutcome;
    /// `members/change-role`: gives member `user_id` the role `role` (as the form sends it).
    fn change_member_role("members/change-role", user_id: i64, role: &str) -> ();
    /// `members/remove`: removes member `user_id` from the tenant.
    fn remove_member("members/remove", user_id: i64) -> ();
    /// `invitations/list`: the tenant's invitations that can still be used.
    fn invitations("invitations/list") -> Vec<PendingInvitation>;
    /// `invitations/revoke`: withdraws pending invitation `id`.
    fn revoke_invitation("invitations/revoke", id: i64) -> ();
    /// `runs/retry-failed`: "Retry N failed" (or "Resume N cancelled") of run `id`.
    fn retry_failed("runs/retry-failed", id: i64) -> SubmittedRun;
    /// `runs/version`: the text run detail polls, which changes whenever run `id` does.
    fn run_version("runs/version", id: i64) -> String;
}
