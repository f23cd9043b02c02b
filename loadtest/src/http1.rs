//! The HTTP/1.1 client side of the HTTP scenarios: one pre-built GET
//! request per run, and a response reader that parses heads with `httparse`
//! and consumes bodies (fixed length or chunked) without keeping them, in
//! one buffer per connection. It checks what a benchmark must not get wrong
//! (status, framing); it is not a general-purpose client.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::target::Target;

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Read buffer of a connection that fetches responses (a 64 KiB body
/// arrives in a few reads).
pub const READ_BUF: usize = 32 * 1024;
/// Headers parsed per response head.
const MAX_HEADERS: usize = 32;
/// Longest chunk-size line accepted (hex digits and extensions).
const MAX_CHUNK_LINE: usize = 256;

/// Why a response could not be read.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("read: {0}")]
    Io(#[from] io::Error),
    #[error("the server closed the connection")]
    Eof,
    #[error("bad response head: {0}")]
    Head(httparse::Error),
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("status {0}")]
    Status(u16),
    #[error("bad chunked body")]
    Chunked,
    #[error("a body delimited by the connection close on a keep-alive connection")]
    UntilClose,
}

impl HttpError {
    /// Bounded label for error tallies.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Io(_) => "http_io",
            Self::Eof => "http_eof",
            Self::Head(_) => "http_bad_head",
            Self::HeadTooLarge => "http_head_too_large",
            Self::Status(_) => "http_status",
            Self::Chunked => "http_bad_chunk",
            Self::UntilClose => "http_until_close",
        }
    }
}

/// How the body of a response is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Length(u64),
    Chunked,
    /// Until the server closes: not reusable for keep-alive.
    UntilClose,
}

/// The parts of a response head a scenario needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub body: Body,
}

