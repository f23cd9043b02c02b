//! Extension `fanout` (docs/mux-protocol.md §10) on the SDK side, with the
//! test playing the gateway: negotiation on and off, SUBSCRIBE /
//! UNSUBSCRIBE / PUBLISH on the wire, `Room` on PUBLISH and its
//! per-session fallback, `Publisher`, and subscriptions across a resume.
//!
//! The registry of fan-out connections is process-wide and tests run in
//! parallel, so a `Publisher` test's PUBLISH may reach another test's
//! stand-in gateway: each test uses channel names of its own and skips
//! PUBLISH frames for other channels.

use tidegate_mux::codec::{Frame, FrameType, KIND_BINARY, KIND_TEXT};
use tidegate_mux::server::{Config, Message, MuxServer, Room, SendError, Session};
use tidegate_mux::AcceptBody;

use crate::gateway::{instance, open_body, patiently, Gateway};

async fn server(fanout: bool) -> MuxServer {
    let config = Config {
        fanout,
        ..Config::default()
    };
    MuxServer::bind_with("127.0.0.1:0", config)
        .await
        .expect("bind on port 0")
}

/// OPEN sessions `ids` on `gw`; the accepted sessions, by id.
async fn open(server: &MuxServer, gw: &mut Gateway, ids: &[u32]) -> Vec<Session> {
    let opens: Vec<Frame> = ids
        .iter()
        .map(|&i| Frame::open(i, false, &open_body("/r")))
        .collect();
    gw.send(&opens).await;
    let mut sessions = Vec::new();
    for _ in ids {
        let incoming = patiently("an OPEN", server.accept()).await.expect("open");
        sessions.push(incoming.accept(AcceptBody::default()));
    }
    for _ in ids {
        assert_eq!(mine(gw, &[]).await.kind, FrameType::Accept);
    }
    sessions.sort_by_key(|s| s.id().id);
    sessions
}

/// The next frame, skipping PUBLISH frames for channels not in `ours`
/// (published by a parallel test; see the module note).
async fn mine(gw: &mut Gateway, ours: &[&str]) -> Frame {
    loop {
        let f = gw.next().await;
        if f.kind == FrameType::Publish {
            let p = f.publish_body().expect("valid PUBLISH");
            if !ours.iter().any(|c| p.channel_str() == Some(c)) {
                continue;
            }
        }
        return f;
    }
}

#[tokio::test]
async fn negotiated_room_is_subscribe_and_one_publish() {
    let server = server(true).await;
    let mut gw = Gateway::connect_fanout(server.local_addr(), &instance()).await;
    assert!(
        gw.fanout,
        "the 101 names fanout when the gateway offered it"
    );
    let s = open(&server, &mut gw, &[1, 2, 3]).await;
    assert!(s.iter().all(|s| s.sender().is_fanout()));
    let ch = ["room-neg"];
    let mut room = Room::new(ch[0]);
    for x in &s {
        room.join(x.sender());
    }
    for i in 1..=3 {
        let f = mine(&mut gw, &ch).await;
        assert_eq!(f, Frame::subscribe(i, "room-neg"));
    }
    assert_eq!(s[0].sender().channels(), ["room-neg"]);

    let d = room.broadcast_text("hello", Some(s[0].id()));
    assert_eq!((d.sent, d.published, d.full, d.closed), (2, 1, 0, 0));
    let f = mine(&mut gw, &ch).await;
    assert_eq!(f, Frame::publish("room-neg", true, b"hello", Some(1)));
    assert_eq!(f.flags, KIND_TEXT, "except = the excluded session, text");
    // Joining again replaces the member: still three (the room counts its
    // members per gateway instance as they come and go).
    room.join(s[1].sender());
    let d = room.broadcast_binary(bytes::Bytes::from_static(b"\x00bin"), None);
    assert_eq!((d.sent, d.published), (3, 1));
    let f = mine(&mut gw, &ch).await;
    assert_eq!((f.session, f.flags), (0, KIND_BINARY));

    room.leave(s[1].id());
    assert_eq!(mine(&mut gw, &ch).await, Frame::unsubscribe(2, "room-neg"));
    s[2].close(1000, "bye").expect("close");
    assert_eq!(mine(&mut gw, &ch).await.kind, FrameType::Close);
    let d = room.broadcast_text("after", None);
    assert_eq!((d.sent, d.closed, room.len()), (1, 1, 1));
    // Only the PUBLISH: no MESSAGE copies for the members.
    assert_eq!(mine(&mut gw, &ch).await.kind, FrameType::Publish);
}

