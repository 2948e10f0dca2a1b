#!/usr/bin/env python3
"""A tiny placeholder dashboard: an HTTP server on the port from argv[1], $TITAN_PORT or $PORT
(default 5000), bound to 127.0.0.1 unless $TITAN_BIND says otherwise. Standard library only.

GET /        a small HTML page naming the job and the uptime
GET /health  200 "ok" (what a readiness probe may poll)
The real dashboard comes later; this one exists so DEPLOY has a real service to run.
"""

import http.server
import json
import os
import signal
import sys
import time

STARTED = time.time()


def pick_port(argv):
    raw = argv[1] if len(argv) > 1 else os.environ.get("TITAN_PORT") or os.environ.get("PORT") or "5000"
    port = int(raw)
    if not 0 < port < 65536:
        raise ValueError(f"port out of range: {port}")
    return port


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            self.reply(200, "text/plain", b"ok\n")
        elif self.path == "/status.json":
            body = {"job": os.environ.get("TITAN_JOB_ID"), "uptime_s": round(time.time() - STARTED, 1)}
            self.reply(200, "application/json", json.dumps(body).encode())
        elif self.path == "/":
            page = (
                "<!doctype html><title>Titan dashboard</title>"
                f"<h1>Titan dashboard (placeholder)</h1><p>job {os.environ.get('TITAN_JOB_ID', '-')}, "
                f"up {time.time() - STARTED:.0f} s</p>"
            )
            self.reply(200, "text/html; charset=utf-8", page.encode())
        else:
            self.reply(404, "text/plain", b"not found\n")

    def reply(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        # One line per request on stdout, so the job's stdout.log shows the traffic.
        print(f"{self.address_string()} {fmt % args}", flush=True)


def main(argv):
    try:
        port = pick_port(argv)
    except ValueError as err:
        print(f"server_dashboard.py: {err}", file=sys.stderr)
        return 2
    bind = os.environ.get("TITAN_BIND", "127.0.0.1")
    server = http.server.ThreadingHTTPServer((bind, port), Handler)
    # SIGTERM (a STOP or a cancel) ends the server cleanly instead of with a traceback.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"dashboard listening on http://{bind}:{port}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
