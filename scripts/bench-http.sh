#!/usr/bin/env bash
# HTTP benchmark (REST API issue): requests/s and p50/p99 latency of `quarry serve`
# on loopback, with two baselines measured in the same run on the same database:
#
#   GET /health              the HTTP stack plus one `SELECT version` on the reader pool
#   cache hit                GET /analytics?operation=simple_demo, answered from the
#                            in-process copy of the cache (primed before the warm-up)
#   cache miss               GET /analytics?operation=simple_demo&source_system=b<n>,
#                            a new n on every request, so every request is a new cache
#                            key: validate, render, run as the reader, store in the cache
#   bare axum (baseline 0)   the smallest axum server answering every GET with the
#                            bytes of the cache hit (engine/api/examples/bare_axum.rs):
#                            the HTTP stack's own ceiling for the hit case
#   pgbench (baseline 1)     the very same SQL (rendered by `quarry query --show-sql`),
#                            -M prepared, as quarry_reader, same concurrency, with
#                            `\set n random(...)` giving each transaction its own value:
#                            the database's own ceiling for the query
#   PostGraphile (baseline 2) a peer serving SQL over HTTP: the same SQL as a SQL
#                            function in schema `peer` (created here as quarry_owner,
#                            EXECUTE granted to quarry_reader), queried over GraphQL
#                            with a new source_system per request, connected as
#                            quarry_reader with the same pool size as quarry
#
#   scripts/bench-http.sh            # about 1.5 minutes after the build
#
# Why simple_demo with a varying source_system for the miss: it is the lightest
# operation (cost: light, five rows) and its only parameter is a string, so each
# request can be a new cache key without changing the SQL text. A source system
# that does not exist (b<n>) matches no row: the plan is five index probes and
# the answer five rows of zeros, so the miss measures quarry's own per-request
# work (pool, data version, READ ONLY transaction, statement timeout, prepare,
# portal, JSON, cache write) against the same query through pgbench, which is the
# demanding way to compare. pgbench binds the number n itself (its \set makes
# numbers only); "b<n>" and "<n>" both match nothing with the same plan. No light
# operation has cache_ttl_seconds 0 except custom_complex_query, which needs
# custom SQL and an admin key. The cache-hit case uses the operation's defaults
# (counts over every table, primed once).
#
# The server runs with QUARRY_API__RATE_LIMIT_PER_SECOND=1000000 and
# QUARRY_API__RATE_LIMIT_BURST=1000000: without keys every request from 127.0.0.1
# shares one bucket (default 50/s, burst 100), which would answer most of the load
# generator's requests with 429. The script checks the effective setting, and
# counts hits and misses through GET /metrics so a case measuring the wrong path
# is flagged. Other settings are the defaults (reader pool 16 connections).
#
# Settings (environment): BENCH_DURATION (seconds per case, default 10),
# BENCH_WARMUP (default 2), BENCH_CONNECTIONS (default 32), BENCH_THREADS (wrk and
# pgbench threads, default 2), BENCH_SCALE (demo records, default 10000),
# BENCH_PORT / BENCH_PEER_PORT (default 18480 / 18481), BENCH_PEER_WORKERS
# (PostGraphile --cluster-workers, default 0 = one process), BENCH_NO_BUILD=1
# (use the existing release binary), BENCH_KEEP_DB=1 (keep database quarry_bench),
# BENCH_BEFORE=PATH (another build of quarry, e.g. of the commit before a change:
# its cache miss is measured too, on the same database in the same run, and the
# report prints this build's miss rate as a ratio of it).
#
# Targets (REST API and performance issues, this 2-core machine): cache hit >=
# 15,000 req/s with p99 <= 5 ms, and >= 0.66x the bare axum server with p99 <= 2
# ms; cache miss >= 90% of pgbench's req/s; ahead of the peer, judged on the miss
# (both run the query on every request). Each is printed PASS or MISS,
# with CPU per case and per request by process group (bench/cpu.py; its window
# is 20-70% of a case, so keep BENCH_DURATION at 5 s or more for those columns).
#
# Installs when missing: wrk (apt), pgbench (apt postgresql-contrib), Node.js and
# npm (apt), PostGraphile 4.14.1 (npm, into bench/node_modules, git-ignored).
# The load generator, the server, the peer and PostgreSQL share this machine's
# cores; the table says how busy each was. It is a measurement: it exits 0
# whether or not the targets are met.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps

