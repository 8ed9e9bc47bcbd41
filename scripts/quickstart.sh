#!/usr/bin/env bash
# The main job: PostgreSQL up, quarry built, schema migrated, demo exports of
# the three sources generated and ingested, a few operations printed, and the
# REST API served on 127.0.0.1:8080 with curl examples. Safe to run again (the
# demo files are then duplicates). QUICKSTART_NO_SERVE=1 stops before serving.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
ensure_database quarry
log "building quarry (release)"
cargo build --release -q -p quarry-cli
log "migrating, generating and ingesting demo exports, running operations"
./target/release/quarry demo
listen="${QUARRY_LISTEN:-127.0.0.1:8080}"
cat <<MSG

The API is starting on http://$listen (Ctrl-C stops it).
The web catalog: open http://$listen/ in a browser. In another terminal:
  curl http://$listen/health
  curl "http://$listen/analytics?operation=database_info"
  curl "http://$listen/analytics?operation=customer_analysis"
  curl -X POST http://$listen/analytics -H "Content-Type: application/json" \\
       -d '{"operation": "customer_analysis", "parameters": {"metric": "lifetime_value", "group_by": "industry"}}'
  curl -X POST http://$listen/analytics -H "Content-Type: application/json" -d '{"operation": "invalid_operation"}'
  curl http://$listen/operations
Each operation at its own path, in the format you accept, compressed, in pages:
  curl "http://$listen/analytics/customer_analysis?group_by=country&level=segment"
Lifetime value by industry per company across CRM, ERP and shop (the ERP's revenue under the CRM's industries):
  curl "http://$listen/analytics/customer_analysis?group_by=industry&level=segment&unify=true&source_systems=erp"
  curl -H "Accept: text/csv" --compressed "http://$listen/analytics/revenue_analysis?view=customers"
  curl "http://$listen/analytics/customer_analysis?page_size=100"     # then follow "next"
Jobs (heavy operations, or anything you submit as a job):
  curl -i -X POST http://$listen/analytics/jobs -H "Content-Type: application/json" \\
       -d '{ "operation": "multi_dimensional_analytics", "parameters": { "timeframe": "3 months" } }'
  curl http://$listen/analytics/jobs/JOB_ID            # the job_id from the answer above
  curl -L http://$listen/analytics/jobs/JOB_ID/result
  curl -X POST http://$listen/analytics/jobs -H "Content-Type: application/json" \\
       -d '{ "operation": "customer_analysis", "parameters": { "metric": "lifetime_value", "group_by": "industry" }, "format": "csv" }'
Also: curl http://$listen/openapi.json    curl http://$listen/metrics

The command line works on the same database (settings in .quarry/env if generated):
  ./target/release/quarry query revenue_analysis -p view=customers --max-rows 10
  ./target/release/quarry quarantine list
  ./target/release/quarry links list --status proposed     # links waiting for review: confirm or reject
  ./target/release/quarry companies show org:1             # a company, its members and where each value came from
  ./target/release/quarry ingest .quarry/demo-data-1      # again: all duplicates
MSG
if [ "${QUICKSTART_NO_SERVE:-}" = "1" ]; then exit 0; fi
exec ./target/release/quarry serve --listen "$listen"
