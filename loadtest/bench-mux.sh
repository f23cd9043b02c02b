#!/usr/bin/env bash
# Mux vs passthrough against the same application (issue #6); regenerates
# the "Mux vs passthrough" section of docs/performance.md:
#
#   bash loadtest/bench-mux.sh [OUT.md]      (default: loadtest/results/mux.md)
#
# For each application — Rust (passthrough: `tidegate echo`, fastwebsockets;
# mux: the tidegate-mux SDK `echo` example) and Python (passthrough:
# loadtest/apps/ws_echo.py on websockets; mux: tidegate_mux.examples.echo) —
# both flavours run side by side behind one `tidegate run --workers 1` with
# two routes: /pass (passthrough upstream) and /mux (mux upstream, pool_size
# 2). Gateway on core 0; generator and applications on core 1. Loopback only.
#
#  1. `rate`: CLIENTS clients × R msg/s × 128 B for each R in RATES, ROUNDS
#     rounds with the two routes in alternation; the harness samples over
#     the measured window the gateway's CPU (per message) and the
#     application's CPU, RSS and socket count (--pid GATEWAY --pid APP).
#     10 msg/s is issue #6's case; on a 2-core machine the open-loop
#     generator (16–19 µs of CPU per message at that rate) cannot offer
#     50k msg/s from the core it shares with the application, so 1 and
#     2 msg/s are run too,
#     where it keeps up and the CPU figures are not distorted by catch-up
#     batches (the report marks runs that were not at the offered load).
#  2. `idle`: IDLE_CLIENTS held clients on each route, each on a freshly
#     started gateway (RSS per client; allocator state of earlier runs
#     would hide the growth).
#
#  3. Old against new in the same run (issue #20): with OLD_TG=BINARY a
#     second gateway (that binary, also on core 0, route /muxold only)
#     serves mode `muxold` from an old mux application — OLD_ECHO=BINARY
#     (the Rust SDK `echo` example of the old tree) and OLD_PYSDK=DIR (the
#     old tree's sdk/python, put first on PYTHONPATH) — in alternation
#     with `pass` and `mux` in every round. The new Python SDK is this
#     tree's sdk/python (on PYTHONPATH), whatever the venv has installed.
#
# Environment: ROUNDS (3), DURATION (5s), CLIENTS (5000), RATES ("1 2 10"),
# IDLE_CLIENTS (9000), APPS ("rust python"), SKIP_IDLE=1, RAW=DIR (keep the
# JSON of every run there; `python3 loadtest/bench-mux-report.py DIR`
# prints the tables again), PY (the Python with websockets; default
# .venv/bin/python), OLD_TG, OLD_ECHO, OLD_PYSDK (see 3), WRITE_DELAY and
# OLD_WRITE_DELAY (`mux.write_delay` of the gateway and of the OLD_TG one,
# e.g. 1ms; unset: the default, 0s).
# The pinned setup above is the default; for the multi-core default
# layout: GW_CORES, GW_WORKERS, LT_CORES, LT_WORKERS, APP_CORES,
# APP_WORKERS (the passthrough echo's workers) and POOL_SIZE (defaults
# 0, 1, 1, 1, 1, 1, 2), e.g. every process on both cores with
# `GW_CORES=0-1 GW_WORKERS=2 LT_CORES=0-1 LT_WORKERS=2 APP_CORES=0-1
# APP_WORKERS=2`.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-loadtest/results/mux.md}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CLIENTS=${CLIENTS:-5000}
RATES=${RATES:-1 2 10}
IDLE_CLIENTS=${IDLE_CLIENTS:-9000}
APPS=${APPS:-rust python}
POOL=${POOL_SIZE:-2}
. loadtest/lib.sh
build --bin tidegate
build -p tidegate-loadtest
build -p tidegate-mux --examples
PY=${PY:-$PWD/.venv/bin/python}
OLD_TG=${OLD_TG:-}
if [[ " $APPS " == *" python "* ]] && ! "$PY" -c 'import websockets, tidegate_mux' 2>/dev/null; then
    echo "bench-mux.sh: the Python apps need .venv with websockets and the tidegate_mux SDK;" >&2
    echo "  bash scripts/test.sh creates it (or run with APPS=rust)" >&2
    exit 1
fi
# Passthrough holds two sockets per client in the gateway.
ulimit -n "$(ulimit -Hn)"

