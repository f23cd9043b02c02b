#!/usr/bin/env bash
# Regenerates the comparison tables of docs/performance.md:
#
#   bash loadtest/bench.sh [OUT.md]        (default: loadtest/results/latest.md)
#
# Layout (issue #4): every proxy — tidegate (--workers 1), nginx
# (worker_processes 1), HAProxy (nbthread 1) — pinned to core 0; the load
# generator and the shared echo upstream pinned to core 1. Each scenario is
# one `tidegate-loadtest compare` run, targets in alternation, ratios to the
# direct (no proxy) run. Everything is on loopback, bounded in time.
#
# The headline scenarios (64 B, 16 KiB, open loop, idle memory) also leave
# their plots in IMG (default docs/img/bench), which docs/performance.md
# embeds: for each compare run the harness's `--report` directory
# (latency.svg, throughput.svg, report.md), and idle-rss.svg, a bar chart
# of the RSS per idle connection drawn by `tidegate-loadtest bars`.
#
# HTTP proxying (issue #15): the same proxies as HTTP reverse proxies (a
# second tidegate `proxy` on 18085, nginx on 18083, HAProxy on 18084) in
# front of the bundled `http-server` (18001, core 1): small GET and 64 KiB
# GET on 50 keep-alive connections (requests/s, proxy CPU per request), and
# SSE_STREAMS idle Server-Sent Events streams (RSS per stream, plotted as
# IMG/sse-idle-rss.svg). 9,900 by default, not 10,000: each proxied stream
# holds two descriptors in the proxy, and the hard open-file limit here is
# 20,000, which cannot be raised without CAP_SYS_RESOURCE.
#
# All cores (issue #20): ALL_CORES=1 runs every process unpinned on every
# core (taskset -c 0-(nproc-1)) — generator, echo upstream and proxies
# sharing them — with as many workers per proxy as cores: nginx
# worker_processes N (under a master, charged with its workers), HAProxy
# nbthread N, tidegate with its default worker count. A second gateway,
# `tidegate-ws`, runs the same binary with `--layout work_stealing` (one
# tokio multi-thread runtime) next to the default `thread_per_core`.
# (Pinned, both layouts are the same single thread, so only one runs.)
# ONLY_RUNTIME=1: just the scenarios of issue #20's targets (64 B closed
# loop, 16 in flight, connect churn).
#
# Environment: ROUNDS (default 3), DURATION (default 5s), SKIP_IDLE=1,
# TG (a tidegate binary to measure instead of the one built here),
# LOADTEST_BIN (the same for the harness), NO_BUILD=1 (build nothing:
# for runs under /tmp/freeze-bench.sh, which would stop the cargo),
# IMG, ONLY_HEADLINE=1 (just the plotted scenarios), SKIP_HTTP=1,
# ONLY_HTTP=1 (just the HTTP scenarios), SSE_STREAMS (default 9900),
# PORT_BASE (default 18000: every port above is PORT_BASE + its last two
# digits, so a run can move away from ports another job holds).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-loadtest/results/latest.md}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
IMG=${IMG:-docs/img/bench}
ONLY_HEADLINE=${ONLY_HEADLINE:-0}
ONLY_HTTP=${ONLY_HTTP:-0}
SKIP_HTTP=${SKIP_HTTP:-0}
SSE_STREAMS=${SSE_STREAMS:-9900}
ALL_CORES=${ALL_CORES:-0}
ONLY_RUNTIME=${ONLY_RUNTIME:-0}
if [ "$ALL_CORES" = 1 ]; then
    PROXY_CORES=0-$(($(nproc) - 1))
    GEN_CORES=$PROXY_CORES
    export PEER_WORKERS=$(nproc)
    TG_WORKERS=()      # the default: one per core
    PINNING="every process unpinned on cores $PROXY_CORES; nginx worker_processes $PEER_WORKERS, HAProxy nbthread $PEER_WORKERS, tidegate default workers (thread_per_core; tidegate-ws: work_stealing)"
else
    PROXY_CORES=0
    GEN_CORES=1
    TG_WORKERS=(--workers 1)
    PINNING="proxies on core 0 (one worker/thread each); generator and echo upstream on core 1"
fi
export PEER_CORE=$PROXY_CORES ECHO_CORE=$GEN_CORES
. loadtest/lib.sh
build --bin tidegate
build -p tidegate-loadtest
# TG: the gateway binary under test (default: the one just built).
TG=${TG:-$CARGO_TARGET_DIR/release/tidegate}
LT=${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/tidegate-loadtest}
export LOADTEST_BIN=$LT

