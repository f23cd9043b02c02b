"""The writer of one mux connection: a bounded outbound queue and the task
that drains it in batches (docs/mux-protocol.md §8).

Every frame for a connection, of any session, is appended here; the writer
task takes whatever is queued and sends it as one binary WebSocket message
of up to ``batch_bytes`` (a larger single frame goes alone). Under load this
turns many small frames into few messages and few system calls; when idle a
frame leaves at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .codec import Frame
from .errors import MuxError
from .limits import Limits

log = logging.getLogger(__name__)


class ConnectionGone(MuxError):
    """The mux connection ended before the frames could be queued."""


class FrameWriter:
    def __init__(self, ws: ServerConnection, limits: Limits) -> None:
        self._ws = ws
        """The WebSocket the batches go out on."""
        self._limits = limits
        self._queue: deque[bytes] = deque()
        """Encoded frames in send order."""
        self._queued = 0
        """Bytes in ``_queue`` plus the batch being sent: what the bound counts."""
        self._wake = asyncio.Event()
        """Set when frames are queued; the writer task sleeps on it."""
        self._room = asyncio.Event()
        """Set while ``_queued`` is under ``connection_queue_bytes`` (or the
        connection is gone): what ``put`` waits on."""
        self._room.set()
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def has_room(self) -> bool:
        """True while application frames may be queued without waiting."""
        return not self._closed and self._queued < self._limits.connection_queue_bytes

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tidegate-mux writer")

    def put_nowait(self, *frames: Frame) -> bool:
        """Queue frames without waiting for room: for the small frames the
        protocol itself owes the gateway (PONG, ACCEPT, REJECT, CLOSE,
        GOAWAY), which must not wait behind application data. Returns False
        when the connection is gone (the frames are dropped with it)."""
        if self._closed:
            return False
        for f in frames:
            data = f.encode()
            self._queue.append(data)
            self._queued += len(data)
        if self._queued >= self._limits.connection_queue_bytes:
            self._room.clear()
        self._wake.set()
        return True

    async def wait_room(self) -> None:
        """Until the queue is under its bound (or the connection is gone)."""
        while not self._closed and self._queued >= self._limits.connection_queue_bytes:
            await self._room.wait()

    async def put(self, frames: list[Frame]) -> None:
        """Queue application frames, waiting while the connection's queue is
        full (backpressure to the application; nothing is dropped). All
        frames are queued together, so one message's fragments stay in order
        and contiguous. Raises ``ConnectionGone``."""
        await self.wait_room()
        if not self.put_nowait(*frames):
            raise ConnectionGone("mux connection closed")

    def stop(self) -> None:
        """Stop sending; queued frames are dropped (the connection is over)."""
        self._mark_closed()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    def _mark_closed(self) -> None:
        self._closed = True
        self._queue.clear()
        self._queued = 0
        self._room.set()  # wake waiters in put() so they see the close

    async def _run(self) -> None:
        batch_limit = self._limits.batch_bytes
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._queue:
                    batch = [self._queue.popleft()]
                    size = len(batch[0])
                    while self._queue and size + len(self._queue[0]) <= batch_limit:
                        data = self._queue.popleft()
                        batch.append(data)
                        size += len(data)
                    await self._ws.send(batch[0] if len(batch) == 1 else b"".join(batch))
                    self._queued -= size
                    if self._queued < self._limits.connection_queue_bytes:
                        self._room.set()
        except ConnectionClosed:
            # The reader sees the same close and tears the connection down.
            log.debug("mux writer: connection closed")
        finally:
            self._mark_closed()
