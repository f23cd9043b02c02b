"""Wake-up round trip between two processes pinned to cores 0 and 1 (a pipe
ping-pong), idle GAP seconds between pings: how long this machine takes to
run a thread that was woken on an idle CPU.

    python3 benches/wake_latency.py [N] [GAP] [SLICE_NS]

SLICE_NS (optional, Linux 6.12+): both processes first ask the scheduler for
that EEVDF slice (sched_setattr's sched_runtime), to compare with the
kernel's default while other work keeps the CPUs busy.
"""
import ctypes
import os
import struct
import sys
import time

SYS_SCHED_SETATTR = 314  # x86_64


def request_slice(ns):
    # struct sched_attr (48 bytes): size, policy, flags (SCHED_FLAG_KEEP_POLICY),
    # nice (kept as it is), priority, runtime, deadline, period
    attr = struct.pack("IIQiIQQQ", 48, 0, 0x08, os.getpriority(os.PRIO_PROCESS, 0), 0, ns, 0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_SCHED_SETATTR, 0, ctypes.create_string_buffer(attr), 0) != 0:
        sys.exit(f"sched_setattr: {os.strerror(ctypes.get_errno())}")


r1, w1 = os.pipe(); r2, w2 = os.pipe()
n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
gap = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
slice_ns = int(sys.argv[3]) if len(sys.argv) > 3 else 0
pid = os.fork()
if pid == 0:
    os.sched_setaffinity(0, {1})
    if slice_ns:
        request_slice(slice_ns)
    for _ in range(n):
        os.read(r1, 1); os.write(w2, b"x")
    os._exit(0)
os.sched_setaffinity(0, {0})
if slice_ns:
    request_slice(slice_ns)
rtts = []
for _ in range(n):
    time.sleep(gap)
    t = time.perf_counter_ns(); os.write(w1, b"x"); os.read(r2, 1)
    rtts.append((time.perf_counter_ns() - t) / 1000)
os.waitpid(pid, 0)
rtts.sort()
label = f" slice={slice_ns}ns" if slice_ns else ""
print(f"n={n} gap={gap*1000:.0f}ms{label} round trip µs: p50 {rtts[n//2]:.0f} p90 {rtts[int(n*0.9)]:.0f} p99 {rtts[int(n*0.99)]:.0f} max {rtts[-1]:.0f}")
