"""Issue #22, black-box against the release binary: two faults that ended
sessions wrongly.

1. Keepalive under backpressure. While one peer reads slowly the gateway
   stops reading the other (backpressure), so that peer's pong waits in the
   gateway's own receive buffer; that must not be taken for a dead peer.
   A 50 MB upload through a slow-reading upstream and a 50 MB download to a
   slow-reading client complete with short keepalive settings, while a
   client that stops answering — idle, or stalled both ways behind an echo
   upstream — is still closed by keepalive.

2. A full descriptor table. Under `prlimit --nofile=200:200` the gateway
   derives its connection cap from the limit: a flood of clients gets 101
   or 503, none waits unanswered, the process stays idle afterwards and
   serves new sessions at once. When the table fills anyway (here: idle
   admin connections), WebSocket clients still get 503 through the spare
   descriptor instead of waiting in the backlog. Fan-out subscribers, which
   keep a duplicate of their client's descriptor for direct delivery, take
   none of the descriptors the cap promises to clients.

Timeouts here are generous and never what is asserted; the times printed
are for the reader.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import threading
import time
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

import gateway as g
from conftest import run

TOTAL = 50 * 1024 * 1024
CHUNK = 256 * 1024
# Short keepalive: a leg silent for 0.5 s is pinged and has 0.5 s to answer.
KEEPALIVE = ("500ms", "500ms")
# A bursty reader pauses longer than ping interval + pong timeout (1 s).
BURST = 10 * 1024 * 1024
PAUSE = 1.6


# --------------------------------------------------------------------------
# helpers


def gateway_config(upstream: str, *, keepalive=KEEPALIVE, limits: str = "") -> str:
    interval, timeout = keepalive
    return f"""
[admin]
listen = "127.0.0.1:0"

[keepalive]
ping_interval = "{interval}"
pong_timeout = "{timeout}"

[limits]
{limits}

[[listeners]]
name = "default"
listen = "127.0.0.1:0"

[[upstreams]]
name = "up"
endpoints = ["{upstream}"]

