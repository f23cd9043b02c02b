#!/usr/bin/env bash
# Starts, stops and reports the comparison peers of `tidegate-loadtest
# compare`: nginx and HAProxy as WebSocket passthrough proxies in front of
# one upstream, and as HTTP reverse proxies in front of an HTTP upstream
# (second listener each), on loopback, pinned to one core.
#
#   loadtest/peers/peers.sh start|stop|status [options]
#
# Options (or the environment variable in brackets):
#   --nginx-listen ADDR    [NGINX_LISTEN]    default 127.0.0.1:18081
#   --haproxy-listen ADDR  [HAPROXY_LISTEN]  default 127.0.0.1:18082
#   --upstream ADDR        [UPSTREAM]        default 127.0.0.1:18000
#   --nginx-http-listen ADDR   [NGINX_HTTP_LISTEN]   default 127.0.0.1:18083
#   --haproxy-http-listen ADDR [HAPROXY_HTTP_LISTEN] default 127.0.0.1:18084
#   --http-upstream ADDR   [HTTP_UPSTREAM]   default 127.0.0.1:18001
#   --core N               [PEER_CORE]       default 0 (taskset -c N; a list
#                                            such as 0,1 unpins)
#   --workers N            [PEER_WORKERS]    default 1: nginx worker_processes
#                                            (a master above them when > 1),
#                                            HAProxy nbthread
#   --run-dir DIR          [PEERS_RUN_DIR]   default ${TMPDIR:-/tmp}/tidegate-peers
#   --only nginx|haproxy   start/stop just one of them
#   --echo-server          also start the bundled echo server on --upstream,
#                          pinned to ECHO_CORE (default 1), from LOADTEST_BIN
#                          (default target/release/tidegate-loadtest)
#   --http-server          also start the bundled http-server on
#                          --http-upstream, pinned to ECHO_CORE
#
# Missing packages are installed from Debian (nginx-light or nginx,
# haproxy). A policy-rc.d is put in place for the install only, so the
# distribution's service is not started; nothing here uses systemd.
# `stop` kills exactly the pids that `start` recorded, nothing else.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NGINX_LISTEN=${NGINX_LISTEN:-127.0.0.1:18081}
HAPROXY_LISTEN=${HAPROXY_LISTEN:-127.0.0.1:18082}
UPSTREAM=${UPSTREAM:-127.0.0.1:18000}
NGINX_HTTP_LISTEN=${NGINX_HTTP_LISTEN:-127.0.0.1:18083}
HAPROXY_HTTP_LISTEN=${HAPROXY_HTTP_LISTEN:-127.0.0.1:18084}
HTTP_UPSTREAM=${HTTP_UPSTREAM:-127.0.0.1:18001}
PEER_CORE=${PEER_CORE:-0}
PEER_WORKERS=${PEER_WORKERS:-1}
ECHO_CORE=${ECHO_CORE:-1}
RUN_DIR=${PEERS_RUN_DIR:-${TMPDIR:-/tmp}/tidegate-peers}
LOADTEST_BIN=${LOADTEST_BIN:-target/release/tidegate-loadtest}
ONLY=""
WITH_ECHO=0
WITH_HTTP=0

die() { echo "peers.sh: $*" >&2; exit 1; }

usage() { sed -n '2,31p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

[ $# -ge 1 ] || usage 64
CMD=$1; shift
while [ $# -gt 0 ]; do
    case $1 in
        --nginx-listen) NGINX_LISTEN=$2; shift 2 ;;
        --haproxy-listen) HAPROXY_LISTEN=$2; shift 2 ;;
        --upstream) UPSTREAM=$2; shift 2 ;;
        --nginx-http-listen) NGINX_HTTP_LISTEN=$2; shift 2 ;;
        --haproxy-http-listen) HAPROXY_HTTP_LISTEN=$2; shift 2 ;;
        --http-upstream) HTTP_UPSTREAM=$2; shift 2 ;;
        --http-server) WITH_HTTP=1; shift ;;
        --core) PEER_CORE=$2; shift 2 ;;
        --workers) PEER_WORKERS=$2; shift 2 ;;
        --run-dir) RUN_DIR=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --echo-server) WITH_ECHO=1; shift ;;
        -h|--help) usage 0 ;;
        *) die "unknown option $1 (try --help)" ;;
    esac
