//! Plain HTTP on both sides of the gateway: an upstream on hyper's server
//! that records every request it receives and has a behaviour per path
//! (hold a long-poll, stream on cue, answer late, send trailers or
//! hop-by-hop headers), and a keep-alive client over raw bytes that can
//! send what no well-behaved client would and reads responses by their
//! framing (Content-Length, chunked, none for HEAD).

use super::client::{owned_headers, read_head_bytes, HttpResponse};
use super::gateway::{raw_config, ws_url, ConfigFile, GatewayProc};
use super::within;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::{HeaderMap, Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

type AnyBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A request as the upstream received it (body collected).
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::client::header_of(&self.headers, name)
    }
}

/// The recording upstream. Paths: `/hold` (never answers; reports when
/// its request is dropped — the socket closed), `/slow` (answers after
/// 30 s), `/stream` (sends `first`, then `second` only after
/// [`HttpUpstream::go`]), `/trailers` (a chunked body with trailers),
/// `/events` (the same as an SSE stream), `/hop` (hop-by-hop response
/// headers); anything else: 200 with the request body echoed.
pub struct HttpUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    go: Arc<Notify>,
    /// One message per `/hold` request whose connection closed.
    pub closed: mpsc::UnboundedReceiver<()>,
}

impl HttpUpstream {
    pub async fn start() -> HttpUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let go = Arc::new(Notify::new());
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let shared = (Arc::clone(&seen), Arc::clone(&go), closed_tx);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (seen, go, closed) = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, Arc::clone(&seen), Arc::clone(&go), closed.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                });
            }
        });
        HttpUpstream {
            addr,
            seen,
            go,
            closed,
        }
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("not poisoned").clone()
    }

    /// Let `/stream` send its second chunk.
    pub fn go(&self) {
        self.go.notify_one();
    }
}

/// Reports a `/hold` request dropped by hyper (its connection closed).
struct Held(mpsc::UnboundedSender<()>);

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

async fn handle(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    go: Arc<Notify>,
    closed: mpsc::UnboundedSender<()>,
) -> Result<Response<AnyBody>, Infallible> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let held = (path == "/hold").then(|| Held(closed));
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    seen.lock().expect("not poisoned").push(Seen {
        method: parts.method.to_string(),
        target: parts.uri.to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let response = match path.as_str() {
        "/hold" => {
            let _held = held;
            std::future::pending::<()>().await;
            unreachable!("a held request is never answered")
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Response::new(full("late"))
        }
        "/stream" => Response::new(Cued::new(go).boxed_unsync()),
        "/events" => Response::builder()
            .header("content-type", "text/event-stream")
            .body(Cued::new(go).boxed_unsync())
            .expect("valid response"),
        "/trailers" => Response::new(Trailing(0).boxed_unsync()),
        "/hop" => Response::builder()
            .header("connection", "x-up")
            .header("x-up", "secret")
            .header("keep-alive", "timeout=5")
            .header("x-end", "kept")
            .body(full("hop"))
            .expect("valid response"),
        _ => Response::builder()
            .header("x-method", parts.method.as_str())
            .body(full_bytes(body))
            .expect("valid response"),
    };
    Ok(response)
}

fn full(text: &'static str) -> AnyBody {
    full_bytes(Bytes::from_static(text.as_bytes()))
}

fn full_bytes(b: Bytes) -> AnyBody {
    Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// `first\n`, then `second\n` once notified.
struct Cued {
    go: Arc<Notify>,
    step: u8,
    wait: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
}

impl Cued {
    fn new(go: Arc<Notify>) -> Cued {
        Cued {
            go,
            step: 0,
            wait: None,
        }
    }
}

impl Body for Cued {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.step {
            0 => {
                self.step = 1;
                let go = Arc::clone(&self.go);
                self.wait = Some(Box::pin(async move { go.notified().await }));
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first\n")))))
            }
            1 => {
                let wait = self.wait.as_mut().expect("set at step 0");
                match wait.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        self.step = 2;
                        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"second\n")))))
                    }
                }
            }
            _ => Poll::Ready(None),
        }
    }
}