#[tokio::test]
async fn without_the_extension_room_sends_per_session() {
    for (offer, enabled) in [(false, true), (true, false)] {
        let server = server(enabled).await;
        let addr = server.local_addr();
        let mut gw = if offer {
            Gateway::connect_fanout(addr, &instance()).await
        } else {
            Gateway::connect(addr, &instance()).await
        };
        assert!(!gw.fanout, "no fanout in the 101 unless both sides name it");
        let s = open(&server, &mut gw, &[1, 2]).await;
        let mut room = Room::new("room-off");
        room.join(s[0].sender());
        room.join(s[1].sender());
        assert_eq!(s[0].subscribe("other-off"), Ok(false), "not carried");
        let d = room.broadcast_text("hi", Some(s[1].id()));
        assert_eq!((d.sent, d.published), (1, 0));
        assert_eq!(
            mine(&mut gw, &[]).await,
            Frame::message(1, KIND_TEXT, true, "hi")
        );
        // The fallback of a publish: subscribers of this process.
        let d = server
            .publish("other-off", &Message::text("direct"), None)
            .expect("valid channel");
        assert_eq!(d.sent, 1);
        let f = mine(&mut gw, &[]).await;
        assert_eq!(f, Frame::message(1, KIND_TEXT, true, "direct"));
    }
}

#[tokio::test]
async fn publisher_goes_once_per_gateway_instance() {
    let server = server(true).await;
    let addr = server.local_addr();
    let (ia, ib) = (instance(), instance());
    let mut a = Gateway::connect_fanout(addr, &ia).await;
    let a2 = Gateway::connect_fanout(addr, &ia).await;
    let mut b = Gateway::connect_fanout(addr, &ib).await;
    let sa = open(&server, &mut a, &[5]).await.remove(0);
    let sb = open(&server, &mut b, &[5]).await.remove(0);
    let ch = ["feed-pub"];
    sa.subscribe(ch[0]).expect("subscribe");
    sb.subscribe(ch[0]).expect("subscribe");
    assert_eq!(mine(&mut a, &ch).await, Frame::subscribe(5, ch[0]));
    assert_eq!(mine(&mut b, &ch).await, Frame::subscribe(5, ch[0]));
    let publisher = server.publisher();
    for n in 0..3 {
        let d = publisher
            .publish(ch[0], &Message::text(format!("tick {n}")), Some(sa.id()))
            .expect("valid channel");
        assert!(d.published >= 2, "at least our two instances: {d:?}");
        assert_eq!(d.sent, 0, "the gateway delivers; nothing per session");
    }
    // Always the oldest connection of an instance (the gateway keeps one
    // connection's order per channel); except only where `sa` lives.
    for n in 0..3 {
        let body = format!("tick {n}");
        let fa = mine(&mut a, &ch).await;
        assert_eq!(fa, Frame::publish(ch[0], true, body.as_bytes(), Some(5)));
        let fb = mine(&mut b, &ch).await;
        assert_eq!(fb, Frame::publish(ch[0], true, body.as_bytes(), None));
    }
    assert!(publisher
        .publish("bad name", &Message::text("x"), None)
        .is_err());
    assert_eq!(sa.subscribe("bad name"), Err(SendError::BadChannel));
    drop(a2);
}

#[tokio::test]
async fn subscriptions_survive_a_resume_and_changes_meanwhile_follow() {
    let server = server(true).await;
    let inst = instance();
    let mut gw = Gateway::connect_fanout(server.local_addr(), &inst).await;
    let s = open(&server, &mut gw, &[1, 2]).await;
    let ch = ["lobby-res", "news-res", "sport-res"];
    let mut room = Room::new(ch[0]);
    room.join(s[0].sender());
    room.join(s[1].sender());
    s[0].subscribe(ch[1]).expect("subscribe");
    for _ in 0..3 {
        assert_eq!(mine(&mut gw, &ch).await.kind, FrameType::Subscribe);
    }
    drop(gw);
    // Wait until the SDK saw the connection go: a send says `Resuming`.
    patiently("the session to detach", async {
        while s[0].sender().try_send_text("x") != Err(SendError::Resuming) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    s[0].unsubscribe(ch[1]).expect("unsubscribe");
    s[0].subscribe(ch[2]).expect("subscribe");

    let mut gw = Gateway::connect_fanout(server.local_addr(), &inst).await;
    gw.send(&[
        Frame::open(1, true, &open_body("/r")),
        Frame::open(2, true, &open_body("/r")),
    ])
    .await;
    let got: Vec<Frame> = vec![
        mine(&mut gw, &ch).await,
        mine(&mut gw, &ch).await,
        mine(&mut gw, &ch).await,
        mine(&mut gw, &ch).await,
    ];
    // ACCEPT, then only what changed while detached; lobby was kept.
    assert_eq!(got[0], Frame::accept(1, &AcceptBody::default()));
    assert_eq!(got[1], Frame::unsubscribe(1, ch[1]));
    assert_eq!(got[2], Frame::subscribe(1, ch[2]));
    assert_eq!(got[3], Frame::accept(2, &AcceptBody::default()));
    let mut channels = s[0].sender().channels();
    channels.sort();
    assert_eq!(channels, [ch[0], ch[2]]);
    let d = room.broadcast_text("back", None);
    assert_eq!((d.sent, d.published), (2, 1));
    assert_eq!(
        mine(&mut gw, &ch).await,
        Frame::publish(ch[0], true, b"back", None)
    );
}
