//! What the run detail page says of a retry or a resume: which run it continues, worded from
//! that run's status (a cancelled run is resumed, any other retried).

use leptos::prelude::*;

use crate::domain::routes;
use crate::domain::RunStatus;

/// "Resumes the cancelled items of run #N" or "Retries the failed items of run #N".
#[component]
pub fn RetryOfLink(tenant: String, parent: i64, parent_status: Option<RunStatus>) -> impl IntoView {
    let words = retry_of_words(parent_status);
    let href = routes::run(&tenant, parent, "");
    view! {
        <p data-testid="retry-of">
            {words} " " <a href=href class="mono">"run #" {parent}</a>
        </p>
    }
}

/// What a run does with the items of the run it continues, by that run's status.
fn retry_of_words(parent_status: Option<RunStatus>) -> &'static str {
    match parent_status {
        Some(RunStatus::Cancelled) => "Resumes the cancelled items of",
        _ => "Retries the failed items of",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancelled_run_is_resumed_and_any_other_retried() {
        assert_eq!(
            retry_of_words(Some(RunStatus::Cancelled)),
            "Resumes the cancelled items of"
        );
        assert_eq!(
            retry_of_words(Some(RunStatus::Failed)),
            "Retries the failed items of"
        );
    }
}
