"""Run a ``MuxServer`` until SIGTERM/SIGINT, then hand the sessions back.

    asyncio.run(run_until_signal(MuxServer("0.0.0.0", 9100, handler, reuse_port=True)))

On the signal: stop listening (the gateway's next connections reach the
new instance), GOAWAY on every mux connection, keep serving until the
gateway has closed them (it moves the sessions to other instances, or —
with nowhere to move them — closes at once and holds them for the new
instance: docs/mux-protocol.md §6), then close. The restart recipes are in
the README ("Restarting").
"""

from __future__ import annotations

import asyncio
import logging
import signal

from .server import MuxServer

DRAIN_MAX = 35.0
"""After GOAWAY, keep serving until the gateway closes every connection, at
most this long (the gateway's resume_grace is 30 s)."""

log = logging.getLogger(__name__)


async def run_until_signal(
    server: MuxServer,
    name: str = "app",
    *,
    drain_max: float = DRAIN_MAX,
    announce: bool = True,
) -> None:
    """Start ``server``; with ``announce``, print ``tidegate-mux NAME
    listening addr=IP:PORT`` (what process managers and tests read); on
    SIGTERM or SIGINT, GOAWAY and drain (at most ``drain_max`` seconds),
    then close."""
    # Handlers first: a SIGTERM right after the address line must drain.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        if announce:
            host = server.host if ":" not in server.host else f"[{server.host}]"
            print(f"tidegate-mux {name} listening addr={host}:{server.port}", flush=True)
        await stop.wait()
        log.info("%s: signal, GOAWAY to %d connection(s), draining", name, server.connections)
        server.goaway("shutting down")
        if not await server.wait_drained(drain_max):
            log.warning("%s: gateway still connected after %.0f s; closing", name, drain_max)
        await server.close()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
