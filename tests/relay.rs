//! The relay through the real gateway: echo of text and binary, a large
//! fragmented message streamed frame by frame, close codes on every edge
//! (upstream close passed through, upstream gone mid-session, size limit,
//! client protocol errors) and extension negotiation.

use crate::support::*;
use fastwebsockets::{Frame, OpCode, Payload, WebSocketError};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_text_and_binary() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    let mut ws = ws_connect(gw.addr, "/").await;

    echo_text(&mut ws, "hello through tidegate").await;
    echo_text(&mut ws, "ünïcødé ✓").await;

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    send(&mut ws, Frame::binary(Payload::Borrowed(&binary))).await;
    let (fin, op, payload) = next_frame(&mut ws).await;
    assert!(fin);
    assert_eq!(op, OpCode::Binary);
    assert_eq!(payload, binary);

    send(&mut ws, Frame::close(1000, b"done")).await;
    assert_eq!(expect_close(&mut ws).await.0, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_close_code_and_reason_reach_the_client() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    send(&mut ws, Frame::text(Payload::Borrowed(b"!close 4000 bye"))).await;
    assert_eq!(expect_close(&mut ws).await, (4000, "bye".to_string()));
}

/// Byte `j` of fragment `i`: depends on both, so a reordered, dropped or
/// duplicated fragment shows.
fn fragment(i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (i.wrapping_mul(131) ^ j.wrapping_mul(7) ^ (j >> 8)) as u8)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_10_mib_message_streams_frame_by_frame() {
    const FRAGMENTS: usize = 160;
    const FRAGMENT: usize = 64 * 1024;
    let (upstream, _seen) = raw_upstream(Behaviour::EchoFrames).await;
    let mut raw = raw_config(&[ws_url(upstream)]);
    raw.routes[0].max_message_size = Some(16 << 20);
    let gw = start_gateway(raw).await;
    let ws = ws_connect(gw.addr, "/").await;
    let (mut rx, mut tx) = ws.split(tokio::io::split);

    // Write while reading: the echo comes back while we still send, and
    // neither side may stall the other.
    let writer = tokio::spawn(async move {
        for i in 0..FRAGMENTS {
            let opcode = if i == 0 {
                OpCode::Binary
            } else {
                OpCode::Continuation
            };
            let frame = Frame::new(
                i == FRAGMENTS - 1,
                opcode,
                None,
                Payload::Owned(fragment(i, FRAGMENT)),
            );
            tx.write_frame(frame).await.expect("write fragment");
        }
        tx.flush().await.expect("flush");
        tx
    });

    let mut ignore = |_| async { Ok::<(), WebSocketError>(()) };
    let mut total = 0usize;
    for i in 0..FRAGMENTS {
        let frame = within("read echoed fragment", rx.read_frame(&mut ignore))
            .await
            .expect("read fragment");
        let want_op = if i == 0 {
            OpCode::Binary
        } else {
            OpCode::Continuation
        };
        assert_eq!(frame.opcode, want_op, "fragment {i}: opcode");
        assert_eq!(frame.fin, i == FRAGMENTS - 1, "fragment {i}: FIN bit");
        assert_eq!(frame.payload.len(), FRAGMENT, "fragment {i}: length");
        assert!(
            frame.payload[..] == fragment(i, FRAGMENT)[..],
            "fragment {i}: bytes intact"
        );
        total += frame.payload.len();
    }
    assert_eq!(total, 10 << 20);

    let mut tx = within("writer finishes", writer).await.expect("writer");
    within("send close", tx.write_frame(Frame::close(1000, b"")))
        .await
        .expect("send close");
    within("flush close", tx.flush()).await.expect("flush");
    let close = within("read close", rx.read_frame(&mut ignore))
        .await
        .expect("read close");
    assert_eq!(close.opcode, OpCode::Close);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_gone_mid_session_closes_client_with_1014() {
    let (upstream, _seen) = raw_upstream(Behaviour::DropAfterFirst).await;
    let gw = start_gateway(raw_config(&[ws_url(upstream)])).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    echo_text(&mut ws, "first").await;
    let (code, reason) = expect_close(&mut ws).await;
    assert!(
        code == 1014 || code == 1011,
        "upstream failure is 1014 or 1011, got {code} {reason:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_over_route_limit_closes_with_1009() {
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.routes[0].max_message_size = Some(1024);
    let gw = start_gateway(raw).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    echo_text(&mut ws, "small is fine").await;

    send(&mut ws, Frame::binary(Payload::Owned(vec![7; 2000]))).await;
    // The oversized message is not echoed: a Close comes next.
    let (code, reason) = expect_close_next(&mut ws).await;
    assert_eq!(code, 1009, "close code (reason {reason:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_message_over_route_limit_closes_with_1009() {
    let echo = start_echo().await;
    let mut raw = raw_config(&[ws_url(echo)]);
    raw.routes[0].max_message_size = Some(1024);
    let gw = start_gateway(raw).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    // Each fragment is under the limit; the message is not.
    send(
        &mut ws,
        Frame::new(false, OpCode::Binary, None, Payload::Owned(vec![1; 800])),
    )
    .await;
    send(
        &mut ws,
        Frame::new(
            true,
            OpCode::Continuation,
            None,
            Payload::Owned(vec![2; 800]),
        ),
    )
    .await;
    let (code, reason) = expect_close_next(&mut ws).await;
    assert_eq!(code, 1009, "close code (reason {reason:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmasked_client_frame_closes_with_1002() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    echo_text(&mut ws, "masked is fine").await;
    ws.set_auto_apply_mask(false);
    send(&mut ws, Frame::text(Payload::Borrowed(b"not masked"))).await;
    // The unmasked frame is not echoed: a Close comes next.
    let (code, reason) = expect_close_next(&mut ws).await;
    assert_eq!(code, 1002, "close code (reason {reason:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_close_code_from_client_closes_with_1002() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    // 1005 is reserved: it must never be sent in a Close frame.
    send(&mut ws, Frame::close_raw(Payload::Owned(vec![0x03, 0xED]))).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 1002, "close code (reason {reason:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_offer_is_not_negotiated() {
    let echo = start_echo().await;
    let gw = start_gateway(raw_config(&[ws_url(echo)])).await;
    let (resp, ws) = ws_try(
        gw.addr,
        "localhost",
        "/",
        &[(
            "Sec-WebSocket-Extensions",
            "permessage-deflate; client_max_window_bits",
        )],
    )
    .await;
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("sec-websocket-extensions"), None);
    let mut ws = ws.expect("upgraded");
    echo_text(&mut ws, "uncompressed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_upstream_frame_closes_client_1014_and_upstream_1002() {
    let (tx, mut upstream_got) = tokio::sync::mpsc::unbounded_channel();
    let (upstream, _seen) = raw_upstream(Behaviour::SendMasked(tx)).await;
    let gw = start_gateway(raw_config(&[ws_url(upstream)])).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    send(&mut ws, Frame::text(Payload::Borrowed(b"provoke"))).await;
    // The masked frame is not passed on: a Close comes next.
    let (code, reason) = expect_close_next(&mut ws).await;
    assert!(
        code == 1014 || code == 1011,
        "upstream failure is 1014 or 1011 to the client, got {code} {reason:?}"
    );
    let upstream_code = within("upstream receives a Close", upstream_got.recv())
        .await
        .expect("upstream reported its Close");
    assert_eq!(
        upstream_code, 1002,
        "the upstream broke the protocol: the gateway closes it with 1002"
    );
}
