"""Turns the JSON results of loadtest/bench-mux.sh into the markdown tables
of docs/performance.md ("Mux vs passthrough"): medians over rounds, and the
mux/passthrough ratios the targets of issue #6 are judged by.

    python3 loadtest/bench-mux-report.py DIR

DIR holds APP.MODE.rateR.ROUND.json (R msg/s per client), APP.MODE.idle.json (tidegate-loadtest
--json output) and baseline.txt ("APP MODE RSS_KB SOCKETS" per line, the
applications just after start).
"""

import glob
import json
import os
import statistics
import sys

TARGET_CPU = 0.75
TARGET_RSS = 0.25
TARGET_IDLE_KB = 1.5
# Issue #20 item 3, mux ÷ passthrough at 5,000 clients × 10 msg/s.
TARGET20_TOTAL = 0.7
TARGET20_GATEWAY = 0.8
TARGET20_RUST_RSS = 0.35
# A run whose generator fell behind its schedule by half a message interval
# (p99) sent catch-up bursts: the proxy then sees several messages of one
# client per read, and its CPU per message is not the figure of the offered
# load. A p99 latency above one interval means the application was not
# keeping up (queues, so fuller reads and writes everywhere).


def load(path):
    with open(path) as f:
        return json.load(f)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=1, unit=""):
    return "-" if v is None else f"{v:,.{digits}f}{unit}"


def rate_figures(runs, clients):
    """Medians of one (app, mode) over its rounds."""
    gw = [r["extra"]["processes"][0] for r in runs]
    app = [r["extra"]["processes"][1] for r in runs]
    per_k = clients / 1000
    return {
        "rate": med(r["rate"] for r in runs),
        "offered": runs[0]["params"]["offered_msgs_per_sec"],
        "p99_ms": med(r["latency"]["p99_us"] / 1000 for r in runs),
        "lag_p99_ms": med(r["extra"]["send_lag"]["p99_us"] / 1000 for r in runs),
        "unanswered": sum(r["extra"]["unanswered"] for r in runs),
        "errors": sum(sum(r["errors"].values()) for r in runs),
        "gw_cpu": med(g["cpu_us_per_message"] for g in gw),
        "gw_cpu_all": [g["cpu_us_per_message"] for g in gw],
        "gw_socks": med(g["socket_fds"] for g in gw),
        "gen_pct": med(r["generator_cpu_pct"] for r in runs),
        "app_socks": med(a["socket_fds"] for a in app),
        "app_rss_mb": med(a["rss_bytes"] / 2**20 for a in app),
        "app_cpu_pct_per_k": med(a["cpu_pct"] / per_k for a in app),
        "app_cpu": med(a["cpu_us_per_message"] for a in app),
        # On-CPU time (perf task-clock): the CPU-time clock can charge a
        # process with time another task spent on its core.
        "gw_on": med(g.get("oncpu_us_per_message") for g in gw),
        "app_on": med(a.get("oncpu_us_per_message") for a in app),
        "overload": overload(runs),
    }


def overload(runs):
    """Why these runs were not at the offered load, or None."""
    why = []
    if sum(r["extra"]["unanswered"] for r in runs):
        why.append("echoes lost (application saturated)")
    interval_us = 1e6 / runs[0]["params"]["rate_per_connection"]
    if max(r["extra"]["send_lag"]["p99_us"] for r in runs) > interval_us / 2:
        why.append(f"generator behind (send lag p99 > {interval_us / 2000:.0f} ms)")
    if max(r["latency"]["p99_us"] for r in runs) > interval_us:
        why.append(f"latency p99 > {interval_us / 1000:.0f} ms, one message interval")
    return "; ".join(why) or None


def verdict(ratio, target):
    if ratio is None:
        return "not measured"
    if ratio <= target:
        return f"**met** ({ratio:.2f}× ≤ {target}×)"
    return f"**missed** ({ratio:.2f}× > {target}×, {ratio / target - 1:.0%} over)"


