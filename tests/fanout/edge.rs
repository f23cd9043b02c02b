//! Fan-out outside the mux protocol: passthrough sessions subscribed by
//! their upstream's 101, channel grants from the token, the HTTP publish
//! API's refusals, and the slow-subscriber policies.

use crate::support::fanout::*;
use crate::support::mux_app::{FakeApp, FromGateway};
use crate::support::*;
use fastwebsockets::OpCode;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tidegate::config::raw::auth::{RawAuthPolicy, RawJwt, RawJwtKey};
use tidegate_mux::codec::{self, FrameType};

/// Published frames go into a passthrough stream between the upstream's
/// frames, never inside its fragmented message; the subscribing header
/// never reaches the client.
#[tokio::test]
async fn passthrough_sessions_subscribed_by_the_101_header() {
    let (up, frames) = subscribing_upstream("news, bad name!, sport").await;
    let raw = with_publish(raw_config(&[ws_url(up)]));
    let file = ConfigFile::new(&raw);
    let (gw, publish) = start_publishing(&file).await;
    let (resp, ws) = ws_try(gw.addr, "localhost", "/", &[]).await;
    let mut ws = ws.expect("101");
    assert_eq!(
        resp.header("x-tidegate-subscribe"),
        None,
        "consumed by the gateway"
    );
    assert_eq!(resp.header("x-other"), Some("kept"));
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 2.0).await;
    wait_metric(
        gw.admin,
        "tidegate_fanout_rejected_total",
        &[("reason", "invalid_name")],
        1.0,
    )
    .await;

    // The upstream is inside a fragmented message when the publish comes.
    frames
        .send((false, OpCode::Text, b"part1".to_vec()))
        .expect("upstream runs");
    assert_eq!(
        next_frame(&mut ws).await,
        (false, OpCode::Text, b"part1".to_vec())
    );
    assert_eq!(publish_text(publish, "news", "flash").await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    frames
        .send((true, OpCode::Continuation, b"part2".to_vec()))
        .expect("upstream runs");
    assert_eq!(
        next_frame(&mut ws).await,
        (true, OpCode::Continuation, b"part2".to_vec())
    );
    assert_eq!(
        next_frame(&mut ws).await,
        (true, OpCode::Text, b"flash".to_vec())
    );

    // Between whole messages it goes in at once, binary as binary.
    let r = post(
        publish,
        "/publish/sport",
        PUBLISH_TOKEN,
        "application/octet-stream",
        &[0, 1],
    )
    .await;
    assert_eq!((r.status, subscribers(&r)), (200, 1));
    assert_eq!(
        next_frame(&mut ws).await,
        (true, OpCode::Binary, vec![0, 1])
    );
    frames
        .send((true, OpCode::Text, b"after".to_vec()))
        .expect("upstream runs");
    assert_eq!(
        next_frame(&mut ws).await,
        (true, OpCode::Text, b"after".to_vec())
    );

    drop(ws);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 0.0).await;
}

const SECRET: &str = "an hmac secret of more than thirty-two bytes";

fn token(channels: &[&str]) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 3600;
    let claims = json!({"sub": "alice", "exp": exp, "channels": channels});
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token signs")
}

