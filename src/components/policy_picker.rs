//! The policy picker of a backup set: the tenant's inventory as a table with search, type and
//! platform filters, sortable columns and server-side pages; rows are selected with checkboxes
//! (per row, per page, or every matching policy) and **Add selected** queues one run.

use std::collections::BTreeSet;

use leptos::prelude::*;

use super::{
    or_absent, ErrorMessage, Loading, PlatformOptions, PolicyTypeOptions, RegionName, ScrollRegion,
};
use crate::api::policies::{addable_policy_count, list_policies, MatchingPolicyIds};
use crate::api::runs::AddPolicies;
use crate::domain::policy_page::{PolicyPage, PolicyRow, PolicySort, SortColumn};
use crate::domain::selection::MAX_SELECTION;
use crate::domain::{routes, AppError, PolicyIds};
use crate::pages::tenant_layout::use_tenant;
use leptos::reactive::actions::ActionAbortHandle;

/// The words of "Select all": the number it selects (the matching policies not in the set yet)
/// and, when some matching ones are in the set already, how many.
fn select_all_label(matching: i64, addable: i64) -> String {
    match matching.saturating_sub(addable) {
        in_set if in_set > 0 => {
            format!("Select all {addable} matching ({in_set} already in the set)")
        }
        _ => format!("Select all {addable} matching"),
    }
}

/// The selection's count as the picker states it: "No policies selected" when it is empty.
fn selection_text(count: usize) -> String {
    match count {
        0 => "No policies selected".to_owned(),
        1 => "1 policy selected".to_owned(),
        n => format!("{n} policies selected"),
    }
}

/// The picker's filter as its form fields send it (empty: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct FilterFields {
    search: String,
    policy_type: String,
    platform: String,
}

/// What the picker has selected, and whether that is exactly "Select all N matching" of the
/// filter on screen: then **Add selected** sends the filter (`all_matching`) and the server
/// resolves it when the submit arrives; after any edit of the selection or the filter, the ids.
#[derive(Clone, Copy)]
struct Selection {
    ids: RwSignal<BTreeSet<i64>>,
    /// The filter whose "Select all" gave the selection, while nothing changed since.
    all_matching: RwSignal<Option<FilterFields>>,
    /// Whether that "Select all" was cut at one run's maximum.
    truncated: RwSignal<bool>,
    /// Counts the changes of the selection and of the filter: a "Select all" answer is taken
    /// only when none happened since its request.
    changes: StoredValue<u64>,
    /// The "Select all" request in flight: the count of changes when it was made, its filter,
    /// and what abandons it.
    requested: StoredValue<Option<(u64, FilterFields, ActionAbortHandle)>>,
}

impl Selection {
    fn new() -> Self {
        Self {
            ids: RwSignal::new(BTreeSet::new()),
            all_matching: RwSignal::new(None),
            truncated: RwSignal::new(false),
            changes: StoredValue::new(0),
            requested: StoredValue::new(None),
        }
    }

    /// Something the member did changes the selection or the filter: the selection is no longer
    /// "all matching", and a "Select all" on its way is abandoned (its answer would replace what
    /// the member just did).
    fn changed(&self) {
        self.changes.update_value(|n| *n += 1);
        self.all_matching.set(None);
        if let Some((_, _, request)) = self.requested.try_update_value(Option::take).flatten() {
            request.abort();
        }
    }

    /// The member edits the selection (a row, a page, Clear selection).
    fn edit(&self, edit: impl FnOnce(&mut BTreeSet<i64>)) {
        self.changed();
        self.ids.update(edit);
    }

    /// Empties the selection ("Clear selection"), abandoning a "Select all" on its way.
    fn clear(&self) {
        self.edit(BTreeSet::clear);
        self.truncated.set(false);
    }

    /// A "Select all" request for `filter` is on its way; `abort` abandons it.
    fn requested(&self, filter: FilterFields, abort: ActionAbortHandle) {
        self.changed();
        self.requested
            .set_value(Some((self.changes.get_value(), filter, abort)));
    }

    /// The answer to the "Select all" request: taken only when it is the one in flight and
    /// neither the selection nor the filter changed since it was made.
    fn answered(&self, ids: Vec<i64>, truncated: bool) {
        let Some((at, filter, _)) = self.requested.try_update_value(Option::take).flatten() else {
            return;
        };
        if at != self.changes.get_value() {
            return;
        }
        self.ids.set(ids.into_iter().collect());
        self.truncated.set(truncated);
        self.all_matching.set(Some(filter));
    }
}

