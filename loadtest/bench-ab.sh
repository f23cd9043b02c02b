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
. loadtest/lib.sh
build -p tidegate-loadtest
LT=$CARGO_TARGET_DIR/release/tidegate-loadtest

UP=127.0.0.1:18100
taskset -c 1 "$LT" --workers 1 echo-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5
start_proxy a 0 "$A" --listen 127.0.0.1:18101 --upstream "ws://$UP" --workers 1
A_PID=$PROXY_PID
start_proxy b 0 "$B" --listen 127.0.0.1:18102 --upstream "ws://$UP" --workers 1
B_PID=$PROXY_PID
TARGETS=(--target "a=ws://127.0.0.1:18101/@$A_PID" --target "b=ws://127.0.0.1:18102/@$B_PID")

{
    echo "# tidegate A/B — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-ab.sh $A $B\` (ROUNDS=$ROUNDS DURATION=$DURATION)."
    echo "A: $A ($("$A" version)); B: $B ($("$B" version))."
    echo "Machine: $(nproc) cores; load average before the run: $(loadavg)."
    echo "Pinning: both proxies on core 0 (one worker each); generator and echo upstream on core 1."
    echo
    for scenario in "echo -c 50 --size 64" "echo -c 50 --size 16384" \
        "connect --total 30000 --concurrency 64"; do
        # shellcheck disable=SC2086
        section "$scenario" taskset -c 1 "$LT" --workers 1 compare --quiet --rounds "$ROUNDS" \
            "${TARGETS[@]}" $scenario --duration "$DURATION"
    done
} >"$OUT"
