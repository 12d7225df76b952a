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
# too_many_arguments is allowed here: the browser's stub of a server function takes every
# argument of its form (runs/add-policies has nine), and #[server] does not carry an #[allow]
# over to the stub it generates; the server half above keeps the lint.
"${cargo_front[@]}" clippy --lib --target wasm32-unknown-unknown --no-default-features --features hydrate \
  --target-dir target/front --quiet ${FRONT_EXTRA_ARGS:-} -- -D warnings -A clippy::too_many_arguments
