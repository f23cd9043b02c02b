//! `[fanout] send_batch` (issue #17, `src/fanout/uring.rs`): a broadcast's
//! direct sends one by one (`none`) or in io_uring batches (`io_uring`)
//! must deliver the same: every subscriber every message, whole, in
//! publish order, exactly once — on the publishing worker and through the
//! other worker's delivery task (`runtime.workers = 2`), with some
//! subscribers not reading while the publishes go out, so their sockets
//! fill and the sends come back short or refused and fall back to the
//! session's queue. Those clients connect with a small receive buffer, so
//! that happens within a few dozen messages rather than after megabytes.

use crate::fanout::{connect_subscribers_with, subscribing_app};
use crate::support::mux_app::FakeApp;
use crate::support::*;
use fastwebsockets::OpCode;
use std::time::Duration;
use tidegate_mux::codec;
use tokio::task::JoinSet;

const CLIENTS: usize = 2_000;
const MESSAGES: usize = 200;
/// Large enough that a non-reading client's socket fills within the run
/// (200 × 1.2 KB = 240 KB per client), small enough to stay within the
/// session's queue (`mux.session_queue_bytes`, 1 MiB) — nothing dropped.
const PAYLOAD: usize = 1_200;
/// Every SLOW-th client reads only after the publishes went out.
const SLOW: usize = 10;
/// A slow client's `SO_RCVBUF` (the kernel doubles it).
const SLOW_RCVBUF: u32 = 4096;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_sends_deliver_every_message_in_order() {
    run("io_uring").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_sends_deliver_every_message_in_order() {
    run("none").await;
}

/// A client; a slow one with a small receive buffer.
async fn connect(addr: std::net::SocketAddr, slow: bool) -> Ws<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if slow {
        socket.set_recv_buffer_size(SLOW_RCVBUF).expect("SO_RCVBUF");
    }
    let tcp = within("connect", socket.connect(addr))
        .await
        .expect("connect to gateway");
    let (resp, ws) = ws_handshake(tcp, "localhost", "/", &[]).await;
    match ws {
        Some(ws) => client_ws(ws),
        None => panic!("expected 101, got {}", resp.status),
    }
}

fn message(i: usize) -> Vec<u8> {
    let mut m = format!("m{i}:").into_bytes();
    m.resize(PAYLOAD, b'a' + (i % 26) as u8);
    m
}

async fn run(mode: &str) {
    let _serial = serial().await;
    raise_nofile();
    let mut app = FakeApp::start_with(Some("fanout")).await;
    let mut raw = mux_config(&[format!("ws://{}", app.addr)], 2);
    raw.runtime.workers = 2;
    // Not 20,000: the cap must leave descriptors over for the subscribers'
    // duplicates, or delivery never goes direct (`crate::fds`, extra).
    raw.limits.max_connections = 10_000;
    raw.fanout.send_batch = mode.into();
    let file = ConfigFile::new(&raw);
    let gw = GatewayProc::start(&file).await;
    let publisher = subscribing_app(&mut app, 2, "batch").await;

    let addr = gw.addr;
    let clients = connect_subscribers_with(CLIENTS, gw.admin, move |n| async move {
        let slow = n % SLOW == 0;
        (slow, connect(addr, slow).await)
    })
    .await;

    // The readers start first; the slow ones wait until the publishes
    // have had time to go out (not a timing assertion: they only read
    // later, whatever the gateway did meanwhile).
    let mut reading = JoinSet::new();
    for (slow, mut ws) in clients {
        reading.spawn(async move {
            if slow {
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            for i in 0..MESSAGES {
                let (fin, op, payload) = next_frame(&mut ws).await;
                assert!(fin && op == OpCode::Text, "a whole text message");
                assert!(payload == message(i), "message {i} next, whole");
            }
            // Exactly once: nothing after the last message (a frame
            // arriving would fail; none arriving ends the wait).
            let after = tokio::time::timeout(Duration::from_millis(300), ws.read_frame()).await;
            if let Ok(f) = after {
                let f = f.expect("read after the last message");
                assert!(
                    matches!(f.opcode, OpCode::Ping | OpCode::Pong),
                    "a frame after the last message"
                );
            }
            ws
        });
    }
    for first in (0..MESSAGES).step_by(10) {
        let frames: Vec<codec::Frame> = (first..first + 10)
            .map(|i| codec::Frame::publish("batch", true, &message(i), None))
            .collect();
        publisher.send(&frames);
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    let limit = Duration::from_secs(120);
    while let Some(ws) = within_for(limit, "every client reads", reading.join_next()).await {
        clients.push(ws.expect("every client got every message in order"));
    }

    let m = scrape(gw.admin).await;
    assert_eq!(
        m.sum("tidegate_fanout_deliveries_total", &[]),
        (CLIENTS * MESSAGES) as f64,
        "each delivery counted once ({mode})"
    );
    assert_eq!(m.sum("tidegate_fanout_drops_total", &[]), 0.0);
    for worker in ["0", "1"] {
        assert!(
            m.sum("tidegate_worker_accepted_total", &[("worker", worker)]) > 0.0,
            "clients on worker {worker}: both delivery paths ran"
        );
    }
    drop(clients);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 0.0).await;
}
