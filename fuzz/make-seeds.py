#!/usr/bin/env python3
"""Write the seed corpus in fuzz/seeds/<target>/ (committed; re-run after
changing an input layout). Each seed is a meaningful input in the layout its
target reads (see the module docs in fuzz/src/). `cargo fuzz run` grows its
own corpus from these in fuzz/corpus/ (ignored by git).

    python3 fuzz/make-seeds.py
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ------------------------------------------------------------- handshake
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(path="/", host="a.test", extra=(), method="GET", version="1.1", key=KEY):
    lines = [f"{method} {path} HTTP/{version}", f"Host: {host}", "Upgrade: websocket",
             "Connection: keep-alive, Upgrade", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", *extra]
    return "\r\n".join(lines) + "\r\n\r\n"


write("handshake", "valid", upgrade("/x?q=1"))
# A client may send its first frame right behind the head.
write("handshake", "valid-then-frame", upgrade().encode() + bytes([0x81, 0x82, 1, 2, 3, 4, 0x69, 0x6b]))
write("handshake", "chat-origin-protocols", upgrade(
    "/chat/room", "CHAT.example.com:443",
    ["Origin: https://a.example.org", "Sec-WebSocket-Protocol: v1, x, v2",
     "Sec-WebSocket-Protocol: v3"]))
write("handshake", "chat-no-origin", upgrade("/chat", "chat.example.com"))
write("handshake", "wildcard-host", upgrade("/ws/feed", "eu.example.net:8443"))
write("handshake", "bad-key", upgrade(key="short"))
write("handshake", "http10", upgrade(version="1.0"))
write("handshake", "post-with-body", upgrade(method="POST", extra=["Content-Length: 3"]) + "abc")
write("handshake", "bad-protocol", upgrade(extra=["Sec-WebSocket-Protocol: a b"]))
write("handshake", "absolute-target", upgrade(path="http://a.test/"))
write("handshake", "partial", upgrade()[:-3])

# --------------------------------------------------------------- scanner
# Layout: [flags][ncuts][cut...][stream]; flags bit 0: expect masked,
# bits 1-2: limits (0 default, 1 = 100/300, 2 = 1/1, 3 = unbounded).
MASK = bytes([0x37, 0xfa, 0x21, 0x3d])


def frame(fin, opcode, payload, mask=None, rsv=0):
    out = bytearray([(0x80 if fin else 0) | rsv | opcode])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        out.append(m | n)
    elif n < 65536:
        out.append(m | 126)
        out += struct.pack(">H", n)
    else:
        out.append(m | 127)
        out += struct.pack(">Q", n)
    if mask:
        out += mask
        out += bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    else:
        out += payload
    return bytes(out)


def close(code, reason=b""):
    return struct.pack(">H", code) + reason


def scan_seed(name, flags, cuts, stream):
    write("scanner", name, bytes([flags, len(cuts)]) + bytes(cuts) + stream)


scan_seed("masked-text", 1, [1, 5, 3],
          frame(True, 1, b"hello", MASK) * 3)
scan_seed("fragmented-ping-close", 1, [7, 2, 40, 0, 13],
          frame(False, 2, b"x" * 300, MASK) + frame(True, 9, b"ping", MASK)
          + frame(True, 0, b"y" * 70, MASK) + frame(True, 8, close(1000, b"bye"), MASK))
scan_seed("server-16bit-length", 0, [3, 200],
          frame(True, 2, bytes(range(256)) * 2) + frame(True, 10, b"pong"))
scan_seed("server-64bit-length", 6, [11],
          bytes([0x82, 127]) + struct.pack(">Q", 1 << 20) + b"z" * 64)
scan_seed("close-bad-code", 1, [2], frame(True, 8, close(1005), MASK))
scan_seed("close-bad-utf8", 0, [], frame(True, 8, close(1001, b"\xff\xfe")))
scan_seed("too-big", 3, [4], frame(False, 1, b"a" * 90, MASK) + frame(True, 0, b"b" * 90, MASK)
          + frame(True, 0, b"c" * 90, MASK))
scan_seed("unmasked-from-client", 1, [], frame(True, 1, b"plain"))
scan_seed("reserved-bits", 0, [1], frame(True, 1, b"r", rsv=0x40))
scan_seed("control-split-at-every-byte", 1, [1] * 7, frame(True, 9, b"p" * 125, MASK))
# Regression: a 125-byte ping with its length in the 8-byte form (139 bytes)
# cut 135 bytes in; the stash once had room for 131 only.
scan_seed("control-64bit-length-held", 1, [135],
          bytes([0x89, 0x80 | 127]) + struct.pack(">Q", 125) + MASK + b"p" * 125)

# ------------------------------------------------------------- mux_codec
# Layout: [max_body u16 BE][one binary WebSocket message].
T = dict(open=1, accept=2, reject=3, message=4, close=5, ping=6, pong=7, goaway=8)


def mux(kind, flags, session, body):
    if isinstance(body, str):
        body = body.encode()
    return struct.pack(">BBII", T[kind], flags, session, len(body)) + body


def mux_seed(name, max_body, *frames):
    write("mux_codec", name, struct.pack(">H", max_body) + b"".join(frames))


mux_seed("open-and-messages", 4096,
         mux("open", 0, 7, '{"path":"/chat","query":"a=1","headers":[["x-user","ann"]],'
             '"client_addr":"10.0.0.1:5000","protocols":["v1"],"route":"chat","tls":true,'
             '"identity":{"sub":"ann","n":1.5}}'),
         mux("message", 0x03, 7, "hello"),
         mux("message", 0x04, 7, b"\x00\x01"), mux("message", 0x01, 7, b"\x02"))
mux_seed("accept-reject", 1024,
         mux("accept", 0, 7, '{"protocol":"v1","headers":[["set-cookie","a=b"]]}'),
         mux("reject", 0, 8, '{"status":403,"body":"no"}'), mux("accept", 0, 9, ""))
mux_seed("close-and-control", 64,
         mux("close", 0, 7, close(1000, b"done")), mux("close", 0, 8, ""),
         mux("ping", 0, 0, "p"), mux("pong", 0, 0, "p"), mux("goaway", 0, 0, '{"reason":"drain"}'))
mux_seed("resumed-open", 256, mux("open", 0x01, 3, "{}"))
mux_seed("too-big", 4, mux("message", 0x03, 1, "12345"))
mux_seed("truncated", 100, mux("message", 0x03, 1, "abcdef")[:-2])
mux_seed("bad-session", 100, mux("ping", 0, 5, ""))
mux_seed("close-utf8-reason", 0, close(4000, "fermé".encode()))

# ---------------------------------------------------------------- config
for f in ("tidegate.toml", "minimal.toml"):
    with open(os.path.join(REPO, "config", f), "rb") as src:
        write("config", f, src.read())
# The example again with its file paths reaching config/ from fuzz/, where
# the fuzz binaries run, so it validates and every section is exercised.
with open(os.path.join(REPO, "config", "tidegate.toml"), "rb") as src:
    write("config", "tidegate-paths-from-fuzz-dir.toml", src.read().replace(b'"config/', b'"../config/'))
# A TLS listener alone, certificates reached from fuzz/.
write("config", "tls-listener.toml", """
[[listeners]]
name = "tls"
listen = "127.0.0.1:0"
[[listeners.tls.certificates]]
cert = "../config/example-certs/localhost.crt"
key = "../config/example-certs/localhost.key"
server_names = ["localhost"]
[[routes]]
path = "/"
upstream = "app"
[[upstreams]]
name = "app"
endpoints = ["ws://127.0.0.1:3000/base/", "ws://[::1]:3001"]
""")
write("config", "mux-and-routes.toml", """
[limits]
max_header_bytes = 256
max_message_size = 1
[keepalive]
ping_interval = "0s"
[mux]
ping_interval = "5s"
reconnect_min = "1s"
reconnect_max = "500ms"
[[listeners]]
listen = "127.0.0.1:0"
[[routes]]
name = "m"
host = "*.example.com"
path = "/chat/"
upstream = "app"
mode = "mux"
strip_prefix = true
origins = ["https://*.example.com"]
max_message_size = 0
[[routes]]
name = "m"
path = "chat"
upstream = "missing"
[[upstreams]]
name = "app"
endpoints = ["ws://app:3000"]
pool_size = 2
""")


# --------------------------------------------------------------- chunked
# Layout: first byte = read size - 1 (mod 16), then the body bytes as the
# client sent them after its head (maybe followed by a next request).
def chunked(name, step, body):
    write("chunked", name, bytes([step]) + (body.encode() if isinstance(body, str) else body))


chunked("simple", 0, "5\r\nhello\r\n0\r\n\r\n")
chunked("extensions-trailers", 3, "3;a=b\r\nabc\r\n1A;x\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n")
chunked("then-next-request", 7, "2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")
chunked("bare-lf", 1, "5\nhello\r\n0\r\n\r\n")
chunked("no-crlf-after-data", 2, "5\r\nhelloXX0\r\n\r\n")
chunked("huge-size", 15, "ffffffffffffffff\r\nab")
chunked("incomplete", 4, "10\r\nabc")
