#!/usr/bin/env python3
"""Tables of loadtest/bench-fanout.sh from its JSON results:

    python3 loadtest/bench-fanout-report.py DIR SUBSCRIBERS RATE

DIR holds MODE.ROUND.json (`tidegate-loadtest fanout`, MODE = fanout,
sessions, pass) and echo.ROUND.json (`compare echo`). Figures are medians
over the rounds; CPU per delivery is the process's CPU over the measured
window (read from its CPU-time clock in nanoseconds by the harness,
loadtest/src/procfs.rs) divided by the deliveries in it; where the
harness could count it, the same from perf `task-clock` (on-CPU time,
loadtest/src/oncpu.rs) in a table of its own."""

from __future__ import annotations

import glob
import json
import os
import statistics
import sys

MODES = [
    ("fanout", "mux, one PUBLISH (fan-out)"),
    ("sessions", "mux, one MESSAGE per session"),
    ("pass", "passthrough, one frame per socket"),
]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=2):
    return "-" if v is None else f"{v:.{digits}f}"


def load(d: str, mode: str) -> list[dict]:
    return [json.load(open(p)) for p in sorted(glob.glob(os.path.join(d, f"{mode}.*.json")))]


def main() -> None:
    d, subscribers, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    offered = subscribers * rate
    rows = {}
    print(f"{subscribers} subscribers × {rate:g} broadcasts/s × 128 B = {offered:,.0f} deliveries/s offered.")
    print()
    print("| sender | deliveries/s | missing | delivery p50 / p99 ms | last delivery p50 / p99 ms | gateway µs/delivery | app µs/delivery | app CPU % | generator CPU % | deliveries per read |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for mode, label in MODES:
        runs = load(d, mode)
        if not runs:
            continue
        gw = med([r["extra"]["processes"][0]["cpu_us_per_message"] for r in runs])
        app = med([r["extra"]["processes"][1]["cpu_us_per_message"] for r in runs])
        app_pct = med([r["extra"]["processes"][1]["cpu_pct"] for r in runs])
        last_p99 = med([r["extra"]["last_delivery"]["p99_us"] / 1e3 if r["extra"]["last_delivery"]["count"] else None for r in runs])
        gw_on = med([r["extra"]["processes"][0].get("oncpu_us_per_message") for r in runs])
        app_on = med([r["extra"]["processes"][1].get("oncpu_us_per_message") for r in runs])
        rows[mode] = {"gw": gw, "app": app, "last_p99": last_p99, "gw_on": gw_on, "app_on": app_on}
        print(
            f"| {label} | {med([r['rate'] for r in runs]):,.0f} | {med([r['extra']['missing_deliveries'] for r in runs]):,.0f}"
            f" | {fmt(med([r['latency']['p50_us'] / 1e3 for r in runs]))} / {fmt(med([r['latency']['p99_us'] / 1e3 for r in runs]))}"
            f" | {fmt(med([r['extra']['last_delivery']['p50_us'] / 1e3 for r in runs]))} / {fmt(last_p99)}"
            f" | {fmt(gw, 3)} | {fmt(app, 3)} | {fmt(app_pct, 1)} | {fmt(med([r['generator_cpu_pct'] for r in runs]), 0)}"
            f" | {fmt(med([r['extra']['read_batch']['mean'] for r in runs]))} |"
        )
    if any(r.get("app_on") is not None for r in rows.values()):
        print()
        print("On-CPU time (perf `task-clock`, loadtest/src/oncpu.rs; not charged with another task's time as the CPU-time clock can be):")
        print()
        print("| sender | gateway on-CPU µs/delivery | app on-CPU µs/delivery |")
        print("|---|---|---|")
        for mode, label in MODES:
            if mode in rows:
                print(f"| {label} | {fmt(rows[mode]['gw_on'], 3)} | {fmt(rows[mode]['app_on'], 4)} |")
    echo = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(d, "echo.*.json")))]
    echo_runs = [run for c in echo for run in c["rows"][0]["runs"]]
    echo_cpu = med([r["target_cpu_us_per_unit"] for r in echo_runs])
    echo_on = med([r.get("target_oncpu_us_per_unit") for r in echo_runs])
    print()
    print(
        f"Passthrough closed-loop 64 B echo ({echo_runs[0]['connections'] if echo_runs else '?'} clients): "
        f"{fmt(med([r['rate'] for r in echo_runs]), 0)} msgs/s, gateway {fmt(echo_cpu, 3)} µs per echoed message "
        f"(one message up and back)"
        + (f"; on-CPU {echo_on:.3f} µs." if echo_on is not None else ".")
    )
    print()
    print("| #17 target | measured | verdict |")
    print("|---|---|---|")
    f = rows.get("fanout", {})
    s = rows.get("sessions", {})
    if f.get("gw") is not None and echo_cpu:
        r = f["gw"] / echo_cpu
        print(f"| gateway CPU per delivered message ≤ 0.35× passthrough's per echoed 64 B message | {f['gw']:.3f} / {echo_cpu:.3f} µs = {r:.2f}× | {'met' if r <= 0.35 else 'not met'} |")
    if f.get("gw_on") is not None and echo_on:
        r = f["gw_on"] / echo_on
        print(f"| the same, on-CPU time | {f['gw_on']:.3f} / {echo_on:.3f} µs = {r:.2f}× | {'met' if r <= 0.35 else 'not met'} |")
    if f.get("app") is not None and s.get("app"):
        r = f["app"] / s["app"]
        print(f"| application CPU per delivered message ≤ 0.02× of sending per session | {f['app']:.4f} / {s['app']:.3f} µs = {r:.3f}× | {'met' if r <= 0.02 else 'not met'} |")
    if f.get("app_on") is not None and s.get("app_on"):
        r = f["app_on"] / s["app_on"]
        print(f"| the same, on-CPU time | {f['app_on']:.4f} / {s['app_on']:.3f} µs = {r:.3f}× | {'met' if r <= 0.02 else 'not met'} |")
    if f.get("last_p99") is not None:
        print(f"| publish-to-last-delivery p99, {subscribers} subscribers ≤ 10 ms | {f['last_p99']:.2f} ms | {'met' if f['last_p99'] <= 10 else 'not met'} |")


if __name__ == "__main__":
    main()
