"""MuxServer tests: the test plays the gateway over a real socket
(mux_peer.GatewayPeer) against an in-process MuxServer."""

from __future__ import annotations


import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from mux_peer import GatewayPeer, new_instance, run
from tidegate_mux import Limits, MuxServer, SessionClosed, SessionTable
from tidegate_mux.bodies import AcceptBody, GoawayBody, OpenBody, RejectBody
from tidegate_mux.codec import KIND_BINARY, KIND_CONTINUATION, KIND_TEXT, SUBPROTOCOL, Close, Frame, FrameType
from tidegate_mux.examples.echo import echo


def server(handler=echo, **kw) -> MuxServer:
    # Each test its own table, so no state leaks between tests.
    return MuxServer("127.0.0.1", 0, handler, table=SessionTable(), **kw)


def test_open_accept_with_protocol_and_echo():
    async def main():
        async with server() as srv:
            gw = await GatewayPeer.connect(srv.port)
            ans = await gw.open(7, "/chat", "room=1", protocols=["chat", "other"])
            assert ans.type is FrameType.ACCEPT
            assert AcceptBody.from_json(ans.body).protocol == "chat"
            await gw.text(7, "hi")
            assert await gw.recv_text(7) == "hi"
            await gw.binary(7, b"\x00\xff")
            f = await gw.expect(FrameType.MESSAGE, 7)
            assert (f.message_kind, f.fin, f.body) == (KIND_BINARY, True, b"\x00\xff")
            await gw.aclose()

    run(main())


def test_fragments_are_assembled_and_big_messages_fragmented():
    async def main():
        async with server(limits=Limits(fragment_bytes=30)) as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.open(1)
            await gw.send(
                Frame.message(1, KIND_TEXT, False, b"hel"),
                Frame.message(1, KIND_CONTINUATION, False, b"lo "),
            )
            await gw.send(Frame.message(1, KIND_CONTINUATION, True, "wörld".encode()))
            f = await gw.expect(FrameType.MESSAGE, 1)
            assert (f.message_kind, f.fin, f.body.decode()) == (KIND_TEXT, True, "hello wörld")
            # 100 bytes come back as 30+30+30+10: binary first, continuations, FIN last.
            await gw.binary(1, bytes(range(100)))
            frames = [await gw.expect(FrameType.MESSAGE, 1) for _ in range(4)]
            assert [len(f.body) for f in frames] == [30, 30, 30, 10]
            assert [f.message_kind for f in frames] == [KIND_BINARY, KIND_CONTINUATION, KIND_CONTINUATION, KIND_CONTINUATION]
            assert [f.fin for f in frames] == [False, False, False, True]
            assert b"".join(f.body for f in frames) == bytes(range(100))

    run(main())


def test_batch_of_several_sessions_both_ways():
    async def main():
        async with server(handler=None) as srv:
            gw = await GatewayPeer.connect(srv.port)
            # Three OPENs in one WebSocket message.
            await gw.send(*(Frame.open(i, False, OpenBody(path=f"/{i}")) for i in (1, 2, 3)))
            incoming = [await srv.accept() for _ in range(3)]
            assert [i.open.path for i in incoming] == ["/1", "/2", "/3"]
            assert all(i.id == (gw.instance, n) for i, n in zip(incoming, (1, 2, 3)))
            sessions = [i.accept() for i in incoming]
            for _ in range(3):
                await gw.expect(FrameType.ACCEPT)
            # Messages for the three sessions in one WebSocket message.
            await gw.send(*(Frame.message(i, KIND_TEXT, True, f"to {i}".encode()) for i in (1, 2, 3)))
            assert [await s.recv() for s in sessions] == ["to 1", "to 2", "to 3"]
            # Sends that do not yield in between leave as one batch.
            for n, s in enumerate(sessions, 1):
                await s.send(f"from {n}")
            batch = await gw.recv_message()
            assert [(f.type, f.session, f.body) for f in batch] == [
                (FrameType.MESSAGE, n, f"from {n}".encode()) for n in (1, 2, 3)
            ]

    run(main())


def test_reject_by_path_and_query():
    async def main():
        async with server() as srv:
            gw = await GatewayPeer.connect(srv.port)
            ans = await gw.open(1, "/reject")
            assert ans.type is FrameType.REJECT
            assert RejectBody.from_json(ans.body).status == 403
            ans = await gw.open(2, "/x", "a=1&reject=451")
            body = RejectBody.from_json(ans.body)
            assert (ans.type, body.status, body.body) == (FrameType.REJECT, 451, "rejected by app")

    run(main())


def test_handler_that_does_not_answer_gets_reject_500():
    async def lazy(incoming):
        return None

    async def main():
        async with server(handler=lazy) as srv:
            gw = await GatewayPeer.connect(srv.port)
            ans = await gw.open(1)
            assert (ans.type, RejectBody.from_json(ans.body).status) == (FrameType.REJECT, 500)

    run(main())


