//! Shared helpers for the integration tests: a real gateway started
//! in-process on port 0, real upstreams (the crate's echo, or a hand-made
//! one with special behaviour), real clients (fastwebsockets over plain TCP
//! or tokio-rustls, or raw bytes), certificates made with rcgen, and a
//! Prometheus text reader.
//!
//! Every wait is bounded by [`TIMEOUT`], generous on purpose: a loaded
//! 2-core machine must not fail a test. Timeouts are never what a test
//! asserts.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use base64::Engine;
use fastwebsockets::{Frame, OpCode, Role, WebSocket};
use sha1::{Digest, Sha1};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tidegate::config::raw::{
    RawCertificate, RawConfig, RawListener, RawRoute, RawTls, RawUpstream,
};
use tidegate::config::Config;
use tidegate::server::{self, Running};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Upper bound of every wait in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Run `f`, failing the test (naming `what`) if it takes longer than
/// [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {TIMEOUT:?}: {what}"),
    }
}

// ---------------------------------------------------------------------------
// Configuration and the gateway

/// One plain listener, admin on port 0, upstream `up` with `endpoints`,
/// route `r` on `/` to it.
pub fn raw_config(endpoints: &[String]) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.admin.listen = "127.0.0.1:0".into();
    raw.listeners = vec![RawListener {
        name: "main".into(),
        listen: "127.0.0.1:0".into(),
        tls: None,
    }];
    raw.upstreams = vec![RawUpstream {
        name: "up".into(),
        endpoints: endpoints.to_vec(),
        ..RawUpstream::default()
    }];
    raw.routes = vec![RawRoute {
        name: "r".into(),
        upstream: "up".into(),
        ..RawRoute::default()
    }];
    raw
}

/// `ws://ADDR`.
pub fn ws_url(addr: SocketAddr) -> String {
    format!("ws://{addr}")
}

/// A TLS section for a listener.
pub fn tls_section(certs: &[(&Path, &Path, &[&str])]) -> RawTls {
    RawTls {
        certificates: certs
            .iter()
            .map(|(cert, key, names)| RawCertificate {
                cert: cert.display().to_string(),
                key: key.display().to_string(),
                server_names: names.iter().map(|n| n.to_string()).collect(),
            })
            .collect(),
    }
}

/// A running in-process gateway.
pub struct Gateway {
    pub running: Running,
    /// The first listener's bound address.
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

pub async fn start_gateway(raw: RawConfig) -> Gateway {
    let config = Config::from_raw(raw).unwrap_or_else(|e| panic!("test config is valid: {e}"));
    let running = server::start(config).await.expect("gateway binds port 0");
    Gateway {
        addr: running.listeners[0].addr,
        admin: running.admin.expect("admin listener configured"),
        running,
    }
}

/// The crate's echo upstream on a free port.
pub async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(tidegate::echo::serve(listener, CancellationToken::new()));
    addr
}

/// An address nothing listens on (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

// ---------------------------------------------------------------------------
// HTTP over raw bytes

/// A response (or request) head, and for raw requests the body.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Read up to and including the blank line that ends a head.
/// `None`: the peer closed first.
async fn read_head_bytes<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    loop {
        let n = s.read_until(b'\n', &mut head).await.ok()?;
        if n == 0 {
            return None;
        }
        if head.ends_with(b"\r\n\r\n") {
            return Some(head);
        }
        assert!(head.len() < 64 * 1024, "head over 64 KiB");
    }
}

/// Read a response head (no body) from a buffered stream.
pub async fn read_response_head<S: AsyncRead + Unpin>(
    s: &mut BufReader<S>,
) -> Option<HttpResponse> {
    let head = read_head_bytes(s).await?;
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hs);
    match resp.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        other => panic!(
            "unparseable response head {:?}: {other:?}",
            String::from_utf8_lossy(&head)
        ),
    }
    Some(HttpResponse {
        status: resp.code.unwrap_or(0),
        headers: resp
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: Vec::new(),
    })
}

