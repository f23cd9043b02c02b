"""A raw-socket WebSocket client that can misbehave: it does the opening
handshake itself, then writes frames it built in bulk (many frames per
`send`), and may never read. Real clients libraries refuse to do that,
which is the point.

Every send loop here is bounded in bytes and in time."""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# A tiny receive buffer makes a client that does not read look like one at
# once: the gateway's writes stall after a few KB instead of a few MB.
SMALL_RCVBUF = 4096


def frame(opcode: int, payload: bytes = b"", fin: bool = True, mask: bool = True) -> bytes:
    """One frame. Masked with an all-zero key (valid, and the payload stays
    as is), as a client must; `mask=False` for server-to-client frames."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 1 << 16:
        head += bytes([bit | 126]) + struct.pack(">H", n)
    else:
        head += bytes([bit | 127]) + struct.pack(">Q", n)
    if mask:
        head += b"\0\0\0\0"
    return head + payload


def handshake(sock: socket.socket, host: str, path: str = "/", timeout: float = 20.0) -> bytes:
    """Send the upgrade request, read the response head; returns bytes
    read past it. Raises if the answer is not 101."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    sock.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(f"no 101: {head!r}")
    sock.settimeout(None)
    return rest


def connect(addr: str, path: str = "/", small_rcvbuf: bool = False) -> socket.socket:
    """A TCP connection to `addr` (host:port) with the handshake done."""
    host, _, port = addr.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_rcvbuf:
        # Before connect, so the advertised window is small from the start.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.connect((host, int(port)))
    handshake(sock, addr, path)
    return sock


def flood(sock: socket.socket, unit: bytes, count: int, timeout: float = 60.0, stall: float = 3.0) -> int:
    """Write `unit` `count` times, in chunks of many units. Stops early when
    the peer has taken nothing for `stall` seconds (it applies
    backpressure, which is an answer too) or at `timeout`. Returns how many
    whole units were written."""
    per_chunk = max(1, (256 * 1024) // len(unit))
    chunk = unit * per_chunk
    total = len(unit) * count
    sent = 0
    deadline = time.monotonic() + timeout
    sock.setblocking(False)
    try:
        while sent < total and time.monotonic() < deadline:
            _, writable, _ = select.select([], [sock], [], stall)
            if not writable:
                break
            at = sent % len(chunk)
            piece = chunk[at : at + min(len(chunk) - at, total - sent)]
            try:
                sent += sock.send(piece)
            except BlockingIOError:
                continue
    finally:
        sock.setblocking(True)
    return sent // len(unit)


def trickle(sock: socket.socket, data: bytes, timeout: float = 30.0) -> int:
    """Write `data` one byte per system call (bounded by `timeout`);
    returns the bytes written."""
    deadline = time.monotonic() + timeout
    for i in range(len(data)):
        if time.monotonic() > deadline:
            return i
        sock.sendall(data[i : i + 1])
    return len(data)


def drain(sock: socket.socket, seconds: float) -> int:
    """Read and discard for up to `seconds`; returns the bytes read."""
    n = 0
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    try:
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 16)
            except socket.timeout:
                continue
            if not chunk:
                break
            n += len(chunk)
    except OSError:
        pass
    return n
