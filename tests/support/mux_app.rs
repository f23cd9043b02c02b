//! Mux applications for the mux-mode tests (the SDK's echo example is in
//! `process`): a hand-written application that speaks `tidegate.mux.v1`
//! frame by frame (for what the SDK would never send), a TCP forwarder
//! whose connections a test can cut, and a client that echoes in a loop.

use super::client::{accept_for, Ws};
use super::upstream::read_request;
use super::within;
use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidegate_mux::codec::{self, Close, FrameType};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------
// A TCP forwarder with cuttable connections

/// Forwards each accepted connection to `target`; [`Forwarder::cut`] drops
/// both sockets of one, as a network failure would.
pub struct Forwarder {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<CancellationToken>>>,
}

impl Forwarder {
    pub async fn start(target: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns: Arc<Mutex<Vec<CancellationToken>>> = Arc::default();
        let list = Arc::clone(&conns);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let Ok(mut outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                let cut = CancellationToken::new();
                list.lock().expect("forwarder list").push(cut.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        // The test cut it: both sockets are dropped below.
                        _ = cut.cancelled() => {}
                        // Either side ended on its own.
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Forwarder { addr, conns }
    }

    /// Connections accepted so far.
    pub fn count(&self) -> usize {
        self.conns.lock().expect("forwarder list").len()
    }

    pub fn cut(&self, i: usize) {
        self.conns.lock().expect("forwarder list")[i].cancel();
    }
}

// ---------------------------------------------------------------------------
// A client echoing in a loop

/// What an [`echo_loop`] client saw.
#[derive(Debug, Default)]
pub struct EchoReport {
    /// Messages sent and echoed.
    pub echoed: usize,
    /// Messages re-sent after no echo came within the resend delay.
    pub resent: usize,
}

/// Send numbered text messages one at a time, each answered by its echo
/// before the next, until at least `min` were echoed and `done` is set;
/// `acked` counts echoes across clients. With
/// `resend_after`, a message whose echo does not come in time is sent
/// again (a late or duplicate echo of an earlier number is skipped). Any
/// Close from the gateway is an error.
pub async fn echo_loop(
    ws: &mut Ws<TcpStream>,
    client: usize,
    min: usize,
    done: &AtomicBool,
    resend_after: Option<Duration>,
    acked: &AtomicUsize,
) -> Result<EchoReport, String> {
    let mut report = EchoReport::default();
    let mut n = 0;
    while n < min || !done.load(Ordering::Relaxed) {
        let text = format!("client {client} message {n}");
        ws.write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
            .await
            .map_err(|e| format!("client {client}: write {n}: {e}"))?;
        loop {
            let read = match resend_after {
                Some(d) => match tokio::time::timeout(d, ws.read_frame()).await {
                    Ok(r) => r,
                    Err(_) => {
                        report.resent += 1;
                        ws.write_frame(Frame::text(Payload::Borrowed(text.as_bytes())))
                            .await
                            .map_err(|e| format!("client {client}: resend {n}: {e}"))?;
                        continue;
                    }
                },
                None => ws.read_frame().await,
            };
            let frame = read.map_err(|e| format!("client {client}: read at {n}: {e}"))?;
            match frame.opcode {
                OpCode::Text if frame.payload[..] == *text.as_bytes() => break,
                OpCode::Text if resend_after.is_some() => {
                    // The echo of an earlier message that was re-sent: its
                    // number must be below ours.
                    let got = String::from_utf8_lossy(&frame.payload).into_owned();
                    let earlier = got
                        .strip_prefix(&format!("client {client} message "))
                        .and_then(|k| k.parse::<usize>().ok())
                        .is_some_and(|k| k < n);
                    if !earlier {
                        return Err(format!("client {client}: expected {text:?}, got {got:?}"));
                    }
                }
                OpCode::Ping | OpCode::Pong => {}
                OpCode::Close => {
                    let p = &frame.payload;
                    let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                    return Err(format!(
                        "client {client} was closed at message {n}: {code:?} {:?}",
                        String::from_utf8_lossy(p.get(2..).unwrap_or_default())
                    ));
                }
                op => {
                    return Err(format!(
                        "client {client}: expected {text:?}, got {op:?} {:?}",
                        String::from_utf8_lossy(&frame.payload)
                    ))
                }
            }
        }
        acked.fetch_add(1, Ordering::Relaxed);
        n += 1;
    }
    report.echoed = n;
    Ok(report)
}

// ---------------------------------------------------------------------------
// A hand-written mux application

/// What a [`FakeApp`] connection saw from the gateway.
#[derive(Debug)]
pub enum FromGateway {
    /// A mux frame (PINGs are answered and not reported).
    Frame(codec::Frame),
    /// The WebSocket Close that ended the connection.
    Closed(u16, String),
    /// The connection ended without a Close.
    Gone,
}

/// One mux connection the gateway opened to a [`FakeApp`].
pub struct FakeConn {
    events: mpsc::UnboundedReceiver<FromGateway>,
    out: mpsc::UnboundedSender<(OpCode, Bytes)>,
    /// The gateway's `X-Tidegate-Mux-Extensions` offer, if any.
    pub offered: Option<String>,
}

impl FakeConn {
    /// The next event (bounded by [`TIMEOUT`]).
    pub async fn next(&mut self) -> FromGateway {
        within("a frame from the gateway", self.events.recv())
            .await
            .unwrap_or(FromGateway::Gone)
    }

    /// The next mux frame, which must be of `kind`.
    pub async fn expect(&mut self, kind: FrameType) -> codec::Frame {
        match self.next().await {
            FromGateway::Frame(f) if f.kind == kind => f,
            other => panic!("expected {kind:?} from the gateway, got {other:?}"),
        }
    }

    /// Send mux frames, batched into one WebSocket message.
    pub fn send(&self, frames: &[codec::Frame]) {
        let mut buf = BytesMut::new();
        for f in frames {
            f.encode_into(&mut buf);
        }
        self.send_raw(OpCode::Binary, buf.freeze());
    }

    /// Send one WebSocket message of any kind with any payload.
    pub fn send_raw(&self, op: OpCode, payload: Bytes) {
        let _ = self.out.send((op, payload));
    }

    /// A second handle that sends on this connection, for a task that
    /// publishes while another reads.
    pub fn sender(&self) -> FakeSender {
        FakeSender(self.out.clone())
    }
}

/// Sends mux frames on a [`FakeConn`]'s connection.
#[derive(Clone)]
pub struct FakeSender(mpsc::UnboundedSender<(OpCode, Bytes)>);

impl FakeSender {
    /// Send mux frames, batched into one WebSocket message.
    pub fn send(&self, frames: &[codec::Frame]) {
        let mut buf = BytesMut::new();
        for f in frames {
            f.encode_into(&mut buf);
        }
        let _ = self.0.send((OpCode::Binary, buf.freeze()));
    }
}

/// A mux application written frame by frame: every connection the gateway
/// opens is handed to the test as a [`FakeConn`].
pub struct FakeApp {
    pub addr: SocketAddr,
    pub conns: mpsc::UnboundedReceiver<FakeConn>,
}

impl FakeApp {
    pub async fn start() -> FakeApp {
        FakeApp::start_with(None).await
    }

    /// An application whose 101 answers with these mux extensions
    /// (`X-Tidegate-Mux-Extensions`, e.g. `fanout`).
    pub async fn start_with(extensions: Option<&'static str>) -> FakeApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(fake_conn(tcp, tx, extensions));
            }
        });
        FakeApp { addr, conns }
    }

    /// The next connection from the gateway.
    pub async fn conn(&mut self) -> FakeConn {
        within("a mux connection from the gateway", self.conns.recv())
            .await
            .expect("fake app accept loop runs")
    }
}

