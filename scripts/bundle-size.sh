#!/usr/bin/env bash
# The browser bundle's size, as built by scripts/build.sh (size profile + wasm-opt -Oz).
#   scripts/bundle-size.sh           prints raw and gzip -9 sizes of the wasm and the JS glue
#   scripts/bundle-size.sh --check   also fails when the wasm's gzip size is more than 10 % over
#                                    the figure recorded in docs/bundle-size.txt
#   scripts/bundle-size.sh --record  writes the current figure into docs/bundle-size.txt
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=target/site/pkg
record=docs/bundle-size.txt
[[ -f "$pkg/hash.txt" ]] || { echo "no bundle in $pkg: run scripts/build.sh" >&2; exit 1; }
wasm="$pkg/tenantatlas.$(awk '/^wasm:/ { print $2 }' "$pkg/hash.txt").wasm"
js="$pkg/tenantatlas.$(awk '/^js:/ { print $2 }' "$pkg/hash.txt").js"
if ! grep -q wasm-release "$pkg/.source" 2>/dev/null; then
  echo "the bundle in $pkg is not the size-optimised one (FRONT_PROFILE=dev?): run scripts/build.sh" >&2
  exit 1
fi

gz() { gzip -9 -n -c "$1" | wc -c; }
wasm_raw=$(wc -c < "$wasm")
wasm_gz=$(gz "$wasm")
js_gz=$(gz "$js")
printf 'wasm: %d bytes raw, %d bytes gzip -9; js glue: %d bytes gzip -9\n' "$wasm_raw" "$wasm_gz" "$js_gz"

case "${1:-}" in
  --record)
    cat > "$record" <<RECORD
# The browser bundle's size: target/site/pkg/tenantatlas.<hash>.wasm after scripts/build.sh
# (profile wasm-release: opt-level z, LTO; then wasm-opt -Oz from npm's binaryen).
# Measured with: scripts/bundle-size.sh --record
# CI (scripts/test.sh) runs scripts/bundle-size.sh --check, which fails when the gzip size
# grows more than 10 % over wasm_gzip_bytes.
wasm_raw_bytes=$wasm_raw
wasm_gzip_bytes=$wasm_gz
js_gzip_bytes=$js_gz
RECORD
    echo "recorded in $record"
    ;;
  --check)
    recorded=$(awk -F= '/^wasm_gzip_bytes=/ { print $2 }' "$record")
    limit=$((recorded * 110 / 100))
    if ((wasm_gz > limit)); then
      echo "the wasm grew to $wasm_gz bytes gzip, over 110 % of the recorded $recorded ($limit): find what grew (twiggy top), or record the new figure with a reason" >&2
      exit 1
    fi
    echo "within 110 % of the recorded $recorded bytes"
    ;;
esac
