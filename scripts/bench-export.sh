#!/usr/bin/env bash
# Time and server memory of a backup set's ZIP export: a set of 1,000 policies against one of
# 10,000. Needs PostgreSQL on 127.0.0.1:5432 (trust auth), python3, and a built server
# (scripts/build.sh, or `cargo build --bin tenantatlas`; BIN=target/release/tenantatlas for the
# release build). Creates the database ta_bench_export (dropped at the end), seeds the demo
# accounts, inserts 10,000 device configuration policies with one stored version each (40
# settings and an assignment, about 1.5 kB of JSON) and two backup sets holding the first 1,000
# and all 10,000 of them, serves on 127.0.0.1:3998, signs in, downloads each export twice while
# sampling the server's RSS every 50 ms, checks every download with Python's zipfile (CRCs and
# entry count) and `unzip -t`, and prints time, size and RSS growth.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BIN:-target/debug/tenantatlas}
port=3998
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/ta_bench_export
tenant=6f1c2a3b-0000-4000-8000-00000000c0de
psql "$admin" -qc "DROP DATABASE IF EXISTS ta_bench_export" -c "CREATE DATABASE ta_bench_export"
"$bin" seed-demo >/dev/null 2>&1
psql "$DATABASE_URL" -q -v tenant="$tenant" <<'SQL'
CREATE TEMP TABLE t AS SELECT id FROM tenants WHERE external_id = :'tenant';
INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at)
SELECT (SELECT id FROM t), 'bench-' || lpad(g::text, 5, '0'), 'device_configuration',
       'Bench policy ' || g || ' | "quoted"', 'windows10', 0
FROM generate_series(1, 10000) g;
INSERT INTO policy_snapshots (tenant_id, policy_id, content_hash, payload, captured_at)
SELECT p.tenant_id, p.id, md5(p.graph_id) || md5(p.graph_id || 'x'),
       '{"policyType":"device_configuration","policy":{"@odata.type":'
       || '"#microsoft.graph.windows10GeneralConfiguration","displayName":"Bench policy '
       || p.id || '",' || (SELECT string_agg('"benchSetting' || s || '":' || CASE s % 3
            WHEN 0 THEN 'true' WHEN 1 THEN (s * 7 + p.id)::text ELSE '"value ' || s || '"' END, ',')
          FROM generate_series(1, 40) s)
       || '},"assignments":[{"target":{"@odata.type":"#microsoft.graph.allDevicesAssignmentTarget"}}]}',
       1764750902123
FROM policies p WHERE p.graph_id LIKE 'bench-%';
INSERT INTO backup_sets (tenant_id, name, description, created_at)
SELECT (SELECT id FROM t), name, 'bench', 0 FROM (VALUES ('Export 1k'), ('Export 10k')) AS n(name);
INSERT INTO backup_items (tenant_id, backup_set_id, policy_id, snapshot_id, captured_at)
SELECT s.tenant_id, b.id, s.policy_id, s.id, s.captured_at
FROM policy_snapshots s JOIN policies p ON p.id = s.policy_id
JOIN backup_sets b ON b.tenant_id = s.tenant_id
WHERE p.graph_id LIKE 'bench-%'
  AND (b.name = 'Export 10k' OR (b.name = 'Export 1k' AND p.graph_id <= 'bench-01000'));
UPDATE backup_sets b SET item_count = (SELECT COUNT(*) FROM backup_items i WHERE i.backup_set_id = b.id);
ANALYZE;
SQL
"$bin" serve --addr 127.0.0.1:$port >/tmp/bench-export-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; psql "$admin" -qc "DROP DATABASE IF EXISTS ta_bench_export" 2>/dev/null' EXIT
for _ in $(seq 1 100); do curl -sf http://127.0.0.1:$port/healthz >/dev/null && break; sleep 0.2; done
sleep 2 # the worker's first claims (the demo's drift check) settle
jar=$(mktemp)
curl -s -c "$jar" -o /dev/null -H "Origin: http://127.0.0.1:$port" \
  --data-urlencode 'email=readonly@contoso.example' --data-urlencode 'password=tenantatlas-demo' \
  --data-urlencode 'next=/' http://127.0.0.1:$port/api/auth/sign-in
measure() {
  local set=$1 out before peak rss fetch start elapsed entries
  out=$(mktemp)
  before=$(ps -o rss= -p "$server"); peak=$before
  start=$(date +%s.%N)
  curl -s -f -b "$jar" -o "$out" "http://127.0.0.1:$port/t/$tenant/backup-sets/$set/export.zip" &
  fetch=$!
  while kill -0 "$fetch" 2>/dev/null; do
    rss=$(ps -o rss= -p "$server"); ((rss > peak)) && peak=$rss; sleep 0.05
  done
  wait "$fetch"
  elapsed=$(echo "$(date +%s.%N) - $start" | bc)
  entries=$(python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; print(len(z.infolist()))' "$out")
  unzip -tqq "$out"
  printf '%6d policies  %9d bytes  %6.2f s  RSS before %6d kB  peak %6d kB  growth %5d kB\n' \
    "$((entries - 2))" "$(wc -c < "$out")" "$elapsed" "$before" "$peak" "$((peak - before))"
  rm -f "$out"
}
ids=$(psql "$DATABASE_URL" -Atc "SELECT id FROM backup_sets WHERE name IN ('Export 1k','Export 10k') ORDER BY item_count")
echo "$bin, $(date -u +%F)"
for round in 1 2; do for set in $ids; do measure "$set"; done; done