def test_close_both_ways():
    async def main():
        async with server(handler=None) as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.send(Frame.open(1, False, OpenBody()), Frame.open(2, False, OpenBody()))
            s1 = (await srv.accept()).accept()
            s2 = (await srv.accept()).accept()
            # Gateway → app: messages before the CLOSE are still read, then the close.
            await gw.send(Frame.message(1, KIND_TEXT, True, b"last"), Frame.close(1, Close(4000, "bye")))
            assert await s1.recv() == "last"
            with pytest.raises(SessionClosed) as e:
                await s1.recv()
            assert (e.value.code, e.value.reason, e.value.by_app) == (4000, "bye", False)
            # Frames for a finished id are ignored, the connection lives on.
            await gw.text(1, "late")
            # App → gateway.
            await s2.close(4001, "done")
            f = await gw.expect(FrameType.CLOSE, 2)
            assert Close.decode(f.body) == Close(4001, "done")
            with pytest.raises(SessionClosed):
                await s2.send("after close")
            # An empty CLOSE reads as 1005.
            await gw.send(Frame.open(3, False, OpenBody()))
            s3 = (await srv.accept()).accept()
            await gw.send(Frame.close(3, Close()))
            assert [m async for m in s3] == []
            assert s3.closed.code == 1005
            await gw.send(Frame.ping(b"alive"))
            assert (await gw.expect(FrameType.PONG)).body == b"alive"

    run(main())


def test_accept_after_the_gateway_withdrew_the_open():
    async def main():
        async with server(handler=None) as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.send(Frame.open(1, False, OpenBody()))
            incoming = await srv.accept()
            # The gateway's open timeout: CLOSE 1001 for the id.
            await gw.send(Frame.close(1, Close(1001, "open timeout")), Frame.ping(b"after"))
            assert (await gw.expect(FrameType.PONG)).body == b"after"
            session = incoming.accept()
            assert [m async for m in session] == []
            assert (session.closed.code, session.closed.reason) == (1001, "open timeout")
            # No ACCEPT went out for the withdrawn id.
            await gw.send(Frame.ping(b"end"))
            assert (await gw.next()).type is FrameType.PONG

    run(main())


def test_ping_pong():
    async def main():
        async with server() as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.send(Frame.ping(b"12345678"), Frame.ping(b""))
            assert (await gw.expect(FrameType.PONG)).body == b"12345678"
            assert (await gw.expect(FrameType.PONG)).body == b""

    run(main())


def test_resume_on_a_second_connection_after_connection_loss():
    async def main():
        accepted = []

        async def handler(incoming):
            accepted.append(incoming)
            await echo(incoming)

        async with server(handler=handler) as srv:
            gw1 = await GatewayPeer.connect(srv.port, slot=0)
            await gw1.open(5, "/room")
            await gw1.text(5, "one")
            assert await gw1.recv_text(5) == "one"
            await gw1.aclose()
            # Same instance, another connection: OPEN + RESUMED is ACCEPTed by
            # the SDK itself and the same Session (and handler) carries on.
            gw2 = await GatewayPeer.connect(srv.port, instance=gw1.instance, slot=1)
            ans = await gw2.open(5, "/room", resumed=True)
            assert ans.type is FrameType.ACCEPT
            await gw2.text(5, "two")
            assert await gw2.recv_text(5) == "two"
            assert len(accepted) == 1
            # A resumed OPEN this process does not know surfaces as Incoming.
            ans = await gw2.open(6, "/room", resumed=True)
            assert ans.type is FrameType.ACCEPT
            assert [i.resumed for i in accepted] == [False, True]

    run(main())


def test_resume_while_old_connection_still_open():
    async def main():
        async with server(handler=None) as srv:
            gw1 = await GatewayPeer.connect(srv.port)
            await gw1.send(Frame.open(9, False, OpenBody()))
            session = (await srv.accept()).accept()
            await gw1.expect(FrameType.ACCEPT, 9)
            gw2 = await GatewayPeer.connect(srv.port, instance=gw1.instance)
            srv.goaway("deploy")
            assert GoawayBody.from_json((await gw1.expect(FrameType.GOAWAY)).body).reason == "deploy"
            await gw2.expect(FrameType.GOAWAY)
            # goaway() stopped listening: the gateway's next connection goes
            # to whoever listens now (a new instance), never back here.
            with pytest.raises(OSError):
                await GatewayPeer.connect(srv.port, instance=gw1.instance)
            assert (await gw2.open(9, resumed=True)).type is FrameType.ACCEPT
            # Old connection may still deliver; new frames go out on the new one.
            await gw1.text(9, "via old")
            assert await session.recv() == "via old"
            await session.send("reply")
            assert await gw2.recv_text(9) == "reply"
            await gw1.aclose()
            await gw2.text(9, "via new")
            assert await session.recv() == "via new"
            assert session.closed is None

    run(main())


def test_session_closed_1006_when_not_resumed_within_grace():
    async def main():
        async with server(handler=None, resume_grace=0.2) as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.send(Frame.open(1, False, OpenBody()))
            session = (await srv.accept()).accept()
            await gw.expect(FrameType.ACCEPT)
            await gw.aclose()
            with pytest.raises(SessionClosed) as e:
                await session.recv()
            assert e.value.code == 1006
            assert len(srv.table) == 0

    run(main())


