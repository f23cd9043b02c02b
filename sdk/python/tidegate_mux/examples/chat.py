"""Chat rooms for tidegate in mux mode: the path names the room
(``/lobby``), the query the nickname (``?nick=ada``); every message is
broadcast to everyone in the room as ``nick: text``.

    python -m tidegate_mux.examples.chat --listen 127.0.0.1:0

Shows the pull style (``MuxServer.accept()``), ``Room`` (a room is a
gateway fan-out channel when the gateway offers extension ``fanout``: join
is one SUBSCRIBE, a broadcast one PUBLISH that the gateway delivers to
every member; otherwise a broadcast that never waits for one member,
``send_nowait`` underneath — the same code either way), the per-session
``data`` slot, the parsed query, reading the close code, and rebuilding a
session's state when it arrives resumed after this process restarted.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import SessionClosed
from ..incoming import Incoming
from ..room import Room
from ..server import MuxServer, ServerClosed
from ..session import Session
from ._cli import parser, serve_until_sigterm, setup_logging

log = logging.getLogger("chat")


class Chat:
    def __init__(self) -> None:
        self.rooms: dict[str, Room] = {}

    def room(self, name: str) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name)
        return room

    async def serve(self, incoming: Incoming) -> None:
        room = self.room(incoming.open.path.strip("/") or "lobby")
        session = incoming.accept("chat" if "chat" in incoming.open.protocols else None)
        # Everything this app knows about a client comes from the OPEN, so
        # a session resumed after a restart (incoming.resumed: the client
        # never left, this process is new) is rebuilt the same way; only
        # the greeting differs.
        session.data = incoming.open.param("nick") or f"guest-{incoming.id[1] % 10000}"
        room.join(session)
        if not incoming.resumed:
            room.broadcast(f"* {session.data} joined", exclude=session)
        try:
            await self.relay(room, session)
        finally:
            room.leave(session)
            if not room:
                self.rooms.pop(room.name, None)

    async def relay(self, room: Room, session: Session) -> None:
        while True:
            try:
                message = await session.recv()
            except SessionClosed as closed:
                # `async for` would end quietly here; recv() says why.
                who = "app" if closed.by_app else "client"
                log.info("%s left %s: %s closed %s", session.data, room.name, who, closed.code)
                room.broadcast(f"* {session.data} left")
                return
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            report = room.broadcast(f"{session.data}: {text}")
            if report.full:
                log.warning("%s: %d member(s) too slow, message dropped for them", room.name, report.full)


async def accept_loop(server: MuxServer, chat: Chat) -> None:
    tasks: set[asyncio.Task[None]] = set()
    while True:
        try:
            incoming = await server.accept()
        except ServerClosed:
            return
        task = asyncio.create_task(chat.serve(incoming))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def run(server: MuxServer) -> None:
    loop_task = asyncio.create_task(accept_loop(server, Chat()))
    try:
        await serve_until_sigterm(server, "chat")
    finally:
        loop_task.cancel()


def main() -> None:
    args = parser("tidegate mux chat application").parse_args()
    setup_logging(args.verbose)
    server = MuxServer(*args.listen, resume_grace=args.resume_grace, reuse_port=args.reuse_port)
    asyncio.run(run(server))


if __name__ == "__main__":
    main()
