#!/usr/bin/env bash
# README command 1: set up, build, and serve the app on its embedded default (SQLite under
# data/, demo tenants and inventory) at http://127.0.0.1:3000. Extra arguments go to `serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
exec target/debug/tenantatlas serve --demo "$@"
