#!/usr/bin/env bash
# The browser bundle's size, as built by scripts/build.sh (size profile, split at the lazy
# routes, wasm-opt -Oz), in gzip -9 bytes:
#   - main: the main module, which every first visit loads (shell, router, tenant layout, the
#     components they share, Leptos itself);
#   - largest page: the main module plus the chunks the heaviest page's lazy route needs (from the
#     prefetch map), what the first visit of that page loads;
#   - all: every wasm file of the bundle.
#   scripts/bundle-size.sh           prints the figures
#   scripts/bundle-size.sh --check   also fails when the main module or the largest page is more
#                                    than 10 % over the figures recorded in docs/bundle-size.txt
#   scripts/bundle-size.sh --record  writes the current figures into docs/bundle-size.txt, keeping
#                                    its comment lines (add a history line saying why)
set -euo pipefail
cd "$(dirname "$0")/.."

pkg=target/site/pkg
record=docs/bundle-size.txt
bundle=$(awk '/^bundle:/ { print $2 }' "$pkg/hash.txt" 2>/dev/null || true)
dir="$pkg/b-$bundle"
[[ -n "$bundle" && -d "$dir" ]] || { echo "no bundle in $pkg: run scripts/build.sh" >&2; exit 1; }
if ! grep -q wasm-release target/site/.bundle-source 2>/dev/null; then
  echo "the bundle in $pkg is not the size-optimised one (FRONT_PROFILE=dev?): run scripts/build.sh" >&2
  exit 1
fi

# One line per figure: name value. The per-page sum reads the prefetch map the splitter wrote.
figures=$(python3 - "$dir" <<'PY'
import gzip, json, os, sys
d = sys.argv[1]
gz = lambda name: len(gzip.compress(open(os.path.join(d, name), "rb").read(), 9, mtime=0))
main = gz("tenantatlas.wasm")
wasm = [f for f in os.listdir(d) if f.endswith(".wasm")]
manifest = json.load(open(os.path.join(d, "__wasm_split_manifest.json")))
pages = {split: main + sum(gz(stem + ".wasm") for stem in stems) for split, stems in manifest.items()}
page, largest = max(pages.items(), key=lambda item: item[1]) if pages else ("none", main)
js = sum(gz(f) for f in os.listdir(d) if f.endswith(".js"))
print("main_gzip", main)
print("largest_page_gzip", largest)
print("largest_page", page)
print("all_wasm_gzip", sum(gz(f) for f in wasm))
print("wasm_files", len(wasm))
print("js_gzip", js)
print("main_raw", os.path.getsize(os.path.join(d, "tenantatlas.wasm")))
PY
)
get() { awk -v k="$1" '$1 == k { print $2 }' <<<"$figures"; }
printf 'main module: %d bytes gzip -9 (%d raw)\n' "$(get main_gzip)" "$(get main_raw)"
printf 'largest page (%s): %d bytes gzip -9, main module included\n' "$(get largest_page)" "$(get largest_page_gzip)"
printf 'all %d wasm files: %d bytes gzip -9; js glue and loader: %d bytes gzip -9\n' \
  "$(get wasm_files)" "$(get all_wasm_gzip)" "$(get js_gzip)"

case "${1:-}" in
  --record)
    # The comment lines (the header and the history of the figures) stay; add a line to the
    # history saying why the figures changed.
    comments=$(grep '^#' "$record" 2>/dev/null || true)
    if [[ -z "$comments" ]]; then
      comments="# The browser bundle's size after scripts/build.sh (profile wasm-release: opt-level z, LTO; split
# at the lazy routes; wasm-opt -Oz from npm's binaryen), gzip -9 bytes of target/site/pkg/b-<hash>/.
# Measured with: scripts/bundle-size.sh --record
# CI (scripts/test.sh) runs scripts/bundle-size.sh --check, which fails when the main module or the
# largest page grows more than 10 % over the figures below."
    fi
    cat > "$record" <<RECORD
$comments
main_gzip_bytes=$(get main_gzip)
largest_page_gzip_bytes=$(get largest_page_gzip)
all_wasm_gzip_bytes=$(get all_wasm_gzip)
js_gzip_bytes=$(get js_gzip)
RECORD
    echo "recorded in $record"
    ;;
  --check)
    for figure in main largest_page; do
      recorded=$(awk -F= -v k="${figure}_gzip_bytes" '$1 == k { print $2 }' "$record")
      now=$(get "${figure}_gzip")
      limit=$((recorded * 110 / 100))
      if ((now > limit)); then
        echo "the bundle's $figure grew to $now bytes gzip, over 110 % of the recorded $recorded ($limit): find what grew (twiggy top), or record the new figure with a reason" >&2
        exit 1
      fi
      echo "$figure: within 110 % of the recorded $recorded bytes"
    done
    ;;
esac
