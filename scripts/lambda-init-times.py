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

import http.server
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid

RUNS = int(os.environ.get("RUNS", "7"))
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Runtime(http.server.BaseHTTPRequestHandler):
    """One invocation: hands out `event`, records when the answer arrives."""

    event = b"{}"
    t_next = None
    t_done = None
    outcome = None
    served = False
    done = threading.Event()

    def log_message(self, *a):
        pass

    def do_GET(self):
        cls = type(self)
        if not self.path.endswith("/invocation/next"):
            self.send_error(404)
            return
        if cls.served:
            # The process asks for its second event: make it wait until it is killed.
            cls.done.wait(30)
            try:
                self.send_error(503)
            except OSError:
                pass  # killed meanwhile
            return
        cls.t_next = time.perf_counter()
        cls.served = True
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", str(uuid.uuid4()))
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123456789012:function:f")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(cls.event)))
        self.end_headers()
        self.wfile.write(cls.event)

    def do_POST(self):
        cls = type(self)
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        if "/invocation/" in self.path or self.path.endswith("/init/error"):
            cls.t_done = time.perf_counter()
            cls.outcome = ("error " if self.path.endswith("/error") else "") + body.decode()[:160]
            cls.done.set()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


def start_once(binary, env, event):
    handler = type("R", (Runtime,), {"event": json.dumps(event).encode(), "done": threading.Event(),
                                     "served": False, "t_next": None, "t_done": None, "outcome": None})
    port = free_port()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    full = dict(os.environ, **env, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{port}")
    t0 = time.perf_counter()
    p = subprocess.Popen([binary], env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = handler.done.wait(60)
    p.kill()
    _, err = p.communicate()
    srv.shutdown()
    if not ok or handler.t_next is None:
        raise SystemExit(f"{binary} did not answer: {err.decode()[-2000:]}")
    return (handler.t_next - t0) * 1000, (handler.t_done - t0) * 1000, handler.outcome


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    bins = sys.argv[1]
    import boto3  # installed with moto

    moto_port = free_port()
    moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{moto_port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", moto_port), 0.2).close()
            break
        except OSError:
            time.sleep(0.1)
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
                    AWS_LAMBDA_FUNCTION_NAME="f", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1024",
                    AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_LOG_STREAM_NAME="s",
                    AWS_LAMBDA_LOG_GROUP_NAME="g", QUARRY_RESULTS_BUCKET="results", QUARRY_RAW_BUCKET="raw",
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
                i, f, outcome = start_once(binary, base, event())
                inits.append(i)
                firsts.append(f)
            print(f"{name:<16} {statistics.median(inits):>12.1f} / {max(inits):>8.1f} "
                  f"{statistics.median(firsts):>18.1f} / {max(firsts):>8.1f}  {what}; answer: {outcome[:60]}")
    finally:
        subprocess.run(["psql", admin, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], check=False)
        moto.kill()


if __name__ == "__main__":
    main()
