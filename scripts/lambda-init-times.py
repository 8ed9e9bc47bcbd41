#!/usr/bin/env python3
"""Cold initialisation of the four Lambda functions, measured locally.

Each function's bootstrap binary is started against a minimal Lambda Runtime API
served here (the protocol of
https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html), with a moto
server for AWS and the local PostgreSQL. Two times per start:

  init   process start -> its first GET /invocation/next (clients, pools, the
         database login check and the definitions are all built by then)
  first  process start -> the first event's response (or error) posted back

Each function is started RUNS times; the median and the slowest are printed.
Binaries must be for this machine (scripts/build-lambdas.sh with
LAMBDA_TARGET=x86_64 writes them); arm64 zips cannot run on x86_64 here.

    python3 scripts/lambda-init-times.py target/lambda   # after the build
"""

import json
import os
import statistics
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lambda_local import Function, free_port, wait_for_port  # noqa: E402

RUNS = int(os.environ.get("RUNS", "7"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_once(name, binary, env, event):
    """Starts the function cold, hands it one event; returns (init ms, first answer ms, answer)."""
    fn = Function(name, binary, env)
    try:
        kind, payload, answered = fn.invoke(event, timeout=60)
    finally:
        fn.stop()
    init = (fn.first_next - fn.started) * 1000
    first = (answered - fn.started) * 1000
    text = json.dumps(payload)
    return init, first, ("error " if kind == "error" else "") + text


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    bins = sys.argv[1]
    import boto3  # installed with moto

    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{moto_port}"
    wait_for_port(moto_port)
    aws = dict(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_REGION="us-east-1",
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    os.environ.update(aws)
    s3 = boto3.client("s3", endpoint_url=endpoint)
    ddb = boto3.client("dynamodb", endpoint_url=endpoint)
    for b in ("raw", "results"):
        s3.create_bucket(Bucket=b)
    for t, k in (("cache", "key"), ("jobs", "id")):
        ddb.create_table(TableName=t, AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"}],
                         KeySchema=[{"AttributeName": k, "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST")
    sm = boto3.client("stepfunctions", endpoint_url=endpoint).create_state_machine(
        name="jobs", roleArn="arn:aws:iam::123456789012:role/x",
        definition=json.dumps({"StartAt": "D", "States": {"D": {"Type": "Succeed"}}}))["stateMachineArn"]
    export = os.path.join(ROOT, "tests/fixtures/ingest/exports/crm-data/accounts-2024-06-01-00.json")
    with open(export, "rb") as f:
        body = f.read()

    admin = os.environ.get("QUARRY_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    db = f"quarry_init_{uuid.uuid4().hex[:8]}"
    subprocess.run(["psql", admin, "-qc", f"CREATE DATABASE {db}"], check=True)
    url = admin.rsplit("/", 1)[0] + "/" + db
    try:
        subprocess.run([os.path.join(ROOT, "target/debug/quarry"), "--database-url", url, "migrate"],
                       check=True, stdout=subprocess.DEVNULL)
        base = dict(aws, LAMBDA_TASK_ROOT=ROOT, QUARRY_DB_TLS="disable", RUST_LOG="warn",
                    QUARRY_RESULTS_BUCKET="results", QUARRY_RAW_BUCKET="raw",
                    QUARRY_CACHE_TABLE="cache", QUARRY_JOBS_TABLE="jobs", QUARRY_STATE_MACHINE_ARN=sm,
                    QUARRY_OWNER_URL=url,
                    QUARRY_READER_URL=url.replace("postgres@", "quarry_reader@", 1),
                    QUARRY_WRITER_URL=url.replace("postgres@", "quarry_writer@", 1))
        health = {"resource": "/health", "path": "/health", "httpMethod": "GET", "headers": {"Host": "x"},
                  "multiValueHeaders": {"Host": ["x"]}, "queryStringParameters": None,
                  "multiValueQueryStringParameters": None, "pathParameters": None, "stageVariables": None,
                  "requestContext": {"accountId": "123456789012", "apiId": "x", "stage": "prod",
                                     "resourcePath": "/health", "httpMethod": "GET", "path": "/prod/health",
                                     "requestId": "r", "identity": {"sourceIp": "203.0.113.7"}},
                  "body": None, "isBase64Encoded": False}

        def ingest_event():
            key = f"crm-data/{uuid.uuid4().hex}.json"
            s3.put_object(Bucket="raw", Key=key, Body=body)
            return {"Records": [{"eventName": "ObjectCreated:Put",
                                 "s3": {"bucket": {"name": "raw"}, "object": {"key": key, "size": len(body)}}}]}

        cases = [
            ("quarry-api", lambda: health, "GET /health (API Gateway event)"),
            ("quarry-ingest", ingest_event, "one S3 upload (11 accounts), loaded"),
            ("quarry-jobs", lambda: {"step": "initialise", "job_id": "no-such-job"}, "initialise: one DynamoDB read"),
            ("quarry-migrate", lambda: {"RequestType": "Update", "ResourceProperties": {}}, "Update: migrations already applied"),
        ]
        print(f"{'function':<16} {'init ms (median / max)':>24} {'first event ms (median / max)':>31}  event")
        for name, event, what in cases:
            binary = os.path.join(bins, name, "bootstrap")
            inits, firsts = [], []
            for _ in range(RUNS):
                i, f, outcome = start_once(name, binary, base, event())
                inits.append(i)
                firsts.append(f)
            print(f"{name:<16} {statistics.median(inits):>12.1f} / {max(inits):>8.1f} "
                  f"{statistics.median(firsts):>18.1f} / {max(firsts):>8.1f}  {what}; answer: {outcome[:60]}")
    finally:
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=False)
        moto.kill()


if __name__ == "__main__":
    main()
