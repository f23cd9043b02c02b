"""One client's WebSocket as the application sees it (docs/mux-protocol.md §5).

A ``Session`` outlives the mux connection it was opened on: when that
connection ends it waits up to ``resume_grace`` for the gateway to re-open it
(OPEN + RESUMED) on another connection of this process, and then simply
continues there (§6). The application's loop over ``recv()`` never notices.

Closing style: ``recv()`` returns whole messages (``str`` for text, ``bytes``
for binary) and raises ``SessionClosed(code, reason)`` once the session is
finished and every message received before the close has been read.
``async for msg in session`` ends quietly at that point instead.

Slow-consumer policy: complete messages wait in a per-session inbox bounded
by ``Limits.session_queue_bytes``. The connection's reader never waits for
one session (that would stall every other session on the connection), so
when a message would push the inbox over the bound, the session is closed:
CLOSE 1008 "slow consumer" goes to the gateway (the client gets 1008), the
unread messages are dropped, and ``recv()`` raises ``SessionClosed(1008)``.
One message larger than the bound is still delivered when the inbox is empty.

Sending: ``await send()`` waits while the connection's queue is full and
while the session is being resumed (up to the resume grace) — right for a
reply, wrong for a broadcast loop, where one resuming member would stall
the room. ``send_nowait()`` never waits: it answers a ``SendResult``
(``sent``, ``queued``, ``resuming``, ``closed``, ``full``; the words
fan-out's delivery reports use too, docs/design/mux-write-path.md) and
keeps what it could not send yet in a small per-session backlog, bounded
by ``Limits.send_backlog_bytes``, that leaves in order.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from .bodies import AcceptBody, OpenBody
from .codec import KIND_BINARY, KIND_CONTINUATION, KIND_TEXT, Close, Frame, channel_bytes, valid_code
from .errors import SessionClosed
from .limits import Limits
from .writer import ConnectionGone

if TYPE_CHECKING:
    from .connection import MuxConnection
    from .table import SessionTable

log = logging.getLogger(__name__)

SessionKey = tuple[str, int]
"""``(instance, session id)``: unique across the gateway instances (§3)."""


class SendResult(str, enum.Enum):
    """What ``Session.send_nowait`` did with a message."""

    SENT = "sent"
    """Queued on the session's mux connection now."""
    QUEUED = "queued"
    """Held in the session's backlog behind earlier data (the connection's
    queue is full); it leaves in order when there is room."""
    RESUMING = "resuming"
    """The session is between connections; held in the backlog and sent
    after the gateway resumes it (dropped if it never does)."""
    CLOSED = "closed"
    """The session is over; nothing was sent."""
    FULL = "full"
    """The backlog is at ``Limits.send_backlog_bytes``; the message was
    dropped."""

    @property
    def accepted(self) -> bool:
        """The message was sent or will be (sent, queued, resuming)."""
        return self in (SendResult.SENT, SendResult.QUEUED, SendResult.RESUMING)


def encode_message(message: str | bytes | bytearray | memoryview) -> tuple[bytes, int]:
    """``str`` → UTF-8 text, bytes-like → binary: ``(payload, kind)``."""
    if isinstance(message, str):
        return message.encode("utf-8"), KIND_TEXT
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message), KIND_BINARY
    raise TypeError(f"send() takes str or bytes, not {type(message).__name__}")


def app_may_send(code: int) -> bool:
    """Codes an application may put in a CLOSE (§2): not 1006, which only
    the gateway uses."""
    return valid_code(code) and code != 1006


