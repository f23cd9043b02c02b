//! The upstream side of plain HTTP through the release binary (issue
//! #15): the keep-alive pool (idle connections closed by the reaper with
//! no request to look at them; a pooled connection the upstream closed
//! under a request is retried once only when that is safe), an
//! `https://` upstream over real TLS (rcgen certificate), and refusals of
//! a connection's first request counted as HTTP requests.

use crate::support::http::RawHttp;
use crate::support::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tidegate::config::raw::RawConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the scripted upstream saw.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    /// A request line, on upstream connection `conn` (numbered from 1).
    Request { conn: usize, line: String },
    /// Connection `conn` ended (EOF from the gateway, or closed by us).
    Closed { conn: usize },
}

/// An HTTP/1.1 upstream over raw bytes, TCP or TLS: answers every request
/// `200` with the body `c{conn}r{n}`, except that with `drop_second` it
/// closes a connection on its second request without a word — a server
/// whose keep-alive timer fired as the request arrived.
struct Scripted {
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<Event>,
}

impl Scripted {
    async fn start(tls: Option<tokio_rustls::TlsAcceptor>, drop_second: bool) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, events) = mpsc::unbounded_channel();
        let count = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = count.fetch_add(1, Ordering::SeqCst) + 1;
                let (tx, tls) = (tx.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                serve(s, conn, drop_second, &tx).await;
                            }
                        }
                        None => serve(tcp, conn, drop_second, &tx).await,
                    }
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

    /// Every event that is already in.
    fn drain(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    conn: usize,
    drop_second: bool,
    tx: &mpsc::UnboundedSender<Event>,
) {
    let mut buf = Vec::new();
    for n in 1.. {
        let Some((line, body_len)) = read_request(&mut s, &mut buf).await else {
            return;
        };
        let _ = tx.send(Event::Request { conn, line });
        if drop_second && n == 2 {
            return;
        }
        // Its body (the gateway sends it with a length) is not echoed.
        while buf.len() < body_len {
            let mut more = [0u8; 4096];
            match s.read(&mut more).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&more[..k]),
            }
        }
        buf.drain(..body_len);
        let body = format!("c{conn}r{n}");
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The next request head from `s` (bytes past it stay in `buf`): its
/// request line and `Content-Length`. `None` at EOF.
async fn read_request<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> Option<(String, usize)> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let line = lines.next().unwrap_or_default().to_string();
            let length = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            return Some((line, length));
        }
        let mut more = [0u8; 4096];
        match s.read(&mut more).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&more[..n]),
        }
    }
}

fn request(conn: usize, line: &str) -> Event {
    Event::Request {
        conn,
        line: line.to_string(),
    }
}