/// Gives the focus to the "Add policies" button when it is in the picker being closed, or lost.
fn return_focus_to_opener() {
    #[cfg(feature = "hydrate")]
    {
        use leptos::wasm_bindgen::JsCast;
        let document = document();
        let in_picker = document
            .active_element()
            .is_some_and(|active| matches!(active.closest(".policy-picker"), Ok(Some(_))));
        if !(in_picker || super::confirm::focus_lost()) {
            return;
        }
        if let Ok(Some(opener)) = document.query_selector("[data-testid=open-picker]") {
            if let Ok(opener) = opener.dyn_into::<leptos::web_sys::HtmlElement>() {
                let _ = opener.focus();
            }
        }
    }
}

/// The picker, for members whose role may start runs (the page does not offer it to others).
/// `on_close` hides the picker (also on Escape, except in a search field that has a value: that
/// Escape clears the field, and the selection stays).
#[component]
pub fn PolicyPicker(
    tenant: Memo<String>,
    backup_set_id: i64,
    action: ServerAction<AddPolicies>,
    on_close: Callback<()>,
) -> impl IntoView {
    let search = RwSignal::new(String::new());
    let policy_type = RwSignal::new(String::new());
    let platform = RwSignal::new(String::new());
    let sort = RwSignal::new(PolicySort::default());
    let page = RwSignal::new(0_i64);
    let selection = Selection::new();
    let selected = selection.ids;

    let policies = Resource::new(
        move || {
            (
                tenant.get(),
                search.get(),
                policy_type.get(),
                platform.get(),
                sort.get().as_param(),
                page.get(),
                action.version().get(),
            )
        },
        move |(tenant, search, policy_type, platform, sort, page, _)| {
            list_policies(
                tenant,
                backup_set_id,
                search,
                policy_type,
                platform,
                sort,
                page,
            )
        },
    );

    // How many of the matching policies are not in the set yet: what "Select all" selects.
    let addable = Resource::new(
        move || {
            (
                tenant.get(),
                search.get(),
                policy_type.get(),
                platform.get(),
                action.version().get(),
            )
        },
        move |(tenant, search, policy_type, platform, _)| {
            addable_policy_count(tenant, backup_set_id, search, policy_type, platform)
        },
    );

    // "Select all N matching": the server resolves the filter and answers the ids; an answer
    // to a request made before the selection or the filter changed is dropped.
    let select_all = ServerAction::<MatchingPolicyIds>::new();
    Effect::new(move |_| match select_all.value().get() {
        Some(Ok(matching)) => selection.answered(matching.ids, matching.truncated),
        Some(Err(_)) => selection.requested.set_value(None),
        None => {}
    });
    let select_all_matching = move |_| {
        let filter = FilterFields {
            search: search.get_untracked(),
            policy_type: policy_type.get_untracked(),
            platform: platform.get_untracked(),
        };
        let abort = select_all.dispatch(MatchingPolicyIds {
            tenant: tenant.get_untracked(),
            backup_set_id,
            search: filter.search.clone(),
            policy_type: filter.policy_type.clone(),
            platform: filter.platform.clone(),
        });
        selection.requested(filter, abort);
    };

    let count = move || selected.with(BTreeSet::len);
    // However the picker closes (Escape, Close, a queued run), the focus goes back to the
    // "Add policies" button that opened it, unless the member has moved it elsewhere.
    on_cleanup(return_focus_to_opener);
    let (refreshing, set_refreshing) = signal(false);

    view! {
        <section
            class="policy-picker"
            aria-labelledby="picker-title"
            data-testid="policy-picker"
            on:keydown=move |ev| {
                if ev.key() == "Escape" {
                    on_close.run(());
                }
            }
        >
            <div class="picker-head">
                <h2 id="picker-title">"Add policies"</h2>
                <button type="button" class="link-button" on:click=move |_| on_close.run(())>
                    "Close"
                </button>
            </div>
            <PickerFilters search policy_type platform page policies selection />
            // While another page, order or filter is on its way, the old rows stay: the region
            // says it is busy and a status says what is coming.
            <div
                class="picker-results"
                data-testid="picker-results"
                aria-busy=move || refreshing.get().then_some("true")
            >
                <Transition fallback=|| view! { <Loading what="policies" /> } set_pending=set_refreshing>
                    {move || Suspend::new(async move {
                        let data = match policies.await {
                            Ok(data) => data,
                            Err(error) => return view! { <ErrorMessage error /> }.into_any(),
                        };
                        let total = data.total;
                        let addable = match addable.await {
                            Ok(addable) => addable,
                            Err(error) => return view! { <ErrorMessage error /> }.into_any(),
                        };
                        view! {
                            <Show when=move || refreshing.get()>
                                <p class="loading" role="status" data-testid="picker-loading">
                                    "Loading policies…"
                                </p>
                            </Show>
                            <div class="picker-bulk">
                                <button
                                    type="button"
                                    class="link-button"
                                    data-testid="select-all-matching"
                                    disabled=move || select_all.pending().get() || addable == 0
                                    on:click=select_all_matching
                                >
                                    {move || if select_all.pending().get() {
                                        "Selecting…".to_owned()
                                    } else {
                                        select_all_label(total, addable)
                                    }}
                                </button>
                                // Also abandons a "Select all" on its way.
                                <button
                                    type="button"
                                    class="link-button"
                                    disabled=move || count() == 0 && !select_all.pending().get()
                                    on:click=move |_| selection.clear()
                                >
                                    "Clear selection"
                                </button>
                            </div>
                            {if total == 0 {
                                view! { <p class="empty-hint">"No policies match. Change the search or the filters."</p> }.into_any()
                            } else {
                                view! { <PickerTable data selection sort page /> }.into_any()
                            }}
                        }.into_any()
                    })}
                </Transition>
            </div>
            <SubmitBar tenant backup_set_id action selection select_all />
        </section>
    }
}