keep_copies "$CARGO_TARGET_DIR/release/tidegate" "$CARGO_TARGET_DIR/release/tidegate-loadtest" \
    "$CARGO_TARGET_DIR/release/examples/echo"
TG=$RUN/bin/tidegate
LT=$RUN/bin/tidegate-loadtest
MUX_ECHO=$RUN/bin/echo
if [ -n "$OLD_TG" ]; then
    mkdir "$RUN/old"
    cp "$OLD_TG" "$RUN/old/tidegate"
    cp "${OLD_ECHO:?OLD_TG needs OLD_ECHO}" "$RUN/old/echo"
    OLD_PYSDK=${OLD_PYSDK:?OLD_TG needs OLD_PYSDK}
fi

# The Python SDK under test comes from APP_PYTHONPATH, never from the
# environment.
app() { # NAME CMD... → sets APP_PID, APP_ADDR
    local name=$1; shift
    start_app "$name" env PYTHONPATH="${APP_PYTHONPATH:-}" "$@"
}

start_gateway() { # APP → sets TG_PID, GW
    config_head 12000 >"$RUN/$1.toml"
    cat >>"$RUN/$1.toml" <<EOF
[[routes]]
name = "pass"
path = "/pass"
upstream = "pass"
[[routes]]
name = "mux"
path = "/mux"
upstream = "mux"
mode = "mux"
[[upstreams]]
name = "pass"
endpoints = ["ws://$PASS_ADDR"]
[[upstreams]]
name = "mux"
endpoints = ["ws://$MUX_ADDR"]
pool_size = $POOL
EOF
    mux_section "${WRITE_DELAY:-}" >>"$RUN/$1.toml"
    start_gateway_run tg "${GW_CORES:-0}" "$TG" "$RUN/$1.toml"
    TG_PID=$GW_PID GW=$GW_ADDR
    wait_pool "$MUX_PID" "$POOL" && return 0
    echo "bench-mux.sh: the mux pool to $MUX_ADDR did not come up" >&2; cat "$RUN/tg.err" >&2; exit 1
}

start_old_gateway() { # → sets OLD_TG_PID, OLD_GW (route /muxold to the old mux app)
    config_head 12000 >"$RUN/old.toml"
    cat >>"$RUN/old.toml" <<EOF
[[routes]]
name = "muxold"
path = "/muxold"
upstream = "mux"
mode = "mux"
[[upstreams]]
name = "mux"
endpoints = ["ws://$OLD_MUX_ADDR"]
pool_size = $POOL
EOF
    mux_section "${OLD_WRITE_DELAY:-}" >>"$RUN/old.toml"
    start_gateway_run oldtg "${GW_CORES:-0}" "$RUN/old/tidegate" "$RUN/old.toml"
    OLD_TG_PID=$GW_PID OLD_GW=$GW_ADDR
    wait_pool "$OLD_MUX_PID" "$POOL" && return 0
    echo "bench-mux.sh: the old mux pool did not come up" >&2; cat "$RUN/oldtg.err" >&2; exit 1
}

rate_run() { # APP MODE RATE ROUND
    local app_pid=$PASS_PID gw=$GW gw_pid=$TG_PID
    [ "$2" = mux ] && app_pid=$MUX_PID
    [ "$2" = muxold ] && app_pid=$OLD_MUX_PID gw=$OLD_GW gw_pid=$OLD_TG_PID
    echo "bench-mux.sh: $1 $2 rate $3/s round $4" >&2
    taskset -c "${LT_CORES:-1}" "$LT" --workers "${LT_WORKERS:-1}" --quiet --json rate --url "ws://$gw/$2" -c "$CLIENTS" \
        --rate "$3" --size 128 --duration "$DURATION" --source-ip-count 4 \
        --pid "$gw_pid" --pid "$app_pid" >"$RUN/res/$1.$2.rate$3.$4.json"
    sleep 1
}

idle_run() { # APP MODE
    local app_pid=$PASS_PID
    [ "$2" = mux ] && app_pid=$MUX_PID
    start_gateway "$1"
    echo "bench-mux.sh: $1 $2 idle" >&2
    taskset -c "${LT_CORES:-1}" "$LT" --workers "${LT_WORKERS:-1}" --quiet --json idle --url "ws://$GW/$2" -c "$IDLE_CLIENTS" \
        --hold 3s --source-ip-count 4 --pid "$TG_PID" --pid "$app_pid" >"$RUN/res/$1.$2.idle.json"
    stop "$TG_PID"
    sleep 1
}

