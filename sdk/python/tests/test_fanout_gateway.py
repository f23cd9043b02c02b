"""Extension ``fanout`` through the REAL gateway binary (issue #17): a
``Room`` broadcast is one PUBLISH that every subscribed client receives,
in order, with the excluded sender left out; subscriptions survive a
GOAWAY resume between two servers of one process; the Python and Rust
chat examples are room broadcasts through the gateway.

Each test also checks the gateway's own counters
(``tidegate_fanout_publishes_total``, ``tidegate_fanout_subscriptions``),
so against a gateway without fan-out they fail rather than pass on the
per-session fallback."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect

from mux_apps import ExampleApp
from mux_peer import run
from test_gateway import WAIT, gateway, metric, stack  # noqa: F401  (stack: a fixture)
from tidegate_mux import MuxServer, Room, SessionClosed, SessionTable
from tidegate_mux.incoming import Incoming


async def until(what: str, check) -> None:
    """Poll ``check()`` (possibly blocking: run in a thread) until true."""
    deadline = time.monotonic() + WAIT
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


class BroadcastApp:
    """Every session joins room ``lobby``; ``!bcast TEXT`` broadcasts TEXT
    to the others, anything else is echoed to the sender alone."""

    def __init__(self) -> None:
        self.room = Room("lobby")
        self.reports: list = []

    async def handler(self, incoming: Incoming) -> None:
        session = incoming.accept()
        self.room.join(session)
        try:
            while True:
                msg = await session.recv()
                if isinstance(msg, str) and msg.startswith("!bcast "):
                    self.reports.append(self.room.broadcast(msg[7:], exclude=session))
                else:
                    await session.send(msg)
        except SessionClosed:
            self.room.leave(session)


def test_room_broadcast_is_one_publish_to_every_subscriber(stack):
    clients_n, messages = 50, 20

    async def main():
        app = BroadcastApp()
        srv = MuxServer("127.0.0.1", 0, handler=app.handler, table=SessionTable())
        await srv.start()
        gw = await asyncio.to_thread(gateway, stack, [f"127.0.0.1:{srv.port}"], 2)
        clients = [await connect(gw.url(f"/c{i}")) for i in range(clients_n)]
        await until("every subscription", lambda: metric(gw, "tidegate_fanout_subscriptions") == clients_n)
        sender, others = clients[0], clients[1:]
        for n in range(messages):
            await sender.send(f"!bcast message {n}")
        for ws in others:
            got = [await asyncio.wait_for(ws.recv(), WAIT) for _ in range(messages)]
            assert got == [f"message {n}" for n in range(messages)], "all, in order"
        # The sender was excluded: the next thing it hears is its own echo.
        await sender.send("marker")
        assert await asyncio.wait_for(sender.recv(), WAIT) == "marker"
        assert len(app.reports) == messages
        assert all((r.published, r.sent) == (1, clients_n - 1) for r in app.reports), app.reports[0]
        assert metric(gw, "tidegate_fanout_publishes_total", source="mux") == messages
        assert metric(gw, "tidegate_fanout_deliveries_total") >= messages * (clients_n - 1)
        for ws in clients:
            await ws.close()
        await until("subscriptions freed", lambda: metric(gw, "tidegate_fanout_subscriptions") == 0)
        await srv.close()

    run(main())


def test_subscriptions_survive_a_goaway_resume(stack):
    clients_n = 10

    async def main():
        app = BroadcastApp()
        table = SessionTable()  # one process: sessions move between the two
        a = MuxServer("127.0.0.1", 0, handler=app.handler, table=table)
        b = MuxServer("127.0.0.1", 0, handler=app.handler, table=table)
        await a.start()
        await b.start()
        gw = await asyncio.to_thread(gateway, stack, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        await until("both connections", lambda: metric(gw, "tidegate_mux_connections_up") >= 2)
        clients = [await connect(gw.url(f"/c{i}")) for i in range(clients_n)]
        await until("every subscription", lambda: metric(gw, "tidegate_fanout_subscriptions") == clients_n)
        on_a = sum(1 for s in app.room if s._conn is not None and s._conn.server is a)
        assert on_a > 0, "the leaving server carries sessions"
        a.goaway("test")
        await until("the sessions moved", lambda: metric(gw, "tidegate_mux_sessions_total", event="resumed") >= on_a)
        await a.wait_drained(WAIT)
        assert len(app.room) == clients_n, "room membership kept across the resume"
        assert metric(gw, "tidegate_fanout_subscriptions") == clients_n, "the gateway kept them"
        await clients[0].send("!bcast after the move")
        for ws in clients[1:]:
            assert await asyncio.wait_for(ws.recv(), WAIT) == "after the move"
        assert (app.reports[-1].published, app.reports[-1].sent) == (1, clients_n - 1)
        for ws in clients:
            assert ws.close_code is None, "no client noticed"
            await ws.close()
        await a.close()
        await b.close()

    run(main())


@pytest.mark.parametrize("rust", [False, True], ids=["python", "rust"])
def test_chat_example_is_a_room_broadcast(stack, rust):
    with ExampleApp("chat", rust=rust) as app:
        gw = gateway(stack, [app.addr])

        async def main():
            async with connect(gw.url("/lobby?nick=ada")) as ada:
                await until("ada subscribed", lambda: metric(gw, "tidegate_fanout_subscriptions") == 1)
                async with connect(gw.url("/lobby?nick=bo")) as bo:
                    assert await asyncio.wait_for(ada.recv(), WAIT) == "* bo joined"
                    await bo.send("hi all")
                    assert await asyncio.wait_for(ada.recv(), WAIT) == "bo: hi all"
                    assert await asyncio.wait_for(bo.recv(), WAIT) == "bo: hi all"
            assert metric(gw, "tidegate_fanout_publishes_total", source="mux") >= 2

        run(main())


def test_broadcast_on_an_edge_compressed_route(stack):
    """Edge permessage-deflate (the clients are ``websockets``, which
    offer it): a published frame goes to each client uncompressed (RSV1
    clear: an uncompressed message, RFC 7692 §6, which touches neither
    side's compression context), between the gateway's compressed echoes
    — and both decode, so neither context was disturbed."""
    from test_gateway_deflate import deflate_gateway, extension_names, payload

    clients_n, rounds = 5, 10

    async def main():
        app = BroadcastApp()
        srv = MuxServer("127.0.0.1", 0, handler=app.handler, table=SessionTable())
        await srv.start()
        gw = await asyncio.to_thread(deflate_gateway, stack, f"127.0.0.1:{srv.port}")
        clients = [await connect(gw.url(f"/c{i}"), max_size=None) for i in range(clients_n)]
        for ws in clients:
            assert extension_names(ws) == ["permessage-deflate"], ws.response.headers
        await until("every subscription", lambda: metric(gw, "tidegate_fanout_subscriptions") == clients_n)
        sender, others = clients[0], clients[1:]
        for n in range(rounds):
            await sender.send(f"!bcast message {n}")
            for i, ws in enumerate(others):
                await ws.send(payload(3000 + 100 * i + n).decode())
        for i, ws in enumerate(others):
            got = [await asyncio.wait_for(ws.recv(), WAIT) for _ in range(2 * rounds)]
            broadcasts = [m for m in got if m.startswith("message ")]
            echoes = [m for m in got if not m.startswith("message ")]
            assert broadcasts == [f"message {n}" for n in range(rounds)], "all, in order"
            assert echoes == [payload(3000 + 100 * i + n).decode() for n in range(rounds)]
        await sender.send("marker")
        assert await asyncio.wait_for(sender.recv(), WAIT) == "marker"
        assert metric(gw, "tidegate_fanout_deliveries_total") >= rounds * (clients_n - 1)
        assert metric(gw, "tidegate_fanout_rejected_total", reason="unsupported") == 0
        # The echoes were compressed on the wire (the payloads repeat).
        plain = metric(gw, "tidegate_deflate_bytes_total", direction="upstream_to_client", stage="plain")
        wire = metric(gw, "tidegate_deflate_bytes_total", direction="upstream_to_client", stage="compressed")
        assert 0 < wire < plain / 5, (wire, plain)
        for ws in clients:
            await ws.close()
        await until("subscriptions freed", lambda: metric(gw, "tidegate_fanout_subscriptions") == 0)
        await srv.close()

    run(main())
