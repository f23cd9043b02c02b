"""Session.send_nowait, the backlog behind it, Room and the lifecycle
helpers (data slot, parsed query), against an in-process MuxServer with
the test playing the gateway."""

from __future__ import annotations

import asyncio

from mux_peer import GatewayPeer, run
from tidegate_mux import Limits, MuxServer, Room, SendResult, SessionTable
from tidegate_mux.bodies import OpenBody
from tidegate_mux.codec import Frame, FrameType


def server(**kw) -> MuxServer:
    return MuxServer("127.0.0.1", 0, None, table=SessionTable(), **kw)


def test_send_nowait_sends_holds_for_the_resume_and_reports_full_and_closed():
    async def main():
        async with server(limits=Limits(send_backlog_bytes=12)) as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.send(Frame.open(5, False, OpenBody()))
            session = (await srv.accept()).accept()
            await gw.expect(FrameType.ACCEPT, 5)
            assert session.send_nowait("now") is SendResult.SENT
            assert await gw.recv_text(5) == "now"

            # Connection lost: held for the resume, in order, up to the bound.
            await gw.aclose()
            while session._conn is not None:
                await asyncio.sleep(0.01)
            assert session.send_nowait("held-1") is SendResult.RESUMING
            assert session.send_nowait("held-2") is SendResult.RESUMING
            assert session.send_nowait("over the bound") is SendResult.FULL
            gw2 = await GatewayPeer.connect(srv.port, instance=gw.instance)
            assert (await gw2.open(5, resumed=True)).type is FrameType.ACCEPT
            assert [await gw2.recv_text(5), await gw2.recv_text(5)] == ["held-1", "held-2"]
            assert session.send_nowait("after") is SendResult.SENT
            assert await gw2.recv_text(5) == "after"

            await session.close(1000, "bye")
            assert session.send_nowait("too late") is SendResult.CLOSED
            await gw2.aclose()

    run(main())


def test_room_broadcast_never_waits_and_drops_closed_members():
    async def main():
        async with server() as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.send(*(Frame.open(i, False, OpenBody(path="/r", query=f"nick=n{i}&x=a+b")) for i in (1, 2, 3)))
            room = Room("r")
            sessions = []
            for _ in range(3):
                inc = await srv.accept()
                s = inc.accept()
                s.data = inc.open.param("nick")
                assert inc.open.params["x"] == ["a b"], "the query, parsed"
                room.join(s)
                sessions.append(s)
            for _ in range(3):
                await gw.expect(FrameType.ACCEPT)
            assert [s.data for s in sessions] == ["n1", "n2", "n3"]

            report = room.broadcast("hello", exclude=sessions[0])
            assert (report.sent, report.accepted) == (2, 2)
            got = {(await gw.expect(FrameType.MESSAGE)).session for _ in range(2)}
            assert got == {2, 3}

            await gw.close_session(3)
            while sessions[2].closed is None:
                await asyncio.sleep(0.01)
            report = room.broadcast(b"again")
            assert (report.sent, report.closed) == (2, 1)
            assert len(room) == 2 and sessions[2] not in room
            await gw.aclose()

    run(main())
