#!/usr/bin/env bash
# Fan-out across instances over NATS (issue #18) against one instance with
# the same subscribers; the figures of the "Fan-out across instances
# (NATS)" section of docs/performance.md:
#
#   TG=/path/to/tidegate bash loadtest/bench-nats.sh [OUT.md]
#                                  (default OUT: loadtest/results/nats.md)
#
# Three setups share the machine, each idle while another is measured:
#   nats    gateways A, B, C (`tidegate run --workers 1` each, core 0) with
#           [fanout.backplane] on one `nats-server` (core 1). A's route
#           /fanout is mux to the SDK `fanout` example in publish mode (the
#           publisher, core 1): one PUBLISH per broadcast into A, which
#           delivers its own subscribers and forwards to NATS once. B's and
#           C's /fanout is mux to a second copy of the example that only
#           subscribes its sessions (--min-subscribers never reached, so it
#           never broadcasts): their subscribers get every message through
#           NATS.
#   single  gateway S (`--workers 1`, core 0), no backplane, /fanout mux to
#           a third copy of the example in publish mode.
# Per round, in alternation: three `tidegate-loadtest fanout` generators at
# once (one per gateway URL, the scenario takes one; core 1, one worker
# each), SUBSCRIBERS subscribers each, against A, B, C; then the same three
# generators against S (3 × SUBSCRIBERS subscribers on one instance). The
# publishers broadcast RATE/s × SIZE B while their own gateway's
# subscribers are all connected. The payload's stamp is the publisher's
# send time, so B's and C's publish-to-delivery includes the NATS hop and
# A's does not. Each generator watches its gateway (--pid, CPU charged per
# delivery) and, for A and S, the publisher and nats-server. B's and C's
# tidegate_fanout_backplane_latency_seconds (accepted on A → delivered on
# B/C) is scraped before and after each nats phase. Loopback only.
#
# Environment: TG (gateway binary; default: the workspace's release build),
# ROUNDS (2), DURATION (10s), WARMUP (2s), SUBSCRIBERS (1000 per
# generator), RATE (20), SIZE (128), NATS (nats-server binary), BINS (a
# directory holding tidegate-loadtest and the example `fanout`, built
# beforehand), RAW=DIR (keep every run's JSON there), SLICE_US (the
# gateways' runtime.scheduler_slice_us; default 0, the kernel's).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:-loadtest/results/nats.md}
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
RATE=${RATE:-20}
SIZE=${SIZE:-128}
NATS=${NATS:-$(command -v nats-server || echo /usr/sbin/nats-server)}
POOL=2
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
if [ -z "${TG:-}" ]; then
    cargo build --release --bin tidegate >&2
    TG=$CARGO_TARGET_DIR/release/tidegate
fi
# BINS=DIR: tidegate-loadtest and the `fanout` example already built there
# (no cargo run while the benchmark lock is held).
if [ -z "${BINS:-}" ]; then
    cargo build --release -p tidegate-loadtest >&2
    cargo build --release -p tidegate-mux --example fanout >&2
    BINS=$CARGO_TARGET_DIR/release
    FANOUT_BIN=$BINS/examples/fanout
else
    FANOUT_BIN=$BINS/fanout
fi
ulimit -n "$(ulimit -Hn)"

. loadtest/lib.sh
mkdir "$RUN/res"
keep_copies "$BINS/tidegate-loadtest" "$FANOUT_BIN"
cp "$TG" "$RUN/bin/tidegate"
GWBIN=$RUN/bin/tidegate
LT=$RUN/bin/tidegate-loadtest

# nats-server on a free loopback port, core 1.
NATS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
taskset -c 1 "$NATS" -a 127.0.0.1 -p "$NATS_PORT" >"$RUN/nats.out" 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && break; sleep 0.1; done

