#!/usr/bin/env python3
"""A pass-through to moto's ECS that fixes one field of its answers.

    moto-ecs-shim.py PORT MOTO_URL

moto (5.2.1 to 5.2.5 at least) answers RunTask and DescribeTasks with each
container's `cpu` (and `memory`) as JSON numbers; the ECS API's `Container`
shape has them as strings, so the Rust SDK refuses the whole answer ("type
mismatch: expected string"). Requests go to moto unchanged; in answers, those
two fields become strings, nothing else is touched. Point a client at it with
AWS_ENDPOINT_URL_ECS. Used by infra/scripts/state-machine-real.sh only.
"""

import http.server
import json
import sys
import urllib.error
import urllib.request


def fix(doc):
    for task in doc.get("tasks", []) if isinstance(doc, dict) else []:
        for c in task.get("containers", []):
            for field in ("cpu", "memory"):
                if isinstance(c.get(field), int):
                    c[field] = str(c[field])
    return doc


def main():
    port, moto = int(sys.argv[1]), sys.argv[2].rstrip("/")

    class Shim(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            req = urllib.request.Request(moto + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(req) as r:
                    status, rheaders, data = r.status, r.headers, r.read()
            except urllib.error.HTTPError as e:
                status, rheaders, data = e.code, e.headers, e.read()
            try:
                data = json.dumps(fix(json.loads(data))).encode()
            except ValueError:
                pass
            self.send_response(status)
            for k, v in rheaders.items():
                if k.lower() not in ("content-length", "connection", "server", "date", "transfer-encoding"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Shim).serve_forever()


if __name__ == "__main__":
    main()
