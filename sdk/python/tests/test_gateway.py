"""The Python SDK behind the REAL gateway binary in mux mode, with Python
``websockets`` clients: echo (text, binary, fragments), REJECT as the HTTP
status, close codes both ways, and GOAWAY (SIGTERM of one of two Python
echo instances) with no client noticing.

The gateway is started like tests/python does it (tests/python/gateway.py:
``$TG_TEST_BIN``, else the release build)."""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from mux_apps import start_echo
from mux_peer import run
from tidegate_mux.errors import SessionClosed
from tidegate_mux.incoming import Incoming
from tidegate_mux.server import MuxServer

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "python"))

from gateway import Gateway, Stack  # noqa: E402

WAIT = 30.0
"""Bound of every wait here; generous, never what a test checks."""


def mux_config(
    endpoints: list[str], pool_size: int = 1, resume_grace: str | None = None
) -> str:
    """One mux route to ``endpoints``; ``resume_grace`` is left at the
    gateway's default unless given."""
    eps = ", ".join(f'"ws://{e}"' for e in endpoints)
    grace = f'resume_grace = "{resume_grace}"\n' if resume_grace else ""
    return f"""
[admin]
listen = "127.0.0.1:0"

[mux]
reconnect_max = "500ms"
{grace}
[[listeners]]
name = "main"
listen = "127.0.0.1:0"

[[upstreams]]
name = "app"
endpoints = [{eps}]
pool_size = {pool_size}

[[routes]]
name = "app"
path = "/"
upstream = "app"
mode = "mux"
"""


def wait_ready(gw: Gateway) -> None:
    """Until /readyz answers 200: a mux connection is up."""
    deadline = time.monotonic() + WAIT
    while True:
        try:
            with urllib.request.urlopen(f"http://{gw.admin}/readyz", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"/readyz not 200 within {WAIT}s\n{gw.proc.log()[-4000:]}")
        time.sleep(0.05)


