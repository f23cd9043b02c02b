//! Target `mux_codec`: one binary WebSocket message from a mux peer →
//! `tidegate_mux::codec::decode`, then each frame's body through the parser
//! its type implies (JSON bodies, `Close::decode`).
//!
//! Input layout: bytes 0–1: `max_body` (big-endian u16, so `TooBig` is in
//! reach); the rest: the message.
//!
//! Checks: errors end the iteration; frames decoded before an error are a
//! prefix of the message and re-encode to exactly its bytes (the whole
//! message when nothing failed); a decoded frame obeys the header rules; a
//! CLOSE body that decodes re-encodes to the same bytes; a JSON body that
//! parses survives being built into a frame, encoded and decoded again.

use bytes::{Bytes, BytesMut};
use tidegate_mux::codec::{
    self, AcceptBody, Close, Frame, FrameType, GoawayBody, OpenBody, RejectBody, HEADER_LEN,
    MAX_CONTROL_BODY,
};

pub fn run(data: &[u8]) {
    let [a, b, msg @ ..] = data else {
        return;
    };
    let max_body = u16::from_be_bytes([*a, *b]) as u32;
    let msg = Bytes::copy_from_slice(msg);

    let mut encoded = BytesMut::new();
    let mut failed = false;
    for item in codec::decode(msg.clone(), max_body) {
        assert!(!failed, "a frame after an error");
        match item {
            Ok(frame) => {
                check_frame(&frame, max_body);
                frame.encode_into(&mut encoded);
            }
            Err(e) => {
                assert!(!e.label().is_empty());
                let _ = e.to_string();
                failed = true;
            }
        }
    }
    if failed {
        assert!(msg.starts_with(&encoded), "decoded frames are not a prefix");
    } else {
        assert_eq!(
            &encoded[..],
            &msg[..],
            "decode → encode changed the message"
        );
    }

    // The raw input as a CLOSE body too: short inputs reach every branch.
    if let Ok(close) = Close::decode(&msg) {
        assert_eq!(
            close.encode(),
            msg,
            "CLOSE body did not re-encode as it was"
        );
    }
    // And as a reason to send: cut on a character boundary to fit, never
    // into something the other side would refuse.
    if let Ok(reason) = std::str::from_utf8(&msg) {
        let body = Close::new(4000, reason).encode();
        assert!(body.len() <= MAX_CONTROL_BODY);
        let back = Close::decode(&body).expect("an encoded CLOSE decodes");
        assert!(
            reason.starts_with(&back.reason),
            "the reason was not cut at its end"
        );
    }
}

fn check_frame(frame: &Frame, max_body: u32) {
    if frame.kind != FrameType::Publish {
        // PUBLISH carries any session id: 0, or the "except" session.
        assert_eq!(frame.kind.is_connection_level(), frame.session == 0);
    }
    let limit = match frame.kind {
        FrameType::Ping | FrameType::Pong | FrameType::Close => MAX_CONTROL_BODY,
        _ => max_body as usize,
    };
    assert!(
        frame.body.len() <= limit,
        "{:?} body over its limit",
        frame.kind
    );
    assert_eq!(frame.header()[0], frame.kind as u8);
    assert_eq!(frame.header().len(), HEADER_LEN);
    let (session, resumed) = (frame.session, frame.resumed());
    match frame.kind {
        FrameType::Open => {
            if let Ok(body) = frame.json::<OpenBody>() {
                let again = roundtrip(Frame::open(session, resumed, &body));
                assert_eq!(again.resumed(), resumed);
                let mut back = again
                    .json::<OpenBody>()
                    .expect("an encoded OPEN body parses");
                // JSON numbers inside `identity` need not survive f64 text
                // exactly; everything else must.
                let mut body = body;
                body.identity = None;
                back.identity = None;
                assert_eq!(back, body);
            }
        }
        FrameType::Accept => {
            if let Ok(body) = frame.json::<AcceptBody>() {
                let again = roundtrip(Frame::accept(session, &body));
                assert_eq!(
                    again
                        .json::<AcceptBody>()
                        .expect("an encoded ACCEPT parses"),
                    body
                );
            }
        }
        FrameType::Reject => {
            if let Ok(body) = frame.json::<RejectBody>() {
                let again = roundtrip(Frame::reject(session, &body));
                assert_eq!(
                    again
                        .json::<RejectBody>()
                        .expect("an encoded REJECT parses"),
                    body
                );
            }
        }
        FrameType::Goaway => {
            if let Ok(body) = frame.json::<GoawayBody>() {
                let again = roundtrip(Frame::goaway(&body.reason));
                let back = again
                    .json::<GoawayBody>()
                    .expect("an encoded GOAWAY parses");
                assert_eq!(back, body);
            }
        }
        FrameType::Close => match Close::decode(&frame.body) {
            Ok(close) => {
                assert_eq!(close.encode(), frame.body);
                let again = Frame::close(session, &close);
                assert_eq!(again.body, frame.body);
            }
            Err(e) => assert_eq!(e.label(), "bad_close"),
        },
        FrameType::Message => {
            let again = Frame::message(
                session,
                frame.message_kind(),
                frame.fin(),
                frame.body.clone(),
            );
            assert_eq!(&again, frame, "MESSAGE flags did not survive the builder");
        }
        FrameType::Ping | FrameType::Pong => {}
        FrameType::Subscribe | FrameType::Unsubscribe => {
            if let Ok(name) = std::str::from_utf8(frame.channel()) {
                let again = if frame.kind == FrameType::Subscribe {
                    Frame::subscribe(session, name)
                } else {
                    Frame::unsubscribe(session, name)
                };
                assert_eq!(&roundtrip(again), frame);
            }
        }
        FrameType::Publish => match frame.publish_body() {
            Ok(p) => {
                assert_eq!(p.except, (session != 0).then_some(session));
                if let Some(name) = p.channel_str() {
                    let again = Frame::publish(name, p.text, &p.payload, p.except);
                    assert_eq!(&roundtrip(again), frame, "PUBLISH did not re-encode");
                }
            }
            Err(e) => assert_eq!(e.label(), "bad_publish"),
        },
    }
}

/// Encode a frame built from a parsed body and decode it again. A body may
/// grow on the way (JSON escapes), so the limit is lifted for the re-decode.
fn roundtrip(frame: Frame) -> Frame {
    let mut out = BytesMut::new();
    frame.encode_into(&mut out);
    let mut frames = codec::decode(out.freeze(), u32::MAX);
    let again = frames
        .next()
        .expect("one frame in")
        .expect("a frame built by the codec decodes");
    assert!(frames.next().is_none(), "one frame in, more out");
    assert_eq!(again, frame);
    again
}
