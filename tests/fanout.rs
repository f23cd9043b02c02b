//! Fan-out at the edge (issue #17, docs/fanout.md) through the release
//! binary: a mux application subscribing its sessions and publishing once
//! for thousands of clients, passthrough sessions subscribed by their
//! upstream's 101, channel grants from the token, the HTTP publish API and
//! the slow-subscriber policies.

use crate::support::mux_app::{FakeApp, FakeConn, FromGateway};
use crate::support::*;
use fastwebsockets::{Frame, OpCode};
use std::sync::Arc;
use std::time::Duration;
use tidegate_mux::codec::{self, AcceptBody, FrameType, KIND_CONTINUATION, KIND_TEXT};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const CLIENTS: usize = 5_000;
const POOL: usize = 4;
const MESSAGES: usize = 100;

/// Answer every OPEN on `conn` with ACCEPT and SUBSCRIBE to `channel`.
pub(crate) fn accept_and_subscribe(mut conn: FakeConn, channel: &'static str) {
    tokio::spawn(async move {
        loop {
            match conn.next().await {
                FromGateway::Frame(f) if f.kind == FrameType::Open => conn.send(&[
                    codec::Frame::accept(f.session, &AcceptBody::default()),
                    codec::Frame::subscribe(f.session, channel),
                ]),
                FromGateway::Frame(_) => {}
                FromGateway::Closed(..) | FromGateway::Gone => return,
            }
        }
    });
}

/// 5,000 sessions over 4 mux connections, subscribed to one channel by
/// the application, each receive all 100 publishes of one PUBLISH frame
/// each, in order; closing them frees every subscription.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_mux_sessions_receive_every_publish_in_order() {
    let _serial = serial().await;
    let limit = raise_nofile();
    assert!(
        limit as usize > CLIENTS + 500,
        "RLIMIT_NOFILE {limit} too low"
    );
    let mut app = FakeApp::start_with(Some("fanout")).await;
    let mut raw = mux_config(&[format!("ws://{}", app.addr)], POOL as u64);
    // Not 20,000: the cap must leave descriptors over for the subscribers'
    // duplicates, or delivery never goes direct (`crate::fds`, extra).
    raw.limits.max_connections = 10_000;
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let mut publisher = None;
    for _ in 0..POOL {
        let conn = app.conn().await;
        assert_eq!(
            conn.offered.as_deref(),
            Some("fanout"),
            "the gateway offers fanout"
        );
        publisher.get_or_insert_with(|| conn.sender());
        accept_and_subscribe(conn, "room");
    }
    let publisher = publisher.expect("a connection");

    let clients = connect_subscribers(gw.addr, CLIENTS, gw.admin).await;
    wait_metric(gw.admin, "tidegate_fanout_channels", &[], 1.0).await;

    // One PUBLISH frame per message; batches of 10 frames per WebSocket
    // message, as an SDK would send them.
    let clients = publish_and_read_all(&publisher, clients, ("room", "m"), MESSAGES, 10).await;
    let m = scrape(gw.admin).await;
    assert!(m.sum("tidegate_fanout_deliveries_total", &[]) >= (CLIENTS * MESSAGES) as f64);
    assert_eq!(
        m.sum("tidegate_fanout_publishes_total", &[("source", "mux")]),
        MESSAGES as f64
    );

    drop(clients);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 0.0).await;
    wait_metric(gw.admin, "tidegate_fanout_channels", &[], 0.0).await;
}

/// Connect `count` clients to `addr` (path `/`, at most 100 handshakes at a
/// time) and wait until the gateway whose admin listener is `admin` counts
/// that many fan-out subscriptions. Returns the clients in the order their
/// handshakes completed.
pub(crate) async fn connect_subscribers(
    addr: std::net::SocketAddr,
    count: usize,
    admin: std::net::SocketAddr,
) -> Vec<Ws<tokio::net::TcpStream>> {
    connect_subscribers_with(count, admin, move |_| ws_connect(addr, "/")).await
}

/// [`connect_subscribers`] with a connect function of the test's own,
/// called with each client's number (e.g. to make some of them slow).
pub(crate) async fn connect_subscribers_with<T, F, Fut>(
    count: usize,
    admin: std::net::SocketAddr,
    connect: F,
) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let gate = Arc::new(Semaphore::new(100));
    let mut opening = JoinSet::new();
    for n in 0..count {
        let gate = Arc::clone(&gate);
        let client = connect(n);
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            client.await
        });
    }
    let mut clients = Vec::with_capacity(count);
    let limit = Duration::from_secs(120);
    while let Some(client) = within_for(limit, "clients connect", opening.join_next()).await {
        clients.push(client.expect("client task"));
    }
    wait_metric(admin, "tidegate_fanout_subscriptions", &[], count as f64).await;
    clients
}

/// Take the application's `pool` mux connections, each accepting every
/// session and subscribing it to `channel`: the sender of the first, to
/// publish with.
pub(crate) async fn subscribing_app(
    app: &mut FakeApp,
    pool: usize,
    channel: &'static str,
) -> crate::support::mux_app::FakeSender {
    let mut publisher = None;
    for _ in 0..pool {
        let conn = app.conn().await;
        publisher.get_or_insert_with(|| conn.sender());
        accept_and_subscribe(conn, channel);
    }
    publisher.expect("a connection")
}

