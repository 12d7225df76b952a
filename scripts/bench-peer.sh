#!/usr/bin/env bash
# TenantAtlas's run engine side by side with Graphile Worker (npm `graphile-worker`, a
# PostgreSQL job queue) on the same PostgreSQL, in one run: enqueue → start p50 / p99 and
# throughput with 1,000 queued. Graphile Worker is installed into a temporary folder (never a
# dependency of the app) and works a no-op task; TenantAtlas works 1-policy runs against the
# zero-latency simulator over 100 tenants (benches/peer.rs).
#
#   scripts/bench-peer.sh [--release] [--jobs N] [--concurrency N]
#
# Prints a Markdown table (docs/benchmarks.md). Needs PostgreSQL (BENCH_POSTGRES_URL, default
# postgres://postgres@127.0.0.1:5432/postgres) and Node.js.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=(--profile dev)
jobs=1000
concurrency=4
latency_jobs=200
interval_ms=50
while [[ $# -gt 0 ]]; do
  case $1 in
    --release) profile=(); shift ;;
    --jobs) jobs=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
pg_url=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
server=${pg_url%/*}

# Graphile Worker, pinned, in a folder of its own outside the repository.
peer_dir=${TMPDIR:-/tmp}/tenantatlas-peer-graphile
graphile_version=0.18.0
if [[ ! -f $peer_dir/node_modules/graphile-worker/package.json ]] ||
  ! grep -q "\"version\": \"$graphile_version\"" "$peer_dir/node_modules/graphile-worker/package.json"; then
  mkdir -p "$peer_dir"
  (cd "$peer_dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund \
    "graphile-worker@$graphile_version" >/dev/null)
fi
cp scripts/peer/graphile.mjs "$peer_dir/graphile.mjs"

cargo bench --bench peer "${profile[@]}" --no-run >/dev/null 2>&1

db=ta_peer_graphile_$RANDOM$RANDOM
psql "$pg_url" -qc "CREATE DATABASE $db"
trap 'psql "$pg_url" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1' EXIT

build=debug
[[ ${#profile[@]} -eq 0 ]] && build=release
echo "$(date -u +%F), $(nproc) cores, TenantAtlas $build build, graphile-worker $graphile_version on Node $(node --version);"
echo "$jobs jobs queued for throughput, $latency_jobs submitted ${interval_ms} ms apart for latency, $concurrency at once"
echo
echo "| queue | enqueue → start p50 / p99 (ms) | throughput (per s) |"
echo "|---|--:|--:|"
(cd "$peer_dir" && node graphile.mjs "$server/$db" "$jobs" "$concurrency" "$latency_jobs" "$interval_ms")
cargo bench --bench peer "${profile[@]}" -q -- --engine both --jobs "$jobs" \
  --concurrency "$concurrency" --latency-jobs "$latency_jobs" --interval-ms "$interval_ms" 2>/dev/null
