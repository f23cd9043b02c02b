//! Opening, messages, closes and connection-level frames on one mux
//! connection.

use std::collections::HashMap;

use fastwebsockets::OpCode;
use tidegate_mux::codec::{Frame, FrameType, KIND_BINARY, KIND_CONTINUATION, KIND_TEXT};
use tidegate_mux::server::Config;
use tidegate_mux::{AcceptBody, Close, RejectBody};

use crate::app::{App, Seen};
use crate::gateway::{instance, open_body, patiently, Ended, Gateway};

/// Connect, OPEN session `id` on `path`, expect ACCEPT.
async fn opened(app: &App, id: u32, path: &str) -> Gateway {
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    gw.send(&[Frame::open(id, false, &open_body(path))]).await;
    let accept = gw.next().await;
    assert_eq!((accept.kind, accept.session), (FrameType::Accept, id));
    gw
}

#[tokio::test]
async fn open_accept_and_echo() {
    let mut app = App::start(Config::default()).await;
    let inst = instance();
    let mut gw = Gateway::connect(app.server.local_addr(), &inst).await;
    gw.send(&[Frame::open(7, false, &open_body("/chat?room=1"))])
        .await;
    let accept = gw.next().await;
    assert_eq!((accept.kind, accept.session), (FrameType::Accept, 7));
    let body: AcceptBody = accept.json().expect("ACCEPT body");
    assert_eq!(body.protocol.as_deref(), Some("chat"));
    assert_eq!(
        body.headers,
        vec![("x-app".to_string(), "test".to_string())]
    );
    match app.next_seen().await {
        Seen::Incoming { id, resumed } => {
            assert_eq!((&*id.instance, id.id, resumed), (inst.as_str(), 7, false));
        }
        other => panic!("unexpected {other:?}"),
    }

    gw.send(&[Frame::message(7, KIND_TEXT, true, &b"hi"[..])])
        .await;
    let echo = gw.next().await;
    assert_eq!(echo, Frame::message(7, KIND_TEXT, true, &b"hi"[..]));

    gw.send(&[Frame::message(7, KIND_BINARY, true, vec![0u8, 255, 1])])
        .await;
    let echo = gw.next().await;
    assert_eq!(
        echo,
        Frame::message(7, KIND_BINARY, true, vec![0u8, 255, 1])
    );
}

#[tokio::test]
async fn fragments_are_joined_into_one_message() {
    let app = App::start(Config::default()).await;
    let mut gw = opened(&app, 1, "/").await;
    // Fragments in separate WebSocket messages, then in one.
    gw.send(&[Frame::message(1, KIND_BINARY, false, &b"ab"[..])])
        .await;
    gw.send(&[Frame::message(1, KIND_CONTINUATION, false, &b"cd"[..])])
        .await;
    gw.send(&[Frame::message(1, KIND_CONTINUATION, true, &b"ef"[..])])
        .await;
    assert_eq!(
        gw.next().await,
        Frame::message(1, KIND_BINARY, true, &b"abcdef"[..])
    );
    // A UTF-8 character split across fragments.
    let text = "héllo".as_bytes();
    gw.send(&[
        Frame::message(1, KIND_TEXT, false, text[..2].to_vec()),
        Frame::message(1, KIND_CONTINUATION, true, text[2..].to_vec()),
    ])
    .await;
    assert_eq!(
        gw.next().await,
        Frame::message(1, KIND_TEXT, true, text.to_vec())
    );
}

