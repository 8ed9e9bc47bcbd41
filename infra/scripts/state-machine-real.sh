#!/usr/bin/env bash
# The analytics-job state machine as CloudFormation would deploy it (the
# synthesized definition, run by aws-local-stepfunctions) with its task states
# calling the real Rust functions: quarry-api submits the jobs, quarry-jobs runs
# the steps. Behind them: a moto server (DynamoDB, S3, Step Functions) and a
# fresh migrated PostgreSQL database. Paths: success with a stored result, a
# transient failure retried, a permanent failure that notifies; and day one: a
# caller added with AWS credentials alone (scripts/add-caller.sh, through the
# real quarry-migrate admin function and moto's API Gateway) reaches the API;
# and ingest without scratch disk: the real quarry-ingest, allowed no file over
# 1 MiB, loads an export several times that size from S3, and gives up cleanly
# (nothing kept, a message to split the file) when its invocation's time ends.
# Run by scripts/test.sh after the Rust build; needs target/debug/{quarry,quarry-api,quarry-jobs,quarry-migrate,quarry-ingest}.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh
ensure_postgres
ensure_build_deps
for b in quarry quarry-api quarry-jobs quarry-migrate quarry-ingest; do
    [ -x "target/debug/$b" ] || { log "building the Rust binaries"; cargo build -q --workspace; break; }
done
[ -d infra/node_modules ] || (cd infra && npm ci --silent --no-audit --no-fund)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 150); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; log "nothing listens on port $1"; return 1; }