/// A client whose token does not grant a channel cannot be subscribed to
/// it, whoever asks: its upstream's 101 header here.
#[tokio::test]
async fn a_token_not_granting_a_channel_cannot_be_subscribed() {
    let (up, _frames) = subscribing_upstream("room.1, room.2, lobby").await;
    let mut raw = with_publish(raw_config(&[ws_url(up)]));
    raw.auth_policies = vec![RawAuthPolicy {
        name: "jwt".into(),
        sources: vec!["bearer".into()],
        jwt: Some(RawJwt {
            keys: vec![RawJwtKey {
                algorithm: "HS256".into(),
                secret: SECRET.into(),
                ..RawJwtKey::default()
            }],
            ..RawJwt::default()
        }),
        ..RawAuthPolicy::default()
    }];
    raw.routes[0].auth = "jwt".into();
    raw.routes[0].fanout.channels_claim = "channels".into();
    raw.routes[0].fanout.allow = vec!["room.*".into()];
    let file = ConfigFile::new(&raw);
    let (gw, publish) = start_publishing(&file).await;
    let bearer = format!("Bearer {}", token(&["room.1", "lobby"]));
    let (_, ws) = ws_try(gw.addr, "localhost", "/", &[("Authorization", &bearer)]).await;
    let mut ws = ws.expect("101");
    // room.1: granted and allowed (from the claim and the header: one
    // subscription). room.2 (header): not in the token. lobby (claim and
    // header): in the token, not allowed by the route.
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 1.0).await;
    wait_metric(
        gw.admin,
        "tidegate_fanout_rejected_total",
        &[("reason", "not_granted")],
        3.0,
    )
    .await;
    assert_eq!(publish_text(publish, "room.2", "secret").await, 0);
    assert_eq!(publish_text(publish, "lobby", "secret").await, 0);
    assert_eq!(publish_text(publish, "room.1", "hi").await, 1);
    assert_eq!(
        next_frame(&mut ws).await,
        (true, OpCode::Text, b"hi".to_vec())
    );
}

