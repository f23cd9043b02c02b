"""Edge permessage-deflate on a mux route, through the REAL gateway binary:
Python ``websockets`` clients (which offer permessage-deflate) negotiate it
with the gateway, the Python SDK echo app gets plain messages over the mux
connection. Text and binary of 1 B to 1 MiB come back intact, compressed
on the wire; a zip bomb closes with 1009; without context takeover the
levers are answered.

The gateway is started like tests/python does it (``$TG_TEST_BIN``, else
the release build)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import zlib

import pytest
from websockets.asyncio.client import connect

from mux_peer import run
from test_gateway import REPO, WAIT, metric, mux_config, wait_ready  # noqa: F401 (REPO: path setup)
from gateway import Stack  # noqa: E402

LIMIT = 4 * 1024 * 1024
"""The route's message limit: the bomb inflates far past it."""

SIZES = [1, 100, 1024, 64 * 1024, 1024 * 1024]


@pytest.fixture
def stack():
    with Stack() as s:
        yield s


def deflate_gateway(stack, app_addr: str, levers: str = ""):
    # A 1 MiB echo is queued whole towards the client at times (the app
    # sends it as one MESSAGE): room for it beside the 1 MiB default.
    config = mux_config([app_addr]).replace("[mux]\n", "[mux]\nsession_queue_bytes = 8388608\n") + (
        f'permessage_deflate = "edge"\nmax_message_size = {LIMIT}\n'
        f"[routes.deflate]\nmin_size = 16\n{levers}"
    )
    gw = stack.run_config(config, admin=True)
    wait_ready(gw)
    return gw


def payload(n: int) -> bytes:
    """Compressible but not trivial: JSON-ish text repeated with a counter."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += b'{"seq":%d,"room":"general","text":"hello through the edge"}' % i
        i += 1
    return bytes(out[:n])


def extension_names(ws) -> list[str]:
    return [e.name for e in ws.protocol.extensions]


def test_text_and_binary_echo_compressed(stack, echo_app):
    gw = deflate_gateway(stack, echo_app.addr)

    async def main():
        async with connect(gw.url("/echo"), max_size=None, open_timeout=WAIT) as ws:
            assert extension_names(ws) == ["permessage-deflate"], ws.response.headers
            for n in SIZES:
                data = payload(n)
                await ws.send(data.decode())
                assert await asyncio.wait_for(ws.recv(), WAIT) == data.decode(), n
                await ws.send(data)
                assert await asyncio.wait_for(ws.recv(), WAIT) == data, n
            # One message in fragments: the app sees it whole.
            await ws.send([b"\x01" * 70_000, b"\x02" * 70_000])
            assert await asyncio.wait_for(ws.recv(), WAIT) == b"\x01" * 70_000 + b"\x02" * 70_000

    run(main())
    # Compressed on the wire both ways (the payloads are repetitive).
    for direction in ("client_to_upstream", "upstream_to_client"):
        plain = metric(gw, "tidegate_deflate_bytes_total", direction=direction, stage="plain")
        wire = metric(gw, "tidegate_deflate_bytes_total", direction=direction, stage="compressed")
        assert plain >= 2 * sum(SIZES), (direction, plain)
        assert 0 < wire < plain / 5, (direction, wire, plain)
    assert metric(gw, "tidegate_deflate_sessions_total", mode="edge") == 1


def test_no_context_takeover_levers_are_answered(stack, echo_app):
    levers = "server_no_context_takeover = true\nclient_no_context_takeover = true\n"
    gw = deflate_gateway(stack, echo_app.addr, levers)

    async def main():
        async with connect(gw.url("/echo"), max_size=None, open_timeout=WAIT) as ws:
            answer = ws.response.headers["Sec-WebSocket-Extensions"]
            assert "server_no_context_takeover" in answer, answer
            assert "client_no_context_takeover" in answer, answer
            for n in (1, 5000, 300_000):
                for _ in range(3):
                    await ws.send(payload(n))
                    assert await asyncio.wait_for(ws.recv(), WAIT) == payload(n)

    run(main())


def raw_upgrade(addr: str) -> socket.socket:
    """A hand-made client that offers permessage-deflate (to send frames
    ``websockets`` would not)."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=WAIT)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET /echo HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    assert b"permessage-deflate" in head.lower(), head
    return s


def masked_frame(b0: int, data: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(data)
    if n < 126:
        head = bytes([b0, 0x80 | n])
    elif n < 65536:
        head = bytes([b0, 0x80 | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, 0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
    return head + mask + body


def read_close_code(s: socket.socket) -> int:
    """Frames until a Close (the gateway's frames are unmasked); its code."""
    buf = b""

    def need(n: int) -> bytes:
        nonlocal buf
        while len(buf) < n:
            chunk = s.recv(65536)
            assert chunk, "EOF before a Close"
            buf += chunk
        out, buf = buf[:n], buf[n:]
        return out

    while True:
        b0, b1 = need(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", need(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", need(8))
        body = need(n)
        if b0 & 0x0F == 0x8:
            return struct.unpack("!H", body[:2])[0]


def test_zip_bomb_closes_with_1009(stack, echo_app):
    gw = deflate_gateway(stack, echo_app.addr)
    # ~100 KiB of deflate data inflating to 100 MiB, far past the 4 MiB limit.
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = c.compress(bytes(100 << 20)) + c.flush(zlib.Z_SYNC_FLUSH)
    assert bomb.endswith(b"\x00\x00\xff\xff")
    bomb = bomb[:-4]
    assert len(bomb) < 110 * 1024
    s = raw_upgrade(gw.addr)
    try:
        s.sendall(masked_frame(0xC2, bomb))  # FIN, RSV1, binary
        assert read_close_code(s) == 1009
    finally:
        s.close()
    # Invalid deflate data is 1007.
    s = raw_upgrade(gw.addr)
    try:
        s.sendall(masked_frame(0xC2, b"\xff\xff\xff\xff"))
        assert read_close_code(s) == 1007
    finally:
        s.close()