PB=${PORT_BASE:-18000}
UP=127.0.0.1:$PB
TG_ADDR=127.0.0.1:$((PB + 80))
NGINX_ADDR=127.0.0.1:$((PB + 81))
HAPROXY_ADDR=127.0.0.1:$((PB + 82))
HTTP_UP=127.0.0.1:$((PB + 1))
NGINX_HTTP_ADDR=127.0.0.1:$((PB + 83))
HAPROXY_HTTP_ADDR=127.0.0.1:$((PB + 84))
TG_HTTP_ADDR=127.0.0.1:$((PB + 85))
TG_WS_ADDR=127.0.0.1:$((PB + 86))
export PEERS_RUN_DIR=${PEERS_RUN_DIR:-${TMPDIR:-/tmp}/tidegate-peers}
# shellcheck disable=SC2317  # called by lib.sh's exit trap
bench_on_exit() { bash loadtest/peers/peers.sh stop >/dev/null 2>&1 || true; }

# The shared upstream, and the peers in front of it.
bash loadtest/peers/peers.sh start --upstream "$UP" --echo-server --http-upstream "$HTTP_UP" --http-server \
    --nginx-listen "$NGINX_ADDR" --haproxy-listen "$HAPROXY_ADDR" \
    --nginx-http-listen "$NGINX_HTTP_ADDR" --haproxy-http-listen "$HAPROXY_HTTP_ADDR" >&2
start_proxy tg "$PROXY_CORES" "$TG" --listen "$TG_ADDR" --upstream "ws://$UP" "${TG_WORKERS[@]}"
TG_PID=$PROXY_PID
if [ "$ALL_CORES" = 1 ]; then
    start_proxy tg-ws "$PROXY_CORES" "$TG" --listen "$TG_WS_ADDR" --upstream "ws://$UP" --layout work_stealing
    TG_WS_PID=$PROXY_PID
fi
# The HTTP gateway: the same one-liner in front of the HTTP upstream (a
# route carries HTTP and WebSocket alike; the ws:// URL names the endpoint).
start_proxy tg-http "$PROXY_CORES" "$TG" --listen "$TG_HTTP_ADDR" --upstream "ws://$HTTP_UP" "${TG_WORKERS[@]}"
TG_HTTP_PID=$PROXY_PID
NGINX_PID=$(cat "$PEERS_RUN_DIR/nginx.started")
HAPROXY_PID=$(cat "$PEERS_RUN_DIR/haproxy.started")

TARGETS=(--target "direct=ws://$UP/"
         --target "tidegate=ws://$TG_ADDR/@$TG_PID"
         --target "nginx=ws://$NGINX_ADDR/@$NGINX_PID"
         --target "haproxy=ws://$HAPROXY_ADDR/@$HAPROXY_PID")
if [ "$ALL_CORES" = 1 ]; then
    TARGETS+=(--target "tidegate-ws=ws://$TG_WS_ADDR/@$TG_WS_PID")
fi

run_compare() { # PLOT TITLE ARGS...  (PLOT: a directory name under IMG, or - for none)
    local plot=$1 title=$2; shift 2
    local report=()
    if [ "$plot" != - ]; then
        report=(--report "$IMG/$plot")
    elif [ "$ONLY_HEADLINE" = 1 ]; then
        return 0
    fi
    if [ "$ONLY_RUNTIME" = 1 ]; then
        case $title in "50 connections, closed loop, 64 B"|"50 connections, 16 in flight"*|"connection churn"*) ;; *) return 0 ;; esac
        report=()
    fi
    [ "$ONLY_HTTP" = 1 ] && [ "${HTTP_STEP:-0}" != 1 ] && return 0
    echo "bench.sh: $title" >&2
    {
        echo "### $title"
        echo
        echo '```'
        echo "load average before: $(loadavg)"
        taskset -c "$GEN_CORES" "$LT" --workers 1 compare --quiet --rounds "$ROUNDS" "${report[@]}" "${TARGETS[@]}" "$@" \
            | grep -v '^report written to '
        echo '```'
        echo
    } >>"$OUT.tmp"
}

# held_rss SCENARIO COUNT FIELD "NAME URL PID"...: through each proxy in
# turn, hold COUNT idle connections (`idle`) or streams (`sse-idle`); each
# run's output goes into the report and its RSS per connection (FIELD of
# the JSON the harness prints on its `rss:` line) into BARS.
held_rss() {
    local scenario=$1 count=$2 field=$3 t per
    shift 3
    BARS=()
    for t in "$@"; do
        set -- $t
        echo "bench.sh: $scenario $1" >&2
        taskset -c "$GEN_CORES" "$LT" --workers 1 "$scenario" --quiet --url "$2" -c "$count" --hold 3s \
            --source-ip-count 4 --pid "$3" >"$RUN/$scenario-$1.txt"
        { echo "$1:"; echo '```'; cat "$RUN/$scenario-$1.txt"; echo '```'; } >>"$OUT.tmp"
        per=$(grep -o "\"$field\":[0-9.e+-]*" "$RUN/$scenario-$1.txt" | head -1 | cut -d: -f2)
        BARS+=("$1=${per:-0}")
        sleep 2
    done
}