DURATION="${BENCH_DURATION:-10}"
WARMUP="${BENCH_WARMUP:-2}"
CONNS="${BENCH_CONNECTIONS:-32}"
THREADS="${BENCH_THREADS:-2}"
SCALE="${BENCH_SCALE:-10000}"
PORT="${BENCH_PORT:-18480}"
BARE_PORT="${BENCH_BARE_PORT:-18482}"
PEER_PORT="${BENCH_PEER_PORT:-18481}"
PEER_WORKERS="${BENCH_PEER_WORKERS:-0}"
PEER_VERSION="4.14.1"
OP="simple_demo"
db="quarry_bench"
started_at=$(date +%s)

# --- tools -------------------------------------------------------------------
apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  }
}
command -v wrk >/dev/null || { log "installing wrk"; apt_install wrk; }
PGBENCH="$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench 2>/dev/null | sort -V | tail -n 1 || true)"
if [ -z "$PGBENCH" ]; then
  log "installing pgbench (postgresql-contrib)"
  apt_install postgresql-contrib
  PGBENCH="$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | sort -V | tail -n 1)"
fi
command -v node >/dev/null && command -v npm >/dev/null || { log "installing Node.js and npm"; apt_install nodejs npm; }
peer_bin="bench/node_modules/.bin/postgraphile"
if [ "$(node -p "try { require('./bench/node_modules/postgraphile/package.json').version } catch (e) { '' }")" != "$PEER_VERSION" ]; then
  log "installing PostGraphile $PEER_VERSION from npm into bench/node_modules"
  (cd bench && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

bin=./target/release/quarry
stale=""
if [ "${BENCH_NO_BUILD:-}" != "1" ]; then
  log "building quarry (release)"
  if ! cargo build --release -q -p quarry-cli || ! cargo build --release -q -p quarry-api --example bare_axum; then
    [ -x "$bin" ] || exit 1
    log "WARNING: the build failed; measuring the existing $bin"
    stale=" (STALE BINARY: the build failed)"
  fi
fi

work="$(mktemp -d)"
server_pid=""
peer_pid=""
bare_pid=""
cleanup() {
  set +e # a killed server's status must not stop the clean-up
  [ -n "$bare_pid" ] && kill "$bare_pid" 2>/dev/null && wait "$bare_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "$peer_pid" ] && kill "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null
  if [ "${BENCH_KEEP_DB:-}" != "1" ]; then
    psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- database with the demo data -----------------------------------------------
log "database $db: migrate, $SCALE demo records, ingest"
url="${QUARRY_ADMIN_URL%/*}/$db"
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" 2>/dev/null
export DATABASE_URL="$url"
$bin migrate >/dev/null
$bin demo-data "$work/data" --scale "$SCALE" >/dev/null
$bin ingest "$work/data" >/dev/null
reader_url=$(python3 - "$url" "${QUARRY_READER_PASSWORD:-}" <<'PY'
import sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
auth = "quarry_reader" + (":" + u.quote(sys.argv[2], safe="") if sys.argv[2] else "")
print(u.urlunsplit((p.scheme, f"{auth}@{p.hostname}:{p.port or 5432}", p.path, p.query, "")))
PY
)

# --- the same SQL for pgbench and for the peer --------------------------------
$bin query "$OP" --show-sql -p source_system=b0 > "$work/shown.sql"
grep -v '^--' "$work/shown.sql" > "$work/query.sql"
binds=$(grep -c '^-- \$[0-9]* text = Text("b0")$' "$work/shown.sql" || true)
nparams=$(grep -o '\$[0-9]\+' "$work/query.sql" | sort -u | wc -l)
if [ "$binds" != "$nparams" ] || [ "$nparams" = 0 ]; then
  echo "error: expected every bind of $OP to be the text source_system; see quarry query $OP --show-sql" >&2
  exit 1
fi
{ echo '\set n random(1, 1000000000)'; sed -E 's/\$[0-9]+/:n/g' "$work/query.sql"; echo ';'; } > "$work/pgbench.sql"
sed -E 's/\$[0-9]+/NULL::text/g' "$work/query.sql" > "$work/describe.sql"
echo '\gdesc' >> "$work/describe.sql"
columns=$(psql "$reader_url" -At -F ' ' -f "$work/describe.sql")
returns=$(echo "$columns" | awk '{ n = $1; $1 = ""; printf "%s%s %s", (NR > 1 ? ", " : ""), n, substr($0, 2) }')
fields=$(echo "$columns" | awk '{ print $1 }' | python3 -c "import sys; print(' '.join(w.split('_')[0] + ''.join(p.title() for p in w.split('_')[1:]) for w in sys.stdin.read().split()))")
owner_sql="$work/peer.sql"
{
  echo "CREATE SCHEMA peer AUTHORIZATION quarry_owner;"
  echo "SET ROLE quarry_owner;"
  echo "CREATE FUNCTION peer.$OP(source_system text) RETURNS TABLE ($returns)"
  echo "LANGUAGE sql STABLE AS \$body\$"
  sed -E 's/\$[0-9]+/$1/g' "$work/query.sql"
  echo "\$body\$;"
  echo "REVOKE ALL ON FUNCTION peer.$OP(text) FROM PUBLIC;"
  echo "GRANT USAGE ON SCHEMA peer TO quarry_reader;"
  echo "GRANT EXECUTE ON FUNCTION peer.$OP(text) TO quarry_reader;"
} > "$owner_sql"
psql "$url" -q -v ON_ERROR_STOP=1 -f "$owner_sql"
gql_field=$(python3 -c "import sys; w = sys.argv[1].split('_'); print(w[0] + ''.join(p.title() for p in w[1:]))" "$OP")
gql_query="query(\$s: String) { ${gql_field}List(sourceSystem: \$s) { $fields } }"

# --- servers ----------------------------------------------------------------------
log "starting quarry serve on 127.0.0.1:$PORT and PostGraphile on 127.0.0.1:$PEER_PORT"
export QUARRY_API__RATE_LIMIT_PER_SECOND=1000000 QUARRY_API__RATE_LIMIT_BURST=1000000
export QUARRY_DATA_DIR="$work/state" QUARRY_LOG=warn
effective=$($bin config show | tr -d ' ,"' | grep '^rate_limit_per_second:' | cut -d: -f2)
if [ "$effective" != "1000000" ]; then
  echo "error: the server would run with rate_limit_per_second=$effective, not 1000000; the limiter would throttle the load" >&2
  exit 1
fi
$bin serve --listen "127.0.0.1:$PORT" > "$work/serve.log" 2>&1 &
server_pid=$!
peer_args=(-c "$reader_url" -s peer -n 127.0.0.1 -p "$PEER_PORT" -m 16 --disable-query-log
  --disable-graphiql --simple-collections only -N)
[ "$PEER_WORKERS" -gt 0 ] && peer_args+=(--cluster-workers "$PEER_WORKERS")
NODE_ENV=production node "$peer_bin" "${peer_args[@]}" > "$work/peer.log" 2>&1 &
peer_pid=$!
gql_body() { python3 -c "import json, sys; print(json.dumps({'query': sys.argv[1], 'variables': {'s': sys.argv[2]}}))" "$gql_query" "$1"; }
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 \
    && curl -sf -H 'Content-Type: application/json' -d "$(gql_body b0)" "http://127.0.0.1:$PEER_PORT/graphql" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "error: quarry serve did not start:" >&2; cat "$work/serve.log" >&2; exit 1; }
peer_answer=$(curl -s -H 'Content-Type: application/json' -d "$(gql_body b0)" "http://127.0.0.1:$PEER_PORT/graphql" || true)
case "$peer_answer" in
  *'"errors"'*|'') echo "error: PostGraphile did not answer the query: $peer_answer" >&2; cat "$work/peer.log" >&2; exit 1 ;;