done

# Only loopback addresses: these peers exist to be loaded by the harness.
for a in "$NGINX_LISTEN" "$HAPROXY_LISTEN" "$UPSTREAM" "$NGINX_HTTP_LISTEN" "$HAPROXY_HTTP_LISTEN" "$HTTP_UPSTREAM"; do
    case $a in 127.*:[0-9]*|localhost:[0-9]*) ;; *) die "$a is not a loopback HOST:PORT" ;; esac
done

wanted() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }

find_bin() { command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true; }

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" = 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    # Keep the distribution's init scripts from starting the service on
    # install; put our policy in place only if none exists, and remove it.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && ours=1
    fi
    local rc=0
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
    [ "$ours" = 1 ] && rm -f "$policy"
    return $rc
}

ensure_installed() {
    if wanted nginx && [ -z "$(find_bin nginx)" ]; then
        echo "installing nginx..." >&2
        apt_install nginx-light || apt_install nginx || die "could not install nginx"
    fi
    if wanted haproxy && [ -z "$(find_bin haproxy)" ]; then
        echo "installing haproxy..." >&2
        apt_install haproxy || die "could not install haproxy"
    fi
}

render() { # template listen http-listen output
    local master=off
    [ "$PEER_WORKERS" -gt 1 ] && master=on
    sed -e "s|@WORKERS@|$PEER_WORKERS|g" -e "s|@MASTER@|$master|g" -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@LISTEN@|$2|g" -e "s|@UPSTREAM@|$UPSTREAM|g" \
        -e "s|@HTTP_LISTEN@|$3|g" -e "s|@HTTP_UPSTREAM@|$HTTP_UPSTREAM|g" "$1" > "$4"
}

port_busy() { # HOST:PORT -> 0 if something accepts connections there
    local host=${1%:*} port=${1##*:}
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

wait_listening() { # name pid addr
    for _ in $(seq 1 50); do
        port_busy "$3" && return 0
        kill -0 "$2" 2>/dev/null || die "$1 exited at start; see $RUN_DIR/$1*.log"
        sleep 0.1
    done
    die "$1 (pid $2) is not listening on $3 after 5 s; see $RUN_DIR/$1*.log"
}

alive() { # name pidfile -> prints pid if that process still runs and is ours
    local f="$RUN_DIR/$2" pid comm
    [ -f "$f" ] || return 1
    pid=$(cat "$f")
    case $1 in
        echo-server | http-server)
            # The harness's servers, whatever its binary is called
            # (LOADTEST_BIN may be a copy under another name).
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q " $1 " || return 1
            echo "$pid"
            ;;
        *)
            comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
            case $comm in "$1"*) echo "$pid" ;; *) return 1 ;; esac
            ;;
    esac
}

launch() { # name addr command...
    local name=$1 addr=$2; shift 2
    if pid=$(alive "$name" "$name.started"); then
        echo "$name already running: pid $pid"
        return
    fi
    port_busy "$addr" && die "$addr is already in use; pick another with --$name-listen"
    taskset -c "$PEER_CORE" "$@" > "$RUN_DIR/$name-stdout.log" 2>&1 &
    local pid=$!
    echo "$pid" > "$RUN_DIR/$name.started"
    wait_listening "$name" "$pid" "$addr"
    echo "$name pid=$pid addr=$addr core=$PEER_CORE upstream=$UPSTREAM"
}