async fn fake_conn(
    tcp: TcpStream,
    conns: mpsc::UnboundedSender<FakeConn>,
    extensions: Option<&'static str>,
) {
    let mut reader = BufReader::new(tcp);
    let Some(req) = read_request(&mut reader).await else {
        return;
    };
    let key = req.header("sec-websocket-key").unwrap_or_default();
    let offered = req.header("x-tidegate-mux-extensions").map(str::to_string);
    let ext = extensions.map_or(String::new(), |e| {
        format!("X-Tidegate-Mux-Extensions: {e}\r\n")
    });
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {}\r\n{ext}\r\n",
        accept_for(key),
        tidegate_mux::SUBPROTOCOL
    );
    if reader.get_mut().write_all(resp.as_bytes()).await.is_err() {
        return;
    }
    let mut ws = WebSocket::after_handshake(reader, Role::Server);
    ws.set_auto_close(false);
    ws.set_max_message_size(64 << 20);
    let (events_tx, events) = mpsc::unbounded_channel();
    let (out, mut out_rx) = mpsc::unbounded_channel::<(OpCode, Bytes)>();
    let _ = conns.send(FakeConn {
        events,
        out: out.clone(),
        offered,
    });
    loop {
        tokio::select! {
            // The test's frames (and pongs) go out in order.
            Some((op, payload)) = out_rx.recv() => {
                let frame = Frame::new(true, op, None, Payload::Owned(payload.to_vec()));
                if ws.write_frame(frame).await.is_err() {
                    let _ = events_tx.send(FromGateway::Gone);
                    return;
                }
            }
            // The gateway's messages, decoded into mux frames.
            read = ws.read_frame() => {
                let Ok(frame) = read else {
                    let _ = events_tx.send(FromGateway::Gone);
                    return;
                };
                match frame.opcode {
                    OpCode::Close => {
                        let p = &frame.payload;
                        let code = if p.len() >= 2 { u16::from_be_bytes([p[0], p[1]]) } else { 1005 };
                        let reason = String::from_utf8_lossy(p.get(2..).unwrap_or_default()).into_owned();
                        let _ = events_tx.send(FromGateway::Closed(code, reason));
                        return;
                    }
                    OpCode::Binary => {
                        let msg = Bytes::copy_from_slice(&frame.payload);
                        for f in codec::decode(msg, 64 << 20) {
                            let f = f.expect("the gateway sends valid mux frames");
                            if f.kind == FrameType::Ping {
                                let mut buf = BytesMut::new();
                                codec::Frame::pong(f.body).encode_into(&mut buf);
                                let _ = out.send((OpCode::Binary, buf.freeze()));
                            } else {
                                let _ = events_tx.send(FromGateway::Frame(f));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

/// A CLOSE body's code and reason.
pub fn close_of(frame: &codec::Frame) -> (Option<u16>, String) {
    let c = Close::decode(&frame.body).expect("the gateway sends valid CLOSE bodies");
    (c.code, c.reason)
}