/// Publish `messages` texts `{prefix}{i}` on `channel` over the mux
/// connection of `publisher`, `batch` PUBLISH frames per WebSocket message,
/// and check that every client reads all of them, whole and in order.
/// Returns the clients.
pub(crate) async fn publish_and_read_all(
    publisher: &crate::support::mux_app::FakeSender,
    clients: Vec<Ws<tokio::net::TcpStream>>,
    (channel, prefix): (&str, &str),
    messages: usize,
    batch: usize,
) -> Vec<Ws<tokio::net::TcpStream>> {
    for first in (0..messages).step_by(batch) {
        let frames: Vec<codec::Frame> = (first..(first + batch).min(messages))
            .map(|i| codec::Frame::publish(channel, true, format!("{prefix}{i}").as_bytes(), None))
            .collect();
        publisher.send(&frames);
    }
    let n = clients.len();
    let mut reading = JoinSet::new();
    for mut ws in clients {
        let prefix = prefix.to_string();
        reading.spawn(async move {
            for i in 0..messages {
                let (fin, op, payload) = next_frame(&mut ws).await;
                assert!(fin && op == OpCode::Text, "a whole text message");
                assert_eq!(
                    payload,
                    format!("{prefix}{i}").as_bytes(),
                    "in publish order"
                );
            }
            ws
        });
    }
    let mut clients = Vec::with_capacity(n);
    let limit = Duration::from_secs(120);
    while let Some(ws) = within_for(limit, "every client reads", reading.join_next()).await {
        clients.push(ws.expect("every client got every message in order"));
    }
    clients
}

/// Connect a client and accept its OPEN on `conn`: the client and its
/// session id.
pub(crate) async fn connect_accepted(
    gw: std::net::SocketAddr,
    conn: &mut FakeConn,
) -> (Ws<tokio::net::TcpStream>, u32) {
    let client = tokio::spawn(async move { ws_connect(gw, "/").await });
    let open = conn.expect(FrameType::Open).await;
    conn.send(&[codec::Frame::accept(open.session, &AcceptBody::default())]);
    let ws = within("the client's 101", client)
        .await
        .expect("client task");
    (ws, open.session)
}

/// SUBSCRIBE/UNSUBSCRIBE/PUBLISH frame by frame: echo suppression, text
/// and binary, refused names counted, unknown sessions ignored, published
/// frames never inside an application's fragmented message, the gauge back
/// to 0 on unsubscribe and close.
#[tokio::test]
async fn mux_subscribe_publish_except_and_unsubscribe() {
    let mut app = FakeApp::start_with(Some("fanout")).await;
    let raw = mux_config(&[format!("ws://{}", app.addr)], 1);
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let mut conn = app.conn().await;
    let (mut c1, s1) = connect_accepted(gw.addr, &mut conn).await;
    let (mut c2, s2) = connect_accepted(gw.addr, &mut conn).await;
    conn.send(&[
        codec::Frame::subscribe(s1, "chat"),
        codec::Frame::subscribe(s2, "chat"),
        codec::Frame::subscribe(s2, "bad name"),
        codec::Frame::subscribe(s1 ^ s2 ^ 1, "chat"),
    ]);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 2.0).await;
    wait_metric(
        gw.admin,
        "tidegate_fanout_rejected_total",
        &[("reason", "invalid_name")],
        1.0,
    )
    .await;

    conn.send(&[codec::Frame::publish("chat", true, b"hello", Some(s1))]);
    assert_eq!(
        next_frame(&mut c2).await,
        (true, OpCode::Text, b"hello".to_vec())
    );
    conn.send(&[codec::Frame::publish("chat", false, &[1, 2, 3], None)]);
    let binary = (true, OpCode::Binary, vec![1, 2, 3]);
    assert_eq!(
        next_frame(&mut c1).await,
        binary,
        "s1 was excepted from hello"
    );
    assert_eq!(next_frame(&mut c2).await, binary);

    // A publish while the application is inside a fragmented message to
    // s1 waits for its last fragment.
    conn.send(&[codec::Frame::message(s1, KIND_TEXT, false, &b"part1"[..])]);
    assert_eq!(
        next_frame(&mut c1).await,
        (false, OpCode::Text, b"part1".to_vec())
    );
    conn.send(&[codec::Frame::publish("chat", true, b"news", None)]);
    assert_eq!(
        next_frame(&mut c2).await,
        (true, OpCode::Text, b"news".to_vec())
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn.send(&[codec::Frame::message(
        s1,
        KIND_CONTINUATION,
        true,
        &b"part2"[..],
    )]);
    assert_eq!(
        next_frame(&mut c1).await,
        (true, OpCode::Continuation, b"part2".to_vec())
    );
    assert_eq!(
        next_frame(&mut c1).await,
        (true, OpCode::Text, b"news".to_vec())
    );

    conn.send(&[
        codec::Frame::unsubscribe(s1, "chat"),
        codec::Frame::unsubscribe(s1, "never"),
    ]);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 1.0).await;
    send(&mut c2, Frame::close(1000, b"bye")).await;
    let _ = expect_close(&mut c2).await;
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 0.0).await;
    wait_metric(gw.admin, "tidegate_fanout_channels", &[], 0.0).await;
    drop(c1);
}

/// An application that did not echo the extension gets no fan-out frame
/// types: a SUBSCRIBE from it is a protocol error, as any unknown type.
#[tokio::test]
async fn fanout_frames_without_negotiation_are_a_protocol_error() {
    let mut app = FakeApp::start().await;
    let raw = mux_config(&[format!("ws://{}", app.addr)], 1);
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let mut conn = app.conn().await;
    assert_eq!(
        conn.offered.as_deref(),
        Some("fanout"),
        "offered all the same"
    );
    let (_c, s) = connect_accepted(gw.addr, &mut conn).await;
    conn.send(&[codec::Frame::subscribe(s, "chat")]);
    loop {
        match conn.next().await {
            FromGateway::Closed(code, reason) => {
                assert_eq!((code, reason.as_str()), (1002, "unknown_type"));
                break;
            }
            FromGateway::Frame(_) => continue,
            FromGateway::Gone => panic!("closed without a Close frame"),
        }
    }
}

mod edge;
