#!/usr/bin/env bash
# System calls per round trip of a mux gateway under the issue-#20 load
# (CLIENTS clients × RATE msg/s × 128 B to the SDK's Rust echo example),
# for each of the binaries given, one after the other on the same
# application: `perf stat` on the writev/recvfrom/sendto/epoll_wait
# tracepoints of the gateway for PERF_SECONDS in the middle of a
# DURATION run. Gateway `run --workers 1` on core 0 (mux route only,
# pool_size 2); generator and application on core 1. Loopback only.
#
#   bash loadtest/bench-mux-syscalls.sh BIN... [> OUT.md]
#
# Environment: CLIENTS (5000), RATE (2), DURATION (10s), PERF_SECONDS (4),
# ROUNDS (1; the binaries alternate per round).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench-mux-syscalls.sh BIN..." >&2; exit 64; }
CLIENTS=${CLIENTS:-5000}
RATE=${RATE:-2}
DURATION=${DURATION:-10s}
PERF_SECONDS=${PERF_SECONDS:-4}
ROUNDS=${ROUNDS:-1}
. loadtest/lib.sh
build -p tidegate-loadtest -p tidegate-mux --example echo
keep_copies "$CARGO_TARGET_DIR/release/tidegate-loadtest" "$CARGO_TARGET_DIR/release/examples/echo"
LT=$RUN/bin/tidegate-loadtest
ulimit -n "$(ulimit -Hn)"
EVENTS=syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_epoll_wait

start_app app "$RUN/bin/echo" --listen 127.0.0.1:0
APP=$APP_ADDR

echo "# mux gateway system calls per round trip — $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "CLIENTS=$CLIENTS RATE=$RATE/s DURATION=$DURATION PERF_SECONDS=$PERF_SECONDS ROUNDS=$ROUNDS; load average before: $(loadavg)."
echo
echo "| round | binary | msgs/s (run) | writev | recvfrom | sendto | epoll_wait | calls per round trip |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for r in $(seq "$ROUNDS"); do
    i=0
    for bin in "$@"; do
        i=$((i + 1))
        config_head 12000 >"$RUN/gw$i.toml"
        cat >>"$RUN/gw$i.toml" <<EOF
[[routes]]
name = "mux"
path = "/"
upstream = "mux"
mode = "mux"
[[upstreams]]
name = "mux"
endpoints = ["ws://$APP"]
pool_size = 2
EOF
        start_gateway_run "gw$i" 0 "$bin" "$RUN/gw$i.toml"
        sleep 1 # the pool connects
        taskset -c 1 "$LT" --workers 1 --quiet --json rate --url "ws://$GW_ADDR/" -c "$CLIENTS" \
            --rate "$RATE" --size 128 --duration "$DURATION" --source-ip-count 4 \
            >"$RUN/rate$i.$r.json" &
        gen=$!
        # The clients connect first (~1-2 s), then the measured window.
        sleep 4
        perf stat -x, -e "$EVENTS" -p "$GW_PID" -- sleep "$PERF_SECONDS" 2>"$RUN/perf$i.$r.csv" >/dev/null
        wait "$gen"
        stop "$GW_PID"
        python3 - "$RUN/rate$i.$r.json" "$RUN/perf$i.$r.csv" "$r" "$bin" "$PERF_SECONDS" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
counts = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[2].startswith("syscalls:sys_enter_"):
        counts[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0]) if f[0].isdigit() else 0
rate = run["rate"]
trips = rate * float(sys.argv[5])
calls = sum(counts.values())
names = ["writev", "recvfrom", "sendto", "epoll_wait"]
print(f"| {sys.argv[3]} | {sys.argv[4]} | {rate:,.0f} | "
      + " | ".join(f"{counts.get(n, 0):,}" for n in names)
      + f" | {calls / trips:.2f} |")
PY
        sleep 1
    done
done
echo
echo "Load average after: $(loadavg). Round trips in the window are estimated as the run's msgs/s × PERF_SECONDS."
