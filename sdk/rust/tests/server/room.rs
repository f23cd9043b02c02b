//! `Room`: a broadcast reaches every member but the excluded one, never
//! waits, and drops members that are closed; the query of an OPEN parsed.

use tidegate_mux::codec::{Frame, FrameType, KIND_TEXT};
use tidegate_mux::server::{Config, MuxServer, Room};
use tidegate_mux::AcceptBody;

use crate::gateway::{instance, open_body, patiently, Gateway};

#[tokio::test]
async fn broadcast_reaches_members_and_drops_closed_ones() {
    let server = MuxServer::bind_with("127.0.0.1:0", Config::default())
        .await
        .expect("bind");
    let mut gw = Gateway::connect(server.local_addr(), &instance()).await;
    let opens: Vec<Frame> = (1..=3)
        .map(|i| Frame::open(i, false, &open_body(&format!("/r?nick=n{i}&x=a+b"))))
        .collect();
    gw.send(&opens).await;
    let mut room = Room::new("r");
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let incoming = patiently("an OPEN", server.accept()).await.expect("open");
        assert_eq!(incoming.open.param("x").as_deref(), Some("a b"));
        let nick = incoming.open.param("nick").expect("nick");
        assert_eq!(nick, format!("n{}", incoming.id.id));
        let session = incoming.accept(AcceptBody::default());
        room.join(session.sender());
        sessions.push(session);
    }
    for _ in 0..3 {
        assert_eq!(gw.next().await.kind, FrameType::Accept);
    }

    let first = sessions[0].id().clone();
    let d = room.broadcast_text("hello", Some(&first));
    assert_eq!((d.sent, d.resuming, d.full, d.closed), (2, 0, 0, 0));
    let mut got: Vec<u32> = Vec::new();
    for _ in 0..2 {
        let f = gw.next().await;
        assert_eq!(f, Frame::message(f.session, KIND_TEXT, true, "hello"));
        got.push(f.session);
    }
    got.sort_unstable();
    assert_eq!(got, [2, 3], "everyone but the excluded member");

    sessions[2].close(1000, "bye").expect("close");
    let d = room.broadcast_text("again", None);
    assert_eq!((d.sent, d.closed), (2, 1));
    assert_eq!(room.len(), 2, "the closed member left");
}
