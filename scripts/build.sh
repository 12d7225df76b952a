#!/usr/bin/env bash
# Builds the browser bundle and the server without cargo-leptos (why: docs/build.md):
#   1. the hydrate library for wasm32-unknown-unknown with the size profile (`wasm-release`:
#      opt-level z, LTO), in its own target dir so server and front builds never invalidate
#      each other,
#   2. the split at the lazy routes (scripts/wasm-split), wasm-bindgen, then wasm-opt -Oz
#      (npm's binaryen, installed by setup.sh) on the main module and every chunk, into
#      target/site/pkg/b-<hash of the bundle>, with gzip and brotli copies beside the files;
#      these steps are skipped when the wasm they start from has not changed since the last
#      build,
#   3. public/ and the stylesheet into target/site,
#   4. the server binary with the ssr feature, built beside steps 1 to 3 (its own target dir):
#      on two cores each build's serial stretches (the bundle's LTO, a link) leave a core to the
#      other.
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
wasm_opt=end2end/node_modules/binaryen/index.js
hash_file=hash.txt
# Installed by scripts/setup.sh from scripts/wasm-split.
splitter=tenantatlas-wasm-split

# The offline toolchain fallback (scripts/setup.sh) leaves its choice here.
cargo_front=(cargo)
if [[ -f target/.front-toolchain ]]; then
  # shellcheck disable=SC1091
  source target/.front-toolchain
fi

echo "==> server ($profile), beside the bundle"
# In a process group of its own (job control on for the `&`), so that it can be stopped whole:
# cargo does not pass a signal on to its rustc processes. A failed step, Ctrl-C or a signal
# stops the script (bash runs the EXIT trap then too), and the server's build must not outlive
# it.
set -m
cargo build --bin "$name" --profile "$profile" &
server_build=$!
set +m
stop_server_build() { kill -- -"$server_build" 2>/dev/null || true; }
trap stop_server_build EXIT

echo "==> browser bundle ($front_profile)"
"${cargo_front[@]}" build --lib --target wasm32-unknown-unknown --no-default-features --features hydrate \
  --target-dir target/front --profile "$front_profile" ${FRONT_EXTRA_ARGS:-}

mkdir -p "$pkg"
wasm_in="target/front/wasm32-unknown-unknown/$front_out/$name.wasm"
optimise=false
[[ "$front_profile" != dev ]] && optimise=true
if $optimise && [[ ! -f "$wasm_opt" ]]; then
  echo "binaryen is missing ($wasm_opt): run scripts/setup.sh" >&2
  exit 1
fi
if ! command -v "$splitter" >/dev/null; then
  echo "the wasm splitter is missing ($splitter): run scripts/setup.sh" >&2
  exit 1
fi
# Precompressed copies beside each file, which the server picks by Accept-Encoding.
compress() {
  gzip -9 -k -f -n "$@"
  if command -v brotli >/dev/null; then brotli -q 11 -k -f "$@"; fi
}
# What the files in pkg/ were made from; equal means there is nothing to redo. The build's own
# files (this stamp, the next bundle while it is written) stay outside pkg/, which the server
# publishes.
stamp="$site/.bundle-source"
source_stamp="$(sha256sum "$wasm_in" | cut -d' ' -f1) $front_profile $(wasm-bindgen --version) $("$splitter" --version)"
$optimise && source_stamp+=" $(node scripts/wasm-opt.mjs --version)"
current_bundle() { awk '/^bundle:/ { print $2 }' "$pkg/$hash_file" 2>/dev/null || true; }
if [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$source_stamp" ]] \
  && [[ -n "$(current_bundle)" ]] && [[ -d "$pkg/b-$(current_bundle)" ]]; then
  echo "==> bundle unchanged: split, wasm-bindgen and wasm-opt skipped"
else
  previous=$(current_bundle)
  rm -f "$stamp" "$pkg/$hash_file"
  next="$site/.bundle-next"
  rm -rf "$next"
  # The lazy routes' chunks, their loader and the prefetch map; then the main module's JS glue.
  echo "==> split at the lazy routes"
  "$splitter" "$wasm_in" "$next" "$name" >/dev/null
  wasm-bindgen --target web --no-typescript --keep-lld-exports --no-demangle --out-name "$name" \
    --out-dir "$next" "$next/${name}_split.wasm"
  rm "$next/${name}_split.wasm"
  mv "$next/${name}_bg.wasm" "$next/$name.wasm"
  if $optimise; then
    echo "==> wasm-opt -Oz"
    # Two processes for the two cores: the main module alone (the longest), every chunk in the
    # other. binaryen warns about the name subsections rustc writes; nothing to act on.
    opt() { node scripts/wasm-opt.mjs "$@" 2> >(grep -v '^warning: unknown name subsection' >&2); }
    opt "$next/$name.wasm" & main_opt=$!
    chunks=()
    for wasm in "$next"/*.wasm; do [[ "$wasm" != "$next/$name.wasm" ]] && chunks+=("$wasm"); done
    ((${#chunks[@]} == 0)) || opt "${chunks[@]}"
    wait "$main_opt"
  fi
  # The bundle's folder is named after the content of all its files, so every file in it may be
  # cached for ever; the files keep the names they import each other by. The server links the
  # folder named in hash.txt, next to its binary.
  bundle=$(cd "$next" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-20)
  compress "$next"/*.js "$next"/*.wasm
  # The previous bundle stays one build longer: a page still open on it loads its chunks from
  # there when it navigates to an area it has not shown yet.
  for old in "$pkg"/b-*; do
    [[ -d "$old" && "$old" != "$pkg/b-$previous" && "$old" != "$pkg/b-$bundle" ]] && rm -rf "$old"
  done
  rm -f "$pkg/$name".*.js* "$pkg/$name".*.wasm*
  [[ -d "$pkg/b-$bundle" ]] && rm -rf "$next" || mv "$next" "$pkg/b-$bundle"
  printf 'bundle: %s\n' "$bundle" > "$pkg/$hash_file"
  echo "$source_stamp" > "$stamp"
fi
for dir in target/debug target/release; do
  mkdir -p "$dir" && cp "$pkg/$hash_file" "$dir/$hash_file"
done

cp -r public/. "$site/"
cp style/main.css "$pkg/$name.css"
compress "$pkg/$name.css"

if ! wait "$server_build"; then
  echo "the server's build failed (its errors are above)" >&2
  exit 1
fi
trap - EXIT
echo "==> built target/$out/$name and $site"