/// `GET target.path` on a keep-alive connection.
pub fn get_request(target: &Target) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: tidegate-loadtest\r\nAccept: */*\r\n\r\n",
        target.path,
        target.host_header()
    )
    .into_bytes()
}

/// Parses a complete response head at the start of `buf`; `None` if more
/// bytes are needed. Returns the head and its length.
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(buf).map_err(HttpError::Head)? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let status = resp.code.unwrap_or(0);
    let mut body = Body::UntilClose;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let chunked = std::str::from_utf8(h.value)
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"));
            if chunked {
                body = Body::Chunked;
            }
        } else if h.name.eq_ignore_ascii_case("content-length") && body != Body::Chunked {
            let len = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(HttpError::Head(httparse::Error::HeaderValue))?;
            body = Body::Length(len);
        }
    }
    if (100..200).contains(&status) || status == 204 || status == 304 {
        body = Body::Length(0);
    }
    Ok(Some((Head { status, body }, n)))
}

/// Reads responses from one connection into a reused buffer.
pub struct ResponseReader {
    buf: Vec<u8>,
    /// Unconsumed bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl ResponseReader {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0; capacity.max(MAX_HEAD)],
            start: 0,
            end: 0,
        }
    }

    /// Reads more bytes behind the unconsumed ones.
    async fn fill<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<(), HttpError> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Err(HttpError::HeadTooLarge);
        }
        match s.read(&mut self.buf[self.end..]).await? {
            0 => Err(HttpError::Eof),
            n => {
                self.end += n;
                Ok(())
            }
        }
    }

    /// Reads one response head.
    pub async fn head<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<Head, HttpError> {
        loop {
            if let Some((head, n)) = parse_head(&self.buf[self.start..self.end])? {
                self.start += n;
                return Ok(head);
            }
            if self.end - self.start >= MAX_HEAD {
                return Err(HttpError::HeadTooLarge);
            }
            self.fill(s).await?;
        }
    }

    /// Reads one whole 200 response on a keep-alive connection; returns its
    /// body length.
    pub async fn response<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<u64, HttpError> {
        let head = self.head(s).await?;
        if head.status != 200 {
            return Err(HttpError::Status(head.status));
        }
        if head.body == Body::UntilClose {
            return Err(HttpError::UntilClose);
        }
        self.body(s, head.body, u64::MAX).await
    }

    /// Consumes body bytes until the body ends or `limit` bytes of it (after
    /// de-chunking) are consumed; returns how many. Stopping at `limit`
    /// leaves the connection mid-body: only for a stream the caller then
    /// just holds (SSE).
    pub async fn body<S: AsyncRead + Unpin>(
        &mut self,
        s: &mut S,
        body: Body,
        limit: u64,
    ) -> Result<u64, HttpError> {
        match body {
            Body::Length(n) => self.skip(s, n.min(limit)).await,
            Body::UntilClose => self.skip(s, limit).await,
            Body::Chunked => {
                let mut total = 0u64;
                loop {
                    let size = self.chunk_size(s).await?;
                    if size == 0 {
                        self.trailers(s).await?;
                        return Ok(total);
                    }
                    let take = size.min(limit - total);
                    total += self.skip(s, take).await?;
                    if total >= limit {
                        return Ok(total);
                    }
                    self.line(s).await?; // the CRLF after the chunk data
                }
            }
        }
    }

    /// Consumes `n` bytes, reading as needed.
    async fn skip<S: AsyncRead + Unpin>(&mut self, s: &mut S, n: u64) -> Result<u64, HttpError> {
        let mut left = n;
        loop {
            let have = (self.end - self.start) as u64;
            let take = have.min(left);
            self.start += take as usize;
            left -= take;
            if left == 0 {
                return Ok(n);
            }
            self.start = 0;
            self.end = 0;
            self.fill(s).await?;
        }
    }

    /// Consumes one CRLF-terminated line and returns it without the CRLF.
    async fn line<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<Vec<u8>, HttpError> {
        loop {
            let window = &self.buf[self.start..self.end];
            if let Some(i) = window.windows(2).position(|w| w == b"\r\n") {
                let line = window[..i].to_vec();
                self.start += i + 2;
                return Ok(line);
            }
            if window.len() > MAX_CHUNK_LINE {
                return Err(HttpError::Chunked);
            }
            self.fill(s).await?;
        }
    }

    /// Reads a chunk-size line (hex, extensions ignored).
    async fn chunk_size<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<u64, HttpError> {
        let line = self.line(s).await?;
        let hex = line.split(|&b| b == b';').next().unwrap_or_default();
        let hex = std::str::from_utf8(hex).map_err(|_| HttpError::Chunked)?;
        u64::from_str_radix(hex.trim(), 16).map_err(|_| HttpError::Chunked)
    }

    /// Consumes trailer lines up to the empty line that ends the body.
    async fn trailers<S: AsyncRead + Unpin>(&mut self, s: &mut S) -> Result<(), HttpError> {
        while !self.line(s).await?.is_empty() {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Body lengths of the 200 responses in `wire`, delivered in pieces of
    /// `split` bytes.
    async fn read_all(wire: &[u8], split: usize) -> Vec<u64> {
        let mut b = tokio_test_reader(wire, split);
        let mut r = ResponseReader::new(READ_BUF);
        let mut out = Vec::new();
        while let Ok(n) = r.response(&mut b).await {
            out.push(n);
        }
        out
    }

    fn tokio_test_reader(wire: &[u8], split: usize) -> impl AsyncRead + Unpin {
        let (mut a, b) = tokio::io::duplex(1 << 20);
        let pieces: Vec<Vec<u8>> = wire.chunks(split.max(1)).map(<[u8]>::to_vec).collect();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for p in pieces {
                let _ = a.write_all(&p).await;
                tokio::task::yield_now().await;
            }
        });
        b
    }

    #[tokio::test]
    async fn fixed_and_chunked_bodies_at_every_split() {
        let wire = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhelloHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nx-trailer: 1\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        for split in [1, 2, 3, 7, 64, wire.len()] {
            assert_eq!(read_all(wire, split).await, vec![5, 19], "split {split}");
        }
    }

    #[test]
    fn heads() {
        let (h, n) = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 65536\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.body, n), (200, Body::Length(65536), 42));
        let (h, _) = parse_head(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Body::UntilClose);
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n").unwrap().is_none());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
    }
}
