//! Direct replies (issue #20 item 3): the mux connection reader writes an
//! application's message straight to an idle client's socket instead of
//! queueing it and waking the session. Through the release binary with
//! one worker (a current-thread runtime, where the path exists) and the
//! SDK's echo example: replies stay whole and in order when the direct
//! path mixes with the queue — many sessions, slow readers whose sockets
//! fill (partial writes, the queue taking over), large messages,
//! fragmented client messages — and what went directly is counted as
//! every other message is. `tidegate_mux_direct_messages_total` shows the
//! path was taken, so these tests fail if it never is. The path is behind
//! `mux.direct_replies` (off by default), which these tests turn on.

use crate::support::*;
use fastwebsockets::{Frame, OpCode, Payload};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

/// Sessions at once in the mixed test; every eighth reads slowly.
const SESSIONS: usize = 24;
/// Messages per fast session, at most [`WINDOW`] unanswered.
const MESSAGES: usize = 120;
const WINDOW: usize = 6;
/// A slow reader gets this many 16 KiB messages per round before it reads
/// any (2 × 3.2 MB: over what its small receive buffer and the gateway's
/// send buffer hold — Linux lets the latter grow to 4 MiB — and under the
/// session queue bound [`QUEUE_BYTES`] the test sets).
const SLOW_ROUNDS: usize = 2;
const SLOW_MESSAGES: usize = 200;
const SLOW_SIZE: usize = 16 * 1024;
const QUEUE_BYTES: u64 = 16 << 20;

/// The release gateway with one worker, mux route `r` to `app`, with
/// `mux.direct_replies` as given.
async fn gateway(app: &EchoApp, direct: bool) -> GatewayProc {
    let mut raw = mux_config(&[app.url()], 2);
    raw.runtime.workers = 1;
    raw.mux.session_queue_bytes = QUEUE_BYTES;
    raw.mux.direct_replies = direct;
    let gw = GatewayProc::start(&ConfigFile::new(&raw)).await;
    wait_metric(gw.admin, "tidegate_mux_connections_up", &[], 2.0).await;
    gw
}

/// The `i`-th message of a fast session: mostly small text, some
/// medium and large binary, every tenth sent in three fragments.
fn message(client: usize, i: usize) -> (OpCode, Vec<u8>, bool) {
    let tag = format!("c{client} m{i} ");
    match i % 10 {
        3 => (OpCode::Binary, pattern(&tag, 3000), false),
        7 if i % 20 == 7 => (OpCode::Binary, pattern(&tag, 200 * 1024), false),
        9 => (OpCode::Text, pattern(&tag, 900), true),
        _ => (OpCode::Text, tag.into_bytes(), false),
    }
}

/// `tag` followed by filler up to `len` bytes (ASCII, so valid text).
fn pattern(tag: &str, len: usize) -> Vec<u8> {
    let mut v = tag.as_bytes().to_vec();
    v.extend((0..len.saturating_sub(tag.len())).map(|k| b'a' + (k % 26) as u8));
    v
}

async fn send_message(ws: &mut Ws<TcpStream>, op: OpCode, data: &[u8], fragmented: bool) {
    if !fragmented {
        return send(ws, Frame::new(true, op, None, Payload::Borrowed(data))).await;
    }
    let third = data.len() / 3;
    let parts = [&data[..third], &data[third..2 * third], &data[2 * third..]];
    for (k, part) in parts.iter().enumerate() {
        let op = if k == 0 { op } else { OpCode::Continuation };
        send(ws, Frame::new(k == 2, op, None, Payload::Borrowed(part))).await;
    }
}

/// The next echo, as one message (the application answers whole
/// messages; a fragmented answer is put together here all the same).
async fn next_message(ws: &mut Ws<TcpStream>) -> (OpCode, Vec<u8>) {
    let (mut fin, op, mut data) = next_frame(ws).await;
    while !fin {
        let (f, cont, more) = next_frame(ws).await;
        assert_eq!(cont, OpCode::Continuation, "fragments of one message");
        data.extend_from_slice(&more);
        fin = f;
    }
    (op, data)
}

/// A fast session: pipelined, at most WINDOW unanswered, every echo
/// checked against what was sent, in order.
async fn fast(addr: std::net::SocketAddr, client: usize) -> u64 {
    let mut ws = ws_connect(addr, "/").await;
    let (mut sent, mut got, mut bytes) = (0, 0, 0u64);
    while got < MESSAGES {
        while sent < MESSAGES && sent - got < WINDOW {
            let (op, data, fragmented) = message(client, sent);
            send_message(&mut ws, op, &data, fragmented).await;
            sent += 1;
        }
        let (op, data) = next_message(&mut ws).await;
        let (want_op, want, _) = message(client, got);
        assert_eq!(op, want_op, "client {client} message {got}: opcode");
        assert!(
            data == want,
            "client {client} message {got}: got {} bytes starting {:?}",
            data.len(),
            String::from_utf8_lossy(&data[..data.len().min(24)])
        );
        bytes += data.len() as u64;
        got += 1;
    }
    close_client(ws).await;
    bytes
}

