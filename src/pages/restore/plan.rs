//! Step 3 of the restore wizard: "Run preview (dry-run)" starts a `restore.preview` run, which
//! goes into the URL; the page polls it until it ends and shows its plan per item.

use std::collections::BTreeSet;

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;
use leptos_router::NavigateOptions;

use super::confirm::{ConfirmStep, ExecuteState, EXECUTE_RUNNING, OTHER_SOURCE};
use super::Wizard;
use crate::api::restore::{get_restore_preview, StartRestorePreview};
use crate::api::runs::run_version;
use crate::components::RunStatusBadge;
use crate::components::{
    use_poll_while, Column, DataTable, ErrorMessage, LastRead, Loading, NeedsRole, PollTrouble,
    ABSENT,
};
use crate::domain::restore::{
    policies_of, policy_count, PlanAction, PlanItem, RestorePreview, RestoreSource,
};
use crate::domain::run_detail::ItemOutcome;
use crate::domain::{routes, AppError, PolicyIds};

/// The preview run named in the URL, as the page reads it.
#[derive(Clone, Copy)]
pub struct PreviewRead {
    resource: Resource<Result<Option<RestorePreview>, AppError>>,
    /// Bumped to read it again (while it runs; the same preview started again).
    tick: RwSignal<u64>,
    /// The last answer read with its run's version (see [`use_preview`]).
    last: StoredValue<Option<(i64, String, RestorePreview)>>,
}

impl PreviewRead {
    /// Reads the preview again in full, even if its run did not move: what the preview says
    /// of its execute (why it cannot be executed now) changes when the execute, another run,
    /// ends.
    fn read_again(self) {
        self.last.set_value(None);
        self.tick.update(|t| *t += 1);
    }
}

/// Reads the preview named in the URL. Called by the page itself, never inside a `Suspend`: a
/// resource's value travels to the browser under the number of its creation, and a `Suspend`
/// the server ran twice created this resource twice (two answers in one page, the first an
/// internal error), so the browser read the abandoned one's answer and failed to hydrate.
///
/// The last answer with its run's version is kept, so a poll first asks for the version (one
/// indexed read) and reads the plan again only when the run moved.
pub fn use_preview(tenant: Memo<String>, preview_id: Memo<Option<i64>>) -> PreviewRead {
    let tick = RwSignal::new(0_u64);
    let last = StoredValue::new(None::<(i64, String, RestorePreview)>);
    let resource = Resource::new(
        move || (tenant.get(), preview_id.get(), tick.get()),
        move |(tenant, id, tick)| async move {
            let Some(id) = id else { return Ok(None) };
            // The first load (also on the server) reads the plan at once.
            if tick == 0 {
                return get_restore_preview(tenant, id).await.map(Some);
            }
            let version = run_version(tenant.clone(), id).await?;
            let unchanged = last.with_value(|last| match last {
                Some((seen, at, preview)) if *seen == id && *at == version => Some(preview.clone()),
                _ => None,
            });
            if let Some(preview) = unchanged {
                return Ok(Some(preview));
            }
            let preview = get_restore_preview(tenant, id).await?;
            last.set_value(Some((id, version, preview.clone())));
            Ok(Some(preview))
        },
    );
    PreviewRead {
        resource,
        tick,
        last,
    }
}

