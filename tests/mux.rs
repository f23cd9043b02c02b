//! Mux mode through the real gateway (in-process, real sockets) in front of
//! a real application: the SDK's `echo` example as its own process, or a
//! hand-written application where a test needs to see or send single mux
//! frames. The 10,000-session test is tests/mux_scale.rs. The traffic tests
//! (a cut connection, GOAWAY, a slow consumer) hold [`serial`]: they time
//! re-sends and fill queues, and must not share the machine with it.

use crate::support::mux_app::*;
use crate::support::*;
use fastwebsockets::{Frame, OpCode, Payload};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidegate::config::raw::{RawRoute, RawUpstream};
use tidegate_mux::codec::{self, FrameType};
use tidegate_mux::{AcceptBody, OpenBody};

/// A client's round trip may wait this long before it re-sends (only in
/// the cut-connection test, where in-flight frames are lost by design).
const RESEND_AFTER: Duration = Duration::from_secs(2);

/// Upper bound for the traffic tests' phases (several timeouts long).
const PHASE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_is_relayed_as_the_http_status() {
    let app = EchoApp::start("127.0.0.1:0").await;
    let gw = start_gateway(mux_config(&[app.url()], 1)).await;
    wait_ready(gw.admin).await;

    let (resp, ws) = ws_try(gw.addr, "localhost", "/reject", &[]).await;
    assert!(ws.is_none());
    assert_eq!(resp.status, 403);
    assert_eq!(resp.body_text(), "rejected by app");
    assert_eq!(resp.header("content-type"), Some("text/plain"));

    let (resp, ws) = ws_try(gw.addr, "localhost", "/room?reject=451", &[]).await;
    assert!(ws.is_none());
    assert_eq!(resp.status, 451);
    assert_eq!(resp.body_text(), "rejected by app");

    // The same route still lets other clients in.
    let mut ws = ws_connect(gw.addr, "/room").await;
    echo_text(&mut ws, "after two rejections").await;
    let labels = [("route", "r"), ("event", "rejected")];
    wait_metric(gw.admin, "tidegate_mux_sessions_total", &labels, 2.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_describes_the_client_and_accept_shapes_its_101() {
    let mut app = FakeApp::start().await;
    let gw = start_gateway(mux_config(&[ws_url(app.addr)], 1)).await;
    let mut conn = app.conn().await;
    wait_ready(gw.admin).await;

    let addr = gw.addr;
    let client = tokio::spawn(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let local = tcp.local_addr().expect("local addr");
        let extra = [
            ("X-Custom", "hello"),
            ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
        ];
        let (resp, ws) = within(
            "handshake",
            ws_handshake(tcp, "example.test", "/room/1?a=1&b=2", &extra),
        )
        .await;
        (local, resp, ws)
    });

    let open = conn.expect(FrameType::Open).await;
    assert!(!open.resumed());
    let body: OpenBody = open.json().expect("OPEN body is JSON");
    assert_eq!(body.path, "/room/1");
    assert_eq!(body.query, "a=1&b=2");
    assert!(
        body.headers
            .iter()
            .any(|(n, v)| n == "x-custom" && v == "hello"),
        "client headers reach the app: {:?}",
        body.headers
    );
    assert!(
        body.headers
            .iter()
            .all(|(n, _)| !n.starts_with("sec-websocket-") && n != "upgrade"),
        "handshake headers stay at the gateway: {:?}",
        body.headers
    );
    assert_eq!(body.protocols, ["chat.v2", "chat.v1"]);
    assert_eq!(body.route, "r");
    assert!(!body.tls);

    // The app picks the second offer: the client's 101 must carry the
    // app's choice, not the gateway's guess.
    let accept = AcceptBody {
        protocol: Some("chat.v1".into()),
        headers: vec![("x-app-node".into(), "7".into())],
    };
    conn.send(&[codec::Frame::accept(open.session, &accept)]);
    let (local, resp, ws) = within("client task", client).await.expect("client task");
    assert_eq!(resp.status, 101, "{:?}", resp.body_text());
    assert_eq!(resp.header("sec-websocket-protocol"), Some("chat.v1"));
    assert_eq!(resp.header("x-app-node"), Some("7"));
    assert_eq!(body.client_addr, local.to_string());
    drop(ws);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_mux_connection_clients_get_503_and_readyz_waits() {
    let port = closed_port().await;
    let mut raw = mux_config(&[ws_url(port)], 1);
    raw.mux.open_timeout = "300ms".into();
    raw.mux.reconnect_max = "100ms".into();
    let gw = start_gateway(raw).await;

    assert_eq!(http_get(gw.admin, "/readyz").await.status, 503);
    let (resp, ws) = ws_try(gw.addr, "localhost", "/", &[]).await;
    assert!(ws.is_none());
    assert_eq!(resp.status, 503, "{:?}", resp.body_text());
    assert_eq!(http_get(gw.admin, "/readyz").await.status, 503);

    // The application comes up on the configured port: ready, and serving.
    let _app = EchoApp::start(&port.to_string()).await;
    wait_ready(gw.admin).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    echo_text(&mut ws, "now there is a connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_codes_and_reasons_cross_both_ways() {
    // App → client, with the real SDK: `!close CODE REASON`.
    let app = EchoApp::start("127.0.0.1:0").await;
    let gw = start_gateway(mux_config(&[app.url()], 1)).await;
    wait_ready(gw.admin).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    echo_text(&mut ws, "hi").await;
    send(
        &mut ws,
        Frame::text(Payload::Borrowed(b"!close 4001 app says bye")),
    )
    .await;
    assert_eq!(expect_close(&mut ws).await, (4001, "app says bye".into()));

    // Client → app, seen frame by frame by a hand-written app.
    let mut fake = FakeApp::start().await;
    let gw2 = start_gateway(mux_config(&[ws_url(fake.addr)], 1)).await;
    let mut conn = fake.conn().await;
    wait_ready(gw2.admin).await;
    let addr = gw2.addr;
    let client = tokio::spawn(async move { ws_connect(addr, "/").await });
    let open = conn.expect(FrameType::Open).await;
    conn.send(&[codec::Frame::accept(open.session, &AcceptBody::default())]);
    let mut ws = within("client task", client).await.expect("client task");
    send(&mut ws, Frame::close(4002, b"client says bye")).await;
    let close = conn.expect(FrameType::Close).await;
    assert_eq!(close.session, open.session);
    assert_eq!(close_of(&close), (Some(4002), "client says bye".into()));
    let (_, op, payload) = next_frame(&mut ws).await;
    assert_eq!(
        op,
        OpCode::Close,
        "the gateway completes the close handshake"
    );
    assert_eq!(payload.get(..2), Some(&[0x0f, 0xa2][..]), "echoing 4002");
}

/// `routes[].idle_timeout` holds on mux routes too: messages either way
/// keep a session open past it, silence closes it with 1001 "idle
/// timeout".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_mux_session_is_closed_after_the_idle_timeout() {
    let app = EchoApp::start("127.0.0.1:0").await;
    let mut raw = mux_config(&[app.url()], 1);
    raw.routes[0].idle_timeout = Some("2s".into());
    let gw = start_gateway(raw).await;
    wait_ready(gw.admin).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    // 3.2 s of traffic, never 2 s apart: the timeout counts from the last
    // message.
    for i in 0..4 {
        echo_text(&mut ws, &format!("message {i}")).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    assert_eq!(expect_close(&mut ws).await, (1001, "idle timeout".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_drain_closes_mux_clients_with_1001() {
    let app = EchoApp::start("127.0.0.1:0").await;
    let mut raw = mux_config(&[app.url()], 2);
    raw.drain.spread = "100ms".into();
    let gw = start_gateway(raw).await;
    wait_ready(gw.admin).await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut ws = ws_connect(gw.addr, "/").await;
        echo_text(&mut ws, &format!("client {i}")).await;
        clients.push(ws);
    }
    gw.running.shutdown();
    for (i, ws) in clients.iter_mut().enumerate() {
        let (code, reason) = expect_close(ws).await;
        assert_eq!(code, 1001, "client {i}: {reason:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_mux_connection_resumes_its_sessions_without_closing_clients() {
    let _serial = serial().await;
    const CLIENTS: usize = 20;
    let app = EchoApp::start("127.0.0.1:0").await;
    let fwd = Forwarder::start(app.addr).await;
    let gw = start_gateway(mux_config(&[ws_url(fwd.addr)], 2)).await;
    let up = [("upstream", "up")];
    wait_metric(gw.admin, "tidegate_mux_connections_up", &up, 2.0).await;
    assert_eq!(fwd.count(), 2);

    // Sessions go to the connection with fewer: both carry some.
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(ws_connect(gw.addr, "/").await);
    }
    let on_each = scrape(gw.admin).await;
    for slot in ["0", "1"] {
        let n = on_each.sum(
            "tidegate_mux_connection_sessions",
            &[("upstream", "up"), ("slot", slot)],
        );
        assert!(n > 0.0, "slot {slot} carries sessions:\n{on_each}");
    }

    // Request/echo loops. Frames in flight on the cut connection are lost
    // by design (docs/mux-protocol.md §6: the application's own
    // acknowledgements are above the protocol), so a message without an
    // echo after RESEND_AFTER is sent again; every message still gets its
    // echo, in order, and no client is closed.
    let acked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, mut ws) in clients.into_iter().enumerate() {
        let (acked, done) = (Arc::clone(&acked), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            echo_loop(&mut ws, i, 50, &done, Some(RESEND_AFTER), &acked).await
        }));
    }
    within("traffic before the cut", async {
        while acked.load(Ordering::Relaxed) < CLIENTS * 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    fwd.cut(0);
    let resumed = [("route", "r"), ("event", "resumed")];
    let at_least_one = Want::AtLeast(1.0);
    wait_metric(
        gw.admin,
        "tidegate_mux_sessions_total",
        &resumed,
        at_least_one,
    )
    .await;
    let at_resume = acked.load(Ordering::Relaxed);
    within_for(PHASE, "traffic after the resume", async {
        while acked.load(Ordering::Relaxed) < at_resume + CLIENTS * 30 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    done.store(true, Ordering::Relaxed);
    let mut resent = 0;
    for t in tasks {
        let report = within_for(PHASE, "client finishes", t)
            .await
            .expect("client task")
            .unwrap_or_else(|e| panic!("{e}"));
        resent += report.resent;
    }
    eprintln!("cut connection: {resent} message(s) re-sent after the cut");
    let text = scrape(gw.admin).await;
    assert_eq!(
        text.get("tidegate_mux_sessions_total", &[("event", "resume_failed")]),
        Some(0.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_moves_sessions_to_the_other_instance_without_a_client_noticing() {
    let _serial = serial().await;
    const CLIENTS: usize = 20;
    let mut leaving = EchoApp::start("127.0.0.1:0").await;
    let staying = EchoApp::start("127.0.0.1:0").await;
    let gw = start_gateway(mux_config(&[leaving.url(), staying.url()], 1)).await;
    let up = [("upstream", "up")];
    wait_metric(gw.admin, "tidegate_mux_connections_up", &up, 2.0).await;
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(ws_connect(gw.addr, "/").await);
    }
    let leaving_ep = [("upstream", "up"), ("endpoint", &leaving.url()[..])];
    let text = scrape(gw.admin).await;
    assert!(
        text.sum("tidegate_mux_connection_sessions", &leaving_ep) > 0.0,
        "the leaving instance carries sessions:\n{text}"
    );

    // No re-sends here: GOAWAY loses nothing (§6).
    let acked = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, mut ws) in clients.into_iter().enumerate() {
        let (acked, done) = (Arc::clone(&acked), Arc::clone(&done));
        tasks.push(tokio::spawn(async move {
            echo_loop(&mut ws, i, 50, &done, None, &acked).await
        }));
    }
    within("traffic before SIGTERM", async {
        while acked.load(Ordering::Relaxed) < CLIENTS * 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    leaving.proc.signal("-TERM");
    // It sends GOAWAY, serves until the gateway has closed its connection,
    // and exits 0.
    let status = within_for(PHASE, "the SIGTERMed app exits", leaving.proc.child.wait())
        .await
        .expect("wait for the app");
    assert_eq!(status.code(), Some(0));
    let at_exit = acked.load(Ordering::Relaxed);
    within_for(PHASE, "traffic after the move", async {
        while acked.load(Ordering::Relaxed) < at_exit + CLIENTS * 20 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    done.store(true, Ordering::Relaxed);
    for t in tasks {
        within_for(PHASE, "client finishes", t)
            .await
            .expect("client task")
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let text = scrape(gw.admin).await;
    let resumed = text.get("tidegate_mux_sessions_total", &[("event", "resumed")]);
    assert!(resumed.unwrap_or(0.0) > 0.0, "{text}");
    assert_eq!(
        text.sum("tidegate_mux_connection_sessions", &leaving_ep),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_closed_alone() {
    let _serial = serial().await;
    let app = EchoApp::start("127.0.0.1:0").await;
    let mut raw = mux_config(&[app.url()], 1);
    raw.mux.session_queue_bytes = 256 * 1024;
    let gw = start_gateway(raw).await;
    wait_ready(gw.admin).await;
    let mut slow = ws_connect(gw.addr, "/").await;
    let mut other = ws_connect(gw.addr, "/").await;
    echo_text(&mut other, "before").await;

    // 64 MiB towards a client that does not read: far beyond what the
    // socket buffers take plus the session's queue.
    send(
        &mut slow,
        Frame::text(Payload::Borrowed(b"!flood 1024 65536")),
    )
    .await;
    let labels = [("route", "r")];
    wait_metric(
        gw.admin,
        "tidegate_mux_slow_consumer_closes_total",
        &labels,
        1.0,
    )
    .await;
    for i in 0..20 {
        echo_text(&mut other, &format!("still echoing {i}")).await;
    }
    // The slow client reads at last: what was buffered, then the Close.
    assert_eq!(
        expect_close(&mut slow).await,
        (1008, "slow consumer".into())
    );
    echo_text(&mut other, "after").await;
    let text = scrape(gw.admin).await;
    assert_eq!(
        text.get("tidegate_mux_slow_consumer_closes_total", &labels),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_close_that_connection_with_1002_and_nothing_else() {
    let mut bad = FakeApp::start().await;
    let good = EchoApp::start("127.0.0.1:0").await;
    let mut raw = mux_config(&[good.url()], 1);
    raw.mux.reconnect_min = "20ms".into();
    raw.mux.reconnect_max = "50ms".into();
    raw.upstreams.push(RawUpstream {
        name: "bad".into(),
        endpoints: vec![ws_url(bad.addr)],
        pool_size: Some(1),
        ..RawUpstream::default()
    });
    raw.routes.push(RawRoute {
        name: "bad".into(),
        path: "/bad".into(),
        upstream: "bad".into(),
        mode: "mux".into(),
        ..RawRoute::default()
    });
    let gw = start_gateway(raw).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    echo_text(&mut ws, "before").await;

    let header = |kind: FrameType, flags: u8, session: u32, len: u32| {
        codec::header(kind, flags, session, len).to_vec()
    };
    let mut unknown = header(FrameType::Ping, 0, 0, 0);
    unknown[0] = 0x7f;
    let mut open = header(FrameType::Open, 0, 1, 2);
    open.extend_from_slice(b"{}");
    let cases: Vec<(&str, OpCode, Vec<u8>)> = vec![
        ("text_message", OpCode::Text, b"hello".to_vec()),
        ("unknown_type", OpCode::Binary, unknown),
        (
            "truncated",
            OpCode::Binary,
            header(FrameType::Ping, 0, 0, 4),
        ),
        (
            "bad_flags",
            OpCode::Binary,
            header(FrameType::Ping, 0x80, 0, 0),
        ),
        (
            "bad_session",
            OpCode::Binary,
            header(FrameType::Message, 0x03, 0, 0),
        ),
        ("wrong_direction", OpCode::Binary, open),
    ];
    for (label, op, bytes) in cases {
        // Each case on a fresh connection: the gateway reconnects.
        let mut conn = bad.conn().await;
        conn.send_raw(op, bytes.into());
        let (code, reason) = loop {
            match conn.next().await {
                FromGateway::Closed(code, reason) => break (code, reason),
                FromGateway::Frame(_) => continue,
                FromGateway::Gone => panic!("{label}: connection ended without a Close"),
            }
        };
        assert_eq!((code, &reason[..]), (1002, label));
        let labels = [("upstream", "bad"), ("reason", label)];
        wait_metric(
            gw.admin,
            "tidegate_mux_protocol_errors_total",
            &labels,
            Want::AtLeast(1.0),
        )
        .await;
    }

    // The gateway and the other upstream did not notice.
    echo_text(&mut ws, "after").await;
    let mut fresh = ws_connect(gw.addr, "/").await;
    echo_text(&mut fresh, "new client").await;
    assert_eq!(http_get(gw.admin, "/healthz").await.status, 200);
}

/// `mux.write_delay` reaches the connection: with a long delay, one
/// message from each of eight clients, sent together, leaves for the
/// application in one or two WebSocket messages (`tidegate_mux_batch_frames`),
/// and every client still gets its echo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_delay_gathers_the_frames_of_many_sessions_into_one_write() {
    let app = EchoApp::start("127.0.0.1:0").await;
    let mut raw = mux_config(&[app.url()], 1);
    raw.mux.write_delay = "100ms".into();
    let gw = start_gateway(raw).await;
    wait_ready(gw.admin).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(ws_connect(gw.addr, "/").await);
    }
    let batches = |m: &Metrics| {
        let l = [("upstream", "up")];
        (
            m.sum("tidegate_mux_batch_frames_count", &l),
            m.sum("tidegate_mux_batch_frames_sum", &l),
        )
    };
    let (writes_before, frames_before) = batches(&scrape(gw.admin).await);
    for (i, ws) in clients.iter_mut().enumerate() {
        let text = format!("together {i}");
        send(ws, Frame::text(Payload::Owned(text.into_bytes()))).await;
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        let (_, op, payload) = next_frame(ws).await;
        assert_eq!(op, OpCode::Text);
        assert_eq!(payload, format!("together {i}").into_bytes());
    }
    let (writes, frames) = batches(&scrape(gw.admin).await);
    assert_eq!(
        frames - frames_before,
        8.0,
        "one mux frame per client message"
    );
    assert!(
        writes - writes_before <= 2.0,
        "8 frames in {} writes to the application",
        writes - writes_before
    );
}