/// The capture options, the selection count and **Add selected**, with what went wrong.
#[component]
fn SubmitBar(
    tenant: Memo<String>,
    backup_set_id: i64,
    action: ServerAction<AddPolicies>,
    selection: Selection,
    select_all: ServerAction<MatchingPolicyIds>,
) -> impl IntoView {
    let selected = selection.ids;
    let truncated = selection.truncated;
    let include_assignments = RwSignal::new(true);
    let include_scope_tags = RwSignal::new(true);
    let count = move || selected.with(BTreeSet::len);
    let submitting = move || action.pending().get();
    // "Select all N matching" replaces the selection when the server answers: until then the
    // selection on screen is not the one chosen, and adding it would add the wrong policies.
    let selecting = move || select_all.pending().get();
    let submit = move |_| {
        // A second click while the first is on its way does nothing (the server dedupes too).
        if action.pending().get_untracked() || select_all.pending().get_untracked() {
            return;
        }
        let policy_ids: Vec<i64> = selected.with_untracked(|s| s.iter().copied().collect());
        if policy_ids.is_empty() {
            return;
        }
        // The selection is still exactly "Select all N matching" of the filter on screen: the
        // server resolves the filter now, so what was synced or removed since is counted.
        let (policy_ids, all_matching, filter) = match selection.all_matching.get_untracked() {
            Some(filter) => (Vec::new(), true, filter),
            None => (policy_ids, false, FilterFields::default()),
        };
        action.dispatch(AddPolicies {
            tenant: tenant.get_untracked(),
            backup_set_id,
            policy_ids: PolicyIds(policy_ids),
            include_assignments: include_assignments.get_untracked(),
            include_scope_tags: include_scope_tags.get_untracked(),
            all_matching,
            search: filter.search,
            policy_type: filter.policy_type,
            platform: filter.platform,
        });
    };
    let submit_error = move || action.value().get().and_then(Result::err);
    let select_error = move || select_all.value().get().and_then(Result::err);
    view! {
        <div class="picker-options">
            <label>
                <input
                    type="checkbox"
                    prop:checked=move || include_assignments.get()
                    on:change=move |ev| include_assignments.set(event_target_checked(&ev))
                />
                " Include assignments"
            </label>
            <label>
                <input
                    type="checkbox"
                    prop:checked=move || include_scope_tags.get()
                    on:change=move |ev| include_scope_tags.set(event_target_checked(&ev))
                />
                " Include scope tags"
            </label>
        </div>
        <div class="picker-submit">
            <p class="selection-count" aria-live="polite" data-testid="selection-count">
                {move || if selecting() {
                    "Selecting all matching policies…".to_owned()
                } else {
                    selection_text(count())
                }}
            </p>
            <button
                type="button"
                class="primary"
                data-testid="add-selected"
                disabled=move || submitting() || selecting() || count() == 0
                on:click=submit
            >
                {move || if submitting() { "Adding…" } else { "Add selected" }}
            </button>
            {move || (count() == 0 && !selecting()).then(|| view! {
                <p class="muted small">"Select at least one policy to add."</p>
            })}
            {move || truncated.get().then(|| view! {
                <p class="notice">
                    {format!("More policies match than one run can add; the first {MAX_SELECTION} are selected.")}
                </p>
            })}
            {move || submit_error().map(|error| view! { <ErrorMessage error /> })}
            {move || select_error().map(|error| view! { <ErrorMessage error /> })}
        </div>
    }
}

