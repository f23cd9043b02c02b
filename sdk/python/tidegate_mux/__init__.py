"""tidegate_mux: the application side of tidegate's ``tidegate.mux.v1``.

tidegate in mux mode carries many client WebSocket sessions over a few
long-lived WebSocket connections to the application
(docs/mux-protocol.md). This package is that application's server::

    async def handler(incoming):
        session = incoming.accept()
        async for message in session:
            await session.send(message)

    server = MuxServer("0.0.0.0", 9000, handler)
    await run_until_signal(server)   # SIGTERM: GOAWAY, drain, exit

``codec`` is the wire format on its own (no I/O). With the gateway's
extension ``fanout`` (§10), ``session.subscribe(channel)`` and
``server.publish(channel, msg)`` hand broadcasts to the gateway, and
``Room`` uses them by itself.
"""

from .bodies import AcceptBody, GoawayBody, OpenBody, RejectBody
from .codec import SUBPROTOCOL, Close, Frame, FrameType, valid_channel
from .errors import CodecError, MuxError, SessionClosed
from .incoming import AlreadyAnswered, Incoming
from .limits import Limits
from .room import Delivery, Room
from .runner import run_until_signal
from .server import MuxServer, ServerClosed
from .session import SendResult, Session
from .table import PROCESS_TABLE, SessionTable

__all__ = [
    "SUBPROTOCOL",
    "AcceptBody",
    "AlreadyAnswered",
    "Close",
    "CodecError",
    "Delivery",
    "Frame",
    "FrameType",
    "GoawayBody",
    "Incoming",
    "Limits",
    "MuxError",
    "MuxServer",
    "OpenBody",
    "PROCESS_TABLE",
    "RejectBody",
    "Room",
    "SendResult",
    "ServerClosed",
    "Session",
    "SessionClosed",
    "SessionTable",
    "run_until_signal",
    "valid_channel",
]
