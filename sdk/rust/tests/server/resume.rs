//! Sessions outliving their mux connection (docs/mux-protocol.md §6):
//! resume on another connection, the grace, and GOAWAY.

use std::time::Duration;

use tidegate_mux::codec::{Frame, FrameType, KIND_TEXT};
use tidegate_mux::server::Config;
use tidegate_mux::AcceptBody;

use crate::app::{App, Seen};
use crate::gateway::{instance, open_body, Ended, Gateway};

#[tokio::test]
async fn known_session_resumes_without_the_app_noticing() {
    let mut app = App::start(Config::default()).await;
    let inst = instance();
    let mut a = Gateway::connect(app.server.local_addr(), &inst).await;
    a.send(&[Frame::open(5, false, &open_body("/room"))]).await;
    assert_eq!(a.next().await.kind, FrameType::Accept);
    a.send(&[Frame::message(5, KIND_TEXT, true, "before")])
        .await;
    assert_eq!(a.next().await, Frame::message(5, KIND_TEXT, true, "before"));
    assert!(matches!(app.next_seen().await, Seen::Incoming { .. }));
    drop(a); // the connection is lost (TCP closed)

    let mut b = Gateway::connect(app.server.local_addr(), &inst).await;
    b.send(&[Frame::open(5, true, &open_body("/room"))]).await;
    let accept = b.next().await;
    assert_eq!((accept.kind, accept.session), (FrameType::Accept, 5));
    assert_eq!(
        accept.json::<AcceptBody>().expect("body"),
        AcceptBody::default()
    );
    b.send(&[Frame::message(5, KIND_TEXT, true, "after")]).await;
    assert_eq!(b.next().await, Frame::message(5, KIND_TEXT, true, "after"));
    // The application saw one OPEN only, and no close.
    assert!(app.seen.try_recv().is_err());
}

#[tokio::test]
async fn resume_after_goaway_while_the_old_connection_is_up() {
    let mut app = App::start(Config::default()).await;
    let inst = instance();
    let mut a = Gateway::connect(app.server.local_addr(), &inst).await;
    a.send(&[Frame::open(8, false, &open_body("/"))]).await;
    assert_eq!(a.next().await.kind, FrameType::Accept);
    assert!(matches!(app.next_seen().await, Seen::Incoming { .. }));

    let mut b = Gateway::connect(app.server.local_addr(), &inst).await;
    assert_eq!(app.server.goaway("deploy"), 2);
    assert_eq!(a.next().await, Frame::goaway("deploy"));
    assert_eq!(b.next().await, Frame::goaway("deploy"));

    b.send(&[Frame::open(8, true, &open_body("/"))]).await;
    assert_eq!(b.next().await.kind, FrameType::Accept);
    b.send(&[Frame::message(8, KIND_TEXT, true, "moved")]).await;
    assert_eq!(b.next().await, Frame::message(8, KIND_TEXT, true, "moved"));
    // The gateway closes the old connection; the session lives on.
    drop(a);
    b.send(&[Frame::message(8, KIND_TEXT, true, "still")]).await;
    assert_eq!(b.next().await, Frame::message(8, KIND_TEXT, true, "still"));
    assert!(app.seen.try_recv().is_err());
}