/// A body, then trailers.
struct Trailing(u8);

impl Body for Trailing {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0 += 1;
        Poll::Ready(match self.0 {
            1 => Some(Ok(Frame::data(Bytes::from_static(b"with trailers")))),
            2 => {
                let mut t = HeaderMap::new();
                t.insert("x-checksum", "abc".parse().expect("valid"));
                Some(Ok(Frame::trailers(t)))
            }
            _ => None,
        })
    }
}

/// A keep-alive client connection speaking raw bytes.
pub struct RawHttp {
    pub reader: BufReader<TcpStream>,
}

impl RawHttp {
    pub async fn connect(addr: SocketAddr) -> RawHttp {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        RawHttp {
            reader: BufReader::new(tcp),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.reader.get_mut().write_all(bytes).await.expect("write");
    }

    /// The next response head only.
    pub async fn head(&mut self) -> HttpResponse {
        within("a response head", async {
            let head = read_head_bytes(&mut self.reader)
                .await
                .expect("a response before the connection closed");
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut hs);
            assert!(
                matches!(resp.parse(&head), Ok(httparse::Status::Complete(_))),
                "unparseable head {:?}",
                String::from_utf8_lossy(&head)
            );
            HttpResponse {
                status: resp.code.unwrap_or(0),
                headers: owned_headers(resp.headers),
                body: Vec::new(),
            }
        })
        .await
    }

    /// The next response, its body read by its framing (none for HEAD).
    pub async fn response(&mut self, head_request: bool) -> HttpResponse {
        let mut resp = self.head().await;
        if head_request {
            return resp;
        }
        within("a response body", async {
            if let Some(n) = resp.header("content-length") {
                let n: usize = n.parse().expect("numeric length");
                resp.body = vec![0; n];
                self.reader.read_exact(&mut resp.body).await.expect("body");
            } else if resp.header("transfer-encoding").is_some() {
                while let Some(chunk) = self.chunk().await {
                    resp.body.extend_from_slice(&chunk);
                }
            } else {
                let _ = self.reader.read_to_end(&mut resp.body).await;
            }
        })
        .await;
        resp
    }

    /// The next chunk of a chunked body; `None` at the last chunk (whose
    /// trailer section must be empty: the gateway drops trailers).
    pub async fn chunk(&mut self) -> Option<Vec<u8>> {
        let mut line = String::new();
        self.reader.read_line(&mut line).await.expect("chunk size");
        let size = usize::from_str_radix(line.trim_end(), 16).expect("hex chunk size");
        if size == 0 {
            let mut end = String::new();
            self.reader.read_line(&mut end).await.expect("last CRLF");
            assert_eq!(end, "\r\n", "no trailers after the last chunk");
            return None;
        }
        let mut data = vec![0; size + 2];
        self.reader.read_exact(&mut data).await.expect("chunk");
        assert!(data.ends_with(b"\r\n"));
        data.truncate(size);
        Some(data)
    }

    /// Wait until the gateway closes the connection (EOF or a reset).
    pub async fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        let _ = within(
            "the connection to close",
            self.reader.read_to_end(&mut rest),
        )
        .await;
    }
}

/// The release binary in front of `up`, its config edited by `edit`.
pub async fn gateway(
    up: &HttpUpstream,
    edit: impl FnOnce(&mut tidegate::config::raw::RawConfig),
) -> (GatewayProc, ConfigFile) {
    let mut raw = raw_config(&[ws_url(up.addr)]);
    edit(&mut raw);
    let file = ConfigFile::new(&raw);
    (GatewayProc::start(&file).await, file)
}

/// A plain GET of `path`, keep-alive.
pub fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: app.test\r\n\r\n")
}