esac
# Prime the cache-hit case and check it is a hit.
hit_path="/analytics?operation=$OP"
curl -sf -o /dev/null "http://127.0.0.1:$PORT$hit_path"
curl -sfi "http://127.0.0.1:$PORT$hit_path" | grep -qi '^x-cache: hit' \
  || { echo "error: the second GET $hit_path was not a cache hit" >&2; exit 1; }
# The bare axum baseline answers with the hit's very bytes.
curl -sf -o "$work/hit.body" "http://127.0.0.1:$PORT$hit_path"
./target/release/examples/bare_axum "127.0.0.1:$BARE_PORT" "$work/hit.body" > "$work/bare.log" 2>&1 &
bare_pid=$!
for _ in $(seq 1 50); do curl -sf -o "$work/bare.body" "http://127.0.0.1:$BARE_PORT$hit_path" && break; sleep 0.1; done
cmp -s "$work/hit.body" "$work/bare.body" || { echo "error: the bare axum server does not answer the hit's bytes" >&2; exit 1; }

# --- measurement ------------------------------------------------------------------
results="$work/results.tsv"
: > "$results"
metric() { # metric RESULT: quarry_cache_requests_total{result=RESULT}
  curl -s "http://127.0.0.1:$PORT/metrics" | awk -v r="$1" '$1 == "quarry_cache_requests_total{result=\"" r "\"}" { v = $2 } END { print v + 0 }'
}
sample_cpu() { # in the background: CPU by group from 20% to 70% of the run about to start
  local now
  now=$(date +%s.%N)
  python3 bench/cpu.py "$(awk -v n="$now" -v d="$DURATION" 'BEGIN { printf "%.3f", n + d * 0.2 }')" \
    "$(awk -v n="$now" -v d="$DURATION" 'BEGIN { printf "%.3f", n + d * 0.7 }')" \
    "$db" "$server_pid" "$peer_pid" > "$work/cpu" &
  sampler_pid=$!
}
record() { # record NAME LOAD BENCH-LINE CPU-LINE CHECK
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$results"
}
run_base=0 # each server's miss keys start here, so no run repeats another's
wrk_case() { # wrk_case NAME MODE URL PATH [check]
  local name="$1" mode="$2" url="$3" path="$4" check="${5:-}" load h0 m0 line cpu note=""
  log "$name"
  load=$(cut -d' ' -f1 /proc/loadavg)
  BENCH_WRK_MODE="$mode" BENCH_WRK_PATH="$path" BENCH_WRK_OFFSET=$run_base BENCH_WRK_QUERY="${gql_query//\"/\\\"}" \
    wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" --timeout 10s -s bench/wrk.lua "$url" > /dev/null
  [ -n "$check" ] && { h0=$(metric hit); m0=$(metric miss); }
  sample_cpu
  line=$(BENCH_WRK_MODE="$mode" BENCH_WRK_PATH="$path" BENCH_WRK_OFFSET=$((run_base + 1000000000)) BENCH_WRK_QUERY="${gql_query//\"/\\\"}" \
    wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s -s bench/wrk.lua "$url" | grep '^BENCH ')
  wait "$sampler_pid"
  cpu=$(cat "$work/cpu")
  if [ -n "$check" ]; then
    note="hits=$(( $(metric hit) - h0 )) misses=$(( $(metric miss) - m0 )) expect=$check"
  fi
  record "$name" "$load" "$line" "$cpu" "$note"
}

