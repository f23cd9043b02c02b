#!/usr/bin/env bash
# A short run of the load-test harness through the gateway, so neither rots:
# echo upstream → tidegate proxy → tidegate-loadtest echo (2 s, 4 conns);
# then, if the Python SDK is installed in .venv, the mux path: the SDK's echo
# app → tidegate run (mode = "mux", pool_size 1) → tidegate-loadtest rate
# (1 s, 8 clients) watching both processes, as loadtest/bench-mux.sh does.
# Fails unless the harness prints valid JSON with messages completed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release
RUN=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$RUN"; }
trap cleanup EXIT
wait_addr() { # FILE → prints IP:PORT from "addr=IP:PORT"
    for _ in $(seq 100); do
        a=$(grep -o 'addr=[0-9.:]*' "$1" 2>/dev/null | head -1 | cut -d= -f2) && [ -n "$a" ] && { echo "$a"; return; }
        sleep 0.1
    done
    echo "smoke.sh: no address in $1" >&2; cat "$1" >&2; exit 1
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
APP_SOCKETS=$(find "/proc/$APP_PID/fd" -lname 'socket:*' | wc -l)
cat >"$RUN/mux.toml" <<EOF
[admin]
listen = ""
[[listeners]]
name = "smoke"
listen = "127.0.0.1:0"
[[routes]]
name = "mux"
upstream = "app"
mode = "mux"
[[upstreams]]
name = "app"
endpoints = ["ws://$APP"]
pool_size = 1
EOF
"$BIN/tidegate" run --config "$RUN/mux.toml" --workers 1 >"$RUN/gw2" 2>&1 &
GW_PID=$!
PIDS+=("$GW_PID")
GW=$(wait_addr "$RUN/gw2")
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
