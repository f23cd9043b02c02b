"""A plain WebSocket echo server (one socket per client) for bench-mux.sh:
the passthrough flavour of the Python application, to set against the mux
flavour ``python -m tidegate_mux.examples.echo``.

    .venv/bin/python loadtest/apps/ws_echo.py --listen 127.0.0.1:0

prints ``ws-echo listening addr=IP:PORT`` and echoes every message until
SIGTERM. Keepalive is the gateway's job, so the server sends no pings.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import serve


async def echo(ws) -> None:
    async for message in ws:
        await ws.send(message)


async def main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with serve(echo, host, port, ping_interval=None, compression=None) as server:
        addr = next(iter(server.sockets)).getsockname()
        print(f"ws-echo listening addr={addr[0]}:{addr[1]}", flush=True)
        await stop.wait()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: any free port)")
    host, _, port = p.parse_args().listen.rpartition(":")
    asyncio.run(main(host, int(port)))
