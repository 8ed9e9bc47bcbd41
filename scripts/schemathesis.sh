#!/usr/bin/env bash
# Property-based API test: schemathesis (PyPI) generates requests from
# GET /openapi.json for every path and checks that the server never answers 5xx
# and that every response matches the documented status codes, content types,
# headers and schemas. Runs against a real `quarry serve` on loopback over a
# fresh database holding tests/fixtures/small.sql, with an admin key (so caller
# SQL in custom_complex_query is fuzzed too) and a generous rate limit.
#
#   scripts/schemathesis.sh            # uses target/debug/quarry
#   ST_EXAMPLES=50 scripts/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps

ST_VERSION="4.32.5"
if ! command -v st >/dev/null 2>&1 || [ "$(st --version 2>/dev/null | awk '{print $3}')" != "$ST_VERSION" ]; then
    log "installing schemathesis $ST_VERSION from PyPI"
    python3 -m pip install -q --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
[ "${1:-}" = "--install" ] && exit 0
fixture_server st admin --allow-custom-sql
log "schemathesis against $addr/openapi.json"
st run "$addr/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "${ST_EXAMPLES:-25}" \
    --generation-deterministic \
    --request-timeout 20 \
    --header "Authorization: Bearer $key" \
    --no-color
