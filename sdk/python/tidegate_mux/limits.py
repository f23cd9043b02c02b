"""Every limit of the SDK, named in one place, with safe defaults.

Mirrors the gateway's ``mux.*`` settings where the two sides meet
(docs/mux-protocol.md §5, §6, §8).
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec import DEFAULT_MAX_BODY, HEADER_LEN


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one ``MuxServer``. Every buffer is bounded by one of these."""

    max_frame_bytes: int = DEFAULT_MAX_BODY
    """Largest body accepted in a frame from the gateway (its
    ``mux.max_frame_bytes``); a longer one is ``too_big`` (1002)."""

    batch_bytes: int = 64 * 1024
    """The writer gathers queued frames into one WebSocket message of up to
    this size; a larger single frame goes alone (§8 batching)."""

    fragment_bytes: int = 64 * 1024 - HEADER_LEN
    """``Session.send`` splits a message into MESSAGE frames of at most this
    many payload bytes, so one big message does not hold up other sessions'
    frames and a full fragment still fits one batch."""

    connection_queue_bytes: int = 4 * 1024 * 1024
    """Outbound bytes queued for one mux connection before ``Session.send``
    waits (backpressure to the application, never a drop)."""

    send_backlog_bytes: int = 256 * 1024
    """Payload bytes ``Session.send_nowait`` may hold for one session while
    its connection's queue is full or the session is being resumed; past it
    ``send_nowait`` answers ``SendResult.FULL`` and drops the message (one
    message always fits an empty backlog)."""

    session_queue_bytes: int = 1024 * 1024
    """Inbound bytes of complete messages one session may hold unread. Above
    it the session is closed with 1008 "slow consumer" (see Session)."""

    max_message_bytes: int = 16 * 1024 * 1024
    """Largest message assembled from fragments; a bigger one closes the
    session with 1009."""

    pending_opens: int = 1024
    """OPENs waiting for ``MuxServer.accept()``; beyond it the gateway gets
    REJECT 503 at once instead of a growing backlog."""

    def __post_init__(self) -> None:
        if self.fragment_bytes <= 0 or self.batch_bytes <= 0:
            raise ValueError("fragment_bytes and batch_bytes must be positive")
        if self.fragment_bytes > self.max_frame_bytes:
            raise ValueError("fragment_bytes must not exceed max_frame_bytes")