mkdir -p "$RUN/res" "$(dirname "$OUT")"
LOAD_BEFORE=$(loadavg)
for app in $APPS; do
    case $app in
        rust)
            app rust-pass "$TG" echo --listen 127.0.0.1:0 --workers "${APP_WORKERS:-1}"
            PASS_PID=$APP_PID PASS_ADDR=$APP_ADDR
            app rust-mux "$MUX_ECHO" --listen 127.0.0.1:0
            MUX_PID=$APP_PID MUX_ADDR=$APP_ADDR
            if [ -n "$OLD_TG" ]; then
                app rust-muxold "$RUN/old/echo" --listen 127.0.0.1:0
                OLD_MUX_PID=$APP_PID OLD_MUX_ADDR=$APP_ADDR
            fi ;;
        python)
            app py-pass "$PY" loadtest/apps/ws_echo.py --listen 127.0.0.1:0
            PASS_PID=$APP_PID PASS_ADDR=$APP_ADDR
            APP_PYTHONPATH=$PWD/sdk/python app py-mux "$PY" -m tidegate_mux.examples.echo --listen 127.0.0.1:0
            MUX_PID=$APP_PID MUX_ADDR=$APP_ADDR
            if [ -n "$OLD_TG" ]; then
                APP_PYTHONPATH=$OLD_PYSDK app py-muxold "$PY" -m tidegate_mux.examples.echo --listen 127.0.0.1:0
                OLD_MUX_PID=$APP_PID OLD_MUX_ADDR=$APP_ADDR
            fi ;;
        *) echo "bench-mux.sh: unknown app $app" >&2; exit 64 ;;
    esac
    echo "$app pass $(rss_kb "$PASS_PID") $(sockets "$PASS_PID")" >>"$RUN/res/baseline.txt"
    echo "$app mux $(rss_kb "$MUX_PID") $(sockets "$MUX_PID")" >>"$RUN/res/baseline.txt"
    if [ -n "$OLD_TG" ]; then
        echo "$app muxold $(rss_kb "$OLD_MUX_PID") $(sockets "$OLD_MUX_PID")" >>"$RUN/res/baseline.txt"
    fi
    start_gateway "$app"
    if [ -n "$OLD_TG" ]; then start_old_gateway; fi
    for rate in $RATES; do
        for r in $(seq "$ROUNDS"); do
            rate_run "$app" pass "$rate" "$r"
            if [ -n "$OLD_TG" ]; then rate_run "$app" muxold "$rate" "$r"; fi
            rate_run "$app" mux "$rate" "$r"
        done
    done
    stop "$TG_PID"
    if [ -n "$OLD_TG" ]; then stop "$OLD_TG_PID"; stop "$OLD_MUX_PID"; fi
    if [ "${SKIP_IDLE:-0}" != 1 ]; then
        idle_run "$app" pass
        idle_run "$app" mux
    fi
    stop "$PASS_PID"
    stop "$MUX_PID"
done
LOAD_AFTER=$(loadavg)

{
    echo "# tidegate mux vs passthrough — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-mux.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION CLIENTS=$CLIENTS RATES=\"$RATES\" IDLE_CLIENTS=$IDLE_CLIENTS${OLD_TG:+ OLD_TG=$OLD_TG OLD_ECHO=$OLD_ECHO OLD_PYSDK=$OLD_PYSDK}${WRITE_DELAY:+ WRITE_DELAY=$WRITE_DELAY}${OLD_WRITE_DELAY:+ OLD_WRITE_DELAY=$OLD_WRITE_DELAY})."
    echo "Machine: $(nproc) cores, $(uname -r); load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
    echo "Pinning: tidegate run --workers ${GW_WORKERS:-1} on cores ${GW_CORES:-0}; generator (${LT_WORKERS:-1} worker(s)) on cores ${LT_CORES:-1}; both applications on cores ${APP_CORES:-1} (\`tidegate echo --workers ${APP_WORKERS:-1}\`). Mux pool_size $POOL."
    echo "Versions: $("$TG" version); $("$PY" -c 'import sys, websockets; print("Python", sys.version.split()[0], "websockets", websockets.__version__)')."
    echo
    python3 loadtest/bench-mux-report.py "$RUN/res"
} >"$OUT"
if [ -n "${RAW:-}" ]; then mkdir -p "$RAW" && cp "$RUN"/res/* "$RAW"/; fi
echo "bench-mux.sh: wrote $OUT" >&2
