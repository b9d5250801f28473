"""OAuth conformance of a running dev broker, checked by independent client libraries.

Run by scripts/oauth_conformance.sh, which starts the broker. Arguments: the broker's
base URL. Environment: KAIROS_DEV_ADMIN_TOKEN (admin API token), KAIROS_PLATFORM_JWT (a
platform JWT of identity `nightly-backup`), KAIROS_ISSUER (the broker's issuer URL).

Checks: RFC 8414 metadata (authlib's validator) and no OpenID configuration; RFC 8693
token exchange through authlib's OAuth2Session, with RFC 8628's authorization_pending
when approval is needed; the access token through authlib's RFC 9068 validator, joserfc
and PyJWT against the JWKS; RFC 7662 introspection and RFC 7009 revocation by a resource
server authenticating with HTTP Basic (authlib's client_secret_basic), and another
resource server learning nothing; openapi-spec-validator on /v1/openapi.json;
prometheus_client's parser on /metrics in the classic text format.
"""

import os
import sys
import urllib.parse
import warnings

import jwt as pyjwt
import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
from authlib.integrations.requests_client.oauth2_session import OAuthError
from joserfc import jwt as jose_jwt
from joserfc.jwk import KeySet
from openapi_spec_validator import validate as validate_openapi
from prometheus_client.parser import text_string_to_metric_families

# authlib 1.9's RFC 9068 validator imports the JWKS through an API it deprecates itself.
warnings.filterwarnings("ignore", message="Please `KeySet.import_key_set`")

BASE = sys.argv[1].rstrip("/")
ADMIN = os.environ["KAIROS_DEV_ADMIN_TOKEN"]
PLATFORM = os.environ["KAIROS_PLATFORM_JWT"]
ISSUER = os.environ["KAIROS_ISSUER"]
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"
AUDIENCE = "https://orders.internal"

failures = []


def check(cond, what):
    print(("ok    " if cond else "FAIL  ") + what)
    if not cond:
        failures.append(what)


def local(url):
    """An advertised endpoint (under the public issuer URL) on this broker's address."""
    return BASE + urllib.parse.urlparse(url).path


def admin(method, path, **kw):
    return requests.request(
        method, BASE + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30, **kw
    )


# ---- RFC 8414 metadata -----------------------------------------------------------------
meta = requests.get(BASE + "/.well-known/oauth-authorization-server", timeout=30).json()
try:
    AuthorizationServerMetadata(meta).validate()
    check(True, "RFC 8414 metadata passes authlib's AuthorizationServerMetadata.validate()")
except ValueError as e:
    check(False, f"RFC 8414 metadata: {e}")
check(meta.get("issuer") == ISSUER, "metadata issuer is the broker's issuer URL")
for key in ("introspection_endpoint_auth_methods_supported",
            "revocation_endpoint_auth_methods_supported"):
    check("client_secret_basic" in meta.get(key, []), f"metadata advertises {key}")
r = requests.get(BASE + "/.well-known/openid-configuration", timeout=30)
check(r.status_code == 404, "no OpenID configuration (Kairos issues no ID tokens)")

# ---- resource servers -------------------------------------------------------------------
def resource_server(name, target):
    r = admin("POST", "/v1/users",
              json={"name": name, "role": "resource-server", "targets": [target]})
    check(r.status_code == 201, f"resource server {name} created for {target}")
    return r.json()["token"]


orders_rs = resource_server("orders-rs", "orders-api")
other_rs = resource_server("other-rs", "other-api")

# ---- RFC 8693 token exchange through a real OAuth client ---------------------------------
workload = OAuth2Session(client_id="nightly-backup", token_endpoint_auth_method="none")


def exchange(scope, task_kind="job"):
    return workload.fetch_token(
        local(meta["token_endpoint"]),
        grant_type=EXCHANGE,
        subject_token=PLATFORM,
        subject_token_type=JWT_TYPE,
        scope=scope,
        task_kind=task_kind,
        task_ref="conformance-1",
        task_reason="OAuth conformance run",
    )


token = exchange("orders-api/read")
access = token["access_token"]
check(token.get("token_type") == "Bearer", "token exchange through authlib's OAuth2Session")
try:
    exchange("orders-api/admin", task_kind="change")
    check(False, "approval needed answers authorization_pending")
except (OAuthError, OAuth2Error) as e:
    check(getattr(e, "error", None) == "authorization_pending",
          f"approval needed answers authorization_pending (got {getattr(e, 'error', e)})")
r = requests.post(local(meta["token_endpoint"]), data={
    "grant_type": EXCHANGE, "subject_token": "x.y.z", "subject_token_type": JWT_TYPE,
    "scope": "orders-api/read", "task_kind": "job", "task_ref": "r", "task_reason": "r"},
    timeout=30)
check(r.status_code == 400 and r.json().get("error") == "invalid_request",
      "an invalid subject_token is 400 invalid_request (RFC 8693 2.2.2)")
