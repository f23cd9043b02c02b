"""A hostile mux application on a raw socket: it answers the gateway's
`tidegate.mux.v1` upgrade, accepts OPENs, and then does what the test
asks — flood the connection with pings or a session with empty messages,
or simply stop reading. Frames are built in bulk (thousands per
WebSocket message, many messages per `sendall`), which no SDK would do.

The codec comes from the Python SDK (sdk/python/tidegate_mux/codec.py)."""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import sys
import threading
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sdk" / "python"))

from tidegate_mux.codec import (  # noqa: E402
    FLAG_FIN,
    HEADER_LEN,
    KIND_BINARY,
    SUBPROTOCOL,
    FrameType,
    pack_header,
)

from rawws import OP_BINARY, OP_PING, OP_PONG, SMALL_RCVBUF, frame  # noqa: E402

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Mux frames per WebSocket message in a flood: ~64 KiB messages, well
# under the gateway's `mux.max_frame_bytes`.
BATCH_BYTES = 64 * 1024


def ws_ping_flood(sock: socket.socket, count: int) -> None:
    """`count` empty WebSocket pings (server frames: unmasked)."""
    _send_repeated(sock, frame(OP_PING, mask=False), count)


def mux_ping_flood(sock: socket.socket, count: int) -> None:
    """`count` empty mux PINGs, batched into binary messages."""
    _send_batched(sock, pack_header(FrameType.PING, 0, 0, 0), count)


def empty_message_flood(sock: socket.socket, session: int, count: int) -> None:
    """`count` empty MESSAGE frames (binary, FIN) for `session`."""
    unit = pack_header(FrameType.MESSAGE, FLAG_FIN | KIND_BINARY, session, 0)
    _send_batched(sock, unit, count)


def _send_repeated(sock: socket.socket, unit: bytes, count: int) -> None:
    per = max(1, (256 * 1024) // len(unit))
    chunk = unit * per
    while count >= per:
        sock.sendall(chunk)
        count -= per
    sock.sendall(unit * count)


def _send_batched(sock: socket.socket, unit: bytes, count: int) -> None:
    per = BATCH_BYTES // len(unit)
    while count > 0:
        n = min(per, count)
        sock.sendall(frame(OP_BINARY, unit * n, mask=False))
        count -= n


class HostileApp:
    """Listens on 127.0.0.1:0. On each connection from the gateway:
    `on_connect(sock)` runs once after the upgrade (a flood that needs no
    session); then OPENs are answered with ACCEPT and `on_session(sock,
    id)` runs for each; if either returns False the app stops reading that
    connection for good. Threads are daemons; `close()` ends them."""

    def __init__(
        self,
        on_connect: Callable[[socket.socket], bool] | None = None,
        on_session: Callable[[socket.socket, int], bool] | None = None,
    ) -> None:
        self.on_connect = on_connect
        self.on_session = on_session
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Inherited by accepted sockets: an app that stops reading stalls
        # the gateway's writer after a few KB.
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connected = threading.Event()
        self.sessions: list[int] = []
        self.session_opened = threading.Event()
        self.errors: list[BaseException] = []
        # Pongs the gateway sent, in order: ("ws", payload) for WebSocket
        # pongs, ("mux", body) for mux PONGs.
        self.pongs: list[tuple[str, bytes]] = []
        self._stop = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._stop.set()
        for s in [self.listener, *self._socks]:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            rest = self._upgrade(sock)
            self.connected.set()
            if self.on_connect and self.on_connect(sock) is False:
                return self._stop.wait()
            self._read_frames(sock, rest)
        except OSError:
            pass  # the gateway went away
        except BaseException as e:  # surfaced by the test
            self.errors.append(e)

    def _upgrade(self, sock: socket.socket) -> bytes:
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("gateway closed during the upgrade")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        key = ""
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        sock.sendall(
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
                f"Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
            ).encode()
        )
        return rest

    def _read_frames(self, sock: socket.socket, buf: bytes) -> None:
        """Read the gateway's WebSocket frames (masked), answer OPENs."""
        while not self._stop.is_set():
            parsed = _ws_frame(buf)
            if parsed is None:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return
                buf += chunk
                continue
            opcode, payload, used = parsed
            buf = buf[used:]
            if opcode == OP_PONG:
                self.pongs.append(("ws", payload))
            if opcode != OP_BINARY:
                continue
            for kind, session, body in _mux_frames(payload):
                if kind == FrameType.PONG:
                    self.pongs.append(("mux", body))
                if kind != FrameType.OPEN:
                    continue
                accept = b'{"headers":[]}'
                sock.sendall(frame(OP_BINARY, pack_header(FrameType.ACCEPT, 0, session, len(accept)) + accept, mask=False))
                self.sessions.append(session)
                self.session_opened.set()
                if self.on_session and self.on_session(sock, session) is False:
                    self._stop.wait()
                    return


def _ws_frame(buf: bytes) -> tuple[int, bytes, int] | None:
    """(opcode, unmasked payload, bytes used) of the first whole frame."""
    if len(buf) < 2:
        return None
    opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        (n,) = struct.unpack(">H", buf[2:4])
        at = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        (n,) = struct.unpack(">Q", buf[2:10])
        at = 10
    masked = buf[1] & 0x80
    key = buf[at : at + 4] if masked else b""
    at += 4 if masked else 0
    if len(buf) < at + n:
        return None
    payload = buf[at : at + n]
    if masked:
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return opcode, payload, at + n


def _mux_frames(msg: bytes):
    """(type, session, body) of each mux frame in a binary message."""
    at = 0
    while at + HEADER_LEN <= len(msg):
        kind, _flags, session, length = struct.unpack_from(">BBII", msg, at)
        yield kind, session, msg[at + HEADER_LEN : at + HEADER_LEN + length]
        at += HEADER_LEN + length
