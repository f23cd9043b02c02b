"""Passthrough mode: a client that never reads, a message in 100k tiny
fragments, and a client that trickles bytes one at a time. The relay keeps
bytes of its own only while the other side cannot take them (at most one
read, 64 KiB, per direction) and stops reading the sender until they
drain, so none of these may grow the gateway; each test measures its peak
RSS growth against the bound docs/security.md states."""

from __future__ import annotations

import threading

import rawws
from procmem import MB, Growth, describe

BOUND = 16 * MB
WAIT = 60


def gateway(stack):
    return stack.proxy("ws://" + stack.echo())


def check(name: str, gw, growth: Growth) -> None:
    grew = growth.settled()
    print(describe(name, grew, BOUND))
    assert gw.proc.popen.poll() is None, "the gateway died"
    assert grew < BOUND, describe(name, grew, BOUND)


def test_client_that_never_reads(stack):
    """64 MB of 64 KiB messages to an echo, never reading the echoes: the
    gateway stops reading once the client's leg is blocked."""
    gw = gateway(stack)
    growth = Growth(gw.proc.popen.pid)
    client = rawws.connect(gw.addr, small_rcvbuf=True)
    msg = rawws.frame(rawws.OP_BINARY, b"x" * 65536)
    sent = rawws.flood(client, msg, 1024, timeout=WAIT)
    print(f"client wrote {sent} of 1024 messages before backpressure")
    assert sent < 1024, "no backpressure: the gateway read everything"
    check("passthrough client that never reads", gw, growth)
    client.close()


def test_message_in_100k_fragments(stack):
    """One message as 100,000 one-byte fragments (the echoes are read)."""
    gw = gateway(stack)
    growth = Growth(gw.proc.popen.pid)
    client = rawws.connect(gw.addr)
    reader = threading.Thread(target=rawws.drain, args=(client, 30), daemon=True)
    reader.start()
    n = 100_000
    frames = (
        rawws.frame(rawws.OP_BINARY, b"a", fin=False)
        + rawws.frame(rawws.OP_CONT, b"a", fin=False) * (n - 2)
        + rawws.frame(rawws.OP_CONT, b"a", fin=True)
    )
    client.sendall(frames)
    check("passthrough 100k fragments", gw, growth)
    client.close()
    reader.join(35)


def test_client_trickling_bytes(stack):
    """Frames written one byte per system call: headers and payloads cut
    at every offset."""
    gw = gateway(stack)
    growth = Growth(gw.proc.popen.pid)
    client = rawws.connect(gw.addr)
    reader = threading.Thread(target=rawws.drain, args=(client, 40), daemon=True)
    reader.start()
    data = rawws.frame(rawws.OP_BINARY, b"t" * 16384) + rawws.frame(rawws.OP_TEXT, b"x" * 200) * 20
    written = rawws.trickle(client, data, timeout=WAIT)
    assert written == len(data)
    check("passthrough byte trickle", gw, growth)
    client.close()
    reader.join(45)