[[routes]]
name = "r"
path = "/"
upstream = "up"
"""


def scrape(gw: g.Gateway) -> str:
    with urllib.request.urlopen(f"http://{gw.admin}/metrics", timeout=20) as r:
        return r.read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not m or m[1] != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m[2] or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(m[3])
    return total


def wait_metric(gw: g.Gateway, name: str | tuple[str, ...], ok, timeout: float = 30, **labels: str) -> float:
    """Waits until `ok` holds for the metric (or the sum of the metrics)
    with these labels."""
    names = (name,) if isinstance(name, str) else name
    deadline = time.monotonic() + timeout
    while True:
        try:
            text = scrape(gw)
            value = sum(metric(text, n, **labels) for n in names)
        except OSError as e:  # a descriptor may not be free yet
            value = repr(e)
        if not isinstance(value, str) and ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{name}{labels} stayed at {value} for {timeout}s")
        time.sleep(0.05)


def ping_timeouts(gw: g.Gateway) -> dict[str, float]:
    text = scrape(gw)
    return {s: metric(text, "tidegate_ping_timeouts_total", side=s) for s in ("client", "upstream")}


class ThreadServer:
    """A Python `websockets` server on 127.0.0.1:0 in its own thread. The
    listening socket's small receive buffer is inherited by accepted
    sockets, so a reader that pauses pushes back on the gateway at once."""

    def __init__(self, handler, *, rcvbuf: int | None = None, **kw) -> None:
        self.handler, self.rcvbuf, self.kw = handler, rcvbuf, kw
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stopped: asyncio.Event | None = None
        self.port = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self.stopped = asyncio.Event()
        sock = socket.socket()
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        async with serve(self.handler, sock=sock, max_size=None, compression=None, **self.kw):
            self.ready.set()
            await self.stopped.wait()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def __enter__(self) -> "ThreadServer":
        self.thread.start()
        assert self.ready.wait(g.START_TIMEOUT), "test upstream did not start"
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.stopped.set)
        self.thread.join(10)


def slow_reader(mode: str):
    """An upstream that reads the upload slowly and then reports the bytes
    it got. `steady`: a short sleep after every message. `bursty`: reads at
    full speed, then stops reading for PAUSE after every BURST bytes."""

    async def handler(ws) -> None:
        got, since_pause = 0, 0
        async for msg in ws:
            got += len(msg)
            since_pause += len(msg)
            if mode == "steady":
                await asyncio.sleep(0.01)
            elif since_pause >= BURST:
                since_pause = 0
                await asyncio.sleep(PAUSE)
            if got >= TOTAL:
                await ws.send(f"got {got}")

    return handler


async def fast_sender(ws) -> None:
    """An upstream that sends TOTAL bytes as fast as the gateway takes them."""
    blob = os.urandom(CHUNK)
    for _ in range(TOTAL // CHUNK):
        await ws.send(blob)
    await ws.send("done")
    await ws.wait_closed()


def upgrade_request(addr: str, path: str = "/") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def raw_upgrade(addr: str, timeout: float = 20) -> socket.socket:
    """A blocking socket that completed the WebSocket handshake."""
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.sendall(upgrade_request(addr))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)  # byte by byte: nothing after the head is consumed
        assert chunk, f"closed during the handshake: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


async def try_upgrade(addr: str, timeout: float = 20):
    """One raw client: ("101", reader, writer), ("503", ...), or the failure
    ("hang", "eof", "reset: ...") with no streams."""
    host, port = addr.rsplit(":", 1)
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return f"connect: {e!r}", None, None
    try:
        w.write(upgrade_request(addr))
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
        return head.split(b" ", 2)[1].decode(), r, w
    except asyncio.TimeoutError:
        result = "hang"
    except asyncio.IncompleteReadError:
        result = "eof"
    except OSError as e:
        result = f"reset: {e!r}"
    w.close()
    return result, None, None


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def table_full(gw: g.Gateway, limit: int, within: float = 30.0) -> None:
    """Wait until the gateway holds all but a couple of its `limit`
    descriptors (the spare is one of them)."""
    fds = f"/proc/{gw.proc.popen.pid}/fd"
    deadline = time.monotonic() + within
    while len(os.listdir(fds)) < limit - 2:
        assert time.monotonic() < deadline, f"only {len(os.listdir(fds))} descriptors in use"
        time.sleep(0.05)


def assert_idle(gw: g.Gateway, what: str) -> None:
    """A spin check, not a timing claim: an idle gateway uses next to no CPU."""
    pid = gw.proc.popen.pid
    before = cpu_seconds(pid)
    time.sleep(2)
    used = cpu_seconds(pid) - before
    print(f"{what}: {used:.2f} s CPU over 2 s")
    assert used < 0.2, f"{what}: the gateway used {used:.2f} s of CPU in 2 idle seconds"


async def echo_once(gw: g.Gateway, text: str) -> None:
    async with connect(gw.url("/"), open_timeout=20, close_timeout=20) as ws:
        await ws.send(text)
        assert await asyncio.wait_for(ws.recv(), 20) == text


# --------------------------------------------------------------------------
# 1. keepalive under backpressure


@pytest.mark.parametrize("mode", ["steady", "bursty"])
def test_upload_through_slow_upstream_survives_keepalive(mode):
    # The bursty reader sends pings of its own (it is plainly alive while
    # it does not read); websockets answers ours whenever it reads.
    own_pings = {"ping_interval": 0.2, "ping_timeout": None} if mode == "bursty" else {"ping_interval": None}
    with g.Stack() as stack, ThreadServer(slow_reader(mode), rcvbuf=64 * 1024, max_queue=1, **own_pings) as up:
        gw = stack.run_config(gateway_config(up.url), admin=True)

        async def body():
            async with connect(gw.url("/"), max_size=None, ping_interval=None, compression=None) as ws:
                blob = os.urandom(CHUNK)
                for _ in range(TOTAL // CHUNK):
                    await ws.send(blob)
                return await asyncio.wait_for(ws.recv(), 120)

        started = time.monotonic()
        try:
            reply = run(body(), timeout=180)
        finally:
            print(f"{mode}: {time.monotonic() - started:.1f} s, ping timeouts {ping_timeouts(gw)}")
        assert reply == f"got {TOTAL}"
        assert ping_timeouts(gw) == {"client": 0, "upstream": 0}


def test_download_to_slow_client_survives_keepalive():
    with g.Stack() as stack, ThreadServer(fast_sender, ping_interval=None) as up:
        gw = stack.run_config(gateway_config(up.url), admin=True)

        async def body():
            # Reads in bursts (max_queue=1: websockets stops reading the
            # socket while a message waits), pinging on its own meanwhile.
            async with connect(
                gw.url("/"), max_size=None, max_queue=1, ping_interval=0.2, ping_timeout=None, compression=None
            ) as ws:
                got, since_pause = 0, 0
                while True:
                    msg = await asyncio.wait_for(ws.recv(), 60)
                    if msg == "done":
                        return got
                    got += len(msg)
                    since_pause += len(msg)
                    if since_pause >= BURST:
                        since_pause = 0
                        await asyncio.sleep(PAUSE)

        started = time.monotonic()
        try:
            got = run(body(), timeout=180)
        finally:
            print(f"download: {time.monotonic() - started:.1f} s, ping timeouts {ping_timeouts(gw)}")
        assert got == TOTAL
        assert ping_timeouts(gw) == {"client": 0, "upstream": 0}


def test_silent_client_is_still_closed_by_keepalive(stack, echo_upstream):
    gw = stack.run_config(gateway_config(echo_upstream), admin=True)
    s = raw_upgrade(gw.addr)
    started = time.monotonic()
    try:
        # Sends nothing, reads nothing (its buffers stay far from full).
        wait_metric(gw, "tidegate_ping_timeouts_total", lambda v: v >= 1, side="client")
        print(f"silent client closed after {time.monotonic() - started:.2f} s (interval + timeout = 1 s)")
        seen = b""
        while chunk := s.recv(4096):
            seen += chunk
    finally:
        s.close()
    assert seen.startswith(b"\x89\x00"), f"pinged first, then closed: {seen[:16]!r}"


def test_client_stalled_both_ways_is_still_closed(stack, echo_upstream):
    """A client that uploads, then neither reads nor sends, behind an echo
    upstream that stops reading once its replies back up: both legs are
    blocked and neither is read. Keepalive must still end it."""
    gw = stack.run_config(gateway_config(echo_upstream), admin=True)
    s = raw_upgrade(gw.addr)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    frame = bytes([0x82, 0xFE, 0xFF, 0xFF, 0, 0, 0, 0]) + bytes(0xFFFF)  # masked, zero key
    s.settimeout(0.5)
    sent, deadline = 0, time.monotonic() + 20
    try:
        while time.monotonic() < deadline and sent < 256 * len(frame):
            s.sendall(frame)
            sent += len(frame)
    except (socket.timeout, OSError):
        pass  # everything is backed up: the stall has begun
    print(f"stalled after sending {sent >> 20} MiB")
    try:
        wait_metric(gw, "tidegate_ping_timeouts_total", lambda v: v >= 1)
        wait_metric(gw, "tidegate_connections_active", lambda v: v == 0)
    finally:
        s.close()
    print(f"ping timeouts {ping_timeouts(gw)}")


# --------------------------------------------------------------------------
# 2. a full descriptor table

NOFILE = ["prlimit", "--nofile=200:200"]
FLOOD = 300


def test_fd_limit_caps_connections_with_503(stack, echo_upstream):
    gw = stack.run_config(gateway_config(echo_upstream, keepalive=("30s", "10s")), admin=True, prefix=NOFILE)

    async def flood():
        results = await asyncio.gather(*(try_upgrade(gw.addr) for _ in range(FLOOD)))
        statuses = [r[0] for r in results]
        return statuses, [w for _, _, w in results if w is not None]

    async def body():
        statuses, held = await flood()
        counts = {s: statuses.count(s) for s in set(statuses)}
        print(f"{FLOOD} clients under nofile 200: {counts}")
        try:
            assert set(statuses) <= {"101", "503"}, f"every client gets 101 or 503: {counts}"
            assert counts.get("503", 0) > 0, f"more clients than fit: {counts}"
            cap = metric(scrape(gw), "tidegate_connection_limit")
            assert counts.get("101", 0) == cap, f"{counts} with a cap of {cap}"
            # The flood is over and the cap is full: nothing may spin.
            await asyncio.to_thread(assert_idle, gw, "at the cap")
        finally:
            for w in held:
                w.close()
        await asyncio.to_thread(wait_metric, gw, "tidegate_connections_active", lambda v: v == 0)
        await asyncio.to_thread(wait_metric, gw, "tidegate_handshakes_in_progress", lambda v: v == 0)
        # New sessions work at once, as many at a time as the cap allows.
        await asyncio.gather(*(echo_once(gw, f"again {i}") for i in range(20)))

    run(body(), timeout=240)


def test_full_table_still_answers_clients(stack, echo_upstream):
    """Descriptors used outside the client cap (here idle admin connections)
    fill the table: accept fails with EMFILE. Clients are still answered."""
    gw = stack.run_config(gateway_config(echo_upstream), admin=True, prefix=NOFILE)
    host, port = gw.admin.rsplit(":", 1)
    admin_conns = []
    try:
        # More than the table holds; those over it are closed, not queued.
        for _ in range(220):
            admin_conns.append(socket.create_connection((host, int(port)), timeout=20))
        # The admin listener accepts them on its own time; under a loaded
        # machine some may still wait in its backlog. Start the clients once
        # the table is full, or they may take descriptors freed meanwhile.
        table_full(gw, limit=200)

        async def clients():
            return [r[0] for r in await asyncio.gather(*(try_upgrade(gw.addr) for _ in range(10)))]

        started = time.monotonic()
        statuses = run(clients(), timeout=120)
        print(f"with the table full: {statuses} after {time.monotonic() - started:.1f} s")
        assert statuses == ["503"] * 10, "every client is answered 503, none waits"
        assert_idle(gw, "with the table full")
    finally:
        for c in admin_conns:
            c.close()
    # Most are refused at accept. One accepted on a descriptor freed for an
    # instant (the gateway closing an admin connection over the table) is
    # refused when its upstream socket cannot be made: a handshake
    # rejection, also 503 `fd_limit`.
    refused = wait_metric(
        gw,
        ("tidegate_listener_refused_total", "tidegate_handshake_rejections_total"),
        lambda v: v >= 10,
        reason="fd_limit",
    )
    print(f"refused for want of a descriptor: {refused:.0f}")
    run(echo_once(gw, "a descriptor is free again"))


def fd_count(gw: g.Gateway) -> int:
    return len(os.listdir(f"/proc/{gw.proc.popen.pid}/fd"))


def wait_fds(gw: g.Gateway, ok, within: float = 10.0) -> int:
    deadline = time.monotonic() + within
    while not ok(n := fd_count(gw)):
        if time.monotonic() > deadline:
            return n
        time.sleep(0.005)
    return n


async def try_get(addr: str, timeout: float = 20) -> str:
    """A plain HTTP GET; the response's status."""
    host, port = addr.rsplit(":", 1)
    r, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
    try:
        w.write(f"GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n".encode())
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
        return head.split(b" ", 2)[1].decode()
    finally:
        w.close()