/// Send `request` as raw bytes, read until the server closes, parse it.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> HttpResponse {
    within("raw HTTP exchange", async {
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(request).await.expect("write request");
        let mut reader = BufReader::new(tcp);
        let mut resp = read_response_head(&mut reader)
            .await
            .expect("a response before the connection closed");
        // Rejections carry Connection: close; read the body to EOF.
        let _ = reader.read_to_end(&mut resp.body).await;
        resp
    })
    .await
}

/// `GET path` on a plain HTTP server (admin), `Connection: close`.
pub async fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    raw_request(addr, req.as_bytes()).await
}

/// A valid client key (base64 of 16 random bytes).
pub fn new_key() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// RFC 6455 §4.2.2, computed here independently of the gateway.
pub fn accept_for(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// A complete, valid upgrade request head plus `extra` header lines.
pub fn upgrade_request(host: &str, path: &str, key: &str, extra: &[(&str, &str)]) -> String {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req
}

// ---------------------------------------------------------------------------
// WebSocket clients

pub type Ws<S> = WebSocket<BufReader<S>>;

/// Do the client handshake over `stream`. Returns the response head and,
/// on 101 (with the right accept value), the stream ready for frames.
pub async fn ws_handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (HttpResponse, Option<BufReader<S>>) {
    let key = new_key();
    let mut reader = BufReader::new(stream);
    let req = upgrade_request(host, path, &key, extra);
    reader
        .get_mut()
        .write_all(req.as_bytes())
        .await
        .expect("write upgrade request");
    reader.get_mut().flush().await.expect("flush");
    let mut resp = read_response_head(&mut reader)
        .await
        .expect("a response to the upgrade request");
    if resp.status != 101 {
        let _ = reader.read_to_end(&mut resp.body).await;
        return (resp, None);
    }
    assert_eq!(
        resp.header("sec-websocket-accept"),
        Some(accept_for(&key).as_str()),
        "101 carries the accept value of our key"
    );
    (resp, Some(reader))
}

/// Connect with `extra` headers; `(response, Some(ws))` on 101.
pub async fn ws_try(
    addr: SocketAddr,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> (HttpResponse, Option<Ws<TcpStream>>) {
    within("WebSocket handshake", async {
        let tcp = TcpStream::connect(addr).await.expect("connect to gateway");
        let (resp, stream) = ws_handshake(tcp, host, path, extra).await;
        let ws = stream.map(|s| {
            let mut ws = WebSocket::after_handshake(s, Role::Client);
            // fastwebsockets 0.10 refuses close code 1014 (RFC 6455's IANA
            // registry has it: "Bad Gateway"); see the codes ourselves and
            // answer in `expect_close`.
            ws.set_auto_close(false);
            ws
        });
        (resp, ws)
    })
    .await
}

/// Connect to `path`, asserting a 101.
pub async fn ws_connect(addr: SocketAddr, path: &str) -> Ws<TcpStream> {
    let (resp, ws) = ws_try(addr, "localhost", path, &[]).await;
    match ws {
        Some(ws) => ws,
        None => panic!("expected 101, got {} {:?}", resp.status, resp.body_text()),
    }
}

/// Send one frame and flush (flushing matters on TLS).
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, frame: Frame<'_>) {
    within("write frame", async {
        ws.write_frame(frame).await.expect("write frame");
        ws.flush().await.expect("flush");
    })
    .await
}

/// The next frame other than ping/pong: (fin, opcode, payload).
pub async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
) -> (bool, OpCode, Vec<u8>) {
    within("read frame", async {
        loop {
            let f = ws.read_frame().await.expect("read frame");
            match f.opcode {
                OpCode::Ping | OpCode::Pong => continue,
                op => return (f.fin, op, f.payload.to_vec()),
            }
        }
    })
    .await
}

/// Read until a Close frame arrives; returns its code and reason. Answers
/// it (echoing the code, as RFC 6455 §5.5.1 suggests) unless we closed
/// first.
pub async fn expect_close<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>) -> (u16, String) {
    loop {
        let (_, op, payload) = next_frame(ws).await;
        if op == OpCode::Close {
            return answer_close(ws, payload).await;
        }
    }
}

