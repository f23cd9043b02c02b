"""An OPEN waiting for the application's answer (docs/mux-protocol.md §4).

The gateway holds the client's upgrade request until the application
ACCEPTs (the client gets 101) or REJECTs (the client gets that HTTP status)
— so an application can refuse a client before the WebSocket exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .bodies import AcceptBody, OpenBody, RejectBody
from .codec import Close, Frame
from .errors import MuxError, SessionClosed
from .session import Session, SessionKey

if TYPE_CHECKING:
    from .connection import MuxConnection

MAX_REJECT_BODY = 64 * 1024
"""REJECT body limit of §4.3."""


class AlreadyAnswered(MuxError):
    """``accept`` or ``reject`` called twice for one OPEN."""


class Incoming:
    def __init__(self, conn: MuxConnection, session_id: int, open_body: OpenBody, resumed: bool) -> None:
        self.open = open_body
        """The OPEN body (path, query, headers, client_addr, protocols, identity)."""
        self.resumed = resumed
        """OPEN had RESUMED: the client's session existed on another
        connection, maybe another process; the application answers as to a
        reconnect of that client (§6)."""
        self.id: SessionKey = (conn.instance, session_id)
        """``(instance, session id)``: instance from ``X-Tidegate-Instance``."""
        self._conn = conn
        self._answered = False
        self.session: Session | None = None
        """The session ``accept()`` made, if any."""
        self._withdrawn: Close | None = None
        """The gateway gave up on this OPEN (CLOSE, e.g. after its open
        timeout, or the connection ended) before the answer."""

    @property
    def answered(self) -> bool:
        return self._answered

    def accept(self, protocol: str | None = None, headers: Iterable[tuple[str, str]] = ()) -> Session:
        """ACCEPT: the client gets 101 with ``protocol`` (one of
        ``open.protocols``) and ``headers``. Returns the open ``Session``.

        If the gateway withdrew the OPEN meanwhile, the returned session is
        already closed (its ``recv`` raises ``SessionClosed``), so an
        application's ``async for`` loop needs no special case.
        """
        self._answer()
        conn = self._conn
        server = conn.server
        session = Session(self.id, self.open, protocol, self.resumed, server.table, server.limits, server.resume_grace)
        body = AcceptBody(protocol, list(headers))
        if self._withdrawn is None and conn.writer.put_nowait(Frame.accept(self.id[1], body)):
            server.table.add(session)
            session._attach(conn)
        else:
            close = self._withdrawn or Close(1006, "mux connection lost before ACCEPT")
            session._mark_closed(SessionClosed(close.code or 1005, close.reason))
        self.session = session
        return session

    def reject(self, status: int, body: str = "", headers: Iterable[tuple[str, str]] = ()) -> None:
        """REJECT: the client gets HTTP ``status`` (400–599) with ``body``
        (UTF-8 text, at most 64 KiB) and ``headers``."""
        if not 400 <= status <= 599:
            raise ValueError(f"REJECT status must be 400-599, not {status}")
        if len(body.encode("utf-8")) > MAX_REJECT_BODY:
            raise ValueError("REJECT body over 64 KiB")
        self._answer()
        if self._withdrawn is None:
            self._conn.writer.put_nowait(Frame.reject(self.id[1], RejectBody(status, list(headers), body)))

    def _answer(self) -> None:
        if self._answered:
            raise AlreadyAnswered(f"OPEN {self.id} already answered")
        self._answered = True
        self._conn.pending.pop(self.id[1], None)

    def _withdraw(self, close: Close) -> None:
        self._withdrawn = close

    def __repr__(self) -> str:
        flag = " resumed" if self.resumed else ""
        return f"<Incoming {self.id[0]}/{self.id[1]} {self.open.path!r}{flag}>"
