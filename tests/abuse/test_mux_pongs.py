"""Coalesced pongs still answer: after a burst of pings, the gateway's
last pong carries the payload of the last ping (RFC 6455 §5.5.3) — from a
client through a mux route, and to an application, for WebSocket pings and
mux PINGs. The flood tests prove the answers no longer pile up; these
prove the answer is not lost."""

from __future__ import annotations

import socket
import time

import rawws
from conftest import start_mux
from hostile_app import HostileApp
from tidegate_mux.codec import FrameType, pack_header

BURST = 1000
WAIT = 20.0  # generous: a wait that long means the answer is missing


def read_pongs_until(sock: socket.socket, last: bytes) -> list[bytes]:
    """Read the client's socket until a pong with `last` arrives; returns
    every pong payload seen."""
    buf, seen = b"", []
    deadline = time.monotonic() + WAIT
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        while len(buf) >= 2 and len(buf) >= 2 + (buf[1] & 0x7F):
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F  # server frames: short, unmasked
            payload, buf = buf[2 : 2 + n], buf[2 + n :]
            if opcode == rawws.OP_PONG:
                seen.append(payload)
                if payload == last:
                    return seen
        try:
            chunk = sock.recv(1 << 16)
        except socket.timeout:
            continue
        if not chunk:
            break
        buf += chunk
    raise AssertionError(f"no pong for the last ping within {WAIT}s; saw {len(seen)} pongs")


def test_client_burst_gets_the_latest_pong(stack):
    app = HostileApp()
    gw = start_mux(stack, app)
    client = rawws.connect(gw.addr)
    burst = b"".join(rawws.frame(rawws.OP_PING, b"%d" % i) for i in range(BURST))
    client.sendall(burst)
    seen = read_pongs_until(client, b"%d" % (BURST - 1))
    print(f"{BURST} pings from a reading client got {len(seen)} pongs")
    assert len(seen) <= BURST
    client.close()


def _app_burst(stack, unit_for, last: bytes, kind: str) -> None:
    def on_connect(sock):
        burst = b"".join(unit_for(b"%d" % i) for i in range(BURST - 1)) + unit_for(last)
        sock.sendall(burst)
        return True  # go on reading: the pongs are what is checked

    app = HostileApp(on_connect=on_connect)
    start_mux(stack, app)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline and (kind, last) not in app.pongs:
        time.sleep(0.05)
    got = [p for k, p in app.pongs if k == kind]
    print(f"{BURST} {kind} pings from the app got {len(got)} pongs")
    assert (kind, last) in app.pongs, f"no pong for the last {kind} ping; got {len(got)}"
    assert got[-1] == last


def test_app_websocket_ping_burst_gets_the_latest_pong(stack):
    _app_burst(stack, lambda p: rawws.frame(rawws.OP_PING, p, mask=False), b"last", "ws")


def test_app_mux_ping_burst_gets_the_latest_pong(stack):
    def mux_ping(p: bytes) -> bytes:
        return rawws.frame(rawws.OP_BINARY, pack_header(FrameType.PING, 0, 0, len(p)) + p, mask=False)

    _app_burst(stack, mux_ping, b"last", "mux")


