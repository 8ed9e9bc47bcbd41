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
bin=./target/debug/quarry
[ -x "$bin" ] || cargo build -q -p quarry-cli

db="quarry_st_$$"
work="$(mktemp -d)"
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
psql "$QUARRY_ADMIN_URL" -qc "CREATE DATABASE $db"
url="${QUARRY_ADMIN_URL%/*}/$db"
"$bin" --database-url "$url" migrate >/dev/null
psql "$url" -q -v ON_ERROR_STOP=1 -f tests/fixtures/small.sql >/dev/null
key="$("$bin" --database-url "$url" keys create --name schemathesis --scope admin 2>/dev/null)"

QUARRY_DATA_DIR="$work/data" QUARRY_API__RATE_LIMIT_PER_SECOND=100000 QUARRY_API__RATE_LIMIT_BURST=100000 \
QUARRY_LOG="${QUARRY_LOG:-error}" \
    "$bin" --database-url "$url" serve --listen 127.0.0.1:0 --allow-custom-sql >"$work/out" 2>"$work/err" &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/out" 2>/dev/null && break; sleep 0.1; done
addr="$(sed -n 's/.*listening on \(http:\/\/[^ ]*\).*/\1/p' "$work/out")"
[ -n "$addr" ] || { cat "$work/err"; echo "quarry serve did not start" >&2; exit 1; }
log "schemathesis against $addr/openapi.json"
st run "$addr/openapi.json" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "${ST_EXAMPLES:-25}" \
    --generation-deterministic \
    --request-timeout 20 \
    --header "Authorization: Bearer $key" \
    --no-color
