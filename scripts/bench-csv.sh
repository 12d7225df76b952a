#!/usr/bin/env bash
# Server memory while streaming a run's items as CSV: 10,000 rows against 200,000 rows.
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth) and a built server (scripts/build.sh).
# Creates the database ta_bench_csv (dropped at the end), seeds the demo accounts, inserts two
# finished runs of 10,000 and 200,000 items, serves on 127.0.0.1:3999, signs in, downloads each
# file twice while sampling the server's RSS every 50 ms, and prints the growth.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/debug/tenantatlas}
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/ta_bench_csv
psql "$admin" -qc "DROP DATABASE IF EXISTS ta_bench_csv" -c "CREATE DATABASE ta_bench_csv"
"$bin" seed-demo >/dev/null 2>&1
psql "$DATABASE_URL" -q <<'SQL'
INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at)
SELECT 1, 'bench-' || g, 'compliance', 'Bench policy ' || g || ', "quoted"', 'windows10', 0
FROM generate_series(1, 200000) g;
INSERT INTO backup_sets (tenant_id, name, description, created_at) VALUES (1, 'CSV bench', '', 0);
INSERT INTO runs (tenant_id, operation_type, resource, action, target_id, input, idempotency_key,
                  status, total_items, processed_items, succeeded, created_at, finished_at)
SELECT 1, 'backup_set.add_policies', 'backup_set', 'add_policies', max(id), '{}', k, 'completed',
       n, n, n, 0, 1
FROM backup_sets, (VALUES ('csv-10k', 10000), ('csv-200k', 200000)) AS sizes(k, n) GROUP BY k, n;
INSERT INTO run_items (tenant_id, run_id, policy_id, outcome, message, finished_at)
SELECT 1, r.id, p.id, 'succeeded', 'captured', 1764750902123
FROM runs r JOIN policies p ON p.graph_id LIKE 'bench-%'
WHERE (r.idempotency_key = 'csv-200k') OR (r.idempotency_key = 'csv-10k' AND p.id <= (
  SELECT id FROM policies WHERE graph_id = 'bench-10000'));
ANALYZE;
SQL
"$bin" serve --addr 127.0.0.1:3999 >/tmp/bench-csv-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; psql "$admin" -qc "DROP DATABASE IF EXISTS ta_bench_csv" 2>/dev/null' EXIT
for _ in $(seq 1 50); do curl -sf http://127.0.0.1:3999/healthz >/dev/null && break; sleep 0.2; done
jar=$(mktemp)
curl -s -c "$jar" -o /dev/null -H 'Origin: http://127.0.0.1:3999' --data-urlencode 'email=admin@contoso.example' \
  --data-urlencode 'password=tenantatlas-demo' --data-urlencode 'next=/' http://127.0.0.1:3999/api/auth/sign-in
tenant=6f1c2a3b-0000-4000-8000-00000000c0de
measure() {
  local run=$1 out before peak rss fetch start
  out=$(mktemp)
  before=$(ps -o rss= -p "$server"); peak=$before
  start=$(date +%s.%N)
  curl -s -b "$jar" -o "$out" "http://127.0.0.1:3999/t/$tenant/runs/$run/items.csv" &
  fetch=$!
  while kill -0 "$fetch" 2>/dev/null; do
    rss=$(ps -o rss= -p "$server"); ((rss > peak)) && peak=$rss; sleep 0.05
  done
  printf '%8d rows  %9d bytes  %5.2f s  RSS before %6d kB  peak %6d kB  growth %5d kB\n' \
    "$(($(wc -l < "$out") - 1))" "$(wc -c < "$out")" "$(echo "$(date +%s.%N) - $start" | bc)" \
    "$before" "$peak" "$((peak - before))"
  rm -f "$out"
}
ids=$(psql "$DATABASE_URL" -Atc "SELECT id FROM runs WHERE idempotency_key IN ('csv-10k','csv-200k') ORDER BY total_items")
for round in 1 2; do for run in $ids; do measure "$run"; done; done
