//! What the fan-out tests share: a gateway configuration with the publish
//! listener on, the release binary started with its token in the
//! environment, the HTTP publish call, and a passthrough upstream whose
//! 101 subscribes its session and whose frames the test sends one by one.

use super::client::{accept_for, raw_request, HttpResponse};
use super::gateway::{ConfigFile, GatewayProc};
use super::process::addr_field;
use super::upstream::read_request;
use fastwebsockets::{Frame, Payload, Role, WebSocket};
use std::net::SocketAddr;
use tidegate::config::raw::RawConfig;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The publish listener's bearer token in the tests.
pub const PUBLISH_TOKEN: &str = "test-publish-token-0123456789";
const TOKEN_ENV: &str = "TG_TEST_PUBLISH_TOKEN";

/// Turn on the publish listener (port 0, token from the environment).
pub fn with_publish(mut raw: RawConfig) -> RawConfig {
    raw.fanout.publish.listen = "127.0.0.1:0".into();
    raw.fanout.publish.token_env = TOKEN_ENV.into();
    raw
}

/// The release binary with its publish token; returns it and the publish
/// listener's address.
pub async fn start_publishing(file: &ConfigFile) -> (GatewayProc, SocketAddr) {
    let mut gw = GatewayProc::start_with_env(file, &[(TOKEN_ENV, PUBLISH_TOKEN)]).await;
    let line = gw.proc.line_starting("tidegate fanout-publish ").await;
    (gw, addr_field(&line))
}

/// `POST path` on the publish listener with `token` (none if empty).
pub async fn post(
    addr: SocketAddr,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> HttpResponse {
    let auth = if token.is_empty() {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw_request(addr, &req).await
}

/// Publish `text` to `channel` with the right token; the number of
/// subscribers the gateway reports.
pub async fn publish_text(addr: SocketAddr, channel: &str, text: &str) -> u64 {
    let resp = post(
        addr,
        &format!("/publish/{channel}"),
        PUBLISH_TOKEN,
        "text/plain",
        text.as_bytes(),
    )
    .await;
    assert_eq!(resp.status, 200, "publish: {}", resp.body_text());
    subscribers(&resp)
}

/// `{"subscribers":N}` → N.
pub fn subscribers(resp: &HttpResponse) -> u64 {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).expect("JSON answer");
    v["subscribers"].as_u64().expect("subscribers count")
}

/// A passthrough upstream: its 101 carries `X-Tidegate-Subscribe:
/// {subscribe}`; then it writes the frames the test sends on the returned
/// channel, one (fin, opcode, payload) at a time, as they come.
pub async fn subscribing_upstream(
    subscribe: &'static str,
) -> (
    SocketAddr,
    mpsc::UnboundedSender<(bool, fastwebsockets::OpCode, Vec<u8>)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, mut rx) = mpsc::unbounded_channel::<(bool, fastwebsockets::OpCode, Vec<u8>)>();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let mut reader = BufReader::new(tcp);
        let Some(req) = read_request(&mut reader).await else {
            return;
        };
        let key = req.header("sec-websocket-key").unwrap_or_default();
        let resp = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {}\r\nX-Tidegate-Subscribe: {subscribe}\r\nX-Other: kept\r\n\r\n",
            accept_for(key)
        );
        if reader.get_mut().write_all(resp.as_bytes()).await.is_err() {
            return;
        }
        let mut ws = WebSocket::after_handshake(reader, Role::Server);
        while let Some((fin, op, payload)) = rx.recv().await {
            let frame = Frame::new(fin, op, None, Payload::Owned(payload));
            if ws.write_frame(frame).await.is_err() {
                return;
            }
        }
        // Hold the connection until the gateway ends it.
        let _ = ws.read_frame().await;
    });
    (addr, tx)
}

/// A passthrough upstream for any number of sessions: each 101 carries
/// `X-Tidegate-Subscribe: {subscribe}`; then it only reads (answering
/// pings and Closes) until the gateway ends the connection.
pub async fn subscribing_upstreams(subscribe: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(tcp);
                let Some(req) = read_request(&mut reader).await else {
                    return;
                };
                let key = req.header("sec-websocket-key").unwrap_or_default();
                let resp = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                     Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\
                     X-Tidegate-Subscribe: {subscribe}\r\n\r\n",
                    accept_for(key)
                );
                if reader.get_mut().write_all(resp.as_bytes()).await.is_err() {
                    return;
                }
                let mut ws = WebSocket::after_handshake(reader, Role::Server);
                while ws.read_frame().await.is_ok() {}
            });
        }
    });
    addr
}
