use super::*;

fn batch(frames: &[Frame]) -> Bytes {
    let mut out = BytesMut::new();
    for f in frames {
        f.encode_into(&mut out);
    }
    out.freeze()
}

fn decode_all(msg: Bytes) -> Vec<Result<Frame, CodecError>> {
    decode(msg, 1 << 20).collect()
}

#[test]
fn worked_example_bytes() {
    // docs/mux-protocol.md §9: MESSAGE, FIN|text, session 7, "hi".
    let f = Frame::message(7, KIND_TEXT, true, &b"hi"[..]);
    let mut out = BytesMut::new();
    f.encode_into(&mut out);
    assert_eq!(&out[..], &[4, 3, 0, 0, 0, 7, 0, 0, 0, 2, b'h', b'i']);
    let close = Frame::close(7, &Close::new(1000, "bye!"));
    assert_eq!(&close.body[..], &[0x03, 0xe8, b'b', b'y', b'e', b'!']);
}

#[test]
fn batch_round_trip() {
    let open = OpenBody {
        path: "/chat".into(),
        query: "room=1".into(),
        headers: vec![("user-agent".into(), "t".into())],
        client_addr: "127.0.0.1:1".into(),
        protocols: vec!["chat".into()],
        route: "r".into(),
        tls: false,
        identity: None,
    };
    let frames = vec![
        Frame::open(1, false, &open),
        Frame::message(1, KIND_BINARY, false, vec![1, 2, 3]),
        Frame::message(1, KIND_CONTINUATION, true, Bytes::new()),
        Frame::ping(&b"12345678"[..]),
        Frame::open(2, true, &open),
        Frame::close(1, &Close::default()),
    ];
    let got: Vec<Frame> = decode_all(batch(&frames))
        .into_iter()
        .map(|r| r.expect("valid"))
        .collect();
    assert_eq!(got, frames);
    assert_eq!(got[0].json::<OpenBody>().expect("json"), open);
    assert!(got[4].resumed());
    assert!(!got[0].resumed());
    assert!(got[2].fin());
    assert_eq!(got[1].message_kind(), KIND_BINARY);
}

#[test]
fn errors_are_labelled() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "truncated"),
        (vec![4, 3, 0, 0], "truncated"),
        (vec![4, 3, 0, 0, 0, 1, 0, 0, 0, 5, b'x'], "truncated"),
        (vec![0x0c, 0, 0, 0, 0, 1, 0, 0, 0, 0], "unknown_type"),
        (vec![4, 0x06, 0, 0, 0, 1, 0, 0, 0, 0], "bad_flags"),
        (vec![4, 0x08, 0, 0, 0, 1, 0, 0, 0, 0], "bad_flags"),
        (vec![2, 1, 0, 0, 0, 1, 0, 0, 0, 0], "bad_flags"),
        (vec![4, 3, 0, 0, 0, 0, 0, 0, 0, 0], "bad_session"),
        (vec![6, 0, 0, 0, 0, 1, 0, 0, 0, 0], "bad_session"),
        (vec![6, 0, 0, 0, 0, 0, 0, 0, 0, 126], "too_big"),
        (vec![4, 3, 0, 0, 0, 1, 0, 0x20, 0, 0], "too_big"),
    ];
    for (bytes, label) in cases {
        let r = decode_all(Bytes::from(bytes.clone()));
        let err = r
            .into_iter()
            .find_map(|r| r.err())
            .unwrap_or_else(|| panic!("{bytes:?} should fail"));
        assert_eq!(err.label(), label, "{bytes:?}");
    }
}

#[test]
fn decoding_stops_after_an_error() {
    let mut msg = BytesMut::new();
    Frame::ping(Bytes::new()).encode_into(&mut msg);
    msg.put_slice(&[0xff; 10]);
    Frame::ping(Bytes::new()).encode_into(&mut msg);
    let r = decode_all(msg.freeze());
    assert_eq!(r.len(), 2);
    assert!(r[0].is_ok());
    assert!(r[1].is_err());
}

#[test]
fn close_bodies() {
    assert_eq!(Close::decode(&[]).expect("empty"), Close::default());
    assert!(Close::decode(&[3]).is_err());
    assert!(
        Close::decode(&[0x03, 0xed]).is_err(),
        "1005 is not sendable"
    );
    assert!(
        Close::decode(&[0x03, 0xe8, 0xff]).is_err(),
        "reason not UTF-8"
    );
    let c = Close::decode(&[0x0f, 0xa0, b'o', b'k']).expect("4000");
    assert_eq!(c, Close::new(4000, "ok"));
    // Over-long reasons are cut on a character boundary.
    let long = Close::new(1000, "é".repeat(100)).encode();
    assert!(long.len() <= MAX_CONTROL_BODY);
    assert!(Close::decode(&long).is_ok());
}

#[test]
fn json_bodies_ignore_unknown_fields() {
    let f = Frame::new(
        FrameType::Accept,
        0,
        3,
        &br#"{"protocol":"chat","future":1}"#[..],
    );
    let a: AcceptBody = f.json().expect("accept");
    assert_eq!(a.protocol.as_deref(), Some("chat"));
    let empty = Frame::new(FrameType::Accept, 0, 3, Bytes::new());
    assert_eq!(
        empty.json::<AcceptBody>().expect("{}"),
        AcceptBody::default()
    );
    let bad = Frame::new(FrameType::Reject, 0, 3, &b"{}"[..]);
    assert_eq!(
        bad.json::<RejectBody>()
            .expect_err("status required")
            .label(),
        "bad_json"
    );
}

