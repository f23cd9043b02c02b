//! Criterion benchmarks of tidegate's hot paths, through the public API.
//!
//! - `scan/*`: the relay's frame-header scanner over realistic buffers
//!   (many small masked client frames, one large frame, unmasked server
//!   frames) — the only per-byte work the passthrough relay does.
//! - `handshake/*`: parsing and validating a browser's upgrade request
//!   against a route table of 20 routes, and the route / origin lookups it
//!   is made of.
//! - `relay/*`: a client message through the whole gateway and back, over
//!   loopback TCP: in-process gateway (`server::start`) in front of the
//!   in-process echo upstream (`echo::serve`), one fastwebsockets client
//!   doing ping-pong. This is dominated by the kernel (four socket hops per
//!   round trip), as DESIGN.md predicts.
//!
//! - `mux/*`: the mux codec decoding a batch of 64-byte MESSAGE frames (the
//!   gateway's per-frame work on application → client traffic) and the mux
//!   client reader parsing and unmasking a 64 KiB read of small client
//!   frames into MESSAGE pieces (client → application).
//!
//! - `auth/*`: verifying a bearer JWT (HS256 and ES256, one configured key,
//!   issuer and audience checked) and an API key against 100 stored hashes —
//!   the per-handshake cost of an authenticated route.
//!
//! Run: `cargo bench --bench hot_paths` (full) or
//! `cargo bench --bench hot_paths -- --quick` (fast, rougher).
//! Results and the machine they came from: docs/benches.md.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::{Duration, Instant};
use tidegate::config::raw::{RawListener, RawRoute, RawUpstream};
use tidegate::config::{Config, RawConfig};
use tidegate::frame::{write_frame, Limits, Opcode};
use tidegate::handshake::{self, RequestHead};
use tidegate::origin::OriginPolicy;
use tidegate::relay::scan::Scanner;
use tidegate::route::RouteTable;

const LIMITS: Limits = Limits {
    max_frame: 64 << 20,
    max_message: 64 << 20,
};

/// One binary frame with a `len`-byte payload, masked like a client's.
fn frame(len: usize, masked: bool) -> Vec<u8> {
    let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
    let key = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
    let mut out = Vec::new();
    write_frame(&mut out, true, Opcode::Binary, &[&payload], key);
    out
}

/// `count` frames of `len` bytes back to back, as one read might return them.
fn frames(count: usize, len: usize, masked: bool) -> Vec<u8> {
    let one = frame(len, masked);
    one.iter()
        .copied()
        .cycle()
        .take(one.len() * count)
        .collect()
}

fn bench_scan(c: &mut Criterion) {
    let mut g = c.benchmark_group("scan");
    let cases = [
        // ~64 KiB read full of small chat-like client frames.
        ("masked_64B_x936", frames(936, 64, true), true),
        ("masked_16KiB_x1", frame(16 * 1024, true), true),
        ("unmasked_64B_x1008", frames(1008, 64, false), false),
        ("unmasked_16KiB_x4", frames(4, 16 * 1024, false), false),
    ];
    for (name, buf, masked) in cases {
        g.throughput(Throughput::Bytes(buf.len() as u64));
        let mut scanner = Scanner::new(masked);
        g.bench_function(name, |b| {
            b.iter(|| {
                let (n, stop) = scanner.scan(black_box(&buf), LIMITS);
                assert!(stop.is_none() && n == buf.len());
                black_box(scanner.take_tally())
            })
        });
    }
    g.finish();
}

/// A configuration with 20 routes over a few hosts, like a mid-size edge.
fn config() -> Config {
    let mut raw = RawConfig::default();
    raw.admin.listen = String::new();
    raw.listeners = vec![RawListener {
        name: "bench".into(),
        listen: "127.0.0.1:0".into(),
        tls: None,
    }];
    raw.upstreams = vec![RawUpstream {
        name: "app".into(),
        endpoints: vec!["ws://127.0.0.1:9".into()],
        ..RawUpstream::default()
    }];
    let hosts = ["", "app.example.com", "*.example.com", "api.example.org"];
    let paths = ["/", "/chat", "/chat/rooms", "/events", "/api/v1/stream"];
    for (i, (host, path)) in hosts
        .iter()
        .flat_map(|h| paths.iter().map(move |p| (h, p)))
        .enumerate()
    {
        raw.routes.push(RawRoute {
            name: format!("r{i}"),
            host: host.to_string(),
            path: path.to_string(),
            upstream: "app".into(),
            origins: vec![
                "https://app.example.com".into(),
                "https://*.example.com".into(),
                "http://localhost:3000".into(),
            ],
            subprotocols: vec!["graphql-transport-ws".into(), "chat.v1".into()],
            ..RawRoute::default()
        });
    }
    Config::from_raw(raw).expect("the bench configuration is valid")
}

