# Sourced by the benchmark scripts (loadtest/bench*.sh, benches/*.sh): the
# set-up they share, so each script reads as its scenario only.
#
#   cd "$(dirname "$0")/.."        # the repository root, before sourcing
#   . loadtest/lib.sh
#
# On sourcing: CARGO_TARGET_DIR is exported (default ./target); RUN is a
# fresh scratch directory; PIDS lists the processes to kill on exit (add
# each one started in the background). On exit every process in PIDS is
# killed, then `bench_on_exit` runs if the script defines one, then RUN is
# removed. Messages name the script that sourced this file.
#
# Processes are pinned with taskset as each script says; nothing here
# binds a port of its own or reaches beyond loopback.

BENCH=$(basename "$0")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
RUN=$(mktemp -d)
PIDS=()
# shellcheck disable=SC2317  # called by the trap
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if declare -F bench_on_exit >/dev/null; then bench_on_exit; fi
    rm -rf "$RUN"
}
trap cleanup EXIT

# build ARGS...: `cargo build --release ARGS`, its output on stderr so a
# report written to stdout stays clean. NO_BUILD=1 skips it: the binaries
# are given (TG, LOADTEST_BIN), and a run under /tmp/freeze-bench.sh must
# not start a cargo that the freeze would stop.
build() { [ "${NO_BUILD:-0}" = 1 ] || cargo build --release "$@" >&2; }

# keep_copies FILE...: copy binaries to $RUN/bin — a shared
# CARGO_TARGET_DIR may be rebuilt from another checkout while this runs.
keep_copies() {
    mkdir -p "$RUN/bin"
    cp "$@" "$RUN/bin/"
}

# loadavg: the 1, 5 and 15 minute load averages, for the report header.
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# wait_line FILE PATTERN: until PATTERN is in FILE (10 s), else show the
# file and exit.
wait_line() {
    for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    echo "$BENCH: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

# wait_addr FILE [PREFIX]: print IP:PORT from the first "addr=IP:PORT" in
# FILE (a process listening on port 0 says where it is) on a line starting
# with PREFIX, waiting up to 15 s.
wait_addr() {
    local a
    for _ in $(seq 150); do
        a=$(grep "^${2:-}" "$1" 2>/dev/null | grep -o 'addr=[0-9.:]*' | head -1 | cut -d= -f2) && [ -n "$a" ] && { echo "$a"; return; }
        sleep 0.1
    done
    echo "$BENCH: no address in $1" >&2; cat "$1" >&2; exit 1
}

# wait_port PORT: until 127.0.0.1:PORT accepts a connection (10 s).
wait_port() {
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    echo "$BENCH: port $1 not up" >&2; exit 1
}

# sockets PID / rss_kb PID: the process's open sockets / resident memory.
sockets() { find "/proc/$1/fd" -lname 'socket:*' 2>/dev/null | wc -l; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# stop PID: stop one process this script started, and reap it.
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# wait_pool APP_PID POOL: until the application holds its listener and
# POOL mux connections (10 s); false if it never does.
wait_pool() {
    for _ in $(seq 100); do [ "$(sockets "$1")" -gt "$2" ] && return 0; sleep 0.1; done
    return 1
}

# start_proxy NAME CORES BIN ARGS...: `BIN proxy ARGS` pinned to CORES,
# output in $RUN/NAME.out and .err; returns once it listens. Sets PROXY_PID.
start_proxy() {
    local name=$1 cores=$2 bin=$3
    shift 3
    taskset -c "$cores" "$bin" proxy "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    PROXY_PID=$!
    PIDS+=("$PROXY_PID")
    wait_line "$RUN/$name.out" "tidegate listening"
}

# config_head [MAX_CONNECTIONS]: the start of a benchmark gateway's TOML —
# no admin listener, `limits.max_connections` when given, one listener
# "bench" on a port the kernel picks (the gateway prints it).
config_head() {
    printf '[admin]\nlisten = ""\n'
    if [ -n "${1:-}" ]; then printf '[limits]\nmax_connections = %s\n' "$1"; fi
    printf '[[listeners]]\nname = "bench"\nlisten = "127.0.0.1:0"\n'
}

# start_gateway_run NAME CORES BIN CONFIG: `BIN run --config CONFIG
# --workers ${GW_WORKERS:-1}` pinned to CORES, output in $RUN/NAME.out and
# .err. Sets GW_PID and GW_ADDR (its listener, from the startup line).
# mux_section DELAY: a [mux] table setting `write_delay` when DELAY is set
# (appended after config_head's tables).
mux_section() {
    if [ -n "${1:-}" ]; then printf '[mux]\nwrite_delay = "%s"\n' "$1"; fi
}
start_gateway_run() {
    taskset -c "$2" "$3" run --config "$4" --workers "${GW_WORKERS:-1}" >"$RUN/$1.out" 2>"$RUN/$1.err" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_ADDR=$(wait_addr "$RUN/$1.out")
}

# start_app NAME CMD...: an application (or upstream) that listens on port
# 0, pinned to core 1 (APP_CORES overrides it), output in $RUN/NAME.out
# and .err. Sets APP_PID and APP_ADDR.
start_app() {
    local name=$1
    shift
    taskset -c "${APP_CORES:-1}" "$@" >"$RUN/$name.out" 2>"$RUN/$name.err" &
    APP_PID=$!
    PIDS+=("$APP_PID")
    APP_ADDR=$(wait_addr "$RUN/$name.out")
}

# section TITLE CMD...: CMD's output as a "### TITLE" section of the
# report, in a code block.
section() {
    echo "### $1"
    echo
    echo '```'
    shift
    "$@"
    echo '```'
    echo
}
