#!/usr/bin/env bash
# The main job: PostgreSQL up, quarry built, schema migrated, demo data loaded,
# a few operations run and printed. Safe to run again (it reloads the demo data).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_database quarry
log "building quarry (release)"
cargo build --release -q -p quarry-cli
log "migrating, generating and ingesting demo exports, running operations"
./target/release/quarry demo
cat <<'MSG'

Next steps (DATABASE_URL is in .quarry/env if the script generated one):
  ./target/release/quarry operations
  ./target/release/quarry quarantine list
  ./target/release/quarry ingest .quarry/demo-data-1          # again: all duplicates
  ./target/release/quarry query customer_analysis -p group_by=tier -p level=segment
  ./target/release/quarry query revenue_analysis -p view=customers --max-rows 10
  ./target/release/quarry query multi_dimensional_analytics -p timeframe="3 months" -f json
  ./target/release/quarry check queries/
MSG
