#!/usr/bin/env bash
# System calls, wake-ups and CPU per request of HTTP reverse proxies under
# issue #15's small-GET load (`http-get -c 50`: GET after GET on 50
# keep-alive connections to the bundled http-server), one proxy after the
# other on the same upstream: `perf stat` on every `sys_enter_*`
# tracepoint, context switches and task clock of the proxy for
# PERF_SECONDS in the middle of a DURATION run, divided by the requests
# the generator counted (its requests/s × PERF_SECONDS).
#
#   bash loadtest/bench-http-syscalls.sh TARGET... [> OUT.md]
#
# TARGET: a tidegate binary (run as `proxy --workers 1`, as bench.sh
# does), or `haproxy` / `nginx` (loadtest/peers, one thread / worker).
# Every proxy on core 0; generator and http-server on core 1. Loopback
# only.
#
# Environment: DURATION (default 8s), PERF_SECONDS (4), URL_PATH (/),
# PORT_BASE (default 18300), NO_BUILD / LOADTEST_BIN (lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench-http-syscalls.sh TARGET..." >&2; exit 64; }
DURATION=${DURATION:-8s}
PERF_SECONDS=${PERF_SECONDS:-4}
URL_PATH=${URL_PATH:-/}
PB=${PORT_BASE:-18300}
. loadtest/lib.sh
build -p tidegate-loadtest
LT=${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/tidegate-loadtest}
export LOADTEST_BIN=$LT PEER_CORE=0 ECHO_CORE=1
export PEERS_RUN_DIR=${PEERS_RUN_DIR:-$RUN/peers}
UP=127.0.0.1:$PB
# shellcheck disable=SC2317  # called by lib.sh's exit trap
bench_on_exit() { bash loadtest/peers/peers.sh stop >/dev/null 2>&1 || true; }

taskset -c 1 "$LT" --workers 1 http-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5

echo "# HTTP proxy system calls per request — $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "http-get -c 50 $URL_PATH, DURATION=$DURATION, perf window PERF_SECONDS=$PERF_SECONDS;" \
    "proxies on core 0 (one worker/thread), generator and http-server on core 1;" \
    "load average before: $(loadavg)."
echo
i=0
for target in "$@"; do
    i=$((i + 1))
    port=$((PB + 10 + i))
    case $target in
        haproxy | nginx)
            bash loadtest/peers/peers.sh start --only "$target" --upstream "127.0.0.1:$((PB + 1))" \
                --http-upstream "$UP" --"$target"-listen "127.0.0.1:$((PB + 20 + i))" \
                --"$target"-http-listen "127.0.0.1:$port" >&2
            pid=$(cat "$PEERS_RUN_DIR/$target.started")
            ;;
        *)
            start_proxy "p$i" 0 "$target" --listen "127.0.0.1:$port" --upstream "ws://$UP" --workers 1
            pid=$PROXY_PID
            ;;
    esac
    taskset -c 1 "$LT" --workers 1 http-get --quiet --json --url "http://127.0.0.1:$port$URL_PATH" \
        -c 50 --duration "$DURATION" --pid "$pid" >"$RUN/get$i.json" &
    gen=$!
    # One second of warm-up, one more to settle, then the window.
    sleep 2
    perf stat -x, -e 'syscalls:sys_enter_*' -e context-switches,task-clock -p "$pid" \
        -- sleep "$PERF_SECONDS" 2>"$RUN/perf$i.csv" >/dev/null
    wait "$gen"
    case $target in
        haproxy | nginx) bash loadtest/peers/peers.sh stop --only "$target" >/dev/null 2>&1 || true ;;
        *) stop "$pid" ;;
    esac
    python3 - "$RUN/get$i.json" "$RUN/perf$i.csv" "$target" "$PERF_SECONDS" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
rate = run["rate"]
requests = rate * float(sys.argv[4])
counts = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit() and float(f[0]) > 0:
        counts[f[2].removeprefix("syscalls:sys_enter_")] = float(f[0])
clock = counts.pop("task-clock", 0.0)  # milliseconds
cs = counts.pop("context-switches", 0.0)
calls = sum(counts.values())
print(f"### {sys.argv[3]}\n")
print(f"{rate:,.0f} requests/s over the run; in the window {requests:,.0f} requests (estimated), "
      f"CPU {clock * 1000 / requests:.2f} µs per request (task clock), "
      f"{calls / requests:.2f} system calls and {cs / requests:.3f} context switches per request.\n")
print("| system call | calls | per request |")
print("|---|---:|---:|")
for name, n in sorted(counts.items(), key=lambda kv: -kv[1]):
    print(f"| {name} | {n:,.0f} | {n / requests:.3f} |")
print()
PY
    sleep 1
done
echo "Load average after: $(loadavg)."
