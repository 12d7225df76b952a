//! `/t/{tenant}/restore/new?source=set-N|version-N[&preview=RUN]`: the restore wizard, one page
//! in steps: the source, the scope, the preview (dry-run), the confirmation and the execution.
//! The source and the preview are in the URL, so a reload keeps the preview; the server checks
//! every gate again, the disabled Execute is a courtesy.

mod confirm;
mod plan;
mod scope;

use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::query_number;
use super::tenant_layout::{refusal, use_tenant};
use crate::api::restore::get_restore_source;
use crate::components::{or_absent, ErrorMessage, Loading};
use crate::domain::restore::{RestoreSource, RestoreSourceView};
use crate::domain::{routes, Capability};

/// What the wizard's steps share: the choice so far and whether the member may restore.
#[derive(Clone, Copy)]
pub struct Wizard {
    pub tenant: Memo<String>,
    pub source: RestoreSource,
    /// The chosen policies (ids).
    pub selected: RwSignal<BTreeSet<i64>>,
    pub include_assignments: RwSignal<bool>,
    pub include_scope_tags: RwSignal<bool>,
    /// "Needs manager or owner" for members who may not preview or execute; `None` otherwise.
    pub refused: Option<&'static str>,
    /// The preview run named in the URL.
    pub preview_id: Memo<Option<i64>>,
}

/// The wizard page: loads the source, then shows the steps.
#[component]
pub fn RestorePage() -> impl IntoView {
    let tenant = use_tenant();
    let query = use_query_map();
    let source_param = Memo::new(move |_| query.read().get("source").unwrap_or_default());
    // `&preview=RUN` once a preview was started; one that names no run is refused (422).
    let preview_param = query_number(
        "preview",
        0,
        |id| (id > 0).then_some(id),
        "Not a restore preview: start the preview again from this page without it.",
    );
    let preview_id = Memo::new(move |_| preview_param.get().ok().filter(|id| *id > 0));
    let source = Resource::new(
        move || (tenant.get(), source_param.get()),
        |(tenant, source)| get_restore_source(tenant, source),
    );
    let preview = plan::use_preview(tenant, preview_id);
    view! {
        <Title text="Restore" />
        <p class="breadcrumb">
            <a href=move || routes::backup_sets(&tenant.get())>"← Backup sets"</a>
        </p>
        <h1>"Restore"</h1>
        <p class="muted">
            "A restore is previewed first (a dry-run that writes nothing); only a reviewed, current preview can be executed."
        </p>
        <Transition fallback=|| view! { <Loading what="the restore source" /> }>
            {move || Suspend::new(async move {
                let refused = refusal(Capability::Restore).await;
                // Untracked: a preview started here changes the URL, and must not rebuild the steps.
                match (source.await, preview_param.get_untracked()) {
                    (Ok(view), Ok(_)) => view! { <Steps tenant view refused preview_id preview /> }.into_any(),
                    (Err(error), _) | (_, Err(error)) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// The steps, once the source is known. A single version pre-selects its policy.
#[component]
fn Steps(
    tenant: Memo<String>,
    view: RestoreSourceView,
    refused: Option<&'static str>,
    preview_id: Memo<Option<i64>>,
    preview: plan::PreviewRead,
) -> impl IntoView {
    let initial: BTreeSet<i64> = match view.source {
        RestoreSource::Version(_) => view.candidates.iter().map(|c| c.policy_id).collect(),
        RestoreSource::BackupSet(_) => BTreeSet::new(),
    };
    let wizard = Wizard {
        tenant,
        source: view.source,
        selected: RwSignal::new(initial),
        include_assignments: RwSignal::new(true),
        include_scope_tags: RwSignal::new(false),
        refused,
        preview_id,
    };
    let tenant_name = view.tenant_name.clone();
    let candidates = view.candidates.clone();
    view! {
        <SourceSummary view />
        <scope::ScopeStep wizard candidates />
        <plan::PreviewStep wizard read=preview tenant_name />
    }
}

/// Step 1: what is restored from, read-only.
#[component]
fn SourceSummary(view: RestoreSourceView) -> impl IntoView {
    let kind = match view.source {
        RestoreSource::BackupSet(_) => "Backup set",
        RestoreSource::Version(_) => "One version of the policy",
    };
    let captured = match (view.oldest_capture, view.newest_capture) {
        (Some(oldest), Some(newest)) if oldest == newest => oldest.to_string(),
        (Some(oldest), Some(newest)) => format!("{oldest} – {newest}"),
        _ => or_absent(None::<String>),
    };
    view! {
        <section class="wizard-step" aria-labelledby="step-source" data-testid="restore-source">
            <h2 id="step-source">"1. Source"</h2>
            <dl class="facts">
                <dt>{kind}</dt>
                <dd data-testid="source-title">{view.title}</dd>
                <dt>"Tenant"</dt>
                <dd data-testid="source-tenant">{view.tenant_name}</dd>
                <dt>"Captured"</dt>
                <dd>{captured}</dd>
                <dt>"Policies"</dt>
                <dd data-testid="source-counts">
                    {view.candidates.len()}
                    {(!view.counts.is_empty()).then(|| {
                        let parts: Vec<String> = view
                            .counts
                            .iter()
                            .map(|c| format!("{} {}", c.count, c.policy_type.label()))
                            .collect();
                        format!(" ({})", parts.join(", "))
                    })}
                </dd>
            </dl>
        </section>
    }
}
