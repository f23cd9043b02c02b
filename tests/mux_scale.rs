//! 10,000 client sessions through the real gateway binary, carried over at
//! most 4 mux connections to the SDK's echo example: every session's echo
//! arrives, and the application holds 4 sockets (plus its listener), not
//! 10,000.
//!
//! Processes, because of file descriptors (hard limit 20,000 per process
//! here): the gateway holds one per client, this test one per client; the
//! gateway raises its own soft limit, the test raises its own. Holds
//! [`serial`], so no timing-sensitive test runs beside it.

use crate::support::*;
use fastwebsockets::{Frame, OpCode, Payload};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const CLIENTS: usize = 10_000;
const POOL: usize = 4;
/// Handshakes in flight at once.
const CONCURRENCY: usize = 200;

/// One mux route to `app` over a pool of [`POOL`], room for every client.
fn config(app: &str) -> ConfigFile {
    let mut raw = mux_config(&[app.to_string()], POOL as u64);
    raw.limits.max_connections = 20_000;
    ConfigFile::new(&raw)
}

/// Send `text` as binary and expect it back.
async fn echo_binary(ws: &mut Ws<tokio::net::TcpStream>, text: &str) {
    send(ws, Frame::binary(Payload::Borrowed(text.as_bytes()))).await;
    let (fin, op, payload) = next_frame(ws).await;
    assert!(fin);
    assert_eq!(op, OpCode::Binary);
    assert_eq!(payload, text.as_bytes(), "each session gets its own echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sessions_share_four_mux_connections() {
    // Alone with the other tests that hold it: 20,000 sockets and two
    // processes busy for tens of seconds.
    let _serial = serial().await;
    let limit = raise_nofile();
    assert!(
        limit as usize > CLIENTS + 500,
        "RLIMIT_NOFILE {limit} is too low for {CLIENTS} clients"
    );
    let app = EchoApp::start("127.0.0.1:0").await;
    let file = config(&app.url());
    let gw = GatewayProc::start(&file).await;
    wait_metric(
        gw.admin,
        "tidegate_mux_connections_up",
        &[("upstream", "up")],
        POOL as f64,
    )
    .await;

    // Open every client (bounded concurrency), each echoing once on the way.
    let began = Instant::now();
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let mut opening = JoinSet::new();
    for i in 0..CLIENTS {
        let gate = Arc::clone(&gate);
        let addr = gw.addr;
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            let mut ws = ws_connect(addr, "/").await;
            echo_text(&mut ws, &format!("hello from {i}")).await;
            (i, ws)
        });
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    while let Some(done) = opening.join_next().await {
        clients.push(done.expect("client task"));
    }
    let opened_in = began.elapsed();

    // All open at once: the application holds the pool, not the clients.
    let text = scrape(gw.admin).await;
    let up = text.sum("tidegate_mux_connections_up", &[("upstream", "up")]);
    let carried = text.sum("tidegate_mux_connection_sessions", &[("upstream", "up")]);
    assert!(up <= POOL as f64, "{up} mux connections");
    assert_eq!(carried, CLIENTS as f64, "sessions on the mux connections");
    let sockets = app.tcp_socket_count();
    assert!(
        sockets <= POOL + 1,
        "the app holds {sockets} TCP sockets for {CLIENTS} clients (≤ {POOL} + listener)"
    );
    let text_opened = text.get(
        "tidegate_mux_sessions_total",
        &[("route", "r"), ("event", "opened")],
    );
    assert_eq!(text_opened, Some(CLIENTS as f64));

    // Every session echoes again, all at the same time.
    let began = Instant::now();
    let mut echoing = JoinSet::new();
    for (i, mut ws) in clients {
        echoing.spawn(async move {
            echo_binary(&mut ws, &format!("round two, client {i}")).await;
            ws
        });
    }
    let mut clients = Vec::with_capacity(CLIENTS);
    while let Some(done) = echoing.join_next().await {
        clients.push(done.expect("client task"));
    }
    eprintln!(
        "{CLIENTS} sessions opened in {opened_in:?} over {up} mux connection(s) \
         (app sockets: {sockets}); second echo round in {:?}",
        began.elapsed()
    );
    drop(clients);
    within("sessions end after the clients left", async {
        loop {
            let text = scrape(gw.admin).await;
            let n = text.sum("tidegate_mux_connection_sessions", &[]);
            if n == 0.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}
