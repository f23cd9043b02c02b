//! The bundled echo server against an independent WebSocket client
//! (fastwebsockets), so the hand-written codec is checked against someone
//! else's reading of RFC 6455, not only against our own client.

mod common;

use std::future::Future;

use bytes::Bytes;
use common::EchoServer;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

struct SpawnExecutor;

impl<Fut> hyper::rt::Executor<Fut> for SpawnExecutor
where
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    fn execute(&self, fut: Fut) {
        tokio::task::spawn(fut);
    }
}

async fn client(addr: &str) -> WebSocket<TokioIo<Upgraded>> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let req = hyper::Request::builder()
        .method("GET")
        .uri(format!("http://{addr}/"))
        .header("Host", addr)
        .header("Upgrade", "websocket")
        .header("Connection", "upgrade")
        .header(
            "Sec-WebSocket-Key",
            fastwebsockets::handshake::generate_key(),
        )
        .header("Sec-WebSocket-Version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (mut ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, req, stream)
        .await
        .unwrap();
    ws.set_auto_pong(false);
    ws.set_auto_close(false);
    ws
}

#[tokio::test]
async fn echoes_frames_pings_and_close() {
    let server = EchoServer::start();
    let mut ws = client(&server.addr).await;

    // A fragmented text message comes back fragment by fragment.
    ws.write_frame(Frame::new(
        false,
        OpCode::Text,
        None,
        Payload::Borrowed(b"hel"),
    ))
    .await
    .unwrap();
    ws.write_frame(Frame::new(
        true,
        OpCode::Continuation,
        None,
        Payload::Borrowed(b"lo"),
    ))
    .await
    .unwrap();
    let f = ws.read_frame().await.unwrap();
    assert_eq!(
        (f.fin, f.opcode, &f.payload[..]),
        (false, OpCode::Text, &b"hel"[..])
    );
    let f = ws.read_frame().await.unwrap();
    assert_eq!(
        (f.fin, f.opcode, &f.payload[..]),
        (true, OpCode::Continuation, &b"lo"[..])
    );

    // A large binary frame, streamed through the server's small buffers.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    ws.write_frame(Frame::binary(Payload::Borrowed(&big)))
        .await
        .unwrap();
    let f = ws.read_frame().await.unwrap();
    assert_eq!(f.opcode, OpCode::Binary);
    assert!(f.payload[..] == big[..], "large payload corrupted");

    // Ping is answered with a pong carrying the same payload.
    ws.write_frame(Frame::new(
        true,
        OpCode::Ping,
        None,
        Payload::Borrowed(b"are you there"),
    ))
    .await
    .unwrap();
    let f = ws.read_frame().await.unwrap();
    assert_eq!(
        (f.opcode, &f.payload[..]),
        (OpCode::Pong, &b"are you there"[..])
    );

    // Close 1000 is answered with close 1000.
    ws.write_frame(Frame::close(1000, b"bye")).await.unwrap();
    let f = ws.read_frame().await.unwrap();
    assert_eq!(f.opcode, OpCode::Close);
    assert_eq!(&f.payload[..2], &1000u16.to_be_bytes());
}

#[tokio::test]
async fn unmasked_client_frame_is_a_protocol_error() {
    let server = EchoServer::start();
    let mut stream = TcpStream::connect(&server.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = fastwebsockets::handshake::generate_key();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    // An unmasked text frame right behind the request.
    stream.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 101"), "{text}");
    // The last four bytes: an unmasked close frame with code 1002.
    assert_eq!(&buf[buf.len() - 4..], &[0x88, 0x02, 0x03, 0xEA]);
}