class Session:
    def __init__(
        self,
        key: SessionKey,
        open_body: OpenBody,
        protocol: str | None,
        resumed: bool,
        table: SessionTable,
        limits: Limits,
        resume_grace: float,
    ) -> None:
        self.id = key
        """``(instance, session id)``, stable across resumes."""
        self.open = open_body
        """The OPEN body: path, query, headers, identity of the client."""
        self.protocol = protocol
        """The sub-protocol the application selected in ACCEPT."""
        self.resumed = resumed
        """True when this process first saw the session as a resumed OPEN."""
        self.data: Any = None
        """Yours: whatever the application keeps per session (user, room,
        counters). The SDK never touches it. After a restart the resumed
        session is a new object here: rebuild it from ``open`` (README)."""
        self._table = table
        self._limits = limits
        self._grace = resume_grace
        self._conn: MuxConnection | None = None
        """The connection frames go out on; ``None`` while waiting for a resume."""
        self._conns: set[MuxConnection] = set()
        """Every connection whose session map holds us (the current one, and
        an old one still delivering after a GOAWAY), to be removed on close."""
        self._waiters: list[asyncio.Future[None]] | None = None
        """Callers of ``recv`` / ``send`` waiting for something to change
        (a message, an attach, the close); each has its own future, made
        only while it waits. Three ``asyncio.Event``s per session cost
        about 2 KB (each holds a deque of waiters); this costs nothing
        while no one waits (issue #20: small per-session state)."""
        self._inbox: deque[tuple[str | bytes, int]] | None = None
        """Complete messages not yet read, with their size in bytes; made
        at the first message, dropped again when emptied."""
        self._inbox_bytes = 0
        self._partial: bytearray | None = None
        """Fragments of the message being assembled."""
        self._partial_kind = KIND_CONTINUATION
        self._closed: SessionClosed | None = None
        self._close_on_resume: Close | None = None
        """The app closed while detached: answer the resume with ACCEPT + CLOSE."""
        self._grace_timer: asyncio.TimerHandle | None = None
        self._send_lock = asyncio.Lock()
        """One message at a time, so fragments of two sends never interleave."""
        self._backlog: deque[tuple[list[Frame], int]] | None = None
        """``send_nowait`` messages (frames, payload size) waiting for room
        or for the resume; made at the first one (most sessions never
        need it)."""
        self._backlog_bytes = 0
        self._backlog_task: asyncio.Task[None] | None = None
        """Sends the backlog in order; runs only while it is not empty."""
        self._channels: set[str] = set()
        """Channels ``subscribe`` added (extension ``fanout``); the gateway
        keeps them across a resume, so they stay here too."""
        self._channel_ops: dict[str, bool] | None = None
        """Subscription changes made while detached (channel → subscribed),
        sent on the connection the session is resumed on."""
        self._fanout = False
        """The session's connection (the last one, while detached)
        negotiated ``fanout``."""

    # ------------------------------------------------------------- app API

    @property
    def closed(self) -> SessionClosed | None:
        """``None`` while open, else the close (code, reason)."""
        return self._closed

    async def recv(self) -> str | bytes:
        """The next whole message; raises ``SessionClosed`` when finished."""
        while True:
            inbox = self._inbox
            if inbox:
                msg, size = inbox.popleft()
                self._inbox_bytes -= size
                if not inbox:
                    self._inbox = None
                return msg
            if self._closed is not None:
                raise self._closed
            await self._wait()

    def __aiter__(self) -> Session:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.recv()
        except SessionClosed:
            raise StopAsyncIteration from None

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send one message (``str`` → text, bytes-like → binary), split into
        MESSAGE fragments of at most ``Limits.fragment_bytes``. Waits while
        the connection's queue is full, and while the session is waiting to
        be resumed (up to the resume grace: use ``send_nowait`` where that
        must not hold anything else up); raises ``SessionClosed`` once the
        session is closed."""
        payload, kind = encode_message(message)
        frames = self._fragments(payload, kind)
        async with self._send_lock:
            await self._put(frames)

    def send_nowait(self, message: str | bytes | bytearray | memoryview) -> SendResult:
        """Send one message without waiting; see ``SendResult``. Messages of
        ``send_nowait`` leave in the order they were given."""
        payload, kind = encode_message(message)
        return self._send_encoded(payload, kind)

    def _send_encoded(self, payload: bytes, kind: int) -> SendResult:
        if self._closed is not None:
            return SendResult.CLOSED
        frames = self._fragments(payload, kind)
        conn = self._conn
        idle = not self._backlog and not self._send_lock.locked()
        if idle and conn is not None and conn.writer.has_room():
            conn.writer.put_nowait(*frames)
            return SendResult.SENT
        if self._backlog and self._backlog_bytes + len(payload) > self._limits.send_backlog_bytes:
            return SendResult.FULL
        if self._backlog is None:
            self._backlog = deque()
        self._backlog.append((frames, len(payload)))
        self._backlog_bytes += len(payload)
        if self._backlog_task is None:
            self._backlog_task = asyncio.create_task(self._send_backlog(), name=f"tidegate-mux backlog {self.id}")
        return SendResult.RESUMING if conn is None else SendResult.QUEUED

    async def _send_backlog(self) -> None:
        try:
            async with self._send_lock:
                while self._backlog:
                    frames, size = self._backlog[0]
                    await self._put(frames)
                    self._backlog.popleft()
                    self._backlog_bytes -= size
        except SessionClosed:
            pass
        finally:
            self._backlog = None
            self._backlog_bytes = 0
            self._backlog_task = None

    async def _put(self, frames: list[Frame]) -> None:
        """Queue one message's frames on the current connection, waiting for
        room or for a resume. Holds ``_send_lock`` (the caller's)."""
        while True:
            if self._closed is not None:
                raise self._closed
            conn = self._conn
            if conn is None:
                await self._wait()
                continue
            try:
                await conn.writer.put(frames)
                return
            except ConnectionGone:
                # Lost with the connection; wait for the resume (the
                # reader may not have detached us yet: then wait until it
                # has, or until the close).
                while self._conn is conn and self._closed is None:
                    await self._wait()

    # ------------------------------------------------ fan-out (§10)

    @property
    def fanout(self) -> bool:
        """The gateway carrying this session negotiated extension ``fanout``:
        its subscriptions are the gateway's, and a PUBLISH reaches it."""
        return self._fanout

    @property
    def channels(self) -> frozenset[str]:
        """The channels this session is subscribed to."""
        return frozenset(self._channels)

    def subscribe(self, channel: str) -> bool:
        """Subscribe the session to ``channel`` at the gateway (one SUBSCRIBE,
        queued without waiting like ``send_nowait``; again: no effect). While
        the session is being resumed the change is sent after the resume.
        True when the gateway carries the subscription (``fanout``
        negotiated); False when it does not, and only per-session sends
        (``Room``'s fallback) reach the session. ``ValueError`` for an
        invalid name (1-128 of ``A-Z a-z 0-9 . _ - : @ /``)."""
        channel_bytes(channel)
        if self._closed is None and channel not in self._channels:
            self._channels.add(channel)
            self._channel_op(channel, True)
        return self._fanout and self._closed is None

    def unsubscribe(self, channel: str) -> None:
        """End the subscription (one UNSUBSCRIBE; unknown: no effect). A
        session's subscriptions end with it; no need to unsubscribe a
        closing session."""
        if channel in self._channels:
            self._channels.discard(channel)
            if self._closed is None:
                self._channel_op(channel, False)

    def _channel_op(self, channel: str, subscribe: bool) -> None:
        conn = self._conn
        if conn is not None and conn.fanout:
            sid = self.id[1]
            frame = Frame.subscribe(sid, channel) if subscribe else Frame.unsubscribe(sid, channel)
            if conn.writer.put_nowait(frame):
                return
            # The connection is gone and its reader has not detached us
            # yet: the change goes out after the resume instead.
        elif conn is not None:
            return  # no fanout: the subscription is the application's own
        if self._channel_ops is None:
            self._channel_ops = {}
        self._channel_ops[channel] = subscribe

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the session; the client gets the same code and reason. A
        no-op when already closed. Messages ``send_nowait`` accepted go
        first: this waits for them like ``send`` would (while resuming, at
        most the resume grace)."""
        if not app_may_send(code):
            raise ValueError(f"close code {code} may not be sent by an application")
        if self._closed is not None:
            return
        backlog = self._backlog_task
        if backlog is not None:
            # What send_nowait accepted goes before the CLOSE.
            await asyncio.wait({backlog})
            if self._closed is not None:
                return
        close = Close(code, reason)
        self._mark_closed(SessionClosed(code, reason, by_app=True))
        conn = self._conn
        if conn is not None and conn.writer.put_nowait(Frame.close(self.id[1], close)):
            self._forget()
        else:
            # Detached: keep the table entry until the resume (answered with
            # ACCEPT + CLOSE) or the end of the grace period.
            self._close_on_resume = close

    def __repr__(self) -> str:
        state = "open" if self._closed is None else f"closed {self._closed.code}"
        return f"<Session {self.id[0]}/{self.id[1]} {self.open.path!r} {state}>"

    # ------------------------------------------------- called by the reader

    def _on_message(self, frame: Frame) -> None:
        """A MESSAGE fragment from the gateway; never blocks."""
        if self._closed is not None:
            return
        kind = frame.message_kind
        if kind == KIND_CONTINUATION:
            if self._partial is None:
                return self._fail(1002, "continuation without a message")
        elif self._partial is not None:
            return self._fail(1002, "new message inside a fragmented one")
        elif frame.fin:
            return self._deliver(kind, frame.body)
        else:
            self._partial, self._partial_kind = bytearray(), kind
        self._partial += frame.body
        if len(self._partial) > self._limits.max_message_bytes:
            return self._fail(1009, "message too big")
        if frame.fin:
            data, self._partial = bytes(self._partial), None
            self._deliver(self._partial_kind, data)

    def _deliver(self, kind: int, data: bytes) -> None:
        if self._inbox and self._inbox_bytes + len(data) > self._limits.session_queue_bytes:
            log.warning("session %s: inbox over %d bytes, closing 1008", self.id, self._limits.session_queue_bytes)
            return self._fail(1008, "slow consumer")
        if kind == KIND_TEXT:
            try:
                msg: str | bytes = data.decode("utf-8")
            except UnicodeDecodeError:
                return self._fail(1007, "invalid UTF-8")
        else:
            msg = data
        if self._inbox is None:
            self._inbox = deque()
        self._inbox.append((msg, len(data)))
        self._inbox_bytes += len(data)
        self._wake()

    def _on_close(self, close: Close) -> None:
        """CLOSE from the gateway: the client closed or went away."""
        self._mark_closed(SessionClosed(1005 if close.code is None else close.code, close.reason))
        self._forget()

    def _attach(self, conn: MuxConnection) -> None:
        self._conn = conn
        self._fanout = conn.fanout
        self._conns.add(conn)
        conn.sessions[self.id[1]] = self
        self._wake()
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    def _resume(self, conn: MuxConnection) -> None:
        """A RESUMED OPEN for us arrived on ``conn``: ACCEPT and carry on
        there (the gateway ignores ACCEPT's fields on a resume, §6)."""
        self._attach(conn)
        conn.writer.put_nowait(Frame.accept(self.id[1], AcceptBody()))
        if self._close_on_resume is not None:
            conn.writer.put_nowait(Frame.close(self.id[1], self._close_on_resume))
            self._forget()
            return
        # The gateway kept the subscriptions; only what changed meanwhile
        # goes out.
        ops, self._channel_ops = self._channel_ops, None
        for channel, subscribe in (ops or {}).items():
            self._channel_op(channel, subscribe)

    def _detach(self, conn: MuxConnection, server_closing: bool) -> None:
        """``conn`` ended. If it was ours, wait for a resume (or finish at
        once when the server itself is closing)."""
        self._conns.discard(conn)
        if self._conn is not conn:
            return
        self._conn = None
        self._wake()
        if server_closing:
            self._mark_closed(SessionClosed(1001, "server closed", by_app=True))
            self._forget()
        elif self._grace_timer is None:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self._grace, self._grace_expired)

    def _grace_expired(self) -> None:
        self._grace_timer = None
        if self._conn is not None:
            return
        self._mark_closed(SessionClosed(1006, "connection lost, not resumed"))
        self._forget()

    # ------------------------------------------------------------ internal

    async def _wait(self) -> None:
        """Until the next ``_wake`` (callers re-check their condition)."""
        fut = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = [fut]
        else:
            self._waiters.append(fut)
        await fut

    def _wake(self) -> None:
        """Something changed: a message, an attach or detach, the close."""
        waiters, self._waiters = self._waiters, None
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _fail(self, code: int, reason: str) -> None:
        """The SDK closes the session on the application's behalf."""
        conn = self._conn
        if conn is not None:
            conn.writer.put_nowait(Frame.close(self.id[1], Close(code, reason)))
        self._mark_closed(SessionClosed(code, reason, by_app=True), drop_inbox=True)
        self._forget()

    def _mark_closed(self, closed: SessionClosed, drop_inbox: bool = False) -> None:
        if self._closed is not None:
            return
        self._closed = closed
        self._partial = None
        if drop_inbox:
            self._inbox = None
            self._inbox_bytes = 0
        self._wake()

    def _forget(self) -> None:
        """Drop every reference the connections and the table hold, so
        later frames for this id are ignored as unknown (§3)."""
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None
        for conn in self._conns:
            if conn.sessions.get(self.id[1]) is self:
                del conn.sessions[self.id[1]]
        self._conns.clear()
        self._conn = None
        self._close_on_resume = None
        self._table.remove(self)

    def _fragments(self, payload: bytes, kind: int) -> list[Frame]:
        step = self._limits.fragment_bytes
        sid = self.id[1]
        if len(payload) <= step:
            return [Frame.message(sid, kind, True, payload)]
        view = memoryview(payload)
        out = []
        for start in range(0, len(payload), step):
            chunk = view[start : start + step]
            last = start + step >= len(payload)
            out.append(Frame.message(sid, kind if start == 0 else KIND_CONTINUATION, last, chunk))
        return out