/// The preview button, the preview's plan, and the confirmation below it.
#[component]
pub fn PreviewStep(wizard: Wizard, read: PreviewRead, tenant_name: String) -> impl IntoView {
    let Wizard {
        tenant,
        source,
        refused,
        selected,
        ..
    } = wizard;
    let start = ServerAction::<StartRestorePreview>::new();
    let PreviewRead {
        resource: preview,
        tick,
        ..
    } = read;
    // A failed poll is tried again later, while the preview last read was active; one refused
    // for good (signed out, no longer a member, the preview gone) is not.
    let failures = use_poll_while(tick, move || {
        preview.with(|read| {
            read.as_ref().map(|read| {
                read.as_ref()
                    .map(|p| p.as_ref().is_some_and(|p| p.status.is_active()))
                    .map_err(Clone::clone)
            })
        })
    });
    // The preview last shown: a poll of the same preview that failed for a passing reason keeps
    // it (with a quiet note) until one works; another preview that fails, or a poll refused for
    // good, shows why.
    let shown = LastRead::<Option<RestorePreview>>::new();
    let shown_or = move |read: Result<Option<RestorePreview>, AppError>| {
        let now = wizard.preview_id.get_untracked();
        shown.shown(read, |shown| {
            shown
                .as_ref()
                .is_some_and(|shown| Some(shown.run_id) == now)
        })
    };
    // The preview as the browser last read it, for the parts outside the polled view (the
    // confirmation keeps what was typed), kept the same way. Effects run in the browser only,
    // so the server and the hydrating browser render the same.
    let current = RwSignal::new(None::<RestorePreview>);
    Effect::new(move |_| match preview.get() {
        Some(Ok(read)) => current.set(read),
        Some(Err(error)) => {
            let now = wizard.preview_id.get_untracked();
            let keep = !error.ends_polling()
                && current.with_untracked(|p| p.as_ref().map(|p| p.run_id)) == now;
            if !keep {
                current.set(None);
            }
        }
        None => {}
    });
    use_started_preview(wizard, start, tick);
    use_reloaded_preview(wizard, current, start);
    // An execute on its way or running holds the page at its preview until it settled.
    let execute = ExecuteState::new(wizard, current);
    let busy = execute.busy;
    use_read_again_when_executed(execute, read);
    let active = move || current.with(|p| p.as_ref().is_some_and(|p| p.status.is_active()));
    let nothing_chosen = move || selected.with(BTreeSet::is_empty);
    let described = move || {
        let mut ids = Vec::new();
        if refused.is_some() {
            ids.push("preview-needs");
        }
        if busy.get() {
            ids.push("preview-busy");
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    };
    let run_preview = move |_| {
        if start.pending().get_untracked() || busy.get_untracked() {
            return;
        }
        start.dispatch(StartRestorePreview {
            tenant: tenant.get_untracked(),
            source: source.to_param(),
            policy_ids: PolicyIds(selected.with_untracked(|s| s.iter().copied().collect())),
            include_assignments: wizard.include_assignments.get_untracked(),
            include_scope_tags: wizard.include_scope_tags.get_untracked(),
        });
    };
    view! {
        <section class="wizard-step" aria-labelledby="step-preview" data-testid="restore-preview">
            <h2 id="step-preview">"3. Preview (dry-run)"</h2>
            <div class="action-row">
                <button
                    type="button"
                    class="primary"
                    class:refused=refused.is_some()
                    data-testid="run-preview"
                    disabled=move || {
                        refused.is_some() || start.pending().get() || busy.get() || active() || nothing_chosen()
                    }
                    aria-describedby=described
                    on:click=run_preview
                >
                    {move || if start.pending().get() { "Starting the preview…" } else { "Run preview (dry-run)" }}
                </button>
                {refused.map(|reason| view! { <NeedsRole id="preview-needs" reason /> })}
                {move || busy.get().then(|| view! {
                    <p class="muted small" id="preview-busy" data-testid="preview-busy">{EXECUTE_RUNNING}</p>
                })}
                {move || (refused.is_none() && nothing_chosen()).then(|| view! {
                    <p class="muted small">"Select at least one policy to preview."</p>
                })}
            </div>
            {move || start.value().get().and_then(Result::err).map(|error| view! { <ErrorMessage error /> })}
            <Transition fallback=|| view! { <Loading what="the preview" /> }>
                {move || Suspend::new(async move {
                    match shown_or(preview.await) {
                        Ok(None) => view! {
                            <p class="muted" data-testid="no-preview">
                                "No preview yet. Choose the scope, then run the preview: it reads Intune and writes nothing."
                            </p>
                        }.into_any(),
                        Ok(Some(preview)) => view! { <PlanView preview source /> }.into_any(),
                        Err(error) => view! { <ErrorMessage error /> }.into_any(),
                    }
                })}
            </Transition>
            <PollTrouble failures />
        </section>
        <ConfirmStep wizard tenant_name current state=execute />
    }
}

/// A started preview goes into the URL, so a reload keeps it; the same run again (an identical
/// preview still running) is read again.
fn use_started_preview(
    wizard: Wizard,
    start: ServerAction<StartRestorePreview>,
    tick: RwSignal<u64>,
) {
    let go_to = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(href) = go_to.get() {
            let options = NavigateOptions {
                replace: true,
                scroll: false,
                ..Default::default()
            };
            navigate(&href, options);
        }
    });
    Effect::new(move |_| {
        let Some(Ok(run)) = start.value().get() else {
            return;
        };
        if wizard.preview_id.get_untracked() == Some(run.run_id) {
            tick.update(|t| *t += 1);
        } else {
            let tenant = wizard.tenant.get_untracked();
            go_to.set(Some(routes::restore_preview(
                &tenant,
                wizard.source,
                run.run_id,
            )));
        }
    });
}

