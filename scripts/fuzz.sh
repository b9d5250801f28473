#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (the parsers that face the outside), each for a
# bounded time, on stable Rust.
#
#   bash scripts/fuzz.sh                      # every target, 25 s each (CI)
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh request_json config_toml
#
# Environment:
#   FUZZ_SECONDS     seconds per target (default 25)
#   FUZZ_JOBS        fuzzing processes per target (default 1; more uses libFuzzer's -fork)
#   FUZZ_TARGET_DIR  cargo target directory for the instrumented build (default
#                    fuzz/target); CI keeps it in a cache outside the clone
#
# Stable Rust: `--sanitizer none` (AddressSanitizer needs nightly's -Zsanitizer; the code
# is safe Rust, so libFuzzer's coverage guidance plus panics, debug assertions and
# overflow checks are what find bugs here). Inputs found are kept in fuzz/corpus/TARGET
# (not committed); the committed seeds are in fuzz/seeds/TARGET. A crash is saved under
# fuzz/artifacts/TARGET/ and replayed with
#   cargo fuzz run --sanitizer none TARGET fuzz/artifacts/TARGET/crash-…
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SECONDS_PER_TARGET=${FUZZ_SECONDS:-25}
JOBS=${FUZZ_JOBS:-1}

log() { printf '==> fuzz.sh: %s\n' "$*"; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

build_args=(--sanitizer none --codegen-units 16)
if [[ -n "${FUZZ_TARGET_DIR:-}" ]]; then
  build_args+=(--target-dir "$FUZZ_TARGET_DIR")
fi

if [[ $# -gt 0 ]]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi
if [[ ${#targets[@]} -eq 0 ]]; then
  log "no fuzz targets found (cargo fuzz list)"
  exit 1
fi

log "building ${targets[*]}"
cargo fuzz build "${build_args[@]}"

libfuzzer_args=(-max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
if [[ "$JOBS" -gt 1 ]]; then
  libfuzzer_args+=(-fork="$JOBS")
fi

failed=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  log "$target for ${SECONDS_PER_TARGET}s"
  if ! cargo fuzz run "${build_args[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    "${libfuzzer_args[@]}" 2>"fuzz/$target.log"; then
    tail -n 60 "fuzz/$target.log" >&2
    failed+=("$target")
  else
    grep -E '^(#[0-9]+\s+DONE|Done [0-9]+ runs)' "fuzz/$target.log" || true
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  log "FAILED: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/TARGET.log)"
  exit 1
fi
log "passed: ${targets[*]}"
