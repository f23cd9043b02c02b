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
# (default: 64 B and 16 KiB echo with 50 clients). For the multi-core
# default instead of the pinned setup: GW_CORES, GW_WORKERS, LT_CORES,
# LT_WORKERS, APP_CORES and POOL_SIZE (defaults 0, 1, 1, 1, 1, 1), e.g.
# every process on both cores with `GW_CORES=0-1 GW_WORKERS=2
# LT_CORES=0-1 APP_CORES=0-1 POOL_SIZE=2`.
# A_WRITE_DELAY and B_WRITE_DELAY set `mux.write_delay` of either gateway
# (e.g. the same binary twice, `B_WRITE_DELAY=200us`).
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench-mux-ab.sh BIN_A BIN_B [OUT.md]}
B=${2:?usage: bench-mux-ab.sh BIN_A BIN_B [OUT.md]}
OUT=${3:-/dev/stdout}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
. loadtest/lib.sh
build -p tidegate-loadtest -p tidegate-mux --example echo
keep_copies "$CARGO_TARGET_DIR/release/tidegate-loadtest" "$CARGO_TARGET_DIR/release/examples/echo"
LT=$RUN/bin/tidegate-loadtest

start_app app "$RUN/bin/echo" --listen 127.0.0.1:0
APP=$APP_ADDR

start_gateway() { # NAME BIN [WRITE_DELAY] → sets GW_PID, GW_ADDR
    config_head >"$RUN/$1.toml"
    cat >>"$RUN/$1.toml" <<CONF
[[routes]]
name = "mux"
path = "/"
upstream = "app"
mode = "mux"
[[upstreams]]
name = "app"
endpoints = ["ws://$APP"]
pool_size = ${POOL_SIZE:-1}
CONF
    mux_section "${3:-}" >>"$RUN/$1.toml"
    start_gateway_run "$1" "${GW_CORES:-0}" "$2" "$RUN/$1.toml"
}
start_gateway a "$A" "${A_WRITE_DELAY:-}"
A_PID=$GW_PID A_ADDR=$GW_ADDR
start_gateway b "$B" "${B_WRITE_DELAY:-}"
B_PID=$GW_PID B_ADDR=$GW_ADDR
sleep 1 # the mux pools connect
TARGETS=(--target "a=ws://$A_ADDR/@$A_PID" --target "b=ws://$B_ADDR/@$B_PID")

{
    echo "# tidegate mux A/B — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-mux-ab.sh $A $B\` (ROUNDS=$ROUNDS DURATION=$DURATION)."
    echo "A: $A ($("$A" version))${A_WRITE_DELAY:+, mux.write_delay $A_WRITE_DELAY}; B: $B ($("$B" version))${B_WRITE_DELAY:+, mux.write_delay $B_WRITE_DELAY}."
    echo "Machine: $(nproc) cores; load average before the run: $(loadavg)."
    echo "Pinning: both gateways on cores ${GW_CORES:-0} (${GW_WORKERS:-1} worker(s) each, pool_size ${POOL_SIZE:-1}); generator on cores ${LT_CORES:-1} (${LT_WORKERS:-1} worker(s)); mux echo app on cores ${APP_CORES:-1}."
    echo
    IFS=';' read -ra scenarios <<<"${SCENARIOS:-echo -c 50 --size 64;echo -c 50 --size 16384}"
    for scenario in "${scenarios[@]}"; do
        # shellcheck disable=SC2086
        section "$scenario" taskset -c "${LT_CORES:-1}" "$LT" --workers "${LT_WORKERS:-1}" compare --quiet --rounds "$ROUNDS" \
            "${TARGETS[@]}" $scenario --duration "$DURATION"
    done
    echo "Load average after: $(loadavg)."
} >"$OUT"
