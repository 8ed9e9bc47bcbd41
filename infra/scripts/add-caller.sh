#!/usr/bin/env bash
# A new caller of a deployed Quarry, with AWS credentials alone (the database
# is unreachable from outside the VPC; nothing here needs it):
#
#   1. a Quarry API key with the scopes asked for, minted by the admin function
#      (`aws lambda invoke` on quarry-migrate, {"command": "create-key", ...});
#   2. an API Gateway key for the same caller, in the stack's default usage plan,
#      or in a plan of its own when --rate/--burst/--quota are given. The
#      gateway enforces a plan's limits per key across every Lambda container.
#
# Usage:
#   infra/scripts/add-caller.sh --name NAME --scope read [--scope jobs] [--scope admin]
#       [--rate REQ_PER_S --burst N --quota PER_MONTH] [--stack STACK_NAME]
#
# The stack's outputs (AdminFunctionName, UsagePlanId, RestApiId, ApiUrl) are
# read with `aws cloudformation describe-stacks`, unless given as the variables
# QUARRY_ADMIN_FUNCTION, QUARRY_USAGE_PLAN_ID, QUARRY_REST_API_ID, QUARRY_API_URL.
# Prints the two headers the caller sends; nothing is written to disk.
set -euo pipefail

die() { echo "add-caller: $*" >&2; exit 2; }
name=""; scopes=(); rate=""; burst=""; quota=""; stack="Quarry"
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name="${2:-}"; shift 2 ;;
        --scope) scopes+=("${2:-}"); shift 2 ;;
        --rate) rate="${2:-}"; shift 2 ;;
        --burst) burst="${2:-}"; shift 2 ;;
        --quota) quota="${2:-}"; shift 2 ;;
        --stack) stack="${2:-}"; shift 2 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done
[ -n "$name" ] || die "--name NAME is required: who or what the keys are for"
[[ "$name" =~ ^[A-Za-z0-9._@-]{1,100}$ ]] || die "--name: letters, digits and . _ @ - only (1 to 100), got '$name'"
[ ${#scopes[@]} -gt 0 ] || die "give at least one --scope (read, jobs, admin)"
for s in "${scopes[@]}"; do
    case "$s" in read|jobs|admin) ;; *) die "--scope $s is not one of read, jobs, admin" ;; esac
done
for n in "$rate" "$burst" "$quota"; do
    [ -z "$n" ] || [[ "$n" =~ ^[0-9]+$ ]] || die "--rate, --burst and --quota take whole numbers"
done
if [ -n "$rate$burst$quota" ] && { [ -z "$rate" ] || [ -z "$burst" ]; }; then
    die "a plan of its own needs --rate and --burst (and optionally --quota)"
fi
command -v aws >/dev/null || die "the AWS CLI is required"
# Only the AWS CLI: the name and scopes are checked above, so the payload is
# written as is, and the answers are read with --query or grep.
output() {
    aws cloudformation describe-stacks --stack-name "$stack" \
        --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
admin_fn="${QUARRY_ADMIN_FUNCTION:-$(output AdminFunctionName)}"
plan="${QUARRY_USAGE_PLAN_ID:-$(output UsagePlanId)}"
api_id="${QUARRY_REST_API_ID:-$(output RestApiId)}"
api_url="${QUARRY_API_URL:-$(output ApiUrl)}"
[ -n "$admin_fn" ] && [ "$admin_fn" != "None" ] || die "no AdminFunctionName output on stack $stack (is it deployed? --stack NAME)"

# 1. The Quarry key, from the admin function.
scope_list=$(printf '"%s",' "${scopes[@]}"); scope_list="[${scope_list%,}]"
payload="{\"command\": \"create-key\", \"name\": \"$name\", \"scopes\": $scope_list}"
out=$(mktemp); request=$(mktemp); trap 'rm -f "$out" "$request"' EXIT
printf '%s' "$payload" > "$request"
# fileb:// sends the payload as it is with AWS CLI v1 and v2 alike.
failed=$(aws lambda invoke --function-name "$admin_fn" --payload "fileb://$request" "$out" \
    --query FunctionError --output text)
if [ "$failed" != "None" ]; then
    die "the admin function refused: $(grep -o '"errorMessage": *"[^"]*"' "$out" | cut -d'"' -f4)"
fi
quarry_key=$(grep -o '"key": *"qk_[^"]*"' "$out" | cut -d'"' -f4)
quarry_key_id=$(grep -o '"id": *"[0-9a-f]*"' "$out" | cut -d'"' -f4)
[ -n "$quarry_key" ] || die "the admin function answered without a key: $(cat "$out")"

# 2. The gateway key, in the default plan or a plan of the caller's own.
read -r gw_id gw_value < <(aws apigateway create-api-key --name "$name" --enabled \
    --description "Quarry caller $name (Quarry key $quarry_key_id)" --query '[id, value]' --output text)
if [ -n "$rate" ]; then
    quota_args=()
    [ -z "$quota" ] || quota_args=(--quota "limit=$quota,period=MONTH")
    plan=$(aws apigateway create-usage-plan --name "$name" \
        --description "Quarry caller $name: $rate req/s, burst $burst" \
        --throttle "rateLimit=$rate,burstLimit=$burst" "${quota_args[@]}" \
        --api-stages "apiId=$api_id,stage=prod" --query id --output text)
fi
aws apigateway create-usage-plan-key --usage-plan-id "$plan" --key-id "$gw_id" --key-type API_KEY >/dev/null

echo "caller $name: Quarry key $quarry_key_id (scopes ${scopes[*]}), gateway key $gw_id in usage plan $plan" >&2
echo "store both now; neither is shown again (revoke with {\"command\": \"revoke-key\", \"id\": \"$quarry_key_id\"} and aws apigateway delete-api-key --api-key $gw_id)" >&2
printf 'API=%s\n' "${api_url%/}"
printf 'H=(-H "x-api-key: %s" -H "Authorization: Bearer %s")\n' "$gw_value" "$quarry_key"