def main(d):
    base, base_socks = {}, {}
    with open(os.path.join(d, "baseline.txt")) as f:
        for line in f:
            app, mode, kb, socks = line.split()
            base[(app, mode)] = int(kb) / 1024
            base_socks[(app, mode)] = int(socks)
    apps = sorted({os.path.basename(p).split(".")[0] for p in glob.glob(os.path.join(d, "*.json"))}, reverse=True)
    rates = sorted({int(os.path.basename(p).split(".")[2][4:]) for p in glob.glob(os.path.join(d, "*.rate*.json"))})
    figs = {}
    for rate in rates:
        print(f"## Open loop (`rate`, {rate} msg/s per client), medians over rounds\n")
        print("| app | mode | msgs/s (offered) | p99 ms | send lag p99 ms | unanswered · errors | gateway CPU µs/msg (each round) | gateway sockets | app sockets (at start) | app RSS MB (at start) | app RSS MB per 1k clients | app CPU % of a core per 1k clients | app CPU µs/msg | generator CPU % |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for app in apps:
            for mode in ("pass", "muxold", "mux"):
                runs = [load(p) for p in sorted(glob.glob(os.path.join(d, f"{app}.{mode}.rate{rate}.*.json")))]
                if not runs:
                    continue
                clients = runs[0]["connections"]
                f = figs[(app, mode, rate)] = rate_figures(runs, clients)
                rounds = " / ".join(fmt(c, 2) for c in f["gw_cpu_all"])
                print(
                    f"| {app} | {mode} | {fmt(f['rate'], 0)} ({fmt(f['offered'], 0)}) | {fmt(f['p99_ms'], 2)} | {fmt(f['lag_p99_ms'], 2)} "
                    f"| {f['unanswered']} · {f['errors']} | {fmt(f['gw_cpu'], 2)} ({rounds}) | {fmt(f['gw_socks'], 0)} | {fmt(f['app_socks'], 0)} ({base_socks.get((app, mode), '-')}) "
                    f"| {fmt(f['app_rss_mb'])} ({fmt(base.get((app, mode)))}) | {fmt(f['app_rss_mb'] / (clients / 1000), 2)} "
                    f"| {fmt(f['app_cpu_pct_per_k'], 1)} | {fmt(f['app_cpu'], 1)} | {fmt(f['gen_pct'], 0)} |"
                )
        print()
    idle = {}
    for app in apps:
        for mode in ("pass", "mux"):
            p = os.path.join(d, f"{app}.{mode}.idle.json")
            if os.path.exists(p):
                idle[(app, mode)] = load(p)
    if idle:
        print("## Idle clients (`idle`), gateway freshly started for each run\n")
        print("| app | mode | clients held | connects/s | gateway RSS per client |")
        print("|---|---|---:|---:|---:|")
        for (app, mode), r in idle.items():
            rss = r["extra"]["rss"]
            print(
                f"| {app} | {mode} | {r['extra']['connected']} | {fmt(r['rate'], 0)} "
                f"| {fmt(rss[0]['bytes_per_connection'] / 1024, 2, ' KB')} |"
            )
        print()
    print("## Against the targets of issue #6\n")
    for app, rate in [(a, r) for a in apps for r in rates]:
        p, m = figs.get((app, "pass", rate)), figs.get((app, "mux", rate))
        if p and m:
            cpu = m["gw_cpu"] / p["gw_cpu"] if p["gw_cpu"] and m["gw_cpu"] is not None else None
            bad = [f"{mode}: {f['overload']}" for mode, f in (("pass", p), ("mux", m)) if f["overload"]]
            rss = m["app_rss_mb"] / p["app_rss_mb"]
            grow_p = p["app_rss_mb"] - base.get((app, "pass"), 0)
            grow_m = m["app_rss_mb"] - base.get((app, "mux"), 0)
            print(f"- {app}, {rate} msg/s: gateway CPU per message mux/pass = {fmt(m['gw_cpu'], 2)}/{fmt(p['gw_cpu'], 2)} µs = {fmt(cpu, 2)}×: " + (f"not decidable ({'; '.join(bad)})" if bad else verdict(cpu, TARGET_CPU)))
            print(f"- {app}, {rate} msg/s: application RSS mux/pass = {fmt(m['app_rss_mb'])}/{fmt(p['app_rss_mb'])} MB: {verdict(rss, TARGET_RSS)}"
                  f" (growth over the idle process: {fmt(grow_m)}/{fmt(grow_p)} MB = {fmt(grow_m / grow_p if grow_p > 0 else None, 2)}×)")
    for app in apps:
        r = idle.get((app, "mux"))
        if r:
            kb = r["extra"]["rss"][0]["bytes_per_connection"] / 1024
            ok = "**met**" if kb <= TARGET_IDLE_KB else f"**missed** by {kb / TARGET_IDLE_KB - 1:.0%}"
            print(f"- {app}: gateway RSS per idle mux client = {kb:.2f} KB: {ok} (target ≤ {TARGET_IDLE_KB} KB)")


    print_issue20(apps, rates, figs)


def total_cpu(f, clock="cpu"):
    """Gateway plus application CPU per message (µs); `clock` "on" for
    the on-CPU (task-clock) figures."""
    gw, app = f[f"gw_{clock}"], f[f"app_{clock}"]
    if gw is None or app is None:
        return None
    return gw + app


def print_issue20(apps, rates, figs):
    """Issue #20 item 3: total (gateway + app) and gateway CPU per message
    and application RSS, mux ÷ passthrough, for each mux flavour measured
    (`muxold`: the old binaries in the same run, when given)."""
    print("\n## Against the targets of issue #20 (item 3)\n")
    print("CPU-time clock, and on-CPU time (perf task-clock) where it could be counted.\n")
    print("| app, rate | mode | total CPU µs/msg (gateway + app) | ÷ pass | gateway µs/msg | ÷ pass | total on-CPU µs/msg | ÷ pass | gateway on-CPU µs/msg | ÷ pass | app RSS MB | ÷ pass | not at the offered load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for app in apps:
        for rate in rates:
            p = figs.get((app, "pass", rate))
            if not p:
                continue
            for mode in ("pass", "muxold", "mux"):
                f = figs.get((app, mode, rate))
                if not f:
                    continue
                t, tp = total_cpu(f), total_cpu(p)
                o, op = total_cpu(f, "on"), total_cpu(p, "on")
                ratio = lambda a, b: fmt(a / b if a is not None and b else None, 2, "×")
                print(
                    f"| {app}, {rate}/s | {mode} | {fmt(t, 2)} | {ratio(t, tp)} | {fmt(f['gw_cpu'], 2)} | {ratio(f['gw_cpu'], p['gw_cpu'])} "
                    f"| {fmt(o, 2)} | {ratio(o, op)} | {fmt(f['gw_on'], 2)} | {ratio(f['gw_on'], p['gw_on'])} "
                    f"| {fmt(f['app_rss_mb'])} | {ratio(f['app_rss_mb'], p['app_rss_mb'])} | {f['overload'] or ''} |"
                )
    print()
    for app in apps:
        for rate in rates:
            p, m = figs.get((app, "pass", rate)), figs.get((app, "mux", rate))
            if not (p and m):
                continue
            for clock, name in (("cpu", "CPU-time clock"), ("on", "on-CPU")):
                t, tp = total_cpu(m, clock), total_cpu(p, clock)
                g, gp = m[f"gw_{clock}"], p[f"gw_{clock}"]
                print(f"- {app}, {rate} msg/s: total CPU per message mux/pass ({name}): {verdict(t / tp if t is not None and tp else None, TARGET20_TOTAL)}")
                print(f"- {app}, {rate} msg/s: gateway CPU per message mux/pass ({name}): {verdict(g / gp if g is not None and gp else None, TARGET20_GATEWAY)}")
            if app == "rust":
                print(f"- {app}, {rate} msg/s: application RSS mux/pass: {verdict(m['app_rss_mb'] / p['app_rss_mb'], TARGET20_RUST_RSS)}")


if __name__ == "__main__":
    main(sys.argv[1])