/// Once the execute step 5 follows has ended, the preview is read again: read while the
/// execute ran (or while a cancelled one's claim still wrote), it said nothing of how it ended,
/// and now says why it cannot be executed (executed already, or stopped with no write
/// recorded), which Execute, disabled for good, shows. Once per execute; until that answer (or
/// if it fails) Execute says that the execute ended.
fn use_read_again_when_executed(execute: ExecuteState, read: PreviewRead) {
    let read_for = StoredValue::new(BTreeSet::<i64>::new());
    Effect::new(move |_| {
        let Some(run_id) = execute.ended() else {
            return;
        };
        if read_for.with_value(|done| done.contains(&run_id)) {
            return;
        }
        read_for.update_value(|done| {
            done.insert(run_id);
        });
        read.read_again();
    });
}

/// A page opened at a preview (a reload, a link from the run's page) takes the preview's scope
/// and options as its own, so the confirmation knows the preview still matches.
fn use_reloaded_preview(
    wizard: Wizard,
    current: RwSignal<Option<RestorePreview>>,
    start: ServerAction<StartRestorePreview>,
) {
    let seeded = StoredValue::new(false);
    Effect::new(move |_| {
        let Some(preview) = current.get() else { return };
        if seeded.get_value() || start.value().with_untracked(Option::is_some) {
            return;
        }
        // Another source's preview is not adopted: its items are not this page's candidates.
        if preview.source != wizard.source {
            return;
        }
        seeded.set_value(true);
        wizard
            .selected
            .set(preview.items.iter().map(|i| i.policy_id).collect());
        wizard.include_assignments.set(preview.include_assignments);
        wizard.include_scope_tags.set(preview.include_scope_tags);
    });
}

const PLAN_COLUMNS: &[Column] = &[
    Column::text("Policy"),
    Column::text("Type"),
    Column::text("Plan"),
    Column::text("What changes"),
];

