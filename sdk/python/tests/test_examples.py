"""The example applications as real processes, driven by the test playing
the gateway: the address line, echo, REJECT, SIGTERM → GOAWAY → exit 0,
and chat broadcast."""

from __future__ import annotations

import asyncio
import re

from mux_apps import ExampleApp
from mux_peer import GatewayPeer, run
from tidegate_mux.bodies import OpenBody, RejectBody
from tidegate_mux.codec import Frame, FrameType


def test_echo_prints_one_address_line(echo_app):
    assert re.fullmatch(r"tidegate-mux echo listening addr=127\.0\.0\.1:\d+", echo_app.line)
    assert echo_app.port > 0


def test_echo_echoes_and_rejects(echo_app):
    async def main():
        gw = await GatewayPeer.connect(echo_app.port)
        assert (await gw.open(1, "/echo")).type is FrameType.ACCEPT
        await gw.text(1, "hello")
        assert await gw.recv_text(1) == "hello"
        ans = await gw.open(2, "/reject")
        assert (ans.type, RejectBody.from_json(ans.body).status) == (FrameType.REJECT, 403)
        ans = await gw.open(3, "/", "reject=429")
        body = RejectBody.from_json(ans.body)
        assert (body.status, body.body) == (429, "rejected by app")
        await gw.aclose()

    run(main())


def test_echo_sigterm_sends_goaway_and_keeps_serving_until_closed(echo_app):
    async def main():
        gw = await GatewayPeer.connect(echo_app.port)
        await gw.open(1)
        echo_app.terminate()
        await gw.expect(FrameType.GOAWAY)
        # Still serving the sessions it has until the gateway closes.
        await gw.text(1, "still here")
        assert await gw.recv_text(1) == "still here"
        await gw.aclose()
        assert await asyncio.to_thread(echo_app.wait, 60) == 0

    run(main())


def test_chat_broadcasts_within_a_room():
    async def main():
        with ExampleApp("chat") as app:
            gw = await GatewayPeer.connect(app.port)
            opens = ((1, "/a", "nick=ada"), (2, "/a", "nick=bo"), (3, "/b", ""))
            await gw.send(*(Frame.open(i, False, OpenBody(path=p, query=q)) for i, p, q in opens))
            for _ in range(3):
                await gw.expect(FrameType.ACCEPT)
            assert await gw.recv_text(1) == "* bo joined", "the room hears who joins"
            await gw.text(1, "to room a")
            assert await gw.recv_text(1) == "ada: to room a"
            assert await gw.recv_text(2) == "ada: to room a"
            await gw.text(3, "to room b")
            assert (await gw.recv_text(3)).endswith(": to room b"), "no nick: a guest name"
            await gw.aclose()

    run(main())


def test_chat_rooms_are_fanout_channels_when_offered():
    async def main():
        with ExampleApp("chat") as app:
            gw = await GatewayPeer.connect(app.port, offer_fanout=True)
            assert gw.fanout
            opens = ((1, "/a", "nick=ada"), (2, "/a", "nick=bo"))
            await gw.send(*(Frame.open(i, False, OpenBody(path=p, query=q)) for i, p, q in opens))
            subs = {(f.session, f.body) for f in [await gw.expect(FrameType.SUBSCRIBE) for _ in range(2)]}
            assert subs == {(1, b"a"), (2, b"a")}, "join = SUBSCRIBE to the room's channel"
            joined = {(f.session, f.published()) for f in [await gw.expect(FrameType.PUBLISH) for _ in range(2)]}
            # The channel is the gateway's (other app instances may have
            # members), so each notice is published, except to the joiner.
            assert joined == {(1, ("a", b"* ada joined")), (2, ("a", b"* bo joined"))}
            await gw.text(1, "to room a")
            said = await gw.expect(FrameType.PUBLISH)
            assert (said.session, said.published()) == (0, ("a", b"ada: to room a"))
            assert not [f for f in gw._frames if f.type is FrameType.MESSAGE], "no per-session copies"
            await gw.aclose()

    run(main())
