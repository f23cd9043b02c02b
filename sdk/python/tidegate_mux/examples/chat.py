"""Chat rooms for tidegate in mux mode: the path names the room, every
message is broadcast to everyone in it (sender included).

    python -m tidegate_mux.examples.chat --listen 127.0.0.1:0

Shows the pull style (``MuxServer.accept()``) and sessions that survive a
resume: a room holds ``Session`` objects, which keep working when the
gateway moves them to another mux connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from ..errors import SessionClosed
from ..server import MuxServer, ServerClosed
from ..session import Session
from ._cli import parser, serve_until_sigterm, setup_logging

log = logging.getLogger("chat")


class Rooms:
    def __init__(self) -> None:
        self.members: dict[str, set[Session]] = defaultdict(set)

    async def join(self, room: str, session: Session) -> None:
        """Relay the session's messages to its room until it closes."""
        self.members[room].add(session)
        try:
            async for message in session:
                await self.broadcast(room, message)
        finally:
            self.members[room].discard(session)
            if not self.members[room]:
                del self.members[room]

    async def broadcast(self, room: str, message: str | bytes) -> None:
        for member in list(self.members.get(room, ())):
            try:
                await member.send(message)
            except SessionClosed:
                self.members[room].discard(member)


async def accept_loop(server: MuxServer, rooms: Rooms) -> None:
    tasks: set[asyncio.Task[None]] = set()
    while True:
        try:
            incoming = await server.accept()
        except ServerClosed:
            return
        room = incoming.open.path.strip("/") or "lobby"
        session = incoming.accept("chat" if "chat" in incoming.open.protocols else None)
        task = asyncio.create_task(rooms.join(room, session))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def run(server: MuxServer) -> None:
    loop_task = asyncio.create_task(accept_loop(server, Rooms()))
    try:
        await serve_until_sigterm(server, "chat")
    finally:
        loop_task.cancel()


def main() -> None:
    args = parser("tidegate mux chat application").parse_args()
    setup_logging(args.verbose)
    asyncio.run(run(MuxServer(*args.listen, resume_grace=args.resume_grace)))


if __name__ == "__main__":
    main()
