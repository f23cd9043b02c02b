#!/usr/bin/env bash
# A/B of two tidegate binaries in one run, for "no performance change"
# claims of a refactor (issue #13): both proxies pinned to core 0 (one
# worker each, only the one under test is busy), generator and echo
# upstream on core 1, targets in alternation, ratios in one table.
#
#   bash loadtest/bench-ab.sh BIN_A BIN_B [OUT.md]
#
# Environment: ROUNDS (default 3), DURATION (default 5s).
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: bench-ab.sh BIN_A BIN_B [OUT.md]}
B=${2:?usage: bench-ab.sh BIN_A BIN_B [OUT.md]}
OUT=${3:-/dev/stdout}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release -p tidegate-loadtest >&2
LT=$CARGO_TARGET_DIR/release/tidegate-loadtest

UP=127.0.0.1:18100
RUN=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT

wait_line() { # FILE PATTERN
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "bench-ab.sh: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

taskset -c 1 "$LT" --workers 1 echo-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5
start_proxy() { # NAME BIN PORT
    taskset -c 0 "$2" proxy --listen "127.0.0.1:$3" --upstream "ws://$UP" --workers 1 \
        >"$RUN/$1.out" 2>"$RUN/$1.err" &
    PIDS+=($!)
    wait_line "$RUN/$1.out" "tidegate listening"
}
start_proxy a "$A" 18101
A_PID=${PIDS[-1]}
start_proxy b "$B" 18102
B_PID=${PIDS[-1]}
TARGETS=(--target "a=ws://127.0.0.1:18101/@$A_PID" --target "b=ws://127.0.0.1:18102/@$B_PID")

{
    echo "# tidegate A/B — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-ab.sh $A $B\` (ROUNDS=$ROUNDS DURATION=$DURATION)."
    echo "A: $A ($("$A" version)); B: $B ($("$B" version))."
    echo "Machine: $(nproc) cores; load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Pinning: both proxies on core 0 (one worker each); generator and echo upstream on core 1."
    echo
    for scenario in "echo -c 50 --size 64" "echo -c 50 --size 16384" \
        "connect --total 30000 --concurrency 64"; do
        echo "### $scenario"
        echo
        echo '```'
        # shellcheck disable=SC2086
        taskset -c 1 "$LT" --workers 1 compare --quiet --rounds "$ROUNDS" "${TARGETS[@]}" \
            $scenario --duration "$DURATION"
        echo '```'
        echo
    done
} >"$OUT"