const BROWSER_REQUEST: &[u8] = b"GET /chat/rooms/42?token=abc HTTP/1.1\r\n\
Host: app.example.com\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://app.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Cookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: graphql-transport-ws\r\n\
\r\n";

fn bench_handshake(c: &mut Criterion) {
    let config = config();
    assert_eq!(config.routes.len(), 20);
    let table = RouteTable::new(config.routes.clone());
    let mut g = c.benchmark_group("handshake");
    g.bench_function("parse+validate_browser_20_routes", |b| {
        b.iter(|| {
            let (head, _) = RequestHead::parse(black_box(BROWSER_REQUEST))
                .expect("well-formed")
                .expect("complete");
            let upgrade = handshake::validate(&head, &table).expect("accepted");
            black_box(upgrade.route.name.len())
        })
    });
    g.bench_function("parse_browser", |b| {
        b.iter(|| black_box(RequestHead::parse(black_box(BROWSER_REQUEST))))
    });
    let lookups = [
        ("exact_host_deep_path", "app.example.com", "/chat/rooms/42"),
        ("suffix_host", "eu.example.com", "/events/x"),
        ("fallback_any_host", "other.test", "/somewhere/else"),
    ];
    for (name, host, path) in lookups {
        g.bench_with_input(
            BenchmarkId::new("route_find", name),
            &(host, path),
            |b, (h, p)| b.iter(|| black_box(table.find(black_box(h), black_box(p)).is_some())),
        );
    }
    let policy = OriginPolicy::parse(
        &[
            "https://app.example.com".into(),
            "https://admin.example.com".into(),
            "http://localhost:3000".into(),
            "https://*.example.org".into(),
        ],
        false,
    )
    .expect("valid origins");
    for (name, origin) in [
        ("exact_hit", "https://app.example.com"),
        ("wildcard_hit", "https://eu.example.org"),
        ("miss", "https://evil.example.net"),
    ] {
        g.bench_with_input(BenchmarkId::new("origin_check", name), &origin, |b, o| {
            b.iter(|| black_box(policy.check(black_box(Some(o))).is_ok()))
        });
    }
    g.finish();
}

type Client = fastwebsockets::WebSocket<tokio::net::TcpStream>;

/// Gateway + echo upstream in-process; returns a connected client.
async fn loopback() -> (Client, tidegate::server::Running) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let echo_addr = echo.local_addr().expect("echo address");
    tokio::spawn(tidegate::echo::serve(
        echo,
        tokio_util::sync::CancellationToken::new(),
    ));
    let mut raw = RawConfig::default();
    raw.admin.listen = String::new();
    // No keepalive pings of the gateway's own in the middle of a sample.
    raw.keepalive.ping_interval = "0s".into();
    raw.listeners = vec![RawListener {
        name: "bench".into(),
        listen: "127.0.0.1:0".into(),
        tls: None,
    }];
    raw.upstreams = vec![RawUpstream {
        name: "echo".into(),
        endpoints: vec![format!("ws://{echo_addr}")],
        ..RawUpstream::default()
    }];
    raw.routes = vec![RawRoute {
        name: "echo".into(),
        upstream: "echo".into(),
        ..RawRoute::default()
    }];
    let running = tidegate::server::start(Config::from_raw(raw).expect("valid config"))
        .await
        .expect("gateway starts");
    let gw = running.listeners[0].addr;
    let mut tcp = tokio::net::TcpStream::connect(gw)
        .await
        .expect("connect gateway");
    tcp.set_nodelay(true).expect("nodelay");
    let request = format!(
        "GET /bench HTTP/1.1\r\nHost: {gw}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes())
        .await
        .expect("send upgrade");
    // Read exactly the response head; the echo sends nothing unasked, so no
    // frame bytes can follow it.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.expect("read 101");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgrade refused");
    let ws = fastwebsockets::WebSocket::after_handshake(tcp, fastwebsockets::Role::Client);
    (ws, running)
}

async fn round_trips(ws: &mut Client, payload: &[u8], iters: u64) -> Duration {
    use fastwebsockets::{Frame, OpCode, Payload};
    let start = Instant::now();
    for _ in 0..iters {
        ws.write_frame(Frame::binary(Payload::Borrowed(payload)))
            .await
            .expect("send");
        loop {
            let frame = ws.read_frame().await.expect("receive");
            if frame.opcode == OpCode::Binary {
                assert_eq!(frame.payload.len(), payload.len());
                break;
            }
        }
    }
    start.elapsed()
}

