//! `/t/{tenant}/policies/{id}`: a policy's metadata and its captured versions, newest first.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map};

use super::tenant_layout::{refusal, use_tenant};
use crate::api::captures::capture_policy;
use crate::api::versions::{get_policy, policy_versions};
use crate::components::{
    or_absent, provide_toasts, Column, DataTable, EmptyState, ErrorMessage, Loading, NeedsRole,
    RunStarter, StartAction, Toasts,
};
use crate::domain::restore::RestoreSource;
use crate::domain::run::OperationType;
use crate::domain::versions::{short_hash, CaptureResult, Drift, PolicyInfo, RunBrief, VersionRow};
use crate::domain::{routes, AppError, Capability};

/// The number in the URL segment `name`, if it is one. A segment that is not one (`abc`, or
/// beyond `i64`) names nothing: the page says so without asking the server, and answers 404
/// like an id that no row has.
pub fn id_param(name: &'static str) -> Memo<Option<i64>> {
    let params = use_params_map();
    let id = Memo::new(move |_| {
        params
            .read()
            .get(name)
            .and_then(|raw| raw.parse::<i64>().ok())
    });
    #[cfg(feature = "ssr")]
    if id.get_untracked().is_none() {
        crate::server::error::set_status(axum::http::StatusCode::NOT_FOUND);
    }
    id
}

/// The policy not found error for a URL id that is not a number.
pub fn no_policy() -> AppError {
    AppError::NotFound("This policy does not exist in this tenant.".into())
}

/// Metadata of a policy as a fact list.
#[component]
pub fn PolicyFacts(policy: PolicyInfo) -> impl IntoView {
    view! {
        <dl class="facts">
            <dt>"Type"</dt>
            <dd>{policy.policy_type.label()}</dd>
            <dt>"Platform"</dt>
            <dd>{policy.platform}</dd>
            <dt>"Graph id"</dt>
            <dd class="mono">{policy.graph_id}</dd>
            <dt>"Last modified"</dt>
            <dd>{or_absent(policy.last_modified_at)}</dd>
        </dl>
        {policy.gone_from_intune_at.map(|at| view! {
            <p class="badge gone" data-testid="gone">"Gone from Intune: found missing at " {at.to_string()}</p>
        })}
    }
}

