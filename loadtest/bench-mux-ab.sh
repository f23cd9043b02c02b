#!/usr/bin/env bash
# A/B of two tidegate binaries on a mux route, for the data-path cost of a
# mux change (bench-ab.sh does the same for passthrough): both gateways
# pinned to core 0 (`run --workers 1`, one mux route each to the same
# application, pool_size 1), the tidegate-mux SDK `echo` example and the
# generator on core 1, targets in alternation, ratios in one table.
#
#   bash loadtest/bench-mux-ab.sh BIN_A BIN_B [OUT.md]
#
# Environment: ROUNDS (default 3), DURATION (default 5s), SCENARIOS
# (default: 64 B and 16 KiB echo with 50 clients).
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench-mux-ab.sh BIN_A BIN_B [OUT.md]}
B=${2:?usage: bench-mux-ab.sh BIN_A BIN_B [OUT.md]}
OUT=${3:-/dev/stdout}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -p tidegate-loadtest -p tidegate-mux --example echo >&2
RUN=$(mktemp -d)
# Copies: a shared CARGO_TARGET_DIR may be rebuilt while this runs.
cp "$CARGO_TARGET_DIR/release/tidegate-loadtest" "$CARGO_TARGET_DIR/release/examples/echo" "$RUN/"
LT=$RUN/tidegate-loadtest
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT

wait_addr() { # FILE → prints IP:PORT from "addr=IP:PORT"
    for _ in $(seq 150); do
        a=$(grep -o 'addr=[0-9.:]*' "$1" 2>/dev/null | head -1 | cut -d= -f2) && [ -n "$a" ] && { echo "$a"; return; }
        sleep 0.1
    done
    echo "bench-mux-ab.sh: no address in $1" >&2; cat "$1" >&2; exit 1
}

taskset -c 1 "$RUN/echo" --listen 127.0.0.1:0 >"$RUN/app.out" 2>"$RUN/app.err" &
PIDS+=($!)
APP=$(wait_addr "$RUN/app.out")

start_gateway() { # NAME BIN → sets GW_PID, GW_ADDR
    cat >"$RUN/$1.toml" <<CONF
[admin]
listen = ""
[[listeners]]
name = "bench"
listen = "127.0.0.1:0"
[[routes]]
name = "mux"
path = "/"
upstream = "app"
mode = "mux"
[[upstreams]]
name = "app"
endpoints = ["ws://$APP"]
pool_size = 1
CONF
    taskset -c 0 "$2" run --config "$RUN/$1.toml" --workers 1 >"$RUN/$1.out" 2>"$RUN/$1.err" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_ADDR=$(wait_addr "$RUN/$1.out")
}
start_gateway a "$A"
A_PID=$GW_PID A_ADDR=$GW_ADDR
start_gateway b "$B"
B_PID=$GW_PID B_ADDR=$GW_ADDR
sleep 1 # the mux pools connect
TARGETS=(--target "a=ws://$A_ADDR/@$A_PID" --target "b=ws://$B_ADDR/@$B_PID")

{
    echo "# tidegate mux A/B — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-mux-ab.sh $A $B\` (ROUNDS=$ROUNDS DURATION=$DURATION)."
    echo "A: $A ($("$A" version)); B: $B ($("$B" version))."
    echo "Machine: $(nproc) cores; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Pinning: both gateways on core 0 (one worker each); generator and mux echo app on core 1."
    echo
    IFS=';' read -ra scenarios <<<"${SCENARIOS:-echo -c 50 --size 64;echo -c 50 --size 16384}"
    for scenario in "${scenarios[@]}"; do
        echo "### $scenario"
        echo
        echo '```'
        # shellcheck disable=SC2086
        taskset -c 1 "$LT" --workers 1 compare --quiet --rounds "$ROUNDS" "${TARGETS[@]}" \
            $scenario --duration "$DURATION"
        echo '```'
        echo
    done
    echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg)."
} >"$OUT"
