#!/usr/bin/env bash
# Fan-out at the edge vs sending per session (issue #17); the figures of
# the "Fan-out" section of docs/performance.md:
#
#   TG=/path/to/tidegate bash loadtest/bench-fanout.sh [OUT.md]
#                                  (default OUT: loadtest/results/fanout.md)
#
# One `tidegate run --workers 1` (core 0) with four routes, each to its own
# application (core 1, with the generator):
#   /fanout    mux → the SDK `fanout` example, --mode publish: one PUBLISH
#              per broadcast (extension fanout), the gateway delivers;
#   /sessions  mux → the same example, --mode sessions: the same Room with
#              fanout declined, one MESSAGE per session;
#   /pass      passthrough → the example, --mode passthrough: one socket
#              per client, one frame per socket;
#   /echo      passthrough → `tidegate echo`: closed-loop 64 B echo, the
#              baseline of issue #17's gateway CPU target.
# Per round, in alternation: `tidegate-loadtest fanout` with SUBSCRIBERS
# subscribers on /fanout, /sessions and /pass (RATE broadcasts/s × SIZE B
# each, so SUBSCRIBERS × RATE deliveries/s; an application broadcasts only
# while all SUBSCRIBERS are connected, so the ramp is not measured under
# load), watching the gateway and that
# route's application (--pid GW --pid APP); then `compare echo` (64 B,
# ECHO_CLIENTS clients) on /echo with the gateway's pid. Loopback only.
#
# Environment: TG (gateway binary; default: the workspace's release build),
# ROUNDS (3), DURATION (10s), WARMUP (2s), SUBSCRIBERS (5000), RATE (20),
# SIZE (128), ECHO_CLIENTS (50), WORKERS (1: the gateway's --workers) and
# GW_CORES (0: its pinning; e.g. WORKERS=2 GW_CORES=0,1 puts the two
# workers on both cores, beside the generator and the applications on
# core 1 — cross-worker delivery, src/fanout/worker.rs), APP_CORES (1:
# the applications' pinning; APP_CORES=0 puts them beside the gateway,
# away from the generator's network work), RAW=DIR (keep every run's JSON there;
# `python3 loadtest/bench-fanout-report.py DIR` prints the tables again).
#
# A/B: with OLD_TG=/path/to/other/tidegate each round runs both gateways,
# one after the other (the order alternates per round; the applications
# stay up and the mux pools reconnect), each with MODES (default "fanout
# sessions pass"; e.g. MODES=fanout) and the echo baseline; the report has
# one table per gateway, from the same run.
#
# FANOUT_BIN: the application binary (default: the workspace's build of
# the SDK example `fanout`), e.g. an older build for an A/B of it.
#
# SEND_BATCH / OLD_SEND_BATCH: `[fanout] send_batch` of the TG / OLD_TG
# gateway (given to it as TIDEGATE_FANOUT__SEND_BATCH; unset: the
# binary's default) — e.g. the same binary as TG and OLD_TG with
# SEND_BATCH=io_uring OLD_SEND_BATCH=none is an A/B of the switch.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-loadtest/results/fanout.md}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
SUBSCRIBERS=${SUBSCRIBERS:-5000}
RATE=${RATE:-20}
SIZE=${SIZE:-128}
ECHO_CLIENTS=${ECHO_CLIENTS:-50}
WORKERS=${WORKERS:-1}
GW_CORES=${GW_CORES:-0}
POOL=2
. loadtest/lib.sh
if [ -z "${TG:-}" ]; then
    build --bin tidegate
    TG=$CARGO_TARGET_DIR/release/tidegate
fi
build -p tidegate-loadtest
build -p tidegate-mux --example fanout
# Passthrough holds two sockets per client in the gateway.
ulimit -n "$(ulimit -Hn)"

keep_copies "$CARGO_TARGET_DIR/release/tidegate-loadtest"
cp "${FANOUT_BIN:-$CARGO_TARGET_DIR/release/examples/fanout}" "$RUN/bin/fanout"
cp "$TG" "$RUN/bin/tidegate"
if [ -n "${OLD_TG:-}" ]; then cp "$OLD_TG" "$RUN/bin/tidegate-old"; fi
MODES=${MODES:-fanout sessions pass}
GWBIN=$RUN/bin/tidegate
LT=$RUN/bin/tidegate-loadtest

start_app publish "$RUN/bin/fanout" --listen 127.0.0.1:0 --mode publish --rate "$RATE" --size "$SIZE" --min-subscribers "$SUBSCRIBERS"
PUB_PID=$APP_PID PUB_ADDR=$APP_ADDR
start_app sessions "$RUN/bin/fanout" --listen 127.0.0.1:0 --mode sessions --rate "$RATE" --size "$SIZE" --min-subscribers "$SUBSCRIBERS"
SES_PID=$APP_PID SES_ADDR=$APP_ADDR
start_app pass "$RUN/bin/fanout" --listen 127.0.0.1:0 --mode passthrough --rate "$RATE" --size "$SIZE" --min-subscribers "$SUBSCRIBERS"
PASS_PID=$APP_PID PASS_ADDR=$APP_ADDR
APP_CORES=1 start_app echo "$GWBIN" echo --listen 127.0.0.1:0 --workers 1 # the echo stays beside the generator
ECHO_ADDR=$APP_ADDR

