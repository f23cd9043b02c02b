//! `http-server`: the HTTP/1.1 upstream of the HTTP benchmarks, the
//! counterpart of `echo-server`. Small on purpose, so that its cost per
//! request is low and the same for every proxy in a comparison:
//!
//! * `GET /bytes/N`: N bytes (`Content-Length`), at most [`MAX_BODY`];
//! * `GET /sse`: a Server-Sent Events stream (chunked): one event at once,
//!   then nothing until the client goes away (the idle-stream scenario);
//! * any other path: a small fixed body ([`SMALL_BODY`]).
//!
//! Keep-alive and pipelining: every request parsed from one read is
//! answered in one write. Request bodies with `Content-Length` are read and
//! dropped; a chunked request body or a bad head gets 400 and a close.

use std::io::Write as _;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::listen;

/// Read buffer per connection; also the largest request head accepted.
const READ_BUF: usize = 16 * 1024;
/// Headers parsed per request.
const MAX_HEADERS: usize = 32;
/// Largest `/bytes/N` served.
pub const MAX_BODY: usize = 64 * 1024 * 1024;
/// The body of the small-GET scenario.
pub const SMALL_BODY: &[u8] = b"hello, world\n";
/// The first (and only) event of `/sse`, as one chunk.
pub const SSE_EVENT: &[u8] = b"data: tidegate-loadtest stream open\n\n";
/// Source of `/bytes/N` bodies, written in pieces of this size.
static FILL: [u8; 16 * 1024] = [b'x'; 16 * 1024];

/// Binds `listen`, announces the address on stdout, and serves until the
/// process is stopped.
pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let listener = listen::bind_and_announce(listen, "http-server", "").await?;
    loop {
        let sock = listen::accept(&listener).await;
        tokio::spawn(async move {
            let _ = connection(sock).await;
        });
    }
}

/// What one parsed request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Small,
    Bytes(usize),
    Sse,
    BadRequest,
}

/// A parsed request head: what to answer, the body bytes to drop, and
/// whether the client asked to close.
#[derive(Debug, PartialEq, Eq)]
struct Request {
    reply: Reply,
    body: usize,
    close: bool,
}

/// Parses one request head at the start of `buf`: `Ok(None)` if incomplete.
fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let (mut body, mut close, mut chunked) = (0usize, false, false);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            body = value.parse().map_err(|_| httparse::Error::HeaderValue)?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let path = req.path.unwrap_or("/");
    let reply = if chunked {
        Reply::BadRequest
    } else if path == "/sse" {
        Reply::Sse
    } else if let Some(n) = path.strip_prefix("/bytes/") {
        match n.parse::<usize>() {
            Ok(n) if n <= MAX_BODY => Reply::Bytes(n),
            _ => Reply::BadRequest,
        }
    } else {
        Reply::Small
    };
    close |= reply == Reply::BadRequest || req.version == Some(0);
    Ok(Some((Request { reply, body, close }, n)))
}

/// Appends the response head (and a small body) for `req` to `out`.
fn head(out: &mut Vec<u8>, req: &Request) {
    let close = if req.close {
        "connection: close\r\n"
    } else {
        ""
    };
    match req.reply {
        Reply::Small => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{close}\r\n",
                SMALL_BODY.len()
            );
            out.extend_from_slice(SMALL_BODY);
        }
        Reply::Bytes(n) => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {n}\r\n{close}\r\n"
            );
        }
        Reply::Sse => {
            let _ = write!(
                out,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
                SSE_EVENT.len()
            );
            out.extend_from_slice(SSE_EVENT);
            out.extend_from_slice(b"\r\n");
        }
        Reply::BadRequest => {
            out.extend_from_slice(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    }
}

/// One client connection: requests until it closes or asks to.
async fn connection(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; READ_BUF];
    let (mut start, mut end) = (0usize, 0usize);
    let mut out = Vec::with_capacity(1024);
    // Request body bytes still to drop.
    let mut drop_body = 0usize;
    loop {
        let n = s.read(&mut buf[end..]).await?;
        if n == 0 {
            return Ok(());
        }
        end += n;
        loop {
            let skip = drop_body.min(end - start);
            start += skip;
            drop_body -= skip;
            if drop_body > 0 {
                break;
            }
            let (req, len) = match parse(&buf[start..end]) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => (
                    Request {
                        reply: Reply::BadRequest,
                        body: 0,
                        close: true,
                    },
                    end - start,
                ),
            };
            start += len;
            drop_body = req.body;
            head(&mut out, &req);
            if let Reply::Bytes(mut left) = req.reply {
                s.write_all(&out).await?;
                out.clear();
                while left > 0 {
                    let take = left.min(FILL.len());
                    s.write_all(&FILL[..take]).await?;
                    left -= take;
                }
            }
            if req.close {
                s.write_all(&out).await?;
                return s.shutdown().await;
            }
            if req.reply == Reply::Sse {
                s.write_all(&out).await?;
                return hold(s).await;
            }
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        // Keep room to read: move the unparsed tail to the front.
        buf.copy_within(start..end, 0);
        end -= start;
        start = 0;
        if end == buf.len() {
            s.write_all(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
}

/// An open SSE stream: nothing more is sent; ends when the client does.
async fn hold(mut s: TcpStream) -> std::io::Result<()> {
    let mut sink = [0u8; 256];
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn routes() {
        let r = |raw: &[u8]| parse(raw).unwrap().unwrap().0;
        assert_eq!(r(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").reply, Reply::Small);
        assert_eq!(
            r(b"GET /bytes/65536 HTTP/1.1\r\n\r\n").reply,
            Reply::Bytes(65536)
        );
        assert_eq!(r(b"GET /sse HTTP/1.1\r\n\r\n").reply, Reply::Sse);
        assert_eq!(
            r(b"GET /bytes/999999999999 HTTP/1.1\r\n\r\n").reply,
            Reply::BadRequest
        );
        let post = r(b"POST / HTTP/1.1\r\nContent-Length: 7\r\nConnection: close\r\n\r\n");
        assert_eq!((post.body, post.close), (7, true));
        assert_eq!(
            r(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").reply,
            Reply::BadRequest
        );
        assert!(parse(b"GET / HTTP/1.1\r\n").unwrap().is_none());
    }

    #[tokio::test]
    async fn keep_alive_pipelined_responses_parse_with_the_client_reader() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let _ = connection(s).await;
        });
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\nGET /bytes/100000 HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcGET /sse HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        let mut r = crate::http1::ResponseReader::new(crate::http1::READ_BUF);
        assert_eq!(r.response(&mut c).await.unwrap(), SMALL_BODY.len() as u64);
        assert_eq!(r.response(&mut c).await.unwrap(), 100_000);
        assert_eq!(r.response(&mut c).await.unwrap(), SMALL_BODY.len() as u64);
        let head = r.head(&mut c).await.unwrap();
        assert_eq!(head.body, crate::http1::Body::Chunked);
        let n = r.body(&mut c, head.body, SSE_EVENT.len() as u64).await;
        assert_eq!(n.unwrap(), SSE_EVENT.len() as u64);
    }
}
