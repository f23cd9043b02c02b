#!/usr/bin/env bash
# A/B of two tidegate binaries in one run, for "no performance change"
# claims of a refactor (issue #13): both proxies pinned to core 0 (one
# worker each, only the one under test is busy), generator and echo
# upstream on core 1, targets in alternation, ratios in one table.
#
#   bash loadtest/bench-ab.sh BIN_A BIN_B [OUT.md]
#
# Environment: ROUNDS (default 3), DURATION (default 5s), SCENARIOS
# (';'-separated; default: 64 B and 16 KiB closed loops, 30,000 connects).
# For the multi-core default instead of the pinned setup: GW_CORES,
# GW_WORKERS, LT_CORES, LT_WORKERS and UP_CORES (defaults 0, 1, 1, 1, 1),
# e.g. every process on both cores with `GW_CORES=0-1 GW_WORKERS=2
# LT_CORES=0-1 LT_WORKERS=2 UP_CORES=0-1`.
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
taskset -c "${UP_CORES:-1}" "$LT" --workers 1 echo-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5
start_proxy a "${GW_CORES:-0}" "$A" --listen 127.0.0.1:18101 --upstream "ws://$UP" --workers "${GW_WORKERS:-1}"
A_PID=$PROXY_PID
start_proxy b "${GW_CORES:-0}" "$B" --listen 127.0.0.1:18102 --upstream "ws://$UP" --workers "${GW_WORKERS:-1}"
B_PID=$PROXY_PID
TARGETS=(--target "a=ws://127.0.0.1:18101/@$A_PID" --target "b=ws://127.0.0.1:18102/@$B_PID")

{
    echo "# tidegate A/B — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-ab.sh $A $B\` (ROUNDS=$ROUNDS DURATION=$DURATION)."
    echo "A: $A ($("$A" version)); B: $B ($("$B" version))."
    echo "Machine: $(nproc) cores; load average before the run: $(loadavg)."
    echo "Pinning: both proxies on cores ${GW_CORES:-0} (${GW_WORKERS:-1} worker(s) each); generator on cores ${LT_CORES:-1} (${LT_WORKERS:-1} worker(s)); echo upstream on cores ${UP_CORES:-1}."
    echo
    IFS=';' read -ra scenarios <<<"${SCENARIOS:-echo -c 50 --size 64;echo -c 50 --size 16384;connect --total 30000 --concurrency 64}"
    for scenario in "${scenarios[@]}"; do
        # shellcheck disable=SC2086
        section "$scenario" taskset -c "${LT_CORES:-1}" "$LT" --workers "${LT_WORKERS:-1}" compare --quiet --rounds "$ROUNDS" \
            "${TARGETS[@]}" $scenario --duration "$DURATION"
    done
} >"$OUT"
