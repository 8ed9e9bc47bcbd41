#!/usr/bin/env bash
# The web catalog's third-party assets, vendored from npm into the binary
# (engine/api/ui/vendor/, compiled in by engine/api/src/ui.rs):
#   redoc@2.5.2     bundles/redoc.standalone.js (+ its LICENSE files)
#   chart.js@4.5.1  dist/chart.umd.min.js (+ LICENSE.md)
# Without arguments: fetches those package versions with `npm pack` (the
# registry checks each tarball against its published integrity) and copies the
# files in. With --check: fails unless the vendored files are byte for byte the
# ones in the published tarballs.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=engine/api/ui/vendor
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent redoc@2.5.2 chart.js@4.5.1 >/dev/null)
mkdir -p "$tmp/redoc" "$tmp/chart"
tar xzf "$tmp/redoc-2.5.2.tgz" -C "$tmp/redoc"
tar xzf "$tmp/chart.js-4.5.1.tgz" -C "$tmp/chart"
pairs=(
    "$tmp/redoc/package/bundles/redoc.standalone.js:redoc.standalone.js"
    "$tmp/redoc/package/bundles/redoc.standalone.js.LICENSE.txt:redoc.standalone.js.LICENSE.txt"
    "$tmp/redoc/package/LICENSE:redoc.LICENSE"
    "$tmp/chart/package/dist/chart.umd.min.js:chart.umd.min.js"
    "$tmp/chart/package/LICENSE.md:chart.js.LICENSE.md"
)
fail=0
for p in "${pairs[@]}"; do
    src="${p%%:*}" name="${p##*:}"
    if [ "${1:-}" = "--check" ]; then
        cmp -s "$src" "$dest/$name" || { echo "vendored $dest/$name differs from the npm package's file" >&2; fail=1; }
    else
        cp "$src" "$dest/$name"
    fi
done
[ "$fail" = 0 ] && echo "vendored UI assets: ${#pairs[@]} files equal to the npm packages'"
exit "$fail"
