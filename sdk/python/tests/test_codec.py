"""Codec tests: the vectors of the Rust reference (sdk/rust/src/codec/tests.rs)
and the worked example of docs/mux-protocol.md §9, byte for byte."""

from __future__ import annotations

import pytest

from tidegate_mux.bodies import AcceptBody, GoawayBody, OpenBody, RejectBody
from tidegate_mux.codec import (
    KIND_BINARY,
    KIND_CONTINUATION,
    KIND_TEXT,
    MAX_CONTROL_BODY,
    Close,
    Frame,
    FrameType,
    decode,
    decode_all,
    encode_batch,
    pack_header,
    unpack_header,
    valid_channel,
)
from tidegate_mux.errors import BadClose, BadJson, CodecError

MAX = 1 << 20


def test_worked_example_bytes():
    # §9: MESSAGE, FIN|text, session 7, "hi".
    f = Frame.message(7, KIND_TEXT, True, b"hi")
    assert f.encode() == bytes([4, 3, 0, 0, 0, 7, 0, 0, 0, 2, ord("h"), ord("i")])
    close = Frame.close(7, Close(1000, "bye!"))
    assert close.body == bytes([0x03, 0xE8]) + b"bye!"
    assert close.encode() == bytes.fromhex("05 00 00000007 00000006 03e8 62796521")
    # ACCEPT with sub-protocol "chat": body length 0x13.
    accept = Frame.accept(7, AcceptBody(protocol="chat"))
    assert accept.encode() == bytes.fromhex("02 00 00000007 00000013") + b'{"protocol":"chat"}'


def test_header_pack_unpack():
    h = pack_header(FrameType.OPEN, 1, 0xDEADBEEF, 90)
    assert h == bytes.fromhex("01 01 deadbeef 0000005a")
    assert unpack_header(h) == (1, 1, 0xDEADBEEF, 90)
    with pytest.raises(CodecError) as e:
        unpack_header(h[:9])
    assert e.value.label == "truncated"


def test_batch_round_trip():
    open_body = OpenBody(
        path="/chat",
        query="room=1",
        headers=[("user-agent", "t")],
        client_addr="127.0.0.1:1",
        protocols=["chat"],
        route="r",
        tls=False,
        identity=None,
    )
    frames = [
        Frame.open(1, False, open_body),
        Frame.message(1, KIND_BINARY, False, bytes([1, 2, 3])),
        Frame.message(1, KIND_CONTINUATION, True, b""),
        Frame.ping(b"12345678"),
        Frame.open(2, True, open_body),
        Frame.close(1, Close()),
    ]
    got = decode_all(encode_batch(frames), MAX)
    assert got == frames
    assert OpenBody.from_json(got[0].body) == open_body
    assert got[4].resumed
    assert not got[0].resumed
    assert got[2].fin
    assert got[1].message_kind == KIND_BINARY


def test_open_body_json_matches_serde():
    # serde_json: compact, declaration order, raw UTF-8, identity null.
    body = OpenBody(path="/é", headers=[("a", "b")]).to_json()
    assert body == (
        '{"path":"/é","query":"","headers":[["a","b"]],"client_addr":"",'
        '"protocols":[],"route":"","tls":false,"identity":null}'
    ).encode()


ERROR_CASES = [
    (b"", "truncated"),
    (bytes([4, 3, 0, 0]), "truncated"),
    (bytes([4, 3, 0, 0, 0, 1, 0, 0, 0, 5]) + b"x", "truncated"),
    (bytes([0x0C, 0, 0, 0, 0, 1, 0, 0, 0, 0]), "unknown_type"),
    (bytes([4, 0x06, 0, 0, 0, 1, 0, 0, 0, 0]), "bad_flags"),
    (bytes([4, 0x08, 0, 0, 0, 1, 0, 0, 0, 0]), "bad_flags"),
    (bytes([2, 1, 0, 0, 0, 1, 0, 0, 0, 0]), "bad_flags"),
    (bytes([4, 3, 0, 0, 0, 0, 0, 0, 0, 0]), "bad_session"),
    (bytes([6, 0, 0, 0, 0, 1, 0, 0, 0, 0]), "bad_session"),
    (bytes([6, 0, 0, 0, 0, 0, 0, 0, 0, 126]), "too_big"),
    (bytes([4, 3, 0, 0, 0, 1, 0, 0x20, 0, 0]), "too_big"),
    # Extension fanout (§10): SUBSCRIBE needs a session and no flags;
    # PUBLISH is one whole text or binary message (no FIN bit, a kind).
    (bytes([9, 0, 0, 0, 0, 0, 0, 0, 0, 1]) + b"a", "bad_session"),
    (bytes([0x0A, 1, 0, 0, 0, 1, 0, 0, 0, 1]) + b"a", "bad_flags"),
    (bytes([0x0B, 0x03, 0, 0, 0, 0, 0, 0, 0, 0]), "bad_flags"),
    (bytes([0x0B, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]), "bad_flags"),
    (bytes([0x0B, 0x06, 0, 0, 0, 0, 0, 0, 0, 0]), "bad_flags"),
    (bytes([0x0B, 0x02, 0, 0, 0, 0, 0, 0x20, 0, 0]), "too_big"),
]


@pytest.mark.parametrize(("data", "label"), ERROR_CASES, ids=[f"{l}-{i}" for i, (_, l) in enumerate(ERROR_CASES)])
def test_errors_are_labelled(data, label):
    with pytest.raises(CodecError) as e:
        decode_all(data, MAX, fanout=True)
    assert e.value.label == label


