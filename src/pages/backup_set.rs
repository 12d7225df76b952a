//! `/t/{tenant}/backup-sets/{id}`: one backup set, its items, its runs, and the policy picker.

use leptos::prelude::*;
use leptos_meta::Title;

use super::policy::id_param;
use super::tenant_layout::{refusal, use_tenant};
use crate::api::backup_sets::get_backup_set;
use crate::api::captures::check_drift;
use crate::api::runs::AddPolicies;
use crate::components::{
    or_absent, provide_toasts, Column, DataTable, EmptyState, ErrorMessage, Loading, NeedsRole,
    PolicyPicker, RunPanel, RunStarter, Toasts,
};
use crate::domain::restore::RestoreSource;
use crate::domain::run::OperationType;
use crate::domain::{routes, AppError, BackupSetDetail, BackupSetSummary, Capability};

/// A backup set with its captured policies, its run panel and the **Add policies** picker.
#[component]
pub fn BackupSetPage() -> impl IntoView {
    let tenant = use_tenant();
    let id = id_param("id");
    let toasts = provide_toasts();
    let add = ServerAction::<AddPolicies>::new();
    // Bumped by the run panel when a run ends: the items list reloads.
    let finished = RwSignal::new(0_u64);
    let picker_open = RwSignal::new(false);
    // The run last submitted here (the run panel announces it even if it ended before the
    // panel saw it), and how many drift checks were started or ended here (the run panel
    // reads the set's runs again, so it lists them).
    let submitted = RwSignal::new(None::<i64>);
    let drift_done = RwSignal::new(0_usize);
    let detail = Resource::new(
        move || (tenant.get(), id.get(), finished.get()),
        |(tenant, id, _)| async move {
            match id {
                Some(id) => get_backup_set(tenant, id).await,
                None => Err(AppError::NotFound(
                    "This backup set does not exist in this tenant.".into(),
                )),
            }
        },
    );

    // A submitted run: say so with a link to it, and close the picker.
    Effect::new(move |_| {
        if let Some(Ok(run)) = add.value().get() {
            let text = if run.reused {
                "Already running — showing the existing run".to_owned()
            } else if run.total == 1 {
                "Queued: 1 policy".to_owned()
            } else {
                format!("Queued: {} policies", run.total)
            };
            let href = routes::run(&tenant.get_untracked(), run.run_id, "");
            toasts.push(text, Some(href));
            submitted.set(Some(run.run_id));
            picker_open.set(false);
        }
    });

    view! {
        <Title text="Backup set" />
        <p class="breadcrumb">
            <a href=move || routes::backup_sets(&tenant.get())>"← Backup sets"</a>
        </p>
        <Toasts />
        <Transition fallback=|| view! { <Loading what="the backup set" /> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) => view! {
                        <SetFacts tenant=tenant.get_untracked() set=detail.set />
                    }.into_any(),
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
        {move || id.get().map(|set_id| {
            let drift = Action::new(move |_: &()| check_drift(tenant.get_untracked(), set_id));
            // A submit or a drift check started or ended here: the panel reads its runs again.
            let refresh = Signal::derive(move || {
                add.version().get() + drift.version().get() + drift_done.get()
            });
            view! {
                <AddPoliciesControl tenant set_id add open=picker_open />
                <RunPanel
                    tenant
                    backup_set_id=set_id
                    refresh
                    submitted
                    finished
                    reported_elsewhere=OperationType::DriftCheck
                />
                <h2>"Drift"</h2>
                <RunStarter
                    tenant
                    operation=OperationType::DriftCheck
                    target_id=set_id
                    label="Compare with Intune"
                    last_label="Last drift check"
                    testid="drift-check"
                    start=drift
                    on_done=move |_| drift_done.update(|n| *n += 1)
                />
            }
        })}
        <h2>"Policies in this set"</h2>
        <SetItems tenant detail />
    }
}

