#!/usr/bin/env python3
"""A tiny upstream for the demo: answers every request with JSON describing
what it received, so you can see which headers Paygress let through."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHOWN = ("x-payment-", "x-user-id", "x-provisioned-pod", "x-paygress-", "x-cashu", "authorization", "cookie")


class Echo(BaseHTTPRequestHandler):
    def _answer(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = json.dumps(
            {
                "upstream": "echo",
                "method": self.command,
                "path": self.path,
                "paygress_headers": {k: v for k, v in headers.items() if k.startswith(SHOWN)},
            },
            indent=2,
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8081
    ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()