#[tokio::test]
async fn goaway_stops_listening() {
    let app = App::start(Config::default()).await;
    let mut a = Gateway::connect(app.server.local_addr(), &instance()).await;
    assert_eq!(app.server.connection_count(), 1);
    assert_eq!(app.server.goaway(""), 1);
    let f = a.next().await;
    assert_eq!((f.kind, f.session, f.body.len()), (FrameType::Goaway, 0, 0));
    // It stopped listening: the gateway's next connections go to whoever
    // listens on the port now (a new instance), never back here.
    crate::gateway::patiently("the listener closes", async {
        while tokio::net::TcpStream::connect(app.server.local_addr())
            .await
            .is_ok()
        {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    // The gateway closes the old connection: the count reaches zero.
    drop(a);
    crate::gateway::patiently("zero connections", app.server.wait_connections_closed()).await;
}

#[tokio::test]
async fn unknown_resumed_session_reaches_the_app() {
    let mut app = App::start(Config::default()).await;
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    gw.send(&[Frame::open(77, true, &open_body("/"))]).await;
    assert_eq!(gw.next().await.kind, FrameType::Accept);
    match app.next_seen().await {
        Seen::Incoming { id, resumed } => assert_eq!((id.id, resumed), (77, true)),
        other => panic!("unexpected {other:?}"),
    }
    gw.send(&[Frame::message(77, KIND_TEXT, true, "x")]).await;
    assert_eq!(gw.next().await, Frame::message(77, KIND_TEXT, true, "x"));
}

#[tokio::test]
async fn unresumed_session_closes_with_1006_after_the_grace() {
    let config = Config {
        resume_grace: Duration::from_millis(200),
        ..Config::default()
    };
    let mut app = App::start(config).await;
    let inst = instance();
    let mut gw = Gateway::connect(app.server.local_addr(), &inst).await;
    gw.send(&[Frame::open(2, false, &open_body("/"))]).await;
    assert_eq!(gw.next().await.kind, FrameType::Accept);
    assert!(matches!(app.next_seen().await, Seen::Incoming { .. }));
    drop(gw);
    match app.next_seen().await {
        Seen::Closed { id, close } => {
            assert_eq!(id.id, 2);
            assert_eq!(close.code, Some(1006));
        }
        other => panic!("unexpected {other:?}"),
    }
    // Too late now: a RESUMED OPEN is a new session for the app.
    let mut gw = Gateway::connect(app.server.local_addr(), &inst).await;
    gw.send(&[Frame::open(2, true, &open_body("/"))]).await;
    assert_eq!(gw.next().await.kind, FrameType::Accept);
    match app.next_seen().await {
        Seen::Incoming { resumed, .. } => assert!(resumed),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn gateway_websocket_close_is_answered() {
    let app = App::start(Config::default()).await;
    let mut gw = Gateway::connect(app.server.local_addr(), &instance()).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"done");
    gw.send_raw(fastwebsockets::OpCode::Close, payload).await;
    assert_eq!(
        gw.until_end().await,
        Ended::Close(Some(1000), String::new())
    );
}

/// Connect, OPEN `id`, run `cmd` on it, lose the connection, resume it on
/// a second one; returns the second connection after its ACCEPT.
async fn resume_after(app: &App, id: u32, cmd: &str) -> Gateway {
    let inst = instance();
    let mut a = Gateway::connect(app.server.local_addr(), &inst).await;
    a.send(&[Frame::open(id, false, &open_body("/"))]).await;
    assert_eq!(a.next().await.kind, FrameType::Accept);
    a.send(&[Frame::message(id, KIND_TEXT, true, cmd.to_string())])
        .await;
    // Ping round trip: the command reached the application.
    a.send(&[Frame::ping(&b"sync"[..])]).await;
    assert_eq!(a.next().await, Frame::pong(&b"sync"[..]));
    drop(a);
    // Resume once the application acted, so it acted while detached.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut b = Gateway::connect(app.server.local_addr(), &inst).await;
    b.send(&[Frame::open(id, true, &open_body("/"))]).await;
    assert_eq!(b.next().await.kind, FrameType::Accept);
    b
}

#[tokio::test]
async fn a_send_while_resuming_goes_out_on_the_new_connection() {
    let app = App::start(Config::default()).await;
    let mut b = resume_after(&app, 11, "!later 200 late").await;
    assert_eq!(b.next().await, Frame::message(11, KIND_TEXT, true, "late"));
}

#[tokio::test]
async fn a_close_while_resuming_goes_out_after_the_accept() {
    let app = App::start(Config::default()).await;
    let mut b = resume_after(&app, 12, "!later 200 close 4002").await;
    assert_eq!(
        b.next().await,
        Frame::close(12, &tidegate_mux::Close::new(4002, "later"))
    );
}

/// With `gateway_secret` set, only the gateway (the one peer that knows
/// it) may open a mux connection; anyone else gets 401 before any frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_gateway_secret_is_refused() {
    let config = tidegate_mux::server::Config {
        gateway_secret: Some("a-long-shared-secret-0123456789".into()),
        ..tidegate_mux::server::Config::default()
    };
    let server = tidegate_mux::server::MuxServer::bind_with("127.0.0.1:0", config)
        .await
        .expect("bind");
    let addr = server.local_addr();
    for secret in [None, Some("wrong"), Some("a-long-shared-secret-012345678")] {
        let status = crate::gateway::try_connect(addr, &crate::gateway::instance(), secret).await;
        assert_eq!(status, Err(401), "secret {secret:?}");
    }
    let ok = crate::gateway::try_connect(
        addr,
        &crate::gateway::instance(),
        Some("a-long-shared-secret-0123456789"),
    )
    .await;
    assert!(ok.is_ok(), "the right secret is accepted");
}