/// The publish API refuses what it should, and a refused request delivers
/// nothing: the subscriber's next frame is the one good publish.
#[tokio::test]
async fn http_publish_refusals_deliver_nothing() {
    let (up, _frames) = subscribing_upstream("alerts").await;
    let mut raw = with_publish(raw_config(&[ws_url(up)]));
    raw.fanout.publish.max_body_bytes = 1024;
    raw.fanout.publish.max_batch = 3;
    let file = ConfigFile::new(&raw);
    let (gw, publish) = start_publishing(&file).await;
    let mut ws = ws_connect(gw.addr, "/").await;
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 1.0).await;
    let text = "text/plain";
    let cases: Vec<(&str, &str, &str, Vec<u8>, u16)> = vec![
        ("/publish/alerts", "", text, b"no token".to_vec(), 401),
        ("/publish/alerts", "wrong-token-0123456789", text, b"wrong".to_vec(), 401),
        ("/publish/alerts", PUBLISH_TOKEN, text, vec![b'x'; 2048], 413),
        ("/publish/bad%20name", PUBLISH_TOKEN, text, b"x".to_vec(), 400),
        ("/publish/alerts", PUBLISH_TOKEN, text, vec![0xff, 0xfe], 400),
        ("/publish", PUBLISH_TOKEN, "application/json", b"{\"not\":\"a list\"}".to_vec(), 400),
        ("/publish", PUBLISH_TOKEN, "application/json", br#"[{"channel":"alerts","text":"a"},{"channel":"bad name","text":"b"}]"#.to_vec(), 400),
        ("/publish", PUBLISH_TOKEN, "application/json", br#"[{"channel":"alerts","text":"1"},{"channel":"alerts","text":"2"},{"channel":"alerts","text":"3"},{"channel":"alerts","text":"4"}]"#.to_vec(), 413),
        ("/elsewhere", PUBLISH_TOKEN, text, b"x".to_vec(), 404),
    ];
    for (path, token, ct, body, status) in &cases {
        let r = post(publish, path, token, ct, body).await;
        assert_eq!(
            r.status,
            *status,
            "{path} token={token:?}: {}",
            r.body_text()
        );
        if *status == 401 {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
    }
    let get = http_get(publish, "/publish/alerts").await;
    assert_eq!(get.status, 405);
    // Batch: text and base64, in order.
    let batch = br#"[{"channel":"alerts","text":"one"},{"channel":"alerts","base64":"AAE="}]"#;
    let r = post(
        publish,
        "/publish",
        PUBLISH_TOKEN,
        "application/json",
        batch,
    )
    .await;
    assert_eq!((r.status, subscribers(&r)), (200, 2));
    assert_eq!(
        next_frame(&mut ws).await,
        (true, OpCode::Text, b"one".to_vec()),
        "nothing refused got through"
    );
    assert_eq!(
        next_frame(&mut ws).await,
        (true, OpCode::Binary, vec![0, 1])
    );
    let m = scrape(gw.admin).await;
    assert_eq!(
        m.sum(
            "tidegate_fanout_rejected_total",
            &[("reason", "unauthorized")]
        ),
        2.0
    );
    assert!(
        !gw.log().contains(PUBLISH_TOKEN),
        "the token is never logged"
    );
}

/// One subscriber that does not read and one that does, on a mux route
/// with a small session queue: under `drop_oldest` the reader receives
/// every message while drops are counted; under `close` the non-reader is
/// closed with 1008 and the reader still receives.
#[tokio::test]
async fn slow_subscribers_get_the_route_policy() {
    let _serial = serial().await;
    for policy in ["drop_oldest", "close"] {
        let mut app = FakeApp::start_with(Some("fanout")).await;
        let mut raw = mux_config(&[format!("ws://{}", app.addr)], 1);
        raw.mux.session_queue_bytes = 64 * 1024;
        raw.routes[0].fanout.slow_subscriber = policy.into();
        let file = ConfigFile::new(&raw);
        let gw = GatewayProc::start(&file).await;
        let mut conn = app.conn().await;
        let (mut slow, s1) = crate::fanout::connect_accepted(gw.addr, &mut conn).await;
        let (mut reader, s2) = crate::fanout::connect_accepted(gw.addr, &mut conn).await;
        conn.send(&[
            codec::Frame::subscribe(s1, "feed"),
            codec::Frame::subscribe(s2, "feed"),
        ]);
        wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 2.0).await;
        // 400 × 32 KiB = 12.5 MiB: far beyond the queue and the socket
        // buffers of the client that does not read.
        let payload = vec![b'x'; 32 * 1024];
        for i in 0..400u32 {
            let mut p = payload.clone();
            p[..4].copy_from_slice(&i.to_be_bytes());
            conn.send(&[codec::Frame::publish("feed", false, &p, None)]);
            let (fin, op, got) = next_frame(&mut reader).await;
            assert!(fin && op == OpCode::Binary);
            assert_eq!(
                got[..4],
                i.to_be_bytes(),
                "the reader gets every message, in order"
            );
        }
        match policy {
            "drop_oldest" => {
                wait_metric(
                    gw.admin,
                    "tidegate_fanout_drops_total",
                    &[],
                    Want::AtLeast(1.0),
                )
                .await;
            }
            _ => {
                wait_metric(gw.admin, "tidegate_fanout_slow_closes_total", &[], 1.0).await;
                let (code, _) = within_for(
                    Duration::from_secs(30),
                    "slow client's close",
                    expect_close(&mut slow),
                )
                .await;
                assert_eq!(code, 1008);
                // The application hears of it too.
                loop {
                    match conn.next().await {
                        FromGateway::Frame(f) if f.kind == FrameType::Close && f.session == s1 => {
                            break
                        }
                        FromGateway::Frame(_) => continue,
                        other => panic!("expected CLOSE for the slow session, got {other:?}"),
                    }
                }
            }
        }
        drop(slow);
    }
}

/// One message from an edge-compressed stream: its opcode and payload,
/// inflated with the client's context (`inflater`) when its first frame
/// has RSV1; `compressed` says whether it had.
async fn read_message<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    inflater: &mut tidegate::deflate::codec::Inflater,
) -> (u8, Vec<u8>, bool) {
    let mut wire = Vec::new();
    let mut first = None;
    loop {
        let (b0, payload) = within("a frame", crate::deflate::read_raw(s))
            .await
            .expect("a frame before EOF");
        if b0 & 0x0f >= 0x8 {
            // Control frames (the upstream's pongs) are not messages.
            continue;
        }
        first.get_or_insert(b0);
        wire.extend_from_slice(&payload);
        if b0 & 0x80 != 0 {
            break;
        }
    }
    let b0 = first.expect("a first frame");
    if b0 & 0x40 == 0 {
        return (b0 & 0x0f, wire, false);
    }
    wire.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let (mut at, mut plain) = (0, Vec::new());
    loop {
        let mut piece = Vec::with_capacity(16 * 1024);
        at += inflater.step(&wire[at..], &mut piece).expect("inflates");
        let full = piece.len() == piece.capacity();
        plain.extend_from_slice(&piece);
        if at >= wire.len() && !full {
            break;
        }
    }
    inflater.end_message();
    (b0 & 0x0f, plain, true)
}