/// The preview's state, its counts, what blocks the whole restore, and the plan per item.
#[component]
fn PlanView(preview: RestorePreview, source: RestoreSource) -> impl IntoView {
    let tenant = crate::pages::tenant_layout::use_tenant().get_untracked();
    let total = preview.items.len();
    let done = preview
        .items
        .iter()
        .filter(|i| i.outcome != ItemOutcome::Pending)
        .count();
    let count = |plan: PlanAction| {
        preview
            .items
            .iter()
            .filter(|i| i.plan == Some(plan))
            .count()
    };
    let failed = preview
        .items
        .iter()
        .filter(|i| i.outcome == ItemOutcome::Failed)
        .count();
    let counts = PlanAction::ALL
        .into_iter()
        .map(|plan| view! { <li data-plan=plan.as_str()>{plan.label()} ": " {count(plan)}</li> })
        .collect_view();
    let run_href = routes::run(&tenant, preview.run_id, "");
    let state = if preview.status.is_active() {
        format!(
            "Previewing… {} read.",
            policies_of(done as i64, total as i64)
        )
    } else {
        format!("Preview of {}.", policy_count(total as i64))
    };
    let block = preview.run_block.clone().map(|block| {
        view! {
            <p class="error-message run-block" role="alert" data-testid="run-block">
                "This whole restore is blocked: " {block}
            </p>
        }
    });
    let items = preview.items.clone();
    let other_source = (preview.source != source).then(|| {
        let href = routes::restore_preview(&tenant, preview.source, preview.run_id);
        view! {
            <p class="error-message" role="alert" data-testid="preview-other-source">
                {OTHER_SOURCE} " " <a href=href>"Open the preview's own page"</a>
            </p>
        }
    });
    view! {
        {other_source}
        <p role="status" data-testid="preview-status">
            <RunStatusBadge status=preview.status /> " " {state} " "
            <a href=run_href>"Preview run #" {preview.run_id}</a>
        </p>
        {block}
        <ul class="plan-counts" data-testid="plan-counts">
            {counts}
            {(failed > 0).then(|| view! { <li data-plan="failed">"Failed: " {failed}</li> })}
        </ul>
        <DataTable columns=PLAN_COLUMNS testid="plan-table" labelled_by="step-preview">
            {items.into_iter().map(|item| view! { <PlanRow tenant=tenant.clone() item /> }).collect_view()}
        </DataTable>
    }
}

/// One item of the plan: what the restore would do and why.
#[component]
fn PlanRow(tenant: String, item: PlanItem) -> impl IntoView {
    let label = match (item.outcome, item.plan) {
        (ItemOutcome::Failed, _) => "Failed",
        (_, Some(plan)) => plan.label(),
        (ItemOutcome::Pending, None) => "Waiting",
        _ => ABSENT,
    };
    let slug = label.to_lowercase().replace(' ', "-");
    let diff = match (item.plan, item.live_snapshot_id, item.backup_snapshot_id) {
        (Some(PlanAction::Update), Some(live), Some(backup)) if live != backup => {
            let href = routes::policy_diff(&tenant, item.policy_id, live, backup);
            Some(view! { " · " <a href=href data-testid="plan-diff">"View diff"</a> })
        }
        _ => None,
    };
    let what = match item.plan {
        Some(PlanAction::Update) => match item.changed_settings {
            Some(1) => "1 setting would change".to_owned(),
            Some(n) => format!("{n} settings would change"),
            None => "Would be updated".to_owned(),
        },
        Some(PlanAction::Create) => "Deleted in Intune: created anew, with a new id".to_owned(),
        Some(PlanAction::Unchanged) => "Intune already matches the backup".to_owned(),
        Some(PlanAction::Blocked) | None => String::new(),
    };
    let notes = item.notes;
    let list = |class: &'static str, testid: &'static str, lines: Vec<String>| {
        (!lines.is_empty()).then(|| {
            view! {
                <ul class=class data-testid=testid>
                    {lines.into_iter().map(|line| view! { <li>{line}</li> }).collect_view()}
                </ul>
            }
        })
    };
    let removals = (!notes.removals.is_empty()).then(|| view! {
        <p class="plan-removals" data-testid="plan-removals">"Removes: " {notes.removals.join(", ")}</p>
    });
    view! {
        <tr data-testid="plan-row" data-plan=slug.clone()>
            <td><a href=routes::policy(&tenant, item.policy_id)>{item.display_name}</a></td>
            <td>{item.policy_type.label()}</td>
            <td><span class=format!("plan plan-{slug}") data-testid="plan-action">{label}</span></td>
            <td>
                {what}
                {diff}
                {list("plan-blocked", "plan-blocked", notes.blocked)}
                {list("plan-warnings", "plan-warnings", notes.warnings)}
                {removals}
                {item.message.map(|message| view! { <p class="muted small">{message}</p> })}
            </td>
        </tr>
    }
}
