"""The test plays the gateway: a websockets client speaking tidegate.mux.v1
to a ``MuxServer`` (in-process or the echo example as a subprocess).

Kept separate from the tests so later suites (through the real gateway)
can reuse it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tidegate_mux.bodies import OpenBody
from tidegate_mux.codec import KIND_BINARY, KIND_TEXT, SUBPROTOCOL, Close, Frame, FrameType, decode_all, encode_batch

TIMEOUT = 20.0
"""Generous: a wait that long means the behaviour is missing, not slow."""

TEST_TIMEOUT = 60.0


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run one async test body (plain asyncio, no plugin); the limit only
    stops a hung test."""
    return asyncio.run(asyncio.wait_for(coro, TEST_TIMEOUT))


def new_instance() -> str:
    """A fresh ``X-Tidegate-Instance``, so tests never share session keys."""
    return secrets.token_hex(8)


class GatewayPeer:
    def __init__(self, ws: ClientConnection, instance: str, fanout: bool = False) -> None:
        self.ws = ws
        self.instance = instance
        self.fanout = fanout
        """The app answered the offer of extension ``fanout`` (§10)."""
        self._frames: deque[Frame] = deque()
        self.messages = 0
        """WebSocket messages received (to see batching)."""

    @classmethod
    async def connect(
        cls, port: int, instance: str | None = None, slot: int = 0, host: str = "127.0.0.1", offer_fanout: bool = False
    ) -> GatewayPeer:
        """``offer_fanout``: offer extension ``fanout`` as the gateway does."""
        instance = instance or new_instance()
        headers = {"X-Tidegate-Instance": instance, "X-Tidegate-Slot": str(slot)}
        if offer_fanout:
            headers["X-Tidegate-Mux-Extensions"] = "future-thing, fanout"
        ws = await connect(
            f"ws://{host}:{port}/",
            subprotocols=[SUBPROTOCOL],
            additional_headers=headers,
            compression=None,
            open_timeout=TIMEOUT,
        )
        assert ws.subprotocol == SUBPROTOCOL
        answer = ws.response.headers.get("X-Tidegate-Mux-Extensions", "") if ws.response else ""
        return cls(ws, instance, fanout="fanout" in [t.strip() for t in answer.split(",")])

    async def send(self, *frames: Frame) -> None:
        """All ``frames`` in one binary WebSocket message (a batch)."""
        await self.ws.send(encode_batch(frames))

    async def recv_message(self) -> list[Frame]:
        """The frames of the next WebSocket message."""
        msg = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        self.messages += 1
        return decode_all(msg, fanout=self.fanout)

    async def next(self) -> Frame:
        while not self._frames:
            self._frames.extend(await self.recv_message())
        return self._frames.popleft()

    async def expect(self, kind: FrameType, session: int | None = None) -> Frame:
        """The first frame of ``kind`` (for ``session``), in arrival order.
        Frames that do not match stay buffered for later calls."""
        while True:
            for i, f in enumerate(self._frames):
                if f.type is kind and (session is None or f.session == session):
                    del self._frames[i]
                    return f
            self._frames.extend(await self.recv_message())

    async def open(self, session: int, path: str = "/", query: str = "", protocols: list[str] | None = None, resumed: bool = False) -> Frame:
        """OPEN and wait for the answer (ACCEPT or REJECT)."""
        await self.send(Frame.open(session, resumed, OpenBody(path=path, query=query, protocols=protocols or [], client_addr="127.0.0.1:1")))
        while True:
            for i, f in enumerate(self._frames):
                if f.session == session and f.type in (FrameType.ACCEPT, FrameType.REJECT):
                    del self._frames[i]
                    return f
            self._frames.extend(await self.recv_message())

    async def text(self, session: int, text: str) -> None:
        await self.send(Frame.message(session, KIND_TEXT, True, text.encode()))

    async def binary(self, session: int, data: bytes) -> None:
        await self.send(Frame.message(session, KIND_BINARY, True, data))

    async def recv_text(self, session: int) -> str:
        """One whole message of ``session`` (assembling fragments)."""
        parts = []
        while True:
            f = await self.expect(FrameType.MESSAGE, session)
            parts.append(f.body)
            if f.fin:
                return b"".join(parts).decode()

    async def close_session(self, session: int, code: int = 1000, reason: str = "") -> None:
        await self.send(Frame.close(session, Close(code, reason)))

    async def closed_with(self) -> tuple[int | None, str]:
        """Read until the app closes the connection; its (code, reason)."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        except ConnectionClosed as e:
            rcvd = e.rcvd
            return (rcvd.code, rcvd.reason) if rcvd is not None else (None, "")

    async def aclose(self) -> None:
        await self.ws.close()
