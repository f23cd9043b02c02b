//! Upstreams behind the gateway under test: the crate's own echo, and a
//! hand-made one with a chosen misbehaviour (echoing raw fragments,
//! dropping the connection, a canned reply, silence, a masked frame) that
//! also reports every request head it received.

use super::client::{accept_for, header_of, owned_headers, read_head_bytes};
use fastwebsockets::{Frame, OpCode, Role, WebSocket};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The crate's echo upstream on a free port.
pub async fn start_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(tidegate::echo::serve(listener, CancellationToken::new()));
    addr
}

/// A port nothing listens on now, released so that a test can start a
/// listener there later. Connects to it before then are refused, unless
/// the port was handed out again meanwhile: use [`refused_port`] where
/// nothing should ever listen.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    addr
}

/// An address where a connect is always refused. The port stays bound
/// (never listening) for the rest of the test process: a port merely
/// released could be handed to another test's listener, or become the
/// source port of a connect to it (a TCP self-connect), and the refused
/// connect would then hang instead.
pub async fn refused_port() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    std::mem::forget(socket);
    addr
}

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
        header_of(&self.headers, name)
    }
}

/// Read and parse a request head; `None` if the peer closed first or sent
/// something that is not HTTP.
pub async fn read_request<S: AsyncRead + Unpin>(reader: &mut BufReader<S>) -> Option<SeenRequest> {
    let head = read_head_bytes(reader).await?;
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hs);
    if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    Some(SeenRequest {
        target: req.path.unwrap_or_default().to_string(),
        headers: owned_headers(req.headers),
    })
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
    let Some(seen) = read_request(&mut reader).await else {
        return;
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
            match behaviour {
                Behaviour::SendMasked(report) => send_masked(ws, report).await,
                other => echo_frames(ws, matches!(other, Behaviour::DropAfterFirst)).await,
            }
        }
    }
}

/// Echo every data frame as it came; with `drop_after_first`, end the
/// TCP connection (no Close) after the first.
async fn echo_frames(mut ws: WebSocket<BufReader<TcpStream>>, drop_after_first: bool) {
    loop {
        let Ok(frame) = ws.read_frame().await else {
            return;
        };
        match frame.opcode {
            // auto_close already answered it.
            OpCode::Close => return,
            OpCode::Ping | OpCode::Pong => continue,
            OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                let echo = Frame::new(frame.fin, frame.opcode, None, frame.payload);
                if ws.write_frame(echo).await.is_err() || drop_after_first {
                    return;
                }
            }
        }
    }
}

/// Answer each data frame with a masked frame; report the Close code.
async fn send_masked(mut ws: WebSocket<BufReader<TcpStream>>, report: mpsc::UnboundedSender<u16>) {
    // See every Close code as sent (fastwebsockets would refuse 1014
    // before we could look at it).
    ws.set_auto_close(false);
    loop {
        let Ok(frame) = ws.read_frame().await else {
            return;
        };
        match frame.opcode {
            OpCode::Close => {
                let p = &frame.payload;
                let code = if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                };
                let _ = report.send(code);
                return;
            }
            OpCode::Text | OpCode::Binary => {
                let mut bad = Frame::text(fastwebsockets::Payload::Borrowed(b"masked"));
                bad.mask();
                let _ = ws.write_frame(bad).await;
            }
            _ => {}
        }
    }
}
