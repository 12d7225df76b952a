//! Typed server-function calls for the restore tests (see `super`).

use tenantatlas::domain::restore::{RestorePreview, RestoreSource};
use tenantatlas::domain::run::CancelledRun;
use tenantatlas::domain::SubmittedRun;

use super::{Answer, Form, TestApp};

impl TestApp {
    /// `runs/restore-preview`: starts a preview of restoring `ids` from `source`, with `extra` options.
    pub async fn start_restore_preview(
        &self,
        cookie: &str,
        tenant: &str,
        source: RestoreSource,
        ids: &[i64],
        extra: &[(&str, &str)],
    ) -> Answer<SubmittedRun> {
        let form = Form::tenant(tenant)
            .field("source", source.to_param())
            .fields(extra)
            .list("policy_ids", ids);
        self.answer(Some(cookie), "runs/restore-preview", &form)
            .await
    }

    /// `runs/restore-execute`: executes preview run `preview`, with the two confirmations.
    pub async fn execute_restore(
        &self,
        cookie: &str,
        tenant: &str,
        preview: i64,
        reviewed: bool,
        tenant_name: &str,
    ) -> Answer<SubmittedRun> {
        let form = Form::tenant(tenant)
            .field("preview_run_id", preview)
            .field("reviewed", reviewed)
            .field("tenant_name", tenant_name);
        self.answer(Some(cookie), "runs/restore-execute", &form)
            .await
    }
}

super::tenant_calls! {
    /// `restore/preview`: preview run `run_id`'s plan, and whether it can be executed now.
    fn restore_preview("restore/preview", run_id: i64) -> RestorePreview;
    /// `runs/cancel`: cancels run `id`.
    fn cancel_run("runs/cancel", id: i64) -> CancelledRun;
}
