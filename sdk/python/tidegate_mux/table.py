"""The process-wide table of open sessions, by ``(instance, id)``.

It is what makes resume work (docs/mux-protocol.md §6): when the gateway
re-opens a session with OPEN + RESUMED on another mux connection, possibly
to another ``MuxServer`` of the same process, the reader finds the live
``Session`` here and moves it instead of surfacing a new ``Incoming``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .connection import MuxConnection
    from .session import Session, SessionKey


class SessionTable:
    def __init__(self) -> None:
        self._sessions: dict[SessionKey, Session] = {}
        self._conns: dict[str, list[MuxConnection]] = {}
        """Open mux connections by gateway instance, oldest first: where a
        PUBLISH for that instance's subscribers goes (``fanout``)."""

    def get(self, key: SessionKey) -> Session | None:
        return self._sessions.get(key)

    def add(self, session: Session) -> None:
        self._sessions[session.id] = session

    def remove(self, session: Session) -> None:
        """Remove ``session`` (only that object: a newer one with the same
        key stays)."""
        if self._sessions.get(session.id) is session:
            del self._sessions[session.id]

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, key: object) -> bool:
        return key in self._sessions

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    # -- connections, for fan-out -------------------------------------------

    def add_connection(self, conn: MuxConnection) -> None:
        self._conns.setdefault(conn.instance, []).append(conn)

    def remove_connection(self, conn: MuxConnection) -> None:
        conns = self._conns.get(conn.instance)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.instance]

    def instances(self) -> list[str]:
        """Gateway instances with an open connection."""
        return list(self._conns)

    def fanout_connection(self, instance: str) -> MuxConnection | None:
        """The oldest open connection of ``instance`` with ``fanout``."""
        for conn in self._conns.get(instance, ()):
            if conn.fanout and not conn.writer.closed:
                return conn
        return None


PROCESS_TABLE = SessionTable()
"""The table every ``MuxServer`` uses unless given its own."""
