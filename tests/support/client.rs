//! Real clients: HTTP requests written as raw bytes (so a test can send
//! what no well-behaved client would), and a fastwebsockets client over any
//! stream (plain TCP or rustls) whose handshake is checked against
//! RFC 6455 §4.2.2 computed here, independently of the gateway.

use super::within;
use base64::Engine;
use fastwebsockets::{Frame, OpCode, Role, WebSocket};
use sha1::{Digest, Sha1};
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------
// HTTP over raw bytes

/// A response head, and for raw requests the body.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        header_of(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The first header `name` (case-insensitive) of a parsed head.
pub fn header_of<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Headers of an httparse result as owned pairs.
pub fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// Read up to and including the blank line that ends a head.
/// `None`: the peer closed first.
pub async fn read_head_bytes<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<Vec<u8>> {
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
async fn read_response_head<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Option<HttpResponse> {
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
        headers: owned_headers(resp.headers),
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
fn new_key() -> String {
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

/// A client WebSocket over a stream after a 101.
pub fn client_ws<S: AsyncRead + AsyncWrite + Unpin>(stream: BufReader<S>) -> Ws<S> {
    let mut ws = WebSocket::after_handshake(stream, Role::Client);
    // fastwebsockets 0.10 refuses close code 1014 (RFC 6455's IANA
    // registry has it: "Bad Gateway"); see the codes ourselves and answer
    // in `expect_close`.
    ws.set_auto_close(false);
    ws
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
        (resp, stream.map(client_ws))
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
