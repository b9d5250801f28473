#!/usr/bin/env bash
# API schema tests: schemathesis generates requests from the served OpenAPI document
# (GET /v1/openapi.json) and checks the answers of a real `kairos server --dev`: no 5xx,
# no crash, and responses that match the document.
#
#   bash scripts/schemathesis.sh                     # bounded run (CI): about 2.5 minutes
#   SCHEMATHESIS_MAX_TIME=900 SCHEMATHESIS_MAX_EXAMPLES=1000 bash scripts/schemathesis.sh
#
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   SCHEMATHESIS_MAX_TIME      time budget in seconds for the whole run (default 150)
#   SCHEMATHESIS_SEED          random seed, to replay a run (default: a new one each run)
#   SCHEMATHESIS_VENV          where schemathesis is installed (default under ~/.cache)
#   KAIROS_BIN                 a kairos binary to test instead of building one
#
# schemathesis comes from PyPI, pinned, into a venv outside the repository. The broker
# runs on a free loopback port with a throwaway data directory, the quickstart
# configuration and a development issuer; all are removed at exit.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${SCHEMATHESIS_MAX_EXAMPLES:-40}
MAX_TIME=${SCHEMATHESIS_MAX_TIME:-150}
VENV=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/kairos/schemathesis-$SCHEMATHESIS_VERSION}

log() { printf '==> schemathesis.sh: %s\n' "$*"; }

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
  log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

if [[ -n "${KAIROS_BIN:-}" ]]; then
  kairos=$KAIROS_BIN
else
  log "building kairos (debug)"
  cargo build --quiet --locked -p kairos
  kairos="${CARGO_TARGET_DIR:-target}/debug/kairos"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/kairos-schemathesis.XXXXXX")
server_pid=
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# The quickstart configuration, trusting a development issuer made for this run, so the
# catalog has an issuer, a team, an identity, entitlements and policies to answer about.
mkdir -p "$work/config" "$work/data"
cp -r examples/quickstart/. "$work/config/"
"$kairos" dev-issuer init --dir "$work/config" >/dev/null

# A throwaway admin token for a throwaway broker on loopback; passed through the
# environment so it shows in no process list, and never printed.
export KAIROS_DEV_ADMIN_TOKEN=schemathesis-admin-token-not-a-secret
"$kairos" server --dev --data "$work/data" --listen 127.0.0.1:0 \
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
log "kairos at $addr; up to $MAX_EXAMPLES examples per operation, ${MAX_TIME}s budget"

seed_args=()
if [[ -n "${SCHEMATHESIS_SEED:-}" ]]; then
  seed_args=(--seed "$SCHEMATHESIS_SEED")
fi
# Run from the throwaway directory: schemathesis keeps a cache in `.schemathesis/` there.
# The request timeout is above the longest long-poll (`GET /v1/requests/{id}?wait=60s`).
run_schemathesis() {
  (cd "$work" && "$VENV/bin/schemathesis" run "$addr/v1/openapi.json" \
    --header "Authorization: Bearer $KAIROS_DEV_ADMIN_TOKEN" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection \
    --request-timeout 70 \
    --workers 1 \
    --generation-database none \
    --output-sanitize true \
    --no-color \
    "${seed_args[@]}" "$@")
}
# `POST /v1/users/{name}/revoke` can revoke the admin's own token (the bootstrap token
# belongs to user `admin`), after which every other operation would only see 401s: it
# runs last, on its own, briefly.
status=0
run_schemathesis --max-examples "$MAX_EXAMPLES" --max-time "$MAX_TIME" \
  --exclude-path '/v1/users/{name}/revoke' || status=$?
log "last: POST /v1/users/{name}/revoke"
run_schemathesis --max-examples 20 --max-time 20 \
  --include-path '/v1/users/{name}/revoke' || status=$?

# A crash is a failure even when every answer looked fine.
if ! kill -0 "$server_pid" 2>/dev/null; then
  log "the server is no longer running; its log:"
  tail -n 50 "$work/server.log" >&2
  status=1
fi
if grep -q "panicked" "$work/server.log"; then
  log "the server panicked; its log:"
  grep -B2 -A10 "panicked" "$work/server.log" >&2 || true
  status=1
fi
if [[ $status -ne 0 ]]; then
  log "FAILED (schemathesis exit $status)"
else
  log "passed"
fi
exit "$status"
