//! permessage-deflate (RFC 7692) through the release binary. Passthrough:
//! the client's offer reaches the upstream, the upstream's answer comes
//! back only when it is valid and answers the offer (else 502), and RSV1
//! passes on a message's first frame only — on a control or continuation
//! frame, or on a session without the extension, the client is closed
//! with 1002.
//!
//! The frames here are written and read by hand: fastwebsockets refuses
//! RSV bits, and the point is to see them pass.

use crate::support::*;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub(crate) const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// Write one frame with first byte `b0` (FIN, RSV, opcode as given),
/// masked when `mask` (client to server).
pub(crate) async fn write_raw<S: AsyncWrite + Unpin>(
    s: &mut S,
    b0: u8,
    payload: &[u8],
    mask: bool,
) {
    let mut out = vec![b0];
    let bit = if mask { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(bit | n as u8),
        n if n <= 0xffff => {
            out.push(bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    if mask {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
    } else {
        out.extend_from_slice(payload);
    }
    within("write frame", async {
        s.write_all(&out).await.expect("write frame");
        s.flush().await.expect("flush");
    })
    .await;
}

/// Read one frame: (first byte, unmasked payload); `None` at EOF.
pub(crate) async fn read_raw<S: AsyncRead + Unpin>(s: &mut S) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).await.ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).await.ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut key = [0u8; 4];
    if h[1] & 0x80 != 0 {
        s.read_exact(&mut key).await.ok()?;
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    if h[1] & 0x80 != 0 {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i & 3];
        }
    }
    Some((h[0], payload))
}

/// Read frames until a Close; its code.
async fn expect_raw_close<S: AsyncRead + Unpin>(s: &mut S) -> u16 {
    within("a Close frame", async {
        loop {
            let (b0, p) = read_raw(s).await.expect("a Close before EOF");
            if b0 & 0x0f == 0x8 {
                return u16::from_be_bytes([p[0], p[1]]);
            }
        }
    })
    .await
}