# 7,000, not more: with a passthrough route every client counts two
# descriptors, and the subscribers' duplicates for direct delivery come
# only from what the cap leaves over (docs/deployment.md). With 20,000
# descriptors that is ~5,950, enough for the 5,000 subscribers.
config_head 7000 >"$RUN/gw.toml"
cat >>"$RUN/gw.toml" <<EOF
[[routes]]
name = "fanout"
path = "/fanout"
upstream = "publish"
mode = "mux"
[[routes]]
name = "sessions"
path = "/sessions"
upstream = "sessions"
mode = "mux"
[[routes]]
name = "pass"
path = "/pass"
upstream = "pass"
[[routes]]
name = "echo"
path = "/echo"
upstream = "echo"
[[upstreams]]
name = "publish"
endpoints = ["ws://$PUB_ADDR"]
pool_size = $POOL
[[upstreams]]
name = "sessions"
endpoints = ["ws://$SES_ADDR"]
pool_size = $POOL
[[upstreams]]
name = "pass"
endpoints = ["ws://$PASS_ADDR"]
[[upstreams]]
name = "echo"
endpoints = ["ws://$ECHO_ADDR"]
EOF
start_gw() { # BINARY [SEND_BATCH] → sets TG_PID, GW
    if [ -n "${2:-}" ]; then export TIDEGATE_FANOUT__SEND_BATCH=$2; fi
    GW_WORKERS=$WORKERS start_gateway_run tg "$GW_CORES" "$1" "$RUN/gw.toml"
    unset TIDEGATE_FANOUT__SEND_BATCH
    TG_PID=$GW_PID GW=$GW_ADDR
    # Both mux pools are up when each application holds its listener + POOL sockets.
    for pid in "$PUB_PID" "$SES_PID"; do
        wait_pool "$pid" "$POOL" || true
    done
}
stop_gw() {
    kill "$TG_PID" 2>/dev/null || true
    wait "$TG_PID" 2>/dev/null || true
    # The applications notice the pool connections are gone.
    for pid in "$PUB_PID" "$SES_PID"; do
        for _ in $(seq 100); do [ "$(sockets "$pid")" -le 1 ] && break; sleep 0.1; done
    done
}

fanout_run() { # MODE APP_PID ROUND DIR
    echo "bench-fanout.sh: $1 round $3 ($(basename "$4"))" >&2
    taskset -c 1 "$LT" --workers 1 --quiet --json fanout --url "ws://$GW/$1" -c "$SUBSCRIBERS" \
        --warmup "$WARMUP" --duration "$DURATION" --source-ip-count 4 \
        --pid "$TG_PID" --pid "$2" >"$4/$1.$3.json"
    sleep 2 # closes settle, the application stops broadcasting
}
echo_run() { # ROUND DIR
    echo "bench-fanout.sh: echo round $1 ($(basename "$2"))" >&2
    taskset -c 1 "$LT" --workers 1 --json compare --quiet --rounds 1 \
        --target "pass=ws://$GW/echo@$TG_PID" echo -c "$ECHO_CLIENTS" --size 64 \
        --warmup 1s --duration "$DURATION" >"$2/echo.$1.json"
    sleep 1
}
app_pid() { # MODE
    case $1 in fanout) echo "$PUB_PID" ;; sessions) echo "$SES_PID" ;; pass) echo "$PASS_PID" ;; esac
}
round() { # ROUND DIR
    for m in $MODES; do fanout_run "$m" "$(app_pid "$m")" "$1" "$2"; done
    echo_run "$1" "$2"
}

mkdir -p "$RUN/res" "$(dirname "$OUT")"
LOAD_BEFORE=$(loadavg)
if [ -z "${OLD_TG:-}" ]; then
    start_gw "$GWBIN" "${SEND_BATCH:-}"
    for r in $(seq "$ROUNDS"); do round "$r" "$RUN/res"; done
else
    mkdir -p "$RUN/res/new" "$RUN/res/old"
    for r in $(seq "$ROUNDS"); do
        order="new old"
        [ $((r % 2)) -eq 0 ] && order="old new"
        for which in $order; do
            bin=$GWBIN batch=${SEND_BATCH:-}
            [ "$which" = old ] && bin=$RUN/bin/tidegate-old batch=${OLD_SEND_BATCH:-}
            start_gw "$bin" "$batch"
            round "$r" "$RUN/res/$which"
            stop_gw
        done
    done
fi
LOAD_AFTER=$(loadavg)

{
    echo "# tidegate fan-out — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`TG=$TG bash loadtest/bench-fanout.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP SUBSCRIBERS=$SUBSCRIBERS RATE=$RATE SIZE=$SIZE ECHO_CLIENTS=$ECHO_CLIENTS WORKERS=$WORKERS GW_CORES=$GW_CORES SEND_BATCH=${SEND_BATCH:-} OLD_SEND_BATCH=${OLD_SEND_BATCH:-})."
    echo "Machine: $(nproc) cores, $(uname -r); load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
    echo "Pinning: tidegate run --workers $WORKERS on core(s) $GW_CORES; generator (one worker) on core 1, the applications on core(s) ${APP_CORES:-1}. Mux pool_size $POOL. CPU from each process's CPU-time clock (ns)."
    echo "Gateway: $("$GWBIN" version). Applications: \`${FANOUT_BIN:-$CARGO_TARGET_DIR/release/examples/fanout}\`."
    echo
    if [ -z "${OLD_TG:-}" ]; then
        python3 loadtest/bench-fanout-report.py "$RUN/res" "$SUBSCRIBERS" "$RATE"
    else
        echo "A/B in one run: new = \`$TG\`, old = \`$OLD_TG\` (order alternating per round; MODES=$MODES)."
        for which in new old; do
            echo
            echo "## $which"
            echo
            python3 loadtest/bench-fanout-report.py "$RUN/res/$which" "$SUBSCRIBERS" "$RATE"
        done
    fi
} >"$OUT"
if [ -n "${RAW:-}" ]; then mkdir -p "$RAW" && cp -r "$RUN"/res/* "$RAW"/; fi
echo "bench-fanout.sh: wrote $OUT" >&2
