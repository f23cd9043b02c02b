"""The wire format of ``tidegate.mux.v1`` (docs/mux-protocol.md §2).

A binary WebSocket message carries one or more frames, each a 10-byte
header (type, flags, session id, body length; ``struct`` format ``>BBII``)
and a body. This module is pure: no I/O, no asyncio. It mirrors the Rust
reference codec (``sdk/rust/src/codec.rs``) byte for byte, including which
error label a malformed message gets, so the gateway and this SDK agree on
what is a protocol error and why.
"""

from __future__ import annotations

import enum
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .bodies import GoawayBody, json_object
from .errors import (
    BadClose,
    BadFlags,
    BadPublish,
    BadSession,
    CodecError,
    TextMessage,
    TooBig,
    Truncated,
    UnknownType,
)

SUBPROTOCOL = "tidegate.mux.v1"
"""The sub-protocol a mux connection is negotiated with."""

HEADER = struct.Struct(">BBII")
"""type (u8), flags (u8), session id (u32), body length (u32), big-endian."""

HEADER_LEN = HEADER.size
assert HEADER_LEN == 10, "the mux header is 10 bytes (§2)"

MAX_CONTROL_BODY = 125
"""Largest PING / PONG body, and largest CLOSE body (as in RFC 6455)."""

DEFAULT_MAX_BODY = 16 * 1024 * 1024
"""Default limit on other bodies; the gateway's ``mux.max_frame_bytes``."""

FLAG_RESUMED = 0x01
"""OPEN: the session existed on another connection (§6)."""
FLAG_FIN = 0x01
"""MESSAGE: last fragment of a message."""
KIND_MASK = 0x06
"""MESSAGE: the kind bits."""
KIND_CONTINUATION = 0x00
KIND_TEXT = 0x02
KIND_BINARY = 0x04


class FrameType(enum.IntEnum):
    """Frame types (§2)."""

    OPEN = 0x01
    ACCEPT = 0x02
    REJECT = 0x03
    MESSAGE = 0x04
    CLOSE = 0x05
    PING = 0x06
    PONG = 0x07
    GOAWAY = 0x08
    SUBSCRIBE = 0x09
    """Extension ``fanout`` (§10): subscribe a session to a channel."""
    UNSUBSCRIBE = 0x0A
    """Extension ``fanout``: end a session's subscription."""
    PUBLISH = 0x0B
    """Extension ``fanout``: one message to every subscriber of a channel."""

    @property
    def is_connection_level(self) -> bool:
        """PING, PONG and GOAWAY concern the connection (session id 0)."""
        return self in (FrameType.PING, FrameType.PONG, FrameType.GOAWAY)

    @property
    def any_session(self) -> bool:
        """PUBLISH names an "except" session, which may be 0 (nobody)."""
        return self is FrameType.PUBLISH

    @property
    def is_fanout(self) -> bool:
        """Sent only on a connection that negotiated ``fanout``."""
        return self in (FrameType.SUBSCRIBE, FrameType.UNSUBSCRIBE, FrameType.PUBLISH)

    @property
    def from_gateway(self) -> bool:
        """May the gateway send this type?"""
        return self not in (FrameType.ACCEPT, FrameType.REJECT, FrameType.GOAWAY) and not self.is_fanout

    @property
    def from_app(self) -> bool:
        """May the application send this type?"""
        return self is not FrameType.OPEN

    @property
    def allowed_flags(self) -> int:
        if self is FrameType.OPEN:
            return FLAG_RESUMED
        if self is FrameType.MESSAGE:
            return FLAG_FIN | KIND_MASK
        if self is FrameType.PUBLISH:
            return KIND_MASK
        return 0


_TYPES = {t.value: t for t in FrameType}


def pack_header(kind: int, flags: int, session: int, length: int) -> bytes:
    """The 10-byte header of a frame with a body of ``length`` bytes."""
    return HEADER.pack(kind, flags, session, length)


def unpack_header(buf: bytes | memoryview, offset: int = 0) -> tuple[int, int, int, int]:
    """Raw ``(type, flags, session, length)`` at ``offset``; no validation.

    Raises ``Truncated`` when fewer than 10 bytes are left.
    """
    if len(buf) - offset < HEADER_LEN:
        raise Truncated()
    return HEADER.unpack_from(buf, offset)


