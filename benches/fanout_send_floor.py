#!/usr/bin/env python3
"""The floor under fan-out's publish-to-last-delivery latency (issue #17):
what the kernel charges for one small send on a loopback TCP socket whose
peer is a process reading it, and so how long one core needs to send one
frame to each of N subscribers.

A sender (pinned to one core) holds N loopback connections to a reader
process (pinned to the other core, reading them through epoll, as the
load generator does). Each round it sends one FRAME-byte message to every
connection, back to back, and records the round's wall time; between
rounds it sleeps so the reader catches up. The sender's system CPU time
(os.times) over all rounds, divided by the sends, is the kernel's cost of
one send — for loopback that includes the receiving side's TCP processing
and the reader's wake-up, which run in the sender's context. Python's own
cost per send is reported apart (user time); a native sender pays only the
kernel part.

    python3 benches/fanout_send_floor.py [N=5000] [ROUNDS=100] [FRAME=136] [paused]

With `paused` the reader is stopped (SIGSTOP) while the rounds run: the
bytes wait in its receive buffers and no send has a sleeping reader to
wake, which separates the TCP work from the cost of the wake-up.

Loopback only; N + a few file descriptors on each side.
"""

import os
import resource
import selectors
import signal
import socket
import sys
import time


def reader(port, n, ready_w):
    os.sched_setaffinity(0, {1})
    sel = selectors.EpollSelector()
    conns = []
    for _ in range(n):
        c = socket.create_connection(("127.0.0.1", port))
        c.setblocking(False)
        sel.register(c, selectors.EVENT_READ)
        conns.append(c)
    os.write(ready_w, b"r")
    while True:
        for key, _ in sel.select():
            try:
                data = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            if not data:
                return


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 136
    paused = len(sys.argv) > 4 and sys.argv[4] == "paused"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4096)
    port = lst.getsockname()[1]
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        lst.close()
        try:
            reader(port, n, ready_w)
        finally:
            os._exit(0)
    os.sched_setaffinity(0, {0})
    socks = []
    for _ in range(n):
        s, _ = lst.accept()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    os.read(ready_r, 1)
    frame = b"\x81\x7e" + (size - 4).to_bytes(2, "big") + b"x" * (size - 4)
    # Warm-up round (first sends grow socket buffers).
    for s in socks:
        s.send(frame)
    time.sleep(0.2)
    if paused:
        os.kill(pid, signal.SIGSTOP)
    walls = []
    t0 = os.times()
    for _ in range(rounds):
        start = time.perf_counter()
        for s in socks:
            s.send(frame)
        walls.append(time.perf_counter() - start)
        time.sleep(0.05)
    t1 = os.times()
    if paused:
        os.kill(pid, signal.SIGCONT)
    # Python's loop alone: the same calls minus the system call.
    start = time.perf_counter()
    noop = len
    for _ in range(rounds):
        for s in socks:
            noop(frame)
    loop = (time.perf_counter() - start) / (rounds * n)
    sends = rounds * n
    sys_us = (t1.system - t0.system) / sends * 1e6
    user_us = (t1.user - t0.user) / sends * 1e6
    walls.sort()
    p50 = walls[len(walls) // 2] * 1e3
    p99 = walls[min(len(walls) - 1, int(len(walls) * 0.99))] * 1e3
    state = "stopped (SIGSTOP)" if paused else "reading (epoll)"
    print(f"{n} connections, {rounds} rounds, {size}-byte frames, sender on core 0, "
          f"reader on core 1 {state}")
    print(f"kernel (system) CPU per send: {sys_us:.2f} us; Python user CPU per send: {user_us:.2f} us "
          f"(its bare loop: {loop * 1e6:.2f} us)")
    print(f"one round of {n} sends: wall p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
          f"kernel part alone: {sys_us * n / 1e3:.1f} ms")
    for s in socks:
        s.close()
    os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
