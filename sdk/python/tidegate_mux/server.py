"""``MuxServer``: the application's WebSocket endpoint for tidegate in mux mode.

The gateway connects to it (K connections per gateway process) selecting
the sub-protocol ``tidegate.mux.v1``; connections that do not offer it, or
lack a valid ``X-Tidegate-Instance`` header, are refused with 400 before the
upgrade; with ``gateway_secret`` set, one without that exact
``X-Tidegate-Mux-Secret`` (the gateway's ``upstreams[].mux_secret``) is
refused with 401, so nobody but the gateway can open or resume sessions. Every OPEN becomes an ``Incoming``, either handed to ``handler``
(one task each) or queued for ``accept()``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import ssl as ssl_module
from collections.abc import Awaitable, Callable

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .codec import HEADER_LEN, SUBPROTOCOL, Frame
from .fanout import EXTENSIONS_HEADER, FANOUT, offered, publish_connections
from .connection import MuxConnection
from .errors import MuxError
from .incoming import Incoming
from .limits import Limits
from .room import Delivery, publish_nowait
from .session import Session
from .table import PROCESS_TABLE, SessionTable

log = logging.getLogger(__name__)

Handler = Callable[[Incoming], Awaitable[None]]

_INSTANCE = re.compile(r"[0-9a-fA-F]{16}")


class ServerClosed(MuxError):
    """``accept()`` on a closed server."""


class MuxServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        handler: Handler | None = None,
        resume_grace: float = 30.0,
        *,
        limits: Limits | None = None,
        table: SessionTable | None = None,
        ssl: ssl_module.SSLContext | None = None,
        gateway_secret: str | None = None,
        reuse_port: bool = False,
        fanout: bool = True,
    ) -> None:
        """``handler(incoming)`` runs in its own task per OPEN; without one,
        call ``accept()``. ``resume_grace``: how long a session whose
        connection ended waits for the gateway to resume it before it is
        closed with 1006 (match the gateway's ``mux.resume_grace``).
        ``gateway_secret``: require it in ``X-Tidegate-Mux-Secret`` (None
        trusts any peer that reaches the port: loopback or private networks
        only). ``reuse_port``: bind with ``SO_REUSEPORT``, so a new
        instance can listen on the port while the old one still serves
        (side-by-side restart; README "Restarting"). ``fanout``: accept the
        gateway's offer of extension ``fanout`` (§10), so ``Room`` and
        ``publish`` hand broadcasts to the gateway; False keeps every
        connection on plain v1 (per-session sends)."""
        self.host = host
        self._port = port
        self.handler = handler
        self.resume_grace = resume_grace
        self.limits = limits or Limits()
        self.table = table if table is not None else PROCESS_TABLE
        """Open sessions by (instance, id), shared process-wide by default."""
        self._ssl = ssl
        self._gateway_secret = gateway_secret.encode() if gateway_secret else None
        self._reuse_port = reuse_port
        self.fanout = fanout
        self._server: Server | None = None
        self._connections: set[MuxConnection] = set()
        self._no_connections = asyncio.Event()
        self._no_connections.set()
        self._incoming: asyncio.Queue[Incoming | None] = asyncio.Queue()
        """OPENs for ``accept()``; bounded by hand (``Limits.pending_opens``)
        so the close sentinel always fits."""
        self._handler_tasks: set[asyncio.Task[None]] = set()
        self.goaway_reason: str | None = None
        """Set by ``goaway()``: sent on every connection, present and new."""
        self.closing = False

    # -------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind and listen (port 0 picks a free port; see ``.port``)."""
        self._server = await serve(
            self._handle,
            self.host,
            self._port,
            subprotocols=[SUBPROTOCOL],
            process_request=self._check_request,
            process_response=self._answer_extensions,
            # Payloads are the clients' own; the gateway does not negotiate
            # compression on the mux leg.
            compression=None,
            # A message is one frame alone or a batch (the gateway's is at
            # most 64 KiB); anything bigger is refused by websockets (1009)
            # before it is buffered. Within that, the codec reports too_big.
            max_size=max(self.limits.max_frame_bytes + HEADER_LEN, self.limits.batch_bytes),
            ssl=self._ssl,
            reuse_port=self._reuse_port or None,
        )
        # Kept: after stop_listening() the server has no socket to ask.
        self._port = self._server.sockets[0].getsockname()[1]

    @property
    def port(self) -> int:
        if self._server is None:
            raise MuxError("MuxServer not started")
        return self._port

    @property
    def connections(self) -> int:
        """Mux connections currently open."""
        return len(self._connections)

    async def accept(self) -> Incoming:
        """The next OPEN (when no ``handler`` was given). Raises
        ``ServerClosed`` after ``close()``."""
        if self.closing:
            raise ServerClosed("MuxServer closed")
        inc = await self._incoming.get()
        if inc is None:
            self._incoming.put_nowait(None)  # wake the next caller too
            raise ServerClosed("MuxServer closed")
        return inc

    def publish_nowait(
        self,
        channel: str,
        message: str | bytes | bytearray | memoryview,
        exclude: Session | None = None,
    ) -> Delivery:
        """Send ``message`` to every session subscribed to ``channel``
        (``Session.subscribe``; ``str`` text, bytes-like binary) but
        ``exclude``; never waits. With extension ``fanout`` this is one
        PUBLISH per gateway instance (``Delivery.published``) and the
        gateway delivers; sessions whose gateway lacks it get per-session
        sends, counted like ``Room.broadcast``. The table is this server's
        (shared process-wide by default), so every connection of the
        process may carry the PUBLISH."""
        return publish_nowait(self.table, channel, message, exclude)

    async def publish(
        self,
        channel: str,
        message: str | bytes | bytearray | memoryview,
        exclude: Session | None = None,
    ) -> Delivery:
        """``publish_nowait``, first waiting while a fan-out
        connection's queue is over ``Limits.connection_queue_bytes``: the
        backpressure a publisher should feel rather than lose messages."""
        for conn in publish_connections(self.table).values():
            await conn.writer.wait_room()
        return self.publish_nowait(channel, message, exclude)

    def stop_listening(self) -> None:
        """Close the listening socket; open mux connections keep serving.
        The gateway's next connections go to whoever listens on the port
        now (a new instance bound with ``reuse_port``, or one started
        after this)."""
        if self._server is not None:
            self._server.server.close()

    def goaway(self, reason: str = "") -> None:
        """Tell the gateway this instance is going away (§6): stop listening,
        then GOAWAY on every connection. The gateway sends no new OPEN here
        and moves the sessions to other connections; when it has none
        (a single instance restarting) it closes these connections as soon
        as they are quiet and holds the sessions for the new instance.
        Keep serving until ``wait_drained()``."""
        self.goaway_reason = reason
        self.stop_listening()
        for conn in list(self._connections):
            conn.writer.put_nowait(Frame.goaway(reason))

    async def wait_drained(self, timeout: float | None = None) -> bool:
        """Wait until no mux connection is open; False on timeout."""
        try:
            await asyncio.wait_for(self._no_connections.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Stop listening and close every mux connection (1001). Sessions on
        them finish at once with ``SessionClosed(1001)`` (no resume wait);
        the gateway resumes them on other instances if it has any."""
        if self.closing:
            return
        self.closing = True
        self._incoming.put_nowait(None)
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
        tasks = list(self._handler_tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> MuxServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------- internals

    def _check_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if self._gateway_secret is not None:
            given = request.headers.get("X-Tidegate-Mux-Secret", "").encode("utf-8", "replace")
            # Constant time: no timing oracle to guess the secret byte by byte.
            if not hmac.compare_digest(given, self._gateway_secret):
                log.warning("mux connection from %s without the gateway secret refused", ws.remote_address)
                return ws.respond(401, "X-Tidegate-Mux-Secret missing or wrong\n")
        instance = request.headers.get("X-Tidegate-Instance", "")
        if not _INSTANCE.fullmatch(instance):
            return ws.respond(400, "X-Tidegate-Instance (16 hex digits) required\n")
        return None

    def _wants_fanout(self, request: Request | None) -> bool:
        return self.fanout and request is not None and offered(request.headers.get_all(EXTENSIONS_HEADER))

    def _answer_extensions(self, ws: ServerConnection, request: Request, response: Response) -> Response | None:
        """Name ``fanout`` in the 101 when the gateway offered it (§10)."""
        if response.status_code == 101 and self._wants_fanout(request):
            response.headers[EXTENSIONS_HEADER] = FANOUT
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        headers = ws.request.headers if ws.request is not None else {}
        instance = headers.get("X-Tidegate-Instance", "").lower()
        conn = MuxConnection(self, ws, instance, headers.get("X-Tidegate-Slot", ""), self._wants_fanout(ws.request))
        self._connections.add(conn)
        self._no_connections.clear()
        log.info("mux connection from %s instance=%s slot=%s", ws.remote_address, instance, conn.slot)
        await conn.run()

    def _connection_ended(self, conn: MuxConnection) -> None:
        self._connections.discard(conn)
        if not self._connections:
            self._no_connections.set()

    def _offer(self, inc: Incoming) -> None:
        if self.handler is not None:
            task = asyncio.create_task(self._run_handler(inc), name=f"tidegate-mux {inc.id}")
            self._handler_tasks.add(task)
            task.add_done_callback(self._handler_tasks.discard)
        elif self._incoming.qsize() >= self.limits.pending_opens:
            log.warning("%d OPENs waiting for accept(); rejecting %s with 503", self._incoming.qsize(), inc.id)
            inc.reject(503, "application busy")
        else:
            self._incoming.put_nowait(inc)

    async def _run_handler(self, inc: Incoming) -> None:
        """Run ``handler``. An OPEN it leaves unanswered gets REJECT 500, so
        the client is never left waiting for the gateway's open timeout; a
        session it accepted and then failed on is closed with 1011."""
        assert self.handler is not None, "_run_handler only runs with a handler"
        try:
            await self.handler(inc)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("mux handler failed for %r", inc)
            if inc.session is not None:
                await inc.session.close(1011, "application error")
        finally:
            if not inc.answered:
                inc.reject(500, "application error")
