"""Echo application for tidegate in mux mode; the tests' upstream.

    python -m tidegate_mux.examples.echo --listen 127.0.0.1:0

prints one line ``tidegate-mux echo listening addr=IP:PORT``. Every message
is echoed on its session. Path ``/reject`` (403) or query ``reject=STATUS``
answers REJECT with that status and body "rejected by app". The first
offered sub-protocol is selected. SIGTERM: GOAWAY on every connection, keep
serving until the gateway has closed them (at most 35 s), exit 0.
``--reuse-port`` binds with SO_REUSEPORT, so a new instance can start on
the same port before this one is told to go (README "Restarting").
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import parse_qs

from ..incoming import Incoming
from ..server import MuxServer
from ._cli import parser, serve_until_sigterm, setup_logging


def reject_status(path: str, query: str) -> int | None:
    """The status the request asks to be rejected with, if any."""
    values = parse_qs(query).get("reject")
    if values and values[0].isdigit():
        return int(values[0])
    if path == "/reject":
        return 403
    return None


async def echo(incoming: Incoming) -> None:
    status = reject_status(incoming.open.path, incoming.open.query)
    if status is not None:
        incoming.reject(status, "rejected by app", [("content-type", "text/plain")])
        return
    protocols = incoming.open.protocols
    session = incoming.accept(protocols[0] if protocols else None)
    async for message in session:
        # A reply: waiting here (queue full, session resuming) is the right
        # backpressure. Broadcasts use send_nowait (see chat).
        await session.send(message)


def main() -> None:
    args = parser("tidegate mux echo application").parse_args()
    setup_logging(args.verbose)
    # The gateway's upstreams[].mux_secret, when it sends one.
    secret = os.environ.get("TIDEGATE_MUX_SECRET") or None
    server = MuxServer(
        *args.listen,
        handler=echo,
        resume_grace=args.resume_grace,
        gateway_secret=secret,
        reuse_port=args.reuse_port,
    )
    asyncio.run(serve_until_sigterm(server, "echo"))


if __name__ == "__main__":
    main()
