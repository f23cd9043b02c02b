#!/usr/bin/env bash
# wss:// connection storm, tidegate vs nginx (issue #4, target 5): CPU time of
# the proxy process per accepted connection, TLS 1.3 with an ECDSA P-256
# certificate, without and with session resumption.
#
#   bash loadtest/bench-tls.sh [OUT.md]     (default: loadtest/results/tls.md)
#
# OLD_TG=<another tidegate binary> adds it as a third target
# (`tidegate-old`), for a before/after of the handshake path in one run.
# NO_BUILD=1 with TG / LOADTEST_BIN runs given binaries.
#
# Proxies pinned to core 0; generator and echo upstream on core 1; loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-loadtest/results/tls.md}
TOTAL=${TOTAL:-3000}
ROUNDS=${ROUNDS:-3}
. loadtest/lib.sh
build --bin tidegate
build -p tidegate-loadtest
TG=${TG:-$CARGO_TARGET_DIR/release/tidegate}
LT=${LOADTEST_BIN:-$CARGO_TARGET_DIR/release/tidegate-loadtest}
command -v nginx >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$RUN/key.pem" -out "$RUN/cert.pem" 2>/dev/null

taskset -c 1 "$LT" --workers 1 echo-server --listen 127.0.0.1:18100 >"$RUN/echo.out" 2>&1 &
PIDS+=($!)
wait_port 18100
start_proxy tg 0 "$TG" --listen 127.0.0.1:18443 --upstream ws://127.0.0.1:18100 \
    --tls-cert "$RUN/cert.pem" --tls-key "$RUN/key.pem" --workers 1
TG_PID=$PROXY_PID
if [ -n "${OLD_TG:-}" ]; then
    start_proxy tgold 0 "$OLD_TG" --listen 127.0.0.1:18445 --upstream ws://127.0.0.1:18100 \
        --tls-cert "$RUN/cert.pem" --tls-key "$RUN/key.pem" --workers 1
    OLD_PID=$PROXY_PID
fi
mkdir -p "$RUN/nginx"
cat >"$RUN/nginx.conf" <<CONF
master_process off;
worker_processes 1;
daemon off;
pid $RUN/nginx.pid;
error_log $RUN/nginx-error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 20000; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $RUN/nginx; proxy_temp_path $RUN/nginx;
    fastcgi_temp_path $RUN/nginx; uwsgi_temp_path $RUN/nginx; scgi_temp_path $RUN/nginx;
    server {
        listen 127.0.0.1:18444 ssl backlog=4096;
        ssl_certificate $RUN/cert.pem;
        ssl_certificate_key $RUN/key.pem;
        ssl_protocols TLSv1.3;
        ssl_session_cache shared:tls:10m;
        location / {
            proxy_pass http://127.0.0.1:18100;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection upgrade;
            proxy_read_timeout 3600s;
            proxy_buffering off;
        }
    }
}
CONF
taskset -c 0 nginx -c "$RUN/nginx.conf" >"$RUN/nginx.out" 2>&1 &
PIDS+=($!)
NGINX_PID=$!
wait_port 18444
TARGETS=(--target "nginx=wss://127.0.0.1:18444/@$NGINX_PID" --target "tidegate=wss://localhost:18443/@$TG_PID")
if [ -n "${OLD_TG:-}" ]; then TARGETS+=(--target "tidegate-old=wss://localhost:18445/@$OLD_PID"); fi

{
    echo "# wss:// connection storm — tidegate vs nginx — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`bash loadtest/bench-tls.sh\` (TOTAL=$TOTAL ROUNDS=$ROUNDS). TLS 1.3, ECDSA P-256 self-signed certificate."
    echo "Load average before: $(loadavg). Proxies on core 0 (1 worker), generator + echo on core 1."
    echo "$("$TG" version); $(nginx -v 2>&1)."
    if [ -n "${OLD_TG:-}" ]; then echo "tidegate-old: $OLD_TG ($("$OLD_TG" version))."; fi
    for res in off on; do
        echo
        echo "### resumption $res"
        echo
        echo '```'
        taskset -c 1 "$LT" --workers 1 compare --quiet --rounds "$ROUNDS" --insecure \
            "${TARGETS[@]}" connect --total "$TOTAL" --concurrency 64 --resumption "$res"
        echo '```'
        # How many handshakes of one more run per target actually resumed
        # (the table above cannot show it).
        for t in "nginx wss://127.0.0.1:18444/" "tidegate wss://localhost:18443/"; do
            set -- $t
            resumed=$(taskset -c 1 "$LT" --workers 1 connect --quiet --json --insecure --url "$2" \
                --total "$TOTAL" --concurrency 64 --resumption "$res" |
                python3 -c 'import json,sys; print(json.load(sys.stdin)["extra"].get("tls_resumed", "?"))')
            echo "$1: $resumed of $TOTAL handshakes resumed (one extra run, resumption $res)"
            echo
        done
    done
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "bench-tls.sh: wrote $OUT" >&2