#[tokio::test]
async fn batches_of_several_sessions() {
    let app = App::start(Config::default()).await;
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    // Three OPENs in one WebSocket message.
    gw.send(&[
        Frame::open(1, false, &open_body("/a")),
        Frame::open(2, false, &open_body("/b")),
        Frame::open(3, false, &open_body("/c")),
    ])
    .await;
    let mut accepted: Vec<u32> = Vec::new();
    for _ in 0..3 {
        let f = gw.next().await;
        assert_eq!(f.kind, FrameType::Accept);
        accepted.push(f.session);
    }
    accepted.sort();
    assert_eq!(accepted, vec![1, 2, 3]);

    // Many messages of the three sessions in one WebSocket message.
    let mut batch = Vec::new();
    for i in 0..30u32 {
        let s = 1 + i % 3;
        batch.push(Frame::message(s, KIND_TEXT, true, format!("{s}:{i}")));
    }
    gw.send(&batch).await;
    let mut got: HashMap<u32, Vec<String>> = HashMap::new();
    let mut messages = 0;
    while got.values().map(Vec::len).sum::<usize>() < 30 {
        messages += 1;
        let n = gw.next_message_len().await;
        for _ in 0..n {
            let f = gw.next().await;
            assert_eq!((f.kind, f.flags), (FrameType::Message, KIND_TEXT | 1));
            let text = String::from_utf8(f.body.to_vec()).expect("UTF-8");
            got.entry(f.session).or_default().push(text);
        }
    }
    for s in 1..=3u32 {
        let want: Vec<String> = (0..30u32)
            .filter(|i| 1 + i % 3 == s)
            .map(|i| format!("{s}:{i}"))
            .collect();
        assert_eq!(got[&s], want, "session {s} in order");
    }
    // The echoes left in at most 30 messages; batching is what the writer
    // does when it finds several queued, which is not guaranteed to
    // happen here, so only the count bound is asserted.
    assert!(messages <= 30);
}

#[tokio::test]
async fn reject() {
    let mut app = App::start(Config::default()).await;
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    gw.send(&[Frame::open(4, false, &open_body("/reject"))])
        .await;
    let f = gw.next().await;
    assert_eq!((f.kind, f.session), (FrameType::Reject, 4));
    let body: RejectBody = f.json().expect("REJECT body");
    assert_eq!(body.status, 403);
    assert_eq!(body.body, "rejected by app");
    assert!(matches!(app.next_seen().await, Seen::Incoming { .. }));
    // A later MESSAGE for the finished id is ignored, the connection lives.
    gw.send(&[
        Frame::message(4, KIND_TEXT, true, &b"x"[..]),
        Frame::ping(&b"p"[..]),
    ])
    .await;
    assert_eq!(gw.next().await, Frame::pong(&b"p"[..]));
}

