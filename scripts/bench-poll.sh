#!/usr/bin/env bash
# What a poll costs: requests per second of /healthz, the run detail poll (`runs/version`,
# answered "unchanged", against `runs/get`, the full answer with a page of 100 items) and the
# run panel poll (`runs/for-backup-set/version` against `runs/for-backup-set`), in one run,
# as ratios to /healthz. Needs PostgreSQL on 127.0.0.1:5432 (trust auth), Debian's wrk (installed
# when missing) and a built server (scripts/build.sh; BIN=target/release/tenantatlas for the
# release build).
# Creates the database ta_bench_poll (dropped at the end) with a finished run of 1,000 items,
# serves on 127.0.0.1:3998, signs in, and runs wrk for DURATION (default 10 s) per endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
bin=${BIN:-target/debug/tenantatlas}
duration=${DURATION:-10s}
connections=${CONNECTIONS:-8}
admin=postgres://postgres@127.0.0.1:5432/postgres
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/ta_bench_poll
psql "$admin" -qc "DROP DATABASE IF EXISTS ta_bench_poll" -c "CREATE DATABASE ta_bench_poll"
"$bin" seed-demo >/dev/null 2>&1
psql "$DATABASE_URL" -q <<'SQL'
INSERT INTO policies (tenant_id, graph_id, policy_type, display_name, platform, synced_at)
SELECT 1, 'bench-' || g, 'compliance', 'Bench policy ' || g, 'windows10', 0
FROM generate_series(1, 1000) g;
INSERT INTO backup_sets (tenant_id, name, description, created_at) VALUES (1, 'Poll bench', '', 0);
INSERT INTO runs (tenant_id, operation_type, resource, action, target_id, input, idempotency_key,
                  status, total_items, processed_items, succeeded, created_at, finished_at)
SELECT 1, 'backup_set.add_policies', 'backup_set', 'add_policies', max(id), '{}', 'poll-1k',
       'completed', 1000, 1000, 1000, 0, 1 FROM backup_sets;
INSERT INTO run_items (tenant_id, run_id, policy_id, outcome, message, finished_at)
SELECT 1, r.id, p.id, 'succeeded', 'captured', 1764750902123
FROM runs r JOIN policies p ON p.graph_id LIKE 'bench-%' WHERE r.idempotency_key = 'poll-1k';
ANALYZE;
SQL
"$bin" --log warn serve --addr 127.0.0.1:3998 >/tmp/bench-poll-server.log 2>&1 &
server=$!
work=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$work"; psql "$admin" -qc "DROP DATABASE IF EXISTS ta_bench_poll" 2>/dev/null' EXIT
for _ in $(seq 1 50); do curl -sf http://127.0.0.1:3998/healthz >/dev/null && break; sleep 0.2; done
curl -s -c "$work/jar" -o /dev/null -H 'Origin: http://127.0.0.1:3998' --data-urlencode 'email=admin@contoso.example' \
  --data-urlencode 'password=tenantatlas-demo' --data-urlencode 'next=/' http://127.0.0.1:3998/api/auth/sign-in
cookie=$(awk '!/^#/ && NF >= 7 {print $6 "=" $7} /^#HttpOnly_/ {print $6 "=" $7}' "$work/jar" | head -1)
tenant=6f1c2a3b-0000-4000-8000-00000000c0de
run=$(psql "$DATABASE_URL" -Atc "SELECT id FROM runs WHERE idempotency_key = 'poll-1k'")
set_id=$(psql "$DATABASE_URL" -Atc "SELECT target_id FROM runs WHERE id = $run")
post() { # name, endpoint, form
  cat > "$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = "$3"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Origin"] = "http://127.0.0.1:3998"
wrk.headers["Cookie"] = "$cookie"
LUA
  check=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Origin: http://127.0.0.1:3998' \
    -H "Cookie: $cookie" --data "$3" "http://127.0.0.1:3998/api/$2")
  [[ $check == 200 ]] || { echo "$2 answered $check" >&2; exit 1; }
  rate "$1" -s "$work/$1.lua" "http://127.0.0.1:3998/api/$2"
}
rate() { # name, wrk args…
  local name=$1; shift
  local rps
  rps=$(wrk -t2 -c"$connections" -d"$duration" "$@" | awk '/Requests\/sec/ {print $2}')
  echo "$name $rps"
}
{
  rate healthz http://127.0.0.1:3998/healthz
  post detail_unchanged runs/version "tenant=$tenant&id=$run"
  post detail_full runs/get "tenant=$tenant&id=$run&outcome=&offset=0&limit=0"
  post panel_unchanged runs/for-backup-set/version "tenant=$tenant&backup_set_id=$set_id"
  post panel_full runs/for-backup-set "tenant=$tenant&backup_set_id=$set_id"
} > "$work/rates"
base=$(awk '$1 == "healthz" {print $2}' "$work/rates")
printf '%-18s %10s %8s\n' endpoint 'req/s' 'of /healthz'
awk -v base="$base" '{printf "%-18s %10.0f %7.1f %%\n", $1, $2, 100 * $2 / base}' "$work/rates"
echo "RSS after: $(ps -o rss= -p "$server") kB"
