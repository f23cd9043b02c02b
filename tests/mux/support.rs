//! Helpers for the mux-mode tests (tests/mux.rs, tests/mux_scale.rs): the
//! SDK's `echo` example and the gateway binary as child processes, a mux
//! route configuration, a TCP forwarder whose connections a test can cut,
//! a hand-written application that speaks `tidegate.mux.v1` frame by frame
//! (for what the SDK would never send), and a client that echoes in a loop.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use crate::common::*;
use bytes::{Bytes, BytesMut};
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tidegate::config::raw::RawConfig;
use tidegate_mux::codec::{self, Close, FrameType};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Time a child process gets to print its address line (a release binary
/// on a loaded machine can be slow to start).
const START_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Child processes

/// The gateway binary: `$TG_TEST_BIN` (scripts/test.sh), else cargo's.
pub fn tidegate_bin() -> PathBuf {
    std::env::var_os("TG_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_tidegate")))
}

/// The SDK's echo example, built beside the gateway binary (`cargo test`
/// builds the workspace's examples; scripts/test.sh builds them first).
pub fn echo_example_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_tidegate"));
    let echo = bin
        .parent()
        .expect("the binary lives in a target directory")
        .join("examples")
        .join("echo");
    assert!(
        echo.is_file(),
        "{} is missing: run `cargo build --release -p tidegate-mux --examples`",
        echo.display()
    );
    echo
}

/// Raise this process's open-file limit to its hard limit (the scale test
/// holds one socket per client).
pub fn raise_nofile() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise RLIMIT_NOFILE")
}

/// Wait for a line of `lines` starting with `prefix`; returns it.
async fn line_starting(lines: &mut Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    let wait = async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read child stdout")
                .unwrap_or_else(|| panic!("child exited before printing {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    };
    tokio::time::timeout(START_TIMEOUT, wait)
        .await
        .unwrap_or_else(|_| panic!("no {prefix:?} line within {START_TIMEOUT:?}"))
}

/// The `addr=` field of an address line.
fn addr_field(line: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no addr= in {line:?}"))
}

/// The echo example running as its own process.
pub struct EchoApp {
    pub child: Child,
    pub addr: SocketAddr,
    pub pid: u32,
    /// Kept so the child's stdout stays open.
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl EchoApp {
    /// Start it listening on `listen` (e.g. `127.0.0.1:0`).
    pub async fn start(listen: &str) -> EchoApp {
        let mut child = Command::new(echo_example_bin())
            .args(["--listen", listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the echo example");
        let pid = child.id().expect("echo example running");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let line = line_starting(&mut lines, "tidegate-mux echo listening ").await;
        EchoApp {
            child,
            addr: addr_field(&line),
            pid,
            _stdout: lines,
        }
    }

    pub fn url(&self) -> String {
        ws_url(self.addr)
    }

    pub fn sigterm(&self) {
        signal(self.pid, "-TERM");
    }

    /// TCP sockets this process holds (listening ones included): the
    /// socket inodes of /proc/PID/fd that /proc/PID/net/tcp{,6} list (the
    /// runtime's signal socketpair is not TCP).
    pub fn tcp_socket_count(&self) -> usize {
        let tcp_inodes: std::collections::HashSet<String> = ["tcp", "tcp6"]
            .iter()
            .filter_map(|t| std::fs::read_to_string(format!("/proc/{}/net/{t}", self.pid)).ok())
            .flat_map(|table| {
                table
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().nth(9).map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .collect();
        let dir = format!("/proc/{}/fd", self.pid);
        std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {dir}: {e}"))
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter_map(|target| {
                let t = target.to_string_lossy();
                Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
            })
            .filter(|inode| tcp_inodes.contains(inode))
            .count()
    }
}

pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid}");
}

/// The gateway binary running `run --config` on a file of ours.
pub struct GatewayProc {
    pub child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    _dir: tempfile::TempDir,
    _stdout: Lines<BufReader<ChildStdout>>,
}

impl GatewayProc {
    pub async fn start(config_toml: &str) -> GatewayProc {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("tidegate.toml");
        std::fs::write(&file, config_toml).expect("write config");
        let log = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let mut cmd = Command::new(tidegate_bin());
        for (k, _) in std::env::vars() {
            if k.starts_with("TIDEGATE_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .env("TIDEGATE_LOG", "warn")
            .arg("run")
            .arg("--config")
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start tidegate run");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let listening = line_starting(&mut lines, "tidegate listening ").await;
        let admin = line_starting(&mut lines, "tidegate admin ").await;
        GatewayProc {
            child,
            addr: addr_field(&listening),
            admin: addr_field(&admin),
            _dir: dir,
            _stdout: lines,
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration, readiness, metrics

/// One mux route `r` on `/` to upstream `up` with `endpoints`, `pool_size`
/// connections each; reconnects kept quick for the tests.
pub fn mux_config(endpoints: &[String], pool_size: u64) -> RawConfig {
    let mut raw = raw_config(endpoints);
    raw.upstreams[0].pool_size = pool_size;
    raw.routes[0].mode = "mux".into();
    raw.mux.reconnect_max = "500ms".into();
    raw
}

/// Wait until `/readyz` answers 200 (a mux connection is up).
pub async fn wait_ready(admin: SocketAddr) {
    within("/readyz answers 200", async {
        while http_get(admin, "/readyz").await.status != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Sum of every sample of `name` carrying at least `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| metric(l, name, labels))
        .sum()
}

/// Poll `/metrics` until `name{labels}` (summed) satisfies `ok`; returns it.
pub async fn wait_metric_until(
    admin: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let text = metrics(admin).await;
        let got = metric_sum(&text, name, labels);
        if ok(got) {
            return got;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("{name}{labels:?} never satisfied the condition, last {got}\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
    /// `X-Tidegate-Instance` of the upgrade request.
    pub instance: String,
    events: mpsc::UnboundedReceiver<FromGateway>,
    out: mpsc::UnboundedSender<(OpCode, Bytes)>,
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
}

/// A mux application written frame by frame: every connection the gateway
/// opens is handed to the test as a [`FakeConn`].
pub struct FakeApp {
    pub addr: SocketAddr,
    pub conns: mpsc::UnboundedReceiver<FakeConn>,
}

impl FakeApp {
    pub async fn start() -> FakeApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(fake_conn(tcp, tx));
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

async fn fake_conn(tcp: TcpStream, conns: mpsc::UnboundedSender<FakeConn>) {
    let mut reader = BufReader::new(tcp);
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => head.extend_from_slice(&line),
        }
    }
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hs);
    if !matches!(req.parse(&head), Ok(httparse::Status::Complete(_))) {
        return;
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .unwrap_or_default()
    };
    let (key, instance) = (header("sec-websocket-key"), header("x-tidegate-instance"));
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {}\r\n\r\n",
        accept_for(&key),
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
        instance,
        events,
        out: out.clone(),
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

/// Read the rest of a client connection's bytes (after a test stopped
/// using it as a WebSocket), e.g. to see it end.
pub async fn read_to_end(tcp: &mut TcpStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let _ = within("connection ends", tcp.read_to_end(&mut seen)).await;
    seen
}
