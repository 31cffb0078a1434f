"""A tiny keep-alive HTTP/1.1 app standing in for one color: answers every GET and POST with its color.

Run inside the Python image by the HAProxy integration tests (``COLOR`` names the color).
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COLOR = os.environ["COLOR"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, status):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps({"color": COLOR, "method": self.command, "path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._answer(200)

    def do_POST(self):
        self._answer(201)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    # The proxy opens a connection per request: socketserver's default backlog of 5 would
    # drop SYNs under load and turn them into 1 s retransmits.
    request_queue_size = 1024


Server(("0.0.0.0", 8000), Handler).serve_forever()