def check_header(kind: FrameType, flags: int, session: int, length: int, max_body: int) -> None:
    """Validate a header on its own, before any body is sliced (the cheap
    first step of the two-step parse). Same order of checks as the Rust
    codec, so the same bytes get the same label."""
    if flags & ~kind.allowed_flags & 0xFF or (
        kind is FrameType.MESSAGE and flags & KIND_MASK == KIND_MASK
    ):
        raise BadFlags(kind, flags)
    if kind is FrameType.PUBLISH and flags not in (KIND_TEXT, KIND_BINARY):
        # A published message is one whole text or binary message.
        raise BadFlags(kind, flags)
    if not kind.any_session and kind.is_connection_level != (session == 0):
        raise BadSession(kind, session)
    if kind in (FrameType.PING, FrameType.PONG, FrameType.CLOSE):
        limit = MAX_CONTROL_BODY
    else:
        limit = max_body
    if length > limit:
        raise TooBig(kind, length)


@dataclass(frozen=True, slots=True)
class Frame:
    """One mux frame. ``body`` is the payload as-is."""

    type: FrameType
    flags: int
    session: int
    body: bytes = b""

    # -- constructors (the only ways the SDK builds frames) -------------

    @classmethod
    def open(cls, session: int, resumed: bool, body: object) -> Frame:
        """OPEN; ``body`` is an ``OpenBody`` (or anything with ``to_json``)."""
        return cls(FrameType.OPEN, FLAG_RESUMED if resumed else 0, session, body.to_json())  # type: ignore[attr-defined]

    @classmethod
    def accept(cls, session: int, body: object) -> Frame:
        return cls(FrameType.ACCEPT, 0, session, body.to_json())  # type: ignore[attr-defined]

    @classmethod
    def reject(cls, session: int, body: object) -> Frame:
        return cls(FrameType.REJECT, 0, session, body.to_json())  # type: ignore[attr-defined]

    @classmethod
    def message(cls, session: int, kind: int, fin: bool, payload: bytes) -> Frame:
        """``kind``: ``KIND_TEXT``, ``KIND_BINARY`` or ``KIND_CONTINUATION``."""
        return cls(FrameType.MESSAGE, (kind & KIND_MASK) | (FLAG_FIN if fin else 0), session, bytes(payload))

    @classmethod
    def close(cls, session: int, close: Close) -> Frame:
        return cls(FrameType.CLOSE, 0, session, close.encode())

    @classmethod
    def ping(cls, body: bytes = b"") -> Frame:
        return cls(FrameType.PING, 0, 0, bytes(body))

    @classmethod
    def pong(cls, body: bytes = b"") -> Frame:
        return cls(FrameType.PONG, 0, 0, bytes(body))

    @classmethod
    def goaway(cls, reason: str = "") -> Frame:
        """GOAWAY; an empty reason gives an empty body, as in Rust."""
        body = GoawayBody(reason).to_json() if reason else b""
        return cls(FrameType.GOAWAY, 0, 0, body)

    @classmethod
    def subscribe(cls, session: int, channel: str) -> Frame:
        """SUBSCRIBE ``session`` to ``channel`` (extension ``fanout``)."""
        return cls(FrameType.SUBSCRIBE, 0, session, channel_bytes(channel))

    @classmethod
    def unsubscribe(cls, session: int, channel: str) -> Frame:
        return cls(FrameType.UNSUBSCRIBE, 0, session, channel_bytes(channel))

    @classmethod
    def publish(cls, channel: str, kind: int, payload: bytes, except_session: int = 0) -> Frame:
        """PUBLISH ``payload`` (``KIND_TEXT`` or ``KIND_BINARY``) to every
        subscriber of ``channel`` but ``except_session`` (0: everyone)."""
        if kind not in (KIND_TEXT, KIND_BINARY):
            raise ValueError("a published message is text or binary")
        name = channel_bytes(channel)
        return cls(FrameType.PUBLISH, kind, except_session, struct.pack(">H", len(name)) + name + bytes(payload))

    # -- wire ------------------------------------------------------------

    def header(self) -> bytes:
        return pack_header(self.type, self.flags, self.session, len(self.body))

    def encode(self) -> bytes:
        """Header + body, as they go on the wire."""
        return self.header() + self.body

    # -- accessors ---------------------------------------------------------

    @property
    def fin(self) -> bool:
        """MESSAGE: the FIN bit."""
        return bool(self.flags & FLAG_FIN)

    @property
    def message_kind(self) -> int:
        """MESSAGE: ``KIND_TEXT``, ``KIND_BINARY`` or ``KIND_CONTINUATION``."""
        return self.flags & KIND_MASK

    @property
    def resumed(self) -> bool:
        """OPEN: the RESUMED flag."""
        return self.type is FrameType.OPEN and bool(self.flags & FLAG_RESUMED)

    def published(self) -> tuple[str, bytes]:
        """PUBLISH: ``(channel, payload)``; raises ``BadPublish`` when the
        body is shorter than its channel length says."""
        if len(self.body) < 2:
            raise BadPublish("body shorter than its length field")
        (n,) = struct.unpack_from(">H", self.body)
        if len(self.body) < 2 + n:
            raise BadPublish("channel runs past the body")
        return bytes(self.body[2 : 2 + n]).decode("utf-8", "replace"), bytes(self.body[2 + n :])

    def json(self) -> dict:
        """The body as a JSON object (empty body reads as ``{}``); raises
        ``BadJson``."""
        return json_object(self.type, self.body)


