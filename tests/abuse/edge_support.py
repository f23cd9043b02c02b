"""Raw-socket helpers for the edge abuse tests (test_edge_*.py): send a
request head byte for byte, read the status, and after a 101 ask the
Python upstream `whoami` to see exactly what the application received.
The harness (tests/python/gateway.py) starts the real binary."""

from __future__ import annotations

import json
import os
import socket
import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import gateway as g  # noqa: E402,F401  (re-exported for the test files)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
# Generous: the machine may be busy; never the thing asserted.
TIMEOUT = 20.0


def head(path: str, host: str = "127.0.0.1", extra: tuple[str, ...] = (), *, eol: str = "\r\n") -> bytes:
    """An upgrade request head for `path`, lines joined with `eol`."""
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return (eol.join(lines) + eol + eol).encode()


def split_addr(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host, int(port)


def send_head(addr: str, raw: bytes, source: str | None = None) -> tuple[int, socket.socket, bytes]:
    """Connect (from `source` if given), send `raw`, read the response head.
    Returns (status, socket, response head); status 0 if the gateway closed
    without answering."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if source:
        sock.bind((source, 0))
    sock.connect(split_addr(addr))
    sock.sendall(raw)
    buf = b""
    while b"\r\n\r\n" not in buf:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return 0, sock, buf
        buf += chunk
    status = int(buf.split(b" ", 2)[1])
    return status, sock, buf


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed mid-frame")
        out += chunk
    return out


def send_text(sock: socket.socket, text: str) -> None:
    """One masked text frame (client to server)."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)


def recv_text(sock: socket.socket) -> str:
    """One unmasked server frame's payload as text (skips pings)."""
    while True:
        b0, b1 = _recv_exact(sock, 2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", _recv_exact(sock, 2))
        elif n == 127:
            (n,) = struct.unpack("!Q", _recv_exact(sock, 8))
        payload = _recv_exact(sock, n)
        if b0 & 0x0F == 0x1:
            return payload.decode()


def whoami(addr: str, raw: bytes) -> tuple[int, dict | None]:
    """Upgrade with `raw`; on 101 return what the Python upstream saw
    ({path, headers}); else (status, None)."""
    status, sock, _ = send_head(addr, raw)
    with sock:
        if status != 101:
            return status, None
        send_text(sock, "whoami")
        return status, json.loads(recv_text(sock))
