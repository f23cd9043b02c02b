#!/usr/bin/env bash
# A/B of two tidegate binaries as HTTP reverse proxies in one run (issue
# #15): both proxies pinned to core 0 (one worker each, only the one under
# test is busy), the generator and the bundled http-server on core 1,
# targets in alternation, ratios in one table; then SSE_STREAMS idle
# Server-Sent Events streams held through each (RSS per stream).
#
#   bash loadtest/bench-http-ab.sh BIN_A BIN_B [OUT.md]
#
# Environment: ROUNDS (default 3), DURATION (default 5s), SSE_STREAMS
# (default 2000; 0 skips), PORT_BASE (default 18200). For the multi-core
# default instead of the pinned setup: GW_CORES, GW_WORKERS, LT_CORES,
# LT_WORKERS and UP_CORES (defaults 0, 1, 1, 1, 1), e.g. every process on
# both cores with `GW_CORES=0-1 GW_WORKERS=2 LT_CORES=0-1 LT_WORKERS=2
# UP_CORES=0-1`.
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench-http-ab.sh BIN_A BIN_B [OUT.md]}
B=${2:?usage: bench-http-ab.sh BIN_A BIN_B [OUT.md]}
OUT=${3:-/dev/stdout}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
SSE_STREAMS=${SSE_STREAMS:-2000}
PB=${PORT_BASE:-18200}
. loadtest/lib.sh
build -p tidegate-loadtest
LT=${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/tidegate-loadtest}

UP=127.0.0.1:$PB
taskset -c "${UP_CORES:-1}" "$LT" --workers 1 http-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5
start_proxy a "${GW_CORES:-0}" "$A" --listen "127.0.0.1:$((PB + 1))" --upstream "ws://$UP" --workers "${GW_WORKERS:-1}"
A_PID=$PROXY_PID
start_proxy b "${GW_CORES:-0}" "$B" --listen "127.0.0.1:$((PB + 2))" --upstream "ws://$UP" --workers "${GW_WORKERS:-1}"
B_PID=$PROXY_PID
targets() { # PATH
    TARGETS=(--target "a=http://127.0.0.1:$((PB + 1))$1@$A_PID"
             --target "b=http://127.0.0.1:$((PB + 2))$1@$B_PID")
}
http_compare() { # over TARGETS
    taskset -c "${LT_CORES:-1}" "$LT" --workers "${LT_WORKERS:-1}" compare --quiet --rounds "$ROUNDS" "${TARGETS[@]}" \
        http-get -c 50 --duration "$DURATION" | grep -v '^report written to '
}

{
    echo "# tidegate HTTP A/B — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-http-ab.sh $A $B\` (ROUNDS=$ROUNDS DURATION=$DURATION SSE_STREAMS=$SSE_STREAMS)."
    echo "A: $A; B: $B."
    echo "Machine: $(nproc) cores; load average before the run: $(loadavg)."
    echo "Pinning: both proxies on cores ${GW_CORES:-0} (${GW_WORKERS:-1} worker(s) each); generator on cores ${LT_CORES:-1} (${LT_WORKERS:-1} worker(s)); http-server on cores ${UP_CORES:-1}."
    echo
    for path in / /bytes/65536; do
        targets "$path"
        section "http-get $path, 50 keep-alive connections" http_compare
    done
    if [ "$SSE_STREAMS" -gt 0 ]; then
        for t in "a $((PB + 1)) $A_PID" "b $((PB + 2)) $B_PID"; do
            set -- $t
            section "$SSE_STREAMS idle SSE streams through $1" \
                taskset -c "${LT_CORES:-1}" "$LT" --workers 1 sse-idle --quiet --url "http://127.0.0.1:$2/sse" \
                -c "$SSE_STREAMS" --hold 3s --pid "$3"
            sleep 2
        done
    fi
    echo "Load average after the run: $(loadavg)."
} >"$OUT"
