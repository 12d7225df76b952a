//! `/t/{tenant}/backup-sets`: the tenant's backup sets and the form that creates one.

use leptos::{html, prelude::*};
use leptos_meta::Title;

use super::tenant_layout::{refusal, use_tenant};
use crate::api::backup_sets::{list_backup_sets, CreateBackupSet};
use crate::components::{Column, DataTable, EmptyState, ErrorMessage, Loading, NeedsRole};
use crate::domain::backup_set::{DESCRIPTION_MAX_CHARS, NAME_MAX_CHARS};
use crate::domain::{routes, Capability};

/// The backup sets list with its create form.
#[component]
pub fn BackupSetsPage() -> impl IntoView {
    let tenant = use_tenant();
    let create = ServerAction::<CreateBackupSet>::new();
    // Refetch after every successful create.
    let sets = Resource::new(
        move || (tenant.get(), create.version().get()),
        |(tenant, _)| list_backup_sets(tenant),
    );

    view! {
        <Title text="Backup sets" />
        <h1>"Backup sets"</h1>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let refused = refusal(Capability::EditBackupSets).await;
                view! { <CreateBackupSetForm action=create tenant refused /> }
            })}
        </Transition>
        <Transition fallback=|| view! { <Loading what="backup sets" /> }>
            {move || Suspend::new(async move {
                match sets.await {
                    Ok(list) if list.sets.is_empty() => view! {
                        <EmptyState
                            title="No backup sets yet"
                            hint="Create one above, then add policies to it."
                        />
                    }.into_any(),
                    Ok(list) => {
                        // The server answers a bounded number of sets; the tenant may hold more.
                        let cut = list.is_cut().then(|| view! {
                            <p class="muted" role="status" data-testid="backup-sets-cut">
                                "Showing the newest " {list.sets.len()} " of " {list.total}
                                " backup sets."
                            </p>
                        });
                        view! {
                        {cut}
                        <DataTable columns=SET_COLUMNS testid="backup-sets">
                                {list.sets.into_iter().map(|set| {
                                    let href = routes::backup_set(&tenant.get_untracked(), set.id);
                                    view! {
                                        <tr>
                                            <td>
                                                <a href=href>{set.name}</a>
                                                <div class="muted small">{set.description}</div>
                                            </td>
                                            <td class="num">{set.item_count}</td>
                                            <td>{set.created_by}</td>
                                            <td>{set.created_at.to_string()}</td>
                                        </tr>
                                    }
                                }).collect_view()}
                        </DataTable>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

const SET_COLUMNS: &[Column] = &[
    Column::text("Name"),
    Column::number("Items"),
    Column::text("Created by"),
    Column::text("Created"),
];

/// Name and description; errors appear next to the field they concern.
#[component]
fn CreateBackupSetForm(
    action: ServerAction<CreateBackupSet>,
    tenant: Memo<String>,
    /// Set when the member's role may not create backup sets: the form is disabled and this
    /// reason stands beside its button (the server refuses them anyway).
    refused: Option<&'static str>,
) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let result = action.value();
    let error = move || result.get().and_then(Result::err);
    let name_error = move || error().and_then(|e| e.field_message("name"));
    let description_error = move || error().and_then(|e| e.field_message("description"));
    let other_error = move || {
        error().filter(|e| {
            e.field_message("name").is_none() && e.field_message("description").is_none()
        })
    };
    let created = move || result.get().and_then(Result::ok).map(|set| set.name);
    // A successful create clears the form for the next one.
    Effect::new(move |_| {
        if created().is_some() {
            if let Some(form) = form.get() {
                form.reset();
            }
        }
    });

    view! {
        <ActionForm action node_ref=form>
            <fieldset
                class="create-form"
                data-testid="create-backup-set"
                disabled=move || action.pending().get() || refused.is_some()
            >
                <legend>"New backup set"</legend>
                <input type="hidden" name="tenant" value=move || tenant.get() />
                <label for="backup-set-name">"Name"</label>
                <input
                    id="backup-set-name"
                    name="name"
                    type="text"
                    required
                    maxlength=NAME_MAX_CHARS
                    autocomplete="off"
                    aria-invalid=move || name_error().is_some().to_string()
                    aria-describedby="backup-set-name-error"
                />
                <p id="backup-set-name-error" class="field-error" role="alert">
                    {name_error}
                </p>
                <label for="backup-set-description">"Description (optional)"</label>
                <textarea
                    id="backup-set-description"
                    name="description"
                    rows="2"
                    maxlength=DESCRIPTION_MAX_CHARS
                    aria-describedby="backup-set-description-error"
                ></textarea>
                <p id="backup-set-description-error" class="field-error" role="alert">
                    {description_error}
                </p>
                <button
                    type="submit"
                    class="primary"
                    class:refused=refused.is_some()
                    aria-describedby=refused.map(|_| "create-backup-set-needs")
                >
                    {move || if action.pending().get() { "Creating…" } else { "Create backup set" }}
                </button>
                {refused.map(|reason| view! { <NeedsRole id="create-backup-set-needs" reason /> })}
                {move || other_error().map(|error| view! { <ErrorMessage error /> })}
                <p class="form-success" role="status" aria-live="polite">
                    {move || created().map(|name| format!("Created “{name}”."))}
                </p>
            </fieldset>
        </ActionForm>
    }
}