check(r.headers.get("Cache-Control") == "no-store" and r.headers.get("Pragma") == "no-cache",
      "token responses carry Cache-Control: no-store and Pragma: no-cache")

# ---- RFC 9068 -------------------------------------------------------------------------
jwks = requests.get(local(meta["jwks_uri"]), timeout=30).json()


class Validator(JWTBearerTokenValidator):
    def get_jwks(self):
        return jwks


try:
    v = Validator(issuer=ISSUER, resource_server=AUDIENCE)
    claims = v.authenticate_token(access)
    v.validate_token(claims, scopes=None, request=None)
    check(claims.get("client_id") == "nightly-backup",
          "the access token passes authlib's RFC 9068 JWTBearerTokenValidator")
except Exception as e:  # noqa: BLE001 - any refusal is the finding
    check(False, f"authlib RFC 9068 validation: {type(e).__name__}: {e}")

try:
    tok = jose_jwt.decode(access, KeySet.import_key_set(jwks))
    check(tok.header.get("typ") == "at+jwt" and tok.claims.get("aud") == AUDIENCE,
          "joserfc verifies it against the JWKS (typ at+jwt)")
except Exception as e:  # noqa: BLE001
    check(False, f"joserfc: {type(e).__name__}: {e}")

try:
    kid = pyjwt.get_unverified_header(access)["kid"]
    key = pyjwt.PyJWKSet.from_dict(jwks)[kid]
    decoded = pyjwt.decode(
        access, key, algorithms=["ES256", "EdDSA"], audience=AUDIENCE, issuer=ISSUER,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti", "client_id"]})
    check(decoded["sub"] == "nightly-backup", "PyJWT verifies it against the JWKS")
except Exception as e:  # noqa: BLE001
    check(False, f"PyJWT: {type(e).__name__}: {e}")

# ---- RFC 7662 / RFC 7009 with client_secret_basic --------------------------------------
orders = OAuth2Session(client_id="orders-rs", client_secret=orders_rs,
                       token_endpoint_auth_method="client_secret_basic")
other = OAuth2Session(client_id="other-rs", client_secret=other_rs,
                      token_endpoint_auth_method="client_secret_basic")
intro = local(meta["introspection_endpoint"])
revoke = local(meta["revocation_endpoint"])

i = orders.introspect_token(intro, token=access).json()
check(i.get("active") is True and i.get("client_id") == "nightly-backup"
      and i.get("aud") == AUDIENCE,
      "introspection with client_secret_basic: active, with client_id")
unknown = other.introspect_token(intro, token="not-a-token")
theirs = other.introspect_token(intro, token=access)
check(theirs.status_code == 200 and theirs.content == unknown.content
      and theirs.json() == {"active": False},
      "another resource server learns nothing (same answer as an unknown token)")
r = requests.post(intro, auth=("orders-rs", "wrong"), data={"token": access}, timeout=30)
check(r.status_code == 401 and r.json().get("error") == "invalid_client"
      and r.headers.get("WWW-Authenticate", "").startswith("Basic"),
      "a wrong client secret is 401 invalid_client with WWW-Authenticate")

unknown = other.revoke_token(revoke, token="not-a-token")
theirs = other.revoke_token(revoke, token=access)
check(theirs.status_code == unknown.status_code == 200 and theirs.content == unknown.content,
      "RFC 7009: a token the caller may not revoke answers as an unknown one")
check(orders.introspect_token(intro, token=access).json().get("active") is True,
      "... and is not revoked")
r = orders.revoke_token(revoke, token=access)
check(r.status_code == 200, "the audience's resource server revokes it (client_secret_basic)")
check(orders.introspect_token(intro, token=access).json() == {"active": False},
      "introspection answers inactive after revocation")

# ---- OpenAPI ----------------------------------------------------------------------------
doc = requests.get(BASE + "/v1/openapi.json", timeout=30).json()
try:
    validate_openapi(doc)
    check(True, "openapi-spec-validator accepts /v1/openapi.json")
except Exception as e:  # noqa: BLE001
    check(False, f"openapi-spec-validator: {type(e).__name__}: {str(e)[:500]}")

# ---- Prometheus -------------------------------------------------------------------------
r = requests.get(BASE + "/metrics", headers={"Accept": "text/plain; version=0.0.4"}, timeout=30)
try:
    families = {f.name for f in text_string_to_metric_families(r.text)}
    check(r.status_code == 200 and len(families) > 0,
          f"prometheus_client parses /metrics ({len(families)} families, "
          f"Content-Type {r.headers.get('Content-Type')})")
except Exception as e:  # noqa: BLE001
    check(False, f"prometheus_client parser: {type(e).__name__}: {e}")

if failures:
    print(f"\n{len(failures)} check(s) failed")
    sys.exit(1)
print("\nall checks passed")
