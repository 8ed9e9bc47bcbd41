#!/usr/bin/env python3
"""A local Lambda Invoke API over real Quarry bootstraps.

    lambda-invoke-bridge.py PORT NAME=BINARY[?deadline=S&max_file_bytes=N] ...

Starts each bootstrap once (warm, like a Lambda container) against a Runtime API
served here, then answers `POST /2015-03-31/functions/NAME/invocations` with the
function's answer; a function error comes back as Lambda's Invoke API returns it
(HTTP 200, header X-Amz-Function-Error, body {"errorType", "errorMessage"}).
Each function handles one event at a time, as a Lambda container does. The
environment (QUARRY_*, AWS_*) is passed on to the functions. `deadline` is each
invocation's time in seconds (default 900, Lambda's longest); `max_file_bytes`
caps the size of any file the function writes (a /tmp smaller than the files it
is given). The same binary may be listed under several names with different
limits.

The infra state-machine tests point aws-local-stepfunctions' task states at
this, so the deployed definition runs against the real quarry-jobs steps.
"""

import http.server
import json
import os
import sys
import threading
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lambda_local import Function  # noqa: E402


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    port = int(sys.argv[1])
    functions = {}
    locks = {}
    for spec in sys.argv[2:]:
        name, rest = spec.split("=", 1)
        binary, _, query = rest.partition("?")
        opts = {k: int(v[-1]) for k, v in urllib.parse.parse_qs(query).items()}
        functions[name] = Function(name, binary, {}, deadline_s=opts.get("deadline", 900),
                                   max_file_bytes=opts.get("max_file_bytes"))
        locks[name] = threading.Lock()

    class Invoke(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, status, body, error=False):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if error:
                self.send_header("X-Amz-Function-Error", "Unhandled")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            parts = self.path.strip("/").split("/")
            if len(parts) != 4 or parts[:2] != ["2015-03-31", "functions"] or parts[3] != "invocations":
                self.reply(404, {"message": f"unknown path {self.path}"})
                return
            name = parts[2]
            if name not in functions:
                self.reply(404, {"Type": "User", "message": f"Function not found: {name}"})
                return
            n = int(self.headers.get("Content-Length", "0"))
            event = json.loads(self.rfile.read(n) or b"{}")
            try:
                with locks[name]:
                    kind, payload, _ = functions[name].invoke(event)
            except (RuntimeError, TimeoutError) as e:
                self.reply(502, {"errorType": "Lambda.ServiceException", "errorMessage": str(e)}, error=True)
                return
            self.reply(200, payload, error=(kind == "error"))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Invoke)
    print(f"invoke API on http://127.0.0.1:{port} for {', '.join(functions)}", flush=True)
    try:
        server.serve_forever()
    finally:
        for f in functions.values():
            f.stop()


if __name__ == "__main__":
    main()