/// The next frame other than ping/pong must be a Close: returns its code
/// and reason (and answers it).
pub async fn expect_close_next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>) -> (u16, String) {
    let (_, op, payload) = next_frame(ws).await;
    assert_eq!(
        op,
        OpCode::Close,
        "expected a Close frame next, got {op:?} of {} bytes",
        payload.len()
    );
    answer_close(ws, payload).await
}

async fn answer_close<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut Ws<S>,
    payload: Vec<u8>,
) -> (u16, String) {
    assert!(payload.len() >= 2, "Close frame carries a code");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let reason = String::from_utf8_lossy(&payload[2..]).into_owned();
    if !ws.is_closed() {
        // The peer may be gone already; that is fine here.
        let _ = ws.write_frame(Frame::close_raw(payload.into())).await;
        let _ = ws.flush().await;
    }
    (code, reason)
}

/// Send a text message and expect the same text back.
pub async fn echo_text<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>, text: &str) {
    send(
        ws,
        Frame::text(fastwebsockets::Payload::Borrowed(text.as_bytes())),
    )
    .await;
    let (fin, op, payload) = next_frame(ws).await;
    assert!(fin);
    assert_eq!(op, OpCode::Text);
    assert_eq!(payload, text.as_bytes());
}

// ---------------------------------------------------------------------------
// Metrics

/// The `/metrics` text.
pub async fn metrics(admin: SocketAddr) -> String {
    let resp = http_get(admin, "/metrics").await;
    assert_eq!(resp.status, 200, "/metrics answers 200");
    resp.body_text()
}

/// Value of the sample `name{labels…}` carrying at least `labels`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (label_text, value) = if let Some(rest) = rest.strip_prefix('{') {
            let Some((l, v)) = rest.split_once('}') else {
                continue;
            };
            (l, v)
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let all = labels
            .iter()
            .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
        if all {
            return value.trim().parse().ok();
        }
    }
    None
}

/// Poll `/metrics` until the sample equals `want` (counters are flushed by
/// the session tasks, a moment after the bytes move), then assert it.
pub async fn wait_metric(admin: SocketAddr, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let text = metrics(admin).await;
        let got = metric(&text, name, labels);
        if got == Some(want) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{name}{labels:?}: expected {want}, got {got:?}\n--- /metrics ---\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// TLS

/// A test certificate authority.
pub struct TestCa {
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

pub fn test_ca() -> TestCa {
    let key = rcgen::KeyPair::generate().expect("CA key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tidegate test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    TestCa { cert, key }
}

/// A leaf certificate signed by a test CA.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    /// DER of the leaf, to compare with what a client saw.
    pub der: Vec<u8>,
}

pub fn leaf(ca: &TestCa, names: &[&str]) -> Leaf {
    let key = rcgen::KeyPair::generate().expect("leaf key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    let cert = params
        .signed_by(&key, &ca.cert, &ca.key)
        .expect("leaf certificate");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().to_vec(),
    }
}

/// Write a leaf's PEM files into `dir`; returns (cert, key) paths.
pub fn write_leaf(dir: &Path, stem: &str, leaf: &Leaf) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{stem}.crt"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, &leaf.cert_pem).expect("write cert");
    std::fs::write(&key, &leaf.key_pem).expect("write key");
    (cert, key)
}

/// A rustls client trusting `ca`, limited to `versions`.
pub fn client_tls(
    ca: &TestCa,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).expect("CA into roots");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// TCP connect and TLS handshake with SNI `name`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> TlsStream {
    within("TLS handshake", async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let server_name =
            rustls_pki_types::ServerName::try_from(name.to_string()).expect("valid server name");
        tokio_rustls::TlsConnector::from(config)
            .connect(server_name, tcp)
            .await
            .expect("TLS handshake succeeds")
    })
    .await
}

// ---------------------------------------------------------------------------
// Hand-made upstreams

