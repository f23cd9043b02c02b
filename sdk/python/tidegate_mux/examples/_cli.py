"""Shared bits of the example programs: ``--listen`` parsing, the address
line tests read, and SIGTERM → GOAWAY → drain → exit (``tidegate_mux.runner``)."""

from __future__ import annotations

import argparse
import logging

from ..runner import run_until_signal
from ..server import MuxServer


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
    p.add_argument("--reuse-port", action="store_true", help="bind with SO_REUSEPORT (side-by-side restart)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


async def serve_until_sigterm(server: MuxServer, name: str) -> None:
    """The public runner (``tidegate_mux.run_until_signal``) under the name
    the examples have always used."""
    await run_until_signal(server, name)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
