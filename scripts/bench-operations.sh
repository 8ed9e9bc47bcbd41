#!/usr/bin/env bash
# Operation benchmark: for each size in RECORDS (default 100,000; a comma-separated
# list such as 10000,100000,1000000 measures growth), generate that many records,
# ingest them, ANALYZE, then run every operation with its defaults (and with
# unify=true where it takes it) RUNS times (default 3) through `quarry query`, and
# print the median time the query took (elapsed_ms of the answer: database and
# row conversion, not process start) against a baseline measured in the same run:
# simple_demo, one counting pass over every canonical table through the same path.
# With REV (a git revision), the operations' packs of REV run on the same data
# beside today's, and the table shows both and the speed-up. With several sizes it
# also prints the growth table and, with PLOT=FILE.png, draws it (matplotlib,
# installed from PyPI into .quarry/bench-venv).
#   scripts/bench-operations.sh [RECORDS[,RECORDS...]] [REV]
#   PLOT=docs/growth.png scripts/bench-operations.sh 10000,100000,1000000
# QUARRY_BIN picks the binary (default: the release build, built here);
# BENCH_RUNS the runs per operation.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
SIZES="${1:-100000}"
REV="${2:-}"
RUNS="${BENCH_RUNS:-3}"
PLOT="${PLOT:-}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python=python3
if [ -n "$PLOT" ]; then
  venv="$QUARRY_STATE_DIR/bench-venv"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    log "installing matplotlib into $venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "matplotlib==3.10.*"
  fi
  python="$venv/bin/python"
fi
if [ -z "${QUARRY_BIN:-}" ]; then
  cargo build --release -q -p quarry-cli
  QUARRY_BIN=./target/release/quarry
fi
before=""
if [ -n "$REV" ]; then
  mkdir -p "$work/before"
  git archive "$REV" queries | tar -x -C "$work/before"
  before="$work/before/queries"
fi
db="quarry_bench_operations"
url="${QUARRY_ADMIN_URL%/*}/$db"
results="$work/results.jsonl"
IFS=, read -ra sizes <<<"$SIZES"
for n in "${sizes[@]}"; do
  psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  export DATABASE_URL="$url"
  "$QUARRY_BIN" migrate >/dev/null
  log "generating about $n records and ingesting them"
  rm -rf "$work/data"
  "$QUARRY_BIN" demo-data "$work/data" --scale "$n" >/dev/null
  "$QUARRY_BIN" ingest "$work/data" >/dev/null
  psql "$url" -qc "ANALYZE"
  log "running every operation $RUNS times on $n records"
  python3 bench/operations.py measure "$QUARRY_BIN" "$RUNS" "$n" queries "$before" >>"$results"
done
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"
"$python" bench/operations.py report "$results" "$REV" "$PLOT"
