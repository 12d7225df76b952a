#!/usr/bin/env bash
# Builds the browser bundle and the server without cargo-leptos (see README "Why not cargo-leptos"):
#   1. the hydrate library for wasm32-unknown-unknown with the size profile (`wasm-release`:
#      opt-level z, LTO), in its own target dir so server and front builds never invalidate
#      each other,
#   2. wasm-bindgen, then wasm-opt -Oz (npm's binaryen, installed by setup.sh), into
#      target/site/pkg under content-hashed names, with gzip and brotli copies beside the files;
#      these steps are skipped when the wasm they start from has not changed since the last
#      build,
#   3. public/ and the stylesheet into target/site,
#   4. the server binary with the ssr feature.
# The same optimised bundle serves command 1 and the Playwright suite, so the tests check what
# users get. FRONT_PROFILE=dev builds an unoptimised bundle quickly, for work on the front end.
# Usage: scripts/build.sh [--release]   (--release: the server with the release profile too)
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dev; out=debug
if [[ "${1:-}" == "--release" ]]; then
  profile=release; out=release
fi
front_profile=${FRONT_PROFILE:-wasm-release}
front_out=$front_profile
[[ "$front_profile" == dev ]] && front_out=debug
name=tenantatlas
site=target/site
pkg=$site/pkg
wasm_opt=end2end/node_modules/.bin/wasm-opt
hash_file=hash.txt

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
wasm_in="target/front/wasm32-unknown-unknown/$front_out/$name.wasm"
optimise=false
[[ "$front_profile" != dev ]] && optimise=true
if $optimise && [[ ! -x "$wasm_opt" ]]; then
  echo "wasm-opt is missing ($wasm_opt): run scripts/setup.sh" >&2
  exit 1
fi
# Precompressed copies beside each file, which the server picks by Accept-Encoding.
compress() {
  gzip -9 -k -f -n "$@"
  if command -v brotli >/dev/null; then brotli -q 11 -k -f "$@"; fi
}
# What the files in pkg/ were made from; equal means there is nothing to redo.
source_stamp="$(sha256sum "$wasm_in" | cut -d' ' -f1) $front_profile $(wasm-bindgen --version)"
$optimise && source_stamp+=" $("$wasm_opt" --version)"
if [[ -f "$pkg/.source" ]] && [[ "$(cat "$pkg/.source")" == "$source_stamp" ]] && [[ -f "$pkg/$hash_file" ]]; then
  echo "==> bundle unchanged: wasm-bindgen and wasm-opt skipped"
else
  rm -f "$pkg/.source" "$pkg/$hash_file" "$pkg/$name".*
  wasm-bindgen --target web --no-typescript --out-name "$name" --out-dir "$pkg" "$wasm_in"
  if $optimise; then
    echo "==> wasm-opt -Oz"
    "$wasm_opt" -Oz --enable-bulk-memory --enable-nontrapping-float-to-int \
      "$pkg/${name}_bg.wasm" -o "$pkg/${name}_bg.wasm"
  fi
  # Content-named files (NAME.<hash>.js/.wasm) may be cached for ever; the server links them
  # through hash.txt, which Leptos reads next to the server binary.
  js_hash=$(sha256sum "$pkg/$name.js" | cut -c1-20)
  wasm_hash=$(sha256sum "$pkg/${name}_bg.wasm" | cut -c1-20)
  mv -f "$pkg/$name.js" "$pkg/$name.$js_hash.js"
  mv -f "$pkg/${name}_bg.wasm" "$pkg/$name.$wasm_hash.wasm"
  compress "$pkg/$name.$js_hash.js" "$pkg/$name.$wasm_hash.wasm"
  printf 'js: %s\nwasm: %s\n' "$js_hash" "$wasm_hash" > "$pkg/$hash_file"
  echo "$source_stamp" > "$pkg/.source"
fi
for dir in target/debug target/release; do
  mkdir -p "$dir" && cp "$pkg/$hash_file" "$dir/$hash_file"
done

cp -r public/. "$site/"
cp style/main.css "$pkg/$name.css"
compress "$pkg/$name.css"

echo "==> server ($profile)"
cargo build --bin "$name" --profile "$profile"
echo "==> built target/$out/$name and $site"
