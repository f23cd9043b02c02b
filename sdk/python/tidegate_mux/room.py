"""Rooms: a named set of sessions and a broadcast that never waits.

``Room.broadcast`` encodes the message once and hands it to every member
with ``Session.send_nowait``, so a member that is being resumed or whose
connection is backed up costs its own backlog, never the rest of the room
(docs/design/mux-write-path.md). Members that are closed leave by
themselves.

This is the API gateway fan-out (issue #17) will carry: once the gateway
offers it, ``join`` becomes a SUBSCRIBE of the session to the channel
``name`` and ``broadcast`` one PUBLISH, so application code written
against ``Room`` stays as it is.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .session import Session, SendResult, SessionKey, encode_message


@dataclass
class Delivery:
    """How one ``broadcast`` went, counted per ``SendResult``."""

    sent: int = 0
    queued: int = 0
    resuming: int = 0
    closed: int = 0
    full: int = 0

    def count(self, result: SendResult) -> None:
        setattr(self, result.value, getattr(self, result.value) + 1)

    @property
    def accepted(self) -> int:
        """Members that got the message or will (sent + queued + resuming)."""
        return self.sent + self.queued + self.resuming


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self._members: dict[SessionKey, Session] = {}

    def join(self, session: Session) -> None:
        """Add ``session`` (again: no effect). A resumed session that is a
        new object in this process replaces the old one with its id."""
        self._members[session.id] = session

    def leave(self, session: Session) -> None:
        if self._members.get(session.id) is session:
            del self._members[session.id]

    def __contains__(self, session: object) -> bool:
        return isinstance(session, Session) and self._members.get(session.id) is session

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._members.values()))

    def broadcast(
        self,
        message: str | bytes | bytearray | memoryview,
        exclude: Session | None = None,
    ) -> Delivery:
        """Send ``message`` to every member but ``exclude``; never waits.
        Closed members are removed."""
        payload, kind = encode_message(message)
        report = Delivery()
        for key, member in list(self._members.items()):
            if member is exclude:
                continue
            result = member._send_encoded(payload, kind)
            report.count(result)
            if result is SendResult.CLOSED and self._members.get(key) is member:
                del self._members[key]
        return report

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self._members)}>"