@pytest.mark.parametrize("kind", ["upgrade", "http"])
def test_last_descriptor_to_a_client_is_answered_503(stack, echo_upstream, kind):
    """A client accepted with the table's last free descriptor leaves none
    for its upstream connection (`socket` fails with EMFILE). That is the
    gateway's own state, as at accept: 503 `fd_limit`, for an upgrade and
    for a plain HTTP request alike, and the upstream's endpoint is not
    charged with a failed connect."""
    limit = 200
    config = gateway_config(echo_upstream) + ("http = true\n" if kind == "http" else "")
    gw = stack.run_config(config, admin=True, prefix=NOFILE)
    host, port = gw.admin.rsplit(":", 1)
    admin_conns = []
    try:
        # Fill the table one idle admin connection at a time, so none
        # waits in the admin backlog to take the descriptor freed below.
        while (n := fd_count(gw)) < limit:
            admin_conns.append(socket.create_connection((host, int(port)), timeout=20))
            assert wait_fds(gw, lambda m, n=n: m > n) > n, f"the gateway stopped taking descriptors at {n}"
        admin_conns.pop().close()
        assert wait_fds(gw, lambda m: m < limit) == limit - 1, "a closed admin connection frees its descriptor"

        async def one_client():
            if kind == "http":
                return await try_get(gw.addr)
            status, _, w = await try_upgrade(gw.addr)
            if w is not None:
                w.close()
            return status

        status = run(one_client())
        print(f"a client on the last descriptor: {status}")
        assert status == "503", "the gateway out of descriptors answers 503, not 502"
    finally:
        for c in admin_conns:
            c.close()
    rejected = wait_metric(gw, "tidegate_handshake_rejections_total", lambda v: v >= 1, reason="fd_limit")
    assert rejected == 1
    text = scrape(gw)
    assert metric(text, "tidegate_handshake_rejections_total", reason="upstream_unreachable") == 0
    assert metric(text, "tidegate_upstream_connect_failures_total") == 0, "no endpoint is charged"
    run(echo_once(gw, "a descriptor is free again"))


