"""An RFC 8935 push receiver for the SET tests, validating with PyJWT.

argv: out_path jwks_url issuer audience mode port
Listens on 127.0.0.1:port (0: a free one), prints `port N` once. Each POST is written as
{"attempt": n}. Mode `ok`: the SET is validated with PyJWT (PyJWKClient on Kairos's
JWKS; `typ` secevent+jwt, `aud`, `iss`, signature) and answered 202 when valid, written
as {"jti", "claims", "content_type"}; an invalid one is answered 400 with an RFC 8935
error and written as {"refused": why}. Mode `fail`: every POST is answered 500.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

out_path, jwks_url, issuer, audience, mode, port = sys.argv[1:7]
lock = threading.Lock()
attempts = 0
jwks = jwt.PyJWKClient(jwks_url)


def write(obj):
    with lock:
        with open(out_path, "a") as f:
            f.write(json.dumps(obj) + "\n")


def validate(token):
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "secevent+jwt":
        raise ValueError(f"typ is {header.get('typ')!r}, not secevent+jwt")
    key = jwks.get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        key.key,
        algorithms=["ES256", "EdDSA"],
        audience=audience,
        issuer=issuer,
        options={"require": ["iss", "aud", "iat", "jti"]},
    )


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status, body=None):
        self.send_response(status)
        if body is not None:
            data = json.dumps(body).encode()
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self.send_header("content-length", "0")
            self.end_headers()

    def do_POST(self):
        global attempts
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        with lock:
            attempts += 1
            n = attempts
        write({"attempt": n})
        if mode == "fail":
            self.answer(500)
            return
        token = body.decode()
        try:
            claims = validate(token)
        except Exception as e:  # PyJWT's validation errors
            write({"refused": str(e)})
            self.answer(400, {"err": "invalid_request", "description": str(e)})
            return
        write({"jti": claims["jti"], "claims": claims,
               "content_type": self.headers.get("content-type"),
               "authorization": self.headers.get("authorization")})
        self.answer(202)


server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
print("port", server.server_address[1], flush=True)
server.serve_forever()