/// The **Add policies** button (disabled, with the role it needs, for a user who may not start
/// runs) and the policy picker it opens for the set `set_id`.
#[component]
fn AddPoliciesControl(
    tenant: Memo<String>,
    set_id: i64,
    add: ServerAction<AddPolicies>,
    open: RwSignal<bool>,
) -> impl IntoView {
    let open_picker = move |_| {
        add.value().set(None);
        open.set(true);
    };
    let close_picker = Callback::new(move |()| open.set(false));
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let refused = refusal(Capability::StartRuns).await;
                view! {
                    <div class="action-row">
                        <button
                            type="button"
                            class="primary"
                            class:refused=refused.is_some()
                            data-testid="open-picker"
                            disabled=refused.is_some()
                            aria-describedby=refused.map(|_| "add-policies-needs")
                            aria-expanded=move || open.get().to_string()
                            on:click=open_picker
                        >
                            "Add policies"
                        </button>
                        {refused.map(|reason| view! { <NeedsRole id="add-policies-needs" reason /> })}
                    </div>
                    <Show when=move || open.get() && refused.is_none()>
                        <PolicyPicker
                            tenant
                            backup_set_id=set_id
                            action=add
                            on_close=close_picker
                        />
                    </Show>
                }
            })}
        </Transition>
    }
}

/// The policies captured in the set, each linking to its policy, or that there are none yet.
#[component]
fn SetItems(
    tenant: Memo<String>,
    detail: Resource<Result<BackupSetDetail, AppError>>,
) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <Loading what="the policies" /> }>
            {move || Suspend::new(async move {
                match detail.await {
                    Ok(detail) if detail.items.is_empty() => view! {
                        <EmptyState
                            title="No policies in this set yet"
                            hint="Policies you add are captured from Microsoft Graph and listed here."
                        />
                    }.into_any(),
                    Ok(detail) => {
                        // The server answers a bounded number of items; the set may hold more.
                        let (shown, held) = (detail.items.len(), detail.set.item_count);
                        let cut = (i64::try_from(shown).unwrap_or(i64::MAX) < held).then(|| view! {
                            <p class="muted" role="status" data-testid="items-cut">
                                "Showing the first " {shown} " of " {held}
                                " policies, by name. The set's download holds them all."
                            </p>
                        });
                        view! {
                        {cut}
                        <DataTable columns=ITEM_COLUMNS testid="backup-items">
                                {detail.items.into_iter().map(|item| view! {
                                    <tr>
                                        <td>
                                            <a href=routes::policy(&tenant.get_untracked(), item.policy_id)>{item.policy_name}</a>
                                        </td>
                                        <td>{item.policy_type.label()}</td>
                                        <td>{item.platform}</td>
                                        <td>{item.captured_at.to_string()}</td>
                                    </tr>
                                }).collect_view()}
                        </DataTable>
                        }.into_any()
                    }
                    // The error is already shown at the top of the page.
                    Err(_) => ().into_any(),
                }
            })}
        </Transition>
    }
}

/// The set's name, description and facts, with its download and restore links.
#[component]
fn SetFacts(tenant: String, set: BackupSetSummary) -> impl IntoView {
    let export = routes::backup_set_export(&tenant, set.id);
    let restore = routes::restore_new(&tenant, RestoreSource::BackupSet(set.id));
    view! {
        <h1 data-testid="backup-set-name">{set.name}</h1>
        <p class="muted">{set.description}</p>
        <dl class="facts">
            <dt>"Items"</dt>
            <dd data-testid="item-count">{set.item_count}</dd>
            <dt>"Created"</dt>
            <dd>{set.created_at.to_string()}</dd>
            <dt>"Created by"</dt>
            <dd>{or_absent(Some(set.created_by).filter(|name| !name.is_empty()))}</dd>
        </dl>
        // `download` and `rel="external"`: the browser fetches the file, the router does not
        // try to render it as a page.
        <p class="action-row">
            <a href=export download rel="external" data-testid="download-zip">
                "Download (ZIP)"
            </a>
            <a href=restore data-testid="restore-set">"Restore…"</a>
        </p>
    }
}

const ITEM_COLUMNS: &[Column] = &[
    Column::text("Policy"),
    Column::text("Type"),
    Column::text("Platform"),
    Column::text("Captured"),
];
