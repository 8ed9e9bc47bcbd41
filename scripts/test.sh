#!/usr/bin/env bash
# Every test: formatting, lints, generated files up to date, unit tests, and the
# end-to-end tests against a real PostgreSQL. Installs what it needs when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The AWS adapters are tested against a local AWS emulator (moto server), and
# the original walkthrough is replayed with the real AWS CLI against it. One pip
# call for both, so its resolver picks a boto3/botocore pair they both accept.
# 5.2.2 at least: 5.2.1 answered CompleteMultipartUpload with the wrong root
# element, which the Rust SDK refuses (getmoto/moto#10055).
MOTO_VERSION="5.2.2"
AWSCLI_VERSION="1.45.11"
if ! python3 -c "import moto.server, sys; sys.exit(0 if moto.__version__ == '$MOTO_VERSION' else 1)" 2>/dev/null \
    || ! aws --version 2>&1 | grep -q "aws-cli/$AWSCLI_VERSION "; then
    log "installing moto[server] $MOTO_VERSION and awscli $AWSCLI_VERSION from PyPI"
    python3 -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION" "awscli==$AWSCLI_VERSION"
fi
# The database-login test starts a private PostgreSQL (initdb) with TLS: it
# needs the server binaries (present with PostgreSQL), openssl and runuser.
for tool in openssl runuser; do
    command -v "$tool" >/dev/null || { log "installing $tool"; as_root apt-get install -y -qq openssl util-linux >/dev/null; }
done
# The memory-bound test reads the peak RSS of `quarry ingest` with GNU time.
[ -x /usr/bin/time ] || { log "installing time"; as_root apt-get install -y -qq time >/dev/null; }
# The later stages' tools (Chromium and selenium, schemathesis, the contract's
# linters and clients, the CDK app's packages and cfn-lint) are installed in the
# background while Rust compiles, so their downloads overlap the build. One
# chain, one installer at a time; each stage still installs what is missing.
mkdir -p .quarry
( scripts/ui.sh --install && scripts/schemathesis.sh --install && scripts/contract.sh --install \
    && bash infra/scripts/check.sh --install ) > .quarry/prefetch.log 2>&1 &
prefetch_pid=$!

log "cargo fmt --check"
cargo fmt --all -- --check
# One compilation for the lints, the binaries and the tests. clippy-driver
# compiles the workspace's own crates (what `cargo clippy` does, with code
# generation on), so the dependencies are compiled once instead of once in
# check mode for clippy and again for the build, and the tests'
# dev-dependencies are resolved in the same pass (no second build for
# `cargo test`). Warnings are errors, as with `cargo clippy -- -D warnings`
# (CLIPPY_ARGS is how cargo-clippy hands its arguments to clippy-driver).
# Exported: every later cargo call (cargo test, the stages' scripts) then
# finds the same build instead of starting another.
export RUSTC_WORKSPACE_WRAPPER=clippy-driver
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
log "building with clippy's lints (warnings are errors): binaries and tests"
cargo build --workspace --all-targets -q

log "generated files are current (schemas/, docs/schema.md, docs/configuration.md)"
./target/debug/quarry schema --check
./target/debug/quarry config docs --check
docs_db="quarry_docs_$$"
psql "$QUARRY_ADMIN_URL" -qc "CREATE DATABASE $docs_db"
trap 'psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $docs_db WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
docs_url="${QUARRY_ADMIN_URL%/*}/$docs_db"
./target/debug/quarry --database-url "$docs_url" migrate >/dev/null
./target/debug/quarry --database-url "$docs_url" docs --check
./target/debug/quarry check --offline queries/ mappings/ tests/fixtures/packs/
log "quarry check with the database: every branch of every pack prepared and EXPLAINed"
./target/debug/quarry --database-url "$docs_url" check queries/ mappings/
log "tests as data (quarry test: queries/**/*.test.yaml on a scratch database, mappings/tests, tests/fixtures/real)"
./target/debug/quarry --database-url "$QUARRY_ADMIN_URL" test

log "tests"
cargo test --workspace --no-fail-fast -q 2>&1 | tee .quarry/test.log | grep -Ev '^\s*$|^running [0-9]+ tests?$|^\.+$' || true
log "fault harness, short form: 20 seeded schedules (long form: scripts/fault-harness.sh 1000)"
fh_ok=1
./target/debug/fault-harness --schedules 20 > .quarry/fault-harness.log 2>&1 || fh_ok=0
grep -E "^[0-9]+ schedules|^failing" .quarry/fault-harness.log || tail -3 .quarry/fault-harness.log
wait "$prefetch_pid" || { log "installing the tools in the background failed (each stage retries): see .quarry/prefetch.log"; tail -5 .quarry/prefetch.log; }
log "schemathesis against /openapi.json"
st_ok=1
scripts/schemathesis.sh > .quarry/schemathesis.log 2>&1 || st_ok=0
grep -E "generated|issues found|No issues|❌" .quarry/schemathesis.log || tail -3 .quarry/schemathesis.log
log "the contract under standard tools: 3 OpenAPI linters, generated Python and TypeScript clients"
contract_ok=1
scripts/contract.sh > .quarry/contract.log 2>&1 || contract_ok=0
grep -E "^contract:|validated [0-9]+ responses|error" .quarry/contract.log | tail -5 || true
log "the web catalog in headless Chromium (selenium over WebDriver)"
ui_ok=1
scripts/ui.sh > .quarry/ui.log 2>&1 || ui_ok=0
grep -E "^ui:|FAILED|Error" .quarry/ui.log | tail -3 || true
log "infra/: CDK app checks (jest, cdk-nag, synth offline, cfn-lint, checkov)"
infra_ok=1
bash infra/scripts/check.sh > .quarry/infra.log 2>&1 || infra_ok=0
grep -E "^Tests:|^Test Suites:|cfn-lint|checkov:|errors" .quarry/infra.log | tail -7 || true
log "infra/: the state machine, day one and large files against the real functions"
sm_ok=1
bash infra/scripts/state-machine-real.sh > .quarry/state-machine.log 2>&1 || sm_ok=0
grep -E "^Tests:|^ingest:" .quarry/state-machine.log | cut -c1-160 || true
# Summary line for CI readers: totals over every test binary.
awk '/^test result:/ { p += $4; f += $6; s += $8 } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' .quarry/test.log
[ "$infra_ok" = 1 ] || { echo "infra checks failed: see .quarry/infra.log"; exit 1; }
[ "$sm_ok" = 1 ] || { echo "the state machine failed against the real functions: see .quarry/state-machine.log"; exit 1; }
[ "$st_ok" = 1 ] || { echo "schemathesis found problems: see .quarry/schemathesis.log"; exit 1; }
[ "$ui_ok" = 1 ] || { echo "the web catalog failed in headless Chromium: see .quarry/ui.log"; exit 1; }
[ "$contract_ok" = 1 ] || { echo "the OpenAPI contract failed a linter or a generated client: see .quarry/contract.log"; exit 1; }
[ "$fh_ok" = 1 ] || { echo "the fault harness found lost, duplicated or differing rows: see .quarry/fault-harness.log"; exit 1; }
! grep -q '^test result: FAILED' .quarry/test.log && grep -q '^test result: ok' .quarry/test.log
