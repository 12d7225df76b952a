//! Step 2 of the restore wizard: which of the source's policies, with search, a type filter and
//! "Select all matching" (in the browser: a source holds at most 10,000 candidates, sent whole),
//! and the options.

use std::collections::BTreeSet;
use std::sync::Arc;

use leptos::prelude::*;

use super::Wizard;
use crate::components::{Column, DataTable, EmptyState, PolicyTypeOptions};
use crate::domain::restore::{policies_of, RestoreCandidate};
use crate::domain::routes;
use crate::pages::tenant_layout::use_tenant;

/// Rows shown at once; "Select all matching" still takes every match.
const SHOWN_ROWS: usize = 200;

const SCOPE_COLUMNS: &[Column] = &[
    Column::text("Restore"),
    Column::text("Policy"),
    Column::text("Type"),
    Column::text("Captured"),
    Column::text("Notes"),
];

/// The scope: filters, the candidates' table, the selection count and the options.
#[component]
pub fn ScopeStep(wizard: Wizard, candidates: Vec<RestoreCandidate>) -> impl IntoView {
    let candidates = Arc::new(candidates);
    let search = RwSignal::new(String::new());
    let policy_type = RwSignal::new(String::new());
    let all = candidates.clone();
    // Positions of the candidates the filters keep.
    let matching = Memo::new(move |_| {
        let needle = search.get().trim().to_lowercase();
        let kind = policy_type.get();
        all.iter()
            .enumerate()
            .filter(|(_, c)| kind.is_empty() || c.policy_type.as_str() == kind)
            .filter(|(_, c)| needle.is_empty() || c.display_name.to_lowercase().contains(&needle))
            .map(|(i, _)| i)
            .collect::<Vec<usize>>()
    });
    let total = candidates.len();
    let selected = wizard.selected;
    let in_matching = candidates.clone();
    let select_matching = move |_| {
        let ids: Vec<i64> =
            matching.with(|m| m.iter().map(|i| in_matching[*i].policy_id).collect());
        selected.update(|s| s.extend(ids));
    };
    // The table is rebuilt only when the matches run out or come back; its rows follow them.
    let none_match = Memo::new(move |_| matching.with(Vec::is_empty));
    let rows = move || {
        matching.with(|m| {
            m.iter()
                .take(SHOWN_ROWS)
                .map(|i| view! { <ScopeRow candidate=candidates[*i].clone() selected /> })
                .collect_view()
        })
    };
    view! {
        <section class="wizard-step" aria-labelledby="step-scope" data-testid="restore-scope">
            <h2 id="step-scope">"2. Scope"</h2>
            <div class="picker-filters">
                <label>
                    "Search by name"
                    <input
                        type="search"
                        autocomplete="off"
                        maxlength="200"
                        data-testid="scope-search"
                        prop:value=move || search.get()
                        on:input=move |ev| search.set(event_target_value(&ev))
                    />
                </label>
                <label>
                    "Type"
                    <select on:change=move |ev| policy_type.set(event_target_value(&ev))>
                        <PolicyTypeOptions current=policy_type />
                    </select>
                </label>
            </div>
            <div class="picker-bulk">
                <button
                    type="button"
                    class="link-button"
                    disabled=move || matching.with(Vec::is_empty)
                    on:click=select_matching
                >
                    {move || format!("Select all {} matching", matching.with(Vec::len))}
                </button>
                <button
                    type="button"
                    class="link-button"
                    disabled=move || selected.with(BTreeSet::is_empty)
                    on:click=move |_| selected.set(BTreeSet::new())
                >
                    "Clear selection"
                </button>
            </div>
            {move || if total == 0 {
                view! {
                    <EmptyState
                        title="Nothing to restore"
                        hint="This source holds no captured policies. Add policies to the backup set first."
                    />
                }.into_any()
            } else if none_match.get() {
                view! { <p class="empty-hint">"No policies match. Change the search or the type."</p> }.into_any()
            } else {
                let rows = rows.clone();
                view! {
                    <DataTable columns=SCOPE_COLUMNS testid="scope-table" labelled_by="step-scope">
                        {rows}
                    </DataTable>
                }.into_any()
            }}
            {move || {
                let shown = matching.with(Vec::len);
                (shown > SHOWN_ROWS).then(|| view! {
                    <p class="muted small">
                        {format!("Showing the first {SHOWN_ROWS} of {shown} matching policies; search to narrow them, or select all matching.")}
                    </p>
                })
            }}
            <p class="selection-count" aria-live="polite" data-testid="scope-count">
                {move || format!("{} selected", policies_of(selected.with(BTreeSet::len) as i64, total as i64))}
            </p>
            <ScopeOptions wizard />
        </section>
    }
}

/// One candidate: its checkbox, its name (the policy page, in a new tab so the choice stays),
/// and what the restore would have to know about it.
#[component]
fn ScopeRow(candidate: RestoreCandidate, selected: RwSignal<BTreeSet<i64>>) -> impl IntoView {
    let id = candidate.policy_id;
    let label = format!("Select {}", candidate.display_name);
    let href = routes::policy(&use_tenant().get_untracked(), id);
    let initially = selected.with_untracked(|s| s.contains(&id));
    let gone = candidate.gone_from_intune.then(|| {
        view! { <span class="badge badge-gone" data-testid="scope-gone">"Gone from Intune: created anew"</span> }
    });
    let no_assignments = (!candidate.with_assignments).then(|| {
        view! { <span class="badge" data-testid="scope-no-assignments">"No assignments recorded"</span> }
    });
    view! {
        <tr data-testid="scope-row">
            <td class="check">
                <input
                    type="checkbox"
                    aria-label=label
                    checked=initially
                    prop:checked=move || selected.with(|s| s.contains(&id))
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        selected.update(|s| {
                            if on { s.insert(id); } else { s.remove(&id); }
                        });
                    }
                />
            </td>
            <td>
                <a href=href target="_blank" rel="noopener">
                    {candidate.display_name}
                    <span class="visually-hidden">" (opens in a new tab)"</span>
                </a>
            </td>
            <td>{candidate.policy_type.label()}</td>
            <td>{candidate.captured_at.to_string()}</td>
            <td>{gone} " " {no_assignments}</td>
        </tr>
    }
}

/// "Include assignments" (on by default) and "Include scope tags" (off by default).
#[component]
fn ScopeOptions(wizard: Wizard) -> impl IntoView {
    let option = |signal: RwSignal<bool>, text: &'static str, testid: &'static str| {
        view! {
            <label>
                <input
                    type="checkbox"
                    data-testid=testid
                    checked=signal.get_untracked()
                    prop:checked=move || signal.get()
                    on:change=move |ev| signal.set(event_target_checked(&ev))
                />
                " " {text}
            </label>
        }
    };
    view! {
        <div class="picker-options">
            {option(wizard.include_assignments, "Include assignments", "include-assignments")}
            {option(wizard.include_scope_tags, "Include scope tags", "include-scope-tags")}
        </div>
    }
}
