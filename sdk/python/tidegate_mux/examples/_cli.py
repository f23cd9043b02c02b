"""Shared bits of the example programs: ``--listen`` parsing, the address
line tests read, and SIGTERM → GOAWAY → drain → exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from ..server import MuxServer

DRAIN_MAX = 35.0
"""After GOAWAY, keep serving until the gateway closes every connection, at
most this long (the gateway's resume_grace is 30 s)."""


def host_port(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--listen", type=host_port, default=("127.0.0.1", 9100), help="HOST:PORT (port 0: any free port)")
    p.add_argument("--resume-grace", type=float, default=30.0, help="seconds a session waits to be resumed")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def serve_until_sigterm(server: MuxServer, name: str) -> None:
    """Start, print ``tidegate-mux NAME listening addr=IP:PORT``, and on
    SIGTERM/SIGINT send GOAWAY, wait for the gateway to close the
    connections (at most ``DRAIN_MAX``), then close."""
    # Handlers first: a SIGTERM right after the address line must drain.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    host = server.host if ":" not in server.host else f"[{server.host}]"
    print(f"tidegate-mux {name} listening addr={host}:{server.port}", flush=True)
    await stop.wait()
    logging.getLogger(name).info("signal: GOAWAY to %d connection(s), draining", server.connections)
    server.goaway("shutting down")
    if not await server.wait_drained(DRAIN_MAX):
        logging.getLogger(name).warning("gateway still connected after %.0f s; closing", DRAIN_MAX)
    await server.close()


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
