#!/usr/bin/env bash
# Issue #20 item 2: the io_uring relay loop against the epoll relay, same
# binary, one run. Gateways pinned to core 0 (one worker each, only the one
# under test is busy), generator and echo upstream on core 1, targets in
# alternation, ratios in one table; then system calls per message (strace
# -c) and a perf profile of each under the 64 B load.
#
#   flock /tmp/bench.lock nice -n -10 bash loadtest/bench-uring.sh [BIN] [OUT_DIR]
#
# Environment: ROUNDS (default 3), DURATION (default 5s), MODES (io_uring
# setups to try besides epoll, default "plain coop": TG_URING_MODE).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=${1:-$CARGO_TARGET_DIR/release/tidegate}
OUT=${2:-$(mktemp -d)}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
MODES=${MODES:-plain coop}
LT=$CARGO_TARGET_DIR/release/tidegate-loadtest
mkdir -p "$OUT"

UP=127.0.0.1:18200
RUN=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT

wait_line() { # FILE PATTERN
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "bench-uring.sh: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

taskset -c 1 "$LT" --workers 1 echo-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5
TARGETS=()
declare -A PID_OF
start_proxy() { # NAME PORT MODE ARGS...
    local name=$1 port=$2 mode=$3
    shift 3
    TG_URING_MODE=$mode taskset -c 0 "$BIN" proxy --listen "127.0.0.1:$port" \
        --upstream "ws://$UP" --workers 1 "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    PIDS+=($!)
    PID_OF[$name]=$!
    wait_line "$RUN/$name.out" "tidegate listening"
    TARGETS+=(--target "$name=ws://127.0.0.1:$port/@$!")
}
start_proxy epoll 18201 - --relay-io epoll
port=18202
for m in $MODES; do
    start_proxy "uring-$m" $port "$m" --relay-io io_uring
    port=$((port + 1))
done

{
    echo "# io_uring relay vs epoll relay — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-uring.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION MODES=\"$MODES\"); $("$BIN" version)."
    echo "Machine: $(nproc) cores; before: $(uptime)."
    echo "Pinning: gateways on core 0 (--workers 1 each); generator and echo upstream on core 1."
    echo
    for scenario in "echo -c 50 --size 64" "echo -c 50 --size 64 --in-flight 16" \
        "echo -c 50 --size 16384"; do
        echo "### $scenario"
        echo
        echo '```'
        # shellcheck disable=SC2086
        taskset -c 1 "$LT" --workers 1 compare --quiet --rounds "$ROUNDS" "${TARGETS[@]}" \
            $scenario --duration "$DURATION"
        echo '```'
        echo
    done
    echo "After: $(uptime)."
} >"$OUT/compare.md"

# System calls and profile under the 64 B closed loop, one gateway at a time.
for name in "${!PID_OF[@]}"; do
    pid=${PID_OF[$name]}
    port=$(grep -o "127.0.0.1:[0-9]*" "$RUN/$name.out" | head -1)
    taskset -c 1 "$LT" --workers 1 --json --quiet echo --url "ws://$port/" -c 50 --size 64 \
        --duration 9s --warmup 1s >"$OUT/$name-load.json" &
    load=$!
    sleep 2
    perf stat -e raw_syscalls:sys_enter -p "$pid" -o "$OUT/$name-syscalls.txt" -- sleep 2 || true
    timeout -s INT 2 strace -c -f -p "$pid" -o "$OUT/$name-strace.txt" || true
    perf record -q -g -e cpu-clock -p "$pid" -o "$OUT/$name.perf" -- sleep 2 >/dev/null 2>&1 || true
    wait $load
    perf report -i "$OUT/$name.perf" --no-children --percent-limit 1.5 --stdio 2>/dev/null \
        | grep -v "^$" | head -80 >"$OUT/$name-perf.txt" || true
done
echo "results in $OUT" >&2
