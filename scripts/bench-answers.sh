#!/usr/bin/env bash
# Large-answer benchmark: how fast Quarry writes an answer of many rows as NDJSON
# and CSV, streamed to the caller (GET with Accept) and as a job's stored result,
# against a baseline measured in the same run: psql's COPY ... TO STDOUT (CSV) of
# the very same SQL as the reader role, the fastest way PostgreSQL hands out rows.
# For each size it prints rows/s, the ratio to COPY, and the server's resident
# memory before and at its peak during the case (flat memory: the peak does not
# grow with the size). A job's time is its own, started_at to finished_at (the
# query and the writing of its object); the download through the job's link
# (served by the API from the results folder) is measured on its own.
#   scripts/bench-answers.sh [ROWS[,ROWS...]]      (default 100000,1000000)
# The answer is bench/packs/bench_rows (integer, text, numeric, timestamptz,
# boolean and a half-null text column), served beside the shipped packs.
# BENCH_NO_BUILD=1 measures the existing release binary.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
sizes="${1:-100000,1000000}"
port="${BENCH_PORT:-18483}"
db=quarry_bench_answers
url="${QUARRY_ADMIN_URL%/*}/$db"
work="$(mktemp -d)"
server_pid=""
sampler_pid=""
cleanup() {
  set +e
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
started_at=$(date +%s)
if [ "${BENCH_NO_BUILD:-}" != "1" ]; then
  ensure_build_deps
  log "building quarry (release)"
  cargo build --release -q -p quarry-cli
fi
bin=./target/release/quarry
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" 2>/dev/null
export DATABASE_URL="$url"
$bin migrate >/dev/null
reader_url=$(python3 - "$url" "${QUARRY_READER_PASSWORD:-}" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
auth = "quarry_reader" + (":" + u.quote(sys.argv[2], safe="") if sys.argv[2] else "")
print(u.urlunsplit((p.scheme, f"{auth}@{p.hostname}:{p.port or 5432}", p.path, p.query, "")))
PY
)
mkdir -p "$work/queries"
cp queries/*.yaml queries/*.sql bench/packs/bench_rows.* "$work/queries/"
export QUARRY_QUERIES_DIR="$work/queries" QUARRY_DATA_DIR="$work/state" QUARRY_LOG=warn
$bin serve --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.5; done
curl -sf "http://127.0.0.1:$port/health" >/dev/null || { echo "error: quarry serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status"; }
sample() { # in the background: the largest VmRSS of the server until killed
  local peak=0 v
  trap 'echo "$peak" > "$work/peak"; exit 0' TERM
  while :; do
    v=$(rss_kb); [ "${v:-0}" -gt "$peak" ] && peak=$v
    sleep 0.02
  done
}
results="$work/results.tsv"
: > "$results"
measure() { # measure NAME ROWS EXPECTED_LINES COMMAND...: time COMMAND, count its lines in $work/out
  local name="$1" rows="$2" lines="$3" t0 t1 before got
  shift 3
  before=$(rss_kb)
  sample & sampler_pid=$!
  t0=$(date +%s.%N)
  "$@"
  t1=$(date +%s.%N)
  # A case that knows its own span better (a job: started_at to finished_at).
  if [ -s "$work/span" ]; then read -r t0 t1 < "$work/span"; : > "$work/span"; fi
  kill "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""
  got=$(wc -l < "$work/out")
  if [ "$got" != "$lines" ]; then
    printf '%s\t%s\tFAILED\t%s\t\t\n' "$name" "$rows" "$(head -c 300 "$work/out" | tr '\n\t' '  ')" >> "$results"
    return 1
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$rows" "$t0" "$t1" "$before" "$(cat "$work/peak")" >> "$results"
}
copy_case() {
  psql "$reader_url" -qc "COPY ($(sed "s/{{ rows }}/$1/" bench/packs/bench_rows.sql)) TO STDOUT WITH (FORMAT csv)" > "$work/out"
}
stream_case() { # stream_case ROWS ACCEPT
  curl -sf -H "Accept: $2" "http://127.0.0.1:$port/analytics/bench_rows?rows=$1" -o "$work/out"
}
job_case() { # job_case ROWS FORMAT: submit, wait; its span is the job's started_at to finished_at
  local loc state body
  loc=$(curl -sf -o /dev/null -w '%header{location}' -H 'Content-Type: application/json' \
    -d "{\"operation\":\"bench_rows\",\"parameters\":{\"rows\":$1},\"format\":\"$2\"}" \
    "http://127.0.0.1:$port/analytics/jobs")
  echo "$loc" > "$work/job"
  while :; do
    body=$(curl -sf "http://127.0.0.1:$port$loc")
    state=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' <<< "$body")
    case "$state" in succeeded) break ;; failed) echo "FAILED: $body" > "$work/out"; return 0 ;; esac
    sleep 0.05
  done
  python3 -c '
import json, sys
from datetime import datetime
j = json.load(sys.stdin)
ts = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
print(ts(j["started_at"]), ts(j["finished_at"]))' <<< "$body" > "$work/span"
  curl -sfL "http://127.0.0.1:$port$loc/result" -o "$work/out"
}
download_case() { # the last job's stored result through its link
  curl -sfL "http://127.0.0.1:$port$(cat "$work/job")/result" -o "$work/out"
}
IFS=, read -ra ns <<< "$sizes"
for n in "${ns[@]}"; do
  log "$n rows: COPY baseline, streamed NDJSON and CSV, jobs"
  # A case that fails is reported as such in the table (and the others still run).
  measure "psql COPY ... TO STDOUT (CSV)" "$n" "$n" copy_case "$n" || true
  measure "streamed NDJSON (GET, Accept)" "$n" "$n" stream_case "$n" application/x-ndjson || true
  measure "streamed CSV (GET, Accept)" "$n" "$((n + 1))" stream_case "$n" text/csv || true
  measure "job, stored NDJSON result" "$n" "$n" job_case "$n" ndjson || true
  measure "job, stored CSV result" "$n" "$((n + 1))" job_case "$n" csv || true
  measure "download of that result (link)" "$n" "$((n + 1))" download_case || true
done
commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- engine queries 2>/dev/null || echo '+uncommitted')"
python3 - "$results" "$commit" "$(nproc)" "$(( $(date +%s) - started_at ))" <<'PY'
import sys
path, commit, cores, elapsed = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path)]
base = {}
print(f"\nLarge answers: bench/packs/bench_rows (6 columns), quarry {commit}; server, client and PostgreSQL share {cores} cores.")
print("Baseline: psql COPY (the same SQL) TO STDOUT WITH CSV as quarry_reader, in the same run.\n")
hdr = f"{'case':<32} {'rows':>9} {'seconds':>8} {'rows/s':>10} {'vs COPY':>8} {'RSS before':>10} {'RSS peak':>9}  goal 200k rows/s"
print(hdr); print("-" * len(hdr))
for name, n, t0, t1, before, peak in rows:
    if t0 == "FAILED":
        print(f"{name:<32} {int(n):>9,} FAILED: {t1}")
        continue
    s = float(t1) - float(t0); rate = int(n) / s
    if name.startswith("psql"):
        base[n] = rate
    ratio = rate / base[n] if n in base else float("nan")
    mb = lambda kb: f"{int(kb) / 1024:.0f} MB" if kb else "-"
    goal = "" if name.startswith("psql") else ("PASS" if rate >= 200_000 else "MISS")
    print(f"{name:<32} {int(n):>9,} {s:>8.2f} {rate:>10,.0f} {ratio:>7.2f}x {mb(before):>10} {mb(peak):>9}  {goal}")
print(f"\nwhole run {elapsed} s")
PY
