"""Extension ``fanout`` (docs/mux-protocol.md §10) in the Python SDK, with
the test playing the gateway: negotiation on and off, SUBSCRIBE /
UNSUBSCRIBE / PUBLISH on the wire, ``Room`` on PUBLISH and its per-session
fallback, ``MuxServer.publish``, and subscriptions across a resume."""

from __future__ import annotations

import asyncio

from mux_peer import GatewayPeer, run
from tidegate_mux import MuxServer, Room, SendResult, SessionTable
from tidegate_mux.bodies import OpenBody
from tidegate_mux.codec import KIND_BINARY, KIND_TEXT, Frame, FrameType


def server(**kw) -> MuxServer:
    return MuxServer("127.0.0.1", 0, None, table=SessionTable(), **kw)


async def open_sessions(srv: MuxServer, gw: GatewayPeer, ids: tuple[int, ...], path: str = "/r") -> list:
    await gw.send(*(Frame.open(i, False, OpenBody(path=path)) for i in ids))
    sessions = [(await srv.accept()).accept() for _ in ids]
    for _ in ids:
        await gw.expect(FrameType.ACCEPT)
    return sorted(sessions, key=lambda s: s.id[1])


def test_negotiated_room_is_subscribe_and_one_publish():
    async def main():
        async with server() as srv:
            gw = await GatewayPeer.connect(srv.port, offer_fanout=True)
            assert gw.fanout, "the 101 names fanout when the gateway offered it"
            s1, s2, s3 = await open_sessions(srv, gw, (1, 2, 3))
            assert all(s.fanout for s in (s1, s2, s3))
            room = Room("lobby")
            for s in (s1, s2, s3):
                room.join(s)
            room.join(s1)  # again: no second SUBSCRIBE
            subs = [await gw.expect(FrameType.SUBSCRIBE) for _ in range(3)]
            assert [(f.session, f.body) for f in subs] == [(1, b"lobby"), (2, b"lobby"), (3, b"lobby")]
            assert s1.channels == {"lobby"}

            report = room.broadcast("hello", exclude=s1)
            assert (report.sent, report.published, report.accepted) == (2, 1, 2)
            pub = await gw.expect(FrameType.PUBLISH)
            assert (pub.session, pub.flags) == (1, KIND_TEXT), "except = the excluded session, text"
            assert pub.published() == ("lobby", b"hello")
            report = room.broadcast(b"\x00bin")
            assert (report.sent, report.published) == (3, 1)
            pub = await gw.expect(FrameType.PUBLISH)
            assert (pub.session, pub.flags, pub.published()) == (0, KIND_BINARY, ("lobby", b"\x00bin"))

            room.leave(s2)
            unsub = await gw.expect(FrameType.UNSUBSCRIBE)
            assert (unsub.session, unsub.body) == (2, b"lobby")
            await gw.close_session(3)
            while s3.closed is None:
                await asyncio.sleep(0.01)
            report = room.broadcast("after")
            assert (report.sent, report.closed, len(room)) == (1, 1, 1)
            # Nothing but PUBLISH frames for the room went out: no MESSAGE.
            await gw.expect(FrameType.PUBLISH)
            assert not [f for f in gw._frames if f.type is FrameType.MESSAGE]
            await gw.aclose()

    run(main())


def test_without_the_offer_room_sends_per_session_and_no_fanout_frame():
    async def main():
        for offer, enabled in ((False, True), (True, False)):
            async with server(fanout=enabled) as srv:
                gw = await GatewayPeer.connect(srv.port, offer_fanout=offer)
                assert not gw.fanout, "no fanout in the 101 unless both sides name it"
                s1, s2 = await open_sessions(srv, gw, (1, 2))
                room = Room("lobby")
                room.join(s1)
                room.join(s2)
                assert s1.subscribe("other") is False, "not carried by the gateway"
                report = room.broadcast("hi", exclude=s2)
                assert (report.sent, report.published) == (1, 0)
                assert await gw.recv_text(1) == "hi"
                assert srv.publish_nowait("other", "direct").sent == 1, "fallback: subscribers get MESSAGEs"
                assert await gw.recv_text(1) == "direct"
                # A decoder without the extension would fail on 0x09-0x0B:
                # nothing of the kind was sent.
                assert all(not f.type.is_fanout for f in gw._frames)
                await gw.aclose()

    run(main())


