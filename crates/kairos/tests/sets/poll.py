"""One RFC 8936 poll for the SET tests, validating every SET returned with PyJWT.

argv: base_url receiver client_id client_secret issuer audience request_json
POSTs request_json to {base_url}/v1/ssf/poll/{receiver} with HTTP Basic, and prints
{"status", "body", "claims": {jti: claims}}: each SET checked with PyJWKClient on the
broker's JWKS (`typ` secevent+jwt, `aud`, `iss`, signature); an invalid one fails the run.
"""

import base64
import json
import sys
import urllib.error
import urllib.request

import jwt

base, receiver, client_id, secret, issuer, audience, request = sys.argv[1:8]
auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
req = urllib.request.Request(
    f"{base}/v1/ssf/poll/{receiver}",
    data=request.encode(),
    headers={"content-type": "application/json", "authorization": f"Basic {auth}"},
    method="POST",
)
try:
    with urllib.request.urlopen(req, timeout=60) as r:
        status, body = r.status, json.loads(r.read() or b"null")
except urllib.error.HTTPError as e:
    status, body = e.code, json.loads(e.read() or b"null")

claims = {}
if status == 200:
    jwks = jwt.PyJWKClient(f"{base}/.well-known/jwks.json")
    for jti, token in body["sets"].items():
        header = jwt.get_unverified_header(token)
        assert header.get("typ") == "secevent+jwt", header
        key = jwks.get_signing_key_from_jwt(token)
        c = jwt.decode(token, key.key, algorithms=["ES256", "EdDSA"], audience=audience,
                       issuer=issuer, options={"require": ["iss", "aud", "iat", "jti"]})
        assert c["jti"] == jti, (c, jti)
        claims[jti] = c
print(json.dumps({"status": status, "body": body, "claims": claims}))