/// Empties the search field `ev` was pressed in (what it shows follows the filter, which may
/// already be empty while the member's typing has not reached it).
fn clear_search(ev: &leptos::ev::KeyboardEvent) {
    use leptos::wasm_bindgen::JsCast;
    if let Some(input) = ev
        .target()
        .and_then(|target| target.dyn_into::<leptos::web_sys::HtmlInputElement>().ok())
    {
        input.set_value("");
    }
}

/// Search, type and platform; a change starts again at the first page. The platforms offered
/// are the ones the tenant's inventory has.
#[component]
fn PickerFilters(
    search: RwSignal<String>,
    policy_type: RwSignal<String>,
    platform: RwSignal<String>,
    page: RwSignal<i64>,
    policies: Resource<Result<PolicyPage, AppError>>,
    selection: Selection,
) -> impl IntoView {
    let set_filter = move |signal: RwSignal<String>, value: String| {
        selection.changed();
        signal.set(value);
        page.set(0);
    };
    view! {
        <div class="picker-filters">
            <label>
                "Search by name"
                <input
                    type="search"
                    autocomplete="off"
                    maxlength="200"
                    prop:value=move || search.get()
                    on:input=move |ev| set_filter(search, event_target_value(&ev))
                    on:keydown=move |ev| {
                        // Escape in a field with a value clears the field (as a search field
                        // does by itself), and does not reach the picker, which would close
                        // and throw the selection away.
                        if ev.key() == "Escape" && !event_target_value(&ev).is_empty() {
                            ev.prevent_default();
                            ev.stop_propagation();
                            clear_search(&ev);
                            set_filter(search, String::new());
                        }
                    }
                />
            </label>
            <label>
                "Type"
                <select on:change=move |ev| set_filter(policy_type, event_target_value(&ev))>
                    <PolicyTypeOptions current=policy_type />
                </select>
            </label>
            <label>
                "Platform"
                <select on:change=move |ev| set_filter(platform, event_target_value(&ev))>
                    <option value="">"All platforms"</option>
                    <Transition fallback=|| ()>
                        {move || Suspend::new(async move {
                            let platforms = policies.await.map(|p| p.platforms).unwrap_or_default();
                            view! { <PlatformOptions platforms current=platform.get_untracked() /> }
                        })}
                    </Transition>
                </select>
            </label>
        </div>
    }
}

/// One page of policies with a select-this-page checkbox, sortable headings and the pager.
#[component]
fn PickerTable(
    data: PolicyPage,
    selection: Selection,
    sort: RwSignal<PolicySort>,
    page: RwSignal<i64>,
) -> impl IntoView {
    let selected = selection.ids;
    let selectable: Vec<i64> = data
        .rows
        .iter()
        .filter(|r| !r.in_set)
        .map(|r| r.id)
        .collect();
    let page_ids = selectable.clone();
    let page_selected =
        move || !page_ids.is_empty() && selected.with(|s| page_ids.iter().all(|id| s.contains(id)));
    let page_count = data.page_count();
    view! {
        <ScrollRegion name=RegionName::Label("Policies to pick".into())>
        <table class="data-table picker-table">
            <thead>
                <tr>
                    <th scope="col" class="check">
                        <input
                            type="checkbox"
                            aria-label="Select this page"
                            disabled=selectable.is_empty()
                            prop:checked=page_selected
                            on:change=move |ev| {
                                let on = event_target_checked(&ev);
                                selection.edit(|s| for id in &selectable {
                                    if on { s.insert(*id); } else { s.remove(id); }
                                });
                            }
                        />
                    </th>
                    <SortHeader column=SortColumn::Name title="Name" sort page />
                    <SortHeader column=SortColumn::Type title="Type" sort page />
                    <SortHeader column=SortColumn::Platform title="Platform" sort page />
                    <SortHeader column=SortColumn::Modified title="Last modified" sort page />
                </tr>
            </thead>
            <tbody>
                {data.rows.into_iter().map(|row| view! { <PolicyRowView row selection /> }).collect_view()}
            </tbody>
        </table>
        </ScrollRegion>
        <PickerPager current=data.page page_count total=data.total page />
    }
}

