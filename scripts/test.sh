#!/usr/bin/env bash
# Runs every test of tidegate: Rust unit + integration tests, the real-client
# tests (Python websockets, Node ws, headless Chromium) and the Autobahn
# conformance suite (kosoku), all against the real release binary.
#
#   bash scripts/test.sh
#
# Installs what it needs, idempotently (fast when already done): Debian
# packages (socat, chromium, prometheus, dnsmasq-base), ./.venv from tests/requirements.txt,
# tests/node/node_modules from tests/node/package-lock.json.
#
# Lint gate first: `cargo fmt --check` and `cargo clippy --workspace
# --all-targets -D warnings`; a failure there stops the run.
#
# Environment (variables named TIDEGATE_* are configuration for the gateway
# itself, so the test harness's own knobs are all TG_TEST_*):
#   CARGO_TARGET_DIR           build cache (default ~/.cache/tidegate/target, outside the clone)
#   TG_FUZZ_TARGET_DIR         build cache of fuzz/ (default ~/.cache/tidegate/fuzz-target)
#   TG_TEST_CONFORMANCE=full|quick|skip   conformance selection (default full)
#   TG_TEST_SKIP_INSTALL=1     do not touch apt/pip/npm
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tidegate/target}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
ARTIFACTS=$REPO/.test-artifacts
mkdir -p "$ARTIFACTS"

START=$SECONDS
declare -a RESULTS=()
FAILED=0

log() { printf '\n==> %s\n' "$*"; }

