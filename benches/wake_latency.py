"""Wake-up round trip between two processes pinned to cores 0 and 1 (a pipe
ping-pong), idle GAP seconds between pings: how long this machine takes to
run a thread that was woken on an idle CPU.

    python3 benches/wake_latency.py [N] [GAP]
"""
import os
import sys
import time

r1, w1 = os.pipe(); r2, w2 = os.pipe()
n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
gap = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
pid = os.fork()
if pid == 0:
    os.sched_setaffinity(0, {1})
    for _ in range(n):
        os.read(r1, 1); os.write(w2, b"x")
    os._exit(0)
os.sched_setaffinity(0, {0})
rtts = []
for _ in range(n):
    time.sleep(gap)
    t = time.perf_counter_ns(); os.write(w1, b"x"); os.read(r2, 1)
    rtts.append((time.perf_counter_ns() - t) / 1000)
os.waitpid(pid, 0)
rtts.sort()
print(f"n={n} gap={gap*1000:.0f}ms round trip µs: p50 {rtts[n//2]:.0f} p90 {rtts[int(n*0.9)]:.0f} p99 {rtts[int(n*0.99)]:.0f} max {rtts[-1]:.0f}")