/// A column heading that sorts by its column; a second click reverses the order.
#[component]
fn SortHeader(
    column: SortColumn,
    title: &'static str,
    sort: RwSignal<PolicySort>,
    page: RwSignal<i64>,
) -> impl IntoView {
    let aria_sort = move || {
        let current = sort.get();
        match (current.column == column, current.descending) {
            (false, _) => "none",
            (true, false) => "ascending",
            (true, true) => "descending",
        }
    };
    let arrow = move || match aria_sort() {
        "ascending" => " ▲",
        "descending" => " ▼",
        _ => "",
    };
    view! {
        <th scope="col" aria-sort=aria_sort>
            <button
                type="button"
                class="sort-button"
                on:click=move |_| {
                    sort.update(|s| *s = s.toggled(column));
                    page.set(0);
                }
            >
                {title}
                {arrow}
            </button>
        </th>
    }
}

/// One policy; a policy already in the set is shown, marked, and cannot be selected.
#[component]
fn PolicyRowView(row: PolicyRow, selection: Selection) -> impl IntoView {
    let selected = selection.ids;
    let id = row.id;
    let in_set = row.in_set;
    let label = format!("Select {}", row.display_name);
    // The policy's page opens in a new tab, so the picker keeps its selection.
    let href = routes::policy(&use_tenant().get_untracked(), id);
    view! {
        <tr class:in-set=in_set data-testid="policy-row">
            <td class="check">
                <input
                    type="checkbox"
                    aria-label=label
                    disabled=in_set
                    prop:checked=move || !in_set && selected.with(|s| s.contains(&id))
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        selection.edit(|s| {
                            if on { s.insert(id); } else { s.remove(&id); }
                        });
                    }
                />
            </td>
            <td>
                <a href=href target="_blank" rel="noopener">
                    {row.display_name}
                    <span class="visually-hidden">" (opens in a new tab)"</span>
                </a>
                {in_set.then(|| view! { <span class="badge badge-in-set">"In this set"</span> })}
            </td>
            <td>{row.policy_type.label()}</td>
            <td>{row.platform}</td>
            <td>{or_absent(row.last_modified_at)}</td>
        </tr>
    }
}

/// Previous and next page of the picker (zero-based `current`).
#[component]
fn PickerPager(current: i64, page_count: i64, total: i64, page: RwSignal<i64>) -> impl IntoView {
    view! {
        <nav class="pager" aria-label="Pages">
            <button type="button" disabled={ current == 0 } on:click=move |_| page.set(current - 1)>
                "Previous"
            </button>
            <span>"Page " {current + 1} " of " {page_count} " · " {total} " policies"</span>
            <button
                type="button"
                disabled={ current + 1 >= page_count }
                on:click=move |_| page.set(current + 1)
            >
                "Next"
            </button>
        </nav>
    }
}

#[cfg(test)]
mod tests {
    use super::{select_all_label, selection_text};

    #[test]
    fn an_empty_selection_says_so() {
        assert_eq!(selection_text(0), "No policies selected");
        assert_eq!(selection_text(1), "1 policy selected");
        assert_eq!(selection_text(12), "12 policies selected");
    }

    #[test]
    fn select_all_names_the_number_it_selects() {
        assert_eq!(select_all_label(12, 12), "Select all 12 matching");
        assert_eq!(
            select_all_label(12, 10),
            "Select all 10 matching (2 already in the set)"
        );
        assert_eq!(
            select_all_label(3, 0),
            "Select all 0 matching (3 already in the set)"
        );
    }
}
