#!/usr/bin/env bash
# Ingest growth benchmark: for each size (default 100,000, 1,000,000 and
# 5,000,000 records) generate exports into a fresh database, ingest them with
# the release build, and print the time per record and the peak RSS of each
# size against the smallest, measured in the same run. Flat means the ratio of
# time per record stays near 1.0 (the canonical tables' indexes grow, so some
# rise is expected: each insert walks a deeper B-tree).
#   scripts/bench-ingest-growth.sh [RECORDS[,RECORDS...]]
# QUARRY_BIN picks the binary (default: the release build, built here).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
command -v /usr/bin/time >/dev/null || as_root apt-get install -y -qq time >/dev/null
SIZES="${1:-100000,1000000,5000000}"
if [ -z "${QUARRY_BIN:-}" ]; then
  cargo build --release -q -p quarry-cli
  QUARRY_BIN=./target/release/quarry
fi
work="$(mktemp -d)"
db="quarry_bench_ingest_growth"
url="${QUARRY_ADMIN_URL%/*}/$db"
trap 'rm -rf "$work"; psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true' EXIT
export DATABASE_URL="$url"
IFS=, read -ra sizes <<<"$SIZES"
: >"$work/results"
for n in "${sizes[@]}"; do
  psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  "$QUARRY_BIN" migrate >/dev/null
  log "generating about $n records"
  rm -rf "$work/data"
  "$QUARRY_BIN" demo-data "$work/data" --scale "$n" >/dev/null
  records=$(python3 -c "import json; print(sum(f['records_read'] for f in json.load(open('$work/data/expected.json'))['files']))")
  bytes=$(du -sb "$work/data" | cut -f1)
  log "ingesting $records records ($bytes bytes)"
  /usr/bin/time -f '%e %M' -o "$work/time" "$QUARRY_BIN" ingest "$work/data" >/dev/null
  read -r secs rss_kb <"$work/time"
  echo "$records $bytes $secs $rss_kb" >>"$work/results"
done
python3 - "$work/results" <<'PY'
import sys
rows = [tuple(float(x) for x in l.split()) for l in open(sys.argv[1]) if l.strip()]
base = rows[0][2] / rows[0][0]
print("| records | JSON | ingest | records/s | µs per record | vs smallest | peak RSS |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for records, size, secs, rss in rows:
    per = secs / records
    print(f"| {records:,.0f} | {size / 1e6:,.0f} MB | {secs:,.1f} s | {records / secs:,.0f} | "
          f"{per * 1e6:.1f} | {per / base:.2f}x | {rss / 1024:.0f} MB |")
PY