def decode(
    msg: bytes | bytearray | memoryview | str, max_body: int = DEFAULT_MAX_BODY, fanout: bool = False
) -> Iterator[Frame]:
    """Frames of one WebSocket message, in order.

    A generator: frames before a malformed one are yielded, then the
    ``CodecError`` is raised (the connection is then closed, so nothing after
    it matters). A ``str`` (a text WebSocket message) raises ``TextMessage``;
    an empty message raises ``Truncated``. ``max_body`` limits OPEN / ACCEPT /
    REJECT / MESSAGE / GOAWAY bodies. ``fanout``: the connection negotiated
    that extension (§10); without it SUBSCRIBE, UNSUBSCRIBE and PUBLISH are
    ``unknown_type`` like any type v1 does not define.
    """
    if isinstance(msg, str):
        raise TextMessage()
    view = memoryview(msg)
    if len(view) == 0:
        raise Truncated()
    pos = 0
    while pos < len(view):
        raw_type, flags, session, length = unpack_header(view, pos)
        kind = _TYPES.get(raw_type)
        if kind is None or (kind.is_fanout and not fanout):
            raise UnknownType(raw_type)
        check_header(kind, flags, session, length, max_body)
        start = pos + HEADER_LEN
        end = start + length
        if len(view) < end:
            raise Truncated()
        yield Frame(kind, flags, session, bytes(view[start:end]))
        pos = end


def decode_all(
    msg: bytes | bytearray | memoryview | str, max_body: int = DEFAULT_MAX_BODY, fanout: bool = False
) -> list[Frame]:
    """All frames of one message, or the first ``CodecError``."""
    return list(decode(msg, max_body, fanout))


def encode_batch(frames: Iterable[Frame]) -> bytes:
    """Frames back to back: the payload of one binary WebSocket message."""
    return b"".join(f.encode() for f in frames)


MAX_CHANNEL = 128
"""Longest channel name in bytes (§10)."""

_CHANNEL = re.compile(r"[A-Za-z0-9._\-:@/]{1,%d}" % MAX_CHANNEL)


def valid_channel(name: str) -> bool:
    """1–128 bytes of ``A–Z a–z 0–9 . _ - : @ /`` (§10). The gateway drops
    a SUBSCRIBE or PUBLISH with any other name, so the SDK checks first."""
    return _CHANNEL.fullmatch(name) is not None


def channel_bytes(name: str) -> bytes:
    """``name`` as it goes on the wire; ``ValueError`` for an invalid one."""
    if not valid_channel(name):
        raise ValueError(f"invalid channel name {name!r}: 1-128 of A-Z a-z 0-9 . _ - : @ /")
    return name.encode("ascii")


def valid_code(code: int) -> bool:
    """Close codes a CLOSE may carry: those an endpoint may send (RFC 6455
    §7.4), plus 1006 (gateway → app only: the client vanished)."""
    return 1000 <= code <= 1003 or 1006 <= code <= 1014 or 3000 <= code <= 4999


@dataclass(frozen=True, slots=True)
class Close:
    """A CLOSE body: an optional code (``None`` = no status, an empty body)
    and a reason."""

    code: int | None = None
    reason: str = ""

    def encode(self) -> bytes:
        """Code + reason, the reason cut to 123 bytes on a character
        boundary (a CLOSE body is at most 125 bytes)."""
        if self.code is None:
            return b""
        reason = self.reason.encode("utf-8")
        if len(reason) > MAX_CONTROL_BODY - 2:
            reason = reason[: MAX_CONTROL_BODY - 2].decode("utf-8", errors="ignore").encode("utf-8")
        return struct.pack(">H", self.code) + reason

    @classmethod
    def decode(cls, body: bytes) -> Close:
        """Parse and check a CLOSE body (§2); raises ``BadClose``."""
        if len(body) == 0:
            return cls()
        if len(body) == 1:
            raise BadClose("one-byte body")
        if len(body) > MAX_CONTROL_BODY:
            raise BadClose("body over 125 bytes")
        (code,) = struct.unpack_from(">H", body)
        if not valid_code(code):
            raise BadClose("invalid close code")
        try:
            reason = bytes(body[2:]).decode("utf-8")
        except UnicodeDecodeError:
            raise BadClose("reason not UTF-8") from None
        return cls(code, reason)
