#!/usr/bin/env bash
# The infra test command: installs what it needs, then type-checks, runs the
# jest suite (resource and security assertions, cdk-nag, local state-machine
# runs), synthesizes the app without network or AWS credentials (default and
# dev variants, cdk-nag as a validation plugin, --strict) and runs cfn-lint over
# every synthesized template, then checkov over the same templates (every
# finding either fixed or acknowledged with its reason in lib/checkov.ts).
# Exits non-zero on any failure.
#
# Usage: bash infra/scripts/check.sh        (from anywhere; as root on a fresh machine)
set -euo pipefail

CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
NODE_MAJOR_MIN=20

INFRA="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$INFRA"
START=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" "$(($(date +%s) - START))"; }

export CDK_DISABLE_CLI_TELEMETRY=true
export CI="${CI:-true}"
# Node 20 is past its upstream end of life; jsii would warn on every run.
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION=1

step "tools"
command -v node >/dev/null || { echo "node (>= $NODE_MAJOR_MIN) is required" >&2; exit 1; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt "$NODE_MAJOR_MIN" ]; then
  echo "node >= $NODE_MAJOR_MIN is required, found $(node --version)" >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version), $(python3 --version)"

# npm ci from the committed lock, skipped when node_modules already matches it.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
stamp=node_modules/.quarry-lock-sha256
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$lock_sum" ]; then
  step "npm ci"
  npm ci --no-audit --no-fund
  echo "$lock_sum" > "$stamp"
else
  echo "node_modules matches package-lock.json"
fi

# cfn-lint, pinned, in a virtualenv of its own (infra/.venv, git-ignored).
if [ "$(.venv/bin/cfn-lint --version 2>/dev/null || true)" != "cfn-lint $CFN_LINT_VERSION" ]; then
  step "pip install cfn-lint==$CFN_LINT_VERSION"
  rm -rf .venv
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check "cfn-lint==$CFN_LINT_VERSION"
fi
.venv/bin/cfn-lint --version
# checkov, pinned, in a virtualenv of its own (its dependencies pin versions
# cfn-lint's do not accept).
if [ "$(.venv-checkov/bin/checkov --version 2>/dev/null || true)" != "$CHECKOV_VERSION" ]; then
  step "pip install checkov==$CHECKOV_VERSION"
  rm -rf .venv-checkov
  python3 -m venv .venv-checkov
  .venv-checkov/bin/pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi
echo "checkov $(.venv-checkov/bin/checkov --version)"
[ "${1:-}" = "--install" ] && exit 0

step "type-check (tsc)"
npx tsc --noEmit

step "jest"
npx jest --ci

# The real bundles when all four exist, otherwise placeholders in a temp dir.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lambda_dir="$INFRA/../target/lambda"
for fn in api ingest jobs migrate; do
  if [ ! -f "$lambda_dir/quarry-$fn/bootstrap.zip" ] || [ ! -f "$lambda_dir/quarry-ingest-task/Dockerfile" ]; then
    lambda_dir="$work/lambda"
    break
  fi
done
if [ "$lambda_dir" = "$work/lambda" ]; then
  npx tsx scripts/placeholder-zips.ts "$lambda_dir"
else
  echo "using the cargo-lambda bundles in $lambda_dir"
fi

# Synthesis must need no network: inside a network namespace of its own when
# this machine allows one (as root), so a hidden lookup or download fails here.
offline=()
if unshare --net true 2>/dev/null; then
  offline=(unshare --net)
  echo "synthesizing with no network (unshare --net)"
fi

step "cdk synth (default stack) -> cdk.out"
rm -rf cdk.out
"${offline[@]}" ./node_modules/.bin/cdk synth --quiet --strict --no-notices -c "lambdaDir=$lambda_dir" > /dev/null

step "cdk synth (dev profile: -c profile=dev) -> $work/cdk.out.dev"
"${offline[@]}" ./node_modules/.bin/cdk synth --quiet --strict --no-notices -c "lambdaDir=$lambda_dir" \
  -c profile=dev -c alarmEmail=ops@example.com -o "$work/cdk.out.dev" > /dev/null

step "cdk synth (prod profile: -c profile=prod) -> $work/cdk.out.prod"
"${offline[@]}" ./node_modules/.bin/cdk synth --quiet --strict --no-notices -c "lambdaDir=$lambda_dir" \
  -c profile=prod -c alarmEmail=ops@example.com -o "$work/cdk.out.prod" > /dev/null

step "cfn-lint"
templates=(cdk.out/*.template.json "$work"/cdk.out.dev/*.template.json "$work"/cdk.out.prod/*.template.json)
# .cfnlintrc.yaml (W3005 ignored, with its reason); any other error or warning fails.
.venv/bin/cfn-lint "${templates[@]}"
echo "cfn-lint: no errors or warnings in ${#templates[@]} templates"

step "checkov"
# Offline (--skip-download: no platform key, so no severities either): any
# failed check fails the run, whatever its severity; acknowledged ones are
# listed as skipped with their reasons.
checkov_args=()
for t in "${templates[@]}"; do checkov_args+=(-f "$t"); done
.venv-checkov/bin/checkov "${checkov_args[@]}" --framework cloudformation --skip-download --compact --quiet -o cli
echo "checkov: no unacknowledged findings in ${#templates[@]} templates"

step "done"
echo "infra check passed in $(($(date +%s) - START)) s"
