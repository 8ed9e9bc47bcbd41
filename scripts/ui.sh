#!/usr/bin/env bash
# The web catalog in a real browser: Debian's chromium and chromedriver, driven
# by selenium (PyPI) over WebDriver, against a `quarry serve` holding
# tests/fixtures/small.sql and one API key. See tests/ui/ui_test.py for what
# is checked. Also checks that the vendored Redoc and Chart.js are exactly the
# files npm publishes (scripts/vendor-ui.sh --check).
#
#   scripts/ui.sh                 # uses target/debug/quarry; screenshots in tests/ui/out/
#   scripts/ui.sh --screenshots   # and copies them to docs/screenshots/ (README)
#   scripts/ui.sh --install       # only install what it needs
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres

SELENIUM_VERSION="4.50.0"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    log "installing chromium and chromium-driver (Debian)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 || {
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    }
fi
if ! python3 -c "import selenium, sys; sys.exit(0 if selenium.__version__ == '$SELENIUM_VERSION' else 1)" 2>/dev/null; then
    log "installing selenium $SELENIUM_VERSION from PyPI"
    python3 -m pip install -q --disable-pip-version-check "selenium==$SELENIUM_VERSION"
fi

[ "${1:-}" = "--install" ] && exit 0

scripts/vendor-ui.sh --check

fixture_server ui read,jobs,admin
# The fixture's organizations with the link keys their mappings declare: the
# ingest below registers the company rules, which link and cluster them.
psql "${QUARRY_ADMIN_URL%/*}/$_fx_db" -qc "INSERT INTO quarry.source_link_keys (source_system, link_keys) VALUES
    ('crm', '{email_domain,name_similarity}'), ('erp', '{email_domain,vat_id,name_similarity}'), ('shop', '{email_domain}')"
# A truncated export, so the ledger has a failed file (a bad file loads nothing).
mkdir -p "$work/landing/crm-data"
printf '{"totalSize": 2, "done": true, "records": [{"attributes": {"type": "Account"}, "Id": "001x' \
    > "$work/landing/crm-data/accounts-2024-06-03-00.json"
./target/debug/quarry --database-url "${QUARRY_ADMIN_URL%/*}/$_fx_db" ingest "$work/landing" >/dev/null 2>&1 \
    && { echo "a truncated export loaded" >&2; exit 1; }
if [ "${1:-}" = "--screenshots" ]; then
    # Pictures for people: the demo exports on top (10,000 records with defects).
    root="$PWD"
    (cd "$work" && "$root/target/debug/quarry" --database-url "${QUARRY_ADMIN_URL%/*}/$_fx_db" demo --quiet \
        --mappings "$root/mappings" --queries "$root/queries" >/dev/null)
fi
out=tests/ui/out
rm -rf "$out" && mkdir -p "$out"
QUARRY_URL="$addr" QUARRY_KEY="$key" SHOTS="$out" python3 tests/ui/ui_test.py
if [ "${1:-}" = "--screenshots" ]; then
    mkdir -p docs/screenshots
    cp "$out"/*.png docs/screenshots/
    log "screenshots copied to docs/screenshots/"
fi
