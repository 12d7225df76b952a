#!/usr/bin/env bash
# README command 2: set up and run every test.
#   0. the browser bundle's gzip size stays within 110 % of docs/bundle-size.txt,
#   1. Playwright in headless Chromium against a freshly built server (end2end/),
#   2. unit and integration tests on SQLite and PostgreSQL (cargo nextest; each integration test
#      runs once per engine, on a database of its own).
# Ends with nextest's summary line; exits non-zero if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh --test || exit 1
scripts/build.sh || exit 1
scripts/bundle-size.sh --check || exit 1

# Each test creates a database of its own and leaves it (about 1.5 GB for a whole run): they are
# dropped before the tests (an interrupted earlier run's) and after them.
admin_url=${TEST_POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
drop_test_databases() {
  psql "$admin_url" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'ta\_test\_%'" 2>/dev/null |
    while read -r db; do psql "$admin_url" -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1; done
}
drop_test_databases

echo "==> Playwright (headless Chromium)"
(cd end2end && npx playwright test)
e2e=$?

echo "==> cargo nextest (SQLite and PostgreSQL)"
cargo nextest run --no-fail-fast
unit=$?
drop_test_databases

[[ $e2e -eq 0 && $unit -eq 0 ]]
