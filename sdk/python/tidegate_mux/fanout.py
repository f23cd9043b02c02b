"""Extension ``fanout`` (docs/mux-protocol.md §10): the negotiation, and
where a PUBLISH goes.

The gateway offers ``X-Tidegate-Mux-Extensions: fanout`` in every mux
upgrade; ``MuxServer`` echoes it in its 101 (unless built with
``fanout=False``), and only on a connection where both did are SUBSCRIBE,
UNSUBSCRIBE and PUBLISH sent.

A channel lives in one gateway process: its subscribers are the sessions
of that gateway instance (``X-Tidegate-Instance``). So a publish goes out
once per gateway instance this process has connections from, always on
the same connection of that instance while it lives (the oldest one),
because the gateway keeps the order of one publisher's messages — one
connection's — per channel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .codec import Frame

if TYPE_CHECKING:
    from .connection import MuxConnection
    from .table import SessionTable

EXTENSIONS_HEADER = "X-Tidegate-Mux-Extensions"
"""Request (gateway's offer) and 101 response (the application's answer)."""

FANOUT = "fanout"
"""The extension's token in that header."""


def offered(values: Iterable[str]) -> bool:
    """Does a comma list (possibly several header lines) name ``fanout``?
    Unknown tokens are ignored, as §10 says."""
    return any(tok.strip().lower() == FANOUT for v in values for tok in v.split(","))


def publish_connections(table: SessionTable, instances: Iterable[str] | None = None) -> dict[str, MuxConnection]:
    """The connection a PUBLISH takes, per gateway instance: the oldest open
    connection of that instance that negotiated ``fanout``. Instances
    without one are missing from the answer (their subscribers need
    per-session sends). ``instances=None``: every instance known."""
    wanted = table.instances() if instances is None else instances
    out = {}
    for inst in wanted:
        conn = table.fanout_connection(inst)
        if conn is not None:
            out[inst] = conn
    return out


def put_publish(conn: MuxConnection, frame: Frame) -> bool:
    """Queue a PUBLISH without waiting. A publish is one frame for a whole
    audience, so it is refused (False) rather than queued over the
    connection's bound; the caller counts it as ``full``."""
    if not conn.writer.has_room():
        return False
    return conn.writer.put_nowait(frame)
