#!/usr/bin/env bash
# A short run of the load-test harness through the gateway, so neither rots:
# echo upstream → tidegate proxy → tidegate-loadtest echo (2 s, 4 conns).
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