@pytest.mark.parametrize("raw", [0x09, 0x0A, 0x0B])
def test_fanout_types_are_unknown_without_the_extension(raw):
    frame = Frame.publish("c", KIND_TEXT, b"x") if raw == 0x0B else Frame(FrameType(raw), 0, 1, b"c")
    with pytest.raises(CodecError) as e:
        decode_all(frame.encode(), MAX)
    assert e.value.label == "unknown_type"
    assert decode_all(frame.encode(), MAX, fanout=True) == [frame]


def test_text_message_is_an_error():
    with pytest.raises(CodecError) as e:
        decode_all("hello", MAX)
    assert e.value.label == "text_message"


def test_decoding_stops_after_an_error():
    msg = Frame.ping(b"").encode() + b"\xff" * 10 + Frame.ping(b"").encode()
    it = decode(msg, MAX)
    assert next(it) == Frame.ping(b"")
    with pytest.raises(CodecError) as e:
        next(it)
    assert e.value.label == "unknown_type"


def test_close_bodies():
    assert Close.decode(b"") == Close()
    for bad, why in [(b"\x03", "one-byte"), (b"\x03\xed", "1005 is not sendable"), (b"\x03\xe8\xff", "reason not UTF-8"), (b"\x03\xe8" + b"x" * 124, "over 125")]:
        with pytest.raises(BadClose) as e:
            Close.decode(bad)
        assert e.value.label == "bad_close", why
    assert Close.decode(bytes([0x0F, 0xA0]) + b"ok") == Close(4000, "ok")
    assert Close.decode(bytes([0x03, 0xEE])) == Close(1006, "")
    # Over-long reasons are cut on a character boundary.
    long = Close(1000, "é" * 100).encode()
    assert len(long) <= MAX_CONTROL_BODY
    assert Close.decode(long) == Close(1000, "é" * 61)


def test_json_bodies_ignore_unknown_fields():
    f = Frame(FrameType.ACCEPT, 0, 3, b'{"protocol":"chat","future":1}')
    assert AcceptBody.from_json(f.body).protocol == "chat"
    assert AcceptBody.from_json(b"") == AcceptBody()
    with pytest.raises(BadJson) as e:
        RejectBody.from_json(b"{}")
    assert e.value.label == "bad_json"
    assert OpenBody.from_json(b'{"path":"/x","new_field":[1,2]}') == OpenBody(path="/x")


@pytest.mark.parametrize(
    "body",
    [b"[]", b"not json", b'{"path":1}', b'{"headers":[["a"]]}', b'{"tls":"yes"}', b'{"protocols":[1]}', b"\xff", b'{"x":NaN}'],
)
def test_bad_open_json(body):
    with pytest.raises(BadJson):
        OpenBody.from_json(body)


def test_reject_and_goaway_bodies():
    r = RejectBody(403, [("content-type", "text/plain")], "no")
    assert r.to_json() == b'{"status":403,"headers":[["content-type","text/plain"]],"body":"no"}'
    assert RejectBody.from_json(r.to_json()) == r
    for bad in (b'{"status":"403"}', b'{"status":true}', b'{"status":70000}', b'{"status":403.5}'):
        with pytest.raises(BadJson):
            RejectBody.from_json(bad)
    assert Frame.goaway("").body == b""
    assert Frame.goaway("deploy").body == b'{"reason":"deploy"}'
    assert GoawayBody.from_json(b"") == GoawayBody("")
    assert AcceptBody().to_json() == b"{}"


def test_fanout_frames_round_trip():
    frames = [
        Frame.subscribe(7, "room.5"),
        Frame.unsubscribe(7, "user:42@eu/x_y-z"),
        Frame.publish("room.5", KIND_TEXT, "hé".encode()),
        Frame.publish("feed", KIND_BINARY, b"\x00\x01", except_session=7),
    ]
    wire = encode_batch(frames)
    # SUBSCRIBE: type 9, flags 0, session 7, body = the name.
    assert wire[:16] == bytes([9, 0, 0, 0, 0, 7, 0, 0, 0, 6]) + b"room.5"
    # PUBLISH: flags = kind, session = except, body = u16 name length + name + payload.
    pub = frames[3].encode()
    assert pub == bytes([0x0B, 0x04, 0, 0, 0, 7, 0, 0, 0, 8, 0, 4]) + b"feed" + b"\x00\x01"
    got = decode_all(wire, MAX, fanout=True)
    assert got == frames
    assert [f.type for f in got] == [FrameType.SUBSCRIBE, FrameType.UNSUBSCRIBE, FrameType.PUBLISH, FrameType.PUBLISH]
    assert got[2].published() == ("room.5", "hé".encode())
    assert got[3].published() == ("feed", b"\x00\x01")
    assert not any(t.from_gateway for t in (FrameType.SUBSCRIBE, FrameType.UNSUBSCRIBE, FrameType.PUBLISH))


@pytest.mark.parametrize("name", ["", "a" * 129, "room 5", "é", "a,b", "a\n", "#x"])
def test_invalid_channel_names_are_refused_before_the_wire(name):
    assert not valid_channel(name)
    with pytest.raises(ValueError):
        Frame.subscribe(1, name)
    with pytest.raises(ValueError):
        Frame.publish(name, KIND_TEXT, b"x")


def test_channel_names_at_the_limits():
    assert valid_channel("a" * 128)
    assert valid_channel("AZaz09._-:@/")
    with pytest.raises(ValueError):
        Frame.publish("a", KIND_CONTINUATION, b"x")
    for body in (b"\x00\x05abc", b"\x00"):
        with pytest.raises(CodecError) as e:
            Frame(FrameType.PUBLISH, KIND_TEXT, 0, body).published()
        assert e.value.label == "bad_publish"
