#!/usr/bin/env bash
# OAuth conformance: independent client libraries (authlib, joserfc, PyJWT,
# openapi-spec-validator, prometheus_client; pinned, from PyPI, in a venv under ~/.cache)
# check a real `kairos server --dev`: RFC 8414 metadata, RFC 8693 token exchange, RFC 9068
# access tokens, RFC 7662 introspection and RFC 7009 revocation with HTTP Basic client
# authentication, the OpenAPI document and /metrics. See scripts/oauth_conformance.py.
#
#   bash scripts/oauth_conformance.sh
#
# Environment:
#   OAUTH_CONFORMANCE_VENV  where the Python libraries are installed (default under ~/.cache)
#   KAIROS_BIN              a kairos binary to test instead of building one
#
# The broker runs on a free loopback port with a throwaway data directory and the
# quickstart configuration (plus a second token target), trusting a development issuer;
# its issuer URL is an https one, as RFC 8414 requires. All is removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

PINS=(authlib==1.9.6 joserfc==1.8.0 "PyJWT[crypto]==2.15.1" openapi-spec-validator==0.9.0
  prometheus-client==0.26.0 requests==2.34.2)
PIN_ID=1
VENV=${OAUTH_CONFORMANCE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kairos/oauth-conformance-$PIN_ID}
ISSUER_URL=https://kairos.conformance.test

log() { printf '==> oauth_conformance.sh: %s\n' "$*"; }

if ! "$VENV/bin/python" -c 'import authlib, joserfc, jwt, openapi_spec_validator, prometheus_client, requests' 2>/dev/null; then
  log "installing ${PINS[*]} into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}"
fi

if [[ -n "${KAIROS_BIN:-}" ]]; then
  kairos=$KAIROS_BIN
else
  log "building kairos (debug)"
  cargo build --quiet --locked -p kairos
  kairos="${CARGO_TARGET_DIR:-target}/debug/kairos"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kairos-oauth.XXXXXX")
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/config" "$work/data"
cp -r examples/quickstart/. "$work/config/"
cat >>"$work/config/kairos.toml" <<'TOML'

# A second token target, for a resource server that must learn nothing of orders-api.
[[target]]
name = "other-api"
kind = "token"
audience = "https://other.internal"
TOML
"$kairos" dev-issuer init --dir "$work/config" >/dev/null

# A throwaway admin token for a throwaway broker on loopback, never printed.
export KAIROS_DEV_ADMIN_TOKEN=oauth-conformance-admin-token-not-a-secret
: >"$work/server.out"
"$kairos" server --dev --data "$work/data" --listen 127.0.0.1:0 --issuer-url "$ISSUER_URL" \
  --config "$work/config/kairos.toml" >"$work/server.out" 2>"$work/server.log" &
server_pid=$!

addr=
for _ in $(seq 1 100); do
  addr=$(sed -n 's|^kairos: listening on \(http://[^ ]*\).*|\1|p' "$work/server.out" | head -n1)
  if [[ -n "$addr" ]] && curl -fsS "$addr/v1/health" >/dev/null 2>&1; then
    break
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    log "the server exited before answering; its log:"
    cat "$work/server.log" >&2
    exit 1
  fi
  addr=
  sleep 0.2
done
if [[ -z "$addr" ]]; then
  log "the server did not answer /v1/health within 20 s; its log:"
  cat "$work/server.log" >&2
  exit 1
fi
log "kairos at $addr (issuer $ISSUER_URL)"

KAIROS_PLATFORM_JWT=$("$kairos" dev-issuer mint --dir "$work/config" \
  --sub 'repo:acme/backup:ref:refs/heads/main')
export KAIROS_PLATFORM_JWT KAIROS_ISSUER=$ISSUER_URL
status=0
"$VENV/bin/python" scripts/oauth_conformance.py "$addr" || status=$?

if grep -q "panicked" "$work/server.log"; then
  log "the server panicked; its log:"
  grep -B2 -A10 "panicked" "$work/server.log" >&2 || true
  status=1
fi
if [[ $status -ne 0 ]]; then
  log "FAILED"
else
  log "passed"
fi
exit "$status"
