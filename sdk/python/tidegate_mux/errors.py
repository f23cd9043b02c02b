"""Typed errors of the SDK.

Protocol errors (``CodecError`` and subclasses) carry the bounded label of
docs/mux-protocol.md §7; the label is the reason of the WebSocket Close
1002 with which a mux connection is closed, so the gateway's logs and this
SDK's name the same thing. ``SessionClosed`` is how an application learns
that one session ended.
"""

from __future__ import annotations


class MuxError(Exception):
    """Base of every error this package raises."""


def _name(kind: object) -> str:
    """A frame type's name (``FrameType.OPEN`` → ``OPEN``) for messages."""
    return str(getattr(kind, "name", kind))


class CodecError(MuxError):
    """Bytes that are not valid ``tidegate.mux.v1`` (§7). Fatal for the
    whole mux connection: it is closed with 1002 and ``label`` as reason."""

    label = "protocol_error"
    close_code = 1002


class TextMessage(CodecError):
    label = "text_message"

    def __init__(self) -> None:
        super().__init__("text WebSocket message on a mux connection")


class Truncated(CodecError):
    label = "truncated"

    def __init__(self) -> None:
        super().__init__("message ends inside a mux frame")


class UnknownType(CodecError):
    label = "unknown_type"

    def __init__(self, raw: int) -> None:
        super().__init__(f"unknown frame type {raw:#04x}")
        self.raw = raw


class BadFlags(CodecError):
    label = "bad_flags"

    def __init__(self, kind: object, flags: int) -> None:
        super().__init__(f"undefined flag bits {flags:#04x} on {_name(kind)}")
        self.flags = flags


class BadSession(CodecError):
    label = "bad_session"

    def __init__(self, kind: object, session: int) -> None:
        super().__init__(f"session id {session} not allowed on {_name(kind)}")
        self.session = session


class WrongDirection(CodecError):
    label = "wrong_direction"

    def __init__(self, kind: object) -> None:
        super().__init__(f"{_name(kind)} sent in the wrong direction")


class TooBig(CodecError):
    label = "too_big"

    def __init__(self, kind: object, length: int) -> None:
        super().__init__(f"{_name(kind)} body of {length} bytes is over the limit")
        self.length = length


class BadJson(CodecError):
    label = "bad_json"

    def __init__(self, kind: object, why: str) -> None:
        super().__init__(f"bad JSON body on {_name(kind)}: {why}")


class BadClose(CodecError):
    label = "bad_close"

    def __init__(self, why: str) -> None:
        super().__init__(f"bad CLOSE body: {why}")


class BadPublish(CodecError):
    """A PUBLISH body shorter than its channel length says (§10)."""

    label = "bad_publish"

    def __init__(self, why: str) -> None:
        super().__init__(f"bad PUBLISH body: {why}")


class SessionClosed(MuxError):
    """The session is finished: raised by ``Session.recv`` / ``Session.send``
    once it is closed, whoever closed it.

    ``code`` is the WebSocket close code (1005 when the CLOSE had no status,
    1006 when the client vanished or no connection resumed the session in
    time); ``by_app`` says whether this side closed it.
    """

    def __init__(self, code: int, reason: str = "", by_app: bool = False) -> None:
        super().__init__(f"session closed: {code} {reason!r}")
        self.code = code
        self.reason = reason
        self.by_app = by_app
