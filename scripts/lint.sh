#!/usr/bin/env bash
# Formatting and clippy (warnings are errors) for both halves: the server and the browser bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo clippy --lib --target wasm32-unknown-unknown --no-default-features --features hydrate \
  --target-dir target/front --quiet -- -D warnings
