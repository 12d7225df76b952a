//! `/t/{tenant}/policies/{id}/versions/{version}`: one captured version, read as settings or as
//! raw JSON (copy, download).

use leptos::prelude::*;
use leptos_meta::Title;

use super::policy::{id_param, no_policy};
use super::tenant_layout::use_tenant;
use crate::api::versions::policy_version;
use crate::components::{ErrorMessage, Loading, ReadableSections};
use crate::domain::routes;
use crate::domain::versions::short_hash;

/// Which tab of the viewer is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tab {
    Settings,
    Raw,
}

/// The version viewer.
#[component]
pub fn PolicyVersionPage() -> impl IntoView {
    let tenant = use_tenant();
    let id = id_param("id");
    let version = id_param("version");
    let view_data = Resource::new(
        move || (tenant.get(), id.get(), version.get()),
        |(tenant, id, version)| async move {
            match (id, version) {
                (Some(id), Some(version)) => policy_version(tenant, id, version).await,
                _ => Err(no_policy()),
            }
        },
    );
    let tab = RwSignal::new(Tab::Settings);
    view! {
        <Title text="Policy version" />
        <p class="breadcrumb">
            <a href=move || id.get().map(|id| routes::policy(&tenant.get(), id))>"← Policy"</a>
        </p>
        <Transition fallback=|| view! { <Loading what="the version" /> }>
            {move || Suspend::new(async move {
                match view_data.await {
                    Ok(data) => {
                        let tenant = tenant.get_untracked();
                        let download = routes::policy_version_json(&tenant, data.policy.id, data.version_id);
                        let raw = data.raw_json;
                        let raw_for_copy = raw.clone();
                        view! {
                            <h1 data-testid="policy-name">{data.policy.display_name}</h1>
                            <p class="muted">
                                "Version captured " {data.captured_at.to_string()} " · "
                                <span class="mono" title=data.content_hash.clone()>{short_hash(&data.content_hash)}</span>
                            </p>
                            <div role="tablist" class="tabs" aria-label="Version views">
                                <button
                                    type="button"
                                    role="tab"
                                    id="tab-settings"
                                    aria-controls="panel-settings"
                                    aria-selected=move || (tab.get() == Tab::Settings).to_string()
                                    on:click=move |_| tab.set(Tab::Settings)
                                >
                                    "Settings"
                                </button>
                                <button
                                    type="button"
                                    role="tab"
                                    id="tab-raw"
                                    aria-controls="panel-raw"
                                    aria-selected=move || (tab.get() == Tab::Raw).to_string()
                                    on:click=move |_| tab.set(Tab::Raw)
                                >
                                    "Raw JSON"
                                </button>
                            </div>
                            <div
                                role="tabpanel"
                                id="panel-settings"
                                aria-labelledby="tab-settings"
                                data-testid="settings-panel"
                                hidden=move || tab.get() != Tab::Settings
                            >
                                {data.readable.notes.into_iter().map(|note| view! { <p class="muted">{note}</p> }).collect_view()}
                                <ReadableSections sections=data.readable.sections />
                            </div>
                            <div
                                role="tabpanel"
                                id="panel-raw"
                                aria-labelledby="tab-raw"
                                data-testid="raw-panel"
                                hidden=move || tab.get() != Tab::Raw
                            >
                                <div class="action-row">
                                    <CopyButton text=raw_for_copy />
                                    <a href=download download="" data-testid="download-json" rel="external">"Download"</a>
                                </div>
                                <pre class="raw-json" tabindex="0">{raw}</pre>
                            </div>
                        }.into_any()
                    }
                    Err(error) => view! { <ErrorMessage error /> }.into_any(),
                }
            })}
        </Transition>
    }
}

/// How the last Copy went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CopyState {
    /// Not tried yet, or on its way.
    Ready,
    /// The browser said the text is on the clipboard.
    Copied,
    /// The browser refused (no permission), or offers no clipboard here (plain HTTP).
    Refused,
}

/// Copies `text` to the clipboard (in the browser; the server renders the button only). It says
/// "Copied" only once the browser has confirmed the write; when the browser refuses, or has no
/// clipboard to offer, it says so and how to copy by hand.
#[component]
fn CopyButton(text: String) -> impl IntoView {
    let state = RwSignal::new(CopyState::Ready);
    let copy = move |_| {
        #[cfg(feature = "hydrate")]
        {
            state.set(CopyState::Ready);
            let written = write_to_clipboard(&text);
            leptos::task::spawn_local(async move {
                let copied = match written {
                    Some(promise) => wasm_bindgen_futures::JsFuture::from(promise).await.is_ok(),
                    None => false,
                };
                state.set(if copied {
                    CopyState::Copied
                } else {
                    CopyState::Refused
                });
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = &text;
    };
    view! {
        <button type="button" data-testid="copy-json" on:click=copy>
            {move || if state.get() == CopyState::Copied { "Copied" } else { "Copy" }}
        </button>
        {move || (state.get() == CopyState::Refused).then(|| view! {
            <p class="error-message" role="alert" data-testid="copy-refused">
                "The browser did not let the page copy to the clipboard. Select the JSON below and copy it by hand."
            </p>
        })}
    }
}

/// `navigator.clipboard.writeText(text)`, looked up at run time so the bundle needs no extra
/// browser bindings: the browser's promise of the write, or `None` when there is no clipboard
/// (a page served over plain HTTP, off localhost) or the call threw.
#[cfg(feature = "hydrate")]
fn write_to_clipboard(text: &str) -> Option<leptos::web_sys::js_sys::Promise> {
    use leptos::wasm_bindgen::JsCast;
    use leptos::web_sys::js_sys::{Function, Promise, Reflect};
    let clipboard = Reflect::get(&window(), &"navigator".into())
        .and_then(|navigator| Reflect::get(&navigator, &"clipboard".into()))
        .ok()
        .filter(|clipboard| !clipboard.is_undefined() && !clipboard.is_null())?;
    let write = Reflect::get(&clipboard, &"writeText".into())
        .ok()?
        .dyn_into::<Function>()
        .ok()?;
    write
        .call1(&clipboard, &text.into())
        .ok()?
        .dyn_into::<Promise>()
        .ok()
}