/// A passthrough route with edge compression carries fan-out too: the
/// published messages go to the client between the upstream's messages
/// (never inside a fragmented one), compressed with the session's own
/// context like the upstream's (a short one under `min_size` as it is),
/// so the client inflates one stream whatever its source.
#[tokio::test]
async fn edge_compressed_passthrough_sessions_get_published_messages() {
    let (up, frames) = subscribing_upstream("news").await;
    let mut raw = with_publish(raw_config(&[ws_url(up)]));
    raw.routes[0].permessage_deflate = Some("edge".into());
    raw.routes[0].deflate.min_size = 16;
    let file = ConfigFile::new(&raw);
    let (gw, publish) = start_publishing(&file).await;
    let (resp, ws) = crate::deflate::upgrade(gw.addr, Some(crate::deflate::OFFER)).await;
    let mut ws = ws.expect("101");
    let answer = resp
        .header("sec-websocket-extensions")
        .expect("negotiated")
        .to_string();
    assert!(answer.starts_with("permessage-deflate"), "{answer}");
    let takeover = !answer.contains("server_no_context_takeover");
    let mut inflater = tidegate::deflate::codec::Inflater::new(15, takeover);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 1.0).await;

    let long = "breaking news, breaking news, breaking news: ".repeat(20);
    // A publish while the upstream is inside a fragmented message waits
    // for its last frame. (The edge relay writes a message one piece
    // behind, so the client cannot see the first part before the last;
    // the pause lets the gateway read it, and either order is correct —
    // what must never happen is the published message inside the other,
    // which would break the framing and the inflated text.)
    frames
        .send((false, OpCode::Text, b"upstream part 1 ".to_vec()))
        .expect("upstream runs");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(publish_text(publish, "news", &long).await, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    frames
        .send((true, OpCode::Continuation, b"and part 2".to_vec()))
        .expect("upstream runs");
    let mut got = vec![
        read_message(&mut ws, &mut inflater).await,
        read_message(&mut ws, &mut inflater).await,
    ];
    got.sort_by_key(|(_, text, _)| text.len());
    let upstream = b"upstream part 1 and part 2".to_vec();
    assert_eq!(
        got,
        vec![
            (0x1, upstream, true),
            (0x1, long.clone().into_bytes(), true)
        ],
        "both messages whole, both compressed"
    );

    // Short (under min_size) goes as it is; binary stays binary; the
    // context carries on across sources.
    assert_eq!(publish_text(publish, "news", "flash").await, 1);
    let r = post(
        publish,
        "/publish/news",
        PUBLISH_TOKEN,
        "application/octet-stream",
        long.as_bytes(),
    )
    .await;
    assert_eq!((r.status, subscribers(&r)), (200, 1));
    frames
        .send((true, OpCode::Text, long.clone().into_bytes()))
        .expect("upstream runs");
    let (op, text, compressed) = read_message(&mut ws, &mut inflater).await;
    assert_eq!((op, &text[..], compressed), (0x1, &b"flash"[..], false));
    let (op, bytes, compressed) = read_message(&mut ws, &mut inflater).await;
    assert_eq!(
        (op, bytes, compressed),
        (0x2, long.clone().into_bytes(), true)
    );
    let (op, text, compressed) = read_message(&mut ws, &mut inflater).await;
    assert_eq!((op, text, compressed), (0x1, long.into_bytes(), true));

    drop(ws);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 0.0).await;
    assert_eq!(
        scrape(gw.admin)
            .await
            .get(
                "tidegate_fanout_rejected_total",
                &[("reason", "unsupported")]
            )
            .unwrap_or(0.0),
        0.0
    );
}