/// What a [`raw_upstream`] does with each connection.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Accept (choosing the first offered sub-protocol) and send every frame
    /// back as it came, fragments included: no reassembly.
    EchoFrames,
    /// Accept, echo the first data frame, then drop the TCP connection.
    DropAfterFirst,
    /// Answer the upgrade request with these bytes, then wait for EOF.
    Reply(Vec<u8>),
    /// Read the request, never answer; hold the connection until EOF.
    Silent,
    /// Accept; on the first data frame answer with a *masked* frame (a
    /// protocol error from a server), then report the code of the Close
    /// frame it receives.
    SendMasked(mpsc::UnboundedSender<u16>),
}

/// A request head as an upstream received it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Start an upstream with `behaviour`; each request head it receives is
/// sent on the returned channel.
pub async fn raw_upstream(
    behaviour: Behaviour,
) -> (SocketAddr, mpsc::UnboundedReceiver<SeenRequest>) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            let behaviour = behaviour.clone();
            tokio::spawn(async move {
                let _ = tcp.set_nodelay(true);
                serve_raw(tcp, behaviour, tx).await;
            });
        }
    });
    (addr, rx)
}

async fn serve_raw(tcp: TcpStream, behaviour: Behaviour, tx: mpsc::UnboundedSender<SeenRequest>) {
    let mut reader = BufReader::new(tcp);
    let Some(head) = read_head_bytes(&mut reader).await else {
        return;
    };
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hs);
    if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
        return;
    }
    let seen = SeenRequest {
        target: req.path.unwrap_or_default().to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    };
    let _ = tx.send(seen.clone());
    match behaviour {
        Behaviour::Reply(bytes) => {
            let _ = reader.get_mut().write_all(&bytes).await;
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink).await;
        }
        Behaviour::Silent => {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink).await;
        }
        Behaviour::EchoFrames | Behaviour::DropAfterFirst | Behaviour::SendMasked(_) => {
            let key = seen.header("sec-websocket-key").unwrap_or_default();
            let mut resp = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {}\r\n",
                accept_for(key)
            );
            if let Some(first) = seen
                .header("sec-websocket-protocol")
                .and_then(|p| p.split(',').next())
            {
                resp.push_str(&format!("Sec-WebSocket-Protocol: {}\r\n", first.trim()));
            }
            resp.push_str("\r\n");
            if reader.get_mut().write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            let mut ws = WebSocket::after_handshake(reader, Role::Server);
            ws.set_max_message_size(256 << 20);
            let drop_after_first = matches!(behaviour, Behaviour::DropAfterFirst);
            let report = match &behaviour {
                Behaviour::SendMasked(tx) => {
                    // See every Close code as sent (fastwebsockets would
                    // refuse 1014 before we could look at it).
                    ws.set_auto_close(false);
                    Some(tx.clone())
                }
                _ => None,
            };
            loop {
                let Ok(frame) = ws.read_frame().await else {
                    return;
                };
                if let Some(tx) = &report {
                    match frame.opcode {
                        OpCode::Close => {
                            let p = &frame.payload;
                            let code = if p.len() >= 2 {
                                u16::from_be_bytes([p[0], p[1]])
                            } else {
                                1005
                            };
                            let _ = tx.send(code);
                            return;
                        }
                        OpCode::Text | OpCode::Binary => {
                            let mut bad = Frame::text(fastwebsockets::Payload::Borrowed(b"masked"));
                            bad.mask();
                            let _ = ws.write_frame(bad).await;
                        }
                        _ => {}
                    }
                    continue;
                }
                match frame.opcode {
                    // auto_close already answered it.
                    OpCode::Close => return,
                    OpCode::Ping | OpCode::Pong => continue,
                    OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                        let echo = Frame::new(frame.fin, frame.opcode, None, frame.payload);
                        if ws.write_frame(echo).await.is_err() {
                            return;
                        }
                        if drop_after_first {
                            // Gone without a Close: the TCP connection just ends.
                            return;
                        }
                    }
                }
            }
        }
    }
}
