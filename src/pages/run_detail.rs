//! `/t/{tenant}/runs/{id}`: one run with its status, initiator, times, counters and every item.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::tenant_layout::use_tenant;
use crate::api::runs::get_run;
use crate::components::{run_poll_delay, EmptyState, ErrorMessage, Loading, RunStatusBadge};
use crate::domain::policy_page::policy_type_label;
use crate::domain::run_detail::ItemOutcome;
use crate::domain::AppError;

/// The run detail page; it polls while the run is queued or running.
#[component]
pub fn RunDetailPage() -> impl IntoView {
    let tenant = use_tenant();
    let params = use_params_map();
    let id = Memo::new(move |_| {
        params
            .read()
            .get("id")
            .and_then(|raw| raw.parse::<i64>().ok())
    });
    let outcome = RwSignal::new(String::new());
    let tick = RwSignal::new(0_u64);
    let run = Resource::new(
        move || (tenant.get(), id.get(), outcome.get(), tick.get()),
        |(tenant, id, outcome, _)| async move {
            match id {
                Some(id) => get_run(tenant, id, outcome).await,
                None => Err(AppError::NotFound(
                    "This run does not exist in this tenant.".into(),
                )),
            }
        },
    );
    // Effects only run in the browser: poll until the run has ended.
    Effect::new(move |_| {
        let Some(Ok(detail)) = run.get() else {
            return;
        };
        if detail.status.is_active() {
            let delay = run_poll_delay();
            if let Ok(handle) = set_timeout_with_handle(
                move || {
                    tick.try_update(|t| *t += 1);
                },
                delay,
            ) {
                on_cleanup(move || handle.clear());
            }
        }
    });

    view! {
        <Title text="Run" />
        <p class="breadcrumb">
            <a href=move || format!("/t/{}/runs", tenant.get())>"← Runs"</a>
        </p>
        <Transition fallback=|| view! { <Loading what="the run" /> }>
            {move || Suspend::new(async move {
                let detail = match run.await {
                    Ok(detail) => detail,
                    Err(error) => return view! { <ErrorMessage error /> }.into_any(),
                };
                let set_href = format!("/t/{}/backup-sets/{}", tenant.get_untracked(), detail.backup_set_id);
                let set_link = match detail.backup_set_name.clone() {
                    Some(name) => view! { <a href=set_href data-testid="backup-set-link">{name}</a> }.into_any(),
                    None => view! { <span class="muted">"deleted backup set"</span> }.into_any(),
                };
                let duration = detail.duration().unwrap_or_else(|| "—".to_owned());
                let time = |t: Option<crate::domain::Timestamp>| t.map_or_else(|| "—".to_owned(), |t| t.to_string());
                let run_failure = detail.reason_code.map(|code| {
                    let message = detail.failure_message.clone().unwrap_or_default();
                    view! {
                        <p class="error-message" role="alert">
                            <span class="mono">{code.as_str()}</span> " — " {code.label()}
                            {(!message.is_empty()).then(|| format!(": {message}"))}
                        </p>
                    }
                });
                view! {
                    <h1>"Run #" {detail.id}</h1>
                    <p>
                        <span data-testid="run-status"><RunStatusBadge status=detail.status /></span>
                        " " {detail.operation_type} " on " {set_link}
                    </p>
                    {run_failure}
                    <dl class="facts">
                        <dt>"Started by"</dt>
                        <dd>{if detail.initiated_by.is_empty() { "—".to_owned() } else { detail.initiated_by }}</dd>
                        <dt>"Queued"</dt>
                        <dd>{detail.created_at.to_string()}</dd>
                        <dt>"Started"</dt>
                        <dd>{time(detail.started_at)}</dd>
                        <dt>"Finished"</dt>
                        <dd>{time(detail.finished_at)}</dd>
                        <dt>"Duration"</dt>
                        <dd>{duration}</dd>
                    </dl>
                    <progress
                        max=detail.total_items.max(1)
                        value=detail.processed_items
                        aria-label="Progress"
                    ></progress>
                    <dl class="facts counters" data-testid="run-counters">
                        <dt>"Processed"</dt>
                        <dd data-testid="processed">{detail.processed_items} " / " {detail.total_items}</dd>
                        <dt>"Added"</dt>
                        <dd data-testid="succeeded">{detail.succeeded}</dd>
                        <dt>"Failed"</dt>
                        <dd data-testid="failed">{detail.failed}</dd>
                        <dt>"Skipped"</dt>
                        <dd data-testid="skipped">{detail.skipped}</dd>
                    </dl>
                }.into_any()
            })}
        </Transition>
        <h2>"Items"</h2>
        <label class="outcome-filter">
            "Show items "
            <select on:change=move |ev| outcome.set(event_target_value(&ev))>
                <option value="">"with any outcome"</option>
                {ItemOutcome::ALL
                    .into_iter()
                    .map(|o| view! { <option value=o.as_str()>{o.label()}</option> })
                    .collect_view()}
            </select>
        </label>
        <Transition fallback=|| view! { <Loading what="the items" /> }>
            {move || Suspend::new(async move {
                let Ok(detail) = run.await else {
                    // The error is already shown above.
                    return ().into_any();
                };
                let items = detail.items;
                let filtered = !outcome.get_untracked().is_empty();
                view! {
                    {if items.is_empty() {
                        let title = if filtered { "No items with this outcome" } else { "No items" };
                        view! { <EmptyState title hint="Choose another outcome to see more." /> }.into_any()
                    } else {
                        view! {
                            <table class="data-table" data-testid="run-items">
                                <thead>
                                    <tr>
                                        <th scope="col">"Policy"</th>
                                        <th scope="col">"Type"</th>
                                        <th scope="col">"Outcome"</th>
                                        <th scope="col">"Reason"</th>
                                        <th scope="col">"Message"</th>
                                    </tr>
                                </thead>
                                <tbody>
                                    {items.into_iter().map(|item| view! {
                                        <tr>
                                            <td>{item.policy_name}</td>
                                            <td>{policy_type_label(&item.policy_type).to_owned()}</td>
                                            <td>
                                                <span class=format!("outcome outcome-{}", item.outcome.as_str())>
                                                    {item.outcome.label()}
                                                </span>
                                            </td>
                                            <td>
                                                {item.reason_code.map(|code| view! {
                                                    <span class="mono" title=code.label()>{code.as_str()}</span>
                                                })}
                                            </td>
                                            <td>{item.message}</td>
                                        </tr>
                                    }).collect_view()}
                                </tbody>
                            </table>
                        }.into_any()
                    }}
                }.into_any()
            })}
        </Transition>
    }
}
