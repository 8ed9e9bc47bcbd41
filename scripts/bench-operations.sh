#!/usr/bin/env bash
# Operation benchmark: generate N records (default 100,000), ingest them, ANALYZE,
# then run every operation with its defaults (and with unify=true where it takes
# it) RUNS times (default 3) through `quarry query`, and print the median time the
# query took (elapsed_ms of the answer: database and row conversion, not process
# start) against a baseline measured in the same run: simple_demo, one counting
# pass over every canonical table through the same path.
# With REV (a git revision), the operations' packs of REV run on the same data
# beside today's, and the table shows both and the speed-up.
#   scripts/bench-operations.sh [RECORDS] [REV]
# QUARRY_BIN picks the binary (default: the release build, built here);
# BENCH_RUNS the runs per operation.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
N="${1:-100000}"
REV="${2:-}"
RUNS="${BENCH_RUNS:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
db="quarry_bench_operations"
url="${QUARRY_ADMIN_URL%/*}/$db"
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
if [ -z "${QUARRY_BIN:-}" ]; then
  cargo build --release -q -p quarry-cli
  QUARRY_BIN=./target/release/quarry
fi
export DATABASE_URL="$url"
"$QUARRY_BIN" migrate >/dev/null
log "generating about $N records and ingesting them"
"$QUARRY_BIN" demo-data "$work/data" --scale "$N" >/dev/null
"$QUARRY_BIN" ingest "$work/data" >/dev/null
psql "$url" -qc "ANALYZE"
before=""
if [ -n "$REV" ]; then
  mkdir -p "$work/before"
  git archive "$REV" queries | tar -x -C "$work/before"
  before="$work/before/queries"
fi
log "running every operation $RUNS times"
python3 - "$QUARRY_BIN" "$RUNS" "$before" "$REV" <<'PY'
import json, statistics, subprocess, sys

binary, runs, before, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
SKIP = {"custom_complex_query"}  # runs caller-supplied SQL; nothing to measure


def catalog(queries):
    out = subprocess.run([binary, "operations", "--json", "--queries", queries],
                         check=True, capture_output=True, text=True).stdout
    doc = json.loads(out)
    ops = doc["operations"] if isinstance(doc, dict) else doc
    return {o["name"]: o for o in ops}


def takes_unify(op):
    params = op.get("parameters") or {}
    props = params.get("properties", params) if isinstance(params, dict) else {}
    return "unify" in props


def timed(name, params, queries):
    """Median elapsed_ms of RUNS runs, or None when the operation fails (timeout)."""
    times, error = [], None
    for _ in range(runs):
        cmd = [binary, "query", name, "-f", "json", "--queries", queries]
        for k, v in params.items():
            cmd += ["-p", f"{k}={v}"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            error = (p.stderr.strip().splitlines() or ["failed"])[-1]
            break
        times.append(json.loads(p.stdout)["elapsed_ms"] / 1000.0)
    return (statistics.median(times) if times and error is None else None), error


now = catalog("queries")
old = catalog(before) if before else {}
base, _ = timed("simple_demo", {}, "queries")
print(f"\nbaseline simple_demo (one counting pass over every table): {base:.3f} s\n")
head = "| operation | parameters | seconds | x baseline |"
if before:
    head += f" {rev} seconds | speed-up |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for name in sorted(now):
    if name in SKIP:
        continue
    variants = [{}]
    if takes_unify(now[name]):
        variants.append({"unify": "true"})
    for params in variants:
        t, err = timed(name, params, "queries")
        shown = ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"
        cell = f"{t:.3f}" if t is not None else f"failed ({err[:60]})"
        ratio = f"{t / base:.1f}" if t is not None and base else "-"
        row = f"| {name} | {shown} | {cell} | {ratio} |"
        if before:
            if name in old and (not params or takes_unify(old[name])):
                b, berr = timed(name, params, before)
                bcell = f"{b:.3f}" if b is not None else f"failed ({berr[:60]})"
                speed = f"{b / t:.1f}x" if b is not None and t else "-"
            else:
                bcell, speed = "(not there)", "-"
            row += f" {bcell} | {speed} |"
        print(row, flush=True)
PY