mkdir -p "$(dirname "$OUT")" "$IMG"
{
    echo "# tidegate vs nginx vs HAProxy — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION)."
    echo "Machine: $(nproc) cores, $(uname -r); load average before the run: $(loadavg)."
    echo "Pinning: $PINNING (ALL_CORES=$ALL_CORES)."
    echo "Versions: $("$TG" version); $(nginx -v 2>&1); $(haproxy -v 2>&1 | head -1)."
    echo "Plots: $IMG/ (ONLY_HEADLINE=$ONLY_HEADLINE)."
    echo
} >"$OUT.tmp"

run_compare 64b "50 connections, closed loop, 64 B" echo -c 50 --size 64 --duration "$DURATION"
run_compare 16kib "50 connections, closed loop, 16 KiB" echo -c 50 --size 16384 --duration "$DURATION"
run_compare - "50 connections, 16 in flight each, 64 B" echo -c 50 --size 64 --in-flight 16 --duration "$DURATION"
run_compare open-loop "1,000 connections x 10 msg/s x 128 B (open loop)" rate -c 1000 --rate 10 --size 128 --duration "$DURATION"
# The idle ramp below takes well under a second per proxy, too short to
# compare connects/s on; this storm runs ~2 s per target and round.
run_compare - "connection churn: 30,000 x (connect, upgrade, close), 64 at a time" connect --total 30000 --concurrency 64 --duration "$DURATION"

if [ "${SKIP_IDLE:-0}" != 1 ] && [ "$ONLY_HTTP" != 1 ] && [ "$ONLY_RUNTIME" != 1 ]; then
    echo "### 9,900 idle connections (RSS per connection, connects/s during the ramp)" >>"$OUT.tmp"
    echo >>"$OUT.tmp"
    held_rss idle 9900 bytes_per_connection "tidegate ws://$TG_ADDR/ $TG_PID" \
        "nginx ws://$NGINX_ADDR/ $NGINX_PID" "haproxy ws://$HAPROXY_ADDR/ $HAPROXY_PID"
    "$LT" bars --out "$IMG/idle-rss.svg" --unit "bytes per connection" \
        --title "9,900 idle connections: proxy RSS per connection" "${BARS[@]}"
fi
if [ "$SKIP_HTTP" != 1 ] && [ "$ONLY_RUNTIME" != 1 ]; then
    echo "## HTTP proxying (issue #15)" >>"$OUT.tmp"
    echo >>"$OUT.tmp"
    http_targets() { # PATH
        TARGETS=(--target "direct=http://$HTTP_UP$1"
                 --target "tidegate=http://$TG_HTTP_ADDR$1@$TG_HTTP_PID"
                 --target "nginx=http://$NGINX_HTTP_ADDR$1@$NGINX_PID"
                 --target "haproxy=http://$HAPROXY_HTTP_ADDR$1@$HAPROXY_PID")
    }
    HTTP_STEP=1
    http_targets /
    run_compare http-small "HTTP: small GET (13 B body), 50 keep-alive connections" http-get -c 50 --duration "$DURATION"
    http_targets /bytes/65536
    run_compare http-64kib "HTTP: 64 KiB GET, 50 keep-alive connections" http-get -c 50 --duration "$DURATION"
    HTTP_STEP=0
    echo "### $SSE_STREAMS idle SSE streams (RSS per stream, streams/s during the ramp)" >>"$OUT.tmp"
    echo >>"$OUT.tmp"
    held_rss sse-idle "$SSE_STREAMS" bytes_per_stream "tidegate http://$TG_HTTP_ADDR/sse $TG_HTTP_PID" \
        "nginx http://$NGINX_HTTP_ADDR/sse $NGINX_PID" "haproxy http://$HAPROXY_HTTP_ADDR/sse $HAPROXY_PID"
    "$LT" bars --out "$IMG/sse-idle-rss.svg" --unit "bytes per stream" \
        --title "$SSE_STREAMS idle SSE streams: proxy RSS per stream" "${BARS[@]}"
fi
mv "$OUT.tmp" "$OUT"
echo "bench.sh: wrote $OUT" >&2