def test_subscribers_take_no_descriptor_the_cap_promises(stack):
    """Every client the upstream subscribes (`X-Tidegate-Subscribe` in its
    101) is one fan-out may keep a duplicate descriptor for; those come only
    from what the cap leaves over. Under nofile 200 with every client
    subscribed, a flood still gets exactly the cap's 101s and 503 for the
    rest, the table keeps its reserve (before, the duplicates filled it and
    the admin endpoint's next connection was reset), and a publish reaches
    every held client, through the sessions' queues."""
    token = "publish-token-for-the-fd-test"
    token_file = stack.dir / "publish-token"
    token_file.write_text(token)

    def subscribe(connection, request, response):
        response.headers["X-Tidegate-Subscribe"] = "room"
        return response

    async def hold(ws):
        await ws.wait_closed()

    with ThreadServer(hold, process_response=subscribe) as up:
        config = gateway_config(up.url, keepalive=("30s", "10s")) + f"""
[fanout.publish]
listen = "127.0.0.1:0"
token_file = "{token_file}"
"""
        gw = stack.run_config(config, admin=True, prefix=NOFILE)
        (m,) = gw.proc.wait_for(r"tidegate fanout-publish addr=" + g.ADDR)
        publish = m["addr"]

        async def body():
            results = await asyncio.gather(*(try_upgrade(gw.addr) for _ in range(FLOOD)))
            statuses = [r[0] for r in results]
            held = [(r, w) for s, r, w in results if s == "101"]
            others = [w for s, _, w in results if s != "101" and w is not None]
            counts = {s: statuses.count(s) for s in set(statuses)}
            print(f"{FLOOD} subscribing clients under nofile 200: {counts}")
            try:
                assert set(statuses) <= {"101", "503"}, f"every client gets 101 or 503: {counts}"
                cap = metric(scrape(gw), "tidegate_connection_limit")
                assert counts.get("101", 0) == cap, f"{counts} with a cap of {cap}"
                await asyncio.to_thread(wait_metric, gw, "tidegate_fanout_subscriptions", lambda v: v == cap)
                # The cap took every descriptor: none went direct, and it shows.
                assert metric(scrape(gw), "tidegate_fanout_direct_no_descriptor_total") == cap
                answer = await asyncio.to_thread(post_publish, publish, token, "room", b"hello")
                assert answer == {"subscribers": cap}, answer
                for i, (r, _) in enumerate(held):
                    frame = await asyncio.wait_for(r.readexactly(7), 20)
                    assert frame == b"\x81\x05hello", f"client {i}: {frame!r}"
            finally:
                for w in [w for _, w in held] + others:
                    w.close()

        run(body(), timeout=240)


def post_publish(addr: str, token: str, channel: str, body: bytes) -> dict:
    req = urllib.request.Request(
        f"http://{addr}/publish/{channel}",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())
