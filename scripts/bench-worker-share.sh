#!/usr/bin/env bash
# The worker's rate as a share of Graph only (issue 11 §3), over several runs: one run of
# `benches/runs.rs --worker-only` per engine in turn, N times, each in a new process and a new
# database; every run's share, then the median and the range per engine. One run says little on
# these 2 cores: identical passes of Graph only took 3.3 to 5.5 s within minutes (2026-12-05).
#   scripts/bench-worker-share.sh [runs per engine, default 5] [--profile dev]
# Release by default (about 30 s per run after the build).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-5}
shift || true
if ! [[ "$runs" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: scripts/bench-worker-share.sh [runs per engine, 1 or more] [cargo bench options]" >&2
  exit 2
fi
cargo bench --bench runs --no-run "$@"
out=$(mktemp)
progress=$(mktemp)
trap 'rm -f "$out" "$progress"' EXIT
for ((i = 1; i <= runs; i++)); do
  for engine in sqlite postgres; do
    # The bench's progress lines only when it fails.
    if ! cargo bench --bench runs "$@" -- --engine "$engine" --worker-only >"$out" 2>"$progress"; then
      cat "$progress" >&2
      exit 1
    fi
    # | engine | items | status | succeeded | failed | skipped | Graph requests | time s | items/s | Graph only items/s |
    awk -F'|' -v run="$i" '$3 ~ /^ *10000 *$/ && $4 ~ /completed/ {
        gsub(/ /, "", $2); gsub(/ /, "", $10); gsub(/ /, "", $11)
        printf "run %d %s worker %s items/s, Graph only %s items/s, share %.1f %%\n", run, $2, $10, $11, 100 * $10 / $11
      }' "$out"
  done
done | tee /dev/stderr | awk '{ share[$3] = share[$3] " " $12 }
  END {
    for (engine in share) {
      n = split(share[engine], v, " ")
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      median = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      printf "%s: median share %.1f %% over %d runs (%s to %s %%)\n", engine, median, n, v[1], v[n]
    }
  }'