wrk_case "GET /health" static "http://127.0.0.1:$PORT/health" /health
wrk_case "cache hit" static "http://127.0.0.1:$PORT$hit_path" "$hit_path" hit
wrk_case "bare axum (same bytes)" static "http://127.0.0.1:$BARE_PORT$hit_path" "$hit_path"
wrk_case "cache miss" miss "http://127.0.0.1:$PORT$hit_path" "$hit_path" miss

log "pgbench: the same SQL, -M prepared, as quarry_reader"
load=$(cut -d' ' -f1 /proc/loadavg)
pgb=("$PGBENCH" -n -M prepared -f "$work/pgbench.sql" -c "$CONNS" -j "$THREADS" "$reader_url")
"${pgb[@]}" -T "$WARMUP" > /dev/null 2>&1
sample_cpu
"${pgb[@]}" -T "$DURATION" -l --log-prefix="$work/pgbench_log" > "$work/pgbench.out" 2>&1
wait "$sampler_pid"
line=$(python3 - "$work" <<'PY'
import glob, re, sys
work = sys.argv[1]
out = open(f"{work}/pgbench.out").read()
tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", out).group(1))
failed = int(re.search(r"number of failed transactions: (\d+)", out).group(1))
lat = sorted(int(l.split()[2]) for f in glob.glob(f"{work}/pgbench_log.*") for l in open(f))
pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] / 1000
print(f"BENCH requests={len(lat)} seconds=0 rps={tps:.1f} p50_ms={pct(50):.3f} p99_ms={pct(99):.3f} errors={failed}")
PY
)
record "pgbench (same SQL)" "$load" "$line" "$(cat "$work/cpu")" ""

