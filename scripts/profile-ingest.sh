#!/usr/bin/env bash
# Where an ingest spends the database's time: generates RECORDS (default
# 200,000) of demo exports, ingests them into a fresh database with the release
# build, and groups pg_stat_statements by what each statement does (the
# upserts and their foreign-key checks, company resolution, staging, COPY,
# queueing, the rest), with the wall time of the ingest beside it.
#   scripts/profile-ingest.sh [RECORDS]
# Needs pg_stat_statements loaded by the server (a restart):
#   psql -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
#   pg_ctlcluster 15 main restart      # then, for nested statements:
#   psql -c "ALTER SYSTEM SET pg_stat_statements.track = 'all'" -c "SELECT pg_reload_conf()"
# BENCH_NO_BUILD=1 uses the existing release binary; QUARRY_BIN=PATH another one.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
N="${1:-200000}"
if ! psql "$QUARRY_ADMIN_URL" -Atc "SHOW shared_preload_libraries" | grep -q pg_stat_statements; then
  echo "error: pg_stat_statements is not loaded by the server; see the comment at the top of $0" >&2
  exit 1
fi
if [ "${BENCH_NO_BUILD:-}" != "1" ] && [ -z "${QUARRY_BIN:-}" ]; then
  ensure_build_deps
  cargo build --release -q -p quarry-cli
fi
bin="${QUARRY_BIN:-./target/release/quarry}"
work="$(mktemp -d)"
db="quarry_profile"
trap 'rm -rf "$work"; psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
url="${QUARRY_ADMIN_URL%/*}/$db"
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
export DATABASE_URL="$url"
"$bin" migrate >/dev/null
log "generating about $N records"
"$bin" demo-data "$work/data" --scale "$N" >/dev/null
psql "$url" -qc "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" >/dev/null
log "quarry ingest"
start=$(date +%s.%N)
"$bin" ingest "$work/data" > "$work/ingest.txt"
end=$(date +%s.%N)
grep -E "^ +(loaded|FAILED)|^companies:" "$work/ingest.txt" || true
wall=$(python3 -c "print(round($end - $start, 2))")
psql "$url" -q -v wall="$wall" <<'SQL'
-- Top-level statements only: a nested one (a foreign-key check, a statement
-- of a function) is counted in the statement that ran it.
WITH s AS (
  SELECT total_exec_time / 1000 AS secs, query FROM pg_stat_statements
  WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel
), g AS (
  SELECT CASE
    WHEN query LIKE 'WITH up AS (%' OR query LIKE 'SELECT EXISTS (SELECT 1 FROM cur_%'
      OR query LIKE 'DELETE FROM canonical.order_lines l USING%' THEN 'upserts into the canonical tables'
    WHEN query LIKE 'COPY stg_%' THEN 'COPY into the staging tables'
    WHEN query LIKE 'INSERT INTO quarry.company_queue%' THEN 'queueing organizations for company resolution'
    WHEN query ~ '(rule_keyed|rule_cands|desired|s_orgs|s_edges|UPDATE comp |overlap|claim|assigned|new_members|multi|WITH g AS|company_members|canonical.companies|pend_orgs|pend_values|link_changes|aff\M|company_queue)'
      THEN 'company resolution (links, clusters, golden rows)'
    WHEN query ~ '(stg_|cur_|win_|stale_|late_|applied_pos|touched_orgs|place_late_version)' THEN 'staging: winners, versions, late rows'
    ELSE 'everything else (ledger, quarantine, references, catalog)'
  END AS what, secs FROM s
)
SELECT what, round(sum(secs)::numeric, 2) AS seconds,
       round((100 * sum(secs) / (SELECT sum(secs) FROM g))::numeric, 1) AS pct
FROM g GROUP BY what ORDER BY 2 DESC;
SELECT round((sum(total_exec_time) FILTER (WHERE toplevel))::numeric / 1000, 2) AS database_seconds,
       round((sum(total_exec_time) FILTER (WHERE NOT toplevel AND query LIKE 'SELECT $2 FROM ONLY %FOR KEY SHARE%'))::numeric / 1000, 2)
         AS of_which_foreign_key_checks,
       :'wall' AS ingest_wall_seconds
FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database());
SQL
