"""One mux connection from the gateway: the reader and its frame dispatch.

The reader decodes every binary message into frames and hands each to its
session without ever waiting on one (session inboxes are bounded and close
on overflow, see ``session``), answers PING with PONG, ignores frames for
ids it does not know (§3), and closes the whole connection with 1002 and the
error's label on anything malformed (§7). When the connection ends, its
sessions wait for a resume elsewhere.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .bodies import OpenBody
from .codec import Close, Frame, FrameType, decode
from .errors import CodecError, WrongDirection
from .incoming import Incoming
from .session import Session
from .writer import FrameWriter

if TYPE_CHECKING:
    from .server import MuxServer

log = logging.getLogger(__name__)


class MuxConnection:
    def __init__(self, server: MuxServer, ws: ServerConnection, instance: str, slot: str, fanout: bool = False) -> None:
        self.server = server
        self.ws = ws
        self.instance = instance
        """The gateway process (``X-Tidegate-Instance``); scopes session ids."""
        self.slot = slot
        """Which of the gateway's K connections to this endpoint (for logs)."""
        self.fanout = fanout
        """Both sides named extension ``fanout`` in the upgrade: SUBSCRIBE,
        UNSUBSCRIBE and PUBLISH may be sent here (§10)."""
        self.writer = FrameWriter(ws, server.limits)
        self.sessions: dict[int, Session] = {}
        """Sessions whose frames may arrive here, by id."""
        self.pending: dict[int, Incoming] = {}
        """OPENs not answered yet, by id."""

    def __repr__(self) -> str:
        fanout = " fanout" if self.fanout else ""
        return f"<MuxConnection instance={self.instance} slot={self.slot}{fanout} {self.ws.remote_address}>"

    async def run(self) -> None:
        """Serve the connection until it ends (the websockets handler)."""
        self.writer.start()
        self.server.table.add_connection(self)
        if self.server.goaway_reason is not None:
            # Draining already: no new sessions should come to this process.
            self.writer.put_nowait(Frame.goaway(self.server.goaway_reason))
        try:
            await self._read()
        finally:
            self.writer.stop()
            self._teardown()

    async def _read(self) -> None:
        max_body = self.server.limits.max_frame_bytes
        while True:
            try:
                msg = await self.ws.recv()
            except ConnectionClosed as e:
                log.debug("%r closed: %s", self, e)
                return
            try:
                for frame in decode(msg, max_body, self.fanout):
                    self._dispatch(frame)
            except CodecError as e:
                log.warning("%r: protocol error %s: %s; closing 1002", self, e.label, e)
                self.writer.stop()
                await self.ws.close(1002, e.label)
                return

    def _dispatch(self, f: Frame) -> None:
        t = f.type
        if not t.from_gateway:
            raise WrongDirection(t.name)
        if t is FrameType.MESSAGE:
            s = self.sessions.get(f.session)
            if s is not None:
                s._on_message(f)
        elif t is FrameType.PING:
            self.writer.put_nowait(Frame.pong(f.body))
        elif t is FrameType.OPEN:
            self._on_open(f)
        elif t is FrameType.CLOSE:
            close = Close.decode(f.body)
            s = self.sessions.get(f.session)
            if s is not None:
                s._on_close(close)
            elif (inc := self.pending.pop(f.session, None)) is not None:
                inc._withdraw(close)
        # PONG: any frame is proof of life; nothing to do.

    def _on_open(self, f: Frame) -> None:
        body = OpenBody.from_json(f.body, "OPEN")
        key = (self.instance, f.session)
        existing = self.server.table.get(key)
        if existing is not None:
            if f.resumed:
                log.info("session %s resumed on %r", key, self)
                existing._resume(self)
            else:
                # Ids are not reused while a session lives (§3): treat as
                # a per-session mistake, close only that session.
                log.warning("duplicate OPEN for live session %s; closing it 1002", key)
                existing._fail(1002, "duplicate OPEN")
            return
        if f.session in self.pending:
            log.warning("duplicate OPEN for pending session %s ignored", key)
            return
        inc = Incoming(self, f.session, body, f.resumed)
        self.pending[f.session] = inc
        self.server._offer(inc)

    def _teardown(self) -> None:
        self.server.table.remove_connection(self)
        closing = self.server.closing
        for s in list(self.sessions.values()):
            s._detach(self, closing)
        self.sessions.clear()
        for inc in self.pending.values():
            inc._withdraw(Close(1006, "mux connection lost"))
        self.pending.clear()
        self.server._connection_ended(self)