def test_server_publish_goes_once_per_gateway_instance():
    async def main():
        async with server() as srv:
            a = await GatewayPeer.connect(srv.port, offer_fanout=True)
            a2 = await GatewayPeer.connect(srv.port, instance=a.instance, slot=1, offer_fanout=True)
            b = await GatewayPeer.connect(srv.port, offer_fanout=True)
            (sa,) = await open_sessions(srv, a, (5,))
            (sb,) = await open_sessions(srv, b, (5,))
            sa.subscribe("feed")
            sb.subscribe("feed")
            await a.expect(FrameType.SUBSCRIBE, 5)
            await b.expect(FrameType.SUBSCRIBE, 5)
            for n in range(3):
                report = await srv.publish("feed", f"tick {n}", exclude=sa)
                assert (report.published, report.sent) == (2, 0)
            # Always on the oldest connection of an instance (order per
            # channel holds per connection); except only where sa lives.
            for n in range(3):
                pa, pb = await a.expect(FrameType.PUBLISH), await b.expect(FrameType.PUBLISH)
                assert (pa.session, pa.published()) == (5, ("feed", f"tick {n}".encode()))
                assert (pb.session, pb.published()) == (0, ("feed", f"tick {n}".encode()))
            try:
                srv.publish_nowait("bad name", "x")
            except ValueError:
                pass
            else:
                raise AssertionError("an invalid channel name is refused")
            for gw in (a, a2, b):
                await gw.aclose()

    run(main())


def test_subscriptions_survive_a_resume_and_changes_meanwhile_follow():
    async def main():
        async with server() as srv:
            gw = await GatewayPeer.connect(srv.port, offer_fanout=True)
            s1, s2 = await open_sessions(srv, gw, (1, 2))
            room = Room("lobby")
            room.join(s1)
            room.join(s2)
            s1.subscribe("news")
            for _ in range(3):
                await gw.expect(FrameType.SUBSCRIBE)

            await gw.aclose()
            while s1._conn is not None or s2._conn is not None:
                await asyncio.sleep(0.01)
            # Detached: the room still has both; a broadcast has no fan-out
            # connection and holds the message for each member's resume.
            report = room.broadcast("held")
            assert (report.resuming, report.published) == (2, 0)
            s1.unsubscribe("news")
            s1.subscribe("sport")
            room.leave(s2)
            room.join(s2)  # leave + join while detached: SUBSCRIBE again (a set: harmless)

            gw2 = await GatewayPeer.connect(srv.port, instance=gw.instance, offer_fanout=True)
            for sid in (1, 2):
                assert (await gw2.open(sid, resumed=True)).type is FrameType.ACCEPT
            assert await gw2.recv_text(1) == "held"
            assert await gw2.recv_text(2) == "held"
            # Only what changed while detached is sent; lobby was kept.
            changes = {(f.type, f.session, f.body) for f in [await gw2.next() for _ in range(3)]}
            assert changes == {
                (FrameType.UNSUBSCRIBE, 1, b"news"),
                (FrameType.SUBSCRIBE, 1, b"sport"),
                (FrameType.SUBSCRIBE, 2, b"lobby"),
            }
            assert s1.channels == {"lobby", "sport"} and len(room) == 2
            report = room.broadcast("back")
            assert (report.sent, report.published) == (2, 1)
            assert (await gw2.expect(FrameType.PUBLISH)).published() == ("lobby", b"back")
            assert s1.send_nowait("still a session") is SendResult.SENT
            await gw2.aclose()

    run(main())