/// An upstream that answers every upgrade with `answer` as its
/// `Sec-WebSocket-Extensions` (none if `None`) and echoes each frame's
/// first byte and payload as they came, RSV bits included. Each request
/// head is reported.
async fn deflate_upstream(
    answer: Option<&'static str>,
) -> (SocketAddr, mpsc::UnboundedReceiver<SeenRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(tcp);
                let Some(seen) = read_request(&mut s).await else {
                    return;
                };
                let key = seen.header("sec-websocket-key").unwrap_or_default();
                let mut resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
                    accept_for(key)
                );
                if let Some(a) = answer {
                    resp.push_str(&format!("Sec-WebSocket-Extensions: {a}\r\n"));
                }
                resp.push_str("\r\n");
                let _ = tx.send(seen);
                if s.get_mut().write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                while let Some((b0, payload)) = read_raw(&mut s).await {
                    write_raw(s.get_mut(), b0, &payload, false).await;
                    if b0 & 0x0f == 0x8 {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// A gateway binary in front of `upstream`.
async fn gateway(upstream: SocketAddr) -> (GatewayProc, ConfigFile) {
    let file = ConfigFile::new(&raw_config(&[ws_url(upstream)]));
    (GatewayProc::start(&file).await, file)
}

/// Upgrade with `offer` (if any): the response and, on 101, the stream.
pub(crate) async fn upgrade(
    gw: SocketAddr,
    offer: Option<&str>,
) -> (HttpResponse, Option<BufReader<TcpStream>>) {
    let extra: Vec<(&str, &str)> = offer
        .map(|o| ("Sec-WebSocket-Extensions", o))
        .into_iter()
        .collect();
    within("handshake", async {
        let tcp = TcpStream::connect(gw).await.expect("connect");
        ws_handshake(tcp, "localhost", "/", &extra).await
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_and_answer_are_relayed_and_compressed_frames_pass() {
    let (up, mut seen) =
        deflate_upstream(Some("permessage-deflate; client_max_window_bits=12")).await;
    let (gw, _file) = gateway(up).await;
    // Another extension beside it is not forwarded: the relay could not
    // carry what it would negotiate.
    let (resp, ws) = upgrade(gw.addr, Some(&format!("{OFFER}, x-webkit-deflate-frame"))).await;
    assert_eq!(resp.status, 101, "{}", gw.log());
    assert_eq!(
        resp.header("sec-websocket-extensions"),
        Some("permessage-deflate; client_max_window_bits=12")
    );
    let request = within("request upstream", seen.recv()).await.expect("seen");
    assert_eq!(request.header("sec-websocket-extensions"), Some(OFFER));
    let mut ws = ws.expect("upgraded");

    // RSV1 on a whole message, and on the first of two fragments: relayed
    // as they are, both ways (the payload is not inflated on the way).
    let opaque: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_raw(&mut ws, 0xC1, &opaque, true).await;
    assert_eq!(read_raw(&mut ws).await, Some((0xC1, opaque.clone())));
    write_raw(&mut ws, 0x42, b"first", true).await;
    write_raw(&mut ws, 0x80, b"last", true).await;
    assert_eq!(read_raw(&mut ws).await, Some((0x42, b"first".to_vec())));
    assert_eq!(read_raw(&mut ws).await, Some((0x80, b"last".to_vec())));
    write_raw(&mut ws, 0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(expect_raw_close(&mut ws).await, 1000);

    let m = scrape(gw.admin).await;
    assert_eq!(
        m.get(
            "tidegate_deflate_sessions_total",
            &[("route", "r"), ("mode", "passthrough")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answers_are_a_bad_gateway() {
    // (what the client offers, what the upstream answers)
    let cases: &[(Option<&str>, &'static str)] = &[
        (Some(OFFER), "x-foo"),
        (Some(OFFER), "permessage-deflate; server_max_window_bits=16"),
        (Some(OFFER), "permessage-deflate; client_max_window_bits"),
        (Some(OFFER), "permessage-deflate; mystery=1"),
        (Some(OFFER), "permessage-deflate, permessage-deflate"),
        (
            Some(OFFER),
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        ),
        (
            Some("permessage-deflate"),
            "permessage-deflate; client_max_window_bits=10",
        ),
        (
            Some("permessage-deflate; server_max_window_bits=10"),
            "permessage-deflate; server_max_window_bits=12",
        ),
        (None, "permessage-deflate"),
    ];
    for &(offer, answer) in cases {
        let (up, _seen) = deflate_upstream(Some(answer)).await;
        let (gw, _file) = gateway(up).await;
        let (resp, _) = upgrade(gw.addr, offer).await;
        assert_eq!(resp.status, 502, "offer {offer:?} answer {answer:?}");
    }
}

/// Frames a client sends: (first byte, payload).
type Frames = &'static [(u8, &'static [u8])];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misplaced_reserved_bits_close_with_1002() {
    let (up, _seen) = deflate_upstream(Some("permessage-deflate")).await;
    let (negotiated, _file) = gateway(up).await;
    let (plain_up, _seen) = deflate_upstream(None).await;
    let (plain, _plain_file) = gateway(plain_up).await;
    // (offer, frames the client sends): the last one breaks the rules.
    let cases: &[(Option<&str>, Frames)] = &[
        // RSV1 on a ping.
        (Some(OFFER), &[(0xC9, b"p")]),
        // RSV1 on a continuation.
        (Some(OFFER), &[(0x01, b"a"), (0xC0, b"b")]),
        // RSV2 is never allowed.
        (Some(OFFER), &[(0xA1, b"x")]),
        // No extension negotiated: RSV1 means nothing.
        (None, &[(0xC1, b"x")]),
    ];
    for &(offer, frames) in cases {
        let gw = if offer.is_some() { &negotiated } else { &plain };
        let (resp, ws) = upgrade(gw.addr, offer).await;
        assert_eq!(resp.status, 101);
        assert_eq!(
            resp.header("sec-websocket-extensions").is_some(),
            offer.is_some()
        );
        let mut ws = ws.expect("upgraded");
        for &(b0, payload) in frames {
            write_raw(&mut ws, b0, payload, true).await;
        }
        assert_eq!(expect_raw_close(&mut ws).await, 1002, "frames {frames:?}");
    }
}

// ---------------------------------------------------------------------------
// Edge compression: the gateway answers the client and the upstream is
// plain (the crate's echo, which speaks no extension).

/// A gateway binary compressing at the edge in front of a plain echo;
/// `max_message` bounds the route's messages; upstream messages under 32
/// bytes go uncompressed.
async fn edge_gateway(
    max_message: u64,
) -> (
    GatewayProc,
    ConfigFile,
    mpsc::UnboundedReceiver<SeenRequest>,
) {
    let (up, seen) = raw_upstream(Behaviour::EchoFrames).await;
    let mut raw = raw_config(&[ws_url(up)]);
    raw.routes[0].permessage_deflate = Some("edge".into());
    raw.routes[0].max_message_size = Some(max_message);
    raw.routes[0].deflate.min_size = 32;
    let file = ConfigFile::new(&raw);
    (GatewayProc::start(&file).await, file, seen)
}

/// Inflate a whole compressed message as a client would.
pub(crate) fn inflate(inf: &mut tidegate::deflate::codec::Inflater, wire: &[u8]) -> Vec<u8> {
    use tidegate::deflate::codec::TAIL;
    let mut all = Vec::new();
    for input in [wire, &TAIL[..]] {
        let mut at = 0;
        loop {
            let mut out = Vec::with_capacity(64 * 1024);
            at += inf
                .step(&input[at..], &mut out)
                .expect("valid deflate data");
            let full = out.len() == out.capacity();
            all.extend_from_slice(&out);
            if at == input.len() && !full {
                break;
            }
        }
    }
    inf.end_message();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_compression_echoes_through_a_plain_upstream() {
    use tidegate::deflate::codec::{Deflater, Inflater};
    let (gw, _file, mut seen) = edge_gateway(1 << 20).await;
    let (resp, ws) = upgrade(gw.addr, Some(OFFER)).await;
    assert_eq!(resp.status, 101, "{}", gw.log());
    assert_eq!(
        resp.header("sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let request = within("request upstream", seen.recv()).await.expect("seen");
    assert_eq!(
        request.header("sec-websocket-extensions"),
        None,
        "upstream is plain"
    );
    let mut ws = ws.expect("upgraded");
    // Context takeover both ways, 15-bit windows (the defaults).
    let (mut def, mut inf) = (Deflater::new(6, 15, true), Inflater::new(15, true));
    let text = r#"{"type":"update","room":"general","text":"hello through the edge"}"#;
    for _ in 0..3 {
        write_raw(&mut ws, 0xC1, &def.piece(text.as_bytes(), true), true).await;
        let (b0, wire) = within("echo", read_raw(&mut ws)).await.expect("a frame");
        assert_eq!(b0, 0xC1, "compressed text, FIN");
        assert_eq!(inflate(&mut inf, &wire), text.as_bytes());
    }
    // A message the client did not compress, in two fragments, 100 KiB.
    let big: Vec<u8> = (0..100 * 1024).map(|i| (i % 7) as u8).collect();
    write_raw(&mut ws, 0x02, &big[..50 * 1024], true).await;
    write_raw(&mut ws, 0x80, &big[50 * 1024..], true).await;
    let mut got = Vec::new();
    let mut first = true;
    loop {
        let (b0, wire) = within("echo", read_raw(&mut ws)).await.expect("a frame");
        if first {
            assert_eq!(b0 & 0x7f, 0x42, "compressed binary");
        }
        first = false;
        got.extend_from_slice(&wire);
        if b0 & 0x80 != 0 {
            break;
        }
    }
    assert!(
        got.len() < big.len() / 10,
        "{} bytes on the wire",
        got.len()
    );
    assert_eq!(inflate(&mut inf, &got), big);
    // Below min_size (32 bytes): sent uncompressed.
    write_raw(&mut ws, 0x81, b"tiny", true).await;
    assert_eq!(read_raw(&mut ws).await, Some((0x81, b"tiny".to_vec())));
    write_raw(&mut ws, 0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(expect_raw_close(&mut ws).await, 1000);

    let m = scrape(gw.admin).await;
    let edge = [("route", "r"), ("mode", "edge")];
    assert_eq!(m.get("tidegate_deflate_sessions_total", &edge), Some(1.0));
    let plain_u2c = m.sum(
        "tidegate_deflate_bytes_total",
        &[("direction", "upstream_to_client"), ("stage", "plain")],
    );
    assert!(
        plain_u2c >= (big.len() + 3 * text.len()) as f64,
        "{plain_u2c}"
    );
}

/// The gateway's resident memory (kB), from /proc.
fn vm_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_bomb_closes_with_1009_within_the_limit() {
    use tidegate::deflate::codec::Deflater;
    const LIMIT: u64 = 16 << 20;
    let (gw, _file, _seen) = edge_gateway(LIMIT).await;
    // ~100 KiB of deflate data that inflates to 100 MiB of zeros.
    let bomb = Deflater::new(9, 15, false).piece(&vec![0u8; 100 << 20], true);
    assert!(bomb.len() < 110 * 1024, "{} bytes", bomb.len());
    let (resp, ws) = upgrade(gw.addr, Some(OFFER)).await;
    assert_eq!(resp.status, 101);
    let mut ws = ws.expect("upgraded");
    let before = vm_rss_kb(gw.proc.pid);
    write_raw(&mut ws, 0xC2, &bomb, true).await;
    assert_eq!(expect_raw_close(&mut ws).await, 1009);
    let grown = vm_rss_kb(gw.proc.pid).saturating_sub(before);
    assert!(
        grown * 1024 < LIMIT,
        "RSS grew by {grown} kB for a message limit of {LIMIT} bytes"
    );
}
