#!/usr/bin/env bash
# A short run of the load-test harness through the gateway, so neither rots:
# echo upstream → tidegate proxy → tidegate-loadtest echo (2 s, 4 conns);
# then, if the Python SDK is installed in .venv, the mux path: the SDK's echo
# app → tidegate run (mode = "mux", pool_size 1) → tidegate-loadtest rate
# (1 s, 8 clients) watching both processes, as loadtest/bench-mux.sh does;
# then the HTTP scenarios (issue #15): http-server → tidegate proxy →
# tidegate-loadtest http-get (1 s, 8 connections, small and 64 KiB) and
# sse-idle (50 streams), each first straight at the upstream, then through
# the gateway.
# Then fan-out (issue #17): the Rust SDK's fanout example publishing to
# 100 subscribers through a mux route for 2 s (loadtest/bench-fanout.sh is
# the full run).
# Fails unless the harness prints valid JSON with messages completed.
set -euo pipefail
cd "$(dirname "$0")/.."
. loadtest/lib.sh
BIN=$CARGO_TARGET_DIR/release

# mux_gateway NAME APP_ADDR: `tidegate run` with one mux route to the
# application (pool_size 1). Sets GW_PID and GW_ADDR.
mux_gateway() {
    cat >"$RUN/$1.toml" <<EOF
[admin]
listen = ""
[[listeners]]
name = "smoke"
listen = "127.0.0.1:0"
[[routes]]
name = "$1"
upstream = "app"
mode = "mux"
[[upstreams]]
name = "app"
endpoints = ["ws://$2"]
pool_size = 1
EOF
    "$BIN/tidegate" run --config "$RUN/$1.toml" --workers 1 >"$RUN/gw-$1" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_ADDR=$(wait_addr "$RUN/gw-$1")
}

env "$BIN/tidegate" echo --listen 127.0.0.1:0 --workers 1 >"$RUN/echo" 2>&1 &
PIDS+=($!)
UP=$(wait_addr "$RUN/echo")
env "$BIN/tidegate" proxy --listen 127.0.0.1:0 --upstream "ws://$UP" --workers 1 >"$RUN/gw" 2>&1 &
PIDS+=($!)
GW=$(wait_addr "$RUN/gw")
"$BIN/tidegate-loadtest" echo --quiet --json --url "ws://$GW/" --connections 4 --duration 2s >"$RUN/out.json"
python3 - "$RUN/out.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
done = r.get("completed") or r.get("result", {}).get("completed")
assert done and done > 0, f"no messages completed: {r}"
print(f"smoke: {done} round trips through tidegate in 2 s")
PY

# HTTP: the bundled upstream, and the one-liner in front of it.
"$BIN/tidegate-loadtest" --workers 1 http-server --listen 127.0.0.1:0 >"$RUN/http" 2>&1 &
PIDS+=($!)
HTTP_UP=$(wait_addr "$RUN/http")
env "$BIN/tidegate" proxy --listen 127.0.0.1:0 --upstream "ws://$HTTP_UP" --workers 1 >"$RUN/gw-http" 2>&1 &
PIDS+=($!)
GW_HTTP=$(wait_addr "$RUN/gw-http")
for via in "direct $HTTP_UP" "tidegate $GW_HTTP"; do
    set -- $via
    for path in / /bytes/65536; do
        "$BIN/tidegate-loadtest" http-get --quiet --json --url "http://$2$path" -c 8 --warmup 0.2s --duration 1s >"$RUN/http.json"
        python3 - "$RUN/http.json" "$1" "$path" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["completed"] > 0 and not r["errors"], f"http-get {sys.argv[2]} {sys.argv[3]} failed: {r['errors']} {r['error_examples']}"
print(f"smoke: {r['completed']} HTTP GET {sys.argv[3]} {sys.argv[2]} in 1 s")
PY
    done
    "$BIN/tidegate-loadtest" sse-idle --quiet --json --url "http://$2/sse" -c 50 --hold 0.5s >"$RUN/sse.json"
    python3 - "$RUN/sse.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
x = r["extra"]
assert x["opened"] == 50 and x["open_at_end_of_hold"] == 50 and not r["errors"], f"sse-idle {sys.argv[2]} failed: {r['errors']} {r['error_examples']} {x}"
print(f"smoke: 50 SSE streams held {sys.argv[2]}")
PY
done

# Fan-out: publisher → tidegate run (mux route) → 100 subscribers.
"$BIN/examples/fanout" --listen 127.0.0.1:0 --mode publish --rate 20 --size 128 >"$RUN/fanout-app" 2>&1 &
FAN_PID=$!
PIDS+=("$FAN_PID")
FAN=$(wait_addr "$RUN/fanout-app")
mux_gateway fanout "$FAN"
FAN_GW_PID=$GW_PID FAN_GW=$GW_ADDR
"$BIN/tidegate-loadtest" fanout --quiet --json --url "ws://$FAN_GW/" -c 100 --warmup 0.5s --duration 2s \
    --pid "$FAN_GW_PID" --pid "$FAN_PID" >"$RUN/fanout.json"
python3 - "$RUN/fanout.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
x = r["extra"]
assert r["completed"] > 0 and x["publishes"] > 0 and not r["errors"], f"fanout run failed: {r}"
print(f"smoke: fanout {x['publishes']} publishes x 100 subscribers, {r['completed']} deliveries in 2 s, "
      f"{x['missing_deliveries']} missing, last delivery p99 {x['last_delivery']['p99_us']:.0f} µs")
PY

PY=.venv/bin/python
if ! "$PY" -c 'import tidegate_mux' 2>/dev/null; then
    echo "smoke: mux run skipped (no tidegate_mux in .venv; scripts/test.sh installs it)"
    exit 0
fi
"$PY" -m tidegate_mux.examples.echo --listen 127.0.0.1:0 >"$RUN/app" 2>&1 &
APP_PID=$!
PIDS+=("$APP_PID")
APP=$(wait_addr "$RUN/app")
# Sockets the app holds before the gateway connects: its listener and the
# event loop's own socketpair.
APP_SOCKETS=$(sockets "$APP_PID")
mux_gateway mux "$APP"
GW=$GW_ADDR
"$BIN/tidegate-loadtest" rate --quiet --json --url "ws://$GW/" -c 8 --rate 50 --warmup 0.5s --duration 1s \
    --pid "$GW_PID" --pid "$APP_PID" >"$RUN/mux.json"
python3 - "$RUN/mux.json" "$APP_SOCKETS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["completed"] > 0 and not r["errors"], f"mux run failed: {r}"
app = r["extra"]["processes"][1]
# 8 client sessions over one mux connection: one socket more than before
# the gateway connected, not one per client.
assert app["socket_fds"] == int(sys.argv[2]) + 1, f"app sockets: {app}, {sys.argv[2]} at start"
print(f"smoke: {r['completed']} round trips through tidegate mux in 1 s, app sockets {app['socket_fds']}")
PY
