"""The process-wide table of open sessions, by ``(instance, id)``.

It is what makes resume work (docs/mux-protocol.md §6): when the gateway
re-opens a session with OPEN + RESUMED on another mux connection, possibly
to another ``MuxServer`` of the same process, the reader finds the live
``Session`` here and moves it instead of surfacing a new ``Incoming``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Session, SessionKey


class SessionTable:
    def __init__(self) -> None:
        self._sessions: dict[SessionKey, Session] = {}

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


PROCESS_TABLE = SessionTable()
"""The table every ``MuxServer`` uses unless given its own."""
