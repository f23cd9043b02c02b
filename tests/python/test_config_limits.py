"""`tidegate run --config` with a small max_message_size: a Python
`websockets` client gets close 1009 for a message over the limit."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from conftest import run

SMALL = 64 * 1024
GLOBAL = 1024 * 1024


@pytest.fixture(scope="module")
def limited_gw(stack, echo_upstream):
    return stack.run_config(
        f"""
[admin]
listen = ""

[limits]
max_frame_size = {GLOBAL}
max_message_size = {GLOBAL}

[[listeners]]
name = "default"
listen = "127.0.0.1:0"

[[upstreams]]
name = "echo"
endpoints = ["{echo_upstream}"]

[[routes]]
name = "small"
path = "/small"
upstream = "echo"
max_message_size = {SMALL}

[[routes]]
name = "default"
path = "/"
upstream = "echo"
"""
    )


async def expect_1009(ws, send):
    try:
        await send()
    except ConnectionClosed:
        pass  # the gateway may close while the message is still going out
    with pytest.raises(ConnectionClosed):
        # nothing may come back but the close
        while True:
            await asyncio.wait_for(ws.recv(), 20)
    assert ws.protocol.close_rcvd is not None, "no close frame from the gateway"
    assert ws.protocol.close_rcvd.code == 1009


def test_under_limit_passes(limited_gw):
    async def body():
        async with connect(limited_gw.url("/small"), max_size=None, open_timeout=20) as ws:
            blob = os.urandom(SMALL - 1024)
            await ws.send(blob)
            assert await ws.recv() == blob

    run(body())


def test_message_over_route_limit_gets_1009(limited_gw):
    async def body():
        async with connect(limited_gw.url("/small"), max_size=None, open_timeout=20) as ws:
            await expect_1009(ws, lambda: ws.send(os.urandom(SMALL + 1024)))

    run(body())


def test_fragmented_message_over_limit_gets_1009(limited_gw):
    """The limit is on the message (sum of fragments), not on each frame."""

    async def fragments():
        for _ in range(10):
            yield os.urandom(SMALL // 8)
            await asyncio.sleep(0.005)

    async def body():
        async with connect(limited_gw.url("/small"), max_size=None, open_timeout=20) as ws:
            await expect_1009(ws, lambda: ws.send(fragments()))

    run(body())


def test_other_route_keeps_global_limit(limited_gw):
    async def body():
        async with connect(limited_gw.url("/"), max_size=None, open_timeout=20) as ws:
            blob = os.urandom(SMALL * 4)
            await ws.send(blob)
            assert await ws.recv() == blob
            await expect_1009(ws, lambda: ws.send(os.urandom(GLOBAL + 1)))

    run(body())
