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
        (vec![9, 0, 0, 0, 0, 1, 0, 0, 0, 0], "unknown_type"),
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