start() {
    mkdir -p "$RUN_DIR"
    ensure_installed
    if [ "$WITH_ECHO" = 1 ]; then
        [ -x "$LOADTEST_BIN" ] || die "no echo server binary at $LOADTEST_BIN (cargo build --release -p tidegate-loadtest)"
        if pid=$(alive echo-server echo.started); then
            echo "echo-server already running: pid $pid"
        else
            port_busy "$UPSTREAM" && die "$UPSTREAM is already in use"
            taskset -c "$ECHO_CORE" "$LOADTEST_BIN" --workers 1 echo-server --listen "$UPSTREAM" \
                > "$RUN_DIR/echo-stdout.log" 2>&1 &
            echo $! > "$RUN_DIR/echo.started"
            wait_listening echo "$!" "$UPSTREAM"
            echo "echo-server pid=$(cat "$RUN_DIR/echo.started") addr=$UPSTREAM core=$ECHO_CORE"
        fi
    fi
    if [ "$WITH_HTTP" = 1 ]; then
        [ -x "$LOADTEST_BIN" ] || die "no http-server binary at $LOADTEST_BIN (cargo build --release -p tidegate-loadtest)"
        if pid=$(alive http-server http.started); then
            echo "http-server already running: pid $pid"
        else
            port_busy "$HTTP_UPSTREAM" && die "$HTTP_UPSTREAM is already in use"
            taskset -c "$ECHO_CORE" "$LOADTEST_BIN" --workers 1 http-server --listen "$HTTP_UPSTREAM" \
                > "$RUN_DIR/http-stdout.log" 2>&1 &
            echo $! > "$RUN_DIR/http.started"
            wait_listening http "$!" "$HTTP_UPSTREAM"
            echo "http-server pid=$(cat "$RUN_DIR/http.started") addr=$HTTP_UPSTREAM core=$ECHO_CORE"
        fi
    fi
    if wanted nginx; then
        render "$HERE/nginx.conf" "$NGINX_LISTEN" "$NGINX_HTTP_LISTEN" "$RUN_DIR/nginx.conf"
        mkdir -p "$RUN_DIR"/{client_body,proxy,fastcgi,uwsgi,scgi}
        local nginx; nginx=$(find_bin nginx)
        "$nginx" -t -q -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf" -e "$RUN_DIR/nginx-error.log" \
            || die "nginx rejected $RUN_DIR/nginx.conf"
        launch nginx "$NGINX_LISTEN" "$nginx" -p "$RUN_DIR" -c "$RUN_DIR/nginx.conf" -e "$RUN_DIR/nginx-error.log"
    fi
    if wanted haproxy; then
        render "$HERE/haproxy.cfg" "$HAPROXY_LISTEN" "$HAPROXY_HTTP_LISTEN" "$RUN_DIR/haproxy.cfg"
        local haproxy; haproxy=$(find_bin haproxy)
        "$haproxy" -c -q -f "$RUN_DIR/haproxy.cfg" || die "haproxy rejected $RUN_DIR/haproxy.cfg"
        launch haproxy "$HAPROXY_LISTEN" "$haproxy" -db -f "$RUN_DIR/haproxy.cfg"
    fi
}

stop_one() { # name pidfile
    local pid
    if pid=$(alive "$1" "$2"); then
        kill "$pid"
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        echo "stopped $1 pid=$pid"
    fi
    rm -f "$RUN_DIR/$2"
}

stop() {
    wanted nginx && stop_one nginx nginx.started
    wanted haproxy && stop_one haproxy haproxy.started
    [ -z "$ONLY" ] && stop_one echo-server echo.started
    [ -z "$ONLY" ] && stop_one http-server http.started
    return 0
}

status() {
    local any=0 pid
    for n in nginx haproxy; do
        if pid=$(alive "$n" "$n.started"); then echo "$n running pid=$pid"; any=1; else echo "$n stopped"; fi
    done
    if pid=$(alive echo-server echo.started); then echo "echo-server running pid=$pid"; any=1; fi
    if pid=$(alive http-server http.started); then echo "http-server running pid=$pid"; any=1; fi
    [ "$any" = 1 ]
}

case $CMD in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) usage 64 ;;
esac