def metric(gw: Gateway, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` carrying ``labels``."""
    with urllib.request.urlopen(f"http://{gw.admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def stack():
    with Stack() as s:
        yield s


def gateway(stack: Stack, endpoints: list[str], pool_size: int = 1) -> Gateway:
    gw = stack.run_config(mux_config(endpoints, pool_size), admin=True)
    wait_ready(gw)
    return gw


def test_echo_text_binary_and_fragments(stack, echo_app):
    gw = gateway(stack, [echo_app.addr])

    async def main():
        async with connect(gw.url("/echo"), subprotocols=["chat.v1"]) as ws:
            assert ws.subprotocol == "chat.v1", "the app's ACCEPT picks the sub-protocol"
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01binary\xff")
            assert await ws.recv() == b"\x00\x01binary\xff"
            # One message in three frames; the app sees it whole.
            await ws.send(["frag", "men", "ted"])
            assert await ws.recv() == "fragmented"
            await ws.send([b"\x01" * 70_000, b"\x02" * 70_000])
            assert await ws.recv() == b"\x01" * 70_000 + b"\x02" * 70_000

    run(main())


def test_reject_is_the_http_status(stack, echo_app):
    gw = gateway(stack, [echo_app.addr])

    async def main():
        for path, status in (("/reject", 403), ("/room?reject=451", 451)):
            with pytest.raises(InvalidStatus) as err:
                async with connect(gw.url(path)):
                    pass
            assert err.value.response.status_code == status
            assert err.value.response.body == b"rejected by app"

    run(main())


def test_close_codes_cross_both_ways(stack):
    """An app in this process: ``close CODE REASON`` makes it close the
    session; each session's final close is reported with its path."""

    async def main():
        closes: asyncio.Queue[tuple[str, SessionClosed]] = asyncio.Queue()

        async def handler(incoming: Incoming) -> None:
            session = incoming.accept()
            async for msg in session:
                if isinstance(msg, str) and msg.startswith("close "):
                    _, code, reason = msg.split(" ", 2)
                    await session.close(int(code), reason)
                else:
                    await session.send(msg)
            closes.put_nowait((incoming.open.path, session.closed))

        app = MuxServer("127.0.0.1", 0, handler=handler)
        await app.start()
        gw = await asyncio.to_thread(gateway, stack, [f"127.0.0.1:{app.port}"])

        # App → client.
        async with connect(gw.url("/by-app")) as ws:
            await ws.send("close 4001 app says bye")
            with pytest.raises(ConnectionClosed) as err:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert (err.value.rcvd.code, err.value.rcvd.reason) == (4001, "app says bye")
        path, c = await asyncio.wait_for(closes.get(), WAIT)
        assert (path, c.code, c.by_app) == ("/by-app", 4001, True)

        # Client → app.
        async with connect(gw.url("/by-client")) as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
            await ws.close(4002, "client says bye")
        path, c = await asyncio.wait_for(closes.get(), WAIT)
        assert (path, c.code, c.reason, c.by_app) == ("/by-client", 4002, "client says bye", False)
        await app.close()

    run(main())


def test_goaway_moves_sessions_between_python_instances(stack):
    with start_echo() as leaving, start_echo() as staying:
        gw = gateway(stack, [leaving.addr, staying.addr])
        # Both connections up, so sessions spread over both instances.
        deadline = time.monotonic() + WAIT
        while metric(gw, "tidegate_mux_connections_up") < 2:
            assert time.monotonic() < deadline, "two mux connections come up"
            time.sleep(0.05)

        async def main():
            clients = [await connect(gw.url(f"/c{i}")) for i in range(10)]
            on_leaving = metric(gw, "tidegate_mux_connection_sessions", endpoint=f"ws://{leaving.addr}")
            assert on_leaving > 0, "the leaving instance carries sessions"
            done = asyncio.Event()
            counts = [0] * len(clients)

            async def loop(i, ws):
                # Request/echo until told to stop; any close fails the test.
                n = 0
                while not done.is_set() or n < 20:
                    msg = f"client {i} message {n}"
                    await ws.send(msg)
                    assert await asyncio.wait_for(ws.recv(), WAIT) == msg
                    n += 1
                    counts[i] = n
                return n

            tasks = [asyncio.create_task(loop(i, ws)) for i, ws in enumerate(clients)]
            while min(counts) < 10:
                await asyncio.sleep(0.01)
            leaving.terminate()
            code = await asyncio.to_thread(leaving.wait, 60)
            assert code == 0, "the SIGTERMed instance drains and exits 0"
            at_exit = sum(counts)
            while sum(counts) < at_exit + 10 * len(clients):
                await asyncio.sleep(0.01)
            done.set()
            for t in tasks:
                await asyncio.wait_for(t, WAIT)
            for ws in clients:
                assert ws.close_code is None, "no client was closed"
                await ws.close()

        run(main())
        assert metric(gw, "tidegate_mux_sessions_total", event="resumed") > 0


def test_metrics_count_a_vanished_client_and_show_protocol_errors_at_zero(stack, echo_app):
    gw = gateway(stack, [echo_app.addr])
    with urllib.request.urlopen(f"http://{gw.admin}/metrics", timeout=5) as r:
        text = r.read().decode()
    for reason in ("text_message", "truncated", "bad_json", "bad_close"):
        series = f'tidegate_mux_protocol_errors_total{{reason="{reason}",upstream="app"}} 0'
        assert series in text, f"registered at 0 before any error: {series}"

    async def main():
        ws = await connect(gw.url("/vanishing"))
        await ws.send("x")
        assert await ws.recv() == "x"
        ws.transport.abort()  # gone without a Close

    run(main())
    deadline = time.monotonic() + WAIT
    while metric(gw, "tidegate_closes_total", side="client", code="none") < 1:
        assert time.monotonic() < deadline, "the vanished client is counted as code=none"
        time.sleep(0.05)
    assert metric(gw, "tidegate_closes_total", side="client") == 1, "counted once"