publisher() { # NAME MIN_SUBSCRIBERS → the `fanout` example in publish mode (core 1)
    start_app "$1" "$RUN/bin/fanout" --listen 127.0.0.1:0 --mode publish --rate "$RATE" --size "$SIZE" \
        --min-subscribers "$2"
}
publisher pub "$SUBSCRIBERS"
PUB_PID=$APP_PID PUB_ADDR=$APP_ADDR
publisher sub 1000000000
SUB_PID=$APP_PID SUB_ADDR=$APP_ADDR
publisher single $((3 * SUBSCRIBERS))
SGL_PID=$APP_PID SGL_ADDR=$APP_ADDR

start_gw() { # NAME APP_ADDR BACKPLANE(0|1) → sets GW_PID, GW_ADDR, GW_ADMIN
    local name=$1 app=$2 bp=$3
    {
        echo "[admin]"
        echo "listen = \"127.0.0.1:0\""
        echo "[limits]"
        echo "max_connections = 12000"
        if [ "${SLICE_US:-0}" != 0 ]; then
            echo "[runtime]"
            echo "scheduler_slice_us = $SLICE_US"
        fi
        echo "[[listeners]]"
        echo "name = \"bench\""
        echo "listen = \"127.0.0.1:0\""
        echo "[[routes]]"
        echo "name = \"fanout\""
        echo "path = \"/fanout\""
        echo "upstream = \"app\""
        echo "mode = \"mux\""
        echo "[[upstreams]]"
        echo "name = \"app\""
        echo "endpoints = [\"ws://$app\"]"
        echo "pool_size = $POOL"
        if [ "$bp" = 1 ]; then
            echo "[fanout.backplane]"
            echo "kind = \"nats\""
            echo "servers = [\"nats://127.0.0.1:$NATS_PORT\"]"
            echo "required = true"
        fi
    } >"$RUN/$name.toml"
    taskset -c 0 "$GWBIN" run --config "$RUN/$name.toml" --workers 1 >"$RUN/$name.out" 2>"$RUN/$name.err" &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_ADDR=$(wait_addr "$RUN/$name.out" "tidegate listening")
    GW_ADMIN=$(wait_addr "$RUN/$name.out" "tidegate admin")
}
start_gw a "$PUB_ADDR" 1; A_PID=$GW_PID A_ADDR=$GW_ADDR A_ADMIN=$GW_ADMIN
start_gw b "$SUB_ADDR" 1; B_PID=$GW_PID B_ADDR=$GW_ADDR B_ADMIN=$GW_ADMIN
start_gw c "$SUB_ADDR" 1; C_PID=$GW_PID C_ADDR=$GW_ADDR C_ADMIN=$GW_ADMIN
start_gw s "$SGL_ADDR" 0; S_PID=$GW_PID S_ADDR=$GW_ADDR
# Ready: A, B, C connected to NATS (required = true); mux pools up.
for admin in "$A_ADMIN" "$B_ADMIN" "$C_ADMIN"; do
    for _ in $(seq 100); do
        python3 -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://$admin/readyz').status != 200)" 2>/dev/null && break
        sleep 0.1
    done
done
for pid in "$PUB_PID" "$SUB_PID" "$SGL_PID"; do
    wait_pool "$pid" "$POOL" || true
done

scrape() { # ADMIN FILE
    python3 -c "import urllib.request; print(urllib.request.urlopen('http://$1/metrics').read().decode())" >"$2"
}
gen() { # URL OUT PID...
    local url=$1 out=$2; shift 2
    local pids=()
    for p in "$@"; do pids+=(--pid "$p"); done
    taskset -c 1 "$LT" --workers 1 --quiet --json fanout --url "$url" -c "$SUBSCRIBERS" \
        --warmup "$WARMUP" --duration "$DURATION" --source-ip-count 4 "${pids[@]}" >"$out"
}
nats_run() { # ROUND
    echo "bench-nats.sh: nats round $1" >&2
    scrape "$B_ADMIN" "$RUN/res/b.before.$1.prom"
    scrape "$C_ADMIN" "$RUN/res/c.before.$1.prom"
    gen "ws://$A_ADDR/fanout" "$RUN/res/nats-a.$1.json" "$A_PID" "$PUB_PID" "$NATS_PID" &
    local ga=$!
    gen "ws://$B_ADDR/fanout" "$RUN/res/nats-b.$1.json" "$B_PID" "$SUB_PID" &
    local gb=$!
    gen "ws://$C_ADDR/fanout" "$RUN/res/nats-c.$1.json" "$C_PID" &
    local gc=$!
    wait "$ga" "$gb" "$gc"
    scrape "$B_ADMIN" "$RUN/res/b.after.$1.prom"
    scrape "$C_ADMIN" "$RUN/res/c.after.$1.prom"
    sleep 2 # closes settle, the publisher stops broadcasting
}
single_run() { # ROUND
    echo "bench-nats.sh: single round $1" >&2
    gen "ws://$S_ADDR/fanout" "$RUN/res/single-1.$1.json" "$S_PID" "$SGL_PID" &
    local g1=$!
    gen "ws://$S_ADDR/fanout" "$RUN/res/single-2.$1.json" "$S_PID" &
    local g2=$!
    gen "ws://$S_ADDR/fanout" "$RUN/res/single-3.$1.json" "$S_PID" &
    local g3=$!
    wait "$g1" "$g2" "$g3"
    sleep 2
}