def test_app_close_while_detached_is_delivered_on_resume():
    async def main():
        async with server(handler=None) as srv:
            gw1 = await GatewayPeer.connect(srv.port)
            await gw1.send(Frame.open(1, False, OpenBody()))
            session = (await srv.accept()).accept()
            await gw1.expect(FrameType.ACCEPT)
            await gw1.aclose()
            await srv.wait_drained(10)
            await session.close(4002, "later")
            gw2 = await GatewayPeer.connect(srv.port, instance=gw1.instance)
            assert (await gw2.open(1, resumed=True)).type is FrameType.ACCEPT
            assert Close.decode((await gw2.expect(FrameType.CLOSE, 1)).body) == Close(4002, "later")

    run(main())


def test_slow_consumer_is_closed_1008():
    async def main():
        async with server(handler=None, limits=Limits(session_queue_bytes=1000)) as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.send(Frame.open(1, False, OpenBody()))
            session = (await srv.accept()).accept()  # and never read
            for _ in range(5):
                await gw.binary(1, b"x" * 300)
            f = await gw.expect(FrameType.CLOSE, 1)
            assert Close.decode(f.body).code == 1008
            with pytest.raises(SessionClosed) as e:
                await session.recv()
            assert e.value.code == 1008

    run(main())


@pytest.mark.parametrize(
    ("payload", "label"),
    [
        ("a text message", "text_message"),
        (b"", "truncated"),
        (bytes([9, 0, 0, 0, 0, 1, 0, 0, 0, 0]), "unknown_type"),
        (bytes([4, 0x06, 0, 0, 0, 1, 0, 0, 0, 0]), "bad_flags"),
        (bytes([6, 0, 0, 0, 0, 1, 0, 0, 0, 0]), "bad_session"),
        (Frame(FrameType.ACCEPT, 0, 1, b"{}").encode(), "wrong_direction"),
        (Frame(FrameType.GOAWAY, 0, 0, b"").encode(), "wrong_direction"),
        (Frame(FrameType.OPEN, 0, 1, b"[1]").encode(), "bad_json"),
        (Frame(FrameType.CLOSE, 0, 1, b"\x03").encode(), "bad_close"),
        (bytes([4, 3, 0, 0, 0, 1, 0, 0, 0, 9]) + b"short", "truncated"),
    ],
)
def test_malformed_closes_connection_1002(payload, label):
    async def main():
        async with server() as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.ws.send(payload)
            assert await gw.closed_with() == (1002, label)

    run(main())


def test_too_big_body_closes_1002():
    async def main():
        async with server(limits=Limits(max_frame_bytes=200, fragment_bytes=50)) as srv:
            gw = await GatewayPeer.connect(srv.port)
            await gw.open(1)
            await gw.binary(1, b"x" * 201)
            assert await gw.closed_with() == (1002, "too_big")

    run(main())


def test_refuses_connections_without_subprotocol_or_instance():
    async def main():
        async with server() as srv:
            uri = f"ws://127.0.0.1:{srv.port}/"
            with pytest.raises(InvalidStatus) as e:
                await connect(uri, additional_headers={"X-Tidegate-Instance": new_instance()})
            assert e.value.response.status_code == 400
            with pytest.raises(InvalidStatus) as e:
                await connect(uri, subprotocols=[SUBPROTOCOL])
            assert e.value.response.status_code == 400
            with pytest.raises(InvalidStatus):
                await connect(uri, subprotocols=[SUBPROTOCOL], additional_headers={"X-Tidegate-Instance": "xyz"})

    run(main())


def test_a_peer_without_the_gateway_secret_is_refused_401():
    secret = "a-long-shared-secret-0123456789"

    async def main():
        async with server(gateway_secret=secret) as srv:
            uri = f"ws://127.0.0.1:{srv.port}/"
            for given in (None, "wrong", secret[:-1], secret + "x"):
                headers = {"X-Tidegate-Instance": new_instance()}
                if given is not None:
                    headers["X-Tidegate-Mux-Secret"] = given
                with pytest.raises(InvalidStatus) as e:
                    await connect(uri, subprotocols=[SUBPROTOCOL], additional_headers=headers)
                assert e.value.response.status_code == 401, given
            headers = {"X-Tidegate-Instance": new_instance(), "X-Tidegate-Mux-Secret": secret}
            async with connect(uri, subprotocols=[SUBPROTOCOL], additional_headers=headers) as ws:
                assert ws.subprotocol == SUBPROTOCOL

    run(main())


def test_close_finishes_sessions_1001():
    async def main():
        srv = server(handler=None)
        await srv.start()
        gw = await GatewayPeer.connect(srv.port)
        await gw.send(Frame.open(1, False, OpenBody()))
        session = (await srv.accept()).accept()
        await gw.expect(FrameType.ACCEPT)
        await srv.close()
        with pytest.raises(SessionClosed) as e:
            await session.recv()
        assert e.value.code == 1001
        code, _ = await gw.closed_with()
        assert code == 1001

    run(main())
