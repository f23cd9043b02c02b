//! The tests' stand-in for the gateway: a real WebSocket client (the
//! fastwebsockets client handshake over a TcpStream, frames masked as a
//! client's must be) that speaks the mux codec.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fastwebsockets::{FragmentCollector, OpCode, Payload};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tidegate_mux::codec::{decode, Frame};
use tidegate_mux::{OpenBody, SUBPROTOCOL};
use tokio::net::TcpStream;

/// Generous: the tests assert what arrives, never how fast.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Await `fut`, failing the test (not hanging it) if nothing happens.
pub async fn patiently<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A fresh gateway instance string, so tests sharing the process-wide
/// session table never collide.
pub fn instance() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1);
    format!(
        "{:08x}{:08x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// One mux connection, gateway side.
pub struct Gateway {
    /// The WebSocket (fragments joined, pings answered).
    ws: FragmentCollector<TokioIo<Upgraded>>,
    /// Frames of the last message not handed out yet.
    pending: VecDeque<Frame>,
    /// Payloads of WebSocket pongs received.
    pub ws_pongs: Vec<Vec<u8>>,
    /// The application answered our offer of extension `fanout` (§10).
    pub fanout: bool,
}

/// What ended a read when a mux frame was expected.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A WebSocket Close with this code (None: no code).
    Close(Option<u16>, String),
    /// The connection broke without a Close.
    Broken,
}

impl Gateway {
    pub async fn connect(addr: SocketAddr, instance: &str) -> Gateway {
        connect_with(addr, instance, None, false)
            .await
            .unwrap_or_else(|status| panic!("upgrade refused with {status}"))
    }

    /// Connect offering extension `fanout`, as the gateway does.
    pub async fn connect_fanout(addr: SocketAddr, instance: &str) -> Gateway {
        connect_with(addr, instance, None, true)
            .await
            .unwrap_or_else(|status| panic!("upgrade refused with {status}"))
    }
}

/// Upgrade as the gateway would, sending `secret` in
/// `X-Tidegate-Mux-Secret` if given; the refusal's status on failure.
pub async fn try_connect(
    addr: SocketAddr,
    instance: &str,
    secret: Option<&str>,
) -> Result<(), u16> {
    connect_with(addr, instance, secret, false).await.map(drop)
}

async fn connect_with(
    addr: SocketAddr,
    instance: &str,
    secret: Option<&str>,
    offer_fanout: bool,
) -> Result<Gateway, u16> {
    {
        let tcp = patiently("TCP connect", TcpStream::connect(addr))
            .await
            .expect("connect to the SDK server");
        let req = Request::builder()
            .method("GET")
            .uri(format!("http://{addr}/mux"))
            .header("host", addr.to_string())
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .header(
                "sec-websocket-key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("sec-websocket-version", "13")
            .header("sec-websocket-protocol", SUBPROTOCOL)
            .header("x-tidegate-instance", instance)
            .header("x-tidegate-slot", "0");
        let req = match secret {
            Some(s) => req.header("x-tidegate-mux-secret", s),
            None => req,
        };
        let req = if offer_fanout {
            req.header("x-tidegate-mux-extensions", "future-thing, fanout")
        } else {
            req
        }
        .body(Empty::<Bytes>::new())
        .expect("valid request");
        let (ws, resp) = match patiently(
            "handshake",
            fastwebsockets::handshake::client(&SpawnExecutor, req, tcp),
        )
        .await
        {
            Ok(done) => done,
            Err(fastwebsockets::WebSocketError::InvalidStatusCode(status)) => return Err(status),
            Err(e) => panic!("handshake failed: {e}"),
        };
        let proto = resp.headers().get("sec-websocket-protocol");
        assert_eq!(proto.and_then(|v| v.to_str().ok()), Some(SUBPROTOCOL));
        let fanout = resp
            .headers()
            .get("x-tidegate-mux-extensions")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| tidegate_mux::codec::has_extension(v, "fanout"));
        Ok(Gateway {
            ws: FragmentCollector::new(ws),
            pending: VecDeque::new(),
            ws_pongs: Vec::new(),
            fanout,
        })
    }
}

impl Gateway {
    /// Send `frames` as one binary WebSocket message (a batch).
    pub async fn send(&mut self, frames: &[Frame]) {
        let mut buf = BytesMut::new();
        for f in frames {
            f.encode_into(&mut buf);
        }
        self.send_raw(OpCode::Binary, buf.to_vec()).await;
    }

    pub async fn send_raw(&mut self, opcode: OpCode, payload: Vec<u8>) {
        let frame = fastwebsockets::Frame::new(true, opcode, None, Payload::Owned(payload));
        self.ws
            .write_frame(frame)
            .await
            .expect("write to the SDK server");
    }

    /// The next mux frame, or what ended the connection.
    pub async fn try_next(&mut self) -> Result<Frame, Ended> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(f);
            }
            let frame = match patiently("a WebSocket message", self.ws.read_frame()).await {
                Ok(f) => f,
                Err(_) => return Err(Ended::Broken),
            };
            match frame.opcode {
                OpCode::Binary => {
                    let msg = Bytes::from(Vec::from(frame.payload));
                    for f in decode(msg, 1 << 24) {
                        self.pending
                            .push_back(f.expect("the SDK sends valid frames"));
                    }
                }
                OpCode::Close => {
                    let p = &frame.payload;
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    let reason = String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).to_string();
                    return Err(Ended::Close(code, reason));
                }
                OpCode::Pong => self.ws_pongs.push(frame.payload.to_vec()),
                other => panic!("unexpected {other:?} message from the SDK"),
            }
        }
    }

    /// The next mux frame; the connection must not end.
    pub async fn next(&mut self) -> Frame {
        match self.try_next().await {
            Ok(f) => f,
            Err(e) => panic!("connection ended: {e:?}"),
        }
    }

    /// The number of mux frames in the next WebSocket message (and keeps
    /// them for `next`).
    pub async fn next_message_len(&mut self) -> usize {
        assert!(
            self.pending.is_empty(),
            "frames of an earlier message unread"
        );
        let first = self.next().await;
        self.pending.push_front(first);
        self.pending.len()
    }

    /// Read until the connection ends; what ended it.
    pub async fn until_end(&mut self) -> Ended {
        loop {
            if let Err(e) = self.try_next().await {
                return e;
            }
        }
    }
}

/// An OPEN body for `path` (query after `?`), offering `chat`.
pub fn open_body(path_and_query: &str) -> OpenBody {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    OpenBody {
        path: path.into(),
        query: query.into(),
        headers: vec![("user-agent".into(), "test".into())],
        client_addr: "127.0.0.1:1".into(),
        protocols: vec!["chat".into(), "other".into()],
        route: "test".into(),
        tls: false,
        identity: None,
    }
}
