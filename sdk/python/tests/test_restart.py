"""Restarting the application behind the REAL gateway (issue #23), with
Python ``websockets`` clients that keep sending all the way through and
count every echo:

- one instance, SIGTERM, a new one on the same port (side by side with
  ``--reuse-port``, and one after the other; the Python echo example, and
  the Rust SDK's side by side): the gateway releases the old
  connections at once and resumes every session on the new instance —
  zero client closes, zero lost or reordered messages, and the resumed
  sessions spread over both pool slots;
- two instances, SIGTERM of one: GOAWAY hands its sessions to the other,
  same counts;
- nobody comes back: clients get 1012 after ``mux.resume_grace``, counted
  as ``side="gateway", code="1012"``.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from mux_apps import ExampleApp, start_echo
from mux_peer import run
from test_gateway import Gateway, Stack, metric, mux_config, wait_ready

WAIT = 30.0
"""Bound of every wait here; generous, never what a test checks."""

CLIENTS = 8
SEND_EVERY = 0.01
"""Each client sends a numbered message this often, without waiting for
echoes: messages are in flight at every moment of the restart."""


@pytest.fixture
def stack():
    with Stack() as s:
        yield s


def start_gateway(
    stack: Stack, endpoints: list[str], pool_size: int, resume_grace: str = "30s"
) -> Gateway:
    gw = stack.run_config(mux_config(endpoints, pool_size, resume_grace), admin=True)
    wait_ready(gw)
    wait_until(lambda: metric(gw, "tidegate_mux_connections_up") >= len(endpoints) * pool_size, "every slot up")
    return gw


def wait_until(cond, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, f"within {WAIT}s: {what}"
        time.sleep(0.05)


class Client:
    """Sends ``c{i}-{n}`` every ``SEND_EVERY`` until stopped; records every
    echo and how the connection ended."""

    def __init__(self, i: int, ws: ClientConnection) -> None:
        self.i = i
        self.ws = ws
        self.sent: list[str] = []
        self.got: list[str] = []
        self.stop = asyncio.Event()

    async def send_loop(self) -> None:
        n = 0
        while not self.stop.is_set():
            msg = f"c{self.i}-{n}"
            await self.ws.send(msg)
            self.sent.append(msg)
            n += 1
            await asyncio.sleep(SEND_EVERY)

    async def recv_loop(self) -> None:
        try:
            async for msg in self.ws:
                self.got.append(msg)
        except ConnectionClosed:
            pass


async def traffic_through(gw: Gateway, restart) -> list[Client]:
    """Clients send through ``restart()`` (a blocking function, run in a
    thread) and for a while after; every echo has arrived when this
    returns, or the test fails."""
    clients = [Client(i, await connect(gw.url(f"/c{i}"))) for i in range(CLIENTS)]
    tasks = [asyncio.create_task(t) for c in clients for t in (c.send_loop(), c.recv_loop())]
    while min(len(c.got) for c in clients) < 20:
        await asyncio.sleep(0.01)
    await asyncio.to_thread(restart)
    # Traffic after the restart reaches the new instance too.
    at_restart = [len(c.got) for c in clients]
    while any(len(c.got) < n + 30 for c, n in zip(clients, at_restart)):
        assert all(c.ws.close_code is None for c in clients), "no client was closed"
        await asyncio.sleep(0.01)
    for c in clients:
        c.stop.set()
    deadline = time.monotonic() + WAIT
    while any(len(c.got) < len(c.sent) for c in clients) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for c in clients:
        assert c.ws.close_code is None, f"client {c.i} was closed with {c.ws.close_code}"
        assert c.got == c.sent, f"client {c.i}: every message echoed once, in order: {echo_mismatch(c.sent, c.got)}"
        await c.ws.close()
    for t in tasks:
        await asyncio.wait_for(t, WAIT)
    return clients


def echo_mismatch(sent: list[str], got: list[str]) -> str:
    """What went wrong with a client's echoes, for the assertion message:
    which messages were lost, duplicated or came out of order, the first
    index where the echoes differ and the messages around it."""
    seen: dict[str, int] = {}
    for m in got:
        seen[m] = seen.get(m, 0) + 1
    lost = [m for m in sent if m not in seen]
    dup = [m for m, n in seen.items() if n > 1]
    sent_set = set(sent)
    extra = [m for m in seen if m not in sent_set]
    once = [m for m in got if seen[m] == 1 and m not in extra]
    order = {m: i for i, m in enumerate(sent)}
    reordered = [b for a, b in zip(once, once[1:]) if order[b] < order[a]]
    first = next((i for i, (a, b) in enumerate(zip(sent, got)) if a != b), min(len(sent), len(got)))
    lo, hi = max(0, first - 3), first + 4
    return (
        f"sent {len(sent)}, got {len(got)}; lost {lost[:10]}, duplicated {dup[:10]}, "
        f"never sent {extra[:10]}, out of order {reordered[:10]}; first difference at index {first}: "
        f"sent[{lo}:{hi}]={sent[lo:hi]} got[{lo}:{hi}]={got[lo:hi]}"
    )


def slot_sessions(gw: Gateway, endpoint: str, slots: int) -> list[float]:
    return [
        metric(gw, "tidegate_mux_connection_sessions", endpoint=f"ws://{endpoint}", slot=str(s)) for s in range(slots)
    ]


@pytest.mark.parametrize(
    "side_by_side, rust",
    [(True, False), (False, False), (True, True)],
    ids=["reuse_port", "stop_then_start", "rust_sdk_reuse_port"],
)
def test_single_instance_sigterm_restart_drops_nobody(stack, side_by_side, rust):
    with start_echo("--reuse-port", rust=rust) as old:
        gw = start_gateway(stack, [old.addr], pool_size=2)
        new: list[ExampleApp] = []

        def restart() -> None:
            if side_by_side:
                new.append(start_echo("--reuse-port", port=old.port, rust=rust))
            old.terminate()
            assert old.wait(WAIT) == 0, "the old instance drains and exits 0"
            if not side_by_side:
                new.append(start_echo(port=old.port, rust=rust))

        try:
            run(traffic_through(gw, restart))
            assert metric(gw, "tidegate_mux_sessions_total", event="resumed") >= CLIENTS
            assert metric(gw, "tidegate_mux_sessions_total", event="resume_failed") == 0
        finally:
            for app in new:
                app.stop()


@pytest.mark.parametrize("down_for", [0.0, 3.0], ids=["quick", "slow-restart"])
def test_resumed_sessions_spread_over_the_pool(stack, down_for):
    """``slow-restart``: the new instance comes up later than the pool's
    2 s spreading window after the old one left; the window counts from
    the first connection's return, so the sessions still spread."""
    with start_echo() as old:
        gw = start_gateway(stack, [old.addr], pool_size=2)

        async def main():
            clients = [await connect(gw.url(f"/s{i}")) for i in range(CLIENTS)]
            old.terminate()
            assert await asyncio.to_thread(old.wait, WAIT) == 0
            await asyncio.sleep(down_for)
            with start_echo(port=old.port):
                await asyncio.to_thread(
                    wait_until,
                    lambda: metric(gw, "tidegate_mux_sessions_total", event="resumed") >= CLIENTS,
                    "every session resumed",
                )
                per_slot = slot_sessions(gw, old.addr, 2)
                assert sum(per_slot) == CLIENTS
                assert min(per_slot) >= CLIENTS // 2 - 1, f"resumed sessions spread over both slots: {per_slot}"
                for ws in clients:
                    await ws.send("still there")
                    assert await asyncio.wait_for(ws.recv(), WAIT) == "still there"
                    await ws.close()

        run(main())


