#!/usr/bin/env bash
# Job drain benchmark: submits N jobs (default 2,000) to a local `quarry serve`
# (release build, the small fixture dataset, default [jobs] settings) as fast
# as one client can, waits until every job has finished, and compares the drain
# time (first submission to last finish) with the work itself: the sum of the
# jobs' run times divided by the runner's concurrency. A ratio near 1 means the
# backlog drains at the speed of the work, not of the runner's poll.
#   scripts/bench-jobs.sh [JOBS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
N="${1:-2000}"
CONCURRENCY="${QUARRY_JOBS__CONCURRENCY:-2}"
work="$(mktemp -d)"
db="quarry_bench_jobs"
url="${QUARRY_ADMIN_URL%/*}/$db"
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
cargo build --release -q -p quarry-cli
bin=./target/release/quarry
export DATABASE_URL="$url"
$bin migrate >/dev/null
psql "$url" -q -f tests/fixtures/small.sql
# The per-client rate limit is lifted: this measures the runner, not the limiter.
QUARRY_DATA_DIR="$work/data" QUARRY_JOBS__CONCURRENCY="$CONCURRENCY" \
    QUARRY_API__RATE_LIMIT_PER_SECOND=1000000 QUARRY_API__RATE_LIMIT_BURST=1000000 \
    $bin serve --listen 127.0.0.1:0 > "$work/serve.log" 2>&1 &
server=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/serve.log" && break
    sleep 0.1
done
base=$(grep -o "http://[0-9.:]*" "$work/serve.log" | head -1)
[ -n "$base" ] || { cat "$work/serve.log"; echo "the server did not start"; exit 1; }
log "submitting $N jobs to $base (runner concurrency $CONCURRENCY)"
python3 - "$base" "$N" "$CONCURRENCY" <<'EOF'
import json, sys, time, urllib.request
from datetime import datetime

base, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def call(method, path, body=None):
    req = urllib.request.Request(base + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())

start = time.time()
ids = [call("POST", "/analytics/jobs", {"operation": "simple_demo"})["job_id"] for _ in range(n)]
submitted = time.time() - start
pending = set(ids)
done = {}
while pending:
    for i in list(pending):
        s = call("GET", f"/analytics/jobs/{i}")
        if s["state"] in ("succeeded", "failed"):
            done[i] = s
            pending.discard(i)
    if pending:
        time.sleep(0.2)

def ts(v):
    return datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()

failed = sum(1 for s in done.values() if s["state"] != "succeeded")
run = sum(ts(s["finished_at"]) - ts(s["started_at"]) for s in done.values())
last = max(ts(s["finished_at"]) for s in done.values())
drain = last - start
ideal = run / conc
print(f"jobs: {n} ({failed} failed), submitted in {submitted:.1f} s")
print(f"sum of run times: {run:.1f} s; / concurrency {conc} = {ideal:.1f} s")
print(f"drain time (first submission to last finish): {drain:.1f} s; after the last submission: {max(0.0, drain - submitted):.2f} s")
print(f"ratio work / drain: {ideal / drain:.2f} (1.00 = the runner never waits for its poll; below it, the single submitting client is the bottleneck when jobs are this short)")
EOF