/// The policy page.
#[component]
pub fn PolicyDetailPage() -> impl IntoView {
    let tenant = use_tenant();
    let id = id_param("id");
    let policy = Resource::new(
        move || (tenant.get(), id.get()),
        |(tenant, id)| async move {
            match id {
                Some(id) => get_policy(tenant, id).await,
                None => Err(no_policy()),
            }
        },
    );
    provide_toasts();
    // Bumped when a capture ends: the versions reload.
    let captured = RwSignal::new(0_u64);
    let compare = Compare::new();
    let capture = Action::new(move |_: &()| {
        capture_policy(
            tenant.get_untracked(),
            id.get_untracked().unwrap_or_default(),
        )
    });
    // Where the compare goes when its capture ended (the router's navigate is not `Send`, so an
    // effect follows this signal).
    let go_to = RwSignal::new(None::<String>);
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(href) = go_to.get() {
            navigate(&href, Default::default());
        }
    });
    let on_captured = move |run: RunBrief| {
        captured.update(|n| *n += 1);
        if let Some(policy_id) = id.get_untracked() {
            compare.captured(&run, |from, to| {
                go_to.set(Some(routes::policy_diff(
                    &tenant.get_untracked(),
                    policy_id,
                    from,
                    to,
                )));
            });
        }
    };
    // A capture that could not start (refused, or the tenant's credentials are blocked) leaves
    // no compare waiting: its error is shown by the Capture now line.
    Effect::new(move |_| {
        if let Some(Err(_)) = capture.value().get() {
            compare.from.set(None);
        }
    });
    let versions = Resource::new(
        move || (tenant.get(), id.get(), captured.get()),
        |(tenant, id, _)| async move {
            match id {
                Some(id) => policy_versions(tenant, id).await,
                None => Err(no_policy()),
            }
        },
    );
    view! {
        <Title text="Policy" />
        <p class="breadcrumb">
            <a href=move || routes::policies(&tenant.get(), "")>"← Policies"</a>
        </p>
        <Transition fallback=|| view! { <Loading what="the policy" /> }>
            {move || Suspend::new(async move {
                match policy.await {
                    Ok(policy) => view! {
                        <h1 data-testid="policy-name">{policy.display_name.clone()}</h1>
                        <PolicyFacts policy />
                    }.into_any(),
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
        <Toasts />
        {move || id.get().map(|policy_id| view! {
            <RunStarter
                tenant
                operation=OperationType::CaptureSnapshot
                target_id=policy_id
                label="Capture now"
                last_label="Last capture"
                testid="capture-now"
                start=capture
                on_done=on_captured
            />
        })}
        {move || compare.note.get().map(|note| view! {
            <p class="notice" role="status" data-testid="compare-note">{note}</p>
        })}
        <h2>"Versions"</h2>
        <VersionList tenant id policy versions capture compare />
    }
}

/// The policy's captured versions as a table, newest first, or that none is captured yet.
#[component]
fn VersionList(
    tenant: Memo<String>,
    id: Memo<Option<i64>>,
    /// The policy's own read, whose error the top of the page shows.
    policy: Resource<Result<PolicyInfo, AppError>>,
    versions: Resource<Result<Vec<VersionRow>, AppError>>,
    capture: StartAction,
    compare: Compare,
) -> impl IntoView {
    view! {
        <Transition fallback=|| view! { <Loading what="the versions" /> }>
            {move || Suspend::new(async move {
                let refused = refusal(Capability::StartRuns).await;
                let tenant = tenant.get_untracked();
                let policy_failed = policy.await.is_err();
                match (versions.await, id.get_untracked()) {
                    (Ok(list), _) if list.is_empty() => view! {
                        <EmptyState
                            title="No versions captured yet"
                            hint="Add the policy to a backup set to capture a version."
                        />
                    }.into_any(),
                    (Ok(list), Some(policy_id)) => view! {
                        // Why every "Compare with Intune now" is disabled, once, as visible text.
                        {refused.map(|reason| view! { <NeedsRole id=COMPARE_NEEDS_ID reason /> })}
                        <DataTable columns=VERSION_COLUMNS testid="versions">
                            {list.into_iter().map(|version| view! {
                                <VersionLine
                                    tenant=tenant.clone()
                                    policy_id
                                    version
                                    refused
                                    capture
                                    compare
                                />
                            }).collect_view()}
                        </DataTable>
                    }.into_any(),
                    // When the policy's own read failed too, its error is already shown at
                    // the top of the page. The policy is not read again after a capture, so
                    // a versions read refused then (signed out, removed, the policy gone) says
                    // so here.
                    (Err(_), _) if policy_failed => ().into_any(),
                    (Err(error), _) => view! { <ErrorMessage error /> }.into_any(),
                    (Ok(_), None) => ().into_any(),
                }
            })}
        </Transition>
    }
}

/// The id of the reason shown when the member's role may not compare with Intune.
const COMPARE_NEEDS_ID: &str = "compare-needs-role";

/// "Compare with Intune now": the version it was pressed on, until its capture ends, and what
/// it found when that was no change or no capture.
#[derive(Clone, Copy)]
struct Compare {
    from: RwSignal<Option<i64>>,
    note: RwSignal<Option<String>>,
}

impl Compare {
    fn new() -> Self {
        Self {
            from: RwSignal::new(None),
            note: RwSignal::new(None),
        }
    }

    /// Starts a compare of version `from`: the policy is captured now.
    fn start(self, from: i64, capture: StartAction) {
        self.note.set(None);
        self.from.set(Some(from));
        capture.dispatch(());
    }

    /// A capture ended: a compare waiting for it goes to the diff (`diff(from, to)`) when Intune
    /// holds another version, else says why there is nothing to show.
    fn captured(self, run: &RunBrief, diff: impl FnOnce(i64, i64)) {
        let Some(from) = self.from.get_untracked() else {
            return;
        };
        self.from.set(None);
        match compared_with(from, run) {
            Ok(to) => diff(from, to),
            Err(note) => self.note.set(Some(note.to_owned())),
        }
    }
}

/// What a compare of version `from` found once its capture `run` ended: the version Intune
/// holds when it is another one, else why there is nothing to show.
fn compared_with(from: i64, run: &RunBrief) -> Result<i64, &'static str> {
    match run.capture {
        Some(CaptureResult {
            snapshot_id: Some(to),
            ..
        }) if to != from => Ok(to),
        Some(CaptureResult {
            snapshot_id: Some(_),
            ..
        }) => Err("No change: Intune holds exactly this version."),
        // The capture succeeded and found the policy gone: no version to compare with.
        Some(CaptureResult {
            drift: Drift::Deleted,
            ..
        }) => Err("Nothing to compare: this policy no longer exists in Intune."),
        _ => Err("Nothing to compare: the capture did not succeed (see its run)."),
    }
}

/// One version of the table: when, its hash, the sets and run that hold it, and its actions.
#[component]
fn VersionLine(
    tenant: String,
    policy_id: i64,
    version: VersionRow,
    refused: Option<&'static str>,
    capture: StartAction,
    compare: Compare,
) -> impl IntoView {
    let sets = version
        .backup_sets
        .into_iter()
        .map(|set| view! { <a href=routes::backup_set(&tenant, set.id)>{set.name}</a>" " })
        .collect_view();
    let run = version
        .run_id
        .map(|run| view! { <a href=routes::run(&tenant, run, "")>"#" {run}</a> });
    let previous = version.previous_id.map(|from| view! {
        " · "
        <a href=routes::policy_diff(&tenant, policy_id, from, version.id)>"Compare with previous"</a>
    });
    let version_id = version.id;
    let restore = routes::restore_new(&tenant, RestoreSource::Version(version_id));
    let current = version.current.then(|| {
        view! {
            " " <span class="badge badge-current" data-testid="current-version">"Current"</span>
        }
    });
    view! {
        <tr data-current=version.current.to_string()>
            <td>{version.captured_at.to_string()}{current}</td>
            <td class="mono" title=version.content_hash.clone()>
                {short_hash(&version.content_hash)}
            </td>
            <td>{sets}</td>
            <td>{run.map_or_else(|| crate::components::ABSENT.into_any(), IntoAny::into_any)}</td>
            <td>
                <a href=routes::policy_version(&tenant, policy_id, version.id)>"View"</a>
                {previous}
                " · "
                <button
                    type="button"
                    class="link"
                    data-testid="compare-with-intune"
                    title=refused.is_none().then_some("Capture the policy now and compare it with this version")
                    aria-describedby=refused.map(|_| COMPARE_NEEDS_ID)
                    disabled=move || {
                        refused.is_some() || capture.pending().get() || compare.from.get().is_some()
                    }
                    on:click=move |_| compare.start(version_id, capture)
                >
                    "Compare with Intune now"
                </button>
                " · "
                <a href=restore data-testid="restore-version">"Restore this version"</a>
            </td>
        </tr>
    }
}

const VERSION_COLUMNS: &[Column] = &[
    Column::text("Captured"),
    Column::text("Content hash"),
    Column::text("Backup sets"),
    Column::text("Run"),
    Column::text("Actions"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::RunStatus;

    fn ended(capture: Option<CaptureResult>) -> RunBrief {
        RunBrief {
            id: 9,
            status: RunStatus::Completed,
            finished_at: None,
            summary: None,
            capture,
        }
    }

    fn found(drift: Drift, snapshot_id: Option<i64>) -> Option<CaptureResult> {
        Some(CaptureResult {
            drift,
            changed_settings: None,
            snapshot_id,
            base_snapshot_id: Some(7),
        })
    }

    #[test]
    fn a_compare_shows_the_diff_or_says_why_not() {
        assert_eq!(
            compared_with(7, &ended(found(Drift::Changed, Some(8)))),
            Ok(8)
        );
        let same = compared_with(7, &ended(found(Drift::Unchanged, Some(7))));
        assert!(same.unwrap_err().starts_with("No change"));
        let failed = compared_with(7, &ended(None));
        assert!(failed.unwrap_err().contains("did not succeed"));
    }

    #[test]
    fn a_compare_of_a_policy_deleted_in_intune_says_so() {
        let gone = compared_with(7, &ended(found(Drift::Deleted, None)));
        assert_eq!(
            gone,
            Err("Nothing to compare: this policy no longer exists in Intune.")
        );
    }
}