#[test]
fn fanout_frames_round_trip() {
    let frames = vec![
        Frame::subscribe(3, "room.5"),
        Frame::unsubscribe(3, "room.5"),
        Frame::publish("room.5", true, b"hello", None),
        Frame::publish("user:42/inbox", false, &[0, 1, 2], Some(9)),
        Frame::publish("c", true, b"", None),
    ];
    let got: Vec<Frame> = decode_all(batch(&frames))
        .into_iter()
        .map(|r| r.expect("valid"))
        .collect();
    assert_eq!(got, frames);
    assert_eq!(got[0].channel(), b"room.5");
    let p = got[2].publish_body().expect("publish");
    assert_eq!(p.channel_str(), Some("room.5"));
    assert!(p.text);
    assert_eq!(&p.payload[..], b"hello");
    assert_eq!(p.except, None);
    let p = got[3].publish_body().expect("publish");
    assert!(!p.text);
    assert_eq!(p.except, Some(9));
    assert_eq!(&p.payload[..], &[0, 1, 2]);
    assert!(got[4].publish_body().expect("empty").payload.is_empty());
}

#[test]
fn publish_body_slices_the_message() {
    let f = Frame::publish("ch", false, &[7u8; 64], None);
    let mut wire = BytesMut::new();
    f.encode_into(&mut wire);
    let wire = wire.freeze();
    let start = wire.as_ptr() as usize;
    let end = start + wire.len();
    let got = decode_all(wire.clone()).remove(0).expect("valid");
    let p = got.publish_body().expect("publish");
    let at = p.payload.as_ptr() as usize;
    assert!(
        (start..end).contains(&at),
        "payload must point into the message"
    );
    assert_eq!(at - start, HEADER_LEN + 2 + 2);
}

#[test]
fn fanout_frame_rules() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // SUBSCRIBE / UNSUBSCRIBE need a session and no flags.
        (vec![9, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'a'], "bad_session"),
        (vec![10, 0, 0, 0, 0, 0, 0, 0, 0, 1, b'a'], "bad_session"),
        (vec![9, 2, 0, 0, 0, 1, 0, 0, 0, 1, b'a'], "bad_flags"),
        // PUBLISH: text or binary, never FIN, never continuation.
        (vec![11, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, b'a'], "bad_flags"),
        (vec![11, 3, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, b'a'], "bad_flags"),
        (vec![11, 6, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, b'a'], "bad_flags"),
        (vec![11, 8, 0, 0, 0, 0, 0, 0, 0, 3, 0, 1, b'a'], "bad_flags"),
        (vec![11, 2, 0, 0, 0, 0, 0, 0x20, 0, 0], "too_big"),
    ];
    for (bytes, label) in cases {
        let err = decode_all(Bytes::from(bytes.clone()))
            .into_iter()
            .find_map(|r| r.err())
            .unwrap_or_else(|| panic!("{bytes:?} should fail"));
        assert_eq!(err.label(), label, "{bytes:?}");
    }
    // Any session id is a valid "except" on PUBLISH.
    let ok = decode_all(Bytes::from(vec![11, 4, 0, 0, 0, 5, 0, 0, 0, 3, 0, 1, b'a']));
    assert!(ok[0].is_ok());
    for t in [
        FrameType::Subscribe,
        FrameType::Unsubscribe,
        FrameType::Publish,
    ] {
        assert!(t.from_app() && !t.from_gateway() && t.is_fanout());
        assert!(!t.is_connection_level());
    }
    assert!(!FrameType::Message.is_fanout());
}

#[test]
fn bad_publish_bodies() {
    for body in [&[][..], &[0][..], &[0, 3, b'a', b'b'][..]] {
        let f = Frame::new(
            FrameType::Publish,
            KIND_TEXT,
            0,
            Bytes::copy_from_slice(body),
        );
        assert_eq!(
            f.publish_body().expect_err("malformed").label(),
            "bad_publish",
            "{body:?}"
        );
    }
    let not = Frame::message(1, KIND_TEXT, true, &b"x"[..]);
    assert!(not.publish_body().is_err());
}

#[test]
fn channel_names_and_extension_lists() {
    assert!(valid_channel(b"room.5"));
    assert!(valid_channel(b"A-z_0:9@x/y"));
    assert!(valid_channel(&[b'a'; MAX_CHANNEL_LEN]));
    assert!(!valid_channel(&[b'a'; MAX_CHANNEL_LEN + 1]));
    assert!(!valid_channel(b""));
    for bad in [&b"a b"[..], b"a,b", b"\xc3\xa9", b"a\0", b"*", b"#"] {
        assert!(!valid_channel(bad), "{bad:?}");
    }
    assert!(has_extension("fanout", EXTENSION_FANOUT));
    assert!(has_extension(" other , FanOut ", EXTENSION_FANOUT));
    assert!(!has_extension("fanouts, x", EXTENSION_FANOUT));
    assert!(!has_extension("", EXTENSION_FANOUT));
}
