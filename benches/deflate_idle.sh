#!/usr/bin/env bash
# RSS per idle client of edge permessage-deflate (issue #16) against the
# plain byte relay, in one run: the loadtest `idle` scenario holds C
# connections (offering permessage-deflate on the edge routes) and reads
# the gateway's VmRSS before and after the ramp. A fresh gateway per
# measurement (memory an allocator kept from a previous ramp would hide
# what a new one costs); settings alternate round by round.
#
#   bash benches/deflate_idle.sh [OUT.md]
#
# Environment: ROUNDS (default 3), CONNS (default 2000), TG (the tidegate
# binary, default the release build). Pinning: gateway (one worker) on
# core 0, generator and echo upstream on core 1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-/dev/stdout}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-2000}
. loadtest/lib.sh
TG=${TG:-$CARGO_TARGET_DIR/release/tidegate}
LT=$CARGO_TARGET_DIR/release/tidegate-loadtest
[ -x "$LT" ] || build -p tidegate-loadtest

UP=127.0.0.1:18110

# NAME -> route lines (besides name/upstream); "off" runs without an offer.
declare -A ROUTE=(
    [off]='permessage_deflate = "off"'
    [edge-no-takeover]=$'permessage_deflate = "edge"\n[routes.deflate]\nserver_no_context_takeover = true\nclient_no_context_takeover = true'
    [edge-takeover-15]='permessage_deflate = "edge"'
)
ORDER=(off edge-no-takeover edge-takeover-15)

taskset -c 1 "$LT" --workers 1 echo-server --listen "$UP" >"$RUN/up.out" 2>&1 &
PIDS+=($!)
sleep 0.5

measure() { # NAME -> prints bytes per connection
    local name=$1 cfg=$RUN/$1.toml
    cat >"$cfg" <<EOF
[limits]
max_handshakes_per_ip = 1000000
[[listeners]]
name = "main"
listen = "127.0.0.1:0"
[[upstreams]]
name = "echo"
endpoints = ["ws://$UP"]
[[routes]]
name = "r"
upstream = "echo"
${ROUTE[$name]}
EOF
    taskset -c 0 "$TG" run --config "$cfg" --workers 1 >"$RUN/gw.out" 2>"$RUN/gw.err" &
    local pid=$!
    PIDS+=($pid)
    wait_line "$RUN/gw.out" "tidegate listening"
    local addr
    addr=$(grep "tidegate listening" "$RUN/gw.out" | grep -o "addr=[0-9.:]*" | head -1 | cut -d= -f2)
    local offer=()
    [ "$name" = off ] || offer=(--offer-deflate)
    taskset -c 1 "$LT" idle --url "ws://$addr/" --connections "$CONNS" --hold 1s \
        --source-ip-count 4 --pid "$pid" "${offer[@]}" >"$RUN/$name.out" 2>&1
    kill "$pid"; wait "$pid" 2>/dev/null || true
    grep -o '"bytes_per_connection":[0-9.]*' "$RUN/$name.out" | head -1 | cut -d: -f2
    cat "$RUN/$name.out" >>"$RUN/all.out"
}

{
    echo "# edge permessage-deflate: RSS per idle client — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash benches/deflate_idle.sh\` (ROUNDS=$ROUNDS CONNS=$CONNS); $("$TG" version)."
    echo "Machine: $(nproc) cores; load average before: $(loadavg)."
    echo "Pinning: gateway (one worker) on core 0; loadtest idle and echo upstream on core 1."
    echo
    echo "| round | setting | gateway RSS per idle connection (bytes) |"
    echo "|---|---|---|"
    for r in $(seq "$ROUNDS"); do
        for name in "${ORDER[@]}"; do
            echo "| $r | $name | $(measure "$name") |"
        done
    done
    echo
    echo "Load average after: $(loadavg)."
} >"$OUT"