/// The release binary in front of `endpoint`, its config edited by `edit`.
async fn gateway(endpoint: String, edit: impl FnOnce(&mut RawConfig)) -> (GatewayProc, ConfigFile) {
    let mut raw = raw_config(&[endpoint]);
    edit(&mut raw);
    let file = ConfigFile::new(&raw);
    (GatewayProc::start(&file).await, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pooled_connections_are_closed_without_a_request_to_notice() {
    let mut up = Scripted::start(None, false).await;
    let (gw, _f) = gateway(ws_url(up.addr), |raw| {
        raw.http.pool_idle_timeout = "300ms".into();
    })
    .await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(b"GET /once HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "c1r1"));
    assert_eq!(up.next().await, request(1, "GET /once HTTP/1.1"));
    // Nothing else happens on the gateway: no request takes or returns a
    // pooled connection, and the client's connection stays open.
    assert_eq!(
        up.next().await,
        Event::Closed { conn: 1 },
        "the idle upstream connection is closed by the pool's timer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooled_connection_closed_under_a_request_is_retried_only_when_safe() {
    let mut up = Scripted::start(None, true).await;
    let (gw, _f) = gateway(ws_url(up.addr), |_| {}).await;
    let mut c = RawHttp::connect(gw.addr).await;
    c.send(b"GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    assert_eq!(c.response(false).await.body_text(), "c1r1");
    // The pooled connection 1 is closed under the next request: a GET is
    // sent again, once, on a new connection.
    c.send(b"GET /b HTTP/1.1\r\nHost: app.test\r\n\r\n").await;
    let r = c.response(false).await;
    assert_eq!((r.status, r.body_text().as_str()), (200, "c2r1"));
    // Connection 2 is pooled now; a POST (not idempotent, even without a
    // body) that it drops is not sent again: the client gets 502.
    c.send(b"POST /c HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n")
        .await;
    assert_eq!(c.response(false).await.status, 502);
    c.expect_closed().await;
    let mut seen: Vec<Event> = Vec::new();
    while seen.len() < 6 {
        seen.push(up.next().await);
    }
    seen.extend(up.drain());
    let requests: Vec<&Event> = seen
        .iter()
        .filter(|e| matches!(e, Event::Request { .. }))
        .collect();
    assert_eq!(
        requests,
        [
            &request(1, "GET /a HTTP/1.1"),
            &request(1, "GET /b HTTP/1.1"),
            &request(2, "GET /b HTTP/1.1"),
            &request(2, "POST /c HTTP/1.1"),
        ],
        "the GET twice, the POST once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_proxied_over_tls_and_pooled() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = test_ca();
    let (cert, key) = write_leaf(dir.path(), "up", &leaf(&ca, &["localhost"]));
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert.pem()).expect("write CA");
    let acceptor = tls_acceptor(&cert, &key);
    let mut up = Scripted::start(Some(acceptor), false).await;
    let endpoint = format!("https://localhost:{}", up.addr.port());
    let (gw, _f) = gateway(endpoint, |raw| {
        raw.upstreams[0].ca_file = ca_file.display().to_string();
    })
    .await;
    let mut c = RawHttp::connect(gw.addr).await;
    for (path, body) in [("/one", "c1r1"), ("/two", "c1r2")] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
            .await;
        let r = c.response(false).await;
        assert_eq!((r.status, r.body_text().as_str()), (200, body));
    }
    assert_eq!(up.next().await, request(1, "GET /one HTTP/1.1"));
    assert_eq!(
        up.next().await,
        request(1, "GET /two HTTP/1.1"),
        "the second request reused the pooled TLS connection"
    );
}

/// A rustls server config from PEM files.
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(cert)
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(key).expect("key");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_first_requests_count_as_http_requests() {
    let mut up = Scripted::start(None, false).await;
    let (gw, _f) = gateway(ws_url(up.addr), |raw| {
        raw.routes[0].origins = vec!["https://app.test".into()];
        raw.limits.max_header_bytes = 1024;
    })
    .await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    let refusals = [
        // Before routing: a bare LF, and a head over the limit.
        ("GET / HTTP/1.1\nHost: app.test\r\n\r\n".to_string(), 400),
        (big, 431),
        // On the route: an Origin it does not allow.
        (
            "GET / HTTP/1.1\r\nHost: app.test\r\nOrigin: https://evil.test\r\n\r\n".to_string(),
            403,
        ),
    ];
    for (text, status) in refusals {
        let mut c = RawHttp::connect(gw.addr).await;
        c.send(text.as_bytes()).await;
        assert_eq!(c.head().await.status, status);
    }
    // Each refusal is counted once its response is out: wait for the last.
    for (route, n) in [("-", 2.0), ("r", 1.0)] {
        let labels = [("route", route), ("class", "4xx")];
        wait_metric(gw.admin, "tidegate_http_requests_total", &labels, n).await;
    }
    let m = scrape(gw.admin).await;
    let count = |route, class| {
        m.get(
            "tidegate_http_requests_total",
            &[("route", route), ("class", class)],
        )
    };
    assert_eq!(count("-", "4xx"), Some(2.0), "refused before routing");
    assert_eq!(count("r", "4xx"), Some(1.0), "refused on the route");
    let rejected = m.get(
        "tidegate_connections_total",
        &[("route", "r"), ("outcome", "rejected")],
    );
    assert_eq!(
        rejected.unwrap_or(0.0),
        0.0,
        "an HTTP request, not a WebSocket connection"
    );
    assert!(up.drain().is_empty(), "nothing reached the upstream");
}

/// With the thread-per-core layout each worker reuses only the upstream
/// connections it opened (their sockets are registered with its own
/// thread's poller, so a request on another worker would have every
/// readiness event pass through the opener's thread). Requests made one
/// at a time by fresh clients, which the kernel spreads over 3 workers,
/// open one upstream connection per worker that served a client, and no
/// more; a pool shared by the workers would have used one in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_reuses_only_the_upstream_connections_it_opened() {
    const WORKERS: u64 = 3;
    const CLIENTS: usize = 24;
    let mut up = Scripted::start(None, false).await;
    let (gw, _f) = gateway(ws_url(up.addr), |raw| {
        raw.runtime.layout = "thread_per_core".into();
        raw.runtime.workers = WORKERS;
    })
    .await;
    for i in 0..CLIENTS {
        let mut c = RawHttp::connect(gw.addr).await;
        c.send(format!("GET /r{i} HTTP/1.1\r\nHost: app.test\r\n\r\n").as_bytes())
            .await;
        assert_eq!(c.response(false).await.status, 200, "request {i}");
    }
    let mut conns = std::collections::HashSet::new();
    for i in 0..CLIENTS {
        match up.next().await {
            Event::Request { conn, line } => {
                assert_eq!(line, format!("GET /r{i} HTTP/1.1"));
                conns.insert(conn);
            }
            closed => panic!("no upstream connection closes meanwhile: {closed:?}"),
        }
    }
    let text = scrape(gw.admin).await;
    let served = (0..WORKERS)
        .filter(|w| {
            text.sum(
                "tidegate_worker_accepted_total",
                &[("worker", &w.to_string())],
            ) > 0.0
        })
        .count();
    assert!(served >= 2, "clients reached more than one worker");
    assert_eq!(
        conns.len(),
        served,
        "one upstream connection per worker that served: {conns:?}"
    );
}
