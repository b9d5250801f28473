"""A local webhook receiver for trying Kairos notifications: checks each signed delivery
with the Standard Webhooks reference library (`pip install standardwebhooks`) and prints it.
Usage: WEBHOOK_SECRET=whsec_... python receiver.py PORT"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook

hook = Webhook(os.environ["WEBHOOK_SECRET"])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path == "/slack":
            verdict = "slack (unsigned)"
        else:
            try:
                hook.verify(body, headers)
                verdict = "signature verified"
            except Exception as e:
                self.send_response(400)
                self.end_headers()
                print("refused:", e, flush=True)
                return
        self.send_response(200)
        self.end_headers()
        print(json.dumps({"path": self.path, "id": headers.get("webhook-id"),
                          "check": verdict, "body": json.loads(body)}), flush=True)


HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