LOAD_BEFORE=$(loadavg)
for r in $(seq "$ROUNDS"); do
    nats_run "$r"
    single_run "$r"
done
LOAD_AFTER=$(loadavg)

{
    echo "# tidegate fan-out across instances (NATS) — $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Command: \`TG=$TG bash loadtest/bench-nats.sh\` (ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP SUBSCRIBERS=$SUBSCRIBERS per generator, RATE=$RATE SIZE=$SIZE SLICE_US=${SLICE_US:-0})."
    echo "Machine: $(nproc) cores, $(uname -r); load average before: $LOAD_BEFORE; after: $LOAD_AFTER."
    echo "Pinning: gateways A, B, C and S (\`tidegate run --workers 1\` each) on core 0; the three generators (one worker each), the three example applications and nats-server on core 1. Mux pool_size $POOL."
    echo "Gateway: $("$GWBIN" version); $("$NATS" --version)."
    echo
    python3 - "$RUN/res" "$SUBSCRIBERS" "$RATE" <<'PY'
import glob, json, os, re, statistics, sys

d, subs, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
med = lambda xs: statistics.median(xs) if xs else float("nan")
load = lambda name: [json.load(open(p)) for p in sorted(glob.glob(os.path.join(d, f"{name}.*.json")))]
rounds = sorted({int(p.rsplit(".", 2)[1]) for p in glob.glob(os.path.join(d, "nats-a.*.json"))})

def one(name, r):
    return json.load(open(os.path.join(d, f"{name}.{r}.json")))

def proc(res, i):
    ps = res.get("extra", {}).get("processes", [])
    return ps[i]["cpu_secs"] if len(ps) > i and ps[i].get("cpu_secs") is not None else float("nan")

def buckets(path):
    out = {}
    for line in open(path):
        m = re.match(r'tidegate_fanout_backplane_latency_seconds_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            out[float("inf") if m.group(1) == "+Inf" else float(m.group(1))] = float(m.group(2))
    return out

def hop_p(r, q):
    """The q-quantile bucket bound of B's and C's backplane latency over the round."""
    delta = {}
    for gw in "bc":
        b0, b1 = buckets(os.path.join(d, f"{gw}.before.{r}.prom")), buckets(os.path.join(d, f"{gw}.after.{r}.prom"))
        for le in b1:
            delta[le] = delta.get(le, 0) + b1[le] - b0.get(le, 0)
    total = delta.get(float("inf"), 0)
    if not total:
        return float("nan")
    for le in sorted(delta):
        if delta[le] >= q * total:
            return le * 1e3
    return float("inf")

print(f"Offered: {subs} subscribers per generator × {rate:g} broadcasts/s = {subs * rate:,.0f} deliveries/s per generator, {3 * subs * rate:,.0f} in all.")
print()
print("Per generator (medians over the rounds):")
print()
print("| setup | generator | deliveries/s (offered) | missing | delivery p50 / p99 ms | last delivery p99 ms | generator CPU % | deliveries per read |")
print("|---|---|---|---|---|---|---|---|")
rows = [("nats", "nats-a", "A (local: publisher's instance)"), ("nats", "nats-b", "B (through NATS)"), ("nats", "nats-c", "C (through NATS)"),
        ("single", "single-1", "S, generator 1"), ("single", "single-2", "S, generator 2"), ("single", "single-3", "S, generator 3")]
for setup, name, label in rows:
    runs = load(name)
    if not runs:
        continue
    lastp99 = med([r["extra"]["last_delivery"]["p99_us"] / 1e3 for r in runs if r["extra"]["last_delivery"]["count"]])
    print(f"| {setup} | {label} | {med([r['rate'] for r in runs]):,.0f} ({subs * rate:,.0f}) | {med([r['extra']['missing_deliveries'] for r in runs]):,.0f}"
          f" | {med([r['latency']['p50_us'] / 1e3 for r in runs]):.2f} / {med([r['latency']['p99_us'] / 1e3 for r in runs]):.2f}"
          f" | {lastp99:.2f} | {med([r['generator_cpu_pct'] or 0 for r in runs]):.0f} | {med([r['extra']['read_batch']['mean'] for r in runs]):.2f} |")
print()
print("Per round:")
print()
print("| round | 3 instances: gateway CPU µs per delivery (A+B+C) | 1 instance: gateway µs per delivery | ratio | A p99 ms | B/C p99 ms (worse) | p99 added by NATS ms | backplane hop p50 / p99 ms (B+C histogram, bucket bound) | nats-server µs per publish | publisher µs per publish (3 inst. / 1 inst.) |")
print("|---|---|---|---|---|---|---|---|---|---|")
ratios, added, hops, natsp = [], [], [], []
for r in rounds:
    a, b, c = one("nats-a", r), one("nats-b", r), one("nats-c", r)
    s = [one(f"single-{i}", r) for i in (1, 2, 3)]
    multi = (a["target_cpu_secs"] + b["target_cpu_secs"] + c["target_cpu_secs"]) * 1e6 / (a["completed"] + b["completed"] + c["completed"])
    single = s[0]["target_cpu_secs"] * 1e6 / sum(x["completed"] for x in s)
    ap99 = a["latency"]["p99_us"] / 1e3
    bcp99 = max(b["latency"]["p99_us"], c["latency"]["p99_us"]) / 1e3
    pubs = a["extra"]["publishes"]
    nats_us = proc(a, 2) * 1e6 / pubs if pubs else float("nan")
    pub_multi = proc(a, 1) * 1e6 / pubs if pubs else float("nan")
    spubs = s[0]["extra"]["publishes"]
    pub_single = proc(s[0], 1) * 1e6 / spubs if spubs else float("nan")
    ratios.append(multi / single); added.append(bcp99 - ap99); hops.append(hop_p(r, 0.99)); natsp.append(nats_us)
    print(f"| {r} | {multi:.2f} | {single:.2f} | {multi / single:.3f}× | {ap99:.2f} | {bcp99:.2f} | {bcp99 - ap99:+.2f} | {hop_p(r, 0.5):.3g} / {hop_p(r, 0.99):.3g} | {nats_us:.1f} | {pub_multi:.0f} / {pub_single:.0f} |")
print()
print("| #18 target | measured (median of rounds) | verdict |")
print("|---|---|---|")
rr = med(ratios)
print(f"| gateway CPU per delivered message, summed over 3 instances ≤ 1.15× one instance | {rr:.3f}× | {'met' if rr <= 1.15 else 'not met'} |")
h = med(hops)
print(f"| the NATS hop adds ≤ 1 ms p99 on loopback | backplane histogram p99 ≤ {h:.3g} ms (bucket bound); B/C minus A delivery p99 {med(added):+.2f} ms | {'met' if h <= 1 else 'not met'} (histogram) |")
print(f"| nats-server CPU per publish (reported) | {med(natsp):.1f} µs | – |")
PY
} >"$OUT"
if [ -n "${RAW:-}" ]; then mkdir -p "$RAW" && cp "$RUN"/res/* "$RAW"/; fi
echo "bench-nats.sh: wrote $OUT" >&2