fn bench_relay(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (mut ws, running) = rt.block_on(loopback());
    let mut g = c.benchmark_group("relay");
    for size in [64usize, 16 * 1024] {
        let payload = vec![0x5au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(
            BenchmarkId::new("echo_round_trip", format!("{size}B")),
            |b| b.iter_custom(|iters| rt.block_on(round_trips(&mut ws, &payload, iters))),
        );
    }
    g.finish();
    running.shutdown();
    drop(ws);
    drop(rt);
}

fn bench_mux(c: &mut Criterion) {
    use bytes::{Bytes, BytesMut};
    use tidegate::mux::client::ClientReader;
    use tidegate_mux::codec::{self, Frame, KIND_BINARY};
    let mut g = c.benchmark_group("mux");
    // 1,000 sessions' 64-byte messages in one 74 KB WebSocket message.
    let mut batch = BytesMut::new();
    for id in 1..=1000u32 {
        Frame::message(id, KIND_BINARY, true, vec![7u8; 64]).encode_into(&mut batch);
    }
    let batch = batch.freeze();
    g.throughput(Throughput::Elements(1000));
    g.bench_function("decode_batch_64B_x1000", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for f in codec::decode(Bytes::clone(black_box(&batch)), 1 << 24) {
                n += f.map(|f| f.body.len()).unwrap_or(0);
            }
            n
        })
    });
    let wire = frames(936, 64, true);
    g.throughput(Throughput::Elements(936));
    g.bench_function("client_reader_masked_64B_x936", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            let mut r = ClientReader::default();
            out.clear();
            let _ = r.feed(BytesMut::from(black_box(&wire[..])), LIMITS, &mut out);
            out.len()
        })
    });
    g.finish();
}

/// Polls a future that must not wait (a verifier with static keys never
/// fetches a JWKS) to completion without a runtime.
fn ready<F: std::future::Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => panic!("verification waited on I/O"),
    }
}

fn bench_auth(c: &mut Criterion) {
    use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
    use tidegate::auth::apikey::{self, ApiKeys};
    use tidegate::auth::jwt::{JwtVerifier, Key};
    let verifier = |alg, key| JwtVerifier {
        keys: vec![Key {
            kid: None,
            alg,
            key,
        }],
        jwks: None,
        issuers: vec!["https://issuer.example.com".into()],
        audiences: vec!["tidegate".into()],
        leeway: Duration::from_secs(30),
        required: vec!["sub".into()],
        conditions: Vec::new(),
        expiry_grace: None,
    };
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + 3600;
    let claims = serde_json::json!({
        "sub": "user-42", "iss": "https://issuer.example.com",
        "aud": "tidegate", "exp": exp, "scope": "chat:read chat:write",
    });
    let sign = |alg, key: &EncodingKey| {
        jsonwebtoken::encode(&Header::new(alg), &claims, key).expect("sign")
    };
    let secret = b"a-32-byte-shared-secret-for-hs256";
    let hs = verifier(Algorithm::HS256, DecodingKey::from_secret(secret));
    let hs_token = sign(Algorithm::HS256, &EncodingKey::from_secret(secret));
    let ec_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("EC key");
    let es = verifier(
        Algorithm::ES256,
        DecodingKey::from_ec_pem(ec_pair.public_key_pem().as_bytes()).expect("EC public PEM"),
    );
    let es_token = sign(
        Algorithm::ES256,
        &EncodingKey::from_ec_pem(ec_pair.serialize_pem().as_bytes()).expect("EC private PEM"),
    );
    let keys = ApiKeys::new(
        (0..100)
            .map(|i| {
                (
                    format!("client-{i}"),
                    apikey::sha256(format!("key-{i:04}").as_bytes()),
                )
            })
            .collect(),
    );

    let mut g = c.benchmark_group("auth");
    for (name, v, token) in [("jwt_hs256", &hs, &hs_token), ("jwt_es256", &es, &es_token)] {
        assert!(ready(v.verify(token)).is_ok(), "{name}: token must verify");
        g.bench_function(name, |b| {
            b.iter(|| ready(v.verify(black_box(token))).is_ok())
        });
    }
    assert_eq!(keys.check("key-0099"), Some("client-99"));
    g.bench_function("api_key_100_stored", |b| {
        b.iter(|| keys.check(black_box("key-0099")).is_some())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = bench_scan, bench_handshake, bench_relay, bench_mux, bench_auth
}
criterion_main!(benches);