#[tokio::test]
async fn close_from_the_gateway() {
    let mut app = App::start(Config::default()).await;
    let mut gw = opened(&app, 9, "/").await;
    assert!(matches!(app.next_seen().await, Seen::Incoming { .. }));
    gw.send(&[Frame::close(9, &Close::new(1001, "bye"))]).await;
    match app.next_seen().await {
        Seen::Closed { id, close } => {
            assert_eq!(id.id, 9);
            assert_eq!(close, Close::new(1001, "bye"));
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn close_from_the_app() {
    let app = App::start(Config::default()).await;
    let mut gw = opened(&app, 3, "/").await;
    gw.send(&[Frame::message(3, KIND_TEXT, true, "!close 4001 done")])
        .await;
    let f = gw.next().await;
    assert_eq!(f, Frame::close(3, &Close::new(4001, "done")));
    // Nothing follows for that id: the next frame is the PONG.
    gw.send(&[
        Frame::message(3, KIND_TEXT, true, &b"late"[..]),
        Frame::ping(&b"1"[..]),
    ])
    .await;
    assert_eq!(gw.next().await, Frame::pong(&b"1"[..]));
}

#[tokio::test]
async fn ping_pong_and_unknown_sessions() {
    let app = App::start(Config::default()).await;
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    gw.send(&[
        Frame::message(42, KIND_TEXT, true, &b"nobody"[..]),
        Frame::close(43, &Close::new(1000, "")),
        Frame::ping(&b"12345678"[..]),
    ])
    .await;
    assert_eq!(gw.next().await, Frame::pong(&b"12345678"[..]));
    // PONGs owed for one message are queued together and leave together
    // (the reader does not yield between the frames of one message).
    let pings: Vec<Frame> = (0..5u8).map(|i| Frame::ping(vec![i])).collect();
    gw.send(&pings).await;
    assert_eq!(gw.next_message_len().await, 5);
    for i in 0..5u8 {
        assert_eq!(gw.next().await, Frame::pong(vec![i]));
    }
    // A WebSocket-level ping is answered by a WebSocket pong, in order
    // with the mux frames around it.
    gw.send_raw(OpCode::Ping, b"ws".to_vec()).await;
    gw.send(&[Frame::ping(&b"again"[..])]).await;
    assert_eq!(gw.next().await, Frame::pong(&b"again"[..]));
    assert_eq!(gw.ws_pongs, vec![b"ws".to_vec()]);
}

#[tokio::test]
async fn slow_consumer_is_closed_with_1008() {
    let config = Config {
        session_queue_messages: 4,
        ..Config::default()
    };
    let app = App::start(config).await;
    let mut gw = opened(&app, 5, "/hold").await;
    let batch: Vec<Frame> = (0..8)
        .map(|i| Frame::message(5, KIND_TEXT, true, format!("m{i}")))
        .collect();
    gw.send(&batch).await;
    let f = gw.next().await;
    assert_eq!(f.kind, FrameType::Close);
    assert_eq!(Close::decode(&f.body).expect("CLOSE body").code, Some(1008));
}

async fn expect_1002(raw: Option<Vec<u8>>, text: bool, frames: &[Frame]) {
    let app = App::start(Config::default()).await;
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    if text {
        gw.send_raw(OpCode::Text, b"hello".to_vec()).await;
    } else if let Some(raw) = raw {
        gw.send_raw(OpCode::Binary, raw).await;
    } else {
        gw.send(frames).await;
    }
    match patiently("the close", gw.until_end()).await {
        Ended::Close(code, _) => assert_eq!(code, Some(1002)),
        Ended::Broken => panic!("closed without a Close frame"),
    }
}

#[tokio::test]
async fn text_message_is_a_protocol_error() {
    expect_1002(None, true, &[]).await;
}

#[tokio::test]
async fn truncated_frame_is_a_protocol_error() {
    expect_1002(Some(vec![4, 3, 0, 0, 0, 1, 0, 0, 0, 9, b'x']), false, &[]).await;
}

#[tokio::test]
async fn empty_message_is_a_protocol_error() {
    expect_1002(Some(Vec::new()), false, &[]).await;
}

#[tokio::test]
async fn unknown_type_is_a_protocol_error() {
    expect_1002(Some(vec![0x99, 0, 0, 0, 0, 1, 0, 0, 0, 0]), false, &[]).await;
}

#[tokio::test]
async fn accept_from_the_gateway_is_a_protocol_error() {
    expect_1002(None, false, &[Frame::accept(1, &AcceptBody::default())]).await;
}

#[tokio::test]
async fn bad_open_json_is_a_protocol_error() {
    expect_1002(
        None,
        false,
        &[Frame::new(FrameType::Open, 0, 1, &b"[1]"[..])],
    )
    .await;
}

#[tokio::test]
async fn upgrade_without_the_subprotocol_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = App::start(Config::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(app.server.local_addr())
        .await
        .expect("connect");
    let req = "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
               Sec-WebSocket-Protocol: chat\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = patiently("the answer", tcp.read(&mut buf))
        .await
        .expect("read");
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
}

#[tokio::test]
async fn session_level_mistakes_close_only_that_session() {
    let config = Config {
        max_message_bytes: 8,
        ..Config::default()
    };
    let app = App::start(config).await;
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    gw.send(&[
        Frame::open(1, false, &open_body("/")),
        Frame::open(2, false, &open_body("/")),
        Frame::open(3, false, &open_body("/")),
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(gw.next().await.kind, FrameType::Accept);
    }
    // 1: a continuation with no message started; 2: over the size limit.
    gw.send(&[
        Frame::message(1, KIND_CONTINUATION, true, &b"x"[..]),
        Frame::message(2, KIND_BINARY, false, &b"12345"[..]),
        Frame::message(2, KIND_CONTINUATION, true, &b"6789"[..]),
    ])
    .await;
    let mut closes = HashMap::new();
    for _ in 0..2 {
        let f = gw.next().await;
        assert_eq!(f.kind, FrameType::Close);
        closes.insert(f.session, Close::decode(&f.body).expect("CLOSE").code);
    }
    assert_eq!(closes[&1], Some(1002));
    assert_eq!(closes[&2], Some(1009));
    // 3 is untouched.
    gw.send(&[Frame::message(3, KIND_TEXT, true, &b"ok"[..])])
        .await;
    assert_eq!(
        gw.next().await,
        Frame::message(3, KIND_TEXT, true, &b"ok"[..])
    );
}
