#!/usr/bin/env bash
# Formatting and clippy (warnings are errors) for both halves: the server and the browser bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
# The browser half with the toolchain build.sh uses (the offline fallback of scripts/setup.sh
# leaves its choice in target/.front-toolchain).
cargo_front=(cargo)
if [[ -f target/.front-toolchain ]]; then
  # shellcheck disable=SC1091
  source target/.front-toolchain
fi
"${cargo_front[@]}" clippy --lib --target wasm32-unknown-unknown --no-default-features --features hydrate \
  --target-dir target/front --quiet ${FRONT_EXTRA_ARGS:-} -- -D warnings
