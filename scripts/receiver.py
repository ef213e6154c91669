"""A postback receiver for trying the service locally: prints every request.

    python3 scripts/receiver.py [PORT] [STATUS]

Answers STATUS (default 200) to everything, on 127.0.0.1 only.
"""
import http.server
import sys
import time

port = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
status = int(sys.argv[2]) if len(sys.argv) > 2 else 200


class Handler(http.server.BaseHTTPRequestHandler):
    def handle_any(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        print(f"{time.strftime('%H:%M:%S')} {self.command} {self.path}", flush=True)
        for k in ("content-type", "idempotency-key", "webhook-id", "webhook-signature"):
            if self.headers.get(k):
                print(f"    {k}: {self.headers.get(k)}", flush=True)
        if body:
            print(f"    {body}", flush=True)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok\n")

    do_GET = do_POST = do_PUT = handle_any

    def log_message(self, *args):
        pass


print(f"receiver on http://127.0.0.1:{port}, answering {status}", flush=True)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
