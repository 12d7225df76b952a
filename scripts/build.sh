#!/usr/bin/env bash
# Builds the browser bundle and the server without cargo-leptos (see README "Why not cargo-leptos"):
#   1. the hydrate library for wasm32-unknown-unknown (its own target dir, so server and front
#      builds never invalidate each other),
#   2. wasm-bindgen into target/site/pkg (wasm-opt -Oz when --release and npm's binaryen is there),
#   3. public/ and the stylesheet into target/site,
#   4. the server binary with the ssr feature.
# Usage: scripts/build.sh [--release]
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dev; front_profile=dev; out=debug; front_out=debug
if [[ "${1:-}" == "--release" ]]; then
  profile=release; front_profile=wasm-release; out=release; front_out=wasm-release
fi
name=tenantatlas
site=target/site
pkg=$site/pkg

# The offline toolchain fallback (scripts/setup.sh) leaves its choice here.
cargo_front=(cargo)
if [[ -f target/.front-toolchain ]]; then
  # shellcheck disable=SC1091
  source target/.front-toolchain
fi

echo "==> browser bundle ($front_profile)"
"${cargo_front[@]}" build --lib --target wasm32-unknown-unknown --no-default-features --features hydrate \
  --target-dir target/front --profile "$front_profile" ${FRONT_EXTRA_ARGS:-}

mkdir -p "$pkg"
wasm-bindgen --target web --no-typescript --out-name "$name" --out-dir "$pkg" \
  "target/front/wasm32-unknown-unknown/$front_out/$name.wasm"
# leptos asks for NAME.wasm (LEPTOS_OUTPUT_NAME is set in .cargo/config.toml).
mv -f "$pkg/${name}_bg.wasm" "$pkg/$name.wasm"
if [[ "$profile" == release ]] && [[ -x end2end/node_modules/.bin/wasm-opt ]]; then
  end2end/node_modules/.bin/wasm-opt -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
    "$pkg/$name.wasm" -o "$pkg/$name.wasm"
fi

cp -r public/. "$site/"
cp style/main.css "$pkg/$name.css"

echo "==> server ($profile)"
cargo build --bin "$name" --profile "$profile"
echo "==> built target/$out/$name and $site"