wrk_case "PostGraphile (same SQL)" graphql "http://127.0.0.1:$PEER_PORT/graphql" /graphql

if [ -n "${BENCH_BEFORE:-}" ]; then
  log "the other build: $BENCH_BEFORE"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  "$BENCH_BEFORE" serve --listen "127.0.0.1:$PORT" > "$work/before.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break; sleep 0.5; done
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || { echo "error: $BENCH_BEFORE serve did not start:" >&2; cat "$work/before.log" >&2; exit 1; }
  run_base=4000000000
  wrk_case "cache miss (BENCH_BEFORE)" miss "http://127.0.0.1:$PORT$hit_path" "$hit_path" miss
fi

# --- report -----------------------------------------------------------------------
elapsed=$(( $(date +%s) - started_at ))
commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- engine queries 2>/dev/null || echo '+uncommitted')$stale"
python3 - "$results" "$CONNS" "$THREADS" "$DURATION" "$WARMUP" "$SCALE" "$(nproc)" "$elapsed" "$commit" "$PEER_VERSION" "$PEER_WORKERS" <<'PY'
import sys
path, conns, threads, duration, warmup, scale, cores, elapsed, commit, peer_version, peer_workers = sys.argv[1:]
rows = []
for line in open(path):
    name, load, bench, cpu, check = line.rstrip("\n").split("\t")
    b = dict(kv.split("=") for kv in bench.split()[1:])
    c = dict(kv.split("=") for kv in cpu.split()[1:]) if cpu else {}
    rows.append((name, float(load), b, c, check))
r = {name: b for name, _, b, _, _ in rows}

print()
print(f"HTTP benchmark: operation simple_demo, {conns} connections, {threads} load-generator threads, "
      f"{duration} s per case after {warmup} s warm-up; demo data --scale {scale}; quarry {commit}; "
      f"PostGraphile {peer_version} ({'1 process' if peer_workers == '0' else peer_workers + ' workers'}), pool 16 like quarry's reader pool")
print(f"The load generator, the servers and PostgreSQL share the machine's {cores} cores; CPU columns are % of one core "
      f"(the machine has {100 * int(cores)}), sampled from 20% to 70% of each run.")
print()
hdr = f"{'case':<26} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}  {'load1 before':>12}  {'quarry':>6} {'pg':>4} {'gen':>4} {'peer':>4} {'other':>5} {'idle':>4}"
print(hdr)
print("-" * len(hdr))
for name, load, b, c, _ in rows:
    print(f"{name:<26} {float(b['rps']):>9,.0f} {float(b['p50_ms']):>8.2f} {float(b['p99_ms']):>8.2f} {int(b['errors']):>6}  {load:>12.2f}  "
          f"{c.get('quarry', '-'):>6} {c.get('pg', '-'):>4} {c.get('gen', '-'):>4} {c.get('peer', '-'):>4} "
          f"{int(c.get('other', 0)) + int(c.get('pg_other', 0)):>5} {c.get('idle', '-'):>4}")