work=$(mktemp -d)
db="quarry_sm_$$"
moto_pid=""; bridge_pid=""
cleanup() {
    [ -n "$bridge_pid" ] && kill "$bridge_pid" 2>/dev/null
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null
    wait 2>/dev/null || true
    psql "$QUARRY_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

moto_port=$(free_port)
python3 -m moto.server -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$moto_port"
wait_port "$moto_port"
aws s3 mb s3://quarry-results >/dev/null
aws s3 mb s3://quarry-raw >/dev/null
for t in cache:key jobs:id; do
    aws dynamodb create-table --table-name "quarry-${t%%:*}" --billing-mode PAY_PER_REQUEST \
        --attribute-definitions "AttributeName=${t##*:},AttributeType=S" \
        --key-schema "AttributeName=${t##*:},KeyType=HASH" >/dev/null
done
# quarry-api starts an execution per job; this run drives the steps itself.
sm=$(aws stepfunctions create-state-machine --name quarry-analytics-job \
    --role-arn arn:aws:iam::123456789012:role/quarry-sfn \
    --definition '{"StartAt":"Wait","States":{"Wait":{"Type":"Succeed"}}}' \
    --query stateMachineArn --output text)

psql "$QUARRY_ADMIN_URL" -qc "CREATE DATABASE $db"
db_url="${QUARRY_ADMIN_URL%/*}/$db"
./target/debug/quarry --database-url "$db_url" migrate >/dev/null
key=$(./target/debug/quarry --database-url "$db_url" keys create --name state-machine --scope read --scope jobs \
    | grep -Eo 'qk_[0-9a-f]{12}_[A-Za-z0-9_-]+' | head -n 1)
[ -n "$key" ] || { log "could not create an API key"; exit 1; }
role_url() {
    python3 - "$db_url" "$1" <<'PY'
import os, sys, urllib.parse as u
p = u.urlsplit(sys.argv[1])
role = sys.argv[2]
pw = os.environ.get(f"QUARRY_{role.upper()}_PASSWORD")
auth = f"quarry_{role}" + (":" + u.quote(pw, safe="") if pw else "")
print(u.urlunsplit(p._replace(netloc=auth + "@" + p.netloc.rsplit("@", 1)[-1])))
PY
}
reader_url=$(role_url reader)
writer_url=$(role_url writer)

# The functions' packs: the shipped ones plus the test packs (many rows, slow, failing).
mkdir -p "$work/queries"
cp queries/*.yaml queries/*.sql tests/fixtures/packs/* "$work/queries/"
export LAMBDA_TASK_ROOT="$PWD" QUARRY_QUERIES_DIR="$work/queries" QUARRY_DB_TLS=disable RUST_LOG=warn
export QUARRY_READER_URL="$reader_url" QUARRY_RESULTS_BUCKET=quarry-results QUARRY_CACHE_TABLE=quarry-cache
export QUARRY_JOBS_TABLE=quarry-jobs QUARRY_STATE_MACHINE_ARN="$sm"
# quarry-migrate is the admin function of day one (infra/scripts/add-caller.sh).
export QUARRY_OWNER_URL="$db_url" QUARRY_WRITER_URL="$writer_url"
bridge_port=$(free_port)
# The largest file quarry-ingest may write: far below the export it loads.
scratch_limit=$((1 << 20))
python3 scripts/lambda-invoke-bridge.py "$bridge_port" \
    quarry-api=target/debug/quarry-api quarry-jobs=target/debug/quarry-jobs \
    quarry-migrate=target/debug/quarry-migrate \
    "quarry-ingest=target/debug/quarry-ingest?max_file_bytes=$scratch_limit" \
    "quarry-ingest-short=target/debug/quarry-ingest?deadline=21" >"$work/bridge.log" 2>&1 &
bridge_pid=$!
wait_port "$bridge_port"

# Day one: the REST API and its default usage plan as the stack makes them.
rest_api=$(aws apigateway create-rest-api --name quarry-api --query id --output text)
root=$(aws apigateway get-resources --rest-api-id "$rest_api" --query 'items[0].id' --output text)
aws apigateway put-method --rest-api-id "$rest_api" --resource-id "$root" --http-method GET \
    --authorization-type NONE --api-key-required >/dev/null
aws apigateway put-integration --rest-api-id "$rest_api" --resource-id "$root" --http-method GET --type MOCK >/dev/null
aws apigateway create-deployment --rest-api-id "$rest_api" --stage-name prod >/dev/null
usage_plan=$(aws apigateway create-usage-plan --name quarry-default \
    --throttle rateLimit=20,burstLimit=40 --query id --output text)

cd infra
QUARRY_JOBS_INVOKE_URL="http://127.0.0.1:$bridge_port" QUARRY_TEST_API_KEY="$key" QUARRY_TEST_DB_URL="$db_url" \
    QUARRY_TEST_REST_API_ID="$rest_api" QUARRY_TEST_USAGE_PLAN_ID="$usage_plan" \
    npx jest --silent test/state-machine.test.ts -t 'real quarry-jobs'
cd ..

# Ingest streams from S3: an export several times the scratch limit loads.
invoke() { # FUNCTION EVENT OUT -> prints the function error type, if any
    printf '%s' "$2" > "$3.event"
    aws lambda invoke --endpoint-url "http://127.0.0.1:$bridge_port" --function-name "$1" \
        --payload "fileb://$3.event" "$3" --query FunctionError --output text
}
s3_event() { # KEY SIZE
    printf '{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"quarry-raw"},"object":{"key":"%s","size":%s}}}]}' "$1" "$2"
}
./target/debug/quarry demo-data "$work/exports" --scale 20000 >/dev/null
big=$(ls -S "$work"/exports/crm-data/*.json | head -n 1)
size=$(stat -c %s "$big")
[ "$size" -gt $((3 * scratch_limit)) ] || { log "the test export ($size bytes) is not over three times the scratch limit"; exit 1; }
aws s3 cp --quiet "$big" s3://quarry-raw/crm-data/large-export.json
error=$(invoke quarry-ingest "$(s3_event crm-data/large-export.json "$size")" "$work/ingest.json")
python3 - "$work/ingest.json" "$error" "$size" <<'PY'
import json, sys
out, error, size = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
assert error in ("", "None"), f"quarry-ingest failed ({error}): {out}"
f = out["files"][0]
assert f["status"] == "loaded" and f["bytes"] == size and f["records_read"] > 0, f
print(f"ingest: {size} bytes ({f['records_read']} records) streamed from S3 with no file over 1 MiB allowed")
PY
loaded=$(psql "$db_url" -Atc "SELECT count(*) FROM quarry.ingest_files WHERE object_key = 'crm-data/large-export.json' AND status = 'loaded'")
[ "$loaded" = 1 ] || { log "the ledger does not show the large export loaded"; exit 1; }

# The same content under another key, with 1 s left after the function's 20 s
# margin: the load stops, keeps nothing and says to split the file.
aws s3 cp --quiet "$big" s3://quarry-raw/crm-data/too-slow.json
before=$(psql "$db_url" -Atc "SELECT version FROM canonical.data_version")
error=$(invoke quarry-ingest-short "$(s3_event crm-data/too-slow.json "$size")" "$work/short.json")
python3 - "$work/short.json" "$error" <<'PY'
import json, sys
out, error = json.load(open(sys.argv[1])), sys.argv[2]
assert error == "Unhandled", f"the load should have run out of time: {error} {out}"
assert out["errorType"] == "Quarry.IngestFailed", out
assert "did not finish loading in the time this run has" in out["errorMessage"], out
assert "Split the export" in out["errorMessage"], out
print("ingest: a load past its invocation's time stopped cleanly:", out["errorMessage"][:160])
PY
after=$(psql "$db_url" -Atc "SELECT version FROM canonical.data_version")
[ "$before" = "$after" ] || { log "a load that ran out of time changed the data version ($before -> $after)"; exit 1; }
status=$(psql "$db_url" -Atc "SELECT status FROM quarry.ingest_files WHERE object_key = 'crm-data/too-slow.json'")
[ "$status" = failed ] || { log "the ledger says '$status' for the load that ran out of time, not failed"; exit 1; }

# Hand-off: a file over QUARRY_INGEST_TASK_OVER_BYTES goes to an ECS task (moto
# records it; the task's own run is the same bootstrap in task mode, below), and
# a task that stops without reporting raises the alarm.
vpc=$(aws ec2 create-vpc --cidr-block 10.9.0.0/16 --query Vpc.VpcId --output text)
aws ec2 modify-vpc-attribute --vpc-id "$vpc" --enable-dns-hostnames '{"Value":true}'
subnet=$(aws ec2 create-subnet --vpc-id "$vpc" --cidr-block 10.9.1.0/24 --query Subnet.SubnetId --output text)
task_sg=$(aws ec2 create-security-group --group-name quarry-ingest-task --description "ingest task" \
    --vpc-id "$vpc" --query GroupId --output text)
aws ecs create-cluster --cluster-name quarry-ingest >/dev/null
task_def=$(aws ecs register-task-definition --family quarry-ingest --requires-compatibilities FARGATE \
    --network-mode awsvpc --cpu 1024 --memory 2048 \
    --container-definitions '[{"name":"ingest","image":"quarry-ingest","essential":true,"memoryReservation":2048}]' \
    --query taskDefinition.taskDefinitionArn --output text)
alarm_topic=$(aws sns create-topic --name quarry-alarms --query TopicArn --output text)
alarm_queue=$(aws sqs --endpoint-url "$AWS_ENDPOINT_URL" create-queue --queue-name quarry-alarms --query QueueUrl --output text)
aws sns subscribe --topic-arn "$alarm_topic" --protocol sqs \
    --notification-endpoint "arn:aws:sqs:us-east-1:123456789012:quarry-alarms" >/dev/null
# moto's ECS answers carry numbers where the API has strings; the shim fixes them.
ecs_port=$(free_port)
python3 scripts/moto-ecs-shim.py "$ecs_port" "$AWS_ENDPOINT_URL" &
ecs_pid=$!
wait_port "$ecs_port"
task_bridge_port=$(free_port)
AWS_ENDPOINT_URL_ECS="http://127.0.0.1:$ecs_port" \
QUARRY_INGEST_TASK_CLUSTER=quarry-ingest QUARRY_INGEST_TASK_DEFINITION="$task_def" \
QUARRY_INGEST_TASK_CONTAINER=ingest QUARRY_INGEST_TASK_SUBNETS="$subnet" \
QUARRY_INGEST_TASK_SECURITY_GROUPS="$task_sg" QUARRY_INGEST_TASK_OVER_BYTES=$((2 * scratch_limit)) \
QUARRY_ALARM_TOPIC_ARN="$alarm_topic" \
    python3 scripts/lambda-invoke-bridge.py "$task_bridge_port" \
    quarry-ingest-handoff=target/debug/quarry-ingest >"$work/task-bridge.log" 2>&1 &
task_bridge_pid=$!
trap 'kill $task_bridge_pid $ecs_pid 2>/dev/null; cleanup' EXIT
wait_port "$task_bridge_port"
bridge_port=$task_bridge_port

aws s3 cp --quiet "$big" s3://quarry-raw/crm-data/handed-off.json
error=$(invoke quarry-ingest-handoff "$(s3_event crm-data/handed-off.json "$size")" "$work/handoff.json")
task_arn=$(python3 - "$work/handoff.json" "$error" <<'PY'
import json, sys
out, error = json.load(open(sys.argv[1])), sys.argv[2]
if error not in ("", "None"):
    sys.exit(f"quarry-ingest failed ({error}): {out}")
f = out["files"][0]
assert f["status"] == "handed_off" and f["handed_to"].startswith("arn:aws:ecs:"), f
print(f["handed_to"])
PY
)
object=$(aws ecs describe-tasks --cluster quarry-ingest --tasks "$task_arn" \
    --query 'tasks[0].overrides.containerOverrides[0].environment[?name==`QUARRY_INGEST_OBJECT`].value' --output text)
[ "$object" = s3://quarry-raw/crm-data/handed-off.json ] || { log "the ingest task was started for '$object'"; exit 1; }
[ "$(psql "$db_url" -Atc "SELECT count(*) FROM quarry.ingest_files WHERE object_key = 'crm-data/handed-off.json'")" = 0 ] \
    || { log "the function loaded a file it handed off"; exit 1; }
# The task as ECS runs it: the same bootstrap with the object in its environment.
QUARRY_INGEST_OBJECT="$object" QUARRY_ALARM_TOPIC_ARN="$alarm_topic" target/debug/quarry-ingest >"$work/task.log" 2>&1 \
    || { log "the ingest task failed ($?)"; tail -5 "$work/task.log"; exit 1; }
status=$(psql "$db_url" -Atc "SELECT status FROM quarry.ingest_files WHERE object_key = 'crm-data/handed-off.json'")
[ "$status" = loaded ] || { log "after its task the handed-off file is '$status', not loaded"; exit 1; }
echo "ingest: a $size-byte file over the hand-off size was loaded by its ECS task ($task_arn)"

# ECS says the task stopped: killed (137) raises the alarm naming the object;
# a task that exited 0 reported itself and raises nothing.
stopped() { # EXIT_CODE
    printf '{"version":"0","detail-type":"ECS Task State Change","source":"aws.ecs","detail":{"taskArn":"%s","lastStatus":"STOPPED","stoppedReason":"OutOfMemoryError: Container killed due to memory usage","containers":[{"name":"ingest","exitCode":%s}],"overrides":{"containerOverrides":[{"name":"ingest","environment":[{"name":"QUARRY_INGEST_OBJECT","value":"%s"}]}]}}}' \
        "$task_arn" "$1" "$object"
}
invoke quarry-ingest-handoff "$(stopped 0)" "$work/stopped0.json" >/dev/null
invoke quarry-ingest-handoff "$(stopped 137)" "$work/stopped137.json" >/dev/null
aws sqs --endpoint-url "$AWS_ENDPOINT_URL" receive-message --queue-url "$alarm_queue" --max-number-of-messages 10 --wait-time-seconds 2 >"$work/alarms.json"
python3 - "$work/stopped0.json" "$work/stopped137.json" "$work/alarms.json" "$object" <<'PY'
import json, sys
ok, killed, alarms = (json.load(open(p)) for p in sys.argv[1:4])
obj = sys.argv[4]
assert ok["alarm"] is False, ok
assert killed["alarm"] is True and obj in killed["message"] and "exit code 137" in killed["message"], killed
bodies = [json.loads(m["Body"])["Message"] for m in alarms.get("Messages", [])]
assert len(bodies) == 1, bodies
assert obj in bodies[0] and "stopped without finishing" in bodies[0] and "--metadata-directive REPLACE" in bodies[0], bodies
print("ingest: a task that stopped without reporting raised one alarm naming", obj)
PY
