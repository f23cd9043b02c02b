//! The gateway's own upstream HTTP/1.1 client (issue #15, second half),
//! through the release binary, against an upstream that answers with
//! scripted raw bytes: a response head over the bound is a 502; a body
//! with bad chunk framing, or cut short by the upstream, ends the client's
//! response early (or is a 502 if nothing was sent yet) and the upstream
//! connection is closed, never pooled; a body delimited by the upstream
//! closing reaches the client complete, re-framed as chunks.

use crate::support::http::RawHttp;
use crate::support::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tidegate::config::raw::RawConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// One step of a scripted answer.
#[derive(Clone)]
enum Part {
    Send(Vec<u8>),
    Pause,
    Close,
}

#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// Request number `n` (from 1, across connections) on connection `conn`.
    Request {
        conn: usize,
        n: usize,
    },
    Closed {
        conn: usize,
    },
}

/// An upstream that answers request `n` with `replies[n - 1]` (the last
/// one for any later request), over raw bytes.
struct Scripted {
    addr: std::net::SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
}

impl Scripted {
    async fn start(replies: Vec<Vec<Part>>) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, events) = mpsc::unbounded_channel();
        let (conns, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let replies = Arc::new(replies);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = conns.fetch_add(1, Ordering::SeqCst) + 1;
                let (tx, requests, replies) = (tx.clone(), requests.clone(), replies.clone());
                tokio::spawn(async move {
                    serve(tcp, conn, &requests, &replies, &tx).await;
                    let _ = tx.send(Event::Closed { conn });
                });
            }
        });
        Scripted { addr, events }
    }

    async fn next(&mut self) -> Event {
        within("an upstream event", self.events.recv())
            .await
            .expect("the upstream runs")
    }
}

async fn serve(
    mut s: TcpStream,
    conn: usize,
    requests: &AtomicUsize,
    replies: &[Vec<Part>],
    tx: &mpsc::UnboundedSender<Event>,
) {
    let mut buf = Vec::new();
    loop {
        // Requests here have no body: a head is all there is.
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut more = [0u8; 4096];
            match s.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&more[..k]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
        buf.drain(..end + 4);
        let n = requests.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = tx.send(Event::Request { conn, n });
        let reply = &replies[(n - 1).min(replies.len() - 1)];
        for part in reply {
            match part {
                Part::Send(bytes) => {
                    if s.write_all(bytes).await.is_err() {
                        return;
                    }
                }
                Part::Pause => tokio::time::sleep(Duration::from_millis(100)).await,
                Part::Close => return,
            }
        }
    }
}

fn send(text: &str) -> Part {
    Part::Send(text.as_bytes().to_vec())
}

/// A plain keep-alive answer with `body`.
fn ok(body: &str) -> Vec<Part> {
    vec![send(&format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))]
}

async fn gateway(up: &Scripted, edit: impl FnOnce(&mut RawConfig)) -> (GatewayProc, ConfigFile) {
    let mut raw = raw_config(&[ws_url(up.addr)]);
    edit(&mut raw);
    let file = ConfigFile::new(&raw);
    (GatewayProc::start(&file).await, file)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n";

/// Everything the gateway sends until it closes the connection.
async fn rest(c: &mut RawHttp) -> Vec<u8> {
    let mut rest = Vec::new();
    let _ = within("the connection to close", c.reader.read_to_end(&mut rest)).await;
    rest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_head_over_the_bound_is_a_502_and_the_connection_is_dropped() {
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-Huge: {}\r\nContent-Length: 2\r\n\r\nno",
        "h".repeat(80 * 1024)
    );
    let mut up = Scripted::start(vec![vec![send(&huge)], ok("fine")]).await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(GET).await;
    assert_eq!(c.head().await.status, 502);
    c.expect_closed().await;
    assert_eq!(up.next().await, Event::Request { conn: 1, n: 1 });
    assert_eq!(up.next().await, Event::Closed { conn: 1 });
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(GET).await;
    assert_eq!(c.response(false).await.body_text(), "fine");
    assert_eq!(up.next().await, Event::Request { conn: 2, n: 2 });
    let m = scrape(gw.admin).await;
    let bad = m.get(
        "tidegate_handshake_rejections_total",
        &[("route", "r"), ("reason", "upstream_bad_response")],
    );
    assert_eq!(bad, Some(1.0), "counted under the existing label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_chunk_framing_cuts_the_response_and_the_connection_is_never_pooled() {
    let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut up = Scripted::start(vec![
        vec![
            send(head),
            Part::Pause,
            send("5\r\nhelloXX3\r\nabc\r\n0\r\n\r\n"),
        ],
        ok("next"),
    ])
    .await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(GET).await;
    let r = c.head().await;
    let rest = rest(&mut c).await;
    // Either nothing was sent yet (502), or the body stops without its
    // last chunk: the client never takes it for complete.
    match r.status {
        502 => {}
        200 => assert!(
            !rest.ends_with(b"0\r\n\r\n"),
            "no last chunk after bad framing: {:?}",
            String::from_utf8_lossy(&rest)
        ),
        other => panic!("status {other}"),
    }
    assert_eq!(up.next().await, Event::Request { conn: 1, n: 1 });
    assert_eq!(up.next().await, Event::Closed { conn: 1 });
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(GET).await;
    assert_eq!(c.response(false).await.body_text(), "next");
    assert_eq!(
        up.next().await,
        Event::Request { conn: 2, n: 2 },
        "a new connection, not the one with the bad body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_mid_body_cuts_the_client_response() {
    let mut up = Scripted::start(vec![
        vec![
            send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello"),
            Part::Pause,
            Part::Close,
        ],
        ok("next"),
    ])
    .await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(GET).await;
    let r = c.head().await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("10"));
    assert_eq!(rest(&mut c).await, b"hello", "5 of 10 bytes, then closed");
    assert_eq!(up.next().await, Event::Request { conn: 1, n: 1 });
    assert_eq!(up.next().await, Event::Closed { conn: 1 });
    wait_metric(
        gw.admin,
        "tidegate_http_requests_total",
        &[("route", "r"), ("class", "2xx")],
        1.0,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_delimited_by_close_reaches_the_client_whole() {
    let until_close = vec![
        send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst "),
        Part::Pause,
        send("second"),
        Part::Close,
    ];
    let mut up = Scripted::start(vec![until_close, ok("third")]).await;
    let (gw, _f) = gateway(&up, |_| {}).await;
    // Re-framed as chunks for the HTTP/1.1 client, whose connection stays
    // open. (HTTP/1.0 clients, which would get it delimited by close, are
    // refused at the head.)
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(GET).await;
    let r = c.response(false).await;
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.body_text(), "first second");
    // The next request goes on a new upstream connection: one delimited
    // by its close is never pooled.
    c.send(GET).await;
    assert_eq!(c.response(false).await.body_text(), "third");
    assert_eq!(up.next().await, Event::Request { conn: 1, n: 1 });
    assert_eq!(up.next().await, Event::Closed { conn: 1 });
    assert_eq!(up.next().await, Event::Request { conn: 2, n: 2 });
}
