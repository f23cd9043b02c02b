"""Rooms: a named set of sessions and a broadcast that never waits; and
publishing to a channel (extension ``fanout``, docs/mux-protocol.md §10).

With ``fanout`` negotiated, a room is a gateway channel named like the
room: ``join`` subscribes the session (one SUBSCRIBE), ``leave``
unsubscribes it, and ``broadcast`` is one PUBLISH per gateway instance,
``exclude`` as its "except" session — the gateway encodes the message once
and delivers it to every subscriber. The channel is the gateway's, so a
broadcast also reaches sessions another application instance subscribed
to the same name.

Without it (a gateway that does not offer it, ``MuxServer(fanout=False)``,
or a room name that is not a valid channel name) ``broadcast`` encodes the
message once and hands it to every member with ``Session.send_nowait``, so
a member that is being resumed or whose connection is backed up costs its
own backlog, never the rest of the room (docs/design/mux-write-path.md).
Application code is the same either way. Closed members leave by
themselves.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .codec import Frame, valid_channel
from .fanout import publish_connections, put_publish
from .session import Session, SendResult, SessionKey, encode_message

if TYPE_CHECKING:
    from .table import SessionTable


@dataclass
class Delivery:
    """How one ``broadcast`` (or ``publish``) went, counted per
    ``SendResult``. Members reached through a PUBLISH count as ``sent``:
    from there the gateway owns the delivery."""

    sent: int = 0
    queued: int = 0
    resuming: int = 0
    closed: int = 0
    full: int = 0
    published: int = 0
    """PUBLISH frames queued (one per gateway instance reached)."""

    def count(self, result: SendResult, n: int = 1) -> None:
        setattr(self, result.value, getattr(self, result.value) + n)

    @property
    def accepted(self) -> int:
        """Members that got the message or will (sent + queued + resuming)."""
        return self.sent + self.queued + self.resuming


class Room:
    def __init__(self, name: str) -> None:
        self.name = name
        self._members: dict[SessionKey, Session] = {}
        self._channel = valid_channel(name)
        """The name can be a gateway channel; otherwise always per-session sends."""

    def join(self, session: Session) -> None:
        """Add ``session`` (again: no effect). A resumed session that is a
        new object in this process replaces the old one with its id."""
        self._members[session.id] = session
        if self._channel:
            session.subscribe(self.name)

    def leave(self, session: Session) -> None:
        if self._members.get(session.id) is session:
            del self._members[session.id]
            if self._channel:
                session.unsubscribe(self.name)

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
        # Members the gateway reaches by a PUBLISH, per gateway instance.
        carried: dict[str, list[Session]] = {}
        direct: list[Session] = []
        for key, member in list(self._members.items()):
            if member.closed is not None:
                report.closed += 1
                del self._members[key]
            elif self._channel and member.fanout and self.name in member._channels:
                carried.setdefault(key[0], []).append(member)
            elif member is not exclude:
                direct.append(member)
        table = _table_of(carried)
        conns = publish_connections(table, carried) if table is not None else {}
        for instance, members in carried.items():
            conn = conns.get(instance)
            ex = exclude.id[1] if exclude is not None and exclude.id[0] == instance else 0
            if conn is not None and put_publish(conn, Frame.publish(self.name, kind, payload, ex)):
                report.published += 1
                report.sent += sum(1 for m in members if m is not exclude)
            else:
                # No connection to that gateway can take it now: the members
                # get per-session sends (held for the resume, or dropped).
                direct.extend(m for m in members if m is not exclude)
        for member in direct:
            report.count(member._send_encoded(payload, kind))
        return report

    def __repr__(self) -> str:
        return f"<Room {self.name!r} members={len(self._members)}>"


def _table_of(carried: dict[str, list[Session]]) -> SessionTable | None:
    for members in carried.values():
        return members[0]._table
    return None


def publish_nowait(
    table: SessionTable,
    channel: str,
    message: str | bytes | bytearray | memoryview,
    exclude: Session | None = None,
) -> Delivery:
    """One PUBLISH per gateway instance with a ``fanout`` connection;
    sessions of this process subscribed to ``channel`` whose gateway has
    none get per-session sends instead (``send_nowait``). ``sent`` counts
    only those; ``published`` the PUBLISH frames."""
    if not valid_channel(channel):
        raise ValueError(f"invalid channel name {channel!r}")
    payload, kind = encode_message(message)
    report = Delivery()
    covered = set()
    for instance, conn in publish_connections(table).items():
        ex = exclude.id[1] if exclude is not None and exclude.id[0] == instance else 0
        if put_publish(conn, Frame.publish(channel, kind, payload, ex)):
            report.published += 1
            covered.add(instance)
    if covered and covered.issuperset(table.instances()):
        return report
    # Slow path, only without fan-out somewhere: find the subscribers.
    for s in table.sessions():
        if s.id[0] not in covered and channel in s._channels and s is not exclude:
            report.count(s._send_encoded(payload, kind))
    return report