# Kill every process this script started (children and their descendants),
# whatever way we leave: a test that dies must not leave a gateway, upstream,
# socat or chromium behind.
kill_tree() {
  local pid child
  pid=$1
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    kill_tree "$child"
    kill -TERM "$child" 2>/dev/null || true
  done
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  kill_tree $$
  sleep 0.2
  for child in $(ps -o pid= --ppid $$ 2>/dev/null); do kill -KILL "$child" 2>/dev/null || true; done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

# ---------------------------------------------------------------- install

install_debian() {
  # prometheus: for promtool (tests/deploy/validate.py checks the alert rules).
  # dnsmasq-base: the real DNS server of the DNS re-resolution test (tests/balance.rs).
  # nats-server: the real NATS of the fan-out backplane tests (tests/nats.rs).
  local pkgs=(socat chromium prometheus dnsmasq-base nats-server) missing=() p
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python() {
  local stamp=.venv/.requirements.sha256 want
  want=$(cat tests/requirements.txt sdk/python/pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  log "python venv (.venv) from tests/requirements.txt + sdk/python (editable)"
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/python -m pip install -q --disable-pip-version-check -r tests/requirements.txt
  .venv/bin/python -m pip install -q --disable-pip-version-check -e sdk/python
  echo "$want" >"$stamp"
}

install_node() {
  local d
  # tests/deploy: the CRD schemas validate.py checks custom resources with.
  for d in tests/node tests/deploy; do
    if [ -d $d/node_modules ] && cmp -s $d/package-lock.json $d/node_modules/.tidegate-lock; then
      continue
    fi
    log "npm ci ($d)"
    (cd $d && npm ci --no-audit --no-fund --loglevel=error)
    cp $d/package-lock.json $d/node_modules/.tidegate-lock
  done
}

# ------------------------------------------------------------------ steps

# step NAME TIMEOUT CMD...: run one suite, record pass/fail and time, go on.
step() {
  local name=$1 limit=$2 t0=$SECONDS rc=0
  shift 2
  log "$name"
  # In the background + wait, so a signal to this script is handled at once
  # (bash defers traps while a foreground child runs).
  timeout --kill-after=30 "$limit" "$@" &
  wait $! || rc=$?
  local dt=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then
    RESULTS+=("PASS  ${name} (${dt}s)")
  else
    [ "$rc" -eq 124 ] && name="$name [timed out after ${limit}s]"
    RESULTS+=("FAIL  ${name} (exit ${rc}, ${dt}s)")
    FAILED=$((FAILED + 1))
  fi
}

summary() {
  local passed=0 r
  for r in "${RESULTS[@]}"; do [[ $r == PASS* ]] && passed=$((passed + 1)); done
  printf '\n==> summary (%ss)\n' "$((SECONDS - START))"
  printf '  %s\n' "${RESULTS[@]}"
  printf 'test.sh: %d passed, %d failed\n' "$passed" "$FAILED"
}

if [ "${TG_TEST_SKIP_INSTALL:-0}" != 1 ]; then
  install_debian
  install_python
  install_node
  # Every crate of Cargo.lock, those for other platforms too: the deploy
  # step replays the Dockerfile's `cargo fetch` layer with `cargo metadata
  # --offline`, which needs them (async-nats brings some a Linux build
  # never downloads).
  cargo fetch --locked
fi

log "lint: cargo fmt --check, cargo clippy --release --workspace --all-targets -D warnings"
# Release profile, like the build below: clippy checks every crate once more
# (metadata only, about 2 minutes on a cold cache).
if ! cargo fmt --all -- --check || ! cargo clippy --release --workspace --all-targets -- -D warnings; then
  RESULTS+=("FAIL  lint (cargo fmt --check / cargo clippy -D warnings)")
  FAILED=1
  summary
  exit 1
fi
RESULTS+=("PASS  lint (cargo fmt --check, cargo clippy -D warnings)")

log "cargo build --release --workspace --bins --examples (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
# Examples too: the mux tests run the SDK's echo example as the application.
cargo build --release --workspace --bins --examples &
if ! wait $!; then
  RESULTS+=("FAIL  cargo build")
  FAILED=1
  summary
  exit 1
fi
export TG_TEST_BIN=${TG_TEST_BIN:-$CARGO_TARGET_DIR/release/tidegate}
export TG_TEST_PYTHON=$REPO/.venv/bin/python

step "cargo test (release)" 1500 cargo test --release --workspace --no-fail-fast
step "python: websockets client (pytest tests/python)" 600 \
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/python
step "python mux sdk (pytest sdk/python/tests)" 300 \
  .venv/bin/python -m pytest -q -p no:cacheprovider sdk/python/tests
step "abuse: hostile clients and apps (pytest tests/abuse)" 600 .venv/bin/python -m pytest -q -p no:cacheprovider tests/abuse
# tests/node: ws client, Socket.IO 4, long-poll (one 90 s hold, cases concurrent);
# tests/browser: Origin policy, SockJS per transport, SSE (issue #15).
step "node: ws, socket.io, long-poll (node --test tests/node/)" 300 node --test tests/node/
step "browser: headless chromium, sockjs, sse (node --test tests/browser/)" 300 node --test tests/browser/

step "loadtest: smoke run through the gateway (loadtest/smoke.sh)" 120 bash loadtest/smoke.sh

# Fuzz targets on stable: seeds + fixed mutations, own build cache (fuzz/run-smoke.sh).
step "fuzz smoke: seed replay of every fuzz target (fuzz/run-smoke.sh)" 600 bash fuzz/run-smoke.sh

step "deploy: kubectl kustomize, schemas, promtool, dashboard, Dockerfile (tests/deploy/validate.py)" 300 .venv/bin/python tests/deploy/validate.py

case "${TG_TEST_CONFORMANCE:-full}" in
  full) step "conformance: kosoku, full suite (tests/conformance/run.py --full)" 1200 \
          .venv/bin/python tests/conformance/run.py --full --out "$ARTIFACTS/conformance" ;;
  quick) step "conformance: kosoku, quick subset (tests/conformance/run.py)" 900 \
          .venv/bin/python tests/conformance/run.py --out "$ARTIFACTS/conformance" ;;
  skip) RESULTS+=("SKIP  conformance (TG_TEST_CONFORMANCE=skip)") ;;
  *) echo "TG_TEST_CONFORMANCE must be full, quick or skip" >&2; exit 2 ;;
esac

summary
[ "$FAILED" -eq 0 ]