/// A slow reader: a small receive buffer, and nothing read until the
/// application has flooded it with [`SLOW_ROUNDS`] × [`SLOW_MESSAGES`]
/// messages (the echo example's `!flood`), each round followed by the
/// echo of a marker — so the gateway finds its socket full mid-reply and
/// the queue takes over, and the markers show the order kept.
async fn slow(addr: std::net::SocketAddr, client: usize) -> u64 {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let tcp = socket.connect(addr).await.expect("connect");
    let (resp, stream) = ws_handshake(tcp, "localhost", "/", &[]).await;
    let mut ws = client_ws(stream.unwrap_or_else(|| panic!("101, got {}", resp.status)));
    let marker = |r: usize| format!("slow c{client} marker {r}");
    for r in 0..SLOW_ROUNDS {
        let flood = format!("!flood {SLOW_MESSAGES} {SLOW_SIZE}");
        send(&mut ws, Frame::text(Payload::Owned(flood.into_bytes()))).await;
        send(&mut ws, Frame::text(Payload::Owned(marker(r).into_bytes()))).await;
    }
    // Let the replies pile up against the full socket before reading.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bytes = 0;
    for r in 0..SLOW_ROUNDS {
        for i in 0..SLOW_MESSAGES {
            let (op, got) = next_message(&mut ws).await;
            let what = String::from_utf8_lossy(&got[..got.len().min(80)]).into_owned();
            assert_eq!(
                op,
                OpCode::Binary,
                "slow client {client} round {r} message {i}: {what:?}"
            );
            assert!(
                got.len() == SLOW_SIZE && got.iter().all(|&b| b == 0x5a),
                "slow client {client} round {r} message {i}: whole"
            );
            bytes += got.len() as u64;
        }
        let (op, got) = next_message(&mut ws).await;
        assert_eq!(
            (op, got),
            (OpCode::Text, marker(r).into_bytes()),
            "in order"
        );
        bytes += marker(r).len() as u64;
    }
    close_client(ws).await;
    bytes
}

async fn close_client(mut ws: Ws<TcpStream>) {
    send(&mut ws, Frame::close(1000, b"done")).await;
    let (code, _) = expect_close_next(&mut ws).await;
    assert_eq!(code, 1000);
}

fn upstream_to_client(m: &Metrics, name: &str) -> f64 {
    m.sum(name, &[("route", "r"), ("direction", "upstream_to_client")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stay_whole_and_in_order_when_direct_writes_mix_with_the_queue() {
    let app = EchoApp::start("127.0.0.1:0").await;
    let gw = gateway(&app, true).await;
    let mut clients = JoinSet::new();
    for c in 0..SESSIONS {
        let addr = gw.addr;
        if c % 8 == 7 {
            clients.spawn(slow(addr, c));
        } else {
            clients.spawn(fast(addr, c));
        }
    }
    let mut bytes = 0;
    within_for(Duration::from_secs(120), "every session's echoes", async {
        while let Some(done) = clients.join_next().await {
            bytes += done.expect("client task");
        }
    })
    .await;
    wait_metric(gw.admin, "tidegate_mux_connection_sessions", &[], 0.0).await;
    let m = scrape(gw.admin).await;
    let slow_n = SESSIONS / 8;
    let messages = (SESSIONS - slow_n) * MESSAGES + slow_n * SLOW_ROUNDS * (SLOW_MESSAGES + 1);
    // Every reply counted once, whichever way it went.
    assert_eq!(
        upstream_to_client(&m, "tidegate_messages_total"),
        messages as f64
    );
    assert_eq!(
        upstream_to_client(&m, "tidegate_payload_bytes_total"),
        bytes as f64
    );
    let direct = m.sum("tidegate_mux_direct_messages_total", &[("route", "r")]);
    eprintln!("{messages} replies, {direct} written directly by the connection reader");
    assert!(direct > 0.0, "the direct path was never taken\n{m}");
    assert!(
        direct < messages as f64,
        "the queue was never taken (slow readers must force it)"
    );
}

/// One client echoing one message at a time: its session is idle each
/// time a reply comes, so replies go directly — and are counted, in the
/// route's message and byte counters, by the time the session ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_replies_are_counted_like_queued_ones() {
    let app = EchoApp::start("127.0.0.1:0").await;
    let gw = gateway(&app, true).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    let mut bytes = 0;
    for i in 0..100 {
        let text = format!("one at a time {i}");
        echo_text(&mut ws, &text).await;
        bytes += text.len();
    }
    // Before the session ends the last replies may still be in its tally.
    let direct = wait_metric(
        gw.admin,
        "tidegate_mux_direct_messages_total",
        &[("route", "r")],
        Want::AtLeast(1.0),
    )
    .await;
    close_client(ws).await;
    wait_metric(gw.admin, "tidegate_mux_connection_sessions", &[], 0.0).await;
    let m = scrape(gw.admin).await;
    assert_eq!(upstream_to_client(&m, "tidegate_messages_total"), 100.0);
    assert_eq!(
        upstream_to_client(&m, "tidegate_payload_bytes_total"),
        bytes as f64
    );
    let direct_end = m.sum("tidegate_mux_direct_messages_total", &[("route", "r")]);
    eprintln!("100 sequential echoes: {direct_end} direct ({direct} seen mid-session)");
    assert!(
        direct_end >= 50.0,
        "an idle session's replies mostly go directly: {direct_end} of 100"
    );
}

/// Off by default (`mux.direct_replies = false`): every reply takes the
/// session's queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_switch_replies_take_the_queue() {
    let app = EchoApp::start("127.0.0.1:0").await;
    let gw = gateway(&app, false).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    for i in 0..20 {
        echo_text(&mut ws, &format!("queued {i}")).await;
    }
    close_client(ws).await;
    wait_metric(gw.admin, "tidegate_mux_connection_sessions", &[], 0.0).await;
    let m = scrape(gw.admin).await;
    assert_eq!(upstream_to_client(&m, "tidegate_messages_total"), 20.0);
    assert_eq!(
        m.sum("tidegate_mux_direct_messages_total", &[("route", "r")]),
        0.0
    );
}
