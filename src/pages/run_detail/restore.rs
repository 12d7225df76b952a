//! What the run detail page adds for a restore run: the way back to the wizard (a preview) or
//! to the preview it executed, and each item's action.

use leptos::prelude::*;

use crate::domain::routes;
use crate::domain::run_detail::{ItemOutcome, RestoreItemResult, RestoreRun};

/// "Open this preview in the restore wizard", or "Executes the preview run #N".
#[component]
pub fn RestoreRunLink(tenant: String, run_id: i64, restore: RestoreRun) -> impl IntoView {
    match restore {
        RestoreRun::Preview { source } => {
            let href = routes::restore_preview(&tenant, source, run_id);
            view! {
                <p data-testid="restore-wizard-link">
                    <a href=href>"Open this preview in the restore wizard"</a>
                </p>
            }
            .into_any()
        }
        RestoreRun::Execute { preview_run_id } => {
            let href = routes::run(&tenant, preview_run_id, "");
            view! {
                <p data-testid="restore-preview-link">
                    "Executes the preview " <a href=href class="mono">"run #" {preview_run_id}</a>
                </p>
            }
            .into_any()
        }
    }
}

/// A restore item's action cell: Created (with the new Graph id) / Updated / Unchanged /
/// Failed for an execute, the plan for a preview.
#[component]
pub fn RestoreActionCell(
    outcome: ItemOutcome,
    restore: Option<RestoreItemResult>,
) -> impl IntoView {
    let label = restore.as_ref().and_then(|r| r.label(outcome)).or(
        // An item that failed before the restore recorded anything for it.
        (outcome == ItemOutcome::Failed).then_some("Failed"),
    );
    let class = format!(
        "restore-action restore-action-{}",
        label.unwrap_or("none").to_lowercase().replace(' ', "-")
    );
    let created = restore.and_then(|r| r.created_graph_id).map(|id| {
        view! {
            <span class="muted small" data-testid="created-graph-id">
                " new id " <span class="mono">{id}</span>
            </span>
        }
    });
    view! {
        <td data-testid="item-action">
            <span class=class>{label}</span>
            {created}
        </td>
    }
}
