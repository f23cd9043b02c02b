"""Python `websockets` (asyncio client) through tidegate, over ws:// and wss://."""

from __future__ import annotations

import asyncio
import json
import os

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from conftest import run


def test_echo_text(echo):
    async def body():
        async with echo.connect() as ws:
            for msg in ["hello", "", "héllo wörld ✓ 🌊", "x" * 70_000]:
                await ws.send(msg)
                assert await ws.recv() == msg

    run(body())


def test_echo_binary(echo):
    async def body():
        async with echo.connect() as ws:
            for msg in [b"\x00\x01\x02\xff", b"", os.urandom(125), os.urandom(126), os.urandom(65_536), os.urandom(3 << 20)]:
                await ws.send(msg)
                got = await ws.recv()
                assert isinstance(got, bytes)
                assert got == msg

    run(body())


def test_many_messages_keep_order(echo):
    async def body():
        async with echo.connect() as ws:
            async def sender():
                for i in range(2000):
                    await ws.send(f"m{i}")

            task = asyncio.create_task(sender())
            for i in range(2000):
                assert await ws.recv() == f"m{i}"
            await task

    run(body())


@pytest.mark.parametrize("kind", ["text", "binary"])
def test_fragmented_message_echoed_intact(echo, kind):
    if kind == "text":
        parts = ["frag-one ", "ü" * 1000, " frag-three", "", " end"]
        expected = "".join(parts)
    else:
        parts = [os.urandom(n) for n in (1, 1000, 70_000, 0, 5)]
        expected = b"".join(parts)

    async def fragments():
        for p in parts:
            yield p
            await asyncio.sleep(0.01)  # let each fragment leave as its own frame

    async def body():
        async with echo.connect() as ws:
            await ws.send(fragments())
            assert await ws.recv() == expected
            # the connection is still usable afterwards
            await ws.send("after")
            assert await ws.recv() == "after"

    run(body())


def test_ping_pong(echo):
    async def body():
        async with echo.connect(ping_interval=None) as ws:
            for payload in [b"", b"ping-1", os.urandom(125)]:
                pong = await ws.ping(payload)
                await asyncio.wait_for(pong, 20)
            # interleaved with data
            await ws.send("data")
            pong = await ws.ping(b"between")
            assert await ws.recv() == "data"
            await asyncio.wait_for(pong, 20)

    run(body())


def test_client_close_code_echoed(echo):
    async def body():
        async with echo.connect() as ws:
            await ws.send("before close")
            assert await ws.recv() == "before close"
            await ws.close(4000, "bye")
            assert ws.protocol.close_rcvd is not None, "no close frame came back"
            assert ws.protocol.close_rcvd.code == 4000
            assert ws.protocol.close_sent.code == 4000

    run(body())


def test_normal_close(echo):
    async def body():
        ws = await echo.connect()
        await ws.close()
        assert ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 1000

    run(body())


def test_permessage_deflate_not_negotiated(pyup):
    async def body():
        # websockets offers permessage-deflate by default
        async with pyup.connect(compression="deflate") as ws:
            assert ws.protocol.extensions == []
            await ws.send("whoami")
            info = json.loads(await ws.recv())
            assert info["extensions"] == []
            await ws.send("still plain " * 100)
            assert await ws.recv() == "still plain " * 100

    run(body())


def test_path_and_query_passed_through(pyup):
    async def body():
        async with pyup.connect("/chat/room-1?user=alice&x=%20y") as ws:
            await ws.send("whoami")
            info = json.loads(await ws.recv())
            assert info["path"] == "/chat/room-1?user=alice&x=%20y"

    run(body())


def test_python_upstream_echo(pyup):
    async def body():
        async with pyup.connect() as ws:
            await ws.send("via python upstream")
            assert await ws.recv() == "via python upstream"
            blob = os.urandom(200_000)
            await ws.send(blob)
            assert await ws.recv() == blob

    run(body())


@pytest.mark.parametrize("code,reason", [(4001, "magic close"), (1000, ""), (1008, "policy"), (4999, "ü" * 20)])
def test_upstream_close_code_reaches_client(pyup, code, reason):
    async def body():
        async with pyup.connect() as ws:
            await ws.send(f"close:{code}:{reason}")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 20)
            assert ws.protocol.close_rcvd is not None, "client saw no close frame"
            assert ws.protocol.close_rcvd.code == code
            assert ws.protocol.close_rcvd.reason == reason

    run(body())


def test_origin_policy(stack, echo_upstream):
    gw = stack.proxy(echo_upstream, allow_origins=["https://app.example.com", "https://*.example.org"])

    async def connect(origin):
        from websockets.asyncio.client import connect

        async with connect(gw.url(), origin=origin, open_timeout=20) as ws:
            await ws.send("ok")
            return await ws.recv()

    async def body():
        assert await connect("https://app.example.com") == "ok"
        assert await connect("https://eu.example.org") == "ok"
        for bad in ["https://evil.example.com", "http://app.example.com", "https://example.org.evil.test"]:
            with pytest.raises(InvalidStatus) as e:
                await connect(bad)
            assert e.value.response.status_code == 403, bad

    run(body())


def test_plain_http_request_proxied(echo):
    """A GET without the upgrade headers is proxied as plain HTTP (routes
    carry HTTP by default): the echo upstream's own 200 comes back."""
    import socket
    import ssl as ssl_mod

    host, port = echo.gw.addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=20)
    if echo.ssl is not None:
        sock = echo.ssl.wrap_socket(sock, server_hostname="localhost")
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    status = int(head.split(b" ", 2)[1])
    assert status == 200, head[:200]


def test_sigterm_sends_1001_and_exits_zero(tmp_path, echo_upstream):
    import signal

    import gateway as g

    with g.Stack(tmp_path) as stack:
        gw = stack.proxy(echo_upstream)

        async def body():
            from websockets.asyncio.client import connect

            async with connect(gw.url(), open_timeout=20) as ws:
                await ws.send("hi")
                assert await ws.recv() == "hi"
                gw.proc.signal(signal.SIGTERM)
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 30)
                assert ws.protocol.close_rcvd is not None, "no close frame on shutdown"
                assert ws.protocol.close_rcvd.code == 1001

        run(body())
        assert gw.proc.popen.wait(30) == 0, gw.proc.log()[-2000:]


def test_wss_by_host_name(gw_echo_wss, client_ssl):
    """The test certificate's DNS name (localhost) verifies too, via SNI."""
    from websockets.asyncio.client import connect

    port = gw_echo_wss.addr.rsplit(":", 1)[1]

    async def body():
        async with connect(f"wss://localhost:{port}/", ssl=client_ssl, open_timeout=20) as ws:
            await ws.send("sni")
            assert await ws.recv() == "sni"

    run(body())