print()
print("pg = PostgreSQL backends of the benchmark database; gen = wrk or pgbench; other = everything else (other")
print("databases' backends, PostgreSQL's background processes, and any other program running at the time).")
def per_request(b, c):
    ms = {k: 10 * int(c[k]) / float(b["rps"]) for k in ("quarry", "peer", "pg")}
    return " + ".join(f"{k} {v:.2f}" for k, v in ms.items() if k == "pg" or v >= 0.005)
print("CPU per request (ms of one core, from the sampled window): " + "; ".join(
    f"{name} {per_request(b, c)}" for name, _, b, c, _ in rows if c and float(b["rps"]) > 0))
for name, _, b, _, check in rows:
    if check:
        kv = dict(x.split("=") for x in check.split())
        want = kv["expect"]
        got, other = (int(kv["hits"]), int(kv["misses"])) if want == "hit" else (int(kv["misses"]), int(kv["hits"]))
        ok = got >= int(b["requests"]) and other == 0
        print(f"{name}: /metrics counted {got:,} {'hits' if want == 'hit' else 'misses'} and {other:,} {'misses' if want == 'hit' else 'hits'} "
              f"for {int(b['requests']):,} completed requests{'' if ok else '  <- NOT ALL REQUESTS TOOK THE MEASURED PATH'}")

hit, miss, pgb, peer = r["cache hit"], r["cache miss"], r["pgbench (same SQL)"], r["PostGraphile (same SQL)"]
bare = r["bare axum (same bytes)"]
f = lambda b, k: float(b[k])
ratio_bare = f(hit, "rps") / f(bare, "rps")
ratio_pg = f(miss, "rps") / f(pgb, "rps")
ratio_peer = f(miss, "rps") / f(peer, "rps")
targets = [
    ("cache hit >= 15,000 req/s", f(hit, "rps") >= 15000, f"{f(hit, 'rps'):,.0f} req/s"),
    ("cache hit p99 <= 5 ms", f(hit, "p99_ms") <= 5, f"{f(hit, 'p99_ms'):.2f} ms"),
    ("cache hit >= 0.66x bare axum", ratio_bare >= 0.66, f"{ratio_bare:.2f}x ({f(hit, 'rps'):,.0f} / {f(bare, 'rps'):,.0f} req/s)"),
    ("cache hit p99 <= 2 ms", f(hit, "p99_ms") <= 2, f"{f(hit, 'p99_ms'):.2f} ms (bare axum {f(bare, 'p99_ms'):.2f} ms)"),
    ("cache miss >= 90% of pgbench", ratio_pg >= 0.90, f"{ratio_pg:.0%} ({f(miss, 'rps'):,.0f} / {f(pgb, 'rps'):,.0f} req/s)"),
    ("ahead of the peer (miss vs PostGraphile)", ratio_peer > 1, f"{ratio_peer:.2f}x req/s, p99 {f(miss, 'p99_ms'):.2f} vs {f(peer, 'p99_ms'):.2f} ms"),
]
print()
for name, ok, detail in targets:
    print(f"{'PASS' if ok else 'MISS'}  {name:<42} {detail}")
print(f"(cache hit vs PostGraphile: {f(hit, 'rps') / f(peer, 'rps'):.1f}x req/s)")
if "cache miss (BENCH_BEFORE)" in r:
    before = r["cache miss (BENCH_BEFORE)"]
    print(f"cache miss, this build against BENCH_BEFORE: {f(miss, 'rps') / f(before, 'rps'):.2f}x req/s "
          f"({f(miss, 'rps'):,.0f} / {f(before, 'rps'):,.0f}), p99 {f(miss, 'p99_ms'):.2f} vs {f(before, 'p99_ms'):.2f} ms")
print(f"\nwhole run {elapsed} s, including the build, the demo data and the installs")
PY
