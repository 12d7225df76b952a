#!/usr/bin/env bash
# What the smallest Leptos app of this shape weighs in the browser: the floor under the main
# module's size (issue 16's 250 kB goal; docs/benchmarks.md, "The browser bundle").
#
# Writes a throwaway crate into a temporary folder (it is never part of the app): the same Leptos,
# router, meta, serde and time versions (this project's Cargo.lock), the same features, the same
# size profile and compiler flags as scripts/build.sh's front build, in three variants:
#   - blank:    hydrates one component with one signal and a button;
#   - router:   + leptos_router (two routes, one with a parameter) and leptos_meta's <Title>;
#   - resource: + one server function whose answer (a list of structs with a timestamp) a
#               Resource loads under <Suspense>, and an <ErrorBoundary>: the least a page of this
#               app does.
# Each is built for wasm32 (wasm-release: opt-level z, LTO, panic abort), bound with
# wasm-bindgen and optimised with wasm-opt -Oz exactly as build.sh does, then measured in gzip -9
# bytes. Its own target folder (target/floor, about 0.5 GB) keeps the dependencies between runs.
#   scripts/bundle-floor.sh        (after scripts/setup.sh; about 1.5 minutes cold here)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crate=$work/floor
mkdir -p "$crate/src" "$crate/.cargo"
cp Cargo.lock "$crate/Cargo.lock"
# The front build's flags (.cargo/config.toml) without the relocations, which only the splitter
# needs and which keep wasm-opt from optimising a file that still has them (the splitter strips
# them from the app's files). Other flags, other artifacts: target/floor, not target/front.
cat >"$crate/.cargo/config.toml" <<'TOML'
[build]
rustflags = ["--cfg", "erase_components"]
TOML
# The dependency lines and features of Cargo.toml's hydrate build, nothing else.
deps=$(awk '/^\[dependencies\]/ { on = 1; next } /^\[/ { on = 0 } on && /^(leptos|leptos_router|leptos_meta|serde|serde_json|time|console_error_panic_hook|wasm-bindgen|wasm-bindgen-futures) = / { print }' Cargo.toml)
cat >"$crate/Cargo.toml" <<TOML
[package]
name = "floor"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
$deps

[features]
default = []
router = []
resource = ["router"]
hydrate = ["leptos/hydrate", "dep:console_error_panic_hook", "dep:wasm-bindgen", "dep:wasm-bindgen-futures"]

[profile.wasm-release]
inherits = "release"
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
TOML
cat >"$crate/src/lib.rs" <<'RUST'
use leptos::prelude::*;

#[cfg(feature = "resource")]
mod data {
    use leptos::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Row {
        pub id: i64,
        pub name: String,
        pub changed_at: time::OffsetDateTime,
    }

    #[server(prefix = "/api", endpoint = "rows")]
    pub async fn rows(tenant: String) -> Result<Vec<Row>, ServerFnError> {
        let _ = tenant;
        Ok(Vec::new())
    }

    #[component]
    pub fn Rows(tenant: String) -> impl IntoView {
        let rows = Resource::new(move || tenant.clone(), rows);
        view! {
            <ErrorBoundary fallback=|_| view! { <p role="alert">"Could not load."</p> }>
                <Suspense fallback=|| view! { <p>"Loading…"</p> }>
                    <ul>
                        {move || Suspend::new(async move {
                            rows.await.map(|rows| {
                                rows.into_iter()
                                    .map(|row| view! { <li>{row.name}" "{row.changed_at.unix_timestamp()}</li> })
                                    .collect_view()
                            })
                        })}
                    </ul>
                </Suspense>
            </ErrorBoundary>
        }
    }
}

#[component]
fn Counter() -> impl IntoView {
    let count = RwSignal::new(0);
    view! { <button on:click=move |_| count.update(|n| *n += 1)>"Clicked " {count}</button> }
}

#[cfg(not(feature = "router"))]
#[component]
fn App() -> impl IntoView {
    view! { <main><Counter/></main> }
}

#[cfg(feature = "router")]
#[component]
fn App() -> impl IntoView {
    use leptos_router::{components::{Route, Router, Routes}, hooks::use_params_map, path};
    leptos_meta::provide_meta_context();
    let tenant = move || {
        let tenant = use_params_map().read().get("tenant").unwrap_or_default();
        #[cfg(feature = "resource")]
        return view! { <data::Rows tenant/> };
        #[cfg(not(feature = "resource"))]
        tenant
    };
    view! {
        <leptos_meta::Title text="Floor"/>
        <Router>
            <main>
                <Routes fallback=|| "Not found.">
                    <Route path=path!("/") view=Counter/>
                    <Route path=path!("/t/:tenant") view=tenant/>
                </Routes>
            </main>
        </Router>
    }
}

#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
RUST

wasm=$root/target/floor/wasm32-unknown-unknown/wasm-release/floor.wasm
printf '%-10s %12s %12s\n' variant "raw bytes" "gzip -9"
for variant in blank router resource; do
  features=hydrate
  [[ $variant != blank ]] && features+=",$variant"
  (cd "$crate" && cargo build --quiet --lib --target wasm32-unknown-unknown --features "$features" \
    --target-dir "$root/target/floor" --profile wasm-release)
  out=$work/$variant
  mkdir -p "$out"
  wasm-bindgen --target web --no-typescript --out-name floor --out-dir "$out" "$wasm"
  node scripts/wasm-opt.mjs "$out/floor_bg.wasm" 2> >(grep -v '^warning: unknown name subsection' >&2)
  printf '%-10s %12d %12d\n' "$variant" "$(stat -c %s "$out/floor_bg.wasm")" \
    "$(gzip -9 -n -c "$out/floor_bg.wasm" | wc -c)"
done
