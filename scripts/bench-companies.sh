#!/usr/bin/env bash
# Link maintenance benchmark: generate N records (default 100,000), ingest them
# with the release build (links and companies are kept in each file's
# transaction), then measure, on the loaded data:
#   - a full recompute of every link and company (`quarry companies rebuild --force`),
#   - an incremental one: a changed delivery of 1% of the ERP customers,
# against a baseline measured in the same run: one pass over the organizations
# normalising every name and VAT id, the least a recompute that
# compared names would do. Prints times, ratios, links per rule, and the candidate
# pairs the blocking keys leave to compare against all pairs of companies.
#   scripts/bench-companies.sh [RECORDS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
N="${1:-100000}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
db="quarry_bench_companies"
url="${QUARRY_ADMIN_URL%/*}/$db"
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
cargo build --release -q -p quarry-cli
bin=./target/release/quarry
export DATABASE_URL="$url"
$bin migrate >/dev/null
log "generating about $N records"
$bin demo-data "$work/data" --scale "$N" >/dev/null
now() { date +%s.%N; }

log "quarry ingest (links and companies in each file's transaction)"
s=$(now); $bin ingest "$work/data" >/dev/null; t_ingest=$(python3 -c "print($(now) - $s)")

log "baseline: one pass computing the rules' keys"
q() { psql "$url" -Atqc "$1"; }
s=$(now)
q "CREATE TABLE bench_keys AS SELECT id, canonical.normalized_company_name(name) AS n, country_code,
     upper(regexp_replace(vat_id, '[^[:alnum:]]+', '', 'g')) AS v, email_domain
   FROM canonical.organizations; DROP TABLE bench_keys"
t_base=$(python3 -c "print($(now) - $s)")

log "full recompute: quarry companies rebuild --force"
s=$(now); $bin companies rebuild --force >/dev/null; t_full=$(python3 -c "print($(now) - $s)")

log "incremental: 1% of the ERP customers delivered again, changed"
python3 - "$work/data/erp-data/customers-2024-06-01-00.json" "$work/again.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
rows = doc["d"]["results"]
keep = rows[: max(1, len(rows) // 100)]
for r in keep:
    r["CreditLimit"] = "1" + r["CreditLimit"]
doc["d"]["results"] = keep
json.dump(doc, open(sys.argv[2], "w"))
PY
mkdir -p "$work/inc/erp-data"
mv "$work/again.json" "$work/inc/erp-data/customers-2024-08-01-00.json"
s=$(now); $bin ingest "$work/inc" >/dev/null; t_inc_total=$(python3 -c "print($(now) - $s)")

orgs=$(q "SELECT count(*) FROM canonical.organizations")
companies=$(q "SELECT count(*) FROM canonical.companies")
multi=$(q "SELECT count(*) FROM canonical.companies WHERE member_count > 1")
links=$(q "SELECT string_agg(method || ' ' || n, ', ' ORDER BY method) FROM (SELECT method, count(*) n FROM canonical.entity_links GROUP BY 1) x")
# Pairs the similar rule compares: within blocks (first word, country) of 2 to
# max_group companies from more than one system; against all pairs of companies.
pairs=$(q "SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (
           SELECT count(*) AS n FROM canonical.organizations
           WHERE kind = 'company' AND split_part(name_key, ' ', 1) <> '' AND country_code IS NOT NULL
           GROUP BY split_part(name_key, ' ', 1), country_code
           HAVING count(*) BETWEEN 2 AND 50 AND count(DISTINCT source_system) > 1) b")
all_pairs=$(q "SELECT count(*) * (count(*) - 1) / 2 FROM canonical.organizations WHERE kind = 'company'")
psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"

python3 - "$N" "$orgs" "$companies" "$multi" "$links" "$pairs" "$all_pairs" "$t_ingest" "$t_base" "$t_full" "$t_inc_total" <<'PY'
import sys
n, orgs, companies, multi = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
links, pairs, all_pairs = sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
t_ingest, t_base, t_full, t_inc = map(float, sys.argv[8:12])
print(f"records generated        {n:>12,}   organizations {orgs:,}, companies {companies:,} ({multi:,} with more than one member)")
print(f"links                    {links}")
print(f"candidate pairs          {pairs:>12,}   compared by similar_name inside its blocks, vs {all_pairs:,} pairs of companies ({pairs / max(all_pairs, 1):.2e})")
print(f"ingest of everything     {t_ingest:>10.2f} s")
print(f"baseline key pass        {t_base:>10.2f} s   one scan computing the rules' keys")
print(f"full recompute           {t_full:>10.2f} s   = {t_full / t_base:.1f}x the baseline pass ({orgs / t_full:,.0f} organizations/s)")
print(f"incremental (1% of ERP)  {t_inc:>10.2f} s   = {t_inc / t_full:.3f} of a full recompute (whole quarry ingest run of one small file)")
PY
