//! Keepalive through the real gateway: a client that never answers pings is
//! closed and counted; one that answers stays connected. Both hold
//! [`serial`]: with 1 s to answer a ping, they must not share the machine
//! with the 10,000-session test.

use crate::support::*;
use fastwebsockets::{Frame, OpCode};
use tokio::io::AsyncReadExt;

/// Echo upstream, pings every 1 s of silence, `pong_timeout` to answer.
async fn gateway_with_fast_pings(pong_timeout: &str) -> Gateway {
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.keepalive.ping_interval = "1s".into();
    raw.keepalive.pong_timeout = pong_timeout.into();
    start_gateway(raw).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_answers_pings_is_closed() {
    let _serial = serial().await;
    let gw = gateway_with_fast_pings("1s").await;
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (resp, stream) = within("handshake", ws_handshake(tcp, "localhost", "/", &[])).await;
    assert_eq!(resp.status, 101);
    let mut stream = stream.expect("upgraded");

    // Read (never answer) until the gateway closes the socket.
    let mut seen = Vec::new();
    let _ = within(
        "gateway closes a client that does not answer pings",
        stream.read_to_end(&mut seen),
    )
    .await;
    assert!(
        seen.starts_with(&[0x89, 0x00]),
        "the gateway pinged the silent client first: {seen:02x?}"
    );
    wait_metric(
        gw.admin,
        "tidegate_ping_timeouts_total",
        &[("route", "r"), ("side", "client")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_answers_pings_stays_connected() {
    let _serial = serial().await;
    // A generous pong timeout: this test is about a client that answers,
    // and on a loaded machine (the CI's two cores run the whole suite at
    // once) an answer — ours or the echo upstream's to the gateway's own
    // pings — can take longer than a second to be scheduled.
    let gw = gateway_with_fast_pings("10s").await;
    let mut ws = ws_connect(gw.addr, "/").await;
    ws.set_auto_pong(false);
    // Stay silent except for pongs over several ping intervals. The times
    // are only reported, never asserted.
    let start = std::time::Instant::now();
    let mut pings = Vec::new();
    while pings.len() < 4 {
        let frame = match within("next ping", ws.read_frame()).await {
            Ok(f) => f,
            Err(e) => panic!(
                "connection lost after answering {} ping(s) (received at {pings:?}); \
                 {:?} after connecting: {e}",
                pings.len(),
                start.elapsed()
            ),
        };
        if frame.opcode == OpCode::Pong {
            // Unsolicited pongs are allowed (RFC 6455 §5.5.3): the
            // upstream's answers to the gateway's own pings pass through.
            continue;
        }
        assert_eq!(
            frame.opcode,
            OpCode::Ping,
            "only control frames while idle; got {:?} {:02x?} after {:?}, pings at {pings:?}",
            frame.opcode,
            &frame.payload[..],
            start.elapsed()
        );
        pings.push(start.elapsed());
        send(&mut ws, Frame::pong(frame.payload)).await;
    }
    echo_text(&mut ws, "still here").await;
    assert_eq!(
        scrape(gw.admin).await.get(
            "tidegate_ping_timeouts_total",
            &[("route", "r"), ("side", "client")]
        ),
        Some(0.0)
    );
}
