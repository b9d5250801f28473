"""A webhook receiver for the notification tests.

Listens on 127.0.0.1 (port from argv or a free one), prints `port N` once, then answers
each POST by the next behaviour of its script (`500`: fail, `stall`: never answer in time,
anything else or none left: 200). Every answered-200 delivery is verified with the
Standard Webhooks reference library (when a secret is given) and written as one JSON line
to the output file: {"id", "verified", "body"}. Attempts are written as {"attempt": n}.
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

out_path, secret, script, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
behaviours = [b for b in script.split(",") if b]
lock = threading.Lock()
attempts = 0

verifier = None
if secret != "-":
    from standardwebhooks.webhooks import Webhook

    verifier = Webhook(secret)


def write(obj):
    with lock:
        with open(out_path, "a") as f:
            f.write(json.dumps(obj) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        global attempts
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            attempts += 1
            n = attempts
        write({"attempt": n})
        behaviour = behaviours[n - 1] if n <= len(behaviours) else "ok"
        if behaviour == "500":
            self.send_response(500)
            self.end_headers()
            return
        if behaviour == "stall":
            time.sleep(5)
            return
        verified = None
        if verifier is not None:
            try:
                verifier.verify(body, {k.lower(): v for k, v in self.headers.items()})
                verified = True
            except Exception as e:  # the library's verification error
                verified = False
                write({"refused": str(e)})
        self.send_response(200 if verified is not False else 400)
        self.end_headers()
        if verified is not False:
            write({"id": self.headers.get("webhook-id"), "verified": verified,
                   "body": json.loads(body)})


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("port", server.server_address[1], flush=True)
server.serve_forever()
