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
# (default 2000; 0 skips), PORT_BASE (default 18200).
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench-http-ab.sh BIN_A BIN_B [OUT.md]}
B=${2:?usage: bench-http-ab.sh BIN_A BIN_B [OUT.md]}
OUT=${3:-/dev/stdout}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
SSE_STREAMS=${SSE_STREAMS:-2000}
PB=${PORT_BASE:-18200}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -p tidegate-loadtest >&2
LT=$CARGO_TARGET_DIR/release/tidegate-loadtest

UP=127.0.0.1:$PB
RUN=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT

wait_line() { # FILE PATTERN
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "bench-http-ab.sh: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

taskset -c 1 "$LT" --workers 1 http-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5
start_proxy() { # NAME BIN PORT
    taskset -c 0 "$2" proxy --listen "127.0.0.1:$3" --upstream "ws://$UP" --workers 1 \
        >"$RUN/$1.out" 2>"$RUN/$1.err" &
    PIDS+=($!)
    wait_line "$RUN/$1.out" "tidegate listening"
}
start_proxy a "$A" $((PB + 1))
A_PID=${PIDS[-1]}
start_proxy b "$B" $((PB + 2))
B_PID=${PIDS[-1]}
targets() { # PATH
    TARGETS=(--target "a=http://127.0.0.1:$((PB + 1))$1@$A_PID"
             --target "b=http://127.0.0.1:$((PB + 2))$1@$B_PID")
}

{
    echo "# tidegate HTTP A/B — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-http-ab.sh $A $B\` (ROUNDS=$ROUNDS DURATION=$DURATION SSE_STREAMS=$SSE_STREAMS)."
    echo "A: $A; B: $B."
    echo "Machine: $(nproc) cores; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Pinning: both proxies on core 0 (one worker each); generator and http-server on core 1."
    echo
    for path in / /bytes/65536; do
        targets "$path"
        echo "### http-get $path, 50 keep-alive connections"
        echo
        echo '```'
        taskset -c 1 "$LT" --workers 1 compare --quiet --rounds "$ROUNDS" "${TARGETS[@]}" \
            http-get -c 50 --duration "$DURATION" | grep -v '^report written to '
        echo '```'
        echo
    done
    if [ "$SSE_STREAMS" -gt 0 ]; then
        for t in "a $((PB + 1)) $A_PID" "b $((PB + 2)) $B_PID"; do
            set -- $t
            echo "### $SSE_STREAMS idle SSE streams through $1"
            echo
            echo '```'
            taskset -c 1 "$LT" --workers 1 sse-idle --quiet --url "http://127.0.0.1:$2/sse" \
                -c "$SSE_STREAMS" --hold 3s --pid "$3"
            echo '```'
            echo
            sleep 2
        done
    fi
    echo "Load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)."
} >"$OUT"