/// Bytes that do not compress (xorshift), so a client that does not read
/// fills its socket buffers with compressed frames as fast as with plain.
fn incompressible(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// The `close` policy on a passthrough route, through the zero-copy relay
/// and through the edge-compression relay: a subscriber that does not read
/// is closed with 1008 once its queue overflows — its Close queued behind
/// what the gateway is still writing to it — while a reader beside it gets
/// every message, in order.
#[tokio::test]
async fn a_slow_passthrough_subscriber_is_closed_by_policy() {
    slow_subscriber_is_closed(false).await;
}

#[tokio::test]
async fn a_slow_edge_compressed_subscriber_is_closed_by_policy() {
    slow_subscriber_is_closed(true).await;
}

async fn slow_subscriber_is_closed(edge: bool) {
    let _serial = serial().await;
    let up = subscribing_upstreams("feed").await;
    let mut raw = with_publish(raw_config(&[ws_url(up)]));
    raw.mux.session_queue_bytes = 64 * 1024;
    raw.routes[0].fanout.slow_subscriber = "close".into();
    if edge {
        raw.routes[0].permessage_deflate = Some("edge".into());
    }
    let file = ConfigFile::new(&raw);
    let (gw, publish) = start_publishing(&file).await;
    let offer = edge.then_some(crate::deflate::OFFER);
    let (_, slow) = crate::deflate::upgrade(gw.addr, offer).await;
    let mut slow = slow.expect("101");
    let (resp, reader) = crate::deflate::upgrade(gw.addr, offer).await;
    let mut reader = reader.expect("101");
    let answer = resp.header("sec-websocket-extensions").unwrap_or_default();
    assert_eq!(answer.starts_with("permessage-deflate"), edge, "{answer}");
    let takeover = !answer.contains("server_no_context_takeover");
    let mut inflater = tidegate::deflate::codec::Inflater::new(15, takeover);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 2.0).await;
    // 400 × 32 KiB of incompressible bytes = 12.5 MiB: far beyond the
    // 64 KiB queue and the socket buffers of the client that does not read.
    for i in 0..400u32 {
        let mut p = incompressible(32 * 1024, i);
        p[..4].copy_from_slice(&i.to_be_bytes());
        let r = post(
            publish,
            "/publish/feed",
            PUBLISH_TOKEN,
            "application/octet-stream",
            &p,
        )
        .await;
        assert_eq!(r.status, 200);
        let (op, got, compressed) = read_message(&mut reader, &mut inflater).await;
        assert_eq!((op, compressed), (0x2, edge));
        assert_eq!(got, p, "the reader gets every message, in order");
    }
    wait_metric(gw.admin, "tidegate_fanout_slow_closes_total", &[], 1.0).await;
    let (code, reason) = within_for(Duration::from_secs(30), "slow client's close", async {
        loop {
            let (b0, p) = crate::deflate::read_raw(&mut slow)
                .await
                .expect("a Close before EOF");
            if b0 & 0x0f == 0x8 {
                let reason = String::from_utf8_lossy(&p[2..]).into_owned();
                break (u16::from_be_bytes([p[0], p[1]]), reason);
            }
        }
    })
    .await;
    assert_eq!((code, reason.as_str()), (1008, "slow subscriber"));
    // It left the channel; the reader is still subscribed.
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 1.0).await;
    drop(reader);
    wait_metric(gw.admin, "tidegate_fanout_subscriptions", &[], 0.0).await;
}
