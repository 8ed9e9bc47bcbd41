"""Running Quarry's Lambda bootstraps on this machine, as Lambda would.

A `Function` starts one bootstrap binary against a Lambda Runtime API served
here (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html) and hands
it events one at a time: `invoke(event)` returns `("response", body)` or
`("error", {"errorType", "errorMessage"})`, the way the Lambda service sees the
function answer. Used by lambda-init-times.py (cold starts) and
lambda-invoke-bridge.py (the Invoke API for the infra state-machine tests).
"""

import http.server
import json
import os
import queue
import resource
import socket
import subprocess
import threading
import time
import uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_STREAM_NAME": "local",
}


class Function:
    """One bootstrap process and the Runtime API it polls."""

    def __init__(self, name, binary, env, deadline_s=900, max_file_bytes=None):
        """`deadline_s`: each invocation's time, as Lambda's deadline header says;
        `max_file_bytes`: the largest file the process may write (RLIMIT_FSIZE,
        which holds for root too), standing in for a small /tmp."""
        self.name = name
        self.events = queue.Queue()
        self.answers = queue.Queue()
        self.first_next = None
        fn = self

        class Runtime(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if not self.path.endswith("/invocation/next"):
                    self.send_error(404)
                    return
                if fn.first_next is None:
                    fn.first_next = time.perf_counter()
                request_id, event = fn.events.get()
                body = json.dumps(event).encode()
                try:
                    self.send_response(200)
                    self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                    self.send_header("Lambda-Runtime-Deadline-Ms", str(int((time.time() + deadline_s) * 1000)))
                    self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                                     f"arn:aws:lambda:us-east-1:123456789012:function:{fn.name}")
                    self.send_header("Lambda-Runtime-Trace-Id", "Root=1-5759e988-bd862e3fe1be46a994272793")
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the process was stopped while it waited

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(n)
                try:
                    payload = json.loads(raw) if raw else None
                except ValueError:
                    payload = raw.decode(errors="replace")
                if self.path.endswith("/response"):
                    fn.answers.put(("response", payload, time.perf_counter()))
                elif self.path.endswith("/error"):
                    fn.answers.put(("error", payload, time.perf_counter()))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Runtime)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        full = dict(os.environ, **LAMBDA_ENV, **env, AWS_LAMBDA_FUNCTION_NAME=name,
                    AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{self.port}")
        self.started = time.perf_counter()
        limit = None
        if max_file_bytes is not None:
            def limit():
                resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))
        self.process = subprocess.Popen([binary], env=full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        preexec_fn=limit)

    def invoke(self, event, timeout=120.0):
        """Hands `event` to the function; returns (kind, payload, perf_counter at the answer)."""
        self.events.put((str(uuid.uuid4()), event))
        end = time.monotonic() + timeout
        while True:
            try:
                return self.answers.get(timeout=0.2)
            except queue.Empty:
                if self.process.poll() is not None:
                    err = self.process.stderr.read().decode(errors="replace")
                    raise RuntimeError(f"{self.name} exited ({self.process.returncode}): {err[-2000:]}")
                if time.monotonic() > end:
                    raise TimeoutError(f"{self.name} did not answer within {timeout} s")

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.server.shutdown()
        self.server.server_close()
