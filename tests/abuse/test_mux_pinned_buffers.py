"""Mux mode: small frames that wait must not keep the big buffers they
were read into alive (docs/security.md, "Read buffers held by queued
frames").

An application payload is a slice of its mux connection's read buffer
(256 KiB). A hostile application can put one tiny MESSAGE for a client
that does not read into each such buffer, filling the rest with a frame
for a session that does not exist (which the gateway drops). Each tiny
frame is charged 1 + 64 bytes against `mux.session_queue_bytes`, but
uncopied it would pin a whole buffer: 300 of them held ~75 MB. Copied
into their own allocation once they have to wait, they hold ~100 bytes
each."""

from __future__ import annotations

import threading

import rawws
from conftest import start_mux
from hostile_app import HostileApp
from procmem import MB, Growth, describe
from rawws import OP_BINARY, frame
from tidegate_mux.codec import FLAG_FIN, KIND_BINARY, FrameType, pack_header

# Tiny frames, one per application message of ~one read buffer.
TINY = 300
PAD = 240 * 1024
# First fill the client's socket (the client never reads) so the tiny
# frames queue in the gateway: more than the kernel takes (a send buffer
# autotunes up to tcp_wmem's 4 MiB), with a session queue to hold it.
PREFILL = 128
PREFILL_BYTES = 48 * 1024
SESSION_QUEUE = "session_queue_bytes = 16777216"
NO_SESSION = 0x7FFF_FFF0
# Far below the ~75 MB pinned without the copy; above the 6 MiB prefill,
# which queues as it should (large payloads are not copied).
BOUND = 24 * MB
WAIT = 120


def message(session: int, body: bytes) -> bytes:
    return pack_header(FrameType.MESSAGE, FLAG_FIN | KIND_BINARY, session, len(body)) + body


def test_app_tiny_frames_each_in_its_own_read_buffer(stack):
    go, done = threading.Event(), threading.Event()

    def on_session(sock, sid):
        try:
            if go.wait(60):
                for _ in range(PREFILL):
                    sock.sendall(frame(OP_BINARY, message(sid, b"p" * PREFILL_BYTES), mask=False))
                pad = message(NO_SESSION, b"\0" * PAD)
                for i in range(TINY):
                    tiny = message(sid, bytes([i & 0xFF]))
                    sock.sendall(frame(OP_BINARY, tiny + pad, mask=False))
        finally:
            done.set()
        return False  # then never read

    app = HostileApp(on_session=on_session)
    gw = start_mux(stack, app, SESSION_QUEUE)
    client = rawws.connect(gw.addr, small_rcvbuf=True)
    assert app.session_opened.wait(30)
    growth = Growth(gw.proc.popen.pid)
    go.set()
    assert done.wait(WAIT), "the app could not write its messages"
    assert not app.errors, app.errors
    grew = growth.settled()
    print(describe(f"mux: {TINY} tiny frames, one per read buffer, client never reads", grew, BOUND))
    assert gw.proc.popen.poll() is None, "the gateway died"
    assert grew < BOUND, describe("tiny queued frames pinned their read buffers", grew, BOUND)
    client.close()
