"""Mux mode: floods of frames that carry (almost) nothing, from a client
or from the application, towards a peer that does not read. Each test
measures the gateway's peak RSS growth over the flood and asserts the
bound docs/security.md states ("Memory bounds").

Before the fix (empty frames counted 0 bytes, every ping queued its own
pong) these grew the gateway by hundreds of MB."""

from __future__ import annotations

import threading

import rawws
from conftest import start_mux
from hostile_app import HostileApp, empty_message_flood, mux_ping_flood, ws_ping_flood
from procmem import MB, Growth, describe

# Generous, and far below the unbounded growth these floods caused.
BOUND = 40 * MB
WAIT = 120  # seconds a flood may take on a slow, shared machine


def check(name: str, gw, growth: Growth) -> None:
    grew = growth.settled()
    print(describe(name, grew, BOUND))
    assert gw.proc.popen.poll() is None, "the gateway died"
    assert grew < BOUND, describe(name, grew, BOUND)


def test_client_ping_flood_without_reading(stack):
    """4M empty pings from a client that never reads: one pong waits, not
    4M of them."""
    app = HostileApp()
    gw = start_mux(stack, app)
    client = rawws.connect(gw.addr, small_rcvbuf=True)
    assert app.session_opened.wait(30)
    growth = Growth(gw.proc.popen.pid)
    sent = rawws.flood(client, rawws.frame(rawws.OP_PING), 4_000_000, timeout=WAIT)
    assert sent == 4_000_000, "the gateway stopped reading pings (it should read and coalesce them)"
    check("mux client ping flood", gw, growth)
    client.close()


def test_client_empty_messages_to_slow_app(stack):
    """3M empty messages from a client while the application reads
    nothing: the connection's write queue takes budget for every frame,
    so the gateway stops reading the client instead of queueing."""
    app = HostileApp(on_session=lambda sock, sid: False)  # accept, then never read
    gw = start_mux(stack, app)
    growth = Growth(gw.proc.popen.pid)
    client = rawws.connect(gw.addr)
    assert app.session_opened.wait(30)
    sent = rawws.flood(client, rawws.frame(rawws.OP_BINARY), 3_000_000, timeout=WAIT)
    print(f"client wrote {sent} empty messages before backpressure")
    check("mux empty messages to a slow app", gw, growth)
    client.close()


def _app_flood(stack, flood) -> tuple:
    """A gateway whose application runs `flood(sock)` on its mux
    connection once the baseline is taken, then never reads."""
    go, done = threading.Event(), threading.Event()

    def on_connect(sock):
        if go.wait(60):
            try:
                flood(sock)
            finally:
                done.set()
        return False

    app = HostileApp(on_connect=on_connect)
    gw = start_mux(stack, app)
    growth = Growth(gw.proc.popen.pid)
    go.set()
    assert done.wait(WAIT), "the app could not write its flood (the gateway stopped reading it)"
    assert not app.errors, app.errors
    return gw, growth


def test_app_websocket_ping_flood_without_reading(stack):
    """4M empty WebSocket pings from an application that never reads."""
    gw, growth = _app_flood(stack, lambda sock: ws_ping_flood(sock, 4_000_000))
    check("mux app WebSocket ping flood", gw, growth)


def test_app_mux_ping_flood_without_reading(stack):
    """4M empty mux PINGs (in 64 KiB batches) from an application that
    never reads."""
    gw, growth = _app_flood(stack, lambda sock: mux_ping_flood(sock, 4_000_000))
    check("mux app PING flood", gw, growth)


def test_app_empty_messages_to_non_reading_client(stack):
    """3M empty MESSAGEs from the application to a client that never
    reads: every frame counts against `mux.session_queue_bytes`, so the
    client is closed as a slow consumer instead of the queue growing."""
    done = threading.Event()

    def on_session(sock, sid):
        try:
            empty_message_flood(sock, sid, 3_000_000)
        finally:
            done.set()
        return False

    app = HostileApp(on_session=on_session)
    gw = start_mux(stack, app)
    growth = Growth(gw.proc.popen.pid)
    client = rawws.connect(gw.addr, small_rcvbuf=True)
    assert done.wait(WAIT), "the app could not write its flood"
    assert not app.errors, app.errors
    check("mux app empty messages to a non-reading client", gw, growth)
    client.close()