def test_two_instance_goaway_handover_drops_nobody(stack):
    with start_echo() as leaving, start_echo() as staying:
        gw = start_gateway(stack, [leaving.addr, staying.addr], pool_size=1)
        on_leaving: list[float] = []

        def restart() -> None:
            on_leaving.append(metric(gw, "tidegate_mux_connection_sessions", endpoint=f"ws://{leaving.addr}"))
            leaving.terminate()
            assert leaving.wait(WAIT) == 0, "the SIGTERMed instance drains and exits 0"

        run(traffic_through(gw, restart))
        assert on_leaving[0] > 0, "the leaving instance carried sessions"
        assert metric(gw, "tidegate_mux_sessions_total", event="resumed") >= on_leaving[0]


def test_nobody_comes_back_clients_get_1012(stack):
    with start_echo() as app:
        gw = start_gateway(stack, [app.addr], pool_size=1, resume_grace="1s")

        async def main():
            ws = await connect(gw.url("/alone"))
            await ws.send("hi")
            assert await ws.recv() == "hi"
            app.terminate()
            with pytest.raises(ConnectionClosed) as err:
                await asyncio.wait_for(ws.recv(), WAIT)
            assert err.value.rcvd is not None and err.value.rcvd.code == 1012

        run(main())
        assert metric(gw, "tidegate_closes_total", side="gateway", code="1012") == 1
        assert metric(gw, "tidegate_mux_sessions_total", event="resume_failed") == 1
